//! The service is quiet and honest: it ships what changed (and snapshots), the stream rebuilds the state a
//! one-shot report shows, even across a restart; only mounts that matter start scans, and a storm of them
//! costs at most four scans a minute; failure ends the service or stops its watchdog; a closed standard
//! output ends it quietly; absurd values are refused. Real mounts in private mount namespaces, a real
//! dockerd where containers are involved.

use crate::agent::{empty_config, public_copy_of_binary, Agent, NotifyListener, PrivateMountNs, Replayed, Scan};
use crate::common::{ovlaudit, OVLAUDIT};
use crate::events::{assert_events_valid, event_validator};
use crate::harness::start_engine;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// An empty directory laid out as a Docker overlay2 data root: no engine claims anything about it, it only
/// gives the agent a storage root to watch mounts under (or to lose).
fn empty_data_root(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    for d in ["overlay2", "image/overlay2", "containers"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    root
}

/// A host root holding only a `proc` that leads to the real /proc.
fn bare_root(dir: &Path) -> PathBuf {
    let root = dir.join("host");
    std::fs::create_dir(&root).expect("mkdir");
    std::os::unix::fs::symlink("/proc", root.join("proc")).expect("symlink proc");
    root
}

/// The events of `scans` about container `id` with `event.type` `ty`.
fn container_events<'a>(scans: &'a [Scan], id: &str, ty: &str) -> Vec<&'a Value> {
    scans
        .iter()
        .flat_map(|s| s.events.iter())
        .filter(|e| e["container"]["id"] == id && e["event"]["type"][0] == ty)
        .collect()
}

/// Sorted by their JSON text, so that two lists compare as sets.
fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v
}

/// The agent ships its first scan as a snapshot, then only changes: a file written in a container is a
/// `change` naming `writable.apparent_bytes` (equal to the engine's SizeRw), a new container a
/// `creation`, a removed one a `deletion`; quiet scans ship their summary alone and a snapshot comes back
/// every `snapshot_interval`. The agent is stopped, the host changed behind its back, and a new agent
/// started: replaying both streams into a state, as the schema describes, gives exactly what a one-shot
/// `report --format json` sees.
#[test]
fn replaying_the_stream_across_a_restart_gives_the_one_shot_report() {
    let Some(engine) = start_engine() else { return };
    let Some(ns) = PrivateMountNs::start() else { return };
    engine.import_busybox("bb:1");
    let c1 = engine.docker(&["run", "-d", "--name", "c1", "bb:1", "sleep", "600"]);
    let c2 = engine.docker(&["create", "--name", "c2", "bb:1", "true"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "interval = \"2s\"\nsnapshot_interval = \"12s\"\n").expect("write");
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let proc_dir = ns.proc_dir();
    let args = ["--config", s(&config), "--docker-root", &root, "--proc", s(&proc_dir)];

    let a1 = Agent::start(&args, &[]);
    let scans = a1.wait_until(Duration::from_secs(30), "four scans", |s| s.len() >= 4);
    let first = scans[0].summary();
    assert_eq!((first["snapshot"].as_bool(), first["snapshot_reason"].as_str()), (Some(true), Some("start")));
    assert_eq!(scans[0].container_ids().into_iter().collect::<BTreeSet<_>>(), BTreeSet::from([c1.clone(), c2.clone()]));
    assert!(scans[0]
        .thing_events()
        .iter()
        .all(|e| e["event"]["type"][0] == "info" && e["ovlaudit"]["snapshot"] == true));
    for scan in &scans[1..4] {
        assert!(scan.thing_events().is_empty(), "a quiet scan ships its summary alone: {:?}", scan.events);
        assert_eq!(scan.summary()["snapshot"], false);
        assert!(scan.summary().get("unowned_mounts").is_none(), "unchanged mount list not re-sent");
        assert!(scan.summary().get("sources").is_none(), "unchanged sources not re-sent");
    }
    let quiet_bytes: usize = scans[1..4].iter().map(|s| s.events[0].to_string().len()).sum();
    eprintln!("quiet scans: {} bytes each (the summary)", quiet_bytes / 3);

    // A file written in c1.
    engine.docker(&["exec", "c1", "sh", "-c", "head -c 5000 /dev/zero > /grown"]);
    let scans = a1.wait_until(Duration::from_secs(15), "a change event for c1", |s| {
        !container_events(s, &c1, "change").is_empty()
    });
    let change = container_events(&scans, &c1, "change")[0].clone();
    assert!(change["ovlaudit"]["changed"].as_array().expect("changed").contains(&"writable.apparent_bytes".into()));
    let listed = engine.api_get("/containers/json?all=1&size=1");
    let size_rw =
        listed.as_array().expect("list").iter().find(|c| c["Id"] == c1.as_str()).expect("c1")["SizeRw"].clone();
    assert_eq!(change["ovlaudit"]["container"]["writable"]["apparent_bytes"], size_rw);

    // c3 appears, c2 goes.
    let c3 = engine.docker(&["run", "-d", "--name", "c3", "bb:1", "sleep", "600"]);
    engine.docker(&["rm", "-f", "c2"]);
    let scans = a1.wait_until(Duration::from_secs(15), "c3 created and c2 deleted", |s| {
        !container_events(s, &c3, "creation").is_empty() && !container_events(s, &c2, "deletion").is_empty()
    });
    let deleted = container_events(&scans, &c2, "deletion")[0];
    assert_eq!(deleted["container"]["name"], "c2", "a deletion carries the thing as last shipped");
    let periodic = a1.wait_until(Duration::from_secs(20), "a periodic snapshot", |s| {
        s.iter().any(|x| x.summary()["snapshot_reason"] == "snapshot_interval")
    });
    let snap = periodic.iter().find(|x| x.summary()["snapshot_reason"] == "snapshot_interval").expect("found");
    assert_eq!(snap.container_ids().into_iter().collect::<BTreeSet<_>>(), BTreeSet::from([c1.clone(), c3.clone()]));

    // The agent stops; the host changes while nobody watches; a new agent starts.
    a1.signal(libc::SIGTERM);
    let mut a1 = a1;
    assert!(a1.wait_exit(Duration::from_secs(10)).expect("SIGTERM stops the agent").success());
    engine.docker(&["rm", "-f", "c3"]);
    let c4 = engine.docker(&["create", "--name", "c4", "bb:1", "true"]);
    engine.docker(&["exec", "c1", "sh", "-c", "head -c 7000 /dev/zero > /more"]);
    let a2 = Agent::start(&args, &[]);
    a2.wait_until(Duration::from_secs(30), "the restarted agent's first scan", |s| !s.is_empty());
    engine.docker(&["stop", "-t", "1", "c1"]);
    a2.wait_until(Duration::from_secs(15), "c1 exited", |s| {
        container_events(s, &c1, "change").iter().any(|e| e["ovlaudit"]["container"]["state"] == "exited")
    });

    let mut events = a1.events();
    events.extend(a2.events());
    assert_events_valid(&event_validator(), &events);
    let state = Replayed::of(&events);
    // The service does not run the copy-up analysis (it would read layers on every scan): compare
    // with a report without it.
    let out =
        ovlaudit(&["report", "--format", "json", "--no-copy-ups", "--docker-root", &root, "--proc", s(&proc_dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(state.container_ids(), BTreeSet::from([c1.clone(), c4.clone()]));
    for (dataset, section) in [
        ("ovlaudit.container", "containers"),
        ("ovlaudit.image", "images"),
        ("ovlaudit.orphan", "orphans"),
        ("ovlaudit.finding", "findings"),
    ] {
        let replayed = sorted(state.objects(dataset));
        let reported = sorted(report[section].as_array().expect("section").clone());
        assert_eq!(replayed, reported, "{section}: the replayed stream and the report differ");
    }
    eprintln!(
        "replayed {} events from two runs: {} containers, {} images, {} findings, as the report has them",
        events.len(),
        state.objects("ovlaudit.container").len(),
        state.objects("ovlaudit.image").len(),
        state.objects("ovlaudit.finding").len()
    );
}

/// A tmpfs mounted and unmounted outside every storage root, fast and at a rhythm just outside the settle
/// window, costs no scan; a tmpfs mounted under the data root does, and so does its unmount.
#[test]
fn only_mounts_that_matter_trigger_a_scan() {
    let Some(ns) = PrivateMountNs::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = empty_data_root(dir.path());
    let elsewhere = dir.path().join("elsewhere");
    let volume = data.join("volumes-test");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::fs::create_dir(&volume).expect("mkdir");
    let config = empty_config(dir.path());
    let proc_dir = ns.proc_dir();
    let agent = Agent::start(
        &["--config", &config, "--docker-root", s(&data), "--proc", s(&proc_dir), "--interval", "1h"],
        &[("RUST_LOG", "debug")],
    );
    agent.wait_until(Duration::from_secs(10), "the first scan", |s| s.len() == 1);
    for gap in [Duration::from_millis(200), Duration::from_millis(1200)] {
        for _ in 0..4 {
            ns.run(&["mount", "-t", "tmpfs", "none", s(&elsewhere)]);
            std::thread::sleep(gap);
            ns.run(&["umount", s(&elsewhere)]);
            std::thread::sleep(gap);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(agent.scans().len(), 1, "unrelated mounts scanned; log:\n{}", agent.log());

    let t0 = Instant::now();
    ns.run(&["mount", "-t", "tmpfs", "none", s(&volume)]);
    agent.wait_until(Duration::from_secs(5), "a scan after a mount under the data root", |s| s.len() == 2);
    eprintln!("mount under the data root to scan: {} ms", t0.elapsed().as_millis());
    ns.run(&["umount", s(&volume)]);
    agent.wait_until(Duration::from_secs(5), "a scan after its unmount", |s| s.len() == 3);
    assert!(agent.log().contains("mount table changed"), "{}", agent.log());
}

/// Overlay mounts made and removed every 1.2 s (each change followed by just more than the 1 s settle
/// window, so that each would have its own scan) for 40 s: at most 4 scans in the first minute, the first
/// one included; the scan after the storm still shows its end.
#[test]
fn a_storm_of_relevant_mounts_costs_at_most_4_scans_a_minute() {
    let Some(ns) = PrivateMountNs::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(dir.path().join(d)).expect("mkdir");
    }
    let p = |d: &str| dir.path().join(d).to_str().expect("utf-8").to_owned();
    let opts = format!("lowerdir={},upperdir={},workdir={}", p("lower"), p("upper"), p("work"));
    let config = empty_config(dir.path());
    let proc_dir = ns.proc_dir();
    let agent = Agent::start(&["--config", &config, "--proc", s(&proc_dir), "--interval", "1h"], &[]);
    let first = agent.wait_until(Duration::from_secs(10), "the first scan", |s| s.len() == 1)[0].at;
    let mut changes = 0;
    while first.elapsed() < Duration::from_secs(40) {
        ns.run(&["mount", "-t", "overlay", "overlay", "-o", &opts, &p("merged")]);
        std::thread::sleep(Duration::from_millis(1200));
        ns.run(&["umount", &p("merged")]);
        std::thread::sleep(Duration::from_millis(1200));
        changes += 2;
    }
    let storm_end = Instant::now();
    let in_first_minute = |scans: &[Scan]| scans.iter().filter(|x| x.at < first + Duration::from_secs(59)).count();
    let scans =
        agent.wait_until(Duration::from_secs(40), "the scan after the storm", |s| s.iter().any(|x| x.at > storm_end));
    let n = in_first_minute(&scans);
    eprintln!("{changes} mount changes in {} s: {n} scans in the first minute", (storm_end - first).as_secs());
    assert!(n <= 4, "{n} scans in the first minute; log:\n{}", agent.log());
    let after = scans.iter().find(|x| x.at > storm_end).expect("found");
    assert!(after.at >= first + Duration::from_secs(59), "the window held the scan back until the minute ended");
    let mounted =
        after.summary()["unowned_mounts"].as_array().map(|l| l.iter().any(|m| m["mountpoint"] == p("merged")));
    assert_eq!(mounted, Some(false), "the scan after the storm shows its end (no mount left)");
}

/// A configured data root that is missing or unreadable ends `run` at once with status 2, the path and
/// the cause, and no READY=1; `check-config` says the same.
#[test]
fn an_unreadable_data_root_at_start_exits_2_without_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = NotifyListener::bind(dir.path());
    let config = empty_config(dir.path());
    let missing = dir.path().join("missing");
    let expected =
        format!("ovlaudit: docker_root {}: cannot be read: No such file or directory (os error 2)", missing.display());
    let mut agent = Agent::start(
        &["--config", &config, "--docker-root", s(&missing)],
        &[("NOTIFY_SOCKET", s(&notify.path)), ("WATCHDOG_USEC", "1000000")],
    );
    let status = agent.wait_exit(Duration::from_secs(5)).expect("it exits");
    assert_eq!(status.code(), Some(2));
    // Its standard error is collected by a thread that may still be reading what it wrote last.
    agent.wait_log(Duration::from_secs(2), "cannot be read");
    assert_eq!(agent.log().trim_end(), expected);
    std::thread::sleep(Duration::from_millis(200));
    assert!(notify.with_line("READY=1").is_empty(), "{:?}", notify.messages());
    let out = ovlaudit(&["check-config", "--config", &config, "--docker-root", s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).trim_end(), expected);

    // Readable, but no overlay2 store in it: the first scan fails, and that ends the service the same way.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let mut agent = Agent::start(
        &["--config", &config, "--docker-root", s(&empty)],
        &[("NOTIFY_SOCKET", s(&notify.path)), ("WATCHDOG_USEC", "1000000")],
    );
    let status = agent.wait_exit(Duration::from_secs(10)).expect("it exits");
    assert_eq!(status.code(), Some(2), "{}", agent.log());
    agent.wait_log(Duration::from_secs(2), "ovlaudit: scan 1 failed");
    let last = agent.log().lines().last().unwrap_or("").to_owned();
    assert!(
        last.starts_with(&format!("ovlaudit: scan 1 failed: {}: not a Docker overlay2 data root", empty.display())),
        "{}",
        agent.log()
    );
    assert!(notify.with_line("READY=1").is_empty(), "{:?}", notify.messages());
    assert!(notify.with_line("STATUS=").iter().any(|(_, m)| m.contains("scan 1 failed")), "{:?}", notify.messages());

    // Unreadable: mode 0700, and the agent runs as nobody without CAP_DAC_READ_SEARCH.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "setpriv needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let public = tempfile::Builder::new().prefix("ovlpub").tempdir_in("/tmp").expect("tempdir");
    std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let private = empty_data_root(public.path());
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let config = empty_config(public.path());
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (_bin_dir, bin) = public_copy_of_binary();
    for sub in ["run", "check-config"] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"])
            .arg(&bin)
            .args([sub, "--config", &config, "--docker-root", s(&private)])
            .env_remove("NOTIFY_SOCKET")
            .output()
            .expect("setpriv");
        assert_eq!(out.status.code(), Some(2), "{sub}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stderr).trim_end(),
            format!("ovlaudit: docker_root {}: cannot be read: Permission denied (os error 13)", private.display()),
            "{sub}"
        );
    }
}

/// A data root that goes away after the start: each failed scan is said in STATUS= and shipped as an
/// error event; after three in a row the watchdog pings stop (systemd's WatchdogSec= restarts the
/// service); once the root is back, scans succeed and the pings resume.
#[test]
fn scans_that_fail_later_are_visible_and_stop_the_watchdog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = empty_data_root(dir.path());
    let away = dir.path().join("away");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "interval = \"1s\"\nwatch = false\n").expect("write");
    let notify = NotifyListener::bind(dir.path());
    let agent = Agent::start(
        &["--config", s(&config), "--docker-root", s(&data)],
        &[("NOTIFY_SOCKET", s(&notify.path)), ("WATCHDOG_USEC", "1000000")],
    );
    notify.wait_line(Duration::from_secs(10), "READY=1");
    std::fs::rename(&data, &away).expect("rename the data root away");
    let failures = |scans: &[Scan]| -> Vec<Value> {
        scans.iter().flat_map(|s| s.events.iter()).filter(|e| e["event"]["outcome"] == "failure").cloned().collect()
    };
    let scans = agent.wait_until(Duration::from_secs(10), "three failed scans", |s| failures(s).len() >= 3);
    let third_at = scans.iter().filter(|x| x.events[0]["event"]["outcome"] == "failure").nth(2).expect("third").at;
    let f = failures(&scans);
    assert_eq!(f[0]["event"]["type"], serde_json::json!(["error"]));
    assert!(f[0]["error"]["message"].as_str().is_some_and(|m| m.contains(s(&data))), "{}", f[0]);
    assert_eq!(
        f.iter().map(|e| e["ovlaudit"]["scan"]["failures_in_a_row"].as_u64()).take(3).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    assert_events_valid(&event_validator(), &f);
    let status = notify.with_line("STATUS=");
    assert!(status.iter().any(|(_, m)| m.contains("failed") && m.contains("(3 in a row)")), "{status:?}");
    std::thread::sleep(Duration::from_secs(3));
    let late_pings = notify
        .with_line("WATCHDOG=1")
        .into_iter()
        .filter(|(at, _)| *at > third_at + Duration::from_millis(100))
        .count();
    assert_eq!(late_pings, 0, "pings after three failures: {:?}", notify.messages());
    assert!(agent.log().contains("no more watchdog pings"), "{}", agent.log());

    std::fs::rename(&away, &data).expect("put the data root back");
    let back = Instant::now();
    let scans = agent.wait_until(Duration::from_secs(5), "a good scan", |s| {
        s.last().is_some_and(|x| x.events.last().is_some_and(|e| e["event"]["outcome"] == "success"))
    });
    assert!(scans.last().expect("scan").at > back);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(notify.with_line("WATCHDOG=1").iter().any(|(at, _)| *at > back), "pings resume once scans succeed");
}

/// A notify socket nobody reads fills up; the agent keeps scanning and stops promptly on SIGTERM.
#[test]
fn a_notify_socket_nobody_reads_never_stalls_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = bare_root(dir.path());
    let path = dir.path().join("notify");
    let _unread = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "interval = \"1s\"\nwatch = false\n").expect("write");
    // A ping every 10 ms: the socket's queue is full within seconds.
    let mut agent = Agent::start(
        &["--config", s(&config), "--root", s(&root)],
        &[("NOTIFY_SOCKET", s(&path)), ("WATCHDOG_USEC", "20000")],
    );
    std::thread::sleep(Duration::from_secs(8));
    let n = agent.scans().len();
    std::thread::sleep(Duration::from_secs(3));
    let later = agent.scans().len();
    assert!(later >= n + 2, "scans stalled: {n} then {later}; log:\n{}", agent.log());
    assert!(agent.log().contains("cannot notify the service manager"), "{}", agent.log());
    let stop = Instant::now();
    agent.signal(libc::SIGTERM);
    assert!(agent.wait_exit(Duration::from_secs(5)).expect("stops").success());
    eprintln!("with a full notify socket: {later} scans, SIGTERM to exit {} ms", stop.elapsed().as_millis());
}

/// `ovlaudit run | head -1` and `ovlaudit report --format json | head -1`: a reader that goes away ends
/// the program with status 0 and nothing on standard error but its log.
#[test]
fn a_closed_standard_output_ends_run_and_report_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = bare_root(dir.path());
    // An (empty) data root, so that report has no "no Docker storage found" note for standard error.
    empty_data_root(&root);
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "interval = \"1s\"\nwatch = false\nlog_level = \"warn\"\ndocker_root = \"/data\"\n")
        .expect("write");
    let run = format!("{OVLAUDIT} run --config {} --root {}", s(&config), s(&root));
    let report = format!("{OVLAUDIT} report --format json --root {} --docker-root /data", s(&root));
    for cmd in [&run, &report] {
        let out = Command::new("bash")
            .args(["-c", &format!("set -o pipefail; timeout 20 {cmd} | head -1")])
            .output()
            .expect("bash");
        assert!(out.status.success(), "{cmd}: {} {}", out.status, text(&out.stderr));
        assert_eq!(text(&out.stdout).lines().count(), 1);
        assert_eq!(text(&out.stderr), "", "{cmd}");
    }
    // The reader gone before the first byte: the very first write fails.
    for args in [
        vec!["run", "--config", s(&config), "--root", s(&root)],
        vec!["report", "--format", "json", "--root", s(&root), "--docker-root", "/data"],
        vec!["report", "--format", "ndjson", "--root", s(&root), "--docker-root", "/data"],
    ] {
        let mut child =
            Command::new(OVLAUDIT).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{args:?}: {} {}", out.status, text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
    // A reader that takes one line, then goes.
    let mut child = Command::new(OVLAUDIT)
        .args(["run", "--config", s(&config), "--root", s(&root)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("a line");
    assert!(serde_json::from_str::<Value>(&line).is_ok(), "{line}");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Values beyond sane limits are refused at their key, in words; durations take units everywhere.
#[test]
fn absurd_values_are_refused_in_words_and_durations_need_units() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    let f = s(&file);
    for (body, expected) in [
        ("interval = \"1ms\"\n", format!("ovlaudit: {f}:1:1: interval of 1ms is too short: at least 1s")),
        ("\ntop_files = 100000\n", format!("ovlaudit: {f}:2:1: top_files = 100000 is too many: at most 100")),
        ("threads = -3\n", format!("ovlaudit: {f}:1:11: -3 is negative: expected a whole number, 0 or more")),
        (
            "[[sink]]\nuri = \"stdout:\"\nqueue_size = 1000000000000\n",
            format!("ovlaudit: {f}:1:1: queue_size = 1000000000000 is too many: at most 1000000"),
        ),
    ] {
        std::fs::write(&file, body).expect("write");
        for sub in ["check-config", "run"] {
            let out = ovlaudit(&[sub, "--config", f]);
            assert_eq!(out.status.code(), Some(2), "{sub} {body}");
            assert_eq!(text(&out.stderr).trim_end(), expected, "{sub} {body:?}");
        }
    }
    let root = bare_root(dir.path());
    for (args, says) in [
        (vec!["run", "--interval", "1ms"], "interval of 1ms is too short: at least 1s"),
        (vec!["run", "--interval", "60"], "invalid duration `60`"),
        (vec!["run", "--threads", "5000"], "5000 is not in 0..=1024"),
        (vec!["report", "--threads", "99999999999999999999999"], "--threads"),
        (vec!["report", "--top", "1000"], "1000 is not in 0..=100"),
        (vec!["report", "--orphan-min-age", "600"], "invalid duration `600`"),
    ] {
        let out = ovlaudit(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        for word in ["usize", "u64", "i64", "i128"] {
            assert!(!err.contains(word), "{args:?} names a type: {err}");
        }
    }
    for age in ["10m", "0", "1h30m"] {
        let out = ovlaudit(&["report", "--format", "json", "--orphan-min-age", age, "--root", s(&root)]);
        assert!(out.status.success(), "--orphan-min-age {age}: {}", text(&out.stderr));
    }
}

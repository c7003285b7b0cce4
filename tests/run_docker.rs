//! `ovlaudit run` against a real, private dockerd: reaction to a new and a removed container, a burst of
//! fifty starts, the cost of idling, running as an unprivileged user with only CAP_DAC_READ_SEARCH, and
//! running inside a container with the host at /host. Container ids and states come from the engine's API.

use crate::agent::{empty_config, public_copy_of_binary, Agent, NotifyListener, PrivateMountNs};
use crate::harness::{start_engine, Engine};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn data_root(engine: &Engine) -> String {
    engine.data_root().to_str().expect("utf-8").to_owned()
}

/// `ovlaudit run` on `engine` with the mount table of a private mount namespace, an hour between scans.
fn agent_in_namespace(config: &str, engine: &Engine, proc_dir: &Path, env: &[(&str, &str)]) -> Agent {
    let root = data_root(engine);
    let proc_dir = proc_dir.to_str().expect("utf-8");
    Agent::start(&["--config", config, "--docker-root", &root, "--proc", proc_dir, "--interval", "1h"], env)
}

/// The ids of the containers the engine lists (all states).
fn engine_ids(engine: &Engine) -> BTreeSet<String> {
    engine
        .api_get("/containers/json?all=1")
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["Id"].as_str().expect("Id").to_owned())
        .collect()
}

/// With an interval of an hour, a new container is reported within 5 s, and once removed the next scan
/// no longer has it. Events keep one sequence across scans.
#[test]
fn run_reports_a_new_container_within_5_s_and_drops_a_removed_one() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = empty_config(dir.path());
    let agent = Agent::start(&["--config", &config, "--docker-root", &data_root(&engine), "--interval", "1h"], &[]);
    let first = agent.wait_until(Duration::from_secs(20), "the first scan", |s| !s.is_empty());
    assert!(first[0].container_ids().is_empty());

    let t0 = Instant::now();
    let id = engine.docker(&["run", "-d", "--name", "r1", "bb:1", "sleep", "300"]);
    let started = Instant::now();
    let running = |x: &crate::agent::Scan| {
        x.events.iter().any(|e| e["container"]["id"] == id.as_str() && e["ovlaudit"]["container"]["state"] == "running")
    };
    let scans = agent.wait_until(Duration::from_secs(10), "an event for r1 running", |s| s.iter().any(running));
    let seen = scans.iter().find(|s| running(s)).expect("found").at;
    let reaction = seen.saturating_duration_since(started);
    eprintln!(
        "new container: event {} ms after `docker run -d` returned ({} ms after it was issued)",
        reaction.as_millis(),
        (seen - t0).as_millis()
    );
    assert!(reaction <= Duration::from_secs(5), "the event came {reaction:?} after the container started");
    let event = scans
        .iter()
        .filter(|s| running(s))
        .flat_map(|s| s.events.iter())
        .find(|e| e["container"]["id"] == id.as_str())
        .expect("the container event");
    assert_eq!(event["container"]["name"], "r1");
    assert_eq!(event["ovlaudit"]["container"]["state"], "running");
    assert_eq!(engine_ids(&engine), BTreeSet::from([id.clone()]));

    let n = agent.scans().len();
    let t1 = Instant::now();
    engine.docker(&["rm", "-f", "r1"]);
    let scans = agent.wait_until(Duration::from_secs(10), "a deletion event for r1", |s| {
        s.iter().skip(n).any(|x| x.deleted_ids().contains(&id))
    });
    let gone = scans.iter().skip(n).find(|x| x.deleted_ids().contains(&id)).expect("found");
    assert!(gone.container_ids().is_empty());
    assert!(engine_ids(&engine).is_empty());
    assert!(agent.state().container_ids().is_empty(), "the stream's state has no container left");
    eprintln!("removed container: deletion event {} ms after `docker rm -f` was issued", (gone.at - t1).as_millis());

    let seqs: Vec<u64> = agent.events().iter().map(|e| e["event"]["sequence"].as_u64().expect("sequence")).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "event.sequence counts every event of the run, across scans");
}

/// Fifty containers started at once cost at most three scans. The agent watches a private mount
/// namespace's mount table, so that other tests' mounts can't add scans; the engine's container
/// directories (inotify) are what announces the burst.
#[test]
fn a_burst_of_50_container_starts_costs_at_most_3_scans() {
    let Some(engine) = start_engine() else { return };
    let Some(ns) = PrivateMountNs::start() else { return };
    engine.import_busybox("bb:1");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = empty_config(dir.path());
    let proc_dir = ns.proc_dir();
    let agent = agent_in_namespace(&config, &engine, &proc_dir, &[]);
    agent.wait_until(Duration::from_secs(20), "the first scan", |s| s.len() == 1);

    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..10 {
            let engine = &engine;
            scope.spawn(move || {
                for i in 0..5 {
                    engine.docker(&["run", "-d", "--name", &format!("b{worker}-{i}"), "bb:1", "sleep", "600"]);
                }
            });
        }
    });
    let burst = t0.elapsed();
    let ids = engine_ids(&engine);
    assert_eq!(ids.len(), 50);
    let all_running = |state: &crate::agent::Replayed| {
        state.container_ids() == ids && state.objects("ovlaudit.container").iter().all(|c| c["state"] == "running")
    };
    agent.wait_until(Duration::from_secs(70), "all 50 containers running in the stream's state", |_| {
        all_running(&agent.state())
    });
    // Let any scan still pending from the burst happen before counting.
    std::thread::sleep(Duration::from_secs(7));
    let scans = agent.scans();
    let burst_scans = scans.len() - 1;
    eprintln!("50 starts in {} ms: {burst_scans} scans", burst.as_millis());
    assert!(all_running(&agent.state()), "the stream's state has every container, running");
    assert!((1..=3).contains(&burst_scans), "{burst_scans} scans for the burst; log:\n{}", agent.log());
}

/// An idle host costs no scan besides the interval and under 0.1 s of CPU a minute, watchdog pings and
/// all.
#[test]
fn idle_for_60_s_costs_no_scan_and_under_a_tenth_of_a_cpu_second() {
    let Some(engine) = start_engine() else { return };
    let Some(ns) = PrivateMountNs::start() else { return };
    engine.import_busybox("bb:1");
    engine.docker(&["run", "-d", "--name", "idle1", "bb:1", "sleep", "600"]);
    engine.docker(&["create", "--name", "idle2", "bb:1", "true"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = empty_config(dir.path());
    let notify = NotifyListener::bind(dir.path());
    let proc_dir = ns.proc_dir();
    let agent = agent_in_namespace(
        &config,
        &engine,
        &proc_dir,
        &[("NOTIFY_SOCKET", notify.path.to_str().expect("utf-8")), ("WATCHDOG_USEC", "10000000")],
    );
    let first = agent.wait_until(Duration::from_secs(20), "the first scan", |s| s.len() == 1);
    assert_eq!(first[0].container_ids().into_iter().collect::<BTreeSet<_>>(), engine_ids(&engine));
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = agent.cpu_time();
    let pings0 = notify.with_line("WATCHDOG=1").len();
    std::thread::sleep(Duration::from_secs(60));
    let cpu = agent.cpu_time() - cpu0;
    let pings = notify.with_line("WATCHDOG=1").len() - pings0;
    eprintln!("idle 60 s: {} ms CPU, {pings} watchdog pings, {} scans", cpu.as_millis(), agent.scans().len());
    assert_eq!(agent.scans().len(), 1, "no scan while idle; log:\n{}", agent.log());
    assert!((11..=13).contains(&pings), "pings every 5 s kept going: {pings}");
    assert!(cpu < Duration::from_millis(100), "{cpu:?} of CPU while idle");
}

/// setpriv as nobody with CAP_DAC_READ_SEARCH alone (inheritable, ambient and bounding): `report` matches
/// the engine, and `run` sees a new container. Without the capability the data root is refused.
#[test]
fn works_as_nobody_with_only_cap_dac_read_search() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let id = engine.docker(&[
        "run",
        "-d",
        "--name",
        "p1",
        "bb:1",
        "sh",
        "-c",
        "echo private > /f && chmod 600 /f && sleep 300",
    ]);
    let (_bin_dir, bin) = public_copy_of_binary();
    let bin = bin.to_str().expect("utf-8").to_owned();
    let root = data_root(&engine);
    let as_nobody = |caps: bool, args: &[&str]| {
        let mut c = crate::common::hermetic("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        if caps {
            c.args(["--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search"]);
            c.arg("--bounding-set=-all,+dac_read_search");
        } else {
            c.args(["--inh-caps=-all", "--bounding-set=-all"]);
        }
        c.arg("--").arg(&bin).args(args);
        c
    };
    // Give the container's file time to be written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.api_get("/containers/json?size=1")[0]["SizeRw"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "p1 wrote nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = as_nobody(true, &["report", "--format", "json", "--docker-root", &root]).output().expect("setpriv");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let listed = engine.api_get("/containers/json?all=1&size=1");
    let c = &report["containers"][0];
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["writable"]["apparent_bytes"], listed[0]["SizeRw"]);
    assert_eq!(c["writable"]["errors"], 0);
    assert!(c["mount"]["mountpoint"].is_string(), "the host mount table was readable: {c}");

    let out = as_nobody(false, &["report", "--format", "json", "--docker-root", &root]).output().expect("setpriv");
    assert_eq!(out.status.code(), Some(2), "without the capability the data root is unreadable");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ermission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let config = empty_config(dir.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cmd = as_nobody(true, &["run", "--config", &config, "--docker-root", &root, "--interval", "1h"]);
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let program = cmd.get_program().to_str().expect("utf-8").to_owned();
    let agent = Agent::start_program(&program, &args, &[]);
    agent.wait_until(Duration::from_secs(20), "the first scan", |s| !s.is_empty());
    let id2 = engine.docker(&["run", "-d", "--name", "p2", "bb:1", "sleep", "300"]);
    agent.wait_until(Duration::from_secs(5), "p2 seen by the unprivileged agent", |s| {
        s.iter().any(|x| x.container_ids().contains(&id2))
    });
    assert!(!agent.log().contains("cannot watch"), "{}", agent.log());
}

/// Imports an image `name` made of the ovlaudit binary at `/usr/local/bin/ovlaudit` and the libraries `ldd`
/// names (and busybox's `sh`, `sleep`, `echo`, `cat` when `with_busybox`): the tests have no registry.
pub(crate) fn import_agent_image(engine: &Engine, name: &str, with_busybox: bool) {
    let image = tempfile::tempdir().expect("tempdir");
    let put = |from: &str, to: &str| {
        let dest = image.path().join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("copy {from}: {e}"));
    };
    put(crate::common::OVLAUDIT, "/usr/local/bin/ovlaudit");
    let ldd = Command::new("ldd").arg(crate::common::OVLAUDIT).output().expect("run ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)".
        let path = line.split("=>").last().and_then(|p| p.split_whitespace().next()).unwrap_or("");
        if path.starts_with('/') {
            put(path, path);
        }
    }
    if with_busybox {
        // A shell for `RUN` steps and `sleep`; `ovlaudit` stays the binary at /usr/local/bin.
        put(crate::harness::BUSYBOX, "/bin/busybox");
        for applet in ["sh", "sleep", "echo", "cat"] {
            std::os::unix::fs::symlink("busybox", image.path().join("bin").join(applet)).expect("symlink");
        }
    }
    let tar = Command::new("tar").arg("-C").arg(image.path()).args(["-c", "."]).output().expect("tar");
    engine.docker_stdin(&["import", "-", name], &tar.stdout);
}

/// The `docker run` line of docs/cli.md: the agent in a container with the host's / read-only at /host and the
/// host's PID namespace, built into an image from the binary and the libraries `ldd` names.
#[test]
fn runs_in_a_container_with_the_host_at_slash_host() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let id1 = engine.docker(&["run", "-d", "--name", "c1", "bb:1", "sleep", "300"]);

    import_agent_image(&engine, "ovlaudit", false);

    let root = data_root(&engine);
    // The documented line, read from docs/cli.md, with the test engine's data root and an hour's interval added.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).expect("docs/cli.md");
    let readme_line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("docker run -d --name ovlaudit "))
        .expect("docs/cli.md gives the docker run line");
    assert!(readme_line.ends_with(" -v /:/host:ro ovlaudit ovlaudit run --root /host"), "{readme_line}");
    let mut args: Vec<&str> = readme_line.split_whitespace().skip(1).collect();
    args.extend(["--docker-root", &root, "--interval", "1h"]);
    engine.docker(&args);
    let logs = || engine.docker(&["logs", "ovlaudit"]);
    let agent_log = || {
        let out = Command::new(crate::harness::DOCKER_CLIENT)
            .arg("-H")
            .arg(format!("unix://{}", engine.socket().display()))
            .args(["logs", "ovlaudit"])
            .output()
            .expect("docker logs");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let events = |text: &str| -> Vec<Value> { text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect() };
    let ids_in = |evs: &[Value]| -> BTreeSet<String> {
        evs.iter().filter_map(|e| e["container"]["id"].as_str().map(str::to_owned)).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events(&logs()).iter().any(|e| e["event"]["dataset"] == "ovlaudit.scan") {
        assert!(Instant::now() < deadline, "no scan from the agent in a container:\n{}\n{}", logs(), agent_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let evs = events(&logs());
    let c1 = evs.iter().find(|e| e["container"]["id"] == id1.as_str()).expect("an event for c1");
    let inspect = engine.api_get(&format!("/containers/{id1}/json"));
    // Host paths, not /host paths, and the live mount read from the host's /proc/1/mountinfo.
    assert_eq!(c1["ovlaudit"]["container"]["writable"]["upperdir"], inspect["GraphDriver"]["Data"]["UpperDir"]);
    assert_eq!(c1["ovlaudit"]["container"]["mount"]["mountpoint"], inspect["GraphDriver"]["Data"]["MergedDir"]);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(c1["host"]["name"], hostname.trim());

    let id2 = engine.docker(&["run", "-d", "--name", "c2", "bb:1", "sleep", "300"]);
    let started = Instant::now();
    while !ids_in(&events(&logs())).contains(&id2) {
        assert!(started.elapsed() < Duration::from_secs(5), "the agent in a container did not see c2:\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("agent in a container: c2 reported {} ms after it started", started.elapsed().as_millis());
    let all = ids_in(&events(&logs()));
    let agent_id = engine.docker(&["inspect", "-f", "{{.Id}}", "ovlaudit"]);
    assert!(all.contains(&agent_id), "the agent's own container is audited too");
}

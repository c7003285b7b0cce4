//! `ovlaudit run` and `check-config` without an engine: the configuration file and its errors, the notify
//! protocol against a real datagram socket, signals, a stuck first scan, a real mount in a private mount
//! namespace, and the shipped systemd unit checked by systemd's own tools.

use crate::agent::{empty_config, Agent, NotifyListener, PrivateMountNs};
use crate::common::{ovlaudit, OVLAUDIT};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A host root holding only a `proc` that leads to the real /proc: no Docker, the real mount table.
pub(crate) fn bare_root(dir: &Path) -> PathBuf {
    let root = dir.join("host");
    std::fs::create_dir(&root).expect("mkdir");
    std::os::unix::fs::symlink("/proc", root.join("proc")).expect("symlink proc");
    root
}

/// `check-config`'s output, read with the `toml` crate; values shown as TOML writes them (strings bare).
struct Printed(toml::Table);

impl Printed {
    fn parse(stdout: &[u8]) -> Printed {
        Printed(text(stdout).parse().expect("check-config prints TOML"))
    }

    /// The `uri` of each `[[sink]]` table, in order.
    fn sink_uris(&self) -> Vec<String> {
        match self.0.get("sink") {
            Some(toml::Value::Array(tables)) => {
                tables.iter().filter_map(|t| t.get("uri").and_then(toml::Value::as_str).map(str::to_owned)).collect()
            }
            _ => Vec::new(),
        }
    }

    fn get(&self, key: &str) -> String {
        match self.0.get(key) {
            None => "(unset)".to_owned(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_config_accepts_the_shipped_example_and_prints_the_defaults() {
    let out = ovlaudit(&["check-config", "--config", &format!("{REPO}/systemd/ovlaudit.toml")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The example only has commented-out keys: the effective configuration is the documented defaults.
    let printed = Printed::parse(&out.stdout);
    assert_eq!(printed.get("interval"), "1m");
    assert_eq!(printed.sink_uris(), ["stdout:"]);
    assert_eq!(printed.get("root"), "/");
    assert_eq!(printed.get("proc"), "/proc");
    assert_eq!(printed.get("docker_root"), "(unset)", "docker_root unset by default");
    assert_eq!(printed.get("threads"), "0");
    assert_eq!(printed.get("log_level"), "info");
    assert_eq!(printed.get("watch"), "true");
    assert_eq!(printed.get("settle"), "1s");
    assert_eq!(printed.get("max_delay"), "5s");
    assert_eq!(printed.get("scan_timeout"), "10m");
    assert_eq!(printed.get("snapshot_interval"), "1d");
    assert_eq!(printed.get("incremental"), "true");
    assert_eq!(printed.get("reconcile_interval"), "6h");
}

#[test]
fn check_config_rejects_bad_files_with_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    let f = file.to_str().expect("utf-8");
    for (body, expected) in [
        ("interval = \"30s\"\nintervall = \"5s\"\n", format!("ovlaudit: {f}:2:1: unknown field `intervall`")),
        ("watch = true\n\ninterval = \"soon\"\n", format!("ovlaudit: {f}:3:12: invalid duration `soon`")),
        ("threads = \"many\"\n", format!("ovlaudit: {f}:1:11: invalid type: string \"many\"")),
        ("sinks = [\"stdout\", \"nowhere://\"]\n", format!("ovlaudit: {f}:1:9: sink \"nowhere://\": unknown scheme")),
        ("root = \"host\"\n", format!("ovlaudit: {f}:1:8: `host` is not an absolute path")),
    ] {
        std::fs::write(&file, body).expect("write");
        let out = ovlaudit(&["check-config", "--config", f]);
        assert_eq!(out.status.code(), Some(2), "{body}");
        assert!(text(&out.stderr).starts_with(&expected), "for {body:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty());
        // `run` refuses the same file the same way, before doing anything.
        let out = ovlaudit(&["run", "--config", f]);
        assert_eq!(out.status.code(), Some(2), "{body}");
        assert!(text(&out.stderr).starts_with(&expected), "run, for {body:?}: {}", text(&out.stderr));
    }
    let missing = dir.path().join("missing.toml");
    let out = ovlaudit(&["run", "--config", missing.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!("ovlaudit: cannot read {}: No such file or directory (os error 2)", missing.display())
    );
}

#[test]
fn flags_override_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "interval = \"5m\"\nroot = \"/a\"\nthreads = 2\ndocker_root = \"/srv/docker\"\n")
        .expect("write");
    // check-config also checks that the named roots can be read: the flag's root holds the file's data root.
    let host = dir.path().join("host");
    std::fs::create_dir_all(host.join("srv/docker")).expect("mkdir");
    let out = ovlaudit(&[
        "check-config",
        "--config",
        file.to_str().expect("utf-8"),
        "--interval",
        "30s",
        "--root",
        host.to_str().expect("utf-8"),
        "--sink",
        "stdout",
        "--sink",
        "stdout:",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = Printed::parse(&out.stdout);
    assert_eq!(printed.get("interval"), "30s");
    assert_eq!(printed.get("root"), host.to_str().expect("utf-8"));
    assert_eq!(printed.get("threads"), "2", "not overridden, so the file's");
    assert_eq!(printed.get("docker_root"), "/srv/docker");
    assert_eq!(printed.sink_uris(), ["stdout:", "stdout:"]);
    let out = ovlaudit(&["check-config", "--interval", "never"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid duration `never`"), "{}", text(&out.stderr));
}

#[test]
fn notify_protocol_watchdog_and_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = bare_root(dir.path());
    let notify = NotifyListener::bind(dir.path());
    let config = empty_config(dir.path());
    let mut agent = Agent::start(
        &["--config", &config, "--root", root.to_str().expect("utf-8"), "--interval", "1h"],
        &[("NOTIFY_SOCKET", notify.path.to_str().expect("utf-8")), ("WATCHDOG_USEC", "1000000")],
    );
    let ready = notify.wait_line(Duration::from_secs(10), "READY=1");
    let scans = agent.wait_until(Duration::from_secs(5), "the first scan", |s| !s.is_empty());
    let status = notify.with_line("READY=1")[0].1.clone();
    // STATUS= travels with READY=1 and summarises the scan the agent printed.
    let overlay_mounts = scans[0].summary()["totals"]["overlay_mounts"].as_u64().expect("overlay_mounts");
    assert!(status.contains(&format!("{overlay_mounts} overlay mounts")), "{status}");
    assert!(status.lines().any(|l| l.starts_with("STATUS=scan 1 at ")), "{status}");
    // WATCHDOG_USEC=1 s: pings every half period while idle.
    std::thread::sleep(Duration::from_millis(2600));
    let pings = notify.with_line("WATCHDOG=1").into_iter().filter(|(at, _)| *at >= ready).count();
    assert!((4..=7).contains(&pings), "{pings} pings in 2.6 s after READY=1: {:?}", notify.messages());

    let stop = Instant::now();
    agent.signal(libc::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(5)).expect("SIGTERM stops the agent within 5 s");
    let took = stop.elapsed();
    assert!(status.success(), "{status}: {}", agent.log());
    let stopping = notify.wait_line(Duration::from_secs(1), "STOPPING=1");
    assert!(stopping >= stop);
    eprintln!("SIGTERM to exit: {} ms", took.as_millis());
    assert!(agent.log().contains("SIGTERM: stopping"), "{}", agent.log());
}

#[test]
fn sigint_stops_and_abstract_notify_socket_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = bare_root(dir.path());
    let name = format!("ovlaudit-test-{}-{:?}", std::process::id(), std::thread::current().id());
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes())
            .expect("abstract address");
    let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr).expect("bind abstract");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let config = empty_config(dir.path());
    let mut agent = Agent::start(
        &["--config", &config, "--root", root.to_str().expect("utf-8"), "--interval", "1h"],
        &[("NOTIFY_SOCKET", &format!("@{name}"))],
    );
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.iter().any(|m: &String| m.starts_with("READY=1")) {
        let n = sock.recv(&mut buf).expect("a message on the abstract socket");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    agent.signal(libc::SIGINT);
    assert!(agent.wait_exit(Duration::from_secs(5)).expect("SIGINT stops within 5 s").success());
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1"));
}

/// The first scan blocks opening the mount table (a FIFO nobody writes): the agent asks systemd for more
/// start time while the scan is young, then declares it stuck after `scan_timeout`, stops extending and
/// stops the watchdog pings; once the FIFO delivers, the scan completes and READY=1 and the pings follow.
#[test]
fn stuck_first_scan_extends_then_stops_the_watchdog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("host");
    std::fs::create_dir_all(root.join("proc/1")).expect("mkdir");
    let fifo = root.join("proc/1/mountinfo");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("no NUL");
    // SAFETY: a valid C string and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "scan_timeout = \"5s\"\ninterval = \"1h\"\n").expect("write");
    let notify = NotifyListener::bind(dir.path());
    let agent = Agent::start(
        &["--config", config.to_str().expect("utf-8"), "--root", root.to_str().expect("utf-8")],
        &[("NOTIFY_SOCKET", notify.path.to_str().expect("utf-8")), ("WATCHDOG_USEC", "1000000")],
    );
    let started = notify.wait_line(Duration::from_secs(5), "STATUS=");
    agent.wait_log(Duration::from_secs(10), "longer than scan_timeout");
    let stuck_at = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let extends = notify.with_line("EXTEND_TIMEOUT_USEC=");
    assert!(!extends.is_empty(), "no EXTEND_TIMEOUT_USEC while the first scan ran: {:?}", notify.messages());
    assert!(extends.iter().all(|(at, m)| *at < stuck_at && m == "EXTEND_TIMEOUT_USEC=10000000"), "{extends:?}");
    let pings = notify.with_line("WATCHDOG=1");
    assert!(pings.iter().filter(|(at, _)| *at < stuck_at).count() >= 5, "pings while young: {pings:?}");
    assert!(pings.iter().all(|(at, _)| *at < stuck_at), "pings after the scan was stuck: {pings:?}");
    assert!(notify.with_line("READY=1").is_empty());
    assert!(stuck_at - started >= Duration::from_secs(5));

    // Unblock the scan: an empty mount table.
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).expect("open the FIFO for writing"));
    let ready = notify.wait_line(Duration::from_secs(5), "READY=1");
    std::thread::sleep(Duration::from_millis(1600));
    let pings_after = notify.with_line("WATCHDOG=1").into_iter().filter(|(at, _)| *at >= ready).count();
    assert!(pings_after >= 2, "pings resume after the scan completed: {:?}", notify.messages());
    assert_eq!(agent.scans().len(), 1);
}

#[test]
fn sighup_reloads_and_keeps_the_running_config_when_the_new_one_is_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = bare_root(dir.path());
    let config = dir.path().join("c.toml");
    // No change watches: other tests' mounts on this machine must not add scans to the count below.
    std::fs::write(&config, "interval = \"1h\"\nwatch = false\n").expect("write");
    let notify = NotifyListener::bind(dir.path());
    let agent = Agent::start(
        &["--config", config.to_str().expect("utf-8"), "--root", root.to_str().expect("utf-8")],
        &[("NOTIFY_SOCKET", notify.path.to_str().expect("utf-8"))],
    );
    agent.wait_until(Duration::from_secs(10), "the first scan", |s| s.len() == 1);

    std::fs::write(&config, "interval = \"1s\"\nsinks = [\"stdout\"]\nwatch = maybe\n").expect("write");
    agent.signal(libc::SIGHUP);
    agent.wait_log(Duration::from_secs(5), "reload failed, keeping the running configuration");
    assert!(agent.log().contains(&format!("{}:3:9: ", config.display())), "{}", agent.log());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(agent.scans().len(), 1, "the bad file's 1 s interval must not apply");
    assert!(notify.with_line("RELOADING=1").is_empty());

    std::fs::write(&config, "interval = \"1s\"\nwatch = false\n").expect("write");
    let hup = Instant::now();
    agent.signal(libc::SIGHUP);
    agent.wait_log(Duration::from_secs(5), "configuration reloaded");
    let scans = agent.wait_until(Duration::from_secs(6), "scans on the new 1 s interval", |s| s.len() >= 4);
    assert!(scans[1].at > hup);
    let reloading = notify.wait_line(Duration::from_secs(1), "RELOADING=1");
    let readies = notify.with_line("READY=1");
    assert_eq!(readies.len(), 2, "READY=1 after the first scan and after the reload: {:?}", notify.messages());
    assert!(readies[1].0 >= reloading);
    let msg = &notify.with_line("RELOADING=1")[0].1;
    assert!(msg.lines().any(|l| l.strip_prefix("MONOTONIC_USEC=").is_some_and(|v| v.parse::<u64>().is_ok())), "{msg}");
}

/// A real overlay mount in a private mount namespace: the agent, watching that namespace's mountinfo,
/// scans within seconds although its interval is an hour, and the new scan lists exactly that mount.
#[test]
fn a_mount_triggers_a_scan_that_shows_it() {
    let Some(ns) = PrivateMountNs::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(dir.path().join(d)).expect("mkdir");
    }
    let p = |d: &str| dir.path().join(d).to_str().expect("utf-8").to_owned();
    let config = empty_config(dir.path());
    let proc_dir = ns.proc_dir();
    let agent =
        Agent::start(&["--config", &config, "--proc", proc_dir.to_str().expect("utf-8"), "--interval", "1h"], &[]);
    agent.wait_until(Duration::from_secs(10), "the first scan", |s| s.len() == 1);
    let mounted = |scan: &crate::agent::Scan| {
        // Present when the list changed (or in a snapshot); absent means as before.
        scan.summary()["unowned_mounts"].as_array().is_some_and(|l| l.iter().any(|m| m["mountpoint"] == p("merged")))
    };
    assert!(!mounted(&agent.scans()[0]));

    let opts = format!("lowerdir={},upperdir={},workdir={}", p("lower"), p("upper"), p("work"));
    let t0 = Instant::now();
    ns.run(&["mount", "-t", "overlay", "overlay", "-o", &opts, &p("merged")]);
    let scans = agent.wait_until(Duration::from_secs(5), "a scan showing the new mount", |s| s.iter().any(mounted));
    let scan = scans.iter().find(|s| mounted(s)).expect("found");
    eprintln!("mount to scan event: {} ms", (scan.at - t0).as_millis());
    let m = scan.summary()["unowned_mounts"]
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["mountpoint"] == p("merged"))
        .expect("mount")
        .clone();
    assert_eq!(m["upperdir"], p("upper"));
    assert_eq!(m["workdir"], p("work"));
    assert_eq!(m["lowerdirs"], serde_json::json!([p("lower")]));

    let n = scans.len();
    ns.run(&["umount", &p("merged")]);
    let scans = agent.wait_until(Duration::from_secs(5), "a scan after the unmount", |s| s.len() > n);
    let list = scans[n].summary()["unowned_mounts"].as_array().expect("the changed list is shipped");
    assert!(!list.iter().any(|m| m["mountpoint"] == p("merged")), "the unmounted overlay is gone from the next scan");
}

/// `systemd-analyze verify` and `systemd-analyze security --offline=true` on the shipped unit.
#[test]
fn shipped_unit_verifies_and_exposure_is_at_most_2() {
    let analyze = "/usr/bin/systemd-analyze";
    if !Path::new(analyze).exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{analyze} is missing (Debian package systemd)");
        eprintln!("SKIP: no {analyze}");
        return;
    }
    let unit = std::fs::read_to_string(format!("{REPO}/systemd/ovlaudit.service")).expect("read the unit");
    for line in [
        "Type=notify",
        "DynamicUser=yes",
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH",
        "AmbientCapabilities=CAP_DAC_READ_SEARCH",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
        "ExecStart=/usr/bin/ovlaudit run",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    assert!(unit.lines().any(|l| l.starts_with("ReadOnlyPaths=") && l.contains("/var/lib/docker")));
    assert!(!unit.lines().any(|l| l.starts_with("ProtectProc=")), "ProtectProc=invisible would hide /proc/1");

    // verify checks that ExecStart= exists; the binary under test stands in for /usr/bin/ovlaudit.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("ovlaudit.service");
    let replaced = unit.replace("ExecStart=/usr/bin/ovlaudit run", &format!("ExecStart={OVLAUDIT} run"));
    assert_eq!(replaced.lines().zip(unit.lines()).filter(|(a, b)| a != b).count(), 1);
    std::fs::write(&copy, replaced).expect("write");
    // verify also runs `man` for each Documentation= page: the generated pages, as the package installs them.
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", format!("{REPO}/packaging/man"))
        .output()
        .expect("run systemd-analyze verify");
    assert!(out.status.success() && out.stderr.is_empty(), "verify: {}{}", text(&out.stdout), text(&out.stderr));

    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("{REPO}/systemd/ovlaudit.service"))
        .output()
        .expect("run systemd-analyze security");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let score: f64 = all
        .lines()
        .find_map(|l| l.split("Overall exposure level for ovlaudit.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{all}"));
    eprintln!("systemd-analyze security --offline=true: exposure {score}");
    assert!(score <= 2.0, "exposure {score} is above 2.0:\n{all}");
}

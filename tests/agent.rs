//! Running `ovlaudit run` from tests: the real binary as a child process, its NDJSON events and its log
//! collected as they arrive, a real datagram socket standing in for systemd's `NOTIFY_SOCKET`, and a
//! private mount namespace for tests that must not see other tests' mounts.

#![allow(dead_code)]

use crate::common::OVLAUDIT;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One completed scan: its events in order (the `ovlaudit.scan` summary last) and when it arrived.
#[derive(Debug, Clone)]
pub struct Scan {
    pub at: Instant,
    pub events: Vec<Value>,
}

impl Scan {
    /// The ids of the containers this scan has an `ovlaudit.container` event for that is not a deletion
    /// (appeared, changed, or re-stated by a snapshot).
    pub fn container_ids(&self) -> Vec<String> {
        self.container_events(|t| t != "deletion")
    }

    /// The ids of the containers this scan says went away.
    pub fn deleted_ids(&self) -> Vec<String> {
        self.container_events(|t| t == "deletion")
    }

    fn container_events(&self, want: impl Fn(&str) -> bool) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"]["dataset"] == "ovlaudit.container")
            .filter(|e| want(e["event"]["type"][0].as_str().unwrap_or("")))
            .filter_map(|e| e["container"]["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// The events about things (everything but the summary).
    pub fn thing_events(&self) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"]["dataset"] != "ovlaudit.scan").collect()
    }

    /// The `ovlaudit.scan` summary.
    pub fn summary(&self) -> &Value {
        &self.events.last().expect("a scan has events")["ovlaudit"]["scan"]
    }
}

#[derive(Default)]
struct Output {
    partial: Vec<Value>,
    scans: Vec<Scan>,
    all: Vec<Value>,
    log: String,
}

/// The state a consumer rebuilds from a stream of events, following the rule the JSON Schema states:
/// upsert each thing's event by (agent.id, dataset, ovlaudit.key), remove on `deletion`, and at a
/// snapshot's summary drop every thing of that agent not named since the snapshot's `first_sequence`.
#[derive(Debug, Default)]
pub struct Replayed {
    /// (agent.id, dataset, key) → (ephemeral_id, sequence, the last event).
    things: std::collections::BTreeMap<(String, String, String), (String, u64, Value)>,
}

impl Replayed {
    /// Replays `events` in order.
    pub fn of(events: &[Value]) -> Replayed {
        let mut r = Replayed::default();
        for e in events {
            r.apply(e);
        }
        r
    }

    fn apply(&mut self, e: &Value) {
        let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("not a string in {e}")).to_owned();
        let agent = text(&e["agent"]["id"]);
        let ephemeral = text(&e["agent"]["ephemeral_id"]);
        let seq = e["event"]["sequence"].as_u64().expect("event.sequence");
        let dataset = text(&e["event"]["dataset"]);
        match dataset.as_str() {
            "ovlaudit.check" => {}
            "ovlaudit.scan" => {
                let scan = &e["ovlaudit"]["scan"];
                if scan["snapshot"] == true {
                    let first = scan["first_sequence"].as_u64().expect("a snapshot names its first_sequence");
                    self.things.retain(|(a, _, _), (eph, s, _)| *a != agent || (*eph == ephemeral && *s >= first));
                }
            }
            _ => {
                let key = (agent, dataset, text(&e["ovlaudit"]["key"]));
                match e["event"]["type"][0].as_str() {
                    Some("deletion") => {
                        self.things.remove(&key);
                    }
                    Some("creation" | "change" | "info") => {
                        self.things.insert(key, (ephemeral, seq, e.clone()));
                    }
                    other => panic!("event.type {other:?} in {e}"),
                }
            }
        }
    }

    /// The last event of each thing of `dataset`, by key.
    pub fn events(&self, dataset: &str) -> Vec<&Value> {
        self.things.iter().filter(|((_, d, _), _)| d == dataset).map(|(_, (_, _, e))| e).collect()
    }

    /// The `ovlaudit.<object>` objects of `dataset` (`ovlaudit.container` → the container objects).
    pub fn objects(&self, dataset: &str) -> Vec<Value> {
        let object = dataset.trim_start_matches("ovlaudit.");
        self.events(dataset).into_iter().map(|e| e["ovlaudit"][object].clone()).collect()
    }

    /// The current containers' ids.
    pub fn container_ids(&self) -> std::collections::BTreeSet<String> {
        self.events("ovlaudit.container")
            .iter()
            .filter_map(|e| e["container"]["id"].as_str().map(str::to_owned))
            .collect()
    }
}

/// A running `ovlaudit run`, killed on drop if still running.
pub struct Agent {
    child: Child,
    out: Arc<Mutex<Output>>,
}

impl Agent {
    /// Starts `ovlaudit run ARGS` with extra environment `env` (and `RUST_LOG` cleared unless given).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::start_program(OVLAUDIT, args, env)
    }

    /// Starts `PROGRAM ARGS` (a wrapper such as `setpriv … ovlaudit run …`) and collects its output like
    /// [`Agent::start`].
    pub fn start_program(program: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::start_prepared(program, args, env, |_| {})
    }

    /// Like [`Agent::start_program`], with `prepare` applied to the command before it is spawned (a
    /// `pre_exec` hook, say).
    pub fn start_prepared(
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Agent {
        // The binary itself runs blind to the host's own engines (see common::hermetic_ovlaudit).
        let mut cmd = if program == OVLAUDIT { crate::common::hermetic_ovlaudit() } else { Command::new(program) };
        if program == OVLAUDIT {
            cmd.arg("run");
        }
        cmd.args(args).env_remove("RUST_LOG").env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC");
        for (k, v) in env {
            cmd.env(k, v);
        }
        prepare(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let out = Arc::new(Mutex::new(Output::default()));
        let stdout = child.stdout.take().expect("stdout piped");
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                let mut o = sink.lock().expect("lock");
                o.all.push(value.clone());
                let last = value["event"]["dataset"] == "ovlaudit.scan";
                o.partial.push(value);
                if last {
                    let events = std::mem::take(&mut o.partial);
                    o.scans.push(Scan { at: Instant::now(), events });
                }
            }
        });
        let mut stderr = child.stderr.take().expect("stderr piped");
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().expect("lock").log.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Agent { child, out }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every completed scan so far.
    pub fn scans(&self) -> Vec<Scan> {
        self.out.lock().expect("lock").scans.clone()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Value> {
        self.out.lock().expect("lock").all.clone()
    }

    /// The state rebuilt from every event so far.
    pub fn state(&self) -> Replayed {
        Replayed::of(&self.events())
    }

    /// The agent's log (standard error) so far.
    pub fn log(&self) -> String {
        self.out.lock().expect("lock").log.clone()
    }

    /// Waits until `done(scans)` holds; panics with the log after `timeout`.
    #[track_caller]
    pub fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&[Scan]) -> bool) -> Vec<Scan> {
        let deadline = Instant::now() + timeout;
        loop {
            let scans = self.scans();
            if done(&scans) {
                return scans;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}; {} scans; log:\n{}", scans.len(), self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the log contains `text`.
    #[track_caller]
    pub fn wait_log(&self, timeout: Duration, text: &str) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "timed out waiting for {text:?} in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the agent (our own unreaped child, so the pid is ours).
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, signal) };
    }

    /// Waits for the agent to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU time (user + system) the agent has used, from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("read the agent's stat");
        // Fields after the parenthesised name; utime and stime are fields 14 and 15 of the whole line.
        let rest = stat.rsplit_once(") ").expect("stat has a name").1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_micros(ticks * 1_000_000 / hz)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("agent log:\n{}", self.log());
        }
    }
}

/// A datagram socket standing in for systemd's notify socket; collects every message it receives.
pub struct NotifyListener {
    pub path: PathBuf,
    messages: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
}

impl NotifyListener {
    /// Binds `DIR/notify`.
    pub fn bind(dir: &Path) -> NotifyListener {
        let path = dir.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        sock.set_read_timeout(Some(Duration::from_millis(100))).expect("set a read timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    m.lock().expect("lock").push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
                }
            }
        });
        NotifyListener { path, messages, stop }
    }

    pub fn messages(&self) -> Vec<(Instant, String)> {
        self.messages.lock().expect("lock").clone()
    }

    /// Messages containing the line `line` (`READY=1`) or, for `KEY=`, a line starting with it.
    pub fn with_line(&self, line: &str) -> Vec<(Instant, String)> {
        self.messages()
            .into_iter()
            .filter(|(_, m)| m.lines().any(|l| if line.ends_with('=') { l.starts_with(line) } else { l == line }))
            .collect()
    }

    #[track_caller]
    pub fn wait_line(&self, timeout: Duration, line: &str) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((at, _)) = self.with_line(line).first() {
                return *at;
            }
            assert!(Instant::now() < deadline, "no {line:?} within {timeout:?}; got {:?}", self.messages());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A process (`sleep`) in a mount namespace of its own, with private propagation: its mount table is a
/// copy of the host's that no other test's mounts reach. The copies of mounts under `/tmp/` (other tests'
/// engines) are detached from it at once: the kernel removes a mount from every namespace when its
/// mountpoint directory is deleted, which those tests' cleanup would do at any moment. `proc_dir()` is a directory whose `1` is that
/// process's `/proc/<pid>`, to pass as `--proc`: the agent then watches and reads that namespace's
/// `mountinfo`, which raises POLLPRI only for mounts made inside it (with [`PrivateMountNs::run`]).
pub struct PrivateMountNs {
    child: Child,
    dir: tempfile::TempDir,
}

impl PrivateMountNs {
    /// `None` (with a SKIP line) when not root, unless CI=true.
    pub fn start() -> Option<PrivateMountNs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "a private mount namespace needs root");
            eprintln!("SKIP: a private mount namespace needs root");
            return None;
        }
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        let pid = child.id();
        // unshare execs sleep in the new namespace; wait until the namespace differs from ours.
        let deadline = Instant::now() + Duration::from_secs(5);
        let ours = std::fs::read_link("/proc/self/ns/mnt").expect("own mount ns");
        while std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().as_ref() == Some(&ours) {
            assert!(Instant::now() < deadline, "unshare did not enter a new mount namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("read its mountinfo");
        let mut under_tmp: Vec<&str> =
            mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with("/tmp/")).collect();
        // Parents first: detaching a parent takes its children along, and their own detach then fails.
        under_tmp.sort_by_key(|m| m.len());
        let dir = tempfile::Builder::new().prefix("ovlns").tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("proc")).expect("mkdir proc");
        std::os::unix::fs::symlink(format!("/proc/{pid}"), dir.path().join("proc/1")).expect("symlink proc/1");
        let ns = PrivateMountNs { child, dir };
        if !under_tmp.is_empty() {
            let mut args = vec!["umount", "-l"];
            args.extend(under_tmp);
            // Children already gone with their parent fail; what matters is that none is left.
            let _ = ns.nsenter(&args);
        }
        Some(ns)
    }

    /// The directory to pass as `--proc`.
    pub fn proc_dir(&self) -> PathBuf {
        self.dir.path().join("proc")
    }

    /// Runs a command inside the namespace (`nsenter`); panics if it fails.
    #[track_caller]
    pub fn run(&self, args: &[&str]) {
        let out = self.nsenter(args);
        assert!(out.status.success(), "nsenter {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn nsenter(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.child.id().to_string())
            .arg("-m")
            .args(args)
            .output()
            .expect("run nsenter (util-linux)")
    }
}

impl Drop for PrivateMountNs {
    fn drop(&mut self) {
        // Our own child: the namespace and every mount in it go when its last process does.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of the binary in a fresh directory every user can enter, for tests that run it as another user
/// or bind-mount it into a container (the build directory may sit under a private home).
pub fn public_copy_of_binary() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("ovlbin").tempdir_in("/tmp").expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.path().join("ovlaudit");
    std::fs::copy(OVLAUDIT, &bin).expect("copy the binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, bin)
}

/// An empty configuration file, so a host's /etc/ovlaudit/ovlaudit.toml never leaks into a test.
pub fn empty_config(dir: &Path) -> String {
    let path = dir.join("empty.toml");
    std::fs::write(&path, "").expect("write config");
    path.to_str().expect("utf-8").to_owned()
}

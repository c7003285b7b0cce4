//! A private, real containerd per test: its own root, state dir, config and unix socket (no TCP listener)
//! under one `/tmp/ovcXXXXXX` directory, driven with `ctr`. Dropping it kills its tasks, stops the daemon,
//! kills the shims it left, unmounts what is still mounted and removes the directory.

use super::{processes, run_with_deadline, CLIENT_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";

/// A running private containerd.
pub struct Containerd {
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    root: PathBuf,
    /// A root outside the temp dir ([`Containerd::start_at`]), removed at drop.
    outside_root: Option<PathBuf>,
    daemon: Child,
}

impl Containerd {
    /// Starts a private containerd and waits until `ctr version` answers; `Ok(None)` (with a `SKIP:`
    /// line) when containerd or ctr is missing or this is not root — an error under `CI=true`.
    pub fn start() -> Result<Option<Containerd>, String> {
        Containerd::start_at(None)
    }

    /// [`Containerd::start`] with its root at `root` (made if missing; removed at drop once nothing is
    /// mounted below it) instead of in its temp dir: in another engine's container, say.
    pub fn start_at(at: Option<PathBuf>) -> Result<Option<Containerd>, String> {
        let ci = std::env::var("CI").as_deref() == Ok("true");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let missing = [CONTAINERD, CTR].into_iter().find(|p| !Path::new(p).is_file());
        if missing.is_some() || !root {
            let why = missing.map_or("containerd needs root".to_owned(), |p| format!("no {p}"));
            if ci {
                return Err(format!("{why}; CI=true, so a missing engine is a failure"));
            }
            eprintln!("SKIP: {why} — tests that need containerd do nothing (set CI=true to fail instead)");
            return Ok(None);
        }
        let tmp = tempfile::Builder::new()
            .prefix("ovc")
            .rand_bytes(6)
            .tempdir_in("/tmp")
            .map_err(|e| format!("create a temp dir under /tmp: {e}"))?;
        let dir = tmp.path().to_path_buf();
        let outside_root = at;
        let root = outside_root.clone().unwrap_or_else(|| dir.join("root"));
        let config = format!(
            "version = 2\nroot = \"{1}\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/sock\"\n[ttrpc]\n  address = \"{0}/sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            dir.display(),
            root.display()
        );
        std::fs::write(dir.join("config.toml"), config).map_err(|e| format!("write config.toml: {e}"))?;
        let log = std::fs::File::create(dir.join("containerd.log")).map_err(|e| format!("create log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("dup log: {e}"))?;
        let daemon = Command::new(CONTAINERD)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {CONTAINERD}: {e}"))?;
        let mut c = Containerd { tmp: Some(tmp), dir, root, outside_root, daemon };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = c.daemon.try_wait() {
                return Err(format!("containerd exited ({status}): {}", c.log_tail()));
            }
            if c.dir.join("sock").exists() && c.try_ctr(&["version"]).is_ok() {
                return Ok(Some(c));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("containerd not ready after 30 s: {}", c.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The temp dir holding everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root (`root` in its config).
    pub fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn try_ctr(&self, args: &[&str]) -> Result<String, String> {
        self.try_ctr_stdin(args, None)
    }

    fn try_ctr_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, String> {
        // runc keeps its state under /run/containerd/runc/<namespace>/<id> unless told otherwise: shared with
        // the host's own containerd and with every other private one, where the same namespace and container
        // id collide ("container with given ID already exists"). A `run` gets a runc root of its own.
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        if let Some(at) = args.iter().take(3).position(|a| a == "run") {
            args.insert(at + 1, format!("--runc-root={}", self.dir.join("runc").display()));
        }
        let mut c = Command::new(CTR);
        c.arg("--address")
            .arg(self.dir.join("sock"))
            .args(&args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = run_with_deadline(&mut c, stdin, CLIENT_TIMEOUT)?;
        if out.status.is_some_and(|s| s.success()) {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!("{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Runs `ctr ARGS` against this daemon; panics with its output if it fails.
    #[track_caller]
    pub fn ctr(&self, args: &[&str]) -> String {
        self.try_ctr(args).unwrap_or_else(|e| panic!("ctr {}: {e}\n{}", args.join(" "), self.log_tail()))
    }

    /// Like [`Containerd::ctr`], feeding `stdin`.
    #[track_caller]
    pub fn ctr_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        self.try_ctr_stdin(args, Some(stdin)).unwrap_or_else(|e| panic!("ctr {}: {e}", args.join(" ")))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("harness: the test failed; containerd's log:\n{}", self.log_tail());
        }
        if let Ok(namespaces) = self.try_ctr(&["namespaces", "list", "--quiet"]) {
            for ns in namespaces.lines() {
                for task in self.try_ctr(&["-n", ns, "tasks", "list", "--quiet"]).unwrap_or_default().lines() {
                    let _ = self.try_ctr(&["-n", ns, "tasks", "kill", "--signal", "SIGKILL", task]);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while self.try_ctr(&["-n", ns, "tasks", "delete", task]).is_err() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        if let Ok(pid) = libc::pid_t::try_from(self.daemon.id()) {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.daemon.try_wait(), Ok(Some(_)) | Err(_)) {
            if Instant::now() > deadline {
                let _ = self.daemon.kill();
                let _ = self.daemon.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let marks = processes::EngineMarks {
            dir_prefix: format!("{}/", self.dir.display()).into_bytes(),
            container_ids: Vec::new(),
        };
        marks.kill_all();
        if let Some(root) = self.outside_root.take() {
            super::remove_outside_dir(&root);
        }
        let Some(tmp) = self.tmp.take() else { return };
        super::remove_temp_dir(tmp, &self.dir);
    }
}

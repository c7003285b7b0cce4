//! A private, real Podman per test: its own storage root, run root and temp dir under one
//! `/tmp/ovpXXXXXX` directory, runc as the OCI runtime, no network. Dropping it removes every container
//! (stopping the running ones), unmounts what Podman left mounted and removes the directory.

use super::{processes, run_with_deadline, BUSYBOX, CLIENT_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const PODMAN: &str = "/usr/bin/podman";
const RUNC: &str = "/usr/sbin/runc";
/// `podman run` asks for limits above this sandbox's hard limits by default, and runc may not raise them.
pub const ULIMITS: [&str; 4] = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];

/// A private Podman: a storage root and everything else it writes, in one temp dir.
pub struct Podman {
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
}

impl Podman {
    /// A private Podman, or `Ok(None)` (with a `SKIP:` line) when podman or runc is missing or this is
    /// not root — an error under `CI=true`.
    pub fn start() -> Result<Option<Podman>, String> {
        let ci = std::env::var("CI").as_deref() == Ok("true");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let missing = [PODMAN, RUNC, BUSYBOX].into_iter().find(|p| !Path::new(p).is_file());
        let why = match (missing, root) {
            (Some(p), _) => format!("no {p}"),
            (None, false) => "podman with a private root needs root".to_owned(),
            (None, true) => {
                let tmp = tempfile::Builder::new()
                    .prefix("ovp")
                    .rand_bytes(6)
                    .tempdir_in("/tmp")
                    .map_err(|e| format!("create a temp dir under /tmp: {e}"))?;
                let dir = tmp.path().to_path_buf();
                for sub in ["root", "run", "tmp"] {
                    std::fs::create_dir(dir.join(sub)).map_err(|e| format!("create {}/{sub}: {e}", dir.display()))?;
                }
                // No host configuration may leak in: an empty containers.conf, and a storage.conf of our own.
                std::fs::write(dir.join("containers.conf"), "").map_err(|e| format!("write containers.conf: {e}"))?;
                let storage = format!(
                    "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n",
                    dir.display()
                );
                std::fs::write(dir.join("storage.conf"), storage).map_err(|e| format!("write storage.conf: {e}"))?;
                return Ok(Some(Podman { tmp: Some(tmp), dir }));
            }
        };
        if ci {
            Err(format!("{why}; CI=true, so a missing engine is a failure"))
        } else {
            eprintln!("SKIP: {why} — tests that need Podman do nothing (set CI=true to fail instead)");
            Ok(None)
        }
    }

    /// The storage root (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The temp dir holding everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(PODMAN);
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--runtime", RUNC, "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file", "--network-backend", "cni"])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `podman ARGS` against this store and returns its stdout, trimmed; panics if it fails.
    #[track_caller]
    pub fn podman(&self, args: &[&str]) -> String {
        self.podman_stdin(args, None)
    }

    /// Like [`Podman::podman`], with `stdin`.
    #[track_caller]
    pub fn podman_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let shown = format!("{PODMAN} {}", args.join(" "));
        let mut c = self.command(args);
        c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let out = run_with_deadline(&mut c, stdin, CLIENT_TIMEOUT).unwrap_or_else(|e| panic!("{shown}: {e}"));
        let ok = out.status.is_some_and(|s| s.success());
        assert!(
            ok,
            "{shown} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `podman ARGS` parsed as JSON.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.podman(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("podman {}: not JSON ({e}): {text}", args.join(" ")))
    }

    /// Imports the busybox image `name` (DESIGN.md §4 recipe); returns podman's image id.
    #[track_caller]
    pub fn import_busybox(&self, name: &str) -> String {
        let tar = super::busybox_rootfs_tar(&self.dir.join("scratch-busybox"));
        let out = self.podman_stdin(&["import", "-", name], Some(&tar));
        out.lines().last().unwrap_or_default().to_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut c = self.command(&["rm", "--all", "--force", "--time", "0"]);
        c.stdin(Stdio::null());
        if let Err(e) = run_with_deadline(&mut c, None, Duration::from_secs(60)) {
            eprintln!("harness: podman rm --all: {e}");
        }
        // conmon daemonizes; it and anything else still naming this dir are ours.
        let marks = processes::EngineMarks {
            dir_prefix: format!("{}/", self.dir.display()).into_bytes(),
            container_ids: processes::container_ids_in(&self.dir.join("root/overlay-containers")),
        };
        marks.kill_all();
        let Some(tmp) = self.tmp.take() else { return };
        super::remove_temp_dir(tmp, &self.dir);
    }
}

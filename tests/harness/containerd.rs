//! A private, real containerd per test: its own root, state dir, config and unix socket (no TCP listener)
//! under one `/tmp/ovcXXXXXX` directory, driven with `ctr` (and, with its CRI plugin enabled, through the
//! CRI gRPC API: see [`super::cri`]). Dropping it kills its tasks, stops the daemon, kills the shims it
//! left, unmounts what is still mounted, removes the cgroups its CRI pods were given and the directory.

use super::{processes, run_with_deadline, CLIENT_TIMEOUT};
use sha2::{Digest, Sha256};
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
    cri: bool,
}

/// What [`Containerd::start_with`] enables beyond [`Containerd::start`].
#[derive(Debug, Default, Clone)]
pub struct ContainerdOptions {
    /// Enables containerd's CRI plugin (`io.containerd.grpc.v1.cri`, served on the same socket) with this
    /// image reference as its sandbox (pause) image; the test imports it into `k8s.io` before it runs a
    /// pod. Everything the plugin keeps stays in this daemon's directory: its runc root, CNI directories
    /// (no CNI is installed: pods use the node's network namespace), the streaming server on loopback;
    /// `restrict_oom_score_adj`, since these machines withhold `CAP_SYS_RESOURCE` and a sandbox's
    /// `oom_score_adj` of -998 would fail in runc; AppArmor off, so no profile is loaded into the kernel.
    pub cri_sandbox_image: Option<String>,
    /// The root (`root` in its config) at this directory (made if missing; removed at drop once nothing
    /// is mounted below it) instead of in its temp dir.
    pub root_at: Option<PathBuf>,
}

impl Containerd {
    /// Starts a private containerd and waits until `ctr version` answers; `Ok(None)` (with a `SKIP:`
    /// line) when containerd or ctr is missing or this is not root — an error under `CI=true`.
    pub fn start() -> Result<Option<Containerd>, String> {
        Containerd::start_with(ContainerdOptions::default())
    }

    /// [`Containerd::start`] with its root at `root` (made if missing; removed at drop once nothing is
    /// mounted below it) instead of in its temp dir: in another engine's container, say.
    pub fn start_at(at: Option<PathBuf>) -> Result<Option<Containerd>, String> {
        Containerd::start_with(ContainerdOptions { root_at: at, ..ContainerdOptions::default() })
    }

    /// [`Containerd::start`] with [`ContainerdOptions`].
    pub fn start_with(options: ContainerdOptions) -> Result<Option<Containerd>, String> {
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
        let outside_root = options.root_at.clone();
        let root = outside_root.clone().unwrap_or_else(|| dir.join("root"));
        let d = dir.display();
        let mut config = format!(
            "version = 2\nroot = \"{r}\"\nstate = \"{d}/state\"\n\
             [grpc]\n  address = \"{d}/sock\"\n[ttrpc]\n  address = \"{d}/sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
            r = root.display()
        );
        match &options.cri_sandbox_image {
            None => config.insert_str(0, "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"),
            Some(image) => config.push_str(&cri_config(&dir, image)),
        }
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
        let mut c =
            Containerd { tmp: Some(tmp), dir, root, outside_root, daemon, cri: options.cri_sandbox_image.is_some() };
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

    /// The unix socket of its gRPC API (the CRI's too, when enabled).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The cgroup parent to give the CRI pods of this daemon (`LinuxPodSandboxConfig.cgroup_parent`, as a
    /// kubelet gives `/kubepods/…`): unique to it, and removed on drop.
    pub fn cri_cgroup_parent(&self) -> String {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("/ovlaudit-test-{name}")
    }

    /// Imports into namespace `ns` a one-layer image `reference` (`docker.io/library/NAME:TAG`) holding
    /// busybox (DESIGN.md §4 recipe) whose config sets `PATH` and `cmd` as its `CMD`, as an OCI image
    /// layout archive built here (no other engine involved). Returns the manifest's digest.
    #[track_caller]
    pub fn import_busybox(&self, ns: &str, reference: &str, cmd: &[&str]) -> String {
        let stage = self.dir.join(format!("image-{}", reference.replace(['/', ':'], "_")));
        let layer = super::busybox_rootfs_tar(&stage.join("rootfs"));
        let layout = stage.join("oci");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("create {}: {e}", blobs.display()));
        let put = |bytes: &[u8]| -> (String, usize) {
            let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(blobs.join(&hex), bytes).unwrap_or_else(|e| panic!("write blob {hex}: {e}"));
            (format!("sha256:{hex}"), bytes.len())
        };
        let (layer_digest, layer_size) = put(&layer);
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let (config_digest, config_size) = put(config.to_string().as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        });
        let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
        let tag = reference.rsplit_once(':').map_or("latest", |(_, t)| t);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_size,
                "annotations": {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(layout.join("index.json"), index.to_string()).expect("write index.json");
        std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
        let archive = super::run_tool(Command::new("tar").arg("-C").arg(&layout).args([
            "-c",
            "oci-layout",
            "index.json",
            "blobs",
        ]));
        self.ctr_stdin(&["-n", ns, "images", "import", "-"], &archive);
        manifest_digest
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
        if self.cri {
            remove_cgroups(&self.cri_cgroup_parent());
        }
        if let Some(root) = self.outside_root.take() {
            super::remove_outside_dir(&root);
        }
        let Some(tmp) = self.tmp.take() else { return };
        super::remove_temp_dir(tmp, &self.dir);
    }
}

/// The CRI plugin's section of the config (see [`ContainerdOptions::cri_sandbox_image`]).
fn cri_config(dir: &Path, sandbox_image: &str) -> String {
    let d = dir.display();
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    [
        format!("[{cri}]"),
        format!("  sandbox_image = \"{sandbox_image}\""),
        "  restrict_oom_score_adj = true".into(),
        "  disable_apparmor = true".into(),
        "  stream_server_address = \"127.0.0.1\"".into(),
        "  stream_server_port = \"0\"".into(),
        format!("[{cri}.containerd]"),
        "  snapshotter = \"overlayfs\"".into(),
        "  default_runtime_name = \"runc\"".into(),
        format!("[{cri}.containerd.runtimes.runc]"),
        "  runtime_type = \"io.containerd.runc.v2\"".into(),
        format!("[{cri}.containerd.runtimes.runc.options]"),
        format!("  Root = \"{d}/runc\""),
        format!("[{cri}.cni]"),
        format!("  bin_dir = \"{d}/cni/bin\""),
        format!("  conf_dir = \"{d}/cni/conf\""),
    ]
    .join("\n")
        + "\n"
}

/// Removes the cgroup `parent` (and the cgroups below it, deepest first) from every cgroup hierarchy
/// mounted here; what still has processes stays, and is said on stderr.
fn remove_cgroups(parent: &str) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else { continue };
        if !matches!(fields.get(dash + 1), Some(&"cgroup" | &"cgroup2")) {
            continue;
        }
        let top = Path::new(fields[4]).join(parent.trim_start_matches('/'));
        remove_cgroup_tree(&top);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path());
        }
    }
    // A cgroup directory's files are the kernel's; rmdir removes it once it has no children or tasks.
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!("harness: rmdir cgroup {}: {e}", dir.display());
    }
}

//! A private, real Docker engine per test.
//!
//! [`Engine::start`] runs a `dockerd` of its own — temp data root, exec root, pidfile, unix socket and
//! log, no bridge and no iptables — so tests can make images and containers and compare what `ovlaudit`
//! reports with what the engine's API says (DESIGN.md §4). Several engines run side by side; each lives
//! in its own `/tmp/ovdXXXXXX` directory. Dropping the engine stops it and removes every trace, even when
//! the test panicked.
//!
//! This is not a Docker SDK: the client is the real `/usr/bin/docker`, and [`Engine::api_get`] is a
//! plain `GET` for reading the engine's own view as the reference.

// The harness is shared by every test module; not each of them uses every helper.
#![allow(dead_code)]

pub mod containerd;
pub mod cri;
mod http;
pub mod mounts;
pub mod podman;
mod processes;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The client to drive every engine with. Spelled out because `/usr/local/bin/docker` on these
/// machines is an unrelated, newer client that may speak an API version dockerd 20.10 rejects.
pub const DOCKER_CLIENT: &str = "/usr/bin/docker";
/// Where [`Engine::import_busybox`] takes its one static binary from (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";
/// Overrides where to find `dockerd`.
pub const DOCKERD_ENV: &str = "OVLAUDIT_DOCKERD";
const DEFAULT_DOCKERD: &str = "/usr/sbin/dockerd";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// A generous bound on one client command, so a wedged engine fails the test instead of hanging CI.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);
/// `sockaddr_un.sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const LOG_TAIL_LINES: usize = 40;

/// A running private `dockerd`, stopped and cleaned up on drop.
///
/// dockerd is started with `PR_SET_PDEATHSIG(SIGTERM)` as a backstop for a test process that dies
/// without unwinding. That signal fires when the *thread* that spawned dockerd exits, not the
/// process: fine for the usual case, because the test harness runs each test on its own thread and
/// the engine is dropped before that thread ends. It does mean an `Engine` must not be created on one
/// thread and then shared with others that outlive it (say, through a `static`): the engine would be
/// terminated when its creating thread finishes.
pub struct Engine {
    /// `Some` until [`Drop`] decides whether the directory can be removed.
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    data_root: PathBuf,
    /// The data root as dockerd names it: `data_root` unless [`EngineOptions::data_root_named`].
    named_data_root: PathBuf,
    exec_root: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    client_config: PathBuf,
    daemon: Child,
    /// Started with [`EngineOptions::node_namespaces`]: `daemon` is `unshare`, dockerd its child.
    node_namespaces: bool,
    scratch_dirs: AtomicU32,
    /// [`EngineOptions::data_root_at`]: removed at drop.
    outside_data_root: Option<PathBuf>,
}

/// What [`Engine::start_with`] does beyond the defaults of [`Engine::start`].
#[derive(Debug, Default, Clone)]
pub struct EngineOptions {
    /// Names the data root as a stock install does (`/var/lib/docker`): dockerd runs in a mount namespace
    /// of its own where its temp data root is bind-mounted at this path, and is given this path as
    /// `--data-root`, so its API and its overlay mounts say `/var/lib/docker/overlay2/…`. Nothing changes
    /// at that path on the host; if it does not exist there, it is made in an overlay over its parent,
    /// inside that namespace only. The engine's mounts stay in that namespace too.
    pub data_root_named: Option<PathBuf>,
    /// Runs dockerd as a node of its own: in new mount and PID namespaces (`unshare --mount --pid --fork
    /// --mount-proc`) where `/` is made recursively shared, as systemd makes a Kubernetes node's `/`.
    /// There, Docker accepts `rslave` and `rshared` binds of `/` (it refuses them from a private `/`, as
    /// this project's VMs have), dockerd is pid 1, a container's `--pid host` is dockerd's PID namespace
    /// and its `/proc/1/mountinfo` is dockerd's mount table. Nothing changes in the host's namespaces: the
    /// shared peer group exists only inside. Mounts of the engine and its containers stay inside too, so
    /// an `ovlaudit` run from the test sees them only through `/proc/<dockerd pid>/`.
    pub node_namespaces: bool,
    /// Puts the data root at this directory (made if missing) instead of in the engine's temp dir: inside
    /// another engine's container, say, to make a nested engine. It is removed with the engine, once
    /// nothing is mounted below it.
    pub data_root_at: Option<PathBuf>,
}

/// Run by `unshare --mount` as `sh -c SCRIPT sh DATA NAMED DIR DOCKERD ARGS…`: puts the data root at
/// NAMED in the new mount namespace, then becomes dockerd (same pid, so the harness's signals reach it).
const NAMED_ROOT_SCRIPT: &str = r#"set -e
data=$1 named=$2 dir=$3
shift 3
if [ ! -d "$named" ]; then
    parent=$(dirname "$named")
    mkdir "$dir/named-upper" "$dir/named-work"
    mount -t overlay overlay -o "lowerdir=$parent,upperdir=$dir/named-upper,workdir=$dir/named-work" "$parent"
    mkdir "$named"
fi
mount --bind "$data" "$named"
exec "$@"
"#;

/// [`Engine::start`] for a test: `None` when the engine is unavailable outside CI (the skip is printed);
/// a failure to start panics with the cause.
pub fn start_engine() -> Option<Engine> {
    Engine::start().unwrap_or_else(|e| panic!("cannot start a private dockerd: {e}"))
}

impl Engine {
    /// Starts a private dockerd and waits until `GET /_ping` answers.
    ///
    /// dockerd is found through `$OVLAUDIT_DOCKERD`, else at `/usr/sbin/dockerd`, else on `PATH`.
    /// Without a usable engine (no dockerd, no client at [`DOCKER_CLIENT`], or not root) it prints a
    /// `SKIP:` line to stderr and returns `Ok(None)` — unless `CI=true`, where that is an error naming
    /// what was looked for. An engine that exists but does not come up is always an error, with the
    /// tail of its log.
    pub fn start() -> Result<Option<Engine>, String> {
        Engine::start_with(EngineOptions::default())
    }

    /// [`Engine::start`] with [`EngineOptions`].
    pub fn start_with(options: EngineOptions) -> Result<Option<Engine>, String> {
        let ci = std::env::var("CI").as_deref() == Ok("true");
        let dockerd = match find_dockerd() {
            Ok(path) => path,
            Err(looked_at) => return unavailable(ci, &format!("no dockerd found at {looked_at}")),
        };
        if !Path::new(DOCKER_CLIENT).is_file() {
            return unavailable(ci, &format!("no docker client at {DOCKER_CLIENT}"));
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return unavailable(ci, &format!("dockerd at {} needs root, this is euid {euid}", dockerd.display()));
        }

        // A short prefix under /tmp keeps the socket far below the 107-byte limit.
        let tmp = tempfile::Builder::new()
            .prefix("ovd")
            .rand_bytes(6)
            .tempdir_in("/tmp")
            .map_err(|e| format!("create a temp dir under /tmp: {e}"))?;
        let dir = tmp.path().to_path_buf();
        // 0711: other users may traverse it but not list it, so processes running as another user
        // (in a container that has the data root bind-mounted, say) can still resolve paths below it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| format!("chmod {}: {e}", dir.display()))?;

        let data_root = options.data_root_at.clone().unwrap_or_else(|| dir.join("data"));
        let exec_root = dir.join("exec");
        let socket = dir.join("sock");
        let log = dir.join("dockerd.log");
        let client_config = dir.join("client");
        let daemon_config = dir.join("daemon.json");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(format!("socket path {} is longer than {MAX_SOCKET_PATH} bytes", socket.display()));
        }
        std::fs::create_dir(&client_config).map_err(|e| format!("create {}: {e}", client_config.display()))?;
        // An empty config file, so a host's /etc/docker/daemon.json (hosts, data-root, …) can neither
        // conflict with the flags below nor leak into the test.
        std::fs::write(&daemon_config, "{}\n").map_err(|e| format!("write {}: {e}", daemon_config.display()))?;
        let log_file = std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let log_file_too = log_file.try_clone().map_err(|e| format!("dup the handle of {}: {e}", log.display()))?;

        let named_data_root = options.data_root_named.clone().unwrap_or_else(|| data_root.clone());
        if options.node_namespaces && options.data_root_named.is_some() {
            return Err("EngineOptions: node_namespaces and data_root_named do not combine".into());
        }
        let mut command = match &options.data_root_named {
            None if options.node_namespaces => {
                let mut unshare = Command::new("unshare");
                // --kill-child: if unshare dies, dockerd (pid 1 there) gets SIGKILL, and with it every
                // process of the namespace.
                unshare
                    .args(["--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "shared"])
                    .arg("--")
                    .arg(&dockerd);
                unshare
            }
            None => Command::new(&dockerd),
            Some(named) => {
                // The bind mount needs its source before dockerd would make it.
                std::fs::create_dir(&data_root).map_err(|e| format!("create {}: {e}", data_root.display()))?;
                let mut unshare = Command::new("unshare");
                unshare
                    .args(["--mount", "--propagation", "private", "--", "sh", "-c", NAMED_ROOT_SCRIPT, "sh"])
                    .arg(&data_root)
                    .arg(named)
                    .arg(&dir)
                    .arg(&dockerd);
                unshare
            }
        };
        command
            .arg("--config-file")
            .arg(&daemon_config)
            .arg("--data-root")
            .arg(&named_data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            // The product audits overlay2; a silent fallback to vfs would make every test meaningless.
            .arg("--storage-driver=overlay2")
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            // Bounds the daemon's own shutdown. It does not shorten each container's 10 s stop
            // timeout, which is why Drop kills the containers first (see `kill_containers`).
            .args(["--shutdown-timeout", "2"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_file_too);
        // `unshare --fork` blocks SIGTERM while it waits for its child, so it gets SIGKILL instead (and its
        // --kill-child passes that on).
        let death_signal = if options.node_namespaces { libc::SIGKILL } else { libc::SIGTERM };
        // SAFETY: the hook only calls prctl, which is async-signal-safe, and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // The spawning thread is blocked in spawn() until exec succeeds, so it can't have
                // exited before this takes effect.
                if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let daemon = command.spawn().map_err(|e| format!("spawn {:?}: {e}", command.get_program()))?;

        // From here on, Drop cleans up whatever happens, including a failed wait below.
        let mut engine = Engine {
            tmp: Some(tmp),
            dir,
            data_root,
            named_data_root,
            exec_root,
            socket,
            log,
            client_config,
            daemon,
            node_namespaces: options.node_namespaces,
            scratch_dirs: AtomicU32::new(0),
            outside_data_root: options.data_root_at.clone(),
        };
        engine.wait_ready(&dockerd)?;
        Ok(Some(engine))
    }

    /// The engine's data root, as the host names it (its `--data-root`, unless started with
    /// [`EngineOptions::data_root_named`]).
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// The data root as the engine names it in its API and mounts: [`Engine::data_root`], unless
    /// started with [`EngineOptions::data_root_named`].
    pub fn named_data_root(&self) -> &Path {
        &self.named_data_root
    }

    /// The engine's `--exec-root` (containerd's state and the runc state live below it).
    pub fn exec_root(&self) -> &Path {
        &self.exec_root
    }

    /// The unix socket the engine API listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temp dir holding everything of this engine; it is gone after drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pid of the dockerd this harness started (as the host sees it).
    pub fn pid(&self) -> u32 {
        if self.node_namespaces {
            if let Some(child) = processes::child_of(self.daemon.id()) {
                return child;
            }
        }
        self.daemon.id()
    }

    /// The pid, as the host sees it, of a process the engine's API names `pid` (`State.Pid`): the same
    /// number, unless the engine runs in [`EngineOptions::node_namespaces`].
    pub fn host_pid(&self, pid: u32) -> Option<u32> {
        if !self.node_namespaces {
            return Some(pid);
        }
        processes::host_pid_in_namespace_of(self.pid(), pid)
    }

    /// Runs `/usr/bin/docker ARGS` against this engine and returns its stdout, trimmed.
    ///
    /// Panics with the command, its exit status, stdout and stderr if it fails or takes more than
    /// five minutes.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> String {
        self.run_client(args, None)
    }

    /// Like [`Engine::docker`], feeding `stdin` to the client (for `import -`, `load`, …).
    #[track_caller]
    pub fn docker_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        self.run_client(args, Some(stdin))
    }

    /// `GET path` on the engine API (`/containers/json?all=1`), parsed as JSON.
    ///
    /// Panics with the status and body if the engine does not answer 2xx, or if the body is not JSON.
    #[track_caller]
    pub fn api_get(&self, path: &str) -> serde_json::Value {
        // Matches rather than closures, so #[track_caller] reports the test's line.
        let response = match http::get(&self.socket, path, API_TIMEOUT) {
            Ok(response) => response,
            Err(e) => panic!("engine API request failed: {e}"),
        };
        assert!(
            (200..300).contains(&response.status),
            "GET {path} on {}: HTTP {}: {}",
            self.socket.display(),
            response.status,
            response.body_text()
        );
        match serde_json::from_slice(&response.body) {
            Ok(value) => value,
            Err(e) => {
                panic!("GET {path} on {}: body is not JSON ({e}): {}", self.socket.display(), response.body_text())
            }
        }
    }

    /// Imports a one-layer image `name` holding `/bin/busybox` and a symlink to it for every applet
    /// `busybox --list` names (the DESIGN.md §4 recipe). Returns the image id (`sha256:…`).
    #[track_caller]
    pub fn import_busybox(&self, name: &str) -> String {
        let root = self.scratch_dir("busybox");
        let bin = root.join("bin");
        std::fs::create_dir(&bin).unwrap_or_else(|e| panic!("create {}: {e}", bin.display()));
        std::fs::copy(BUSYBOX, bin.join("busybox"))
            .unwrap_or_else(|e| panic!("copy {BUSYBOX} into {}: {e}", bin.display()));

        let list = run_tool(Command::new(BUSYBOX).arg("--list"));
        let applets = String::from_utf8(list).expect("busybox --list prints applet names in ASCII");
        for applet in applets.lines().map(str::trim) {
            if applet.is_empty() || applet == "busybox" || applet.contains('/') {
                continue;
            }
            let link = bin.join(applet);
            std::os::unix::fs::symlink("busybox", &link)
                .unwrap_or_else(|e| panic!("symlink {} -> busybox: {e}", link.display()));
        }

        let tar = run_tool(Command::new("tar").arg("-C").arg(&root).args(["-c", "."]));
        self.docker_stdin(&["import", "-", name], &tar)
    }

    /// `docker save NAME`: the image as an OCI/Docker archive, for importing into another engine.
    #[track_caller]
    pub fn save(&self, name: &str) -> Vec<u8> {
        let out = self.scratch_dir("save").join("image.tar");
        let path = out.to_str().expect("the temp dir path is ASCII, made by this harness");
        self.docker(&["save", "-o", path, name]);
        std::fs::read(&out).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    /// Builds `dockerfile` (with the classic builder, `DOCKER_BUILDKIT=0`) in an otherwise empty
    /// context, tags it `tag` and returns the image id (`sha256:…`).
    #[track_caller]
    pub fn build(&self, tag: &str, dockerfile: &str) -> String {
        let context = self.scratch_dir("build");
        let path = context.join("Dockerfile");
        std::fs::write(&path, dockerfile).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let context = context.to_str().expect("the temp dir path is ASCII, made by this harness");
        self.docker(&["build", "--tag", tag, context]);
        self.docker(&["image", "inspect", "--format", "{{.Id}}", tag])
    }

    /// Builds `tag` as `from` plus `layers` layers of one small file each (`/layer-1` …), with `COPY`, which
    /// runs no container; returns the image id. Docker mounts a container of such an image with relative
    /// `lowerdir=l/…` paths once its layers' absolute paths would not fit in one page of mount options
    /// (DESIGN.md §2): with 70 layers over a one-layer base, every data root these tests use.
    #[track_caller]
    pub fn build_layered(&self, tag: &str, from: &str, layers: usize) -> String {
        let mut dockerfile = format!("FROM {from}\n");
        for i in 1..=layers {
            dockerfile.push_str(&format!("COPY Dockerfile /layer-{i}\n"));
        }
        self.build(tag, &dockerfile)
    }

    /// A fresh directory under the engine's temp dir, for build contexts and staged root filesystems.
    fn scratch_dir(&self, kind: &str) -> PathBuf {
        let n = self.scratch_dirs.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join("scratch").join(format!("{n}-{kind}"));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        path
    }

    #[track_caller]
    fn run_client(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let shown = format!("DOCKER_HOST=unix://{} {DOCKER_CLIENT} {}", self.socket.display(), args.join(" "));
        let mut command = Command::new(DOCKER_CLIENT);
        command
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            // A private client config: no credential helpers, contexts or plugins from the host.
            .env("DOCKER_CONFIG", &self.client_config)
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let outcome = match run_with_deadline(&mut command, stdin, CLIENT_TIMEOUT) {
            Ok(outcome) => outcome,
            Err(e) => panic!("{shown}: {e}"),
        };
        let stdout = String::from_utf8_lossy(&outcome.stdout);
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        let failure = match (&outcome.status, &outcome.stdin_error) {
            (None, _) => Some(format!("killed after {} s without finishing", CLIENT_TIMEOUT.as_secs())),
            (Some(status), _) if !status.success() => Some(format!("failed ({status})")),
            (Some(_), Some(e)) => Some(format!("did not take all of its stdin: {e}")),
            _ => None,
        };
        if let Some(failure) = failure {
            panic!("{shown}\n{failure}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
        }
        stdout.trim().to_string()
    }

    fn wait_ready(&mut self, dockerd: &Path) -> Result<(), String> {
        let started = Instant::now();
        let mut last_error = String::from("the socket never appeared");
        loop {
            match self.daemon.try_wait() {
                Ok(Some(status)) => {
                    let what = format!("exited ({status})");
                    return Err(self.not_ready(dockerd, &what));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("wait for {}: {e}", dockerd.display())),
            }
            if self.socket.exists() {
                match http::get(&self.socket, "/_ping", Duration::from_secs(2)) {
                    Ok(response) if response.status == 200 => return Ok(()),
                    Ok(response) => last_error = format!("HTTP {}: {}", response.status, response.body_text()),
                    Err(e) => last_error = e,
                }
            }
            if started.elapsed() > READY_TIMEOUT {
                let what = format!("still running after {} s (last attempt: {last_error})", READY_TIMEOUT.as_secs());
                return Err(self.not_ready(dockerd, &what));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn not_ready(&self, dockerd: &Path, what: &str) -> String {
        format!(
            "{} {what} without answering GET /_ping on {}; the last lines of its log:\n{}",
            dockerd.display(),
            self.socket.display(),
            self.log_tail()
        )
    }

    fn log_tail(&self) -> String {
        match std::fs::read(&self.log) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", self.log.display()),
        }
    }

    /// Kills the running containers through the API, so the daemon's shutdown need not wait for them.
    ///
    /// dockerd stops each container on SIGTERM with that container's own stop timeout (10 s unless
    /// `--stop-timeout` was given at `run`); `--shutdown-timeout` does not shorten it, and a `sleep` as
    /// pid 1 ignores SIGTERM. Failures only cost time, so they are reported, not raised.
    fn kill_containers(&self) {
        if !self.socket.exists() {
            // It never came up; there is nothing to ask.
            return;
        }
        let running = match http::get(&self.socket, "/containers/json", Duration::from_secs(10)) {
            Ok(response) if response.status == 200 => response.body,
            Ok(response) => {
                eprintln!("harness: listing containers to kill: HTTP {}", response.status);
                return;
            }
            Err(e) => {
                eprintln!("harness: listing containers to kill: {e}");
                return;
            }
        };
        let running: serde_json::Value = serde_json::from_slice(&running).unwrap_or_default();
        let ids = running.as_array().into_iter().flatten().filter_map(|container| container["Id"].as_str());
        for id in ids {
            let path = format!("/containers/{id}/kill");
            match http::post(&self.socket, &path, Duration::from_secs(10)) {
                // 409: it stopped in the meantime.
                Ok(response) if matches!(response.status, 204 | 409) => {}
                Ok(response) => eprintln!("harness: POST {path}: HTTP {}: {}", response.status, response.body_text()),
                Err(e) => eprintln!("harness: POST {path}: {e}"),
            }
        }
    }

    /// SIGTERM to our dockerd (it stops its containerd), SIGKILL if it takes too long. The pid is
    /// safe to signal: it stays ours until we reap it.
    fn stop_daemon(&mut self) {
        if matches!(self.daemon.try_wait(), Ok(Some(_))) {
            return;
        }
        self.kill_containers();
        // With node namespaces, SIGTERM goes to dockerd itself (unshare blocks it); unshare exits with it.
        let Ok(pid) = libc::pid_t::try_from(self.pid()) else {
            return;
        };
        // SAFETY: kill has no memory-safety preconditions; pid is our unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.daemon.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "harness: dockerd pid {pid} still running {} s after SIGTERM; sending SIGKILL",
            STOP_TIMEOUT.as_secs()
        );
        if let Err(e) = self.daemon.kill() {
            eprintln!("harness: SIGKILL to dockerd pid {pid}: {e}");
        }
        if let Err(e) = self.daemon.wait() {
            eprintln!("harness: reaping dockerd pid {pid}: {e}");
        }
    }

    /// Kills what a dockerd that did not shut down cleanly leaves running: containerd, the shims
    /// (daemonized, so not our children) and container processes. See [`processes::EngineMarks`].
    fn kill_leftovers(&self) {
        let marks = processes::EngineMarks {
            dir_prefix: format!("{}/", self.dir.display()).into_bytes(),
            container_ids: processes::container_ids_in(&self.data_root.join("containers")),
        };
        let (leftovers, survivors) = marks.kill_all();
        if !leftovers.is_empty() {
            eprintln!("harness: killed processes left by the engine in {}: {leftovers:?}", self.dir.display());
        }
        if !survivors.is_empty() {
            eprintln!("harness: still alive after SIGKILL: {survivors:?}");
        }
    }

    fn remove_dir(&mut self) {
        if let Some(root) = self.outside_data_root.take() {
            remove_outside_dir(&root);
        }
        let Some(tmp) = self.tmp.take() else {
            return;
        };
        remove_temp_dir(tmp, &self.dir);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("harness: the test failed; last lines of {}:\n{}", self.log.display(), self.log_tail());
        }
        self.stop_daemon();
        self.kill_leftovers();
        self.remove_dir();
    }
}

/// Where `dockerd` is, or a description of everywhere it was looked for.
fn find_dockerd() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(DOCKERD_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        // An explicit choice that is wrong must not silently fall back to another engine.
        return if path.is_file() { Ok(path) } else { Err(format!("{DOCKERD_ENV}={} (no such file)", path.display())) };
    }
    if Path::new(DEFAULT_DOCKERD).is_file() {
        return Ok(PathBuf::from(DEFAULT_DOCKERD));
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path_var) {
        let candidate = dir.join("dockerd");
        let executable = candidate.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if executable {
            return Ok(candidate);
        }
    }
    Err(format!("${DOCKERD_ENV} (unset), {DEFAULT_DOCKERD}, or `dockerd` on PATH={}", path_var.to_string_lossy()))
}

fn unavailable(ci: bool, why: &str) -> Result<Option<Engine>, String> {
    if ci {
        Err(format!("{why}; CI=true, so a missing engine is a failure"))
    } else {
        eprintln!("SKIP: {why} — tests that need a Docker engine do nothing (set CI=true to fail instead)");
        Ok(None)
    }
}

/// A tar of a root filesystem holding `/bin/busybox` and a symlink to it for every applet, staged in
/// `dir` (created here): the DESIGN.md §4 recipe, for engines other than Docker.
pub fn busybox_rootfs_tar(dir: &Path) -> Vec<u8> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("create {}: {e}", bin.display()));
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap_or_else(|e| panic!("copy {BUSYBOX}: {e}"));
    let list = run_tool(Command::new(BUSYBOX).arg("--list"));
    for applet in String::from_utf8_lossy(&list).lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = bin.join(applet);
        std::os::unix::fs::symlink("busybox", &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    }
    run_tool(Command::new("tar").arg("-C").arg(dir).args(["-c", "."]))
}

/// Runs a local tool (busybox, tar) to completion; panics with its output if it fails.
fn run_tool(command: &mut Command) -> Vec<u8> {
    let shown = format!("{command:?}");
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

struct ClientOutcome {
    /// `None` when the deadline passed and the client was killed.
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdin_error: Option<std::io::Error>,
}

/// Spawns `command` (stdout and stderr piped), feeds it `stdin`, collects its output, and kills it if
/// it outlives `timeout`. Threads move the bytes so a full pipe can't deadlock the wait.
fn run_with_deadline(command: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Result<ClientOutcome, String> {
    let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
    let child_stdin = child.stdin.take();
    let mut child_stdout = child.stdout.take().ok_or("stdout was not piped")?;
    let mut child_stderr = child.stderr.take().ok_or("stderr was not piped")?;
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || match (child_stdin, stdin) {
            // Dropping the handle at the end of the closure closes the pipe: EOF for the client.
            (Some(mut pipe), Some(bytes)) => pipe.write_all(bytes).err(),
            _ => None,
        });
        let out = scope.spawn(move || {
            let mut buf = Vec::new();
            child_stdout.read_to_end(&mut buf).map(|_| buf)
        });
        let err = scope.spawn(move || {
            let mut buf = Vec::new();
            child_stderr.read_to_end(&mut buf).map(|_| buf)
        });

        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    // Our own child, not yet reaped: the pid can't have been reused.
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    let _ = child.kill();
                    return Err(format!("wait: {e}"));
                }
            }
        };
        let join = |what: &str| format!("the thread collecting {what} panicked");
        let stdin_error = writer.join().map_err(|_| join("stdin"))?;
        let stdout = out.join().map_err(|_| join("stdout"))?.map_err(|e| format!("read stdout: {e}"))?;
        let stderr = err.join().map_err(|_| join("stderr"))?.map_err(|e| format!("read stderr: {e}"))?;
        Ok(ClientOutcome { status, stdout, stderr, stdin_error })
    })
}

/// Removes a directory an engine kept outside its temp dir ([`EngineOptions::data_root_at`]) once nothing is
/// mounted below it; kept (and said) otherwise.
pub(crate) fn remove_outside_dir(dir: &Path) {
    match mounts::detach_all_under(dir) {
        Ok(remaining) if remaining.is_empty() => {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("harness: removing {}: {e}", dir.display());
                }
            }
        }
        Ok(remaining) => eprintln!("harness: keeping {}; still mounted below it: {remaining:?}", dir.display()),
        Err(e) => eprintln!("harness: keeping {}: {e}", dir.display()),
    }
}

/// Removes an engine's temp dir once nothing is mounted below it: every mount under it is detached first
/// (deepest first), and if any remains the directory is kept, since `remove_dir_all` must never walk into a
/// mount (it could be a bind of a host directory).
pub(crate) fn remove_temp_dir(tmp: tempfile::TempDir, dir: &Path) {
    match mounts::detach_all_under(dir) {
        Ok(remaining) if remaining.is_empty() => {
            if let Err(e) = tmp.close() {
                eprintln!("harness: removing {}: {e}", dir.display());
            }
        }
        Ok(remaining) => {
            let kept = tmp.keep();
            eprintln!("harness: keeping {}; still mounted below it: {remaining:?}", kept.display());
        }
        Err(e) => {
            let kept = tmp.keep();
            eprintln!("harness: keeping {}: {e}", kept.display());
        }
    }
}

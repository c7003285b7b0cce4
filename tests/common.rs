//! Running the real `ovlaudit` binary from tests.

#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// The binary under test.
pub const OVLAUDIT: &str = env!("CARGO_BIN_EXE_ovlaudit");

/// Where the host's own engines keep their storage, which `ovlaudit report` reads by default: Docker's
/// data root, the system containers-storage (Podman, CRI-O) and the rootless ones, containerd's root.
fn host_stores() -> Vec<String> {
    let mut stores: Vec<String> = ["/var/lib/docker", "/var/lib/containers", "/var/lib/containerd"]
        .into_iter()
        .chain(["/root/.local/share/containers"])
        .map(str::to_owned)
        .collect();
    if let Ok(homes) = std::fs::read_dir("/home") {
        for home in homes.flatten() {
            stores.push(home.path().join(".local/share/containers").to_string_lossy().into_owned());
        }
    }
    stores
}

/// `ovlaudit` that cannot see the host's own engines: run as root, it starts in a private mount namespace
/// where an empty read-only tmpfs covers each of [`host_stores`] that exists, so only the storage a test
/// names or makes (under /tmp) is read, whatever the host runs. The host's mount table
/// (`/proc/1/mountinfo`) stays the host's. Without root or `unshare`: the plain binary.
pub fn hermetic_ovlaudit() -> Command {
    hermetic(OVLAUDIT)
}

/// `program` (`ovlaudit`, or a wrapper that runs it, such as `setpriv`) in the namespace of
/// [`hermetic_ovlaudit`].
pub fn hermetic(program: &str) -> Command {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/usr/bin/unshare").exists() {
        return Command::new(program);
    }
    let script = "for d in \"$@\"; do [ \"$d\" = -- ] && break; \
                  if [ -d \"$d\" ]; then mount -t tmpfs -o ro,size=4k ovlaudit-test-hidden \"$d\" || exit 125; fi; \
                  shift; done; shift; exec \"$@\"";
    let mut c = Command::new("/usr/bin/unshare");
    c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh"]);
    c.args(host_stores()).arg("--").arg(program);
    c
}

/// Runs `ovlaudit` with `args` (see [`hermetic_ovlaudit`]) and returns its output, whatever the exit status.
pub fn ovlaudit(args: &[&str]) -> Output {
    hermetic_ovlaudit().args(args).output().expect("run the ovlaudit binary")
}

/// `ovlaudit report --format json --docker-root ROOT`, which must succeed; the parsed document.
pub fn report_json(docker_root: &Path) -> Value {
    let root = docker_root.to_str().expect("test paths are UTF-8");
    let out = ovlaudit(&["report", "--format", "json", "--docker-root", root]);
    // Through `ovlaudit`: the host's own Podman and containerd stay out of the document.
    assert!(out.status.success(), "ovlaudit report failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("report is one JSON document")
}

/// The report's container with this id.
pub fn container<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["containers"]
        .as_array()
        .expect("containers is an array")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("container {id} is not in the report"))
}

/// `du -sB1 DIR`: allocated bytes, each inode once, an independent reference.
pub fn du_allocated(dir: &str) -> u64 {
    let out = Command::new("du").args(["-sB1", dir]).output().expect("run du");
    assert!(out.status.success(), "du failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a number first")
}

/// ChainIDs of DiffIDs computed with `sha256sum`, independently of ovlaudit's own code.
pub fn chain_ids_by_sha256sum(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => {
                let mut child = Command::new("sha256sum")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("run sha256sum");
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(format!("{parent} {d}").as_bytes())
                    .expect("write to sha256sum");
                let out = child.wait_with_output().expect("sha256sum output");
                format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("hash"))
            }
        };
        out.push(next);
    }
    out
}

/// Installs, in the calling process (for a `pre_exec` hook: it only calls `prctl`, which is
/// async-signal-safe), a seccomp filter that fails system call `nr` with `errno`; every other call is
/// allowed. What a kernel without the call (ENOSYS) or a runtime's filter (EPERM) does to a process.
pub fn fail_syscall(nr: libc::c_long, errno: i32) -> std::io::Result<()> {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7;
    let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LD_ABS_W: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let prog = [
        f(LD_ABS_W, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 1, 0, ARCH),
        f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        f(LD_ABS_W, 0, 0, 0), // seccomp_data.nr
        f(JEQ_K, 0, 1, nr as u32),
        f(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)),
        f(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr().cast_mut() };
    // SAFETY: prctl with these arguments reads only `fprog`, which points at `prog`, alive for the call.
    let rc = unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const libc::sock_fprog)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

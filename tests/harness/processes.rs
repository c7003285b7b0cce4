//! Finding and killing processes an engine left behind.
//!
//! When dockerd stops cleanly it stops its containers and its containerd, and nothing remains. When it
//! had to be killed, containerd's shims (which daemonize, so they are not our children) and the
//! container processes under them survive. They are found by what ties them to *this* engine — a
//! command line naming its unique temp dir, or a cgroup naming one of its container ids — never by
//! process name.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// What ties a process to one engine: its unique temp dir on the command line (containerd and the
/// shims name the exec root in their arguments), or one of its container ids in the process's cgroup
/// path (container processes, whose command lines are the container's own).
pub struct EngineMarks {
    /// The engine's temp dir with a trailing `/`, so `/tmp/ovdAbc` does not match `/tmp/ovdAbcd/…`.
    pub dir_prefix: Vec<u8>,
    /// The ids of the engine's containers (the directory names under `<data-root>/containers`).
    pub container_ids: Vec<String>,
}

impl EngineMarks {
    /// Whether `pid` carries one of the marks.
    pub fn match_pid(&self, pid: u32) -> bool {
        let named =
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| contains(&cmdline, &self.dir_prefix));
        named
            || (!self.container_ids.is_empty()
                && std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .is_ok_and(|cgroup| self.container_ids.iter().any(|id| cgroup.contains(id.as_str()))))
    }

    /// Live processes, other than this one, that carry one of the marks.
    pub fn find(&self) -> Vec<u32> {
        live_pids().into_iter().filter(|&pid| self.match_pid(pid)).collect()
    }

    /// SIGKILLs every live process that carries one of the marks and waits up to 5 s for them to go;
    /// returns the pids that were found, and those still alive after the wait.
    pub fn kill_all(&self) -> (Vec<u32>, Vec<u32>) {
        let leftovers = self.find();
        for &pid in &leftovers {
            kill_if(pid, |pid| self.match_pid(pid));
        }
        let survivors = wait_gone(&leftovers, Duration::from_secs(5));
        (leftovers, survivors)
    }
}

/// Whether `pid` names a live, non-zombie process.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain ") ".
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

fn live_pids() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && is_alive(pid))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends SIGKILL to `pid` if `still_ours(pid)` holds once the process is pinned.
///
/// The pid is pinned with a pidfd before the check, so a pid recycled between the scan and the kill
/// can't be hit. Without pidfd support (kernels before 5.3) it falls back to a plain `kill`.
pub fn kill_if(pid: u32, still_ours: impl Fn(u32) -> bool) {
    let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
    if fd < 0 {
        let unsupported = std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS);
        if unsupported && still_ours(pid) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(raw_pid, libc::SIGKILL) };
        }
        return;
    }
    let Ok(raw_fd) = i32::try_from(fd) else {
        return;
    };
    // SAFETY: pidfd_open just returned this fd and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw_fd) };
    if still_ours(pid) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
}

/// Waits until none of `pids` is alive; returns those still alive at the deadline.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The names of the entries of `dir` that look like container ids (64 lowercase hex digits).
pub fn container_ids_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// The one child of `pid` (`unshare --fork`'s child: dockerd in its namespaces), from
/// `/proc/<pid>/task/<pid>/children`, else by scanning every process's parent.
pub fn child_of(pid: u32) -> Option<u32> {
    if let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        if let Some(child) = list.split_whitespace().next().and_then(|c| c.parse().ok()) {
            return Some(child);
        }
    }
    live_pids().into_iter().find(|&p| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
            let ppid = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
            ppid == Some(pid)
        })
    })
}

/// The pid, as the host sees it, of the process that is `ns_pid` in the PID namespace of host pid
/// `member` (the `NSpid:` line of `/proc/<pid>/status`).
pub fn host_pid_in_namespace_of(member: u32, ns_pid: u32) -> Option<u32> {
    let ns = std::fs::read_link(format!("/proc/{member}/ns/pid")).ok()?;
    live_pids().into_iter().find(|&p| {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let inner = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u32>().ok()));
        inner == Some(ns_pid) && std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns)
    })
}

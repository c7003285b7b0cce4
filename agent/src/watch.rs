//! Noticing that the host changed, cheaply, so the agent can scan soon after instead of waiting for its
//! interval: the kernel's mount table (it raises `POLLPRI` on `<proc>/1/mountinfo` at every mount and
//! unmount in that namespace; the table is then read again, and only a change among the mounts that matter
//! to the audit counts — see [`Relevance`]) and Docker's container set (a directory appears in or leaves
//! `<docker-root>/containers/` and `<docker-root>/image/overlay2/layerdb/mounts/`, watched with inotify).
//!
//! Both directories are watched without recursion on purpose: a running container writes its json-file log
//! inside `containers/<id>/` all the time, and that is no reason to rescan. Only entries appearing,
//! vanishing or being renamed count; opening or reading the directories (which the scan itself does) does
//! not. A directory that does not exist yet (Docker installed after the agent) is picked up by
//! [`HostWatch::refresh`] after a later scan.
//!
//! The other engines' stores are watched the same way: containers-storage's `overlay-containers/` (Podman
//! rewrites `containers.json` by rename) and containerd's `io.containerd.metadata.v1.bolt/`, where writes
//! to `meta.db` count, since containerd updates its database in place.

use crate::config::Config;
use collector::mountinfo::parse_mountinfo;
use collector::scan::under_root;
use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Something was mounted or unmounted.
    MountTable,
    /// A container (or its writable layer record) appeared or vanished.
    Containers,
}

impl Change {
    /// A word for logs and `STATUS=`.
    pub fn word(self) -> &'static str {
        match self {
            Change::MountTable => "mount table changed",
            Change::Containers => "containers changed",
        }
    }
}

/// The running watches; dropping it stops them.
pub struct HostWatch {
    mounts: Option<JoinHandle<()>>,
    inotify: Option<notify::RecommendedWatcher>,
    /// Each directory to watch and the (device, inode) watched there, if any.
    dirs: Vec<(PathBuf, Option<(u64, u64)>)>,
    /// How many of `dirs` come from the configuration; the rest are nested engines' (see
    /// [`HostWatch::set_nested`]).
    configured: usize,
    /// Where this process sees the host's `/`.
    root: PathBuf,
}

impl HostWatch {
    /// Starts watching the host `config` describes; changes are sent to `tx`. Must run inside the runtime.
    /// Problems (no proc filesystem, no inotify) are logged: the agent still scans on its interval.
    pub fn start(config: &Config, tx: UnboundedSender<Change>) -> HostWatch {
        let mountinfo = under_root(&config.root, &config.proc_dir).join("1/mountinfo");
        let mounts = match watch_mount_table(&mountinfo, Relevance::new(config), tx.clone()) {
            Ok(task) => Some(task),
            Err(e) => {
                tracing::warn!("not watching {} for mounts: {e}; scanning on the interval only", mountinfo.display());
                None
            }
        };
        let inotify = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if is_container_change(&event.kind) || is_database_write(&event) => {
                let _ = tx.send(Change::Containers);
            }
            Ok(_) => {}
            Err(e) => {
                // An error from the backend (queue overflow among them) may hide a change: scan to be sure.
                tracing::warn!("watching Docker's directories: {e}");
                let _ = tx.send(Change::Containers);
            }
        });
        let inotify = match inotify {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("cannot start inotify: {e}; containers are noticed on the interval only");
                None
            }
        };
        let opts = config.scan_options();
        let docker_root = under_root(&config.root, &opts.docker_root);
        let mut dirs =
            vec![(docker_root.join("containers"), None), (docker_root.join("image/overlay2/layerdb/mounts"), None)];
        // containers-storage rewrites containers.json by rename; containerd writes its meta.db in place.
        let podman = opts.podman_roots.clone().unwrap_or_else(|| collector::podman::default_roots(&config.root));
        for p in podman {
            dirs.push((under_root(&config.root, &p).join("overlay-containers"), None));
        }
        let containerd = opts
            .containerd_roots
            .clone()
            .unwrap_or_else(|| collector::containerd::default_roots(&config.root, &opts.docker_root));
        for c in containerd {
            dirs.push((under_root(&config.root, &c).join("io.containerd.metadata.v1.bolt"), None));
        }
        let configured = dirs.len();
        let mut watch = HostWatch { mounts, inotify, dirs, configured, root: config.root.clone() };
        watch.refresh();
        watch
    }

    /// Watches the metadata directories of the engines nested in containers that the last scan found
    /// (`sources.engines` with `nested_in`; host paths), as the configured engines' are watched, and stops
    /// watching those of engines gone since. A nested engine is thus found at the scan after it appears
    /// (its container's creation or start scans), and its containers' creation and removal scan from then
    /// on. Call [`HostWatch::refresh`] after.
    pub fn set_nested(&mut self, engines: &[collector::report::EngineSource]) {
        let mut wanted: Vec<PathBuf> = Vec::new();
        for e in engines.iter().filter(|e| e.nested_in.is_some()) {
            let root = under_root(&self.root, Path::new(&e.root));
            match e.engine.as_str() {
                "docker" => wanted.extend([root.join("containers"), root.join("image/overlay2/layerdb/mounts")]),
                "containerd" => wanted.push(root.join("io.containerd.metadata.v1.bolt")),
                _ => {}
            }
        }
        let nested = self.dirs.split_off(self.configured);
        for (dir, watched) in nested {
            if wanted.contains(&dir) {
                self.dirs.push((dir, watched));
            } else if let (Some(w), Some(_)) = (self.inotify.as_mut(), watched) {
                let _ = w.unwatch(&dir);
            }
        }
        for dir in wanted {
            if !self.dirs.iter().any(|(d, _)| *d == dir) {
                self.dirs.push((dir, None));
            }
        }
    }

    /// (Re)attaches the directory watches whose directory appeared or was replaced since the last call.
    pub fn refresh(&mut self) {
        let Some(w) = self.inotify.as_mut() else {
            return;
        };
        for (dir, watched) in &mut self.dirs {
            let now = std::fs::metadata(&*dir).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()));
            if now == *watched {
                continue;
            }
            if watched.is_some() {
                let _ = w.unwatch(dir);
            }
            *watched = None;
            if now.is_none() {
                tracing::debug!("{} does not exist (yet); not watching it", dir.display());
                continue;
            }
            match w.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!("watching {}", dir.display());
                    *watched = now;
                }
                Err(e) => {
                    tracing::warn!("cannot watch {}: {e}; changes there are noticed on the interval", dir.display())
                }
            }
        }
    }
}

impl Drop for HostWatch {
    fn drop(&mut self) {
        if let Some(task) = self.mounts.take() {
            task.abort();
        }
    }
}

/// A write to containerd's metadata database (containers and images are created and removed in it).
fn is_database_write(event: &notify::Event) -> bool {
    matches!(event.kind, EventKind::Modify(ModifyKind::Data(_)))
        && event.paths.iter().any(|p| p.file_name().is_some_and(|n| n == "meta.db"))
}

fn is_container_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) | EventKind::Other
    )
}

/// Which mounts a scan would see differently: overlay mounts anywhere (each is listed, owned or not), and
/// any mount at, below or above an engine's storage root (a data root mounted or replaced, a container's
/// `shm`, a volume under the root). A tmpfs mounted and unmounted elsewhere is none of these, and costs
/// no scan.
pub struct Relevance {
    /// The engines' roots as the host names them: configured ones, or every default location.
    roots: Vec<PathBuf>,
}

impl Relevance {
    /// The roots `config` names, or the defaults it would read.
    pub fn new(config: &Config) -> Relevance {
        let opts = config.scan_options();
        let mut roots = vec![opts.docker_root.clone()];
        match &opts.podman_roots {
            Some(r) => roots.extend(r.iter().cloned()),
            None => {
                roots.push(PathBuf::from("/var/lib/containers/storage"));
                roots.extend(collector::podman::default_roots(&config.root));
            }
        }
        match &opts.containerd_roots {
            Some(r) => roots.extend(r.iter().cloned()),
            None => roots.extend([PathBuf::from("/var/lib/containerd"), opts.docker_root.join("containerd/daemon")]),
        }
        roots.sort();
        roots.dedup();
        Relevance { roots }
    }

    fn matters(&self, entry: &collector::mountinfo::MountEntry) -> bool {
        entry.is_overlay()
            || self.roots.iter().any(|r| entry.mount_point.starts_with(r) || r.starts_with(&entry.mount_point))
    }

    /// The mounts that matter in a mountinfo text, one string each, sorted: two reads with equal
    /// signatures would give equal scans as far as mounts go.
    pub fn signature(&self, mountinfo: &[u8]) -> Vec<String> {
        let (entries, _) = parse_mountinfo(mountinfo);
        let mut sig: Vec<String> = entries
            .iter()
            .filter(|e| self.matters(e))
            .map(|e| {
                format!(
                    "{:?} {:?} {:?} {} {:?} {:?} {:?}",
                    e.mount_id, e.device, e.mount_point, e.fs_type, e.root, e.mount_options, e.super_options
                )
            })
            .collect();
        sig.sort();
        sig
    }
}

/// `PROC_SUPER_MAGIC` from `<linux/magic.h>`.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

struct Fd(OwnedFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

fn watch_mount_table(
    path: &Path,
    relevance: Relevance,
    tx: UnboundedSender<Change>,
) -> std::io::Result<JoinHandle<()>> {
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking so that a path that is not procfs (a FIFO, say) can't hang the open.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let fd = OwnedFd::from(file);
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs fills the struct it is given from an open fd.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut fs) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures.
    if fs.f_type as i64 != PROC_SUPER_MAGIC {
        return Err(std::io::Error::other("not on a proc filesystem, which alone signals mount changes"));
    }
    // SAFETY: `Fd` owns the descriptor, never closes or replaces it, and always returns the same one.
    let afd = unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::PRIORITY) }.map_err(|e| e.into_parts().1)?;
    let path = path.to_path_buf();
    // Read afresh each time (a new open): the kernel builds the text at open and read.
    let read = move || std::fs::read(&path).map(|text| relevance.signature(&text));
    let mut last = read().ok();
    Ok(tokio::spawn(async move {
        loop {
            match afd.ready(Interest::PRIORITY).await {
                Ok(mut guard) => {
                    guard.clear_ready();
                    let now = read().ok();
                    // A table that cannot be read may hide a change: scan to be sure.
                    if now.is_some() && now == last {
                        tracing::trace!("mount table changed, but not among the mounts that matter");
                        continue;
                    }
                    last = now;
                    if tx.send(Change::MountTable).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!("waiting for mount table changes: {e}; scanning on the interval only");
                    return;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines (shortened ids) from a host running Docker at /srv/docker, plus a tmpfs a backup job mounts.
    const BASE: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
90 22 254:1 /srv/docker /srv/docker rw,relatime shared:1 - ext4 /dev/vda1 rw
120 90 0:51 / /srv/docker/overlay2/3f2a/merged rw,relatime shared:60 - overlay overlay rw,lowerdir=/srv/docker/overlay2/l/AB:/srv/docker/overlay2/l/CD,upperdir=/srv/docker/overlay2/3f2a/diff,workdir=/srv/docker/overlay2/3f2a/work
";

    fn relevance() -> Relevance {
        let config = Config { docker_root: Some(PathBuf::from("/srv/docker")), ..Config::default() };
        Relevance::new(&config)
    }

    #[test]
    fn a_tmpfs_elsewhere_leaves_the_signature_alone() {
        let r = relevance();
        let with_tmpfs = format!("{BASE}130 22 0:60 / /mnt/backup rw,relatime shared:70 - tmpfs none rw\n");
        assert_eq!(r.signature(BASE.as_bytes()), r.signature(with_tmpfs.as_bytes()));
        assert_eq!(r.signature(BASE.as_bytes()).len(), 3, "/, the data root and the overlay matter");
    }

    #[test]
    fn overlays_anywhere_and_mounts_under_a_root_change_it() {
        let r = relevance();
        let base = r.signature(BASE.as_bytes());
        for line in [
            "131 22 0:61 / /home/u/merged rw - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c",
            "132 90 0:62 / /srv/docker/containers/abc/mounts/shm rw,nosuid - tmpfs shm rw,size=65536k",
            "133 22 0:63 / /srv rw - xfs /dev/vdb rw",
        ] {
            let text = format!("{BASE}{line}\n");
            assert_ne!(r.signature(text.as_bytes()), base, "{line}");
        }
        // An unmounted container overlay changes it too.
        let without: String = BASE.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_ne!(r.signature(without.as_bytes()), base);
    }
}

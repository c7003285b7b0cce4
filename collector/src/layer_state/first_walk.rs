//! The first walk of a layer into its state ([`LayerState::build`]), shared by a pool of threads so that it
//! costs about what the full walk of `ovlaudit report` costs: each worker takes a directory from a shared
//! stack, opens it from its parent's descriptor (checked by inode, no mount point crossed), has it watched
//! (one lock around the caller's [`DirWatch`]), lists it with the same counting as a refresh, and pushes
//! its subdirectories. The nodes are joined into the state once every worker is done.
//!
//! Not for: refreshes, which list a few directories and stay on the calling thread.

use super::{list, Dir, DirWatch, LayerState, Listing, RefreshError, MAX_ERROR_SAMPLES};
use crate::usage::OverlayXattrs;
use crate::walk::{is_mount_point, open_dir, statx, DentsBuf, RootId};
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A directory to take in: the open directory itself (the root) or its parent and its name there.
struct Pending {
    base: Arc<OwnedFd>,
    open: bool,
    ino: u64,
    parent: u64,
    name: Box<[u8]>,
    /// Its path below the upperdir (empty for the root).
    path: Vec<u8>,
}

/// What taking in one directory gave.
enum Found {
    Dir { ino: u64, parent: u64, name: Box<[u8]>, key: Box<[u8]>, listing: Listing },
    MountPoint { parent: u64 },
    Unreadable { parent: u64, sample: String },
}

/// What every worker reads.
struct Layer<'a> {
    upperdir: &'a Path,
    xattrs: OverlayXattrs,
    root: RootId,
    root_ino: u64,
    top_files: usize,
}

struct Shared<'w> {
    /// Directories waiting, and how many workers are taking one in.
    queue: Mutex<(Vec<Pending>, usize)>,
    more: Condvar,
    watch: Mutex<&'w mut dyn DirWatch>,
    stop: AtomicBool,
    failed: Mutex<Option<RefreshError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Layer<'_> {
    fn full_path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.upperdir.to_path_buf()
        } else {
            self.upperdir.join(OsStr::from_bytes(rel))
        }
    }
}

/// Walks the tree below `root_fd` (the upperdir, inode `root_ino`) into `state` on `threads` threads.
pub(super) fn take_in(
    state: &mut LayerState,
    root_fd: OwnedFd,
    watch: &mut dyn DirWatch,
    threads: usize,
) -> Result<(), RefreshError> {
    let layer = Layer {
        upperdir: &state.upperdir,
        xattrs: state.xattrs,
        root: state.root,
        root_ino: state.root_ino,
        top_files: state.top_files,
    };
    let first = Pending {
        base: Arc::new(root_fd),
        open: false,
        ino: layer.root_ino,
        parent: 0,
        name: Box::default(),
        path: Vec::new(),
    };
    let shared = Shared {
        queue: Mutex::new((vec![first], 0)),
        more: Condvar::new(),
        watch: Mutex::new(watch),
        stop: AtomicBool::new(false),
        failed: Mutex::new(None),
    };
    // The upperdir is listed first, here: most layers hold a few directories, and threads are started only
    // for as many subdirectories as it has (none for a layer without any).
    let mut first = work_on_one(&shared, &layer);
    let waiting = lock(&shared.queue).0.len();
    let found: Vec<Found> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads.max(1).min(waiting)).map(|_| s.spawn(|| work(&shared, &layer))).collect();
        let mut all = work(&shared, &layer);
        all.append(&mut first);
        for h in helpers {
            // A worker that panicked lost its part: the state is incomplete, so it is not used.
            match h.join() {
                Ok(part) => all.extend(part),
                Err(_) => {
                    let source = std::io::Error::other("a walker thread panicked");
                    lock(&shared.failed).get_or_insert(RefreshError::Watch { path: layer.full_path(b""), source });
                }
            }
        }
        all
    });
    let failed = shared.failed.into_inner().unwrap_or_else(|p| p.into_inner());
    let duplicate = state.join(found);
    match (failed, duplicate) {
        (Some(e), _) => Err(e),
        // A directory moved while the walk went on was seen twice: the caller walks again.
        (None, Some(path)) => Err(RefreshError::Lost { path }),
        (None, None) => Ok(()),
    }
}

/// Takes in the one directory waiting (the upperdir) on the calling thread.
fn work_on_one(shared: &Shared<'_>, layer: &Layer<'_>) -> Vec<Found> {
    let mut out = Vec::new();
    let next = lock(&shared.queue).0.pop();
    if let Some(p) = next {
        let subdirs = take_in_one(p, shared, layer, &mut DentsBuf::new(), &mut out);
        lock(&shared.queue).0.extend(subdirs);
    }
    out
}

/// One worker: takes directories in until none is left, or the walk stops.
fn work(shared: &Shared<'_>, layer: &Layer<'_>) -> Vec<Found> {
    let mut out = Vec::new();
    let mut buf = DentsBuf::new();
    loop {
        let next = {
            let mut q = lock(&shared.queue);
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return out;
                }
                if let Some(p) = q.0.pop() {
                    q.1 += 1;
                    break p;
                }
                if q.1 == 0 {
                    return out;
                }
                q = shared.more.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let subdirs = take_in_one(next, shared, layer, &mut buf, &mut out);
        let mut q = lock(&shared.queue);
        q.1 -= 1;
        let (added, idle) = (subdirs.len(), q.1 == 0);
        q.0.extend(subdirs);
        if added > 1 || idle || shared.stop.load(Ordering::Relaxed) {
            shared.more.notify_all();
        } else if added == 1 {
            shared.more.notify_one();
        }
    }
}

/// Opens, watches and lists one directory; returns its subdirectories to take in.
fn take_in_one(
    p: Pending,
    shared: &Shared<'_>,
    layer: &Layer<'_>,
    buf: &mut DentsBuf,
    out: &mut Vec<Found>,
) -> Vec<Pending> {
    let fd = if !p.open {
        p.base
    } else {
        let Ok(cname) = CString::new(&p.name[..]) else { return Vec::new() };
        let opened = open_dir(p.base.as_raw_fd(), &cname)
            .and_then(|d| statx(d.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map(|st| (d, st)));
        match opened {
            Ok((d, st)) if st.stx_ino == p.ino && !is_mount_point(&st, layer.root) => Arc::new(d),
            Ok((_, st)) if is_mount_point(&st, layer.root) => {
                out.push(Found::MountPoint { parent: p.parent });
                return Vec::new();
            }
            // Replaced between the listing and now: the change's events bring it back.
            Ok(_) => return Vec::new(),
            Err(e) => {
                let sample = format!("{}: {e}", layer.full_path(&p.path).to_string_lossy());
                out.push(Found::Unreadable { parent: p.parent, sample });
                return Vec::new();
            }
        }
    };
    // Watched before it is listed, so that a change made after the listing is reported.
    let key = match lock(&shared.watch).watch(fd.as_fd(), p.ino) {
        Ok(k) => k,
        Err(source) => {
            lock(&shared.failed).get_or_insert(RefreshError::Watch { path: layer.full_path(&p.path), source });
            shared.stop.store(true, Ordering::Relaxed);
            return Vec::new();
        }
    };
    let is_root = p.ino == layer.root_ino;
    let listing =
        list(fd.as_raw_fd(), is_root, layer.xattrs, layer.root, layer.top_files, &p.path, layer.upperdir, buf);
    let subdirs = listing
        .subdirs
        .iter()
        .rev()
        .map(|(name, ino)| {
            let mut path = p.path.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            Pending { base: fd.clone(), open: true, ino: *ino, parent: p.ino, name: name.clone(), path }
        })
        .collect();
    out.push(Found::Dir { ino: p.ino, parent: p.parent, name: p.name, key, listing });
    subdirs
}

impl LayerState {
    /// Joins what the workers found into the state; the path of a directory found twice, if any.
    fn join(&mut self, found: Vec<Found>) -> Option<PathBuf> {
        let mut dirs = Vec::new();
        let mut rest = Vec::new();
        let mut duplicate = None;
        for f in found {
            match f {
                Found::Dir { ino, parent, name, key, listing } => {
                    if self.dirs.insert(ino, Dir { parent, name, key, ..Dir::default() }).is_some() {
                        duplicate = Some(ino);
                    }
                    dirs.push((ino, parent, listing));
                }
                other => rest.push(other),
            }
        }
        let mut links = Vec::with_capacity(dirs.len());
        for (ino, parent, listing) in dirs {
            // Every new hard link is new while building: nothing to tell the caller.
            let _ = self.replace_listing(ino, listing, Vec::new());
            links.push((ino, parent));
        }
        for (ino, parent) in links {
            if parent != ino {
                if let Some(p) = self.dirs.get_mut(&parent) {
                    p.children.push(ino);
                }
            }
        }
        for f in rest {
            match f {
                Found::MountPoint { parent } => self.count_in(parent, |c| c.mount_points += 1),
                Found::Unreadable { parent, sample } => {
                    self.count_in(parent, |c| c.errors += 1);
                    if let Some(p) = self.dirs.get_mut(&parent) {
                        if p.samples.len() < MAX_ERROR_SAMPLES {
                            p.samples.push(sample);
                        }
                    }
                }
                Found::Dir { .. } => {}
            }
        }
        for d in self.dirs.values_mut() {
            d.samples.sort();
        }
        duplicate.map(|ino| self.full_path(ino))
    }
}

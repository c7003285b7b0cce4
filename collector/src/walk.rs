//! The parallel writable-layer walker behind [`crate::usage`]: every layer's directories are units of
//! work shared by a small pool of threads, so many small layers and one huge layer both keep every core
//! busy.
//!
//! Each worker walks depth-first with directory-relative syscalls only (`openat(O_NOFOLLOW)`,
//! `getdents64` into one reused buffer, `statx(AT_SYMLINK_NOFOLLOW)`), so no path is ever resolved from
//! the root and no symlink is ever followed, however deep or hostile the tree. A worker keeps at most
//! [`OPEN_DIR_WINDOW`] directories open; deeper ancestors are closed and reopened through `..`, checked by
//! (dev, ino) so a directory moved under the walk is never followed to wherever it went. When another
//! worker is idle, a busy one opens one of its pending subdirectories and hands over the descriptor (never
//! a path), so work moves between threads without a second lookup a container could race.
//!
//! Memory is bounded by the walk's depth, not the layer's size or a directory's width: a file is counted
//! from the `statx` buffer and forgotten, names live in the `getdents64` buffer, the hard-link set holds
//! only inodes with `nlink > 1`, and a top-files path is built only for a file larger than the current N-th
//! largest. The names of subdirectories still to visit are the one thing held per directory, and a worker
//! holds at most [`PENDING_NAMES`] bytes of them: a directory with more subdirectories than that (100,000
//! with long names are some 25 MB) is listed in parts, its listing paused at a buffer's end and resumed
//! from the directory's position (`lseek`) once the subdirectories found so far are walked.

use crate::usage::{OverlayXattrs, TopFile, UsageError, WritableUsage};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Directories one worker keeps open at once on the way down.
pub const OPEN_DIR_WINDOW: usize = 48;
const MAX_ERROR_SAMPLES: usize = 5;
/// `getdents64` buffer per worker: big enough that a directory of a few hundred entries is one call.
const DENTS_BUF: usize = 64 * 1024;
/// Subtrees handed over at most per idle worker; each holds one open descriptor while queued.
const HANDOFF_PER_IDLE: usize = 2;
/// Bytes of pending subdirectory names one worker holds before it pauses a listing: a directory whose
/// subdirectories' names take more is walked in parts (each part's subdirectories in name order).
pub const PENDING_NAMES: usize = 256 * 1024;
/// `getdents64` buffer for a listing that goes on while the worker is over [`PENDING_NAMES`], and the
/// names a directory may hold then before its listing pauses: small, so that a deep chain of wide
/// directories holds little in each.
const DENTS_BUF_OVER: usize = 4 * 1024;

/// How to walk.
#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    /// Worker threads; 0 means one per CPU.
    pub threads: usize,
    /// Which xattr namespace holds the overlay's markers.
    pub xattrs: OverlayXattrs,
    /// Largest files to keep per layer (0: none).
    pub top_files: usize,
}

/// A test hook: called with a directory's path relative to its layer right after the directory was listed
/// and before any of its subdirectories is opened, so a test can change the tree at a known point.
pub type AfterList<'a> = &'a (dyn Fn(usize, &[u8]) + Sync);

/// One writable layer to measure.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// The upperdir; `None` when there is nothing to measure (an empty usage comes back).
    pub upperdir: Option<PathBuf>,
    /// Which xattr namespace holds the overlay's markers in this layer.
    pub xattrs: OverlayXattrs,
    /// The store the upperdir was named by: when set, the upperdir is opened beneath its root directory
    /// without following a symlink in any component (see [`crate::hostfs`]).
    pub beneath: Option<std::sync::Arc<crate::hostfs::StoreDir>>,
    /// Directories below the upperdir (relative paths, `var/lib/docker`) neither counted nor entered: a
    /// nested engine's data root in a container's writable layer, which that engine's own audit measures.
    pub exclude: Vec<PathBuf>,
}

/// Measures every layer in `upperdirs` (`None`: nothing to measure, an empty usage), sharing the work over
/// the pool, the calling thread being one of the workers. Results come back in the same order.
pub fn measure_layers(
    upperdirs: &[Option<PathBuf>],
    opts: WalkOptions,
    after_list: Option<AfterList<'_>>,
) -> Vec<Result<WritableUsage, UsageError>> {
    let specs = upperdirs
        .iter()
        .map(|p| LayerSpec { upperdir: p.clone(), xattrs: opts.xattrs, beneath: None, exclude: Vec::new() })
        .collect();
    measure_specs(specs, opts, after_list)
}

/// [`measure_layers`] of layers given as [`LayerSpec`]s (with exclusions, say); `opts.xattrs` is not used.
pub fn measure_specs(
    specs: Vec<LayerSpec>,
    opts: WalkOptions,
    after_list: Option<AfterList<'_>>,
) -> Vec<Result<WritableUsage, UsageError>> {
    let n = specs.len();
    let walk = Walk::new(specs, opts.top_files, after_list);
    // Not capped at the number of layers: idle workers are handed subtrees, so one big layer keeps every
    // worker busy (and, on a cold cache, as many reads in flight).
    let workers = worker_threads(opts.threads).max(1);
    std::thread::scope(|s| {
        walk.spawn_workers(s, workers - 1);
        walk.work();
    });
    (0..n).map(|i| walk.take(i)).collect()
}

/// Walker threads per CPU when `threads` is 0. Warm, the walk is CPU-bound and extra threads cost no CPU
/// (measured: the same CPU time with 2 or 6 threads on 2 CPUs); cold, every worker waits on a read of an
/// inode table or a directory block, and more workers keep more reads in flight (one per CPU left the disk
/// idle most of the time). diskus uses the same factor.
const THREADS_PER_CPU: usize = 3;
/// At most this many threads by default, as long as that is not fewer than one per CPU: each worker keeps
/// up to [`OPEN_DIR_WINDOW`] directories open.
const DEFAULT_THREADS_CAP: usize = 16;

/// The number of walker threads `threads` asks for: itself, or when 0 three per CPU, at most 16 unless
/// there are more CPUs than that (then one per CPU).
pub fn worker_threads(threads: usize) -> usize {
    if threads == 0 {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cpus * THREADS_PER_CPU).min(DEFAULT_THREADS_CAP).max(cpus)
    } else {
        threads
    }
}

/// A walk of many layers whose results are taken one layer at a time: the caller starts workers in a
/// thread scope, goes on with its own work (reading metadata, joining records) and waits, in
/// [`Walk::take`], only for the layer it needs next. A layer is done when the last job that walks part of
/// it is; the others may still be running.
pub struct Walk<'a> {
    pool: Pool<'a>,
}

impl<'a> Walk<'a> {
    /// Prepares the walk of `layers`, each keeping its `top_files` largest files. Nothing runs until
    /// workers are started.
    pub fn new(layers: Vec<LayerSpec>, top_files: usize, after_list: Option<AfterList<'a>>) -> Walk<'a> {
        let jobs = layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.upperdir.is_some())
            .map(|(layer, _)| Job { layer, dir: None })
            .collect();
        let pending = layers.iter().map(|l| usize::from(l.upperdir.is_some())).collect();
        Walk {
            pool: Pool {
                queue: Mutex::new(Queue { jobs, active: 0, pending }),
                wake: Condvar::new(),
                layer_done: Condvar::new(),
                idle: AtomicUsize::new(0),
                layers: layers.into_iter().map(Layer::new).collect(),
                top_files,
                after_list,
            },
        }
    }

    /// How many layers the walk measures.
    pub fn len(&self) -> usize {
        self.pool.layers.len()
    }

    /// Whether the walk has no layer at all.
    pub fn is_empty(&self) -> bool {
        self.pool.layers.is_empty()
    }

    /// Starts `workers` threads in `scope`; they return when every layer is walked.
    pub fn spawn_workers<'scope>(&'scope self, scope: &'scope std::thread::Scope<'scope, '_>, workers: usize) {
        for _ in 0..workers {
            scope.spawn(|| self.pool.work());
        }
    }

    /// Works on the walk on the calling thread until no work is left.
    pub fn work(&self) {
        self.pool.work();
    }

    /// Layer `i`'s result, waiting until it is walked; a second take gives an empty usage. Some thread
    /// must be working on the walk ([`Walk::spawn_workers`] or [`Walk::work`]), or this waits forever.
    pub fn take(&self, i: usize) -> Result<WritableUsage, UsageError> {
        let mut q = self.pool.queue.lock().unwrap_or_else(|p| p.into_inner());
        while q.pending.get(i).is_some_and(|&n| n > 0) {
            q = self.pool.layer_done.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        drop(q);
        match self.pool.layers.get(i) {
            Some(layer) => layer.finish(),
            None => Ok(WritableUsage::default()),
        }
    }
}

/// A subtree to walk: a layer root (opened by whoever takes it) or an open directory handed over.
struct Job {
    layer: usize,
    dir: Option<Handoff>,
}

struct Handoff {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
    /// Path below the layer root, `/`-separated, no leading slash.
    path: Vec<u8>,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Workers running a job; the walk is over when none is and the queue is empty.
    active: usize,
    /// Per layer, its jobs queued or running; the layer is done at 0. A job hands work over only while it
    /// runs itself, so the count cannot touch 0 before the layer's last job ends.
    pending: Vec<usize>,
}

struct Pool<'a> {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Signalled whenever a layer is done, for [`Walk::take`].
    layer_done: Condvar,
    idle: AtomicUsize,
    layers: Vec<Layer>,
    top_files: usize,
    after_list: Option<AfterList<'a>>,
}

/// One layer's shared state, merged into by every job that walks part of it.
struct Layer {
    upperdir: PathBuf,
    beneath: Option<std::sync::Arc<crate::hostfs::StoreDir>>,
    /// [`LayerSpec::exclude`], as bytes to compare with the walk's relative paths.
    exclude: Vec<Vec<u8>>,
    xattrs: OverlayXattrs,
    root: Mutex<Option<RootId>>,
    acc: Mutex<Acc>,
    /// (dev, ino) of entries with `nlink > 1`, so each inode counts once across all workers.
    seen: Mutex<HashSet<(u64, u64)>>,
}

/// The layer root's device and mount: an entry elsewhere is a mount point, never crossed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RootId {
    pub(crate) dev: u64,
    pub(crate) mnt_id: u64,
}

#[derive(Default)]
struct Acc {
    usage: WritableUsage,
    top: BinaryHeap<Reverse<TopEntry>>,
    failed: Option<io::Error>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct TopEntry {
    apparent: u64,
    // Ties broken by path so the list does not depend on which worker saw what first.
    path: Reverse<Vec<u8>>,
    allocated: u64,
}

impl Layer {
    fn new(spec: LayerSpec) -> Layer {
        Layer {
            upperdir: spec.upperdir.unwrap_or_default(),
            xattrs: spec.xattrs,
            beneath: spec.beneath,
            exclude: spec.exclude.iter().map(|p| p.as_os_str().as_bytes().to_vec()).collect(),
            root: Mutex::new(None),
            acc: Mutex::new(Acc::default()),
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Takes the layer's result out; called once the layer is done.
    fn finish(&self) -> Result<WritableUsage, UsageError> {
        let acc = std::mem::take(&mut *self.acc.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(source) = acc.failed {
            return Err(UsageError { path: self.upperdir.clone(), source });
        }
        let mut usage = acc.usage;
        let mut top: Vec<TopEntry> = acc.top.into_iter().map(|Reverse(e)| e).collect();
        top.sort_by(|a, b| b.cmp(a));
        usage.top_files = top.into_iter().map(|e| TopFile::new(&e.path.0, e.apparent, e.allocated)).collect();
        Ok(usage)
    }
}

impl Pool<'_> {
    fn work(&self) {
        let mut buf = DentsBuf::new();
        loop {
            let Some(job) = self.next_job() else { return };
            let job_layer = job.layer;
            let layer = &self.layers[job.layer];
            let mut walker = Walker {
                pool: self,
                layer,
                layer_index: job.layer,
                local: WritableUsage::default(),
                top: BinaryHeap::new(),
                samples: Vec::new(),
                path: Vec::new(),
                stack: Vec::new(),
                held: 0,
            };
            walker.run(job, &mut buf);
            walker.merge();
            self.job_done(job_layer);
        }
    }

    fn next_job(&self) -> Option<Job> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(job) = q.jobs.pop_front() {
                q.active += 1;
                return Some(job);
            }
            if q.active == 0 {
                self.wake.notify_all();
                return None;
            }
            self.idle.fetch_add(1, Ordering::Relaxed);
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            self.idle.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn job_done(&self, layer: usize) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.pending[layer] -= 1;
        if q.pending[layer] == 0 {
            self.layer_done.notify_all();
        }
        q.active -= 1;
        if q.active == 0 && q.jobs.is_empty() {
            self.wake.notify_all();
        }
    }

    /// Whether a worker waits for work and the queue has room for another handed-over subtree.
    fn hungry(&self) -> bool {
        let idle = self.idle.load(Ordering::Relaxed);
        idle > 0 && self.queue.lock().is_ok_and(|q| q.jobs.len() < idle * HANDOFF_PER_IDLE)
    }

    fn hand_over(&self, job: Job) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.pending[job.layer] += 1;
        q.jobs.push_back(job);
        self.wake.notify_one();
    }
}

/// One directory on a worker's way down.
struct Frame {
    fd: Option<OwnedFd>,
    dev: u64,
    ino: u64,
    /// Length of the walker's `path` while this directory is the current one.
    path_len: usize,
    /// Subdirectories still to visit: NUL-terminated names back to back, and where each starts.
    names: Vec<u8>,
    starts: Vec<u32>,
    /// Where the listing was paused (the walker held [`PENDING_NAMES`] of names), to be resumed once
    /// `names` is walked; `None` when the directory is listed to its end.
    resume: Option<Resume>,
}

/// A paused listing: the directory's position (`lseek`), and what its markers said when it was opened.
#[derive(Clone, Copy)]
struct Resume {
    pos: libc::off_t,
    xattr_whiteouts: bool,
}

impl Frame {
    /// Puts the pending subdirectories in byte order of their names, to be visited first to last (they are
    /// popped from the end). Listing order is the file system's hash order and statx runs in inode order;
    /// neither is stable from one file system to the next, and the order of visits decides which entries
    /// a concurrent rename or removal takes away. Name order makes a walk, its counts under churn and its
    /// error samples the same on every host.
    fn order_by_name(&mut self) {
        if self.starts.len() < 2 {
            return;
        }
        let names = &self.names;
        let mut entries: Vec<&[u8]> = self
            .starts
            .iter()
            .map(|&s| {
                let s = s as usize;
                let len = names[s..].iter().position(|&b| b == 0).map_or(names.len() - s, |n| n + 1);
                &names[s..s + len]
            })
            .collect();
        entries.sort_unstable_by(|a, b| b.cmp(a));
        let mut sorted = Vec::with_capacity(names.len());
        let mut starts = Vec::with_capacity(entries.len());
        for e in entries {
            starts.push(sorted.len() as u32);
            sorted.extend_from_slice(e);
        }
        self.names = sorted;
        self.starts = starts;
    }

    fn pop_name(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(start) = self.starts.pop() else { return false };
        out.clear();
        out.extend_from_slice(&self.names[start as usize..]);
        self.names.truncate(start as usize);
        true
    }

    /// Forgets the pending names, giving their memory back (a frame keeps its buffer between parts only
    /// while it is small).
    fn clear_names(&mut self) {
        if self.names.capacity() > 4096 {
            self.names = Vec::new();
            self.starts = Vec::new();
        }
    }
}

struct Walker<'p, 'a> {
    pool: &'p Pool<'a>,
    layer: &'p Layer,
    layer_index: usize,
    local: WritableUsage,
    top: BinaryHeap<Reverse<TopEntry>>,
    samples: Vec<String>,
    /// The current directory's path below the layer root.
    path: Vec<u8>,
    stack: Vec<Frame>,
    /// Bytes of pending subdirectory names over the whole stack.
    held: usize,
}

impl Walker<'_, '_> {
    fn run(&mut self, job: Job, buf: &mut DentsBuf) {
        let root_id = match job.dir {
            Some(h) => {
                self.path = h.path;
                let root = self.layer.root.lock().map(|r| *r).unwrap_or(None);
                let Some(root) = root else { return };
                self.enter(h.fd, h.dev, h.ino, buf, root);
                root
            }
            None => match self.open_root() {
                Ok((fd, st, root)) => {
                    self.local.allocated_bytes = crate::bytes::add(self.local.allocated_bytes, blocks_bytes(&st));
                    self.enter(fd, st.stx_dev(), st.stx_ino, buf, root);
                    root
                }
                Err(e) => {
                    if let Ok(mut acc) = self.layer.acc.lock() {
                        acc.failed = Some(e);
                    }
                    return;
                }
            },
        };
        let mut name = Vec::with_capacity(256);
        while let Some(top) = self.stack.last_mut() {
            if !top.pop_name(&mut name) {
                if top.resume.is_some() {
                    self.list_more(buf, root_id);
                } else {
                    self.leave();
                }
                continue;
            }
            self.held -= name.len();
            let parent = top.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            let cname = CStr::from_bytes_with_nul(&name).unwrap_or(c"");
            match open_dir_checked(parent, cname, root_id) {
                Ok(Opened::Dir(fd, dev, ino)) => {
                    self.push_path(cname.to_bytes());
                    self.enter(fd, dev, ino, buf, root_id);
                }
                Ok(Opened::MountPoint) => self.local.mount_points += 1,
                Err(e) => self.error(Some(cname.to_bytes()), &e),
            }
        }
    }

    fn open_root(&self) -> io::Result<(OwnedFd, Statx, RootId)> {
        let c = CString::new(self.layer.upperdir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        let fd = match &self.layer.beneath {
            Some(store) => store.open_layer_dir(&self.layer.upperdir)?,
            None => open_dir(libc::AT_FDCWD, &c)?,
        };
        let st = statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)?;
        let root = RootId { dev: st.stx_dev(), mnt_id: st.stx_mnt_id };
        if let Ok(mut r) = self.layer.root.lock() {
            *r = Some(root);
        }
        Ok((fd, st, root))
    }

    fn push_path(&mut self, name: &[u8]) {
        if !self.path.is_empty() {
            self.path.push(b'/');
        }
        self.path.extend_from_slice(name);
    }

    /// Pushes a directory that was just opened, counts its non-directory entries and leaves its
    /// subdirectories pending on the new frame.
    fn enter(&mut self, fd: OwnedFd, dev: u64, ino: u64, buf: &mut DentsBuf, root: RootId) {
        let raw = fd.as_raw_fd();
        self.stack.push(Frame {
            fd: Some(fd),
            dev,
            ino,
            path_len: self.path.len(),
            names: Vec::new(),
            starts: Vec::new(),
            resume: None,
        });
        // The layer root is the upperdir itself, never a directory that replaced a lower one.
        let is_root = self.stack.len() == 1 && self.path.is_empty();
        let xattr_whiteouts = self.dir_xattrs(raw, !is_root);
        if let Err(e) = self.list(raw, buf, root, xattr_whiteouts) {
            self.error(None, &e);
        }
        if let Some(top) = self.stack.last_mut() {
            top.order_by_name();
        }
        if let Some(hook) = self.pool.after_list {
            hook(self.layer_index, &self.path);
        }
        // Beyond the job's first frame (kept open so a moved directory can be recovered from), open frames
        // are a suffix of the stack; close the oldest once there are too many.
        if self.stack.len() > OPEN_DIR_WINDOW {
            let oldest = self.stack.len() - OPEN_DIR_WINDOW;
            self.stack[oldest].fd = None;
        }
        // Every idle worker is fed now, not one per directory entered: when the cache is cold a directory
        // takes milliseconds of disk reads, and handing out one subtree per directory left most workers
        // waiting (the walk ran at an I/O depth of about two whatever the thread count).
        while self.pool.hungry() && self.share(root) {}
    }

    /// Lists the next part of the directory on top of the stack, whose listing was paused and whose
    /// subdirectories found so far are all walked: from where it stopped, through the same descriptor (or
    /// one reopened and checked by (dev, ino) on the way back up, which `lseek` puts at the same place).
    fn list_more(&mut self, buf: &mut DentsBuf, root: RootId) {
        let Some(top) = self.stack.last_mut() else { return };
        let Some(r) = top.resume.take() else { return };
        top.clear_names();
        let Some(fd) = top.fd.as_ref().map(AsRawFd::as_raw_fd) else { return };
        // SAFETY: lseek on a descriptor this frame owns; no memory is passed.
        let listed = if unsafe { libc::lseek(fd, r.pos, libc::SEEK_SET) } < 0 {
            Err(io::Error::last_os_error())
        } else {
            self.list(fd, buf, root, r.xattr_whiteouts)
        };
        if let Err(e) = listed {
            self.error(None, &io::Error::other(format!("cannot list the rest of the directory ({e})")));
        }
        if let Some(top) = self.stack.last_mut() {
            top.order_by_name();
        }
        while self.pool.hungry() && self.share(root) {}
    }

    /// Hands the shallowest open pending subdirectory to an idle worker, as an open descriptor; false when
    /// there is none.
    fn share(&mut self, root: RootId) -> bool {
        let Some(i) = self.stack.iter().position(|f| f.fd.is_some() && !f.starts.is_empty()) else { return false };
        let mut name = Vec::new();
        let frame = &mut self.stack[i];
        frame.pop_name(&mut name);
        self.held -= name.len();
        let parent = frame.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        let cname = CStr::from_bytes_with_nul(&name).unwrap_or(c"");
        let mut path = self.path[..self.stack[i].path_len].to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(cname.to_bytes());
        match open_dir_checked(parent, cname, root) {
            Ok(Opened::Dir(fd, dev, ino)) => {
                let h = Handoff { fd, dev, ino, path };
                self.pool.hand_over(Job { layer: self.layer_index, dir: Some(h) });
            }
            Ok(Opened::MountPoint) => self.local.mount_points += 1,
            Err(e) => self.error_at(&path, &e),
        }
        true
    }

    /// Pops the finished top frame, reopening its parent through `..` if the parent had been closed.
    fn leave(&mut self) {
        let Some(done) = self.stack.pop() else { return };
        let Some(parent) = self.stack.last_mut() else { return };
        if parent.fd.is_none() {
            let child = done.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            let reopened = open_dir(child, c"..")
                .and_then(|fd| statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map(|st| (fd, st)));
            match reopened {
                Ok((fd, st)) if st.stx_dev() == parent.dev && st.stx_ino == parent.ino => parent.fd = Some(fd),
                _ => self.redescend(),
            }
        }
        let top_len = self.stack.last().map_or(0, |f| f.path_len);
        self.path.truncate(top_len);
    }

    /// The directory just left was moved while the walk was below it, so `..` leads elsewhere. The closed
    /// frames are reopened from the nearest open ancestor (the job's first frame is never closed) by name,
    /// each checked by (dev, ino); the frames from the first one that no longer matches are given up as one
    /// error, and the walk goes on with what is still where it was.
    fn redescend(&mut self) {
        let top = self.stack.len() - 1;
        let open = (0..top).rev().find(|&i| self.stack[i].fd.is_some()).unwrap_or(0);
        let mut fd: Option<OwnedFd> = None;
        let mut reached = open;
        let mut cause = io::Error::other("it is not the same directory any more");
        for i in open + 1..=top {
            let parent = fd.as_ref().or(self.stack[i - 1].fd.as_ref()).map_or(-1, AsRawFd::as_raw_fd);
            let start = self.stack[i - 1].path_len;
            let seg = &self.path[start..self.stack[i].path_len];
            let seg = seg.strip_prefix(b"/").unwrap_or(seg);
            let Ok(name) = CString::new(seg) else { break };
            match open_dir(parent, &name).and_then(|d| statx(d.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map(|st| (d, st)))
            {
                Ok((d, st)) if st.stx_dev() == self.stack[i].dev && st.stx_ino == self.stack[i].ino => {
                    fd = Some(d);
                    reached = i;
                }
                Ok(_) => break,
                Err(e) => {
                    cause = e;
                    break;
                }
            }
        }
        let lost_at = self.stack[reached].path_len;
        self.path.truncate(self.stack.get(reached + 1).map_or(lost_at, |f| f.path_len));
        if reached < top {
            let what =
                format!("directory moved or removed during the walk ({cause}); what was left below it is not counted");
            self.error(None, &io::Error::other(what));
        }
        for lost in self.stack.drain(reached + 1..) {
            self.held -= lost.names.len();
        }
        if let Some(d) = fd {
            self.stack[reached].fd = Some(d);
        }
    }

    /// Lists the directory on top of the stack from its descriptor's position: counts what is not a
    /// directory, leaves the subdirectories pending on the frame. Once the walker holds
    /// [`PENDING_NAMES`] of pending names and this directory holds [`DENTS_BUF_OVER`] of them, the listing
    /// pauses at the end of a buffer and the frame records where (a [`Resume`]).
    fn list(&mut self, dirfd: RawFd, buf: &mut DentsBuf, root: RootId, xattr_whiteouts: bool) -> io::Result<()> {
        loop {
            let over = self.held >= PENDING_NAMES;
            // Only a directory with a part's worth of names of its own pauses: the small ones below a wide
            // directory (which holds the budget) are listed whole, at most a small buffer over.
            if over && self.stack.last().is_some_and(|f| f.names.len() >= DENTS_BUF_OVER) {
                // SAFETY: lseek on the directory being listed; no memory is passed.
                let pos = unsafe { libc::lseek(dirfd, 0, libc::SEEK_CUR) };
                if pos >= 0 {
                    if let Some(top) = self.stack.last_mut() {
                        top.resume = Some(Resume { pos, xattr_whiteouts });
                    }
                    return Ok(());
                }
                // A directory whose position cannot be told is listed whole, as before.
            }
            let n = buf.fill_up_to(dirfd, if over { DENTS_BUF_OVER } else { DENTS_BUF })?;
            if n == 0 {
                return Ok(());
            }
            // Entries are looked at in inode order rather than the directory's hash order: inodes made
            // one after another tend to sit next to each other in the kernel's memory, so statx finds
            // more of them in cache (about 1-2% of the walk on the benchmark; the radix sort costs less).
            buf.order.clear();
            let mut off = 0;
            while off < n {
                let (ino, reclen) = buf.ino_at(off);
                buf.order.push((ino, off as u32));
                off += reclen;
            }
            sort_by_inode(&mut buf.order, &mut buf.scratch);
            for i in 0..buf.order.len() {
                let (name, _) = buf.entry(buf.order[i].1 as usize);
                let bytes = name.to_bytes();
                if bytes == b"." || bytes == b".." {
                    continue;
                }
                match statx(dirfd, name, libc::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) => self.count(dirfd, name, &st, root, xattr_whiteouts),
                    Err(e) => self.error(Some(bytes), &e),
                }
            }
        }
    }

    /// Counts one entry of the directory on top of the stack.
    fn count(&mut self, dirfd: RawFd, name: &CStr, st: &Statx, root: RootId, xattr_whiteouts: bool) {
        let kind = u32::from(st.stx_mode) & libc::S_IFMT;
        if is_mount_point(st, root) {
            // Something is mounted here: another filesystem, or a bind mount of this one. Not crossed,
            // not counted (what stat says here is the mounted object, not the layer's).
            self.local.mount_points += 1;
            return;
        }
        if kind == libc::S_IFDIR && self.excluded(name.to_bytes()) {
            // Measured as the nested engine it holds: neither counted nor entered here.
            return;
        }
        let u = &mut self.local;
        let size = st.stx_size;
        let blocks = blocks_bytes(st);
        match kind {
            libc::S_IFDIR => {
                u.dirs += 1;
                u.allocated_bytes = crate::bytes::add(u.allocated_bytes, blocks);
                let top = self.stack.last_mut().expect("count runs inside a listed directory");
                top.starts.push(top.names.len() as u32);
                top.names.extend_from_slice(name.to_bytes_with_nul());
                self.held += name.to_bytes_with_nul().len();
                return;
            }
            libc::S_IFREG => {
                if size == 0 && xattr_whiteouts && self.has_xattr(dirfd, name, self.layer.xattrs.whiteout()) {
                    self.local.whiteouts += 1;
                } else {
                    self.local.files += 1;
                    // A metacopy file holds only metadata: its data is still in a lower layer, so it has
                    // a size but no blocks. Only such files are worth the extra look-up.
                    if size > 0 && st.stx_blocks == 0 && self.has_xattr(dirfd, name, self.layer.xattrs.metacopy()) {
                        self.local.metacopy_files += 1;
                    }
                }
            }
            libc::S_IFLNK => u.symlinks += 1,
            libc::S_IFCHR if st.stx_rdev_major == 0 && st.stx_rdev_minor == 0 => u.whiteouts += 1,
            _ => u.other += 1,
        }
        if st.stx_nlink > 1 {
            let first = self.layer.seen.lock().map_or(true, |mut s| s.insert((st.stx_dev(), st.stx_ino)));
            if !first {
                return;
            }
        }
        self.local.apparent_bytes = crate::bytes::add(self.local.apparent_bytes, size);
        self.local.allocated_bytes = crate::bytes::add(self.local.allocated_bytes, blocks);
        if kind == libc::S_IFREG && size > 0 {
            self.offer_top(name.to_bytes(), size, blocks);
        }
    }

    /// Whether the directory `name` of the directory being listed is one of the layer's exclusions.
    fn excluded(&self, name: &[u8]) -> bool {
        self.layer.exclude.iter().any(|x| match x.strip_suffix(name) {
            Some(parent) if self.path.is_empty() => parent.is_empty(),
            Some(parent) => parent.strip_suffix(b"/") == Some(&self.path[..]),
            None => false,
        })
    }

    fn offer_top(&mut self, name: &[u8], apparent: u64, allocated: u64) {
        let n = self.pool.top_files;
        if n == 0 {
            return;
        }
        if self.top.len() >= n {
            let Some(Reverse(min)) = self.top.peek() else { return };
            if apparent < min.apparent {
                return;
            }
            // A tie with the smallest kept is broken by path, as the merge of workers' lists breaks it, so
            // that the list does not depend on the order of visits.
            if apparent == min.apparent {
                let sep: &[u8] = if self.path.is_empty() { b"" } else { b"/" };
                let candidate = self.path.iter().chain(sep).chain(name);
                if candidate.cmp(min.path.0.iter()) != std::cmp::Ordering::Less {
                    return;
                }
            }
        }
        let mut path = Vec::with_capacity(self.path.len() + name.len() + 1);
        path.extend_from_slice(&self.path);
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        self.top.push(Reverse(TopEntry { apparent, path: Reverse(path), allocated }));
        if self.top.len() > n {
            self.top.pop();
        }
    }

    /// Reads a directory's overlay markers with one `flistxattr`: opaque (`opaque=y`) is counted, and a
    /// directory marked as holding xattr whiteouts (`opaque=x` since kernel 6.8, a `whiteouts` xattr on
    /// 6.7) is reported so that only its empty files are looked at. Most directories carry no overlay
    /// xattr at all, so this is one system call per directory.
    fn dir_xattrs(&mut self, fd: RawFd, count_opaque: bool) -> bool {
        let (opaque, whiteouts) = dir_markers(fd, self.layer.xattrs);
        if count_opaque && opaque {
            self.local.opaque_dirs += 1;
        }
        whiteouts
    }

    fn has_xattr(&self, dirfd: RawFd, name: &CStr, attr: &CStr) -> bool {
        xattr_present_at(dirfd, name, attr)
    }

    fn error(&mut self, name: Option<&[u8]>, e: &io::Error) {
        let mut p = self.path.clone();
        if let Some(n) = name {
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(n);
        }
        self.error_at(&p, e);
    }

    fn error_at(&mut self, rel: &[u8], e: &io::Error) {
        self.local.errors += 1;
        if self.samples.len() < MAX_ERROR_SAMPLES {
            let mut p = self.layer.upperdir.clone();
            if !rel.is_empty() {
                p.push(std::ffi::OsStr::from_bytes(rel));
            }
            self.samples.push(format!("{}: {e}", p.to_string_lossy()));
        }
    }

    fn merge(self) {
        let Ok(mut acc) = self.layer.acc.lock() else { return };
        let u = &mut acc.usage;
        let l = self.local;
        u.apparent_bytes = crate::bytes::add(u.apparent_bytes, l.apparent_bytes);
        u.allocated_bytes = crate::bytes::add(u.allocated_bytes, l.allocated_bytes);
        u.files += l.files;
        u.dirs += l.dirs;
        u.symlinks += l.symlinks;
        u.whiteouts += l.whiteouts;
        u.opaque_dirs += l.opaque_dirs;
        u.metacopy_files += l.metacopy_files;
        u.other += l.other;
        u.errors += l.errors;
        u.mount_points += l.mount_points;
        for s in self.samples {
            if u.error_samples.len() < MAX_ERROR_SAMPLES {
                u.error_samples.push(s);
            }
        }
        let n = self.pool.top_files;
        for e in self.top {
            acc.top.push(e);
            if acc.top.len() > n {
                acc.top.pop();
            }
        }
    }
}

/// A directory's overlay markers, read with one `flistxattr`: whether it is opaque (`opaque=y`), and
/// whether it holds xattr whiteouts (`opaque=x` since kernel 6.8, a `whiteouts` xattr on 6.7), so that
/// only its empty files need a look. Most directories carry no overlay xattr at all, so this is one
/// system call per directory.
pub(crate) fn dir_markers(fd: RawFd, x: OverlayXattrs) -> (bool, bool) {
    let mut names = [0u8; 1024];
    let n = unsafe { libc::flistxattr(fd, names.as_mut_ptr().cast(), names.len()) };
    let (has_opaque, has_whiteouts) = if n >= 0 {
        let list = &names[..n as usize];
        let has = |want: &CStr| list.split(|&b| b == 0).any(|a| a == want.to_bytes());
        (has(x.opaque()), has(x.whiteouts()))
    } else {
        // Too many names for the buffer (or no xattr support): ask for the two that matter.
        (true, unsafe { libc::fgetxattr(fd, x.whiteouts().as_ptr(), std::ptr::null_mut(), 0) >= 0 })
    };
    let mut marker = 0u8;
    if has_opaque {
        let mut v = [0u8; 1];
        let got = unsafe { libc::fgetxattr(fd, x.opaque().as_ptr(), v.as_mut_ptr().cast(), 1) };
        if got == 1 {
            marker = v[0];
        }
    }
    (marker == b'y', has_whiteouts || marker == b'x')
}

pub(crate) fn is_mount_point(st: &Statx, root: RootId) -> bool {
    let mount_root = u64::from(libc::STATX_ATTR_MOUNT_ROOT as u32);
    (st.stx_attributes_mask & mount_root != 0 && st.stx_attributes & mount_root != 0)
        || (st.stx_mask & libc::STATX_MNT_ID != 0 && st.stx_mnt_id != root.mnt_id)
        || st.stx_dev() != root.dev
}

enum Opened {
    /// The open directory and its (dev, ino).
    Dir(OwnedFd, u64, u64),
    MountPoint,
}

/// Opens a listed subdirectory and checks it is still a directory on the layer's own mount.
fn open_dir_checked(parent: RawFd, name: &CStr, root: RootId) -> io::Result<Opened> {
    let fd = open_dir(parent, name)?;
    let st = statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)?;
    if is_mount_point(&st, root) {
        // Became a mount point after it was listed.
        return Ok(Opened::MountPoint);
    }
    Ok(Opened::Dir(fd, st.stx_dev(), st.stx_ino))
}

pub(crate) type Statx = libc::statx;

pub(crate) trait StatxExt {
    fn stx_dev(&self) -> u64;
}

impl StatxExt for Statx {
    fn stx_dev(&self) -> u64 {
        libc::makedev(self.stx_dev_major, self.stx_dev_minor)
    }
}

pub(crate) fn blocks_bytes(st: &Statx) -> u64 {
    st.stx_blocks.saturating_mul(512)
}

pub(crate) fn open_dir(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

const STATX_WANTED: u32 = libc::STATX_TYPE
    | libc::STATX_MODE
    | libc::STATX_NLINK
    | libc::STATX_INO
    | libc::STATX_SIZE
    | libc::STATX_BLOCKS
    | libc::STATX_MNT_ID;

pub(crate) fn statx(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<Statx> {
    let mut st = std::mem::MaybeUninit::<Statx>::uninit();
    // Never trigger an automount from inside a layer.
    let flags = flags | libc::AT_NO_AUTOMOUNT;
    let rc = unsafe { libc::statx(dirfd, name.as_ptr(), flags, STATX_WANTED, st.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { st.assume_init() })
}

/// Whether the entry `name` in `dirfd` carries the xattr `attr`, without following a symlink and without
/// opening the entry: `getxattrat(2)` (kernel 6.13+), else `lgetxattr` through the directory's
/// `/proc/self/fd` link.
pub(crate) fn xattr_present_at(dirfd: RawFd, name: &CStr, attr: &CStr) -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        const SYS_GETXATTRAT: libc::c_long = 464;
        #[repr(C)]
        struct XattrArgs {
            value: u64,
            size: u32,
            flags: u32,
        }
        let mut args = XattrArgs { value: 0, size: 0, flags: 0 };
        let rc = unsafe {
            libc::syscall(
                SYS_GETXATTRAT,
                dirfd,
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                attr.as_ptr(),
                &mut args as *mut XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            )
        };
        if rc >= 0 {
            return true;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
            return false;
        }
    }
    let mut p = format!("/proc/self/fd/{dirfd}/").into_bytes();
    p.extend_from_slice(name.to_bytes());
    let Ok(p) = CString::new(p) else { return false };
    unsafe { libc::lgetxattr(p.as_ptr(), attr.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

/// Sorts (inode, offset) pairs by inode: a least-significant-digit radix sort over the low bytes up to
/// the highest one in which the inodes differ. One listing's inodes usually span a narrow range, so this
/// is two or three linear passes where a comparison sort spends n log n compares (which showed in
/// profiles of directories of thousands of files).
pub(crate) fn sort_by_inode(v: &mut Vec<(u64, u32)>, scratch: &mut Vec<(u64, u32)>) {
    if v.len() < 64 {
        v.sort_unstable();
        return;
    }
    let (lo, hi) = v.iter().fold((u64::MAX, 0), |(lo, hi), &(ino, _)| (lo.min(ino), hi.max(ino)));
    let differ = lo ^ hi;
    scratch.clear();
    scratch.resize(v.len(), (0, 0));
    let mut shift = 0;
    while shift < 64 && differ >> shift != 0 {
        let mut starts = [0usize; 256];
        for &(ino, _) in v.iter() {
            starts[((ino >> shift) & 0xff) as usize] += 1;
        }
        let mut sum = 0;
        for c in starts.iter_mut() {
            (*c, sum) = (sum, sum + *c);
        }
        for &e in v.iter() {
            let digit = ((e.0 >> shift) & 0xff) as usize;
            scratch[starts[digit]] = e;
            starts[digit] += 1;
        }
        std::mem::swap(v, scratch);
        shift += 8;
    }
}

/// One worker's `getdents64` buffer, reused for every directory it lists.
pub(crate) struct DentsBuf {
    buf: Vec<u64>,
    /// (inode, offset) of the entries in `buf`, to visit them in inode order.
    pub(crate) order: Vec<(u64, u32)>,
    /// The radix sort's second buffer.
    pub(crate) scratch: Vec<(u64, u32)>,
}

impl DentsBuf {
    pub(crate) fn new() -> DentsBuf {
        // u64 elements keep every record 8-byte aligned, as the kernel lays them out.
        DentsBuf { buf: vec![0u64; DENTS_BUF / 8], order: Vec::with_capacity(DENTS_BUF / 24), scratch: Vec::new() }
    }

    pub(crate) fn fill(&mut self, dirfd: RawFd) -> io::Result<usize> {
        self.fill_up_to(dirfd, DENTS_BUF)
    }

    /// Reads entries of `dirfd` into the buffer, at most `len` bytes of them (at most the buffer's size).
    pub(crate) fn fill_up_to(&mut self, dirfd: RawFd, len: usize) -> io::Result<usize> {
        let len = len.min(DENTS_BUF);
        // SAFETY: the buffer holds DENTS_BUF writable bytes, and the kernel writes at most `len` of them.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dirfd, self.buf.as_mut_ptr(), len) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The inode number and record length of the entry at byte `off`.
    pub(crate) fn ino_at(&self, off: usize) -> (u64, usize) {
        let bytes = self.bytes();
        let ino = u64::from_ne_bytes(bytes[off..off + 8].try_into().unwrap_or([0; 8]));
        let reclen = u16::from_ne_bytes([bytes[off + 16], bytes[off + 17]]) as usize;
        (ino, reclen.max(1))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the Vec<u64> owns DENTS_BUF initialised bytes.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), DENTS_BUF) }
    }

    /// The entry at byte `off`: its name and record length. `linux_dirent64` is
    /// `{ u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }`.
    pub(crate) fn entry(&self, off: usize) -> (&CStr, usize) {
        let bytes = self.bytes();
        let reclen = u16::from_ne_bytes([bytes[off + 16], bytes[off + 17]]) as usize;
        let name = CStr::from_bytes_until_nul(&bytes[off + 19..off + reclen]).unwrap_or(c"");
        (name, reclen.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::{sort_by_inode, LayerSpec, Walk};
    use crate::usage::OverlayXattrs;
    use std::path::Path;

    fn layer(dir: &Path, files: usize, bytes: usize) -> LayerSpec {
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        for i in 0..files {
            std::fs::write(dir.join("sub").join(format!("f{i}")), vec![b'x'; bytes]).expect("write");
        }
        LayerSpec {
            upperdir: Some(dir.to_path_buf()),
            xattrs: OverlayXattrs::Trusted,
            beneath: None,
            exclude: Vec::new(),
        }
    }

    #[test]
    fn walk_results_are_taken_per_layer_in_any_order_while_workers_run() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let specs = vec![
            layer(&tmp.path().join("a"), 300, 3),
            LayerSpec { upperdir: None, xattrs: OverlayXattrs::Trusted, beneath: None, exclude: Vec::new() },
            layer(&tmp.path().join("b"), 5, 1000),
            LayerSpec {
                upperdir: Some(tmp.path().join("missing")),
                xattrs: OverlayXattrs::Trusted,
                beneath: None,
                exclude: Vec::new(),
            },
            layer(&tmp.path().join("c"), 40, 7),
        ];
        let walk = Walk::new(specs, 1, None);
        assert_eq!(walk.len(), 5);
        std::thread::scope(|s| {
            walk.spawn_workers(s, 2);
            // Taken out of order, each as it is done, while the workers are still on the others.
            let c = walk.take(4).expect("layer c");
            assert_eq!((c.files, c.dirs, c.apparent_bytes), (40, 1, 280));
            let missing = walk.take(3).expect_err("a missing upperdir is the layer's error");
            assert_eq!(missing.source.kind(), std::io::ErrorKind::NotFound);
            let a = walk.take(0).expect("layer a");
            assert_eq!((a.files, a.dirs, a.apparent_bytes), (300, 1, 900));
            assert_eq!(walk.take(1).expect("no layer"), Default::default());
            let b = walk.take(2).expect("layer b");
            assert_eq!((b.files, b.apparent_bytes), (5, 5000));
            assert_eq!(b.top_files.len(), 1, "one top file kept per layer");
            assert_eq!(b.top_files[0].apparent_bytes, 1000);
        });
        // A second take has nothing left to give.
        assert_eq!(walk.take(0).expect("taken"), Default::default());
    }

    #[test]
    fn top_files_of_equal_size_are_cut_by_path_whatever_the_order_of_visits() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Created in reverse name order, so inode order (the order of visits) is the reverse of name order.
        for name in ["e", "d", "c", "b", "a"] {
            std::fs::write(tmp.path().join(name), b"same").expect("write");
        }
        let spec = LayerSpec {
            upperdir: Some(tmp.path().to_path_buf()),
            xattrs: OverlayXattrs::Trusted,
            beneath: None,
            exclude: Vec::new(),
        };
        let walk = Walk::new(vec![spec], 2, None);
        walk.work();
        let top = walk.take(0).expect("walk").top_files;
        assert_eq!(top.iter().map(|t| t.path.as_str()).collect::<Vec<_>>(), ["/a", "/b"]);
    }

    #[test]
    fn an_excluded_directory_is_neither_counted_nor_entered_and_its_namesakes_are() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let put = |rel: &str, bytes: usize| {
            let path = tmp.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, vec![b'x'; bytes]).expect("write");
        };
        put("var/lib/docker/overlay2/x/diff/big", 5000);
        put("var/lib/docker-old/f", 7);
        put("srv/var/lib/docker/f", 11);
        put("docker/f", 13);
        put("a", 1);
        let spec = LayerSpec {
            upperdir: Some(tmp.path().to_path_buf()),
            xattrs: OverlayXattrs::Trusted,
            beneath: None,
            exclude: vec!["var/lib/docker".into()],
        };
        let walk = Walk::new(vec![spec], 0, None);
        walk.work();
        let u = walk.take(0).expect("walk");
        // var, var/lib, var/lib/docker-old, srv, srv/var, srv/var/lib, srv/var/lib/docker, docker.
        assert_eq!((u.files, u.dirs, u.apparent_bytes), (4, 8, 7 + 11 + 13 + 1));
    }

    #[test]
    fn a_directory_wider_than_the_pending_budget_is_walked_in_parts_each_entry_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let wide = tmp.path().join("wide");
        // Names of 200 bytes: 3000 subdirectories are some 600 KB of names, over twice PENDING_NAMES.
        let n = 3000;
        let name = |i: usize| format!("{i:05}{}", "n".repeat(195));
        for i in 0..n {
            std::fs::create_dir_all(wide.join(name(i))).expect("mkdir");
        }
        assert!(n * 201 > 2 * super::PENDING_NAMES);
        // Every 100th holds a chain deeper than the open-directory window, so the wide directory's descriptor
        // is closed and reopened through `..` while its listing is paused; each chain ends in a 7-byte file,
        // and every 10th subdirectory holds a 3-byte one.
        let depth = super::OPEN_DIR_WINDOW + 12;
        for i in (0..n).step_by(100) {
            let mut d = wide.join(name(i));
            for _ in 0..depth {
                d.push("d");
            }
            std::fs::create_dir_all(&d).expect("mkdir chain");
            std::fs::write(d.join("end"), b"1234567").expect("write");
        }
        for i in (0..n).step_by(10) {
            std::fs::write(wide.join(name(i)).join("f"), b"abc").expect("write");
        }
        let chains = n / 100;
        for threads in [1, 2] {
            let spec = LayerSpec {
                upperdir: Some(tmp.path().to_path_buf()),
                xattrs: OverlayXattrs::Trusted,
                beneath: None,
                exclude: Vec::new(),
            };
            let walk = Walk::new(vec![spec], 3, None);
            std::thread::scope(|s| {
                walk.spawn_workers(s, threads - 1);
                walk.work();
            });
            let u = walk.take(0).expect("walk");
            assert_eq!(u.errors, 0, "{:?}", u.error_samples);
            assert_eq!(u.dirs as usize, 1 + n + chains * depth, "{threads} thread(s)");
            assert_eq!(u.files as usize, chains + n / 10);
            assert_eq!(u.apparent_bytes as usize, 7 * chains + 3 * (n / 10));
            // Equal sizes are cut by path, whatever the parts: the three first chains by name.
            let top: Vec<&str> = u.top_files.iter().map(|t| t.path.as_str()).collect();
            assert_eq!(top.len(), 3);
            assert!(top[0].starts_with("/wide/00000n") && top[1].starts_with("/wide/00100n"), "{top:?}");
        }
    }

    /// A small deterministic generator, so the test needs no crate and fails the same way every time.
    fn numbers(seed: u64, n: usize, spread: u64) -> Vec<(u64, u32)> {
        let mut x = seed;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % spread).wrapping_add(1_000_000), i as u32)
            })
            .collect()
    }

    #[test]
    fn radix_sort_orders_like_a_comparison_sort() {
        let cases = [
            numbers(1, 10, 100),
            numbers(2, 1000, 1000),
            numbers(3, 5000, 1 << 20),
            numbers(4, 300, u64::MAX),
            numbers(5, 200, 1),
            (0..500u32).rev().map(|i| (u64::from(i) << 40 | 7, i)).collect(),
            Vec::new(),
        ];
        for v in cases {
            let mut want = v.clone();
            want.sort_unstable();
            let (mut got, mut scratch) = (v, Vec::new());
            sort_by_inode(&mut got, &mut scratch);
            let inodes = |v: &[(u64, u32)]| v.iter().map(|e| e.0).collect::<Vec<_>>();
            assert_eq!(inodes(&got), inodes(&want));
            let mut offsets: Vec<u32> = got.iter().map(|e| e.1).collect();
            offsets.sort_unstable();
            offsets.dedup();
            assert_eq!(offsets.len(), got.len(), "every entry kept once");
        }
    }
}

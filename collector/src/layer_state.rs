//! Accounting state of one writable layer kept between scans, so that a scan costs what changed rather
//! than what is there: every directory of the layer has a node holding the totals of its own direct
//! entries, and when a directory is known to have changed it is listed again and its node replaced.
//! The layer's figures are the sum of the nodes, kept as running totals.
//!
//! Memory follows directories, not files: a node holds its name, its subdirectories, its counts and only
//! two kinds of per-file record, both bounded: the inodes with `nlink > 1` listed in it (so a hard-linked
//! inode counts once across the layer, as the full walk counts it) and its own largest files, at most as
//! many as the layer's top-files list.
//!
//! Which directories changed is not this module's business: the caller says so (the agent learns it from
//! fanotify). Every directory the state takes in is first handed to a [`DirWatch`], before it is listed,
//! so that a change made after the listing is always reported. The counting rules are the full walk's
//! ([`crate::walk`]) to the entry: what one directory contributes here is what the walk counts in it.
//!
//! Not for: one-shot audits (`ovlaudit report` walks, it keeps no state) or deciding when to rebuild
//! (the caller decides; [`RefreshError`] says when the state can no longer be trusted).

use crate::hostfs::StoreDir;
use crate::usage::{OverlayXattrs, TopFile, UsageError, WritableUsage};
use crate::walk::{
    blocks_bytes, dir_markers, is_mount_point, open_dir, sort_by_inode, statx, xattr_present_at, DentsBuf, RootId,
    Statx, StatxExt,
};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

mod first_walk;

const MAX_ERROR_SAMPLES: usize = 5;

/// Told about every directory the state takes in (before it is listed) and every one it lets go. The first
/// walk of a layer calls it from several threads, one call at a time.
pub trait DirWatch: Send {
    /// Starts watching the open directory `dir` (inode `ino`) of the layer; returns the key under which its
    /// changes will be reported. An error means the state cannot follow this layer (a mark limit, a file
    /// system without file handles).
    fn watch(&mut self, dir: BorrowedFd<'_>, ino: u64) -> io::Result<Box<[u8]>>;
    /// The directory under `key` is no longer part of the state (removed or moved out).
    fn forget(&mut self, key: &[u8]);
    /// Stops watching the open directory `dir`: its layer's state is given up ([`LayerState::abandon`]),
    /// and what watching it costs (a mark under a limit) should go with it. By default nothing.
    fn unwatch(&mut self, _dir: BorrowedFd<'_>) {}
}

/// Why a layer's state could not be built or brought up to date; the caller should walk the layer in
/// full (and may build the state again).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The upperdir could not be opened.
    #[error(transparent)]
    Open(#[from] UsageError),
    /// A directory could not be watched.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The upperdir is another directory than the one the state was built from (recreated).
    #[error("{} was replaced", path.display())]
    Replaced {
        /// The upperdir.
        path: PathBuf,
    },
    /// A changed directory could not be found again where the state had it (moved under the scan).
    #[error("{} moved while it was being listed again", path.display())]
    Lost {
        /// Where the state had it.
        path: PathBuf,
    },
    /// A hard link was made to a file the state counted as having one name: where its other name is, only
    /// a walk can say.
    #[error("a new hard link to a file with data in {}", path.display())]
    NewHardLink {
        /// The directory where it was seen.
        path: PathBuf,
    },
}

/// One changed directory, as the caller learnt it.
#[derive(Debug, Default, Clone)]
pub struct Changed {
    /// Names of subdirectories created or moved in since the last refresh: whatever the state knows under
    /// their inode numbers (which the file system may have reused) is dropped, and they are walked anew.
    pub new_dirs: HashSet<Box<[u8]>>,
}

/// What one refresh did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefreshStats {
    /// Directories listed again.
    pub dirs_relisted: u64,
    /// Directories walked because they are new.
    pub dirs_walked: u64,
    /// Directories dropped because they are gone.
    pub dirs_dropped: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    apparent: u64,
    allocated: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    whiteouts: u64,
    opaque: u64,
    metacopy: u64,
    other: u64,
    errors: u64,
    mount_points: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.apparent = self.apparent.saturating_add(o.apparent);
        self.allocated = self.allocated.saturating_add(o.allocated);
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.whiteouts += o.whiteouts;
        self.opaque += o.opaque;
        self.metacopy += o.metacopy;
        self.other += o.other;
        self.errors += o.errors;
        self.mount_points += o.mount_points;
    }

    fn sub(&mut self, o: &Counts) {
        self.apparent = self.apparent.saturating_sub(o.apparent);
        self.allocated = self.allocated.saturating_sub(o.allocated);
        self.files = self.files.saturating_sub(o.files);
        self.dirs = self.dirs.saturating_sub(o.dirs);
        self.symlinks = self.symlinks.saturating_sub(o.symlinks);
        self.whiteouts = self.whiteouts.saturating_sub(o.whiteouts);
        self.opaque = self.opaque.saturating_sub(o.opaque);
        self.metacopy = self.metacopy.saturating_sub(o.metacopy);
        self.other = self.other.saturating_sub(o.other);
        self.errors = self.errors.saturating_sub(o.errors);
        self.mount_points = self.mount_points.saturating_sub(o.mount_points);
    }
}

/// A regular file with data that may be among the layer's largest.
#[derive(Debug, Clone)]
struct Candidate {
    apparent: u64,
    allocated: u64,
    /// The inode when it has other names (0 otherwise): its size is then the link table's.
    linked_ino: u64,
    name: Box<[u8]>,
}

/// A hard-linked inode (`nlink > 1`) listed somewhere in the layer.
#[derive(Debug, Clone, Copy)]
struct Linked {
    apparent: u64,
    allocated: u64,
    /// Names of it the state holds.
    refs: u32,
}

#[derive(Debug, Default)]
struct Dir {
    parent: u64,
    name: Box<[u8]>,
    children: Vec<u64>,
    own: Counts,
    links: Vec<u64>,
    top: Vec<Candidate>,
    samples: Vec<String>,
    key: Box<[u8]>,
}

/// A directory to take in: an open parent (or the directory itself), the name to open in it (none: it is
/// the directory), its inode, its parent's inode and its name.
type Pending = (Rc<OwnedFd>, Option<Box<[u8]>>, u64, u64, Box<[u8]>);

/// What listing one directory found.
#[derive(Default)]
struct Listing {
    own: Counts,
    links: Vec<(u64, u64, u64)>,
    subdirs: Vec<(Box<[u8]>, u64)>,
    top: Vec<Candidate>,
    samples: Vec<String>,
}

/// The accounting state of one writable layer.
#[derive(Debug)]
pub struct LayerState {
    upperdir: PathBuf,
    /// The store the upperdir was named by, if any: it is opened beneath the store's root.
    beneath: Option<Arc<StoreDir>>,
    xattrs: OverlayXattrs,
    top_files: usize,
    root: RootId,
    root_ino: u64,
    dirs: HashMap<u64, Dir>,
    linked: HashMap<u64, Linked>,
    totals: Counts,
}

/// Opens the upperdir: beneath its store's root when it has one, else by its path.
fn open_upperdir(upperdir: &Path, beneath: Option<&StoreDir>) -> io::Result<OwnedFd> {
    match beneath {
        Some(store) => store.open_layer_dir(upperdir),
        None => {
            let c = CString::new(upperdir.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
            open_dir(libc::AT_FDCWD, &c)
        }
    }
}

impl LayerState {
    /// Walks the layer at `upperdir` on `threads` threads (0: as many as the walk uses, [`crate::walk::worker_threads`]), watching every directory before
    /// listing it. With `beneath`, the upperdir is opened beneath that store's root directory without
    /// following a symlink in any component, as the full walk opens it (see [`crate::hostfs`]).
    pub fn build(
        upperdir: &Path,
        xattrs: OverlayXattrs,
        top_files: usize,
        beneath: Option<Arc<StoreDir>>,
        threads: usize,
        watch: &mut dyn DirWatch,
    ) -> Result<LayerState, RefreshError> {
        let open_err = |source| RefreshError::Open(UsageError { path: upperdir.to_path_buf(), source });
        let fd = open_upperdir(upperdir, beneath.as_deref()).map_err(open_err)?;
        let st = statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map_err(open_err)?;
        let mut state = LayerState {
            upperdir: upperdir.to_path_buf(),
            beneath,
            xattrs,
            top_files,
            root: RootId { dev: st.stx_dev(), mnt_id: st.stx_mnt_id },
            root_ino: st.stx_ino,
            dirs: HashMap::new(),
            linked: HashMap::new(),
            totals: Counts::default(),
        };
        match first_walk::take_in(&mut state, fd, watch, crate::walk::worker_threads(threads)) {
            Ok(()) => Ok(state),
            Err(e) => {
                // A half-built state is no use; what it watched would only take room from other layers.
                state.abandon(watch);
                Err(e)
            }
        }
    }

    /// The upperdir this state is of.
    pub fn upperdir(&self) -> &Path {
        &self.upperdir
    }

    /// The number of directories held.
    pub fn dirs(&self) -> usize {
        self.dirs.len()
    }

    /// The largest-files count this state keeps.
    pub fn top_files(&self) -> usize {
        self.top_files
    }

    /// Lets go of every directory (tells `watch` to forget each).
    pub fn release(self, watch: &mut dyn DirWatch) {
        for d in self.dirs.values() {
            watch.forget(&d.key);
        }
    }

    /// Gives the state up for good: every directory it holds is opened again from the upperdir by its
    /// names (each step checked by inode, no mount point crossed) and handed to [`DirWatch::unwatch`], then
    /// all are forgotten. A directory no longer where the state had it is only forgotten.
    pub fn abandon(self, watch: &mut dyn DirWatch) {
        let root = open_upperdir(&self.upperdir, self.beneath.as_deref()).ok().filter(|fd| {
            statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
                .is_ok_and(|st| st.stx_ino == self.root_ino && st.stx_dev() == self.root.dev)
        });
        if let Some(root) = root {
            watch.unwatch(root.as_fd());
            // (open parent, inode): opened when popped, so that open descriptors follow depth, not width.
            let root = Rc::new(root);
            let mut stack: Vec<(Rc<OwnedFd>, u64)> = self.children_of(self.root_ino, &root);
            while let Some((parent, ino)) = stack.pop() {
                let Some(name) = self.dirs.get(&ino).and_then(|d| CString::new(&d.name[..]).ok()) else { continue };
                let Ok(fd) = open_dir(parent.as_raw_fd(), &name) else { continue };
                let same = statx(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
                    .is_ok_and(|st| st.stx_ino == ino && !is_mount_point(&st, self.root));
                if same {
                    watch.unwatch(fd.as_fd());
                    let fd = Rc::new(fd);
                    stack.extend(self.children_of(ino, &fd));
                }
            }
        }
        self.release(watch);
    }

    fn children_of(&self, ino: u64, fd: &Rc<OwnedFd>) -> Vec<(Rc<OwnedFd>, u64)> {
        self.dirs.get(&ino).map_or_else(Vec::new, |d| d.children.iter().map(|&c| (fd.clone(), c)).collect())
    }

    /// Whether `ino` is a directory the state holds.
    pub fn holds(&self, ino: u64) -> bool {
        self.dirs.contains_key(&ino)
    }

    /// The layer's figures, as a full walk would give them now (if every change was reported).
    pub fn usage(&self) -> WritableUsage {
        let t = &self.totals;
        let mut u = WritableUsage {
            apparent_bytes: t.apparent,
            allocated_bytes: t.allocated,
            files: t.files,
            dirs: t.dirs,
            symlinks: t.symlinks,
            whiteouts: t.whiteouts,
            opaque_dirs: t.opaque,
            metacopy_files: t.metacopy,
            other: t.other,
            errors: t.errors,
            mount_points: t.mount_points,
            top_files: Vec::new(),
            error_samples: Vec::new(),
        };
        for l in self.linked.values() {
            u.apparent_bytes = crate::bytes::add(u.apparent_bytes, l.apparent);
            u.allocated_bytes = crate::bytes::add(u.allocated_bytes, l.allocated);
        }
        if t.errors > 0 {
            let mut with: Vec<&Dir> = self.dirs.values().filter(|d| !d.samples.is_empty()).collect();
            with.sort_by(|a, b| a.samples.cmp(&b.samples));
            u.error_samples = with.iter().flat_map(|d| d.samples.iter().cloned()).take(MAX_ERROR_SAMPLES).collect();
        }
        if self.top_files > 0 {
            u.top_files = self.top();
        }
        u
    }

    fn top(&self) -> Vec<TopFile> {
        // (apparent, allocated, path, linked inode): largest first, ties by path, each inode once.
        let mut all: Vec<(u64, u64, Vec<u8>, u64)> = Vec::new();
        for (&ino, d) in &self.dirs {
            for c in &d.top {
                let (apparent, allocated) = match self.linked.get(&c.linked_ino) {
                    Some(l) if c.linked_ino != 0 => (l.apparent, l.allocated),
                    _ => (c.apparent, c.allocated),
                };
                let mut path = self.path_of(ino);
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(&c.name);
                all.push((apparent, allocated, path, c.linked_ino));
            }
        }
        all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)).then_with(|| b.1.cmp(&a.1)));
        let mut seen = HashSet::new();
        all.into_iter()
            .filter(|e| e.3 == 0 || seen.insert(e.3))
            .take(self.top_files)
            .map(|(a, b, p, _)| TopFile::new(&p, a, b))
            .collect()
    }

    /// The path of directory `ino` below the upperdir (empty for the root).
    fn path_of(&self, mut ino: u64) -> Vec<u8> {
        let mut parts: Vec<&[u8]> = Vec::new();
        while ino != self.root_ino {
            let Some(d) = self.dirs.get(&ino) else { break };
            parts.push(&d.name);
            ino = d.parent;
        }
        let mut p = Vec::new();
        for part in parts.iter().rev() {
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(part);
        }
        p
    }

    fn full_path(&self, ino: u64) -> PathBuf {
        let rel = self.path_of(ino);
        if rel.is_empty() {
            self.upperdir.clone()
        } else {
            self.upperdir.join(OsStr::from_bytes(&rel))
        }
    }

    fn depth(&self, mut ino: u64) -> usize {
        let mut n = 0;
        while ino != self.root_ino {
            match self.dirs.get(&ino) {
                Some(d) => ino = d.parent,
                None => break,
            }
            n += 1;
        }
        n
    }

    /// Lists again every directory in `changed` (by inode; unknown ones are ignored), shallowest first,
    /// walks the subdirectories that are new and drops those that are gone.
    pub fn refresh(
        &mut self,
        changed: HashMap<u64, Changed>,
        watch: &mut dyn DirWatch,
    ) -> Result<RefreshStats, RefreshError> {
        let mut stats = RefreshStats::default();
        let root_fd = open_upperdir(&self.upperdir, self.beneath.as_deref())
            .map_err(|source| RefreshError::Open(UsageError { path: self.upperdir.clone(), source }))?;
        let st = statx(root_fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
            .map_err(|source| RefreshError::Open(UsageError { path: self.upperdir.clone(), source }))?;
        if st.stx_ino != self.root_ino || st.stx_dev() != self.root.dev {
            return Err(RefreshError::Replaced { path: self.upperdir.clone() });
        }
        let mut order: Vec<(usize, u64)> =
            changed.keys().filter(|i| self.dirs.contains_key(i)).map(|&i| (self.depth(i), i)).collect();
        order.sort_unstable();
        let mut buf = DentsBuf::new();
        for (_, ino) in order {
            if !self.dirs.contains_key(&ino) {
                continue; // dropped with a parent listed before it
            }
            let fd = self.reopen(&root_fd, ino)?;
            let new_dirs = changed.get(&ino).map(|c| &c.new_dirs);
            self.relist(fd, ino, new_dirs, watch, &mut buf, &mut stats)?;
        }
        Ok(stats)
    }

    /// Opens directory `ino` again from the root by its names, each step checked by inode.
    fn reopen(&self, root_fd: &OwnedFd, ino: u64) -> Result<OwnedFd, RefreshError> {
        let mut chain = Vec::new();
        let mut at = ino;
        while at != self.root_ino {
            let Some(d) = self.dirs.get(&at) else { break };
            chain.push(at);
            at = d.parent;
        }
        let lost = || RefreshError::Lost { path: self.full_path(ino) };
        let mut fd = root_fd.try_clone().map_err(|_| lost())?;
        for &step in chain.iter().rev() {
            let d = &self.dirs[&step];
            let name = CString::new(&d.name[..]).map_err(|_| lost())?;
            let next = open_dir(fd.as_raw_fd(), &name).map_err(|_| lost())?;
            let st = statx(next.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map_err(|_| lost())?;
            if st.stx_ino != step || is_mount_point(&st, self.root) {
                return Err(lost());
            }
            fd = next;
        }
        Ok(fd)
    }

    fn relist(
        &mut self,
        fd: OwnedFd,
        ino: u64,
        new_dirs: Option<&HashSet<Box<[u8]>>>,
        watch: &mut dyn DirWatch,
        buf: &mut DentsBuf,
        stats: &mut RefreshStats,
    ) -> Result<(), RefreshError> {
        stats.dirs_relisted += 1;
        let is_root = ino == self.root_ino;
        let path = self.path_of(ino);
        let listing = list(fd.as_raw_fd(), is_root, self.xattrs, self.root, self.top_files, &path, &self.upperdir, buf);
        let fd = Rc::new(fd);
        // Subdirectories: kept when the same directory is still here under the same name and no event says
        // it was made anew; everything else is dropped and walked again.
        let old_children = self.dirs.get(&ino).map(|d| d.children.clone()).unwrap_or_default();
        let mut keep = Vec::new();
        let mut fresh = Vec::new();
        for (name, child) in &listing.subdirs {
            let is_new = new_dirs.is_some_and(|n| n.contains(name));
            let same = !is_new && self.dirs.get(child).is_some_and(|d| d.parent == ino && d.name == *name);
            if same {
                keep.push(*child);
            } else {
                fresh.push((name.clone(), *child));
            }
        }
        for old in old_children {
            if !keep.contains(&old) && self.dirs.get(&old).is_some_and(|d| d.parent == ino) {
                self.drop_tree(old, watch, stats);
            }
        }
        for (_, child) in &fresh {
            if self.dirs.contains_key(child) {
                // Moved here from elsewhere (or an inode number reused): what it held is walked anew.
                self.drop_tree(*child, watch, stats);
            }
        }
        let new_links = self.replace_listing(ino, listing, keep)?;
        if new_links {
            return Err(RefreshError::NewHardLink { path: self.full_path(ino) });
        }
        if !fresh.is_empty() {
            // Opened from this directory as the walk would: an unreadable one is an error counted here, a
            // mount point is not crossed, one replaced since the listing comes back with its own events.
            let stack = fresh.into_iter().rev().map(|(name, child)| (fd.clone(), Some(name.clone()), child, ino, name));
            let before = self.dirs.len();
            self.take_in(stack.collect(), watch, buf)?;
            stats.dirs_walked += self.dirs.len().saturating_sub(before) as u64;
        }
        Ok(())
    }

    /// Replaces the node of `ino` by what `listing` found; true when an inode with data and `nlink > 1`
    /// that the state did not hold as linked appeared (a new hard link).
    fn replace_listing(&mut self, ino: u64, listing: Listing, children: Vec<u64>) -> Result<bool, RefreshError> {
        let Some(d) = self.dirs.get_mut(&ino) else { return Ok(false) };
        self.totals.sub(&d.own);
        let old_links = std::mem::take(&mut d.links);
        d.own = listing.own;
        d.top = listing.top;
        d.samples = listing.samples;
        d.children = children;
        d.links = listing.links.iter().map(|l| l.0).collect();
        self.totals.add(&listing.own);
        let old: HashSet<u64> = old_links.iter().copied().collect();
        for l in old_links {
            self.unlink(l);
        }
        let mut new_link = false;
        for (lino, apparent, allocated) in listing.links {
            let known = old.contains(&lino) || self.linked.contains_key(&lino);
            if !known && (apparent > 0 || allocated > 0) {
                new_link = true;
            }
            self.link(lino, apparent, allocated);
        }
        Ok(new_link)
    }

    fn link(&mut self, ino: u64, apparent: u64, allocated: u64) {
        let e = self.linked.entry(ino).or_insert(Linked { apparent, allocated, refs: 0 });
        e.apparent = apparent;
        e.allocated = allocated;
        e.refs += 1;
    }

    fn unlink(&mut self, ino: u64) {
        if let Some(e) = self.linked.get_mut(&ino) {
            e.refs = e.refs.saturating_sub(1);
            if e.refs == 0 {
                self.linked.remove(&ino);
            }
        }
    }

    fn drop_tree(&mut self, ino: u64, watch: &mut dyn DirWatch, stats: &mut RefreshStats) {
        if let Some(parent) = self.dirs.get(&ino).map(|d| d.parent) {
            if let Some(p) = self.dirs.get_mut(&parent) {
                p.children.retain(|&c| c != ino);
            }
        }
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            let Some(d) = self.dirs.remove(&i) else { continue };
            stats.dirs_dropped += 1;
            self.totals.sub(&d.own);
            for l in &d.links {
                self.unlink(*l);
            }
            watch.forget(&d.key);
            stack.extend(d.children);
        }
    }

    /// Takes in the directories of `stack` (the last first) and everything below them, on this thread (a
    /// refresh's new directories; the first walk is [`first_walk`]): each directory watched, then listed,
    /// then its subdirectories opened from it. A hard link found to an inode the state did not hold as
    /// linked is an error (its other name may be counted as a file of its own).
    fn take_in(
        &mut self,
        mut stack: Vec<Pending>,
        watch: &mut dyn DirWatch,
        buf: &mut DentsBuf,
    ) -> Result<(), RefreshError> {
        while let Some((base, open_name, ino, parent, name)) = stack.pop() {
            let fd = match open_name {
                None => base,
                Some(n) => {
                    let Ok(cname) = CString::new(&n[..]) else { continue };
                    let opened = open_dir(base.as_raw_fd(), &cname)
                        .and_then(|d| statx(d.as_raw_fd(), c"", libc::AT_EMPTY_PATH).map(|st| (d, st)));
                    match opened {
                        Ok((d, st)) if st.stx_ino == ino && !is_mount_point(&st, self.root) => Rc::new(d),
                        Ok((_, st)) if is_mount_point(&st, self.root) => {
                            self.count_in(parent, |c| c.mount_points += 1);
                            continue;
                        }
                        // Replaced between the listing and now: the change's events bring it back.
                        Ok(_) => continue,
                        Err(e) => {
                            let path = self.child_path(parent, &n);
                            let sample = format!("{}: {e}", path.to_string_lossy());
                            self.count_in(parent, |c| c.errors += 1);
                            if let Some(p) = self.dirs.get_mut(&parent) {
                                if p.samples.len() < MAX_ERROR_SAMPLES {
                                    p.samples.push(sample);
                                }
                            }
                            continue;
                        }
                    }
                }
            };
            if self.dirs.contains_key(&ino) {
                // Moved here from where the state still has it: that node and its subtree go first.
                self.drop_tree(ino, watch, &mut RefreshStats::default());
            }
            let key = watch
                .watch(fd.as_fd(), ino)
                .map_err(|source| RefreshError::Watch { path: self.child_path(parent, &name), source })?;
            let is_root = ino == self.root_ino;
            let mut path = if is_root { Vec::new() } else { self.path_of(parent) };
            if !is_root {
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(&name);
            }
            let listing =
                list(fd.as_raw_fd(), is_root, self.xattrs, self.root, self.top_files, &path, &self.upperdir, buf);
            let subdirs = listing.subdirs.clone();
            self.dirs.insert(ino, Dir { parent, name, key, ..Dir::default() });
            if let Some(p) = self.dirs.get_mut(&parent) {
                if parent != ino {
                    p.children.push(ino);
                }
            }
            if self.replace_listing(ino, listing, Vec::new())? {
                return Err(RefreshError::NewHardLink { path: self.full_path(ino) });
            }
            for (sub_name, sub_ino) in subdirs.into_iter().rev() {
                stack.push((fd.clone(), Some(sub_name.clone()), sub_ino, ino, sub_name));
            }
        }
        Ok(())
    }

    fn count_in(&mut self, ino: u64, f: impl Fn(&mut Counts)) {
        if let Some(d) = self.dirs.get_mut(&ino) {
            self.totals.sub(&d.own);
            f(&mut d.own);
            self.totals.add(&d.own);
        }
    }

    fn child_path(&self, parent: u64, name: &[u8]) -> PathBuf {
        if parent == 0 && name.is_empty() {
            return self.upperdir.clone();
        }
        self.full_path(parent).join(OsStr::from_bytes(name))
    }
}

/// Lists one directory and counts its direct entries as the full walk does, with the directory's own
/// blocks (the walk counts them from its parent's listing, or as the root).
#[allow(clippy::too_many_arguments)]
fn list(
    dirfd: RawFd,
    is_root: bool,
    xattrs: OverlayXattrs,
    root: RootId,
    top_files: usize,
    path: &[u8],
    upperdir: &Path,
    buf: &mut DentsBuf,
) -> Listing {
    let mut l = Listing::default();
    let error = |l: &mut Listing, name: Option<&[u8]>, e: &io::Error| {
        l.own.errors += 1;
        if l.samples.len() < MAX_ERROR_SAMPLES {
            let mut p = upperdir.to_path_buf();
            if !path.is_empty() {
                p.push(OsStr::from_bytes(path));
            }
            if let Some(n) = name {
                p.push(OsStr::from_bytes(n));
            }
            l.samples.push(format!("{}: {e}", p.to_string_lossy()));
        }
    };
    match statx(dirfd, c"", libc::AT_EMPTY_PATH) {
        Ok(st) => l.own.allocated += blocks_bytes(&st),
        Err(e) => error(&mut l, None, &e),
    }
    let (opaque, xattr_whiteouts) = dir_markers(dirfd, xattrs);
    if opaque && !is_root {
        l.own.opaque += 1;
    }
    let mut seen_links = HashSet::new();
    loop {
        let n = match buf.fill(dirfd) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                error(&mut l, None, &e);
                break;
            }
        };
        buf.order.clear();
        let mut off = 0;
        while off < n {
            let (ino, reclen) = buf.ino_at(off);
            buf.order.push((ino, off as u32));
            off += reclen;
        }
        let (mut order, mut scratch) = (std::mem::take(&mut buf.order), std::mem::take(&mut buf.scratch));
        sort_by_inode(&mut order, &mut scratch);
        for &(_, at) in &order {
            let (name, _) = buf.entry(at as usize);
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            match statx(dirfd, name, libc::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => count(&mut l, dirfd, name, &st, root, xattrs, xattr_whiteouts, top_files, &mut seen_links),
                Err(e) => error(&mut l, Some(bytes), &e),
            }
        }
        buf.order = order;
        buf.scratch = scratch;
    }
    l
}

#[allow(clippy::too_many_arguments)]
fn count(
    l: &mut Listing,
    dirfd: RawFd,
    name: &CStr,
    st: &Statx,
    root: RootId,
    xattrs: OverlayXattrs,
    xattr_whiteouts: bool,
    top_files: usize,
    seen_links: &mut HashSet<u64>,
) {
    if is_mount_point(st, root) {
        l.own.mount_points += 1;
        return;
    }
    let kind = u32::from(st.stx_mode) & libc::S_IFMT;
    let size = st.stx_size;
    let blocks = blocks_bytes(st);
    let u = &mut l.own;
    match kind {
        libc::S_IFDIR => {
            u.dirs += 1;
            l.subdirs.push((name.to_bytes().into(), st.stx_ino));
            return;
        }
        libc::S_IFREG => {
            if size == 0 && xattr_whiteouts && xattr_present_at(dirfd, name, xattrs.whiteout()) {
                u.whiteouts += 1;
            } else {
                u.files += 1;
                if size > 0 && st.stx_blocks == 0 && xattr_present_at(dirfd, name, xattrs.metacopy()) {
                    u.metacopy += 1;
                }
            }
        }
        libc::S_IFLNK => u.symlinks += 1,
        libc::S_IFCHR if st.stx_rdev_major == 0 && st.stx_rdev_minor == 0 => u.whiteouts += 1,
        _ => u.other += 1,
    }
    let linked = st.stx_nlink > 1;
    if linked {
        l.links.push((st.stx_ino, size, blocks));
    } else {
        u.apparent = u.apparent.saturating_add(size);
        u.allocated = u.allocated.saturating_add(blocks);
    }
    // Two names of one inode in this directory are one candidate.
    if kind == libc::S_IFREG && size > 0 && top_files > 0 && (!linked || seen_links.insert(st.stx_ino)) {
        offer(&mut l.top, top_files, size, blocks, if linked { st.stx_ino } else { 0 }, name.to_bytes());
    }
}

/// Keeps the directory's `n` largest files, ties broken by name as the walk breaks them by path.
fn offer(top: &mut Vec<Candidate>, n: usize, apparent: u64, allocated: u64, linked_ino: u64, name: &[u8]) {
    // Less is better: larger first, then the smaller name.
    let rank = |a: &Candidate, b: &Candidate| b.apparent.cmp(&a.apparent).then_with(|| a.name.cmp(&b.name));
    let c = Candidate { apparent, allocated, linked_ino, name: name.into() };
    if top.len() >= n {
        let worst = (0..top.len()).max_by(|&i, &j| rank(&top[i], &top[j]));
        let Some(worst) = worst else { return };
        if rank(&c, &top[worst]) != std::cmp::Ordering::Less {
            return;
        }
        top.swap_remove(worst);
    }
    top.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::{measure_layers, WalkOptions};
    use std::os::unix::fs::symlink;

    /// Watches nothing; remembers every directory it was given, so a test can say "all changed".
    #[derive(Default)]
    struct Everything {
        inos: HashSet<u64>,
    }

    impl DirWatch for Everything {
        fn watch(&mut self, _dir: BorrowedFd<'_>, ino: u64) -> io::Result<Box<[u8]>> {
            self.inos.insert(ino);
            Ok(ino.to_ne_bytes().into())
        }
        fn forget(&mut self, key: &[u8]) {
            self.inos.remove(&u64::from_ne_bytes(key.try_into().unwrap_or([0; 8])));
        }
    }

    fn walk(dir: &Path) -> WritableUsage {
        let opts = WalkOptions { threads: 1, xattrs: OverlayXattrs::Trusted, top_files: 3 };
        measure_layers(&[Some(dir.to_path_buf())], opts, None).pop().expect("one").expect("walk")
    }

    /// `got` equals a fresh walk of `dir`, except that a file with several names may be listed among the
    /// largest under any of them.
    fn assert_like_walk(dir: &Path, got: &WritableUsage) {
        use std::os::unix::fs::MetadataExt;
        let mut want = walk(dir);
        let mut got = got.clone();
        for t in want.top_files.iter_mut().chain(got.top_files.iter_mut()) {
            let md = std::fs::symlink_metadata(dir.join(&t.path[1..])).expect("top file");
            if md.nlink() > 1 {
                t.path = format!("inode {}", md.ino());
            }
        }
        assert_eq!(got, want);
    }

    fn all_changed(w: &Everything, new: &[&str]) -> HashMap<u64, Changed> {
        let new_dirs: HashSet<Box<[u8]>> = new.iter().map(|n| n.as_bytes().into()).collect();
        w.inos.iter().map(|&i| (i, Changed { new_dirs: new_dirs.clone() })).collect()
    }

    #[test]
    fn state_follows_changes_and_equals_a_fresh_walk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        std::fs::create_dir_all(d.join("a/b/c")).expect("mkdir");
        std::fs::write(d.join("a/f1"), vec![1u8; 5000]).expect("write");
        std::fs::write(d.join("a/b/f2"), vec![1u8; 300]).expect("write");
        std::fs::write(d.join("top"), vec![1u8; 70000]).expect("write");
        std::fs::hard_link(d.join("a/f1"), d.join("a/b/c/f1link")).expect("link");
        symlink("target-of-9", d.join("a/sym")).expect("symlink");
        let mut w = Everything::default();
        let mut s = LayerState::build(d, OverlayXattrs::Trusted, 3, None, 2, &mut w).expect("build");
        assert_like_walk(d, &s.usage());
        assert_eq!(s.dirs(), 4);

        // Append, truncate, new tree, rename across directories, remove a tree.
        std::fs::write(d.join("a/b/f2"), vec![1u8; 90000]).expect("write");
        std::fs::write(d.join("top"), b"x").expect("truncate");
        std::fs::create_dir_all(d.join("n/m/o")).expect("mkdir");
        std::fs::write(d.join("n/m/o/deep"), vec![2u8; 1234]).expect("write");
        std::fs::rename(d.join("a/b/c"), d.join("n/c")).expect("rename");
        let changed = all_changed(&w, &["n", "c"]);
        s.refresh(changed, &mut w).expect("refresh");
        assert_like_walk(d, &s.usage());
        std::fs::remove_dir_all(d.join("n")).expect("rm -rf");
        s.refresh(all_changed(&w, &[]), &mut w).expect("refresh");
        assert_like_walk(d, &s.usage());
        assert_eq!(w.inos.len(), 3, "root, a, a/b");

        // A new hard link to a file counted with one name cannot be placed without a walk.
        std::fs::hard_link(d.join("a/b/f2"), d.join("f2link")).expect("link");
        let e = s.refresh(all_changed(&w, &[]), &mut w).expect_err("new hard link");
        assert!(matches!(e, RefreshError::NewHardLink { .. }), "{e}");
    }

    /// The first walk on several threads gives the same state as on one, wide and deep trees alike, hard
    /// links across directories counted once.
    #[test]
    fn a_state_built_on_several_threads_equals_a_fresh_walk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        for i in 0..40 {
            let sub = d.join(format!("w{i}/x/y"));
            std::fs::create_dir_all(&sub).expect("mkdir");
            std::fs::write(sub.join("f"), vec![1u8; 100 * i + 1]).expect("write");
            std::fs::write(d.join(format!("w{i}/g")), vec![2u8; 7 * i]).expect("write");
        }
        std::fs::hard_link(d.join("w3/x/y/f"), d.join("w39/link")).expect("link");
        symlink("w1", d.join("to-w1")).expect("symlink");
        for threads in [1, 4] {
            let mut w = Everything::default();
            let s = LayerState::build(d, OverlayXattrs::Trusted, 3, None, threads, &mut w).expect("build");
            assert_like_walk(d, &s.usage());
            assert_eq!((s.dirs(), w.inos.len()), (121, 121), "{threads} threads: every directory held and watched");
        }
    }
}

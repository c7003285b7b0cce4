//! What a layer holds over the layers below it: copy-ups (entries that also exist at the same path in a
//! lower layer, with their content compared exactly) and shadowed bytes (lower files that the layer's
//! whiteouts, opaque directories and replacements hide, still on disk because a lower layer holds them).
//!
//! The same analysis serves a container's writable layer over its init and image layers, and an image
//! layer over the layers below it (dive's "wasted space"). A copied-up file's content is compared with the
//! lower copy only when the sizes are equal, byte for byte, under a byte budget shared by a whole scan
//! ([`Budget`]); what the budget did not cover is counted as unverified, never guessed. With
//! `metacopy=on`, a metadata-only copy-up is a metacopy file with no data of its own: counted apart.
//!
//! Every open is `openat2` beneath the layer's root with `RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`, so a
//! symlink in a layer (the container's own, or an image's `lib -> usr/lib`) is never followed and no
//! mount point is crossed; overlayfs itself does not merge a directory through a symlink either. Not for:
//! Docker's `SizeRw` figure (that is [`crate::usage`], which this does not change).

use crate::usage::{OverlayXattrs, TopFile};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest entries kept per list ([`CopyUps::largest`], [`Shadowed::largest`], [`LayerAnalysis::largest`]).
pub const LARGEST: usize = 5;
/// Default content-comparison budget of one scan, in bytes read from the upper copies.
pub const DEFAULT_BUDGET: u64 = 256 * 1024 * 1024;

/// A layer's copy-ups: its entries that also exist at the same path in a lower layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyUps {
    /// Regular files over a lower regular file (each inode once).
    pub files: u64,
    /// Their apparent bytes in this layer.
    pub bytes: u64,
    /// Apparent bytes of the lower copies they hide.
    pub lower_bytes: u64,
    /// Of `files`: content byte-identical to the lower copy (a chmod, chown or touch): pure duplication.
    pub identical_files: u64,
    /// Their bytes.
    pub identical_bytes: u64,
    /// Of `files`: content differs (another size, or bytes that differ).
    pub changed_files: u64,
    /// Their bytes.
    pub changed_bytes: u64,
    /// Of `files`: same size as the lower copy but not compared, because the scan's budget was spent or
    /// a copy could not be read.
    pub unverified_files: u64,
    /// Their bytes.
    pub unverified_bytes: u64,
    /// Of `files`: metacopy files (`metacopy=on`): only metadata was copied up, the data is the lower
    /// copy's and costs nothing here. Their size is in `bytes` (Docker counts it) but in no other class.
    pub metacopy_files: u64,
    /// Directories that also exist in a lower layer (copied up because something below them changed,
    /// or their own metadata did).
    pub dirs: u64,
    /// Symbolic links over a lower symbolic link.
    pub symlinks: u64,
    /// Of `symlinks`: the same target.
    pub identical_symlinks: u64,
    /// Entries of another type than the lower entry they hide (a file over a directory, …).
    pub replaced: u64,
    /// Bytes read from this layer to compare contents (the same again from the lower copies).
    pub compared_bytes: u64,
    /// The largest copied-up files, largest first.
    #[serde(default)]
    pub largest: Vec<CopyUpFile>,
}

/// One copied-up file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyUpFile {
    /// Path as the container sees it, leading `/` (lossy when not UTF-8).
    pub path: String,
    /// Apparent bytes in this layer.
    pub bytes: u64,
    /// Apparent bytes of the lower copy.
    pub lower_bytes: u64,
    /// `identical`, `changed`, `unverified` or `metacopy`.
    pub content: String,
}

/// Lower-layer bytes this layer hides: deleted (whiteouts), under opaque directories, or replaced by an
/// entry of another type. They stay on disk as long as the lower layer does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shadowed {
    /// Hidden lower files and symlinks (each visible lower entry once).
    pub files: u64,
    /// Their apparent bytes.
    pub bytes: u64,
    /// The largest hidden lower files, largest first.
    #[serde(default)]
    pub largest: Vec<TopFile>,
}

/// One layer over the layers below it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerAnalysis {
    /// Regular files and symlinks of this layer (entries).
    pub files: u64,
    /// Their apparent bytes, each inode once.
    pub bytes: u64,
    /// Whiteouts (character devices 0/0).
    pub whiteouts: u64,
    /// Opaque directories.
    pub opaque_dirs: u64,
    /// The layer's largest files, largest first.
    pub largest: Vec<TopFile>,
    /// Copy-ups.
    pub copy_ups: CopyUps,
    /// Lower bytes hidden.
    pub shadowed: Shadowed,
    /// Entries that could not be read (vanished, unreadable); the figures leave them out.
    pub errors: u64,
}

impl LayerAnalysis {
    /// Lower bytes this layer makes unreachable and that stay on disk: the lower copies of its copy-ups
    /// and the files it hides.
    pub fn wasted_bytes(&self) -> u64 {
        self.copy_ups.lower_bytes.saturating_add(self.shadowed.bytes)
    }
}

/// The content-comparison budget of one scan: bytes that may still be read from upper copies. Shared by
/// every layer analysed in the scan, across threads.
#[derive(Debug)]
pub struct Budget {
    left: AtomicU64,
}

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Budget {
        Budget { left: AtomicU64::new(bytes) }
    }

    /// Takes `n` bytes if that many are left.
    fn take(&self, n: u64) -> bool {
        self.left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(n)).is_ok()
    }

    /// Gives back bytes taken but not read (a comparison that stopped at the first difference).
    fn give_back(&self, n: u64) {
        self.left.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes left.
    pub fn left(&self) -> u64 {
        self.left.load(Ordering::Relaxed)
    }
}

/// Why a layer could not be analysed at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot open layer {}: {source}", path.display())]
pub struct CopyUpError {
    /// The layer directory.
    pub path: PathBuf,
    /// What the kernel said.
    #[source]
    pub source: io::Error,
}

/// Analyses the layer at `upper` over `lowers` (top first; where this process reads them). A lower layer
/// that cannot be opened counts as empty and raises `errors`.
pub fn analyze_layer(
    upper: &Path,
    lowers: &[PathBuf],
    xattrs: OverlayXattrs,
    budget: &Budget,
) -> Result<LayerAnalysis, CopyUpError> {
    analyze(upper, lowers, xattrs, budget, false)
}

/// [`analyze_layer`] for its `copy_ups`, `shadowed` and `errors` only, as the report needs them: a directory
/// of the layer that no lower layer has (where a container writes its own data, typically all of it) holds
/// no copy-up and hides nothing, so it is not entered. The layer's own `files`, `bytes`, `whiteouts`,
/// `opaque_dirs` and `largest` then leave those directories out.
pub fn analyze_copy_ups(
    upper: &Path,
    lowers: &[PathBuf],
    xattrs: OverlayXattrs,
    budget: &Budget,
) -> Result<LayerAnalysis, CopyUpError> {
    analyze(upper, lowers, xattrs, budget, true)
}

fn analyze(
    upper: &Path,
    lowers: &[PathBuf],
    xattrs: OverlayXattrs,
    budget: &Budget,
    only_over_lowers: bool,
) -> Result<LayerAnalysis, CopyUpError> {
    let upper_root = open_root(upper).map_err(|source| CopyUpError { path: upper.to_owned(), source })?;
    let mut a = Analyzer {
        xattrs,
        budget,
        out: LayerAnalysis::default(),
        seen: HashSet::new(),
        lower_roots: Vec::new(),
        held: 0,
        only_over_lowers,
    };
    for l in lowers {
        match open_root(l) {
            Ok(fd) => a.lower_roots.push(Some(fd)),
            Err(_) => {
                a.out.errors += 1;
                a.lower_roots.push(None);
            }
        }
    }
    let all: Vec<usize> = (0..lowers.len()).filter(|&i| a.lower_roots[i].is_some()).collect();
    let mut pending = vec![Pending { rel: Vec::new(), visible: all, resume: None }];
    let mut buf = crate::walk::DentsBuf::new();
    while let Some(p) = pending.pop() {
        a.held -= p.rel.len();
        a.directory(&upper_root, p, &mut buf, &mut pending);
    }
    let out = &mut a.out;
    out.largest.sort_by(|x, y| y.apparent_bytes.cmp(&x.apparent_bytes).then_with(|| x.path.cmp(&y.path)));
    out.copy_ups.largest.sort_by(|x, y| y.bytes.cmp(&x.bytes).then_with(|| x.path.cmp(&y.path)));
    out.shadowed.largest.sort_by(|x, y| y.apparent_bytes.cmp(&x.apparent_bytes).then_with(|| x.path.cmp(&y.path)));
    Ok(a.out)
}

/// Analyses every container's writable layer in `report` over its lower layers (`writable.lowerdirs`,
/// host paths read under `root`), on `threads` threads (0: as many as the walk uses, [`crate::walk::worker_threads`]), filling `writable.copy_ups`,
/// `writable.shadowed` and the totals. A layer that cannot be analysed is a finding; the rest go on.
pub fn analyze_containers(report: &mut crate::report::Report, root: &Path, budget: &Budget, threads: usize) {
    let jobs: Vec<(usize, PathBuf, Vec<PathBuf>)> = report
        .containers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let w = c.writable.as_ref()?;
            let lowers = w.lowerdirs.iter().map(|l| crate::scan::under_root(root, Path::new(l))).collect();
            Some((i, crate::scan::under_root(root, Path::new(&w.upperdir)), lowers))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(jobs.len()));
    let workers = crate::walk::worker_threads(threads).min(jobs.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((i, upper, lowers)) = jobs.get(k) else { break };
                let r = analyze_copy_ups(upper, lowers, OverlayXattrs::Trusted, budget);
                results.lock().unwrap_or_else(|p| p.into_inner()).push((*i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    for (i, r) in results {
        let c = &mut report.containers[i];
        let Some(w) = c.writable.as_mut() else { continue };
        match r {
            Ok(a) => {
                if a.errors > 0 {
                    report.findings.push(crate::Finding::new(
                        crate::Severity::Warning,
                        "copy_up_analysis_partial",
                        format!(
                            "container {}: {} entries of its layers could not be read; its copy-up and shadowed \
                             figures leave them out",
                            c.name, a.errors
                        ),
                        Some(Path::new(&w.upperdir)),
                    ));
                    *report.totals.findings.entry("warning".to_owned()).or_insert(0) += 1;
                }
                let t = &mut report.totals;
                t.copy_up_bytes = t.copy_up_bytes.saturating_add(a.copy_ups.bytes);
                t.copy_up_identical_bytes = t.copy_up_identical_bytes.saturating_add(a.copy_ups.identical_bytes);
                t.copy_up_unverified_bytes = t.copy_up_unverified_bytes.saturating_add(a.copy_ups.unverified_bytes);
                t.copy_up_compared_bytes = t.copy_up_compared_bytes.saturating_add(a.copy_ups.compared_bytes);
                t.shadowed_bytes = t.shadowed_bytes.saturating_add(a.shadowed.bytes);
                w.copy_ups = Some(a.copy_ups);
                w.shadowed = Some(a.shadowed);
            }
            // A missing writable layer is already a finding of the scan.
            Err(e) if e.source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                report.findings.push(crate::Finding::new(
                    crate::Severity::Warning,
                    "copy_up_analysis_failed",
                    format!("container {}: {e}", c.name),
                    Some(&e.path),
                ));
                *report.totals.findings.entry("warning".to_owned()).or_insert(0) += 1;
            }
        }
    }
}

struct Analyzer<'b> {
    xattrs: OverlayXattrs,
    budget: &'b Budget,
    out: LayerAnalysis,
    /// (dev, ino) of upper files with more than one link, so each counts once.
    seen: HashSet<(u64, u64)>,
    lower_roots: Vec<Option<OwnedFd>>,
    /// Bytes of paths in the pending directories.
    held: usize,
    /// [`analyze_copy_ups`]: directories no lower layer shows through are not entered.
    only_over_lowers: bool,
}

/// A directory still to analyse: its path below the layer root, the lower layers whose directory at that
/// path shows through it (top first), and where its listing stopped when it was listed in parts.
struct Pending {
    rel: Vec<u8>,
    visible: Vec<usize>,
    resume: Option<libc::off_t>,
}

/// Bytes of pending directory paths the analysis holds before it pauses a directory's listing (resumed
/// from its position once what was queued is done): a directory of 100,000 subdirectories with long
/// names costs this much, not 25 MB.
const PENDING_PATHS: usize = 256 * 1024;

/// What a name is in one layer's directory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Whiteout,
    Other,
}

fn kind(st: &libc::stat) -> Kind {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFREG => Kind::File,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFCHR if st.st_rdev == 0 => Kind::Whiteout,
        _ => Kind::Other,
    }
}

impl Analyzer<'_> {
    fn lower_root(&self, i: usize) -> Option<RawFd> {
        self.lower_roots.get(i).and_then(|f| f.as_ref()).map(|f| f.as_raw_fd())
    }

    /// Analyses one directory of the upper layer (from where its listing stopped, when it is listed in
    /// parts): every entry in it, queueing its subdirectories. Once the queue holds [`PENDING_PATHS`] of
    /// paths, the rest of the directory is queued as one more item under the subdirectories found so far.
    fn directory(
        &mut self,
        upper_root: &OwnedFd,
        at: Pending,
        buf: &mut crate::walk::DentsBuf,
        pending: &mut Vec<Pending>,
    ) {
        let Pending { rel, visible, resume } = at;
        let rel = &rel[..];
        let dir = match open_beneath(upper_root.as_raw_fd(), rel) {
            Ok(d) => d,
            Err(_) => {
                self.out.errors += 1;
                return;
            }
        };
        // SAFETY: lseek on a descriptor this function owns; no memory is passed.
        if resume.is_some_and(|pos| unsafe { libc::lseek(dir.as_raw_fd(), pos, libc::SEEK_SET) } < 0) {
            self.out.errors += 1;
            return;
        }
        let lower_dirs: Vec<(usize, OwnedFd)> =
            visible.iter().filter_map(|&i| Some((i, open_beneath(self.lower_root(i)?, rel).ok()?))).collect();
        let first_child = pending.len();
        loop {
            if self.held >= PENDING_PATHS && pending.len() > first_child {
                // SAFETY: as above.
                let pos = unsafe { libc::lseek(dir.as_raw_fd(), 0, libc::SEEK_CUR) };
                if pos >= 0 {
                    self.held += rel.len();
                    pending.insert(first_child, Pending { rel: rel.to_vec(), visible, resume: Some(pos) });
                    return;
                }
            }
            let n = match buf.fill(dir.as_raw_fd()) {
                Ok(0) => return,
                Ok(n) => n,
                Err(_) => {
                    self.out.errors += 1;
                    return;
                }
            };
            let mut off = 0;
            while off < n {
                let (name, reclen) = buf.entry(off);
                off += reclen;
                let name = name.to_bytes();
                if name != b"." && name != b".." {
                    self.entry(&dir, rel, &lower_dirs, name, pending);
                }
            }
        }
    }

    /// One entry of an upper directory open at `dir` (path `rel`), `lower_dirs` the lower directories
    /// that show through it.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        rel: &[u8],
        lower_dirs: &[(usize, OwnedFd)],
        name: &[u8],
        pending: &mut Vec<Pending>,
    ) {
        let child = join(rel, name);
        let Ok(cname) = CString::new(name) else { return };
        let st = match fstatat(dir.as_raw_fd(), &cname) {
            Ok(st) => st,
            Err(_) => {
                self.out.errors += 1;
                return;
            }
        };
        let below = resolve(lower_dirs, &cname);
        match kind(&st) {
            Kind::Whiteout => {
                self.out.whiteouts += 1;
                self.shadow(below, lower_dirs, &cname, &child);
            }
            Kind::Dir => {
                let opaque = xattr_at(dir.as_raw_fd(), &cname, self.xattrs.opaque());
                let under = self.visible_below(lower_dirs, &cname);
                if opaque {
                    self.out.opaque_dirs += 1;
                    if !under.is_empty() {
                        self.shadow_tree(&under, &child);
                    }
                    self.queue(pending, child, Vec::new());
                    return;
                }
                match below {
                    Some((_, ls)) if kind(&ls) == Kind::Dir => self.out.copy_ups.dirs += 1,
                    Some((_, ls)) if kind(&ls) != Kind::Whiteout => {
                        self.out.copy_ups.replaced += 1;
                        self.shadow(below, lower_dirs, &cname, &child);
                    }
                    _ => {}
                }
                self.queue(pending, child, under);
            }
            Kind::File => {
                let first = st.st_nlink <= 1 || self.seen.insert((st.st_dev, st.st_ino));
                let size = st.st_size as u64;
                self.out.files += 1;
                if first {
                    self.out.bytes = crate::bytes::add(self.out.bytes, size);
                    keep_largest(&mut self.out.largest, TopFile::new(&child, size, st.st_blocks as u64 * 512), |t| {
                        t.apparent_bytes
                    });
                }
                match below {
                    Some((li, ls)) if kind(&ls) == Kind::File && first => {
                        self.copy_up_file(dir, &cname, &child, size, li, lower_dirs, &ls)
                    }
                    // A second link to a copied-up inode was counted with the first.
                    Some((_, ls)) if kind(&ls) == Kind::File => {}
                    Some((_, ls)) if kind(&ls) != Kind::Whiteout => {
                        self.out.copy_ups.replaced += 1;
                        self.shadow(below, lower_dirs, &cname, &child);
                    }
                    _ => {}
                }
            }
            Kind::Symlink => {
                self.out.files += 1;
                self.out.bytes = crate::bytes::add(self.out.bytes, st.st_size as u64);
                match below {
                    Some((li, ls)) if kind(&ls) == Kind::Symlink => {
                        self.out.copy_ups.symlinks += 1;
                        let lower = lower_dirs.iter().find(|(i, _)| *i == li).map(|(_, fd)| fd.as_raw_fd());
                        let same = lower.is_some_and(|l| {
                                matches!((readlink(dir.as_raw_fd(), &cname), readlink(l, &cname)), (Ok(a), Ok(b)) if a == b)
                            });
                        if same {
                            self.out.copy_ups.identical_symlinks += 1;
                        }
                    }
                    Some((_, ls)) if kind(&ls) != Kind::Whiteout => {
                        self.out.copy_ups.replaced += 1;
                        self.shadow(below, lower_dirs, &cname, &child);
                    }
                    _ => {}
                }
            }
            Kind::Other => {}
        }
    }

    fn queue(&mut self, pending: &mut Vec<Pending>, rel: Vec<u8>, visible: Vec<usize>) {
        if self.only_over_lowers && visible.is_empty() {
            return;
        }
        self.held += rel.len();
        pending.push(Pending { rel, visible, resume: None });
    }

    /// A regular file over a lower regular file: classify its content.
    #[allow(clippy::too_many_arguments)]
    fn copy_up_file(
        &mut self,
        dir: &OwnedFd,
        name: &CStr,
        child: &[u8],
        size: u64,
        lower: usize,
        lower_dirs: &[(usize, OwnedFd)],
        lower_st: &libc::stat,
    ) {
        let lower_size = lower_st.st_size as u64;
        let c = &mut self.out.copy_ups;
        c.files += 1;
        c.bytes = crate::bytes::add(c.bytes, size);
        c.lower_bytes = crate::bytes::add(c.lower_bytes, lower_size);
        let content = if xattr_at(dir.as_raw_fd(), name, self.xattrs.metacopy()) {
            c.metacopy_files += 1;
            "metacopy"
        } else if size != lower_size {
            c.changed_files += 1;
            c.changed_bytes = crate::bytes::add(c.changed_bytes, size);
            "changed"
        } else {
            let lower_fd = lower_dirs.iter().find(|(i, _)| *i == lower).map(|(_, fd)| fd.as_raw_fd());
            let verdict = match lower_fd {
                Some(l) if self.budget.take(size) => {
                    let (v, read) = same_content(dir.as_raw_fd(), l, name);
                    self.budget.give_back(size - read.min(size));
                    self.out.copy_ups.compared_bytes = crate::bytes::add(self.out.copy_ups.compared_bytes, read);
                    v
                }
                _ => None,
            };
            let c = &mut self.out.copy_ups;
            match verdict {
                Some(true) => {
                    c.identical_files += 1;
                    c.identical_bytes = crate::bytes::add(c.identical_bytes, size);
                    "identical"
                }
                Some(false) => {
                    c.changed_files += 1;
                    c.changed_bytes = crate::bytes::add(c.changed_bytes, size);
                    "changed"
                }
                None => {
                    c.unverified_files += 1;
                    c.unverified_bytes = crate::bytes::add(c.unverified_bytes, size);
                    "unverified"
                }
            }
        };
        let entry = CopyUpFile {
            path: TopFile::new(child, 0, 0).path,
            bytes: size,
            lower_bytes: lower_size,
            content: content.to_owned(),
        };
        keep_largest(&mut self.out.copy_ups.largest, entry, |f| f.bytes);
    }

    /// The lower layers whose directory `name` (in the current directory) shows through an upper directory
    /// of that name, top first: each one holding a directory there, down to the first that holds an
    /// opaque directory or anything else than a directory.
    fn visible_below(&self, lower_dirs: &[(usize, OwnedFd)], name: &CStr) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, fd) in lower_dirs {
            let Ok(st) = fstatat(fd.as_raw_fd(), name) else { continue };
            if kind(&st) != Kind::Dir {
                break;
            }
            out.push(*i);
            if xattr_at(fd.as_raw_fd(), name, self.xattrs.opaque()) {
                break;
            }
        }
        out
    }

    /// Counts as shadowed what `below` (the topmost lower entry at `name`) holds.
    fn shadow(
        &mut self,
        below: Option<(usize, libc::stat)>,
        lower_dirs: &[(usize, OwnedFd)],
        name: &CStr,
        child: &[u8],
    ) {
        let Some((_, st)) = below else { return };
        match kind(&st) {
            Kind::File | Kind::Symlink => self.shadow_file(child, &st),
            Kind::Dir => {
                let under = self.visible_below(lower_dirs, name);
                self.shadow_tree(&under, child);
            }
            _ => {}
        }
    }

    fn shadow_file(&mut self, path: &[u8], st: &libc::stat) {
        let size = st.st_size as u64;
        self.out.shadowed.files += 1;
        self.out.shadowed.bytes = crate::bytes::add(self.out.shadowed.bytes, size);
        if kind(st) == Kind::File {
            keep_largest(&mut self.out.shadowed.largest, TopFile::new(path, size, st.st_blocks as u64 * 512), |t| {
                t.apparent_bytes
            });
        }
    }

    /// Counts as shadowed every entry of the lower layers' merged view below directory `rel`, where
    /// `visible` are the lower layers whose directory there shows, top first.
    fn shadow_tree(&mut self, visible: &[usize], rel: &[u8]) {
        let mut pending: Vec<(Vec<u8>, Vec<usize>)> = vec![(rel.to_vec(), visible.to_vec())];
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        while let Some((rel, visible)) = pending.pop() {
            let dirs: Vec<(usize, OwnedFd)> =
                visible.iter().filter_map(|&i| Some((i, open_beneath(self.lower_root(i)?, &rel).ok()?))).collect();
            let mut names = BTreeSet::new();
            for (_, fd) in &dirs {
                match list(fd.as_raw_fd()) {
                    Ok(n) => names.extend(n),
                    Err(_) => self.out.errors += 1,
                }
            }
            for name in names {
                let Ok(cname) = CString::new(name.clone()) else { continue };
                let child = join(&rel, &name);
                match resolve(&dirs, &cname) {
                    Some((_, st)) if kind(&st) == Kind::Dir => {
                        let under = self.visible_below(&dirs, &cname);
                        pending.push((child, under));
                    }
                    Some((_, st))
                        if matches!(kind(&st), Kind::File | Kind::Symlink)
                            && (st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino))) =>
                    {
                        self.shadow_file(&child, &st);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The topmost entry named `name` among the lower directories `dirs` (top first): the layer index and
/// its stat. A whiteout is returned as such (it hides what is below).
fn resolve(dirs: &[(usize, OwnedFd)], name: &CStr) -> Option<(usize, libc::stat)> {
    dirs.iter().find_map(|(i, fd)| fstatat(fd.as_raw_fd(), name).ok().map(|st| (*i, st)))
}

fn keep_largest<T>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> u64) {
    if list.len() < LARGEST {
        list.push(item);
        return;
    }
    if let Some((min_i, min)) = list.iter().enumerate().min_by_key(|(_, t)| key(t)) {
        if key(&item) > key(min) {
            list[min_i] = item;
        }
    }
}

fn join(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(rel.len() + 1 + name.len());
    p.extend_from_slice(rel);
    if !rel.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Compares the regular files `name` in `upper` and `lower` byte for byte: `Some(same)`, or `None` when
/// either cannot be read as a regular file; and the bytes read from the upper copy.
fn same_content(upper: RawFd, lower: RawFd, name: &CStr) -> (Option<bool>, u64) {
    let (Ok(mut a), Ok(mut b)) = (open_file(upper, name), open_file(lower, name)) else { return (None, 0) };
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = match read_full(&mut a, &mut ba) {
            Ok(n) => n,
            Err(_) => return (None, read),
        };
        let m = match read_full(&mut b, &mut bb[..n.max(1)]) {
            Ok(m) => m,
            Err(_) => return (None, read),
        };
        read += n as u64;
        if n != m || ba[..n] != bb[..m] {
            return (Some(false), read);
        }
        if n == 0 {
            return (Some(true), read);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens `rel` beneath the open directory `dirfd`: no symlink in any component, no mount crossed
/// (`openat2`, or the equivalent component walk where the kernel has none: [`crate::hostfs`]).
fn openat2(dirfd: RawFd, rel: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let rel = Path::new(OsStr::from_bytes(rel));
    // SAFETY: every caller passes a descriptor it holds open for the whole call.
    let dir = unsafe { std::os::fd::BorrowedFd::borrow_raw(dirfd) };
    crate::hostfs::open_beneath_no_xdev(dir, rel, nix::fcntl::OFlag::from_bits_truncate(flags))
}

fn open_beneath(root: RawFd, rel: &[u8]) -> io::Result<OwnedFd> {
    openat2(root, rel, libc::O_RDONLY | libc::O_DIRECTORY)
}

fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a NUL-terminated path; the flags open a directory without following a final symlink.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the regular file `name` in `dir` for reading, refusing anything else (a FIFO would block).
fn open_file(dir: RawFd, name: &CStr) -> io::Result<std::fs::File> {
    let fd = openat2(dir, name.to_bytes(), libc::O_RDONLY | libc::O_NONBLOCK)?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    Ok(file)
}

fn fstatat(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` points to writable memory of the right size.
    let rc = unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled `st`.
    Ok(unsafe { st.assume_init() })
}

fn readlink(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: `name` is NUL-terminated and `buf` is writable for the length passed.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Whether `name` in `dir` carries `attr`, without following a symlink: `lgetxattr` through the
/// directory's `/proc/self/fd` link (the link names the open directory, whatever was renamed since).
fn xattr_at(dir: RawFd, name: &CStr, attr: &CStr) -> bool {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(name.to_bytes());
    let Ok(p) = CString::new(p) else { return false };
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks only whether the xattr exists.
    unsafe { libc::lgetxattr(p.as_ptr(), attr.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

/// The names in the open directory `dir`, without `.` and `..`.
fn list(dir: RawFd) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/self/fd/{dir}"))? {
        out.push(OsStr::as_bytes(&e?.file_name()).to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, data: &[u8]) {
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(p, data).expect("write");
    }

    fn whiteout(p: &Path) {
        let c = CString::new(p.as_os_str().as_bytes()).expect("path");
        // SAFETY: a NUL-terminated path; mknod of a character device 0/0 (needs CAP_MKNOD, as in the tests).
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(rc, 0, "mknod {}: {}", p.display(), io::Error::last_os_error());
    }

    #[test]
    fn a_directory_wider_than_the_pending_budget_is_analysed_in_parts_each_entry_once() {
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        // 3000 subdirectories with 200-byte names: over twice PENDING_PATHS of queued paths.
        let n = 3000;
        assert!(n * 205 > 2 * PENDING_PATHS);
        for i in 0..n {
            let name = format!("wide/{i:05}{}", "n".repeat(195));
            fs::create_dir_all(upper.join(&name)).expect("mkdir");
            if i % 10 == 0 {
                write(&lower.join(&name).join("f"), b"same");
                write(&upper.join(&name).join("f"), b"same");
            }
        }
        let a = analyze_layer(&upper, &[lower], OverlayXattrs::Trusted, &Budget::new(1 << 20)).expect("analyze");
        assert_eq!(a.errors, 0);
        assert_eq!(a.files as usize, n / 10);
        assert_eq!(a.copy_ups.identical_files as usize, n / 10);
        assert_eq!(a.copy_ups.dirs as usize, 1 + n / 10, "wide, and each subdirectory with a copy-up");
    }

    #[test]
    fn copy_ups_are_classified_by_content() {
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        write(&lower.join("etc/same"), b"hello world");
        write(&upper.join("etc/same"), b"hello world");
        write(&lower.join("etc/edited"), b"aaaa");
        write(&upper.join("etc/edited"), b"aaab");
        write(&lower.join("etc/grown"), b"a");
        write(&upper.join("etc/grown"), b"ab");
        write(&upper.join("etc/new"), b"brand new");
        symlink("target", lower.join("etc/link")).expect("symlink");
        symlink("target", upper.join("etc/link")).expect("symlink");
        let a = analyze_layer(&upper, &[lower], OverlayXattrs::Trusted, &Budget::new(1 << 20)).expect("analyze");
        let c = &a.copy_ups;
        assert_eq!((c.files, c.bytes, c.lower_bytes), (3, 11 + 4 + 2, 11 + 4 + 1));
        assert_eq!((c.identical_files, c.identical_bytes), (1, 11));
        assert_eq!((c.changed_files, c.changed_bytes), (2, 6));
        assert_eq!((c.unverified_files, c.dirs, c.symlinks, c.identical_symlinks), (0, 1, 1, 1));
        assert_eq!(c.compared_bytes, 11 + 4);
        assert_eq!(a.files, 5);
    }

    #[test]
    fn the_reports_analysis_skips_directories_no_lower_has_and_finds_the_same_copy_ups() {
        let t = tempfile::tempdir().expect("tempdir");
        let (l1, l2, upper) = (t.path().join("l1"), t.path().join("l2"), t.path().join("upper"));
        write(&l2.join("etc/conf"), b"0123456789");
        write(&l2.join("usr/lib/big"), &[7; 5000]);
        write(&l1.join("usr/lib/other"), &[1; 300]);
        write(&l2.join("var/cache/x"), &[2; 70]);
        write(&upper.join("etc/conf"), b"0123456789");
        write(&upper.join("usr/lib/big"), &[8; 5000]);
        whiteout(&upper.join("usr/lib/other"));
        fs::create_dir_all(upper.join("var")).expect("mkdir");
        whiteout(&upper.join("var/cache"));
        // The container's own data: directories no lower layer has.
        for d in ["data/a/b", "data/c"] {
            write(&upper.join(d).join("f"), &[3; 100]);
        }
        write(&upper.join("usr/lib/new/f"), &[4; 100]);
        let lowers = [l1, l2];
        let full = analyze_layer(&upper, &lowers, OverlayXattrs::Trusted, &Budget::new(1 << 20)).expect("full");
        let fast = analyze_copy_ups(&upper, &lowers, OverlayXattrs::Trusted, &Budget::new(1 << 20)).expect("fast");
        assert_eq!(fast.copy_ups, full.copy_ups);
        assert_eq!(fast.shadowed, full.shadowed);
        assert_eq!((fast.errors, full.errors), (0, 0));
        assert_eq!((full.copy_ups.files, full.copy_ups.identical_files, full.shadowed.bytes), (2, 1, 300 + 70));
        // Only the layer's own files under directories a lower layer has were listed: etc/conf, usr/lib/big.
        assert_eq!((full.files, fast.files), (5, 2));
    }

    #[test]
    fn an_exhausted_budget_leaves_copies_unverified() {
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        write(&lower.join("a"), &[1; 100]);
        write(&upper.join("a"), &[1; 100]);
        write(&lower.join("b"), &[2; 100]);
        write(&upper.join("b"), &[2; 100]);
        let budget = Budget::new(150);
        let a = analyze_layer(&upper, &[lower], OverlayXattrs::Trusted, &budget).expect("analyze");
        assert_eq!((a.copy_ups.identical_files, a.copy_ups.unverified_files), (1, 1));
        assert_eq!(a.copy_ups.unverified_bytes, 100);
        assert_eq!(budget.left(), 50);
    }

    #[test]
    fn whiteouts_hide_the_topmost_lower_entry_and_whole_trees() {
        let t = tempfile::tempdir().expect("tempdir");
        let (l1, l2, upper) = (t.path().join("l1"), t.path().join("l2"), t.path().join("upper"));
        // l1 is above l2: l1's bin/x hides l2's; l1 deletes l2's old file.
        write(&l2.join("bin/x"), &[0; 1000]);
        write(&l1.join("bin/x"), &[0; 10]);
        write(&l2.join("old"), &[0; 7]);
        whiteout(&l1.join("old"));
        write(&l2.join("tree/a/b"), &[0; 30]);
        write(&l1.join("tree/c"), &[0; 40]);
        fs::create_dir_all(&upper).expect("mkdir");
        fs::create_dir_all(upper.join("bin")).expect("mkdir");
        whiteout(&upper.join("bin/x"));
        whiteout(&upper.join("tree"));
        whiteout(&upper.join("old"));
        let a = analyze_layer(&upper, &[l1, l2], OverlayXattrs::Trusted, &Budget::new(0)).expect("analyze");
        assert_eq!(a.whiteouts, 3);
        // bin/x as l1 holds it (10), tree's merged view (30 + 40); `old` is already gone below.
        assert_eq!((a.shadowed.files, a.shadowed.bytes), (3, 10 + 30 + 40));
        assert_eq!(a.shadowed.largest.first().map(|f| f.path.as_str()), Some("/tree/c"));
    }

    fn set_xattr(p: &Path, name: &CStr, value: &[u8]) {
        let c = CString::new(p.as_os_str().as_bytes()).expect("path");
        // SAFETY: NUL-terminated path and name; `value` is readable for its length.
        let rc = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        assert_eq!(rc, 0, "setxattr {}: {}", p.display(), io::Error::last_os_error());
    }

    #[test]
    fn metacopy_files_and_opaque_dirs_are_read_from_their_xattrs() {
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        write(&lower.join("big"), &[7; 4000]);
        // A metacopy file: the full size, no data of its own (a sparse file here, as the kernel makes it).
        fs::create_dir_all(&upper).expect("mkdir");
        fs::File::create(upper.join("big")).and_then(|f| f.set_len(4000)).expect("sparse");
        set_xattr(&upper.join("big"), c"trusted.overlay.metacopy", b"");
        write(&lower.join("dir/old"), &[1; 300]);
        write(&upper.join("dir/new"), &[2; 5]);
        set_xattr(&upper.join("dir"), c"trusted.overlay.opaque", b"y");
        let budget = Budget::new(1 << 20);
        let a = analyze_layer(&upper, &[lower], OverlayXattrs::Trusted, &budget).expect("analyze");
        let c = &a.copy_ups;
        assert_eq!((c.files, c.metacopy_files, c.identical_files, c.changed_files), (1, 1, 0, 0));
        assert_eq!(c.compared_bytes, 0, "a metacopy file is not read");
        assert_eq!(c.largest[0].content, "metacopy");
        assert_eq!((a.opaque_dirs, a.shadowed.files, a.shadowed.bytes), (1, 1, 300));
        assert_eq!(c.dirs, 0, "an opaque directory replaces the lower one, it is no copy of it");
    }

    #[test]
    fn a_symlink_in_a_lower_layer_is_never_followed() {
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper, outside) = (t.path().join("lower"), t.path().join("upper"), t.path().join("outside"));
        write(&outside.join("secret"), &[0; 500]);
        fs::create_dir_all(&lower).expect("mkdir");
        symlink(&outside, lower.join("etc")).expect("symlink");
        fs::create_dir_all(upper.join("etc")).expect("mkdir");
        write(&upper.join("etc/secret"), &[0; 500]);
        let a = analyze_layer(&upper, &[lower], OverlayXattrs::Trusted, &Budget::new(1 << 20)).expect("analyze");
        assert_eq!(a.copy_ups.files, 0, "the lower etc is a symlink, not a directory overlay merges");
        assert_eq!(a.copy_ups.replaced, 1, "a directory over a symlink");
        assert_eq!(a.shadowed.files, 1, "the lower symlink itself is hidden");
    }
}

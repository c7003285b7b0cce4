//! How this process reaches host paths, and the one way it reads a store's metadata.
//!
//! [`under_root`] turns a host path into the path this process reads (`/host/var/lib/docker` for an agent
//! in a container). [`StoreDir`] is a store's root directory held open: every metadata file, directory
//! listing and layer directory under it is opened relative to that descriptor, never following a symlink in
//! any component (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or an equivalent component walk on
//! kernels without it), with `O_NONBLOCK`, regular files only, and a size cap per [`FileKind`]. A FIFO, a
//! device, a link out of the store or an oversized file is refused with a [`HostReadError`] that names the
//! path and the reason, which the caller turns into a finding.
//!
//! A store owned by an unprivileged user (a rootless containers-storage root) is read with that user's
//! reach in mind: a file in it that its owner could not read (another user's, not world-readable: a hard
//! link to someone else's secret) is refused too, and text taken from such a store is only ever shown
//! through [`excerpt`]. This module depends on nothing else in the crate.

use nix::errno::Errno;
use nix::fcntl::{OFlag, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// `root` joined with an absolute host path.
pub fn under_root(root: &Path, host_path: &Path) -> PathBuf {
    match host_path.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(host_path),
    }
}

/// What a metadata file is, for its size cap: a file larger than its kind's cap is refused, not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A one-line field (`cache-id`, `mount-id`, `lower`, `link`): 64 KiB.
    Field,
    /// One record or blob (`config.v2.json`, an image config, a manifest, `repositories.json`): 16 MiB.
    Record,
    /// A store's index of all its layers, images or containers (`layers.json`, `containers.json`): 256 MiB.
    Index,
    /// A bbolt database, read page by page rather than whole: 4 GiB.
    Database,
}

impl FileKind {
    /// The largest file of this kind that is read.
    pub fn cap(self) -> u64 {
        match self {
            FileKind::Field => 64 << 10,
            FileKind::Record => 16 << 20,
            FileKind::Index => 256 << 20,
            FileKind::Database => 4 << 30,
        }
    }
}

/// Why a file under a store was not read.
#[derive(Debug, thiserror::Error)]
pub enum HostReadError {
    /// It does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// It exists, but reading it could hang, exhaust memory or reach outside the store.
    #[error("{}: refused: {why}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why, in a few words.
        why: String,
    },
    /// Reading failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl HostReadError {
    /// Whether the file is simply absent.
    pub fn is_not_found(&self) -> bool {
        match self {
            HostReadError::NotFound { .. } => true,
            HostReadError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            HostReadError::Refused { .. } => false,
        }
    }

    /// The finding code for this error: `metadata_refused` when the file was refused, else `fallback`.
    pub fn code<'a>(&self, fallback: &'a str) -> &'a str {
        match self {
            HostReadError::Refused { .. } => "metadata_refused",
            _ => fallback,
        }
    }

    fn from_open(path: &Path, e: Errno) -> HostReadError {
        let path = path.to_owned();
        match e {
            Errno::ENOENT => HostReadError::NotFound { path },
            // ELOOP: a symlink (RESOLVE_NO_SYMLINKS, O_NOFOLLOW); EXDEV: `..` or an absolute link out of the
            // store (RESOLVE_BENEATH), or a mount point in a user's store (RESOLVE_NO_XDEV); ENOTDIR in the
            // component walk: a link where a directory was expected.
            Errno::ELOOP | Errno::ENOTDIR => {
                HostReadError::Refused { path, why: "a symbolic link or a path leading out of the store".into() }
            }
            Errno::EXDEV => HostReadError::Refused {
                path,
                why: "a path leading out of the store (a link, `..`, or a mount point in a user's store)".into(),
            },
            e => HostReadError::Io { path, source: io::Error::from(e) },
        }
    }
}

/// A store's root directory, held open; everything under it is reached through it.
#[derive(Debug)]
pub struct StoreDir {
    path: PathBuf,
    fd: OwnedFd,
    owner: u32,
    /// The root directory's device and mount, which the component walk keeps to in a user's store.
    mount: Option<MountId>,
}

/// Which mount a file is reached through: its device, and the mount's id where the kernel tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MountId {
    dev: u64,
    mnt_id: Option<u64>,
    kind: u32,
}

impl StoreDir {
    /// Opens the directory at `path` (where this process reads it). Symlinks in `path` itself are
    /// followed: the administrator named it. Fails with the open's error.
    pub fn open(path: &Path) -> io::Result<StoreDir> {
        let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(io::Error::from)?;
        Self::from_fd(path, fd)
    }

    /// Opens `base.join(rel)` without following a symlink anywhere in `rel`: for a store found under a
    /// directory users own (`/home/<user>/…`), which could otherwise point the audit anywhere.
    pub fn open_beneath(base: &Path, rel: &Path) -> Result<StoreDir, HostReadError> {
        let path = base.join(rel);
        let b = StoreDir::open(base).map_err(|source| HostReadError::Io { path: base.to_owned(), source })?;
        let fd = b.open_at(rel, &path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        Self::from_fd(&path, fd).map_err(|source| HostReadError::Io { path, source })
    }

    fn from_fd(path: &Path, fd: OwnedFd) -> io::Result<StoreDir> {
        let st = fstat(&fd).map_err(io::Error::from)?;
        let mount = mount_of(&fd).ok();
        Ok(StoreDir { path: path.to_owned(), fd, owner: st.st_uid, mount })
    }

    /// Where this process reads the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The uid that owns the store's root directory.
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// The size cap for a file of `kind` in this store. A user's store gets smaller caps for the files that
    /// are parsed whole, since parsing costs several times a file's size in memory: an index of 4 MiB (some
    /// 9,000 layer records as Podman writes them) and a database of 32 MiB.
    pub fn cap(&self, kind: FileKind) -> u64 {
        match kind {
            FileKind::Index if self.untrusted() => 4 << 20,
            FileKind::Database if self.untrusted() => 32 << 20,
            kind => kind.cap(),
        }
    }

    /// Whether an unprivileged user owns the store: what it names is that user's word, not the engine's.
    pub fn untrusted(&self) -> bool {
        self.owner != 0
    }

    /// `path` (absolute under [`StoreDir::path`], or relative to it) as a path relative to the store.
    fn relative<'p>(&self, path: &'p Path) -> Result<&'p Path, HostReadError> {
        let rel = if path.is_absolute() {
            path.strip_prefix(&self.path).map_err(|_| HostReadError::Refused {
                path: path.to_owned(),
                why: format!("outside the store {}", self.path.display()),
            })?
        } else {
            path
        };
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(HostReadError::Refused {
                path: path.to_owned(),
                why: "a path leading out of the store".into(),
            });
        }
        Ok(rel)
    }

    /// Opens `rel` beneath the store, symlinks refused in every component.
    fn open_at(&self, rel: &Path, shown: &Path, flags: OFlag) -> Result<OwnedFd, HostReadError> {
        // openat2 takes no flag beside O_PATH's own with O_PATH (EINVAL); an O_PATH open reads nothing anyway.
        let flags = if flags.contains(OFlag::O_PATH) {
            flags | OFlag::O_CLOEXEC
        } else {
            flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK
        };
        let rel: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let mut resolve =
                ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS;
            if self.untrusted() {
                // A user can mount a FUSE file system in their own store, whose reads never return.
                resolve |= ResolveFlag::RESOLVE_NO_XDEV;
            }
            let how = nix::fcntl::OpenHow::new().flags(flags).resolve(resolve);
            match nix::fcntl::openat2(self.fd.as_fd(), rel, how) {
                Ok(fd) => return Ok(fd),
                // No openat2 (kernel before 5.6, or a seccomp filter that does not know it): walk instead.
                Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                Err(Errno::EAGAIN) => {} // a rename raced the lookup: the walk below retries once, safely
                // Older container runtimes' default seccomp profiles fail system calls they do not know with
                // EPERM. The walk tells: when it opens what openat2 was refused, the filter was the cause.
                Err(Errno::EPERM) => {
                    let walked = self.walk_open(rel, shown, flags);
                    if walked.is_ok() {
                        NO_OPENAT2.store(true, Ordering::Relaxed);
                    }
                    return walked;
                }
                Err(e) => return Err(HostReadError::from_open(shown, e)),
            }
        }
        self.walk_open(rel, shown, flags)
    }

    /// The component walk `openat2` does in one call ([`walk_beneath`]), keeping to the store root's mount
    /// in a user's store.
    fn walk_open(&self, rel: &Path, shown: &Path, flags: OFlag) -> Result<OwnedFd, HostReadError> {
        let keep_mount = self.untrusted().then_some(self.mount).flatten();
        walk_beneath(self.fd.as_fd(), keep_mount, rel, flags).map_err(|e| HostReadError::from_open(shown, e))
    }

    /// Opens the regular file at `path` under the store, checked as [`StoreDir::read`] checks it; for
    /// files read in parts (databases). Returns the file and its size.
    pub fn open_file(&self, path: &Path, kind: FileKind) -> Result<(File, u64), HostReadError> {
        let rel = self.relative(path)?;
        let fd = self.open_at(rel, path, OFlag::O_RDONLY)?;
        let st = fstat(&fd).map_err(|e| HostReadError::Io { path: path.to_owned(), source: e.into() })?;
        let refuse = |why: String| HostReadError::Refused { path: path.to_owned(), why };
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if fmt != SFlag::S_IFREG {
            return Err(refuse(format!("not a regular file ({})", type_word(fmt))));
        }
        if self.untrusted() && st.st_uid != self.owner && st.st_mode & 0o004 == 0 {
            return Err(refuse(format!(
                "owned by uid {}, which the store's owner (uid {}) cannot read",
                st.st_uid, self.owner
            )));
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let cap = self.cap(kind);
        if size > cap {
            return Err(refuse(format!("{size} bytes, more than the {cap} bytes such a file may hold here")));
        }
        Ok((File::from(fd), size))
    }

    /// Reads the regular file at `path` under the store whole, refusing what [`StoreDir`] refuses.
    pub fn read(&self, path: &Path, kind: FileKind) -> Result<Vec<u8>, HostReadError> {
        let (file, size) = self.open_file(path, kind)?;
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
        // The file may grow after the size check: never read past the cap.
        let cap = self.cap(kind);
        file.take(cap + 1)
            .read_to_end(&mut buf)
            .map_err(|source| HostReadError::Io { path: path.to_owned(), source })?;
        if buf.len() as u64 > cap {
            return Err(HostReadError::Refused {
                path: path.to_owned(),
                why: format!("grew past the {cap} bytes such a file may hold here while it was read"),
            });
        }
        Ok(buf)
    }

    /// Reads a one-line field file and trims it; `Ok(None)` when the file does not exist.
    pub fn read_field(&self, path: &Path) -> Result<Option<String>, HostReadError> {
        match self.read(path, FileKind::Field) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Ok(Some(s.trim().to_owned())),
                Err(_) => Err(HostReadError::Refused { path: path.to_owned(), why: "not UTF-8 text".into() }),
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the directory at `path` under the store (for walking it).
    pub fn open_dir(&self, path: &Path) -> Result<OwnedFd, HostReadError> {
        let rel = self.relative(path)?;
        self.open_at(rel, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }

    /// The entries of the directory at `path` under the store, with their types, in no order.
    pub fn list(&self, path: &Path) -> Result<Vec<DirEntry>, HostReadError> {
        let fd = self.open_dir(path)?;
        let io_err = |e: Errno| HostReadError::Io { path: path.to_owned(), source: e.into() };
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(io_err)?;
        let mut out = Vec::new();
        for ent in dir.iter() {
            let ent = ent.map_err(io_err)?;
            let name = ent.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match ent.file_type() {
                Some(nix::dir::Type::Directory) => EntryKind::Dir,
                Some(nix::dir::Type::File) => EntryKind::File,
                Some(nix::dir::Type::Symlink) => EntryKind::Symlink,
                Some(_) => EntryKind::Other,
                None => EntryKind::Unknown,
            };
            out.push(DirEntry { name: std::ffi::OsStr::from_bytes(name).to_owned(), kind });
        }
        Ok(out)
    }

    /// The status of `path` under the store, itself not followed if it is a symlink (`O_PATH`: opening it
    /// reads nothing and cannot block); a symlink in a component before it is refused, and so is, in a
    /// user's store, a mount point on the way (its root included: what is mounted there is not the store's).
    pub fn metadata(&self, path: &Path) -> Result<nix::sys::stat::FileStat, HostReadError> {
        let rel = self.relative(path)?;
        let fd = self.open_at(rel, path, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        fstat(&fd).map_err(|e| HostReadError::Io { path: path.to_owned(), source: e.into() })
    }

    /// Whether `path` under the store is a directory reached without a symlink.
    pub fn is_dir(&self, path: &Path) -> bool {
        self.open_dir(path).is_ok()
    }
}

/// An entry of a listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name.
    pub name: OsString,
    /// Its type, as the directory records it.
    pub kind: EntryKind,
}

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device.
    Other,
    /// The file system did not say.
    Unknown,
}

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The component walk `openat2` does in one call, where the kernel has no `openat2` (before 5.6, or a
/// seccomp filter that fails it): `rel` opened beneath `root`, each directory with `O_NOFOLLOW` and
/// `O_PATH` (which opens nothing on the file system's side), `..` and absolute components refused. With
/// `keep_mount` (the root's [`MountId`]) every component is also checked to be on that mount before
/// anything is opened through it, as `RESOLVE_NO_XDEV` does: the last one is first opened `O_PATH`,
/// checked, then opened for real through that very descriptor (`/proc/self/fd`), so a mount made in
/// between is not reached either. Errors are those `openat2` gives: ELOOP for a symlink, EXDEV for a way out.
fn walk_beneath(root: BorrowedFd<'_>, keep_mount: Option<MountId>, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let parts: Vec<_> = rel.components().collect();
    let mut parent: Option<OwnedFd> = None;
    let mut cur: Option<OwnedFd> = None;
    for (i, part) in parts.iter().enumerate() {
        let name = match part {
            Component::Normal(n) => *n,
            Component::CurDir => std::ffi::OsStr::new("."),
            _ => return Err(Errno::EXDEV),
        };
        let last = i + 1 == parts.len();
        let f = if !last {
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
        } else if keep_mount.is_some() {
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | (flags & OFlag::O_DIRECTORY)
        } else {
            flags | OFlag::O_NOFOLLOW
        };
        let dir = cur.as_ref().map_or(root, |d| d.as_fd());
        let fd = nix::fcntl::openat(dir, name, f, Mode::empty())?;
        if let Some(want) = keep_mount {
            let m = mount_of(&fd)?;
            if m.dev != want.dev || (m.mnt_id.is_some() && want.mnt_id.is_some() && m.mnt_id != want.mnt_id) {
                return Err(Errno::EXDEV);
            }
            // A symlink at the end is opened only as itself (O_PATH | O_NOFOLLOW, for its status).
            let as_itself = last && flags.contains(OFlag::O_PATH | OFlag::O_NOFOLLOW);
            if m.kind == libc::S_IFLNK && !as_itself {
                return Err(Errno::ELOOP);
            }
        }
        parent = cur.take();
        cur = Some(fd);
    }
    let fd = cur.ok_or(Errno::EINVAL)?;
    if keep_mount.is_none() || flags.contains(OFlag::O_PATH) {
        return Ok(fd);
    }
    // The checked O_PATH descriptor opened for reading: its /proc/self/fd link leads to that file and
    // no other. Without /proc, the name is opened again and must be the same file.
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    match nix::fcntl::open(link.as_str(), flags - OFlag::O_NOFOLLOW, Mode::empty()) {
        Ok(opened) => Ok(opened),
        Err(Errno::ENOENT) => {
            let dir = parent.as_ref().map_or(root, |d| d.as_fd());
            let name = parts.last().map_or(std::ffi::OsStr::new("."), |p| p.as_os_str());
            let opened = nix::fcntl::openat(dir, name, flags | OFlag::O_NOFOLLOW, Mode::empty())?;
            let (a, b) = (fstat(&fd)?, fstat(&opened)?);
            if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
                return Err(Errno::EXDEV);
            }
            Ok(opened)
        }
        Err(e) => Err(e),
    }
}

/// Opens `rel` beneath the directory `root` with `openat2` (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`), or, where the kernel has none, the equivalent component walk
/// ([`walk_beneath`]): for code that holds a layer's root open and must stay in it.
pub fn open_beneath_no_xdev(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let rel: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve = ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV;
        match nix::fcntl::openat2(root, rel, nix::fcntl::OpenHow::new().flags(flags).resolve(resolve)) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            Err(Errno::EAGAIN | Errno::EPERM) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let m = mount_of(&root).map_err(io::Error::from)?;
    walk_beneath(root, Some(m), rel, flags).map_err(io::Error::from)
}

/// The device, mount id and type of the file open at `fd`, from what the kernel has cached
/// (`AT_STATX_DONT_SYNC`: a FUSE server is not asked, so a mount whose server never answers cannot hang
/// the check that refuses it).
fn mount_of(fd: &impl std::os::fd::AsRawFd) -> Result<MountId, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::uninit();
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT | libc::AT_STATX_DONT_SYNC;
    // SAFETY: statx writes at most one `struct statx` into `st`, which is that size; the path is a NUL-
    // terminated empty string and `fd` an open descriptor.
    let rc = unsafe {
        libc::statx(fd.as_raw_fd(), c"".as_ptr(), flags, libc::STATX_TYPE | libc::STATX_MNT_ID, st.as_mut_ptr())
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: statx returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    Ok(MountId {
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        mnt_id: (st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id),
        kind: u32::from(st.stx_mode) & libc::S_IFMT,
    })
}

fn type_word(fmt: SFlag) -> &'static str {
    match fmt {
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "an unknown file type",
    }
}

impl StoreDir {
    /// Opens the directory at `path` under the store as [`StoreDir::open_dir`] does, with a plain I/O
    /// error: how the walker opens a writable layer that a store's metadata names, through the same
    /// descriptor the metadata was read through (so swapping the store's path for a link in between
    /// changes nothing).
    pub fn open_layer_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        self.open_dir(path).map_err(|e| match e {
            HostReadError::NotFound { .. } => io::Error::from(io::ErrorKind::NotFound),
            HostReadError::Io { source, .. } => source,
            e @ HostReadError::Refused { .. } => io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()),
        })
    }
}

/// At most `max` characters of `text` read from a store, control and non-ASCII characters escaped: how text
/// from a store that an unprivileged user owns may appear in a finding.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// Whether `s` can be one directory name under a store: not empty, no `/` or NUL, not `.`/`..` or another
/// dot file, at most 255 bytes. Ids read from metadata (cache ids, mount ids, init ids) are checked with
/// this before they become paths.
pub fn is_dir_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && !s.starts_with('.') && !s.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn under_root_prefixes_host_paths() {
        assert_eq!(under_root(Path::new("/host"), Path::new("/var/lib/docker")), Path::new("/host/var/lib/docker"));
        assert_eq!(under_root(Path::new("/"), Path::new("/proc")), Path::new("/proc"));
    }

    fn refused(r: Result<Vec<u8>, HostReadError>) -> String {
        match r {
            Err(HostReadError::Refused { why, .. }) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn reads_regular_files_and_refuses_fifos_devices_links_and_escapes() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (store, outside) = (tmp.path().join("store"), tmp.path().join("outside"));
        std::fs::create_dir_all(store.join("a")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(store.join("a/ok"), "value\n").expect("write");
        std::fs::write(outside.join("secret"), "secret").expect("write");
        nix::unistd::mkfifo(&store.join("fifo"), Mode::from_bits_truncate(0o644)).expect("mkfifo");
        symlink("/dev/zero", store.join("zero")).expect("symlink");
        symlink(outside.join("secret"), store.join("abs")).expect("symlink");
        symlink("../outside", store.join("dirlink")).expect("symlink");
        symlink("a", store.join("inner")).expect("symlink");
        let d = StoreDir::open(&store).expect("open store");
        assert_eq!(d.read_field(&store.join("a/ok")).expect("reads"), Some("value".to_owned()));
        assert_eq!(d.read_field(Path::new("a/missing")).expect("absent is fine"), None);
        assert!(refused(d.read(&store.join("fifo"), FileKind::Field)).contains("a FIFO"));
        assert!(refused(d.read(&store.join("zero"), FileKind::Field)).contains("symbolic link"));
        assert!(refused(d.read(&store.join("abs"), FileKind::Field)).contains("symbolic link"));
        assert!(refused(d.read(&store.join("dirlink/secret"), FileKind::Field)).contains("symbolic link"));
        // Even a link that stays inside the store is refused: the store's own layout never has one here.
        assert!(refused(d.read(&store.join("inner/ok"), FileKind::Field)).contains("symbolic link"));
        assert!(refused(d.read(&store.join("../outside/secret"), FileKind::Field)).contains("out of the store"));
        assert!(refused(d.read(&outside.join("secret"), FileKind::Field)).contains("outside the store"));
        assert!(refused(d.read(&store.join("a"), FileKind::Field)).contains("a directory"));
        // The component walk used where openat2 is missing refuses the same things.
        for (p, _) in [("zero", ""), ("dirlink/secret", ""), ("inner/ok", "")] {
            let e = d.walk_open(Path::new(p), Path::new(p), OFlag::O_RDONLY | OFlag::O_NONBLOCK);
            assert!(matches!(e, Err(HostReadError::Refused { .. })), "{p}: {e:?}");
        }
        assert!(d.walk_open(Path::new("a/ok"), Path::new("a/ok"), OFlag::O_RDONLY).is_ok());
    }

    #[test]
    fn the_component_walk_in_a_users_store_checks_every_component() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = tmp.path().join("store");
        std::fs::create_dir_all(store.join("a/b")).expect("mkdir");
        std::fs::write(store.join("a/b/ok"), "value\n").expect("write");
        std::fs::write(tmp.path().join("secret"), "secret").expect("write");
        symlink("../../secret", store.join("a/link")).expect("symlink");
        symlink("b", store.join("a/dirlink")).expect("symlink");
        nix::unistd::mkfifo(&store.join("a/fifo"), Mode::from_bits_truncate(0o644)).expect("mkfifo");
        std::os::unix::fs::chown(&store, Some(65534), None).expect("chown");
        let d = StoreDir::open(&store).expect("open");
        assert!(d.untrusted() && d.mount.is_some());
        let walk = |p: &str, flags: OFlag| d.walk_open(Path::new(p), Path::new(p), flags | OFlag::O_NONBLOCK);
        // A regular file is read through the checked O_PATH descriptor, reopened for reading.
        let mut text = String::new();
        File::from(walk("a/b/ok", OFlag::O_RDONLY).expect("reads")).read_to_string(&mut text).expect("read");
        assert_eq!(text, "value\n");
        for p in ["a/link", "a/dirlink/ok"] {
            assert!(matches!(walk(p, OFlag::O_RDONLY), Err(HostReadError::Refused { .. })), "{p}");
        }
        // A FIFO is opened (non-blocking) for the type check that refuses it, never read.
        let fifo = walk("a/fifo", OFlag::O_RDONLY).expect("opens without blocking");
        assert_eq!(fstat(&fifo).expect("fstat").st_mode & SFlag::S_IFMT.bits(), SFlag::S_IFIFO.bits());
        // A symlink's own status is still there to be had (O_PATH | O_NOFOLLOW), as the listing needs it.
        let l = walk("a/link", OFlag::O_PATH | OFlag::O_NOFOLLOW).expect("the link itself");
        assert_eq!(fstat(&l).expect("fstat").st_mode & SFlag::S_IFMT.bits(), SFlag::S_IFLNK.bits());
        // The directory itself as the walker opens it.
        assert!(walk("a/b", OFlag::O_RDONLY | OFlag::O_DIRECTORY).is_ok());
        assert!(walk("a/b/ok", OFlag::O_RDONLY | OFlag::O_DIRECTORY).is_err());
    }

    #[test]
    fn a_file_over_its_kinds_cap_is_refused_unread() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let f = File::create(tmp.path().join("lower")).expect("create");
        f.set_len(FileKind::Field.cap() + 1).expect("sparse");
        let d = StoreDir::open(tmp.path()).expect("open");
        assert!(refused(d.read(Path::new("lower"), FileKind::Field)).contains("more than the 65536 bytes"));
        // In a user's store, an index is capped lower than in root's.
        let big = tmp.path().join("layers.json");
        File::create(&big).expect("create").set_len((4 << 20) + 1).expect("sparse");
        std::os::unix::fs::chown(tmp.path(), Some(65534), None).expect("chown");
        let user = StoreDir::open(tmp.path()).expect("open");
        assert!(refused(user.read(Path::new("layers.json"), FileKind::Index)).contains("more than the 4194304"));
        assert_eq!(d.read(Path::new("lower"), FileKind::Record).map(|b| b.len()).ok(), Some(65537));
    }

    #[test]
    fn listing_refuses_a_linked_directory_and_reports_entry_types() {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(tmp.path().join("s/overlay/x")).expect("mkdir");
        std::fs::create_dir_all(tmp.path().join("other")).expect("mkdir");
        symlink("../x/diff", tmp.path().join("s/overlay/l")).expect("symlink");
        symlink(tmp.path().join("other"), tmp.path().join("s/linked")).expect("symlink");
        let d = StoreDir::open(&tmp.path().join("s")).expect("open");
        let mut l = d.list(Path::new("overlay")).expect("lists");
        l.sort_by(|a, b| a.name.cmp(&b.name));
        let kinds: Vec<_> = l.iter().map(|e| (e.name.to_string_lossy().into_owned(), e.kind)).collect();
        assert_eq!(kinds, vec![("l".to_owned(), EntryKind::Symlink), ("x".to_owned(), EntryKind::Dir)]);
        assert!(matches!(d.list(Path::new("linked")), Err(HostReadError::Refused { .. })));
    }

    #[test]
    fn excerpts_are_bounded_and_escaped() {
        assert_eq!(excerpt("l/ABC:l/DEF", 64), "l/ABC:l/DEF");
        assert_eq!(excerpt("-----BEGIN\nKEY", 5), "-----…");
        assert_eq!(excerpt("a\nb\u{1b}", 10), "a\\nb\\u{1b}");
    }

    #[test]
    fn directory_names_from_metadata_are_checked() {
        assert!(is_dir_name(&"a".repeat(64)));
        assert!(is_dir_name("0123-init"));
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "/etc", "a\0b"] {
            assert!(!is_dir_name(bad), "{bad:?}");
        }
        assert!(!is_dir_name(&"a".repeat(256)));
    }
}

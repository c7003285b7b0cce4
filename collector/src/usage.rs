//! Writable-layer usage: one walk of an upperdir that yields Docker's `SizeRw` figure to the byte, the
//! allocated bytes `du` would give, and overlay-specific counts (whiteouts, opaque directories).
//!
//! How Docker counts (moby `pkg/directory` `Size`, used by the overlay2 driver's `DiffSize`): every entry
//! seen without following symlinks; directories and entries of size 0 skipped; `st_size` added once per
//! inode (so a sparse file counts in full and a symlink counts the length of its target). Allocated bytes
//! are `st_blocks * 512` over every entry including directories and the root, each inode once, which is
//! what `du -sB1` prints.
//!
//! The walk never follows a symlink (every open is `openat(…, O_NOFOLLOW)` relative to an open parent), never
//! leaves the upperdir's filesystem, keeps a bounded number of directories open however deep the tree, and
//! survives entries vanishing under it. Not for: deciding which directory is a writable layer (the storage
//! model does that).

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What one walk of a writable layer counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritableUsage {
    /// Bytes as Docker counts `SizeRw`: `st_size` of every non-directory entry, each inode once.
    pub apparent_bytes: u64,
    /// Bytes allocated on disk: `st_blocks * 512` of every entry and the root, each inode once.
    pub allocated_bytes: u64,
    /// Regular files (entries, so two hard links are two files).
    pub files: u64,
    /// Directories below the root.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Overlay whiteouts: character devices 0/0 that hide a lower file.
    pub whiteouts: u64,
    /// Directories marked opaque (`trusted.overlay.opaque=y`, or `user.overlay.opaque` under `userxattr`).
    pub opaque_dirs: u64,
    /// FIFOs, sockets and device nodes other than whiteouts.
    pub other: u64,
    /// Entries that could not be read: vanished during the walk, unreadable, or replaced under us.
    pub errors: u64,
    /// Mount points found inside the layer; they are not crossed.
    pub mount_points: u64,
    /// The first few problems, each with its path and cause, for the findings.
    #[serde(skip)]
    pub error_samples: Vec<String>,
}

/// Which extended-attribute namespace the overlay uses for its markers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OverlayXattrs {
    /// `trusted.overlay.*`, the default.
    #[default]
    Trusted,
    /// `user.overlay.*`, for overlays mounted with `userxattr` (rootless engines).
    User,
}

impl OverlayXattrs {
    fn opaque(self) -> &'static CStr {
        match self {
            OverlayXattrs::Trusted => c"trusted.overlay.opaque",
            OverlayXattrs::User => c"user.overlay.opaque",
        }
    }
}

/// Why a writable layer could not be measured at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot open writable layer {}: {source}", path.display())]
pub struct UsageError {
    /// The upperdir that was asked for.
    pub path: PathBuf,
    /// What the kernel said.
    #[source]
    pub source: io::Error,
}

const MAX_ERROR_SAMPLES: usize = 5;
/// Directories kept open at once on the way down; deeper ancestors are closed and reopened through `..`.
const OPEN_DIR_WINDOW: usize = 48;

struct Frame {
    name: CString,
    fd: Option<OwnedFd>,
    dev: u64,
    ino: u64,
    pending: Vec<CString>,
}

struct Walk<'a> {
    root: &'a Path,
    xattrs: OverlayXattrs,
    root_dev: u64,
    seen: HashSet<(u64, u64)>,
    usage: WritableUsage,
}

/// Measures the writable layer at `upperdir`. Fails only when `upperdir` itself cannot be opened as a
/// directory; every problem below it is counted in `errors` and the walk goes on.
pub fn measure_writable_layer(upperdir: &Path, xattrs: OverlayXattrs) -> Result<WritableUsage, UsageError> {
    let err = |source| UsageError { path: upperdir.to_owned(), source };
    let c = CString::new(upperdir.as_os_str().as_bytes())
        .map_err(|_| err(io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte")))?;
    let root_fd = open_dir(libc::AT_FDCWD, &c).map_err(err)?;
    let st = fstat(root_fd.as_raw_fd()).map_err(err)?;
    let mut walk =
        Walk { root: upperdir, xattrs, root_dev: st.st_dev, seen: HashSet::new(), usage: WritableUsage::default() };
    walk.usage.allocated_bytes += blocks_bytes(&st);
    let mut stack: Vec<Frame> = Vec::new();
    walk.enter(&mut stack, CString::default(), root_fd, &st);
    walk.run(&mut stack);
    Ok(walk.usage)
}

impl Walk<'_> {
    fn run(&mut self, stack: &mut Vec<Frame>) {
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.pending.pop() else {
                self.leave(stack);
                continue;
            };
            let parent = top.fd.as_ref().map(AsRawFd::as_raw_fd).expect("the top frame is always open");
            match open_dir(parent, &name) {
                Ok(fd) => match fstat(fd.as_raw_fd()) {
                    Ok(st) if st.st_dev != self.root_dev => {
                        // Became a mount point after we listed it: not crossed.
                        self.usage.mount_points += 1;
                    }
                    Ok(st) => {
                        self.check_opaque(fd.as_raw_fd());
                        self.enter(stack, name, fd, &st);
                    }
                    Err(e) => self.error(stack, Some(&name), e),
                },
                Err(e) => self.error(stack, Some(&name), e),
            }
        }
    }

    /// Pushes a directory that was just opened and lists it: its non-directory entries are counted now,
    /// its subdirectories are left pending on the frame.
    fn enter(&mut self, stack: &mut Vec<Frame>, name: CString, fd: OwnedFd, st: &libc::stat) {
        let raw = fd.as_raw_fd();
        stack.push(Frame { name, fd: Some(fd), dev: st.st_dev, ino: st.st_ino, pending: Vec::new() });
        match self.list(raw, stack) {
            Ok(subdirs) => stack.last_mut().expect("just pushed").pending = subdirs,
            Err(e) => self.error(stack, None, e),
        }
        // Open frames are always a suffix of the stack; close the oldest once there are too many.
        if stack.len() > OPEN_DIR_WINDOW {
            let oldest = stack.len() - OPEN_DIR_WINDOW - 1;
            stack[oldest].fd = None;
        }
    }

    /// Pops the finished top frame, reopening its parent through `..` if the parent had been closed.
    fn leave(&mut self, stack: &mut Vec<Frame>) {
        let done = stack.pop().expect("leave is called with a frame");
        let Some(parent) = stack.last_mut() else { return };
        if parent.fd.is_some() {
            return;
        }
        let child_fd = done.fd.as_ref().map(AsRawFd::as_raw_fd).expect("the top frame is always open");
        let reopened = open_dir(child_fd, c"..").and_then(|fd| fstat(fd.as_raw_fd()).map(|st| (fd, st)));
        match reopened {
            Ok((fd, st)) if st.st_dev == parent.dev && st.st_ino == parent.ino => parent.fd = Some(fd),
            other => {
                // The directory was moved while we were below it. Everything still on the stack is closed
                // (open frames are a suffix) and reachable only through it, so what is left of the walk is
                // given up and counted as one error rather than followed to wherever it went.
                let cause = match other {
                    Err(e) => e,
                    Ok(_) => io::Error::other("directory was moved during the walk"),
                };
                self.error(stack, Some(&done.name), cause);
                stack.clear();
            }
        }
    }

    fn list(&mut self, dirfd: RawFd, stack: &[Frame]) -> io::Result<Vec<CString>> {
        let mut subdirs = Vec::new();
        let dup = unsafe { libc::fcntl(dirfd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        let dir = unsafe { libc::fdopendir(dup) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            unsafe { libc::close(dup) };
            return Err(e);
        }
        loop {
            set_errno(0);
            let ent = unsafe { libc::readdir64(dir) };
            if ent.is_null() {
                let e = io::Error::last_os_error();
                unsafe { libc::closedir(dir) };
                return if e.raw_os_error().unwrap_or(0) != 0 { Err(e) } else { Ok(subdirs) };
            }
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            match fstatat(dirfd, name) {
                Ok(st) => {
                    if self.count(&st) {
                        if st.st_dev == self.root_dev {
                            subdirs.push(name.to_owned());
                        } else {
                            self.usage.mount_points += 1;
                        }
                    }
                }
                Err(e) => self.error(stack, Some(name), e),
            }
        }
    }

    /// Counts one entry; returns true when it is a directory to descend into.
    fn count(&mut self, st: &libc::stat) -> bool {
        let kind = st.st_mode & libc::S_IFMT;
        let u = &mut self.usage;
        match kind {
            libc::S_IFDIR => {
                u.dirs += 1;
                u.allocated_bytes += blocks_bytes(st);
                return true;
            }
            libc::S_IFREG => u.files += 1,
            libc::S_IFLNK => u.symlinks += 1,
            libc::S_IFCHR if st.st_rdev == 0 => u.whiteouts += 1,
            _ => u.other += 1,
        }
        if st.st_nlink > 1 && !self.seen.insert((st.st_dev, st.st_ino)) {
            return false;
        }
        let u = &mut self.usage;
        u.apparent_bytes += st.st_size as u64;
        u.allocated_bytes += blocks_bytes(st);
        false
    }

    fn check_opaque(&mut self, fd: RawFd) {
        let mut v = [0u8; 1];
        let n = unsafe { libc::fgetxattr(fd, self.xattrs.opaque().as_ptr(), v.as_mut_ptr().cast(), 1) };
        if n == 1 && v[0] == b'y' {
            self.usage.opaque_dirs += 1;
        }
    }

    fn error(&mut self, stack: &[Frame], name: Option<&CStr>, e: io::Error) {
        self.usage.errors += 1;
        if self.usage.error_samples.len() < MAX_ERROR_SAMPLES {
            let mut p = self.root.to_path_buf();
            for f in stack.iter().skip(1) {
                p.push(OsStr::from_bytes(f.name.to_bytes()));
            }
            if let Some(n) = name {
                p.push(OsStr::from_bytes(n.to_bytes()));
            }
            self.usage.error_samples.push(format!("{}: {e}", p.to_string_lossy()));
        }
    }
}

fn blocks_bytes(st: &libc::stat) -> u64 {
    (st.st_blocks as u64).saturating_mul(512)
}

fn open_dir(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
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

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { st.assume_init() })
}

fn fstatat(dirfd: RawFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    if unsafe { libc::fstatat(dirfd, name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { st.assume_init() })
}

fn set_errno(v: i32) {
    unsafe { *libc::__errno_location() = v };
}

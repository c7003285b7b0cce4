//! Writable-layer usage: one walk of an upperdir that yields Docker's `SizeRw` figure to the byte, the
//! allocated bytes `du` would give, and overlay-specific counts (whiteouts, opaque directories).
//!
//! How Docker counts (moby `pkg/directory` `Size`, used by the overlay2 driver's `DiffSize`): every entry
//! seen without following symlinks; directories and entries of size 0 skipped; `st_size` added once per
//! inode (so a sparse file counts in full and a symlink counts the length of its target). Allocated bytes
//! are `st_blocks * 512` over every entry including directories and the root, each inode once, which is
//! what `du -sB1` prints.
//!
//! The walk itself is in [`crate::walk`]: parallel across and within layers, never following a symlink
//! (every open is `openat(…, O_NOFOLLOW)` relative to an open parent), never crossing a mount point
//! (statx's mount id, so a bind mount of the same filesystem is caught too), with a bounded number of
//! directories open however deep the tree, and surviving entries vanishing under it. Not for: deciding
//! which directory is a writable layer (the storage model does that).

use crate::walk::{measure_layers, WalkOptions};
use serde::{Deserialize, Serialize};
use std::ffi::{CStr, OsStr};
use std::io;
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
    /// Metacopy files: metadata copied up, data still in a lower layer (`trusted.overlay.metacopy`).
    /// Docker counts their full `st_size`, and so does `apparent_bytes`.
    #[serde(default)]
    pub metacopy_files: u64,
    /// FIFOs, sockets and device nodes other than whiteouts.
    pub other: u64,
    /// Entries that could not be read: vanished during the walk, unreadable, or replaced under us.
    pub errors: u64,
    /// Mount points found inside the layer; they are not crossed.
    pub mount_points: u64,
    /// The layer's largest regular files (as many as asked for; none unless asked), largest first.
    #[serde(default)]
    pub top_files: Vec<TopFile>,
    /// The first few problems, each with its path and cause, for the findings.
    #[serde(skip)]
    pub error_samples: Vec<String>,
}

/// One of a layer's largest files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopFile {
    /// The path as the container sees it (`/var/log/app.log`): below the upperdir, with a leading `/`.
    /// Written lossily when it is not UTF-8 (see `path_not_utf8`).
    pub path: String,
    /// `st_size`.
    pub apparent_bytes: u64,
    /// `st_blocks * 512`.
    pub allocated_bytes: u64,
    /// Whether the real name is not UTF-8 and `path` is a lossy rendering of it.
    #[serde(skip)]
    pub path_not_utf8: bool,
}

impl TopFile {
    /// A top file from its path below the upperdir (no leading slash) as raw bytes.
    pub fn new(rel: &[u8], apparent_bytes: u64, allocated_bytes: u64) -> TopFile {
        let mut path = String::with_capacity(rel.len() + 1);
        path.push('/');
        path.push_str(&OsStr::from_bytes(rel).to_string_lossy());
        TopFile { path, apparent_bytes, allocated_bytes, path_not_utf8: std::str::from_utf8(rel).is_err() }
    }
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
    pub(crate) fn opaque(self) -> &'static CStr {
        match self {
            OverlayXattrs::Trusted => c"trusted.overlay.opaque",
            OverlayXattrs::User => c"user.overlay.opaque",
        }
    }

    /// On a zero-size regular file: a whiteout in xattr form (kernel 6.7+).
    pub(crate) fn whiteout(self) -> &'static CStr {
        match self {
            OverlayXattrs::Trusted => c"trusted.overlay.whiteout",
            OverlayXattrs::User => c"user.overlay.whiteout",
        }
    }

    /// On a directory: it holds xattr whiteouts (kernel 6.7's marker; later kernels use `opaque=x`).
    pub(crate) fn whiteouts(self) -> &'static CStr {
        match self {
            OverlayXattrs::Trusted => c"trusted.overlay.whiteouts",
            OverlayXattrs::User => c"user.overlay.whiteouts",
        }
    }

    pub(crate) fn metacopy(self) -> &'static CStr {
        match self {
            OverlayXattrs::Trusted => c"trusted.overlay.metacopy",
            OverlayXattrs::User => c"user.overlay.metacopy",
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

/// Measures the writable layer at `upperdir` on the calling thread, with no top-files list. Fails only
/// when `upperdir` itself cannot be opened as a directory; every problem below it is counted in `errors`
/// and the walk goes on.
pub fn measure_writable_layer(upperdir: &Path, xattrs: OverlayXattrs) -> Result<WritableUsage, UsageError> {
    let opts = WalkOptions { threads: 1, xattrs, top_files: 0 };
    let mut all = measure_layers(&[Some(upperdir.to_path_buf())], opts, None);
    all.pop().unwrap_or_else(|| Ok(WritableUsage::default()))
}

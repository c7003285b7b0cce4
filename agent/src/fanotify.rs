//! The agent's fanotify group: which directories of the writable layers changed since the last scan.
//!
//! One group reports directory file handles and entry names (`FAN_REPORT_DIR_FID | FAN_REPORT_NAME`),
//! which an unprivileged process may create; every directory of every followed layer gets an inode mark
//! with `FAN_EVENT_ON_CHILD | FAN_ONDIR`, so the writes container processes make through their overlay
//! mounts are reported against the upperdir directory they land in. A reader thread drains the queue as
//! events come (so it does not overflow between scans) into a set of changed directories, each keyed by
//! its file system id and file handle, the key [`ChangeFeed::mark`] returned for it. What to do with a
//! change is the caller's business ([`crate::incremental`]).

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// `FAN_REPORT_DIR_FID | FAN_REPORT_NAME` (`FAN_REPORT_DFID_NAME`), which nix's flags do not name.
const REPORT_DFID_NAME: libc::c_uint = 0x0000_0400 | 0x0000_0800;
/// Info record types (`include/uapi/linux/fanotify.h`).
const INFO_TYPE_FID: u8 = 1;
const INFO_TYPE_DFID_NAME: u8 = 2;
const INFO_TYPE_DFID: u8 = 3;
/// `AT_HANDLE_FID` (kernel 6.5): ask for a handle that identifies the object, as fanotify reports it.
const AT_HANDLE_FID: libc::c_int = 0x200;
const MAX_HANDLE_SZ: usize = 128;

/// What changed since the last drain.
#[derive(Debug, Default)]
pub struct Changes {
    /// Changed directories by key, each with the names of subdirectories created or moved into it.
    pub dirs: HashMap<Box<[u8]>, HashSet<Box<[u8]>>>,
    /// The kernel's queue overflowed: events were lost.
    pub overflow: bool,
    /// Events read.
    pub events: u64,
}

/// The fanotify group and its reader thread.
pub struct ChangeFeed {
    group: Arc<Fanotify>,
    changes: Arc<Mutex<Changes>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Changes>) -> MutexGuard<'_, Changes> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChangeFeed {
    /// Creates the group and starts its reader. Fails where fanotify is missing (`ENOSYS`: no kernel
    /// support, or a seccomp filter), not allowed (`EPERM`) or too old to report names (`EINVAL`).
    pub fn start() -> Result<ChangeFeed, Errno> {
        let flags = InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_CLOEXEC
            | InitFlags::FAN_NONBLOCK
            | InitFlags::from_bits_retain(REPORT_DFID_NAME);
        let group = Arc::new(Fanotify::init(flags, EventFFlags::O_RDONLY)?);
        let changes = Arc::new(Mutex::new(Changes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (group, changes, stop) = (group.clone(), changes.clone(), stop.clone());
            std::thread::Builder::new()
                .name("fanotify".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while !stop.load(Ordering::Relaxed) {
                        let mut fds = [PollFd::new(group.as_fd(), PollFlags::POLLIN)];
                        match poll(&mut fds, PollTimeout::from(500u16)) {
                            Ok(0) | Err(Errno::EINTR) => continue,
                            Ok(_) => read_all(&group, &mut lock(&changes), &mut buf),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|_| Errno::EAGAIN)?
        };
        Ok(ChangeFeed { group, changes, stop, reader: Some(reader) })
    }

    /// Marks the open directory `dir` and returns its key: file system id, handle type and handle.
    pub fn mark(&self, dir: BorrowedFd<'_>) -> io::Result<Box<[u8]>> {
        let key = handle_key(dir)?;
        self.group.mark(MarkFlags::FAN_MARK_ADD, mark_mask(), dir, None::<&Path>).map_err(io::Error::from)?;
        Ok(key)
    }

    /// Removes the mark of the open directory `dir` (its layer is given up), so that it leaves room under
    /// the mark limit for other layers. A directory without a mark is no error worth reporting.
    pub fn unmark(&self, dir: BorrowedFd<'_>) {
        let _ = self.group.mark(MarkFlags::FAN_MARK_REMOVE, mark_mask(), dir, None::<&Path>);
    }

    /// Everything reported up to now (the queue is read to its end first), leaving nothing behind.
    pub fn drain(&self) -> Changes {
        let mut buf = vec![0u8; 64 * 1024];
        let mut c = lock(&self.changes);
        read_all(&self.group, &mut c, &mut buf);
        std::mem::take(&mut *c)
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// What every directory is marked for: its entries' changes and its own.
fn mark_mask() -> MaskFlags {
    MaskFlags::FAN_MODIFY
        | MaskFlags::FAN_ATTRIB
        | MaskFlags::FAN_CREATE
        | MaskFlags::FAN_DELETE
        | MaskFlags::FAN_MOVED_FROM
        | MaskFlags::FAN_MOVED_TO
        | MaskFlags::FAN_ONDIR
        | MaskFlags::FAN_EVENT_ON_CHILD
}

/// Reads the group until it has no event left.
fn read_all(group: &Fanotify, c: &mut Changes, buf: &mut [u8]) {
    loop {
        match nix::unistd::read(group.as_fd(), buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => parse_events(&buf[..n], c),
        }
    }
}

/// Adds the events in `buf` (what one `read` of the group returned) to `c`.
fn parse_events(buf: &[u8], c: &mut Changes) {
    let u16_at = |b: &[u8], o: usize| b.get(o..o + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let u32_at = |b: &[u8], o: usize| b.get(o..o + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]));
    let mut off = 0;
    // struct fanotify_event_metadata { u32 event_len; u8 vers; u8 reserved; u16 metadata_len;
    //   u64 mask; s32 fd; s32 pid; }
    while let (Some(len), Some(meta_len)) = (u32_at(buf, off), u16_at(buf, off + 6)) {
        let len = len as usize;
        let Some(ev) = buf.get(off..off + len) else { return };
        if len < 24 {
            return;
        }
        off += len;
        c.events += 1;
        let mask = ev.get(8..16).map_or(0, |s| u64::from_ne_bytes(s.try_into().unwrap_or([0; 8])));
        if mask & MaskFlags::FAN_Q_OVERFLOW.bits() != 0 {
            c.overflow = true;
            continue;
        }
        let new_dir = mask & MaskFlags::FAN_ONDIR.bits() != 0
            && mask & (MaskFlags::FAN_CREATE.bits() | MaskFlags::FAN_MOVED_TO.bits()) != 0;
        // Info records: { u8 info_type; u8 pad; u16 len; } then fsid (8 bytes), then
        // struct file_handle { u32 handle_bytes; s32 handle_type; u8 f_handle[]; }, then for DFID_NAME the
        // entry's name, NUL-terminated.
        let mut at = meta_len as usize;
        while let (Some(&kind), Some(rec_len)) = (ev.get(at), u16_at(ev, at + 2)) {
            let rec_len = rec_len as usize;
            let Some(rec) = ev.get(at..at + rec_len) else { break };
            if rec_len < 4 {
                break;
            }
            at += rec_len;
            if kind != INFO_TYPE_DFID_NAME && kind != INFO_TYPE_DFID && kind != INFO_TYPE_FID {
                continue;
            }
            let Some(hbytes) = u32_at(rec, 12) else { continue };
            let end = 20 + hbytes as usize;
            let (Some(fsid), Some(htype), Some(handle)) = (rec.get(4..12), rec.get(16..20), rec.get(20..end)) else {
                continue;
            };
            let key: Box<[u8]> = [fsid, htype, handle].concat().into();
            // A FID record names the object itself, which matters only when it is a directory (a self event).
            if kind == INFO_TYPE_FID && mask & MaskFlags::FAN_ONDIR.bits() == 0 {
                continue;
            }
            let names = c.dirs.entry(key).or_default();
            if kind == INFO_TYPE_DFID_NAME && new_dir {
                let name = rec.get(end..).unwrap_or_default();
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if !name.is_empty() && name != b"." {
                    names.insert(name.into());
                }
            }
        }
    }
}

/// The key fanotify reports a directory under: `statfs`'s fsid, then the handle type and bytes of
/// `name_to_handle_at`.
fn handle_key(dir: BorrowedFd<'_>) -> io::Result<Box<[u8]>> {
    let st = nix::sys::statfs::fstatfs(dir).map_err(io::Error::from)?;
    let fsid = st.filesystem_id();
    // SAFETY: fsid_t is `struct { int __val[2]; }`, 8 plain bytes with no invalid values; its fields are
    // private in libc, and fanotify reports the same two ints.
    let fsid: [i32; 2] = unsafe { std::mem::transmute(fsid) };
    // struct file_handle { u32 handle_bytes; s32 handle_type; u8 f_handle[]; }, kept 4-byte aligned.
    let mut fh = [0u32; 2 + MAX_HANDLE_SZ / 4];
    let mut mount_id: libc::c_int = 0;
    let mut call = |flags: libc::c_int, fh: &mut [u32]| {
        fh[0] = MAX_HANDLE_SZ as u32;
        // SAFETY: `fh` is a writable, aligned file_handle with room for MAX_HANDLE_SZ handle bytes, as
        // its first field says; the path is an empty C string used with AT_EMPTY_PATH on an open fd;
        // `mount_id` is a valid int to write to.
        unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                dir.as_raw_fd(),
                c"".as_ptr(),
                fh.as_mut_ptr(),
                &mut mount_id as *mut libc::c_int,
                libc::AT_EMPTY_PATH | flags,
            )
        }
    };
    let mut rc = call(AT_HANDLE_FID, &mut fh);
    if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        rc = call(0, &mut fh);
    }
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (fh[0] as usize).min(MAX_HANDLE_SZ);
    let bytes: Vec<u8> = fh.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut key = Vec::with_capacity(12 + n);
    key.extend_from_slice(&fsid[0].to_ne_bytes());
    key.extend_from_slice(&fsid[1].to_ne_bytes());
    key.extend_from_slice(&bytes[4..8]);
    key.extend_from_slice(&bytes[8..8 + n]);
    Ok(key.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An info record: type, fsid, handle, name.
    type Record<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

    fn event(mask: u64, records: &[Record<'_>]) -> Vec<u8> {
        let mut recs = Vec::new();
        for (kind, fsid, handle, name) in records {
            let mut r = vec![*kind, 0, 0, 0];
            r.extend_from_slice(fsid);
            r.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
            r.extend_from_slice(&1i32.to_ne_bytes());
            r.extend_from_slice(handle);
            r.extend_from_slice(name);
            while r.len() % 4 != 0 {
                r.push(0);
            }
            let len = r.len() as u16;
            r[2..4].copy_from_slice(&len.to_ne_bytes());
            recs.extend(r);
        }
        let mut e = Vec::new();
        e.extend_from_slice(&((24 + recs.len()) as u32).to_ne_bytes());
        e.extend_from_slice(&[3, 0]);
        e.extend_from_slice(&24u16.to_ne_bytes());
        e.extend_from_slice(&mask.to_ne_bytes());
        e.extend_from_slice(&(-1i32).to_ne_bytes());
        e.extend_from_slice(&7i32.to_ne_bytes());
        e.extend(recs);
        e
    }

    #[test]
    fn events_become_changed_directories_with_the_names_of_new_subdirectories() {
        let fsid = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let dir_a = [9u8; 8];
        let dir_b = [10u8; 8];
        let mkdir = MaskFlags::FAN_CREATE.bits() | MaskFlags::FAN_ONDIR.bits();
        let mut buf = event(mkdir, &[(INFO_TYPE_DFID_NAME, &fsid, &dir_a, b"sub\0")]);
        buf.extend(event(MaskFlags::FAN_MODIFY.bits(), &[(INFO_TYPE_DFID_NAME, &fsid, &dir_b, b"log\0")]));
        buf.extend(event(
            MaskFlags::FAN_ATTRIB.bits() | MaskFlags::FAN_ONDIR.bits(),
            &[(INFO_TYPE_DFID_NAME, &fsid, &dir_b, b".\0")],
        ));
        buf.extend(event(MaskFlags::FAN_Q_OVERFLOW.bits(), &[]));
        let mut c = Changes::default();
        parse_events(&buf, &mut c);
        assert_eq!(c.events, 4);
        assert!(c.overflow);
        let key = |h: &[u8]| -> Box<[u8]> { [&fsid[..], &1i32.to_ne_bytes(), h].concat().into() };
        assert_eq!(c.dirs.len(), 2);
        let a = &c.dirs[&key(&dir_a)];
        assert_eq!(a.iter().map(|n| n.to_vec()).collect::<Vec<_>>(), vec![b"sub".to_vec()]);
        assert!(c.dirs[&key(&dir_b)].is_empty(), "a modified file or a directory's own change is no new directory");
        // A truncated read ends the parse without a panic.
        parse_events(&buf[..30], &mut Changes::default());
    }
}

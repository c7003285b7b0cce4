//! Container logs written by Docker's json-file driver: `<data-root>/containers/<id>/<id>-json.log` (the
//! container's `LogPath`) and, with `max-file` > 1, its rotated files `<id>-json.log.1`, `.2`, … (`.N.gz`
//! with `compress=true`). On busy hosts these are often the largest per-container disk users, and they
//! live outside the writable layer, so `SizeRw` never shows them.

use crate::finding::Findings;
use crate::hostfs::{EntryKind, StoreDir};
use std::path::Path;

/// Apparent bytes of the log at `log_path` (where this process reads it, under the data root `store`) and
/// of its rotated files. A missing log is 0 bytes (the engine creates it on first start); any other problem
/// is a finding, and what could be read is still counted. Nothing is followed: a log that is a symlink
/// counts as the link.
pub fn log_bytes(store: &StoreDir, log_path: &Path, findings: &mut Findings) -> u64 {
    let mut total: u64 = 0;
    match store.metadata(log_path) {
        Ok(m) => total = total.saturating_add(u64::try_from(m.st_size).unwrap_or(0)),
        Err(e) if e.is_not_found() => {}
        Err(e) => findings.warn(e.code("log_unreadable"), format!("cannot stat container log: {e}"), Some(log_path)),
    }
    let (Some(dir), Some(base)) = (log_path.parent(), log_path.file_name().and_then(|n| n.to_str())) else {
        return total;
    };
    let entries = match store.list(dir) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return total,
        Err(e) => {
            findings.warn(e.code("log_unreadable"), format!("cannot list the log's directory: {e}"), Some(dir));
            return total;
        }
    };
    for ent in entries {
        let Some(suffix) = ent.name.to_str().and_then(|n| n.strip_prefix(base)).and_then(|s| s.strip_prefix('.'))
        else {
            continue;
        };
        if !is_rotation_suffix(suffix) || !matches!(ent.kind, EntryKind::File | EntryKind::Unknown) {
            continue;
        }
        let path = dir.join(&ent.name);
        match store.metadata(&path) {
            Ok(m) if m.st_mode & libc::S_IFMT == libc::S_IFREG => {
                total = total.saturating_add(u64::try_from(m.st_size).unwrap_or(0))
            }
            Ok(_) => {}
            Err(e) => findings.warn(e.code("log_unreadable"), format!("cannot stat rotated log: {e}"), Some(&path)),
        }
    }
    total
}

/// `N` or `N.gz`, as json-file's rotation names its older files.
fn is_rotation_suffix(s: &str) -> bool {
    let n = s.strip_suffix(".gz").unwrap_or(s);
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn rotated_files_count_and_others_do_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("abc-json.log");
        fs::write(&log, vec![b'x'; 100]).expect("write");
        fs::write(dir.path().join("abc-json.log.1"), vec![b'x'; 1000]).expect("write");
        fs::write(dir.path().join("abc-json.log.2.gz"), vec![b'x'; 10]).expect("write");
        // Not rotations of this log: Docker's own files next to it, and a lookalike.
        fs::write(dir.path().join("config.v2.json"), vec![b'x'; 7]).expect("write");
        fs::write(dir.path().join("abc-json.log.bak"), vec![b'x'; 3]).expect("write");
        fs::write(dir.path().join("abc-json.log.1.tmp"), vec![b'x'; 5]).expect("write");
        let mut f = Findings::default();
        let store = StoreDir::open(dir.path()).expect("open");
        assert_eq!(log_bytes(&store, &log, &mut f), 100 + 1000 + 10);
        assert!(f.as_slice().is_empty());
    }

    #[test]
    fn a_log_that_is_a_link_counts_as_the_link() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("big");
        fs::write(&secret, vec![b'x'; 5000]).expect("write");
        std::fs::create_dir(dir.path().join("c")).expect("mkdir");
        std::os::unix::fs::symlink(&secret, dir.path().join("c/abc-json.log")).expect("symlink");
        let store = StoreDir::open(dir.path()).expect("open");
        let mut f = Findings::default();
        assert_eq!(log_bytes(&store, &dir.path().join("c/abc-json.log"), &mut f), secret.as_os_str().len() as u64);
    }

    #[test]
    fn a_missing_log_is_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut f = Findings::default();
        let store = StoreDir::open(dir.path()).expect("open");
        assert_eq!(log_bytes(&store, &dir.path().join("x-json.log"), &mut f), 0);
        assert_eq!(log_bytes(&store, &dir.path().join("gone/x-json.log"), &mut f), 0);
        assert!(f.as_slice().is_empty());
    }
}

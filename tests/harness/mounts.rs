//! Finding and lazily detaching the mounts an engine left under its temp dir.
//!
//! dockerd bind-mounts its data root onto itself and mounts one overlay per running container, plus
//! network-namespace files under its exec root. A clean shutdown removes them; a killed engine does
//! not, and `remove_dir_all` must never walk into a mount (it could be a bind of a host directory).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Mount points at or below `dir` in a `/proc/<pid>/mountinfo` text, in the order to unmount them:
/// deepest first, and among equal paths the most recent (topmost) mount first.
pub fn mount_points_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(OsString::from_vec(unescape_octal(field))))
        .filter(|point| point.starts_with(dir))
        .collect();
    // mountinfo lists mounts in the order they were made; reverse so a mount stacked on the same path
    // comes before the one it covers, then a stable sort keeps that order among equal depths.
    points.reverse();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    points
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let is_escape =
            bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..=i + 3].iter().all(|b| (b'0'..=b'7').contains(b));
        if is_escape {
            let value = bytes[i + 1..=i + 3].iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            // Three octal digits can exceed a byte (\777); such a field is not kernel output.
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Reads this process's mountinfo; our mount namespace is the one dockerd mounted into.
pub fn current_mount_points_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    Ok(mount_points_under(&text, dir))
}

/// Lazily detaches (`MNT_DETACH`) every mount at or below `dir`, deepest first, and returns the mount
/// points that are still there afterwards (empty on success).
pub fn detach_all_under(dir: &Path) -> Result<Vec<PathBuf>, String> {
    // Detaching a parent also detaches what is mounted below it, so later calls may fail with EINVAL;
    // the re-read below is the judge. Two passes cover mounts that propagated back in the meantime.
    for _ in 0..2 {
        let points = current_mount_points_under(dir)?;
        if points.is_empty() {
            return Ok(points);
        }
        for point in &points {
            let Ok(c_path) = std::ffi::CString::new(point.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
            unsafe {
                libc::umount2(c_path.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
    current_mount_points_under(dir)
}

#[cfg(test)]
mod mountinfo_tests {
    use super::*;

    // Real lines from a host running a private dockerd with its temp dir at /tmp/ovdAb12Cd.
    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 254:0 /tmp/ovdAb12Cd/data /tmp/ovdAb12Cd/data rw,relatime shared:1 - ext4 /dev/vda rw
48 42 0:39 / /tmp/ovdAb12Cd/data/overlay2/2f45/merged rw,relatime shared:2 - overlay overlay rw,lowerdir=/tmp/ovdAb12Cd/data/overlay2/l/3KSG,upperdir=/tmp/ovdAb12Cd/data/overlay2/2f45/diff,workdir=/tmp/ovdAb12Cd/data/overlay2/2f45/work
50 27 0:4 net:[4026532300] /tmp/ovdAb12Cd/exec/netns/3c1f rw shared:3 - nsfs nsfs rw
51 27 254:0 /tmp/ovdAb12Cd/data /tmp/ovdAb12Cd/data rw,relatime shared:1 - ext4 /dev/vda rw
60 27 254:0 /srv /tmp/ovdAb12Cd0/data rw,relatime - ext4 /dev/vda rw
61 27 254:0 /srv /tmp/ovdAb12Cd/with\\040space rw,relatime - ext4 /dev/vda rw
";

    #[test]
    fn deepest_first_and_stacked_mounts_topmost_first() {
        let dir = Path::new("/tmp/ovdAb12Cd");
        let points = mount_points_under(MOUNTINFO, dir);
        assert_eq!(
            points,
            [
                "/tmp/ovdAb12Cd/data/overlay2/2f45/merged",
                "/tmp/ovdAb12Cd/exec/netns/3c1f",
                "/tmp/ovdAb12Cd/with space",
                "/tmp/ovdAb12Cd/data",
                "/tmp/ovdAb12Cd/data",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_sibling_with_the_same_prefix_is_not_under_the_dir() {
        let points = mount_points_under(MOUNTINFO, Path::new("/tmp/ovdAb12Cd"));
        assert!(!points.contains(&PathBuf::from("/tmp/ovdAb12Cd0/data")));
    }

    #[test]
    fn octal_escapes_decode_to_bytes() {
        assert_eq!(unescape_octal(r"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
        assert_eq!(unescape_octal(r"trailing\04"), br"trailing\04");
    }
}

//! The kernel's mount table, parsed: `/proc/<pid>/mountinfo` and the older `/proc/mounts` format, from bytes
//! to [`MountEntry`] values. This module owns the table's line grammar and its octal escaping; it knows nothing
//! of overlayfs beyond telling an overlay mount apart (the layer options are read by [`crate::overlay`]).
//! Parsing is pure and works on bytes, because paths in the table need not be UTF-8; which file is read is
//! decided by [`crate::mount_table`].
//!
//! Facts of the format, as the kernel prints it (`fs/proc_namespace.c`, `seq_show_option`):
//! - fields are separated by exactly one space; a field may be empty (a mount made with an empty source
//!   shows as two spaces in a row), so the line is never split on runs of whitespace;
//! - the root and mount point escape space, tab, newline and backslash as `\040 \011 \012 \134`; the source
//!   and type escape `#` (`\043`) as well; option keys escape `, = space tab newline \`, option values
//!   `, space tab newline \` — so a comma inside a value is `\054` and `=` inside a value is left as is;
//! - all other bytes, including non-UTF-8 ones, are written raw;
//! - SELinux writes a context that contains a comma in double quotes, commas unescaped
//!   (`context="system_u:object_r:container_file_t:s0:c1,c2"`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One mount, as one line of the mount table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id (mountinfo field 1); `None` for the `/proc/mounts` format, which has no ids.
    pub mount_id: Option<u32>,
    /// The id of the parent mount (mountinfo field 2); `None` for `/proc/mounts`.
    pub parent_id: Option<u32>,
    /// The device number of the mounted filesystem as `(major, minor)`; `None` for `/proc/mounts`.
    pub device: Option<(u32, u32)>,
    /// The directory of the filesystem that is the root of this mount (`/` unless it is a bind mount of a
    /// subdirectory); `None` for `/proc/mounts`.
    pub root: Option<PathBuf>,
    /// Where the mount is attached, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (mountinfo field 6, e.g. `rw,relatime`); for `/proc/mounts`, its single options
    /// field, which mixes per-mount and filesystem options.
    pub mount_options: Vec<MountOption>,
    /// The optional tagged fields (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`), in order.
    pub optional_fields: Vec<String>,
    /// The filesystem type, with its subtype if any (`overlay`, `ext4`, `fuse.sshfs`).
    pub fs_type: String,
    /// The mount source (the device, or a free-form name such as `overlay`); may be empty.
    pub source: OsString,
    /// The superblock's options (mountinfo's last field), where overlayfs lists its layers; for
    /// `/proc/mounts`, a copy of [`MountEntry::mount_options`].
    pub super_options: Vec<MountOption>,
}

impl MountEntry {
    /// The first option named `key` among the superblock options, if any.
    pub fn option(&self, key: &str) -> Option<&MountOption> {
        self.super_options.iter().find(|option| option.key == key)
    }

    /// Whether this is an overlayfs mount (type `overlay`). A FUSE overlay (`fuse.fuse-overlayfs`) is not:
    /// its options do not name its layers.
    pub fn is_overlay(&self) -> bool {
        self.fs_type == "overlay"
    }
}

/// One comma-separated mount option, octal escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountOption {
    /// The name: everything before the first `=` (`lowerdir`, `lowerdir+`, `relatime`).
    pub key: String,
    /// Everything after the first `=`, or `None` for a flag option. Kept exactly as printed apart from the
    /// octal decoding (SELinux's double quotes stay in place).
    pub value: Option<OsString>,
}

/// A mount table line that could not be parsed; the lines around it are still parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mount table line {line}: {reason}: {text}")]
pub struct MountLineError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub reason: String,
    /// The line as printed, lossily converted to UTF-8 and cut after [`MountLineError::TEXT_LIMIT`]
    /// characters.
    pub text: String,
}

impl MountLineError {
    /// How many characters of the offending line [`MountLineError::text`] keeps.
    pub const TEXT_LIMIT: usize = 200;

    fn new(line: usize, reason: String, raw: &[u8]) -> Self {
        let lossy = String::from_utf8_lossy(raw);
        let text = match lossy.char_indices().nth(Self::TEXT_LIMIT) {
            Some((cut, _)) => format!("{}…", &lossy[..cut]),
            None => lossy.into_owned(),
        };
        MountLineError { line, reason, text }
    }
}

/// Parses `/proc/<pid>/mountinfo` text:
/// `mnt_id parent_id maj:min root mount_point mount_opts [optional fields...] - fs_type source super_opts`.
///
/// Each bad line becomes a [`MountLineError`] and parsing goes on with the next one. Empty lines (such as
/// the one after the final newline) are skipped.
pub fn parse_mountinfo(text: &[u8]) -> (Vec<MountEntry>, Vec<MountLineError>) {
    parse_lines(text, parse_mountinfo_line)
}

/// Parses `/proc/mounts` text: `source mount_point fs_type options dump pass`.
///
/// The format has no ids, device or root, and a single options field, which is returned both as
/// [`MountEntry::mount_options`] and as [`MountEntry::super_options`]. Bad lines are handled as in
/// [`parse_mountinfo`].
pub fn parse_proc_mounts(text: &[u8]) -> (Vec<MountEntry>, Vec<MountLineError>) {
    parse_lines(text, parse_proc_mounts_line)
}

/// Splits one options field into options, in order, keeping repeated keys.
///
/// The field is split on `,` first (a comma inside a value is printed `\054`, except inside a value that
/// starts with a double quote, which runs to the closing quote), then each option on its first `=`, and
/// only then are the key and value decoded with [`decode_octal_escapes`]. Empty options are dropped.
pub fn parse_options(field: &[u8]) -> Vec<MountOption> {
    split_options(field).into_iter().filter(|raw| !raw.is_empty()).map(parse_option).collect()
}

/// Decodes the kernel's octal escapes, once, left to right.
///
/// A backslash followed by exactly three octal digits whose value fits in a byte (`\000` to `\377`) becomes
/// that byte; any other backslash is kept literally. The output is not scanned again, so `\134040` decodes
/// to the four bytes `\040`, not to a space.
pub fn decode_octal_escapes(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' {
            if let Some(byte) = field.get(i + 1..i + 4).and_then(octal_byte) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    let mut value: u16 = 0;
    for &digit in digits {
        if !(b'0'..=b'7').contains(&digit) {
            return None;
        }
        value = value * 8 + u16::from(digit - b'0');
    }
    u8::try_from(value).ok()
}

fn parse_lines(
    text: &[u8],
    parse_line: fn(&[u8]) -> Result<MountEntry, String>,
) -> (Vec<MountEntry>, Vec<MountLineError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(entry) => entries.push(entry),
            Err(reason) => errors.push(MountLineError::new(index + 1, reason, line)),
        }
    }
    (entries, errors)
}

/// Fields before the optional ones: id, parent id, maj:min, root, mount point, per-mount options.
const MOUNTINFO_FIXED_FIELDS: usize = 6;

fn parse_mountinfo_line(line: &[u8]) -> Result<MountEntry, String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if fields.len() < MOUNTINFO_FIXED_FIELDS {
        return Err(format!(
            "too few fields ({}); a mountinfo line has at least 10: id, parent id, major:minor, root, \
             mount point, options, ' - ', type, source, superblock options",
            fields.len()
        ));
    }
    let separator = fields[MOUNTINFO_FIXED_FIELDS..]
        .iter()
        .position(|field| *field == b"-")
        .map(|offset| MOUNTINFO_FIXED_FIELDS + offset)
        .ok_or_else(|| "missing the ' - ' separator after the optional fields".to_string())?;
    let tail = &fields[separator + 1..];
    let [fs_type, source, super_options] = tail else {
        return Err(format!("expected 3 fields after ' - ' (type, source, superblock options), found {}", tail.len()));
    };

    let mount_id = parse_number(fields[0], "mount id")?;
    let parent_id = parse_number(fields[1], "parent id")?;
    let device = parse_device(fields[2])?;
    let root = decode_path(fields[3], "root")?;
    let mount_point = decode_path(fields[4], "mount point")?;

    Ok(MountEntry {
        mount_id: Some(mount_id),
        parent_id: Some(parent_id),
        device: Some(device),
        root: Some(root),
        mount_point,
        mount_options: parse_options(fields[5]),
        optional_fields: fields[MOUNTINFO_FIXED_FIELDS..separator]
            .iter()
            .filter(|field| !field.is_empty())
            .map(|field| decode_lossy(field))
            .collect(),
        fs_type: decode_lossy(fs_type),
        source: OsString::from_vec(decode_octal_escapes(source)),
        super_options: parse_options(super_options),
    })
}

fn parse_proc_mounts_line(line: &[u8]) -> Result<MountEntry, String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [source, mount_point, fs_type, options, dump, pass] = fields[..] else {
        return Err(format!(
            "expected 6 fields (source, mount point, type, options, dump, pass), found {}",
            fields.len()
        ));
    };
    parse_number(dump, "dump field")?;
    parse_number(pass, "pass field")?;
    let options = parse_options(options);
    Ok(MountEntry {
        mount_id: None,
        parent_id: None,
        device: None,
        root: None,
        mount_point: decode_path(mount_point, "mount point")?,
        mount_options: options.clone(),
        optional_fields: Vec::new(),
        fs_type: decode_lossy(fs_type),
        source: OsString::from_vec(decode_octal_escapes(source)),
        super_options: options,
    })
}

fn parse_number(field: &[u8], what: &str) -> Result<u32, String> {
    let digits_only = !field.is_empty() && field.iter().all(u8::is_ascii_digit);
    std::str::from_utf8(field)
        .ok()
        .filter(|_| digits_only)
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("{what} `{}` is not a number", String::from_utf8_lossy(field)))
}

fn parse_device(field: &[u8]) -> Result<(u32, u32), String> {
    let not_a_device = || format!("device `{}` is not of the form MAJOR:MINOR", String::from_utf8_lossy(field));
    let colon = field.iter().position(|&b| b == b':').ok_or_else(not_a_device)?;
    let major = parse_number(&field[..colon], "major").map_err(|_| not_a_device())?;
    let minor = parse_number(&field[colon + 1..], "minor").map_err(|_| not_a_device())?;
    Ok((major, minor))
}

fn decode_path(field: &[u8], what: &str) -> Result<PathBuf, String> {
    if field.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    Ok(PathBuf::from(OsString::from_vec(decode_octal_escapes(field))))
}

fn decode_lossy(field: &[u8]) -> String {
    String::from_utf8_lossy(&decode_octal_escapes(field)).into_owned()
}

fn split_options(field: &[u8]) -> Vec<&[u8]> {
    let mut options = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < field.len() {
        match field[i] {
            b',' => {
                options.push(&field[start..i]);
                start = i + 1;
                i += 1;
            }
            // Only a quote that opens the value (right after the option's first '=') starts a quoted run:
            // SELinux quotes whole values, while a '"' elsewhere is just a byte of a path.
            b'"' if i > start && field[i - 1] == b'=' && !field[start..i - 1].contains(&b'=') => {
                match field[i + 1..].iter().position(|&b| b == b'"') {
                    Some(closing) => i += closing + 2,
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    options.push(&field[start..]);
    options
}

fn parse_option(raw: &[u8]) -> MountOption {
    match raw.iter().position(|&b| b == b'=') {
        Some(eq) => MountOption {
            key: decode_lossy(&raw[..eq]),
            value: Some(OsString::from_vec(decode_octal_escapes(&raw[eq + 1..]))),
        },
        None => MountOption { key: decode_lossy(raw), value: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    fn opt(key: &str, value: Option<&str>) -> MountOption {
        MountOption { key: key.to_string(), value: value.map(OsString::from) }
    }

    fn keys(options: &[MountOption]) -> Vec<&str> {
        options.iter().map(|o| o.key.as_str()).collect()
    }

    fn one_mountinfo(line: &[u8]) -> MountEntry {
        let (entries, errors) = parse_mountinfo(line);
        assert_eq!(errors, vec![]);
        assert_eq!(entries.len(), 1);
        entries.into_iter().next().expect("one entry")
    }

    fn path(bytes: &[u8]) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(bytes))
    }

    // A Docker 20.10 container root on a real host, /proc/mounts format.
    const DOCKER_PROC_MOUNTS: &str = "overlay /var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/merged overlay rw,relatime,lowerdir=/var/lib/docker/overlay2/l/QVO5L3KITI4IVHIF3CSS7A55ZP:/var/lib/docker/overlay2/l/CB5FLU2Q5C4WAHSSNNA7IA2LOB,upperdir=/var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/diff,workdir=/var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/work 0 0\n";

    // A container of a private dockerd on this machine (kernel 6.18), /proc/self/mountinfo.
    const DOCKER_MOUNTINFO: &str = "48 42 0:39 / /tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/merged rw,relatime shared:2 - overlay overlay rw,lowerdir=/tmp/dk/data/overlay2/l/3KSGGVXJCLKJV5PUO7UOI46GI3:/tmp/dk/data/overlay2/l/D44OFRITTS3NFOTNVNYTBISIKN:/tmp/dk/data/overlay2/l/ZINJKU36SA3TWRUXB5JSE33MLQ:/tmp/dk/data/overlay2/l/UIHHSMQ2UQDQLS7J6GKFVF2KBV,upperdir=/tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/diff,workdir=/tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/work\n";

    #[test]
    fn docker_proc_mounts_line() {
        let (entries, errors) = parse_proc_mounts(DOCKER_PROC_MOUNTS.as_bytes());
        assert_eq!(errors, vec![]);
        let [entry] = &entries[..] else { panic!("expected one entry, got {entries:?}") };
        assert_eq!(entry.mount_id, None);
        assert_eq!(entry.parent_id, None);
        assert_eq!(entry.device, None);
        assert_eq!(entry.root, None);
        assert_eq!(entry.source, "overlay");
        assert_eq!(entry.fs_type, "overlay");
        assert!(entry.is_overlay());
        assert_eq!(
            entry.mount_point,
            Path::new(
                "/var/lib/docker/overlay2/c520fff24fdac7d341e240f62e64a8301f8da9c0d44c5bb5fc62a419efdf6a67/merged"
            )
        );
        assert_eq!(keys(&entry.mount_options), ["rw", "relatime", "lowerdir", "upperdir", "workdir"]);
        assert_eq!(entry.super_options, entry.mount_options);
        assert_eq!(
            entry.option("lowerdir"),
            Some(&opt(
                "lowerdir",
                Some("/var/lib/docker/overlay2/l/QVO5L3KITI4IVHIF3CSS7A55ZP:/var/lib/docker/overlay2/l/CB5FLU2Q5C4WAHSSNNA7IA2LOB")
            ))
        );
        assert!(entry.optional_fields.is_empty());
    }

    #[test]
    fn docker_mountinfo_line_with_one_optional_field() {
        let entry = one_mountinfo(DOCKER_MOUNTINFO.as_bytes());
        assert_eq!(entry.mount_id, Some(48));
        assert_eq!(entry.parent_id, Some(42));
        assert_eq!(entry.device, Some((0, 39)));
        assert_eq!(entry.root.as_deref(), Some(Path::new("/")));
        assert_eq!(
            entry.mount_point,
            Path::new("/tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/merged")
        );
        assert_eq!(entry.mount_options, vec![opt("rw", None), opt("relatime", None)]);
        assert_eq!(entry.optional_fields, ["shared:2"]);
        assert_eq!(entry.fs_type, "overlay");
        assert_eq!(entry.source, "overlay");
        assert_eq!(keys(&entry.super_options), ["rw", "lowerdir", "upperdir", "workdir"]);
        assert_eq!(
            entry.option("workdir"),
            Some(&opt(
                "workdir",
                Some("/tmp/dk/data/overlay2/2f459741d69c614899ca810cab3915d41e47af745c086c7d6d06b26ae066a057/work")
            ))
        );
    }

    #[test]
    fn zero_optional_fields() {
        let entry = one_mountinfo(b"22 27 0:21 / /proc rw,relatime - proc proc rw\n");
        assert!(entry.optional_fields.is_empty());
        assert_eq!(entry.fs_type, "proc");
        assert_eq!(entry.super_options, vec![opt("rw", None)]);
        assert!(!entry.is_overlay());
    }

    #[test]
    fn shared_and_master_optional_fields() {
        let entry = one_mountinfo(b"110 59 254:0 /tmp/ovlk/srcA /tmp/ovlk/pb rw,relatime shared:4 master:3 - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534\n");
        assert_eq!(entry.optional_fields, ["shared:4", "master:3"]);
        assert_eq!(entry.device, Some((254, 0)));
        assert_eq!(entry.root.as_deref(), Some(Path::new("/tmp/ovlk/srcA")));
        assert_eq!(entry.source, "/dev/vda");
        assert_eq!(entry.option("resuid"), Some(&opt("resuid", Some("65534"))));
    }

    #[test]
    fn propagate_from_seen_from_a_chroot() {
        let entry = one_mountinfo(b"104 59 254:0 /tmp/ovlk/srcA /c rw,relatime master:4 propagate_from:3 - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534\n");
        assert_eq!(entry.optional_fields, ["master:4", "propagate_from:3"]);
        assert_eq!(entry.mount_point, Path::new("/c"));
    }

    #[test]
    fn three_optional_fields() {
        let entry = one_mountinfo(b"60 22 0:5 / /mnt/s rw shared:1 master:2 propagate_from:3 - tmpfs tmpfs rw");
        assert_eq!(entry.optional_fields, ["shared:1", "master:2", "propagate_from:3"]);
        assert_eq!(entry.fs_type, "tmpfs");
    }

    #[test]
    fn unbindable_optional_field() {
        let entry = one_mountinfo(b"130 59 254:0 /tmp/ovlk/d2 /tmp/ovlk/m10 rw,relatime unbindable - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534\n");
        assert_eq!(entry.optional_fields, ["unbindable"]);
    }

    // Real: `mount -t overlay 'src#1' -o 'lowerdir=…/l 1:…/l<TAB>tab:…/l#hash:…/l\\bs:…/l\:col:…/l\,com,…' '…/m nt'`.
    const SPECIAL_CHARS: &[u8] = b"109 59 0:50 / /tmp/ovlk/m\\040nt rw,relatime - overlay src\\0431 rw,lowerdir=/tmp/ovlk/l\\0401:/tmp/ovlk/l\\011tab:/tmp/ovlk/l#hash:/tmp/ovlk/l\\134\\134bs:/tmp/ovlk/l\\134:col:/tmp/ovlk/l\\134\\054com,upperdir=/tmp/ovlk/u,workdir=/tmp/ovlk/w,uuid=on\n";

    #[test]
    fn space_in_mount_point_and_hash_in_source() {
        let entry = one_mountinfo(SPECIAL_CHARS);
        assert_eq!(entry.mount_point, Path::new("/tmp/ovlk/m nt"));
        assert_eq!(entry.source, "src#1");
        assert_eq!(keys(&entry.super_options), ["rw", "lowerdir", "upperdir", "workdir", "uuid"]);
    }

    #[test]
    fn escapes_in_option_value_are_decoded_after_the_comma_split() {
        let entry = one_mountinfo(SPECIAL_CHARS);
        // Tab, '#' (not escaped in option values), two backslashes, "\:" and "\," all survive as the
        // mounter wrote them; the ',' did not split the option.
        assert_eq!(
            entry.option("lowerdir"),
            Some(&opt(
                "lowerdir",
                Some("/tmp/ovlk/l 1:/tmp/ovlk/l\ttab:/tmp/ovlk/l#hash:/tmp/ovlk/l\\\\bs:/tmp/ovlk/l\\:col:/tmp/ovlk/l\\,com")
            ))
        );
    }

    #[test]
    fn newline_in_mount_point_and_non_utf8_byte_in_option() {
        // Real; the 0xff byte is raw in the kernel's output.
        let entry = one_mountinfo(b"105 59 0:50 / /tmp/ovlk/mnt\\012nl rw,relatime - overlay overlay rw,lowerdir=/tmp/ovlk/lnl\\012x:/tmp/ovlk/l\xffz,upperdir=/tmp/ovlk/u3,workdir=/tmp/ovlk/w3\n");
        assert_eq!(entry.mount_point, Path::new("/tmp/ovlk/mnt\nnl"));
        let lowerdir = entry.option("lowerdir").and_then(|o| o.value.as_deref());
        assert_eq!(lowerdir.map(OsStrExt::as_bytes), Some(&b"/tmp/ovlk/lnl\nx:/tmp/ovlk/l\xffz"[..]));
    }

    #[test]
    fn non_utf8_byte_in_mount_point() {
        let entry = one_mountinfo(b"108 59 0:52 / /tmp/ovlk/m\xffz rw,relatime - overlay overlay rw,lowerdir=/tmp/ovlk/lx,upperdir=/tmp/ovlk/u3,workdir=/tmp/ovlk/w3\n");
        assert_eq!(entry.mount_point, path(b"/tmp/ovlk/m\xffz"));

        let (entries, errors) = parse_proc_mounts(b"overlay /tmp/ovlk/m\xffz overlay rw,relatime,lowerdir=/tmp/ovlk/lx,upperdir=/tmp/ovlk/u3,workdir=/tmp/ovlk/w3 0 0\n");
        assert_eq!(errors, vec![]);
        assert_eq!(entries[0].mount_point, path(b"/tmp/ovlk/m\xffz"));
    }

    #[test]
    fn escaped_backslash_before_digits_is_decoded_once() {
        // A directory literally named `a\040b` is printed `a\134040b`.
        let entry = one_mountinfo(b"70 22 0:5 / /mnt/a\\134040b rw - tmpfs tmpfs rw");
        assert_eq!(entry.mount_point, Path::new("/mnt/a\\040b"));
        assert_eq!(decode_octal_escapes(b"\\134040"), b"\\040");
    }

    #[test]
    fn backslash_without_three_octal_digits_stays_literal() {
        assert_eq!(decode_octal_escapes(b"a\\b"), b"a\\b");
        assert_eq!(decode_octal_escapes(b"\\12"), b"\\12");
        assert_eq!(decode_octal_escapes(b"\\128"), b"\\128");
        assert_eq!(decode_octal_escapes(b"\\400"), b"\\400");
        assert_eq!(decode_octal_escapes(b"end\\"), b"end\\");
        assert_eq!(decode_octal_escapes(b"\\0401"), b" 1");
        assert_eq!(decode_octal_escapes(b"\\377"), b"\xff");
    }

    #[test]
    fn lowerdir_plus_repeated_in_order_with_escaped_comma() {
        // Real, mounted through fsopen/fsconfig (kernel 6.18); no source was given, so it shows "none".
        let entry = one_mountinfo(b"108 59 0:50 / /tmp/ovlk/m2 rw,relatime - overlay none rw,lowerdir+=/tmp/ovlk/l\\0401,lowerdir+=/tmp/ovlk/l:col,lowerdir+=/tmp/ovlk/l\\054com,datadir+=/tmp/ovlk/d1,datadir+=/tmp/ovlk/d2,upperdir=/tmp/ovlk/u2,workdir=/tmp/ovlk/w2,redirect_dir=on,uuid=on,metacopy=on\n");
        assert_eq!(entry.source, "none");
        assert_eq!(
            entry.super_options[..6],
            [
                opt("rw", None),
                opt("lowerdir+", Some("/tmp/ovlk/l 1")),
                opt("lowerdir+", Some("/tmp/ovlk/l:col")),
                opt("lowerdir+", Some("/tmp/ovlk/l,com")),
                opt("datadir+", Some("/tmp/ovlk/d1")),
                opt("datadir+", Some("/tmp/ovlk/d2")),
            ]
        );
        assert_eq!(entry.option("lowerdir+"), Some(&opt("lowerdir+", Some("/tmp/ovlk/l 1"))));
    }

    #[test]
    fn read_only_overlay_has_ro_superblock_under_rw_mount() {
        // Real: no upperdir, so the superblock is read-only while the mount itself says rw.
        let entry = one_mountinfo(b"113 59 0:52 / /tmp/ovlk/m3 rw,relatime - overlay overlay ro,lowerdir=/tmp/ovlk/lx:/tmp/ovlk/l#hash::/tmp/ovlk/d1::/tmp/ovlk/d2,redirect_dir=on,metacopy=on\n");
        assert_eq!(entry.mount_options[0], opt("rw", None));
        assert_eq!(entry.super_options[0], opt("ro", None));
        assert_eq!(entry.option("upperdir"), None);
    }

    #[test]
    fn empty_source_leaves_an_empty_field() {
        // Real: a mount made with an empty source prints two spaces in a row.
        let entry = one_mountinfo(b"104 59 0:50 / /tmp/ovlk/m2 rw,relatime - overlay  ro,lowerdir+=/tmp/ovlk/lx,lowerdir+=/tmp/ovlk/d1,redirect_dir=on\n");
        assert_eq!(entry.source, "");
        assert_eq!(entry.fs_type, "overlay");
        assert_eq!(entry.super_options.len(), 4);

        let (entries, errors) = parse_proc_mounts(b" /tmp/ovlk/m3 tmpfs rw,relatime 0 0\n");
        assert_eq!(errors, vec![]);
        assert_eq!(entries[0].source, "");
        assert_eq!(entries[0].mount_point, Path::new("/tmp/ovlk/m3"));
    }

    #[test]
    fn selinux_quoted_context_keeps_its_commas() {
        // The form SELinux prints for a context with an MLS category set (podman on Fedora).
        let entry = one_mountinfo(b"612 580 0:80 / /var/lib/containers/storage/overlay/3c1f/merged rw,nodev,relatime - overlay overlay rw,context=\"system_u:object_r:container_file_t:s0:c130,c854\",lowerdir=/var/lib/containers/storage/overlay/l/ABC,upperdir=/var/lib/containers/storage/overlay/3c1f/diff,workdir=/var/lib/containers/storage/overlay/3c1f/work");
        assert_eq!(keys(&entry.super_options), ["rw", "context", "lowerdir", "upperdir", "workdir"]);
        assert_eq!(
            entry.option("context"),
            Some(&opt("context", Some("\"system_u:object_r:container_file_t:s0:c130,c854\"")))
        );
    }

    #[test]
    fn quote_inside_a_path_does_not_swallow_commas() {
        let options = parse_options(b"rw,lowerdir=/a\"b,upperdir=/c\"d,workdir=/w");
        assert_eq!(
            options,
            vec![
                opt("rw", None),
                opt("lowerdir", Some("/a\"b")),
                opt("upperdir", Some("/c\"d")),
                opt("workdir", Some("/w")),
            ]
        );
    }

    #[test]
    fn equals_sign_splits_at_the_first_one() {
        assert_eq!(parse_options(b"lowerdir+=/a=b,x"), vec![opt("lowerdir+", Some("/a=b")), opt("x", None)]);
        assert_eq!(parse_options(b"k="), vec![opt("k", Some(""))]);
    }

    #[test]
    fn malformed_line_in_the_middle_keeps_the_others() {
        let text = b"22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                     23 27 0:22 / /sys rw,relatime proc proc rw\n\
                     24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334432k,nr_inodes=3083608,mode=755\n";
        let (entries, errors) = parse_mountinfo(text);
        let points: Vec<_> = entries.iter().map(|e| e.mount_point.clone()).collect();
        assert_eq!(points, [PathBuf::from("/proc"), PathBuf::from("/dev")]);
        assert_eq!(
            errors,
            vec![MountLineError {
                line: 2,
                reason: "missing the ' - ' separator after the optional fields".to_string(),
                text: "23 27 0:22 / /sys rw,relatime proc proc rw".to_string(),
            }]
        );
    }

    #[test]
    fn too_few_fields_is_an_error() {
        let (entries, errors) = parse_mountinfo(b"22 27 0:21 /\n");
        assert!(entries.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].reason.starts_with("too few fields (4)"));
    }

    #[test]
    fn wrong_field_count_after_separator_is_an_error() {
        let (_, errors) = parse_mountinfo(b"22 27 0:21 / /proc rw - proc proc\n");
        assert_eq!(errors[0].reason, "expected 3 fields after ' - ' (type, source, superblock options), found 2");
    }

    #[test]
    fn non_numeric_ids_are_errors() {
        let (_, errors) = parse_mountinfo(
            b"x 27 0:21 / /proc rw - proc proc rw\n22 -1 0:21 / /proc rw - proc proc rw\n22 27 0-21 / /proc rw - proc proc rw\n",
        );
        let reasons: Vec<_> = errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [
                (1, "mount id `x` is not a number"),
                (2, "parent id `-1` is not a number"),
                (3, "device `0-21` is not of the form MAJOR:MINOR"),
            ]
        );
    }

    #[test]
    fn proc_mounts_wrong_field_count_is_an_error() {
        let (entries, errors) = parse_proc_mounts(b"proc /proc proc rw,relatime 0 0\nsysfs /sys sysfs rw\n");
        assert_eq!(entries.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert_eq!(errors[0].reason, "expected 6 fields (source, mount point, type, options, dump, pass), found 4");
    }

    #[test]
    fn empty_text_and_trailing_newline_give_no_error() {
        assert_eq!(parse_mountinfo(b""), (vec![], vec![]));
        assert_eq!(parse_proc_mounts(b"\n"), (vec![], vec![]));
        let (entries, errors) = parse_mountinfo(b"22 27 0:21 / /proc rw,relatime - proc proc rw\n");
        assert_eq!((entries.len(), errors.len()), (1, 0));
    }

    #[test]
    fn long_bad_line_is_truncated_in_the_error() {
        let line = format!("{} no separator here", "x".repeat(500));
        let (_, errors) = parse_mountinfo(line.as_bytes());
        assert_eq!(errors[0].text.chars().count(), MountLineError::TEXT_LIMIT + 1);
        assert!(errors[0].text.ends_with('…'));
        assert!(errors[0].to_string().starts_with("mount table line 1: "));
    }

    #[test]
    fn option_returns_the_first_match_in_super_options() {
        let entry = one_mountinfo(b"1 0 0:1 / / rw,noatime - tmpfs tmpfs rw,size=1k,size=2k");
        assert_eq!(entry.option("size"), Some(&opt("size", Some("1k"))));
        assert_eq!(entry.option("noatime"), None);
    }
}

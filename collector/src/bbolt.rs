//! A small read-only reader of bbolt database files (containerd's `meta.db` and snapshotter
//! `metadata.db`, Podman's `bolt_state.db`), written from the file format, not from a library: the engine
//! that owns such a file holds an exclusive `flock` on it for as long as it runs, and the Rust bbolt
//! crates either wait for that lock or cannot read nested buckets yet. This reader takes no lock and never
//! writes.
//!
//! Format (bbolt `page.go`, `db.go`, `bucket.go`): the file is an array of pages of `page_size` bytes.
//! Every page starts with a 16-byte header `{id u64, flags u16, count u16, overflow u32}` (little endian;
//! flags `0x01` branch, `0x02` leaf, `0x04` meta, `0x10` freelist) and spans `overflow + 1` pages. Pages 0
//! and 1 are meta pages: after the header, `{magic u32 = 0xED0CDAED, version u32 = 2, page_size u32,
//! flags u32, root {pgid u64, sequence u64}, freelist u64, pgid u64, txid u64, checksum u64}`, where
//! `checksum` is FNV-1a 64 over the 56 bytes before it. The valid meta with the higher txid is current.
//! A branch page holds `count` elements `{pos u32, ksize u32, pgid u64}`, a leaf page `count` elements
//! `{flags u32, pos u32, ksize u32, vsize u32}`; `pos` is the offset of the key from the element itself,
//! the value follows the key. A leaf element with flag `0x01` is a nested bucket: its value is a bucket
//! header `{root u64, sequence u64}`, and when `root` is 0 the bucket is inline — a page (header and
//! elements) follows the header inside the value.
//!
//! Consistency without a lock: bbolt is copy-on-write, so the pages the current meta reaches are never
//! rewritten while that meta is current, but a commit during our read can reuse freed pages. The reader
//! therefore reads the pages it needs on demand (positioned reads, never the whole file), checks that the
//! meta it chose is still the current one when it is done, and retries when it is not or when a page does
//! not parse (a torn read).
//!
//! Bounded by construction, whatever the file holds: every page is read at most once (a page reached twice
//! means the file is not a tree: an error, not exponential work), and the entries and bytes taken from the
//! file are budgeted by its size (a valid file stores each key and value once), so a crafted file costs at
//! most time and memory in proportion to its size.

use crate::hostfs::{FileKind, HostReadError, StoreDir};
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const META_CHECKSUMMED: usize = 56;
const FLAG_BRANCH: u16 = 0x01;
const FLAG_LEAF: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
const ELEMENT: usize = 16;
/// Far deeper than any real tree (bbolt splits pages at half full); a bound against loops in a corrupt file.
const MAX_DEPTH: usize = 64;
const ATTEMPTS: usize = 5;

/// Why a bbolt file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    /// The file could not be opened, or was refused (a FIFO, a device, a symlink, too large).
    #[error("cannot read {0}")]
    Open(HostReadError),
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a bbolt database, or is damaged beyond what retrying fixes.
    #[error("{}: not a readable bbolt database: {why}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

impl BoltError {
    /// The finding code for this error: `metadata_refused` when the file was refused, else `fallback`.
    pub fn code<'a>(&self, fallback: &'a str) -> &'a str {
        match self {
            BoltError::Open(e) => e.code(fallback),
            _ => fallback,
        }
    }
}

/// A value or a nested bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A plain value.
    Value(Vec<u8>),
    /// A nested bucket.
    Bucket(Bucket),
}

/// A bucket, read completely: its keys in bbolt's (byte) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Entries by key.
    pub entries: BTreeMap<Vec<u8>, Node>,
}

impl Bucket {
    /// The nested bucket at `path` (each element a key below the previous bucket).
    pub fn bucket(&self, path: &[&[u8]]) -> Option<&Bucket> {
        let mut b = self;
        for key in path {
            match b.entries.get(*key)? {
                Node::Bucket(next) => b = next,
                Node::Value(_) => return None,
            }
        }
        Some(b)
    }

    /// The plain value under `key`.
    pub fn value(&self, key: &[u8]) -> Option<&[u8]> {
        match self.entries.get(key)? {
            Node::Value(v) => Some(v),
            Node::Bucket(_) => None,
        }
    }

    /// The value under `key` as UTF-8 text (lossily).
    pub fn text(&self, key: &[u8]) -> Option<String> {
        self.value(key).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Nested buckets, by key.
    pub fn buckets(&self) -> impl Iterator<Item = (&[u8], &Bucket)> {
        self.entries.iter().filter_map(|(k, n)| match n {
            Node::Bucket(b) => Some((k.as_slice(), b)),
            Node::Value(_) => None,
        })
    }
}

/// One consistent read of a bbolt file.
#[derive(Debug, Clone)]
pub struct BoltDb {
    /// The transaction the read saw.
    pub txid: u64,
    /// The root bucket.
    pub root: Bucket,
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    page_size: usize,
    root: u64,
    txid: u64,
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Where pages come from: a file read with positioned reads, or bytes already in memory.
trait Source {
    /// The size in bytes.
    fn size(&self) -> u64;
    /// `len` bytes at `offset`, which the caller has checked lie inside [`Source::size`].
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String>;
}

impl Source for &[u8] {
    fn size(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let start = usize::try_from(offset).map_err(|_| "offset overflows")?;
        let end = start.checked_add(len).ok_or("length overflows")?;
        Ok(self.get(start..end).ok_or("read beyond the end")?.to_vec())
    }
}

struct FileSource<'f> {
    file: &'f std::fs::File,
    len: u64,
}

impl Source for FileSource<'_> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| format!("read of {len} bytes at {offset}: {e}"))?;
        Ok(buf)
    }
}

/// The meta at byte `offset`, if its magic, version and checksum are right.
fn meta_at(src: &dyn Source, offset: u64) -> Result<Meta, String> {
    if offset + (PAGE_HEADER + 64) as u64 > src.size() {
        return Err("file too short for a meta page".into());
    }
    let page = src.read_at(offset, PAGE_HEADER + 64)?;
    let m = &page[PAGE_HEADER..];
    let word = |at| u32_at(m, at).unwrap_or(0);
    if word(0) != MAGIC {
        return Err(format!("bad magic {:#x}", word(0)));
    }
    if word(4) != VERSION {
        return Err(format!("unsupported version {}", word(4)));
    }
    let stored = u64_at(m, META_CHECKSUMMED).unwrap_or(0);
    let computed = fnv1a64(&m[..META_CHECKSUMMED]);
    if stored != computed {
        return Err(format!("meta checksum {stored:#x} does not match {computed:#x}"));
    }
    let page_size = word(8) as usize;
    if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("implausible page size {page_size}"));
    }
    Ok(Meta { page_size, root: u64_at(m, 16).unwrap_or(0), txid: u64_at(m, 48).unwrap_or(0) })
}

/// The current meta: the valid one of pages 0 and 1 with the higher txid. Page 1 sits at `page_size`,
/// which is only known from page 0 — or, when page 0 is torn, guessed from the common sizes.
fn current_meta(src: &dyn Source) -> Result<Meta, String> {
    let first = meta_at(src, 0);
    let sizes: Vec<usize> = match &first {
        Ok(m) => vec![m.page_size],
        Err(_) => vec![4096, 8192, 16384, 65536],
    };
    let second = sizes
        .iter()
        .map(|&s| meta_at(src, s as u64))
        .find(Result::is_ok)
        .unwrap_or_else(|| meta_at(src, sizes[0] as u64));
    match (first, second) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(a), Err(b)) => Err(format!("no valid meta page (page 0: {a}; page 1: {b})")),
    }
}

struct Reader<'a> {
    src: &'a dyn Source,
    page_size: usize,
    /// Pages read so far: each page of a tree is reached once.
    visited: HashSet<u64>,
    /// Elements that may still be visited, and bytes that may still be taken, before the file is declared
    /// to hold more than its size allows.
    elements_left: u64,
    bytes_left: u64,
}

impl Reader<'_> {
    fn new(src: &dyn Source, page_size: usize) -> Reader<'_> {
        let len = src.size();
        Reader {
            src,
            page_size,
            visited: HashSet::new(),
            elements_left: len / ELEMENT as u64 + 1024,
            bytes_left: len.saturating_mul(2).saturating_add(1 << 20),
        }
    }

    /// The bytes of page `id`, overflow pages included; each page only once.
    fn page(&mut self, id: u64) -> Result<Vec<u8>, String> {
        if !self.visited.insert(id) {
            return Err(format!("page {id} is reached twice: the file is not a tree (damaged or crafted)"));
        }
        let ps = self.page_size as u64;
        let start = id.checked_mul(ps).ok_or("page id overflows")?;
        if start.checked_add(PAGE_HEADER as u64).is_none_or(|end| end > self.src.size()) {
            return Err(format!("page {id} is beyond the file"));
        }
        let head = self.src.read_at(start, PAGE_HEADER)?;
        let stored_id = u64_at(&head, 0).unwrap_or(u64::MAX);
        if stored_id != id {
            return Err(format!("page {id} says it is page {stored_id}"));
        }
        let overflow = u64::from(u32_at(&head, 12).unwrap_or(0));
        let len = (overflow + 1).checked_mul(ps).ok_or("overflow count overflows")?;
        if start.checked_add(len).is_none_or(|end| end > self.src.size()) {
            return Err(format!("page {id} (+{overflow} overflow) is beyond the file"));
        }
        self.src.read_at(start, usize::try_from(len).map_err(|_| "page too large")?)
    }

    fn take(&mut self, elements: u64, bytes: u64) -> Result<(), String> {
        match (self.elements_left.checked_sub(elements), self.bytes_left.checked_sub(bytes)) {
            (Some(e), Some(b)) => {
                self.elements_left = e;
                self.bytes_left = b;
                Ok(())
            }
            _ => Err("the tree holds more than a file of this size can: damaged or crafted".into()),
        }
    }

    /// Every entry reachable from the page `page` (a branch or leaf page, or an inline bucket's page).
    fn collect(&mut self, page: &[u8], depth: usize, out: &mut Bucket) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("tree deeper than any real database: a loop?".into());
        }
        let flags = u16_at(page, 8).ok_or("page header truncated")?;
        let count = usize::from(u16_at(page, 10).ok_or("page header truncated")?);
        for i in 0..count {
            self.take(1, 0)?;
            let at = PAGE_HEADER + i * ELEMENT;
            let elem = page.get(at..at + ELEMENT).ok_or("element beyond its page")?;
            if flags & FLAG_BRANCH != 0 {
                let child = u64_at(elem, 8).unwrap_or(0);
                let child_page = self.page(child)?;
                self.collect(&child_page, depth + 1, out)?;
            } else if flags & FLAG_LEAF != 0 {
                let eflags = u32_at(elem, 0).unwrap_or(0);
                let pos = u32_at(elem, 4).unwrap_or(0) as usize;
                let ksize = u32_at(elem, 8).unwrap_or(0) as usize;
                let vsize = u32_at(elem, 12).unwrap_or(0) as usize;
                let kstart = at.checked_add(pos).ok_or("key offset overflows")?;
                let kend = kstart.checked_add(ksize).ok_or("key size overflows")?;
                let vend = kend.checked_add(vsize).ok_or("value size overflows")?;
                let key = page.get(kstart..kend).ok_or("key beyond its page")?;
                let value = page.get(kend..vend).ok_or("value beyond its page")?;
                self.take(0, (ksize + vsize) as u64)?;
                let node = if eflags & BUCKET_LEAF != 0 {
                    Node::Bucket(self.bucket(value, depth + 1)?)
                } else {
                    Node::Value(value.to_vec())
                };
                out.entries.insert(key.to_vec(), node);
            } else {
                return Err(format!("page with flags {flags:#x} where a branch or leaf page was expected"));
            }
        }
        Ok(())
    }

    /// A nested bucket from its value: a header, then (inline) its page.
    fn bucket(&mut self, value: &[u8], depth: usize) -> Result<Bucket, String> {
        let root = u64_at(value, 0).ok_or("bucket header truncated")?;
        let mut b = Bucket::default();
        if root == 0 {
            let inline = value.get(16..).unwrap_or_default();
            if inline.len() >= PAGE_HEADER {
                self.collect(inline, depth, &mut b)?;
            }
        } else {
            let page = self.page(root)?;
            self.collect(&page, depth, &mut b)?;
        }
        Ok(b)
    }
}

fn parse_source(src: &dyn Source) -> Result<BoltDb, String> {
    let meta = current_meta(src)?;
    let mut reader = Reader::new(src, meta.page_size);
    let mut root = Bucket::default();
    let page = reader.page(meta.root)?;
    reader.collect(&page, 0, &mut root)?;
    Ok(BoltDb { txid: meta.txid, root })
}

/// Parses a whole bbolt file held in memory.
pub fn parse(file: &[u8]) -> Result<BoltDb, String> {
    parse_source(&file)
}

/// Reads the bbolt file at `path` under the store `dir` without locking it, page by page, retrying while a
/// commit tears the read. The file is opened as every metadata file is ([`StoreDir::open_file`]).
pub fn read_in(dir: &StoreDir, path: &Path) -> Result<BoltDb, BoltError> {
    let (file, _) = dir.open_file(path, FileKind::Database).map_err(BoltError::Open)?;
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
        }
        // The size is taken again on each attempt: a commit may have grown the file.
        let len = file.metadata().map_err(|source| BoltError::Io { path: path.to_owned(), source })?.len();
        let cap = dir.cap(FileKind::Database);
        if len > cap {
            return Err(BoltError::Open(HostReadError::Refused {
                path: path.to_owned(),
                why: format!("{len} bytes, more than the {cap} bytes such a file may hold here"),
            }));
        }
        let src = FileSource { file: &file, len };
        match parse_source(&src) {
            Ok(db) => {
                // A commit after our read began may have reused pages we read: the meta must not have moved.
                if current_meta(&src).is_ok_and(|m| m.txid == db.txid) {
                    return Ok(db);
                }
                last = "the database changed while it was read".into();
            }
            Err(why) => last = why,
        }
    }
    Err(BoltError::Format { path: path.to_owned(), why: format!("{last} (after {ATTEMPTS} attempts)") })
}

/// Reads the bbolt file at `path` (its directory taken as the store), as [`read_in`] does.
pub fn read(path: &Path) -> Result<BoltDb, BoltError> {
    let io = |source| BoltError::Io { path: path.to_owned(), source };
    let path = &std::env::current_dir().map_err(io)?.join(path);
    let dir = StoreDir::open(path.parent().unwrap_or(Path::new("/"))).map_err(io)?;
    read_in(&dir, path)
}

/// An unsigned varint (Go's `binary.Uvarint`), as containerd stores ids.
pub fn uvarint(b: &[u8]) -> Option<u64> {
    let mut x: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(x);
        }
    }
    None
}

/// A signed varint (Go's `binary.Varint`, zig-zag), as containerd stores sizes.
pub fn varint(b: &[u8]) -> Option<i64> {
    let u = uvarint(b)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 4096;

    /// Builds a page by hand, as bbolt lays it out.
    fn page(id: u64, flags: u16, elements: &[(u32, &[u8], &[u8])], overflow: u32) -> Vec<u8> {
        let mut p = vec![0u8; PS * (overflow as usize + 1)];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&flags.to_le_bytes());
        p[10..12].copy_from_slice(&(elements.len() as u16).to_le_bytes());
        p[12..16].copy_from_slice(&overflow.to_le_bytes());
        let mut data = PAGE_HEADER + elements.len() * ELEMENT;
        for (i, (eflags, k, v)) in elements.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            let pos = (data - at) as u32;
            if flags == FLAG_BRANCH {
                p[at..at + 4].copy_from_slice(&pos.to_le_bytes());
                p[at + 4..at + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
                p[at + 8..at + 16].copy_from_slice(v);
            } else {
                p[at..at + 4].copy_from_slice(&eflags.to_le_bytes());
                p[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
                p[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
                p[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            }
            p[data..data + k.len()].copy_from_slice(k);
            data += k.len();
            if flags != FLAG_BRANCH {
                p[data..data + v.len()].copy_from_slice(v);
                data += v.len();
            }
        }
        p
    }

    fn meta(id: u64, root: u64, txid: u64) -> Vec<u8> {
        let mut p = vec![0u8; PS];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&0x04u16.to_le_bytes());
        let m = &mut p[PAGE_HEADER..];
        m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        m[4..8].copy_from_slice(&VERSION.to_le_bytes());
        m[8..12].copy_from_slice(&(PS as u32).to_le_bytes());
        m[16..24].copy_from_slice(&root.to_le_bytes());
        m[32..40].copy_from_slice(&2u64.to_le_bytes());
        m[48..56].copy_from_slice(&txid.to_le_bytes());
        // The FNV-1a 64 offset basis and prime, applied by hand, independent of fnv1a64 above.
        let mut h: u64 = 14_695_981_039_346_656_037;
        for &b in &m[..56] {
            h = (h ^ u64::from(b)).wrapping_mul(1_099_511_628_211);
        }
        m[56..64].copy_from_slice(&h.to_le_bytes());
        p
    }

    fn header(root: u64) -> Vec<u8> {
        let mut h = root.to_le_bytes().to_vec();
        h.extend_from_slice(&0u64.to_le_bytes());
        h
    }

    /// Root (branch, page 3) -> two leaves (4, 5); leaf 5 holds a bucket on page 6 and an inline bucket.
    fn fixture(meta0_txid: u64, meta1_txid: u64) -> Vec<u8> {
        let mut inline = header(0);
        inline.extend(page(0, FLAG_LEAF, &[(0, b"k", b"inline value")], 0).into_iter().take(64));
        let b6 = header(6);
        let mut file = Vec::new();
        file.extend(meta(0, 3, meta0_txid));
        file.extend(meta(1, 3, meta1_txid));
        file.extend(vec![0u8; PS]); // freelist page, unused here
        file.extend(page(3, FLAG_BRANCH, &[(0, b"a", &4u64.to_le_bytes()), (0, b"m", &5u64.to_le_bytes())], 0));
        file.extend(page(4, FLAG_LEAF, &[(0, b"a", b"1"), (0, b"b", b"2")], 0));
        file.extend(page(5, FLAG_LEAF, &[(BUCKET_LEAF, b"m", &b6), (BUCKET_LEAF, b"n", &inline)], 0));
        let big = vec![7u8; PS + 100];
        file.extend(page(6, FLAG_LEAF, &[(0, b"big", &big)], 1));
        file
    }

    #[test]
    fn reads_branches_leaves_nested_inline_and_overflow() {
        let db = parse(&fixture(4, 5)).expect("parses");
        assert_eq!(db.txid, 5);
        assert_eq!(db.root.value(b"a"), Some(&b"1"[..]));
        assert_eq!(db.root.value(b"b"), Some(&b"2"[..]));
        assert_eq!(db.root.bucket(&[b"m"]).and_then(|b| b.value(b"big")).map(<[u8]>::len), Some(PS + 100));
        assert_eq!(db.root.bucket(&[b"n"]).and_then(|b| b.value(b"k")), Some(&b"inline value"[..]));
        assert_eq!(db.root.bucket(&[b"a"]), None, "a value is not a bucket");
    }

    #[test]
    fn a_torn_meta_falls_back_to_the_other() {
        let mut file = fixture(9, 5);
        file[PAGE_HEADER + 50] ^= 0xff; // txid of meta 0 changes, its checksum no longer matches
        assert_eq!(parse(&file).expect("meta 1 still valid").txid, 5);
        file[PS + PAGE_HEADER + 20] ^= 0xff;
        let err = parse(&file).expect_err("both metas torn");
        assert!(err.contains("no valid meta page"), "{err}");
    }

    #[test]
    fn a_page_pointing_outside_the_file_is_an_error_not_a_panic() {
        let mut file = fixture(1, 2);
        file.truncate(6 * PS);
        assert!(parse(&file).expect_err("page 6 missing").contains("beyond the file"));
    }

    /// Meta pages and an empty freelist page, then `pages` from page 3 on; the root is page 3.
    fn file_of(pages: &[Vec<u8>]) -> Vec<u8> {
        let mut file = Vec::new();
        file.extend(meta(0, 3, 1));
        file.extend(meta(1, 3, 2));
        file.extend(vec![0u8; PS]);
        for p in pages {
            file.extend(p);
        }
        file
    }

    #[test]
    fn a_page_reached_twice_is_an_error_not_exponential_work() {
        // Branch page 3 names leaf page 4 twice: in a 2^n DAG the same happens at every level.
        let dag = file_of(&[
            page(3, FLAG_BRANCH, &[(0, b"a", &4u64.to_le_bytes()), (0, b"b", &4u64.to_le_bytes())], 0),
            page(4, FLAG_LEAF, &[(0, b"a", b"1")], 0),
        ]);
        assert!(parse(&dag).expect_err("a DAG").contains("reached twice"));
        // Two buckets sharing one root page: the nested-bucket DAG.
        let buckets = file_of(&[
            page(3, FLAG_LEAF, &[(BUCKET_LEAF, b"x", &header(4)), (BUCKET_LEAF, b"y", &header(4))], 0),
            page(4, FLAG_LEAF, &[(0, b"k", b"v")], 0),
        ]);
        assert!(parse(&buckets).expect_err("a DAG").contains("reached twice"));
    }

    /// An inline bucket whose page has `fanout` elements all pointing at one nested inline bucket, `levels`
    /// deep: a few kilobytes that would stand for fanout^levels entries.
    fn inline_tower(levels: usize, fanout: usize) -> Vec<u8> {
        let mut value = header(0);
        value.extend(page(0, FLAG_LEAF, &[(0, b"k", b"v")], 0).into_iter().take(PAGE_HEADER + ELEMENT + 2));
        for _ in 0..levels {
            let mut p = vec![0u8; PAGE_HEADER + fanout * ELEMENT];
            p[8..10].copy_from_slice(&FLAG_LEAF.to_le_bytes());
            p[10..12].copy_from_slice(&(fanout as u16).to_le_bytes());
            let data = p.len();
            for i in 0..fanout {
                let at = PAGE_HEADER + i * ELEMENT;
                p[at..at + 4].copy_from_slice(&BUCKET_LEAF.to_le_bytes());
                p[at + 4..at + 8].copy_from_slice(&((data - at) as u32).to_le_bytes());
                p[at + 8..at + 12].copy_from_slice(&1u32.to_le_bytes());
                p[at + 12..at + 16].copy_from_slice(&(value.len() as u32).to_le_bytes());
            }
            p.push(b'k');
            p.extend(&value);
            value = header(0);
            value.extend(p);
        }
        value
    }

    #[test]
    fn shared_inline_buckets_are_bounded_by_the_files_size() {
        let tower = inline_tower(40, 2);
        assert!(tower.len() < PS - 64, "the crafted value fits one page ({} bytes)", tower.len());
        let file = file_of(&[page(3, FLAG_LEAF, &[(BUCKET_LEAF, b"t", &tower)], 0)]);
        let err = parse(&file).expect_err("2^40 entries from a 16 KiB file");
        assert!(err.contains("more than a file of this size can"), "{err}");
        // A few levels are within budget and read as what they are.
        let small = file_of(&[page(3, FLAG_LEAF, &[(BUCKET_LEAF, b"t", &inline_tower(2, 2))], 0)]);
        let db = parse(&small).expect("small tower parses");
        assert_eq!(db.root.bucket(&[b"t", b"k", b"k"]).and_then(|b| b.value(b"k")), Some(&b"v"[..]));
    }

    #[test]
    fn a_file_is_read_from_disk_page_by_page() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("meta.db");
        let mut bytes = fixture(4, 5);
        // Padding the file adds nothing to read: only reachable pages are.
        bytes.resize(bytes.len() + 64 * PS, 0);
        std::fs::write(&path, &bytes).expect("write");
        let db = read(&path).expect("reads");
        assert_eq!(db.txid, 5);
        assert_eq!(db.root.bucket(&[b"n"]).and_then(|b| b.value(b"k")), Some(&b"inline value"[..]));
    }

    #[test]
    fn varints_decode_as_go_writes_them() {
        // binary.PutUvarint(300) = ac 02; binary.PutVarint(-3) = 05; PutVarint(1984132) = 88 9a f2 01.
        assert_eq!(uvarint(&[0xac, 0x02]), Some(300));
        assert_eq!(varint(&[0x05]), Some(-3));
        assert_eq!(varint(&[0x88, 0x9a, 0xf2, 0x01]), Some(1_984_132));
    }
}

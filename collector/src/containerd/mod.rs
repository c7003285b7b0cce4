//! containerd's overlayfs snapshotter and metadata store, read from its root (`/var/lib/containerd`, or
//! `<docker-root>/containerd/daemon` when dockerd runs its own): Docker 29's default image store, and
//! every Kubernetes node running containerd.
//!
//! Layout (containerd `snapshots/overlay`, `snapshots/storage/bolt.go`, `metadata/buckets.go`):
//! - `io.containerd.snapshotter.v1.overlayfs/snapshots/<n>/{fs,work}`: one directory per snapshot, `fs` its
//!   layer (for an active snapshot, the overlay upperdir);
//! - `io.containerd.snapshotter.v1.overlayfs/metadata.db` (bbolt): `v1/snapshots/<backend key>/` with `id`
//!   (uvarint: the `<n>` above), `kind` (1 view, 2 active, 3 committed), `parent` (backend key), `size` and
//!   `inodes` (varints, recorded at commit);
//! - `io.containerd.metadata.v1.bolt/meta.db` (bbolt): `v1/<namespace>/` with `images/<name>/target/
//!   digest`, `containers/<id>/{image, snapshotter, snapshotKey, labels/}` and `snapshots/<snapshotter>/
//!   <key>/{name, parent}`, where `name` is the backend key `<namespace>/<n>/<key>`. Image layers are keyed by
//!   ChainID, a container's writable snapshot by the container id;
//! - `io.containerd.content.v1.content/blobs/sha256/<hex>`: manifests and image configs (`rootfs.diff_ids`).
//!
//! A running containerd holds an exclusive lock on both databases; they are read without it (see
//! [`crate::bbolt`]). The snapshotter's size of a snapshot (`ctr snapshots usage`, and Docker 29's `SizeRw`)
//! is `st_blocks × 512` over every entry, directories and the root included, each inode once: ovlaudit's
//! `allocated_bytes`.

mod engine;

use crate::bbolt::{self, Bucket};
use crate::finding::Findings;
use crate::hostfs::{FileKind, StoreDir};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The snapshotter's directory under the root.
pub const SNAPSHOTTER: &str = "io.containerd.snapshotter.v1.overlayfs";
const META_DB: &str = "io.containerd.metadata.v1.bolt/meta.db";
const BLOBS: &str = "io.containerd.content.v1.content/blobs/sha256";

/// One snapshot as the snapshotter records it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its directory number under `snapshots/`.
    pub id: u64,
    /// 1 view, 2 active, 3 committed.
    pub kind: u8,
    /// The parent's backend key.
    pub parent: Option<String>,
    /// Recorded size (committed snapshots).
    pub size: Option<u64>,
}

/// A container record of one namespace.
#[derive(Debug, Clone)]
pub struct Container {
    /// Id.
    pub id: String,
    /// Image name.
    pub image: String,
    /// Snapshotter name.
    pub snapshotter: String,
    /// The snapshot key of its writable layer.
    pub snapshot_key: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time, as stored (RFC 3339 text when readable).
    pub created: Option<String>,
    /// The container's log file as containerd's CRI plugin records it (`LogPath` of the extension
    /// `io.cri-containerd.container.metadata`: the kubelet's `/var/log/pods/…/<n>.log`).
    pub cri_log_path: Option<String>,
}

/// The extension where containerd's CRI plugin keeps a container's metadata.
const CRI_CONTAINER_METADATA: &[u8] = b"io.cri-containerd.container.metadata";

/// `LogPath` from a CRI container metadata extension: a protobuf `Any` (field 1 the type URL, field 2 the
/// value) whose value is JSON `{"Version": "v1", "Metadata": {…, "LogPath": "…"}}`.
pub fn cri_log_path(any: &[u8]) -> Option<String> {
    let mut rest = any;
    let mut value = None;
    while !rest.is_empty() {
        let (key, n) = uvarint(rest)?;
        rest = &rest[n..];
        match key & 7 {
            // Length-delimited: the type URL (1) or the value (2).
            2 => {
                let (len, n) = uvarint(rest)?;
                let len = usize::try_from(len).ok()?;
                let body = rest.get(n..n.checked_add(len)?)?;
                if key >> 3 == 2 {
                    value = Some(body);
                }
                rest = &rest[n + len..];
            }
            0 => rest = &rest[uvarint(rest)?.1..],
            _ => return None,
        }
    }
    let doc: serde_json::Value = serde_json::from_slice(value?).ok()?;
    doc["Metadata"]["LogPath"].as_str().filter(|p| !p.is_empty()).map(str::to_owned)
}

/// A protobuf varint and how many bytes it took.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// One namespace of the metadata store.
#[derive(Debug, Clone, Default)]
pub struct Namespace {
    /// Image name → target (manifest or index) digest.
    pub images: BTreeMap<String, String>,
    /// Containers by id.
    pub containers: BTreeMap<String, Container>,
    /// Snapshot key → (backend key, parent key) for the overlayfs snapshotter.
    pub snapshots: BTreeMap<String, (String, Option<String>)>,
}

/// Everything read from one containerd root.
#[derive(Debug)]
pub struct ContainerdStore {
    /// Where this process reads the root.
    pub path: PathBuf,
    /// The root as the host names it.
    pub host_path: PathBuf,
    /// Snapshots by backend key.
    pub snapshots: BTreeMap<String, Snapshot>,
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Snapshot directory number → backend key.
    pub by_id: HashMap<u64, String>,
    /// Whether the metadata store could be read: orphans are held back when not.
    pub meta_ok: bool,
    /// The root, held open: every database, blob and snapshot directory is reached through it.
    pub dir: std::sync::Arc<StoreDir>,
    /// For a root nested in a container of another engine (a kind node): that container.
    pub nested_in: Option<crate::report::NestedIn>,
}

/// The default roots under `root` that hold an overlayfs snapshotter.
pub fn default_roots(root: &Path, docker_root: &Path) -> Vec<PathBuf> {
    [PathBuf::from("/var/lib/containerd"), docker_root.join("containerd/daemon")]
        .into_iter()
        .filter(|p| crate::hostfs::under_root(root, p).join(SNAPSHOTTER).join("metadata.db").exists())
        .collect()
}

fn text(b: &Bucket, key: &[u8]) -> String {
    b.text(key).unwrap_or_default()
}

fn labels(b: &Bucket) -> BTreeMap<String, String> {
    b.bucket(&[b"labels"])
        .map(|l| {
            l.entries.keys().map(|k| (String::from_utf8_lossy(k).into_owned(), l.text(k).unwrap_or_default())).collect()
        })
        .unwrap_or_default()
}

impl ContainerdStore {
    /// Reads both databases of the root at `path` (host name `host_path`). Fails only when there is no
    /// readable overlayfs snapshotter database; a metadata store that cannot be read is a finding.
    pub fn open(path: &Path, host_path: &Path, findings: &mut Findings) -> Result<ContainerdStore, String> {
        let snap_db = path.join(SNAPSHOTTER).join("metadata.db");
        let dir = StoreDir::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{}: no such directory", path.display()),
            _ => format!("{}: {e}", path.display()),
        })?;
        let db = match bbolt::read_in(&dir, &snap_db) {
            Ok(db) => db,
            Err(bbolt::BoltError::Open(e)) if e.is_not_found() => {
                return Err(format!(
                    "{}: not a containerd root with the overlayfs snapshotter (no {SNAPSHOTTER}/metadata.db)",
                    path.display()
                ))
            }
            Err(e) => return Err(e.to_string()),
        };
        let snapshots = snapshots_of(&db);
        let by_id = snapshots.iter().map(|(k, s)| (s.id, k.clone())).collect();

        let meta_path = path.join(META_DB);
        let mut namespaces = BTreeMap::new();
        let meta_ok = match bbolt::read_in(&dir, &meta_path) {
            Ok(meta) => {
                namespaces = namespaces_of(&meta);
                true
            }
            Err(e) => {
                findings.error(
                    e.code("engine_metadata_unreadable"),
                    format!("{e}; containers and images are not known"),
                    Some(&host_path.join(META_DB)),
                );
                false
            }
        };
        Ok(ContainerdStore {
            path: path.to_owned(),
            host_path: host_path.to_owned(),
            snapshots,
            namespaces,
            by_id,
            meta_ok,
            dir: dir.into(),
            nested_in: None,
        })
    }

    /// Host path of snapshot `id`'s directory.
    pub fn host_snapshot_dir(&self, id: u64) -> PathBuf {
        self.host_path.join(SNAPSHOTTER).join("snapshots").join(id.to_string())
    }

    /// Where this process reads snapshot `id`'s directory.
    pub fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.path.join(SNAPSHOTTER).join("snapshots").join(id.to_string())
    }

    /// The snapshot a host path names (`…/snapshots/<n>/fs`).
    pub fn snapshot_of(&self, host_path: &Path) -> Option<u64> {
        let rel = host_path.strip_prefix(self.host_path.join(SNAPSHOTTER).join("snapshots")).ok()?;
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        match parts.as_slice() {
            [n, "fs"] => n.parse().ok(),
            _ => None,
        }
    }

    /// The image config's DiffIDs for a target (manifest or index) digest, from the content store. Only
    /// well-formed `sha256:<64 hex>` digests become blob paths; an index entry is chosen as containerd's
    /// own platform matcher chooses it (this host's OS, architecture and variant), never by position.
    pub fn diff_ids(&self, target: &str) -> Option<Vec<String>> {
        let blob = |digest: &str| -> Option<serde_json::Value> {
            if !crate::digest::is_sha256_digest(digest) {
                return None;
            }
            let hex = digest.strip_prefix("sha256:")?;
            serde_json::from_slice(&self.dir.read(&self.path.join(BLOBS).join(hex), FileKind::Record).ok()?).ok()
        };
        let mut doc = blob(target)?;
        if let Some(manifests) = doc["manifests"].as_array() {
            let pick = manifests.iter().find(|m| platform_matches(&m["platform"], std::env::consts::ARCH))?;
            doc = blob(pick["digest"].as_str()?)?;
        }
        let config = blob(doc["config"]["digest"].as_str()?)?;
        Some(config["rootfs"]["diff_ids"].as_array()?.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect())
    }
}

/// The snapshotter's records from its database (`metadata.db`): `v1/snapshots/<backend key>/`.
pub fn snapshots_of(db: &bbolt::BoltDb) -> BTreeMap<String, Snapshot> {
    let mut snapshots = BTreeMap::new();
    for (key, b) in db.root.bucket(&[b"v1", b"snapshots"]).map(|b| b.buckets().collect::<Vec<_>>()).unwrap_or_default()
    {
        let Some(id) = b.value(b"id").and_then(bbolt::uvarint) else { continue };
        snapshots.insert(
            String::from_utf8_lossy(key).into_owned(),
            Snapshot {
                id,
                kind: b.value(b"kind").and_then(|k| k.first().copied()).unwrap_or(0),
                parent: b.text(b"parent").filter(|p| !p.is_empty()),
                size: b.value(b"size").and_then(bbolt::varint).and_then(|s| u64::try_from(s).ok()),
            },
        );
    }
    snapshots
}

/// Every namespace's images, containers and snapshot references from the metadata store (`meta.db`).
pub fn namespaces_of(meta: &bbolt::BoltDb) -> BTreeMap<String, Namespace> {
    let mut namespaces = BTreeMap::new();
    for (ns, nb) in meta.root.bucket(&[b"v1"]).map(|b| b.buckets().collect::<Vec<_>>()).unwrap_or_default() {
        namespaces.insert(String::from_utf8_lossy(ns).into_owned(), read_namespace(nb));
    }
    namespaces
}

/// Whether an index entry's platform is one containerd's default matcher takes on a host of `arch` (Rust's
/// name): Linux, the same architecture, and a variant the host runs (containerd normalises arm64 to `v8`,
/// and takes amd64 entries without a variant or with `v1`, the baseline every amd64 CPU runs).
fn platform_matches(p: &serde_json::Value, arch: &str) -> bool {
    let (want, variants): (&str, &[&str]) = match arch {
        "x86_64" => ("amd64", &["", "v1"]),
        "aarch64" => ("arm64", &["", "v8"]),
        "x86" => ("386", &[""]),
        other => (other, &[""]),
    };
    let variant = p["variant"].as_str().unwrap_or("");
    p["os"] == "linux" && p["architecture"] == want && variants.contains(&variant)
}

fn read_namespace(nb: &Bucket) -> Namespace {
    let mut ns = Namespace::default();
    for (name, ib) in nb.bucket(&[b"images"]).map(|b| b.buckets().collect::<Vec<_>>()).unwrap_or_default() {
        let digest = ib.bucket(&[b"target"]).map(|t| text(t, b"digest")).unwrap_or_default();
        ns.images.insert(String::from_utf8_lossy(name).into_owned(), digest);
    }
    for (id, cb) in nb.bucket(&[b"containers"]).map(|b| b.buckets().collect::<Vec<_>>()).unwrap_or_default() {
        let id = String::from_utf8_lossy(id).into_owned();
        ns.containers.insert(
            id.clone(),
            Container {
                id,
                image: text(cb, b"image"),
                snapshotter: text(cb, b"snapshotter"),
                snapshot_key: text(cb, b"snapshotKey"),
                labels: labels(cb),
                created: cb.value(b"createdat").and_then(go_time),
                cri_log_path: cb
                    .bucket(&[b"extensions"])
                    .and_then(|e| e.value(CRI_CONTAINER_METADATA))
                    .and_then(cri_log_path),
            },
        );
    }
    for (key, sb) in
        nb.bucket(&[b"snapshots", b"overlayfs"]).map(|b| b.buckets().collect::<Vec<_>>()).unwrap_or_default()
    {
        ns.snapshots.insert(
            String::from_utf8_lossy(key).into_owned(),
            (text(sb, b"name"), sb.text(b"parent").filter(|p| !p.is_empty())),
        );
    }
    ns
}

/// A Go `time.Time` in its binary form (`MarshalBinary`, version 1 or 2: seconds since year 1 as a big
/// endian i64 at byte 1, nanoseconds as u32 at byte 9), as RFC 3339 UTC.
fn go_time(b: &[u8]) -> Option<String> {
    if !matches!(b.first(), Some(1 | 2)) || b.len() < 15 {
        return None;
    }
    let secs = i64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    // Seconds from 0001-01-01 to 1970-01-01.
    let unix = secs.checked_sub(62_135_596_800)?;
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).ok()?);
    Some(crate::scan::rfc3339(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;

    #[test]
    fn cri_log_path_comes_from_the_metadata_extension() {
        let json =
            br#"{"Version":"v1","Metadata":{"ID":"c1","Name":"app","LogPath":"/var/log/pods/ns_p_u/app/0.log"}}"#;
        let url = b"types.containerd.io/github.com/containerd/containerd/pkg/cri/store/container/Metadata";
        let mut any = vec![0x0a, url.len() as u8];
        any.extend_from_slice(url);
        // The value's length as a two-byte varint.
        any.extend_from_slice(&[0x12, 0x80 | (json.len() as u8 & 0x7f), (json.len() >> 7) as u8]);
        any.extend_from_slice(json);
        assert_eq!(cri_log_path(&any).as_deref(), Some("/var/log/pods/ns_p_u/app/0.log"));
        assert_eq!(cri_log_path(&any[..any.len() - 1]), None, "a cut value");
        assert_eq!(cri_log_path(&[0x12, 0x02, b'{', b'}']), None, "no LogPath");
        assert_eq!(cri_log_path(&[0x0b]), None, "a wire type that is not there");
    }

    /// A store with only a content store, for [`ContainerdStore::diff_ids`].
    fn store_with_blobs(dir: &Path, blobs: &[&str]) -> (ContainerdStore, Vec<String>) {
        let b = dir.join(BLOBS);
        std::fs::create_dir_all(&b).expect("mkdir");
        let mut digests = Vec::new();
        for blob in blobs {
            let d = sha256_digest(blob.as_bytes());
            std::fs::write(b.join(d.trim_start_matches("sha256:")), blob).expect("write");
            digests.push(d);
        }
        let store = ContainerdStore {
            path: dir.to_owned(),
            host_path: dir.to_owned(),
            snapshots: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            by_id: HashMap::new(),
            meta_ok: true,
            dir: StoreDir::open(dir).expect("open").into(),
            nested_in: None,
        };
        (store, digests)
    }

    #[test]
    fn an_index_entry_is_chosen_by_platform_and_variant_and_bad_digests_open_nothing() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let diff = format!("sha256:{}", "d".repeat(64));
        let config = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#);
        let (_, d) = store_with_blobs(tmp.path(), &[&config]);
        let manifest = format!(r#"{{"config":{{"digest":"{}"}}}}"#, d[0]);
        let (_, m) = store_with_blobs(tmp.path(), &[&manifest]);
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        // First, entries containerd's matcher skips: a variant this host does not run, pointing at a device
        // through a crafted digest, and the other architecture.
        let index = format!(
            r#"{{"manifests":[
              {{"digest":"sha256:../../../../../../dev/zero","platform":{{"os":"linux","architecture":"{arch}","variant":"v9"}}}},
              {{"digest":"sha256:../../../../../../dev/zero","platform":{{"os":"linux","architecture":"s390x"}}}},
              {{"digest":"{}","platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#,
            m[0]
        );
        let (store, i) = store_with_blobs(tmp.path(), &[&index]);
        assert_eq!(store.diff_ids(&i[0]), Some(vec![diff]));
        // An index whose only matching entry has a crafted digest yields nothing, and opens nothing.
        let bad = format!(
            r#"{{"manifests":[{{"digest":"sha256:../../../../../../dev/zero","platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#
        );
        let (store, b) = store_with_blobs(tmp.path(), &[&bad]);
        assert_eq!(store.diff_ids(&b[0]), None);
        assert_eq!(store.diff_ids("sha256:../../../../etc/passwd"), None);
    }

    #[test]
    fn platform_variants_follow_containerds_matcher() {
        let p = |v: &str| serde_json::from_str::<serde_json::Value>(v).expect("json");
        assert!(platform_matches(&p(r#"{"os":"linux","architecture":"arm64","variant":"v8"}"#), "aarch64"));
        assert!(platform_matches(&p(r#"{"os":"linux","architecture":"arm64"}"#), "aarch64"));
        assert!(!platform_matches(&p(r#"{"os":"linux","architecture":"arm","variant":"v7"}"#), "aarch64"));
        assert!(platform_matches(&p(r#"{"os":"linux","architecture":"amd64"}"#), "x86_64"));
        assert!(!platform_matches(&p(r#"{"os":"linux","architecture":"amd64","variant":"v9"}"#), "x86_64"));
        assert!(!platform_matches(&p(r#"{"os":"windows","architecture":"amd64"}"#), "x86_64"));
    }
}

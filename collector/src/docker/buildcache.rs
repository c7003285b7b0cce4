//! BuildKit's build cache in a Docker data root, as `docker system df -v` lists it: the records of
//! `<data-root>/buildkit/metadata_v2.db` (bucket `_main`, one bucket per record with JSON values
//! `{"value": …}` under keys such as `cache.description`, `cache.recordType`, `cache.createdAt`,
//! `cache.lastUsedAt`, `cache.usageCount`, `cache.parent`, `snapshot.size`, `cache.equalMutable`) and the
//! snapshots of `<data-root>/buildkit/snapshots.db` (one bucket per snapshot key: a mutable snapshot is
//! the overlay2 directory of that name, with `parent` and `size`; a committed one holds `chainid`, the
//! image layer it became, and `committed`, the directory it was committed from).
//!
//! A record whose data is an image layer of the layer database is shared (its bytes are the images');
//! the others hold their own overlay2 directory, which is build cache, not an orphan. Both databases are
//! read without a lock (see [`crate::bbolt`]). Not for: the classic builder's cache, which is made of
//! images (the hidden build steps).

use super::DockerStore;
use crate::bbolt::{self, Bucket, Node};
use crate::finding::Findings;
use crate::report::BuildCacheRecord;
use crate::usage::{measure_writable_layer, OverlayXattrs};
use std::collections::HashSet;
use std::path::Path;

fn value(b: &Bucket, key: &str) -> Option<serde_json::Value> {
    let raw = b.value(key.as_bytes())?;
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    v.get("value").cloned()
}

fn text(b: &Bucket, key: &str) -> Option<String> {
    value(b, key).and_then(|v| v.as_str().map(str::to_owned)).filter(|s| !s.is_empty())
}

fn nanos_to_rfc3339(v: Option<serde_json::Value>) -> Option<String> {
    let n = v?.as_i64().filter(|n| *n > 0)?;
    Some(crate::scan::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(n as u64)))
}

fn read_db(path: &Path, findings: &mut Findings) -> Option<bbolt::BoltDb> {
    if !path.exists() {
        return None;
    }
    match bbolt::read(path) {
        Ok(db) => Some(db),
        Err(e) => {
            findings.warn("build_cache_unreadable", e.to_string(), Some(path));
            None
        }
    }
}

/// The overlay2 directory names BuildKit's snapshots name: they are build cache, never orphans.
pub fn build_cache_dirs(root: &Path, findings: &mut Findings) -> HashSet<String> {
    let mut out = HashSet::new();
    if let Some(db) = read_db(&root.join("buildkit/snapshots.db"), findings) {
        for (key, node) in &db.root.entries {
            let Node::Bucket(b) = node else { continue };
            if let Ok(k) = std::str::from_utf8(key) {
                out.insert(k.to_owned());
            }
            if let Some(c) = b.text(b"committed") {
                out.insert(c);
            }
        }
    }
    out
}

/// Every build cache record `docker system df -v` lists, largest first.
pub fn build_cache_records(store: &DockerStore, findings: &mut Findings) -> Vec<BuildCacheRecord> {
    let root = &store.root.path;
    let Some(meta) = read_db(&root.join("buildkit/metadata_v2.db"), findings) else { return Vec::new() };
    let snaps = read_db(&root.join("buildkit/snapshots.db"), findings);
    let Some(main) = meta.root.bucket(&[b"_main"]) else { return Vec::new() };
    let ids: HashSet<&[u8]> = main.entries.keys().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    for (key, node) in &main.entries {
        let (Node::Bucket(b), Ok(id)) = (node, std::str::from_utf8(key)) else { continue };
        // An immutable twin of a mutable record is listed once, as the mutable one.
        if text(b, "cache.equalMutable").is_some_and(|m| ids.contains(m.as_bytes())) {
            continue;
        }
        let snapshot = text(b, "cache.snapshot").unwrap_or_else(|| id.to_owned());
        let snap = snaps.as_ref().and_then(|s| s.root.bucket(&[snapshot.as_bytes()]));
        let chain =
            snap.and_then(|s| s.text(b"chainid")).or_else(|| snapshot.starts_with("sha256:").then(|| snapshot.clone()));
        let layer = chain.as_ref().and_then(|c| store.layerdb.layers.get(c));
        let recorded = value(b, "snapshot.size").and_then(|v| v.as_i64()).filter(|n| *n >= 0);
        let dir = store.layer_dir(id);
        let (size, allocated, path) = match layer {
            Some(l) => (recorded.map_or(l.size.unwrap_or(0), |n| n as u64), 0, None),
            None if dir.join("diff").is_dir() => {
                match measure_writable_layer(&dir.join("diff"), OverlayXattrs::Trusted) {
                    Ok(u) => (u.apparent_bytes, u.allocated_bytes, Some(store.host_layer_dir(id))),
                    Err(e) => {
                        findings.warn(
                            "build_cache_unreadable",
                            format!("cannot size build cache record {id}: {e}"),
                            Some(&dir),
                        );
                        (0, 0, Some(store.host_layer_dir(id)))
                    }
                }
            }
            None => (recorded.map_or(0, |n| n as u64), 0, None),
        };
        out.push(BuildCacheRecord {
            id: id.to_owned(),
            kind: text(b, "cache.recordType").unwrap_or_else(|| "regular".to_owned()),
            description: text(b, "cache.description").unwrap_or_default(),
            parent: text(b, "cache.parent"),
            shared: layer.is_some(),
            size_bytes: size,
            allocated_bytes: allocated,
            path: path.map(|p| p.to_string_lossy().into_owned()),
            created: nanos_to_rfc3339(value(b, "cache.createdAt")),
            last_used: nanos_to_rfc3339(value(b, "cache.lastUsedAt")),
            usage_count: value(b, "cache.usageCount").and_then(|v| v.as_u64()).unwrap_or(0),
        });
    }
    out.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then_with(|| a.id.cmp(&b.id)));
    out
}

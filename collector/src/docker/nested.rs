//! Docker engines nested in a container of this one (Docker-in-Docker on CI runners): a data root that is a
//! volume or bind mount of one of this store's containers, found through that container's record
//! (`MountPoints`), read as a store of its own and named with its owner. Its overlay mounts live in the
//! owner's mount namespace, which the host's mount table does not show: they are read from the owner's
//! `/proc/<pid>/mountinfo` and renamed to host paths. Not for: engines whose data root lies inside a
//! container's writable layer (overlay on overlay, which Docker refuses) or nested more than one level.
//!
//! A nested store's writable layers are walked once, like any store's: the volume that holds them is never
//! walked as a whole, so nothing is counted twice.

use super::{DockerRoot, DockerStore};
use crate::finding::Findings;
use crate::mount_table::{LayerAnchors, MountTable, OverlayMount};
use crate::mountinfo::parse_mountinfo;
use crate::report::NestedIn;
use crate::scan::under_root;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A Docker data root mounted into one of the store's containers.
#[derive(Debug, Clone)]
pub struct NestedRoot {
    /// The data root as the host names it (a volume's `<data-root>/volumes/<name>/_data`, a bind's source).
    pub host_path: PathBuf,
    /// Where the owner sees it (`/var/lib/docker`): the nested engine's own name for it.
    pub in_container: PathBuf,
    /// The owner's first process (a host pid) while it runs.
    pub owner_pid: Option<u32>,
    /// The owner, for the report.
    pub nested_in: NestedIn,
}

/// Every Docker data root mounted into one of `store`'s containers, other than `store`'s own; `root` is
/// where this process sees the host's `/`. A root mounted into several containers is named with the first
/// running one.
pub fn nested_roots(store: &DockerStore, root: &Path) -> Vec<NestedRoot> {
    let own = identity(&store.root.path.join("overlay2"));
    let mut configs: Vec<_> = store.containers.values().filter_map(|c| c.as_ref().ok()).collect();
    configs.sort_by_key(|c| !c.state.running);
    let mut out: Vec<NestedRoot> = Vec::new();
    for c in configs {
        let Some(points) = c.mount_points.as_ref().and_then(|v| v.as_object()) else { continue };
        for point in points.values() {
            let text = |key: &str| point.get(key).and_then(|v| v.as_str()).unwrap_or_default();
            let (source, destination) = (text("Source"), text("Destination"));
            if !source.starts_with('/') || !destination.starts_with('/') {
                continue;
            }
            let host_path = PathBuf::from(source);
            let path = under_root(root, &host_path);
            if out.iter().any(|n| n.host_path == host_path) || !is_docker_root(&path) {
                continue;
            }
            // The store's own root bound into a container (an auditing agent) is not a nested engine.
            if own.is_some() && identity(&path.join("overlay2")) == own {
                continue;
            }
            let kind = text("Type");
            out.push(NestedRoot {
                host_path,
                in_container: PathBuf::from(destination),
                owner_pid: u32::try_from(c.state.pid).ok().filter(|p| c.state.running && *p > 0),
                nested_in: NestedIn {
                    container_id: c.id.clone(),
                    container_name: c.name.trim_start_matches('/').to_owned(),
                    runtime: "docker".to_owned(),
                    path_in_container: destination.to_owned(),
                    mount_type: if kind.is_empty() { "bind".to_owned() } else { kind.to_owned() },
                    volume: Some(text("Name")).filter(|n| !n.is_empty()).map(str::to_owned),
                },
            });
        }
    }
    out
}

/// Reads a nested root as a store of its own; one that cannot be read is a finding.
pub fn open_nested(nested: &NestedRoot, root: &Path, findings: &mut Findings) -> Option<DockerStore> {
    let docker_root = DockerRoot { path: under_root(root, &nested.host_path), host_path: nested.host_path.clone() };
    match DockerStore::open(docker_root, findings) {
        Ok(mut store) => {
            store.nested_in = Some(nested.nested_in.clone());
            Some(store)
        }
        Err(e) => {
            findings.warn(
                "nested_engine_unreadable",
                format!(
                    "a Docker data root is mounted at {} in container {}, but it cannot be read: {e}",
                    nested.in_container.display(),
                    nested.nested_in.container_name
                ),
                Some(&nested.host_path),
            );
            None
        }
    }
}

/// The nested engine's overlay mounts, read from its owner's mount namespace (`<proc>/<pid>/mountinfo`,
/// `proc` as this process reads it) and renamed to host paths. Empty when the owner is not running.
pub fn nested_overlays(nested: &NestedRoot, proc: &Path, root: &Path, findings: &mut Findings) -> Vec<OverlayMount> {
    let Some(pid) = nested.owner_pid else { return Vec::new() };
    let path = proc.join(pid.to_string()).join("mountinfo");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            findings.warn(
                "nested_mounts_unreadable",
                format!(
                    "the mounts of the engine nested in container {} are in its mount namespace, and {} cannot be \
                     read ({e}): its running containers show no mount",
                    nested.nested_in.container_name,
                    path.display()
                ),
                Some(&path),
            );
            return Vec::new();
        }
    };
    let (entries, _) = parse_mountinfo(&bytes);
    let table = MountTable { source: path, entries };
    let inner = &nested.in_container;
    let to_host = |p: &Path| p.strip_prefix(inner).ok().map(|rest| nested.host_path.join(rest));
    let exists = |p: &Path| to_host(p).is_some_and(|h| under_root(root, &h).symlink_metadata().is_ok());
    let anchors = LayerAnchors { dirs: vec![inner.join("overlay2")], exists: &exists };
    table
        .overlays(&anchors, findings)
        .into_iter()
        .filter(|o| o.layers.upper.iter().chain(&o.layers.lower).any(|p| p.starts_with(inner)))
        .map(|o| o.rebased(inner, &nested.host_path))
        .collect()
}

fn is_docker_root(path: &Path) -> bool {
    path.join("overlay2").is_dir() && path.join("image/overlay2").is_dir()
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

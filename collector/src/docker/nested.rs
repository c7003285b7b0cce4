//! Engines nested in a container of this Docker store (Docker-in-Docker on CI runners, kind nodes): a Docker
//! or containerd data root that is a volume or bind mount of one of this store's containers (found through
//! that container's record, `MountPoints`), or that lies in a container's writable layer at the engine's
//! default path (`/var/lib/docker`, `/var/lib/containerd`), read as a store of its own and named with its
//! owner. Its overlay mounts live in the owner's mount namespace, which the host's mount table does not
//! show: they are read from the owner's `/proc/<pid>/mountinfo` and renamed to host paths. Not for: engines
//! nested two levels deep (a nested store's own containers are not searched), containers-storage roots.
//!
//! A nested store's writable layers are walked once, like any store's: the volume that holds them is never
//! walked as a whole, and a data root in a writable layer is left out of that layer's walk (see
//! [`crate::walk::LayerSpec::exclude`]), so nothing is counted twice.

use super::{DockerRoot, DockerStore};
use crate::containerd::ContainerdStore;
use crate::engine::Engine;
use crate::finding::Findings;
use crate::mount_table::{LayerAnchors, MountTable, OverlayMount};
use crate::mountinfo::parse_mountinfo;
use crate::report::NestedIn;
use crate::scan::under_root;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Which engine a nested data root belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NestedKind {
    /// A Docker overlay2 data root.
    Docker,
    /// A containerd root with the overlayfs snapshotter.
    Containerd,
}

impl NestedKind {
    /// The engine's word in `sources.engines`.
    pub fn word(self) -> &'static str {
        match self {
            NestedKind::Docker => "docker",
            NestedKind::Containerd => "containerd",
        }
    }
}

/// Where a nested engine keeps its root when it lies in its container's writable layer: the engines'
/// default roots, relative to the container's `/`.
const IN_LAYER: [(&str, NestedKind); 2] =
    [("var/lib/docker", NestedKind::Docker), ("var/lib/containerd", NestedKind::Containerd)];

/// An engine's data root held by one of the store's containers.
#[derive(Debug, Clone)]
pub struct NestedRoot {
    /// Which engine.
    pub kind: NestedKind,
    /// The data root as the host names it (a volume's `<data-root>/volumes/<name>/_data`, a bind's source,
    /// `<upperdir>/var/lib/docker` in a writable layer).
    pub host_path: PathBuf,
    /// Where the owner sees it (`/var/lib/docker`): the nested engine's own name for it.
    pub in_container: PathBuf,
    /// The owner's first process (a host pid) while it runs.
    pub owner_pid: Option<u32>,
    /// The owner, for the report.
    pub nested_in: NestedIn,
}

impl NestedRoot {
    /// Whether the root lies in its owner's writable layer (rather than a volume or bind mount).
    pub fn in_writable_layer(&self) -> bool {
        self.nested_in.mount_type == WRITABLE_LAYER
    }
}

/// `nested_in.mount_type` of a root in its owner's writable layer.
pub const WRITABLE_LAYER: &str = "writable_layer";

/// Every Docker or containerd data root held by one of `store`'s containers (mounted into it, or in its
/// writable layer), other than `store`'s own and those in `known` (roots this scan reads already, as this
/// process reads them: an agent container holding the host's stores is not a nested engine); `root` is where
/// this process sees the host's `/`. A root held by several containers is named with the first running one.
pub fn nested_roots(store: &DockerStore, root: &Path, known: &[PathBuf]) -> Vec<NestedRoot> {
    let mut skip: Vec<(u64, u64)> = known.iter().filter_map(|p| identity(p)).collect();
    skip.extend(identity(&store.root.path));
    let mut configs: Vec<_> = store.containers.values().filter_map(|c| c.as_ref().ok()).collect();
    configs.sort_by_key(|c| !c.state.running);
    let mut out: Vec<NestedRoot> = Vec::new();
    for c in configs {
        let owner =
            |kind: NestedKind, host_path: PathBuf, destination: &str, mount_type: &str, volume: Option<String>| {
                NestedRoot {
                    kind,
                    host_path,
                    in_container: PathBuf::from(destination),
                    owner_pid: u32::try_from(c.state.pid).ok().filter(|p| c.state.running && *p > 0),
                    nested_in: NestedIn {
                        container_id: c.id.clone(),
                        container_name: c.name.trim_start_matches('/').to_owned(),
                        runtime: "docker".to_owned(),
                        path_in_container: destination.to_owned(),
                        mount_type: mount_type.to_owned(),
                        volume,
                    },
                }
            };
        let mut found = Vec::new();
        let points = c.mount_points.as_ref().and_then(|v| v.as_object());
        for point in points.into_iter().flat_map(|p| p.values()) {
            let text = |key: &str| point.get(key).and_then(|v| v.as_str()).unwrap_or_default();
            let (source, destination) = (text("Source"), text("Destination"));
            if !source.starts_with('/') || !destination.starts_with('/') {
                continue;
            }
            let host_path = PathBuf::from(source);
            let Some(kind) = engine_at(&under_root(root, &host_path)) else { continue };
            let kind_word = match text("Type") {
                "" => "bind",
                other => other,
            };
            let volume = Some(text("Name")).filter(|n| !n.is_empty()).map(str::to_owned);
            found.push(owner(kind, host_path, destination, kind_word, volume));
        }
        if let Some(rw) = store.layerdb.rw_layers.get(&c.id) {
            let upper = store.host_layer_dir(&rw.mount_id).join("diff");
            for (rel, kind) in IN_LAYER {
                let host_path = upper.join(rel);
                // The container owns its layer: a symlink on the way could name any directory of the host.
                let real = Path::new(rel).ancestors().all(|a| {
                    a.as_os_str().is_empty()
                        || std::fs::symlink_metadata(under_root(root, &upper.join(a))).is_ok_and(|m| m.is_dir())
                });
                if real && engine_at(&under_root(root, &host_path)) == Some(kind) {
                    found.push(owner(kind, host_path, &format!("/{rel}"), WRITABLE_LAYER, None));
                }
            }
        }
        for n in found {
            let path = under_root(root, &n.host_path);
            let id = identity(&path);
            if out.iter().any(|o| o.host_path == n.host_path) || id.is_some_and(|id| skip.contains(&id)) {
                continue;
            }
            out.push(n);
        }
    }
    out
}

/// Reads a nested root as a store of its own; one that cannot be read is a finding.
pub fn open_nested(nested: &NestedRoot, root: &Path, findings: &mut Findings) -> Option<Box<dyn Engine>> {
    let path = under_root(root, &nested.host_path);
    let opened: Result<Box<dyn Engine>, String> = match nested.kind {
        NestedKind::Docker => {
            let docker_root = DockerRoot { path, host_path: nested.host_path.clone() };
            DockerStore::open(docker_root, findings)
                .map(|mut store| {
                    store.nested_in = Some(nested.nested_in.clone());
                    Box::new(store) as Box<dyn Engine>
                })
                .map_err(|e| e.to_string())
        }
        NestedKind::Containerd => ContainerdStore::open(&path, &nested.host_path, findings).map(|mut store| {
            store.nested_in = Some(nested.nested_in.clone());
            Box::new(store) as Box<dyn Engine>
        }),
    };
    match opened {
        Ok(store) => Some(store),
        Err(e) => {
            findings.warn(
                "nested_engine_unreadable",
                format!(
                    "a {} data root is at {} in container {}, but it cannot be read: {e}",
                    nested.kind.word(),
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
    // Docker gives relative paths from `<root>/overlay2`; containerd's are anchored on the upperdir.
    let dirs = match nested.kind {
        NestedKind::Docker => vec![inner.join("overlay2")],
        NestedKind::Containerd => Vec::new(),
    };
    let anchors = LayerAnchors { dirs, exists: &exists };
    table
        .overlays(&anchors, findings)
        .into_iter()
        .filter(|o| o.layers.upper.iter().chain(&o.layers.lower).any(|p| p.starts_with(inner)))
        .map(|o| o.rebased(inner, &nested.host_path))
        .collect()
}

/// The engine whose data root `path` is, if any.
fn engine_at(path: &Path) -> Option<NestedKind> {
    if path.join("overlay2").is_dir() && path.join("image/overlay2").is_dir() {
        Some(NestedKind::Docker)
    } else if path.join(crate::containerd::SNAPSHOTTER).join("metadata.db").is_file() {
        Some(NestedKind::Containerd)
    } else {
        None
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

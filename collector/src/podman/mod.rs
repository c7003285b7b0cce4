//! containers-storage (Podman, CRI-O, Buildah), read from its root (`/var/lib/containers/storage`, or
//! `~/.local/share/containers/storage` rootless): the overlay driver's layer directories, laid out as
//! Docker's (`overlay/<layer-id>/{diff,link,lower,work,merged}`, short links in `overlay/l/`), and JSON
//! metadata: `overlay-layers/layers.json` (`id`, `parent`, `diff-digest`, `diff-size`), `overlay-images/
//! images.json` (`id`, `names`, `layer`, `big-data-sizes`), `overlay-containers/containers.json` (`id`,
//! `names`, `image`, `layer` = the writable layer, `metadata`); the `volatile-*.json` files next to them hold
//! records the engine chose not to sync to disk. Podman's own container state is in `libpod/
//! bolt_state.db` (a bbolt file, read with [`crate::bbolt`]); CRI-O keeps none here.
//!
//! Sizes, as each tool prints them: a container's `SizeRw` (`podman ps --size`, `podman inspect --size`) is
//! the apparent bytes of its upperdir, counted as Docker counts them; an image's `Size` (`podman images`,
//! `podman image inspect`) is its layers' `diff-size` plus its metadata blobs (`big-data-sizes`).

mod engine;

use crate::finding::Findings;
use crate::hostfs::{under_root, FileKind, HostReadError, StoreDir};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One layer record.
#[derive(Debug, Clone, Deserialize)]
pub struct Layer {
    /// The layer id: its directory under `overlay/`.
    pub id: String,
    /// The parent layer's id.
    #[serde(default)]
    pub parent: Option<String>,
    /// Names (a container's layer is named `<container>-layer`).
    #[serde(default)]
    pub names: Vec<String>,
    /// DiffID of an image layer.
    #[serde(default, rename = "diff-digest")]
    pub diff_digest: Option<String>,
    /// Uncompressed size of an image layer.
    #[serde(default, rename = "diff-size")]
    pub diff_size: Option<u64>,
}

/// One image record.
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    /// 64-hex id (the config digest, without `sha256:`).
    pub id: String,
    /// Tags, fully qualified (`localhost/bb:1`).
    #[serde(default)]
    pub names: Vec<String>,
    /// The top layer's id.
    #[serde(default)]
    pub layer: Option<String>,
    /// Sizes of the metadata blobs (manifest, config, signatures) the engine counts in the image's size.
    #[serde(default, rename = "big-data-sizes")]
    pub big_data_sizes: BTreeMap<String, u64>,
}

/// One container record.
#[derive(Debug, Clone, Deserialize)]
pub struct Container {
    /// 64-hex id.
    pub id: String,
    /// Names.
    #[serde(default)]
    pub names: Vec<String>,
    /// The image id.
    #[serde(default)]
    pub image: String,
    /// The writable layer's id.
    #[serde(default)]
    pub layer: String,
    /// The tool's own metadata, a JSON document in a string (Podman: `image-name`, `name`; CRI-O also
    /// `pod-name`, `pod-id`).
    #[serde(default)]
    pub metadata: String,
    /// Creation time.
    #[serde(default)]
    pub created: Option<String>,
}

/// Everything read from one containers-storage root.
#[derive(Debug)]
pub struct PodmanStore {
    /// Where this process reads the root.
    pub path: PathBuf,
    /// The root as the host names it.
    pub host_path: PathBuf,
    /// Layers by id.
    pub layers: BTreeMap<String, Layer>,
    /// Images by id.
    pub images: BTreeMap<String, Image>,
    /// Containers by id.
    pub containers: BTreeMap<String, Container>,
    /// Short link name → layer id.
    pub short_links: HashMap<String, String>,
    /// Podman's container states by id (`running`, `exited`, …), when its state database could be read.
    pub states: Option<HashMap<String, String>>,
    /// Whether the store is rootless (overlay markers in `user.overlay.*`).
    pub rootless: bool,
    /// Metadata files that could not be read or parsed: orphans are held back while there are any.
    pub unreadable: usize,
    /// The store's root, held open: every metadata file and layer directory is reached through it.
    pub dir: std::sync::Arc<StoreDir>,
}

/// The default roots under `root` that hold a containers-storage overlay store: the system one, and the
/// rootless ones of `root` and every user under `/home`. A rootless root is looked for without following
/// a symlink below `/home` or `/root` (its owner could point it anywhere); one reached through a symlink is
/// still listed, so that opening it says why it is refused.
pub fn default_roots(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if under_root(root, Path::new("/var/lib/containers/storage/overlay-layers/layers.json")).is_file() {
        out.push(PathBuf::from("/var/lib/containers/storage"));
    }
    let mut homes = vec![PathBuf::from("/root/.local/share/containers/storage")];
    if let Ok(d) = StoreDir::open(&under_root(root, Path::new("/home"))) {
        let mut names: Vec<PathBuf> = d
            .list(Path::new(""))
            .unwrap_or_default()
            .into_iter()
            .map(|e| Path::new("/home").join(e.name).join(".local/share/containers/storage"))
            .collect();
        names.sort();
        homes.extend(names);
    }
    for host_path in homes {
        match open_rootless(root, &host_path) {
            Ok(d) => match d.open_file(Path::new("overlay-layers/layers.json"), FileKind::Index) {
                Err(e) if e.is_not_found() => {}
                _ => out.push(host_path),
            },
            Err(e) if e.is_not_found() => {}
            Err(_) => out.push(host_path),
        }
    }
    out
}

/// Whether a host path is under a directory users own (`/home`, `/root`), and if so which.
fn home_base(host_path: &Path) -> Option<&'static str> {
    ["/home", "/root"].into_iter().find(|b| host_path.starts_with(b))
}

/// Opens a store under `/home` or `/root` without following a symlink below that directory.
fn open_rootless(root: &Path, host_path: &Path) -> Result<StoreDir, HostReadError> {
    let base = home_base(host_path).unwrap_or("/");
    let rel = host_path.strip_prefix(base).unwrap_or(host_path);
    StoreDir::open_beneath(&under_root(root, Path::new(base)), rel)
}

fn read_json<T: for<'de> Deserialize<'de>>(
    dir: &StoreDir,
    path: &Path,
    findings: &mut Findings,
    unreadable: &mut usize,
) -> Vec<T> {
    match dir.read(path, FileKind::Index) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                *unreadable += 1;
                findings.error(
                    "storage_metadata_unparsable",
                    format!("cannot parse {}: {e}", path.display()),
                    Some(path),
                );
                Vec::new()
            }
        },
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => {
            *unreadable += 1;
            findings.error(e.code("storage_metadata_unreadable"), format!("cannot read {e}"), Some(path));
            Vec::new()
        }
    }
}

impl PodmanStore {
    /// Reads the metadata of the store at `path` (host name `host_path`). Fails only when the root holds no
    /// overlay store at all; problems inside it become findings.
    /// A root under `/home` or `/root` is opened without following a symlink below that directory (`root`
    /// is the prefix the host is read under).
    pub fn open(root: &Path, host_path: &Path, findings: &mut Findings) -> Result<PodmanStore, String> {
        let path = &under_root(root, host_path);
        let opened = match home_base(host_path) {
            Some(_) => open_rootless(root, host_path),
            None => StoreDir::open(path).map_err(|source| HostReadError::Io { path: path.clone(), source }),
        };
        let dir = opened.map_err(|e| match e {
            HostReadError::NotFound { .. } => format!("{}: no such directory", path.display()),
            HostReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                format!("{}: no such directory", path.display())
            }
            HostReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                format!("{}: permission denied (run as root, or grant CAP_DAC_READ_SEARCH)", path.display())
            }
            e => e.to_string(),
        })?;
        let layers_json = path.join("overlay-layers/layers.json");
        if let Err(e) = dir.open_file(&layers_json, FileKind::Index) {
            return Err(match e {
                HostReadError::NotFound { .. } => {
                    format!("{}: not a containers-storage overlay root (no overlay-layers/layers.json)", path.display())
                }
                e => e.to_string(),
            });
        }
        let mut unreadable = 0;
        let mut layers = BTreeMap::new();
        for name in ["layers.json", "volatile-layers.json"] {
            for l in read_json::<Layer>(&dir, &path.join("overlay-layers").join(name), findings, &mut unreadable) {
                layers.insert(l.id.clone(), l);
            }
        }
        let mut images = BTreeMap::new();
        for i in read_json::<Image>(&dir, &path.join("overlay-images/images.json"), findings, &mut unreadable) {
            images.insert(i.id.clone(), i);
        }
        let mut containers = BTreeMap::new();
        for name in ["containers.json", "volatile-containers.json"] {
            let file = path.join("overlay-containers").join(name);
            for c in read_json::<Container>(&dir, &file, findings, &mut unreadable) {
                containers.insert(c.id.clone(), c);
            }
        }
        let short_links = crate::docker::read_short_links(&dir, &path.join("overlay/l"), findings);
        let states = read_states(&dir, &path.join("libpod/bolt_state.db"), findings);
        let rootless = home_base(host_path).is_some() || dir.untrusted();
        Ok(PodmanStore {
            path: path.to_owned(),
            host_path: host_path.to_owned(),
            layers,
            images,
            containers,
            short_links,
            states,
            rootless,
            unreadable,
            dir: dir.into(),
        })
    }

    /// The host path of layer `id`'s directory.
    pub fn host_layer_dir(&self, id: &str) -> PathBuf {
        self.host_path.join("overlay").join(id)
    }

    /// The layer a host path names: `<root>/overlay/l/<short>` or `<root>/overlay/<id>/diff`.
    pub fn layer_of(&self, host_path: &Path) -> Option<String> {
        let rel = host_path.strip_prefix(self.host_path.join("overlay")).ok()?;
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        match parts.as_slice() {
            ["l", short] => self.short_links.get(*short).cloned(),
            [id, "diff"] if *id != "l" => Some((*id).to_owned()),
            _ => None,
        }
    }

    /// A layer's ancestors, itself first, stopping at a loop or a missing parent. Linear in the chain's
    /// length: a visited set, not a scan of what came before.
    pub fn chain(&self, top: &str) -> Vec<&Layer> {
        let mut out: Vec<&Layer> = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut next = Some(top);
        while let Some(id) = next {
            let Some(l) = self.layers.get(id) else { break };
            if !seen.insert(l.id.as_str()) {
                break;
            }
            out.push(l);
            next = l.parent.as_deref();
        }
        out
    }
}

/// Podman's container states from `libpod/bolt_state.db`: bucket `ctr` → container id → `state`, a JSON
/// document whose `state` is libpod's `ContainerStatus` number. `None` when there is no such database
/// (CRI-O) or it cannot be read (a finding).
fn read_states(dir: &StoreDir, path: &Path, findings: &mut Findings) -> Option<HashMap<String, String>> {
    let db = match crate::bbolt::read_in(dir, path) {
        Ok(db) => db,
        Err(crate::bbolt::BoltError::Open(e)) if e.is_not_found() => return None,
        Err(e) => {
            findings.warn(
                e.code("engine_state_unreadable"),
                format!("{e}; container states are not known"),
                Some(path),
            );
            return None;
        }
    };
    let mut out = HashMap::new();
    for (id, bucket) in db.root.bucket(&[b"ctr"]).map(|b| b.buckets().collect::<Vec<_>>()).unwrap_or_default() {
        let state = bucket
            .value(b"state")
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
            .and_then(|v| v["state"].as_u64())
            .map(status_word)
            .unwrap_or("unknown");
        out.insert(String::from_utf8_lossy(id).into_owned(), state.to_owned());
    }
    Some(out)
}

/// libpod's `define.ContainerStatus`, in the words `podman ps` uses (it says `created` for a container that
/// was configured but never initialized).
fn status_word(n: u64) -> &'static str {
    match n {
        1 | 2 => "created",
        3 => "running",
        4 => "stopped",
        5 => "paused",
        6 => "exited",
        7 => "removing",
        8 => "stopping",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(id: String, parent: Option<String>) -> Layer {
        Layer { id, parent, names: Vec::new(), diff_digest: None, diff_size: None }
    }

    #[test]
    fn a_long_chain_is_followed_whole_and_a_loop_ends_it() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let id = |i: usize| format!("{i:064x}");
        let n = 30_000;
        let mut layers: BTreeMap<String, Layer> =
            (0..n).map(|i| (id(i), layer(id(i), (i > 0).then(|| id(i - 1))))).collect();
        let store = |layers: BTreeMap<String, Layer>| PodmanStore {
            path: tmp.path().to_owned(),
            host_path: tmp.path().to_owned(),
            layers,
            images: BTreeMap::new(),
            containers: BTreeMap::new(),
            short_links: HashMap::new(),
            states: None,
            rootless: false,
            unreadable: 0,
            dir: StoreDir::open(tmp.path()).expect("open").into(),
        };
        let s = store(layers.clone());
        let chain = s.chain(&id(n - 1));
        assert_eq!(chain.len(), n);
        assert_eq!(chain.last().map(|l| l.id.clone()), Some(id(0)));
        // The base's parent is the top: a loop of n layers, each reported once.
        layers.insert(id(0), layer(id(0), Some(id(n - 1))));
        assert_eq!(store(layers).chain(&id(n - 1)).len(), n);
    }
}

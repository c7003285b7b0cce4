//! Docker's overlay2 storage, read from its data root: layer directories and their short links, the layer
//! database, image configs and tags, and container records. [`DockerStore::open`] reads all metadata once
//! (small files only; no layer contents), and turns what it cannot read into findings.
//!
//! Paths come in two forms here. `root.path` is where this process reads the data root (`/host/var/lib/docker`
//! for an agent in a container); `root.host_path` is how the host's mount table names it
//! (`/var/lib/docker`). Layer paths taken from the mount table are host paths.

pub mod buildcache;
pub mod containers;
pub mod engine;
pub mod image_usage;
pub mod imagedb;
pub mod layerdb;
pub mod logs;
pub mod nested;
pub mod orphans;
pub mod volumes;

use crate::finding::Findings;
use crate::hostfs::{excerpt, FileKind, StoreDir};
use containers::{read_container_config, ContainerConfig};
use imagedb::{read_images, read_tags, ImageConfig};
use layerdb::{list_dir, LayerDb};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Where a Docker data root is, for reading and as the host names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRoot {
    /// Where this process reads it.
    pub path: PathBuf,
    /// The same directory as the host's mount table names it.
    pub host_path: PathBuf,
}

/// Why a data root cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory does not exist.
    #[error("{}: no such directory (is Docker installed here? pass --docker-root for another data root)", path.display())]
    NotFound {
        /// The data root.
        path: PathBuf,
    },
    /// Permission denied.
    #[error("{}: permission denied (run as root, or grant CAP_DAC_READ_SEARCH)", path.display())]
    PermissionDenied {
        /// The directory that could not be read.
        path: PathBuf,
    },
    /// The directory exists but holds no overlay2 storage.
    #[error("{}: not a Docker overlay2 data root ({detail})", path.display())]
    NotOverlay2 {
        /// The data root.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// Any other I/O error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Everything read from one Docker data root.
#[derive(Debug)]
pub struct DockerStore {
    /// The data root.
    pub root: DockerRoot,
    /// The layer database.
    pub layerdb: LayerDb,
    /// Image configs by id (`sha256:…`).
    pub images: BTreeMap<String, ImageConfig>,
    /// Tags by image id.
    pub tags: BTreeMap<String, Vec<String>>,
    /// Container records by id; `Err` holds why a record could not be used.
    pub containers: BTreeMap<String, Result<ContainerConfig, String>>,
    /// Short link name (`l/<name>`) → overlay2 directory name.
    pub short_links: HashMap<String, String>,
    /// overlay2 directory names that are image layers, with their ChainID.
    pub cache_to_chain: HashMap<String, String>,
    /// For a data root nested in a container of another engine (Docker-in-Docker): that container.
    pub nested_in: Option<crate::report::NestedIn>,
    /// The data root, held open: every metadata file and writable layer is reached through it.
    pub dir: std::sync::Arc<StoreDir>,
}

impl DockerStore {
    /// Reads the metadata of the data root at `root`. Fails only when the root itself is missing,
    /// unreadable or not an overlay2 root; problems inside it become findings.
    pub fn open(root: DockerRoot, findings: &mut Findings) -> Result<DockerStore, StoreError> {
        check_root(&root.path)?;
        let store = StoreDir::open(&root.path).map_err(|source| StoreError::Io { path: root.path.clone(), source })?;
        let image_dir = root.path.join("image/overlay2");
        let layerdb = LayerDb::read(&store, &image_dir.join("layerdb"), findings);
        let images = read_images(&store, &image_dir.join("imagedb"), findings);
        let tags = read_tags(&store, &image_dir.join("repositories.json"), findings);
        let mut containers = BTreeMap::new();
        for (id, dir) in list_dir(&store, &root.path.join("containers"), findings) {
            let config = dir.join("config.v2.json");
            let record = read_container_config(&store, &config);
            if let Err(e) = &record {
                findings.error(e.code(), e.to_string(), Some(&config));
            }
            containers.insert(id, record.map_err(|e| e.to_string()));
        }
        let short_links = read_short_links(&store, &root.path.join("overlay2/l"), findings);
        let cache_to_chain = layerdb.layers.values().map(|l| (l.cache_id.clone(), l.chain_id.clone())).collect();
        Ok(DockerStore {
            root,
            layerdb,
            images,
            tags,
            containers,
            short_links,
            cache_to_chain,
            nested_in: None,
            dir: store.into(),
        })
    }

    /// Where this process reads the overlay2 directory named `cache_id`.
    pub fn layer_dir(&self, cache_id: &str) -> PathBuf {
        self.root.path.join("overlay2").join(cache_id)
    }

    /// The host's name for the overlay2 directory named `cache_id`.
    pub fn host_layer_dir(&self, cache_id: &str) -> PathBuf {
        self.root.host_path.join("overlay2").join(cache_id)
    }

    /// Which overlay2 directory a layer path from the mount table (a host path, already absolute) belongs
    /// to: `<root>/overlay2/l/<short>` through the short link, or `<root>/overlay2/<cache-id>/diff`.
    /// `None` for a path outside this data root or a short link that does not exist.
    pub fn cache_id_of(&self, host_path: &Path) -> Option<String> {
        let rel = host_path.strip_prefix(self.root.host_path.join("overlay2")).ok()?;
        let parts: Vec<&str> = rel.iter().map(|c| c.to_str()).collect::<Option<_>>()?;
        match parts.as_slice() {
            ["l", short] => self.short_links.get(*short).cloned(),
            [cache, "diff"] if *cache != "l" => Some((*cache).to_owned()),
            _ => None,
        }
    }

    /// The on-disk lower chain of a layer directory (its `lower` file), each short link resolved to the
    /// host path of the layer's `diff`, top first. `Ok(None)` for a base layer (no `lower` file).
    pub fn lower_chain(&self, cache_id: &str) -> Result<Option<Vec<PathBuf>>, String> {
        let path = self.layer_dir(cache_id).join("lower");
        let text = match self.dir.read(&path, FileKind::Field) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(format!("cannot read {e}")),
        };
        let mut out = Vec::new();
        for entry in text.trim().split(':').filter(|s| !s.is_empty()) {
            let short = entry.strip_prefix("l/").unwrap_or(entry);
            match self.short_links.get(short) {
                Some(cache) => out.push(self.host_layer_dir(cache).join("diff")),
                None => {
                    return Err(format!(
                        "{} names short link {}, which does not exist",
                        path.display(),
                        excerpt(entry, 64)
                    ))
                }
            }
        }
        Ok(Some(out))
    }
}

fn check_root(path: &Path) -> Result<(), StoreError> {
    let io_err = |p: &Path, e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound { path: p.to_owned() },
        io::ErrorKind::PermissionDenied => StoreError::PermissionDenied { path: p.to_owned() },
        _ => StoreError::Io { path: p.to_owned(), source: e },
    };
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_dir() {
        return Err(StoreError::NotOverlay2 { path: path.to_owned(), detail: "it is not a directory".into() });
    }
    fs::read_dir(path).map_err(|e| io_err(path, e))?;
    let overlay2 = path.join("overlay2");
    let image = path.join("image/overlay2");
    if overlay2.is_dir() && image.is_dir() {
        fs::read_dir(&overlay2).map_err(|e| io_err(&overlay2, e))?;
        return Ok(());
    }
    let mut seen = Vec::new();
    if let Ok(rd) = fs::read_dir(path.join("image")) {
        for e in rd.flatten() {
            seen.push(format!("image/{}", e.file_name().to_string_lossy()));
        }
    }
    if path.join("containerd/daemon/io.containerd.snapshotter.v1.overlayfs").is_dir() {
        seen.push("containerd/daemon (Docker's containerd image store)".into());
    }
    let detail = if seen.is_empty() {
        "looked for overlay2/ and image/overlay2/, found neither".to_owned()
    } else {
        format!("looked for overlay2/ and image/overlay2/, found {}", seen.join(", "))
    };
    Err(StoreError::NotOverlay2 { path: path.to_owned(), detail })
}

/// Reads `overlay2/l/` under `store`: each entry is a symlink `../<cache-id>/diff`. The links are read,
/// never followed.
pub(crate) fn read_short_links(store: &StoreDir, dir: &Path, findings: &mut Findings) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let entries = list_dir(store, dir, findings);
    if entries.is_empty() {
        return out;
    }
    let fd = match store.open_dir(dir) {
        Ok(fd) => fd,
        Err(e) => {
            findings.error(e.code("directory_unreadable"), format!("cannot read short links: {e}"), Some(dir));
            return out;
        }
    };
    for (name, path) in entries {
        match nix::fcntl::readlinkat(&fd, name.as_str()) {
            Ok(target) => match cache_id_from_link_target(Path::new(&target)) {
                Some(cache) => {
                    out.insert(name, cache);
                }
                None => findings.warn(
                    "short_link_unexpected",
                    format!("short link points to {}, not ../<layer>/diff", excerpt(&target.to_string_lossy(), 128)),
                    Some(&path),
                ),
            },
            Err(e) => findings.warn("short_link_unreadable", format!("cannot read short link: {e}"), Some(&path)),
        }
    }
    out
}

pub(crate) fn cache_id_from_link_target(target: &Path) -> Option<String> {
    let parts: Vec<Component> = target.components().collect();
    match parts.as_slice() {
        [Component::ParentDir, Component::Normal(cache), Component::Normal(diff)] if *diff == "diff" => {
            cache.to_str().filter(|c| crate::hostfs::is_dir_name(c)).map(str::to_owned)
        }
        _ => None,
    }
}

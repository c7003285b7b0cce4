//! Docker's layer database (`<data-root>/image/overlay2/layerdb/`): image layers by ChainID with their
//! DiffID, parent, size and overlay2 cache id, and each container's read-write layer reference. Reads only;
//! every unreadable entry becomes a finding and the rest is still read.

use crate::digest::{chain_ids, is_hex64, is_sha256_digest};
use crate::finding::Findings;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One image layer as the layer database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayer {
    /// `sha256:…`, the directory name: the digest of the layer and all its ancestors.
    pub chain_id: String,
    /// `sha256:…` of the layer's uncompressed tar.
    pub diff_id: String,
    /// The parent's ChainID; `None` for a base layer.
    pub parent: Option<String>,
    /// The overlay2 directory name under `<data-root>/overlay2/`.
    pub cache_id: String,
    /// The layer's own size in bytes, as Docker recorded it; `None` when the file is missing or unreadable.
    pub size: Option<u64>,
    /// Where the entry lives.
    pub path: PathBuf,
}

/// A container's read-write layer, from `layerdb/mounts/<container-id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RwLayerRef {
    /// The container id (directory name).
    pub container_id: String,
    /// overlay2 directory of the writable layer.
    pub mount_id: String,
    /// overlay2 directory of the init layer (`<mount-id>-init`), if any.
    pub init_id: Option<String>,
    /// ChainID of the image's top layer; `None` for a container of an empty image.
    pub parent: Option<String>,
    /// Where the entry lives.
    pub path: PathBuf,
}

/// The whole layer database.
#[derive(Debug, Default)]
pub struct LayerDb {
    /// Image layers by ChainID.
    pub layers: BTreeMap<String, ImageLayer>,
    /// Read-write layers by container id.
    pub rw_layers: BTreeMap<String, RwLayerRef>,
    /// Entries being deleted (`<chain-id>-<random>-removing`) left behind.
    pub removing: Vec<PathBuf>,
}

impl LayerDb {
    /// Reads `dir` (`<data-root>/image/overlay2/layerdb`). A missing `sha256/` or `mounts/` is an empty
    /// database (a fresh engine); anything unreadable inside becomes a finding.
    pub fn read(dir: &Path, findings: &mut Findings) -> LayerDb {
        let mut db = LayerDb::default();
        let sha_dir = dir.join("sha256");
        for (name, path) in list_dir(&sha_dir, findings) {
            if name.ends_with("-removing") {
                db.removing.push(path);
                continue;
            }
            if !is_hex64(&name) {
                findings.warn(
                    "layerdb_entry_unexpected",
                    "layer database entry is not named by a ChainID",
                    Some(&path),
                );
                continue;
            }
            match read_layer(&name, &path) {
                Ok(layer) => {
                    db.layers.insert(layer.chain_id.clone(), layer);
                }
                Err(why) => findings.error("layerdb_entry_unreadable", why, Some(&path)),
            }
        }
        for (name, path) in list_dir(&dir.join("mounts"), findings) {
            match read_rw_layer(&name, &path) {
                Ok(rw) => {
                    db.rw_layers.insert(name, rw);
                }
                Err(why) => findings.error("layerdb_mount_unreadable", why, Some(&path)),
            }
        }
        db.check_chain_ids(findings);
        db
    }

    /// The layers from base to `top`, following `parent` links. Stops (with a finding) at a missing parent
    /// or a loop.
    pub fn chain(&self, top: &str, findings: &mut Findings) -> Vec<&ImageLayer> {
        let mut out = Vec::new();
        let mut next = Some(top.to_owned());
        while let Some(id) = next {
            if out.len() > 1000 {
                findings.error("layer_chain_loop", format!("layer chain from {top} loops"), None);
                break;
            }
            match self.layers.get(&id) {
                Some(l) => {
                    next = l.parent.clone();
                    out.push(l);
                }
                None => {
                    findings.error(
                        "layer_missing",
                        format!("layer {id} is referenced but not in the layer database"),
                        None,
                    );
                    break;
                }
            }
        }
        out.reverse();
        out
    }

    /// Recomputes each layer's ChainID from its parent's and its DiffID and reports those that differ.
    fn check_chain_ids(&self, findings: &mut Findings) {
        for l in self.layers.values() {
            let expected = match &l.parent {
                None => l.diff_id.clone(),
                Some(p) => match chain_ids(&[p.as_str(), l.diff_id.as_str()]).pop() {
                    Some(c) => c,
                    None => continue,
                },
            };
            if expected != l.chain_id {
                findings.error(
                    "layer_chain_id_mismatch",
                    format!("ChainID {} does not match its parent and DiffID (computed {expected})", l.chain_id),
                    Some(&l.path),
                );
            }
        }
    }
}

fn read_layer(name: &str, path: &Path) -> Result<ImageLayer, String> {
    let diff_id = read_field(path, "diff")?.ok_or("no diff file")?;
    if !is_sha256_digest(&diff_id) {
        return Err(format!("diff file holds {diff_id:?}, not a sha256 digest"));
    }
    let cache_id = read_field(path, "cache-id")?.ok_or("no cache-id file")?;
    if cache_id.is_empty() || cache_id.contains('/') || cache_id.starts_with('.') {
        return Err(format!("cache-id file holds {cache_id:?}, not a layer directory name"));
    }
    let parent = read_field(path, "parent")?;
    if let Some(p) = &parent {
        if !is_sha256_digest(p) {
            return Err(format!("parent file holds {p:?}, not a ChainID"));
        }
    }
    let size = read_field(path, "size").ok().flatten().and_then(|s| s.parse().ok());
    Ok(ImageLayer { chain_id: format!("sha256:{name}"), diff_id, parent, cache_id, size, path: path.to_owned() })
}

fn read_rw_layer(name: &str, path: &Path) -> Result<RwLayerRef, String> {
    let mount_id = read_field(path, "mount-id")?.ok_or("no mount-id file")?;
    if mount_id.is_empty() || mount_id.contains('/') || mount_id.starts_with('.') {
        return Err(format!("mount-id file holds {mount_id:?}, not a layer directory name"));
    }
    Ok(RwLayerRef {
        container_id: name.to_owned(),
        mount_id,
        init_id: read_field(path, "init-id")?.filter(|s| !s.is_empty()),
        parent: read_field(path, "parent")?.filter(|s| !s.is_empty()),
        path: path.to_owned(),
    })
}

/// Reads a small metadata file and trims it; `Ok(None)` when it does not exist.
pub(crate) fn read_field(dir: &Path, file: &str) -> Result<Option<String>, String> {
    let p = dir.join(file);
    match fs::read(&p) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(_) => Err(format!("{file} is not UTF-8 text")),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {file}: {e}")),
    }
}

/// The entries of a directory as (UTF-8 name, path), sorted; a missing directory is empty, any other
/// failure is a finding. Non-UTF-8 names are reported and skipped: Docker never writes them here.
pub(crate) fn list_dir(dir: &Path, findings: &mut Findings) -> Vec<(String, PathBuf)> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            findings.error("directory_unreadable", format!("cannot list directory: {e}"), Some(dir));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for ent in rd {
        match ent {
            Ok(ent) => match ent.file_name().into_string() {
                Ok(name) => out.push((name, ent.path())),
                Err(_) => findings.warn(
                    "path_not_utf8",
                    "entry name is not UTF-8; Docker does not write such names here",
                    Some(&ent.path()),
                ),
            },
            Err(e) => findings.error("directory_unreadable", format!("cannot list directory: {e}"), Some(dir)),
        }
    }
    out.sort();
    out
}

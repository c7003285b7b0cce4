//! Docker's layer database (`<data-root>/image/overlay2/layerdb/`): image layers by ChainID with their
//! DiffID, parent, size and overlay2 cache id, and each container's read-write layer reference. Reads only;
//! every unreadable entry becomes a finding and the rest is still read.

use crate::digest::{chain_ids, is_hex64, is_sha256_digest};
use crate::finding::Findings;
use crate::hostfs::{is_dir_name, StoreDir};
use std::collections::BTreeMap;
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
    pub fn read(store: &StoreDir, dir: &Path, findings: &mut Findings) -> LayerDb {
        let mut db = LayerDb::default();
        let sha_dir = dir.join("sha256");
        for (name, path) in list_dir(store, &sha_dir, findings) {
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
            match read_layer(store, &name, &path) {
                Ok(layer) => {
                    db.layers.insert(layer.chain_id.clone(), layer);
                }
                Err(why) => findings.error("layerdb_entry_unreadable", why, Some(&path)),
            }
        }
        for (name, path) in list_dir(store, &dir.join("mounts"), findings) {
            match read_rw_layer(store, &name, &path) {
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
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(top.to_owned());
        while let Some(id) = next {
            if !seen.insert(id.clone()) {
                findings.error("layer_chain_loop", format!("layer chain from {top} loops at {id}"), None);
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

fn read_layer(store: &StoreDir, name: &str, path: &Path) -> Result<ImageLayer, String> {
    let diff_id = read_field(store, path, "diff")?.ok_or("no diff file")?;
    if !is_sha256_digest(&diff_id) {
        return Err(format!("diff file holds {:?}, not a sha256 digest", excerpt(&diff_id)));
    }
    let cache_id = read_field(store, path, "cache-id")?.ok_or("no cache-id file")?;
    if !is_dir_name(&cache_id) {
        return Err(format!("cache-id file holds {:?}, not a layer directory name", excerpt(&cache_id)));
    }
    let parent = read_field(store, path, "parent")?;
    if let Some(p) = &parent {
        if !is_sha256_digest(p) {
            return Err(format!("parent file holds {:?}, not a ChainID", excerpt(p)));
        }
    }
    let size = read_field(store, path, "size").ok().flatten().and_then(|s| s.parse().ok());
    Ok(ImageLayer { chain_id: format!("sha256:{name}"), diff_id, parent, cache_id, size, path: path.to_owned() })
}

fn read_rw_layer(store: &StoreDir, name: &str, path: &Path) -> Result<RwLayerRef, String> {
    let mount_id = read_field(store, path, "mount-id")?.ok_or("no mount-id file")?;
    if !is_dir_name(&mount_id) {
        return Err(format!("mount-id file holds {:?}, not a layer directory name", excerpt(&mount_id)));
    }
    let init_id = read_field(store, path, "init-id")?.filter(|s| !s.is_empty());
    if let Some(init) = &init_id {
        // The driver names a container's init layer after its writable layer, always.
        if *init != format!("{mount_id}-init") {
            return Err(format!("init-id file holds {:?}, not {mount_id}-init", excerpt(init)));
        }
    }
    Ok(RwLayerRef {
        container_id: name.to_owned(),
        mount_id,
        init_id,
        parent: read_field(store, path, "parent")?.filter(|s| !s.is_empty()),
        path: path.to_owned(),
    })
}

/// A bounded, escaped excerpt of a value read from a field file, for a message.
fn excerpt(s: &str) -> String {
    crate::hostfs::excerpt(s, 80)
}

/// Reads a small metadata file under `store` and trims it; `Ok(None)` when it does not exist. A FIFO, a
/// device, a symlink or an oversized file is refused, with the reason.
pub(crate) fn read_field(store: &StoreDir, dir: &Path, file: &str) -> Result<Option<String>, String> {
    store.read_field(&dir.join(file)).map_err(|e| match e {
        crate::hostfs::HostReadError::Refused { why, .. } => format!("{file} refused: {why}"),
        e => format!("cannot read {file}: {e}"),
    })
}

/// The entries of a directory under `store` as (UTF-8 name, path), sorted; a missing directory is empty,
/// any other failure (a symlink where the directory should be among them) is a finding. Non-UTF-8 names
/// are reported and skipped: Docker never writes them here.
pub(crate) fn list_dir(store: &StoreDir, dir: &Path, findings: &mut Findings) -> Vec<(String, PathBuf)> {
    let entries = match store.list(dir) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return Vec::new(),
        Err(e) => {
            findings.error(e.code("directory_unreadable"), format!("cannot list directory: {e}"), Some(dir));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for ent in entries {
        match ent.name.into_string() {
            Ok(name) => {
                let path = dir.join(&name);
                out.push((name, path));
            }
            Err(name) => findings.warn(
                "path_not_utf8",
                "entry name is not UTF-8; Docker does not write such names here",
                Some(&dir.join(name)),
            ),
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(i: usize, parent: Option<usize>) -> ImageLayer {
        ImageLayer {
            chain_id: format!("sha256:{i:064x}"),
            diff_id: format!("sha256:{i:064x}"),
            parent: parent.map(|p| format!("sha256:{p:064x}")),
            cache_id: format!("{i:064x}"),
            size: Some(1),
            path: PathBuf::new(),
        }
    }

    #[test]
    fn a_deep_chain_is_followed_whole_and_only_a_real_loop_is_a_loop() {
        let n = 10_001;
        let mut db = LayerDb::default();
        for i in 0..n {
            let l = layer(i, i.checked_sub(1));
            db.layers.insert(l.chain_id.clone(), l);
        }
        let top = format!("sha256:{:064x}", n - 1);
        let mut f = Findings::default();
        let chain = db.chain(&top, &mut f);
        assert_eq!(chain.len(), n);
        assert_eq!(chain[0].chain_id, format!("sha256:{:064x}", 0));
        assert!(f.as_slice().is_empty(), "{:?}", f.as_slice());
        // The base's parent is the top: a loop, reported once, each layer still listed once.
        let base = layer(0, Some(n - 1));
        db.layers.insert(base.chain_id.clone(), base);
        let chain = db.chain(&top, &mut f);
        assert_eq!(chain.len(), n);
        assert_eq!(f.as_slice().iter().filter(|x| x.code == "layer_chain_loop").count(), 1);
    }
}

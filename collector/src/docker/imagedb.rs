//! Docker's image store for the overlay2 driver: image configs (`image/overlay2/imagedb/content/sha256/`)
//! and tags (`image/overlay2/repositories.json`). Only what the audit needs is parsed: the DiffIDs of the
//! root filesystem, the creation time and the parent of intermediate build images.

use super::layerdb::{list_dir, read_field};
use crate::digest::{is_hex64, sha256_digest};
use crate::finding::Findings;
use crate::hostfs::{FileKind, StoreDir};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// `sha256:…`: the digest of the config file.
    pub id: String,
    /// DiffIDs of the root filesystem, base first.
    pub diff_ids: Vec<String>,
    /// The image this one was built from (`imagedb/metadata/sha256/<id>/parent`), for build intermediates.
    pub parent: Option<String>,
    /// `created` from the config, as written.
    pub created: Option<String>,
    /// The config file.
    pub path: PathBuf,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    created: Option<String>,
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RepositoriesFile {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

/// Reads every image config under `imagedb` (`<data-root>/image/overlay2/imagedb`).
pub fn read_images(store: &StoreDir, imagedb: &Path, findings: &mut Findings) -> BTreeMap<String, ImageConfig> {
    let mut out = BTreeMap::new();
    for (name, path) in list_dir(store, &imagedb.join("content/sha256"), findings) {
        if !is_hex64(&name) {
            continue;
        }
        let id = format!("sha256:{name}");
        let bytes = match store.read(&path, FileKind::Record) {
            Ok(b) => b,
            Err(e) => {
                findings.error(
                    e.code("image_config_unreadable"),
                    format!("cannot read image config: {e}"),
                    Some(&path),
                );
                continue;
            }
        };
        if sha256_digest(&bytes) != id {
            findings.error(
                "image_config_digest_mismatch",
                "image config's sha256 does not match its name: the file was altered or truncated",
                Some(&path),
            );
        }
        let (diff_ids, created) = match parse_image_config(&bytes) {
            Ok(c) => c,
            Err(e) => {
                findings.error("image_config_unparsable", format!("image config is not valid JSON: {e}"), Some(&path));
                continue;
            }
        };
        let parent = read_field(store, &imagedb.join("metadata/sha256").join(&name), "parent").ok().flatten();
        out.insert(id.clone(), ImageConfig { id, diff_ids, parent, created, path });
    }
    out
}

/// Reads `repositories.json` into image id → tags (`name:tag`, sorted). Digest references (`name@sha256:…`)
/// are left out, as the engine's `RepoTags` leaves them out.
pub fn read_tags(store: &StoreDir, path: &Path, findings: &mut Findings) -> BTreeMap<String, Vec<String>> {
    let out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let bytes = match store.read(path, FileKind::Record) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return out,
        Err(e) => {
            findings.error(e.code("repositories_unreadable"), format!("cannot read image tags: {e}"), Some(path));
            return out;
        }
    };
    match parse_tags(&bytes) {
        Ok(tags) => tags,
        Err(e) => {
            findings.error(
                "repositories_unparsable",
                format!("image tags file is not valid JSON ({e}); images are shown without tags"),
                Some(path),
            );
            out
        }
    }
}

/// An image config's DiffIDs (base first) and creation time.
pub fn parse_image_config(bytes: &[u8]) -> Result<(Vec<String>, Option<String>), serde_json::Error> {
    let parsed: ConfigFile = serde_json::from_slice(bytes)?;
    Ok((parsed.rootfs.map(|r| r.diff_ids).unwrap_or_default(), parsed.created))
}

/// `repositories.json` as image id → tags (`name:tag`, sorted), digest references left out.
pub fn parse_tags(bytes: &[u8]) -> Result<BTreeMap<String, Vec<String>>, serde_json::Error> {
    let parsed: RepositoriesFile = serde_json::from_slice(bytes)?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for refs in parsed.repositories.into_values() {
        for (reference, id) in refs {
            if !reference.contains('@') {
                out.entry(id).or_default().push(reference);
            }
        }
    }
    for tags in out.values_mut() {
        tags.sort();
    }
    Ok(out)
}

/// How many references (tags and digest references alike) `repositories.json` holds for each image id.
/// Problems reading the file are left to [`read_tags`], which reports them; here they give an empty map.
pub fn reference_counts(store: &StoreDir, path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(bytes) = store.read(path, FileKind::Record) else { return out };
    let Ok(parsed) = serde_json::from_slice::<RepositoriesFile>(&bytes) else { return out };
    for refs in parsed.repositories.into_values() {
        for id in refs.into_values() {
            *out.entry(id).or_insert(0) += 1;
        }
    }
    out
}

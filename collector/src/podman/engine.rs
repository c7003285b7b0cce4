//! containers-storage behind the [`Engine`] seam: containers joined with their writable layers and live
//! mounts, image sizes as Podman prints them, and orphans (layer directories, short links and container
//! directories no record names).

use super::PodmanStore;
use crate::digest::{chain_ids, is_hex64};
use crate::engine::{
    mount_report_with, mounts_by_upper, next_usage, settle_orphans, writable_report, Engine, HostView, LayerPaths,
    LayerSpec, OrphanCandidate, Usages,
};
use crate::finding::Findings;
use crate::hostfs::{excerpt, EntryKind, FileKind};
use crate::report::{ContainerReport, EngineSource, ImageRef, ImageReport, LayerReport, MountLayer, Orphan};
use crate::usage::OverlayXattrs;
use std::collections::{HashMap, HashSet};
use std::path::Path;

impl PodmanStore {
    fn image_layers(&self, top: Option<&str>) -> Vec<LayerReport> {
        let mut chain = top.map(|t| self.chain(t)).unwrap_or_default();
        chain.reverse();
        let diffs: Vec<String> = chain.iter().map(|l| l.diff_digest.clone().unwrap_or_default()).collect();
        chain
            .iter()
            .zip(chain_ids(&diffs))
            .map(|(l, chain_id)| LayerReport {
                cache_id: l.id.clone(),
                chain_id,
                diff_id: l.diff_digest.clone().unwrap_or_default(),
                size_bytes: l.diff_size,
            })
            .collect()
    }

    /// The on-disk lower chain of layer `id` (its `lower` file), short links resolved to host paths.
    fn lower_chain(&self, id: &str, findings: &mut Findings) -> Vec<String> {
        let path = self.path.join("overlay").join(id).join("lower");
        let host = self.host_layer_dir(id).join("lower");
        let text = match self.dir.read(&path, FileKind::Field) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.is_not_found() => return Vec::new(),
            Err(e) => {
                findings.error(e.code("lower_file_unreadable"), format!("cannot read {e}"), Some(&host));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for entry in text.trim().split(':').filter(|s| !s.is_empty()) {
            let short = entry.strip_prefix("l/").unwrap_or(entry);
            match self.short_links.get(short) {
                Some(layer) => out.push(self.host_layer_dir(layer).join("diff").to_string_lossy().into_owned()),
                None => {
                    findings.error(
                        "lower_file_unresolved",
                        format!("{} names short link {}, which does not exist", host.display(), excerpt(entry, 64)),
                        Some(&host),
                    );
                    return Vec::new();
                }
            }
        }
        out
    }

    /// Text from a record as the report shows it: from a user's store, at most 256 characters (the
    /// report's own escaping, JSON's or the table's, applies to it as to any text).
    fn shown(&self, text: &str) -> String {
        if self.dir.untrusted() && text.chars().nth(256).is_some() {
            let mut s: String = text.chars().take(256).collect();
            s.push('…');
            s
        } else {
            text.to_owned()
        }
    }

    /// The writable layer id of a container record, when it can name a layer directory: containers-storage
    /// ids are 64 hex digits, and anything else (`../…`, an absolute path) must never become a path.
    fn layer_id(c: &super::Container) -> Option<&str> {
        is_hex64(&c.layer).then_some(c.layer.as_str())
    }

    /// The container whose writable layer is walked, for each layer id: the first record naming it. A
    /// layer belongs to one container; more records naming it (a damaged or crafted file) must not make
    /// the audit walk it once per record.
    fn layer_owners(&self) -> HashMap<&str, &str> {
        let mut out = HashMap::new();
        for c in self.containers.values() {
            if let Some(l) = Self::layer_id(c) {
                out.entry(l).or_insert(c.id.as_str());
            }
        }
        out
    }

    fn runtime_of(meta: &serde_json::Value) -> &'static str {
        if meta.get("pod-name").is_some() || meta.get("pod-id").is_some() {
            "cri-o"
        } else {
            "podman"
        }
    }
}

impl Engine for PodmanStore {
    fn runtime(&self) -> &'static str {
        "podman"
    }

    fn source(&self) -> EngineSource {
        EngineSource {
            engine: "podman".into(),
            root: self.host_path.to_string_lossy().into_owned(),
            found: true,
            namespaces: Vec::new(),
            nested_in: None,
        }
    }

    fn relative_layer_base(&self) -> Option<std::path::PathBuf> {
        Some(self.host_path.join("overlay"))
    }

    fn writable_layers(&self) -> Vec<LayerSpec> {
        let xattrs = if self.rootless { OverlayXattrs::User } else { OverlayXattrs::Trusted };
        let owners = self.layer_owners();
        self.containers
            .values()
            .map(|c| LayerSpec {
                upperdir: Self::layer_id(c)
                    .filter(|l| owners.get(l) == Some(&c.id.as_str()))
                    .map(|l| self.path.join("overlay").join(l).join("diff")),
                xattrs,
                beneath: Some(self.dir.clone()),
                exclude: Vec::new(),
            })
            .collect()
    }

    fn containers(
        &self,
        host: &HostView<'_>,
        usages: Usages<'_>,
        owned: &mut HashSet<usize>,
        findings: &mut Findings,
    ) -> Vec<ContainerReport> {
        let by_upper = mounts_by_upper(host.overlays);
        let mut out = Vec::new();
        let owners = self.layer_owners();
        let mut shared = 0usize;
        for c in self.containers.values() {
            let usage = next_usage(usages);
            let Some(layer_id) = Self::layer_id(c) else {
                findings.error(
                    "container_layer_id_invalid",
                    format!(
                        "container {} names writable layer {:?}, which is not a layer id: nothing was read for it",
                        excerpt(&c.id, 64),
                        excerpt(&c.layer, 80)
                    ),
                    Some(&self.host_path.join("overlay-containers/containers.json")),
                );
                continue;
            };
            if let Some(owner) = owners.get(layer_id).filter(|o| **o != c.id) {
                shared += 1;
                if shared <= 5 {
                    findings.error(
                        "container_layer_shared",
                        format!(
                            "container {} names writable layer {layer_id}, which container {owner} already names: \
                             it is measured once, for {owner}",
                            excerpt(&c.id, 64)
                        ),
                        Some(&self.host_path.join("overlay-containers/containers.json")),
                    );
                }
                continue;
            }
            let who = self.shown(&c.id);
            let meta: serde_json::Value = serde_json::from_str(&c.metadata).unwrap_or_default();
            let layer_dir = self.host_layer_dir(layer_id);
            let upper = layer_dir.join("diff");
            let live = by_upper.get(upper.as_path()).copied();
            let mount = live.map(|i| {
                owned.insert(i);
                mount_report_with(&host.overlays[i], |p| self.identify_layer(p))
            });
            let state = match &self.states {
                Some(states) => states.get(&c.id).cloned().unwrap_or_else(|| "unknown".into()),
                // CRI-O keeps its states elsewhere: a mounted writable layer is the one sign of life here.
                None if mount.is_some() => "running".into(),
                None => "unknown".into(),
            };
            if state == "running" && mount.is_none() {
                findings.warn(
                    "running_container_not_mounted",
                    format!("container {who} is recorded as running but its writable layer is not mounted"),
                    Some(&layer_dir.join("merged")),
                );
            }
            let rw_layer = self.layers.get(&c.layer);
            if rw_layer.is_none() {
                findings.error(
                    "container_rw_layer_missing",
                    format!("container {who} names writable layer {layer_id}, which layers.json does not list"),
                    Some(&self.host_path.join("overlay-layers/layers.json")),
                );
            }
            let image = self.images.get(&c.image);
            let layers = self.image_layers(rw_layer.and_then(|l| l.parent.as_deref()));
            if let Some(img) = image {
                let expected = self.image_layers(img.layer.as_deref());
                let diffs = |v: &[LayerReport]| v.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>();
                if diffs(&expected) != diffs(&layers) {
                    findings.error(
                        "container_layers_differ_from_image",
                        format!(
                            "container {who}'s layer chain does not carry the DiffIDs of its image {}",
                            self.shown(&img.id)
                        ),
                        Some(&layer_dir),
                    );
                }
            }
            let lowerdirs = self.lower_chain(layer_id, findings);
            let workdir = layer_dir.join("work");
            let paths = LayerPaths { cache_id: &c.layer, layer_dir: &layer_dir, upperdir: &upper, workdir: &workdir };
            let writable = writable_report(paths, lowerdirs, usage, |u| u.apparent_bytes, &who, findings);
            out.push(ContainerReport {
                id: who,
                name: self.shown(
                    &c.names.first().cloned().or_else(|| meta["name"].as_str().map(str::to_owned)).unwrap_or_default(),
                ),
                runtime: PodmanStore::runtime_of(&meta).to_owned(),
                namespace: None,
                state,
                created: c.created.clone(),
                image: ImageRef {
                    id: if c.image.is_empty() { String::new() } else { format!("sha256:{}", self.shown(&c.image)) },
                    name: self.shown(meta["image-name"].as_str().unwrap_or_default()),
                    tags: image.map(|i| i.names.iter().map(|n| self.shown(n)).collect()).unwrap_or_default(),
                },
                labels: Default::default(),
                writable: Some(writable),
                init_layer: None,
                layers,
                mount,
                log_path: None,
                log_bytes: None,
                kubernetes: None,
                nested_in: None,
            });
        }
        if shared > 5 {
            findings.error(
                "container_layer_shared",
                format!("{} more container records name a writable layer another record already names", shared - 5),
                Some(&self.host_path.join("overlay-containers/containers.json")),
            );
        }
        out
    }

    fn images(&self, containers: &[ContainerReport], _findings: &mut Findings) -> (Vec<ImageReport>, u64) {
        let chains: Vec<Vec<LayerReport>> =
            self.images.values().map(|i| self.image_layers(i.layer.as_deref())).collect();
        let mut users: HashMap<&str, u32> = HashMap::new();
        for chain in &chains {
            for l in chain {
                *users.entry(l.cache_id.as_str()).or_default() += 1;
            }
        }
        let mut layer_bytes: HashMap<&str, u64> = HashMap::new();
        let mut out = Vec::new();
        for (img, chain) in self.images.values().zip(&chains) {
            let layers_size = crate::bytes::sum(chain.iter().filter_map(|l| l.size_bytes));
            let size = crate::bytes::add(layers_size, crate::bytes::sum(img.big_data_sizes.values().copied()));
            let shared = crate::bytes::sum(
                chain
                    .iter()
                    .filter(|l| users.get(l.cache_id.as_str()).is_some_and(|&n| n > 1))
                    .filter_map(|l| l.size_bytes),
            );
            for l in chain {
                layer_bytes.insert(l.cache_id.as_str(), l.size_bytes.unwrap_or(0));
            }
            let id = format!("sha256:{}", self.shown(&img.id));
            out.push(ImageReport {
                runtime: "podman".into(),
                namespace: None,
                tags: img.names.iter().map(|n| self.shown(n)).collect(),
                size_bytes: size,
                shared_bytes: shared,
                unique_bytes: size.saturating_sub(shared),
                dangling: img.names.is_empty(),
                intermediate: false,
                containers: containers.iter().filter(|c| c.image.id == id).count() as u64,
                layers: chain.iter().map(|l| l.chain_id.clone()).collect(),
                id,
                nested_in: None,
            });
        }
        (out, crate::bytes::sum(layer_bytes.values().copied()))
    }

    fn orphans(&self, host: &HostView<'_>, findings: &mut Findings) -> Vec<Orphan> {
        let mut candidates = Vec::new();
        let overlay = self.path.join("overlay");
        let mut orphan_layers = HashSet::new();
        if self.unreadable > 0 {
            findings.warn(
                "orphans_withheld",
                format!(
                    "{} metadata file(s) of {} could not be read; orphans are held back",
                    self.unreadable,
                    self.host_path.display()
                ),
                Some(&self.host_path),
            );
        } else {
            let list = |dir: &Path, findings: &mut Findings| match self.dir.list(dir) {
                Ok(mut e) => {
                    e.sort_by(|a, b| a.name.cmp(&b.name));
                    Some(e)
                }
                Err(e) if e.is_not_found() => Some(Vec::new()),
                Err(e) => {
                    // `overlay` linked into another store: that store's layers are not this one's orphans.
                    findings.error(
                        e.code("directory_unreadable"),
                        format!("cannot list {e}; no orphans are looked for there"),
                        Some(dir),
                    );
                    None
                }
            };
            for e in list(&overlay, findings).unwrap_or_default() {
                let name = e.name.to_string_lossy().into_owned();
                // Dot files are the driver's own (`.has-mount-program`).
                if name == "l" || name.starts_with('.') || self.layers.contains_key(&name) {
                    continue;
                }
                let host_path = self.host_path.join("overlay").join(&e.name);
                if e.kind == EntryKind::Symlink {
                    findings.warn(
                        "store_entry_is_link",
                        "a symbolic link where a layer directory belongs: what it points to is not this store's, and \
                         is neither followed nor called an orphan",
                        Some(&host_path),
                    );
                    continue;
                }
                orphan_layers.insert(name.clone());
                candidates.push(OrphanCandidate {
                    path: overlay.join(&e.name),
                    host_path,
                    kind: "layer_dir",
                    detail: "no layer in overlay-layers/layers.json names it".into(),
                });
            }
            for e in list(&overlay.join("l"), findings).unwrap_or_default() {
                let name = e.name.to_string_lossy().into_owned();
                let target = self.short_links.get(&name);
                let (kind, detail) = match target {
                    Some(layer) if orphan_layers.contains(layer) => {
                        ("short_link_unreferenced", format!("the short link of the orphan layer directory {layer}"))
                    }
                    Some(layer) if !self.dir.is_dir(&overlay.join(layer)) => {
                        ("short_link_dangling", format!("points to ../{layer}/diff, which does not exist"))
                    }
                    _ => continue,
                };
                candidates.push(OrphanCandidate {
                    path: overlay.join("l").join(&e.name),
                    host_path: self.host_path.join("overlay/l").join(&e.name),
                    kind,
                    detail,
                });
            }
            for e in list(&self.path.join("overlay-containers"), findings).unwrap_or_default() {
                let name = e.name.to_string_lossy().into_owned();
                if !is_hex64(&name) || self.containers.contains_key(&name) || e.kind == EntryKind::Symlink {
                    continue;
                }
                candidates.push(OrphanCandidate {
                    path: self.path.join("overlay-containers").join(&e.name),
                    host_path: self.host_path.join("overlay-containers").join(&e.name),
                    kind: "container_dir",
                    detail: "no container in overlay-containers/containers.json has this id".into(),
                });
            }
        }
        settle_orphans(candidates, "podman", &self.dir, host, findings)
    }

    fn identify_layer(&self, host_path: &Path) -> Option<MountLayer> {
        let id = self.layer_of(host_path)?;
        let layer = self.layers.get(&id);
        let image_layer = layer.filter(|l| l.diff_digest.is_some());
        let chain_id = image_layer.map(|l| {
            let mut chain = self.chain(&l.id);
            chain.reverse();
            let diffs: Vec<String> = chain.iter().map(|l| l.diff_digest.clone().unwrap_or_default()).collect();
            chain_ids(&diffs).pop().unwrap_or_default()
        });
        Some(MountLayer {
            path: self.host_layer_dir(&id).join("diff").to_string_lossy().into_owned(),
            cache_id: Some(id),
            chain_id,
            diff_id: image_layer.and_then(|l| l.diff_digest.clone()),
            role: if image_layer.is_some() { "image" } else { "container" }.into(),
        })
    }
}

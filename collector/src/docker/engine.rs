//! Docker's overlay2 store behind the [`Engine`] seam: the first implementation, delegating to the
//! container join in [`crate::scan`], the image sizes of [`super::image_usage`], the logs of
//! [`super::logs`] and the orphans of [`super::orphans`].

use super::DockerStore;
use crate::engine::{Engine, HostView, LayerSpec, Usages};
use crate::finding::Findings;
use crate::report::{ContainerReport, EngineSource, ImageReport, MountLayer, Orphan};
use std::collections::HashSet;
use std::path::Path;

impl Engine for DockerStore {
    fn runtime(&self) -> &'static str {
        "docker"
    }

    fn source(&self) -> EngineSource {
        EngineSource {
            engine: "docker".into(),
            root: self.root.host_path.to_string_lossy().into_owned(),
            found: true,
            namespaces: Vec::new(),
            nested_in: self.nested_in.clone(),
        }
    }

    fn writable_layers(&self) -> Vec<LayerSpec> {
        crate::scan::docker_writable_layers(self)
    }

    fn containers(
        &self,
        host: &HostView<'_>,
        usages: Usages<'_>,
        owned: &mut HashSet<usize>,
        findings: &mut Findings,
    ) -> Vec<ContainerReport> {
        let mut containers = crate::scan::join_containers(self, host.overlays, usages, owned, findings);
        for c in &mut containers {
            let Some(log) = &c.log_path else { continue };
            // json-file writes its log in the container's own directory: a LogPath anywhere else (an edited
            // or crafted record) is not stat'ed.
            let own = self.root.host_path.join("containers").join(&c.id);
            match Path::new(log).strip_prefix(&own).ok().filter(|rel| rel.components().count() == 1) {
                Some(rel) => {
                    let at = self.root.path.join("containers").join(&c.id).join(rel);
                    c.log_bytes = Some(super::logs::log_bytes(&self.dir, &at, findings));
                }
                None => findings.warn(
                    "log_path_outside_container",
                    format!(
                        "container {}'s LogPath {:?} is not in its own directory {}: not read",
                        c.id,
                        crate::hostfs::excerpt(log, 128),
                        own.display()
                    ),
                    Some(&self.root.host_path.join("containers").join(&c.id).join("config.v2.json")),
                ),
            }
        }
        containers
    }

    fn images(&self, containers: &[ContainerReport], findings: &mut Findings) -> (Vec<ImageReport>, u64) {
        super::image_usage::image_reports(self, containers, findings)
    }

    fn orphans(&self, host: &HostView<'_>, findings: &mut Findings) -> Vec<Orphan> {
        super::orphans::find_orphans(self, host.mounts, host.overlays, host.opts.orphan_min_age, findings)
    }

    fn identify_layer(&self, host_path: &Path) -> Option<MountLayer> {
        let cache_id = self.cache_id_of(host_path)?;
        let layer = self.cache_to_chain.get(&cache_id).and_then(|chain| self.layerdb.layers.get(chain));
        let role = match layer {
            Some(_) => "image",
            None if cache_id.ends_with("-init") => "init",
            None => "container",
        };
        Some(MountLayer {
            path: self.host_layer_dir(&cache_id).join("diff").to_string_lossy().into_owned(),
            chain_id: layer.map(|l| l.chain_id.clone()),
            diff_id: layer.map(|l| l.diff_id.clone()),
            cache_id: Some(cache_id),
            role: role.to_owned(),
        })
    }

    fn relative_layer_base(&self) -> Option<std::path::PathBuf> {
        Some(self.root.host_path.join("overlay2"))
    }
}

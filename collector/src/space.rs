//! Where the rest of a Docker data root goes, added to a finished report: local volumes, BuildKit's build
//! cache, and what removing things would free per section (RECLAIMABLE, as `docker system df` counts it,
//! with the command or action it takes), and the data root's own allocated bytes to reconcile the parts
//! with. Volumes and the data root are walked like writable layers, so this is a second pass that
//! `ovlaudit report` asks for and the periodic service does not.

use crate::docker::{DockerRoot, DockerStore};
use crate::finding::Findings;
use crate::report::{Reclaimable, Report};
use crate::scan::{under_root, ScanOptions};
use crate::usage::OverlayXattrs;
use std::collections::{HashMap, HashSet};

/// Adds the Docker data root's volumes and build cache to `report`, and every section's reclaimable
/// bytes. Problems become findings in the report.
pub fn add_data_root_parts(report: &mut Report, opts: &ScanOptions) {
    let mut findings = Findings::default();
    let mut layer_sizes = HashMap::new();
    if report.sources.docker_found {
        let root = DockerRoot { path: under_root(&opts.root, &opts.docker_root), host_path: opts.docker_root.clone() };
        // The scan read this store already; a second read only costs its small metadata files.
        let mut quiet = Findings::default();
        if let Ok(store) = DockerStore::open(root, &mut quiet) {
            report.volumes = crate::docker::volumes::volume_reports(&store, &mut findings);
            report.build_cache = crate::docker::buildcache::build_cache_records(&store, &mut findings);
            layer_sizes = store.layerdb.layers.values().map(|l| (l.chain_id.clone(), l.size.unwrap_or(0))).collect();
            // The writable layers the scan walked completely are not walked again: their `diff` directories
            // are left out of this walk and their allocated bytes (each counting its directory too, as `du`
            // does) added, which gives what one walk of everything gives.
            let (exclude, walked) = walked_writable_layers(report, opts, &store.root.path);
            let walk = crate::walk::WalkOptions { threads: opts.threads, xattrs: OverlayXattrs::Trusted, top_files: 0 };
            let spec = crate::walk::LayerSpec {
                upperdir: Some(store.root.path.clone()),
                xattrs: OverlayXattrs::Trusted,
                beneath: None,
                exclude,
            };
            match crate::walk::measure_specs(vec![spec], walk, None).pop() {
                Some(Ok(u)) => {
                    report.totals.data_root_allocated_bytes = crate::bytes::add(u.allocated_bytes, walked);
                }
                Some(Err(e)) => findings.warn("data_root_unmeasured", e.to_string(), Some(&opts.docker_root)),
                None => {}
            }
        }
    }
    let t = &mut report.totals;
    t.volumes = report.volumes.len() as u64;
    t.volume_bytes = report.volumes.iter().map(|v| v.apparent_bytes).fold(0, u64::saturating_add);
    t.volume_allocated_bytes = report.volumes.iter().map(|v| v.allocated_bytes).fold(0, u64::saturating_add);
    t.build_cache_bytes =
        report.build_cache.iter().filter(|b| !b.shared).map(|b| b.size_bytes).fold(0, u64::saturating_add);
    report.totals.reclaimable = reclaimable(report, &layer_sizes);
    for f in findings.into_vec() {
        let sev = serde_json::to_value(f.severity).ok().and_then(|v| v.as_str().map(str::to_owned));
        *report.totals.findings.entry(sev.unwrap_or_default()).or_insert(0) += 1;
        report.findings.push(f);
    }
}

/// The `diff` directories (relative to the Docker data root) of the containers' writable layers that the
/// scan walked without an error, and their allocated bytes in all. A layer walked twice (two containers
/// naming one layer) is left out once and counted once.
fn walked_writable_layers(
    report: &Report,
    opts: &ScanOptions,
    data_root: &std::path::Path,
) -> (Vec<std::path::PathBuf>, u64) {
    use std::os::unix::fs::MetadataExt;
    let root_dev = std::fs::symlink_metadata(data_root).ok().map(|m| m.dev());
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in &report.containers {
        if c.runtime != "docker" || c.nested_in.is_some() {
            continue;
        }
        let Some(w) = c.writable.as_ref() else { continue };
        let upper = &w.upperdir;
        let Ok(rel) = std::path::Path::new(upper).strip_prefix(&opts.docker_root) else { continue };
        // Only a layer's own `overlay2/<id>/diff`, walked whole: an excluded directory must be exactly what
        // the scan counted.
        let parts: Vec<_> = rel.components().collect();
        if parts.len() != 3 || parts[0].as_os_str() != "overlay2" || parts[2].as_os_str() != "diff" {
            continue;
        }
        if w.usage.errors > 0 || w.usage.mount_points > 0 || !w.nested_engines.is_empty() {
            continue;
        }
        // On the data root's own file system (a layer with a file system of its own mounted there is not
        // crossed by the data root's walk, as `du -x` does not cross it).
        let read = under_root(&opts.root, std::path::Path::new(upper));
        let same_fs = match (std::fs::symlink_metadata(&read), root_dev) {
            (Ok(m), Some(dev)) => m.is_dir() && m.dev() == dev,
            _ => false,
        };
        if same_fs && seen.insert(rel.to_path_buf()) {
            total = crate::bytes::add(total, w.usage.allocated_bytes);
        }
    }
    (seen.into_iter().collect(), total)
}

/// Every section's reclaimable bytes; `layer_sizes` are the Docker store's own layer sizes by ChainID.
pub fn reclaimable(report: &Report, layer_sizes: &HashMap<String, u64>) -> Reclaimable {
    let stopped = |state: &str| state != "running" && state != "paused" && state != "restarting";
    let containers_bytes = report
        .containers
        .iter()
        .filter(|c| stopped(&c.state))
        .filter_map(|c| c.writable.as_ref())
        .map(|w| w.usage.apparent_bytes)
        .fold(0, u64::saturating_add);
    let logs_bytes =
        report.containers.iter().filter(|c| stopped(&c.state)).filter_map(|c| c.log_bytes).fold(0, u64::saturating_add);
    Reclaimable {
        containers_bytes,
        images_bytes: image_layers_unused(report, layer_sizes),
        volumes_bytes: report
            .volumes
            .iter()
            .filter(|v| v.dangling)
            .map(|v| v.apparent_bytes)
            .fold(0, u64::saturating_add),
        build_cache_bytes: report.totals.build_cache_bytes,
        logs_bytes,
        orphans_bytes: report.totals.orphan_allocated_bytes,
    }
}

/// Bytes of the Docker image layers that no image a container uses holds: what `docker image prune -a`
/// frees. (The docker CLI's RECLAIMABLE subtracts only the in-use images' unique bytes from all layers, so
/// it counts a layer shared by a used and an unused image as reclaimable although removing the unused
/// image keeps it.)
fn image_layers_unused(report: &Report, layer_sizes: &HashMap<String, u64>) -> u64 {
    let docker =
        |i: &&crate::report::ImageReport| (i.runtime == "docker" || i.runtime.is_empty()) && i.nested_in.is_none();
    let used: HashSet<&str> = report
        .images
        .iter()
        .filter(docker)
        .filter(|i| i.containers > 0)
        .flat_map(|i| i.layers.iter().map(String::as_str))
        .collect();
    let all: HashSet<&str> =
        report.images.iter().filter(docker).flat_map(|i| i.layers.iter().map(String::as_str)).collect();
    all.difference(&used).map(|c| layer_sizes.get(*c).copied().unwrap_or(0)).fold(0, u64::saturating_add)
}

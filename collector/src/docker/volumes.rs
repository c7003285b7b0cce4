//! Docker's local volumes (`<data-root>/volumes/<name>/_data`): each one's size as `docker system df -v`
//! counts it (the same rule as `SizeRw`: apparent bytes of every non-directory entry, each inode once), its
//! allocated bytes, the containers whose records mount it (running or not), and whether it is dangling
//! (no container names it: what `docker volume prune` removes). Volumes of other drivers keep no data
//! here and are not listed. Not for: removing anything.

use super::layerdb::list_dir;
use super::DockerStore;
use crate::finding::Findings;
use crate::report::VolumeReport;
use crate::usage::{measure_writable_layer, OverlayXattrs};
use std::collections::BTreeMap;

/// Every local volume of `store`, largest first.
pub fn volume_reports(store: &DockerStore, findings: &mut Findings) -> Vec<VolumeReport> {
    // Volume name → names of the containers whose record mounts it.
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in store.containers.values().filter_map(|r| r.as_ref().ok()) {
        let Some(points) = c.mount_points.as_ref().and_then(|v| v.as_object()) else { continue };
        for point in points.values() {
            let text = |key: &str| point.get(key).and_then(|v| v.as_str()).unwrap_or_default();
            if text("Type") == "volume" && !text("Name").is_empty() {
                let who = users.entry(text("Name").to_owned()).or_default();
                let name = c.name.trim_start_matches('/').to_owned();
                if !who.contains(&name) {
                    who.push(name);
                }
            }
        }
    }
    let dir = store.root.path.join("volumes");
    let mut out = Vec::new();
    for (name, path) in list_dir(&store.dir, &dir, findings) {
        let data = path.join("_data");
        if !data.is_dir() {
            continue; // metadata.db, or a volume of another driver
        }
        let (apparent, allocated, errors) = match measure_writable_layer(&data, OverlayXattrs::Trusted) {
            Ok(u) => {
                if u.errors > 0 {
                    findings.warn(
                        "volume_partly_unreadable",
                        format!("{} entries of volume {name} could not be read; its size is a lower bound", u.errors),
                        Some(&data),
                    );
                }
                (u.apparent_bytes, u.allocated_bytes, u.errors)
            }
            Err(e) => {
                findings.warn("volume_unreadable", format!("cannot size volume {name}: {e}"), Some(&data));
                (0, 0, 1)
            }
        };
        let containers = users.remove(&name).unwrap_or_default();
        out.push(VolumeReport {
            path: store.root.host_path.join("volumes").join(&name).join("_data").to_string_lossy().into_owned(),
            anonymous: crate::digest::is_hex64(&name),
            dangling: containers.is_empty(),
            name,
            apparent_bytes: apparent,
            allocated_bytes: allocated,
            containers,
            errors,
        });
    }
    out.sort_by(|a, b| b.apparent_bytes.cmp(&a.apparent_bytes).then_with(|| a.name.cmp(&b.name)));
    out
}

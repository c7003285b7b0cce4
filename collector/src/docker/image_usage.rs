//! Image sizes as the engine reports them in `GET /system/df`: `Size`, `SharedSize` and `Containers` per
//! image, and `LayersSize` for all of them, computed from the layer database's recorded sizes without
//! walking any layer.
//!
//! The rules are moby 20.10's (`daemon/images/images.go` `Images(filters, all=false, withExtraAttrs=true)`,
//! called by `SystemDiskUsage`, and `getLayerRefs` for `LayersSize`):
//! - an image with no references (tags or digests) and with child images (a build step of the classic
//!   builder) is not listed; every other image is;
//! - `Size` is the sum of the recorded sizes of the image's layer chain;
//! - a layer is shared when more than one *listed* image has it in its chain; `SharedSize` sums the
//!   shared layers' own sizes;
//! - `Containers` counts the containers whose image is this one;
//! - `LayersSize` sums the own size of every layer some listed image uses, each once.
//!
//! ovlaudit lists every image, the hidden build steps too (marked `intermediate`): for those, a layer
//! counts as shared when a listed image also uses it, so removing the step alone frees `unique_bytes`.

use super::DockerStore;
use crate::digest::chain_ids;
use crate::finding::Findings;
use crate::report::{ContainerReport, ImageReport};
use std::collections::{HashMap, HashSet};

/// One report entry per image, and the total bytes of the image layers (`LayersSize`).
pub fn image_reports(
    store: &DockerStore,
    containers: &[ContainerReport],
    findings: &mut Findings,
) -> (Vec<ImageReport>, u64) {
    let references =
        super::imagedb::reference_counts(&store.dir, &store.root.path.join("image/overlay2/repositories.json"));
    let parents: HashSet<&str> = store.images.values().filter_map(|i| i.parent.as_deref()).collect();
    let chains: Vec<Vec<String>> = store.images.values().map(|img| chain_ids(&img.diff_ids)).collect();

    let mut listed = Vec::with_capacity(chains.len());
    let mut refs: HashMap<&str, u32> = HashMap::new();
    for (img, chain) in store.images.values().zip(&chains) {
        let has_children = parents.contains(img.id.as_str());
        let referenced = references.get(&img.id).is_some_and(|&n| n > 0);
        let shown = referenced || !has_children;
        listed.push(shown);
        if shown {
            for c in chain {
                *refs.entry(c.as_str()).or_insert(0) += 1;
            }
        }
    }
    let own_size = |chain_id: &str| store.layerdb.layers.get(chain_id).and_then(|l| l.size).unwrap_or(0);
    let layers_bytes = crate::bytes::sum(refs.keys().map(|c| own_size(c)));

    let mut out = Vec::with_capacity(chains.len());
    for ((img, chain), shown) in store.images.values().zip(&chains).zip(listed) {
        let mut size = 0;
        let mut shared = 0;
        for id in chain {
            if !store.layerdb.layers.contains_key(id) {
                findings.warn(
                    "image_layer_missing",
                    format!("image {} names layer {id}, which is not in the layer database", img.id),
                    Some(&img.path),
                );
                continue;
            }
            let own = own_size(id);
            size = crate::bytes::add(size, own);
            // A hidden build step is not among the counted images; count it here as one more user.
            let users = refs.get(id.as_str()).copied().unwrap_or(0) + u32::from(!shown);
            if users > 1 {
                shared = crate::bytes::add(shared, own);
            }
        }
        let tags = store.tags.get(&img.id).cloned().unwrap_or_default();
        let has_children = parents.contains(img.id.as_str());
        out.push(ImageReport {
            id: img.id.clone(),
            runtime: "docker".to_owned(),
            namespace: None,
            dangling: tags.is_empty() && !has_children,
            intermediate: !shown,
            tags,
            size_bytes: size,
            shared_bytes: shared,
            unique_bytes: size.saturating_sub(shared),
            containers: containers.iter().filter(|c| c.image.id == img.id).count() as u64,
            layers: chain.clone(),
            nested_in: store.nested_in.clone(),
        });
    }
    (out, layers_bytes)
}

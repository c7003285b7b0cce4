//! containerd behind the [`Engine`] seam: each namespace's containers joined with their writable snapshots
//! and live mounts, images sized from their unpacked snapshots, and snapshot directories no record names.

use super::{ContainerdStore, SNAPSHOTTER};
use crate::digest::chain_ids;
use crate::engine::{
    mount_report_with, mounts_by_upper, next_usage, settle_orphans, writable_report, Engine, HostView, LayerPaths,
    LayerSpec, OrphanCandidate, Usages,
};
use crate::finding::Findings;
use crate::report::{ContainerReport, EngineSource, ImageRef, ImageReport, LayerReport, MountLayer, Orphan};
use crate::usage::OverlayXattrs;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The key a backend key was made from: `<namespace>/<n>/<key>` → `<key>`.
fn user_key(backend: &str) -> &str {
    backend.splitn(3, '/').nth(2).unwrap_or(backend)
}

/// The bytes of a CRI container's log and its rotated files, where the log is where the kubelet puts it for
/// this very container: `<dir>/<pod namespace>_<pod>_<pod uid>/<container>/<n>.log`, the names taken from the
/// container's labels; rotated files are `<n>.log.<YYYYMMDD-hhmmss>` (and `.gz`). A log anywhere else (an
/// edited or crafted record) is not stat'ed: a finding, and no figure. A missing log is 0 bytes.
fn cri_log_bytes(root: &Path, log: &str, c: &super::Container, findings: &mut Findings) -> Option<u64> {
    use crate::kubernetes::{CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID};
    let label = |k: &str| c.labels.get(k).map(String::as_str).unwrap_or_default();
    let log = Path::new(log);
    let pod_dir = format!("{}_{}_{}", label(POD_NAMESPACE), label(POD_NAME), label(POD_UID));
    let file = log.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    let attempt = file.strip_suffix(".log").unwrap_or_default();
    let dir = log.parent();
    let shaped = log.is_absolute()
        && !attempt.is_empty()
        && attempt.bytes().all(|b| b.is_ascii_digit())
        && dir.and_then(Path::file_name).is_some_and(|n| n == label(CONTAINER_NAME) && !n.is_empty())
        && dir.and_then(Path::parent).and_then(Path::file_name).is_some_and(|n| n == pod_dir.as_str());
    let (true, Some(dir)) = (shaped, dir) else {
        findings.warn(
            "log_path_outside_pod_logs",
            format!(
                "container {}'s CRI log path {:?} is not <dir>/{pod_dir}/{}/<n>.log: not read",
                c.id,
                crate::hostfs::excerpt(&log.to_string_lossy(), 128),
                label(CONTAINER_NAME)
            ),
            None,
        );
        return None;
    };
    let at = crate::hostfs::under_root(root, dir);
    let store = match crate::hostfs::StoreDir::open(&at) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(0),
        Err(e) => {
            findings.warn("log_unreadable", format!("cannot open the container's log directory: {e}"), Some(dir));
            return Some(0);
        }
    };
    let entries = match store.list(&at) {
        Ok(e) => e,
        Err(e) => {
            findings.warn(
                e.code("log_unreadable"),
                format!("cannot list the container's log directory: {e}"),
                Some(dir),
            );
            return Some(0);
        }
    };
    let rotated = |name: &str| {
        name.strip_prefix(file).and_then(|r| r.strip_prefix('.')).is_some_and(|r| {
            let stamp = r.strip_suffix(".gz").unwrap_or(r);
            !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        })
    };
    let mut total: u64 = 0;
    for ent in entries {
        let Some(name) = ent.name.to_str() else { continue };
        if name != file && !rotated(name) {
            continue;
        }
        match store.metadata(&at.join(name)) {
            Ok(m) if m.st_mode & libc::S_IFMT == libc::S_IFREG => {
                total = total.saturating_add(u64::try_from(m.st_size).unwrap_or(0));
            }
            Ok(_) => {}
            Err(e) => findings.warn(
                e.code("log_unreadable"),
                format!("cannot stat a container log: {e}"),
                Some(&dir.join(name)),
            ),
        }
    }
    Some(total)
}

impl ContainerdStore {
    /// The runtime word for a namespace: Docker 29 keeps its containers in `moby`.
    fn runtime_for(ns: &str) -> &'static str {
        if ns == "moby" {
            "docker"
        } else {
            "containerd"
        }
    }

    /// The containers with a writable overlayfs snapshot, every namespace's, in the order they are reported.
    /// Containers made without a snapshot (Docker 20.10 gives its own containerd a ready root filesystem)
    /// have no writable layer here: their engine reports them.
    fn records(&self) -> Vec<(&String, &super::Container)> {
        self.namespaces
            .iter()
            .flat_map(|(ns, space)| space.containers.values().map(move |c| (ns, c)))
            .filter(|(_, c)| !c.snapshot_key.is_empty() && c.snapshotter == "overlayfs")
            .collect()
    }

    /// Each record's writable snapshot, when the database has it.
    fn snapshots_of(&self, records: &[(&String, &super::Container)]) -> Vec<Option<&super::Snapshot>> {
        records
            .iter()
            .map(|(ns, c)| {
                let (backend, _) = self.namespaces.get(*ns)?.snapshots.get(&c.snapshot_key)?;
                self.snapshots.get(backend)
            })
            .collect()
    }

    /// ChainID → DiffID for an image target.
    fn diff_by_chain(&self, target: &str) -> HashMap<String, String> {
        let diffs = self.diff_ids(target).unwrap_or_default();
        chain_ids(&diffs).into_iter().zip(diffs).collect()
    }

    /// The committed ancestors of a snapshot key in `ns`, base first.
    fn parent_layers(&self, ns: &str, key: Option<&str>, diffs: &HashMap<String, String>) -> Vec<LayerReport> {
        let Some(space) = self.namespaces.get(ns) else { return Vec::new() };
        let mut out = Vec::new();
        let mut next = key.map(str::to_owned);
        while let Some(k) = next {
            let Some((backend, parent)) = space.snapshots.get(&k) else { break };
            if out.len() > 4096 {
                break; // a parent loop in a damaged database
            }
            let snap = self.snapshots.get(backend);
            out.push(LayerReport {
                cache_id: snap.map(|s| s.id.to_string()).unwrap_or_default(),
                diff_id: diffs.get(&k).cloned().unwrap_or_default(),
                chain_id: k.clone(),
                size_bytes: snap.and_then(|s| s.size),
            });
            next = parent.clone();
        }
        out.reverse();
        out
    }
}

impl Engine for ContainerdStore {
    fn runtime(&self) -> &'static str {
        "containerd"
    }

    fn source(&self) -> EngineSource {
        EngineSource {
            engine: "containerd".into(),
            root: self.host_path.to_string_lossy().into_owned(),
            found: true,
            namespaces: self.namespaces.keys().cloned().collect(),
            nested_in: self.nested_in.clone(),
        }
    }

    fn writable_layers(&self) -> Vec<LayerSpec> {
        let records = self.records();
        self.snapshots_of(&records)
            .iter()
            .map(|s| LayerSpec {
                upperdir: s.map(|s| self.snapshot_dir(s.id).join("fs")),
                xattrs: OverlayXattrs::Trusted,
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
        let records = self.records();
        let snaps = self.snapshots_of(&records);
        let by_upper = mounts_by_upper(host.overlays);

        let mut out = Vec::new();
        for ((ns, c), snap) in records.into_iter().zip(snaps) {
            let usage = next_usage(usages);
            let space = &self.namespaces[ns];
            let target = space.images.get(&c.image).cloned().unwrap_or_default();
            let diffs = self.diff_by_chain(&target);
            let parent = space.snapshots.get(&c.snapshot_key).and_then(|(_, p)| p.as_deref());
            let layers = self.parent_layers(ns, parent, &diffs);
            let name = ["io.kubernetes.container.name", "nerdctl/name"]
                .iter()
                .find_map(|l| c.labels.get(*l).cloned())
                .unwrap_or_else(|| c.id.clone());
            let mut report = ContainerReport {
                id: c.id.clone(),
                name,
                runtime: ContainerdStore::runtime_for(ns).to_owned(),
                namespace: Some(ns.clone()),
                state: "created".into(),
                created: c.created.clone(),
                image: ImageRef {
                    id: target.clone(),
                    name: c.image.clone(),
                    tags: space
                        .images
                        .iter()
                        .filter(|(_, d)| **d == target && !target.is_empty())
                        .map(|(n, _)| n.clone())
                        .collect(),
                },
                labels: c.labels.clone(),
                writable: None,
                init_layer: None,
                layers,
                mount: None,
                log_path: c.cri_log_path.clone(),
                log_bytes: c.cri_log_path.as_deref().and_then(|l| cri_log_bytes(&host.opts.root, l, c, findings)),
                kubernetes: None,
                nested_in: self.nested_in.clone(),
            };
            let Some(snap) = snap else {
                findings.error(
                    "container_rw_layer_missing",
                    format!(
                        "container {} (namespace {ns}) names snapshot {}, which the snapshotter does not have",
                        c.id, c.snapshot_key
                    ),
                    Some(&self.host_path.join(SNAPSHOTTER).join("metadata.db")),
                );
                out.push(report);
                continue;
            };
            let dir = self.host_snapshot_dir(snap.id);
            let upper = dir.join("fs");
            if let Some(i) = by_upper.get(upper.as_path()).copied() {
                owned.insert(i);
                report.state = "running".into();
                report.mount = Some(mount_report_with(&host.overlays[i], |p| self.identify_layer(p)));
            }
            let lowerdirs: Vec<String> = report
                .layers
                .iter()
                .rev()
                .map(|l| {
                    self.host_path
                        .join(SNAPSHOTTER)
                        .join("snapshots")
                        .join(&l.cache_id)
                        .join("fs")
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            let (cache_id, workdir) = (snap.id.to_string(), dir.join("work"));
            let paths = LayerPaths { cache_id: &cache_id, layer_dir: &dir, upperdir: &upper, workdir: &workdir };
            let mut w = writable_report(paths, lowerdirs, usage, |u| u.allocated_bytes, &c.id, findings);
            // containerd mounts a task's root filesystem at the task's bundle, not inside the snapshot.
            w.mergeddir = report.mount.as_ref().map(|m| m.mountpoint.clone()).unwrap_or_default();
            report.writable = Some(w);
            out.push(report);
        }
        out
    }

    fn images(&self, containers: &[ContainerReport], _findings: &mut Findings) -> (Vec<ImageReport>, u64) {
        let mut out = Vec::new();
        let mut all_layers: HashMap<String, u64> = HashMap::new();
        for (ns, space) in &self.namespaces {
            let chains: Vec<Vec<LayerReport>> = space
                .images
                .values()
                .map(|target| {
                    let diffs = self.diff_by_chain(target);
                    let top = chain_ids(&self.diff_ids(target).unwrap_or_default()).pop();
                    self.parent_layers(ns, top.as_deref(), &diffs)
                })
                .collect();
            let mut users: HashMap<&str, u32> = HashMap::new();
            for chain in &chains {
                for l in chain {
                    *users.entry(l.chain_id.as_str()).or_default() += 1;
                }
            }
            for ((name, target), chain) in space.images.iter().zip(&chains) {
                let size = crate::bytes::sum(chain.iter().filter_map(|l| l.size_bytes));
                let shared = crate::bytes::sum(
                    chain
                        .iter()
                        .filter(|l| users.get(l.chain_id.as_str()).is_some_and(|&n| n > 1))
                        .filter_map(|l| l.size_bytes),
                );
                for l in chain {
                    all_layers.insert(format!("{ns}/{}", l.chain_id), l.size_bytes.unwrap_or(0));
                }
                out.push(ImageReport {
                    id: target.clone(),
                    runtime: ContainerdStore::runtime_for(ns).into(),
                    namespace: Some(ns.clone()),
                    tags: vec![name.clone()],
                    size_bytes: size,
                    shared_bytes: shared,
                    unique_bytes: size.saturating_sub(shared),
                    dangling: false,
                    intermediate: false,
                    containers: containers
                        .iter()
                        .filter(|c| c.namespace.as_deref() == Some(ns.as_str()) && c.image.name == *name)
                        .count() as u64,
                    layers: chain.iter().map(|l| l.chain_id.clone()).collect(),
                    nested_in: self.nested_in.clone(),
                });
            }
        }
        (out, crate::bytes::sum(all_layers.values().copied()))
    }

    fn orphans(&self, host: &HostView<'_>, findings: &mut Findings) -> Vec<Orphan> {
        let mut candidates = Vec::new();
        let dir = self.path.join(SNAPSHOTTER).join("snapshots");
        let entries = match self.dir.list(&dir) {
            Ok(e) => e,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => {
                findings.error(e.code("directory_unreadable"), format!("cannot list snapshots: {e}"), Some(&dir));
                Vec::new()
            }
        };
        for e in entries {
            let name = e.name.to_string_lossy().into_owned();
            let known = name.parse::<u64>().is_ok_and(|n| self.by_id.contains_key(&n));
            if known {
                continue;
            }
            candidates.push(OrphanCandidate {
                path: dir.join(&e.name),
                host_path: self.host_path.join(SNAPSHOTTER).join("snapshots").join(&name),
                kind: "snapshot_dir",
                detail: format!("no snapshot in {SNAPSHOTTER}/metadata.db has id {name}"),
            });
        }
        if !self.meta_ok {
            // The snapshotter's own database is what names snapshot directories; meta.db is not needed
            // for this, but say that the rest of the audit is incomplete.
            findings.info(
                "engine_metadata_partial",
                "containerd's metadata store could not be read; snapshot orphans come from the snapshotter alone",
                Some(&self.host_path),
            );
        }
        settle_orphans(candidates, "containerd", &self.dir, host, findings)
    }

    fn identify_layer(&self, host_path: &Path) -> Option<MountLayer> {
        let id = self.snapshot_of(host_path)?;
        let backend = self.by_id.get(&id)?;
        let snap = self.snapshots.get(backend)?;
        let committed = snap.kind == 3;
        Some(MountLayer {
            path: self.host_snapshot_dir(id).join("fs").to_string_lossy().into_owned(),
            cache_id: Some(id.to_string()),
            chain_id: committed.then(|| user_key(backend).to_owned()),
            diff_id: None,
            role: if committed { "image" } else { "container" }.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn container(labels: &[(&str, &str)]) -> super::super::Container {
        super::super::Container {
            id: "c1".into(),
            image: String::new(),
            snapshotter: "overlayfs".into(),
            snapshot_key: "c1".into(),
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
            created: None,
            cri_log_path: None,
        }
    }

    #[test]
    fn cri_logs_are_read_only_where_the_kubelet_puts_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("pods/shop_web-0_u1/app");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("0.log"), [b'x'; 100]).expect("write");
        std::fs::write(dir.join("0.log.20260101-120000"), [b'x'; 1000]).expect("write");
        std::fs::write(dir.join("0.log.20260101-110000.gz"), [b'x'; 10]).expect("write");
        std::fs::write(dir.join("1.log"), [b'x'; 7]).expect("write");
        let c = container(&[
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.pod.uid", "u1"),
            ("io.kubernetes.container.name", "app"),
        ]);
        let log = dir.join("0.log");
        let mut f = Findings::default();
        let root = Path::new("/");
        assert_eq!(
            cri_log_bytes(root, log.to_str().expect("utf-8"), &c, &mut f),
            Some(1110),
            "the log and its rotations"
        );
        assert!(f.as_slice().is_empty());
        // Another container's directory, a path that is not the kubelet's shape: not read, a finding each.
        let other = container(&[
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.pod.uid", "u1"),
            ("io.kubernetes.container.name", "db"),
        ]);
        assert_eq!(cri_log_bytes(root, log.to_str().expect("utf-8"), &other, &mut f), None);
        assert_eq!(cri_log_bytes(root, "/etc/shadow", &c, &mut f), None);
        assert_eq!(f.as_slice().iter().filter(|x| x.code == "log_path_outside_pod_logs").count(), 2);
        // Not written yet: 0 bytes.
        let gone = tmp.path().join("pods/shop_web-0_u1/app/2.log");
        assert_eq!(cri_log_bytes(root, gone.to_str().expect("utf-8"), &c, &mut f), Some(0));
    }
}

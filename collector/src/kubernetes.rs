//! Kubernetes attribution: the pod of each container the CRI created (containerd's CRI plugin in its
//! `k8s.io` namespace, CRI-O in containers-storage), read from the labels the CRI sets, and the per-pod
//! roll-up of their writable layers and logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::{ContainerReport, Report};

/// Label with the pod's name.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Label with the pod's namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label with the pod's uid.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Label with the container's name in the pod spec (absent or `POD` on a sandbox).
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// containerd's CRI plugin: `sandbox` or `container`.
pub const CRI_CONTAINERD_KIND: &str = "io.cri-containerd.kind";

/// A container's place in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid (empty when the CRI did not say).
    pub uid: String,
    /// The container's name in the pod spec; empty for the sandbox.
    pub container: String,
    /// Whether this is the pod's sandbox (pause) container, which holds its namespaces.
    pub sandbox: bool,
}

/// One pod's containers on this host, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodReport {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's uid.
    pub uid: String,
    /// The engine that runs it (`containerd`, `podman` for CRI-O's store).
    pub runtime: String,
    /// The sandbox container's id, when it is listed.
    pub sandbox_id: Option<String>,
    /// The ids of its other containers.
    pub containers: Vec<String>,
    /// Sum of their writable layers' apparent bytes (the sandbox's included).
    pub writable_apparent_bytes: u64,
    /// Sum of their writable layers' allocated bytes.
    pub writable_allocated_bytes: u64,
    /// Sum of their log bytes, where known.
    pub log_bytes: u64,
}

/// The pod of a container from its CRI labels, or `None` for a container no CRI created.
pub fn pod_ref(c: &ContainerReport) -> Option<PodRef> {
    let l = &c.labels;
    let pod = l.get(POD_NAME)?;
    let namespace = l.get(POD_NAMESPACE)?;
    let container = l.get(CONTAINER_NAME).cloned().unwrap_or_default();
    // containerd says which it is; CRI-O's sandbox has no container name, or `POD`.
    let sandbox = match l.get(CRI_CONTAINERD_KIND) {
        Some(kind) => kind == "sandbox",
        None => container.is_empty() || container == "POD",
    };
    Some(PodRef {
        namespace: namespace.clone(),
        pod: pod.clone(),
        uid: l.get(POD_UID).cloned().unwrap_or_default(),
        container: if sandbox { String::new() } else { container },
        sandbox,
    })
}

/// Sets each container's `kubernetes` from its labels and the report's `pods`, ordered by namespace,
/// name and uid.
pub fn attribute(report: &mut Report) {
    let mut pods: BTreeMap<(String, String, String, String), PodReport> = BTreeMap::new();
    for c in &mut report.containers {
        c.kubernetes = pod_ref(c);
        let Some(k) = &c.kubernetes else { continue };
        let key = (k.namespace.clone(), k.pod.clone(), k.uid.clone(), c.runtime.clone());
        let p = pods.entry(key).or_insert_with(|| PodReport {
            namespace: k.namespace.clone(),
            name: k.pod.clone(),
            uid: k.uid.clone(),
            runtime: c.runtime.clone(),
            ..PodReport::default()
        });
        if k.sandbox {
            p.sandbox_id = Some(c.id.clone());
        } else {
            p.containers.push(c.id.clone());
        }
        if let Some(w) = &c.writable {
            p.writable_apparent_bytes += w.usage.apparent_bytes;
            p.writable_allocated_bytes += w.usage.allocated_bytes;
        }
        p.log_bytes += c.log_bytes.unwrap_or(0);
    }
    report.pods = pods.into_values().collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, labels: &[(&str, &str)]) -> ContainerReport {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "runtime": "containerd", "state": "running",
            "image": {"id": "i", "name": "n", "tags": []}, "labels": labels,
            "writable": null, "init_layer": null, "layers": [], "mount": null, "log_path": null,
        }))
        .expect("container")
    }

    #[test]
    fn sandbox_and_container_of_one_pod() {
        let pod = [(POD_NAME, "web"), (POD_NAMESPACE, "shop"), (POD_UID, "u1")];
        let sb = container("s", &[pod[0], pod[1], pod[2], (CRI_CONTAINERD_KIND, "sandbox")]);
        let app =
            container("a", &[pod[0], pod[1], pod[2], (CRI_CONTAINERD_KIND, "container"), (CONTAINER_NAME, "app")]);
        let crio_sandbox = container("c", &[(POD_NAME, "db"), (POD_NAMESPACE, "shop"), (CONTAINER_NAME, "POD")]);
        let plain = container("p", &[("maintainer", "x")]);
        let mut r: Report = serde_json::from_value(serde_json::json!({
            "schema": "s", "generated_at": "t", "host": {"name": "h"},
            "sources": {"mount_table": null, "docker_root": "/", "docker_found": false},
            "containers": [], "images": [], "unowned_mounts": [], "orphans": [], "findings": [],
            "totals": {"containers": 0, "containers_running": 0, "writable_apparent_bytes": 0,
                "writable_allocated_bytes": 0, "images": 0, "overlay_mounts": 0, "unowned_mounts": 0, "findings": {}},
            "scan_duration_ms": 0
        }))
        .expect("report");
        r.containers = vec![sb, app, crio_sandbox, plain];
        attribute(&mut r);
        assert_eq!(
            r.containers[1].kubernetes,
            Some(PodRef {
                namespace: "shop".into(),
                pod: "web".into(),
                uid: "u1".into(),
                container: "app".into(),
                sandbox: false
            })
        );
        assert_eq!(r.containers[0].kubernetes.as_ref().map(|k| k.sandbox), Some(true));
        assert_eq!(r.containers[2].kubernetes.as_ref().map(|k| k.sandbox), Some(true));
        assert_eq!(r.containers[3].kubernetes, None);
        assert_eq!(r.pods.len(), 2);
        assert_eq!((r.pods[1].name.as_str(), r.pods[1].sandbox_id.as_deref()), ("web", Some("s")));
        assert_eq!(r.pods[1].containers, vec!["a".to_owned()]);
    }
}

//! Kubernetes attribution: containers carrying the CRI's labels in a private containerd's `k8s.io`
//! namespace are attributed to their pod in the report, the events and the metrics, the sandbox marked,
//! and the pod's roll-up equals the sum of `ctr snapshots usage` of its containers.
//!
//! Two ways in: containers made with `ctr run --label` carrying the labels a kubelet and containerd's CRI
//! plugin set (with a Docker engine beside it, for the events and metrics), and a pod run through the CRI
//! plugin itself over its gRPC API, as a kubelet runs one.

use crate::common::ovlaudit;
use crate::harness::containerd::{Containerd, ContainerdOptions};
use crate::harness::cri::{
    ContainerConfig, ContainerIdRequest, ContainerMetadata, ContainerState, ContainerStatusResponse,
    CreateContainerRequest, CreateContainerResponse, CriClient, Empty, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxIdRequest, PodSandboxMetadata, PodSandboxState, PodSandboxStatusResponse,
    RunPodSandboxRequest, RunPodSandboxResponse,
};
use crate::harness::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn ctr_usage(ctrd: &Containerd, key: &str) -> u64 {
    let out = ctrd.ctr(&["-n", "k8s.io", "snapshots", "usage", "-b", key]);
    let line = out.lines().nth(1).unwrap_or_else(|| panic!("usage of {key}: {out}"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("usage line {line}"))
}

#[test]
fn cri_labelled_containers_are_attributed_to_their_pod() {
    let Some(docker) = Engine::start().unwrap_or_else(|e| panic!("{e}")) else { return };
    let Some(ctrd) = Containerd::start().unwrap_or_else(|e| panic!("{e}")) else { return };
    docker.import_busybox("bb:1");
    let archive = docker.save("bb:1");
    ctrd.ctr_stdin(&["-n", "k8s.io", "images", "import", "-"], &archive);
    let image = "docker.io/library/bb:1";
    let pod = |kind: &str| {
        vec![
            "--label".to_owned(),
            "io.kubernetes.pod.name=web-0".to_owned(),
            "--label".to_owned(),
            "io.kubernetes.pod.namespace=shop".to_owned(),
            "--label".to_owned(),
            "io.kubernetes.pod.uid=5f1c3c5e-0000-4000-8000-000000000001".to_owned(),
            "--label".to_owned(),
            format!("io.cri-containerd.kind={kind}"),
        ]
    };
    let run = |id: &str, extra: Vec<String>, cmd: &str| {
        let mut args: Vec<String> = ["-n", "k8s.io", "run", "-d"].iter().map(|s| s.to_string()).collect();
        args.extend(extra);
        args.extend([image.to_owned(), id.to_owned(), "sh".to_owned(), "-c".to_owned(), cmd.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctrd.ctr(&args);
    };
    let sandbox = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    run(sandbox, pod("sandbox"), "echo s > /s; sleep 1000");
    let mut app = pod("container");
    app.extend(["--label".to_owned(), "io.kubernetes.container.name=app".to_owned()]);
    run("app-1", app, "head -c 70000 /dev/zero > /data; sleep 1000");
    run("plain", Vec::new(), "sleep 1000");
    // Wait for the writes: the snapshot's usage stops growing past the file.
    for _ in 0..100 {
        if ctr_usage(&ctrd, "app-1") >= 70000 && ctr_usage(&ctrd, sandbox) > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let root = ctrd.root().to_str().expect("utf-8").to_owned();
    let host = ["--docker-root", docker.data_root().to_str().expect("utf-8"), "--containerd-root", &root];

    let mut args = vec!["report", "--format", "json", "--no-copy-ups"];
    args.extend(host);
    let out = ovlaudit(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let by_id = |id: &str| {
        r["containers"].as_array().expect("containers").iter().find(|c| c["id"] == id).cloned().expect("listed")
    };
    assert_eq!(by_id("app-1")["kubernetes"]["pod"], "web-0");
    assert_eq!(by_id("app-1")["kubernetes"]["namespace"], "shop");
    assert_eq!(by_id("app-1")["kubernetes"]["container"], "app");
    assert_eq!(by_id("app-1")["kubernetes"]["sandbox"], false);
    assert_eq!(by_id(sandbox)["kubernetes"]["sandbox"], true);
    assert!(by_id("plain").get("kubernetes").is_none(), "{}", by_id("plain"));
    let pods = r["pods"].as_array().expect("pods");
    assert_eq!(pods.len(), 1, "{pods:?}");
    let p = &pods[0];
    assert_eq!((p["namespace"].as_str(), p["name"].as_str()), (Some("shop"), Some("web-0")));
    assert_eq!(p["uid"], "5f1c3c5e-0000-4000-8000-000000000001");
    assert_eq!(p["sandbox_id"], sandbox);
    assert_eq!(p["containers"], serde_json::json!(["app-1"]));
    let engine_sum = ctr_usage(&ctrd, "app-1") + ctr_usage(&ctrd, sandbox);
    assert_eq!(p["writable_allocated_bytes"].as_u64(), Some(engine_sum), "pod sum vs ctr snapshots usage");

    // Events: one ovlaudit.pod event with ECS orchestrator fields; the container events carry them too.
    let mut args = vec!["report", "--format", "ndjson", "--no-copy-ups"];
    args.extend(host);
    let out = ovlaudit(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("event")).collect();
    crate::events::assert_events_valid(&crate::events::event_validator(), &events);
    let pod_events: Vec<&Value> = events.iter().filter(|e| e["event"]["dataset"] == "ovlaudit.pod").collect();
    assert_eq!(pod_events.len(), 1);
    assert_eq!(pod_events[0]["orchestrator"]["resource"]["name"], "web-0");
    assert_eq!(pod_events[0]["ovlaudit"]["pod"]["writable_allocated_bytes"].as_u64(), Some(engine_sum));
    let app_event = events.iter().find(|e| e["container"]["id"] == "app-1").expect("app-1 event");
    assert_eq!(app_event["orchestrator"]["namespace"], "shop");

    // Metrics: the pod's labels on the container series, and the pod's roll-up.
    let mut args = vec!["report", "--format", "prometheus", "--no-copy-ups"];
    args.extend(host);
    let out = ovlaudit(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let sample = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("value")
    };
    let pod_series = "ovlaudit_pod_writable_allocated_bytes{namespace=\"shop\",pod=\"web-0\",";
    assert_eq!(sample(pod_series) as u64, engine_sum);
    assert_eq!(sample("ovlaudit_pod_containers{namespace=\"shop\",pod=\"web-0\",") as u64, 2);
    assert!(
        text.lines().any(|l| l.starts_with("ovlaudit_container_sandbox{engine=\"containerd\"")
            && l.contains("namespace=\"shop\",pod=\"web-0\",container=\"\"")
            && l.ends_with(" 1")),
        "{text}"
    );
    assert!(text.contains("id=\"app-1\","), "{text}");
}

/// What a kubelet sets on a pod's sandbox and containers (pkg/kubelet/kuberuntime labels.go): the pod's
/// name, namespace and uid, and on a container its name in the pod spec.
fn kubelet_labels(pod: &PodSandboxMetadata, container: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("io.kubernetes.pod.name".to_owned(), pod.name.clone()),
        ("io.kubernetes.pod.namespace".to_owned(), pod.namespace.clone()),
        ("io.kubernetes.pod.uid".to_owned(), pod.uid.clone()),
    ]);
    if let Some(name) = container {
        l.insert("io.kubernetes.container.name".to_owned(), name.to_owned());
    }
    l
}

/// Waits until `path` (a CRI container log) has a line containing `text`.
fn wait_for_log(path: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.lines().any(|l| l.contains(text)) {
            return;
        }
        assert!(Instant::now() < deadline, "no {text:?} in {} after 30 s: {log:?}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pod run the way a kubelet runs it, through containerd's real CRI plugin over its gRPC API
/// (`runtime.v1`): RunPodSandbox in the node's network namespace (no CNI, no hostname), then CreateContainer
/// and StartContainer for two containers writing known amounts to their root file systems. ovlaudit names
/// each container's pod, namespace, uid and container name, marks the sandbox, and the pod's roll-up holds
/// exactly the bytes written (apparent) and what containerd's own `snapshots usage` says (allocated), in
/// the JSON report, the table, the events, the Prometheus families of `report` and of the agent (`run`'s
/// `/metrics`); the containers' CRI logs are the pod's log bytes. After StopPodSandbox and RemovePodSandbox
/// the pod is gone from the report.
#[test]
fn pods_run_through_containerds_cri_plugin_are_attributed() {
    const NS: &str = "payments-production-eu-west";
    const POD: &str = "checkout-service-canary-7f9c8d6b5-xk2lp";
    let image = "docker.io/library/ovlaudit-cri-bb:1";
    let options = ContainerdOptions { cri_sandbox_image: Some(image.to_owned()), ..ContainerdOptions::default() };
    let Some(ctrd) = Containerd::start_with(options).unwrap_or_else(|e| panic!("{e}")) else { return };
    // The sandbox (pause) image and the containers' image: busybox whose CMD is absolute.
    ctrd.import_busybox("k8s.io", image, &["/bin/sleep", "3600"]);
    let (mut cri, version) = CriClient::connect(&ctrd.socket()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((version.runtime_name.as_str(), cri.package()), ("containerd", "runtime.v1"), "{version:?}");

    let meta = PodSandboxMetadata {
        name: POD.into(),
        uid: "7c1d2e3f-0018-4000-8000-00000000c41a".into(),
        namespace: NS.into(),
        attempt: 0,
    };
    // The kubelet's layout of pod logs (/var/log/pods/NAMESPACE_NAME_UID/CONTAINER/ATTEMPT.log), in the
    // daemon's directory; the kubelet makes the directories, the runtime the files.
    let log_dir = ctrd.dir().join("pods").join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid));
    let node = NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
    };
    let sandbox_config = PodSandboxConfig {
        metadata: Some(meta.clone()),
        hostname: String::new(),
        log_directory: log_dir.to_str().expect("utf-8").to_owned(),
        labels: kubelet_labels(&meta, None),
        annotations: BTreeMap::from([("kubernetes.io/config.source".to_owned(), "api".to_owned())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: ctrd.cri_cgroup_parent(),
            security_context: Some(LinuxSandboxSecurityContext { namespace_options: Some(node.clone()) }),
        }),
    };
    let run = RunPodSandboxRequest { config: Some(sandbox_config.clone()), runtime_handler: String::new() };
    let sandbox = cri.runtime::<_, RunPodSandboxResponse>("RunPodSandbox", &run).pod_sandbox_id;
    let status: PodSandboxStatusResponse =
        cri.runtime("PodSandboxStatus", &PodSandboxIdRequest { pod_sandbox_id: sandbox.clone() });
    let status = status.status.expect("status");
    assert_eq!(status.state, PodSandboxState::Ready as i32, "{status:?}");
    let network = status.linux.and_then(|l| l.namespaces).and_then(|n| n.options).map(|o| o.network);
    assert_eq!(network, Some(NamespaceMode::Node as i32), "the sandbox runs in the node's network namespace");

    // Two containers, each writing a known number of bytes, then saying so on stdout (its CRI log).
    let writes = [("app", 70_000u64), ("sidecar", 5_000u64)];
    let mut ids = BTreeMap::new();
    for (name, bytes) in writes {
        std::fs::create_dir_all(log_dir.join(name)).expect("create the container's log dir");
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(ImageSpec { image: image.into() }),
            command: vec!["/bin/sh".into(), "-c".into()],
            args: vec![format!("head -c {bytes} /dev/zero > /{name}.dat && echo wrote && exec sleep 3600")],
            labels: kubelet_labels(&meta, Some(name)),
            annotations: BTreeMap::from([("io.kubernetes.container.restartCount".to_owned(), "0".to_owned())]),
            log_path: format!("{name}/0.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext { namespace_options: Some(node.clone()) }),
            }),
        };
        let create = CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(config),
            sandbox_config: Some(sandbox_config.clone()),
        };
        let id = cri.runtime::<_, CreateContainerResponse>("CreateContainer", &create).container_id;
        let _: Empty = cri.runtime("StartContainer", &ContainerIdRequest { container_id: id.clone() });
        ids.insert(name, id);
    }
    for (name, id) in &ids {
        wait_for_log(&log_dir.join(name).join("0.log"), "wrote");
        let s: ContainerStatusResponse =
            cri.runtime("ContainerStatus", &ContainerIdRequest { container_id: id.clone() });
        let s = s.status.expect("status");
        assert_eq!(s.state, ContainerState::Running as i32, "{s:?}");
    }

    let root = ctrd.root().to_str().expect("utf-8").to_owned();
    let report = |format: &str| {
        let out = ovlaudit(&["report", "--format", format, "--no-copy-ups", "--containerd-root", &root]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let r: Value = serde_json::from_str(&report("json")).expect("JSON");
    let by_id = |id: &str| {
        r["containers"].as_array().expect("containers").iter().find(|c| c["id"] == id).cloned().expect("listed")
    };
    let usage_sum = ctr_usage(&ctrd, &sandbox) + ids.values().map(|id| ctr_usage(&ctrd, id)).sum::<u64>();
    let log_size = |name: &str| std::fs::metadata(log_dir.join(name).join("0.log")).expect("log").len();
    let logs: u64 = writes.iter().map(|(name, _)| log_size(name)).sum();
    for (name, bytes) in writes {
        let c = by_id(&ids[name]);
        // The log the CRI plugin writes where the kubelet asked, as containerd records it.
        let log = log_dir.join(name).join("0.log");
        assert_eq!(c["log_path"].as_str(), log.to_str(), "{c}");
        assert_eq!(c["log_bytes"].as_u64(), Some(log_size(name)), "{c}");
        assert_eq!((c["runtime"].as_str(), c["namespace"].as_str()), (Some("containerd"), Some("k8s.io")), "{c}");
        assert_eq!(
            c["kubernetes"],
            serde_json::json!({"namespace": NS, "pod": POD, "uid": meta.uid, "container": name, "sandbox": false}),
            "{c}"
        );
        assert_eq!(c["name"], name);
        assert_eq!(c["writable"]["apparent_bytes"].as_u64(), Some(bytes), "{c}");
    }
    let sb = by_id(&sandbox);
    assert_eq!(
        sb["kubernetes"],
        serde_json::json!({"namespace": NS, "pod": POD, "uid": meta.uid, "container": "", "sandbox": true}),
        "{sb}"
    );
    let pods = r["pods"].as_array().expect("pods");
    assert_eq!(pods.len(), 1, "{pods:?}");
    let p = &pods[0];
    assert_eq!(
        (p["namespace"].as_str(), p["name"].as_str(), p["uid"].as_str()),
        (Some(NS), Some(POD), Some(meta.uid.as_str()))
    );
    assert_eq!(p["sandbox_id"].as_str(), Some(sandbox.as_str()));
    let mut listed: Vec<&str> =
        p["containers"].as_array().expect("containers").iter().filter_map(Value::as_str).collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.values().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let written: u64 = writes.iter().map(|(_, b)| b).sum();
    assert_eq!(p["writable_apparent_bytes"].as_u64(), Some(written), "the pod holds what its containers wrote: {p}");
    assert_eq!(p["writable_allocated_bytes"].as_u64(), Some(usage_sum), "pod vs ctr snapshots usage: {p}");
    assert_eq!(p["log_bytes"].as_u64(), Some(logs), "{p}");
    assert!(logs > 0);

    let text = report("prometheus");
    // The table: a pods section, in 80 columns although the names are long (cut with a marker), with
    // the roll-up in exact bytes.
    let out = ovlaudit(&["report", "--bytes", "--no-copy-ups", "--containerd-root", &root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    let header = table.lines().position(|l| l.starts_with("NAMESPACE") && l.contains("POD")).expect("pods section");
    let row: Vec<&str> = table.lines().nth(header + 1).expect("a pod row").split_whitespace().collect();
    assert!(NS.starts_with(row[0].trim_end_matches('…')) && POD.starts_with(row[1].trim_end_matches('…')), "{row:?}");
    assert_eq!(row[2..], ["3".to_owned(), written.to_string(), usage_sum.to_string(), logs.to_string()], "{table}");

    let sample = |prefix: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).expect("value") as u64
    };
    let pod_labels = format!("{{namespace=\"{NS}\",pod=\"{POD}\",");
    assert_eq!(sample(&format!("ovlaudit_pod_writable_apparent_bytes{pod_labels}")), written);
    assert_eq!(sample(&format!("ovlaudit_pod_writable_allocated_bytes{pod_labels}")), usage_sum);
    assert_eq!(sample(&format!("ovlaudit_pod_containers{pod_labels}")), 3);
    assert_eq!(sample(&format!("ovlaudit_pod_log_bytes{pod_labels}")), logs);
    let app = format!(
        "ovlaudit_container_writable_apparent_bytes{{engine=\"containerd\",engine_namespace=\"k8s.io\",id=\"{}\",",
        ids["app"]
    );
    let line = text.lines().find(|l| l.starts_with(&app)).unwrap_or_else(|| panic!("no {app} in\n{text}"));
    let labels = format!("namespace=\"{NS}\",pod=\"{POD}\",container=\"app\"");
    assert!(line.contains(&labels) && line.ends_with(" 70000"), "{line}");

    let events: Vec<Value> = report("ndjson").lines().map(|l| serde_json::from_str(l).expect("event")).collect();
    crate::events::assert_events_valid(&crate::events::event_validator(), &events);
    let pod_events: Vec<&Value> = events.iter().filter(|e| e["event"]["dataset"] == "ovlaudit.pod").collect();
    assert_eq!(pod_events.len(), 1, "{pod_events:?}");
    assert_eq!(pod_events[0]["orchestrator"]["resource"]["name"], POD);
    assert_eq!(pod_events[0]["ovlaudit"]["pod"]["writable_apparent_bytes"].as_u64(), Some(written));

    // The agent (`ovlaudit run`) serves the same roll-up on /metrics, and ships the pod's event.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::agent::empty_config(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let listen = format!("127.0.0.1:{port}");
    let agent = crate::agent::Agent::start(
        &["--config", &config, "--containerd-root", &root, "--interval", "1h", "--metrics-listen", &listen],
        &[],
    );
    agent.wait_until(Duration::from_secs(30), "the first scan", |s| !s.is_empty());
    let pod_event = agent.events().into_iter().find(|e| e["event"]["dataset"] == "ovlaudit.pod").expect("pod event");
    assert_eq!(pod_event["ovlaudit"]["pod"]["writable_apparent_bytes"].as_u64(), Some(written), "{pod_event}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.0\r\n\r\n").expect("request");
    let mut scraped = String::new();
    std::io::Read::read_to_string(&mut s, &mut scraped).expect("answer");
    let line = format!("ovlaudit_pod_writable_apparent_bytes{pod_labels}uid=\"{}\"}} {written}", meta.uid);
    assert!(scraped.lines().any(|l| l == line), "no {line} in\n{scraped}");
    drop(agent);

    // The kubelet's teardown: StopPodSandbox stops every container of the pod, RemovePodSandbox removes them.
    let _: Empty = cri.runtime("StopPodSandbox", &PodSandboxIdRequest { pod_sandbox_id: sandbox.clone() });
    let _: Empty = cri.runtime("RemovePodSandbox", &PodSandboxIdRequest { pod_sandbox_id: sandbox.clone() });
    let r: Value = serde_json::from_str(&report("json")).expect("JSON");
    assert_eq!(r["pods"], serde_json::json!([]), "{}", r["pods"]);
    let left: Vec<&Value> =
        r["containers"].as_array().expect("containers").iter().filter(|c| c.get("kubernetes").is_some()).collect();
    assert!(left.is_empty(), "{left:?}");
}

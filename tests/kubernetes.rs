//! Kubernetes attribution: containers carrying the CRI's labels in a private containerd's `k8s.io`
//! namespace are attributed to their pod in the report, the events and the metrics, the sandbox marked,
//! and the pod's roll-up equals the sum of `ctr snapshots usage` of its containers.
//!
//! The containers are made with `ctr run --label` carrying the labels containerd's CRI plugin sets, not
//! through the CRI gRPC API itself (that test is still to be written; see the README).

use crate::common::ovlaudit;
use crate::harness::containerd::Containerd;
use crate::harness::Engine;
use serde_json::Value;

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

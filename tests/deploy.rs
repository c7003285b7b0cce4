//! The Kubernetes DaemonSet in deploy/kubernetes: its structure (every setting the README promises), and
//! its settings exercised by running the image the README builds on a real engine with the equivalent
//! `docker run` flags, scraped on loopback.

use crate::harness::start_engine;
use crate::run_docker::import_agent_image;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn manifest(name: &str) -> Value {
    let path = format!("{}/../deploy/kubernetes/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The pod template's single container.
fn agent_container(ds: &Value) -> &Value {
    let containers = ds["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[test]
fn daemonset_manifest_has_the_node_agent_settings() {
    let k = manifest("kustomization.yaml");
    assert_eq!(k["kind"], "Kustomization");
    let resources = strings(&k["resources"]);
    assert!(resources.contains(&"daemonset.yaml"), "{resources:?}");
    for r in &resources {
        let m = manifest(r);
        assert!(m["apiVersion"].is_string() && m["kind"].is_string(), "{r}: {m}");
    }
    let ds = manifest("daemonset.yaml");
    assert_eq!((ds["apiVersion"].as_str(), ds["kind"].as_str()), (Some("apps/v1"), Some("DaemonSet")));
    let selector = &ds["spec"]["selector"]["matchLabels"];
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector.as_object().expect("matchLabels") {
        assert_eq!(&labels[key], value, "the selector matches the template's labels");
    }
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let tolerations = pod["tolerations"].as_array().expect("tolerations");
    assert!(
        tolerations.iter().any(|t| t["operator"] == "Exists" && t.get("key").is_none() && t.get("effect").is_none()),
        "one toleration tolerates every taint: {tolerations:?}"
    );
    let c = agent_container(&ds);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(strings(&sc["capabilities"]["add"]), ["DAC_READ_SEARCH"]);
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][kind][r].is_string(), "resources.{kind}.{r}");
        }
    }
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    let host = mounts.iter().find(|m| m["mountPath"] == "/host").expect("/host mounted");
    assert_eq!(host["readOnly"], true);
    assert_eq!(host["mountPropagation"], "HostToContainer");
    let volume =
        pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == host["name"]).expect("volume");
    assert_eq!(volume["hostPath"]["path"], "/");
    let args = strings(&c["args"]);
    let at = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]);
    assert_eq!(at("--root"), Some("/host"));
    let listen = at("--metrics-listen").expect("--metrics-listen");
    let port: u64 = listen.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let ports = c["ports"].as_array().expect("ports");
    assert!(ports.iter().any(|p| p["containerPort"].as_u64() == Some(port) && p["name"] == "metrics"), "{ports:?}");
}

/// Whether the host's `/` propagates mounts (shared or slave), as a kubelet node's does (systemd makes it
/// shared); Docker refuses `rslave` from a private source. The test does not change the host's propagation.
fn root_propagates() -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() > 6
            && f[4] == "/"
            && f[6..].iter().take_while(|x| **x != "-").any(|o| o.starts_with("shared:") || o.starts_with("master:"))
    })
}

/// The manifest's settings as `docker run` flags: the host's / read-only at /host with slave propagation
/// (HostToContainer), host PID namespace, read-only root, only CAP_DAC_READ_SEARCH, no privilege
/// escalation, the memory and CPU limits, the manifest's args. The metrics address differs (loopback on the
/// host network, so the test can scrape it), and where the host's `/` is private (this project's VMs),
/// the bind has Docker's default propagation, as the README's `docker run` line (said on stderr): Docker
/// refuses slave propagation from a private source.
#[test]
fn daemonset_settings_run_on_a_real_engine() {
    let ds = manifest("daemonset.yaml");
    let c = agent_container(&ds);
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let id = engine.docker(&["run", "-d", "--name", "w1", "bb:1", "sh", "-c", "echo hello > /w; sleep 300"]);
    import_agent_image(&engine, "ovlaudit", false);
    let propagates = root_propagates();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let sc = &c["securityContext"];
    let memory = c["resources"]["limits"]["memory"].as_str().expect("memory").replace("Mi", "m");
    let cpus = c["resources"]["limits"]["cpu"].as_str().expect("cpu").to_owned();
    let mut flags = vec!["run".to_owned(), "-d".to_owned(), "--name".to_owned(), "agent".to_owned()];
    flags.extend(["--network".into(), "host".into(), "--memory".into(), memory, "--cpus".into(), cpus]);
    if ds["spec"]["template"]["spec"]["hostPID"] == true {
        flags.extend(["--pid".into(), "host".into()]);
    }
    if sc["readOnlyRootFilesystem"] == true {
        flags.push("--read-only".into());
    }
    if sc["allowPrivilegeEscalation"] == false {
        flags.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for cap in strings(&sc["capabilities"]["drop"]) {
        flags.extend(["--cap-drop".into(), cap.to_owned()]);
    }
    for cap in strings(&sc["capabilities"]["add"]) {
        flags.extend(["--cap-add".into(), cap.to_owned()]);
    }
    for m in c["volumeMounts"].as_array().expect("mounts") {
        let volume = ds["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("volume");
        let propagation = match m["mountPropagation"].as_str() {
            Some("HostToContainer") if propagates => ",rslave",
            Some("HostToContainer") => {
                eprintln!("NOTE: / has private propagation here: /host bound as `docker run -v /:/host:ro` does");
                ""
            }
            Some("Bidirectional") => ",rshared",
            _ => "",
        };
        let ro = if m["readOnly"] == true { "ro" } else { "rw" };
        let host = volume["hostPath"]["path"].as_str().expect("hostPath");
        flags.extend(["-v".into(), format!("{host}:{}:{ro}{propagation}", m["mountPath"].as_str().expect("path"))]);
    }
    flags.push("ovlaudit".into());
    flags.extend(strings(&c["command"]).into_iter().map(str::to_owned));
    let listen = format!("127.0.0.1:{port}");
    for a in strings(&c["args"]) {
        flags.push(if a.starts_with("0.0.0.0:") { listen.clone() } else { a.to_owned() });
    }
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    flags.extend(["--docker-root".into(), root, "--interval".into(), "1h".into()]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    engine.docker(&args);

    let size_rw = engine
        .api_get("/containers/json?all=1&size=1")
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["Id"] == id.as_str())
        .and_then(|x| x["SizeRw"].as_u64())
        .expect("SizeRw");
    let series =
        format!("ovlaudit_container_writable_apparent_bytes{{engine=\"docker\",engine_namespace=\"\",id=\"{id}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let body = scrape(port).unwrap_or_default();
        if let Some(l) = body.lines().find(|l| l.starts_with(&series)) {
            break l.to_owned();
        }
        let logs = engine.docker(&["logs", "--tail", "5", "agent"]);
        assert!(Instant::now() < deadline, "no {series} from the agent run as the DaemonSet says:\n{body}\n{logs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let value: u64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("value");
    assert_eq!(value, size_rw, "{line}");
    engine.docker(&["rm", "-f", "agent"]);
}

fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_owned())
}

//! The Kubernetes DaemonSet in deploy/kubernetes: its structure (every setting the README promises), and
//! its settings exercised by running the image the README builds on a real engine with the equivalent
//! `docker run` flags, scraped on loopback.

use crate::harness::{Engine, EngineOptions};
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

/// Whether `/` in the mount namespace of `pid` propagates mounts (shared or slave), as a kubelet node's
/// does (systemd makes it shared): Docker refuses `rslave` from a private source.
fn root_propagates(pid: u32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() > 6
            && f[4] == "/"
            && f[6..].iter().take_while(|x| **x != "-").any(|o| o.starts_with("shared:") || o.starts_with("master:"))
    })
}

/// The optional fields (`shared:N`, `master:N`) of the mount at `mount_point` in `/proc/<pid>/mountinfo`,
/// or `None` when nothing is mounted there.
fn mount_at(pid: u32, mount_point: &str) -> Option<Vec<String>> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 6 && f[4] == mount_point)
            .then(|| f[6..].iter().take_while(|x| **x != "-").map(|x| (*x).to_owned()).collect())
    })
}

/// Scrapes the agent until `series` has the value `want` (a scan after a change may run before the
/// container wrote); fails after 30 s with the last value.
fn wait_for_series(port: u16, series: &str, want: u64, engine: &crate::harness::Engine) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = scrape(port).unwrap_or_default();
        let line = body.lines().find(|l| l.starts_with(series));
        let value = line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<u64>().ok());
        if value == Some(want) {
            return;
        }
        if Instant::now() > deadline {
            let logs = engine.docker(&["logs", "--tail", "5", "agent"]);
            panic!("{series} is {line:?}, not {want}, from the agent run as the DaemonSet says:\n{body}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn size_rw(engine: &crate::harness::Engine, id: &str) -> u64 {
    engine
        .api_get("/containers/json?all=1&size=1")
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["Id"] == id)
        .and_then(|x| x["SizeRw"].as_u64())
        .expect("SizeRw")
}

/// The manifest's settings as `docker run` flags: the host's / read-only at /host with slave propagation
/// (HostToContainer: `rslave`), host PID namespace, read-only root, only CAP_DAC_READ_SEARCH, no privilege
/// escalation, the memory and CPU limits, the manifest's args; only the metrics address differs (loopback
/// on the host network, so the test can scrape it). The engine runs as a node of its own (see
/// [`EngineOptions::node_namespaces`]): this project's VMs have a private `/`, from which Docker refuses
/// `rslave`, and a kubelet node's `/` is shared. A container started after the agent then shows its
/// overlay mount inside the agent's `/host` (the propagation at work, read from the agent's own
/// `/proc/<pid>/mountinfo`), and the agent attributes it with Docker's `SizeRw`.
#[test]
fn daemonset_settings_run_on_a_real_engine() {
    let ds = manifest("daemonset.yaml");
    let c = agent_container(&ds);
    let options = EngineOptions { node_namespaces: true, ..EngineOptions::default() };
    let Some(engine) = Engine::start_with(options).unwrap_or_else(|e| panic!("cannot start a private dockerd: {e}"))
    else {
        return;
    };
    assert!(root_propagates(engine.pid()), "/ is shared in the engine's mount namespace");
    engine.import_busybox("bb:1");
    let id = engine.docker(&["run", "-d", "--name", "w1", "bb:1", "sh", "-c", "echo hello > /w; sleep 300"]);
    import_agent_image(&engine, "ovlaudit", false);
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
    let mut host_mount = None;
    for m in c["volumeMounts"].as_array().expect("mounts") {
        let volume = ds["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("volume");
        // Kubernetes' mount propagation modes as the kubelet asks the runtime for them.
        let propagation = match m["mountPropagation"].as_str() {
            Some("HostToContainer") => ",rslave",
            Some("Bidirectional") => ",rshared",
            _ => "",
        };
        let ro = if m["readOnly"] == true { "ro" } else { "rw" };
        let host = volume["hostPath"]["path"].as_str().expect("hostPath");
        let path = m["mountPath"].as_str().expect("path");
        if host == "/" {
            host_mount = Some((path.to_owned(), propagation));
        }
        flags.extend(["-v".into(), format!("{host}:{path}:{ro}{propagation}")]);
    }
    let (host_path, propagation) = host_mount.expect("the host's / is mounted");
    assert_eq!(propagation, ",rslave", "HostToContainer");
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

    let series = |id: &str| {
        format!("ovlaudit_container_writable_apparent_bytes{{engine=\"docker\",engine_namespace=\"\",id=\"{id}\"")
    };
    wait_for_series(port, &series(&id), size_rw(&engine, &id), &engine);

    // A container started after the agent: its overlay is mounted in the node's namespace after the
    // agent's /host was bound, and reaches the agent only by propagation.
    let late =
        engine.docker(&["run", "-d", "--name", "late", "bb:1", "sh", "-c", "head -c 12345 /dev/zero > /l; sleep 300"]);
    let agent_pid: u32 = engine.docker(&["inspect", "--format", "{{.State.Pid}}", "agent"]).parse().expect("pid");
    let agent_pid = engine.host_pid(agent_pid).expect("the agent's pid on the host");
    let merged = engine.docker(&["inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", &late]);
    let inside = format!("{host_path}{merged}");
    let fields = mount_at(agent_pid, &inside).unwrap_or_else(|| panic!("{inside} is not mounted in the agent"));
    let host_fields = mount_at(agent_pid, &host_path).expect("/host is mounted in the agent");
    assert!(host_fields.iter().any(|f| f.starts_with("master:")), "/host is a slave mount: {host_fields:?}");
    assert!(fields.iter().any(|f| f.starts_with("master:")), "{inside} came by propagation: {fields:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while size_rw(&engine, &late) < 12345 {
        assert!(Instant::now() < deadline, "the late container did not write");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The agent scans every hour here: it picks the new container up from the mount table's change.
    wait_for_series(port, &series(&late), size_rw(&engine, &late), &engine);
    let running = format!("ovlaudit_container_running{{engine=\"docker\",engine_namespace=\"\",id=\"{late}\"");
    wait_for_series(port, &running, 1, &engine);
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

//! A host with three engines at once — a private dockerd, a private Podman and a private containerd
//! driven with `ctr` — audited in one report: containerd's snapshots compared with `ctr snapshots usage`,
//! its layers with the image's DiffIDs, its mounts with the mount table; every container attributed to
//! the engine that made it, and no engine's live directory called an orphan by another's audit.

use crate::common::{chain_ids_by_sha256sum, du_allocated, ovlaudit};
use crate::harness::containerd::Containerd;
use crate::harness::podman::{Podman, ULIMITS};
use crate::harness::Engine;
use serde_json::Value;

/// `ctr snapshots usage -b KEY`: the snapshotter's size of one snapshot, in bytes.
pub(crate) fn ctr_usage(ctrd: &Containerd, ns: &str, key: &str) -> u64 {
    let out = ctrd.ctr(&["-n", ns, "snapshots", "usage", "-b", key]);
    let line = out.lines().nth(1).unwrap_or_else(|| panic!("no usage line for {key}: {out}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&key), "{out}");
    fields.get(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no size in {line:?}"))
}

#[test]
fn three_engines_on_one_host() {
    let Some(docker) = Engine::start().unwrap_or_else(|e| panic!("{e}")) else { return };
    let Some(podman) = Podman::start().unwrap_or_else(|e| panic!("{e}")) else { return };
    let Some(ctrd) = Containerd::start().unwrap_or_else(|e| panic!("{e}")) else { return };

    docker.import_busybox("bb:1");
    let multi = docker.build("multi:1", "FROM bb:1\nRUN echo two > /two\nRUN echo three > /three\n");
    assert!(multi.starts_with("sha256:"));
    let docker_id = docker.docker(&["run", "-d", "--name", "dweb", "bb:1", "sh", "-c", "echo d > /d; sleep 1000"]);
    let archive = docker.save("multi:1");
    let diff_ids: Vec<String> = docker.api_get("/images/multi:1/json")["RootFS"]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect();

    podman.import_busybox("bb:1");
    let mut args = vec!["run", "-d", "--network", "none"];
    args.extend(ULIMITS);
    args.extend(["--name", "pweb", "localhost/bb:1", "sh", "-c", "echo p > /p; sleep 1000"]);
    let podman_id = podman.podman(&args);

    let image = "docker.io/library/multi:1";
    for ns in ["default", "k8s.io"] {
        ctrd.ctr_stdin(&["-n", ns, "images", "import", "-"], &archive);
    }
    ctrd.ctr(&[
        "-n",
        "default",
        "run",
        "-d",
        image,
        "c-run",
        "sh",
        "-c",
        "head -c 50000 /dev/urandom > /blob; rm /two; sleep 1000",
    ]);
    ctrd.ctr(&["-n", "k8s.io", "containers", "create", image, "c-idle"]);
    ctrd.ctr(&["-n", "k8s.io", "run", "-d", image, "c-k8s", "sh", "-c", "mkdir /d && touch /d/x; sleep 1000"]);
    for _ in 0..200 {
        let done = ["default", "k8s.io"].iter().all(|ns| {
            let t = ctrd.ctr(&["-n", ns, "tasks", "list"]);
            !t.contains("CREATED")
        });
        let written = std::fs::read_to_string("/proc/self/mountinfo").is_ok();
        if done && written {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));

    let out = ovlaudit(&[
        "report",
        "--format",
        "json",
        "--docker-root",
        docker.data_root().to_str().expect("utf-8"),
        "--podman-root",
        podman.root().to_str().expect("utf-8"),
        "--containerd-root",
        ctrd.root().to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let containers = r["containers"].as_array().expect("containers");
    let by_id = |id: &str| {
        containers.iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("{id} not in report: {containers:#?}"))
    };

    // Every container, with its engine.
    assert_eq!(by_id(&docker_id)["runtime"], "docker");
    assert_eq!(by_id(&podman_id)["runtime"], "podman");
    for (id, ns) in [("c-run", "default"), ("c-idle", "k8s.io"), ("c-k8s", "k8s.io")] {
        let c = by_id(id);
        assert_eq!(c["runtime"], "containerd", "{id}");
        assert_eq!(c["namespace"], ns, "{id}");
    }
    assert_eq!(containers.len(), 5, "no container counted twice or by the wrong engine");

    // containerd: sizes as `ctr snapshots usage` gives them, layers as the image's DiffIDs.
    for (id, ns) in [("c-run", "default"), ("c-idle", "k8s.io"), ("c-k8s", "k8s.io")] {
        let c = by_id(id);
        let w = &c["writable"];
        assert_eq!(w["engine_bytes"].as_u64(), Some(ctr_usage(&ctrd, ns, id)), "ctr snapshots usage of {id}");
        assert_eq!(w["engine_bytes"], w["allocated_bytes"], "{id}");
        assert_eq!(w["allocated_bytes"].as_u64(), Some(du_allocated(w["upperdir"].as_str().expect("upperdir"))));
        let layers = c["layers"].as_array().expect("layers");
        let diffs: Vec<String> = layers.iter().map(|l| l["diff_id"].as_str().unwrap_or_default().to_owned()).collect();
        assert_eq!(diffs, diff_ids, "DiffIDs of {id}");
        let chains: Vec<String> =
            layers.iter().map(|l| l["chain_id"].as_str().unwrap_or_default().to_owned()).collect();
        assert_eq!(chains, chain_ids_by_sha256sum(&diff_ids), "ChainIDs of {id}");
        for l in layers {
            let key = l["chain_id"].as_str().expect("chain id");
            assert_eq!(l["size_bytes"].as_u64(), Some(ctr_usage(&ctrd, ns, key)), "committed snapshot {key}");
        }
    }
    let run = by_id("c-run");
    assert_eq!(run["state"], "running");
    assert_eq!(run["writable"]["whiteouts"], 1, "rm /two");
    let m = &run["mount"];
    assert_eq!(m["upperdir"], run["writable"]["upperdir"]);
    assert_eq!(m["lowerdirs"], run["writable"]["lowerdirs"], "mount lowerdirs, top first, as the snapshot parents");
    let mountpoint = m["mountpoint"].as_str().expect("mountpoint");
    assert!(mountpoint.ends_with("/default/c-run/rootfs"), "{mountpoint}");
    assert_eq!(by_id("c-idle")["state"], "created");
    assert_eq!(by_id("c-idle")["mount"], Value::Null);

    // containerd images: one per namespace, each with its unpacked size.
    let ctr_images: Vec<&Value> =
        r["images"].as_array().expect("images").iter().filter(|i| i["runtime"] == "containerd").collect();
    assert_eq!(ctr_images.len(), 2);
    for i in ctr_images {
        assert_eq!(i["tags"][0], image);
        let ns = i["namespace"].as_str().expect("namespace");
        let expected: u64 = chain_ids_by_sha256sum(&diff_ids).iter().map(|k| ctr_usage(&ctrd, ns, k)).sum();
        assert_eq!(i["size_bytes"].as_u64(), Some(expected), "unpacked size in {ns}");
    }

    // Nothing live is an orphan, and every overlay mount of the three engines is claimed.
    assert_eq!(r["orphans"].as_array().map(Vec::len), Some(0), "{:#?}", r["orphans"]);
    for dir in [docker.dir(), podman.dir(), ctrd.root().as_path()] {
        let dir = dir.to_str().expect("utf-8");
        for m in r["unowned_mounts"].as_array().expect("unowned") {
            let upper = m["upperdir"].as_str().unwrap_or_default();
            assert!(!upper.starts_with(dir), "a mount of an engine under test is unclaimed: {m:#}");
        }
    }
    let engines: Vec<&str> =
        r["sources"]["engines"].as_array().expect("engines").iter().filter_map(|e| e["engine"].as_str()).collect();
    for e in ["docker", "podman", "containerd"] {
        assert!(engines.contains(&e), "{engines:?}");
    }

    let table = ovlaudit(&[
        "report",
        "--docker-root",
        docker.data_root().to_str().expect("utf-8"),
        "--podman-root",
        podman.root().to_str().expect("utf-8"),
        "--containerd-root",
        ctrd.root().to_str().expect("utf-8"),
    ]);
    assert!(table.status.success());
    eprintln!("{}", String::from_utf8_lossy(&table.stdout));
}

/// `ovlaudit run` watches the other engines' metadata too: a Podman container and a containerd container
/// that are created but never started (so no mount changes) are reported within 5 s, with an hour's interval.
#[test]
fn run_notices_containers_created_in_podman_and_containerd() {
    let Some(docker) = Engine::start().unwrap_or_else(|e| panic!("{e}")) else { return };
    let Some(podman) = Podman::start().unwrap_or_else(|e| panic!("{e}")) else { return };
    let Some(ctrd) = Containerd::start().unwrap_or_else(|e| panic!("{e}")) else { return };
    docker.import_busybox("bb:1");
    let archive = docker.save("bb:1");
    podman.import_busybox("bb:1");
    ctrd.ctr_stdin(&["-n", "default", "images", "import", "-"], &archive);

    // The agent watches a private mount namespace's table, so the engines' own mounts cannot be what wakes
    // it: only the metadata watches can.
    let Some(ns) = crate::agent::PrivateMountNs::start() else { return };
    let proc_dir = ns.proc_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::agent::empty_config(dir.path());
    let (podman_root, ctrd_root) = (podman.root(), ctrd.root());
    let agent = crate::agent::Agent::start(
        &[
            "--config",
            &config,
            "--interval",
            "1h",
            "--docker-root",
            docker.data_root().to_str().expect("utf-8"),
            "--podman-root",
            podman_root.to_str().expect("utf-8"),
            "--containerd-root",
            ctrd_root.to_str().expect("utf-8"),
            "--proc",
            proc_dir.to_str().expect("utf-8"),
        ],
        &[],
    );
    agent.wait_until(std::time::Duration::from_secs(20), "the first scan", |s| !s.is_empty());
    let names = |s: &crate::agent::Scan| -> Vec<String> {
        s.events
            .iter()
            .filter(|e| e["event"]["dataset"] == "ovlaudit.container")
            .filter_map(|e| e["container"]["name"].as_str().map(str::to_owned))
            .collect()
    };

    let mut args = vec!["create", "--network", "none"];
    args.extend(ULIMITS);
    args.extend(["--name", "p-new", "localhost/bb:1", "true"]);
    podman.podman(&args);
    let created = std::time::Instant::now();
    let scans = agent.wait_until(std::time::Duration::from_secs(10), "an event for p-new", |s| {
        s.last().is_some_and(|l| names(l).contains(&"p-new".to_owned()))
    });
    let took = scans.last().expect("a scan").at.saturating_duration_since(created);
    eprintln!("podman create: reported after {} ms", took.as_millis());
    assert!(took <= std::time::Duration::from_secs(5), "{took:?}");

    ctrd.ctr(&["-n", "default", "containers", "create", "docker.io/library/bb:1", "c-new"]);
    let created = std::time::Instant::now();
    let scans = agent.wait_until(std::time::Duration::from_secs(10), "an event for c-new", |s| {
        s.last().is_some_and(|l| names(l).contains(&"c-new".to_owned()))
    });
    let took = scans.last().expect("a scan").at.saturating_duration_since(created);
    eprintln!("ctr containers create: reported after {} ms", took.as_millis());
    assert!(took <= std::time::Duration::from_secs(5), "{took:?}");
}

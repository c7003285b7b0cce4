//! Mount tables as real hosts have them: the agent in a container that holds the engine's data root with
//! slave propagation, started before some of the containers it audits, so that it sees every overlay
//! mount at several mount points (its own root at `/` and at its merged path, the others propagated in),
//! some with relative layer paths (images of more than 64 layers); and an engine nested in a container
//! (Docker-in-Docker, its data root in a volume), in a container's writable layer, and containerd roots
//! nested as kind nodes keep them. Ownership, layers, sizes and counts are compared with the
//! engines' own answers.

use crate::harness::containerd::Containerd;
use crate::harness::{start_engine, Engine, EngineOptions};
use crate::run_docker::import_agent_image;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The running containers' ids, from the engine.
fn running_ids(engine: &Engine) -> BTreeSet<String> {
    let list = engine.api_get("/containers/json");
    list.as_array().expect("list").iter().map(|c| c["Id"].as_str().expect("Id").to_owned()).collect()
}

/// `ovlaudit report` run inside the container `name`, reading that container's own mount table.
fn report_inside(engine: &Engine, name: &str, root: &str) -> Value {
    let out = engine.docker(&["exec", name, "ovlaudit", "report", "--format", "json", "--docker-root", root]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("report is not JSON ({e}): {out}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_owned()).collect()
}

/// The agent in a container with the data root bound `ro,rslave` at its own path: containers started
/// before and after it, its own root, and images of 2 and 72 layers (Docker mounts the latter with
/// relative `lowerdir=l/…` paths, which its own root at `/` cannot anchor) are each one overlay, owned by
/// their container, with the engine's layers, and no finding is an error.
#[test]
fn agent_with_the_data_root_bound_rslave_owns_every_container_once() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    import_agent_image(&engine, "ovlaudit:short", true);
    engine.build_layered("ovlaudit:long", "ovlaudit:short", 70);
    let root = engine.data_root().to_str().expect("utf-8").to_owned();

    engine.docker(&["run", "-d", "--name", "before-short", "bb:1", "sleep", "600"]);
    engine.docker(&["run", "-d", "--name", "before-long", "ovlaudit:long", "sleep", "600"]);
    let bind = format!("{root}:{root}:ro,rslave");
    let agent = engine.docker(&[
        "run",
        "-d",
        "--name",
        "audit",
        "--network",
        "none",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "DAC_READ_SEARCH",
        "-v",
        &bind,
        "ovlaudit:long",
        "ovlaudit",
        "run",
        "--docker-root",
        &root,
        "--interval",
        "1h",
    ]);
    engine.docker(&["run", "-d", "--name", "after-short", "bb:1", "sleep", "600"]);
    engine.docker(&["run", "-d", "--name", "after-long", "ovlaudit:long", "sleep", "600"]);

    let running = running_ids(&engine);
    assert_eq!(running.len(), 5);
    let report = report_inside(&engine, "audit", &root);
    let containers = report["containers"].as_array().expect("containers");
    let reported: BTreeSet<String> = containers.iter().map(|c| c["id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(reported, running);

    let mut mount_points = 0;
    for id in &running {
        let c = containers.iter().find(|c| c["id"] == id.as_str()).expect("reported");
        let data = &engine.api_get(&format!("/containers/{id}/json"))["GraphDriver"]["Data"];
        let m = &c["mount"];
        assert!(m.is_object(), "{} owns its mount: {c}", c["name"]);
        assert_eq!(m["mountpoint"], data["MergedDir"], "{}", c["name"]);
        assert_eq!(m["upperdir"], data["UpperDir"], "{}", c["name"]);
        let lower: Vec<String> = data["LowerDir"].as_str().expect("LowerDir").split(':').map(str::to_owned).collect();
        assert_eq!(strings(&m["lowerdirs"]), lower, "{}: the mounted layers are the engine's", c["name"]);
        let points = strings(&m["mountpoints"]);
        assert!(points.contains(&data["MergedDir"].as_str().expect("MergedDir").to_owned()), "{points:?}");
        mount_points += points.len();
        if c["name"].as_str().expect("name").ends_with("long") || *id == agent {
            assert_eq!(m["relative_paths"], true, "{}: 70 more layers are mounted with relative paths", c["name"]);
            assert_eq!(lower.len(), 72, "init layer, base layer and 70 more layers");
        }
    }
    let own = containers.iter().find(|c| c["id"] == agent.as_str()).expect("the agent's own container");
    assert!(strings(&own["mount"]["mountpoints"]).contains(&"/".to_owned()), "its root is its mount: {own}");

    let totals = &report["totals"];
    assert_eq!(totals["overlay_mounts"], 5, "one per superblock: {totals}");
    assert_eq!(totals["overlay_mount_points"], mount_points as u64);
    assert!(mount_points > 5, "the agent's own root is seen at / and at its merged path");
    assert_eq!(totals["unowned_mounts"], 0, "{}", report["unowned_mounts"]);
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(totals["findings"]["error"], 0, "{findings:?}");
    assert!(!findings.iter().any(|f| f["code"] == "overlay_relative_unanchored"), "{findings:?}");
}

/// Capabilities a nested dockerd needs; not `SYS_RESOURCE`, which is outside these machines' bounding set
/// (so neither `--privileged` nor `--cap-add ALL` works here).
const DIND_CAPS: &[&str] = &[
    "SYS_ADMIN",
    "NET_ADMIN",
    "MKNOD",
    "SYS_PTRACE",
    "SYS_CHROOT",
    "SETUID",
    "SETGID",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "KILL",
    "NET_RAW",
    "SETPCAP",
    "SETFCAP",
    "AUDIT_WRITE",
    "SYS_NICE",
    "IPC_LOCK",
];

/// Imports `name`: an image with nothing but the directories a root needs, `/usr` (bound read-only from
/// this machine at run time, with its dockerd, containerd, runc and client) reached through the same
/// `/bin`, `/lib`… symlinks as here. Returns the `-v` flags for the directories that are not symlinks here.
fn import_dind_image(engine: &Engine, name: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut binds = vec!["/usr:/usr:ro".to_owned()];
    for d in ["etc", "usr", "var/lib/docker", "run", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    for d in ["bin", "sbin", "lib", "lib64"] {
        let here = Path::new("/").join(d);
        match std::fs::read_link(&here) {
            Ok(target) => std::os::unix::fs::symlink(target, dir.path().join(d)).expect("symlink"),
            Err(_) if here.is_dir() => {
                std::fs::create_dir(dir.path().join(d)).expect("mkdir");
                binds.push(format!("{}:{}:ro", here.display(), here.display()));
            }
            Err(_) => {}
        }
    }
    std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\n").expect("group");
    let tar = Command::new("tar").arg("-C").arg(dir.path()).args(["-c", "."]).output().expect("tar");
    engine.docker_stdin(&["import", "-", name], &tar.stdout);
    binds
}

/// Docker-in-Docker: a dockerd in a container, its data root in a volume. The outer report finds that
/// engine, names it nested in its container, lists its containers with their sizes as the inner engine
/// gives them and their live mounts (read from the outer container's mount namespace, named as host
/// paths), and counts the volume nowhere else; every running container of both owns one overlay, and no
/// finding is an error.
#[test]
fn docker_in_docker_engine_is_found_named_with_its_owner_and_sized_once() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let binds = import_dind_image(&engine, "dind:1");
    let mut args: Vec<String> = ["run", "-d", "--name", "dind", "--network", "none"].map(String::from).to_vec();
    for cap in DIND_CAPS {
        args.extend(["--cap-add".to_owned(), (*cap).to_owned()]);
    }
    for opt in ["seccomp=unconfined", "apparmor=unconfined"] {
        args.extend(["--security-opt".to_owned(), opt.to_owned()]);
    }
    args.extend(
        ["--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/tmp"]
            .map(String::from),
    );
    for b in &binds {
        args.extend(["-v".to_owned(), b.clone()]);
    }
    args.extend(
        ["-v", "dindvol:/var/lib/docker", "dind:1", "dockerd", "--bridge=none", "--iptables=false"].map(String::from),
    );
    args.extend(["--ip-masq=false", "--storage-driver=overlay2", "-H", "unix:///run/docker.sock"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dind = engine.docker(&args);
    let inner = |args: &[&str]| {
        let mut all = vec!["exec", "dind", "docker", "-H", "unix:///run/docker.sock"];
        all.extend(args);
        engine.docker(&all)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = Command::new(crate::harness::DOCKER_CLIENT)
            .arg("-H")
            .arg(format!("unix://{}", engine.socket().display()))
            .args(["exec", "dind", "docker", "-H", "unix:///run/docker.sock", "version"])
            .output()
            .expect("docker exec");
        if up.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the nested dockerd did not come up: {}", engine.docker(&["logs", "dind"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    let image = engine.save("bb:1");
    engine.docker_stdin(&["exec", "-i", "dind", "docker", "-H", "unix:///run/docker.sock", "load"], &image);
    let run_id = inner(&["run", "-d", "--name", "inner-run", "bb:1", "sh", "-c", "echo hello > /f; exec sleep 600"]);
    let idle_id = inner(&["create", "--name", "inner-idle", "bb:1", "true"]);
    engine.docker(&["run", "-d", "--name", "outer", "bb:1", "sleep", "600"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while inner(&["inspect", "--size", "-f", "{{.SizeRw}}", "inner-run"]) == "0" {
        assert!(Instant::now() < deadline, "inner-run wrote nothing");
        std::thread::sleep(Duration::from_millis(100));
    }

    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let out = crate::common::ovlaudit(&["report", "--format", "json", "--docker-root", &root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");

    // The volume, as the outer engine names it on the host.
    let mounts = engine.api_get(&format!("/containers/{dind}/json"))["Mounts"].clone();
    let volume = mounts.as_array().expect("Mounts").iter().find(|m| m["Name"] == "dindvol").expect("the volume");
    let source = volume["Source"].as_str().expect("Source").to_owned();
    let nested = report["sources"]["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .find(|e| e["root"] == source.as_str())
        .unwrap_or_else(|| panic!("the nested data root {source} is found: {}", report["sources"]));
    assert_eq!(nested["engine"], "docker");
    let owner = &nested["nested_in"];
    assert_eq!(owner["container_id"], dind.as_str());
    assert_eq!(owner["container_name"], "dind");
    assert_eq!(owner["path_in_container"], "/var/lib/docker");
    assert_eq!((&owner["mount_type"], &owner["volume"]), (&Value::from("volume"), &Value::from("dindvol")));

    let containers = report["containers"].as_array().expect("containers");
    let inner_ids: BTreeSet<String> = inner(&["ps", "-aq", "--no-trunc"]).lines().map(str::to_owned).collect();
    assert_eq!(inner_ids, BTreeSet::from([run_id.clone(), idle_id.clone()]));
    let reported_inner: BTreeSet<String> = containers
        .iter()
        .filter(|c| c["nested_in"]["container_id"] == dind.as_str())
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(reported_inner, inner_ids);
    let to_host = |p: &str| format!("{source}{}", p.strip_prefix("/var/lib/docker").expect("inner path"));
    for id in &inner_ids {
        let c = containers.iter().find(|c| c["id"] == id.as_str()).expect("reported");
        let size: u64 = inner(&["inspect", "--size", "-f", "{{.SizeRw}}", id]).parse().expect("SizeRw");
        assert_eq!(c["writable"]["apparent_bytes"], size, "{}: the inner engine's SizeRw", c["name"]);
        let upper = inner(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", id]);
        assert_eq!(c["writable"]["upperdir"], to_host(&upper));
    }
    let run = containers.iter().find(|c| c["id"] == run_id.as_str()).expect("inner-run");
    assert_eq!(run["state"], "running");
    let m = &run["mount"];
    assert_eq!(m["upperdir"], to_host(&inner(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &run_id])));
    assert_eq!(m["mountpoint"], to_host(&inner(&["inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", &run_id])));
    let lower = inner(&["inspect", "-f", "{{.GraphDriver.Data.LowerDir}}", &run_id]);
    let lower: Vec<String> = lower.split(':').map(to_host).collect();
    assert_eq!(strings(&m["lowerdirs"]), lower);

    // The outer containers, the nested engine's host among them, own their mounts and are sized as the
    // outer engine sizes them: the volume is in no writable layer.
    let listed = engine.api_get("/containers/json?all=1&size=1");
    for e in listed.as_array().expect("list") {
        let c = containers.iter().find(|c| c["id"] == e["Id"]).expect("outer container reported");
        assert!(c["nested_in"].is_null());
        assert_eq!(c["writable"]["apparent_bytes"], e["SizeRw"].as_u64().unwrap_or(0), "{}", c["name"]);
        assert!(c["mount"].is_object(), "{} owns its mount", c["name"]);
    }
    let devices: Vec<&str> = containers.iter().filter_map(|c| c["mount"]["device"].as_str()).collect();
    assert_eq!(devices.len(), 3, "dind, outer and inner-run are mounted");
    assert_eq!(devices.iter().collect::<BTreeSet<_>>().len(), 3, "one overlay per superblock");
    let ours = |m: &Value| m["upperdir"].as_str().is_some_and(|u| u.starts_with(&root));
    let unowned = report["unowned_mounts"].as_array().expect("unowned_mounts");
    assert!(!unowned.iter().any(ours), "{unowned:?}");
    assert_eq!(report["totals"]["findings"]["error"], 0, "{}", report["findings"]);

    // The same scan as events: each nested container's event carries its owner, and all match the schema.
    let out = crate::common::ovlaudit(&["report", "--format", "ndjson", "--docker-root", &root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    crate::events::assert_events_valid(&crate::events::event_validator(), &events);
    let owned_by_dind =
        events.iter().filter(|e| e["ovlaudit"]["container"]["nested_in"]["container_id"] == dind.as_str()).count();
    assert_eq!(owned_by_dind, 2);
}

/// What the outer engine says of a container: its `GraphDriver.Data.UpperDir` and its `SizeRw`.
fn upper_and_size(engine: &Engine, id: &str) -> (String, u64) {
    let upper = engine.api_get(&format!("/containers/{id}/json"))["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .expect("UpperDir")
        .to_owned();
    let listed = engine.api_get("/containers/json?all=1&size=1");
    let size = listed.as_array().expect("list").iter().find(|c| c["Id"] == id).expect("listed")["SizeRw"]
        .as_u64()
        .unwrap_or(0);
    (upper, size)
}

/// A private containerd whose root is `root`, with busybox imported from `archive` and a task `c-run` that
/// wrote a file; `None` (skipped) without containerd.
fn containerd_with_a_task(root: PathBuf, archive: &[u8]) -> Option<Containerd> {
    let ctrd = Containerd::start_at(Some(root)).unwrap_or_else(|e| panic!("{e}"))?;
    ctrd.ctr_stdin(&["-n", "default", "images", "import", "-"], archive);
    let image = "docker.io/library/bb:1";
    ctrd.ctr(&["-n", "default", "run", "-d", image, "c-run", "sh", "-c", "echo ctr > /w; sleep 600"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctrd.ctr(&["-n", "default", "tasks", "list"]).contains("RUNNING") {
        assert!(Instant::now() < deadline, "c-run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(ctrd)
}

/// Engines nested in containers beyond Docker-in-a-volume: a Docker data root in a container's writable
/// layer (made there by a second dockerd of this test, at `<upperdir>/var/lib/docker`, which is where a
/// dockerd in that container keeps it), and containerd roots as kind nodes keep them, one in a writable
/// layer and one in a volume (made by private containerds). Each is found, listed in `sources.engines`
/// with its owner, its containers reported with `nested_in` and sized as their own engine sizes them; the
/// owner's writable layer leaves the nested root out (it counts the owner's own file to the byte, where
/// the outer engine's `SizeRw` counts the nested root too), and no finding is an error.
#[test]
fn nested_engines_in_writable_layers_and_volumes_are_found_named_and_sized_once() {
    let Some(outer) = start_engine() else { return };
    outer.import_busybox("bb:1");
    let archive = outer.save("bb:1");
    let holder = outer.docker(&[
        "run",
        "-d",
        "--name",
        "dind-layer",
        "bb:1",
        "sh",
        "-c",
        "head -c 1000 /dev/zero > /own; exec sleep 600",
    ]);
    let kind_layer = outer.docker(&["run", "-d", "--name", "kind-layer", "bb:1", "sleep", "600"]);
    let kind_volume = outer.docker(&[
        "run",
        "-d",
        "--name",
        "kind-volume",
        "-v",
        "kindvol:/var/lib/containerd",
        "bb:1",
        "sleep",
        "600",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while upper_and_size(&outer, &holder).1 != 1000 {
        assert!(Instant::now() < deadline, "dind-layer did not write /own");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (holder_upper, _) = upper_and_size(&outer, &holder);
    let (kind_upper, _) = upper_and_size(&outer, &kind_layer);
    let mounts = outer.api_get(&format!("/containers/{kind_volume}/json"))["Mounts"].clone();
    let volume = mounts.as_array().expect("Mounts").iter().find(|m| m["Name"] == "kindvol").expect("the volume");
    let volume_root = PathBuf::from(volume["Source"].as_str().expect("Source"));

    let inner_root = Path::new(&holder_upper).join("var/lib/docker");
    let options = EngineOptions { data_root_at: Some(inner_root.clone()), ..EngineOptions::default() };
    let Some(inner) = Engine::start_with(options).unwrap_or_else(|e| panic!("{e}")) else { return };
    inner.import_busybox("bb:1");
    let inner_run =
        inner.docker(&["run", "-d", "--name", "inner-run", "bb:1", "sh", "-c", "echo hi > /f; exec sleep 600"]);
    let inner_idle = inner.docker(&["create", "--name", "inner-idle", "bb:1", "true"]);
    let Some(ctrd_layer) = containerd_with_a_task(Path::new(&kind_upper).join("var/lib/containerd"), &archive) else {
        return;
    };
    let Some(ctrd_volume) = containerd_with_a_task(volume_root.clone(), &archive) else { return };
    let deadline = Instant::now() + Duration::from_secs(20);
    while upper_and_size(&inner, &inner_run).1 != 3 {
        assert!(Instant::now() < deadline, "inner-run did not write /f");
        std::thread::sleep(Duration::from_millis(100));
    }

    let root = outer.data_root().to_str().expect("utf-8").to_owned();
    let out = crate::common::ovlaudit(&["report", "--format", "json", "--docker-root", &root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let engines = report["sources"]["engines"].as_array().expect("engines");
    let engine_at = |path: &Path| {
        engines
            .iter()
            .find(|e| e["root"] == path.to_str().expect("utf-8"))
            .unwrap_or_else(|| panic!("{} is found: {engines:?}", path.display()))
    };
    let ctrd_layer_root = ctrd_layer.root();
    for (path, engine, owner, name, inside, kind, vol) in [
        (inner_root.as_path(), "docker", &holder, "dind-layer", "/var/lib/docker", "writable_layer", Value::Null),
        (
            ctrd_layer_root.as_path(),
            "containerd",
            &kind_layer,
            "kind-layer",
            "/var/lib/containerd",
            "writable_layer",
            Value::Null,
        ),
        (
            volume_root.as_path(),
            "containerd",
            &kind_volume,
            "kind-volume",
            "/var/lib/containerd",
            "volume",
            Value::from("kindvol"),
        ),
    ] {
        let e = engine_at(path);
        assert_eq!(e["engine"], engine, "{e}");
        let n = &e["nested_in"];
        assert_eq!(
            (&n["container_id"], &n["container_name"]),
            (&Value::from(owner.as_str()), &Value::from(name)),
            "{e}"
        );
        assert_eq!(
            (&n["path_in_container"], &n["mount_type"], &n["volume"]),
            (&Value::from(inside), &Value::from(kind), &vol)
        );
    }

    let containers = report["containers"].as_array().expect("containers");
    let nested_in = |owner: &str| -> Vec<&Value> {
        containers.iter().filter(|c| c["nested_in"]["container_id"] == owner).collect()
    };
    // The nested Docker engine's containers, as it sizes them; the running one owns its mount.
    let mine: BTreeSet<&str> = nested_in(&holder).iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(mine, BTreeSet::from([inner_run.as_str(), inner_idle.as_str()]));
    for id in [&inner_run, &inner_idle] {
        let c = containers.iter().find(|c| c["id"] == id.as_str()).expect("reported");
        let (upper, size) = upper_and_size(&inner, id);
        assert_eq!(c["writable"]["apparent_bytes"], size, "{}: the nested engine's SizeRw", c["name"]);
        assert_eq!(c["writable"]["upperdir"], upper);
    }
    let run = containers.iter().find(|c| c["id"] == inner_run.as_str()).expect("inner-run");
    assert_eq!(run["mount"]["upperdir"], upper_and_size(&inner, &inner_run).0, "{run}");
    // The nested containerds' tasks, as `ctr snapshots usage` sizes them, each owning its mount.
    for (owner, ctrd) in [(&kind_layer, &ctrd_layer), (&kind_volume, &ctrd_volume)] {
        let theirs = nested_in(owner);
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        let c = theirs[0];
        assert_eq!((&c["id"], &c["runtime"]), (&Value::from("c-run"), &Value::from("containerd")));
        let usage = crate::report_engines::ctr_usage(ctrd, "default", "c-run");
        assert_eq!(c["writable"]["engine_bytes"], usage, "{c}");
        assert!(c["mount"].is_object(), "{c}");
        assert!(c["writable"]["upperdir"].as_str().is_some_and(|u| u.starts_with(&*ctrd.root().to_string_lossy())));
    }

    // The owners: the nested roots in their writable layers are left out of them, and said so; the
    // outer engine's SizeRw counts them. The volume is in no writable layer.
    let outer_container =
        |id: &str| containers.iter().find(|c| c["id"] == id && c["nested_in"].is_null()).expect("the outer container");
    for (id, own, nested) in [(&holder, 1000, &inner_root), (&kind_layer, 0, &ctrd_layer_root)] {
        let w = &outer_container(id)["writable"];
        assert_eq!(w["apparent_bytes"], own, "only the container's own files: {w}");
        assert_eq!(w["nested_engines"], serde_json::json!([nested.to_str().expect("utf-8")]), "{w}");
        let (_, size_rw) = upper_and_size(&outer, id);
        eprintln!("{}: apparent_bytes {own}, the outer engine's SizeRw {size_rw}", outer_container(id)["name"]);
        assert!(size_rw > own, "the outer engine counts the nested root in: SizeRw {size_rw}");
    }
    let w = &outer_container(&kind_volume)["writable"];
    assert_eq!(w["apparent_bytes"], upper_and_size(&outer, &kind_volume).1);
    assert!(w.get("nested_engines").is_none(), "{w}");

    for c in containers.iter().filter(|c| c["state"] == "running") {
        assert!(c["mount"].is_object(), "{} owns its mount", c["name"]);
    }
    // Every store of this test lies under the outer engine's directory; other tests' mounts may be in the
    // host's table too, and are theirs.
    let ours = |p: &Value| p.as_str().is_some_and(|p| p.starts_with(&*outer.dir().to_string_lossy()));
    let unowned = report["unowned_mounts"].as_array().expect("unowned_mounts");
    assert!(!unowned.iter().any(|m| ours(&m["upperdir"])), "{unowned:?}");
    let findings = report["findings"].as_array().expect("findings");
    let errors: Vec<&Value> =
        findings.iter().filter(|f| f["severity"] == "error" && (ours(&f["path"]) || f["path"].is_null())).collect();
    assert!(errors.is_empty(), "{errors:?}");

    // The same as events, which match the schema; each nested container's carries its owner.
    let out = crate::common::ovlaudit(&["report", "--format", "ndjson", "--docker-root", &root]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    crate::events::assert_events_valid(&crate::events::event_validator(), &events);
    let owners: Vec<&str> =
        events.iter().filter_map(|e| e["ovlaudit"]["container"]["nested_in"]["container_name"].as_str()).collect();
    assert_eq!(owners.len(), 4, "two of dind-layer's, one each of the kind nodes': {owners:?}");
}

/// `ovlaudit run` watches a nested engine's metadata once a scan found it: a containerd root in a
/// container's writable layer (a kind node's), found at the first scan; a container then created in it (no
/// change to the outer engine or to the mount table the agent watches: only a write to the nested `meta.db`)
/// is reported within seconds, with an hour's interval.
#[test]
fn run_watches_a_nested_engine_once_a_scan_found_it() {
    let Some(outer) = start_engine() else { return };
    outer.import_busybox("bb:1");
    let archive = outer.save("bb:1");
    let node = outer.docker(&["run", "-d", "--name", "kind-node", "bb:1", "sleep", "600"]);
    let (upper, _) = upper_and_size(&outer, &node);
    let Some(ctrd) = containerd_with_a_task(Path::new(&upper).join("var/lib/containerd"), &archive) else { return };

    // The agent watches a private mount namespace's table: `ctr containers create` mounts the new
    // snapshot for a moment (to read its /etc/group), which must not be what wakes it.
    let Some(ns) = crate::agent::PrivateMountNs::start() else { return };
    let proc_dir = ns.proc_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::agent::empty_config(dir.path());
    let root = outer.data_root().to_str().expect("utf-8").to_owned();
    let proc_arg = proc_dir.to_str().expect("utf-8");
    let args = ["--config", &config, "--docker-root", &root, "--interval", "1h", "--proc", proc_arg];
    let agent = crate::agent::Agent::start(&args, &[]);
    let owned_by_node = |state: &crate::agent::Replayed| -> BTreeSet<String> {
        state
            .objects("ovlaudit.container")
            .iter()
            .filter(|c| c["nested_in"]["container_id"] == node.as_str())
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect()
    };
    agent.wait_until(Duration::from_secs(30), "the first scan", |scans| !scans.is_empty());
    assert_eq!(owned_by_node(&agent.state()), BTreeSet::from(["c-run".to_owned()]), "{}", agent.log());

    let scans = agent.scans().len();
    let t = Instant::now();
    ctrd.ctr(&["-n", "default", "containers", "create", "docker.io/library/bb:1", "c-new"]);
    agent.wait_until(Duration::from_secs(20), "c-new in the stream", |_| {
        owned_by_node(&agent.state()).contains("c-new")
    });
    eprintln!("c-new reported {} ms after its creation", t.elapsed().as_millis());
    let later = agent.scans();
    assert!(later.len() > scans, "a scan other than the first reported it");
    assert!(later[scans..].iter().all(|s| s.summary()["reason"] != "interval"), "{}", agent.log());
}

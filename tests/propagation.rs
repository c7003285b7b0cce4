//! Mount tables as real hosts have them: the agent in a container that holds the engine's data root with
//! slave propagation, started before some of the containers it audits, so that it sees every overlay
//! mount at several mount points (its own root at `/` and at its merged path, the others propagated in),
//! some with relative layer paths (images of more than 64 layers). Ownership, layers and counts are
//! compared with the engine's API.

use crate::harness::{start_engine, Engine};
use crate::run_docker::import_agent_image;
use serde_json::Value;
use std::collections::BTreeSet;

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
    let mut dockerfile = String::from("FROM ovlaudit:short\n");
    for i in 1..=70 {
        dockerfile.push_str(&format!("RUN echo {i} > /f{i}\n"));
    }
    engine.build("ovlaudit:long", &dockerfile);
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
            assert_eq!(m["relative_paths"], true, "{}: 70 RUN layers are mounted with relative paths", c["name"]);
            assert_eq!(lower.len(), 72, "init layer, base layer and 70 RUN layers");
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

//! `ovlaudit inspect` against a real dockerd: a three-layer image whose top layer deletes one file of the
//! layer below and overwrites another, and a container of it; the stack's identities are compared with
//! the engine's (`RootFS.Layers`, `GraphDriver`), its figures with `stat` of the layer files.

use crate::common::ovlaudit;
use crate::harness::start_engine;
use serde_json::Value;
use std::path::Path;

fn size_of(path: &str) -> u64 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}")).len()
}

fn inspect(root: &Path, target: &str) -> Value {
    let root = root.to_str().expect("utf-8");
    let out = ovlaudit(&["inspect", target, "--format", "json", "--docker-root", root]);
    assert!(out.status.success(), "inspect {target}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

#[test]
fn inspect_shows_an_images_deleted_and_overwritten_files_and_a_containers_stack() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let id = engine.build(
        "ins:1",
        "FROM bb:1\nRUN head -c 50000 /bin/busybox > /big && head -c 3000 /bin/busybox > /keep\n\
         RUN rm /big && printf abc > /keep\n",
    );
    let root = engine.data_root();

    // The image: base first in the engine's answer, top first in the stack.
    let image = engine.api_get(&format!("/images/{id}/json"));
    let mut diff_ids: Vec<String> = image["RootFS"]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|v| v.as_str().expect("str").to_owned())
        .collect();
    diff_ids.reverse();
    let upper = image["GraphDriver"]["Data"]["UpperDir"].as_str().expect("UpperDir").to_owned();
    let lowers: Vec<String> =
        image["GraphDriver"]["Data"]["LowerDir"].as_str().expect("LowerDir").split(':').map(str::to_owned).collect();

    let s = inspect(root, "ins:1");
    assert_eq!(s["kind"], "image");
    assert_eq!(s["id"], id);
    let layers = s["layers"].as_array().expect("layers");
    let got: Vec<&str> = layers.iter().map(|l| l["diff_id"].as_str().expect("diff_id")).collect();
    assert_eq!(got, diff_ids);
    let top = &layers[0];
    assert_eq!(top["path"], upper);
    let cache = Path::new(&upper).parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).expect("cache id");
    assert_eq!(top["cache_id"], cache);
    assert_eq!(layers[1]["path"], lowers[0]);
    let a = &top["analysis"];
    assert_eq!(a["whiteouts"], 1, "/big deleted");
    assert_eq!(a["shadowed"]["bytes"], size_of(&format!("{}/big", lowers[0])));
    assert_eq!(a["shadowed"]["largest"][0]["path"], "/big");
    assert_eq!(a["copy_ups"]["files"], 1, "/keep overwritten");
    assert_eq!(a["copy_ups"]["changed_files"], 1);
    assert_eq!(a["copy_ups"]["bytes"], size_of(&format!("{upper}/keep")));
    assert_eq!(a["copy_ups"]["lower_bytes"], size_of(&format!("{}/keep", lowers[0])));
    assert_eq!(s["totals"]["wasted_bytes"], 50_000 + 3000);
    assert_eq!(layers[1]["shared_by_images"], serde_json::json!(["ins:1"]));

    // A container of it, by name, by id prefix and by mount point: the same stack under its own layers.
    engine.docker(&["run", "-d", "--name", "web", "ins:1", "sh", "-c", "chown 5 /keep; exec sleep 3600"]);
    engine.docker(&["exec", "web", "sh", "-c", "while [ \"$(stat -c %u /keep)\" != 5 ]; do sleep 0.1; done"]);
    let cid = engine.docker(&["inspect", "-f", "{{.Id}}", "web"]);
    let merged = engine.docker(&["inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", "web"]);
    let by_name = inspect(root, "web");
    assert_eq!(by_name["id"], cid);
    assert_eq!(inspect(root, &cid[..10])["id"], cid);
    assert_eq!(inspect(root, &merged)["id"], cid);
    assert_eq!(by_name["mountpoint"], merged.as_str());
    let roles: Vec<&str> =
        by_name["layers"].as_array().expect("layers").iter().map(|l| l["role"].as_str().expect("role")).collect();
    assert_eq!(roles, ["writable", "init", "image", "image", "image"]);
    let w = &by_name["layers"][0]["analysis"]["copy_ups"];
    assert_eq!((w["files"].as_u64(), w["identical_files"].as_u64()), (Some(1), Some(1)), "chown of /keep: {w}");
    assert_eq!(w["identical_bytes"], 3);
    assert_eq!(by_name["layers"][2]["shared_by_containers"], serde_json::json!(["web"]));

    // The tree names the layers by the engine's ids.
    let out = ovlaudit(&["inspect", "web", "--docker-root", root.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for d in &diff_ids {
        assert!(text.contains(&d["sha256:".len()..][..12]), "{d} in\n{text}");
    }
    assert!(text.contains(&merged), "the mount point in\n{text}");

    // Nothing matches: exit 2 with the name.
    let out = ovlaudit(&["inspect", "nosuch", "--docker-root", root.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no container or image named nosuch"));
}

//! `ovlaudit report` against a real, private dockerd: every number and path compared with the engine's own
//! API (`/containers/json?size=1`, `/containers/<id>/json`, `/images/<id>/json`) and with `du`.

use crate::common::{chain_ids_by_sha256sum, container, du_allocated, report_json};
use crate::harness::{start_engine, Engine};
use serde_json::Value;
use std::collections::BTreeSet;

fn str_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// Checks every container the engine lists against the report: SizeRw to the byte, state, image, layer
/// DiffIDs and ChainIDs, GraphDriver paths, and for running containers the live mount.
fn assert_report_matches_engine(engine: &Engine, report: &Value) {
    let listed = engine.api_get("/containers/json?all=1&size=1");
    let listed = listed.as_array().expect("container list");
    assert_eq!(
        report["containers"].as_array().map(Vec::len),
        Some(listed.len()),
        "report and engine list different numbers of containers"
    );
    for summary in listed {
        let id = summary["Id"].as_str().expect("Id");
        let c = container(report, id);
        let name = summary["Names"][0].as_str().expect("name").trim_start_matches('/');
        let size_rw = summary["SizeRw"].as_u64().unwrap_or(0);
        assert_eq!(c["name"], name);
        assert_eq!(c["writable"]["apparent_bytes"].as_u64(), Some(size_rw), "SizeRw of {name}");
        assert_eq!(c["state"], summary["State"], "state of {name}");
        assert_eq!(c["image"]["id"], summary["ImageID"], "image of {name}");

        let inspect = engine.api_get(&format!("/containers/{id}/json"));
        let gd = &inspect["GraphDriver"]["Data"];
        let w = &c["writable"];
        assert_eq!(w["upperdir"], gd["UpperDir"], "upperdir of {name}");
        assert_eq!(w["workdir"], gd["WorkDir"], "workdir of {name}");
        assert_eq!(w["mergeddir"], gd["MergedDir"], "mergeddir of {name}");
        let lower: Vec<String> = gd["LowerDir"].as_str().expect("LowerDir").split(':').map(str::to_owned).collect();
        assert_eq!(str_list(&w["lowerdirs"]), lower, "lowerdirs of {name}");
        let upper = gd["UpperDir"].as_str().expect("UpperDir");
        assert_eq!(w["allocated_bytes"].as_u64(), Some(du_allocated(upper)), "allocated bytes of {name} (du -sB1)");
        assert_eq!(w["errors"], 0, "walk errors for {name}");

        let image = engine.api_get(&format!("/images/{}/json", summary["ImageID"].as_str().expect("ImageID")));
        let diff_ids = str_list(&image["RootFS"]["Layers"]);
        let layers = c["layers"].as_array().expect("layers");
        let got: Vec<String> = layers.iter().map(|l| l["diff_id"].as_str().expect("diff_id").to_owned()).collect();
        assert_eq!(got, diff_ids, "layer DiffIDs of {name}, base first");
        let chains: Vec<String> = layers.iter().map(|l| l["chain_id"].as_str().expect("chain_id").to_owned()).collect();
        assert_eq!(chains, chain_ids_by_sha256sum(&diff_ids), "layer ChainIDs of {name}");
        let init = c["init_layer"]["cache_id"].as_str().expect("init layer");
        assert_eq!(lower[0], format!("{}/overlay2/{init}/diff", engine.data_root().display()), "init layer of {name}");

        if summary["State"] == "running" || summary["State"] == "paused" {
            let m = &c["mount"];
            assert_eq!(m["mountpoint"], gd["MergedDir"], "mountpoint of {name}");
            assert_eq!(m["upperdir"], gd["UpperDir"], "mounted upperdir of {name}");
            assert_eq!(m["workdir"], gd["WorkDir"], "mounted workdir of {name}");
            assert_eq!(str_list(&m["lowerdirs"]), lower, "mounted lowerdirs of {name}");
            assert!(m["mount_id"].as_u64().is_some(), "mount id of {name}");
            let roles: Vec<&str> =
                m["layers"].as_array().expect("layers").iter().filter_map(|l| l["role"].as_str()).collect();
            assert_eq!(roles.first(), Some(&"init"), "first lower of {name} is its init layer");
            let mounted_chains: Vec<String> = m["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .skip(1)
                .filter_map(|l| l["chain_id"].as_str().map(str::to_owned))
                .rev()
                .collect();
            assert_eq!(mounted_chains, chains, "mounted image layers of {name} by ChainID");
        } else {
            assert!(c["mount"].is_null(), "{name} is not running, so it has no live mount");
        }
    }
    let errors: Vec<&Value> =
        report["findings"].as_array().expect("findings").iter().filter(|f| f["severity"] == "error").collect();
    assert!(errors.is_empty(), "a healthy engine gives no error findings: {errors:?}");
}

#[test]
fn report_agrees_with_engine_for_every_kind_of_container() {
    let Some(engine) = start_engine() else { return };
    let bb = engine.import_busybox("bb:1");
    let multi = engine.build(
        "multi:1",
        "FROM bb:1\nRUN echo hi > /a.txt && mkdir -p /d/e && echo x > /d/e/f\nRUN rm /bin/vi && echo more >> /a.txt\n",
    );
    // Every kind of entry Docker's SizeRw rule treats specially, written from inside the container.
    engine.docker(&[
        "run",
        "--name",
        "files",
        "bb:1",
        "sh",
        "-c",
        "dd if=/dev/zero of=/f bs=1000 count=100 2>/dev/null && ln /f /f2 && truncate -s 10M /sparse \
         && ln -s abcdef /sl && rm /bin/ls && mkdir /ed && touch /ef && mkfifo /fifo",
    ]);
    engine.docker(&["create", "--name", "never", "bb:1", "true"]);
    engine.docker(&["run", "-d", "--name", "runner", "multi:1", "sh", "-c", "echo data > /x; exec sleep 3600"]);
    engine.docker(&["run", "--name", "twin1", "multi:1", "sh", "-c", "head -c 5000 /bin/busybox > /t1"]);
    engine.docker(&["run", "--name", "twin2", "multi:1", "sh", "-c", "rm -r /d && echo 12345 > /a.txt"]);
    engine.docker(&["run", "--name", "labelled", "--label", "com.docker.compose.project=shop", "bb:1", "true"]);

    let report = report_json(engine.data_root());
    assert_eq!(report["schema"], "ovlaudit.report/v1");
    assert_report_matches_engine(&engine, &report);

    // Hand-computed for the `files` container, independently of the engine: 100000 (the file and its hard
    // link, once) + 10485760 (sparse, in full) + 6 (the symlink's target length).
    let files_id = engine.docker(&["inspect", "-f", "{{.Id}}", "files"]);
    let w = &container(&report, &files_id)["writable"];
    assert_eq!(w["apparent_bytes"], 100_000 + 10_485_760 + 6);
    assert_eq!(w["files"], 4, "f, f2, sparse, ef");
    assert_eq!(w["symlinks"], 1);
    assert_eq!(w["whiteouts"], 1, "bin/ls deleted from the image");
    assert_eq!(w["other"], 1, "the FIFO");
    assert_eq!(w["dirs"], 2, "bin (copied up for the whiteout) and ed");
    // twin2 deleted a directory that came from the image: a whiteout, and a rewritten file.
    let twin2 = container(&report, &engine.docker(&["inspect", "-f", "{{.Id}}", "twin2"]));
    assert_eq!(twin2["writable"]["whiteouts"], 1);
    assert_eq!(twin2["state"], "exited");
    let never = container(&report, &engine.docker(&["inspect", "-f", "{{.Id}}", "never"]));
    assert_eq!(never["state"], "created");
    assert_eq!(never["writable"]["apparent_bytes"], 0);
    let labelled = container(&report, &engine.docker(&["inspect", "-f", "{{.Id}}", "labelled"]));
    assert_eq!(labelled["labels"]["com.docker.compose.project"], "shop");
    assert_eq!(labelled["image"]["tags"], serde_json::json!(["bb:1"]));
    assert_eq!(labelled["image"]["id"], bb);

    // The two twins share one image: same layers, distinct writable layers.
    let images = report["images"].as_array().expect("images");
    let m = images.iter().find(|i| i["id"] == multi).expect("multi:1 in images");
    assert_eq!(m["containers"], 3, "runner, twin1, twin2");
    assert_eq!(m["layers"].as_array().map(Vec::len), Some(3));
    assert_eq!(m["tags"], serde_json::json!(["multi:1"]));

    // Largest writable layer first.
    let sizes: Vec<u64> = report["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["writable"]["apparent_bytes"].as_u64().unwrap_or(0))
        .collect();
    assert!(sizes.windows(2).all(|p| p[0] >= p[1]), "containers sorted by writable size: {sizes:?}");
}

#[test]
fn containers_started_and_removed_between_reports() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let gone = engine.docker(&["run", "--name", "gone", "bb:1", "sh", "-c", "echo bye > /bye"]);
    let _ = gone;
    let gone_id = engine.docker(&["inspect", "-f", "{{.Id}}", "gone"]);
    let first = report_json(engine.data_root());
    container(&first, &gone_id);
    assert_report_matches_engine(&engine, &first);

    engine.docker(&["rm", "gone"]);
    engine.docker(&["run", "-d", "--name", "fresh", "bb:1", "sh", "-c", "seq 1 20000 > /numbers; exec sleep 3600"]);
    // The container has started when its file is complete.
    engine.docker(&["exec", "fresh", "sh", "-c", "while [ $(wc -l < /numbers) -lt 20000 ]; do sleep 0.1; done"]);
    let second = report_json(engine.data_root());
    let ids: BTreeSet<&str> =
        second["containers"].as_array().expect("containers").iter().filter_map(|c| c["id"].as_str()).collect();
    assert!(!ids.contains(gone_id.as_str()), "a removed container is gone from the next report");
    let fresh_id = engine.docker(&["inspect", "-f", "{{.Id}}", "fresh"]);
    let fresh = container(&second, &fresh_id);
    assert_eq!(fresh["state"], "running");
    assert_eq!(fresh["writable"]["apparent_bytes"], 108_894, "seq 1 20000 writes 108894 bytes");
    assert_report_matches_engine(&engine, &second);
}

#[test]
fn long_layer_chain_mounted_with_relative_paths_resolves_to_its_layers() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    // Past about 70 layers the option string would not fit in a page, so Docker mounts from inside
    // overlay2/ with relative paths (`lowerdir=l/…:l/…,upperdir=<id>/diff`).
    let mut dockerfile = String::from("FROM bb:1\n");
    for i in 1..=75 {
        dockerfile.push_str(&format!("RUN echo {i} > /f{i}\n"));
    }
    engine.build("long:1", &dockerfile);
    engine.docker(&["run", "-d", "--name", "long", "long:1", "sh", "-c", "echo x > /x; exec sleep 3600"]);
    engine.docker(&["run", "-d", "--name", "frozen", "bb:1", "sleep", "3600"]);
    engine.docker(&["pause", "frozen"]);

    let mountinfo = std::fs::read_to_string("/proc/1/mountinfo").expect("read mountinfo");
    let long_id = engine.docker(&["inspect", "-f", "{{.Id}}", "long"]);
    let gd = engine.api_get(&format!("/containers/{long_id}/json"))["GraphDriver"]["Data"].clone();
    let merged = gd["MergedDir"].as_str().expect("MergedDir");
    let line = mountinfo.lines().find(|l| l.contains(merged)).expect("the container's overlay is mounted");
    assert!(line.contains("lowerdir=l/"), "the engine really mounted with relative paths: {line}");

    let report = report_json(engine.data_root());
    assert_report_matches_engine(&engine, &report);
    let m = &container(&report, &long_id)["mount"];
    assert_eq!(m["relative_paths"], true);
    assert_eq!(str_list(&m["lowerdirs"]).len(), 77, "init layer + base + 75 RUN layers");
    let frozen = container(&report, &engine.docker(&["inspect", "-f", "{{.Id}}", "frozen"]));
    assert_eq!(frozen["state"], "paused");
    assert!(frozen["mount"].is_object(), "a paused container is still mounted");
    engine.docker(&["unpause", "frozen"]);
}

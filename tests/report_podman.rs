//! `ovlaudit report` against a real, private Podman (containers-storage, overlay driver, runc): every
//! container compared with `podman ps -a --size` and `podman inspect --size`, images with `podman image
//! inspect`, sizes with `du`.

use crate::common::{chain_ids_by_sha256sum, du_allocated, ovlaudit};
use crate::harness::podman::{Podman, ULIMITS};
use serde_json::Value;

fn report(podman: &Podman) -> Value {
    let root = podman.root();
    let root = root.to_str().expect("utf-8");
    // An empty directory as the Docker root and no containerd: only this Podman store is audited.
    let none = podman.dir().join("no-docker");
    let out = ovlaudit(&[
        "report",
        "--format",
        "json",
        "--docker-root",
        &format!("{}/", none.display()),
        "--podman-root",
        root,
        "--orphan-min-age",
        "10m",
    ]);
    assert!(!out.status.success(), "a named missing Docker root is an error");
    // Podman's own root, with the other engines' defaults: the assertions below look only at what this
    // store holds, whatever the host's own engines keep.
    let out = ovlaudit(&["report", "--format", "json", "--podman-root", root]);
    assert!(out.status.success(), "ovlaudit failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
}

#[test]
fn podman_containers_match_podman() {
    let Some(podman) = Podman::start().unwrap_or_else(|e| panic!("{e}")) else { return };
    podman.import_busybox("bb:1");
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--network", "none"];
        all.extend(ULIMITS);
        all.extend(args);
        podman.podman(&all)
    };
    // A second layer through commit (podman build would need a network namespace helper).
    run(&["--name", "builder", "localhost/bb:1", "sh", "-c", "echo second-layer > /layer2; rm /bin/vi"]);
    podman.podman(&["commit", "builder", "multi:1"]);
    podman.podman(&["rm", "builder"]);

    run(&[
        "-d",
        "--name",
        "web",
        "localhost/bb:1",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /f && ln /f /f2 && ln -s /target /link && truncate -s 10M /sparse && rm /bin/ls && sleep 1000",
    ]);
    run(&["--name", "batch", "localhost/multi:1", "sh", "-c", "mkdir -p /data && seq 1 5000 > /data/n"]);
    run(&["-d", "--name", "multi-running", "localhost/multi:1", "sleep", "1000"]);
    podman.podman(&["create", "--network", "none", "--name", "idle", "localhost/bb:1", "true"]);
    // Wait until the detached container has written its files.
    for _ in 0..200 {
        if podman.podman(&["exec", "web", "sh", "-c", "test -e /sparse && echo yes || true"]) == "yes" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A layer directory nothing names, made old enough to be called an orphan.
    let stray = podman.root().join("overlay").join("0".repeat(64));
    std::fs::create_dir_all(stray.join("diff")).expect("mkdir stray layer");
    std::fs::write(stray.join("diff/leftover"), vec![1u8; 30_000]).expect("write stray file");
    let touched =
        std::process::Command::new("touch").args(["-h", "-d", "2 hours ago"]).arg(&stray).status().expect("run touch");
    assert!(touched.success());

    let r = report(&podman);
    let listed = podman.json(&["ps", "-a", "--size", "--format", "json"]);
    let listed = listed.as_array().expect("ps list");
    assert_eq!(listed.len(), 4);
    // This store's containers: their writable layers lie under its root.
    let store = podman.root();
    let under_store = |p: &Value| p.as_str().is_some_and(|p| std::path::Path::new(p).starts_with(&store));
    let ours: Vec<&Value> = r["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter(|c| c["runtime"] == "podman" && under_store(&c["writable"]["layer_dir"]))
        .collect();
    assert_eq!(ours.len(), listed.len(), "report and podman list different numbers of containers");
    for summary in listed {
        let id = summary["Id"].as_str().expect("Id");
        let name = summary["Names"][0].as_str().expect("name");
        let c = ours.iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("container {name} not in report"));
        assert_eq!(c["name"], name);
        assert_eq!(c["state"], summary["State"], "state of {name}");
        assert_eq!(c["namespace"], Value::Null);
        let rw = summary["Size"]["rwSize"].as_u64().expect("rwSize");
        assert_eq!(c["writable"]["apparent_bytes"].as_u64(), Some(rw), "SizeRw of {name}");
        assert_eq!(c["writable"]["engine_bytes"].as_u64(), Some(rw), "engine_bytes of {name}");
        assert_eq!(c["image"]["id"], format!("sha256:{}", summary["ImageID"].as_str().expect("ImageID")));

        let inspect = podman.json(&["inspect", "--size", id]);
        let inspect = &inspect[0];
        assert_eq!(c["writable"]["apparent_bytes"], inspect["SizeRw"], "inspect SizeRw of {name}");
        let gd = &inspect["GraphDriver"]["Data"];
        let w = &c["writable"];
        assert_eq!(w["upperdir"], gd["UpperDir"], "upperdir of {name}");
        assert_eq!(w["workdir"], gd["WorkDir"], "workdir of {name}");
        let lower: Vec<String> = gd["LowerDir"].as_str().expect("LowerDir").split(':').map(str::to_owned).collect();
        assert_eq!(strings(&w["lowerdirs"]), lower, "lowerdirs of {name}");
        let upper = gd["UpperDir"].as_str().expect("UpperDir");
        assert_eq!(w["allocated_bytes"].as_u64(), Some(du_allocated(upper)), "allocated bytes of {name}");
        assert_eq!(w["errors"], 0);

        let image = podman.json(&["image", "inspect", summary["ImageID"].as_str().expect("ImageID")]);
        let diff_ids = strings(&image[0]["RootFS"]["Layers"]);
        let layers = c["layers"].as_array().expect("layers");
        let got: Vec<String> = layers.iter().map(|l| l["diff_id"].as_str().unwrap_or_default().to_owned()).collect();
        assert_eq!(got, diff_ids, "layer DiffIDs of {name}");
        let chains: Vec<String> =
            layers.iter().map(|l| l["chain_id"].as_str().unwrap_or_default().to_owned()).collect();
        assert_eq!(chains, chain_ids_by_sha256sum(&diff_ids), "ChainIDs of {name}");

        if summary["State"] == "running" {
            let m = &c["mount"];
            assert_eq!(m["upperdir"], gd["UpperDir"], "mount upperdir of {name}");
            assert_eq!(strings(&m["lowerdirs"]), lower, "mount lowerdirs of {name}, short links resolved");
            assert_eq!(m["mountpoint"], gd["MergedDir"], "mountpoint of {name}");
        } else {
            assert_eq!(c["mount"], Value::Null, "{name} is not mounted");
        }
    }
    let web = ours.iter().find(|c| c["name"] == "web").expect("web");
    assert_eq!(web["writable"]["whiteouts"], 1, "rm /bin/ls");
    assert_eq!(web["writable"]["symlinks"], 2, "/link, and the /etc/mtab -> /proc/mounts Podman makes");

    for (tag, podman_name) in [("localhost/bb:1", "bb:1"), ("localhost/multi:1", "multi:1")] {
        let inspect = podman.json(&["image", "inspect", podman_name]);
        // By id: the host's own Podman may hold an image of the same name.
        let id = format!("sha256:{}", inspect[0]["Id"].as_str().expect("Id"));
        let img = r["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["id"] == id.as_str())
            .unwrap_or_else(|| panic!("image {tag} not in report"));
        assert!(strings(&img["tags"]).contains(&tag.to_owned()), "{img}");
        assert_eq!(img["runtime"], "podman");
        assert_eq!(img["size_bytes"], inspect[0]["Size"], "Size of {tag}");
        assert_eq!(img["id"], format!("sha256:{}", inspect[0]["Id"].as_str().expect("Id")));
        assert_eq!(img["layers"].as_array().map(Vec::len), inspect[0]["RootFS"]["Layers"].as_array().map(Vec::len));
    }
    let multi_users = listed.iter().filter(|s| s["Image"] == "localhost/multi:1").count() as u64;
    let multi_id = format!("sha256:{}", podman.json(&["image", "inspect", "multi:1"])[0]["Id"].as_str().expect("Id"));
    let multi = r["images"].as_array().expect("images").iter().find(|i| i["id"] == multi_id.as_str()).expect("multi");
    assert_eq!(multi["containers"].as_u64(), Some(multi_users));

    let orphans: Vec<&Value> =
        r["orphans"].as_array().expect("orphans").iter().filter(|o| under_store(&o["path"])).collect();
    assert_eq!(orphans.len(), 1, "in this store, only the planted directory is an orphan: {orphans:?}");
    assert_eq!(orphans[0]["path"], stray.to_str().expect("utf-8"));
    assert_eq!(orphans[0]["kind"], "layer_dir");
    assert_eq!(orphans[0]["runtime"], "podman");
    assert_eq!(orphans[0]["allocated_bytes"].as_u64(), Some(du_allocated(stray.to_str().expect("utf-8"))));
    let engines = r["sources"]["engines"].as_array().expect("engines");
    assert!(engines.iter().any(|e| e["engine"] == "podman" && e["root"] == podman.root().to_str().expect("utf-8")));
}

//! The rest of a Docker data root against a real dockerd: local volumes and BuildKit's build cache compared
//! with `GET /system/df` (what `docker system df -v` prints), build cache never called an orphan, and each
//! section's reclaimable bytes compared with what the engine's own accounting loses when the matching
//! prune command actually runs.

use crate::common::container;
use crate::harness::{start_engine, Engine};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `docker build` with BuildKit (the engine's builder, not the classic one the harness uses), no network.
fn buildkit_build(engine: &Engine, tag: &str, dockerfile: &str) {
    let ctx = engine.dir().join(format!("bk-{}", tag.replace(':', "-")));
    std::fs::create_dir_all(&ctx).expect("context dir");
    std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("Dockerfile");
    let out = Command::new("/usr/bin/docker")
        .args(["build", "--network", "none", "--tag", tag])
        .arg(&ctx)
        .env("DOCKER_HOST", format!("unix://{}", engine.socket().display()))
        .env("DOCKER_CONFIG", engine.dir().join("client"))
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .expect("run docker build");
    assert!(out.status.success(), "buildkit build: {}", String::from_utf8_lossy(&out.stderr));
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The engine's view: volumes by name (size, refcount), build cache by id (size, shared), layers size,
/// total SizeRw.
struct Df {
    volumes: BTreeMap<String, (u64, u64)>,
    cache: BTreeMap<String, (u64, bool)>,
    layers: u64,
    size_rw: u64,
}

fn df(engine: &Engine) -> Df {
    let d = engine.api_get("/system/df");
    let list = |k: &str| d[k].as_array().cloned().unwrap_or_default();
    Df {
        volumes: list("Volumes")
            .iter()
            .map(|v| {
                let name = v["Name"].as_str().expect("Name").to_owned();
                (name, (u(&v["UsageData"]["Size"]), u(&v["UsageData"]["RefCount"])))
            })
            .collect(),
        cache: list("BuildCache")
            .iter()
            .map(|b| (b["ID"].as_str().expect("ID").to_owned(), (u(&b["Size"]), b["Shared"] == true)))
            .collect(),
        layers: u(&d["LayersSize"]),
        size_rw: list("Containers").iter().map(|c| c["SizeRw"].as_u64().unwrap_or(0)).sum(),
    }
}

#[test]
fn volumes_build_cache_and_reclaimable_bytes_match_the_engine_and_its_prunes() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    buildkit_build(&engine, "bk:1", "FROM bb:1\nRUN head -c 100000 /bin/busybox > /big\nRUN echo hi > /x\n");
    engine.docker(&["volume", "create", "named"]);
    engine.docker(&[
        "run",
        "--name",
        "user",
        "-v",
        "named:/data",
        "bb:1",
        "sh",
        "-c",
        "head -c 12345 /bin/busybox > /data/f",
    ]);
    engine.docker(&["volume", "create", "lonely"]);
    engine.docker(&[
        "run",
        "--rm",
        "-v",
        "lonely:/d",
        "bb:1",
        "sh",
        "-c",
        "head -c 54321 /bin/busybox > /d/x && ln /d/x /d/y",
    ]);
    engine.docker(&["run", "--name", "anon", "-v", "/anon", "bb:1", "sh", "-c", "echo hi > /anon/a"]);
    engine.docker(&[
        "run",
        "-d",
        "--name",
        "runner",
        "bb:1",
        "sh",
        "-c",
        "head -c 3000 /bin/busybox > /w; exec sleep 3600",
    ]);
    engine.docker(&["exec", "runner", "sh", "-c", "while [ $(wc -c < /w) -lt 3000 ]; do sleep 0.1; done"]);

    let before = df(&engine);
    // ovlaudit must not call build cache an orphan, however old.
    let root = engine.data_root().to_str().expect("utf-8");
    let out = crate::common::ovlaudit(&["report", "--format", "json", "--docker-root", root, "--orphan-min-age", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["orphans"], serde_json::json!([]), "build cache snapshots are not orphans");

    // The data root's allocated bytes are `du -sxB1` (not crossing the running container's merged view).
    let du = |args: &[&str]| -> u64 {
        let out = Command::new("du").args(args).arg(root).output().expect("run du");
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().and_then(|n| n.parse().ok()).expect("du")
    };
    assert_eq!(u(&report["totals"]["data_root_allocated_bytes"]), du(&["-sxB1"]));
    assert!(du(&["-sB1"]) > du(&["-sxB1"]), "du without -x enters the merged view");

    // Volumes: size and links as the engine counts them.
    let volumes: BTreeMap<String, (u64, u64, bool)> = report["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| {
            let links = v["containers"].as_array().map_or(0, Vec::len) as u64;
            (v["name"].as_str().expect("name").to_owned(), (u(&v["apparent_bytes"]), links, v["dangling"] == true))
        })
        .collect();
    let engine_volumes: BTreeMap<String, (u64, u64, bool)> =
        before.volumes.iter().map(|(k, (s, r))| (k.clone(), (*s, *r, *r == 0))).collect();
    assert_eq!(volumes, engine_volumes, "volumes: (size, links, dangling) by name");
    assert_eq!(volumes["lonely"].0, 54321, "the hard link counts once");
    let named = report["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == "named").expect("named");
    assert_eq!(named["containers"], serde_json::json!(["user"]));

    // Build cache: every record the engine lists, with its size and whether it is shared.
    let cache: BTreeMap<String, (u64, bool)> = report["build_cache"]
        .as_array()
        .expect("build_cache")
        .iter()
        .map(|b| (b["id"].as_str().expect("id").to_owned(), (u(&b["size_bytes"]), b["shared"] == true)))
        .collect();
    assert_eq!(cache, before.cache, "build cache: (size, shared) by id");
    assert!(cache.values().any(|(s, shared)| *s == 100_000 && *shared), "the RUN step's layer is shared with bk:1");

    // NDJSON carries one event per volume and per record, valid against the published schema.
    let out =
        crate::common::ovlaudit(&["report", "--format", "ndjson", "--docker-root", root, "--orphan-min-age", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    crate::events::assert_events_valid(&crate::events::event_validator(), &events);
    let count = |ds: &str| events.iter().filter(|e| e["event"]["dataset"] == ds).count();
    assert_eq!(count("ovlaudit.volume"), volumes.len());
    assert_eq!(count("ovlaudit.build_cache"), cache.len());
    let scan = events.iter().find(|e| e["event"]["dataset"] == "ovlaudit.scan").expect("scan event");
    assert_eq!(scan["ovlaudit"]["scan"]["totals"]["reclaimable"], report["totals"]["reclaimable"]);

    let r = &report["totals"]["reclaimable"];
    let stopped_rw: u64 = ["user", "anon"]
        .iter()
        .map(|n| u(&container(&report, &engine.docker(&["inspect", "-f", "{{.Id}}", n]))["writable"]["apparent_bytes"]))
        .sum();
    assert_eq!(u(&r["containers_bytes"]), stopped_rw);

    // Each prune, in the order that keeps the others' figures valid, frees what the report said.
    engine.docker(&["image", "prune", "-a", "-f"]);
    let after_images = df(&engine);
    assert_eq!(u(&r["images_bytes"]), before.layers - after_images.layers, "image prune -a frees the unused layers");
    assert!(u(&r["images_bytes"]) >= 100_003, "bk:1's own layers at least");

    engine.docker(&["container", "prune", "-f"]);
    let after_containers = df(&engine);
    assert_eq!(u(&r["containers_bytes"]), before.size_rw - after_containers.size_rw);

    let dangling_dirs: Vec<String> = report["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter(|v| v["dangling"] == true)
        .map(|v| v["path"].as_str().expect("path").to_owned())
        .collect();
    engine.docker(&["volume", "prune", "-f"]);
    let after_volumes = df(&engine);
    let sum = |m: &BTreeMap<String, (u64, u64)>| m.values().map(|(s, _)| s).sum::<u64>();
    // The containers just pruned held `named` and the anonymous volume: those became dangling too, so
    // compare with what was dangling when the report was made, by path.
    let freed_dangling: u64 = before.volumes.iter().filter(|(_, (_, refs))| *refs == 0).map(|(_, (s, _))| s).sum();
    assert_eq!(u(&r["volumes_bytes"]), freed_dangling);
    assert!(sum(&before.volumes) - sum(&after_volumes.volumes) >= freed_dangling);
    for d in &dangling_dirs {
        assert!(!Path::new(d).exists(), "{d} is gone after volume prune");
    }

    let own: Vec<String> = report["build_cache"]
        .as_array()
        .expect("build_cache")
        .iter()
        .filter_map(|b| b["path"].as_str().map(str::to_owned))
        .collect();
    assert!(!own.is_empty(), "the build context records have directories of their own");
    let builder_before = u(&engine.api_get("/system/df")["BuilderSize"]);
    engine.docker(&["builder", "prune", "-f"]);
    let builder_after = u(&engine.api_get("/system/df")["BuilderSize"]);
    assert!(builder_before - builder_after >= u(&r["build_cache_bytes"]), "builder prune frees the unshared records");
    for d in &own {
        assert!(!Path::new(d).exists(), "{d} is gone after builder prune");
    }
}

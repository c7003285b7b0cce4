//! The storage audit against a real, private dockerd: image sizes compared with the engine's
//! `GET /system/df`, container logs with `stat`, orphans made the way crashes and interrupted operations
//! make them on the engine's own data root, and corrupt metadata that must be named without hiding the rest.

use crate::common::{container, du_allocated, ovlaudit};
use crate::harness::{start_engine, Engine};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `ovlaudit report --format json` on the engine's data root with extra flags.
fn report(engine: &Engine, extra: &[&str]) -> Value {
    let root = engine.data_root().to_str().expect("test paths are UTF-8");
    let mut args = vec!["report", "--format", "json", "--docker-root", root];
    args.extend_from_slice(extra);
    let out = ovlaudit(&args);
    assert!(out.status.success(), "ovlaudit report failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().expect("an array")
}

fn findings_with<'a>(r: &'a Value, code: &str) -> Vec<&'a Value> {
    arr(&r["findings"]).iter().filter(|f| f["code"] == code).collect()
}

fn cache_id(engine: &Engine, image: &str) -> String {
    let upper = engine.docker(&["image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", image]);
    Path::new(&upper).parent().and_then(Path::file_name).expect("…/overlay2/<id>/diff").to_string_lossy().into_owned()
}

fn top_chain_id(engine: &Engine, image: &str) -> String {
    let layers: Vec<String> =
        serde_json::from_str(&engine.docker(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", image]))
            .expect("layers");
    crate::common::chain_ids_by_sha256sum(&layers).pop().expect("at least one layer")
}

/// Every image `/system/df` lists must be in the report with the same Size, SharedSize and Containers;
/// the report's other images must be exactly the build steps the engine hides; LayersSize must match.
fn assert_images_match_system_df(engine: &Engine, r: &Value) {
    let df = engine.api_get("/system/df");
    let ours: BTreeMap<&str, &Value> = arr(&r["images"]).iter().map(|i| (i["id"].as_str().expect("id"), i)).collect();
    let mut listed = BTreeSet::new();
    for img in arr(&df["Images"]) {
        let id = img["Id"].as_str().expect("Id");
        listed.insert(id);
        let o = ours.get(id).unwrap_or_else(|| panic!("image {id} of /system/df is not in the report"));
        assert_eq!(o["size_bytes"], img["Size"], "Size of {id}");
        assert_eq!(o["shared_bytes"], img["SharedSize"], "SharedSize of {id}");
        assert_eq!(o["containers"], img["Containers"], "Containers of {id}");
        let unique = img["Size"].as_u64().expect("Size") - img["SharedSize"].as_u64().expect("SharedSize");
        assert_eq!(o["unique_bytes"], unique, "unique bytes of {id}");
        assert_eq!(o["intermediate"], false, "{id} is listed by the engine");
    }
    for (id, o) in &ours {
        assert_eq!(o["intermediate"], !listed.contains(id), "only images the engine hides are intermediate: {id}");
    }
    assert_eq!(r["totals"]["image_bytes"], df["LayersSize"], "LayersSize");

    // Every image, hidden build steps included, is what /images/json?all=1 lists; dangling ones are what
    // the dangling filter lists.
    let all: BTreeSet<String> =
        arr(&engine.api_get("/images/json?all=1")).iter().map(|i| i["Id"].as_str().expect("Id").to_owned()).collect();
    assert_eq!(ours.keys().map(|s| s.to_string()).collect::<BTreeSet<_>>(), all, "every image");
    let dangling: BTreeSet<String> =
        arr(&engine.api_get("/images/json?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D"))
            .iter()
            .map(|i| i["Id"].as_str().expect("Id").to_owned())
            .collect();
    let ours_dangling: BTreeSet<String> =
        ours.iter().filter(|(_, o)| o["dangling"] == true).map(|(id, _)| id.to_string()).collect();
    assert_eq!(ours_dangling, dangling, "dangling images");
}

/// `stat -c %s` of every file in `dir` whose name starts with `prefix`: the independent log-size reference.
fn stat_sizes(dir: &Path, prefix: &str) -> u64 {
    let mut total = 0;
    for ent in fs::read_dir(dir).expect("list the container dir") {
        let path = ent.expect("entry").path();
        if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)) {
            continue;
        }
        let out = Command::new("stat").args(["-c", "%s"]).arg(&path).output().expect("run stat");
        total += String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().expect("stat prints a size");
    }
    total
}

#[test]
fn images_and_logs_match_the_engine() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    // Two RUN steps: the classic builder leaves a hidden intermediate image between them.
    engine.build("multi:1", "FROM bb:1\nRUN head -c 3000 /bin/busybox > /a\nRUN head -c 5000 /bin/busybox > /b\n");
    engine.build("side:1", "FROM bb:1\nRUN head -c 7000 /bin/busybox > /s\n");
    // Rebuilding a tag with other content leaves the old image dangling.
    engine.build("re:1", "FROM bb:1\nRUN echo one > /v\n");
    engine.build("re:1", "FROM bb:1\nRUN echo two-two > /v\n");
    // An image removed while a container of another image shares its base layer.
    engine.build("gone:1", "FROM bb:1\nRUN echo bye > /g\n");
    engine.docker(&["run", "-d", "--name", "keeper", "side:1", "sh", "-c", "echo started; exec sleep 3600"]);
    engine.docker(&["rmi", "gone:1"]);
    engine.docker(&["run", "--name", "talker", "multi:1", "sh", "-c", "seq 1 500"]);
    engine.docker(&[
        "run",
        "--name",
        "rotated",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        "bb:1",
        "sh",
        "-c",
        "for i in $(seq 1 120); do echo line-$i; sleep 0.01; done",
    ]);
    engine.docker(&["create", "--name", "quiet", "bb:1", "true"]);

    let r = report(&engine, &[]);
    assert_images_match_system_df(&engine, &r);
    assert!(arr(&r["images"]).iter().any(|i| i["intermediate"] == true), "the build left a hidden step");
    assert!(arr(&r["images"]).iter().any(|i| i["dangling"] == true), "the rebuild left a dangling image");

    let mut total_logs = 0;
    for name in ["keeper", "talker", "rotated"] {
        let inspect = engine.api_get(&format!("/containers/{name}/json"));
        let id = inspect["Id"].as_str().expect("Id");
        let log = PathBuf::from(inspect["LogPath"].as_str().expect("LogPath"));
        let base = log.file_name().and_then(|n| n.to_str()).expect("log name").to_owned();
        let expected = stat_sizes(log.parent().expect("dir"), &base);
        let c = container(&r, id);
        assert_eq!(c["log_bytes"], expected, "log bytes of {name}");
        total_logs += expected;
    }
    let rotated = container(&r, &engine.docker(&["inspect", "-f", "{{.Id}}", "rotated"]));
    let log = PathBuf::from(rotated["log_path"].as_str().expect("log path"));
    let single = fs::metadata(&log).expect("log").len();
    assert!(rotated["log_bytes"].as_u64().expect("bytes") > single, "rotated files count too");
    let quiet = container(&r, &engine.docker(&["inspect", "-f", "{{.Id}}", "quiet"]));
    assert!(quiet["log_bytes"].is_null() || quiet["log_bytes"] == 0, "a never-started container has no log");
    assert_eq!(r["totals"]["log_bytes"], total_logs, "sum of the three logs");

    // A healthy engine has no orphans after all that building and removing.
    assert_eq!(r["orphans"], serde_json::json!([]), "no orphans on a healthy engine");
    let errors: Vec<&Value> = arr(&r["findings"]).iter().filter(|f| f["severity"] == "error").collect();
    assert!(errors.is_empty(), "no errors on a healthy engine: {errors:?}");
}

/// Copies a directory tree with `cp -a` (keeps links, modes and times), as a crash leaves it.
fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("run cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Unmounts a hand-made overlay when the test ends, even when it fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn orphans_of_every_kind_are_found_and_nothing_live_is() {
    let Some(engine) = start_engine() else { return };
    let root = engine.data_root().to_path_buf();
    let o2 = root.join("overlay2");
    let layerdb = root.join("image/overlay2/layerdb");
    engine.import_busybox("bb:1");
    engine.build("app:1", "FROM bb:1\nRUN head -c 20000 /bin/busybox > /payload\n");
    engine.build("gone:1", "FROM bb:1\nRUN head -c 12345 /bin/busybox > /g && mkdir /gd && echo x > /gd/y\n");
    engine.build("meta:1", "FROM bb:1\nRUN echo meta > /m\n");
    engine.docker(&["run", "-d", "--name", "live", "app:1", "sh", "-c", "echo hi > /w; exec sleep 3600"]);
    engine.docker(&["run", "--name", "stopped", "app:1", "sh", "-c", "echo bye > /w"]);

    // 1. A layer directory left after its metadata was removed (the driver's removal failed or the host
    //    crashed), with its short link, and the layer database entry renamed for removal.
    let gone_cache = cache_id(&engine, "gone:1");
    let gone_chain = top_chain_id(&engine, "gone:1");
    let gone_short = fs::read_to_string(o2.join(&gone_cache).join("link")).expect("link file");
    let saved = engine_scratch(&engine, "saved");
    cp_a(&o2.join(&gone_cache), &saved.join("dir"));
    cp_a(&layerdb.join("sha256").join(gone_chain.trim_start_matches("sha256:")), &saved.join("entry"));
    // 2. The same for meta:1's layer database entry only: its directory is really gone.
    let meta_chain = top_chain_id(&engine, "meta:1");
    let meta_cache = cache_id(&engine, "meta:1");
    cp_a(&layerdb.join("sha256").join(meta_chain.trim_start_matches("sha256:")), &saved.join("meta-entry"));
    engine.docker(&["rmi", "gone:1", "meta:1"]);
    assert!(!o2.join(&gone_cache).exists(), "the engine removed the directory");
    cp_a(&saved.join("dir"), &o2.join(&gone_cache));
    symlink(format!("../{gone_cache}/diff"), o2.join("l").join(&gone_short)).expect("restore the short link");
    let removing = layerdb.join("sha256").join(format!(
        "{}-{}-removing",
        gone_chain.trim_start_matches("sha256:"),
        "0123456789abcdef".repeat(4)
    ));
    cp_a(&saved.join("entry"), &removing);
    let meta_entry = layerdb.join("sha256").join(meta_chain.trim_start_matches("sha256:"));
    cp_a(&saved.join("meta-entry"), &meta_entry);
    // 3. A short link whose directory was deleted by hand.
    let dangling = o2.join("l/DANGLINGLINKAAAAAAAAAAAAAA");
    symlink(format!("../{}/diff", "d".repeat(64)), &dangling).expect("dangling link");
    // 4. A stale layer database transaction (an interrupted pull).
    let tx = layerdb.join("tmp/write-set-4242");
    fs::create_dir_all(&tx).expect("tmp");
    fs::write(tx.join("tar-split.json.gz"), vec![7u8; 3000]).expect("tar-split");
    // 5. A layer directory whose creation was interrupted before its link file was written.
    let half = o2.join("e".repeat(64));
    fs::create_dir_all(half.join("diff/usr")).expect("half-made layer");
    fs::write(half.join("diff/usr/blob"), vec![1u8; 4096]).expect("blob");
    // 6. An unreferenced directory that a live mount uses: never an orphan.
    let busy = o2.join("f".repeat(64));
    for d in ["diff", "work", "merged"] {
        fs::create_dir_all(busy.join(d)).expect("busy layer");
    }
    let bb_lower = engine.docker(&["image", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "bb:1"]);
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={bb_lower},upperdir={}/diff,workdir={}/work", busy.display(), busy.display()))
        .arg(busy.join("merged"))
        .status()
        .expect("run mount");
    assert!(st.success(), "mount a hand-made overlay");
    let _unmount = Unmount(busy.join("merged"));

    // Just made, so held back by default: it may be an operation in progress.
    let fresh = report(&engine, &[]);
    assert_eq!(fresh["orphans"], serde_json::json!([]), "nothing just made is called an orphan by default");
    assert!(!findings_with(&fresh, "orphan_candidate_recent").is_empty());
    assert!(!findings_with(&fresh, "layer_transaction_in_progress").is_empty());

    let r = report(&engine, &["--orphan-min-age", "0"]);
    let got: BTreeSet<(String, String)> = arr(&r["orphans"])
        .iter()
        .map(|o| (o["kind"].as_str().expect("kind").to_owned(), o["path"].as_str().expect("path").to_owned()))
        .collect();
    let p = |path: &Path| path.to_string_lossy().into_owned();
    let expected: BTreeSet<(String, String)> = [
        ("layer_dir", p(&o2.join(&gone_cache))),
        ("short_link_unreferenced", p(&o2.join("l").join(&gone_short))),
        ("short_link_dangling", p(&dangling)),
        ("layerdb_removing", p(&removing)),
        ("layerdb_tmp", p(&tx)),
        ("layer_dir_without_link", p(&half)),
        ("layerdb_without_layer_dir", p(&meta_entry)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(got, expected, "exactly the orphans made above");

    // Sizes against du and find, independently of ovlaudit.
    for o in arr(&r["orphans"]) {
        let path = o["path"].as_str().expect("path");
        if Path::new(path).is_dir() && !Path::new(path).is_symlink() {
            assert_eq!(o["allocated_bytes"], du_allocated(path), "allocated bytes of {path} (du -sB1)");
            assert_eq!(o["apparent_bytes"], find_apparent(path), "apparent bytes of {path} (find -printf %s)");
        }
    }
    let orphan = |kind: &str| arr(&r["orphans"]).iter().find(|o| o["kind"] == kind).expect("orphan kind present");
    assert!(orphan("layer_dir")["detail"].as_str().expect("detail").contains("-removing"), "names the removal");
    assert!(orphan("layerdb_removing")["detail"].as_str().expect("detail").contains(&gone_cache));
    assert_eq!(orphan("layerdb_tmp")["apparent_bytes"], 3000);
    assert_eq!(orphan("layer_dir_without_link")["apparent_bytes"], 4096);
    let sum: u64 = arr(&r["orphans"]).iter().map(|o| o["allocated_bytes"].as_u64().expect("bytes")).sum();
    assert_eq!(r["totals"]["orphan_allocated_bytes"], sum);
    assert_eq!(r["totals"]["orphans"], expected.len());

    // Nothing live is an orphan: the busy directory is named as in use, and every container's and image's
    // directories are absent from the list.
    assert_eq!(findings_with(&r, "layer_dir_unreferenced_in_use").len(), 1);
    assert_eq!(findings_with(&r, "layer_dir_unreferenced_in_use")[0]["path"], p(&busy));
    for c in arr(&r["containers"]) {
        let w = &c["writable"];
        let mut dirs = vec![w["layer_dir"].as_str().expect("layer dir").to_owned()];
        dirs.extend(
            arr(&w["lowerdirs"]).iter().map(|l| l.as_str().expect("lower").trim_end_matches("/diff").to_owned()),
        );
        for d in dirs {
            assert!(!got.iter().any(|(_, path)| *path == d), "{d} belongs to container {} but is listed", c["name"]);
        }
    }
    let _ = meta_cache;
    // The images the engine still has are untouched by all this: /system/df still agrees.
    assert_images_match_system_df(&engine, &r);

    // The table's orphan section lists each one with why.
    let out = ovlaudit(&[
        "report",
        "--docker-root",
        root.to_str().expect("utf-8"),
        "--orphan-min-age",
        "0",
        "--section",
        "orphans",
    ]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for (kind, path) in &expected {
        assert!(
            table.lines().any(|l| l.starts_with(kind.as_str()) && l.ends_with(path.as_str())),
            "{kind} {path} in:\n{table}"
        );
    }
    println!("{table}");
}

/// Apparent bytes as Docker counts them: `st_size` of every non-directory entry (`find -printf %s`).
fn find_apparent(dir: &str) -> u64 {
    let out = Command::new("find")
        .args([dir, "-mindepth", "1", "!", "-type", "d", "-printf", "%s\\n"])
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse::<u64>().expect("a size")).sum()
}

fn engine_scratch(engine: &Engine, name: &str) -> PathBuf {
    let dir = engine.dir().join(name);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn corrupt_metadata_is_named_and_hides_nothing_else() {
    let Some(engine) = start_engine() else { return };
    let root = engine.data_root().to_path_buf();
    let layerdb = root.join("image/overlay2/layerdb");
    engine.import_busybox("bb:1");
    engine.build("one:1", "FROM bb:1\nRUN echo one > /one\n");
    engine.build("two:1", "FROM bb:1\nRUN echo two > /two\n");
    engine.docker(&["run", "-d", "--name", "fine", "one:1", "sh", "-c", "echo fine > /f; exec sleep 3600"]);
    engine.docker(&["run", "--name", "garbled", "one:1", "sh", "-c", "echo x > /x"]);
    engine.docker(&["run", "--name", "hollow", "two:1", "sh", "-c", "echo y > /y"]);
    let listed = engine.api_get("/containers/json?all=1&size=1");
    let fine_id = engine.docker(&["inspect", "-f", "{{.Id}}", "fine"]);
    let garbled_id = engine.docker(&["inspect", "-f", "{{.Id}}", "garbled"]);
    let hollow_id = engine.docker(&["inspect", "-f", "{{.Id}}", "hollow"]);
    let hollow_upper = engine.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "hollow"]);

    // An empty cache-id, a garbage container record, a truncated tags file, a layer whose DiffID was
    // altered, a lower file naming a link that does not exist, and a writable layer deleted by hand.
    let two_chain = top_chain_id(&engine, "two:1");
    let one_chain = top_chain_id(&engine, "one:1");
    let one_cache = cache_id(&engine, "one:1");
    let emptied = layerdb.join("sha256").join(two_chain.trim_start_matches("sha256:"));
    fs::write(emptied.join("cache-id"), "").expect("empty cache-id");
    let config = root.join("containers").join(&garbled_id).join("config.v2.json");
    fs::write(&config, "{\"ID\": garbage").expect("garble config");
    let repos = root.join("image/overlay2/repositories.json");
    let text = fs::read(&repos).expect("repositories.json");
    fs::write(&repos, &text[..text.len() / 2]).expect("truncate");
    let altered = layerdb.join("sha256").join(one_chain.trim_start_matches("sha256:"));
    fs::write(altered.join("diff"), format!("sha256:{}", "9".repeat(64))).expect("alter diff");
    let lower = root.join("overlay2").join(&one_cache).join("lower");
    fs::write(&lower, "l/NOSUCHLINKAAAAAAAAAAAAAAA").expect("break lower");
    let hollow_dir = Path::new(&hollow_upper).parent().expect("layer dir").to_path_buf();
    fs::remove_dir_all(&hollow_dir).expect("remove hollow's writable layer");

    let r = report(&engine, &["--orphan-min-age", "0"]);
    let named = |code: &str, path: &Path| {
        let hits = findings_with(&r, code);
        assert!(
            hits.iter().any(|f| f["path"] == path.to_string_lossy().as_ref()),
            "a {code} finding naming {}: {hits:?}",
            path.display()
        );
        hits.into_iter().find(|f| f["path"] == path.to_string_lossy().as_ref()).expect("found").clone()
    };
    let f = named("layerdb_entry_unreadable", &emptied);
    assert!(f["message"].as_str().expect("message").contains("cache-id"), "says which file: {f}");
    let f = named("container_config_unparsable", &config);
    assert!(f["message"].as_str().expect("message").contains("line 1"), "gives the parser's reason: {f}");
    let f = named("repositories_unparsable", &repos);
    assert!(f["message"].as_str().expect("message").contains("EOF"), "gives the parser's reason: {f}");
    named("layer_chain_id_mismatch", &altered);
    named("lower_file_unresolved", &lower);
    named("writable_layer_missing", &hollow_dir.join("diff"));

    // Everything else is still covered: every container, the healthy ones measured exactly.
    assert_eq!(arr(&r["containers"]).len(), arr(&listed).len(), "every container is listed");
    let fine_size = arr(&listed).iter().find(|c| c["Id"] == fine_id.as_str()).expect("fine")["SizeRw"].clone();
    assert_eq!(container(&r, &fine_id)["writable"]["apparent_bytes"], fine_size);
    assert_eq!(container(&r, &garbled_id)["state"], "unknown");
    assert_eq!(container(&r, &hollow_id)["name"], "hollow");
    assert_eq!(arr(&r["images"]).len(), 3, "bb:1, one:1 and two:1, shown without tags");
    // The layer whose cache-id was emptied still has its directory: it must not be called an orphan.
    assert!(
        !arr(&r["orphans"]).iter().any(|o| o["kind"] == "layer_dir"),
        "no layer directory is called an orphan while the layer database cannot be fully read: {}",
        r["orphans"]
    );
    assert!(!findings_with(&r, "orphans_withheld").is_empty(), "the held-back directory is named");
}

#[test]
fn section_applies_to_the_table_only() {
    let out = ovlaudit(&["report", "--format", "json", "--section", "orphans"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--section"), "names the flag");
}

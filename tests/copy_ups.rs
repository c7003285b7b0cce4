//! Copy-ups and shadowed bytes against a real dockerd: a container changes metadata only (chown, chmod,
//! touch, of files and directories), changes content (another size, and the same size), deletes image
//! files and directories, and replaces a directory (opaque); the report's figures are compared with
//! `find`, `cmp` and `stat` run by the test over the upper and lower directories the engine names.

use crate::common::{container, ovlaudit, report_json};
use crate::harness::{start_engine, Engine};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn sh(script: &str, args: &[&str]) -> String {
    let out = Command::new("sh").arg("-c").arg(script).arg("sh").args(args).output().expect("run sh");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn size_of(path: &str) -> u64 {
    sh("stat -c %s \"$1\"", &[path]).parse().expect("stat prints a size")
}

/// The reference: every regular file of `upper` that is a regular file at the same path in the first
/// lower directory holding that path, compared with `cmp`. Returns (files, bytes, identical files,
/// identical bytes, changed files).
fn reference_copy_ups(upper: &str, lowers: &[String]) -> (u64, u64, u64, u64, u64) {
    let list = sh("cd \"$1\" && find . -type f -printf '%P\\n'", &[upper]);
    let (mut files, mut bytes, mut same, mut same_bytes, mut changed) = (0, 0, 0, 0, 0);
    for rel in list.lines().filter(|l| !l.is_empty()) {
        let up = format!("{upper}/{rel}");
        let lower = lowers.iter().map(|l| format!("{l}/{rel}")).find(|p| Path::new(p).symlink_metadata().is_ok());
        let Some(lower) = lower else { continue };
        if !Path::new(&lower).symlink_metadata().map(|m| m.is_file()).unwrap_or(false) {
            continue;
        }
        let size = size_of(&up);
        files += 1;
        bytes += size;
        let identical = Command::new("cmp").args(["-s", &up, &lower]).status().expect("run cmp").success();
        if identical {
            same += 1;
            same_bytes += size;
        } else {
            changed += 1;
        }
    }
    (files, bytes, same, same_bytes, changed)
}

fn graph(engine: &Engine, name: &str) -> (String, String, Vec<String>) {
    let id = engine.docker(&["inspect", "-f", "{{.Id}}", name]);
    let gd = engine.api_get(&format!("/containers/{id}/json"))["GraphDriver"]["Data"].clone();
    let upper = gd["UpperDir"].as_str().expect("UpperDir").to_owned();
    let lowers = gd["LowerDir"].as_str().expect("LowerDir").split(':').map(str::to_owned).collect();
    (id, upper, lowers)
}

const IMAGE: &str = "FROM bb:1\n\
RUN mkdir -p /data/sub /tree/a/b /del/dir /opq /etc \
 && head -c 3000 /bin/busybox > /data/owned && head -c 2000 /bin/busybox > /data/moded \
 && head -c 1000 /bin/busybox > /data/sub/touched && printf 'hello WORLD' > /data/same_size \
 && printf 'x' > /etc/conf && head -c 700 /bin/busybox > /tree/a/b/f1 && head -c 300 /bin/busybox > /tree/f2 \
 && head -c 4096 /bin/busybox > /del/f1 && head -c 5000 /bin/busybox > /del/dir/f2 \
 && head -c 6000 /bin/busybox > /opq/g && head -c 100 /bin/busybox > /opq/h\n";

const CHANGES: &str = "chown 1:1 /data/owned && chmod 600 /data/moded && touch /data/sub/touched \
 && printf 'hello world' > /data/same_size && printf 'longer' > /etc/conf && chown -R 2:2 /tree \
 && rm /del/f1 && rm -r /del/dir && rm -r /opq && mkdir /opq && echo new > /opq/new && echo fresh > /fresh";

#[test]
fn copy_ups_and_shadowed_bytes_match_cmp_and_stat() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    engine.build("cu:1", IMAGE);
    engine.docker(&["run", "--name", "changer", "cu:1", "sh", "-c", CHANGES]);
    let (id, upper, lowers) = graph(&engine, "changer");

    let report = report_json(engine.data_root());
    let w = &container(&report, &id)["writable"];
    let c = &w["copy_ups"];
    let s = &w["shadowed"];

    // What the container did, independently: metadata-only changes of owned, moded, touched, f1, f2 (5
    // files), content changes of same_size (same size, other bytes) and conf (another size).
    let (files, bytes, same, same_bytes, changed) = reference_copy_ups(&upper, &lowers);
    assert_eq!((files, same, changed), (7, 5, 2), "the reference sees what the test did");
    assert_eq!(c["files"], files, "copied-up files");
    assert_eq!(c["bytes"], bytes, "copied-up bytes");
    assert_eq!(c["identical_files"], same);
    assert_eq!(c["identical_bytes"], same_bytes);
    assert_eq!(same_bytes, 3000 + 2000 + 1000 + 700 + 300);
    assert_eq!(c["changed_files"], changed);
    assert_eq!(c["changed_bytes"], size_of(&format!("{upper}/data/same_size")) + size_of(&format!("{upper}/etc/conf")));
    assert_eq!(c["unverified_files"], 0);
    assert_eq!(c["metacopy_files"], 0, "this engine mounts without metacopy");
    // Directories copied up: data, data/sub, tree, tree/a, tree/a/b, del, etc (opq is opaque, not a copy).
    let dirs = sh("cd \"$1\" && find . -mindepth 1 -type d -printf '%P\\n'", &[&upper]);
    let in_lower =
        dirs.lines().filter(|d| *d != "opq" && lowers.iter().any(|l| Path::new(&format!("{l}/{d}")).is_dir())).count()
            as u64;
    assert_eq!(c["dirs"], in_lower);
    assert_eq!(in_lower, 7);

    // Shadowed: the deleted /del/f1 and /del/dir/f2 and the replaced directory's /opq/g and /opq/h, as
    // the image layer holds them.
    let layer = lowers.iter().find(|l| Path::new(&format!("{l}/opq/g")).exists()).expect("the RUN layer");
    let hidden: u64 = ["del/f1", "del/dir/f2", "opq/g", "opq/h"].iter().map(|p| size_of(&format!("{layer}/{p}"))).sum();
    assert_eq!(s["bytes"], hidden);
    assert_eq!(s["files"], 4);
    assert_eq!(w["whiteouts"], 2, "del/f1 and del/dir");
    assert_eq!(w["opaque_dirs"], 1, "opq");
    assert_eq!(s["largest"][0]["path"], "/opq/g");
    assert_eq!(report["totals"]["shadowed_bytes"], hidden);
    assert_eq!(report["totals"]["copy_up_identical_bytes"], same_bytes);

    // A budget smaller than the copies: what it did not cover is unverified, never guessed.
    let root = engine.data_root().to_str().expect("utf-8");
    let out = ovlaudit(&["report", "--format", "json", "--docker-root", root, "--compare-budget", "2500"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let small: Value = serde_json::from_slice(&out.stdout).expect("json");
    let c = &container(&small, &id)["writable"]["copy_ups"];
    let total = |k: &str| c[k].as_u64().expect("number");
    assert!(total("compared_bytes") <= 2500, "the budget bounds what is read: {c}");
    // 7011 bytes of same-size copies, at most 2500 of them read: at least 4511 left unverified.
    assert!(total("unverified_bytes") >= 7011 - 2500, "{c}");
    assert_eq!(total("identical_files") + total("changed_files") + total("unverified_files"), files);
    assert_eq!(total("identical_bytes") + total("changed_bytes") + total("unverified_bytes"), bytes);
    assert_eq!(small["totals"]["copy_up_unverified_bytes"], total("unverified_bytes"));
}

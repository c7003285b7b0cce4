//! `ovlaudit report` on hand-built host trees (no engine needed): exit codes and messages, a host with no
//! Docker at all, relative overlay paths, a malformed mount line, and a corrupt container record that must
//! not hide the other containers. Every expected value here is computed by hand from the fixture.

use crate::common::{container, ovlaudit};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

const BASE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const DIFF: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const GOOD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const BAD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const GOOD_RW: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const BAD_RW: &str = "4444444444444444444444444444444444444444444444444444444444444444";

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write fixture file");
}

/// A Docker overlay2 data root under `host/var/lib/docker` with one single-layer image and two containers;
/// `bad`'s config.v2.json is garbage. Returns the image id.
fn docker_fixture(host: &Path) -> String {
    let d = host.join("var/lib/docker");
    let o = d.join("overlay2");
    write(&o.join(BASE).join("diff/bin/sh"), "0123456789");
    write(&o.join(BASE).join("link"), "BASESHORT");
    fs::create_dir_all(o.join("l")).expect("mkdir l");
    symlink(format!("../{BASE}/diff"), o.join("l/BASESHORT")).expect("short link");
    for (rw, short, content) in [(GOOD_RW, "GOODSHORT", "hello"), (BAD_RW, "BADSHORT", "1234567")] {
        write(&o.join(rw).join("diff/file"), content);
        write(&o.join(rw).join("lower"), &format!("l/{short}I:l/BASESHORT"));
        write(&o.join(rw).join("link"), short);
        write(&o.join(format!("{rw}-init/link")), &format!("{short}I"));
        fs::create_dir_all(o.join(rw).join("work")).expect("work");
        fs::create_dir_all(o.join(format!("{rw}-init/diff/etc"))).expect("init");
        write(&o.join(format!("{rw}-init/lower")), "l/BASESHORT");
        symlink(format!("../{rw}/diff"), o.join("l").join(short)).expect("short link");
        symlink(format!("../{rw}-init/diff"), o.join("l").join(format!("{short}I"))).expect("short link");
    }
    let ldb = d.join("image/overlay2/layerdb");
    // A base layer's ChainID is its DiffID.
    let chain_dir = ldb.join("sha256").join(DIFF.trim_start_matches("sha256:"));
    write(&chain_dir.join("cache-id"), BASE);
    write(&chain_dir.join("diff"), DIFF);
    write(&chain_dir.join("size"), "10");
    let config = format!(r#"{{"created":"2026-11-28T00:00:00Z","rootfs":{{"type":"layers","diff_ids":["{DIFF}"]}}}}"#);
    let image_id = sha256_hex(config.as_bytes());
    write(&d.join("image/overlay2/imagedb/content/sha256").join(&image_id), &config);
    let image_id = format!("sha256:{image_id}");
    write(
        &d.join("image/overlay2/repositories.json"),
        &format!(r#"{{"Repositories":{{"fix":{{"fix:1":"{image_id}"}}}}}}"#),
    );
    for (cid, rw) in [(GOOD, GOOD_RW), (BAD, BAD_RW)] {
        let m = ldb.join("mounts").join(cid);
        write(&m.join("mount-id"), rw);
        write(&m.join("init-id"), &format!("{rw}-init"));
        write(&m.join("parent"), DIFF);
    }
    write(
        &d.join("containers").join(GOOD).join("config.v2.json"),
        &format!(
            r#"{{"ID":"{GOOD}","Name":"/good","Image":"{image_id}","Created":"2026-11-28T01:00:00Z",
            "State":{{"Running":true,"Pid":42,"StartedAt":"2026-11-28T01:00:01Z"}},
            "Config":{{"Image":"fix:1","Labels":{{"tier":"web"}}}},"Driver":"overlay2"}}"#
        ),
    );
    write(&d.join("containers").join(BAD).join("config.v2.json"), "{\"ID\": \"bbbb\", trunc");
    image_id
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child.stdin.take().expect("stdin").write_all(bytes).expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("hash").to_owned()
}

/// A mount table: the good container mounted the way Docker mounts long chains (relative paths, from inside
/// `overlay2/`), a malformed line, and a hand-made overlay that belongs to no container, with a space in
/// its mountpoint.
fn mountinfo_fixture(host: &Path) {
    let text = format!(
        "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
         this line is not a mount\n\
         48 22 0:39 / /var/lib/docker/overlay2/{GOOD_RW}/merged rw,relatime shared:2 - overlay overlay \
         rw,lowerdir=l/GOODSHORTI:l/BASESHORT,upperdir={GOOD_RW}/diff,workdir={GOOD_RW}/work\n\
         49 22 0:40 / /mnt/hand\\040made rw,relatime - overlay none \
         ro,lowerdir=/var/lib/docker/overlay2/l/BASESHORT:/srv/other\\054layer\n"
    );
    write(&host.join("proc/1/mountinfo"), &text);
}

fn report(host: &Path) -> (Value, String) {
    let out = ovlaudit(&["report", "--format", "json", "--root", host.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "report failed: {stderr}");
    (serde_json::from_slice(&out.stdout).expect("JSON"), stderr)
}

#[test]
fn corrupt_container_record_hides_nothing_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image_id = docker_fixture(tmp.path());
    mountinfo_fixture(tmp.path());
    let (r, _) = report(tmp.path());

    let good = container(&r, GOOD);
    assert_eq!(good["name"], "good");
    assert_eq!(good["state"], "running");
    assert_eq!(good["image"]["id"], image_id);
    assert_eq!(good["image"]["tags"], serde_json::json!(["fix:1"]));
    assert_eq!(good["labels"]["tier"], "web");
    assert_eq!(good["writable"]["apparent_bytes"], 5, "\"hello\"");
    assert_eq!(good["layers"][0]["chain_id"], DIFF);
    assert_eq!(good["layers"][0]["cache_id"], BASE);
    assert_eq!(good["layers"][0]["size_bytes"], 10);

    let bad = container(&r, BAD);
    assert_eq!(bad["state"], "unknown");
    assert_eq!(bad["writable"]["apparent_bytes"], 7, "the writable layer is still measured");
    let bad_config = tmp.path().join("var/lib/docker/containers").join(BAD).join("config.v2.json");
    let finding = r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "container_config_unparsable")
        .expect("a finding names the corrupt record");
    assert_eq!(finding["path"], bad_config.to_str().expect("utf-8"));
    assert_eq!(finding["severity"], "error");
    let errors: Vec<&str> = r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "error")
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert_eq!(errors, ["container_config_unparsable"], "the corrupt record is the only error in this tree");
}

#[test]
fn relative_overlay_paths_resolve_against_the_storage_root() {
    let tmp = tempfile::tempdir().expect("tempdir");
    docker_fixture(tmp.path());
    mountinfo_fixture(tmp.path());
    let (r, _) = report(tmp.path());
    let m = &container(&r, GOOD)["mount"];
    assert_eq!(m["mount_id"], 48);
    assert_eq!(m["relative_paths"], true);
    assert_eq!(m["upperdir"], format!("/var/lib/docker/overlay2/{GOOD_RW}/diff"));
    assert_eq!(m["workdir"], format!("/var/lib/docker/overlay2/{GOOD_RW}/work"));
    assert_eq!(
        m["lowerdirs"],
        serde_json::json!([
            format!("/var/lib/docker/overlay2/{GOOD_RW}-init/diff"),
            format!("/var/lib/docker/overlay2/{BASE}/diff")
        ])
    );
    assert_eq!(m["layers"][0]["role"], "init");
    assert_eq!(m["layers"][1]["role"], "image");
    assert_eq!(m["layers"][1]["diff_id"], DIFF);
    // The on-disk lower chain agrees with the live mount: no mismatch finding.
    let codes: Vec<&str> =
        r["findings"].as_array().expect("findings").iter().filter_map(|f| f["code"].as_str()).collect();
    assert!(!codes.contains(&"mount_lower_chain_mismatch"), "{codes:?}");
}

#[test]
fn malformed_mount_line_and_unowned_mount_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    docker_fixture(tmp.path());
    mountinfo_fixture(tmp.path());
    let (r, _) = report(tmp.path());
    let line = r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "mount_line_unparsable")
        .expect("the malformed line is a finding");
    assert!(line["message"].as_str().expect("message").contains('2'), "names line 2: {line}");
    let unowned = r["unowned_mounts"].as_array().expect("unowned_mounts");
    assert_eq!(unowned.len(), 1);
    let m = &unowned[0];
    assert_eq!(m["mountpoint"], "/mnt/hand made");
    assert!(m["upperdir"].is_null(), "read-only overlay");
    assert_eq!(m["layers"][0]["chain_id"], DIFF, "a Docker image layer used by a foreign mount is named by digest");
    assert_eq!(m["layers"][1]["path"], "/srv/other,layer");
    assert_eq!(m["layers"][1]["role"], "unknown");
    assert_eq!(r["totals"]["overlay_mounts"], 2);
}

#[test]
fn host_without_docker_says_what_it_looked_for() {
    let tmp = tempfile::tempdir().expect("tempdir");
    mountinfo_fixture(tmp.path());
    let (r, stderr) = report(tmp.path());
    assert!(stderr.contains("no Docker storage found"), "{stderr}");
    assert!(stderr.contains("/var/lib/docker/overlay2"), "names where it looked: {stderr}");
    assert_eq!(r["sources"]["docker_found"], false);
    assert_eq!(r["containers"].as_array().map(Vec::len), Some(0));
    assert_eq!(r["unowned_mounts"].as_array().map(Vec::len), Some(2), "mounts are still listed");
    let table = ovlaudit(&["report", "--root", tmp.path().to_str().expect("utf-8")]);
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("No containers found in /var/lib/docker"));
}

/// A default data root that exists but holds no overlay2 store (an empty directory, another storage
/// driver) is noted, not fatal: the mount table is still audited. A named one stays an error (below).
#[test]
fn default_data_root_without_overlay2_is_only_noted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    mountinfo_fixture(tmp.path());
    fs::create_dir_all(tmp.path().join("var/lib/docker/image/vfs")).expect("mkdir");
    let (r, _) = report(tmp.path());
    assert_eq!(r["sources"]["docker_found"], false);
    assert_eq!(r["unowned_mounts"].as_array().map(Vec::len), Some(2), "mounts are still listed");
    let noted: Vec<&Value> = r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "docker_root_not_overlay2")
        .collect();
    assert_eq!(noted.len(), 1, "{}", r["findings"]);
    assert_eq!(noted[0]["severity"], "info");
    assert!(noted[0]["message"].as_str().is_some_and(|m| m.contains("image/vfs")), "{}", noted[0]);
}

#[test]
fn fatal_errors_exit_2_and_name_the_path_and_cause() {
    let out = ovlaudit(&["report", "--docker-root", "/nonexistent/docker"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/docker: no such directory"), "{err}");

    let tmp = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(tmp.path().join("image/vfs")).expect("mkdir");
    let out = ovlaudit(&["report", "--docker-root", tmp.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Docker overlay2 data root") && err.contains("image/vfs"), "{err}");

    let out = ovlaudit(&["report", "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn unreadable_data_root_as_non_root_exits_2_with_the_cause() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: needs root to drop to another user");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    docker_fixture(tmp.path());
    let root = tmp.path().join("var/lib/docker");
    fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    // The binary must be reachable by `nobody`: the temp dir above it is 0700 too.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", crate::common::OVLAUDIT])
        .args(["report", "--docker-root", root.to_str().expect("utf-8")])
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied") && err.contains(root.to_str().expect("utf-8")), "{err}");
}

#[test]
fn help_and_version() {
    let out = ovlaudit(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("report"), "{help}");
    let out = ovlaudit(&["report", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--format", "--bytes", "--docker-root", "--proc", "--root", "--threads"] {
        assert!(help.contains(flag), "report --help documents {flag}");
    }
    let out = ovlaudit(&["--version"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("ovlaudit {}", env!("CARGO_PKG_VERSION")));
}

/// One superblock seen at three mount points (the engine's, a container's own root, a nested copy) is one
/// mount owned by its container; a mount whose 30 layers are all missing from the data root is one finding
/// naming the count, and a code met more often than the bound folds into one summary with its count.
#[test]
fn copies_of_a_mount_are_one_mount_and_missing_layers_one_finding() {
    let tmp = tempfile::tempdir().expect("tempdir");
    docker_fixture(tmp.path());
    let options = format!("rw,lowerdir=l/GOODSHORTI:l/BASESHORT,upperdir={GOOD_RW}/diff,workdir={GOOD_RW}/work");
    let merged = format!("/var/lib/docker/overlay2/{GOOD_RW}/merged");
    let gone: Vec<String> = (0..30).map(|i| format!("/var/lib/docker/overlay2/l/GONE{i:02}")).collect();
    let mut text = format!(
        "60 1 0:39 / / rw,relatime master:2 - overlay overlay {options}\n\
         22 60 0:21 / /srv rw,relatime shared:1 - ext4 /dev/vda rw\n\
         48 22 0:39 / {merged} rw,relatime shared:2 - overlay overlay {options}\n\
         61 22 0:39 / /srv/copy{merged} rw,relatime master:2 - overlay overlay {options}\n\
         70 22 0:41 / /mnt/broken rw,relatime - overlay none ro,lowerdir={}\n",
        gone.join(":")
    );
    for i in 0..12 {
        text.push_str(&format!(
            "{} 22 0:{} / /mnt/more{i} rw,relatime - overlay none ro,lowerdir=/var/lib/docker/overlay2/l/NONE{i}\n",
            80 + i,
            50 + i
        ));
    }
    write(&tmp.path().join("proc/1/mountinfo"), &text);
    let (r, _) = report(tmp.path());

    let m = &container(&r, GOOD)["mount"];
    assert_eq!(m["mountpoint"], merged.as_str(), "named by the engine's own mount point");
    assert_eq!(m["mountpoints"], serde_json::json!(["/", merged, format!("/srv/copy{merged}")]));
    assert_eq!(m["device"], "0:39");
    assert_eq!(m["lowerdirs"][1], format!("/var/lib/docker/overlay2/{BASE}/diff"));
    assert_eq!(r["totals"]["overlay_mounts"], 14, "3 copies are one mount, plus 13 hand-made ones");
    assert_eq!(r["totals"]["overlay_mount_points"], 16);
    let unowned: Vec<&str> = r["unowned_mounts"]
        .as_array()
        .expect("unowned_mounts")
        .iter()
        .map(|m| m["mountpoint"].as_str().expect("mountpoint"))
        .collect();
    assert_eq!(unowned.len(), 13);
    assert!(!unowned.iter().any(|p| p.contains(GOOD_RW) || *p == "/"), "{unowned:?}");

    let unresolved: Vec<&Value> =
        r["findings"].as_array().expect("findings").iter().filter(|f| f["code"] == "lowerdir_unresolved").collect();
    assert_eq!(unresolved.len(), 11, "10 listed, the other 3 in one summary: {unresolved:?}");
    let broken = unresolved[0]["message"].as_str().expect("message");
    assert!(broken.contains("30 of the 30 lower layers of the mount at /mnt/broken"), "{broken}");
    assert_eq!(unresolved[0]["path"], gone[0].as_str());
    let summary = unresolved[10];
    assert_eq!(summary["count"], 3);
    assert_eq!(summary["severity"], "error");
    assert_eq!(
        summary["samples"],
        serde_json::json!([
            "/var/lib/docker/overlay2/l/NONE9",
            "/var/lib/docker/overlay2/l/NONE10",
            "/var/lib/docker/overlay2/l/NONE11"
        ])
    );
    assert!(unresolved[..10].iter().all(|f| f.get("count").is_none()), "ordinary findings stand for one");
}

/// Explicit paths that cannot be used are usage errors naming the path and the cause, not a report with
/// warnings; relative paths are taken from the current directory.
#[test]
fn unusable_explicit_paths_exit_2_and_relative_paths_are_from_the_current_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nonexistent");
    let missing = missing.to_str().expect("utf-8");
    for args in [
        &["report", "--proc", missing][..],
        &["report", "--root", missing],
        &["run", "--proc", missing, "--config", missing],
        &["check-config", "--root", missing],
        &["check-sinks", "--root", missing, "--sink", "stdout:"],
    ] {
        let out = ovlaudit(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(missing) && err.contains("No such file or directory"), "{args:?}: {err}");
    }
    // A directory that is no proc file system: the cause names the mount table it lacks.
    let out = ovlaudit(&["report", "--proc", tmp.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1/mountinfo"), "{out:?}");

    docker_fixture(tmp.path());
    mountinfo_fixture(tmp.path());
    let run_in_tmp = |args: &[&str]| {
        let out = std::process::Command::new(crate::common::OVLAUDIT)
            .args(args)
            .current_dir(tmp.path())
            .output()
            .expect("run ovlaudit");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
    };
    // `--root .` is the temp dir: the fixture's containers and mount table.
    let r = run_in_tmp(&["report", "--format", "json", "--root", "."]);
    assert_eq!(container(&r, GOOD)["writable"]["apparent_bytes"], 5);
    assert_eq!(r["unowned_mounts"].as_array().map(Vec::len), Some(1), "the hand-made overlay");
    // A relative data root and proc, without --root: the fixture's too, found from the current directory.
    let r = run_in_tmp(&["report", "--format", "json", "--docker-root", "var/lib/docker", "--proc", "proc"]);
    assert_eq!(container(&r, GOOD)["writable"]["apparent_bytes"], 5);
    write(&tmp.path().join("empty.toml"), "");
    let config = std::process::Command::new(crate::common::OVLAUDIT)
        .args(["check-config", "--docker-root", "var/lib/docker", "--config", "empty.toml"])
        .current_dir(tmp.path())
        .output()
        .expect("run ovlaudit");
    let text = String::from_utf8_lossy(&config.stdout);
    let expected = format!("docker_root = \"{}\"", tmp.path().join("var/lib/docker").display());
    assert!(text.lines().any(|l| l == expected), "{text}\n{}", String::from_utf8_lossy(&config.stderr));
}

/// Each subcommand's help lists only the flags it uses, and shows examples.
#[test]
fn help_lists_only_what_each_subcommand_uses() {
    let help = |sub: &str| String::from_utf8_lossy(&ovlaudit(&[sub, "--help"]).stdout).into_owned();
    let sinks = help("check-sinks");
    for flag in ["--config", "--sink", "--root"] {
        assert!(sinks.contains(flag), "check-sinks --help lists {flag}");
    }
    for flag in ["--interval", "--docker-root", "--podman-root", "--containerd-root", "--proc", "--threads"] {
        assert!(!sinks.contains(flag), "check-sinks does not use {flag}:\n{sinks}");
    }
    for sub in ["report", "run", "check-config", "check-sinks"] {
        assert!(help(sub).contains("Examples:\n  ovlaudit "), "{sub} --help has examples");
    }
}

/// The suite's `ovlaudit` (common::ovlaudit) reads only what a test names or makes: the host's own Docker,
/// Podman and containerd stores, which `report` reads by default, are out of its sight.
#[test]
fn the_suite_never_reads_the_hosts_own_engines() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: hiding the host's stores needs root (a private mount namespace)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    docker_fixture(tmp.path());
    let root = tmp.path().join("var/lib/docker");
    let out = ovlaudit(&["report", "--format", "json", "--docker-root", root.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let engines = r["sources"]["engines"].as_array().expect("sources.engines");
    for e in engines {
        let at = e["root"].as_str().unwrap_or_default();
        assert!(Path::new(at).starts_with(tmp.path()), "an engine the test did not make: {e}");
    }
    assert!(r["containers"].as_array().expect("containers").iter().all(|c| c["runtime"] == "docker"), "{r}");
}

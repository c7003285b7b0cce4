//! The writable-layer walker against hostile trees, each in a real container's writable layer on a private
//! dockerd: written from inside the container where it can be, directly into its upperdir where the
//! container cannot (xattrs it may not set, mounts). Expected values come from the engine's `SizeRw`,
//! from `du`, or by hand from what the test wrote.

use crate::common::{container, du_allocated, ovlaudit, report_json, OVLAUDIT};
use crate::harness::{start_engine, Engine};
use collector::walk::{measure_layers, WalkOptions};
use serde_json::Value;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A container's id and its upperdir as the engine reports them.
fn layer(engine: &Engine, name: &str) -> (String, PathBuf) {
    let id = engine.docker(&["inspect", "-f", "{{.Id}}", name]);
    let upper = engine.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name]);
    (id, PathBuf::from(upper))
}

/// The engine's SizeRw for a container.
fn size_rw(engine: &Engine, id: &str) -> u64 {
    let listed = engine.api_get("/containers/json?all=1&size=1");
    let c = listed.as_array().expect("containers").iter().find(|c| c["Id"] == id).expect("container listed");
    c["SizeRw"].as_u64().unwrap_or(0)
}

fn writable<'a>(report: &'a Value, id: &str) -> &'a Value {
    &container(report, id)["writable"]
}

fn report_args(engine: &Engine, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["report", "--docker-root", engine.data_root().to_str().expect("utf-8")].map(String::from).to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_ok(args: &[String]) -> Vec<u8> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ovlaudit(&args);
    assert!(out.status.success(), "ovlaudit {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    let n = CString::new(name).expect("no NUL");
    // SAFETY: valid C strings and a valid buffer.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(rc, 0, "setxattr {name} on {}: {}", path.display(), std::io::Error::last_os_error());
}

#[test]
fn symlinks_are_never_followed() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    engine.docker(&[
        "run",
        "--name",
        "victim",
        "bb:1",
        "sh",
        "-c",
        "dd if=/dev/zero of=/big bs=1000 count=1000 2>/dev/null",
    ]);
    let (_, victim_upper) = layer(&engine, "victim");
    let other = victim_upper.to_str().expect("utf-8").to_owned();
    let targets = ["loop", "b", "a", "/", "/proc", other.as_str(), "../..", "/proc/self/root"];
    let script = format!(
        "ln -s loop /loop && ln -s b /a && ln -s a /b && ln -s / /to-root && ln -s /proc /to-proc \
         && ln -s {other} /to-other && mkdir /d && ln -s ../.. /d/up && ln -s /proc/self/root /d/self"
    );
    engine.docker(&["run", "--name", "hostile", "bb:1", "sh", "-c", &script]);
    let (id, _) = layer(&engine, "hostile");

    let report = report_json(engine.data_root());
    let w = writable(&report, &id);
    let by_hand: u64 = targets.iter().map(|t| t.len() as u64).sum();
    assert_eq!(w["apparent_bytes"].as_u64(), Some(by_hand), "each symlink counts its target's length, nothing more");
    assert_eq!(w["apparent_bytes"].as_u64(), Some(size_rw(&engine, &id)), "equal to the engine's SizeRw");
    assert_eq!(w["symlinks"], 8);
    assert_eq!(w["dirs"], 1);
    assert_eq!(w["files"], 0);
    assert_eq!(w["errors"], 0);
}

/// Removes a chain `top/d/d/…` of any depth without ever using a long path: the second level is lifted
/// into the first's place, one level at a time.
fn remove_deep_chain(top: &Path) {
    let parent = top.parent().expect("parent");
    let lifted = parent.join("lifted");
    while top.join("d").exists() {
        std::fs::rename(top.join("d"), &lifted).expect("lift one level");
        for e in std::fs::read_dir(top).expect("list").flatten() {
            std::fs::remove_file(e.path()).expect("remove a file of the level");
        }
        std::fs::remove_dir(top).expect("remove the emptied level");
        std::fs::rename(&lifted, top).expect("put the rest back");
    }
    std::fs::remove_dir_all(top).expect("remove the last level");
}

#[test]
fn nesting_deeper_than_path_max_is_counted_with_few_descriptors() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    // 10,000 levels, written from inside the container bottom-up (make a level, move the chain into it) so
    // no path the container uses is long; the walker sees a ~20,000-byte path, five times PATH_MAX.
    engine.docker(&[
        "run",
        "--name",
        "deep",
        "bb:1",
        "sh",
        "-c",
        "cd / && mkdir d && echo bottom > d/f && i=1; while [ $i -lt 10000 ]; do mkdir t && mv d t/d && mv t d; \
         i=$((i+1)); done; echo top > /top",
    ]);
    let (id, upper) = layer(&engine, "deep");

    // With at most 128 descriptors a walk that kept one per level would fail 9,800 levels early.
    let mut cmd = crate::common::hermetic_ovlaudit();
    cmd.args(report_args(&engine, &["--format", "json", "--threads", "2", "--top", "3"]));
    // SAFETY: setrlimit is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 128, rlim_max: 128 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run ovlaudit");
    assert!(out.status.success(), "ovlaudit failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let w = writable(&report, &id);
    assert_eq!(w["errors"], 0, "{w}");
    assert_eq!(w["dirs"], 10_000);
    assert_eq!(w["files"], 2);
    assert_eq!(w["apparent_bytes"], 7 + 4, "\"bottom\\n\" and \"top\\n\"");
    assert_eq!(w["allocated_bytes"].as_u64(), Some(du_allocated(upper.to_str().expect("utf-8"))), "du -sB1");
    let deepest = w["top_files"][0]["path"].as_str().expect("top file path");
    assert_eq!(deepest.len(), "/d".len() * 10_000 + "/f".len(), "the bottom file, by its full path");
    remove_deep_chain(&upper.join("d"));
}

#[test]
fn strange_names_are_counted_and_rendered_safely() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    // Sizes 1..6 bytes so the top-files list has a known order.
    let script = r#"cd / && mkdir n && cd n
        printf 1 > "$(printf 'new\nline')"
        printf 22 > "$(printf 'tab\there')"
        printf 333 > 'back\slash'
        printf 4444 > "$(printf 'latin\377')"
        printf 55555 > "$(printf 'esc\033[2Jclear')"
        printf 666666 > 'plain'"#;
    engine.docker(&["run", "--name", "names", "bb:1", "sh", "-c", script]);
    let (id, _) = layer(&engine, "names");

    let report: Value = serde_json::from_slice(&run_ok(&report_args(&engine, &["--format", "json", "--top", "10"])))
        .expect("one JSON document");
    let w = writable(&report, &id);
    assert_eq!(w["files"], 6);
    assert_eq!(w["errors"], 0);
    assert_eq!(w["apparent_bytes"], 21, "1+2+3+4+5+6 by hand");
    assert_eq!(w["apparent_bytes"].as_u64(), Some(size_rw(&engine, &id)));
    let paths: Vec<&str> =
        w["top_files"].as_array().expect("top_files").iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(
        paths,
        ["/n/plain", "/n/esc\u{1b}[2Jclear", "/n/latin\u{fffd}", "/n/back\\slash", "/n/tab\there", "/n/new\nline"]
    );
    let sizes: Vec<u64> =
        w["top_files"].as_array().expect("top_files").iter().filter_map(|f| f["apparent_bytes"].as_u64()).collect();
    assert_eq!(sizes, [6, 5, 4, 3, 2, 1]);
    let not_utf8 =
        report["findings"].as_array().expect("findings").iter().filter(|f| f["code"] == "path_not_utf8").count();
    assert_eq!(not_utf8, 1, "the non-UTF-8 name is flagged");

    // The table: one line per row, every control character escaped.
    // The containers section: findings may quote a path too, wrapped anywhere.
    let table = String::from_utf8(run_ok(&report_args(&engine, &["--top", "10", "--section", "containers"])))
        .expect("the table is UTF-8");
    assert!(!table.contains('\t') && !table.contains('\u{1b}'), "raw control characters in the table:\n{table}");
    for shown in ["/n/new\\nline", "/n/tab\\there", "/n/back\\\\slash", "/n/esc\\u{1b}[2Jclear", "/n/latin\u{fffd}"] {
        assert_eq!(
            table.lines().filter(|l| l.trim_end().ends_with(shown)).count(),
            1,
            "{shown} on one line of:\n{table}"
        );
    }

    // NDJSON: every line one JSON event carrying the same names.
    let nd = String::from_utf8(run_ok(&report_args(&engine, &["--format", "ndjson", "--top", "10"]))).expect("UTF-8");
    let events: Vec<Value> = nd.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    let ev = events.iter().find(|e| e["container"]["id"] == id).expect("the container's event");
    assert_eq!(ev["ovlaudit"]["container"]["writable"]["top_files"][5]["path"], "/n/new\nline");
}

/// `deep/d/d/…` 60 levels (deeper than the walker's 48 open directories), each level with a 1-byte file,
/// and at level 4 a directory `side` (made before `d`, so it is still pending while the walk is below
/// `d`) with a 10-byte file; plus `a/{keep,gone,moved}`.
const CHURN_TREE: &str = "cd / && mkdir -p a/keep a/gone a/moved && echo 12345 > a/keep/f && echo 1234 > a/gone/f \
    && echo 123 > a/moved/f && mkdir deep && cd deep && i=0; while [ $i -lt 60 ]; do \
    if [ $i = 4 ]; then mkdir side && echo 123456789 > side/f; fi; mkdir d && cd d && printf x > x; i=$((i+1)); done";

fn chain(levels: usize) -> String {
    format!("deep/{}", std::iter::repeat_n("d", levels).collect::<Vec<_>>().join("/"))
}

/// Walks `upper` on one thread; when the walk has listed `a`, removes `a/gone` and moves `a/moved` away;
/// when it has listed level 55 of the chain, moves each of `moves` (paths below the layer) to the top.
fn walk_with_changes(upper: &Path, moves: &[String]) -> collector::usage::WritableUsage {
    let u = upper.to_path_buf();
    let at55 = chain(55);
    let hook = move |_layer: usize, dir: &[u8]| {
        if dir == b"a" {
            std::fs::remove_dir_all(u.join("a/gone")).expect("remove a/gone");
            std::fs::rename(u.join("a/moved"), u.join("moved-away")).expect("move a/moved");
        }
        if dir == at55.as_bytes() {
            for (i, m) in moves.iter().enumerate() {
                std::fs::rename(u.join(m), u.join(format!("moved-{i}"))).expect("move a level of the chain");
            }
        }
    };
    let opts = WalkOptions { threads: 1, xattrs: collector::usage::OverlayXattrs::Trusted, top_files: 0 };
    let r = measure_layers(&[Some(upper.to_path_buf())], opts, Some(&hook));
    r.into_iter().next().expect("one result").expect("the layer is still measured")
}

#[test]
fn entries_removed_or_moved_during_the_walk_are_errors_not_failures() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    engine.docker(&["run", "--name", "churn1", "bb:1", "sh", "-c", CHURN_TREE]);
    engine.docker(&["run", "--name", "churn2", "bb:1", "sh", "-c", CHURN_TREE]);

    // Level 8 moved away while the walk is at level 55, its ancestors closed: going back up, `..` of
    // level 8 is no longer level 7, so the walk reopens levels 1-7 by name from the top, finds each still
    // the same directory, and goes on to `side`. Nothing is lost; only a/gone and a/moved, which vanished
    // before they were opened, are errors.
    let (_, upper) = layer(&engine, "churn1");
    let usage = walk_with_changes(&upper, &[chain(8)]);
    assert_eq!(usage.errors, 2, "{:?}", usage.error_samples);
    let samples = usage.error_samples.join("\n");
    assert!(samples.contains(&format!("{}/a/gone: No such file or directory", upper.display())), "{samples}");
    assert!(samples.contains(&format!("{}/a/moved: No such file or directory", upper.display())), "{samples}");
    // a/keep/f (6 bytes), the 60 levels (1 byte each), side/f (10 bytes); gone/f and moved/f never reached.
    assert_eq!(usage.apparent_bytes, 6 + 60 + 10);
    assert_eq!(usage.dirs, 1 + 3 + 1 + 60 + 1, "a and its three subdirectories, deep, 60 levels, side");

    // Level 3 moved away as well: now levels 3-7 cannot be reached from the top, so what was pending in
    // them (`side`, below level 4: subdirectories are visited in name order, `d` before `side`) is given up
    // as one error naming level 3, and the walk goes on.
    let (_, upper) = layer(&engine, "churn2");
    let usage = walk_with_changes(&upper, &[chain(8), chain(3)]);
    assert_eq!(usage.errors, 3, "{:?}", usage.error_samples);
    let samples = usage.error_samples.join("\n");
    let lost = format!("{}/{}: directory moved or removed during the walk", upper.display(), chain(3));
    assert!(samples.contains(&lost), "{samples}");
    assert_eq!(usage.apparent_bytes, 6 + 60, "side/f was not reached");

    // And the binary, while the container keeps creating, renaming and removing directories.
    engine.docker(&[
        "run",
        "-d",
        "--name",
        "stirrer",
        "bb:1",
        "sh",
        "-c",
        "while :; do mkdir -p /s/a/b/c && echo x > /s/a/b/c/f && mv /s/a /s/z && rm -r /s; done",
    ]);
    let (stirrer, _) = layer(&engine, "stirrer");
    for _ in 0..20 {
        let report: Value =
            serde_json::from_slice(&run_ok(&report_args(&engine, &["--format", "json"]))).expect("JSON");
        assert!(writable(&report, &stirrer)["apparent_bytes"].as_u64().is_some());
    }
}

#[test]
fn unreadable_directory_is_counted_in_errors_and_the_rest_goes_on() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    engine.docker(&[
        "run",
        "--name",
        "locked",
        "bb:1",
        "sh",
        "-c",
        "mkdir /locked && echo secret > /locked/f && chmod 000 /locked && echo open > /open",
    ]);
    engine.docker(&["run", "--name", "plain", "bb:1", "sh", "-c", "echo fine > /fine"]);
    let (id, upper) = layer(&engine, "locked");
    let (plain, _) = layer(&engine, "plain");

    // Root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: mode 000 now means what it says.
    let mut cmd = crate::common::hermetic("setpriv");
    cmd.args(["--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", OVLAUDIT]);
    cmd.args(report_args(&engine, &["--format", "json"]));
    let out = cmd.output().expect("run setpriv (util-linux)");
    assert!(out.status.success(), "ovlaudit failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let w = writable(&report, &id);
    assert_eq!(w["errors"], 1);
    assert_eq!(w["dirs"], 1, "the locked directory itself is seen");
    assert_eq!(w["apparent_bytes"].as_u64(), Some(size_rw(&engine, &id) - "secret\n".len() as u64));
    let finding = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "writable_layer_partly_unreadable")
        .expect("a finding names the unreadable directory");
    let message = finding["message"].as_str().expect("message");
    assert!(message.contains(&format!("{}/locked: Permission denied", upper.display())), "{message}");
    assert_eq!(writable(&report, &plain)["apparent_bytes"].as_u64(), Some(size_rw(&engine, &plain)));
    assert_eq!(writable(&report, &plain)["errors"], 0);
}

/// Unmounts what a test mounted, even when it fails.
struct Mounted(Vec<PathBuf>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let status = Command::new("umount").arg(p).status();
            if !status.is_ok_and(|s| s.success()) {
                eprintln!("walk_safety: umount {} failed", p.display());
            }
        }
    }
}

#[test]
fn mount_points_inside_an_upperdir_are_not_crossed() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    engine.docker(&["run", "--name", "mnt", "bb:1", "sh", "-c", "mkdir /bind /tmpfs && echo data > /data"]);
    let (id, upper) = layer(&engine, "mnt");
    let engine_size = size_rw(&engine, &id);
    let du_before = du_allocated(upper.to_str().expect("utf-8"));

    // A bind mount from the same filesystem (same st_dev: only the mount id tells) and a tmpfs, each
    // holding a megabyte that must not be counted.
    let src = engine.dir().join("bind-source");
    std::fs::create_dir(&src).expect("mkdir bind source");
    std::fs::write(src.join("big"), vec![7u8; 1 << 20]).expect("write big");
    let mut mounted = Mounted(Vec::new());
    let bind = upper.join("bind");
    let ok = Command::new("mount").arg("--bind").arg(&src).arg(&bind).status().expect("run mount");
    assert!(ok.success(), "mount --bind");
    mounted.0.push(bind);
    let tmpfs = upper.join("tmpfs");
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&tmpfs).status().expect("mount");
    assert!(ok.success(), "mount tmpfs");
    mounted.0.push(tmpfs.clone());
    std::fs::write(tmpfs.join("big"), vec![7u8; 1 << 20]).expect("write big into tmpfs");

    let report = report_json(engine.data_root());
    let w = writable(&report, &id);
    assert_eq!(w["mount_points"], 2);
    assert_eq!(w["apparent_bytes"].as_u64(), Some(engine_size), "SizeRw before anything was mounted");
    assert_eq!(
        w["allocated_bytes"].as_u64(),
        Some(du_before - 2 * 4096),
        "du before mounting, less the two covered dirs"
    );
    assert_eq!(w["errors"], 0);
    let codes: Vec<&str> =
        report["findings"].as_array().expect("findings").iter().filter_map(|f| f["code"].as_str()).collect();
    assert!(codes.contains(&"writable_layer_has_mount_points"), "{codes:?}");
}

#[test]
fn overlay_markers_opaque_dirs_xattr_whiteouts_and_metacopy() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    engine.build("lower:1", "FROM bb:1\nRUN mkdir -p /d/e && echo old > /d/e/f && echo old > /g\n");
    // Replacing a lower directory makes an opaque one; deleting a lower file makes a 0/0 whiteout.
    engine.docker(&[
        "run",
        "--name",
        "marks",
        "lower:1",
        "sh",
        "-c",
        "rm -r /d && mkdir /d && echo new > /d/n && rm /g",
    ]);
    let (id, upper) = layer(&engine, "marks");
    // What a container cannot write itself (trusted.* needs CAP_SYS_ADMIN on the host), written into its
    // upperdir: a directory marked as holding xattr whiteouts with one such whiteout and one ordinary empty
    // file, and a metacopy file (a size, no blocks, the metacopy xattr).
    let x = upper.join("x");
    std::fs::create_dir(&x).expect("mkdir x");
    setxattr(&x, "trusted.overlay.opaque", b"x");
    std::fs::write(x.join("wh"), b"").expect("whiteout file");
    setxattr(&x.join("wh"), "trusted.overlay.whiteout", b"");
    std::fs::write(x.join("empty"), b"").expect("empty file");
    let meta = std::fs::File::create(upper.join("meta")).expect("metacopy file");
    meta.set_len(1000).expect("size without blocks");
    drop(meta);
    setxattr(&upper.join("meta"), "trusted.overlay.metacopy", b"");

    let report = report_json(engine.data_root());
    let w = writable(&report, &id);
    assert_eq!(w["opaque_dirs"], 1, "/d");
    assert_eq!(w["whiteouts"], 2, "/g (0/0) and /x/wh (xattr)");
    assert_eq!(w["metacopy_files"], 1);
    assert_eq!(w["files"], 3, "/d/n, /x/empty, /meta");
    assert_eq!(w["apparent_bytes"].as_u64(), Some(size_rw(&engine, &id)), "metacopy counts its size, as Docker does");
    assert_eq!(w["apparent_bytes"], 4 + 1000);
}

//! What a store's owner or a corrupt file can make `ovlaudit report` do (issue 17): each test builds a
//! hostile tree by hand (a rootless containers-storage store owned by an unprivileged uid, or a damaged
//! Docker data root), runs the real binary under a deadline, and checks that the run ends, that a finding
//! names the refused file, and that nothing outside the store (a file name, a secret) reaches the output.

use crate::common::OVLAUDIT;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const USER: u32 = 65534;
const BASE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const RW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const IMG: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const CTR: &str = "4444444444444444444444444444444444444444444444444444444444444444";
const EVIL: &str = "5555555555555555555555555555555555555555555555555555555555555555";

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write fixture file");
}

fn chown_tree(path: &Path, uid: u32) {
    let status = Command::new("chown").arg("-R").arg(format!("{uid}:{uid}")).arg(path).status().expect("chown");
    assert!(status.success(), "chown -R {}", path.display());
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A host root with an empty mount table, no Docker, and a minimal rootless store of mallory's (one image
/// layer, one container on its writable layer). Returns (host, store).
fn host_with_rootless_store(tmp: &Path) -> (PathBuf, PathBuf) {
    let host = tmp.join("host");
    write(&host.join("proc/1/mountinfo"), "1 0 8:1 / / rw,relatime - ext4 /dev/vda rw\n");
    let s = host.join("home/mallory/.local/share/containers/storage");
    write(
        &s.join("overlay-layers/layers.json"),
        &format!(
            r#"[{{"id":"{BASE}","diff-digest":"sha256:{BASE}","diff-size":100}},{{"id":"{RW}","parent":"{BASE}"}}]"#
        ),
    );
    write(
        &s.join("overlay-images/images.json"),
        &format!(r#"[{{"id":"{IMG}","names":["localhost/bb:1"],"layer":"{BASE}"}}]"#),
    );
    write(&s.join("overlay-containers/containers.json"), &containers_json(&[(CTR, RW)]));
    for (id, short) in [(BASE, "BASE0000000000000000000000"), (RW, "RW00000000000000000000000A")] {
        fs::create_dir_all(s.join("overlay").join(id).join("diff")).expect("mkdir");
        fs::create_dir_all(s.join("overlay").join(id).join("work")).expect("mkdir");
        write(&s.join("overlay").join(id).join("link"), short);
        fs::create_dir_all(s.join("overlay/l")).expect("mkdir");
        symlink(format!("../{id}/diff"), s.join("overlay/l").join(short)).expect("short link");
    }
    write(&s.join("overlay").join(RW).join("lower"), "l/BASE0000000000000000000000");
    write(&s.join("overlay").join(RW).join("diff/hello"), "hello\n");
    chown_tree(&host.join("home/mallory"), USER);
    (host, s)
}

fn containers_json(records: &[(&str, &str)]) -> String {
    let items: Vec<String> = records
        .iter()
        .map(|(id, layer)| {
            format!(r#"{{"id":"{id}","names":["c{}"],"image":"{IMG}","layer":{}}}"#, &id[..4], Value::from(*layer))
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// `ovlaudit report --format json --root HOST ARGS`, killed (and the test failed) after 30 s: a hang is
/// exactly what these tests guard against. Returns the parsed report and the raw output.
fn report(host: &Path, args: &[&str]) -> (Value, String) {
    let (r, raw, _) = report_with(host, args, false);
    (r, raw)
}

/// [`report`], optionally under a seccomp filter that fails `openat2` with ENOSYS (a kernel before 5.6, or
/// a runtime's filter that does not know the call), so every metadata file is reached by the component
/// walk instead. Also returns the run's peak resident memory (`ru_maxrss`, KiB).
fn report_with(host: &Path, args: &[&str], no_openat2: bool) -> (Value, String, u64) {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(OVLAUDIT);
    cmd.args(["report", "--format", "json", "--root"]).arg(host).args(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if no_openat2 {
        // SAFETY: the hook only calls prctl, which is async-signal-safe.
        unsafe { cmd.pre_exec(|| crate::common::fail_syscall(libc::SYS_openat2, libc::ENOSYS)) };
    }
    // Reaped below with wait4, which (unlike Child::wait) returns this child's own rusage.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().expect("run ovlaudit");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let (mut status, mut usage) = (0, std::mem::MaybeUninit::<libc::rusage>::zeroed());
    loop {
        // SAFETY: wait4 on our own child, writing into locals of the right types.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, usage.as_mut_ptr()) };
        assert!(rc >= 0, "wait4: {}", std::io::Error::last_os_error());
        if rc == pid {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ovlaudit report did not finish within 30 s on a hostile tree");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: wait4 returned the child, so it filled the rusage.
    let peak_kib = unsafe { usage.assume_init() }.ru_maxrss as u64;
    let stdout = String::from_utf8_lossy(&out.join().expect("stdout")).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr")).into_owned();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "report failed ({status}): {stderr}");
    (serde_json::from_str(&stdout).expect("one JSON document"), stdout, peak_kib)
}

fn findings<'a>(r: &'a Value, code: &str) -> Vec<&'a Value> {
    r["findings"].as_array().expect("findings").iter().filter(|f| f["code"] == code).collect()
}

fn has_finding_at(r: &Value, code: &str, path: &Path) -> bool {
    findings(r, code).iter().any(|f| f["path"].as_str() == path.to_str())
}

#[test]
fn a_rootless_layer_naming_a_path_outside_its_store_is_never_walked() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    // A root-only directory named diff elsewhere on the host, and one inside the host root.
    let outside = tmp.path().join("outside");
    write(&outside.join("diff/private/root-only-name.txt"), "topsecret");
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).expect("chmod");
    write(&host.join("var/lib/other/diff/other-name.txt"), "x");
    let records = [
        (CTR, RW),
        (EVIL, "../../../../../../../var/lib/other"),
        ("6666666666666666666666666666666666666666666666666666666666666666", outside.to_str().expect("utf-8")),
    ];
    write(&s.join("overlay-containers/containers.json"), &containers_json(&records));
    chown_tree(&host.join("home/mallory"), USER);

    let (r, raw) = report(&host, &["--top", "3"]);
    assert_eq!(findings(&r, "container_layer_id_invalid").len(), 2, "{raw}");
    let ids: Vec<&str> =
        r["containers"].as_array().expect("containers").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, vec![CTR], "only the container with a real layer id is reported");
    let top: Vec<&str> = r["containers"][0]["writable"]["top_files"]
        .as_array()
        .expect("top files")
        .iter()
        .filter_map(|t| t["path"].as_str())
        .collect();
    assert_eq!(top, vec!["/hello"]);
    for name in ["root-only-name.txt", "other-name.txt", "topsecret"] {
        assert!(!raw.contains(name), "{name} reached the report:\n{raw}");
    }
}

/// Replaces the `lower` file of the user's store `s` (made by [`host_with_rootless_store`]) with a symlink
/// to a root-only secret made under `tmp`, as a user who wants it printed would.
fn link_lower_file_to_a_secret(tmp: &Path, s: &Path) {
    let secret = tmp.join("root-only/id_ed25519");
    write(&secret, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod");
    let lower = s.join("overlay").join(RW).join("lower");
    fs::remove_file(&lower).expect("rm");
    symlink(&secret, &lower).expect("symlink");
}

#[test]
fn a_lower_file_linked_to_a_secret_is_refused_and_not_printed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    link_lower_file_to_a_secret(tmp.path(), &s);

    let (r, raw) = report(&host, &[]);
    let refused = findings(&r, "metadata_refused");
    assert!(
        refused.iter().any(|f| f["message"].as_str().is_some_and(|m| m.contains("symbolic link"))),
        "no refusal of the linked lower file:\n{raw}"
    );
    assert!(!raw.contains("OPENSSH") && !raw.contains("b3BlbnNz"), "the secret reached the report:\n{raw}");
    assert_eq!(r["containers"][0]["writable"]["lowerdirs"], Value::Array(vec![]));
}

#[test]
fn a_hard_link_to_a_file_the_store_owner_cannot_read_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    // Root's own file, not world-readable, linked into the store: the store's owner could not read it.
    let lower = s.join("overlay").join(RW).join("lower");
    fs::remove_file(&lower).expect("rm");
    write(&lower, "l/SECRETSECRETSECRET");
    std::os::unix::fs::chown(&lower, Some(0), Some(0)).expect("chown");
    fs::set_permissions(&lower, fs::Permissions::from_mode(0o600)).expect("chmod");
    let (r, raw) = report(&host, &[]);
    assert!(
        findings(&r, "metadata_refused")
            .iter()
            .any(|f| f["message"].as_str().is_some_and(|m| m.contains("cannot read") && m.contains("uid 0"))),
        "{raw}"
    );
    assert!(!raw.contains("SECRETSECRET"), "{raw}");
}

#[test]
fn fifos_and_devices_in_metadata_end_in_findings_not_hangs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    let containers = s.join("overlay-containers/containers.json");
    let volatile = s.join("overlay-layers/volatile-layers.json");
    let bolt = s.join("libpod/bolt_state.db");
    let lower = s.join("overlay").join(RW).join("lower");
    fs::remove_file(&containers).expect("rm");
    mkfifo(&containers);
    symlink("/dev/zero", &volatile).expect("symlink");
    fs::create_dir_all(bolt.parent().expect("parent")).expect("mkdir");
    mkfifo(&bolt);
    fs::remove_file(&lower).expect("rm");
    mkfifo(&lower);
    chown_tree(&host.join("home/mallory"), USER);

    let (r, raw) = report(&host, &[]);
    for p in [&containers, &volatile, &bolt] {
        assert!(has_finding_at(&r, "metadata_refused", p), "no refusal of {}:\n{raw}", p.display());
    }
    assert!(raw.contains("not a regular file (a FIFO)"), "{raw}");
    // Orphans are held back while a metadata file could not be read.
    assert!(!findings(&r, "orphans_withheld").is_empty(), "{raw}");
}

#[test]
fn a_store_whose_overlay_links_into_another_store_claims_none_of_its_layers() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    // Another user's store with a layer directory mallory's records do not name.
    let other = host.join("home/bob/.local/share/containers/storage");
    write(&other.join("overlay-layers/layers.json"), "[]");
    fs::create_dir_all(other.join("overlay/9999999999999999999999999999999999999999999999999999999999999999/diff"))
        .expect("mkdir");
    chown_tree(&host.join("home/bob"), USER + 1);
    // `overlay` itself a link to bob's: nothing of bob's is mallory's, orphan or otherwise.
    fs::rename(s.join("overlay"), s.join("overlay.real")).expect("rename");
    symlink(other.join("overlay"), s.join("overlay")).expect("symlink");
    let (r, raw) = report(&host, &["--orphan-min-age", "0"]);
    let orphans: Vec<&str> =
        r["orphans"].as_array().expect("orphans").iter().filter_map(|o| o["path"].as_str()).collect();
    assert_eq!(orphans, vec!["/home/bob/.local/share/containers/storage/overlay/9999999999999999999999999999999999999999999999999999999999999999"], "{raw}");
    assert!(has_finding_at(&r, "metadata_refused", &s.join("overlay")), "{raw}");

    // One layer directory a link into bob's store.
    fs::remove_file(s.join("overlay")).expect("rm");
    fs::rename(s.join("overlay.real"), s.join("overlay")).expect("rename back");
    symlink(
        other.join("overlay/9999999999999999999999999999999999999999999999999999999999999999"),
        s.join("overlay/8888888888888888888888888888888888888888888888888888888888888888"),
    )
    .expect("symlink");
    chown_tree(&host.join("home/mallory"), USER);

    let (r, raw) = report(&host, &["--orphan-min-age", "0"]);
    let orphan_paths: Vec<&str> =
        r["orphans"].as_array().expect("orphans").iter().filter_map(|o| o["path"].as_str()).collect();
    assert!(
        orphan_paths.iter().all(|p| !p.contains("/home/mallory/")),
        "mallory's store reports orphans: {orphan_paths:?}"
    );
    assert!(
        findings(&r, "store_entry_is_link").iter().any(|f| f["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("8888888888888888888888888888888888888888888888888888888888888888"))),
        "{raw}"
    );
    // Bob's own orphan is still his.
    assert!(orphan_paths.iter().any(|p| p.starts_with("/home/bob/")), "{orphan_paths:?}");
}

#[test]
fn a_damaged_docker_root_names_each_refused_file_and_stats_nothing_outside() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = tmp.path().join("host");
    write(&host.join("proc/1/mountinfo"), "1 0 8:1 / / rw,relatime - ext4 /dev/vda rw\n");
    let d = host.join("var/lib/docker");
    fs::create_dir_all(d.join("image/overlay2/layerdb/sha256")).expect("mkdir");
    fs::create_dir_all(d.join("overlay2/l")).expect("mkdir");
    let shadow = host.join("etc/shadow");
    write(&shadow, &"x".repeat(1234));
    // CTR: a record whose LogPath points at the host's shadow file. EVIL: a FIFO for a record, and an
    // init-id that climbs out of overlay2/.
    for (cid, rw) in [(CTR, RW), (EVIL, BASE)] {
        let m = d.join("image/overlay2/layerdb/mounts").join(cid);
        write(&m.join("mount-id"), rw);
        fs::create_dir_all(d.join("overlay2").join(rw).join("diff")).expect("mkdir");
    }
    write(&d.join("image/overlay2/layerdb/mounts").join(CTR).join("init-id"), &format!("{RW}-init"));
    write(&d.join("image/overlay2/layerdb/mounts").join(EVIL).join("init-id"), "../../../../etc");
    write(
        &d.join("containers").join(CTR).join("config.v2.json"),
        &format!(r#"{{"ID":"{CTR}","Name":"/c","LogPath":"/etc/shadow","State":{{}}}}"#),
    );
    fs::create_dir_all(d.join("containers").join(EVIL)).expect("mkdir");
    mkfifo(&d.join("containers").join(EVIL).join("config.v2.json"));

    let (r, raw) = report(&host, &[]);
    let c = r["containers"].as_array().expect("containers").iter().find(|c| c["id"] == CTR).expect("CTR reported");
    assert_eq!(c["log_bytes"], Value::Null, "{raw}");
    assert_eq!(findings(&r, "log_path_outside_container").len(), 1, "{raw}");
    assert!(!raw.contains("1234"), "the shadow file's size reached the report:\n{raw}");
    assert!(has_finding_at(&r, "metadata_refused", &d.join("containers").join(EVIL).join("config.v2.json")), "{raw}");
    assert!(
        findings(&r, "layerdb_mount_unreadable")
            .iter()
            .any(|f| f["message"].as_str().is_some_and(|m| m.contains("init-id"))),
        "{raw}"
    );
}

#[test]
fn records_sharing_one_writable_layer_measure_it_once() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    let records: Vec<(String, &str)> = (0..50).map(|i| (format!("{:064x}", 0xc0 + i), RW)).collect();
    let refs: Vec<(&str, &str)> = records.iter().map(|(id, l)| (id.as_str(), *l)).collect();
    write(&s.join("overlay-containers/containers.json"), &containers_json(&refs));
    chown_tree(&host.join("home/mallory"), USER);
    let (r, raw) = report(&host, &[]);
    let ids: Vec<&str> =
        r["containers"].as_array().expect("containers").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, vec![records[0].0.as_str()], "{raw}");
    assert_eq!(r["containers"][0]["writable"]["apparent_bytes"], 6, "hello\\n, once");
    // Five named, then one line for the other 44.
    let shared = findings(&r, "container_layer_shared");
    assert_eq!(shared.len(), 6, "{raw}");
    assert!(shared[5]["message"].as_str().is_some_and(|m| m.starts_with("44 more")), "{raw}");
}

#[test]
fn sparse_files_adding_past_i64_are_capped_with_a_finding_not_wrapped() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = tmp.path().join("host");
    write(&host.join("proc/1/mountinfo"), "1 0 8:1 / / rw,relatime - ext4 /dev/vda rw\n");
    let d = host.join("var/lib/docker");
    fs::create_dir_all(d.join("image/overlay2/layerdb/sha256")).expect("mkdir");
    fs::create_dir_all(d.join("overlay2/l")).expect("mkdir");
    write(&d.join("image/overlay2/layerdb/mounts").join(CTR).join("mount-id"), RW);
    write(&d.join("containers").join(CTR).join("config.v2.json"), &format!(r#"{{"ID":"{CTR}","Name":"/c"}}"#));
    let upper = d.join("overlay2").join(RW).join("diff");
    fs::create_dir_all(&upper).expect("mkdir");
    // Only tmpfs (and XFS) take files of 2^63-1 bytes: one is mounted on the upperdir in a private mount
    // namespace, where the report also runs. 2^63-1 + (2^63-1 - 2^20 + 2) + 2^20 is 2^64: 0 in u64.
    let setup = format!(
        "mount -t tmpfs -o size=4m tmpfs '{u}'; head -c 1048576 /dev/zero > '{u}/real'; \
         truncate -s 9223372036854775807 '{u}/a'; truncate -s {b} '{u}/b'",
        u = upper.display(),
        b = i64::MAX as u64 - (1 << 20) + 2,
    );
    let r = report_after_mounting(&setup, &host, &[], false);
    let w = &r["containers"][0]["writable"];
    assert_eq!(w["apparent_bytes"], i64::MAX, "held at i64::MAX, not wrapped: {w}");
    assert_eq!(r["totals"]["writable_apparent_bytes"], i64::MAX);
    assert_eq!(findings(&r, "size_capped").len(), 1, "{}", r["findings"]);
}

/// A host tree at `host` (mount table: its root only) with a Docker data root holding `n` read-write
/// layers, each named by a container's `mount-id` (container ids from `cid_base`, layer ids from `rw_base`)
/// and with an empty `diff`; no container record. Returns the data root and each container's id with its
/// layer's `diff`.
fn docker_root_with_rw_layers(
    host: &Path,
    n: usize,
    cid_base: usize,
    rw_base: usize,
) -> (PathBuf, Vec<(String, PathBuf)>) {
    write(&host.join("proc/1/mountinfo"), "1 0 8:1 / / rw,relatime - ext4 /dev/vda rw\n");
    let d = host.join("var/lib/docker");
    fs::create_dir_all(d.join("image/overlay2/layerdb/sha256")).expect("mkdir");
    fs::create_dir_all(d.join("overlay2/l")).expect("mkdir");
    let ids = (0..n)
        .map(|i| {
            let (cid, rw) = (format!("{:064x}", cid_base + i), format!("{:064x}", rw_base + i));
            write(&d.join("image/overlay2/layerdb/mounts").join(&cid).join("mount-id"), &rw);
            let upper = d.join("overlay2").join(&rw).join("diff");
            fs::create_dir_all(&upper).expect("mkdir");
            (cid, upper)
        })
        .collect();
    (d, ids)
}

#[test]
fn a_file_sink_that_runs_out_of_space_leaves_only_whole_lines() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = tmp.path().join("host");
    // Twenty containers with labels long enough that a 64 KiB file fills within a few scans, mid-event.
    let (d, layers) = docker_root_with_rw_layers(&host, 20, 0x1000, 0x2000);
    for (i, (cid, _)) in layers.iter().enumerate() {
        let label = "v".repeat(300 + i * 13);
        write(
            &d.join("containers").join(cid).join("config.v2.json"),
            &format!(r#"{{"ID":"{cid}","Name":"/c{i}","Config":{{"Labels":{{"l":"{label}"}}}}}}"#),
        );
    }
    let out_dir = tmp.path().join("events");
    fs::create_dir_all(&out_dir).expect("mkdir");
    let config = tmp.path().join("ovlaudit.toml");
    write(&config, "");
    let file = out_dir.join("events.ndjson");
    // In a private mount namespace: a 64 KiB tmpfs for the sink's file, full after a few scans, then grown
    // to 4 MiB while the agent keeps retrying (with back-off: up to 20 s are given for the file to grow);
    // then the agent is stopped and the file printed.
    let script = format!(
        "set -e; mount -t tmpfs -o size=64k tmpfs '{o}'; \
         '{bin}' run --config '{c}' --interval 1s --root '{h}' --sink 'file:{f}' --log-level warn & a=$!; \
         sleep 5; mount -o remount,size=4m '{o}'; \
         for i in $(seq 80); do sleep 0.25; [ $(stat -c %s '{f}') -gt 100000 ] && break; done; \
         kill -TERM $a; wait $a || true; cat '{f}'",
        o = out_dir.display(),
        bin = OVLAUDIT,
        c = config.display(),
        h = host.display(),
        f = file.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        text.len() > 100_000,
        "the file grew past the first 64 KiB once space returned ({} bytes); agent said: {}",
        text.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    for (n, line) in lines.iter().enumerate() {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "line {} does not parse: {:.200}", n + 1, line);
    }
    assert!(text.ends_with('\n'));
}

/// A Docker root of `n` containers under `host/var/lib/docker` and an empty mount table; returns the
/// writable layers' directories (where this process reads them).
fn docker_host(host: &Path, n: usize) -> Vec<PathBuf> {
    let (d, layers) = docker_root_with_rw_layers(host, n, 0x7000, 0x8000);
    layers
        .into_iter()
        .enumerate()
        .map(|(i, (cid, upper))| {
            write(
                &d.join("containers").join(&cid).join("config.v2.json"),
                &format!(r#"{{"ID":"{cid}","Name":"/c{i}"}}"#),
            );
            upper
        })
        .collect()
}

/// A file of `size` bytes at the bottom of `levels` directories named with `name_len` characters under
/// `base`, a path far longer than PATH_MAX: each level is reached through the previous one's descriptor
/// (`/proc/self/fd/N/name`), as a process inside a container would make it with `chdir`.
fn deep_file(base: &Path, levels: usize, name_len: usize, size: usize) {
    let name = "d".repeat(name_len);
    let mut dir = fs::File::open(base).expect("open base");
    for _ in 0..levels {
        let next = PathBuf::from(format!("/proc/self/fd/{}/{name}", std::os::fd::AsRawFd::as_raw_fd(&dir)));
        fs::create_dir(&next).expect("mkdir one level deeper");
        dir = fs::File::open(&next).expect("open it");
    }
    let file = format!("/proc/self/fd/{}/big", std::os::fd::AsRawFd::as_raw_fd(&dir));
    fs::write(file, vec![b'x'; size]).expect("write the deep file");
}

#[test]
fn an_event_over_a_datagrams_limit_is_cut_to_fit_not_retried_forever() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = tmp.path().join("host");
    let upper = &docker_host(&host, 1)[0];
    // What any container process can do in its own /: a file at the bottom of a 300-level path (75 KB),
    // so that its container event with top_files is larger than a UDP datagram can be.
    deep_file(upper, 300, 250, 100_000);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let config = tmp.path().join("ovlaudit.toml");
    write(&config, "top_files = 2\n");
    let mut agent = Command::new(OVLAUDIT)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--interval", "1s", "--log-level", "off", "--sink", &format!("syslog+udp://127.0.0.1:{port}"), "--root"])
        .arg(&host)
        .stdout(Stdio::null())
        .spawn()
        .expect("run agent");
    let mut containers = Vec::new();
    let mut largest = 0;
    let started = Instant::now();
    let mut buf = vec![0u8; 70_000];
    while containers.len() < 2 && started.elapsed() < Duration::from_secs(20) {
        if let Ok(n) = sock.recv(&mut buf) {
            largest = largest.max(n);
            let text = String::from_utf8_lossy(&buf[..n]);
            if let Some(json) = text.find('{').map(|i| &text[i..]) {
                let v: Value = serde_json::from_str(json).expect("each datagram carries one whole event");
                if v["event"]["dataset"] == "ovlaudit.container" {
                    containers.push(v);
                    if containers.len() == 1 {
                        // The service ships a container again only when it changes: change it, so that
                        // the next scan sends another oversized event after the first one.
                        write(&upper.join("grown"), "more");
                    }
                }
            }
        }
    }
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(containers.len(), 2, "container events of two scans arrive (largest datagram {largest} bytes)");
    assert!(largest <= 65_507);
    let truncated = &containers[0]["ovlaudit"]["truncated"];
    assert!(
        truncated.as_array().is_some_and(|a| a.iter().any(|c| c == "ovlaudit.container.writable.top_files")),
        "{truncated}"
    );
    assert!(containers[0]["ovlaudit"]["original_bytes"].as_u64().is_some_and(|b| b > 65_507));
    assert_eq!(containers[0]["ovlaudit"]["container"]["writable"]["apparent_bytes"], 100_000);
}

/// How many of a process's threads are blocked writing to a pipe (their `wchan`).
fn threads_in_pipe_write(pid: u32) -> usize {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter(|t| fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w.contains("pipe_write")))
        .count()
}

#[test]
fn a_stdout_nobody_reads_blocks_one_writer_and_grows_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = tmp.path().join("host");
    docker_host(&host, 300);
    let config = tmp.path().join("ovlaudit.toml");
    write(&config, "[[sink]]\nuri = \"stdout:\"\ntimeout = \"300ms\"\n");
    // stdout is a pipe this test never reads: full after the first scan.
    let mut agent = Command::new(OVLAUDIT)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--interval", "1s", "--log-level", "off", "--root"])
        .arg(&host)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run agent");
    let pid = agent.id();
    let started = Instant::now();
    while threads_in_pipe_write(pid) == 0 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = threads_in_pipe_write(pid);
    // Several timed-out sends and retries later (300 ms each, back-off from 1 s)...
    std::thread::sleep(Duration::from_secs(8));
    let later = threads_in_pipe_write(pid);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(first, 1, "one thread blocks in write(2) once the pipe is full");
    // Each failed send used to leave one more thread blocked in write(2), holding its batch.
    assert_eq!(later, 1, "still one thread blocked in write(2) after the retries");
}

#[test]
fn a_mount_inside_a_users_store_is_not_crossed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    // A user can mount (FUSE) over a directory of their own store; a file system whose reads never return
    // would hang the audit. Here a tmpfs stands in for it, in a private mount namespace.
    let dir = s.join("overlay-containers");
    let setup = format!("mount -t tmpfs -o size=1m tmpfs '{d}'; echo '[]' > '{d}/containers.json'", d = dir.display());
    for no_openat2 in [false, true] {
        let r = report_after_mounting(&setup, &host, &[], no_openat2);
        assert!(has_finding_at(&r, "metadata_refused", &dir.join("containers.json")), "{}", r["findings"]);
    }
}

#[test]
fn text_from_a_users_store_is_bounded_in_the_report() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    let long = "n".repeat(100_000);
    write(
        &s.join("overlay-containers/containers.json"),
        &format!(r#"[{{"id":"{CTR}","names":["{long}"],"image":"{IMG}","layer":"{RW}"}}]"#),
    );
    chown_tree(&host.join("home/mallory"), USER);
    let (r, raw) = report(&host, &[]);
    let name = r["containers"][0]["name"].as_str().expect("name");
    assert_eq!(name, format!("{}…", "n".repeat(256)));
    assert!(raw.len() < 50_000, "the report carries the 100 KB name ({} bytes)", raw.len());
}

/// Runs the shell commands `setup` (mounts, files on them) in a private mount namespace, then
/// `ovlaudit report --format json --root host ARGS` in it; the report must succeed. With `no_openat2`, all
/// of it runs under a seccomp filter that fails `openat2` with ENOSYS (see [`report_with`]).
fn report_after_mounting(setup: &str, host: &Path, args: &[&str], no_openat2: bool) -> Value {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "set -e; {setup}; exec '{bin}' report --format json --root '{h}' {a}",
        bin = OVLAUDIT,
        h = host.display(),
        a = args.join(" ")
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    if no_openat2 {
        // SAFETY: the hook only calls prctl, which is async-signal-safe.
        unsafe { cmd.pre_exec(|| crate::common::fail_syscall(libc::SYS_openat2, libc::ENOSYS)) };
    }
    let out = cmd.output().expect("run unshare");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// `ovlaudit run`'s own log of a data root with 20 read-write layers whose container records are gone (one
/// `container_record_missing` warning each): the first 3 are logged one per line and the other 17 as one
/// line with their number; the next scan, with the same findings, logs none of them again.
#[test]
fn run_logs_repeated_warnings_as_a_few_lines_and_a_count_once() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = tmp.path().join("host");
    docker_root_with_rw_layers(&host, 20, 0x9000, 0xa000);
    let config = crate::agent::empty_config(tmp.path());
    let root = host.to_str().expect("utf-8");
    let agent = crate::agent::Agent::start(&["--config", &config, "--root", root, "--interval", "1s"], &[]);
    agent.wait_until(Duration::from_secs(30), "three scans", |scans| scans.len() >= 3);
    let log = agent.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("container_record_missing")).collect();
    assert_eq!(lines.len(), 4, "3 warnings and one count, once for all scans:\n{log}");
    assert!(lines[..3].iter().all(|l| l.contains(" WARN ") && l.contains("has no container record")), "{log}");
    assert!(lines[3].contains("container_record_missing: 17 more new warning(s) of this code in this scan"), "{log}");
    // The events carry them as the report does: 10 as they are and one summary of the other 10.
    let findings = agent.state().objects("ovlaudit.finding");
    let mine: Vec<&Value> = findings.iter().filter(|f| f["code"] == "container_record_missing").collect();
    assert_eq!(mine.len(), 11, "{mine:?}");
    assert_eq!(mine.iter().filter_map(|f| f["count"].as_u64()).sum::<u64>(), 10, "{mine:?}");
}

/// A container owns its writable layer: a `var` there that is a symlink to a directory outside it (here one
/// laid out as a Docker data root) is not taken for an engine nested in the container, while the same tree
/// as real directories in another container's layer is (with `nested_in` naming that container).
#[test]
fn a_symlink_in_a_writable_layer_never_makes_a_nested_engine() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = tmp.path().join("host");
    let uppers = docker_host(&host, 2);
    let data_root = |at: &Path| {
        fs::create_dir_all(at.join("overlay2/l")).expect("mkdir");
        fs::create_dir_all(at.join("image/overlay2/layerdb/sha256")).expect("mkdir");
    };
    let outside = tmp.path().join("outside");
    data_root(&outside.join("lib/docker"));
    symlink(&outside, uppers[0].join("var")).expect("symlink");
    data_root(&uppers[1].join("var/lib/docker"));
    let (r, raw) = report(&host, &["--docker-root", "/var/lib/docker"]);
    let nested: Vec<&Value> =
        r["sources"]["engines"].as_array().expect("engines").iter().filter(|e| !e["nested_in"].is_null()).collect();
    assert_eq!(nested.len(), 1, "{raw}");
    let real = uppers[1].strip_prefix(&host).expect("under the host").join("var/lib/docker");
    assert_eq!(nested[0]["root"], Path::new("/").join(real).to_str().expect("utf-8"), "{raw}");
    assert_eq!(nested[0]["nested_in"]["container_name"], "c1");
    assert_eq!(nested[0]["nested_in"]["mount_type"], "writable_layer");
}

/// Without `openat2` (here a seccomp filter failing it with ENOSYS, as a kernel before 5.6 would), the
/// component walk that takes its place refuses what `openat2` refuses and reads everything else.
#[test]
fn without_openat2_the_component_walk_refuses_links_and_reads_the_rest() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    link_lower_file_to_a_secret(tmp.path(), &s);
    // A link in a component on the way: overlay-images is a link to a directory elsewhere.
    let elsewhere = tmp.path().join("elsewhere");
    write(&elsewhere.join("images.json"), &format!(r#"[{{"id":"{EVIL}","names":["evil:1"],"layer":"{BASE}"}}]"#));
    fs::rename(s.join("overlay-images"), s.join("overlay-images.real")).expect("rename");
    symlink(&elsewhere, s.join("overlay-images")).expect("symlink");

    let (r, raw, _) = report_with(&host, &[], true);
    let host_lower = Path::new("/home/mallory/.local/share/containers/storage/overlay").join(RW).join("lower");
    assert!(has_finding_at(&r, "metadata_refused", &host_lower), "the linked lower file:\n{raw}");
    assert!(has_finding_at(&r, "metadata_refused", &s.join("overlay-images/images.json")), "{raw}");
    assert!(!raw.contains("OPENSSH") && !raw.contains("b3BlbnNz") && !raw.contains("evil:1"), "{raw}");
    // The regular files were read: the container, its writable layer walked.
    let ids: Vec<&str> =
        r["containers"].as_array().expect("containers").iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, vec![CTR], "{raw}");
    assert_eq!(r["containers"][0]["writable"]["apparent_bytes"], 6, "hello\\n: {raw}");
    // The same findings as with openat2.
    let (with, _) = report(&host, &[]);
    let codes = |r: &Value| {
        let mut c: Vec<String> = r["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| format!("{} {}", f["code"], f["path"]))
            .collect();
        c.sort();
        c
    };
    assert_eq!(codes(&r), codes(&with));
}

/// An orphan candidate of a user's store is sized through the store's descriptor: a file system the user
/// mounted on it (a FUSE server could answer anything, or never) is not walked, with openat2 or without.
#[test]
fn an_orphan_with_a_mount_on_it_in_a_users_store_is_not_sized_through_the_mount() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    let orphan = s.join("overlay").join(EVIL);
    fs::create_dir_all(orphan.join("diff")).expect("mkdir");
    chown_tree(&host.join("home/mallory"), USER);
    let setup = format!(
        "mount -t tmpfs -o size=4m tmpfs '{o}'; head -c 2097152 /dev/zero > '{o}/mounted-file'",
        o = orphan.display()
    );
    let host_orphan = Path::new("/home/mallory/.local/share/containers/storage/overlay").join(EVIL);
    for no_openat2 in [false, true] {
        let r = report_after_mounting(&setup, &host, &["--orphan-min-age", "0"], no_openat2);
        let sized: Vec<&Value> = r["orphans"]
            .as_array()
            .expect("orphans")
            .iter()
            .filter(|o| o["path"].as_str() == host_orphan.to_str())
            .collect();
        assert!(sized.is_empty(), "sized through the mount (openat2 {}): {sized:?}", !no_openat2);
        assert!(has_finding_at(&r, "metadata_refused", &host_orphan), "{}", r["findings"]);
    }
    // Unmounted, the same directory is an orphan like any other.
    let (r, raw) = report(&host, &["--orphan-min-age", "0"]);
    assert!(
        r["orphans"].as_array().expect("orphans").iter().any(|o| o["path"].as_str() == host_orphan.to_str()),
        "{raw}"
    );
}

/// A writable layer with one directory of 40,000 subdirectories with 200-byte names (8 MB of names) is
/// walked in a bounded amount of memory: the report's peak RSS is within a few MiB of the same report
/// without that directory (it held every name twice over before, some 17 MB more), and every entry is
/// counted once.
#[test]
fn a_directory_of_many_long_named_subdirectories_is_walked_in_bounded_memory() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (host, s) = host_with_rootless_store(tmp.path());
    let (_, _, small_kib) = report_with(&host, &[], false);
    let wide = s.join("overlay").join(RW).join("diff/wide");
    let n = 40_000;
    for i in 0..n {
        let d = wide.join(format!("{i:06}{}", "w".repeat(194)));
        fs::create_dir_all(&d).expect("mkdir");
        if i % 10 == 0 {
            fs::write(d.join("f"), b"abc").expect("write");
        }
    }
    let (r, raw, wide_kib) = report_with(&host, &[], false);
    let w = &r["containers"][0]["writable"];
    assert_eq!(w["dirs"], n + 1, "{w}");
    assert_eq!(w["files"], 1 + n / 10, "{w}");
    assert_eq!(w["apparent_bytes"], 6 + 3 * (n / 10), "{w}");
    assert_eq!(w["errors"], 0, "{raw}");
    let grown = wide_kib.saturating_sub(small_kib);
    assert!(grown < 6 * 1024, "peak RSS grew by {grown} KiB ({small_kib} -> {wide_kib} KiB)");
}

/// A Docker short link is checked where it leads without following any link: `l/X -> ../<id>/diff` where
/// `overlay2/<id>` is itself a link to a directory outside the store is dangling (a layer directory that is
/// a link is not Docker's), and the directory outside is never reached through it; a short link to a real
/// layer directory, the same layer's, is not.
#[test]
fn a_short_link_through_a_linked_layer_directory_is_dangling_and_not_followed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let host = tmp.path().join("host");
    docker_host(&host, 1);
    let o2 = host.join("var/lib/docker/overlay2");
    let outside = tmp.path().join("outside");
    write(&outside.join("diff/secret"), "x");
    let linked = "e".repeat(64);
    symlink(&outside, o2.join(&linked)).expect("symlink the layer directory");
    let short = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    symlink(format!("../{linked}/diff"), o2.join("l").join(short)).expect("short link");
    let (r, raw) = report(&host, &["--orphan-min-age", "0"]);
    let dangling: Vec<&str> = r["orphans"]
        .as_array()
        .expect("orphans")
        .iter()
        .filter(|o| o["kind"] == "short_link_dangling")
        .filter_map(|o| o["path"].as_str())
        .collect();
    assert_eq!(dangling, vec![format!("/var/lib/docker/overlay2/l/{short}")], "{raw}");
    assert!(!raw.contains("outside"), "the linked directory was reported: {raw}");
}

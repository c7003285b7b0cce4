//! `ovlaudit run`'s incremental accounting against a fresh full walk, on real containers of a private
//! dockerd: random sequences of writes inside a running container (`docker exec`) and on a stopped one's
//! upperdir from the host, each step followed by a scan of the agent and a comparison of every figure with
//! `ovlaudit report` (a full walk) and of `apparent_bytes` with the engine's `SizeRw`. A failure prints
//! the seed; `OVLAUDIT_SEED=N` replays one. Also: a write through a memory map, which raises no event, is
//! found and corrected by the reconciliation walk, and reported as drift.

use crate::agent::Agent;
use crate::common::ovlaudit;
use crate::harness::{start_engine, Engine};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64*), so that a seed replays the same operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const LOWER_DIRS: u64 = 6;
const TOP: usize = 5;

/// An image whose lower layer has directories and files to copy up, delete and make opaque.
fn lower_image(engine: &Engine) {
    engine.import_busybox("bb:1");
    let mut run = String::from("RUN mkdir -p /data");
    for d in 0..LOWER_DIRS {
        run.push_str(&format!(
            " && mkdir -p /data/d{d}/sub && for f in 0 1 2; do head -c $(( {d} * 1000 + f * 77 + 1 )) /dev/zero > /data/d{d}/f$f; done && echo low > /data/d{d}/sub/s"
        ));
    }
    engine.build("lower:1", &format!("FROM bb:1\n{run}\n"));
}

/// One random operation, as a shell script for busybox `sh` run at `base` (`/` in the container, the
/// upperdir on the host). Lower-layer operations only make sense through the overlay.
fn random_op(rng: &mut Rng, through_overlay: bool) -> String {
    let d = |rng: &mut Rng| format!("w/d{}", rng.below(3));
    let f = |rng: &mut Rng| format!("{}/f{}", d(rng), rng.below(3));
    let size = |rng: &mut Rng| [0, 1, 100, 4095, 4097, 65536, 200_000][rng.below(7) as usize];
    let kinds = if through_overlay { 19 } else { 14 };
    match rng.below(kinds) {
        0 | 1 => {
            let (p, n) = (f(rng), size(rng));
            format!("mkdir -p $(dirname {p}) && head -c {n} /dev/urandom > {p}")
        }
        2 => {
            let (p, n) = (f(rng), size(rng));
            format!("mkdir -p $(dirname {p}) && head -c {n} /dev/zero >> {p}")
        }
        3 => format!("[ -f {0} ] && truncate -s {1} {0}", f(rng), size(rng)),
        4 => {
            let (a, b) = (f(rng), f(rng));
            format!("[ -f {a} ] && mkdir -p $(dirname {b}) && mv -f {a} {b}")
        }
        5 => {
            let (a, b) = (f(rng), f(rng));
            format!("[ -f {a} ] && [ ! -e {b} ] && mkdir -p $(dirname {b}) && ln {a} {b}")
        }
        6 => {
            let depth = 1 + rng.below(8);
            let path: Vec<String> = (0..depth).map(|i| format!("t{i}")).collect();
            let p = format!("{}/{}", d(rng), path.join("/"));
            format!("mkdir -p {p} && head -c {} /dev/urandom > {p}/leaf && ln -sf leaf {p}/link", size(rng))
        }
        7 => format!("rm -rf {}", d(rng)),
        8 => format!("mkdir -p w && truncate -s {} w/sparse{}", 1 + rng.below(20_000_000), rng.below(3)),
        9 => {
            let (a, b) = (d(rng), d(rng));
            format!("[ -d {a} ] && [ ! -e {b} ] && mv {a} {b}")
        }
        10 => format!("rm -f {}", f(rng)),
        11 => format!("[ -f {0} ] && chmod 600 {0}", f(rng)),
        12 => {
            // Unlinked while open: a reader keeps it until it exits.
            let p = f(rng);
            format!("[ -f {p} ] && {{ sleep 5 < {p} & }} && rm -f {p}")
        }
        13 => {
            // Data in the middle of a sparse file.
            let p = f(rng);
            format!(
                "mkdir -p $(dirname {p}) && dd if=/dev/urandom of={p} bs=4096 count=1 seek={} conv=notrunc",
                rng.below(3000)
            )
        }
        // Through the overlay only: lower files and directories.
        14 => format!("chmod 640 data/d{}/f{}", rng.below(LOWER_DIRS), rng.below(3)),
        15 => format!("chown 1:1 data/d{}/sub", rng.below(LOWER_DIRS)),
        16 => format!("touch data/d{}/sub", rng.below(LOWER_DIRS)),
        17 => format!("rm -rf data/d{}/f{} data/d{}/sub", rng.below(LOWER_DIRS), rng.below(3), rng.below(LOWER_DIRS)),
        _ => {
            // An opaque directory: a lower directory removed and made again.
            let n = rng.below(LOWER_DIRS);
            format!("rm -rf data/d{n} && mkdir data/d{n} && echo new > data/d{n}/n")
        }
    }
}

/// The figures compared: everything the walk counts, and the largest files (a file with several names may
/// be listed under any of them, so its path is compared as its inode).
fn figures(writable: &Value, upperdir: &Path) -> Value {
    let mut v = serde_json::Map::new();
    for k in [
        "apparent_bytes",
        "allocated_bytes",
        "files",
        "dirs",
        "symlinks",
        "whiteouts",
        "opaque_dirs",
        "metacopy_files",
        "other",
        "errors",
        "mount_points",
    ] {
        v.insert(k.into(), writable[k].clone());
    }
    let top: Vec<Value> = writable["top_files"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    let path = t["path"].as_str().unwrap_or_default();
                    let md = std::fs::symlink_metadata(upperdir.join(path.trim_start_matches('/')));
                    let name = match md {
                        Ok(m) if m.nlink() > 1 => format!("inode {}", m.ino()),
                        _ => path.to_owned(),
                    };
                    serde_json::json!([name, t["apparent_bytes"], t["allocated_bytes"]])
                })
                .collect()
        })
        .unwrap_or_default();
    // Equal sizes are listed by path, and a renamed path sorts elsewhere.
    let mut top = top;
    top.sort_by(|a, b| b[1].as_u64().cmp(&a[1].as_u64()).then_with(|| a[0].as_str().cmp(&b[0].as_str())));
    v.insert("top_files".into(), Value::Array(top));
    Value::Object(v)
}

/// The container's object as the stream stood after scan `upto`: the service ships a container only when
/// it appears or changes (and in snapshots), so its last event up to that scan holds its figures.
fn container_event(scans: &[crate::agent::Scan], upto: &crate::agent::Scan, id: &str) -> Value {
    let last = upto.summary()["number"].as_u64().expect("scan number");
    scans
        .iter()
        .filter(|s| s.summary()["number"].as_u64().is_some_and(|n| n <= last))
        .flat_map(|s| s.events.iter())
        .rfind(|e| e["event"]["dataset"] == "ovlaudit.container" && e["container"]["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no event for {id}"))
}

/// Waits for a scan that started after now: the second to complete from here.
fn scan_after(agent: &Agent) -> crate::agent::Scan {
    scans_after(agent).pop().expect("two scans")
}

/// The next two scans to complete from now; the second started after now.
fn scans_after(agent: &Agent) -> Vec<crate::agent::Scan> {
    let n = agent.scans().len();
    let scans = agent.wait_until(Duration::from_secs(30), "two more scans", |s| s.len() >= n + 2);
    scans[n..n + 2].to_vec()
}

/// A counter of the incremental accounting summed over `scans` (`rebuilds.<reason>` for a rebuild reason).
fn counted(scans: &[crate::agent::Scan], counter: &str) -> u64 {
    let at = format!("/{}", counter.replace('.', "/"));
    scans.iter().map(|s| s.summary()["incremental"].pointer(&at).and_then(Value::as_u64).unwrap_or(0)).sum()
}

fn report(engine: &Engine) -> Value {
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let top = TOP.to_string();
    let out = ovlaudit(&["report", "--format", "json", "--docker-root", &root, "--top", &top]);
    assert!(out.status.success(), "report failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn size_rw(engine: &Engine, id: &str) -> u64 {
    let list = engine.api_get("/containers/json?all=1&size=1");
    let c = list.as_array().expect("list").iter().find(|c| c["Id"] == id).expect("container listed");
    c["SizeRw"].as_u64().unwrap_or(0)
}

fn agent_for(engine: &Engine, dir: &Path, extra: &str) -> Agent {
    let config = dir.join("agent.toml");
    std::fs::write(&config, format!("top_files = {TOP}\n{extra}")).expect("config");
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    Agent::start(&["--config", config.to_str().expect("utf-8"), "--docker-root", &root, "--interval", "1s"], &[])
}

/// Many seeds of random writes; after each, the agent's figures of both containers equal a fresh walk's
/// and the engine's `SizeRw`, and came from the incremental state (no layer walked in full but for a
/// new hard link, which the state cannot place without one).
#[test]
fn incremental_figures_equal_a_full_walk_after_random_writes() {
    let Some(engine) = start_engine() else { return };
    lower_image(&engine);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent_for(&engine, dir.path(), "");
    let seeds: Vec<u64> = match std::env::var("OVLAUDIT_SEED") {
        Ok(s) => vec![s.parse().expect("OVLAUDIT_SEED is a number")],
        Err(_) => {
            let t =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
            // Four seeds per run (each run draws new ones); OVLAUDIT_SEEDS=N runs N.
            let n = std::env::var("OVLAUDIT_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4u64);
            (0..n).map(|i| (t ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1).collect()
        }
    };
    let steps = 20;
    let validator = crate::events::event_validator();
    let started = Instant::now();
    for seed in seeds {
        eprintln!("seed {seed} (replay with OVLAUDIT_SEED={seed})");
        let mut rng = Rng(seed);
        let running = engine.docker(&["run", "-d", "lower:1", "sleep", "3600"]);
        let stopped = engine.docker(&["create", "lower:1", "true"]);
        let upper = |id: &str| -> std::path::PathBuf {
            let c = engine.api_get(&format!("/containers/{id}/json"));
            c["GraphDriver"]["Data"]["UpperDir"].as_str().expect("UpperDir").into()
        };
        let (up_running, up_stopped) = (upper(&running), upper(&stopped));
        let (mut relisted, mut hard_link_rebuilds) = (0, 0);
        // The new layers' states are built by the first scan that sees them.
        scan_after(&agent);
        for step in 0..steps {
            let on_running = rng.below(2) == 0;
            let op = random_op(&mut rng, on_running);
            let out = if on_running {
                std::process::Command::new(crate::harness::DOCKER_CLIENT)
                    .env("DOCKER_HOST", format!("unix://{}", engine.socket().display()))
                    .args(["exec", "-w", "/", &running, "sh", "-c", &op])
                    .output()
                    .expect("docker exec")
            } else {
                std::process::Command::new("sh").current_dir(&up_stopped).args(["-c", &op]).output().expect("sh")
            };
            let both = scans_after(&agent);
            let listed = counted(&both, "dirs_relisted");
            relisted += listed;
            hard_link_rebuilds += counted(&both, "rebuilds.new hard link");
            let scan = both[1].clone();
            if std::env::var_os("OVLAUDIT_SEED").is_some() {
                let where_ = if on_running { "running" } else { "stopped" };
                eprintln!("step {step} ({where_}): {op} -> {}, {listed} listed again", out.status);
            }
            let want = report(&engine);
            for (id, up) in [(&running, &up_running), (&stopped, &up_stopped)] {
                let got = &container_event(&agent.scans(), &scan, id)["ovlaudit"]["container"]["writable"];
                let full = &crate::common::container(&want, id)["writable"];
                assert_eq!(
                    figures(got, up),
                    figures(full, up),
                    "seed {seed} step {step} ({op:?} in the {} container): the agent's figures of {id} differ \
                     from a full walk",
                    if on_running { "running" } else { "stopped" }
                );
                assert_eq!(
                    got["apparent_bytes"].as_u64(),
                    Some(size_rw(&engine, id)),
                    "seed {seed} step {step} ({op:?}): apparent_bytes of {id} is not the engine's SizeRw"
                );
            }
            crate::events::assert_events_valid(&validator, &both[1].events);
            for x in &both {
                let inc = &x.summary()["incremental"];
                assert_eq!(inc["enabled"], true, "seed {seed}: {inc}");
                let walked: u64 = inc["rebuilds"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
                let other = walked - inc["rebuilds"]["new hard link"].as_u64().unwrap_or(0);
                assert_eq!(other, 0, "seed {seed} step {step}: a state was rebuilt for another reason: {inc}");
                assert!(inc["unwatched_layers"].as_object().is_some_and(|m| m.is_empty()), "{inc}");
                assert_eq!(
                    inc["layers_incremental"].as_u64().unwrap_or(0) + walked,
                    2,
                    "seed {seed} step {step}: both layers follow their state: {inc}"
                );
            }
        }
        eprintln!("seed {seed}: {steps} steps, {relisted} directories listed again, {hard_link_rebuilds} rebuilds for new hard links");
        engine.docker(&["rm", "-f", &running, &stopped]);
    }
    eprintln!("differential test: {:?}", started.elapsed());
}

/// A write through a memory map allocates blocks in a sparse file's hole without any event: the state
/// misses it until the reconciliation walk, which corrects it and reports the drift.
#[test]
fn a_write_through_a_memory_map_is_found_by_the_reconciliation_walk() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let id = engine.docker(&["create", "bb:1", "true"]);
    let c = engine.api_get(&format!("/containers/{id}/json"));
    let upper = std::path::PathBuf::from(c["GraphDriver"]["Data"]["UpperDir"].as_str().expect("UpperDir"));
    let file = upper.join("sparse");
    std::fs::File::create(&file).and_then(|f| f.set_len(1 << 20)).expect("sparse file");
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent_for(&engine, dir.path(), "reconcile_interval = \"6s\"\n");
    let before = scan_after(&agent);
    let allocated = |s: &crate::agent::Scan| {
        container_event(&agent.scans(), s, &id)["ovlaudit"]["container"]["writable"]["allocated_bytes"].as_u64()
    };
    let a0 = allocated(&before).expect("allocated");

    {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&file).expect("open");
        let len = 1usize << 20;
        // SAFETY: a fresh shared mapping of a file we own, of its length; unmapped before `f` closes.
        unsafe {
            let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_WRITE, libc::MAP_SHARED, f.as_raw_fd(), 0);
            assert_ne!(p, libc::MAP_FAILED, "mmap");
            std::ptr::write_bytes(p.cast::<u8>(), 0xab, 256 * 1024);
            assert_eq!(libc::msync(p, len, libc::MS_SYNC), 0, "msync");
            libc::munmap(p, len);
        }
    }
    let full = |e: &Engine| crate::common::container(&report(e), &id)["writable"]["allocated_bytes"].as_u64();
    let want = full(&engine).expect("allocated");
    assert!(want >= a0 + 256 * 1024, "the mapped write allocated blocks: {a0} -> {want}");
    let stale = scan_after(&agent);
    if !stale.summary()["incremental"]["reconciled"].as_bool().unwrap_or(false) {
        assert_eq!(allocated(&stale), Some(a0), "no event, so no change before the reconciliation");
    }
    let scans = agent.wait_until(Duration::from_secs(30), "a reconciliation", |s| {
        s.iter().any(|x| {
            x.summary()["incremental"]["reconciled"] == true && x.summary()["incremental"]["drift_layers"] == 1
        })
    });
    let rec = scans
        .iter()
        .find(|x| x.summary()["incremental"]["reconciled"] == true && x.summary()["incremental"]["drift_layers"] == 1)
        .expect("found");
    assert_eq!(allocated(rec), Some(want), "the reconciliation corrected the figure");
    assert_eq!(rec.summary()["incremental"]["drift_bytes"].as_u64(), Some(want - a0));
    assert!(agent.log().contains("had drifted by"), "{}", agent.log());
    engine.docker(&["rm", "-f", &id]);
}

/// Installs, in the calling process, a seccomp filter that fails `fanotify_init` with EPERM (as the unit's
/// `SystemCallFilter=~@privileged` would without the line that allows it).
fn deny_fanotify_init() -> std::io::Result<()> {
    crate::common::fail_syscall(libc::SYS_fanotify_init, libc::EPERM)
}

/// Without fanotify (here a seccomp filter) the agent says why once and walks every layer, as before.
#[test]
fn without_fanotify_every_scan_walks_and_says_why_once() {
    use std::os::unix::process::CommandExt;
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let id = engine.docker(&["run", "-d", "bb:1", "sh", "-c", "head -c 12345 /dev/zero > /f && sleep 3600"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "").expect("config");
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let args = ["--config", config.to_str().expect("utf-8"), "--docker-root", &root, "--interval", "1s"];
    let agent = Agent::start_prepared(crate::common::OVLAUDIT, &args, &[], |cmd| {
        // SAFETY: the hook only calls prctl, which is async-signal-safe.
        unsafe { cmd.pre_exec(deny_fanotify_init) };
    });
    let scans = agent.wait_until(Duration::from_secs(30), "four scans", |s| s.len() >= 4);
    for scan in &scans {
        let inc = &scan.summary()["incremental"];
        assert_eq!(inc["enabled"], false, "{inc}");
        assert!(inc["unavailable"].as_str().is_some_and(|w| w.contains("fanotify_init")), "{inc}");
        assert_eq!(inc["layers_walked"], 1, "the container's layer is walked: {inc}");
        assert_eq!(inc["layers_incremental"], 0, "{inc}");
    }
    let last = scans.last().expect("scans");
    let got = &container_event(&scans, last, &id)["ovlaudit"]["container"]["writable"];
    assert_eq!(got["apparent_bytes"].as_u64(), Some(size_rw(&engine, &id)));
    let log = agent.log();
    assert_eq!(log.matches("incremental accounting unavailable").count(), 1, "said once:\n{log}");
    assert!(log.contains("Operation not permitted"), "{log}");
    engine.docker(&["rm", "-f", &id]);
}

/// Events lost to a full queue (the agent stopped while 20,000 files are made; the queue holds 16,384) are noticed: every layer
/// is walked again, the overflow is counted, and the figures are exact again.
#[test]
fn a_queue_overflow_walks_every_layer_again() {
    let Some(engine) = start_engine() else { return };
    engine.import_busybox("bb:1");
    let id = engine.docker(&["create", "bb:1", "true"]);
    let c = engine.api_get(&format!("/containers/{id}/json"));
    let upper = std::path::PathBuf::from(c["GraphDriver"]["Data"]["UpperDir"].as_str().expect("UpperDir"));
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent_for(&engine, dir.path(), "");
    scan_after(&agent);
    agent.signal(libc::SIGSTOP);
    // In a marked directory (the upperdir itself), so that each file is an event.
    for i in 0..20_000 {
        std::fs::write(upper.join(format!("f{i}")), b"x").expect("write");
    }
    agent.signal(libc::SIGCONT);
    let scan = scan_after(&agent);
    let inc = &agent
        .scans()
        .iter()
        .map(|s| s.summary()["incremental"].clone())
        .find(|i| i["overflows"] == 1)
        .unwrap_or_else(|| panic!("no overflow counted; last: {}", scan.summary()["incremental"]));
    assert_eq!(inc["rebuilds"]["queue overflow"], 1, "{inc}");
    let want = report(&engine);
    let got = &container_event(&agent.scans(), &scan, &id)["ovlaudit"]["container"]["writable"];
    assert_eq!(figures(got, &upper), figures(&crate::common::container(&want, &id)["writable"], &upper));
    assert_eq!(got["files"], 20_000);
    assert_eq!(agent.log().matches("queue overflowed").count(), 1, "{}", agent.log());
    engine.docker(&["rm", "-f", &id]);
}

/// The upperdir of container `id`, as the engine names it.
fn upperdir_of(engine: &Engine, id: &str) -> std::path::PathBuf {
    let c = engine.api_get(&format!("/containers/{id}/json"));
    c["GraphDriver"]["Data"]["UpperDir"].as_str().expect("UpperDir").into()
}

/// How many inode marks the fanotify group of process `pid` holds: its descriptor's fdinfo has one
/// `fanotify ino:` line per mark.
fn fanotify_marks(pid: u32) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the agent's descriptors");
    let group = fds
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:[fanotify]"))
        .expect("the agent has a fanotify group");
    let info =
        std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", group.file_name().to_string_lossy())).expect("fdinfo");
    info.lines().filter(|l| l.starts_with("fanotify ino:")).count()
}

/// `ovlaudit run` (through the suite's hermetic wrapper) as root of a new user namespace whose fanotify
/// mark limit (`/proc/sys/user/max_fanotify_marks`, counted per user namespace and applied on top of the
/// host's) is `max_marks`: the host's own limit stays untouched.
fn agent_under_mark_limit(engine: &Engine, dir: &Path, max_marks: u32) -> Agent {
    let config = dir.join("agent.toml");
    std::fs::write(&config, format!("top_files = {TOP}\n")).expect("config");
    let inner = crate::common::hermetic(crate::common::OVLAUDIT);
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let limit = max_marks.to_string();
    let mut args: Vec<String> = ["--user", "--map-root-user", "--", "/bin/sh", "-c"].map(String::from).to_vec();
    args.push("echo \"$0\" > /proc/sys/user/max_fanotify_marks && exec \"$@\"".into());
    args.push(limit);
    args.push(inner.get_program().to_string_lossy().into_owned());
    args.extend(inner.get_args().map(|a| a.to_string_lossy().into_owned()));
    let config = config.to_str().expect("utf-8");
    args.extend(["run", "--config", config, "--docker-root", &root, "--interval", "1s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::start_program("/usr/bin/unshare", &args, &[])
}

/// A layer needing more marks than the limit allows is walked in full at every scan, named in the scan
/// event with the kernel's reason, logged once, and its figures stay exact; the marks it took before the
/// limit was reached are given back, so a smaller layer is still followed by its state.
#[test]
fn layers_beyond_the_mark_limit_are_walked_in_full_and_named() {
    let Some(engine) = start_engine() else { return };
    // Kernel 5.13 and later count fanotify marks per user namespace.
    if !Path::new("/proc/sys/user/max_fanotify_marks").exists() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "no per-namespace fanotify mark limit (kernel < 5.13)");
        eprintln!("SKIP: no /proc/sys/user/max_fanotify_marks (kernel < 5.13)");
        return;
    }
    engine.import_busybox("bb:1");
    let (small, big) = (engine.docker(&["create", "bb:1", "true"]), engine.docker(&["create", "bb:1", "true"]));
    let (up_small, up_big) = (upperdir_of(&engine, &small), upperdir_of(&engine, &big));
    // The small layer needs 3 marks (its upperdir, a, a/b), the big one 61: the limit is 30.
    std::fs::create_dir_all(up_small.join("a/b")).expect("mkdir");
    std::fs::write(up_small.join("a/b/f"), b"small").expect("write");
    for i in 0..60 {
        std::fs::create_dir(up_big.join(format!("d{i}"))).expect("mkdir");
        std::fs::write(up_big.join(format!("d{i}/f")), vec![1u8; 100 + i]).expect("write");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent_under_mark_limit(&engine, dir.path(), 30);
    scan_after(&agent);
    // Writes to both; each scan from now on walks the big layer and follows the small one.
    std::fs::write(up_big.join("d7/new"), vec![2u8; 77_777]).expect("write");
    std::fs::create_dir(up_big.join("d7/sub")).expect("mkdir");
    std::fs::write(up_small.join("a/b/f"), vec![3u8; 12_345]).expect("write");
    std::fs::create_dir(up_small.join("c")).expect("mkdir");
    let both = scans_after(&agent);
    let want = report(&engine);
    for (id, up) in [(&small, &up_small), (&big, &up_big)] {
        let got = &container_event(&agent.scans(), &both[1], id)["ovlaudit"]["container"]["writable"];
        assert_eq!(figures(got, up), figures(&crate::common::container(&want, id)["writable"], up), "{id}");
        assert_eq!(got["apparent_bytes"].as_u64(), Some(size_rw(&engine, id)), "SizeRw of {id}");
    }
    let big_name = up_big.to_str().expect("utf-8");
    for scan in &both {
        let inc = &scan.summary()["incremental"];
        assert_eq!(inc["enabled"], true, "{inc}");
        assert_eq!(inc["unwatched"], 1, "{inc}");
        let why = inc["unwatched_layers"][big_name].as_str().unwrap_or_else(|| panic!("big layer named: {inc}"));
        assert!(why.contains("No space left on device"), "the kernel's reason: {why}");
        assert_eq!(inc["layers_walked"], 1, "the big layer is walked at every scan: {inc}");
        assert_eq!(inc["layers_incremental"], 1, "the small layer follows its state: {inc}");
    }
    // The small layer's four directories are all the group marks: the big layer's were removed.
    let watched = both[1].summary()["incremental"]["dirs_watched"].as_u64();
    assert_eq!(watched, Some(4), "{}", both[1].summary()["incremental"]);
    assert_eq!(fanotify_marks(agent.pid()), 4, "marks held by the agent's group");
    let log = agent.log();
    assert_eq!(log.matches("cannot be followed").count(), 1, "said once:\n{log}");
    assert!(log.contains(&format!("writable layer {big_name} cannot be followed")), "{log}");
}

/// A writable layer whose directory is a file system of its own (a tmpfs mounted over the layer's
/// directory before the container starts; its lower layers stay on the data root's file system) is
/// followed like any other: random writes in the running container keep every figure equal to a full walk
/// and `apparent_bytes` to the engine's `SizeRw`, with no layer walked in full.
#[test]
fn an_upperdir_on_another_file_system_is_followed_exactly() {
    let Some(engine) = start_engine() else { return };
    lower_image(&engine);
    let id = engine.docker(&["create", "lower:1", "sleep", "3600"]);
    let upper = upperdir_of(&engine, &id);
    let layer = upper.parent().expect("layer dir").to_path_buf();
    // The layer's files move onto the tmpfs; the engine's cleanup detaches every mount under its directory.
    let saved = engine.dir().join("saved-layer");
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").args(["-c", script]).output().expect("sh");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (l, s) = (layer.display(), saved.display());
    sh(&format!("cp -a '{l}' '{s}' && mount -t tmpfs -o size=256m ovlaudit-test-upper '{l}' && cp -a '{s}/.' '{l}/'"));
    engine.docker(&["start", &id]);
    let dev = |p: &Path| std::fs::metadata(p).expect("stat").dev();
    assert_ne!(dev(&upper), dev(engine.data_root()), "the upperdir is on another file system");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let overlay = mountinfo
        .lines()
        .find(|m| m.contains(" - overlay ") && m.contains(upper.to_str().expect("utf-8")))
        .unwrap_or_else(|| panic!("the container's overlay mount uses {}", upper.display()));
    assert!(overlay.contains("lowerdir="), "{overlay}");

    let dir = tempfile::tempdir().expect("tempdir");
    let agent = agent_for(&engine, dir.path(), "");
    scan_after(&agent);
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    let seed = std::env::var("OVLAUDIT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(seed);
    eprintln!("seed {seed} (replay with OVLAUDIT_SEED={seed})");
    let mut rng = Rng(seed);
    for step in 0..8 {
        let op = random_op(&mut rng, true);
        std::process::Command::new(crate::harness::DOCKER_CLIENT)
            .env("DOCKER_HOST", format!("unix://{}", engine.socket().display()))
            .args(["exec", "-w", "/", &id, "sh", "-c", &op])
            .output()
            .expect("docker exec");
        let both = scans_after(&agent);
        let want = report(&engine);
        let got = &container_event(&agent.scans(), &both[1], &id)["ovlaudit"]["container"]["writable"];
        let full = &crate::common::container(&want, &id)["writable"];
        assert_eq!(figures(got, &upper), figures(full, &upper), "seed {seed} step {step} ({op:?})");
        assert_eq!(got["apparent_bytes"].as_u64(), Some(size_rw(&engine, &id)), "seed {seed} step {step} ({op:?})");
        for x in &both {
            let inc = &x.summary()["incremental"];
            let rebuilt: u64 = inc["rebuilds"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            let hard_links = inc["rebuilds"]["new hard link"].as_u64().unwrap_or(0);
            assert_eq!(inc["unwatched"], 0, "seed {seed} step {step}: {inc}");
            assert_eq!(rebuilt - hard_links, 0, "seed {seed} step {step}: {inc}");
            assert_eq!(inc["layers_incremental"].as_u64().unwrap_or(0) + rebuilt, 1, "seed {seed} step {step}: {inc}");
        }
    }
}

//! The writable-layer benchmark (issue 3): a real workload on a private dockerd, then ovlaudit, the
//! engine's own size API, `du` and `diskus` timed on the same upperdirs in the same run, warm cache.
//! Ignored in the normal run (it takes minutes); `tests/bench/run` builds everything in release mode and
//! runs it:
//!
//!     tests/bench/run
//!
//! Environment: `OVLAUDIT_DISKUS` (the diskus binary; the script installs one), `OVLAUDIT_BENCH_RUNS`
//! (timed runs per tool, default 7), `OVLAUDIT_BENCH_CONTAINERS` (default 20), `OVLAUDIT_BENCH_FILES`
//! (small files per container, default 10000), `OVLAUDIT_BENCH_MILLION` (files in the big-layer scenario,
//! default 1000000; 0 skips it), `OVLAUDIT_BENCH_HOLD` (a file: keep the engine and workload after the
//! table, the data root written there, until the file is removed).
//!
//! `bench_busy_host` (issue 12) measures `ovlaudit run` itself: its CPU over a window of container churn
//! and writes against one full report of the same host, its rescan of an unchanged host, its reaction to a
//! new container and its peak memory; `OVLAUDIT_BENCH_BUSY_FILES` (default 1000000),
//! `OVLAUDIT_BENCH_WINDOW` (seconds, default 60), `OVLAUDIT_BENCH_COLD=1` adds the cold-cache line (it
//! drops the machine's page cache before each run: root only, and it slows everything else on the host).

use crate::agent::Agent;
use crate::common::{container, OVLAUDIT};
use crate::harness::Engine;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One timed run of a command: wall time and the child's own peak RSS (from `wait4`, not the harness's).
struct Run {
    wall: Duration,
    /// User plus system CPU time of the child.
    cpu: Duration,
    max_rss_kib: u64,
    stdout: Vec<u8>,
}

fn timed(cmd: &mut Command) -> Run {
    let shown = format!("{cmd:?}");
    let out = tempfile::tempfile().expect("temp file for stdout");
    let started = Instant::now();
    // Reaped below with wait4, which (unlike Child::wait) returns this child's own rusage.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup stdout file"))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: pid is our unreaped child; status and usage are valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
    let wall = started.elapsed();
    assert_eq!(rc, pid, "wait4 {shown}: {}", std::io::Error::last_os_error());
    let status = std::process::ExitStatus::from_raw(status);
    assert!(status.success(), "{shown} failed: {status}");
    // SAFETY: wait4 succeeded, so it filled usage.
    let usage = unsafe { usage.assume_init() };
    use std::io::{Read, Seek};
    let mut out = out;
    out.rewind().expect("rewind stdout");
    let mut stdout = Vec::new();
    out.read_to_end(&mut stdout).expect("read stdout");
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Run { wall, cpu, max_rss_kib: usage.ru_maxrss as u64, stdout }
}

/// The kernel's floor for this workload: `getdents64` and one `statx` per entry, nothing else (no
/// accounting, no metadata, no process start), over `dirs` with `threads` threads taking whole
/// directories. Returns the entries seen below the roots. ovlaudit cannot be faster than this with the
/// same system calls; the benchmark prints it so the remaining gap is plain.
fn bare_walk(dirs: &[PathBuf], threads: usize) -> u64 {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let entries = AtomicU64::new(0);
    let open = |dirfd: libc::c_int, name: *const libc::c_char| {
        // SAFETY: name is a NUL-terminated string that outlives the call.
        unsafe { libc::openat(dirfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) }
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u64; 8192];
                let mut seen = 0;
                while let Some(root) = dirs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let root = CString::new(root.as_os_str().as_bytes()).expect("path without NUL");
                    let mut stack = vec![open(libc::AT_FDCWD, root.as_ptr())];
                    while let Some(fd) = stack.pop() {
                        assert!(fd >= 0, "bare walk: open: {}", std::io::Error::last_os_error());
                        loop {
                            // SAFETY: buf is 64 KiB of writable, 8-byte aligned memory.
                            let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), 65536) };
                            if n <= 0 {
                                break;
                            }
                            // SAFETY: the kernel wrote n bytes of linux_dirent64 records.
                            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
                            let mut off = 0;
                            while off < bytes.len() {
                                let reclen = u16::from_ne_bytes([bytes[off + 16], bytes[off + 17]]) as usize;
                                let name = bytes[off + 19..].as_ptr().cast::<libc::c_char>();
                                let dot = bytes[off + 19] == b'.'
                                    && (bytes[off + 20] == 0 || (bytes[off + 20] == b'.' && bytes[off + 21] == 0));
                                off += reclen;
                                if dot {
                                    continue;
                                }
                                let mut st = std::mem::MaybeUninit::<libc::statx>::uninit();
                                // SAFETY: name is NUL-terminated inside buf; st is a valid out-pointer.
                                let rc = unsafe {
                                    libc::statx(
                                        fd,
                                        name,
                                        libc::AT_SYMLINK_NOFOLLOW,
                                        libc::STATX_BASIC_STATS,
                                        st.as_mut_ptr(),
                                    )
                                };
                                if rc != 0 {
                                    continue;
                                }
                                seen += 1;
                                // SAFETY: statx succeeded.
                                if u32::from(unsafe { st.assume_init() }.stx_mode) & libc::S_IFMT == libc::S_IFDIR {
                                    stack.push(open(fd, name));
                                }
                            }
                        }
                        // SAFETY: fd is ours.
                        unsafe { libc::close(fd) };
                    }
                }
                entries.fetch_add(seen, Ordering::Relaxed);
            });
        }
    });
    entries.into_inner()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn ovlaudit_cmd(data_root: &Path) -> Command {
    let mut c = Command::new(OVLAUDIT);
    c.args(["report", "--format", "json", "--docker-root"]).arg(data_root);
    c
}

/// Writes `n` files straight into an upperdir, 1000 per directory: empty except every 1000th (10 bytes),
/// so the scenario is about inodes, not gigabytes.
fn write_many_files(upper: &Path, n: usize) {
    for i in 0..n {
        let dir = upper.join(format!("m/d{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        let f = dir.join(format!("f{i}"));
        let content: &[u8] = if i % 1000 == 999 { b"0123456789" } else { b"" };
        std::fs::write(&f, content).unwrap_or_else(|e| panic!("write {}: {e}", f.display()));
    }
}

#[test]
#[ignore = "a benchmark taking minutes; run tests/bench/run"]
fn bench_writable_layers() {
    let containers = env_num("OVLAUDIT_BENCH_CONTAINERS", 20);
    let files = env_num("OVLAUDIT_BENCH_FILES", 10_000);
    let runs = env_num("OVLAUDIT_BENCH_RUNS", 7).max(1);
    let million = env_num("OVLAUDIT_BENCH_MILLION", 1_000_000);
    let diskus = std::env::var_os("OVLAUDIT_DISKUS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("diskus"));
    let engine = Engine::start().expect("start a private dockerd").expect("the benchmark needs dockerd and root");
    engine.import_busybox("bb:1");

    eprintln!("bench: making {containers} containers, each with {files} small files, a 400 KB blob and a hard link");
    let script = format!(
        "i=0; while [ $i -lt {files} ]; do d=/data/d$((i / 1000)); [ -d $d ] || mkdir -p $d; \
         echo \"file $i\" > $d/f$i; i=$((i+1)); done; \
         dd if=/dev/urandom of=/blob bs=1000 count=400 2>/dev/null && ln /blob /blob.link"
    );
    let mut ids = Vec::new();
    for n in 0..containers {
        let name = format!("c{n:02}");
        engine.docker(&["run", "--name", &name, "bb:1", "sh", "-c", &script]);
        ids.push(engine.docker(&["inspect", "-f", "{{.Id}}", &name]));
    }
    let upperdirs: Vec<String> =
        ids.iter().map(|id| engine.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", id])).collect();

    // Correctness first: the sizes being timed must be the engine's.
    let report: serde_json::Value =
        serde_json::from_slice(&timed(&mut ovlaudit_cmd(engine.data_root())).stdout).expect("report JSON");
    let listed = engine.api_get("/containers/json?all=1&size=1");
    for c in listed.as_array().expect("containers") {
        let ours = container(&report, c["Id"].as_str().expect("Id"));
        assert_eq!(ours["writable"]["apparent_bytes"].as_u64(), c["SizeRw"].as_u64(), "SizeRw of {}", c["Id"]);
    }

    let socket = engine.socket().to_path_buf();
    let curl = || {
        let mut c = Command::new("curl");
        c.args(["-sf", "--unix-socket"]).arg(&socket).arg("http://localhost/containers/json?all=1&size=1");
        c
    };
    let du = || {
        let mut c = Command::new("du");
        c.arg("-sb").args(&upperdirs);
        c
    };
    let disk = || {
        let mut c = Command::new(&diskus);
        c.args(&upperdirs);
        c
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The default thread count (three per CPU) against one per CPU, the default before it.
    let per_cpu = || {
        let mut c = ovlaudit_cmd(engine.data_root());
        c.args(["--threads", &cpus.to_string()]);
        c
    };
    let per_cpu_name = format!("ovlaudit report, --threads {cpus} (one per CPU)");
    type MakeCommand<'a> = Box<dyn Fn() -> Command + 'a>;
    let tools: [(&str, MakeCommand); 5] = [
        ("ovlaudit report --format json", Box::new(|| ovlaudit_cmd(engine.data_root()))),
        ("engine GET /containers/json?all=1&size=1", Box::new(curl)),
        ("du -sb <upperdirs>", Box::new(du)),
        ("diskus <upperdirs>", Box::new(disk)),
        (&per_cpu_name, Box::new(per_cpu)),
    ];
    // The bare walk must see every entry ovlaudit counted, or it is not the floor of the same work.
    let upper_paths: Vec<PathBuf> = upperdirs.iter().map(PathBuf::from).collect();
    let counted: u64 = report["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| {
            let w = &c["writable"];
            ["files", "dirs", "symlinks", "whiteouts", "other"].iter().map(|k| w[*k].as_u64().unwrap_or(0)).sum::<u64>()
        })
        .sum();
    assert_eq!(bare_walk(&upper_paths, cpus), counted, "the bare walk sees the entries ovlaudit counted");

    // Warm the cache with one untimed run of each, then interleave the timed runs.
    for (_, make) in &tools {
        timed(&mut make());
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); tools.len()];
    let mut floor = Vec::new();
    let mut ovl_rss = 0;
    for _ in 0..runs {
        for (i, (_, make)) in tools.iter().enumerate() {
            let r = timed(&mut make());
            if i == 0 {
                ovl_rss = ovl_rss.max(r.max_rss_kib);
            }
            times[i].push(r.wall);
        }
        let started = Instant::now();
        bare_walk(&upper_paths, cpus);
        floor.push(started.elapsed());
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    let floor = median(floor);

    let mut million_line = String::from("1M-file scenario skipped (OVLAUDIT_BENCH_MILLION=0)");
    if million > 0 {
        engine.docker(&["create", "--name", "million", "bb:1", "true"]);
        let upper = engine.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "million"]);
        eprintln!("bench: writing {million} files into {upper}");
        write_many_files(Path::new(&upper), million);
        timed(&mut ovlaudit_cmd(engine.data_root()));
        let r = timed(ovlaudit_cmd(engine.data_root()).args(["--top", "10"]));
        let report: serde_json::Value = serde_json::from_slice(&r.stdout).expect("report JSON");
        let id = engine.docker(&["inspect", "-f", "{{.Id}}", "million"]);
        let files = container(&report, &id)["writable"]["files"].as_u64().unwrap_or(0);
        assert_eq!(files, million as u64, "every file of the big layer counted");
        let d = timed(Command::new(&diskus).arg(&upper));
        million_line = format!(
            "1M-file scenario ({} files in one layer, plus the {containers} layers above): ovlaudit --top 10 \
             {} (diskus on that layer alone {}), peak RSS {:.1} MiB",
            million,
            ms(r.wall),
            ms(d.wall),
            r.max_rss_kib as f64 / 1024.0
        );
    }

    println!();
    println!(
        "Benchmark: {containers} containers x ({files} small files + 400 KB blob + hard link), warm cache, \
         median of {runs} runs, {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!("  {:<44} {:>12}", "tool", "median");
    for ((name, _), m) in tools.iter().zip(&medians) {
        println!("  {name:<44} {:>12}", ms(*m));
    }
    println!("  {:<44} {:>12}", format!("bare getdents64+statx walk, {cpus} threads (*)"), ms(floor));
    println!();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("  ovlaudit / engine API : {:.3}  (target <= 0.25)", ratio(medians[0], medians[1]));
    println!("  ovlaudit / diskus     : {:.3}  (target <= 1.0)", ratio(medians[0], medians[3]));
    println!("  ovlaudit / du -sb     : {:.3}", ratio(medians[0], medians[2]));
    println!("  ovlaudit / bare walk  : {:.3}", ratio(medians[0], floor));
    println!("  one thread per CPU / bare walk: {:.3}", ratio(medians[4], floor));
    println!("  bare walk / engine API: {:.3}", ratio(floor, medians[1]));
    println!("  ovlaudit peak RSS     : {:.1} MiB", ovl_rss as f64 / 1024.0);
    println!("  {million_line}  (target <= 32 MiB)");
    println!("  sizes: ovlaudit's apparent_bytes equal the engine's SizeRw for all {containers} containers");
    println!(
        "  (*) the kernel's floor for this work, run inside the benchmark (no process start): one getdents64 \
         per directory batch and one statx per entry, no accounting"
    );

    // For profiling: keep the engine and its workload until the given file is removed.
    if let Some(hold) = std::env::var_os("OVLAUDIT_BENCH_HOLD") {
        let hold = PathBuf::from(hold);
        std::fs::write(&hold, format!("{}\n", engine.data_root().display())).expect("write the hold file");
        eprintln!("bench: holding the workload (data root in {}); remove that file to stop", hold.display());
        while hold.exists() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Peak resident memory of a running process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn drop_caches() {
    std::process::Command::new("sync").status().expect("sync");
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (needs root)");
}

#[test]
#[ignore = "a benchmark taking minutes; run tests/bench/run"]
fn bench_busy_host() {
    let n = env_num("OVLAUDIT_BENCH_BUSY_FILES", 1_000_000);
    let window = Duration::from_secs(env_num("OVLAUDIT_BENCH_WINDOW", 60) as u64);
    let diskus = std::env::var_os("OVLAUDIT_DISKUS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("diskus"));
    let engine = Engine::start().expect("start a private dockerd").expect("the benchmark needs dockerd and root");
    engine.import_busybox("bb:1");
    engine.docker(&["create", "--name", "big", "bb:1", "true"]);
    let upper = engine.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "big"]);
    eprintln!("bench: writing {n} files into {upper}");
    write_many_files(Path::new(&upper), n);
    let root = engine.data_root().to_str().expect("utf-8").to_owned();

    // One full report of the host (warm), the unit of cost.
    timed(&mut ovlaudit_cmd(engine.data_root()));
    let full = (0..3).map(|_| timed(&mut ovlaudit_cmd(engine.data_root())).cpu).min().expect("runs");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "").expect("config");
    // The shipped defaults: a scan a minute, and soon after a container starts or goes.
    let agent = Agent::start(&["--config", config.to_str().expect("utf-8"), "--docker-root", &root], &[]);
    agent.wait_until(Duration::from_secs(600), "the first scan", |s| !s.is_empty());
    let first_scan_cpu = agent.cpu_time();

    // The busy window: a writer rewriting its files, and a container started and one removed every 3 s.
    let writer = engine.docker(&[
        "run",
        "-d",
        "bb:1",
        "sh",
        "-c",
        "mkdir -p /w && while true; do i=0; while [ $i -lt 300 ]; do echo $i$i > /w/f$i; i=$((i+1)); done; sleep 1; done",
    ]);
    let mut churn: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    for _ in 0..3 {
        churn.push_back(engine.docker(&["run", "-d", "bb:1", "sleep", "3600"]));
    }
    std::thread::sleep(Duration::from_secs(5));
    let cpu0 = agent.cpu_time();
    let started = Instant::now();
    let mut reactions = Vec::new();
    while started.elapsed() < window {
        let t = Instant::now();
        let id = engine.docker(&["run", "-d", "bb:1", "sleep", "3600"]);
        let issued = Instant::now();
        if let Some(old) = churn.pop_front() {
            engine.docker(&["rm", "-f", &old]);
        }
        churn.push_back(id.clone());
        let seen = agent.wait_until(Duration::from_secs(30), "the new container", |s| {
            s.iter().rev().any(|x| x.container_ids().contains(&id))
        });
        let at = seen.iter().find(|x| x.container_ids().contains(&id)).expect("seen").at;
        reactions.push(at.saturating_duration_since(issued));
        std::thread::sleep(Duration::from_secs(3).saturating_sub(t.elapsed()));
    }
    let busy_cpu = agent.cpu_time() - cpu0;
    let busy_scans = agent.scans().len();
    engine.docker(&["rm", "-f", &writer]);
    for id in churn {
        engine.docker(&["rm", "-f", &id]);
    }
    let incremental = agent.scans().last().map(|s| s.summary()["incremental"].clone()).unwrap_or_default();
    let agent_rss = peak_rss_kib(agent.pid());
    drop(agent);

    // An unchanged host, scanned every second by a second agent.
    let idle =
        Agent::start(&["--config", config.to_str().expect("utf-8"), "--docker-root", &root, "--interval", "1s"], &[]);
    idle.wait_until(Duration::from_secs(600), "the first scan", |s| s.len() >= 2);
    let (c0, s0) = (idle.cpu_time(), idle.scans().len());
    idle.wait_until(Duration::from_secs(60), "ten more scans", |s| s.len() >= s0 + 10);
    let per_rescan = (idle.cpu_time() - c0) / 10;
    drop(idle);

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    let worst = reactions.iter().max().copied().unwrap_or_default();
    println!();
    println!(
        "Busy host: one layer of {n} files; for {} s a container started and one removed every 3 s, and a",
        window.as_secs()
    );
    println!("container rewriting 300 files every second; `ovlaudit run` with the shipped defaults.");
    println!();
    println!("  one full `ovlaudit report`, CPU           : {:>10}", ms(full));
    println!("  agent's first scan (builds its state), CPU : {:>10}", ms(first_scan_cpu));
    println!("  agent over the busy window, CPU           : {:>10}  ({busy_scans} scans)", ms(busy_cpu));
    println!("  busy window / one full report           : {:.3}  (target <= 0.5)", ratio(busy_cpu, full));
    println!("  rescan of an unchanged host, CPU          : {:>10}", ms(per_rescan));
    println!("  rescan / one full report                : {:.3}  (target <= 0.05)", ratio(per_rescan, full));
    println!("  new container to its event, worst         : {:>10}  (target <= 5 s)", ms(worst));
    println!("  agent peak RSS                            : {:.1} MiB  (target < 64 MiB)", agent_rss as f64 / 1024.0);
    println!("  last scan's incremental counters: {incremental}");

    if std::env::var_os("OVLAUDIT_BENCH_COLD").is_some() {
        let mut ovl = Vec::new();
        let mut dsk = Vec::new();
        for _ in 0..3 {
            drop_caches();
            ovl.push(timed(&mut ovlaudit_cmd(engine.data_root())).wall);
            drop_caches();
            dsk.push(timed(Command::new(&diskus).arg(&upper)).wall);
        }
        let (o, d) = (median(ovl), median(dsk));
        println!(
            "  cold cache (caches dropped before each run, median of 3): ovlaudit report {}, diskus {}, ratio {:.2}  (target <= 1.0)",
            ms(o),
            ms(d),
            ratio(o, d)
        );
    }
}

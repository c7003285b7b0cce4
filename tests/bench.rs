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
//! default 1000000; 0 skips it).

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
    Run { wall, max_rss_kib: usage.ru_maxrss as u64, stdout }
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
    type MakeCommand<'a> = Box<dyn Fn() -> Command + 'a>;
    let tools: [(&str, MakeCommand); 4] = [
        ("ovlaudit report --format json", Box::new(|| ovlaudit_cmd(engine.data_root()))),
        ("engine GET /containers/json?all=1&size=1", Box::new(curl)),
        ("du -sb <upperdirs>", Box::new(du)),
        ("diskus <upperdirs>", Box::new(disk)),
    ];
    // Warm the cache with one untimed run of each, then interleave the timed runs.
    for (_, make) in &tools {
        timed(&mut make());
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); tools.len()];
    let mut ovl_rss = 0;
    for _ in 0..runs {
        for (i, (_, make)) in tools.iter().enumerate() {
            let r = timed(&mut make());
            if i == 0 {
                ovl_rss = ovl_rss.max(r.max_rss_kib);
            }
            times[i].push(r.wall);
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();

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
    println!();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("  ovlaudit / engine API : {:.3}  (target <= 0.25)", ratio(medians[0], medians[1]));
    println!("  ovlaudit / diskus     : {:.3}  (target <= 1.0)", ratio(medians[0], medians[3]));
    println!("  ovlaudit / du -sb     : {:.3}", ratio(medians[0], medians[2]));
    println!("  ovlaudit peak RSS     : {:.1} MiB", ovl_rss as f64 / 1024.0);
    println!("  {million_line}  (target <= 32 MiB)");
    println!("  sizes: ovlaudit's apparent_bytes equal the engine's SizeRw for all {containers} containers");
}

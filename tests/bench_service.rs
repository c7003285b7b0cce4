//! The service benchmark (issue 13): what `ovlaudit run` ships for a host whose containers do not change,
//! against one full snapshot, and how many scans a storm of mount changes costs. Ignored in the normal
//! run; `tests/bench/service` builds in release mode and runs it:
//!
//!     tests/bench/service
//!
//! A quiet host is measured over `OVLAUDIT_BENCH_QUIET_SCANS` scans (default 30) at a 2 s interval and
//! scaled to an hour and a day at the default settings (a scan a minute, a snapshot a day), since nothing
//! in a quiet scan depends on the interval. The storms run for `OVLAUDIT_BENCH_STORM_SECS` (default 120)
//! in a private mount namespace: a tmpfs elsewhere every 2 s (the measurement: 55 scans a minute
//! before), and an overlay mounted and unmounted every 1.2 s, just outside the 1 s settle window.
//! Environment: `OVLAUDIT_BENCH_CONTAINERS` (default 20).

use crate::agent::{empty_config, Agent, PrivateMountNs, Scan};
use crate::harness::Engine;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bytes(scan: &Scan) -> u64 {
    scan.events.iter().map(|e| e.to_string().len() as u64 + 1).sum()
}

/// Scans started in the private namespace while `change` runs every `gap` for `secs`, then the scans of
/// the minute after (the window releasing the last one); returns (changes, scans during, scans after).
fn storm(agent: &Agent, secs: u64, gap: Duration, change: &dyn Fn(bool)) -> (u64, usize, usize) {
    let before = agent.scans().len();
    let t0 = Instant::now();
    let mut changes = 0;
    let mut on = false;
    while t0.elapsed() < Duration::from_secs(secs) {
        on = !on;
        change(on);
        changes += 1;
        std::thread::sleep(gap);
    }
    if on {
        change(false);
        changes += 1;
    }
    let during = agent.scans().len() - before;
    std::thread::sleep(Duration::from_secs(62));
    let after = agent.scans().len() - before - during;
    (changes, during, after)
}

#[test]
#[ignore = "a benchmark taking minutes; run tests/bench/service"]
fn bench_service() {
    let engine = Engine::start().unwrap_or_else(|e| panic!("cannot start a private dockerd: {e}")).expect("an engine");
    let ns = PrivateMountNs::start().expect("a private mount namespace (root)");
    engine.import_busybox("bb:1");
    let n = env_num("OVLAUDIT_BENCH_CONTAINERS", 20);
    for i in 0..n {
        let name = format!("app{i}");
        let labels = [
            format!("com.docker.compose.project=shop{}", i % 3),
            format!("com.docker.compose.service=svc{i}"),
            "com.docker.compose.version=2.24.0".to_owned(),
        ];
        let mut args = vec!["run", "--name", &name];
        for l in &labels {
            args.extend(["--label", l]);
        }
        let script = format!("mkdir -p /data && head -c {} /dev/zero > /data/blob && echo {i} > /id", 1000 * (i + 1));
        args.extend(["bb:1", "sh", "-c", &script]);
        engine.docker(&args);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = empty_config(dir.path());
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let proc_dir = ns.proc_dir();
    let proc_dir = proc_dir.to_str().expect("utf-8");

    // A quiet host.
    let quiet = env_num("OVLAUDIT_BENCH_QUIET_SCANS", 30) as usize;
    let agent =
        Agent::start(&["--config", &config, "--docker-root", &root, "--proc", proc_dir, "--interval", "2s"], &[]);
    let scans = agent.wait_until(Duration::from_secs(30 + 3 * quiet as u64), "the quiet scans", |s| s.len() > quiet);
    let snapshot = bytes(&scans[0]);
    let later = &scans[1..=quiet];
    let per_scan = later.iter().map(bytes).sum::<u64>() as f64 / quiet as f64;
    let things: u64 = later.iter().map(|s| s.thing_events().len() as u64).sum();
    let summary = later.iter().map(|s| s.events.last().map_or(0, |e| e.to_string().len() as u64 + 1)).sum::<u64>()
        as f64
        / quiet as f64;
    drop(agent);
    // At the defaults: a scan a minute, a snapshot a day.
    let hour_things = snapshot as f64 / 24.0 + (per_scan - summary) * 60.0;
    let hour_summaries = summary * 60.0;
    let day = snapshot as f64 + per_scan * 1440.0;
    let old_day = snapshot as f64 * 1440.0;
    println!("\nQuiet host: {n} containers, {} events in one full snapshot", scans[0].events.len());
    println!("| measure | bytes | vs one snapshot |");
    println!("| --- | ---: | ---: |");
    println!("| one full snapshot (start) | {snapshot} | 1 |");
    println!("| a quiet scan (measured over {quiet}) | {per_scan:.0} | {:.4} |", per_scan / snapshot as f64);
    println!("| of which the summary | {summary:.0} | {:.4} |", summary / snapshot as f64);
    println!("| thing events in {quiet} quiet scans | {things} events | |");
    println!(
        "| per hour, defaults: things (snapshot/24 + changes) | {hour_things:.0} | {:.4} |",
        hour_things / snapshot as f64
    );
    println!("| per hour, defaults: summaries (60) | {hour_summaries:.0} | {:.4} |", hour_summaries / snapshot as f64);
    println!("| per day, defaults: everything | {day:.0} | {:.2} |", day / snapshot as f64);
    println!("| per day before (a full snapshot every scan) | {old_day:.0} | {:.0} |", old_day / snapshot as f64);

    // Storms, in the namespace.
    let secs = env_num("OVLAUDIT_BENCH_STORM_SECS", 120);
    let agent =
        Agent::start(&["--config", &config, "--docker-root", &root, "--proc", proc_dir, "--interval", "1h"], &[]);
    agent.wait_until(Duration::from_secs(30), "the first scan", |s| !s.is_empty());
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let elsewhere = elsewhere.to_str().expect("utf-8").to_owned();
    let tmpfs = |on: bool| {
        if on {
            ns.run(&["mount", "-t", "tmpfs", "none", &elsewhere]);
        } else {
            ns.run(&["umount", &elsewhere]);
        }
    };
    let (c1, d1, a1) = storm(&agent, secs, Duration::from_secs(2), &tmpfs);
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(dir.path().join(d)).expect("mkdir");
    }
    let p = |d: &str| dir.path().join(d).to_str().expect("utf-8").to_owned();
    let opts = format!("lowerdir={},upperdir={},workdir={}", p("lower"), p("upper"), p("work"));
    let overlay = |on: bool| {
        if on {
            ns.run(&["mount", "-t", "overlay", "overlay", "-o", &opts, &p("merged")]);
        } else {
            ns.run(&["umount", &p("merged")]);
        }
    };
    let (c2, d2, a2) = storm(&agent, secs, Duration::from_millis(1200), &overlay);
    let per_min = |scans: usize| scans as f64 * 60.0 / secs as f64;
    println!("\nMount storms for {secs} s (settle 1 s, max_delay 5 s):");
    println!("| storm | changes | scans during | scans a minute | scans in the minute after |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!("| tmpfs elsewhere, every 2 s | {c1} | {d1} | {:.1} | {a1} |", per_min(d1));
    println!("| overlay, every 1.2 s | {c2} | {d2} | {:.1} | {a2} |", per_min(d2));
}

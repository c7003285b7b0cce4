//! The copy-up benchmark: what the copy-up analysis costs next to the report without it, and next to the
//! price of its budget (reading every compared byte twice, timed with `cat`). A private dockerd, an image
//! with `OVLAUDIT_BENCH_COPYUP_FILES` files of 50 000 bytes (default 2000, about 95 MiB), one container
//! that chowns them all (identical copies) and one that rewrites a tenth of them. Ignored in the normal
//! run; `tests/bench/copyups` builds in release mode and runs it. Prints a table; asserts only what it
//! measures is consistent (the analysis found every copy).

use crate::common::{container, OVLAUDIT};
use crate::harness::Engine;
use std::process::Command;
use std::time::{Duration, Instant};

fn time(cmd: &mut Command) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    (started.elapsed(), out.stdout)
}

fn best(runs: usize, mut f: impl FnMut() -> (Duration, Vec<u8>)) -> (Duration, Vec<u8>) {
    (0..runs).map(|_| f()).min_by_key(|(d, _)| *d).expect("at least one run")
}

#[test]
#[ignore = "benchmark: run tests/bench/copyups"]
fn bench_copy_ups() {
    let n: usize = std::env::var("OVLAUDIT_BENCH_COPYUP_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let engine = Engine::start().expect("start dockerd").expect("dockerd is needed");
    engine.import_busybox("bb:1");
    engine.build(
        "data:1",
        &format!(
            "FROM bb:1\nRUN mkdir /data && i=0; while [ $i -lt {n} ]; do head -c 50000 /bin/busybox > /data/f$i; \
             i=$((i+1)); done\n"
        ),
    );
    engine.docker(&["run", "--name", "chowned", "data:1", "chown", "-R", "1", "/data"]);
    engine.docker(&[
        "run",
        "--name",
        "rewritten",
        "data:1",
        "sh",
        "-c",
        &format!("i=0; while [ $i -lt {} ]; do echo x >> /data/f$i; i=$((i+1)); done", n / 10),
    ]);
    let root = engine.data_root().to_str().expect("utf-8").to_owned();
    let report = |extra: &[&str]| {
        let mut c = Command::new(OVLAUDIT);
        c.args(["report", "--format", "json", "--docker-root", &root]).args(extra);
        c
    };
    // Warm the cache once.
    time(&mut report(&[]));
    let runs = 5;
    let (without, _) = best(runs, || time(&mut report(&["--no-copy-ups"])));
    let (lookups, _) = best(runs, || time(&mut report(&["--compare-budget", "0"])));
    let (full, json) = best(runs, || time(&mut report(&[])));
    let doc: serde_json::Value = serde_json::from_slice(&json).expect("json");
    let id = engine.docker(&["inspect", "-f", "{{.Id}}", "chowned"]);
    let c = &container(&doc, &id)["writable"];
    assert_eq!(c["copy_ups"]["identical_files"], n as u64, "every chowned file is an identical copy");
    let compared = doc["totals"]["copy_up_compared_bytes"].as_u64().expect("compared");
    // The budget's own price: reading the compared bytes from both sides.
    let upper = c["upperdir"].as_str().expect("upperdir").to_owned();
    let lower = c["lowerdirs"][1].as_str().expect("image layer").to_owned();
    let (cat, _) =
        best(runs, || time(Command::new("sh").arg("-c").arg(format!("cat {upper}/data/* {lower}/data/* > /dev/null"))));
    println!("\ncopy-up analysis, {n} files of 50000 bytes, 2 containers, best of {runs}, warm cache");
    println!("{:<44} {:>9}", "what", "ms");
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!("{:<44} {:>9}", "report --no-copy-ups", ms(without));
    println!("{:<44} {:>9}", "report --compare-budget 0 (lookups only)", ms(lookups));
    println!("{:<44} {:>9}", format!("report (compared {} MiB per side)", compared >> 20), ms(full));
    println!("{:<44} {:>9}", "cat of the compared files, both sides", ms(cat));
    let extra = full.saturating_sub(without);
    println!(
        "analysis cost {} ms = {:.2} x the cost of reading its bytes with cat",
        ms(extra),
        extra.as_secs_f64() / cat.as_secs_f64().max(1e-9)
    );
}

//! Walks directories as `ovlaudit report` walks writable layers and prints the files counted and the wall
//! time: a measuring tool for the walker on any tree (`tests/bench/cold` uses it on a cold file system).
//!
//!     cargo run --release -p ovlaudit-collector --example walk_dirs -- THREADS DIR...

use collector::usage::OverlayXattrs;
use collector::walk::{measure_layers, WalkOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let dirs: Vec<Option<std::path::PathBuf>> = args.map(|a| Some(a.into())).collect();
    let started = std::time::Instant::now();
    let opts = WalkOptions { threads, xattrs: OverlayXattrs::Trusted, top_files: 0 };
    let usages = measure_layers(&dirs, opts, None);
    let files: u64 = usages.iter().filter_map(|u| u.as_ref().ok()).map(|u| u.files).sum();
    println!("{files} files, {:.2} s", started.elapsed().as_secs_f64());
}

//! Walks directories as `ovlaudit report` walks writable layers and prints the files counted and the wall
//! time: a measuring tool for the walker on any tree (`tests/bench/cold` uses it on a cold file system).
//! With `--state`, builds the incremental accounting state of each directory instead (what `ovlaudit run`
//! does the first time it sees a layer), watching nothing.
//!
//!     cargo run --release -p ovlaudit-collector --example walk_dirs -- [--state] THREADS DIR...

use collector::layer_state::{DirWatch, LayerState};
use collector::usage::OverlayXattrs;
use collector::walk::{measure_layers, WalkOptions};
use std::os::fd::BorrowedFd;

/// Watches nothing.
struct NoWatch;

impl DirWatch for NoWatch {
    fn watch(&mut self, _dir: BorrowedFd<'_>, ino: u64) -> std::io::Result<Box<[u8]>> {
        Ok(ino.to_ne_bytes().into())
    }
    fn forget(&mut self, _key: &[u8]) {}
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let state = args.next_if(|a| a == "--state").is_some();
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let dirs: Vec<Option<std::path::PathBuf>> = args.map(|a| Some(a.into())).collect();
    let started = std::time::Instant::now();
    let files: u64 = if state {
        dirs.iter()
            .flatten()
            .filter_map(|d| LayerState::build(d, OverlayXattrs::Trusted, 0, None, threads, &mut NoWatch).ok())
            .map(|s| s.usage().files)
            .sum()
    } else {
        let opts = WalkOptions { threads, xattrs: OverlayXattrs::Trusted, top_files: 0 };
        let usages = measure_layers(&dirs, opts, None);
        usages.iter().filter_map(|u| u.as_ref().ok()).map(|u| u.files).sum()
    };
    println!("{files} files, {:.2} s", started.elapsed().as_secs_f64());
}

fn main() {
    let dirs: Vec<Option<std::path::PathBuf>> = std::env::args().skip(1).map(|a| Some(a.into())).collect();
    let t = std::time::Instant::now();
    let r = collector::usage::measure_writable_layers(&dirs, 0, 0);
    let el = t.elapsed();
    let total: u64 = r.iter().filter_map(|x| x.as_ref().ok()).map(|u| u.apparent_bytes).sum();
    eprintln!("{total} in {el:?}");
}

//! Docker's records: config.v2.json, image configs, repositories.json, and the chain of ids they imply.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = serde_json::from_slice::<collector::docker::containers::ContainerConfig>(data) {
        let _ = c.state.word();
    }
    if let Ok((diffs, _)) = collector::docker::imagedb::parse_image_config(data) {
        let chains = collector::digest::chain_ids(&diffs);
        assert_eq!(chains.len(), diffs.len());
    }
    if let Ok(tags) = collector::docker::imagedb::parse_tags(data) {
        assert!(tags.values().flatten().all(|t| !t.contains('@')));
    }
    // Field files (cache-id, mount-id, lower) and ids taken from them.
    let text = String::from_utf8_lossy(data);
    let _ = collector::hostfs::is_dir_name(text.trim());
    let e = collector::hostfs::excerpt(&text, 64);
    assert!(e.chars().all(|c| c == '…' || c.is_ascii_graphic() || c == ' '));
});

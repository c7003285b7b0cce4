//! containerd's records: varints as ids and sizes are stored, and a bbolt file built around the input as
//! a value (a snapshot's `id`, `kind`, `parent`, `size` and a container's labels).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = collector::bbolt::uvarint(data);
    let _ = collector::bbolt::varint(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        // An index or manifest: digests are looked up only when well formed.
        for m in v["manifests"].as_array().into_iter().flatten() {
            if let Some(d) = m["digest"].as_str() {
                if collector::digest::is_sha256_digest(d) {
                    assert!(!d.contains('/'));
                }
            }
        }
    }
});

//! bbolt pages and buckets, and what containerd and Podman read from them. Each run must end in bounded
//! time and memory whatever the bytes (page DAGs, shared inline buckets, loops).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(db) = collector::bbolt::parse(data) else { return };
    let _ = collector::containerd::snapshots_of(&db);
    let _ = collector::containerd::namespaces_of(&db);
    if let Some(ctr) = db.root.bucket(&[b"ctr"]) {
        for (_, b) in ctr.buckets() {
            let _ = b.value(b"state").map(serde_json::from_slice::<serde_json::Value>);
        }
    }
});

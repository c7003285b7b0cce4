//! containers-storage JSON: layers.json, images.json, containers.json and a container's metadata string.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Vec<collector::podman::Layer>>(data);
    let _ = serde_json::from_slice::<Vec<collector::podman::Image>>(data);
    if let Ok(cs) = serde_json::from_slice::<Vec<collector::podman::Container>>(data) {
        for c in cs {
            let _ = serde_json::from_str::<serde_json::Value>(&c.metadata);
        }
    }
});

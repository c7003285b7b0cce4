//! The mount table: mountinfo and /proc/mounts lines, octal escapes, options, overlay layer options.
#![no_main]
use collector::overlay::OverlayLayers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (a, _) = collector::mountinfo::parse_mountinfo(data);
    let (b, _) = collector::mountinfo::parse_proc_mounts(data);
    for e in a.iter().chain(b.iter()) {
        let _ = e.is_overlay();
        if let Ok(l) = OverlayLayers::from_options(&e.super_options) {
            if l.has_relative_paths() {
                let _ = l.resolved_against(std::path::Path::new("/var/lib/docker/overlay2"));
            }
        }
    }
    // Decoding never lengthens a field: each escape is four bytes for one.
    assert!(collector::mountinfo::decode_octal_escapes(data).len() <= data.len());
    let _ = OverlayLayers::from_options(&collector::mountinfo::parse_options(data));
});

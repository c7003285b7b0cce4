//! The mount table: mountinfo and /proc/mounts lines, octal escapes, options, overlay layer options; then
//! what a scan does with the parsed table: one overlay per superblock (copies grouped by `major:minor`, or by
//! options in `/proc/mounts`), relative layer paths anchored from a copy's mount point or a store directory,
//! a nested engine's mounts rebased, the live-path set and the by-upperdir index built from the result.
#![no_main]
use collector::engine::{in_use, live_paths, mounts_by_upper};
use collector::finding::Findings;
use collector::mount_table::{LayerAnchors, MountTable};
use collector::mountinfo::MountEntry;
use collector::overlay::OverlayLayers;
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};

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
    // Which host paths "exist" is part of the input (its last byte), so the fuzzer steers the anchoring.
    let salt = data.last().copied().unwrap_or(0);
    group(a, salt);
    group(b, salt);
});

/// Groups a parsed table into overlay mounts as a scan does, and checks what the grouping promises.
fn group(entries: Vec<MountEntry>, salt: u8) {
    let exists = |p: &Path| (p.as_os_str().len() as u8).wrapping_add(salt) % 3 == 0;
    let anchors = LayerAnchors {
        dirs: ["/var/lib/docker/overlay2", "/var/lib/containers/storage/overlay", "/tmp/d/overlay2"]
            .iter()
            .map(PathBuf::from)
            .collect(),
        exists: &exists,
    };
    let table = MountTable { source: PathBuf::from("/proc/1/mountinfo"), entries };
    let mut findings = Findings::default();
    let overlays = table.overlays(&anchors, &mut findings);
    let overlay_entries = table.entries.iter().filter(|e| e.is_overlay()).count();
    assert!(overlays.len() <= overlay_entries, "more overlays than overlay lines");
    let mut devices = std::collections::HashSet::new();
    for m in &overlays {
        assert!(!m.mount_points.is_empty(), "an overlay seen nowhere");
        assert!(m.mount_points.contains(&m.entry.mount_point), "the named copy is one of the mount points");
        if let Some(d) = m.entry.device {
            assert!(devices.insert(d), "two overlays for superblock {d:?}");
        }
        // Anchored means absolute, where the kernel's mount points are (they always are in a real table).
        if m.anchored && m.mount_points.iter().all(|p| p.is_absolute()) {
            let l = &m.layers;
            for p in l.lower.iter().chain(&l.data_only).chain(&l.upper).chain(&l.work) {
                assert!(p.is_absolute(), "anchored, yet {p:?} is relative");
            }
        }
        let _ = m.device();
        let moved = m.rebased(Path::new("/tmp/d"), Path::new("/host/nested"));
        assert_eq!(moved.mount_points.len(), m.mount_points.len());
    }
    // Findings are bounded: at most one per overlay group (unanchored or unparsable), never one per layer.
    assert!(findings.as_slice().len() <= overlay_entries, "{} findings", findings.as_slice().len());
    let live = live_paths(&table.entries, &overlays);
    for m in &overlays {
        assert!(in_use(&m.entry.mount_point, &live));
    }
    let by_upper = mounts_by_upper(&overlays);
    for (upper, &i) in &by_upper {
        assert_eq!(overlays[i].layers.upper.as_deref(), Some(*upper));
    }
}

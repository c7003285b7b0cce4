//! Reading the host's mount table and picking out its overlay mounts, with their layer paths made
//! absolute. Parsing itself is in [`crate::mountinfo`] and [`crate::overlay`]; this module owns which
//! file is read and how relative layer paths are anchored.

use crate::finding::Findings;
use crate::mountinfo::{parse_mountinfo, parse_proc_mounts, MountEntry};
use crate::overlay::OverlayLayers;
use std::fs;
use std::path::{Path, PathBuf};

/// The mount table as read from one file.
#[derive(Debug)]
pub struct MountTable {
    /// The file that was read.
    pub source: PathBuf,
    /// Its entries, in order.
    pub entries: Vec<MountEntry>,
}

/// An overlay mount with absolute layer paths.
#[derive(Debug, Clone)]
pub struct OverlayMount {
    /// The mount table entry.
    pub entry: MountEntry,
    /// Its layers; relative paths already joined onto the directory the mounter worked in.
    pub layers: OverlayLayers,
    /// Whether the mounter gave relative paths.
    pub relative: bool,
}

/// Reads `<proc>/1/mountinfo` (the host's mount namespace, even from a private one), else
/// `<proc>/self/mountinfo`, else `<proc>/mounts`. Lines that do not parse become findings. `None` (and a
/// finding) when no file could be read.
pub fn read_mount_table(proc_dir: &Path, findings: &mut Findings) -> Option<MountTable> {
    let candidates = [
        (proc_dir.join("1/mountinfo"), true),
        (proc_dir.join("self/mountinfo"), true),
        (proc_dir.join("mounts"), false),
    ];
    let mut tried = Vec::new();
    for (path, is_mountinfo) in candidates {
        match fs::read(&path) {
            Ok(bytes) => {
                let (entries, errors) = if is_mountinfo { parse_mountinfo(&bytes) } else { parse_proc_mounts(&bytes) };
                for e in errors {
                    findings.warn("mount_line_unparsable", e.to_string(), Some(&path));
                }
                return Some(MountTable { source: path, entries });
            }
            Err(e) => tried.push(format!("{}: {e}", path.display())),
        }
    }
    findings.error(
        "mount_table_unreadable",
        format!("no mount table could be read, so live mounts are not shown ({})", tried.join("; ")),
        Some(proc_dir),
    );
    None
}

impl MountTable {
    /// The overlay mounts, each with absolute layer paths. An overlay whose options cannot be understood is
    /// a finding and is left out.
    pub fn overlays(&self, findings: &mut Findings) -> Vec<OverlayMount> {
        let mut out = Vec::new();
        for entry in self.entries.iter().filter(|e| e.is_overlay()) {
            match OverlayLayers::from_options(&entry.super_options) {
                Ok(layers) => {
                    let relative = layers.has_relative_paths();
                    let layers = match (relative, relative_base(entry, &layers)) {
                        (false, _) => layers,
                        (true, Some(base)) => layers.resolved_against(&base),
                        (true, None) => {
                            findings.warn(
                                "overlay_relative_unanchored",
                                "overlay mount has relative layer paths and no directory to anchor them",
                                Some(&entry.mount_point),
                            );
                            layers
                        }
                    };
                    out.push(OverlayMount { entry: entry.clone(), layers, relative });
                }
                Err(e) => findings.warn(
                    "overlay_options_unparsable",
                    format!("overlay mount options not understood: {e}"),
                    Some(&entry.mount_point),
                ),
            }
        }
        out
    }
}

/// The directory relative layer paths are relative to. The kernel does not record the mounter's working
/// directory, so it is inferred from the layout: with an absolute upperdir (containerd: `…/snapshots/<n>/fs`)
/// the parent of the snapshot directory; otherwise (Docker, Podman: the mountpoint is
/// `<root>/overlay2/<id>/merged`) the grandparent of the mountpoint.
fn relative_base(entry: &MountEntry, layers: &OverlayLayers) -> Option<PathBuf> {
    match &layers.upper {
        Some(u) if u.is_absolute() => u.parent()?.parent().map(Path::to_path_buf),
        _ => entry.mount_point.parent()?.parent().map(Path::to_path_buf),
    }
}

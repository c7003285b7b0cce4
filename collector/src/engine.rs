//! The seam between the audit and each container engine's storage: everything the audit needs from one
//! store on the host (Docker's overlay2 root, a containers-storage root of Podman or CRI-O, a containerd
//! root) behind one small trait, so that a new engine is one new module implementing [`Engine`].
//!
//! The audit ([`crate::scan`]) asks every store for its containers (each writable layer measured with the
//! shared walker, each live mount claimed), its images and its orphans, and asks all of them to name the
//! layers of overlay mounts that no container claimed. Not for: reading the mount table or walking layers
//! (shared by all engines), or deciding where the report goes.

use crate::finding::Findings;
use crate::mount_table::OverlayMount;
use crate::mountinfo::MountEntry;
use crate::report::{ContainerReport, EngineSource, ImageReport, MountLayer, Orphan};
use crate::scan::ScanOptions;
use crate::usage::{UsageError, WritableUsage};
pub use crate::walk::LayerSpec;
use std::collections::HashSet;
use std::path::Path;

/// The usages of one store's writable layers, in the order of its [`Engine::writable_layers`]; taking the
/// next one waits for that layer's walk only.
pub type Usages<'u> = &'u mut dyn Iterator<Item = Result<WritableUsage, UsageError>>;

/// The next layer's usage from `usages`; an empty usage if an engine takes more than it listed.
pub fn next_usage(usages: Usages<'_>) -> Result<WritableUsage, UsageError> {
    usages.next().unwrap_or_else(|| Ok(WritableUsage::default()))
}

/// What every engine's audit reads besides its own store.
#[derive(Debug, Clone, Copy)]
pub struct HostView<'a> {
    /// The scan's options (host root, threads, orphan age, top files).
    pub opts: &'a ScanOptions,
    /// The whole mount table, host paths.
    pub mounts: &'a [MountEntry],
    /// Its overlay mounts, layer paths absolute.
    pub overlays: &'a [OverlayMount],
}

/// One engine's storage on the host, its metadata already read.
pub trait Engine {
    /// The runtime word containers of this store carry (`docker`, `podman`, `cri-o`, `containerd`).
    fn runtime(&self) -> &'static str;

    /// Where the store is, for `sources.engines`.
    fn source(&self) -> EngineSource;

    /// The writable layers of this store's containers, in the order [`Engine::containers`] takes their
    /// usages. The audit walks them all in one pool, across every store, while it joins the records.
    fn writable_layers(&self) -> Vec<LayerSpec>;

    /// Every container, running or not, with its writable layer's usage: `usages` yields them in the
    /// order of [`Engine::writable_layers`], each as soon as that layer is walked. Each overlay mount (an
    /// index into `host.overlays`) that belongs to one of them is added to `owned`.
    fn containers(
        &self,
        host: &HostView<'_>,
        usages: Usages<'_>,
        owned: &mut HashSet<usize>,
        findings: &mut Findings,
    ) -> Vec<ContainerReport>;

    /// Every image with its sizes, and the bytes of all image layers counted once. `containers` are this
    /// engine's own.
    fn images(&self, containers: &[ContainerReport], findings: &mut Findings) -> (Vec<ImageReport>, u64);

    /// Storage under this store's root that none of its records names. A directory any live mount uses
    /// (of any engine) is never one.
    fn orphans(&self, host: &HostView<'_>, findings: &mut Findings) -> Vec<Orphan>;

    /// The layer at `host_path` (a lowerdir of a mount no container claimed), when this store has it.
    fn identify_layer(&self, host_path: &Path) -> Option<MountLayer>;

    /// The directory (host path) this engine mounts from when it gives the kernel relative layer paths
    /// (Docker's `<root>/overlay2`, containers-storage's `<root>/overlay`); `None` when it never does so
    /// relative to a fixed directory (containerd anchors on its absolute upperdir).
    fn relative_layer_base(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// Every path a live mount uses (mountpoints, upperdirs, workdirs, lowerdirs, data-only layers) and every
/// directory above one: an orphan candidate is never one of these, since it would be or contain a live
/// path. Holding the ancestors makes each look-up one hash probe, whatever the size of the mount table.
pub fn live_paths(mounts: &[MountEntry], overlays: &[OverlayMount]) -> HashSet<std::path::PathBuf> {
    let mut out: HashSet<std::path::PathBuf> = HashSet::new();
    let mut add = |p: &Path| {
        for a in p.ancestors() {
            // Once one ancestor is in, so are all above it.
            if !out.insert(a.to_owned()) {
                break;
            }
        }
    };
    for m in mounts {
        add(&m.mount_point);
    }
    for o in overlays {
        let l = &o.layers;
        for p in l.lower.iter().chain(&l.data_only).chain(&l.upper).chain(&l.work) {
            add(p);
        }
    }
    out
}

/// Whether `dir` is or contains a live path, `live` being [`live_paths`].
pub fn in_use(dir: &Path, live: &HashSet<std::path::PathBuf>) -> bool {
    live.contains(dir)
}

/// A store named on the command line that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{engine} root {}: {why}", path.display())]
pub struct EngineRootError {
    /// `podman` or `containerd`.
    pub engine: &'static str,
    /// The root, as this process reads it.
    pub path: std::path::PathBuf,
    /// The cause.
    pub why: String,
}

/// Opens every store other than Docker's overlay2 root: the roots named in `opts`, or else the default
/// ones that exist. A named root that cannot be read is an error; a default one is only a finding.
pub fn open_engines(opts: &ScanOptions, findings: &mut Findings) -> Result<Vec<Box<dyn Engine>>, EngineRootError> {
    let mut out: Vec<Box<dyn Engine>> = Vec::new();
    let (podman, named) = match &opts.podman_roots {
        Some(r) => (r.clone(), true),
        None => (crate::podman::default_roots(&opts.root), false),
    };
    for host_path in podman {
        let path = crate::hostfs::under_root(&opts.root, &host_path);
        match crate::podman::PodmanStore::open(&opts.root, &host_path, findings) {
            Ok(s) => out.push(Box::new(s)),
            Err(why) if named => return Err(EngineRootError { engine: "podman", path, why }),
            Err(why) => findings.warn("engine_root_unreadable", why, Some(&host_path)),
        }
    }
    let (containerd, named) = match &opts.containerd_roots {
        Some(r) => (r.clone(), true),
        None => (crate::containerd::default_roots(&opts.root, &opts.docker_root), false),
    };
    for host_path in containerd {
        let path = crate::hostfs::under_root(&opts.root, &host_path);
        match crate::containerd::ContainerdStore::open(&path, &host_path, findings) {
            Ok(s) => out.push(Box::new(s)),
            Err(why) if named => return Err(EngineRootError { engine: "containerd", path, why }),
            Err(why) => findings.warn("engine_root_unreadable", why, Some(&host_path)),
        }
    }
    Ok(out)
}

/// Names the layers of a mount no container claimed that Docker could not name, through the other stores.
pub fn identify_unknown_layers(mount: &mut crate::report::MountReport, engines: &[&dyn Engine]) {
    for (layer, path) in mount.layers.iter_mut().zip(mount.lowerdirs.iter_mut()) {
        if layer.role != "unknown" {
            continue;
        }
        if let Some(found) = engines.iter().find_map(|e| e.identify_layer(Path::new(&layer.path))) {
            *path = found.path.clone();
            *layer = found;
        }
    }
}

/// A mount's report, its lower layers named by `identify` (host path → layer) where it can.
pub fn mount_report_with(
    m: &OverlayMount,
    identify: impl Fn(&Path) -> Option<MountLayer>,
) -> crate::report::MountReport {
    let text = |p: &Path| p.to_string_lossy().into_owned();
    let layers: Vec<MountLayer> = m
        .layers
        .lower
        .iter()
        .map(|p| {
            identify(p).unwrap_or_else(|| MountLayer {
                path: text(p),
                cache_id: None,
                chain_id: None,
                diff_id: None,
                role: "unknown".into(),
            })
        })
        .collect();
    crate::report::MountReport {
        mountpoint: text(&m.entry.mount_point),
        mountpoints: m.mount_points.iter().map(|p| text(p)).collect(),
        device: m.device(),
        mount_id: m.entry.mount_id,
        upperdir: m.layers.upper.as_deref().map(text),
        workdir: m.layers.work.as_deref().map(text),
        lowerdirs: layers.iter().map(|l| l.path.clone()).collect(),
        data_only_lowerdirs: m.layers.data_only.iter().map(|p| text(p)).collect(),
        relative_paths: m.relative,
        layers,
    }
}

/// Index of the overlay mounts by upperdir.
pub fn mounts_by_upper(overlays: &[OverlayMount]) -> std::collections::HashMap<&Path, usize> {
    overlays.iter().enumerate().filter_map(|(i, m)| Some((m.layers.upper.as_deref()?, i))).collect()
}

/// An orphan candidate under a store, before it is sized.
#[derive(Debug)]
pub struct OrphanCandidate {
    /// Where this process reads it.
    pub path: std::path::PathBuf,
    /// The host's name for it.
    pub host_path: std::path::PathBuf,
    /// Its kind (`layer_dir`, `snapshot_dir`, …).
    pub kind: &'static str,
    /// Why it is one.
    pub detail: String,
}

/// An orphan candidate as found through its store's descriptor.
#[derive(Debug, Default)]
pub struct OrphanSize {
    /// Apparent bytes (a directory: everything below it, each inode once).
    pub apparent: u64,
    /// Allocated bytes.
    pub allocated: u64,
    /// When it last changed.
    pub modified: Option<std::time::SystemTime>,
    /// Entries below a directory that could not be read (the size is then a lower bound), and a few of them.
    pub errors: u64,
    /// What the first unreadable entries were.
    pub error_samples: Vec<String>,
}

/// Sizes the orphan candidate at `path` under `store` as every metadata file is reached: its status read
/// with no symlink followed in any component, a directory walked from a descriptor opened beneath the
/// store's root the same way (and, in a user's store, on the store's own mount), so a component swapped for
/// a link after the candidate was listed leads nowhere. Not found: it went away since it was listed.
pub fn size_orphan(
    store: &std::sync::Arc<crate::hostfs::StoreDir>,
    path: &Path,
) -> Result<OrphanSize, crate::hostfs::HostReadError> {
    let st = store.metadata(path)?;
    let modified = u64::try_from(st.st_mtime).ok().map(|secs| {
        std::time::UNIX_EPOCH + std::time::Duration::new(secs, u32::try_from(st.st_mtime_nsec).unwrap_or(0))
    });
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        let blocks = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
        return Ok(OrphanSize {
            apparent: u64::try_from(st.st_size).unwrap_or(0),
            allocated: blocks,
            modified,
            ..OrphanSize::default()
        });
    }
    let spec = LayerSpec {
        upperdir: Some(path.to_path_buf()),
        xattrs: crate::usage::OverlayXattrs::Trusted,
        beneath: Some(store.clone()),
        exclude: Vec::new(),
    };
    let walk = crate::walk::Walk::new(vec![spec], 0, None);
    walk.work();
    match walk.take(0) {
        Ok(u) => Ok(OrphanSize {
            apparent: u.apparent_bytes,
            allocated: u.allocated_bytes,
            modified,
            errors: u.errors,
            error_samples: u.error_samples,
        }),
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
            Err(crate::hostfs::HostReadError::NotFound { path: path.to_owned() })
        }
        Err(e) => Err(crate::hostfs::HostReadError::Io { path: path.to_owned(), source: e.source }),
    }
}

/// Sizes orphan candidates through `store` ([`size_orphan`]), holding back those changed within `min_age`
/// (a finding) and those a live mount uses (a finding: never an orphan).
pub fn settle_orphans(
    candidates: Vec<OrphanCandidate>,
    runtime: &str,
    store: &std::sync::Arc<crate::hostfs::StoreDir>,
    host: &HostView<'_>,
    findings: &mut Findings,
) -> Vec<Orphan> {
    let live = live_paths(host.mounts, host.overlays);
    let now = std::time::SystemTime::now();
    let mut out = Vec::new();
    for c in candidates {
        if in_use(&c.host_path, &live) {
            findings.warn(
                "layer_dir_unreferenced_in_use",
                format!("no {runtime} record names {}, but a live mount uses it: not an orphan", c.host_path.display()),
                Some(&c.host_path),
            );
            continue;
        }
        // The status first (a recent candidate is held back unwalked), then the size.
        let modified = match store.metadata(&c.path) {
            Ok(st) => u64::try_from(st.st_mtime).ok().map(|secs| {
                std::time::UNIX_EPOCH + std::time::Duration::new(secs, u32::try_from(st.st_mtime_nsec).unwrap_or(0))
            }),
            Err(e) if e.is_not_found() => continue, // gone since it was listed
            Err(e) => {
                findings.warn(
                    e.code("orphan_partly_unreadable"),
                    format!("cannot size an orphan: {e}"),
                    Some(&c.host_path),
                );
                continue;
            }
        };
        if modified.is_some_and(|t| now.duration_since(t).unwrap_or_default() < host.opts.orphan_min_age) {
            findings.info(
                "orphan_candidate_recent",
                format!(
                    "nothing names {}, but it changed within the last {} s: held back",
                    c.host_path.display(),
                    host.opts.orphan_min_age.as_secs()
                ),
                Some(&c.host_path),
            );
            continue;
        }
        let (apparent, allocated) = match size_orphan(store, &c.path) {
            Ok(u) => {
                if u.errors > 0 {
                    findings.warn(
                        "orphan_partly_unreadable",
                        format!("{} entries of an orphan could not be read, so its size is a lower bound", u.errors),
                        Some(&c.host_path),
                    );
                }
                (u.apparent, u.allocated)
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                findings.warn(
                    e.code("orphan_partly_unreadable"),
                    format!("cannot size an orphan: {e}"),
                    Some(&c.host_path),
                );
                (0, 0)
            }
        };
        out.push(Orphan {
            path: c.host_path.to_string_lossy().into_owned(),
            runtime: runtime.to_owned(),
            kind: c.kind.to_owned(),
            apparent_bytes: apparent,
            allocated_bytes: allocated,
            detail: c.detail,
            modified: modified.map(crate::scan::rfc3339),
        });
    }
    out.sort_by(|a, b| b.allocated_bytes.cmp(&a.allocated_bytes).then_with(|| a.path.cmp(&b.path)));
    out
}

/// Where a writable layer is, as the host names it.
#[derive(Debug, Clone, Copy)]
pub struct LayerPaths<'a> {
    /// The engine's name for the layer's directory.
    pub cache_id: &'a str,
    /// The layer's directory.
    pub layer_dir: &'a Path,
    /// Its upperdir.
    pub upperdir: &'a Path,
    /// Its workdir.
    pub workdir: &'a Path,
}

/// A writable layer's report from its measured usage, with the findings a walk can raise.
pub fn writable_report(
    paths: LayerPaths<'_>,
    lowerdirs: Vec<String>,
    usage: Result<crate::usage::WritableUsage, crate::usage::UsageError>,
    engine_bytes: fn(&crate::usage::WritableUsage) -> u64,
    who: &str,
    findings: &mut Findings,
) -> crate::report::WritableReport {
    let upperdir = paths.upperdir;
    let usage = match usage {
        Ok(u) => u,
        Err(e) => {
            let missing = e.source.kind() == std::io::ErrorKind::NotFound;
            findings.error(
                if missing { "writable_layer_missing" } else { "writable_layer_unreadable" },
                format!("container {who}: {e}"),
                Some(upperdir),
            );
            crate::usage::WritableUsage { errors: 1, ..Default::default() }
        }
    };
    if usage.errors > 0 && !usage.error_samples.is_empty() {
        findings.warn(
            "writable_layer_partly_unreadable",
            format!(
                "container {who}: {} entries could not be read; first: {}",
                usage.errors,
                usage.error_samples.join("; ")
            ),
            Some(upperdir),
        );
    }
    for f in usage.top_files.iter().filter(|f| f.path_not_utf8) {
        findings.warn(
            "path_not_utf8",
            format!("container {who}: a large file's name is not UTF-8; it is shown lossily as {}", f.path),
            Some(upperdir),
        );
    }
    if crate::bytes::is_capped(usage.apparent_bytes) || crate::bytes::is_capped(usage.allocated_bytes) {
        findings.warn(
            "size_capped",
            format!(
                "container {who}: the writable layer's files add up to {} bytes or more (sparse files claim up to \
                 that each); the figure is held there instead of wrapping",
                crate::bytes::BYTES_CAP
            ),
            Some(upperdir),
        );
    }
    if usage.mount_points > 0 {
        findings.info(
            "writable_layer_has_mount_points",
            format!(
                "container {who}: {} mount point(s) inside the writable layer were not crossed",
                usage.mount_points
            ),
            Some(upperdir),
        );
    }
    crate::report::WritableReport {
        cache_id: paths.cache_id.to_owned(),
        layer_dir: paths.layer_dir.to_string_lossy().into_owned(),
        upperdir: upperdir.to_string_lossy().into_owned(),
        workdir: paths.workdir.to_string_lossy().into_owned(),
        mergeddir: paths.layer_dir.join("merged").to_string_lossy().into_owned(),
        lowerdirs,
        engine_bytes: engine_bytes(&usage),
        usage,
        copy_ups: None,
        shadowed: None,
        nested_engines: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::size_orphan;
    use crate::hostfs::{HostReadError, StoreDir};
    use std::os::unix::fs::symlink;
    use std::path::Path;

    #[test]
    fn an_orphan_is_sized_beneath_its_store_never_through_a_link() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (store, outside) = (tmp.path().join("store"), tmp.path().join("outside"));
        std::fs::create_dir_all(store.join("overlay/real/diff")).expect("mkdir");
        std::fs::write(store.join("overlay/real/diff/f"), vec![b'x'; 5000]).expect("write");
        std::fs::create_dir_all(outside.join("diff")).expect("mkdir");
        std::fs::write(outside.join("diff/big"), vec![b'y'; 100_000]).expect("write");
        // A candidate swapped for a link after it was listed, and a link in a component above one.
        symlink(&outside, store.join("overlay/swapped")).expect("symlink");
        symlink(&outside, store.join("linked")).expect("symlink");
        std::fs::write(store.join("overlay/short"), "").expect("write");
        let dir = std::sync::Arc::new(StoreDir::open(&store).expect("open"));

        let real = size_orphan(&dir, &store.join("overlay/real")).expect("sized");
        assert_eq!(real.apparent, 5000);
        assert!(real.modified.is_some() && real.errors == 0);
        // The link as a file of its own (a short link is one), never what it points to.
        let swapped = size_orphan(&dir, &store.join("overlay/swapped")).expect("the link itself");
        assert!(swapped.apparent < 1000, "{swapped:?}");
        for p in ["linked/diff", "overlay/swapped/diff", "../outside"] {
            match size_orphan(&dir, &store.join(p)) {
                Err(HostReadError::Refused { .. }) => {}
                other => panic!("{p}: {other:?}"),
            }
        }
        assert!(size_orphan(&dir, Path::new("overlay/gone")).is_err_and(|e| e.is_not_found()));
        assert_eq!(size_orphan(&dir, Path::new("overlay/short")).expect("file").apparent, 0);
    }
}

//! The audit of one host: reads the mount table and the Docker data root, measures every writable layer,
//! and joins them into a [`Report`]. This is where mount entries meet layer directories; it decides nothing
//! about where the report goes.

use crate::docker::nested::{nested_overlays, nested_roots, open_nested, NestedRoot};
use crate::docker::{DockerRoot, DockerStore, StoreError};
use crate::engine::{next_usage, Engine, HostView, LayerSpec, Usages};
use crate::finding::{Findings, Severity};
pub use crate::hostfs::under_root;
use crate::mount_table::{read_mount_table, LayerAnchors, OverlayMount};
use crate::report::*;
use crate::usage::{OverlayXattrs, UsageError, WritableUsage};
use crate::walk::{worker_threads, Walk};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What to audit.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Prefix under which the host's filesystem is visible (`/`, or `/host` for an agent in a container).
    pub root: PathBuf,
    /// The host's proc directory as the host names it (`/proc`); read under `root`.
    pub proc_dir: PathBuf,
    /// The Docker data root as the host names it (`/var/lib/docker`); read under `root`.
    pub docker_root: PathBuf,
    /// When false, a missing data root is only noted (the default root on a host without Docker); when
    /// true (the user named it) it is an error.
    pub docker_root_required: bool,
    /// Walker threads; 0 means [`crate::walk::worker_threads`]'s default (3 per CPU up to 16, never fewer than one per CPU).
    pub threads: usize,
    /// Storage changed more recently than this is not called an orphan: it may belong to a pull, build or
    /// removal in progress.
    pub orphan_min_age: Duration,
    /// Largest files to list per writable layer (`writable.top_files`); 0 for none.
    pub top_files: usize,
    /// containers-storage roots (Podman, CRI-O) as the host names them; `None`: the defaults that exist
    /// (`/var/lib/containers/storage` and rootless stores under `/root` and `/home/*`). Named roots must exist.
    pub podman_roots: Option<Vec<PathBuf>>,
    /// containerd roots as the host names them; `None`: the defaults that exist (`/var/lib/containerd` and
    /// `<docker_root>/containerd/daemon`). Named roots must exist.
    pub containerd_roots: Option<Vec<PathBuf>>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            root: PathBuf::from("/"),
            proc_dir: PathBuf::from("/proc"),
            docker_root: PathBuf::from("/var/lib/docker"),
            docker_root_required: false,
            threads: 0,
            orphan_min_age: Duration::from_secs(600),
            top_files: 0,
            podman_roots: None,
            containerd_roots: None,
        }
    }
}

/// Why a scan could not produce a report at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The Docker data root could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A store named on the command line (`--podman-root`, `--containerd-root`) could not be read.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineRootError),
}

/// Writable-layer usages known without a walk (the agent's incremental state): for each layer of the
/// scan, its usage, or `None` to have it walked.
pub trait KnownUsages {
    /// One entry per layer of `layers`, in order.
    fn known(&mut self, layers: &[LayerSpec]) -> Vec<Option<Result<WritableUsage, UsageError>>>;
}

/// Audits the host.
pub fn scan(opts: &ScanOptions) -> Result<Report, ScanError> {
    scan_with(opts, None)
}

/// Audits the host, taking the usages `known` has instead of walking those layers.
pub fn scan_with(opts: &ScanOptions, known: Option<&mut dyn KnownUsages>) -> Result<Report, ScanError> {
    let started = Instant::now();
    let generated_at = rfc3339(SystemTime::now());
    let mut findings = Findings::default();

    let table = read_mount_table(&under_root(&opts.root, &opts.proc_dir), &mut findings);

    let others = crate::engine::open_engines(opts, &mut findings)?;
    let root = DockerRoot { path: under_root(&opts.root, &opts.docker_root), host_path: opts.docker_root.clone() };
    let store = match DockerStore::open(root, &mut findings) {
        Ok(s) => Some(s),
        Err(StoreError::NotFound { path }) if !opts.docker_root_required => {
            findings.info(
                "docker_root_missing",
                format!("no Docker data root at {}; only the mount table was audited", path.display()),
                Some(&path),
            );
            None
        }
        // Docker 29 keeps its images in containerd: the default root then holds no overlay2 store, and
        // the containerd store found elsewhere is the one to audit. A default root with another storage
        // driver, or left empty, is noted the same way: only a named root must be an overlay2 store.
        Err(e @ StoreError::NotOverlay2 { .. }) if !opts.docker_root_required => {
            findings.info("docker_root_not_overlay2", e.to_string(), Some(&opts.docker_root));
            None
        }
        Err(e) => return Err(e.into()),
    };

    // Engines nested in the store's containers (Docker-in-Docker): stores of their own, named with their owner.
    let opened: Vec<PathBuf> = others.iter().map(|e| under_root(&opts.root, Path::new(&e.source().root))).collect();
    let nested: Vec<(NestedRoot, Box<dyn Engine>)> = store
        .as_ref()
        .map(|s| nested_roots(s, &opts.root, &opened))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| open_nested(&n, &opts.root, &mut findings).map(|s| (n, s)))
        .collect();
    let mut engines: Vec<&dyn Engine> = Vec::new();
    if let Some(s) = &store {
        engines.push(s);
    }
    engines.extend(nested.iter().map(|(_, s)| s.as_ref()));
    engines.extend(others.iter().map(|e| e.as_ref()));
    // Overlays are read once the stores are known: their directories anchor relative layer paths that
    // no copy of a mount anchors on its own.
    let exists = |p: &Path| under_root(&opts.root, p).symlink_metadata().is_ok();
    let anchors =
        LayerAnchors { dirs: engines.iter().filter_map(|e| e.relative_layer_base()).collect(), exists: &exists };
    let mut overlays: Vec<OverlayMount> =
        table.as_ref().map(|t| t.overlays(&anchors, &mut findings)).unwrap_or_default();
    for (n, _) in &nested {
        for o in nested_overlays(n, &under_root(&opts.root, &opts.proc_dir), &opts.root, &mut findings) {
            // The same superblock may be visible here too (propagated): it is still one mount.
            match overlays.iter_mut().find(|x| x.entry.device.is_some() && x.entry.device == o.entry.device) {
                Some(x) => x.mount_points.extend(o.mount_points),
                None => overlays.push(o),
            }
        }
    }
    let entries = table.as_ref().map_or(&[][..], |t| t.entries.as_slice());
    let host = HostView { opts, mounts: entries, overlays: &overlays };

    let mut containers = Vec::new();
    let mut images = Vec::new();
    let mut owned: HashSet<usize> = HashSet::new();
    let (mut orphans, mut image_bytes) = (Vec::new(), 0);
    // Every store's writable layers are walked by one pool in the background while this thread joins
    // the records, taking each layer's usage as it is needed: the metadata work costs no wall time beyond
    // the walk's, and many small layers of several stores keep every walker busy.
    let plans: Vec<Vec<LayerSpec>> = engines.iter().map(|e| e.writable_layers()).collect();
    let counts: Vec<usize> = plans.iter().map(Vec::len).collect();
    let mut specs: Vec<LayerSpec> = plans.into_iter().flatten().collect();
    // A nested engine's data root in a writable layer is measured as that engine: the layer's walk skips it.
    for (n, _) in nested.iter().filter(|(n, _)| n.in_writable_layer()) {
        let path = under_root(&opts.root, &n.host_path);
        for spec in &mut specs {
            let rel = spec.upperdir.as_deref().and_then(|u| path.strip_prefix(u).ok());
            if let Some(rel) = rel.filter(|r| !r.as_os_str().is_empty()) {
                spec.exclude.push(rel.to_path_buf());
            }
        }
    }
    let mut known = known.map(|k| k.known(&specs)).unwrap_or_default();
    known.resize_with(specs.len(), || None);
    // Index into the walk of each layer that is walked.
    let mut walked = Vec::with_capacity(specs.len());
    let mut to_walk = Vec::new();
    for (spec, k) in specs.into_iter().zip(&known) {
        walked.push(k.is_none().then_some(to_walk.len()));
        if k.is_none() {
            to_walk.push(spec);
        }
    }
    let walk = Walk::new(to_walk, opts.top_files, None);
    std::thread::scope(|s| {
        // As many workers as asked for, however few the layers: one big layer's subtrees are handed to idle
        // workers.
        walk.spawn_workers(s, if walk.is_empty() { 0 } else { worker_threads(opts.threads) });
        // Orphans need no usage: looked for first, while the walk is in its early layers.
        for engine in &engines {
            orphans.extend(engine.orphans(&host, &mut findings));
        }
        let mut first = 0;
        for (engine, n) in engines.iter().zip(counts) {
            let mut usages = (first..first + n).map(|i| match known.get_mut(i).and_then(Option::take) {
                Some(u) => u,
                None => walk.take(walked.get(i).copied().flatten().unwrap_or(usize::MAX)),
            });
            first += n;
            let mine = engine.containers(&host, &mut usages, &mut owned, &mut findings);
            let (imgs, bytes) = engine.images(&mine, &mut findings);
            images.extend(imgs);
            image_bytes = crate::bytes::add(image_bytes, bytes);
            containers.extend(mine);
        }
    });
    for (n, _) in nested.iter().filter(|(n, _)| n.in_writable_layer()) {
        let owner = containers.iter_mut().find(|c| c.nested_in.is_none() && c.id == n.nested_in.container_id);
        if let Some(w) = owner.and_then(|c| c.writable.as_mut()) {
            w.nested_engines.push(n.host_path.to_string_lossy().into_owned());
        }
    }
    if engines.len() > 1 {
        containers.sort_by(|a, b| {
            let size = |c: &ContainerReport| c.writable.as_ref().map_or(0, |w| w.usage.apparent_bytes);
            size(b).cmp(&size(a)).then_with(|| a.name.cmp(&b.name)).then_with(|| a.id.cmp(&b.id))
        });
        orphans.sort_by(|a, b| b.allocated_bytes.cmp(&a.allocated_bytes).then_with(|| a.path.cmp(&b.path)));
    }
    let unowned_mounts: Vec<MountReport> = overlays
        .iter()
        .enumerate()
        .filter(|(i, _)| !owned.contains(i))
        .map(|(_, m)| {
            let mut r = mount_report(m, store.as_ref(), &mut findings);
            crate::engine::identify_unknown_layers(&mut r, &engines);
            r
        })
        .collect();

    let findings = findings.into_vec();
    let mut by_severity: BTreeMap<String, u64> = BTreeMap::new();
    for s in [Severity::Error, Severity::Warning, Severity::Info] {
        by_severity.insert(severity_word(s).to_owned(), findings.iter().filter(|f| f.severity == s).count() as u64);
    }
    let totals = Totals {
        containers: containers.len() as u64,
        containers_running: containers.iter().filter(|c| c.state == "running").count() as u64,
        writable_apparent_bytes: crate::bytes::sum(
            containers.iter().filter_map(|c| c.writable.as_ref()).map(|w| w.usage.apparent_bytes),
        ),
        writable_allocated_bytes: crate::bytes::sum(
            containers.iter().filter_map(|c| c.writable.as_ref()).map(|w| w.usage.allocated_bytes),
        ),
        images: images.len() as u64,
        overlay_mounts: overlays.len() as u64,
        overlay_mount_points: overlays.iter().map(|m| m.mount_points.len() as u64).sum(),
        unowned_mounts: unowned_mounts.len() as u64,
        image_bytes,
        orphans: orphans.len() as u64,
        orphan_apparent_bytes: crate::bytes::sum(orphans.iter().map(|o| o.apparent_bytes)),
        orphan_allocated_bytes: crate::bytes::sum(orphans.iter().map(|o| o.allocated_bytes)),
        log_bytes: crate::bytes::sum(containers.iter().filter_map(|c| c.log_bytes)),
        findings: by_severity,
        ..Totals::default()
    };
    let mut report = Report {
        schema: REPORT_SCHEMA.to_owned(),
        generated_at,
        host: HostInfo { name: host_name() },
        sources: Sources {
            mount_table: table.as_ref().map(|t| t.source.to_string_lossy().into_owned()),
            docker_root: opts.docker_root.to_string_lossy().into_owned(),
            docker_found: store.is_some(),
            engines: engines.iter().map(|e| e.source()).collect(),
        },
        containers,
        images,
        unowned_mounts,
        orphans,
        findings,
        totals,
        scan_duration_ms: started.elapsed().as_millis() as u64,
        volumes: Vec::new(),
        build_cache: Vec::new(),
        pods: Vec::new(),
    };
    crate::kubernetes::attribute(&mut report);
    Ok(report)
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

/// Every container id the data root knows, by its record or its read-write layer, in the order
/// [`join_containers`] reports them.
fn container_ids(store: &DockerStore) -> Vec<&String> {
    let mut ids: Vec<&String> = store.containers.keys().chain(store.layerdb.rw_layers.keys()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The upperdirs of the containers [`join_containers`] reports, in its order (`None`: no read-write layer).
pub(crate) fn docker_writable_layers(store: &DockerStore) -> Vec<LayerSpec> {
    container_ids(store)
        .into_iter()
        .map(|id| LayerSpec {
            upperdir: store.layerdb.rw_layers.get(id).map(|rw| store.layer_dir(&rw.mount_id).join("diff")),
            xattrs: OverlayXattrs::Trusted,
            beneath: Some(store.dir.clone()),
            exclude: Vec::new(),
        })
        .collect()
}

/// Every container the data root knows, by its record or its read-write layer, joined with its live mount
/// and with its writable layer's usage from `usages` (in the order of [`docker_writable_layers`]).
pub(crate) fn join_containers(
    store: &DockerStore,
    overlays: &[OverlayMount],
    usages: Usages<'_>,
    owned: &mut HashSet<usize>,
    findings: &mut Findings,
) -> Vec<ContainerReport> {
    let ids = container_ids(store);

    // Index live overlay mounts by their upperdir so each container finds its own in one look-up.
    let mut by_upper: HashMap<&Path, usize> = HashMap::new();
    for (i, m) in overlays.iter().enumerate() {
        if let Some(u) = &m.layers.upper {
            by_upper.insert(u.as_path(), i);
        }
    }

    let mut out = Vec::with_capacity(ids.len());
    // Each usage is taken as late as it can be, so the join of a container's records overlaps its walk.
    for id in ids {
        let record = store.containers.get(id);
        let rw = store.layerdb.rw_layers.get(id);
        let config = match record {
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => None, // already a finding
            None => {
                findings.warn(
                    "container_record_missing",
                    format!("read-write layer of container {id} has no container record (containers/{id}/)"),
                    rw.map(|r| r.path.as_path()),
                );
                None
            }
        };
        let image_id = config.map(|c| c.image.clone()).unwrap_or_default();
        let mut c = ContainerReport {
            id: id.clone(),
            name: config.map(|c| c.name.trim_start_matches('/').to_owned()).unwrap_or_default(),
            runtime: "docker".to_owned(),
            namespace: None,
            state: config.map(|c| c.state.word().to_owned()).unwrap_or_else(|| "unknown".to_owned()),
            created: config.and_then(|c| c.created.clone()),
            image: ImageRef {
                tags: store.tags.get(&image_id).cloned().unwrap_or_default(),
                name: config.map(|c| c.config.image.clone()).unwrap_or_default(),
                id: image_id,
            },
            labels: config.and_then(|c| c.config.labels.clone()).unwrap_or_default(),
            writable: None,
            init_layer: None,
            layers: Vec::new(),
            mount: None,
            log_path: config.and_then(|c| c.log_path.clone()).filter(|p| !p.is_empty()),
            log_bytes: None,
            kubernetes: None,
            nested_in: store.nested_in.clone(),
        };
        let Some(rw) = rw else {
            findings.error(
                "container_rw_layer_missing",
                format!("container {id} has no read-write layer in the layer database"),
                Some(&store.root.path.join("image/overlay2/layerdb/mounts").join(id)),
            );
            // No read-write layer, nothing was walked: skip its (empty) usage to stay in step.
            let _ = next_usage(usages);
            out.push(c);
            continue;
        };
        c.init_layer = rw.init_id.clone().map(|cache_id| InitLayer { cache_id });
        if let Some(top) = &rw.parent {
            let chain = store.layerdb.chain(top, findings);
            c.layers = chain
                .iter()
                .map(|l| LayerReport {
                    cache_id: l.cache_id.clone(),
                    chain_id: l.chain_id.clone(),
                    diff_id: l.diff_id.clone(),
                    size_bytes: l.size,
                })
                .collect();
            if let Some(img) = store.images.get(&c.image.id) {
                let diffs: Vec<&str> = chain.iter().map(|l| l.diff_id.as_str()).collect();
                if diffs != img.diff_ids.iter().map(String::as_str).collect::<Vec<_>>() {
                    findings.error(
                        "container_layers_differ_from_image",
                        format!("container {id}'s layer chain does not carry the DiffIDs of its image {}", img.id),
                        Some(&rw.path),
                    );
                }
            }
        }
        let lowerdirs = match store.lower_chain(&rw.mount_id) {
            Ok(l) => l.unwrap_or_default(),
            Err(why) => {
                findings.error("lower_file_unresolved", why, Some(&store.layer_dir(&rw.mount_id)));
                Vec::new()
            }
        };
        let host_dir = store.host_layer_dir(&rw.mount_id);
        let (host_upper, host_work) = (host_dir.join("diff"), host_dir.join("work"));
        let paths = crate::engine::LayerPaths {
            cache_id: &rw.mount_id,
            layer_dir: &host_dir,
            upperdir: &host_upper,
            workdir: &host_work,
        };
        let lower_strings = lowerdirs.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        // Docker's own figure (SizeRw) is the apparent size.
        let writable = crate::engine::writable_report(
            paths,
            lower_strings,
            next_usage(usages),
            |u| u.apparent_bytes,
            id,
            findings,
        );
        let live = by_upper.get(host_dir.join("diff").as_path()).copied();
        if let Some(i) = live {
            owned.insert(i);
            let m = mount_report(&overlays[i], Some(store), findings);
            let on_disk: Vec<String> = lowerdirs.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if m.lowerdirs != on_disk {
                findings.error(
                    "mount_lower_chain_mismatch",
                    format!(
                        "container {id}: the live mount's lower layers differ from the on-disk lower file ({} vs {} layers)",
                        m.lowerdirs.len(),
                        on_disk.len()
                    ),
                    Some(&host_dir.join("lower")),
                );
            }
            c.mount = Some(m);
        } else if c.state == "running" {
            findings.warn(
                "running_container_not_mounted",
                format!("container {id} is recorded as running but its writable layer is not mounted"),
                Some(&host_dir.join("merged")),
            );
        }
        c.writable = Some(writable);
        out.push(c);
    }
    out.sort_by(|a, b| {
        let size = |c: &ContainerReport| c.writable.as_ref().map_or(0, |w| w.usage.apparent_bytes);
        size(b).cmp(&size(a)).then_with(|| a.name.cmp(&b.name)).then_with(|| a.id.cmp(&b.id))
    });
    out
}

/// A mount's report, its lower layers identified through `store` where it knows them.
pub(crate) fn mount_report(m: &OverlayMount, store: Option<&DockerStore>, findings: &mut Findings) -> MountReport {
    let text = |p: &Path, findings: &mut Findings| {
        if p.to_str().is_none() {
            findings.warn("path_not_utf8", "a layer path is not UTF-8; it is shown lossily", Some(p));
        }
        p.to_string_lossy().into_owned()
    };
    let mut layers = Vec::new();
    let mut lowerdirs = Vec::new();
    let mut unresolved: Vec<&Path> = Vec::new();
    for p in &m.layers.lower {
        let cache_id = store.and_then(|s| s.cache_id_of(p));
        let resolved = match (&cache_id, store) {
            (Some(c), Some(s)) => s.host_layer_dir(c).join("diff"),
            _ => p.clone(),
        };
        if cache_id.is_none() && store.is_some_and(|s| p.starts_with(s.root.host_path.join("overlay2"))) {
            unresolved.push(p);
        }
        let image_layer = cache_id
            .as_ref()
            .and_then(|c| store?.cache_to_chain.get(c))
            .and_then(|chain| store?.layerdb.layers.get(chain));
        let role = match (&cache_id, image_layer) {
            (_, Some(_)) => "image",
            (Some(c), None) if c.ends_with("-init") => "init",
            (Some(_), None) => "container",
            (None, None) => "unknown",
        };
        let path = text(&resolved, findings);
        lowerdirs.push(path.clone());
        layers.push(MountLayer {
            path,
            chain_id: image_layer.map(|l| l.chain_id.clone()),
            diff_id: image_layer.map(|l| l.diff_id.clone()),
            cache_id,
            role: role.to_owned(),
        });
    }
    if let Some(first) = unresolved.first() {
        // One finding for the mount, however many of its layers are missing.
        let samples: Vec<String> = unresolved.iter().take(3).map(|p| p.to_string_lossy().into_owned()).collect();
        findings.error(
            "lowerdir_unresolved",
            format!(
                "{} of the {} lower layers of the mount at {} do not resolve to a layer directory of the data root; e.g. {}",
                unresolved.len(),
                m.layers.lower.len(),
                m.entry.mount_point.display(),
                samples.join(", ")
            ),
            Some(first),
        );
    }
    MountReport {
        mountpoint: text(&m.entry.mount_point, findings),
        mountpoints: m.mount_points.iter().map(|p| text(p, findings)).collect(),
        device: m.device(),
        mount_id: m.entry.mount_id,
        upperdir: m.layers.upper.as_deref().map(|p| text(p, findings)),
        workdir: m.layers.work.as_deref().map(|p| text(p, findings)),
        lowerdirs,
        data_only_lowerdirs: m.layers.data_only.iter().map(|p| text(p, findings)).collect(),
        relative_paths: m.relative,
        layers,
    }
}

/// This host's name (the kernel's, as `hostname` prints it), or empty when it cannot be read.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Formats a time as RFC 3339 UTC with seconds (`2026-11-28T16:33:02Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_matches_known_instants() {
        // Values checked with `date -u -d @N +%Y-%m-%dT%H:%M:%SZ`.
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_883_582)), "2026-11-28T16:33:02Z");
    }
}

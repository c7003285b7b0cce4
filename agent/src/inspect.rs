//! `ovlaudit inspect CONTAINER|IMAGE`: one container's or image's overlay stack as a tree, writable layer
//! on top, then the init layer, then the image's layers top first, each with its identity (cache id,
//! DiffID, ChainID), its size, who shares it, its largest files, its copy-ups and what it hides of the
//! layers below; then what can be done about the space. The host is read by the collector; this module
//! picks the target, asks for each layer's analysis and lays it out.

use crate::render::{safe, short_id};
use crate::units::human_bytes;
use anyhow::{bail, Context};
use collector::copyup::{analyze_layer, Budget, LayerAnalysis};
use collector::docker::{DockerRoot, DockerStore};
use collector::report::{ContainerReport, ImageReport, Report};
use collector::scan::under_root;
use collector::usage::OverlayXattrs;
use serde::Serialize;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The schema name of `inspect --format json`.
pub const INSPECT_SCHEMA: &str = "ovlaudit.inspect/v1";

/// What `inspect --format json` writes.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Always [`INSPECT_SCHEMA`].
    pub schema: &'static str,
    /// `container` or `image`.
    pub kind: &'static str,
    /// Container id or image id.
    pub id: String,
    /// Container name, or the image's first tag (empty when it has none).
    pub name: String,
    /// For a container: its state.
    pub state: Option<String>,
    /// For a container: its image id; for an image: its tags.
    pub image: Option<String>,
    /// Image tags.
    pub tags: Vec<String>,
    /// For a running container: where its overlay is mounted.
    pub mountpoint: Option<String>,
    /// For a container: its json-file log's bytes.
    pub log_bytes: Option<u64>,
    /// The stack, top first.
    pub layers: Vec<StackLayer>,
    /// Sums over the stack.
    pub totals: StackTotals,
    /// What can be done about the space, for people.
    pub advice: Vec<String>,
}

/// One layer of the stack.
#[derive(Debug, Serialize)]
pub struct StackLayer {
    /// `writable`, `init` or `image`.
    pub role: &'static str,
    /// overlay2 directory name.
    pub cache_id: Option<String>,
    /// DiffID, for an image layer.
    pub diff_id: Option<String>,
    /// ChainID, for an image layer.
    pub chain_id: Option<String>,
    /// The layer's directory as the host names it.
    pub path: String,
    /// The size the engine recorded (image layers) or counts (`SizeRw`, writable layer).
    pub size_bytes: Option<u64>,
    /// Images whose chain holds this layer (tags, or short ids when untagged), hidden build steps aside.
    pub shared_by_images: Vec<String>,
    /// Hidden build steps (untagged images with children) whose chain holds this layer.
    pub shared_by_build_steps: u64,
    /// Containers built on this layer (names).
    pub shared_by_containers: Vec<String>,
    /// The layer over the layers below it; null when it could not be read.
    pub analysis: Option<LayerAnalysis>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// Sums over a stack.
#[derive(Debug, Default, Serialize)]
pub struct StackTotals {
    /// Bytes of the layers' own files.
    pub bytes: u64,
    /// Copied-up bytes identical to the lower copy, over all layers.
    pub copy_up_identical_bytes: u64,
    /// Copied-up bytes not compared (budget).
    pub copy_up_unverified_bytes: u64,
    /// Lower bytes made unreachable by a higher layer (overwritten or hidden), still on disk.
    pub wasted_bytes: u64,
}

/// Finds `target` in the report (and the Docker store for image layers) and analyses its stack.
pub fn inspect(
    report: &Report,
    store: Option<&DockerStore>,
    root: &Path,
    target: &str,
    budget: &Budget,
) -> anyhow::Result<Inspection> {
    match find(report, target)? {
        Target::Container(c) => Ok(container_stack(report, c, root, budget)),
        Target::Image(i) => {
            let Some(store) = store else {
                bail!("image {target} found, but no Docker data root to read its layers from")
            };
            image_stack(report, i, store, root, budget)
        }
    }
}

enum Target<'r> {
    Container(&'r ContainerReport),
    Image(&'r ImageReport),
}

/// A container by id, name, unique id prefix or mount point; else an image by id, tag (`name` means
/// `name:latest`) or unique id prefix.
fn find<'r>(report: &'r Report, target: &str) -> anyhow::Result<Target<'r>> {
    let t = target.trim_start_matches('/');
    let by_path = |c: &&ContainerReport| {
        let mount =
            c.mount.as_ref().is_some_and(|m| m.mountpoint == target || m.mountpoints.iter().any(|p| p == target));
        mount || c.writable.as_ref().is_some_and(|w| w.mergeddir == target)
    };
    if let Some(c) =
        report.containers.iter().find(|c| c.id == target || c.name == t || (target.starts_with('/') && by_path(c)))
    {
        return Ok(Target::Container(c));
    }
    let bare = target.trim_start_matches("sha256:");
    let tagged = if target.contains(':') { target.to_owned() } else { format!("{target}:latest") };
    if let Some(i) = report
        .images
        .iter()
        .find(|i| i.id.trim_start_matches("sha256:") == bare || i.tags.iter().any(|g| *g == target || *g == tagged))
    {
        return Ok(Target::Image(i));
    }
    if bare.len() >= 3 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        let cs: Vec<&ContainerReport> = report.containers.iter().filter(|c| c.id.starts_with(bare)).collect();
        let is: Vec<&ImageReport> =
            report.images.iter().filter(|i| i.id.trim_start_matches("sha256:").starts_with(bare)).collect();
        match (cs.as_slice(), is.as_slice()) {
            ([c], []) => return Ok(Target::Container(c)),
            ([], [i]) => return Ok(Target::Image(i)),
            ([], []) => {}
            _ => {
                let names: Vec<String> = cs
                    .iter()
                    .map(|c| format!("container {} ({})", short_id(&c.id), safe(&c.name)))
                    .chain(is.iter().map(|i| format!("image {}", short_id(&i.id))))
                    .collect();
                bail!("{target} is the prefix of more than one id: {}", names.join(", "));
            }
        }
    }
    bail!("no container or image named {target} (looked for an id, unique id prefix, name, tag and mount point)")
}

fn sharers(report: &Report, chain_id: &str) -> (Vec<String>, Vec<String>, u64) {
    let users = || report.images.iter().filter(|i| i.layers.iter().any(|l| l == chain_id));
    let images = users()
        .filter(|i| !i.intermediate)
        .map(|i| i.tags.first().cloned().unwrap_or_else(|| short_id(&i.id)))
        .collect();
    let steps = users().filter(|i| i.intermediate).count() as u64;
    let containers = report
        .containers
        .iter()
        .filter(|c| c.layers.iter().any(|l| l.chain_id == chain_id))
        .map(|c| if c.name.is_empty() { short_id(&c.id) } else { c.name.clone() })
        .collect();
    (images, containers, steps)
}

fn analyse(root: &Path, dir: &str, below: &[String], budget: &Budget) -> (Option<LayerAnalysis>, Option<String>) {
    let lowers: Vec<PathBuf> = below.iter().map(|l| under_root(root, Path::new(l))).collect();
    match analyze_layer(&under_root(root, Path::new(dir)), &lowers, OverlayXattrs::Trusted, budget) {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

fn container_stack(report: &Report, c: &ContainerReport, root: &Path, budget: &Budget) -> Inspection {
    let mut layers = Vec::new();
    if let Some(w) = &c.writable {
        let (analysis, error) = analyse(root, &w.upperdir, &w.lowerdirs, budget);
        layers.push(StackLayer {
            role: "writable",
            cache_id: Some(w.cache_id.clone()),
            diff_id: None,
            chain_id: None,
            path: w.upperdir.clone(),
            size_bytes: Some(w.usage.apparent_bytes),
            shared_by_images: Vec::new(),
            shared_by_build_steps: 0,
            shared_by_containers: Vec::new(),
            analysis,
            error,
        });
        // The on-disk lower chain: init layer first (when there is one), then the image's layers top first.
        let has_init = c.init_layer.is_some() && w.lowerdirs.len() == c.layers.len() + 1;
        for (k, dir) in w.lowerdirs.iter().enumerate() {
            let image_layer = if has_init { k.checked_sub(1) } else { Some(k) }
                .and_then(|j| c.layers.len().checked_sub(j + 1))
                .and_then(|j| c.layers.get(j));
            let (analysis, error) = analyse(root, dir, &w.lowerdirs[k + 1..], budget);
            let (images, containers, steps) = image_layer.map(|l| sharers(report, &l.chain_id)).unwrap_or_default();
            layers.push(StackLayer {
                role: if image_layer.is_some() { "image" } else { "init" },
                cache_id: match image_layer {
                    Some(l) => Some(l.cache_id.clone()),
                    None => c.init_layer.as_ref().map(|i| i.cache_id.clone()),
                },
                diff_id: image_layer.map(|l| l.diff_id.clone()),
                chain_id: image_layer.map(|l| l.chain_id.clone()),
                path: dir.clone(),
                size_bytes: image_layer.and_then(|l| l.size_bytes),
                shared_by_images: images,
                shared_by_build_steps: steps,
                shared_by_containers: containers,
                analysis,
                error,
            });
        }
    }
    let image = report.images.iter().find(|i| i.id == c.image.id);
    let mut out = Inspection {
        schema: INSPECT_SCHEMA,
        kind: "container",
        id: c.id.clone(),
        name: c.name.clone(),
        state: Some(c.state.clone()),
        image: Some(c.image.id.clone()),
        tags: image.map(|i| i.tags.clone()).unwrap_or_else(|| c.image.tags.clone()),
        mountpoint: c.mount.as_ref().map(|m| m.mountpoint.clone()),
        log_bytes: c.log_bytes,
        layers,
        totals: StackTotals::default(),
        advice: Vec::new(),
    };
    finish(&mut out);
    out
}

fn image_stack(
    report: &Report,
    i: &ImageReport,
    store: &DockerStore,
    root: &Path,
    budget: &Budget,
) -> anyhow::Result<Inspection> {
    // Base first, as the image lists them; each layer's directory from the layer database.
    let mut dirs = Vec::new();
    for chain in &i.layers {
        let l = store
            .layerdb
            .layers
            .get(chain)
            .with_context(|| format!("layer {chain} of image {} is not in the layer database", i.id))?;
        dirs.push((l, store.host_layer_dir(&l.cache_id).join("diff").to_string_lossy().into_owned()));
    }
    let mut layers = Vec::new();
    for k in (0..dirs.len()).rev() {
        let (l, dir) = &dirs[k];
        let below: Vec<String> = dirs[..k].iter().rev().map(|(_, d)| d.clone()).collect();
        let (analysis, error) = analyse(root, dir, &below, budget);
        let (images, containers, steps) = sharers(report, &l.chain_id);
        layers.push(StackLayer {
            role: "image",
            cache_id: Some(l.cache_id.clone()),
            diff_id: Some(l.diff_id.clone()),
            chain_id: Some(l.chain_id.clone()),
            path: dir.clone(),
            size_bytes: l.size,
            shared_by_images: images,
            shared_by_build_steps: steps,
            shared_by_containers: containers,
            analysis,
            error,
        });
    }
    let mut out = Inspection {
        schema: INSPECT_SCHEMA,
        kind: "image",
        id: i.id.clone(),
        name: i.tags.first().cloned().unwrap_or_default(),
        state: None,
        image: None,
        tags: i.tags.clone(),
        mountpoint: None,
        log_bytes: None,
        layers,
        totals: StackTotals::default(),
        advice: Vec::new(),
    };
    finish(&mut out);
    Ok(out)
}

/// Sums the stack and says what can be done.
fn finish(out: &mut Inspection) {
    let mut t = StackTotals::default();
    let (mut writable_identical, mut writable_shadowed, mut image_wasted) = (0, 0, 0);
    for l in &out.layers {
        let Some(a) = &l.analysis else { continue };
        t.bytes += a.bytes;
        t.copy_up_identical_bytes += a.copy_ups.identical_bytes;
        t.copy_up_unverified_bytes += a.copy_ups.unverified_bytes;
        t.wasted_bytes += a.wasted_bytes();
        match l.role {
            "writable" => {
                writable_identical += a.copy_ups.identical_bytes;
                writable_shadowed += a.shadowed.bytes;
            }
            _ => image_wasted += a.wasted_bytes(),
        }
    }
    let h = human_bytes;
    if writable_identical > 0 {
        out.advice.push(format!(
            "{} of the writable layer are byte-identical copies of image files (chown, chmod or touch): \
             recreating the container from its image drops them; doing that change in the image (COPY --chown, \
             RUN chown in the same step) keeps them from coming back",
            h(writable_identical)
        ));
    }
    if writable_shadowed > 0 {
        out.advice.push(format!(
            "the container deleted or hid {} of image files, still on disk in the image's layers: an image built \
             without them frees that once no container uses the old one",
            h(writable_shadowed)
        ));
    }
    if image_wasted > 0 {
        out.advice.push(format!(
            "the image's layers overwrite or delete {} of lower layers: deleting in the step that creates, or \
             squashing those steps, frees it",
            h(image_wasted)
        ));
    }
    if let Some(log) = out.log_bytes.filter(|&b| b > 0) {
        out.advice.push(format!(
            "the container's json-file log holds {} (outside the writable layer): set max-size/max-file",
            h(log)
        ));
    }
    if t.copy_up_unverified_bytes > 0 {
        out.advice.push(format!(
            "{} of copies were not compared (budget spent): raise --compare-budget to verify them",
            h(t.copy_up_unverified_bytes)
        ));
    }
    out.totals = t;
}

/// Writes the stack as a tree for people.
pub fn tree(out: &mut impl Write, s: &Inspection, exact: bool) -> io::Result<()> {
    let size = |n: u64| if exact { n.to_string() } else { human_bytes(n) };
    match s.kind {
        "container" => {
            writeln!(
                out,
                "container {} ({}), {}, image {}",
                safe(&s.name),
                short_id(&s.id),
                s.state.as_deref().unwrap_or("-"),
                s.tags.first().map(|t| safe(t)).unwrap_or_else(|| short_id(s.image.as_deref().unwrap_or("")))
            )?;
            if let Some(m) = &s.mountpoint {
                writeln!(out, "  mounted at {}", safe(m))?;
            }
        }
        _ => writeln!(
            out,
            "image {} ({})",
            if s.tags.is_empty() { "<none>".to_owned() } else { safe(&s.tags.join(", ")) },
            short_id(&s.id)
        )?,
    }
    let n = s.layers.len();
    for (k, l) in s.layers.iter().enumerate() {
        let last = k + 1 == n;
        let (branch, stem) = if last { ("└─", "   ") } else { ("├─", "│  ") };
        let id = match (l.role, &l.chain_id) {
            (_, Some(c)) => format!("chain {}", short_id(c)),
            (_, None) => match l.cache_id.as_deref() {
                Some(c) if c.ends_with("-init") => format!("{}-init", short_id(c)),
                Some(c) => short_id(c),
                None => String::new(),
            },
        };
        let own =
            l.analysis.as_ref().map_or("unreadable".to_owned(), |a| format!("{} in {} files", size(a.bytes), a.files));
        writeln!(out, "{branch} {:<8} {id}  {own}", l.role)?;
        let mut line = |text: String| writeln!(out, "{stem}    {text}");
        if let Some(d) = &l.diff_id {
            line(format!("diff {}  cache {}", short_id(d), l.cache_id.as_deref().map(short_id).unwrap_or_default()))?;
        }
        if !l.shared_by_images.is_empty() || !l.shared_by_containers.is_empty() {
            line(format!(
                "shared by {} image(s) {}, {} container(s)",
                l.shared_by_images.len(),
                safe(&abbreviate(&l.shared_by_images, 3)),
                l.shared_by_containers.len()
            ))?;
        }
        if let Some(e) = &l.error {
            line(format!("error: {}", safe(e)))?;
        }
        let Some(a) = &l.analysis else { continue };
        let c = &a.copy_ups;
        if c.files + c.dirs + c.symlinks > 0 {
            let mut text = format!(
                "copied up {} in {} files ({} identical, {} changed",
                size(c.bytes),
                c.files,
                size(c.identical_bytes),
                size(c.changed_bytes)
            );
            if c.unverified_files > 0 {
                text.push_str(&format!(", {} not compared", size(c.unverified_bytes)));
            }
            if c.metacopy_files > 0 {
                text.push_str(&format!(", {} metacopy files, no data", c.metacopy_files));
            }
            text.push_str(&format!("), {} dirs", c.dirs));
            line(text)?;
        }
        if a.whiteouts + a.opaque_dirs > 0 || a.shadowed.bytes > 0 {
            line(format!(
                "hides {} of lower files ({} whiteouts, {} opaque dirs)",
                size(a.shadowed.bytes),
                a.whiteouts,
                a.opaque_dirs
            ))?;
        }
        for f in a.largest.iter().take(3) {
            line(format!("{:>10}  {}", size(f.apparent_bytes), safe(&f.path)))?;
        }
    }
    let t = &s.totals;
    writeln!(out)?;
    writeln!(
        out,
        "{} in the stack's files; {} identical copies; {} of lower layers overwritten or hidden",
        size(t.bytes),
        size(t.copy_up_identical_bytes),
        size(t.wasted_bytes)
    )?;
    for a in &s.advice {
        for (k, line) in wrap(a, 76).iter().enumerate() {
            writeln!(out, "{} {line}", if k == 0 { "-" } else { " " })?;
        }
    }
    Ok(())
}

/// Splits `text` into lines of at most `width` characters at spaces (a longer word where the line ends).
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        // A word longer than a line (a path) is split where the line ends.
        let mut word = word.to_owned();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn abbreviate(names: &[String], n: usize) -> String {
    let mut s = names.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > n {
        s.push_str(&format!(", +{}", names.len() - n));
    }
    s
}

/// Opens the Docker store named by the scan, for image layers; `None` when there is none.
pub fn docker_store(opts: &collector::ScanOptions) -> Option<DockerStore> {
    let root = DockerRoot { path: under_root(&opts.root, &opts.docker_root), host_path: opts.docker_root.clone() };
    DockerStore::open(root, &mut collector::finding::Findings::default()).ok()
}

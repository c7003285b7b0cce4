//! The storage-audit sections of the table: the one-screen summary that opens the report, images with
//! their shared and unique bytes, and orphans with why each one is an orphan.

use crate::render::{safe, short_id, write_rows};
use crate::units::human_bytes;
use collector::report::Report;
use std::io::{self, Write};

fn sizer(exact: bool) -> impl Fn(u64) -> String {
    move |n| if exact { n.to_string() } else { human_bytes(n) }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Where the disk went, on one screen and in 80 columns: each part of the data root with its size, what
/// removing things would free (RECLAIMABLE, with the command), copy-ups and shadowed bytes, and findings
/// by severity.
pub fn summary(out: &mut impl Write, r: &Report, exact: bool) -> io::Result<()> {
    let size = sizer(exact);
    let t = &r.totals;
    let rc = &t.reclaimable;
    writeln!(
        out,
        "{}: {} ({} running), {}, {}, {}",
        safe(&r.host.name),
        plural(t.containers, "container", "containers"),
        t.containers_running,
        plural(t.images, "image", "images"),
        plural(t.volumes, "volume", "volumes"),
        plural(t.overlay_mounts, "overlay mount", "overlay mounts"),
    )?;
    let dangling_volumes = r.volumes.iter().filter(|v| v.dangling).count() as u64;
    let stopped = t.containers - t.containers_running;
    let count = |sev: &str| t.findings.get(sev).copied().unwrap_or(0);
    let analysed = r.containers.iter().any(|c| c.writable.as_ref().is_some_and(|w| w.copy_ups.is_some()));
    let row = |name: &str, bytes: u64, reclaim: Option<u64>, how: String| {
        [format!("  {name}"), size(bytes), reclaim.map_or("-".to_owned(), &size), how]
    };
    let mut rows = vec![
        ["".to_owned(), "SIZE".to_owned(), "RECLAIMABLE".to_owned(), "HOW".to_owned()],
        row(
            "writable layers",
            t.writable_apparent_bytes,
            Some(rc.containers_bytes),
            format!("docker container prune ({stopped} stopped)"),
        ),
        row("images", t.image_bytes, Some(rc.images_bytes), "docker image prune -a (unused)".to_owned()),
        row(
            "volumes",
            t.volume_bytes,
            Some(rc.volumes_bytes),
            format!("docker volume prune ({dangling_volumes} dangling)"),
        ),
        row("build cache", t.build_cache_bytes, Some(rc.build_cache_bytes), "docker builder prune".to_owned()),
        row("container logs", t.log_bytes, Some(rc.logs_bytes), "go with stopped containers".to_owned()),
        row("orphaned", t.orphan_allocated_bytes, Some(rc.orphans_bytes), "by hand, see README".to_owned()),
    ];
    if analysed {
        rows.push(row(
            "copied up",
            t.copy_up_bytes,
            None,
            format!("of writable; {} same as image", size(t.copy_up_identical_bytes)),
        ));
        rows.push(row("shadowed", t.shadowed_bytes, None, "image files containers deleted".to_owned()));
    }
    rows.push([
        "  findings".to_owned(),
        (count("error") + count("warning") + count("info")).to_string(),
        String::new(),
        format!("{} errors, {} warnings, {} info", count("error"), count("warning"), count("info")),
    ]);
    write_rows(out, &rows, &[1, 2])?;
    if t.data_root_allocated_bytes > 0 {
        // Parts measured in allocated bytes; what is left is image and init layers and engine metadata.
        let writable = t.writable_allocated_bytes;
        let volumes = t.volume_allocated_bytes;
        let cache: u64 = r.build_cache.iter().map(|b| b.allocated_bytes).sum();
        let parts = writable + volumes + cache + t.orphan_allocated_bytes + t.log_bytes;
        let text = format!(
            "data root {} allocated = writable {} + volumes {} + build cache {} + orphans {} + logs {} + \
             image layers and metadata {} (the rest). du -s of the data root counts more: it enters every \
             running container's merged view.",
            size(t.data_root_allocated_bytes),
            size(writable),
            size(volumes),
            size(cache),
            size(t.orphan_allocated_bytes),
            size(t.log_bytes),
            size(t.data_root_allocated_bytes.saturating_sub(parts)),
        );
        for (k, line) in crate::inspect::wrap(&text, 76).iter().enumerate() {
            writeln!(out, "{}{line}", if k == 0 { "  " } else { "    " })?;
        }
    }
    if t.copy_up_unverified_bytes > 0 {
        writeln!(out, "  {} of copies not compared: raise --compare-budget", size(t.copy_up_unverified_bytes))?;
    }
    Ok(())
}

/// Every image, largest first: size, shared and unique bytes as `docker system df -v` counts them.
pub fn images(out: &mut impl Write, r: &Report, exact: bool) -> io::Result<()> {
    let size = sizer(exact);
    if r.images.is_empty() {
        return writeln!(out, "No images.");
    }
    let mut images: Vec<_> = r.images.iter().collect();
    images.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then_with(|| a.id.cmp(&b.id)));
    let mut rows =
        vec![["IMAGE", "TAGS", "SIZE", "SHARED", "UNIQUE", "CONTAINERS", "LAYERS", "NOTE"].map(String::from)];
    for i in images {
        let note = if i.intermediate {
            "build step (hidden by docker images)"
        } else if i.dangling {
            "dangling"
        } else {
            ""
        };
        rows.push([
            short_id(&i.id),
            if i.tags.is_empty() { "<none>".to_owned() } else { safe(&i.tags.join(",")) },
            size(i.size_bytes),
            size(i.shared_bytes),
            size(i.unique_bytes),
            i.containers.to_string(),
            i.layers.len().to_string(),
            match (i.runtime.as_str(), &i.namespace) {
                // Docker's images carry no engine note, so a Docker-only host reads as before.
                ("docker" | "", None) => note.to_owned(),
                (rt, Some(ns)) => format!("{rt}/{} {note}", safe(ns)).trim_end().to_owned(),
                (rt, None) => format!("{rt} {note}").trim_end().to_owned(),
            },
        ]);
    }
    write_rows(out, &rows, &[2, 3, 4, 5, 6])
}

/// Orphans, largest first, each followed by why it is one.
pub fn orphans(out: &mut impl Write, r: &Report, exact: bool) -> io::Result<()> {
    let size = sizer(exact);
    let t = &r.totals;
    if r.orphans.is_empty() {
        return writeln!(out, "No orphans under {}.", safe(&r.sources.docker_root));
    }
    writeln!(
        out,
        "Orphans: {}, {} apparent, {} allocated (freed if removed; see README before removing anything):",
        plural(t.orphans, "entry", "entries"),
        size(t.orphan_apparent_bytes),
        size(t.orphan_allocated_bytes)
    )?;
    let mut rows = vec![["KIND", "APPARENT", "ALLOCATED", "MODIFIED", "PATH"].map(String::from)];
    for o in &r.orphans {
        rows.push([
            o.kind.clone(),
            size(o.apparent_bytes),
            size(o.allocated_bytes),
            o.modified.clone().unwrap_or_else(|| "-".to_owned()),
            safe(&o.path),
        ]);
    }
    let mut table = Vec::new();
    write_rows(&mut table, &rows, &[1, 2])?;
    crate::render::write_with_details(out, &table, r.orphans.iter().map(|o| safe(&o.detail)))
}

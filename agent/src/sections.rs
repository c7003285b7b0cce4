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

/// Where the disk went, on one screen: writable layers, images, orphans, logs, and findings by severity.
pub fn summary(out: &mut impl Write, r: &Report, exact: bool) -> io::Result<()> {
    let size = sizer(exact);
    let t = &r.totals;
    writeln!(
        out,
        "{}: {} containers ({} running), writable {} (allocated {}), {} images, {} overlay mounts ({} not owned by a container)",
        safe(&r.host.name),
        t.containers,
        t.containers_running,
        size(t.writable_apparent_bytes),
        size(t.writable_allocated_bytes),
        t.images,
        t.overlay_mounts,
        t.unowned_mounts,
    )?;
    let dangling = r.images.iter().filter(|i| i.dangling).count() as u64;
    let steps = r.images.iter().filter(|i| i.intermediate).count() as u64;
    let count = |sev: &str| t.findings.get(sev).copied().unwrap_or(0);
    let rows = [
        [
            "  writable layers".to_owned(),
            size(t.writable_apparent_bytes),
            format!(
                "allocated {}, {}",
                size(t.writable_allocated_bytes),
                plural(t.containers, "container", "containers")
            ),
        ],
        [
            "  images".to_owned(),
            size(t.image_bytes),
            format!(
                "{} ({} dangling, {} hidden build {})",
                plural(t.images, "image", "images"),
                dangling,
                steps,
                if steps == 1 { "step" } else { "steps" }
            ),
        ],
        [
            "  orphaned".to_owned(),
            size(t.orphan_apparent_bytes),
            format!(
                "allocated {}, {} belonging to no image or container",
                size(t.orphan_allocated_bytes),
                plural(t.orphans, "entry", "entries")
            ),
        ],
        ["  container logs".to_owned(), size(t.log_bytes), "json-file logs and their rotations".to_owned()],
        [
            "  copied up".to_owned(),
            size(t.copy_up_bytes),
            format!(
                "of writable: {} identical to the image's, {} not compared",
                size(t.copy_up_identical_bytes),
                size(t.copy_up_unverified_bytes)
            ),
        ],
        [
            "  shadowed".to_owned(),
            size(t.shadowed_bytes),
            "image bytes deleted or hidden by containers, still on disk".to_owned(),
        ],
        [
            "  findings".to_owned(),
            (count("error") + count("warning") + count("info")).to_string(),
            format!(
                "{}, {}, {} info",
                plural(count("error"), "error", "errors"),
                plural(count("warning"), "warning", "warnings"),
                count("info")
            ),
        ],
    ];
    write_rows(out, &rows, &[1])
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
    let text = String::from_utf8_lossy(&table);
    let mut lines = text.lines();
    if let Some(header) = lines.next() {
        writeln!(out, "{header}")?;
    }
    for (line, o) in lines.zip(&r.orphans) {
        writeln!(out, "{line}")?;
        writeln!(out, "    {}", safe(&o.detail))?;
    }
    Ok(())
}

//! The table for people at a fixed width (80 columns unless `--wide`): the columns that answer "where does
//! the space go", long names and tags cut with a marker (`…`) instead of widening every line, hidden build
//! steps and overlay mounts of no known container summarised in one line unless `--all` asks for them;
//! plus the volumes and build cache sections, and the order of containers (`--sort`). The full-width
//! tables of [`crate::render`] and [`crate::sections`] are what `--wide` prints.

use crate::cli::SortKey;
use crate::render::{safe, short_id};
use crate::units::human_bytes;
use collector::report::{ContainerReport, Report};
use std::io::{self, Write};

/// The width the table fits by default.
pub const WIDTH: usize = 80;
/// The marker that ends a cut cell.
const CUT: char = '…';
/// A cut column keeps at least this many characters.
const MIN_CUT: usize = 8;

/// How to lay the table out.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// Exact byte counts instead of human units.
    pub exact: bool,
    /// Every column at full width (the tables of [`crate::render`]).
    pub wide: bool,
    /// List hidden build steps and every overlay mount of no known container.
    pub all: bool,
}

impl View {
    pub(crate) fn size(&self, n: u64) -> String {
        if self.exact {
            n.to_string()
        } else {
            human_bytes(n)
        }
    }
}

/// Orders the containers as `--sort` asks: writable or allocated bytes (largest first), name, or creation
/// time (newest first); ties by name, then id.
pub fn sort_containers(r: &mut Report, key: SortKey) {
    let w = |c: &ContainerReport, f: fn(&collector::usage::WritableUsage) -> u64| {
        c.writable.as_ref().map_or(0, |w| f(&w.usage))
    };
    r.containers.sort_by(|a, b| {
        let primary = match key {
            SortKey::Writable => w(b, |u| u.apparent_bytes).cmp(&w(a, |u| u.apparent_bytes)),
            SortKey::Allocated => w(b, |u| u.allocated_bytes).cmp(&w(a, |u| u.allocated_bytes)),
            SortKey::Name => std::cmp::Ordering::Equal,
            SortKey::Created => b.created.cmp(&a.created),
        };
        primary.then_with(|| a.name.cmp(&b.name)).then_with(|| a.id.cmp(&b.id))
    });
}

/// Cuts `s` to `width` characters, the last one the marker, when it is longer. `keep_end` keeps the end
/// (paths) instead of the start.
fn cut(s: &str, width: usize, keep_end: bool) -> String {
    let n = s.chars().count();
    if n <= width || width == 0 {
        return s.to_owned();
    }
    // A count of more (`name:tag +2`) stays whole: the name is cut before it.
    if let Some((head, more)) = s.rsplit_once(" +") {
        if !more.is_empty() && more.bytes().all(|b| b.is_ascii_digit()) && more.len() + 3 < width {
            return format!("{} +{more}", cut(head, width - more.len() - 2, keep_end));
        }
    }
    if keep_end {
        let tail: String = s.chars().skip(n - (width - 1)).collect();
        format!("{CUT}{tail}")
    } else {
        let head: String = s.chars().take(width - 1).collect();
        format!("{head}{CUT}")
    }
}

/// Writes `rows` (the first is the header) aligned, two spaces apart, right-aligning the columns in
/// `right`, and cutting the columns in `flexible` (widest first; `keep_end` for those whose end matters)
/// until every line fits `width`.
pub fn write_fitted<const N: usize>(
    out: &mut impl Write,
    rows: &[[String; N]],
    right: &[usize],
    flexible: &[usize],
    keep_end: &[usize],
    width: usize,
) -> io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let total = |w: &[usize; N]| w.iter().sum::<usize>() + 2 * N.saturating_sub(1);
    while total(&widths) > width {
        let Some(&widest) = flexible.iter().filter(|&&i| widths[i] > MIN_CUT).max_by_key(|&&i| widths[i]) else {
            break;
        };
        widths[widest] -= 1;
    }
    let cells: Vec<[String; N]> =
        rows.iter().map(|row| std::array::from_fn(|i| cut(&row[i], widths[i], keep_end.contains(&i)))).collect();
    crate::render::write_rows(out, &cells, right)
}

/// Containers, then one line for overlay mounts that belong to no known container (all of them with
/// `--all`).
pub fn containers(out: &mut impl Write, r: &Report, v: &View) -> io::Result<()> {
    if r.containers.is_empty() {
        writeln!(out, "No containers found in {}.", safe(&r.sources.docker_root))?;
    } else {
        let multi_engine = r.containers.iter().any(|c| c.runtime != "docker" || c.namespace.is_some());
        let mut rows =
            vec![["CONTAINER", "NAME", "STATE", "IMAGE", "WRITABLE", "ALLOCATED", "IDENTICAL"].map(String::from)];
        for c in &r.containers {
            let w = c.writable.as_ref();
            // The name events carry (`container.image.name`): a current tag, else the image as named at create.
            let image = c
                .image
                .tags
                .first()
                .cloned()
                .or_else(|| Some(c.image.name.clone()).filter(|n| !n.is_empty()))
                .unwrap_or_else(|| short_id(&c.image.id));
            let name = match (&c.namespace, multi_engine) {
                (Some(ns), true) => format!("{}/{}/{}", c.runtime, ns, c.name),
                (None, true) if c.runtime != "docker" => format!("{}/{}", c.runtime, c.name),
                _ => c.name.clone(),
            };
            rows.push([
                c.id.chars().take(12).collect(),
                safe(&name),
                c.state.clone(),
                safe(&image),
                w.map_or("-".into(), |w| v.size(w.usage.apparent_bytes)),
                w.map_or("-".into(), |w| v.size(w.usage.allocated_bytes)),
                w.and_then(|w| w.copy_ups.as_ref()).map_or("-".into(), |c| v.size(c.identical_bytes)),
            ]);
        }
        write_fitted(out, &rows, &[4, 5, 6], &[1, 3], &[], WIDTH)?;
        top_files(out, r, v)?;
        let errors: u64 = r.containers.iter().filter_map(|c| c.writable.as_ref()).map(|w| w.usage.errors).sum();
        if errors > 0 {
            writeln!(
                out,
                "{errors} entries of writable layers could not be read (see findings; --wide per container)"
            )?;
        }
    }
    if r.unowned_mounts.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    if !v.all {
        let n = r.unowned_mounts.len();
        return writeln!(
            out,
            "{n} overlay mount{} of no known container: --all lists {}",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        );
    }
    writeln!(out, "Overlay mounts not owned by a known container:")?;
    let mut rows = vec![["MOUNT ID", "LOWERS", "MOUNT POINT"].map(String::from)];
    for m in &r.unowned_mounts {
        rows.push([m.mount_id.map_or("-".into(), |i| i.to_string()), m.layers.len().to_string(), safe(&m.mountpoint)]);
    }
    write_fitted(out, &rows, &[0, 1], &[2], &[2], WIDTH)
}

/// With `--top N`: each writable layer's largest files, paths whole.
fn top_files(out: &mut impl Write, r: &Report, v: &View) -> io::Result<()> {
    let with_top: Vec<_> =
        r.containers.iter().filter(|c| c.writable.as_ref().is_some_and(|w| !w.usage.top_files.is_empty())).collect();
    if with_top.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "Largest files in writable layers:")?;
    for c in with_top {
        let top = c.writable.as_ref().map(|w| w.usage.top_files.as_slice()).unwrap_or_default();
        let name = if c.name.is_empty() { short_id(&c.id) } else { cut(&safe(&c.name), 40, false) };
        writeln!(out, "  {name} ({})", short_id(&c.id))?;
        let mut rows = vec![["WRITABLE", "ALLOCATED", "PATH"].map(String::from)];
        for f in top {
            rows.push([v.size(f.apparent_bytes), v.size(f.allocated_bytes), safe(&f.path)]);
        }
        let mut text = Vec::new();
        write_fitted(&mut text, &rows, &[0, 1], &[], &[], WIDTH)?;
        for line in String::from_utf8_lossy(&text).lines() {
            writeln!(out, "    {line}")?;
        }
    }
    Ok(())
}

/// Images, largest first; hidden build steps in one line unless `--all`.
pub fn images(out: &mut impl Write, r: &Report, v: &View) -> io::Result<()> {
    if r.images.is_empty() {
        return writeln!(out, "No images.");
    }
    let mut images: Vec<_> = r.images.iter().filter(|i| v.all || !i.intermediate).collect();
    images.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then_with(|| a.id.cmp(&b.id)));
    let mut rows = vec![["IMAGE", "TAGS", "SIZE", "SHARED", "UNIQUE", "USERS", "NOTE"].map(String::from)];
    for i in images {
        let tags = match i.tags.as_slice() {
            [] => "<none>".to_owned(),
            [one] => safe(one),
            [first, rest @ ..] => format!("{} +{}", safe(first), rest.len()),
        };
        let note = if i.intermediate {
            "build step"
        } else if i.dangling {
            "dangling"
        } else {
            ""
        };
        let note = match (i.runtime.as_str(), &i.namespace) {
            ("docker" | "", None) => note.to_owned(),
            (rt, Some(ns)) => format!("{rt}/{} {note}", safe(ns)).trim_end().to_owned(),
            (rt, None) => format!("{rt} {note}").trim_end().to_owned(),
        };
        rows.push([
            short_id(&i.id),
            tags,
            v.size(i.size_bytes),
            v.size(i.shared_bytes),
            v.size(i.unique_bytes),
            i.containers.to_string(),
            note,
        ]);
    }
    write_fitted(out, &rows, &[2, 3, 4, 5], &[1, 6], &[], WIDTH)?;
    let steps: Vec<_> = r.images.iter().filter(|i| i.intermediate).collect();
    if !v.all && !steps.is_empty() {
        let unique: u64 = steps.iter().map(|i| i.unique_bytes).sum();
        writeln!(
            out,
            "+ {} hidden build step{}, {} of {} own (--all lists {})",
            steps.len(),
            if steps.len() == 1 { "" } else { "s" },
            v.size(unique),
            if steps.len() == 1 { "its" } else { "their" },
            if steps.len() == 1 { "it" } else { "them" }
        )?;
    }
    Ok(())
}

/// Orphans, largest first, each followed by why it is one.
pub fn orphans(out: &mut impl Write, r: &Report, v: &View) -> io::Result<()> {
    if r.orphans.is_empty() {
        return writeln!(out, "No orphans under {}.", safe(&r.sources.docker_root));
    }
    writeln!(
        out,
        "Orphans: {} allocated in {} entries (read README before removing anything):",
        v.size(r.totals.orphan_allocated_bytes),
        r.totals.orphans
    )?;
    let mut rows = vec![["KIND", "ALLOCATED", "PATH"].map(String::from)];
    for o in &r.orphans {
        rows.push([o.kind.clone(), v.size(o.allocated_bytes), safe(&o.path)]);
    }
    // Paths are never cut: people copy them. They come last, so only they can pass the width.
    let mut table = Vec::new();
    write_fitted(&mut table, &rows, &[1], &[], &[], WIDTH)?;
    crate::render::write_with_details(out, &table, r.orphans.iter().map(|o| cut(&safe(&o.detail), WIDTH - 4, false)))
}

/// Findings in the order they were met, each wrapped to the width.
pub fn findings(out: &mut impl Write, r: &Report) -> io::Result<()> {
    if r.findings.is_empty() {
        return writeln!(out, "No findings.");
    }
    writeln!(out, "Findings:")?;
    for f in &r.findings {
        let sev = serde_json::to_value(f.severity).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let mut text = format!("{sev:<7} {}: {}", f.code, safe(&f.message));
        if let Some(p) = &f.path {
            text.push_str(&format!(" ({})", safe(p)));
        }
        if !f.samples.is_empty() {
            text.push_str(&format!(" e.g. {}", safe(&f.samples.join(", "))));
        }
        for (k, line) in crate::inspect::wrap(&text, WIDTH - 10).iter().enumerate() {
            writeln!(out, "{}{line}", if k == 0 { "  " } else { "          " })?;
        }
    }
    Ok(())
}

/// Local volumes, largest first.
pub fn volumes(out: &mut impl Write, r: &Report, v: &View) -> io::Result<()> {
    if r.volumes.is_empty() {
        return writeln!(out, "No local volumes.");
    }
    let mut rows = vec![["VOLUME", "SIZE", "ALLOCATED", "CONTAINERS", "NOTE"].map(String::from)];
    for vol in &r.volumes {
        let note = match (vol.dangling, vol.anonymous) {
            (true, true) => "dangling, anonymous",
            (true, false) => "dangling",
            (false, true) => "anonymous",
            (false, false) => "",
        };
        let users = match vol.containers.as_slice() {
            [] => "-".to_owned(),
            [one] => safe(one),
            [first, rest @ ..] => format!("{} +{}", safe(first), rest.len()),
        };
        let name = if vol.anonymous && !v.wide { short_id(&vol.name) } else { safe(&vol.name) };
        rows.push([name, v.size(vol.apparent_bytes), v.size(vol.allocated_bytes), users, note.to_owned()]);
    }
    let width = if v.wide { usize::MAX } else { WIDTH };
    write_fitted(out, &rows, &[1, 2], &[0, 3], &[], width)
}

/// Kubernetes pods, largest writable layers first: namespace, name, how many containers (the sandbox
/// included), and their writable layers and logs summed.
pub fn pods(out: &mut impl Write, r: &Report, v: &View) -> io::Result<()> {
    if r.pods.is_empty() {
        return writeln!(out, "No Kubernetes pods.");
    }
    let mut pods: Vec<_> = r.pods.iter().collect();
    pods.sort_by(|a, b| {
        b.writable_apparent_bytes
            .cmp(&a.writable_apparent_bytes)
            .then_with(|| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)))
    });
    let mut rows = vec![["NAMESPACE", "POD", "CONTAINERS", "WRITABLE", "ALLOCATED", "LOGS"].map(String::from)];
    for p in pods {
        let containers = p.containers.len() + usize::from(p.sandbox_id.is_some());
        rows.push([
            safe(&p.namespace),
            safe(&p.name),
            containers.to_string(),
            v.size(p.writable_apparent_bytes),
            v.size(p.writable_allocated_bytes),
            v.size(p.log_bytes),
        ]);
    }
    let width = if v.wide { usize::MAX } else { WIDTH };
    write_fitted(out, &rows, &[2, 3, 4, 5], &[0, 1], &[], width)
}

/// Build cache records: the largest few unless `--all`, with what `docker builder prune` frees.
pub fn build_cache(out: &mut impl Write, r: &Report, v: &View) -> io::Result<()> {
    if r.build_cache.is_empty() {
        return writeln!(out, "No build cache.");
    }
    let own: Vec<_> = r.build_cache.iter().filter(|b| !b.shared).collect();
    writeln!(
        out,
        "Build cache: {} records, {} not shared with images: {} (docker builder prune)",
        r.build_cache.len(),
        own.len(),
        v.size(r.totals.build_cache_bytes)
    )?;
    let shown = if v.all { r.build_cache.len() } else { 5 };
    let mut rows = vec![["CACHE ID", "TYPE", "SIZE", "SHARED", "LAST USED", "DESCRIPTION"].map(String::from)];
    for b in r.build_cache.iter().take(shown) {
        rows.push([
            b.id.chars().take(12).collect(),
            safe(&b.kind),
            v.size(b.size_bytes),
            if b.shared { "yes".into() } else { "no".into() },
            b.last_used.as_deref().map_or("-".into(), |t| t.chars().take(10).collect()),
            safe(&b.description),
        ]);
    }
    let width = if v.wide { usize::MAX } else { WIDTH };
    write_fitted(out, &rows, &[2], &[5, 1], &[], width)?;
    if r.build_cache.len() > shown {
        writeln!(out, "… and {} more records: --all lists them", r.build_cache.len() - shown)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_cut_with_a_marker_at_the_side_that_matters_less() {
        assert_eq!(cut("registry.example:5000/team/app:1", 12, false), "registry.ex…");
        assert_eq!(cut("/var/lib/docker/overlay2/abc", 12, true), "…verlay2/abc");
        assert_eq!(cut("short", 12, false), "short");
        assert_eq!(cut("registry.example:5000/app:1 +2", 12, false), "registry… +2");
    }

    #[test]
    fn fitted_rows_never_pass_the_width() {
        let rows = vec![
            ["ID".to_owned(), "NAME".to_owned(), "SIZE".to_owned()],
            ["1".to_owned(), "x".repeat(200), "10 MiB".to_owned()],
        ];
        let mut out = Vec::new();
        write_fitted(&mut out, &rows, &[2], &[1], &[], 40).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.contains(CUT));
    }
}

//! The table for people: the summary, containers largest writable layer first, overlay mounts that belong
//! to no container, images, orphans, then findings. Anything taken from the host is escaped so that a
//! hostile file or label name cannot move the cursor or forge a line.

use crate::cli::Section;
use crate::columns::{self, View};
use crate::sections;
use crate::units::human_bytes;
use collector::report::Report;
use std::io::{self, Write};

/// Writes the report as aligned text: every section, summary first, or only `section`. Fits 80 columns
/// unless `view.wide`.
pub fn table(out: &mut impl Write, r: &Report, view: &View, section: Option<Section>) -> io::Result<()> {
    let exact = view.exact;
    let containers = |mut out: &mut dyn Write| {
        if view.wide {
            containers(&mut out, r, exact)
        } else {
            columns::containers(&mut out, r, view)
        }
    };
    let images = |mut out: &mut dyn Write| {
        if view.wide {
            sections::images(&mut out, r, exact)
        } else {
            columns::images(&mut out, r, view)
        }
    };
    let orphans = |mut out: &mut dyn Write| {
        if view.wide {
            sections::orphans(&mut out, r, exact)
        } else {
            columns::orphans(&mut out, r, view)
        }
    };
    match section {
        Some(Section::Summary) => sections::summary(out, r, exact),
        Some(Section::Containers) => containers(out),
        Some(Section::Images) => images(out),
        Some(Section::Orphans) => orphans(out),
        Some(Section::Findings) if view.wide => findings(out, r),
        Some(Section::Findings) => columns::findings(out, r),
        Some(Section::Volumes) => columns::volumes(out, r, view),
        Some(Section::BuildCache) => columns::build_cache(out, r, view),
        Some(Section::Pods) => columns::pods(out, r, view),
        None => {
            sections::summary(out, r, exact)?;
            writeln!(out)?;
            containers(out)?;
            if !r.pods.is_empty() {
                writeln!(out)?;
                columns::pods(out, r, view)?;
            }
            if !r.images.is_empty() {
                writeln!(out)?;
                images(out)?;
            }
            if !r.volumes.is_empty() {
                writeln!(out)?;
                columns::volumes(out, r, view)?;
            }
            if !r.build_cache.is_empty() {
                writeln!(out)?;
                columns::build_cache(out, r, view)?;
            }
            if !r.orphans.is_empty() {
                writeln!(out)?;
                orphans(out)?;
            }
            if !r.findings.is_empty() {
                writeln!(out)?;
                if view.wide {
                    findings(out, r)?;
                } else {
                    columns::findings(out, r)?;
                }
            }
            Ok(())
        }
    }
}

/// Containers, largest writable layer first, then overlay mounts that belong to no container.
fn containers(out: &mut impl Write, r: &Report, exact: bool) -> io::Result<()> {
    let size = |n: u64| if exact { n.to_string() } else { human_bytes(n) };
    let mut rows = vec![[
        "CONTAINER",
        "NAME",
        "STATE",
        "IMAGE",
        "WRITABLE",
        "ALLOCATED",
        "FILES",
        "DIRS",
        "WHITEOUTS",
        "ERRORS",
        "MOUNTED",
    ]
    .map(String::from)];
    for c in &r.containers {
        let image = c.image.tags.first().cloned().unwrap_or_else(|| short_id(&c.image.id));
        let w = c.writable.as_ref().map(|w| &w.usage);
        let num = |f: fn(&collector::usage::WritableUsage) -> u64| w.map_or("-".into(), |u| f(u).to_string());
        rows.push([
            c.id.chars().take(12).collect(),
            safe(&c.name),
            c.state.clone(),
            safe(&image),
            w.map_or("-".into(), |u| size(u.apparent_bytes)),
            w.map_or("-".into(), |u| size(u.allocated_bytes)),
            num(|u| u.files),
            num(|u| u.dirs),
            num(|u| u.whiteouts),
            num(|u| u.errors),
            if c.mount.is_some() { "yes".into() } else { "no".into() },
        ]);
    }
    // On a host with more than Docker, say which engine (and containerd namespace) owns each container.
    let multi_engine = r.containers.iter().any(|c| c.runtime != "docker" || c.namespace.is_some());
    if r.containers.is_empty() {
        writeln!(out, "No containers found in {}.", safe(&r.sources.docker_root))?;
    } else if multi_engine {
        let rows: Vec<[String; 12]> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let engine = match i {
                    0 => "ENGINE".to_owned(),
                    _ => {
                        let c = &r.containers[i - 1];
                        match &c.namespace {
                            Some(ns) => format!("{}/{}", c.runtime, safe(ns)),
                            None => c.runtime.clone(),
                        }
                    }
                };
                std::array::from_fn(|j| if j == 0 { engine.clone() } else { row[j - 1].clone() })
            })
            .collect();
        write_rows(out, &rows, &[5, 6, 7, 8, 9, 10])?;
    } else {
        write_rows(out, &rows, &[4, 5, 6, 7, 8, 9])?;
    }

    let with_top: Vec<_> =
        r.containers.iter().filter(|c| c.writable.as_ref().is_some_and(|w| !w.usage.top_files.is_empty())).collect();
    if !with_top.is_empty() {
        writeln!(out)?;
        writeln!(out, "Largest files in writable layers:")?;
        for c in with_top {
            let top = c.writable.as_ref().map(|w| w.usage.top_files.as_slice()).unwrap_or_default();
            let name = if c.name.is_empty() { short_id(&c.id) } else { safe(&c.name) };
            writeln!(out, "  {name} ({})", short_id(&c.id))?;
            let mut rows = vec![["WRITABLE", "ALLOCATED", "PATH"].map(String::from)];
            for f in top {
                rows.push([size(f.apparent_bytes), size(f.allocated_bytes), safe(&f.path)]);
            }
            let mut text = Vec::new();
            write_rows(&mut text, &rows, &[0, 1])?;
            for line in String::from_utf8_lossy(&text).lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }

    if !r.unowned_mounts.is_empty() {
        writeln!(out)?;
        writeln!(out, "Overlay mounts not owned by a known container:")?;
        for m in &r.unowned_mounts {
            writeln!(out, "  {} (mount id {})", safe(&m.mountpoint), m.mount_id.map_or("-".into(), |i| i.to_string()))?;
            let mut shown = vec![&m.mountpoint];
            for other in &m.mountpoints {
                if !shown.contains(&other) {
                    writeln!(out, "    also at {}", safe(other))?;
                    shown.push(other);
                }
            }
            if let Some(u) = &m.upperdir {
                writeln!(out, "    upper  {}", safe(u))?;
            }
            for l in &m.layers {
                let id = l.chain_id.as_deref().map(short_id).unwrap_or_else(|| l.role.clone());
                writeln!(out, "    lower  {}  [{}]", safe(&l.path), id)?;
            }
        }
    }

    Ok(())
}

/// Findings in the order they were met.
fn findings(out: &mut impl Write, r: &Report) -> io::Result<()> {
    if r.findings.is_empty() {
        writeln!(out, "No findings.")?;
    } else {
        writeln!(out, "Findings:")?;
        for f in &r.findings {
            let sev =
                serde_json::to_value(f.severity).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            write!(out, "  {sev:<7} {}: {}", f.code, safe(&f.message))?;
            if let Some(p) = &f.path {
                write!(out, " ({})", safe(p))?;
            }
            writeln!(out)?;
            if !f.samples.is_empty() {
                writeln!(out, "          e.g. {}", safe(&f.samples.join(", ")))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn write_rows<const N: usize>(
    out: &mut impl Write,
    rows: &[[String; N]],
    right: &[usize],
) -> io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            if right.contains(&i) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < N {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Writes a table already laid out in `table` (header first), each row followed by its detail line,
/// indented: the orphans' "why" under each orphan.
pub(crate) fn write_with_details(
    out: &mut impl Write,
    table: &[u8],
    details: impl IntoIterator<Item = String>,
) -> io::Result<()> {
    let text = String::from_utf8_lossy(table);
    let mut lines = text.lines();
    if let Some(header) = lines.next() {
        writeln!(out, "{header}")?;
    }
    for (line, detail) in lines.zip(details) {
        writeln!(out, "{line}")?;
        writeln!(out, "    {detail}")?;
    }
    Ok(())
}

pub(crate) fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Escapes control characters and backslashes so host-supplied text stays on one line.
pub fn safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn control_characters_cannot_break_lines() {
        assert_eq!(safe("a\nb\tc\\d\u{1b}[2J"), "a\\nb\\tc\\\\d\\u{1b}[2J");
        assert_eq!(safe("plain-name_1.2"), "plain-name_1.2");
    }
}

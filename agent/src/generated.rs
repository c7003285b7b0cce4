//! The man pages (`packaging/man/man1`, `man5`: a MANPATH entry) and shell completions under `packaging/`, generated from the clap definitions that make
//! `--help`, and `ovlaudit.toml(5)`, generated from the example configuration `systemd/ovlaudit.toml`. The
//! test fails when a checked-in file differs from what the definitions generate now, so they cannot drift;
//! `OVLAUDIT_REGENERATE=1 cargo test -p ovlaudit --bin ovlaudit generated` writes them.

use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use roff::{bold, roman, Roff};
use std::path::{Path, PathBuf};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const REGENERATE_ENV: &str = "OVLAUDIT_REGENERATE";
/// Shown in each page's footer, beside the version.
const MANUAL: &str = "ovlaudit manual";

/// Every generated file: its path under the repository and its contents.
fn generate() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let subcommands: Vec<String> =
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_owned()).collect();

    let mut see_also: Vec<(String, &str)> = subcommands.iter().map(|s| (format!("ovlaudit-{s}"), "1")).collect();
    see_also.push(("ovlaudit.toml".into(), "5"));
    files.push((PathBuf::from("packaging/man/man1/ovlaudit.1"), man_page(&cmd, &see_also)));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut see_also = vec![("ovlaudit".to_owned(), "1")];
        if matches!(sub.get_name(), "run" | "check-config" | "check-sinks") {
            see_also.push(("ovlaudit.toml".into(), "5"));
        }
        let name = sub.get_display_name().unwrap_or(sub.get_name()).to_owned();
        files.push((PathBuf::from(format!("packaging/man/man1/{name}.1")), man_page(sub, &see_also)));
    }
    let example = std::fs::read_to_string(format!("{REPO}/systemd/ovlaudit.toml")).expect("read systemd/ovlaudit.toml");
    files.push((PathBuf::from("packaging/man/man5/ovlaudit.toml.5"), config_man_page(&example)));

    for (shell, file) in [(Shell::Bash, "ovlaudit"), (Shell::Zsh, "_ovlaudit"), (Shell::Fish, "ovlaudit.fish")] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "ovlaudit", &mut out);
        files.push((PathBuf::from(format!("packaging/completions/{file}")), out));
    }
    files
}

/// A command's page: clap_mangen's sections, the examples of its `after_help`, and SEE ALSO.
fn man_page(cmd: &clap::Command, see_also: &[(String, &str)]) -> Vec<u8> {
    let source = format!("ovlaudit {}", env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(cmd.clone()).manual(MANUAL).source(source);
    let mut out = Vec::new();
    man.render_title(&mut out).expect("render");
    man.render_name_section(&mut out).expect("render");
    man.render_synopsis_section(&mut out).expect("render");
    man.render_description_section(&mut out).expect("render");
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out).expect("render");
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out).expect("render");
    }
    let mut roff = Roff::new();
    if let Some(after) = cmd.get_after_help() {
        let text = after.to_string();
        let examples = text.strip_prefix("Examples:\n").unwrap_or(&text);
        roff.control("SH", ["EXAMPLES"]).control("nf", []);
        for line in examples.lines() {
            roff.text([roman(line.trim_start())]);
        }
        roff.control("fi", []);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for (i, (page, section)) in see_also.iter().enumerate() {
        refs.push(bold(page.as_str()));
        refs.push(roman(format!("({section}){}", if i + 1 < see_also.len() { ", " } else { "" })));
    }
    roff.text(refs);
    roff.to_writer(&mut out).expect("render");
    out
}

/// `ovlaudit.toml(5)` from the example configuration: its opening comment is the description; each later
/// block of comments is one entry, headed by the settings it shows (commented out, with their defaults).
fn config_man_page(example: &str) -> Vec<u8> {
    let mut roff = Roff::new();
    let version = env!("CARGO_PKG_VERSION");
    roff.control("TH", ["ovlaudit.toml", "5", "", &format!("ovlaudit {version}"), MANUAL]);
    roff.control("SH", ["NAME"]).text([roman("ovlaudit.toml - configuration of the ovlaudit service")]);
    roff.control("SH", ["SYNOPSIS"]).text([bold("/etc/ovlaudit/ovlaudit.toml")]);
    let mut blocks = example.split("\n\n").map(|b| b.lines().collect::<Vec<_>>());
    roff.control("SH", ["DESCRIPTION"]);
    if let Some(header) = blocks.next() {
        // The first line names the file; the rest is prose.
        prose(&mut roff, header.iter().skip(1).map(|l| uncomment(l)));
    }
    roff.control("SH", ["SETTINGS"]);
    for block in blocks {
        let (settings, text): (Vec<&str>, Vec<&str>) = block.iter().partition(|l| is_setting(l));
        if settings.is_empty() {
            continue;
        }
        let settings: Vec<&str> = settings.iter().map(|l| &l[1..]).collect();
        if settings.iter().all(|s| !s.contains("  #")) {
            for (i, s) in settings.iter().enumerate() {
                // Further settings of the entry are further tags (groff's .TQ).
                roff.control(if i == 0 { "TP" } else { "TQ" }, []).text([bold(*s)]);
            }
            prose(&mut roff, text.iter().map(|l| uncomment(l)));
        } else {
            // An example table with comments of its own: shown as written.
            roff.control("TP", []);
            roff.text([bold(settings[0])]);
            prose(&mut roff, text.iter().map(|l| uncomment(l)));
            roff.control("IP", []).control("nf", []);
            for s in &settings {
                roff.text([roman(*s)]);
            }
            roff.control("fi", []);
        }
    }
    roff.control("SH", ["FILES"]);
    roff.control("TP", []).text([bold("/etc/ovlaudit/ovlaudit.toml")]);
    roff.text([roman("The configuration ")]);
    roff.text([bold("ovlaudit run"), roman(" reads; "), bold("systemctl reload ovlaudit"), roman(" applies it.")]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("ovlaudit"),
        roman("(1), "),
        bold("ovlaudit-run"),
        roman("(1), "),
        bold("ovlaudit-check-config"),
        roman("(1), "),
        bold("ovlaudit-check-sinks"),
        roman("(1), "),
        bold("systemd.exec"),
        roman("(5)"),
    ]);
    roff.render().into_bytes()
}

/// A commented-out setting: `#key = value` or `#[[table]]`, no space after the `#`.
fn is_setting(line: &str) -> bool {
    line.strip_prefix('#').and_then(|r| r.chars().next()).is_some_and(|c| c.is_ascii_alphabetic() || c == '[')
}

fn uncomment(line: &str) -> &str {
    let rest = line.strip_prefix('#').unwrap_or(line);
    rest.strip_prefix(' ').unwrap_or(rest)
}

/// Comment text as paragraphs: indented lines (examples, lists) are kept as written, the rest filled.
fn prose<'a>(roff: &mut Roff, lines: impl Iterator<Item = &'a str>) {
    let mut fill = Vec::new();
    let mut literal = false;
    let flush = |roff: &mut Roff, fill: &mut Vec<&str>| {
        if !fill.is_empty() {
            roff.text([roman(fill.join(" "))]);
            fill.clear();
        }
    };
    for line in lines {
        if line.is_empty() {
            flush(roff, &mut fill);
            continue;
        }
        let indented = line.starts_with("  ");
        if indented != literal {
            flush(roff, &mut fill);
            roff.control(if indented { "nf" } else { "fi" }, []);
            literal = indented;
        }
        if indented {
            roff.text([roman(line)]);
        } else {
            fill.push(line);
        }
    }
    flush(roff, &mut fill);
    if literal {
        roff.control("fi", []);
    }
}

#[test]
fn generated_man_pages_and_completions_match_the_cli() {
    let regenerate = std::env::var_os(REGENERATE_ENV).is_some();
    let mut stale = Vec::new();
    let files = generate();
    for (path, contents) in &files {
        let full = Path::new(REPO).join(path);
        if regenerate {
            std::fs::create_dir_all(full.parent().expect("a parent")).expect("create the directory");
            std::fs::write(&full, contents).unwrap_or_else(|e| panic!("write {}: {e}", full.display()));
        } else if std::fs::read(&full).ok().as_ref() != Some(contents) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "generated files differ from the CLI's definitions: {stale:?}; regenerate them with \
         `{REGENERATE_ENV}=1 cargo test -p ovlaudit --bin ovlaudit generated` and commit the result"
    );
    // Nothing else lies in the generated directories: a page of a removed subcommand would linger.
    for dir in ["packaging/man/man1", "packaging/man/man5", "packaging/completions"] {
        for entry in std::fs::read_dir(Path::new(REPO).join(dir)).expect("read the directory") {
            let path = Path::new(dir).join(entry.expect("entry").file_name());
            assert!(files.iter().any(|(p, _)| *p == path), "{} is not generated; remove it", path.display());
        }
    }
    // Each subcommand has its page, each page says what it is for.
    let top = Cli::command();
    for sub in top.get_subcommands() {
        let page = Path::new(REPO).join(format!("packaging/man/man1/ovlaudit-{}.1", sub.get_name()));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        // roff's escapes of the apostrophe and the hyphen, undone for the comparison.
        let text = text.replace("\\*(Aq", "'").replace("\\-", "-");
        let about = sub.get_about().expect("every subcommand has an about").to_string();
        let first_words: String = about.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        assert!(text.contains(&first_words), "{}: {first_words:?}", page.display());
    }
}

#[test]
fn config_page_lists_every_setting_of_the_example() {
    let example = std::fs::read_to_string(format!("{REPO}/systemd/ovlaudit.toml")).expect("read the example");
    let page = String::from_utf8(config_man_page(&example)).expect("utf-8");
    let keys: Vec<&str> =
        example.lines().filter(|l| is_setting(l)).filter_map(|l| l[1..].split_once(" = ").map(|(k, _)| k)).collect();
    assert!(keys.len() >= 15, "{keys:?}");
    for key in keys {
        assert!(page.contains(&format!("\\fB{key} = ")) || page.contains(&format!("\n{key} = ")), "{key}");
    }
}

//! `ovlaudit`: audits the overlay mounts and writable layers of a container host. This binary is thin glue:
//! argument parsing, wiring the collector to renderers, and exit codes. Host formats are read by the
//! `collector` library only.

mod cli;
mod events;
mod render;
mod sections;
mod units;

use clap::Parser;
use cli::{Cli, Command, Format, ReportArgs};
use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(args) => report(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovlaudit: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

fn report(args: &ReportArgs) -> anyhow::Result<()> {
    if args.section.is_some() && args.format != Format::Table {
        anyhow::bail!("--section selects a part of the table; the JSON and NDJSON output always carry every section");
    }
    let mut opts = args.host.scan_options(args.threads, args.top);
    opts.orphan_min_age = std::time::Duration::from_secs(args.orphan_min_age);
    let report = collector::scan(&opts)?;
    if !report.sources.docker_found && report.sources.engines.is_empty() {
        eprintln!(
            "ovlaudit: no Docker storage found: looked for {}/overlay2 and {}/image/overlay2{}; \
             listing overlay mounts from {} only. Pass --docker-root DIR if Docker keeps its data elsewhere.",
            opts.docker_root.display(),
            opts.docker_root.display(),
            if opts.root.as_os_str() == "/" { String::new() } else { format!(" under {}", opts.root.display()) },
            report.sources.mount_table.as_deref().unwrap_or("(no readable mount table)"),
        );
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match args.format {
        Format::Table => render::table(&mut out, &report, args.bytes, args.section)?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Ndjson => {
            let mut seq = events::Sequencer::new(&opts.root);
            for ev in events::report_events(&report, &mut seq) {
                serde_json::to_writer(&mut out, &ev)?;
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

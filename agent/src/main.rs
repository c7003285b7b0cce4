//! `ovlaudit`: audits the overlay mounts and writable layers of a container host. This binary is thin glue:
//! argument parsing, wiring the collector to renderers, and exit codes. Host formats are read by the
//! `collector` library only.

mod changes;
mod cli;
mod columns;
mod config;
mod daemon;
mod debounce;
mod events;
mod fanotify;
#[cfg(test)]
mod generated;
mod incremental;
mod inspect;
mod logging;
mod metrics;
mod render;
mod sections;
mod sinks;
mod systemd;
mod units;
mod watch;

use clap::Parser;
use cli::{Cli, Command, Format, InspectArgs, ReportArgs};
use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(args) => report(&args),
        Command::Inspect(args) => inspect(&args),
        Command::Run(args) => check_run_paths(&args).and_then(|()| daemon::run(args.source(), args.overrides())),
        Command::CheckConfig(args) => check_run_paths(&args).and_then(|()| check_config(&args)),
        Command::CheckSinks(args) => match check_sinks(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
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

/// An explicit `--proc` of `run` and `check-config` must hold the mount table (`--root` is checked as parsed).
fn check_run_paths(args: &cli::RunArgs) -> anyhow::Result<()> {
    match &args.proc_dir {
        Some(proc_dir) => cli::check_proc(args.root.as_deref().unwrap_or("/".as_ref()), proc_dir),
        None => Ok(()),
    }
}

/// Whether the error is standard output closed early (`| head -1`): a success for a command line tool.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind()) == Some(io::ErrorKind::BrokenPipe)
    })
}

/// Sends one test event to every configured sink; true when all took it.
fn check_sinks(args: &cli::SinkArgs) -> anyhow::Result<bool> {
    let config = config::load(&args.source(), &args.overrides())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = rt.block_on(sinks::check::check_all(&config.sinks, &config.root));
    let mut all = true;
    for r in &results {
        match &r.outcome {
            Ok(took) => println!("ok      {}  (test event delivered in {} ms)", r.sink, took.as_millis()),
            Err(why) => {
                all = false;
                println!("FAILED  {}  {why}", r.sink);
            }
        }
    }
    Ok(all)
}

fn check_config(args: &cli::RunArgs) -> anyhow::Result<()> {
    let source = args.source();
    let config = config::load(&source, &args.overrides())?;
    config::check_roots(&config)?;
    if source.path.exists() {
        eprintln!("ovlaudit: {source}: configuration is valid");
    } else {
        eprintln!("ovlaudit: no file at {source}: the defaults apply");
    }
    print!("{}", config.to_toml());
    Ok(())
}

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    if matches!(args.format, Format::Ndjson | Format::Prometheus) {
        anyhow::bail!("inspect writes a table or one JSON document (--format json), not NDJSON or metrics");
    }
    let opts = args.host.scan_options(0, 0);
    let report = collector::scan(&opts)?;
    let store = inspect::docker_store(&opts);
    let budget = collector::copyup::Budget::new(args.compare_budget);
    let shown = inspect::inspect(&report, store.as_ref(), &opts.root, &args.target, &budget)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match args.format {
        Format::Json | Format::Ndjson | Format::Prometheus => {
            serde_json::to_writer_pretty(&mut out, &shown)?;
            writeln!(out)?;
        }
        Format::Table => inspect::tree(&mut out, &shown, args.bytes)?,
    }
    out.flush()?;
    Ok(())
}

fn report(args: &ReportArgs) -> anyhow::Result<()> {
    if args.section.is_some() && args.format != Format::Table {
        anyhow::bail!("--section selects a part of the table; the JSON and NDJSON output always carry every section");
    }
    let mut opts = args.host.scan_options(args.threads as usize, args.top as usize);
    if args.host.proc_dir.is_some() {
        cli::check_proc(&opts.root, &opts.proc_dir)?;
    }
    opts.orphan_min_age = args.orphan_min_age;
    let mut report = collector::scan(&opts)?;
    if !args.no_copy_ups {
        let budget = collector::copyup::Budget::new(args.compare_budget);
        collector::copyup::analyze_containers(&mut report, &opts.root, &budget, opts.threads);
    }
    collector::space::add_data_root_parts(&mut report, &opts);
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
        Format::Table => {
            columns::sort_containers(&mut report, args.sort);
            let view = columns::View { exact: args.bytes, wide: args.wide, all: args.all };
            render::table(&mut out, &report, &view, args.section)?
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Ndjson => {
            let mut seq = events::Sequencer::new(&opts.root);
            for ev in events::report_events(&report, &mut seq, &[]) {
                serde_json::to_writer(&mut out, &ev)?;
                writeln!(out)?;
            }
        }
        Format::Prometheus => out.write_all(metrics::render_report(report).as_bytes())?,
    }
    out.flush()?;
    Ok(())
}

//! The command line: subcommands, flags and their help text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use collector::ScanOptions;
use std::path::PathBuf;

/// Audits the overlay mounts of a container host: which overlay mounts exist, which image layers (by
/// digest) and which container they belong to, and how much disk each container's writable layer uses,
/// counted exactly as Docker counts SizeRw. ovlaudit only reads; it never writes under a storage root.
#[derive(Debug, Parser)]
#[command(name = "ovlaudit", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Audit the host once and print a report (a table for people, JSON or NDJSON for programs).
    ///
    /// Reads the mount table (<proc>/1/mountinfo) and the Docker data root, walks every container's
    /// writable layer, and prints every container, running or not, largest writable layer first.
    /// Exit status: 0 when the report was written (problems met on the way are listed as findings in it),
    /// 2 on a usage error or when the data root cannot be read at all.
    #[command(after_help = "Examples:\n  \
        ovlaudit report                      # table, largest writable layers first\n  \
        ovlaudit report --bytes              # exact byte counts in the table\n  \
        ovlaudit report --section orphans    # only the orphans table\n  \
        ovlaudit report --format json | jq '.containers[] | {name, bytes: .writable.apparent_bytes}'\n  \
        ovlaudit report --root /host         # inside a container, host / mounted at /host")]
    Report(ReportArgs),
}

/// Options of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Show sizes in the table as exact bytes instead of human units.
    #[arg(long)]
    pub bytes: bool,
    /// Walker threads, shared across and within writable layers (0: one per CPU).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Print one section of the table: summary, containers, images, orphans or findings (the JSON
    /// document always carries every section).
    #[arg(long, value_enum, value_name = "NAME")]
    pub section: Option<Section>,
    /// Storage changed less than this many seconds ago is not called an orphan: it may belong to a pull,
    /// build or removal in progress.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub orphan_min_age: u64,
    /// List each writable layer's N largest files (path, apparent and allocated bytes).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub top: usize,
    /// Where the host is.
    #[command(flatten)]
    pub host: HostArgs,
}

/// Where to find the host's files.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// Docker's data root, as the host names it [default: /var/lib/docker].
    #[arg(long, value_name = "DIR")]
    pub docker_root: Option<PathBuf>,
    /// A containers-storage root (Podman, CRI-O), as the host names it; repeat for several. Replaces the
    /// defaults: /var/lib/containers/storage and the rootless stores under /root and /home/*, where they
    /// exist.
    #[arg(long, value_name = "DIR")]
    pub podman_root: Vec<PathBuf>,
    /// A containerd root, as the host names it; repeat for several. Replaces the defaults:
    /// /var/lib/containerd and <docker-root>/containerd/daemon, where they exist.
    #[arg(long, value_name = "DIR")]
    pub containerd_root: Vec<PathBuf>,
    /// The host's proc filesystem, as the host names it.
    #[arg(long = "proc", value_name = "DIR", default_value = "/proc")]
    pub proc_dir: PathBuf,
    /// Prefix for every host path above: run inside a container with the host's / mounted at DIR
    /// (read-only) and the host's PID namespace, e.g. --root /host.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// Sections of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Totals on one screen: writable, images, orphans, logs, findings by severity.
    Summary,
    /// Every container, largest writable layer first, and overlay mounts no container owns.
    Containers,
    /// Every image with its size, shared and unique bytes, as `docker system df -v` counts them.
    Images,
    /// Storage that belongs to no image or container, largest first.
    Orphans,
    /// Problems found, with their codes.
    Findings,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document (schema ovlaudit.report/v1).
    Json,
    /// One JSON event per line, Elastic Common Schema names.
    Ndjson,
}

impl HostArgs {
    /// The collector's options for these flags.
    pub fn scan_options(&self, threads: usize, top_files: usize) -> ScanOptions {
        ScanOptions {
            root: self.root.clone(),
            proc_dir: self.proc_dir.clone(),
            docker_root_required: self.docker_root.is_some(),
            docker_root: self.docker_root.clone().unwrap_or_else(|| PathBuf::from("/var/lib/docker")),
            threads,
            top_files,
            podman_roots: (!self.podman_root.is_empty()).then(|| self.podman_root.clone()),
            containerd_roots: (!self.containerd_root.is_empty()).then(|| self.containerd_root.clone()),
            ..ScanOptions::default()
        }
    }
}

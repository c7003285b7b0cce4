//! The command line: subcommands, flags and their help text.

use crate::config::{self, Overrides, Source};
use crate::sinks::{config::parse_sink_uri, SinkConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use collector::ScanOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Audits the overlay mounts and writable layers of a container host.
///
/// Which overlay mounts exist, which image layers (by digest) and which container they belong to, and how
/// much disk each container's writable layer uses, counted exactly as Docker counts SizeRw; storage that
/// belongs to nothing (orphans); Docker, Podman (containers-storage) and containerd. ovlaudit only reads;
/// it never writes under a storage root. Path flags are host paths; a relative one is taken from the
/// current directory.
#[derive(Debug, Parser)]
#[command(name = "ovlaudit", version, propagate_version = true, max_term_width = 110)]
#[command(after_help = "Examples:\n  \
    ovlaudit report                      # audit this host once, a table\n  \
    ovlaudit report --section summary    # the totals on one screen\n  \
    systemctl status ovlaudit            # the service (ovlaudit run) installed by the package\n  \
    ovlaudit check-sinks                 # does every configured sink take an event?")]
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
    /// Show one container's or image's overlay stack as a tree: writable layer, init layer, image layers
    /// top first, each with its ids, size, sharers, largest files, copy-ups and the lower bytes it hides.
    ///
    /// TARGET is a container (id, unique id prefix, name, or the mount point of its overlay) or an image
    /// (id, unique id prefix, or tag). Exit status: 0 when shown, 2 when TARGET matches nothing or more
    /// than one thing, or the data root cannot be read.
    #[command(after_help = "Examples:\n  \
        ovlaudit inspect web                 # a container by name\n  \
        ovlaudit inspect 3f2a                # by unique id prefix\n  \
        ovlaudit inspect app:1 --format json # an image, for programs")]
    Inspect(InspectArgs),
    /// Run as a service: scan on an interval and soon after containers or mounts change, and send each
    /// scan's events to the sinks (NDJSON on standard output by default).
    ///
    /// Reads its configuration from /etc/ovlaudit/ovlaudit.toml (a missing default file means all
    /// defaults) or --config FILE; the flags below override the file. Speaks systemd's notify protocol
    /// (READY=1 after the first scan, STATUS=, WATCHDOG=1) when NOTIFY_SOCKET is set. SIGHUP reloads the
    /// configuration (a bad file is logged and the running configuration kept); SIGTERM or SIGINT stop it.
    /// Each scan ships only what changed (creation, change, deletion events), with a full snapshot at start,
    /// after a reload and every snapshot_interval. Logs go to standard error; RUST_LOG overrides log_level.
    /// Exit status: 0 after SIGTERM or SIGINT, or when standard output is closed by its reader; 2 on a bad
    /// configuration, a configured root that cannot be read, or a first scan that fails.
    #[command(after_help = "Examples:\n  \
        ovlaudit run                                   # as the systemd unit runs it\n  \
        ovlaudit run --interval 5m --docker-root /srv/docker\n  \
        ovlaudit run --root /host                      # inside a container, host / mounted at /host")]
    Run(RunArgs),
    /// Check a configuration file, print the effective configuration (file plus flags) as TOML, and exit.
    ///
    /// Exit status 0 when it is valid; 2 with the file, line, column and reason when it is not.
    #[command(after_help = "Examples:\n  \
        ovlaudit check-config                          # /etc/ovlaudit/ovlaudit.toml\n  \
        ovlaudit check-config --config ./new.toml --interval 5m")]
    CheckConfig(RunArgs),
    /// Send one test event (dataset ovlaudit.check) to each configured sink and say which work.
    ///
    /// Uses the sinks of the same configuration as `run` (file, or --sink flags). Exit status 0 when every
    /// sink took its event, 1 when any did not (each failure is printed with its cause), 2 on a usage or
    /// configuration error.
    #[command(after_help = "Examples:\n  \
        ovlaudit check-sinks                           # the sinks of /etc/ovlaudit/ovlaudit.toml\n  \
        ovlaudit check-sinks --sink syslog+tcp://127.0.0.1:514 --sink http://127.0.0.1:8080/ingest")]
    CheckSinks(SinkArgs),
}

/// Options of `check-sinks`: the configuration file and the flags of `run` that choose the sinks.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Configuration file [default: /etc/ovlaudit/ovlaudit.toml, which may be absent].
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A sink to try; repeat for several. Replaces the file's sinks. URIs as for `run --sink`.
    #[arg(long = "sink", value_name = "URI", value_parser = parse_sink_uri)]
    pub sinks: Vec<SinkConfig>,
    /// Where the host's / is, for its machine id in the event's agent.id [default: /].
    #[arg(long, value_name = "DIR", value_parser = host_dir)]
    pub root: Option<PathBuf>,
}

impl SinkArgs {
    /// The file to read.
    pub fn source(&self) -> Source {
        Source::new(self.config.as_deref())
    }

    /// The flags that override the file.
    pub fn overrides(&self) -> Overrides {
        Overrides { sinks: self.sinks.clone(), root: self.root.clone(), ..Overrides::default() }
    }
}

/// A path flag: relative paths are taken from the current directory.
fn host_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("an empty path".into());
    }
    std::path::absolute(s).map_err(|e| format!("{s}: {e}"))
}

/// `--root`: a directory that exists, relative to the current directory when not absolute.
fn host_dir(s: &str) -> Result<PathBuf, String> {
    let path = host_path(s)?;
    match std::fs::read_dir(&path) {
        Ok(_) => Ok(path),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Checks an explicit `--proc` (under `root`): it must hold the mount table `<proc>/1/mountinfo`.
pub fn check_proc(root: &Path, proc_dir: &Path) -> anyhow::Result<()> {
    let dir = root.join(proc_dir.strip_prefix("/").unwrap_or(proc_dir));
    let mountinfo = dir.join("1/mountinfo");
    if let Err(e) = std::fs::File::open(&mountinfo) {
        anyhow::bail!("--proc {}: cannot read {}: {e}", proc_dir.display(), mountinfo.display());
    }
    Ok(())
}

/// Options of `run` and `check-config`: the configuration file and the flags that override it.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file [default: /etc/ovlaudit/ovlaudit.toml, which may be absent].
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Time between scans when nothing changes, e.g. 30s, 5m, 1h; from 1s to 7d [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub interval: Option<Duration>,
    /// Where events go; repeat for several. Replaces the file's sinks [default: stdout:]. URIs: stdout:,
    /// file:/PATH, tcp://HOST:PORT, unix:///PATH, http://HOST:PORT/PATH, syslog+tcp://HOST:PORT,
    /// syslog+udp://HOST:PORT, syslog+unix:///dev/log, journald:
    #[arg(long = "sink", value_name = "URI", value_parser = parse_sink_uri)]
    pub sinks: Vec<SinkConfig>,
    /// Docker's data root, as the host names it [default: /var/lib/docker].
    #[arg(long, value_name = "DIR", value_parser = host_path)]
    pub docker_root: Option<PathBuf>,
    /// A containers-storage root (Podman, CRI-O); repeat for several. Replaces the file's podman_roots
    /// [default: those of /var/lib/containers/storage and the rootless stores that exist].
    #[arg(long = "podman-root", value_name = "DIR", value_parser = host_path)]
    pub podman_roots: Vec<PathBuf>,
    /// A containerd root; repeat for several. Replaces the file's containerd_roots [default: those of
    /// /var/lib/containerd and <docker-root>/containerd/daemon that exist].
    #[arg(long = "containerd-root", value_name = "DIR", value_parser = host_path)]
    pub containerd_roots: Vec<PathBuf>,
    /// The host's proc filesystem, as the host names it [default: /proc].
    #[arg(long = "proc", value_name = "DIR", value_parser = host_path)]
    pub proc_dir: Option<PathBuf>,
    /// Prefix for every host path: the host's / mounted at DIR in a container [default: /].
    #[arg(long, value_name = "DIR", value_parser = host_dir)]
    pub root: Option<PathBuf>,
    /// Walker threads, shared across and within writable layers (0: 3 per CPU up to 16, never fewer than one per CPU; at most 1024) [default: 0].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=config::MAX_THREADS))]
    pub threads: Option<u64>,
    /// error, warn, info, debug, trace or off [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9469 [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl RunArgs {
    /// The file to read.
    pub fn source(&self) -> Source {
        Source::new(self.config.as_deref())
    }

    /// The flags that override the file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            interval: self.interval,
            sinks: self.sinks.clone(),
            docker_root: self.docker_root.clone(),
            podman_roots: self.podman_roots.clone(),
            containerd_roots: self.containerd_roots.clone(),
            proc_dir: self.proc_dir.clone(),
            root: self.root.clone(),
            threads: self.threads.map(|t| t as usize),
            log_level: self.log_level.clone(),
            metrics_listen: self.metrics_listen,
        }
    }
}

/// `--orphan-min-age`: a duration with its unit, or 0, within the file's range.
fn parse_orphan_min_age(s: &str) -> Result<Duration, String> {
    config::parse_duration_or_zero(s).and_then(|d| config::check_duration("orphan_min_age", d))
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
    /// Walker threads, shared across and within writable layers (0: 3 per CPU up to 16, never fewer than one per CPU; at most 1024).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=config::MAX_THREADS))]
    pub threads: u64,
    /// Print one section of the table: summary, containers, images, orphans, findings, volumes, build-cache
    /// or pods (the JSON document always carries every section).
    #[arg(long, value_enum, value_name = "NAME")]
    pub section: Option<Section>,
    /// Storage changed more recently than this is not called an orphan: it may belong to a pull, build or
    /// removal in progress. A duration with its unit (10m, 1h30m), or 0 to show every orphan.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_orphan_min_age)]
    pub orphan_min_age: Duration,
    /// List each writable layer's N largest files (path, apparent and allocated bytes; at most 100).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=config::MAX_TOP_FILES))]
    pub top: u64,
    /// Fit the table to no width: every column, full names, tags and paths (default: 80 columns, long
    /// cells cut with a marker).
    #[arg(long, short = 'w')]
    pub wide: bool,
    /// List hidden build steps, every overlay mount of no known container and every build cache record
    /// (each summarised in one line by default).
    #[arg(long)]
    pub all: bool,
    /// Order of the containers: writable or allocated bytes (largest first), name, created (newest first).
    #[arg(long, value_enum, default_value_t = SortKey::Writable, value_name = "KEY")]
    pub sort: SortKey,
    /// Do not look for copy-ups and shadowed bytes (files of a writable layer that also exist in the
    /// image, and image files the container deleted).
    #[arg(long)]
    pub no_copy_ups: bool,
    /// Bytes of copied-up files that may be read to compare them with the image's copies, for the whole
    /// scan; what it does not cover is reported as unverified.
    #[arg(long, default_value_t = collector::copyup::DEFAULT_BUDGET, value_name = "BYTES")]
    pub compare_budget: u64,
    /// Where the host is.
    #[command(flatten)]
    pub host: HostArgs,
}

/// Options of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The container or image.
    pub target: String,
    /// Output format: table (a tree) or json.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Show sizes as exact bytes instead of human units.
    #[arg(long)]
    pub bytes: bool,
    /// Bytes of copied-up files that may be read to compare them with the lower copies.
    #[arg(long, default_value_t = collector::copyup::DEFAULT_BUDGET, value_name = "BYTES")]
    pub compare_budget: u64,
    /// Where the host is.
    #[command(flatten)]
    pub host: HostArgs,
}

/// Where to find the host's files.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// Docker's data root, as the host names it [default: /var/lib/docker].
    #[arg(long, value_name = "DIR", value_parser = host_path)]
    pub docker_root: Option<PathBuf>,
    /// A containers-storage root (Podman, CRI-O), as the host names it; repeat for several. Replaces the
    /// defaults: /var/lib/containers/storage and the rootless stores under /root and /home/*, where they
    /// exist.
    #[arg(long, value_name = "DIR", value_parser = host_path)]
    pub podman_root: Vec<PathBuf>,
    /// A containerd root, as the host names it; repeat for several. Replaces the defaults:
    /// /var/lib/containerd and <docker-root>/containerd/daemon, where they exist.
    #[arg(long, value_name = "DIR", value_parser = host_path)]
    pub containerd_root: Vec<PathBuf>,
    /// The host's proc filesystem, as the host names it; it must hold the mount table 1/mountinfo
    /// [default: /proc].
    #[arg(long = "proc", value_name = "DIR", value_parser = host_path)]
    pub proc_dir: Option<PathBuf>,
    /// Prefix for every host path above: run inside a container with the host's / mounted at DIR
    /// (read-only) and the host's PID namespace, e.g. --root /host [default: /].
    #[arg(long, value_name = "DIR", value_parser = host_dir)]
    pub root: Option<PathBuf>,
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
    /// Local volumes with their size and the containers that mount them.
    Volumes,
    /// BuildKit's build cache records.
    BuildCache,
    /// Kubernetes pods (containers the CRI created), largest writable layers first, with their containers'
    /// writable layers and logs summed.
    Pods,
}

/// Orders of the containers table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// Writable bytes as Docker counts SizeRw, largest first.
    Writable,
    /// Allocated bytes of the writable layer, largest first.
    Allocated,
    /// Name.
    Name,
    /// Creation time, newest first.
    Created,
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
    /// Prometheus text exposition format (report only), for node_exporter's textfile collector.
    Prometheus,
}

impl HostArgs {
    /// The collector's options for these flags.
    pub fn scan_options(&self, threads: usize, top_files: usize) -> ScanOptions {
        ScanOptions {
            root: self.root.clone().unwrap_or_else(|| PathBuf::from("/")),
            proc_dir: self.proc_dir.clone().unwrap_or_else(|| PathBuf::from("/proc")),
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

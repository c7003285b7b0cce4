//! The agent's configuration: the TOML file (`/etc/ovlaudit/ovlaudit.toml` unless `--config` names another),
//! command-line flags that override it, and the checks that reject a bad file with its path, line and reason.
//!
//! A missing *default* file means "all defaults", so a host needs no file at all; a missing file named with
//! `--config` is an error, because the operator meant that file.

use crate::sinks::config::{facility_name, SinkEntry, SinkUri};
use crate::sinks::{SinkConfig, SinkKind};
use collector::ScanOptions;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Where the service looks for its file when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/ovlaudit/ovlaudit.toml";

/// Log levels `log_level` accepts; finer filters go through `RUST_LOG`.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The effective configuration of `ovlaudit run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Time between scans when nothing changes.
    pub interval: Duration,
    /// Prefix under which the host's `/` is visible.
    pub root: PathBuf,
    /// The host's proc filesystem, as the host names it.
    pub proc_dir: PathBuf,
    /// Docker's data root as the host names it; `None` means `/var/lib/docker`, and then a host without
    /// Docker is only noted, not an error.
    pub docker_root: Option<PathBuf>,
    /// containers-storage roots (Podman, CRI-O); `None`: the defaults that exist.
    pub podman_roots: Option<Vec<PathBuf>>,
    /// containerd roots; `None`: the defaults that exist.
    pub containerd_roots: Option<Vec<PathBuf>>,
    /// Walker threads; 0 = 3 per CPU up to 16, never fewer than one per CPU.
    pub threads: usize,
    /// `error`, `warn`, `info`, `debug`, `trace` or `off`.
    pub log_level: String,
    /// Where each scan's events go.
    pub sinks: Vec<SinkConfig>,
    /// Whether to scan soon after the host changes (mount table, containers) rather than only on `interval`.
    pub watch: bool,
    /// Quiet time after a change before scanning.
    pub settle: Duration,
    /// The longest a change waits for its scan while changes keep coming.
    pub max_delay: Duration,
    /// A scan running longer than this is stuck: the agent stops its watchdog pings so systemd restarts it.
    pub scan_timeout: Duration,
    /// Storage changed more recently than this is not called an orphan (a pull or build may own it).
    pub orphan_min_age: Duration,
    /// Largest files listed per writable layer in each container event; 0 for none.
    pub top_files: usize,
    /// Time between full snapshots (every thing re-stated) besides the ones at start and after a reload.
    pub snapshot_interval: Duration,
    /// Whether to keep writable-layer accounting between scans, brought up to date from fanotify change
    /// notifications, instead of walking every layer on every scan.
    pub incremental: bool,
    /// Time between full walks that check the incremental state (and correct what no event reports).
    pub reconcile_interval: Duration,
    /// Where to serve Prometheus metrics (`/metrics`); `None`: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The sane range of each duration key: below the least, the agent would busy the CPU or its collectors;
/// above the most, it would look dead. Shared by the file and the flags.
pub const DURATION_LIMITS: [(&str, Duration, Duration); 7] = [
    ("interval", Duration::from_secs(1), Duration::from_secs(7 * 86400)),
    ("settle", Duration::from_millis(10), Duration::from_secs(60)),
    ("max_delay", Duration::from_millis(100), Duration::from_secs(600)),
    ("scan_timeout", Duration::from_secs(1), Duration::from_secs(86400)),
    ("orphan_min_age", Duration::ZERO, Duration::from_secs(365 * 86400)),
    ("snapshot_interval", Duration::from_secs(10), Duration::from_secs(30 * 86400)),
    ("reconcile_interval", Duration::from_secs(5), Duration::from_secs(30 * 86400)),
];

/// The most walker threads (`threads`, `--threads`).
pub const MAX_THREADS: u64 = 1024;
/// The most largest-files per writable layer (`top_files`, `--top`): each adds a path to an event that
/// must stay under 30 KiB.
pub const MAX_TOP_FILES: u64 = 100;

/// Checks a duration against [`DURATION_LIMITS`] for `key`.
pub fn check_duration(key: &str, d: Duration) -> Result<Duration, String> {
    let Some((_, min, max)) = DURATION_LIMITS.iter().find(|(k, _, _)| *k == key) else {
        return Ok(d);
    };
    if d < *min {
        Err(format!("{key} of {} is too short: at least {}", format_duration_or_zero(d), format_duration(*min)))
    } else if d > *max {
        Err(format!("{key} of {} is too long: at most {}", format_duration_or_zero(d), format_duration(*max)))
    } else {
        Ok(d)
    }
}

fn format_duration_or_zero(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_owned()
    } else {
        format_duration(d)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(60),
            root: PathBuf::from("/"),
            proc_dir: PathBuf::from("/proc"),
            docker_root: None,
            podman_roots: None,
            containerd_roots: None,
            threads: 0,
            log_level: "info".to_owned(),
            sinks: vec![SinkConfig::new(SinkKind::Stdout)],
            watch: true,
            settle: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            scan_timeout: Duration::from_secs(600),
            orphan_min_age: Duration::from_secs(600),
            top_files: 0,
            snapshot_interval: Duration::from_secs(86400),
            incremental: true,
            reconcile_interval: Duration::from_secs(6 * 3600),
            metrics_listen: None,
        }
    }
}

impl Config {
    /// The collector's options for this configuration.
    pub fn scan_options(&self) -> ScanOptions {
        ScanOptions {
            root: self.root.clone(),
            proc_dir: self.proc_dir.clone(),
            docker_root_required: self.docker_root.is_some(),
            docker_root: self.docker_root.clone().unwrap_or_else(|| PathBuf::from("/var/lib/docker")),
            podman_roots: self.podman_roots.clone(),
            containerd_roots: self.containerd_roots.clone(),
            threads: self.threads,
            orphan_min_age: self.orphan_min_age,
            top_files: self.top_files,
        }
    }

    /// The configuration as a TOML file that loads back to the same configuration.
    pub fn to_toml(&self) -> String {
        let path = |p: &Path| toml_string(&p.to_string_lossy());
        // Left unset, the default root may be absent (only noted); written out, it would become required.
        let roots = |key: &str, v: &Option<Vec<PathBuf>>| match v {
            Some(list) => format!("{key} = [{}]\n", list.iter().map(|p| path(p)).collect::<Vec<_>>().join(", ")),
            None => String::new(),
        };
        let other_roots =
            roots("podman_roots", &self.podman_roots) + &roots("containerd_roots", &self.containerd_roots);
        let docker_root = match &self.docker_root {
            Some(p) => format!("docker_root = {}", path(p)),
            None => "# docker_root = \"/var/lib/docker\"  (not set: a host without Docker is only noted)".to_owned(),
        };
        format!(
            "interval = {}\nroot = {}\nproc = {}\n{}\nthreads = {}\nlog_level = {}\n\
             watch = {}\nsettle = {}\nmax_delay = {}\nscan_timeout = {}\norphan_min_age = {}\ntop_files = {}\n\
             snapshot_interval = {}\nincremental = {}\nreconcile_interval = {}\n",
            toml_string(&format_duration(self.interval)),
            path(&self.root),
            path(&self.proc_dir),
            docker_root,
            self.threads,
            toml_string(&self.log_level),
            self.watch,
            toml_string(&format_duration(self.settle)),
            toml_string(&format_duration(self.max_delay)),
            toml_string(&format_duration(self.scan_timeout)),
            toml_string(&format_duration_or_zero(self.orphan_min_age)),
            self.top_files,
            toml_string(&format_duration(self.snapshot_interval)),
            self.incremental,
            toml_string(&format_duration(self.reconcile_interval)),
        ) + &self
            .metrics_listen
            .map(|a| format!("metrics_listen = {}\n", toml_string(&a.to_string())))
            .unwrap_or_default()
            + &other_roots
            + &self.sinks.iter().map(sink_toml).collect::<String>()
    }
}

/// One sink as a `[[sink]]` table; header values are never printed.
fn sink_toml(s: &SinkConfig) -> String {
    let mut t = format!(
        "\n[[sink]]\nuri = {}\nqueue_size = {}\nbatch_size = {}\nfsync = {}\nfacility = {}\ntimeout = {}\n",
        toml_string(&s.kind.to_string()),
        s.queue_size,
        s.batch_size,
        toml_string(match s.fsync {
            crate::sinks::Fsync::Batch => "batch",
            crate::sinks::Fsync::Never => "never",
        }),
        toml_string(&facility_name(s.facility)),
        toml_string(&format_duration(s.timeout)),
    );
    if !s.headers.is_empty() {
        let names: Vec<String> = s.headers.iter().map(|(k, _)| format!("{k} = \"(hidden)\"")).collect();
        t.push_str(&format!("headers = {{ {} }}\n", names.join(", ")));
    }
    t
}

/// Command-line values that override the file; `None` (or an empty list) leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--sink`, repeated; replaces the file's list when given.
    pub sinks: Vec<SinkConfig>,
    /// `--docker-root`.
    pub docker_root: Option<PathBuf>,
    /// `--podman-root`, repeated; replaces the file's list when given.
    pub podman_roots: Vec<PathBuf>,
    /// `--containerd-root`, repeated; replaces the file's list when given.
    pub containerd_roots: Vec<PathBuf>,
    /// `--proc`.
    pub proc_dir: Option<PathBuf>,
    /// `--root`.
    pub root: Option<PathBuf>,
    /// `--threads`.
    pub threads: Option<usize>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Which file to read.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Named with `--config`: then it must exist.
    pub explicit: bool,
}

impl Source {
    /// `--config FILE` when given, else the default path.
    pub fn new(config: Option<&Path>) -> Source {
        match config {
            Some(p) => Source { path: p.to_path_buf(), explicit: true },
            None => Source { path: PathBuf::from(DEFAULT_PATH), explicit: false },
        }
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause (not a `source`, so that the message says it once).
        error: std::io::Error,
    },
    /// A syntax error, an unknown key or a bad value, located in the file.
    #[error("{}:{line}:{column}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A root the configuration names (`root`, `docker_root`, `podman_roots`, `containerd_roots`) that
    /// cannot be read: the agent would ship nothing.
    #[error("{key} {}: cannot be read: {error}", path.display())]
    Unreadable {
        /// The key or flag that names it.
        key: &'static str,
        /// The directory, as this process reads it (under `root`).
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A bad value given on the command line.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Reads the file (if any), applies the overrides and checks the result.
pub fn load(source: &Source, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(&source.path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !source.explicit => None,
        Err(e) => return Err(ConfigError::Read { path: source.path.clone(), error: e }),
    };
    let mut config = match text {
        Some(text) => parse(&text, &source.path)?,
        None => Config::default(),
    };
    apply(&mut config, overrides)?;
    Ok(config)
}

/// Checks that every root the configuration names can be listed: `root`, and `docker_root`,
/// `podman_roots` and `containerd_roots` when set (unset, a missing default is only noted by the scan).
/// `run` refuses to start, and `check-config` to pass, when one cannot.
pub fn check_roots(config: &Config) -> Result<(), ConfigError> {
    let mut named: Vec<(&'static str, PathBuf)> = vec![("root", config.root.clone())];
    if let Some(d) = &config.docker_root {
        named.push(("docker_root", collector::scan::under_root(&config.root, d)));
    }
    for p in config.podman_roots.iter().flatten() {
        named.push(("podman_roots", collector::scan::under_root(&config.root, p)));
    }
    for p in config.containerd_roots.iter().flatten() {
        named.push(("containerd_roots", collector::scan::under_root(&config.root, p)));
    }
    for (key, path) in named {
        if let Err(error) = std::fs::read_dir(&path) {
            return Err(ConfigError::Unreadable { key, path, error });
        }
    }
    Ok(())
}

/// Parses a configuration file's text; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
        ConfigError::Invalid { path: path.to_path_buf(), line, column, reason: e.message().trim_end().to_owned() }
    })?;
    // A value out of range is located at its key, at the start of the value's line.
    let invalid = |key: &str, span: std::ops::Range<usize>, reason: String| {
        let line_start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
        let at = text[line_start..].find(key).map_or(span.start, |i| line_start + i);
        let (line, column) = line_column(text, at);
        ConfigError::Invalid { path: path.to_path_buf(), line, column, reason }
    };
    let duration = |key: &str, v: Option<Spanned<DurationValue>>, default: Duration| match v {
        None => Ok(default),
        Some(s) => check_duration(key, s.get_ref().0).map_err(|why| invalid(key, s.span(), why)),
    };
    let count = |key: &str, v: Option<Spanned<Count>>, max: u64| match v {
        None => Ok(None),
        Some(s) if s.get_ref().0 <= max => Ok(Some(s.get_ref().0 as usize)),
        Some(s) => Err(invalid(key, s.span(), format!("{key} = {} is too many: at most {max}", s.get_ref().0))),
    };
    let d = Config::default();
    Ok(Config {
        interval: duration("interval", file.interval, d.interval)?,
        root: file.root.map_or(d.root, |v| v.0),
        proc_dir: file.proc.map_or(d.proc_dir, |v| v.0),
        docker_root: file.docker_root.map(|v| v.0),
        podman_roots: file.podman_roots.map(|v| v.into_iter().map(|p| p.0).collect()),
        containerd_roots: file.containerd_roots.map(|v| v.into_iter().map(|p| p.0).collect()),
        threads: count("threads", file.threads, MAX_THREADS)?.unwrap_or(d.threads),
        log_level: file.log_level.map_or(d.log_level, |v| v.0),
        sinks: match (file.sinks, file.sink) {
            (None, None) => d.sinks,
            (uris, tables) => uris
                .unwrap_or_default()
                .into_iter()
                .map(|u| u.0)
                .chain(tables.unwrap_or_default().into_iter().map(|t| t.0))
                .collect(),
        },
        watch: file.watch.unwrap_or(d.watch),
        settle: duration("settle", file.settle, d.settle)?,
        max_delay: duration("max_delay", file.max_delay, d.max_delay)?,
        scan_timeout: duration("scan_timeout", file.scan_timeout, d.scan_timeout)?,
        orphan_min_age: duration("orphan_min_age", file.orphan_min_age, d.orphan_min_age)?,
        top_files: count("top_files", file.top_files, MAX_TOP_FILES)?.unwrap_or(d.top_files),
        snapshot_interval: duration("snapshot_interval", file.snapshot_interval, d.snapshot_interval)?,
        incremental: file.incremental.unwrap_or(d.incremental),
        reconcile_interval: duration("reconcile_interval", file.reconcile_interval, d.reconcile_interval)?,
        metrics_listen: file.metrics_listen,
    })
}

fn apply(config: &mut Config, o: &Overrides) -> Result<(), ConfigError> {
    if let Some(v) = o.interval {
        config.interval =
            check_duration("interval", v).map_err(|reason| ConfigError::Flag { flag: "--interval", reason })?;
    }
    if !o.sinks.is_empty() {
        config.sinks = o.sinks.clone();
    }
    let absolute = |flag: &'static str, p: &PathBuf| {
        if p.is_absolute() {
            Ok(p.clone())
        } else {
            Err(ConfigError::Flag { flag, reason: format!("{} is not an absolute path", p.display()) })
        }
    };
    if let Some(p) = &o.docker_root {
        config.docker_root = Some(absolute("--docker-root", p)?);
    }
    if !o.podman_roots.is_empty() {
        config.podman_roots =
            Some(o.podman_roots.iter().map(|p| absolute("--podman-root", p)).collect::<Result<_, _>>()?);
    }
    if !o.containerd_roots.is_empty() {
        config.containerd_roots =
            Some(o.containerd_roots.iter().map(|p| absolute("--containerd-root", p)).collect::<Result<_, _>>()?);
    }
    if let Some(p) = &o.proc_dir {
        config.proc_dir = absolute("--proc", p)?;
    }
    if let Some(p) = &o.root {
        config.root = absolute("--root", p)?;
    }
    if o.metrics_listen.is_some() {
        config.metrics_listen = o.metrics_listen;
    }
    if let Some(v) = o.threads {
        if v as u64 > MAX_THREADS {
            return Err(ConfigError::Flag {
                flag: "--threads",
                reason: format!("{v} is too many: at most {MAX_THREADS}"),
            });
        }
        config.threads = v;
    }
    if let Some(v) = &o.log_level {
        config.log_level = check_log_level(v).map_err(|reason| ConfigError::Flag { flag: "--log-level", reason })?;
    }
    Ok(())
}

/// The file as written: every key optional, none unknown.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interval: Option<Spanned<DurationValue>>,
    root: Option<AbsolutePath>,
    proc: Option<AbsolutePath>,
    docker_root: Option<AbsolutePath>,
    podman_roots: Option<Vec<AbsolutePath>>,
    containerd_roots: Option<Vec<AbsolutePath>>,
    threads: Option<Spanned<Count>>,
    log_level: Option<LogLevel>,
    sinks: Option<Vec<SinkUri>>,
    sink: Option<Vec<SinkEntry>>,
    watch: Option<bool>,
    settle: Option<Spanned<DurationValue>>,
    max_delay: Option<Spanned<DurationValue>>,
    scan_timeout: Option<Spanned<DurationValue>>,
    orphan_min_age: Option<Spanned<DurationValue>>,
    top_files: Option<Spanned<Count>>,
    snapshot_interval: Option<Spanned<DurationValue>>,
    incremental: Option<bool>,
    reconcile_interval: Option<Spanned<DurationValue>>,
    metrics_listen: Option<std::net::SocketAddr>,
}

/// A duration string; `"0"` and `"0s"` read as zero, which only `orphan_min_age` accepts (the range check
/// refuses it elsewhere).
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration_or_zero(&s).map(DurationValue).map_err(de::Error::custom)
    }
}

/// A count: a whole number, never negative. Its own visitor, so that a wrong value is described in
/// words rather than by the integer type that holds it.
pub struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number, 0 or more")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v)
                    .map(Count)
                    .map_err(|_| E::custom(format!("{v} is negative: expected a whole number, 0 or more")))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Count, E> {
                u64::try_from(v)
                    .map(Count)
                    .map_err(|_| E::custom(format!("{v} is out of range: expected a whole number, 0 or more")))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Count, E> {
                u64::try_from(v).map(Count).map_err(|_| E::custom(format!("{v} is out of range")))
            }
        }
        d.deserialize_any(V)
    }
}

struct AbsolutePath(PathBuf);

impl<'de> Deserialize<'de> for AbsolutePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.starts_with('/') {
            Ok(AbsolutePath(PathBuf::from(s)))
        } else {
            Err(de::Error::custom(format!("`{s}` is not an absolute path")))
        }
    }
}

struct LogLevel(String);

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        check_log_level(&s).map(LogLevel).map_err(de::Error::custom)
    }
}

fn check_log_level(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if LOG_LEVELS.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(format!("unknown log level `{s}`, expected one of {}", LOG_LEVELS.join(", ")))
    }
}

/// `"90s"`, `"5m"`, `"1h30m"`, `"250ms"`, `"1d"`: numbers each followed by a unit; never zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let total = parse_total(s)?;
    if total.is_zero() {
        return Err(format!("invalid duration `{s}`: must be more than zero"));
    }
    Ok(total)
}

/// Numbers each followed by a unit, added up.
fn parse_total(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration `{s}`: expected a number and a unit (ms, s, m, h, d), like \"60s\" or \"1h30m\"");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Like [`parse_duration`], but `"0"` and a total of zero (`"0s"`) are zero rather than an error: for
/// ages, where zero means "no holding back".
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_total(s)
}

/// The shortest spelling [`parse_duration`] reads back to the same value.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s.checked_rem(size) == Some(0) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("/etc/x.toml")).expect_err("must be rejected").to_string()
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("", Path::new("x")).expect("valid"), Config::default());
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "interval = \"1h30m\"\nroot = \"/host\"\nproc = \"/hproc\"\ndocker_root = \"/srv/docker\"\nthreads = 3\n\
             log_level = \"DEBUG\"\nsinks = [\"stdout\"]\nwatch = false\nsettle = \"250ms\"\nmax_delay = \"10s\"\n\
             scan_timeout = \"2m\"\n",
            Path::new("x"),
        )
        .expect("valid");
        assert_eq!(c.interval, Duration::from_secs(5400));
        assert_eq!(c.root, Path::new("/host"));
        assert_eq!(c.proc_dir, Path::new("/hproc"));
        assert_eq!(c.docker_root.as_deref(), Some(Path::new("/srv/docker")));
        assert_eq!(c.threads, 3);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.sinks, vec![SinkConfig::new(SinkKind::Stdout)]);
        assert!(!c.watch);
        assert_eq!(c.settle, Duration::from_millis(250));
        assert_eq!(c.max_delay, Duration::from_secs(10));
        assert_eq!(c.scan_timeout, Duration::from_secs(120));
    }

    #[test]
    fn unknown_key_is_located() {
        let e = err("interval = \"30s\"\n\n  intervall = \"5s\"\n");
        assert!(e.starts_with("/etc/x.toml:3:3: unknown field `intervall`"), "{e}");
    }

    #[test]
    fn sink_tables_and_uris_combine_in_order_and_print_back_without_secrets() {
        let text = "sinks = [\"stdout\"]\n\n[[sink]]\nuri = \"http://127.0.0.1:8080/in\"\nqueue_size = 50\n\
                    batch_size = 7\nheaders = { Authorization = \"Bearer s3cret\" }\ntimeout = \"3s\"\n\n\
                    [[sink]]\nuri = \"syslog+udp://127.0.0.1:514\"\nfacility = \"local3\"\n";
        let c = parse(text, Path::new("/etc/x.toml")).expect("valid");
        assert_eq!(c.sinks.len(), 3);
        assert_eq!(c.sinks[0].kind, SinkKind::Stdout);
        assert_eq!(c.sinks[1].queue_size, 50);
        assert_eq!(c.sinks[1].batch_size, 7);
        assert_eq!(c.sinks[1].headers, vec![("Authorization".to_owned(), "Bearer s3cret".to_owned())]);
        assert_eq!(c.sinks[1].timeout, Duration::from_secs(3));
        assert_eq!(c.sinks[2].facility, 19);
        let printed = c.to_toml();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(!format!("{:?}", c).contains("s3cret"), "Debug hides header values too");
        let again = parse(&printed, Path::new("/x")).expect("printed config loads back");
        assert_eq!(again.sinks[2], c.sinks[2]);
        assert_eq!(again.sinks[1].queue_size, 50);
    }

    #[test]
    fn bad_values_are_located_with_the_reason() {
        let e = err("watch = true\ninterval = \"soon\"\n");
        assert!(e.starts_with("/etc/x.toml:2:12: invalid duration `soon`"), "{e}");
        let e = err("threads = -1\n");
        assert!(e.starts_with("/etc/x.toml:1:11: "), "{e}");
        let e = err("docker_root = \"var/lib/docker\"\n");
        assert!(e.starts_with("/etc/x.toml:1:15: `var/lib/docker` is not an absolute path"), "{e}");
        let e = err("log_level = \"loud\"\n");
        assert!(e.contains("unknown log level `loud`"), "{e}");
        let e = err("sinks = [\"stdout\", \"carrier-pigeon://x\"]\n");
        // toml locates an element's error at its array.
        assert!(e.starts_with("/etc/x.toml:1:9: sink \"carrier-pigeon://x\": unknown scheme"), "{e}");
        let e = err("[[sink]]\nuri = \"tcp://127.0.0.1:9\"\nqueue_size = 0\n");
        assert!(e.starts_with("/etc/x.toml:1:1: queue_size must be at least 1"), "{e}");
        let e = err("[[sink]]\nuri = \"tcp://127.0.0.1:9\"\nheaders = { Authorization = \"Bearer x\" }\n");
        assert!(e.contains("headers apply to http:// sinks only"), "{e}");
        let e = err("[[sink]]\nuri = \"syslog+udp://127.0.0.1:514\"\nfacility = \"kern2\"\n");
        assert!(e.starts_with("/etc/x.toml:3:12: facility \"kern2\""), "{e}");
        let e = err("[[sink]]\nuri = \"file:/x\"\ncolour = \"red\"\n");
        assert!(e.starts_with("/etc/x.toml:3:1: unknown field `colour`"), "{e}");
        let e = err("interval = \"0s\"\n");
        assert_eq!(e, "/etc/x.toml:1:1: interval of 0s is too short: at least 1s");
    }

    #[test]
    fn values_beyond_sane_limits_are_refused_at_their_key_in_words() {
        for (text, expected) in [
            ("interval = \"1ms\"\n", "/etc/x.toml:1:1: interval of 1ms is too short: at least 1s"),
            ("\n  interval = \"30d\"\n", "/etc/x.toml:2:3: interval of 30d is too long: at most 7d"),
            ("settle = \"2m\"\n", "/etc/x.toml:1:1: settle of 2m is too long: at most 1m"),
            ("snapshot_interval = \"1s\"\n", "/etc/x.toml:1:1: snapshot_interval of 1s is too short: at least 10s"),
            ("threads = 100000\n", "/etc/x.toml:1:1: threads = 100000 is too many: at most 1024"),
            ("watch = true\ntop_files = 5000\n", "/etc/x.toml:2:1: top_files = 5000 is too many: at most 100"),
            ("threads = -1\n", "/etc/x.toml:1:11: -1 is negative: expected a whole number, 0 or more"),
            (
                "threads = 1.5\n",
                "/etc/x.toml:1:11: invalid type: floating point `1.5`, expected a whole number, 0 or more",
            ),
            (
                "[[sink]]\nuri = \"tcp://127.0.0.1:9\"\nqueue_size = 99999999999\n",
                "/etc/x.toml:1:1: queue_size = 99999999999 is too many: at most 1000000",
            ),
            (
                "[[sink]]\nuri = \"stdout:\"\ntimeout = \"1ms\"\n",
                "/etc/x.toml:3:11: timeout is too short: at least 10ms",
            ),
        ] {
            assert_eq!(err(text), expected, "for {text:?}");
        }
        for text in ["threads = 99999999999999999999999\n", "queue_size = -5\n", "top_files = \"all\"\n"] {
            let e = err(text);
            for word in ["usize", "u64", "i64", "i128", "u128", "integer`"] {
                assert!(!e.contains(word), "{text:?}: {e}");
            }
        }
        let c = parse("orphan_min_age = \"0\"\nsnapshot_interval = \"6h\"\n", Path::new("x")).expect("valid");
        assert_eq!(c.orphan_min_age, Duration::ZERO);
        assert_eq!(c.snapshot_interval, Duration::from_secs(6 * 3600));
        assert_eq!(parse(&c.to_toml(), Path::new("x")).expect("prints back"), c);
        let mut c = Config::default();
        let e = apply(&mut c, &Overrides { interval: Some(Duration::from_millis(1)), ..Overrides::default() });
        assert_eq!(e.expect_err("1ms").to_string(), "--interval: interval of 1ms is too short: at least 1s");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = err("interval = \"30s\"\nthreads = \n");
        assert!(e.starts_with("/etc/x.toml:2:"), "{e}");
    }

    #[test]
    fn durations_round_trip() {
        for (text, secs_ms) in
            [("90s", 90_000), ("5m", 300_000), ("1h30m", 5_400_000), ("250ms", 250), ("1d", 86_400_000)]
        {
            let d = parse_duration(text).expect(text);
            assert_eq!(d.as_millis(), secs_ms, "{text}");
            assert_eq!(parse_duration(&format_duration(d)).expect("formatted"), d);
        }
        for bad in ["", "60", "s", "1x", "1.5s", "-1s", "1 h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let mut c = parse("interval = \"1m\"\nroot = \"/a\"\n", Path::new("x")).expect("valid");
        let o = Overrides {
            interval: Some(Duration::from_secs(30)),
            root: Some(PathBuf::from("/host")),
            proc_dir: Some(PathBuf::from("/p")),
            ..Overrides::default()
        };
        apply(&mut c, &o).expect("valid overrides");
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.root, Path::new("/host"));
        assert_eq!(c.proc_dir, Path::new("/p"));
        assert_eq!(c.docker_root, None);
        let e = apply(&mut c, &Overrides { root: Some(PathBuf::from("host")), ..Overrides::default() });
        assert_eq!(e.expect_err("relative").to_string(), "--root: host is not an absolute path");
    }

    #[test]
    fn printed_config_loads_back() {
        assert_eq!(parse(&Config::default().to_toml(), Path::new("x")).expect("valid"), Config::default());
        let c = Config {
            interval: Duration::from_secs(45),
            docker_root: Some(PathBuf::from("/srv/d\"x")),
            ..Config::default()
        };
        assert_eq!(parse(&c.to_toml(), Path::new("x")).expect("valid"), c);
    }

    #[test]
    fn missing_default_file_is_defaults_but_missing_named_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.toml");
        let implicit = Source { path: path.clone(), explicit: false };
        assert_eq!(load(&implicit, &Overrides::default()).expect("defaults"), Config::default());
        let explicit = Source { path: path.clone(), explicit: true };
        let e = load(&explicit, &Overrides::default()).expect_err("missing").to_string();
        assert_eq!(e, format!("cannot read {}: No such file or directory (os error 2)", path.display()));
    }
}

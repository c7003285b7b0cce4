//! `ovlaudit run`: the service. One loop owns everything: it starts a scan on the interval or soon after the
//! host changes (never two at once: the scan runs on a blocking thread and the loop waits for it), hands
//! each scan's events to the sinks, tells systemd how it is doing, and answers signals.
//!
//! The watchdog pings come from this loop and only while no scan has been running longer than
//! `scan_timeout` and fewer than [`FAILURES_UNHEALTHY`] scans in a row have failed: a scan stuck in the
//! kernel (a hung network filesystem under the data root), or a data root that became unreadable, stops
//! the pings, and systemd (`WatchdogSec=`, `Restart=on-failure`) restarts the service. The same rule bounds
//! `EXTEND_TIMEOUT_USEC` during a slow first scan, which would otherwise run into systemd's start timeout
//! before `READY=1`. A first scan that fails ends the service with the cause and status 2, without
//! `READY=1`; so does a configured root that cannot be read at start.
//!
//! What is shipped after each scan is decided by [`crate::changes`]: only what changed, except in a
//! snapshot (at start, after a reload, every `snapshot_interval`, and after a sink dropped events).

use crate::changes::Tracker;
use crate::config::{self, Config, Overrides, Source};
use crate::debounce::Debounce;
use crate::events::{failure_event, scan_events, things, ScanInfo, Sequencer};
use crate::incremental::Incremental;
use crate::logging::LogControl;
use crate::sinks::Sinks;
use crate::systemd::{monotonic_usec, Notifier};
use crate::units::human_bytes;
use crate::watch::{Change, HostWatch};
use collector::report::Report;
use collector::{ScanError, Severity};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

/// How long a stop waits for the scan in flight before abandoning it.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long a stop waits for each sink to deliver and flush.
const SINK_GRACE: Duration = Duration::from_secs(1);
/// How often a running first scan asks systemd for more start time, and how much.
const EXTEND_EVERY: Duration = Duration::from_secs(2);
const EXTEND_BY: Duration = Duration::from_secs(10);
/// At most one snapshot for dropped events in this time: a snapshot bigger than a sink's queue drops
/// events itself, and must not cause the next.
const DROP_SNAPSHOT_GAP: Duration = Duration::from_secs(600);
/// After this many failed scans in a row the service stops its watchdog pings: systemd then restarts it.
pub const FAILURES_UNHEALTHY: u64 = 3;

/// Runs the service until SIGTERM or SIGINT.
pub fn run(source: Source, overrides: Overrides) -> anyhow::Result<()> {
    let config = config::load(&source, &overrides)?;
    config::check_roots(&config)?;
    let log = crate::logging::init(&config.log_level);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = rt.block_on(async move { Daemon::new(source, overrides, config, log).run().await });
    // A scan abandoned at stop may still be blocked in the kernel; it must not hold the process.
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

type ScanResult = Result<Result<Report, ScanError>, JoinError>;

struct Running {
    handle: JoinHandle<Result<Report, ScanError>>,
    started: Instant,
    number: u64,
    reason: String,
}

enum Wake {
    Stop(&'static str),
    OutputClosed,
    Reload,
    Changed(Change),
    ScanDone(Box<ScanResult>),
    Timer,
}

struct Daemon {
    source: Source,
    overrides: Overrides,
    config: Config,
    log: LogControl,
    notifier: Notifier,
    seq: Sequencer,
    sinks: Option<Sinks>,
    host_name: String,
    watch: Option<HostWatch>,
    changes_tx: mpsc::UnboundedSender<Change>,
    changes: mpsc::UnboundedReceiver<Change>,
    debounce: Debounce,
    pending: BTreeSet<&'static str>,
    scan: Option<Running>,
    scans: u64,
    ready: bool,
    next_interval: Instant,
    next_ping: Option<Instant>,
    next_extend: Instant,
    stuck_logged: bool,
    /// Warning and error findings of the last scan, so that only new ones are logged.
    known_findings: HashSet<(String, Option<String>)>,
    /// What was last shipped, to ship only changes.
    tracker: Tracker,
    /// Why the next scan must be a snapshot, if it must.
    snapshot_why: Option<&'static str>,
    next_snapshot: Instant,
    /// Events the sinks had dropped when the last snapshot was shipped.
    dropped_seen: u64,
    last_drop_snapshot: Option<Instant>,
    /// Scans failed in a row.
    failures: u64,
    /// Why the service must end with an error (its first scan failed).
    fatal: Option<String>,
    /// The reader of standard output went away (`| head -1`): stop quietly.
    output_closed: bool,
    /// Writable-layer accounting kept between scans (`incremental = true`); the scan thread holds it
    /// while it runs.
    incremental: Option<Arc<Mutex<Incremental>>>,
    /// What `/metrics` serves (`metrics_listen`): the last completed scan.
    metrics: Option<Arc<Mutex<crate::metrics::State>>>,
    /// The `/metrics` listener, bound to `metrics_listen`.
    metrics_server: Option<crate::metrics::Server>,
}

impl Daemon {
    fn new(source: Source, overrides: Overrides, config: Config, log: LogControl) -> Daemon {
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let notifier = Notifier::from_env();
        let now = Instant::now();
        Daemon {
            seq: Sequencer::new(&config.root),
            debounce: Debounce::new(config.settle, config.max_delay),
            next_interval: now + config.interval,
            next_ping: notifier.watchdog().map(|_| now),
            next_extend: now + EXTEND_EVERY,
            next_snapshot: now + config.snapshot_interval,
            source,
            overrides,
            config,
            log,
            notifier,
            sinks: None,
            host_name: collector::scan::host_name(),
            watch: None,
            changes_tx,
            changes,
            pending: BTreeSet::new(),
            scan: None,
            scans: 0,
            ready: false,
            stuck_logged: false,
            known_findings: HashSet::new(),
            tracker: Tracker::new(),
            snapshot_why: Some("start"),
            dropped_seen: 0,
            last_drop_snapshot: None,
            failures: 0,
            fatal: None,
            output_closed: false,
            incremental: None,
            metrics: None,
            metrics_server: None,
        }
    }

    async fn run(mut self) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        self.sinks = Some(Sinks::start(self.config.sinks.clone(), &self.host_name));
        if self.config.incremental {
            let c = &self.config;
            let inc = Incremental::start(c.top_files, c.threads, c.reconcile_interval);
            self.incremental = Some(Arc::new(Mutex::new(inc)));
        }
        if let Some(addr) = self.config.metrics_listen {
            let state = self.new_metrics_state();
            let server = crate::metrics::serve(addr, state.clone())
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
            self.metrics = Some(state);
            self.metrics_server = Some(server);
        }
        if self.config.watch {
            self.watch = Some(HostWatch::start(&self.config, self.changes_tx.clone()));
        }
        tracing::info!(
            "ovlaudit {} starting: {}; interval {}, sinks {}",
            env!("CARGO_PKG_VERSION"),
            self.describe_host(),
            config::format_duration(self.config.interval),
            self.sink_names(),
        );
        self.notifier.status("first scan running");
        self.start_scan("start".to_owned());
        loop {
            let wake_at = self.next_wake();
            let wake = tokio::select! {
                _ = term.recv() => Wake::Stop("SIGTERM"),
                _ = int.recv() => Wake::Stop("SIGINT"),
                _ = hup.recv() => Wake::Reload,
                _ = crate::sinks::stdout_closed() => Wake::OutputClosed,
                Some(change) = self.changes.recv() => Wake::Changed(change),
                res = wait_scan(&mut self.scan) => Wake::ScanDone(Box::new(res)),
                _ = tokio::time::sleep_until(wake_at) => Wake::Timer,
            };
            match wake {
                Wake::Stop(why) => {
                    tracing::info!("{why}: stopping");
                    break;
                }
                Wake::OutputClosed => {
                    tracing::debug!("standard output was closed by its reader: stopping");
                    self.output_closed = true;
                    break;
                }
                Wake::Reload => self.reload().await,
                Wake::Changed(change) => {
                    tracing::debug!("{}", change.word());
                    self.debounce.note(Instant::now().into_std());
                    self.pending.insert(change.word());
                }
                Wake::ScanDone(res) => {
                    if let Some(run) = self.scan.take() {
                        self.finish_scan(run, *res);
                    }
                }
                Wake::Timer => self.on_timer(),
            }
            if self.fatal.is_some() {
                break;
            }
        }
        let fatal = self.fatal.take();
        self.shutdown().await;
        match fatal {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Ok(()),
        }
    }

    fn next_wake(&self) -> Instant {
        let mut at = Instant::now() + Duration::from_secs(86400);
        if self.scan.is_none() {
            at = at.min(self.next_interval);
            if let Some(due) = self.debounce.due() {
                at = at.min(Instant::from_std(due));
            }
        }
        if let Some(ping) = self.next_ping {
            at = at.min(ping);
        }
        if !self.ready && self.scan.is_some() {
            at = at.min(self.next_extend);
        }
        at
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.scan.is_none() {
            if now >= self.next_interval {
                self.start_scan("interval".to_owned());
            } else if self.debounce.due().is_some_and(|due| Instant::from_std(due) <= now) {
                let reason = self.pending.iter().copied().collect::<Vec<_>>().join(", ");
                self.start_scan(reason);
            }
        }
        let healthy = self.scan_is_healthy(now) && self.failures < FAILURES_UNHEALTHY;
        if let (Some(ping), Some(period)) = (self.next_ping, self.notifier.watchdog()) {
            if now >= ping {
                if healthy {
                    self.notifier.notify("WATCHDOG=1");
                }
                self.next_ping = Some(now + period / 2);
            }
        }
        if !self.ready && self.scan.is_some() && now >= self.next_extend {
            if healthy {
                self.notifier.notify(&format!("EXTEND_TIMEOUT_USEC={}", EXTEND_BY.as_micros()));
            }
            self.next_extend = now + EXTEND_EVERY;
        }
    }

    /// False once the scan in flight has run longer than `scan_timeout`.
    fn scan_is_healthy(&mut self, now: Instant) -> bool {
        let Some(run) = &self.scan else {
            return true;
        };
        let age = now - run.started;
        if age <= self.config.scan_timeout {
            return true;
        }
        if !self.stuck_logged {
            tracing::error!(
                "scan {} has been running for {} s, longer than scan_timeout ({}): it is stuck; \
                 no more watchdog pings, so the service manager can restart the agent",
                run.number,
                age.as_secs(),
                config::format_duration(self.config.scan_timeout),
            );
            self.notifier.status(&format!("scan {} stuck for {} s", run.number, age.as_secs()));
            self.stuck_logged = true;
        }
        false
    }

    fn start_scan(&mut self, reason: String) {
        let opts = self.config.scan_options();
        let incremental = self.incremental.clone();
        self.scans += 1;
        self.debounce.take(Instant::now().into_std());
        self.pending.clear();
        self.stuck_logged = false;
        tracing::debug!("scan {} starting ({reason})", self.scans);
        self.next_extend = Instant::now() + EXTEND_EVERY;
        self.scan = Some(Running {
            handle: tokio::task::spawn_blocking(move || match incremental {
                Some(inc) => {
                    let mut inc = inc.lock().unwrap_or_else(|p| p.into_inner());
                    collector::scan_with(&opts, Some(&mut *inc))
                }
                None => collector::scan(&opts),
            }),
            started: Instant::now(),
            number: self.scans,
            reason,
        });
    }

    fn finish_scan(&mut self, run: Running, res: ScanResult) {
        let took = run.started.elapsed();
        self.next_interval = Instant::now() + self.config.interval;
        let report = match res {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => return self.scan_failed(&run, format!("scan {} failed: {e}", run.number)),
            Err(e) => return self.scan_failed(&run, format!("scan {} did not complete: {e}", run.number)),
        };
        self.failures = 0;
        if let Some(w) = self.watch.as_mut() {
            w.set_nested(&report.sources.engines);
        }
        let status = {
            self.log_new_findings(&report);
            let stats = self.sinks.as_ref().map(Sinks::stats).unwrap_or_default();
            let snapshot = self.snapshot_reason(&stats);
            let (deltas, counts) = self.tracker.update(things(&report), snapshot.is_some());
            let info = ScanInfo { number: run.number, reason: run.reason.clone(), snapshot };
            let mut events = scan_events(&report, &mut self.seq, &mut self.tracker, &deltas, counts, &info, &stats);
            if let Some(inc) = &self.incremental {
                let inc = inc.lock().unwrap_or_else(|p| p.into_inner());
                crate::incremental::annotate(&mut events, inc.counters());
            }
            if let Some(sinks) = &self.sinks {
                sinks.publish(&events);
            }
            let line = summary(&report);
            let shipped = match snapshot {
                Some(why) => format!("snapshot ({why}) of {} things", deltas.len()),
                None => {
                    format!("{} created, {} changed, {} deleted", counts.creation, counts.change, counts.deletion)
                }
            };
            tracing::info!("scan {} ({}): {line}; {shipped}; {} ms", run.number, run.reason, took.as_millis());
            for s in &stats {
                let level_warn = s.dropped > 0 || !s.connected && s.failures > 0;
                let msg = format!(
                    "sink {}: sent {}, retried {}, dropped {}, queued {}{}",
                    s.sink,
                    s.sent,
                    s.retried,
                    s.dropped,
                    s.queue_depth,
                    s.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default()
                );
                if level_warn {
                    tracing::warn!("{msg}");
                } else {
                    tracing::info!("{msg}");
                }
            }
            let status = format!("scan {} at {}: {line}", run.number, report.generated_at);
            if let Some(m) = &self.metrics {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.scans += 1;
                m.last_duration = took;
                m.sinks = stats;
                m.report = Some(Arc::new(report));
            }
            status
        };
        if self.ready {
            self.notifier.status(&status);
        } else {
            self.notifier.notify(&format!("READY=1\nSTATUS={}", status.replace('\n', " ")));
            self.ready = true;
        }
        if let Some(w) = self.watch.as_mut() {
            w.refresh();
        }
    }

    /// Whether this scan is shipped as a snapshot, and why: start, reload, `snapshot_interval`, or a sink
    /// dropped events since the last snapshot (its receivers then miss changes) and has caught up since,
    /// at most once per [`DROP_SNAPSHOT_GAP`].
    fn snapshot_reason(&mut self, stats: &[crate::sinks::SinkStats]) -> Option<&'static str> {
        let now = Instant::now();
        let dropped: u64 = stats.iter().map(|s| s.dropped).sum();
        let caught_up = stats.iter().all(|s| s.queue_depth == 0);
        let may_resend = !matches!(self.last_drop_snapshot, Some(t) if now < t + DROP_SNAPSHOT_GAP);
        let why = self.snapshot_why.take().or_else(|| {
            if now >= self.next_snapshot {
                Some("snapshot_interval")
            } else if dropped > self.dropped_seen && caught_up && may_resend {
                self.last_drop_snapshot = Some(now);
                Some("a sink dropped events")
            } else {
                None
            }
        });
        if why.is_some() {
            self.dropped_seen = dropped;
            self.next_snapshot = now + self.config.snapshot_interval;
        }
        why
    }

    /// A scan failed: before `READY=1` that ends the service; after, it is said in `STATUS=`, the log and
    /// an error event, and after [`FAILURES_UNHEALTHY`] in a row the watchdog pings stop.
    fn scan_failed(&mut self, run: &Running, why: String) {
        self.failures += 1;
        if let Some(m) = &self.metrics {
            m.lock().unwrap_or_else(|p| p.into_inner()).failures += 1;
        }
        tracing::error!("{why} ({}); {} in a row", run.reason, self.failures);
        if !self.ready {
            self.notifier.status(&why);
            self.fatal = Some(why);
            return;
        }
        let info = ScanInfo { number: run.number, reason: run.reason.clone(), snapshot: None };
        let event = failure_event(&mut self.seq, &self.host_name, &info, &why, self.failures);
        if let Some(sinks) = &self.sinks {
            sinks.publish(&[event]);
        }
        if self.failures == FAILURES_UNHEALTHY && self.notifier.watchdog().is_some() {
            tracing::error!(
                "{} scans in a row failed: no more watchdog pings, so the service manager can restart the agent",
                self.failures
            );
        }
        self.notifier.status(&format!("{why} ({} in a row)", self.failures));
        if let Some(w) = self.watch.as_mut() {
            w.refresh();
        }
    }

    /// Logs the warning and error findings the previous scan did not have: the first few of each code one
    /// per line, the rest of that code as one line with their number, so the log of a scan is bounded by
    /// the number of codes (the journal drops a service's lines past its rate limit). A finding that stays
    /// from scan to scan is logged once, when it appears.
    fn log_new_findings(&mut self, report: &Report) {
        const PER_CODE: usize = 3;
        let mut now = HashSet::new();
        let mut logged: std::collections::BTreeMap<(&str, Severity), (usize, u64)> = std::collections::BTreeMap::new();
        for f in report.findings.iter().filter(|f| f.severity >= Severity::Warning) {
            let key = (f.code.clone(), f.path.clone());
            if !self.known_findings.contains(&key) {
                let (lines, more) = logged.entry((f.code.as_str(), f.severity)).or_default();
                if *lines < PER_CODE {
                    *lines += 1;
                    let more_here = f.count.map(|n| format!(" ({n} findings)")).unwrap_or_default();
                    match f.severity {
                        Severity::Error => tracing::error!("{}: {}{more_here}", f.code, f.message),
                        _ => tracing::warn!("{}: {}{more_here}", f.code, f.message),
                    }
                } else {
                    *more += f.count.unwrap_or(1);
                }
            }
            now.insert(key);
        }
        for ((code, severity), (_, more)) in logged.into_iter().filter(|(_, (_, more))| *more > 0) {
            let word = if severity == Severity::Error { "error" } else { "warning" };
            let line = format!("{code}: {more} more new {word}(s) of this code in this scan; see the scan's findings");
            match severity {
                Severity::Error => tracing::error!("{line}"),
                _ => tracing::warn!("{line}"),
            }
        }
        self.known_findings = now;
    }

    /// A fresh `/metrics` state for a running agent, reading the running sinks' counters at each scrape.
    fn new_metrics_state(&self) -> Arc<Mutex<crate::metrics::State>> {
        let live_sinks = self.sinks.as_ref().map(Sinks::probe);
        Arc::new(Mutex::new(crate::metrics::State { agent: true, live_sinks, ..Default::default() }))
    }

    /// `metrics_listen` changed on reload: serve on the new address (the same counters and last scan),
    /// close the old listener, or stop serving when it is unset. A new address that cannot be bound keeps
    /// the old one serving, and is said in the log.
    async fn rebind_metrics(&mut self) {
        let old = self.metrics_server.as_ref().map(crate::metrics::Server::addr);
        let Some(addr) = self.config.metrics_listen else {
            if let Some(server) = self.metrics_server.take() {
                server.close().await;
            }
            self.metrics = None;
            tracing::info!("metrics_listen unset: no longer serving metrics");
            return;
        };
        let state = self.metrics.clone().unwrap_or_else(|| self.new_metrics_state());
        // The same port on another address (127.0.0.1:9469 to 0.0.0.0:9469) conflicts with the running
        // listener: that one is closed first, and opened again if the new one fails.
        let same_port = old.is_some_and(|o| o.port() == addr.port());
        if same_port {
            if let Some(server) = self.metrics_server.take() {
                server.close().await;
            }
        }
        match crate::metrics::serve(addr, state.clone()) {
            Ok(server) => {
                if let Some(old_server) = self.metrics_server.replace(server) {
                    old_server.close().await;
                }
                self.metrics = Some(state);
            }
            Err(e) => {
                tracing::error!(
                    "reload: cannot serve metrics on {addr}: {e}; {}",
                    old.map_or("metrics stay off".to_owned(), |a| format!("still serving on {a}"))
                );
                self.config.metrics_listen = old;
                if let (Some(a), None) = (old, &self.metrics_server) {
                    match crate::metrics::serve(a, state) {
                        Ok(server) => self.metrics_server = Some(server),
                        Err(e) => tracing::error!("metrics: cannot serve on {a} again: {e}"),
                    }
                }
                if self.metrics_server.is_none() {
                    self.metrics = None;
                }
            }
        }
    }

    async fn reload(&mut self) {
        tracing::info!("SIGHUP: reloading the configuration from {}", self.source);
        // logrotate's postrotate sends SIGHUP: file sinks reopen their path whatever the new file says.
        if let Some(sinks) = &self.sinks {
            sinks.reopen();
        }
        let new = match config::load(&self.source, &self.overrides).and_then(|c| config::check_roots(&c).map(|()| c)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e}");
                self.notifier.status(&format!("reload failed, running on the previous configuration: {e}"));
                return;
            }
        };
        self.notifier.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
        let old = std::mem::replace(&mut self.config, new);
        if old.metrics_listen != self.config.metrics_listen {
            self.rebind_metrics().await;
        }
        if old.log_level != self.config.log_level {
            self.log.set(&self.config.log_level);
        }
        if old.sinks != self.config.sinks {
            if let Some(old_sinks) = self.sinks.take() {
                tokio::spawn(old_sinks.shutdown(SINK_GRACE));
            }
            self.sinks = Some(Sinks::start(self.config.sinks.clone(), &self.host_name));
            if let (Some(m), Some(sinks)) = (&self.metrics, &self.sinks) {
                m.lock().unwrap_or_else(|p| p.into_inner()).live_sinks = Some(sinks.probe());
            }
        }
        let host_changed = old.root != self.config.root
            || old.proc_dir != self.config.proc_dir
            || old.docker_root != self.config.docker_root;
        if host_changed || old.watch != self.config.watch {
            self.watch = None;
            if self.config.watch {
                self.watch = Some(HostWatch::start(&self.config, self.changes_tx.clone()));
            }
        }
        self.debounce.retime(self.config.settle, self.config.max_delay);
        // Receivers that reset with the agent's configuration get the whole state again.
        self.snapshot_why = Some("reload");
        self.next_snapshot = self.next_snapshot - old.snapshot_interval + self.config.snapshot_interval;
        if old.incremental != self.config.incremental {
            self.incremental = self.config.incremental.then(|| {
                let c = &self.config;
                Arc::new(Mutex::new(Incremental::start(c.top_files, c.threads, c.reconcile_interval)))
            });
        } else if let Some(inc) = &self.incremental {
            // A scan in flight holds it; the new settings wait for it.
            let (top, threads, every) = (self.config.top_files, self.config.threads, self.config.reconcile_interval);
            let inc = inc.clone();
            tokio::task::spawn_blocking(move || {
                inc.lock().unwrap_or_else(|p| p.into_inner()).configure(top, threads, every)
            });
        }
        // The new interval counts from the last scan, as the old one did.
        self.next_interval = self.next_interval - old.interval + self.config.interval;
        if host_changed {
            self.debounce.note(Instant::now().into_std());
            self.pending.insert("configuration reloaded");
        }
        tracing::info!(
            "configuration reloaded: {}; interval {}, sinks {}",
            self.describe_host(),
            config::format_duration(self.config.interval),
            self.sink_names(),
        );
        self.notifier.notify("READY=1\nSTATUS=configuration reloaded");
    }

    async fn shutdown(mut self) {
        self.notifier.notify("STOPPING=1\nSTATUS=stopping");
        self.watch = None;
        if let Some(mut run) = self.scan.take() {
            match tokio::time::timeout(STOP_GRACE, &mut run.handle).await {
                Ok(res) => self.finish_scan(run, res),
                Err(_) => tracing::warn!(
                    "abandoning scan {} ({}), running for {} ms",
                    run.number,
                    run.reason,
                    run.started.elapsed().as_millis()
                ),
            }
        }
        if let Some(sinks) = self.sinks.take() {
            for (sink, left) in sinks.shutdown(SINK_GRACE).await {
                // Nobody reads standard output any more: nothing was expected there.
                if left > 0 && !(self.output_closed && sink == "stdout:") {
                    tracing::warn!("sink {sink}: {left} events not delivered at stop");
                }
            }
        }
        tracing::info!("stopped after {} scans", self.scans);
    }

    fn describe_host(&self) -> String {
        let o = self.config.scan_options();
        let mut s =
            format!("docker root {}, mount table {}/1/mountinfo", o.docker_root.display(), o.proc_dir.display());
        if o.root.as_os_str() != "/" {
            s.push_str(&format!(", host at {}", o.root.display()));
        }
        if !self.config.watch {
            s.push_str(", not watching for changes");
        }
        s
    }

    fn sink_names(&self) -> String {
        self.config.sinks.iter().map(|s| s.kind.to_string()).collect::<Vec<_>>().join(", ")
    }
}

async fn wait_scan(scan: &mut Option<Running>) -> ScanResult {
    match scan {
        Some(run) => (&mut run.handle).await,
        None => std::future::pending().await,
    }
}

/// One line for the log and `STATUS=`: what the scan saw.
fn summary(r: &Report) -> String {
    let t = &r.totals;
    let count = |s: &str| t.findings.get(s).copied().unwrap_or(0);
    format!(
        "{} containers ({} running), writable {}, {} images, {} overlay mounts ({} unowned), findings: {} error, {} warning, {} info",
        t.containers,
        t.containers_running,
        human_bytes(t.writable_apparent_bytes),
        t.images,
        t.overlay_mounts,
        t.unowned_mounts,
        count("error"),
        count("warning"),
        count("info"),
    )
}

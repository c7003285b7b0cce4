//! Shipping events to log collectors. Each configured sink gets its own bounded queue and its own task, so
//! a slow or dead collector never blocks the scan or the other sinks. Delivery is at-least-once: a batch is
//! removed from a sink only once its transport accepted it (HTTP: a 2xx answer), the batch in flight when a
//! connection broke is sent again after reconnecting (exponential back-off with full jitter, 1 s to 60 s),
//! and on stream transports the events written in the last seconds before a break are sent again too,
//! since a killed collector loses what sat unread in its socket. Receivers drop duplicates by `event.id`.
//! When a queue is full the oldest events are dropped and counted.

pub mod backoff;
pub mod check;
pub mod config;
pub mod fit;
pub mod queue;
pub mod transport;
pub mod uri;
pub mod wire;

use backoff::Backoff;
use queue::{Item, Queue};
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use transport::Fsync;
use transport::{Conn, TransportOptions};
pub use uri::SinkKind;

/// One sink's settings.
#[derive(Clone, PartialEq)]
pub struct SinkConfig {
    /// Where it sends.
    pub kind: SinkKind,
    /// Events held while the collector is slow or down; the oldest are dropped beyond this.
    pub queue_size: usize,
    /// Events per write or POST at most.
    pub batch_size: usize,
    /// Extra HTTP headers, e.g. `Authorization`; never logged.
    pub headers: Vec<(String, String)>,
    /// File sink durability.
    pub fsync: Fsync,
    /// Syslog facility number (default 3, daemon).
    pub facility: u8,
    /// Bound on one connect or one batch.
    pub timeout: Duration,
}

impl SinkConfig {
    /// Defaults for `kind`: a queue of 10,000 events, batches of 500, fsync per batch, facility daemon,
    /// 10 s timeout.
    pub fn new(kind: SinkKind) -> SinkConfig {
        SinkConfig {
            kind,
            queue_size: 10_000,
            batch_size: 500,
            headers: Vec::new(),
            fsync: Fsync::Batch,
            facility: wire::DEFAULT_FACILITY,
            timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for SinkConfig {
    // Header values carry credentials: they never reach a log line, even at debug level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("SinkConfig")
            .field("kind", &self.kind)
            .field("queue_size", &self.queue_size)
            .field("batch_size", &self.batch_size)
            .field("headers", &headers)
            .field("fsync", &self.fsync)
            .field("facility", &self.facility)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How long recently written stream events are kept for resending after a break.
const REPLAY_WINDOW: Duration = Duration::from_secs(30);
/// At most this many recently written events are kept for resending.
const REPLAY_MAX: usize = 2_000;
/// A batch stays under this many bytes of JSON (one event may exceed it alone).
const BATCH_MAX_BYTES: usize = 1 << 20;

/// Raised when the reader of standard output, as a sink, went away (`ovlaudit run | head -1`).
static STDOUT_CLOSED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Resolves once a `stdout:` sink found its reader gone: the service then stops quietly, with success,
/// as command line tools do when their output is cut short.
pub async fn stdout_closed() {
    STDOUT_CLOSED.notified().await;
}

/// One sink's counters, as they appear in the `ovlaudit.scan` event and the agent's log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink's address.
    pub sink: String,
    /// Events the transport accepted (resent events count again).
    pub sent: u64,
    /// Events sent again after a failure.
    pub retried: u64,
    /// Events dropped because the queue was full.
    pub dropped: u64,
    /// Events cut to fit the transport's size limit (what was cut is in their `ovlaudit.truncated`).
    pub cut_to_fit: u64,
    /// Events dropped because no cut made them fit the transport's size limit.
    pub dropped_too_large: u64,
    /// Events waiting now.
    pub queue_depth: u64,
    /// Failed connects and sends.
    pub failures: u64,
    /// Whether the sink has a working connection now.
    pub connected: bool,
    /// The last failure, if any since the last success.
    pub last_error: Option<String>,
}

/// Reads the counters of running sinks (see [`Sinks::probe`]).
#[derive(Clone)]
pub struct SinkProbe(Vec<(String, Arc<Queue>, Arc<Counters>)>);

impl std::fmt::Debug for SinkProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _, _)| name)).finish()
    }
}

impl SinkProbe {
    /// Every sink's counters now.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.0
            .iter()
            .map(|(name, queue, counters)| SinkStats {
                sink: name.clone(),
                sent: counters.sent.load(Ordering::Relaxed),
                retried: counters.retried.load(Ordering::Relaxed),
                dropped: queue.dropped(),
                cut_to_fit: counters.cut_to_fit.load(Ordering::Relaxed),
                dropped_too_large: counters.dropped_too_large.load(Ordering::Relaxed),
                queue_depth: queue.depth() as u64,
                failures: counters.failures.load(Ordering::Relaxed),
                connected: counters.connected.load(Ordering::Relaxed),
                last_error: counters.last_error.lock().ok().and_then(|e| e.clone()),
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    retried: AtomicU64,
    cut_to_fit: AtomicU64,
    dropped_too_large: AtomicU64,
    failures: AtomicU64,
    connected: AtomicBool,
    reopen: AtomicBool,
    last_error: Mutex<Option<String>>,
}

struct Handle {
    name: String,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

/// Every configured sink, running.
pub struct Sinks {
    handles: Vec<Handle>,
}

impl Sinks {
    /// Starts one task per sink on the current tokio runtime.
    pub fn start(configs: Vec<SinkConfig>, hostname: &str) -> Sinks {
        let handles = configs
            .into_iter()
            .map(|cfg| {
                let queue = Queue::new(cfg.queue_size);
                let counters = Arc::new(Counters::default());
                let name = cfg.kind.to_string();
                let worker = Worker {
                    opts: TransportOptions {
                        headers: cfg.headers.clone(),
                        fsync: cfg.fsync,
                        facility: cfg.facility,
                        hostname: hostname.to_owned(),
                        timeout: cfg.timeout,
                    },
                    cfg,
                    queue: queue.clone(),
                    counters: counters.clone(),
                };
                Handle { name, queue, counters, task: tokio::spawn(worker.run()) }
            })
            .collect();
        Sinks { handles }
    }

    /// Queues events for every sink. Never blocks: a full queue drops its oldest events.
    pub fn publish(&self, events: &[Value]) {
        let items: Vec<Item> = events.iter().map(item_of).collect();
        for h in &self.handles {
            h.queue.push_all(items.iter().cloned());
        }
    }

    /// Every sink's counters now.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.probe().stats()
    }

    /// A handle that reads every sink's counters whenever asked (`/metrics` reads them at each scrape),
    /// valid while these sinks run.
    pub fn probe(&self) -> SinkProbe {
        SinkProbe(self.handles.iter().map(|h| (h.name.clone(), h.queue.clone(), h.counters.clone())).collect())
    }

    /// Asks file sinks to reopen their file (after an external rotation; sent on SIGHUP).
    pub fn reopen(&self) {
        for h in &self.handles {
            h.counters.reopen.store(true, Ordering::Relaxed);
            h.queue.wake();
        }
    }

    /// Sends what is queued, waiting at most `deadline` in all, then stops every sink. Returns what was
    /// still queued (lost) per sink.
    pub async fn shutdown(self, deadline: Duration) -> Vec<(String, u64)> {
        for h in &self.handles {
            h.queue.close();
        }
        let until = tokio::time::Instant::now() + deadline;
        let mut left = Vec::new();
        for h in self.handles {
            let mut task = h.task;
            if tokio::time::timeout_at(until, &mut task).await.is_err() {
                task.abort();
            }
            left.push((h.name, h.queue.depth() as u64));
        }
        left
    }
}

/// Turns an event into a queue item: serialized once, routing fields copied out.
pub fn item_of(ev: &Value) -> Item {
    let s = |v: &Value| v.as_str().map(Arc::<str>::from);
    let severity = match ev.pointer("/ovlaudit/finding/severity").and_then(Value::as_str) {
        Some("error") => 3,
        Some("warning") => 4,
        _ => 6,
    };
    Item {
        json: Arc::from(ev.to_string()),
        dataset: ev.pointer("/event/dataset").and_then(s).unwrap_or_else(|| Arc::from("ovlaudit")),
        container_id: ev.pointer("/container/id").and_then(s),
        container_name: ev.pointer("/container/name").and_then(s),
        severity,
        event_id: ev.pointer("/event/id").and_then(s).unwrap_or_else(|| Arc::from("")),
        sequence: ev.pointer("/event/sequence").and_then(Value::as_u64).unwrap_or(0),
    }
}

struct Worker {
    cfg: SinkConfig,
    opts: TransportOptions,
    queue: Arc<Queue>,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self) {
        let mut conn: Option<Conn> = None;
        let mut in_flight: Vec<Item> = Vec::new();
        let mut recent: VecDeque<(Instant, Item)> = VecDeque::new();
        let mut backoff = Backoff::new();
        loop {
            if self.counters.reopen.swap(false, Ordering::Relaxed) && matches!(conn, Some(Conn::File { .. })) {
                conn = None;
            }
            if in_flight.is_empty() {
                in_flight = self.fit(self.queue.take(self.cfg.batch_size, BATCH_MAX_BYTES));
            }
            if in_flight.is_empty() {
                if self.queue.is_closed() {
                    return;
                }
                match &conn {
                    // Watch an idle stream too, so a collector that goes away is noticed when it goes,
                    // while what it had not yet read is still among the recent events.
                    Some(c) if self.cfg.kind.is_stream() => {
                        tokio::select! {
                            _ = self.queue.wait() => {}
                            _ = transport::readable(c) => {
                                if transport::peer_closed(c) {
                                    self.broken(&mut conn, &mut in_flight, &mut recent, "collector closed the connection".into());
                                } else {
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                            }
                        }
                    }
                    _ => self.queue.wait().await,
                }
                continue;
            }
            if conn.is_none() {
                match transport::connect(&self.cfg.kind, &self.opts).await {
                    Ok(c) => {
                        conn = Some(c);
                        self.counters.connected.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.fail(format!("connect: {e}"));
                        if self.sleep(backoff.next_delay()).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            match transport::send(c, &self.cfg.kind, &in_flight, &self.opts).await {
                Ok(too_large) => {
                    backoff.reset();
                    self.counters.dropped_too_large.fetch_add(too_large, Ordering::Relaxed);
                    self.counters.sent.fetch_add(in_flight.len() as u64 - too_large, Ordering::Relaxed);
                    if let Ok(mut e) = self.counters.last_error.lock() {
                        *e = None;
                    }
                    if self.cfg.kind.is_stream() {
                        let now = Instant::now();
                        recent.extend(in_flight.drain(..).map(|i| (now, i)));
                        while recent.len() > REPLAY_MAX
                            || recent.front().is_some_and(|(t, _)| now.duration_since(*t) > REPLAY_WINDOW)
                        {
                            recent.pop_front();
                        }
                    }
                    in_flight.clear();
                }
                Err(e) if self.cfg.kind == SinkKind::Stdout && e.kind() == std::io::ErrorKind::BrokenPipe => {
                    STDOUT_CLOSED.notify_one();
                    return;
                }
                Err(e) => {
                    self.broken(&mut conn, &mut in_flight, &mut recent, format!("send: {e}"));
                    if self.sleep(backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }

    /// Cuts each event of a new batch to the transport's size limit, dropping (and counting) those no cut
    /// makes fit: an event over a datagram's limit would fail the same way on every retry.
    fn fit(&self, batch: Vec<Item>) -> Vec<Item> {
        let Some(limit) = transport::datagram_limit(&self.cfg.kind) else { return batch };
        let max = limit - transport::DATAGRAM_OVERHEAD;
        batch
            .into_iter()
            .filter_map(|it| match fit::fit(it, max) {
                fit::Fitted::Whole(it) => Some(it),
                fit::Fitted::Cut(it) => {
                    self.counters.cut_to_fit.fetch_add(1, Ordering::Relaxed);
                    Some(it)
                }
                fit::Fitted::Dropped => {
                    self.counters.dropped_too_large.fetch_add(1, Ordering::Relaxed);
                    None
                }
            })
            .collect()
    }

    /// A connection failed: drop it, and put recently written stream events back in front of the batch.
    fn broken(
        &self,
        conn: &mut Option<Conn>,
        in_flight: &mut Vec<Item>,
        recent: &mut VecDeque<(Instant, Item)>,
        why: String,
    ) {
        *conn = None;
        let replay: Vec<Item> = recent.drain(..).map(|(_, i)| i).collect();
        let resent = replay.len() + in_flight.len();
        self.counters.retried.fetch_add(resent as u64, Ordering::Relaxed);
        let mut all = replay;
        all.append(in_flight);
        *in_flight = all;
        self.fail(why);
    }

    fn fail(&self, why: String) {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        self.counters.connected.store(false, Ordering::Relaxed);
        if let Ok(mut e) = self.counters.last_error.lock() {
            *e = Some(why);
        }
    }

    /// Sleeps, cut short by shutdown; returns true when the sink should stop now.
    async fn sleep(&self, d: Duration) -> bool {
        let until = tokio::time::Instant::now() + d;
        loop {
            if self.queue.is_closed() {
                // Shutting down and the collector is failing: give up rather than hold the exit.
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return false,
                _ = self.queue.wait() => {}
            }
        }
    }
}

//! Prometheus metrics built from a report: the text exposition format (version 0.0.4), or OpenMetrics
//! 1.0 when the scraper asks for it, served on `/metrics` by `run` (`metrics_listen`) and written by
//! `report --format prometheus` for node_exporter's textfile collector.
//!
//! A scrape never starts a walk: the server answers from the last completed scan. Cardinality is bounded
//! by the host: one series per container and family, one per image, one per Kubernetes pod, one per
//! (engine, orphan kind), one per (finding code, severity), one per sink.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use collector::kubernetes::PodReport;
use collector::report::{ContainerReport, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::sinks::{SinkProbe, SinkStats};

/// Content type of the Prometheus text format.
pub const TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics.
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the metrics are made of: the last completed scan and the agent's own counters.
#[derive(Debug, Default)]
pub struct State {
    /// The last completed scan's report.
    pub report: Option<Arc<Report>>,
    /// Scans completed since start.
    pub scans: u64,
    /// Scans failed since start.
    pub failures: u64,
    /// How long the last completed scan took.
    pub last_duration: Duration,
    /// The sinks' counters as of the last scan's end, where no [`State::live_sinks`] reads them.
    pub sinks: Vec<SinkStats>,
    /// The running sinks, whose counters each scrape reads as they are then.
    pub live_sinks: Option<SinkProbe>,
    /// Whether these are a running agent's metrics (with its scan and sink counters) rather than one
    /// report's.
    pub agent: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

struct Family {
    /// The name without `_total` for counters.
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

struct Families(Vec<Family>);

impl Families {
    fn add(&mut self, name: &'static str, kind: Kind, help: &'static str) -> &mut Family {
        self.0.push(Family { name, help, kind, samples: Vec::new() });
        let last = self.0.len() - 1;
        &mut self.0[last]
    }
}

impl Family {
    fn sample(&mut self, labels: Vec<(&'static str, String)>, value: impl Into<f64>) -> &mut Self {
        self.samples.push((labels, value.into()));
        self
    }
}

/// The container's labels on its series: engine, its namespace (containerd's; empty for other engines,
/// since one id may exist in two containerd namespaces), id, name, image, and for a pod's container the
/// Kubernetes namespace, pod and container (empty otherwise).
fn container_labels(c: &ContainerReport) -> Vec<(&'static str, String)> {
    let pod = c.kubernetes.as_ref();
    let image = if c.image.name.is_empty() { c.image.id.clone() } else { c.image.name.clone() };
    vec![
        ("engine", c.runtime.clone()),
        ("engine_namespace", c.namespace.clone().unwrap_or_default()),
        ("id", c.id.clone()),
        ("name", c.name.clone()),
        ("image", image),
        ("namespace", pod.map(|p| p.namespace.clone()).unwrap_or_default()),
        ("pod", pod.map(|p| p.pod.clone()).unwrap_or_default()),
        ("container", pod.map(|p| p.container.clone()).unwrap_or_default()),
    ]
}

fn families(state: &State) -> Families {
    let mut f = Families(Vec::new());
    f.add("ovlaudit_build_info", Kind::Gauge, "Always 1; the version of the agent that serves these metrics.")
        .sample(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1.0);
    if !state.agent {
        if let Some(r) = state.report.as_deref() {
            f.add("ovlaudit_scan_duration_seconds", Kind::Gauge, "How long the last completed scan took.")
                .sample(vec![], r.scan_duration_ms as f64 / 1000.0);
            report_families(&mut f, r);
        }
        return f;
    }
    f.add("ovlaudit_scans", Kind::Counter, "Scans completed since the agent started.")
        .sample(vec![], state.scans as f64);
    f.add("ovlaudit_scan_failures", Kind::Counter, "Scans failed since the agent started.")
        .sample(vec![], state.failures as f64);
    f.add("ovlaudit_scan_duration_seconds", Kind::Gauge, "How long the last completed scan took.")
        .sample(vec![], state.last_duration.as_secs_f64());
    type SinkPick = fn(&SinkStats) -> u64;
    let per_sink: [(&'static str, &'static str, SinkPick); 2] = [
        ("ovlaudit_sink_events_sent", "Events a sink's transport accepted.", |s: &SinkStats| s.sent),
        ("ovlaudit_sink_events_dropped", "Events a sink dropped because its queue was full.", |s: &SinkStats| {
            s.dropped
        }),
    ];
    let sinks = state.live_sinks.as_ref().map_or_else(|| state.sinks.clone(), SinkProbe::stats);
    for (name, help, pick) in per_sink {
        let fam = f.add(name, Kind::Counter, help);
        for s in &sinks {
            fam.sample(vec![("sink", s.sink.clone())], pick(s) as f64);
        }
    }
    let fam = f.add("ovlaudit_sink_events_queued", Kind::Gauge, "Events waiting in a sink's queue.");
    for s in &sinks {
        fam.sample(vec![("sink", s.sink.clone())], s.queue_depth as f64);
    }
    let Some(r) = state.report.as_deref() else { return f };
    report_families(&mut f, r);
    f
}

fn report_families(f: &mut Families, r: &Report) {
    if let Ok(t) = time_of(&r.generated_at) {
        f.add("ovlaudit_last_scan_timestamp_seconds", Kind::Gauge, "When the last completed scan started, Unix time.")
            .sample(vec![], t);
    }
    type Pick = fn(&ContainerReport) -> Option<u64>;
    let per_container: [(&'static str, &'static str, Pick); 7] = [
        (
            "ovlaudit_container_writable_apparent_bytes",
            "Apparent bytes of a container's writable layer (as SizeRw).",
            |c| c.writable.as_ref().map(|w| w.usage.apparent_bytes),
        ),
        (
            "ovlaudit_container_writable_allocated_bytes",
            "Bytes allocated on disk by a container's writable layer.",
            |c| c.writable.as_ref().map(|w| w.usage.allocated_bytes),
        ),
        ("ovlaudit_container_writable_files", "Regular files in a container's writable layer.", |c| {
            c.writable.as_ref().map(|w| w.usage.files)
        }),
        ("ovlaudit_container_copy_up_bytes", "Bytes of files a container copied up over an image's file.", |c| {
            c.writable.as_ref().and_then(|w| w.copy_ups.as_ref()).map(|u| u.bytes)
        }),
        ("ovlaudit_container_shadowed_bytes", "Image bytes a container deleted or hid, still on disk.", |c| {
            c.writable.as_ref().and_then(|w| w.shadowed.as_ref()).map(|s| s.bytes)
        }),
        ("ovlaudit_container_log_bytes", "Bytes of a container's log files.", |c| c.log_bytes),
        ("ovlaudit_container_running", "1 if the container is running, else 0.", |c| {
            Some(u64::from(c.state == "running"))
        }),
    ];
    for (name, help, pick) in per_container {
        let fam = f.add(name, Kind::Gauge, help);
        for c in &r.containers {
            if let Some(v) = pick(c) {
                fam.sample(container_labels(c), v as f64);
            }
        }
    }
    let fam = f.add(
        "ovlaudit_container_sandbox",
        Kind::Gauge,
        "1 for a Kubernetes pod's sandbox (pause) container, 0 for its other containers.",
    );
    for c in &r.containers {
        if let Some(p) = &c.kubernetes {
            fam.sample(container_labels(c), u8::from(p.sandbox));
        }
    }
    type PodPick = fn(&PodReport) -> u64;
    let per_pod: [(&'static str, &'static str, PodPick); 4] = [
        ("ovlaudit_pod_containers", "Containers of a Kubernetes pod on this node, its sandbox included.", |u| {
            u.containers.len() as u64 + u64::from(u.sandbox_id.is_some())
        }),
        ("ovlaudit_pod_writable_apparent_bytes", "Apparent bytes of a pod's containers' writable layers.", |u| {
            u.writable_apparent_bytes
        }),
        ("ovlaudit_pod_writable_allocated_bytes", "Allocated bytes of a pod's containers' writable layers.", |u| {
            u.writable_allocated_bytes
        }),
        ("ovlaudit_pod_log_bytes", "Bytes of a pod's containers' log files.", |u| u.log_bytes),
    ];
    for (name, help, pick) in per_pod {
        let fam = f.add(name, Kind::Gauge, help);
        for u in &r.pods {
            let labels = vec![("namespace", u.namespace.clone()), ("pod", u.name.clone()), ("uid", u.uid.clone())];
            fam.sample(labels, pick(u) as f64);
        }
    }
    type ImgPick = fn(&collector::report::ImageReport) -> u64;
    let per_image: [(&'static str, &'static str, ImgPick); 4] = [
        ("ovlaudit_image_size_bytes", "Bytes of an image's layers.", |i| i.size_bytes),
        ("ovlaudit_image_shared_bytes", "Bytes of an image's layers that other images share.", |i| i.shared_bytes),
        ("ovlaudit_image_unique_bytes", "Bytes of an image's layers no other image has.", |i| i.unique_bytes),
        ("ovlaudit_image_containers", "Containers using an image.", |i| i.containers),
    ];
    for (name, help, pick) in per_image {
        let fam = f.add(name, Kind::Gauge, help);
        for i in &r.images {
            let image = i.tags.first().cloned().unwrap_or_default();
            let ns = i.namespace.clone().unwrap_or_default();
            let labels =
                vec![("engine", i.runtime.clone()), ("engine_namespace", ns), ("id", i.id.clone()), ("image", image)];
            fam.sample(labels, pick(i) as f64);
        }
    }
    let mut orphans: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for o in &r.orphans {
        let e = orphans.entry((o.runtime.clone(), o.kind.clone())).or_default();
        e.0 += 1;
        e.1 += o.allocated_bytes;
    }
    let fam = f.add("ovlaudit_orphans", Kind::Gauge, "Storage that belongs to nobody: entries, by engine and kind.");
    for ((engine, kind), (n, _)) in &orphans {
        fam.sample(vec![("engine", engine.clone()), ("kind", kind.clone())], *n as f64);
    }
    let fam = f.add(
        "ovlaudit_orphan_allocated_bytes",
        Kind::Gauge,
        "Bytes allocated by storage that belongs to nobody, by engine and kind.",
    );
    for ((engine, kind), (_, b)) in &orphans {
        fam.sample(vec![("engine", engine.clone()), ("kind", kind.clone())], *b as f64);
    }
    let mut findings: BTreeMap<(String, String), u64> = BTreeMap::new();
    for x in &r.findings {
        *findings.entry((x.code.clone(), severity_word(x))).or_default() += x.count.unwrap_or(1);
    }
    let fam = f.add("ovlaudit_findings", Kind::Gauge, "Findings of the last scan, by code and severity.");
    for ((code, severity), n) in &findings {
        fam.sample(vec![("code", code.clone()), ("severity", severity.clone())], *n as f64);
    }
    let t = &r.totals;
    for (name, help, v) in [
        ("ovlaudit_volume_bytes", "Apparent bytes of the local volumes.", t.volume_bytes),
        ("ovlaudit_build_cache_bytes", "Bytes of build cache records not shared with images.", t.build_cache_bytes),
        ("ovlaudit_overlay_mounts", "Overlay mounts in the mount table, one per superblock.", t.overlay_mounts),
        ("ovlaudit_unowned_mounts", "Overlay mounts that belong to no known container.", t.unowned_mounts),
    ] {
        f.add(name, Kind::Gauge, help).sample(vec![], v as f64);
    }
}

fn severity_word(f: &collector::finding::Finding) -> String {
    match serde_json::to_value(f.severity) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{:?}", f.severity).to_lowercase(),
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time as the reports write it (`2026-01-02T03:04:05Z`, with
/// or without fractions).
fn time_of(s: &str) -> Result<f64, ()> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(());
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok()).ok_or(());
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let frac = match s.get(19..).and_then(|r| r.strip_prefix('.')) {
        Some(r) => format!("0.{}", r.trim_end_matches('Z')).parse::<f64>().unwrap_or(0.0),
        None => 0.0,
    };
    Ok((days * 86400 + h * 3600 + mi * 60 + se) as f64 + frac)
}

fn escape(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The metrics in the Prometheus text format, or in OpenMetrics (`openmetrics`).
pub fn render(state: &State, openmetrics: bool) -> String {
    let mut out = String::new();
    for fam in families(state).0 {
        let (declared, sample_name) = match (fam.kind, openmetrics) {
            (Kind::Counter, true) => (fam.name.to_owned(), format!("{}_total", fam.name)),
            (Kind::Counter, false) => (format!("{}_total", fam.name), format!("{}_total", fam.name)),
            (Kind::Gauge, _) => (fam.name.to_owned(), fam.name.to_owned()),
        };
        let kind = if fam.kind == Kind::Counter { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP {declared} {}", fam.help);
        let _ = writeln!(out, "# TYPE {declared} {kind}");
        for (labels, v) in &fam.samples {
            out.push_str(&sample_name);
            if !labels.is_empty() {
                let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = write!(out, "{{{}}}", inner.join(","));
            }
            let _ = writeln!(out, " {}", number(*v));
        }
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// The metrics of one report, for `report --format prometheus`.
pub fn render_report(report: Report) -> String {
    let state = State { report: Some(Arc::new(report)), scans: 1, ..State::default() };
    render(&state, false)
}

/// A running `/metrics` listener; dropping it closes the listening socket (requests being answered
/// finish).
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The address asked for (`metrics_listen`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits until the listening socket is closed, so its address can be bound again.
    pub async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `/metrics` on `addr` until the returned [`Server`] is dropped; the listener is bound before
/// this returns, so a bad or busy address is an error here.
/// Needs a running tokio runtime (it registers the socket with it).
pub fn serve(addr: SocketAddr, state: Arc<Mutex<State>>) -> std::io::Result<Server> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr().unwrap_or(addr));
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, state)).await;
                    });
                }
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(Server { addr, task })
}

/// Answers one request (HTTP/1.1, connection closed after it).
async fn answer(mut stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return respond(&mut stream, "431 Request Header Fields Too Large", TEXT_TYPE, "headers too large\n").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", TEXT_TYPE, "only GET\n").await;
    }
    if path != "/metrics" {
        return respond(&mut stream, "404 Not Found", TEXT_TYPE, "ovlaudit serves /metrics\n").await;
    }
    let openmetrics = accept.contains("application/openmetrics-text");
    let body = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        render(&s, openmetrics)
    };
    let ctype = if openmetrics { OPENMETRICS_TYPE } else { TEXT_TYPE };
    respond(&mut stream, "200 OK", ctype, if method == "HEAD" { "" } else { &body }).await
}

async fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_unix_seconds() {
        assert_eq!(time_of("1970-01-01T00:00:00Z"), Ok(0.0));
        assert_eq!(time_of("2000-03-01T00:00:01Z"), Ok(951868801.0));
        assert_eq!(time_of("2000-03-01T00:00:01.5Z"), Ok(951868801.5));
        assert!(time_of("yesterday").is_err());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn counters_are_named_per_format() {
        let s = State { scans: 3, agent: true, ..State::default() };
        let text = render(&s, false);
        assert!(text.contains("# TYPE ovlaudit_scans_total counter\novlaudit_scans_total 3\n"), "{text}");
        let om = render(&s, true);
        assert!(om.contains("# TYPE ovlaudit_scans counter\novlaudit_scans_total 3\n"), "{om}");
        assert!(om.ends_with("# EOF\n"));
    }
}

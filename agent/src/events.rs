//! Events for programs and log collectors: one JSON object per line with nested Elastic Common Schema
//! names (`@timestamp`, `event.*`, `host.name`, `agent.*`, `container.*`) and ovlaudit's own objects under
//! `ovlaudit.*` — the same objects as in the report document.
//!
//! Datasets: `ovlaudit.container`, `ovlaudit.image`, `ovlaudit.orphan`, `ovlaudit.finding` (one event per
//! thing that appeared, changed or went away: `event.type` `creation`, `change`, `deletion`, or `info` when
//! a snapshot re-states it; see [`crate::changes`]), and `ovlaudit.scan` (one summary per scan, last, or a
//! failure). Each thing carries its identity in `ovlaudit.key`. `event.id` is unique per event (this run's
//! random `agent.ephemeral_id` plus the sequence number) so that a receiver can drop duplicates after a
//! retry; `event.sequence` increases by one per event for the life of the process.

use crate::changes::{disambiguate, stable_hash, ChangeType, Counts, Delta, Thing, Tracker};
use crate::sinks::SinkStats;
use collector::report::Report;
use serde_json::{json, Map, Value};
use std::path::Path;

/// The largest event, serialized, that ovlaudit emits: under rsyslog's and most collectors' line limits
/// once raised from their defaults (rsyslog's default is 8 KiB: set `$MaxMessageSize 64k`). Bigger events
/// are cut down by [`fit`] and say what was cut in `ovlaudit.truncated`.
pub const MAX_EVENT_BYTES: usize = 30 * 1024;

/// Numbers events for one run of the agent.
pub struct Sequencer {
    agent_id: String,
    ephemeral_id: String,
    next: u64,
}

impl Sequencer {
    /// A new run: `agent.id` is the host's machine id (read under `root`) when it has one, so that the
    /// same host keeps the same agent id across restarts; `agent.ephemeral_id` is new each run.
    pub fn new(root: &Path) -> Sequencer {
        let machine_id = std::fs::read_to_string(collector::scan::under_root(root, Path::new("/etc/machine-id")))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let ephemeral_id = random_id();
        Sequencer {
            agent_id: if machine_id.is_empty() { ephemeral_id.clone() } else { machine_id },
            ephemeral_id,
            next: 1,
        }
    }

    fn envelope(&mut self, r: &Report, dataset: &str, kind: &str) -> Map<String, Value> {
        self.envelope_at(&r.generated_at, &r.host.name, dataset, kind)
    }

    fn envelope_at(&mut self, timestamp: &str, host: &str, dataset: &str, kind: &str) -> Map<String, Value> {
        let seq = self.next;
        self.next += 1;
        let mut m = Map::new();
        m.insert("@timestamp".into(), json!(timestamp));
        m.insert(
            "event".into(),
            json!({
                "kind": kind,
                "dataset": dataset,
                "module": "ovlaudit",
                "id": format!("{}-{seq}", self.ephemeral_id),
                "sequence": seq,
            }),
        );
        m.insert("host".into(), json!({ "name": host }));
        m.insert(
            "agent".into(),
            json!({
                "type": "ovlaudit",
                "name": "ovlaudit",
                "version": env!("CARGO_PKG_VERSION"),
                "id": self.agent_id,
                "ephemeral_id": self.ephemeral_id,
            }),
        );
        m
    }
}

/// The event `check-sinks` sends: dataset `ovlaudit.check`, nothing under `ovlaudit` but a note.
pub fn check_event(seq: &mut Sequencer, host: &str) -> Value {
    let now = collector::scan::rfc3339(std::time::SystemTime::now());
    let mut m = seq.envelope_at(&now, host, "ovlaudit.check", "event");
    set_type(&mut m, "info");
    m.insert("ovlaudit".into(), json!({ "check": "a test event from ovlaudit check-sinks" }));
    Value::Object(m)
}

/// Every thing a report describes, as the tracker compares them: containers, images, orphans, findings.
pub fn things(r: &Report) -> Vec<Thing> {
    let mut out = Vec::new();
    let body = |v: Value| v.as_object().cloned().unwrap_or_default();
    for c in &r.containers {
        out.push(Thing {
            dataset: "ovlaudit.container",
            kind: "state",
            key: format!(
                "{}/{}{}",
                c.runtime,
                c.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
                c.id
            ),
            body: body(json!({
                "container": {
                    "id": c.id,
                    "name": c.name,
                    "runtime": c.runtime,
                    "image": { "name": c.image.tags.first().unwrap_or(&c.image.name), "id": c.image.id },
                    "labels": c.labels,
                },
                "ovlaudit": { "container": c },
                "orchestrator": c.kubernetes.as_ref().map(|k| orchestrator(&k.namespace, &k.pod, &k.uid)),
            }))
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect(),
        });
    }
    for p in &r.pods {
        out.push(Thing {
            dataset: "ovlaudit.pod",
            kind: "state",
            key: format!("{}/{}/{}/{}", p.runtime, p.namespace, p.name, p.uid),
            body: body(json!({
                "orchestrator": orchestrator(&p.namespace, &p.name, &p.uid),
                "ovlaudit": { "pod": p },
            })),
        });
    }
    for i in &r.images {
        out.push(Thing {
            dataset: "ovlaudit.image",
            kind: "state",
            key: format!(
                "{}/{}{}",
                i.runtime,
                i.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
                i.id
            ),
            body: body(json!({ "ovlaudit": { "image": i } })),
        });
    }
    for o in &r.orphans {
        out.push(Thing {
            dataset: "ovlaudit.orphan",
            kind: "state",
            key: format!("{}/{}", o.runtime, o.path),
            body: body(json!({ "ovlaudit": { "orphan": o } })),
        });
    }
    for v in &r.volumes {
        out.push(Thing {
            dataset: "ovlaudit.volume",
            kind: "state",
            key: format!("docker/{}", v.name),
            body: body(json!({ "ovlaudit": { "volume": v } })),
        });
    }
    for b in &r.build_cache {
        out.push(Thing {
            dataset: "ovlaudit.build_cache",
            kind: "state",
            key: format!("docker/{}", b.id),
            body: body(json!({ "ovlaudit": { "build_cache": b } })),
        });
    }
    for f in &r.findings {
        let severity = serde_json::to_value(f.severity).ok();
        let severity = severity.as_ref().and_then(Value::as_str).unwrap_or("");
        out.push(Thing {
            dataset: "ovlaudit.finding",
            kind: "event",
            key: format!(
                "{}/{}",
                f.code,
                stable_hash(&[severity, &f.code, f.path.as_deref().unwrap_or(""), &f.message])
            ),
            body: body(json!({ "ovlaudit": { "finding": f } })),
        });
    }
    disambiguate(&mut out);
    out
}

/// Elastic Common Schema's `orchestrator` object for a Kubernetes pod.
fn orchestrator(namespace: &str, pod: &str, uid: &str) -> Value {
    json!({ "type": "kubernetes", "namespace": namespace, "resource": { "type": "pod", "name": pod, "id": uid } })
}

/// What the scan summary says about the scan itself.
#[derive(Debug, Clone)]
pub struct ScanInfo {
    /// The scan's number in this run, from 1.
    pub number: u64,
    /// Why it ran: `start`, `interval`, `mount table changed`, …
    pub reason: String,
    /// Why every thing is re-stated (`start`, `reload`, `snapshot_interval`, …), if it is: then a consumer
    /// drops what the snapshot does not name.
    pub snapshot: Option<&'static str>,
}

/// The events of one scan, in order: the deltas (containers, images, orphans, findings, then deletions),
/// then the scan summary, which carries the sinks' delivery counters as they stood when the scan ended
/// (`sinks`, empty for a one-shot report) and, for a snapshot, the sequence number of its first event.
pub fn scan_events(
    r: &Report,
    seq: &mut Sequencer,
    tracker: &mut Tracker,
    deltas: &[Delta],
    counts: Counts,
    scan: &ScanInfo,
    sinks: &[SinkStats],
) -> Vec<Value> {
    let first_sequence = seq.next;
    let mut out = Vec::new();
    for d in deltas {
        let mut m = seq.envelope(r, d.thing.dataset, d.thing.kind);
        set_type(&mut m, d.change.word());
        for (k, v) in &d.thing.body {
            m.insert(k.clone(), v.clone());
        }
        if let Some(o) = m.get_mut("ovlaudit").and_then(Value::as_object_mut) {
            o.insert("key".into(), json!(d.thing.key));
            if scan.snapshot.is_some() {
                o.insert("snapshot".into(), json!(true));
            }
            if d.change == ChangeType::Change {
                o.insert("changed".into(), json!(d.changed));
            }
        }
        out.push(fit(Value::Object(m)));
    }
    let mut m = seq.envelope(r, "ovlaudit.scan", "metric");
    set_type(&mut m, "info");
    if let Some(e) = m.get_mut("event").and_then(Value::as_object_mut) {
        e.insert("outcome".into(), json!("success"));
    }
    let mut summary = json!({
        "number": scan.number,
        "reason": scan.reason,
        "snapshot": scan.snapshot.is_some(),
        "changes": counts,
        "totals": r.totals,
        "duration_ms": r.scan_duration_ms,
        "sinks": sinks,
    });
    // What was read and the overlay mounts no container owns: whole, when they changed or in a snapshot.
    for (name, value) in [("sources", json!(r.sources)), ("unowned_mounts", json!(r.unowned_mounts))] {
        if tracker.summary_field_due(name, &value, scan.snapshot.is_some()) {
            summary[name] = value;
        }
    }
    if let Some(why) = scan.snapshot {
        summary["snapshot_reason"] = json!(why);
        summary["first_sequence"] = json!(first_sequence);
    }
    let mut o = Map::new();
    if scan.snapshot.is_some() {
        o.insert("snapshot".into(), json!(true));
    }
    o.insert("scan".into(), summary);
    m.insert("ovlaudit".into(), Value::Object(o));
    out.push(fit(Value::Object(m)));
    out
}

/// Every event of one report as a snapshot of a host nothing was known about (`report --format ndjson`):
/// each thing as `info`, then the summary.
pub fn report_events(r: &Report, seq: &mut Sequencer, sinks: &[SinkStats]) -> Vec<Value> {
    let mut tracker = Tracker::new();
    let (deltas, counts) = tracker.update(things(r), true);
    let info = ScanInfo { number: 1, reason: "report".into(), snapshot: Some("report") };
    scan_events(r, seq, &mut tracker, &deltas, counts, &info, sinks)
}

/// The event a failed scan ships: dataset `ovlaudit.scan`, `event.outcome` `failure`, the cause in
/// `error.message`, and how many scans in a row have failed.
pub fn failure_event(seq: &mut Sequencer, host: &str, scan: &ScanInfo, error: &str, in_a_row: u64) -> Value {
    let now = collector::scan::rfc3339(std::time::SystemTime::now());
    let mut m = seq.envelope_at(&now, host, "ovlaudit.scan", "event");
    set_type(&mut m, "error");
    if let Some(e) = m.get_mut("event").and_then(Value::as_object_mut) {
        e.insert("outcome".into(), json!("failure"));
    }
    m.insert("error".into(), json!({ "message": error }));
    m.insert(
        "ovlaudit".into(),
        json!({ "scan": { "number": scan.number, "reason": scan.reason, "failed": true, "failures_in_a_row": in_a_row } }),
    );
    Value::Object(m)
}

fn set_type(m: &mut Map<String, Value>, word: &str) {
    if let Some(e) = m.get_mut("event").and_then(Value::as_object_mut) {
        e.insert("type".into(), json!([word]));
    }
}

/// Cuts an event down to [`MAX_EVENT_BYTES`], most dispensable parts first: long label values, then
/// paths that are repeated elsewhere in the event, then whole label sets and layer lists. What was cut is
/// listed in `ovlaudit.truncated`, and the size before in `ovlaudit.original_bytes`.
pub fn fit(mut ev: Value) -> Value {
    let size = |v: &Value| v.to_string().len();
    let original = size(&ev);
    if original <= MAX_EVENT_BYTES {
        return ev;
    }
    let mut cut: Vec<&str> = Vec::new();
    type Step = (&'static str, fn(&mut Value) -> bool);
    let steps: [Step; 7] = [
        ("container.labels.values", |v| shorten_labels(v, 256)),
        ("ovlaudit.container.writable.lowerdirs", |v| remove(v, "/ovlaudit/container/writable", "lowerdirs")),
        ("ovlaudit.container.mount.lowerdirs", |v| remove(v, "/ovlaudit/container/mount", "lowerdirs")),
        ("container.labels", |v| remove(v, "/container", "labels") | remove(v, "/ovlaudit/container", "labels")),
        ("ovlaudit.container.mount.layers", |v| remove(v, "/ovlaudit/container/mount", "layers")),
        ("ovlaudit.container.layers", |v| remove(v, "/ovlaudit/container", "layers")),
        ("ovlaudit.scan.unowned_mounts", |v| remove(v, "/ovlaudit/scan", "unowned_mounts")),
    ];
    for (name, step) in steps {
        if step(&mut ev) {
            cut.push(name);
        }
        if size(&ev) + 200 <= MAX_EVENT_BYTES {
            break;
        }
    }
    if let Some(o) = ev.get_mut("ovlaudit").and_then(Value::as_object_mut) {
        o.insert("truncated".into(), json!(cut));
        o.insert("original_bytes".into(), json!(original));
    }
    ev
}

fn remove(ev: &mut Value, at: &str, key: &str) -> bool {
    ev.pointer_mut(at).and_then(Value::as_object_mut).is_some_and(|o| o.remove(key).is_some())
}

fn shorten_labels(ev: &mut Value, max: usize) -> bool {
    let mut changed = false;
    for at in ["/container/labels", "/ovlaudit/container/labels"] {
        if let Some(labels) = ev.pointer_mut(at).and_then(Value::as_object_mut) {
            for v in labels.values_mut() {
                if let Some(s) = v.as_str() {
                    if s.len() > max {
                        let mut end = max;
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        *v = json!(format!("{}…", &s[..end]));
                        changed = true;
                    }
                }
            }
        }
    }
    changed
}

/// 128 random bits as 32 hex digits, from the kernel.
fn random_id() -> String {
    let mut buf = [0u8; 16];
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        // getrandom cannot fail for 16 bytes after boot; fall back to time and pid rather than abort.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let v = t ^ (u128::from(std::process::id()) << 64);
        buf = v.to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container_event(labels: usize, label_len: usize) -> Value {
        let labels: Map<String, Value> =
            (0..labels).map(|i| (format!("label.{i}"), json!("x".repeat(label_len)))).collect();
        json!({
            "event": {"dataset": "ovlaudit.container"},
            "container": {"id": "c", "labels": labels.clone()},
            "ovlaudit": {"container": {"labels": labels, "writable": {"lowerdirs": ["/a"]}}}
        })
    }

    #[test]
    fn small_events_are_untouched() {
        let ev = container_event(3, 10);
        assert_eq!(fit(ev.clone()), ev);
    }

    #[test]
    fn long_label_values_are_shortened_first_and_say_so() {
        // 40 labels of 2,000 bytes, twice: about 160 KB; shortened to 256 bytes each they fit.
        let ev = fit(container_event(40, 2000));
        assert!(ev.to_string().len() <= MAX_EVENT_BYTES);
        assert_eq!(ev["ovlaudit"]["truncated"], json!(["container.labels.values"]));
        assert_eq!(ev["container"]["labels"]["label.0"].as_str().map(|s| s.chars().count()), Some(257));
        assert!(ev["ovlaudit"]["original_bytes"].as_u64() > Some(150_000));
    }

    #[test]
    fn huge_label_sets_are_dropped() {
        let ev = fit(container_event(400, 100));
        assert!(ev.to_string().len() <= MAX_EVENT_BYTES);
        assert!(ev["container"].get("labels").is_none());
        let cut = ev["ovlaudit"]["truncated"].as_array().expect("truncated list");
        assert!(cut.contains(&json!("container.labels")), "{cut:?}");
    }
}

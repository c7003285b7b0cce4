//! Events for programs and log collectors: one JSON object per line with nested Elastic Common Schema
//! names (`@timestamp`, `event.*`, `host.name`, `agent.*`, `container.*`) and ovlaudit's own objects under
//! `ovlaudit.*` — the same objects as in the report document.
//!
//! Datasets: `ovlaudit.container` (one per container per scan), `ovlaudit.image`, `ovlaudit.orphan`,
//! `ovlaudit.finding`, and `ovlaudit.scan` (one summary per scan, last). `event.id` is unique per event (this run's random
//! `agent.ephemeral_id` plus the sequence number) so that a receiver can drop duplicates after a retry;
//! `event.sequence` increases by one per event for the life of the process.

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
    m.insert("ovlaudit".into(), json!({ "check": "a test event from ovlaudit check-sinks" }));
    Value::Object(m)
}

/// Every event of one report, in order: containers, images, orphans, findings, then the scan summary, which
/// carries the sinks' delivery counters as they stood when the scan ended (`sinks`, empty for a one-shot
/// report).
pub fn report_events(r: &Report, seq: &mut Sequencer, sinks: &[SinkStats]) -> Vec<Value> {
    let mut out = Vec::new();
    for c in &r.containers {
        let mut m = seq.envelope(r, "ovlaudit.container", "state");
        m.insert(
            "container".into(),
            json!({
                "id": c.id,
                "name": c.name,
                "runtime": c.runtime,
                "image": { "name": c.image.tags.first().unwrap_or(&c.image.name), "id": c.image.id },
                "labels": c.labels,
            }),
        );
        m.insert("ovlaudit".into(), json!({ "container": c }));
        out.push(fit(Value::Object(m)));
    }
    for i in &r.images {
        let mut m = seq.envelope(r, "ovlaudit.image", "state");
        m.insert("ovlaudit".into(), json!({ "image": i }));
        out.push(fit(Value::Object(m)));
    }
    for o in &r.orphans {
        let mut m = seq.envelope(r, "ovlaudit.orphan", "state");
        m.insert("ovlaudit".into(), json!({ "orphan": o }));
        out.push(Value::Object(m));
    }
    for v in &r.volumes {
        let mut m = seq.envelope(r, "ovlaudit.volume", "state");
        m.insert("ovlaudit".into(), json!({ "volume": v }));
        out.push(fit(Value::Object(m)));
    }
    for b in &r.build_cache {
        let mut m = seq.envelope(r, "ovlaudit.build_cache", "state");
        m.insert("ovlaudit".into(), json!({ "build_cache": b }));
        out.push(fit(Value::Object(m)));
    }
    for f in &r.findings {
        let mut m = seq.envelope(r, "ovlaudit.finding", "event");
        m.insert("ovlaudit".into(), json!({ "finding": f }));
        out.push(fit(Value::Object(m)));
    }
    let mut m = seq.envelope(r, "ovlaudit.scan", "metric");
    m.insert(
        "ovlaudit".into(),
        json!({ "scan": {
            "totals": r.totals,
            "sources": r.sources,
            "duration_ms": r.scan_duration_ms,
            "unowned_mounts": r.unowned_mounts,
            "sinks": sinks,
        }}),
    );
    out.push(fit(Value::Object(m)));
    out
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

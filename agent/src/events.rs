//! Events for programs and log collectors: one JSON object per line with nested Elastic Common Schema
//! names (`@timestamp`, `event.*`, `host.name`, `agent.*`, `container.*`) and ovlaudit's own objects under
//! `ovlaudit.*` — the same objects as in the report document.
//!
//! Datasets: `ovlaudit.container` (one per container per scan), `ovlaudit.image`, `ovlaudit.orphan`,
//! `ovlaudit.finding`, and `ovlaudit.scan` (one summary per scan, last). `event.id` is unique per event (this run's random
//! `agent.ephemeral_id` plus the sequence number) so that a receiver can drop duplicates after a retry;
//! `event.sequence` increases by one per event for the life of the process.

use collector::report::Report;
use serde_json::{json, Map, Value};
use std::path::Path;

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
        let seq = self.next;
        self.next += 1;
        let mut m = Map::new();
        m.insert("@timestamp".into(), json!(r.generated_at));
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
        m.insert("host".into(), json!({ "name": r.host.name }));
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

/// Every event of one report, in order: containers, images, orphans, findings, then the scan summary.
pub fn report_events(r: &Report, seq: &mut Sequencer) -> Vec<Value> {
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
        out.push(Value::Object(m));
    }
    for i in &r.images {
        let mut m = seq.envelope(r, "ovlaudit.image", "state");
        m.insert("ovlaudit".into(), json!({ "image": i }));
        out.push(Value::Object(m));
    }
    for o in &r.orphans {
        let mut m = seq.envelope(r, "ovlaudit.orphan", "state");
        m.insert("ovlaudit".into(), json!({ "orphan": o }));
        out.push(Value::Object(m));
    }
    for f in &r.findings {
        let mut m = seq.envelope(r, "ovlaudit.finding", "event");
        m.insert("ovlaudit".into(), json!({ "finding": f }));
        out.push(Value::Object(m));
    }
    let mut m = seq.envelope(r, "ovlaudit.scan", "metric");
    m.insert(
        "ovlaudit".into(),
        json!({ "scan": {
            "totals": r.totals,
            "sources": r.sources,
            "duration_ms": r.scan_duration_ms,
            "unowned_mounts": r.unowned_mounts,
        }}),
    );
    out.push(Value::Object(m));
    out
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

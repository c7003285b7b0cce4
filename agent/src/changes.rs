//! What changed since the last scan the agent shipped: the state between scans, so that the service ships
//! a thing when it appears, when any of its fields changes and when it goes away, instead of the whole
//! host every scan.
//!
//! The state is the last shipped body of every thing (container, image, orphan, finding), keyed by the
//! dataset and the thing's `ovlaudit.key`. A scan's things are compared with it: new ones are
//! `creation`, different ones `change` (with the fields that differ), missing ones `deletion` (carrying
//! the body last shipped), the rest are not shipped — unless the scan is a snapshot, which re-states them
//! as `info`. Before the first comparison the agent knows nothing, so everything in the first scan is
//! `info`, not `creation`. A scan that fails leaves the state alone: a failure is not a deletion.
//!
//! This module knows nothing of the report's shape; [`crate::events`] turns a report into [`Thing`]s and
//! the deltas back into events.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// What happened to a thing, as ECS `event.type` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// It appeared since the last scan.
    Creation,
    /// Some of its fields differ from what was last shipped.
    Change,
    /// It is gone; the event carries what was last shipped.
    Deletion,
    /// Unchanged (or first seen when nothing was known yet), shipped because the scan is a snapshot.
    Info,
}

impl ChangeType {
    /// The ECS `event.type` value.
    pub fn word(self) -> &'static str {
        match self {
            ChangeType::Creation => "creation",
            ChangeType::Change => "change",
            ChangeType::Deletion => "deletion",
            ChangeType::Info => "info",
        }
    }
}

/// One thing a scan saw: its dataset, its identity within the dataset, and the event fields that
/// describe it (everything but the envelope).
#[derive(Debug, Clone)]
pub struct Thing {
    /// `ovlaudit.container`, `ovlaudit.image`, `ovlaudit.orphan` or `ovlaudit.finding`.
    pub dataset: &'static str,
    /// ECS `event.kind`: `state` for containers, images and orphans, `event` for findings.
    pub kind: &'static str,
    /// Stable identity within the dataset and host (`ovlaudit.key`).
    pub key: String,
    /// The event's fields besides the envelope (`container`, `ovlaudit`).
    pub body: Map<String, Value>,
}

/// One thing to ship.
#[derive(Debug, Clone)]
pub struct Delta {
    /// What happened.
    pub change: ChangeType,
    /// The thing (for a deletion: as last shipped).
    pub thing: Thing,
    /// For a change: the fields that differ, as dotted paths below `ovlaudit.<kind>` (`writable.apparent_bytes`).
    pub changed: Vec<String>,
}

/// Counts of a scan's deltas, for the scan summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Things that appeared.
    pub creation: u64,
    /// Things that changed.
    pub change: u64,
    /// Things that went away.
    pub deletion: u64,
    /// Things unchanged since the last scan (re-stated only in a snapshot).
    pub unchanged: u64,
}

/// The last shipped state.
#[derive(Debug, Default)]
pub struct Tracker {
    known: BTreeMap<(&'static str, String), Thing>,
    primed: bool,
    /// Summary fields shipped only when they change (`unowned_mounts`), as last shipped.
    summary_fields: HashMap<&'static str, Value>,
}

impl Tracker {
    /// Knows nothing yet: the first comparison ships everything as `info`.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Compares a scan's things with the last shipped state, makes them the new state, and returns what
    /// to ship, in the order of `things` followed by the deletions. In a snapshot every thing is shipped.
    pub fn update(&mut self, things: Vec<Thing>, snapshot: bool) -> (Vec<Delta>, Counts) {
        let mut counts = Counts::default();
        let mut out = Vec::new();
        let mut next: BTreeMap<(&'static str, String), Thing> = BTreeMap::new();
        for thing in things {
            let id = (thing.dataset, thing.key.clone());
            let (change, changed) = match self.known.remove(&id) {
                None if self.primed => (Some(ChangeType::Creation), Vec::new()),
                None => (Some(ChangeType::Info), Vec::new()),
                Some(old) if old.body == thing.body => (snapshot.then_some(ChangeType::Info), Vec::new()),
                Some(old) => (Some(ChangeType::Change), changed_fields(&old.body, &thing.body)),
            };
            match change {
                Some(ChangeType::Creation) => counts.creation += 1,
                Some(ChangeType::Change) => counts.change += 1,
                _ => counts.unchanged += 1,
            }
            if let Some(change) = change {
                out.push(Delta { change, thing: thing.clone(), changed });
            }
            next.insert(id, thing);
        }
        for (_, thing) in std::mem::take(&mut self.known) {
            counts.deletion += 1;
            out.push(Delta { change: ChangeType::Deletion, thing, changed: Vec::new() });
        }
        self.known = next;
        self.primed = true;
        (out, counts)
    }
}

impl Tracker {
    /// Whether a summary field that is shipped only when it changes (or in a snapshot) must be shipped
    /// now; remembers `value` as shipped when it must.
    pub fn summary_field_due(&mut self, name: &'static str, value: &Value, snapshot: bool) -> bool {
        if !snapshot && self.summary_fields.get(name) == Some(value) {
            return false;
        }
        self.summary_fields.insert(name, value.clone());
        true
    }
}

/// Makes keys unique within a dataset: the second thing with the same key gets `#2`, and so on (two
/// findings can say the same about the same path).
pub fn disambiguate(things: &mut [Thing]) {
    let mut seen: HashMap<(&'static str, String), u32> = HashMap::new();
    for t in things.iter_mut() {
        let n = seen.entry((t.dataset, t.key.clone())).or_insert(0);
        *n += 1;
        if *n > 1 {
            t.key = format!("{}#{n}", t.key);
        }
    }
}

/// Dotted paths of the fields that differ between two bodies, below `ovlaudit.<object>`, two levels
/// deep (`state`, `writable.apparent_bytes`); `container.*` ECS copies are not listed twice.
fn changed_fields(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let inner = |m: &Map<String, Value>| -> Option<Map<String, Value>> {
        m.get("ovlaudit")?.as_object()?.values().next()?.as_object().cloned()
    };
    let (Some(a), Some(b)) = (inner(old), inner(new)) else {
        return vec!["ovlaudit".to_owned()];
    };
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x == y {
            continue;
        }
        match (x.and_then(Value::as_object), y.and_then(Value::as_object)) {
            (Some(xo), Some(yo)) => {
                let sub: std::collections::BTreeSet<&String> = xo.keys().chain(yo.keys()).collect();
                out.extend(sub.into_iter().filter(|s| xo.get(*s) != yo.get(*s)).map(|s| format!("{k}.{s}")));
            }
            _ => out.push(k.clone()),
        }
    }
    out
}

/// A stable 64-bit FNV-1a hash as 16 hex digits: a short key for things without an identity of their
/// own (findings), the same in every version of the agent.
pub fn stable_hash(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn thing(key: &str, bytes: u64) -> Thing {
        let body = json!({"ovlaudit": {"container": {"id": key, "writable": {"apparent_bytes": bytes, "files": 1}}}});
        Thing {
            dataset: "ovlaudit.container",
            kind: "state",
            key: key.to_owned(),
            body: body.as_object().cloned().unwrap_or_default(),
        }
    }

    fn types(d: &[Delta]) -> Vec<(String, &'static str)> {
        d.iter().map(|d| (d.thing.key.clone(), d.change.word())).collect()
    }

    #[test]
    fn first_scan_is_info_then_only_differences_ship() {
        let mut t = Tracker::new();
        let (d, c) = t.update(vec![thing("a", 1), thing("b", 2)], true);
        assert_eq!(types(&d), [("a".into(), "info"), ("b".into(), "info")]);
        assert_eq!(c, Counts { unchanged: 2, ..Counts::default() });
        let (d, c) = t.update(vec![thing("a", 1), thing("b", 2)], false);
        assert!(d.is_empty());
        assert_eq!(c.unchanged, 2);
        let (d, c) = t.update(vec![thing("a", 5), thing("c", 3)], false);
        assert_eq!(types(&d), [("a".into(), "change"), ("c".into(), "creation"), ("b".into(), "deletion")]);
        assert_eq!(d[0].changed, ["writable.apparent_bytes"]);
        assert_eq!(d[2].thing.body["ovlaudit"]["container"]["writable"]["apparent_bytes"], 2, "as last shipped");
        assert_eq!(c, Counts { creation: 1, change: 1, deletion: 1, unchanged: 0 });
    }

    #[test]
    fn a_snapshot_restates_unchanged_things_and_still_reports_changes() {
        let mut t = Tracker::new();
        t.update(vec![thing("a", 1), thing("b", 2)], true);
        let (d, _) = t.update(vec![thing("a", 1), thing("c", 2)], true);
        assert_eq!(types(&d), [("a".into(), "info"), ("c".into(), "creation"), ("b".into(), "deletion")]);
    }

    #[test]
    fn duplicate_keys_are_numbered() {
        let mut v = vec![thing("f", 1), thing("f", 1), thing("g", 1), thing("f", 1)];
        disambiguate(&mut v);
        let keys: Vec<&str> = v.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, ["f", "f#2", "g", "f#3"]);
    }

    #[test]
    fn stable_hash_is_fixed_and_separates_parts() {
        // FNV-1a of "" with one 0xff separator, computed by hand from the published constants.
        assert_eq!(
            stable_hash(&[""]),
            format!("{:016x}", (0xcbf2_9ce4_8422_2325u64 ^ 0xff).wrapping_mul(0x100_0000_01b3))
        );
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
    }
}

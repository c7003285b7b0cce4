//! Making one event fit a transport's size limit. A datagram carries one event whole or not at all: UDP
//! at most 65,507 bytes, a unix datagram socket what its buffer takes. An event over the limit is cut, the
//! most dispensable parts first (lists of files, layers and paths, then long strings), and says what was
//! cut in `ovlaudit.truncated`; one that still does not fit is dropped and counted. Nothing over the limit
//! is ever handed to the socket, where it would fail the same way on every retry.

use super::queue::Item;
use serde_json::{json, Value};
use std::sync::Arc;

/// What became of an event that was over the limit.
#[derive(Debug)]
pub enum Fitted {
    /// It fits as it is.
    Whole(Item),
    /// It fits after cuts.
    Cut(Item),
    /// It cannot be made to fit.
    Dropped,
}

/// Cuts `item` down until its JSON is at most `max` bytes.
pub fn fit(item: Item, max: usize) -> Fitted {
    if item.json.len() <= max {
        return Fitted::Whole(item);
    }
    let Ok(mut ev) = serde_json::from_str::<Value>(&item.json) else { return Fitted::Dropped };
    let original = item.json.len();
    let mut cut: Vec<String> = Vec::new();
    type Step = (&'static str, fn(&mut Value) -> bool);
    let steps: [Step; 8] = [
        ("ovlaudit.container.writable.top_files", |v| remove(v, "/ovlaudit/container/writable", "top_files")),
        ("ovlaudit.container.writable.lowerdirs", |v| remove(v, "/ovlaudit/container/writable", "lowerdirs")),
        ("ovlaudit.container.mount", |v| remove(v, "/ovlaudit/container", "mount")),
        ("ovlaudit.container.layers", |v| remove(v, "/ovlaudit/container", "layers")),
        ("container.labels", |v| remove(v, "/container", "labels") | remove(v, "/ovlaudit/container", "labels")),
        ("ovlaudit.scan.unowned_mounts", |v| remove(v, "/ovlaudit/scan", "unowned_mounts")),
        ("strings over 1024 bytes", |v| shorten_strings(v, 1024)),
        ("strings over 128 bytes", |v| shorten_strings(v, 128)),
    ];
    for (name, step) in steps {
        if step(&mut ev) {
            cut.push(name.to_owned());
        }
        // Room for the marker added below.
        if ev.to_string().len() + 300 <= max {
            break;
        }
    }
    if let Some(o) = ev.get_mut("ovlaudit").and_then(Value::as_object_mut) {
        let mut all: Vec<Value> = o.get("truncated").and_then(Value::as_array).cloned().unwrap_or_default();
        all.extend(cut.into_iter().map(Value::from));
        o.insert("truncated".into(), Value::Array(all));
        o.entry("original_bytes").or_insert(json!(original));
    }
    let json = ev.to_string();
    if json.len() > max {
        return Fitted::Dropped;
    }
    Fitted::Cut(Item { json: Arc::from(json), ..item })
}

fn remove(ev: &mut Value, at: &str, key: &str) -> bool {
    ev.pointer_mut(at).and_then(Value::as_object_mut).is_some_and(|o| o.remove(key).is_some())
}

/// Shortens every string value longer than `max` bytes (keys and the ids receivers match on stay whole).
fn shorten_strings(v: &mut Value, max: usize) -> bool {
    match v {
        Value::String(s) if s.len() > max => {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push('…');
            true
        }
        Value::Array(a) => a.iter_mut().fold(false, |c, x| shorten_strings(x, max) | c),
        Value::Object(o) => o.iter_mut().fold(false, |c, (k, x)| (k != "id" && shorten_strings(x, max)) | c),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(ev: &Value) -> Item {
        crate::sinks::item_of(ev)
    }

    #[test]
    fn a_container_event_with_long_top_files_is_cut_to_fit() {
        let deep = "d/".repeat(40_000);
        let ev = json!({
            "event": {"id": "e1", "dataset": "ovlaudit.container"},
            "container": {"id": "c1"},
            "ovlaudit": {"container": {"id": "c1", "writable": {
                "apparent_bytes": 5,
                "top_files": [{"path": deep, "apparent_bytes": 5}]
            }}}
        });
        let Fitted::Cut(out) = fit(item(&ev), 60_000) else { panic!("expected a cut") };
        assert!(out.json.len() <= 60_000);
        let v: Value = serde_json::from_str(&out.json).expect("still JSON");
        assert_eq!(v["ovlaudit"]["truncated"], json!(["ovlaudit.container.writable.top_files"]));
        assert_eq!(v["ovlaudit"]["container"]["writable"]["apparent_bytes"], 5);
        assert_eq!(v["event"]["id"], "e1");
    }

    #[test]
    fn a_long_finding_message_is_shortened_and_what_cannot_fit_is_dropped() {
        let ev = json!({"event": {"id": "e2"}, "ovlaudit": {"finding": {"message": "m".repeat(100_000)}}});
        let Fitted::Cut(out) = fit(item(&ev), 8_192) else { panic!("expected a cut") };
        let v: Value = serde_json::from_str(&out.json).expect("still JSON");
        assert_eq!(v["ovlaudit"]["finding"]["message"].as_str().map(str::len), Some(1024 + '…'.len_utf8()));
        assert_eq!(v["ovlaudit"]["original_bytes"], ev.to_string().len());
        // Ten thousand short keys cannot be cut by these steps: dropped, never sent.
        let many: serde_json::Map<String, Value> = (0..10_000).map(|i| (format!("k{i}"), json!(i))).collect();
        let ev = json!({"event": {"id": "e3"}, "ovlaudit": {"x": many}});
        assert!(matches!(fit(item(&ev), 8_192), Fitted::Dropped));
    }
}

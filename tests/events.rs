//! Every event ovlaudit emits validates against the published JSON Schema (agent/schema/event.schema.json),
//! carries a unique `event.id` and an increasing `event.sequence`, and stays under 30 KiB even for a
//! container whose labels alone are far larger.

use crate::common::ovlaudit;
use crate::harness::Engine;
use serde_json::Value;
use std::collections::HashSet;

/// The published schema, compiled.
pub fn event_validator() -> jsonschema::Validator {
    let text = include_str!("../agent/schema/event.schema.json");
    let schema: Value = serde_json::from_str(text).expect("the schema file is JSON");
    jsonschema::validator_for(&schema).expect("the schema file is a valid JSON Schema")
}

/// Validates each event; panics naming the event and the first violations.
pub fn assert_events_valid(validator: &jsonschema::Validator, events: &[Value]) {
    for ev in events {
        let errors: Vec<String> =
            validator.iter_errors(ev).take(5).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "event {} does not match the schema: {errors:#?}", ev["event"]["id"]);
    }
}

#[test]
fn ndjson_events_match_the_schema_and_stay_small() {
    let Some(engine) = Engine::start().unwrap_or_else(|e| panic!("cannot start a private dockerd: {e}")) else {
        return;
    };
    engine.import_busybox("bb:1");
    engine.docker(&["run", "--name", "plain", "bb:1", "sh", "-c", "echo hi > /x"]);
    // 60 labels of 1,000 bytes: 60 KB of labels, twice in the event; it must be cut to 30 KiB and say so.
    let mut args: Vec<String> = vec!["create".into(), "--name".into(), "labelled".into()];
    for i in 0..60 {
        args.push("--label".into());
        args.push(format!("example.label.{i}={}", "v".repeat(1000)));
    }
    args.extend(["bb:1".into(), "true".into()]);
    engine.docker(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let out = ovlaudit(&["report", "--format", "ndjson", "--docker-root", engine.data_root().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let mut events = Vec::new();
    for line in text.lines() {
        assert!(line.len() <= 30 * 1024, "an event of {} bytes", line.len());
        events.push(serde_json::from_str::<Value>(line).expect("each line is one JSON object"));
    }
    let validator = event_validator();
    assert_events_valid(&validator, &events);
    // The schema does reject what breaks the contract.
    let mut broken = events[0].clone();
    broken["ovlaudit"]["container"]["writable"]["apparent_bytes"] = serde_json::json!(-1);
    assert!(!validator.is_valid(&broken), "negative sizes are rejected");
    let mut broken = events[0].clone();
    broken["event"].as_object_mut().expect("event object").remove("id");
    assert!(!validator.is_valid(&broken), "an event without event.id is rejected");

    let datasets: Vec<&str> = events.iter().filter_map(|e| e["event"]["dataset"].as_str()).collect();
    assert_eq!(datasets.iter().filter(|d| **d == "ovlaudit.container").count(), 2);
    assert_eq!(datasets.last(), Some(&"ovlaudit.scan"), "the scan summary comes last");
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["event"]["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "event.id is unique");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["event"]["sequence"].as_u64()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "event.sequence counts up from 1");

    let labelled =
        events.iter().find(|e| e["container"]["name"] == "labelled").expect("an event for the labelled container");
    let cut = labelled["ovlaudit"]["truncated"].as_array().expect("the event says it was cut");
    assert!(!cut.is_empty());
    assert!(labelled["ovlaudit"]["original_bytes"].as_u64() > Some(120_000));
}

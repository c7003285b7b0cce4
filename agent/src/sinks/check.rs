//! `ovlaudit check-sinks`: one test event through each sink's real delivery path, with its outcome.

use super::{SinkConfig, Sinks};
use crate::events::{check_event, Sequencer};
use std::path::Path;
use std::time::{Duration, Instant};

/// What one sink did with its test event.
pub struct CheckResult {
    /// The sink's address.
    pub sink: String,
    /// How long delivery took, or why it failed.
    pub outcome: Result<Duration, String>,
}

/// Sends a test event to each sink at once, each through its own queue and transport, and waits for each
/// to deliver it or fail (at most the sink's timeout plus a second).
pub async fn check_all(configs: &[SinkConfig], root: &Path) -> Vec<CheckResult> {
    let host = collector::scan::host_name();
    let mut seq = Sequencer::new(root);
    let tasks: Vec<_> = configs
        .iter()
        .map(|cfg| {
            let cfg = cfg.clone();
            let event = check_event(&mut seq, &host);
            let host = host.clone();
            tokio::spawn(async move {
                let name = cfg.kind.to_string();
                let limit = cfg.timeout + Duration::from_secs(1);
                let sinks = Sinks::start(vec![cfg], &host);
                let started = Instant::now();
                sinks.publish(std::slice::from_ref(&event));
                let outcome = loop {
                    let st = sinks.stats().pop();
                    match st {
                        Some(s) if s.sent >= 1 => break Ok(started.elapsed()),
                        Some(s) if s.failures >= 1 => break Err(s.last_error.unwrap_or_else(|| "failed".into())),
                        _ if started.elapsed() > limit => break Err(format!("no answer within {} s", limit.as_secs())),
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                sinks.shutdown(Duration::from_millis(200)).await;
                CheckResult { sink: name, outcome }
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            out.push(r);
        }
    }
    out
}

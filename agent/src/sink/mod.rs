//! Where each scan's events go. A sink is a [`Sink`] running in a task of its own behind a small queue, so a
//! slow or failing destination never holds up the scan loop or the other sinks: the loop offers each scan's
//! [`Batch`] to every sink and moves on; a sink that is too far behind loses that batch, with a warning.
//!
//! Adding a destination is a new module here: a `Sink` implementation, a [`SinkSpec`] variant with its URI
//! form, and one arm in [`open`].

mod stdout;

use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Scans a sink may fall behind by before it loses one.
const QUEUE_BATCHES: usize = 4;

/// The events of one scan, in order, ending with its `ovlaudit.scan` summary.
#[derive(Debug)]
pub struct Batch {
    /// The events, as [`crate::events::report_events`] builds them.
    pub events: Vec<Value>,
}

/// A destination for events.
pub trait Sink: Send + 'static {
    /// Delivers one scan's events; an error is logged and the batch counts as lost.
    fn deliver(&mut self, batch: &Batch) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Pushes out anything buffered; called when the agent stops.
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// A sink as configured: `stdout` (NDJSON on standard output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// One JSON event per line on standard output (the journal, under systemd).
    Stdout,
}

impl SinkSpec {
    /// Reads a sink URI.
    pub fn parse(uri: &str) -> Result<SinkSpec, String> {
        match uri {
            "stdout" | "stdout:" => Ok(SinkSpec::Stdout),
            _ => Err(format!("unknown sink `{uri}`: this version ships `stdout` (NDJSON on standard output)")),
        }
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::Stdout => f.write_str("stdout"),
        }
    }
}

/// A running sink: its queue and its task.
pub struct SinkHandle {
    spec: SinkSpec,
    queue: mpsc::Sender<Arc<Batch>>,
    task: JoinHandle<()>,
}

/// Starts the sink `spec` names. Must run inside the runtime.
pub fn open(spec: &SinkSpec) -> SinkHandle {
    match spec {
        SinkSpec::Stdout => start(spec.clone(), stdout::StdoutSink::new()),
    }
}

fn start<S: Sink>(spec: SinkSpec, mut sink: S) -> SinkHandle {
    let (queue, mut rx) = mpsc::channel::<Arc<Batch>>(QUEUE_BATCHES);
    let name = spec.to_string();
    let task = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            if let Err(e) = sink.deliver(&batch).await {
                tracing::error!(sink = %name, "cannot deliver {} events: {e}", batch.events.len());
            }
        }
        if let Err(e) = sink.flush().await {
            tracing::error!(sink = %name, "cannot flush: {e}");
        }
    });
    SinkHandle { spec, queue, task }
}

impl SinkHandle {
    /// What this sink is.
    pub fn spec(&self) -> &SinkSpec {
        &self.spec
    }

    /// Queues a batch without waiting; a sink already [`QUEUE_BATCHES`] behind loses it.
    pub fn offer(&self, batch: Arc<Batch>) {
        if let Err(mpsc::error::TrySendError::Full(b)) = self.queue.try_send(batch) {
            tracing::warn!(
                sink = %self.spec,
                "sink is {QUEUE_BATCHES} scans behind; dropping this scan's {} events",
                b.events.len()
            );
        }
    }

    /// Lets the sink deliver what is queued and flush, waiting at most `grace`.
    pub async fn close(self, grace: Duration) {
        drop(self.queue);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(sink = %self.spec, "sink did not finish within {} ms; abandoning it", grace.as_millis());
            task.abort();
        }
    }
}

//! The `stdout` sink: one JSON event per line on standard output. Under systemd that is the journal, which
//! stores each line as one entry (up to its `LineMax=`, 48 KiB by default).

use super::{Batch, Sink};
use tokio::io::{AsyncWriteExt, Stdout};

/// NDJSON on standard output.
pub struct StdoutSink {
    out: Stdout,
}

impl StdoutSink {
    /// Writes to this process's standard output.
    pub fn new() -> StdoutSink {
        StdoutSink { out: tokio::io::stdout() }
    }
}

impl Sink for StdoutSink {
    async fn deliver(&mut self, batch: &Batch) -> std::io::Result<()> {
        // One write per scan: the lines of a scan reach a pipe reader together, never interleaved.
        let mut buf = Vec::with_capacity(batch.events.len() * 1024);
        for event in &batch.events {
            serde_json::to_writer(&mut buf, event)?;
            buf.push(b'\n');
        }
        self.out.write_all(&buf).await?;
        self.out.flush().await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().await
    }
}

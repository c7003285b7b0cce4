//! Findings: problems and notable facts met while reading a host, each with a severity and a stable `code`
//! that programs can match on. A finding never stops a scan; it is how "one bad container never hides the
//! rest" is kept.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// How much a finding matters to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing is wrong.
    Info,
    /// Something is inconsistent or could not be read; the rest of the report stands.
    Warning,
    /// Data is missing or broken; a number in the report may be incomplete.
    Error,
}

/// One problem or notable fact, with the path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// Stable machine-readable code, e.g. `layer_chain_id_mismatch`; see the README for the list.
    pub code: String,
    /// One sentence for people: what was found and why it matters.
    pub message: String,
    /// The file or directory concerned (written lossily if it is not UTF-8), or null.
    pub path: Option<String>,
}

impl Finding {
    /// A finding about `path`.
    pub fn new(severity: Severity, code: &str, message: impl Into<String>, path: Option<&Path>) -> Self {
        Finding {
            severity,
            code: code.to_owned(),
            message: message.into(),
            path: path.map(|p| p.to_string_lossy().into_owned()),
        }
    }
}

/// Collects findings as a scan goes.
#[derive(Debug, Default)]
pub struct Findings(Vec<Finding>);

impl Findings {
    /// Records a finding.
    pub fn push(&mut self, f: Finding) {
        self.0.push(f);
    }
    /// Records a warning about `path`.
    pub fn warn(&mut self, code: &str, message: impl Into<String>, path: Option<&Path>) {
        self.push(Finding::new(Severity::Warning, code, message, path));
    }
    /// Records an error about `path`.
    pub fn error(&mut self, code: &str, message: impl Into<String>, path: Option<&Path>) {
        self.push(Finding::new(Severity::Error, code, message, path));
    }
    /// Records an informational finding about `path`.
    pub fn info(&mut self, code: &str, message: impl Into<String>, path: Option<&Path>) {
        self.push(Finding::new(Severity::Info, code, message, path));
    }
    /// Moves every finding of `other` into this one.
    pub fn extend(&mut self, other: Findings) {
        self.0.extend(other.0);
    }
    /// The findings, in the order they were met.
    pub fn into_vec(self) -> Vec<Finding> {
        self.0
    }
    /// The findings so far.
    pub fn as_slice(&self) -> &[Finding] {
        &self.0
    }
}

//! Findings: problems and notable facts met while reading a host, each with a severity and a stable `code`
//! that programs can match on. A finding never stops a scan; it is how "one bad container never hides the
//! rest" is kept.
//!
//! Every code is bounded per scan: the first [`Findings::PER_CODE`] findings of a code are kept as they
//! are, and the rest fold into one summary finding of that code with their number and a few sample paths.
//! A host with thousands of broken layers thus yields a report (and events, and journal lines) of a size
//! set by the number of codes, not by the number of problems.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
    /// Stable machine-readable code, e.g. `layer_chain_id_mismatch`; see docs/report.md for the list.
    pub code: String,
    /// One sentence for people: what was found and why it matters.
    pub message: String,
    /// The file or directory concerned (written lossily if it is not UTF-8), or null.
    pub path: Option<String>,
    /// For a summary of findings of one code beyond the first few of a scan: how many it stands for.
    /// Absent on an ordinary finding (which stands for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// For a summary: the paths of the first findings it stands for. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
}

impl Finding {
    /// A finding about `path`.
    pub fn new(severity: Severity, code: &str, message: impl Into<String>, path: Option<&Path>) -> Self {
        Finding {
            severity,
            code: code.to_owned(),
            message: message.into(),
            path: path.map(|p| p.to_string_lossy().into_owned()),
            count: None,
            samples: Vec::new(),
        }
    }
}

/// Collects findings as a scan goes, bounded per code (see the module's documentation).
#[derive(Debug, Default)]
pub struct Findings {
    kept: Vec<Finding>,
    per_code: HashMap<String, usize>,
    /// Findings beyond the bound, by code, in the order their codes first overflowed.
    folded: Vec<Folded>,
}

/// The findings of one code beyond the bound.
#[derive(Debug)]
struct Folded {
    code: String,
    severity: Severity,
    count: u64,
    first_message: String,
    samples: Vec<String>,
}

impl Findings {
    /// Findings of one code kept as they are per scan; the rest of that code fold into one summary.
    pub const PER_CODE: usize = 10;
    /// Sample paths a summary keeps.
    pub const SAMPLES: usize = 5;

    /// Records a finding.
    pub fn push(&mut self, f: Finding) {
        let seen = self.per_code.entry(f.code.clone()).or_default();
        *seen += 1;
        if *seen <= Self::PER_CODE {
            self.kept.push(f);
            return;
        }
        let n = f.count.unwrap_or(1);
        match self.folded.iter_mut().find(|x| x.code == f.code) {
            Some(x) => {
                x.count += n;
                x.severity = x.severity.max(f.severity);
                let room = Self::SAMPLES.saturating_sub(x.samples.len());
                x.samples.extend(f.path.into_iter().chain(f.samples).take(room));
            }
            None => self.folded.push(Folded {
                code: f.code,
                severity: f.severity,
                count: n,
                first_message: f.message,
                samples: f.path.into_iter().chain(f.samples).take(Self::SAMPLES).collect(),
            }),
        }
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
        for f in other.into_vec() {
            self.push(f);
        }
    }
    /// The findings, in the order they were met, then one summary per code that went over the bound.
    pub fn into_vec(self) -> Vec<Finding> {
        let mut out = self.kept;
        for x in self.folded {
            out.push(Finding {
                severity: x.severity,
                message: format!(
                    "{} more {} finding(s) like the {} above, not listed one by one; the first: {}",
                    x.count,
                    x.code,
                    Self::PER_CODE,
                    x.first_message
                ),
                code: x.code,
                path: None,
                count: Some(x.count),
                samples: x.samples,
            });
        }
        out
    }
    /// The findings kept so far (without the summaries of folded ones).
    pub fn as_slice(&self) -> &[Finding] {
        &self.kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_bounded_and_the_rest_folds_into_one_summary_with_count_and_samples() {
        let mut f = Findings::default();
        for i in 0..15_006 {
            f.error("lowerdir_unresolved", format!("layer {i}"), Some(Path::new(&format!("/l/{i}"))));
        }
        f.warn("other_code", "once", None);
        let all = f.into_vec();
        assert_eq!(all.len(), Findings::PER_CODE + 2);
        let summary = all.last().expect("summary");
        assert_eq!(summary.code, "lowerdir_unresolved");
        assert_eq!(summary.severity, Severity::Error);
        assert_eq!(summary.count, Some(15_006 - Findings::PER_CODE as u64));
        assert_eq!(summary.samples, vec!["/l/10", "/l/11", "/l/12", "/l/13", "/l/14"]);
        assert!(summary.message.starts_with("14996 more lowerdir_unresolved finding(s)"), "{}", summary.message);
        assert_eq!(all[Findings::PER_CODE].code, "other_code");
        assert_eq!(all.iter().filter(|x| x.count.is_none()).count(), Findings::PER_CODE + 1);
    }

    #[test]
    fn a_summary_takes_the_highest_severity_it_folded() {
        let mut f = Findings::default();
        for i in 0..Findings::PER_CODE + 2 {
            let severity = if i == Findings::PER_CODE + 1 { Severity::Error } else { Severity::Warning };
            f.push(Finding::new(severity, "c", "m", None));
        }
        let all = f.into_vec();
        assert_eq!(all.last().map(|x| (x.severity, x.count)), Some((Severity::Error, Some(2))));
    }

    #[test]
    fn an_ordinary_finding_serialises_without_count_or_samples() {
        let text = serde_json::to_string(&Finding::new(Severity::Info, "c", "m", None)).expect("json");
        assert_eq!(text, r#"{"severity":"info","code":"c","message":"m","path":null}"#);
    }
}

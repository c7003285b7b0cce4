//! Running the real `ovlaudit` binary from tests.

#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// The binary under test.
pub const OVLAUDIT: &str = env!("CARGO_BIN_EXE_ovlaudit");

/// Runs `ovlaudit` with `args` and returns its output, whatever the exit status.
pub fn ovlaudit(args: &[&str]) -> Output {
    Command::new(OVLAUDIT).args(args).output().expect("run the ovlaudit binary")
}

/// `ovlaudit report --format json --docker-root ROOT`, which must succeed; the parsed document.
pub fn report_json(docker_root: &Path) -> Value {
    let root = docker_root.to_str().expect("test paths are UTF-8");
    let out = ovlaudit(&["report", "--format", "json", "--docker-root", root]);
    assert!(out.status.success(), "ovlaudit report failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("report is one JSON document")
}

/// The report's container with this id.
pub fn container<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["containers"]
        .as_array()
        .expect("containers is an array")
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("container {id} is not in the report"))
}

/// `du -sB1 DIR`: allocated bytes, each inode once, an independent reference.
pub fn du_allocated(dir: &str) -> u64 {
    let out = Command::new("du").args(["-sB1", dir]).output().expect("run du");
    assert!(out.status.success(), "du failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a number first")
}

/// ChainIDs of DiffIDs computed with `sha256sum`, independently of ovlaudit's own code.
pub fn chain_ids_by_sha256sum(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => {
                let mut child = Command::new("sha256sum")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("run sha256sum");
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(format!("{parent} {d}").as_bytes())
                    .expect("write to sha256sum");
                let out = child.wait_with_output().expect("sha256sum output");
                format!("sha256:{}", String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("hash"))
            }
        };
        out.push(next);
    }
    out
}

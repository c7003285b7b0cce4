//! The minimum Rust the workspace claims (`rust-version` in Cargo.toml) is at least what every locked
//! dependency declares: a lower claim would send a user with that toolchain into a build that fails in a
//! dependency. (clippy's `incompatible_msrv`, part of the CI's `-D warnings`, checks the workspace's own
//! use of the standard library against the same claim.)

use std::path::{Path, PathBuf};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A `rust-version` as numbers: "1.88" and "1.88.0" compare equal.
fn version(text: &str) -> Vec<u64> {
    let mut v: Vec<u64> =
        text.split('.').map(|n| n.parse().unwrap_or_else(|e| panic!("rust-version {text:?}: {e}"))).collect();
    v.resize(3, 0);
    v
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The unpacked sources of the registry packages, where cargo keeps them.
fn registry_sources() -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let src = home.join("registry/src");
    std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("read {}: {e}", src.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect()
}

#[test]
fn workspace_rust_version_covers_every_locked_dependency() {
    let manifest = read_toml(&Path::new(REPO).join("Cargo.toml"));
    let claimed = manifest["workspace"]["package"]["rust-version"].as_str().expect("workspace rust-version");
    // The claim binds each member only when it inherits it.
    for member in manifest["workspace"]["members"].as_array().expect("members") {
        let member = member.as_str().expect("member path");
        let theirs = read_toml(&Path::new(REPO).join(member).join("Cargo.toml"));
        let inherits = theirs["package"].get("rust-version").and_then(|v| v.get("workspace"));
        assert_eq!(inherits.and_then(|v| v.as_bool()), Some(true), "{member}: rust-version.workspace = true");
    }
    let lock = read_toml(&Path::new(REPO).join("Cargo.lock"));
    let sources = registry_sources();
    let mut needed: Vec<(Vec<u64>, String)> = Vec::new();
    let mut checked = Vec::new();
    for package in lock["package"].as_array().expect("packages") {
        if package.get("source").is_none() {
            continue; // the workspace's own crates
        }
        let (name, ver) = (package["name"].as_str().expect("name"), package["version"].as_str().expect("version"));
        // Only packages this platform builds are unpacked (no Windows-only crates on Linux, say).
        let Some(dir) = sources.iter().map(|s| s.join(format!("{name}-{ver}"))).find(|d| d.is_dir()) else {
            continue;
        };
        checked.push(name.to_owned());
        let theirs = read_toml(&dir.join("Cargo.toml"));
        if let Some(rv) = theirs.get("package").and_then(|p| p.get("rust-version")).and_then(|v| v.as_str()) {
            needed.push((version(rv), format!("{name} {ver} (rust-version {rv})")));
        }
    }
    for built in ["notify", "notify-types", "tokio", "clap"] {
        assert!(checked.iter().any(|c| c == built), "{built}'s sources were not found among {}", checked.len());
    }
    let (max, who) = needed.iter().max().expect("some dependency declares a rust-version");
    eprintln!("{} locked dependencies checked; the highest rust-version: {who}", checked.len());
    assert!(
        version(claimed) >= *max,
        "Cargo.toml claims rust-version {claimed}, but {who} needs more; raise the claim or hold the lock"
    );
}

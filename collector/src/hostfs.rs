//! How this process reaches host paths: the one place that turns a host path into the path this process
//! reads (`/host/var/lib/docker` for an agent in a container). The engines and the audit both use it; it
//! depends on nothing else in the crate.

use std::path::{Path, PathBuf};

/// `root` joined with an absolute host path.
pub fn under_root(root: &Path, host_path: &Path) -> PathBuf {
    match host_path.strip_prefix("/") {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(host_path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_root_prefixes_host_paths() {
        assert_eq!(under_root(Path::new("/host"), Path::new("/var/lib/docker")), Path::new("/host/var/lib/docker"));
        assert_eq!(under_root(Path::new("/"), Path::new("/proc")), Path::new("/proc"));
    }
}

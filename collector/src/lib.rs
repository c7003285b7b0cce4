//! The host-reading half of ovlaudit: everything that reads a container host and nothing that decides
//! where results go or when to scan.
//!
//! It parses the kernel's mount table ([`mountinfo`], [`overlay`], [`mount_table`]), reads Docker's overlay2
//! storage metadata ([`docker`]), measures writable layers exactly as Docker sizes them ([`usage`]) and
//! joins all of it into the report document ([`mod@scan`], [`report`]). Every function that touches the host
//! takes its root as an argument, so the same code reads `/`, `/host` or a fixture tree.
#![deny(missing_docs)]

pub mod bbolt;
pub mod bytes;
pub mod containerd;
pub mod copyup;
pub mod digest;
pub mod docker;
pub mod engine;
pub mod finding;
pub mod hostfs;
pub mod kubernetes;
pub mod layer_state;
pub mod mount_table;
pub mod mountinfo;
pub mod overlay;
pub mod podman;
pub mod report;
pub mod scan;
pub mod space;
pub mod usage;
pub mod walk;

pub use finding::{Finding, Severity};
pub use report::Report;
pub use scan::{scan, scan_with, KnownUsages, ScanError, ScanOptions};

//! ovlaudit's end-to-end suite: the real binary against real engines and fixture trees.

mod agent;
mod bench;
mod collectors;
mod common;
mod events;
mod harness;
mod harness_smoke;
mod lab;
mod package;
mod propagation;
mod report_cli;
mod report_docker;
mod report_engines;
mod report_podman;
mod run_cli;
mod run_docker;
mod shipping;
mod storage_audit;
mod systemd_unit;
mod toolchain;
mod walk_safety;

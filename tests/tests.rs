//! ovlaudit's end-to-end suite: the real binary against real engines and fixture trees.

mod agent;
mod bench;
mod common;
mod harness;
mod harness_smoke;
mod lab;
mod report_cli;
mod report_docker;
mod run_cli;
mod run_docker;
mod storage_audit;
mod systemd_unit;
mod walk_safety;

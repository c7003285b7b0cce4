//! ovlaudit's end-to-end suite: the real binary against real engines and fixture trees.

mod agent;
mod bench;
mod bench_copyups;
mod collectors;
mod common;
mod copy_ups;
mod data_root;
mod events;
mod harness;
mod harness_smoke;
mod inspect;
mod lab;
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
mod table_width;
mod walk_safety;

//! Test support shared by edgelb's cross-crate tests (see `tests/tests/`).
//!
//! * [`testbed`]: real edge hosts (sshd + HAProxy) in network namespaces on this machine.
//! * [`controller`]: the `edgelb` binary as a process under test.
//! * [`conformance`]: the deployer conformance suite, run against every deployer.
//! * [`fake_apiserver`]: a small Kubernetes API server for the controller's Kubernetes sources.
//! * [`delay_proxy`]: a TCP proxy that emulates a WAN link on loopback, for benchmarks.
//! * [`prometheus`]: Debian's Prometheus and promtool for the monitoring tests.
//! * [`proc_usage`]: a process's CPU time and peak RSS from `/proc`, for benchmarks.
//! * [`ssh_channels`]: the SSH channels the SSH host opens, from its debug events.
//! * [`openssh_baseline`]: the OpenSSH command line doing the reload steps, for benchmarks.
//! * [`bench_env`] and [`bench_stats`]: a benchmark's start and its table's statistics.
#![forbid(unsafe_code)]
// A test harness: a broken invariant should stop the test with a message, not be handled.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench_env;
pub mod bench_file_edit;
pub mod bench_kube;
pub mod bench_stats;
pub mod blast_radius;
pub mod conformance;
pub mod controller;
pub mod delay_proxy;
pub mod edge_failover;
pub mod fake_apiserver;
pub mod local_haproxy;
pub mod openssh_baseline;
pub mod proc_usage;
pub mod prometheus;
pub mod ssh_channels;
pub mod testbed;

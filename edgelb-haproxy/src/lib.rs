//! # edgelb-haproxy
//!
//! HAProxy for edgelb: the config [`Renderer`](edgelb_core::Renderer), the deployers that put
//! configs live on edge nodes (local and, with the default `ssh` feature, over SSH), and the
//! pieces they share: the [`EdgeHost`] seam, the validate → swap → reload → confirm →
//! roll back transaction, and HAProxy's master CLI.
//!
//! Features: `ssh` (default) builds the native SSH deployer; `testing` exports `sim_edge`,
//! a simulated edge host and a deployer over simulated edges that runs the real deploy
//! transaction, for embedders' tests. A restarted controller carries on from the edges'
//! server slots with [`HaproxyRenderer::seed_slots_from_edges`].
#![forbid(unsafe_code)]

pub mod apply;
mod child_log;
mod config_sections;
pub mod demo_backend;
pub mod edge_health;
pub mod edge_stats;
mod error;
mod host;
mod layout;
mod listen_check;
mod local;
mod master_cli;
pub mod proxy_header;
mod render;
mod running_drift;
pub mod runtime_api;
pub mod runtime_update;
#[cfg(any(test, feature = "testing"))]
pub mod sim_edge;
mod slot_seed;
#[cfg(feature = "ssh")]
pub mod ssh;

pub use edge_stats::{EdgeStats, StatsSource};
pub use error::{Error, Result};
pub use host::{EdgeHost, ExecOutput};
pub use layout::HaproxyLayout;
pub use local::{LocalDeployer, LocalHost};
pub use master_cli::MasterProcs;
pub use render::{
    BUILTIN_TEMPLATE, BUILTIN_TEMPLATE_NAME, Balance, ConfigDuration, HaproxyRenderer, HealthCheck,
    LogTarget, MAX_HAPROXY_MILLIS, MAX_SLOT_SETTING, RenderOptions, RunAs, SPARE_ADDRESS,
    SlotOptions, TEMPLATE_NAME, Timeouts, backend_name, frontend_name, slot_name,
};
pub use runtime_api::RuntimeApi;
pub use slot_seed::SLOT_SEED_TIMEOUT;
#[cfg(feature = "ssh")]
pub use ssh::{SshDeployer, SshDeployerConfig, SshHost};

/// The README's Rust examples, run as doctests so the embedding example stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

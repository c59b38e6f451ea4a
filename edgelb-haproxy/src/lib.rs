//! # edgelb-haproxy
//!
//! HAProxy for edgelb: the config [`Renderer`](edgelb_core::Renderer), the deployers that put
//! configs live on edge nodes (local and, with the default `ssh` feature, over SSH), and the
//! pieces they share: the [`EdgeHost`] seam, the validate → swap → reload → confirm →
//! roll back transaction, and HAProxy's master CLI.
#![forbid(unsafe_code)]

mod child_log;
pub mod cli;
mod config_sections;
pub mod demo_backend;
pub mod deploy;
pub mod edge_health;
mod edge_host;
pub mod edge_stats;
mod error;
mod layout;
mod live_file;
mod local;
pub mod proxy_header;
mod render;
#[cfg(test)]
mod sim_edge;
#[cfg(feature = "ssh")]
pub mod ssh;
#[cfg(feature = "testing")]
pub mod testing;

pub use cli::master::MasterProcs;
pub use cli::runtime::RuntimeApi;
pub use edge_host::{EdgeHost, ExecOutput};
pub use edge_stats::{EdgeStats, StatsSource};
pub use error::{Error, Result};
pub use layout::HaproxyLayout;
pub use local::{LocalDeployer, LocalHost};
pub use render::{
    BUILTIN_TEMPLATE, BUILTIN_TEMPLATE_NAME, Balance, ConfigDuration, HaproxyRenderer, HealthCheck,
    LogTarget, MAX_HAPROXY_MILLIS, MAX_SLOT_SETTING, RenderOptions, RunAs, SPARE_ADDRESS,
    SlotOptions, TEMPLATE_NAME, Timeouts, backend_name, frontend_name, slot_name,
};
#[cfg(feature = "ssh")]
pub use ssh::{SshDeployer, SshDeployerConfig, SshHost};

/// The README's Rust examples, run as doctests so the embedding example stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

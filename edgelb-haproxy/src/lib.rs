//! # edgelb-haproxy
//!
//! HAProxy for edgelb: the config [`Renderer`](edgelb_core::Renderer), the deployers that put
//! configs live on edge nodes (local and, with the default `ssh` feature, over SSH), and the
//! pieces they share: the [`EdgeHost`] seam, the validate → swap → reload → confirm →
//! roll back transaction, and HAProxy's master CLI.
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
mod listen_addresses;
mod listen_check;
mod local;
mod master_cli;
pub mod proxy_header;
mod render;
mod running_drift;
pub mod runtime_api;
pub mod runtime_update;
#[cfg(test)]
mod sim_edge;
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
    SlotOptions, TEMPLATE_NAME, Timeouts, backend_name, frontend_name, frontend_name_at, slot_name,
};
pub use runtime_api::RuntimeApi;
#[cfg(feature = "ssh")]
pub use ssh::{SshDeployer, SshDeployerConfig, SshHost};

/// The README's Rust examples, run as doctests so the embedding example stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

//! # edgelb-haproxy
//!
//! HAProxy for edgelb: the config [`Renderer`](edgelb_core::Renderer), the deployers that put
//! configs live on edge nodes (local and, with the default `ssh` feature, over SSH), and the
//! pieces they share: the [`EdgeHost`] seam, the validate → swap → reload → confirm →
//! roll back transaction, and HAProxy's master CLI and runtime API.
//!
//! Where each part lives:
//! * `render/`: the renderer ([`HaproxyRenderer`], [`RenderOptions`]).
//! * `deploy/`: the transaction every deployer runs ([`deploy::apply_config`],
//!   [`deploy::live_digest`]): `reload.rs` (validate, swap, reload, confirm, roll back),
//!   `runtime.rs` (endpoint-only changes through the runtime API, no reload), `drift.rs`
//!   (running servers changed by hand, put back), `listen_check.rs` (ports another process
//!   holds).
//! * `cli/`: talking to HAProxy: `master.rs` (the master CLI, [`MasterProcs`]), `runtime.rs`
//!   (the runtime API client, [`RuntimeApi`]), `plan.rs` (the runtime commands that bring the
//!   running servers to a file, in a safe order).
//! * `live_file.rs`: the one reader of the haproxy.cfg edgelb writes.
//! * `edge_host.rs`: the [`EdgeHost`] seam, implemented by `local.rs` ([`LocalHost`], with
//!   [`LocalDeployer`]) and `ssh/` (`SshHost`, with `SshDeployer`).
//! * `edge_health.rs` and [`edge_stats`]: the health probe and the traffic poll of an edge.
//! * [`demo_backend`] and [`proxy_header`]: the PROXY-aware demo backend.
//!
//!
//! Features: `ssh` (default) builds the native SSH deployer; `testing` exports `sim_edge`,
//! a simulated edge host and a deployer over simulated edges that runs the real deploy
//! transaction, for embedders' tests, and helpers for tests against edges (module
//! `testing`). A restarted controller carries on from the edges' server slots with
//! [`HaproxyRenderer::seed_slots_from_edges`].
#![forbid(unsafe_code)]

mod acl_line;
mod child_log;
mod cli;
mod config_sections;
pub mod demo_backend;
pub mod deploy;
mod edge_health;
mod edge_host;
pub mod edge_stats;
mod error;
mod layout;
mod live_cache;
mod live_file;
mod local;
mod local_swap;
pub mod proxy_header;
mod render;
#[cfg(any(test, feature = "testing"))]
pub mod sim_edge;
mod slot_seed;
mod socket_requests;
#[cfg(feature = "ssh")]
pub mod ssh;
#[cfg(feature = "testing")]
pub mod testing;

pub use cli::acl::AclError;
pub use cli::master::MasterProcs;
pub use cli::plan::RUNTIME_APPLIED_TARGET;
pub use cli::runtime::{CommandError, RuntimeApi, RuntimeCommand};
pub use cli::servers_state::{ServerAdminState, ServerOperState, ServerState};
pub use edge_host::{EdgeHost, ExecOutput, FileStamp, StageSwap, Staged};
pub use edge_stats::{EdgeStats, StatsSource};
pub use error::{Error, Result};
pub use layout::HaproxyLayout;
pub use live_cache::LiveCache;
pub use local::{LocalDeployer, LocalHost};
pub use render::{
    AFFINITY_TABLE_SIZE, BUILTIN_TEMPLATE, BUILTIN_TEMPLATE_NAME, Balance, ConfigDuration,
    HaproxyRenderer, HealthCheck, LogTarget, MAX_HAPROXY_MILLIS, MAX_SLOT_SETTING,
    PLACED_SOURCE_ACL_ID_BASE, RANGES_PER_LINE, RenderOptions, RunAs, SOURCE_ACL_ID_BASE,
    SOURCE_ACL_NAME, SPARE_ADDRESS, SlotOptions, TEMPLATE_NAME, Timeouts, backend_name,
    frontend_name, frontend_name_at, placed_source_acl_id, slot_name, source_acl_id,
};
pub use slot_seed::SLOT_SEED_TIMEOUT;
#[cfg(feature = "ssh")]
pub use ssh::{SshDeployer, SshDeployerConfig, SshHost};

/// The README's Rust examples, run as doctests so the embedding example stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

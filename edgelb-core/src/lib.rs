//! # edgelb-core
//!
//! The model, traits and deploy pipeline of edgelb, which keeps HAProxy on out-of-cluster
//! edge nodes in sync with a cluster's endpoints.
//!
//! ```text
//! EndpointSource ──Snapshot──▶ Pipeline ──Snapshot, EdgeNode──▶ Renderer ──config──▶ Deployer ──▶ edges
//!                               (debounce, dedupe, retry, resync) ──PipelineStatus──▶ status sinks
//! ```
//!
//! * A [`Snapshot`] is the whole desired state: services → ports → endpoints. Each service
//!   is placed on the edges of one pool, optionally on one address ([`placement`]).
//! * An [`EndpointSource`] produces snapshots: [`StaticSource`], [`ChannelSource`],
//!   [`FileSource`] here, the Kubernetes sources in `edgelb-kube`.
//! * A [`Renderer`] turns a snapshot into one node's config (`edgelb-haproxy`).
//! * A [`Deployer`] puts configs live (`edgelb-haproxy`'s SSH and local deployers,
//!   `edgelb-ansible`).
//! * The [`Pipeline`] ties them together; its [`PipelineStatus`] says what is live where.
//!
//! With the `testing` feature, `testing` exports mockall mocks of the traits and a stateful
//! fake deployer (`testing::FakeDeployer`) for your own tests.
#![forbid(unsafe_code)]

mod deploy;
mod digest;
pub mod duration;
mod error;
mod health;
mod model;
pub mod names;
mod node;
mod pipeline;
pub mod placement;
mod service_fields;
pub mod source;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
mod traits;
pub mod yaml;

pub use deploy::{Applied, DeployError, NodeConfig, NodeOutcome};
pub use digest::{DIGEST_LINE_PREFIX, Digest, RenderedConfig, is_edgelbs_own, live_digest_of};
pub use error::{Error, Result};
pub use health::{EdgeHealth, HealthConfig, HealthTracker};
/// CIDR ranges of [`ServiceSpec::source_ranges`].
pub use ipnet::IpNet;
pub use model::{
    Endpoint, EndpointState, PortSpec, ProxyProtocol, ServiceKey, ServiceSpec, Snapshot,
};
pub use node::{EdgeNode, MAX_NODE_NAME_LEN, SshTarget};
pub use pipeline::{NodeStatus, Pipeline, PipelineConfig, PipelineStatus};
pub use placement::{Claim, DEFAULT_POOL};
pub use service_fields::{
    MAX_SOURCE_RANGES, SessionAffinity, normalize_source_ranges, parse_source_range,
};
pub use source::{ChannelSource, FileSource, SnapshotSender, StaticSource};
pub use traits::{Deployer, EndpointSource, HealthProbe, Renderer};

/// Re-exported so embedders use the same cancellation token type as [`Pipeline::run`].
pub use tokio_util::sync::CancellationToken;

//! # edgelb-kube
//!
//! edgelb's Kubernetes side:
//!
//! * [`NamedServicesSource`]: a fixed list of `namespace/name` Services and their
//!   EndpointSlices, each port mapped to an edge listen port and a PROXY setting;
//! * [`LoadBalancerSource`]: every `type: LoadBalancer` Service whose
//!   `spec.loadBalancerClass` is ours (default [`DEFAULT_LOAD_BALANCER_CLASS`]), PROXY
//!   protocol per Service through the [`PROXY_PROTOCOL_ANNOTATION`], placement through the
//!   [`POOL_ANNOTATION`] and the [`ADDRESS_ANNOTATION`] (or `spec.loadBalancerIP`); who loses a
//!   port to an older Service is told by a Warning Event and the [`PLACED_CONDITION`];
//! * [`StatusWriter`]: writes `status.loadBalancer.ingress` (with `ipMode: Proxy` when PROXY
//!   protocol is on) from the pipeline's [`PipelineStatus`](edgelb_core::PipelineStatus), and
//!   records deploy Events;
//! * [`EventPublisher`]: rate-limited `events.k8s.io/v1` Events;
//! * [`crd`]: the `EdgeNode` and `EdgePool` custom resources, their watcher and status writer;
//! * [`LeaderElector`]: leader election on a `coordination.k8s.io/v1` Lease, so only one
//!   replica deploys.
//!
//! Both sources implement [`edgelb_core::EndpointSource`]: the first snapshot comes only once
//! every watch has listed, each change after that sends a new full snapshot, and watch errors
//! (410 Gone included) back off and relist without ever sending a false empty snapshot.
//!
//! ## Wiring (what `edgelb run` does)
//!
//! ```no_run
//! use edgelb_core::{CancellationToken, EdgeNode, Pipeline};
//! use edgelb_kube::*;
//! # async fn demo(pipeline: Pipeline, nodes: Vec<EdgeNode>) -> Result<()> {
//! let client = edgelb_kube::connect().await?;
//! let elector = LeaderElector::new(client.clone(), LeaderElectionConfig::new("edgelb", "pod-name"))?;
//! let mut leadership = elector.leadership();
//! let shutdown = CancellationToken::new();
//! tokio::spawn(elector.run(shutdown.clone()));
//!
//! if let Some(term) = leadership.acquired().await {
//!     let events = EventPublisher::new(client.clone(), EventConfig::default());
//!     let source = LoadBalancerSource::new(client.clone(), LoadBalancerConfig::default())?
//!         .with_events(events.clone());
//!     let writer = StatusWriter::new(client.clone(), nodes).with_events(events);
//!     tokio::spawn(writer.run(pipeline.status(), term.clone()));
//!     pipeline.run(source, term).await.ok(); // stops the moment leadership is lost
//! }
//! # Ok(()) }
//! ```
//!
//! The library does not pick a Kubernetes version for `k8s-openapi`; the binary enables one
//! of its `v1_*` features (see the k8s-openapi docs).
#![forbid(unsafe_code)]

mod conditions;
mod convert;
pub mod crd;
mod dns_endpoint;
mod error;
mod events;
mod leader;
mod observed;
mod placement;
mod publish;
mod rate;
mod service_fields;
mod session_affinity;
mod source;
mod source_ranges;
mod status;

pub use conditions::PLACED_CONDITION;
pub use convert::SERVICE_NAME_LABEL;
pub use dns_endpoint::{
    DNSEndpoint, DnsEndpointConfig, DnsEndpointSpec, DnsEndpointWriter, DnsRecord,
};
pub use error::{Error, Result};
pub use events::{EventConfig, EventPublisher, EventType};
pub use leader::{LeaderElectionConfig, LeaderElector, Leadership};
pub use placement::{ADDRESS_ANNOTATION, POOL_ANNOTATION};
pub use source::{
    DEFAULT_LOAD_BALANCER_CLASS, LoadBalancerConfig, LoadBalancerSource, NamedService,
    NamedServicesSource, PROXY_PROTOCOL_ANNOTATION, PortMapping, PortRef, validate_named_services,
};
pub use source_ranges::SOURCE_RANGES_ANNOTATION;
pub use status::{FIELD_MANAGER, Ingress, StatusConfig, StatusWriter, ingress_for};

/// Re-exported so callers need no direct dependency to name the client type.
pub use kube::Client;

/// A client from the environment: the in-cluster ServiceAccount, or `KUBECONFIG` /
/// `~/.kube/config` outside a cluster.
///
/// Without kube's built-in retry of 429/503/504: it retries one request up to 15 times with a
/// delay doubling from 5 ms, so during an outage a single list or Lease renewal could hang for
/// minutes and the API server's return went unnoticed for seconds. edgelb retries itself: the
/// watches at most 1 s apart, status writes with their own backoff, the Lease within its renew
/// deadline.
pub async fn connect() -> Result<Client> {
    let mut config = kube::Config::infer().await.map_err(|e| Error::Connect {
        source: kube::Error::InferConfig(e),
    })?;
    config.default_retry = false;
    Client::try_from(config).map_err(|source| Error::Connect { source })
}

//! Writes `status.loadBalancer.ingress` of the Services edgelb serves, and records deploy
//! Events on them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use edgelb_core::{
    Applied, CancellationToken, EdgeHealth, EdgeNode, NodeStatus, PipelineStatus, ProxyProtocol,
    ServiceKey, ServiceSpec, Snapshot,
};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Result, status_code};
use crate::events::{EventPublisher, EventType};
use crate::observed::{Observed, ObservedServices};
use crate::publish::healthy_or_all;
use crate::rate::TokenBucket;

/// The field manager edgelb patches with.
pub const FIELD_MANAGER: &str = "edgelb";

/// One entry of `status.loadBalancer.ingress`, as edgelb writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ingress {
    /// An IP address (`ip`) or a DNS name (`hostname`).
    pub address: String,
    /// Whether `address` is an IP address.
    pub is_ip: bool,
    /// `ipMode: Proxy` (PROXY protocol on) rather than `VIP`; only for IP addresses.
    pub proxy: bool,
}

impl Ingress {
    fn to_json(&self) -> Value {
        if self.is_ip {
            json!({"ip": self.address, "ipMode": if self.proxy { "Proxy" } else { "VIP" }})
        } else {
            json!({"hostname": self.address})
        }
    }
}

/// The ingress list for a Service served by the edges with `addresses`.
///
/// `ipMode: Proxy` tells kube-proxy not to short-circuit in-cluster traffic to these IPs
/// straight to the pods, which would skip the PROXY header the pods expect.
pub fn ingress_for<'a>(
    addresses: impl IntoIterator<Item = &'a str>,
    proxy_protocol: ProxyProtocol,
) -> Vec<Ingress> {
    let mut seen = BTreeSet::new();
    addresses
        .into_iter()
        .filter(|a| seen.insert(*a))
        .map(|a| {
            let is_ip = a.parse::<IpAddr>().is_ok();
            Ingress {
                address: a.to_owned(),
                is_ip,
                // ipMode applies to IP addresses only.
                proxy: is_ip && proxy_protocol != ProxyProtocol::None,
            }
        })
        .collect()
}

/// Settings of the [`StatusWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    /// First retry delay after a failed patch; doubles up to `max_retry` (default 1 s).
    pub min_retry: Duration,
    /// Longest retry delay (default 60 s).
    pub max_retry: Duration,
    /// Status patches in flight at once (default 16): enough that 5,000 Services are written
    /// in seconds, few enough that the API server's priority and fairness never has to queue
    /// them for long. A 429 is retried like any other failure.
    pub max_in_flight: usize,
    /// Status patches sent per second on average, all Services together (default 1,000;
    /// client-go's 5 would take 17 minutes for 5,000 Services). A courtesy to the API server
    /// on top of its own priority and fairness, which still queues or rejects (429) what its
    /// priority level cannot take.
    pub qps: u32,
    /// Patches that may go out at once before `qps` paces them (default 100).
    pub burst: u32,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            min_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            max_in_flight: 16,
            qps: 1_000,
            burst: 100,
        }
    }
}

/// An Event to record: Service, type, reason, note, node.
type PendingEvent = (ServiceKey, EventType, &'static str, String, String);

/// Events held while the first list of Services is under way, at most.
const HELD_EVENTS: usize = 10_000;

/// The config a node runs, as far as the writer knows: the snapshot of the last generation it
/// was seen in sync with. A node that fails a later deploy keeps serving it.
#[derive(Debug, Clone)]
struct NodeRecord {
    generation: u64,
    snapshot: Arc<Snapshot>,
}

/// Keeps `status.loadBalancer.ingress` of every Service in the desired state in line with
/// what the edges actually serve, and records Events for applied and failed deploys.
///
/// The writer watches the `type: LoadBalancer` Services itself and compares what it wants
/// with each Service's current `status.loadBalancer.ingress`, not with what it once wrote: a
/// Service deleted and re-created, or whose status someone else cleared, is written again;
/// Events refer to the Service (and uid) the watch last saw, with no GET. Nothing is written
/// before the first list of Services completes, nor to a Service the watch has not seen.
/// Patches go out up to [`StatusConfig::max_in_flight`] at a time, paced to
/// [`StatusConfig::qps`] with bursts of [`StatusConfig::burst`].
///
/// A Service gets an edge's public addresses once that edge runs a config containing the
/// Service (it was in sync with a generation that had the Service; only the edges of the
/// Service's pool ever do); a Service placed on an address gets that address instead, once an
/// edge of its pool runs it. An edge that fails a later deploy keeps its old config and stays
/// listed. IP addresses are written as `ip` with
/// `ipMode: Proxy` when the Service's ports send PROXY protocol, `VIP` otherwise; names as
/// `hostname`. A Service that leaves the desired state has its ingress cleared.
///
/// Meant for the LoadBalancer-class mode, where every Service in the snapshot is a
/// `type: LoadBalancer` Service of our class. Run it only while this replica leads.
///
/// RBAC: `patch` on `services/status`, `list`/`watch` on `services`, `create` on
/// `events.k8s.io` events.
///
/// ```no_run
/// use edgelb_core::{CancellationToken, EdgeNode, PipelineStatus};
/// use edgelb_kube::{EventConfig, EventPublisher, StatusWriter};
/// # async fn demo(client: kube::Client, nodes: Vec<EdgeNode>,
/// #     status: tokio::sync::watch::Receiver<PipelineStatus>) -> edgelb_kube::Result<()> {
/// let events = EventPublisher::new(client.clone(), EventConfig::default());
/// let stop = CancellationToken::new();
/// StatusWriter::new(client, nodes).with_events(events).run(status, stop).await?;
/// # Ok(()) }
/// ```
pub struct StatusWriter {
    client: Client,
    nodes: Vec<EdgeNode>,
    config: StatusConfig,
    events: Option<EventPublisher>,
    records: BTreeMap<String, NodeRecord>,
    seen: BTreeMap<String, NodeStatus>,
    /// Services edgelb gave an ingress to: cleared when they leave the desired state.
    written: BTreeSet<ServiceKey>,
    observed: ObservedServices,
    /// Events waiting for the first list of Services.
    held: Vec<PendingEvent>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Paces the patches ([`StatusConfig::qps`], [`StatusConfig::burst`]).
    limit: TokenBucket,
}

impl StatusWriter {
    /// A writer for the edges `nodes` (their `public_addresses` are what it writes).
    pub fn new(client: Client, nodes: Vec<EdgeNode>) -> Self {
        Self {
            client,
            nodes,
            config: StatusConfig::default(),
            events: None,
            records: BTreeMap::new(),
            seen: BTreeMap::new(),
            written: BTreeSet::new(),
            observed: ObservedServices::default(),
            held: Vec::new(),
            failures: 0,
            retry_at: None,
            limit: TokenBucket::new(StatusConfig::default().qps, StatusConfig::default().burst),
        }
    }

    /// Replaces the retry settings.
    pub fn with_config(mut self, config: StatusConfig) -> Self {
        self.limit = TokenBucket::new(config.qps, config.burst);
        self.config = config;
        self
    }

    /// Records `Deployed` / `DeployFailed` Events on the Services.
    pub fn with_events(mut self, events: EventPublisher) -> Self {
        self.events = Some(events);
        self
    }

    /// Runs until `shutdown` is cancelled or the pipeline's status channel closes. The status
    /// is left as it is on exit: the edges keep serving, and the next leader takes over.
    pub async fn run(
        mut self,
        mut status: watch::Receiver<PipelineStatus>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let mut services = ObservedServices::watch(self.client.clone());
        let mut pipeline_changed = true;
        loop {
            let current = status.borrow_and_update().clone();
            if pipeline_changed {
                self.observe(&current).await;
            }
            self.sync(&current).await;
            let retry_at = self.retry_at;
            pipeline_changed = false;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = status.changed() => {
                    if changed.is_err() {
                        tracing::debug!("pipeline status closed; status writer stops");
                        break;
                    }
                    pipeline_changed = true;
                }
                event = services.next() => {
                    let Some(event) = event else { break };
                    // Take every event already waiting: a list of thousands of Services
                    // costs one comparison pass.
                    let mut changed = self.observed.apply(event);
                    while let Some(Some(event)) = services.next().now_or_never() {
                        changed |= self.observed.apply(event);
                    }
                    if !changed {
                        // Nothing the writer compares against moved: wait again.
                        continue;
                    }
                    if self.observed.ready() && !self.held.is_empty() {
                        let held = std::mem::take(&mut self.held);
                        self.publish(held).await;
                    }
                }
                () = sleep_until_opt(retry_at), if retry_at.is_some() => {}
            }
        }
        Ok(())
    }

    /// Updates what each node is known to run, and records deploy Events.
    async fn observe(&mut self, status: &PipelineStatus) {
        let mut events: Vec<PendingEvent> = Vec::new();
        for node in &self.nodes {
            let Some(ns) = status.nodes.get(&node.name) else {
                continue;
            };
            let prev = self.seen.get(&node.name).cloned().unwrap_or_default();
            let old = self.records.get(&node.name).cloned();
            // What the node runs: the desired state less the services it refused.
            let runs = ns.live_snapshot.as_ref().or(status.snapshot.as_ref());
            if let (true, Some(snapshot)) = (ns.in_sync(status.generation), runs) {
                if old.as_ref().map(|r| r.generation) != Some(status.generation)
                    || old.as_ref().is_some_and(|r| {
                        !Arc::ptr_eq(&r.snapshot, snapshot) && r.snapshot != *snapshot
                    })
                {
                    self.records.insert(
                        node.name.clone(),
                        NodeRecord {
                            generation: status.generation,
                            snapshot: snapshot.clone(),
                        },
                    );
                    let applied = ns.last_outcome.filter(|a| *a != Applied::Unchanged);
                    if let Some(applied) = applied {
                        for (key, spec) in &snapshot.services {
                            if service_of(old.as_ref(), key) != Some(spec) {
                                events.push((
                                    key.clone(),
                                    EventType::Normal,
                                    "Deployed",
                                    format!(
                                        "edge {} serves the new config for this Service ({applied}, {})",
                                        node.name,
                                        endpoint_summary(spec)
                                    ),
                                    node.name.clone(),
                                ));
                            }
                        }
                    }
                }
            } else if ns.live_digest.is_none() && ns.live_generation.is_none() && old.is_some() {
                // The node was found running no edgelb config at all.
                self.records.remove(&node.name);
            }
            if ns.health != prev.health
                && (ns.health.is_unhealthy() || prev.health.is_unhealthy())
                && let Some(record) = self.records.get(&node.name)
            {
                let others_healthy = |key: &ServiceKey| {
                    self.nodes.iter().any(|other| {
                        other.name != node.name
                            && self
                                .records
                                .get(&other.name)
                                .is_some_and(|r| r.snapshot.services.contains_key(key))
                            && status
                                .nodes
                                .get(&other.name)
                                .is_some_and(|o| !o.health.is_unhealthy())
                    })
                };
                for key in record.snapshot.services.keys() {
                    let (type_, reason, note) = match &ns.health {
                        EdgeHealth::Unhealthy { reason, .. } if others_healthy(key) => (
                            EventType::Warning,
                            "EdgeUnhealthy",
                            format!(
                                "edge {} is unhealthy ({reason}); its addresses leave this Service's status while other edges serve it",
                                node.name
                            ),
                        ),
                        EdgeHealth::Unhealthy { reason, .. } => (
                            EventType::Warning,
                            "EdgeUnhealthy",
                            format!(
                                "edge {} is unhealthy ({reason}), and so is every other edge serving this Service: all their addresses stay in its status, since publishing none would help no client",
                                node.name
                            ),
                        ),
                        _ => (
                            EventType::Normal,
                            "EdgeHealthy",
                            format!(
                                "edge {} is healthy again; its addresses are back in this Service's status",
                                node.name
                            ),
                        ),
                    };
                    events.push((key.clone(), type_, reason, note, node.name.clone()));
                }
            }
            for (key, reason) in &ns.quarantined {
                if !prev.quarantined.contains_key(key) {
                    events.push((
                        key.clone(),
                        EventType::Warning,
                        "Quarantined",
                        format!(
                            "edge {} refused this Service and runs every other Service without it (or with its last good config): {reason}; edgelb tries it again when the Service changes or at the next resync",
                            node.name
                        ),
                        node.name.clone(),
                    ));
                }
            }
            let failed_again = ns.last_error.is_some()
                && (ns.consecutive_failures > prev.consecutive_failures
                    || ns.last_error != prev.last_error);
            if let (true, Some(err), Some(snapshot)) =
                (failed_again, &ns.last_error, &status.snapshot)
            {
                let live = self.records.get(&node.name);
                for (key, spec) in &snapshot.services {
                    if service_of(live, key) != Some(spec) {
                        events.push((
                            key.clone(),
                            EventType::Warning,
                            "DeployFailed",
                            format!(
                                "edge {} could not apply the config for this Service: {err}; it keeps its previous config and edgelb retries",
                                node.name
                            ),
                            node.name.clone(),
                        ));
                    }
                }
            }
            self.seen.insert(node.name.clone(), ns.clone());
        }
        if self.events.is_none() {
            return;
        }
        if !self.observed.ready() {
            // Which object (uid) an Event is about is known once the Services are listed.
            let room = HELD_EVENTS.saturating_sub(self.held.len());
            self.held.extend(events.into_iter().take(room));
            return;
        }
        self.publish(events).await;
    }

    /// Records `events` on the Services the watch knows (Services it does not know are gone).
    async fn publish(&self, events: Vec<PendingEvent>) {
        for (key, type_, reason, note, node) in events {
            let Some(regarding) = self.service_ref(&key) else {
                continue;
            };
            if let Some(events) = &self.events {
                events
                    .publish(
                        &regarding,
                        type_,
                        reason,
                        "Deploy",
                        &note,
                        &format!("Service {key} {node} {reason}"),
                    )
                    .await;
            }
        }
    }

    /// The desired ingress of every Service, by key.
    fn desired(&self, status: &PipelineStatus) -> BTreeMap<ServiceKey, Vec<Ingress>> {
        let mut desired = BTreeMap::new();
        let Some(snapshot) = &status.snapshot else {
            return desired;
        };
        for (key, spec) in &snapshot.services {
            let serving: Vec<&EdgeNode> = self
                .nodes
                .iter()
                .filter(|n| {
                    self.records
                        .get(&n.name)
                        .is_some_and(|r| r.snapshot.services.contains_key(key))
                })
                .collect();
            let serving = healthy_or_all(serving, status);
            let proxy = spec
                .ports
                .values()
                .map(|p| p.proxy_protocol)
                .find(|p| *p != ProxyProtocol::None)
                .unwrap_or(ProxyProtocol::None);
            // A Service placed on an address is reached there, through whichever of its
            // pool's edges holds it; otherwise through the serving edges' own addresses.
            let asked = spec
                .address
                .filter(|_| !serving.is_empty())
                .map(|a| a.to_string());
            let ingress = match &asked {
                Some(address) => ingress_for([address.as_str()], proxy),
                None if spec.address.is_some() => Vec::new(),
                None => ingress_for(
                    serving
                        .iter()
                        .flat_map(|n| n.public_addresses.iter().map(String::as_str)),
                    proxy,
                ),
            };
            desired.insert(key.clone(), ingress);
        }
        desired
    }

    /// Patches every Service whose observed ingress differs from the desired one.
    async fn sync(&mut self, status: &PipelineStatus) {
        if status.snapshot.is_none() || !self.observed.ready() {
            return; // no desired state, or not yet known what the Services say
        }
        if self.retry_at.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.retry_at = None;
        let desired = self.desired(status);
        let keys: BTreeSet<ServiceKey> =
            desired.keys().chain(self.written.iter()).cloned().collect();
        let mut jobs = Vec::new();
        for key in keys {
            let want = desired.get(&key).cloned().unwrap_or_default();
            let Some(seen) = self.observed.get(&key) else {
                // Not (or no longer) there; the watch tells when it is.
                self.written.remove(&key);
                continue;
            };
            if seen.ingress == want {
                if want.is_empty() {
                    self.written.remove(&key);
                } else {
                    self.written.insert(key);
                }
                continue;
            }
            jobs.push((key, want));
        }
        if jobs.is_empty() {
            self.failures = 0;
            return;
        }
        let client = self.client.clone();
        let in_flight = self.config.max_in_flight.max(1);
        let limit = &mut self.limit;
        let results: Vec<_> = futures::stream::iter(jobs)
            .map(|(key, want)| {
                let client = client.clone();
                // Reserved when a slot frees, so the pace holds however many are in flight.
                let at = limit.reserve();
                async move {
                    tokio::time::sleep_until(at).await;
                    // Only what the writer compares against is kept of the returned Service:
                    // 5,000 of them at once would be tens of MiB.
                    let result = patch(client, &key, &want)
                        .await
                        .map(|svc| Observed::of(&svc));
                    (key, want, result)
                }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await;
        let mut failed = false;
        for (key, want, result) in results {
            match result {
                Ok(seen) => {
                    if let Some((key, seen)) = seen {
                        self.observed.record(key, seen);
                    }
                    if want.is_empty() {
                        self.written.remove(&key);
                    } else {
                        self.written.insert(key);
                    }
                }
                Err(e) if status_code(&e) == Some(404) => {
                    tracing::debug!(service = %key, "Service is gone; nothing to write");
                    self.written.remove(&key);
                    self.observed.forget(&key);
                }
                Err(e) => {
                    tracing::warn!(
                        service = %key,
                        error = %e,
                        hint = crate::error::hint(&e),
                        "writing the Service's load balancer status failed; retrying"
                    );
                    failed = true;
                }
            }
        }
        if failed {
            let exp = self.failures.min(16);
            let delay = self
                .config
                .min_retry
                .saturating_mul(1 << exp)
                .min(self.config.max_retry);
            self.failures += 1;
            self.retry_at = Some(Instant::now() + delay);
        } else {
            self.failures = 0;
        }
    }

    /// A reference to the Service (with its uid, so `kubectl describe` shows the Events), as
    /// the watch last saw it.
    fn service_ref(&self, key: &ServiceKey) -> Option<ObjectReference> {
        self.observed.get(key).map(|o| o.reference.clone())
    }
}

/// Merge-patches the Service's `status.loadBalancer.ingress`; returns the patched Service.
async fn patch(client: Client, key: &ServiceKey, ingress: &[Ingress]) -> kube::Result<Service> {
    let api: Api<Service> = Api::namespaced(client, &key.namespace);
    let list = if ingress.is_empty() {
        Value::Null
    } else {
        Value::Array(ingress.iter().map(Ingress::to_json).collect())
    };
    let body = json!({"status": {"loadBalancer": {"ingress": list}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let svc = api
        .patch_status(&key.name, &params, &Patch::Merge(&body))
        .await?;
    tracing::info!(
        service = %key,
        ingress = ?ingress.iter().map(|i| i.address.as_str()).collect::<Vec<_>>(),
        "load balancer status written"
    );
    Ok(svc)
}

/// "7 endpoint address(es) on 2 port(s)": each address counted once, however many ports it
/// serves (a pod behind two ports is one address, not two endpoints).
fn endpoint_summary(spec: &ServiceSpec) -> String {
    let addresses: BTreeSet<IpAddr> = spec
        .ports
        .values()
        .flat_map(|p| p.endpoints().map(|e| e.addr.ip()))
        .collect();
    format!(
        "{} endpoint address(es) on {} port(s)",
        addresses.len(),
        spec.ports.len()
    )
}

fn service_of<'a>(record: Option<&'a NodeRecord>, key: &ServiceKey) -> Option<&'a ServiceSpec> {
    record.and_then(|r| r.snapshot.services.get(key))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19 item 5: 7 pods behind 2 ports are 7 addresses, not "14 endpoint(s)".
    #[test]
    fn deployed_note_counts_each_address_once() {
        use edgelb_core::{Endpoint, PortSpec};
        let mut snap = Snapshot::default();
        for (name, port) in [("http", 80u16), ("https", 443)] {
            let spec = (1..=7u8).fold(PortSpec::new(port, ProxyProtocol::V2), |p, i| {
                p.with_endpoint(Endpoint::ready(IpAddr::from([10, 42, 0, i]), 8000 + port))
            });
            snap.insert_port("shop/web".parse().unwrap(), name, spec)
                .unwrap();
        }
        let spec = snap.services.values().next().unwrap();
        assert_eq!(
            endpoint_summary(spec),
            "7 endpoint address(es) on 2 port(s)"
        );
    }

    #[test]
    fn ingress_ip_vs_hostname_and_ip_mode() {
        let list = ingress_for(
            [
                "203.0.113.10",
                "2001:db8::1",
                "edge.example.net",
                "203.0.113.10",
            ],
            ProxyProtocol::V2,
        );
        let json: Vec<Value> = list.iter().map(Ingress::to_json).collect();
        assert_eq!(
            json,
            vec![
                json!({"ip": "203.0.113.10", "ipMode": "Proxy"}),
                json!({"ip": "2001:db8::1", "ipMode": "Proxy"}),
                json!({"hostname": "edge.example.net"}),
            ]
        );
        let vip = ingress_for(["203.0.113.10"], ProxyProtocol::None);
        assert_eq!(
            vip[0].to_json(),
            json!({"ip": "203.0.113.10", "ipMode": "VIP"})
        );
    }
}

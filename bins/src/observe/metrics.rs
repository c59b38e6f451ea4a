//! Prometheus metrics, derived from the pipeline's status.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use edgelb_core::{EdgeHealth, PipelineStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::edge_traffic::{TrafficCollector, TrafficStore};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeResult {
    node: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeDigest {
    node: String,
    digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServicePort {
    service: String,
    port: String,
}

type HistogramFamily = Family<NodeLabel, Histogram, fn() -> Histogram>;

fn convergence_histogram() -> Histogram {
    // 10 ms … ~82 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// Every series edgelb exports. The reference is in the README.
pub struct Metrics {
    registry: Registry,
    deploys: Family<NodeResult, Counter>,
    convergence: HistogramFamily,
    endpoints: Family<ServicePort, Gauge>,
    live_digest: Family<NodeDigest, Gauge>,
    last_success: Family<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    in_sync: Family<NodeLabel, Gauge>,
    consecutive_failures: Family<NodeLabel, Gauge>,
    quarantined: Family<NodeLabel, Gauge>,
    healthy: Family<NodeLabel, Gauge>,
    health_transitions: Family<NodeLabel, Counter>,
    health_checked: Family<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    deploy_started: Family<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    generation: Gauge,
    held_backends: Gauge,
    leader: Gauge,
    /// The edges' traffic, written by the stats pollers, encoded at each scrape.
    traffic: TrafficStore,
    /// What was counted so far, per (node, result), to turn cumulative counts into increments.
    counted: BTreeMap<(String, String), u64>,
    /// The convergence observations made so far: (node, generation).
    observed: BTreeMap<String, u64>,
    /// Health transitions counted so far, per node.
    transitions: BTreeMap<String, u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series under the `edgelb` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("edgelb");
        let deploys = Family::<NodeResult, Counter>::default();
        registry.register(
            "deploys",
            "Deploy attempts by node and result (reloaded, runtime-updated, unchanged, or a failure kind such as connect or config-rejected)",
            deploys.clone(),
        );
        let convergence: HistogramFamily = Family::new_with_constructor(convergence_histogram);
        registry.register(
            "convergence_seconds",
            "Time from the source delivering a change to the node confirming it live",
            convergence.clone(),
        );
        let endpoints = Family::<ServicePort, Gauge>::default();
        registry.register(
            "endpoints",
            "Endpoints per service port in the desired state",
            endpoints.clone(),
        );
        let live_digest = Family::<NodeDigest, Gauge>::default();
        registry.register(
            "node_live_digest_info",
            "The config digest live on each node (value 1)",
            live_digest.clone(),
        );
        let last_success = Family::<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "node_last_success_timestamp_seconds",
            "When each node last confirmed the desired config (Unix time)",
            last_success.clone(),
        );
        let in_sync = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "node_in_sync",
            "1 when the node runs the current desired config (0 while it is unhealthy: then it cannot be known)",
            in_sync.clone(),
        );
        let consecutive_failures = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "node_consecutive_failures",
            "Failed deploys since the node's last success",
            consecutive_failures.clone(),
        );
        let quarantined = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "quarantined_services",
            "Services the node refused (haproxy -c, a failed reload, a taken port) and runs without them (or at their last good config) until they change or the next resync",
            quarantined.clone(),
        );
        let deploy_started =
            Family::<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "node_deploy_started_timestamp_seconds",
            "When the deploy now in flight to the node started (Unix time; 0 when none is): a slow or hung edge shows as an old value",
            deploy_started.clone(),
        );
        let healthy = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "edge_healthy",
            "1 when the edge's health probes say it serves, 0 when they say it does not, -1 while unknown (not probed yet, or probes off)",
            healthy.clone(),
        );
        let health_transitions = Family::<NodeLabel, Counter>::default();
        registry.register(
            "edge_health_transitions",
            "Changes of the edge's health (healthy, unhealthy)",
            health_transitions.clone(),
        );
        let health_checked =
            Family::<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "edge_health_checked_timestamp_seconds",
            "When the edge's health was last probed (Unix time; 0 never): an old value means its health is not known now",
            health_checked.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "desired_generation",
            "Generation of the desired state",
            generation.clone(),
        );
        let held_backends = Gauge::default();
        registry.register(
            "held_backends",
            "Backends the source empties that keep their endpoints during the empty-backend hold",
            held_backends.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica holds the leader lease and deploys",
            leader.clone(),
        );
        let traffic = TrafficCollector::default();
        let store = traffic.store.clone();
        registry.register_collector(Box::new(traffic));
        Self {
            registry,
            traffic: store,
            deploys,
            convergence,
            endpoints,
            live_digest,
            last_success,
            in_sync,
            consecutive_failures,
            quarantined,
            healthy,
            health_transitions,
            health_checked,
            deploy_started,
            generation,
            held_backends,
            leader,
            counted: BTreeMap::new(),
            observed: BTreeMap::new(),
            transitions: BTreeMap::new(),
        }
    }

    /// Brings every series up to `status`.
    pub fn update(&mut self, status: &PipelineStatus) {
        self.generation
            .set(i64::try_from(status.generation).unwrap_or(i64::MAX));
        self.held_backends
            .set(i64::try_from(status.held_backends.len()).unwrap_or(i64::MAX));
        self.endpoints.clear();
        if let Some(snapshot) = &status.snapshot {
            for (key, name, port) in snapshot.ports() {
                let labels = ServicePort {
                    service: key.to_string(),
                    port: name.to_owned(),
                };
                self.endpoints
                    .get_or_create(&labels)
                    .set(i64::try_from(port.endpoints.len()).unwrap_or(i64::MAX));
            }
        }
        for (node, ns) in &status.nodes {
            for (result, total) in &ns.results {
                let seen = self
                    .counted
                    .entry((node.clone(), result.clone()))
                    .or_default();
                if *total > *seen {
                    let labels = NodeResult {
                        node: node.clone(),
                        result: result.clone(),
                    };
                    self.deploys.get_or_create(&labels).inc_by(*total - *seen);
                    *seen = *total;
                }
            }
            let label = NodeLabel { node: node.clone() };
            if let (Some(generation), Some(latency)) = (ns.live_generation, ns.last_convergence)
                && self.observed.get(node) != Some(&generation)
            {
                self.observed.insert(node.clone(), generation);
                self.convergence
                    .get_or_create(&label)
                    .observe(latency.as_secs_f64());
            }
            // An edge known to be unhealthy cannot be known to run anything: not in sync.
            self.in_sync.get_or_create(&label).set(i64::from(
                ns.in_sync(status.generation) && !ns.health.is_unhealthy(),
            ));
            self.consecutive_failures
                .get_or_create(&label)
                .set(i64::from(ns.consecutive_failures));
            self.quarantined
                .get_or_create(&label)
                .set(i64::try_from(ns.quarantined.len()).unwrap_or(i64::MAX));
            self.healthy.get_or_create(&label).set(match &ns.health {
                EdgeHealth::Healthy { .. } => 1,
                EdgeHealth::Unhealthy { .. } => 0,
                EdgeHealth::Unknown => -1,
            });
            let counted = self.transitions.entry(node.clone()).or_default();
            if ns.health_transitions > *counted {
                self.health_transitions
                    .get_or_create(&label)
                    .inc_by(ns.health_transitions - *counted);
                *counted = ns.health_transitions;
            }
            let checked = ns
                .health_checked_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
            self.health_checked
                .get_or_create(&label)
                .set(checked.map_or(0.0, |t| t.as_secs_f64()));
            let started = ns
                .deploying_since
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
            self.deploy_started
                .get_or_create(&label)
                .set(started.map_or(0.0, |t| t.as_secs_f64()));
            if let Some(t) = ns
                .last_success
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            {
                self.last_success.get_or_create(&label).set(t.as_secs_f64());
            }
        }
        // Edges that left (EdgeNode resources removed): their series go with them, so no
        // stale "out of sync" or "unhealthy" stays behind to alert on.
        let gone: Vec<String> = self
            .transitions
            .keys()
            .filter(|node| !status.nodes.contains_key(*node))
            .cloned()
            .collect();
        for node in gone {
            self.forget(&node);
        }
        self.live_digest.clear();
        for (node, ns) in &status.nodes {
            if let Some(d) = ns.live_digest {
                let labels = NodeDigest {
                    node: node.clone(),
                    digest: d.to_string(),
                };
                self.live_digest.get_or_create(&labels).set(1);
            }
        }
    }

    /// Removes every series of `node`.
    fn forget(&mut self, node: &str) {
        let label = NodeLabel {
            node: node.to_owned(),
        };
        self.last_success.remove(&label);
        self.in_sync.remove(&label);
        self.consecutive_failures.remove(&label);
        self.quarantined.remove(&label);
        self.healthy.remove(&label);
        self.health_transitions.remove(&label);
        self.health_checked.remove(&label);
        self.deploy_started.remove(&label);
        self.convergence.remove(&label);
        let results: Vec<(String, String)> = self
            .counted
            .keys()
            .filter(|(n, _)| n == node)
            .cloned()
            .collect();
        for key in results {
            self.deploys.remove(&NodeResult {
                node: key.0.clone(),
                result: key.1.clone(),
            });
            self.counted.remove(&key);
        }
        self.observed.remove(node);
        self.transitions.remove(node);
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Where the edge stats pollers put what they read.
    pub fn traffic_store(&self) -> TrafficStore {
        self.traffic.clone()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use edgelb_core::{Digest, NodeStatus};

    use super::*;

    #[test]
    fn cumulative_counts_become_increments_and_latency_is_observed_once() {
        let mut m = Metrics::new();
        let mut status = PipelineStatus {
            generation: 3,
            ..PipelineStatus::default()
        };
        let digest = Digest::of(b"x");
        let mut node = NodeStatus {
            desired_digest: Some(digest),
            live_digest: Some(digest),
            live_generation: Some(3),
            last_success: Some(SystemTime::now()),
            last_convergence: Some(Duration::from_millis(150)),
            deploys: 3,
            ..NodeStatus::default()
        };
        node.results.insert("reloaded".into(), 2);
        node.results.insert("connect".into(), 1);
        status.nodes.insert("edge-1".into(), node);
        m.update(&status);
        m.update(&status);
        let text = m.encode();
        assert!(
            text.contains("edgelb_deploys_total{node=\"edge-1\",result=\"reloaded\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("edgelb_deploys_total{node=\"edge-1\",result=\"connect\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("edgelb_convergence_seconds_count{node=\"edge-1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("edgelb_node_in_sync{node=\"edge-1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "edgelb_node_live_digest_info{{node=\"edge-1\",digest=\"{digest}\"}} 1"
            )),
            "{text}"
        );
        assert!(text.contains("edgelb_desired_generation 3"), "{text}");
        assert!(
            text.contains("edgelb_quarantined_services{node=\"edge-1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("edgelb_node_deploy_started_timestamp_seconds{node=\"edge-1\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn an_edge_that_leaves_takes_its_series_with_it() {
        let mut m = Metrics::new();
        let mut status = PipelineStatus::default();
        for name in ["edge-1", "edge-2"] {
            let mut node = NodeStatus {
                consecutive_failures: 2,
                ..NodeStatus::default()
            };
            node.results.insert("connect".into(), 2);
            status.nodes.insert(name.into(), node);
        }
        m.update(&status);
        let text = m.encode();
        assert!(
            text.contains("edgelb_node_in_sync{node=\"edge-2\"} 0"),
            "{text}"
        );
        status.nodes.remove("edge-2");
        m.update(&status);
        let text = m.encode();
        assert!(!text.contains("\"edge-2\""), "{text}");
        assert!(
            text.contains("edgelb_node_in_sync{node=\"edge-1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("edgelb_deploys_total{node=\"edge-1\",result=\"connect\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn quarantined_services_and_a_deploy_in_flight_show_per_node() {
        let mut m = Metrics::new();
        let mut node = NodeStatus {
            deploying_since: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            ..NodeStatus::default()
        };
        node.quarantined.insert(
            edgelb_core::ServiceKey::new("default", "ssh").unwrap(),
            "port 22 taken".into(),
        );
        node.health = EdgeHealth::Unhealthy {
            since: SystemTime::now(),
            reason: "no worker".into(),
        };
        node.health_transitions = 2;
        let mut status = PipelineStatus::default();
        status.nodes.insert("edge-2".into(), node);
        m.update(&status);
        let text = m.encode();
        assert!(
            text.contains("edgelb_quarantined_services{node=\"edge-2\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "edgelb_node_deploy_started_timestamp_seconds{node=\"edge-2\"} 1700000000.0"
            ),
            "{text}"
        );
        assert!(
            text.contains("edgelb_edge_healthy{node=\"edge-2\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("edgelb_edge_health_transitions_total{node=\"edge-2\"} 2"),
            "{text}"
        );
    }
}

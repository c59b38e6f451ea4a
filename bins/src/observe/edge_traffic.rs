//! The `edgelb_edge_*` traffic series: what the last poll of each edge read (see
//! [`super::edge_poller`]), encoded at scrape time so an edge or a Service that goes away
//! leaves no stale series.
//!
//! Labels stay bounded: per edge (`node`), per Service port (`service`, `port`) and side
//! (`proxy`: frontend or backend), and servers only as counts per backend by `state` and
//! `check` status. Never a label per server, address or client: at 10,000 endpoints a
//! series per server would be 10,000 series per edge, and the slots' names say nothing an
//! operator can act on that the counts do not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use edgelb_haproxy::EdgeStats;
use edgelb_haproxy::edge_stats::{ProxySide, ProxyStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// A frontend or backend of one Service port on one edge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ProxyLabels {
    /// The edge.
    pub node: String,
    /// `frontend` or `backend`.
    pub proxy: String,
    /// `<namespace>/<name>`.
    pub service: String,
    /// The port's name.
    pub port: String,
}

#[derive(Clone, Debug, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, EncodeLabelSet)]
struct KindLabels {
    node: String,
    proxy: String,
    service: String,
    port: String,
    kind: &'static str,
}

#[derive(Clone, Debug, EncodeLabelSet)]
struct ServerLabels {
    node: String,
    service: String,
    port: String,
    state: &'static str,
    check: String,
}

/// The last poll of one edge.
#[derive(Debug, Clone, Default)]
pub struct EdgeTraffic {
    /// Whether it answered.
    pub up: bool,
    /// How long the poll took, in seconds.
    pub poll_seconds: f64,
    /// What it answered (`None` after a failed poll), its proxies named by Service port.
    pub stats: Option<EdgeStats>,
    /// The proxies of [`Self::stats`] that belong to a Service port, with their labels.
    pub proxies: Vec<(ProxyLabels, ProxyStats)>,
}

/// The last poll of every edge, shared by the pollers and the scrape.
pub type TrafficStore = Arc<Mutex<BTreeMap<String, EdgeTraffic>>>;

/// Encodes a [`TrafficStore`] on each scrape.
#[derive(Debug, Clone, Default)]
pub struct TrafficCollector {
    /// What is encoded.
    pub store: TrafficStore,
}

type Row<'a> = (&'a ProxyLabels, &'a ProxyStats);

/// One series per Service port row, a gauge or a counter of `value`.
fn proxy_family(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, metric_type): (&str, &str, MetricType),
    rows: &[Row<'_>],
    value: fn(&ProxyStats) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, stats) in rows {
        let encoded = family.encode_family(*labels)?;
        match metric_type {
            MetricType::Counter => ConstCounter::new(value(stats)).encode(encoded)?,
            _ => {
                ConstGauge::new(i64::try_from(value(stats)).unwrap_or(i64::MAX)).encode(encoded)?
            }
        }
    }
    Ok(())
}

/// The `kind`s of a counter family by kind: which apply to frontends and which to backends.
type Kinds = &'static [(&'static str, ProxySide, fn(&ProxyStats) -> u64)];

const ERRORS: Kinds = &[
    ("request", ProxySide::Frontend, |s| s.request_errors),
    ("connection", ProxySide::Backend, |s| s.connection_errors),
    ("response", ProxySide::Backend, |s| s.response_errors),
];

const DENIED: Kinds = &[
    ("connection", ProxySide::Frontend, |s| s.denied_connections),
    ("session", ProxySide::Frontend, |s| s.denied_sessions),
    ("request", ProxySide::Frontend, |s| s.denied_requests),
    ("response", ProxySide::Frontend, |s| s.denied_responses),
    ("request", ProxySide::Backend, |s| s.denied_requests),
    ("response", ProxySide::Backend, |s| s.denied_responses),
];

fn kind_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[Row<'_>],
    kinds: Kinds,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, stats) in rows {
        for (kind, side, value) in kinds {
            if side.as_str() != labels.proxy {
                continue;
            }
            let set = KindLabels {
                node: labels.node.clone(),
                proxy: labels.proxy.clone(),
                service: labels.service.clone(),
                port: labels.port.clone(),
                kind,
            };
            ConstCounter::new(value(stats)).encode(family.encode_family(&set)?)?;
        }
    }
    Ok(())
}

fn node_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    nodes: &BTreeMap<String, EdgeTraffic>,
    value: fn(&EdgeTraffic) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (node, traffic) in nodes {
        let Some(v) = value(traffic) else { continue };
        let labels = NodeLabel { node: node.clone() };
        let encoded = family.encode_family(&labels)?;
        match metric_type {
            MetricType::Counter => ConstCounter::new(v).encode(encoded)?,
            _ => ConstGauge::new(v).encode(encoded)?,
        }
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn info(traffic: &EdgeTraffic, field: fn(&EdgeStats) -> Option<u64>) -> Option<f64> {
    traffic.stats.as_ref().and_then(field).map(|v| v as f64)
}

impl Collector for TrafficCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Ok(nodes) = self.store.lock() else {
            return Ok(());
        };
        let nodes = &*nodes;
        node_family(
            &mut encoder,
            "edge_stats_up",
            "1 when the last poll of the edge's HAProxy stats (show stat, show info) answered, 0 when it failed",
            MetricType::Gauge,
            nodes,
            |t| Some(f64::from(u8::from(t.up))),
        )?;
        #[allow(clippy::cast_precision_loss)]
        node_family(
            &mut encoder,
            "edge_stats_poll_bytes",
            "Bytes the edge's last stats answers took (show stat and show info, before SSH framing)",
            MetricType::Gauge,
            nodes,
            |t| t.stats.as_ref().map(|s| s.answer_bytes as f64),
        )?;
        node_family(
            &mut encoder,
            "edge_stats_poll_duration_seconds",
            "How long the edge's last stats poll took",
            MetricType::Gauge,
            nodes,
            |t| Some(t.poll_seconds),
        )?;
        node_family(
            &mut encoder,
            "edge_haproxy_uptime_seconds",
            "Seconds since the edge's HAProxy worker started (a reload starts a new one)",
            MetricType::Gauge,
            nodes,
            |t| info(t, |s| s.info.uptime_seconds),
        )?;
        node_family(
            &mut encoder,
            "edge_haproxy_current_connections",
            "Connections the edge's HAProxy holds now",
            MetricType::Gauge,
            nodes,
            |t| info(t, |s| s.info.current_connections),
        )?;
        node_family(
            &mut encoder,
            "edge_haproxy_connections",
            "Connections the edge's HAProxy worker accepted since it started",
            MetricType::Counter,
            nodes,
            |t| info(t, |s| s.info.total_connections),
        )?;
        let rows: Vec<Row<'_>> = nodes
            .values()
            .flat_map(|t| t.proxies.iter().map(|(l, s)| (l, s)))
            .collect();
        proxy_family(
            &mut encoder,
            (
                "edge_current_sessions",
                "Sessions open now, per edge and Service port, on its frontend and backend",
                MetricType::Gauge,
            ),
            &rows,
            |s| s.sessions_current,
        )?;
        proxy_family(
            &mut encoder,
            (
                "edge_sessions",
                "Sessions since the edge's HAProxy worker started, per Service port",
                MetricType::Counter,
            ),
            &rows,
            |s| s.sessions_total,
        )?;
        proxy_family(
            &mut encoder,
            (
                "edge_bytes_in",
                "Bytes received from clients, per edge and Service port",
                MetricType::Counter,
            ),
            &rows,
            |s| s.bytes_in,
        )?;
        proxy_family(
            &mut encoder,
            (
                "edge_bytes_out",
                "Bytes sent to clients, per edge and Service port",
                MetricType::Counter,
            ),
            &rows,
            |s| s.bytes_out,
        )?;
        let backends: Vec<Row<'_>> = rows
            .iter()
            .copied()
            .filter(|(l, _)| l.proxy == "backend")
            .collect();
        proxy_family(
            &mut encoder,
            (
                "edge_current_queue",
                "Connections queued for a server, per edge and Service port (backend)",
                MetricType::Gauge,
            ),
            &backends,
            |s| s.queue_current,
        )?;
        kind_family(
            &mut encoder,
            "edge_errors",
            "Errors by kind: request (frontend: a client closed early or sent garbage), connection (backend: a server refused or timed out), response (backend: a server aborted)",
            &rows,
            ERRORS,
        )?;
        kind_family(
            &mut encoder,
            "edge_denied",
            "Connections, sessions, requests and responses denied or rejected by rules, per edge and Service port",
            &rows,
            DENIED,
        )?;
        let mut servers = encoder.encode_descriptor(
            "edge_servers",
            "Servers of each edge's backend of a Service port, by state (UP, DOWN, MAINT, DRAIN, NOLB, NOCHECK, OTHER) and check status (L4OK, L4CON, …; empty when unchecked). edgelb's spare slots are MAINT.",
            None,
            MetricType::Gauge,
        )?;
        for (labels, stats) in &backends {
            for ((state, check), count) in &stats.servers {
                let set = ServerLabels {
                    node: labels.node.clone(),
                    service: labels.service.clone(),
                    port: labels.port.clone(),
                    state: state.as_str(),
                    check: check.clone(),
                };
                let v = i64::try_from(*count).unwrap_or(i64::MAX);
                ConstGauge::new(v).encode(servers.encode_family(&set)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "edge_traffic_tests.rs"]
pub(crate) mod tests;

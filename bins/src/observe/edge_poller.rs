//! One task per edge that reads its HAProxy's stats (`show stat`, `show info`) over the
//! deployer's session every `edge_stats.interval`, names each frontend and backend by the
//! Service port it serves, and leaves the result in the [`TrafficStore`] the scrape encodes.
//! Only the leading replica polls: a standby opens no session to the edges.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgelb_core::{CancellationToken, EdgeNode, PipelineStatus, Snapshot};
use edgelb_haproxy::edge_stats::{EdgeStats, ProxySide, StatsSource};
use edgelb_haproxy::{backend_name, frontend_name_at};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::edge_traffic::{EdgeTraffic, ProxyLabels, TrafficStore};

/// How the pollers run.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Time between two polls of an edge.
    pub interval: Duration,
    /// A poll that takes longer fails.
    pub timeout: Duration,
    /// The stats socket on the edges (`haproxy.stats_socket`).
    pub stats_socket: String,
}

/// What the pollers read and where they write.
#[derive(Clone)]
pub struct PollContext {
    /// The deployer, as a stats source.
    pub source: Arc<dyn StatsSource>,
    /// The pipeline's status: its snapshot names the proxies.
    pub status: watch::Receiver<PipelineStatus>,
    /// Whether this replica leads.
    pub leader: watch::Receiver<bool>,
    /// Where the results go.
    pub store: TrafficStore,
}

/// Starts one poller per edge; each stops when `stop` is cancelled and removes its edge's
/// series.
pub fn spawn(
    context: &PollContext,
    edges: &[EdgeNode],
    settings: &PollSettings,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    edges
        .iter()
        .map(|edge| {
            tokio::spawn(poll_edge(
                context.clone(),
                edge.clone(),
                settings.clone(),
                stop.clone(),
            ))
        })
        .collect()
}

async fn poll_edge(
    context: PollContext,
    edge: EdgeNode,
    settings: PollSettings,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        if !*context.leader.borrow() {
            forget(&context.store, &edge.name);
            continue;
        }
        let started = Instant::now();
        let read = tokio::time::timeout(
            settings.timeout,
            context.source.edge_stats(&edge, &settings.stats_socket),
        )
        .await;
        let poll_seconds = started.elapsed().as_secs_f64();
        let traffic = match read {
            Ok(Ok(stats)) => {
                if !was_up {
                    tracing::info!(node = %edge.name, "the edge's HAProxy stats answer again");
                }
                was_up = true;
                let names = proxy_names(context.status.borrow().snapshot.as_deref());
                named(&edge.name, stats, &names, poll_seconds)
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!(
                        "reading the stats of {} took longer than {:?} (edge_stats.timeout)",
                        edge.name, settings.timeout
                    ),
                };
                if was_up {
                    tracing::warn!(node = %edge.name, %error, "cannot read the edge's HAProxy stats; its edgelb_edge_* traffic series are gone until it answers");
                }
                was_up = false;
                EdgeTraffic {
                    up: false,
                    poll_seconds,
                    ..EdgeTraffic::default()
                }
            }
        };
        if let Ok(mut store) = context.store.lock() {
            store.insert(edge.name.clone(), traffic);
        }
    }
    forget(&context.store, &edge.name);
}

fn forget(store: &TrafficStore, node: &str) {
    if let Ok(mut store) = store.lock() {
        store.remove(node);
    }
}

/// The Service port (`<namespace>/<name>`, port name) of each frontend and backend edgelb
/// renders for `snapshot`.
pub fn proxy_names(snapshot: Option<&Snapshot>) -> BTreeMap<(ProxySide, String), (String, String)> {
    let mut names = BTreeMap::new();
    for (key, spec) in snapshot.into_iter().flat_map(|s| &s.services) {
        for (port_name, port) in &spec.ports {
            let service = (key.to_string(), port_name.to_owned());
            names.insert(
                (
                    ProxySide::Frontend,
                    frontend_name_at(port.listen_port, spec.address),
                ),
                service.clone(),
            );
            if let Ok(backend) = backend_name(key, port_name) {
                names.insert((ProxySide::Backend, backend), service);
            }
        }
    }
    names
}

/// `stats` with its proxies labelled by Service port; proxies of no Service port (a stats
/// listener, a Service removed since) are left out.
pub fn named(
    node: &str,
    mut stats: EdgeStats,
    names: &BTreeMap<(ProxySide, String), (String, String)>,
    poll_seconds: f64,
) -> EdgeTraffic {
    let proxies = std::mem::take(&mut stats.proxies)
        .into_iter()
        .filter_map(|(key, proxy)| {
            let (service, port) = names.get(&key)?;
            let labels = ProxyLabels {
                node: node.to_owned(),
                proxy: key.0.as_str().to_owned(),
                service: service.clone(),
                port: port.clone(),
            };
            Some((labels, proxy))
        })
        .collect();
    EdgeTraffic {
        up: true,
        poll_seconds,
        stats: Some(stats),
        proxies,
    }
}

#[cfg(test)]
#[path = "edge_poller_tests.rs"]
mod tests;

use std::sync::Arc;

use edgelb_core::{PortSpec, ProxyProtocol, ServiceKey, Snapshot};
use edgelb_haproxy::edge_stats::{parse_show_info, parse_show_stat};

use super::*;
use crate::observe::edge_poller::{named, proxy_names};
use crate::observe::metrics::Metrics;

/// A real `show stat` of HAProxy 2.6: `fe_18080` and `be_default_web_http` with a DOWN, a
/// MAINT and an unchecked server.
pub(crate) const STAT: &str = include_str!("../../../edgelb-haproxy/testdata/show_stat_2.6.csv");
const INFO: &str = include_str!("../../../edgelb-haproxy/testdata/show_info_2.6.txt");

/// The snapshot that fixture renders from: `default/web` port `http` on 18080.
pub(crate) fn snapshot() -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot
        .insert_port(
            ServiceKey::new("default", "web").unwrap(),
            "http",
            PortSpec::new(18080, ProxyProtocol::default()),
        )
        .unwrap();
    snapshot
}

/// Metrics holding the fixture's traffic for `edge-1` and a failed poll of `edge-2`.
pub(crate) fn metrics_with_traffic() -> Metrics {
    let metrics = Metrics::new();
    let stats = EdgeStats {
        info: parse_show_info(INFO).unwrap(),
        proxies: parse_show_stat(STAT).unwrap(),
        answer_bytes: STAT.len() + INFO.len(),
    };
    let names = proxy_names(Some(&snapshot()));
    let store = metrics.traffic_store();
    let mut store = store.lock().unwrap();
    store.insert("edge-1".into(), named("edge-1", stats, &names, 0.004));
    store.insert(
        "edge-2".into(),
        EdgeTraffic {
            up: false,
            ..EdgeTraffic::default()
        },
    );
    drop(store);
    metrics
}

#[test]
fn proxies_are_named_by_service_port_and_servers_counted_by_state() {
    let text = metrics_with_traffic().encode();
    for line in [
        "edgelb_edge_stats_up{node=\"edge-1\"} 1",
        "edgelb_edge_stats_up{node=\"edge-2\"} 0",
        "edgelb_edge_haproxy_connections_total{node=\"edge-1\"} 4",
        "edgelb_edge_current_sessions{node=\"edge-1\",proxy=\"frontend\",service=\"default/web\",port=\"http\"} 0",
        "edgelb_edge_sessions_total{node=\"edge-1\",proxy=\"backend\",service=\"default/web\",port=\"http\"} 0",
        "edgelb_edge_bytes_in_total{node=\"edge-1\",proxy=\"frontend\",service=\"default/web\",port=\"http\"} 0",
        "edgelb_edge_errors_total{node=\"edge-1\",proxy=\"backend\",service=\"default/web\",port=\"http\",kind=\"connection\"} 0",
        "edgelb_edge_denied_total{node=\"edge-1\",proxy=\"frontend\",service=\"default/web\",port=\"http\",kind=\"connection\"} 0",
        "edgelb_edge_servers{node=\"edge-1\",service=\"default/web\",port=\"http\",state=\"DOWN\",check=\"L4CON\"} 1",
        "edgelb_edge_servers{node=\"edge-1\",service=\"default/web\",port=\"http\",state=\"MAINT\",check=\"\"} 1",
        "edgelb_edge_servers{node=\"edge-1\",service=\"default/web\",port=\"http\",state=\"NOCHECK\",check=\"\"} 1",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    // A failed poll leaves no traffic series for the edge.
    assert!(
        !text.contains("edgelb_edge_sessions_total{node=\"edge-2\""),
        "{text}"
    );
}

#[test]
fn proxies_of_no_service_port_are_left_out() {
    let stats = EdgeStats {
        proxies: parse_show_stat(STAT).unwrap(),
        ..EdgeStats::default()
    };
    let traffic = named("edge-1", stats, &proxy_names(None), 0.0);
    assert!(traffic.up);
    assert!(traffic.proxies.is_empty());
    let arc = Arc::new(snapshot());
    let names = proxy_names(Some(&arc));
    assert_eq!(names.len(), 2, "{names:?}");
}

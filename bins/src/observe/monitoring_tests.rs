//! deploy/monitoring/ against what `/metrics` exports: every `edgelb_…` series a dashboard
//! panel or an alert rule queries exists, so a renamed metric cannot leave a blank panel or
//! an alert that never fires.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use edgelb_core::{Digest, NodeStatus, PipelineStatus};

use super::edge_traffic::tests::{metrics_with_traffic, snapshot};

const DASHBOARD: &str = include_str!("../../../deploy/monitoring/dashboard.json");
const RULES: &str = include_str!("../../../deploy/monitoring/prometheusrule.yaml");

/// Every series name `/metrics` gives once every kind of value is there: deploys, a
/// convergence, health, endpoints, and an edge's traffic.
fn exported() -> BTreeSet<String> {
    let mut metrics = metrics_with_traffic();
    let digest = Digest::of(b"x");
    let mut node = NodeStatus {
        desired_digest: Some(digest),
        live_digest: Some(digest),
        live_generation: Some(1),
        last_success: Some(SystemTime::now()),
        last_convergence: Some(Duration::from_millis(150)),
        ..NodeStatus::default()
    };
    node.results.insert("reloaded".into(), 1);
    let mut status = PipelineStatus {
        generation: 1,
        snapshot: Some(std::sync::Arc::new(snapshot())),
        ..PipelineStatus::default()
    };
    status.nodes.insert("edge-1".into(), node);
    metrics.update(&status);
    metrics
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The `edgelb_…` names in a PromQL expression.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("edgelb_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    names
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            exprs.push((title, target["expr"].as_str().unwrap().to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            exprs.push((format!("${}", variable["name"]), query.to_owned()));
        }
    }
    exprs
}

fn rule_exprs() -> Vec<(String, String)> {
    let rule: serde_yaml_ng::Value = serde_yaml_ng::from_str(RULES).unwrap();
    let mut exprs = Vec::new();
    for group in rule["spec"]["groups"].as_sequence().unwrap() {
        for r in group["rules"].as_sequence().unwrap() {
            exprs.push((
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    exprs
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_query_is_exported() {
    let exported = exported();
    let dashboard = dashboard_exprs();
    let rules = rule_exprs();
    assert!(
        dashboard.len() > 30,
        "{} dashboard queries",
        dashboard.len()
    );
    assert_eq!(rules.len(), 7);
    let mut used = BTreeSet::new();
    for (what, expr) in dashboard.iter().chain(&rules) {
        let names = names_in(expr);
        assert!(!names.is_empty(), "{what}: {expr} queries no edgelb metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "{what}: {name} (in {expr}) is not exported; /metrics has {exported:?}"
            );
            used.insert(name);
        }
    }
    // The dashboard shows the traffic series the issue asks for.
    for name in [
        "edgelb_edge_sessions_total",
        "edgelb_edge_current_sessions",
        "edgelb_edge_bytes_in_total",
        "edgelb_edge_bytes_out_total",
        "edgelb_edge_errors_total",
        "edgelb_edge_denied_total",
        "edgelb_edge_current_queue",
        "edgelb_edge_servers",
    ] {
        assert!(used.contains(name), "nothing shows {name}");
    }
}

#[test]
fn names_are_found_whole() {
    assert_eq!(
        names_in("sum(rate(edgelb_a_total{x=\"edgelb_no\"}[5m])) / xedgelb_b"),
        ["edgelb_a_total", "edgelb_no"]
    );
}

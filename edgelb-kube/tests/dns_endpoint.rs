//! The DNSEndpoint writer against a scripted API server: created when missing, then patched
//! as edges become unhealthy and healthy again; all addresses kept when none is healthy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use edgelb_core::{CancellationToken, EdgeHealth, EdgeNode, NodeStatus, PipelineStatus};
use edgelb_kube::{DnsEndpointConfig, DnsEndpointWriter};
use serde_json::{Value, json};
use support::{FakeApi, Reply};
use tokio::sync::watch;

const PATH: &str = "/apis/externaldns.k8s.io/v1alpha1/namespaces/edgelb/dnsendpoints";

fn nodes() -> Vec<EdgeNode> {
    vec![
        EdgeNode::new("edge-1")
            .with_public_address("203.0.113.10")
            .with_public_address("2001:db8::10")
            .with_public_address("edge-1.example.net"),
        EdgeNode::new("edge-2").with_public_address("198.51.100.20"),
    ]
}

fn node(health: EdgeHealth) -> NodeStatus {
    NodeStatus {
        live_generation: Some(1),
        health,
        ..NodeStatus::default()
    }
}

fn healthy() -> EdgeHealth {
    EdgeHealth::Healthy {
        since: SystemTime::now(),
    }
}

fn unhealthy() -> EdgeHealth {
    EdgeHealth::Unhealthy {
        since: SystemTime::now(),
        reason: "no answer".into(),
    }
}

fn status(n1: EdgeHealth, n2: EdgeHealth) -> PipelineStatus {
    PipelineStatus {
        generation: 1,
        nodes: [
            ("edge-1".to_owned(), node(n1)),
            ("edge-2".to_owned(), node(n2)),
        ]
        .into_iter()
        .collect(),
        ..PipelineStatus::default()
    }
}

/// The records the last write sent (a create's or a patch's).
fn last_records(api: &FakeApi) -> Value {
    let last = api
        .requests()
        .into_iter()
        .rfind(|r| r.method == "POST" || r.method == "PATCH")
        .unwrap();
    last.body.unwrap()["spec"]["endpoints"].clone()
}

fn a(targets: &[&str]) -> Value {
    json!({"dnsName": "example.com", "recordType": "A", "targets": targets, "recordTTL": 30})
}

#[tokio::test(start_paused = true)]
async fn the_dns_endpoint_follows_health_and_is_created_when_missing() {
    let exists = Arc::new(AtomicBool::new(false));
    let api = FakeApi::start({
        let exists = exists.clone();
        move |r| match r.method.as_str() {
            "PATCH" if r.path == format!("{PATH}/edgelb") => {
                if exists.load(Ordering::SeqCst) {
                    let mut body = r.body.clone().unwrap();
                    body["apiVersion"] = json!("externaldns.k8s.io/v1alpha1");
                    body["kind"] = json!("DNSEndpoint");
                    body["metadata"] = json!({"name": "edgelb", "namespace": "edgelb"});
                    Reply::ok(body)
                } else {
                    Reply::not_found("dnsendpoints.externaldns.k8s.io \"edgelb\"")
                }
            }
            "POST" if r.path == PATH => {
                exists.store(true, Ordering::SeqCst);
                Reply::Json(201, r.body.clone().unwrap())
            }
            _ => Reply::not_found(&r.path),
        }
    });
    let config = DnsEndpointConfig {
        ttl: Duration::from_secs(30),
        ..DnsEndpointConfig::new("edgelb", vec!["example.com".into()])
    };
    let writer = DnsEndpointWriter::new(api.client.clone(), nodes(), config).unwrap();
    let (tx, rx) = watch::channel(PipelineStatus::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(writer.run(rx, stop.clone()));

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        api.requests().is_empty(),
        "no edge runs a config yet: nothing to publish"
    );

    tx.send_replace(status(healthy(), healthy()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let created = api
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    let body = created.body.unwrap();
    assert_eq!(body["kind"], "DNSEndpoint");
    assert_eq!(body["metadata"]["name"], "edgelb");
    assert_eq!(
        last_records(&api),
        json!([
            a(&["198.51.100.20", "203.0.113.10"]),
            {"dnsName": "example.com", "recordType": "AAAA", "targets": ["2001:db8::10"], "recordTTL": 30}
        ])
    );

    // edge-1 fails: only edge-2's address is left (and no AAAA record).
    tx.send_replace(status(unhealthy(), healthy()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(last_records(&api), json!([a(&["198.51.100.20"])]));

    // Both fail: all addresses again, rather than none.
    tx.send_replace(status(unhealthy(), unhealthy()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(last_records(&api)[0], a(&["198.51.100.20", "203.0.113.10"]));

    let writes = api.requests().len();
    tx.send_replace(status(unhealthy(), unhealthy()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        api.requests().len(),
        writes,
        "nothing changed: nothing written"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn bad_names_are_refused() {
    for (config, what) in [
        (DnsEndpointConfig::new("edgelb", vec![]), "hostnames"),
        (
            DnsEndpointConfig::new("edgelb", vec!["bad host".into()]),
            "hostname",
        ),
        (
            DnsEndpointConfig::new("Edge LB", vec!["example.com".into()]),
            "namespace",
        ),
    ] {
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(what), "{err}");
    }
    assert!(
        DnsEndpointConfig::new("edgelb", vec!["*.example.com".into()])
            .validate()
            .is_ok()
    );
}

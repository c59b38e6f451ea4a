//! The status writer against a scripted API server: `status.loadBalancer.ingress` patches and
//! deploy Events.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edgelb_core::{
    Applied, CancellationToken, DeployError, Digest, EdgeHealth, EdgeNode, Endpoint, NodeStatus,
    PipelineStatus, PortSpec, ProxyProtocol, Snapshot,
};
use edgelb_kube::{EventConfig, EventPublisher, StatusWriter};
use serde_json::{Value, json};
use support::{FakeApi, Recorded, Reply};
use tokio::sync::watch;

fn nodes() -> Vec<EdgeNode> {
    vec![
        EdgeNode::new("edge-1")
            .with_public_address("203.0.113.10")
            .with_public_address("edge-1.example.net"),
        EdgeNode::new("edge-2").with_public_address("2001:db8::10"),
    ]
}

/// `shop/web` sends PROXY v2, `shop/plain` no PROXY; `extra` endpoints make versions differ.
fn snapshot(with_plain: bool, extra: u8) -> Arc<Snapshot> {
    let mut s = Snapshot::default();
    s.insert_port(
        "shop/web".parse().unwrap(),
        "https",
        PortSpec::new(443, ProxyProtocol::V2)
            .with_endpoint(Endpoint::ready("10.42.0.20".parse().unwrap(), 8443))
            .with_endpoint(Endpoint::ready(
                format!("10.42.1.{extra}").parse().unwrap(),
                8443,
            )),
    )
    .unwrap();
    if with_plain {
        s.insert_port(
            "shop/plain".parse().unwrap(),
            "http",
            PortSpec::new(8080, ProxyProtocol::None)
                .with_endpoint(Endpoint::ready("10.42.0.30".parse().unwrap(), 8080)),
        )
        .unwrap();
    }
    Arc::new(s)
}

fn digest(generation: u64) -> Digest {
    Digest::of(format!("config {generation}").as_bytes())
}

fn synced(generation: u64, outcome: Applied) -> NodeStatus {
    NodeStatus {
        desired_digest: Some(digest(generation)),
        live_digest: Some(digest(generation)),
        live_generation: Some(generation),
        last_outcome: Some(outcome),
        consecutive_failures: 0,
        ..NodeStatus::default()
    }
}

/// Wants `generation`, still runs `live` (or nothing), and failed `failures` times.
fn failing(generation: u64, live: Option<u64>, failures: u32) -> NodeStatus {
    NodeStatus {
        desired_digest: Some(digest(generation)),
        live_digest: live.map(digest),
        live_generation: live,
        last_outcome: live.map(|_| Applied::Reloaded),
        last_error: Some(DeployError::Connect {
            node: "edge-1".into(),
            message: "connection refused".into(),
        }),
        consecutive_failures: failures,
        ..NodeStatus::default()
    }
}

fn status(generation: u64, snap: Arc<Snapshot>, n1: NodeStatus, n2: NodeStatus) -> PipelineStatus {
    PipelineStatus {
        generation,
        snapshot: Some(snap),
        nodes: [("edge-1".to_owned(), n1), ("edge-2".to_owned(), n2)]
            .into_iter()
            .collect(),
        ..PipelineStatus::default()
    }
}

fn service_json(name: &str, status: Value) -> Value {
    json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": format!("uid-{name}"),
            "resourceVersion": "61000",
            "creationTimestamp": "2026-10-01T10:00:00Z"
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "edgelb.io/haproxy",
            "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 8443}]
        },
        "status": status
    })
}

/// The Service list the writer's watch starts from: `web` and `plain`, no status yet.
fn service_list() -> Value {
    json!({
        "kind": "ServiceList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "61000"},
        "items": [service_json("plain", json!({"loadBalancer": {}})), service_json("web", json!({"loadBalancer": {}}))]
    })
}

/// Answers the Service list and watch, status patches with the patched Service, Service
/// reads, and event creation.
fn server(fail_first_patches: usize) -> FakeApi {
    server_with_uids(fail_first_patches, Arc::default())
}

/// As [`server`]; a patched Service's uid is the one in `uids` (by name), if any: the
/// API server answers with the object as it now is.
fn server_with_uids(
    fail_first_patches: usize,
    uids: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
) -> FakeApi {
    let failures = Arc::new(AtomicUsize::new(fail_first_patches));
    FakeApi::start(move |r| {
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), parts.as_slice()) {
            (_, ["api", "v1", "services"]) if r.is_watch() => Reply::Watch,
            ("GET", ["api", "v1", "services"]) => Reply::ok(service_list()),
            (
                "PATCH",
                [
                    "api",
                    "v1",
                    "namespaces",
                    "shop",
                    "services",
                    "gone",
                    "status",
                ],
            ) => Reply::not_found("services \"gone\""),
            (
                "PATCH",
                [
                    "api",
                    "v1",
                    "namespaces",
                    "shop",
                    "services",
                    name,
                    "status",
                ],
            ) => {
                if failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Reply::Status(
                        500,
                        "InternalError",
                        "Internal error occurred: etcdserver: request timed out".into(),
                    );
                }
                let body = r.body.clone().unwrap();
                let mut svc = service_json(name, body["status"].clone());
                if let Some(uid) = uids.lock().unwrap().get(*name) {
                    svc["metadata"]["uid"] = json!(uid);
                }
                Reply::ok(svc)
            }
            ("GET", ["api", "v1", "namespaces", "shop", "services", name]) => {
                Reply::ok(service_json(name, json!({"loadBalancer": {}})))
            }
            (
                "POST",
                [
                    "apis",
                    "events.k8s.io",
                    "v1",
                    "namespaces",
                    "shop",
                    "events",
                ],
            ) => {
                let mut created = r.body.clone().unwrap();
                created["metadata"]["name"] = json!("web.18a0c0ffee");
                Reply::Json(201, created)
            }
            _ => Reply::not_found(&r.path),
        }
    })
}

fn patches(api: &FakeApi) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect()
}

fn events(api: &FakeApi) -> Vec<Value> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/events"))
        .map(|r| r.body.unwrap())
        .collect()
}

/// Lets the writer work for a (virtual) second.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn ingress_body(list: Value) -> Value {
    json!({"status": {"loadBalancer": {"ingress": list}}})
}

#[tokio::test(start_paused = true)]
async fn ingress_follows_the_edges_and_is_cleared_when_the_service_leaves() {
    let api = server(0);
    let (tx, rx) = watch::channel(PipelineStatus::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(StatusWriter::new(api.client.clone(), nodes()).run(rx, stop.clone()));

    // Desired state known, but no edge runs it yet: nothing is written.
    tx.send_replace(status(
        1,
        snapshot(true, 1),
        NodeStatus::default(),
        NodeStatus::default(),
    ));
    settle().await;
    assert!(patches(&api).is_empty(), "{:?}", patches(&api));

    // edge-1 runs generation 1: both Services get its addresses.
    tx.send_replace(status(
        1,
        snapshot(true, 1),
        synced(1, Applied::Reloaded),
        NodeStatus::default(),
    ));
    settle().await;
    let p = patches(&api);
    assert_eq!(p.len(), 2, "{p:?}");
    // Sorted by Service key: plain, then web.
    assert_eq!(p[0].path, "/api/v1/namespaces/shop/services/plain/status");
    assert_eq!(
        p[0].body,
        Some(ingress_body(json!([
            {"ip": "203.0.113.10", "ipMode": "VIP"},
            {"hostname": "edge-1.example.net"}
        ])))
    );
    assert_eq!(p[1].path, "/api/v1/namespaces/shop/services/web/status");
    assert_eq!(
        p[1].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(p[1].q("fieldManager"), Some("edgelb"));
    assert_eq!(
        p[1].body,
        Some(ingress_body(json!([
            {"ip": "203.0.113.10", "ipMode": "Proxy"},
            {"hostname": "edge-1.example.net"}
        ])))
    );

    // edge-2 catches up: both edges listed.
    tx.send_replace(status(
        1,
        snapshot(true, 1),
        synced(1, Applied::Reloaded),
        synced(1, Applied::Reloaded),
    ));
    settle().await;
    let p = patches(&api);
    assert_eq!(p.len(), 4, "{p:?}");
    assert_eq!(
        p[3].body,
        Some(ingress_body(json!([
            {"ip": "203.0.113.10", "ipMode": "Proxy"},
            {"hostname": "edge-1.example.net"},
            {"ip": "2001:db8::10", "ipMode": "Proxy"}
        ])))
    );

    // Generation 2 drops `plain`: its ingress is cleared at once; `web` stays as it is while
    // the edges deploy (they still serve generation 1), so no patch for it.
    tx.send_replace(status(
        2,
        snapshot(false, 2),
        failing(2, Some(1), 1),
        synced(1, Applied::Reloaded),
    ));
    settle().await;
    let p = patches(&api);
    assert_eq!(p.len(), 5, "{p:?}");
    assert_eq!(p[4].path, "/api/v1/namespaces/shop/services/plain/status");
    assert_eq!(p[4].body, Some(ingress_body(Value::Null)));

    // A resync finds edge-1 with no edgelb config at all: it leaves the ingress.
    let mut lost = failing(2, None, 2);
    lost.last_outcome = None;
    tx.send_replace(status(
        2,
        snapshot(false, 2),
        lost,
        synced(2, Applied::Reloaded),
    ));
    settle().await;
    let p = patches(&api);
    assert_eq!(p.len(), 6, "{p:?}");
    assert_eq!(
        p[5].body,
        Some(ingress_body(
            json!([{"ip": "2001:db8::10", "ipMode": "Proxy"}])
        ))
    );

    stop.cancel();
    task.await.unwrap().unwrap();
    assert!(events(&api).is_empty(), "no Events without a publisher");
}

#[tokio::test(start_paused = true)]
async fn failed_patches_are_retried_and_services_that_do_not_exist_are_not_patched() {
    let api = server(2);
    let (tx, rx) = watch::channel(PipelineStatus::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(StatusWriter::new(api.client.clone(), nodes()).run(rx, stop.clone()));
    let mut snap = Snapshot::default();
    snap.insert_port(
        "shop/web".parse().unwrap(),
        "https",
        PortSpec::new(443, ProxyProtocol::V2),
    )
    .unwrap();
    snap.insert_port(
        "shop/gone".parse().unwrap(),
        "https",
        PortSpec::new(444, ProxyProtocol::V2),
    )
    .unwrap();
    tx.send_replace(status(
        1,
        Arc::new(snap),
        synced(1, Applied::Reloaded),
        NodeStatus::default(),
    ));
    // gone is not in the Service list: never patched. 500 twice for web, then success after
    // the backoff (1 s, then 2 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let lines: Vec<String> = patches(&api).iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        lines,
        [
            "/api/v1/namespaces/shop/services/web/status",
            "/api/v1/namespaces/shop/services/web/status",
            "/api/v1/namespaces/shop/services/web/status",
        ]
    );
    // Written: nothing more is sent, however long we wait.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(patches(&api).len(), 3);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn deploy_events_are_rate_limited_on_a_flapping_edge() {
    let api = server(0);
    let publisher = EventPublisher::new(
        api.client.clone(),
        EventConfig {
            instance: "edgelb-0".into(),
            ..EventConfig::default()
        },
    );
    let (tx, rx) = watch::channel(PipelineStatus::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        StatusWriter::new(api.client.clone(), nodes())
            .with_events(publisher)
            .run(rx, stop.clone()),
    );

    // edge-1 flaps: every generation fails once, then applies. 20 rounds in 40 seconds.
    let mut failures = 0;
    for generation in 1..=20u64 {
        let snap = snapshot(true, generation as u8);
        failures += 1;
        let live = (generation > 1).then(|| generation - 1);
        tx.send_replace(status(
            generation,
            snap.clone(),
            failing(generation, live, failures),
            NodeStatus::default(),
        ));
        settle().await;
        tx.send_replace(status(
            generation,
            snap,
            synced(generation, Applied::RuntimeUpdated),
            NodeStatus::default(),
        ));
        settle().await;
    }
    let ev = events(&api);
    let mut summary: Vec<(String, String, String)> = ev
        .iter()
        .map(|e| {
            (
                e["regarding"]["name"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    summary.sort();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        summary,
        vec![
            // plain never changes after generation 1: one failure (edge-1 did not have it
            // yet), one Deployed, then nothing.
            s("plain", "DeployFailed", "Warning"),
            s("plain", "Deployed", "Normal"),
            s("web", "DeployFailed", "Warning"),
            s("web", "Deployed", "Normal"),
        ],
        "{ev:#?}"
    );
    let failed = ev
        .iter()
        .find(|e| e["reason"] == "DeployFailed" && e["regarding"]["name"] == "web")
        .unwrap();
    assert_eq!(failed["regarding"]["uid"], "uid-web");
    assert_eq!(failed["regarding"]["namespace"], "shop");
    assert_eq!(failed["action"], "Deploy");
    assert_eq!(failed["reportingInstance"], "edgelb-0");
    assert!(
        failed["note"]
            .as_str()
            .unwrap()
            .contains("edge edge-1 could not apply"),
        "{failed}"
    );

    // Five minutes later the next failure is recorded again, saying how many were held back.
    tokio::time::sleep(Duration::from_secs(300)).await;
    tx.send_replace(status(
        21,
        snapshot(true, 21),
        failing(21, Some(20), failures + 1),
        NodeStatus::default(),
    ));
    settle().await;
    let ev = events(&api);
    let last = ev.last().unwrap();
    assert_eq!(last["reason"], "DeployFailed");
    assert!(
        last["note"]
            .as_str()
            .unwrap()
            .contains("(19 similar event(s) held back since the last one)"),
        "{last}"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_service_an_edge_quarantined_leaves_that_edge_out_and_only_it_gets_a_warning() {
    let api = server(0);
    let publisher = EventPublisher::new(api.client.clone(), EventConfig::default());
    let (tx, rx) = watch::channel(PipelineStatus::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        StatusWriter::new(api.client.clone(), nodes())
            .with_events(publisher)
            .run(rx, stop.clone()),
    );

    // edge-2 refused `plain` (its port is taken there) and runs `web` alone; edge-1 runs both.
    let desired = snapshot(true, 1);
    let mut without_plain = (*desired).clone();
    without_plain
        .services
        .remove(&"shop/plain".parse().unwrap());
    let mut edge2 = synced(1, Applied::Reloaded);
    edge2.live_snapshot = Some(Arc::new(without_plain));
    edge2.quarantined.insert(
        "shop/plain".parse().unwrap(),
        "node edge-2: listen port(s) 8080 already taken on the node by another process".into(),
    );
    tx.send_replace(status(1, desired, synced(1, Applied::Reloaded), edge2));
    settle().await;

    let p = patches(&api);
    let body_of = |name: &str| {
        p.iter()
            .rev()
            .find(|r| r.path == format!("/api/v1/namespaces/shop/services/{name}/status"))
            .and_then(|r| r.body.clone())
    };
    assert_eq!(
        body_of("plain"),
        Some(ingress_body(json!([
            {"ip": "203.0.113.10", "ipMode": "VIP"},
            {"hostname": "edge-1.example.net"}
        ]))),
        "edge-2 does not serve plain: {p:?}"
    );
    assert_eq!(
        body_of("web"),
        Some(ingress_body(json!([
            {"ip": "203.0.113.10", "ipMode": "Proxy"},
            {"hostname": "edge-1.example.net"},
            {"ip": "2001:db8::10", "ipMode": "Proxy"}
        ])))
    );
    let ev = events(&api);
    let warnings: Vec<(&str, &str)> = ev
        .iter()
        .filter(|e| e["type"] == "Warning")
        .map(|e| {
            (
                e["regarding"]["name"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(warnings, vec![("plain", "Quarantined")], "{ev:#?}");
    let note = ev
        .iter()
        .find(|e| e["reason"] == "Quarantined")
        .and_then(|e| e["note"].as_str())
        .unwrap();
    assert!(
        note.contains("edge edge-2 refused") && note.contains("8080"),
        "{note}"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_edge_leaves_the_status_while_another_serves_and_returns_when_healthy() {
    let api = server(0);
    let publisher = EventPublisher::new(api.client.clone(), EventConfig::default());
    let (tx, rx) = watch::channel(PipelineStatus::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        StatusWriter::new(api.client.clone(), nodes())
            .with_events(publisher)
            .run(rx, stop.clone()),
    );
    let snap = snapshot(false, 1);
    let healthy = |mut n: NodeStatus| {
        n.health = EdgeHealth::Healthy {
            since: std::time::SystemTime::now(),
        };
        n
    };
    let unhealthy = |mut n: NodeStatus, why: &str| {
        n.health = EdgeHealth::Unhealthy {
            since: std::time::SystemTime::now(),
            reason: why.into(),
        };
        n
    };
    let web = |api: &FakeApi| {
        patches(api)
            .iter()
            .rev()
            .find(|r| r.path.ends_with("/services/web/status"))
            .and_then(|r| r.body.clone())
    };
    let both = ingress_body(json!([
        {"ip": "203.0.113.10", "ipMode": "Proxy"},
        {"hostname": "edge-1.example.net"},
        {"ip": "2001:db8::10", "ipMode": "Proxy"}
    ]));
    let up = synced(1, Applied::Reloaded);
    tx.send_replace(status(
        1,
        snap.clone(),
        healthy(up.clone()),
        healthy(up.clone()),
    ));
    settle().await;
    assert_eq!(web(&api), Some(both.clone()));

    // edge-2's HAProxy dies: its address leaves, with a Warning.
    tx.send_replace(status(
        1,
        snap.clone(),
        healthy(up.clone()),
        unhealthy(up.clone(), "the master runs no worker"),
    ));
    settle().await;
    assert_eq!(
        web(&api),
        Some(ingress_body(json!([
            {"ip": "203.0.113.10", "ipMode": "Proxy"},
            {"hostname": "edge-1.example.net"}
        ])))
    );
    // edge-1 fails too: every address stays (publishing none helps no client).
    tx.send_replace(status(
        1,
        snap.clone(),
        unhealthy(up.clone(), "connection refused"),
        unhealthy(up.clone(), "the master runs no worker"),
    ));
    settle().await;
    assert_eq!(web(&api), Some(both.clone()));
    // Both back.
    tx.send_replace(status(1, snap, healthy(up.clone()), healthy(up)));
    settle().await;
    assert_eq!(web(&api), Some(both));

    let reasons: Vec<(String, String)> = events(&api)
        .iter()
        .filter(|e| e["reason"] != "Deployed")
        .map(|e| {
            (
                e["reason"].as_str().unwrap().to_owned(),
                e["note"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert_eq!(reasons[0].0, "EdgeUnhealthy");
    assert!(
        reasons[0]
            .1
            .contains("edge edge-2 is unhealthy (the master runs no worker)")
    );
    assert!(
        reasons[1].1.contains("edge edge-1") && reasons[1].1.contains("all their addresses stay")
    );
    assert_eq!(
        (reasons[2].0.as_str(), reasons[3].0.as_str()),
        ("EdgeHealthy", "EdgeHealthy")
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Issue 19 item 1: the writer compares with the Service as it is. A Service deleted and
/// re-created (new uid, no status) gets its status again, and so does one whose status someone
/// else cleared; Events then refer to the new uid, and no Service is ever read with a GET.
#[tokio::test(start_paused = true)]
async fn a_recreated_or_externally_cleared_service_gets_its_status_again() {
    let uids = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let api = server_with_uids(0, uids.clone());
    let publisher = EventPublisher::new(api.client.clone(), EventConfig::default());
    let (tx, rx) = watch::channel(PipelineStatus::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        StatusWriter::new(api.client.clone(), nodes())
            .with_events(publisher)
            .run(rx, stop.clone()),
    );
    tx.send_replace(status(
        1,
        snapshot(true, 1),
        synced(1, Applied::Reloaded),
        NodeStatus::default(),
    ));
    settle().await;
    let web_patches = |api: &FakeApi| {
        patches(api)
            .into_iter()
            .filter(|r| r.path == "/api/v1/namespaces/shop/services/web/status")
            .count()
    };
    assert_eq!(web_patches(&api), 1);
    let written = ingress_body(json!([
        {"ip": "203.0.113.10", "ipMode": "Proxy"},
        {"hostname": "edge-1.example.net"}
    ]));
    let services = api.next_watch("/api/v1/services").await;
    // The echo of its own write changes nothing.
    services.modified(service_json("web", written["status"].clone()));
    settle().await;
    assert_eq!(web_patches(&api), 1);

    // `kubectl delete svc web && kubectl apply -f web.yaml`: new uid, no status.
    services.deleted(service_json("web", written["status"].clone()));
    uids.lock()
        .unwrap()
        .insert("web".into(), "uid-web-2".into());
    let mut recreated = service_json("web", json!({"loadBalancer": {}}));
    recreated["metadata"]["uid"] = json!("uid-web-2");
    recreated["metadata"]["resourceVersion"] = json!("61100");
    services.added(recreated.clone());
    settle().await;
    let p = patches(&api);
    assert_eq!(web_patches(&api), 2, "{p:?}");
    assert_eq!(p.last().unwrap().body, Some(written.clone()));

    // Someone clears the status: it is written again.
    let mut cleared = recreated.clone();
    cleared["metadata"]["resourceVersion"] = json!("61200");
    services.modified(cleared);
    settle().await;
    assert_eq!(web_patches(&api), 3);

    // The next Event about web refers to the re-created object.
    tx.send_replace(status(
        2,
        snapshot(true, 2),
        failing(2, Some(1), 1),
        NodeStatus::default(),
    ));
    settle().await;
    let ev = events(&api);
    let failed = ev
        .iter()
        .rev()
        .find(|e| e["reason"] == "DeployFailed" && e["regarding"]["name"] == "web")
        .unwrap();
    assert_eq!(failed["regarding"]["uid"], "uid-web-2");
    let reads: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/api/v1/namespaces/"))
        .map(Recorded::line)
        .collect();
    assert!(reads.is_empty(), "no GET per Service: {reads:?}");
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Issue 19: status writes are paced (`StatusConfig::qps` after a `burst`), not sent as fast
/// as the API server answers: 40 Services at 10 a second after a burst of 10 take 3 s.
#[tokio::test(start_paused = true)]
async fn status_writes_are_paced_to_qps_after_a_burst() {
    let names: Vec<String> = (0..40).map(|i| format!("svc-{i}")).collect();
    let items: Vec<Value> = names
        .iter()
        .map(|n| service_json(n, json!({"loadBalancer": {}})))
        .collect();
    let list = json!({"kind": "ServiceList", "apiVersion": "v1",
                      "metadata": {"resourceVersion": "61000"}, "items": items});
    let api = FakeApi::start(move |r| {
        let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        match (r.method.as_str(), parts.as_slice()) {
            (_, ["api", "v1", "services"]) if r.is_watch() => Reply::Watch,
            ("GET", ["api", "v1", "services"]) => Reply::ok(list.clone()),
            (
                "PATCH",
                [
                    "api",
                    "v1",
                    "namespaces",
                    "shop",
                    "services",
                    name,
                    "status",
                ],
            ) => Reply::ok(service_json(
                name,
                r.body.clone().unwrap()["status"].clone(),
            )),
            _ => Reply::not_found(&r.path),
        }
    });
    let mut snap = Snapshot::default();
    for (i, name) in names.iter().enumerate() {
        snap.insert_port(
            format!("shop/{name}").parse().unwrap(),
            "http",
            PortSpec::new(1000 + i as u16, ProxyProtocol::V2),
        )
        .unwrap();
    }
    let (tx, rx) = watch::channel(PipelineStatus::default());
    let stop = CancellationToken::new();
    let config = edgelb_kube::StatusConfig {
        qps: 10,
        burst: 10,
        ..edgelb_kube::StatusConfig::default()
    };
    let task = tokio::spawn(
        StatusWriter::new(api.client.clone(), nodes())
            .with_config(config)
            .run(rx, stop.clone()),
    );
    tx.send_replace(status(
        1,
        Arc::new(snap),
        synced(1, Applied::Reloaded),
        NodeStatus::default(),
    ));
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let early = patches(&api).len();
    assert!(
        (15..=21).contains(&early),
        "a burst of 10, then 10 a second: {early} patches after 1.05 s"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(patches(&api).len(), 40, "all written after 3.55 s");
    stop.cancel();
    task.await.unwrap().unwrap();
}

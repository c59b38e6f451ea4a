//! The LoadBalancer-class snapshot with placed Services: pools, addresses and who keeps a
//! port (the older Service, on the edges both are placed on).

use std::sync::Arc;

use edgelb_core::{EdgeNode, ServiceKey, Snapshot};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher};
use serde_json::json;

use super::{LoadBalancerConfig, service_spec};
use crate::convert::Warning;
use crate::service_fields::ServiceFields;
use crate::source::lb_parts::Parts;
use crate::source::slices::Touched;

/// The whole snapshot of `services` (no slices here: placement does not look at endpoints),
/// as the source's first build makes it.
fn build(
    config: &LoadBalancerConfig,
    edges: &[EdgeNode],
    services: Vec<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    fields: &mut ServiceFields,
) -> (Snapshot, Vec<Warning>) {
    assert!(slices.is_empty(), "placement tests build without slices");
    let (store, mut writer) = reflector::store();
    for svc in &services {
        writer.apply_watcher_event(&watcher::Event::Apply((**svc).clone()));
    }
    let mut parts = Parts::new(edges.to_vec());
    let (snap, warnings) = parts.update(&Touched::All, true, &store, |svc| {
        let mut warnings = Vec::new();
        let mut spec = service_spec(config, edges, svc, &[], &mut warnings);
        if let Some((key, spec)) = &mut spec {
            fields.fill(spec, svc, key, &mut warnings);
        }
        (spec, warnings)
    });
    (snap.unwrap_or_default(), warnings)
}

/// A Service of our class with one TCP port, created at second `created`.
fn svc(name: &str, port: u16, created: u32, annotations: serde_json::Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z"),
                "annotations": annotations,
            },
            "spec": {
                "type": "LoadBalancer", "loadBalancerClass": "edgelb.io/haproxy",
                "ports": [{"name": "https", "protocol": "TCP", "port": port}],
            },
        }))
        .unwrap(),
    )
}

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("ns", name).unwrap()
}

#[test]
fn pools_without_a_shared_edge_both_keep_the_port_and_a_shared_edge_makes_the_younger_lose() {
    let services = vec![
        svc("young", 443, 9, json!({"edgelb.io/pool": "b"})),
        svc("old", 443, 1, json!({"edgelb.io/pool": "a"})),
    ];
    let apart = [
        EdgeNode::new("e1").with_pool("a"),
        EdgeNode::new("e2").with_pool("b"),
    ];
    let (snap, warnings) = build(
        &LoadBalancerConfig::default(),
        &apart,
        services.clone(),
        vec![],
        &mut ServiceFields::default(),
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(snap.services[&key("old")].pool.as_deref(), Some("a"));
    assert_eq!(snap.services[&key("young")].pool.as_deref(), Some("b"));

    let shared = [EdgeNode::new("e1").with_pool("a").with_pool("b")];
    let (snap, warnings) = build(
        &LoadBalancerConfig::default(),
        &shared,
        services,
        vec![],
        &mut ServiceFields::default(),
    );
    assert!(snap.services.contains_key(&key("old")));
    assert!(!snap.services.contains_key(&key("young")));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].reason, "PortConflict");
    assert!(warnings[0].object.ends_with("ns/young"), "{warnings:?}");
    assert!(
        warnings[0].message.contains("ns/old:https"),
        "{}",
        warnings[0].message
    );
}

#[test]
fn two_addresses_share_a_port_and_every_address_conflicts_with_both() {
    let services = vec![
        svc("a", 443, 1, json!({"edgelb.io/address": "192.0.2.1"})),
        svc("b", 443, 2, json!({"edgelb.io/address": "192.0.2.2"})),
        svc("c", 443, 3, json!({})),
    ];
    let (snap, warnings) = build(
        &LoadBalancerConfig::default(),
        &[EdgeNode::new("e1")],
        services,
        vec![],
        &mut ServiceFields::default(),
    );
    assert_eq!(
        snap.services[&key("a")].address,
        Some("192.0.2.1".parse().unwrap())
    );
    assert_eq!(
        snap.services[&key("b")].address,
        Some("192.0.2.2".parse().unwrap())
    );
    assert!(!snap.services.contains_key(&key("c")));
    assert_eq!(
        warnings.iter().map(|w| w.reason).collect::<Vec<_>>(),
        ["PortConflict"]
    );
    snap.validate_on(&[EdgeNode::new("e1")]).unwrap();
}

#[test]
fn a_pool_without_edges_is_reported_and_a_bad_address_keeps_the_service_out() {
    let services = vec![
        svc("lonely", 443, 1, json!({"edgelb.io/pool": "nowhere"})),
        svc("typo", 444, 2, json!({"edgelb.io/address": "192.0.2"})),
    ];
    let (snap, warnings) = build(
        &LoadBalancerConfig::default(),
        &[EdgeNode::new("e1")],
        services,
        vec![],
        &mut ServiceFields::default(),
    );
    let reasons: Vec<&str> = warnings.iter().map(|w| w.reason).collect();
    assert_eq!(reasons, ["NoEdgesInPool", "InvalidAddress"]);
    assert_eq!(
        snap.services[&key("lonely")].pool.as_deref(),
        Some("nowhere")
    );
    assert!(!snap.services.contains_key(&key("typo")));
}

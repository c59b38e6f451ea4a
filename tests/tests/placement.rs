//! Placement end to end: `edgelb run` in LoadBalancer mode against the fake API server,
//! deploying over SSH to 3 edges of the testbed in two pools (`public`: edge1, edge2;
//! `internal`: edge3, which has two extra addresses). Services placed by annotation get
//! traffic only through their pool's edges (the others refuse the port), two Services share
//! port 443 on two addresses of edge3, a third one asking for a taken address and port loses
//! to the older one (Warning Event and `edgelb.io/Placed` condition, `True` again once it
//! moves), an endpoint change of a Service on an address goes through the runtime API, and a
//! Service placed on an address edge3 does not have is quarantined there alone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgelb_tests::controller::{Controller, free_port, wait_for_backends};
use edgelb_tests::fake_apiserver::FakeApiServer;
use edgelb_tests::testbed::scenario::LISTEN_PORT;
use edgelb_tests::testbed::{BACKEND_PORT, Backend, Probe, Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;
use serde_json::{Value, json};

const CLASS: &str = "edgelb.io/haproxy";
const NS: &str = "shop";

/// A `type: LoadBalancer` Service of our class with one TCP port, as the API server holds it.
fn service(name: &str, port: u16, annotations: Value, lb_ip: Option<Ipv4Addr>) -> Value {
    let mut spec = json!({
        "type": "LoadBalancer",
        "loadBalancerClass": CLASS,
        "ports": [{"name": "tcp", "protocol": "TCP", "port": port, "targetPort": "tcp", "nodePort": 30000 + port % 2000}],
        "selector": {"app": name},
        "clusterIP": "10.43.0.20",
        "clusterIPs": ["10.43.0.20"],
        "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster",
        "allocateLoadBalancerNodePorts": true,
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
    });
    if let Some(ip) = lb_ip {
        spec["loadBalancerIP"] = json!(ip.to_string());
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": spec,
    })
}

/// The EndpointSlice of Service `svc`: `backend`, ready.
fn slice(svc: &str, backend: &Backend) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{svc}-x1y2z"),
            "generateName": format!("{svc}-"),
            "namespace": NS,
            "labels": {
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "kubernetes.io/service-name": svc,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [backend.addr.ip().to_string()],
            "nodeName": "node-a",
            "targetRef": {"kind": "Pod", "namespace": NS, "name": format!("{svc}-{}", backend.name)},
            "conditions": {"ready": true, "serving": true, "terminating": false},
        }],
        "ports": [{"name": "tcp", "protocol": "TCP", "port": i32::from(BACKEND_PORT)}],
    })
}

/// The controller's files, with edge1 and edge2 in pool `public` and edge3 in `internal`.
fn write_config(tb: &Testbed, api: &FakeApiServer, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let known_hosts: Vec<String> = tb.edges.iter().map(|e| e.known_hosts_line()).collect();
    std::fs::write(dir.join("known_hosts"), known_hosts.join("\n") + "\n").unwrap();
    api.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
    let mut edges = serde_json::to_value(tb.nodes()).unwrap();
    for (i, (edge, e)) in edges
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(&tb.edges)
        .enumerate()
    {
        edge["public_addresses"] = json!([e.ip.to_string()]);
        edge["pools"] = json!([if i < 2 { "public" } else { "internal" }]);
    }
    let config = json!({
        "source": {"kubernetes": {"load_balancer": {"class": CLASS}}},
        "edges": edges,
        "deployer": {"ssh": {
            "key": tb.key.private,
            "known_hosts": "known_hosts",
            "connect_timeout": "2s",
            "step_timeout": "10s",
        }},
        "haproxy": {"hard_stop_after": "10s"},
        "pipeline": {
            "debounce": "50ms", "resync": "30s", "backoff_initial": "300ms", "backoff_max": "2s",
        },
        "http": {"ready_quorum": tb.edges.len()},
        "health": {"interval": "300ms", "timeout": "1s", "fall": 2, "rise": 2},
    });
    let path = dir.join("edgelb.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

/// Polls `check` until it gives a value; panics with its last complaint and edgelb's log.
async fn eventually<T>(
    what: &str,
    controller: &Controller,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let limit = Duration::from_secs(30);
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > limit => panic!(
                "{what}: not within {limit:?}; last: {last}\nedgelb log:\n{}",
                controller.log()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until a connection to `target` is answered by `backend`.
async fn answered_by(tb: &Testbed, controller: &Controller, target: SocketAddr, backend: &str) {
    let start = Instant::now();
    loop {
        let probe = tb.client.probe(target).await;
        if probe.backend() == Some(backend) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{target} never answered from {backend}; last probe {probe:?}\nedgelb log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A connection to `target` fails (nothing listens there).
async fn refused(tb: &Testbed, target: SocketAddr, why: &str) {
    let probe = tb.client.probe(target).await;
    assert!(
        matches!(probe, Probe::Failed(_)),
        "{target} ({why}): {probe:?}"
    );
}

fn ingress_of(api: &FakeApiServer, name: &str) -> Value {
    api.service(NS, name).unwrap()["status"]["loadBalancer"]["ingress"].clone()
}

/// Shop/`name`'s `edgelb.io/Placed` condition, if any.
fn placed_condition(api: &FakeApiServer, name: &str) -> Option<Value> {
    let svc = api.service(NS, name)?;
    svc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "edgelb.io/Placed")
        .cloned()
}

fn warnings_about(api: &FakeApiServer, name: &str, reason: &str) -> Vec<Value> {
    api.events()
        .into_iter()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_addresses_and_conflicts_in_load_balancer_mode() {
    let Some(tb) = Testbed::start_or_skip(
        "pools_addresses_and_conflicts_in_load_balancer_mode",
        TestbedConfig {
            edges: 3,
            backends: 3,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let b: Vec<&Backend> = tb.cluster.backends.iter().collect();
    let (a1, a2, lacking) = (tb.ip(50), tb.ip(51), tb.ip(77));
    tb.edges[2].add_address(a1).unwrap();
    tb.edges[2].add_address(a2).unwrap();
    let api = FakeApiServer::start().unwrap();
    // web: pool public, every address. admin-a and admin-b: pool internal, port 443 on two
    // addresses of edge3 (one by annotation, one by spec.loadBalancerIP).
    api.apply_service(service(
        "web",
        LISTEN_PORT,
        json!({"edgelb.io/pool": "public"}),
        None,
    ))
    .unwrap();
    api.apply_service(service(
        "admin-a",
        443,
        json!({"edgelb.io/pool": "internal", "edgelb.io/address": a1.to_string()}),
        None,
    ))
    .unwrap();
    api.apply_service(service(
        "admin-b",
        443,
        json!({"edgelb.io/pool": "internal"}),
        Some(a2),
    ))
    .unwrap();
    for (svc, backend) in [("web", b[0]), ("admin-a", b[1]), ("admin-b", b[2])] {
        api.apply_slice(slice(svc, backend)).unwrap();
    }

    let dir = tb.dir.join("controller");
    let config = write_config(&tb, &api, &dir);
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let kubeconfig = dir.join("kubeconfig");
    let controller = Controller::start(
        &config,
        http,
        &dir.join("edgelb.log"),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("HTTPS_PROXY", ""),
            ("https_proxy", ""),
            ("POD_NAME", "edgelb-0"),
            ("POD_NAMESPACE", "edgelb"),
        ],
    );

    // Pool public: edge1 and edge2 serve web, edge3 refuses its port.
    let b0 = b[0].name.as_str();
    wait_for_backends(&tb, &controller, &[0, 1], LISTEN_PORT, &[b0], "v2").await;
    let (b1, b2) = (b[1].name.as_str(), b[2].name.as_str());
    answered_by(&tb, &controller, (a1, 443).into(), b1).await;
    answered_by(&tb, &controller, (a2, 443).into(), b2).await;
    refused(
        &tb,
        tb.edge_addr(2, LISTEN_PORT),
        "web is not in edge3's pool",
    )
    .await;
    for i in 0..2 {
        refused(
            &tb,
            tb.edge_addr(i, 443),
            "admin-* are not in the public pool",
        )
        .await;
    }
    refused(
        &tb,
        tb.edge_addr(2, 443),
        "admin-* bind their own addresses only",
    )
    .await;
    let live = tb.edges[2].live_config();
    assert!(
        live.contains(&format!("bind {a1}:443")) && live.contains(&format!("bind {a2}:443")),
        "{live}"
    );

    // The status: web through its pool's edges, admin-* at their own addresses.
    let public: Value = tb.edges[..2]
        .iter()
        .map(|e| json!({"ip": e.ip.to_string(), "ipMode": "Proxy"}))
        .collect();
    eventually("the status of every Service", &controller, || {
        let got = [
            ingress_of(&api, "web"),
            ingress_of(&api, "admin-a"),
            ingress_of(&api, "admin-b"),
        ];
        let want = [
            public.clone(),
            json!([{"ip": a1.to_string(), "ipMode": "Proxy"}]),
            json!([{"ip": a2.to_string(), "ipMode": "Proxy"}]),
        ];
        (got == want)
            .then_some(())
            .ok_or_else(|| format!("{got:?}"))
    })
    .await;
    assert_eq!(
        placed_condition(&api, "admin-a"),
        None,
        "no problem, no condition"
    );

    // An endpoint change of a Service on an address goes through the runtime API: no reload.
    api.apply_slice(slice("admin-b", b[0])).unwrap();
    answered_by(&tb, &controller, (a2, 443).into(), b0).await;
    // (The Deployed Event says so too, but Events of one reason per Service and edge are
    // rate-limited: the log is the record of every deploy.)
    eventually("admin-b's runtime update on edge3", &controller, || {
        let log = controller.log();
        log.lines()
            .any(|l| {
                l.contains("node is live")
                    && l.contains("node=\"edge3\"")
                    && l.contains("applied=runtime-updated")
            })
            .then_some(())
            .ok_or_else(|| "no runtime update of edge3 logged".to_owned())
    })
    .await;

    // A younger Service asking for admin-a's address and port loses it, visibly.
    api.apply_service(service(
        "late",
        443,
        json!({"edgelb.io/pool": "internal", "edgelb.io/address": a1.to_string()}),
        None,
    ))
    .unwrap();
    api.apply_slice(slice("late", b[0])).unwrap();
    let condition = eventually("late's PortConflict condition", &controller, || {
        placed_condition(&api, "late").ok_or_else(|| "no condition".to_owned())
    })
    .await;
    assert_eq!(condition["status"], "False", "{condition}");
    assert_eq!(condition["reason"], "PortConflict", "{condition}");
    let message = condition["message"].as_str().unwrap();
    assert!(
        message.contains("shop/admin-a:tcp") && message.contains(&format!("{a1}:443")),
        "{message}"
    );
    let events = warnings_about(&api, "late", "PortConflict");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "Warning");
    answered_by(&tb, &controller, (a1, 443).into(), b1).await;
    assert_eq!(
        ingress_of(&api, "late"),
        Value::Null,
        "a loser is not published"
    );

    // Moved to a free port, it is served and its condition says so.
    api.apply_service(service(
        "late",
        8443,
        json!({"edgelb.io/pool": "internal", "edgelb.io/address": a1.to_string()}),
        None,
    ))
    .unwrap();
    answered_by(&tb, &controller, (a1, 8443).into(), b0).await;
    eventually("late's condition back to True", &controller, || {
        let c = placed_condition(&api, "late").unwrap_or_default();
        (c["status"] == "True" && c["reason"] == "Placed")
            .then_some(())
            .ok_or_else(|| c.to_string())
    })
    .await;

    // An address edge3 does not have: its reload fails, that Service alone is quarantined
    // there, everything else keeps serving.
    api.apply_service(service(
        "ghost",
        8444,
        json!({"edgelb.io/pool": "internal", "edgelb.io/address": lacking.to_string()}),
        None,
    ))
    .unwrap();
    api.apply_slice(slice("ghost", b[0])).unwrap();
    let quarantined = eventually("ghost quarantined on edge3", &controller, || {
        let events = warnings_about(&api, "ghost", "Quarantined");
        events
            .first()
            .cloned()
            .ok_or_else(|| "no Quarantined event".to_owned())
    })
    .await;
    assert!(
        quarantined["note"].as_str().unwrap().contains("edge3"),
        "{quarantined}"
    );
    for other in ["admin-a", "admin-b", "late", "web"] {
        assert!(
            warnings_about(&api, other, "Quarantined").is_empty(),
            "{other} was blamed for ghost's address"
        );
    }
    answered_by(&tb, &controller, (a1, 443).into(), b1).await;
    answered_by(&tb, &controller, (a2, 443).into(), b0).await;
    answered_by(&tb, &controller, (a1, 8443).into(), b0).await;
    assert_eq!(
        ingress_of(&api, "ghost"),
        Value::Null,
        "never served, never published"
    );
    let live = tb.edges[2].live_config();
    assert!(!live.contains(&lacking.to_string()), "{live}");
    // edge3 serves only Services on asked addresses: the health probe (on the edge's
    // loopback) must not count those ports as down. Many probe intervals have passed.
    let healthy = "edgelb_edge_healthy{node=\"edge3\"} 1";
    let edge3_health = || async {
        let (code, body) = controller.get("/metrics").await;
        let line = body
            .lines()
            .find(|l| l.starts_with("edgelb_edge_healthy{node=\"edge3\"}"))
            .map(str::to_owned);
        (code == 200 && line.as_deref() == Some(healthy), line)
    };
    let start = Instant::now();
    while !edge3_health().await.0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "edge3 never healthy: {:?}\nedgelb log:\n{}",
            edge3_health().await.1,
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …and it stays so for many probes (300 ms apart, 2 failures make it unhealthy).
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (ok, line) = edge3_health().await;
        assert!(
            ok,
            "edge3 turned unhealthy: {line:?}\nedgelb log:\n{}",
            controller.log()
        );
    }
}

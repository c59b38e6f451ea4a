//! The `edgelb run` process with the Kubernetes sources, pointed through `KUBECONFIG` at the
//! fake API server, deploying with the SSH deployer to 3 edges of the network-namespace
//! testbed: traffic with the real client address, Service status and Events, EndpointSlice
//! changes (drain included), an edge down and back, leader election on a Lease, the health and
//! metrics endpoints, and a clean exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgelb_tests::controller::{Controller, free_port, wait_for_backends};
use edgelb_tests::fake_apiserver::FakeApiServer;
use edgelb_tests::testbed::scenario::LISTEN_PORT;
use edgelb_tests::testbed::{Backend, Probe, Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;
use serde_json::{Value, json};

const CLASS: &str = "edgelb.io/haproxy";

/// An endpoint's conditions in a slice.
#[derive(Debug, Clone, Copy)]
enum Cond {
    Ready,
    /// Terminating but still serving: drained.
    Draining,
}

/// A Service as the API server holds it (shapes from edgelb-kube's fixtures).
fn service(
    namespace: &str,
    name: &str,
    type_: &str,
    class: Option<&str>,
    ports: Value,
    annotations: Value,
) -> Value {
    let mut spec = json!({
        "type": type_,
        "ports": ports,
        "selector": {"app": name},
        "clusterIP": "10.43.0.10",
        "clusterIPs": ["10.43.0.10"],
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
    });
    if type_ == "LoadBalancer" {
        spec["externalTrafficPolicy"] = json!("Cluster");
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    if let Some(class) = class {
        spec["loadBalancerClass"] = json!(class);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": spec,
    })
}

/// An EndpointSlice of `svc` with `endpoints` on the testbed's backends, one slice port per
/// name in `ports` (all on the backends' port).
fn slice(
    namespace: &str,
    name: &str,
    svc: &str,
    ports: &[&str],
    endpoints: &[(&Backend, Cond)],
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(b, cond)| {
            let (ready, serving, terminating) = match cond {
                Cond::Ready => (true, true, false),
                Cond::Draining => (false, true, true),
            };
            json!({
                "addresses": [b.addr.ip().to_string()],
                "nodeName": "node-a",
                "targetRef": {"kind": "Pod", "namespace": namespace, "name": format!("{svc}-{}", b.name)},
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            })
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"name": p, "protocol": "TCP", "port": i32::from(edgelb_tests::testbed::BACKEND_PORT)}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "generateName": format!("{svc}-"),
            "namespace": namespace,
            "labels": {
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "kubernetes.io/service-name": svc,
            },
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Service", "name": svc,
                "uid": "00000000-0000-4000-8000-000000000000",
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    })
}

/// The controller's files: known_hosts, kubeconfig and `edgelb.yaml` (JSON, which is YAML).
fn write_config(
    tb: &Testbed,
    api: &FakeApiServer,
    dir: &Path,
    source: Value,
    leader_election: Option<Value>,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let known_hosts: Vec<String> = tb.edges.iter().map(|e| e.known_hosts_line()).collect();
    std::fs::write(dir.join("known_hosts"), known_hosts.join("\n") + "\n").unwrap();
    api.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
    let mut edges = serde_json::to_value(tb.nodes()).unwrap();
    for (edge, e) in edges.as_array_mut().unwrap().iter_mut().zip(&tb.edges) {
        edge["public_addresses"] = json!([e.ip.to_string()]);
    }
    let mut config = json!({
        "source": {"kubernetes": source},
        "edges": edges,
        "deployer": {"ssh": {
            "key": tb.key.private,
            "known_hosts": "known_hosts",
            "connect_timeout": "2s",
            "step_timeout": "10s",
        }},
        "haproxy": {"hard_stop_after": "10s"},
        "pipeline": {
            "debounce": "50ms", "resync": "3s", "backoff_initial": "300ms", "backoff_max": "2s",
            "empty_backend_hold": "1s",
        },
        "http": {"ready_quorum": tb.edges.len()},
        "health": {"interval": "500ms", "timeout": "1s", "fall": 2, "rise": 2},
    });
    if let Some(le) = leader_election {
        config["leader_election"] = le;
    }
    let path = dir.join("edgelb.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

/// Starts `edgelb run` against the fake API server.
fn start_controller(dir: &Path, config: &Path) -> Controller {
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let kubeconfig = dir.join("kubeconfig");
    Controller::start(
        config,
        http,
        &dir.join("edgelb.log"),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            // The cluster is on loopback: no proxy (kube ignores empty values).
            ("HTTPS_PROXY", ""),
            ("https_proxy", ""),
            ("POD_NAME", "edgelb-0"),
            ("POD_NAMESPACE", "edgelb"),
        ],
    )
}

/// Polls `check` until it gives a value; panics with its last complaint and edgelb's log.
async fn eventually<T>(
    what: &str,
    limit: Duration,
    controller: &Controller,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
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

/// Waits until shop/web's `status.loadBalancer.ingress` lists every edge's address with
/// `ip_mode`; returns that list.
async fn wait_for_web_ingress(
    tb: &Testbed,
    api: &FakeApiServer,
    controller: &Controller,
    ip_mode: &str,
) -> Value {
    let expected = Value::Array(
        tb.edges
            .iter()
            .map(|e| json!({"ip": e.ip.to_string(), "ipMode": ip_mode}))
            .collect(),
    );
    eventually(
        &format!("status.loadBalancer.ingress of shop/web with ipMode {ip_mode}"),
        Duration::from_secs(15),
        controller,
        || {
            let svc = api.service("shop", "web").unwrap();
            let ingress = &svc["status"]["loadBalancer"]["ingress"];
            (*ingress == expected)
                .then_some(())
                .ok_or_else(|| ingress.to_string())
        },
    )
    .await;
    expected
}

/// The value of one series (`name{labels}`) in a metrics text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `/metrics` until `check` accepts it.
async fn wait_metrics(
    controller: &Controller,
    what: &str,
    limit: Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    loop {
        let (code, body) = controller.get("/metrics").await;
        if code == 200 && check(&body) {
            return body;
        }
        assert!(
            start.elapsed() < limit,
            "metrics never showed {what} within {limit:?}\nmetrics:\n{body}\nedgelb log:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The probes of `n` connections through edge `i`: every one from `backend`.
async fn all_from(tb: &Testbed, i: usize, port: u16, n: usize, backend: &str) {
    for _ in 0..n {
        let probe = tb.client.probe(tb.edge_addr(i, port)).await;
        assert_eq!(
            probe.backend(),
            Some(backend),
            "edge {i} port {port}: {probe:?}\nlive config:\n{}",
            tb.edges[i].live_config()
        );
    }
}

/// How many LISTs of Services and EndpointSlices edgelb made so far.
fn lists(api: &FakeApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "GET" && !r.is_watch())
        .filter(|r| r.path.ends_with("/services") || r.path.ends_with("/endpointslices"))
        .count()
}

/// How many watches edgelb opened so far.
fn watches(api: &FakeApiServer) -> usize {
    api.requests().iter().filter(|r| r.is_watch()).count()
}

fn events_with(api: &FakeApiServer, reason: &str) -> Vec<Value> {
    api.events()
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

/// LoadBalancer mode with leader election: everything the controller does for a
/// `type: LoadBalancer` Service of its class, from start to SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_services_are_served_by_three_edges_with_status_and_lease() {
    let started = Instant::now();
    let Some(mut tb) = Testbed::start_or_skip(
        "load_balancer_services_are_served_by_three_edges_with_status_and_lease",
        TestbedConfig {
            edges: 3,
            backends: 4,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let b: Vec<&Backend> = tb.cluster.backends.iter().collect();
    let names: Vec<String> = tb.edges.iter().map(|e| e.name.clone()).collect();
    let api = FakeApiServer::start().unwrap();
    // Ours, with a UDP port edgelb must skip (with a Warning Event); one of another class;
    // their slices.
    let web_ports = json!([
        {"name": "http", "protocol": "TCP", "port": LISTEN_PORT, "targetPort": "http", "nodePort": 30080},
        {"name": "quic", "protocol": "UDP", "port": 8443, "targetPort": 8443, "nodePort": 30443},
    ]);
    api.apply_service(service(
        "shop",
        "web",
        "LoadBalancer",
        Some(CLASS),
        web_ports.clone(),
        json!({"edgelb.io/proxy-protocol": "v2"}),
    ))
    .unwrap();
    api.apply_service(service(
        "shop",
        "other",
        "LoadBalancer",
        Some("service.k8s.aws/nlb"),
        json!([{"name": "http", "protocol": "TCP", "port": 8081, "targetPort": 9000, "nodePort": 30081}]),
        json!({}),
    ))
    .unwrap();
    api.apply_slice(slice(
        "shop",
        "web-abcde",
        "web",
        &["http"],
        &[(b[0], Cond::Ready), (b[1], Cond::Ready)],
    ))
    .unwrap();
    api.apply_slice(slice(
        "shop",
        "other-q6r7s",
        "other",
        &["http"],
        &[(b[3], Cond::Ready)],
    ))
    .unwrap();
    let web_uid = api.service("shop", "web").unwrap()["metadata"]["uid"].clone();

    let dir = tb.dir.join("controller-kube");
    let config = write_config(
        &tb,
        &api,
        &dir,
        json!({"load_balancer": {"class": CLASS}}),
        Some(json!({"lease_duration": "4s", "renew_deadline": "3s", "retry_period": "500ms"})),
    );
    let mut controller = start_controller(&dir, &config);

    // Every edge serves the Service's ready endpoints, with the client's own address.
    wait_for_backends(
        &tb,
        &controller,
        &[0, 1, 2],
        LISTEN_PORT,
        &["b1", "b2"],
        "v2",
    )
    .await;
    let converged = started.elapsed();
    let body = controller.wait_ready(Duration::from_secs(10)).await;
    assert!(body.contains("3/3 edges"), "{body}");
    assert_eq!(controller.get("/healthz").await.0, 200);
    for edge in &tb.edges {
        let live = edge.live_config();
        assert!(
            live.contains("shop/web") && !live.contains("shop/other"),
            "{}: only our class is served:\n{live}",
            edge.name
        );
    }

    // The Service's status lists the edges' public addresses, ipMode Proxy (PROXY v2 is on).
    wait_for_web_ingress(&tb, &api, &controller, "Proxy").await;
    let patches = api.status_patches();
    for p in &patches {
        assert_eq!(
            (p.resource.as_str(), p.namespace.as_str(), p.name.as_str()),
            ("services", "shop", "web"),
            "only our Service's status is written: {p:?}"
        );
        assert_eq!(p.content_type, "application/merge-patch+json", "{p:?}");
        assert_eq!(p.field_manager.as_deref(), Some("edgelb"), "{p:?}");
        assert_eq!(p.code, 200, "{p:?}");
    }
    assert!(
        api.service("shop", "other").unwrap()["status"]["loadBalancer"]["ingress"].is_null(),
        "the other class's Service is left alone"
    );

    // Events: one Deployed per edge on the Service (by uid), and the skipped UDP port.
    let deployed = eventually(
        "a Deployed Event per edge",
        Duration::from_secs(10),
        &controller,
        || {
            let deployed = events_with(&api, "Deployed");
            let all = names.iter().all(|n| {
                deployed.iter().any(|e| {
                    e["note"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&format!("edge {n} "))
                })
            });
            all.then_some(deployed.clone())
                .ok_or_else(|| format!("{deployed:?}"))
        },
    )
    .await;
    for e in &deployed {
        assert_eq!(e["type"], "Normal", "{e}");
        assert_eq!(e["regarding"]["kind"], "Service", "{e}");
        assert_eq!(e["regarding"]["name"], "web", "{e}");
        assert_eq!(e["regarding"]["uid"], web_uid, "{e}");
        assert_eq!(e["reportingController"], "edgelb.io/controller", "{e}");
        assert_eq!(e["reportingInstance"], "edgelb-0", "{e}");
        assert_eq!(e["metadata"]["namespace"], "shop", "{e}");
    }
    let udp = events_with(&api, "UnsupportedProtocol");
    assert!(
        udp.len() == 1 && udp[0]["type"] == "Warning" && udp[0]["regarding"]["name"] == "web",
        "{udp:?}"
    );

    // Metrics.
    let metrics = wait_metrics(
        &controller,
        "3 edges in sync, 2 endpoints, leader",
        Duration::from_secs(10),
        |m| {
            names
                .iter()
                .all(|n| metric(m, &format!("edgelb_node_in_sync{{node=\"{n}\"}}")) == Some(1.0))
                && metric(m, "edgelb_endpoints{service=\"shop/web\",port=\"http\"}") == Some(2.0)
                && metric(m, "edgelb_leader") == Some(1.0)
        },
    )
    .await;
    for n in &names {
        assert!(
            metric(
                &metrics,
                &format!("edgelb_deploys_total{{node=\"{n}\",result=\"reloaded\"}}")
            )
            .is_some_and(|v| v >= 1.0),
            "{metrics}"
        );
        assert!(
            metric(
                &metrics,
                &format!("edgelb_convergence_seconds_count{{node=\"{n}\"}}")
            )
            .is_some_and(|v| v >= 1.0),
            "{metrics}"
        );
    }
    assert!(!metrics.contains("service=\"shop/other\""), "{metrics}");

    // The Lease: held by this replica and renewed.
    let lease = api
        .lease("edgelb", "edgelb-leader")
        .expect("the Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], "edgelb-0", "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 4, "{lease}");
    let first_renewal = lease["spec"]["renewTime"].clone();
    eventually(
        "a Lease renewal",
        Duration::from_secs(5),
        &controller,
        || {
            let lease = api.lease("edgelb", "edgelb-leader").unwrap();
            (lease["spec"]["renewTime"] != first_renewal
                && lease["spec"]["holderIdentity"] == "edgelb-0")
                .then_some(())
                .ok_or_else(|| lease.to_string())
        },
    )
    .await;

    // An EndpointSlice change: b1 goes away, b2 terminates (still serving: drained), b3 is
    // new. New connections reach b3 only; b2 stays in the config with weight 0.
    let (_, before) = controller.get("/metrics").await;
    let generation = metric(&before, "edgelb_desired_generation").unwrap();
    api.apply_slice(slice(
        "shop",
        "web-abcde",
        "web",
        &["http"],
        &[(b[1], Cond::Draining), (b[2], Cond::Ready)],
    ))
    .unwrap();
    wait_for_backends(&tb, &controller, &[0, 1, 2], LISTEN_PORT, &["b3"], "v2").await;
    // Traffic may move before the file does (runtime API first): wait for the deploys.
    wait_metrics(
        &controller,
        "the change in sync everywhere, 2 endpoints (one draining)",
        Duration::from_secs(10),
        |m| {
            metric(m, "edgelb_desired_generation").is_some_and(|g| g > generation)
                && metric(m, "edgelb_endpoints{service=\"shop/web\",port=\"http\"}") == Some(2.0)
                && names.iter().all(|n| {
                    metric(m, &format!("edgelb_node_in_sync{{node=\"{n}\"}}")) == Some(1.0)
                })
        },
    )
    .await;
    for (i, edge) in tb.edges.iter().enumerate() {
        all_from(&tb, i, LISTEN_PORT, 4, "b3").await;
        let live = edge.live_config();
        let b1 = format!(" {} ", b[0].addr);
        let b2 = format!(" {} ", b[1].addr);
        // b1 is out: gone, or left disabled in its slot.
        assert!(
            live.lines()
                .filter(|l| l.contains(&b1))
                .all(|l| l.trim_end().ends_with(" disabled")),
            "{}: b1 is out of service:\n{live}",
            edge.name
        );
        assert!(
            live.lines()
                .any(|l| l.contains(&b2) && l.trim_end().ends_with("weight 0")),
            "{}: b2 drains (weight 0):\n{live}",
            edge.name
        );
    }

    // An edge goes down (sshd stopped, HAProxy still serving): a second slice adds b4; the
    // other two edges converge, the dead one is reported and keeps its old config.
    tb.edges[2].stop_sshd();
    api.apply_slice(slice(
        "shop",
        "web-fghij",
        "web",
        &["http"],
        &[(b[3], Cond::Ready)],
    ))
    .unwrap();
    wait_for_backends(&tb, &controller, &[0, 1], LISTEN_PORT, &["b4"], "v2").await;
    let down = &names[2];
    // Each edge has a task of its own: the dead edge's refusal comes first, the others'
    // outcomes when their transactions end.
    let metrics = wait_metrics(
        &controller,
        &format!("{down} out of sync with a failed deploy, the others in sync"),
        Duration::from_secs(15),
        |m| {
            names[..2]
                .iter()
                .all(|n| metric(m, &format!("edgelb_node_in_sync{{node=\"{n}\"}}")) == Some(1.0))
                && metric(m, &format!("edgelb_node_in_sync{{node=\"{down}\"}}")) == Some(0.0)
                && metric(
                    m,
                    &format!("edgelb_node_consecutive_failures{{node=\"{down}\"}}"),
                )
                .is_some_and(|v| v >= 1.0)
                && ["connect", "timeout"].iter().any(|r| {
                    metric(
                        m,
                        &format!("edgelb_deploys_total{{node=\"{down}\",result=\"{r}\"}}"),
                    )
                    .is_some_and(|v| v >= 1.0)
                })
        },
    )
    .await;
    for n in &names[..2] {
        assert_eq!(
            metric(&metrics, &format!("edgelb_node_in_sync{{node=\"{n}\"}}")),
            Some(1.0),
            "{metrics}"
        );
    }
    all_from(&tb, 2, LISTEN_PORT, 3, "b3").await; // the old config, still serving
    let failed = eventually(
        "a DeployFailed Event",
        Duration::from_secs(10),
        &controller,
        || {
            let failed = events_with(&api, "DeployFailed");
            (!failed.is_empty())
                .then_some(failed.clone())
                .ok_or_else(|| format!("{:?}", api.events()))
        },
    )
    .await;
    assert!(
        failed.iter().all(|e| e["type"] == "Warning"
            && e["regarding"]["name"] == "web"
            && e["note"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("edge {down} "))),
        "{failed:?}"
    );
    // Its health probes fail too (edgelb cannot reach it): after `fall` of them its address
    // leaves the status, the other two edges serving, with an EdgeUnhealthy Warning.
    let healthy: Vec<Value> = tb.edges[..2]
        .iter()
        .map(|e| json!({"ip": e.ip.to_string(), "ipMode": "Proxy"}))
        .collect();
    let healthy = Value::Array(healthy);
    let stopped = Instant::now();
    eventually(
        &format!("{down}'s address leaving shop/web's status"),
        Duration::from_secs(15),
        &controller,
        || {
            let svc = api.service("shop", "web").unwrap();
            let ingress = &svc["status"]["loadBalancer"]["ingress"];
            (*ingress == healthy)
                .then_some(())
                .ok_or_else(|| ingress.to_string())
        },
    )
    .await;
    println!(
        "{down}'s address left the status {:.1} s after its sshd stopped",
        stopped.elapsed().as_secs_f64()
    );
    let unhealthy = events_with(&api, "EdgeUnhealthy");
    assert!(
        unhealthy.iter().any(|e| e["type"] == "Warning"
            && e["regarding"]["name"] == "web"
            && e["note"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("edge {down} is unhealthy"))),
        "{unhealthy:?}"
    );
    let m = wait_metrics(&controller, "edge health", Duration::from_secs(5), |m| {
        metric(m, &format!("edgelb_edge_healthy{{node=\"{down}\"}}")) == Some(0.0)
    })
    .await;
    assert_eq!(
        metric(&m, &format!("edgelb_edge_healthy{{node=\"{}\"}}", names[0])),
        Some(1.0),
        "{m}"
    );
    assert_eq!(controller.get("/readyz").await.0, 200);

    // The edge comes back, converges, and is published again once healthy.
    tb.edges[2].start_sshd().unwrap();
    wait_for_backends(&tb, &controller, &[2], LISTEN_PORT, &["b4"], "v2").await;
    wait_for_web_ingress(&tb, &api, &controller, "Proxy").await;
    wait_metrics(
        &controller,
        &format!("{down} back in sync"),
        Duration::from_secs(10),
        |m| {
            names
                .iter()
                .all(|n| metric(m, &format!("edgelb_node_in_sync{{node=\"{n}\"}}")) == Some(1.0))
                && metric(
                    m,
                    &format!("edgelb_node_consecutive_failures{{node=\"{down}\"}}"),
                ) == Some(0.0)
                && metric(m, "edgelb_endpoints{service=\"shop/web\",port=\"http\"}") == Some(3.0)
        },
    )
    .await;

    // PROXY turned off by the annotation: the backends see the edges' addresses, and the
    // status says ipMode VIP (kube-proxy may short-circuit in-cluster clients again).
    api.apply_service(service(
        "shop",
        "web",
        "LoadBalancer",
        Some(CLASS),
        web_ports.clone(),
        json!({"edgelb.io/proxy-protocol": "none"}),
    ))
    .unwrap();
    wait_for_backends(
        &tb,
        &controller,
        &[0, 1, 2],
        LISTEN_PORT,
        &["b3", "b4"],
        "none",
    )
    .await;
    wait_for_web_ingress(&tb, &api, &controller, "VIP").await;

    // The Service stops being a LoadBalancer: after the empty-backend hold the edges stop
    // serving it, and its ingress is cleared.
    api.apply_service(service(
        "shop",
        "web",
        "ClusterIP",
        None,
        json!([{"name": "http", "protocol": "TCP", "port": LISTEN_PORT, "targetPort": "http"}]),
        json!({}),
    ))
    .unwrap();
    for i in 0..3 {
        let start = Instant::now();
        loop {
            let probe = tb.client.probe(tb.edge_addr(i, LISTEN_PORT)).await;
            if matches!(probe, Probe::Failed(_)) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "edge {i} still serves the Service: {probe:?}\nedgelb log:\n{}",
                controller.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eventually(
        "the ingress cleared",
        Duration::from_secs(10),
        &controller,
        || {
            let svc = api.service("shop", "web").unwrap();
            let lb = &svc["status"]["loadBalancer"];
            (*lb == json!({}))
                .then_some(())
                .ok_or_else(|| lb.to_string())
        },
    )
    .await;
    let last = api.status_patches().pop().unwrap();
    assert_eq!(
        last.patch,
        json!({"status": {"loadBalancer": {"ingress": null}}}),
        "{last:?}"
    );
    wait_metrics(
        &controller,
        "no endpoints series for shop/web",
        Duration::from_secs(10),
        |m| !m.contains("service=\"shop/web\""),
    )
    .await;

    // SIGTERM: a clean exit (a hang fails `terminate`), and the Lease is released. How long
    // it takes is printed, not asserted: it depends on the machine's load.
    let term = Instant::now();
    let status = controller.terminate(Duration::from_secs(30));
    let stopped_in = term.elapsed();
    assert!(
        status.success(),
        "edgelb exited with {status}\nlog:\n{}",
        controller.log()
    );
    let lease = api.lease("edgelb", "edgelb-leader").unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the Lease is released on SIGTERM: {lease}\nlog:\n{}",
        controller.log()
    );
    assert!(
        api.unhandled().is_empty(),
        "edgelb asked for what the fake API server does not serve: {:?}",
        api.unhandled()
    );
    eprintln!(
        "load_balancer_services…: first convergence {converged:?}, total {:?}, SIGTERM exit {stopped_in:?}",
        started.elapsed()
    );
}

/// Named mode: a fixed list of Services (one missing at first), per-port listen port and
/// PROXY version; no status written, no Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_services_follow_their_slices_on_three_edges() {
    let started = Instant::now();
    let Some(tb) = Testbed::start_or_skip(
        "named_services_follow_their_slices_on_three_edges",
        TestbedConfig {
            edges: 3,
            backends: 3,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let b: Vec<&Backend> = tb.cluster.backends.iter().collect();
    const WEBSECURE_PORT: u16 = 8443;
    const LATE_PORT: u16 = 8081;
    // A Service watch and a slice watch per named Service.
    const WATCHES: usize = 4;
    let api = FakeApiServer::start().unwrap();
    api.apply_service(service(
        "kube-system",
        "traefik",
        "ClusterIP",
        None,
        json!([
            {"name": "web", "protocol": "TCP", "port": 80, "targetPort": "web"},
            {"name": "websecure", "protocol": "TCP", "port": 443, "targetPort": "websecure"},
        ]),
        json!({}),
    ))
    .unwrap();
    api.apply_slice(slice(
        "kube-system",
        "traefik-x7k2p",
        "traefik",
        &["web", "websecure"],
        &[(b[0], Cond::Ready)],
    ))
    .unwrap();

    let dir = tb.dir.join("controller-kube");
    let config = write_config(
        &tb,
        &api,
        &dir,
        json!({"services": [
            {"service": "kube-system/traefik", "ports": [
                {"port": "web", "listen_port": LISTEN_PORT, "proxy_protocol": "v1"},
                {"port": "websecure", "listen_port": WEBSECURE_PORT},
            ]},
            {"service": "default/late", "ports": [{"port": "http", "listen_port": LATE_PORT}]},
        ]}),
        None,
    );
    // The healthy edges as an external-dns DNSEndpoint (no LoadBalancer Service carries them).
    let mut with_dns: Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    with_dns["dns_endpoint"] = json!({"hostnames": ["example.com"], "ttl": "30s"});
    std::fs::write(&config, with_dns.to_string()).unwrap();
    let mut controller = start_controller(&dir, &config);

    // Both ports on every edge, each with its own PROXY version; the missing Service waits.
    wait_for_backends(&tb, &controller, &[0, 1, 2], LISTEN_PORT, &["b1"], "v1").await;
    wait_for_backends(&tb, &controller, &[0, 1, 2], WEBSECURE_PORT, &["b1"], "v2").await;
    let converged = started.elapsed();
    let body = controller.wait_ready(Duration::from_secs(10)).await;
    assert!(body.contains("3/3 edges"), "{body}");
    let metrics = wait_metrics(
        &controller,
        "both traefik ports, leader without election",
        Duration::from_secs(10),
        |m| {
            metric(
                m,
                "edgelb_endpoints{service=\"kube-system/traefik\",port=\"web\"}",
            ) == Some(1.0)
                && metric(
                    m,
                    "edgelb_endpoints{service=\"kube-system/traefik\",port=\"websecure\"}",
                ) == Some(1.0)
                && metric(m, "edgelb_leader") == Some(1.0)
        },
    )
    .await;
    assert!(!metrics.contains("default/late"), "{metrics}");

    // The DNSEndpoint lists every edge; a hung HAProxy takes its edge out, and back.
    let a_targets = |edges: &[usize]| {
        let mut ips: Vec<String> = edges.iter().map(|i| tb.edges[*i].ip.to_string()).collect();
        ips.sort();
        json!([{"dnsName": "example.com", "recordType": "A", "targets": ips, "recordTTL": 30}])
    };
    let dns_is = |edges: &'static [usize]| {
        let expected = a_targets(edges);
        let api = &api;
        move || {
            let records = api
                .get("DNSEndpoint", "edgelb", "edgelb")
                .map(|o| o["spec"]["endpoints"].clone())
                .unwrap_or(Value::Null);
            (records == expected)
                .then_some(())
                .ok_or_else(|| records.to_string())
        }
    };
    eventually(
        "a DNSEndpoint of the 3 edges",
        Duration::from_secs(15),
        &controller,
        dns_is(&[0, 1, 2]),
    )
    .await;
    tb.edges[2].freeze_haproxy(true);
    eventually(
        "edge3 out of the DNSEndpoint",
        Duration::from_secs(20),
        &controller,
        dns_is(&[0, 1]),
    )
    .await;
    tb.edges[2].freeze_haproxy(false);
    eventually(
        "edge3 back in the DNSEndpoint",
        Duration::from_secs(20),
        &controller,
        dns_is(&[0, 1, 2]),
    )
    .await;

    // The API server ends every watch (as at a watch timeout): edgelb watches again from the
    // resourceVersion it saw, without listing again, and misses nothing after it.
    let lists_before = lists(&api);
    let watches_before = watches(&api);
    api.end_watches();
    eventually(
        "edgelb watching again",
        Duration::from_secs(10),
        &controller,
        || {
            (watches(&api) >= watches_before + WATCHES)
                .then_some(())
                .ok_or_else(|| format!("{} watch requests", watches(&api)))
        },
    )
    .await;
    assert_eq!(lists(&api), lists_before, "a resumed watch needs no list");

    // The Service's pods move: a second slice appears, the first one's pod leaves.
    api.apply_slice(slice(
        "kube-system",
        "traefik-m4n8q",
        "traefik",
        &["web", "websecure"],
        &[(b[2], Cond::Ready)],
    ))
    .unwrap();
    api.apply_slice(slice(
        "kube-system",
        "traefik-x7k2p",
        "traefik",
        &["web", "websecure"],
        &[(b[1], Cond::Ready)],
    ))
    .unwrap();
    wait_for_backends(&tb, &controller, &[0, 1, 2], WEBSECURE_PORT, &["b2"], "v2").await;
    wait_for_backends(&tb, &controller, &[0, 1, 2], WEBSECURE_PORT, &["b3"], "v2").await;
    for i in 0..3 {
        for _ in 0..4 {
            let probe = tb.client.probe(tb.edge_addr(i, LISTEN_PORT)).await;
            assert!(
                matches!(probe.backend(), Some("b2" | "b3")),
                "edge {i}: b1 left: {probe:?}"
            );
        }
    }
    // The history is compacted: every watch gets 410 Gone; edgelb lists again, keeping what
    // it serves meanwhile, and goes on watching.
    let lists_before = lists(&api);
    api.expire_watches();
    eventually(
        "edgelb listing again after 410 Gone",
        Duration::from_secs(15),
        &controller,
        || {
            (lists(&api) >= lists_before + WATCHES)
                .then_some(())
                .ok_or_else(|| format!("{} lists", lists(&api)))
        },
    )
    .await;
    for i in 0..3 {
        let probe = tb.client.probe(tb.edge_addr(i, WEBSECURE_PORT)).await;
        assert!(
            matches!(probe.backend(), Some("b2" | "b3")),
            "edge {i} keeps serving across the relist: {probe:?}"
        );
    }

    // The first slice goes away entirely.
    api.delete_slice("kube-system", "traefik-x7k2p").unwrap();
    wait_metrics(
        &controller,
        "one traefik endpoint left",
        Duration::from_secs(10),
        |m| {
            metric(
                m,
                "edgelb_endpoints{service=\"kube-system/traefik\",port=\"websecure\"}",
            ) == Some(1.0)
        },
    )
    .await;
    wait_for_backends(&tb, &controller, &[0, 1, 2], LISTEN_PORT, &["b3"], "v1").await;
    for i in 0..3 {
        all_from(&tb, i, LISTEN_PORT, 3, "b3").await;
    }

    // The missing Service is created: it is served from then on.
    api.apply_service(service(
        "default",
        "late",
        "ClusterIP",
        None,
        json!([{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 9000}]),
        json!({}),
    ))
    .unwrap();
    api.apply_slice(slice(
        "default",
        "late-t8u9v",
        "late",
        &["http"],
        &[(b[0], Cond::Ready)],
    ))
    .unwrap();
    wait_for_backends(&tb, &controller, &[0, 1, 2], LATE_PORT, &["b1"], "v2").await;
    wait_metrics(
        &controller,
        "the late Service in sync",
        Duration::from_secs(10),
        |m| {
            metric(
                m,
                "edgelb_endpoints{service=\"default/late\",port=\"http\"}",
            ) == Some(1.0)
                && tb.edges.iter().all(|e| {
                    metric(m, &format!("edgelb_node_in_sync{{node=\"{}\"}}", e.name)) == Some(1.0)
                })
        },
    )
    .await;

    // Named mode writes no status and, without leader_election, touches no Lease.
    assert!(
        api.status_patches().is_empty(),
        "{:?}",
        api.status_patches()
    );
    assert!(api.objects("Lease").is_empty());
    assert!(
        !api.requests().iter().any(|r| r.path.contains("/leases")),
        "no leader election configured"
    );

    let term = Instant::now();
    let status = controller.terminate(Duration::from_secs(30));
    let stopped_in = term.elapsed();
    assert!(
        status.success(),
        "edgelb exited with {status}\nlog:\n{}",
        controller.log()
    );
    assert!(
        api.unhandled().is_empty(),
        "edgelb asked for what the fake API server does not serve: {:?}",
        api.unhandled()
    );
    eprintln!(
        "named_services…: first convergence {converged:?}, total {:?}, SIGTERM exit {stopped_in:?}",
        started.elapsed()
    );
}

/// A Lease as another replica writes it.
fn lease_held_by(holder: Option<&str>, renewed: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "edgelb-leader", "namespace": "edgelb"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 4,
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": renewed,
            "leaseTransitions": 3,
        },
    })
}

/// Leader election against another replica: a standby deploys nothing while the other holds
/// the Lease, takes over the moment it is released, and exits non-zero (to come back as a
/// standby) when another replica takes the Lease from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_released_lease_and_exits_when_it_loses_it() {
    let Some(tb) = Testbed::start_or_skip(
        "a_standby_takes_over_a_released_lease_and_exits_when_it_loses_it",
        TestbedConfig {
            edges: 1,
            backends: 1,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let b: Vec<&Backend> = tb.cluster.backends.iter().collect();
    let api = FakeApiServer::start().unwrap();
    api.apply_service(service(
        "shop",
        "web",
        "LoadBalancer",
        Some(CLASS),
        json!([{"name": "http", "protocol": "TCP", "port": LISTEN_PORT, "targetPort": "http"}]),
        json!({}),
    ))
    .unwrap();
    api.apply_slice(slice(
        "shop",
        "web-abcde",
        "web",
        &["http"],
        &[(b[0], Cond::Ready)],
    ))
    .unwrap();
    api.apply(lease_held_by(
        Some("edgelb-1"),
        "2026-01-01T00:00:00.000000Z",
    ))
    .unwrap();
    let dir = tb.dir.join("controller-kube");
    let config = write_config(
        &tb,
        &api,
        &dir,
        json!({"load_balancer": {}}),
        Some(json!({"lease_duration": "4s", "renew_deadline": "3s", "retry_period": "500ms"})),
    );
    let mut controller = start_controller(&dir, &config);

    let start = Instant::now();
    while controller.get("/healthz").await.0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "edgelb never served /healthz\nlog:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // While edgelb-1 keeps renewing, this replica is a ready standby that deploys nothing.
    for second in 1..=3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        api.apply(lease_held_by(
            Some("edgelb-1"),
            &format!("2026-01-01T00:00:0{second}.000000Z"),
        ))
        .unwrap();
        let (code, body) = controller.get("/readyz").await;
        assert!(
            code == 200 && body.contains("standby"),
            "{code} {body}\nlog:\n{}",
            controller.log()
        );
    }
    let (_, metrics) = controller.get("/metrics").await;
    assert_eq!(metric(&metrics, "edgelb_leader"), Some(0.0), "{metrics}");
    assert_eq!(
        tb.edges[0].live_config(),
        edgelb_tests::testbed::INITIAL_CONFIG,
        "a standby deploys nothing"
    );
    assert!(api.status_patches().is_empty() && api.events().is_empty());
    assert_eq!(
        api.lease("edgelb", "edgelb-leader").unwrap()["spec"]["holderIdentity"],
        "edgelb-1"
    );

    // edgelb-1 releases the Lease (as on its SIGTERM): this replica takes it and deploys.
    let released = Instant::now();
    let mut lease = lease_held_by(None, "2026-01-01T00:00:04.000000Z");
    lease["spec"]["leaseDurationSeconds"] = json!(1);
    api.apply(lease).unwrap();
    wait_for_backends(&tb, &controller, &[0], LISTEN_PORT, &["b1"], "v2").await;
    let took_over = released.elapsed();
    let lease = api.lease("edgelb", "edgelb-leader").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "edgelb-0", "{lease}");
    assert_eq!(lease["spec"]["leaseTransitions"], 3, "{lease}");
    wait_metrics(&controller, "leader", Duration::from_secs(5), |m| {
        metric(m, "edgelb_leader") == Some(1.0)
    })
    .await;
    let body = controller.wait_ready(Duration::from_secs(10)).await;
    assert!(body.contains("1/1 edges"), "{body}");

    // edgelb-1 takes the Lease back (here by force): this replica stops deploying and exits
    // non-zero so that, restarted, it waits as a standby. The edge keeps serving.
    api.apply(lease_held_by(
        Some("edgelb-1"),
        "2026-01-01T00:01:00.000000Z",
    ))
    .unwrap();
    // It exits by itself: its HTTP endpoint, closed last, refuses connections.
    let start = Instant::now();
    loop {
        let (code, body) = controller.get("/healthz").await;
        if code == 0 && body.contains("refused") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "edgelb still runs after losing the Lease: {code} {body}\nlog:\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = controller.terminate(Duration::from_secs(10)); // reaps it
    let log = controller.log();
    assert_eq!(status.code(), Some(1), "log:\n{log}");
    assert!(
        log.contains("lost the leader lease; stopped deploying")
            && log.contains("restarted process waits as a standby")
            && !log.contains("leader lease released"),
        "{log}"
    );
    assert_eq!(
        api.lease("edgelb", "edgelb-leader").unwrap()["spec"]["holderIdentity"],
        "edgelb-1",
        "a replica that lost the Lease does not release it"
    );
    assert_eq!(
        tb.client
            .probe(tb.edge_addr(0, LISTEN_PORT))
            .await
            .backend(),
        Some("b1")
    );
    assert!(api.unhandled().is_empty(), "{:?}", api.unhandled());
    eprintln!("standby…: took over {took_over:?} after the release");
}

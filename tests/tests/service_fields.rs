//! The Service fields edgelb honours beyond ports, on a real testbed edge with two client
//! namespaces at different addresses:
//! * `loadBalancerSourceRanges`: only clients inside the ranges are served; range changes
//!   (10,000 ranges included) go live through the runtime API with no reload, and the file on
//!   the edge says the same; a range added by hand is drift, taken out again without a reload;
//! * `sessionAffinity: ClientIP`: one client's connections reach one backend, while without it
//!   they spread;
//! * the Ansible deployer deploys the ranges too (with a reload: it always reloads);
//! * through `edgelb run` against the fake API server: an invalid CIDR is a Warning Event and
//!   the Service keeps its previous ranges.
//!
//! Needs root and the testbed packages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use edgelb_core::{
    Applied, Deployer, EdgeNode, Endpoint, IpNet, NodeConfig, PortSpec, ProxyProtocol, Renderer,
    ServiceKey, SessionAffinity, Snapshot,
};
use edgelb_haproxy::{EdgeHost, HaproxyRenderer, SshDeployer};
use edgelb_tests::conformance::{AnsibleUnderTest, DeployerUnderTest};
use edgelb_tests::controller::{Controller, free_port, wait_for_backends};
use edgelb_tests::fake_apiserver::FakeApiServer;
use edgelb_tests::testbed::scenario::{LISTEN_PORT, renderer};
use edgelb_tests::testbed::{Backend, ClientNs, Probe, Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;
use serde_json::{Value, json};

/// The stats socket of the testbed's edges (the renderer's default).
const STATS_SOCKET: &str = "/run/haproxy/admin.sock";

fn host_range(ip: Ipv4Addr) -> IpNet {
    IpNet::from(IpAddr::V4(ip))
}

/// `default/web` port `http` on `backends`, with the given fields.
fn snapshot(
    backends: &[Backend],
    ranges: Option<Vec<IpNet>>,
    affinity: Option<SessionAffinity>,
) -> Snapshot {
    let mut port = PortSpec::new(LISTEN_PORT, ProxyProtocol::V2);
    for b in backends {
        port.add_endpoint(Endpoint::ready(b.addr.ip(), b.addr.port()));
    }
    let key = ServiceKey::new("default", "web").unwrap();
    let mut snapshot = Snapshot::default();
    snapshot.insert_port(key.clone(), "http", port).unwrap();
    let spec = snapshot.services.get_mut(&key).unwrap();
    spec.source_ranges = ranges.map(|r| edgelb_core::normalize_source_ranges(r).unwrap());
    spec.session_affinity = affinity;
    snapshot
}

async fn deploy(
    deployer: &SshDeployer,
    renderer: &HaproxyRenderer,
    node: &EdgeNode,
    snapshot: &Snapshot,
) -> Applied {
    let config = renderer.render(snapshot, node).unwrap();
    let outcome = deployer
        .deploy(&[NodeConfig {
            node: node.clone(),
            config,
        }])
        .await;
    outcome[0].result.clone().unwrap()
}

/// Five connections from `client`: all served (each from a backend), or all refused.
async fn assert_served(client: &ClientNs, target: SocketAddr, served: bool, what: &str) {
    for i in 0..5 {
        let probe = client.probe(target).await;
        assert_eq!(
            matches!(probe, Probe::Ok { .. }),
            served,
            "{what}: connection {i} from {}: {probe:?}",
            client.netns
        );
    }
}

/// Waits (at most 15 s) until `client` is served through `target`.
async fn wait_served(client: &ClientNs, target: SocketAddr, what: &str) {
    let start = Instant::now();
    loop {
        let probe = client.probe(target).await;
        if matches!(probe, Probe::Ok { .. }) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: {} never served; last {probe:?}",
            client.netns
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The backends that answered `n` connections from `client`.
async fn backends_seen(client: &ClientNs, target: SocketAddr, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let probe = client.probe(target).await;
        seen.insert(
            probe
                .backend()
                .unwrap_or_else(|| panic!("{}: {probe:?}", client.netns))
                .to_owned(),
        );
    }
    seen
}

/// `n` host ranges in 172.16.0.0/12, from the `skip`-th on: filler no client is in.
fn filler(skip: u32, n: u32) -> Vec<IpNet> {
    (skip..skip + n)
        .map(|i| host_range(Ipv4Addr::from(0xac10_0000 + i)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_change_without_reload_and_affinity_sticks() {
    let Some(mut tb) = Testbed::start_or_skip(
        "source_ranges_change_without_reload_and_affinity_sticks",
        TestbedConfig {
            edges: 1,
            backends: 3,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let (other, other_ip) = tb.add_client("client2", 4).unwrap();
    let (client, client_ip) = (tb.client.clone(), tb.client_ip());
    let edge = &tb.edges[0];
    let node = edge.node();
    let tool = &tb.tools.tb_client;
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let renderer = renderer();
    let target = tb.edge_addr(0, LISTEN_PORT);
    let backends = tb.cluster.backends.clone();

    // Only the first client may connect.
    let only = |ip| Some(vec![host_range(ip)]);
    let applied = deploy(
        &deployer,
        &renderer,
        &node,
        &snapshot(&backends, only(client_ip), None),
    )
    .await;
    assert_eq!(applied, Applied::Reloaded);
    wait_served(&client, target, "first deploy").await;
    assert_served(
        &other,
        target,
        false,
        "the other client is outside the ranges",
    )
    .await;
    // Without affinity, one client's connections spread over the backends.
    let spread = backends_seen(&client, target, 30).await;
    assert!(spread.len() >= 2, "roundrobin spreads: {spread:?}");

    // Range changes go through the runtime API: no reload, the allowed client swaps at once.
    let before = edge.show_proc(tool);
    let applied = deploy(
        &deployer,
        &renderer,
        &node,
        &snapshot(&backends, only(other_ip), None),
    )
    .await;
    assert_eq!(applied, Applied::RuntimeUpdated);
    assert_served(&client, target, false, "after the swap").await;
    assert_served(&other, target, true, "after the swap").await;
    assert!(edge.live_config().contains(&format!(" {other_ip}/32")));
    // A range added by hand through the runtime API is drift: the resync's live digest
    // says so, and deploying the same config takes it out again, without a reload.
    let host = deployer.host(&node).unwrap();
    let id = edgelb_haproxy::source_acl_id(LISTEN_PORT, 0).unwrap();
    let answer = host
        .socket_command(STATS_SOCKET, &format!("add acl #{id} {client_ip}/32"))
        .await
        .unwrap();
    assert!(answer.trim().is_empty(), "{answer}");
    assert_served(&client, target, true, "opened by hand").await;
    let swapped = snapshot(&backends, only(other_ip), None);
    let digest = renderer.render(&swapped, &node).unwrap().digest;
    let live = deployer.live_digest(&node).await.unwrap();
    assert!(live.is_some() && live != Some(digest), "{live:?}");
    assert_eq!(
        deploy(&deployer, &renderer, &node, &swapped).await,
        Applied::RuntimeUpdated
    );
    assert_served(&client, target, false, "hand edit undone").await;
    assert_eq!(deployer.live_digest(&node).await, Ok(Some(digest)));
    assert_eq!(
        deploy(&deployer, &renderer, &node, &swapped).await,
        Applied::Unchanged
    );
    // An empty list admits nobody, also without a reload.
    let applied = deploy(
        &deployer,
        &renderer,
        &node,
        &snapshot(&backends, Some(vec![]), None),
    )
    .await;
    assert_eq!(applied, Applied::RuntimeUpdated);
    assert_served(&client, target, false, "nobody").await;
    assert_served(&other, target, false, "nobody").await;
    let after = edge.show_proc(tool);
    assert_eq!(
        after.reloads, before.reloads,
        "no reload: {before:?} {after:?}"
    );
    assert_eq!(after.workers, before.workers, "same worker");

    // 10,000 ranges: 200 ACL lines, so going there reloads (new lines)...
    let mut big = filler(0, 9_999);
    big.push(host_range(client_ip));
    let applied = deploy(
        &deployer,
        &renderer,
        &node,
        &snapshot(&backends, Some(big), None),
    )
    .await;
    assert_eq!(applied, Applied::Reloaded);
    wait_served(&client, target, "10,000 ranges").await;
    assert_served(&other, target, false, "10,000 ranges without it").await;
    // ...and a change within them does not, although ranges move between the lines.
    let before = edge.show_proc(tool);
    let mut changed = filler(1, 9_999);
    changed.push(host_range(other_ip));
    let t = Instant::now();
    let applied = deploy(
        &deployer,
        &renderer,
        &node,
        &snapshot(&backends, Some(changed), None),
    )
    .await;
    assert_eq!(applied, Applied::RuntimeUpdated);
    // A figure, not a limit: 200 lists replaced twice (union, then the new ranges).
    eprintln!(
        "10,000 source ranges changed through the runtime API in {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    assert_served(&client, target, false, "10,000 changed ranges").await;
    assert_served(&other, target, true, "10,000 changed ranges").await;
    let after = edge.show_proc(tool);
    assert_eq!(
        after.reloads, before.reloads,
        "no reload: {before:?} {after:?}"
    );
    // Every running list is what the file on the edge says (a reload would give the same).
    edgelb_haproxy::testing::verify_source_acls(&host, STATS_SOCKET, &edge.live_config())
        .await
        .unwrap();

    // ClientIP affinity (a new stick table: a reload): each client sticks to one backend.
    let affinity = Some(SessionAffinity::client_ip(600).unwrap());
    let applied = deploy(
        &deployer,
        &renderer,
        &node,
        &snapshot(&backends, None, affinity),
    )
    .await;
    assert_eq!(applied, Applied::Reloaded);
    assert!(
        edge.live_config()
            .contains("stick-table type ipv6 size 100k expire 600s")
    );
    wait_served(&client, target, "affinity").await;
    for c in [&client, &other] {
        let seen = backends_seen(c, target, 30).await;
        assert_eq!(seen.len(), 1, "{} sticks to one backend: {seen:?}", c.netns);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ansible_deployer_deploys_source_ranges_too() {
    let test = "the_ansible_deployer_deploys_source_ranges_too";
    let dut = AnsibleUnderTest::default();
    if !dut.available_or_skip(test) {
        return;
    }
    let Some(mut tb) = Testbed::start_or_skip(
        test,
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let (other, other_ip) = tb.add_client("client2", 4).unwrap();
    let (client, client_ip) = (tb.client.clone(), tb.client_ip());
    let deployer = dut.deployer(&tb);
    let renderer = renderer();
    let node = tb.edges[0].node();
    let target = tb.edge_addr(0, LISTEN_PORT);
    let backends = tb.cluster.backends.clone();
    for (allowed, refused, ip) in [(&client, &other, client_ip), (&other, &client, other_ip)] {
        let snapshot = snapshot(&backends, Some(vec![host_range(ip)]), None);
        let config = renderer.render(&snapshot, &node).unwrap();
        let outcome = deployer
            .deploy(&[NodeConfig {
                node: node.clone(),
                config,
            }])
            .await;
        assert_eq!(outcome[0].result, Ok(Applied::Reloaded), "{outcome:?}");
        wait_served(allowed, target, "ansible deploy").await;
        assert_served(refused, target, false, "ansible deploy").await;
    }
}

const CLASS: &str = "edgelb.io/haproxy";

/// shop/web of our class on port LISTEN_PORT, with `extra` merged into its spec.
fn web_service(extra: Value) -> Value {
    let mut spec = json!({
        "type": "LoadBalancer",
        "loadBalancerClass": CLASS,
        "ports": [{"name": "http", "protocol": "TCP", "port": LISTEN_PORT, "targetPort": "http", "nodePort": 30080}],
        "selector": {"app": "web"},
        "clusterIP": "10.43.0.20",
        "clusterIPs": ["10.43.0.20"],
        "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "annotations": {}},
        "spec": spec,
    })
}

/// The slice of shop/web with `backends` ready.
fn web_slice(backends: &[Backend]) -> Value {
    let endpoints: Vec<Value> = backends
        .iter()
        .map(|b| json!({
            "addresses": [b.addr.ip().to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": format!("web-{}", b.name)},
        }))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-x1y2z",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "protocol": "TCP", "port": i32::from(edgelb_tests::testbed::BACKEND_PORT)}],
    })
}

/// `edgelb run`'s config for the testbed's edges and the fake API server, in `dir`.
fn controller_config(tb: &Testbed, api: &FakeApiServer, dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let known: Vec<String> = tb.edges.iter().map(|e| e.known_hosts_line()).collect();
    std::fs::write(dir.join("known_hosts"), known.join("\n") + "\n").unwrap();
    api.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
    let config = json!({
        "source": {"kubernetes": {"load_balancer": {"class": CLASS}}},
        "edges": serde_json::to_value(tb.nodes()).unwrap(),
        "deployer": {"ssh": {"key": tb.key.private, "known_hosts": "known_hosts", "connect_timeout": "2s", "step_timeout": "10s"}},
        "haproxy": {"hard_stop_after": "10s"},
        "pipeline": {"debounce": "50ms", "resync": "3s", "backoff_initial": "300ms", "backoff_max": "2s"},
    });
    let path = dir.join("edgelb.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cidr_warns_and_keeps_the_previous_ranges() {
    let Some(mut tb) = Testbed::start_or_skip(
        "an_invalid_cidr_warns_and_keeps_the_previous_ranges",
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let (other, other_ip) = tb.add_client("client2", 4).unwrap();
    let client_ip = tb.client_ip();
    let target = tb.edge_addr(0, LISTEN_PORT);
    let api = FakeApiServer::start().unwrap();
    api.apply_service(web_service(json!({
        "loadBalancerSourceRanges": [format!("{client_ip}/32")],
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
    })))
    .unwrap();
    api.apply_slice(web_slice(&tb.cluster.backends)).unwrap();

    let dir = tb.dir.join("service-fields-kube");
    let config = controller_config(&tb, &api, &dir);
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let kubeconfig = dir.join("kubeconfig");
    let mut controller = Controller::start(
        &config,
        http,
        &dir.join("edgelb.log"),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("HTTPS_PROXY", ""),
            ("https_proxy", ""),
        ],
    );
    wait_for_backends(&tb, &controller, &[0], LISTEN_PORT, &["b1", "b2"], "v2").await;
    assert_served(&other, target, false, "outside the Service's ranges").await;
    let live = tb.edges[0].live_config();
    assert!(
        live.contains("stick-table type ipv6 size 100k expire 600s"),
        "{live}"
    );

    // An invalid CIDR: a Warning Event on the Service, and the previous ranges stay.
    api.apply_service(web_service(json!({
        "loadBalancerSourceRanges": [format!("{other_ip}/32"), "10.0.0.0/33"],
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
    })))
    .unwrap();
    let start = Instant::now();
    let warning = loop {
        let found = api
            .events()
            .into_iter()
            .find(|e| e["reason"] == "InvalidSourceRanges");
        if let Some(e) = found {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no InvalidSourceRanges Event; events {:?}\nedgelb log:\n{}",
            api.events(),
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(warning["type"], "Warning", "{warning}");
    assert_eq!(warning["regarding"]["name"], "web", "{warning}");
    let note = warning["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("\"10.0.0.0/33\"") && note.contains("keeps its previous 1 valid range"),
        "{note}"
    );
    // Give a wrong deploy time to happen, then check nothing changed on the edge.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_served(&tb.client, target, true, "previous ranges kept").await;
    assert_served(&other, target, false, "previous ranges kept").await;
    assert!(
        tb.edges[0]
            .live_config()
            .contains(&format!(" {client_ip}/32"))
    );

    // Fixed: the new ranges go live.
    api.apply_service(web_service(json!({
        "loadBalancerSourceRanges": [format!("{other_ip}/32")],
    })))
    .unwrap();
    wait_served(&other, target, "fixed ranges").await;
    assert_served(&tb.client, target, false, "fixed ranges").await;
    controller.terminate(Duration::from_secs(10));
}

//! Hitless endpoint changes on a real testbed edge: endpoint-only changes go through the
//! runtime API with no reload, long-lived connections held open through 50 changes survive,
//! short connections during the changes all succeed, and a change that needs more slots
//! reloads without dropping short connections; servers changed by hand through the runtime
//! API are seen as drift and put back without a reload. Needs root and the testbed packages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly on a failed step

use std::time::{Duration, Instant};

use edgelb_core::{
    Applied, Deployer, EdgeNode, Endpoint, NodeConfig, PortSpec, ProxyProtocol, Renderer,
    ServiceKey, Snapshot,
};
use edgelb_haproxy::testing::{server_slots, verify};
use edgelb_haproxy::{HaproxyRenderer, RuntimeApi, RuntimeCommand, ServerAdminState, SshDeployer};
use edgelb_tests::testbed::scenario::{LISTEN_PORT, renderer};
use edgelb_tests::testbed::{Backend, Held, Probe, Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;
use tokio::net::TcpStream;

/// `default/web` port `http` with `ready` and `draining` endpoints.
fn snapshot(ready: &[&Backend], draining: &[&Backend]) -> Snapshot {
    let mut port = PortSpec::new(LISTEN_PORT, ProxyProtocol::V2);
    for b in ready {
        port.add_endpoint(Endpoint::ready(b.addr.ip(), b.addr.port()));
    }
    for b in draining {
        port.add_endpoint(Endpoint::draining(b.addr.ip(), b.addr.port()));
    }
    let mut snapshot = Snapshot::default();
    snapshot
        .insert_port(ServiceKey::new("default", "web").unwrap(), "http", port)
        .unwrap();
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

/// How long a held connection's echo may take.
const PING_LIMIT: Duration = Duration::from_secs(3);

fn failures(results: &[Probe]) -> Vec<&Probe> {
    results
        .iter()
        .filter(|p| !matches!(p, Probe::Ok { .. }))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_are_hitless_and_new_slots_reload_safely() {
    let started = Instant::now();
    let Some(tb) = Testbed::start_or_skip(
        "endpoint_changes_are_hitless_and_new_slots_reload_safely",
        TestbedConfig {
            edges: 1,
            backends: 5,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let node = edge.node();
    let b: Vec<&Backend> = tb.cluster.backends.iter().collect();
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let renderer = renderer();
    let target = tb.edge_addr(0, LISTEN_PORT);
    let tool = &tb.tools.tb_client;

    // b1 alone; it keeps its slot for the whole test and carries the held connections.
    assert_eq!(
        deploy(&deployer, &renderer, &node, &snapshot(&[b[0]], &[])).await,
        Applied::Reloaded
    );
    // The edge started HAProxy as root; the deployed config drops its workers' privileges.
    edge.assert_workers_not_root(tool, "after the first deploy");
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < 20 {
        assert!(Instant::now() < deadline, "held connections never opened");
        match TcpStream::connect(target).await {
            Ok(_) if held.is_empty() => {
                // The first real connection proves the worker listens; open them all now.
                for _ in 0..20 {
                    let h = Held::open(target).await;
                    assert_eq!(h.proxy, "v2");
                    held.push(h);
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(held.iter().all(|h| h.backend == b[0].name));

    let before = edge.show_proc(tool);
    let load = tb.client.start_load(target, 100_000, 10);

    // 50 endpoint-only changes: b2..b4 come and go, sometimes draining; b1 stays.
    let others = [b[1], b[2], b[3]];
    let mut runtime_ms = Vec::new();
    for i in 0..50 {
        let mask = i % 7 + 1;
        let chosen: Vec<&Backend> = (0..3)
            .filter(|k| mask & (1 << k) != 0)
            .map(|k| others[k])
            .collect();
        let (draining, ready): (Vec<&Backend>, Vec<&Backend>) = if i % 3 == 0 {
            (chosen[..1].to_vec(), chosen[1..].to_vec())
        } else {
            (Vec::new(), chosen)
        };
        let mut ready = ready;
        ready.push(b[0]);
        let t = Instant::now();
        let applied = deploy(&deployer, &renderer, &node, &snapshot(&ready, &draining)).await;
        runtime_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(applied, Applied::RuntimeUpdated, "change {i}");
        if i % 10 == 9 {
            for (n, h) in held.iter_mut().enumerate() {
                h.ping(i * 100 + n, PING_LIMIT)
                    .await
                    .unwrap_or_else(|e| panic!("held connection {n} cut by change {i}: {e}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Enough load whatever the machine's speed: wait for it rather than count what fitted.
    load.wait_for(101, Duration::from_secs(30)).await;
    let results = load.stop().await;
    let after = edge.show_proc(tool);
    assert!(
        failures(&results).is_empty(),
        "{} of {} short connections failed, e.g. {:?}",
        failures(&results).len(),
        results.len(),
        failures(&results).first()
    );
    assert_eq!(
        after.reloads, before.reloads,
        "no reload: {before:?} {after:?}"
    );
    assert_eq!(after.workers, before.workers, "same worker");
    assert!(after.old_workers.is_empty(), "no old worker: {after:?}");
    edge.assert_workers_not_root(tool, "after 50 runtime updates");
    for (n, h) in held.iter_mut().enumerate() {
        h.ping(9_000 + n, PING_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("held connection {n} did not survive: {e}"));
    }
    runtime_ms.sort_by(f64::total_cmp);
    eprintln!(
        "50 runtime API changes: median {:.1} ms, max {:.1} ms",
        runtime_ms[25], runtime_ms[49]
    );

    // The running servers are what the file says (a reload would give the same state).
    let host = deployer.host(&node).unwrap();
    let api = RuntimeApi::new(&host, "/run/haproxy/admin.sock").unwrap();
    verify(&api, &server_slots(&edge.live_config()))
        .await
        .unwrap();
    drop(held);

    // Five endpoints need 5 + 4 spare slots: the table grows to 16, a reload.
    let load = tb.client.start_load(target, 100_000, 10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = edge.show_proc(tool);
    assert_eq!(
        deploy(&deployer, &renderer, &node, &snapshot(&b, &[])).await,
        Applied::Reloaded
    );
    assert!(edge.live_config().contains("server s016 "));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = load.stop().await;
    let after = edge.show_proc(tool);
    assert_eq!(after.reloads, before.reloads + 1);
    edge.assert_workers_not_root(tool, "after the growing reload");
    assert!(
        failures(&results).is_empty(),
        "{} of {} short connections failed across the growing reload, e.g. {:?}",
        failures(&results).len(),
        results.len(),
        failures(&results).first()
    );
    verify(&api, &server_slots(&edge.live_config()))
        .await
        .unwrap();
    // And the next endpoint-only change goes through the runtime API again.
    assert_eq!(
        deploy(&deployer, &renderer, &node, &snapshot(&b[..4], &[b[4]])).await,
        Applied::RuntimeUpdated
    );
    eprintln!("hitless scenario done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_changed_by_hand_are_put_back_without_a_reload() {
    let Some(tb) = Testbed::start_or_skip(
        "servers_changed_by_hand_are_put_back_without_a_reload",
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let node = edge.node();
    let b: Vec<&Backend> = tb.cluster.backends.iter().collect();
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let renderer = renderer();
    let tool = &tb.tools.tb_client;
    let config = renderer
        .render(&snapshot(&[b[0], b[1]], &[]), &node)
        .unwrap();
    let batch = [NodeConfig {
        node: node.clone(),
        config: config.clone(),
    }];
    let deploy_it = || deployer.deploy(&batch);
    assert_eq!(deploy_it().await[0].result, Ok(Applied::Reloaded));
    let file = edge.live_config();
    let servers = server_slots(&file);
    let reloads = edge.show_proc(tool).reloads;
    let host = deployer.host(&node).unwrap();
    let api = RuntimeApi::new(&host, "/run/haproxy/admin.sock").unwrap();
    // Right after a reload the old worker may still answer the stats socket for a moment.
    let settled = Instant::now();
    while verify(&api, &servers).await.is_err() {
        assert!(
            settled.elapsed() < Duration::from_secs(5),
            "the new worker never answered the stats socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deployer.live_digest(&node).await, Ok(Some(config.digest)));

    // By hand, through the runtime API: b1's server to maintenance, b2's weight to 7.
    api.batch(&[
        RuntimeCommand::SetServerState {
            backend: servers[0].backend.to_string(),
            server: servers[0].server.clone(),
            state: ServerAdminState::Maint,
        },
        RuntimeCommand::SetServerWeight {
            backend: servers[1].backend.to_string(),
            server: servers[1].server.clone(),
            weight: 7,
        },
    ])
    .await
    .unwrap();
    let drift = verify(&api, &servers).await.unwrap_err();
    assert!(drift.to_string().contains(&servers[0].server), "{drift}");

    // The resync's view: the live digest no longer matches the rendered config.
    let live = deployer.live_digest(&node).await.unwrap();
    assert!(live.is_some() && live != Some(config.digest), "{live:?}");

    // Deploying the same config puts the servers back through the runtime API: no reload,
    // the file untouched.
    assert_eq!(deploy_it().await[0].result, Ok(Applied::RuntimeUpdated));
    verify(&api, &servers).await.unwrap();
    assert_eq!(edge.live_config(), file);
    assert_eq!(edge.show_proc(tool).reloads, reloads);
    assert_eq!(deployer.live_digest(&node).await, Ok(Some(config.digest)));
    assert_eq!(deploy_it().await[0].result, Ok(Applied::Unchanged));
}

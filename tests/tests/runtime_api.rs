//! The runtime-API client over SSH stream-local forwarding, against real HAProxy on a
//! testbed edge: read the master and the worker, move a spare server slot to a new backend
//! and take the old one out, without a reload. Needs root and the testbed packages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::collections::BTreeSet;

use edgelb_core::{Applied, Deployer, NodeConfig, Renderer};
use edgelb_haproxy::{RuntimeApi, RuntimeCommand, ServerAdminState, ServerOperState, SshDeployer};
use edgelb_tests::testbed::scenario::{LISTEN_PORT, renderer, web_snapshot};
use edgelb_tests::testbed::{Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;

const BACKEND: &str = "be_default_web_http";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_api_over_ssh_moves_traffic_without_a_reload() {
    let Some(tb) = Testbed::start_or_skip(
        "runtime_api_over_ssh_moves_traffic_without_a_reload",
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let (b1, b2) = (&tb.cluster.backends[0], &tb.cluster.backends[1]);
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let config = renderer()
        .render(&web_snapshot(&[b1]), &edge.node())
        .unwrap();
    let outcome = deployer
        .deploy(&[NodeConfig {
            node: edge.node(),
            config,
        }])
        .await;
    assert_eq!(outcome[0].result, Ok(Applied::Reloaded));
    let host = deployer.host(&edge.node()).unwrap();

    // The master CLI and the worker's stats socket, both over the one SSH session.
    let master = RuntimeApi::new(&host, "/run/haproxy/master.sock").unwrap();
    let procs = master.show_proc().await.unwrap();
    assert_eq!(procs.workers.len(), 1, "{procs:?}");
    let api = RuntimeApi::new(&host, "/run/haproxy/admin.sock").unwrap();
    let info = api.show_info().await.unwrap();
    assert_eq!(
        info["Pid"],
        procs.workers[0].0.to_string(),
        "show info answers from the worker"
    );

    let servers = api.show_servers_state(Some(BACKEND)).await.unwrap();
    let live = servers
        .iter()
        .find(|s| s.address == b1.addr.ip().to_string())
        .expect("b1's slot");
    assert_eq!(live.port, Some(b1.addr.port()));
    assert_eq!(live.admin_state(), ServerAdminState::Ready);
    assert_eq!(live.oper_state, ServerOperState::Running);
    let spare = servers
        .iter()
        .find(|s| s.admin_state() == ServerAdminState::Maint)
        .expect("a spare slot");

    // One request: the spare slot becomes b2, b1's slot is drained.
    api.batch(&[
        RuntimeCommand::SetServerAddr {
            backend: BACKEND.into(),
            server: spare.server.clone(),
            addr: b2.addr.ip(),
            port: b2.addr.port(),
        },
        RuntimeCommand::SetServerState {
            backend: BACKEND.into(),
            server: spare.server.clone(),
            state: ServerAdminState::Ready,
        },
        RuntimeCommand::SetServerState {
            backend: BACKEND.into(),
            server: live.server.clone(),
            state: ServerAdminState::Drain,
        },
    ])
    .await
    .unwrap();
    let after = api.show_servers_state(Some(BACKEND)).await.unwrap();
    let moved = after.iter().find(|s| s.server == spare.server).unwrap();
    assert_eq!(
        (moved.address.as_str(), moved.port),
        (b2.addr.ip().to_string().as_str(), Some(b2.addr.port()))
    );
    assert_eq!(moved.admin_state(), ServerAdminState::Ready);
    let drained = after.iter().find(|s| s.server == live.server).unwrap();
    assert_eq!(drained.admin_state(), ServerAdminState::Drain);

    let mut answered = BTreeSet::new();
    for _ in 0..6 {
        let probe = tb.client.probe(tb.edge_addr(0, LISTEN_PORT)).await;
        answered.insert(probe.backend().map(str::to_owned));
    }
    assert_eq!(answered, BTreeSet::from([Some("b2".to_owned())]));
    // No reload happened: the runtime API changed the running worker.
    assert_eq!(master.show_proc().await.unwrap().reloads, procs.reloads);

    // Bad names never reach HAProxy; a bad server name comes back as HAProxy's error.
    let err = api
        .set_server_state(BACKEND, "s1; shutdown frontend x", ServerAdminState::Maint)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds ';'"), "{err}");
    let err = api
        .set_server_state(BACKEND, "nope", ServerAdminState::Maint)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No such server"), "{err}");
}

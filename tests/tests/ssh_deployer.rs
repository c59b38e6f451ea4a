//! End-to-end tests of what only the native SSH deployer does, on the network-namespace
//! testbed (real sshd, real HAProxy): an RSA client key, a session that dies under it, a hung
//! edge, files of every size through both transfers. The scenarios every deployer shares
//! (real client IP through 3 edges, changes under load, a rejected config, an edge down, host
//! and client keys, a failed reload) are written once in `edgelb_tests::conformance` and run
//! for this deployer by `tests/conformance.rs`.
//! They need root and the packages named in `edgelb_tests::testbed` (skipped with a message
//! without them, failed when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns too

use std::time::Duration;

use edgelb_core::{Deployer, Renderer};
use edgelb_haproxy::SshDeployer;
use edgelb_tests::testbed::scenario::{LISTEN_PORT, renderer, web_snapshot};
use edgelb_tests::testbed::{Testbed, TestbedConfig};
use edgelb_tests::testbed_tools;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGELB_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// One node through the deployer directly.
async fn deploy(
    deployer: &SshDeployer,
    node: edgelb_core::EdgeNode,
    config: edgelb_core::RenderedConfig,
) -> Result<edgelb_core::Applied, edgelb_core::DeployError> {
    let mut outcomes = deployer
        .deploy(&[edgelb_core::NodeConfig { node, config }])
        .await;
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0).result
}

/// A deploy that went live: reloaded, or for an endpoint-only change applied through the
/// runtime API without a reload.
fn assert_live(result: Result<edgelb_core::Applied, edgelb_core::DeployError>) {
    assert!(
        matches!(
            result,
            Ok(edgelb_core::Applied::Reloaded | edgelb_core::Applied::RuntimeUpdated)
        ),
        "{result:?}"
    );
}

/// The files a failed deploy must not leave behind or change.
fn files(edge: &edgelb_tests::testbed::Edge) -> (String, bool, bool) {
    (
        edge.live_config(),
        edge.haproxy_file("haproxy.cfg.edgelb-new").exists(),
        edge.haproxy_file("haproxy.cfg.edgelb-prev").exists(),
    )
}

/// A changed host key, an unknown host and a wrong client key are refused with clear
/// errors, and nothing is written; an authorized RSA key works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_or_client_key_is_refused() {
    use edgelb_haproxy::ssh::{ClientKey, KnownHosts, SshCredentials};
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "wrong_host_key_or_client_key_is_refused",
        TestbedConfig {
            edges: 2,
            backends: 1,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let (edge1, edge2) = (&tb.edges[0], &tb.edges[1]);
    let config = renderer()
        .render(&web_snapshot(&[&tb.cluster.backends[0]]), &edge1.node())
        .unwrap();
    let before = files(edge1);
    let key = ClientKey::from_file(&tb.key.private, None).unwrap();
    let with_credentials = |credentials: SshCredentials| {
        let mut cfg = tb.deployer_config();
        cfg.default_credentials = Some(credentials);
        SshDeployer::new(cfg).unwrap()
    };

    // edge1's address pinned to edge2's key: the key edge1 presents is refused.
    let swapped = KnownHosts::parse(&format!("{} {}\n", edge1.ip, edge2.host_key)).unwrap();
    let err = deploy(
        &with_credentials(SshCredentials::new(key.clone(), swapped)),
        edge1.node(),
        config.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        edgelb_core::DeployError::HostKeyMismatch {
            node: "edge1".into(),
            fingerprint: edge1.host_key_fingerprint(),
        }
    );
    assert!(err.to_string().contains("treat this as an attack"), "{err}");

    // Nothing pinned for edge1 at all: no trust on first use.
    let others = KnownHosts::parse(&format!("{}\n", edge2.known_hosts_line())).unwrap();
    let err = deploy(
        &with_credentials(SshCredentials::new(key.clone(), others)),
        edge1.node(),
        config.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "host-key-unknown", "{err}");
    let text = err.to_string();
    assert!(text.contains(&edge1.host_key_fingerprint()), "{err}");
    assert!(
        text.contains(&format!("ssh-keyscan -p 22 -t ed25519 {}", edge1.ip))
            && !text.contains("attack"),
        "{err}"
    );

    // A key edge1 does not authorize.
    let stranger = ClientKey::from_file(&tb.stranger_key.private, None).unwrap();
    let err = deploy(
        &with_credentials(SshCredentials::new(stranger, tb.known_hosts())),
        edge1.node(),
        config.clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        edgelb_core::DeployError::Auth {
            node: "edge1".into(),
            user: "root".into(),
        }
    );
    assert_eq!(files(edge1), before, "a refused deploy wrote files");

    // The authorized RSA key logs in (rsa-sha2 signature) and deploys.
    let rsa = ClientKey::from_file(&tb.rsa_key.private, None).unwrap();
    assert_eq!(
        deploy(
            &with_credentials(SshCredentials::new(rsa, tb.known_hosts())),
            edge1.node(),
            config.clone(),
        )
        .await,
        Ok(edgelb_core::Applied::Reloaded)
    );
    assert_eq!(edge1.live_config(), config.text);
}

/// A session that died under the deployer (its sshd process killed) is replaced
/// transparently: the next deploy succeeds without an error, over a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_session_is_replaced_transparently() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "dead_session_is_replaced_transparently",
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let deployer = SshDeployer::new(tb.deployer_config()).unwrap();
    let render = |b: usize| {
        renderer()
            .render(&web_snapshot(&[&tb.cluster.backends[b]]), &edge.node())
            .unwrap()
    };
    assert_eq!(
        deploy(&deployer, edge.node(), render(0)).await,
        Ok(edgelb_core::Applied::Reloaded)
    );
    let host = deployer.host(&edge.node()).unwrap();
    assert!(host.is_connected().await);

    edge.kill_sessions();
    // Right away, before the client may have noticed, and again once it surely has.
    assert_live(deploy(&deployer, edge.node(), render(1)).await);
    edge.kill_sessions();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!host.is_connected().await, "the dead session is noticed");
    assert_live(deploy(&deployer, edge.node(), render(0)).await);
    assert!(host.is_connected().await);
    let probe = tb.client.probe(tb.edge_addr(0, LISTEN_PORT)).await;
    assert_eq!(probe.backend(), Some("b1"), "{probe:?}");

    // A session lost in the middle of a command is a connection failure, never the
    // command's own failure (a lost `haproxy -c` must not read as a rejected config).
    use edgelb_haproxy::EdgeHost;
    let running = tokio::spawn({
        let host = host.clone();
        async move { host.exec(&["sleep".to_owned(), "5".to_owned()]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    edge.kill_sessions();
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), "connect", "{err}");
    assert!(
        err.to_string().contains("was lost while running sleep"),
        "{err}"
    );
    assert_live(deploy(&deployer, edge.node(), render(1)).await);
}

/// A hung edge (sshd frozen) fails with a timeout naming the step, within the configured
/// time, and works again once it thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_edge_times_out() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "hung_edge_times_out",
        TestbedConfig {
            edges: 1,
            backends: 2,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    let edge = &tb.edges[0];
    let mut cfg = tb.deployer_config();
    cfg.options.connect_timeout = Duration::from_secs(1);
    cfg.options.step_timeout = Duration::from_secs(1);
    let deployer = SshDeployer::new(cfg).unwrap();
    let render = |b: usize| {
        renderer()
            .render(&web_snapshot(&[&tb.cluster.backends[b]]), &edge.node())
            .unwrap()
    };
    assert_eq!(
        deploy(&deployer, edge.node(), render(0)).await,
        Ok(edgelb_core::Applied::Reloaded)
    );

    // The open session hangs: the first step times out.
    edge.freeze_sshd(false, true);
    let started = std::time::Instant::now();
    let err = deploy(&deployer, edge.node(), render(1)).await.unwrap_err();
    edge.freeze_sshd(false, false);
    let edgelb_core::DeployError::Timeout { step, seconds, .. } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!(*seconds, 1);
    assert!(step.contains("/etc/haproxy/haproxy.cfg"), "{err}");
    // Loose: only tells the 1 s step timeout from a session that hung for good.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // The same over exec (no SFTP): opening the command's channel times out.
    let mut cfg = tb.deployer_config();
    cfg.options.connect_timeout = Duration::from_secs(1);
    cfg.options.step_timeout = Duration::from_secs(1);
    cfg.options.file_transfer = edgelb_haproxy::ssh::FileTransfer::Exec;
    let exec_deployer = SshDeployer::new(cfg).unwrap();
    exec_deployer.connect_all(&[edge.node()]).await[0]
        .1
        .clone()
        .unwrap();
    edge.freeze_sshd(false, true);
    let err = deploy(&exec_deployer, edge.node(), render(1))
        .await
        .unwrap_err();
    edge.freeze_sshd(false, false);
    assert_eq!(err.kind(), "timeout", "{err}");

    // sshd itself hangs: connecting times out (the timed-out session was dropped).
    edge.freeze_sshd(true, true);
    let err = deploy(&deployer, edge.node(), render(1)).await.unwrap_err();
    edge.freeze_sshd(true, false);
    let edgelb_core::DeployError::Timeout { step, .. } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert!(step.contains("connecting"), "{err}");
    assert!(err.to_string().contains("timed out after 1s"), "{err}");

    // Thawed: the next deploy reconnects and goes through.
    assert_live(deploy(&deployer, edge.node(), render(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_every_size_survive_the_round_trip_over_sftp_and_exec() {
    init_logs();
    let Some(tb) = Testbed::start_or_skip(
        "files_of_every_size_survive_the_round_trip_over_sftp_and_exec",
        TestbedConfig {
            edges: 1,
            backends: 1,
        },
        testbed_tools!(),
    ) else {
        return;
    };
    use edgelb_haproxy::EdgeHost;
    let edge = &tb.edges[0];
    // Around the 32 KiB transfer chunk, and a config of 10,000 endpoints' size.
    let sizes = [
        0,
        1,
        32 * 1024 - 1,
        32 * 1024,
        32 * 1024 + 1,
        64 * 1024,
        1_000_003,
    ];
    for transfer in [
        edgelb_haproxy::ssh::FileTransfer::Sftp,
        edgelb_haproxy::ssh::FileTransfer::Exec,
    ] {
        let mut cfg = tb.deployer_config();
        cfg.options.file_transfer = transfer;
        let deployer = SshDeployer::new(cfg).unwrap();
        let host = deployer.host(&edge.node()).unwrap();
        for size in sizes {
            let contents: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let path = format!("/etc/haproxy/roundtrip-{size}");
            host.write_file(&path, &contents).await.unwrap();
            let on_edge = std::fs::read(edge.haproxy_file(&format!("roundtrip-{size}"))).unwrap();
            assert!(on_edge == contents, "{transfer:?}: {size} bytes written");
            let back = host.read_file(&path).await.unwrap().unwrap();
            assert!(back == contents, "{transfer:?}: {size} bytes read back");
            host.remove_file(&path).await.unwrap();
        }
        assert_eq!(host.read_file("/etc/haproxy/roundtrip-0").await, Ok(None));
    }
}

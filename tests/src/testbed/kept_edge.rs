//! Changes to one testbed edge through an [`SshDeployer`] that keeps its session, and the
//! check that the edge runs exactly what was deployed: the tests of the deploy that skips
//! reading the live file (`kept_runtime_api`, `stage_ahead`) share them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgelb_core::{Applied, DeployError, Deployer, EdgeNode, NodeConfig, Renderer};
use edgelb_haproxy::testing::{server_slots, verify};
use edgelb_haproxy::{HaproxyRenderer, RuntimeApi, SshDeployer};

use super::scenario::{LISTEN_PORT, web_snapshot_of};
use super::{Edge, Testbed};

/// Deploys the web service with endpoints `set` to `node`: the outcome and the config text.
pub async fn deploy_set(
    deployer: &SshDeployer,
    renderer: &HaproxyRenderer,
    node: &EdgeNode,
    set: &[SocketAddr],
) -> (Result<Applied, DeployError>, String) {
    let config = renderer
        .render(&web_snapshot_of(LISTEN_PORT, set), node)
        .unwrap();
    let text = config.text.clone();
    let batch = [NodeConfig {
        node: node.clone(),
        config,
    }];
    (deployer.deploy(&batch).await.remove(0).result, text)
}

/// The edge runs `text`: the live file is it, and a fresh connection (another deployer's
/// session, no kept channel) finds the running servers as it says (within 5 s).
pub async fn assert_edge_runs(tb: &Testbed, edge: &Edge, text: &str) {
    assert_eq!(
        edge.live_config(),
        text,
        "the live file is the deployed config"
    );
    let other = SshDeployer::new(tb.deployer_config()).unwrap();
    let host = other.host(&edge.node()).unwrap();
    let api = RuntimeApi::new(&host, "/run/haproxy/admin.sock").unwrap();
    let slots = server_slots(text);
    let started = Instant::now();
    loop {
        match verify(&api, &slots).await {
            Ok(()) => return,
            Err(e) if started.elapsed() > Duration::from_secs(5) => {
                panic!("the running servers differ from the deployed config: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

//! Edge health on the testbed: the real pipeline with the native SSH deployer as its health
//! probe; one edge's HAProxy hangs, its sshd stops, its link is cut, each in turn and then
//! mended, while a load loop runs through another edge. Measures how long each failure takes
//! to show as `unhealthy` and each recovery as `healthy`. Shared by the `edge_health` tests
//! (which assert) and the `edge_failover` bench (which repeats it and prints medians).

use std::sync::Arc;
use std::time::Duration;

use edgelb_core::{EdgeHealth, HealthConfig, PipelineConfig, PipelineStatus};
use edgelb_haproxy::SshDeployer;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::blast_radius::Running;
use crate::testbed::scenario::{LISTEN_PORT, fast_pipeline, web_snapshot};
use crate::testbed::{Edge, Probe, Testbed};

/// The probe settings of these scenarios: every 500 ms, 1 s timeout, fall 2, rise 2.
pub fn quick_health() -> HealthConfig {
    HealthConfig {
        enabled: true,
        interval: Duration::from_millis(500),
        timeout: Duration::from_secs(1),
        fall: 2,
        rise: 2,
    }
}

/// A failure an edge goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HAProxy (master and workers) frozen.
    HaproxyHung,
    /// sshd stopped (HAProxy keeps serving: it is healthy for clients, but edgelb cannot
    /// know, so it is not published as such).
    SshdDown,
    /// The link cut (every packet dropped).
    LinkCut,
}

impl Fault {
    /// Every fault, in the order the scenario runs them.
    pub const ALL: [Self; 3] = [Self::HaproxyHung, Self::SshdDown, Self::LinkCut];

    fn apply(self, edge: &mut Edge) {
        match self {
            Self::HaproxyHung => edge.freeze_haproxy(true),
            Self::SshdDown => edge.stop_sshd(),
            Self::LinkCut => edge.set_packet_loss(100).expect("nft works in the edge"),
        }
    }

    fn mend(self, edge: &mut Edge) {
        match self {
            Self::HaproxyHung => edge.freeze_haproxy(false),
            Self::SshdDown => edge.start_sshd().expect("sshd starts again"),
            Self::LinkCut => edge.set_packet_loss(0).expect("nft works in the edge"),
        }
    }
}

/// One fault's timings.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The fault.
    pub fault: Fault,
    /// From the fault to the edge's status saying unhealthy (with the reason it gave).
    pub detected: Duration,
    /// Why it was found unhealthy.
    pub reason: String,
    /// From the mend to the status saying healthy again.
    pub recovered: Duration,
}

/// What [`run`] saw.
#[derive(Debug)]
pub struct Failover {
    /// One trial per fault and round.
    pub trials: Vec<Trial>,
    /// Connections through the healthy edge meanwhile, and those that failed.
    pub connections: usize,
    /// The failed ones.
    pub failed: Vec<Probe>,
    /// Whether the healthy edge stayed healthy all along.
    pub other_stayed_healthy: bool,
}

async fn wait_health(
    status: &mut watch::Receiver<PipelineStatus>,
    node: &str,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&EdgeHealth) -> bool,
) -> EdgeHealth {
    let waited = tokio::time::timeout(
        timeout,
        status.wait_for(|s| s.nodes.get(node).is_some_and(|n| cond(&n.health))),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|s| s.nodes[node].health.clone());
    waited.unwrap_or_else(|| {
        panic!(
            "timed out after {timeout:?} waiting for {node} to be {what}: {:#?}",
            status.borrow().nodes.get(node)
        )
    })
}

/// On a testbed of 2 edges: `rounds` times each [`Fault`] on the second edge, with a load
/// loop through the first.
pub async fn run(tb: &mut Testbed, rounds: usize) -> Failover {
    let config = PipelineConfig {
        health: quick_health(),
        ..fast_pipeline()
    };
    let deployer = Arc::new(SshDeployer::new(tb.deployer_config()).expect("deployer config"));
    let mut p = Running::start_with_probe(tb, config, deployer);
    p.tx.send(web_snapshot(&[&tb.cluster.backends[0]]))
        .expect("pipeline runs");
    let names: Vec<String> = tb.edges.iter().map(|e| e.name.clone()).collect();
    p.wait(
        "every edge live and healthy",
        Duration::from_secs(30),
        |s| s.nodes_in_sync() == names.len() && s.nodes.values().all(|n| n.health.is_healthy()),
    )
    .await;
    let steady = tb.edges[0].name.clone();
    let target = names[1].clone();
    let transitions_before = p.status.borrow().nodes[&steady].health_transitions;
    let load = tb.client.start_load(
        tb.edge_addr(0, LISTEN_PORT),
        u32::try_from(rounds * 600).unwrap_or(u32::MAX),
        20,
    );
    let mut trials = Vec::new();
    for _ in 0..rounds {
        for fault in Fault::ALL {
            let started = Instant::now();
            fault.apply(&mut tb.edges[1]);
            let health = wait_health(
                &mut p.status,
                &target,
                "unhealthy",
                Duration::from_secs(30),
                EdgeHealth::is_unhealthy,
            )
            .await;
            let detected = started.elapsed();
            let reason = match health {
                EdgeHealth::Unhealthy { reason, .. } => reason,
                _ => String::new(),
            };
            let mended = Instant::now();
            fault.mend(&mut tb.edges[1]);
            wait_health(
                &mut p.status,
                &target,
                "healthy",
                Duration::from_secs(60),
                EdgeHealth::is_healthy,
            )
            .await;
            trials.push(Trial {
                fault,
                detected,
                reason,
                recovered: mended.elapsed(),
            });
        }
    }
    let probes = load.stop().await;
    let other_stayed_healthy = {
        let s = p.status.borrow();
        s.nodes[&steady].health.is_healthy()
            && s.nodes[&steady].health_transitions == transitions_before
    };
    p.finish().await;
    Failover {
        trials,
        connections: probes.len(),
        failed: probes
            .into_iter()
            .filter(|p| matches!(p, Probe::Failed(_)))
            .collect(),
        other_stayed_healthy,
    }
}

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use edgelb_core::DeployError;
use edgelb_haproxy::edge_stats::parse_show_stat;

use super::*;
use crate::observe::edge_traffic::tests::{STAT, snapshot};

/// Answers the fixture, or fails while `fail` is set; counts the polls.
struct FakeSource {
    fail: Mutex<bool>,
    polls: AtomicU32,
}

#[async_trait]
impl StatsSource for FakeSource {
    async fn edge_stats(&self, node: &EdgeNode, socket: &str) -> Result<EdgeStats, DeployError> {
        assert_eq!(socket, "/run/haproxy/admin.sock");
        self.polls.fetch_add(1, Ordering::SeqCst);
        if *self.fail.lock().unwrap() {
            return Err(DeployError::Step {
                node: node.name.clone(),
                step: "reading `show stat`".into(),
                message: "refused".into(),
            });
        }
        Ok(EdgeStats {
            proxies: parse_show_stat(STAT).unwrap(),
            answer_bytes: STAT.len(),
            ..EdgeStats::default()
        })
    }
}

/// Advances paused time until `done` holds (at most 100 steps of 100 ms).
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the condition never held");
}

#[tokio::test(start_paused = true)]
async fn polls_only_while_leading_and_a_failed_poll_leaves_only_up_0() {
    let source = Arc::new(FakeSource {
        fail: Mutex::new(false),
        polls: AtomicU32::new(0),
    });
    let status = PipelineStatus {
        snapshot: Some(Arc::new(snapshot())),
        ..PipelineStatus::default()
    };
    let (_status_tx, status_rx) = watch::channel(status);
    let (leader_tx, leader_rx) = watch::channel(false);
    let store = TrafficStore::default();
    let context = PollContext {
        source: source.clone(),
        status: status_rx,
        leader: leader_rx,
        store: store.clone(),
    };
    let settings = PollSettings {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        stats_socket: "/run/haproxy/admin.sock".into(),
    };
    let stop = CancellationToken::new();
    let tasks = spawn(&context, &[EdgeNode::new("edge-1")], &settings, &stop);

    // A standby opens no session to the edges.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(source.polls.load(Ordering::SeqCst), 0);
    assert!(store.lock().unwrap().is_empty());

    leader_tx.send(true).unwrap();
    until(|| store.lock().unwrap().get("edge-1").is_some_and(|t| t.up)).await;
    {
        let store = store.lock().unwrap();
        let traffic = &store["edge-1"];
        assert_eq!(traffic.proxies.len(), 2, "{:?}", traffic.proxies);
        assert!(
            traffic
                .proxies
                .iter()
                .all(|(l, _)| l.service == "default/web" && l.port == "http")
        );
    }

    *source.fail.lock().unwrap() = true;
    until(|| store.lock().unwrap().get("edge-1").is_some_and(|t| !t.up)).await;
    assert!(store.lock().unwrap()["edge-1"].proxies.is_empty());

    // Losing the lease, or stopping, forgets the edge's series.
    leader_tx.send(false).unwrap();
    until(|| store.lock().unwrap().is_empty()).await;
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(store.lock().unwrap().is_empty());
}

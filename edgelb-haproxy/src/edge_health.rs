//! Whether an edge serves, for [`HealthProbe`](edgelb_core::HealthProbe): its session answers,
//! HAProxy's master runs a worker, and each listen port accepts a connection made on the edge
//! itself (through the session, so no probe traffic crosses the link and nothing new is
//! opened). The connection is closed at once: the backend behind the port may see an empty
//! connection per probe.

use edgelb_core::DeployError;

use crate::cli::master::show_proc;
use crate::edge_host::EdgeHost;
use crate::layout::HaproxyLayout;

/// Probes `host`: `show proc` on the master socket (the session and the master answer), a
/// current worker in it, and a connection to each of `listen_ports` on the edge's loopback.
pub(crate) async fn probe(
    host: &dyn EdgeHost,
    layout: &HaproxyLayout,
    listen_ports: &[u16],
) -> Result<(), DeployError> {
    let procs = show_proc(host, layout).await?;
    if procs.workers.is_empty() {
        return Err(DeployError::Step {
            node: host.node().to_owned(),
            step: "checking HAProxy's workers".into(),
            message: format!(
                "the master (pid {}) runs no worker: nothing serves",
                procs.master_pid
            ),
        });
    }
    let connects = listen_ports.iter().map(|port| host.tcp_connect(*port));
    for result in futures::future::join_all(connects).await {
        result?;
    }
    Ok(())
}

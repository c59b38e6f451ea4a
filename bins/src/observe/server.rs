//! The health and metrics endpoint: `/healthz`, `/readyz`, `/metrics`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use edgelb_core::{CancellationToken, PipelineStatus};
use tokio::sync::watch;

use super::metrics::Metrics;

/// What the endpoints read.
#[derive(Clone)]
pub struct Observed {
    /// The pipeline's status.
    pub status: watch::Receiver<PipelineStatus>,
    /// Whether this replica leads (always true without leader election).
    pub leader: watch::Receiver<bool>,
    /// The metrics, updated by [`track`].
    pub metrics: Arc<Mutex<Metrics>>,
    /// Edges that must run a config from this controller before it is ready.
    pub ready_quorum: usize,
}

/// Readiness: a standby replica is ready (it is healthy and waiting); the leader is ready
/// once `ready_quorum` edges run a config it deployed. The edges' health is said, but does
/// not count: it decides what is published, not whether the controller works.
pub fn readiness(observed: &Observed) -> (bool, String) {
    if !*observed.leader.borrow() {
        return (true, "standby: another replica holds the lease".into());
    }
    let status = observed.status.borrow();
    let live = status
        .nodes
        .values()
        .filter(|n| n.live_generation.is_some())
        .count();
    let in_sync = status.nodes_in_sync();
    let unhealthy = status
        .nodes
        .values()
        .filter(|n| n.health.is_unhealthy())
        .count();
    let text = format!(
        "{live}/{} edges run a config from this controller ({in_sync} the current one, generation {}); quorum {}; {unhealthy} unhealthy",
        status.nodes.len(),
        status.generation,
        observed.ready_quorum
    );
    (live >= observed.ready_quorum, text)
}

/// Keeps the metrics up to date with the status and leadership until both channels close.
pub async fn track(observed: Observed) {
    let mut status = observed.status.clone();
    let mut leader = observed.leader.clone();
    loop {
        {
            let s = status.borrow_and_update().clone();
            let mut m = observed
                .metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            m.update(&s);
            m.set_leader(*leader.borrow_and_update());
        }
        tokio::select! {
            r = status.changed() => if r.is_err() { return },
            r = leader.changed() => if r.is_err() { return },
        }
    }
}

/// Serves on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    observed: Observed,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(observed);
    if let Ok(listen) = listener.local_addr() {
        tracing::info!(%listen, "serving /healthz, /readyz and /metrics");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn readyz(State(observed): State<Observed>) -> impl IntoResponse {
    let (ready, text) = readiness(&observed);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{text}\n"))
}

async fn metrics(State(observed): State<Observed>) -> impl IntoResponse {
    let body = observed
        .metrics
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .encode();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

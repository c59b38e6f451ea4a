//! `edgelb run`: the controller loop: source → pipeline → deployer, until SIGTERM/Ctrl-C.

use std::sync::{Arc, Mutex};

use edgelb_core::{CancellationToken, Pipeline};

use crate::config::LoadedConfig;
use crate::error::Result;
use crate::observe::metrics::Metrics;
use crate::observe::server::{Observed, serve, track};

/// Runs until a shutdown signal; the deploy in flight then finishes before exit.
pub async fn run(loaded: LoadedConfig) -> Result<()> {
    let config = loaded.config.clone();
    let renderer = super::renderer(&loaded)?;
    let deployer = super::deployer(&loaded)?;
    let pipeline = Pipeline::new(
        renderer,
        deployer,
        config.edges.clone(),
        config
            .pipeline
            .to_pipeline_config(config.deployer.batch_size()),
    )?;
    let status = pipeline.status();
    let stop = CancellationToken::new();
    let source = config.source.into_source()?;
    let mut run = tokio::spawn(pipeline.run(source, stop.clone()));
    tokio::spawn(report_progress(status.clone()));

    // Without leader election this replica always leads.
    let (_leader_tx, leader) = tokio::sync::watch::channel(true);
    let observed = Observed {
        status,
        leader,
        metrics: Arc::new(Mutex::new(Metrics::new())),
        ready_quorum: config.http.ready_quorum,
    };
    tokio::spawn(track(observed.clone()));
    let http_stop = CancellationToken::new();
    let http = match config.http.listen {
        Some(listen) => {
            let listener = bind(listen).await?;
            Some(tokio::spawn(serve(listener, observed, http_stop.clone())))
        }
        None => None,
    };
    tracing::info!(config = %loaded.path.display(), edges = config.edges.len(), "edgelb running");
    tokio::select! {
        done = &mut run => return flatten(done),
        () = crate::shutdown_signal() => {}
    }
    tracing::info!("shutting down; letting the deploy in flight finish");
    stop.cancel();
    let result = flatten(run.await);
    http_stop.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    result
}

async fn bind(listen: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| crate::error::Error::Io {
            context: format!(
                "listening on {listen} for /healthz, /readyz and /metrics (http.listen)"
            ),
            source: e,
        })
}

fn flatten(joined: Result<edgelb_core::Result<()>, tokio::task::JoinError>) -> Result<()> {
    match joined {
        Ok(result) => Ok(result?),
        Err(e) => Err(crate::error::Error::Io {
            context: "the pipeline task".into(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Logs one line whenever the number of edges in sync changes.
async fn report_progress(mut status: tokio::sync::watch::Receiver<edgelb_core::PipelineStatus>) {
    let mut last = (0, 0);
    while status.changed().await.is_ok() {
        let (generation, in_sync, total) = {
            let s = status.borrow();
            (s.generation, s.nodes_in_sync(), s.nodes.len())
        };
        if (generation, in_sync) != last && generation > 0 {
            last = (generation, in_sync);
            tracing::info!(generation, "{in_sync}/{total} edges run the current config");
        }
    }
}

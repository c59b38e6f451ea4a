//! `edgelb run`: the controller loop: source → pipeline → deployer, until SIGTERM/Ctrl-C.

use std::sync::Arc;

use edgelb_core::{CancellationToken, Deployer, Pipeline};
use edgelb_haproxy::LocalDeployer;

use crate::config::{DeployerConfig, LoadedConfig};
use crate::error::Result;

/// Runs until a shutdown signal; the deploy in flight then finishes before exit.
pub async fn run(loaded: LoadedConfig) -> Result<()> {
    let config = loaded.config.clone();
    let renderer = super::renderer(&loaded)?;
    let deployer: Arc<dyn Deployer> = match &config.deployer {
        DeployerConfig::Local(local) => Arc::new(
            LocalDeployer::new(config.edges[0].name.clone(), local.layout())?
                .start_if_missing(local.start_haproxy),
        ),
    };
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
    tokio::spawn(report_progress(status));
    tracing::info!(config = %loaded.path.display(), edges = config.edges.len(), "edgelb running");
    tokio::select! {
        done = &mut run => return flatten(done),
        () = crate::shutdown_signal() => {}
    }
    tracing::info!("shutting down; letting the deploy in flight finish");
    stop.cancel();
    flatten(run.await)
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

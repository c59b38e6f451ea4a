//! `edgelb demo-backend`: tiny backends that answer with the client address the PROXY header
//! carried, for the quick start.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// Serves on every address until interrupted.
pub async fn run(listen: &[SocketAddr], name: &str) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, addr) in listen.iter().enumerate() {
        let listener = TcpListener::bind(addr).await.map_err(|e| Error::Io {
            context: format!("listening on {addr}"),
            source: e,
        })?;
        let label = if listen.len() > 1 {
            format!("{name}-{}", i + 1)
        } else {
            name.to_owned()
        };
        tracing::info!(%addr, backend = %label, "demo backend listening");
        tasks.spawn(edgelb_haproxy::demo_backend::serve(listener, label));
    }
    tokio::select! {
        _ = crate::shutdown_signal() => Ok(()),
        Some(done) = tasks.join_next() => match done {
            Ok(Err(e)) => Err(Error::Io { context: "serving".into(), source: e }),
            _ => Ok(()),
        },
    }
}

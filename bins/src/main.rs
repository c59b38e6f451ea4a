//! `edgelb`: keep HAProxy on out-of-cluster edge nodes in sync with a cluster's endpoints.
//!
//! Run `edgelb --help` for the commands; the README documents the config file.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod config;
mod error;
mod logging;
mod observe;
mod out;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::LoadedConfig;

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        // The reader went away (`edgelb plan | head -1`): nobody is left to tell.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            report(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

/// `edgelb: MESSAGE` on stderr; a closed stderr is not worth a panic.
fn report(message: &str) {
    let _ = writeln!(std::io::stderr(), "edgelb: {message}");
}

async fn dispatch(command: Command) -> error::Result<ExitCode> {
    match command {
        Command::Plan { config } => {
            let loaded = commands::with_resource_edges(LoadedConfig::load(&config)?).await?;
            return commands::plan::run(&loaded).await;
        }
        Command::Render { config, node } => {
            let loaded = commands::with_resource_edges(LoadedConfig::load(&config)?).await?;
            commands::render::run(&loaded, node.as_deref()).await?;
        }
        Command::Check { config, haproxy } => {
            let loaded = commands::with_resource_edges(LoadedConfig::load(&config)?).await?;
            commands::check::run(&loaded, &haproxy).await?;
        }
        Command::Run {
            config,
            http_listen,
        } => {
            commands::run::run(LoadedConfig::load(&config)?, http_listen).await?;
        }
        Command::Crd => commands::crd::run()?,
        Command::DemoBackend { listen, name } => {
            commands::demo_backend::run(&listen, &name).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM, Ctrl-C or SIGHUP (the terminal closed).
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let signal = |kind: tokio::signal::unix::SignalKind, name: &'static str| async move {
        match tokio::signal::unix::signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                std::future::pending::<()>().await;
            }
        }
    };
    use tokio::signal::unix::SignalKind;
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = signal(SignalKind::terminate(), "SIGTERM") => tracing::info!("SIGTERM received"),
        () = signal(SignalKind::hangup(), "SIGHUP") => tracing::info!("SIGHUP received (the terminal closed)"),
    }
}

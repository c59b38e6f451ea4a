//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// edgelb keeps HAProxy on edge nodes outside your cluster in sync with the cluster's
/// endpoints, sending PROXY protocol so your ingress sees the real client IP.
///
/// Start with `edgelb check --config FILE`, look at `edgelb render --config FILE`, then
/// `edgelb run --config FILE`. The config file is documented in the README.
#[derive(Debug, Parser)]
#[command(name = "edgelb", version, about, long_about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Log filter, e.g. `info`, `debug`, `edgelb_core=debug,info`.
    #[arg(long, global = true, env = "EDGELB_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, global = true, env = "EDGELB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keep the edges in sync until SIGTERM or Ctrl-C.
    Run {
        /// The config file.
        #[arg(short, long, env = "EDGELB_CONFIG")]
        config: PathBuf,
        /// Serve /healthz, /readyz and /metrics here, as IP:PORT (overrides http.listen).
        #[arg(long, env = "EDGELB_HTTP_LISTEN", value_parser = socket_addr)]
        http_listen: Option<SocketAddr>,
    },
    /// Print the HAProxy config each edge would get, without touching any edge.
    Render {
        /// The config file.
        #[arg(short, long, env = "EDGELB_CONFIG")]
        config: PathBuf,
        /// Print only this edge's config.
        #[arg(long)]
        node: Option<String>,
    },
    /// Show, per edge, the diff between its live config and what `run` would deploy.
    /// Changes nothing. Exit code: 0 in sync, 2 changes, 1 an edge could not be read.
    Plan {
        /// The config file.
        #[arg(short, long, env = "EDGELB_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config file, render every edge, and run `haproxy -c` on each result.
    Check {
        /// The config file.
        #[arg(short, long, env = "EDGELB_CONFIG")]
        config: PathBuf,
        /// The haproxy binary used for `haproxy -c`.
        #[arg(long, default_value = "haproxy")]
        haproxy: String,
    },
    /// Print the CustomResourceDefinitions of EdgeNode and EdgePool (deploy/crds.yaml), for
    /// `edgelb crd | kubectl apply -f -`.
    Crd,
    /// Run demo backends that answer with the client address HAProxy's PROXY header carried.
    DemoBackend {
        /// Addresses to listen on, as IP:PORT (repeat for several backends).
        #[arg(long, required = true, value_parser = socket_addr)]
        listen: Vec<SocketAddr>,
        /// Name in the answers (suffixed -1, -2, … with several addresses).
        #[arg(long, default_value = "demo")]
        name: String,
    },
}

/// Parses `IP:PORT`, saying what is expected (a host name is not resolved).
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not an IP:PORT address; give one such as 127.0.0.1:9090, 0.0.0.0:9090 or [::1]:9090 (host names such as localhost are not resolved)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_say_ip_port() {
        assert_eq!(
            socket_addr("127.0.0.1:9090"),
            Ok(([127, 0, 0, 1], 9090).into())
        );
        let err = socket_addr("localhost:9090").unwrap_err();
        assert!(
            err.contains("IP:PORT") && err.contains("localhost"),
            "{err}"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

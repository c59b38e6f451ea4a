//! What a deployer is given and what it reports per node.

use std::fmt;

use crate::digest::RenderedConfig;
use crate::node::EdgeNode;

/// One node and the config it should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node.
    pub node: EdgeNode,
    /// Its rendered config.
    pub config: RenderedConfig,
}

/// How a node reached the desired config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applied {
    /// It already ran it; nothing was done.
    Unchanged,
    /// Applied through the runtime API, without a reload.
    RuntimeUpdated,
    /// The file was swapped and HAProxy reloaded.
    Reloaded,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unchanged => "unchanged",
            Self::RuntimeUpdated => "runtime-updated",
            Self::Reloaded => "reloaded",
        })
    }
}

/// Why a deploy to a node failed. Every variant names the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    /// The node could not be reached (refused, unreachable, DNS).
    #[error(
        "node {node}: cannot connect: {message}; check that the node is up and its SSH address and port"
    )]
    Connect {
        /// Node name.
        node: String,
        /// Underlying error.
        message: String,
    },
    /// A step took too long.
    #[error("node {node}: timed out after {seconds}s while {step}")]
    Timeout {
        /// Node name.
        node: String,
        /// The step (e.g. "connecting", "validating the config").
        step: String,
        /// How long we waited, in whole seconds.
        seconds: u64,
    },
    /// The node presented a host key other than the ones pinned for it (or a revoked one).
    #[error(
        "node {node}: host key {fingerprint} is not among the keys pinned for it; if the node was rebuilt, pin its new key (known_hosts), otherwise treat this as an attack"
    )]
    HostKeyMismatch {
        /// Node name.
        node: String,
        /// Fingerprint of the key seen (`SHA256:…`).
        fingerprint: String,
    },
    /// No host key at all is pinned for the node's SSH address and port: there is no trust on
    /// first use, so nothing was sent.
    #[error(
        "node {node}: no host key is pinned for [{host}]:{port}{}; pin it with `ssh-keyscan -p {port} -t ed25519 {host} >> known_hosts` and check the fingerprint out of band",
        fingerprint.as_deref().map(|f| format!(" (it presented {f})")).unwrap_or_default()
    )]
    HostKeyUnknown {
        /// Node name.
        node: String,
        /// The SSH host as configured.
        host: String,
        /// The SSH port.
        port: u16,
        /// Fingerprint of the key seen (`SHA256:…`), when the client showed it.
        fingerprint: Option<String>,
    },
    /// The node refused our credentials.
    #[error(
        "node {node}: authentication as {user} failed; check that the deploy key is in the user's authorized_keys"
    )]
    Auth {
        /// Node name.
        node: String,
        /// User we logged in as.
        user: String,
    },
    /// `haproxy -c` rejected the new config; nothing was swapped.
    #[error("node {node}: haproxy rejected the new config (nothing was changed): {haproxy_output}")]
    ConfigRejected {
        /// Node name.
        node: String,
        /// What `haproxy -c` printed.
        haproxy_output: String,
    },
    /// The reload did not take; the previous config was restored (or could not be).
    #[error("node {node}: reload failed: {message}; {}", if *rolled_back { "the previous config was restored and still serves" } else { "ROLLBACK FAILED, the node needs attention" })]
    ReloadFailed {
        /// Node name.
        node: String,
        /// What went wrong.
        message: String,
        /// Whether the previous config is live again.
        rolled_back: bool,
    },
    /// The new config listens on ports that another process on the node already holds;
    /// nothing was changed (HAProxy's `haproxy -c` does not bind, so only this check, made
    /// before any reload, keeps such a config from pausing every listener in a failing
    /// reload).
    #[error(
        "node {node}: listen port(s) {} already taken on the node by another process (nothing was changed); free the port on the node or move the Service to another port",
        ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    )]
    ListenPortTaken {
        /// Node name.
        node: String,
        /// The ports the new config needs that are taken.
        ports: Vec<u16>,
    },
    /// Rendering the node's config failed; nothing was sent.
    #[error("node {node}: {message}")]
    Render {
        /// Node name.
        node: String,
        /// The render error.
        message: String,
    },
    /// Any other failed step (a remote command, a file write).
    #[error("node {node}: {step} failed: {message}")]
    Step {
        /// Node name.
        node: String,
        /// The step.
        step: String,
        /// What failed.
        message: String,
    },
}

impl DeployError {
    /// The node this error is about.
    pub fn node(&self) -> &str {
        match self {
            Self::Connect { node, .. }
            | Self::Timeout { node, .. }
            | Self::HostKeyMismatch { node, .. }
            | Self::HostKeyUnknown { node, .. }
            | Self::Auth { node, .. }
            | Self::ConfigRejected { node, .. }
            | Self::ReloadFailed { node, .. }
            | Self::ListenPortTaken { node, .. }
            | Self::Render { node, .. }
            | Self::Step { node, .. } => node,
        }
    }

    /// A short stable label for metrics and events (`connect`, `config-rejected`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::HostKeyMismatch { .. } => "host-key-mismatch",
            Self::HostKeyUnknown { .. } => "host-key-unknown",
            Self::Auth { .. } => "auth",
            Self::ConfigRejected { .. } => "config-rejected",
            Self::ReloadFailed { .. } => "reload-failed",
            Self::ListenPortTaken { .. } => "listen-port-taken",
            Self::Render { .. } => "render",
            Self::Step { .. } => "step",
        }
    }
}

impl DeployError {
    /// Whether the node refused this config itself (`haproxy -c` rejected it, its reload
    /// failed, or a port it needs is taken): the same config would fail the same way
    /// again, so the pipeline never retries it unchanged; it looks for the Service to
    /// blame instead (see [`Renderer::blame`](crate::Renderer::blame)).
    pub fn is_config_fault(&self) -> bool {
        matches!(
            self,
            Self::ConfigRejected { .. } | Self::ReloadFailed { .. } | Self::ListenPortTaken { .. }
        )
    }
}

/// The result of deploying to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOutcome {
    /// Node name.
    pub node: String,
    /// What happened.
    pub result: Result<Applied, DeployError>,
}

impl NodeOutcome {
    /// A success.
    pub fn ok(node: impl Into<String>, applied: Applied) -> Self {
        Self {
            node: node.into(),
            result: Ok(applied),
        }
    }

    /// A failure.
    pub fn failed(error: DeployError) -> Self {
        Self {
            node: error.node().to_owned(),
            result: Err(error),
        }
    }
}

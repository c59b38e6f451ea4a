use std::net::SocketAddr;

use serde::Deserialize;

/// `http:` — the health and metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served, e.g. `0.0.0.0:9090`
    /// (default: not served).
    pub listen: Option<SocketAddr>,
    /// Edges that must run a config from this controller before `/readyz` says ready
    /// (default 1).
    pub ready_quorum: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: None,
            ready_quorum: 1,
        }
    }
}

impl HttpSettings {
    pub(super) fn validate(&self, edges: usize) -> Result<(), String> {
        if self.ready_quorum == 0 || self.ready_quorum > edges {
            return Err(format!(
                "ready_quorum: must be between 1 and the number of edges ({edges}), not {}",
                self.ready_quorum
            ));
        }
        Ok(())
    }
}

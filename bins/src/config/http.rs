use std::net::SocketAddr;

use serde::Deserialize;

/// `http:` — the health and metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served, as IP:PORT, e.g. `0.0.0.0:9090`
    /// (default: not served).
    #[serde(deserialize_with = "ip_port")]
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

/// `IP:PORT`, with the same message as `--http-listen` for anything else (`localhost:9090`).
fn ip_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| crate::cli::socket_addr(&text).map_err(serde::de::Error::custom))
        .transpose()
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

use std::time::Duration;

use edgelb_kube::DnsEndpointConfig;
use serde::Deserialize;

/// `dns_endpoint:` — publish the healthy edges' addresses as an external-dns `DNSEndpoint`
/// (for named mode, where no LoadBalancer Service carries them). Present means on; needs a
/// Kubernetes source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsEndpointSettings {
    /// The names to publish, e.g. `example.com`, `*.example.com`.
    pub hostnames: Vec<String>,
    /// The object's name (default `edgelb`).
    #[serde(default = "default_name")]
    pub name: String,
    /// The object's namespace (default `$POD_NAMESPACE`, else `edgelb`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The records' TTL (default 60s: short, so clients follow a failover).
    #[serde(default = "default_ttl", with = "edgelb_core::duration")]
    pub ttl: Duration,
}

fn default_name() -> String {
    "edgelb".into()
}

fn default_ttl() -> Duration {
    Duration::from_secs(60)
}

impl DnsEndpointSettings {
    /// The writer's config, the namespace resolved.
    pub fn to_config(&self) -> DnsEndpointConfig {
        let namespace = self
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "edgelb".into());
        DnsEndpointConfig {
            namespace,
            name: self.name.clone(),
            hostnames: self.hostnames.clone(),
            ttl: self.ttl,
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        self.to_config().validate().map_err(|e| e.to_string())
    }
}

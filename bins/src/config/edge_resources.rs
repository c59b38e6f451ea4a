use std::time::Duration;

use serde::Deserialize;

/// `edge_resources:` — read the edges from the `EdgeNode` and `EdgePool` custom resources
/// (`edgelb crd`) instead of `edges:`. Present means on; needs a cluster connection and the
/// ssh or ansible deployer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeResourceSettings {
    /// The namespace of the EdgeNodes and EdgePools (default `$POD_NAMESPACE`, else `edgelb`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Quiet time after a change of the edges before the pipeline restarts with them
    /// (default 5s): several EdgeNodes applied together cost one restart.
    #[serde(default = "default_debounce", with = "edgelb_core::duration")]
    pub restart_debounce: Duration,
}

fn default_debounce() -> Duration {
    Duration::from_secs(5)
}

impl EdgeResourceSettings {
    /// The namespace, resolved.
    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "edgelb".into())
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        let ns = self.namespace();
        let label = !ns.is_empty()
            && ns.len() <= 63
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !ns.starts_with('-')
            && !ns.ends_with('-');
        if !label {
            return Err(format!("namespace: {ns:?} is not a namespace name"));
        }
        if self.restart_debounce > Duration::from_secs(600) {
            return Err("restart_debounce: at most 10m".into());
        }
        Ok(())
    }
}

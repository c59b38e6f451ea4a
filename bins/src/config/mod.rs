//! The `edgelb` config file: one YAML document, documented in the README.
//!
//! Unknown keys and bad values are errors that name the file, the line and the key. Relative
//! paths are resolved against the config file's directory.

mod deployer;
mod dns;
mod edge_resources;
mod edge_stats;
mod health;
mod http;
mod leader;
mod limits;
mod pipeline;
mod source;

use std::path::{Path, PathBuf};

use edgelb_core::EdgeNode;
use edgelb_haproxy::RenderOptions;
use serde::Deserialize;

pub use deployer::DeployerConfig;
pub use dns::DnsEndpointSettings;
pub use edge_resources::EdgeResourceSettings;
pub use edge_stats::EdgeStatsSettings;
pub use health::HealthSettings;
pub use http::HttpSettings;
pub use leader::LeaderElectionSettings;
pub use limits::LimitSettings;
pub use pipeline::PipelineSettings;
pub use source::SourceConfig;

use crate::error::{Error, Result};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the desired state comes from.
    #[serde(with = "serde_yaml_ng::with::singleton_map")]
    pub source: SourceConfig,
    /// The edge nodes (none when `edge_resources` reads them from the cluster).
    #[serde(default)]
    pub edges: Vec<EdgeNode>,
    /// Read the edges from EdgeNode/EdgePool resources; absent: `edges` lists them.
    #[serde(default)]
    pub edge_resources: Option<EdgeResourceSettings>,
    /// How configs reach the edges.
    #[serde(with = "serde_yaml_ng::with::singleton_map")]
    pub deployer: DeployerConfig,
    /// How `haproxy.cfg` is rendered.
    #[serde(default)]
    pub haproxy: RenderOptions,
    /// Timings of the pipeline.
    #[serde(default)]
    pub pipeline: PipelineSettings,
    /// How the edges' health is probed.
    #[serde(default)]
    pub health: HealthSettings,
    /// How often the edges' traffic is read for the metrics.
    #[serde(default)]
    pub edge_stats: EdgeStatsSettings,
    /// Publish the healthy edges' addresses as an external-dns DNSEndpoint; absent: off.
    #[serde(default)]
    pub dns_endpoint: Option<DnsEndpointSettings>,
    /// Health and metrics endpoint.
    #[serde(default)]
    pub http: HttpSettings,
    /// One active replica at a time (Kubernetes Lease); absent: this replica always leads.
    #[serde(default)]
    pub leader_election: Option<LeaderElectionSettings>,
    /// Caps on input sizes.
    #[serde(default)]
    pub limits: LimitSettings,
}

/// A loaded config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed, validated config with paths made absolute.
    pub config: Config,
    /// The file it came from.
    pub path: PathBuf,
    /// Whether that file is a ConfigMap manifest: its paths then name files in the pod
    /// (the mounted Secret), not on this machine.
    pub from_manifest: bool,
}

impl LoadedConfig {
    /// Reads, parses and validates `path`.
    ///
    /// A Kubernetes ConfigMap manifest holding the config under `data."config.yaml"` (as
    /// `deploy/configmap.yaml` does) is read too, so `edgelb check` covers the manifest.
    /// Only a regular file of at most [`limits::max_config_bytes`] is read.
    pub fn load(path: &Path) -> Result<Self> {
        let fail = |message: String| Error::Config {
            path: path.to_owned(),
            message,
        };
        let max = limits::max_config_bytes();
        let bytes = edgelb_core::source::read_regular_file(path, max).map_err(|e| {
            fail(format!(
                "cannot read it: {e} (the limit is EDGELB_MAX_CONFIG_BYTES, default {})",
                limits::DEFAULT_MAX_CONFIG_BYTES
            ))
        })?;
        let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8".into()))?;
        edgelb_core::yaml::check_budget(&text).map_err(fail)?;
        match config_map_payload(&text) {
            Some(embedded) => Self::parse(path, &embedded)
                .map(|loaded| Self {
                    from_manifest: true,
                    ..loaded
                })
                .map_err(|e| match e {
                    Error::Config { path, message } => Error::Config {
                        path,
                        message: format!(
                            "data.\"config.yaml\" (lines counted inside it): {message}"
                        ),
                    },
                    other => other,
                }),
            None => Self::parse(path, &text),
        }
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let fail = |message: String| Error::Config {
            path: path.to_owned(),
            message,
        };
        edgelb_core::yaml::check_budget(text).map_err(fail)?;
        let mut config: Config = parse_yaml(text).map_err(|e| {
            fail(if looks_like_endpoints_file(text) {
                format!(
                    "this looks like an endpoints file (it lists `services:`), not edgelb's config; \
                     give the config file whose `source: {{file: …}}` names it, such as \
                     examples/quickstart.yaml ({e})"
                )
            } else {
                e
            })
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let base = std::path::absolute(&base).unwrap_or(base);
        config.resolve_paths(&base);
        config.validate().map_err(fail)?;
        Ok(Self {
            config,
            path: path.to_owned(),
            from_manifest: false,
        })
    }
}

/// The `config.yaml` of a ConfigMap manifest, if `text` is one.
fn config_map_payload(text: &str) -> Option<String> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).ok()?;
    if doc.get("kind")?.as_str()? != "ConfigMap" {
        return None;
    }
    Some(doc.get("data")?.get("config.yaml")?.as_str()?.to_owned())
}

/// Whether `text` is a mapping with `services` and none of the config's own keys.
fn looks_like_endpoints_file(text: &str) -> bool {
    let Ok(serde_yaml_ng::Value::Mapping(doc)) = serde_yaml_ng::from_str(text) else {
        return false;
    };
    doc.contains_key("services")
        && !["source", "edges", "deployer"]
            .iter()
            .any(|k| doc.contains_key(*k))
}

/// Parses YAML, naming the full key path and the line of any error:
/// `pipeline.debounce: invalid duration "5 seconds": … at line 8 column 13`.
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde_yaml_ng prefixes the parent path itself; keep the full one only.
        let inner = inner
            .split_once(": ")
            .filter(|(prefix, _)| path.starts_with(prefix) && !prefix.contains(' '))
            .map_or(inner.as_str(), |(_, rest)| rest)
            .to_owned();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

impl Config {
    fn resolve_paths(&mut self, base: &Path) {
        self.source.resolve_paths(base);
        self.deployer.resolve_paths(base);
        if let Some(dir) = &self.haproxy.template_dir {
            self.haproxy.template_dir = Some(base.join(dir));
        }
    }

    /// Checks what serde cannot: names, cross-references, deployer constraints.
    fn validate(&self) -> std::result::Result<(), String> {
        self.source.validate().map_err(|e| format!("source.{e}"))?;
        match (&self.edge_resources, self.edges.is_empty()) {
            (None, true) => {
                return Err(
                    "edges: list at least one edge node (or set edge_resources to read them from EdgeNode resources)"
                        .into(),
                );
            }
            (Some(_), false) => {
                return Err(
                    "edges: give either edges or edge_resources, not both (with edge_resources the edges are EdgeNode resources)"
                        .into(),
                );
            }
            (Some(resources), true) => {
                resources
                    .validate()
                    .map_err(|e| format!("edge_resources.{e}"))?;
                if matches!(self.deployer, DeployerConfig::Local(_)) {
                    return Err(
                        "edge_resources: the local deployer serves this machine only; use the ssh or ansible deployer with EdgeNode resources"
                            .into(),
                    );
                }
            }
            (None, false) => {}
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, edge) in self.edges.iter().enumerate() {
            edge.validate().map_err(|e| format!("edges[{i}]: {e}"))?;
            self.haproxy
                .validate_node(edge)
                .map_err(|e| format!("edges[{i}]: {e}"))?;
            if !names.insert(edge.name.as_str()) {
                return Err(format!(
                    "edges[{i}].name: {:?} is used twice; node names must be unique",
                    edge.name
                ));
            }
        }
        self.haproxy
            .validate()
            .map_err(|e| format!("haproxy: {e}"))?;
        self.deployer
            .validate(&self.edges)
            .map_err(|e| format!("deployer: {e}"))?;
        self.pipeline
            .validate()
            .map_err(|e| format!("pipeline: {e}"))?;
        self.health.validate().map_err(|e| format!("health: {e}"))?;
        self.edge_stats
            .validate()
            .map_err(|e| format!("edge_stats: {e}"))?;
        if let Some(dns) = &self.dns_endpoint {
            if !self.source.is_kubernetes() {
                return Err(
                    "dns_endpoint: needs a Kubernetes source (it writes a DNSEndpoint object in the cluster)"
                        .into(),
                );
            }
            dns.validate().map_err(|e| format!("dns_endpoint: {e}"))?;
        }
        self.http
            .validate(if self.edge_resources.is_some() {
                usize::MAX
            } else {
                self.edges.len()
            })
            .map_err(|e| format!("http: {e}"))?;
        self.limits.validate().map_err(|e| format!("limits.{e}"))?;
        if let Some(leader) = &self.leader_election {
            leader
                .validate()
                .map_err(|e| format!("leader_election: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! DNS without a LoadBalancer Service: the published edges' addresses as an external-dns
//! [`DNSEndpoint`] (`externaldns.k8s.io/v1alpha1`), which external-dns run with
//! `--source=crd` turns into records. For named mode, where Traefik's own Service is often not
//! of type LoadBalancer and so has no status external-dns's `--source=service` could read.
//!
//! The edges published are those that run a config of edgelb's, less the unhealthy ones
//! (all of them when none is healthy), like a Service's status. Each hostname gets an `A`
//! record with the IPv4 addresses and an `AAAA` record with the IPv6 ones; an edge's public
//! addresses that are names are left out (a name cannot share a record with others).
//!
//! RBAC: `get`, `create`, `patch` on `dnsendpoints` in `externaldns.k8s.io`, in the object's
//! namespace.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use edgelb_core::{CancellationToken, EdgeNode, PipelineStatus};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, CustomResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, Result, status_code};
use crate::publish::healthy_or_all;
use crate::status::FIELD_MANAGER;

/// external-dns's `DNSEndpoint` spec, defined here from its API (not vendored).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "externaldns.k8s.io",
    version = "v1alpha1",
    kind = "DNSEndpoint",
    namespaced
)]
pub struct DnsEndpointSpec {
    /// The records.
    pub endpoints: Vec<DnsRecord>,
}

/// One record set of a [`DNSEndpoint`].
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecord {
    /// The name, e.g. `example.com` or `*.example.com`.
    pub dns_name: String,
    /// `A` or `AAAA`.
    pub record_type: String,
    /// The addresses.
    pub targets: Vec<String>,
    /// Time to live in seconds.
    #[serde(rename = "recordTTL", skip_serializing_if = "Option::is_none")]
    pub record_ttl: Option<i64>,
}

/// What the [`DnsEndpointWriter`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEndpointConfig {
    /// The object's namespace.
    pub namespace: String,
    /// The object's name (default `edgelb`).
    pub name: String,
    /// The names to publish, e.g. `example.com`, `*.example.com`.
    pub hostnames: Vec<String>,
    /// The records' time to live (default 60 s: short, so clients follow a failover).
    pub ttl: Duration,
}

impl DnsEndpointConfig {
    /// `name` in `namespace`, for `hostnames`, with the default TTL.
    pub fn new(namespace: impl Into<String>, hostnames: Vec<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: "edgelb".into(),
            hostnames,
            ttl: Duration::from_secs(60),
        }
    }

    /// Checks the names: the object's a DNS label, each hostname a DNS name (a leading
    /// `*.` allowed).
    pub fn validate(&self) -> Result<()> {
        let bad = |setting: &'static str, reason: String| Err(Error::Config { setting, reason });
        if !is_dns_label(&self.name) {
            return bad(
                "DNSEndpoint name",
                format!(
                    "{:?} is not a DNS label (a-z, 0-9, '-', at most 63)",
                    self.name
                ),
            );
        }
        if !is_dns_label(&self.namespace) {
            return bad(
                "DNSEndpoint namespace",
                format!("{:?} is not a namespace name", self.namespace),
            );
        }
        if self.hostnames.is_empty() {
            return bad("DNSEndpoint hostnames", "list at least one".into());
        }
        for host in &self.hostnames {
            let name = host.strip_prefix("*.").unwrap_or(host);
            let ok = name.len() <= 253
                && name.split('.').count() >= 2
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                });
            if !ok {
                return bad(
                    "DNSEndpoint hostname",
                    format!("{host:?} is not a DNS name (e.g. example.com or *.example.com)"),
                );
            }
        }
        if self.ttl.as_secs() == 0 || self.ttl.as_secs() > 86_400 {
            return bad("DNSEndpoint ttl", "must be between 1s and 1d".into());
        }
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Keeps one [`DNSEndpoint`] in line with the published edges. Run it only while this
/// replica leads.
pub struct DnsEndpointWriter {
    api: Api<DNSEndpoint>,
    nodes: Vec<EdgeNode>,
    config: DnsEndpointConfig,
    written: Option<Vec<DnsRecord>>,
    failures: u32,
}

impl DnsEndpointWriter {
    /// A writer of `config`'s object for the edges `nodes` (their `public_addresses`).
    pub fn new(client: Client, nodes: Vec<EdgeNode>, config: DnsEndpointConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            api: Api::namespaced(client, &config.namespace),
            nodes,
            config,
            written: None,
            failures: 0,
        })
    }

    /// The records for `status`: `None` until some edge runs a config (nothing is known to
    /// publish yet).
    pub fn records(&self, status: &PipelineStatus) -> Option<Vec<DnsRecord>> {
        let serving: Vec<&EdgeNode> = self
            .nodes
            .iter()
            .filter(|n| {
                status
                    .nodes
                    .get(&n.name)
                    .is_some_and(|ns| ns.live_generation.is_some())
            })
            .collect();
        if serving.is_empty() {
            return None;
        }
        let published = healthy_or_all(serving, status);
        let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for address in published.iter().flat_map(|n| &n.public_addresses) {
            match address.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => by_type.entry("A").or_default().push(ip.to_string()),
                Ok(IpAddr::V6(ip)) => by_type.entry("AAAA").or_default().push(ip.to_string()),
                Err(_) => {}
            }
        }
        let ttl = i64::try_from(self.config.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut records = Vec::new();
        for host in &self.config.hostnames {
            for (record_type, targets) in &by_type {
                let mut targets = targets.clone();
                targets.sort();
                targets.dedup();
                records.push(DnsRecord {
                    dns_name: host.clone(),
                    record_type: (*record_type).to_owned(),
                    targets,
                    record_ttl: Some(ttl),
                });
            }
        }
        Some(records)
    }

    /// Runs until `shutdown` or the status channel closes; failed writes are retried with
    /// backoff (1 s doubling to 30 s).
    pub async fn run(
        mut self,
        mut status: watch::Receiver<PipelineStatus>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let mut retry_at: Option<Instant> = None;
        loop {
            let current = status.borrow_and_update().clone();
            if retry_at.is_none_or(|t| t <= Instant::now()) {
                retry_at = None;
                if let Some(records) = self.records(&current)
                    && self.written.as_ref() != Some(&records)
                {
                    match self.write(&records).await {
                        Ok(()) => {
                            self.failures = 0;
                            tracing::info!(
                                object = %self.object(),
                                records = records.len(),
                                targets = ?records.iter().flat_map(|r| &r.targets).collect::<Vec<_>>(),
                                "DNSEndpoint written"
                            );
                            self.written = Some(records);
                        }
                        Err(e) => {
                            self.failures += 1;
                            let delay = Duration::from_secs(1u64 << self.failures.min(5))
                                .min(Duration::from_secs(30));
                            tracing::warn!(error = %e, retry_in = ?delay, "writing the DNSEndpoint failed");
                            retry_at = Some(Instant::now() + delay);
                        }
                    }
                }
            }
            let sleep = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = status.changed() => if changed.is_err() { break },
                () = sleep => {}
            }
        }
        Ok(())
    }

    fn object(&self) -> String {
        format!("DNSEndpoint {}/{}", self.config.namespace, self.config.name)
    }

    /// Replaces the object's records (a merge patch of `spec.endpoints`), creating the object
    /// when it does not exist.
    async fn write(&self, records: &[DnsRecord]) -> Result<()> {
        let name = &self.config.name;
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patch = json!({"spec": {"endpoints": records}});
        match self.api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => {
                let object = DNSEndpoint {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        labels: Some(
                            [(
                                "app.kubernetes.io/managed-by".to_owned(),
                                "edgelb".to_owned(),
                            )]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    spec: DnsEndpointSpec {
                        endpoints: records.to_vec(),
                    },
                };
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PostParams::default()
                };
                self.api
                    .create(&params, &object)
                    .await
                    .map(drop)
                    .map_err(|e| Error::api("creating", self.object(), e))
            }
            Err(e) => Err(Error::api("patching", self.object(), e)),
        }
    }
}

//! The `EdgeNode` custom resource: one edge, as the YAML config's `edges:` entry describes
//! it, plus the status `kubectl get edgenodes` shows.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One edge node outside the cluster that runs HAProxy. Its name is the node's name (at
/// most 63 characters); its labels are what EdgePools select.
// The printer columns repeat `type_ = "string"`: one column each, not duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "edgelb.io",
    version = "v1alpha1",
    kind = "EdgeNode",
    namespaced,
    status = "EdgeNodeStatus",
    shortname = "edge",
    category = "edgelb",
    doc = "An edge node outside the cluster that runs HAProxy for edgelb.",
    printcolumn(name = "Pools", type_ = "string", json_path = ".status.pools"),
    printcolumn(
        name = "Address",
        type_ = "string",
        json_path = ".spec.publicAddresses[0]"
    ),
    printcolumn(name = "In-Sync", type_ = "boolean", json_path = ".status.inSync"),
    printcolumn(name = "Health", type_ = "string", json_path = ".status.health"),
    printcolumn(
        name = "Last-Deploy",
        type_ = "date",
        json_path = ".status.lastDeployTime"
    ),
    printcolumn(
        name = "Result",
        type_ = "string",
        json_path = ".status.lastDeployResult"
    ),
    printcolumn(
        name = "Failures",
        type_ = "integer",
        json_path = ".status.consecutiveFailures"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".status.liveDigest",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.healthReason",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EdgeNodeSpec {
    /// How edgelb reaches the node over SSH (the key and known hosts stay in edgelb's Secret).
    pub ssh: EdgeNodeSsh,
    /// Addresses clients reach this node at (IPs or DNS names), published in Service status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9.:-]+$")))]
    pub public_addresses: Vec<String>,
    /// Extra `bind` addresses per listen port, beside the default `:PORT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["port"]))]
    pub extra_binds: Vec<ExtraBind>,
    /// Bind only `extraBinds` on the ports that have some (not the default `:PORT`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_default_bind: bool,
}

/// How to reach an EdgeNode over SSH.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeNodeSsh {
    /// Host name or IP address.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9.:-]+$"))]
    pub host: String,
    /// TCP port (default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Login user (default `root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub user: Option<String>,
}

/// Extra `bind` addresses for one listen port.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtraBind {
    /// The listen port (a Service port, or the port it is mapped to).
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// HAProxy bind addresses, e.g. `ipv6@:443` or `203.0.113.10:443`.
    #[schemars(length(min = 1), inner(regex(pattern = r"^[A-Za-z0-9@:.\[\]_/*-]+$")))]
    pub addresses: Vec<String>,
}

/// What edgelb knows of an EdgeNode, written by the leading replica.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeNodeStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The pools the node is in, comma-separated (`default` when no EdgePool selects it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<String>,
    /// Whether the node runs the current desired config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_sync: Option<bool>,
    /// The digest of the config live on the node (SHA-256, hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_digest: Option<String>,
    /// When a deploy was last attempted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deploy_time: Option<String>,
    /// How the last deploy went: `reloaded`, `runtime-updated`, `unchanged`, or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deploy_result: Option<String>,
    /// The last deploy error, cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Failed deploys since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// `Healthy`, `Unhealthy` or `Unknown`, from the health probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Why the node is unhealthy (the last failed probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_reason: Option<String>,
    /// `Ready` (the node serves a config of edgelb's) and `InSync` (it runs the current one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A status condition, in the standard Kubernetes shape.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` or `InSync`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// Details for people.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

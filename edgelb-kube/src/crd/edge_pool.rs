//! The `EdgePool` custom resource: a named set of EdgeNodes chosen by their labels.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::selector::NodeSelector;

/// A pool of edges: the EdgeNodes (in edgelb's namespace) its `nodeSelector` selects. The
/// pool's name is what a Service names to use it; the pool named `default` serves Services
/// that name none. An EdgeNode no pool selects is in the `default` pool only.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "edgelb.io",
    version = "v1alpha1",
    kind = "EdgePool",
    namespaced,
    shortname = "edgepool",
    category = "edgelb",
    doc = "A pool of edgelb EdgeNodes chosen by their labels.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EdgePoolSpec {
    /// Which EdgeNodes are in the pool; `{}` selects every EdgeNode.
    pub node_selector: NodeSelector,
}

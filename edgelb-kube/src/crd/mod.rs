//! edgelb's own custom resources (`edgelb.io/v1alpha1`): [`EdgeNode`] (one edge) and
//! [`EdgePool`] (a named set of EdgeNodes chosen by label), the Kubernetes form of the YAML
//! config's `edges:` and their `pools:`. Both describe the same model,
//! [`edgelb_core::EdgeNode`]; see [`node_set`] for the conversion.
//!
//! Both are namespaced and read in edgelb's own namespace only: edges are infrastructure
//! outside the cluster, and whoever may define one decides where edgelb's SSH key connects
//! and which endpoints it is sent; a Role in that namespace (rather than a ClusterRole)
//! keeps that right with edgelb's administrators and edgelb's own rights to that namespace.
//!
//! * [`EdgeResourceSource`] watches both and publishes the [`NodeSet`];
//! * [`NodeStatusWriter`] writes each EdgeNode's `status` from the pipeline's status;
//! * [`crds`] gives the CustomResourceDefinitions (`edgelb crd` prints them).

mod edge_node;
mod edge_pool;
mod node_set;
mod node_source;
mod node_status;
mod selector;
mod status_writer;

use edgelb_core::MAX_NODE_NAME_LEN;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};
use kube::CustomResourceExt;

pub use edge_node::{Condition, EdgeNode, EdgeNodeSpec, EdgeNodeSsh, EdgeNodeStatus, ExtraBind};
pub use edge_pool::{EdgePool, EdgePoolSpec};
pub use node_set::{NodeCheck, NodeSet, Problem, node_set, to_node};
pub use node_source::EdgeResourceSource;
pub use node_status::{Transitions, desired_statuses, invalid_status, node_status};
pub use selector::{NodeSelector, SelectorOperator, SelectorRequirement};
pub use status_writer::NodeStatusWriter;

/// The CustomResourceDefinitions of [`EdgeNode`] and [`EdgePool`].
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut node = EdgeNode::crd();
    // The node name becomes part of file names and host names (edgelb_core::MAX_NODE_NAME_LEN).
    for version in &mut node.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.x_kubernetes_validations = Some(vec![ValidationRule {
                rule: format!("size(self.metadata.name) <= {MAX_NODE_NAME_LEN}"),
                message: Some(format!(
                    "an EdgeNode's name is its node name: at most {MAX_NODE_NAME_LEN} characters"
                )),
                ..ValidationRule::default()
            }]);
        }
    }
    vec![node, EdgePool::crd()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crds_are_namespaced_with_a_status_subresource_and_columns() {
        let [node, pool] = <[_; 2]>::try_from(crds()).unwrap();
        assert_eq!(node.metadata.name.as_deref(), Some("edgenodes.edgelb.io"));
        assert_eq!(pool.metadata.name.as_deref(), Some("edgepools.edgelb.io"));
        for crd in [&node, &pool] {
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        }
        let version = &node.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Pools",
                "Address",
                "In-Sync",
                "Health",
                "Last-Deploy",
                "Result",
                "Failures",
                "Age",
                "Digest",
                "Reason"
            ]
        );
        let schema = serde_json::to_string(&pool.spec.versions[0].schema).unwrap();
        assert!(schema.contains("x-kubernetes-validations"), "{schema}");
        let schema = serde_json::to_string(&version.schema).unwrap();
        assert!(
            schema.contains("size(self.metadata.name) <= 63"),
            "{schema}"
        );
    }
}

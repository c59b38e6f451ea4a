//! EdgeNode and EdgePool objects → the [`edgelb_core::EdgeNode`]s the pipeline deploys to:
//! the same model as the YAML config's `edges:`, with `pools` from the EdgePools that
//! select each node.
//!
//! An invalid object is reported (a [`Problem`], which the source turns into a Warning
//! Event) and left out; it never fails the others. An invalid EdgePool selects nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use edgelb_core::{EdgeNode as Node, SshTarget};
use kube::ResourceExt;

use super::{EdgeNode, EdgePool};

/// A further check of each node (e.g. the renderer's and the deployer's), returning why it
/// cannot be used.
pub type NodeCheck = Arc<dyn Fn(&Node) -> Result<(), String> + Send + Sync>;

/// The usable edges, and why the others are not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSet {
    /// The valid nodes, by name, each with its pools.
    pub nodes: Vec<Node>,
    /// The EdgeNodes left out, by name, with why.
    pub invalid: BTreeMap<String, String>,
    /// Each EdgeNode's `metadata.generation`, by name (for `observedGeneration`).
    pub generations: BTreeMap<String, Option<i64>>,
}

/// An object that cannot be used as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// `EdgeNode` or `EdgePool`.
    pub kind: &'static str,
    /// The object's name.
    pub name: String,
    /// Why, and what to do.
    pub reason: String,
}

/// Builds the node set from every EdgeNode and EdgePool of the namespace.
pub fn node_set(
    edge_nodes: &[EdgeNode],
    edge_pools: &[EdgePool],
    check: Option<&NodeCheck>,
) -> (NodeSet, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut pools = Vec::new();
    for pool in edge_pools {
        match pool.spec.node_selector.validate() {
            Ok(()) => pools.push(pool),
            Err(e) => problems.push(Problem {
                kind: "EdgePool",
                name: pool.name_any(),
                reason: format!(
                    "nodeSelector: {e}; the pool selects no EdgeNode until it is fixed"
                ),
            }),
        }
    }
    let mut set = NodeSet::default();
    let mut seen = BTreeSet::new();
    for object in edge_nodes {
        let name = object.name_any();
        if !seen.insert(name.clone()) {
            continue;
        }
        set.generations
            .insert(name.clone(), object.metadata.generation);
        let member_of: Vec<String> = pools
            .iter()
            .filter(|p| p.spec.node_selector.matches(object.labels()))
            .map(|p| p.name_any())
            .collect();
        let converted = to_node(object, member_of).and_then(|node| {
            node.validate().map_err(|e| e.to_string())?;
            if let Some(check) = check {
                check(&node)?;
            }
            Ok(node)
        });
        match converted {
            Ok(node) => set.nodes.push(node),
            Err(reason) => {
                problems.push(Problem {
                    kind: "EdgeNode",
                    name: name.clone(),
                    reason: format!("{reason}; edgelb leaves this edge alone until it is fixed"),
                });
                set.invalid.insert(name, reason);
            }
        }
    }
    set.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    (set, problems)
}

/// One EdgeNode object as a node of the model, with the pools that select it (sorted).
pub fn to_node(object: &EdgeNode, mut pools: Vec<String>) -> Result<Node, String> {
    let spec = &object.spec;
    let mut node = Node::new(object.name_any());
    let mut ssh = SshTarget::new(spec.ssh.host.clone());
    if let Some(port) = spec.ssh.port {
        if port == 0 {
            return Err("spec.ssh.port: use a port between 1 and 65535".into());
        }
        ssh.port = port;
    }
    if let Some(user) = &spec.ssh.user {
        ssh.user.clone_from(user);
    }
    node.ssh = Some(ssh);
    node.public_addresses.clone_from(&spec.public_addresses);
    for bind in &spec.extra_binds {
        if bind.port == 0 {
            return Err("spec.extraBinds: port 0; use a port between 1 and 65535".into());
        }
        if node
            .extra_binds
            .insert(bind.port, bind.addresses.clone())
            .is_some()
        {
            return Err(format!(
                "spec.extraBinds: port {} is listed twice; list each port once with all its addresses",
                bind.port
            ));
        }
    }
    node.replace_default_bind = spec.replace_default_bind;
    pools.sort();
    pools.dedup();
    node.pools = pools;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{EdgeNodeSpec, EdgeNodeSsh, EdgePoolSpec, ExtraBind, NodeSelector};
    use edgelb_core::DEFAULT_POOL;

    fn edge(name: &str, labels: &[(&str, &str)], host: &str) -> EdgeNode {
        let mut object = EdgeNode::new(
            name,
            EdgeNodeSpec {
                ssh: EdgeNodeSsh {
                    host: host.into(),
                    port: None,
                    user: None,
                },
                public_addresses: vec!["203.0.113.10".into()],
                extra_binds: Vec::new(),
                replace_default_bind: false,
            },
        );
        object.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        object.metadata.generation = Some(3);
        object
    }

    fn pool(name: &str, labels: &[(&str, &str)]) -> EdgePool {
        EdgePool::new(
            name,
            EdgePoolSpec {
                node_selector: NodeSelector {
                    match_labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    match_expressions: Vec::new(),
                },
            },
        )
    }

    #[test]
    fn pools_come_from_the_selecting_edgepools() {
        let nodes = [
            edge("edge-b", &[("tier", "public")], "10.0.0.2"),
            edge("edge-a", &[("tier", "public"), ("zone", "fra")], "10.0.0.1"),
            edge("edge-c", &[], "10.0.0.3"),
        ];
        let pools = [
            pool("public", &[("tier", "public")]),
            pool("fra", &[("zone", "fra")]),
        ];
        let (set, problems) = node_set(&nodes, &pools, None);
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<&str> = set.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["edge-a", "edge-b", "edge-c"]);
        assert_eq!(set.nodes[0].pools, ["fra", "public"]);
        assert_eq!(set.nodes[1].pools, ["public"]);
        // Selected by no pool: the default pool only, as a YAML edge without `pools`.
        assert!(set.nodes[2].pools.is_empty());
        assert!(set.nodes[2].in_pool(DEFAULT_POOL));
        assert!(!set.nodes[0].in_pool(DEFAULT_POOL));
        assert_eq!(set.generations["edge-a"], Some(3));
        let ssh = set.nodes[0].ssh.clone().unwrap();
        assert_eq!(
            (ssh.host.as_str(), ssh.port, ssh.user.as_str()),
            ("10.0.0.1", 22, "root")
        );
    }

    #[test]
    fn an_invalid_edgenode_is_reported_and_the_others_stay() {
        let mut bad = edge("edge-bad", &[], "10.0.0.9");
        bad.spec.extra_binds = vec![ExtraBind {
            port: 443,
            addresses: vec![":443 ssl crt /etc/x".into()],
        }];
        let mut twice = edge("edge-twice", &[], "10.0.0.8");
        twice.spec.extra_binds = vec![
            ExtraBind {
                port: 80,
                addresses: vec![":8080".into()],
            },
            ExtraBind {
                port: 80,
                addresses: vec![":8081".into()],
            },
        ];
        let long = edge(&"e".repeat(64), &[], "10.0.0.7");
        let nodes = [bad, edge("edge-ok", &[], "10.0.0.1"), twice, long];
        let (set, problems) = node_set(&nodes, &[], None);
        assert_eq!(set.nodes.len(), 1);
        assert_eq!(set.nodes[0].name, "edge-ok");
        assert_eq!(set.invalid.len(), 3);
        assert!(
            set.invalid["edge-bad"].contains("bind address"),
            "{:?}",
            set.invalid
        );
        assert!(
            set.invalid["edge-twice"].contains("listed twice"),
            "{:?}",
            set.invalid
        );
        assert!(
            problems
                .iter()
                .all(|p| p.kind == "EdgeNode" && p.reason.contains("until it is fixed"))
        );
    }

    #[test]
    fn the_check_hook_rejects_per_node_and_a_bad_pool_selects_nothing() {
        let nodes = [
            edge("edge-a", &[("tier", "public")], "10.0.0.1"),
            edge("edge-b", &[("tier", "public")], "10.0.0.2"),
        ];
        let mut bad_pool = pool("public", &[("tier", "public")]);
        bad_pool.spec.node_selector.match_expressions = vec![crate::crd::SelectorRequirement {
            key: "zone".into(),
            operator: crate::crd::SelectorOperator::In,
            values: Vec::new(),
        }];
        let check: NodeCheck = Arc::new(|n: &Node| {
            if n.name == "edge-b" {
                Err("port 22 is firewalled".into())
            } else {
                Ok(())
            }
        });
        let (set, problems) = node_set(&nodes, &[bad_pool], Some(&check));
        assert_eq!(set.nodes.len(), 1);
        assert!(
            set.nodes[0].pools.is_empty(),
            "the bad pool selects nothing"
        );
        assert_eq!(set.invalid["edge-b"], "port 22 is firewalled");
        let kinds: Vec<&str> = problems.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["EdgePool", "EdgeNode"]);
    }
}

//! The README's worked example of EdgeNodes and EdgePools ("Edges as Kubernetes resources")
//! parses as the custom resources and gives the pools the README says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use edgelb_kube::crd::{EdgeNode, EdgePool, node_set};
use serde::Deserialize;

#[test]
fn the_readme_example_gives_the_pools_it_describes() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("A worked example: a `public` pool")
        .expect("the README has the worked example");
    let block = &readme[start..];
    let block = &block[block.find("```yaml\n").unwrap() + 8..];
    let block = &block[..block.find("```").unwrap()];
    let mut nodes = Vec::new();
    let mut pools = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(block) {
        let value = serde_yaml_ng::Value::deserialize(doc).unwrap();
        match value["kind"].as_str() {
            Some("EdgeNode") => nodes.push(serde_yaml_ng::from_value::<EdgeNode>(value).unwrap()),
            Some("EdgePool") => pools.push(serde_yaml_ng::from_value::<EdgePool>(value).unwrap()),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    let (set, problems) = node_set(&nodes, &pools, None);
    assert!(problems.is_empty(), "{problems:?}");
    let pools: Vec<(&str, Vec<&str>)> = set
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.pools.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        pools,
        [
            ("edge-fra-1", vec!["default", "public"]),
            ("edge-fra-2", vec!["public"])
        ]
    );
    let ssh = set.nodes[1].ssh.as_ref().unwrap();
    assert_eq!((ssh.port, ssh.user.as_str()), (2222, "edgelb"));
    assert_eq!(set.nodes[0].binds_for(443), [":443", "ipv6@:443"]);
}

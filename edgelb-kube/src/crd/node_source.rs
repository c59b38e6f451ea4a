//! Watches the EdgeNodes and EdgePools of edgelb's namespace and publishes the resulting
//! [`NodeSet`] whenever it changes; invalid objects get a Warning Event (rate-limited) and
//! are left out, never failing the others.
//!
//! Nothing is published until both resources have been listed once. Watch errors are
//! retried with backoff, keeping the last published set. RBAC: `get`, `list`, `watch` on
//! `edgenodes` and `edgepools` in `edgelb.io`, in that namespace.

use std::collections::{BTreeMap, BTreeSet};

use edgelb_core::CancellationToken;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::node_set::{NodeCheck, NodeSet, Problem, node_set};
use super::{EdgeNode, EdgePool};
use crate::events::{EventPublisher, EventType};

/// One watcher's objects: the current ones, and those of a (re)list under way.
struct Watched<K> {
    current: BTreeMap<String, K>,
    listing: Option<BTreeMap<String, K>>,
    listed: bool,
}

impl<K: Resource> Watched<K> {
    fn new() -> Self {
        Self {
            current: BTreeMap::new(),
            listing: None,
            listed: false,
        }
    }

    /// Applies one event; returns whether `current` changed.
    fn apply(&mut self, event: watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(obj) => {
                if let Some(listing) = &mut self.listing {
                    listing.insert(obj.name_any(), obj);
                }
                false
            }
            watcher::Event::InitDone => {
                if let Some(listing) = self.listing.take() {
                    self.current = listing;
                }
                self.listed = true;
                true
            }
            watcher::Event::Apply(obj) => {
                self.current.insert(obj.name_any(), obj);
                true
            }
            watcher::Event::Delete(obj) => self.current.remove(&obj.name_any()).is_some(),
        }
    }
}

/// The EdgeNode/EdgePool watcher.
pub struct EdgeResourceSource {
    client: Client,
    namespace: String,
    events: Option<EventPublisher>,
    check: Option<NodeCheck>,
}

impl EdgeResourceSource {
    /// Watches the EdgeNodes and EdgePools in `namespace`.
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            events: None,
            check: None,
        }
    }

    /// Records a Warning Event on each object that cannot be used.
    pub fn with_events(mut self, events: EventPublisher) -> Self {
        self.events = Some(events);
        self
    }

    /// Checks each node further (the renderer's and deployer's constraints); a node that
    /// fails is left out like an invalid one.
    pub fn with_check(mut self, check: NodeCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// Runs until `shutdown`, sending each new node set to `out` (`None` until both
    /// resources were listed).
    pub async fn run(self, out: watch::Sender<Option<NodeSet>>, shutdown: CancellationToken) {
        enum Change {
            Node(Box<watcher::Event<EdgeNode>>),
            Pool(Box<watcher::Event<EdgePool>>),
            Failed(&'static str, watcher::Error),
        }
        let nodes_api: Api<EdgeNode> = Api::namespaced(self.client.clone(), &self.namespace);
        let pools_api: Api<EdgePool> = Api::namespaced(self.client.clone(), &self.namespace);
        let nodes = watcher(nodes_api, watcher::Config::default())
            .default_backoff()
            .map(|e| {
                e.map_or_else(
                    |e| Change::Failed("EdgeNodes", e),
                    |e| Change::Node(Box::new(e)),
                )
            })
            .boxed();
        let pools = watcher(pools_api, watcher::Config::default())
            .default_backoff()
            .map(|e| {
                e.map_or_else(
                    |e| Change::Failed("EdgePools", e),
                    |e| Change::Pool(Box::new(e)),
                )
            })
            .boxed();
        let mut changes = futures::stream::select(nodes, pools);
        let mut node_objects = Watched::<EdgeNode>::new();
        let mut pool_objects = Watched::<EdgePool>::new();
        let mut reported: BTreeSet<Problem> = BTreeSet::new();
        loop {
            let change = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                change = changes.next() => match change {
                    Some(c) => c,
                    None => return,
                },
            };
            let changed = match change {
                Change::Node(e) => node_objects.apply(*e),
                Change::Pool(e) => pool_objects.apply(*e),
                Change::Failed(what, e) => {
                    tracing::warn!(
                        namespace = %self.namespace,
                        error = %e,
                        "watching {what} failed; retrying with backoff, keeping the last edges (check the CRDs are installed: edgelb crd | kubectl apply -f -, and deploy/rbac.yaml)"
                    );
                    false
                }
            };
            if !changed || !node_objects.listed || !pool_objects.listed {
                continue;
            }
            let edge_nodes: Vec<EdgeNode> = node_objects.current.values().cloned().collect();
            let edge_pools: Vec<EdgePool> = pool_objects.current.values().cloned().collect();
            let (set, problems) = node_set(&edge_nodes, &edge_pools, self.check.as_ref());
            let problems: BTreeSet<Problem> = problems.into_iter().collect();
            for problem in problems.difference(&reported) {
                self.report(problem, &node_objects, &pool_objects).await;
            }
            reported = problems;
            out.send_if_modified(|current| {
                let modified = current.as_ref() != Some(&set);
                if modified {
                    tracing::info!(
                        namespace = %self.namespace,
                        edges = ?set.nodes.iter().map(|n| &n.name).collect::<Vec<_>>(),
                        invalid = ?set.invalid.keys().collect::<Vec<_>>(),
                        "edges from EdgeNode resources"
                    );
                    *current = Some(set.clone());
                }
                modified
            });
        }
    }

    async fn report(
        &self,
        problem: &Problem,
        nodes: &Watched<EdgeNode>,
        pools: &Watched<EdgePool>,
    ) {
        tracing::warn!(kind = problem.kind, name = %problem.name, namespace = %self.namespace, reason = %problem.reason, "unusable edge resource");
        let Some(events) = &self.events else { return };
        let reference = match problem.kind {
            "EdgePool" => pools.current.get(&problem.name).map(object_reference),
            _ => nodes.current.get(&problem.name).map(object_reference),
        };
        let Some(reference) = reference else { return };
        let key = format!(
            "{} {}/{} Invalid",
            problem.kind, self.namespace, problem.name
        );
        events
            .publish(
                &reference,
                EventType::Warning,
                "InvalidSpec",
                "Validate",
                &problem.reason,
                &key,
            )
            .await;
    }
}

fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{EdgeNodeSpec, EdgeNodeSsh};

    fn edge(name: &str) -> EdgeNode {
        EdgeNode::new(
            name,
            EdgeNodeSpec {
                ssh: EdgeNodeSsh {
                    host: "10.0.0.1".into(),
                    port: None,
                    user: None,
                },
                public_addresses: Vec::new(),
                extra_binds: Vec::new(),
                replace_default_bind: false,
            },
        )
    }

    #[test]
    fn a_relist_replaces_the_objects_only_once_it_completes() {
        let mut w = Watched::<EdgeNode>::new();
        assert!(!w.apply(watcher::Event::Init));
        assert!(!w.apply(watcher::Event::InitApply(edge("a"))));
        assert!(!w.listed);
        assert!(w.apply(watcher::Event::InitDone));
        assert!(w.listed);
        assert!(w.apply(watcher::Event::Apply(edge("b"))));
        // A relist: the old objects stay until it completes, then "b" is gone.
        w.apply(watcher::Event::Init);
        w.apply(watcher::Event::InitApply(edge("a")));
        assert_eq!(w.current.len(), 2);
        w.apply(watcher::Event::InitDone);
        assert_eq!(w.current.keys().collect::<Vec<_>>(), ["a"]);
        assert!(w.apply(watcher::Event::Delete(edge("a"))));
        assert!(!w.apply(watcher::Event::Delete(edge("a"))));
    }
}

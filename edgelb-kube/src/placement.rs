//! Placement of a Service in LoadBalancer mode: its pool (the `edgelb.io/pool` annotation),
//! its address (the `edgelb.io/address` annotation, else `spec.loadBalancerIP`), and who
//! keeps a listen port when two Services claim it on one edge (the older one).
//!
//! See [`edgelb_core::placement`] for what a pool and an address mean on the edges.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edgelb_core::placement::check_address;
use edgelb_core::text::quoted;
use edgelb_core::{Claim, DEFAULT_POOL, EdgeNode};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

use crate::convert::Warning;

/// The annotation that puts a Service on the edges of one pool (default: the `default` pool).
pub const POOL_ANNOTATION: &str = "edgelb.io/pool";

/// The annotation that binds a Service's ports on one address of its edges
/// (`ADDRESS:PORT` instead of `:PORT`). It wins over `spec.loadBalancerIP`.
pub const ADDRESS_ANNOTATION: &str = "edgelb.io/address";

/// The Warning reasons that are about a Service's placement: they also set its
/// [`PLACED_CONDITION`](crate::PLACED_CONDITION) to `False`.
pub(crate) const PLACEMENT_REASONS: &[&str] = &[
    "PortConflict",
    "NoEdgesInPool",
    "InvalidPool",
    "InvalidAddress",
];

/// Where a Service asks to be served.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Placement {
    /// Its pool; `None` for the default pool (also when the annotation names it).
    pub pool: Option<String>,
    /// Its address; `None` for every address.
    pub address: Option<IpAddr>,
}

impl Placement {
    /// The pool's name.
    pub(crate) fn pool_name(&self) -> &str {
        self.pool.as_deref().unwrap_or(DEFAULT_POOL)
    }
}

/// Reads `svc`'s placement. A bad pool or address is a warning and `None`: the Service is not
/// served until it is fixed (it is never served somewhere it did not ask for). With both the
/// address annotation and `spec.loadBalancerIP` set to different addresses, the annotation
/// wins and a warning says so.
pub(crate) fn placement_of(svc: &Service, warnings: &mut Vec<Warning>) -> Option<Placement> {
    let annotations = svc.annotations();
    let pool = match annotations.get(POOL_ANNOTATION).map(String::as_str) {
        None | Some(DEFAULT_POOL) => None,
        Some(pool) => match edgelb_core::names::validate_name("pool name", pool) {
            Ok(()) => Some(pool.to_owned()),
            Err(e) => {
                warnings.push(Warning::about(
                    svc,
                    "InvalidPool",
                    format!(
                        "annotation {POOL_ANNOTATION}: {e}; the Service is not served until it is fixed"
                    ),
                ));
                return None;
            }
        },
    };
    let from_spec = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|ip| !ip.is_empty());
    let (asked, origin) = match (annotations.get(ADDRESS_ANNOTATION), from_spec) {
        (Some(a), _) => (Some(a.as_str()), format!("annotation {ADDRESS_ANNOTATION}")),
        (None, Some(ip)) => (Some(ip), "spec.loadBalancerIP".to_owned()),
        (None, None) => (None, String::new()),
    };
    let address = match asked {
        None => None,
        Some(text) => match parse_address(text) {
            Ok(address) => Some(address),
            Err(why) => {
                warnings.push(Warning::about(
                    svc,
                    "InvalidAddress",
                    format!(
                        "{origin}: {} {why}; the Service is not served until it is fixed",
                        quoted(text)
                    ),
                ));
                return None;
            }
        },
    };
    if let (Some(a), Some(ip)) = (annotations.get(ADDRESS_ANNOTATION), from_spec)
        && parse_address(ip).ok() != address
    {
        warnings.push(Warning::about(
            svc,
            "LoadBalancerIPIgnored",
            format!(
                "spec.loadBalancerIP {} is ignored: annotation {ADDRESS_ANNOTATION} ({}) wins",
                quoted(ip),
                quoted(a)
            ),
        ));
    }
    Some(Placement { pool, address })
}

fn parse_address(text: &str) -> Result<IpAddr, &'static str> {
    let address: IpAddr = text
        .parse()
        .map_err(|_| "is not an IP address (write e.g. 192.0.2.10 or 2001:db8::10)")?;
    check_address(address)?;
    Ok(address)
}

/// Whether some edge of `edges` is in `pool` (always true when no edges are known: a source
/// without them cannot tell).
pub(crate) fn pool_has_edges(edges: &[EdgeNode], pool: &str) -> bool {
    edges.is_empty() || edges.iter().any(|n| n.in_pool(pool))
}

/// The listen ports taken so far, oldest Service first: who keeps a port on shared edges.
pub(crate) struct Claims<'a> {
    nodes: &'a [EdgeNode],
    taken: BTreeMap<u16, Vec<(Claim, String)>>,
}

impl<'a> Claims<'a> {
    /// No port taken yet; `nodes` tell which pools share edges (none known: only a pool
    /// shares edges with itself).
    pub(crate) fn new(nodes: &'a [EdgeNode]) -> Self {
        Self {
            nodes,
            taken: BTreeMap::new(),
        }
    }

    /// The owner (`ns/name:port`) that already holds a claim conflicting with `claim`.
    pub(crate) fn holder(&self, claim: &Claim) -> Option<(&Claim, &str)> {
        self.taken
            .get(&claim.port)?
            .iter()
            .find(|(c, _)| c.conflicts_with(claim, self.nodes))
            .map(|(c, owner)| (c, owner.as_str()))
    }

    /// Records `claim` for `owner`.
    pub(crate) fn take(&mut self, claim: Claim, owner: String) {
        self.taken
            .entry(claim.port)
            .or_default()
            .push((claim, owner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(annotations: serde_json::Value, lb_ip: Option<&str>) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "annotations": annotations},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": lb_ip},
        }))
        .unwrap()
    }

    fn read(s: &Service) -> (Option<Placement>, Vec<&'static str>) {
        let mut warnings = Vec::new();
        let p = placement_of(s, &mut warnings);
        (p, warnings.iter().map(|w| w.reason).collect())
    }

    #[test]
    fn pool_and_address_from_annotations_and_load_balancer_ip() {
        let (p, w) = read(&svc(json!({}), None));
        assert_eq!((p, w), (Some(Placement::default()), vec![]));
        let (p, _) = read(&svc(json!({POOL_ANNOTATION: "default"}), None));
        assert_eq!(
            p.unwrap().pool,
            None,
            "the default pool by name is the default"
        );
        let (p, w) = read(&svc(
            json!({POOL_ANNOTATION: "public", ADDRESS_ANNOTATION: "2001:db8::5"}),
            None,
        ));
        let p = p.unwrap();
        assert_eq!(p.pool_name(), "public");
        assert_eq!(p.address, Some("2001:db8::5".parse().unwrap()));
        assert!(w.is_empty());
        let (p, w) = read(&svc(json!({}), Some("192.0.2.7")));
        assert_eq!(p.unwrap().address, Some("192.0.2.7".parse().unwrap()));
        assert!(w.is_empty());
    }

    #[test]
    fn the_annotation_wins_over_load_balancer_ip_and_says_so() {
        let (p, w) = read(&svc(
            json!({ADDRESS_ANNOTATION: "192.0.2.1"}),
            Some("192.0.2.2"),
        ));
        assert_eq!(p.unwrap().address, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(w, ["LoadBalancerIPIgnored"]);
        let (_, w) = read(&svc(
            json!({ADDRESS_ANNOTATION: "192.0.2.1"}),
            Some("192.0.2.1"),
        ));
        assert!(w.is_empty());
    }

    #[test]
    fn bad_values_keep_the_service_out_with_a_warning() {
        for (annotations, lb_ip, reason) in [
            (json!({POOL_ANNOTATION: "Bad Pool"}), None, "InvalidPool"),
            (
                json!({ADDRESS_ANNOTATION: "192.0.2.300"}),
                None,
                "InvalidAddress",
            ),
            (
                json!({ADDRESS_ANNOTATION: "0.0.0.0"}),
                None,
                "InvalidAddress",
            ),
            (json!({}), Some("not-an-ip\n"), "InvalidAddress"),
        ] {
            let mut warnings = Vec::new();
            let s = svc(annotations, lb_ip);
            assert_eq!(placement_of(&s, &mut warnings), None);
            assert_eq!(warnings.len(), 1);
            assert_eq!(warnings[0].reason, reason);
            assert!(
                !warnings[0].message.contains('\n'),
                "{}",
                warnings[0].message
            );
            assert!(PLACEMENT_REASONS.contains(&reason));
        }
    }

    #[test]
    fn claims_follow_shared_edges() {
        let nodes = [
            EdgeNode::new("e1").with_pool("a"),
            EdgeNode::new("e2").with_pool("b").with_pool("c"),
        ];
        let mut claims = Claims::new(&nodes);
        let claim = |pool: &str| Claim {
            pool: pool.to_owned(),
            address: None,
            port: 443,
        };
        claims.take(claim("a"), "ns/x:https".into());
        assert_eq!(claims.holder(&claim("b")), None);
        claims.take(claim("b"), "ns/y:https".into());
        assert_eq!(
            claims.holder(&claim("c")).map(|(_, o)| o),
            Some("ns/y:https")
        );
        assert!(pool_has_edges(&nodes, "c") && !pool_has_edges(&nodes, "d"));
        assert!(pool_has_edges(&[], "d"));
    }
}

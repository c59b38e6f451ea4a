//! Placement: which edges serve a service, and on which address.
//!
//! * Every edge belongs to one or more **pools** ([`EdgeNode::pools`]; none listed means the
//!   [`DEFAULT_POOL`] only). A service names one pool ([`ServiceSpec::pool`]; none means the
//!   default pool) and is rendered on the edges of that pool only: [`Snapshot::placed_on`]
//!   is what one edge serves.
//! * A service may ask for an **address** ([`ServiceSpec::address`]): its ports then bind
//!   `ADDRESS:PORT` on its edges instead of `:PORT` (and the node's extra binds), so two
//!   services can share a port number on different addresses of one edge.
//! * Two services **conflict** when they claim one listen port on one edge with overlapping
//!   addresses: the same address, or either of them on every address (no address asked).
//!   Services of one pool always share their edges; services of two pools share the edges
//!   that are in both. [`Snapshot::validate`] refuses conflicts inside a pool,
//!   [`Snapshot::validate_on`] those on the edges given as well; [`Claim::conflicts_with`]
//!   lets a source decide who keeps a port before it builds a snapshot.
//!
//! ```
//! use edgelb_core::{EdgeNode, PortSpec, ProxyProtocol, ServiceKey, Snapshot};
//! let mut snap = Snapshot::default();
//! for (name, pool) in [("web", "public"), ("admin", "internal")] {
//!     let key = ServiceKey::new("ns", name)?;
//!     snap.insert_port(key.clone(), "https", PortSpec::new(443, ProxyProtocol::V2))?;
//!     snap.services.get_mut(&key).unwrap().pool = Some(pool.to_owned());
//! }
//! let public = EdgeNode::new("edge-1").with_pool("public");
//! let internal = EdgeNode::new("edge-2").with_pool("internal");
//! snap.validate_on(&[public.clone(), internal])?; // port 443 twice, on different edges
//! let on_public = snap.placed_on(&public);
//! assert_eq!(on_public.services.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::model::{ServiceKey, ServiceSpec, Snapshot};
use crate::names::validate_name;
use crate::node::EdgeNode;

/// The pool of a service that names none, and of an edge that lists none.
pub const DEFAULT_POOL: &str = "default";

impl EdgeNode {
    /// Whether this edge serves the services of `pool`: it lists `pool`, or it lists no pool
    /// and `pool` is the [`DEFAULT_POOL`].
    pub fn in_pool(&self, pool: &str) -> bool {
        if self.pools.is_empty() {
            pool == DEFAULT_POOL
        } else {
            self.pools.iter().any(|p| p == pool)
        }
    }

    /// Adds the edge to `pool` (builder form).
    pub fn with_pool(mut self, pool: impl Into<String>) -> Self {
        self.pools.push(pool.into());
        self
    }

    /// Whether this edge serves `spec` (it is in the service's pool).
    pub fn serves(&self, spec: &ServiceSpec) -> bool {
        self.in_pool(spec.pool_name())
    }
}

impl ServiceSpec {
    /// The service's pool: [`ServiceSpec::pool`], or the [`DEFAULT_POOL`].
    pub fn pool_name(&self) -> &str {
        self.pool.as_deref().unwrap_or(DEFAULT_POOL)
    }
}

impl Snapshot {
    /// What `node` serves: the services of its pools. Borrowed (no copy) when that is every
    /// service, as it is when nothing is placed.
    pub fn placed_on(&self, node: &EdgeNode) -> Cow<'_, Snapshot> {
        if self.services.values().all(|s| node.serves(s)) {
            return Cow::Borrowed(self);
        }
        Cow::Owned(Snapshot {
            services: self
                .services
                .iter()
                .filter(|(_, s)| node.serves(s))
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect(),
        })
    }

    /// The listen ports of the services that bind every address (asked for none), sorted.
    pub fn listen_ports_on_every_address(&self) -> BTreeSet<u16> {
        self.services
            .values()
            .filter(|s| s.address.is_none())
            .flat_map(|s| s.ports.values().map(|p| p.listen_port))
            .collect()
    }

    /// [`Snapshot::validate`], and no two services claim one port on overlapping addresses
    /// on any edge of `nodes` that serves them both (services of two pools that share an
    /// edge).
    pub fn validate_on(&self, nodes: &[EdgeNode]) -> Result<()> {
        // The claims once, with the edges: a conflict within one pool is one here too.
        self.validate_entries()?;
        check_claims(self, |a, b| {
            a == b || nodes.iter().any(|n| n.in_pool(a) && n.in_pool(b))
        })
    }
}

/// One listen port a service claims: its pool, its address (`None`: every address) and the
/// port number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The service's pool.
    pub pool: String,
    /// The address asked for; `None` binds every address.
    pub address: Option<IpAddr>,
    /// The listen port.
    pub port: u16,
}

impl Claim {
    /// Whether this claim and `other` cannot both be served: same port, overlapping addresses
    /// (equal, or either one on every address), and pools that share an edge of `nodes`
    /// (one pool always shares its edges with itself).
    pub fn conflicts_with(&self, other: &Claim, nodes: &[EdgeNode]) -> bool {
        self.port == other.port
            && addresses_overlap(self.address, other.address)
            && (self.pool == other.pool
                || nodes
                    .iter()
                    .any(|n| n.in_pool(&self.pool) && n.in_pool(&other.pool)))
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:{}", self.port)?,
            Some(IpAddr::V4(a)) => write!(f, "{a}:{}", self.port)?,
            None => write!(f, "port {}", self.port)?,
        }
        write!(f, " (pool {})", self.pool)
    }
}

fn addresses_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Checks a service's pool name and address.
pub(crate) fn validate_placement(key: &ServiceKey, spec: &ServiceSpec) -> Result<()> {
    if let Some(pool) = &spec.pool {
        validate_name("pool name", pool)?;
    }
    if let Some(address) = spec.address {
        check_address(address).map_err(|why| {
            Error::InvalidSnapshot(format!("{key} asks for address {address}, which {why}"))
        })?;
    }
    Ok(())
}

/// Why `address` cannot be a service's listen address, if it cannot.
pub fn check_address(address: IpAddr) -> std::result::Result<(), &'static str> {
    if address.is_unspecified() {
        return Err("means every address; leave the address out for that");
    }
    if address.is_multicast() {
        return Err("is a multicast address; TCP cannot listen on it");
    }
    if let IpAddr::V4(v4) = address
        && v4.is_broadcast()
    {
        return Err("is the broadcast address; TCP cannot listen on it");
    }
    Ok(())
}

/// Refuses two ports that claim one listen port on overlapping addresses in pools that
/// `share` an edge.
pub(crate) fn check_claims(snapshot: &Snapshot, share: impl Fn(&str, &str) -> bool) -> Result<()> {
    let mut by_port: BTreeMap<u16, Vec<(Claim, String)>> = BTreeMap::new();
    for (key, spec) in &snapshot.services {
        for (name, port) in &spec.ports {
            let claim = Claim {
                pool: spec.pool_name().to_owned(),
                address: spec.address,
                port: port.listen_port,
            };
            let owner = format!("{key}:{name}");
            let taken = by_port.entry(port.listen_port).or_default();
            if let Some((prev, prev_owner)) = taken.iter().find(|(c, _)| {
                addresses_overlap(c.address, claim.address) && share(&c.pool, &claim.pool)
            }) {
                return Err(Error::InvalidSnapshot(format!(
                    "listen port {} is claimed by both {prev_owner} ({prev}) and {owner} ({claim}) on the same edges; give one of them another listen port, another address or another pool",
                    port.listen_port
                )));
            }
            taken.push((claim, owner));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PortSpec, ProxyProtocol};

    fn snap(services: &[(&str, Option<&str>, Option<&str>, u16)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (name, pool, address, port) in services {
            let key = ServiceKey::new("ns", *name).unwrap();
            s.insert_port(key.clone(), "p", PortSpec::new(*port, ProxyProtocol::V2))
                .unwrap();
            let spec = s.services.get_mut(&key).unwrap();
            spec.pool = pool.map(str::to_owned);
            spec.address = address.map(|a| a.parse().unwrap());
        }
        s
    }

    #[test]
    fn nodes_without_pools_are_in_the_default_pool_only() {
        let plain = EdgeNode::new("e1");
        assert!(plain.in_pool(DEFAULT_POOL) && !plain.in_pool("public"));
        let public = EdgeNode::new("e2").with_pool("public");
        assert!(public.in_pool("public") && !public.in_pool(DEFAULT_POOL));
        let both = public.clone().with_pool(DEFAULT_POOL);
        assert!(both.in_pool("public") && both.in_pool(DEFAULT_POOL));
    }

    #[test]
    fn placed_on_borrows_when_everything_is_placed_and_filters_otherwise() {
        let s = snap(&[("a", None, None, 80), ("b", None, None, 81)]);
        assert!(matches!(
            s.placed_on(&EdgeNode::new("e1")),
            Cow::Borrowed(_)
        ));
        let s = snap(&[("a", None, None, 80), ("b", Some("public"), None, 81)]);
        let on_default = s.placed_on(&EdgeNode::new("e1"));
        assert_eq!(
            on_default
                .services
                .keys()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        let on_public = s.placed_on(&EdgeNode::new("e2").with_pool("public"));
        assert_eq!(
            on_public
                .services
                .keys()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert!(
            s.placed_on(&EdgeNode::new("e3").with_pool("none"))
                .services
                .is_empty()
        );
    }

    #[test]
    fn only_ports_on_every_address_are_probed_on_loopback() {
        let s = snap(&[("a", None, Some("192.0.2.1"), 443), ("b", None, None, 80)]);
        assert_eq!(s.listen_ports_on_every_address(), [80].into());
    }

    #[test]
    fn one_port_on_two_addresses_or_two_pools_is_no_conflict() {
        let two_addresses = snap(&[
            ("a", None, Some("192.0.2.1"), 443),
            ("b", None, Some("192.0.2.2"), 443),
        ]);
        two_addresses.validate().unwrap();
        let two_pools = snap(&[("a", Some("x"), None, 443), ("b", Some("y"), None, 443)]);
        two_pools.validate().unwrap();
        two_pools
            .validate_on(&[
                EdgeNode::new("e1").with_pool("x"),
                EdgeNode::new("e2").with_pool("y"),
            ])
            .unwrap();
        let err = two_pools
            .validate_on(&[EdgeNode::new("e1").with_pool("x").with_pool("y")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ns/a:p") && err.contains("ns/b:p"), "{err}");
    }

    #[test]
    fn every_address_conflicts_with_any_address_and_equal_addresses_conflict() {
        let wildcard = snap(&[("a", None, None, 443), ("b", None, Some("192.0.2.2"), 443)]);
        let err = wildcard.validate().unwrap_err().to_string();
        assert!(err.contains("192.0.2.2:443"), "{err}");
        let same = snap(&[
            ("a", None, Some("2001:db8::1"), 443),
            ("b", None, Some("2001:db8::1"), 443),
        ]);
        let err = same.validate().unwrap_err().to_string();
        assert!(err.contains("[2001:db8::1]:443"), "{err}");
        snap(&[
            ("a", None, Some("2001:db8::1"), 443),
            ("b", None, Some("2001:db8::1"), 444),
        ])
        .validate()
        .unwrap();
    }

    #[test]
    fn unusable_addresses_and_pool_names_are_refused() {
        for bad in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            let err = snap(&[("a", None, Some(bad), 443)]).validate().unwrap_err();
            assert!(err.to_string().contains("ns/a asks for address"), "{err}");
        }
        assert!(
            snap(&[("a", Some("bad pool"), None, 443)])
                .validate()
                .is_err()
        );
        assert!(snap(&[("a", Some(""), None, 443)]).validate().is_err());
    }

    #[test]
    fn claims_conflict_only_on_shared_edges() {
        let claim = |pool: &str, address: Option<&str>| Claim {
            pool: pool.to_owned(),
            address: address.map(|a| a.parse().unwrap()),
            port: 443,
        };
        let nodes = [
            EdgeNode::new("e1").with_pool("x"),
            EdgeNode::new("e2").with_pool("y"),
        ];
        assert!(!claim("x", None).conflicts_with(&claim("y", None), &nodes));
        assert!(claim("x", None).conflicts_with(&claim("x", Some("192.0.2.1")), &nodes));
        assert!(
            !claim("x", Some("192.0.2.2")).conflicts_with(&claim("x", Some("192.0.2.1")), &nodes)
        );
        let shared = [EdgeNode::new("e1").with_pool("x").with_pool("y")];
        assert!(claim("x", None).conflicts_with(&claim("y", None), &shared));
    }
}

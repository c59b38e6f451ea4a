//! The desired state: services, their ports and endpoints.
//!
//! A [`Snapshot`] is always the **whole** desired state, never a delta. Its maps are sorted,
//! so equal states compare equal and render to byte-identical configs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::validate_name;
use crate::service_fields::{MAX_SOURCE_RANGES, SessionAffinity};

/// Identifies a service: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Kubernetes namespace (or any grouping for non-Kubernetes sources).
    pub namespace: String,
    /// Service name.
    pub name: String,
}

impl ServiceKey {
    /// Builds a key after validating both parts with [`validate_name`].
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self> {
        let key = Self {
            namespace: namespace.into(),
            name: name.into(),
        };
        validate_name("namespace", &key.namespace)?;
        validate_name("service name", &key.name)?;
        Ok(key)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for ServiceKey {
    type Err = Error;

    /// Parses `namespace/name`.
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once('/') {
            Some((ns, name)) => Self::new(ns, name),
            None => Err(Error::InvalidName {
                kind: "service",
                value: s.to_owned(),
                reason: "expected namespace/name, e.g. kube-system/traefik".to_owned(),
            }),
        }
    }
}

/// Which PROXY protocol header HAProxy sends to the backend.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// No header: the backend sees the edge's address.
    None,
    /// Text header (`send-proxy`).
    V1,
    /// Binary header (`send-proxy-v2`), the default.
    #[default]
    V2,
}

impl FromStr for ProxyProtocol {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "v1" => Ok(Self::V1),
            "v2" => Ok(Self::V2),
            other => Err(format!(
                "unknown PROXY protocol {other:?}: use v2, v1 or none"
            )),
        }
    }
}

impl fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

/// Whether an endpoint takes new connections.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// Takes new connections.
    #[default]
    Ready,
    /// Finishes what it has and takes nothing new (a terminating pod that still serves).
    Draining,
}

/// One backend address: a pod IP and port, say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Address and port.
    pub addr: SocketAddr,
    /// Ready or draining.
    pub state: EndpointState,
}

impl Endpoint {
    /// A ready endpoint.
    pub fn ready(ip: IpAddr, port: u16) -> Self {
        Self {
            addr: SocketAddr::new(ip, port),
            state: EndpointState::Ready,
        }
    }

    /// A draining endpoint.
    pub fn draining(ip: IpAddr, port: u16) -> Self {
        Self {
            addr: SocketAddr::new(ip, port),
            state: EndpointState::Draining,
        }
    }
}

/// One port of a service as the edge exposes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The port the edge listens on (frontend).
    pub listen_port: u16,
    /// PROXY protocol sent to the endpoints.
    pub proxy_protocol: ProxyProtocol,
    /// Endpoints by address: one entry per address, sorted.
    pub endpoints: BTreeMap<SocketAddr, EndpointState>,
}

impl PortSpec {
    /// A port with no endpoints yet.
    pub fn new(listen_port: u16, proxy_protocol: ProxyProtocol) -> Self {
        Self {
            listen_port,
            proxy_protocol,
            endpoints: BTreeMap::new(),
        }
    }

    /// Adds an endpoint. When the same address is added twice, `Ready` wins over `Draining`
    /// (an address listed as ready in any EndpointSlice takes traffic).
    pub fn add_endpoint(&mut self, endpoint: Endpoint) {
        self.endpoints
            .entry(endpoint.addr)
            .and_modify(|s| *s = (*s).min(endpoint.state))
            .or_insert(endpoint.state);
    }

    /// Builder form of [`PortSpec::add_endpoint`].
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.add_endpoint(endpoint);
        self
    }

    /// Endpoints in address order.
    pub fn endpoints(&self) -> impl Iterator<Item = Endpoint> + '_ {
        self.endpoints.iter().map(|(addr, state)| Endpoint {
            addr: *addr,
            state: *state,
        })
    }
}

/// A service's ports, by port name, where it is placed, and the settings that apply to all
/// of its ports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceSpec {
    /// Ports by name (the Service's port name, e.g. `websecure`).
    pub ports: BTreeMap<String, PortSpec>,
    /// The pool of edges that serve it; `None` is the default pool
    /// ([`DEFAULT_POOL`](crate::DEFAULT_POOL)). See [`crate::placement`].
    pub pool: Option<String>,
    /// The address its ports bind on the edges (`ADDRESS:PORT`); `None` binds every address
    /// of the edge (`:PORT` and the node's extra binds).
    pub address: Option<IpAddr>,
    // Who may connect and where a client's connections go (Service fields `spec.
    // loadBalancerSourceRanges` and `spec.sessionAffinity`; see `service_fields`).
    /// The client address ranges allowed to connect to every port of the service:
    /// `None` lets everyone connect; `Some(ranges)` only clients inside one of `ranges`, so
    /// `Some(vec![])` lets **nobody** connect (a source uses it when the ranges it was given
    /// are invalid and there are no earlier valid ones to keep: a security setting fails
    /// closed). Sources give Kubernetes' empty list as `None`. Canonical form (see
    /// [`crate::normalize_source_ranges`]): host bits cleared, sorted, each once.
    pub source_ranges: Option<Vec<ipnet::IpNet>>,
    /// Client-IP session affinity; `None` balances every connection anew.
    pub session_affinity: Option<SessionAffinity>,
}

impl ServiceSpec {
    /// Checks the per-service settings: at most [`MAX_SOURCE_RANGES`] ranges, and an
    /// affinity timeout Kubernetes would accept.
    fn validate_fields(&self, key: &ServiceKey) -> Result<()> {
        if let Some(ranges) = &self.source_ranges
            && ranges.len() > MAX_SOURCE_RANGES
        {
            return Err(Error::InvalidSnapshot(format!(
                "{key} has {} source ranges; at most {MAX_SOURCE_RANGES} are allowed: merge them into wider ranges",
                ranges.len()
            )));
        }
        if let Some(affinity) = self.session_affinity
            && !(1..=SessionAffinity::MAX_TIMEOUT_SECONDS).contains(&affinity.timeout_seconds)
        {
            return Err(Error::InvalidSnapshot(format!(
                "{key} has session affinity timeout {}s; give 1 to {} seconds",
                affinity.timeout_seconds,
                SessionAffinity::MAX_TIMEOUT_SECONDS
            )));
        }
        Ok(())
    }
}

/// The whole desired state.
///
/// ```
/// use edgelb_core::{Endpoint, PortSpec, ProxyProtocol, ServiceKey, Snapshot};
/// let mut snap = Snapshot::default();
/// snap.insert_port(
///     ServiceKey::new("kube-system", "traefik")?,
///     "websecure",
///     PortSpec::new(443, ProxyProtocol::V2)
///         .with_endpoint(Endpoint::ready("10.42.0.7".parse()?, 8443)),
/// )?;
/// snap.validate()?;
/// assert_eq!(snap.endpoint_count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Services by key.
    pub services: BTreeMap<ServiceKey, ServiceSpec>,
}

impl Snapshot {
    /// Inserts (or replaces) one port of a service, validating the port name.
    pub fn insert_port(&mut self, key: ServiceKey, port_name: &str, port: PortSpec) -> Result<()> {
        validate_name("port name", port_name)?;
        self.services
            .entry(key)
            .or_default()
            .ports
            .insert(port_name.to_owned(), port);
        Ok(())
    }

    /// Every `(service, port name, port)` in order.
    pub fn ports(&self) -> impl Iterator<Item = (&ServiceKey, &str, &PortSpec)> {
        self.services.iter().flat_map(|(key, svc)| {
            svc.ports
                .iter()
                .map(move |(name, port)| (key, name.as_str(), port))
        })
    }

    /// How many endpoints the snapshot holds across all ports.
    pub fn endpoint_count(&self) -> usize {
        self.ports().map(|(_, _, p)| p.endpoints.len()).sum()
    }

    /// Checks the snapshot as a whole: every name is valid, no port is 0, every pool name
    /// and address is usable, and no two services of one pool claim the same listen port on
    /// overlapping addresses (see [`crate::placement`]). Services of different pools may share
    /// a port here; [`Snapshot::validate_on`] checks them on the edges they share. A snapshot
    /// that fails this never reaches a renderer.
    pub fn validate(&self) -> Result<()> {
        self.validate_entries()?;
        crate::placement::check_claims(self, |a, b| a == b)
    }

    /// Everything [`Snapshot::validate`] checks but the listen-port claims, which
    /// [`Snapshot::validate_on`] checks with the edges' pools instead.
    pub(crate) fn validate_entries(&self) -> Result<()> {
        for (key, svc) in &self.services {
            svc.validate_fields(key)?;
        }
        for (key, name, port) in self.ports() {
            validate_name("namespace", &key.namespace)?;
            validate_name("service name", &key.name)?;
            validate_name("port name", name)?;
            let owner = format!("{key}:{name}");
            if port.listen_port == 0 {
                return Err(Error::InvalidSnapshot(format!(
                    "{owner} has listen port 0; give it a port between 1 and 65535"
                )));
            }
            if let Some(addr) = port.endpoints.keys().find(|a| a.port() == 0) {
                return Err(Error::InvalidSnapshot(format!(
                    "{owner} has endpoint {addr} with port 0"
                )));
            }
        }
        for (key, spec) in &self.services {
            crate::placement::validate_placement(key, spec)?;
        }
        Ok(())
    }

    /// Listen ports in use, sorted.
    pub fn listen_ports(&self) -> BTreeSet<u16> {
        self.ports().map(|(_, _, p)| p.listen_port).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ServiceKey {
        s.parse().unwrap()
    }

    #[test]
    fn duplicate_endpoints_collapse_and_ready_wins() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let port = PortSpec::new(80, ProxyProtocol::V2)
            .with_endpoint(Endpoint::draining(ip, 8080))
            .with_endpoint(Endpoint::ready(ip, 8080))
            .with_endpoint(Endpoint::draining(ip, 8080));
        assert_eq!(
            port.endpoints().collect::<Vec<_>>(),
            vec![Endpoint::ready(ip, 8080)]
        );
    }

    #[test]
    fn listen_port_conflict_is_reported_with_both_owners() {
        let mut snap = Snapshot::default();
        snap.insert_port(key("a/x"), "http", PortSpec::new(80, ProxyProtocol::V2))
            .unwrap();
        snap.insert_port(key("b/y"), "web", PortSpec::new(80, ProxyProtocol::V1))
            .unwrap();
        let err = snap.validate().unwrap_err().to_string();
        assert!(err.contains("a/x:http") && err.contains("b/y:web"), "{err}");
    }

    #[test]
    fn service_key_parsing() {
        assert_eq!(
            key("kube-system/traefik").to_string(),
            "kube-system/traefik"
        );
        assert!("traefik".parse::<ServiceKey>().is_err());
        assert!("kube system/traefik".parse::<ServiceKey>().is_err());
    }

    #[test]
    fn equal_content_is_equal_regardless_of_insert_order() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = PortSpec::new(80, ProxyProtocol::V2)
            .with_endpoint(Endpoint::ready(ip("10.0.0.2"), 1))
            .with_endpoint(Endpoint::ready(ip("10.0.0.1"), 1));
        let b = PortSpec::new(80, ProxyProtocol::V2)
            .with_endpoint(Endpoint::ready(ip("10.0.0.1"), 1))
            .with_endpoint(Endpoint::ready(ip("10.0.0.2"), 1));
        assert_eq!(a, b);
    }
}

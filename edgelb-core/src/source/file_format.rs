//! The YAML format of an endpoints file (and of inline `services:` in edgelb's config).
//!
//! ```yaml
//! services:
//!   - namespace: demo
//!     name: web
//!     source_ranges: [192.168.0.0/16, "fd00::/8"]  # optional; absent: everyone, []: nobody
//!     session_affinity: {timeout_seconds: 10800}    # optional: client-IP affinity
//!     ports:
//!       - name: http
//!         listen: 8080
//!         proxy_protocol: v2        # v2 (default), v1 or none
//!         endpoints:
//!           - 127.0.0.1:9001        # ready
//!           - address: "[::1]:9002"
//!             state: draining       # ready (default) or draining
//!   - name: admin
//!     pool: internal                # served by the edges of pool `internal` only
//!     address: 192.0.2.10           # binds 192.0.2.10:443 instead of :443
//!     ports:
//!       - {name: https, listen: 443, endpoints: [127.0.0.1:9443]}
//! ```
//!
//! `pool` (default: the default pool) and `address` (default: every address) are explained
//! in [`crate::placement`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Endpoint, EndpointState, PortSpec, ProxyProtocol, ServiceKey, Snapshot};
use crate::service_fields::{SessionAffinity, normalize_source_ranges, parse_source_range};
use crate::yaml::YamlError;

/// A whole endpoints file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDocument {
    /// The services: required, as a list (`services: []` serves nothing, on purpose). A
    /// missing or null `services` is an error, so a truncated file is never read as "no
    /// services".
    #[serde(deserialize_with = "explicit_list")]
    pub services: Vec<ServiceEntry>,
}

fn explicit_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<ServiceEntry>, D::Error> {
    Option::<Vec<ServiceEntry>>::deserialize(d)?.ok_or_else(|| {
        serde::de::Error::custom(
            "services has no value; list the services, or write `services: []` to serve nothing on purpose",
        )
    })
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The pool of edges that serve it (default: the default pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The address its ports bind on those edges (default: every address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// Its ports.
    pub ports: Vec<PortEntry>,
    /// The client ranges (CIDRs, `10.0.0.0/8`, `fd00::/8`) allowed to connect to its ports;
    /// absent: everyone; `[]`: nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ranges: Option<Vec<String>>,
    /// Client-IP session affinity: connections from one client address go to the same
    /// endpoint while the client comes back within the timeout. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinityEntry>,
}

/// `session_affinity:` of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionAffinityEntry {
    /// Seconds a client's endpoint is remembered after its last connection (default 10800,
    /// at most 86400, as in Kubernetes).
    #[serde(default = "default_affinity_timeout")]
    pub timeout_seconds: u32,
}

fn default_affinity_timeout() -> u32 {
    SessionAffinity::DEFAULT_TIMEOUT_SECONDS
}

fn default_namespace() -> String {
    "default".to_owned()
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortEntry {
    /// Port name.
    pub name: String,
    /// Port the edge listens on.
    pub listen: u16,
    /// PROXY protocol towards the endpoints (default v2).
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<EndpointEntry>,
}

/// An endpoint: `IP:PORT` (ready), or `{address, state}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EndpointEntry {
    /// `10.0.0.1:80` or `[fd00::1]:80`.
    Plain(SocketAddr),
    /// With an explicit state.
    Detailed {
        /// `IP:PORT`.
        address: SocketAddr,
        /// Ready (default) or draining.
        state: EndpointState,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetailedEntry {
    address: String,
    #[serde(default)]
    state: EndpointState,
}

fn parse_endpoint_addr<E: serde::de::Error>(s: &str) -> std::result::Result<SocketAddr, E> {
    s.parse().map_err(|_| {
        E::custom(format!(
            "invalid endpoint address {s:?}: expected IP:PORT such as 10.0.0.1:80 or [fd00::1]:80"
        ))
    })
}

impl<'de> Deserialize<'de> for EndpointEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EndpointEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an endpoint as \"IP:PORT\" or {address: \"IP:PORT\", state: ready|draining}",
                )
            }
            fn visit_str<E: serde::de::Error>(
                self,
                s: &str,
            ) -> std::result::Result<EndpointEntry, E> {
                parse_endpoint_addr(s).map(EndpointEntry::Plain)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<EndpointEntry, A::Error> {
                let entry =
                    DetailedEntry::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(EndpointEntry::Detailed {
                    address: parse_endpoint_addr(&entry.address)?,
                    state: entry.state,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl SnapshotDocument {
    /// Parses YAML within [`yaml`](crate::yaml)'s budget; errors carry line and column.
    pub fn from_yaml(text: &str) -> std::result::Result<Self, YamlError> {
        crate::yaml::from_str(text)
    }

    /// Converts to a validated [`Snapshot`]. `origin` names the file in errors.
    pub fn into_snapshot(self, origin: &str) -> Result<Snapshot> {
        self.into_snapshot_from(origin, None)
    }

    /// Like [`SnapshotDocument::into_snapshot`], with the YAML `text` it was parsed from, so
    /// that errors about an entry can name its line.
    pub fn into_snapshot_from(self, origin: &str, text: Option<&str>) -> Result<Snapshot> {
        let fail = |message: String| Error::File {
            path: origin.into(),
            message,
        };
        let mut snapshot = Snapshot::default();
        let mut claimed: BTreeMap<u16, String> = BTreeMap::new();
        for (i, svc) in self.services.into_iter().enumerate() {
            let at = |what: &str, e: Error| fail(format!("services[{i}]{what}: {}", inner(e)));
            let key = ServiceKey::new(svc.namespace, svc.name).map_err(|e| at("", e))?;
            if snapshot.services.contains_key(&key) {
                return Err(fail(format!(
                    "services[{i}]: service {key} is listed twice; merge its ports into one entry"
                )));
            }
            let source_ranges =
                match svc.source_ranges {
                    None => None,
                    Some(texts) => {
                        let mut ranges = Vec::with_capacity(texts.len().min(1024));
                        for (k, text) in texts.iter().enumerate() {
                            ranges.push(parse_source_range(text).map_err(|e| {
                                fail(format!("services[{i}].source_ranges[{k}]: {e}"))
                            })?);
                        }
                        Some(normalize_source_ranges(ranges).map_err(|e| at(".source_ranges", e))?)
                    }
                };
            let session_affinity = match svc.session_affinity {
                None => None,
                Some(entry) => Some(
                    SessionAffinity::client_ip(entry.timeout_seconds)
                        .map_err(|e| at(".session_affinity", e))?,
                ),
            };
            let mut port_names = std::collections::BTreeSet::new();
            for (j, port) in svc.ports.into_iter().enumerate() {
                if !port_names.insert(port.name.clone()) {
                    return Err(fail(format!(
                        "services[{i}].ports[{j}]: port name {} is used twice in service {key}; give each port its own name",
                        crate::text::quoted(&port.name)
                    )));
                }
                let owner = format!("{key}:{}", port.name);
                // Placed services (a pool or an address) are checked as a whole below.
                let unplaced = svc.pool.is_none() && svc.address.is_none();
                if let (true, Some(first)) = (unplaced, claimed.get(&port.listen)) {
                    // The second `listen:` of this port is the claim that conflicts.
                    let line = text
                        .and_then(|t| listen_line(t, port.listen, 2))
                        .map(|n| format!(" (line {n})"))
                        .unwrap_or_default();
                    return Err(fail(format!(
                        "services[{i}].ports[{j}]{line}: listen port {} is claimed by both {first} and {owner}; give one of them another listen port",
                        port.listen
                    )));
                }
                if unplaced {
                    claimed.insert(port.listen, owner);
                }
                let mut spec = PortSpec::new(port.listen, port.proxy_protocol);
                for ep in port.endpoints {
                    spec.add_endpoint(match ep {
                        EndpointEntry::Plain(addr) => Endpoint {
                            addr,
                            state: EndpointState::Ready,
                        },
                        EndpointEntry::Detailed { address, state } => Endpoint {
                            addr: address,
                            state,
                        },
                    });
                }
                snapshot
                    .insert_port(key.clone(), &port.name, spec)
                    .map_err(|e| at(&format!(".ports[{j}]"), e))?;
            }
            // A service whose every port failed is not in the map; its settings go nowhere.
            if let Some(spec) = snapshot.services.get_mut(&key) {
                spec.pool = svc.pool;
                spec.address = svc.address;
                spec.source_ranges = source_ranges;
                spec.session_affinity = session_affinity;
            }
        }
        snapshot.validate().map_err(|e| fail(inner(e)))?;
        Ok(snapshot)
    }
}

/// An error's message without the "invalid snapshot: " its variant adds: the caller says
/// where instead.
fn inner(e: Error) -> String {
    match e {
        Error::InvalidSnapshot(message) => message,
        other => other.to_string(),
    }
}

/// The line (1-based) of the `nth` `listen: PORT` of `port` in `text`, in block or flow style.
fn listen_line(text: &str, port: u16, nth: usize) -> Option<usize> {
    let wanted = port.to_string();
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            line.split("listen:").skip(1).any(|rest| {
                let digits: String = rest
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits == wanted
            })
        })
        .nth(nth.checked_sub(1)?)
        .map(|(n, _)| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
services:
  - namespace: demo
    name: web
    ports:
      - name: http
        listen: 8080
        endpoints:
          - 127.0.0.1:9001
          - address: "[::1]:9002"
            state: draining
"#;

    #[test]
    fn parses_plain_and_detailed_endpoints() {
        let snap = SnapshotDocument::from_yaml(GOOD)
            .unwrap()
            .into_snapshot("t")
            .unwrap();
        let (_, name, port) = snap.ports().next().unwrap();
        assert_eq!(name, "http");
        assert_eq!(port.proxy_protocol, ProxyProtocol::V2);
        let eps: Vec<_> = port.endpoints().collect();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[1].state, EndpointState::Draining);
    }

    #[test]
    fn pool_and_address_are_read_and_checked_together() {
        let text = "services:\n  - {name: a, pool: public, address: 192.0.2.1, ports: [{name: https, listen: 443}]}\n  - {name: b, address: \"2001:db8::1\", ports: [{name: https, listen: 443}]}\n  - {name: c, pool: internal, ports: [{name: https, listen: 443}]}\n";
        let snap = SnapshotDocument::from_yaml(text)
            .unwrap()
            .into_snapshot("eps.yaml")
            .unwrap();
        let a = &snap.services[&ServiceKey::new("default", "a").unwrap()];
        assert_eq!(a.pool.as_deref(), Some("public"));
        assert_eq!(a.address, Some("192.0.2.1".parse().unwrap()));
        let b = &snap.services[&ServiceKey::new("default", "b").unwrap()];
        assert_eq!((b.pool.as_deref(), b.pool_name()), (None, "default"));
        let clash = text.replace("address: \"2001:db8::1\", ", "pool: public, ");
        let err = SnapshotDocument::from_yaml(&clash)
            .unwrap()
            .into_snapshot("eps.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("eps.yaml: listen port 443") && err.contains("default/b:https"),
            "{err}"
        );
        let bad = text.replace("192.0.2.1", "192.0.2.300");
        let err = SnapshotDocument::from_yaml(&bad).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let unspecified = text.replace("192.0.2.1", "0.0.0.0");
        let err = SnapshotDocument::from_yaml(&unspecified)
            .unwrap()
            .into_snapshot("eps.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("every address"), "{err}");
    }

    #[test]
    fn unknown_keys_are_reported_with_line() {
        let err =
            SnapshotDocument::from_yaml("services:\n  - name: a\n    prots: []\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("prots") && msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn bad_addresses_say_what_is_expected() {
        for bad in [
            "10.0.0.1",
            "10.0.0.300:80",
            "web:80",
            "{address: \"1.2.3.4\"}",
        ] {
            let text = GOOD.replace("127.0.0.1:9001", bad);
            let msg = SnapshotDocument::from_yaml(&text).unwrap_err().to_string();
            assert!(
                msg.contains("expected IP:PORT") && msg.contains("line"),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn bad_names_and_duplicates_are_rejected() {
        let bad = GOOD.replace("name: web", "name: \"web 1\"");
        let err = SnapshotDocument::from_yaml(&bad)
            .unwrap()
            .into_snapshot("f.yaml")
            .unwrap_err();
        assert!(err.to_string().contains("f.yaml: services[0]"), "{err}");
        let twice = format!("{GOOD}{}", &GOOD[GOOD.find("  - namespace").unwrap()..]);
        let err = SnapshotDocument::from_yaml(&twice)
            .unwrap()
            .into_snapshot("f")
            .unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[test]
    fn source_ranges_and_session_affinity_are_read_per_service() {
        let text = GOOD.replace(
            "name: web\n",
            "name: web\n    source_ranges: [10.1.2.3/8, \"fd00::/8\", 203.0.113.7]\n    session_affinity: {timeout_seconds: 600}\n",
        );
        let snap = SnapshotDocument::from_yaml(&text)
            .unwrap()
            .into_snapshot("f")
            .unwrap();
        let spec = snap.services.values().next().unwrap();
        let ranges: Vec<String> = spec
            .source_ranges
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ranges, ["10.0.0.0/8", "203.0.113.7/32", "fd00::/8"]);
        assert_eq!(spec.session_affinity.unwrap().timeout_seconds, 600);

        let default = GOOD.replace("name: web\n", "name: web\n    session_affinity: {}\n");
        let snap = SnapshotDocument::from_yaml(&default)
            .unwrap()
            .into_snapshot("f")
            .unwrap();
        let spec = snap.services.values().next().unwrap();
        assert_eq!(spec.session_affinity.unwrap().timeout_seconds, 10_800);
        assert_eq!(spec.source_ranges, None);

        for (bad, says) in [
            ("source_ranges: [10.0.0.0/33]", "source_ranges[0]"),
            ("source_ranges: [\"garbage\\nINFO forged\"]", "not a CIDR"),
            ("session_affinity: {timeout_seconds: 0}", "session_affinity"),
            ("session_affinity: {timeout_seconds: 86401}", "86400"),
        ] {
            let text = GOOD.replace("name: web\n", &format!("name: web\n    {bad}\n"));
            let err = SnapshotDocument::from_yaml(&text)
                .unwrap()
                .into_snapshot("f")
                .unwrap_err()
                .to_string();
            assert!(err.contains(says) && !err.contains('\n'), "{bad}: {err}");
        }
    }

    #[test]
    fn a_missing_or_null_service_list_is_an_error() {
        for text in ["services:\n", "{}\n", "---\n", "services: ~\n"] {
            let err = SnapshotDocument::from_yaml(text).unwrap_err().to_string();
            assert!(err.contains("services"), "{text:?}: {err}");
        }
        let none = SnapshotDocument::from_yaml("services: []\n").unwrap();
        assert!(none.services.is_empty());
    }

    #[test]
    fn a_port_name_used_twice_in_one_service_is_an_error_not_a_silent_drop() {
        let twice = GOOD.replace(
            "        endpoints:\n",
            "        endpoints: [\"10.0.0.9:80\"]\n      - name: http\n        listen: 8081\n        endpoints:\n",
        );
        let err = SnapshotDocument::from_yaml(&twice)
            .unwrap()
            .into_snapshot("f.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("services[0].ports[1]") && err.contains("\"http\" is used twice"),
            "{err}"
        );
    }

    /// 20,000 endpoints in one anchored list, aliased by `aliases` more ports.
    fn alias_bomb(aliases: usize) -> String {
        let eps: Vec<String> = (0..20_000)
            .map(|i| format!("\"10.{}.{}.1:80\"", (i >> 8) & 255, i & 255))
            .collect();
        let mut text = format!(
            "services:\n  - name: s0\n    ports:\n      - {{name: p0, listen: 1, endpoints: &a [{}]}}\n",
            eps.join(", ")
        );
        for j in 1..=aliases {
            text.push_str(&format!(
                "      - {{name: p{j}, listen: {}, endpoints: *a}}\n",
                j + 1
            ));
        }
        text
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_expands() {
        let text = alias_bomb(500);
        assert!(text.len() < 541 * 1024, "{}", text.len());
        let err = SnapshotDocument::from_yaml(&text).unwrap_err().to_string();
        assert!(err.contains("alias") && err.contains("line"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_in_linear_time() {
        let text = format!("services: {}\n", "[".repeat(160_000));
        let err = SnapshotDocument::from_yaml(&text).unwrap_err().to_string();
        assert!(err.contains("32 levels"), "{err}");
    }

    #[test]
    fn control_characters_in_the_input_never_reach_the_message() {
        let forged = "services:\n  - name: a\n    \"x\\n2026-01-01T00:00:00Z INFO forged\": 1\n";
        let err = SnapshotDocument::from_yaml(forged).unwrap_err().to_string();
        assert!(
            err.contains("unknown field") && !err.contains('\n'),
            "{err}"
        );
        let bad = GOOD.replace("name: web", "name: \"web\\nINFO forged\"");
        let err = SnapshotDocument::from_yaml(&bad)
            .unwrap()
            .into_snapshot("f")
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n') && err.contains("web\\nINFO"), "{err}");
    }

    #[test]
    fn a_listen_port_claimed_twice_names_the_file_entry_and_line_once() {
        let text = "services:\n  - name: web\n    ports:\n      - {name: http, listen: 8080}\n  - name: api\n    ports:\n      - name: http\n        listen: 8080\n";
        let err = SnapshotDocument::from_yaml(text)
            .unwrap()
            .into_snapshot_from("eps.yaml", Some(text))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "eps.yaml: services[1].ports[0] (line 8): listen port 8080 is claimed by both default/web:http and default/api:http; give one of them another listen port"
        );
    }
}

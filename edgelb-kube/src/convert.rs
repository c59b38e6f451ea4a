//! Pure conversion of Services and EndpointSlices into snapshot ports.
//!
//! The rules follow the EndpointSlice API:
//! * address types `IPv4` and `IPv6` are used; `FQDN` slices are skipped with a warning;
//! * an endpoint's first address is used (the API says addresses are fungible);
//! * `ready` absent counts as ready; `serving` absent defers to `ready`; `terminating` absent
//!   counts as false. Ready → [`EndpointState::Ready`], serving and terminating →
//!   [`EndpointState::Draining`], anything else is left out;
//! * a slice port matches a Service port by name (the EndpointSlice controller names slice
//!   ports after the Service port, and resolves named `targetPort`s per pod, so two slices of
//!   one Service may carry different numbers for the same port name);
//! * slices without a matching port contribute nothing to that port;
//! * an address listed in several slices appears once (ready wins over draining).

use std::collections::BTreeMap;
use std::net::IpAddr;

use edgelb_core::{Endpoint, EndpointState, PortSpec, ProxyProtocol};
use k8s_openapi::api::core::v1::{ObjectReference, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{self as discovery, EndpointConditions};
use kube::Resource;

use crate::source::SliceView;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Something about a Service that the operator should know (logged, and recorded as a
/// Warning Event when events are on).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Warning {
    /// The object it is about (`Service ns/name`).
    pub object: String,
    /// The object's reference for Events; `None` when the object is not known.
    pub regarding: Option<ObjectReference>,
    /// Short CamelCase reason (`UnsupportedProtocol`, `FqdnEndpoints`, ...).
    pub reason: &'static str,
    /// What is wrong and what edgelb did about it.
    pub message: String,
}

impl Warning {
    /// What identifies a warning across rebuilds.
    pub(crate) fn identity(&self) -> (String, &'static str, String) {
        (self.object.clone(), self.reason, self.message.clone())
    }

    pub(crate) fn about(svc: &Service, reason: &'static str, message: String) -> Self {
        Self {
            object: format!("Service {}", object_name(svc)),
            regarding: Some(svc.object_ref(&())),
            reason,
            message,
        }
    }
}

/// `namespace/name` of an object.
pub(crate) fn object_name<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// One Service port as the edge will expose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectedPort {
    /// Name in the snapshot: the Service port's name, or its number when unnamed.
    pub snapshot_name: String,
    /// The Service port's name as EndpointSlices carry it (`""` when unnamed).
    pub slice_port_name: String,
    /// Edge listen port.
    pub listen_port: u16,
    /// PROXY protocol towards the endpoints.
    pub proxy_protocol: ProxyProtocol,
}

/// Selects one port of `svc` for the edges: on `listen` (else its own number), with `proxy`.
/// `None`, with the reason in `warnings`, for a port edgelb cannot serve: not TCP (HAProxy
/// community edition has no UDP or SCTP), or a number that is no TCP port.
pub(crate) fn select_port(
    svc: &Service,
    p: &ServicePort,
    listen: Option<u16>,
    proxy: ProxyProtocol,
    warnings: &mut Vec<Warning>,
) -> Option<SelectedPort> {
    let name = snapshot_port_name(p);
    if port_protocol(p) != "TCP" {
        warnings.push(Warning::about(
            svc,
            "UnsupportedProtocol",
            format!(
                "port {name} ({}/{}) is not served: HAProxy community edition forwards TCP only",
                p.port,
                port_protocol(p)
            ),
        ));
        return None;
    }
    let Some(listen_port) = listen.or_else(|| listen_port_of(p)) else {
        warnings.push(Warning::about(
            svc,
            "InvalidPort",
            format!(
                "port {name} has number {}, which is no TCP port; skipped",
                p.port
            ),
        ));
        return None;
    };
    Some(SelectedPort {
        snapshot_name: name,
        slice_port_name: p.name.clone().unwrap_or_default(),
        listen_port,
        proxy_protocol: proxy,
    })
}

/// The protocol of a Service port (`TCP` when unset, as the API defaults it).
pub(crate) fn port_protocol(port: &ServicePort) -> &str {
    port.protocol.as_deref().unwrap_or("TCP")
}

/// The snapshot name of a Service port.
pub(crate) fn snapshot_port_name(port: &ServicePort) -> String {
    match port.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        // Named ports always contain a letter, so a bare number cannot clash with one.
        _ => port.port.to_string(),
    }
}

/// The Service port number as a listen port, if it is one.
pub(crate) fn listen_port_of(port: &ServicePort) -> Option<u16> {
    u16::try_from(port.port).ok().filter(|p| *p != 0)
}

/// The state an endpoint with these conditions gets, or `None` when it must not be used.
///
/// ```text
/// ready (absent = true)                     → Ready
/// serving (absent = ready) and terminating  → Draining
/// otherwise                                 → left out
/// ```
pub(crate) fn endpoint_state(conditions: Option<&EndpointConditions>) -> Option<EndpointState> {
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    if ready {
        Some(EndpointState::Ready)
    } else if serving && terminating {
        Some(EndpointState::Draining)
    } else {
        None
    }
}

/// Reads `EndpointSlice.endpoints`, which is a `Vec` up to Kubernetes 1.35 and an `Option<Vec>`
/// from 1.36 on in k8s-openapi; the library compiles against whichever version the binary picks.
pub(crate) trait SliceEndpoints {
    fn as_endpoints(&self) -> &[discovery::Endpoint];
}

impl SliceEndpoints for Vec<discovery::Endpoint> {
    fn as_endpoints(&self) -> &[discovery::Endpoint] {
        self
    }
}

impl SliceEndpoints for Option<Vec<discovery::Endpoint>> {
    fn as_endpoints(&self) -> &[discovery::Endpoint] {
        self.as_deref().unwrap_or(&[])
    }
}

/// Builds the snapshot ports of one Service from its selected ports and its slices.
///
/// Problems are pushed to `warnings` and the offending slice, endpoint or port is skipped.
pub(crate) fn build_ports(
    svc: &Service,
    selected: &[SelectedPort],
    slices: &[&SliceView],
    warnings: &mut Vec<Warning>,
) -> BTreeMap<String, PortSpec> {
    let mut ports: BTreeMap<String, PortSpec> = selected
        .iter()
        .map(|p| {
            (
                p.snapshot_name.clone(),
                PortSpec::new(p.listen_port, p.proxy_protocol),
            )
        })
        .collect();
    // Slices in name order, so warnings come out the same every time.
    let mut slices = slices.to_vec();
    slices.sort_by(|a, b| a.name.cmp(&b.name));
    for slice in slices {
        let slice_name = &slice.name;
        let want_v6 = match slice.address_type.as_str() {
            "IPv4" => false,
            "IPv6" => true,
            other => {
                warnings.push(Warning::about(
                    svc,
                    "UnsupportedAddressType",
                    format!(
                        "EndpointSlice {slice_name} has addressType {other:?}; edgelb only uses IPv4 and IPv6 slices and skips it"
                    ),
                ));
                continue;
            }
        };
        for sel in selected {
            let Some(slice_port) = slice
                .ports
                .iter()
                .find(|p| p.name == sel.slice_port_name && p.protocol == "TCP")
            else {
                continue; // this slice does not serve that port
            };
            let Some(target) = slice_port
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
            else {
                warnings.push(Warning::about(
                    svc,
                    "InvalidEndpointPort",
                    format!(
                        "EndpointSlice {slice_name} port {:?} has no usable port number ({:?}); skipped",
                        sel.slice_port_name, slice_port.port
                    ),
                ));
                continue;
            };
            let Some(spec) = ports.get_mut(&sel.snapshot_name) else {
                continue;
            };
            for endpoint in &slice.endpoints {
                let first = &endpoint.address;
                match first.parse::<IpAddr>() {
                    Ok(ip) if ip.is_ipv6() == want_v6 => spec.add_endpoint(match endpoint.state {
                        EndpointState::Ready => Endpoint::ready(ip, target),
                        EndpointState::Draining => Endpoint::draining(ip, target),
                    }),
                    _ => warnings.push(Warning::about(
                        svc,
                        "InvalidEndpointAddress",
                        format!(
                            "EndpointSlice {slice_name} (addressType {}) lists address {first:?}, which is not an address of that family; skipped",
                            slice.address_type
                        ),
                    )),
                }
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(
        ready: Option<bool>,
        serving: Option<bool>,
        terminating: Option<bool>,
    ) -> EndpointConditions {
        EndpointConditions {
            ready,
            serving,
            terminating,
        }
    }

    #[test]
    fn endpoint_conditions_follow_kubernetes_semantics() {
        use EndpointState::*;
        let t = Some(true);
        let f = Some(false);
        // No conditions at all: ready.
        assert_eq!(endpoint_state(None), Some(Ready));
        assert_eq!(
            endpoint_state(Some(&conditions(None, None, None))),
            Some(Ready)
        );
        assert_eq!(endpoint_state(Some(&conditions(t, t, f))), Some(Ready));
        // Terminating but still serving: drain.
        assert_eq!(endpoint_state(Some(&conditions(f, t, t))), Some(Draining));
        // Terminating and no longer serving: gone.
        assert_eq!(endpoint_state(Some(&conditions(f, f, t))), None);
        // Not ready, not terminating (starting up, failing probes): gone.
        assert_eq!(endpoint_state(Some(&conditions(f, f, f))), None);
        assert_eq!(endpoint_state(Some(&conditions(f, None, None))), None);
        // serving absent defers to ready.
        assert_eq!(endpoint_state(Some(&conditions(f, None, t))), None);
        assert_eq!(
            endpoint_state(Some(&conditions(None, None, t))),
            Some(Ready)
        );
    }

    fn svc() -> Service {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "1"},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}
        }))
        .unwrap()
    }

    fn slice(v: serde_json::Value) -> SliceView {
        SliceView::of(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn fqdn_slices_and_foreign_families_are_skipped_with_warnings() {
        let sel = [SelectedPort {
            snapshot_name: "http".into(),
            slice_port_name: "http".into(),
            listen_port: 80,
            proxy_protocol: ProxyProtocol::V2,
        }];
        let fqdn = slice(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-fqdn", "namespace": "shop"},
            "addressType": "FQDN",
            "endpoints": [{"addresses": ["db.example.com"]}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }));
        let mixed = slice(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-v4", "namespace": "shop"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["fd00::1"]}, {"addresses": ["10.0.0.1"]}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }));
        let mut warnings = Vec::new();
        let ports = build_ports(&svc(), &sel, &[&fqdn, &mixed], &mut warnings);
        let http = &ports["http"];
        assert_eq!(
            http.endpoints().collect::<Vec<_>>(),
            vec![Endpoint::ready("10.0.0.1".parse().unwrap(), 8080)]
        );
        let reasons: Vec<_> = warnings.iter().map(|w| w.reason).collect();
        assert_eq!(
            reasons,
            ["UnsupportedAddressType", "InvalidEndpointAddress"]
        );
        assert!(warnings[0].message.contains("web-fqdn"), "{warnings:?}");
        assert_eq!(warnings[0].object, "Service shop/web");
    }

    #[test]
    fn unnamed_ports_are_named_by_number() {
        let port: ServicePort =
            serde_json::from_value(serde_json::json!({"port": 443, "targetPort": 8443})).unwrap();
        assert_eq!(snapshot_port_name(&port), "443");
        assert_eq!(port_protocol(&port), "TCP");
        assert_eq!(listen_port_of(&port), Some(443));
    }
}

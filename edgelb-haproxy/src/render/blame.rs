//! Which services a refused config is to be blamed on (see
//! [`Renderer::blame`](edgelb_core::Renderer::blame)), read from what the node said:
//!
//! - a taken listen port ([`DeployError::ListenPortTaken`]): the services whose frontends
//!   bind it;
//! - HAProxy's own words (`haproxy -c`, a reload's message): the config lines it names
//!   (`parsing [/etc/haproxy/haproxy.cfg.edgelb-new:42]`) mapped to the section holding them,
//!   and the frontend and backend names it mentions (`proxy 'fe_443'`).
//!
//! Sections are matched to services by the names the renderer gives them
//! ([`frontend_name_at`], [`backend_name`]), so this works for a user template too as long as it
//! keeps those names. A line in `global` or `defaults` is nobody's service: the blame is then
//! empty, and the pipeline does not guess.

use std::collections::{BTreeMap, BTreeSet};

use edgelb_core::{DeployError, RenderedConfig, ServiceKey, Snapshot};

use super::ident::{backend_name, frontend_name_at};
use crate::config_sections::{Section, section_at, sections};

/// The services `error` points at in `config` (rendered from `snapshot`); `None` when it
/// points at nothing this can read.
pub(crate) fn blame(
    snapshot: &Snapshot,
    config: &RenderedConfig,
    error: &DeployError,
) -> Option<BTreeSet<ServiceKey>> {
    let owners = section_owners(snapshot);
    let sections = sections(&config.text);
    match error {
        DeployError::ListenPortTaken { ports, .. } => {
            let blamed: BTreeSet<ServiceKey> = sections
                .iter()
                .filter(|s| ports.iter().any(|p| s.bind_ports.contains(p)))
                .filter_map(|s| owners.get(s.name).cloned())
                .collect();
            (!blamed.is_empty()).then_some(blamed)
        }
        DeployError::ConfigRejected { haproxy_output, .. } => {
            from_message(haproxy_output, &sections, &owners)
        }
        DeployError::ReloadFailed { message, .. } => from_message(message, &sections, &owners),
        _ => None,
    }
}

/// Every frontend and backend name the renderer gives `snapshot`'s services, with the service.
fn section_owners(snapshot: &Snapshot) -> BTreeMap<String, ServiceKey> {
    let mut owners = BTreeMap::new();
    for (key, spec) in &snapshot.services {
        for (port_name, port) in &spec.ports {
            owners.insert(
                frontend_name_at(port.listen_port, spec.address),
                key.clone(),
            );
            if let Ok(name) = backend_name(key, port_name) {
                owners.insert(name, key.clone());
            }
        }
    }
    owners
}

/// Reads HAProxy's message: its `[ALERT]` lines when it has any (warnings name lines that are
/// fine), else all of it.
fn from_message(
    message: &str,
    sections: &[Section<'_>],
    owners: &BTreeMap<String, ServiceKey>,
) -> Option<BTreeSet<ServiceKey>> {
    let alerts: Vec<&str> = message.lines().filter(|l| l.contains("[ALERT]")).collect();
    let lines: Vec<&str> = if alerts.is_empty() {
        message.lines().collect()
    } else {
        alerts
    };
    let mut blamed = BTreeSet::new();
    let mut names_no_service = false;
    for line in lines {
        // A line that names a Service's section is about that section: its address (say
        // `[192.0.2.9:443]`, an address the edge lacks) must not blame every other Service
        // on the same port.
        let named: Vec<&ServiceKey> = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
            .filter_map(|word| owners.get(word))
            .collect();
        for reference in references(line) {
            if !named.is_empty() && matches!(reference, Reference::Address(_)) {
                continue;
            }
            match reference {
                Reference::Line(number) => match section_at(sections, number) {
                    Some(s) => match owners.get(s.name) {
                        Some(key) => {
                            blamed.insert(key.clone());
                        }
                        None => names_no_service = true,
                    },
                    None => names_no_service = true,
                },
                Reference::Address(port) => blamed.extend(
                    sections
                        .iter()
                        .filter(|s| s.bind_ports.contains(&port))
                        .filter_map(|s| owners.get(s.name).cloned()),
                ),
            }
        }
        blamed.extend(named.into_iter().cloned());
    }
    if blamed.is_empty() && !names_no_service {
        return None;
    }
    Some(blamed)
}

/// What a `[…]` in HAProxy's output points at.
#[derive(Debug, PartialEq, Eq)]
enum Reference {
    /// `[/etc/haproxy/haproxy.cfg:42]`: a line of the file.
    Line(usize),
    /// `[0.0.0.0:443]`, `[:::443]`: a listening address, by its port.
    Address(u16),
}

/// The `[FILE:LINE]` and `[ADDRESS:PORT]` references in one line of HAProxy's output.
fn references(line: &str) -> Vec<Reference> {
    line.split('[')
        .skip(1)
        .filter_map(|rest| {
            let inside = rest.split(']').next()?;
            let (place, number) = inside.rsplit_once(':')?;
            if place.contains('/') || place.ends_with(".cfg") {
                number.parse().ok().map(Reference::Line)
            } else if place.is_empty()
                || place == "*"
                || place.trim_matches(':').parse::<std::net::IpAddr>().is_ok()
                || place.parse::<std::net::IpAddr>().is_ok()
            {
                number.parse().ok().map(Reference::Address)
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgelb_core::{Endpoint, PortSpec, ProxyProtocol};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for (name, listen) in [("web", 443), ("ssh", 22)] {
            s.insert_port(
                ServiceKey::new("default", name).unwrap(),
                "p",
                PortSpec::new(listen, ProxyProtocol::V2)
                    .with_endpoint(Endpoint::ready([10, 0, 0, 1].into(), 80)),
            )
            .unwrap();
        }
        s
    }

    fn config() -> RenderedConfig {
        RenderedConfig::from_body(
            "global\n    master-worker\n\nfrontend fe_22\n    bind :22\n    default_backend be_default_ssh_p\n\nfrontend fe_443\n    bind :443\n    default_backend be_default_web_p\n\nbackend be_default_ssh_p\n    server s001 10.0.0.1:80 frobnicate\n\nbackend be_default_web_p\n    server s001 10.0.0.1:80\n"
                .to_owned(),
        )
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("default", name).unwrap()
    }

    #[test]
    fn a_taken_port_blames_the_services_binding_it() {
        let err = DeployError::ListenPortTaken {
            node: "e".into(),
            ports: vec![22],
        };
        assert_eq!(
            blame(&snapshot(), &config(), &err),
            Some([key("ssh")].into())
        );
    }

    #[test]
    fn a_line_haproxy_names_blames_its_section_and_global_blames_nobody() {
        // Line 14 of the file (the digest line is line 1) is the bad server line.
        let err = DeployError::ConfigRejected {
            node: "e".into(),
            haproxy_output: "[NOTICE]   (1) : haproxy version is 2.6.12\n[ALERT]    (1) : config : parsing [/etc/haproxy/haproxy.cfg.edgelb-new:14] : 'server s001' unknown keyword 'frobnicate'.\n[ALERT]    (1) : config : Fatal errors found in configuration.".into(),
        };
        assert_eq!(
            blame(&snapshot(), &config(), &err),
            Some([key("ssh")].into())
        );

        let global = DeployError::ConfigRejected {
            node: "e".into(),
            haproxy_output: "[ALERT]    (1) : config : parsing [/x.cfg:3] : unknown keyword 'bogus' in 'global' section".into(),
        };
        assert_eq!(
            blame(&snapshot(), &config(), &global),
            Some(BTreeSet::new())
        );
    }

    #[test]
    fn a_section_name_in_the_message_blames_its_service() {
        let err = DeployError::ReloadFailed {
            node: "e".into(),
            message: "[ALERT]    (9) : Starting proxy fe_443: cannot bind socket (Address already in use) [0.0.0.0:443]".into(),
            rolled_back: true,
        };
        assert_eq!(
            blame(&snapshot(), &config(), &err),
            Some([key("web")].into())
        );
    }

    #[test]
    fn an_address_in_the_message_blames_the_services_binding_its_port() {
        let err = DeployError::ReloadFailed {
            node: "e".into(),
            message: "[ALERT]    (9) : Starting frontend GLOBAL: cannot bind socket (Address already in use) [0.0.0.0:22]".into(),
            rolled_back: true,
        };
        assert_eq!(
            blame(&snapshot(), &config(), &err),
            Some([key("ssh")].into())
        );
        assert_eq!(
            references("x [/etc/h.cfg:7] y [10.0.0.1:80] [:::443] [warning]"),
            vec![
                Reference::Line(7),
                Reference::Address(80),
                Reference::Address(443)
            ]
        );
    }

    #[test]
    fn an_address_the_edge_lacks_blames_only_the_service_placed_on_it() {
        let mut s = Snapshot::default();
        for (name, address) in [("web", "192.0.2.1"), ("api", "192.0.2.9")] {
            s.insert_port(key(name), "p", PortSpec::new(443, ProxyProtocol::V2))
                .unwrap();
            s.services.get_mut(&key(name)).unwrap().address = Some(address.parse().unwrap());
        }
        let config = RenderedConfig::from_body(
            "global\n\nfrontend fe_443_192.0.2.1\n    bind 192.0.2.1:443\n    default_backend be_default_web_p\n\nfrontend fe_443_192.0.2.9\n    bind 192.0.2.9:443\n    default_backend be_default_api_p\n"
                .to_owned(),
        );
        let err = DeployError::ReloadFailed {
            node: "e".into(),
            message: "[ALERT]    (9) : Starting frontend fe_443_192.0.2.9: cannot bind socket (Cannot assign requested address) [192.0.2.9:443]".into(),
            rolled_back: true,
        };
        assert_eq!(blame(&s, &config, &err), Some([key("api")].into()));
    }

    #[test]
    fn a_message_that_names_nothing_cannot_tell() {
        let err = DeployError::ReloadFailed {
            node: "e".into(),
            message: "haproxy could not start a worker with the new config".into(),
            rolled_back: true,
        };
        assert_eq!(blame(&snapshot(), &config(), &err), None);
        let connect = DeployError::Connect {
            node: "e".into(),
            message: "refused".into(),
        };
        assert_eq!(blame(&snapshot(), &config(), &connect), None);
    }
}

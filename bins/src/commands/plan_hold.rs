//! The empty-backend hold as `run` applies it, for `plan`: a backend that has endpoints live
//! on an edge and that the source now leaves empty (or drops) keeps its live endpoints until
//! the emptiness has lasted `pipeline.empty_backend_hold`. `plan` cannot know how long a
//! running controller has seen the emptiness, so it shows the held state and says so.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use edgelb_core::{Endpoint, EndpointState, PortSpec, ServiceKey, Snapshot};

/// One backend of a live config, as the builtin template describes it.
type LiveBackends = BTreeMap<(ServiceKey, String), PortSpec>;

/// What `run` would apply: `incoming` with the backends it holds restored from `live` (a
/// config edgelb rendered), and the held backends' names (`namespace/name:port`).
pub fn apply(incoming: &Snapshot, live: &str, hold: Duration) -> (Snapshot, Vec<String>) {
    if hold.is_zero() {
        return (incoming.clone(), Vec::new());
    }
    let mut effective = incoming.clone();
    let mut held = Vec::new();
    for ((key, name), live_port) in live_backends(live) {
        if live_port.endpoints.is_empty() {
            continue;
        }
        let now = incoming.services.get(&key).and_then(|s| s.ports.get(&name));
        if now.is_some_and(|p| !p.endpoints.is_empty()) {
            continue;
        }
        let mut restored = live_port;
        if let Some(p) = now {
            // The new listen port and PROXY setting go out; only the endpoints stay.
            restored.listen_port = p.listen_port;
            restored.proxy_protocol = p.proxy_protocol;
        }
        held.push(format!("{key}:{name}"));
        effective
            .services
            .entry(key)
            .or_default()
            .ports
            .insert(name, restored);
    }
    if !held.is_empty() && effective.validate().is_err() {
        // A restored backend would clash with a new one (a reused listen port): as in `run`,
        // the source's word wins.
        return (incoming.clone(), Vec::new());
    }
    (effective, held)
}

/// The backends of a config rendered by the builtin template: each starts with the comment
/// `# NAMESPACE/NAME port PORT: listen N, PROXY v2, …`, then `backend …` and its `server`
/// lines. Spare (`disabled`) slots are left out; `weight 0` is a draining endpoint.
fn live_backends(config: &str) -> LiveBackends {
    let mut out = LiveBackends::new();
    let mut current: Option<(ServiceKey, String)> = None;
    for line in config.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            current = backend_comment(comment).map(|(key, name, port)| {
                out.insert((key.clone(), name.clone()), port);
                (key, name)
            });
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["backend", ..] => {}
            ["server", _, addr, rest @ ..] => {
                let (Some(backend), Ok(addr)) = (&current, addr.parse::<SocketAddr>()) else {
                    continue;
                };
                if rest.contains(&"disabled") {
                    continue;
                }
                let state = if rest.windows(2).any(|w| w == ["weight", "0"]) {
                    EndpointState::Draining
                } else {
                    EndpointState::Ready
                };
                if let Some(port) = out.get_mut(backend) {
                    port.add_endpoint(Endpoint { addr, state });
                }
            }
            [first, ..] if !line.starts_with(char::is_whitespace) && !first.starts_with('#') => {
                current = None;
            }
            _ => {}
        }
    }
    out
}

/// `demo/web port http: listen 8080, PROXY v2, 1 of 4 slots in use`.
fn backend_comment(comment: &str) -> Option<(ServiceKey, String, PortSpec)> {
    let (head, tail) = comment.split_once(": listen ")?;
    let (service, port_name) = head.split_once(" port ")?;
    let key: ServiceKey = service.parse().ok()?;
    let (listen, tail) = tail.split_once(", PROXY ")?;
    let proxy = tail.split(',').next()?.trim().parse().ok()?;
    Some((
        key,
        port_name.to_owned(),
        PortSpec::new(listen.trim().parse().ok()?, proxy),
    ))
}

#[cfg(test)]
mod tests {
    use edgelb_core::{EdgeNode, ProxyProtocol, Renderer};
    use edgelb_haproxy::{HaproxyRenderer, RenderOptions};

    use super::*;

    fn snapshot(endpoints: &[Endpoint], other: bool) -> Snapshot {
        let mut s = Snapshot::default();
        let mut web = PortSpec::new(8080, ProxyProtocol::V2);
        for e in endpoints {
            web.add_endpoint(*e);
        }
        s.insert_port(ServiceKey::new("demo", "web").unwrap(), "http", web)
            .unwrap();
        if other {
            s.insert_port(
                ServiceKey::new("demo", "api").unwrap(),
                "http",
                PortSpec::new(8081, ProxyProtocol::None)
                    .with_endpoint(Endpoint::ready([10, 0, 0, 9].into(), 80)),
            )
            .unwrap();
        }
        s
    }

    fn render(s: &Snapshot) -> String {
        HaproxyRenderer::new(RenderOptions::default())
            .unwrap()
            .render(s, &EdgeNode::new("edge-1"))
            .unwrap()
            .text
    }

    #[test]
    fn reads_the_live_backends_back() {
        let eps = [
            Endpoint::ready([10, 0, 0, 1].into(), 80),
            Endpoint::draining([10, 0, 0, 2].into(), 80),
        ];
        let live = snapshot(&eps, true);
        let read: Snapshot = {
            let mut s = Snapshot::default();
            for ((key, name), port) in live_backends(&render(&live)) {
                s.insert_port(key, &name, port).unwrap();
            }
            s
        };
        assert_eq!(read, live);
    }

    #[test]
    fn an_emptied_or_dropped_backend_is_held_and_the_rest_goes_out() {
        let ep = Endpoint::ready([10, 0, 0, 1].into(), 80);
        let live = render(&snapshot(&[ep], false));
        let hold = Duration::from_secs(10);

        let (effective, held) = apply(&snapshot(&[], true), &live, hold);
        assert_eq!(held, ["demo/web:http"]);
        assert_eq!(effective, snapshot(&[ep], true));

        let (effective, held) = apply(&Snapshot::default(), &live, hold);
        assert_eq!(held, ["demo/web:http"]);
        assert_eq!(effective, snapshot(&[ep], false));

        let (effective, held) = apply(&snapshot(&[], false), &live, Duration::ZERO);
        assert!(held.is_empty());
        assert_eq!(effective, snapshot(&[], false));
    }
}

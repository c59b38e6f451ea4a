//! The template context: what a snapshot and a node look like to `haproxy.cfg.j2`.
//!
//! Everything here is built from validated input only, in a fixed order, so equal input gives
//! an equal context. Values are minijinja lists and maps with fixed keys (read like plain
//! maps, keys in order; a server is an object of its own); the keys are listed in the
//! built-in template's header comment.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use edgelb_core::{EdgeNode, EndpointState, IpNet, ProxyProtocol, SessionAffinity, Snapshot};
use minijinja::Value;
use minijinja::value::Object;

use super::acl::{AclSlot, acl_slot, placed_ranks, source_acl_lines};
use super::ident::{backend_name, bind_address, frontend_name_at, placed_bind, server_address};
use super::options::RenderOptions;
use super::slots::{SlotMemory, SlotView, slot_name};
use crate::error::{Error, Result};

/// Where spare slots point until the runtime API gives them an endpoint. Port 1 on the
/// loopback: HAProxy accepts it, and a disabled server is never connected to or checked.
pub const SPARE_ADDRESS: &str = "127.0.0.1:1";

/// One backend before its servers are placed in slots.
struct BackendInput<'a> {
    name: String,
    service: String,
    namespace: &'a str,
    service_name: &'a str,
    port_name: &'a str,
    listen_port: u16,
    /// The address the Service asked for; `None` binds the node's binds for the port.
    address: Option<IpAddr>,
    /// Where the frontend listens, as the source ACL ids need it.
    acl_slot: AclSlot,
    proxy_protocol: ProxyProtocol,
    endpoints: &'a BTreeMap<SocketAddr, EndpointState>,
    source_ranges: Option<&'a [IpNet]>,
    session_affinity: Option<SessionAffinity>,
}

/// Entries of a backend's stick table (client-IP session affinity). Memory is taken as
/// clients arrive (about 100 bytes each); when the table is full, HAProxy drops the entries
/// used longest ago, so beyond this many clients within the timeout some lose affinity.
pub const AFFINITY_TABLE_SIZE: &str = "100k";

/// A frontend's source ACL lines for the template: `none` when everyone may connect.
fn source_acls(input: &BackendInput<'_>, owner: &str) -> Result<Value> {
    let Some(ranges) = input.source_ranges else {
        return Ok(Value::from(()));
    };
    let lines = source_acl_lines(input.acl_slot, ranges).ok_or_else(|| Error::InvalidInput {
        what: "source ranges",
        value: owner.to_owned(),
        reason: format!(
            "{} ranges are more than edgelb renders; merge them into wider ranges",
            ranges.len()
        ),
    })?;
    Ok(Value::from(
        lines
            .into_iter()
            .map(|(id, patterns)| {
                map([("id", Value::from(id)), ("patterns", Value::from(patterns))])
            })
            .collect::<Vec<_>>(),
    ))
}

/// A backend's session affinity for the template: `none`, or the stick table's settings.
fn affinity(input: &BackendInput<'_>) -> Value {
    input.session_affinity.map_or(Value::from(()), |a| {
        map([
            ("timeout", Value::from(format!("{}s", a.timeout_seconds))),
            ("table_size", Value::from(AFFINITY_TABLE_SIZE)),
        ])
    })
}

/// One `server` line, exposed to templates as an object (cheaper than a map for the
/// thousands of servers a big snapshot has). Its name is made from its number when a
/// template asks, and a spare slot holds no address of its own: at 80,000 slots, two
/// strings fewer per slot are megabytes fewer while the config renders.
#[derive(Debug)]
struct ServerView {
    /// HAProxy's numeric server id: the slot's number (its name is [`slot_name`] of it).
    id: usize,
    /// The server's `ADDR:PORT`; `None` for a spare slot ([`SPARE_ADDRESS`]).
    address: Option<String>,
    state: ServerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    Ready,
    Draining,
    /// A removed endpoint's reserved slot: maintenance at its old address.
    Leaving,
    Spare,
}

impl ServerState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Leaving => "leaving",
            Self::Spare => "spare",
        }
    }
}

const SERVER_KEYS: [&str; 6] = ["name", "id", "address", "state", "spare", "draining"];

impl Object for ServerView {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "name" => Value::from(slot_name(self.id.saturating_sub(1))),
            "id" => Value::from(self.id),
            "address" => Value::from(self.address.as_deref().unwrap_or(SPARE_ADDRESS)),
            "state" => Value::from(self.state.as_str()),
            // A leaving slot is disabled like a spare one; it only keeps its old address.
            "spare" => Value::from(matches!(
                self.state,
                ServerState::Spare | ServerState::Leaving
            )),
            "draining" => Value::from(self.state == ServerState::Draining),
            _ => return None,
        })
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Str(&SERVER_KEYS)
    }
}

fn map<const N: usize>(mut pairs: [(&'static str, Value); N]) -> Value {
    // In key order, as a BTreeMap would give them to a template that iterates.
    pairs.sort_by_key(|(key, _)| *key);
    Value::from_object(Fields(pairs))
}

/// A map with fixed keys, as templates see it: the pairs in one array, not a BTreeMap's
/// nodes (two of these per backend, 10,000 at 5,000 Services, while the config renders).
/// Its keys are unique and sorted ([`map`]).
#[derive(Debug)]
struct Fields<const N: usize>([(&'static str, Value); N]);

impl<const N: usize> Object for Fields<N> {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.0
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.clone())
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.0.iter().map(|(name, _)| Value::from(*name)).collect(),
        )
    }
}

/// The `send-proxy*` keyword of a PROXY protocol version (empty for none).
fn send_proxy_keyword(proxy: ProxyProtocol) -> &'static str {
    match proxy {
        ProxyProtocol::V2 => "send-proxy-v2",
        ProxyProtocol::V1 => "send-proxy",
        ProxyProtocol::None => "",
    }
}

/// What every server line of a backend carries after its address.
fn server_options(opts: &RenderOptions, proxy: ProxyProtocol) -> String {
    let mut words: Vec<String> = Vec::new();
    let hc = &opts.health_check;
    if hc.enabled {
        words.push(format!(
            "check inter {} fall {} rise {}",
            hc.interval, hc.fall, hc.rise
        ));
    }
    let send_proxy = send_proxy_keyword(proxy);
    if !send_proxy.is_empty() {
        words.push(send_proxy.to_owned());
        if hc.enabled {
            // Endpoints that expect a PROXY header would reject a bare health check.
            words.push("check-send-proxy".to_owned());
        }
    }
    words.join(" ")
}

/// The node's `bind` addresses for a listen port, checked, without duplicates, in order.
fn binds(node: &EdgeNode, listen_port: u16, socket_dirs: &[String]) -> Result<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for bind in node.binds_for(listen_port) {
        let bind = bind_address(&bind, &node.name, listen_port, socket_dirs)?;
        if seen.insert(bind.clone()) {
            out.push(bind);
        }
    }
    Ok(out)
}

/// The template context, and how many server lines and frontends it holds (what a render's
/// work grows with).
pub(crate) struct Context {
    pub(crate) value: Value,
    pub(crate) items: u64,
}

/// Builds the template context for `node`, placing every backend's endpoints in slots.
/// `snapshot` and `node` must have been validated.
pub(crate) fn build(
    snapshot: &Snapshot,
    node: &EdgeNode,
    opts: &RenderOptions,
    memory: &mut SlotMemory,
) -> Result<Context> {
    let mut inputs = Vec::new();
    let ranks = placed_ranks(snapshot);
    for (key, spec) in &snapshot.services {
        for (port_name, port) in &spec.ports {
            inputs.push(BackendInput {
                name: backend_name(key, port_name)?,
                service: key.to_string(),
                namespace: &key.namespace,
                service_name: &key.name,
                port_name,
                listen_port: port.listen_port,
                address: spec.address,
                acl_slot: acl_slot(&ranks, port.listen_port, spec.address),
                proxy_protocol: port.proxy_protocol,
                endpoints: &port.endpoints,
                source_ranges: spec.source_ranges.as_deref(),
                session_affinity: spec.session_affinity,
            });
        }
    }

    let mut backends = Vec::with_capacity(inputs.len());
    let mut items: u64 = 0;
    let mut frontends = BTreeMap::new();
    for input in &inputs {
        let owner = format!("{}:{}", input.service, input.port_name);
        let slots = memory
            .table(&input.name)
            .assign(input.endpoints.keys(), &opts.slots);
        let mut servers = Vec::with_capacity(slots.len());
        items = items.saturating_add(slots.len() as u64 + 1);
        for (index, occupant) in slots.iter().enumerate() {
            let (address, state) = match occupant {
                SlotView::Endpoint(addr) => {
                    let state = match input.endpoints.get(addr) {
                        Some(EndpointState::Draining) => ServerState::Draining,
                        _ => ServerState::Ready,
                    };
                    (Some(server_address(addr, &owner)?), state)
                }
                SlotView::Leaving(addr) => match server_address(addr, &owner) {
                    Ok(address) => (Some(address), ServerState::Leaving),
                    // An address a failed render refused was never live: nothing to drain.
                    Err(_) => (None, ServerState::Spare),
                },
                SlotView::Spare => (None, ServerState::Spare),
            };
            servers.push(Value::from_object(ServerView {
                id: index + 1,
                address,
                state,
            }));
        }
        backends.push(map([
            ("name", Value::from(input.name.as_str())),
            ("service", Value::from(input.service.as_str())),
            ("namespace", Value::from(input.namespace)),
            ("service_name", Value::from(input.service_name)),
            ("port_name", Value::from(input.port_name)),
            ("listen_port", Value::from(input.listen_port)),
            ("balance", Value::from(opts.balance.to_string())),
            (
                "proxy_protocol",
                Value::from(input.proxy_protocol.to_string()),
            ),
            (
                "send_proxy",
                Value::from(send_proxy_keyword(input.proxy_protocol)),
            ),
            (
                "server_options",
                Value::from(server_options(opts, input.proxy_protocol)),
            ),
            ("endpoint_count", Value::from(input.endpoints.len())),
            ("affinity", affinity(input)),
            ("servers", Value::from(servers)),
        ]));
        let binds = match input.address {
            Some(address) => vec![placed_bind(address, input.listen_port)],
            None => binds(node, input.listen_port, &opts.socket_dirs)?,
        };
        frontends.insert(
            (input.listen_port, input.address),
            map([
                (
                    "name",
                    Value::from(frontend_name_at(input.listen_port, input.address)),
                ),
                ("listen_port", Value::from(input.listen_port)),
                ("address", Value::from(input.address.map(|a| a.to_string()))),
                ("binds", Value::from(binds)),
                ("backend", Value::from(input.name.as_str())),
                ("service", Value::from(input.service.as_str())),
                ("port_name", Value::from(input.port_name)),
                ("source_acls", source_acls(input, &owner)?),
                ("source_acl_name", Value::from(super::acl::SOURCE_ACL_NAME)),
            ]),
        );
    }
    let keep: BTreeSet<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    memory.retain(&keep);

    let hc = &opts.health_check;
    let t = &opts.timeouts;
    let value = map([
        ("node", map([("name", Value::from(node.name.as_str()))])),
        (
            "global",
            map([
                ("stats_socket", Value::from(opts.stats_socket.as_str())),
                (
                    "hard_stop_after",
                    Value::from(opts.hard_stop_after.to_string()),
                ),
                ("maxconn", Value::from(opts.maxconn)),
                (
                    "httpclient_system_ca",
                    Value::from(opts.httpclient_system_ca),
                ),
                (
                    "run_as",
                    opts.run_as.as_ref().map_or(Value::from(()), |r| {
                        map([
                            ("user", Value::from(r.user.as_str())),
                            ("group", Value::from(r.group.as_str())),
                            ("chroot", Value::from(r.chroot.as_deref())),
                        ])
                    }),
                ),
                (
                    "log",
                    opts.log.as_ref().map_or(Value::from(()), |l| {
                        map([
                            ("target", Value::from(l.target.as_str())),
                            ("facility", Value::from(l.facility.as_str())),
                        ])
                    }),
                ),
            ]),
        ),
        (
            "timeouts",
            map([
                ("connect", Value::from(t.connect.to_string())),
                ("client", Value::from(t.client.to_string())),
                ("server", Value::from(t.server.to_string())),
                ("tunnel", Value::from(t.tunnel.to_string())),
                ("client_fin", Value::from(t.client_fin.to_string())),
                ("server_fin", Value::from(t.server_fin.to_string())),
            ]),
        ),
        (
            "health_check",
            map([
                ("enabled", Value::from(hc.enabled)),
                ("interval", Value::from(hc.interval.to_string())),
                ("timeout", Value::from(hc.timeout.to_string())),
                ("fall", Value::from(hc.fall)),
                ("rise", Value::from(hc.rise)),
            ]),
        ),
        ("spare_address", Value::from(SPARE_ADDRESS)),
        (
            "frontends",
            Value::from(frontends.into_values().collect::<Vec<_>>()),
        ),
        ("backends", Value::from(backends)),
    ]);
    Ok(Context { value, items })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::options::HealthCheck;

    #[test]
    fn server_options_follow_proxy_and_checks() {
        let mut opts = RenderOptions::default();
        assert_eq!(
            server_options(&opts, ProxyProtocol::V2),
            "check inter 2s fall 3 rise 2 send-proxy-v2 check-send-proxy"
        );
        assert_eq!(
            server_options(&opts, ProxyProtocol::V1),
            "check inter 2s fall 3 rise 2 send-proxy check-send-proxy"
        );
        assert_eq!(
            server_options(&opts, ProxyProtocol::None),
            "check inter 2s fall 3 rise 2"
        );
        opts.health_check = HealthCheck {
            enabled: false,
            ..HealthCheck::default()
        };
        assert_eq!(server_options(&opts, ProxyProtocol::V2), "send-proxy-v2");
        assert_eq!(server_options(&opts, ProxyProtocol::None), "");
    }

    #[test]
    fn a_fixed_map_reads_like_a_btreemap_in_templates() {
        let pairs = || {
            [
                ("name", Value::from("be_a")),
                ("listen_port", Value::from(80)),
                ("empty", Value::from("")),
                ("servers", Value::from(vec![Value::from(1), Value::from(2)])),
            ]
        };
        let template = "{% for k, v in m|items %}{{ k }}={{ v }};{% endfor %}|{{ m.name }}|\
            {{ m['listen_port'] }}|{{ m.missing is undefined }}|{{ m|length }}|\
            {{ 'name' in m }}|{{ 'nope' in m }}|{% if m %}true{% endif %}|\
            {% for k in m %}{{ k }},{% endfor %}|{{ m|dictsort|first }}";
        let env = minijinja::Environment::new();
        let render = |m: Value| env.render_str(template, minijinja::context! { m }).unwrap();
        let fixed = render(map(pairs()));
        assert!(
            fixed.starts_with(
                "empty=;listen_port=80;name=be_a;servers=[1, 2];|be_a|80|True|4|True|False|true|"
            ),
            "{fixed}"
        );
        assert_eq!(fixed, render(Value::from(BTreeMap::from(pairs()))));
    }
}

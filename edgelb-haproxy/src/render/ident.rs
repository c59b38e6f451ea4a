//! HAProxy identifiers (frontend, backend and server names) built from validated names.
//!
//! Cluster names may only hold `A-Z a-z 0-9 . -` (see [`edgelb_core::names`]), so `_` never
//! occurs inside one and joins the parts unambiguously: `be_<namespace>_<service>_<port>`.
//! Each part is checked again here, so a name that slipped past validation is rejected
//! rather than pasted into the config.

use std::net::{IpAddr, SocketAddr};

use edgelb_core::ServiceKey;
use edgelb_core::names::validate_name;

use super::privilege::{check_socket_path, is_plain_absolute_path};
use crate::error::{Error, Result};

/// The frontend of a listen port: `fe_<listen_port>`.
///
/// ```
/// assert_eq!(edgelb_haproxy::frontend_name(443), "fe_443");
/// ```
pub fn frontend_name(listen_port: u16) -> String {
    format!("fe_{listen_port}")
}

/// The frontend of a listen port on one address (a Service placed on an address): `fe_<port>`
/// without one, `fe_<port>_<IPv4>` or `fe_<port>_<IPv6 with '-' for ':'>` with one (HAProxy
/// names may hold letters, digits, `.`, `_`, `-` and `:`; dashes keep the name one word for
/// the blame of a refused config).
///
/// ```
/// use edgelb_haproxy::frontend_name_at;
/// assert_eq!(frontend_name_at(443, None), "fe_443");
/// assert_eq!(frontend_name_at(443, Some("192.0.2.1".parse()?)), "fe_443_192.0.2.1");
/// assert_eq!(frontend_name_at(443, Some("2001:db8::1".parse()?)), "fe_443_2001-db8--1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn frontend_name_at(listen_port: u16, address: Option<IpAddr>) -> String {
    match address {
        None => frontend_name(listen_port),
        Some(IpAddr::V4(ip)) => format!("fe_{listen_port}_{ip}"),
        Some(IpAddr::V6(ip)) => format!("fe_{listen_port}_{}", ip.to_string().replace(':', "-")),
    }
}

/// The `bind` address of a Service placed on `address`: `IPv4:PORT` or `[IPv6]:PORT`.
pub(crate) fn placed_bind(address: IpAddr, listen_port: u16) -> String {
    match address {
        IpAddr::V4(ip) => format!("{ip}:{listen_port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{listen_port}"),
    }
}

/// The backend of one service port: `be_<namespace>_<service>_<port name>`.
///
/// Fails with [`Error::InvalidInput`] naming the part when any part is not a valid name.
///
/// ```
/// use edgelb_core::ServiceKey;
/// let key = ServiceKey::new("kube-system", "traefik")?;
/// assert_eq!(
///     edgelb_haproxy::backend_name(&key, "websecure")?,
///     "be_kube-system_traefik_websecure"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn backend_name(key: &ServiceKey, port_name: &str) -> Result<String> {
    let service = key.to_string();
    check_part("namespace", &key.namespace, &service)?;
    check_part("service name", &key.name, &service)?;
    check_part("port name", port_name, &service)?;
    Ok(format!("be_{}_{}_{port_name}", key.namespace, key.name))
}

fn check_part(what: &'static str, value: &str, service: &str) -> Result<()> {
    validate_name(what, value).map_err(|err| Error::InvalidInput {
        what,
        value: value.to_owned(),
        reason: format!(
            "of service {service:?} cannot be used in an HAProxy name ({err}); rename it in the cluster or leave it out of edgelb's services"
        ),
    })
}

/// An endpoint address as HAProxy's `server` line takes it: `10.0.0.1:8443` or
/// `[fd00::1]:8443` (brackets keep the port apart from the address).
///
/// Rejects what HAProxy would misread: the unspecified address (`0.0.0.0`, `::`, which
/// HAProxy takes as "the client's destination", a transparent proxy), an IPv6 zone (`%eth0`,
/// which HAProxy 2.6 cannot resolve) and port 0 (HAProxy's "same port as the client").
pub(crate) fn server_address(addr: &SocketAddr, owner: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidInput {
        what: "endpoint address",
        value: addr.to_string(),
        reason: format!("of {owner}: {reason}"),
    };
    if addr.port() == 0 {
        return Err(bad(
            "port 0 means \"the client's port\" to HAProxy; give the endpoint its real port",
        ));
    }
    if addr.ip().is_unspecified() {
        return Err(bad(
            "the unspecified address makes HAProxy connect to the client's destination; give the endpoint's real address",
        ));
    }
    match addr {
        SocketAddr::V6(v6) if v6.scope_id() != 0 => Err(bad(
            "IPv6 zone (scope) ids are not supported by HAProxy's server addresses; use a global or unique-local address",
        )),
        _ => Ok(match addr.ip() {
            IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
            IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        }),
    }
}

/// A `bind` address of a node, checked against the forms HAProxy reads unambiguously:
/// an optional `ipv4@` / `ipv6@` prefix, then `:PORT`, `*:PORT`, `IPv4:PORT`, `[IPv6]:PORT`
/// or `IPv6:PORT` (the last colon starts the port; `PORT` may be a range `LOW-HIGH`), or a
/// UNIX socket path (`/run/x.sock`, `unix@/run/x.sock`) inside one of `socket_dirs`. Host
/// names are refused: HAProxy would resolve them once at start and silently keep a stale
/// address.
pub(crate) fn bind_address(
    bind: &str,
    node: &str,
    listen_port: u16,
    socket_dirs: &[String],
) -> Result<String> {
    let bad = |reason: &str| Error::InvalidInput {
        what: "bind address",
        value: bind.to_owned(),
        reason: format!(
            "of node {node}, listen port {listen_port}: {reason}; use e.g. ':{listen_port}', '203.0.113.10:{listen_port}', '[2001:db8::1]:{listen_port}' or 'ipv6@:{listen_port}'"
        ),
    };
    if let Some(path) = bind
        .strip_prefix("unix@")
        .or(bind.starts_with('/').then_some(bind))
    {
        if !is_plain_absolute_path(path, 107) {
            return Err(bad(
                "a UNIX socket path must be absolute, at most 107 characters of letters, digits and / . _ -",
            ));
        }
        return match check_socket_path("UNIX bind", path, socket_dirs) {
            Ok(()) => Ok(bind.to_owned()),
            Err(_) => Err(bad(&format!(
                "a UNIX socket may only be created inside haproxy.socket_dirs ({})",
                socket_dirs.join(", ")
            ))),
        };
    }
    let (family, rest) = match bind.split_once('@') {
        Some(("ipv4", rest)) => (Some(false), rest),
        Some(("ipv6", rest)) => (Some(true), rest),
        Some(_) => {
            return Err(bad(
                "only the ipv4@, ipv6@ and unix@ prefixes are supported",
            ));
        }
        None => (None, bind),
    };
    let (host, ports) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("the port is missing"))?;
    let port = |p: &str| {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse::<u16>().ok().filter(|p| *p != 0)
    };
    let ports_ok = match ports.split_once('-') {
        Some((low, high)) => matches!((port(low), port(high)), (Some(l), Some(h)) if l <= h),
        None => port(ports).is_some(),
    };
    if !ports_ok {
        return Err(bad(
            "the port must be a number from 1 to 65535 or a range LOW-HIGH",
        ));
    }
    let host_is_v6 = match host {
        "" | "*" => None,
        h if h.starts_with('[') && h.ends_with(']') && h.len() > 2 => {
            h[1..h.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("the address in brackets is not an IPv6 address"))?;
            Some(true)
        }
        h if h.parse::<std::net::Ipv4Addr>().is_ok() => Some(false),
        h if h.parse::<std::net::Ipv6Addr>().is_ok() => Some(true),
        _ => {
            return Err(bad(
                "the address must be empty, '*' or an IP address (host names are not accepted)",
            ));
        }
    };
    if let (Some(want_v6), Some(is_v6)) = (family, host_is_v6)
        && want_v6 != is_v6
    {
        return Err(bad("the address does not match its ipv4@/ipv6@ prefix"));
    }
    Ok(bind.to_owned())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV6;

    use super::*;

    fn key(ns: &str, name: &str) -> ServiceKey {
        // Built field by field: bypasses ServiceKey::new's validation on purpose.
        ServiceKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn backend_names_are_unambiguous() {
        let a = backend_name(&key("a", "b.c"), "x").unwrap();
        let b = backend_name(&key("a.b", "c"), "x").unwrap();
        assert_eq!(a, "be_a_b.c_x");
        assert_eq!(b, "be_a.b_c_x");
        assert_ne!(a, b);
    }

    #[test]
    fn hostile_parts_are_rejected_with_the_part_named() {
        for (k, port, part) in [
            (key("kube system", "t"), "p", "namespace"),
            (key("ns", "t\nlisten x"), "p", "service name"),
            (key("ns", "t"), "web#1", "port name"),
            (key("ns", "t"), "a_b", "port name"),
            (key("ns", "t"), "", "port name"),
            (key("ns", "é"), "p", "service name"),
        ] {
            let err = backend_name(&k, port).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid {part}")), "{err}");
            assert!(err.contains("rename it"), "{err}");
        }
    }

    #[test]
    fn server_addresses() {
        let a = |s: &str| server_address(&s.parse().unwrap(), "ns/svc:web");
        assert_eq!(a("10.0.0.1:8443").unwrap(), "10.0.0.1:8443");
        assert_eq!(a("[fd00::1]:8443").unwrap(), "[fd00::1]:8443");
        assert_eq!(a("[::ffff:10.0.0.1]:80").unwrap(), "[::ffff:10.0.0.1]:80");
        for bad in ["0.0.0.0:80", "[::]:80", "10.0.0.1:0"] {
            let err = a(bad).unwrap_err().to_string();
            assert!(err.contains("ns/svc:web"), "{err}");
        }
        let zoned = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 80, 0, 3));
        let err = server_address(&zoned, "x").unwrap_err().to_string();
        assert!(err.contains("zone"), "{err}");
    }

    #[test]
    fn bind_addresses() {
        let dirs = crate::render::privilege::default_socket_dirs();
        for ok in [
            ":443",
            "*:443",
            "203.0.113.10:443",
            "[2001:db8::1]:443",
            ":::443",
            "[::]:443",
            "ipv6@:443",
            "ipv4@:443",
            "ipv4@0.0.0.0:443",
            "ipv6@[::]:443",
            ":8000-8010",
            "/run/haproxy/web.sock",
            "unix@/run/haproxy/web.sock",
        ] {
            assert_eq!(bind_address(ok, "e1", 443, &dirs).unwrap(), ok);
        }
        for (bad, why) in [
            ("443", "port is missing"),
            (":0", "port must be"),
            (":+443", "port must be"),
            (":70000", "port must be"),
            (":9-8", "port must be"),
            ("edge.example.com:443", "host names"),
            ("[10.0.0.1]:443", "not an IPv6"),
            ("ipv6@10.0.0.1:443", "prefix"),
            ("ipv4@[::1]:443", "prefix"),
            ("fd@3", "prefixes"),
            ("/run/../etc/x", "UNIX socket"),
            ("/etc/passwd", "socket_dirs (/run/haproxy)"),
            ("unix@/run/haproxy-x/a.sock", "socket_dirs"),
            ("*", "port is missing"),
        ] {
            let err = bind_address(bad, "e1", 443, &dirs).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("node e1"), "{err}");
        }
    }
}

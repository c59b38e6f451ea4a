//! Which addresses and ports a config's `bind` lines and an edge's listening sockets take,
//! for the listen-port check: a bind on one address (a Service placed on an address) only
//! collides with a socket on that address or on every address.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config_sections::ports_of;

/// A bound address and port; `None` is every address (`:443`, `0.0.0.0`, `::`, a host name,
/// which is taken as every address to stay on the safe side).
pub(crate) type Bound = (Option<IpAddr>, u16);

/// Whether two bound addresses take the same port on some address.
pub(crate) fn overlaps(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Every TCP address and port one bind address list (`10.0.0.1:443,[::1]:443`) takes.
pub(crate) fn bound_by(addresses: &str) -> impl Iterator<Item = Bound> + '_ {
    addresses.split(',').flat_map(|address| {
        let host = host_of(address);
        ports_of(address).into_iter().map(move |port| (host, port))
    })
}

/// The address part of a TCP bind address (`ipv4@`/`ipv6@` prefix allowed): `None` for
/// every address.
fn host_of(address: &str) -> Option<IpAddr> {
    let rest = address.split_once('@').map_or(address, |(_, rest)| rest);
    let (host, _) = rest.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<IpAddr>()
        .ok()
        .filter(|ip| !ip.is_unspecified())
}

/// The TCP socket state "listening" in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The listening sockets of a `/proc/net/tcp` or `/proc/net/tcp6` table
/// (`sl local_address rem_address st …`, addresses as `HEXADDR:HEXPORT`, each 32-bit word of
/// the address in the host's byte order: read as little-endian, as on x86-64 and arm64 edges).
pub(crate) fn listening(table: &str) -> BTreeSet<Bound> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != LISTEN {
                return None;
            }
            let (addr, port) = local.rsplit_once(':')?;
            Some((proc_address(addr), u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

/// A `/proc/net/tcp*` address; `None` for every address (and for anything unreadable, which
/// then collides with every bind on its port: the safe side).
fn proc_address(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| {
            hex.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] if hex.len() == 8 => IpAddr::V4(Ipv4Addr::from(w.to_le_bytes())),
        [a, b, c, d] if hex.len() == 32 => {
            let mut bytes = [0u8; 16];
            for (chunk, w) in bytes.chunks_exact_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn binds_with_and_without_an_address() {
        let cfg = "frontend fe_443_192.0.2.1\n    bind 192.0.2.1:443\n    bind [2001:db8::7]:443,ipv6@2001:db8::8:443\nfrontend fe_80\n    bind :80\n    bind ipv6@:80\n    bind *:81\n    bind [::]:82\n    bind /run/x.sock\n# bind 10.0.0.1:9\n";
        assert_eq!(
            crate::live_file::LiveFile::parse(cfg.as_bytes()).binds,
            [
                (None, 80),
                (None, 81),
                (None, 82),
                (ip("192.0.2.1"), 443),
                (ip("2001:db8::7"), 443),
                (ip("2001:db8::8"), 443),
            ]
            .into()
        );
    }

    #[test]
    fn proc_addresses_read_as_linux_writes_them() {
        // Real lines (Linux 6.1, x86-64): sshd on 0.0.0.0:22, HAProxy on 127.0.0.1:8080,
        // systemd-resolved on 127.0.0.53:53, a client connection (not listening).
        let tcp = "  sl  local_address rem_address   st\n   0: 00000000:0016 00000000:0000 0A\n   1: 0100007F:1F90 00000000:0000 0A\n   2: 3500007F:0035 00000000:0000 0A\n   3: 0100007F:9C40 0100007F:1F90 01\n";
        assert_eq!(
            listening(tcp),
            [(None, 22), (ip("127.0.0.1"), 8080), (ip("127.0.0.53"), 53)].into()
        );
        // [::]:443, [::1]:25, [2001:db8::1]:8443 and ::ffff:10.0.0.1:80.
        let tcp6 = "  sl  local_address remote_address st\n   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A\n   1: 00000000000000000000000001000000:0019 00000000000000000000000000000000:0000 0A\n   2: B80D0120000000000000000001000000:20FB 00000000000000000000000000000000:0000 0A\n   3: 0000000000000000FFFF00000100000A:0050 00000000000000000000000000000000:0000 0A\n";
        assert_eq!(
            listening(tcp6),
            [
                (None, 443),
                (ip("::1"), 25),
                (ip("2001:db8::1"), 8443),
                (ip("10.0.0.1"), 80)
            ]
            .into()
        );
        assert!(listening("garbage\nmore garbage here 0A").is_empty());
    }

    #[test]
    fn only_the_same_address_or_every_address_overlaps() {
        assert!(overlaps(None, ip("192.0.2.1")));
        assert!(overlaps(ip("192.0.2.1"), None));
        assert!(overlaps(ip("192.0.2.1"), ip("192.0.2.1")));
        assert!(!overlaps(ip("192.0.2.1"), ip("127.0.0.53")));
    }
}

//! `spec.loadBalancerSourceRanges` in `haproxy.cfg`: the allowed client ranges of a frontend
//! as HAProxy ACL lines with fixed ids, so the runtime API can replace them without a reload
//! (see [`crate::cli::acl`]).
//!
//! ```text
//! frontend fe_443
//!     bind :443
//!     acl edgelb_source_allowed src -u 1000443000 10.0.0.0/8 192.168.0.0/16 …   (50 a line)
//!     acl edgelb_source_allowed src -u 1000443001 …
//!     tcp-request connection reject if !edgelb_source_allowed
//! ```
//!
//! The ranges sit in the config itself rather than in a separate pattern file, so every
//! deployer (SSH, local, Ansible) deploys them with the one file it already writes, `haproxy
//! -c` validates them with it, and the swap stays one atomic rename. HAProxy reads at most
//! 64 words per config line, hence lines of [`RANGES_PER_LINE`] ranges; lines of one name
//! are ORed. Each line's pattern list has the id `-u` gives it, which the runtime API
//! addresses as `#<id>`: for a frontend on every address of the edge, derived from the listen
//! port and the line number ([`source_acl_id`]); for a frontend on one address (a placed
//! Service), from its rank among those frontends and the line number ([`placed_source_acl_id`]),
//! so two Services on the same port of two addresses never share a list. A frontend with an empty list gets one line without patterns:
//! it matches nobody, so every connection is refused.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edgelb_core::{IpNet, Snapshot};

pub use crate::acl_line::SOURCE_ACL_NAME;

/// Ranges per `acl` line: HAProxy 2.6 reads at most 64 words per line, and an `acl` line
/// spends 5 of them on `acl NAME src -u ID`.
pub const RANGES_PER_LINE: usize = 50;

/// The first pattern-list id edgelb uses. HAProxy numbers the lists it is not given an id
/// for from 0 up, so edgelb's ids stay clear of them.
pub const SOURCE_ACL_ID_BASE: u32 = 1_000_000_000;

/// The id of line `line` (0-based) of the source ACL of the frontend on `listen_port`:
/// `1000000000 + port × 1000 + line`. `None` past 1000 lines (50,000 ranges, five times the
/// most a Service may have).
pub fn source_acl_id(listen_port: u16, line: usize) -> Option<u32> {
    let line = u32::try_from(line).ok().filter(|l| *l < 1000)?;
    Some(SOURCE_ACL_ID_BASE + u32::from(listen_port) * 1000 + line)
}

/// The first pattern-list id of frontends on one address: above every id
/// [`source_acl_id`] gives.
pub const PLACED_SOURCE_ACL_ID_BASE: u32 = 1_100_000_000;

/// The id of line `line` (0-based) of the source ACL of the frontend on one address that
/// ranks `rank` (0-based) among the frontends on one address of the edge's config, in order
/// of listen port, then address: `1100000000 + rank × 1000 + line`. The ranks change only
/// when such a frontend comes or goes, which changes the config's structure (a reload)
/// anyway. `None` past 1000 lines, or past HAProxy's largest id (a C int).
pub fn placed_source_acl_id(rank: usize, line: usize) -> Option<u32> {
    let line = u32::try_from(line).ok().filter(|l| *l < 1000)?;
    let id = u32::try_from(rank)
        .ok()?
        .checked_mul(1000)?
        .checked_add(PLACED_SOURCE_ACL_ID_BASE)?
        .checked_add(line)?;
    (id <= i32::MAX as u32).then_some(id)
}

/// Where a frontend listens, as the id scheme needs it: its port, and its rank among the
/// frontends on one address (see [`placed_source_acl_id`]) when it has an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AclSlot {
    pub(crate) listen_port: u16,
    pub(crate) placed_rank: Option<usize>,
}

impl AclSlot {
    /// The id of line `line` of this frontend's source ACL.
    fn id(self, line: usize) -> Option<u32> {
        match self.placed_rank {
            None => source_acl_id(self.listen_port, line),
            Some(rank) => placed_source_acl_id(rank, line),
        }
    }
}

/// The ranks of the frontends on one address in `snapshot` (the snapshot placed on one
/// edge), by `(listen port, address)`.
pub(crate) fn placed_ranks(snapshot: &Snapshot) -> BTreeMap<(u16, IpAddr), usize> {
    let mut keys: Vec<(u16, IpAddr)> = snapshot
        .services
        .values()
        .filter_map(|spec| spec.address.map(|a| (spec, a)))
        .flat_map(|(spec, a)| spec.ports.values().map(move |p| (p.listen_port, a)))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().enumerate().map(|(i, k)| (k, i)).collect()
}

/// The slot of the frontend on `listen_port` (and `address`, when it has one).
pub(crate) fn acl_slot(
    ranks: &BTreeMap<(u16, IpAddr), usize>,
    listen_port: u16,
    address: Option<IpAddr>,
) -> AclSlot {
    AclSlot {
        listen_port,
        placed_rank: address.and_then(|a| ranks.get(&(listen_port, a)).copied()),
    }
}

/// The `acl` lines of a frontend's allowed ranges: `(id, patterns joined by spaces)`, at
/// least one line (without patterns for an empty list). `None` when there are too many
/// ranges for the id scheme.
pub(crate) fn source_acl_lines(slot: AclSlot, ranges: &[IpNet]) -> Option<Vec<(u32, String)>> {
    if ranges.is_empty() {
        return Some(vec![(slot.id(0)?, String::new())]);
    }
    ranges
        .chunks(RANGES_PER_LINE)
        .enumerate()
        .map(|(line, chunk)| {
            let id = slot.id(line)?;
            let words: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            Some((id, words.join(" ")))
        })
        .collect()
}

/// Checks that a rendered config restricts every frontend whose service has source ranges:
/// its first ACL line and the reject rule are there. A user template that overrides the
/// `frontends` block without them would otherwise open those ports to everyone; such a
/// config is refused instead. `Err` names the service port.
pub(crate) fn check_rendered(snapshot: &Snapshot, text: &str) -> Result<(), String> {
    let reject = format!("tcp-request connection reject if !{SOURCE_ACL_NAME}");
    let acl_prefix = format!("acl {SOURCE_ACL_NAME} src -u ");
    // One pass over the text: the ACL ids it defines and how many reject rules it has.
    let mut ids = std::collections::BTreeSet::new();
    let mut rejects = 0usize;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix(&acl_prefix) {
            if let Some(id) = rest
                .split_whitespace()
                .next()
                .and_then(|w| w.parse::<u32>().ok())
            {
                ids.insert(id);
            }
        } else if line == reject {
            rejects += 1;
        }
    }
    let mut restricted = 0usize;
    let ranks = placed_ranks(snapshot);
    for (key, service) in &snapshot.services {
        if service.source_ranges.is_none() {
            continue;
        }
        for (name, port) in &service.ports {
            restricted += 1;
            let id = acl_slot(&ranks, port.listen_port, service.address).id(0);
            if id.is_none_or(|id| !ids.contains(&id)) {
                return Err(format!(
                    "{key}:{name} has source ranges but the rendered config does not restrict its frontend (no `{acl_prefix}{}` line); a template that overrides the frontends block must render fe.source_acls as the built-in one does",
                    id.unwrap_or_default()
                ));
            }
        }
    }
    if rejects < restricted {
        return Err(format!(
            "{restricted} frontends have source ranges but the rendered config has {rejects} `{reject}` rules; a template that overrides the frontends block must render one per restricted frontend as the built-in one does"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot of a frontend on every address.
    fn every(listen_port: u16) -> AclSlot {
        AclSlot {
            listen_port,
            placed_rank: None,
        }
    }

    fn nets(n: u32) -> Vec<IpNet> {
        (0..n)
            .map(|i| {
                IpNet::from(std::net::IpAddr::from(
                    (0x0a00_0000 + i * 256).to_be_bytes(),
                ))
            })
            .collect()
    }

    #[test]
    fn ids_follow_port_and_line_and_stop_at_1000_lines() {
        assert_eq!(source_acl_id(443, 0), Some(1_000_443_000));
        assert_eq!(source_acl_id(65535, 999), Some(1_065_535_999));
        assert_eq!(source_acl_id(65535, 1000), None);
        // HAProxy reads the id as a C int.
        assert!(source_acl_id(65535, 999).unwrap() < i32::MAX as u32);
    }

    #[test]
    fn placed_frontends_get_their_own_ids_above_the_port_ones() {
        assert_eq!(placed_source_acl_id(0, 0), Some(1_100_000_000));
        assert_eq!(placed_source_acl_id(3, 7), Some(1_100_003_007));
        assert!(placed_source_acl_id(0, 0).unwrap() > source_acl_id(65535, 999).unwrap());
        assert_eq!(placed_source_acl_id(0, 1000), None);
        // HAProxy reads the id as a C int: the largest rank stops below it.
        assert!(placed_source_acl_id(1_047_483, 647).is_some());
        assert_eq!(placed_source_acl_id(1_047_483, 648), None);
        assert_eq!(placed_source_acl_id(usize::MAX, 0), None);
    }

    #[test]
    fn two_services_on_one_port_of_two_addresses_never_share_a_list() {
        use edgelb_core::{PortSpec, ProxyProtocol, ServiceKey, ServiceSpec};
        let mut snap = Snapshot::default();
        for (name, addr) in [("a", "192.0.2.10"), ("b", "192.0.2.11")] {
            let mut spec = ServiceSpec {
                address: Some(addr.parse().unwrap()),
                source_ranges: Some(nets(60)),
                ..ServiceSpec::default()
            };
            spec.ports
                .insert("https".into(), PortSpec::new(443, ProxyProtocol::V2));
            snap.services
                .insert(ServiceKey::new("ns", name).unwrap(), spec);
        }
        let ranks = placed_ranks(&snap);
        let ids = |addr: &str| -> Vec<u32> {
            let slot = acl_slot(&ranks, 443, Some(addr.parse().unwrap()));
            source_acl_lines(slot, &nets(60))
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        let (a, b) = (ids("192.0.2.10"), ids("192.0.2.11"));
        assert_eq!(a, [1_100_000_000, 1_100_000_001]);
        assert_eq!(b, [1_100_001_000, 1_100_001_001]);
        // A frontend on every address keeps the port's ids.
        let every = source_acl_lines(acl_slot(&ranks, 443, None), &nets(1)).unwrap();
        assert_eq!(every[0].0, 1_000_443_000);
    }

    #[test]
    fn lines_hold_fifty_ranges_and_an_empty_list_one_empty_line() {
        assert_eq!(
            source_acl_lines(every(80), &[]).unwrap(),
            vec![(1_000_080_000, String::new())]
        );
        let lines = source_acl_lines(every(80), &nets(10_000)).unwrap();
        assert_eq!(lines.len(), 200);
        assert!(lines.iter().all(|(_, p)| p.split(' ').count() == 50));
        assert_eq!(lines[199].0, 1_000_080_199);
        let v6: Vec<IpNet> = vec!["fd00::/8".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            source_acl_lines(every(1), &v6).unwrap()[0].1,
            "fd00::/8 10.0.0.0/8"
        );
    }
}

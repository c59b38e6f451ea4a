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
//! are ORed. Each line's pattern list has the id `-u` gives it
//! ([`source_acl_id`]: derived from the listen port and the line number), which the runtime
//! API addresses as `#<id>`. A frontend with an empty list gets one line without patterns:
//! it matches nobody, so every connection is refused.

use edgelb_core::{IpNet, Snapshot};

/// The name of the ACL that holds a frontend's allowed source ranges.
pub const SOURCE_ACL_NAME: &str = "edgelb_source_allowed";

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

/// The `acl` lines of a frontend's allowed ranges: `(id, patterns joined by spaces)`, at
/// least one line (without patterns for an empty list). `None` when there are too many
/// ranges for the id scheme.
pub(crate) fn source_acl_lines(listen_port: u16, ranges: &[IpNet]) -> Option<Vec<(u32, String)>> {
    if ranges.is_empty() {
        return Some(vec![(source_acl_id(listen_port, 0)?, String::new())]);
    }
    ranges
        .chunks(RANGES_PER_LINE)
        .enumerate()
        .map(|(line, chunk)| {
            let id = source_acl_id(listen_port, line)?;
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
    for (key, service) in &snapshot.services {
        if service.source_ranges.is_none() {
            continue;
        }
        for (name, port) in &service.ports {
            restricted += 1;
            let id = source_acl_id(port.listen_port, 0);
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
    fn lines_hold_fifty_ranges_and_an_empty_list_one_empty_line() {
        assert_eq!(
            source_acl_lines(80, &[]).unwrap(),
            vec![(1_000_080_000, String::new())]
        );
        let lines = source_acl_lines(80, &nets(10_000)).unwrap();
        assert_eq!(lines.len(), 200);
        assert!(lines.iter().all(|(_, p)| p.split(' ').count() == 50));
        assert_eq!(lines[199].0, 1_000_080_199);
        let v6: Vec<IpNet> = vec!["fd00::/8".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            source_acl_lines(1, &v6).unwrap()[0].1,
            "fd00::/8 10.0.0.0/8"
        );
    }
}

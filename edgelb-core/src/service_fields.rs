//! Per-Service settings beyond ports: who may connect (`loadBalancerSourceRanges`) and
//! client-IP session affinity (`sessionAffinity: ClientIP`).

use std::collections::BTreeSet;

use ipnet::IpNet;

use crate::error::{Error, Result};

/// The most source ranges one Service may carry. Far above what any cloud load balancer
/// allows (AWS security groups: 60 rules by default, GCP: 5,000), and small enough that the
/// rendered ACL and its runtime update stay cheap.
pub const MAX_SOURCE_RANGES: usize = 10_000;

/// Client-IP session affinity: connections from one client address go to the same endpoint
/// for as long as the client comes back within `timeout_seconds` (Kubernetes'
/// `sessionAffinity: ClientIP` with `sessionAffinityConfig.clientIP.timeoutSeconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionAffinity {
    /// How long a client's endpoint is remembered after its last connection, in seconds
    /// (1 to [`SessionAffinity::MAX_TIMEOUT_SECONDS`]).
    pub timeout_seconds: u32,
}

impl SessionAffinity {
    /// Kubernetes' default `timeoutSeconds` (3 hours).
    pub const DEFAULT_TIMEOUT_SECONDS: u32 = 10_800;
    /// Kubernetes' largest `timeoutSeconds` (1 day).
    pub const MAX_TIMEOUT_SECONDS: u32 = 86_400;

    /// Affinity that lasts `timeout_seconds`; errors outside 1..=86400, as Kubernetes does.
    pub fn client_ip(timeout_seconds: u32) -> Result<Self> {
        if !(1..=Self::MAX_TIMEOUT_SECONDS).contains(&timeout_seconds) {
            return Err(Error::InvalidSnapshot(format!(
                "session affinity timeout {timeout_seconds}s is out of range; give 1 to {} seconds",
                Self::MAX_TIMEOUT_SECONDS
            )));
        }
        Ok(Self { timeout_seconds })
    }
}

impl Default for SessionAffinity {
    fn default() -> Self {
        Self {
            timeout_seconds: Self::DEFAULT_TIMEOUT_SECONDS,
        }
    }
}

/// Source ranges in their canonical form: host bits cleared (`10.1.2.3/8` is `10.0.0.0/8`,
/// as Kubernetes reads it), sorted, each once. Errors when there are more than
/// [`MAX_SOURCE_RANGES`].
pub fn normalize_source_ranges(ranges: impl IntoIterator<Item = IpNet>) -> Result<Vec<IpNet>> {
    let set: BTreeSet<IpNet> = ranges.into_iter().map(|r| r.trunc()).collect();
    if set.len() > MAX_SOURCE_RANGES {
        return Err(Error::InvalidSnapshot(format!(
            "{} source ranges; edgelb takes at most {MAX_SOURCE_RANGES} per Service: merge them into wider ranges",
            set.len()
        )));
    }
    Ok(set.into_iter().collect())
}

/// Parses one CIDR (`10.0.0.0/8`, `fd00::/8`) or a bare address (a /32 or /128), trimmed.
/// The error says what is wrong with the text, which is quoted escaped and cut.
pub fn parse_source_range(text: &str) -> std::result::Result<IpNet, String> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = t.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "{} is not a CIDR such as 10.0.0.0/8 or fd00::/8",
        crate::text::quoted(text)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_truncated_sorted_and_deduplicated() {
        let ranges = ["10.1.2.3/8", "10.0.0.0/8", "fd00::1/8", "192.168.1.1/32"]
            .map(|t| parse_source_range(t).unwrap());
        let got = normalize_source_ranges(ranges).unwrap();
        let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.1/32", "fd00::/8"]);
    }

    #[test]
    fn bare_addresses_are_host_ranges_and_garbage_is_refused() {
        assert_eq!(
            parse_source_range(" 203.0.113.7 ").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(parse_source_range("::1").unwrap().to_string(), "::1/128");
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "a/b",
            "1.2.3.4/8\nx",
        ] {
            let err = parse_source_range(bad).unwrap_err();
            assert!(err.contains("not a CIDR"), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn ten_thousand_ranges_pass_and_more_are_refused() {
        let many = (0..MAX_SOURCE_RANGES as u32).map(|i| {
            IpNet::from(std::net::IpAddr::from(
                (0x0a00_0000 + i * 256).to_be_bytes(),
            ))
        });
        assert_eq!(
            normalize_source_ranges(many).unwrap().len(),
            MAX_SOURCE_RANGES
        );
        let too_many = (0..=MAX_SOURCE_RANGES as u32)
            .map(|i| IpNet::from(std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes())));
        let err = normalize_source_ranges(too_many).unwrap_err().to_string();
        assert!(err.contains("at most 10000"), "{err}");
    }

    #[test]
    fn affinity_timeout_bounds() {
        assert_eq!(SessionAffinity::default().timeout_seconds, 10_800);
        assert!(SessionAffinity::client_ip(86_400).is_ok());
        assert!(SessionAffinity::client_ip(0).is_err());
        assert!(SessionAffinity::client_ip(86_401).is_err());
    }
}

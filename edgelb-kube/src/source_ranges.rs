//! `spec.loadBalancerSourceRanges`: which clients may connect to a Service's ports.
//!
//! Read as Kubernetes reads it (`service.GetLoadBalancerSourceRanges`):
//! * the field `spec.loadBalancerSourceRanges` when it has entries;
//! * else the legacy annotation `service.beta.kubernetes.io/load-balancer-source-ranges`
//!   (comma-separated), which Kubernetes honours only while the field is empty;
//! * neither (or both empty): everyone may connect.
//!
//! Entries are CIDRs (`10.0.0.0/8`, `fd00::/8`), surrounding spaces ignored; host bits are
//! cleared as Kubernetes does (`10.1.2.3/8` is `10.0.0.0/8`).
//!
//! A Service whose ranges do not parse keeps the last valid ranges edgelb saw for it (same
//! uid) and gets a Warning Event (`InvalidSourceRanges`). When there are none (a new Service,
//! or edgelb restarted since), nobody may connect until the ranges are fixed: for a field
//! that restricts access, failing closed is the safe side.

use std::collections::HashMap;

use edgelb_core::{IpNet, MAX_SOURCE_RANGES, ServiceKey, normalize_source_ranges};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

use crate::convert::Warning;

/// The legacy annotation Kubernetes reads when `spec.loadBalancerSourceRanges` is empty.
pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// How many invalid entries a warning quotes.
const QUOTED_ENTRIES: usize = 3;

/// The Service's source ranges as written: `Ok(None)` for everyone, `Err` says which entries
/// are wrong (quoted escaped, at most three).
pub(crate) fn read(svc: &Service) -> Result<Option<Vec<IpNet>>, String> {
    let field: Vec<&str> = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_source_ranges.as_deref())
        .unwrap_or(&[])
        .iter()
        .map(|s| s.trim())
        .collect();
    let (entries, origin): (Vec<&str>, String) = if !field.is_empty() {
        (field, "spec.loadBalancerSourceRanges".to_owned())
    } else {
        let annotation = svc
            .annotations()
            .get(SOURCE_RANGES_ANNOTATION)
            .map_or("", |v| v.trim());
        if annotation.is_empty() {
            return Ok(None);
        }
        (
            annotation.split(',').map(str::trim).collect(),
            format!("annotation {SOURCE_RANGES_ANNOTATION}"),
        )
    };
    if entries.len() > MAX_SOURCE_RANGES {
        return Err(format!(
            "{origin} has {} entries; edgelb takes at most {MAX_SOURCE_RANGES}: merge them into wider ranges",
            entries.len()
        ));
    }
    let mut ranges = Vec::with_capacity(entries.len());
    let mut bad = Vec::new();
    for entry in &entries {
        match entry.parse::<IpNet>() {
            Ok(net) => ranges.push(net),
            Err(_) => bad.push(*entry),
        }
    }
    if !bad.is_empty() {
        let shown: Vec<String> = bad
            .iter()
            .take(QUOTED_ENTRIES)
            .map(|e| edgelb_core::text::quoted(e))
            .collect();
        let more = bad.len().saturating_sub(QUOTED_ENTRIES);
        return Err(format!(
            "{origin} has {} entr{} that {} not a CIDR such as 10.0.0.0/8 or fd00::/8: {}{}",
            bad.len(),
            if bad.len() == 1 { "y" } else { "ies" },
            if bad.len() == 1 { "is" } else { "are" },
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    normalize_source_ranges(ranges)
        .map(Some)
        .map_err(|e| format!("{origin}: {e}"))
}

/// The last valid ranges of a Service.
#[derive(Debug, Clone)]
struct Remembered {
    /// The Service object they belong to: a re-created Service starts afresh.
    uid: Option<String>,
    ranges: Option<Vec<IpNet>>,
}

/// The last valid source ranges of each Service, across snapshot builds of one source.
#[derive(Debug, Default)]
pub(crate) struct SourceRangeMemory {
    last: HashMap<ServiceKey, Remembered>,
}

impl SourceRangeMemory {
    /// The ranges to serve `svc` with: what it says when valid (remembered), else its last
    /// valid ranges or, without any, nobody; a Warning says which and why.
    pub(crate) fn resolve(
        &mut self,
        svc: &Service,
        key: &ServiceKey,
        warnings: &mut Vec<Warning>,
    ) -> Option<Vec<IpNet>> {
        let uid = svc.uid();
        match read(svc) {
            Ok(ranges) => {
                self.last.insert(
                    key.clone(),
                    Remembered {
                        uid,
                        ranges: ranges.clone(),
                    },
                );
                ranges
            }
            Err(why) => {
                let kept = self.last.get(key).filter(|r| r.uid == uid);
                let (ranges, outcome) = match kept {
                    Some(r) => (
                        r.ranges.clone(),
                        match &r.ranges {
                            None => "edgelb keeps its previous setting (everyone may connect) until they are fixed".to_owned(),
                            Some(list) => format!(
                                "edgelb keeps its previous {} valid range(s) until they are fixed",
                                list.len()
                            ),
                        },
                    ),
                    None => (
                        Some(Vec::new()),
                        "edgelb knows no earlier valid ranges, so nobody may connect until they are fixed".to_owned(),
                    ),
                };
                warnings.push(Warning::about(
                    svc,
                    "InvalidSourceRanges",
                    format!("{why}; {outcome}"),
                ));
                ranges
            }
        }
    }

    /// Forgets Services not in `keep` (deleted, or no longer served).
    pub(crate) fn retain(&mut self, keep: &dyn Fn(&ServiceKey) -> bool) {
        self.last.retain(|key, _| keep(key));
    }
}

#[cfg(test)]
mod tests;

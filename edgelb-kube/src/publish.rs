//! Which edges' addresses are published (Service status, DNS): the edges that run what is
//! being published, less those known to be unhealthy, unless that leaves none.

use edgelb_core::{EdgeNode, PipelineStatus};

/// The edges of `serving` that are not known to be unhealthy; all of them when that leaves
/// none (publishing nothing would only turn an outage of the edges into an outage of DNS).
pub(crate) fn healthy_or_all<'a>(
    serving: Vec<&'a EdgeNode>,
    status: &PipelineStatus,
) -> Vec<&'a EdgeNode> {
    let unhealthy = |n: &EdgeNode| {
        status
            .nodes
            .get(&n.name)
            .is_some_and(|ns| ns.health.is_unhealthy())
    };
    let healthy: Vec<&EdgeNode> = serving.iter().copied().filter(|n| !unhealthy(n)).collect();
    if healthy.is_empty() { serving } else { healthy }
}

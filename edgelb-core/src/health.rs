//! Edge health: whether an edge serves, from probes run through the deployer
//! ([`Deployer::probe_health`](crate::Deployer::probe_health)): its session, HAProxy's master
//! and worker, a connection to each listen port made on the edge itself. A state machine with
//! `fall` / `rise` hysteresis turns probe results into [`EdgeHealth`], which decides what is
//! published (Service status, DNS): an unhealthy edge's addresses leave it while another edge
//! stays healthy, so clients and DNS fail over by themselves.

use std::fmt;
use std::time::{Duration, SystemTime};

/// How edges are probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Probe at all (default on). Off: every edge's health stays unknown and everything is
    /// published as without health checks.
    pub enabled: bool,
    /// Time between two probes of one edge (default 2 s).
    pub interval: Duration,
    /// A probe that takes longer fails (default 3 s).
    pub timeout: Duration,
    /// Consecutive failed probes that make an edge unhealthy (default 3).
    pub fall: u32,
    /// Consecutive good probes that make it healthy again (default 2).
    pub rise: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(3),
            fall: 3,
            rise: 2,
        }
    }
}

/// What is known of an edge's health.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EdgeHealth {
    /// Not known (yet, or the deployer cannot probe, or probes are off); `since` is when
    /// that began, once probing started.
    #[default]
    Unknown,
    /// It serves, since `since`.
    Healthy {
        /// When it became healthy.
        since: SystemTime,
    },
    /// It does not serve, since `since`, and why.
    Unhealthy {
        /// When it became unhealthy.
        since: SystemTime,
        /// The last failed probe's error.
        reason: String,
    },
}

impl EdgeHealth {
    /// Whether the edge is known not to serve.
    pub fn is_unhealthy(&self) -> bool {
        matches!(self, Self::Unhealthy { .. })
    }

    /// Whether the edge is known to serve.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy { .. })
    }
}

impl fmt::Display for EdgeHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("unknown"),
            Self::Healthy { .. } => f.write_str("healthy"),
            Self::Unhealthy { reason, .. } => write!(f, "unhealthy: {reason}"),
        }
    }
}

/// Turns probe results into [`EdgeHealth`] with `fall` / `rise` hysteresis.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    fall: u32,
    rise: u32,
    state: EdgeHealth,
    good: u32,
    bad: u32,
}

impl HealthTracker {
    /// A tracker that knows nothing yet.
    pub fn new(config: &HealthConfig) -> Self {
        Self {
            fall: config.fall.max(1),
            rise: config.rise.max(1),
            state: EdgeHealth::Unknown,
            good: 0,
            bad: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> &EdgeHealth {
        &self.state
    }

    /// Records one probe's result at `now`; returns the new state when it changed. An edge
    /// of unknown health becomes healthy after `rise` good probes and unhealthy after `fall`
    /// failed ones, like a known one.
    pub fn observe(&mut self, result: Result<(), String>, now: SystemTime) -> Option<&EdgeHealth> {
        match result {
            Ok(()) => {
                self.good = self.good.saturating_add(1);
                self.bad = 0;
                if !self.state.is_healthy() && self.good >= self.rise {
                    self.state = EdgeHealth::Healthy { since: now };
                    return Some(&self.state);
                }
            }
            Err(reason) => {
                self.bad = self.bad.saturating_add(1);
                self.good = 0;
                if let EdgeHealth::Unhealthy { reason: last, .. } = &mut self.state {
                    *last = reason; // the latest reason, without a transition
                } else if self.bad >= self.fall {
                    self.state = EdgeHealth::Unhealthy { since: now, reason };
                    return Some(&self.state);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn tracker() -> HealthTracker {
        HealthTracker::new(&HealthConfig::default()) // fall 3, rise 2
    }

    #[test]
    fn rise_good_probes_make_a_new_edge_healthy() {
        let mut t = tracker();
        assert_eq!(t.observe(Ok(()), at(1)), None);
        assert_eq!(t.state(), &EdgeHealth::Unknown);
        assert_eq!(
            t.observe(Ok(()), at(2)),
            Some(&EdgeHealth::Healthy { since: at(2) })
        );
        assert_eq!(
            t.observe(Ok(()), at(3)),
            None,
            "no transition while it stays"
        );
    }

    #[test]
    fn fall_failures_in_a_row_make_it_unhealthy_and_a_flap_does_not() {
        let mut t = tracker();
        t.observe(Ok(()), at(1));
        t.observe(Ok(()), at(2));
        // Two failures, one success: a flap, still healthy.
        assert_eq!(t.observe(Err("refused".into()), at(3)), None);
        assert_eq!(t.observe(Err("refused".into()), at(4)), None);
        assert_eq!(t.observe(Ok(()), at(5)), None);
        assert!(t.state().is_healthy());
        for s in 6..8 {
            assert_eq!(t.observe(Err("refused".into()), at(s)), None);
        }
        assert_eq!(
            t.observe(Err("timed out".into()), at(8)),
            Some(&EdgeHealth::Unhealthy {
                since: at(8),
                reason: "timed out".into()
            })
        );
        // Still failing: the reason follows, no new transition.
        assert_eq!(t.observe(Err("no worker".into()), at(9)), None);
        assert_eq!(
            t.state(),
            &EdgeHealth::Unhealthy {
                since: at(8),
                reason: "no worker".into()
            }
        );
    }

    #[test]
    fn recovery_needs_rise_good_probes_in_a_row() {
        let mut t = tracker();
        for s in 0..3 {
            t.observe(Err("down".into()), at(s));
        }
        assert!(t.state().is_unhealthy(), "an unknown edge can fall too");
        assert_eq!(t.observe(Ok(()), at(10)), None);
        assert_eq!(t.observe(Err("down".into()), at(11)), None);
        assert_eq!(t.observe(Ok(()), at(12)), None);
        assert_eq!(
            t.observe(Ok(()), at(13)),
            Some(&EdgeHealth::Healthy { since: at(13) })
        );
    }
}

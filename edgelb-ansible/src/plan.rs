//! What [`AnsibleDeployer::plan`](crate::AnsibleDeployer::plan) reports per node: whether a
//! deploy would change the live config, and the diff. Nothing is changed on the edges.

use edgelb_core::DeployError;

/// What a deploy would do to one node's live config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedChange {
    /// The live config already is the rendered one (digest line and body).
    Unchanged,
    /// A deploy would replace the live config (and reload).
    Change {
        /// A unified diff from the live config (`live <path>`) to the rendered one
        /// (`rendered`); everything is added when there is no live file.
        diff: String,
    },
}

impl PlannedChange {
    /// Whether a deploy would change anything.
    pub fn would_change(&self) -> bool {
        matches!(self, Self::Change { .. })
    }
}

/// The plan for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    /// Node name.
    pub node: String,
    /// What a deploy would do, or why the node could not be checked (unreachable, host key
    /// mismatch, …).
    pub result: Result<PlannedChange, DeployError>,
}

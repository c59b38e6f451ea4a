//! YAML with a budget: hostile input costs bounded time and memory.
//!
//! `serde_yaml_ng` (libyaml) gives the line-and-key error messages edgelb's files are known
//! for, but bounds neither alias expansion (a 500 KiB file whose anchored list is aliased 500
//! times expands to ten million entries) nor flow nesting (160,000 nested `[` take libyaml a
//! minute: its simple-key bookkeeping is quadratic in the depth). So every document is first
//! walked by `serde-saphyr` with a [`Budget`](serde_saphyr::Budget) and alias replay limits,
//! into nothing (`IgnoredAny`), which costs time linear in the input and memory bounded by
//! the budget; only a document within [`budget`] then reaches `serde_yaml_ng`, whose work is
//! bounded by the same counts.
//!
//! ```
//! use edgelb_core::yaml;
//! assert!(yaml::check_budget("services: []\n").is_ok());
//! let deep = format!("services: {}", "[".repeat(10_000));
//! assert!(yaml::check_budget(&deep).unwrap_err().contains("32 levels"));
//! ```

use serde::de::{DeserializeOwned, IgnoredAny};

/// Largest endpoints file read by default (1 MiB: about 50,000 endpoints).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 20;

/// Deepest nesting of mappings and sequences (an endpoints file needs 7).
pub const MAX_DEPTH: usize = 32;

/// Most YAML nodes (scalars, sequences, mappings) in one document.
pub const MAX_NODES: usize = 200_000;

/// Most events that aliases (`*name`) may replay in one document, all aliases together.
pub const MAX_ALIAS_REPLAYED_EVENTS: usize = 50_000;

/// Why a YAML document was refused.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// The document exceeds a structural limit (depth, nodes, alias expansion); the message
    /// names the limit.
    #[error("{0}")]
    Budget(String),
    /// The document is not valid YAML, or not of the expected shape (with line and column;
    /// shown on one line, as the message may quote the input).
    #[error("{}", crate::text::one_line(&.0.to_string()))]
    Parse(#[from] serde_yaml_ng::Error),
}

/// Checks `text` against the budget without building anything. `Err` says which limit was
/// exceeded, on one line.
pub fn check_budget(text: &str) -> Result<(), String> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    budget.max_events = 4 * MAX_NODES;
    budget.max_documents = 1;
    budget.max_inclusion_depth = 0;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAYED_EVENTS;
    options.with_snippet = false;
    let Err(err) = serde_saphyr::from_str_with_options::<IgnoredAny>(text, options) else {
        return Ok(());
    };
    let message = err.to_string();
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let over_limit = ["limit", "budget"].iter().any(|w| message.contains(w));
    Err(crate::text::one_line(&if over_limit {
        format!(
            "{message} (edgelb reads one YAML document of at most {MAX_DEPTH} levels, \
             {MAX_NODES} nodes and {MAX_ALIAS_REPLAYED_EVENTS} values repeated by aliases)"
        )
    } else {
        format!("invalid YAML: {message}")
    }))
}

/// [`check_budget`], then `serde_yaml_ng` for the value and its precise errors.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_budget(text).map_err(YamlError::Budget)?;
    Ok(serde_yaml_ng::from_str(text)?)
}

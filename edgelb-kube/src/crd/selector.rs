//! The label selector of an [`EdgePool`](super::EdgePool): the shape of Kubernetes'
//! `LabelSelector` (`matchLabels`, `matchExpressions`), with its semantics: every
//! requirement must hold, and an empty selector selects every EdgeNode.
//!
//! Defined here rather than taken from k8s-openapi so that its schema can be generated (and
//! carries a CEL rule), and so that matching it is plain code with tests.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A label selector: `matchLabels` and `matchExpressions`, all of which must hold.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    /// Labels the EdgeNode must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements on the EdgeNode's labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<SelectorRequirement>,
}

/// One requirement of a selector's `matchExpressions`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(self.operator == 'In' || self.operator == 'NotIn') ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
    "message": "In and NotIn need values; Exists and DoesNotExist take none"
}]))]
pub struct SelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1))]
    pub key: String,
    /// How the label's value relates to `values`.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn`; empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub values: Vec<String>,
}

/// The operator of a `matchExpressions` requirement.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    /// The label is set to one of the values.
    In,
    /// The label is unset or set to none of the values.
    NotIn,
    /// The label is set.
    Exists,
    /// The label is unset.
    DoesNotExist,
}

impl NodeSelector {
    /// Checks what the schema's CEL rule checks, for API servers that do not run it (and for
    /// objects written before the CRD carried it).
    pub fn validate(&self) -> Result<(), String> {
        for (i, req) in self.match_expressions.iter().enumerate() {
            if req.key.is_empty() {
                return Err(format!("matchExpressions[{i}].key is empty"));
            }
            let wants_values =
                matches!(req.operator, SelectorOperator::In | SelectorOperator::NotIn);
            if wants_values && req.values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}] ({}): {:?} needs at least one value",
                    req.key, req.operator
                ));
            }
            if !wants_values && !req.values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}] ({}): {:?} takes no values; remove them",
                    req.key, req.operator
                ));
            }
        }
        Ok(())
    }

    /// Whether an object with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator {
                    SelectorOperator::In => value.is_some_and(|v| req.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !req.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> SelectorRequirement {
        SelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn an_empty_selector_selects_everything() {
        assert!(NodeSelector::default().matches(&labels(&[])));
        assert!(NodeSelector::default().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn every_requirement_must_hold() {
        let selector = NodeSelector {
            match_labels: labels(&[("tier", "public")]),
            match_expressions: vec![
                req("zone", SelectorOperator::In, &["fra", "ams"]),
                req("drain", SelectorOperator::DoesNotExist, &[]),
                req("class", SelectorOperator::NotIn, &["lab"]),
            ],
        };
        assert!(selector.matches(&labels(&[("tier", "public"), ("zone", "fra")])));
        assert!(selector.matches(&labels(&[
            ("tier", "public"),
            ("zone", "ams"),
            ("class", "prod")
        ])));
        assert!(!selector.matches(&labels(&[("tier", "internal"), ("zone", "fra")])));
        assert!(!selector.matches(&labels(&[("tier", "public"), ("zone", "par")])));
        assert!(!selector.matches(&labels(&[("tier", "public")])));
        assert!(!selector.matches(&labels(&[
            ("tier", "public"),
            ("zone", "fra"),
            ("drain", "")
        ])));
        assert!(!selector.matches(&labels(&[
            ("tier", "public"),
            ("zone", "fra"),
            ("class", "lab")
        ])));
        let exists = NodeSelector {
            match_expressions: vec![req("edge", SelectorOperator::Exists, &[])],
            ..NodeSelector::default()
        };
        assert!(exists.matches(&labels(&[("edge", "")])));
        assert!(!exists.matches(&labels(&[])));
    }

    #[test]
    fn operators_and_values_must_agree() {
        let bad_in = NodeSelector {
            match_expressions: vec![req("zone", SelectorOperator::In, &[])],
            ..NodeSelector::default()
        };
        let err = bad_in.validate().unwrap_err();
        assert!(
            err.contains("zone") && err.contains("at least one value"),
            "{err}"
        );
        let bad_exists = NodeSelector {
            match_expressions: vec![req("zone", SelectorOperator::Exists, &["x"])],
            ..NodeSelector::default()
        };
        assert!(
            bad_exists
                .validate()
                .unwrap_err()
                .contains("takes no values")
        );
        let good = NodeSelector {
            match_expressions: vec![req("zone", SelectorOperator::NotIn, &["x"])],
            ..NodeSelector::default()
        };
        good.validate().unwrap();
    }
}

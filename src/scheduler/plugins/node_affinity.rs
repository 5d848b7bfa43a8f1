//! NodeAffinity: `spec.nodeSelector` and required node affinity decide where a pod may go;
//! preferred node affinity scores nodes by the summed weight of the terms they match.
//!
//! Terms of a node selector are ORed, the requirements within a term ANDed; a term with no
//! requirements matches nothing (upstream). `matchFields` supports `metadata.name`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{Filter, Score, Unfit, default_normalize};

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// The filter and the score.
pub struct NodeAffinity;

/// Whether a label requirement holds for these labels.
fn label_requirement(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let value = labels.get(&req.key);
    let integer = || -> Option<(i64, i64)> {
        let [bound] = values else { return None };
        Some((value?.parse().ok()?, bound.parse().ok()?))
    };
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => integer().is_some_and(|(v, bound)| v > bound),
        "Lt" => integer().is_some_and(|(v, bound)| v < bound),
        _ => false,
    }
}

/// Whether a field requirement holds (only `metadata.name` is a selectable field).
fn field_requirement(req: &NodeSelectorRequirement, node: &NodeInfo) -> bool {
    if req.key != "metadata.name" {
        return false;
    }
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => values.contains(&node.name),
        "NotIn" => !values.contains(&node.name),
        _ => false,
    }
}

/// Whether a node matches one term.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| label_requirement(r, &node.labels))
        && fields.iter().all(|r| field_requirement(r, node))
}

impl Filter for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn applies(&self, pod: &PodInfo) -> bool {
        !pod.node_selector.is_empty() || pod.required_affinity.is_some()
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let selector_ok = pod
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v));
        let affinity_ok = pod.required_affinity.as_ref().is_none_or(|required| {
            required
                .node_selector_terms
                .iter()
                .any(|term| term_matches(term, node))
        });
        if selector_ok && affinity_ok {
            Ok(())
        } else {
            Err(Unfit::new(REASON))
        }
    }
}

impl Score for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn applies(&self, pod: &PodInfo) -> bool {
        !pod.preferred_affinity.is_empty()
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.preferred_affinity
            .iter()
            .filter(|p| p.weight != 0 && term_matches(&p.preference, node))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64], _nodes: &[&NodeInfo]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{node, pod};
    use serde_json::json;

    fn required(exprs: serde_json::Value) -> PodInfo {
        pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}}),
        )
    }

    #[test]
    fn node_selector_needs_every_label() {
        let n = node(json!({"metadata": {"labels": {"disk": "ssd", "zone": "a"}}}));
        let p = pod(json!({"spec": {"nodeSelector": {"disk": "ssd", "zone": "a"}}}));
        assert!(Filter::applies(&NodeAffinity, &p));
        assert!(NodeAffinity.filter(&p, &n).is_ok());
        let p = pod(json!({"spec": {"nodeSelector": {"disk": "ssd", "zone": "b"}}}));
        assert_eq!(NodeAffinity.filter(&p, &n).unwrap_err().reasons(), [REASON]);
        assert!(!Filter::applies(&NodeAffinity, &pod(json!({}))));
    }

    #[test]
    fn every_operator() {
        let n = node(json!({"metadata": {"labels": {"disk": "ssd", "cores": "8"}}}));
        let cases = [
            (
                json!([{"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}]),
                true,
            ),
            (
                json!([{"key": "disk", "operator": "In", "values": ["hdd"]}]),
                false,
            ),
            (
                json!([{"key": "disk", "operator": "NotIn", "values": ["hdd"]}]),
                true,
            ),
            (
                json!([{"key": "gpu", "operator": "NotIn", "values": ["x"]}]),
                true,
            ),
            (
                json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]),
                false,
            ),
            (json!([{"key": "disk", "operator": "Exists"}]), true),
            (json!([{"key": "gpu", "operator": "Exists"}]), false),
            (json!([{"key": "gpu", "operator": "DoesNotExist"}]), true),
            (json!([{"key": "disk", "operator": "DoesNotExist"}]), false),
            (
                json!([{"key": "cores", "operator": "Gt", "values": ["4"]}]),
                true,
            ),
            (
                json!([{"key": "cores", "operator": "Gt", "values": ["8"]}]),
                false,
            ),
            (
                json!([{"key": "cores", "operator": "Lt", "values": ["16"]}]),
                true,
            ),
            (
                json!([{"key": "cores", "operator": "Lt", "values": ["8"]}]),
                false,
            ),
            (
                json!([{"key": "disk", "operator": "Gt", "values": ["1"]}]),
                false,
            ),
            (
                json!([{"key": "gpu", "operator": "Lt", "values": ["1"]}]),
                false,
            ),
            (
                json!([{"key": "disk", "operator": "In", "values": ["ssd"]},
                    {"key": "cores", "operator": "Gt", "values": ["100"]}]),
                false,
            ),
        ];
        for (exprs, fits) in cases {
            assert_eq!(
                NodeAffinity.filter(&required(exprs.clone()), &n).is_ok(),
                fits,
                "{exprs}"
            );
        }
    }

    #[test]
    fn terms_are_ored_and_empty_terms_match_nothing() {
        let n = node(json!({"metadata": {"name": "n1", "labels": {"disk": "ssd"}}}));
        let p = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}}),
        );
        assert!(NodeAffinity.filter(&p, &n).is_ok());
        let empty = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{}]}}}}}),
        );
        assert!(NodeAffinity.filter(&empty, &n).is_err());
    }

    #[test]
    fn preferred_terms_add_their_weights() {
        let p = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}]}}}}),
        );
        let both = node(json!({"metadata": {"labels": {"disk": "ssd", "zone": "a"}}}));
        let one = node(json!({"metadata": {"labels": {"zone": "a"}}}));
        let none = node(json!({}));
        let mut scores = [
            NodeAffinity.score(&p, &both),
            NodeAffinity.score(&p, &one),
            NodeAffinity.score(&p, &none),
        ];
        assert_eq!(scores, [15, 5, 0]);
        NodeAffinity.normalize(&mut scores, &[]);
        assert_eq!(scores, [100, 33, 0]);
    }
}

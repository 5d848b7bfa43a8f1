//! TaintToleration: a node's NoSchedule and NoExecute taints keep off every pod that does
//! not tolerate them; PreferNoSchedule taints the pod does not tolerate make a node less
//! attractive (scored by how many there are, fewer is better).

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::controllers::node_lifecycle::NO_SCHEDULE;
use crate::controllers::util::tolerates;
use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{Filter, Score, Unfit, default_normalize};

/// The filter and the score.
pub struct TaintToleration;

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let untolerated = node.taints.iter().find(|taint| {
            matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
                && !pod.tolerations.iter().any(|t| tolerates(t, taint))
        });
        match untolerated {
            None => Ok(()),
            Some(taint) => Err(Unfit::new(Cow::Owned(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            )))),
        }
    }
}

/// Whether the pod tolerates the NoSchedule taint `key` (with no value), as a node
/// condition's taint would be written.
pub fn tolerates_no_schedule(pod: &PodInfo, key: &str) -> bool {
    let taint = Taint {
        key: key.to_owned(),
        effect: NO_SCHEDULE.to_owned(),
        ..Taint::default()
    };
    pod.tolerations.iter().any(|t| tolerates(t, &taint))
}

fn prefer_no_schedule(t: &Toleration) -> bool {
    t.effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
}

impl Score for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn weight(&self) -> i64 {
        3
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        node.taints
            .iter()
            .filter(|taint| {
                taint.effect == "PreferNoSchedule"
                    && !pod
                        .tolerations
                        .iter()
                        .any(|t| prefer_no_schedule(t) && tolerates(t, taint))
            })
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64], _nodes: &[&NodeInfo]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{node, pod};
    use serde_json::json;

    #[test]
    fn untolerated_hard_taints_filter_in_upstream_wording() {
        let tainted = node(json!({"spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}));
        let plain = pod(json!({}));
        assert_eq!(
            TaintToleration
                .filter(&plain, &tainted)
                .unwrap_err()
                .reasons(),
            ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]
        );
        let partly = pod(json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]}}));
        assert_eq!(
            TaintToleration
                .filter(&partly, &tainted)
                .unwrap_err()
                .reasons(),
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        let wrong_value = pod(json!({"spec": {"tolerations": [
            {"operator": "Exists", "effect": "NoExecute"},
            {"key": "dedicated", "value": "cpu", "effect": "NoSchedule"}]}}));
        assert!(TaintToleration.filter(&wrong_value, &tainted).is_err());
        let both = pod(json!({"spec": {"tolerations": [
            {"operator": "Exists", "effect": "NoExecute"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}));
        assert!(TaintToleration.filter(&both, &tainted).is_ok());
        let soft = node(json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}));
        assert!(TaintToleration.filter(&plain, &soft).is_ok());
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let soft = node(json!({"spec": {"taints": [
            {"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]}}));
        let clean = node(json!({}));
        let plain = pod(json!({}));
        let mut scores = [
            TaintToleration.score(&plain, &soft),
            TaintToleration.score(&plain, &clean),
        ];
        assert_eq!(scores, [2, 0]);
        TaintToleration.normalize(&mut scores, &[]);
        assert_eq!(scores, [0, 100]);
        let tolerant = pod(json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}));
        assert_eq!(TaintToleration.score(&tolerant, &soft), 1);
        // A toleration for another effect does not help.
        let other = pod(
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(TaintToleration.score(&other, &soft), 2);
    }
}

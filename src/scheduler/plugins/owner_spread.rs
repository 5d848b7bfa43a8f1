//! OwnerSpread: pods of the same controller (ReplicaSet, StatefulSet, ...) spread across
//! nodes — a node already running more of the pod's siblings scores lower (upstream's
//! SelectorSpread, keyed by the controller owner rather than by matching selectors).

use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{Score, default_normalize};

/// The score.
pub struct OwnerSpread;

impl Score for OwnerSpread {
    fn name(&self) -> &'static str {
        "OwnerSpread"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn applies(&self, pod: &PodInfo) -> bool {
        pod.owner.is_some()
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.owner
            .as_ref()
            .and_then(|owner| node.owners.get(owner))
            .map_or(0, |n| i64::from(*n))
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{node, pod};
    use serde_json::json;

    #[test]
    fn nodes_with_fewer_siblings_score_higher() {
        let p = pod(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]}}));
        let mut crowded = node(json!({}));
        crowded.owners.insert("u1".into(), 4);
        crowded.owners.insert("other".into(), 9);
        let mut some = node(json!({}));
        some.owners.insert("u1".into(), 1);
        let empty = node(json!({}));
        let mut scores = [
            OwnerSpread.score(&p, &crowded),
            OwnerSpread.score(&p, &some),
            OwnerSpread.score(&p, &empty),
        ];
        assert_eq!(scores, [4, 1, 0]);
        OwnerSpread.normalize(&mut scores);
        assert_eq!(scores, [0, 75, 100]);
        assert!(!OwnerSpread.applies(&pod(json!({}))));
    }
}

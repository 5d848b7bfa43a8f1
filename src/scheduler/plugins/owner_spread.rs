//! OwnerSpread: pods of the same controller (ReplicaSet, StatefulSet, ...) spread across
//! nodes and zones — a node already running more of the pod's siblings scores lower, and
//! so does a node in a zone running more of them (upstream's SelectorSpread, keyed by the
//! controller owner rather than by matching selectors; zones weigh 2/3 as upstream).

use std::collections::HashMap;

use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{MAX_NODE_SCORE, Score};

/// The standard zone label.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The standard region label.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// How much the zone counts against the node (upstream's zoneWeighting).
const ZONE_WEIGHT: f64 = 2.0 / 3.0;

/// A node's zone as upstream keys it (region and zone together), if it has one.
fn zone_of(node: &NodeInfo) -> Option<(String, String)> {
    let zone = node.labels.get(ZONE_LABEL)?;
    let region = node.labels.get(REGION_LABEL).cloned().unwrap_or_default();
    Some((region, zone.clone()))
}

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

    fn normalize(&self, scores: &mut [i64], nodes: &[&NodeInfo]) {
        let max_by_node = scores.iter().copied().max().unwrap_or(0);
        let zones: Vec<Option<(String, String)>> = nodes.iter().map(|n| zone_of(n)).collect();
        let mut by_zone: HashMap<&(String, String), i64> = HashMap::new();
        for (zone, count) in zones.iter().zip(scores.iter()) {
            if let Some(zone) = zone {
                *by_zone.entry(zone).or_default() += count;
            }
        }
        let max_by_zone = by_zone.values().copied().max().unwrap_or(0);
        let spread = |count: i64, max: i64| {
            if max > 0 {
                MAX_NODE_SCORE as f64 * (max - count) as f64 / max as f64
            } else {
                MAX_NODE_SCORE as f64
            }
        };
        let normalized: Vec<i64> = scores
            .iter()
            .zip(&zones)
            .map(|(count, zone)| {
                let node_score = spread(*count, max_by_node);
                let score = match zone.as_ref().and_then(|z| by_zone.get(z)) {
                    Some(in_zone) => {
                        node_score * (1.0 - ZONE_WEIGHT)
                            + ZONE_WEIGHT * spread(*in_zone, max_by_zone)
                    }
                    None => node_score,
                };
                score as i64
            })
            .collect();
        scores.copy_from_slice(&normalized);
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
        OwnerSpread.normalize(&mut scores, &[&crowded, &some, &empty]);
        assert_eq!(scores, [0, 75, 100]);
        assert!(!OwnerSpread.applies(&pod(json!({}))));
    }

    #[test]
    fn zones_weigh_two_thirds() {
        let zone = |z: &str, n: u32| {
            let mut node = node(json!({"metadata": {"labels": {ZONE_LABEL: z}}}));
            if n > 0 {
                node.owners.insert("u1".into(), n);
            }
            node
        };
        // Zone a holds 2 siblings (on a1), zone b none: b's empty node beats a's empty one.
        let (a1, a2, b1) = (zone("a", 2), zone("a", 0), zone("b", 0));
        let mut scores = [2, 0, 0];
        OwnerSpread.normalize(&mut scores, &[&a1, &a2, &b1]);
        // a1: node 0, zone 0 → 0; a2: node 100, zone 0 → 33; b1: node 100, zone 100 → 100.
        assert_eq!(scores, [0, 33, 100]);
        // Without zone labels, only nodes count.
        let (n1, n2) = (node(json!({})), node(json!({})));
        let mut scores = [2, 0];
        OwnerSpread.normalize(&mut scores, &[&n1, &n2]);
        assert_eq!(scores, [0, 100]);
    }
}

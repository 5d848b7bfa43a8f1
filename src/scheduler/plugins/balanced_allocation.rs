//! NodeResourcesBalancedAllocation: prefer nodes where, with the pod placed, cpu and memory
//! would be used in similar proportions (so neither is stranded): 100 × (1 − the standard
//! deviation of the two used fractions). Pods requesting neither are not scored by it.

use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{MAX_NODE_SCORE, Score};

/// The score.
pub struct BalancedAllocation;

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    (requested as f64 / allocatable as f64).min(1.0)
}

impl Score for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn applies(&self, pod: &PodInfo) -> bool {
        let r = &pod.requests.requests;
        r.milli_cpu > 0 || r.memory > 0
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let r = &pod.requests.requests;
        let cpu = fraction(
            node.requested.milli_cpu + r.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = fraction(node.requested.memory + r.memory, node.allocatable.memory);
        // The standard deviation of two values is half their distance.
        let std = (cpu - memory).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{node, pod};
    use serde_json::json;

    #[test]
    fn balanced_use_scores_higher() {
        // node(): 4 cpu, 8Gi.
        let p = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}),
        );
        assert_eq!(BalancedAllocation.score(&p, &node(json!({}))), 100);
        let mut cpu_heavy = node(json!({}));
        cpu_heavy.requested.milli_cpu = 3000;
        // cpu 4/4 = 1.0, memory 2/8 = 0.25 → std 0.375 → 62.
        assert_eq!(BalancedAllocation.score(&p, &cpu_heavy), 62);
        assert!(!BalancedAllocation.applies(&pod(json!({}))));
    }
}

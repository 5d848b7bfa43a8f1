//! NodeResourcesFit: a pod goes only where its requests fit in what the node has
//! allocatable minus what the pods placed there (running, bound or assumed) request, and
//! where one more pod is allowed; among those, nodes with the most left over score highest
//! (upstream's LeastAllocated strategy, cpu and memory weighted equally, counting pods
//! without requests at the scoring defaults).

use std::borrow::Cow;

use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{Filter, MAX_NODE_SCORE, Score, Unfit};

/// Upstream's reason when the pod count is exhausted.
pub const TOO_MANY_PODS: &str = "Too many pods";

/// The filter and the least-allocated score.
pub struct NodeResourcesFit;

impl Filter for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let mut reasons: Vec<Cow<'static, str>> = Vec::new();
        if node.pod_count + 1 > node.allowed_pods {
            reasons.push(TOO_MANY_PODS.into());
        }
        let want = &pod.requests.requests;
        let (have, used) = (&node.allocatable, &node.requested);
        let short = |want: i64, have: i64, used: i64| want > 0 && want > have - used;
        if short(want.milli_cpu, have.milli_cpu, used.milli_cpu) {
            reasons.push("Insufficient cpu".into());
        }
        if short(want.memory, have.memory, used.memory) {
            reasons.push("Insufficient memory".into());
        }
        if short(
            want.ephemeral_storage,
            have.ephemeral_storage,
            used.ephemeral_storage,
        ) {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, amount) in &want.scalar {
            let have = have.scalar.get(name).copied().unwrap_or(0);
            let used = used.scalar.get(name).copied().unwrap_or(0);
            if short(*amount, have, used) {
                reasons.push(Cow::Owned(format!("Insufficient {name}")));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Unfit(reasons))
        }
    }
}

/// `(capacity - requested) / capacity` on the 0..=100 scale; 0 when nothing is left.
fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl Score for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = least_allocated(
            node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = least_allocated(
            node.non_zero_memory + pod.requests.non_zero_memory,
            node.allocatable.memory,
        );
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{node, pod};
    use serde_json::json;

    fn requesting(r: serde_json::Value) -> PodInfo {
        pod(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": r}}]}}))
    }

    #[test]
    fn requests_must_fit_in_what_is_left() {
        // node(): 4 cpu, 8Gi, 110 pods, 10Gi ephemeral, 2 example.com/gpu.
        let mut n = node(json!({}));
        n.requested.milli_cpu = 3500;
        assert!(
            NodeResourcesFit
                .filter(&requesting(json!({"cpu": "500m"})), &n)
                .is_ok()
        );
        assert_eq!(
            NodeResourcesFit
                .filter(&requesting(json!({"cpu": "501m", "memory": "9Gi"})), &n)
                .unwrap_err()
                .reasons(),
            ["Insufficient cpu", "Insufficient memory"]
        );
        assert_eq!(
            NodeResourcesFit
                .filter(
                    &requesting(json!({"ephemeral-storage": "11Gi", "example.com/gpu": "3"})),
                    &n
                )
                .unwrap_err()
                .reasons(),
            [
                "Insufficient ephemeral-storage",
                "Insufficient example.com/gpu"
            ]
        );
        assert!(
            NodeResourcesFit
                .filter(&requesting(json!({"example.com/gpu": "2"})), &n)
                .is_ok()
        );
        assert_eq!(
            NodeResourcesFit
                .filter(&requesting(json!({"example.com/fpga": "1"})), &n)
                .unwrap_err()
                .reasons(),
            ["Insufficient example.com/fpga"]
        );
    }

    #[test]
    fn pod_count_is_a_limit_even_for_pods_without_requests() {
        let mut n = node(json!({}));
        n.pod_count = 110;
        assert_eq!(
            NodeResourcesFit
                .filter(&pod(json!({})), &n)
                .unwrap_err()
                .reasons(),
            [TOO_MANY_PODS]
        );
        n.pod_count = 109;
        assert!(NodeResourcesFit.filter(&pod(json!({})), &n).is_ok());
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let empty = node(json!({}));
        let mut busy = node(json!({}));
        busy.non_zero_milli_cpu = 3000;
        busy.non_zero_memory = 6 * 1024 * 1024 * 1024;
        let p = requesting(json!({"cpu": "1", "memory": "2Gi"}));
        assert_eq!(NodeResourcesFit.score(&p, &empty), 75);
        assert_eq!(NodeResourcesFit.score(&p, &busy), 0);
        // No requests: counted as 100m and 200Mi.
        let best_effort = pod(json!({}));
        let s = NodeResourcesFit.score(&best_effort, &empty);
        assert_eq!(s, (97 + 97) / 2);
    }
}

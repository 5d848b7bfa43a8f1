//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods, unless the
//! pod tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use super::taint_toleration::tolerates_no_schedule;
use crate::controllers::node_lifecycle::TAINT_UNSCHEDULABLE;
use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{Filter, Unfit};

/// Upstream's reason.
pub const REASON: &str = "node(s) were unschedulable";

/// The filter.
pub struct NodeUnschedulable;

impl Filter for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if !node.unschedulable {
            return Ok(());
        }
        if tolerates_no_schedule(pod, TAINT_UNSCHEDULABLE) {
            Ok(())
        } else {
            Err(Unfit::new(REASON))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{node, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_refuse_pods_that_do_not_tolerate_it() {
        let cordoned = node(json!({"spec": {"unschedulable": true}}));
        let plain = pod(json!({}));
        assert_eq!(
            NodeUnschedulable
                .filter(&plain, &cordoned)
                .unwrap_err()
                .reasons(),
            [REASON]
        );
        assert!(NodeUnschedulable.filter(&plain, &node(json!({}))).is_ok());
        let tolerant = pod(json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert!(NodeUnschedulable.filter(&tolerant, &cordoned).is_ok());
    }
}

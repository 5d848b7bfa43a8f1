//! NodeReady: only nodes whose Ready condition is True take pods. Upstream relies on the
//! `node.kubernetes.io/not-ready` taint alone; checking the condition too closes the window
//! before the node lifecycle controller has tainted a node, and covers Node objects written
//! by hand without any conditions. Pods that tolerate the not-ready taint (DaemonSet-style)
//! pass, as they would upstream.

use super::taint_toleration::tolerates_no_schedule;
use crate::controllers::node_lifecycle::TAINT_NOT_READY;
use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{Filter, Unfit};

/// The reason (upstream's wording from when it had this check).
pub const REASON: &str = "node(s) were not ready";

/// The filter.
pub struct NodeReady;

impl Filter for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if node.ready {
            return Ok(());
        }
        if tolerates_no_schedule(pod, TAINT_NOT_READY) {
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
    fn not_ready_nodes_take_only_pods_tolerating_it() {
        let not_ready =
            node(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        let no_conditions = node(json!({"status": {"conditions": []}}));
        let plain = pod(json!({}));
        assert_eq!(
            NodeReady.filter(&plain, &not_ready).unwrap_err().reasons(),
            [REASON]
        );
        assert!(NodeReady.filter(&plain, &no_conditions).is_err());
        assert!(NodeReady.filter(&plain, &node(json!({}))).is_ok());
        let tolerant = pod(json!({"spec": {"tolerations": [{"operator": "Exists"}]}}));
        assert!(NodeReady.filter(&tolerant, &not_ready).is_ok());
    }
}

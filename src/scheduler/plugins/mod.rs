//! The filter and score plugins, one file each, and the default set kube-scheduler users
//! expect (in upstream's order, with upstream's weights where upstream has the plugin).

pub mod balanced_allocation;
pub mod node_affinity;
pub mod node_ports;
pub mod node_ready;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod owner_spread;
pub mod taint_toleration;

use super::framework::{Filter, Score};

/// Filters in the order they run; the first that rejects a node names the reason.
pub fn default_filters() -> Vec<Box<dyn Filter>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_ready::NodeReady),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
    ]
}

/// Scores, each with its weight.
pub fn default_scores() -> Vec<Box<dyn Score>> {
    vec![
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(balanced_allocation::BalancedAllocation),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(owner_spread::OwnerSpread),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use crate::scheduler::cache::{NodeInfo, PodInfo};

    fn merge(base: &mut Value, patch: Value) {
        json_patch::merge(base, &patch);
    }

    /// A Ready node with 4 cpu, 8Gi memory, 10Gi ephemeral storage, 2 example.com/gpu and
    /// room for 110 pods, changed by a merge patch.
    pub(crate) fn node(patch: Value) -> NodeInfo {
        let mut v = json!({
            "metadata": {"name": "n"},
            "status": {
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110",
                    "ephemeral-storage": "10Gi", "example.com/gpu": "2"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        merge(&mut v, patch);
        let mut cache = crate::scheduler::cache::Cache::new();
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(v).unwrap();
        let name = node.metadata.name.clone().unwrap();
        let _ = cache.upsert_node(Arc::new(node));
        cache.node(&name).unwrap().clone()
    }

    /// A pod in `default` with one container and no requests, changed by a merge patch.
    pub(crate) fn pod(patch: Value) -> PodInfo {
        let mut v = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}]},
        });
        merge(&mut v, patch);
        PodInfo::new(Arc::new(serde_json::from_value(v).unwrap()))
    }
}

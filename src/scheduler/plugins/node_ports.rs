//! NodePorts: a pod claiming a host port goes only where that port (protocol, address) is
//! free.

use crate::scheduler::cache::{NodeInfo, PodInfo};
use crate::scheduler::framework::{Filter, Unfit};

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The filter.
pub struct NodePorts;

impl Filter for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn applies(&self, pod: &PodInfo) -> bool {
        !pod.host_ports.is_empty()
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let taken = pod
            .host_ports
            .iter()
            .any(|want| node.host_ports.iter().any(|used| used.conflicts(want)));
        if taken {
            Err(Unfit::new(REASON))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{node, pod};
    use serde_json::json;

    fn claiming(port: i32, protocol: &str, ip: &str) -> PodInfo {
        pod(json!({"spec": {"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "hostPort": port, "protocol": protocol, "hostIP": ip}]}]}}))
    }

    #[test]
    fn ports_conflict_on_protocol_port_and_overlapping_address() {
        let mut n = node(json!({}));
        n.host_ports = claiming(8080, "TCP", "").host_ports;
        assert_eq!(
            NodePorts
                .filter(&claiming(8080, "TCP", ""), &n)
                .unwrap_err()
                .reasons(),
            [REASON]
        );
        assert!(
            NodePorts
                .filter(&claiming(8080, "TCP", "10.0.0.1"), &n)
                .is_err()
        );
        assert!(NodePorts.filter(&claiming(8080, "UDP", ""), &n).is_ok());
        assert!(NodePorts.filter(&claiming(8081, "TCP", ""), &n).is_ok());
        n.host_ports = claiming(8080, "TCP", "10.0.0.1").host_ports;
        assert!(
            NodePorts
                .filter(&claiming(8080, "TCP", "10.0.0.2"), &n)
                .is_ok()
        );
        assert!(
            NodePorts
                .filter(&claiming(8080, "TCP", "0.0.0.0"), &n)
                .is_err()
        );
        assert!(!NodePorts.applies(&pod(json!({}))));
    }
}

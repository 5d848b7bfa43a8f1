//! The scheduler's picture of the cluster: every node with what is already placed on it
//! (requests, host ports, pods per owner), updated one event at a time from the watches and
//! at once when the scheduler decides ("assumed" pods, so the next decision already counts
//! a placement whose binding is still in flight). A failed binding is rolled back with
//! [`Cache::forget`]; the watch confirms a successful one.
//!
//! It owns no I/O: the scheduler feeds it and locks it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, Pod, PreferredSchedulingTerm, Taint, Toleration,
};

use super::resources::{PodRequests, Resources, node_allocatable, pod_requests};
use crate::controllers::util::controller_of;

/// `namespace/name`.
pub type PodKey = String;

/// The key of a pod.
pub fn pod_key(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A host port a container claims.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The host IP, `0.0.0.0` for all.
    pub ip: String,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// Whether two claims collide: same protocol and port, and an IP in common.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// What scheduling needs from a pod, computed once per pod rather than once per node.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: PodKey,
    /// The pod.
    pub pod: Arc<Pod>,
    /// Its requests.
    pub requests: PodRequests,
    /// Host ports its containers (and sidecars) claim.
    pub host_ports: Vec<HostPort>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity.
    pub required_affinity: Option<NodeSelector>,
    /// Preferred node affinity.
    pub preferred_affinity: Vec<PreferredSchedulingTerm>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// uid of its controller (ReplicaSet, ...), for spreading.
    pub owner: Option<String>,
    /// `spec.priority`: higher is scheduled first.
    pub priority: i32,
}

impl PodInfo {
    /// Digest a pod.
    pub fn new(pod: Arc<Pod>) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut host_ports = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for p in c.ports.iter().flatten() {
                if let Some(port) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".to_owned()),
                        port,
                    });
                }
            }
        }
        let affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        PodInfo {
            key: pod_key(&pod),
            requests: pod_requests(&spec),
            host_ports,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_affinity: affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
            preferred_affinity: affinity
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            owner: controller_of(&pod.metadata).map(|r| r.uid.clone()),
            priority: spec.priority.unwrap_or(0),
            pod,
        }
    }

    /// The node the pod is assigned to, if any.
    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

/// One node and what is placed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The Node, once seen (pods can name a node before the node's watch event arrives).
    pub node: Option<Arc<Node>>,
    /// Labels of the node.
    pub labels: BTreeMap<String, String>,
    /// Taints of the node.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Ready condition is True.
    pub ready: bool,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// How many pods the node takes.
    pub allowed_pods: i64,
    /// Sum of the requests of the pods placed here.
    pub requested: Resources,
    /// cpu as scoring counts it (see [`PodRequests`]).
    pub non_zero_milli_cpu: i64,
    /// memory as scoring counts it.
    pub non_zero_memory: i64,
    /// Pods placed here.
    pub pod_count: i64,
    /// Host ports claimed (one entry per claim).
    pub host_ports: Vec<HostPort>,
    /// Pods placed here by owner uid.
    pub owners: HashMap<String, u32>,
}

impl NodeInfo {
    fn set_node(&mut self, node: Arc<Node>) {
        let spec = node.spec.as_ref();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        (self.allocatable, self.allowed_pods) = node_allocatable(&node);
        self.node = Some(node);
    }

    fn add_pod(&mut self, pod: &PodInfo) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        self.pod_count += 1;
        self.host_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
    }

    fn remove_pod(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests.requests);
        self.non_zero_milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        self.pod_count -= 1;
        for port in &pod.host_ports {
            if let Some(i) = self.host_ports.iter().position(|p| p == port) {
                self.host_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &pod.owner
            && let Some(n) = self.owners.get_mut(owner)
        {
            *n -= 1;
            if *n == 0 {
                self.owners.remove(owner);
            }
        }
    }

    /// Whether what matters for scheduling differs between two versions of a node.
    fn scheduling_view(&self) -> impl PartialEq + use<> {
        (
            self.labels.clone(),
            self.taints.clone(),
            self.unschedulable,
            self.ready,
            self.allocatable.clone(),
            self.allowed_pods,
        )
    }
}

/// A pod the cache counts on a node.
#[derive(Clone, Debug)]
struct Placed {
    info: Arc<PodInfo>,
    node: String,
    /// Placed by this scheduler and not yet confirmed by the watch.
    assumed: bool,
}

/// Every node and every placed pod.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<PodKey, Placed>,
}

/// Whether a change may let a waiting pod fit somewhere.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Capacity may have appeared: retry unschedulable pods.
    MayHelp,
    /// Nothing a waiting pod could use.
    Irrelevant,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nodes known (including ones only named by pods so far).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    fn slot(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo {
                    name: name.to_owned(),
                    ..NodeInfo::default()
                });
                self.index.insert(name.to_owned(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    fn drop_slot(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            self.nodes.swap_remove(i);
            if let Some(moved) = self.nodes.get(i) {
                self.index.insert(moved.name.clone(), i);
            }
        }
    }

    /// A node was added or changed.
    pub fn upsert_node(&mut self, node: Arc<Node>) -> Change {
        let name = node.metadata.name.clone().unwrap_or_default();
        let slot = self.slot(&name);
        let before = slot.node.is_some().then(|| slot.scheduling_view());
        slot.set_node(node);
        match before {
            Some(before) if before == slot.scheduling_view() => Change::Irrelevant,
            _ => Change::MayHelp,
        }
    }

    /// A node was deleted. Its pods stay counted until their own deletions arrive.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.get(name).copied() else {
            return;
        };
        if self.nodes[i].pod_count == 0 {
            self.drop_slot(name);
        } else {
            let pods = std::mem::take(&mut self.nodes[i]);
            self.nodes[i] = NodeInfo {
                name: pods.name,
                requested: pods.requested,
                non_zero_milli_cpu: pods.non_zero_milli_cpu,
                non_zero_memory: pods.non_zero_memory,
                pod_count: pods.pod_count,
                host_ports: pods.host_ports,
                owners: pods.owners,
                ..NodeInfo::default()
            };
        }
    }

    /// Names of all Nodes seen, for reconciling after a re-list.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.node.is_some())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Place `pod` on `node` now, before its binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.key);
        self.slot(node).add_pod(&pod);
        self.pods.insert(
            pod.key.clone(),
            Placed {
                info: pod,
                node: node.to_owned(),
                assumed: true,
            },
        );
    }

    /// Whether the pod is placed by this scheduler but not yet seen bound.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// Undo [`Cache::assume`] after a failed binding (no-op if the watch already confirmed
    /// the pod somewhere).
    pub fn forget(&mut self, key: &str) {
        if self.is_assumed(key) {
            self.remove_pod(key);
        }
    }

    /// An assigned pod from the watch: counted on its node (replacing an assumption or an
    /// earlier version). Terminal pods hold nothing and are removed.
    pub fn upsert_pod(&mut self, pod: Arc<PodInfo>) -> Change {
        let Some(node) = pod.node_name().map(str::to_owned) else {
            return Change::Irrelevant;
        };
        let phase = pod.pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return if self.remove_pod(&pod.key) {
                Change::MayHelp
            } else {
                Change::Irrelevant
            };
        }
        let shrank = self.pods.get(&pod.key).is_some_and(|p| {
            p.node != node || p.info.requests != pod.requests || p.info.host_ports != pod.host_ports
        });
        self.remove_pod(&pod.key);
        self.slot(&node).add_pod(&pod);
        self.pods.insert(
            pod.key.clone(),
            Placed {
                info: pod,
                node,
                assumed: false,
            },
        );
        if shrank {
            Change::MayHelp
        } else {
            Change::Irrelevant
        }
    }

    /// A pod is gone (or no longer placed). Returns whether it was counted.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(placed) = self.pods.remove(key) else {
            return false;
        };
        if let Some(i) = self.index.get(&placed.node).copied() {
            self.nodes[i].remove_pod(&placed.info);
            if self.nodes[i].node.is_none() && self.nodes[i].pod_count == 0 {
                self.drop_slot(&placed.node);
            }
        }
        true
    }

    /// Keys of all placed pods, for reconciling after a re-list.
    pub fn pod_keys(&self) -> Vec<PodKey> {
        self.pods.keys().cloned().collect()
    }

    /// Where a pod is placed, if it is.
    pub fn placement(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.node.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn node(name: &str, cpu: &str, mem: &str, pods: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {
                    "allocatable": {"cpu": cpu, "memory": mem, "pods": pods},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }))
            .unwrap(),
        )
    }

    pub(crate) fn pod(name: &str, cpu: &str, node: Option<&str>) -> Arc<PodInfo> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true}]},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}},
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]},
        });
        if let Some(node) = node {
            v["spec"]["nodeName"] = json!(node);
        }
        Arc::new(PodInfo::new(Arc::new(serde_json::from_value(v).unwrap())))
    }

    #[test]
    fn assume_counts_at_once_and_forget_rolls_back() {
        let mut cache = Cache::new();
        let _ = cache.upsert_node(node("a", "2", "1Gi", "10"));
        cache.assume(pod("p", "500m", None), "a");
        let a = cache.node("a").unwrap();
        assert_eq!(
            (a.requested.milli_cpu, a.pod_count, a.host_ports.len()),
            (500, 1, 1)
        );
        assert_eq!(a.owners.get("rs-uid"), Some(&1));
        assert!(cache.is_assumed("default/p"));
        cache.forget("default/p");
        let a = cache.node("a").unwrap();
        assert_eq!(
            (a.requested.milli_cpu, a.pod_count, a.host_ports.len()),
            (0, 0, 0)
        );
        assert!(a.owners.is_empty());
    }

    #[test]
    fn the_watch_confirms_an_assumption_without_counting_twice() {
        let mut cache = Cache::new();
        let _ = cache.upsert_node(node("a", "2", "1Gi", "10"));
        cache.assume(pod("p", "500m", None), "a");
        let _ = cache.upsert_pod(pod("p", "500m", Some("a")));
        assert!(!cache.is_assumed("default/p"));
        cache.forget("default/p");
        assert_eq!(cache.node("a").unwrap().requested.milli_cpu, 500);
        assert_eq!(cache.node("a").unwrap().pod_count, 1);
    }

    #[test]
    fn pods_before_their_node_and_nodes_deleted_under_pods() {
        let mut cache = Cache::new();
        let _ = cache.upsert_pod(pod("p", "1", Some("later")));
        assert!(cache.node("later").unwrap().node.is_none());
        assert_eq!(
            cache.upsert_node(node("later", "4", "1Gi", "10")),
            Change::MayHelp
        );
        assert_eq!(cache.node("later").unwrap().requested.milli_cpu, 1000);
        cache.remove_node("later");
        assert!(cache.node("later").unwrap().node.is_none());
        assert!(cache.remove_pod("default/p"));
        assert!(cache.node("later").is_none());
        assert!(cache.nodes().is_empty());
    }

    #[test]
    fn finished_pods_free_their_node() {
        let mut cache = Cache::new();
        let _ = cache.upsert_node(node("a", "2", "1Gi", "10"));
        let _ = cache.upsert_pod(pod("p", "1", Some("a")));
        let mut done = (*pod("p", "1", Some("a")).pod).clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        let change = cache.upsert_pod(Arc::new(PodInfo::new(Arc::new(done))));
        assert_eq!(change, Change::MayHelp);
        assert_eq!(cache.node("a").unwrap().pod_count, 0);
    }

    #[test]
    fn heartbeats_are_irrelevant_but_capacity_is_not() {
        let mut cache = Cache::new();
        assert_eq!(
            cache.upsert_node(node("a", "2", "1Gi", "10")),
            Change::MayHelp
        );
        assert_eq!(
            cache.upsert_node(node("a", "2", "1Gi", "10")),
            Change::Irrelevant
        );
        assert_eq!(
            cache.upsert_node(node("a", "4", "1Gi", "10")),
            Change::MayHelp
        );
    }
}

//! One scheduling decision: run the filters over the nodes, score the nodes that pass,
//! pick the best (ties at random) — or explain, in kube-scheduler's words, why no node
//! fits. Pure computation over the [`Cache`]; the plugins live in `plugins/`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::cache::{Cache, NodeInfo, PodInfo};
use super::plugins;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// Why a node cannot take a pod: one or more reasons in upstream's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfit(pub Vec<Cow<'static, str>>);

impl Unfit {
    /// One reason.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Unfit(vec![reason.into()])
    }

    /// The reasons.
    pub fn reasons(&self) -> Vec<&str> {
        self.0.iter().map(|r| r.as_ref()).collect()
    }
}

/// Decides whether a node can take a pod.
pub trait Filter: Send + Sync {
    /// Upstream-style plugin name.
    fn name(&self) -> &'static str;
    /// Whether there is anything to check for this pod at all (upstream's PreFilter
    /// "skip"), so pods without, say, host ports do not pay for the check per node.
    fn applies(&self, _pod: &PodInfo) -> bool {
        true
    }
    /// Whether the node can take the pod.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit>;
}

/// Ranks the nodes that passed the filters.
pub trait Score: Send + Sync {
    /// Upstream-style plugin name.
    fn name(&self) -> &'static str;
    /// How much this score counts against the others.
    fn weight(&self) -> i64;
    /// Whether the score says anything for this pod.
    fn applies(&self, _pod: &PodInfo) -> bool {
        true
    }
    /// The raw score of one node.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Bring the raw scores of all candidate nodes (`nodes[i]` scored `scores[i]`) to
    /// `0..=MAX_NODE_SCORE`; scores that are already on that scale need nothing.
    fn normalize(&self, _scores: &mut [i64], _nodes: &[&NodeInfo]) {}
}

/// Scale scores so the highest becomes [`MAX_NODE_SCORE`]; with `reverse`, the lowest
/// raw score wins instead (upstream `DefaultNormalizeScore`).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.fill(MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// Why a pod could not be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FitError {
    /// There are no nodes at all.
    NoNodes,
    /// Every node was rejected; how many nodes gave each reason.
    Unfit {
        /// Nodes considered.
        nodes: usize,
        /// Reason → number of nodes.
        reasons: HashMap<Cow<'static, str>, usize>,
    },
}

impl fmt::Display for FitError {
    /// kube-scheduler's message: `0/3 nodes are available: 1 node(s) had untolerated taint
    /// {node.kubernetes.io/unreachable: }, 2 Insufficient cpu.` (reasons sorted as strings).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FitError::NoNodes => f.write_str("no nodes available to schedule pods"),
            FitError::Unfit { nodes, reasons } => {
                let mut parts: Vec<String> = reasons
                    .iter()
                    .map(|(reason, n)| format!("{n} {reason}"))
                    .collect();
                parts.sort();
                write!(f, "0/{nodes} nodes are available: {}.", parts.join(", "))
            }
        }
    }
}

/// How many nodes to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeSampling {
    /// Every node, every time.
    All,
    /// Stop once this percentage of the nodes (at least 100) have passed the filters.
    Percentage(u32),
    /// Upstream's adaptive default: 50% at 100 nodes down to 5% from 5,625 nodes.
    Adaptive,
}

/// Upstream never samples below this many feasible nodes.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

impl NodeSampling {
    /// How many feasible nodes are enough out of `n`.
    pub fn enough(self, n: usize) -> usize {
        let percentage = match self {
            NodeSampling::All => return n,
            NodeSampling::Percentage(p) => p.min(100) as usize,
            NodeSampling::Adaptive => 50usize.saturating_sub(n / 125).max(5),
        };
        if n < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
            return n;
        }
        (n * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }
}

/// The plugins a decision runs, and its sampling state.
pub struct Profile {
    filters: Vec<Box<dyn Filter>>,
    scores: Vec<Box<dyn Score>>,
    sampling: NodeSampling,
    /// Where the next sampled search starts, so sampling does not favour the first nodes.
    next_start: AtomicUsize,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::new(plugins::default_filters(), plugins::default_scores())
    }
}

impl Profile {
    /// A profile of these plugins, looking at every node.
    pub fn new(filters: Vec<Box<dyn Filter>>, scores: Vec<Box<dyn Score>>) -> Self {
        Profile {
            filters,
            scores,
            sampling: NodeSampling::All,
            next_start: AtomicUsize::new(0),
        }
    }

    /// Look at only some of the nodes in large clusters.
    pub fn with_sampling(mut self, sampling: NodeSampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Choose a node for `pod`.
    pub fn schedule(
        &self,
        cache: &Cache,
        pod: &PodInfo,
        rng: &mut fastrand::Rng,
    ) -> Result<String, FitError> {
        let nodes = cache.nodes();
        let total = nodes.iter().filter(|n| n.node.is_some()).count();
        if total == 0 {
            return Err(FitError::NoNodes);
        }
        let filters: Vec<&dyn Filter> = self
            .filters
            .iter()
            .filter(|f| f.applies(pod))
            .map(|f| f.as_ref())
            .collect();
        let enough = self.sampling.enough(total);
        let start = if enough < total {
            self.next_start.load(Ordering::Relaxed) % nodes.len()
        } else {
            0
        };
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(enough.min(1024));
        let mut reasons: HashMap<Cow<'static, str>, usize> = HashMap::new();
        let mut visited = 0;
        for i in 0..nodes.len() {
            if feasible.len() >= enough {
                break;
            }
            let node = &nodes[(start + i) % nodes.len()];
            visited += 1;
            if node.node.is_none() {
                continue;
            }
            match filters.iter().try_for_each(|f| f.filter(pod, node)) {
                Ok(()) => feasible.push(node),
                Err(Unfit(why)) => {
                    for reason in why {
                        *reasons.entry(reason).or_default() += 1;
                    }
                }
            }
        }
        if enough < total {
            self.next_start
                .store((start + visited) % nodes.len(), Ordering::Relaxed);
        }
        match feasible.len() {
            0 => Err(FitError::Unfit {
                nodes: total,
                reasons,
            }),
            1 => Ok(feasible[0].name.clone()),
            _ => Ok(self.pick(pod, &feasible, rng).name.clone()),
        }
    }

    /// The highest-scoring node, ties broken uniformly at random.
    fn pick<'a>(
        &self,
        pod: &PodInfo,
        feasible: &[&'a NodeInfo],
        rng: &mut fastrand::Rng,
    ) -> &'a NodeInfo {
        let mut total = vec![0i64; feasible.len()];
        let mut raw = vec![0i64; feasible.len()];
        for plugin in self.scores.iter().filter(|s| s.applies(pod)) {
            for (slot, node) in raw.iter_mut().zip(feasible) {
                *slot = plugin.score(pod, node);
            }
            plugin.normalize(&mut raw, feasible);
            let weight = plugin.weight();
            for (sum, s) in total.iter_mut().zip(&raw) {
                *sum += s * weight;
            }
        }
        // Reservoir sampling over the maxima: each tied node wins with equal chance.
        let mut best = 0;
        let mut ties = 0;
        for (i, score) in total.iter().enumerate() {
            if *score > total[best] {
                best = i;
                ties = 1;
            } else if *score == total[best] {
                ties += 1;
                if rng.usize(..ties) == 0 {
                    best = i;
                }
            }
        }
        feasible[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn unfit_message_matches_kube_scheduler() {
        let mut reasons = HashMap::new();
        reasons.insert(Cow::Borrowed("Insufficient cpu"), 2);
        reasons.insert(
            Cow::Borrowed("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
            1,
        );
        let e = FitError::Unfit { nodes: 3, reasons };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 Insufficient cpu."
        );
        assert_eq!(
            FitError::NoNodes.to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn normalize_scales_and_reverses() {
        let mut s = [0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, [0, 50, 100]);
        let mut s = [0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
        let mut s = [0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, [100, 100]);
    }

    #[test]
    fn sampling_follows_upstream_numbers() {
        assert_eq!(NodeSampling::Adaptive.enough(50), 50);
        assert_eq!(NodeSampling::Adaptive.enough(1000), 420);
        assert_eq!(NodeSampling::Adaptive.enough(5000), 500);
        assert_eq!(NodeSampling::Adaptive.enough(20000), 1000);
        assert_eq!(NodeSampling::Percentage(1).enough(5000), 100);
        assert_eq!(NodeSampling::All.enough(5000), 5000);
    }

    #[test]
    fn picks_the_emptier_node_and_explains_failures() {
        let mut cache = Cache::new();
        let _ = cache.upsert_node(node("small", "1", "1Gi", "10"));
        let _ = cache.upsert_node(node("big", "8", "16Gi", "10"));
        let profile = Profile::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let p = pod("p", "500m", None);
        assert_eq!(profile.schedule(&cache, &p, &mut rng).unwrap(), "big");
        let huge = pod("huge", "16", None);
        assert_eq!(
            profile
                .schedule(&cache, &huge, &mut rng)
                .unwrap_err()
                .to_string(),
            "0/2 nodes are available: 2 Insufficient cpu."
        );
        assert_eq!(
            profile.schedule(&Cache::new(), &p, &mut rng).unwrap_err(),
            FitError::NoNodes
        );
    }

    #[test]
    fn ties_are_broken_at_random() {
        let mut cache = Cache::new();
        for name in ["a", "b", "c"] {
            let _ = cache.upsert_node(node(name, "4", "8Gi", "10"));
        }
        let profile = Profile::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen = std::collections::HashSet::new();
        let no_ports: PodInfo = {
            let mut p = (*pod("p", "1", None)).clone();
            p.host_ports.clear();
            p
        };
        for _ in 0..60 {
            seen.insert(profile.schedule(&cache, &no_ports, &mut rng).unwrap());
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
    }

    #[test]
    fn sampling_rotates_through_the_nodes() {
        let mut cache = Cache::new();
        for i in 0..300 {
            let _ = cache.upsert_node(node(&format!("n{i:03}"), "4", "8Gi", "10"));
        }
        let profile = Profile::default().with_sampling(NodeSampling::Percentage(10));
        let mut rng = fastrand::Rng::with_seed(3);
        let p = Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c"}]}}))
                .unwrap(),
        )));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..30 {
            seen.insert(profile.schedule(&cache, &p, &mut rng).unwrap());
        }
        // Each search looks at 100 nodes, starting where the last one stopped.
        assert!(seen.len() >= 25, "{}", seen.len());
    }

    mod properties {
        use super::*;
        use crate::scheduler::plugins::default_filters;
        use proptest::prelude::*;

        const LABELS: [&str; 3] = ["a", "b", "c"];

        fn arb_node() -> impl Strategy<Value = serde_json::Value> {
            (
                0u32..4000,
                0u32..4096,
                0u32..6,
                prop::sample::subsequence(LABELS.to_vec(), 0..=3),
                prop::option::of(prop::sample::select(LABELS.to_vec())),
                any::<bool>(),
                prop::bool::weighted(0.9),
            )
                .prop_map(|(cpu, mem, pods, labels, taint, cordoned, ready)| {
                    let labels: serde_json::Map<String, serde_json::Value> =
                        labels.into_iter().map(|l| (l.to_owned(), json!("yes"))).collect();
                    let taints: Vec<serde_json::Value> = taint
                        .into_iter()
                        .map(|t| json!({"key": t, "effect": "NoSchedule"}))
                        .collect();
                    json!({
                        "metadata": {"labels": labels},
                        "spec": {"taints": taints, "unschedulable": cordoned && pods % 2 == 0},
                        "status": {
                            "allocatable": {"cpu": format!("{cpu}m"), "memory": format!("{mem}Mi"), "pods": pods.to_string()},
                            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                        },
                    })
                })
        }

        fn arb_pod() -> impl Strategy<Value = serde_json::Value> {
            (
                0u32..1500,
                0u32..1500,
                prop::option::of(0u32..800),
                prop::option::of(prop::sample::select(LABELS.to_vec())),
                prop::option::of(prop::sample::select(LABELS.to_vec())),
                prop::option::of(prop::sample::select(vec![8080, 8081])),
                prop::option::of(prop::sample::select(LABELS.to_vec())),
            )
                .prop_map(|(cpu, mem, init_cpu, selector, toleration, port, avoid)| {
                    let mut container = json!({"name": "c", "resources": {"requests": {"cpu": format!("{cpu}m"), "memory": format!("{mem}Mi")}}});
                    if let Some(port) = port {
                        container["ports"] = json!([{"containerPort": 80, "hostPort": port}]);
                    }
                    let mut spec = json!({"containers": [container]});
                    if let Some(init) = init_cpu {
                        spec["initContainers"] = json!([{"name": "i", "resources": {"requests": {"cpu": format!("{init}m")}}}]);
                    }
                    if let Some(label) = selector {
                        spec["nodeSelector"] = json!({label: "yes"});
                    }
                    if let Some(t) = toleration {
                        spec["tolerations"] = json!([{"key": t, "operator": "Exists"}]);
                    }
                    if let Some(label) = avoid {
                        spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{"key": label, "operator": "DoesNotExist"}]}]}}});
                    }
                    spec
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]
            #[test]
            fn bindings_satisfy_every_filter_and_never_overcommit(
                nodes in prop::collection::vec(arb_node(), 1..8),
                pods in prop::collection::vec(arb_pod(), 1..40),
                sampled in any::<bool>(),
            ) {
                let mut cache = Cache::new();
                for (i, mut node) in nodes.into_iter().enumerate() {
                    node["metadata"]["name"] = json!(format!("n{i}"));
                    let _ = cache.upsert_node(Arc::new(serde_json::from_value(node).unwrap()));
                }
                let sampling = if sampled { NodeSampling::Adaptive } else { NodeSampling::All };
                let profile = Profile::default().with_sampling(sampling);
                let filters = default_filters();
                let mut rng = fastrand::Rng::with_seed(9);
                for (i, spec) in pods.into_iter().enumerate() {
                    let pod = Arc::new(PodInfo::new(Arc::new(serde_json::from_value(json!({
                        "metadata": {"name": format!("p{i}"), "namespace": "d"},
                        "spec": spec,
                    })).unwrap())));
                    let fits = |node: &NodeInfo| filters.iter().all(|f| !f.applies(&pod) || f.filter(&pod, node).is_ok());
                    match profile.schedule(&cache, &pod, &mut rng) {
                        Ok(name) => {
                            let node = cache.node(&name).unwrap();
                            prop_assert!(fits(node), "p{} placed on {} which fails a filter", i, name);
                            cache.assume(pod.clone(), &name);
                        }
                        Err(FitError::Unfit { nodes, reasons }) => {
                            // Complete: no node would have passed, and every node is counted.
                            prop_assert!(cache.nodes().iter().all(|n| !fits(n)));
                            prop_assert_eq!(nodes, cache.nodes().len());
                            prop_assert!(reasons.values().sum::<usize>() >= nodes);
                        }
                        Err(FitError::NoNodes) => prop_assert!(false, "there are nodes"),
                    }
                }
                for node in cache.nodes() {
                    prop_assert!(node.pod_count <= node.allowed_pods, "{} over its pod count", node.name);
                    prop_assert!(node.requested.milli_cpu <= node.allocatable.milli_cpu, "{} cpu over-committed", node.name);
                    prop_assert!(node.requested.memory <= node.allocatable.memory, "{} memory over-committed", node.name);
                    for (i, a) in node.host_ports.iter().enumerate() {
                        prop_assert!(node.host_ports[i + 1..].iter().all(|b| !a.conflicts(b)), "{} port claimed twice", node.name);
                    }
                }
            }
        }
    }
}

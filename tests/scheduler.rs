//! The scheduler against a real API server, with Node objects written by the tests (Ready,
//! with `status.allocatable`) and no agents: where pods land (requests, pod counts, node
//! readiness, node selectors, required and preferred node affinity, spreading by
//! controller, taints, cordons, host ports, priority order), what a pod no node takes is
//! told (PodScheduled=False and a FailedScheduling event in kube-scheduler's words) and how
//! soon it binds once something changes that lets it fit, which pods it leaves alone (other
//! schedulers', preset `spec.nodeName`), that a restarted scheduler re-binds nothing, leader
//! election between two instances, and the `moor scheduler --kubeconfig FILE` binary next
//! to `moor server --disable-scheduler`.
//!
//! Nodes are created before the scheduler starts wherever the test's expectations depend on
//! them, so its first full list already holds them and every decision is deterministic.

#[path = "support/process.rs"]
mod process;
use process::{Proc, free_port};

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, PodCondition};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use moor::controllers::leader::LeaderConfig;
use moor::scheduler::{LEASE_NAME, Scheduler};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// A scheduler running in this process; cancelled when dropped.
struct Running {
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Running {
    fn start(scheduler: Scheduler) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(scheduler.run(shutdown.clone()));
        Running {
            shutdown,
            task: Some(task),
        }
    }

    /// Cancel and wait until it has stopped (its in-flight writes done).
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the scheduler did not stop within 10 s")
                .unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fresh API server (embedded store) and a client for it.
struct Cluster {
    client: Client,
    _server: TestServer,
}

impl Cluster {
    async fn start() -> Self {
        let server = TestServer::start(Backend::Embedded).await;
        Cluster {
            client: server.client(),
            _server: server,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// The default scheduler, no leader election.
    fn scheduler(&self) -> Running {
        Running::start(Scheduler::new(self.client.clone()))
    }

    /// Register a Ready node with this much cpu and memory (room for 110 pods), changed by
    /// a merge patch (labels, spec).
    async fn node(&self, name: &str, cpu: &str, memory: &str, patch: Value) {
        create_node(&self.client, name, cpu, memory, patch).await;
    }

    /// Create a pod asking for `requests`, changed by a merge patch.
    async fn pod(&self, name: &str, requests: Value, patch: Value) -> Pod {
        self.pods()
            .create(&PostParams::default(), &pod(name, requests, patch))
            .await
            .unwrap_or_else(|e| panic!("creating pod {name}: {e}"))
    }
}

async fn create_node(client: &Client, name: &str, cpu: &str, memory: &str, patch: Value) {
    let mut v = json!({
        "metadata": {"name": name},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status"}],
        },
    });
    json_patch::merge(&mut v, &patch);
    let node: Node = serde_json::from_value(v).unwrap();
    let created = Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("creating node {name}: {e}"));
    // Nodes register with their status; make sure this server kept it.
    let kept = created.status.as_ref().and_then(|s| s.allocatable.as_ref());
    assert!(
        kept.is_some(),
        "node {name} lost its status on create: {created:?}"
    );
}

/// A pod with one container asking for `requests`, changed by a merge patch.
fn pod(name: &str, requests: Value, patch: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": requests}}]},
    });
    json_patch::merge(&mut v, &patch);
    serde_json::from_value(v).unwrap()
}

fn cpu(amount: &str) -> Value {
    json!({"cpu": amount})
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

fn pod_scheduled(pod: &Pod) -> Option<PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .cloned()
}

/// Wait until the pod is bound; its node.
async fn bound(pods: &Api<Pod>, name: &str) -> String {
    eventually_ok!(format!("pod {name} to be bound"), {
        let pod = pods.get(name).await.unwrap();
        node_name(&pod).ok_or(pod.status)
    })
}

/// Wait until every named pod is bound; pod → node.
async fn placements(pods: &Api<Pod>, names: &[String]) -> BTreeMap<String, String> {
    eventually_ok!(format!("pods {names:?} to be bound"), {
        let all: BTreeMap<String, Option<String>> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| (p.name_any(), node_name(p)))
            .collect();
        let placed: BTreeMap<String, String> = names
            .iter()
            .filter_map(|n| Some((n.clone(), all.get(n).cloned()??)))
            .collect();
        if placed.len() == names.len() {
            Ok(placed)
        } else {
            Err(all)
        }
    })
}

/// How many of the pods each node got.
fn per_node(placed: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in placed.values() {
        *counts.entry(node.clone()).or_default() += 1;
    }
    counts
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Wait until the pod is marked PodScheduled=False, reason Unschedulable; its message. The
/// pod must still have no node then.
async fn unschedulable(pods: &Api<Pod>, name: &str) -> String {
    let (pod, condition) = eventually_ok!(format!("pod {name} marked unschedulable"), {
        let pod = pods.get(name).await.unwrap();
        match pod_scheduled(&pod) {
            Some(c) if c.status == "False" => Ok((pod, c)),
            other => Err(other),
        }
    });
    assert_eq!(
        condition.reason.as_deref(),
        Some("Unschedulable"),
        "{condition:?}"
    );
    assert_eq!(node_name(&pod), None, "pod {name} was bound anyway");
    condition.message.unwrap_or_default()
}

/// Events about the pod with this reason.
async fn events(client: &Client, pod: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some("Pod")
                && e.involved_object.name.as_deref() == Some(pod)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

/// Wait until there is at least one such event; all of them.
async fn wait_events(client: &Client, pod: &str, reason: &str) -> Vec<Event> {
    eventually_ok!(format!("a {reason} event for pod {pod}"), {
        let found = events(client, pod, reason).await;
        if found.is_empty() { Err(()) } else { Ok(found) }
    })
}

/// How many times the event happened in all (Events with a count).
fn occurrences(events: &[Event]) -> i32 {
    events.iter().map(|e| e.count.unwrap_or(1)).sum()
}

async fn lease_holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt(LEASE_NAME)
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

// ---------------------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_go_only_where_they_fit() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    cluster.node("cpu-rich", "4", "1Gi", json!({})).await;
    cluster.node("mem-rich", "1", "8Gi", json!({})).await;
    let _scheduler = cluster.scheduler();

    cluster.pod("wants-cpu", cpu("3"), json!({})).await;
    assert_eq!(bound(&pods, "wants-cpu").await, "cpu-rich");
    cluster
        .pod("wants-memory", json!({"memory": "4Gi"}), json!({}))
        .await;
    assert_eq!(bound(&pods, "wants-memory").await, "mem-rich");
    // cpu-rich has 1 cpu and 1Gi left, mem-rich 1 cpu and 4Gi.
    cluster
        .pod(
            "wants-both",
            json!({"cpu": "2", "memory": "4Gi"}),
            json!({}),
        )
        .await;
    assert_eq!(
        unschedulable(&pods, "wants-both").await,
        "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."
    );
    // What is left still fits exactly.
    cluster
        .pod(
            "fits-mem-rich",
            json!({"cpu": "1", "memory": "4Gi"}),
            json!({}),
        )
        .await;
    assert_eq!(bound(&pods, "fits-mem-rich").await, "mem-rich");
    assert_eq!(node_name(&pods.get("wants-both").await.unwrap()), None);
}

#[tokio::test]
async fn pods_created_at_once_never_overbook_a_node() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    cluster.node("a", "2", "4Gi", json!({})).await;
    cluster.node("b", "2", "4Gi", json!({})).await;
    let _scheduler = cluster.scheduler();

    // All at once, so decisions follow each other while bindings are still in flight.
    let web = names("web", 4);
    futures::future::join_all(
        web.iter()
            .map(|name| cluster.pod(name, cpu("1"), json!({}))),
    )
    .await;
    let placed = placements(&pods, &web).await;
    assert_eq!(
        per_node(&placed),
        BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 2)]),
        "{placed:?}"
    );
    cluster.pod("one-too-many", cpu("1"), json!({})).await;
    assert_eq!(
        unschedulable(&pods, "one-too-many").await,
        "0/2 nodes are available: 2 Insufficient cpu."
    );
    // A finished pod holds nothing: its room goes to the waiting pod.
    pods.patch_status(
        "web-0",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    assert_eq!(bound(&pods, "one-too-many").await, placed["web-0"]);
}

fn required(terms: Value) -> Value {
    json!({"spec": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}})
}

fn expressions(exprs: Value) -> Value {
    required(json!([{ "matchExpressions": exprs }]))
}

#[tokio::test]
async fn node_selector_and_required_affinity_choose_the_matching_node() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    let labels = |l: Value| json!({"metadata": {"labels": l}});
    cluster
        .node(
            "n1",
            "4",
            "8Gi",
            labels(json!({"disk": "ssd", "cores": "4"})),
        )
        .await;
    cluster
        .node(
            "n2",
            "4",
            "8Gi",
            labels(json!({"disk": "hdd", "cores": "8"})),
        )
        .await;
    cluster
        .node("n3", "4", "8Gi", labels(json!({"cores": "16"})))
        .await;
    let _scheduler = cluster.scheduler();

    // Each pod matches exactly one node.
    let cases = [
        (
            "in",
            expressions(json!([{"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}])),
            "n1",
        ),
        (
            "not-in",
            expressions(json!([{"key": "disk", "operator": "NotIn", "values": ["ssd", "hdd"]}])),
            "n3",
        ),
        (
            "exists-and-gt",
            expressions(json!([{"key": "disk", "operator": "Exists"},
                {"key": "cores", "operator": "Gt", "values": ["4"]}])),
            "n2",
        ),
        (
            "does-not-exist",
            expressions(json!([{"key": "disk", "operator": "DoesNotExist"}])),
            "n3",
        ),
        (
            "gt",
            expressions(json!([{"key": "cores", "operator": "Gt", "values": ["8"]}])),
            "n3",
        ),
        (
            "lt",
            expressions(json!([{"key": "cores", "operator": "Lt", "values": ["5"]}])),
            "n1",
        ),
        (
            "selector",
            json!({"spec": {"nodeSelector": {"disk": "hdd"}}}),
            "n2",
        ),
        (
            "selector-and-affinity",
            json!({"spec": {"nodeSelector": {"cores": "4"}, "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}}),
            "n1",
        ),
        (
            "terms-are-ored",
            required(json!([
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]},
            ])),
            "n2",
        ),
    ];
    for (name, patch, _) in &cases {
        cluster.pod(name, json!({}), patch.clone()).await;
    }
    cluster
        .pod(
            "nowhere",
            json!({}),
            expressions(json!([{"key": "disk", "operator": "In", "values": ["nvme"]}])),
        )
        .await;
    let wanted: Vec<String> = cases.iter().map(|(n, _, _)| n.to_string()).collect();
    let placed = placements(&pods, &wanted).await;
    let expected: BTreeMap<String, String> = cases
        .iter()
        .map(|(n, _, node)| (n.to_string(), node.to_string()))
        .collect();
    assert_eq!(placed, expected);
    assert_eq!(
        unschedulable(&pods, "nowhere").await,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
}

#[tokio::test]
async fn preferred_affinity_picks_the_preferred_node() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    // Equal nodes but for their labels.
    cluster
        .node(
            "x",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"zone": "a"}}}),
        )
        .await;
    cluster
        .node(
            "y",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"zone": "b", "disk": "ssd"}}}),
        )
        .await;
    let _scheduler = cluster.scheduler();
    let preferring = |terms: Value| {
        json!({"spec": {"affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": terms}}}})
    };
    let zone = |zone: &str, weight: i32| {
        json!({"weight": weight, "preference": {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": [zone]}]}})
    };

    // Several, so a coin toss would not pass by chance.
    let to_b = names("prefers-b", 3);
    for name in &to_b {
        cluster
            .pod(name, cpu("100m"), preferring(json!([zone("b", 10)])))
            .await;
    }
    let placed = placements(&pods, &to_b).await;
    assert_eq!(
        per_node(&placed),
        BTreeMap::from([("y".to_owned(), 3)]),
        "{placed:?}"
    );
    // The preference outweighs y being a little busier now.
    cluster
        .pod("prefers-a", cpu("100m"), preferring(json!([zone("a", 10)])))
        .await;
    assert_eq!(bound(&pods, "prefers-a").await, "x");
    // The heavier term wins.
    cluster
        .pod(
            "weighted",
            cpu("100m"),
            preferring(json!([zone("a", 1),
                {"weight": 20, "preference": {"matchExpressions": [
                    {"key": "disk", "operator": "Exists"}]}}])),
        )
        .await;
    assert_eq!(bound(&pods, "weighted").await, "y");
}

#[tokio::test]
async fn not_ready_nodes_and_full_pod_counts_take_no_more_pods() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    let not_ready = json!({"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}});
    cluster.node("sick", "4", "8Gi", not_ready).await;
    cluster
        .node(
            "small",
            "4",
            "8Gi",
            json!({"status": {"allocatable": {"pods": "2"}}}),
        )
        .await;
    let _scheduler = cluster.scheduler();
    let two = names("fits", 2);
    for name in &two {
        cluster.pod(name, json!({}), json!({})).await;
    }
    let placed = placements(&pods, &two).await;
    assert_eq!(
        per_node(&placed),
        BTreeMap::from([("small".to_owned(), 2)]),
        "{placed:?}"
    );
    cluster.pod("third", json!({}), json!({})).await;
    assert_eq!(
        unschedulable(&pods, "third").await,
        "0/2 nodes are available: 1 Too many pods, 1 node(s) were not ready."
    );
    // The node turns Ready: the waiting pod goes there.
    let ready = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    cluster
        .nodes()
        .patch_status("sick", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    assert_eq!(bound(&pods, "third").await, "sick");
}

#[tokio::test]
async fn higher_priority_pods_are_placed_first() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    cluster.node("only", "1", "2Gi", json!({})).await;
    // All waiting before the scheduler starts, the high-priority one created last.
    for name in ["low-0", "low-1"] {
        cluster.pod(name, cpu("1"), json!({})).await;
    }
    cluster
        .pod("high", cpu("1"), json!({"spec": {"priority": 1000}}))
        .await;
    let _scheduler = cluster.scheduler();
    assert_eq!(bound(&pods, "high").await, "only");
    for name in ["low-0", "low-1"] {
        assert_eq!(
            unschedulable(&pods, name).await,
            "0/1 nodes are available: 1 Insufficient cpu."
        );
    }
}

// ---------------------------------------------------------------------------------------
// Spreading
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn pods_of_one_controller_spread_across_nodes() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    for name in ["a", "b", "c"] {
        cluster.node(name, "4", "8Gi", json!({})).await;
    }
    // The owner exists, but no controller runs to make pods of its own.
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(cluster.client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let uid = rs.uid().unwrap();
    // Unowned pods already take a cpu on a and b, so least-allocated alone would put every
    // replica on c: only spreading by owner makes it 2/2/2.
    for node in ["a", "b"] {
        cluster
            .pod(
                &format!("ballast-{node}"),
                cpu("1"),
                json!({"spec": {"nodeName": node}}),
            )
            .await;
    }
    let _scheduler = cluster.scheduler();

    let replicas = names("web", 6);
    for name in &replicas {
        cluster
            .pod(
                name,
                json!({}),
                json!({"metadata": {"labels": {"app": "web"}, "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}]}}),
            )
            .await;
    }
    let placed = placements(&pods, &replicas).await;
    assert_eq!(
        per_node(&placed),
        BTreeMap::from([
            ("a".to_owned(), 2),
            ("b".to_owned(), 2),
            ("c".to_owned(), 2)
        ]),
        "{placed:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Taints, cordons, host ports
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn taints_and_cordons_keep_pods_off() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    let role = |r: &str| json!({"metadata": {"labels": {"role": r}}});
    let mut tainted = role("tainted");
    tainted["spec"] =
        json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]});
    let mut cordoned = role("cordoned");
    cordoned["spec"] = json!({"unschedulable": true});
    let mut soft = role("soft");
    soft["spec"] = json!({"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]});
    cluster.node("tainted", "4", "8Gi", tainted).await;
    cluster.node("cordoned", "4", "8Gi", cordoned).await;
    cluster.node("soft", "4", "8Gi", soft).await;
    cluster.node("clean", "4", "8Gi", role("clean")).await;
    let _scheduler = cluster.scheduler();

    // Untolerated hard taints and cordons filter; the soft taint loses to the clean node.
    let plain = names("plain", 4);
    for name in &plain {
        cluster.pod(name, cpu("100m"), json!({})).await;
    }
    let on = |r: &str, tolerations: Value| json!({"spec": {"nodeSelector": {"role": r}, "tolerations": tolerations}});
    cluster
        .pod(
            "gpu-tolerant",
            cpu("100m"),
            on(
                "tainted",
                json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]),
            ),
        )
        .await;
    cluster
        .pod(
            "cordon-tolerant",
            cpu("100m"),
            on(
                "cordoned",
                json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
            ),
        )
        .await;
    // A soft taint is no filter.
    cluster
        .pod("pinned-soft", cpu("100m"), on("soft", json!([])))
        .await;
    // A toleration of another value does not help.
    cluster
        .pod(
            "gpu-intolerant",
            cpu("100m"),
            on(
                "tainted",
                json!([{"key": "dedicated", "operator": "Equal", "value": "tpu", "effect": "NoSchedule"}]),
            ),
        )
        .await;
    cluster
        .pod("pinned-cordoned", cpu("100m"), on("cordoned", json!([])))
        .await;

    let mut wanted = plain.clone();
    wanted.extend(
        ["gpu-tolerant", "cordon-tolerant", "pinned-soft"]
            .iter()
            .map(|s| s.to_string()),
    );
    let placed = placements(&pods, &wanted).await;
    let mut expected: BTreeMap<String, String> = plain
        .iter()
        .map(|n| (n.clone(), "clean".to_owned()))
        .collect();
    expected.insert("gpu-tolerant".into(), "tainted".into());
    expected.insert("cordon-tolerant".into(), "cordoned".into());
    expected.insert("pinned-soft".into(), "soft".into());
    assert_eq!(placed, expected);
    let why = "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
        1 node(s) were unschedulable, 2 node(s) didn't match Pod's node affinity/selector.";
    assert_eq!(unschedulable(&pods, "gpu-intolerant").await, why);
    assert_eq!(unschedulable(&pods, "pinned-cordoned").await, why);

    // Uncordoning the node and adding the missing toleration to the pod are changes that
    // may help: the waiting pods get another chance and bind.
    cluster
        .nodes()
        .patch(
            "cordoned",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": false}})),
        )
        .await
        .unwrap();
    assert_eq!(bound(&pods, "pinned-cordoned").await, "cordoned");
    let tolerations = json!({"spec": {"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "tpu", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}});
    pods.patch(
        "gpu-intolerant",
        &PatchParams::default(),
        &Patch::Merge(&tolerations),
    )
    .await
    .unwrap();
    assert_eq!(bound(&pods, "gpu-intolerant").await, "tainted");
}

#[tokio::test]
async fn a_host_port_is_given_out_once_per_node() {
    let cluster = Cluster::start().await;
    let pods = cluster.pods();
    cluster.node("only", "4", "8Gi", json!({})).await;
    let _scheduler = cluster.scheduler();
    let claiming = |protocol: &str| {
        json!({"spec": {"containers": [{"name": "c", "image": "busybox", "ports": [
            {"containerPort": 80, "hostPort": 8080, "protocol": protocol}]}]}})
    };
    cluster.pod("web-0", json!({}), claiming("TCP")).await;
    cluster.pod("web-1", json!({}), claiming("TCP")).await;
    // Same port over another protocol is no conflict.
    cluster.pod("dns", json!({}), claiming("UDP")).await;
    assert_eq!(bound(&pods, "dns").await, "only");

    let (winner, loser) = eventually_ok!("one of web-0/web-1 bound", {
        let w0 = node_name(&pods.get("web-0").await.unwrap());
        let w1 = node_name(&pods.get("web-1").await.unwrap());
        match (w0, w1) {
            (Some(_), None) => Ok(("web-0", "web-1")),
            (None, Some(_)) => Ok(("web-1", "web-0")),
            other => Err(other),
        }
    });
    assert_eq!(
        unschedulable(&pods, loser).await,
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
    assert_eq!(
        node_name(&pods.get(winner).await.unwrap()).as_deref(),
        Some("only")
    );

    // The port is free again once its holder is gone.
    pods.delete(
        winner,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(bound(&pods, loser).await, "only");
}

// ---------------------------------------------------------------------------------------
// Unschedulable pods
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unschedulable_pod_is_told_why_and_binds_once_a_node_fits() {
    let cluster = Cluster::start().await;
    let (client, pods) = (&cluster.client, cluster.pods());
    cluster.node("a", "1", "2Gi", json!({})).await;
    cluster.node("b", "1", "2Gi", json!({})).await;
    let _scheduler = cluster.scheduler();

    cluster.pod("big", cpu("2"), json!({})).await;
    let why = "0/2 nodes are available: 2 Insufficient cpu.";
    assert_eq!(unschedulable(&pods, "big").await, why);
    let failed = wait_events(client, "big", "FailedScheduling").await;
    for event in &failed {
        assert_eq!(event.message.as_deref(), Some(why), "{event:?}");
        assert_eq!(event.type_.as_deref(), Some("Warning"), "{event:?}");
        assert_eq!(
            event.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("default-scheduler"),
            "{event:?}"
        );
    }

    let added = Instant::now();
    cluster.node("c", "4", "8Gi", json!({})).await;
    assert_eq!(bound(&pods, "big").await, "c");
    let took = added.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "bound {took:?} after a fitting node appeared"
    );
    let condition = pod_scheduled(&pods.get("big").await.unwrap()).unwrap();
    assert_eq!(condition.status, "True", "{condition:?}");
    let scheduled = wait_events(client, "big", "Scheduled").await;
    assert_eq!(
        scheduled[0].message.as_deref(),
        Some("Successfully assigned default/big to c")
    );
    assert_eq!(occurrences(&scheduled), 1, "{scheduled:?}");
}

#[tokio::test]
async fn pods_wait_for_the_first_node_in_every_namespace() {
    let cluster = Cluster::start().await;
    let client = &cluster.client;
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let _scheduler = cluster.scheduler();
    // The same name in two namespaces: two pods.
    let both: Vec<Api<Pod>> = ["default", "team"]
        .iter()
        .map(|ns| Api::namespaced(client.clone(), ns))
        .collect();
    for pods in &both {
        pods.create(&PostParams::default(), &pod("web", cpu("1"), json!({})))
            .await
            .unwrap();
    }
    for pods in &both {
        assert_eq!(
            unschedulable(pods, "web").await,
            "no nodes available to schedule pods"
        );
    }
    cluster.node("first", "4", "8Gi", json!({})).await;
    for pods in &both {
        assert_eq!(bound(pods, "web").await, "first");
    }
}

// ---------------------------------------------------------------------------------------
// What the scheduler leaves alone
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn other_schedulers_pods_and_preset_nodes_are_left_alone() {
    let cluster = Cluster::start().await;
    let (client, pods) = (&cluster.client, cluster.pods());
    cluster.node("a", "2", "4Gi", json!({})).await;
    cluster.node("b", "2", "4Gi", json!({})).await;
    let _scheduler = cluster.scheduler();

    // Placed by whoever created it, using all of a's cpu.
    let hog = cluster
        .pod("hog", cpu("2"), json!({"spec": {"nodeName": "a"}}))
        .await;
    let other = cluster
        .pod(
            "other",
            cpu("500m"),
            json!({"spec": {"schedulerName": "my-scheduler"}}),
        )
        .await;
    let mine = names("mine", 3);
    for name in &mine {
        cluster.pod(name, cpu("500m"), json!({})).await;
    }
    let placed = placements(&pods, &mine).await;
    assert_eq!(
        per_node(&placed),
        BTreeMap::from([("b".to_owned(), 3)]),
        "{placed:?}"
    );
    let now_other = pods.get("other").await.unwrap();
    assert_eq!(node_name(&now_other), None);
    assert_eq!(pod_scheduled(&now_other), None, "{:?}", now_other.status);
    assert_eq!(now_other.resource_version(), other.resource_version());
    assert!(events(client, "other", "FailedScheduling").await.is_empty());
    let now_hog = pods.get("hog").await.unwrap();
    assert_eq!(node_name(&now_hog).as_deref(), Some("a"));
    assert_eq!(now_hog.resource_version(), hog.resource_version());
    assert!(events(client, "hog", "Scheduled").await.is_empty());

    // Its own scheduler places it, counting everything already there.
    let _mine = Running::start(Scheduler::new(client.clone()).with_name("my-scheduler"));
    assert_eq!(bound(&pods, "other").await, "b");
}

// ---------------------------------------------------------------------------------------
// Restarts and leader election
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_restarted_scheduler_rebinds_nothing() {
    let cluster = Cluster::start().await;
    let (client, pods) = (&cluster.client, cluster.pods());
    cluster.node("a", "2", "4Gi", json!({})).await;
    cluster.node("b", "2", "4Gi", json!({})).await;
    let first = cluster.scheduler();
    let early = names("early", 3);
    for name in &early {
        cluster.pod(name, cpu("1"), json!({})).await;
    }
    let placed = placements(&pods, &early).await;
    // Two on one node, one on the other.
    let counts = per_node(&placed);
    let roomy = counts
        .iter()
        .find(|(_, n)| **n == 1)
        .map(|(node, _)| node.clone())
        .unwrap_or_else(|| panic!("not 2/1: {placed:?}"));
    first.stop().await;
    let before: BTreeMap<String, (Option<String>, Option<String>)> = {
        let mut before = BTreeMap::new();
        for name in &early {
            let pod = pods.get(name).await.unwrap();
            before.insert(name.clone(), (node_name(&pod), pod.resource_version()));
        }
        before
    };

    let _second = cluster.scheduler();
    // Time for a confused successor to touch the pods it finds placed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.pod("late", cpu("1"), json!({})).await;
    // Only one cpu is left, on the node with one pod: the successor counts what is placed.
    assert_eq!(bound(&pods, "late").await, roomy);
    for name in &early {
        let pod = pods.get(name).await.unwrap();
        assert_eq!(
            (node_name(&pod), pod.resource_version()),
            before[name],
            "pod {name} was touched after the restart"
        );
        let scheduled = events(client, name, "Scheduled").await;
        assert_eq!(occurrences(&scheduled), 1, "{name}: {scheduled:?}");
        assert!(events(client, name, "FailedScheduling").await.is_empty());
    }
}

fn leader_config(identity: &str) -> LeaderConfig {
    let mut config = LeaderConfig::new(LEASE_NAME);
    config.identity = identity.to_owned();
    config.lease_duration = Duration::from_secs(2);
    config.renew_deadline = Duration::from_millis(1500);
    config.retry_period = Duration::from_millis(200);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_one_of_two_schedulers_acts() {
    let cluster = Cluster::start().await;
    let (client, pods) = (&cluster.client, cluster.pods());
    cluster.node("a", "2", "4Gi", json!({})).await;
    cluster.node("b", "2", "4Gi", json!({})).await;
    let elected = |identity: &str| {
        Running::start(Scheduler::new(client.clone()).with_leader_election(leader_config(identity)))
    };
    let mut candidates = BTreeMap::from([("one", elected("one")), ("two", elected("two"))]);

    // Room for exactly these four: two schedulers acting at once could overbook a node.
    let first = names("first", 4);
    for name in &first {
        cluster.pod(name, cpu("1"), json!({})).await;
    }
    let placed = placements(&pods, &first).await;
    assert_eq!(
        per_node(&placed),
        BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 2)]),
        "{placed:?}"
    );
    for name in &first {
        let scheduled = wait_events(client, name, "Scheduled").await;
        assert_eq!(occurrences(&scheduled), 1, "{name}: {scheduled:?}");
    }
    let leader = lease_holder(client).await.expect("the lease has no holder");
    let leader = *candidates
        .keys()
        .find(|k| **k == leader)
        .unwrap_or_else(|| panic!("the lease is held by {leader:?}, not a candidate"));
    let follower = if leader == "one" { "two" } else { "one" };

    // The leader shuts down and hands over; the successor counts what is placed.
    candidates.remove(leader).unwrap().stop().await;
    eventually_ok!("the follower to take the lease", {
        match lease_holder(client).await {
            Some(h) if h == follower => Ok(()),
            other => Err(other),
        }
    });
    cluster.node("c", "2", "4Gi", json!({})).await;
    let second = names("second", 2);
    for name in &second {
        cluster.pod(name, cpu("1"), json!({})).await;
    }
    let placed = placements(&pods, &second).await;
    assert_eq!(
        per_node(&placed),
        BTreeMap::from([("c".to_owned(), 2)]),
        "{placed:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

/// Spawn `moor ARGS`; returns it once a stdout line starts with `ready`, and that line.
fn spawn_moor(args: &[&str], ready: &str) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(args)
        .env_remove("MOOR_ETCD_ENDPOINTS")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let line = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("moor {args:?} exited before printing {ready:?}"))
            .unwrap();
        if line.starts_with(ready) {
            break line;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, line)
}

async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn moor_scheduler_binds_pods_of_a_server_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (_server, _) = spawn_moor(
        &[
            "server",
            "--data-dir",
            data_dir,
            "--listen",
            &listen,
            "--disable-scheduler",
            "--disable-controllers",
            "--disable-gitops",
        ],
        "apiserver",
    );
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let client = client_from(&kubeconfig).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_node(&client, "n1", "4", "8Gi", json!({})).await;
    pods.create(&PostParams::default(), &pod("early", cpu("1"), json!({})))
        .await
        .unwrap();
    // Nothing can be polled for here: give an in-process scheduler, were there one, ample
    // time (it binds within milliseconds).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        node_name(&pods.get("early").await.unwrap()),
        None,
        "bound despite --disable-scheduler"
    );

    let (mut scheduler, banner) = spawn_moor(
        &["scheduler", "--kubeconfig", kubeconfig.to_str().unwrap()],
        "scheduler",
    );
    assert!(
        banner.contains("default-scheduler")
            && banner.contains("leader-elected (Lease kube-system/moor-scheduler)"),
        "{banner}"
    );
    assert_eq!(bound(&pods, "early").await, "n1");
    pods.create(&PostParams::default(), &pod("late", cpu("1"), json!({})))
        .await
        .unwrap();
    assert_eq!(bound(&pods, "late").await, "n1");
    let holder = lease_holder(&client).await;
    assert!(holder.is_some_and(|h| !h.is_empty()), "no lease holder");

    // SIGTERM: a clean exit that hands the lease back.
    let pid = libc::pid_t::try_from(scheduler.0.id()).unwrap();
    // SAFETY: signalling a child this test spawned and has not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = eventually_some!("moor scheduler to exit", scheduler.0.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
    assert_eq!(lease_holder(&client).await, None);
}

/// kubectl against `moor server` as it runs by default (controllers and scheduler
/// in-process): a Deployment's pods land on the node, `get -o wide` shows it, and
/// `describe` tells the story in kube-scheduler's words.
#[tokio::test]
async fn kubectl_sees_the_default_server_schedule_a_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (_server, _) = spawn_moor(
        &[
            "server",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &listen,
            "--disable-gitops",
        ],
        "apiserver",
    );
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let kubectl = |args: &[&str], stdin: Option<&str>| -> String {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed (scripts/setup)");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    kubectl(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: box1\nstatus:\n  allocatable: {cpu: '2', memory: 4Gi, pods: '110'}\n  conditions: [{type: Ready, status: 'True'}]\n\
             ---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: busybox\n        resources: {requests: {cpu: 100m}}\n",
        ),
    );
    let wide = eventually_ok!("both pods on box1", {
        let wide = kubectl(&["get", "pods", "-l", "app=web", "-o", "wide"], None);
        let on_box1 = wide.lines().filter(|l| l.contains(" box1 ")).count();
        if on_box1 == 2 { Ok(wide) } else { Err(wide) }
    });
    let pod = wide
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let described = eventually_ok!("the Scheduled event in describe", {
        let described = kubectl(&["describe", "pod", &pod], None);
        if described.contains(&format!("Successfully assigned default/{pod} to box1")) {
            Ok(described)
        } else {
            Err(described)
        }
    });
    assert!(described.contains("default-scheduler"), "{described}");
    assert!(
        described.contains("Node:") && described.contains("box1"),
        "{described}"
    );
}

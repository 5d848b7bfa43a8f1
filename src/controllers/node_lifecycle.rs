//! The node lifecycle controller, as kube-controller-manager's: it notices nodes whose agent
//! stopped reporting, taints them, and evicts their pods once the pods' tolerations run out.
//!
//! **Health.** An agent shows it is alive by renewing its Lease in `kube-node-lease`
//! (named after the node) and by the `lastHeartbeatTime` of its Ready condition. Like
//! upstream's "probe timestamp", the controller judges by its *own* clock when it last saw
//! either move forward, so a node whose clock is off neither dies nor lives by it. A node
//! with no new heartbeat for `node_monitor_grace` gets its Ready, MemoryPressure,
//! DiskPressure and PIDPressure conditions set to `Unknown` (`NodeStatusUnknown`,
//! "Kubelet stopped posting node status."; conditions never posted are added as
//! `NodeStatusNeverUpdated`), a `NodeNotReady` event, and its pods' Ready conditions set to
//! False (so Services stop sending them traffic). The first sighting of a node — including
//! every node when the controller starts — starts a full grace period.
//!
//! **Taints** (upstream's TaintNodesByCondition and taint-based eviction):
//! `node.kubernetes.io/unreachable` NoExecute (with `timeAdded`) and NoSchedule while the
//! node is unreachable; `not-ready` NoExecute and NoSchedule while the agent reports Ready
//! False; NoSchedule for `memory-pressure`, `disk-pressure`, `pid-pressure`,
//! `network-unavailable` conditions that are True and for `spec.unschedulable`. A node
//! whose agent posts a fresh heartbeat is no longer unreachable and loses the unreachable
//! taints at once, even before the agent rewrites its conditions (they are its business).
//!
//! **Eviction** (upstream's taint-eviction controller): a pod on a node with NoExecute
//! taints is deleted (gracefully, as upstream: the agent finishes it) as soon as one taint
//! has no matching toleration, else when the shortest `tolerationSeconds` among the
//! tolerations used runs out, counted from when the taint appeared (or the pod, if later);
//! tolerations without `tolerationSeconds` tolerate forever. Upstream's
//! DefaultTolerationSeconds admission gives every pod `not-ready` and `unreachable`
//! NoExecute tolerations of 300 s; moor's API server does not (yet), so a pod without its
//! own toleration for those taints is treated as having one for `pod_eviction_timeout`.
//!
//! It requeues a node for the next moment something can change by time alone (its grace
//! running out, a toleration expiring), never on a fixed tick.
//!
//! It owns the taints listed above (by key and effect) and, only while a node is
//! unreachable, the conditions listed above. It never deletes nodes, never changes other
//! taints or conditions, and touches pods only to mark them not ready and to evict them.
//! Not done, unlike upstream: zone-aware eviction rate limits and the "full disruption"
//! mode that stops evictions when every node is down (with one node that would make the
//! whole feature moot), and the `DisruptionTarget` pod condition before an eviction.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::events::{EventType, Recorder, reference};
use super::util::{is_terminating, tolerates};

/// Where agents keep their heartbeat Leases, one per node, named after it.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint of a node whose agent stopped reporting.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose agent reports it not ready.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a cordoned node.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// Taint effect: pods that do not tolerate it are evicted.
pub const NO_EXECUTE: &str = "NoExecute";
/// Taint effect: pods that do not tolerate it are not scheduled there.
pub const NO_SCHEDULE: &str = "NoSchedule";

/// Reason of conditions the controller set to Unknown.
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
/// Message of conditions the controller set to Unknown.
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// The conditions set to Unknown when a node stops reporting (upstream's list).
const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// NoSchedule taints for conditions that are True.
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// How soon to look again after a write lost a race with the agent.
const CONFLICT_RETRY: Duration = Duration::from_millis(100);
/// A requeue lands this much after the moment it waits for, so that moment has passed.
const MARGIN: Duration = Duration::from_millis(10);

/// Errors a reconcile returns (retried with back-off): a failed API request.
pub use super::ApiError as Error;
use super::api_error;

/// Whether the error is a 409: the object changed under us, and its watch event will
/// bring us back.
fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

/// What the controller remembers of one node.
struct Health {
    /// The node's uid: a node deleted and registered again starts afresh.
    uid: String,
    /// The latest heartbeat seen: the later of the Lease's renewTime and the Ready
    /// condition's lastHeartbeatTime (the agent's clock; only compared with itself).
    heartbeat: Option<jiff::Timestamp>,
    /// When, by our clock, the heartbeat last moved (or we first saw the node).
    probed: Instant,
    /// Whether a heartbeat moved since we first saw the node or last found it stale.
    alive: bool,
    /// When each NoExecute taint (by key) began, by our wall clock: `timeAdded` has whole
    /// seconds only, and a taint someone else added may have none. With the second it was
    /// recorded under, to notice the taint being replaced.
    taint_starts: HashMap<String, (Option<i64>, jiff::Timestamp)>,
    /// Pods (by uid) already evicted, so a lagging cache does not evict them twice.
    evicted: HashSet<String>,
}

impl Health {
    fn new(uid: String, heartbeat: Option<jiff::Timestamp>, now: Instant) -> Self {
        Health {
            uid,
            heartbeat,
            probed: now,
            alive: false,
            taint_starts: HashMap::new(),
            evicted: HashSet::new(),
        }
    }
}

/// What one look at a node's heartbeats concluded.
struct Observation {
    /// No heartbeat for longer than the grace period.
    stale: bool,
    /// A heartbeat moved since we first saw the node or last found it stale.
    alive: bool,
    /// When the node goes stale unless a heartbeat moves.
    deadline: Instant,
}

struct State {
    ctx: Arc<Context>,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    /// Per node, by name. A std mutex: held only to read or update the map, never across
    /// an await.
    health: Mutex<HashMap<String, Health>>,
    node_events: Recorder,
    eviction_events: Recorder,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Record the node's latest heartbeat and judge it (upstream's tryUpdateNodeHealth).
    fn observe(
        &self,
        node: &Node,
        heartbeat: Option<jiff::Timestamp>,
        now: Instant,
    ) -> Observation {
        let grace = self.ctx.options.node_monitor_grace;
        let name = node.name_any();
        let uid = node.uid().unwrap_or_default();
        let mut all = self.lock();
        // Forget deleted nodes whenever a new one appears: rare, unlike reconciles (one per
        // lease renewal), so the scan of the node cache stays off the hot path.
        if !all.contains_key(&name) {
            let present: HashSet<String> =
                self.nodes.state().iter().map(|n| n.name_any()).collect();
            all.retain(|name, _| present.contains(name));
        }
        let health = all
            .entry(name)
            .or_insert_with(|| Health::new(uid.clone(), heartbeat, now));
        if health.uid != uid {
            *health = Health::new(uid, heartbeat, now);
        }
        if heartbeat > health.heartbeat {
            health.heartbeat = heartbeat;
            health.probed = now;
            health.alive = true;
        }
        let stale = now.saturating_duration_since(health.probed) >= grace;
        if stale {
            health.alive = false;
        }
        Observation {
            stale,
            alive: health.alive,
            deadline: health.probed + grace,
        }
    }

    /// Take in a heartbeat we wrote ourselves (conditions added with the node's creation
    /// time), so it does not count as the agent being back.
    fn absorb(&self, node: &str, heartbeat: Option<jiff::Timestamp>) {
        if let Some(health) = self.lock().get_mut(node)
            && heartbeat > health.heartbeat
        {
            health.heartbeat = heartbeat;
        }
    }

    /// Note that we are adding these NoExecute taints at `now`.
    fn adding_taints(&self, node: &str, keys: &[String], now: jiff::Timestamp) {
        if let Some(health) = self.lock().get_mut(node) {
            for key in keys {
                health
                    .taint_starts
                    .insert(key.clone(), (Some(now.as_second()), now));
            }
        }
    }

    /// When each of the node's NoExecute taints began.
    fn taint_starts(
        &self,
        node: &str,
        taints: &[&Taint],
        now: jiff::Timestamp,
    ) -> Vec<jiff::Timestamp> {
        let mut all = self.lock();
        let Some(health) = all.get_mut(node) else {
            return taints
                .iter()
                .map(|t| t.time_added.as_ref().map_or(now, |t| t.0))
                .collect();
        };
        health
            .taint_starts
            .retain(|key, _| taints.iter().any(|t| &t.key == key));
        taints
            .iter()
            .map(|taint| {
                let added = taint.time_added.as_ref().map(|t| t.0);
                let second = added.map(|t| t.as_second());
                match health.taint_starts.get(&taint.key) {
                    Some((recorded, start)) if *recorded == second => *start,
                    _ => {
                        // Added by someone else (or before a restart): its timeAdded, else
                        // the moment we first saw it.
                        let start = added.unwrap_or(now);
                        health
                            .taint_starts
                            .insert(taint.key.clone(), (second, start));
                        start
                    }
                }
            })
            .collect()
    }

    /// Whether the pod was evicted already; records it as evicted if not.
    fn first_eviction(&self, node: &str, pod_uid: &str) -> bool {
        self.lock()
            .get_mut(node)
            .is_none_or(|h| h.evicted.insert(pod_uid.to_owned()))
    }

    fn forget_evictions(&self, node: &str) {
        if let Some(health) = self.lock().get_mut(node) {
            health.evicted.clear();
        }
    }
}

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (leases, lease_writer) = reflector::store();
    let lease_events = watcher(
        Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(lease_writer)
    .touched_objects();
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(Api::<Node>::all(client), watcher::Config::default());
    let state = Arc::new(State {
        nodes: controller.store(),
        node_events: ctx.recorder("node-controller"),
        eviction_events: ctx.recorder("taint-eviction-controller"),
        ctx,
        leases,
        pods,
        health: Mutex::new(HashMap::new()),
    });
    controller
        .watches_stream(lease_events, |lease: Lease| {
            Some(ObjectRef::<Node>::new(&lease.name_any()))
        })
        .watches_stream(pod_events, |pod: Pod| {
            node_of(&pod).map(ObjectRef::<Node>::new)
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |obj, state| crate::metrics::timed_reconcile("nodelifecycle", reconcile(obj, state)),
            error_policy,
            state,
        )
        .for_each(|_| async {})
        .await;
}

fn error_policy(_node: Arc<Node>, error: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "node lifecycle reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

/// The node a pod is bound to.
fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The later of the Lease's renewTime and the Ready condition's lastHeartbeatTime.
fn latest_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<jiff::Timestamp> {
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let posted = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    renewed.max(posted)
}

/// The node's conditions with the monitored ones Unknown, if that changes anything.
fn unknown_conditions(node: &Node, now: jiff::Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in MONITORED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                // The heartbeat stays: it records when the agent last spoke.
                c.status = "Unknown".to_owned();
                c.reason = Some(REASON_UNKNOWN.to_owned());
                c.message = Some(MESSAGE_UNKNOWN.to_owned());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.to_owned(),
                    status: "Unknown".to_owned(),
                    reason: Some(REASON_NEVER_UPDATED.to_owned()),
                    message: Some(MESSAGE_NEVER_UPDATED.to_owned()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// Whether this controller manages taints with this key and effect.
fn managed(key: &str, effect: &str) -> bool {
    match effect {
        NO_EXECUTE => key == TAINT_UNREACHABLE || key == TAINT_NOT_READY,
        NO_SCHEDULE => {
            key == TAINT_UNREACHABLE
                || key == TAINT_NOT_READY
                || key == TAINT_UNSCHEDULABLE
                || CONDITION_TAINTS.iter().any(|(_, k)| *k == key)
        }
        _ => false,
    }
}

/// The managed taints (key, effect) the node should carry.
fn wanted_taints(node: &Node, unreachable: bool) -> Vec<(&'static str, &'static str)> {
    let mut wanted = Vec::new();
    let ready = condition(node, "Ready").map(|c| c.status.as_str());
    if unreachable {
        wanted.push((TAINT_UNREACHABLE, NO_EXECUTE));
        wanted.push((TAINT_UNREACHABLE, NO_SCHEDULE));
    } else if ready == Some("False") {
        wanted.push((TAINT_NOT_READY, NO_EXECUTE));
        wanted.push((TAINT_NOT_READY, NO_SCHEDULE));
    }
    for (type_, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == "True") {
            wanted.push((key, NO_SCHEDULE));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((TAINT_UNSCHEDULABLE, NO_SCHEDULE));
    }
    wanted
}

/// The node's taints with the managed ones made `wanted` (others kept as they are, and
/// kept taints keep their timeAdded), and the NoExecute keys added; None when nothing
/// changes.
fn reconcile_taints(
    node: &Node,
    wanted: &[(&str, &str)],
    now: jiff::Timestamp,
) -> Option<(Vec<Taint>, Vec<String>)> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !managed(&t.key, &t.effect) || wanted.contains(&(t.key.as_str(), t.effect.as_str()))
        })
        .cloned()
        .collect();
    let mut added = Vec::new();
    for (key, effect) in wanted {
        if taints.iter().any(|t| t.key == *key && t.effect == *effect) {
            continue;
        }
        // Upstream stamps NoExecute taints only: eviction counts from them.
        let no_execute = *effect == NO_EXECUTE;
        taints.push(Taint {
            key: (*key).to_owned(),
            effect: (*effect).to_owned(),
            time_added: no_execute.then_some(Time(now)),
            value: None,
        });
        if no_execute {
            added.push((*key).to_owned());
        }
    }
    (taints != current).then_some((taints, added))
}

/// The pod's tolerations plus the ones upstream's DefaultTolerationSeconds admission would
/// have added: `not-ready` and `unreachable` NoExecute for `default`, unless the pod
/// already tolerates such a taint (same test as the admission plugin).
fn effective_tolerations(pod: &Pod, default: Duration) -> Vec<Toleration> {
    let mut tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let seconds = i64::try_from(default.as_secs()).unwrap_or(i64::MAX);
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        let covered = tolerations.iter().any(|t| {
            let k = t.key.as_deref().unwrap_or_default();
            let e = t.effect.as_deref().unwrap_or_default();
            (k == key || k.is_empty()) && (e == NO_EXECUTE || e.is_empty())
        });
        if !covered {
            tolerations.push(Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some(NO_EXECUTE.to_owned()),
                toleration_seconds: Some(seconds),
                value: None,
            });
        }
    }
    tolerations
}

/// When the pod must be evicted from a node with these NoExecute taints (begun at
/// `starts`): `Some(now)`-or-earlier for a taint it does not tolerate, `None` if it
/// tolerates them all forever (upstream's getMinTolerationTime: for each taint the first
/// toleration that matches; the shortest of their tolerationSeconds wins).
fn eviction_time(
    pod: &Pod,
    taints: &[&Taint],
    starts: &[jiff::Timestamp],
    default: Duration,
) -> Option<jiff::Timestamp> {
    let tolerations = effective_tolerations(pod, default);
    let mut shortest: Option<i64> = None;
    for taint in taints {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Some(jiff::Timestamp::MIN);
        };
        if let Some(seconds) = used.toleration_seconds {
            let seconds = seconds.max(0);
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    let seconds = shortest?;
    // The clock starts with the first NoExecute taint, or with the pod if it came later.
    let mut start = starts.iter().min().copied().unwrap_or(jiff::Timestamp::MIN);
    if let Some(created) = pod.metadata.creation_timestamp.as_ref() {
        start = start.max(created.0);
    }
    Some(
        start
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(jiff::Timestamp::MAX),
    )
}

/// How long from `now` until `then` (zero if past).
fn until(now: jiff::Timestamp, then: jiff::Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action, Error> {
    // Heartbeats and pods must be fully listed before judging a node or its pods.
    if state.leases.wait_until_ready().await.is_err()
        || state.pods.wait_until_ready().await.is_err()
    {
        return Ok(Action::await_change());
    }
    if node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let lease = state
        .leases
        .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
    let seen = state.observe(
        &node,
        latest_heartbeat(&node, lease.as_deref()),
        Instant::now(),
    );
    let now = jiff::Timestamp::now();
    let client = &state.ctx.client;
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = (*node).clone();

    if seen.stale {
        if let Some(conditions) = unknown_conditions(&node, now) {
            let was = condition(&node, "Ready").map(|c| c.status.clone());
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "status": {"conditions": conditions},
            });
            node = match nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(node) => node,
                // The agent wrote meanwhile: perhaps a heartbeat. Judge again.
                Err(e) if is_conflict(&e) => return Ok(Action::requeue(CONFLICT_RETRY)),
                Err(e) => return Err(api_error(format!("marking node {name} unknown"))(e)),
            };
            state.absorb(&name, latest_heartbeat(&node, lease.as_deref()));
            tracing::info!(node = %name, "node stopped posting status: marked unknown");
            if was.as_deref() != Some("Unknown") {
                state
                    .node_events
                    .publish(
                        &reference(&node),
                        EventType::Normal,
                        "NodeNotReady",
                        &format!("Node {name} status is now: NodeNotReady"),
                    )
                    .await;
            }
        }
        mark_pods_not_ready(&state, &name, now).await?;
    }

    // A node marked unknown stays unreachable until a heartbeat moves (also across a
    // restart of this controller, which has not seen one yet).
    let ready_unknown = condition(&node, "Ready").is_some_and(|c| c.status == "Unknown");
    let unreachable = seen.stale || (ready_unknown && !seen.alive);
    let wanted = wanted_taints(&node, unreachable);
    if let Some((taints, added)) = reconcile_taints(&node, &wanted, now) {
        state.adding_taints(&name, &added, now);
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { json!(taints) }},
        });
        node = match nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(node) => node,
            Err(e) if is_conflict(&e) => return Ok(Action::requeue(CONFLICT_RETRY)),
            Err(e) => return Err(api_error(format!("updating the taints of node {name}"))(e)),
        };
        tracing::debug!(node = %name, ?wanted, "node taints updated");
    }

    let next_eviction = evict_pods(&state, &node, now).await?;

    // Look again when something changes by time alone: the grace running out, a
    // toleration expiring. Everything else arrives as a watch event.
    let mut wait: Option<Duration> = None;
    if !seen.stale {
        wait = Some(seen.deadline.saturating_duration_since(Instant::now()));
    }
    if let Some(at) = next_eviction {
        let d = until(jiff::Timestamp::now(), at);
        wait = Some(wait.map_or(d, |w| w.min(d)));
    }
    Ok(match wait {
        Some(d) => Action::requeue(d + MARGIN),
        None => Action::await_change(),
    })
}

/// The live pods bound to `node`.
fn pods_on(state: &State, node: &str) -> Vec<Arc<Pod>> {
    state
        .pods
        .state()
        .into_iter()
        .filter(|p| node_of(p) == Some(node) && !is_terminating(p))
        .collect()
}

/// Set Ready False on the pods of an unreachable node (upstream's MarkPodsNotReady): their
/// agent cannot, and Services should stop sending them traffic.
async fn mark_pods_not_ready(state: &State, node: &str, now: jiff::Timestamp) -> Result<(), Error> {
    for pod in pods_on(state, node) {
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let Some(ready) = conditions
            .iter_mut()
            .find(|c| c.type_ == "Ready" && c.status == "True")
        else {
            continue;
        };
        ready.status = "False".to_owned();
        ready.last_transition_time = Some(Time(now));
        let patch = json!({
            "metadata": {"resourceVersion": pod.resource_version()},
            "status": {"conditions": conditions},
        });
        let namespace = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &namespace);
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                state
                    .node_events
                    .publish(
                        &reference(pod.as_ref()),
                        EventType::Warning,
                        "NodeNotReady",
                        "Node is not ready",
                    )
                    .await;
            }
            // Changed or gone meanwhile: its watch event brings us back.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                return Err(api_error(format!(
                    "marking pod {namespace}/{} not ready",
                    pod.name_any()
                ))(e));
            }
        }
    }
    Ok(())
}

/// Evict the pods whose tolerations of the node's NoExecute taints ran out; returns when
/// the next one will.
async fn evict_pods(
    state: &State,
    node: &Node,
    now: jiff::Timestamp,
) -> Result<Option<jiff::Timestamp>, Error> {
    let name = node.name_any();
    let taints: Vec<&Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .collect();
    let starts = state.taint_starts(&name, &taints, now);
    if taints.is_empty() {
        state.forget_evictions(&name);
        return Ok(None);
    }
    let default = state.ctx.options.pod_eviction_timeout;
    let mut next: Option<jiff::Timestamp> = None;
    for pod in pods_on(state, &name) {
        let Some(at) = eviction_time(&pod, &taints, &starts, default) else {
            continue;
        };
        if at > now {
            next = Some(next.map_or(at, |n| n.min(at)));
            continue;
        }
        let uid = pod.uid().unwrap_or_default();
        if !state.first_eviction(&name, &uid) {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let pod_name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &namespace);
        // The uid precondition: a new pod of the same name (a StatefulSet's) is not this one.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod_name, &params).await {
            Ok(_) => {
                tracing::info!(node = %name, pod = %format!("{namespace}/{pod_name}"), "evicting pod from tainted node");
                state
                    .eviction_events
                    .publish(
                        &reference(pod.as_ref()),
                        EventType::Normal,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {namespace}/{pod_name}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                // Not evicted after all: let the retry try again.
                if let Some(health) = state.lock().get_mut(&name) {
                    health.evicted.remove(&pod.uid().unwrap_or_default());
                }
                return Err(api_error(format!("evicting pod {namespace}/{pod_name}"))(e));
            }
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.to_owned(),
            effect: effect.to_owned(),
            time_added: None,
            value: None,
        }
    }

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "tolerations": tolerations},
        }))
        .unwrap()
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let t = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let unreachable = taint(TAINT_UNREACHABLE, NO_EXECUTE);
        assert!(tolerates(&t(json!({"operator": "Exists"})), &unreachable));
        assert!(tolerates(
            &t(json!({"key": TAINT_UNREACHABLE, "operator": "Exists"})),
            &unreachable
        ));
        assert!(tolerates(
            &t(json!({"key": TAINT_UNREACHABLE})),
            &unreachable
        ));
        assert!(!tolerates(
            &t(json!({"key": TAINT_UNREACHABLE, "value": "x"})),
            &unreachable
        ));
        assert!(!tolerates(
            &t(json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": NO_SCHEDULE})),
            &unreachable
        ));
        assert!(!tolerates(
            &t(json!({"key": TAINT_NOT_READY, "operator": "Exists"})),
            &unreachable
        ));
    }

    #[test]
    fn eviction_times() {
        let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let unreachable = taint(TAINT_UNREACHABLE, NO_EXECUTE);
        let custom = taint("example.com/maintenance", NO_EXECUTE);
        let default = Duration::from_secs(300);
        let at = |p: &Pod, taints: &[&Taint]| {
            eviction_time(p, taints, &vec![start; taints.len()], default)
        };
        let secs = |s: i64| Some(start + jiff::SignedDuration::from_secs(s));

        // No toleration of its own: the default one.
        assert_eq!(at(&pod(json!([])), &[&unreachable]), secs(300));
        // Its own, shorter.
        let short = pod(
            json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": NO_EXECUTE, "tolerationSeconds": 5}]),
        );
        assert_eq!(at(&short, &[&unreachable]), secs(5));
        // Forever.
        let forever =
            pod(json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": NO_EXECUTE}]));
        assert_eq!(at(&forever, &[&unreachable]), None);
        // A taint nobody tolerates: at once.
        assert_eq!(
            at(&forever, &[&unreachable, &custom]),
            Some(jiff::Timestamp::MIN)
        );
        // Tolerate-everything tolerates forever, and stops the default being added.
        assert_eq!(
            at(
                &pod(json!([{"operator": "Exists"}])),
                &[&unreachable, &custom]
            ),
            None
        );
        // Negative seconds mean at once (from the start).
        let negative =
            pod(json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "tolerationSeconds": -3}]));
        assert_eq!(at(&negative, &[&unreachable]), secs(0));
    }

    #[test]
    fn managed_taints_change_and_others_stay() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": [
                {"key": "dedicated", "value": "gpu", "effect": NO_SCHEDULE},
                {"key": TAINT_NOT_READY, "effect": NO_SCHEDULE},
            ]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        // Ready: the stale not-ready taint goes, the foreign one stays.
        let (taints, added) = reconcile_taints(&node, &wanted_taints(&node, false), now).unwrap();
        let dedicated = Taint {
            value: Some("gpu".to_owned()),
            ..taint("dedicated", NO_SCHEDULE)
        };
        assert_eq!(taints, vec![dedicated]);
        assert!(added.is_empty());
        // Unreachable: both unreachable taints, NoExecute stamped.
        let (taints, added) = reconcile_taints(&node, &wanted_taints(&node, true), now).unwrap();
        assert_eq!(added, vec![TAINT_UNREACHABLE.to_owned()]);
        let no_execute = taints.iter().find(|t| t.effect == NO_EXECUTE).unwrap();
        assert_eq!(no_execute.time_added, Some(Time(now)));
        assert!(taints.iter().any(|t| t.key == TAINT_UNREACHABLE
            && t.effect == NO_SCHEDULE
            && t.time_added.is_none()));
    }

    #[test]
    fn unknown_conditions_keep_heartbeats_and_add_missing() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n", "creationTimestamp": "2025-12-31T00:00:00Z"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "lastHeartbeatTime": "2025-12-31T23:59:00Z"},
                {"type": "NetworkUnavailable", "status": "False"},
            ]},
        }))
        .unwrap();
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let conditions = unknown_conditions(&node, now).unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some(REASON_UNKNOWN));
        assert_eq!(
            ready
                .last_heartbeat_time
                .as_ref()
                .map(|t| t.0.to_string())
                .as_deref(),
            Some("2025-12-31T23:59:00Z")
        );
        assert_eq!(
            conditions
                .iter()
                .find(|c| c.type_ == "NetworkUnavailable")
                .unwrap()
                .status,
            "False"
        );
        let memory = conditions
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(memory.reason.as_deref(), Some(REASON_NEVER_UPDATED));
        // Already unknown: nothing to do.
        let mut marked = node.clone();
        marked.status.as_mut().unwrap().conditions = Some(conditions);
        assert!(unknown_conditions(&marked, now).is_none());
    }
}

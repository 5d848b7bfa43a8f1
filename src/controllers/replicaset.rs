//! The ReplicaSet controller: keeps `spec.replicas` pods matching the template.
//!
//! Level-triggered: each reconcile compares the pods the ReplicaSet owns (from a pod
//! reflector) with `replicas` and creates or deletes the difference — in slow-start batches
//! (1, 2, 4, … at most 500 per pass), least valuable pods first. It adopts matching
//! orphans and releases pods whose labels stop matching. *Expectations* remember the pods
//! it just created or deleted until the reflector has seen that happen, so a slow watch
//! never makes it act twice. Status: replicas, fullyLabeledReplicas, readyReplicas,
//! availableReplicas (minReadySeconds), observedGeneration, ReplicaFailure.
//!
//! It never deletes a ReplicaSet or touches other kinds; deleting a ReplicaSet's pods
//! with it is the garbage collector's work.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::events::{EventType, Recorder, reference};
use super::util::{
    controller_of, controller_reference, is_available, is_ready, is_terminal, is_terminating,
    labels, selects,
};

/// At most this many pods are created or deleted in one pass (upstream's burstReplicas).
pub const BURST: usize = 500;
/// How long expectations wait for the watch before they are given up (upstream: 5 min).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// Errors a reconcile returns (retried with back-off): a failed API request.
pub use super::ApiError as Error;
use super::api_error;

/// Pods a ReplicaSet created or deleted and the watch has not shown yet.
#[derive(Debug)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: std::time::Instant,
}

/// Expectations of every ReplicaSet, by namespace/name. A std mutex: never held across an
/// await.
#[derive(Default)]
struct Expectations(Mutex<HashMap<String, Pending>>);

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether every expected create and delete has been observed (or waited for too
    /// long); observed ones are forgotten.
    fn satisfied(&self, key: &str, pods: &HashMap<String, Arc<Pod>>) -> bool {
        let mut all = self.lock();
        let Some(pending) = all.get_mut(key) else {
            return true;
        };
        pending.creates.retain(|name| !pods.contains_key(name));
        pending
            .deletes
            .retain(|name| pods.get(name).is_some_and(|p| !is_terminating(p)));
        if (pending.creates.is_empty() && pending.deletes.is_empty())
            || pending.since.elapsed() > EXPECTATIONS_TIMEOUT
        {
            all.remove(key);
            return true;
        }
        false
    }

    fn expect(&self, key: &str, creates: Vec<String>, deletes: Vec<String>) {
        let mut all = self.lock();
        let pending = all.entry(key.to_owned()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: std::time::Instant::now(),
        });
        pending.creates.extend(creates);
        pending.deletes.extend(deletes);
        pending.since = std::time::Instant::now();
    }

    fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

struct State {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    expectations: Expectations,
    recorder: Recorder,
}

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let state = Arc::new(State {
        recorder: ctx.recorder("replicaset-controller"),
        ctx,
        pods: pods.clone(),
        expectations: Expectations::default(),
    });
    controller
        .watches_stream(pod_events, move |pod| owners_of(&pod, &sets))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |obj, state| crate::metrics::timed_reconcile("replicaset", reconcile(obj, state)),
            error_policy,
            state,
        )
        .for_each(|_| async {})
        .await;
}

/// The ReplicaSets a pod event concerns: its controller, or every ReplicaSet in its
/// namespace whose selector matches it (an orphan to adopt).
fn owners_of(pod: &Pod, sets: &Store<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let pod_labels = labels(&pod.metadata);
    sets.state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            selects(
                &rs.spec
                    .as_ref()
                    .map(|s| s.selector.clone())
                    .unwrap_or_default(),
                &pod_labels,
            )
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

fn error_policy(_rs: Arc<ReplicaSet>, error: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "replicaset reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

/// How valuable a pod is to keep: lower sorts first and is deleted first (upstream's
/// ActivePods ordering).
fn deletion_rank(pod: &Pod) -> impl Ord {
    let assigned = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready = super::util::ready_since(pod);
    // Ready more recently is less valuable: sort by the negated time.
    let ready_rank = ready.map_or(i64::MIN, |t| -t.as_second());
    let restarts: i32 = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c.iter().map(|c| c.restart_count).max().unwrap_or(0));
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    (
        assigned,
        phase,
        ready.is_some(),
        ready_rank,
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action, Error> {
    // Counting pods before the pod cache has its first full list would create pods that
    // exist (a new leader, a restart): wait for it, as upstream waits for caches to sync.
    if state.pods.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let key = format!("{namespace}/{name}");
    if rs.metadata.deletion_timestamp.is_some() {
        state.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let Some(spec) = rs.spec.clone() else {
        return Ok(Action::await_change());
    };
    let uid = rs.uid().unwrap_or_default();
    let client = &state.ctx.client;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    // The pods this ReplicaSet owns or may adopt, from the reflector.
    let in_namespace: HashMap<String, Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .map(|p| (p.name_any(), p))
        .collect();
    let mut owned = Vec::new();
    for pod in in_namespace.values() {
        let matches = selects(&spec.selector, &labels(&pod.metadata));
        match controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    owned.push(pod.clone());
                } else if !is_terminating(pod) {
                    release(&pods_api, pod, &uid).await?;
                }
            }
            Some(_) => {}
            None if matches && !is_terminating(pod) && !is_terminal(pod) => {
                adopt(&pods_api, pod, &rs).await?;
                owned.push(pod.clone());
            }
            None => {}
        }
    }
    let active: Vec<&Arc<Pod>> = owned
        .iter()
        .filter(|p| !is_terminating(p) && !is_terminal(p))
        .collect();

    let mut failure = None;
    let wanted = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let satisfied = state.expectations.satisfied(&key, &in_namespace);
    if satisfied {
        if active.len() < wanted {
            let missing = (wanted - active.len()).min(BURST);
            failure = create_pods(&state, &rs, &key, &pods_api, missing).await;
        } else if active.len() > wanted {
            let mut victims: Vec<&Arc<Pod>> = active.clone();
            victims.sort_by_key(|p| deletion_rank(p));
            victims.truncate((active.len() - wanted).min(BURST));
            delete_pods(&state, &rs, &key, &pods_api, &victims).await;
        }
    }

    update_status(&state, &rs, &owned, &active, failure).await?;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    Ok(if !satisfied {
        Action::requeue(Duration::from_millis(500))
    } else if min_ready > 0
        && active
            .iter()
            .any(|p| is_ready(p) && !is_available(p, min_ready, jiff::Timestamp::now()))
    {
        // Availability changes with time alone: look again when the next pod qualifies.
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::await_change()
    })
}

/// Create `count` pods in slow-start batches (1, 2, 4, …): a failing create (quota, an
/// invalid template) stops after a few attempts instead of hundreds. Returns the failure
/// message, if any.
async fn create_pods(
    state: &State,
    rs: &ReplicaSet,
    key: &str,
    pods_api: &Api<Pod>,
    count: usize,
) -> Option<String> {
    let template = pod_from_template(rs);
    let post = PostParams::default();
    let mut remaining = count;
    let mut batch = 1;
    while remaining > 0 {
        let size = batch.min(remaining);
        let results =
            futures::future::join_all((0..size).map(|_| pods_api.create(&post, &template))).await;
        let mut created = Vec::new();
        let mut failed = None;
        for result in results {
            match result {
                Ok(pod) => created.push(pod.name_any()),
                Err(e) => failed = Some(api_message(e)),
            }
        }
        state.expectations.expect(key, created.clone(), Vec::new());
        let reference = reference(rs);
        for name in &created {
            state
                .recorder
                .publish(
                    &reference,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {name}"),
                )
                .await;
        }
        if let Some(message) = failed {
            state
                .recorder
                .publish(
                    &reference,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {message}"),
                )
                .await;
            return Some(message);
        }
        remaining -= size;
        batch *= 2;
    }
    None
}

async fn delete_pods(
    state: &State,
    rs: &ReplicaSet,
    key: &str,
    pods_api: &Api<Pod>,
    victims: &[&Arc<Pod>],
) {
    let names: Vec<String> = victims.iter().map(|p| p.name_any()).collect();
    state.expectations.expect(key, Vec::new(), names.clone());
    let params = DeleteParams::default();
    let results =
        futures::future::join_all(names.iter().map(|name| pods_api.delete(name, &params))).await;
    let reference = reference(rs);
    for (name, result) in names.iter().zip(results) {
        match result {
            Ok(_) => {
                state
                    .recorder
                    .publish(
                        &reference,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                state
                    .recorder
                    .publish(
                        &reference,
                        EventType::Warning,
                        "FailedDelete",
                        &format!("Error deleting: {}", api_message(e)),
                    )
                    .await;
            }
        }
    }
}

fn api_message(error: kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

/// A new pod from the ReplicaSet's template: its labels and annotations, a generated name,
/// and the ReplicaSet as controller.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let name = rs.name_any();
    // Upstream trims the prefix so the generated name stays a valid DNS subdomain.
    let prefix: String = format!("{name}-").chars().take(58).collect();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_reference(
                "apps/v1",
                "ReplicaSet",
                &name,
                &rs.uid().unwrap_or_default(),
            )]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

async fn adopt(pods_api: &Api<Pod>, pod: &Pod, rs: &ReplicaSet) -> Result<(), Error> {
    let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
    references.push(controller_reference(
        "apps/v1",
        "ReplicaSet",
        &rs.name_any(),
        &rs.uid().unwrap_or_default(),
    ));
    set_owner_references(pods_api, pod, references, "adopting").await
}

async fn release(pods_api: &Api<Pod>, pod: &Pod, uid: &str) -> Result<(), Error> {
    let references: Vec<_> = pod
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != uid)
        .collect();
    set_owner_references(pods_api, pod, references, "releasing").await
}

/// Write the pod's owner references (adopting or releasing it). The resourceVersion makes
/// the write conditional: a pod changed meanwhile (say, adopted by another ReplicaSet) or
/// gone is left for the next reconcile.
async fn set_owner_references(
    pods_api: &Api<Pod>,
    pod: &Pod,
    references: Vec<OwnerReference>,
    doing: &str,
) -> Result<(), Error> {
    let patch = json!({"metadata": {
        "ownerReferences": references,
        "resourceVersion": pod.resource_version(),
    }});
    match pods_api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(api_error(format!("{doing} pod {}", pod.name_any()))(e)),
    }
}

async fn update_status(
    state: &State,
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    active: &[&Arc<Pod>],
    failure: Option<String>,
) -> Result<(), Error> {
    let spec = rs.spec.clone().unwrap_or_default();
    let template_labels: BTreeMap<String, String> = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .map(labels)
        .unwrap_or_default();
    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| -> i32 {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .collect();
    if let Some(message) = failure {
        let previous = old
            .conditions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|c| c.type_ == "ReplicaFailure")
            .and_then(|c| c.last_transition_time.clone());
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".to_owned(),
            status: "True".to_owned(),
            reason: Some("FailedCreate".to_owned()),
            message: Some(message),
            last_transition_time: Some(previous.unwrap_or(Time(now))),
        });
    }
    let status = ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|p| {
            let pod_labels = labels(&p.metadata);
            template_labels
                .iter()
                .all(|(k, v)| pod_labels.get(k) == Some(v))
        })),
        ready_replicas: Some(count(&is_ready)),
        available_replicas: Some(count(&|p| is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: Some(
            i32::try_from(owned.iter().filter(|p| is_terminating(p)).count()).unwrap_or(i32::MAX),
        ),
    };
    if normalized(&status) == normalized(&old) {
        return Ok(());
    }
    let api: Api<ReplicaSet> = Api::namespaced(
        state.ctx.client.clone(),
        &rs.namespace().unwrap_or_default(),
    );
    api.patch_status(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(api_error(format!(
        "updating the status of {}",
        rs.name_any()
    )))?;
    Ok(())
}

/// A status as stored: zero counts are omitted there, so compare with them filled in.
fn normalized(status: &ReplicaSetStatus) -> ReplicaSetStatus {
    let mut s = status.clone();
    for field in [
        &mut s.fully_labeled_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.terminating_replicas,
    ] {
        if field.is_none() {
            *field = Some(0);
        }
    }
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    s
}

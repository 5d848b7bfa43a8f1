//! The Deployment controller: rolls pod templates out through ReplicaSets, as
//! kube-controller-manager's does.
//!
//! Each template gets its own ReplicaSet, named `<deployment>-<pod-template-hash>`, with the
//! hash in its selector and labels so ReplicaSets never fight over pods. `RollingUpdate`
//! scales the new ReplicaSet up and the old ones down within `maxSurge` and
//! `maxUnavailable` (numbers or percentages; surge rounds up, unavailability down);
//! `Recreate` scales the old ones to zero first. Revisions live in the
//! `deployment.kubernetes.io/revision` annotation (a template rolled back to gets a new
//! number), `revisionHistoryLimit` old ReplicaSets are kept, `paused` stops rollouts (not
//! scaling), and `progressDeadlineSeconds` drives the Progressing condition. This is what
//! `kubectl rollout status|history|undo|restart` and `kubectl scale` rely on.
//!
//! It only writes Deployments' status and its own ReplicaSets; pods are the ReplicaSet
//! controller's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::events::{EventType, Recorder, reference};
use super::util::{controller_of, controller_reference, labels, selects};

/// The label (and selector key) that ties a ReplicaSet and its pods to one template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation holding a revision number (on ReplicaSets and the Deployment).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet held (it was rolled back to).
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Errors a reconcile returns (retried with back-off): a failed API request.
pub use super::ApiError as Error;
use super::api_error;

struct State {
    ctx: Arc<Context>,
    sets: Store<ReplicaSet>,
    recorder: Recorder,
}

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let (sets, set_writer) = kube::runtime::reflector::store();
    let set_events = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let set_events =
        kube::runtime::WatchStreamExt::touched_objects(kube::runtime::WatchStreamExt::reflect(
            kube::runtime::WatchStreamExt::default_backoff(set_events),
            set_writer,
        ));
    let state = Arc::new(State {
        recorder: ctx.recorder("deployment-controller"),
        ctx,
        sets,
    });
    controller
        .watches_stream(set_events, move |rs| owners_of(&rs, &deployments))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |obj, state| crate::metrics::timed_reconcile("deployment", reconcile(obj, state)),
            error_policy,
            state,
        )
        .for_each(|_| async {})
        .await;
}

/// The Deployments a ReplicaSet event concerns: its controller, or those whose selector
/// matches an orphan.
fn owners_of(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<ObjectRef<Deployment>> {
    let namespace = rs.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == "Deployment" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let rs_labels = labels(&rs.metadata);
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|d| {
            d.spec
                .as_ref()
                .is_some_and(|s| selects(&s.selector, &rs_labels))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn error_policy(_d: Arc<Deployment>, error: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "deployment reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

/// FNV-1a (32 bit) of the template (and the collision count), encoded with upstream's
/// alphabet of unambiguous characters: a stable, DNS-safe name suffix per template.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    let mut text = serde_json::to_string(&template).unwrap_or_default();
    if let Some(count) = collision_count {
        text.push_str(&count.to_string());
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digits = hash.to_string();
    digits
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// Whether the ReplicaSet runs the Deployment's current template (ignoring the hash label).
fn runs_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH);
        }
        serde_json::to_value(t).unwrap_or_default()
    };
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .is_some_and(|t| strip(t) == strip(template))
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Available pods as the rollout may count them: never more than the ReplicaSet is scaled
/// to. Right after a scale-down its status still counts the pods being deleted; counting
/// them would let the next step take away more than `maxUnavailable` allows.
fn counted_available(rs: &ReplicaSet) -> i32 {
    available(rs).min(spec_replicas(rs))
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// A percentage or a number, resolved against `total` (percentages round up or down).
pub fn resolve(value: Option<&IntOrString>, total: i32, default: &str, round_up: bool) -> i32 {
    let value = value
        .cloned()
        .unwrap_or(IntOrString::String(default.to_owned()));
    match value {
        IntOrString::Int(n) => n.max(0),
        IntOrString::String(text) => {
            let percent: i64 = text.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = i64::from(total) * percent;
            let resolved = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(resolved.max(0)).unwrap_or(i32::MAX)
        }
    }
}

/// `maxSurge` and `maxUnavailable` resolved; both zero would deadlock, so unavailability
/// becomes 1 then (as upstream).
fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let rolling = spec.strategy.and_then(|s| s.rolling_update);
    let surge = resolve(
        rolling.as_ref().and_then(|r| r.max_surge.as_ref()),
        replicas,
        "25%",
        true,
    );
    let unavailable = resolve(
        rolling.as_ref().and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        "25%",
        false,
    )
    .min(replicas);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action, Error> {
    // A partial ReplicaSet cache would make a new ReplicaSet for a template that has one.
    if state.sets.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = d.spec.clone() else {
        return Ok(Action::await_change());
    };
    let namespace = d.namespace().unwrap_or_default();
    let uid = d.uid().unwrap_or_default();
    let sets_api: Api<ReplicaSet> = Api::namespaced(state.ctx.client.clone(), &namespace);

    // The ReplicaSets this Deployment controls (adopting matching orphans).
    let mut owned: Vec<ReplicaSet> = Vec::new();
    for rs in state.sets.state() {
        if rs.namespace().as_deref() != Some(namespace.as_str()) {
            continue;
        }
        match controller_of(&rs.metadata) {
            Some(owner) if owner.uid == uid => owned.push((*rs).clone()),
            None if selects(&spec.selector, &labels(&rs.metadata))
                && rs.metadata.deletion_timestamp.is_none() =>
            {
                let reference = controller_reference("apps/v1", "Deployment", &d.name_any(), &uid);
                let patch = json!({"metadata": {
                    "ownerReferences": [reference],
                    "resourceVersion": rs.resource_version(),
                }});
                match sets_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(adopted) => owned.push(adopted),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(api_error("adopting a ReplicaSet")(e)),
                }
            }
            _ => {}
        }
    }
    owned.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));

    let paused = spec.paused.unwrap_or(false);
    let template = spec.template.clone();
    let new_index = owned.iter().position(|rs| runs_template(rs, &template));
    let max_revision = owned.iter().map(revision_of).max().unwrap_or(0);
    let mut progressed = None;

    if paused {
        // Paused: scaling only. The active ReplicaSet (if exactly one) follows replicas.
        let active: Vec<usize> = (0..owned.len())
            .filter(|&i| spec_replicas(&owned[i]) > 0)
            .collect();
        if let [only] = active[..] {
            let wanted = spec.replicas.unwrap_or(1);
            if spec_replicas(&owned[only]) != wanted {
                owned[only] = scale(&state, &d, &sets_api, &owned[only], wanted).await?;
            }
        }
    } else {
        // The ReplicaSet of the current template, created or brought back with a new
        // revision when it is not the newest (a rollback).
        let new_index = match new_index {
            Some(i) => {
                if revision_of(&owned[i]) < max_revision {
                    owned[i] = set_revision(&sets_api, &owned[i], max_revision + 1).await?;
                }
                i
            }
            None => {
                let created = create_replica_set(&state, &d, &sets_api, max_revision + 1).await?;
                progressed = Some(format!(
                    "Created new replica set \"{}\"",
                    created.name_any()
                ));
                owned.push(created);
                owned.len() - 1
            }
        };
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let changed = if recreate {
            rollout_recreate(&state, &d, &sets_api, &mut owned, new_index).await?
        } else {
            rollout_rolling(&state, &d, &sets_api, &mut owned, new_index).await?
        };
        if changed && progressed.is_none() {
            progressed = Some(format!(
                "ReplicaSet \"{}\" is progressing.",
                owned[new_index].name_any()
            ));
        }
        // Keep the Deployment's revision annotation in step with its newest ReplicaSet.
        let revision = revision_of(&owned[new_index]).to_string();
        if d.annotations().get(REVISION) != Some(&revision) {
            let api: Api<Deployment> = Api::namespaced(state.ctx.client.clone(), &namespace);
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            api.patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(api_error("recording the revision"))?;
        }
        if is_complete(&d, &owned, new_index) {
            cleanup(&d, &sets_api, &owned, new_index).await;
        }
    }

    let new_rs = new_index_after(&owned, &template).map(|i| owned[i].clone());
    let requeue = update_status(&state, &d, &owned, new_rs.as_ref(), paused, progressed).await?;
    Ok(requeue.unwrap_or_else(Action::await_change))
}

fn new_index_after(owned: &[ReplicaSet], template: &PodTemplateSpec) -> Option<usize> {
    owned.iter().position(|rs| runs_template(rs, template))
}

async fn set_revision(
    sets_api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    revision: i64,
) -> Result<ReplicaSet, Error> {
    let old = revision_of(rs);
    let mut history: Vec<String> = rs
        .annotations()
        .get(REVISION_HISTORY)
        .map(|h| h.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    if old > 0 {
        history.push(old.to_string());
    }
    let patch = json!({"metadata": {"annotations": {
        REVISION: revision.to_string(),
        REVISION_HISTORY: history.join(","),
    }}});
    sets_api
        .patch(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(api_error(format!(
            "updating the revision of {}",
            rs.name_any()
        )))
}

async fn create_replica_set(
    state: &State,
    d: &Deployment,
    sets_api: &Api<ReplicaSet>,
    revision: i64,
) -> Result<ReplicaSet, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision_count);
    let mut template = spec.template.clone();
    let mut template_meta = template.metadata.take().unwrap_or_default();
    template_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.to_owned(), hash.clone());
    template.metadata = Some(template_meta.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.to_owned(), hash.clone());
    let replicas = spec.replicas.unwrap_or(1);
    let (surge, _) = surge_and_unavailable(d);
    let name = format!("{}-{hash}", d.name_any());
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: d.namespace(),
            labels: template_meta.labels.clone(),
            annotations: Some(BTreeMap::from([
                (REVISION.to_owned(), revision.to_string()),
                (DESIRED_REPLICAS.to_owned(), replicas.to_string()),
                (MAX_REPLICAS.to_owned(), (replicas + surge).to_string()),
            ])),
            owner_references: Some(vec![controller_reference(
                "apps/v1",
                "Deployment",
                &d.name_any(),
                &d.uid().unwrap_or_default(),
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    match sets_api.create(&PostParams::default(), &rs).await {
        Ok(created) => {
            state
                .recorder
                .publish(
                    &reference(d),
                    EventType::Normal,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {name} from 0 to 0"),
                )
                .await;
            Ok(created)
        }
        // A ReplicaSet of that name exists but is not ours, or not this template: a hash
        // collision. Upstream bumps status.collisionCount so the next hash differs.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let api: Api<Deployment> =
                Api::namespaced(state.ctx.client.clone(), &d.namespace().unwrap_or_default());
            let count = collision_count.unwrap_or(0) + 1;
            api.patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"collisionCount": count}})),
            )
            .await
            .map_err(api_error("recording a hash collision"))?;
            Err(Error {
                action: format!(
                    "creating ReplicaSet {name} (name taken; retrying with a new hash)"
                ),
                source: kube::Error::Api(s),
            })
        }
        Err(e) => Err(api_error(format!("creating ReplicaSet {name}"))(e)),
    }
}

/// Scale one ReplicaSet, with the event upstream records.
async fn scale(
    state: &State,
    d: &Deployment,
    sets_api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    replicas: i32,
) -> Result<ReplicaSet, Error> {
    let from = spec_replicas(rs);
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let (surge, _) = surge_and_unavailable(d);
    let patch = json!({
        "metadata": {"annotations": {
            DESIRED_REPLICAS: desired.to_string(),
            MAX_REPLICAS: (desired + surge).to_string(),
        }},
        "spec": {"replicas": replicas},
    });
    let scaled = sets_api
        .patch(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(api_error(format!("scaling {}", rs.name_any())))?;
    let direction = if replicas > from { "up" } else { "down" };
    state
        .recorder
        .publish(
            &reference(d),
            EventType::Normal,
            "ScalingReplicaSet",
            &format!(
                "Scaled {direction} replica set {} from {from} to {replicas}",
                rs.name_any()
            ),
        )
        .await;
    Ok(scaled)
}

/// One step of a rolling update (upstream's rolloutRolling): scale the new ReplicaSet up
/// within maxSurge, else scale old ones down within maxUnavailable. True if anything was
/// scaled.
async fn rollout_rolling(
    state: &State,
    d: &Deployment,
    sets_api: &Api<ReplicaSet>,
    owned: &mut [ReplicaSet],
    new_index: usize,
) -> Result<bool, Error> {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let (surge, unavailable) = surge_and_unavailable(d);
    let total: i32 = owned.iter().map(spec_replicas).sum();
    let new_replicas = spec_replicas(&owned[new_index]);

    // Scale the new ReplicaSet up (or down, when the Deployment shrank).
    if new_replicas > desired {
        owned[new_index] = scale(state, d, sets_api, &owned[new_index], desired).await?;
        return Ok(true);
    }
    if new_replicas < desired {
        let max_total = desired + surge;
        if total < max_total {
            let up = (max_total - total).min(desired - new_replicas);
            owned[new_index] =
                scale(state, d, sets_api, &owned[new_index], new_replicas + up).await?;
            return Ok(true);
        }
    }

    // Scale old ReplicaSets down, keeping at least desired - maxUnavailable available.
    let old: Vec<usize> = (0..owned.len())
        .filter(|&i| i != new_index && spec_replicas(&owned[i]) > 0)
        .collect();
    if old.is_empty() {
        return Ok(false);
    }
    let min_available = desired - unavailable;
    let new_unavailable = spec_replicas(&owned[new_index]) - counted_available(&owned[new_index]);
    let mut budget = total - min_available - new_unavailable.max(0);
    if budget <= 0 {
        return Ok(false);
    }
    let mut scaled = false;
    // First the old pods that are not available anyway: removing them costs nothing.
    for &i in &old {
        if budget <= 0 {
            break;
        }
        let unhealthy = (spec_replicas(&owned[i]) - counted_available(&owned[i])).max(0);
        let down = unhealthy.min(budget);
        if down > 0 {
            let target = spec_replicas(&owned[i]) - down;
            owned[i] = scale(state, d, sets_api, &owned[i], target).await?;
            budget -= down;
            scaled = true;
        }
    }
    // Then available ones, oldest ReplicaSet first, as far as availability allows.
    let available_total: i32 = owned.iter().map(counted_available).sum();
    let mut allowed = available_total - min_available;
    for &i in &old {
        if allowed <= 0 {
            break;
        }
        let current = spec_replicas(&owned[i]);
        if current == 0 {
            continue;
        }
        let down = current.min(allowed);
        owned[i] = scale(state, d, sets_api, &owned[i], current - down).await?;
        allowed -= down;
        scaled = true;
    }
    Ok(scaled)
}

/// Recreate: every old ReplicaSet to zero and their pods gone, then the new one up.
async fn rollout_recreate(
    state: &State,
    d: &Deployment,
    sets_api: &Api<ReplicaSet>,
    owned: &mut [ReplicaSet],
    new_index: usize,
) -> Result<bool, Error> {
    let mut scaled = false;
    for (i, rs) in owned.iter_mut().enumerate() {
        if i != new_index && spec_replicas(rs) > 0 {
            *rs = scale(state, d, sets_api, rs, 0).await?;
            scaled = true;
        }
    }
    if scaled {
        return Ok(true);
    }
    let old_pods: i32 = (0..owned.len())
        .filter(|&i| i != new_index)
        .map(|i| owned[i].status.as_ref().map_or(0, |s| s.replicas))
        .sum();
    if old_pods > 0 {
        // Wait for the old pods to be gone; the ReplicaSets' status updates wake us.
        return Ok(false);
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if spec_replicas(&owned[new_index]) != desired {
        owned[new_index] = scale(state, d, sets_api, &owned[new_index], desired).await?;
        return Ok(true);
    }
    Ok(false)
}

fn is_complete(d: &Deployment, owned: &[ReplicaSet], new_index: usize) -> bool {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let new = &owned[new_index];
    let new_status = new.status.clone().unwrap_or_default();
    let others: i32 = (0..owned.len())
        .filter(|&i| i != new_index)
        .map(|i| owned[i].status.as_ref().map_or(0, |s| s.replicas) + spec_replicas(&owned[i]))
        .sum();
    spec_replicas(new) == desired
        && new_status.replicas == desired
        && new_status.available_replicas.unwrap_or(0) == desired
        && others == 0
}

/// Delete old, empty ReplicaSets beyond `revisionHistoryLimit`, oldest first.
async fn cleanup(
    d: &Deployment,
    sets_api: &Api<ReplicaSet>,
    owned: &[ReplicaSet],
    new_index: usize,
) {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let mut old: Vec<&ReplicaSet> = (0..owned.len())
        .filter(|&i| i != new_index)
        .map(|i| &owned[i])
        .filter(|rs| {
            spec_replicas(rs) == 0
                && rs.status.as_ref().map_or(0, |s| s.replicas) == 0
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if old.len() <= limit {
        return;
    }
    old.sort_by_key(|rs| revision_of(rs));
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for rs in old.iter().take(old.len() - limit) {
        if let Err(e) = sets_api.delete(&rs.name_any(), &params).await {
            tracing::debug!(deployment = %d.name_any(), error = %e, "deleting an old ReplicaSet");
        }
    }
}

fn condition(
    old: &[DeploymentCondition],
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> DeploymentCondition {
    let previous = old.iter().find(|c| c.type_ == type_);
    let transition = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    let update = match previous {
        Some(p) if p.status == status && p.reason.as_deref() == Some(reason) => {
            p.last_update_time.clone()
        }
        _ => Some(now.clone()),
    };
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_transition_time: transition,
        last_update_time: update,
    }
}

/// Write the status (counts, Available and Progressing); returns when to look again for
/// the progress deadline.
async fn update_status(
    state: &State,
    d: &Deployment,
    owned: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    paused: bool,
    progressed: Option<String>,
) -> Result<Option<Action>, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| -> i32 { owned.iter().map(f).sum() };
    let replicas = sum(&|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let available_total = sum(&available);
    let spec_total = sum(&spec_replicas);
    let old = d.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let (_, unavailable) = surge_and_unavailable(d);
    let mut conditions = Vec::new();
    conditions.push(if available_total >= desired - unavailable {
        condition(
            &old_conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &now,
        )
    } else {
        condition(
            &old_conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now,
        )
    });

    let new_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    let updated = new_rs.map_or(0, |rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let complete = new_rs.is_some_and(|rs| {
        let s = rs.status.clone().unwrap_or_default();
        spec_replicas(rs) == desired
            && s.replicas == desired
            && s.available_replicas.unwrap_or(0) == desired
    }) && replicas == desired;
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    let previous = old_conditions.iter().find(|c| c.type_ == "Progressing");
    let mut requeue = None;
    let progressing = if paused {
        condition(
            &old_conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            &now,
        )
    } else if complete {
        condition(
            &old_conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            &now,
        )
    } else if let Some(message) = progressed {
        let reason = if message.starts_with("Created") {
            "NewReplicaSetCreated"
        } else {
            "ReplicaSetUpdated"
        };
        // Progress resets the deadline clock (lastUpdateTime).
        let mut c = condition(
            &old_conditions,
            "Progressing",
            "True",
            reason,
            &message,
            &now,
        );
        c.last_update_time = Some(now.clone());
        c
    } else {
        let last_progress = previous
            .and_then(|p| p.last_update_time.as_ref())
            .map_or(now.0, |t| t.0);
        let elapsed = now.0.as_second() - last_progress.as_second();
        if previous.is_some_and(|p| p.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            || elapsed > i64::from(deadline)
        {
            condition(
                &old_conditions,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                &now,
            )
        } else {
            let wait = u64::try_from(i64::from(deadline) - elapsed + 1).unwrap_or(1);
            requeue = Some(Action::requeue(Duration::from_secs(wait)));
            match previous {
                // Keep the last progress message and its time.
                Some(p) if p.status == "True" => p.clone(),
                _ => condition(
                    &old_conditions,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{new_name}\" is progressing."),
                    &now,
                ),
            }
        }
    };
    conditions.push(progressing);
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(sum(&|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })),
        available_replicas: Some(available_total),
        unavailable_replicas: Some((spec_total - available_total).max(0)),
        conditions: Some(conditions),
        collision_count: old.collision_count,
        terminating_replicas: old.terminating_replicas,
    };
    if comparable(&status) == comparable(&old) {
        return Ok(requeue);
    }
    let api: Api<Deployment> =
        Api::namespaced(state.ctx.client.clone(), &d.namespace().unwrap_or_default());
    api.patch_status(
        &d.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .map_err(api_error(format!(
        "updating the status of {}",
        d.name_any()
    )))?;
    Ok(requeue)
}

/// A status as stored (zero counts omitted there).
fn comparable(status: &DeploymentStatus) -> DeploymentStatus {
    let mut s = status.clone();
    for field in [
        &mut s.replicas,
        &mut s.updated_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.unavailable_replicas,
    ] {
        if *field == Some(0) {
            *field = None;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_upstream() {
        let pct = |s: &str| IntOrString::String(s.to_owned());
        assert_eq!(resolve(Some(&pct("25%")), 10, "25%", true), 3);
        assert_eq!(resolve(Some(&pct("25%")), 10, "25%", false), 2);
        assert_eq!(resolve(Some(&IntOrString::Int(2)), 10, "25%", false), 2);
        assert_eq!(resolve(None, 4, "25%", true), 1);
        assert_eq!(resolve(Some(&pct("0%")), 3, "25%", false), 0);
    }

    #[test]
    fn template_hashes_are_stable_dns_safe_and_ignore_the_hash_label() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "a"}]}
        }))
        .unwrap();
        let hash = template_hash(&template, None);
        assert_eq!(hash, template_hash(&template, None));
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_alphanumeric() && !c.is_ascii_uppercase())
        );
        let mut labelled = template.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        assert_eq!(template_hash(&labelled, None), hash);
        assert_ne!(template_hash(&template, Some(1)), hash);
        let mut other = template.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("b".into());
        assert_ne!(template_hash(&other, None), hash);
    }
}

//! The namespace controller: empties a namespace being deleted, then lets the API server
//! remove it — kube-controller-manager's namespace controller.
//!
//! DELETE of a namespace only marks it (deletionTimestamp, `status.phase: Terminating`,
//! and the API server then refuses new content in it); it stays while its
//! `spec.finalizers` holds `kubernetes`. For such a namespace this controller deletes
//! everything in it — every namespaced kind the API serves (found by discovery on each pass,
//! as upstream), by deletecollection or object by object — and reports progress in the
//! namespace's status conditions (`NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining`, `NamespaceDeletionContentFailure`, …). It looks again,
//! with a growing delay, until nothing is left (objects held by finalizers or a pod's grace
//! period take their time), then removes `kubernetes` through the `finalize` subresource,
//! upon which the API server removes the namespace.
//!
//! It only deletes the content of namespaces that are being deleted and edits their
//! status and `spec.finalizers`; it never deletes a namespace (except one stored before
//! namespaces carried the finalizer, which it deletes again once empty), and never
//! follows owner references (the garbage collector's work).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::apiserver::writes::NAMESPACE_FINALIZER;
use crate::gitops::kinds::{Catalog, Kind};

/// Errors a reconcile returns (retried with back-off): a failed API request.
pub use super::ApiError as Error;
use super::api_error;

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

struct State {
    client: Client,
}

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let state = Arc::new(State {
        client: client.clone(),
    });
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |obj, state| crate::metrics::timed_reconcile("namespace", reconcile(obj, state)),
            error_policy,
            state,
        )
        .for_each(|_| async {})
        .await;
}

fn error_policy(_ns: Arc<Namespace>, error: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "namespace reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

/// The condition types the controller keeps, with what they say when all is well
/// (upstream's `conditionTypes`, `okReasons`, `okMessages`).
const CONDITIONS: &[(&str, &str, &str)] = &[
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// What one pass over a namespace's content found.
#[derive(Debug, Default)]
struct Pass {
    /// Failing conditions: type → (reason, message).
    failures: BTreeMap<&'static str, (String, String)>,
    /// Objects left, over every kind.
    remaining: usize,
    /// Seconds until the last terminating pod's grace period ends (0: none).
    estimate: i64,
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<Namespace> = Api::all(state.client.clone());
    // Other writers edit a terminating namespace too: work from its latest state.
    let Some(mut latest) = api
        .get_opt(&name)
        .await
        .map_err(api_error(format!("reading namespace {name}")))?
    else {
        return Ok(Action::await_change());
    };
    let Some(deleted_at) = latest.metadata.deletion_timestamp.clone() else {
        return Ok(Action::await_change());
    };
    let spec_finalizers = latest
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    let ours = spec_finalizers.iter().any(|f| f == NAMESPACE_FINALIZER);
    // A namespace stored before the API server gave every namespace the finalizer is
    // emptied too, then deleted again (which now removes it).
    let legacy = spec_finalizers.is_empty()
        && latest
            .metadata
            .finalizers
            .as_ref()
            .is_none_or(|f| f.is_empty());
    if !ours && !legacy {
        // Finalized already; what holds it now is someone else's.
        return Ok(Action::await_change());
    }
    if latest.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating") {
        latest = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Terminating"}})),
            )
            .await
            .map_err(api_error(format!("marking namespace {name} Terminating")))?;
    }

    let pass = delete_content(&state.client, &name).await;
    // The finalize below is conditional on the version read: it starts from what the
    // status write returned, not from what that write replaced.
    if let Some(updated) = update_conditions(&api, &latest, &pass).await? {
        latest = updated;
    }
    if !pass.failures.is_empty() || pass.remaining > 0 {
        return Ok(Action::requeue(retry_delay(&deleted_at, pass.estimate)));
    }

    if legacy {
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api_error(format!("deleting namespace {name}"))(e)),
        }
        return Ok(Action::await_change());
    }
    // Empty: the `kubernetes` finalizer goes (conditionally on the version read, so a
    // concurrent finalizer change is not undone), and the API server removes the namespace
    // once nothing else holds it.
    let mut finalized = latest.clone();
    if let Some(spec) = finalized.spec.as_mut() {
        let left: Vec<String> = spec_finalizers
            .iter()
            .filter(|f| *f != NAMESPACE_FINALIZER)
            .cloned()
            .collect();
        spec.finalizers = (!left.is_empty()).then_some(left);
    }
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_status(&e, 404) => Ok(Action::await_change()),
        Err(e) => Err(api_error(format!("finalizing namespace {name}"))(e)),
    }
}

/// How long until the next look at a namespace whose content is not gone yet: half the
/// longest pod grace period left (upstream's estimate), else a delay growing with the time
/// the deletion has taken — quick while objects are normally going, slower for a
/// namespace held by finalizers for long.
fn retry_delay(deleted_at: &Time, estimate: i64) -> Duration {
    if estimate > 0 {
        return Duration::from_secs(u64::try_from(estimate / 2 + 1).unwrap_or(1));
    }
    let waited = jiff::Timestamp::now()
        .duration_since(deleted_at.0)
        .as_secs()
        .max(0);
    match waited {
        0..5 => Duration::from_millis(200),
        5..60 => Duration::from_secs(1),
        _ => Duration::from_secs(5),
    }
}

/// Delete every object of every namespaced kind in `namespace`, and count what is left.
async fn delete_content(client: &Client, namespace: &str) -> Pass {
    let mut pass = Pass::default();
    let catalog = match Catalog::discover(client).await {
        Ok(catalog) => catalog,
        Err(e) => {
            pass.failures.insert(
                "NamespaceDeletionDiscoveryFailure",
                (
                    "DiscoveryFailed".to_owned(),
                    format!(
                        "Discovery failed for some groups, 1 failing: {}",
                        message(&e)
                    ),
                ),
            );
            return pass;
        }
    };
    let mut kinds: Vec<&Kind> = catalog.all().filter(|k| k.namespaced).collect();
    // A stable order, so the conditions' messages stay the same from pass to pass.
    kinds.sort_by(|a, b| {
        (&a.resource.group, &a.resource.plural).cmp(&(&b.resource.group, &b.resource.plural))
    });
    let mut errors = Vec::new();
    let mut remaining_by_kind = Vec::new();
    let mut by_finalizer: BTreeMap<String, usize> = BTreeMap::new();
    for kind in kinds {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &kind.resource);
        if let Err(e) = delete_collection(&api).await {
            errors.push(format!("{}: {}", kind.resource.plural, message(&e)));
        }
        let left = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                errors.push(format!("{}: {}", kind.resource.plural, message(&e)));
                continue;
            }
        };
        if left.is_empty() {
            continue;
        }
        pass.remaining += left.len();
        remaining_by_kind.push(format!(
            "{}.{} has {} resource instances",
            kind.resource.plural,
            kind.resource.group,
            left.len()
        ));
        for obj in &left {
            for finalizer in obj.metadata.finalizers.as_deref().unwrap_or_default() {
                *by_finalizer.entry(finalizer.clone()).or_default() += 1;
            }
            if kind.resource.group.is_empty() && kind.resource.kind == "Pod" {
                pass.estimate = pass.estimate.max(grace_left(obj));
            }
        }
    }
    if !errors.is_empty() {
        pass.failures.insert(
            "NamespaceDeletionContentFailure",
            (
                "ContentDeletionFailed".to_owned(),
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    errors.len(),
                    errors.join(", ")
                ),
            ),
        );
    }
    if !remaining_by_kind.is_empty() {
        remaining_by_kind.sort();
        pass.failures.insert(
            "NamespaceContentRemaining",
            (
                "SomeResourcesRemain".to_owned(),
                format!(
                    "Some resources are remaining: {}",
                    remaining_by_kind.join(", ")
                ),
            ),
        );
    }
    if !by_finalizer.is_empty() {
        let listed: Vec<String> = by_finalizer
            .iter()
            .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
            .collect();
        pass.failures.insert(
            "NamespaceFinalizersRemaining",
            (
                "SomeFinalizersRemain".to_owned(),
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    listed.join(", ")
                ),
            ),
        );
    }
    pass
}

/// deletecollection (Background: dependents are the garbage collector's), or object by
/// object where the API does not serve it.
async fn delete_collection(api: &Api<DynamicObject>) -> Result<(), kube::Error> {
    let params = DeleteParams::background();
    match api.delete_collection(&params, &ListParams::default()).await {
        Ok(_) => return Ok(()),
        Err(e) if is_status(&e, 405) => {}
        Err(e) => return Err(e),
    }
    for obj in api.list(&ListParams::default()).await?.items {
        if obj.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&obj.name_any(), &params).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Seconds left of a terminating pod's grace period.
fn grace_left(pod: &DynamicObject) -> i64 {
    let Some(deadline) = &pod.metadata.deletion_timestamp else {
        return 0;
    };
    deadline
        .0
        .duration_since(jiff::Timestamp::now())
        .as_secs()
        .max(0)
}

/// Write the pass's conditions into the namespace's status when they changed (upstream's
/// updateConditions: a condition's lastTransitionTime moves only when its status does).
/// Returns the namespace as written, if it was.
async fn update_conditions(
    api: &Api<Namespace>,
    ns: &Namespace,
    pass: &Pass,
) -> Result<Option<Namespace>, Error> {
    let old = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let mut conditions: Vec<NamespaceCondition> = old
        .iter()
        .filter(|c| !CONDITIONS.iter().any(|(t, _, _)| *t == c.type_))
        .cloned()
        .collect();
    for (type_, ok_reason, ok_message) in CONDITIONS {
        let (status, reason, message) = match pass.failures.get(type_) {
            Some((reason, message)) => ("True", reason.clone(), message.clone()),
            None => ("False", (*ok_reason).to_owned(), (*ok_message).to_owned()),
        };
        let previous = old.iter().find(|c| c.type_ == *type_);
        let since = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        conditions.push(NamespaceCondition {
            type_: (*type_).to_owned(),
            status: status.to_owned(),
            reason: Some(reason),
            message: Some(message),
            last_transition_time: since,
        });
    }
    let same = |a: &NamespaceCondition, b: &NamespaceCondition| {
        a.type_ == b.type_ && a.status == b.status && a.reason == b.reason && a.message == b.message
    };
    if conditions.len() == old.len() && conditions.iter().all(|c| old.iter().any(|o| same(c, o))) {
        return Ok(None);
    }
    match api
        .patch_status(
            &ns.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await
    {
        Ok(written) => Ok(Some(written)),
        // Gone meanwhile: nothing left to report on.
        Err(e) if is_status(&e, 404) => Ok(None),
        Err(e) => Err(api_error(format!(
            "updating the conditions of namespace {}",
            ns.name_any()
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_slow_down_as_a_deletion_drags_on() {
        let now = jiff::Timestamp::now();
        let ago = |s: i64| Time(now.checked_sub(jiff::SignedDuration::from_secs(s)).unwrap());
        assert_eq!(retry_delay(&ago(0), 0), Duration::from_millis(200));
        assert_eq!(retry_delay(&ago(10), 0), Duration::from_secs(1));
        assert_eq!(retry_delay(&ago(600), 0), Duration::from_secs(5));
        assert_eq!(retry_delay(&ago(0), 30), Duration::from_secs(16));
    }
}

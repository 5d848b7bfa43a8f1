//! What the scheduler writes: the `pods/{name}/binding` that places a pod, the
//! `Scheduled` event, and — for a pod no node takes — the PodScheduled=False condition and
//! the FailedScheduling event, in kube-scheduler's words.

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::cache::PodInfo;
use crate::controllers::events::{EventType, Recorder, reference};

/// What a failed binding means for the pod.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The pod is gone, already placed or being deleted: the watch will tell; do not retry.
    #[error("pod {pod} cannot be bound any more: {source}")]
    Settled {
        /// `namespace/name`.
        pod: String,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
    /// Anything else (the node vanished, the API is unavailable): retry after back-off.
    #[error("binding pod {pod} to node {node}: {source}")]
    Failed {
        /// `namespace/name`.
        pod: String,
        /// The chosen node.
        node: String,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
}

/// POST the pod's binding to `node`.
pub async fn bind(client: &kube::Client, pod: &PodInfo, node: &str) -> Result<(), BindError> {
    let meta = &pod.pod.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            // Binds this incarnation only: a pod deleted and recreated under the same name
            // meanwhile is refused rather than placed by a stale decision.
            uid: meta.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(node.to_owned()),
            ..ObjectReference::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {
            Err(BindError::Settled {
                pod: pod.key.clone(),
                source: kube::Error::Api(status),
            })
        }
        Err(source) => Err(BindError::Failed {
            pod: pod.key.clone(),
            node: node.to_owned(),
            source,
        }),
    }
}

/// The `Scheduled` event kubectl describe shows.
pub async fn record_scheduled(recorder: &Recorder, pod: &PodInfo, node: &str) {
    recorder
        .publish(
            &reference(pod.pod.as_ref()),
            EventType::Normal,
            "Scheduled",
            &format!("Successfully assigned {} to {node}", pod.key),
        )
        .await;
}

/// Condition reason for a pod no node takes.
pub const UNSCHEDULABLE: &str = "Unschedulable";
/// Condition reason for a pod whose binding failed (upstream's `SchedulerError`).
pub const SCHEDULER_ERROR: &str = "SchedulerError";

/// Tell the pod's owner why it waits: condition PodScheduled=False with `reason`
/// ([`UNSCHEDULABLE`] or [`SCHEDULER_ERROR`]; written only when it changes) and a
/// FailedScheduling warning event.
pub async fn record_not_scheduled(
    client: &kube::Client,
    recorder: &Recorder,
    pod: &PodInfo,
    reason: &str,
    message: &str,
) {
    let current = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let unchanged = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    if !unchanged {
        let meta = &pod.pod.metadata;
        let api: Api<Pod> = Api::namespaced(
            client.clone(),
            meta.namespace.as_deref().unwrap_or_default(),
        );
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": null,
            // The transition is when the status last changed, not when the message did.
            "lastTransitionTime": current
                .filter(|c| c.status == "False")
                .and_then(|c| c.last_transition_time.as_ref())
                .map_or_else(jiff::Timestamp::now, |t| t.0),
        }]}});
        if let Err(e) = api
            .patch_status(
                meta.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            tracing::debug!(pod = %pod.key, error = %e, "recording PodScheduled=False");
        }
    }
    recorder
        .publish(
            &reference(pod.pod.as_ref()),
            EventType::Warning,
            "FailedScheduling",
            message,
        )
        .await;
}

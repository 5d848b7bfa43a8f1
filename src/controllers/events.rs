//! Events (core/v1) for what controllers do — `SuccessfulCreate`, `ScalingReplicaSet`,
//! `NodeNotReady`, … — so `kubectl describe` tells the story. A repeat of the same event
//! (same object, type, reason and message) bumps the count and last timestamp of the
//! existing Event instead of creating another, as client-go's event correlator does.
//!
//! Recording is best effort: a failure is logged and never fails the controller.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Whether an event is routine or worth a look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Routine.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What makes two events "the same": they are then one Event with a count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    kind: String,
    name: String,
    uid: String,
    event_type: EventType,
    reason: String,
    message: String,
}

/// Records events for one component (e.g. `replicaset-controller`).
pub struct Recorder {
    client: Client,
    component: String,
    /// The node the events come from (`source.host`), for node agents.
    host: Option<String>,
    /// Event name and count per key. A std mutex: held only to read or update the map,
    /// never across an await.
    seen: Mutex<HashMap<Key, (String, i32)>>,
}

/// How many distinct events a recorder remembers for deduplication before starting over.
const MAX_REMEMBERED: usize = 4096;

impl Recorder {
    /// A recorder writing events as `component`.
    pub fn new(client: Client, component: impl Into<String>) -> Self {
        Recorder {
            client,
            component: component.into(),
            host: None,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Events also name the node they come from, as kubelet's do.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Record an event about `object`.
    pub async fn publish(
        &self,
        object: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) {
        if let Err(e) = self.try_publish(object, event_type, reason, message).await {
            tracing::debug!(component = %self.component, reason, error = %e, "recording an event");
        }
    }

    async fn try_publish(
        &self,
        object: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        // Events about cluster-scoped objects (nodes) live in `default`, as upstream.
        let namespace = object
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let key = Key {
            namespace: namespace.clone(),
            kind: object.kind.clone().unwrap_or_default(),
            name: object.name.clone().unwrap_or_default(),
            uid: object.uid.clone().unwrap_or_default(),
            event_type,
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        let now = Time(jiff::Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let previous = self.lock().get(&key).cloned();
        if let Some((name, count)) = previous {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.lock().insert(key, (name, count + 1));
                    return Ok(());
                }
                // Gone (expired or deleted): record it afresh below.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!("{}.{:x}", key.name, jiff::Timestamp::now().as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            type_: Some(event_type.as_str().to_owned()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: self.host.clone(),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        let mut seen = self.lock();
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(key, (name, 1));
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (String, i32)>> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The reference an Event names, for any object kube knows the type of.
pub fn reference<K>(object: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    object.object_ref(&())
}

//! The endpoints controller (kube-controller-manager's `endpoint-controller`): for every
//! Service with a selector it keeps an Endpoints object (core/v1) of the same name listing
//! the pods the Service routes to.
//!
//! Each reconcile builds the subsets from scratch from the pod reflector: a selected pod
//! contributes its IP of the Service's family, its node, its hostname (when the pod's
//! `hostname` and `subdomain` name this Service) and a `targetRef`; ready pods go to
//! `addresses`, the others to `notReadyAddresses` (every pod to `addresses` with
//! `publishNotReadyAddresses`). Ports come from the Service, `targetPort` resolved by number
//! or by container port name per pod (a pod without the named port is left out of that
//! port), and addresses offering the same ports share a subset (upstream's RepackSubsets).
//! Pods without an IP, finished pods (Succeeded, Failed) and pods being deleted are left
//! out, the last kept as not ready under `publishNotReadyAddresses`, as upstream. The object
//! carries the Service's labels plus `endpoints.kubernetes.io/managed-by:
//! endpoint-controller` (and `service.kubernetes.io/headless` for `clusterIP: None`), holds
//! at most 1000 addresses (`endpoints.kubernetes.io/over-capacity: truncated` beyond), and
//! is written only when it differs from what is stored. It has no ownerReference (as
//! upstream), so when the Service goes this controller deletes it.
//!
//! Reconciles are triggered by watches of Services, Pods and Endpoints: a pod event reaches
//! the Services its labels select now and those its previous labels selected, so a pod
//! whose labels take it out of a Service is removed at once. Nothing is polled.
//!
//! It never writes Pods or Services, and never touches the Endpoints of a Service without a
//! selector (their users manage them). EndpointSlices belong to [`super::endpointslice`],
//! which shares the pieces here that both need: pod addresses, port resolution, and the
//! [`Router`] that turns watch events into reconciles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::events::{EventType, Recorder};
use super::util::{is_ready, is_terminal, is_terminating};
use super::{ApiError, Context, api_error};

/// The label marking Endpoints this controller manages (upstream `LabelManagedBy`).
pub const LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// Its value, and the controller's name in events (upstream `ControllerName`).
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// The label upstream puts on the Endpoints and EndpointSlices of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// The annotation saying addresses were left out (upstream `EndpointsOverCapacity`).
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// At most this many addresses go into one Endpoints object (upstream `maxCapacity`).
pub const MAX_CAPACITY: usize = 1000;

/// How long a reconcile waits for the watch to bring back what it just wrote, so the next
/// reconcile of the same Service compares with it rather than with an older copy.
const CACHE_WAIT: Duration = Duration::from_secs(5);

/// Errors a reconcile returns (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Someone else kept changing the Endpoints between our read and our write.
    #[error("endpoints {0} kept changing while being updated")]
    Contended(String),
}

type State = ServiceState<Endpoints>;

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    run_for_services(
        ctx,
        shutdown,
        CONTROLLER_NAME,
        managed_service,
        |svc, state| crate::metrics::timed_reconcile("endpoints", reconcile(svc, state)),
        error_policy,
        |state: Arc<State>, namespace: String, name: String| async move {
            remove_orphan(&state, &namespace, &name).await;
        },
    )
    .await;
}

/// What a controller that keeps objects of kind `K` in step with Services (Endpoints,
/// EndpointSlices) hands its reconciler.
pub(crate) struct ServiceState<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub(crate) ctx: Arc<Context>,
    pub(crate) router: Arc<Router<K>>,
    pub(crate) recorder: Recorder,
    pub(crate) retries: Retries,
}

/// Drive a controller keyed by Service whose output objects are of kind `K`: Services,
/// pods and `K` reflected into stores that only the [`Router`]'s stream feeds, every
/// trigger through it, and the output of a deleted Service (reported by the controller as
/// ObjectNotFound) removed by `remove_orphans(state, namespace, name)`.
pub(crate) async fn run_for_services<K, E, F, Fut, G, GFut>(
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    component: &'static str,
    service_of: fn(&K) -> Option<String>,
    reconcile: F,
    error_policy: fn(Arc<Service>, &E, Arc<ServiceState<K>>) -> Action,
    remove_orphans: G,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: FnMut(Arc<Service>, Arc<ServiceState<K>>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
    G: Fn(Arc<ServiceState<K>>, String, String) -> GFut,
    GFut: std::future::Future<Output = ()>,
{
    let client = ctx.client.clone();
    let (services, service_writer) = reflector::store();
    let (pods, pod_writer) = reflector::store();
    let (managed, managed_writer) = reflector::store();
    let router = Arc::new(Router::new(services.clone(), pods, managed, service_of));
    let triggers = router.triggers(
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(service_writer),
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .reflect(pod_writer),
        watcher(Api::<K>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(managed_writer),
    );
    let state = Arc::new(ServiceState {
        recorder: ctx.recorder(component),
        ctx,
        router,
        retries: Retries::default(),
    });
    let cleanup_state = state.clone();
    let remove_orphans = &remove_orphans;
    // The Service store is fed by the router's stream; the controller only reads it. Every
    // trigger comes through `reconcile_on`, including those for deleted Services, which the
    // controller reports as ObjectNotFound: that is where their output is removed.
    Controller::for_stream(
        stream::pending::<Result<Service, watcher::Error>>(),
        services,
    )
    .reconcile_on(triggers)
    .graceful_shutdown_on(async move { shutdown.cancelled().await })
    .run(reconcile, error_policy, state)
    .for_each_concurrent(None, move |result| {
        let state = cleanup_state.clone();
        async move {
            match result {
                Err(controller::Error::ObjectNotFound(gone)) => {
                    let namespace = gone.namespace.clone().unwrap_or_default();
                    remove_orphans(state, namespace, gone.name.clone()).await;
                }
                Err(error) => tracing::debug!(%error, component, "reconciling"),
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// The Service an Endpoints object belongs to, if this controller manages it.
fn managed_service(endpoints: &Endpoints) -> Option<String> {
    let labels = endpoints.metadata.labels.as_ref()?;
    (labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(CONTROLLER_NAME))
        .then(|| endpoints.name_any())
}

fn error_policy(svc: Arc<Service>, error: &Error, state: Arc<State>) -> Action {
    tracing::debug!(service = %svc.name_any(), %error, "endpoints reconcile failed");
    Action::requeue(state.retries.failed(&key_of(&*svc)))
}

async fn reconcile(svc: Arc<Service>, state: Arc<State>) -> Result<Action, Error> {
    if !state.router.caches_ready().await {
        // The reflectors are gone: the controller is shutting down.
        return Ok(Action::await_change());
    }
    if managed_selector(&svc).is_none() {
        return Ok(Action::await_change());
    }
    let pods = state.router.pods_of(&svc);
    let subsets = desired_subsets(&svc, &pods);
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let cached = state
        .router
        .managed
        .get(&ObjectRef::new(&name).within(&namespace));
    write(&state, &svc, cached.as_deref().cloned(), subsets).await?;
    state.retries.succeeded(&key_of(&*svc));
    Ok(Action::await_change())
}

/// Create or update the Endpoints when they differ from `subsets` and the wanted labels.
/// The cache may lag behind: a conflict re-reads the object and tries again.
async fn write(
    state: &State,
    svc: &Service,
    mut current: Option<Endpoints>,
    subsets: Vec<EndpointSubset>,
) -> Result<(), Error> {
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let api: Api<Endpoints> = Api::namespaced(state.ctx.client.clone(), &namespace);
    for _ in 0..3 {
        let desired = desired_endpoints(svc, current.as_ref(), subsets.clone());
        let creating = current.is_none();
        let result = match &current {
            Some(existing) if unchanged(existing, &desired) => return Ok(()),
            Some(_) => api.replace(&name, &PostParams::default(), &desired).await,
            None => api.create(&PostParams::default(), &desired).await,
        };
        match result {
            Ok(written) => {
                state.router.wait_for_cache(revision(&written), &[]).await;
                return Ok(());
            }
            // Created meanwhile, changed meanwhile, or deleted meanwhile: look again.
            Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 404 && !creating) => {
                current = api
                    .get_opt(&name)
                    .await
                    .map_err(api_error(format!("reading endpoints {namespace}/{name}")))?;
            }
            // Nothing can be created in a namespace being deleted; its deletion takes the
            // Service with it.
            Err(e) if creating && is_namespace_terminating(&e) => return Ok(()),
            Err(e) => {
                let (reason, message) = if creating {
                    (
                        "FailedToCreateEndpoint",
                        format!(
                            "Failed to create endpoint for service {namespace}/{name}: {}",
                            api_message(&e)
                        ),
                    )
                } else {
                    (
                        "FailedToUpdateEndpoint",
                        format!(
                            "Failed to update endpoint {namespace}/{name}: {}",
                            api_message(&e)
                        ),
                    )
                };
                state
                    .recorder
                    .publish(
                        &endpoints_reference(&desired),
                        EventType::Warning,
                        reason,
                        &message,
                    )
                    .await;
                return Err(api_error(format!("writing endpoints {namespace}/{name}"))(e).into());
            }
        }
    }
    Err(Error::Contended(format!("{namespace}/{name}")))
}

/// Delete the Endpoints of a Service that no longer exists. The Service store said so; the
/// API is asked again before deleting, since a store still filling up says so too.
async fn remove_orphan(state: &State, namespace: &str, name: &str) {
    let Some(cached) = state
        .router
        .managed
        .get(&ObjectRef::new(name).within(namespace))
    else {
        return;
    };
    if state
        .router
        .services
        .get(&ObjectRef::new(name).within(namespace))
        .is_some()
    {
        return;
    }
    let client = state.ctx.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let api: Api<Endpoints> = Api::namespaced(client, namespace);
    // Only the Endpoints seen, not one created afresh under the same name meanwhile.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: cached.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        match services.get_opt(name).await {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(%error, namespace, name, "checking a service before deleting its endpoints");
                continue;
            }
        }
        match api.delete(name, &params).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return,
            Err(error) => {
                tracing::debug!(%error, namespace, name, "deleting the endpoints of a deleted service");
            }
        }
    }
    tracing::warn!(
        namespace,
        name,
        "could not delete the endpoints of a deleted service"
    );
}

/// The Endpoints wanted: `current` (or a new object) with these subsets, the Service's
/// labels and the over-capacity annotation when addresses had to be left out.
fn desired_endpoints(
    svc: &Service,
    current: Option<&Endpoints>,
    mut subsets: Vec<EndpointSubset>,
) -> Endpoints {
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: Some(svc.name_any()),
            namespace: svc.namespace(),
            ..ObjectMeta::default()
        },
        subsets: None,
    });
    let truncated = truncate(&mut subsets);
    endpoints.subsets = Some(normalized_subsets(Some(&subsets)));
    endpoints.metadata.labels = Some(desired_labels(svc));
    let mut annotations = endpoints.metadata.annotations.take().unwrap_or_default();
    if truncated {
        annotations.insert(ANNOTATION_OVER_CAPACITY.to_owned(), "truncated".to_owned());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    endpoints.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    endpoints
}

/// The Service's labels plus the controller's own (upstream replaces the Endpoints' labels
/// with these on every write).
fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.insert(LABEL_MANAGED_BY.to_owned(), CONTROLLER_NAME.to_owned());
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.to_owned(), String::new());
    } else {
        labels.remove(LABEL_HEADLESS);
    }
    labels
}

/// Whether writing `desired` over `current` would change nothing.
fn unchanged(current: &Endpoints, desired: &Endpoints) -> bool {
    current.metadata.labels.clone().unwrap_or_default()
        == desired.metadata.labels.clone().unwrap_or_default()
        && current.metadata.annotations.clone().unwrap_or_default()
            == desired.metadata.annotations.clone().unwrap_or_default()
        && normalized_subsets(current.subsets.as_ref())
            == normalized_subsets(desired.subsets.as_ref())
}

/// Subsets as the API stores them: empty lists absent, port protocols defaulted, empty
/// strings absent — so a stored object compares equal to the one it was written from.
fn normalized_subsets(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    let address = |a: &EndpointAddress| EndpointAddress {
        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
        node_name: a.node_name.clone().filter(|n| !n.is_empty()),
        ..a.clone()
    };
    let addresses = |list: &Option<Vec<EndpointAddress>>| {
        non_empty(list.iter().flatten().map(address).collect())
    };
    subsets
        .into_iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: addresses(&s.addresses),
            not_ready_addresses: addresses(&s.not_ready_addresses),
            ports: non_empty(
                s.ports
                    .iter()
                    .flatten()
                    .map(|p| EndpointPort {
                        name: p.name.clone().filter(|n| !n.is_empty()),
                        protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                        ..p.clone()
                    })
                    .collect(),
            ),
        })
        .filter(|s| s.addresses.is_some() || s.not_ready_addresses.is_some())
        .collect()
}

fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

/// One pod's address for one port, before addresses are grouped into subsets.
#[derive(Clone)]
struct Member {
    address: EndpointAddress,
    ready: bool,
}

/// Where an address is reached: the index of the Service port and the number it resolved
/// to for that pod; `None` for a headless Service without ports.
type PortSlot = Option<(usize, i32)>;

/// The subsets for these pods (already those the Service selects), grouped and sorted so
/// the same pods always give the same subsets.
fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.as_ref();
    let publish = spec
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let ports: &[ServicePort] = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let mut by_port: BTreeMap<PortSlot, BTreeMap<(String, String), Member>> = BTreeMap::new();
    let mut add = |slot: PortSlot, key: (String, String), member: Member| {
        let ready = member.ready;
        by_port
            .entry(slot)
            .or_default()
            .entry(key)
            // One address listed ready and not ready counts as ready (upstream keeps the
            // ready one).
            .and_modify(|m| m.ready |= ready)
            .or_insert(member);
    };
    for pod in pods {
        if !should_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(ip) = address_for_service(svc, pod) else {
            continue;
        };
        let key = (ip.clone(), pod.uid().unwrap_or_default());
        let member = Member {
            address: EndpointAddress {
                ip,
                hostname: hostname_for(pod, svc),
                node_name: node_name(pod),
                target_ref: Some(pod_reference(pod)),
            },
            ready: publish || is_ready(pod),
        };
        if ports.is_empty() {
            // Only a headless Service may do without ports.
            if is_headless(svc) {
                add(None, key, member);
            }
            continue;
        }
        for (index, port) in ports.iter().enumerate() {
            if let Some(number) = find_port(pod, port) {
                add(Some((index, number)), key.clone(), member.clone());
            }
        }
    }
    // Ports offered at exactly the same addresses (with the same readiness) share a subset.
    type Signature = Vec<(String, String, bool)>;
    let mut groups: BTreeMap<Signature, (Vec<PortSlot>, Vec<Member>)> = BTreeMap::new();
    for (slot, members) in by_port {
        let signature: Signature = members
            .iter()
            .map(|((ip, uid), m)| (ip.clone(), uid.clone(), m.ready))
            .collect();
        groups
            .entry(signature)
            .or_insert_with(|| (Vec::new(), members.into_values().collect()))
            .0
            .push(slot);
    }
    groups
        .into_values()
        .map(|(slots, members)| {
            let (ready, not_ready): (Vec<Member>, Vec<Member>) =
                members.into_iter().partition(|m| m.ready);
            EndpointSubset {
                addresses: non_empty(ready.into_iter().map(|m| m.address).collect()),
                not_ready_addresses: non_empty(not_ready.into_iter().map(|m| m.address).collect()),
                ports: non_empty(
                    slots
                        .into_iter()
                        .flatten()
                        .filter_map(|(index, number)| {
                            ports.get(index).map(|p| endpoint_port(p, number))
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

fn endpoint_port(port: &ServicePort, number: i32) -> EndpointPort {
    EndpointPort {
        name: port.name.clone().filter(|n| !n.is_empty()),
        port: number,
        protocol: Some(protocol_of(port.protocol.as_deref())),
        app_protocol: port.app_protocol.clone(),
    }
}

/// Keep at most [`MAX_CAPACITY`] addresses, ready ones first, each subset keeping its share
/// (upstream's truncateEndpoints). Returns whether anything was left out.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let len = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| len(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| len(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (room, total) = if truncate_ready {
        (MAX_CAPACITY, total_ready)
    } else {
        (MAX_CAPACITY - total_ready, total_not_ready)
    };
    let mut left = room;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready {
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let here = len(list);
        // This subset's share of the room, rounded up; the last ones get what is left.
        let keep = (here * room).div_ceil(total.max(1)).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(keep);
            left -= addresses.len();
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    true
}

fn endpoints_reference(endpoints: &Endpoints) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Endpoints".to_owned()),
        name: endpoints.metadata.name.clone(),
        namespace: endpoints.metadata.namespace.clone(),
        uid: endpoints.metadata.uid.clone(),
        resource_version: endpoints.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared with the EndpointSlice controller.

/// The selector of a Service whose endpoints the controllers manage: `None` for
/// ExternalName Services and Services without a selector (users manage their endpoints).
/// An empty selector counts as none: upstream stores services as protobuf, where an empty
/// map reads back as no map, so `selector: {}` never selects every pod there.
pub(crate) fn managed_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether the Service is headless (`clusterIP: None`). Upstream also counts an empty
/// cluster IP, which there only ExternalName Services have; moor may not have allocated
/// one yet, so an empty cluster IP is not taken to mean headless.
pub(crate) fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether a pod belongs in a Service's endpoints at all: it has an IP, has not finished,
/// and — unless `include_terminating` — is not being deleted (upstream's
/// ShouldPodBeInEndpoints).
pub(crate) fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !is_terminal(pod) && !pod_ips(pod).is_empty() && (include_terminating || !is_terminating(pod))
}

/// The pod's IPs, primary first. `status.podIP` is authoritative when it disagrees with
/// `status.podIPs` (as in upstream's v1 conversion); strings that are not IP addresses are
/// dropped rather than published.
pub(crate) fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let primary = status.pod_ip.clone().filter(|ip| !ip.is_empty());
    let listed: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    let ips = match primary {
        Some(primary) if listed.first() != Some(&primary) => vec![primary],
        _ => listed,
    };
    ips.into_iter()
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
        .collect()
}

/// Whether an address (one of [`pod_ips`]) is IPv6.
pub(crate) fn is_ipv6(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6())
}

/// The pod's IP of the Service's family: the first of `ipFamilies`, else the family of the
/// cluster IP, else (headless, or no cluster IP yet) that of the pod's primary IP.
fn address_for_service(svc: &Service, pod: &Pod) -> Option<String> {
    let ips = pod_ips(pod);
    let spec = svc.spec.as_ref();
    let want_ipv6 = match spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        Some(family) => family == "IPv6",
        None => match spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        {
            Some(cluster_ip) => cluster_ip.is_ipv6(),
            None => ips.first().is_some_and(|ip| is_ipv6(ip)),
        },
    };
    ips.into_iter().find(|ip| is_ipv6(ip) == want_ipv6)
}

/// The port a Service port reaches on this pod: `targetPort` as a number, or the container
/// port of that name and protocol (in the containers, then in sidecar init containers);
/// `None` when the pod has no such named port. An unset or zero target port means the
/// Service port itself (what defaulting would have filled in).
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        None => return Some(port.port),
        Some(IntOrString::Int(0)) => return Some(port.port),
        Some(IntOrString::Int(number)) => return Some(*number),
        Some(IntOrString::String(name)) if name.is_empty() => return Some(port.port),
        Some(IntOrString::String(name)) => name,
    };
    let protocol = protocol_of(port.protocol.as_deref());
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name.as_str())
                && protocol_of(p.protocol.as_deref()) == protocol
        })
        .map(|p| p.container_port)
}

/// A protocol with the API's default filled in.
pub(crate) fn protocol_of(protocol: Option<&str>) -> String {
    protocol
        .filter(|p| !p.is_empty())
        .unwrap_or("TCP")
        .to_owned()
}

/// The pod's hostname when its `hostname` and `subdomain` put it under this Service's DNS
/// name (upstream's ShouldSetHostname).
pub(crate) fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(svc.name_any().as_str())
        && pod.namespace() == svc.namespace())
    .then(|| hostname.to_owned())
}

/// The node the pod runs on, if scheduled.
pub(crate) fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// The `targetRef` of a pod's endpoint: kind, namespace, name and uid, no resourceVersion
/// (which would change the endpoints on every pod update).
pub(crate) fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_owned()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..ObjectReference::default()
    }
}

/// The resourceVersion of an object as the revision it is in moor (0 when it is not a
/// number, which makes a wait for it return at once).
pub(crate) fn revision<K: Resource>(object: &K) -> u64 {
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// `namespace/name`.
pub(crate) fn key_of<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// The message of an API error (the Status message rather than the whole Debug form).
pub(crate) fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Whether a create failed because its namespace is being deleted (upstream looks for the
/// NamespaceTerminating cause; the message is checked too for servers that leave it out).
pub(crate) fn is_namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else {
        return false;
    };
    status.code == 403
        && (status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
            || status.message.contains("because it is being terminated"))
}

/// Back-off for Services whose reconcile keeps failing: 5 ms doubling up to a minute, as
/// upstream's per-item rate limiter (which stops at 1000 s), forgotten on success.
#[derive(Default)]
pub(crate) struct Retries(Mutex<HashMap<String, u32>>);

impl Retries {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(60);

    /// One more failure of `key`; how long to wait before trying again.
    pub(crate) fn failed(&self, key: &str) -> Duration {
        let mut failures = self.lock();
        let count = failures.entry(key.to_owned()).or_insert(0);
        let delay = Self::FIRST
            .checked_mul(1u32.checked_shl(*count).unwrap_or(u32::MAX))
            .map_or(Self::MAX, |d| d.min(Self::MAX));
        *count = count.saturating_add(1);
        delay
    }

    /// `key` reconciled fine.
    pub(crate) fn succeeded(&self, key: &str) {
        let mut failures = self.lock();
        if !failures.is_empty() {
            failures.remove(key);
        }
    }

    /// A std mutex: held only to read or update the map, never across an await.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Turns the watch events of Services, Pods and the controller's own objects (`K`:
/// Endpoints or EndpointSlices) into the Services to reconcile, and tracks how far the
/// watch of `K` has got, so a reconcile can wait until its own writes are in the cache.
pub(crate) struct Router<K: Resource<DynamicType = ()> + Clone + 'static> {
    /// Every Service.
    pub(crate) services: Store<Service>,
    /// Every Pod.
    pub(crate) pods: Store<Pod>,
    /// Every `K`.
    pub(crate) managed: Store<K>,
    /// The Service (by name, in the object's namespace) an object belongs to, if the
    /// controller manages it.
    service_of: fn(&K) -> Option<String>,
    /// Each pod's (namespace, name) labels when last seen: a pod that stops matching a
    /// Service must still reach it. A std mutex: never held across an await.
    previous_labels: Mutex<HashMap<(String, String), BTreeMap<String, String>>>,
    /// The highest resourceVersion the watch of `K` has put into `managed`.
    observed: watch::Sender<u64>,
    /// The same during a relist, applied once the relisted objects are in the store.
    relisted: AtomicU64,
}

impl<K> Router<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// A router over these stores (their writers are fed by the streams given to
    /// [`Router::triggers`]).
    pub(crate) fn new(
        services: Store<Service>,
        pods: Store<Pod>,
        managed: Store<K>,
        service_of: fn(&K) -> Option<String>,
    ) -> Self {
        Router {
            services,
            pods,
            managed,
            service_of,
            previous_labels: Mutex::new(HashMap::new()),
            observed: watch::Sender::new(0),
            relisted: AtomicU64::new(0),
        }
    }

    /// The Services to reconcile, from the three reflected watch streams (which this stream
    /// drives: the stores fill only while it is polled).
    pub(crate) fn triggers(
        self: &Arc<Self>,
        services: impl Stream<Item = Result<watcher::Event<Service>, watcher::Error>> + Send + 'static,
        pods: impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Send + 'static,
        managed: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ) -> impl Stream<Item = ObjectRef<Service>> + Send + 'static {
        let (a, b, c) = (self.clone(), self.clone(), self.clone());
        stream::select_all([
            services
                .flat_map(move |e| stream::iter(a.on_service(e)))
                .boxed(),
            pods.flat_map(move |e| stream::iter(b.on_pod(e))).boxed(),
            managed
                .flat_map(move |e| stream::iter(c.on_managed(e)))
                .boxed(),
        ])
    }

    fn on_service(
        &self,
        event: Result<watcher::Event<Service>, watcher::Error>,
    ) -> Vec<ObjectRef<Service>> {
        match event {
            Ok(watcher::Event::Apply(svc) | watcher::Event::Delete(svc)) => {
                vec![ObjectRef::from_obj(&svc)]
            }
            Ok(watcher::Event::InitDone) => self.everything(),
            Ok(_) => Vec::new(),
            Err(error) => {
                tracing::debug!(%error, "watching services");
                Vec::new()
            }
        }
    }

    fn on_pod(
        &self,
        event: Result<watcher::Event<Pod>, watcher::Error>,
    ) -> Vec<ObjectRef<Service>> {
        match event {
            Ok(watcher::Event::Apply(pod)) => self.route_pod(&pod, false),
            Ok(watcher::Event::Delete(pod)) => self.route_pod(&pod, true),
            Ok(watcher::Event::InitDone) => {
                // After a relist, pods deleted while the watch was down never sent a Delete:
                // forget them, and look at every Service again.
                let pods = &self.pods;
                self.lock_previous_labels().retain(|(namespace, name), _| {
                    pods.get(&ObjectRef::new(name).within(namespace)).is_some()
                });
                self.everything()
            }
            Ok(_) => Vec::new(),
            Err(error) => {
                tracing::debug!(%error, "watching pods");
                Vec::new()
            }
        }
    }

    fn on_managed(
        &self,
        event: Result<watcher::Event<K>, watcher::Error>,
    ) -> Vec<ObjectRef<Service>> {
        match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                self.observe(revision(&object));
                let namespace = object.meta().namespace.clone().unwrap_or_default();
                (self.service_of)(&object)
                    .map(|name| ObjectRef::new(&name).within(&namespace))
                    .into_iter()
                    .collect()
            }
            Ok(watcher::Event::Init) => {
                self.relisted.store(0, Ordering::Relaxed);
                Vec::new()
            }
            Ok(watcher::Event::InitApply(object)) => {
                self.relisted
                    .fetch_max(revision(&object), Ordering::Relaxed);
                Vec::new()
            }
            Ok(watcher::Event::InitDone) => {
                self.observe(self.relisted.swap(0, Ordering::Relaxed));
                self.everything()
            }
            Err(error) => {
                tracing::debug!(%error, "watching managed objects");
                Vec::new()
            }
        }
    }

    /// The Services a pod event concerns: those its labels select now and those its
    /// previous labels select (it may have just stopped matching), as upstream compares the
    /// old and new pod. Selectors are read now, so a Service whose selector changed since
    /// still hears about a pod leaving it.
    fn route_pod(&self, pod: &Pod, deleted: bool) -> Vec<ObjectRef<Service>> {
        let namespace = pod.namespace().unwrap_or_default();
        let key = (namespace.clone(), pod.name_any());
        let labels = pod.labels();
        let before = {
            let mut previous = self.lock_previous_labels();
            if deleted {
                previous.remove(&key)
            } else {
                previous.insert(key, labels.clone())
            }
        };
        self.services
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|s| {
                managed_selector(s).is_some_and(|selector| {
                    matches(selector, labels)
                        || before.as_ref().is_some_and(|old| matches(selector, old))
                })
            })
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect()
    }

    /// Every Service, and every Service that is gone but still has managed objects.
    fn everything(&self) -> Vec<ObjectRef<Service>> {
        let mut refs: Vec<ObjectRef<Service>> = self
            .services
            .state()
            .iter()
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let leftovers: BTreeSet<(String, String)> = self
            .managed
            .state()
            .iter()
            .filter_map(|o| {
                let name = (self.service_of)(o)?;
                Some((o.meta().namespace.clone().unwrap_or_default(), name))
            })
            .collect();
        refs.extend(
            leftovers
                .into_iter()
                .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace))
                .filter(|r| self.services.get(r).is_none()),
        );
        refs
    }

    fn observe(&self, revision: u64) {
        // Always notify, even when the mark does not move: a delete may be what a waiter
        // is waiting for.
        self.observed
            .send_modify(|seen| *seen = (*seen).max(revision));
    }

    /// Wait (at most [`CACHE_WAIT`]) until the store holds what a reconcile just wrote: the
    /// watch has passed revision `written` (moor's resourceVersions are store revisions,
    /// delivered in order) and the `deleted` objects are gone from it.
    pub(crate) async fn wait_for_cache(&self, written: u64, deleted: &[ObjectRef<K>]) {
        let mut seen = self.observed.subscribe();
        let caught_up =
            |mark: &u64| *mark >= written && deleted.iter().all(|r| self.managed.get(r).is_none());
        if tokio::time::timeout(CACHE_WAIT, seen.wait_for(caught_up))
            .await
            .is_err()
        {
            tracing::debug!(written, "the watch did not bring back a write in time");
        }
    }

    /// Wait until the pod and managed-object stores hold a full list. `false` when they
    /// never will (the controller is stopping).
    pub(crate) async fn caches_ready(&self) -> bool {
        self.pods.wait_until_ready().await.is_ok() && self.managed.wait_until_ready().await.is_ok()
    }

    /// The pods a Service selects, in its namespace, by name.
    pub(crate) fn pods_of(&self, svc: &Service) -> Vec<Arc<Pod>> {
        let Some(selector) = managed_selector(svc) else {
            return Vec::new();
        };
        let namespace = svc.namespace();
        let mut pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace() == namespace && matches(selector, p.labels()))
            .collect();
        pods.sort_by_key(|p| p.name_any());
        pods
    }

    fn lock_previous_labels(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), BTreeMap<String, String>>> {
        self.previous_labels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a Service selector (a plain label map) matches these labels.
fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, ports: Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                             "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": ports}]},
                "status": {"phase": "Running", "podIP": ip,
                           "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
            }))
            .unwrap(),
        )
    }

    fn summary(subsets: &[EndpointSubset]) -> Vec<String> {
        subsets
            .iter()
            .map(|s| {
                let ips = |l: &Option<Vec<EndpointAddress>>| {
                    l.iter()
                        .flatten()
                        .map(|a| a.ip.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let ports: Vec<String> = s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}:{}", p.name.clone().unwrap_or_default(), p.port))
                    .collect();
                format!(
                    "ready=[{}] notReady=[{}] ports=[{}]",
                    ips(&s.addresses),
                    ips(&s.not_ready_addresses),
                    ports.join(",")
                )
            })
            .collect()
    }

    #[test]
    fn subsets_split_by_readiness_and_resolved_port() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "admin", "port": 81, "targetPort": 9000, "protocol": "TCP"},
        ]}));
        let pods = vec![
            pod(
                "a",
                "10.0.0.1",
                true,
                json!([{"name": "http", "containerPort": 8080}]),
            ),
            pod(
                "b",
                "10.0.0.2",
                false,
                json!([{"name": "http", "containerPort": 8080}]),
            ),
            pod(
                "c",
                "10.0.0.3",
                true,
                json!([{"name": "http", "containerPort": 9090}]),
            ),
            // No "http" port: only in the admin subset.
            pod(
                "d",
                "10.0.0.4",
                true,
                json!([{"name": "other", "containerPort": 7070}]),
            ),
            // UDP port of that name does not match a TCP service port.
            pod(
                "e",
                "10.0.0.5",
                true,
                json!([{"name": "http", "containerPort": 6060, "protocol": "UDP"}]),
            ),
        ];
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(
            summary(&subsets),
            vec![
                "ready=[10.0.0.1] notReady=[10.0.0.2] ports=[http:8080]",
                "ready=[10.0.0.1,10.0.0.3,10.0.0.4,10.0.0.5] notReady=[10.0.0.2] ports=[admin:9000]",
                "ready=[10.0.0.3] notReady=[] ports=[http:9090]",
            ]
        );
        let first = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(first.node_name.as_deref(), Some("n1"));
        let target = first.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.name.as_deref(),
                target.uid.as_deref()
            ),
            (Some("Pod"), Some("a"), Some("uid-a"))
        );
        // Deterministic: the same pods in another order give the same subsets.
        let mut reversed = pods.clone();
        reversed.reverse();
        assert_eq!(desired_subsets(&svc, &reversed), subsets);
    }

    #[test]
    fn same_ports_share_one_subset() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"name": "a", "port": 80, "targetPort": 8080},
            {"name": "b", "port": 81, "targetPort": 8081},
        ]}));
        let pods = vec![
            pod("a", "10.0.0.1", true, json!([])),
            pod("b", "10.0.0.2", true, json!([])),
        ];
        assert_eq!(
            summary(&desired_subsets(&svc, &pods)),
            vec!["ready=[10.0.0.1,10.0.0.2] notReady=[] ports=[a:8080,b:8081]"]
        );
    }

    #[test]
    fn excluded_pods_and_publish_not_ready() {
        let ports = json!([{"port": 80}]);
        let mut terminating = (*pod("t", "10.0.0.3", true, json!([]))).clone();
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let mut finished = (*pod("f", "10.0.0.4", false, json!([]))).clone();
        finished.status.as_mut().unwrap().phase = Some("Succeeded".to_owned());
        let mut no_ip = (*pod("n", "", true, json!([]))).clone();
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let garbage_ip = pod("g", "not-an-ip", true, json!([]));
        let pods = vec![
            pod("a", "10.0.0.1", true, json!([])),
            pod("b", "10.0.0.2", false, json!([])),
            Arc::new(terminating),
            Arc::new(finished),
            Arc::new(no_ip),
            garbage_ip,
        ];
        let svc = service(json!({"selector": {"app": "web"}, "ports": ports}));
        assert_eq!(
            summary(&desired_subsets(&svc, &pods)),
            vec!["ready=[10.0.0.1] notReady=[10.0.0.2] ports=[:80]"]
        );
        let publish = service(json!({"selector": {"app": "web"}, "ports": ports,
                                     "publishNotReadyAddresses": true}));
        assert_eq!(
            summary(&desired_subsets(&publish, &pods)),
            vec!["ready=[10.0.0.1,10.0.0.2,10.0.0.3] notReady=[] ports=[:80]"]
        );
    }

    #[test]
    fn headless_without_ports_and_hostnames() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let mut named = (*pod("a", "10.0.0.1", true, json!([]))).clone();
        let spec = named.spec.as_mut().unwrap();
        spec.hostname = Some("a-host".to_owned());
        spec.subdomain = Some("web".to_owned());
        let subsets = desired_subsets(
            &svc,
            &[Arc::new(named), pod("b", "10.0.0.2", true, json!([]))],
        );
        assert_eq!(
            summary(&subsets),
            vec!["ready=[10.0.0.1,10.0.0.2] notReady=[] ports=[]"]
        );
        let addresses = subsets[0].addresses.as_ref().unwrap();
        assert_eq!(addresses[0].hostname.as_deref(), Some("a-host"));
        assert_eq!(addresses[1].hostname, None);
        assert!(desired_labels(&svc).contains_key(LABEL_HEADLESS));
        // Not headless, no ports: nothing.
        let plain = service(json!({"selector": {"app": "web"}}));
        assert!(desired_subsets(&plain, &[pod("b", "10.0.0.2", true, json!([]))]).is_empty());
        assert!(!desired_labels(&plain).contains_key(LABEL_HEADLESS));
        assert_eq!(desired_labels(&plain)[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(desired_labels(&plain)["tier"], "front");
    }

    #[test]
    fn pod_ips_and_families() {
        let mut p = (*pod("a", "10.0.0.1", true, json!([]))).clone();
        let status = p.status.as_mut().unwrap();
        status.pod_ips = Some(vec![
            k8s_openapi::api::core::v1::PodIP {
                ip: "10.0.0.1".to_owned(),
            },
            k8s_openapi::api::core::v1::PodIP {
                ip: "fd00::1".to_owned(),
            },
        ]);
        assert_eq!(pod_ips(&p), vec!["10.0.0.1", "fd00::1"]);
        let v6 = service(json!({"selector": {"app": "web"}, "ipFamilies": ["IPv6"]}));
        assert_eq!(address_for_service(&v6, &p).as_deref(), Some("fd00::1"));
        let v4 = service(json!({"selector": {"app": "web"}, "clusterIP": "10.43.0.5"}));
        assert_eq!(address_for_service(&v4, &p).as_deref(), Some("10.0.0.1"));
        // podIP is authoritative when it disagrees with podIPs.
        p.status.as_mut().unwrap().pod_ip = Some("10.0.0.9".to_owned());
        assert_eq!(pod_ips(&p), vec!["10.0.0.9"]);
        assert_eq!(address_for_service(&v6, &p), None);
    }

    #[test]
    fn selectors_that_are_not_managed() {
        assert!(managed_selector(&service(json!({"ports": [{"port": 80}]}))).is_none());
        assert!(managed_selector(&service(json!({"selector": {}}))).is_none());
        assert!(
            managed_selector(&service(
                json!({"type": "ExternalName", "externalName": "x.example", "selector": {"a": "b"}})
            ))
            .is_none()
        );
        assert!(managed_selector(&service(json!({"selector": {"a": "b"}}))).is_some());
    }

    #[test]
    fn truncation_keeps_ready_first() {
        let address = |i: usize| EndpointAddress {
            ip: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            ..EndpointAddress::default()
        };
        let list = |range: std::ops::Range<usize>| Some(range.map(address).collect::<Vec<_>>());
        let mut subsets = vec![
            EndpointSubset {
                addresses: list(0..600),
                not_ready_addresses: list(600..900),
                ports: None,
            },
            EndpointSubset {
                addresses: list(900..1200),
                not_ready_addresses: None,
                ports: None,
            },
        ];
        assert!(truncate(&mut subsets));
        let count = |s: &EndpointSubset| {
            (
                s.addresses.as_ref().map_or(0, Vec::len),
                s.not_ready_addresses.as_ref().map_or(0, Vec::len),
            )
        };
        // 900 ready fit; the 100 left go to the not-ready ones.
        assert_eq!(count(&subsets[0]), (600, 100));
        assert_eq!(count(&subsets[1]), (300, 0));
        let mut small = vec![EndpointSubset {
            addresses: list(0..10),
            ..EndpointSubset::default()
        }];
        assert!(!truncate(&mut small));
        let mut too_many_ready = vec![
            EndpointSubset {
                addresses: list(0..1500),
                not_ready_addresses: list(1500..1600),
                ports: None,
            },
            EndpointSubset {
                addresses: list(1600..2100),
                not_ready_addresses: None,
                ports: None,
            },
        ];
        assert!(truncate(&mut too_many_ready));
        assert_eq!(count(&too_many_ready[0]), (750, 0));
        assert_eq!(count(&too_many_ready[1]), (250, 0));
    }

    #[test]
    fn stored_form_compares_equal() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}),
        );
        let pods = vec![pod("a", "10.0.0.1", true, json!([]))];
        let desired = desired_endpoints(&svc, None, desired_subsets(&svc, &pods));
        // What the API hands back: defaults filled in, empty lists dropped.
        let mut stored: Endpoints =
            serde_json::from_value(serde_json::to_value(&desired).unwrap()).unwrap();
        for subset in stored.subsets.iter_mut().flatten() {
            subset.not_ready_addresses = Some(Vec::new());
            for port in subset.ports.iter_mut().flatten() {
                port.protocol = Some("TCP".to_owned());
            }
        }
        stored.metadata.resource_version = Some("7".to_owned());
        assert!(unchanged(
            &stored,
            &desired_endpoints(&svc, Some(&stored), desired_subsets(&svc, &pods))
        ));
        let moved = vec![pod("a", "10.0.0.2", true, json!([]))];
        assert!(!unchanged(
            &stored,
            &desired_endpoints(&svc, Some(&stored), desired_subsets(&svc, &moved))
        ));
    }

    #[test]
    fn retries_back_off_and_reset() {
        let retries = Retries::default();
        assert_eq!(retries.failed("a"), Duration::from_millis(5));
        assert_eq!(retries.failed("a"), Duration::from_millis(10));
        assert_eq!(retries.failed("a"), Duration::from_millis(20));
        for _ in 0..100 {
            retries.failed("a");
        }
        assert_eq!(retries.failed("a"), Duration::from_secs(60));
        retries.succeeded("a");
        assert_eq!(retries.failed("a"), Duration::from_millis(5));
    }
}

//! The EndpointSlice controller (kube-controller-manager's `endpointslice-controller`): for
//! every Service with a selector it keeps EndpointSlices (discovery.k8s.io/v1) listing the
//! pods the Service routes to, at most [`MAX_ENDPOINTS_PER_SLICE`] per slice.
//!
//! A slice is named `<service>-<random>`, labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` (plus the
//! Service's own labels, and `service.kubernetes.io/headless` for `clusterIP: None`), and
//! owned by the Service (controller, blockOwnerDeletion). Each selected pod with an IP that
//! has not finished is one endpoint: its addresses of the slice's family, conditions
//! `ready` (ready and not being deleted, or always under `publishNotReadyAddresses`),
//! `serving` (ready) and `terminating` (being deleted), node, hostname and `targetRef`.
//! Endpoints are grouped by address type (the Service's `ipFamilies`; without them IPv4,
//! plus IPv6 while a pod has an IPv6 address) and by resolved port set — `targetPort` by
//! number or by container port name per pod, a pod lacking a named port going to a slice
//! without that port.
//!
//! Reconciling follows upstream's reconciler so slices are reused, not churned: endpoints
//! stay in the slice they are in and are rewritten only when they change; new ones fill
//! slices being written anyway, then the fullest unchanged slice they fit in, then new
//! slices; emptied slices are deleted (or reused for what would otherwise be created); a
//! Service without endpoints keeps one empty placeholder slice per address type. Nothing
//! is written when nothing changed.
//!
//! Upstream leaves the slices of a deleted Service to the garbage collector (they are owned
//! by it); this controller deletes them itself as well, so they go even when the garbage
//! collector is not running. It never writes Pods or Services, never touches slices managed
//! by others (no managed-by label of ours), and leaves existing slices alone when a Service
//! loses its selector, as upstream. Triggers and shared helpers come from
//! [`super::endpoints`]. Not done (yet): topology hints, `zone` (from Nodes) and the
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;

use super::endpoints::{
    LABEL_HEADLESS, ServiceState, api_message, find_port, hostname_for, is_headless, is_ipv6,
    is_namespace_terminating, key_of, managed_selector, node_name, pod_ips, pod_reference,
    protocol_of, revision, run_for_services, should_be_in_endpoints,
};
use super::events::{EventType, reference};
use super::util::{controller_reference, is_ready, is_terminating};
use super::{ApiError, Context, api_error};

/// The label naming a slice's Service (upstream `discovery.LabelServiceName`).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming a slice's manager (upstream `discovery.LabelManagedBy`).
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`LABEL_MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// At most this many endpoints go into one slice (kube-controller-manager's
/// `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

const IPV4: &str = "IPv4";
const IPV6: &str = "IPv6";

/// Errors a reconcile returns (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a request.
    #[error(transparent)]
    Api(#[from] ApiError),
}

type State = ServiceState<EndpointSlice>;

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    // As the endpoints controller, with upstream's event source for this one.
    run_for_services(
        ctx,
        shutdown,
        "endpoint-slice-controller",
        managed_service,
        |svc, state| crate::metrics::timed_reconcile("endpointslice", reconcile(svc, state)),
        error_policy,
        |state: Arc<State>, namespace: String, name: String| async move {
            remove_orphans(&state, &namespace, &name).await;
        },
    )
    .await;
}

/// The Service a slice belongs to, if this controller manages it.
fn managed_service(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    labels.get(LABEL_SERVICE_NAME).cloned()
}

fn error_policy(svc: Arc<Service>, error: &Error, state: Arc<State>) -> Action {
    tracing::debug!(service = %svc.name_any(), %error, "endpointslice reconcile failed");
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
    let existing = slices_of(
        &state,
        &svc.namespace().unwrap_or_default(),
        &svc.name_any(),
    );
    let plan = plan(&svc, &pods, &existing);
    apply(&state, &svc, plan).await?;
    state.retries.succeeded(&key_of(&*svc));
    Ok(Action::await_change())
}

/// The slices this controller keeps for the Service `namespace/name`, by name.
fn slices_of(state: &State, namespace: &str, name: &str) -> Vec<Arc<EndpointSlice>> {
    let mut slices: Vec<Arc<EndpointSlice>> = state
        .router
        .managed
        .state()
        .into_iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && managed_service(s).as_deref() == Some(name)
        })
        .collect();
    slices.sort_by_key(|s| s.name_any());
    slices
}

/// Perform a plan. Creates are skipped for a Service being deleted (the garbage collector
/// would race them). Waits until the watch shows the result, so the next reconcile sees it.
async fn apply(state: &State, svc: &Service, plan: Plan) -> Result<(), Error> {
    if plan.is_empty() {
        return Ok(());
    }
    let namespace = svc.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(state.ctx.client.clone(), &namespace);
    let mut written = 0;
    let mut deleted = Vec::new();
    let result: Result<(), Error> = async {
        if svc.metadata.deletion_timestamp.is_none() {
            for slice in &plan.create {
                match api.create(&PostParams::default(), slice).await {
                    Ok(created) => written = written.max(revision(&created)),
                    Err(e) if is_namespace_terminating(&e) => return Ok(()),
                    Err(e) => return Err(api_error("creating an EndpointSlice")(e).into()),
                }
            }
        }
        for slice in &plan.update {
            let name = slice.name_any();
            let updated = api
                .replace(&name, &PostParams::default(), slice)
                .await
                .map_err(api_error(format!("updating EndpointSlice {name}")))?;
            written = written.max(revision(&updated));
        }
        for slice in &plan.delete {
            let name = slice.name_any();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted.push(ObjectRef::new(&name).within(&namespace)),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_error(format!("deleting EndpointSlice {name}"))(e).into()),
            }
        }
        Ok(())
    }
    .await;
    state.router.wait_for_cache(written, &deleted).await;
    if let Err(Error::Api(ApiError { source, .. })) = &result {
        // A conflict means the cache was behind someone else's write: retried at once with
        // a fresher view, not a failure worth an event.
        let conflict = matches!(source, kube::Error::Api(s) if s.code == 409);
        if !conflict {
            let message = format!(
                "Error updating Endpoint Slices for Service {namespace}/{}: {}",
                svc.name_any(),
                api_message(source)
            );
            state
                .recorder
                .publish(
                    &reference(svc),
                    EventType::Warning,
                    "FailedToUpdateEndpointSlices",
                    &message,
                )
                .await;
        }
    }
    result
}

/// Delete the slices of a Service that no longer exists (asking the API first, as the
/// Service store may still be filling up).
async fn remove_orphans(state: &State, namespace: &str, name: &str) {
    let slices = slices_of(state, namespace, name);
    if slices.is_empty()
        || state
            .router
            .services
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    {
        return;
    }
    let client = state.ctx.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    match services.get_opt(name).await {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(error) => {
            tracing::debug!(%error, namespace, name, "checking a service before deleting its slices");
            return;
        }
    }
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    for slice in slices {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&slice.name_any(), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(error) => {
                tracing::warn!(%error, namespace, name, "deleting a slice of a deleted service")
            }
        }
    }
}

/// The writes that bring a Service's slices to what its pods call for.
#[derive(Debug, Default)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<EndpointSlice>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    fn extend(&mut self, other: Plan) {
        self.create.extend(other.create);
        self.update.extend(other.update);
        self.delete.extend(other.delete);
    }
}

/// What a Service's slices should become, given its pods and the slices it has (upstream's
/// Reconciler.Reconcile).
fn plan(svc: &Service, pods: &[Arc<Pod>], existing: &[Arc<EndpointSlice>]) -> Plan {
    let included: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| should_be_in_endpoints(p, true))
        .collect();
    let types = address_types(svc, &included);
    let labels = slice_labels(svc);
    let mut plan = Plan::default();
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        match types.get(slice.address_type.as_str()) {
            Some(address_type) => by_type.entry(address_type).or_default().push(slice),
            // An address type the Service no longer has.
            None => plan.delete.push(slice.as_ref().clone()),
        }
    }
    for address_type in &types {
        let existing = by_type.remove(address_type).unwrap_or_default();
        plan.extend(plan_for_type(
            svc,
            &included,
            &existing,
            address_type,
            &labels,
        ));
    }
    reuse_deleted(svc, &mut plan);
    plan
}

/// The address types a Service's slices carry: its `ipFamilies`, else the family of its
/// cluster IP. Without either (headless or no cluster IP yet) upstream keeps slices of both
/// families; here IPv6 is added only while a pod has an IPv6 address, so single-stack
/// clusters do not get an empty IPv6 placeholder for every Service.
fn address_types(svc: &Service, pods: &[&Pod]) -> BTreeSet<&'static str> {
    let spec = svc.spec.as_ref();
    let families: BTreeSet<&'static str> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(IPV4),
            "IPv6" => Some(IPV6),
            _ => None,
        })
        .collect();
    if !families.is_empty() {
        return families;
    }
    if let Some(ip) = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
    {
        return BTreeSet::from([if is_ipv6(ip) { IPV6 } else { IPV4 }]);
    }
    let mut types = BTreeSet::from([IPV4]);
    if pods.iter().any(|p| pod_ips(p).iter().any(|ip| is_ipv6(ip))) {
        types.insert(IPV6);
    }
    types
}

/// A slice's ports as a comparable key (order and defaulting aside).
type PortsKey = Vec<(String, String, i32, Option<String>)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                protocol_of(p.protocol.as_deref()),
                p.port.unwrap_or_default(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// What makes an endpoint "the same" one across reconciles (upstream's endpoint hash): the
/// pod, its addresses and its hostname. Anything else changing is an update in place.
type EndpointKey = (String, String, Vec<String>, Option<String>);

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let target = endpoint.target_ref.as_ref();
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    (
        target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        target.and_then(|t| t.name.clone()).unwrap_or_default(),
        addresses,
        endpoint.hostname.clone(),
    )
}

/// The slices of one address type (upstream's reconcileByAddressType).
fn plan_for_type(
    svc: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    address_type: &str,
    labels: &BTreeMap<String, String>,
) -> Plan {
    let mut plan = Plan::default();
    let mut existing_by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, svc) {
            existing_by_ports
                .entry(ports_key(slice.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(slice);
        } else {
            // Left by an earlier Service of the same name.
            plan.delete.push((*slice).clone());
        }
    }
    let mut desired: BTreeMap<PortsKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for pod in pods {
        let endpoint = pod_to_endpoint(pod, svc, address_type);
        if endpoint.addresses.is_empty() {
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        desired
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, BTreeMap::new()))
            .1
            .insert(endpoint_key(&endpoint), endpoint);
    }
    for (key, (ports, endpoints)) in desired {
        let slices = existing_by_ports.remove(&key).unwrap_or_default();
        plan.extend(plan_for_ports(
            svc,
            &slices,
            endpoints,
            &ports,
            address_type,
            labels,
        ));
    }
    // Port sets no endpoint has any more.
    for slices in existing_by_ports.into_values() {
        plan.delete.extend(slices.into_iter().cloned());
    }
    // A Service with no endpoints keeps one empty slice, so readers can tell "no endpoints"
    // from "not handled".
    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(svc, address_type, Vec::new(), labels);
        match plan.delete.as_slice() {
            [only] if is_placeholder(only, svc, &placeholder) => plan.delete.clear(),
            _ => plan.create.push(placeholder),
        }
    }
    plan
}

/// The slices of one port set (upstream's reconcileByPortMapping): keep endpoints where
/// they are, update the ones that changed, drop the ones no longer wanted, and place the
/// new ones — into slices being written anyway (fullest first), else into the unchanged
/// slice they fill best, else into new slices.
fn plan_for_ports(
    svc: &Service,
    existing: &[&EndpointSlice],
    mut desired: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    address_type: &str,
    labels: &BTreeMap<String, String>,
) -> Plan {
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    let mut to_update: BTreeSet<String> = BTreeSet::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();
    for slice in existing {
        let name = slice.name_any();
        let mut kept = Vec::new();
        let mut changed = false;
        for endpoint in &slice.endpoints {
            // Taken out of `desired`: an endpoint listed twice stays in the first slice only.
            if let Some(wanted) = desired.remove(&endpoint_key(endpoint)) {
                changed |= wanted != *endpoint;
                kept.push(wanted);
            }
        }
        let labels_changed = slice.metadata.labels.as_ref() != Some(labels);
        let mut slice = (*slice).clone();
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
            } else {
                slice.endpoints = kept;
                slice.metadata.labels = Some(labels.clone());
                to_update.insert(name.clone());
            }
        } else if labels_changed {
            slice.metadata.labels = Some(labels.clone());
            to_update.insert(name.clone());
        } else {
            unchanged.insert(name.clone());
        }
        by_name.insert(name, slice);
    }

    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<&String> = to_update.iter().collect();
        names.sort_by_cached_key(|n| {
            std::cmp::Reverse(by_name.get(*n).map_or(0, |s| s.endpoints.len()))
        });
        for name in names {
            if let Some(slice) = by_name.get_mut(name) {
                fill(slice, &mut desired);
            }
        }
    }

    let mut create = Vec::new();
    while !desired.is_empty() {
        let target = if desired.len() < MAX_ENDPOINTS_PER_SLICE {
            slice_to_fill(&unchanged, &by_name, desired.len())
        } else {
            None
        };
        match target {
            Some(name) => {
                if let Some(slice) = by_name.get_mut(&name) {
                    fill(slice, &mut desired);
                }
                unchanged.remove(&name);
                to_update.insert(name);
            }
            None => {
                let mut slice = new_slice(svc, address_type, ports.to_vec(), labels);
                fill(&mut slice, &mut desired);
                create.push(slice);
            }
        }
    }

    Plan {
        create,
        update: to_update.iter().filter_map(|n| by_name.remove(n)).collect(),
        delete: to_delete.iter().filter_map(|n| by_name.remove(n)).collect(),
    }
}

/// Move endpoints from `desired` into the slice until it is full.
fn fill(slice: &mut EndpointSlice, desired: &mut BTreeMap<EndpointKey, Endpoint>) {
    while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
        let Some((_, endpoint)) = desired.pop_first() else {
            break;
        };
        slice.endpoints.push(endpoint);
    }
}

/// The unchanged slice that `count` more endpoints fill most closely without overflowing.
fn slice_to_fill(
    unchanged: &BTreeSet<String>,
    by_name: &BTreeMap<String, EndpointSlice>,
    count: usize,
) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for name in unchanged {
        let Some(slice) = by_name.get(name) else {
            continue;
        };
        let Some(room_left) = MAX_ENDPOINTS_PER_SLICE.checked_sub(slice.endpoints.len() + count)
        else {
            continue;
        };
        if best.is_none_or(|(least, _)| room_left < least) {
            best = Some((room_left, name));
            if room_left == 0 {
                break;
            }
        }
    }
    best.map(|(_, name)| name.clone())
}

/// Turn creates into updates of slices that would be deleted (same address type, owned by
/// this Service): fewer writes, and names stay stable (upstream's finalize).
fn reuse_deleted(svc: &Service, plan: &mut Plan) {
    let mut i = 0;
    while let (Some(old), Some(new)) = (plan.delete.get(i), plan.create.last()) {
        if old.address_type != new.address_type || !owned_by(old, svc) {
            i += 1;
            continue;
        }
        let old = plan.delete.remove(i);
        if let Some(mut replacement) = plan.create.pop() {
            replacement.metadata = ObjectMeta {
                labels: replacement.metadata.labels,
                owner_references: replacement.metadata.owner_references,
                ..old.metadata
            };
            plan.update.push(replacement);
        }
    }
}

/// Whether an existing slice already is the placeholder wanted.
fn is_placeholder(slice: &EndpointSlice, svc: &Service, placeholder: &EndpointSlice) -> bool {
    owned_by(slice, svc)
        && slice.endpoints.is_empty()
        && slice.ports.as_deref().unwrap_or_default().is_empty()
        && slice.address_type == placeholder.address_type
        && slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels == placeholder.metadata.labels
}

/// Whether the slice names this Service (this very one, by uid) as an owner.
fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    let uid = svc.uid().unwrap_or_default();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// A new, empty slice for the Service.
fn new_slice(
    svc: &Service,
    address_type: &str,
    ports: Vec<EndpointPort>,
    labels: &BTreeMap<String, String>,
) -> EndpointSlice {
    let name = svc.name_any();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![controller_reference(
                "v1",
                "Service",
                &name,
                &svc.uid().unwrap_or_default(),
            )]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_owned(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// The Service's labels without the ones the controller reserves, plus those (upstream's
/// setEndpointSliceLabels).
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .labels()
        .iter()
        .filter(|(k, _)| {
            ![LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(svc) {
        labels.insert(LABEL_HEADLESS.to_owned(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.to_owned(), svc.name_any());
    labels.insert(LABEL_MANAGED_BY.to_owned(), CONTROLLER_NAME.to_owned());
    labels
}

/// The pod's endpoint in a slice of `address_type` (no addresses when it has none of that
/// family).
fn pod_to_endpoint(pod: &Pod, svc: &Service, address_type: &str) -> Endpoint {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = is_ready(pod);
    let terminating = is_terminating(pod);
    let want_ipv6 = address_type == IPV6;
    Endpoint {
        addresses: pod_ips(pod)
            .into_iter()
            .filter(|ip| is_ipv6(ip) == want_ipv6)
            .collect(),
        conditions: Some(EndpointConditions {
            // A terminating pod is never "ready" unless the Service publishes everything.
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname_for(pod, svc),
        node_name: node_name(pod),
        target_ref: Some(pod_reference(pod)),
        ..Endpoint::default()
    }
}

/// The Service's ports as this pod offers them; a named target port the pod lacks is left
/// out (upstream's getEndpointPorts).
fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|port| {
            let number = find_port(pod, port)?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(protocol_of(port.protocol.as_deref())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                         "labels": {"tier": "front", "endpointslice.kubernetes.io/managed-by": "someone-else"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, ports: Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": ports}]},
                "status": {"phase": "Running", "podIP": ip,
                           "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
            }))
            .unwrap(),
        )
    }

    fn many(count: usize) -> Vec<Arc<Pod>> {
        (0..count)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.0.{}.{}", i / 256, i % 256),
                    true,
                    json!([]),
                )
            })
            .collect()
    }

    /// Pretend the plan was carried out: creates get names, and everything is stored.
    fn stored(plan: &Plan, previous: &[Arc<EndpointSlice>]) -> Vec<Arc<EndpointSlice>> {
        let mut by_name: BTreeMap<String, EndpointSlice> = previous
            .iter()
            .map(|s| (s.name_any(), s.as_ref().clone()))
            .collect();
        for slice in &plan.delete {
            by_name.remove(&slice.name_any());
        }
        for slice in &plan.update {
            by_name.insert(slice.name_any(), slice.clone());
        }
        for (i, slice) in plan.create.iter().enumerate() {
            let mut slice = slice.clone();
            let name = format!("web-{}{i}", by_name.len());
            slice.metadata.name = Some(name.clone());
            by_name.insert(name, slice);
        }
        by_name.into_values().map(Arc::new).collect()
    }

    fn sizes(slices: &[Arc<EndpointSlice>]) -> Vec<usize> {
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        sizes
    }

    #[test]
    fn a_service_without_pods_gets_one_placeholder() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let first = plan(&svc, &[], &[]);
        assert_eq!(
            (first.create.len(), first.update.len(), first.delete.len()),
            (1, 0, 0)
        );
        let placeholder = &first.create[0];
        assert_eq!(placeholder.address_type, "IPv4");
        assert!(placeholder.endpoints.is_empty());
        assert_eq!(placeholder.metadata.generate_name.as_deref(), Some("web-"));
        let labels = placeholder.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(labels["tier"], "front");
        let owner = &placeholder.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.uid.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("Service", "svc-uid", Some(true), Some(true))
        );
        let slices = stored(&first, &[]);
        assert!(
            plan(&svc, &[], &slices).is_empty(),
            "the placeholder is kept"
        );
        // Pods arrive: the placeholder is reused rather than deleted and recreated.
        let pods = many(3);
        let next = plan(&svc, &pods, &slices);
        assert_eq!(
            (next.create.len(), next.update.len(), next.delete.len()),
            (0, 1, 0)
        );
        assert_eq!(next.update[0].name_any(), slices[0].name_any());
        assert_eq!(next.update[0].endpoints.len(), 3);
        let after = stored(&next, &slices);
        assert!(plan(&svc, &pods, &after).is_empty());
    }

    #[test]
    fn many_pods_split_and_stay_put() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods = many(250);
        let slices = stored(&plan(&svc, &pods, &[]), &[]);
        assert_eq!(sizes(&slices), vec![50, 100, 100]);
        assert!(plan(&svc, &pods, &slices).is_empty(), "no churn");
        // One pod changes readiness: only its slice is written.
        let mut changed = pods.clone();
        let mut flipped = (*changed[7]).clone();
        flipped
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".to_owned();
        changed[7] = Arc::new(flipped);
        let next = plan(&svc, &changed, &slices);
        assert_eq!(
            (next.create.len(), next.update.len(), next.delete.len()),
            (0, 1, 0)
        );
        // Ten pods go: their slice shrinks, nothing moves elsewhere.
        let fewer: Vec<Arc<Pod>> = pods[10..].to_vec();
        let next = plan(&svc, &fewer, &slices);
        assert_eq!(
            (next.create.len(), next.update.len(), next.delete.len()),
            (0, 1, 0)
        );
        let after = stored(&next, &slices);
        assert_eq!(sizes(&after), vec![50, 90, 100]);
        // Five new pods fill a slice already being written, or the closest fit.
        let more: Vec<Arc<Pod>> = fewer
            .iter()
            .cloned()
            .chain(many(255).into_iter().skip(250))
            .collect();
        let next = plan(&svc, &more, &after);
        assert!(next.create.is_empty());
        assert_eq!(next.update.len(), 1);
        assert_eq!(sizes(&stored(&next, &after)), vec![50, 95, 100]);
    }

    #[test]
    fn ports_group_slices_and_missing_named_ports() {
        let svc = service(json!({"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}));
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
                true,
                json!([{"name": "http", "containerPort": 9090}]),
            ),
            pod(
                "c",
                "10.0.0.3",
                true,
                json!([{"name": "other", "containerPort": 7070}]),
            ),
        ];
        let first = plan(&svc, &pods, &[]);
        let mut groups: Vec<(Vec<i32>, Vec<String>)> = first
            .create
            .iter()
            .map(|s| {
                (
                    s.ports.iter().flatten().filter_map(|p| p.port).collect(),
                    s.endpoints
                        .iter()
                        .flat_map(|e| e.addresses.clone())
                        .collect(),
                )
            })
            .collect();
        groups.sort();
        assert_eq!(
            groups,
            vec![
                (vec![], vec!["10.0.0.3".to_owned()]),
                (vec![8080], vec!["10.0.0.1".to_owned()]),
                (vec![9090], vec!["10.0.0.2".to_owned()]),
            ]
        );
        let slices = stored(&first, &[]);
        assert!(plan(&svc, &pods, &slices).is_empty());
        // Pod b goes: its slice is deleted (not left empty).
        let next = plan(&svc, &[pods[0].clone(), pods[2].clone()], &slices);
        assert_eq!(
            (next.create.len(), next.update.len(), next.delete.len()),
            (0, 0, 1)
        );
    }

    #[test]
    fn conditions_and_families() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let mut terminating = (*pod("t", "10.0.0.3", true, json!([]))).clone();
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let endpoint = pod_to_endpoint(&terminating, &svc, IPV4);
        assert_eq!(
            endpoint.conditions,
            Some(EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(true)
            })
        );
        let publish =
            service(json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true}));
        let not_ready = pod("n", "10.0.0.4", false, json!([]));
        let endpoint = pod_to_endpoint(&not_ready, &publish, IPV4);
        assert_eq!(endpoint.conditions.unwrap().ready, Some(true));

        let v6 = pod("six", "fd00::6", true, json!([]));
        let pods = vec![pod("a", "10.0.0.1", true, json!([])), v6];
        let first = plan(&svc, &pods, &[]);
        let mut types: Vec<(String, Vec<String>)> = first
            .create
            .iter()
            .map(|s| {
                (
                    s.address_type.clone(),
                    s.endpoints
                        .iter()
                        .flat_map(|e| e.addresses.clone())
                        .collect(),
                )
            })
            .collect();
        types.sort();
        assert_eq!(
            types,
            vec![
                ("IPv4".to_owned(), vec!["10.0.0.1".to_owned()]),
                ("IPv6".to_owned(), vec!["fd00::6".to_owned()]),
            ]
        );
        // The IPv6 pod goes: so does the IPv6 slice.
        let slices = stored(&first, &[]);
        let next = plan(&svc, &pods[..1], &slices);
        assert_eq!(next.delete.len(), 1);
        assert_eq!(next.delete[0].address_type, "IPv6");
        assert!(next.create.is_empty() && next.update.is_empty());
    }

    #[test]
    fn slices_of_an_earlier_service_are_replaced() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods = many(2);
        let slices = stored(&plan(&svc, &pods, &[]), &[]);
        let mut recreated = svc.clone();
        recreated.metadata.uid = Some("new-uid".to_owned());
        let next = plan(&recreated, &pods, &slices);
        assert_eq!(
            (next.create.len(), next.update.len(), next.delete.len()),
            (1, 0, 1)
        );
        assert_eq!(
            next.create[0].metadata.owner_references.as_ref().unwrap()[0].uid,
            "new-uid"
        );
    }
}

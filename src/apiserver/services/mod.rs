//! Service allocation: cluster IPs from the service CIDR and node ports from the node-port
//! range, as kube-apiserver's Service registry hands them out, plus the Services every
//! cluster starts with (`default/kubernetes` with its Endpoints and EndpointSlice, and
//! `kube-system/kube-dns`).
//!
//! The write path ([`super::writes`]) calls in at three points, for Services only:
//! `prepare_create`/`prepare_update` before admission (upstream's strategy: clusterIPs
//! mirrors clusterIP, an update that leaves out allocated values keeps them, a type change
//! drops what no longer applies); `ServiceAllocator::allocate` after admission, which
//! reserves what the new object needs and returns an `Allocation` to commit once the
//! object is stored (releasing what the old version held and the new one does not) or to
//! revert when the write fails; and `ServiceAllocator::release_all` when a Service is
//! really removed from the store (not when it is only marked for deletion). Create, update,
//! every patch type and server-side apply all end in those two writes, so they all allocate
//! the same way; `dryRun=All` checks every request against the reservations but reserves
//! nothing.
//!
//! Reservations are store keys (`reservations`), so they survive restarts and hold
//! across several API servers on one etcd. The order is: reserve, then write the Service,
//! then release what it no longer holds — so a crash can only leak a reservation, never
//! let two Services share one. [`repair`] finds leaks (a reservation older than a grace
//! period whose Service is gone or no longer holds it) and Services holding an IP or port
//! without a reservation; the server runs it at start and every few minutes.
//!
//! What the ranges are and how dynamic allocation scans them is [`range`]; this module
//! must not touch the HTTP layer nor any other kind's objects (bootstrap aside).

pub mod bootstrap;
pub mod range;
pub mod repair;
mod reservations;
mod spec;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value, json};

use super::error::ApiError;
use crate::api::validation::FieldError;
use crate::store::{Store, StoreError};
pub use range::{
    DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, NodePortRange, RangeError, ServiceCidr,
};
pub use repair::RepairReport;
use reservations::{Item, Kind, Owner, Reserve};

/// The cluster DNS address of a service CIDR: its 10th address (10.43.0.10 for
/// 10.43.0.0/16), which the `kube-system/kube-dns` Service holds and every pod's
/// resolv.conf names.
pub fn cluster_dns_ip(cidr: &ServiceCidr) -> Ipv4Addr {
    // Every accepted CIDR has at least 14 usable addresses.
    Ipv4Addr::from(u32::from(cidr.network()) + 10)
}

/// The `default/kubernetes` Service's address: the first usable address of the range
/// (10.43.0.1 for 10.43.0.0/16).
pub fn kubernetes_service_ip(cidr: &ServiceCidr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

/// How this server allocates, and where it says it can be reached.
#[derive(Clone, Debug, Default)]
pub(super) struct Config {
    pub cidr: ServiceCidr,
    pub node_ports: NodePortRange,
    /// Where clients reach this API server (the `kubernetes` Endpoints); `None`: unknown,
    /// so no endpoints are published.
    pub advertise: Option<SocketAddr>,
}

/// Hands out cluster IPs and node ports, backed by reservations in the store.
pub(crate) struct ServiceAllocator {
    store: Arc<dyn Store>,
    config: RwLock<Config>,
    /// Items believed to be reserved: a hint that spares dynamic allocation most failed
    /// creates. It may be stale in both directions (other servers reserve and release too);
    /// the store's put-if-absent is what decides. A std Mutex: it is never held across an
    /// await.
    taken: Mutex<HashSet<Item>>,
}

/// Why an allocation was refused.
#[derive(Debug)]
enum Refusal {
    /// A field the client set cannot be honoured (422).
    Invalid(Box<FieldError>),
    /// Nothing is left to hand out dynamically.
    Full(Kind),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

impl Refusal {
    fn invalid(error: FieldError) -> Self {
        Refusal::Invalid(Box::new(error))
    }

    fn into_api_error(self, name: &str) -> ApiError {
        match self {
            Refusal::Invalid(error) => ApiError::invalid("Service", name, "", &[*error]),
            // Upstream answers these with an internal error too: the request is valid.
            Refusal::Full(Kind::Ip) => {
                ApiError::internal("failed to allocate a serviceIP: range is full")
            }
            Refusal::Full(Kind::Port) => {
                ApiError::internal("failed to allocate a nodePort: range is full")
            }
            Refusal::Store(e) => e.into(),
        }
    }
}

/// What one write reserved, and what it frees once stored. Call [`commit`](Self::commit)
/// after the Service is written and [`revert`](Self::revert) when the write fails.
#[must_use = "an allocation must be committed or reverted"]
#[derive(Debug, Default)]
pub(crate) struct Allocation {
    uid: String,
    /// Reserved by this write: released by `revert`.
    reserved: Vec<Item>,
    /// Everything this write takes, reserved now or (dry run) only planned: dynamic
    /// allocation skips these.
    claimed: Vec<Item>,
    /// Held by the old version only: released by `commit`.
    release: Vec<Item>,
}

impl Allocation {
    /// The write landed: free what the old version held and the new one does not. A
    /// failure here only leaks a reservation, which the repair pass frees later.
    pub async fn commit(self, allocator: &ServiceAllocator) {
        allocator.release_items(&self.release, &self.uid).await;
    }

    /// The write failed: give back what this write reserved.
    pub async fn revert(self, allocator: &ServiceAllocator) {
        allocator.release_items(&self.reserved, &self.uid).await;
    }
}

/// Before admission of a new Service: clusterIPs mirrors a clusterIP set alone.
pub(crate) fn prepare_create(svc: &mut Value) {
    spec::prepare_create(svc);
}

/// Before admission of a Service update: values the client left out (clusterIP, a port's
/// nodePort) are kept from `old`, and fields the new type has no use for are dropped when
/// the client left them unchanged.
pub(crate) fn prepare_update(old: &Value, new: &mut Value) {
    spec::prepare_update(old, new);
}

fn owner_of(svc: &Value) -> Owner {
    let field = |f: &str| {
        svc.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Owner {
        namespace: field("namespace"),
        name: field("name"),
        uid: field("uid"),
    }
}

impl ServiceAllocator {
    /// An allocator over `store` with the default ranges.
    pub(super) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            config: RwLock::new(Config::default()),
            taken: Mutex::new(HashSet::new()),
        }
    }

    pub(super) fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(super) fn configure(&self, change: impl FnOnce(&mut Config)) {
        let mut config = self
            .config
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut config);
    }

    fn hinted(&self, item: Item) -> bool {
        self.taken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&item)
    }

    fn hint(&self, item: Item, taken: bool) {
        let mut set = self
            .taken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if taken {
            set.insert(item);
        } else {
            set.remove(&item);
        }
    }

    /// Replace the hint of `kind` with what the store holds now.
    async fn refresh_hints(&self, kind: Kind) -> Result<(), StoreError> {
        let found = reservations::list(&*self.store, kind).await?;
        let mut set = self
            .taken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        set.retain(|item| item.kind() != kind);
        set.extend(found.into_iter().map(|f| f.item));
        Ok(())
    }

    /// Load every reservation into the hint (at start).
    pub(super) async fn load(&self) -> Result<(), StoreError> {
        self.refresh_hints(Kind::Ip).await?;
        self.refresh_hints(Kind::Port).await
    }

    /// Reserve what `new` needs (a cluster IP, node ports) that `old` (the stored version,
    /// for an update) does not already hold, filling in what was allocated dynamically.
    /// Also sets `ipFamilies` and `ipFamilyPolicy`. With `dry_run` the same checks run but
    /// nothing is reserved. Refusals are 422 Invalid naming the field, as upstream words them.
    pub async fn allocate(
        &self,
        old: Option<&Value>,
        new: &mut Value,
        dry_run: bool,
    ) -> Result<Allocation, ApiError> {
        let owner = owner_of(new);
        let mut txn = Allocation {
            uid: owner.uid.clone(),
            ..Allocation::default()
        };
        match self
            .allocate_into(&mut txn, &owner, old, new, dry_run)
            .await
        {
            Ok(()) => Ok(txn),
            Err(refusal) => {
                txn.revert(self).await;
                Err(refusal.into_api_error(&owner.name))
            }
        }
    }

    async fn allocate_into(
        &self,
        txn: &mut Allocation,
        owner: &Owner,
        old: Option<&Value>,
        new: &mut Value,
        dry_run: bool,
    ) -> Result<(), Refusal> {
        let config = self.config();
        let old_ip = old.and_then(spec::held_ip);
        if spec::needs_cluster_ip(new) {
            init_ip_families(old, new)?;
            let ip = spec::cluster_ip(new).to_owned();
            if ip == spec::NONE {
                // Headless: nothing to hand out.
            } else if ip.is_empty() {
                let ip = self.next_ip(&config, owner, dry_run, txn).await?;
                spec::set_cluster_ip(new, &ip.to_string());
            } else if old_ip.is_some_and(|old| old.to_string() == ip) {
                // Kept from the stored version (validation keeps it from changing).
            } else {
                self.static_ip(&config, &ip, owner, dry_run, txn).await?;
            }
        }
        if let Some(old_ip) = old_ip
            && spec::held_ip(new) != Some(old_ip)
        {
            txn.release.push(Item::Ip(old_ip));
        }
        let old_ports = old.map(spec::held_node_ports).unwrap_or_default();
        if spec::needs_node_ports(new) {
            self.node_ports(&config, owner, &old_ports, new, dry_run, txn)
                .await?;
        }
        let new_ports = spec::held_node_ports(new);
        txn.release.extend(
            old_ports
                .into_iter()
                .filter(|p| !new_ports.contains(p))
                .map(Item::Port),
        );
        Ok(())
    }

    /// A clusterIP the client asked for.
    async fn static_ip(
        &self,
        config: &Config,
        ip: &str,
        owner: &Owner,
        dry_run: bool,
        txn: &mut Allocation,
    ) -> Result<(), Refusal> {
        let parsed = ip
            .parse::<Ipv4Addr>()
            .ok()
            .filter(|a| config.cidr.index_of(*a).is_some());
        let Some(parsed) = parsed else {
            return Err(Refusal::invalid(FieldError::invalid(
                "spec.clusterIPs[0]",
                ip,
                format!(
                    "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                    config.cidr
                ),
            )));
        };
        let item = Item::Ip(parsed);
        let taken = || {
            Refusal::invalid(FieldError::invalid(
                "spec.clusterIPs",
                json!([ip]),
                format!("failed to allocate IP {ip}: provided IP is already allocated"),
            ))
        };
        txn.claimed.push(item);
        if dry_run {
            return match reservations::holder(&*self.store, item).await? {
                Some(_) => Err(taken()),
                None => Ok(()),
            };
        }
        match reservations::reserve(&*self.store, item, owner).await? {
            Reserve::Reserved => {
                self.hint(item, true);
                txn.reserved.push(item);
                Ok(())
            }
            Reserve::AlreadyOurs => Ok(()),
            Reserve::Taken(_) => {
                self.hint(item, true);
                Err(taken())
            }
        }
    }

    async fn next_ip(
        &self,
        config: &Config,
        owner: &Owner,
        dry_run: bool,
        txn: &mut Allocation,
    ) -> Result<Ipv4Addr, Refusal> {
        let cidr = config.cidr;
        let index = self
            .next(
                Kind::Ip,
                cidr.usable(),
                cidr.static_band(),
                |i| cidr.at(i).map(Item::Ip),
                owner,
                dry_run,
                txn,
            )
            .await?;
        cidr.at(index).ok_or(Refusal::Full(Kind::Ip))
    }

    async fn next_port(
        &self,
        config: &Config,
        owner: &Owner,
        dry_run: bool,
        txn: &mut Allocation,
    ) -> Result<u16, Refusal> {
        let range = config.node_ports;
        let index = self
            .next(
                Kind::Port,
                range.size(),
                range.static_band(),
                |i| range.at(i).map(Item::Port),
                owner,
                dry_run,
                txn,
            )
            .await?;
        range.at(index).ok_or(Refusal::Full(Kind::Port))
    }

    /// Dynamic allocation: the index of the first free item in upstream's random scan with
    /// offset, reserved for `owner` (unless `dry_run`).
    #[allow(clippy::too_many_arguments)]
    async fn next(
        &self,
        kind: Kind,
        size: u32,
        static_band: u32,
        at: impl Fn(u32) -> Option<Item>,
        owner: &Owner,
        dry_run: bool,
        txn: &mut Allocation,
    ) -> Result<u32, Refusal> {
        for round in 0..2 {
            let upper_start = fastrand::u32(..size.max(1));
            let lower_start = fastrand::u32(..static_band.max(1));
            for index in range::scan_order(size, static_band, upper_start, lower_start) {
                let Some(item) = at(index) else {
                    continue;
                };
                if self.hinted(item) || txn.claimed.contains(&item) {
                    continue;
                }
                if dry_run {
                    if reservations::holder(&*self.store, item).await?.is_none() {
                        txn.claimed.push(item);
                        return Ok(index);
                    }
                    self.hint(item, true);
                    continue;
                }
                match reservations::reserve(&*self.store, item, owner).await? {
                    Reserve::Reserved => {
                        self.hint(item, true);
                        txn.reserved.push(item);
                        txn.claimed.push(item);
                        return Ok(index);
                    }
                    // Ours already (a leftover of this Service): not handed out twice.
                    Reserve::AlreadyOurs | Reserve::Taken(_) => self.hint(item, true),
                }
            }
            if round == 0 {
                // The hint said full: other servers may have released some since.
                self.refresh_hints(kind).await?;
            }
        }
        Err(Refusal::Full(kind))
    }

    /// Node ports for every port of `new` (upstream's initNodePorts/updateNodePorts): kept
    /// when `old` holds them, reserved when asked for, allocated when missing and the type
    /// allocates them. Ports of one number (53/UDP and 53/TCP) share one node port.
    async fn node_ports(
        &self,
        config: &Config,
        owner: &Owner,
        old_ports: &[u16],
        new: &mut Value,
        dry_run: bool,
        txn: &mut Allocation,
    ) -> Result<(), Refusal> {
        let allocate = spec::allocates_node_ports(new);
        let ports: Vec<(i64, Option<u16>)> = spec::ports(new)
            .into_iter()
            .map(|p| (spec::port_number(p), spec::node_port(p)))
            .collect();
        // Requested node ports first, so a dynamic one never takes a port asked for
        // further down the list.
        let mut by_number: HashMap<i64, u16> = HashMap::new();
        let mut held: Vec<u16> = Vec::new();
        for (i, (number, requested)) in ports.iter().enumerate() {
            let Some(node_port) = *requested else {
                continue;
            };
            if !held.contains(&node_port) && !old_ports.contains(&node_port) {
                self.static_port(config, node_port, i, owner, dry_run, txn)
                    .await?;
            }
            held.push(node_port);
            by_number.entry(*number).or_insert(node_port);
        }
        if !allocate {
            // Only requests are honoured (a LoadBalancer that opted out).
            return Ok(());
        }
        for (i, (number, requested)) in ports.iter().enumerate() {
            if requested.is_some() {
                continue;
            }
            // Ports of one number (53/UDP and 53/TCP) share their node port.
            let node_port = match by_number.get(number) {
                Some(shared) => *shared,
                None => {
                    let np = self.next_port(config, owner, dry_run, txn).await?;
                    by_number.insert(*number, np);
                    np
                }
            };
            spec::set_node_port(new, i, node_port);
        }
        Ok(())
    }

    async fn static_port(
        &self,
        config: &Config,
        port: u16,
        index: usize,
        owner: &Owner,
        dry_run: bool,
        txn: &mut Allocation,
    ) -> Result<(), Refusal> {
        let field = format!("spec.ports[{index}].nodePort");
        if !config.node_ports.contains(port) {
            return Err(Refusal::invalid(FieldError::invalid(
                field,
                port,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}",
                    config.node_ports
                ),
            )));
        }
        let item = Item::Port(port);
        let taken = |field| {
            Refusal::invalid(FieldError::invalid(
                field,
                port,
                "provided port is already allocated",
            ))
        };
        txn.claimed.push(item);
        if dry_run {
            return match reservations::holder(&*self.store, item).await? {
                Some(_) => Err(taken(field)),
                None => Ok(()),
            };
        }
        match reservations::reserve(&*self.store, item, owner).await? {
            Reserve::Reserved => {
                self.hint(item, true);
                txn.reserved.push(item);
                Ok(())
            }
            Reserve::AlreadyOurs => Ok(()),
            Reserve::Taken(_) => {
                self.hint(item, true);
                Err(taken(field))
            }
        }
    }

    /// A Service left the store: release everything it held. Failures are logged (the
    /// repair pass frees what is left behind).
    pub async fn release_all(&self, svc: &Value) {
        let owner = owner_of(svc);
        let mut items: Vec<Item> = spec::held_ip(svc).map(Item::Ip).into_iter().collect();
        items.extend(spec::held_node_ports(svc).into_iter().map(Item::Port));
        self.release_items(&items, &owner.uid).await;
    }

    async fn release_items(&self, items: &[Item], uid: &str) {
        for item in items {
            match reservations::release(&*self.store, *item, uid).await {
                Ok(true) => self.hint(*item, false),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%item, %error, "could not release a Service reservation; the repair pass will");
                }
            }
        }
    }
}

/// Upstream's initIPFamilyFields on a single-stack IPv4 cluster. `ipFamilyPolicy` defaults
/// to the old version's on an update, else to SingleStack — except for a headless Service
/// without a selector, which upstream makes RequireDualStack with both families (its
/// endpoints are whatever its owner writes). Otherwise dual-stack and IPv6 are refused, and
/// `ipFamilies` defaults to `[IPv4]`.
fn init_ip_families(old: Option<&Value>, svc: &mut Value) -> Result<(), Refusal> {
    let old_policy = old
        .filter(|o| spec::needs_cluster_ip(o))
        .and_then(|o| o.pointer("/spec/ipFamilyPolicy"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let headless_selectorless = spec::cluster_ip(svc) == spec::NONE
        && svc
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .is_none_or(|s| s.is_empty());
    let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let string_list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let policy = match spec.get("ipFamilyPolicy").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ => old_policy.unwrap_or_else(|| {
            if headless_selectorless {
                "RequireDualStack".to_owned()
            } else {
                "SingleStack".to_owned()
            }
        }),
    };
    spec.insert("ipFamilyPolicy".into(), json!(policy));
    let mut families = string_list(spec.get("ipFamilies"));
    let cluster_ips = string_list(spec.get("clusterIPs"));
    let invalid = |path: String, value: Value, detail: &str| {
        Err(Refusal::invalid(FieldError::invalid(path, value, detail)))
    };
    if policy == "SingleStack" && families.len() == 2 {
        return invalid(
            "spec.ipFamilyPolicy".into(),
            json!(policy),
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
        );
    }
    // The families of the addresses asked for come first.
    for (i, ip) in cluster_ips.iter().enumerate() {
        if ip == spec::NONE {
            break;
        }
        if i < families.len() {
            continue;
        }
        match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => families.push("IPv4".to_owned()),
            Ok(std::net::IpAddr::V6(_)) => {
                return invalid(
                    format!("spec.clusterIPs[{i}]"),
                    json!(cluster_ips),
                    "IPv6 is not configured on this cluster",
                );
            }
            // Validation has refused it already.
            Err(_) => {}
        }
    }
    if headless_selectorless {
        // Allowed any families: it gets no address.
        if families.is_empty() {
            families.push("IPv4".to_owned());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let other = if families[0] == "IPv4" {
                "IPv6"
            } else {
                "IPv4"
            };
            families.push(other.to_owned());
        }
        spec.insert("ipFamilies".into(), json!(families));
        return Ok(());
    }
    if policy == "RequireDualStack" {
        return invalid(
            "spec.ipFamilyPolicy".into(),
            json!(policy),
            "this cluster is not configured for dual-stack services",
        );
    }
    if let Some((i, family)) = families.iter().enumerate().find(|(_, f)| *f != "IPv4") {
        return invalid(
            format!("spec.ipFamilies[{i}]"),
            json!(family),
            "not configured on this cluster",
        );
    }
    if families.is_empty() {
        families.push("IPv4".to_owned());
    }
    spec.insert("ipFamilies".into(), json!(families));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;

    fn svc(name: &str, spec: Value) -> Value {
        json!({"metadata": {"namespace": "default", "name": name, "uid": format!("uid-{name}")}, "spec": spec})
    }

    async fn allocator(dir: &tempfile::TempDir, cidr: &str) -> (Arc<dyn Store>, ServiceAllocator) {
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("state.db"))
                .await
                .unwrap(),
        );
        let allocator = ServiceAllocator::new(store.clone());
        allocator.configure(|c| {
            c.cidr = cidr.parse().unwrap();
            c.node_ports = NodePortRange::new(30000..=30004).unwrap();
        });
        (store, allocator)
    }

    async fn allocated(allocator: &ServiceAllocator, name: &str, spec: Value) -> Value {
        let mut service = svc(name, spec);
        allocator
            .allocate(None, &mut service, false)
            .await
            .unwrap()
            .commit(allocator)
            .await;
        service
    }

    #[tokio::test]
    async fn dynamic_addresses_come_from_the_upper_band() {
        let dir = tempfile::tempdir().unwrap();
        let (_, allocator) = allocator(&dir, "10.0.0.0/24").await;
        // A /24 keeps its first 16 addresses for requests.
        for i in 0..40 {
            let service = allocated(&allocator, &format!("s{i}"), json!({})).await;
            let ip: Ipv4Addr = spec::cluster_ip(&service).parse().unwrap();
            assert!(
                u32::from(ip) > u32::from(Ipv4Addr::new(10, 0, 0, 16)),
                "{ip}"
            );
            assert!(ip < Ipv4Addr::new(10, 0, 0, 255), "{ip}");
        }
        let fixed = allocated(&allocator, "fixed", json!({"clusterIP": "10.0.0.5"})).await;
        assert_eq!(spec::cluster_ip(&fixed), "10.0.0.5");
    }

    #[tokio::test]
    async fn a_full_range_is_refused_and_a_stale_hint_does_not_fake_one() {
        let dir = tempfile::tempdir().unwrap();
        let (store, allocator) = allocator(&dir, "10.0.0.0/28").await;
        let mut held = Vec::new();
        for i in 0..14 {
            held.push(allocated(&allocator, &format!("s{i}"), json!({})).await);
        }
        let mut one_more = svc("more", json!({}));
        let err = allocator
            .allocate(None, &mut one_more, false)
            .await
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (500, "failed to allocate a serviceIP: range is full")
        );
        // Another API server releases one: this one's hint still says taken.
        let freed: Ipv4Addr = spec::cluster_ip(&held[3]).parse().unwrap();
        store.delete(&Item::Ip(freed).key(), None).await.unwrap();
        let again = allocated(&allocator, "more", json!({})).await;
        assert_eq!(spec::cluster_ip(&again), freed.to_string());
    }

    #[tokio::test]
    async fn node_ports_and_what_an_update_gives_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, allocator) = allocator(&dir, "10.0.0.0/24").await;
        let old = allocated(
            &allocator,
            "np",
            json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30004}]}),
        )
        .await;
        let ports = spec::held_node_ports(&old);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1], 30004);
        // Port b goes away: reserved until the update is stored, then released.
        let mut new = old.clone();
        new["spec"]["ports"].as_array_mut().unwrap().pop();
        let txn = allocator
            .allocate(Some(&old), &mut new, false)
            .await
            .unwrap();
        assert!(
            store
                .get(&Item::Port(30004).key())
                .await
                .unwrap()
                .0
                .is_some()
        );
        txn.commit(&allocator).await;
        assert!(
            store
                .get(&Item::Port(30004).key())
                .await
                .unwrap()
                .0
                .is_none()
        );
        // A failed write gives back what it reserved, and only that.
        let mut grown = new.clone();
        grown["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "c", "port": 82}));
        let txn = allocator
            .allocate(Some(&new), &mut grown, false)
            .await
            .unwrap();
        let added = spec::held_node_ports(&grown)[1];
        assert!(
            store
                .get(&Item::Port(added).key())
                .await
                .unwrap()
                .0
                .is_some()
        );
        txn.revert(&allocator).await;
        assert!(
            store
                .get(&Item::Port(added).key())
                .await
                .unwrap()
                .0
                .is_none()
        );
        assert!(
            store
                .get(&Item::Port(ports[0]).key())
                .await
                .unwrap()
                .0
                .is_some()
        );
        // A dry run reserves nothing.
        let mut planned = svc("dry", json!({"type": "NodePort", "ports": [{"port": 80}]}));
        let txn = allocator.allocate(None, &mut planned, true).await.unwrap();
        let planned_port = spec::held_node_ports(&planned)[0];
        assert!(
            store
                .get(&Item::Port(planned_port).key())
                .await
                .unwrap()
                .0
                .is_none()
        );
        txn.revert(&allocator).await;
        // Releasing checks the owner: another Service's reservation stays (30004 was
        // given back above).
        allocated(
            &allocator,
            "fresh",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30004}]}),
        )
        .await;
        let impostor = svc(
            "impostor",
            json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30004}]}),
        );
        allocator.release_all(&impostor).await;
        assert!(
            store
                .get(&Item::Port(30004).key())
                .await
                .unwrap()
                .0
                .is_some()
        );
    }

    #[test]
    fn well_known_addresses() {
        let cidr = ServiceCidr::default();
        assert_eq!(cluster_dns_ip(&cidr), Ipv4Addr::new(10, 43, 0, 10));
        assert_eq!(kubernetes_service_ip(&cidr), Ipv4Addr::new(10, 43, 0, 1));
        let small: ServiceCidr = "10.96.5.16/28".parse().unwrap();
        assert_eq!(cluster_dns_ip(&small), Ipv4Addr::new(10, 96, 5, 26));
        assert_eq!(Some(cluster_dns_ip(&small)), small.nth(10));
    }

    #[test]
    fn ip_families_default_to_single_stack_ipv4() {
        let init = |old: Option<Value>, spec: Value| {
            let mut svc = json!({ "spec": spec });
            init_ip_families(old.as_ref(), &mut svc).map(|()| svc["spec"].clone())
        };
        let spec = init(None, json!({})).unwrap();
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        let spec = init(None, json!({"ipFamilyPolicy": "PreferDualStack"})).unwrap();
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        // An update that leaves the policy out keeps the old one.
        let old = json!({"spec": {"ipFamilyPolicy": "PreferDualStack"}});
        let spec = init(Some(old), json!({})).unwrap();
        assert_eq!(spec["ipFamilyPolicy"], "PreferDualStack");
        // Headless without a selector: any family, dual by default (upstream's special case).
        let spec = init(None, json!({"clusterIP": "None", "clusterIPs": ["None"]})).unwrap();
        assert_eq!(spec["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4", "IPv6"]));
        let spec = init(
            None,
            json!({"clusterIP": "None", "selector": {"app": "db"}}),
        )
        .unwrap();
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));

        let message = |spec: Value| match init(None, spec) {
            Err(Refusal::Invalid(e)) => e.message(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message(json!({"ipFamilies": ["IPv6"]})),
            "spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"
        );
        assert_eq!(
            message(json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]})),
            "spec.ipFamilies[1]: Invalid value: \"IPv6\": not configured on this cluster"
        );
        assert_eq!(
            message(json!({"ipFamilyPolicy": "RequireDualStack"})),
            "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
        );
        assert_eq!(
            message(json!({"clusterIP": "fd00::1", "clusterIPs": ["fd00::1"]})),
            "spec.clusterIPs[0]: Invalid value: []string{\"fd00::1\"}: IPv6 is not configured on this cluster"
        );
        assert_eq!(
            message(json!({"ipFamilies": ["IPv4", "IPv6"]})),
            "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"
        );
    }
}

//! The in-memory picture of Services and EndpointSlices that cluster DNS answers from.
//!
//! It owns a distilled copy of each object — only what DNS needs: a Service's cluster IPs,
//! kind, ports and `publishNotReadyAddresses`; a slice's Service, ports and endpoints
//! (addresses, hostname, ready) — plus reverse maps (address → Services, address →
//! slices, Service → slices, namespace → Service count) kept in step on every change, so a
//! query touches only the objects it names. It never talks to the API (the watches in
//! [`super::watch`] feed it) and knows nothing of DNS wire formats (that is
//! [`super::zone`]).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming an EndpointSlice's Service (upstream `discovery.LabelServiceName`).
pub(crate) const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// `(namespace, name)` of a Service or an EndpointSlice.
pub(crate) type Key = (String, String);

/// What a Service's own name resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// ClusterIP, NodePort and LoadBalancer Services: their cluster IPs (possibly none yet).
    ClusterIps(Vec<IpAddr>),
    /// `clusterIP: None`: the addresses of its published endpoints.
    Headless,
    /// `type: ExternalName`: an alias for this DNS name.
    ExternalName(String),
}

/// A named port (lowercased), as SRV names address it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortEntry {
    pub(crate) name: String,
    /// `tcp`, `udp` or `sctp`.
    pub(crate) protocol: String,
    pub(crate) port: u16,
}

/// A Service, distilled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceEntry {
    pub(crate) kind: ServiceKind,
    pub(crate) ports: Vec<PortEntry>,
    /// Not-ready endpoints are published too.
    pub(crate) publish_not_ready: bool,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EndpointEntry {
    pub(crate) addresses: Vec<IpAddr>,
    /// `spec.hostname` of the pod behind it (lowercased).
    pub(crate) hostname: Option<String>,
    /// `conditions.ready`; absent counts as ready, as the API documents.
    pub(crate) ready: bool,
}

impl EndpointEntry {
    /// The first label of this endpoint's name for `address`: its hostname, or the address
    /// with dots (or colons) as dashes — CoreDNS's `endpointHostname`.
    pub(crate) fn label(&self, address: IpAddr) -> String {
        match &self.hostname {
            Some(hostname) => hostname.clone(),
            None => dashed(address),
        }
    }
}

/// An address written as one DNS label: `10-42-0-5`, `fd00--5`.
pub(crate) fn dashed(address: IpAddr) -> String {
    address.to_string().replace(['.', ':'], "-")
}

/// An EndpointSlice, distilled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SliceEntry {
    /// From the `kubernetes.io/service-name` label; slices without it serve no name.
    service: Option<String>,
    pub(crate) ports: Vec<PortEntry>,
    pub(crate) endpoints: Vec<EndpointEntry>,
}

/// The Services and EndpointSlices of the cluster, with the reverse maps queries need.
#[derive(Debug, Default)]
pub(crate) struct Index {
    services: HashMap<Key, ServiceEntry>,
    slices: HashMap<Key, SliceEntry>,
    /// Service → names of its slices (in the Service's namespace).
    slices_of: HashMap<Key, BTreeSet<String>>,
    services_by_ip: HashMap<IpAddr, BTreeSet<Key>>,
    slices_by_ip: HashMap<IpAddr, BTreeSet<Key>>,
    services_per_namespace: HashMap<String, usize>,
    /// Bumped on every change: the zone's SOA serial.
    serial: u32,
}

impl Index {
    /// An empty index.
    pub(crate) fn new() -> Self {
        // Starting from the clock keeps serials rising across restarts, as secondaries and
        // caches comparing serials expect.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Index {
            serial: now,
            ..Self::default()
        }
    }

    /// The zone's SOA serial: changes whenever the index does.
    pub(crate) fn serial(&self) -> u32 {
        self.serial
    }

    /// Add or replace a Service.
    pub(crate) fn apply_service(&mut self, svc: &Service) {
        let Some(key) = key_of(&svc.metadata) else {
            return;
        };
        let entry = distill_service(svc);
        if self.services.get(&key) == Some(&entry) {
            return;
        }
        self.remove_service(&key);
        if let ServiceKind::ClusterIps(ips) = &entry.kind {
            for ip in ips {
                self.services_by_ip
                    .entry(*ip)
                    .or_default()
                    .insert(key.clone());
            }
        }
        *self
            .services_per_namespace
            .entry(key.0.clone())
            .or_default() += 1;
        self.services.insert(key, entry);
        self.changed();
    }

    /// Forget a Service (its slices stay: they usually go a moment later by themselves).
    pub(crate) fn delete_service(&mut self, svc: &Service) {
        if let Some(key) = key_of(&svc.metadata)
            && self.remove_service(&key)
        {
            self.changed();
        }
    }

    /// Make the Services exactly `svcs` (after a watch (re)listed them).
    pub(crate) fn replace_services(&mut self, svcs: &[Service]) {
        let keep: BTreeSet<Key> = svcs.iter().filter_map(|s| key_of(&s.metadata)).collect();
        let gone: Vec<Key> = self
            .services
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove_service(&key);
            self.changed();
        }
        for svc in svcs {
            self.apply_service(svc);
        }
    }

    /// Add or replace an EndpointSlice.
    pub(crate) fn apply_slice(&mut self, slice: &EndpointSlice) {
        let Some(key) = key_of(&slice.metadata) else {
            return;
        };
        let entry = distill_slice(slice);
        if self.slices.get(&key) == Some(&entry) {
            return;
        }
        self.remove_slice(&key);
        for endpoint in &entry.endpoints {
            for address in &endpoint.addresses {
                self.slices_by_ip
                    .entry(*address)
                    .or_default()
                    .insert(key.clone());
            }
        }
        if let Some(service) = &entry.service {
            self.slices_of
                .entry((key.0.clone(), service.clone()))
                .or_default()
                .insert(key.1.clone());
        }
        self.slices.insert(key, entry);
        self.changed();
    }

    /// Forget an EndpointSlice.
    pub(crate) fn delete_slice(&mut self, slice: &EndpointSlice) {
        if let Some(key) = key_of(&slice.metadata)
            && self.remove_slice(&key)
        {
            self.changed();
        }
    }

    /// Make the EndpointSlices exactly `slices` (after a watch (re)listed them).
    pub(crate) fn replace_slices(&mut self, slices: &[EndpointSlice]) {
        let keep: BTreeSet<Key> = slices.iter().filter_map(|s| key_of(&s.metadata)).collect();
        let gone: Vec<Key> = self
            .slices
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove_slice(&key);
            self.changed();
        }
        for slice in slices {
            self.apply_slice(slice);
        }
    }

    /// The Service `namespace/name`.
    pub(crate) fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Whether any Service lives in `namespace` (so `<ns>.svc.<domain>` exists).
    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.services_per_namespace.contains_key(namespace)
    }

    /// The endpoints DNS publishes for the Service `namespace/name`, with the slice each
    /// comes from: ready ones, or all under `publishNotReadyAddresses`. Empty when the
    /// Service does not exist.
    pub(crate) fn published_endpoints(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<(&SliceEntry, &EndpointEntry)> {
        let Some(svc) = self.service(namespace, name) else {
            return Vec::new();
        };
        let Some(slice_names) = self.slices_of.get(&(namespace.to_owned(), name.to_owned())) else {
            return Vec::new();
        };
        slice_names
            .iter()
            .filter_map(|slice| self.slices.get(&(namespace.to_owned(), slice.clone())))
            .flat_map(|slice| slice.endpoints.iter().map(move |ep| (slice, ep)))
            .filter(|(_, ep)| ep.ready || svc.publish_not_ready)
            .collect()
    }

    /// The Services (`namespace`, `name`) whose cluster IPs include `ip`.
    pub(crate) fn services_with_ip(&self, ip: IpAddr) -> Vec<Key> {
        self.services_by_ip
            .get(&ip)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The published endpoints of headless Services with address `ip`, as
    /// (`namespace`, `service`, first label of the endpoint's name).
    pub(crate) fn headless_endpoints_with_ip(&self, ip: IpAddr) -> Vec<(String, String, String)> {
        let mut found = BTreeSet::new();
        for (namespace, slice_name) in self.slices_by_ip.get(&ip).into_iter().flatten() {
            let Some(slice) = self.slices.get(&(namespace.clone(), slice_name.clone())) else {
                continue;
            };
            let Some(service) = &slice.service else {
                continue;
            };
            let Some(svc) = self.service(namespace, service) else {
                continue;
            };
            if svc.kind != ServiceKind::Headless {
                continue;
            }
            for ep in &slice.endpoints {
                if (ep.ready || svc.publish_not_ready) && ep.addresses.contains(&ip) {
                    found.insert((namespace.clone(), service.clone(), ep.label(ip)));
                }
            }
        }
        found.into_iter().collect()
    }

    fn changed(&mut self) {
        self.serial = self.serial.wrapping_add(1);
    }

    fn remove_service(&mut self, key: &Key) -> bool {
        let Some(old) = self.services.remove(key) else {
            return false;
        };
        if let ServiceKind::ClusterIps(ips) = &old.kind {
            for ip in ips {
                remove_from(&mut self.services_by_ip, ip, key);
            }
        }
        if let Some(count) = self.services_per_namespace.get_mut(&key.0) {
            *count -= 1;
            if *count == 0 {
                self.services_per_namespace.remove(&key.0);
            }
        }
        true
    }

    fn remove_slice(&mut self, key: &Key) -> bool {
        let Some(old) = self.slices.remove(key) else {
            return false;
        };
        for endpoint in &old.endpoints {
            for address in &endpoint.addresses {
                remove_from(&mut self.slices_by_ip, address, key);
            }
        }
        if let Some(service) = old.service {
            remove_from(&mut self.slices_of, &(key.0.clone(), service), &key.1);
        }
        true
    }
}

fn remove_from<K, V>(map: &mut HashMap<K, BTreeSet<V>>, key: &K, value: &V)
where
    K: std::hash::Hash + Eq,
    V: Ord,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

fn distill_service(svc: &Service) -> ServiceEntry {
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.unwrap_or_default())
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        // clusterIPs is authoritative when set; older writers only fill clusterIP.
        let ips = match spec.cluster_ips.filter(|ips| !ips.is_empty()) {
            Some(ips) => ips,
            None => spec.cluster_ip.into_iter().collect(),
        };
        ServiceKind::ClusterIps(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
    };
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| port_entry(p.name, p.protocol, Some(p.port)))
        .collect();
    ServiceEntry {
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    }
}

fn distill_slice(slice: &EndpointSlice) -> SliceEntry {
    let service = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_SERVICE_NAME))
        .cloned();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port_entry(p.name.clone(), p.protocol.clone(), p.port))
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .map(|ep| EndpointEntry {
            // FQDN slices (addressType FQDN) carry names, which DNS does not publish.
            addresses: ep.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            hostname: ep
                .hostname
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase),
            ready: ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
        })
        .filter(|ep| !ep.addresses.is_empty())
        .collect();
    SliceEntry {
        service,
        ports,
        endpoints,
    }
}

/// Only named ports can be asked for by SRV name.
fn port_entry(
    name: Option<String>,
    protocol: Option<String>,
    port: Option<i32>,
) -> Option<PortEntry> {
    let name = name.filter(|n| !n.is_empty())?.to_ascii_lowercase();
    let port = u16::try_from(port?).ok()?;
    let protocol = protocol
        .unwrap_or_else(|| "TCP".to_owned())
        .to_ascii_lowercase();
    Some(PortEntry {
        name,
        protocol,
        port,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A Service from its spec, as tests elsewhere in this module write them.
    pub(crate) fn service(namespace: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }))
        .unwrap()
    }

    /// An EndpointSlice of `service` with the given endpoints and ports.
    pub(crate) fn slice(
        namespace: &str,
        name: &str,
        service: &str,
        endpoints: serde_json::Value,
        ports: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "namespace": namespace,
                "name": name,
                "labels": {LABEL_SERVICE_NAME: service},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }))
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn service_kinds_are_distilled() {
        let mut index = Index::new();
        index.apply_service(&service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5", "fd00::5"],
                   "ports": [{"name": "HTTP", "port": 80}, {"port": 81}]}),
        ));
        index.apply_service(&service("default", "db", json!({"clusterIP": "None"})));
        index.apply_service(&service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        ));
        let web = index.service("default", "web").unwrap();
        assert_eq!(
            web.kind,
            ServiceKind::ClusterIps(vec![ip("10.43.0.5"), ip("fd00::5")])
        );
        assert_eq!(
            web.ports,
            vec![PortEntry {
                name: "http".into(),
                protocol: "tcp".into(),
                port: 80
            }]
        );
        assert_eq!(
            index.service("default", "db").unwrap().kind,
            ServiceKind::Headless
        );
        assert_eq!(
            index.service("default", "ext").unwrap().kind,
            ServiceKind::ExternalName("example.com".into())
        );
        assert_eq!(
            index.services_with_ip(ip("fd00::5")),
            vec![("default".into(), "web".into())]
        );
        assert!(index.has_namespace("default"));
        assert!(!index.has_namespace("other"));
    }

    #[test]
    fn updates_and_deletes_keep_reverse_maps_in_step() {
        let mut index = Index::new();
        let first = service("default", "web", json!({"clusterIP": "10.43.0.5"}));
        index.apply_service(&first);
        let serial = index.serial();
        index.apply_service(&first);
        assert_eq!(index.serial(), serial, "an unchanged object is no change");
        index.apply_service(&service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.6"}),
        ));
        assert!(index.services_with_ip(ip("10.43.0.5")).is_empty());
        assert_eq!(index.services_with_ip(ip("10.43.0.6")).len(), 1);
        index.delete_service(&first);
        assert!(index.services_with_ip(ip("10.43.0.6")).is_empty());
        assert!(!index.has_namespace("default"));
        assert_ne!(index.serial(), serial);
    }

    #[test]
    fn published_endpoints_follow_readiness() {
        let mut index = Index::new();
        index.apply_service(&service("default", "db", json!({"clusterIP": "None"})));
        let eps = json!([
            {"addresses": ["10.42.0.1"], "conditions": {"ready": true}},
            {"addresses": ["10.42.0.2"], "conditions": {"ready": false}},
            {"addresses": ["10.42.0.3"]},
        ]);
        index.apply_slice(&slice("default", "db-a", "db", eps, json!([])));
        let published: Vec<IpAddr> = index
            .published_endpoints("default", "db")
            .iter()
            .flat_map(|(_, ep)| ep.addresses.clone())
            .collect();
        assert_eq!(published, vec![ip("10.42.0.1"), ip("10.42.0.3")]);

        index.apply_service(&service(
            "default",
            "db",
            json!({"clusterIP": "None", "publishNotReadyAddresses": true}),
        ));
        assert_eq!(index.published_endpoints("default", "db").len(), 3);
        assert_eq!(
            index.headless_endpoints_with_ip(ip("10.42.0.2")),
            vec![("default".into(), "db".into(), "10-42-0-2".into())]
        );
    }

    #[test]
    fn relists_replace_what_they_no_longer_mention() {
        let mut index = Index::new();
        index.apply_service(&service("default", "db", json!({"clusterIP": "None"})));
        let eps = json!([{"addresses": ["10.42.0.1"]}]);
        let a = slice("default", "db-a", "db", eps.clone(), json!([]));
        let b = slice(
            "default",
            "db-b",
            "db",
            json!([{"addresses": ["10.42.0.9"]}]),
            json!([]),
        );
        index.apply_slice(&a);
        index.apply_slice(&b);
        index.replace_slices(std::slice::from_ref(&b));
        let published: Vec<IpAddr> = index
            .published_endpoints("default", "db")
            .iter()
            .flat_map(|(_, ep)| ep.addresses.clone())
            .collect();
        assert_eq!(published, vec![ip("10.42.0.9")]);
        assert!(index.headless_endpoints_with_ip(ip("10.42.0.1")).is_empty());

        index.replace_services(&[]);
        assert!(index.service("default", "db").is_none());
        assert!(index.published_endpoints("default", "db").is_empty());
    }

    #[test]
    fn endpoint_labels_are_hostnames_or_dashed_addresses() {
        let ep = EndpointEntry {
            addresses: vec![ip("10.42.0.7")],
            hostname: None,
            ready: true,
        };
        assert_eq!(ep.label(ip("10.42.0.7")), "10-42-0-7");
        assert_eq!(dashed(ip("fd00::7")), "fd00--7");
        let named = EndpointEntry {
            hostname: Some("db-0".into()),
            ..ep
        };
        assert_eq!(named.label(ip("10.42.0.7")), "db-0");
    }
}

//! What the proxy must do for one Service, worked out from the Service and its
//! EndpointSlices alone: its cluster IPs, and per port the protocol, the NodePort, session
//! affinity and the endpoints traffic may go to. Pure functions with no I/O, so the rules
//! (which endpoints are ready, how a service port finds its target port, traffic policies)
//! are unit-tested here; binding sockets and addresses is the job of the other modules.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Session affinity's default stickiness (upstream: 3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);

/// A Service's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl ServiceName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The Service's name, if it has one (watch events always carry both).
    pub fn of(svc: &Service) -> Option<Self> {
        Some(ServiceName::new(
            svc.metadata.namespace.clone()?,
            svc.metadata.name.clone()?,
        ))
    }

    /// The Service an EndpointSlice belongs to, by its `kubernetes.io/service-name` label.
    pub fn of_slice(slice: &EndpointSlice) -> Option<Self> {
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(ServiceName::new(
            slice.metadata.namespace.clone()?,
            service.clone(),
        ))
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The transport protocols the proxy forwards (SCTP is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// From a Service or EndpointSlice port's `protocol` (TCP when unset).
    pub fn parse(protocol: Option<&str>) -> Option<Self> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// One place traffic may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The endpoint's pod runs on this proxy's node (for `Local` traffic policies).
    pub local: bool,
}

/// One port of a Service, as the proxy serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub service: ServiceName,
    /// The port's name ("" for a single unnamed port).
    pub port_name: String,
    pub protocol: Protocol,
    pub port: u16,
    /// Set for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// ClientIP session affinity and how long a client sticks to its endpoint.
    pub affinity: Option<Duration>,
    /// Where traffic to the cluster IPs goes (`internalTrafficPolicy: Local` keeps only
    /// this node's endpoints).
    pub cluster_endpoints: Vec<SocketAddr>,
    /// Where traffic to the NodePort goes (`externalTrafficPolicy: Local` keeps only this
    /// node's endpoints).
    pub node_port_endpoints: Vec<SocketAddr>,
}

impl ServicePort {
    /// How logs name it: `default/web:http/TCP`.
    pub fn describe(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}:{}/{}", self.service, self.port, self.protocol)
        } else {
            format!("{}:{}/{}", self.service, self.port_name, self.protocol)
        }
    }
}

/// The cluster IPs the proxy makes local for `svc`: none for headless and ExternalName
/// Services.
pub fn cluster_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Every port the proxy forwards for `svc`, with endpoints taken from `slices` (the
/// Service's EndpointSlices). `node` is this proxy's node name.
pub fn service_ports<'a>(
    svc: &Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice> + Clone,
    node: &str,
) -> Vec<ServicePort> {
    let (Some(service), Some(spec)) = (ServiceName::of(svc), &svc.spec) else {
        return Vec::new();
    };
    if cluster_ips(svc).is_empty() {
        return Vec::new();
    }
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .filter(|s| *s > 0)
            .map_or(DEFAULT_AFFINITY_TIMEOUT, |s| Duration::from_secs(s as u64))
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let port_name = port.name.clone().unwrap_or_default();
        let endpoints = endpoints_for(slices.clone(), &port_name, protocol, node);
        let only_local = |local: bool| -> Vec<SocketAddr> {
            endpoints
                .iter()
                .filter(|e| !local || e.local)
                .map(|e| e.addr)
                .collect()
        };
        out.push(ServicePort {
            service: service.clone(),
            port_name,
            protocol,
            port: number,
            node_port: port
                .node_port
                .filter(|_| node_ports)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            affinity,
            cluster_endpoints: only_local(internal_local),
            node_port_endpoints: only_local(external_local),
        });
    }
    out
}

/// The endpoints of the slices' port named `port_name` with `protocol`: the ready ones, or
/// — when none is ready — the ones still serving while they terminate (as kube-proxy does,
/// so a rolling update of a single-replica Deployment does not drop connections). Sorted and
/// without duplicates (one endpoint can sit in two slices while the controller moves it).
fn endpoints_for<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port_name: &str,
    protocol: Protocol,
    node: &str,
) -> Vec<Endpoint> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(number) = slice.ports.iter().flatten().find_map(|p| {
            (p.name.as_deref().unwrap_or("") == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol))
            .then_some(p.port)
            .flatten()
        }) else {
            continue;
        };
        let Ok(number) = u16::try_from(number) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let conditions = endpoint.conditions.as_ref();
            let is_ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(is_ready);
            let is_terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let e = Endpoint {
                addr: SocketAddr::new(ip, number),
                local: endpoint.node_name.as_deref() == Some(node),
            };
            if is_ready {
                ready.insert(e);
            } else if serving && is_terminating {
                terminating.insert(e);
            }
        }
    }
    let chosen = if ready.is_empty() { terminating } else { ready };
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn slice(name: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": name,
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn headless_and_external_name_services_are_not_proxied() {
        let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        assert!(cluster_ips(&headless).is_empty());
        assert!(service_ports(&headless, &[], "n").is_empty());
        let external = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        assert!(cluster_ips(&external).is_empty());
        let plain = svc(json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"]}));
        assert_eq!(
            cluster_ips(&plain),
            vec!["10.43.0.5".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn ports_find_their_endpoints_by_name_and_protocol() {
        let s = svc(json!({
            "clusterIP": "10.43.0.5",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "sctp", "port": 9, "protocol": "SCTP"},
            ],
        }));
        let sl = slice(
            "web-a",
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([
                {"addresses": ["10.42.0.7"], "conditions": {"ready": true}},
                {"addresses": ["10.42.0.8"]},
                {"addresses": ["10.42.0.9"], "conditions": {"ready": false}},
            ]),
        );
        let ports = service_ports(&s, &[sl], "n");
        assert_eq!(ports.len(), 2, "SCTP is skipped");
        assert_eq!(ports[0].describe(), "default/web:http/TCP");
        assert_eq!(
            ports[0].cluster_endpoints,
            addrs(&["10.42.0.7:8080", "10.42.0.8:8080"])
        );
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(
            ports[1].cluster_endpoints,
            addrs(&["10.42.0.7:5353", "10.42.0.8:5353"])
        );
        assert_eq!(ports[0].node_port, None);
        assert_eq!(ports[0].affinity, None);
    }

    #[test]
    fn duplicates_across_slices_collapse_and_terminating_endpoints_are_a_fallback() {
        let s = svc(json!({"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}));
        let a = slice(
            "a",
            json!([{"port": 80}]),
            json!([{"addresses": ["10.42.0.7"]}]),
        );
        let b = slice(
            "b",
            json!([{"port": 80}]),
            json!([{"addresses": ["10.42.0.7"]},
                   {"addresses": ["10.42.0.8"],
                    "conditions": {"ready": false, "serving": true, "terminating": true}}]),
        );
        let ports = service_ports(&s, [&a, &b], "n");
        assert_eq!(ports[0].cluster_endpoints, addrs(&["10.42.0.7:80"]));
        let only_terminating = slice(
            "c",
            json!([{"port": 80}]),
            json!([{"addresses": ["10.42.0.8"],
                    "conditions": {"ready": false, "serving": true, "terminating": true}},
                   {"addresses": ["10.42.0.9"],
                    "conditions": {"ready": false, "serving": false, "terminating": true}}]),
        );
        let ports = service_ports(&s, [&only_terminating], "n");
        assert_eq!(ports[0].cluster_endpoints, addrs(&["10.42.0.8:80"]));
    }

    #[test]
    fn node_ports_affinity_and_traffic_policies() {
        let s = svc(json!({
            "type": "NodePort",
            "clusterIP": "10.43.0.5",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "externalTrafficPolicy": "Local",
            "ports": [{"port": 80, "nodePort": 30080}],
        }));
        let sl = slice(
            "a",
            json!([{"port": 8080}]),
            json!([{"addresses": ["10.42.0.7"], "nodeName": "here"},
                   {"addresses": ["10.42.1.7"], "nodeName": "there"}]),
        );
        let ports = service_ports(&s, [&sl], "here");
        assert_eq!(ports[0].node_port, Some(30080));
        assert_eq!(ports[0].affinity, Some(Duration::from_secs(60)));
        assert_eq!(
            ports[0].cluster_endpoints,
            addrs(&["10.42.0.7:8080", "10.42.1.7:8080"])
        );
        assert_eq!(ports[0].node_port_endpoints, addrs(&["10.42.0.7:8080"]));

        // A ClusterIP Service keeps no node port even if one is left in its spec, and
        // affinity without a config takes upstream's default.
        let mut plain = s.clone();
        let spec = plain.spec.as_mut().unwrap();
        spec.type_ = Some("ClusterIP".into());
        spec.session_affinity_config = None;
        spec.internal_traffic_policy = Some("Local".into());
        let ports = service_ports(&plain, [&sl], "there");
        assert_eq!(ports[0].node_port, None);
        assert_eq!(ports[0].affinity, Some(DEFAULT_AFFINITY_TIMEOUT));
        assert_eq!(ports[0].cluster_endpoints, addrs(&["10.42.1.7:8080"]));
    }

    #[test]
    fn slices_name_their_service_by_label() {
        let sl = slice("web-abc", json!([]), json!([]));
        assert_eq!(
            ServiceName::of_slice(&sl),
            Some(ServiceName::new("default", "web"))
        );
        let mut unlabelled = sl.clone();
        unlabelled.metadata.labels = None;
        assert_eq!(ServiceName::of_slice(&unlabelled), None);
    }
}

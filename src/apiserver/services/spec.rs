//! What the Service registry does to a Service's spec before admission, with no store in
//! sight: upstream's `normalizeClusterIPs`, `PatchAllocatedValues` and
//! `dropTypeDependentFields` (pkg/registry/core/service), plus the small readers the
//! allocator and the repair pass share (which type needs which allocation, what a Service
//! holds).
//!
//! These run on JSON as the client sent it, before defaulting and validation, so every
//! reader tolerates missing fields and wrong types (validation reports those afterwards).

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

/// `clusterIP: None`: a headless Service.
pub(super) const NONE: &str = "None";

fn spec(svc: &Value) -> Option<&Map<String, Value>> {
    svc.get("spec").and_then(Value::as_object)
}

fn spec_mut(svc: &mut Value) -> Option<&mut Map<String, Value>> {
    svc.get_mut("spec").and_then(Value::as_object_mut)
}

/// spec.type, `ClusterIP` when unset (as defaulting makes it).
pub(super) fn service_type(svc: &Value) -> &str {
    spec(svc)
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("ClusterIP")
}

/// Every type but ExternalName has a clusterIP (an address or `None`).
pub(super) fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
}

/// NodePort and LoadBalancer Services hold node ports.
pub(super) fn needs_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// Whether ports without a nodePort get one (upstream's shouldAllocateNodePorts): always
/// for NodePort, for LoadBalancer unless `allocateLoadBalancerNodePorts: false`.
pub(super) fn allocates_node_ports(svc: &Value) -> bool {
    match service_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => {
            spec(svc).and_then(|s| s.get("allocateLoadBalancerNodePorts"))
                != Some(&Value::Bool(false))
        }
        _ => false,
    }
}

/// spec.clusterIP ("" when unset).
pub(super) fn cluster_ip(svc: &Value) -> &str {
    spec(svc)
        .and_then(|s| s.get("clusterIP"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// spec.clusterIPs (empty when unset).
fn cluster_ips(svc: &Value) -> Vec<Value> {
    spec(svc)
        .and_then(|s| s.get("clusterIPs"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The cluster IP the Service holds: an IPv4 address in its clusterIP, if it needs one.
pub(super) fn held_ip(svc: &Value) -> Option<Ipv4Addr> {
    if !needs_cluster_ip(svc) {
        return None;
    }
    cluster_ip(svc).parse().ok()
}

/// The node ports the Service holds (each once, in port order), if its type has any.
pub(super) fn held_node_ports(svc: &Value) -> Vec<u16> {
    if !needs_node_ports(svc) {
        return Vec::new();
    }
    let mut held = Vec::new();
    for port in ports(svc) {
        if let Some(np) = node_port(port)
            && !held.contains(&np)
        {
            held.push(np);
        }
    }
    held
}

/// spec.ports (the objects among them).
pub(super) fn ports(svc: &Value) -> Vec<&Map<String, Value>> {
    spec(svc)
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .map(|ports| ports.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

/// A port's nodePort, when it has a usable one.
pub(super) fn node_port(port: &Map<String, Value>) -> Option<u16> {
    port.get("nodePort")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n != 0)
}

/// A port's number (0 when unset or bad; validation has refused those).
pub(super) fn port_number(port: &Map<String, Value>) -> i64 {
    port.get("port").and_then(Value::as_i64).unwrap_or(0)
}

fn port_name(port: &Map<String, Value>) -> &str {
    port.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Set spec.clusterIP and spec.clusterIPs to `ip`.
pub(super) fn set_cluster_ip(svc: &mut Value, ip: &str) {
    if let Some(spec) = spec_mut(svc) {
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
    }
}

/// Set spec.ports[index].nodePort.
pub(super) fn set_node_port(svc: &mut Value, index: usize, node_port: u16) {
    if let Some(port) = svc
        .pointer_mut(&format!("/spec/ports/{index}"))
        .and_then(Value::as_object_mut)
    {
        port.insert("nodePort".into(), json!(node_port));
    }
}

/// Before admission of a new Service (upstream's normalizeClusterIPs on create): a client
/// that set only clusterIP (an older one) gets clusterIPs to match.
pub(super) fn prepare_create(svc: &mut Value) {
    let ip = cluster_ip(svc).to_owned();
    if !ip.is_empty()
        && cluster_ips(svc).is_empty()
        && let Some(spec) = spec_mut(svc)
    {
        spec.insert("clusterIPs".into(), json!([ip]));
    }
}

/// Before admission of an update (upstream's dropTypeDependentFields, then
/// PatchAllocatedValues with normalizeClusterIPs): fields that no longer apply to the new
/// type are cleared when the client left them as they were, and allocated values the client
/// left out (an empty clusterIP, a port without its nodePort) are kept from `old`.
pub(super) fn prepare_update(old: &Value, new: &mut Value) {
    if spec(new).is_none() {
        return;
    }
    drop_type_dependent_fields(old, new);
    patch_allocated_values(old, new);
    normalize_cluster_ips(old, new);
}

fn get<'a>(svc: &'a Value, field: &str) -> Option<&'a Value> {
    spec(svc).and_then(|s| s.get(field))
}

fn same(old: &Value, new: &Value, field: &str) -> bool {
    get(old, field) == get(new, field)
}

fn remove(svc: &mut Value, field: &str) {
    if let Some(spec) = spec_mut(svc) {
        spec.remove(field);
    }
}

fn node_ports_of(svc: &Value) -> Vec<Option<u16>> {
    ports(svc).into_iter().map(node_port).collect()
}

fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        // Released after the write (the allocator sees the old one go).
        if same(old, new, "clusterIP") && same(old, new, "clusterIPs") {
            remove(new, "clusterIP");
            remove(new, "clusterIPs");
        }
        if same(old, new, "ipFamilies") {
            remove(new, "ipFamilies");
        }
        if same(old, new, "ipFamilyPolicy") {
            remove(new, "ipFamilyPolicy");
        }
    }
    if needs_node_ports(old)
        && !needs_node_ports(new)
        && node_ports_of(old) == node_ports_of(new)
        && let Some(ports) = spec_mut(new)
            .and_then(|s| s.get_mut("ports"))
            .and_then(Value::as_array_mut)
    {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.remove("nodePort");
        }
    }
    let was_lb = service_type(old) == "LoadBalancer";
    if was_lb && service_type(new) != "LoadBalancer" {
        for field in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if same(old, new, field) {
                remove(new, field);
            }
        }
    }
    // Only externally reachable Services have an external traffic policy.
    let external = |svc: &Value| {
        needs_node_ports(svc)
            || get(svc, "externalIPs")
                .and_then(Value::as_array)
                .is_some_and(|ips| !ips.is_empty())
    };
    if external(old) && !external(new) && same(old, new, "externalTrafficPolicy") {
        remove(new, "externalTrafficPolicy");
    }
}

fn patch_allocated_values(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        let old_ip = cluster_ip(old).to_owned();
        let old_ips = cluster_ips(old);
        if let Some(spec) = spec_mut(new) {
            let empty = |v: Option<&Value>| match v {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(_) => false,
            };
            if empty(spec.get("clusterIP")) && !old_ip.is_empty() {
                spec.insert("clusterIP".into(), json!(old_ip));
            }
            if empty(spec.get("clusterIPs")) && !old_ips.is_empty() {
                spec.insert("clusterIPs".into(), Value::Array(old_ips));
            }
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        // Node ports both versions already use on some port cannot be patched into another.
        let old_ports = held_node_ports(old);
        let used: Vec<u16> = held_node_ports(new)
            .into_iter()
            .filter(|p| old_ports.contains(p))
            .collect();
        // By port name: the client may have changed anything else about the port.
        let by_name: Vec<(String, u16)> = ports(old)
            .into_iter()
            .filter_map(|p| node_port(p).map(|np| (port_name(p).to_owned(), np)))
            .collect();
        if let Some(ports) = spec_mut(new)
            .and_then(|s| s.get_mut("ports"))
            .and_then(Value::as_array_mut)
        {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                if node_port(port).is_some() {
                    continue;
                }
                let name = port_name(port).to_owned();
                if let Some((_, np)) = by_name.iter().find(|(n, _)| *n == name)
                    && !used.contains(np)
                {
                    port.insert("nodePort".into(), json!(np));
                }
            }
        }
    }
}

fn normalize_cluster_ips(old: &Value, new: &mut Value) {
    let old_ip = cluster_ip(old).to_owned();
    let new_ip = cluster_ip(new).to_owned();
    let old_ips = cluster_ips(old);
    let same_ips = old_ips == cluster_ips(new);
    // An older client that patched something else and sent no clusterIPs.
    if !old_ips.is_empty()
        && cluster_ips(new).is_empty()
        && old_ip == new_ip
        && let Some(spec) = spec_mut(new)
    {
        spec.insert("clusterIPs".into(), Value::Array(old_ips.clone()));
    }
    if old_ip != new_ip && same_ips {
        if !old_ip.is_empty() && new_ip.is_empty() {
            // Clearing clusterIP clears clusterIPs on the client's behalf.
            remove(new, "clusterIPs");
        } else if let Some(spec) = spec_mut(new) {
            spec.insert("clusterIPs".into(), json!([new_ip]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn types_decide_what_is_needed() {
        let cluster = svc(json!({}));
        assert!(needs_cluster_ip(&cluster) && !needs_node_ports(&cluster));
        let external = svc(json!({"type": "ExternalName"}));
        assert!(!needs_cluster_ip(&external));
        let lb = svc(json!({"type": "LoadBalancer"}));
        assert!(needs_node_ports(&lb) && allocates_node_ports(&lb));
        let lb_without =
            svc(json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false}));
        assert!(needs_node_ports(&lb_without) && !allocates_node_ports(&lb_without));
        assert!(allocates_node_ports(&svc(json!({"type": "NodePort"}))));
    }

    #[test]
    fn held_values() {
        let s = svc(
            json!({"type": "NodePort", "clusterIP": "10.43.0.5", "ports": [
                {"port": 53, "protocol": "UDP", "nodePort": 30053},
                {"port": 53, "protocol": "TCP", "nodePort": 30053},
                {"port": 80, "nodePort": 30080},
                {"port": 81}
            ]}),
        );
        assert_eq!(held_ip(&s), Some(Ipv4Addr::new(10, 43, 0, 5)));
        assert_eq!(held_node_ports(&s), [30053, 30080]);
        assert_eq!(held_ip(&svc(json!({"clusterIP": "None"}))), None);
        let external = svc(json!({"type": "ExternalName", "clusterIP": "10.43.0.5"}));
        assert_eq!(held_ip(&external), None);
        // A ClusterIP Service's stray nodePorts hold nothing.
        let cluster = svc(json!({"ports": [{"port": 80, "nodePort": 30080}]}));
        assert!(held_node_ports(&cluster).is_empty());
    }

    #[test]
    fn create_mirrors_cluster_ip() {
        let mut s = svc(json!({"clusterIP": "10.43.0.5"}));
        prepare_create(&mut s);
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.43.0.5"]));
        let mut s = svc(json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.6"]}));
        prepare_create(&mut s);
        assert_eq!(
            s["spec"]["clusterIPs"],
            json!(["10.43.0.6"]),
            "left to validation"
        );
    }

    #[test]
    fn update_keeps_allocated_values_the_client_left_out() {
        let old = svc(
            json!({"type": "NodePort", "clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
            "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30081}]}),
        );
        let mut new = svc(json!({"type": "NodePort",
            "ports": [{"name": "a", "port": 8080}, {"name": "b", "port": 81, "nodePort": 30099}, {"name": "c", "port": 82}]}));
        prepare_update(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.43.0.5");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.43.0.5"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30099);
        assert!(new["spec"]["ports"][2].get("nodePort").is_none());

        // A node port the new version uses elsewhere is not patched in twice.
        let mut swapped = svc(json!({"type": "NodePort",
            "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30080}]}));
        prepare_update(&old, &mut swapped);
        assert!(swapped["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn type_changes_drop_what_no_longer_applies() {
        let old = svc(
            json!({"type": "NodePort", "clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "nodePort": 30080}]}),
        );
        let mut to_cluster = old.clone();
        to_cluster["spec"]["type"] = json!("ClusterIP");
        prepare_update(&old, &mut to_cluster);
        assert!(to_cluster["spec"]["ports"][0].get("nodePort").is_none());
        assert!(to_cluster["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(to_cluster["spec"]["clusterIP"], "10.43.0.5");

        // A nodePort the client changed in the same write stays, for validation to refuse.
        let mut changed = old.clone();
        changed["spec"]["type"] = json!("ClusterIP");
        changed["spec"]["ports"][0]["nodePort"] = json!(30081);
        prepare_update(&old, &mut changed);
        assert_eq!(changed["spec"]["ports"][0]["nodePort"], 30081);

        let mut to_external = old.clone();
        to_external["spec"]["type"] = json!("ExternalName");
        to_external["spec"]["externalName"] = json!("db.example.com");
        prepare_update(&old, &mut to_external);
        for gone in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            assert!(to_external["spec"].get(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn cluster_ips_follow_cluster_ip_on_update() {
        let old = svc(json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"]}));
        // An old client sends clusterIP only.
        let mut only_singular = svc(json!({"clusterIP": "10.43.0.5"}));
        prepare_update(&old, &mut only_singular);
        assert_eq!(only_singular["spec"]["clusterIPs"], json!(["10.43.0.5"]));
        // Changing clusterIP alone changes clusterIPs with it (validation then refuses).
        let mut changed = svc(json!({"clusterIP": "10.43.0.6", "clusterIPs": ["10.43.0.5"]}));
        prepare_update(&old, &mut changed);
        assert_eq!(changed["spec"]["clusterIPs"], json!(["10.43.0.6"]));
    }
}

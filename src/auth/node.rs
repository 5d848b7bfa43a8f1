//! The node authorizer: what a node agent's credential (`system:node:NAME` in
//! `system:nodes`) may do, as kube-apiserver's Node authorizer and NodeRestriction
//! admission together allow it.
//!
//! A node reads what every node needs (pods, nodes, services, endpoints, EndpointSlices,
//! namespaces), reads a Secret, ConfigMap or ServiceAccount only when a pod bound to it
//! uses it, and writes only its own Node and Lease, the status of its own pods (and
//! deletes them once they have stopped), and Events. Everything else gets no opinion here,
//! so RBAC decides (and grants nodes nothing by default).

use serde_json::Value;

use super::{Attributes, Decision};

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Objects a pod can reference that a node may then read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    /// A Secret (volumes, env, imagePullSecrets).
    Secret,
    /// A ConfigMap (volumes, env).
    ConfigMap,
    /// The pod's ServiceAccount.
    ServiceAccount,
}

/// What the authorizer needs to know about pods.
pub trait NodeGraph {
    /// The node a pod is bound to (`Some("")` if unbound), `None` if there is no such pod.
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String>;
    /// Whether a pod bound to `node` in `namespace` references the object `name` of `kind`.
    fn node_references(&self, node: &str, kind: RefKind, namespace: &str, name: &str) -> bool;
}

/// The decision for `attrs`: [`Decision::NoOpinion`] for anyone not a node.
pub fn authorize(graph: &impl NodeGraph, attrs: &Attributes) -> Decision {
    let Some(node) = attrs.user.node_name() else {
        return Decision::NoOpinion;
    };
    let Some(r) = &attrs.resource else {
        // Renewing its own certificate (the handler checks it is for this node).
        if attrs.path == super::NODE_CERTIFICATE_PATH && attrs.verb == "post" {
            return Decision::Allow(format!("node {node:?}: renews its certificate"));
        }
        return Decision::NoOpinion;
    };
    let verb = attrs.verb.as_str();
    let read = matches!(verb, "get" | "list" | "watch");
    let allow = |why: &str| Decision::Allow(format!("node {node:?}: {why}"));
    match (
        r.group.as_str(),
        r.resource.as_str(),
        r.subresource.as_str(),
    ) {
        ("", "pods", "") if read => allow("nodes read pods"),
        ("", "pods", "status") if matches!(verb, "get" | "update" | "patch") => {
            match graph.pod_node(&r.namespace, &r.name) {
                Some(bound) if bound == node => allow("the pod is bound to this node"),
                Some(_) => Decision::Deny(format!(
                    "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                )),
                None => Decision::NoOpinion,
            }
        }
        ("", "pods", "") if verb == "delete" => match graph.pod_node(&r.namespace, &r.name) {
            Some(bound) if bound == node => allow("the pod is bound to this node"),
            Some(_) => Decision::Deny(format!(
                "node {node:?} can only delete pods with spec.nodeName set to itself"
            )),
            None => Decision::NoOpinion,
        },
        ("", "nodes", "" | "status") if read && r.subresource.is_empty() => {
            allow("nodes read nodes")
        }
        ("", "nodes", "" | "status") if matches!(verb, "get" | "create" | "update" | "patch") => {
            if r.name == node {
                allow("its own Node")
            } else {
                Decision::Deny(format!(
                    "node {node:?} is not allowed to modify node {:?}",
                    r.name
                ))
            }
        }
        ("", "services" | "endpoints" | "namespaces", "") if read => {
            allow("nodes read services, endpoints and namespaces")
        }
        ("discovery.k8s.io", "endpointslices", "") if read => allow("nodes read EndpointSlices"),
        ("", "events", "") | ("events.k8s.io", "events", "")
            if matches!(verb, "create" | "update" | "patch") =>
        {
            allow("nodes record events")
        }
        ("coordination.k8s.io", "leases", "")
            if matches!(verb, "get" | "create" | "update" | "patch" | "delete") =>
        {
            if r.namespace == NODE_LEASE_NAMESPACE && r.name == node {
                allow("its own Lease")
            } else {
                Decision::Deny(format!(
                    "node {node:?} can only access its own Lease {NODE_LEASE_NAMESPACE}/{node}"
                ))
            }
        }
        ("", kind @ ("secrets" | "configmaps" | "serviceaccounts"), "") if verb == "get" => {
            let kind = match kind {
                "secrets" => RefKind::Secret,
                "configmaps" => RefKind::ConfigMap,
                _ => RefKind::ServiceAccount,
            };
            if graph.node_references(node, kind, &r.namespace, &r.name) {
                allow("a pod bound to this node uses it")
            } else {
                Decision::Deny(format!(
                    "no relationship found between node {node:?} and this object"
                ))
            }
        }
        _ => Decision::NoOpinion,
    }
}

/// Whether `pod` (its JSON) references the object `name` of `kind` (in its namespace).
pub fn pod_references(pod: &Value, kind: RefKind, name: &str) -> bool {
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    match kind {
        RefKind::ServiceAccount => {
            let account = spec["serviceAccountName"].as_str().unwrap_or("default");
            account == name
        }
        RefKind::Secret | RefKind::ConfigMap => {
            let (volume_key, volume_name, env_key, from_key, projected_key) = match kind {
                RefKind::Secret => (
                    "secret",
                    "secretName",
                    "secretKeyRef",
                    "secretRef",
                    "secret",
                ),
                _ => (
                    "configMap",
                    "name",
                    "configMapKeyRef",
                    "configMapRef",
                    "configMap",
                ),
            };
            let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
            if kind == RefKind::Secret
                && items(&spec["imagePullSecrets"])
                    .iter()
                    .any(|s| is(&s["name"]))
            {
                return true;
            }
            for volume in items(&spec["volumes"]) {
                if is(&volume[volume_key][volume_name]) {
                    return true;
                }
                for source in items(&volume["projected"]["sources"]) {
                    if is(&source[projected_key]["name"]) {
                        return true;
                    }
                }
            }
            let containers = ["initContainers", "containers", "ephemeralContainers"]
                .iter()
                .flat_map(|k| items(&spec[*k]))
                .collect::<Vec<_>>();
            containers.iter().any(|c| {
                items(&c["env"])
                    .iter()
                    .any(|e| is(&e["valueFrom"][env_key]["name"]))
                    || items(&c["envFrom"])
                        .iter()
                        .any(|e| is(&e[from_key]["name"]))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{GROUP_NODES, ResourceAttributes, UserInfo};
    use serde_json::json;

    struct Pods(Vec<Value>);

    impl NodeGraph for Pods {
        fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
                .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_owned())
        }
        fn node_references(&self, node: &str, kind: RefKind, namespace: &str, name: &str) -> bool {
            self.0.iter().any(|p| {
                p["spec"]["nodeName"] == node
                    && p["metadata"]["namespace"] == namespace
                    && pod_references(p, kind, name)
            })
        }
    }

    fn pods() -> Pods {
        Pods(vec![
            json!({"metadata": {"namespace": "default", "name": "a"}, "spec": {
                "nodeName": "n1",
                "volumes": [{"name": "v", "secret": {"secretName": "s1"}},
                            {"name": "p", "projected": {"sources": [{"configMap": {"name": "cm2"}}]}}],
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm1"}}],
                                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}]}]}}),
            json!({"metadata": {"namespace": "default", "name": "b"}, "spec": {
                "nodeName": "n2", "volumes": [{"name": "v", "secret": {"secretName": "s3"}}],
                "containers": [{"name": "c"}]}}),
        ])
    }

    fn ask(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Decision {
        let user = UserInfo::new(format!("system:node:{user}"), [GROUP_NODES.to_owned()]);
        authorize(
            &pods(),
            &Attributes {
                user,
                verb: verb.to_owned(),
                resource: Some(ResourceAttributes {
                    group: group.to_owned(),
                    resource: resource.to_owned(),
                    subresource: sub.to_owned(),
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                }),
                path: String::new(),
            },
        )
    }

    #[test]
    fn nodes_write_only_their_own_objects() {
        assert!(ask("n1", "patch", "", "pods", "status", "default", "a").allowed());
        assert!(matches!(
            ask("n1", "patch", "", "pods", "status", "default", "b"),
            Decision::Deny(_)
        ));
        assert!(ask("n1", "delete", "", "pods", "", "default", "a").allowed());
        assert!(!ask("n1", "delete", "", "pods", "", "default", "b").allowed());
        assert!(!ask("n1", "create", "", "pods", "", "default", "").allowed());
        assert!(ask("n1", "patch", "", "nodes", "status", "", "n1").allowed());
        assert!(!ask("n1", "patch", "", "nodes", "status", "", "n2").allowed());
        assert!(ask("n1", "create", "", "nodes", "", "", "n1").allowed());
        assert!(!ask("n1", "delete", "", "nodes", "", "", "n1").allowed());
        assert!(
            ask(
                "n1",
                "update",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-node-lease",
                "n1"
            )
            .allowed()
        );
        assert!(
            !ask(
                "n1",
                "update",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-node-lease",
                "n2"
            )
            .allowed()
        );
        assert!(
            !ask(
                "n1",
                "update",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-system",
                "n1"
            )
            .allowed()
        );
        assert!(ask("n1", "create", "", "events", "", "default", "").allowed());
    }

    #[test]
    fn nodes_read_only_what_their_pods_use() {
        for (kind, name) in [
            ("secrets", "s1"),
            ("secrets", "s2"),
            ("configmaps", "cm1"),
            ("configmaps", "cm2"),
            ("serviceaccounts", "default"),
        ] {
            assert!(
                ask("n1", "get", "", kind, "", "default", name).allowed(),
                "{kind}/{name}"
            );
        }
        assert!(!ask("n1", "get", "", "secrets", "", "default", "s3").allowed());
        assert!(ask("n2", "get", "", "secrets", "", "default", "s3").allowed());
        assert!(!ask("n1", "list", "", "secrets", "", "default", "").allowed());
        assert!(!ask("n1", "get", "", "secrets", "", "other", "s1").allowed());
        assert!(ask("n1", "watch", "", "pods", "", "", "").allowed());
        assert!(
            ask(
                "n1",
                "list",
                "discovery.k8s.io",
                "endpointslices",
                "",
                "",
                ""
            )
            .allowed()
        );
        assert_eq!(
            ask("n1", "create", "apps", "deployments", "", "default", ""),
            Decision::NoOpinion
        );
    }

    #[test]
    fn others_get_no_opinion() {
        let attrs = Attributes {
            user: UserInfo::new("system:node:n1", []),
            verb: "get".to_owned(),
            resource: Some(ResourceAttributes {
                resource: "secrets".to_owned(),
                namespace: "default".to_owned(),
                name: "s1".to_owned(),
                ..Default::default()
            }),
            path: String::new(),
        };
        // The name alone does not make a node: the group is needed too.
        assert_eq!(authorize(&pods(), &attrs), Decision::NoOpinion);
    }
}

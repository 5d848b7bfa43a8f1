//! The registry of served kinds: one table describes every resource — group, version,
//! plural, kind, scope, short names, categories and subresources — and drives routing,
//! discovery, storage keys, defaulting and validation. Adding a kind is one entry here plus
//! its defaulting and validation rules, never a new handler.

use crate::store::key;

/// A subresource a kind serves besides the main resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subresource {
    /// `{name}/status`: writes change only `.status`.
    Status,
    /// `{name}/scale`: an autoscaling/v1 Scale view of `.spec.replicas`.
    Scale,
    /// `pods/{name}/binding`: assigns a pod to a node.
    Binding,
    /// `pods/{name}/log`: the container's output, proxied from its node agent.
    Log,
}

impl Subresource {
    /// The path segment, e.g. `status`.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
        }
    }

    /// The subresource for a path segment.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Status, Self::Scale, Self::Binding, Self::Log]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// One served resource.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Version, e.g. `v1`.
    pub version: &'static str,
    /// Plural resource name, e.g. `pods`.
    pub plural: &'static str,
    /// Singular name, e.g. `pod`.
    pub singular: &'static str,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names kubectl accepts, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `all`.
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
}

/// Verbs every resource serves.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `v1` for the core group, `apps/v1` otherwise: what objects carry in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether the kind serves `sub`.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        key::object_key(
            self.group,
            self.plural,
            self.namespace_for_key(namespace),
            name,
        )
    }

    /// The storage prefix of all objects (in one namespace when given and namespaced).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        key::resource_prefix(self.group, self.plural, self.namespace_for_key(namespace))
    }

    fn namespace_for_key<'a>(&self, namespace: Option<&'a str>) -> Option<&'a str> {
        if self.namespaced { namespace } else { None }
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $namespaced:expr,
     [$($short:expr),*], [$($cat:expr),*], [$($sub:ident),*]) => {
        ResourceInfo {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $namespaced,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$(Subresource::$sub),*],
        }
    };
}

/// Every kind moor serves.
pub static RESOURCES: &[ResourceInfo] = &[
    resource!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        ["ns"],
        [],
        [Status]
    ),
    resource!(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        ["po"],
        ["all"],
        [Status, Binding, Log]
    ),
    resource!(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        ["no"],
        [],
        [Status]
    ),
    resource!(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        ["svc"],
        ["all"],
        [Status]
    ),
    resource!(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        ["ep"],
        [],
        []
    ),
    resource!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        ["cm"],
        [],
        []
    ),
    resource!("", "v1", "secrets", "secret", "Secret", true, [], [], []),
    resource!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        ["sa"],
        [],
        []
    ),
    resource!("", "v1", "events", "event", "Event", true, ["ev"], [], []),
    resource!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        ["deploy"],
        ["all"],
        [Status, Scale]
    ),
    resource!(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        ["rs"],
        ["all"],
        [Status, Scale]
    ),
    resource!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        [],
        [],
        []
    ),
    resource!(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        [],
        [],
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        [],
        [],
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        [],
        [],
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        [],
        [],
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        [],
        [],
        []
    ),
    resource!(
        "moor.dev",
        "v1alpha1",
        "manifestsources",
        "manifestsource",
        "ManifestSource",
        false,
        ["msrc"],
        [],
        [Status]
    ),
];

/// Look up a resource by group, version and plural (what a URL names).
pub fn by_resource(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look up a resource by `apiVersion` and `kind` (what an object names).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The API groups served besides the core group, in the order discovery lists them, each
/// with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

/// Resources of one group/version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_agree() {
        for r in RESOURCES {
            assert_eq!(by_resource(r.group, r.version, r.plural), Some(r));
            assert_eq!(by_kind(&r.api_version(), r.kind), Some(r));
        }
        assert!(by_resource("", "v1", "nope").is_none());
    }

    #[test]
    fn short_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in RESOURCES {
            for s in r.short_names {
                assert!(seen.insert(*s), "duplicate short name {s}");
            }
        }
    }

    #[test]
    fn keys_follow_the_store_layout() {
        let pods = by_resource("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let nodes = by_resource("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "box1"), "/registry/nodes/box1");
        let deploy = by_resource("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.prefix(None), "/registry/apps/deployments/");
        assert_eq!(deploy.api_version(), "apps/v1");
        let roles = by_resource("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        assert_eq!(
            roles.key(Some("default"), "reader"),
            "/registry/rbac.authorization.k8s.io/roles/default/reader"
        );
        let crb = by_kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding").unwrap();
        assert!(!crb.namespaced);
        assert_eq!(
            crb.key(Some("ignored"), "cluster-admin"),
            "/registry/rbac.authorization.k8s.io/clusterrolebindings/cluster-admin"
        );
    }

    #[test]
    fn groups_are_listed_once() {
        let groups = groups();
        assert_eq!(groups[0], ("apps", vec!["v1"]));
        assert_eq!(groups.len(), 5);
        assert!(groups.contains(&("rbac.authorization.k8s.io", vec!["v1"])));
    }
}

//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`,
//! all generated from the registry so a new kind appears everywhere at once.

use serde_json::{Value, json};

use crate::api::registry::{self, ResourceInfo, Subresource, VERBS};

/// The Kubernetes version moor reports (the API level it serves).
pub const KUBE_MAJOR: &str = "1";
/// Minor version.
pub const KUBE_MINOR: &str = "33";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-moor.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// `/apis`.
pub fn groups() -> Value {
    let groups: Vec<Value> = registry::groups()
        .into_iter()
        .map(|(group, versions)| group_doc(group, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, when the group is served.
pub fn group(name: &str) -> Option<Value> {
    registry::groups()
        .into_iter()
        .find(|(g, _)| *g == name)
        .map(|(g, versions)| {
            let mut doc = group_doc(g, &versions);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        })
}

fn group_doc(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

/// `/api/v1` or `/apis/{group}/{version}`, when served.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in registry::in_group_version(group, version) {
        resources.push(resource_doc(r));
        for sub in r.subresources {
            resources.push(subresource_doc(r, *sub));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn resource_doc(r: &ResourceInfo) -> Value {
    let mut doc = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        doc["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        doc["categories"] = json!(r.categories);
    }
    doc
}

fn subresource_doc(r: &ResourceInfo, sub: Subresource) -> Value {
    let name = format!("{}/{}", r.plural, sub.name());
    match sub {
        Subresource::Status => json!({
            "name": name, "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
            "verbs": ["get", "patch", "update"],
        }),
        Subresource::Scale => json!({
            "name": name, "singularName": "", "namespaced": r.namespaced, "kind": "Scale",
            "group": "autoscaling", "version": "v1", "verbs": ["get", "patch", "update"],
        }),
        Subresource::Binding => json!({
            "name": name, "singularName": "", "namespaced": r.namespaced, "kind": "Binding",
            "verbs": ["create"],
        }),
        Subresource::Log => json!({
            "name": name, "singularName": "", "namespaced": r.namespaced, "kind": "Pod",
            "verbs": ["get"],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_v1_lists_pods_with_short_names_and_subresources() {
        let doc = resources("", "v1").unwrap();
        let list = doc["resources"].as_array().unwrap();
        let pods = list.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(list.iter().any(|r| r["name"] == "pods/status"));
        assert!(list.iter().any(|r| r["name"] == "pods/binding"));
        assert!(resources("nope", "v1").is_none());
    }

    #[test]
    fn rbac_kinds_are_discovered_with_their_scopes() {
        let doc = resources("rbac.authorization.k8s.io", "v1").unwrap();
        assert_eq!(doc["groupVersion"], "rbac.authorization.k8s.io/v1");
        let list = doc["resources"].as_array().unwrap();
        for (name, kind, namespaced) in [
            ("roles", "Role", true),
            ("rolebindings", "RoleBinding", true),
            ("clusterroles", "ClusterRole", false),
            ("clusterrolebindings", "ClusterRoleBinding", false),
        ] {
            let r = list.iter().find(|r| r["name"] == name).unwrap();
            assert_eq!(r["kind"], kind);
            assert_eq!(r["namespaced"], namespaced);
            assert_eq!(r["verbs"], json!(VERBS));
        }
        assert_eq!(list.len(), 4);
        assert!(
            groups()["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "rbac.authorization.k8s.io")
        );
    }

    #[test]
    fn groups_have_preferred_versions() {
        let doc = groups();
        let apps = doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "apps")
            .unwrap();
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert_eq!(group("apps").unwrap()["kind"], "APIGroup");
    }
}

//! Storage keys: where an object of a given group/resource/namespace/name lives.
//!
//! Layout: `/registry/{group}/{resource}/{namespace}/{name}` for namespaced objects and
//! `/registry/{group}/{resource}/{name}` for cluster-scoped ones. The core group (`""`) has
//! no group segment, as kube-apiserver lays it out (`/registry/pods/default/web-0`). Every
//! prefix ends with `/` so `pods` never matches `podtemplates`.

/// The key of one object.
pub fn object_key(group: &str, resource: &str, namespace: Option<&str>, name: &str) -> String {
    let mut key = resource_prefix(group, resource, namespace);
    key.push_str(name);
    key
}

/// The prefix under which every object of a resource lives (in one namespace when given,
/// across all namespaces otherwise). Always ends with `/`.
pub fn resource_prefix(group: &str, resource: &str, namespace: Option<&str>) -> String {
    let mut key = String::from("/registry/");
    if !group.is_empty() {
        key.push_str(group);
        key.push('/');
    }
    key.push_str(resource);
    key.push('/');
    if let Some(ns) = namespace {
        key.push_str(ns);
        key.push('/');
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_group_has_no_group_segment() {
        assert_eq!(
            object_key("", "pods", Some("default"), "web-0"),
            "/registry/pods/default/web-0"
        );
        assert_eq!(
            object_key("", "nodes", None, "box1"),
            "/registry/nodes/box1"
        );
    }

    #[test]
    fn named_groups_are_prefixed() {
        assert_eq!(
            object_key("apps", "deployments", Some("default"), "web"),
            "/registry/apps/deployments/default/web"
        );
        assert_eq!(
            resource_prefix("coordination.k8s.io", "leases", None),
            "/registry/coordination.k8s.io/leases/"
        );
    }

    #[test]
    fn prefixes_do_not_overlap_similar_names() {
        let pods = resource_prefix("", "pods", None);
        assert!(!object_key("", "podtemplates", Some("a"), "b").starts_with(&pods));
    }
}

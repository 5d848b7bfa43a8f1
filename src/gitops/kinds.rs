//! Which kinds the cluster serves (from API discovery, so `moor diff` against another
//! server sees that server's kinds), how objects are identified, and the order in which
//! kinds are applied: what a dependency comes before what depends on it.

use std::collections::HashMap;
use std::fmt;

use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

/// One served kind.
#[derive(Clone, Debug)]
pub struct Kind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

/// The kinds a server serves, by `apiVersion` and kind.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    kinds: HashMap<(String, String), Kind>,
}

impl Catalog {
    /// Ask the server (API discovery).
    pub async fn discover(client: &Client) -> Result<Catalog, kube::Error> {
        let discovery = Discovery::new(client.clone()).run().await?;
        let mut kinds = HashMap::new();
        for group in discovery.groups() {
            for (resource, capabilities) in group.recommended_resources() {
                let ApiCapabilities { scope, .. } = &capabilities;
                if !capabilities.supports_operation(kube::discovery::verbs::LIST) {
                    continue;
                }
                let namespaced = matches!(scope, Scope::Namespaced);
                kinds.insert(
                    (resource.api_version.clone(), resource.kind.clone()),
                    Kind {
                        resource,
                        namespaced,
                    },
                );
            }
        }
        Ok(Catalog { kinds })
    }

    /// The kinds this build of moor serves, without asking a server: for in-process use
    /// and tests.
    pub fn from_registry() -> Catalog {
        let kinds = crate::api::registry::RESOURCES
            .iter()
            .map(|r| {
                let resource = ApiResource {
                    group: r.group.to_owned(),
                    version: r.version.to_owned(),
                    api_version: r.api_version(),
                    kind: r.kind.to_owned(),
                    plural: r.plural.to_owned(),
                };
                let kind = Kind {
                    resource,
                    namespaced: r.namespaced,
                };
                ((r.api_version(), r.kind.to_owned()), kind)
            })
            .collect();
        Catalog { kinds }
    }

    /// The kind an object names, if served.
    pub fn get(&self, api_version: &str, kind: &str) -> Option<&Kind> {
        self.kinds.get(&(api_version.to_owned(), kind.to_owned()))
    }

    /// Every served kind.
    pub fn all(&self) -> impl Iterator<Item = &Kind> {
        self.kinds.values()
    }
}

/// An object's identity: what a manifest names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    /// e.g. `apps/v1`.
    pub api_version: String,
    /// e.g. `Deployment`.
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectId {
    /// The API group (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {} {}", self.api_version, self.kind, self.name)
        } else {
            write!(
                f,
                "{} {} {}/{}",
                self.api_version, self.kind, self.namespace, self.name
            )
        }
    }
}

/// The apply order of a kind: lower first; deletes go the other way. Namespaces first, then
/// what pods consume (service accounts, config, secrets), then services (so environment
/// variables and endpoints exist when workloads start), then workloads and the rest.
pub fn tier(group: &str, kind: &str) -> u8 {
    match (group, kind) {
        ("", "Namespace") => 0,
        ("", "ServiceAccount" | "ConfigMap" | "Secret") => 1,
        ("", "Service" | "Endpoints") | ("discovery.k8s.io", "EndpointSlice") => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_like_kubectl_names_them() {
        let id = ObjectId {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: "web".into(),
        };
        assert_eq!(id.to_string(), "apps/v1 Deployment default/web");
        assert_eq!(id.group(), "apps");
        let ns = ObjectId {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: "team".into(),
        };
        assert_eq!(ns.to_string(), "v1 Namespace team");
        assert_eq!(ns.group(), "");
    }

    #[test]
    fn dependencies_come_first() {
        assert!(tier("", "Namespace") < tier("", "ConfigMap"));
        assert!(tier("", "Secret") < tier("", "Service"));
        assert!(tier("", "Service") < tier("apps", "Deployment"));
        assert_eq!(tier("moor.dev", "ManifestSource"), 3);
    }
}

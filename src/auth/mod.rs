//! Who is calling and what they may do: the identities requests carry ([`UserInfo`]),
//! what a request asks to do ([`Attributes`]), and the authorizers that decide —
//! [`rbac`] (Roles and bindings) and [`node`] (what a node agent's credential may touch).
//! The cluster's certificate authority and the certificates it signs live in [`pki`];
//! working out who a request comes from (certificates, tokens) lives in [`authn`].
//!
//! This module knows nothing of HTTP: the API server turns a request into [`Attributes`]
//! and asks.

pub mod authn;
pub mod node;
pub mod pki;
pub mod rbac;

use std::collections::BTreeMap;

use serde::Serialize;

/// Everyone with full access, whatever RBAC says (kube-apiserver's superuser group).
pub const GROUP_MASTERS: &str = "system:masters";
/// Every authenticated request.
pub const GROUP_AUTHENTICATED: &str = "system:authenticated";
/// Requests with no credential (only ever allowed the health and version endpoints).
pub const GROUP_UNAUTHENTICATED: &str = "system:unauthenticated";
/// Node agents (`system:node:NAME`).
pub const GROUP_NODES: &str = "system:nodes";
/// Holders of a bootstrap token (`system:bootstrap:ID`).
pub const GROUP_BOOTSTRAPPERS: &str = "system:bootstrappers";
/// Every ServiceAccount.
pub const GROUP_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// moor's join endpoint: a node agent (or a bootstrap token's holder) posts a certificate
/// signing request here and gets its client certificate back.
pub const NODE_CERTIFICATE_PATH: &str = "/moor/v1/node-certificate";
/// The prefix of node agents' user names.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// An authenticated (or anonymous) caller: kube-apiserver's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The user name, e.g. `admin`, `system:node:n1`,
    /// `system:serviceaccount:default:build`.
    pub name: String,
    /// A unique id, when the credential carries one (ServiceAccounts: their uid).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Groups, including `system:authenticated` for everyone authenticated.
    pub groups: Vec<String>,
    /// Extra attributes (ServiceAccount tokens bound to a pod carry the pod's name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user `name` in `groups` (plus `system:authenticated`).
    pub fn new(name: impl Into<String>, groups: impl IntoIterator<Item = String>) -> Self {
        let mut groups: Vec<String> = groups.into_iter().collect();
        if !groups.iter().any(|g| g == GROUP_AUTHENTICATED) {
            groups.push(GROUP_AUTHENTICATED.to_owned());
        }
        Self {
            name: name.into(),
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        }
    }

    /// The caller with no credential.
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".to_owned(),
            uid: String::new(),
            groups: vec![GROUP_UNAUTHENTICATED.to_owned()],
            extra: BTreeMap::new(),
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node a node agent's credential speaks for (`system:node:NAME` in
    /// `system:nodes`), if it is one.
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(GROUP_NODES) {
            return None;
        }
        self.name
            .strip_prefix(NODE_USER_PREFIX)
            .filter(|n| !n.is_empty())
    }
}

/// What a resource request touches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource, e.g. `pods`.
    pub resource: String,
    /// Subresource, e.g. `status`, or empty.
    pub subresource: String,
    /// Namespace, or empty for cluster-scoped requests (and lists across namespaces).
    pub namespace: String,
    /// Object name, or empty for lists and creates.
    pub name: String,
}

/// What a request asks to do: kube-apiserver's `authorizer.Attributes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// For resources: get, list, watch, create, update, patch, delete, deletecollection
    /// (and the special verbs such as `bind`); for other paths the lowercase HTTP method.
    pub verb: String,
    /// The resource touched; `None` for a non-resource path such as `/version`.
    pub resource: Option<ResourceAttributes>,
    /// The request path (what non-resource rules match).
    pub path: String,
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with the reason (what rule allowed it).
    Allow(String),
    /// Refused outright: later authorizers are not asked.
    Deny(String),
    /// Neither: the next authorizer decides; if none does, the request is refused.
    NoOpinion,
}

impl Decision {
    /// Whether the request may go ahead.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

impl Attributes {
    /// What an HTTP request asks to do, as kube-apiserver's RequestInfo reads a URL:
    /// `/api/v1/...` and `/apis/GROUP/VERSION/...` name resources (optionally under
    /// `namespaces/NS/`), with the verb from the method (`watch=true` makes a get or list a
    /// watch); every other path, and discovery paths, are non-resource requests whose verb
    /// is the lowercase method.
    pub fn from_request(user: UserInfo, method: &str, path: &str, query: Option<&str>) -> Self {
        let non_resource = |user| Attributes {
            user,
            verb: method.to_ascii_lowercase(),
            resource: None,
            path: path.to_owned(),
        };
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return non_resource(user),
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => {
                // `namespaces/NAME/status` and `/finalize` are the namespace's own
                // subresources, not resources in it.
                if matches!(rest, ["status" | "finalize"]) {
                    (*ns, &["namespaces", ns, rest[0]][..])
                } else {
                    (*ns, rest)
                }
            }
            rest => ("", rest),
        };
        let (resource, name, subresource) = match rest {
            [] => return non_resource(user),
            [resource] => (*resource, "", ""),
            [resource, name] => (*resource, *name, ""),
            [resource, name, sub, ..] => (*resource, *name, *sub),
        };
        // `namespaces/NAME` names the namespace itself (cluster-scoped).
        let namespace = if resource == "namespaces" {
            ""
        } else {
            namespace
        };
        let watch = query
            .map(|q| {
                q.split('&')
                    .any(|kv| matches!(kv, "watch=true" | "watch=1" | "watch"))
            })
            .unwrap_or(false);
        let verb = match method {
            "GET" | "HEAD" if watch => "watch",
            "GET" | "HEAD" if name.is_empty() => "list",
            "GET" | "HEAD" => "get",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if name.is_empty() => "deletecollection",
            "DELETE" => "delete",
            other => return non_resource_with(user, other, path),
        };
        Attributes {
            user,
            verb: verb.to_owned(),
            resource: Some(ResourceAttributes {
                group: group.to_owned(),
                resource: resource.to_owned(),
                subresource: subresource.to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }),
            path: path.to_owned(),
        }
    }

    /// kube-apiserver's wording of a refusal: `pods "web" is forbidden: User "bob" cannot
    /// get resource "pods" in API group "" in the namespace "default"`.
    pub fn forbidden_message(&self, reason: &str) -> String {
        let user = &self.user.name;
        let mut message = match &self.resource {
            Some(r) => {
                let resource = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let what = if r.name.is_empty() {
                    format!("{resource} is forbidden")
                } else {
                    format!("{resource} {:?} is forbidden", r.name)
                };
                let scope = if r.namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace {:?}", r.namespace)
                };
                format!(
                    "{what}: User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                    self.verb, r.group
                )
            }
            None => format!(
                "forbidden: User {user:?} cannot {} path {:?}",
                self.verb, self.path
            ),
        };
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        message
    }
}

fn non_resource_with(user: UserInfo, method: &str, path: &str) -> Attributes {
    Attributes {
        user,
        verb: method.to_ascii_lowercase(),
        resource: None,
        path: path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> (String, Option<ResourceAttributes>) {
        let a = Attributes::from_request(UserInfo::anonymous(), method, path, query);
        (a.verb, a.resource)
    }

    fn res(
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Option<ResourceAttributes> {
        Some(ResourceAttributes {
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
        })
    }

    #[test]
    fn urls_become_attributes_as_kube_apiserver_reads_them() {
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/default/pods", None),
            ("list".into(), res("", "pods", "", "default", ""))
        );
        assert_eq!(
            attrs("GET", "/api/v1/pods", Some("watch=true&labelSelector=a")),
            ("watch".into(), res("", "pods", "", "", ""))
        );
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/default/pods/web/log", None),
            ("get".into(), res("", "pods", "log", "default", "web"))
        );
        assert_eq!(
            attrs("PATCH", "/api/v1/namespaces/d/pods/web/status", None),
            ("patch".into(), res("", "pods", "status", "d", "web"))
        );
        assert_eq!(
            attrs("POST", "/apis/apps/v1/namespaces/d/deployments", None),
            ("create".into(), res("apps", "deployments", "", "d", ""))
        );
        assert_eq!(
            attrs("DELETE", "/apis/apps/v1/namespaces/d/deployments", None),
            (
                "deletecollection".into(),
                res("apps", "deployments", "", "d", "")
            )
        );
        assert_eq!(
            attrs("GET", "/api/v1/namespaces/kube-system", None),
            ("get".into(), res("", "namespaces", "", "", "kube-system"))
        );
        assert_eq!(
            attrs("PUT", "/api/v1/namespaces/x/finalize", None),
            ("update".into(), res("", "namespaces", "finalize", "", "x"))
        );
        assert_eq!(
            attrs("GET", "/api/v1/nodes/n1", None),
            ("get".into(), res("", "nodes", "", "", "n1"))
        );
        // Discovery and other paths are non-resource requests.
        assert_eq!(attrs("GET", "/apis/apps/v1", None), ("get".into(), None));
        assert_eq!(attrs("GET", "/api", None), ("get".into(), None));
        assert_eq!(attrs("GET", "/version", None), ("get".into(), None));
        assert_eq!(
            attrs("POST", "/moor/v1/node-certificate", None),
            ("post".into(), None)
        );
    }

    #[test]
    fn refusals_read_like_kube_apiservers() {
        let a = Attributes::from_request(
            UserInfo::new("bob", []),
            "GET",
            "/api/v1/namespaces/default/pods",
            None,
        );
        assert_eq!(
            a.forbidden_message(""),
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }
}

//! What a request asks for: the resource, namespace, name and subresource a URL names, the
//! query parameters kube-apiserver understands, and the body in whatever format it came.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;

use super::error::ApiError;
use crate::api::registry::{self, ResourceInfo, Subresource};

/// Where the dispatcher keeps the request's User-Agent program among the parameters (a
/// name no client sends as a query parameter).
pub const USER_AGENT_PARAM: &str = "\u{0}user-agent";

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The object(s) a URL names.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub info: &'static ResourceInfo,
    /// The namespace from the URL (`None`: cluster-scoped or across all namespaces).
    pub namespace: Option<String>,
    /// The object's name (`None`: the collection).
    pub name: Option<String>,
    /// The subresource.
    pub subresource: Option<Subresource>,
}

/// What a path under `/api` or `/apis` is.
#[derive(Debug)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/{group}`, `/apis/{group}/{version}`
    GroupVersion {
        /// Group.
        group: String,
        /// Version (`None` for `/apis/{group}`).
        version: Option<String>,
    },
    /// A resource or object.
    Resource(Target),
}

/// Parse the segments after `/api` (`core = true`) or `/apis`.
pub fn parse_path(core: bool, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = || ApiError::no_route(path);
    let (group, rest): (&str, &[&str]) = if core {
        match segments.as_slice() {
            [] => return Ok(Route::CoreVersions),
            rest => ("", rest),
        }
    } else {
        match segments.as_slice() {
            [] => return Ok(Route::Groups),
            [group] => {
                return Ok(Route::GroupVersion {
                    group: (*group).to_owned(),
                    version: None,
                });
            }
            [group, rest @ ..] => (group, rest),
        }
    };
    let (version, rest) = match rest {
        [version] => {
            return Ok(Route::GroupVersion {
                group: group.to_owned(),
                version: Some((*version).to_owned()),
            });
        }
        [version, rest @ ..] => (*version, rest),
        [] => return Err(not_found()),
    };
    let lookup = |plural: &str| registry::by_resource(group, version, plural).ok_or_else(not_found);
    let sub = |name: &str| Subresource::from_name(name).ok_or_else(not_found);
    let target = |info: &'static ResourceInfo, ns: Option<&str>, name: Option<&str>, subres| {
        Route::Resource(Target {
            info,
            namespace: ns.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: subres,
        })
    };
    // `namespaces/{ns}/{resource}...` names a namespaced resource, unless the third segment
    // is a subresource of the namespace itself (`namespaces/{name}/status`).
    Ok(match rest {
        ["namespaces", ns, plural, tail @ ..]
            if group.is_empty() && Subresource::from_name(plural).is_none()
                || !group.is_empty() =>
        {
            let info = lookup(plural)?;
            if !info.namespaced {
                return Err(not_found());
            }
            match tail {
                [] => target(info, Some(ns), None, None),
                [name] => target(info, Some(ns), Some(name), None),
                [name, s] => target(info, Some(ns), Some(name), Some(sub(s)?)),
                _ => return Err(not_found()),
            }
        }
        [plural] => target(lookup(plural)?, None, None, None),
        [plural, name] => {
            let info = lookup(plural)?;
            if info.namespaced {
                return Err(not_found());
            }
            target(info, None, Some(name), None)
        }
        [plural, name, s] => {
            let info = lookup(plural)?;
            if info.namespaced {
                return Err(not_found());
            }
            target(info, None, Some(name), Some(sub(s)?))
        }
        _ => return Err(not_found()),
    })
}

/// The namespace a `namespaces/{name}/finalize` path names (core group, v1): a subresource
/// with rules of its own, served by the finalize handler rather than the generic verbs.
pub fn namespace_finalize(core: bool, path: &str) -> Option<&str> {
    if !core {
        return None;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["v1", "namespaces", name, "finalize"] => Some(name),
        _ => None,
    }
}

/// The query parameters, raw, with typed accessors for those moor understands.
#[derive(Debug, Default, Clone)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// Parse a query string.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        Ok(Self(pairs.into_iter().collect()))
    }

    /// A raw value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A boolean flag (`true`/`1`).
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("true" | "1" | "True") => Ok(true),
            Some("false" | "0" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for query parameter {name}: expected true or false"
            ))),
        }
    }

    /// A non-negative integer.
    pub fn number(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid value {v:?} for query parameter {name}: expected a non-negative integer"
                    ))
                })
            })
            .transpose()
    }

    /// The `fieldManager` the client named, if any.
    pub fn explicit_manager(&self) -> Option<String> {
        self.get("fieldManager").map(str::to_owned)
    }

    /// The field manager of a write: `fieldManager`, else the client's User-Agent program
    /// (as kube-apiserver derives it), else "unknown".
    pub fn manager(&self) -> String {
        self.explicit_manager()
            .or_else(|| self.get(USER_AGENT_PARAM).map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid dry run option {other:?}: only \"All\" is supported"
            ))),
        }
    }
}

/// Parse a request body as JSON, YAML or Kubernetes protobuf (by content type), naming the
/// position of a syntax error. `expected` is the (apiVersion, kind) the URL takes, which a
/// protobuf body must carry.
pub fn parse_body(
    content_type: &str,
    body: &Bytes,
    expected: (&str, &str),
) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(format!(
            "the request body is {} bytes, over the {MAX_BODY_BYTES}-byte limit",
            body.len()
        )));
    }
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == super::protobuf::CONTENT_TYPE {
        // kubectl's typed commands (`create namespace`, `create deployment`, ...) send
        // built-in kinds as protobuf and do not fall back to JSON.
        return super::protobuf::decode(body, expected.0, expected.1)
            .map_err(|e| ApiError::bad_request(e.to_string()));
    }
    if !(media.is_empty() || media.ends_with("json") || media.ends_with("yaml")) {
        return Err(ApiError::unsupported_media_type(&media));
    }
    let value: Value = if media.ends_with("yaml") {
        serde_yaml::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
        })?
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not valid JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(route: Route) -> Target {
        match route {
            Route::Resource(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn core_paths() {
        let t = resource(parse_path(true, "v1/namespaces/default/pods/web/status").unwrap());
        assert_eq!(t.info.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.subresource, Some(Subresource::Status));

        let t = resource(parse_path(true, "v1/namespaces/kube-system").unwrap());
        assert_eq!(t.info.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("kube-system"));

        let t = resource(parse_path(true, "v1/namespaces/x/status").unwrap());
        assert_eq!(t.info.plural, "namespaces");
        assert_eq!(t.subresource, Some(Subresource::Status));

        let t = resource(parse_path(true, "v1/pods").unwrap());
        assert!(t.namespace.is_none() && t.name.is_none());

        assert!(matches!(
            parse_path(true, "v1").unwrap(),
            Route::GroupVersion { .. }
        ));
        assert!(
            parse_path(true, "v1/pods/web").is_err(),
            "namespaced object without namespace"
        );
        assert!(parse_path(true, "v1/nope").is_err());
    }

    #[test]
    fn finalize_paths() {
        assert_eq!(
            namespace_finalize(true, "v1/namespaces/x/finalize"),
            Some("x")
        );
        assert_eq!(namespace_finalize(true, "v1/namespaces/x/status"), None);
        assert_eq!(namespace_finalize(false, "v1/namespaces/x/finalize"), None);
    }

    #[test]
    fn group_paths() {
        let t = resource(parse_path(false, "apps/v1/namespaces/a/deployments/web/scale").unwrap());
        assert_eq!(t.info.kind, "Deployment");
        assert_eq!(t.subresource, Some(Subresource::Scale));
        assert!(matches!(parse_path(false, "").unwrap(), Route::Groups));
        assert!(matches!(
            parse_path(false, "apps").unwrap(),
            Route::GroupVersion { version: None, .. }
        ));
    }

    #[test]
    fn bodies_name_the_error_position() {
        let err = parse_body(
            "application/json",
            &Bytes::from_static(b"{\n  \"a\": }"),
            ("v1", "Pod"),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("line 2"), "{}", err.message);
        let v = parse_body(
            "application/yaml",
            &Bytes::from_static(b"a: 1\n"),
            ("v1", "Pod"),
        )
        .unwrap();
        assert_eq!(v["a"], 1);
    }
}

//! OpenAPI documents for clients: `/openapi/v3` (kubectl's validation and `explain`) and
//! `/openapi/v2`, built once from the schemas in [`crate::api::schema`] — k8s-openapi's
//! JSON Schemas with the upstream Kubernetes extensions — never hand-written.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::discovery::{KUBE_MAJOR, KUBE_MINOR};
use crate::api::registry::{self, RESOURCES, ResourceInfo};
use crate::api::schema::{self, REF_PREFIX};

/// One `/openapi/v3/...` document per served group-version, keyed by its path
/// (`api/v1`, `apis/apps/v1`), with the hash clients cache it by.
static V3: LazyLock<BTreeMap<String, (String, Bytes)>> = LazyLock::new(|| {
    let mut docs = BTreeMap::new();
    let mut gvs: Vec<(&str, &str)> = RESOURCES.iter().map(|r| (r.group, r.version)).collect();
    gvs.dedup();
    for (group, version) in gvs {
        let path = if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        };
        let roots: Vec<String> = registry::in_group_version(group, version)
            .filter_map(|r| schema::definition_name(r.group, r.kind).map(str::to_owned))
            .collect();
        let schemas = reachable(&roots);
        let mut paths = Map::new();
        for r in registry::in_group_version(group, version) {
            if let Some(def) = schema::definition_name(r.group, r.kind) {
                add_paths(&mut paths, r, def);
            }
        }
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0")},
            "paths": paths,
            "components": {"schemas": schemas},
        });
        let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        docs.insert(path, (hash(&bytes), bytes));
    }
    docs
});

static V2: LazyLock<Bytes> = LazyLock::new(|| {
    let text = serde_json::to_string(schema::definitions())
        .unwrap_or_default()
        .replace(REF_PREFIX, "#/definitions/");
    let definitions: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({}));
    let doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0")},
        "paths": {},
        "definitions": definitions,
    });
    Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
});

/// `/openapi/v3`: where each group-version's document is.
pub fn v3_root() -> Value {
    let paths: Map<String, Value> = V3
        .iter()
        .map(|(path, (hash, _))| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/{path}`, e.g. `api/v1`.
pub fn v3(path: &str) -> Option<Bytes> {
    V3.get(path.trim_matches('/'))
        .map(|(_, bytes)| bytes.clone())
}

/// `/openapi/v2`.
pub fn v2() -> Bytes {
    V2.clone()
}

/// The operations on one resource's collection and item paths, as upstream documents them:
/// kubectl finds a resource's schema through the `x-kubernetes-group-version-kind` of its
/// operations (`explain`), and learns that the server validates fields itself from the
/// `fieldValidation` parameter of its PATCH operation (then skips client-side validation).
fn add_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, def: &str) {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let body = json!({"$ref": format!("{REF_PREFIX}{def}")});
    let query = |name: &str, description: &str| json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}});
    let write_params = json!([
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted."
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes."
        ),
        query(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict."
        ),
    ]);
    let op = |action: &str, id: &str, params: Value, with_body: bool| {
        let mut op = json!({
            "operationId": format!("{id}{}", r.kind),
            "parameters": params,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": body}}}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        if with_body {
            op["requestBody"] = json!({"content": {"*/*": {"schema": body}}, "required": true});
        }
        op
    };
    let mut path_params = vec![];
    if r.namespaced {
        path_params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    paths.insert(
        collection.clone(),
        json!({
            "get": op("list", "list", json!([]), false),
            "post": op("post", "create", write_params.clone(), true),
            "parameters": path_params.clone(),
        }),
    );
    let mut item_params = path_params;
    item_params.push(json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": op("get", "read", json!([]), false),
            "put": op("put", "replace", write_params.clone(), true),
            "patch": op("patch", "patch", write_params, true),
            "delete": op("delete", "delete", json!([]), false),
            "parameters": item_params,
        }),
    );
}

/// The definitions `roots` reference, directly or through others.
fn reachable(roots: &[String]) -> Map<String, Value> {
    let all = schema::definitions();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(def) = all.get(&name) {
            collect_refs(def, &mut todo);
        }
    }
    seen.into_iter()
        .filter_map(|n| all.get(&n).map(|d| (n, d.clone())))
        .collect()
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str)
                && let Some(name) = r.strip_prefix(REF_PREFIX)
            {
                out.push(name.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn hash(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016X}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_documents_hold_every_kind_with_its_gvk() {
        let root = v3_root();
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc: Value = serde_json::from_slice(&v3("apis/apps/v1").unwrap()).unwrap();
        let deploy = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        // Referenced definitions come along.
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"].is_object());
        let core: Value = serde_json::from_slice(&v3("api/v1").unwrap()).unwrap();
        assert!(core["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object());
    }

    #[test]
    fn every_served_kind_has_paths_and_a_schema() {
        for r in RESOURCES {
            let path = if r.group.is_empty() {
                format!("api/{}", r.version)
            } else {
                format!("apis/{}/{}", r.group, r.version)
            };
            let doc: Value = serde_json::from_slice(&v3(&path).unwrap()).unwrap();
            let def = schema::definition_name(r.group, r.kind)
                .unwrap_or_else(|| panic!("{} {} has no schema", r.group, r.kind));
            assert!(doc["components"]["schemas"][def].is_object(), "{def}");
            let found = doc["paths"]
                .as_object()
                .unwrap()
                .keys()
                .any(|p| p.ends_with(&format!("/{}", r.plural)));
            assert!(found, "no paths for {}", r.plural);
        }
    }

    #[test]
    fn v2_uses_definitions_refs() {
        let text = String::from_utf8(v2().to_vec()).unwrap();
        assert!(text.contains("#/definitions/io.k8s.api.core.v1.PodSpec"));
        assert!(!text.contains(REF_PREFIX));
    }
}

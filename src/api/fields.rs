//! Unknown-field detection against the served schemas, for `fieldValidation=Strict` (what
//! kubectl sends) and `Warn`: the paths of every field an object sets that its kind's schema
//! does not declare. Fields under `x-kubernetes-preserve-unknown-fields`, maps, and opaque
//! types (IntOrString, Quantity, RawExtension) accept anything.

use serde_json::Value;

use super::schema::{self, REF_PREFIX};

/// Every field of `obj` that the schema of `group`/`kind` does not declare, as
/// upstream's dotted paths (`spec.template.spec.containers[0].bogus`). Unknown kinds: none.
pub fn unknown_fields(group: &str, kind: &str, obj: &Value) -> Vec<String> {
    let Some(name) = schema::definition_name(group, kind) else {
        return Vec::new();
    };
    let Some(root) = schema::definitions().get(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(obj, root, "", &mut out, 0);
    out
}

/// Follow `$ref` and single-element `allOf` wrappers to the schema that describes a value.
fn resolve(mut node: &Value) -> &Value {
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str)
            && let Some(def) = r
                .strip_prefix(REF_PREFIX)
                .and_then(|n| schema::definitions().get(n))
        {
            node = def;
            continue;
        }
        if let Some([only]) = node
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            node = only;
            continue;
        }
        break;
    }
    node
}

fn walk(value: &Value, node: &Value, path: &str, out: &mut Vec<String>, depth: usize) {
    // Bounded: schemas are finite but JSON nesting is the client's.
    if depth > 64 {
        return;
    }
    let node = resolve(node);
    if node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (key, v) in map {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match props.get(key) {
                        Some(schema) => walk(v, schema, &child, out, depth + 1),
                        None => out.push(child),
                    }
                }
            } else if let Some(items) = node.get("additionalProperties").filter(|a| a.is_object()) {
                for (key, v) in map {
                    walk(v, items, &format!("{path}.{key}"), out, depth + 1);
                }
            }
        }
        Value::Array(list) => {
            if let Some(items) = node.get("items") {
                for (i, v) in list.iter().enumerate() {
                    walk(v, items, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "bogus": 1,
            "metadata": {"name": "p", "labels": {"any": "thing"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x",
                      "resources": {"limits": {"cpu": "1"}}}]},
        });
        assert_eq!(
            unknown_fields("", "Pod", &pod),
            vec![
                "bogus".to_owned(),
                "spec.containers[0].imagePolicy".to_owned()
            ]
        );
    }

    #[test]
    fn known_objects_are_clean() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "annotations": {"a": "b"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i",
                                           "ports": [{"containerPort": 80}]}]}}},
        });
        assert!(unknown_fields("apps", "Deployment", &d).is_empty());
    }
}

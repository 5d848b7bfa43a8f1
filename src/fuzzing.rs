//! Fuzzing entry points: one function per fuzz target, each taking the fuzzer's raw bytes
//! and driving one of moor's input parsers the way the running system does.
//!
//! The targets live in the library, not in `fuzz/`, so that the normal `cargo test` run can
//! replay every seed and every committed crash reproducer through exactly the code the
//! fuzzer ran (`tests/fuzz_regressions.rs`), on the stable toolchain, with no cargo-fuzz.
//! `fuzz/fuzz_targets/*.rs` are one-line wrappers around these; `scripts/fuzz` runs them.
//!
//! Every function accepts any input and returns nothing: bad input must come back from the
//! library as a typed error, which is simply dropped here. A panic, an abort, a stack
//! overflow, a timeout or an out-of-memory is a bug in the library, never in the input. The
//! few `assert!`s below check promises the modules document (a loaded manifest always has a
//! name, a rendered selector parses back to itself, a merged object never keeps a `$`
//! directive); they panic only when the library breaks such a promise.
//!
//! This module owns only the mapping from bytes to calls. It does not touch the network,
//! the filesystem or a store, and it is not part of moor's supported API.

#![doc(hidden)]

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::api::{apply, fields, selector, strategic_merge};
use crate::apiserver::request::{self, Params};
use crate::gitops::loader;
use crate::gitops::source::SourceFile;

/// A fuzz target: raw input in, nothing out (bad input is an error the target drops).
pub type Target = fn(&[u8]);

/// The fuzz targets, by name, as `fuzz/fuzz_targets/<name>.rs` and the corpus folders
/// `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/` call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest_loader", manifest_loader),
    ("body_decoding", body_decoding),
    ("selectors", selectors),
    ("strategic_merge", strategic_merge),
    ("apply", apply),
];

/// The target function called `name`, if there is one.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Splits off the first byte as a selector between a target's modes, so the fuzzer can
/// reach every mode by mutating one byte.
fn split_mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&mode, rest)) => (mode, rest),
        None => (0, data),
    }
}

/// The API group of an `apiVersion` (`apps/v1` → `apps`, `v1` → the core group `""`).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// The (group, kind) an object says it is, as the API server would resolve it from the
/// URL of a request carrying it; unknown kinds are fine (the modules treat them
/// schemalessly), so the fuzzer reaches both schema-aware and schemaless paths.
fn group_kind(obj: &Value) -> (String, String) {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("Pod");
    (group_of(api_version).to_owned(), kind.to_owned())
}

/// Reads up to `n` consecutive JSON values from `data` (`{...} {...}`), which keeps seed
/// files readable while letting one input carry an original and a patch. A syntax error
/// ends the list early.
fn json_values(data: &[u8], n: usize) -> Vec<Value> {
    serde_json::Deserializer::from_slice(data)
        .into_iter::<Value>()
        .take(n)
        .map_while(Result::ok)
        .collect()
}

// ---------------------------------------------------------------------------------------
// manifest_loader

/// The file names the loader is offered, picked by the first input byte: its format comes
/// from the extension, and an unknown one must be refused cleanly.
const MANIFEST_NAMES: &[&str] = &[
    "deploy/app.yaml",
    "deploy/app.json",
    "deploy/app.yml",
    "deploy/README.md",
];

/// Target `manifest_loader`: the first byte picks the file name (and so the format), the
/// rest is the file's bytes, loaded with [`loader::load`] as a GitOps source would.
pub fn manifest_loader(data: &[u8]) {
    let (mode, bytes) = split_mode(data);
    let path = MANIFEST_NAMES[usize::from(mode) % MANIFEST_NAMES.len()];
    let files = [SourceFile {
        path: path.to_owned(),
        bytes: bytes.to_vec(),
    }];
    let (manifests, errors) = loader::load(&files);
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    for manifest in &manifests {
        // The loader promises every object it returns can at least be named.
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            assert!(
                manifest
                    .object
                    .pointer(field)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty()),
                "loaded manifest without {field}: {}",
                manifest.object
            );
        }
        assert!(manifest.line >= 1 && manifest.line <= lines);
    }
    for error in &errors {
        // file:line must point into the file (0 means "no line applies").
        assert_eq!(error.file, path);
        assert!(error.line <= lines, "{error} is past the last line {lines}");
        let _ = error.to_string();
    }
}

// ---------------------------------------------------------------------------------------
// body_decoding

/// Content types a request can carry, picked by the low bits of the first input byte.
/// Parameters and odd casing are what clients really send.
const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/apply-patch+yaml",
    "application/strategic-merge-patch+json; charset=utf-8",
    "Application/JSON",
    "",
    "text/plain",
];

/// The (apiVersion, kind) a request URL can name, picked by the high bits of the first
/// byte: a protobuf body must carry the URL's kind (or leave its envelope's kind empty to
/// take it), so each decoding table is reachable.
const EXPECTED_KINDS: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "Pod"),
    ("v1", "Node"),
    ("v1", "Service"),
    ("v1", "Endpoints"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("v1", "Event"),
    ("v1", "Binding"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("coordination.k8s.io/v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("autoscaling/v1", "Scale"),
    ("apps/v1", "DeleteOptions"),
];

/// Target `body_decoding`: the first byte picks the content type (low 3 bits) and the
/// kind the URL names (high bits); the rest is the body, decoded with
/// [`request::parse_body`] and then checked for unknown fields as `fieldValidation` does.
pub fn body_decoding(data: &[u8]) {
    let (mode, body) = split_mode(data);
    let content_type = CONTENT_TYPES[usize::from(mode & 0x07) % CONTENT_TYPES.len()];
    let expected = EXPECTED_KINDS[usize::from(mode >> 3) % EXPECTED_KINDS.len()];
    let body = Bytes::copy_from_slice(body);
    let Ok(value) = request::parse_body(content_type, &body, expected) else {
        return;
    };
    let (group, kind) = group_kind(&value);
    let _ = fields::unknown_fields(&group, &kind, &value);
    let _ = fields::unknown_fields(group_of(expected.0), expected.1, &value);
}

// ---------------------------------------------------------------------------------------
// selectors

/// The object selectors are matched against: a pod with labels and the fields kinds let
/// clients select on.
fn selector_object() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "labels": {"app": "web", "tier": "frontend", "version": "1.2", "empty": ""},
        },
        "spec": {"nodeName": "node-1", "restartPolicy": "Always", "schedulerName": "default-scheduler"},
        "status": {"phase": "Running", "podIP": "10.42.0.7"},
    })
}

/// The kinds field selectors are validated for: one with its own selectable fields, one
/// with only metadata fields, one moor does not serve.
const SELECTOR_KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("", "Event"),
    ("apps", "Deployment"),
    ("example.com", "Widget"),
];

/// Target `selectors`: the input (lossily UTF-8) is split at its first two newlines into a
/// label selector, a field selector and a query string (missing parts reuse the whole
/// input). Each is parsed; what parses is matched against a fixed pod, validated for a few
/// kinds and rendered back, and the rendering must parse to the same selector. The whole
/// input is also tried as a structured `metav1.LabelSelector` in JSON.
pub fn selectors(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let label = parts.next().unwrap_or_default();
    let field = parts.next().unwrap_or(&text);
    let query = parts.next().unwrap_or(&text);
    let object = selector_object();
    let labels: BTreeMap<String, String> = object
        .pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();

    label_selector(label, &object, &labels);
    field_selector(field, &object);

    if let Ok(params) = Params::parse(Some(query)) {
        let keys: Vec<String> = params.0.keys().cloned().collect();
        for key in &keys {
            let _ = params.flag(key);
            let _ = params.number(key);
        }
        let _ = params.dry_run();
        let _ = params.manager();
        // What the list handler does with the selector parameters.
        if let Some(s) = params.get("labelSelector") {
            label_selector(s, &object, &labels);
        }
        if let Some(s) = params.get("fieldSelector") {
            field_selector(s, &object);
        }
    }

    if let Ok(structured) = serde_json::from_slice::<
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    >(data)
        && let Ok(sel) = selector::LabelSelector::from_label_selector(&structured)
    {
        let _ = sel.matches(&labels);
        let _ = sel.matches_object(&object);
        let rendered = sel.to_string();
        assert!(
            selector::LabelSelector::parse(&rendered).is_ok(),
            "structured selector renders as {rendered:?}, which does not parse"
        );
    }
}

fn label_selector(s: &str, object: &Value, labels: &BTreeMap<String, String>) {
    let Ok(sel) = selector::LabelSelector::parse(s) else {
        return;
    };
    let matched = sel.matches(labels);
    assert_eq!(matched, sel.matches_object(object));
    // Selectors travel as strings (kube clients, controllers' owned-object lists); the
    // module promises `parse(&s.to_string())` gives `s` back.
    let rendered = sel.to_string();
    match selector::LabelSelector::parse(&rendered) {
        Ok(again) => assert_eq!(
            again, sel,
            "label selector {s:?} renders as {rendered:?}, which parses differently"
        ),
        Err(e) => panic!("label selector {s:?} renders as {rendered:?}, which fails: {e}"),
    }
}

fn field_selector(s: &str, object: &Value) {
    let Ok(sel) = selector::FieldSelector::parse(s) else {
        return;
    };
    let _ = sel.matches_object(object);
    let _ = sel.exact_match("metadata.name");
    let _ = sel.exact_match("spec.nodeName");
    for (group, kind) in SELECTOR_KINDS {
        let _ = sel.validate_for(group, kind).map_err(|e| e.to_string());
    }
    // The rendering must parse back to the same terms. Their order may change: terms are
    // sorted by their raw text, as upstream does, and `f==v` renders as `f=v`, which sorts
    // elsewhere — harmless, since the terms are ANDed.
    let rendered = sel.to_string();
    let terms = |sel: &selector::FieldSelector| {
        let mut terms: Vec<String> = sel.requirements().iter().map(|r| r.to_string()).collect();
        terms.sort();
        terms
    };
    match selector::FieldSelector::parse(&rendered) {
        Ok(again) => {
            assert_eq!(
                terms(&again),
                terms(&sel),
                "field selector {s:?} renders as {rendered:?}, which parses differently"
            );
            assert_eq!(again.matches_object(object), sel.matches_object(object));
        }
        Err(e) => panic!("field selector {s:?} renders as {rendered:?}, which fails: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// strategic_merge

/// Target `strategic_merge`: the input is two consecutive JSON values, the original object
/// and the patch (`{...} {...}`). The patch is applied as a strategic merge patch for the
/// kind the original names, as a JSON merge patch, and — when it is a list of operations —
/// as a JSON patch, the three patch types the API server accepts.
pub fn strategic_merge(data: &[u8]) {
    let values = json_values(data, 2);
    let [original, patch] = values.as_slice() else {
        return;
    };
    let (group, kind) = group_kind(original);
    if let Ok(merged) = strategic_merge::apply(&group, &kind, original, patch) {
        // The module promises a stored object never receives a directive key.
        assert!(
            !has_directive(&merged),
            "strategic merge left a directive in {merged}"
        );
        // A patch is a function of the original: applying the same patch to its own
        // result must not fail where the first application did not refuse the patch.
        let _ = strategic_merge::apply(&group, &kind, &merged, patch);
    }
    // For unknown kinds the strategic merge is a JSON merge patch; run the real one too.
    if patch.is_object() {
        let mut doc = original.clone();
        json_patch::merge(&mut doc, patch);
    }
    if let Ok(ops) = serde_json::from_value::<json_patch::Patch>(patch.clone()) {
        let mut doc = original.clone();
        let _ = json_patch::patch(&mut doc, &ops);
    }
}

/// Whether any object key in `value` is a strategic-merge directive.
fn has_directive(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if map.keys().any(|k| {
                    k == "$patch"
                        || k == "$retainKeys"
                        || k.starts_with("$setElementOrder/")
                        || k.starts_with("$deleteFromPrimitiveList/")
                }) {
                    return true;
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// apply

/// Target `apply`: the input is two consecutive JSON values, the live object (`null`:
/// nothing stored yet) and the applied configuration, typed by the kind the configuration
/// names. Runs server-side apply with and without force, the no-op check `moor diff`
/// uses, the managed-fields bookkeeping of an ordinary update, and the `fieldsV1` codec
/// on whatever managed fields the live object carries.
pub fn apply(data: &[u8]) {
    let values = json_values(data, 2);
    let [live, applied] = values.as_slice() else {
        return;
    };
    let live = (!live.is_null()).then_some(live);
    let (group, kind) = group_kind(applied);
    const NOW: &str = "2024-01-01T00:00:00Z";
    for force in [false, true] {
        let _ = apply::apply(&group, &kind, live, applied, "fuzz", force, NOW);
    }
    if let Some(live) = live {
        let _ = apply::is_noop(&group, &kind, live, applied, "fuzz");
        let _ = apply::is_noop(&group, &kind, live, applied, "kubectl");
    }
    let _ = apply::update_managed_fields(&group, &kind, live, applied, "fuzz", NOW);
    let _ = apply::fields_of(&group, &kind, applied, true);

    let entries = live
        .and_then(|l| l.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for entry in entries {
        let Some(fields_v1) = entry.get("fieldsV1") else {
            continue;
        };
        if let Ok(set) = apply::FieldSet::from_fields_v1(fields_v1) {
            let _ = set.paths();
            // The codec must read back what it writes.
            let again = apply::FieldSet::from_fields_v1(&set.to_fields_v1());
            assert!(
                again.as_ref().is_ok_and(|again| *again == set),
                "fieldsV1 {fields_v1} does not round-trip: {again:?}"
            );
        }
    }
}

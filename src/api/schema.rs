//! The field metadata of every served kind, derived once from k8s-openapi's JSON Schemas: the
//! one table that strategic merge patch reads now and that server-side apply and the
//! `/openapi/v2` and `/openapi/v3` endpoints read later.
//!
//! # Where the schemas come from
//!
//! k8s-openapi (feature `schemars`) implements [`schemars::JsonSchema`] for every type. One
//! [`SchemaGenerator`] built with [`SchemaSettings::openapi3`] generates every kind in
//! [`registry::RESOURCES`] (see `KINDS` below), so the definitions the kinds share
//! (`ObjectMeta`, `PodSpec`, ...) are generated once. Generation happens on first use (a
//! [`LazyLock`]) and never again.
//!
//! Definitions are named by k8s-openapi's `schema_name()`, which is the upstream OpenAPI
//! definition name (`io.k8s.api.core.v1.PodSpec`), and every `$ref` reads
//! `#/components/schemas/<name>` ([`REF_PREFIX`]). The OpenAPI 3.0 settings move a `$ref` that
//! has siblings (k8s-openapi puts a field's `description` next to it) into a one-element
//! `allOf`, exactly as the upstream `/openapi/v3` documents do. So:
//!
//! - `/openapi/v3/apis/<group>/<version>` can copy [`definitions`] (or the
//!   `components.schemas` of each [`schema_for`] document of that group-version) into its own
//!   `components.schemas` unchanged;
//! - `/openapi/v2` serves `definitions` instead: copy the same values and rewrite each
//!   [`REF_PREFIX`] to `#/definitions/` (the names stay the same).
//!
//! # Where the patch metadata comes from (and why it is not in k8s-openapi's schemas)
//!
//! k8s-openapi's generated schemas carry no `x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type` or `x-kubernetes-list-map-keys`
//! (nor `x-kubernetes-group-version-kind`): its code generator reads them from the upstream
//! OpenAPI spec (`api/openapi-spec/swagger.json` of Kubernetes 1.33, its source of truth) only
//! to emit the `DeepMerge` impls (`merge_strategies::list::map(keys)` / `list::set` /
//! `list::atomic`, `map::atomic`), and drops them from the schema. So this module adds them
//! back to the generated definitions from `EXTENSIONS`, a transcription of exactly those
//! upstream extensions for the definitions the served kinds reach, and adds each kind's
//! `x-kubernetes-group-version-kind` from the registry. The transcription is checked, not
//! trusted:
//!
//! - every entry must name a definition and property the generated schema has;
//! - every non-atomic list k8s-openapi's `DeepMerge` implements must have an entry that agrees
//!   with it under the rule k8s-openapi's generator uses (a patch merge key, when present, is
//!   the list's only key; `patchStrategy: merge` makes a list a set or a map) — the tests
//!   probe `DeepMerge` on real values of the served kinds;
//! - the patch strategies and merge keys agree with `kubectl patch --local --type strategic`,
//!   which is compiled with the upstream Go struct tags: `strategic_merge`'s tests compare
//!   with it on the common lists, and when the table was written every list reachable from
//!   the served kinds was probed with it the same way.
//!
//! Known gaps: where an upstream list has both a patch merge key and several list-map keys
//! (container and service `ports`: `[containerPort|port, protocol]`;
//! `topologySpreadConstraints`: `[topologyKey, whenUnsatisfiable]`) k8s-openapi keeps only the
//! merge key, so those list-map keys and the `atomic` list type of `PodStatus.hostIPs` are
//! transcribed from the upstream Go markers and not cross-checked by a test. Upstream's
//! `x-kubernetes-map-type: atomic` on whole definitions (`+structType=atomic`, e.g.
//! `LocalObjectReference`) is not visible in k8s-openapi at all and is not carried; the map
//! fields `PodSpec.nodeSelector` and `ServiceSpec.selector` are.
//!
//! This module owns the schemas and their field metadata; it does not serve HTTP and does not
//! interpret patches (see [`strategic_merge`](crate::api::strategic_merge)).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use k8s_openapi::api::{apps, coordination, core, discovery, rbac};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::api::registry;

/// The prefix of every `$ref` in the generated schemas; the definition name follows.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// How strategic merge patch treats a field (`x-kubernetes-patch-strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchStrategy {
    /// `merge`: a list is merged with the patch's list (by its merge key for objects, as a set
    /// for primitives) instead of being replaced.
    Merge,
    /// `replace`: the patch's value replaces the field whole, even for an object.
    Replace,
    /// `retainKeys`: a client computing a patch sends `$retainKeys` listing the keys to keep
    /// (Deployment `strategy`: switching to `Recreate` drops `rollingUpdate`).
    RetainKeys,
    /// `merge,retainKeys`: both of the above (PodSpec `volumes`).
    MergeRetainKeys,
}

impl PatchStrategy {
    /// Parses the extension's value (`merge`, `replace`, `retainKeys`, `merge,retainKeys`).
    pub fn parse(value: &str) -> Option<Self> {
        let mut merge = false;
        let mut replace = false;
        let mut retain = false;
        for part in value.split(',') {
            match part.trim() {
                "merge" => merge = true,
                "replace" => replace = true,
                "retainKeys" => retain = true,
                _ => return None,
            }
        }
        match (merge, replace, retain) {
            (true, false, false) => Some(Self::Merge),
            (false, true, false) => Some(Self::Replace),
            (false, false, true) => Some(Self::RetainKeys),
            (true, false, true) => Some(Self::MergeRetainKeys),
            _ => None,
        }
    }

    /// The extension's value, as upstream spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::Replace => "replace",
            Self::RetainKeys => "retainKeys",
            Self::MergeRetainKeys => "merge,retainKeys",
        }
    }

    /// Whether lists with this strategy are merged rather than replaced.
    pub fn merges_lists(self) -> bool {
        matches!(self, Self::Merge | Self::MergeRetainKeys)
    }

    /// Whether clients send `$retainKeys` for this field.
    pub fn retains_keys(self) -> bool {
        matches!(self, Self::RetainKeys | Self::MergeRetainKeys)
    }
}

/// How server-side apply treats a list (`x-kubernetes-list-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListType {
    /// The list is one value, replaced whole.
    Atomic,
    /// A list of unique primitives.
    Set,
    /// A list of objects identified by [`FieldMeta::list_map_keys`].
    Map,
}

impl ListType {
    /// Parses the extension's value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "atomic" => Some(Self::Atomic),
            "set" => Some(Self::Set),
            "map" => Some(Self::Map),
            _ => None,
        }
    }

    /// The extension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Atomic => "atomic",
            Self::Set => "set",
            Self::Map => "map",
        }
    }
}

/// The merge metadata of one field; all empty for a field upstream does not annotate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldMeta {
    /// `x-kubernetes-patch-strategy`.
    pub patch_strategy: Option<PatchStrategy>,
    /// `x-kubernetes-patch-merge-key`: the field identifying an object in a merged list.
    pub merge_key: Option<String>,
    /// `x-kubernetes-list-type`.
    pub list_type: Option<ListType>,
    /// `x-kubernetes-list-map-keys`: the fields identifying an object in a `map` list.
    pub list_map_keys: Vec<String>,
}

impl FieldMeta {
    /// Reads the extensions off a property's schema. Unknown values read as absent: a
    /// schema is data and reading it must not fail.
    pub fn from_schema(property: &Value) -> FieldMeta {
        let text = |name: &str| property.get(name).and_then(Value::as_str);
        FieldMeta {
            patch_strategy: text("x-kubernetes-patch-strategy").and_then(PatchStrategy::parse),
            merge_key: text("x-kubernetes-patch-merge-key").map(str::to_owned),
            list_type: text("x-kubernetes-list-type").and_then(ListType::parse),
            list_map_keys: property
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether strategic merge patch merges this list instead of replacing it.
    pub fn merges_lists(&self) -> bool {
        self.patch_strategy.is_some_and(PatchStrategy::merges_lists)
    }
}

/// Generates one kind's definition (and everything it references) into the shared generator
/// and returns the definition's name.
type Generate = fn(&mut SchemaGenerator) -> String;

fn generate<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The k8s-openapi type of every served kind, by group and kind. A kind added to the registry
/// needs a line here; a test fails until it has one.
static KINDS: &[(&str, &str, Generate)] = &[
    ("", "Namespace", generate::<core::v1::Namespace>),
    ("", "Pod", generate::<core::v1::Pod>),
    ("", "Node", generate::<core::v1::Node>),
    ("", "Service", generate::<core::v1::Service>),
    ("", "Endpoints", generate::<core::v1::Endpoints>),
    ("", "ConfigMap", generate::<core::v1::ConfigMap>),
    ("", "Secret", generate::<core::v1::Secret>),
    ("", "ServiceAccount", generate::<core::v1::ServiceAccount>),
    ("", "Event", generate::<core::v1::Event>),
    ("apps", "Deployment", generate::<apps::v1::Deployment>),
    ("apps", "ReplicaSet", generate::<apps::v1::ReplicaSet>),
    (
        "rbac.authorization.k8s.io",
        "Role",
        generate::<rbac::v1::Role>,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRole",
        generate::<rbac::v1::ClusterRole>,
    ),
    (
        "rbac.authorization.k8s.io",
        "RoleBinding",
        generate::<rbac::v1::RoleBinding>,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        generate::<rbac::v1::ClusterRoleBinding>,
    ),
    (
        "coordination.k8s.io",
        "Lease",
        generate::<coordination::v1::Lease>,
    ),
    (
        "discovery.k8s.io",
        "EndpointSlice",
        generate::<discovery::v1::EndpointSlice>,
    ),
    (
        crate::api::manifest_source::GROUP,
        crate::api::manifest_source::KIND,
        generate::<crate::api::manifest_source::ManifestSource>,
    ),
];

/// One upstream property annotation that k8s-openapi's schema lacks.
struct Extension {
    definition: &'static str,
    property: &'static str,
    patch_strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
    list_type: Option<&'static str>,
    list_map_keys: &'static [&'static str],
    map_type: Option<&'static str>,
}

/// A list merged by key: `patchStrategy: merge` + `patchMergeKey` + `listType: map`.
const fn keyed(
    definition: &'static str,
    property: &'static str,
    merge_key: &'static str,
    list_map_keys: &'static [&'static str],
) -> Extension {
    Extension {
        definition,
        property,
        patch_strategy: Some("merge"),
        merge_key: Some(merge_key),
        list_type: Some("map"),
        list_map_keys,
        map_type: None,
    }
}

/// Any other combination.
const fn other(
    definition: &'static str,
    property: &'static str,
    patch_strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
    list_type: Option<&'static str>,
    list_map_keys: &'static [&'static str],
) -> Extension {
    Extension {
        definition,
        property,
        patch_strategy,
        merge_key,
        list_type,
        list_map_keys,
        map_type: None,
    }
}

/// A map that server-side apply replaces whole (`x-kubernetes-map-type: atomic`).
const fn atomic_map(definition: &'static str, property: &'static str) -> Extension {
    Extension {
        definition,
        property,
        patch_strategy: None,
        merge_key: None,
        list_type: None,
        list_map_keys: &[],
        map_type: Some("atomic"),
    }
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const POD_STATUS: &str = "io.k8s.api.core.v1.PodStatus";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const EPHEMERAL: &str = "io.k8s.api.core.v1.EphemeralContainer";
const CONTAINER_STATUS: &str = "io.k8s.api.core.v1.ContainerStatus";

/// The upstream (Kubernetes 1.33) `x-kubernetes-*` property extensions of every definition
/// the served kinds reach, other than `listType: atomic` (the default for a list without an
/// entry). Lists are listed only where upstream annotates them; see the module docs for how
/// this table is checked.
static EXTENSIONS: &[Extension] = &[
    other(META, "finalizers", Some("merge"), None, Some("set"), &[]),
    keyed(META, "ownerReferences", "uid", &["uid"]),
    keyed(POD_SPEC, "containers", "name", &["name"]),
    keyed(POD_SPEC, "initContainers", "name", &["name"]),
    keyed(POD_SPEC, "ephemeralContainers", "name", &["name"]),
    keyed(POD_SPEC, "imagePullSecrets", "name", &["name"]),
    keyed(POD_SPEC, "hostAliases", "ip", &["ip"]),
    keyed(POD_SPEC, "schedulingGates", "name", &["name"]),
    keyed(
        POD_SPEC,
        "topologySpreadConstraints",
        "topologyKey",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    other(
        POD_SPEC,
        "volumes",
        Some("merge,retainKeys"),
        Some("name"),
        Some("map"),
        &["name"],
    ),
    other(
        POD_SPEC,
        "resourceClaims",
        Some("merge,retainKeys"),
        Some("name"),
        Some("map"),
        &["name"],
    ),
    atomic_map(POD_SPEC, "nodeSelector"),
    keyed(CONTAINER, "env", "name", &["name"]),
    keyed(
        CONTAINER,
        "ports",
        "containerPort",
        &["containerPort", "protocol"],
    ),
    keyed(CONTAINER, "volumeMounts", "mountPath", &["mountPath"]),
    keyed(CONTAINER, "volumeDevices", "devicePath", &["devicePath"]),
    keyed(EPHEMERAL, "env", "name", &["name"]),
    keyed(
        EPHEMERAL,
        "ports",
        "containerPort",
        &["containerPort", "protocol"],
    ),
    keyed(EPHEMERAL, "volumeMounts", "mountPath", &["mountPath"]),
    keyed(EPHEMERAL, "volumeDevices", "devicePath", &["devicePath"]),
    other(
        "io.k8s.api.core.v1.ResourceRequirements",
        "claims",
        None,
        None,
        Some("map"),
        &["name"],
    ),
    keyed(POD_STATUS, "conditions", "type", &["type"]),
    keyed(POD_STATUS, "podIPs", "ip", &["ip"]),
    other(
        POD_STATUS,
        "hostIPs",
        Some("merge"),
        Some("ip"),
        Some("atomic"),
        &[],
    ),
    other(
        POD_STATUS,
        "resourceClaimStatuses",
        Some("merge,retainKeys"),
        Some("name"),
        Some("map"),
        &["name"],
    ),
    keyed(
        CONTAINER_STATUS,
        "allocatedResourcesStatus",
        "name",
        &["name"],
    ),
    keyed(
        CONTAINER_STATUS,
        "volumeMounts",
        "mountPath",
        &["mountPath"],
    ),
    other(
        "io.k8s.api.core.v1.ResourceStatus",
        "resources",
        None,
        None,
        Some("map"),
        &["resourceID"],
    ),
    other(
        "io.k8s.api.core.v1.NodeSpec",
        "podCIDRs",
        Some("merge"),
        None,
        Some("set"),
        &[],
    ),
    keyed(
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "type",
        &["type"],
    ),
    keyed(
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "type",
        &["type"],
    ),
    keyed(
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "type",
        &["type"],
    ),
    keyed(
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "port",
        &["port", "protocol"],
    ),
    atomic_map("io.k8s.api.core.v1.ServiceSpec", "selector"),
    keyed(
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "type",
        &["type"],
    ),
    keyed(
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "name",
        &["name"],
    ),
    other(
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        Some("retainKeys"),
        None,
        None,
        &[],
    ),
    keyed(
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "type",
        &["type"],
    ),
    keyed(
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "type",
        &["type"],
    ),
    other(
        "io.k8s.api.discovery.v1.Endpoint",
        "addresses",
        None,
        None,
        Some("set"),
        &[],
    ),
];

/// The generated definitions plus, per kind, the name of its definition.
struct Catalog {
    definitions: Map<String, Value>,
    kinds: Vec<(&'static str, &'static str, String)>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(build_catalog);

fn build_catalog() -> Catalog {
    // `$schema` belongs to a document, not to a definition that gets copied into one.
    let mut generator = SchemaSettings::openapi3()
        .with(|settings| settings.meta_schema = None)
        .into_generator();
    let kinds: Vec<_> = KINDS
        .iter()
        .map(|(group, kind, generate)| (*group, *kind, generate(&mut generator)))
        .collect();
    let mut definitions = generator.take_definitions(true);
    for definition in definitions.values_mut() {
        plain_optionals(definition);
    }
    for extension in EXTENSIONS {
        // A missing definition or property (k8s-openapi renamed something) leaves the field
        // unannotated rather than failing at runtime; a test catches it.
        let Some(property) = definitions
            .get_mut(extension.definition)
            .and_then(|definition| definition.get_mut("properties"))
            .and_then(|properties| properties.get_mut(extension.property))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let mut set = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                property.insert(name.to_owned(), value);
            }
        };
        set(
            "x-kubernetes-patch-strategy",
            extension.patch_strategy.map(Value::from),
        );
        set(
            "x-kubernetes-patch-merge-key",
            extension.merge_key.map(Value::from),
        );
        set(
            "x-kubernetes-list-type",
            extension.list_type.map(Value::from),
        );
        set(
            "x-kubernetes-list-map-keys",
            (!extension.list_map_keys.is_empty()).then(|| json!(extension.list_map_keys)),
        );
        set("x-kubernetes-map-type", extension.map_type.map(Value::from));
    }
    // kubectl finds the schema of an object by this extension (explain, apply's patch meta).
    for (group, kind, name) in &kinds {
        let versions: Vec<Value> = registry::RESOURCES
            .iter()
            .filter(|r| r.group == *group && r.kind == *kind)
            .map(|r| json!({"group": r.group, "kind": r.kind, "version": r.version}))
            .collect();
        if let Some(definition) = definitions.get_mut(name).and_then(Value::as_object_mut) {
            definition.insert(
                "x-kubernetes-group-version-kind".to_owned(),
                Value::Array(versions),
            );
        }
    }
    Catalog { definitions, kinds }
}

/// Make `Option` fields of derived schemas (moor's own kinds) plain optional properties, as
/// upstream writes them: schemars emits `anyOf: [T, null]`, which kubectl explain cannot
/// follow; a reference becomes `allOf: [T]`, the form upstream uses beside a description.
fn plain_optionals(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(any_of)) = object.get("anyOf") {
        let is_null = |s: &Value| {
            s.get("type").and_then(Value::as_str) == Some("null")
                || s.get("enum") == Some(&json!([null]))
        };
        if any_of.len() == 2 && any_of.iter().any(is_null) {
            let kept = any_of
                .iter()
                .find(|s| !is_null(s))
                .cloned()
                .unwrap_or_default();
            object.remove("anyOf");
            if kept.get("$ref").is_some() {
                object.insert("allOf".to_owned(), json!([kept]));
            } else if let Value::Object(fields) = kept {
                for (key, value) in fields {
                    object.entry(key).or_insert(value);
                }
            }
        }
    }
    for key in ["properties", "items", "additionalProperties"] {
        match object.get_mut(key) {
            Some(Value::Object(children)) if key == "properties" => {
                children.values_mut().for_each(plain_optionals);
            }
            Some(child) => plain_optionals(child),
            None => {}
        }
    }
}

/// Every generated definition (all served kinds and everything they reference), by upstream
/// definition name; `$ref`s inside read [`REF_PREFIX`]`<name>`.
pub fn definitions() -> &'static Map<String, Value> {
    &CATALOG.definitions
}

/// The definition name of a served kind, e.g. `io.k8s.api.apps.v1.Deployment` for
/// (`apps`, `Deployment`).
pub fn definition_name(group: &str, kind: &str) -> Option<&'static str> {
    CATALOG
        .kinds
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, name)| name.as_str())
}

/// The definition of `name`, following nothing.
fn definition(name: &str) -> Option<&'static Value> {
    CATALOG.definitions.get(name)
}

/// The name a `$ref` points at, if it points into this catalog.
fn ref_target(reference: &Value) -> Option<&str> {
    reference.as_str()?.strip_prefix(REF_PREFIX)
}

/// Every definition name reachable from `root` through `$ref`s, `root` included.
fn closure(root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut pending = vec![root.to_owned()];
    while let Some(name) = pending.pop() {
        let Some(value) = definition(&name) else {
            continue;
        };
        if !seen.insert(name) {
            continue;
        }
        // An explicit stack: definitions nest deeply and a schema is data, not code.
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    if let Some(target) = map.get("$ref").and_then(ref_target)
                        && !seen.contains(target)
                    {
                        pending.push(target.to_owned());
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
    }
    seen
}

static DOCUMENTS: LazyLock<Vec<(&'static str, &'static str, Value)>> = LazyLock::new(|| {
    CATALOG
        .kinds
        .iter()
        .filter_map(|(group, kind, name)| {
            let Value::Object(mut document) = definition(name)?.clone() else {
                return None;
            };
            let schemas: Map<String, Value> = closure(name)
                .into_iter()
                .filter_map(|n| Some((n.clone(), definition(&n)?.clone())))
                .collect();
            document.insert(
                "components".to_owned(),
                json!({ "schemas": Value::Object(schemas) }),
            );
            Some((*group, *kind, Value::Object(document)))
        })
        .collect()
});

/// The full JSON Schema of a served kind, or `None` for a kind moor does not serve.
///
/// The document is the kind's own definition (`description`, `type`, `properties`,
/// `required`, `x-kubernetes-group-version-kind`) plus `components.schemas` holding every
/// definition it references, the kind's own included. Every `$ref` reads
/// `#/components/schemas/<name>` (see [`REF_PREFIX`]), so it resolves inside this document
/// as well as inside an OpenAPI v3 document that copies these `components.schemas` into its
/// own. Generated on first call, shared afterwards.
pub fn schema_for(group: &str, kind: &str) -> Option<&'static Value> {
    DOCUMENTS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, document)| document)
}

/// The merge metadata of the field at `path` in a served kind: object field names from the
/// root, list items transparent (`["spec", "containers", "ports"]` names the ports of every
/// container) and so are the values of string-keyed maps. `None` when the kind is not
/// served, the path is empty, or a segment names no field.
pub fn field_meta(group: &str, kind: &str, path: &[&str]) -> Option<FieldMeta> {
    let (last, parents) = path.split_last()?;
    let mut cursor = Cursor::root(group, kind)?;
    for name in parents {
        cursor = cursor.field(name)?.1;
    }
    cursor.field(last).map(|(meta, _)| meta)
}

/// A position in a kind's schema reached by walking field names from the root, with `$ref`s,
/// one-element `allOf`s and list items already looked through. Strategic merge carries one
/// down its recursion so each level costs one lookup instead of a walk from the root.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    schema: &'static Value,
}

impl Cursor {
    /// The root of a served kind.
    pub fn root(group: &str, kind: &str) -> Option<Cursor> {
        definition(definition_name(group, kind)?).map(Cursor::resolve)
    }

    /// The metadata of field `name` here and the position of its value (or of its items, for a
    /// list). A string-keyed map (`additionalProperties`) answers for any name with no
    /// metadata. `None` when this position has no such field.
    pub fn field(self, name: &str) -> Option<(FieldMeta, Cursor)> {
        if let Some(property) = self.schema.get("properties").and_then(|p| p.get(name)) {
            return Some((FieldMeta::from_schema(property), Cursor::resolve(property)));
        }
        match self.schema.get("additionalProperties") {
            Some(value @ Value::Object(_)) => Some((FieldMeta::default(), Cursor::resolve(value))),
            _ => None,
        }
    }

    /// The schema at this position.
    pub fn schema(self) -> &'static Value {
        self.schema
    }

    /// Looks through references, single `allOf`s and list items. Bounded, so a cyclic schema
    /// ends somewhere instead of looping.
    fn resolve(mut schema: &'static Value) -> Cursor {
        for _ in 0..32 {
            let next = if let Some(target) = schema.get("$ref").and_then(ref_target) {
                definition(target)
            } else if let Some([only]) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                Some(only)
            } else if schema.get("type").and_then(Value::as_str) == Some("array") {
                schema.get("items")
            } else {
                None
            };
            match next {
                Some(next) => schema = next,
                None => break,
            }
        }
        Cursor { schema }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_kind_has_a_schema() {
        for resource in registry::RESOURCES {
            let document = schema_for(resource.group, resource.kind)
                .unwrap_or_else(|| panic!("no schema for {}/{}", resource.group, resource.kind));
            assert_eq!(
                document["x-kubernetes-group-version-kind"],
                json!([{"group": resource.group, "kind": resource.kind, "version": resource.version}])
            );
            assert!(document["properties"]["metadata"].is_object());
        }
        assert!(schema_for("", "NoSuchKind").is_none());
        assert!(schema_for("apps", "Pod").is_none());
    }

    #[test]
    fn documents_are_self_contained() {
        for (group, kind, _) in KINDS {
            let document = schema_for(group, kind).unwrap();
            let schemas = document["components"]["schemas"].as_object().unwrap();
            let name = definition_name(group, kind).unwrap();
            assert!(schemas.contains_key(name));
            let mut stack = vec![document];
            while let Some(value) = stack.pop() {
                match value {
                    Value::Object(map) => {
                        if let Some(reference) = map.get("$ref") {
                            let target = ref_target(reference)
                                .unwrap_or_else(|| panic!("foreign $ref {reference}"));
                            assert!(schemas.contains_key(target), "{kind}: dangling {target}");
                        }
                        stack.extend(map.values());
                    }
                    Value::Array(items) => stack.extend(items),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn every_extension_lands_on_a_generated_property() {
        for extension in EXTENSIONS {
            let property = definitions()
                .get(extension.definition)
                .and_then(|d| d.get("properties"))
                .and_then(|p| p.get(extension.property))
                .unwrap_or_else(|| {
                    panic!(
                        "{}.{} not generated",
                        extension.definition, extension.property
                    )
                });
            let meta = FieldMeta::from_schema(property);
            assert_eq!(
                meta.patch_strategy.map(PatchStrategy::as_str),
                extension.patch_strategy
            );
            assert_eq!(meta.merge_key.as_deref(), extension.merge_key);
            assert_eq!(meta.list_type.map(ListType::as_str), extension.list_type);
            assert_eq!(meta.list_map_keys, extension.list_map_keys);
            let is_list = Cursor::resolve(property).schema.get("properties").is_some()
                && property.get("type").and_then(Value::as_str) == Some("array");
            if extension.list_type.is_some() && extension.list_type != Some("set") {
                assert!(
                    is_list,
                    "{}.{} is not a list of objects",
                    extension.definition, extension.property
                );
            }
        }
    }

    #[test]
    fn field_meta_walks_paths() {
        let containers = field_meta("", "Pod", &["spec", "containers"]).unwrap();
        assert_eq!(containers.patch_strategy, Some(PatchStrategy::Merge));
        assert_eq!(containers.merge_key.as_deref(), Some("name"));
        assert_eq!(containers.list_type, Some(ListType::Map));
        assert_eq!(containers.list_map_keys, ["name"]);

        let ports = field_meta(
            "apps",
            "Deployment",
            &["spec", "template", "spec", "containers", "ports"],
        )
        .unwrap();
        assert_eq!(ports.merge_key.as_deref(), Some("containerPort"));
        assert_eq!(ports.list_map_keys, ["containerPort", "protocol"]);

        let strategy = field_meta("apps", "Deployment", &["spec", "strategy"]).unwrap();
        assert_eq!(strategy.patch_strategy, Some(PatchStrategy::RetainKeys));

        let volumes = field_meta("", "Pod", &["spec", "volumes"]).unwrap();
        assert_eq!(volumes.patch_strategy, Some(PatchStrategy::MergeRetainKeys));

        let finalizers = field_meta("", "Namespace", &["metadata", "finalizers"]).unwrap();
        assert_eq!(finalizers.patch_strategy, Some(PatchStrategy::Merge));
        assert_eq!(finalizers.merge_key, None);
        assert_eq!(finalizers.list_type, Some(ListType::Set));

        // Tolerations carry no patch strategy upstream: strategic merge replaces them.
        let tolerations = field_meta("", "Pod", &["spec", "tolerations"]).unwrap();
        assert_eq!(tolerations, FieldMeta::default());
        // Values of string-keyed maps are transparent too.
        assert_eq!(
            field_meta("", "Pod", &["metadata", "labels", "app"]),
            Some(FieldMeta::default())
        );
        assert!(field_meta("", "Pod", &["spec", "nope"]).is_none());
        assert!(field_meta("", "Pod", &[]).is_none());
        assert!(field_meta("", "Widget", &["spec"]).is_none());
    }

    /// Checks `EXTENSIONS` against k8s-openapi's own `DeepMerge` impls, which its generator
    /// derived from the same upstream extensions: every list reachable from a served kind
    /// (through lists `DeepMerge` merges, so the probe can see it) is probed with real values,
    /// and how `DeepMerge` treats it (replaced / set / map keyed by which fields) must be what
    /// the table implies under the generator's rule.
    mod agreement {
        use super::*;
        use k8s_openapi::DeepMerge;
        use serde::{Serialize, de::DeserializeOwned};
        use std::collections::{BTreeMap, VecDeque};

        type Probe = fn(&Value, &Value) -> Result<Value, String>;

        fn merge<T: DeepMerge + Serialize + DeserializeOwned>(
            original: &Value,
            patch: &Value,
        ) -> Result<Value, String> {
            let mut merged: T =
                serde_json::from_value(original.clone()).map_err(|e| format!("original: {e}"))?;
            let patch: T =
                serde_json::from_value(patch.clone()).map_err(|e| format!("patch: {e}"))?;
            merged.merge_from(patch);
            serde_json::to_value(merged).map_err(|e| e.to_string())
        }

        /// Where probing starts: the served kinds, plus the definitions only reachable through
        /// lists `DeepMerge` replaces (whose insides a probe from the root cannot see).
        const STARTS: &[(&str, Probe)] = &[
            ("io.k8s.api.core.v1.Namespace", merge::<core::v1::Namespace>),
            ("io.k8s.api.core.v1.Pod", merge::<core::v1::Pod>),
            ("io.k8s.api.core.v1.Node", merge::<core::v1::Node>),
            ("io.k8s.api.core.v1.Service", merge::<core::v1::Service>),
            ("io.k8s.api.core.v1.Endpoints", merge::<core::v1::Endpoints>),
            ("io.k8s.api.core.v1.ConfigMap", merge::<core::v1::ConfigMap>),
            ("io.k8s.api.core.v1.Secret", merge::<core::v1::Secret>),
            (
                "io.k8s.api.core.v1.ServiceAccount",
                merge::<core::v1::ServiceAccount>,
            ),
            ("io.k8s.api.core.v1.Event", merge::<core::v1::Event>),
            (
                "io.k8s.api.apps.v1.Deployment",
                merge::<apps::v1::Deployment>,
            ),
            (
                "io.k8s.api.apps.v1.ReplicaSet",
                merge::<apps::v1::ReplicaSet>,
            ),
            (
                "io.k8s.api.coordination.v1.Lease",
                merge::<coordination::v1::Lease>,
            ),
            (
                "io.k8s.api.discovery.v1.EndpointSlice",
                merge::<discovery::v1::EndpointSlice>,
            ),
            (CONTAINER_STATUS, merge::<core::v1::ContainerStatus>),
            (
                "io.k8s.api.discovery.v1.Endpoint",
                merge::<discovery::v1::Endpoint>,
            ),
        ];

        #[derive(Debug, PartialEq)]
        enum Merge {
            Atomic,
            Set,
            Map(BTreeSet<String>),
        }

        #[derive(Clone)]
        struct Step {
            property: &'static str,
            list: bool,
            definition: Option<&'static str>,
        }

        fn ref_name(schema: &'static Value) -> Option<&'static str> {
            if let Some(target) = schema.get("$ref").and_then(ref_target) {
                return Some(target);
            }
            match schema
                .get("allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                Some([only]) => ref_name(only),
                _ => None,
            }
        }

        fn scalar(schema: &Value, variant: usize) -> Option<Value> {
            match schema.get("type").and_then(Value::as_str)? {
                "string" => Some(match schema.get("format").and_then(Value::as_str) {
                    Some("date-time") => json!(format!("2024-01-0{}T00:00:00Z", variant + 1)),
                    Some("byte") => json!(["YQ==", "Yg==", "Yw=="][variant]),
                    _ => json!(["a", "b", "c"][variant]),
                }),
                "integer" => Some(json!(variant + 1)),
                "number" => Some(json!(variant as f64 + 1.5)),
                "boolean" => Some(json!(variant == 0)),
                _ => None,
            }
        }

        /// A value of `schema` that deserializes: required fields filled recursively, and
        /// every inline scalar field set so two variants differ in each of them.
        fn instance(schema: &'static Value, variant: usize, depth: usize) -> Value {
            match ref_name(schema) {
                Some("io.k8s.apimachinery.pkg.util.intstr.IntOrString") => return json!(1),
                Some("io.k8s.apimachinery.pkg.api.resource.Quantity") => return json!("1"),
                Some(name) => return instance(&definitions()[name], variant, depth + 1),
                None => {}
            }
            if let Some(value) = scalar(schema, variant) {
                return value;
            }
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                return match schema.get("type").and_then(Value::as_str) {
                    Some("array") => json!([]),
                    _ => json!({}),
                };
            };
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut object = Map::new();
            for (name, property) in properties {
                if let Some(value) = scalar(property, variant) {
                    object.insert(name.clone(), value);
                } else if required.contains(&name.as_str()) && depth < 16 {
                    object.insert(name.clone(), instance(property, variant, depth + 1));
                }
            }
            Value::Object(object)
        }

        fn nest(start: &'static str, path: &[Step], leaf: Value) -> Value {
            let mut value = leaf;
            for i in (0..path.len()).rev() {
                let container = if i == 0 {
                    Some(start)
                } else {
                    path[i - 1].definition
                };
                let schema = &definitions()[container.unwrap()];
                let mut object = instance(schema, 0, 0);
                // k8s-openapi checks a resource's apiVersion and kind when deserializing.
                if let Some(gvk) = schema["x-kubernetes-group-version-kind"].get(0) {
                    let (group, version) = (gvk["group"].as_str().unwrap(), &gvk["version"]);
                    object["apiVersion"] = match group {
                        "" => version.clone(),
                        group => json!(format!("{group}/{}", version.as_str().unwrap())),
                    };
                    object["kind"] = gvk["kind"].clone();
                }
                object[path[i].property] = value;
                value = if i > 0 && path[i - 1].list {
                    json!([object])
                } else {
                    object
                };
            }
            value
        }

        fn leaf_len(document: &Value, path: &[Step]) -> Option<usize> {
            let mut current = document;
            for (i, step) in path.iter().enumerate() {
                current = current.get(step.property)?;
                if i + 1 < path.len() && step.list {
                    current = current.get(0)?;
                }
            }
            current.as_array().map(Vec::len)
        }

        fn classify(
            start: &'static str,
            probe: Probe,
            path: &[Step],
            items: &'static Value,
        ) -> Merge {
            let definition = path.last().unwrap().definition;
            let (a, b) = match definition {
                Some(d) => (
                    instance(&definitions()[d], 0, 0),
                    instance(&definitions()[d], 1, 0),
                ),
                None => (scalar(items, 0).unwrap(), scalar(items, 1).unwrap()),
            };
            let original = nest(start, path, json!([a, b]));
            let run = |patch_items: Value| {
                let merged = probe(&original, &nest(start, path, patch_items))
                    .unwrap_or_else(|e| panic!("{start} {}: {e}", describe(path)));
                leaf_len(&merged, path).unwrap()
            };
            match run(json!([a])) {
                1 => Merge::Atomic,
                2 if definition.is_none() => Merge::Set,
                2 => {
                    let mut keys = BTreeSet::new();
                    let properties = &definitions()[definition.unwrap()]["properties"];
                    for name in a.as_object().unwrap().keys() {
                        let Some(other) = ref_name(&properties[name])
                            .is_none()
                            .then(|| scalar(&properties[name], 2))
                            .flatten()
                            .filter(|v| !v.is_boolean())
                        else {
                            continue;
                        };
                        let mut changed = a.clone();
                        changed[name] = other;
                        if run(json!([changed])) == 3 {
                            keys.insert(name.clone());
                        }
                    }
                    Merge::Map(keys)
                }
                n => panic!("{start} {}: {n} items after merge", describe(path)),
            }
        }

        fn describe(path: &[Step]) -> String {
            path.iter()
                .map(|s| s.property)
                .collect::<Vec<_>>()
                .join(".")
        }

        /// What `EXTENSIONS` implies `DeepMerge` does, by k8s-openapi's generator rule.
        fn expected(definition: &str, property: &str) -> Merge {
            let Some(e) = EXTENSIONS
                .iter()
                .find(|e| e.definition == definition && e.property == property)
            else {
                return Merge::Atomic;
            };
            let merges = e
                .patch_strategy
                .and_then(PatchStrategy::parse)
                .is_some_and(PatchStrategy::merges_lists);
            let keys: BTreeSet<String> = match e.merge_key {
                Some(key) => [key.to_owned()].into(),
                None => e.list_map_keys.iter().map(|k| (*k).to_owned()).collect(),
            };
            let list_type = match (merges, keys.is_empty()) {
                (true, true) => Some("set"),
                (true, false) => Some("map"),
                (false, _) => e.list_type,
            };
            match list_type {
                Some("map") => Merge::Map(keys),
                Some("set") => Merge::Set,
                _ => Merge::Atomic,
            }
        }

        #[test]
        fn extensions_agree_with_deep_merge() {
            let mut probed: BTreeMap<(&str, &str), Merge> = BTreeMap::new();
            for (start, probe) in STARTS {
                let mut queue = VecDeque::from([(*start, Vec::<Step>::new())]);
                let mut seen = BTreeSet::new();
                while let Some((definition, path)) = queue.pop_front() {
                    if !seen.insert(definition) {
                        continue;
                    }
                    let Some(properties) = definitions()[definition]
                        .get("properties")
                        .and_then(Value::as_object)
                    else {
                        continue;
                    };
                    for (property, schema) in properties {
                        let list = schema.get("type").and_then(Value::as_str) == Some("array");
                        let value = if list { &schema["items"] } else { schema };
                        let target = ref_name(value).filter(|d| {
                            !matches!(
                                *d,
                                "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
                                    | "io.k8s.apimachinery.pkg.api.resource.Quantity"
                            )
                        });
                        let mut here = path.clone();
                        here.push(Step {
                            property,
                            list,
                            definition: target,
                        });
                        let has_properties = |d: &str| definitions()[d].get("properties").is_some();
                        if list {
                            if target.is_none() && scalar(value, 0).is_none() {
                                continue;
                            }
                            if probed.contains_key(&(definition, property.as_str())) {
                                continue;
                            }
                            let merge = classify(start, *probe, &here, value);
                            let merges = merge != Merge::Atomic;
                            probed.insert((definition, property), merge);
                            if merges && target.is_some_and(has_properties) {
                                queue.push_back((target.unwrap(), here));
                            }
                        } else if let Some(target) = target.filter(|d| has_properties(d)) {
                            queue.push_back((target, here));
                        }
                    }
                }
            }
            let mismatches: Vec<String> = probed
                .iter()
                .filter(|((d, p), merge)| expected(d, p) != **merge)
                .map(|((d, p), merge)| {
                    format!("{d}.{p}: DeepMerge {merge:?}, table {:?}", expected(d, p))
                })
                .collect();
            assert!(mismatches.is_empty(), "{mismatches:#?}");
            for e in EXTENSIONS {
                let about_lists = e.list_type.is_some() || e.merge_key.is_some();
                assert!(
                    !about_lists || probed.contains_key(&(e.definition, e.property)),
                    "{}.{} was never probed",
                    e.definition,
                    e.property
                );
            }
            // Sanity: the probe saw a good part of the API.
            assert!(probed.len() > 50, "only {} lists probed", probed.len());
        }
    }

    #[test]
    fn patch_strategy_round_trips() {
        for strategy in [
            PatchStrategy::Merge,
            PatchStrategy::Replace,
            PatchStrategy::RetainKeys,
            PatchStrategy::MergeRetainKeys,
        ] {
            assert_eq!(PatchStrategy::parse(strategy.as_str()), Some(strategy));
        }
        assert_eq!(
            PatchStrategy::parse("retainKeys,merge"),
            Some(PatchStrategy::MergeRetainKeys)
        );
        assert_eq!(PatchStrategy::parse("merge,replace"), None);
        assert_eq!(PatchStrategy::parse("bogus"), None);
    }
}

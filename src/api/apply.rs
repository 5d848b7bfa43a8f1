//! Server-side apply (`PATCH` with `application/apply-patch+yaml`) and field ownership
//! (`metadata.managedFields`), as kube-apiserver does them with structured-merge-diff, over
//! `serde_json::Value` objects.
//!
//! Which fields an object sets is read off the object and the kind's field metadata in
//! [`schema`]: object fields and the entries of string-keyed maps are
//! owned one by one, unless the map is `x-kubernetes-map-type: atomic`; lists are one value
//! (atomic) unless the schema makes them a `set` (items owned one by one as `v:<value>`) or a
//! `map` (items owned by their keys as `k:{...}`, and their fields one by one). A list with a
//! patch merge key but no list type is a map keyed by the merge key, as upstream's schema
//! conversion makes it.
//!
//! This module owns that logic only: it does not decode request bodies, check preconditions
//! (`resourceVersion`, name), default or validate objects, or touch the store.
//!
//! Known gaps against upstream: `status` is never owned (every write here is to the main
//! resource, whose reset fields upstream strips), so `/status` writers are not tracked;
//! list-map keys with schema defaults must be present in the applied config; one version per
//! kind is served, so managed fields are never converted between versions; the order of new
//! items merged into an associative list is "live order, then new items in applied order".

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::api::schema::{self, Cursor, FieldMeta, ListType};

/// The manager that owns the fields of an object written before any field tracking, when it
/// is first applied to (upstream's name for it).
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Definitions upstream marks `+structType=atomic` (`x-kubernetes-map-type: atomic` on the
/// definition), which k8s-openapi's schemas do not carry: an object of one of these is owned
/// and replaced whole.
const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.NodeSelector",
];

fn is_atomic_struct(cursor: Cursor) -> bool {
    ATOMIC_STRUCTS.iter().any(|name| {
        schema::definitions()
            .get(*name)
            .is_some_and(|definition| std::ptr::eq(definition, cursor.schema()))
    })
}

/// Fields never owned: identity and bookkeeping the server sets (upstream's strip list).
const IGNORED_ROOT: &[&str] = &["apiVersion", "kind", "status"];
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// A set of field paths in upstream's `fieldsV1` form, e.g.
/// `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{}}}}}`.
///
/// Path elements are `f:<field>`, `k:<json object of key fields, sorted>`, `v:<json value>`
/// and `i:<index>`; a path is in the set when its node is a leaf (`{}`) or carries `"."`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    root: Node,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    /// The path ending here is itself in the set.
    member: bool,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn leaf() -> Node {
        Node {
            member: true,
            children: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn union_with(&mut self, other: &Node) {
        self.member |= other.member;
        for (element, child) in &other.children {
            self.children
                .entry(element.clone())
                .or_default()
                .union_with(child);
        }
    }

    fn difference(&self, other: &Node) -> Node {
        let mut children = BTreeMap::new();
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(element.clone(), rest);
            }
        }
        Node {
            member: self.member && !other.member,
            children,
        }
    }

    fn intersection(&self, other: &Node) -> Node {
        let mut children = BTreeMap::new();
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    children.insert(element.clone(), both);
                }
            }
        }
        Node {
            member: self.member && other.member,
            children,
        }
    }

    /// Drops every subtree whose root is a member of `gone` (the value there no longer
    /// exists, so nothing below it can be owned).
    fn remove_subtrees(&mut self, gone: &Node) {
        for (element, child) in &gone.children {
            if child.member {
                self.children.remove(element);
            } else if let Some(mine) = self.children.get_mut(element) {
                mine.remove_subtrees(child);
                if mine.is_empty() {
                    self.children.remove(element);
                }
            }
        }
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_owned(), json!({}));
        }
        for (element, child) in &self.children {
            map.insert(element.clone(), child.to_json());
        }
        Value::Object(map)
    }

    fn from_json(value: &Value, path: &str) -> Result<Node, ApplyError> {
        let Value::Object(map) = value else {
            return Err(ApplyError::Invalid(format!(
                "fieldsV1{path}: expected an object"
            )));
        };
        let mut node = Node::default();
        for (element, child) in map {
            if element == "." {
                if child.as_object().is_none_or(|c| !c.is_empty()) {
                    return Err(ApplyError::Invalid(format!(
                        "fieldsV1{path}: \".\" must be {{}}"
                    )));
                }
                node.member = true;
                continue;
            }
            if Element::parse(element).is_none() {
                return Err(ApplyError::Invalid(format!(
                    "fieldsV1{path}: invalid path element {element:?}"
                )));
            }
            let mut parsed = Node::from_json(child, &format!("{path}/{element}"))?;
            if parsed.children.is_empty() {
                parsed.member = true;
            }
            node.children.insert(element.clone(), parsed);
        }
        Ok(node)
    }

    /// Every member path, each with whether its node is a leaf (has no children).
    fn members(&self, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, bool)>) {
        if self.member {
            out.push((prefix.clone(), self.children.is_empty()));
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.members(prefix, out);
            prefix.pop();
        }
    }
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// The set in `fieldsV1` form (`{}` when empty).
    pub fn to_fields_v1(&self) -> Value {
        self.root.to_json()
    }

    /// Parses a `fieldsV1` value; malformed path elements or non-object nodes are
    /// [`ApplyError::Invalid`].
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, ApplyError> {
        let root = Node::from_json(value, "")?;
        Ok(FieldSet { root })
    }

    /// Every path in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut root = self.root.clone();
        root.union_with(&other.root);
        FieldSet { root }
    }

    /// The paths of `self` not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            root: self.root.difference(&other.root),
        }
    }

    /// The paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet {
            root: self.root.intersection(&other.root),
        }
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Every path in the set, in upstream's display form (`.spec.replicas`,
    /// `.spec.containers[name="web"].image`, `.metadata.finalizers[="a"]`), in `fieldsV1` order.
    pub fn paths(&self) -> Vec<String> {
        self.member_paths()
            .into_iter()
            .map(|(path, _)| display_path(&path))
            .collect()
    }

    /// Whether the path given as `fieldsV1` elements (`["f:spec", "f:replicas"]`) is in the set.
    pub fn contains(&self, path: &[&str]) -> bool {
        let mut node = &self.root;
        for element in path {
            match node.children.get(*element) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.member
    }

    fn member_paths(&self) -> Vec<(Vec<String>, bool)> {
        let mut out = Vec::new();
        self.root.members(&mut Vec::new(), &mut out);
        out
    }
}

/// One field another manager owns and an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager's name.
    pub manager: String,
    /// Its entry's operation (`Apply` or `Update`).
    pub operation: String,
    /// Its entry's apiVersion.
    pub api_version: String,
    /// Its entry's subresource (empty for the main resource).
    pub subresource: String,
    /// The field, in upstream's form: `.spec.replicas`.
    pub field: String,
}

impl Conflict {
    /// The manager as upstream names it in messages: `"kubectl" using apps/v1` for an
    /// `Update` entry, `"kubectl"` for an `Apply` one.
    pub fn manager_description(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (HTTP 409, reason `Conflict`; one
    /// `FieldManagerConflict` cause per conflict). The message is upstream's.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration or stored managed fields are malformed (HTTP 400/422).
    #[error("{0}")]
    Invalid(String),
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    let count = conflicts.len();
    let plural = if count == 1 { "" } else { "s" };
    let body = match conflicts {
        [only] => format!(
            "conflict with {}: {}",
            only.manager_description(),
            only.field
        ),
        _ => {
            let mut by_manager: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for conflict in conflicts {
                by_manager
                    .entry(conflict.manager_description())
                    .or_default()
                    .push(&conflict.field);
            }
            let mut lines = Vec::new();
            for (manager, fields) in by_manager {
                lines.push(format!("conflicts with {manager}:"));
                lines.extend(fields.into_iter().map(|f| format!("- {f}")));
            }
            lines.join("\n")
        }
    };
    format!("Apply failed with {count} conflict{plural}: {body}")
}

/// What an apply produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyResult {
    /// The object to store, its `metadata.managedFields` already set to `managed_fields`.
    pub object: Value,
    /// The `metadata.managedFields` entries to store.
    pub managed_fields: Vec<Value>,
}

// ---------------------------------------------------------------------------------------
// Path elements and navigation

enum Element {
    Field(String),
    Key(Map<String, Value>),
    Value(Value),
    Index(usize),
}

impl Element {
    fn parse(text: &str) -> Option<Element> {
        let (kind, rest) = text.split_at_checked(2)?;
        match kind {
            "f:" => Some(Element::Field(rest.to_owned())),
            "k:" => match serde_json::from_str(rest).ok()? {
                Value::Object(map) => Some(Element::Key(map)),
                _ => None,
            },
            "v:" => serde_json::from_str(rest).ok().map(Element::Value),
            "i:" => rest.parse().ok().map(Element::Index),
            _ => None,
        }
    }

    fn matches_item(&self, index: usize, item: &Value) -> bool {
        match self {
            Element::Key(key) => {
                item.is_object()
                    && key
                        .iter()
                        .all(|(name, value)| item.get(name) == Some(value))
            }
            Element::Value(value) => item == value,
            Element::Index(i) => *i == index,
            Element::Field(_) => false,
        }
    }

    fn child<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        match (self, value) {
            (Element::Field(name), Value::Object(map)) => map.get(name),
            (_, Value::Array(items)) => items
                .iter()
                .enumerate()
                .find(|(i, item)| self.matches_item(*i, item))
                .map(|(_, item)| item),
            _ => None,
        }
    }

    fn child_mut<'a>(&self, value: &'a mut Value) -> Option<&'a mut Value> {
        match (self, value) {
            (Element::Field(name), Value::Object(map)) => map.get_mut(name),
            (_, Value::Array(items)) => items
                .iter_mut()
                .enumerate()
                .find(|(i, item)| self.matches_item(*i, item))
                .map(|(_, item)| item),
            _ => None,
        }
    }

    fn remove_from(&self, value: &mut Value) {
        match (self, value) {
            (Element::Field(name), Value::Object(map)) => {
                map.shift_remove(name);
            }
            (_, Value::Array(items)) => {
                let mut index = 0;
                items.retain(|item| {
                    let keep = !self.matches_item(index, item);
                    index += 1;
                    keep
                });
            }
            _ => {}
        }
    }

    /// Upstream's display form of one element.
    fn display(&self) -> String {
        match self {
            Element::Field(name) => format!(".{name}"),
            Element::Key(key) => {
                let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            Element::Value(value) => format!("[={value}]"),
            Element::Index(index) => format!("[{index}]"),
        }
    }
}

fn display_path(path: &[String]) -> String {
    path.iter()
        .map(|element| match Element::parse(element) {
            Some(parsed) => parsed.display(),
            None => element.clone(),
        })
        .collect()
}

fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, element| {
        Element::parse(element)?.child(value)
    })
}

// ---------------------------------------------------------------------------------------
// Schema positions

/// What the schema says about one position: the field's metadata, the schema of its value
/// (of its items, for a list) and whether a map there is atomic.
#[derive(Clone, Default)]
struct Position {
    meta: FieldMeta,
    cursor: Option<Cursor>,
    atomic_map: bool,
}

impl Position {
    fn root(group: &str, kind: &str) -> Position {
        Position {
            cursor: Cursor::root(group, kind),
            ..Position::default()
        }
    }

    fn field(&self, name: &str) -> Position {
        let Some(cursor) = self.cursor else {
            return Position::default();
        };
        let Some((meta, child)) = cursor.field(name) else {
            return Position::default();
        };
        let atomic_map = cursor
            .schema()
            .get("properties")
            .and_then(|p| p.get(name))
            .and_then(|p| p.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
            || is_atomic_struct(child);
        Position {
            meta,
            cursor: Some(child),
            atomic_map,
        }
    }

    /// The position of a list's items (the cursor already points at them).
    fn item(&self) -> Position {
        Position {
            cursor: self.cursor,
            atomic_map: self.cursor.is_some_and(is_atomic_struct),
            ..Position::default()
        }
    }

    fn list_kind(&self) -> ListKind {
        let keys = if self.meta.list_map_keys.is_empty() {
            self.meta.merge_key.iter().cloned().collect()
        } else {
            self.meta.list_map_keys.clone()
        };
        match self.meta.list_type {
            Some(ListType::Map) if !keys.is_empty() => ListKind::Map(keys),
            Some(ListType::Set) => ListKind::Set,
            None if self.meta.merge_key.is_some() => ListKind::Map(keys),
            None if self.meta.merges_lists() => ListKind::Set,
            _ => ListKind::Atomic,
        }
    }
}

enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// The `k:` element of an associative list item, or `None` when a key field is missing.
fn key_element(item: &Value, keys: &[String]) -> Option<String> {
    let map = item.as_object()?;
    let default_protocol = Value::from("TCP");
    let mut key = BTreeMap::new();
    for name in keys {
        match map.get(name) {
            // Upstream fills a missing key field from the schema's default, and the only
            // defaulted key fields of the served kinds are the `protocol` of container and
            // service ports (TCP): so `ports: [{containerPort: 80}]` applies as it does on
            // Kubernetes.
            None | Some(Value::Null) if name == "protocol" => {
                key.insert(name.as_str(), &default_protocol);
            }
            None | Some(Value::Null) => return None,
            Some(value) => {
                key.insert(name.as_str(), value);
            }
        }
    }
    Some(format!("k:{}", serde_json::to_string(&key).ok()?))
}

fn value_element(item: &Value) -> String {
    format!("v:{item}")
}

// ---------------------------------------------------------------------------------------
// The fields an object sets

/// Every field `obj` sets, as a [`FieldSet`]: leaves, atomic values, associative list items
/// and set items. Identity and bookkeeping fields (`apiVersion`, `kind`, `metadata.name`,
/// `namespace`, `uid`, `resourceVersion`, `generation`, `creationTimestamp`, `selfLink`,
/// `managedFields`) are never included; `status` only with `include_status`.
pub fn fields_of(group: &str, kind: &str, obj: &Value, include_status: bool) -> FieldSet {
    let mut root = node_of(obj, &Position::root(group, kind));
    // A whole object that is not an object (or is empty) is not a set of fields.
    root.member = false;
    for name in IGNORED_ROOT {
        if *name != "status" || !include_status {
            root.children.remove(&format!("f:{name}"));
        }
    }
    if let Some(metadata) = root.children.get_mut("f:metadata") {
        for name in IGNORED_METADATA {
            metadata.children.remove(&format!("f:{name}"));
        }
        if metadata.children.is_empty() {
            root.children.remove("f:metadata");
        }
    }
    FieldSet { root }
}

fn node_of(value: &Value, position: &Position) -> Node {
    match value {
        Value::Object(map) if !position.atomic_map && !map.is_empty() => {
            let children = map
                .iter()
                .map(|(name, child)| (format!("f:{name}"), node_of(child, &position.field(name))))
                .collect();
            Node {
                member: false,
                children,
            }
        }
        Value::Array(items) if !items.is_empty() => match position.list_kind() {
            ListKind::Atomic => Node::leaf(),
            ListKind::Set => Node {
                member: false,
                children: items
                    .iter()
                    .map(|i| (value_element(i), Node::leaf()))
                    .collect(),
            },
            ListKind::Map(keys) => {
                let item_position = position.item();
                let mut children = BTreeMap::new();
                for (index, item) in items.iter().enumerate() {
                    let element = key_element(item, &keys).unwrap_or_else(|| format!("i:{index}"));
                    let mut node = node_of(item, &item_position);
                    node.member = true;
                    children
                        .entry(element)
                        .or_insert_with(Node::default)
                        .union_with(&node);
                }
                Node {
                    member: false,
                    children,
                }
            }
        },
        _ => Node::leaf(),
    }
}

/// The member paths of `new` that `old` lacks or, for leaves, holds with another value.
fn changed_fields(group: &str, kind: &str, old: &Value, new: &Value) -> FieldSet {
    // Only the parts of `new` that differ from `old` can hold changed fields; walking just
    // those keeps a small write to a big object (a binding, a status condition) cheap.
    let Some(differing) = without_equal_entries(old, new) else {
        return FieldSet::new();
    };
    let new_fields = fields_of(group, kind, &differing, false);
    let mut changed = FieldSet::new();
    for (path, leaf) in new_fields.member_paths() {
        let differs = match get_path(old, &path) {
            None => true,
            Some(before) => leaf && Some(before) != get_path(new, &path),
        };
        if differs {
            insert_path(&mut changed.root, &path);
        }
    }
    changed
}

/// The member paths of `old` whose values `new` no longer has.
fn removed_fields(group: &str, kind: &str, old: &Value, new: &Value) -> FieldSet {
    let mut removed = FieldSet::new();
    let Some(differing) = without_equal_entries(new, old) else {
        return removed;
    };
    for (path, _) in fields_of(group, kind, &differing, false).member_paths() {
        if get_path(new, &path).is_none() {
            insert_path(&mut removed.root, &path);
        }
    }
    removed
}

/// `value` without the map entries (at any depth through maps) that `other` holds with
/// an equal value; `None` when the two are equal. Every member path such an entry would
/// contribute exists in `other` with the same value, so the field sets computed from
/// what is left are those computed from the whole. A map left empty that way — it
/// differs from `other`'s only by entries it lacks — is kept whole, so it still counts
/// as the map it is (an empty map would be a leaf). Lists are kept whole: their items are
/// addressed by key, not by position.
fn without_equal_entries(other: &Value, value: &Value) -> Option<Value> {
    if other == value {
        return None;
    }
    let (Value::Object(other), Value::Object(map)) = (other, value) else {
        return Some(value.clone());
    };
    let mut kept = serde_json::Map::new();
    for (key, child) in map {
        let differing = match other.get(key) {
            Some(before) => without_equal_entries(before, child),
            None => Some(child.clone()),
        };
        if let Some(child) = differing {
            kept.insert(key.clone(), child);
        }
    }
    if kept.is_empty() {
        Some(value.clone())
    } else {
        Some(Value::Object(kept))
    }
}

fn insert_path(root: &mut Node, path: &[String]) {
    let mut node = root;
    for element in path {
        node = node.children.entry(element.clone()).or_default();
    }
    node.member = true;
}

// ---------------------------------------------------------------------------------------
// Validating and merging an applied configuration

fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn validate(value: &Value, position: &Position, path: &mut Vec<String>) -> Result<(), ApplyError> {
    match value {
        Value::Object(map) if !position.atomic_map => {
            for (name, child) in map {
                path.push(format!("f:{name}"));
                validate(child, &position.field(name), path)?;
                path.pop();
            }
        }
        Value::Array(items) => match position.list_kind() {
            ListKind::Atomic => {}
            ListKind::Set => {
                let mut seen = BTreeSet::new();
                for item in items {
                    if item.is_object() || item.is_array() {
                        return Err(ApplyError::Invalid(format!(
                            "{}: set list has a non-scalar element",
                            display_path(path)
                        )));
                    }
                    if !seen.insert(item.to_string()) {
                        return Err(ApplyError::Invalid(format!(
                            "{}: duplicate entries for key [={item}]",
                            display_path(path)
                        )));
                    }
                }
            }
            ListKind::Map(keys) => {
                let item_position = position.item();
                let mut seen = BTreeSet::new();
                for (index, item) in items.iter().enumerate() {
                    let Some(element) = key_element(item, &keys) else {
                        return Err(ApplyError::Invalid(format!(
                            "{}: element {index}: associative list with keys has an element \
                             that omits key field {:?}",
                            display_path(path),
                            keys.join(",")
                        )));
                    };
                    if !seen.insert(element.clone()) {
                        let key = Element::parse(&element).map(|e| e.display());
                        return Err(ApplyError::Invalid(format!(
                            "{}: duplicate entries for key {}",
                            display_path(path),
                            key.unwrap_or_default()
                        )));
                    }
                    path.push(element);
                    validate(item, &item_position, path)?;
                    path.pop();
                }
            }
        },
        _ => {}
    }
    Ok(())
}

/// Sets every field of `applied` in `live`: maps merged field by field, associative lists by
/// key, sets by value, everything else replaced.
fn merge_into(live: &mut Value, applied: &Value, position: &Position) {
    match (&mut *live, applied) {
        (Value::Object(live_map), Value::Object(applied_map)) if !position.atomic_map => {
            for (name, value) in applied_map {
                match live_map.get_mut(name) {
                    Some(existing) => merge_into(existing, value, &position.field(name)),
                    None => {
                        live_map.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live_items), Value::Array(applied_items)) => match position.list_kind() {
            ListKind::Atomic => *live = applied.clone(),
            ListKind::Set => {
                for item in applied_items {
                    if !live_items.contains(item) {
                        live_items.push(item.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                let item_position = position.item();
                for item in applied_items {
                    let key = key_element(item, &keys);
                    let existing = key.as_ref().and_then(|key| {
                        live_items
                            .iter_mut()
                            .find(|live_item| key_element(live_item, &keys).as_ref() == Some(key))
                    });
                    match existing {
                        Some(existing) => merge_into(existing, item, &item_position),
                        None => live_items.push(item.clone()),
                    }
                }
            }
        },
        _ => *live = applied.clone(),
    }
}

/// Whether every field `config` sets holds the same value in `live`, with the list and map
/// semantics of the schema (keyed items matched by key, sets by element, atomic values
/// whole).
fn contains(live: &Value, config: &Value, position: &Position) -> bool {
    match (live, config) {
        (Value::Object(live_map), Value::Object(config_map)) if !position.atomic_map => {
            config_map.iter().all(|(name, value)| {
                live_map
                    .get(name)
                    .is_some_and(|existing| contains(existing, value, &position.field(name)))
            })
        }
        (Value::Array(live_items), Value::Array(config_items)) => match position.list_kind() {
            ListKind::Atomic => live == config,
            ListKind::Set => config_items.iter().all(|item| live_items.contains(item)),
            ListKind::Map(keys) => {
                let item_position = position.item();
                config_items.iter().all(|item| {
                    let Some(key) = key_element(item, &keys) else {
                        return false;
                    };
                    live_items.iter().any(|live_item| {
                        key_element(live_item, &keys).as_ref() == Some(&key)
                            && contains(live_item, item, &item_position)
                    })
                })
            }
        },
        _ => live == config,
    }
}

/// Removes from `value` the members of `remove` that no manager owns anything at or below
/// (`owned`), and the containers left empty by that which nobody owns.
fn prune(value: &mut Value, remove: &Node, owned: Option<&Node>) {
    for (text, remove_child) in &remove.children {
        let Some(element) = Element::parse(text) else {
            continue;
        };
        let owned_child = owned.and_then(|o| o.children.get(text));
        let owned_below = owned_child.is_some_and(|o| !o.is_empty());
        if remove_child.member && !owned_below {
            element.remove_from(value);
            continue;
        }
        let Some(child) = element.child_mut(value) else {
            continue;
        };
        let was_empty = is_empty_container(child);
        prune(child, remove_child, owned_child);
        if !was_empty && is_empty_container(child) && !owned_child.is_some_and(|o| o.member) {
            element.remove_from(value);
        }
    }
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// managedFields entries

struct Entry {
    raw: Map<String, Value>,
    manager: String,
    operation: String,
    subresource: String,
    fields: FieldSet,
    /// `fields` differs from what `raw` holds.
    changed: bool,
}

impl Entry {
    fn new(manager: &str, operation: &str, api_version: &str) -> Entry {
        let mut raw = Map::new();
        raw.insert("manager".to_owned(), json!(manager));
        raw.insert("operation".to_owned(), json!(operation));
        raw.insert("apiVersion".to_owned(), json!(api_version));
        Entry {
            raw,
            manager: manager.to_owned(),
            operation: operation.to_owned(),
            subresource: String::new(),
            fields: FieldSet::new(),
            changed: true,
        }
    }

    fn parse(value: &Value) -> Option<Entry> {
        let raw = value.as_object()?.clone();
        let text = |name: &str| raw.get(name).and_then(Value::as_str).unwrap_or_default();
        if !matches!(text("fieldsType"), "" | "FieldsV1") {
            return None;
        }
        let fields = match raw.get("fieldsV1") {
            Some(v) => FieldSet::from_fields_v1(v).ok()?,
            None => FieldSet::new(),
        };
        let operation = text("operation").to_owned();
        if operation != "Apply" && operation != "Update" {
            return None;
        }
        Some(Entry {
            manager: text("manager").to_owned(),
            subresource: text("subresource").to_owned(),
            operation,
            fields,
            changed: false,
            raw,
        })
    }

    fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource.is_empty()
    }

    fn api_version(&self) -> &str {
        self.raw
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn set_fields(&mut self, fields: FieldSet) {
        if fields != self.fields {
            self.fields = fields;
            self.changed = true;
        }
    }

    /// Marks this entry as written by its manager now.
    fn touch(&mut self, api_version: &str, now: &str) {
        self.raw.insert("apiVersion".to_owned(), json!(api_version));
        self.raw.insert("time".to_owned(), json!(now));
    }

    fn into_value(mut self) -> Value {
        if self.changed || !self.raw.contains_key("fieldsV1") {
            self.raw.insert("fieldsType".to_owned(), json!("FieldsV1"));
            self.raw
                .insert("fieldsV1".to_owned(), self.fields.to_fields_v1());
        }
        Value::Object(self.raw)
    }
}

fn managed_fields_of(obj: &Value) -> Option<&Vec<Value>> {
    obj.get("metadata")?.get("managedFields")?.as_array()
}

fn parse_entries(entries: &[Value]) -> Vec<Entry> {
    entries.iter().filter_map(Entry::parse).collect()
}

/// Drops empty entries and orders the rest as upstream stores them: by operation, time,
/// manager, apiVersion, subresource.
fn finish(entries: Vec<Entry>) -> Vec<Value> {
    let mut values: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::into_value)
        .collect();
    let text = |v: &Value, name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    values.sort_by_cached_key(|v| {
        ["operation", "time", "manager", "apiVersion", "subresource"].map(|name| text(v, name))
    });
    values
}

fn set_managed_fields(obj: &mut Value, entries: &[Value]) {
    if let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            metadata.shift_remove("managedFields");
        } else {
            metadata.insert("managedFields".to_owned(), Value::Array(entries.to_vec()));
        }
    } else if let Some(map) = obj.as_object_mut()
        && !entries.is_empty()
    {
        map.insert(
            "metadata".to_owned(),
            json!({ "managedFields": entries.to_vec() }),
        );
    }
}

fn api_version_of(obj: &Value) -> &str {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Apply and update

/// Whether applying `applied` as `manager` would leave `live`'s content exactly as it is:
/// every field the configuration sets already holds that value, and `manager` already owns
/// exactly those fields through an earlier apply (so none would be removed). Much cheaper
/// than [`apply`]; callers use it to skip work. `false` also means "cannot tell".
pub fn is_noop(group: &str, kind: &str, live: &Value, applied: &Value, manager: &str) -> bool {
    let mut config = applied.clone();
    strip_nulls(&mut config);
    if let Some(map) = config.as_object_mut() {
        map.shift_remove("status");
    }
    let root = Position::root(group, kind);
    if validate(&config, &root, &mut Vec::new()).is_err() {
        return false;
    }
    let mut comparable = config.clone();
    if let Some(map) = comparable.as_object_mut() {
        for name in IGNORED_ROOT {
            map.shift_remove(*name);
        }
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for name in IGNORED_METADATA {
                metadata.shift_remove(*name);
            }
        }
    }
    if !contains(live, &comparable, &root) {
        return false;
    }
    let Some(stored) = managed_fields_of(live) else {
        return false;
    };
    parse_entries(stored)
        .iter()
        .find(|entry| entry.manager == manager && entry.operation == "Apply")
        .is_some_and(|entry| entry.fields == fields_of(group, kind, &config, false))
}

/// Server-side apply of `applied` (the request body) by `manager` onto `live` (`None`:
/// create). `force` takes ownership of conflicting fields from their managers.
///
/// The applier comes to own exactly the fields `applied` sets. A field another manager owns
/// that the apply would change is a conflict (the same value is shared ownership); with
/// `force` the applier takes it and the others lose it. Fields the applier owned before but
/// no longer applies are removed from the object unless another manager owns them. `null`s in
/// `applied` read as absent, and its `status` is ignored (the main resource resets it).
/// Identity fields (`apiVersion`, `kind`, `metadata.name`, ...) are taken from `live`; the
/// caller checks they agree.
pub fn apply(
    group: &str,
    kind: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<ApplyResult, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".to_owned(),
        ));
    }
    if applied.get("metadata").is_some_and(|m| !m.is_object())
        || live.is_some_and(|l| !l.is_object())
    {
        return Err(ApplyError::Invalid(
            "metadata must be an object, and so must the live object".to_owned(),
        ));
    }
    if managed_fields_of(applied).is_some_and(|m| !m.is_empty()) {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".to_owned(),
        ));
    }
    let mut config = applied.clone();
    strip_nulls(&mut config);
    if let Some(map) = config.as_object_mut() {
        map.shift_remove("status");
    }
    let root = Position::root(group, kind);
    validate(&config, &root, &mut Vec::new())?;
    let applied_fields = fields_of(group, kind, &config, false);

    let Some(live) = live else {
        let api_version = api_version_of(&config).to_owned();
        let mut entry = Entry::new(manager, "Apply", &api_version);
        entry.fields = applied_fields;
        entry.touch(&api_version, now);
        let managed_fields = finish(vec![entry]);
        let mut object = config;
        set_managed_fields(&mut object, &managed_fields);
        return Ok(ApplyResult {
            object,
            managed_fields,
        });
    };

    let api_version = match api_version_of(live) {
        "" => api_version_of(&config),
        v => v,
    }
    .to_owned();
    let mut entries = match managed_fields_of(live) {
        Some(stored) if !stored.is_empty() => parse_entries(stored),
        _ => {
            // Written before fields were tracked: someone set these, so an apply changing
            // them must conflict rather than silently take them.
            let mut entry = Entry::new(BEFORE_FIRST_APPLY, "Update", &api_version);
            entry.fields = fields_of(group, kind, live, false);
            entry.touch(&api_version, now);
            vec![entry]
        }
    };

    // Identity and bookkeeping stay as they are live.
    if let Some(map) = config.as_object_mut() {
        for name in IGNORED_ROOT {
            map.shift_remove(*name);
        }
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for name in IGNORED_METADATA {
                metadata.shift_remove(*name);
            }
        }
    }
    let mut merged = live.clone();
    merge_into(&mut merged, &config, &root);
    let changed = changed_fields(group, kind, live, &merged);

    let mut conflicts = Vec::new();
    for entry in &entries {
        if entry.manager == manager {
            continue;
        }
        for (path, _) in entry.fields.intersection(&changed).member_paths() {
            conflicts.push(Conflict {
                manager: entry.manager.clone(),
                operation: entry.operation.clone(),
                api_version: entry.api_version().to_owned(),
                subresource: entry.subresource.clone(),
                field: display_path(&path),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }

    let mut previous = FieldSet::new();
    for entry in &mut entries {
        if entry.is(manager, "Apply") {
            previous = entry.fields.clone();
        } else {
            let rest = entry.fields.difference(&changed);
            entry.set_fields(rest);
        }
    }
    let position = match entries.iter().position(|e| e.is(manager, "Apply")) {
        Some(position) => position,
        None => {
            entries.push(Entry::new(manager, "Apply", &api_version));
            entries.len() - 1
        }
    };
    entries[position].set_fields(applied_fields);

    let owned = entries
        .iter()
        .fold(FieldSet::new(), |all, e| all.union(&e.fields));
    let remove = previous.difference(&owned);
    prune(&mut merged, &remove.root, Some(&owned.root));
    // As upstream: the applier's time moves when the apply did anything at all.
    if entries[position].changed || merged != *live {
        entries[position].touch(&api_version, now);
    }

    let managed_fields = finish(entries);
    set_managed_fields(&mut merged, &managed_fields);
    Ok(ApplyResult {
        object: merged,
        managed_fields,
    })
}

/// The `metadata.managedFields` to store after a write that is not an apply (create, update,
/// patch) by `manager` turned `old` (`None`: created) into `new`: the manager's `Update`
/// entry gains every field added or changed, other managers lose those, nobody keeps a field
/// that no longer exists, and empty entries are dropped.
///
/// The entries start from `old`'s unless the request changed `metadata.managedFields`
/// itself: then from `new`'s, and a list of only empty or malformed entries (`[{}]`) strips
/// them all, as upstream.
pub fn update_managed_fields(
    group: &str,
    kind: &str,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    now: &str,
) -> Vec<Value> {
    let requested = managed_fields_of(new);
    let stored = old.and_then(managed_fields_of);
    let mut entries = match requested {
        Some(requested) if Some(requested) != stored && !requested.is_empty() => {
            let entries = parse_entries(requested);
            if entries.is_empty() {
                return Vec::new();
            }
            entries
        }
        _ => stored.map(|s| parse_entries(s)).unwrap_or_default(),
    };
    let (changed, removed) = match old {
        Some(old) => (
            changed_fields(group, kind, old, new),
            removed_fields(group, kind, old, new),
        ),
        None => (fields_of(group, kind, new, false), FieldSet::new()),
    };
    let api_version = api_version_of(new).to_owned();
    for entry in &mut entries {
        if !entry.is(manager, "Update") {
            let mut rest = entry.fields.difference(&changed);
            rest.root.remove_subtrees(&removed.root);
            entry.set_fields(rest);
        }
    }
    let position = match entries.iter().position(|e| e.is(manager, "Update")) {
        Some(position) => position,
        None => {
            entries.push(Entry::new(manager, "Update", &api_version));
            entries.len() - 1
        }
    };
    let entry = &mut entries[position];
    let mut mine = entry.fields.union(&changed);
    mine.root.remove_subtrees(&removed.root);
    entry.set_fields(mine);
    // As upstream: the updater's time moves when it changed any field.
    if !changed.is_empty() || entry.changed {
        entry.touch(&api_version, now);
    }
    finish(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-02T00:00:00Z";
    const T3: &str = "2026-01-03T00:00:00Z";

    /// A Deployment as `kubectl apply` sends it.
    fn config(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}
                }
            }
        })
    }

    /// As stored: with server-set identity fields.
    fn stored(mut object: Value) -> Value {
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.insert("uid".into(), json!("u-1"));
        metadata.insert("resourceVersion".into(), json!("7"));
        metadata.insert("creationTimestamp".into(), json!(T1));
        object
    }

    fn apply_ok(live: Option<&Value>, applied: &Value, manager: &str, now: &str) -> Value {
        let result = apply("apps", "Deployment", live, applied, manager, false, now)
            .unwrap_or_else(|e| panic!("apply failed: {e}"));
        assert_eq!(
            result.object["metadata"]["managedFields"],
            Value::Array(result.managed_fields.clone())
        );
        stored(result.object)
    }

    fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
        object["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
    }

    fn owned(object: &Value, manager: &str, operation: &str) -> Vec<String> {
        entry(object, manager, operation)
            .map(|e| FieldSet::from_fields_v1(&e["fieldsV1"]).unwrap().paths())
            .unwrap_or_default()
    }

    #[test]
    fn every_atomic_struct_is_a_definition() {
        for name in ATOMIC_STRUCTS {
            assert!(schema::definitions().contains_key(*name), "{name}");
        }
    }

    #[test]
    fn create_by_apply() {
        let applied = config(3, "nginx:1.25");
        let result = apply("apps", "Deployment", None, &applied, "kubectl", false, T1).unwrap();
        let mut expected = applied.clone();
        expected["metadata"]["managedFields"] = json!(result.managed_fields);
        assert_eq!(result.object, expected);
        assert_eq!(
            result.managed_fields,
            [json!({
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {"f:containers": {
                                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
                            }}
                        }
                    }
                }
            })]
        );
    }

    #[test]
    fn reapplying_the_same_config_changes_nothing() {
        let applied = config(3, "nginx:1.25");
        let live = apply_ok(None, &applied, "kubectl", T1);
        let again = apply_ok(Some(&live), &applied, "kubectl", T2);
        assert_eq!(again, live);
    }

    #[test]
    fn changed_image_is_merged_and_keeps_server_fields() {
        let live = apply_ok(None, &config(3, "nginx:1.25"), "kubectl", T1);
        let next = apply_ok(Some(&live), &config(3, "nginx:1.26"), "kubectl", T2);
        assert_eq!(
            next["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.26"
        );
        assert_eq!(next["metadata"]["uid"], "u-1");
        assert_eq!(entry(&next, "kubectl", "Apply").unwrap()["time"], T2);
    }

    #[test]
    fn conflict_with_another_manager_and_force() {
        let created = stored(config(3, "nginx:1.25"));
        let managed = update_managed_fields(
            "apps",
            "Deployment",
            None,
            &created,
            "kubectl-client-side-apply",
            T1,
        );
        let mut live = created.clone();
        live["metadata"]["managedFields"] = json!(managed);

        // The same values: shared ownership, no conflict.
        let shared = apply_ok(Some(&live), &config(3, "nginx:1.25"), "kubectl", T2);
        assert!(owned(&shared, "kubectl", "Apply").contains(&".spec.replicas".to_owned()));
        assert!(
            owned(&shared, "kubectl-client-side-apply", "Update")
                .contains(&".spec.replicas".to_owned())
        );

        let changed = config(5, "nginx:1.25");
        let error = apply(
            "apps",
            "Deployment",
            Some(&live),
            &changed,
            "kubectl",
            false,
            T2,
        )
        .unwrap_err();
        let ApplyError::Conflicts(conflicts) = &error else {
            panic!("{error:?}");
        };
        assert_eq!(
            conflicts,
            &[Conflict {
                manager: "kubectl-client-side-apply".into(),
                operation: "Update".into(),
                api_version: "apps/v1".into(),
                subresource: String::new(),
                field: ".spec.replicas".into(),
            }]
        );
        assert_eq!(
            error.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using \
             apps/v1: .spec.replicas"
        );

        let forced = apply(
            "apps",
            "Deployment",
            Some(&live),
            &changed,
            "kubectl",
            true,
            T2,
        )
        .unwrap()
        .object;
        assert_eq!(forced["spec"]["replicas"], 5);
        assert!(owned(&forced, "kubectl", "Apply").contains(&".spec.replicas".to_owned()));
        let theirs = owned(&forced, "kubectl-client-side-apply", "Update");
        assert!(!theirs.contains(&".spec.replicas".to_owned()));
        assert!(theirs.contains(&".spec.template.spec.containers[name=\"web\"].image".to_owned()));
    }

    #[test]
    fn several_conflicts_message() {
        let created = stored(config(3, "nginx:1.25"));
        let mut live = created.clone();
        live["metadata"]["managedFields"] = json!(update_managed_fields(
            "apps",
            "Deployment",
            None,
            &created,
            "a",
            T1
        ));
        let error = apply(
            "apps",
            "Deployment",
            Some(&live),
            &config(4, "nginx:2"),
            "b",
            false,
            T2,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"a\" using apps/v1:\n- .spec.replicas\n\
             - .spec.template.spec.containers[name=\"web\"].image"
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let mut first = config(3, "nginx:1.25");
        first["metadata"]["labels"]["tier"] = json!("front");
        first["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 2}});
        let live = apply_ok(None, &first, "kubectl", T1);
        let next = apply_ok(Some(&live), &config(3, "nginx:1.25"), "kubectl", T2);
        assert_eq!(next["metadata"]["labels"], json!({"app": "web"}));
        assert!(next["spec"].get("strategy").is_none(), "{next:#}");
        assert!(
            !owned(&next, "kubectl", "Apply")
                .iter()
                .any(|p| p.contains("tier"))
        );
    }

    #[test]
    fn a_field_another_manager_shares_is_kept_when_dropped() {
        let live = apply_ok(None, &config(3, "nginx:1.25"), "a", T1);
        let live = apply_ok(Some(&live), &config(3, "nginx:1.25"), "b", T2);
        let mut without = config(3, "nginx:1.25");
        without["spec"].as_object_mut().unwrap().remove("replicas");
        let next = apply_ok(Some(&live), &without, "a", T3);
        assert_eq!(next["spec"]["replicas"], 3);
        assert!(owned(&next, "b", "Apply").contains(&".spec.replicas".to_owned()));
        assert!(!owned(&next, "a", "Apply").contains(&".spec.replicas".to_owned()));
    }

    #[test]
    fn two_appliers_own_different_containers() {
        let live = apply_ok(None, &config(3, "nginx:1.25"), "kubectl", T1);
        let sidecar = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [{"name": "envoy", "image": "envoy:1"}]}}}
        });
        let both = apply_ok(Some(&live), &sidecar, "mesh", T2);
        let names = |o: &Value| -> Vec<String> {
            o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(&both), ["web", "envoy"]);
        assert!(
            owned(&both, "mesh", "Apply")
                .contains(&".spec.template.spec.containers[name=\"envoy\"].image".to_owned())
        );

        // The first applier re-applies its own container only: the sidecar stays.
        let updated = apply_ok(Some(&both), &config(3, "nginx:1.26"), "kubectl", T3);
        assert_eq!(names(&updated), ["web", "envoy"]);
        assert_eq!(
            updated["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.26"
        );

        // The mesh drops its container: it goes, the other stays.
        let mut empty = sidecar.clone();
        empty["spec"] = json!({"template": {"spec": {"containers": []}}});
        let dropped = apply_ok(Some(&updated), &empty, "mesh", T3);
        assert_eq!(names(&dropped), ["web"]);
    }

    #[test]
    fn scale_moves_replicas_to_the_updater() {
        let live = apply_ok(None, &config(3, "nginx:1.25"), "kubectl", T1);
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        let managed = update_managed_fields(
            "apps",
            "Deployment",
            Some(&live),
            &scaled,
            "kubectl-scale",
            T2,
        );
        scaled["metadata"]["managedFields"] = json!(managed);
        assert_eq!(managed.len(), 2);
        assert_eq!(managed[0]["manager"], "kubectl");
        assert_eq!(managed[0]["time"], T1);
        assert_eq!(
            managed[1],
            json!({
                "manager": "kubectl-scale",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": T2,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}}
            })
        );
        assert!(!owned(&scaled, "kubectl", "Apply").contains(&".spec.replicas".to_owned()));

        // Re-applying the old count now conflicts with the scaler.
        let error = apply(
            "apps",
            "Deployment",
            Some(&scaled),
            &config(3, "nginx:1.25"),
            "kubectl",
            false,
            T3,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("conflict with \"kubectl-scale\" using apps/v1: .spec.replicas")
        );

        // Leaving replicas out leaves the scaler's value alone.
        let mut without = config(3, "nginx:1.25");
        without["spec"].as_object_mut().unwrap().remove("replicas");
        let next = apply_ok(Some(&scaled), &without, "kubectl", T3);
        assert_eq!(next["spec"]["replicas"], 5);
    }

    #[test]
    fn update_that_removes_a_field_takes_it_from_everyone() {
        let mut first = config(3, "nginx:1.25");
        first["metadata"]["labels"]["tier"] = json!("front");
        let live = apply_ok(None, &first, "kubectl", T1);
        let mut edited = live.clone();
        edited["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("tier");
        let managed = update_managed_fields("apps", "Deployment", Some(&live), &edited, "edit", T2);
        // Nothing added or changed: the editor owns nothing and gets no entry.
        assert_eq!(managed.len(), 1);
        let fields = FieldSet::from_fields_v1(&managed[0]["fieldsV1"]).unwrap();
        assert!(!fields.contains(&["f:metadata", "f:labels", "f:tier"]));
        assert!(fields.contains(&["f:metadata", "f:labels", "f:app"]));
    }

    #[test]
    fn unchanged_update_keeps_entries_and_request_can_strip_them() {
        let live = apply_ok(None, &config(3, "nginx:1.25"), "kubectl", T1);
        let same = update_managed_fields("apps", "Deployment", Some(&live), &live, "x", T2);
        assert_eq!(json!(same), live["metadata"]["managedFields"]);
        let mut strip = live.clone();
        strip["metadata"]["managedFields"] = json!([{}]);
        assert!(
            update_managed_fields("apps", "Deployment", Some(&live), &strip, "x", T2).is_empty()
        );
    }

    #[test]
    fn object_without_managed_fields_belongs_to_before_first_apply() {
        let live = stored(config(3, "nginx:1.25"));
        let error = apply(
            "apps",
            "Deployment",
            Some(&live),
            &config(3, "nginx:2"),
            "kubectl",
            false,
            T2,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("\"before-first-apply\" using apps/v1")
        );
        let same = apply_ok(Some(&live), &config(3, "nginx:1.25"), "kubectl", T2);
        assert_eq!(same["spec"], live["spec"]);
    }

    #[test]
    fn set_lists_merge_by_value() {
        let ns = |finalizers: Value| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "n", "finalizers": finalizers}})
        };
        let live = apply("", "Namespace", None, &ns(json!(["a"])), "one", false, T1)
            .unwrap()
            .object;
        let live = apply(
            "",
            "Namespace",
            Some(&live),
            &ns(json!(["b"])),
            "two",
            false,
            T2,
        )
        .unwrap()
        .object;
        assert_eq!(live["metadata"]["finalizers"], json!(["a", "b"]));
        let entry = &live["metadata"]["managedFields"][1];
        assert_eq!(
            entry["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}}}})
        );
        let live = apply(
            "",
            "Namespace",
            Some(&live),
            &ns(json!([])),
            "one",
            false,
            T3,
        )
        .unwrap()
        .object;
        assert_eq!(live["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn noop_is_exact_about_values_and_ownership() {
        let applied = config(3, "nginx");
        let live = stored(
            apply("apps", "Deployment", None, &applied, "m", false, T1)
                .unwrap()
                .object,
        );
        assert!(is_noop("apps", "Deployment", &live, &applied, "m"));
        // Another manager does not own these fields through an apply.
        assert!(!is_noop("apps", "Deployment", &live, &applied, "other"));
        // A changed value, or a field dropped from the configuration (it would be removed).
        assert!(!is_noop(
            "apps",
            "Deployment",
            &live,
            &config(4, "nginx"),
            "m"
        ));
        let mut fewer = applied.clone();
        fewer["metadata"].as_object_mut().unwrap().remove("labels");
        assert!(!is_noop("apps", "Deployment", &live, &fewer, "m"));
        // Keyed list items match by key, whatever else the live items hold.
        let mut with_defaults = live.clone();
        with_defaults["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("Always");
        assert!(is_noop("apps", "Deployment", &with_defaults, &applied, "m"));
        // Agrees with apply: applying a no-op changes no field of the object.
        let again = apply("apps", "Deployment", Some(&live), &applied, "m", true, T3).unwrap();
        let strip = |mut v: Value| {
            v["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            v
        };
        assert_eq!(strip(again.object), strip(live));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let mut duplicate = config(3, "nginx");
        duplicate["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]);
        let error = apply("apps", "Deployment", None, &duplicate, "m", false, T1).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("duplicate entries for key [name=\"a\"]"),
            "{error}"
        );
        // A port without its protocol is keyed by the default protocol, as upstream does.
        let mut ports = config(3, "nginx");
        ports["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}]);
        let applied = apply("apps", "Deployment", None, &ports, "m", false, T1).unwrap();
        let again = apply(
            "apps",
            "Deployment",
            Some(&applied.object),
            &ports,
            "m",
            false,
            T1,
        );
        assert!(again.is_ok(), "{again:?}");
        let mut twice = config(3, "nginx");
        twice["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80}, {"containerPort": 80, "protocol": "TCP"}]);
        let error = apply("apps", "Deployment", None, &twice, "m", false, T1).unwrap_err();
        assert!(error.to_string().contains("duplicate entries"), "{error}");
        let mut keyless = config(3, "nginx");
        keyless["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
        let error = apply("apps", "Deployment", None, &keyless, "m", false, T1).unwrap_err();
        assert!(error.to_string().contains("omits key field"), "{error}");
        let mut managed = config(3, "nginx");
        managed["metadata"]["managedFields"] = json!([{"manager": "x"}]);
        assert!(matches!(
            apply("apps", "Deployment", None, &managed, "m", false, T1),
            Err(ApplyError::Invalid(_))
        ));
        assert!(matches!(
            apply("apps", "Deployment", None, &json!([1]), "m", false, T1),
            Err(ApplyError::Invalid(_))
        ));
    }

    #[test]
    fn field_set_round_trips_and_combines() {
        let text = json!({"f:metadata": {"f:labels": {"f:app": {}}},
                          "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}});
        let set = FieldSet::from_fields_v1(&text).unwrap();
        assert_eq!(set.to_fields_v1(), text);
        assert_eq!(
            set.paths(),
            [
                ".metadata.labels.app",
                ".spec.containers[name=\"web\"]",
                ".spec.containers[name=\"web\"].image"
            ]
        );
        let labels =
            FieldSet::from_fields_v1(&json!({"f:metadata": {"f:labels": {"f:app": {}}}})).unwrap();
        assert_eq!(set.intersection(&labels), labels);
        let rest = set.difference(&labels);
        assert!(!rest.contains(&["f:metadata", "f:labels", "f:app"]));
        assert_eq!(rest.union(&labels), set);
        assert!(set.difference(&set).is_empty());
        assert_eq!(FieldSet::new().to_fields_v1(), json!({}));
        for bad in [
            json!([]),
            json!({"x:y": {}}),
            json!({"f:a": 1}),
            json!({"k:[1]": {}}),
            json!({".": {"f:a": {}}}),
        ] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let names = prop::sample::select(vec![
            "metadata",
            "labels",
            "app",
            "spec",
            "replicas",
            "template",
            "containers",
            "name",
            "image",
            "selector",
            "finalizers",
            "ports",
            "containerPort",
            "protocol",
            "status",
            "apiVersion",
            "managedFields",
            "uid",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0i64..4).prop_map(Value::from),
            prop::sample::select(vec!["a", "b", "web", "TCP"]).prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((names.clone(), inner), 0..5).prop_map(|e| Value::Object(
                    e.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    fn deploymentish() -> impl Strategy<Value = Value> {
        arbitrary_json().prop_map(|spec| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web"},
                   "spec": {"template": {"spec": {"containers": spec.clone()}}, "x": spec}})
        })
    }

    /// A Deployment config with a random subset of replicas, labels and containers.
    fn random_config() -> impl Strategy<Value = Value> {
        let container = (
            prop::sample::select(vec!["web", "envoy", "log"]),
            prop::sample::select(vec!["img:1", "img:2"]),
            prop::option::of(prop::sample::select(vec![80i64, 8080])),
        );
        (
            prop::option::of(1i64..4),
            prop::collection::btree_map(
                prop::sample::select(vec!["app", "tier", "team"]),
                prop::sample::select(vec!["x", "y"]),
                0..3,
            ),
            prop::collection::vec(container, 0..3),
            prop::option::of(prop::sample::subsequence(vec!["f1", "f2", "f3"], 0..3)),
        )
            .prop_map(|(replicas, labels, containers, finalizers)| {
                let mut seen = BTreeSet::new();
                let containers: Vec<Value> = containers
                    .into_iter()
                    .filter(|(name, _, _)| seen.insert(*name))
                    .map(|(name, image, port)| {
                        let mut c = json!({"name": name, "image": image});
                        if let Some(port) = port {
                            c["ports"] = json!([{"containerPort": port, "protocol": "TCP"}]);
                        }
                        c
                    })
                    .collect();
                let mut config = json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "labels": labels},
                    "spec": {"template": {"spec": {"containers": containers}}}
                });
                if let Some(replicas) = replicas {
                    config["spec"]["replicas"] = json!(replicas);
                }
                if let Some(finalizers) = finalizers {
                    config["metadata"]["finalizers"] = json!(finalizers);
                }
                config
            })
    }

    proptest! {
        #[test]
        fn pruned_field_diffs_equal_whole_object_diffs(
            old in prop_oneof![arbitrary_json(), deploymentish()],
            new in prop_oneof![arbitrary_json(), deploymentish()],
            same in any::<bool>(),
        ) {
            // `same`: compare an object with an edited copy of itself, the common case.
            let new = if same {
                let mut edited = old.clone();
                if let Some(map) = edited.as_object_mut() {
                    map.insert("spec".into(), new);
                }
                edited
            } else {
                new
            };
            for (group, kind) in [("apps", "Deployment"), ("", "Pod")] {
                let mut changed = FieldSet::new();
                for (path, leaf) in fields_of(group, kind, &new, false).member_paths() {
                    let differs = match get_path(&old, &path) {
                        None => true,
                        Some(before) => leaf && Some(before) != get_path(&new, &path),
                    };
                    if differs {
                        insert_path(&mut changed.root, &path);
                    }
                }
                prop_assert_eq!(&changed_fields(group, kind, &old, &new), &changed);
                let mut removed = FieldSet::new();
                for (path, _) in fields_of(group, kind, &old, false).member_paths() {
                    if get_path(&new, &path).is_none() {
                        insert_path(&mut removed.root, &path);
                    }
                }
                prop_assert_eq!(&removed_fields(group, kind, &old, &new), &removed);
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_json(
            live in prop_oneof![arbitrary_json(), deploymentish()],
            applied in prop_oneof![arbitrary_json(), deploymentish()],
            force in any::<bool>(),
        ) {
            for (group, kind) in [("apps", "Deployment"), ("", "Pod"), ("", "Nope")] {
                let fields = fields_of(group, kind, &applied, true);
                prop_assert_eq!(&FieldSet::from_fields_v1(&fields.to_fields_v1()).unwrap(), &fields);
                let _ = FieldSet::from_fields_v1(&applied);
                let _ = update_managed_fields(group, kind, Some(&live), &applied, "u", T1);
                let _ = update_managed_fields(group, kind, None, &applied, "u", T1);
                let _ = apply(group, kind, None, &applied, "m", force, T1);
                if let Ok(first) = apply(group, kind, Some(&live), &applied, "m", force, T1) {
                    // Applying the same configuration again is a no-op.
                    let again = apply(group, kind, Some(&first.object), &applied, "m", false, T2);
                    prop_assert_eq!(again.map(|r| r.object).ok(), Some(first.object));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn applies_by_several_managers_keep_ownership_consistent(
            steps in prop::collection::vec(
                (random_config(), prop::sample::select(vec!["a", "b", "c"]), any::<bool>()),
                1..6,
            ),
        ) {
            let mut live: Option<Value> = None;
            for (i, (config, manager, force)) in steps.into_iter().enumerate() {
                let now = format!("2026-01-01T00:00:0{i}Z");
                let result = apply("apps", "Deployment", live.as_ref(), &config, manager, force, &now);
                let object = match result {
                    Ok(result) => result.object,
                    Err(ApplyError::Conflicts(conflicts)) => {
                        prop_assert!(!force && !conflicts.is_empty());
                        continue;
                    }
                    Err(other) => return Err(TestCaseError::fail(other.to_string())),
                };
                // Every applied leaf holds the applied value.
                for (path, leaf) in fields_of("apps", "Deployment", &config, false).member_paths() {
                    prop_assert!(get_path(&object, &path).is_some(), "{:?} missing", path);
                    // An empty map or list merges into what others set there.
                    if leaf && !get_path(&config, &path).is_some_and(is_empty_container) {
                        prop_assert_eq!(get_path(&object, &path), get_path(&config, &path));
                    }
                }
                // Every owned field exists, and the applier owns exactly what it applied.
                for entry in object["metadata"]["managedFields"].as_array().unwrap() {
                    let fields = FieldSet::from_fields_v1(&entry["fieldsV1"]).unwrap();
                    prop_assert!(!fields.is_empty());
                    for (path, _) in fields.member_paths() {
                        prop_assert!(get_path(&object, &path).is_some(), "{:?} stale", path);
                    }
                    if entry["manager"] == manager {
                        prop_assert_eq!(&fields, &fields_of("apps", "Deployment", &config, false));
                    }
                }
                // Re-applying is a no-op.
                let again = apply("apps", "Deployment", Some(&object), &config, manager, false, "2027-01-01T00:00:00Z");
                let again = again.map(|r| r.object).ok();
                prop_assert_eq!(again.as_ref(), Some(&object));
                live = Some(object);
            }
        }
    }
}

//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`): what
//! `kubectl patch --type strategic` and client-side `kubectl apply` send. Semantics follow
//! `k8s.io/apimachinery/pkg/util/strategicpatch` (`StrategicMergeMapPatch`, the server side);
//! the field metadata comes from [`schema`](crate::api::schema), never from a table here.
//!
//! - Objects merge key by key; `null` deletes a key.
//! - A list whose field has patch strategy `merge` is merged: objects by the field's merge key
//!   (containers by `name`, ports by `containerPort`, volume mounts by `mountPath`, ...),
//!   primitives as a set (`finalizers`). Items the patch names come in the patch's order,
//!   interleaved with the items only the original has where the original placed them.
//! - Every other list (tolerations, args, ...) is replaced by the patch's list.
//! - Directives: `$patch: replace | merge | delete` in objects; `{"$patch": "delete", <key>}`
//!   and `{"$patch": "replace"}` as items of merged lists; `$retainKeys`;
//!   `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>`.
//! - A kind moor does not serve, or a field outside its schema, merges like JSON merge patch
//!   (RFC 7396): objects merge, lists are replaced; directives still apply.
//!
//! For the patches `kubectl` generates, results are upstream's, list order included: under
//! `$setElementOrder` upstream orders by the original list as its merge left it in place (new
//! items written into the slots deleted ones vacated), and so does this module. The tests
//! compare with the real `kubectl patch --local` on fixed and on generated apply-style
//! patches (kubectl comes from scripts/setup). Where upstream's result
//! is an accident of its Go implementation the result here is the evident intent, and a
//! stored object never receives a directive key:
//!
//! - a patch value for a field or list item the original lacks is applied to nothing, so its
//!   directives are resolved and checked and its `null`s dropped; upstream copies it
//!   verbatim, `$retainKeys` and `{"$patch": "delete"}` items included;
//! - `$deleteFromPrimitiveList/<field>` deletes from any list, and from a missing one
//!   deletes nothing (upstream creates the list from the values to delete);
//! - `$patch: merge` in an object is a plain merge (upstream rejects it), and empty lists
//!   under `$setElementOrder` are fine (upstream: "no elements in any of the given slices");
//! - an unknown `$`-key is an error, not a field;
//! - a self-contradictory patch (a value both added and deleted, items missing from their
//!   `$setElementOrder`) gets a deterministic result where upstream's depends on Go's map
//!   iteration order or on sorting with an inconsistent comparator.
//!
//! This module owns only the pure function from (original, patch) to result. It does not
//! compute patches, check preconditions or conflicts, or touch HTTP and the store.

use serde_json::{Map, Value};

use crate::api::schema::{Cursor, FieldMeta, PatchStrategy};

/// Values nested deeper than this are refused: the merge recurses (and so do clone and drop
/// of `serde_json::Value`), and no Kubernetes object comes close.
pub const MAX_DEPTH: usize = 256;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Why a patch could not be applied. Every variant names the path (in the original object,
/// e.g. `spec.containers[name="web"].env`) where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch, or the object it is applied to, is not a JSON object.
    #[error("{path}: the {which} must be a JSON object, not {found}")]
    NotAnObject {
        /// Where.
        path: String,
        /// `patch` or `original`.
        which: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// An item of a merged list of objects lacks the list's merge key.
    #[error("{path}: list item {item} has no merge key {key:?}")]
    MissingMergeKey {
        /// The list.
        path: String,
        /// The merge key.
        key: String,
        /// The offending item, abbreviated.
        item: String,
    },
    /// A directive has a value it cannot have, e.g. `"$patch": "remove"`.
    #[error("{path}: invalid {directive} value {value}: expected {expected}")]
    InvalidDirective {
        /// Where the directive is.
        path: String,
        /// The directive, e.g. `$patch`.
        directive: String,
        /// The value found, abbreviated.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A key starting with `$` that is neither a directive nor a field of the schema.
    #[error("{path}: unknown directive {key:?}")]
    UnknownDirective {
        /// Where.
        path: String,
        /// The key.
        key: String,
    },
    /// `"$patch": "merge"` on a list item: upstream has never supported it.
    #[error("{path}: \"$patch\": \"merge\" is not supported in list items")]
    MergeItemDirective {
        /// The list.
        path: String,
    },
    /// A field the patch sets is missing from that object's `$retainKeys`.
    #[error("{path}: {field:?} is set by the patch but not listed in $retainKeys")]
    NotRetained {
        /// The object.
        path: String,
        /// The field.
        field: String,
    },
    /// A merged list mixes item types (objects and strings, numbers and strings, ...).
    #[error("{path}: cannot merge a list holding both {first} and {second}")]
    MixedItems {
        /// The list.
        path: String,
        /// One item type.
        first: &'static str,
        /// Another.
        second: &'static str,
    },
    /// A merged list holds lists; Kubernetes has no such field.
    #[error("{path}: cannot merge a list of lists")]
    ListOfLists {
        /// The list.
        path: String,
    },
    /// A list of objects to merge has no merge key in the schema.
    #[error("{path}: cannot merge a list of objects that has no merge key")]
    NoMergeKey {
        /// The list.
        path: String,
    },
    /// The patch's items are not in the order its `$setElementOrder` list gives.
    #[error("{path}: the patch's items are not in the order $setElementOrder/{field} gives")]
    OrderMismatch {
        /// The object holding the list.
        path: String,
        /// The list field.
        field: String,
    },
    /// Nesting beyond [`MAX_DEPTH`].
    #[error("{path}: nested deeper than {limit} levels")]
    TooDeep {
        /// Where the limit was reached.
        path: String,
        /// [`MAX_DEPTH`].
        limit: usize,
    },
}

/// Applies strategic merge `patch` to `original`, an object of kind `kind` in API group
/// `group` (`""` for core), and returns the result. Neither input is modified. Kinds outside
/// the [registry](crate::api::registry) merge like JSON merge patch.
pub fn apply(
    group: &str,
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let root = Path::ROOT;
    // Checked first and without recursion: cloning the original below recurses.
    if exceeds_depth(original) || exceeds_depth(patch) {
        return Err(PatchError::TooDeep {
            path: root.render(),
            limit: MAX_DEPTH,
        });
    }
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject {
            path: root.render(),
            which: "patch",
            found: type_name(patch),
        });
    };
    let Value::Object(original) = original else {
        return Err(PatchError::NotAnObject {
            path: root.render(),
            which: "original",
            found: type_name(original),
        });
    };
    merge_map(original.clone(), patch, Cursor::root(group, kind), &root, 0).map(Value::Object)
}

/// Whether `value` nests deeper than [`MAX_DEPTH`], measured without recursion.
fn exceeds_depth(value: &Value) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return true;
        }
        match value {
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    false
}

/// A position in the original object, built on the stack as the merge descends and rendered
/// only for an error.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Field(&'a str),
    Item(&'a str, &'a Value),
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        segment: Segment::Root,
    };

    fn field(&'a self, name: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Field(name),
        }
    }

    fn item(&'a self, key: &'a str, value: &'a Value) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Item(key, value),
        }
    }

    fn render(&self) -> String {
        let mut segments = Vec::new();
        let mut at = Some(self);
        while let Some(path) = at {
            segments.push(path.segment);
            at = path.parent;
        }
        let mut out = String::new();
        for segment in segments.into_iter().rev() {
            match segment {
                Segment::Root => {}
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Item(key, value) => {
                    out.push_str(&format!("[{key}={}]", abbreviate(value)));
                }
            }
        }
        if out.is_empty() {
            out.push_str("<root>");
        }
        out
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value for an error message: whole when short, cut (on a character boundary) when not.
fn abbreviate(value: &Value) -> String {
    const LIMIT: usize = 80;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// What a merged list holds, for the "all items alike" rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    Object,
    Scalar(&'static str),
}

/// Merges patch object `patch` into `original` (upstream `mergeMap`).
fn merge_map(
    original: Map<String, Value>,
    patch: &Map<String, Value>,
    cursor: Option<Cursor>,
    path: &Path,
    depth: usize,
) -> Result<Map<String, Value>, PatchError> {
    if depth > MAX_DEPTH {
        return Err(PatchError::TooDeep {
            path: path.render(),
            limit: MAX_DEPTH,
        });
    }
    match patch.get(PATCH) {
        None => merge_fields(original, patch, cursor, path, depth),
        Some(directive) => match directive.as_str() {
            // The patch is the whole new value; its own directives still resolve.
            Some("replace") => merge_fields(Map::new(), patch, cursor, path, depth),
            // Upstream leaves an empty object, not a missing field.
            Some("delete") => Ok(Map::new()),
            // Merging is what an object gets anyway.
            Some("merge") => merge_fields(original, patch, cursor, path, depth),
            _ => Err(PatchError::InvalidDirective {
                path: path.render(),
                directive: PATCH.to_owned(),
                value: abbreviate(directive),
                expected: "\"replace\", \"merge\" or \"delete\"",
            }),
        },
    }
}

/// Merges the fields of `patch` (ignoring its `$patch`) into `original`.
fn merge_fields(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    cursor: Option<Cursor>,
    path: &Path,
    depth: usize,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, keep, path)?;
    }

    // Ordered lists first, as upstream does: they consume the list of the same name.
    let mut ordered: Vec<&str> = Vec::new();
    for (key, order) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            set_element_order(&mut original, patch, field, order, cursor, path, depth)?;
            ordered.push(field);
        }
    }

    for (key, patch_value) in patch {
        if key == PATCH || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_list(&mut original, field, patch_value, key, path)?;
            continue;
        }
        if ordered.contains(&key.as_str()) {
            continue;
        }
        let field = cursor.and_then(|c| c.field(key));
        if key.starts_with('$') && field.is_none() {
            return Err(PatchError::UnknownDirective {
                path: path.render(),
                key: key.clone(),
            });
        }
        let (meta, child) = match field {
            Some((meta, child)) => (meta, Some(child)),
            None => (FieldMeta::default(), None),
        };
        if patch_value.is_null() {
            // shift_remove keeps the other keys where they were.
            original.shift_remove(key);
            continue;
        }
        let field_path = path.field(key);
        let merged =
            match original.get_mut(key).map(std::mem::take) {
                None => fresh(patch_value, &meta, child, &field_path, depth + 1)?,
                Some(Value::Object(object)) => match patch_value {
                    Value::Object(patch_object)
                        if meta.patch_strategy != Some(PatchStrategy::Replace) =>
                    {
                        Value::Object(merge_map(
                            object,
                            patch_object,
                            child,
                            &field_path,
                            depth + 1,
                        )?)
                    }
                    _ => fresh(patch_value, &meta, child, &field_path, depth + 1)?,
                },
                Some(Value::Array(items)) => {
                    match patch_value {
                        Value::Array(patch_items) if meta.merges_lists() => Value::Array(
                            merge_list(items, patch_items, &meta, child, &field_path, depth + 1)?,
                        ),
                        _ => fresh(patch_value, &meta, child, &field_path, depth + 1)?,
                    }
                }
                Some(_) => fresh(patch_value, &meta, child, &field_path, depth + 1)?,
            };
        // Inserting an existing key keeps its position.
        original.insert(key.clone(), merged);
    }
    Ok(original)
}

/// The patch value applied to nothing: what a field becomes when the original lacks it,
/// holds another type, or the field is replaced rather than merged.
fn fresh(
    patch_value: &Value,
    meta: &FieldMeta,
    cursor: Option<Cursor>,
    path: &Path,
    depth: usize,
) -> Result<Value, PatchError> {
    Ok(match patch_value {
        Value::Object(object) => Value::Object(merge_map(Map::new(), object, cursor, path, depth)?),
        Value::Array(items) if meta.merges_lists() => {
            Value::Array(merge_list(Vec::new(), items, meta, cursor, path, depth)?)
        }
        // A replaced list is taken as sent, as upstream does.
        other => other.clone(),
    })
}

/// Merges patch list `patch` into list `original` of a field with strategy merge
/// (upstream `mergeSlice`).
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    meta: &FieldMeta,
    cursor: Option<Cursor>,
    path: &Path,
    depth: usize,
) -> Result<Vec<Value>, PatchError> {
    if depth > MAX_DEPTH {
        return Err(PatchError::TooDeep {
            path: path.render(),
            limit: MAX_DEPTH,
        });
    }
    match item_kind(&original, patch, path)? {
        None => Ok(original),
        Some(ItemKind::Object) => {
            let Some(key) = meta.merge_key.as_deref() else {
                return Err(PatchError::NoMergeKey {
                    path: path.render(),
                });
            };
            merge_object_list(original, patch, key, cursor, path, depth)
        }
        Some(ItemKind::Scalar(_)) => Ok(merge_scalar_list(original, patch)),
    }
}

fn merge_object_list(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    cursor: Option<Cursor>,
    path: &Path,
    depth: usize,
) -> Result<Vec<Value>, PatchError> {
    // Directive items first (upstream `mergeSliceWithSpecialElements`).
    let mut replace = false;
    let mut plain: Vec<&Map<String, Value>> = Vec::with_capacity(patch.len());
    for item in patch {
        let Value::Object(item) = item else {
            continue; // item_kind made every item an object
        };
        let Some(directive) = item.get(PATCH) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = merge_key_of(item, key, path)?;
                original.retain(|o| o.get(key) != Some(value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::MergeItemDirective {
                    path: path.render(),
                });
            }
            _ => {
                return Err(PatchError::InvalidDirective {
                    path: path.render(),
                    directive: PATCH.to_owned(),
                    value: abbreviate(directive),
                    expected: "\"delete\" or \"replace\" in a list item",
                });
            }
        }
    }
    if replace {
        // The patch's items are the list; nothing is left to merge into it.
        original = Vec::with_capacity(plain.len());
        for item in plain.drain(..) {
            // Upstream still orders the result by merge key, so it still needs one.
            let item_path = path.item(key, merge_key_of(item, key, path)?);
            original.push(Value::Object(merge_map(
                Map::new(),
                item,
                cursor,
                &item_path,
                depth + 1,
            )?));
        }
    }

    // Where each surviving original item was, by merge key, for ordering below.
    let server_order: Vec<Option<Value>> = original.iter().map(|o| o.get(key).cloned()).collect();
    let mut patch_order: Vec<&Value> = Vec::with_capacity(plain.len());
    for item in plain {
        let value = merge_key_of(item, key, path)?;
        patch_order.push(value);
        let item_path = path.item(key, value);
        match original.iter().position(|o| o.get(key) == Some(value)) {
            Some(index) => {
                let merged = match std::mem::take(&mut original[index]) {
                    Value::Object(object) => {
                        merge_map(object, item, cursor, &item_path, depth + 1)?
                    }
                    _ => merge_map(Map::new(), item, cursor, &item_path, depth + 1)?,
                };
                original[index] = Value::Object(merged);
            }
            None => original.push(Value::Object(merge_map(
                Map::new(),
                item,
                cursor,
                &item_path,
                depth + 1,
            )?)),
        }
    }
    let by_key = |item: &Value| item.get(key).cloned();
    Ok(order_items(
        original,
        |item| by_key(item).and_then(|v| patch_order.iter().position(|p| **p == v)),
        |item| by_key(item).and_then(|v| server_order.iter().position(|s| s.as_ref() == Some(&v))),
    ))
}

/// Applies `$setElementOrder/<field>` together with the patch's list of that name
/// (upstream `mergePatchIntoOriginal`).
#[allow(clippy::too_many_arguments)]
fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    field: &str,
    order: &Value,
    cursor: Option<Cursor>,
    path: &Path,
    depth: usize,
) -> Result<(), PatchError> {
    let directive = || format!("{SET_ELEMENT_ORDER}{field}");
    let Value::Array(order) = order else {
        return Err(PatchError::InvalidDirective {
            path: path.render(),
            directive: directive(),
            value: abbreviate(order),
            expected: "a list",
        });
    };
    let patch_list = match patch.get(field) {
        None => None,
        Some(Value::Array(items)) => Some(items.as_slice()),
        Some(other) => {
            return Err(PatchError::InvalidDirective {
                path: path.render(),
                directive: directive(),
                value: format!("{field}: {}", abbreviate(other)),
                expected: "to go with a list",
            });
        }
    };
    let (meta, child) = match cursor.and_then(|c| c.field(field)) {
        Some((meta, child)) => (meta, Some(child)),
        None => (FieldMeta::default(), None),
    };
    let key = meta.merge_key.as_deref();
    let field_path = path.field(field);
    validate_order(
        patch_list.unwrap_or(&[]),
        order,
        key,
        field,
        path,
        &field_path,
    )?;

    // An original value that is not a list has no order to keep.
    let original_list = match original.get(field) {
        Some(Value::Array(items)) => Some(items.clone()),
        _ => None,
    };
    let merged = match (&original_list, patch_list) {
        (None, None) => return Ok(()),
        (Some(items), None) => items.clone(),
        (_, Some(patch_items)) if !meta.merges_lists() => patch_items.to_vec(),
        (items, Some(patch_items)) => merge_list(
            items.clone().unwrap_or_default(),
            patch_items,
            &meta,
            child,
            &field_path,
            depth + 1,
        )?,
    };
    let server = original_list.unwrap_or_default();
    // Objects are placed by merge key when the list has one, anything else by value.
    let identity = |item: &Value| -> Value {
        match (key, item) {
            (Some(key), Value::Object(object)) => object.get(key).cloned().unwrap_or(Value::Null),
            _ => item.clone(),
        }
    };
    let order_ids: Vec<Value> = order.iter().map(identity).collect();
    let mut server_ids: Vec<Value> = server.iter().map(identity).collect();
    let replaced = patch_list
        .unwrap_or(&[])
        .iter()
        .any(|item| item.get(PATCH).and_then(Value::as_str) == Some("replace"));
    if key.is_some() && meta.merges_lists() && patch_list.is_some() && !replaced {
        // Upstream orders by the original list *after* its merge deleted items from it and
        // appended new ones in place (Go slices share their array): the first new items
        // land in the slots the deletions vacated, so they count as coming after every
        // surviving item. kubectl users get that order from Kubernetes, so they get it here.
        let deleted: Vec<Value> = patch_list
            .unwrap_or(&[])
            .iter()
            .filter(|item| item.get(PATCH).and_then(Value::as_str) == Some("delete"))
            .map(identity)
            .collect();
        let before = server_ids.len();
        server_ids.retain(|id| !deleted.contains(id));
        let vacated = before - server_ids.len();
        // The items the merge appended: those matching no surviving original item, in
        // the order they were appended (the patch's, which the merged list keeps).
        let appended: Vec<Value> = merged
            .iter()
            .map(identity)
            .filter(|id| !server_ids.contains(id))
            .take(vacated)
            .collect();
        server_ids.extend(appended);
    }
    let result = order_items(
        merged,
        |item| {
            let id = identity(item);
            order_ids.iter().position(|o| *o == id)
        },
        |item| {
            let id = identity(item);
            server_ids.iter().position(|s| *s == id)
        },
    );
    original.insert(field.to_owned(), Value::Array(result));
    Ok(())
}

/// Applies `$retainKeys` (upstream `applyRetainKeysDirective`): every field the patch sets
/// must be listed, and fields of the original that are not listed go.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    keep: &Value,
    path: &Path,
) -> Result<(), PatchError> {
    let Value::Array(keep) = keep else {
        return Err(PatchError::InvalidDirective {
            path: path.render(),
            directive: RETAIN_KEYS.to_owned(),
            value: abbreviate(keep),
            expected: "a list of field names",
        });
    };
    let listed = |name: &str| keep.iter().any(|k| k.as_str() == Some(name));
    for (key, value) in patch {
        if value.is_null() || key.starts_with('$') {
            continue;
        }
        if !listed(key) {
            return Err(PatchError::NotRetained {
                path: path.render(),
                field: key.clone(),
            });
        }
    }
    original.retain(|key, _| listed(key));
    Ok(())
}

/// Applies `$deleteFromPrimitiveList/<field>`: removes every item equal to one listed.
fn delete_from_list(
    original: &mut Map<String, Value>,
    field: &str,
    values: &Value,
    directive: &str,
    path: &Path,
) -> Result<(), PatchError> {
    let Value::Array(values) = values else {
        return Err(PatchError::InvalidDirective {
            path: path.render(),
            directive: directive.to_owned(),
            value: abbreviate(values),
            expected: "a list of the values to delete",
        });
    };
    if let Some(Value::Array(items)) = original.get_mut(field) {
        items.retain(|item| !values.contains(item));
    }
    Ok(())
}

/// Checks that the patch's items appear in the order `$setElementOrder` gives (upstream
/// `validatePatchWithSetOrderList`); deletions and directive items are exempt, and an empty
/// order checks nothing.
fn validate_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
    field: &str,
    path: &Path,
    list_path: &Path,
) -> Result<(), PatchError> {
    let identity = |item: &Value| -> Result<Value, PatchError> {
        match (key, item) {
            (Some(key), Value::Object(object)) => Ok(merge_key_of(object, key, list_path)?.clone()),
            _ => Ok(item.clone()),
        }
    };
    // Upstream checks nothing when either list is empty.
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let is_delete = |item: &Value| item.get(PATCH).and_then(Value::as_str) == Some("delete");
    let items: Vec<&Value> = patch
        .iter()
        .filter(|item| key.is_none() || !is_delete(item))
        .collect();
    // Walk both lists as upstream does: each patch item must be found later in the order
    // than the one before it. A directive item is stepped over, but only while order items
    // remain, so one left over at the end counts as out of order, as upstream has it.
    let (mut at_item, mut at_order) = (0, 0);
    while at_item < items.len() && at_order < order.len() {
        if items[at_item].get(PATCH).is_some() {
            at_item += 1;
            continue;
        }
        if identity(items[at_item])? == identity(&order[at_order])? {
            at_item += 1;
        }
        at_order += 1;
    }
    if at_item < items.len() {
        return Err(PatchError::OrderMismatch {
            path: path.render(),
            field: field.to_owned(),
        });
    }
    Ok(())
}

/// The merge key's value of a list item.
fn merge_key_of<'v>(
    item: &'v Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<&'v Value, PatchError> {
    item.get(key).ok_or_else(|| PatchError::MissingMergeKey {
        path: path.render(),
        key: key.to_owned(),
        item: abbreviate(&Value::Object(item.clone())),
    })
}

/// What every item of both lists is; `None` when both are empty.
fn item_kind(
    original: &[Value],
    patch: &[Value],
    path: &Path,
) -> Result<Option<ItemKind>, PatchError> {
    let mut kind: Option<ItemKind> = None;
    for item in original.iter().chain(patch) {
        let this = match item {
            Value::Array(_) => {
                return Err(PatchError::ListOfLists {
                    path: path.render(),
                });
            }
            Value::Object(_) => ItemKind::Object,
            other => ItemKind::Scalar(type_name(other)),
        };
        match kind {
            None => kind = Some(this),
            Some(seen) if seen != this => {
                let name = |k: ItemKind| match k {
                    ItemKind::Object => "an object",
                    ItemKind::Scalar(name) => name,
                };
                return Err(PatchError::MixedItems {
                    path: path.render(),
                    first: name(seen),
                    second: name(this),
                });
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// A merged list of primitives: the union, each value once.
fn merge_scalar_list(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let server_order = original.clone();
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for item in original.into_iter().chain(patch.iter().cloned()) {
        if !merged.contains(&item) {
            merged.push(item);
        }
    }
    order_items(
        merged,
        |item| patch.iter().position(|p| p == item),
        |item| server_order.iter().position(|s| s == item),
    )
}

/// Puts a merged list in order (upstream `normalizeElementOrder`): the items the patch names
/// in the patch's order, and between them the items only the original has, each staying
/// before the first patch item that the original placed after it. `in_patch` gives an item's
/// place in the patch (`None`: not in the patch); `in_server` its place in the original.
fn order_items(
    merged: Vec<Value>,
    in_patch: impl Fn(&Value) -> Option<usize>,
    in_server: impl Fn(&Value) -> Option<usize>,
) -> Vec<Value> {
    let mut from_patch: Vec<(usize, Option<usize>, Value)> = Vec::new();
    let mut server_only: Vec<(usize, Option<usize>, Value)> = Vec::new();
    for item in merged {
        let server = in_server(&item);
        match in_patch(&item) {
            Some(place) => from_patch.push((place, server, item)),
            None => server_only.push((server.unwrap_or(usize::MAX), server, item)),
        }
    }
    // Stable sorts: ties keep the merged order.
    from_patch.sort_by_key(|(place, _, _)| *place);
    server_only.sort_by_key(|(place, _, _)| *place);

    let mut result = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            // A server-only item goes first only if both were in the original and it came
            // first there; a new patch item goes before the remaining server-only items.
            (Some((_, l, _)), Some((_, r, _))) => matches!((l, r), (Some(l), Some(r)) if l < r),
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, _, item)) = next {
            result.push(item);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn pod(original: Value, patch: Value) -> Value {
        apply("", "Pod", &original, &patch).unwrap()
    }

    fn deployment(original: Value, patch: Value) -> Value {
        apply("apps", "Deployment", &original, &patch).unwrap()
    }

    fn web_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.25",
                                "env": [
                                    {"name": "A", "value": "1"},
                                    {"name": "X", "value": "gone soon"},
                                    {"name": "B", "value": "2"}
                                ],
                                "ports": [
                                    {"containerPort": 80, "protocol": "TCP"},
                                    {"containerPort": 443, "protocol": "TCP"}
                                ]
                            },
                            {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}
                        ],
                        "tolerations": [{"key": "a", "operator": "Exists"}]
                    }
                }
            }
        })
    }

    /// What `kubectl apply` sends when the last-applied manifest changed the image and
    /// dropped env var X.
    fn image_and_env_patch() -> Value {
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                "env": [{"$patch": "delete", "name": "X"}],
                "image": "nginx:1.26",
                "name": "web"
            }]
        }}}})
    }

    #[test]
    fn kubectl_apply_image_change_and_env_removal() {
        let result = deployment(web_deployment(), image_and_env_patch());
        let containers = &result["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "nginx:1.26");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        // Untouched fields and the other container survive.
        assert_eq!(containers[0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(containers[1]["name"], "sidecar");
        assert_eq!(result["spec"]["replicas"], 2);
        assert!(result.to_string().find('$').is_none(), "{result}");
    }

    #[test]
    fn ports_merge_by_container_port() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{
                "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 443}],
                "name": "web",
                "ports": [
                    {"containerPort": 8080, "protocol": "TCP"},
                    {"$patch": "delete", "containerPort": 80}
                ]
            }]
        }}}});
        let result = deployment(web_deployment(), patch);
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([
                {"containerPort": 8080, "protocol": "TCP"},
                {"containerPort": 443, "protocol": "TCP"}
            ])
        );
    }

    #[test]
    fn retain_keys_switches_strategy_to_recreate() {
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"],
            "rollingUpdate": null,
            "type": "Recreate"
        }}});
        let result = deployment(web_deployment(), patch);
        assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_on_a_volume_source_change() {
        let original = json!({"spec": {"containers": [{"name": "c"}], "volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "cache", "emptyDir": {"medium": "Memory"}}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
            "volumes": [{
                "$retainKeys": ["configMap", "name"],
                "configMap": {"name": "settings"},
                "emptyDir": null,
                "name": "data"
            }]
        }});
        assert_eq!(
            pod(original, patch)["spec"]["volumes"],
            json!([
                {"name": "data", "configMap": {"name": "settings"}},
                {"name": "cache", "emptyDir": {"medium": "Memory"}}
            ])
        );
    }

    #[test]
    fn finalizers_delete_from_primitive_list() {
        let original = json!({"metadata": {"name": "n", "finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "$setElementOrder/finalizers": ["a", "d", "c"],
            "finalizers": ["d"]
        }});
        let result = apply("", "Namespace", &original, &patch).unwrap();
        assert_eq!(result["metadata"]["finalizers"], json!(["a", "d", "c"]));
    }

    #[test]
    fn primitive_merge_lists_are_sets_with_new_items_first() {
        // As kubectl does: the patch's items lead, the original's follow in their order.
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["c", "a"]}});
        let result = pod(original, patch);
        assert_eq!(result["metadata"]["finalizers"], json!(["c", "a", "b"]));
    }

    #[test]
    fn new_container_goes_where_set_element_order_puts_it() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "proxy"}, {"name": "sidecar"}],
            "containers": [{"name": "proxy", "image": "envoy"}]
        }}}});
        let result = deployment(web_deployment(), patch);
        let names: Vec<&str> = result["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "proxy", "sidecar"]);
    }

    #[test]
    fn lists_without_merge_strategy_are_replaced() {
        let patch = json!({"spec": {"template": {"spec": {
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "containers": [{"name": "sidecar", "args": ["sleep", "2d"]}]
        }}}});
        let result = deployment(web_deployment(), patch);
        let spec = &result["spec"]["template"]["spec"];
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
        // args has no strategy: replaced, while containers merged by name.
        assert_eq!(spec["containers"][1]["args"], json!(["sleep", "2d"]));
        assert_eq!(spec["containers"][1]["image"], "busybox");
        assert_eq!(spec["containers"][0]["image"], "nginx:1.25");
    }

    #[test]
    fn null_deletes_and_maps_merge() {
        let result = deployment(
            web_deployment(),
            json!({"metadata": {"labels": {"app": null, "tier": "front"}, "annotations": {"a": "b"}}}),
        );
        assert_eq!(result["metadata"]["labels"], json!({"tier": "front"}));
        assert_eq!(result["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(result["metadata"]["name"], "web");
    }

    #[test]
    fn patch_directives_in_maps() {
        let original = json!({"spec": {"selector": {"app": "a", "x": "y"}, "type": "ClusterIP"}});
        let replaced = apply(
            "",
            "Service",
            &original,
            &json!({"spec": {"selector": {"$patch": "replace", "app": "b"}}}),
        )
        .unwrap();
        assert_eq!(replaced["spec"]["selector"], json!({"app": "b"}));
        let deleted = apply(
            "",
            "Service",
            &original,
            &json!({"spec": {"selector": {"$patch": "delete"}}}),
        )
        .unwrap();
        assert_eq!(deleted["spec"]["selector"], json!({}));
        let merged = apply(
            "",
            "Service",
            &original,
            &json!({"spec": {"selector": {"$patch": "merge", "app": "c"}}}),
        )
        .unwrap();
        assert_eq!(merged["spec"]["selector"], json!({"app": "c", "x": "y"}));
    }

    #[test]
    fn patch_replace_in_a_merged_list() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "alpine"},
            {"$patch": "replace"}
        ]}}}});
        let result = deployment(web_deployment(), patch);
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "alpine"}])
        );
    }

    #[test]
    fn new_fields_are_applied_to_nothing() {
        // A list item delete for a list the original lacks leaves nothing behind.
        let result = pod(
            json!({"metadata": {"name": "p"}}),
            json!({"spec": {"containers": [
                {"name": "a", "image": "x", "env": [{"name": "E", "value": null}]},
                {"name": "gone", "$patch": "delete"}
            ]}, "metadata": {"finalizers": ["f"], "$deleteFromPrimitiveList/ownerReferences": ["z"]}}),
        );
        assert_eq!(
            result,
            json!({"metadata": {"name": "p", "finalizers": ["f"]}, "spec": {"containers": [
                {"name": "a", "image": "x", "env": [{"name": "E"}]}
            ]}})
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let original = json!({"spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 443}
        ]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
        let result = apply("", "Service", &original, &patch).unwrap();
        assert_eq!(
            result["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9090},
                {"name": "https", "port": 443}
            ])
        );
    }

    #[test]
    fn unknown_kinds_merge_like_json_merge_patch() {
        let original = json!({"spec": {"items": [{"name": "a"}, {"name": "b"}], "keep": 1}});
        let patch =
            json!({"spec": {"items": [{"name": "c"}], "keep": null, "new": {"x": null, "y": 2}}});
        let result = apply("example.com", "Widget", &original, &patch).unwrap();
        assert_eq!(
            result,
            json!({"spec": {"items": [{"name": "c"}], "new": {"y": 2}}})
        );
        // Outside a served kind's schema too.
        let result = pod(
            json!({"spec": {"mystery": [{"name": "a"}]}}),
            json!({"spec": {"mystery": [{"name": "b"}]}}),
        );
        assert_eq!(result["spec"]["mystery"], json!([{"name": "b"}]));
    }

    #[test]
    fn key_order_is_kept() {
        let result = pod(
            json!({"a": 1, "b": 2, "c": 3}),
            json!({"b": null, "a": 10, "d": 4}),
        );
        let keys: Vec<&String> = result.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "c", "d"]);
    }

    fn error(kind: &str, original: Value, patch: Value) -> String {
        let err = apply("", kind, &original, &patch).unwrap_err();
        err.to_string()
    }

    #[test]
    fn errors_name_the_path_and_the_problem() {
        let original = json!({"spec": {"containers": [{"name": "web", "env": [{"name": "A"}]}]}});
        let message = error(
            "Pod",
            original.clone(),
            json!({"spec": {"containers": [{"image": "x"}]}}),
        );
        assert_eq!(
            message,
            r#"spec.containers: list item {"image":"x"} has no merge key "name""#
        );
        let message = error(
            "Pod",
            original.clone(),
            json!({"spec": {"containers": [{"name": "web", "env": [{"$patch": "remove", "name": "A"}]}]}}),
        );
        assert_eq!(
            message,
            r#"spec.containers[name="web"].env: invalid $patch value "remove": expected "delete" or "replace" in a list item"#
        );
        let message = error("Pod", original.clone(), json!({"spec": {"$patch": "drop"}}));
        assert!(
            message.starts_with("spec: invalid $patch value \"drop\""),
            "{message}"
        );
        let message = error("Pod", original.clone(), json!({"spec": {"$oops": 1}}));
        assert_eq!(message, r#"spec: unknown directive "$oops""#);
        let message = error(
            "Pod",
            original.clone(),
            json!({"spec": {"$retainKeys": ["containers"], "nodeName": "n"}}),
        );
        assert_eq!(
            message,
            r#"spec: "nodeName" is set by the patch but not listed in $retainKeys"#
        );
        let message = error(
            "Pod",
            original.clone(),
            json!({"metadata": {"finalizers": ["a", 1]}}),
        );
        assert_eq!(
            message,
            "metadata.finalizers: cannot merge a list holding both a string and a number"
        );
        let message = error(
            "Pod",
            original.clone(),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "web"}]}}),
        );
        assert_eq!(
            message,
            "spec: the patch's items are not in the order $setElementOrder/containers gives"
        );
        let message = error(
            "Pod",
            original.clone(),
            json!({"spec": {"containers": [{"name": "web", "$patch": "merge"}]}}),
        );
        assert_eq!(
            message,
            r#"spec.containers: "$patch": "merge" is not supported in list items"#
        );
        assert_eq!(
            error("Pod", original.clone(), json!([1])),
            "<root>: the patch must be a JSON object, not a list"
        );
        assert_eq!(
            error("Pod", json!("x"), json!({})),
            "<root>: the original must be a JSON object, not a string"
        );
        let mut deep = json!(1);
        for _ in 0..(MAX_DEPTH + 5) {
            deep = json!({ "a": deep });
        }
        assert!(error("Pod", json!({}), deep).contains("nested deeper than"));
    }

    /// Runs the real `kubectl patch --local` (compiled with the upstream Go struct tags and
    /// strategicpatch); `None` when kubectl is not installed.
    /// What the real kubectl (compiled with upstream's struct tags) makes of `patch`.
    /// scripts/setup installs kubectl; without it these comparisons fail rather than pass
    /// unchecked.
    fn kubectl_patch(object: &Value, patch: &Value) -> Value {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("object.json");
        std::fs::write(&file, object.to_string()).expect("write object");
        let output = std::process::Command::new("kubectl")
            .args([
                "patch",
                "--local",
                "--type",
                "strategic",
                "-o",
                "json",
                "-f",
            ])
            .arg(&file)
            .arg("-p")
            .arg(patch.to_string())
            .env("KUBECONFIG", dir.path().join("none"))
            .output()
            .expect("run kubectl (scripts/setup installs it)");
        assert!(
            output.status.success(),
            "kubectl: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("kubectl printed JSON")
    }

    #[test]
    fn agrees_with_kubectl() {
        let pod_object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "finalizers": ["a", "b"], "labels": {"x": "1"}},
            "spec": {
                "containers": [
                    {"name": "c1", "image": "i1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                    {"name": "c2", "image": "i2", "ports": [{"containerPort": 80}, {"containerPort": 81}]}
                ],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "imagePullSecrets": [{"name": "s1"}],
                "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["a"]}]
            }
        });
        let cases = [
            (web_deployment(), image_and_env_patch()),
            (
                web_deployment(),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
            ),
            (
                web_deployment(),
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "proxy"}, {"name": "sidecar"}],
                    "containers": [{"name": "web", "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 443}], "ports": [{"containerPort": 8080}, {"$patch": "delete", "containerPort": 80}]}, {"name": "proxy", "image": "envoy"}]
                }}}}),
            ),
            (
                pod_object.clone(),
                json!({"metadata": {"finalizers": ["c", "a"], "labels": {"x": null, "y": "2"}},
                       "spec": {"containers": [{"name": "c3", "image": "i3"}, {"name": "c1", "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "9"}]}]}}),
            ),
            (
                pod_object.clone(),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "$setElementOrder/finalizers": ["b", "z"], "finalizers": ["z"]}}),
            ),
            (
                pod_object.clone(),
                json!({"spec": {"tolerations": [{"key": "other", "operator": "Exists"}],
                                "containers": [{"name": "c2", "ports": [{"containerPort": 82}, {"$patch": "replace"}]}]}}),
            ),
            (
                pod_object.clone(),
                json!({"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "v", "configMap": {"name": "cm"}, "emptyDir": null}],
                                "imagePullSecrets": [{"name": "s2"}], "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}]}}),
            ),
            (
                pod_object.clone(),
                json!({"spec": {"containers": [{"$patch": "delete", "name": "c1"}, {"name": "c2", "image": "i9"}]}}),
            ),
            (
                pod_object,
                json!({"spec": {"$setElementOrder/containers": [{"name": "c2"}, {"name": "c1"}], "containers": [{"name": "c1", "image": "new"}]}}),
            ),
        ];
        for (object, patch) in cases {
            let expected = kubectl_patch(&object, &patch);
            let group = object["apiVersion"]
                .as_str()
                .unwrap()
                .split_once('/')
                .map_or("", |(g, _)| g);
            let kind = object["kind"].as_str().unwrap();
            let ours = apply(group, kind, &object, &patch).unwrap();
            assert_eq!(ours, expected, "patch {patch}");
        }
    }

    /// A tiny deterministic generator (no RNG dependency in the library's tests).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n.max(1)
        }

        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }

        /// A random selection of `items`, in random order.
        fn subset<T: Clone>(&mut self, items: &[T]) -> Vec<T> {
            let mut pool = items.to_vec();
            let mut out = Vec::new();
            for _ in 0..self.below(items.len() + 1) {
                out.push(pool.remove(self.below(pool.len())));
            }
            out
        }
    }

    /// The patch kubectl sends for a merged list going from `live` to a new config: changed
    /// and added items, deletions, and the new order.
    fn keyed_change(rng: &mut Lcg, live: &[Value], key: &str, pool: &[Value]) -> (Value, Value) {
        let live_keys: Vec<Value> = live.iter().map(|i| i[key].clone()).collect();
        let mut candidates = live_keys.clone();
        candidates.extend(pool.iter().filter(|k| !live_keys.contains(k)).cloned());
        let wanted = rng.subset(&candidates);
        let mut items = Vec::new();
        for k in &wanted {
            // Additions are always sent; items already there only when they changed.
            if !live_keys.contains(k) || rng.chance(60) {
                let mut item = Map::new();
                item.insert(key.to_owned(), k.clone());
                if key == "name" {
                    item.insert("value".to_owned(), json!(rng.below(3).to_string()));
                }
                items.push(Value::Object(item));
            }
        }
        for k in live_keys.iter().filter(|k| !wanted.contains(k)) {
            items.push(json!({"$patch": "delete", key: k}));
        }
        let order = wanted.iter().map(|k| json!({ key: k })).collect();
        (Value::Array(items), Value::Array(order))
    }

    #[test]
    fn agrees_with_kubectl_on_generated_apply_patches() {
        let mut rng = Lcg(7);
        let names = ["a", "b", "c", "d"].map(Value::from);
        let finalizers = ["f1", "f2", "f3", "f4"].map(Value::from);
        for _ in 0..40 {
            let containers: Vec<Value> = rng
                .subset(&names)
                .into_iter()
                .map(|name| {
                    let env: Vec<Value> = rng
                        .subset(&names)
                        .into_iter()
                        .map(|n| json!({"name": n, "value": "0"}))
                        .collect();
                    let ports: Vec<Value> = rng
                        .subset(&[80, 81, 82].map(Value::from))
                        .into_iter()
                        .map(|p| json!({"containerPort": p}))
                        .collect();
                    let mut container = json!({"name": name, "image": "i"});
                    set_nonempty(&mut container, "env", Value::Array(env));
                    set_nonempty(&mut container, "ports", Value::Array(ports));
                    container
                })
                .collect();
            let mut object = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {"containers": containers.clone()}
            });
            set_nonempty(
                &mut object["metadata"],
                "finalizers",
                json!(rng.subset(&finalizers)),
            );
            let (mut items, order) = keyed_change(&mut rng, &containers, "name", &names);
            for item in items.as_array_mut().unwrap() {
                let live = containers.iter().find(|c| c["name"] == item["name"]);
                let (Some(live), None) = (live, item.get(PATCH)) else {
                    continue;
                };
                for (field, key, pool) in [
                    ("env", "name", names.to_vec()),
                    (
                        "ports",
                        "containerPort",
                        [80, 81, 82, 83].map(Value::from).to_vec(),
                    ),
                ] {
                    if rng.chance(60) {
                        let live_items = live[field].as_array().map_or(&[][..], Vec::as_slice);
                        let (list, order) = keyed_change(&mut rng, live_items, key, &pool);
                        set_nonempty(item, field, list);
                        set_nonempty(item, &format!("{SET_ELEMENT_ORDER}{field}"), order);
                    }
                }
            }
            let mut spec = json!({});
            set_nonempty(&mut spec, "$setElementOrder/containers", order);
            set_nonempty(&mut spec, "containers", items);
            let mut patch = json!({ "spec": spec });
            if rng.chance(60) {
                let live = object["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let wanted = rng.subset(&finalizers);
                let added: Vec<&Value> = wanted.iter().filter(|f| !live.contains(f)).collect();
                let deleted: Vec<&Value> = live.iter().filter(|f| !wanted.contains(f)).collect();
                let mut metadata = json!({});
                set_nonempty(&mut metadata, "$setElementOrder/finalizers", json!(wanted));
                set_nonempty(&mut metadata, "finalizers", json!(added));
                set_nonempty(
                    &mut metadata,
                    "$deleteFromPrimitiveList/finalizers",
                    json!(deleted),
                );
                patch["metadata"] = metadata;
            }
            let expected = kubectl_patch(&object, &patch);
            let ours = apply("", "Pod", &object, &patch).unwrap();
            // kubectl's typed round trip drops empty lists.
            assert_eq!(
                without_empty_lists(ours),
                without_empty_lists(expected),
                "object {object}\npatch {patch}"
            );
        }
    }

    /// kubectl leaves empty lists (and empty orders) out of the patches it computes.
    fn set_nonempty(object: &mut Value, field: &str, list: Value) {
        if list.as_array().is_some_and(|l| !l.is_empty()) {
            object[field] = list;
        }
    }

    fn without_empty_lists(value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .filter(|(_, v)| v.as_array().is_none_or(|a| !a.is_empty()))
                    .map(|(k, v)| (k, without_empty_lists(v)))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(without_empty_lists).collect())
            }
            other => other,
        }
    }

    /// JSON values whose object keys are often directives, field names the Pod schema knows,
    /// or directive values, so the merge's every branch gets exercised.
    fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("$patch".to_owned()),
            Just("$retainKeys".to_owned()),
            Just("$setElementOrder/containers".to_owned()),
            Just("$setElementOrder/finalizers".to_owned()),
            Just("$deleteFromPrimitiveList/finalizers".to_owned()),
            Just("$setElementOrder/x".to_owned()),
            Just("spec".to_owned()),
            Just("metadata".to_owned()),
            Just("containers".to_owned()),
            Just("finalizers".to_owned()),
            Just("env".to_owned()),
            Just("name".to_owned()),
            Just("ports".to_owned()),
            Just("containerPort".to_owned()),
            Just("x".to_owned()),
            "[a-z$/]{0,6}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            Just(json!(1.5)),
            prop_oneof![
                Just("delete"),
                Just("replace"),
                Just("merge"),
                Just("a"),
                Just("name")
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// JSON objects without directives: what a JSON merge patch can be.
    fn arb_plain_object() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..3).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(5, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]{0,2}", inner, 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        });
        prop::collection::btree_map("[a-d]{0,2}", value, 0..5)
            .prop_map(|entries| Value::Object(entries.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics(original in arb_json(), patch in arb_json()) {
            for (group, kind) in [("", "Pod"), ("apps", "Deployment"), ("", "Namespace"), ("x", "Unknown")] {
                let _ = apply(group, kind, &original, &patch);
                let wrapped_original = json!({"spec": {"template": {"spec": original.clone()}}, "metadata": original.clone()});
                let wrapped_patch = json!({"spec": {"template": {"spec": patch.clone()}}, "metadata": patch.clone()});
                let _ = apply(group, kind, &wrapped_original, &wrapped_patch);
            }
        }

        #[test]
        fn empty_patch_is_identity(original in arb_json()) {
            if original.is_object() {
                prop_assert_eq!(apply("", "Pod", &original, &json!({})).unwrap(), original);
            }
        }

        #[test]
        fn unknown_kinds_match_rfc7396(original in arb_plain_object(), patch in arb_plain_object()) {
            let mut expected = original.clone();
            json_patch::merge(&mut expected, &patch);
            prop_assert_eq!(apply("x", "Unknown", &original, &patch).unwrap(), expected);
        }
    }
}

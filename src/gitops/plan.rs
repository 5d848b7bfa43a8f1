//! The plan: what applying one revision of a source would do to the cluster, object by
//! object — create, update, replace, unchanged or prune — computed with a server-side
//! dry-run of every object (the real defaults and validation) against the live state.
//!
//! Ownership is explicit: every object a source applies carries the label
//! [`SOURCE_LABEL`]`=<source>` and the annotation [`REVISION_ANNOTATION`] (the revision that
//! last changed it). Only objects carrying this source's label are ever pruned, and a
//! Namespace only when this source created it ([`CREATED_BY_ANNOTATION`]).
//!
//! This module reads the cluster (lists, dry-runs) but never writes to it; [`super::apply`]
//! carries a plan out.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Map, Value};

use super::kinds::{Catalog, Kind, ObjectId, tier};
use super::loader::Manifest;
use crate::api::manifest_source::SyncError;

/// Label naming the source that owns an object.
pub const SOURCE_LABEL: &str = "moor.dev/source";
/// Annotation holding the source revision that last changed an object.
pub const REVISION_ANNOTATION: &str = "moor.dev/revision";
/// Annotation a source puts on Namespaces it created: only those does it ever prune.
pub const CREATED_BY_ANNOTATION: &str = "moor.dev/created-by";
/// Annotation by which a manifest opts in to being deleted and re-created when a change
/// touches an immutable field (e.g. a Deployment's selector).
pub const REPLACE_ANNOTATION: &str = "moor.dev/replace";

/// How many requests a plan or an apply keeps in flight.
pub const CONCURRENCY: usize = 64;

/// The server-side-apply field manager of a source.
pub fn field_manager(source: &str) -> String {
    format!("moor-gitops/{source}")
}

/// What a plan is for.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// The source's name (its label value and field manager).
    pub source: String,
    /// The revision being planned.
    pub revision: String,
    /// Namespace for namespaced objects whose manifest names none.
    pub default_namespace: String,
    /// Whether owned objects that left the source are pruned.
    pub prune: bool,
    /// Whether a revision without objects may prune everything.
    pub allow_empty: bool,
}

/// One object the source wants, ready to apply.
#[derive(Clone)]
pub struct Desired {
    /// What it is.
    pub id: ObjectId,
    /// Its kind as the server serves it.
    pub kind: Kind,
    /// Where it is defined.
    pub file: String,
    /// The line of its document.
    pub line: usize,
    /// The object as it will be applied (namespace resolved, ownership marked).
    pub object: Value,
}

// By hand, so that `{:?}` of a Secret never prints its values.
impl std::fmt::Debug for Desired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desired")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("file", &self.file)
            .field("line", &self.line)
            .field("object", &masked_if_secret(&self.id, Some(&self.object)))
            .finish()
    }
}

/// What a plan does to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The object does not exist yet.
    Create,
    /// The object exists and differs from the source.
    Update,
    /// The change touches immutable fields and the manifest opted in to delete + create.
    Replace,
    /// The object already is as the source wants it.
    Unchanged,
    /// The source owns the object but no longer defines it.
    Prune,
}

/// One object's entry in a plan.
#[derive(Clone)]
pub struct Entry {
    /// What it is.
    pub id: ObjectId,
    /// What would happen.
    pub action: Action,
    /// Its kind as served.
    pub kind: Kind,
    /// Where it is defined (empty for prunes).
    pub file: String,
    /// Line of its document (0 for prunes).
    pub line: usize,
    /// The live object without server-managed fields (None when it does not exist);
    /// Secret values masked.
    pub live: Option<Value>,
    /// The object as the server would store it after this apply, without server-managed
    /// fields (None for prunes); Secret values masked.
    pub planned: Option<Value>,
    /// What server-side apply sends (None for prunes).
    pub apply: Option<Value>,
    /// [`fingerprint`] of the live object before masking (None when it does not exist).
    pub live_fingerprint: Option<u64>,
}

// By hand: `apply` holds a Secret's real values (it is what gets sent), and `{:?}` of a
// plan must never print them.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("action", &self.action)
            .field("kind", &self.kind)
            .field("file", &self.file)
            .field("line", &self.line)
            .field("live", &self.live)
            .field("planned", &self.planned)
            .field("apply", &masked_if_secret(&self.id, self.apply.as_ref()))
            .field("live_fingerprint", &self.live_fingerprint)
            .finish()
    }
}

/// The plan of one revision.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The source planned.
    pub source: String,
    /// The revision planned.
    pub revision: String,
    /// Applies in dependency order, then prunes in reverse dependency order.
    pub entries: Vec<Entry>,
    /// Every problem found; a plan with any applies nothing.
    pub errors: Vec<SyncError>,
}

/// How many objects a plan touches, per action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Objects to create.
    pub create: usize,
    /// Objects to update.
    pub update: usize,
    /// Objects to replace.
    pub replace: usize,
    /// Objects already as desired.
    pub unchanged: usize,
    /// Objects to prune.
    pub prune: usize,
}

impl Plan {
    /// Per-action counts.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for entry in &self.entries {
            match entry.action {
                Action::Create => counts.create += 1,
                Action::Update => counts.update += 1,
                Action::Replace => counts.replace += 1,
                Action::Unchanged => counts.unchanged += 1,
                Action::Prune => counts.prune += 1,
            }
        }
        counts
    }

    /// Whether applying the plan would change anything.
    pub fn has_changes(&self) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.action != Action::Unchanged)
    }
}

fn error_at(file: &str, line: usize, message: impl Into<String>) -> SyncError {
    SyncError {
        file: file.to_owned(),
        line: i64::try_from(line).unwrap_or(i64::MAX),
        message: message.into(),
    }
}

/// Resolve manifests into objects to apply: kinds looked up, namespaces filled in,
/// server-managed fields dropped, ownership marked, duplicates found. Every problem is
/// returned, not just the first.
pub fn prepare(
    manifests: Vec<Manifest>,
    catalog: &Catalog,
    options: &PlanOptions,
) -> (Vec<Desired>, Vec<SyncError>) {
    let mut desired = Vec::with_capacity(manifests.len());
    let mut errors = Vec::new();
    let mut seen: HashMap<ObjectId, (String, usize)> = HashMap::new();
    for manifest in manifests {
        let Manifest {
            file,
            line,
            mut object,
        } = manifest;
        let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind_name) = (text("apiVersion").to_owned(), text("kind").to_owned());
        let Some(kind) = catalog.get(&api_version, &kind_name) else {
            errors.push(error_at(
                &file,
                line,
                format!("unknown kind {kind_name} in {api_version}: the server does not serve it"),
            ));
            continue;
        };
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            errors.push(error_at(&file, line, "metadata must be a mapping"));
            continue;
        };
        // What `kubectl get -o yaml` exports but an apply must not send: these belong to
        // the server, and a stale resourceVersion would turn the apply into a conflict.
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(field);
        }
        let namespace = if kind.namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or(&options.default_namespace)
                .to_owned();
            meta.insert("namespace".into(), Value::from(ns.clone()));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        set_string(meta, "labels", SOURCE_LABEL, &options.source);
        set_string(meta, "annotations", REVISION_ANNOTATION, &options.revision);
        if let Some(root) = object.as_object_mut() {
            root.remove("status");
        }
        let id = ObjectId {
            api_version,
            kind: kind_name,
            namespace,
            name,
        };
        if let Some((other_file, other_line)) = seen.get(&id) {
            errors.push(error_at(
                &file,
                line,
                format!("{id} is defined twice: also in {other_file}:{other_line}"),
            ));
            continue;
        }
        seen.insert(id.clone(), (file.clone(), line));
        desired.push(Desired {
            id,
            kind: kind.clone(),
            file,
            line,
            object,
        });
    }
    (desired, errors)
}

fn set_string(meta: &mut Map<String, Value>, map: &str, key: &str, value: &str) {
    let entry = meta.entry(map).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Some(map) = entry.as_object_mut() {
        map.insert(key.to_owned(), Value::from(value));
    }
}

/// The API of one kind, namespaced when it is.
pub fn api_for(client: &Client, kind: &Kind, namespace: &str) -> Api<DynamicObject> {
    if kind.namespaced && !namespace.is_empty() {
        Api::namespaced_with(client.clone(), namespace, &kind.resource)
    } else {
        Api::all_with(client.clone(), &kind.resource)
    }
}

/// The id of a live object of `kind`.
pub fn id_of(kind: &Kind, obj: &Value) -> ObjectId {
    let meta = |key: &str| {
        obj.pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    ObjectId {
        api_version: kind.resource.api_version.clone(),
        kind: kind.resource.kind.clone(),
        namespace: if kind.namespaced {
            meta("namespace")
        } else {
            String::new()
        },
        name: meta("name"),
    }
}

/// The live objects the plan needs: every object of a kind the source defines (to find
/// the ones that exist but are not owned yet) and every object of any kind carrying this
/// source's label (prune candidates).
pub async fn live_objects(
    client: &Client,
    catalog: &Catalog,
    desired: &[Desired],
    source: &str,
) -> Result<HashMap<ObjectId, (Kind, Value)>, kube::Error> {
    let desired_kinds: HashSet<(&str, &str)> = desired
        .iter()
        .map(|d| (d.id.api_version.as_str(), d.id.kind.as_str()))
        .collect();
    let selector = format!("{SOURCE_LABEL}={source}");
    // Futures are collected before being awaited: see apply.rs on rustc and Send.
    let lists: Vec<BoxFuture<'_, _>> = catalog
        .all()
        .cloned()
        .map(|kind| {
            let all = desired_kinds.contains(&(
                kind.resource.api_version.as_str(),
                kind.resource.kind.as_str(),
            ));
            let params = if all {
                ListParams::default()
            } else {
                ListParams::default().labels(&selector)
            };
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource);
            async move { api.list(&params).await.map(|list| (kind, list.items)) }.boxed()
        })
        .collect();
    let lists = futures::stream::iter(lists)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let mut live = HashMap::new();
    for list in lists {
        let (kind, items) = list?;
        for item in items {
            let value = serde_json::to_value(item).unwrap_or(Value::Null);
            live.insert(id_of(&kind, &value), (kind.clone(), value));
        }
    }
    Ok(live)
}

/// The object without what the server manages (status, uid, resourceVersion, generation,
/// creationTimestamp, managedFields) and without the revision annotation, so two states
/// compare equal exactly when the source would change nothing.
pub fn normalize(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(root) = obj.as_object_mut() {
        root.remove("status");
        if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(field);
            }
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove(REVISION_ANNOTATION);
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    obj
}

/// A hash of the normalized object: equal for states the source considers the same.
pub fn fingerprint(obj: &Value) -> u64 {
    fingerprint_normalized(&normalize(obj))
}

fn fingerprint_normalized(normalized: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    normalized.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Compute the plan of `desired` against the live cluster. Transport failures (the server
/// unreachable) are an `Err`; everything wrong with the source's objects is in
/// [`Plan::errors`].
pub async fn plan(
    client: &Client,
    catalog: &Catalog,
    desired: Vec<Desired>,
    mut errors: Vec<SyncError>,
    options: &PlanOptions,
) -> Result<Plan, kube::Error> {
    let listing = std::time::Instant::now();
    let mut live = live_objects(client, catalog, &desired, &options.source).await?;
    tracing::debug!(
        objects = live.len(),
        "listed live objects in {:?}",
        listing.elapsed()
    );
    let desired_ids: HashSet<ObjectId> = desired.iter().map(|d| d.id.clone()).collect();
    let namespace_exists = |ns: &str| {
        live.keys()
            .any(|id| id.api_version == "v1" && id.kind == "Namespace" && id.name == ns)
    };
    let created_namespaces: HashSet<String> = desired
        .iter()
        .filter(|d| d.id.api_version == "v1" && d.id.kind == "Namespace")
        .filter(|d| !namespace_exists(&d.id.name))
        .map(|d| d.id.name.clone())
        .collect();

    let manager = field_manager(&options.source);
    let mut errors_before = Vec::new();
    let mut checked = Vec::with_capacity(desired.len());
    for mut d in desired {
        // Taken out of the map: what stays behind are the prune candidates.
        let live = live.remove(&d.id).map(|(_, obj)| obj);
        if let Some(owner) = live
            .as_ref()
            .and_then(|obj| obj.pointer(&format!("/metadata/labels/{}", escape(SOURCE_LABEL))))
            .and_then(Value::as_str)
            .filter(|owner| *owner != options.source)
        {
            errors_before.push(error_at(
                &d.file,
                d.line,
                format!(
                    "{} belongs to ManifestSource {owner:?}: two sources may not define the same object",
                    d.id
                ),
            ));
            continue;
        }
        mark_namespace_created(&mut d, live.as_ref(), &options.source);
        checked.push((d, live));
    }
    errors.extend(errors_before);
    let checking = std::time::Instant::now();
    let checked = unchanged_in_parallel(checked, manager.clone()).await;
    tracing::debug!("checked for changes locally in {:?}", checking.elapsed());

    let planned: Vec<BoxFuture<'_, _>> = checked
        .into_iter()
        .map(|checked| {
            let client = client.clone();
            let manager = manager.clone();
            let waits_for_namespace = created_namespaces.contains(&checked.desired.id.namespace);
            async move {
                let Checked {
                    desired: d,
                    live,
                    unchanged,
                    live_normalized,
                    live_fingerprint,
                } = checked;
                if unchanged && !waits_for_namespace {
                    // Already exactly as the source defines it: it passed admission when it
                    // was written, and a dry-run would change nothing.
                    let mut live = live_normalized;
                    let mut planned = live.clone();
                    if d.id.api_version == "v1" && d.id.kind == "Secret" {
                        mask_secret(live.as_mut(), planned.as_mut());
                    }
                    return Ok(Entry {
                        id: d.id,
                        action: Action::Unchanged,
                        kind: d.kind,
                        file: d.file,
                        line: d.line,
                        live,
                        planned,
                        apply: Some(d.object),
                        live_fingerprint,
                    });
                }
                let outcome = if waits_for_namespace {
                    // Its namespace is created by this same revision, so the server cannot
                    // dry-run it yet: run the same admission code locally.
                    local_admission(&d).map(|obj| (obj, false))
                } else {
                    dry_run(&client, &d, &manager).await
                };
                let (result, replace) = outcome?;
                let planned_normalized = normalize(&result);
                let action = match (&live_normalized, replace) {
                    (None, _) => Action::Create,
                    (Some(_), true) => Action::Replace,
                    (Some(live), false) if *live == planned_normalized => Action::Unchanged,
                    (Some(_), false) => Action::Update,
                };
                drop(live);
                let mut live = live_normalized;
                let mut planned = Some(planned_normalized);
                if d.id.api_version == "v1" && d.id.kind == "Secret" {
                    mask_secret(live.as_mut(), planned.as_mut());
                }
                Ok(Entry {
                    id: d.id,
                    action,
                    kind: d.kind,
                    file: d.file,
                    line: d.line,
                    live,
                    planned,
                    apply: Some(d.object),
                    live_fingerprint,
                })
            }
            .boxed()
        })
        .collect();
    let planned = futures::stream::iter(planned)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;

    let mut entries = Vec::new();
    for outcome in planned {
        match outcome {
            Ok(entry) => entries.push(entry),
            Err(error) => errors.push(error),
        }
    }
    entries.sort_by(|a, b| {
        (tier(a.id.group(), &a.id.kind), &a.id).cmp(&(tier(b.id.group(), &b.id.kind), &b.id))
    });

    let mut prunes: Vec<Entry> = live
        .into_iter()
        .filter(|(id, (_, obj))| {
            !desired_ids.contains(id)
                && owned_by(obj, &options.source)
                && prunable(id, obj, &options.source)
        })
        .map(|(id, (kind, obj))| Entry {
            id,
            action: Action::Prune,
            kind,
            file: String::new(),
            line: 0,
            live: Some(normalize(&obj)),
            planned: None,
            apply: None,
            live_fingerprint: Some(fingerprint(&obj)),
        })
        .collect();
    if !options.prune {
        prunes.clear();
    }
    if desired_ids.is_empty() && !prunes.is_empty() && !options.allow_empty {
        errors.push(SyncError {
            file: String::new(),
            line: 0,
            message: format!(
                "refusing to prune all {} objects this source owns: revision {} defines no objects \
                 (an emptied or missing folder, or a wrong path or ref?); set spec.allowEmpty: true to allow it",
                prunes.len(),
                options.revision
            ),
        });
    }
    for entry in &mut prunes {
        if entry.id.api_version == "v1" && entry.id.kind == "Secret" {
            mask_secret(entry.live.as_mut(), None);
        }
    }
    prunes.sort_by(|a, b| {
        tier(b.id.group(), &b.id.kind)
            .cmp(&tier(a.id.group(), &a.id.kind))
            .then_with(|| a.id.cmp(&b.id))
    });
    entries.extend(prunes);
    errors.sort_by(|a, b| (&a.file, a.line, &a.message).cmp(&(&b.file, b.line, &b.message)));
    Ok(Plan {
        source: options.source.clone(),
        revision: options.revision.clone(),
        entries,
        errors,
    })
}

/// JSON-pointer escaping of one key (`/` becomes `~1`).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether this source applied the object: it carries the source's label *and* the
/// source's field manager applied it. The label alone is not proof: controllers copy labels
/// onto what they make (the endpoints controller copies a Service's labels onto its
/// Endpoints), and those objects are not the source's to prune.
fn owned_by(obj: &Value, source: &str) -> bool {
    let labelled = obj
        .pointer(&format!("/metadata/labels/{}", escape(SOURCE_LABEL)))
        .and_then(Value::as_str)
        == Some(source);
    let manager = field_manager(source);
    let applied = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_some_and(|entries| {
            entries.iter().any(|entry| {
                entry.get("manager").and_then(Value::as_str) == Some(manager.as_str())
                    && entry.get("operation").and_then(Value::as_str) == Some("Apply")
            })
        });
    labelled && applied
}

/// Namespaces are pruned only when this source created them: deleting a namespace deletes
/// everything in it, including what others put there.
fn prunable(id: &ObjectId, obj: &Value, source: &str) -> bool {
    if id.api_version == "v1" && id.kind == "Namespace" {
        obj.pointer(&format!(
            "/metadata/annotations/{}",
            escape(CREATED_BY_ANNOTATION)
        ))
        .and_then(Value::as_str)
            == Some(source)
    } else {
        true
    }
}

/// A Namespace this source creates (or created earlier) carries the created-by annotation
/// in every apply, so server-side apply keeps it; one that existed before never gets it.
fn mark_namespace_created(d: &mut Desired, live: Option<&Value>, source: &str) {
    if d.id.api_version != "v1" || d.id.kind != "Namespace" {
        return;
    }
    let ours = match live {
        None => true,
        Some(live) => prunable(&d.id, live, source),
    };
    if ours && let Some(meta) = d.object.get_mut("metadata").and_then(Value::as_object_mut) {
        set_string(meta, "annotations", CREATED_BY_ANNOTATION, source);
    }
}

/// One desired object with what the CPU-heavy local pass found about it.
struct Checked {
    desired: Desired,
    live: Option<Value>,
    /// [`unchanged_locally`] said so.
    unchanged: bool,
    live_normalized: Option<Value>,
    live_fingerprint: Option<u64>,
}

/// [`unchanged_locally`], [`normalize`] and [`fingerprint`] for every object, spread over
/// the machine's cores on the blocking pool (pure CPU work: thousands of objects take a
/// noticeable time). If the check fails in any way, the objects concerned are simply
/// dry-run by the server.
async fn unchanged_in_parallel(
    checked: Vec<(Desired, Option<Value>)>,
    manager: String,
) -> Vec<Checked> {
    type Found = (bool, Option<Value>, Option<u64>);
    let examine = |d: &Desired, live: &Option<Value>, manager: &str| -> Found {
        let Some(live) = live else {
            return (false, None, None);
        };
        let normalized = normalize(live);
        let fingerprint = fingerprint_normalized(&normalized);
        (
            unchanged_locally(d, live, manager),
            Some(normalized),
            Some(fingerprint),
        )
    };
    let count = checked.len();
    let shared = std::sync::Arc::new(checked);
    let data = shared.clone();
    let found = tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = data.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = data
                .chunks(chunk)
                .map(|part| {
                    let manager = &manager;
                    let handle = scope.spawn(move || {
                        part.iter()
                            .map(|(d, live)| examine(d, live, manager))
                            .collect::<Vec<Found>>()
                    });
                    (part, handle)
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|(part, handle)| {
                    handle.join().unwrap_or_else(|_| {
                        part.iter()
                            .map(|(_, live)| {
                                (
                                    false,
                                    live.as_ref().map(normalize),
                                    live.as_ref().map(fingerprint),
                                )
                            })
                            .collect()
                    })
                })
                .collect::<Vec<Found>>()
        })
    })
    .await
    .ok();
    // The blocking task has finished and dropped its reference.
    let checked = std::sync::Arc::try_unwrap(shared).unwrap_or_else(|still| (*still).clone());
    // One result per object, or none at all when the task failed.
    let mut found = found
        .filter(|found| found.len() == count)
        .unwrap_or_default()
        .into_iter();
    checked
        .into_iter()
        .map(|(desired, live)| {
            let (unchanged, live_normalized, live_fingerprint) =
                found.next().unwrap_or_else(|| {
                    (
                        false,
                        live.as_ref().map(normalize),
                        live.as_ref().map(fingerprint),
                    )
                });
            Checked {
                desired,
                live,
                unchanged,
                live_normalized,
                live_fingerprint,
            }
        })
        .collect()
}

/// Whether applying the object to `live` would leave it as it is, decided with the API
/// server's own server-side-apply code ([`crate::api::apply::is_noop`]). Only a "no change"
/// answer is trusted (the server never sees the object then); anything else goes to the
/// server's dry-run, so every change is still validated by the server itself.
fn unchanged_locally(d: &Desired, live: &Value, manager: &str) -> bool {
    // The revision annotation changes with every revision without changing the object
    // (see `normalize`): compare as if it still had the live value.
    let mut config = d.object.clone();
    let live_revision = live
        .pointer(&format!(
            "/metadata/annotations/{}",
            escape(REVISION_ANNOTATION)
        ))
        .cloned();
    if let (Some(revision), Some(annotations)) = (
        live_revision,
        config
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut),
    ) {
        annotations.insert(REVISION_ANNOTATION.to_owned(), revision);
    }
    crate::api::apply::is_noop(d.id.group(), &d.id.kind, live, &config, manager)
}

/// Server-side dry-run of the apply: the object as the server would store it, and whether
/// it needs a replace (an immutable field changes and the manifest opted in).
async fn dry_run(client: &Client, d: &Desired, manager: &str) -> Result<(Value, bool), SyncError> {
    let api = api_for(client, &d.kind, &d.id.namespace);
    let params = PatchParams::apply(manager).force().dry_run();
    match api
        .patch(&d.id.name, &params, &Patch::Apply(&d.object))
        .await
    {
        Ok(obj) => Ok((serde_json::to_value(obj).unwrap_or(Value::Null), false)),
        Err(kube::Error::Api(status)) if status.code == 422 && mentions_immutable(&status) => {
            if opted_in_to_replace(&d.object) {
                local_admission(d).map(|obj| (obj, true))
            } else {
                Err(error_at(
                    &d.file,
                    d.line,
                    format!(
                        "{}: {} (a change to an immutable field: annotate the manifest with {REPLACE_ANNOTATION}: \"true\" to delete and re-create the object)",
                        d.id,
                        safe_message(&d.id, &d.object, &status.message)
                    ),
                ))
            }
        }
        Err(kube::Error::Api(status)) => Err(error_at(
            &d.file,
            d.line,
            format!(
                "{}: {}",
                d.id,
                safe_message(&d.id, &d.object, &status.message)
            ),
        )),
        Err(other) => Err(error_at(
            &d.file,
            d.line,
            format!(
                "{}: {}",
                d.id,
                safe_message(&d.id, &d.object, &other.to_string())
            ),
        )),
    }
}

fn mentions_immutable(status: &kube::core::Status) -> bool {
    status.message.contains("immutable")
        || status.details.as_ref().is_some_and(|details| {
            details
                .causes
                .iter()
                .any(|cause| cause.message.contains("immutable"))
        })
}

fn opted_in_to_replace(obj: &Value) -> bool {
    obj.pointer(&format!(
        "/metadata/annotations/{}",
        escape(REPLACE_ANNOTATION)
    ))
    .and_then(Value::as_str)
        == Some("true")
}

/// The admission chain the API server runs (defaults, then validation), run here for
/// objects the server cannot dry-run yet: those whose namespace this revision creates,
/// and replacements (the old object still holds the name).
fn local_admission(d: &Desired) -> Result<Value, SyncError> {
    let mut obj = d.object.clone();
    crate::api::defaults::apply_defaults(d.id.group(), &d.id.kind, &mut obj);
    let problems = crate::api::validation::validate(d.id.group(), &d.id.kind, &obj, None);
    if problems.is_empty() {
        Ok(obj)
    } else {
        let messages: Vec<String> = problems.iter().map(|p| p.message()).collect();
        let message = format!("{} is invalid: {}", d.id, messages.join(", "));
        Err(error_at(
            &d.file,
            d.line,
            safe_message(&d.id, &d.object, &message),
        ))
    }
}

/// The annotation in which client-side `kubectl apply` keeps the whole object it last
/// applied — for a Secret, every value in clear.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether an object is a Secret (core `v1`), whose values must never be shown.
pub fn is_secret(id: &ObjectId) -> bool {
    id.api_version == "v1" && id.kind == "Secret"
}

/// A copy of `object` with its values masked when it is a Secret, for `{:?}`.
fn masked_if_secret(id: &ObjectId, object: Option<&Value>) -> Option<Value> {
    let mut object = object.cloned();
    if is_secret(id) {
        mask_secret(object.as_mut(), None);
    }
    object
}

/// Replace every Secret value by a marker, so no value ever reaches a diff, a log or a
/// status: equal values become `(hidden)`, differing ones `(hidden, before)` and
/// `(hidden, after)`, so a diff still shows which keys changed. `data` and `stringData`
/// are masked key by key (whole, if one is not a mapping), and so is the
/// [`LAST_APPLIED_ANNOTATION`], which holds a copy of them.
pub fn mask_secret(live: Option<&mut Value>, planned: Option<&mut Value>) {
    fn hide(slot: &mut Value, same: bool, tag: &str) {
        *slot = Value::from(if same {
            "(hidden)".to_owned()
        } else {
            format!("(hidden, {tag})")
        });
    }
    fn slot<'a>(obj: &'a mut Option<&mut Value>, pointer: &str) -> Option<&'a mut Value> {
        obj.as_mut()
            .and_then(|o| o.pointer_mut(pointer))
            .filter(|v| !v.is_null())
    }
    let mut live = live;
    let mut planned = planned;
    let last_applied = format!("/metadata/annotations/{}", escape(LAST_APPLIED_ANNOTATION));
    for pointer in ["/data", "/stringData", last_applied.as_str()] {
        let before = slot(&mut live, pointer).cloned();
        let after = slot(&mut planned, pointer).cloned();
        let mappings = pointer != last_applied
            && before.as_ref().is_none_or(Value::is_object)
            && after.as_ref().is_none_or(Value::is_object);
        if !mappings {
            // Not a mapping of keys (the annotation, or a malformed field): hidden whole.
            let same = before == after;
            if let Some(value) = slot(&mut live, pointer) {
                hide(value, same, "before");
            }
            if let Some(value) = slot(&mut planned, pointer) {
                hide(value, same, "after");
            }
            continue;
        }
        let key = |side: &Option<Value>, key: &str| side.as_ref().and_then(|m| m.get(key)).cloned();
        for (side, tag) in [(&mut live, "before"), (&mut planned, "after")] {
            let Some(map) = slot(side, pointer).and_then(Value::as_object_mut) else {
                continue;
            };
            for (name, value) in map.iter_mut() {
                let same = key(&before, name) == key(&after, name);
                hide(value, same, tag);
            }
        }
    }
}

/// The shortest bare Secret value scrubbed from messages: shorter ones are replaced only
/// where quoted, or anything containing `a` or `1` would be garbled.
const MIN_SCRUBBED_VALUE: usize = 4;

/// `message` (from the API server, a validation, a decoder) made safe to show for the
/// object `id`: for a Secret, every one of its values — as written, quoted, and for `data`
/// base64-decoded — is replaced by `***`, and so is the value of any field error on
/// `data` or `stringData`. Other kinds' messages come back unchanged.
pub fn safe_message(id: &ObjectId, object: &Value, message: &str) -> String {
    if !is_secret(id) {
        return message.to_owned();
    }
    scrub_secret_values(object, message)
}

/// See [`safe_message`].
fn scrub_secret_values(object: &Value, message: &str) -> String {
    use base64::Engine as _;
    fn leaves(value: &Value, out: &mut Vec<Value>) {
        match value {
            Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
            Value::Null | Value::Bool(_) => {}
            scalar => out.push(scalar.clone()),
        }
    }
    let mut values = Vec::new();
    for field in ["data", "stringData"] {
        if let Some(value) = object.get(field) {
            leaves(value, &mut values);
        }
    }
    if let Some(annotation) = object.pointer(&format!(
        "/metadata/annotations/{}",
        escape(LAST_APPLIED_ANNOTATION)
    )) {
        values.push(annotation.clone());
    }
    let decoded: Vec<Value> = object
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|map| map.values())
        .filter_map(Value::as_str)
        .filter_map(|text| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .filter_map(|bytes| String::from_utf8(bytes).ok())
        .map(Value::from)
        .collect();
    values.extend(decoded);

    let mut forms: Vec<String> = Vec::new();
    for value in &values {
        let rendered = value.to_string();
        match value {
            Value::String(text) => {
                // Quoted (JSON and Go agree for plain text) is distinctive at any length.
                forms.push(rendered.clone());
                let escaped = &rendered[1..rendered.len() - 1];
                for form in [text.as_str(), escaped] {
                    if form.chars().count() >= MIN_SCRUBBED_VALUE {
                        forms.push(form.to_owned());
                    }
                }
            }
            _ if rendered.chars().count() >= MIN_SCRUBBED_VALUE => forms.push(rendered),
            _ => {}
        }
    }
    // Longest first, so a value containing another is replaced whole.
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    let mut message = message.to_owned();
    for form in forms {
        message = message.replace(&form, "***");
    }
    scrub_field_values(&message)
}

/// Kubernetes field errors read `path: Invalid value: <value>: detail`; for a path under
/// `data` or `stringData` the value is replaced by `***`, whatever its spelling (a short
/// one [`scrub_secret_values`] leaves alone, a number printed differently).
fn scrub_field_values(message: &str) -> String {
    const MARKERS: [&str; 4] = [
        ": Invalid value: ",
        ": Unsupported value: ",
        ": Duplicate value: ",
        ": Not found: ",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = MARKERS
            .iter()
            .filter_map(|marker| rest.find(marker).map(|at| (at, marker.len())))
            .min();
        let Some((at, marker_len)) = next else {
            out.push_str(rest);
            return out;
        };
        let (before, after) = rest.split_at(at + marker_len);
        out.push_str(before);
        let path = before[..at]
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or("")
            .trim_start_matches('[');
        let secret_path = ["data", "stringData"].iter().any(|field| {
            path.strip_prefix(field).is_some_and(|tail| {
                tail.is_empty() || tail.starts_with('[') || tail.starts_with('.')
            })
        });
        let value_end = [": ", ", ", "]"]
            .iter()
            .filter_map(|end| after.find(end))
            .min()
            .unwrap_or(after.len());
        if secret_path && value_end > 0 {
            out.push_str("***");
            rest = &after[value_end..];
        } else {
            rest = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        Catalog::from_registry()
    }

    fn options() -> PlanOptions {
        PlanOptions {
            source: "apps".into(),
            revision: "abc123".into(),
            default_namespace: "default".into(),
            prune: true,
            allow_empty: false,
        }
    }

    fn manifest(file: &str, line: usize, object: Value) -> Manifest {
        Manifest {
            file: file.into(),
            line,
            object,
        }
    }

    #[test]
    fn prepare_marks_ownership_and_resolves_namespaces() {
        let (desired, errors) = prepare(
            vec![
                manifest(
                    "a.yaml",
                    1,
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "c", "resourceVersion": "7", "uid": "u"},
                       "status": {"x": 1}}),
                ),
                manifest(
                    "a.yaml",
                    9,
                    json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "team", "namespace": "ignored"}}),
                ),
            ],
            &catalog(),
            &options(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        let cm = &desired[0];
        assert_eq!(cm.id.namespace, "default");
        assert_eq!(cm.object["metadata"]["labels"][SOURCE_LABEL], "apps");
        assert_eq!(
            cm.object["metadata"]["annotations"][REVISION_ANNOTATION],
            "abc123"
        );
        assert!(cm.object["metadata"].get("resourceVersion").is_none());
        assert!(cm.object.get("status").is_none());
        assert_eq!(desired[1].id.namespace, "");
        assert!(desired[1].object["metadata"].get("namespace").is_none());
    }

    #[test]
    fn prepare_reports_unknown_kinds_and_duplicates_with_both_places() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let (desired, errors) = prepare(
            vec![
                manifest("a.yaml", 3, cm.clone()),
                manifest("b/c.yaml", 12, cm),
                manifest(
                    "x.yaml",
                    5,
                    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
                ),
            ],
            &catalog(),
            &options(),
        );
        assert_eq!(desired.len(), 1);
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                "b/c.yaml:12: v1 ConfigMap default/c is defined twice: also in a.yaml:3",
                "x.yaml:5: unknown kind Widget in example.com/v1: the server does not serve it",
            ]
        );
    }

    #[test]
    fn normalize_ignores_server_fields_and_the_revision() {
        let live = json!({"metadata": {"name": "c", "uid": "u", "resourceVersion": "9",
            "generation": 2, "managedFields": [], "creationTimestamp": "t",
            "annotations": {REVISION_ANNOTATION: "old"}}, "data": {"a": "1"}, "status": {}});
        let planned = json!({"metadata": {"name": "c", "annotations": {REVISION_ANNOTATION: "new"}},
            "data": {"a": "1"}});
        assert_eq!(normalize(&live), normalize(&planned));
        assert_eq!(fingerprint(&live), fingerprint(&planned));
        let changed = json!({"metadata": {"name": "c"}, "data": {"a": "2"}});
        assert_ne!(fingerprint(&live), fingerprint(&changed));
    }

    #[test]
    fn secrets_are_masked_but_changed_keys_show() {
        let mut live = json!({"data": {"user": "YQ==", "password": "b2xk"}});
        let mut planned = json!({"data": {"user": "YQ==", "password": "bmV3", "token": "dA=="}});
        mask_secret(Some(&mut live), Some(&mut planned));
        assert_eq!(
            live,
            json!({"data": {"user": "(hidden)", "password": "(hidden, before)"}})
        );
        assert_eq!(
            planned,
            json!({"data": {"user": "(hidden)", "password": "(hidden, after)", "token": "(hidden, after)"}})
        );
    }

    #[test]
    fn string_data_malformed_fields_and_last_applied_copies_are_masked_too() {
        let last_applied = r#"{"stringData":{"token":"s3cr3t-token"}}"#;
        let mut live = json!({
            "metadata": {"annotations": {LAST_APPLIED_ANNOTATION: last_applied, "team": "a"}},
            "stringData": {"token": "s3cr3t-token", "same": "kept-secret"},
            "data": "not-a-mapping-s3cr3t",
        });
        let mut planned = json!({
            "stringData": {"token": "n3w-s3cr3t", "same": "kept-secret"},
            "data": {"k": "djE="},
        });
        mask_secret(Some(&mut live), Some(&mut planned));
        assert_eq!(
            live,
            json!({
                "metadata": {"annotations": {LAST_APPLIED_ANNOTATION: "(hidden, before)", "team": "a"}},
                "stringData": {"token": "(hidden, before)", "same": "(hidden)"},
                "data": "(hidden, before)",
            })
        );
        assert_eq!(
            planned,
            json!({
                "stringData": {"token": "(hidden, after)", "same": "(hidden)"},
                // One side is no mapping: the field is compared, and hidden, whole.
                "data": "(hidden, after)",
            })
        );
        for text in [live.to_string(), planned.to_string()] {
            assert!(!text.contains("s3cr3t"), "{text}");
        }
    }

    fn secret_desired(object: Value) -> Desired {
        let (mut desired, errors) =
            prepare(vec![manifest("db.yaml", 3, object)], &catalog(), &options());
        assert!(errors.is_empty(), "{errors:?}");
        desired.remove(0)
    }

    #[test]
    fn validation_errors_of_a_secret_never_echo_its_values() {
        // The validator echoes a value of the wrong type (`Invalid value: 98765432`), as
        // upstream does; the status must not.
        let d = secret_desired(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": 98765432, "pin": 42, "ok": "aHVudGVyMg=="},
        }));
        let raw = crate::api::validation::validate("", "Secret", &d.object, None);
        let raw: Vec<String> = raw.iter().map(|p| p.message()).collect();
        assert!(
            raw.iter().any(|m| m.contains("98765432")),
            "the check below must be able to fail: {raw:?}"
        );
        let error = local_admission(&d).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("db.yaml:3: v1 Secret default/db is invalid"),
            "{message}"
        );
        assert!(
            message.contains("data[password]: Invalid value: ***"),
            "{message}"
        );
        for value in ["98765432", ": 42", "hunter2", "aHVudGVyMg"] {
            assert!(!message.contains(value), "{value} in {message}");
        }
    }

    #[test]
    fn server_messages_about_a_secret_are_scrubbed_of_every_spelling_of_its_values() {
        let id = ObjectId {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: "default".into(),
            name: "db".into(),
        };
        // `aHVudGVyMg==` is base64 of `hunter2`.
        let object = json!({
            "data": {"password": "aHVudGVyMg==", "short": "YQ=="},
            "stringData": {"token": "tok\"en-value", "pin": "12", "nested": {"deep": "deep-value"}},
        });
        for (message, leaked) in [
            ("decoded hunter2 here", "hunter2"),
            ("raw aHVudGVyMg== there", "aHVudGVyMg=="),
            (r#"quoted "tok\"en-value""#, "en-value"),
            (r#"stringData[pin]: Invalid value: "12": bad"#, "12"),
            ("stringData[pin]: Invalid value: 12, next", "12"),
            (r#"[data[short]: Invalid value: "YQ==": x]"#, "YQ=="),
            ("map[deep:deep-value]", "deep-value"),
        ] {
            let safe = safe_message(&id, &object, message);
            assert!(!safe.contains(leaked), "{message} -> {safe}");
            assert!(safe.contains("***"), "{message} -> {safe}");
        }
        assert_eq!(
            safe_message(
                &id,
                &object,
                "metadata.name: Invalid value: \"Db\": lower case"
            ),
            "metadata.name: Invalid value: \"Db\": lower case",
            "other fields' values are no secrets"
        );
        let config_map = ObjectId {
            kind: "ConfigMap".into(),
            ..id.clone()
        };
        assert_eq!(
            safe_message(&config_map, &object, "hunter2"),
            "hunter2",
            "only Secrets are scrubbed"
        );
    }

    #[test]
    fn debug_output_of_a_secret_never_holds_its_values() {
        let d = secret_desired(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "stringData": {"password": "hunter2-in-clear"},
        }));
        let entry = Entry {
            id: d.id.clone(),
            action: Action::Create,
            kind: d.kind.clone(),
            file: d.file.clone(),
            line: d.line,
            live: None,
            planned: None,
            apply: Some(d.object.clone()),
            live_fingerprint: None,
        };
        for text in [format!("{d:?}"), format!("{entry:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("(hidden"), "{text}");
        }
        // What is sent to the server is untouched.
        assert_eq!(
            entry.apply.unwrap()["stringData"]["password"],
            "hunter2-in-clear"
        );
    }

    #[test]
    fn only_objects_the_source_applied_are_its_own() {
        let applied = json!({"metadata": {
            "labels": {SOURCE_LABEL: "apps"},
            "managedFields": [{"manager": "moor-gitops/apps", "operation": "Apply"}]
        }});
        assert!(owned_by(&applied, "apps"));
        assert!(!owned_by(&applied, "other"));
        // Labels copied by a controller (Endpoints get their Service's labels).
        let copied = json!({"metadata": {
            "labels": {SOURCE_LABEL: "apps"},
            "managedFields": [{"manager": "endpoint-controller", "operation": "Update"}]
        }});
        assert!(!owned_by(&copied, "apps"));
    }

    #[test]
    fn only_namespaces_this_source_created_are_prunable() {
        let id = ObjectId {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: String::new(),
            name: "team".into(),
        };
        let ours = json!({"metadata": {"annotations": {CREATED_BY_ANNOTATION: "apps"}}});
        let theirs = json!({"metadata": {}});
        assert!(prunable(&id, &ours, "apps"));
        assert!(!prunable(&id, &theirs, "apps"));
        assert!(!prunable(&id, &ours, "other"));
    }
}

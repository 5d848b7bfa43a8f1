//! Writes: create, update, patch, delete and the status/scale/binding subresources, with
//! kube-apiserver's object semantics — system metadata (uid, creationTimestamp, generation,
//! resourceVersion), generateName, namespace existence, defaulting and validation,
//! optimistic concurrency, status/main separation, finalizers and graceful pod deletion,
//! and `dryRun=All`. A Service's cluster IP and node ports are reserved through
//! [`super::services`] on its create and every update of its spec (all patch types and
//! server-side apply end in those two writes), and released when it leaves the store.
//!
//! Deletion follows kube-apiserver's generic registry: DeleteOptions (body or query) choose
//! how dependents are treated — `Background` (the default for every kind moor serves),
//! `Foreground` (the object waits, with the `foregroundDeletion` finalizer, until the garbage
//! collector has deleted its blocking dependents) or `Orphan` (the `orphan` finalizer: the
//! collector detaches the dependents first). An object with finalizers is only marked
//! (deletionTimestamp) and goes when an update removes its last finalizer. Namespaces are
//! deleted in two steps: DELETE marks them Terminating, the namespace controller deletes
//! their content and clears `spec.finalizers` through `namespaces/{name}/finalize`, and
//! only then are they removed. Following owners to dependents is the garbage collector's
//! work (`crate::controllers::garbage_collector`), never the API server's.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::request::{Params, Target};
use super::{Inner, Written, services};
use crate::api::registry::{ResourceInfo, Subresource};
use crate::api::{defaults, strategic_merge, validation};
use crate::store::{DeleteOutcome, KeyValue, Revision, UpdateOutcome};

/// How many times a patch or subresource write is retried on a conflict with a concurrent
/// writer (GuaranteedUpdate): the client sent no resourceVersion, so it asked for "latest".
/// Upstream retries until the request times out; every conflict means another writer made
/// progress, so n concurrent writers need at most n rounds. The bound only stops a
/// pathological pile-up from spinning for ever.
const RETRIES: usize = 256;

/// The finalizer that asks the garbage collector to detach an object's dependents before
/// the object goes (`metav1.FinalizerOrphanDependents`).
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that asks the garbage collector to delete an object's dependents before
/// the object goes (`metav1.FinalizerDeleteDependents`).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The `spec.finalizers` entry of a Namespace: its content has not been deleted yet.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";
/// Namespaces kube-apiserver's NamespaceLifecycle admission never lets anyone delete.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];
/// Kinds whose DELETE answers with the deleted object rather than a `Status`
/// (`ReturnDeletedObject` in their upstream registry stores).
const RETURNS_DELETED_OBJECT: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Pod"),
    ("", "Service"),
    ("", "ServiceAccount"),
];

/// The patch formats moor applies.
#[derive(Debug, Clone, Copy)]
pub enum PatchType {
    /// RFC 6902 JSON patch.
    Json,
    /// RFC 7396 JSON merge patch.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// Server-side apply (`application/apply-patch+yaml`).
    Apply,
}

impl PatchType {
    /// From a Content-Type.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// The current time as kube-apiserver writes it (RFC 3339, seconds).
pub fn now() -> String {
    rfc3339(jiff::Timestamp::now())
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// The object's metadata map, created when absent or not a map. Callers have checked the
/// object is a JSON object (check_type); anything else is replaced by one, so the final
/// lookup cannot fail.
fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj.get("metadata").is_some_and(Value::is_object)
        && let Some(map) = obj.as_object_mut()
    {
        map.insert("metadata".into(), json!({}));
    }
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("metadata was just made an object")
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str().filter(|s| !s.is_empty())
}

/// The stored form: everything but resourceVersion (the store's revision is the truth).
fn to_stored(obj: &Value) -> Result<bytes::Bytes, ApiError> {
    let mut stored = obj.clone();
    meta_mut(&mut stored).remove("resourceVersion");
    serde_json::to_vec(&stored)
        .map(bytes::Bytes::from)
        .map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

/// The object as answered: with its resourceVersion.
fn with_revision(mut obj: Value, revision: Revision) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.to_string()));
    obj
}

fn parse_stored(kv: &KeyValue) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    Ok(with_revision(value, kv.mod_revision))
}

/// Check the body's kind/apiVersion against the URL and fill them in when absent.
fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the request body must be a {} object",
            info.kind
        )));
    };
    let api_version = info.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None => {
            map.insert("apiVersion".into(), json!(api_version));
        }
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None => {
            map.insert("kind".into(), json!(info.kind));
        }
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

/// Check the object's namespace against the URL's, filling it in when absent.
fn check_namespace(target: &Target, obj: &mut Value) -> Result<(), ApiError> {
    let info = target.info;
    let meta = meta_mut(obj);
    if !info.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let url_ns = target.namespace.as_deref().unwrap_or("default");
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), json!(url_ns));
            Ok(())
        }
        Some(ns) if ns == url_ns => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// `fieldValidation=Strict`: unknown fields are a 400, worded as upstream words it.
/// (`Warn`, the default, and `Ignore` keep them: objects round-trip untouched.)
fn check_fields(info: &ResourceInfo, obj: &Value, params: &Params) -> Result<(), ApiError> {
    if params.get("fieldValidation") != Some("Strict") {
        return Ok(());
    }
    let unknown = crate::api::fields::unknown_fields(info.group, info.kind, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = info.kind,
        version = info.version,
    )))
}

/// Defaults then validation, answering 422 with every bad field.
fn admit(info: &ResourceInfo, obj: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    defaults::apply_defaults(info.group, info.kind, obj);
    let errors = validation::validate(info.group, info.kind, obj, old);
    if errors.is_empty() {
        Ok(())
    } else {
        let name = meta_str(obj, "name").unwrap_or_default().to_owned();
        Err(ApiError::invalid(info.kind, &name, info.group, &errors))
    }
}

/// Whether a change to `spec` should bump generation (kinds whose controllers observe it).
fn bumps_generation(info: &ResourceInfo) -> bool {
    matches!(
        info.kind,
        "Deployment" | "ReplicaSet" | "Pod" | "Service" | "Node" | "Namespace" | "ManifestSource"
    )
}

/// What `status` an object starts with: clients cannot create an object with a status of
/// their choosing for kinds whose status controllers own (pods start Pending).
fn initial_status(info: &ResourceInfo, obj: &mut Value) {
    if !info.has(Subresource::Status) {
        return;
    }
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    match info.kind {
        // Nodes register with their status; namespaces' phase comes from defaulting.
        "Node" | "Namespace" => {}
        "Pod" => {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
        _ => {
            map.insert("status".into(), json!({}));
        }
    }
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// generateName's random suffix: 5 characters from upstream's alphabet (no vowels, no
/// look-alikes).
fn random_suffix() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| NAME_CHARS[*b as usize % NAME_CHARS.len()] as char)
        .collect()
}

impl Inner {
    /// POST to a collection.
    pub async fn create(
        &self,
        target: &Target,
        mut obj: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        check_type(info, &mut obj)?;
        check_fields(info, &obj, params)?;
        check_namespace(target, &mut obj)?;
        if info.namespaced {
            let ns = meta_str(&obj, "namespace").unwrap_or("default").to_owned();
            // Named as upstream's admission names it: before generateName is resolved.
            let shown = meta_str(&obj, "name")
                .or_else(|| meta_str(&obj, "generateName"))
                .unwrap_or("Unknown")
                .to_owned();
            self.check_namespace_open(info, &ns, &shown).await?;
        }
        let generate = meta_str(&obj, "generateName").map(str::to_owned);
        let fixed_name = meta_str(&obj, "name").map(str::to_owned);
        {
            let meta = meta_mut(&mut obj);
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
            if bumps_generation(info) {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
        }
        initial_status(info, &mut obj);
        if is_namespace(info) {
            require_namespace_finalizer(&mut obj);
        }
        let dry_run = params.dry_run()?;
        // A Service retried under another generated name starts again from what the client
        // sent, not from the values allocated (and given back) for the name that collided.
        let sent = (is_service(info) && fixed_name.is_none()).then(|| obj.clone());
        // generateName collides rarely; retry a few names as upstream does.
        for _ in 0..8 {
            if let Some(sent) = &sent {
                obj = sent.clone();
            }
            if fixed_name.is_none()
                && let Some(prefix) = &generate
            {
                let name = format!("{prefix}{}", random_suffix());
                meta_mut(&mut obj).insert("name".into(), json!(name));
            }
            if is_service(info) {
                services::prepare_create(&mut obj);
            }
            admit(info, &mut obj, None)?;
            if !meta(&obj).is_some_and(|m| m.contains_key("managedFields")) {
                record_manager(info, None, &mut obj, params);
            }
            let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
            let ns = meta_str(&obj, "namespace").map(str::to_owned);
            let key = info.key(ns.as_deref(), &name);
            // A Service's cluster IP and node ports are reserved before it is written and
            // given back if the write fails. They are set after the field manager was
            // recorded: allocated values belong to no manager, as upstream.
            let allocation = if is_service(info) {
                match self.services.allocate(None, &mut obj, dry_run).await {
                    Ok(allocation) => Some(allocation),
                    // Its own reservation makes an existing Service's clusterIP look taken:
                    // answer what a second create of it should get.
                    Err(e)
                        if fixed_name.is_some()
                            && e.code == 422
                            && self.store.get(&key).await?.0.is_some() =>
                    {
                        return Err(ApiError::already_exists(info.group, info.plural, &name));
                    }
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            if dry_run {
                return Ok(Written::created(obj));
            }
            let created = self.store.create(&key, to_stored(&obj)?).await;
            if let Some(allocation) = allocation {
                match &created {
                    Ok(_) => allocation.commit(&self.services).await,
                    Err(_) => allocation.revert(&self.services).await,
                }
            }
            match created {
                Ok(kv) => {
                    self.acknowledge(info, kv.mod_revision);
                    return Ok(Written::created(with_revision(obj, kv.mod_revision)));
                }
                Err(crate::store::StoreError::AlreadyExists { .. }) if fixed_name.is_none() => {
                    continue;
                }
                Err(crate::store::StoreError::AlreadyExists { .. }) => {
                    return Err(ApiError::already_exists(info.group, info.plural, &name));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::internal("could not generate a unique name"))
    }

    /// Namespaced objects may only be created in a namespace that exists and is not being
    /// deleted (upstream's NamespaceLifecycle admission): `created` is the kind being
    /// created and `shown` the name its error names.
    async fn check_namespace_open(
        &self,
        created: &ResourceInfo,
        ns: &str,
        shown: &str,
    ) -> Result<(), ApiError> {
        let info = namespaces_info()?;
        let key = info.key(None, ns);
        let cache = self.caches.get(&(info.group, info.plural));
        // A namespace this server marked Terminating a moment ago must already refuse new
        // content: wait (briefly) until the cache has every namespace write acknowledged.
        // If it cannot catch up, the store below answers instead.
        let fresh = match cache {
            Some(c) => c
                .wait_for(self.acknowledged(info), std::time::Duration::from_secs(1))
                .await
                .is_ok(),
            None => false,
        };
        // The cache answers without a store read; a namespace created a moment ago may not
        // be in it yet, so a miss is checked against the store.
        let cached = cache
            .filter(|_| fresh)
            .and_then(|c| c.get(&key).0)
            .map(|o| meta_str(&o.value, "deletionTimestamp").is_some());
        let terminating = match cached {
            Some(terminating) => terminating,
            None => match self.store.get(&key).await?.0 {
                Some(kv) => meta_str(&parse_stored(&kv)?, "deletionTimestamp").is_some(),
                None => return Err(ApiError::not_found("", "namespaces", ns)),
            },
        };
        if terminating {
            return Err(forbidden(
                created,
                shown,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )
            .with_details(json!({
                "name": shown,
                "group": created.group,
                "kind": created.plural,
                "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace",
                }],
            })));
        }
        Ok(())
    }

    async fn current(&self, target: &Target) -> Result<(KeyValue, Value), ApiError> {
        let info = target.info;
        let name = target.name.as_deref().unwrap_or_default();
        let (kv, _) = self
            .store
            .get(&info.key(target.namespace.as_deref(), name))
            .await?;
        let kv = kv.ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        let obj = parse_stored(&kv)?;
        Ok((kv, obj))
    }

    /// The object as the watch cache holds it, for a write that carries no precondition of
    /// the client's (a binding): a stale copy only costs a conflict, after which the caller
    /// reads the store. Falls back to the store when the cache does not hold the object.
    async fn current_cached(&self, target: &Target) -> Result<(KeyValue, Value), ApiError> {
        let info = target.info;
        let name = target.name.as_deref().unwrap_or_default();
        let key = info.key(target.namespace.as_deref(), name);
        if let Some(cache) = self.caches.get(&(info.group, info.plural))
            && let (Some(object), _) = cache.get(&key)
        {
            let kv = KeyValue {
                key,
                value: object.bytes.clone(),
                // Only the mod revision guards the write; the create revision is not read.
                create_revision: 0,
                mod_revision: object.revision,
            };
            return Ok((kv, object.value.clone()));
        }
        self.current(target).await
    }

    /// PUT of an object or its status.
    pub async fn update(
        &self,
        target: &Target,
        obj: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        self.update_as(target, obj, params, UpdateKind::of(target))
            .await
    }

    /// PUT `namespaces/{name}/finalize`: replaces the namespace's `spec.finalizers` (how the
    /// namespace controller says the content is gone); its status stays as it was. A
    /// terminating namespace left with no finalizers at all is removed.
    pub async fn finalize_namespace(
        &self,
        name: &str,
        obj: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let target = Target {
            info: namespaces_info()?,
            namespace: None,
            name: Some(name.to_owned()),
            subresource: None,
        };
        self.update_as(&target, obj, params, UpdateKind::Finalize)
            .await
    }

    async fn update_as(
        &self,
        target: &Target,
        mut obj: Value,
        params: &Params,
        kind: UpdateKind,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        check_type(info, &mut obj)?;
        if target.subresource.is_none() {
            check_fields(info, &obj, params)?;
        }
        check_namespace(target, &mut obj)?;
        let name = target.name.clone().unwrap_or_default();
        match meta_str(&obj, "name") {
            Some(n) if n == name => {}
            None => {
                meta_mut(&mut obj).insert("name".into(), json!(name));
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
        }
        let (kv, old) = self.current(target).await?;
        let precondition = meta_str(&obj, "resourceVersion").map(str::to_owned);
        if let Some(rv) = &precondition
            && rv.parse::<Revision>().ok() != Some(kv.mod_revision)
        {
            return Err(stale(info, &name));
        }
        let new = match kind {
            UpdateKind::Status => with_status_of(&old, &obj),
            UpdateKind::Main | UpdateKind::Finalize => obj,
        };
        self.commit(target, kind, kv, old, new, params).await
    }

    /// PATCH of an object or its status: applied to the latest version, retried on a
    /// conflict with a concurrent writer unless the patch itself names a resourceVersion.
    pub async fn patch(
        &self,
        target: &Target,
        patch_type: PatchType,
        patch: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        if let PatchType::Apply = patch_type {
            return self.server_side_apply(target, patch, params).await;
        }
        for _ in 0..RETRIES {
            let (kv, old) = self.current(target).await?;
            let mut patched = apply_patch(info, patch_type, &old, &patch)?;
            // A patch that sets resourceVersion is a precondition on it.
            let rv = meta_str(&patched, "resourceVersion").map(str::to_owned);
            if let Some(rv) = &rv
                && rv.parse::<Revision>().ok() != Some(kv.mod_revision)
            {
                return Err(stale(info, &name));
            }
            check_type(info, &mut patched)?;
            if target.subresource.is_none() {
                check_fields(info, &patched, params)?;
            }
            if meta_str(&patched, "name") != Some(name.as_str()) {
                return Err(ApiError::bad_request(
                    "a patch may not change the object's name",
                ));
            }
            let new = match target.subresource {
                Some(Subresource::Status) => with_status_of(&old, &patched),
                _ => patched,
            };
            match self.commit_update(target, kv, old, new, params).await {
                // Re-read and re-apply: a patch naming a resourceVersion fails the check
                // above on the next round; one that does not inherits the fresh one.
                Err(e) if e.reason == "Conflict" => continue,
                other => return other,
            }
        }
        Err(too_busy(info, &name))
    }

    /// Server-side apply: merge the applied configuration into the live object (or create
    /// it), with field ownership and conflicts (409 unless `force=true`), retried on a
    /// conflict with a concurrent writer.
    async fn server_side_apply(
        &self,
        target: &Target,
        mut applied: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        if target.subresource.is_some() {
            return Err(ApiError::unsupported_media_type(
                "application/apply-patch+yaml on a subresource",
            ));
        }
        let manager = params.explicit_manager().ok_or_else(|| {
            ApiError::bad_request(
                "PATCH requests with apply content type must specify fieldManager",
            )
        })?;
        let force = params.flag("force")?;
        check_type(info, &mut applied)?;
        check_fields(info, &applied, params)?;
        if meta_str(&applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        for _ in 0..RETRIES {
            let live = match self.current(target).await {
                Ok(found) => Some(found),
                Err(e) if e.code == 404 => None,
                Err(e) => return Err(e),
            };
            let result = crate::api::apply::apply(
                info.group,
                info.kind,
                live.as_ref().map(|(_, obj)| obj),
                &applied,
                &manager,
                force,
                &now(),
            )
            .map_err(|e| match e {
                crate::api::apply::ApplyError::Conflicts(conflicts) => {
                    let causes: Vec<Value> = conflicts
                        .iter()
                        .map(|c| {
                            json!({"reason": "FieldManagerConflict",
                                   "message": format!("conflict with {}", c.manager_description()),
                                   "field": c.field})
                        })
                        .collect();
                    let message = crate::api::apply::ApplyError::Conflicts(conflicts).to_string();
                    ApiError {
                        code: 409,
                        reason: "Conflict",
                        message,
                        details: Some(json!({"name": name, "group": info.group, "kind": info.plural, "causes": causes})),
                    }
                }
                crate::api::apply::ApplyError::Invalid(message) => ApiError::invalid_patch(message),
            })?;
            let outcome = match live {
                None => {
                    let collection = Target {
                        name: None,
                        ..target.clone()
                    };
                    let mut obj = result.object;
                    meta_mut(&mut obj).insert("name".into(), json!(name));
                    self.create(&collection, obj, params).await
                }
                Some((kv, old)) => {
                    self.commit_update(target, kv, old, result.object, params)
                        .await
                }
            };
            match outcome {
                Err(e) if e.reason == "Conflict" || e.reason == "AlreadyExists" => continue,
                other => return other,
            }
        }
        Err(too_busy(info, &name))
    }

    /// The common end of every update: system metadata kept, status/spec separation,
    /// generation, admission, finalizer completion, no-op detection, the conditional write.
    pub(super) async fn commit_update(
        &self,
        target: &Target,
        kv: KeyValue,
        old: Value,
        new: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        self.commit(target, UpdateKind::of(target), kv, old, new, params)
            .await
    }

    async fn commit(
        &self,
        target: &Target,
        kind: UpdateKind,
        kv: KeyValue,
        old: Value,
        mut new: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        let dry_run = params.dry_run()?;
        // System fields are the server's: keep the old ones whatever the client sent.
        {
            let old_meta = meta(&old);
            let meta = meta_mut(&mut new);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
            ] {
                match old_meta.and_then(|m| m.get(field)) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.remove("resourceVersion");
        }
        // The main resource cannot change status where a status subresource exists.
        if kind != UpdateKind::Status && info.has(Subresource::Status) {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        // A Namespace's spec.finalizers change only through `finalize` (upstream's namespace
        // strategy): an ordinary update cannot skip the content cleanup.
        if kind == UpdateKind::Main && is_namespace(info) {
            keep_spec_finalizers(&old, &mut new);
        }
        // Finalizers only ever go away from an object being deleted (upstream's
        // ValidateObjectMetaUpdate): one added now could hold it for ever.
        if meta_str(&old, "deletionTimestamp").is_some() {
            let before = finalizers_of(&old);
            let added: Vec<String> = finalizers_of(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                let quoted: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
                return Err(ApiError::invalid(
                    info.kind,
                    &name,
                    info.group,
                    &[validation::FieldError::forbidden(
                        "metadata.finalizers",
                        format!(
                            "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                            quoted.join(", ")
                        ),
                    )],
                ));
            }
        }
        if kind == UpdateKind::Main && is_service(info) {
            services::prepare_update(&old, &mut new);
        }
        admit(info, &mut new, Some(&old))?;
        // Compared after defaulting, as upstream (which defaults while decoding): a write that
        // only omits defaulted fields does not change the spec.
        let mut generation = meta(&old)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64);
        if bumps_generation(info) && old.get("spec") != new.get("spec") {
            generation = Some(generation.unwrap_or(0) + 1);
        }
        match generation {
            Some(g) => meta_mut(&mut new).insert("generation".into(), json!(g)),
            None => meta_mut(&mut new).remove("generation"),
        };
        record_manager(info, Some(&old), &mut new, params);

        // An object being deleted whose last finalizer went away is deleted now — unless it
        // is still in its grace period (a pod whose node agent has not stopped it yet: that
        // agent deletes it with grace 0), or it is a Namespace whose content is not yet gone
        // (upstream's ShouldDeleteDuringUpdate and ShouldDeleteNamespaceDuringUpdate).
        let finalizers_left = !finalizers_of(&new).is_empty()
            || (is_namespace(info) && !spec_finalizers(&new).is_empty());
        let in_grace = meta(&old)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0);
        if meta_str(&old, "deletionTimestamp").is_some() && !finalizers_left && !in_grace {
            if dry_run {
                return Ok(Written::ok(new));
            }
            let revision = self.remove(info, &name, &kv).await?;
            return Ok(Written::ok(with_revision(new, revision)));
        }

        if same_but_resource_version(&new, &old) {
            // Nothing changes: no write, no event, the same resourceVersion (as upstream).
            return Ok(Written::ok(old));
        }
        // Reserved before the write, given back if it fails; what only the old version
        // held is released once the new one is stored.
        let allocation = if kind == UpdateKind::Main && is_service(info) {
            Some(
                self.services
                    .allocate(Some(&old), &mut new, dry_run)
                    .await?,
            )
        } else {
            None
        };
        if dry_run {
            return Ok(Written::ok(with_revision(new, kv.mod_revision)));
        }
        let written = self.put(info, &name, &kv, &new).await;
        if let Some(allocation) = allocation {
            match &written {
                Ok(_) => allocation.commit(&self.services).await,
                Err(_) => allocation.revert(&self.services).await,
            }
        }
        Ok(Written::ok(with_revision(new, written?)))
    }

    /// DELETE of one object (also what deletecollection does to each): the object as it now
    /// is — marked for deletion, or as it was when it went.
    pub async fn delete(
        &self,
        target: &Target,
        options: &Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        Ok(self.delete_one(target, options, params).await?.written)
    }

    /// DELETE of one object, saying whether it is gone or only marked for deletion.
    pub async fn delete_one(
        &self,
        target: &Target,
        options: &Value,
        params: &Params,
    ) -> Result<Deletion, ApiError> {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        let options = DeleteOptions::parse(options, params)?;
        if is_namespace(info) && IMMORTAL_NAMESPACES.contains(&name.as_str()) {
            return Err(forbidden(info, &name, "this namespace may not be deleted"));
        }
        // As upstream's GuaranteedUpdate: a mark that loses to a concurrent writer is redone
        // on the fresh object. A client that pinned a resourceVersion gets its precondition
        // failure on the next round instead.
        for _ in 0..RETRIES {
            let (kv, obj) = self.current(target).await?;
            options.check_preconditions(info, &name, kv.mod_revision, &obj)?;
            let attempt = if is_namespace(info) && meta_str(&obj, "deletionTimestamp").is_none() {
                self.start_namespace_deletion(info, &name, &kv, obj, &options)
                    .await
            } else if is_namespace(info) && !spec_finalizers(&obj).is_empty() {
                // Still Terminating: the namespace controller has not finished its content.
                return Ok(Deletion::marked(obj, &options));
            } else {
                self.delete_generic(info, &name, &kv, obj, &options).await
            };
            match attempt {
                Err(e) if e.reason == "Conflict" => continue,
                other => return other,
            }
        }
        Err(too_busy(info, &name))
    }

    /// The generic registry's delete: grace period, the garbage collector's finalizers, then
    /// either a mark (deletionTimestamp) or the removal.
    async fn delete_generic(
        &self,
        info: &ResourceInfo,
        name: &str,
        kv: &KeyValue,
        obj: Value,
        options: &DeleteOptions,
    ) -> Result<Deletion, ApiError> {
        let mut new = obj.clone();
        let graceful = match before_delete(info, &mut new, options) {
            Grace::Pending => return Ok(Deletion::marked(obj, options)),
            Grace::None => None,
            Grace::Period(period) => Some(period),
        };
        let finalizers = gc_finalizers(&finalizers_of(&obj), options);
        set_finalizers(&mut new, &finalizers);
        if finalizers.is_empty() && graceful.unwrap_or(0) == 0 {
            if options.dry_run {
                return Ok(Deletion::gone(obj));
            }
            let revision = self.remove(info, name, kv).await?;
            return Ok(Deletion::gone(with_revision(obj, revision)));
        }
        if graceful.is_none() {
            mark_as_deleting(&mut new);
        }
        self.write_mark(info, name, kv, obj, new, options).await
    }

    /// The first DELETE of a namespace (upstream's namespace REST Delete): it becomes
    /// Terminating and stays until the namespace controller has deleted its content and
    /// cleared `spec.finalizers`. Only the garbage collector's finalizers follow the options.
    async fn start_namespace_deletion(
        &self,
        info: &ResourceInfo,
        name: &str,
        kv: &KeyValue,
        obj: Value,
        options: &DeleteOptions,
    ) -> Result<Deletion, ApiError> {
        let mut new = obj.clone();
        meta_mut(&mut new).insert("deletionTimestamp".into(), json!(now()));
        set_phase(&mut new, "Terminating");
        let current = finalizers_of(&obj);
        let orphan = options.namespace_keeps(
            ORPHAN_FINALIZER,
            current.iter().any(|f| f == ORPHAN_FINALIZER),
        );
        let foreground = options.namespace_keeps(
            FOREGROUND_FINALIZER,
            current.iter().any(|f| f == FOREGROUND_FINALIZER),
        );
        let mut finalizers: Vec<String> = current
            .iter()
            .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
            .cloned()
            .collect();
        if orphan {
            finalizers.push(ORPHAN_FINALIZER.to_owned());
        }
        if foreground {
            finalizers.push(FOREGROUND_FINALIZER.to_owned());
        }
        set_finalizers(&mut new, &same_or(&current, finalizers));
        self.write_mark(info, name, kv, obj, new, options).await
    }

    /// Store a deletion mark (`new`) over `obj`, unless it changes nothing.
    async fn write_mark(
        &self,
        info: &ResourceInfo,
        name: &str,
        kv: &KeyValue,
        obj: Value,
        mut new: Value,
        options: &DeleteOptions,
    ) -> Result<Deletion, ApiError> {
        meta_mut(&mut new).remove("resourceVersion");
        let mut unchanged = obj.clone();
        meta_mut(&mut unchanged).remove("resourceVersion");
        if new == unchanged {
            return Ok(Deletion::marked(obj, options));
        }
        if options.dry_run {
            return Ok(Deletion::marked(
                with_revision(new, kv.mod_revision),
                options,
            ));
        }
        // Written directly: deletionTimestamp is the server's to set, so this does not go
        // through update's metadata protection (nor field management, as upstream).
        let revision = self.put(info, name, kv, &new).await?;
        Ok(Deletion::marked(with_revision(new, revision), options))
    }

    /// Replace `kv` with `obj` if nobody wrote it since it was read (409 otherwise), and
    /// record the write for consistent reads. Returns the new revision.
    async fn put(
        &self,
        info: &ResourceInfo,
        name: &str,
        kv: &KeyValue,
        obj: &Value,
    ) -> Result<Revision, ApiError> {
        match self
            .store
            .update(&kv.key, to_stored(obj)?, kv.mod_revision)
            .await?
        {
            UpdateOutcome::Updated(written) => {
                self.acknowledge(info, written.mod_revision);
                Ok(written.mod_revision)
            }
            UpdateOutcome::Conflict(_) => Err(stale(info, name)),
        }
    }

    /// Delete `kv` if nobody wrote it since it was read (409 otherwise, 404 when gone),
    /// and record the write for consistent reads. Returns the delete's revision.
    async fn remove(
        &self,
        info: &ResourceInfo,
        name: &str,
        kv: &KeyValue,
    ) -> Result<Revision, ApiError> {
        match self.store.delete(&kv.key, Some(kv.mod_revision)).await? {
            DeleteOutcome::Deleted { revision, prev } => {
                self.acknowledge(info, revision);
                // Every removal of a Service ends here (a delete without finalizers, or the
                // update that took the last one away): what it held is free again.
                if is_service(info)
                    && let Ok(service) = serde_json::from_slice::<Value>(&prev.value)
                {
                    self.services.release_all(&service).await;
                }
                Ok(revision)
            }
            DeleteOutcome::NotFound => Err(ApiError::not_found(info.group, info.plural, name)),
            DeleteOutcome::Conflict(_) => Err(stale(info, name)),
        }
    }

    /// GET of `{name}/scale`.
    pub async fn get_scale(&self, target: &Target) -> Result<Value, ApiError> {
        let (_, obj) = self.current(target).await?;
        Ok(scale_of(&obj))
    }

    /// PUT or PATCH of `{name}/scale`: only spec.replicas changes.
    pub async fn write_scale(
        &self,
        target: &Target,
        body: Value,
        patch_type: Option<PatchType>,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        for _ in 0..RETRIES {
            let (kv, old) = self.current(target).await?;
            let scale = match patch_type {
                None => body.clone(),
                Some(t) => apply_patch(info, t, &scale_of(&old), &body)?,
            };
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .ok_or_else(|| ApiError::bad_request("Scale spec.replicas must be an integer"))?;
            if let Some(rv) = meta_str(&scale, "resourceVersion")
                && rv.parse::<Revision>().ok() != Some(kv.mod_revision)
            {
                return Err(stale(info, &name));
            }
            let mut new = old.clone();
            new["spec"]["replicas"] = json!(replicas);
            let main = Target {
                subresource: None,
                ..target.clone()
            };
            match self.commit_update(&main, kv, old, new, params).await {
                Ok(written) => {
                    return Ok(Written {
                        object: scale_of(&written.object),
                        ..written
                    });
                }
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(too_busy(info, &name))
    }

    /// POST `pods/{name}/binding`: place an unscheduled pod on a node.
    pub async fn bind(
        &self,
        target: &Target,
        binding: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "Binding",
                    &name,
                    "",
                    &[validation::FieldError::required("target.name", "")],
                )
            })?
            .to_owned();
        for attempt in 0..RETRIES {
            // The scheduler binds pods it has just seen: the cache almost always holds the
            // latest version, which saves a store read per binding.
            let (kv, old) = if attempt == 0 {
                self.current_cached(target).await?
            } else {
                self.current(target).await?
            };
            if let Some(current) = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    info.group,
                    info.plural,
                    &name,
                    &format!("pod {name} is already assigned to node \"{current}\""),
                ));
            }
            if meta_str(&old, "deletionTimestamp").is_some() {
                return Err(ApiError::conflict(
                    info.group,
                    info.plural,
                    &name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            // The binding names the pod incarnation it was decided for (upstream checks the
            // same): a pod recreated under the name meanwhile is not placed by it.
            if let Some(uid) = binding
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
            {
                let current = meta_str(&old, "uid").unwrap_or_default();
                if uid != current {
                    return Err(ApiError::conflict(
                        info.group,
                        info.plural,
                        &name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {current}"
                        ),
                    ));
                }
            }
            // Binding writes spec.nodeName and the status condition, nothing else, so it
            // goes around the status protection.
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            set_condition(
                &mut new,
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}),
            );
            let status_target = Target {
                subresource: Some(Subresource::Status),
                ..target.clone()
            };
            match self
                .commit_update(&status_target, kv, old, new, params)
                .await
            {
                Ok(_) => {
                    return Ok(Written::created(json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201
                    })));
                }
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(too_busy(info, &name))
    }
}

/// Which rules an update follows (upstream: which registry strategy handles it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UpdateKind {
    /// The main resource: status (where a subresource serves it) and a Namespace's
    /// `spec.finalizers` stay as they were.
    Main,
    /// `{name}/status` (and binding): the caller decided what changes.
    Status,
    /// `namespaces/{name}/finalize`: `spec.finalizers` changes, status stays.
    Finalize,
}

impl UpdateKind {
    fn of(target: &Target) -> Self {
        match target.subresource {
            Some(Subresource::Status) => UpdateKind::Status,
            _ => UpdateKind::Main,
        }
    }
}

/// What a DELETE did.
#[derive(Debug)]
pub struct Deletion {
    /// The object: as marked for deletion, or as it was when it went.
    pub written: Written,
    /// Whether it is gone from the store (or would be, for a dry run).
    pub gone: bool,
}

impl Deletion {
    fn gone(object: Value) -> Self {
        Deletion {
            written: Written::ok(object),
            gone: true,
        }
    }

    /// Marked, not gone: 200, or 202 when the client asked for the legacy
    /// `orphanDependents: false` (kube-apiserver's one case of 202).
    fn marked(object: Value, options: &DeleteOptions) -> Self {
        let written = if options.orphan_dependents == Some(false) {
            Written::accepted(object)
        } else {
            Written::ok(object)
        };
        Deletion {
            written,
            gone: false,
        }
    }

    /// The answer to a DELETE of one object: a removed object of most kinds is answered
    /// with a `Status` naming it (clients tell "gone" from "waiting for finalizers" by it);
    /// pods, services, service accounts and namespaces answer with the object.
    pub fn into_answer(self, info: &ResourceInfo) -> Written {
        if !self.gone || RETURNS_DELETED_OBJECT.contains(&(info.group, info.kind)) {
            return self.written;
        }
        let object = &self.written.object;
        Written::ok(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": meta_str(object, "name").unwrap_or_default(),
                "group": info.group,
                "kind": info.plural,
                "uid": meta_str(object, "uid").unwrap_or_default(),
            },
        }))
    }
}

/// How dependents are treated (`DeleteOptions.propagationPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// DeleteOptions as kube-apiserver reads them: from the body, a field the body leaves out
/// from the query.
#[derive(Debug, Default)]
struct DeleteOptions {
    propagation: Option<Propagation>,
    /// The legacy field: `true` is Orphan, `false` Foreground-ish for namespaces and "not
    /// Orphan" elsewhere.
    orphan_dependents: Option<bool>,
    grace_period: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

/// 422 for DeleteOptions, worded as upstream's ValidateDeleteOptions.
fn invalid_delete_options(error: validation::FieldError) -> ApiError {
    let mut err = ApiError::invalid("DeleteOptions", "", "meta.k8s.io", &[error]);
    err.message = err
        .message
        .replacen("DeleteOptions", "DeleteOptions.meta.k8s.io", 1);
    err
}

impl DeleteOptions {
    fn parse(body: &Value, params: &Params) -> Result<Self, ApiError> {
        let Some(body) = body.as_object() else {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        };
        let field = |name: &str| body.get(name).filter(|v| !v.is_null());
        let wrong = |name: &str, expected: &str, got: &Value| {
            ApiError::bad_request(format!(
                "DeleteOptions.{name} must be {expected}, not {got}"
            ))
        };
        let propagation = match field("propagationPolicy") {
            Some(Value::String(p)) => Some(p.clone()),
            Some(other) => return Err(wrong("propagationPolicy", "a string", other)),
            None => params.get("propagationPolicy").map(str::to_owned),
        };
        let orphan_dependents = match field("orphanDependents") {
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => return Err(wrong("orphanDependents", "a boolean", other)),
            None if params.get("orphanDependents").is_some() => {
                Some(params.flag("orphanDependents")?)
            }
            None => None,
        };
        let grace_period = match field("gracePeriodSeconds") {
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| wrong("gracePeriodSeconds", "an integer", v))?,
            ),
            None => params.number("gracePeriodSeconds")?,
        };
        let preconditions = match field("preconditions") {
            Some(Value::Object(p)) => p.clone(),
            Some(other) => return Err(wrong("preconditions", "an object", other)),
            None => Map::new(),
        };
        let precondition = |name: &str| match preconditions.get(name).filter(|v| !v.is_null()) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong(&format!("preconditions.{name}"), "a string", other)),
            None => Ok(None),
        };
        let uid = precondition("uid")?;
        let resource_version = precondition("resourceVersion")?;
        let dry_run = match field("dryRun") {
            Some(Value::Array(values)) => {
                if values.iter().any(|v| v != "All") {
                    return Err(invalid_delete_options(
                        validation::FieldError::not_supported(
                            "dryRun",
                            Value::Array(values.clone()),
                            &["All"],
                        ),
                    ));
                }
                !values.is_empty()
            }
            Some(other) => return Err(wrong("dryRun", "a list", other)),
            None => false,
        } || params.dry_run()?;

        let propagation = match propagation.as_deref() {
            None => None,
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some(other) => {
                return Err(invalid_delete_options(
                    validation::FieldError::not_supported(
                        "propagationPolicy",
                        other,
                        &["Foreground", "Background", "Orphan", "nil"],
                    ),
                ));
            }
        };
        if orphan_dependents.is_some()
            && let Some(p) = propagation
        {
            let shown = match p {
                Propagation::Orphan => "Orphan",
                Propagation::Background => "Background",
                Propagation::Foreground => "Foreground",
            };
            return Err(invalid_delete_options(validation::FieldError::invalid(
                "propagationPolicy",
                shown,
                "orphanDependents and deletionPropagation cannot be both set",
            )));
        }
        Ok(DeleteOptions {
            propagation,
            orphan_dependents,
            grace_period,
            uid,
            resource_version,
            dry_run,
        })
    }

    /// 409 when the object is not the one the client meant.
    fn check_preconditions(
        &self,
        info: &ResourceInfo,
        name: &str,
        revision: Revision,
        obj: &Value,
    ) -> Result<(), ApiError> {
        if let Some(uid) = &self.uid
            && meta_str(obj, "uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(obj, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &self.resource_version
            && rv.parse::<Revision>().ok() != Some(revision)
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}"
                ),
            ));
        }
        Ok(())
    }

    /// Whether the object should carry the `orphan` finalizer after this delete (upstream's
    /// shouldOrphanDependents; every kind moor serves defaults to Background).
    fn orphans(&self, finalizers: &[String]) -> bool {
        if let Some(orphan) = self.orphan_dependents {
            return orphan;
        }
        match self.propagation {
            Some(p) => p == Propagation::Orphan,
            None => finalizers
                .iter()
                .find(|f| *f == ORPHAN_FINALIZER || *f == FOREGROUND_FINALIZER)
                .is_some_and(|f| f == ORPHAN_FINALIZER),
        }
    }

    /// Whether the object should carry the `foregroundDeletion` finalizer after this delete
    /// (upstream's shouldDeleteDependents).
    fn foreground(&self, finalizers: &[String]) -> bool {
        if self.orphan_dependents.is_some() {
            return false;
        }
        match self.propagation {
            Some(p) => p == Propagation::Foreground,
            None => finalizers
                .iter()
                .find(|f| *f == ORPHAN_FINALIZER || *f == FOREGROUND_FINALIZER)
                .is_some_and(|f| f == FOREGROUND_FINALIZER),
        }
    }

    /// For a namespace's first delete: whether it should carry `finalizer` (upstream's
    /// shouldHaveOrphanFinalizer / shouldHaveDeleteDependentsFinalizer).
    fn namespace_keeps(&self, finalizer: &str, has: bool) -> bool {
        let orphan = finalizer == ORPHAN_FINALIZER;
        if let Some(orphan_dependents) = self.orphan_dependents {
            return orphan_dependents == orphan;
        }
        match self.propagation {
            Some(p) if orphan => p == Propagation::Orphan,
            Some(p) => p == Propagation::Foreground,
            None => has,
        }
    }
}

/// How a delete treats the object's grace period.
#[derive(Debug, PartialEq, Eq)]
enum Grace {
    /// No grace period: the kind has none, or the object's is over.
    None,
    /// Deleted gracefully with this period in seconds; the object has been marked.
    Period(i64),
    /// Already terminating with a period this delete does not shorten: nothing changes.
    Pending,
}

/// Upstream's rest.BeforeDelete: only pods delete gracefully, and a second delete may only
/// shorten the period.
fn before_delete(info: &ResourceInfo, obj: &mut Value, options: &DeleteOptions) -> Grace {
    // Negative periods count as 1 s, as upstream.
    let requested = options.grace_period.map(|g| if g < 0 { 1 } else { g });
    if let Some(since) = meta_str(obj, "deletionTimestamp").map(str::to_owned) {
        let current = meta(obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64);
        let current = match current {
            None | Some(0) => return Grace::None,
            Some(c) => c.max(1),
        };
        return match requested {
            Some(period) if period < current => {
                // The deadline moves closer by the difference.
                let deadline = since
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .and_then(|t| t.checked_sub(jiff::SignedDuration::from_secs(current)).ok())
                    .and_then(|t| t.checked_add(jiff::SignedDuration::from_secs(period)).ok())
                    .unwrap_or_else(jiff::Timestamp::now);
                let meta = meta_mut(obj);
                meta.insert("deletionTimestamp".into(), json!(rfc3339(deadline)));
                meta.insert("deletionGracePeriodSeconds".into(), json!(period));
                Grace::Period(period)
            }
            _ => Grace::Pending,
        };
    }
    if !(info.group.is_empty() && info.kind == "Pod") {
        return Grace::None;
    }
    let period = pod_grace_period(obj, requested);
    let deadline = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(period))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let meta = meta_mut(obj);
    meta.insert("deletionTimestamp".into(), json!(rfc3339(deadline)));
    meta.insert("deletionGracePeriodSeconds".into(), json!(period));
    bump_generation(meta);
    Grace::Period(period)
}

/// Upstream's podStrategy.CheckGracefulDelete: the requested period, else the pod's
/// terminationGracePeriodSeconds; 0 for a pod no node runs (unscheduled or finished),
/// since nothing has to stop. A pod on a node keeps its period: its node agent deletes
/// it for good (grace 0) once its containers are gone.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let scheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    requested.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    })
}

/// Upstream's markAsDeleting, for an object held by finalizers: deletionTimestamp now
/// (never later than an existing one) and no grace period.
fn mark_as_deleting(obj: &mut Value) {
    let now_ts = jiff::Timestamp::now();
    let existing = meta_str(obj, "deletionTimestamp").map(str::to_owned);
    let meta = meta_mut(obj);
    if existing.is_none() {
        bump_generation(meta);
    }
    let keep = existing
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t <= now_ts);
    if !keep {
        meta.insert("deletionTimestamp".into(), json!(rfc3339(now_ts)));
    }
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
}

/// A deletion changes the object, so its generation moves (when it has one).
fn bump_generation(meta: &mut Map<String, Value>) {
    if let Some(g) = meta
        .get("generation")
        .and_then(Value::as_i64)
        .filter(|g| *g > 0)
    {
        meta.insert("generation".into(), json!(g + 1));
    }
}

/// The finalizers after a delete with `options` (upstream's
/// deletionFinalizersForGarbageCollection): the garbage collector's two, as asked.
fn gc_finalizers(current: &[String], options: &DeleteOptions) -> Vec<String> {
    let orphan = options.orphans(current);
    let foreground = options.foreground(current);
    let mut wanted: Vec<String> = current
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    if orphan {
        wanted.push(ORPHAN_FINALIZER.to_owned());
    }
    if foreground {
        wanted.push(FOREGROUND_FINALIZER.to_owned());
    }
    same_or(current, wanted)
}

/// `current` when `wanted` holds the same finalizers (their order is kept), else `wanted`.
fn same_or(current: &[String], wanted: Vec<String>) -> Vec<String> {
    let set = |list: &[String]| {
        list.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    if set(current) == set(&wanted) {
        current.to_vec()
    } else {
        wanted
    }
}

/// Set metadata.finalizers (removed when empty).
fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    let meta = meta_mut(obj);
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), json!(finalizers));
    }
}

/// metadata.finalizers (strings only: validation refuses anything else).
fn finalizers_of(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A Namespace's spec.finalizers.
fn spec_finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `new` with the spec.finalizers of `old`.
fn keep_spec_finalizers(old: &Value, new: &mut Value) {
    let kept = old.pointer("/spec/finalizers").cloned();
    let Some(map) = new.as_object_mut() else {
        return;
    };
    match kept {
        Some(finalizers) => {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.insert("finalizers".into(), finalizers);
            }
        }
        None => {
            if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        }
    }
}

/// Every new Namespace carries the `kubernetes` finalizer, whatever the client sent
/// (upstream's namespace PrepareForCreate): its content must be deleted before it goes.
fn require_namespace_finalizer(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let spec = map.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        // Left for validation to refuse.
        return;
    }
    let finalizers = spec
        .as_object_mut()
        .map(|s| s.entry("finalizers").or_insert_with(|| json!([])));
    if let Some(Value::Array(list)) = finalizers
        && !list.iter().any(|f| f == NAMESPACE_FINALIZER)
    {
        list.push(json!(NAMESPACE_FINALIZER));
    }
}

/// Set status.phase.
fn set_phase(obj: &mut Value, phase: &str) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let status = map.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    if let Some(status) = status.as_object_mut() {
        status.insert("phase".into(), json!(phase));
    }
}

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Service"
}

fn is_namespace(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Namespace"
}

fn namespaces_info() -> Result<&'static ResourceInfo, ApiError> {
    crate::api::registry::by_resource("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))
}

/// 403 Forbidden, worded as upstream's NewForbidden.
fn forbidden(info: &ResourceInfo, name: &str, why: &str) -> ApiError {
    let resource = if info.group.is_empty() {
        info.plural.to_owned()
    } else {
        format!("{}.{}", info.plural, info.group)
    };
    ApiError {
        code: 403,
        reason: "Forbidden",
        message: format!("{resource} \"{name}\" is forbidden: {why}"),
        details: Some(json!({"name": name, "group": info.group, "kind": info.plural})),
    }
}

/// A time as kube-apiserver writes it (RFC 3339, seconds).
fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// 409 for a write based on a stale resourceVersion, in upstream's words.
/// Whether two objects are equal apart from `metadata.resourceVersion` (compared in place:
/// cloning a large object just to drop one field costs more than the comparison).
fn same_but_resource_version(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let without_rv = |m: &serde_json::Map<String, Value>| {
        m.iter()
            .filter(|(k, _)| k.as_str() != "resourceVersion")
            .count()
    };
    a.len() == b.len()
        && a.iter().all(|(key, va)| {
            let Some(vb) = b.get(key) else {
                return false;
            };
            match (key.as_str(), va.as_object(), vb.as_object()) {
                ("metadata", Some(ma), Some(mb)) => {
                    without_rv(ma) == without_rv(mb)
                        && ma
                            .iter()
                            .filter(|(k, _)| k.as_str() != "resourceVersion")
                            .all(|(k, v)| mb.get(k) == Some(v))
                }
                _ => va == vb,
            }
        })
}

fn stale(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::conflict(
        info.group,
        info.plural,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

/// 409 when a retried write kept losing to concurrent writers.
fn too_busy(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::conflict(
        info.group,
        info.plural,
        name,
        "too many concurrent writers; try again",
    )
}

/// Record in managedFields which fields the request's field manager set or changed (an
/// "Update" operation), as kube-apiserver does for every non-apply write.
fn record_manager(info: &ResourceInfo, old: Option<&Value>, new: &mut Value, params: &Params) {
    let manager = params.manager();
    let managed =
        crate::api::apply::update_managed_fields(info.group, info.kind, old, new, &manager, &now());
    let meta = meta_mut(new);
    if managed.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(managed));
    }
}

/// Set (replace by type) a condition in status.conditions.
fn set_condition(obj: &mut Value, condition: Value) {
    let kind = condition["type"].clone();
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let conditions = obj["status"]
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(list)) = conditions {
        list.retain(|c| c["type"] != kind);
        list.push(condition);
    }
}

/// `old` with the status of `new`: what a status write may change. Labels and
/// annotations also stay as they were, as upstream's status strategies keep them.
fn with_status_of(old: &Value, new: &Value) -> Value {
    let mut result = old.clone();
    match new.get("status") {
        Some(status) => result["status"] = status.clone(),
        None => {
            if let Some(map) = result.as_object_mut() {
                map.remove("status");
            }
        }
    }
    // Keep the resourceVersion the client sent (a precondition) for the caller to check.
    if let Some(rv) = meta(new).and_then(|m| m.get("resourceVersion")) {
        meta_mut(&mut result).insert("resourceVersion".into(), rv.clone());
    }
    result
}

/// The autoscaling/v1 Scale view of a Deployment or ReplicaSet.
fn scale_of(obj: &Value) -> Value {
    let meta = meta(obj).cloned().unwrap_or_default();
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .and_then(|s| crate::api::selector::LabelSelector::from_label_selector(&s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// Apply a patch of `patch_type` to `original`.
pub fn apply_patch(
    info: &ResourceInfo,
    patch_type: PatchType,
    original: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::bad_request(format!("the JSON patch is not a list of operations: {e}"))
            })?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::invalid_patch(format!("the JSON patch cannot be applied: {e}"))
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Apply => Err(ApiError::unsupported_media_type(
            "application/apply-patch+yaml is only accepted on the main resource",
        )),
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            strategic_merge::apply(info.group, info.kind, original, patch)
                .map_err(|e| ApiError::invalid_patch(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_ignores_only_the_resource_version() {
        let same = same_but_resource_version;
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1"}, "spec": {"a": 1}});
        let rv2 = json!({"metadata": {"name": "x", "resourceVersion": "2"}, "spec": {"a": 1}});
        let no_rv = json!({"metadata": {"name": "x"}, "spec": {"a": 1}});
        assert!(same(&a, &rv2));
        assert!(same(&a, &no_rv));
        let other_name =
            json!({"metadata": {"name": "y", "resourceVersion": "1"}, "spec": {"a": 1}});
        let other_spec =
            json!({"metadata": {"name": "x", "resourceVersion": "1"}, "spec": {"a": 2}});
        let extra_field = json!({"metadata": {"name": "x", "uid": "u"}, "spec": {"a": 1}});
        let no_spec = json!({"metadata": {"name": "x"}});
        assert!(!same(&a, &other_name));
        assert!(!same(&a, &other_spec));
        assert!(!same(&a, &extra_field));
        assert!(!same(&a, &no_spec));
    }
}

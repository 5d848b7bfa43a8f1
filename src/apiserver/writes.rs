//! Writes: create, update, patch, delete and the status/scale/binding subresources, with
//! kube-apiserver's object semantics — system metadata (uid, creationTimestamp, generation,
//! resourceVersion), generateName, namespace existence, defaulting and validation,
//! optimistic concurrency, status/main separation, finalizers and graceful pod deletion,
//! and `dryRun=All`.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::request::{Params, Target};
use super::{Inner, Written};
use crate::api::registry::{ResourceInfo, Subresource};
use crate::api::{defaults, strategic_merge, validation};
use crate::store::{DeleteOutcome, KeyValue, Revision, UpdateOutcome};

/// How many times a patch or subresource write is retried on a conflict with a concurrent
/// writer (GuaranteedUpdate): the client sent no resourceVersion, so it asked for "latest".
/// Upstream retries until the request times out; every conflict means another writer made
/// progress, so n concurrent writers need at most n rounds. The bound only stops a
/// pathological pile-up from spinning for ever.
const RETRIES: usize = 256;

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
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
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
            self.check_namespace_open(&ns).await?;
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
        let dry_run = params.dry_run()?;
        // generateName collides rarely; retry a few names as upstream does.
        for _ in 0..8 {
            if fixed_name.is_none()
                && let Some(prefix) = &generate
            {
                let name = format!("{prefix}{}", random_suffix());
                meta_mut(&mut obj).insert("name".into(), json!(name));
            }
            admit(info, &mut obj, None)?;
            if !meta(&obj).is_some_and(|m| m.contains_key("managedFields")) {
                record_manager(info, None, &mut obj, params);
            }
            let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
            let ns = meta_str(&obj, "namespace").map(str::to_owned);
            if dry_run {
                return Ok(Written::created(obj));
            }
            let key = info.key(ns.as_deref(), &name);
            match self.store.create(&key, to_stored(&obj)?).await {
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
    /// deleted.
    async fn check_namespace_open(&self, ns: &str) -> Result<(), ApiError> {
        let info = crate::api::registry::by_resource("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
        let key = info.key(None, ns);
        // The cache answers without a store read; a namespace created a moment ago may not
        // be in it yet, so a miss is checked against the store.
        let cached = self
            .caches
            .get(&(info.group, info.plural))
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
            return Err(ApiError {
                code: 403,
                reason: "Forbidden",
                message: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
                details: None,
            });
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

    /// PUT of an object or its status.
    pub async fn update(
        &self,
        target: &Target,
        mut obj: Value,
        params: &Params,
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
        let new = match target.subresource {
            Some(Subresource::Status) => with_status_of(&old, &obj),
            _ => obj,
        };
        self.commit_update(target, kv, old, new, params).await
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
        mut new: Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        let dry_run = params.dry_run()?;
        // System fields are the server's: keep the old ones whatever the client sent.
        {
            let old_meta = meta(&old).cloned().unwrap_or_default();
            let meta = meta_mut(&mut new);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
            ] {
                match old_meta.get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.remove("resourceVersion");
        }
        // The main resource cannot change status where a status subresource exists.
        if target.subresource.is_none() && info.has(Subresource::Status) {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
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

        // An object being deleted whose last finalizer went away is deleted now.
        let finalizers_left = meta(&new)
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if meta_str(&new, "deletionTimestamp").is_some() && !finalizers_left {
            if dry_run {
                return Ok(Written::ok(new));
            }
            let revision = self.remove(info, &name, &kv).await?;
            return Ok(Written::ok(with_revision(new, revision)));
        }

        let mut old_cmp = old.clone();
        meta_mut(&mut old_cmp).remove("resourceVersion");
        if new == old_cmp {
            // Nothing changes: no write, no event, the same resourceVersion (as upstream).
            return Ok(Written::ok(old));
        }
        if dry_run {
            return Ok(Written::ok(with_revision(new, kv.mod_revision)));
        }
        let revision = self.put(info, &name, &kv, &new).await?;
        Ok(Written::ok(with_revision(new, revision)))
    }

    /// DELETE of one object.
    pub async fn delete(
        &self,
        target: &Target,
        options: &Value,
        params: &Params,
    ) -> Result<Written, ApiError> {
        let info = target.info;
        let name = target.name.clone().unwrap_or_default();
        let dry_run = params.dry_run()?
            || options
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        let (kv, mut obj) = self.current(target).await?;
        if let Some(pre) = options.get("preconditions") {
            if let Some(uid) = pre.get("uid").and_then(Value::as_str)
                && meta_str(&obj, "uid") != Some(uid)
            {
                return Err(ApiError::conflict(
                    info.group,
                    info.plural,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str)
                && rv.parse::<Revision>().ok() != Some(kv.mod_revision)
            {
                return Err(ApiError::conflict(
                    info.group,
                    info.plural,
                    &name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
        }
        let policy = options
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or_else(|| params.get("propagationPolicy"))
            .map(str::to_owned);
        let orphan = options.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        let grace = options
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or(params.number("gracePeriodSeconds")?);

        // The garbage collector acts on these finalizers (as kube-apiserver records them).
        let gc_finalizer = match policy.as_deref() {
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            Some("Background") | None if orphan => Some("orphan"),
            Some("Background") | None => None,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid propagationPolicy {other:?}: expected Foreground, Background or Orphan"
                )));
            }
        };
        let mut finalizers: Vec<Value> = meta(&obj)
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(f) = gc_finalizer
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(json!(f));
        }
        // Pods on a node get time to stop: the node agent deletes them for good once their
        // containers are gone (grace 0). Unscheduled pods have nothing to stop.
        let pod_grace = if info.kind == "Pod"
            && obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
        {
            let g = grace.unwrap_or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            (g > 0).then_some(g)
        } else {
            None
        };
        let already_deleting = meta_str(&obj, "deletionTimestamp").is_some();
        if already_deleting && pod_grace.is_some() && finalizers.is_empty() {
            // A terminating pod deleted again with a grace period keeps terminating; only
            // its node agent (grace 0) removes it.
            return Ok(Written::accepted(obj));
        }
        if !finalizers.is_empty() || (pod_grace.is_some() && !already_deleting) {
            if already_deleting && gc_finalizer.is_none() {
                // Deleting again changes nothing.
                return Ok(Written::ok(obj));
            }
            let meta = meta_mut(&mut obj);
            let when = match pod_grace {
                Some(g) => jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(g))
                    .unwrap_or_else(|_| jiff::Timestamp::now())
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
                None => now(),
            };
            if !already_deleting {
                meta.insert("deletionTimestamp".into(), json!(when));
                meta.insert(
                    "deletionGracePeriodSeconds".into(),
                    json!(pod_grace.unwrap_or(0)),
                );
            }
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), json!(finalizers));
            }
            meta.remove("resourceVersion");
            if dry_run {
                return Ok(Written::ok(obj));
            }
            // Written directly: deletionTimestamp is the server's to set, so this does not
            // go through update's metadata protection.
            let revision = self.put(info, &name, &kv, &obj).await?;
            return Ok(Written::accepted(with_revision(obj, revision)));
        }
        if dry_run {
            return Ok(Written::ok(obj));
        }
        let revision = self.remove(info, &name, &kv).await?;
        Ok(Written::ok(with_revision(obj, revision)))
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
            DeleteOutcome::Deleted { revision, .. } => {
                self.acknowledge(info, revision);
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
        for _ in 0..RETRIES {
            let (kv, old) = self.current(target).await?;
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
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            set_condition(
                &mut new,
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}),
            );
            // Binding writes the status condition too, so go around the status protection.
            let status_target = Target {
                subresource: Some(Subresource::Status),
                ..target.clone()
            };
            let mut new_spec_and_status = with_status_of(&old, &new);
            new_spec_and_status["spec"]["nodeName"] = json!(node);
            match self
                .commit_update(&status_target, kv, old, new_spec_and_status, params)
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

/// 409 for a write based on a stale resourceVersion, in upstream's words.
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

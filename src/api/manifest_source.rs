//! The `ManifestSource` kind (`moor.dev/v1alpha1`, cluster-scoped): where a GitOps source
//! reads manifests from (a folder or a git repository) and what its last sync did. The
//! types here give the served schema (OpenAPI, `kubectl explain`), the defaults and the
//! validation; the sync itself lives in [`crate::gitops`], which reads the spec and writes
//! the status through the API like any other client.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::validation::FieldError;

/// The API group of moor's own kinds.
pub const GROUP: &str = "moor.dev";
/// The version served.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of a ManifestSource.
pub const API_VERSION: &str = "moor.dev/v1alpha1";
/// The kind.
pub const KIND: &str = "ManifestSource";
/// How often a git source polls its remote unless the spec says otherwise.
pub const DEFAULT_GIT_INTERVAL: &str = "1m";
/// The namespace given to namespaced objects that name none, unless the spec says otherwise.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A source of manifests the cluster follows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.moor.v1alpha1.ManifestSource")]
pub struct ManifestSource {
    /// APIVersion defines the versioned schema of this representation of an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind is a string value representing the REST resource this object represents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Standard object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Where manifests come from and how they are applied.
    #[serde(default)]
    pub spec: ManifestSourceSpec,
    /// What the last sync did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ManifestSourceStatus>,
}

/// Where manifests come from (exactly one of `directory` and `git`) and how they are
/// applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.moor.v1alpha1.ManifestSourceSpec")]
pub struct ManifestSourceSpec {
    /// A folder on the API server's machine, watched for changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectorySpec>,
    /// A git repository, read straight from a commit's tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSpec>,
    /// Delete objects this source applied that are no longer in it. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// Allow a revision with no objects at all to prune everything this source applied.
    /// Without it such a revision (an emptied or vanished folder, a wrong path) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_empty: Option<bool>,
    /// Stop applying (and reverting hand edits) until unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// The namespace of namespaced objects whose manifest names none. Defaults to `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_namespace: Option<String>,
}

/// A folder source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.moor.v1alpha1.DirectorySpec")]
pub struct DirectorySpec {
    /// Absolute path of the folder.
    pub path: String,
}

/// A git source. At most one of `branch`, `tag` and `commit`; none means the remote's
/// default branch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.moor.v1alpha1.GitSpec")]
pub struct GitSpec {
    /// Repository URL (https, ssh, file) or a local path.
    pub url: String,
    /// Follow this branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Pin to this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Pin to this commit (full or abbreviated id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Sub-path of the repository holding the manifests; the root when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How often to poll the remote, e.g. `30s`, `1m`. Defaults to 1m. Local repositories
    /// are also watched, so new commits there apply at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// What the last sync did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.moor.v1alpha1.ManifestSourceStatus")]
pub struct ManifestSourceStatus {
    /// The generation of the spec the last sync used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision last applied: the git commit, or `sha256:` + a content hash for a folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The revision the last sync attempted (differs from `revision` when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// When the last sync finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// How long the last sync took, e.g. `64ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    /// Objects the last sync created.
    #[serde(default)]
    pub created: i64,
    /// Objects the last sync updated.
    #[serde(default)]
    pub updated: i64,
    /// Objects the last sync found as desired.
    #[serde(default)]
    pub unchanged: i64,
    /// Objects the last sync pruned.
    #[serde(default)]
    pub pruned: i64,
    /// Every error of the last sync, each with its file and line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SyncError>,
    /// `Ready` (the last revision is applied) and `Stalled` (the source cannot make progress
    /// without a change: invalid manifests, a refused prune, an unreadable source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Every object this source applied and owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
}

/// One problem found while syncing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.moor.v1alpha1.SyncError")]
pub struct SyncError {
    /// The file, relative to the source root; empty for problems of the source as a whole.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// The 1-based line in the file; 0 when none applies.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub line: i64,
    /// What is wrong.
    pub message: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.file.is_empty(), self.line) {
            (true, _) => f.write_str(&self.message),
            (false, 0) => write!(f, "{}: {}", self.file, self.message),
            (false, line) => write!(f, "{}:{}: {}", self.file, line, self.message),
        }
    }
}

/// One object a source owns.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.moor.v1alpha1.InventoryEntry")]
pub struct InventoryEntry {
    /// e.g. `apps/v1`.
    pub api_version: String,
    /// e.g. `Deployment`.
    pub kind: String,
    /// Empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl std::fmt::Display for InventoryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {} {}", self.api_version, self.kind, self.name)
        } else {
            write!(
                f,
                "{} {} {}/{}",
                self.api_version, self.kind, self.namespace, self.name
            )
        }
    }
}

impl ManifestSourceSpec {
    /// Whether pruning is on (the default).
    pub fn prune(&self) -> bool {
        self.prune.unwrap_or(true)
    }

    /// Whether the source is suspended.
    pub fn suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// The namespace for namespaced objects that name none.
    pub fn default_namespace(&self) -> &str {
        self.default_namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
    }
}

impl GitSpec {
    /// The poll interval (validated on admission; the default when unparseable here).
    pub fn interval(&self) -> Duration {
        self.interval
            .as_deref()
            .and_then(|text| crate::cli::parse_duration(text).ok())
            .unwrap_or(Duration::from_secs(60))
    }
}

/// Upstream-style defaults: `prune: true`, the default namespace, the git poll interval.
pub fn apply_defaults(obj: &mut serde_json::Map<String, Value>) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("prune").or_insert(Value::Bool(true));
    spec.entry("defaultNamespace")
        .or_insert_with(|| Value::from(DEFAULT_NAMESPACE));
    if let Some(git) = spec.get_mut("git").and_then(Value::as_object_mut) {
        git.entry("interval")
            .or_insert_with(|| Value::from(DEFAULT_GIT_INTERVAL));
    }
}

/// Validation beyond the object metadata: the spec's shape and values.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec_value = obj.get("spec").cloned().unwrap_or(Value::Null);
    if spec_value.is_null() {
        errors.push(FieldError::required(
            "spec",
            "a ManifestSource needs spec.directory or spec.git",
        ));
        return errors;
    }
    let spec: ManifestSourceSpec = match serde_json::from_value(spec_value.clone()) {
        Ok(spec) => spec,
        Err(e) => {
            errors.push(FieldError::invalid("spec", spec_value, e.to_string()));
            return errors;
        }
    };
    match (&spec.directory, &spec.git) {
        (None, None) => errors.push(FieldError::required(
            "spec",
            "exactly one of spec.directory and spec.git is required",
        )),
        (Some(_), Some(_)) => errors.push(FieldError::forbidden(
            "spec.git",
            "may not be set together with spec.directory",
        )),
        _ => {}
    }
    if let Some(dir) = &spec.directory {
        if dir.path.is_empty() {
            errors.push(FieldError::required("spec.directory.path", ""));
        } else if !std::path::Path::new(&dir.path).is_absolute() {
            errors.push(FieldError::invalid(
                "spec.directory.path",
                dir.path.as_str(),
                "must be an absolute path",
            ));
        }
    }
    if let Some(git) = &spec.git {
        if git.url.trim().is_empty() {
            errors.push(FieldError::required("spec.git.url", ""));
        }
        let pins = [&git.branch, &git.tag, &git.commit]
            .iter()
            .filter(|pin| pin.is_some())
            .count();
        if pins > 1 {
            errors.push(FieldError::forbidden(
                "spec.git",
                "at most one of branch, tag and commit may be set",
            ));
        }
        if let Some(commit) = &git.commit
            && (commit.len() < 7
                || commit.len() > 40
                || !commit.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            errors.push(FieldError::invalid(
                "spec.git.commit",
                commit.as_str(),
                "must be a commit id: 7 to 40 hexadecimal digits",
            ));
        }
        if let Some(path) = &git.path
            && (path.starts_with('/') || path.split('/').any(|c| c == ".."))
        {
            errors.push(FieldError::invalid(
                "spec.git.path",
                path.as_str(),
                "must be a relative path inside the repository, without '..'",
            ));
        }
        if let Some(interval) = &git.interval {
            match crate::cli::parse_duration(interval) {
                Ok(d) if d >= Duration::from_secs(1) => {}
                Ok(_) => errors.push(FieldError::invalid(
                    "spec.git.interval",
                    interval.as_str(),
                    "must be at least 1s",
                )),
                Err(e) => errors.push(FieldError::invalid(
                    "spec.git.interval",
                    interval.as_str(),
                    e,
                )),
            }
        }
    }
    if let Some(ns) = spec
        .default_namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
    {
        for msg in crate::api::validation::is_dns1123_label(ns) {
            errors.push(FieldError::invalid("spec.defaultNamespace", ns, msg));
        }
    }
    if let Some(status) = obj.get("status").filter(|s| !s.is_null())
        && let Err(e) = serde_json::from_value::<ManifestSourceStatus>(status.clone())
    {
        errors.push(FieldError::invalid("status", status.clone(), e.to_string()));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(obj: Value) -> Vec<String> {
        validate(&obj).iter().map(FieldError::message).collect()
    }

    #[test]
    fn defaults_fill_prune_namespace_and_interval() {
        let mut obj = json!({"spec": {"git": {"url": "/srv/repo"}}});
        apply_defaults(obj.as_object_mut().unwrap());
        assert_eq!(obj["spec"]["prune"], true);
        assert_eq!(obj["spec"]["defaultNamespace"], "default");
        assert_eq!(obj["spec"]["git"]["interval"], "1m");
        let mut kept = json!({"spec": {"prune": false, "directory": {"path": "/x"}}});
        apply_defaults(kept.as_object_mut().unwrap());
        assert_eq!(kept["spec"]["prune"], false);
    }

    #[test]
    fn exactly_one_source_kind() {
        assert!(messages(json!({"spec": {}}))[0].contains("exactly one"));
        let both = messages(json!({"spec": {"directory": {"path": "/a"}, "git": {"url": "u"}}}));
        assert!(both[0].contains("spec.git"), "{both:?}");
        assert!(messages(json!({"spec": {"directory": {"path": "/a"}}})).is_empty());
        assert!(messages(json!({})).iter().any(|m| m.contains("spec")));
    }

    #[test]
    fn bad_values_are_named() {
        let errors = messages(json!({"spec": {"git": {
            "url": "u", "branch": "main", "tag": "v1", "commit": "xyz",
            "path": "../etc", "interval": "soon"
        }, "defaultNamespace": "Not_Valid"}}));
        let all = errors.join("\n");
        for field in [
            "spec.git:",
            "spec.git.commit",
            "spec.git.path",
            "spec.git.interval",
            "spec.defaultNamespace",
        ] {
            assert!(all.contains(field), "{field} missing in {all}");
        }
        let relative = messages(json!({"spec": {"directory": {"path": "manifests"}}}));
        assert!(relative[0].contains("absolute"), "{relative:?}");
        let wrong_type = messages(json!({"spec": {"directory": {"path": 3}}}));
        assert!(wrong_type[0].contains("spec"), "{wrong_type:?}");
    }

    #[test]
    fn sync_errors_print_file_and_line() {
        let e = SyncError {
            file: "apps/web.yaml".into(),
            line: 12,
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "apps/web.yaml:12: bad");
        let whole = SyncError {
            message: "gone".into(),
            ..Default::default()
        };
        assert_eq!(whole.to_string(), "gone");
    }
}

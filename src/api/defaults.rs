//! Defaulting: the values kube-apiserver fills in before it validates and stores an object
//! (`pkg/apis/core/v1/defaults.go`, `pkg/apis/apps/v1/defaults.go`,
//! `pkg/apis/discovery/v1/defaults.go`, `pkg/apis/rbac/v1/defaults.go` and the declarative `+default` tags behind their
//! generated `zz_generated.defaults.go`).
//!
//! This module owns exactly one transformation: [`apply_defaults`] edits a
//! `serde_json::Value` in place. It never removes a field it does not understand, so fields
//! moor does not model round-trip untouched; the few removals are upstream's own (a Secret's
//! write-only `stringData` is folded into `data`, and a Service's `sessionAffinityConfig` is
//! cleared when `sessionAffinity` is `None`). A value of the wrong JSON type is left alone for
//! [`crate::api::validation`] to report. Applying the defaults twice equals applying them once.
//!
//! Besides the `SetDefaults_*` functions this module does what upstream's decoding does to
//! resource quantities: every quantity is re-emitted in canonical form (`"0.5"` becomes
//! `"500m"`, `1` becomes `"1"`), and quantities in resource lists are rounded up to milli-units,
//! so stored objects read back exactly as they would from kube-apiserver.
//!
//! Also here, because upstream does it before validation and the result is visible to every
//! client: a Namespace gets `status.phase: Active` (upstream's `SetDefaults_NamespaceStatus`;
//! its registry strategy sets the same phase on create) and the
//! `kubernetes.io/metadata.name` label.
//!
//! Not here: anything that needs the store or an allocator (cluster IPs, node ports,
//! `ipFamilies`/`ipFamilyPolicy`, which upstream sets in the Service registry, not in API
//! defaulting), and registry-strategy fields such as a Pod's `status.phase` or `qosClass`, or
//! `metadata.generation`. Feature-gated defaults that are off in Kubernetes 1.33 (pod-level
//! resources, image-volume pull policy) are not applied.

use serde_json::{Map, Value};

use crate::api::validation::parse_quantity;

type Object = Map<String, Value>;

/// Fill in kube-apiserver's defaults for an object of `group`/`kind` (group `""` is the core
/// group), editing `obj` in place. Kinds without defaults, and objects that are not JSON
/// objects, are left as they are.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = ensure_obj(root, "spec") {
                default_pod_spec(spec, Scope::Pod);
            }
        }
        ("", "Namespace") => default_namespace(root),
        ("", "Node") => default_node(root),
        ("", "Service") => default_service(root),
        ("", "Endpoints") => default_endpoints(root),
        ("", "Secret") => default_secret(root),
        ("apps", "Deployment") => default_deployment(root),
        ("apps", "ReplicaSet") => default_replica_set(root),
        ("discovery.k8s.io", "EndpointSlice") => default_endpoint_slice(root),
        (RBAC_GROUP, "RoleBinding" | "ClusterRoleBinding") => default_binding(root),
        (crate::api::manifest_source::GROUP, crate::api::manifest_source::KIND) => {
            crate::api::manifest_source::apply_defaults(root)
        }
        // ConfigMap's only upstream default (`data` = empty map) is invisible on the wire;
        // ServiceAccount, Event, Lease, Role and ClusterRole have none.
        _ => {}
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Upstream `SetDefaults_RoleBinding` / `SetDefaults_ClusterRoleBinding` and
/// `SetDefaults_Subject`: an empty `roleRef.apiGroup` is RBAC's, and a User or Group
/// subject without an `apiGroup` gets RBAC's (a ServiceAccount's stays empty).
fn default_binding(root: &mut Object) {
    // `roleRef` is a Go struct, not a pointer: an absent one decodes as empty and is
    // defaulted all the same.
    if let Some(role_ref) = ensure_obj(root, "roleRef") {
        default_str(role_ref, "apiGroup", RBAC_GROUP);
    }
    for subject in objs_at(root, "subjects") {
        let kind = subject
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if matches!(kind, "User" | "Group") {
            default_str(subject, "apiGroup", RBAC_GROUP);
        }
    }
}

/// Whether a pod spec belongs to a Pod or to a template inside another object: upstream
/// applies `SetDefaults_Pod` (requests from limits, `enableServiceLinks`, host-network ports)
/// only to Pods, so templates stay as written and rollouts are not triggered by defaulting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Pod,
    Template,
}

// ---------------------------------------------------------------------------------------------
// Value helpers. Go decodes both an absent field and `null` to the zero value, so both count as
// "unset"; for Go's non-pointer strings and integers the zero value ("" or 0) counts too.

/// The child object at `key`, created when absent or null; `None` when it holds another type.
fn ensure_obj<'a>(m: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    let slot = m.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The child object at `key` if it is one.
fn obj_at<'a>(m: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    m.get_mut(key)?.as_object_mut()
}

/// Every object element of the array at `key`.
fn objs_at<'a>(m: &'a mut Object, key: &str) -> impl Iterator<Item = &'a mut Object> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Absent or null: a nil pointer in Go.
fn unset(m: &Object, key: &str) -> bool {
    matches!(m.get(key), None | Some(Value::Null))
}

/// Unset or `""`: the zero value of a Go string.
fn empty_str(m: &Object, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Unset or integer 0: the zero value of a Go integer.
fn zero_int(m: &Object, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        _ => false,
    }
}

fn default_str(m: &mut Object, key: &str, value: &str) {
    if empty_str(m, key) {
        m.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

fn default_if_unset(m: &mut Object, key: &str, value: Value) {
    if unset(m, key) {
        m.insert(key.to_owned(), value);
    }
}

/// An integer field as Go would read it: unset is 0, anything but an integer is `None`.
fn int_or_zero(m: &Object, key: &str) -> Option<i64> {
    match m.get(key) {
        None | Some(Value::Null) => Some(0),
        Some(v) => v.as_i64(),
    }
}

// ---------------------------------------------------------------------------------------------
// Quantities.

/// Re-emit a quantity the way kube-apiserver serializes it; `round_milli` applies
/// `SetDefaults_ResourceList`'s round-up to milli-units. Values that do not parse are left for
/// validation to report.
fn canonicalize_quantity(v: &mut Value, round_milli: bool) {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        // Go accepts bare JSON numbers for quantities and emits strings.
        Value::Number(n) => n.to_string(),
        _ => return,
    };
    let Ok(mut q) = parse_quantity(&text) else {
        return;
    };
    if round_milli {
        q.round_up_to_milli();
    }
    *v = Value::String(q.to_string());
}

/// `SetDefaults_ResourceList` on the map at `key`.
fn default_resource_list(m: &mut Object, key: &str) {
    if let Some(list) = obj_at(m, key) {
        for v in list.values_mut() {
            canonicalize_quantity(v, true);
        }
    }
}

/// Limits and requests of a `ResourceRequirements` at `key`.
fn default_resource_requirements(m: &mut Object, key: &str) {
    if let Some(res) = obj_at(m, key) {
        default_resource_list(res, "limits");
        default_resource_list(res, "requests");
    }
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates.

fn default_pod_spec(spec: &mut Object, scope: Scope) {
    if scope == Scope::Pod {
        default_pod_only(spec);
    }
    // SetDefaults_PodSpec.
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_if_unset(spec, "securityContext", Value::Object(Map::new()));
    default_if_unset(spec, "terminationGracePeriodSeconds", Value::from(30));
    default_str(spec, "schedulerName", "default-scheduler");

    for volume in objs_at(spec, "volumes") {
        default_volume(volume);
    }
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for container in objs_at(spec, key) {
            default_container(container);
        }
    }
    default_resource_list(spec, "overhead");
    default_resource_requirements(spec, "resources");
}

/// `SetDefaults_Pod`: the parts that only materialize on Pods.
fn default_pod_only(spec: &mut Object) {
    // Requests default to limits, per container; upstream leaves ephemeral containers alone.
    for key in ["containers", "initContainers"] {
        for container in objs_at(spec, key) {
            let Some(resources) = obj_at(container, "resources") else {
                continue;
            };
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let missing: Vec<(String, Value)> = match resources.get("requests") {
                None | Some(Value::Null) => limits.into_iter().collect(),
                Some(Value::Object(requests)) => limits
                    .into_iter()
                    .filter(|(k, _)| !requests.contains_key(k))
                    .collect(),
                Some(_) => continue,
            };
            // An empty requests map is omitted on the wire upstream; do not add one.
            if missing.is_empty() {
                continue;
            }
            if let Some(requests) = ensure_obj(resources, "requests") {
                requests.extend(missing);
            }
        }
    }

    default_if_unset(spec, "enableServiceLinks", Value::Bool(true));

    // With host networking every container port is also a host port.
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        for key in ["containers", "initContainers"] {
            for container in objs_at(spec, key) {
                for port in objs_at(container, "ports") {
                    if zero_int(port, "hostPort")
                        && let Some(cp) = int_or_zero(port, "containerPort")
                    {
                        port.insert("hostPort".to_owned(), Value::from(cp));
                    }
                }
            }
        }
    }
}

fn default_container(c: &mut Object) {
    if empty_str(c, "imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = default_pull_policy(image);
        c.insert("imagePullPolicy".to_owned(), Value::from(policy));
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for port in objs_at(c, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for env in objs_at(c, "env") {
        if let Some(from) = obj_at(env, "valueFrom") {
            if let Some(field_ref) = obj_at(from, "fieldRef") {
                default_str(field_ref, "apiVersion", "v1");
            }
            default_divisor(from);
        }
    }
    default_resource_requirements(c, "resources");
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = obj_at(c, key) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = obj_at(c, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(http) = obj_at(lifecycle, key).and_then(|h| obj_at(h, "httpGet")) {
                default_http_get(http);
            }
        }
    }
}

fn default_probe(p: &mut Object) {
    // Go's probe fields are plain int32s, so an explicit 0 is defaulted too.
    for (key, value) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        if zero_int(p, key) {
            p.insert(key.to_owned(), Value::from(value));
        }
    }
    if let Some(http) = obj_at(p, "httpGet") {
        default_http_get(http);
    }
    if let Some(grpc) = obj_at(p, "grpc") {
        default_if_unset(grpc, "service", Value::from(""));
    }
}

fn default_http_get(h: &mut Object) {
    default_str(h, "path", "/");
    default_str(h, "scheme", "HTTP");
}

/// A `resourceFieldRef.divisor` is a quantity, so it is re-emitted canonically (not rounded).
fn default_divisor(holder: &mut Object) {
    if let Some(divisor) = obj_at(holder, "resourceFieldRef").and_then(|r| r.get_mut("divisor")) {
        canonicalize_quantity(divisor, false);
    }
}

/// Every volume source field of `core/v1.VolumeSource`; a volume naming none becomes an
/// `emptyDir`.
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

/// 0644, the default file mode of secret, configMap, downwardAPI and projected volumes.
const DEFAULT_MODE: i64 = 0o644;

fn default_volume(v: &mut Object) {
    if VOLUME_SOURCES.iter().all(|k| unset(v, k)) {
        v.insert("emptyDir".to_owned(), Value::Object(Map::new()));
    }
    if let Some(empty_dir) = obj_at(v, "emptyDir")
        && let Some(limit) = empty_dir.get_mut("sizeLimit")
    {
        canonicalize_quantity(limit, false);
    }
    if let Some(host_path) = obj_at(v, "hostPath") {
        // HostPathUnset is the empty string, and it is written out.
        default_if_unset(host_path, "type", Value::from(""));
    }
    for key in ["secret", "configMap"] {
        if let Some(source) = obj_at(v, key) {
            default_if_unset(source, "defaultMode", Value::from(DEFAULT_MODE));
        }
    }
    if let Some(downward) = obj_at(v, "downwardAPI") {
        default_if_unset(downward, "defaultMode", Value::from(DEFAULT_MODE));
        default_downward_items(downward);
    }
    if let Some(projected) = obj_at(v, "projected") {
        default_if_unset(projected, "defaultMode", Value::from(DEFAULT_MODE));
        for source in objs_at(projected, "sources") {
            if let Some(downward) = obj_at(source, "downwardAPI") {
                default_downward_items(downward);
            }
            if let Some(token) = obj_at(source, "serviceAccountToken") {
                default_if_unset(token, "expirationSeconds", Value::from(3600));
            }
        }
    }
    if let Some(iscsi) = obj_at(v, "iscsi") {
        default_str(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = obj_at(v, "rbd") {
        default_str(rbd, "pool", "rbd");
        default_str(rbd, "user", "admin");
        default_str(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(azure) = obj_at(v, "azureDisk") {
        default_if_unset(azure, "cachingMode", Value::from("ReadWrite"));
        default_if_unset(azure, "kind", Value::from("Shared"));
        default_if_unset(azure, "fsType", Value::from("ext4"));
        default_if_unset(azure, "readOnly", Value::Bool(false));
    }
    if let Some(scale_io) = obj_at(v, "scaleIO") {
        default_str(scale_io, "storageMode", "ThinProvisioned");
        default_str(scale_io, "fsType", "xfs");
    }
    if let Some(claim_spec) = obj_at(v, "ephemeral")
        .and_then(|e| obj_at(e, "volumeClaimTemplate"))
        .and_then(|t| obj_at(t, "spec"))
    {
        default_if_unset(claim_spec, "volumeMode", Value::from("Filesystem"));
        default_resource_requirements(claim_spec, "resources");
    }
}

fn default_downward_items(downward: &mut Object) {
    for item in objs_at(downward, "items") {
        if let Some(field_ref) = obj_at(item, "fieldRef") {
            default_str(field_ref, "apiVersion", "v1");
        }
        default_divisor(item);
    }
}

/// `Always` for an image tagged `latest` or carrying neither tag nor digest, `IfNotPresent`
/// otherwise, including for references that do not parse (upstream ignores the parse error
/// here and lets the kubelet report it).
fn default_pull_policy(image: &str) -> &'static str {
    if image_tag(image).as_deref() == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag upstream's `parsers.ParseImageName` reports for `image`: the explicit tag, `latest`
/// when there is neither tag nor digest, `""` with only a digest, `None` when the reference
/// does not parse (docker/distribution's `ParseNormalizedNamed`).
fn image_tag(image: &str) -> Option<String> {
    // A bare 64-hex-digit string is an image ID, not a name.
    if image.len() == 64
        && image
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let (domain, remainder) = split_docker_domain(image);
    let remote_name = remainder.split(':').next().unwrap_or("");
    if remote_name.to_lowercase() != remote_name {
        return None;
    }
    let full = format!("{domain}/{remainder}");
    let (name, tag, digest) = split_reference(&full)?;
    if name.len() > 255 || !valid_repository_name(name) {
        return None;
    }
    if let Some(tag) = tag
        && !valid_tag(tag)
    {
        return None;
    }
    if let Some(digest) = digest
        && !valid_digest(digest)
    {
        return None;
    }
    match (tag, digest) {
        (Some(tag), _) => Some(tag.to_owned()),
        (None, None) => Some("latest".to_owned()),
        (None, Some(_)) => Some(String::new()),
    }
}

/// docker/distribution's `splitDockerDomain`: the registry host, defaulting to Docker Hub.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            let is_host =
                first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first;
            if is_host {
                (first.to_owned(), name[i + 1..].to_owned())
            } else {
                ("docker.io".to_owned(), name.to_owned())
            }
        }
        None => ("docker.io".to_owned(), name.to_owned()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".to_owned();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

/// Split `name[:tag][@digest]`; a `:` before the last `/` belongs to the registry port.
fn split_reference(s: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].find(':') {
        Some(i) => {
            let at = last_slash + i;
            Some((&rest[..at], Some(&rest[at + 1..]), digest))
        }
        None => Some((rest, None, digest)),
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex` with an algorithm Go's image parser has compiled in and the right length of
/// lowercase hex.
fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `[domain[:port]/]path-component(/path-component)*`.
fn valid_repository_name(name: &str) -> bool {
    let components: Vec<&str> = name.split('/').collect();
    let all_paths =
        |parts: &[&str]| !parts.is_empty() && parts.iter().all(|p| valid_path_component(p));
    all_paths(&components)
        || (components.len() > 1 && valid_domain(components[0]) && all_paths(&components[1..]))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        match &s[sep_start..i] {
            "." | "_" | "__" => {}
            sep if sep.bytes().all(|b| b == b'-') => {}
            _ => return false,
        }
    }
}

/// A registry host (DNS name or bracketed IPv6) with an optional numeric port.
fn valid_domain(s: &str) -> bool {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => (&s[..=end], &s[end + 1..]),
            None => return false,
        }
    } else {
        match s.rfind(':') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        }
    };
    let port_ok = port.is_empty()
        || (port.len() > 1
            && port.starts_with(':')
            && port[1..].bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
            })
    };
    port_ok && host_ok
}

// ---------------------------------------------------------------------------------------------
// Other kinds.

fn default_namespace(root: &mut Object) {
    // SetDefaults_Namespace: the name label lets selectors pick namespaces by name. A nameless
    // (generateName) namespace gets it once the server has chosen the name.
    let name = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if let Some(name) = name
        && let Some(labels) = ensure_obj(root, "metadata").and_then(|m| ensure_obj(m, "labels"))
    {
        labels.insert(
            "kubernetes.io/metadata.name".to_owned(),
            Value::String(name),
        );
    }
    if let Some(status) = ensure_obj(root, "status") {
        default_str(status, "phase", "Active");
    }
}

fn default_node(root: &mut Object) {
    let Some(status) = obj_at(root, "status") else {
        return;
    };
    // SetDefaults_NodeStatus: a node that reports only capacity can schedule all of it.
    if unset(status, "allocatable")
        && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
    {
        status.insert("allocatable".to_owned(), capacity);
    }
    default_resource_list(status, "capacity");
    default_resource_list(status, "allocatable");
}

fn default_service(root: &mut Object) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let timeout =
                ensure_obj(spec, "sessionAffinityConfig").and_then(|c| ensure_obj(c, "clientIP"));
            if let Some(client_ip) = timeout {
                // DefaultClientIPServiceAffinitySeconds: three hours.
                default_if_unset(client_ip, "timeoutSeconds", Value::from(10800));
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for port in objs_at(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if target_unset && let Some(p) = int_or_zero(port, "port") {
            port.insert("targetPort".to_owned(), Value::from(p));
        }
    }
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|ips| !ips.is_empty());
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(
        service_type.as_str(),
        "NodePort" | "LoadBalancer" | "ClusterIP"
    ) {
        default_if_unset(spec, "internalTrafficPolicy", Value::from("Cluster"));
    }
    if service_type == "LoadBalancer" {
        default_if_unset(spec, "allocateLoadBalancerNodePorts", Value::Bool(true));
        let ingress = obj_at(root, "status")
            .and_then(|s| obj_at(s, "loadBalancer"))
            .into_iter()
            .flat_map(|lb| objs_at(lb, "ingress"));
        for entry in ingress {
            if !empty_str(entry, "ip") {
                default_if_unset(entry, "ipMode", Value::from("VIP"));
            }
        }
    }
}

fn default_endpoints(root: &mut Object) {
    for subset in objs_at(root, "subsets") {
        for port in objs_at(subset, "ports") {
            default_str(port, "protocol", "TCP");
        }
    }
}

fn default_secret(root: &mut Object) {
    default_str(root, "type", "Opaque");
    fold_string_data(root);
}

/// `stringData` is write-only: upstream's conversion merges it into `data` (base64-encoded,
/// overriding existing keys) and never stores it. Left alone if either field has the wrong
/// shape, so validation can name the problem.
fn fold_string_data(root: &mut Object) {
    let Some(Value::Object(string_data)) = root.get("stringData") else {
        if root.get("stringData") == Some(&Value::Null) {
            root.remove("stringData");
        }
        return;
    };
    if !string_data.values().all(Value::is_string)
        || !matches!(
            root.get("data"),
            None | Some(Value::Null | Value::Object(_))
        )
    {
        return;
    }
    let Some(Value::Object(string_data)) = root.remove("stringData") else {
        return;
    };
    if let Some(data) = ensure_obj(root, "data") {
        for (key, value) in string_data {
            let text = value.as_str().unwrap_or_default();
            data.insert(key, Value::String(base64_encode(text.as_bytes())));
        }
    }
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn default_template(spec: &mut Object) {
    if let Some(pod_spec) = ensure_obj(spec, "template").and_then(|t| ensure_obj(t, "spec")) {
        default_pod_spec(pod_spec, Scope::Template);
    }
}

fn default_deployment(root: &mut Object) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    default_if_unset(spec, "replicas", Value::from(1));
    if let Some(strategy) = ensure_obj(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = ensure_obj(strategy, "rollingUpdate")
        {
            default_if_unset(rolling, "maxUnavailable", Value::from("25%"));
            default_if_unset(rolling, "maxSurge", Value::from("25%"));
        }
    }
    default_if_unset(spec, "revisionHistoryLimit", Value::from(10));
    default_if_unset(spec, "progressDeadlineSeconds", Value::from(600));
    default_template(spec);
}

fn default_replica_set(root: &mut Object) {
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    default_if_unset(spec, "replicas", Value::from(1));
    default_template(spec);
}

fn default_endpoint_slice(root: &mut Object) {
    for port in objs_at(root, "ports") {
        default_if_unset(port, "name", Value::from(""));
        default_if_unset(port, "protocol", Value::from("TCP"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
        apply_defaults(group, kind, &mut obj);
        let once = obj.clone();
        apply_defaults(group, kind, &mut obj);
        assert_eq!(once, obj, "defaulting {kind} twice changed it");
        obj
    }

    #[test]
    fn pod_spec_defaults() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        );
        assert_eq!(
            pod["spec"],
            json!({
                "containers": [{
                    "name": "c",
                    "image": "nginx",
                    "imagePullPolicy": "Always",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "enableServiceLinks": true,
                "dnsPolicy": "ClusterFirst",
                "restartPolicy": "Always",
                "securityContext": {},
                "terminationGracePeriodSeconds": 30,
                "schedulerName": "default-scheduler"
            })
        );
    }

    #[test]
    fn pod_without_spec_gets_one() {
        let pod = defaulted("", "Pod", json!({"metadata": {"name": "p"}}));
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn explicit_values_and_unknown_fields_are_kept() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "futureField": {"x": 1},
                "containers": [{"name": "c", "image": "nginx:1.25", "imagePullPolicy": "Never", "alsoUnknown": true}]
            }}),
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(pod["spec"]["futureField"], json!({"x": 1}));
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(pod["spec"]["containers"][0]["alsoUnknown"], true);
    }

    #[test]
    fn wrong_types_are_left_for_validation() {
        let pod = defaulted("", "Pod", json!({"spec": "nonsense"}));
        assert_eq!(pod["spec"], "nonsense");
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"containers": "x", "volumes": [1, null]}}),
        );
        assert_eq!(pod["spec"]["containers"], "x");
        assert_eq!(pod["spec"]["volumes"], json!([1, null]));
        let mut not_object = json!([1, 2]);
        apply_defaults("", "Pod", &mut not_object);
        assert_eq!(not_object, json!([1, 2]));
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("docker.io/library/nginx:latest", "Always"),
            ("localhost:5000/app", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("registry.example.com:5000/team/app:v2", "IfNotPresent"),
            (
                "nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "IfNotPresent",
            ),
            (
                "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "Always",
            ),
            // Unparseable references: upstream ignores the error and picks IfNotPresent.
            ("", "IfNotPresent"),
            ("Nginx", "IfNotPresent"),
            ("nginx:latest@sha256:short", "IfNotPresent"),
            ("nginx:la test", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), policy, "image {image:?}");
        }
    }

    #[test]
    fn probes_lifecycle_env_and_ports() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"containers": [{
                "name": "c",
                "image": "nginx:1",
                "ports": [{"containerPort": 80}],
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "livenessProbe": {"httpGet": {"port": 80}, "timeoutSeconds": 0},
                "readinessProbe": {"grpc": {"port": 9000}, "periodSeconds": 5},
                "lifecycle": {"preStop": {"httpGet": {"port": "http"}}}
            }]}}),
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["grpc"]["service"], "");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(
            c["lifecycle"]["preStop"]["httpGet"],
            json!({"port": "http", "path": "/", "scheme": "HTTP"})
        );
    }

    #[test]
    fn volumes() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"containers": [], "volumes": [
                {"name": "scratch"},
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
                {"name": "host", "hostPath": {"path": "/var"}},
                {"name": "dw", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "0.5Gi"}}
            ]}}),
        );
        let v = &pod["spec"]["volumes"];
        assert_eq!(v[0]["emptyDir"], json!({}));
        assert_eq!(v[1]["configMap"]["defaultMode"], 420);
        assert_eq!(v[2]["secret"]["defaultMode"], 256);
        assert_eq!(v[3]["hostPath"]["type"], "");
        assert_eq!(v[4]["downwardAPI"]["defaultMode"], 420);
        assert_eq!(
            v[4]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
        assert_eq!(v[5]["projected"]["defaultMode"], 420);
        assert_eq!(
            v[5]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3600
        );
        assert_eq!(v[6]["emptyDir"]["sizeLimit"], "512Mi");
        assert!(v[1].get("emptyDir").is_none());
    }

    #[test]
    fn pod_only_defaults_requests_and_host_ports() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [{
                "name": "c", "image": "x:1",
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": 0.5, "memory": "128Mi"}, "requests": {"cpu": "100m"}}
            }]}}),
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(
            c["resources"]["limits"],
            json!({"cpu": "500m", "memory": "128Mi"})
        );
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "100m", "memory": "128Mi"})
        );
        assert_eq!(c["ports"][0]["hostPort"], 8080);
    }

    #[test]
    fn templates_skip_pod_only_defaults() {
        let deploy = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"template": {"spec": {"hostNetwork": true, "containers": [{
                "name": "c", "image": "x",
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "1"}}
            }]}}}}),
        );
        let spec = &deploy["spec"]["template"]["spec"];
        assert!(spec.get("enableServiceLinks").is_none());
        assert!(spec["containers"][0]["resources"].get("requests").is_none());
        assert!(spec["containers"][0]["ports"][0].get("hostPort").is_none());
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
    }

    #[test]
    fn deployment_defaults() {
        let deploy = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}}),
        );
        let spec = &deploy["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");

        let recreate = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["replicas"], 0);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));

        let partial = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0}}}}),
        );
        assert_eq!(
            partial["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": 0, "maxUnavailable": "25%"})
        );
    }

    #[test]
    fn replica_set_defaults() {
        let rs = defaulted(
            "apps",
            "ReplicaSet",
            json!({"spec": {"template": {"spec": {"containers": []}}}}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(
            rs["spec"]["template"]["spec"]["schedulerName"],
            "default-scheduler"
        );
        assert!(rs["spec"].get("revisionHistoryLimit").is_none());
    }

    #[test]
    fn service_defaults() {
        let svc = defaulted(
            "",
            "Service",
            json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}],
                             "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}}),
        );
        assert_eq!(
            svc["spec"],
            json!({
                "ports": [
                    {"port": 80, "protocol": "TCP", "targetPort": 80},
                    {"port": 443, "targetPort": "https", "protocol": "TCP"}
                ],
                "sessionAffinity": "None",
                "type": "ClusterIP",
                "internalTrafficPolicy": "Cluster"
            })
        );
        // No ipFamilyPolicy/ipFamilies: those come from the allocator, not API defaulting.
        let lb = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": 0}]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "lb.example"}]}}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        assert_eq!(lb["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(lb["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
        assert!(
            lb["status"]["loadBalancer"]["ingress"][1]
                .get("ipMode")
                .is_none()
        );

        let external = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "x.example"}}),
        );
        assert!(external["spec"].get("internalTrafficPolicy").is_none());
        assert!(external["spec"].get("externalTrafficPolicy").is_none());

        let with_ips = defaulted("", "Service", json!({"spec": {"externalIPs": ["1.2.3.4"]}}));
        assert_eq!(with_ips["spec"]["externalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn namespace_defaults() {
        let ns = defaulted(
            "",
            "Namespace",
            json!({"metadata": {"name": "team-a", "labels": {"x": "y"}}}),
        );
        assert_eq!(
            ns["metadata"]["labels"],
            json!({"x": "y", "kubernetes.io/metadata.name": "team-a"})
        );
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        let terminating = defaulted(
            "",
            "Namespace",
            json!({"metadata": {"generateName": "t-"}, "status": {"phase": "Terminating"}}),
        );
        assert_eq!(terminating["status"]["phase"], "Terminating");
        assert!(terminating["metadata"].get("labels").is_none());
    }

    #[test]
    fn secret_defaults() {
        let secret = defaulted(
            "",
            "Secret",
            json!({"data": {"a": "YQ==", "b": "Yg=="}, "stringData": {"b": "hello", "c": ""}}),
        );
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(
            secret["data"],
            json!({"a": "YQ==", "b": "aGVsbG8=", "c": ""})
        );
        assert!(secret.get("stringData").is_none());
        let typed = defaulted("", "Secret", json!({"type": "kubernetes.io/tls"}));
        assert_eq!(typed["type"], "kubernetes.io/tls");
        let bad = defaulted("", "Secret", json!({"stringData": {"x": 1}}));
        assert_eq!(bad["stringData"], json!({"x": 1}));
    }

    #[test]
    fn base64_matches_go() {
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), encoded);
        }
    }

    #[test]
    fn node_defaults() {
        let node = defaulted(
            "",
            "Node",
            json!({"status": {"capacity": {"cpu": "2", "memory": "4096Mi", "pods": 110}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "2", "memory": "4Gi", "pods": "110"})
        );
        assert_eq!(node["status"]["capacity"], node["status"]["allocatable"]);
        let bare = defaulted("", "Node", json!({"metadata": {"name": "n"}}));
        assert_eq!(bare, json!({"metadata": {"name": "n"}}));
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = defaulted(
            "",
            "Endpoints",
            json!({"subsets": [{"ports": [{"port": 80}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        let slice = defaulted(
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}, {"name": "dns", "protocol": "UDP"}]}),
        );
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
        assert_eq!(slice["ports"][1], json!({"name": "dns", "protocol": "UDP"}));
    }

    #[test]
    fn rbac_bindings_default_api_groups() {
        for kind in ["RoleBinding", "ClusterRoleBinding"] {
            let b = defaulted(
                "rbac.authorization.k8s.io",
                kind,
                json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
                    {"kind": "User", "name": "u"},
                    {"kind": "Group", "name": "g", "apiGroup": "example.com"},
                    {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                    {"kind": "Robot", "name": "r"}
                ]}),
            );
            assert_eq!(b["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
            assert_eq!(b["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
            assert_eq!(b["subjects"][1]["apiGroup"], "example.com");
            assert!(b["subjects"][2].get("apiGroup").is_none());
            assert!(b["subjects"][3].get("apiGroup").is_none());
            let bare = defaulted("rbac.authorization.k8s.io", kind, json!({}));
            assert_eq!(
                bare,
                json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io"}})
            );
        }
        let role = json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        for kind in ["Role", "ClusterRole"] {
            assert_eq!(
                defaulted("rbac.authorization.k8s.io", kind, role.clone()),
                role
            );
        }
    }

    #[test]
    fn kinds_without_defaults_are_untouched() {
        for (group, kind) in [
            ("", "ConfigMap"),
            ("", "ServiceAccount"),
            ("", "Event"),
            ("coordination.k8s.io", "Lease"),
        ] {
            let obj = json!({"metadata": {"name": "x"}, "data": {"k": "v"}, "spec": {}});
            assert_eq!(defaulted(group, kind, obj.clone()), obj, "{kind}");
        }
    }

    #[test]
    fn quantities_are_canonical() {
        let pod = defaulted(
            "",
            "Pod",
            json!({"spec": {"overhead": {"cpu": "0.0001"}, "containers": [{"name": "c", "image": "i:1", "resources": {
                "requests": {"cpu": "1000m", "memory": "1.5Gi", "example.com/gpu": 1, "bad": "1x"}
            }}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1536Mi", "example.com/gpu": "1", "bad": "1x"})
        );
        assert_eq!(pod["spec"]["overhead"]["cpu"], "1m");
    }
}

//! Validation: the checks kube-apiserver applies to an object after defaulting and before it
//! is stored (`pkg/apis/core/validation`, `pkg/apis/apps/validation`,
//! `k8s.io/apimachinery/pkg/api/validation` and `k8s.io/apimachinery/pkg/util/validation`),
//! with upstream's field paths and messages, so `kubectl` users see the errors they know.
//!
//! [`validate`] returns every problem, not just the first. It never panics: a field of the
//! wrong JSON type where a rule reads it is reported as [`ErrorType::TypeInvalid`] and the
//! rules depending on it are skipped.
//!
//! Covered: object metadata for every kind (name presence and per-kind format, label and
//! annotation keys and values, annotation size, immutable name/namespace); pod specs in Pods
//! and in Deployment/ReplicaSet templates (containers, names, images, ports, policies,
//! resources, volumes and mounts); Pod updates; Deployment and ReplicaSet specs; Services;
//! ConfigMaps and Secrets; RBAC Roles, ClusterRoles and their bindings
//! (`pkg/apis/rbac/validation`: rules, aggregation selectors, role references and subjects;
//! no escalation checks). Also here: resource quantities ([`parse_quantity`]), which
//! [`crate::api::defaults`] uses to canonicalize them.
//!
//! Not covered (accepted as they come): probes, lifecycle hooks, env/envFrom, security
//! contexts, affinity, topology spread, volume source details, Node, Endpoints,
//! EndpointSlice, Lease, ServiceAccount specs, and status subresources.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

type Object = Map<String, Value>;

// ---------------------------------------------------------------------------------------------
// Field errors (k8s.io/apimachinery/pkg/util/validation/field).

/// Upstream `field.ErrorType`, the ones moor reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    Forbidden,
    TypeInvalid,
    NotFound,
}

impl ErrorType {
    /// Upstream `ErrorType.String()`.
    fn text(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::TooLong => "Too long",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::NotFound => "Not found",
        }
    }
}

/// One problem with one field (upstream `field.Error`). `value` is the offending value as
/// JSON; `None` means upstream omits it from the message.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub path: String,
    pub error_type: ErrorType,
    pub value: Option<Value>,
    pub detail: String,
}

/// Key of the one-entry object that carries a value already rendered the way Go's `%#v`
/// prints it (a struct such as `intstr.IntOrString{...}`), printed verbatim by
/// [`FieldError::message`].
const GO_REPR: &str = "\u{0}go";

fn go_repr(s: String) -> Value {
    let mut m = Map::new();
    m.insert(GO_REPR.to_owned(), Value::String(s));
    Value::Object(m)
}

impl FieldError {
    fn new(
        path: impl Into<String>,
        error_type: ErrorType,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            error_type,
            value,
            detail: detail.into(),
        }
    }

    /// `field.Required`.
    pub fn required(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorType::Required, None, detail)
    }

    /// `field.Invalid`.
    pub fn invalid(
        path: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(path, ErrorType::Invalid, Some(value.into()), detail)
    }

    /// `field.NotSupported`: `supported` is listed in the given order, each quoted.
    pub fn not_supported(
        path: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(path, ErrorType::NotSupported, Some(value.into()), detail)
    }

    /// `field.Duplicate`.
    pub fn duplicate(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(path, ErrorType::Duplicate, Some(value.into()), "")
    }

    /// `field.NotFound`.
    pub fn not_found(path: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(path, ErrorType::NotFound, Some(value.into()), "")
    }

    /// `field.Forbidden`.
    pub fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(path, ErrorType::Forbidden, None, detail)
    }

    /// `field.TooLong`.
    pub fn too_long(path: impl Into<String>, value: impl Into<Value>, max: usize) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::new(
            path,
            ErrorType::TooLong,
            Some(value.into()),
            format!("may not be more than {max} {unit}"),
        )
    }

    /// `field.TypeInvalid`.
    pub fn type_invalid(
        path: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(path, ErrorType::TypeInvalid, Some(value.into()), detail)
    }

    /// The `reason` of the error's cause in a Status (`metav1.CauseType`).
    pub fn reason(&self) -> &'static str {
        match self.error_type {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }

    /// Upstream `field.Error.Error()`: `path: Type: value: detail`.
    pub fn message(&self) -> String {
        let mut s = self.error_type.text().to_owned();
        let shows_value = !matches!(
            self.error_type,
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong
        );
        if shows_value && let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(&go_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        format!("{}: {}", self.path, s)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Go's `strconv.Quote` (`%q`).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.escape_debug().nth(1).is_none() => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// A JSON value the way upstream's error body prints the Go value it decodes to: strings
/// `%q`, numbers and booleans `%v`, string maps `%#v`.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "\"null\"".to_owned(),
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(m) if m.len() == 1 && m.contains_key(GO_REPR) => {
            m[GO_REPR].as_str().unwrap_or_default().to_owned()
        }
        Value::Object(m) if m.values().all(Value::is_string) => go_string_map(Some(m)),
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
            let items: Vec<String> = a
                .iter()
                .map(|s| go_quote(s.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// `%#v` of a `map[string]string` (Go sorts the keys; nil prints as `(nil)`).
fn go_string_map(m: Option<&Object>) -> String {
    let Some(m) = m else {
        return "map[string]string(nil)".to_owned();
    };
    let sorted: BTreeMap<&String, &Value> = m.iter().collect();
    let items: Vec<String> = sorted
        .iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                go_quote(k),
                go_quote(v.as_str().unwrap_or_default())
            )
        })
        .collect();
    format!("map[string]string{{{}}}", items.join(", "))
}

/// `%#v` of a `metav1.LabelSelector`.
fn go_label_selector(sel: &Object) -> String {
    let labels = match sel.get("matchLabels") {
        Some(Value::Object(m)) => go_string_map(Some(m)),
        _ => go_string_map(None),
    };
    let exprs = match sel.get("matchExpressions") {
        Some(Value::Array(a)) => {
            let items: Vec<String> = a
                .iter()
                .map(|e| {
                    let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                    let op = e
                        .get("operator")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let values = match e.get("values") {
                        Some(Value::Array(vs)) => {
                            let q: Vec<String> = vs
                                .iter()
                                .map(|v| go_quote(v.as_str().unwrap_or_default()))
                                .collect();
                            format!("[]string{{{}}}", q.join(", "))
                        }
                        _ => "[]string(nil)".to_owned(),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        go_quote(key),
                        go_quote(op)
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
        _ => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// `%#v` of an `intstr.IntOrString`.
fn go_int_or_string(v: Option<&Value>) -> Value {
    let s = match v {
        Some(Value::String(s)) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
        Some(Value::Number(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_owned(),
    };
    go_repr(s)
}

// ---------------------------------------------------------------------------------------------
// String formats (k8s.io/apimachinery/pkg/util/validation).

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1035_LABEL_MAX: usize = 63;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const MAX_SECRET_SIZE: usize = 1024 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_ERR: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";

/// Upstream `RegexError`, including its doubled space before "or".
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{ex}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` (or with `[a-z]` first when `alpha_first`), anchored.
fn matches_label(s: &str, alpha_first: bool) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            (if alpha_first {
                first.is_ascii_lowercase()
            } else {
                ok(first)
            }) && ok(last)
                && b.iter().all(|c| ok(c) || *c == b'-')
        }
        _ => false,
    }
}

fn matches_subdomain(s: &str) -> bool {
    s.split('.').all(|l| matches_label(l, false))
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, anchored.
fn matches_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Upstream `IsDNS1123Label`: the problems with `s`, empty when it is valid.
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !matches_label(s, false) {
        if matches_subdomain(s) {
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Upstream `IsDNS1123Subdomain`.
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !matches_subdomain(s) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Upstream `IsDNS1035Label`.
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1035_LABEL_MAX {
        errs.push(max_len_error(DNS1035_LABEL_MAX));
    }
    if !matches_label(s, true) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Upstream `IsQualifiedName` (label and annotation keys): the list of problems, empty
/// when valid. Label selectors use it too.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !matches_qualified_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Upstream `IsValidLabelValue`: the list of problems, empty when valid. Label selectors
/// use it too.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errs.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !value.is_empty() && !matches_qualified_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Upstream `IsConfigMapKey` (ConfigMap and Secret keys).
fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if value.is_empty()
        || !value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(regex_error(
            CONFIG_KEY_ERR,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if value == "." {
        errs.push("must not be '.'".to_owned());
    } else if value == ".." {
        errs.push("must not be '..'".to_owned());
    } else if value.starts_with("..") {
        errs.push("must not start with '..'".to_owned());
    }
    errs
}

/// Upstream `IsValidPortName`.
fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

/// Upstream `IsValidPortNum`.
fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_owned()]
    }
}

/// Upstream `IsValidPathSegmentName`.
fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for bad in [".", ".."] {
        if name == bad {
            return vec![format!("may not be '{bad}'")];
        }
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// The name format of a kind: `(name, is_prefix)` → problems. Upstream's `ValidateNameFunc`s
/// ignore a trailing `-` of a `generateName` prefix (`maskTrailingDash`).
fn name_problems(group: &str, kind: &str, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    match (group, kind) {
        ("", "Namespace") => is_dns1123_label(name),
        ("", "Service") => is_dns1035_label(name),
        ("", "Event") | ("events.k8s.io", "Event") => is_valid_path_segment_name(name),
        // Upstream `ValidateRBACName`: `system:...` names need the colon.
        (RBAC_GROUP, "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding") => {
            is_valid_path_segment_name(name)
        }
        _ => is_dns1123_subdomain(name),
    }
}

/// The problems with `name` as the name of a `group`/`kind` object, empty when it is valid:
/// Namespaces are DNS-1123 labels, Services DNS-1035 labels, Events and RBAC objects any path
/// segment, and everything else DNS-1123 subdomains.
pub fn validate_name(group: &str, kind: &str, name: &str) -> Vec<String> {
    name_problems(group, kind, name, false)
}

// ---------------------------------------------------------------------------------------------
// Quantities (k8s.io/apimachinery/pkg/api/resource).

const QUANTITY_FORMAT_ERR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const QUANTITY_NUMERIC_ERR: &str = "unable to parse quantity's numeric part";
const QUANTITY_SUFFIX_ERR: &str = "unable to parse quantity's suffix";
const NANO_PER_UNIT: i128 = 1_000_000_000;
const NANO_PER_MILLI: i128 = 1_000_000;
/// Upstream caps quantities at the largest int64; values beyond it are clamped.
const MAX_NANO: i128 = i64::MAX as i128 * NANO_PER_UNIT;

/// How a quantity was written, which decides how it is printed back (upstream `Format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// `Ki`, `Mi`, ... suffixes.
    BinarySI,
    /// `1e3` style.
    DecimalExponent,
    /// `m`, `k`, `M`, ... suffixes or none.
    DecimalSI,
}

/// A resource quantity: `milli` is its value in thousandths, rounded up (away from zero) like
/// upstream's `MilliValue`. The exact value (to upstream's nano precision) and the format it
/// was written in are kept for printing; equality and ordering compare values only.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    pub milli: i128,
    nano: i128,
    format: QuantityFormat,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nano == other.nano
    }
}
impl Eq for Quantity {}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nano.cmp(&other.nano)
    }
}
impl std::hash::Hash for Quantity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.nano.hash(state);
    }
}

/// `n / d` rounded away from zero (`d > 0`).
fn div_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 { q } else { q + n.signum() }
}

impl Quantity {
    fn from_nano(nano: i128, format: QuantityFormat) -> Self {
        let nano = nano.clamp(-MAX_NANO, MAX_NANO);
        Quantity {
            milli: div_away(nano, NANO_PER_MILLI),
            nano,
            format,
        }
    }

    /// A decimal quantity of `milli` thousandths.
    pub fn from_milli(milli: i128) -> Self {
        Self::from_nano(
            milli.saturating_mul(NANO_PER_MILLI),
            QuantityFormat::DecimalSI,
        )
    }

    /// The format the quantity prints in.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// Upstream `RoundUp(Milli)`: drop precision below a thousandth, rounding away from zero.
    pub fn round_up_to_milli(&mut self) {
        *self = Self::from_nano(self.milli.saturating_mul(NANO_PER_MILLI), self.format);
    }
}

impl fmt::Display for Quantity {
    /// Upstream's canonical form (`Quantity.String()`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nano == 0 {
            return f.write_str("0");
        }
        if self.format == QuantityFormat::BinarySI
            && self.nano.abs() >= 1024 * NANO_PER_UNIT
            && self.nano % NANO_PER_UNIT == 0
        {
            let mut v = self.nano / NANO_PER_UNIT;
            let mut exp = 0;
            while v % 1024 == 0 && exp < 6 {
                v /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return write!(f, "{v}{suffix}");
        }
        let (mut m, mut e) = (self.nano, -9i32);
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        let r = e.rem_euclid(3);
        m *= 10i128.pow(r as u32);
        e -= r;
        let suffix = match (self.format, e) {
            (_, 0) => String::new(),
            (QuantityFormat::DecimalExponent, e) => format!("e{e}"),
            (_, -9) => "n".into(),
            (_, -6) => "u".into(),
            (_, -3) => "m".into(),
            (_, 3) => "k".into(),
            (_, 6) => "M".into(),
            (_, 9) => "G".into(),
            (_, 12) => "T".into(),
            (_, 15) => "P".into(),
            (_, 18) => "E".into(),
            (_, e) => format!("e{e}"),
        };
        write!(f, "{m}{suffix}")
    }
}

/// Parse a quantity with upstream's grammar (`resource.ParseQuantity`): a signed decimal
/// number and an optional suffix (`n u m k M G T P E`, `Ki Mi Gi Ti Pi Ei`, or `e`/`E` and
/// an exponent). Values are kept to nano precision (rounded up beyond it) and capped at the
/// largest int64, as upstream does.
pub fn parse_quantity(s: &str) -> Result<Quantity, String> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(QUANTITY_FORMAT_ERR.to_owned());
    }
    let mut pos = 0;
    let negative = b[0] == b'-';
    if matches!(b[0], b'+' | b'-') {
        pos = 1;
    }
    let whole_start = pos;
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let whole = &s[whole_start..pos];
    let mut frac = "";
    let mut saw_dot = false;
    if pos < b.len() && b[pos] == b'.' {
        saw_dot = true;
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        frac = &s[start..pos];
    }
    if whole.is_empty() && frac.is_empty() {
        return Err(if saw_dot {
            QUANTITY_NUMERIC_ERR
        } else {
            QUANTITY_FORMAT_ERR
        }
        .to_owned());
    }
    let suffix_start = pos;
    while pos < b.len() && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < b.len() && matches!(b[pos], b'+' | b'-') {
        pos += 1;
    }
    while pos < b.len() && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos != b.len() {
        return Err(QUANTITY_FORMAT_ERR.to_owned());
    }
    let suffix = &s[suffix_start..];
    let (dec_exp, bin_exp, format): (i64, u32, QuantityFormat) = match suffix {
        "" => (0, 0, QuantityFormat::DecimalSI),
        "n" => (-9, 0, QuantityFormat::DecimalSI),
        "u" => (-6, 0, QuantityFormat::DecimalSI),
        "m" => (-3, 0, QuantityFormat::DecimalSI),
        "k" => (3, 0, QuantityFormat::DecimalSI),
        "M" => (6, 0, QuantityFormat::DecimalSI),
        "G" => (9, 0, QuantityFormat::DecimalSI),
        "T" => (12, 0, QuantityFormat::DecimalSI),
        "P" => (15, 0, QuantityFormat::DecimalSI),
        "E" => (18, 0, QuantityFormat::DecimalSI),
        "Ki" => (0, 10, QuantityFormat::BinarySI),
        "Mi" => (0, 20, QuantityFormat::BinarySI),
        "Gi" => (0, 30, QuantityFormat::BinarySI),
        "Ti" => (0, 40, QuantityFormat::BinarySI),
        "Pi" => (0, 50, QuantityFormat::BinarySI),
        "Ei" => (0, 60, QuantityFormat::BinarySI),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            match s[1..].parse::<i32>() {
                Ok(e) => (i64::from(e), 0, QuantityFormat::DecimalExponent),
                Err(_) => return Err(QUANTITY_SUFFIX_ERR.to_owned()),
            }
        }
        _ => return Err(QUANTITY_SUFFIX_ERR.to_owned()),
    };

    // mantissa × 10^exp, keeping at most 30 significant digits (the rest only matter for
    // rounding up, recorded in `sticky`).
    let mut mantissa: i128 = 0;
    let mut exp: i64 = dec_exp - frac.len() as i64;
    let mut sticky = false;
    let mut digits = 0;
    for c in whole.bytes().chain(frac.bytes()) {
        let d = i128::from(c - b'0');
        if mantissa == 0 && d == 0 {
            continue;
        }
        if digits < 30 {
            mantissa = mantissa * 10 + d;
            digits += 1;
        } else {
            sticky |= d != 0;
            exp += 1;
        }
    }

    let mut nano = if mantissa == 0 {
        0
    } else {
        let mut v = mantissa;
        let mut overflow = false;
        for _ in 0..bin_exp {
            match v.checked_mul(2) {
                Some(x) if x <= MAX_NANO => v = x,
                _ => {
                    overflow = true;
                    break;
                }
            }
        }
        let e = exp + 9;
        if overflow {
            MAX_NANO
        } else if e >= 0 {
            let mut out = v;
            for _ in 0..e.min(60) {
                out = out.saturating_mul(10);
                if out > MAX_NANO {
                    break;
                }
            }
            out.min(MAX_NANO)
        } else if -e > 38 {
            1
        } else {
            let d = 10i128.pow((-e) as u32);
            let q = v / d;
            if v % d != 0 || sticky { q + 1 } else { q }
        }
    };
    if negative {
        nano = -nano;
    }
    Ok(Quantity::from_nano(nano, format))
}

// ---------------------------------------------------------------------------------------------
// Reading fields. Absent and null are "unset" (Go's zero value); a value of the wrong JSON
// type is reported once, where it is read, and treated as unset.

struct Errs(Vec<FieldError>);

/// Absent, null or `""`: a field whose absence Required reports (not one of the wrong type).
fn blank(m: &Object, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Errs {
    fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    fn wrong_type(&mut self, path: String, v: &Value, want: &str) {
        self.push(FieldError::type_invalid(
            path,
            v.clone(),
            format!("must be of type {want}"),
        ));
    }

    fn str<'a>(&mut self, m: &'a Object, key: &str, path: &str) -> &'a str {
        match m.get(key) {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s,
            Some(v) => {
                self.wrong_type(child(path, key), v, "string");
                ""
            }
        }
    }

    fn obj<'a>(&mut self, m: &'a Object, key: &str, path: &str) -> Option<&'a Object> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o),
            Some(v) => {
                self.wrong_type(child(path, key), v, "object");
                None
            }
        }
    }

    fn arr<'a>(&mut self, m: &'a Object, key: &str, path: &str) -> &'a [Value] {
        match m.get(key) {
            None | Some(Value::Null) => &[],
            Some(Value::Array(a)) => a,
            Some(v) => {
                self.wrong_type(child(path, key), v, "array");
                &[]
            }
        }
    }

    /// The object elements of an array, with their paths.
    fn objs<'a>(&mut self, m: &'a Object, key: &str, path: &str) -> Vec<(String, &'a Object)> {
        let base = child(path, key);
        let mut out = Vec::new();
        for (i, v) in self.arr(m, key, path).iter().enumerate() {
            let p = format!("{base}[{i}]");
            match v {
                Value::Object(o) => out.push((p, o)),
                Value::Null => {}
                other => self.wrong_type(p, other, "object"),
            }
        }
        out
    }

    fn int(&mut self, m: &Object, key: &str, path: &str) -> Option<i64> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(v) => {
                self.wrong_type(child(path, key), v, "integer");
                None
            }
        }
    }

    fn bool(&mut self, m: &Object, key: &str, path: &str) -> bool {
        match m.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.wrong_type(child(path, key), v, "boolean");
                false
            }
        }
    }

    /// A `map[string]string` field; entries with non-string values are reported and skipped.
    fn string_map<'a>(
        &mut self,
        m: &'a Object,
        key: &str,
        path: &str,
    ) -> Option<Vec<(&'a str, &'a str)>> {
        let map = self.obj(m, key, path)?;
        let base = child(path, key);
        let mut out = Vec::new();
        for (k, v) in map {
            match v {
                Value::String(s) => out.push((k.as_str(), s.as_str())),
                other => self.wrong_type(format!("{base}[{k}]"), other, "string"),
            }
        }
        Some(out)
    }

    fn nonnegative(&mut self, m: &Object, key: &str, path: &str) {
        if let Some(v) = self.int(m, key, path)
            && v < 0
        {
            self.push(FieldError::invalid(
                child(path, key),
                v,
                "must be greater than or equal to 0",
            ));
        }
    }

    /// A required string with a fixed set of values (`supported` in upstream's order).
    fn enum_str(&mut self, m: &Object, key: &str, path: &str, supported: &[&str]) {
        let v = self.str(m, key, path);
        if v.is_empty() {
            if matches!(m.get(key), None | Some(Value::Null | Value::String(_))) {
                self.push(FieldError::required(child(path, key), ""));
            }
        } else if !supported.contains(&v) {
            self.push(FieldError::not_supported(child(path, key), v, supported));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Object metadata (ValidateObjectMeta, ValidateObjectMetaUpdate).

fn validate_labels(e: &mut Errs, m: &Object, key: &str, path: &str) {
    let p = child(path, key);
    for (k, v) in e.string_map(m, key, path).unwrap_or_default() {
        for msg in is_qualified_name(k) {
            e.push(FieldError::invalid(p.clone(), k, msg));
        }
        for msg in is_valid_label_value(v) {
            e.push(FieldError::invalid(p.clone(), v, msg));
        }
    }
}

fn validate_annotations(e: &mut Errs, m: &Object, path: &str) {
    let p = child(path, "annotations");
    let Some(entries) = e.string_map(m, "annotations", path) else {
        return;
    };
    let mut size = 0;
    for (k, v) in entries {
        for msg in is_qualified_name(&k.to_lowercase()) {
            e.push(FieldError::invalid(p.clone(), k, msg));
        }
        size += k.len() + v.len();
    }
    if size > TOTAL_ANNOTATION_SIZE_LIMIT {
        e.push(FieldError::too_long(p, "", TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_meta(e: &mut Errs, group: &str, kind: &str, obj: &Object, old: Option<&Object>) {
    let meta = e.obj(obj, "metadata", "").cloned().unwrap_or_default();
    let p = "metadata";
    let generate_name = e.str(&meta, "generateName", p);
    let name = e.str(&meta, "name", p);
    if !generate_name.is_empty() {
        for msg in name_problems(group, kind, generate_name, true) {
            e.push(FieldError::invalid(
                "metadata.generateName",
                generate_name,
                msg,
            ));
        }
    }
    if name.is_empty() {
        if generate_name.is_empty() && blank(&meta, "name") {
            e.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_problems(group, kind, name, false) {
            e.push(FieldError::invalid("metadata.name", name, msg));
        }
    }
    e.str(&meta, "namespace", p);
    validate_labels(e, &meta, "labels", p);
    validate_annotations(e, &meta, p);

    if let Some(old) = old {
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for key in ["name", "namespace"] {
            let new_v = meta.get(key).and_then(Value::as_str).unwrap_or_default();
            let old_v = old_meta
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default();
            if new_v != old_v {
                e.push(FieldError::invalid(
                    format!("metadata.{key}"),
                    new_v,
                    "field is immutable",
                ));
            }
        }
    }
}

/// Upstream `ValidateImmutableField` on a whole JSON subtree (unset equals null).
fn immutable(e: &mut Errs, new: Option<&Value>, old: Option<&Value>, path: &str, shown: Value) {
    let norm = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
    if norm(new) != norm(old) {
        e.push(FieldError::invalid(path, shown, "field is immutable"));
    }
}

// ---------------------------------------------------------------------------------------------
// Pod specs (ValidatePodSpec and the container rules it calls).

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

fn validate_dns1123_label(e: &mut Errs, value: &str, path: &str) {
    for msg in is_dns1123_label(value) {
        e.push(FieldError::invalid(path, value, msg));
    }
}

/// Volumes; returns the names of the valid ones.
fn validate_volumes(e: &mut Errs, spec: &Object, path: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    for (p, vol) in e.objs(spec, "volumes", path) {
        let mut sub = Errs(Vec::new());
        let name = sub.str(vol, "name", &p);
        let name_path = child(&p, "name");
        if name.is_empty() {
            sub.push(FieldError::required(name_path.clone(), ""));
        } else {
            validate_dns1123_label(&mut sub, name, &name_path);
        }
        if names.contains(name) {
            sub.push(FieldError::duplicate(name_path, name));
        }
        if sub.0.is_empty() {
            names.insert(name.to_owned());
        }
        e.0.extend(sub.0);
    }
    names
}

fn validate_container_ports(e: &mut Errs, c: &Object, path: &str) {
    let mut names = HashSet::new();
    for (p, port) in e.objs(c, "ports", path) {
        let name = e.str(port, "name", &p);
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    e.push(FieldError::invalid(child(&p, "name"), name, msg));
                }
            } else if !names.insert(name) {
                e.push(FieldError::duplicate(child(&p, "name"), name));
            }
        }
        match e.int(port, "containerPort", &p) {
            None | Some(0) => {
                if port
                    .get("containerPort")
                    .is_none_or(|v| v.is_null() || v.as_i64() == Some(0))
                {
                    e.push(FieldError::required(child(&p, "containerPort"), ""));
                }
            }
            Some(n) => {
                for msg in is_valid_port_num(n) {
                    e.push(FieldError::invalid(child(&p, "containerPort"), n, msg));
                }
            }
        }
        if let Some(n) = e.int(port, "hostPort", &p).filter(|n| *n != 0) {
            for msg in is_valid_port_num(n) {
                e.push(FieldError::invalid(child(&p, "hostPort"), n, msg));
            }
        }
        e.enum_str(port, "protocol", &p, PROTOCOLS);
    }
}

fn validate_volume_mounts(e: &mut Errs, c: &Object, path: &str, volumes: &HashSet<String>) {
    let mut mount_points = HashSet::new();
    for (p, m) in e.objs(c, "volumeMounts", path) {
        let name = e.str(m, "name", &p);
        if name.is_empty() {
            e.push(FieldError::required(child(&p, "name"), ""));
        }
        if !volumes.contains(name) {
            e.push(FieldError::not_found(child(&p, "name"), name));
        }
        let mount_path = e.str(m, "mountPath", &p);
        if mount_path.is_empty() {
            e.push(FieldError::required(child(&p, "mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            e.push(FieldError::invalid(
                child(&p, "mountPath"),
                mount_path,
                "must be unique",
            ));
        }
    }
}

/// A quantity field value (string or JSON number); `None` after reporting a bad one.
fn read_quantity(e: &mut Errs, v: &Value, path: &str) -> Option<Quantity> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => {
            e.wrong_type(path.to_owned(), other, "string");
            return None;
        }
    };
    match parse_quantity(&text) {
        Ok(q) => Some(q),
        Err(msg) => {
            e.push(FieldError::invalid(path, text, msg));
            None
        }
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn validate_resources(e: &mut Errs, c: &Object, path: &str) {
    let Some(res) = e.obj(c, "resources", path) else {
        return;
    };
    let p = child(path, "resources");
    let lim_path = child(&p, "limits");
    let req_path = child(&p, "requests");
    let read_list = |e: &mut Errs, key: &str, list_path: &str| -> BTreeMap<String, Quantity> {
        let mut out = BTreeMap::new();
        let Some(list) = e.obj(res, key, &p) else {
            return out;
        };
        for (name, v) in list {
            let fp = format!("{list_path}[{name}]");
            if !name.contains('/') {
                let standard = matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                    || name.starts_with("hugepages-");
                if !standard {
                    e.push(FieldError::invalid(
                        fp.clone(),
                        name.as_str(),
                        "must be a standard resource for containers",
                    ));
                }
            }
            if let Some(q) = read_quantity(e, v, &fp) {
                if q.nano < 0 {
                    e.push(FieldError::invalid(
                        fp.clone(),
                        q.to_string(),
                        "must be greater than or equal to 0",
                    ));
                } else if !is_native_resource(name) && q.milli % 1000 != 0 {
                    e.push(FieldError::invalid(
                        fp.clone(),
                        q.to_string(),
                        "must be an integer",
                    ));
                }
                out.insert(name.clone(), q);
            }
        }
        out
    };
    let limits = read_list(e, "limits", &lim_path);
    let requests = read_list(e, "requests", &req_path);
    for (name, req) in &requests {
        let overcommit = is_native_resource(name) && !name.starts_with("hugepages-");
        match limits.get(name) {
            Some(lim) if req != lim && !overcommit => {
                e.push(FieldError::invalid(
                    req_path.clone(),
                    req.to_string(),
                    format!("must be equal to {name} limit of {lim}"),
                ));
            }
            Some(lim) if req > lim => {
                e.push(FieldError::invalid(
                    req_path.clone(),
                    req.to_string(),
                    format!("must be less than or equal to {name} limit of {lim}"),
                ));
            }
            None if !overcommit => {
                e.push(FieldError::required(
                    lim_path.clone(),
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
    }
}

fn validate_container(e: &mut Errs, c: &Object, path: &str, volumes: &HashSet<String>) {
    let name = e.str(c, "name", path);
    if name.is_empty() {
        if blank(c, "name") {
            e.push(FieldError::required(child(path, "name"), ""));
        }
    } else {
        validate_dns1123_label(e, name, &child(path, "name"));
    }
    if e.str(c, "image", path).is_empty() && blank(c, "image") {
        e.push(FieldError::required(child(path, "image"), ""));
    }
    e.enum_str(
        c,
        "terminationMessagePolicy",
        path,
        &["File", "FallbackToLogsOnError"],
    );
    validate_container_ports(e, c, path);
    validate_volume_mounts(e, c, path, volumes);
    e.enum_str(
        c,
        "imagePullPolicy",
        path,
        &["Always", "IfNotPresent", "Never"],
    );
    validate_resources(e, c, path);
}

fn validate_pod_spec(e: &mut Errs, spec: &Object, path: &str) {
    let volumes = validate_volumes(e, spec, path);

    let containers = e.objs(spec, "containers", path);
    let mut names: HashSet<String> = HashSet::new();
    if containers.is_empty()
        && !spec
            .get("containers")
            .is_some_and(|v| !v.is_null() && !v.is_array())
    {
        e.push(FieldError::required(child(path, "containers"), ""));
    }
    for (p, c) in &containers {
        validate_container(e, c, p, &volumes);
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if !names.insert(name.to_owned()) {
            e.push(FieldError::duplicate(child(p, "name"), name));
        }
    }
    for (p, c) in e.objs(spec, "initContainers", path) {
        validate_container(e, c, &p, &volumes);
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if names.contains(name) {
            e.push(FieldError::duplicate(child(&p, "name"), name));
        } else if !name.is_empty() {
            names.insert(name.to_owned());
        }
    }

    e.enum_str(
        spec,
        "restartPolicy",
        path,
        &["Always", "OnFailure", "Never"],
    );
    e.enum_str(
        spec,
        "dnsPolicy",
        path,
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    if spec.get("dnsPolicy").and_then(Value::as_str) == Some("None")
        && e.obj(spec, "dnsConfig", path).is_none()
    {
        e.push(FieldError::required(
            child(path, "dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    e.string_map(spec, "nodeSelector", path);
    e.str(spec, "serviceAccountName", path);
    e.str(spec, "nodeName", path);
    if let Some(v) = e.int(spec, "activeDeadlineSeconds", path)
        && !(1..=i64::from(i32::MAX)).contains(&v)
    {
        e.push(FieldError::invalid(
            child(path, "activeDeadlineSeconds"),
            v,
            format!("must be between 1 and {}, inclusive", i32::MAX),
        ));
    }
    e.int(spec, "terminationGracePeriodSeconds", path);
    e.arr(spec, "tolerations", path);
}

const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// ValidatePodUpdate: only images, activeDeadlineSeconds, added tolerations and the grace
/// period (negative to 1) may change. Setting an unset `nodeName` is let through for moor's
/// binding subresource, which upstream validates separately.
fn validate_pod_update(e: &mut Errs, new: &Object, old: &Object) {
    let empty = Object::new();
    let new_spec = new.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    let old_spec = old.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    if new_spec == old_spec {
        return;
    }
    for key in ["containers", "initContainers"] {
        let n = new_spec
            .get(key)
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let o = old_spec
            .get(key)
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if n != o {
            e.push(FieldError::forbidden(
                format!("spec.{key}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    if let Some(old_ads) = old_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
    {
        match new_spec.get("activeDeadlineSeconds") {
            None | Some(Value::Null) => e.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                Value::Null,
                "must not update from a positive integer to nil value",
            )),
            Some(v) if v.as_i64().is_some_and(|n| n > old_ads) => e.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                v.clone(),
                "must be less than or equal to previous value",
            )),
            _ => {}
        }
    }
    let old_tols = old_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_tols = new_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    for (i, t) in old_tols.iter().enumerate() {
        if !new_tols.iter().any(|n| strip(n) == strip(t)) {
            e.push(FieldError::forbidden(
                format!("spec.tolerations[{i}]"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
        }
    }

    let mut munged = new_spec.clone();
    for key in ["containers", "initContainers"] {
        if let (Some(Value::Array(n)), Some(Value::Array(o))) =
            (munged.get_mut(key), old_spec.get(key))
        {
            for (nc, oc) in n.iter_mut().zip(o) {
                if let (Some(nc), Some(oc)) = (nc.as_object_mut(), oc.as_object()) {
                    match oc.get("image") {
                        Some(img) => nc.insert("image".to_owned(), img.clone()),
                        None => nc.remove("image"),
                    };
                }
            }
        }
    }
    let grace_ok = old_spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g < 0)
        && new_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(1);
    let mut copy_old = vec![
        "activeDeadlineSeconds",
        "tolerations",
        "ephemeralContainers",
        "schedulingGates",
    ];
    if grace_ok {
        copy_old.push("terminationGracePeriodSeconds");
    }
    if old_spec
        .get("nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        copy_old.push("nodeName");
    }
    for key in copy_old {
        match old_spec.get(key) {
            Some(v) => munged.insert(key.to_owned(), v.clone()),
            None => munged.remove(key),
        };
    }
    if &munged != old_spec {
        e.push(FieldError::forbidden(
            "spec",
            format!("pod updates may not change fields other than {POD_UPDATABLE_FIELDS}"),
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors, Deployments and ReplicaSets.

/// ValidateLabelSelector; returns whether the selector is usable for matching.
fn validate_label_selector(e: &mut Errs, sel: &Object, path: &str) -> bool {
    let before = e.0.len();
    validate_labels(e, sel, "matchLabels", path);
    for (p, req) in e.objs(sel, "matchExpressions", path) {
        let op = e.str(req, "operator", &p);
        let values = e.arr(req, "values", &p);
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.push(FieldError::required(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    e.push(FieldError::forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => e.push(FieldError::invalid(
                child(&p, "operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let key = e.str(req, "key", &p);
        for msg in is_qualified_name(key) {
            e.push(FieldError::invalid(child(&p, "key"), key, msg));
        }
        for (i, v) in values.iter().enumerate() {
            match v {
                Value::String(s) => {
                    for msg in is_valid_label_value(s) {
                        e.push(FieldError::invalid(
                            format!("{}[{i}]", child(&p, "values")),
                            s.as_str(),
                            msg,
                        ));
                    }
                }
                other => e.wrong_type(format!("{}[{i}]", child(&p, "values")), other, "string"),
            }
        }
    }
    e.0.len() == before
}

fn selector_matches(sel: &Object, labels: &Object) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_ok = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let exprs_ok = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|r| {
                let key = r.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<&str> = r
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match r
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => label(key).is_some_and(|v| values.contains(&v)),
                    "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                    "Exists" => label(key).is_some(),
                    "DoesNotExist" => label(key).is_none(),
                    _ => false,
                }
            })
        });
    labels_ok && exprs_ok
}

fn selector_is_empty(sel: &Object) -> bool {
    let n = |k: &str| match sel.get(k) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    n("matchLabels") + n("matchExpressions") == 0
}

/// The shared part of ValidateDeploymentSpec and ValidateReplicaSetSpec.
fn validate_replicated_spec(e: &mut Errs, spec: &Object) {
    let p = "spec";
    e.nonnegative(spec, "replicas", p);
    e.nonnegative(spec, "minReadySeconds", p);
    let selector = e.obj(spec, "selector", p);
    let mut usable = None;
    match selector {
        None => {
            if matches!(spec.get("selector"), None | Some(Value::Null)) {
                e.push(FieldError::required("spec.selector", ""));
            }
        }
        Some(sel) => {
            let ok = validate_label_selector(e, sel, "spec.selector");
            if selector_is_empty(sel) {
                e.push(FieldError::invalid(
                    "spec.selector",
                    go_repr(go_label_selector(sel)),
                    "empty selector is invalid for deployment",
                ));
            } else if ok {
                usable = Some(sel);
            }
        }
    }
    let Some(template) = e.obj(spec, "template", p) else {
        if matches!(spec.get("template"), None | Some(Value::Null)) {
            e.push(FieldError::required("spec.template", ""));
        }
        return;
    };
    let tp = "spec.template";
    let tmeta = e.obj(template, "metadata", tp);
    if let Some(sel) = usable {
        let labels = tmeta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        if !selector_matches(sel, labels.unwrap_or(&Object::new())) {
            e.push(FieldError::invalid(
                "spec.template.metadata.labels",
                go_repr(go_string_map(labels)),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(meta) = tmeta {
        validate_labels(e, meta, "labels", "spec.template.metadata");
        validate_annotations(e, meta, "spec.template.metadata");
    }
    let tspec = e.obj(template, "spec", tp).cloned().unwrap_or_default();
    validate_pod_spec(e, &tspec, "spec.template.spec");
    if let Some(policy) = tspec.get("restartPolicy").and_then(Value::as_str)
        && !policy.is_empty()
        && policy != "Always"
    {
        e.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if !matches!(tspec.get("activeDeadlineSeconds"), None | Some(Value::Null)) {
        e.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
}

/// `IntOrString` as upstream's `getIntOrPercentValue` reads it (percent strings without `%`).
fn int_or_percent(v: Option<&Value>) -> Option<i64> {
    match v {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.strip_suffix('%').and_then(|n| n.parse().ok()),
        _ => None,
    }
}

fn validate_int_or_percent(e: &mut Errs, ru: &Object, key: &str, path: &str) {
    let p = child(path, key);
    match ru.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            let digits = s.strip_suffix('%').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                e.push(FieldError::invalid(
                    p,
                    go_int_or_string(ru.get(key)),
                    regex_error(PERCENT_ERR, PERCENT_FMT, &["1%", "93%"]),
                ));
            }
        }
        Some(Value::Number(n)) if n.as_i64().is_some() => {
            if n.as_i64().is_some_and(|n| n < 0) {
                e.push(FieldError::invalid(
                    p,
                    n.as_i64().unwrap_or_default(),
                    "must be greater than or equal to 0",
                ));
            }
        }
        Some(other) => e.wrong_type(p, other, "integer or string"),
    }
}

fn validate_deployment(e: &mut Errs, obj: &Object, old: Option<&Object>) {
    let spec = e.obj(obj, "spec", "").cloned().unwrap_or_default();
    validate_replicated_spec(e, &spec);
    if let Some(strategy) = e.obj(&spec, "strategy", "spec") {
        let sp = "spec.strategy";
        let ty = e.str(strategy, "type", sp);
        let rolling = e.obj(strategy, "rollingUpdate", sp);
        match ty {
            "Recreate" => {
                if rolling.is_some() {
                    e.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => match rolling {
                None => e.push(FieldError::required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                )),
                Some(ru) => {
                    let rp = "spec.strategy.rollingUpdate";
                    validate_int_or_percent(e, ru, "maxUnavailable", rp);
                    validate_int_or_percent(e, ru, "maxSurge", rp);
                    if int_or_percent(ru.get("maxUnavailable")) == Some(0)
                        && int_or_percent(ru.get("maxSurge")) == Some(0)
                    {
                        e.push(FieldError::invalid(
                            "spec.strategy.rollingUpdate.maxUnavailable",
                            go_int_or_string(ru.get("maxUnavailable")),
                            "may not be 0 when `maxSurge` is 0",
                        ));
                    }
                    if matches!(ru.get("maxUnavailable"), Some(Value::String(_)))
                        && int_or_percent(ru.get("maxUnavailable")).is_some_and(|v| v > 100)
                    {
                        e.push(FieldError::invalid(
                            "spec.strategy.rollingUpdate.maxUnavailable",
                            go_int_or_string(ru.get("maxUnavailable")),
                            "must not be greater than 100%",
                        ));
                    }
                }
            },
            other => e.push(FieldError::not_supported(
                "spec.strategy.type",
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    if let Some(r) = e.int(&spec, "revisionHistoryLimit", "spec")
        && r < 0
    {
        e.push(FieldError::invalid(
            "spec.revisionHistoryLimit",
            r,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(pds) = e.int(&spec, "progressDeadlineSeconds", "spec") {
        if pds < 0 {
            e.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than or equal to 0",
            ));
        }
        let mrs = spec
            .get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pds <= mrs {
            e.push(FieldError::invalid(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    validate_selector_update(e, &spec, old);
}

fn validate_selector_update(e: &mut Errs, spec: &Object, old: Option<&Object>) {
    let Some(old) = old else {
        return;
    };
    let new_sel = spec.get("selector");
    let old_sel = old.get("spec").and_then(|s| s.get("selector"));
    let shown = match new_sel.and_then(Value::as_object) {
        Some(sel) => go_repr(go_label_selector(sel)),
        None => Value::Null,
    };
    immutable(e, new_sel, old_sel, "spec.selector", shown);
}

// ---------------------------------------------------------------------------------------------
// Services (ValidateService, ValidateServiceUpdate).

fn validate_service(e: &mut Errs, obj: &Object, old: Option<&Object>) {
    let spec = e.obj(obj, "spec", "").cloned().unwrap_or_default();
    let p = "spec";
    let ty = e.str(&spec, "type", p);
    let cluster_ip = e.str(&spec, "clusterIP", p);
    let headless = cluster_ip == "None";
    let ports = e.objs(&spec, "ports", p);
    if ports.is_empty()
        && !headless
        && ty != "ExternalName"
        && !spec
            .get("ports")
            .is_some_and(|v| !v.is_null() && !v.is_array())
    {
        e.push(FieldError::required("spec.ports", ""));
    }
    if ty == "ExternalName" {
        let name = e.str(&spec, "externalName", p);
        let cname = name.strip_suffix('.').unwrap_or(name);
        if cname.is_empty() {
            e.push(FieldError::required("spec.externalName", ""));
        } else {
            for msg in is_dns1123_subdomain(cname) {
                e.push(FieldError::invalid("spec.externalName", cname, msg));
            }
        }
    }
    match ty {
        "NodePort" | "LoadBalancer" if headless => e.push(FieldError::invalid(
            "spec.clusterIP",
            cluster_ip,
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" if !cluster_ip.is_empty() => e.push(FieldError::forbidden(
            "spec.clusterIP",
            "must be empty for ExternalName services",
        )),
        _ => {}
    }
    if ty != "ExternalName" {
        validate_cluster_ips(e, &spec, cluster_ip);
    }
    let mut names = HashSet::new();
    let mut node_ports = HashSet::new();
    for (pp, port) in &ports {
        let name = e.str(port, "name", pp);
        if ports.len() > 1 && name.is_empty() {
            e.push(FieldError::required(child(pp, "name"), ""));
        } else if !name.is_empty() {
            validate_dns1123_label(e, name, &child(pp, "name"));
            if !names.insert(name) {
                e.push(FieldError::duplicate(child(pp, "name"), name));
            }
        }
        let number = e.int(port, "port", pp).unwrap_or(0);
        for msg in is_valid_port_num(number) {
            e.push(FieldError::invalid(child(pp, "port"), number, msg));
        }
        e.enum_str(port, "protocol", pp, PROTOCOLS);
        match port.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(-1);
                for msg in is_valid_port_num(n) {
                    e.push(FieldError::invalid(child(pp, "targetPort"), n, msg));
                }
            }
            Some(Value::String(s)) => {
                for msg in is_valid_port_name(s) {
                    e.push(FieldError::invalid(
                        child(pp, "targetPort"),
                        s.as_str(),
                        msg,
                    ));
                }
            }
            None | Some(Value::Null) => {}
            Some(other) => e.wrong_type(child(pp, "targetPort"), other, "integer or string"),
        }
        let node_port = e.int(port, "nodePort", pp).unwrap_or(0);
        if node_port != 0 && ty == "ClusterIP" {
            e.push(FieldError::forbidden(
                child(pp, "nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
        if node_port != 0 {
            for msg in is_valid_port_num(node_port) {
                e.push(FieldError::invalid(child(pp, "nodePort"), node_port, msg));
            }
            // One node port may serve a TCP and a UDP port, not two of one protocol.
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            if !node_ports.insert((node_port, protocol)) {
                e.push(FieldError::duplicate(child(pp, "nodePort"), node_port));
            }
        }
    }
    if spec.contains_key("selector") {
        validate_labels(e, &spec, "selector", p);
    }
    let affinity = e.str(&spec, "sessionAffinity", p);
    if affinity.is_empty() {
        e.push(FieldError::required("spec.sessionAffinity", ""));
    } else if !["ClientIP", "None"].contains(&affinity) {
        e.push(FieldError::not_supported(
            "spec.sessionAffinity",
            affinity,
            &["ClientIP", "None"],
        ));
    }
    if ty.is_empty() {
        e.push(FieldError::required("spec.type", ""));
    } else if !["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"].contains(&ty) {
        e.push(FieldError::not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").and_then(Value::as_object);
        let old_type = old_spec
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let old_ip = old_spec
            .and_then(|s| s.get("clusterIP"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        // An empty clusterIP on update means "keep the allocated one" (the registry fills it).
        if ty != "ExternalName"
            && old_type != "ExternalName"
            && !old_ip.is_empty()
            && !cluster_ip.is_empty()
            && cluster_ip != old_ip
        {
            e.push(FieldError::invalid(
                "spec.clusterIP",
                cluster_ip,
                "field is immutable",
            ));
        }
    }
}

/// Upstream's ValidateServiceClusterIPsRelatedFields: clusterIPs mirrors clusterIP (the
/// server fills it in from a clusterIP sent alone, so that is checked as if it had), holds
/// valid addresses or a lone `None`, and the IP family fields hold known values. Whether the
/// addresses are in the service CIDR is the allocator's check.
fn validate_cluster_ips(e: &mut Errs, spec: &Object, cluster_ip: &str) {
    let sent = e.arr(spec, "clusterIPs", "spec");
    let mut ips: Vec<&str> = Vec::new();
    for (i, ip) in sent.iter().enumerate() {
        match ip {
            Value::String(s) => ips.push(s),
            other => e.wrong_type(format!("spec.clusterIPs[{i}]"), other, "string"),
        }
    }
    if ips.is_empty() && !cluster_ip.is_empty() {
        ips.push(cluster_ip);
    }
    let shown = || Value::from(ips.iter().map(|ip| Value::from(*ip)).collect::<Vec<_>>());
    if !cluster_ip.is_empty() {
        if ips[0] != cluster_ip {
            e.push(FieldError::invalid(
                "spec.clusterIPs",
                shown(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        e.push(FieldError::invalid(
            "spec.clusterIPs",
            shown(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                e.push(FieldError::invalid(
                    "spec.clusterIPs",
                    shown(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if ip.parse::<std::net::IpAddr>().is_err() {
            e.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                *ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    if ips.len() > 2 {
        e.push(FieldError::invalid(
            "spec.clusterIPs",
            shown(),
            "may only hold up to 2 values",
        ));
    }
    let mut seen = HashSet::new();
    for (i, family) in e.arr(spec, "ipFamilies", "spec").iter().enumerate() {
        let path = format!("spec.ipFamilies[{i}]");
        let Some(family) = family.as_str() else {
            e.wrong_type(path, family, "string");
            continue;
        };
        if !["IPv4", "IPv6"].contains(&family) {
            e.push(FieldError::not_supported(&path, family, &["IPv4", "IPv6"]));
        }
        if !seen.insert(family) {
            e.push(FieldError::duplicate(path, family));
        }
    }
    let policy = e.str(spec, "ipFamilyPolicy", "spec");
    let policies = ["PreferDualStack", "RequireDualStack", "SingleStack"];
    if !policy.is_empty() && !policies.contains(&policy) {
        e.push(FieldError::not_supported(
            "spec.ipFamilyPolicy",
            policy,
            &policies,
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// ConfigMaps and Secrets.

/// The byte of `s` at which Go's `base64.StdEncoding` decoding fails, if it does.
fn base64_error_at(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut quad = 0; // position within the current group of four
    let mut padding = 0;
    let mut last_data = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\r' || c == b'\n' {
            continue;
        }
        if padding > 0 {
            if c == b'=' && quad == 3 && padding == 1 {
                padding = 2;
                quad = 0;
                continue;
            }
            return Some(i);
        }
        if c == b'=' {
            if quad < 2 {
                return Some(i);
            }
            padding = 1;
            if quad == 3 {
                quad = 0;
                padding = 2;
            } else {
                quad = 3;
            }
            continue;
        }
        if !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/') {
            return Some(i);
        }
        last_data = i;
        quad = (quad + 1) % 4;
    }
    if padding == 1 || quad != 0 {
        return Some(if padding == 1 {
            b.len()
        } else {
            last_data + 1 - quad.min(last_data + 1)
        });
    }
    None
}

fn validate_keys(e: &mut Errs, obj: &Object, key: &str, base64: bool) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut size = 0;
    let Some(map) = e.obj(obj, key, "") else {
        return (keys, size);
    };
    for (k, v) in map {
        let p = format!("{key}[{k}]");
        for msg in is_config_map_key(k) {
            e.push(FieldError::invalid(p.clone(), k.as_str(), msg));
        }
        match v {
            Value::String(s) => {
                size += s.len();
                if base64 && let Some(at) = base64_error_at(s) {
                    e.0.push(FieldError::new(
                        p.clone(),
                        ErrorType::Invalid,
                        None,
                        format!("illegal base64 data at input byte {at}"),
                    ));
                }
            }
            Value::Null => {}
            other => e.wrong_type(p, other, "string"),
        }
        keys.push(k.clone());
    }
    (keys, size)
}

fn validate_config_map(e: &mut Errs, obj: &Object, old: Option<&Object>) {
    let (data, data_size) = validate_keys(e, obj, "data", false);
    let (binary, binary_size) = validate_keys(e, obj, "binaryData", true);
    for k in &data {
        if binary.contains(k) {
            e.push(FieldError::invalid(
                format!("data[{k}]"),
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
    }
    for k in &binary {
        if data.contains(k) {
            e.push(FieldError::invalid(
                format!("binaryData[{k}]"),
                k.as_str(),
                "duplicate of key present in data",
            ));
        }
    }
    if data_size + binary_size > MAX_SECRET_SIZE {
        e.push(FieldError::too_long("", "", MAX_SECRET_SIZE));
    }
    e.bool(obj, "immutable", "");
    immutable_data(e, obj, old, &["data", "binaryData"]);
}

fn validate_secret(e: &mut Errs, obj: &Object, old: Option<&Object>) {
    let (keys, size) = validate_keys(e, obj, "data", true);
    if size > MAX_SECRET_SIZE {
        e.push(FieldError::too_long("data", "", MAX_SECRET_SIZE));
    }
    let has = |k: &str| keys.iter().any(|x| x == k);
    match e.str(obj, "type", "") {
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    e.push(FieldError::required(format!("data[{k}]"), ""));
                }
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            e.push(FieldError::required("data[username]", ""));
            e.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => {
            e.push(FieldError::required("data[ssh-privatekey]", ""));
        }
        _ => {}
    }
    e.bool(obj, "immutable", "");
    if let Some(old) = old {
        let new_type = obj.get("type").cloned().unwrap_or(Value::from(""));
        let old_type = old.get("type").cloned().unwrap_or(Value::from(""));
        if new_type != old_type {
            e.push(FieldError::invalid("type", new_type, "field is immutable"));
        }
    }
    immutable_data(e, obj, old, &["data"]);
}

/// `immutable: true` ConfigMaps and Secrets: neither the flag nor the data may change.
fn immutable_data(e: &mut Errs, obj: &Object, old: Option<&Object>, keys: &[&str]) {
    let Some(old) = old else {
        return;
    };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        e.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    let norm = |m: &Object, k: &str| {
        m.get(k)
            .filter(|v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()))
            .cloned()
    };
    for k in keys {
        if norm(obj, k) != norm(old, k) {
            e.push(FieldError::forbidden(
                *k,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC (pkg/apis/rbac/validation).

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The string elements of the array at `key`; other elements are reported.
fn str_list<'a>(e: &mut Errs, m: &'a Object, key: &str, path: &str) -> Vec<&'a str> {
    let base = child(path, key);
    let mut out = Vec::new();
    for (i, v) in e.arr(m, key, path).iter().enumerate() {
        match v {
            Value::String(s) => out.push(s.as_str()),
            other => e.wrong_type(format!("{base}[{i}]"), other, "string"),
        }
    }
    out
}

/// Upstream `ValidatePolicyRule`; Roles (`namespaced`) may not name non-resource URLs.
fn validate_policy_rule(e: &mut Errs, rule: &Object, namespaced: bool, path: &str) {
    if str_list(e, rule, "verbs", path).is_empty() {
        e.push(FieldError::required(
            child(path, "verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = str_list(e, rule, "nonResourceURLs", path);
    let groups = str_list(e, rule, "apiGroups", path);
    let resources = str_list(e, rule, "resources", path);
    let names = str_list(e, rule, "resourceNames", path);
    if !urls.is_empty() {
        let shown = || Value::from(urls.clone());
        if namespaced {
            e.push(FieldError::invalid(
                child(path, "nonResourceURLs"),
                shown(),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !groups.is_empty() || !resources.is_empty() || !names.is_empty() {
            e.push(FieldError::invalid(
                child(path, "nonResourceURLs"),
                shown(),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if groups.is_empty() {
        e.push(FieldError::required(
            child(path, "apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if resources.is_empty() {
        e.push(FieldError::required(
            child(path, "resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn validate_rules(e: &mut Errs, obj: &Object, namespaced: bool) {
    for (p, rule) in e.objs(obj, "rules", "") {
        validate_policy_rule(e, rule, namespaced, &p);
    }
}

fn validate_cluster_role(e: &mut Errs, obj: &Object) {
    validate_rules(e, obj, false);
    let Some(aggregation) = e.obj(obj, "aggregationRule", "") else {
        return;
    };
    let path = "aggregationRule.clusterRoleSelectors";
    let selectors = e.objs(aggregation, "clusterRoleSelectors", "aggregationRule");
    if selectors.is_empty() {
        e.push(FieldError::required(
            path,
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        ));
    }
    for (p, selector) in selectors {
        validate_label_selector(e, selector, &p);
    }
}

/// Upstream `ValidateRoleBindingSubject`.
fn validate_subject(e: &mut Errs, subject: &Object, namespaced: bool, path: &str) {
    let name = e.str(subject, "name", path);
    let api_group = e.str(subject, "apiGroup", path);
    let namespace = e.str(subject, "namespace", path);
    if name.is_empty() {
        e.push(FieldError::required(child(path, "name"), ""));
    }
    match e.str(subject, "kind", path) {
        "ServiceAccount" => {
            if !name.is_empty() {
                for msg in is_dns1123_subdomain(name) {
                    e.push(FieldError::invalid(child(path, "name"), name, msg));
                }
            }
            if !api_group.is_empty() {
                e.push(FieldError::not_supported(
                    child(path, "apiGroup"),
                    api_group,
                    &[""],
                ));
            }
            if !namespaced && namespace.is_empty() {
                e.push(FieldError::required(child(path, "namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != RBAC_GROUP {
                e.push(FieldError::not_supported(
                    child(path, "apiGroup"),
                    api_group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => e.push(FieldError::not_supported(
            child(path, "kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// Upstream `ValidateRoleBinding` / `ValidateClusterRoleBinding` and their updates: a
/// RoleBinding may name a Role or a ClusterRole, a ClusterRoleBinding only a ClusterRole,
/// and the reference never changes.
fn validate_binding(e: &mut Errs, obj: &Object, old: Option<&Object>, namespaced: bool) {
    let role_ref = e.obj(obj, "roleRef", "").cloned().unwrap_or_default();
    let api_group = e.str(&role_ref, "apiGroup", "roleRef");
    if api_group != RBAC_GROUP {
        e.push(FieldError::not_supported(
            "roleRef.apiGroup",
            api_group,
            &[RBAC_GROUP],
        ));
    }
    let kind = e.str(&role_ref, "kind", "roleRef");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        e.push(FieldError::not_supported("roleRef.kind", kind, kinds));
    }
    let name = e.str(&role_ref, "name", "roleRef");
    if name.is_empty() {
        e.push(FieldError::required("roleRef.name", ""));
    } else {
        for msg in is_valid_path_segment_name(name) {
            e.push(FieldError::invalid("roleRef.name", name, msg));
        }
    }
    for (p, subject) in e.objs(obj, "subjects", "") {
        validate_subject(e, subject, namespaced, &p);
    }
    let Some(old) = old else {
        return;
    };
    let read = |m: &Object, key: &str| -> String {
        m.get("roleRef")
            .and_then(|r| r.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let changed = ["apiGroup", "kind", "name"]
        .iter()
        .any(|k| read(obj, k) != read(old, k));
    if changed {
        let shown = format!(
            "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
            go_quote(api_group),
            go_quote(kind),
            go_quote(name)
        );
        e.push(FieldError::invalid(
            "roleRef",
            go_repr(shown),
            "cannot change roleRef",
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point.

/// Every problem with `obj`, an object of `group`/`kind` after defaulting; `old` is the stored
/// object on update. Empty when the object is valid.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut e = Errs(Vec::new());
    let Some(root) = obj.as_object() else {
        e.wrong_type(String::new(), obj, "object");
        return e.0;
    };
    let old = old.and_then(Value::as_object);
    validate_meta(&mut e, group, kind, root, old);
    match (group, kind) {
        ("", "Pod") => {
            let spec = e.obj(root, "spec", "").cloned().unwrap_or_default();
            validate_pod_spec(&mut e, &spec, "spec");
            if let Some(old) = old {
                validate_pod_update(&mut e, root, old);
            }
        }
        ("apps", "Deployment") => validate_deployment(&mut e, root, old),
        ("apps", "ReplicaSet") => {
            let spec = e.obj(root, "spec", "").cloned().unwrap_or_default();
            validate_replicated_spec(&mut e, &spec);
            validate_selector_update(&mut e, &spec, old);
        }
        ("", "Service") => validate_service(&mut e, root, old),
        ("", "ConfigMap") => validate_config_map(&mut e, root, old),
        ("", "Secret") => validate_secret(&mut e, root, old),
        (RBAC_GROUP, "Role") => validate_rules(&mut e, root, true),
        (RBAC_GROUP, "ClusterRole") => validate_cluster_role(&mut e, root),
        (RBAC_GROUP, "RoleBinding") => validate_binding(&mut e, root, old, true),
        (RBAC_GROUP, "ClusterRoleBinding") => validate_binding(&mut e, root, old, false),
        (crate::api::manifest_source::GROUP, crate::api::manifest_source::KIND) => {
            e.0.extend(crate::api::manifest_source::validate(obj))
        }
        _ => {}
    }
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn messages(group: &str, kind: &str, obj: Value) -> Vec<String> {
        validate(group, kind, &obj, None)
            .iter()
            .map(FieldError::message)
            .collect()
    }

    fn pod(spec: Value) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "spec": spec});
        crate::api::defaults::apply_defaults("", "Pod", &mut p);
        p
    }

    fn rbac(kind: &str, obj: Value) -> Vec<String> {
        messages(RBAC_GROUP, kind, obj)
    }

    #[test]
    fn rbac_roles_need_verbs_groups_and_resources() {
        let ok = json!({"metadata": {"name": "system:reader", "namespace": "ns"}, "rules": [
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}
        ]});
        assert!(rbac("Role", ok.clone()).is_empty());
        assert!(rbac("ClusterRole", ok).is_empty());
        assert_eq!(
            rbac(
                "Role",
                json!({"metadata": {"name": "r"}, "rules": [{}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]})
            ),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[0].resources: Required value: resource rules must supply at least one resource",
                "rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        assert_eq!(
            rbac(
                "ClusterRole",
                json!({"metadata": {"name": "r"}, "rules": [
                    {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
                    {"verbs": ["get"], "nonResourceURLs": ["/x"], "resources": ["pods"]}
                ]})
            ),
            [
                "rules[1].nonResourceURLs: Invalid value: []string{\"/x\"}: rules cannot apply to both regular resources and non-resource URLs"
            ]
        );
        assert_eq!(
            rbac("ClusterRole", json!({"metadata": {"name": "a/b"}})),
            ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
        );
    }

    #[test]
    fn rbac_aggregation_rules_need_valid_selectors() {
        let role = |rule: Value| json!({"metadata": {"name": "agg"}, "aggregationRule": rule});
        assert!(
            rbac(
                "ClusterRole",
                role(json!({"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}))
            )
            .is_empty()
        );
        assert_eq!(
            rbac("ClusterRole", role(json!({}))),
            [
                "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
            ]
        );
        assert_eq!(
            rbac(
                "ClusterRole",
                role(
                    json!({"clusterRoleSelectors": [{"matchExpressions": [{"key": "a", "operator": "Near"}]}]})
                )
            ),
            [
                "aggregationRule.clusterRoleSelectors[0].matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"
            ]
        );
    }

    #[test]
    fn rbac_bindings_check_role_refs_and_subjects() {
        let binding = |role_ref: Value, subjects: Value| {
            let mut b = json!({"metadata": {"name": "b", "namespace": "ns"}, "roleRef": role_ref, "subjects": subjects});
            crate::api::defaults::apply_defaults(RBAC_GROUP, "RoleBinding", &mut b);
            b
        };
        let view = json!({"kind": "ClusterRole", "name": "view"});
        let role = json!({"kind": "Role", "name": "r"});
        let subjects = json!([
            {"kind": "User", "name": "u"},
            {"kind": "Group", "name": "system:authenticated"},
            {"kind": "ServiceAccount", "name": "sa"},
        ]);
        assert!(rbac("RoleBinding", binding(view.clone(), subjects.clone())).is_empty());
        assert!(rbac("RoleBinding", binding(role.clone(), subjects.clone())).is_empty());
        // A ClusterRoleBinding may only grant a ClusterRole, and needs SA namespaces.
        assert_eq!(
            rbac("ClusterRoleBinding", binding(role, subjects)),
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[2].namespace: Required value",
            ]
        );
        assert_eq!(
            rbac("RoleBinding", json!({"metadata": {"name": "b"}})),
            [
                "roleRef.apiGroup: Unsupported value: \"\": supported values: \"rbac.authorization.k8s.io\"",
                "roleRef.kind: Unsupported value: \"\": supported values: \"Role\", \"ClusterRole\"",
                "roleRef.name: Required value",
            ]
        );
        assert_eq!(
            rbac(
                "RoleBinding",
                binding(
                    json!({"kind": "ClusterRole", "name": "view", "apiGroup": "x.io"}),
                    json!([
                        {"kind": "Robot", "name": "r"},
                        {"kind": "User", "name": "", "apiGroup": "x.io"},
                        {"kind": "ServiceAccount", "name": "Bad_Name", "apiGroup": "v1"},
                    ])
                )
            ),
            [
                "roleRef.apiGroup: Unsupported value: \"x.io\": supported values: \"rbac.authorization.k8s.io\"",
                "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
                "subjects[1].name: Required value",
                "subjects[1].apiGroup: Unsupported value: \"x.io\": supported values: \"rbac.authorization.k8s.io\"",
                "subjects[2].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "subjects[2].apiGroup: Unsupported value: \"v1\": supported values: \"\"",
            ]
        );
    }

    #[test]
    fn rbac_role_refs_are_immutable() {
        let b = |name: &str| {
            json!({"metadata": {"name": "b"}, "subjects": [],
                   "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name}})
        };
        for kind in ["RoleBinding", "ClusterRoleBinding"] {
            assert!(validate(RBAC_GROUP, kind, &b("view"), Some(&b("view"))).is_empty());
            let errs: Vec<String> = validate(RBAC_GROUP, kind, &b("edit"), Some(&b("view")))
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(
                errs,
                [
                    "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"
                ]
            );
        }
    }

    #[test]
    fn metadata_rules() {
        assert_eq!(
            messages("", "ConfigMap", json!({"metadata": {}})),
            ["metadata.name: Required value: name or generateName is required"]
        );
        assert!(messages("", "ConfigMap", json!({"metadata": {"generateName": "x-"}})).is_empty());
        assert_eq!(
            messages("", "Namespace", json!({"metadata": {"name": "a.b"}})),
            ["metadata.name: Invalid value: \"a.b\": must not contain dots"]
        );
        assert_eq!(
            messages(
                "",
                "Service",
                json!({"metadata": {"name": "1a"}, "spec": {"type": "ClusterIP", "sessionAffinity": "None", "ports": [{"port": 80, "protocol": "TCP"}]}})
            ),
            [
                "metadata.name: Invalid value: \"1a\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        assert_eq!(
            validate_name("", "ConfigMap", "Bad"),
            [
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert!(validate_name("", "Event", "Pod.x_Y").is_empty());
        assert_eq!(validate_name("", "Event", ".."), ["may not be '..'"]);
        let m = messages(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "labels": {"a/b/c": "x", "k": "-bad"}}}),
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[0].starts_with(
                "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of"
            ),
            "{m:?}"
        );
        assert!(
            m[1].starts_with(
                "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string"
            ),
            "{m:?}"
        );
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        assert_eq!(
            messages(
                "",
                "ConfigMap",
                json!({"metadata": {"name": "c", "annotations": {"a": big}}})
            ),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
        let old = json!({"metadata": {"name": "c", "namespace": "a"}});
        let new = json!({"metadata": {"name": "d", "namespace": "a"}});
        let errs: Vec<String> = validate("", "ConfigMap", &new, Some(&old))
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            errs,
            ["metadata.name: Invalid value: \"d\": field is immutable"]
        );
    }

    #[test]
    fn pod_rules() {
        assert_eq!(
            messages("", "Pod", pod(json!({}))),
            ["spec.containers: Required value"]
        );
        let m = messages(
            "",
            "Pod",
            pod(json!({
                "restartPolicy": "Sometimes",
                "volumes": [{"name": "v"}],
                "containers": [
                    {"name": "c", "image": "i", "ports": [{"containerPort": 70000}], "volumeMounts": [{"name": "x", "mountPath": "/x"}],
                     "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}},
                    {"name": "c"}
                ],
                "initContainers": [{"name": "c", "image": "i", "imagePullPolicy": "Sometimes"}]
            })),
        );
        assert_eq!(
            m,
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].volumeMounts[0].name: Not found: \"x\"",
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
                "spec.containers[1].image: Required value",
                "spec.containers[1].name: Duplicate value: \"c\"",
                "spec.initContainers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.initContainers[0].name: Duplicate value: \"c\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
        let m = messages(
            "",
            "Pod",
            pod(
                json!({"containers": [{"name": "C_1", "image": "i", "ports": [{"containerPort": 80, "protocol": "HTTP"}]}]}),
            ),
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[0].starts_with(
                "spec.containers[0].name: Invalid value: \"C_1\": a lowercase RFC 1123 label"
            ),
            "{m:?}"
        );
        assert_eq!(
            m[1],
            "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        );
    }

    #[test]
    fn pod_updates() {
        let old = pod(json!({"containers": [{"name": "c", "image": "a"}]}));
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("b");
        new["spec"]["activeDeadlineSeconds"] = json!(10);
        assert!(validate("", "Pod", &new, Some(&old)).is_empty());
        new["spec"]["containers"][0]["args"] = json!(["x"]);
        let errs = validate("", "Pod", &new, Some(&old));
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].message(),
            format!(
                "spec: Forbidden: pod updates may not change fields other than {POD_UPDATABLE_FIELDS}"
            )
        );
        let mut bound = old.clone();
        bound["spec"]["nodeName"] = json!("n1");
        assert!(validate("", "Pod", &bound, Some(&old)).is_empty());
    }

    fn deployment(spec: Value) -> Value {
        let mut d = json!({"metadata": {"name": "d"}, "spec": spec});
        crate::api::defaults::apply_defaults("apps", "Deployment", &mut d);
        d
    }

    #[test]
    fn deployment_rules() {
        let template = json!({"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let m = messages(
            "apps",
            "Deployment",
            deployment(
                json!({"replicas": -1, "selector": {"matchLabels": {"app": "x"}}, "template": template,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}),
            ),
        );
        assert_eq!(
            m,
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
            ]
        );
        let m = messages(
            "apps",
            "Deployment",
            deployment(
                json!({"template": template, "strategy": {"type": "Recreate", "rollingUpdate": {}}}),
            ),
        );
        assert_eq!(
            m,
            [
                "spec.selector: Required value",
                "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
            ]
        );
        let ok =
            deployment(json!({"selector": {"matchLabels": {"app": "y"}}, "template": template}));
        assert!(validate("apps", "Deployment", &ok, None).is_empty());
        let mut moved = ok.clone();
        moved["spec"]["selector"]["matchLabels"]["app"] = json!("z");
        moved["spec"]["template"]["metadata"]["labels"]["app"] = json!("z");
        let errs = validate("apps", "Deployment", &moved, Some(&ok));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message().starts_with("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"z\"}"));
        assert!(errs[0].message().ends_with(": field is immutable"));
        let mut rs =
            json!({"metadata": {"name": "r"}, "spec": {"selector": {}, "template": template}});
        crate::api::defaults::apply_defaults("apps", "ReplicaSet", &mut rs);
        assert_eq!(
            messages("apps", "ReplicaSet", rs),
            [
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
    }

    #[test]
    fn service_rules() {
        let svc = |spec: Value| {
            let mut s = json!({"metadata": {"name": "s"}, "spec": spec});
            crate::api::defaults::apply_defaults("", "Service", &mut s);
            s
        };
        assert_eq!(
            messages("", "Service", svc(json!({}))),
            ["spec.ports: Required value"]
        );
        assert!(messages("", "Service", svc(json!({"clusterIP": "None"}))).is_empty());
        let m = messages(
            "",
            "Service",
            svc(
                json!({"type": "Weird", "ports": [{"port": 0, "nodePort": 30000}, {"name": "a", "port": 81}]}),
            ),
        );
        assert_eq!(
            m,
            [
                "spec.ports[0].name: Required value",
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.type: Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ],
        );
        let old = svc(json!({"clusterIP": "10.0.0.1", "ports": [{"port": 80}]}));
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.0.0.2");
        let errs: Vec<String> = validate("", "Service", &new, Some(&old))
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            errs,
            ["spec.clusterIP: Invalid value: \"10.0.0.2\": field is immutable"]
        );
    }

    #[test]
    fn service_cluster_ip_and_node_port_rules() {
        let svc = |spec: Value| {
            let mut s = json!({"metadata": {"name": "s"}, "spec": spec});
            crate::api::defaults::apply_defaults("", "Service", &mut s);
            s
        };
        let ports = json!([{"port": 80}]);
        assert!(
            messages(
                "",
                "Service",
                svc(json!({"clusterIP": "10.43.0.5", "ports": ports}))
            )
            .is_empty()
        );
        assert!(
            messages(
                "",
                "Service",
                svc(json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "ports": ports}))
            )
            .is_empty()
        );
        assert_eq!(
            messages(
                "",
                "Service",
                svc(json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.6"], "ports": ports}))
            ),
            [
                "spec.clusterIPs: Invalid value: []string{\"10.43.0.6\"}: first value must match `clusterIP`"
            ]
        );
        assert_eq!(
            messages(
                "",
                "Service",
                svc(json!({"clusterIPs": ["10.43.0.6"], "ports": ports}))
            ),
            [
                "spec.clusterIPs: Invalid value: []string{\"10.43.0.6\"}: must be empty when `clusterIP` is not specified"
            ]
        );
        assert_eq!(
            messages(
                "",
                "Service",
                svc(json!({"clusterIP": "10.43.0.300", "ports": ports}))
            ),
            [
                "spec.clusterIPs[0]: Invalid value: \"10.43.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
            ]
        );
        assert_eq!(
            messages(
                "",
                "Service",
                svc(json!({"type": "NodePort", "clusterIP": "None", "ports": ports}))
            ),
            [
                "spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services"
            ]
        );
        assert_eq!(
            messages(
                "",
                "Service",
                svc(
                    json!({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "10.43.0.5"})
                )
            ),
            ["spec.clusterIP: Forbidden: must be empty for ExternalName services"]
        );
        assert_eq!(
            messages(
                "",
                "Service",
                svc(
                    json!({"ipFamilies": ["IPv4", "IPv4", "IPv5"], "ipFamilyPolicy": "Any", "ports": ports})
                )
            ),
            [
                "spec.ipFamilies[1]: Duplicate value: \"IPv4\"",
                "spec.ipFamilies[2]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"",
                "spec.ipFamilyPolicy: Unsupported value: \"Any\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\"",
            ]
        );
        assert_eq!(
            messages(
                "",
                "Service",
                svc(json!({"type": "NodePort", "ports": [
                    {"name": "a", "port": 53, "protocol": "UDP", "nodePort": 30053},
                    {"name": "b", "port": 53, "protocol": "TCP", "nodePort": 30053},
                    {"name": "c", "port": 54, "protocol": "TCP", "nodePort": 30053},
                    {"name": "d", "port": 55, "nodePort": 70000},
                ]}))
            ),
            [
                "spec.ports[2].nodePort: Duplicate value: 30053",
                "spec.ports[3].nodePort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn config_map_and_secret_rules() {
        assert_eq!(
            messages(
                "",
                "ConfigMap",
                json!({"metadata": {"name": "c"}, "data": {"a b": "x", "k": "1"}, "binaryData": {"k": "MQ=="}})
            ),
            [
                "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "data[k]: Invalid value: \"k\": duplicate of key present in binaryData",
                "binaryData[k]: Invalid value: \"k\": duplicate of key present in data",
            ]
        );
        assert_eq!(
            messages(
                "",
                "Secret",
                json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "!!", "ok": "Zm9v"}})
            ),
            [
                "data[tls.crt]: Invalid value: illegal base64 data at input byte 0",
                "data[tls.key]: Required value"
            ]
        );
        for good in ["", "Zg==", "Zm8=", "Zm9v", "Zm9v\nYg=="] {
            assert_eq!(base64_error_at(good), None, "{good}");
        }
        for bad in ["Zg", "Z===", "Zg==Zg==", "Zm9v!"] {
            assert!(base64_error_at(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn type_errors_are_reported() {
        let m = messages(
            "",
            "Pod",
            json!({"metadata": {"name": 5, "labels": []}, "spec": {"containers": [{"name": "c", "image": 1, "ports": "x"}]}}),
        );
        assert!(
            m.contains(&"metadata.name: Invalid value: 5: must be of type string".to_owned()),
            "{m:?}"
        );
        assert!(
            m.contains(&"metadata.labels: Invalid value: []: must be of type object".to_owned()),
            "{m:?}"
        );
        assert!(
            m.contains(
                &"spec.containers[0].image: Invalid value: 1: must be of type string".to_owned()
            ),
            "{m:?}"
        );
        assert!(
            m.contains(
                &"spec.containers[0].ports: Invalid value: \"x\": must be of type array".to_owned()
            ),
            "{m:?}"
        );
        assert_eq!(
            validate("", "Pod", &json!("x"), None)[0].error_type,
            ErrorType::TypeInvalid
        );
        assert_eq!(
            validate("", "Pod", &json!({}), None)[0].reason(),
            "FieldValueRequired"
        );
    }

    #[test]
    fn quantities() {
        for (input, canonical, milli) in [
            ("100m", "100m", 100),
            ("1", "1", 1000),
            ("0.5", "500m", 500),
            ("1Gi", "1Gi", 1_073_741_824_000),
            ("512Mi", "512Mi", 536_870_912_000),
            ("1.5Gi", "1536Mi", 1_610_612_736_000),
            ("0.5Ki", "512", 512_000),
            ("1k", "1k", 1_000_000),
            ("1500", "1500", 1_500_000),
            ("1M", "1M", 1_000_000_000),
            ("1e3", "1e3", 1_000_000),
            ("1E3", "1e3", 1_000_000),
            ("2E", "2E", 2_000_000_000_000_000_000_000),
            ("-1", "-1", -1000),
            ("1n", "1n", 1),
            ("0.0001", "100u", 1),
            ("+.5", "500m", 500),
            ("0", "0", 0),
        ] {
            let q = parse_quantity(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (q.to_string(), q.milli),
                (canonical.to_owned(), milli),
                "{input}"
            );
        }
        let mut q = parse_quantity("0.0001").unwrap();
        q.round_up_to_milli();
        assert_eq!(q.to_string(), "1m");
        assert_eq!(parse_quantity("1Gi"), parse_quantity("1073741824"));
        assert!(parse_quantity("1") < parse_quantity("1001m"));
        assert_eq!(
            parse_quantity("9Ei").unwrap().to_string(),
            "9223372036854775807"
        );
        assert_eq!(
            parse_quantity("1e1000").unwrap().milli,
            i64::MAX as i128 * 1000
        );
        for bad in ["", "x", "1x", "1.2.3", "--1", "1e", "1Ki3", "1 m"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_quantity("abc").unwrap_err(), QUANTITY_FORMAT_ERR);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-zA-Z0-9./=-]{0,8}".prop_map(Value::from),
            prop::sample::select(vec![
                "name",
                "image",
                "ports",
                "containers",
                "spec",
                "0",
                "-1",
                "1Gi",
                "Always",
                "None",
                "c"
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let keys = prop::sample::select(vec![
                "metadata",
                "name",
                "generateName",
                "labels",
                "annotations",
                "spec",
                "containers",
                "initContainers",
                "image",
                "ports",
                "containerPort",
                "protocol",
                "volumes",
                "volumeMounts",
                "resources",
                "limits",
                "requests",
                "cpu",
                "selector",
                "matchLabels",
                "matchExpressions",
                "operator",
                "values",
                "key",
                "template",
                "strategy",
                "type",
                "rollingUpdate",
                "maxSurge",
                "maxUnavailable",
                "replicas",
                "data",
                "binaryData",
                "clusterIP",
                "port",
                "targetPort",
                "nodePort",
                "tolerations",
                "restartPolicy",
                "immutable",
                "x",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((keys, inner), 0..6).prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics(obj in arb_json(), old in arb_json()) {
            for (group, kind) in [("", "Pod"), ("apps", "Deployment"), ("apps", "ReplicaSet"), ("", "Service"), ("", "ConfigMap"),
                ("", "Secret"), ("", "Namespace"), ("", "Event"), ("", "Node")] {
                let mut defaulted = obj.clone();
                crate::api::defaults::apply_defaults(group, kind, &mut defaulted);
                for errs in [validate(group, kind, &obj, None), validate(group, kind, &defaulted, Some(&old))] {
                    for e in errs {
                        let _ = (e.message(), e.reason());
                    }
                }
            }
        }

        #[test]
        fn quantity_parse_never_panics(s in "[-+]?[0-9.]{0,40}[eEinumkKMGTP]{0,2}[-+]?[0-9]{0,5}") {
            if let Ok(q) = parse_quantity(&s) {
                let again = parse_quantity(&q.to_string()).expect("canonical form parses");
                prop_assert_eq!(again, q);
            }
        }
    }
}

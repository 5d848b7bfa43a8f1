//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! into the JSON form moor stores and serves.
//!
//! client-go (and so `kubectl create namespace|configmap|secret|deployment|...`) encodes
//! built-in kinds as protobuf and does not retry with JSON after a 415, so the server must
//! read them. This module owns only the translation of one body into one JSON object; it
//! must not touch storage, defaulting or validation, which run on the JSON afterwards
//! exactly as for a JSON body.
//!
//! The wire format is the one written by k8s.io/apimachinery's protobuf serializer: the
//! 4-byte magic `k8s\0`, then a `runtime.Unknown` message whose `typeMeta` names the
//! apiVersion/kind and whose `raw` holds the object's own message.
//!
//! The object is walked generically, field by field, against `Message` tables generated
//! from the prost definitions of the `k8s-pb` crate (field numbers and wire types) with the JSON
//! names taken from `k8s-openapi` (the Go json tags). The tests in
//! `tests/protobuf_decode.rs` encode objects with `k8s-pb`/prost and check the JSON against
//! `k8s-openapi`'s serde for every supported kind, so a wrong number, name or shape in the
//! fields those objects use fails there.
//!
//! Kubernetes JSON conventions, which are not proto3 JSON:
//! - int64 as a JSON number; `[]byte` as standard base64; maps as objects;
//! - `metav1.Time` as RFC 3339 seconds (`2026-01-02T03:04:05Z`; Go drops the nanos on
//!   decode), `MicroTime` with exactly six fractional digits, a zero time (empty message)
//!   omitted;
//! - `resource.Quantity` as its string, `IntOrString` as a JSON int or string,
//!   `FieldsV1` as the JSON it carries;
//! - Go-embedded structs (`VolumeSource` in `Volume`, `ProbeHandler` in `Probe`,
//!   `LocalObjectReference` in selectors, ...) are nested messages on the wire but flattened
//!   into their parent in JSON;
//! - Go's generated marshaller writes every non-pointer scalar, even when zero, and
//!   `encoding/json` then drops those zeros (`omitempty`). So a zero scalar is omitted,
//!   except for fields that are Go pointers (an explicit `replicas: 0` or
//!   `automountServiceAccountToken: false` means something) and required fields (no
//!   `omitempty` in Go), which keep it. Empty repeated fields and maps are absent.
//!
//! Unknown field numbers are skipped, as Go does; a wrong wire type, a truncated or
//! overlong field, invalid UTF-8 or an out-of-range time is an error naming the field path.

use serde_json::{Map, Number, Value};

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix every Kubernetes protobuf body starts with.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be decoded. Every message says what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error(
        "request body is not Kubernetes protobuf: it does not start with the 4-byte prefix \"k8s\\0\""
    )]
    MissingMagic,
    /// The `runtime.Unknown` envelope names a different kind than the URL.
    #[error("protobuf body holds a {found}, but this URL takes a {expected}")]
    KindMismatch {
        /// `apiVersion/kind` the URL expects, e.g. `v1/Namespace`.
        expected: String,
        /// `apiVersion/kind` found in the envelope.
        found: String,
    },
    /// The kind has no protobuf decoding table (custom resources, kinds moor does not serve).
    #[error("protobuf bodies are not supported for {api_version} {kind}; send application/json")]
    UnsupportedKind {
        /// The apiVersion asked for.
        api_version: String,
        /// The kind asked for.
        kind: String,
    },
    /// The envelope says the object is compressed or otherwise encoded.
    #[error("protobuf envelope has contentEncoding {0:?}; only unencoded objects are supported")]
    UnsupportedEncoding(String),
    /// The bytes do not follow the protobuf wire format or the kind's schema.
    #[error("malformed protobuf {kind} at {at}: {reason}")]
    Malformed {
        /// The kind being decoded, or `envelope` for the `runtime.Unknown` wrapper.
        kind: String,
        /// JSON field path of the offending field, e.g. `spec.containers[0].ports[1]`.
        at: String,
        /// What is wrong.
        reason: String,
    },
}

/// Whether [`decode`] has a table for this apiVersion and kind.
pub fn is_supported(api_version: &str, kind: &str) -> bool {
    root(api_version, kind).is_some()
}

/// Decode a Kubernetes protobuf-encoded object (the 4-byte magic "k8s\0" then a
/// runtime.Unknown envelope carrying apiVersion/kind and the raw message) into its
/// Kubernetes JSON form. `api_version` and `kind` are the ones the URL names, e.g.
/// ("v1", "Namespace"); a body of another kind is a [`ProtobufError::KindMismatch`].
///
/// The result starts with `apiVersion` and `kind` (taken from the envelope, or from the
/// arguments when the envelope leaves them empty). `DeleteOptions` is registered in every
/// group version, and client-go sends it in the resource's own (e.g. `apps/v1`), so for
/// that kind any apiVersion of version `v1` is accepted and kept.
pub fn decode(body: &[u8], api_version: &str, kind: &str) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let envelope = Envelope::parse(rest)?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding(
            envelope.content_encoding,
        ));
    }
    let found_version = if envelope.api_version.is_empty() {
        api_version
    } else {
        &envelope.api_version
    };
    let found_kind = if envelope.kind.is_empty() {
        kind
    } else {
        &envelope.kind
    };
    let matches = found_kind == kind
        && (found_version == api_version
            || (kind == "DeleteOptions" && found_version.rsplit('/').next() == Some("v1")));
    if !matches {
        return Err(ProtobufError::KindMismatch {
            expected: format!("{api_version}/{kind}"),
            found: format!("{found_version}/{found_kind}"),
        });
    }
    let msg = root(found_version, found_kind).ok_or_else(|| ProtobufError::UnsupportedKind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    })?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(found_version.to_owned()));
    out.insert("kind".into(), Value::String(found_kind.to_owned()));
    decode_msg(msg, envelope.raw, &mut out, &Path::ROOT).map_err(|e| e.into_error(found_kind))?;
    Ok(Value::Object(out))
}

/// The table for a top-level kind.
fn root(api_version: &str, kind: &str) -> Option<&'static Message> {
    let msg = match (api_version, kind) {
        ("v1", "Namespace") => &tables::CORE_V1_NAMESPACE,
        ("v1", "Pod") => &tables::CORE_V1_POD,
        ("v1", "Node") => &tables::CORE_V1_NODE,
        ("v1", "Service") => &tables::CORE_V1_SERVICE,
        ("v1", "Endpoints") => &tables::CORE_V1_ENDPOINTS,
        ("v1", "ConfigMap") => &tables::CORE_V1_CONFIG_MAP,
        ("v1", "Secret") => &tables::CORE_V1_SECRET,
        ("v1", "ServiceAccount") => &tables::CORE_V1_SERVICE_ACCOUNT,
        ("v1", "Event") => &tables::CORE_V1_EVENT,
        ("v1", "Binding") => &tables::CORE_V1_BINDING,
        ("apps/v1", "Deployment") => &tables::APPS_V1_DEPLOYMENT,
        ("apps/v1", "ReplicaSet") => &tables::APPS_V1_REPLICA_SET,
        ("coordination.k8s.io/v1", "Lease") => &tables::COORDINATION_V1_LEASE,
        ("discovery.k8s.io/v1", "EndpointSlice") => &tables::DISCOVERY_V1_ENDPOINT_SLICE,
        ("autoscaling/v1", "Scale") => &tables::AUTOSCALING_V1_SCALE,
        ("rbac.authorization.k8s.io/v1", "Role") => &tables::RBAC_V1_ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => &tables::RBAC_V1_CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => &tables::RBAC_V1_ROLE_BINDING,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            &tables::RBAC_V1_CLUSTER_ROLE_BINDING
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            &tables::AUTHORIZATION_V1_SELF_SUBJECT_ACCESS_REVIEW
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            &tables::AUTHORIZATION_V1_SELF_SUBJECT_RULES_REVIEW
        }
        (v, "DeleteOptions") if v.rsplit('/').next() == Some("v1") => {
            &tables::META_V1_DELETE_OPTIONS
        }
        _ => return None,
    };
    Some(msg)
}

/// The `runtime.Unknown` wrapper around the object.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, ProtobufError> {
        let fail = |e: Fault| e.into_error("envelope");
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let mut r = Reader::new(buf);
        while let Some((tag, wire)) = r.key(&Path::ROOT).map_err(fail)? {
            match tag {
                1 => {
                    let at = Path::ROOT.field("typeMeta");
                    let mut tm = Reader::new(r.bytes(wire, &at).map_err(fail)?);
                    while let Some((tag, wire)) = tm.key(&at).map_err(fail)? {
                        match tag {
                            1 => {
                                env.api_version =
                                    tm.string(wire, &at.field("apiVersion")).map_err(fail)?
                            }
                            2 => env.kind = tm.string(wire, &at.field("kind")).map_err(fail)?,
                            _ => tm.skip(wire, &at).map_err(fail)?,
                        }
                    }
                }
                2 => env.raw = r.bytes(wire, &Path::ROOT.field("raw")).map_err(fail)?,
                3 => {
                    env.content_encoding = r
                        .string(wire, &Path::ROOT.field("contentEncoding"))
                        .map_err(fail)?
                }
                _ => r.skip(wire, &Path::ROOT).map_err(fail)?,
            }
        }
        Ok(env)
    }
}

/// A message's schema: its fields by number.
struct Message {
    /// Proto package-qualified name, for error messages.
    name: &'static str,
    fields: &'static [Field],
}

/// One field of a [`Message`].
struct Field {
    tag: u32,
    /// JSON name; empty for [`Card::Inline`].
    json: &'static str,
    ty: Ty,
    card: Card,
}

const fn field(tag: u32, json: &'static str, ty: Ty, card: Card) -> Field {
    Field {
        tag,
        json,
        ty,
        card,
    }
}

/// The value type of a field (of each element, for repeated fields and map values).
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bytes,
    I32,
    I64,
    Bool,
    Msg(&'static Message),
    /// `metav1.Time`: RFC 3339, whole seconds.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `resource.Quantity`: its canonical string.
    Quantity,
    /// `intstr.IntOrString`: a JSON number or string.
    IntOrString,
    /// `metav1.FieldsV1`: the JSON document it carries.
    FieldsV1,
}

/// How often a field occurs, and what a zero value means.
#[derive(Clone, Copy)]
enum Card {
    /// Optional; a zero scalar is Go's "unset" and is omitted.
    OmitZero,
    /// Optional pointer or required field: present means present, even when zero.
    Keep,
    /// A JSON array.
    Repeated,
    /// `map<string, ty>`, a JSON object.
    Map,
    /// A Go-embedded struct: its fields go into the parent object.
    Inline,
}

/// A JSON field path, built on the stack and only rendered for an error.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

enum Seg<'a> {
    Root,
    Field(&'a str),
    Index(usize),
    Key(&'a str),
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        seg: Seg::Root,
    };

    fn field(&'a self, name: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Field(name),
        }
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    fn key(&'a self, k: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Key(k),
        }
    }

    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut p = Some(self);
        while let Some(cur) = p {
            segs.push(&cur.seg);
            p = cur.parent;
        }
        let mut out = String::new();
        for seg in segs.into_iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Field(f) if out.is_empty() => out.push_str(f),
                Seg::Field(f) => {
                    out.push('.');
                    out.push_str(f);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
                Seg::Key(k) => out.push_str(&format!("[{k:?}]")),
            }
        }
        if out.is_empty() {
            "the top level".to_owned()
        } else {
            out
        }
    }

    fn fault(&self, reason: impl Into<String>) -> Fault {
        Fault {
            at: self.render(),
            reason: reason.into(),
        }
    }
}

/// A decoding error before the kind is attached.
struct Fault {
    at: String,
    reason: String,
}

impl Fault {
    fn into_error(self, kind: &str) -> ProtobufError {
        ProtobufError::Malformed {
            kind: kind.to_owned(),
            at: self.at,
            reason: self.reason,
        }
    }
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn wire_name(wire: u8) -> &'static str {
    match wire {
        VARINT => "varint",
        FIXED64 => "fixed64",
        LEN => "length-delimited",
        3 | 4 => "group",
        FIXED32 => "fixed32",
        _ => "invalid",
    }
}

/// A cursor over protobuf wire bytes. Every read checks bounds.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self, at: &Path) -> Result<u64, Fault> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(at.fault("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(at.fault("varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(at.fault("varint longer than 10 bytes"))
    }

    /// The next field key, or `None` at the end of the message.
    fn key(&mut self, at: &Path) -> Result<Option<(u32, u8)>, Fault> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint(at)?;
        let wire = (key & 7) as u8;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(at.fault(format!("invalid field number {tag}")));
        }
        if !matches!(wire, VARINT | FIXED64 | LEN | FIXED32) {
            return Err(at.fault(format!(
                "field {tag} has unsupported wire type {wire} ({})",
                wire_name(wire)
            )));
        }
        Ok(Some((tag as u32, wire)))
    }

    fn take(&mut self, n: u64, at: &Path) -> Result<&'a [u8], Fault> {
        let left = self.buf.len() - self.pos;
        if n > left as u64 {
            return Err(at.fault(format!(
                "truncated: field needs {n} bytes but only {left} remain"
            )));
        }
        let out = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    fn expect(wire: u8, want: u8, at: &Path) -> Result<(), Fault> {
        if wire == want {
            Ok(())
        } else {
            Err(at.fault(format!(
                "wire type is {}, expected {}",
                wire_name(wire),
                wire_name(want)
            )))
        }
    }

    fn bytes(&mut self, wire: u8, at: &Path) -> Result<&'a [u8], Fault> {
        Self::expect(wire, LEN, at)?;
        let n = self.varint(at)?;
        self.take(n, at)
    }

    fn string(&mut self, wire: u8, at: &Path) -> Result<String, Fault> {
        let b = self.bytes(wire, at)?;
        String::from_utf8(b.to_vec()).map_err(|_| at.fault("string is not valid UTF-8"))
    }

    fn skip(&mut self, wire: u8, at: &Path) -> Result<(), Fault> {
        match wire {
            VARINT => self.varint(at).map(drop),
            FIXED64 => self.take(8, at).map(drop),
            FIXED32 => self.take(4, at).map(drop),
            _ => self.bytes(wire, at).map(drop),
        }
    }
}

/// Decode the fields of `msg` from `buf` into `out` (which may already hold fields: an
/// inlined parent, or an earlier occurrence of the same message, which proto merges).
fn decode_msg(
    msg: &Message,
    buf: &[u8],
    out: &mut Map<String, Value>,
    at: &Path,
) -> Result<(), Fault> {
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.key(at)? {
        let Some(f) = msg.fields.iter().find(|f| f.tag == tag) else {
            r.skip(wire, &at.field(&format!("<field {tag} of {}>", msg.name)))?;
            continue;
        };
        let here = at.field(f.json);
        match f.card {
            Card::Inline => {
                let Ty::Msg(inner) = f.ty else {
                    return Err(here.fault("inline field is not a message"));
                };
                let b = r.bytes(wire, at)?;
                decode_msg(inner, b, out, at)?;
            }
            Card::Repeated => {
                let len = match out.get(f.json) {
                    Some(Value::Array(a)) => a.len(),
                    _ => 0,
                };
                let mut items = Vec::new();
                if wire == LEN && is_packable(f.ty) {
                    let mut packed = Reader::new(r.bytes(wire, &here)?);
                    while packed.pos < packed.buf.len() {
                        let el = here.index(len + items.len());
                        items.push(scalar(f.ty, &mut packed, VARINT, &el)?);
                    }
                } else {
                    let el = here.index(len);
                    match value(f.ty, &mut r, wire, &el)? {
                        Some(v) => items.push(v),
                        None => items.push(Value::Null),
                    }
                }
                match out
                    .entry(f.json)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(a) => a.extend(items),
                    other => *other = Value::Array(items),
                }
            }
            Card::Map => {
                let entry = r.bytes(wire, &here)?;
                let (k, v) = map_entry(f.ty, entry, &here)?;
                match out
                    .entry(f.json)
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    Value::Object(m) => {
                        m.insert(k, v);
                    }
                    other => *other = Value::Object(Map::from_iter([(k, v)])),
                }
            }
            Card::OmitZero | Card::Keep => {
                if let Ty::Msg(inner) = f.ty {
                    // Merge repeated occurrences, as proto does for message fields.
                    let b = r.bytes(wire, &here)?;
                    let slot = out
                        .entry(f.json)
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    if let Value::Object(m) = slot {
                        decode_msg(inner, b, m, &here)?;
                    }
                    continue;
                }
                match value(f.ty, &mut r, wire, &here)? {
                    Some(v) if matches!(f.card, Card::Keep) || !is_zero(&v) => {
                        out.insert(f.json.to_owned(), v);
                    }
                    // Last occurrence wins, so a later zero clears an earlier value.
                    _ => {
                        out.remove(f.json);
                    }
                }
            }
        }
    }
    Ok(())
}

fn is_packable(ty: Ty) -> bool {
    matches!(ty, Ty::I32 | Ty::I64 | Ty::Bool)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// One value of type `ty`; `None` for a zero time or an empty FieldsV1, which are omitted.
fn value(ty: Ty, r: &mut Reader, wire: u8, at: &Path) -> Result<Option<Value>, Fault> {
    let b = match ty {
        Ty::Str | Ty::Bytes | Ty::I32 | Ty::I64 | Ty::Bool => {
            return scalar(ty, r, wire, at).map(Some);
        }
        _ => r.bytes(wire, at)?,
    };
    special(ty, b, at)
}

fn scalar(ty: Ty, r: &mut Reader, wire: u8, at: &Path) -> Result<Value, Fault> {
    Ok(match ty {
        Ty::Str => Value::String(r.string(wire, at)?),
        Ty::Bytes => Value::String(base64(r.bytes(wire, at)?)),
        Ty::I32 => {
            Reader::expect(wire, VARINT, at)?;
            // Go truncates an int32 varint to its low 32 bits; negatives arrive sign-extended.
            Value::Number(Number::from(r.varint(at)? as u32 as i32))
        }
        Ty::I64 => {
            Reader::expect(wire, VARINT, at)?;
            Value::Number(Number::from(r.varint(at)? as i64))
        }
        Ty::Bool => {
            Reader::expect(wire, VARINT, at)?;
            Value::Bool(r.varint(at)? != 0)
        }
        _ => return Err(at.fault("not a scalar field")),
    })
}

/// Decode a message-typed value whose JSON form is not an object.
fn special(ty: Ty, b: &[u8], at: &Path) -> Result<Option<Value>, Fault> {
    let mut r = Reader::new(b);
    match ty {
        Ty::Msg(inner) => {
            let mut m = Map::new();
            decode_msg(inner, b, &mut m, at)?;
            Ok(Some(Value::Object(m)))
        }
        Ty::Time | Ty::MicroTime => {
            if b.is_empty() {
                return Ok(None);
            }
            let (mut seconds, mut nanos) = (0i64, 0i32);
            while let Some((tag, wire)) = r.key(at)? {
                match (tag, wire) {
                    (1, VARINT) => seconds = r.varint(at)? as i64,
                    (2, VARINT) => nanos = r.varint(at)? as u32 as i32,
                    _ => r.skip(wire, at)?,
                }
            }
            format_time(seconds, nanos, matches!(ty, Ty::MicroTime), at).map(Some)
        }
        Ty::Quantity => {
            let mut s = None;
            while let Some((tag, wire)) = r.key(at)? {
                match tag {
                    1 => s = Some(r.string(wire, at)?),
                    _ => r.skip(wire, at)?,
                }
            }
            // Go's zero Quantity prints as "0".
            Ok(Some(Value::String(
                s.filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "0".to_owned()),
            )))
        }
        Ty::IntOrString => {
            let (mut kind, mut int, mut string) = (0i64, 0i32, String::new());
            while let Some((tag, wire)) = r.key(at)? {
                match tag {
                    1 => {
                        Reader::expect(wire, VARINT, at)?;
                        kind = r.varint(at)? as i64;
                    }
                    2 => {
                        Reader::expect(wire, VARINT, at)?;
                        int = r.varint(at)? as u32 as i32;
                    }
                    3 => string = r.string(wire, at)?,
                    _ => r.skip(wire, at)?,
                }
            }
            Ok(Some(match kind {
                0 => Value::Number(Number::from(int)),
                1 => Value::String(string),
                other => return Err(at.fault(format!("IntOrString has unknown type {other}"))),
            }))
        }
        Ty::FieldsV1 => {
            let mut raw: &[u8] = &[];
            while let Some((tag, wire)) = r.key(at)? {
                match tag {
                    1 => raw = r.bytes(wire, at)?,
                    _ => r.skip(wire, at)?,
                }
            }
            if raw.is_empty() {
                return Ok(None);
            }
            serde_json::from_slice(raw)
                .map(Some)
                .map_err(|e| at.fault(format!("FieldsV1 is not JSON: {e}")))
        }
        Ty::Str | Ty::Bytes | Ty::I32 | Ty::I64 | Ty::Bool => Err(at.fault("not a message field")),
    }
}

fn map_entry(ty: Ty, b: &[u8], at: &Path) -> Result<(String, Value), Fault> {
    let mut r = Reader::new(b);
    let mut key = String::new();
    let mut val = None;
    while let Some((tag, wire)) = r.key(at)? {
        match tag {
            1 => key = r.string(wire, &at.field("<key>"))?,
            // A map value is never absent in Go; a zero time inside one is null.
            2 => val = Some(value(ty, &mut r, wire, &at.key(&key))?.unwrap_or(Value::Null)),
            _ => r.skip(wire, at)?,
        }
    }
    // Go writes both halves of every entry; a missing value is the Go zero value.
    let v = match val {
        Some(v) => v,
        None => zero(ty),
    };
    Ok((key, v))
}

/// The JSON of a Go zero value of `ty`.
fn zero(ty: Ty) -> Value {
    match ty {
        Ty::Str | Ty::Bytes => Value::String(String::new()),
        Ty::I32 | Ty::I64 | Ty::IntOrString => Value::Number(Number::from(0)),
        Ty::Bool => Value::Bool(false),
        Ty::Msg(_) => Value::Object(Map::new()),
        Ty::Quantity => Value::String("0".to_owned()),
        Ty::Time | Ty::MicroTime | Ty::FieldsV1 => Value::Null,
    }
}

/// Format a `Time` (whole seconds: Go drops the nanos when decoding) or a `MicroTime`.
fn format_time(seconds: i64, nanos: i32, micro: bool, at: &Path) -> Result<Value, Fault> {
    let nanos = if micro { nanos } else { 0 };
    let ts = jiff::Timestamp::new(seconds, nanos)
        .map_err(|e| at.fault(format!("time {seconds}s {nanos}ns is out of range: {e}")))?;
    // Go refuses to write RFC 3339 years outside 0..=9999.
    if ts.to_zoned(jiff::tz::TimeZone::UTC).year() < 0 {
        return Err(at.fault(format!("time {seconds}s is before year 0")));
    }
    let fmt = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    jiff::fmt::strtime::format(fmt, ts)
        .map(Value::String)
        .map_err(|e| at.fault(format!("time {seconds}s cannot be formatted: {e}")))
}

/// Standard base64 with padding, as Go's encoding/json writes `[]byte`.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Schema tables, generated from k8s-pb 0.9.0 (prost: field numbers and wire types) and
// k8s-openapi 0.29 (JSON names; non-`Option` fields are required, so `Card::Keep`), for the
// closure of message types reachable from the kinds in `root`. `Card::Keep` on an optional
// scalar marks a Go pointer field (from the Go types in k8s.io/api). The generating script
// walked k8s-pb's prost source; to change a table by hand, take numbers and wire types from
// k8s-pb and names from k8s-openapi. tests/protobuf_decode.rs round-trips rich objects of
// every kind in `root` through both crates.
// ---------------------------------------------------------------------------------------

#[rustfmt::skip]
mod tables {
    use super::{Card::*, Message, Ty::*, field};

pub(super) static CORE_V1_NAMESPACE: Message = Message {
    name: "core.v1.Namespace",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "spec", Msg(&CORE_V1_NAMESPACE_SPEC), OmitZero),
        field(3, "status", Msg(&CORE_V1_NAMESPACE_STATUS), OmitZero),
    ],
};
pub(super) static META_V1_OBJECT_META: Message = Message {
    name: "meta.v1.ObjectMeta",
    fields: &[
        field(1, "name", Str, OmitZero),
        field(2, "generateName", Str, OmitZero),
        field(3, "namespace", Str, OmitZero),
        field(4, "selfLink", Str, OmitZero),
        field(5, "uid", Str, OmitZero),
        field(6, "resourceVersion", Str, OmitZero),
        field(7, "generation", I64, OmitZero),
        field(8, "creationTimestamp", Time, OmitZero),
        field(9, "deletionTimestamp", Time, OmitZero),
        field(10, "deletionGracePeriodSeconds", I64, Keep),
        field(11, "labels", Str, Map),
        field(12, "annotations", Str, Map),
        field(13, "ownerReferences", Msg(&META_V1_OWNER_REFERENCE), Repeated),
        field(14, "finalizers", Str, Repeated),
        field(17, "managedFields", Msg(&META_V1_MANAGED_FIELDS_ENTRY), Repeated),
    ],
};
pub(super) static META_V1_OWNER_REFERENCE: Message = Message {
    name: "meta.v1.OwnerReference",
    fields: &[
        field(5, "apiVersion", Str, Keep),
        field(1, "kind", Str, Keep),
        field(3, "name", Str, Keep),
        field(4, "uid", Str, Keep),
        field(6, "controller", Bool, Keep),
        field(7, "blockOwnerDeletion", Bool, Keep),
    ],
};
pub(super) static META_V1_MANAGED_FIELDS_ENTRY: Message = Message {
    name: "meta.v1.ManagedFieldsEntry",
    fields: &[
        field(1, "manager", Str, OmitZero),
        field(2, "operation", Str, OmitZero),
        field(3, "apiVersion", Str, OmitZero),
        field(4, "time", Time, OmitZero),
        field(6, "fieldsType", Str, OmitZero),
        field(7, "fieldsV1", FieldsV1, OmitZero),
        field(8, "subresource", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_NAMESPACE_SPEC: Message = Message {
    name: "core.v1.NamespaceSpec",
    fields: &[
        field(1, "finalizers", Str, Repeated),
    ],
};
pub(super) static CORE_V1_NAMESPACE_STATUS: Message = Message {
    name: "core.v1.NamespaceStatus",
    fields: &[
        field(1, "phase", Str, OmitZero),
        field(2, "conditions", Msg(&CORE_V1_NAMESPACE_CONDITION), Repeated),
    ],
};
pub(super) static CORE_V1_NAMESPACE_CONDITION: Message = Message {
    name: "core.v1.NamespaceCondition",
    fields: &[
        field(1, "type", Str, Keep),
        field(2, "status", Str, Keep),
        field(4, "lastTransitionTime", Time, OmitZero),
        field(5, "reason", Str, OmitZero),
        field(6, "message", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_POD: Message = Message {
    name: "core.v1.Pod",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "spec", Msg(&CORE_V1_POD_SPEC), OmitZero),
        field(3, "status", Msg(&CORE_V1_POD_STATUS), OmitZero),
    ],
};
pub(super) static CORE_V1_POD_SPEC: Message = Message {
    name: "core.v1.PodSpec",
    fields: &[
        field(1, "volumes", Msg(&CORE_V1_VOLUME), Repeated),
        field(20, "initContainers", Msg(&CORE_V1_CONTAINER), Repeated),
        field(2, "containers", Msg(&CORE_V1_CONTAINER), Repeated),
        field(34, "ephemeralContainers", Msg(&CORE_V1_EPHEMERAL_CONTAINER), Repeated),
        field(3, "restartPolicy", Str, OmitZero),
        field(4, "terminationGracePeriodSeconds", I64, Keep),
        field(5, "activeDeadlineSeconds", I64, Keep),
        field(6, "dnsPolicy", Str, OmitZero),
        field(7, "nodeSelector", Str, Map),
        field(8, "serviceAccountName", Str, OmitZero),
        field(9, "serviceAccount", Str, OmitZero),
        field(21, "automountServiceAccountToken", Bool, Keep),
        field(10, "nodeName", Str, OmitZero),
        field(11, "hostNetwork", Bool, OmitZero),
        field(12, "hostPID", Bool, OmitZero),
        field(13, "hostIPC", Bool, OmitZero),
        field(27, "shareProcessNamespace", Bool, Keep),
        field(14, "securityContext", Msg(&CORE_V1_POD_SECURITY_CONTEXT), OmitZero),
        field(15, "imagePullSecrets", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Repeated),
        field(16, "hostname", Str, OmitZero),
        field(17, "subdomain", Str, OmitZero),
        field(18, "affinity", Msg(&CORE_V1_AFFINITY), OmitZero),
        field(19, "schedulerName", Str, OmitZero),
        field(22, "tolerations", Msg(&CORE_V1_TOLERATION), Repeated),
        field(23, "hostAliases", Msg(&CORE_V1_HOST_ALIAS), Repeated),
        field(24, "priorityClassName", Str, OmitZero),
        field(25, "priority", I32, Keep),
        field(26, "dnsConfig", Msg(&CORE_V1_POD_DNS_CONFIG), OmitZero),
        field(28, "readinessGates", Msg(&CORE_V1_POD_READINESS_GATE), Repeated),
        field(29, "runtimeClassName", Str, Keep),
        field(30, "enableServiceLinks", Bool, Keep),
        field(31, "preemptionPolicy", Str, Keep),
        field(32, "overhead", Quantity, Map),
        field(33, "topologySpreadConstraints", Msg(&CORE_V1_TOPOLOGY_SPREAD_CONSTRAINT), Repeated),
        field(35, "setHostnameAsFQDN", Bool, Keep),
        field(36, "os", Msg(&CORE_V1_POD_OS), OmitZero),
        field(37, "hostUsers", Bool, Keep),
        field(38, "schedulingGates", Msg(&CORE_V1_POD_SCHEDULING_GATE), Repeated),
        field(39, "resourceClaims", Msg(&CORE_V1_POD_RESOURCE_CLAIM), Repeated),
        field(40, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), OmitZero),
        field(41, "hostnameOverride", Str, Keep),
        field(42, "workloadRef", Msg(&CORE_V1_WORKLOAD_REFERENCE), OmitZero),
    ],
};
pub(super) static CORE_V1_VOLUME: Message = Message {
    name: "core.v1.Volume",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "", Msg(&CORE_V1_VOLUME_SOURCE), Inline),
    ],
};
pub(super) static CORE_V1_VOLUME_SOURCE: Message = Message {
    name: "core.v1.VolumeSource",
    fields: &[
        field(1, "hostPath", Msg(&CORE_V1_HOST_PATH_VOLUME_SOURCE), OmitZero),
        field(2, "emptyDir", Msg(&CORE_V1_EMPTY_DIR_VOLUME_SOURCE), OmitZero),
        field(3, "gcePersistentDisk", Msg(&CORE_V1_GCE_PERSISTENT_DISK_VOLUME_SOURCE), OmitZero),
        field(4, "awsElasticBlockStore", Msg(&CORE_V1_AWS_ELASTIC_BLOCK_STORE_VOLUME_SOURCE), OmitZero),
        field(5, "gitRepo", Msg(&CORE_V1_GIT_REPO_VOLUME_SOURCE), OmitZero),
        field(6, "secret", Msg(&CORE_V1_SECRET_VOLUME_SOURCE), OmitZero),
        field(7, "nfs", Msg(&CORE_V1_NFS_VOLUME_SOURCE), OmitZero),
        field(8, "iscsi", Msg(&CORE_V1_ISCSI_VOLUME_SOURCE), OmitZero),
        field(9, "glusterfs", Msg(&CORE_V1_GLUSTERFS_VOLUME_SOURCE), OmitZero),
        field(10, "persistentVolumeClaim", Msg(&CORE_V1_PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE), OmitZero),
        field(11, "rbd", Msg(&CORE_V1_RBD_VOLUME_SOURCE), OmitZero),
        field(12, "flexVolume", Msg(&CORE_V1_FLEX_VOLUME_SOURCE), OmitZero),
        field(13, "cinder", Msg(&CORE_V1_CINDER_VOLUME_SOURCE), OmitZero),
        field(14, "cephfs", Msg(&CORE_V1_CEPH_FS_VOLUME_SOURCE), OmitZero),
        field(15, "flocker", Msg(&CORE_V1_FLOCKER_VOLUME_SOURCE), OmitZero),
        field(16, "downwardAPI", Msg(&CORE_V1_DOWNWARD_APIVOLUME_SOURCE), OmitZero),
        field(17, "fc", Msg(&CORE_V1_FC_VOLUME_SOURCE), OmitZero),
        field(18, "azureFile", Msg(&CORE_V1_AZURE_FILE_VOLUME_SOURCE), OmitZero),
        field(19, "configMap", Msg(&CORE_V1_CONFIG_MAP_VOLUME_SOURCE), OmitZero),
        field(20, "vsphereVolume", Msg(&CORE_V1_VSPHERE_VIRTUAL_DISK_VOLUME_SOURCE), OmitZero),
        field(21, "quobyte", Msg(&CORE_V1_QUOBYTE_VOLUME_SOURCE), OmitZero),
        field(22, "azureDisk", Msg(&CORE_V1_AZURE_DISK_VOLUME_SOURCE), OmitZero),
        field(23, "photonPersistentDisk", Msg(&CORE_V1_PHOTON_PERSISTENT_DISK_VOLUME_SOURCE), OmitZero),
        field(26, "projected", Msg(&CORE_V1_PROJECTED_VOLUME_SOURCE), OmitZero),
        field(24, "portworxVolume", Msg(&CORE_V1_PORTWORX_VOLUME_SOURCE), OmitZero),
        field(25, "scaleIO", Msg(&CORE_V1_SCALE_IO_VOLUME_SOURCE), OmitZero),
        field(27, "storageos", Msg(&CORE_V1_STORAGE_OS_VOLUME_SOURCE), OmitZero),
        field(28, "csi", Msg(&CORE_V1_CSIVOLUME_SOURCE), OmitZero),
        field(29, "ephemeral", Msg(&CORE_V1_EPHEMERAL_VOLUME_SOURCE), OmitZero),
        field(30, "image", Msg(&CORE_V1_IMAGE_VOLUME_SOURCE), OmitZero),
    ],
};
pub(super) static CORE_V1_HOST_PATH_VOLUME_SOURCE: Message = Message {
    name: "core.v1.HostPathVolumeSource",
    fields: &[
        field(1, "path", Str, Keep),
        field(2, "type", Str, Keep),
    ],
};
pub(super) static CORE_V1_EMPTY_DIR_VOLUME_SOURCE: Message = Message {
    name: "core.v1.EmptyDirVolumeSource",
    fields: &[
        field(1, "medium", Str, OmitZero),
        field(2, "sizeLimit", Quantity, OmitZero),
    ],
};
pub(super) static CORE_V1_GCE_PERSISTENT_DISK_VOLUME_SOURCE: Message = Message {
    name: "core.v1.GcePersistentDiskVolumeSource",
    fields: &[
        field(1, "pdName", Str, Keep),
        field(2, "fsType", Str, OmitZero),
        field(3, "partition", I32, OmitZero),
        field(4, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_AWS_ELASTIC_BLOCK_STORE_VOLUME_SOURCE: Message = Message {
    name: "core.v1.AwsElasticBlockStoreVolumeSource",
    fields: &[
        field(1, "volumeID", Str, Keep),
        field(2, "fsType", Str, OmitZero),
        field(3, "partition", I32, OmitZero),
        field(4, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_GIT_REPO_VOLUME_SOURCE: Message = Message {
    name: "core.v1.GitRepoVolumeSource",
    fields: &[
        field(1, "repository", Str, Keep),
        field(2, "revision", Str, OmitZero),
        field(3, "directory", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_SECRET_VOLUME_SOURCE: Message = Message {
    name: "core.v1.SecretVolumeSource",
    fields: &[
        field(1, "secretName", Str, OmitZero),
        field(2, "items", Msg(&CORE_V1_KEY_TO_PATH), Repeated),
        field(3, "defaultMode", I32, Keep),
        field(4, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_KEY_TO_PATH: Message = Message {
    name: "core.v1.KeyToPath",
    fields: &[
        field(1, "key", Str, Keep),
        field(2, "path", Str, Keep),
        field(3, "mode", I32, Keep),
    ],
};
pub(super) static CORE_V1_NFS_VOLUME_SOURCE: Message = Message {
    name: "core.v1.NfsVolumeSource",
    fields: &[
        field(1, "server", Str, Keep),
        field(2, "path", Str, Keep),
        field(3, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_ISCSI_VOLUME_SOURCE: Message = Message {
    name: "core.v1.IscsiVolumeSource",
    fields: &[
        field(1, "targetPortal", Str, Keep),
        field(2, "iqn", Str, Keep),
        field(3, "lun", I32, Keep),
        field(4, "iscsiInterface", Str, OmitZero),
        field(5, "fsType", Str, OmitZero),
        field(6, "readOnly", Bool, OmitZero),
        field(7, "portals", Str, Repeated),
        field(8, "chapAuthDiscovery", Bool, OmitZero),
        field(11, "chapAuthSession", Bool, OmitZero),
        field(10, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), OmitZero),
        field(12, "initiatorName", Str, Keep),
    ],
};
pub(super) static CORE_V1_LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "core.v1.LocalObjectReference",
    fields: &[
        field(1, "name", Str, Keep),
    ],
};
pub(super) static CORE_V1_GLUSTERFS_VOLUME_SOURCE: Message = Message {
    name: "core.v1.GlusterfsVolumeSource",
    fields: &[
        field(1, "endpoints", Str, Keep),
        field(2, "path", Str, Keep),
        field(3, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message {
    name: "core.v1.PersistentVolumeClaimVolumeSource",
    fields: &[
        field(1, "claimName", Str, Keep),
        field(2, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_RBD_VOLUME_SOURCE: Message = Message {
    name: "core.v1.RbdVolumeSource",
    fields: &[
        field(1, "monitors", Str, Repeated),
        field(2, "image", Str, Keep),
        field(3, "fsType", Str, OmitZero),
        field(4, "pool", Str, OmitZero),
        field(5, "user", Str, OmitZero),
        field(6, "keyring", Str, OmitZero),
        field(7, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), OmitZero),
        field(8, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_FLEX_VOLUME_SOURCE: Message = Message {
    name: "core.v1.FlexVolumeSource",
    fields: &[
        field(1, "driver", Str, Keep),
        field(2, "fsType", Str, OmitZero),
        field(3, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), OmitZero),
        field(4, "readOnly", Bool, OmitZero),
        field(5, "options", Str, Map),
    ],
};
pub(super) static CORE_V1_CINDER_VOLUME_SOURCE: Message = Message {
    name: "core.v1.CinderVolumeSource",
    fields: &[
        field(1, "volumeID", Str, Keep),
        field(2, "fsType", Str, OmitZero),
        field(3, "readOnly", Bool, OmitZero),
        field(4, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), OmitZero),
    ],
};
pub(super) static CORE_V1_CEPH_FS_VOLUME_SOURCE: Message = Message {
    name: "core.v1.CephFsVolumeSource",
    fields: &[
        field(1, "monitors", Str, Repeated),
        field(2, "path", Str, OmitZero),
        field(3, "user", Str, OmitZero),
        field(4, "secretFile", Str, OmitZero),
        field(5, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), OmitZero),
        field(6, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_FLOCKER_VOLUME_SOURCE: Message = Message {
    name: "core.v1.FlockerVolumeSource",
    fields: &[
        field(1, "datasetName", Str, OmitZero),
        field(2, "datasetUUID", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_DOWNWARD_APIVOLUME_SOURCE: Message = Message {
    name: "core.v1.DownwardAPIVolumeSource",
    fields: &[
        field(1, "items", Msg(&CORE_V1_DOWNWARD_APIVOLUME_FILE), Repeated),
        field(2, "defaultMode", I32, Keep),
    ],
};
pub(super) static CORE_V1_DOWNWARD_APIVOLUME_FILE: Message = Message {
    name: "core.v1.DownwardAPIVolumeFile",
    fields: &[
        field(1, "path", Str, Keep),
        field(2, "fieldRef", Msg(&CORE_V1_OBJECT_FIELD_SELECTOR), OmitZero),
        field(3, "resourceFieldRef", Msg(&CORE_V1_RESOURCE_FIELD_SELECTOR), OmitZero),
        field(4, "mode", I32, Keep),
    ],
};
pub(super) static CORE_V1_OBJECT_FIELD_SELECTOR: Message = Message {
    name: "core.v1.ObjectFieldSelector",
    fields: &[
        field(1, "apiVersion", Str, OmitZero),
        field(2, "fieldPath", Str, Keep),
    ],
};
pub(super) static CORE_V1_RESOURCE_FIELD_SELECTOR: Message = Message {
    name: "core.v1.ResourceFieldSelector",
    fields: &[
        field(1, "containerName", Str, OmitZero),
        field(2, "resource", Str, Keep),
        field(3, "divisor", Quantity, OmitZero),
    ],
};
pub(super) static CORE_V1_FC_VOLUME_SOURCE: Message = Message {
    name: "core.v1.FcVolumeSource",
    fields: &[
        field(1, "targetWWNs", Str, Repeated),
        field(2, "lun", I32, Keep),
        field(3, "fsType", Str, OmitZero),
        field(4, "readOnly", Bool, OmitZero),
        field(5, "wwids", Str, Repeated),
    ],
};
pub(super) static CORE_V1_AZURE_FILE_VOLUME_SOURCE: Message = Message {
    name: "core.v1.AzureFileVolumeSource",
    fields: &[
        field(1, "secretName", Str, Keep),
        field(2, "shareName", Str, Keep),
        field(3, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_CONFIG_MAP_VOLUME_SOURCE: Message = Message {
    name: "core.v1.ConfigMapVolumeSource",
    fields: &[
        field(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline),
        field(2, "items", Msg(&CORE_V1_KEY_TO_PATH), Repeated),
        field(3, "defaultMode", I32, Keep),
        field(4, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_VSPHERE_VIRTUAL_DISK_VOLUME_SOURCE: Message = Message {
    name: "core.v1.VsphereVirtualDiskVolumeSource",
    fields: &[
        field(1, "volumePath", Str, Keep),
        field(2, "fsType", Str, OmitZero),
        field(3, "storagePolicyName", Str, OmitZero),
        field(4, "storagePolicyID", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_QUOBYTE_VOLUME_SOURCE: Message = Message {
    name: "core.v1.QuobyteVolumeSource",
    fields: &[
        field(1, "registry", Str, Keep),
        field(2, "volume", Str, Keep),
        field(3, "readOnly", Bool, OmitZero),
        field(4, "user", Str, OmitZero),
        field(5, "group", Str, OmitZero),
        field(6, "tenant", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_AZURE_DISK_VOLUME_SOURCE: Message = Message {
    name: "core.v1.AzureDiskVolumeSource",
    fields: &[
        field(1, "diskName", Str, Keep),
        field(2, "diskURI", Str, Keep),
        field(3, "cachingMode", Str, Keep),
        field(4, "fsType", Str, Keep),
        field(5, "readOnly", Bool, Keep),
        field(6, "kind", Str, Keep),
    ],
};
pub(super) static CORE_V1_PHOTON_PERSISTENT_DISK_VOLUME_SOURCE: Message = Message {
    name: "core.v1.PhotonPersistentDiskVolumeSource",
    fields: &[
        field(1, "pdID", Str, Keep),
        field(2, "fsType", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_PROJECTED_VOLUME_SOURCE: Message = Message {
    name: "core.v1.ProjectedVolumeSource",
    fields: &[
        field(1, "sources", Msg(&CORE_V1_VOLUME_PROJECTION), Repeated),
        field(2, "defaultMode", I32, Keep),
    ],
};
pub(super) static CORE_V1_VOLUME_PROJECTION: Message = Message {
    name: "core.v1.VolumeProjection",
    fields: &[
        field(1, "secret", Msg(&CORE_V1_SECRET_PROJECTION), OmitZero),
        field(2, "downwardAPI", Msg(&CORE_V1_DOWNWARD_APIPROJECTION), OmitZero),
        field(3, "configMap", Msg(&CORE_V1_CONFIG_MAP_PROJECTION), OmitZero),
        field(4, "serviceAccountToken", Msg(&CORE_V1_SERVICE_ACCOUNT_TOKEN_PROJECTION), OmitZero),
        field(5, "clusterTrustBundle", Msg(&CORE_V1_CLUSTER_TRUST_BUNDLE_PROJECTION), OmitZero),
        field(6, "podCertificate", Msg(&CORE_V1_POD_CERTIFICATE_PROJECTION), OmitZero),
    ],
};
pub(super) static CORE_V1_SECRET_PROJECTION: Message = Message {
    name: "core.v1.SecretProjection",
    fields: &[
        field(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline),
        field(2, "items", Msg(&CORE_V1_KEY_TO_PATH), Repeated),
        field(4, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_DOWNWARD_APIPROJECTION: Message = Message {
    name: "core.v1.DownwardAPIProjection",
    fields: &[
        field(1, "items", Msg(&CORE_V1_DOWNWARD_APIVOLUME_FILE), Repeated),
    ],
};
pub(super) static CORE_V1_CONFIG_MAP_PROJECTION: Message = Message {
    name: "core.v1.ConfigMapProjection",
    fields: &[
        field(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline),
        field(2, "items", Msg(&CORE_V1_KEY_TO_PATH), Repeated),
        field(4, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message {
    name: "core.v1.ServiceAccountTokenProjection",
    fields: &[
        field(1, "audience", Str, OmitZero),
        field(2, "expirationSeconds", I64, Keep),
        field(3, "path", Str, Keep),
    ],
};
pub(super) static CORE_V1_CLUSTER_TRUST_BUNDLE_PROJECTION: Message = Message {
    name: "core.v1.ClusterTrustBundleProjection",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "signerName", Str, Keep),
        field(3, "labelSelector", Msg(&META_V1_LABEL_SELECTOR), OmitZero),
        field(5, "optional", Bool, Keep),
        field(4, "path", Str, Keep),
    ],
};
pub(super) static META_V1_LABEL_SELECTOR: Message = Message {
    name: "meta.v1.LabelSelector",
    fields: &[
        field(1, "matchLabels", Str, Map),
        field(2, "matchExpressions", Msg(&META_V1_LABEL_SELECTOR_REQUIREMENT), Repeated),
    ],
};
pub(super) static META_V1_LABEL_SELECTOR_REQUIREMENT: Message = Message {
    name: "meta.v1.LabelSelectorRequirement",
    fields: &[
        field(1, "key", Str, Keep),
        field(2, "operator", Str, Keep),
        field(3, "values", Str, Repeated),
    ],
};
pub(super) static CORE_V1_POD_CERTIFICATE_PROJECTION: Message = Message {
    name: "core.v1.PodCertificateProjection",
    fields: &[
        field(1, "signerName", Str, Keep),
        field(2, "keyType", Str, Keep),
        field(3, "maxExpirationSeconds", I32, Keep),
        field(4, "credentialBundlePath", Str, OmitZero),
        field(5, "keyPath", Str, OmitZero),
        field(6, "certificateChainPath", Str, OmitZero),
        field(7, "userAnnotations", Str, Map),
    ],
};
pub(super) static CORE_V1_PORTWORX_VOLUME_SOURCE: Message = Message {
    name: "core.v1.PortworxVolumeSource",
    fields: &[
        field(1, "volumeID", Str, Keep),
        field(2, "fsType", Str, OmitZero),
        field(3, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_SCALE_IO_VOLUME_SOURCE: Message = Message {
    name: "core.v1.ScaleIoVolumeSource",
    fields: &[
        field(1, "gateway", Str, Keep),
        field(2, "system", Str, Keep),
        field(3, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Keep),
        field(4, "sslEnabled", Bool, OmitZero),
        field(5, "protectionDomain", Str, OmitZero),
        field(6, "storagePool", Str, OmitZero),
        field(7, "storageMode", Str, OmitZero),
        field(8, "volumeName", Str, OmitZero),
        field(9, "fsType", Str, OmitZero),
        field(10, "readOnly", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_STORAGE_OS_VOLUME_SOURCE: Message = Message {
    name: "core.v1.StorageOsVolumeSource",
    fields: &[
        field(1, "volumeName", Str, OmitZero),
        field(2, "volumeNamespace", Str, OmitZero),
        field(3, "fsType", Str, OmitZero),
        field(4, "readOnly", Bool, OmitZero),
        field(5, "secretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), OmitZero),
    ],
};
pub(super) static CORE_V1_CSIVOLUME_SOURCE: Message = Message {
    name: "core.v1.CSIVolumeSource",
    fields: &[
        field(1, "driver", Str, Keep),
        field(2, "readOnly", Bool, Keep),
        field(3, "fsType", Str, Keep),
        field(4, "volumeAttributes", Str, Map),
        field(5, "nodePublishSecretRef", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), OmitZero),
    ],
};
pub(super) static CORE_V1_EPHEMERAL_VOLUME_SOURCE: Message = Message {
    name: "core.v1.EphemeralVolumeSource",
    fields: &[
        field(1, "volumeClaimTemplate", Msg(&CORE_V1_PERSISTENT_VOLUME_CLAIM_TEMPLATE), OmitZero),
    ],
};
pub(super) static CORE_V1_PERSISTENT_VOLUME_CLAIM_TEMPLATE: Message = Message {
    name: "core.v1.PersistentVolumeClaimTemplate",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), OmitZero),
        field(2, "spec", Msg(&CORE_V1_PERSISTENT_VOLUME_CLAIM_SPEC), Keep),
    ],
};
pub(super) static CORE_V1_PERSISTENT_VOLUME_CLAIM_SPEC: Message = Message {
    name: "core.v1.PersistentVolumeClaimSpec",
    fields: &[
        field(1, "accessModes", Str, Repeated),
        field(4, "selector", Msg(&META_V1_LABEL_SELECTOR), OmitZero),
        field(2, "resources", Msg(&CORE_V1_VOLUME_RESOURCE_REQUIREMENTS), OmitZero),
        field(3, "volumeName", Str, OmitZero),
        field(5, "storageClassName", Str, Keep),
        field(6, "volumeMode", Str, Keep),
        field(7, "dataSource", Msg(&CORE_V1_TYPED_LOCAL_OBJECT_REFERENCE), OmitZero),
        field(8, "dataSourceRef", Msg(&CORE_V1_TYPED_OBJECT_REFERENCE), OmitZero),
        field(9, "volumeAttributesClassName", Str, Keep),
    ],
};
pub(super) static CORE_V1_VOLUME_RESOURCE_REQUIREMENTS: Message = Message {
    name: "core.v1.VolumeResourceRequirements",
    fields: &[
        field(1, "limits", Quantity, Map),
        field(2, "requests", Quantity, Map),
    ],
};
pub(super) static CORE_V1_TYPED_LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "core.v1.TypedLocalObjectReference",
    fields: &[
        field(1, "apiGroup", Str, Keep),
        field(2, "kind", Str, Keep),
        field(3, "name", Str, Keep),
    ],
};
pub(super) static CORE_V1_TYPED_OBJECT_REFERENCE: Message = Message {
    name: "core.v1.TypedObjectReference",
    fields: &[
        field(1, "apiGroup", Str, Keep),
        field(2, "kind", Str, Keep),
        field(3, "name", Str, Keep),
        field(4, "namespace", Str, Keep),
    ],
};
pub(super) static CORE_V1_IMAGE_VOLUME_SOURCE: Message = Message {
    name: "core.v1.ImageVolumeSource",
    fields: &[
        field(1, "reference", Str, OmitZero),
        field(2, "pullPolicy", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_CONTAINER: Message = Message {
    name: "core.v1.Container",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "image", Str, OmitZero),
        field(3, "command", Str, Repeated),
        field(4, "args", Str, Repeated),
        field(5, "workingDir", Str, OmitZero),
        field(6, "ports", Msg(&CORE_V1_CONTAINER_PORT), Repeated),
        field(19, "envFrom", Msg(&CORE_V1_ENV_FROM_SOURCE), Repeated),
        field(7, "env", Msg(&CORE_V1_ENV_VAR), Repeated),
        field(8, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), OmitZero),
        field(23, "resizePolicy", Msg(&CORE_V1_CONTAINER_RESIZE_POLICY), Repeated),
        field(24, "restartPolicy", Str, Keep),
        field(25, "restartPolicyRules", Msg(&CORE_V1_CONTAINER_RESTART_RULE), Repeated),
        field(9, "volumeMounts", Msg(&CORE_V1_VOLUME_MOUNT), Repeated),
        field(21, "volumeDevices", Msg(&CORE_V1_VOLUME_DEVICE), Repeated),
        field(10, "livenessProbe", Msg(&CORE_V1_PROBE), OmitZero),
        field(11, "readinessProbe", Msg(&CORE_V1_PROBE), OmitZero),
        field(22, "startupProbe", Msg(&CORE_V1_PROBE), OmitZero),
        field(12, "lifecycle", Msg(&CORE_V1_LIFECYCLE), OmitZero),
        field(13, "terminationMessagePath", Str, OmitZero),
        field(20, "terminationMessagePolicy", Str, OmitZero),
        field(14, "imagePullPolicy", Str, OmitZero),
        field(15, "securityContext", Msg(&CORE_V1_SECURITY_CONTEXT), OmitZero),
        field(16, "stdin", Bool, OmitZero),
        field(17, "stdinOnce", Bool, OmitZero),
        field(18, "tty", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_CONTAINER_PORT: Message = Message {
    name: "core.v1.ContainerPort",
    fields: &[
        field(1, "name", Str, OmitZero),
        field(2, "hostPort", I32, OmitZero),
        field(3, "containerPort", I32, Keep),
        field(4, "protocol", Str, OmitZero),
        field(5, "hostIP", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_ENV_FROM_SOURCE: Message = Message {
    name: "core.v1.EnvFromSource",
    fields: &[
        field(1, "prefix", Str, OmitZero),
        field(2, "configMapRef", Msg(&CORE_V1_CONFIG_MAP_ENV_SOURCE), OmitZero),
        field(3, "secretRef", Msg(&CORE_V1_SECRET_ENV_SOURCE), OmitZero),
    ],
};
pub(super) static CORE_V1_CONFIG_MAP_ENV_SOURCE: Message = Message {
    name: "core.v1.ConfigMapEnvSource",
    fields: &[
        field(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline),
        field(2, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_SECRET_ENV_SOURCE: Message = Message {
    name: "core.v1.SecretEnvSource",
    fields: &[
        field(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline),
        field(2, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_ENV_VAR: Message = Message {
    name: "core.v1.EnvVar",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "value", Str, OmitZero),
        field(3, "valueFrom", Msg(&CORE_V1_ENV_VAR_SOURCE), OmitZero),
    ],
};
pub(super) static CORE_V1_ENV_VAR_SOURCE: Message = Message {
    name: "core.v1.EnvVarSource",
    fields: &[
        field(1, "fieldRef", Msg(&CORE_V1_OBJECT_FIELD_SELECTOR), OmitZero),
        field(2, "resourceFieldRef", Msg(&CORE_V1_RESOURCE_FIELD_SELECTOR), OmitZero),
        field(3, "configMapKeyRef", Msg(&CORE_V1_CONFIG_MAP_KEY_SELECTOR), OmitZero),
        field(4, "secretKeyRef", Msg(&CORE_V1_SECRET_KEY_SELECTOR), OmitZero),
        field(5, "fileKeyRef", Msg(&CORE_V1_FILE_KEY_SELECTOR), OmitZero),
    ],
};
pub(super) static CORE_V1_CONFIG_MAP_KEY_SELECTOR: Message = Message {
    name: "core.v1.ConfigMapKeySelector",
    fields: &[
        field(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline),
        field(2, "key", Str, Keep),
        field(3, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_SECRET_KEY_SELECTOR: Message = Message {
    name: "core.v1.SecretKeySelector",
    fields: &[
        field(1, "", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Inline),
        field(2, "key", Str, Keep),
        field(3, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_FILE_KEY_SELECTOR: Message = Message {
    name: "core.v1.FileKeySelector",
    fields: &[
        field(1, "volumeName", Str, Keep),
        field(2, "path", Str, Keep),
        field(3, "key", Str, Keep),
        field(4, "optional", Bool, Keep),
    ],
};
pub(super) static CORE_V1_RESOURCE_REQUIREMENTS: Message = Message {
    name: "core.v1.ResourceRequirements",
    fields: &[
        field(1, "limits", Quantity, Map),
        field(2, "requests", Quantity, Map),
        field(3, "claims", Msg(&CORE_V1_RESOURCE_CLAIM), Repeated),
    ],
};
pub(super) static CORE_V1_RESOURCE_CLAIM: Message = Message {
    name: "core.v1.ResourceClaim",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "request", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_CONTAINER_RESIZE_POLICY: Message = Message {
    name: "core.v1.ContainerResizePolicy",
    fields: &[
        field(1, "resourceName", Str, Keep),
        field(2, "restartPolicy", Str, Keep),
    ],
};
pub(super) static CORE_V1_CONTAINER_RESTART_RULE: Message = Message {
    name: "core.v1.ContainerRestartRule",
    fields: &[
        field(1, "action", Str, Keep),
        field(2, "exitCodes", Msg(&CORE_V1_CONTAINER_RESTART_RULE_ON_EXIT_CODES), OmitZero),
    ],
};
pub(super) static CORE_V1_CONTAINER_RESTART_RULE_ON_EXIT_CODES: Message = Message {
    name: "core.v1.ContainerRestartRuleOnExitCodes",
    fields: &[
        field(1, "operator", Str, Keep),
        field(2, "values", I32, Repeated),
    ],
};
pub(super) static CORE_V1_VOLUME_MOUNT: Message = Message {
    name: "core.v1.VolumeMount",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "readOnly", Bool, OmitZero),
        field(7, "recursiveReadOnly", Str, Keep),
        field(3, "mountPath", Str, Keep),
        field(4, "subPath", Str, OmitZero),
        field(5, "mountPropagation", Str, Keep),
        field(6, "subPathExpr", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_VOLUME_DEVICE: Message = Message {
    name: "core.v1.VolumeDevice",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "devicePath", Str, Keep),
    ],
};
pub(super) static CORE_V1_PROBE: Message = Message {
    name: "core.v1.Probe",
    fields: &[
        field(1, "", Msg(&CORE_V1_PROBE_HANDLER), Inline),
        field(2, "initialDelaySeconds", I32, OmitZero),
        field(3, "timeoutSeconds", I32, OmitZero),
        field(4, "periodSeconds", I32, OmitZero),
        field(5, "successThreshold", I32, OmitZero),
        field(6, "failureThreshold", I32, OmitZero),
        field(7, "terminationGracePeriodSeconds", I64, Keep),
    ],
};
pub(super) static CORE_V1_PROBE_HANDLER: Message = Message {
    name: "core.v1.ProbeHandler",
    fields: &[
        field(1, "exec", Msg(&CORE_V1_EXEC_ACTION), OmitZero),
        field(2, "httpGet", Msg(&CORE_V1_HTTP_GET_ACTION), OmitZero),
        field(3, "tcpSocket", Msg(&CORE_V1_TCP_SOCKET_ACTION), OmitZero),
        field(4, "grpc", Msg(&CORE_V1_GRPC_ACTION), OmitZero),
    ],
};
pub(super) static CORE_V1_EXEC_ACTION: Message = Message {
    name: "core.v1.ExecAction",
    fields: &[
        field(1, "command", Str, Repeated),
    ],
};
pub(super) static CORE_V1_HTTP_GET_ACTION: Message = Message {
    name: "core.v1.HttpGetAction",
    fields: &[
        field(1, "path", Str, OmitZero),
        field(2, "port", IntOrString, Keep),
        field(3, "host", Str, OmitZero),
        field(4, "scheme", Str, OmitZero),
        field(5, "httpHeaders", Msg(&CORE_V1_HTTP_HEADER), Repeated),
    ],
};
pub(super) static CORE_V1_HTTP_HEADER: Message = Message {
    name: "core.v1.HttpHeader",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "value", Str, Keep),
    ],
};
pub(super) static CORE_V1_TCP_SOCKET_ACTION: Message = Message {
    name: "core.v1.TcpSocketAction",
    fields: &[
        field(1, "port", IntOrString, Keep),
        field(2, "host", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_GRPC_ACTION: Message = Message {
    name: "core.v1.GrpcAction",
    fields: &[
        field(1, "port", I32, Keep),
        field(2, "service", Str, Keep),
    ],
};
pub(super) static CORE_V1_LIFECYCLE: Message = Message {
    name: "core.v1.Lifecycle",
    fields: &[
        field(1, "postStart", Msg(&CORE_V1_LIFECYCLE_HANDLER), OmitZero),
        field(2, "preStop", Msg(&CORE_V1_LIFECYCLE_HANDLER), OmitZero),
        field(3, "stopSignal", Str, Keep),
    ],
};
pub(super) static CORE_V1_LIFECYCLE_HANDLER: Message = Message {
    name: "core.v1.LifecycleHandler",
    fields: &[
        field(1, "exec", Msg(&CORE_V1_EXEC_ACTION), OmitZero),
        field(2, "httpGet", Msg(&CORE_V1_HTTP_GET_ACTION), OmitZero),
        field(3, "tcpSocket", Msg(&CORE_V1_TCP_SOCKET_ACTION), OmitZero),
        field(4, "sleep", Msg(&CORE_V1_SLEEP_ACTION), OmitZero),
    ],
};
pub(super) static CORE_V1_SLEEP_ACTION: Message = Message {
    name: "core.v1.SleepAction",
    fields: &[
        field(1, "seconds", I64, Keep),
    ],
};
pub(super) static CORE_V1_SECURITY_CONTEXT: Message = Message {
    name: "core.v1.SecurityContext",
    fields: &[
        field(1, "capabilities", Msg(&CORE_V1_CAPABILITIES), OmitZero),
        field(2, "privileged", Bool, Keep),
        field(3, "seLinuxOptions", Msg(&CORE_V1_SE_LINUX_OPTIONS), OmitZero),
        field(10, "windowsOptions", Msg(&CORE_V1_WINDOWS_SECURITY_CONTEXT_OPTIONS), OmitZero),
        field(4, "runAsUser", I64, Keep),
        field(8, "runAsGroup", I64, Keep),
        field(5, "runAsNonRoot", Bool, Keep),
        field(6, "readOnlyRootFilesystem", Bool, Keep),
        field(7, "allowPrivilegeEscalation", Bool, Keep),
        field(9, "procMount", Str, Keep),
        field(11, "seccompProfile", Msg(&CORE_V1_SECCOMP_PROFILE), OmitZero),
        field(12, "appArmorProfile", Msg(&CORE_V1_APP_ARMOR_PROFILE), OmitZero),
    ],
};
pub(super) static CORE_V1_CAPABILITIES: Message = Message {
    name: "core.v1.Capabilities",
    fields: &[
        field(1, "add", Str, Repeated),
        field(2, "drop", Str, Repeated),
    ],
};
pub(super) static CORE_V1_SE_LINUX_OPTIONS: Message = Message {
    name: "core.v1.SeLinuxOptions",
    fields: &[
        field(1, "user", Str, OmitZero),
        field(2, "role", Str, OmitZero),
        field(3, "type", Str, OmitZero),
        field(4, "level", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_WINDOWS_SECURITY_CONTEXT_OPTIONS: Message = Message {
    name: "core.v1.WindowsSecurityContextOptions",
    fields: &[
        field(1, "gmsaCredentialSpecName", Str, Keep),
        field(2, "gmsaCredentialSpec", Str, Keep),
        field(3, "runAsUserName", Str, Keep),
        field(4, "hostProcess", Bool, Keep),
    ],
};
pub(super) static CORE_V1_SECCOMP_PROFILE: Message = Message {
    name: "core.v1.SeccompProfile",
    fields: &[
        field(1, "type", Str, Keep),
        field(2, "localhostProfile", Str, Keep),
    ],
};
pub(super) static CORE_V1_APP_ARMOR_PROFILE: Message = Message {
    name: "core.v1.AppArmorProfile",
    fields: &[
        field(1, "type", Str, Keep),
        field(2, "localhostProfile", Str, Keep),
    ],
};
pub(super) static CORE_V1_EPHEMERAL_CONTAINER: Message = Message {
    name: "core.v1.EphemeralContainer",
    fields: &[
        field(1, "", Msg(&CORE_V1_EPHEMERAL_CONTAINER_COMMON), Inline),
        field(2, "targetContainerName", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_EPHEMERAL_CONTAINER_COMMON: Message = Message {
    name: "core.v1.EphemeralContainerCommon",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "image", Str, OmitZero),
        field(3, "command", Str, Repeated),
        field(4, "args", Str, Repeated),
        field(5, "workingDir", Str, OmitZero),
        field(6, "ports", Msg(&CORE_V1_CONTAINER_PORT), Repeated),
        field(19, "envFrom", Msg(&CORE_V1_ENV_FROM_SOURCE), Repeated),
        field(7, "env", Msg(&CORE_V1_ENV_VAR), Repeated),
        field(8, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), OmitZero),
        field(23, "resizePolicy", Msg(&CORE_V1_CONTAINER_RESIZE_POLICY), Repeated),
        field(24, "restartPolicy", Str, Keep),
        field(25, "restartPolicyRules", Msg(&CORE_V1_CONTAINER_RESTART_RULE), Repeated),
        field(9, "volumeMounts", Msg(&CORE_V1_VOLUME_MOUNT), Repeated),
        field(21, "volumeDevices", Msg(&CORE_V1_VOLUME_DEVICE), Repeated),
        field(10, "livenessProbe", Msg(&CORE_V1_PROBE), OmitZero),
        field(11, "readinessProbe", Msg(&CORE_V1_PROBE), OmitZero),
        field(22, "startupProbe", Msg(&CORE_V1_PROBE), OmitZero),
        field(12, "lifecycle", Msg(&CORE_V1_LIFECYCLE), OmitZero),
        field(13, "terminationMessagePath", Str, OmitZero),
        field(20, "terminationMessagePolicy", Str, OmitZero),
        field(14, "imagePullPolicy", Str, OmitZero),
        field(15, "securityContext", Msg(&CORE_V1_SECURITY_CONTEXT), OmitZero),
        field(16, "stdin", Bool, OmitZero),
        field(17, "stdinOnce", Bool, OmitZero),
        field(18, "tty", Bool, OmitZero),
    ],
};
pub(super) static CORE_V1_POD_SECURITY_CONTEXT: Message = Message {
    name: "core.v1.PodSecurityContext",
    fields: &[
        field(1, "seLinuxOptions", Msg(&CORE_V1_SE_LINUX_OPTIONS), OmitZero),
        field(8, "windowsOptions", Msg(&CORE_V1_WINDOWS_SECURITY_CONTEXT_OPTIONS), OmitZero),
        field(2, "runAsUser", I64, Keep),
        field(6, "runAsGroup", I64, Keep),
        field(3, "runAsNonRoot", Bool, Keep),
        field(4, "supplementalGroups", I64, Repeated),
        field(12, "supplementalGroupsPolicy", Str, Keep),
        field(5, "fsGroup", I64, Keep),
        field(7, "sysctls", Msg(&CORE_V1_SYSCTL), Repeated),
        field(9, "fsGroupChangePolicy", Str, Keep),
        field(10, "seccompProfile", Msg(&CORE_V1_SECCOMP_PROFILE), OmitZero),
        field(11, "appArmorProfile", Msg(&CORE_V1_APP_ARMOR_PROFILE), OmitZero),
        field(13, "seLinuxChangePolicy", Str, Keep),
    ],
};
pub(super) static CORE_V1_SYSCTL: Message = Message {
    name: "core.v1.Sysctl",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "value", Str, Keep),
    ],
};
pub(super) static CORE_V1_AFFINITY: Message = Message {
    name: "core.v1.Affinity",
    fields: &[
        field(1, "nodeAffinity", Msg(&CORE_V1_NODE_AFFINITY), OmitZero),
        field(2, "podAffinity", Msg(&CORE_V1_POD_AFFINITY), OmitZero),
        field(3, "podAntiAffinity", Msg(&CORE_V1_POD_ANTI_AFFINITY), OmitZero),
    ],
};
pub(super) static CORE_V1_NODE_AFFINITY: Message = Message {
    name: "core.v1.NodeAffinity",
    fields: &[
        field(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_NODE_SELECTOR), OmitZero),
        field(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_PREFERRED_SCHEDULING_TERM), Repeated),
    ],
};
pub(super) static CORE_V1_NODE_SELECTOR: Message = Message {
    name: "core.v1.NodeSelector",
    fields: &[
        field(1, "nodeSelectorTerms", Msg(&CORE_V1_NODE_SELECTOR_TERM), Repeated),
    ],
};
pub(super) static CORE_V1_NODE_SELECTOR_TERM: Message = Message {
    name: "core.v1.NodeSelectorTerm",
    fields: &[
        field(1, "matchExpressions", Msg(&CORE_V1_NODE_SELECTOR_REQUIREMENT), Repeated),
        field(2, "matchFields", Msg(&CORE_V1_NODE_SELECTOR_REQUIREMENT), Repeated),
    ],
};
pub(super) static CORE_V1_NODE_SELECTOR_REQUIREMENT: Message = Message {
    name: "core.v1.NodeSelectorRequirement",
    fields: &[
        field(1, "key", Str, Keep),
        field(2, "operator", Str, Keep),
        field(3, "values", Str, Repeated),
    ],
};
pub(super) static CORE_V1_PREFERRED_SCHEDULING_TERM: Message = Message {
    name: "core.v1.PreferredSchedulingTerm",
    fields: &[
        field(1, "weight", I32, Keep),
        field(2, "preference", Msg(&CORE_V1_NODE_SELECTOR_TERM), Keep),
    ],
};
pub(super) static CORE_V1_POD_AFFINITY: Message = Message {
    name: "core.v1.PodAffinity",
    fields: &[
        field(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_POD_AFFINITY_TERM), Repeated),
        field(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_WEIGHTED_POD_AFFINITY_TERM), Repeated),
    ],
};
pub(super) static CORE_V1_POD_AFFINITY_TERM: Message = Message {
    name: "core.v1.PodAffinityTerm",
    fields: &[
        field(1, "labelSelector", Msg(&META_V1_LABEL_SELECTOR), OmitZero),
        field(2, "namespaces", Str, Repeated),
        field(3, "topologyKey", Str, Keep),
        field(4, "namespaceSelector", Msg(&META_V1_LABEL_SELECTOR), OmitZero),
        field(5, "matchLabelKeys", Str, Repeated),
        field(6, "mismatchLabelKeys", Str, Repeated),
    ],
};
pub(super) static CORE_V1_WEIGHTED_POD_AFFINITY_TERM: Message = Message {
    name: "core.v1.WeightedPodAffinityTerm",
    fields: &[
        field(1, "weight", I32, Keep),
        field(2, "podAffinityTerm", Msg(&CORE_V1_POD_AFFINITY_TERM), Keep),
    ],
};
pub(super) static CORE_V1_POD_ANTI_AFFINITY: Message = Message {
    name: "core.v1.PodAntiAffinity",
    fields: &[
        field(1, "requiredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_POD_AFFINITY_TERM), Repeated),
        field(2, "preferredDuringSchedulingIgnoredDuringExecution", Msg(&CORE_V1_WEIGHTED_POD_AFFINITY_TERM), Repeated),
    ],
};
pub(super) static CORE_V1_TOLERATION: Message = Message {
    name: "core.v1.Toleration",
    fields: &[
        field(1, "key", Str, OmitZero),
        field(2, "operator", Str, OmitZero),
        field(3, "value", Str, OmitZero),
        field(4, "effect", Str, OmitZero),
        field(5, "tolerationSeconds", I64, Keep),
    ],
};
pub(super) static CORE_V1_HOST_ALIAS: Message = Message {
    name: "core.v1.HostAlias",
    fields: &[
        field(1, "ip", Str, Keep),
        field(2, "hostnames", Str, Repeated),
    ],
};
pub(super) static CORE_V1_POD_DNS_CONFIG: Message = Message {
    name: "core.v1.PodDnsConfig",
    fields: &[
        field(1, "nameservers", Str, Repeated),
        field(2, "searches", Str, Repeated),
        field(3, "options", Msg(&CORE_V1_POD_DNS_CONFIG_OPTION), Repeated),
    ],
};
pub(super) static CORE_V1_POD_DNS_CONFIG_OPTION: Message = Message {
    name: "core.v1.PodDnsConfigOption",
    fields: &[
        field(1, "name", Str, OmitZero),
        field(2, "value", Str, Keep),
    ],
};
pub(super) static CORE_V1_POD_READINESS_GATE: Message = Message {
    name: "core.v1.PodReadinessGate",
    fields: &[
        field(1, "conditionType", Str, Keep),
    ],
};
pub(super) static CORE_V1_TOPOLOGY_SPREAD_CONSTRAINT: Message = Message {
    name: "core.v1.TopologySpreadConstraint",
    fields: &[
        field(1, "maxSkew", I32, Keep),
        field(2, "topologyKey", Str, Keep),
        field(3, "whenUnsatisfiable", Str, Keep),
        field(4, "labelSelector", Msg(&META_V1_LABEL_SELECTOR), OmitZero),
        field(5, "minDomains", I32, Keep),
        field(6, "nodeAffinityPolicy", Str, Keep),
        field(7, "nodeTaintsPolicy", Str, Keep),
        field(8, "matchLabelKeys", Str, Repeated),
    ],
};
pub(super) static CORE_V1_POD_OS: Message = Message {
    name: "core.v1.PodOs",
    fields: &[
        field(1, "name", Str, Keep),
    ],
};
pub(super) static CORE_V1_POD_SCHEDULING_GATE: Message = Message {
    name: "core.v1.PodSchedulingGate",
    fields: &[
        field(1, "name", Str, Keep),
    ],
};
pub(super) static CORE_V1_POD_RESOURCE_CLAIM: Message = Message {
    name: "core.v1.PodResourceClaim",
    fields: &[
        field(1, "name", Str, Keep),
        field(3, "resourceClaimName", Str, Keep),
        field(4, "resourceClaimTemplateName", Str, Keep),
    ],
};
pub(super) static CORE_V1_WORKLOAD_REFERENCE: Message = Message {
    name: "core.v1.WorkloadReference",
    fields: &[
        field(1, "name", Str, OmitZero),
        field(2, "podGroup", Str, OmitZero),
        field(3, "podGroupReplicaKey", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_POD_STATUS: Message = Message {
    name: "core.v1.PodStatus",
    fields: &[
        field(17, "observedGeneration", I64, OmitZero),
        field(1, "phase", Str, OmitZero),
        field(2, "conditions", Msg(&CORE_V1_POD_CONDITION), Repeated),
        field(3, "message", Str, OmitZero),
        field(4, "reason", Str, OmitZero),
        field(11, "nominatedNodeName", Str, OmitZero),
        field(5, "hostIP", Str, OmitZero),
        field(16, "hostIPs", Msg(&CORE_V1_HOST_IP), Repeated),
        field(6, "podIP", Str, OmitZero),
        field(12, "podIPs", Msg(&CORE_V1_POD_IP), Repeated),
        field(7, "startTime", Time, OmitZero),
        field(10, "initContainerStatuses", Msg(&CORE_V1_CONTAINER_STATUS), Repeated),
        field(8, "containerStatuses", Msg(&CORE_V1_CONTAINER_STATUS), Repeated),
        field(9, "qosClass", Str, OmitZero),
        field(13, "ephemeralContainerStatuses", Msg(&CORE_V1_CONTAINER_STATUS), Repeated),
        field(14, "resize", Str, OmitZero),
        field(15, "resourceClaimStatuses", Msg(&CORE_V1_POD_RESOURCE_CLAIM_STATUS), Repeated),
        field(18, "extendedResourceClaimStatus", Msg(&CORE_V1_POD_EXTENDED_RESOURCE_CLAIM_STATUS), OmitZero),
        field(19, "allocatedResources", Quantity, Map),
        field(20, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), OmitZero),
    ],
};
pub(super) static CORE_V1_POD_CONDITION: Message = Message {
    name: "core.v1.PodCondition",
    fields: &[
        field(1, "type", Str, Keep),
        field(7, "observedGeneration", I64, OmitZero),
        field(2, "status", Str, Keep),
        field(3, "lastProbeTime", Time, OmitZero),
        field(4, "lastTransitionTime", Time, OmitZero),
        field(5, "reason", Str, OmitZero),
        field(6, "message", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_HOST_IP: Message = Message {
    name: "core.v1.HostIp",
    fields: &[
        field(1, "ip", Str, Keep),
    ],
};
pub(super) static CORE_V1_POD_IP: Message = Message {
    name: "core.v1.PodIp",
    fields: &[
        field(1, "ip", Str, Keep),
    ],
};
pub(super) static CORE_V1_CONTAINER_STATUS: Message = Message {
    name: "core.v1.ContainerStatus",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "state", Msg(&CORE_V1_CONTAINER_STATE), OmitZero),
        field(3, "lastState", Msg(&CORE_V1_CONTAINER_STATE), OmitZero),
        field(4, "ready", Bool, Keep),
        field(5, "restartCount", I32, Keep),
        field(6, "image", Str, Keep),
        field(7, "imageID", Str, Keep),
        field(8, "containerID", Str, OmitZero),
        field(9, "started", Bool, Keep),
        field(10, "allocatedResources", Quantity, Map),
        field(11, "resources", Msg(&CORE_V1_RESOURCE_REQUIREMENTS), OmitZero),
        field(12, "volumeMounts", Msg(&CORE_V1_VOLUME_MOUNT_STATUS), Repeated),
        field(13, "user", Msg(&CORE_V1_CONTAINER_USER), OmitZero),
        field(14, "allocatedResourcesStatus", Msg(&CORE_V1_RESOURCE_STATUS), Repeated),
        field(15, "stopSignal", Str, Keep),
    ],
};
pub(super) static CORE_V1_CONTAINER_STATE: Message = Message {
    name: "core.v1.ContainerState",
    fields: &[
        field(1, "waiting", Msg(&CORE_V1_CONTAINER_STATE_WAITING), OmitZero),
        field(2, "running", Msg(&CORE_V1_CONTAINER_STATE_RUNNING), OmitZero),
        field(3, "terminated", Msg(&CORE_V1_CONTAINER_STATE_TERMINATED), OmitZero),
    ],
};
pub(super) static CORE_V1_CONTAINER_STATE_WAITING: Message = Message {
    name: "core.v1.ContainerStateWaiting",
    fields: &[
        field(1, "reason", Str, OmitZero),
        field(2, "message", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_CONTAINER_STATE_RUNNING: Message = Message {
    name: "core.v1.ContainerStateRunning",
    fields: &[
        field(1, "startedAt", Time, OmitZero),
    ],
};
pub(super) static CORE_V1_CONTAINER_STATE_TERMINATED: Message = Message {
    name: "core.v1.ContainerStateTerminated",
    fields: &[
        field(1, "exitCode", I32, Keep),
        field(2, "signal", I32, OmitZero),
        field(3, "reason", Str, OmitZero),
        field(4, "message", Str, OmitZero),
        field(5, "startedAt", Time, OmitZero),
        field(6, "finishedAt", Time, OmitZero),
        field(7, "containerID", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_VOLUME_MOUNT_STATUS: Message = Message {
    name: "core.v1.VolumeMountStatus",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "mountPath", Str, Keep),
        field(3, "readOnly", Bool, OmitZero),
        field(4, "recursiveReadOnly", Str, Keep),
    ],
};
pub(super) static CORE_V1_CONTAINER_USER: Message = Message {
    name: "core.v1.ContainerUser",
    fields: &[
        field(1, "linux", Msg(&CORE_V1_LINUX_CONTAINER_USER), OmitZero),
    ],
};
pub(super) static CORE_V1_LINUX_CONTAINER_USER: Message = Message {
    name: "core.v1.LinuxContainerUser",
    fields: &[
        field(1, "uid", I64, Keep),
        field(2, "gid", I64, Keep),
        field(3, "supplementalGroups", I64, Repeated),
    ],
};
pub(super) static CORE_V1_RESOURCE_STATUS: Message = Message {
    name: "core.v1.ResourceStatus",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "resources", Msg(&CORE_V1_RESOURCE_HEALTH), Repeated),
    ],
};
pub(super) static CORE_V1_RESOURCE_HEALTH: Message = Message {
    name: "core.v1.ResourceHealth",
    fields: &[
        field(1, "resourceID", Str, Keep),
        field(2, "health", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_POD_RESOURCE_CLAIM_STATUS: Message = Message {
    name: "core.v1.PodResourceClaimStatus",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "resourceClaimName", Str, Keep),
    ],
};
pub(super) static CORE_V1_POD_EXTENDED_RESOURCE_CLAIM_STATUS: Message = Message {
    name: "core.v1.PodExtendedResourceClaimStatus",
    fields: &[
        field(1, "requestMappings", Msg(&CORE_V1_CONTAINER_EXTENDED_RESOURCE_REQUEST), Repeated),
        field(2, "resourceClaimName", Str, Keep),
    ],
};
pub(super) static CORE_V1_CONTAINER_EXTENDED_RESOURCE_REQUEST: Message = Message {
    name: "core.v1.ContainerExtendedResourceRequest",
    fields: &[
        field(1, "containerName", Str, Keep),
        field(2, "resourceName", Str, Keep),
        field(3, "requestName", Str, Keep),
    ],
};
pub(super) static CORE_V1_NODE: Message = Message {
    name: "core.v1.Node",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "spec", Msg(&CORE_V1_NODE_SPEC), OmitZero),
        field(3, "status", Msg(&CORE_V1_NODE_STATUS), OmitZero),
    ],
};
pub(super) static CORE_V1_NODE_SPEC: Message = Message {
    name: "core.v1.NodeSpec",
    fields: &[
        field(1, "podCIDR", Str, OmitZero),
        field(7, "podCIDRs", Str, Repeated),
        field(3, "providerID", Str, OmitZero),
        field(4, "unschedulable", Bool, OmitZero),
        field(5, "taints", Msg(&CORE_V1_TAINT), Repeated),
        field(6, "configSource", Msg(&CORE_V1_NODE_CONFIG_SOURCE), OmitZero),
        field(2, "externalID", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_TAINT: Message = Message {
    name: "core.v1.Taint",
    fields: &[
        field(1, "key", Str, Keep),
        field(2, "value", Str, OmitZero),
        field(3, "effect", Str, Keep),
        field(4, "timeAdded", Time, OmitZero),
    ],
};
pub(super) static CORE_V1_NODE_CONFIG_SOURCE: Message = Message {
    name: "core.v1.NodeConfigSource",
    fields: &[
        field(2, "configMap", Msg(&CORE_V1_CONFIG_MAP_NODE_CONFIG_SOURCE), OmitZero),
    ],
};
pub(super) static CORE_V1_CONFIG_MAP_NODE_CONFIG_SOURCE: Message = Message {
    name: "core.v1.ConfigMapNodeConfigSource",
    fields: &[
        field(1, "namespace", Str, Keep),
        field(2, "name", Str, Keep),
        field(3, "uid", Str, OmitZero),
        field(4, "resourceVersion", Str, OmitZero),
        field(5, "kubeletConfigKey", Str, Keep),
    ],
};
pub(super) static CORE_V1_NODE_STATUS: Message = Message {
    name: "core.v1.NodeStatus",
    fields: &[
        field(1, "capacity", Quantity, Map),
        field(2, "allocatable", Quantity, Map),
        field(3, "phase", Str, OmitZero),
        field(4, "conditions", Msg(&CORE_V1_NODE_CONDITION), Repeated),
        field(5, "addresses", Msg(&CORE_V1_NODE_ADDRESS), Repeated),
        field(6, "daemonEndpoints", Msg(&CORE_V1_NODE_DAEMON_ENDPOINTS), OmitZero),
        field(7, "nodeInfo", Msg(&CORE_V1_NODE_SYSTEM_INFO), OmitZero),
        field(8, "images", Msg(&CORE_V1_CONTAINER_IMAGE), Repeated),
        field(9, "volumesInUse", Str, Repeated),
        field(10, "volumesAttached", Msg(&CORE_V1_ATTACHED_VOLUME), Repeated),
        field(11, "config", Msg(&CORE_V1_NODE_CONFIG_STATUS), OmitZero),
        field(12, "runtimeHandlers", Msg(&CORE_V1_NODE_RUNTIME_HANDLER), Repeated),
        field(13, "features", Msg(&CORE_V1_NODE_FEATURES), OmitZero),
        field(14, "declaredFeatures", Str, Repeated),
    ],
};
pub(super) static CORE_V1_NODE_CONDITION: Message = Message {
    name: "core.v1.NodeCondition",
    fields: &[
        field(1, "type", Str, Keep),
        field(2, "status", Str, Keep),
        field(3, "lastHeartbeatTime", Time, OmitZero),
        field(4, "lastTransitionTime", Time, OmitZero),
        field(5, "reason", Str, OmitZero),
        field(6, "message", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_NODE_ADDRESS: Message = Message {
    name: "core.v1.NodeAddress",
    fields: &[
        field(1, "type", Str, Keep),
        field(2, "address", Str, Keep),
    ],
};
pub(super) static CORE_V1_NODE_DAEMON_ENDPOINTS: Message = Message {
    name: "core.v1.NodeDaemonEndpoints",
    fields: &[
        field(1, "kubeletEndpoint", Msg(&CORE_V1_DAEMON_ENDPOINT), OmitZero),
    ],
};
pub(super) static CORE_V1_DAEMON_ENDPOINT: Message = Message {
    name: "core.v1.DaemonEndpoint",
    fields: &[
        field(1, "Port", I32, Keep),
    ],
};
pub(super) static CORE_V1_NODE_SYSTEM_INFO: Message = Message {
    name: "core.v1.NodeSystemInfo",
    fields: &[
        field(1, "machineID", Str, Keep),
        field(2, "systemUUID", Str, Keep),
        field(3, "bootID", Str, Keep),
        field(4, "kernelVersion", Str, Keep),
        field(5, "osImage", Str, Keep),
        field(6, "containerRuntimeVersion", Str, Keep),
        field(7, "kubeletVersion", Str, Keep),
        field(8, "kubeProxyVersion", Str, Keep),
        field(9, "operatingSystem", Str, Keep),
        field(10, "architecture", Str, Keep),
        field(11, "swap", Msg(&CORE_V1_NODE_SWAP_STATUS), OmitZero),
    ],
};
pub(super) static CORE_V1_NODE_SWAP_STATUS: Message = Message {
    name: "core.v1.NodeSwapStatus",
    fields: &[
        field(1, "capacity", I64, Keep),
    ],
};
pub(super) static CORE_V1_CONTAINER_IMAGE: Message = Message {
    name: "core.v1.ContainerImage",
    fields: &[
        field(1, "names", Str, Repeated),
        field(2, "sizeBytes", I64, OmitZero),
    ],
};
pub(super) static CORE_V1_ATTACHED_VOLUME: Message = Message {
    name: "core.v1.AttachedVolume",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "devicePath", Str, Keep),
    ],
};
pub(super) static CORE_V1_NODE_CONFIG_STATUS: Message = Message {
    name: "core.v1.NodeConfigStatus",
    fields: &[
        field(1, "assigned", Msg(&CORE_V1_NODE_CONFIG_SOURCE), OmitZero),
        field(2, "active", Msg(&CORE_V1_NODE_CONFIG_SOURCE), OmitZero),
        field(3, "lastKnownGood", Msg(&CORE_V1_NODE_CONFIG_SOURCE), OmitZero),
        field(4, "error", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_NODE_RUNTIME_HANDLER: Message = Message {
    name: "core.v1.NodeRuntimeHandler",
    fields: &[
        field(1, "name", Str, OmitZero),
        field(2, "features", Msg(&CORE_V1_NODE_RUNTIME_HANDLER_FEATURES), OmitZero),
    ],
};
pub(super) static CORE_V1_NODE_RUNTIME_HANDLER_FEATURES: Message = Message {
    name: "core.v1.NodeRuntimeHandlerFeatures",
    fields: &[
        field(1, "recursiveReadOnlyMounts", Bool, Keep),
        field(2, "userNamespaces", Bool, Keep),
    ],
};
pub(super) static CORE_V1_NODE_FEATURES: Message = Message {
    name: "core.v1.NodeFeatures",
    fields: &[
        field(1, "supplementalGroupsPolicy", Bool, Keep),
    ],
};
pub(super) static CORE_V1_SERVICE: Message = Message {
    name: "core.v1.Service",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "spec", Msg(&CORE_V1_SERVICE_SPEC), OmitZero),
        field(3, "status", Msg(&CORE_V1_SERVICE_STATUS), OmitZero),
    ],
};
pub(super) static CORE_V1_SERVICE_SPEC: Message = Message {
    name: "core.v1.ServiceSpec",
    fields: &[
        field(1, "ports", Msg(&CORE_V1_SERVICE_PORT), Repeated),
        field(2, "selector", Str, Map),
        field(3, "clusterIP", Str, OmitZero),
        field(18, "clusterIPs", Str, Repeated),
        field(4, "type", Str, OmitZero),
        field(5, "externalIPs", Str, Repeated),
        field(7, "sessionAffinity", Str, OmitZero),
        field(8, "loadBalancerIP", Str, OmitZero),
        field(9, "loadBalancerSourceRanges", Str, Repeated),
        field(10, "externalName", Str, OmitZero),
        field(11, "externalTrafficPolicy", Str, OmitZero),
        field(12, "healthCheckNodePort", I32, OmitZero),
        field(13, "publishNotReadyAddresses", Bool, OmitZero),
        field(14, "sessionAffinityConfig", Msg(&CORE_V1_SESSION_AFFINITY_CONFIG), OmitZero),
        field(19, "ipFamilies", Str, Repeated),
        field(17, "ipFamilyPolicy", Str, Keep),
        field(20, "allocateLoadBalancerNodePorts", Bool, Keep),
        field(21, "loadBalancerClass", Str, Keep),
        field(22, "internalTrafficPolicy", Str, Keep),
        field(23, "trafficDistribution", Str, Keep),
    ],
};
pub(super) static CORE_V1_SERVICE_PORT: Message = Message {
    name: "core.v1.ServicePort",
    fields: &[
        field(1, "name", Str, OmitZero),
        field(2, "protocol", Str, OmitZero),
        field(6, "appProtocol", Str, Keep),
        field(3, "port", I32, Keep),
        field(4, "targetPort", IntOrString, OmitZero),
        field(5, "nodePort", I32, OmitZero),
    ],
};
pub(super) static CORE_V1_SESSION_AFFINITY_CONFIG: Message = Message {
    name: "core.v1.SessionAffinityConfig",
    fields: &[
        field(1, "clientIP", Msg(&CORE_V1_CLIENT_IP_CONFIG), OmitZero),
    ],
};
pub(super) static CORE_V1_CLIENT_IP_CONFIG: Message = Message {
    name: "core.v1.ClientIpConfig",
    fields: &[
        field(1, "timeoutSeconds", I32, Keep),
    ],
};
pub(super) static CORE_V1_SERVICE_STATUS: Message = Message {
    name: "core.v1.ServiceStatus",
    fields: &[
        field(1, "loadBalancer", Msg(&CORE_V1_LOAD_BALANCER_STATUS), OmitZero),
        field(2, "conditions", Msg(&META_V1_CONDITION), Repeated),
    ],
};
pub(super) static CORE_V1_LOAD_BALANCER_STATUS: Message = Message {
    name: "core.v1.LoadBalancerStatus",
    fields: &[
        field(1, "ingress", Msg(&CORE_V1_LOAD_BALANCER_INGRESS), Repeated),
    ],
};
pub(super) static CORE_V1_LOAD_BALANCER_INGRESS: Message = Message {
    name: "core.v1.LoadBalancerIngress",
    fields: &[
        field(1, "ip", Str, OmitZero),
        field(2, "hostname", Str, OmitZero),
        field(3, "ipMode", Str, Keep),
        field(4, "ports", Msg(&CORE_V1_PORT_STATUS), Repeated),
    ],
};
pub(super) static CORE_V1_PORT_STATUS: Message = Message {
    name: "core.v1.PortStatus",
    fields: &[
        field(1, "port", I32, Keep),
        field(2, "protocol", Str, Keep),
        field(3, "error", Str, Keep),
    ],
};
pub(super) static META_V1_CONDITION: Message = Message {
    name: "meta.v1.Condition",
    fields: &[
        field(1, "type", Str, Keep),
        field(2, "status", Str, Keep),
        field(3, "observedGeneration", I64, OmitZero),
        field(4, "lastTransitionTime", Time, Keep),
        field(5, "reason", Str, Keep),
        field(6, "message", Str, Keep),
    ],
};
pub(super) static CORE_V1_ENDPOINTS: Message = Message {
    name: "core.v1.Endpoints",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "subsets", Msg(&CORE_V1_ENDPOINT_SUBSET), Repeated),
    ],
};
pub(super) static CORE_V1_ENDPOINT_SUBSET: Message = Message {
    name: "core.v1.EndpointSubset",
    fields: &[
        field(1, "addresses", Msg(&CORE_V1_ENDPOINT_ADDRESS), Repeated),
        field(2, "notReadyAddresses", Msg(&CORE_V1_ENDPOINT_ADDRESS), Repeated),
        field(3, "ports", Msg(&CORE_V1_ENDPOINT_PORT), Repeated),
    ],
};
pub(super) static CORE_V1_ENDPOINT_ADDRESS: Message = Message {
    name: "core.v1.EndpointAddress",
    fields: &[
        field(1, "ip", Str, Keep),
        field(3, "hostname", Str, OmitZero),
        field(4, "nodeName", Str, Keep),
        field(2, "targetRef", Msg(&CORE_V1_OBJECT_REFERENCE), OmitZero),
    ],
};
pub(super) static CORE_V1_OBJECT_REFERENCE: Message = Message {
    name: "core.v1.ObjectReference",
    fields: &[
        field(1, "kind", Str, OmitZero),
        field(2, "namespace", Str, OmitZero),
        field(3, "name", Str, OmitZero),
        field(4, "uid", Str, OmitZero),
        field(5, "apiVersion", Str, OmitZero),
        field(6, "resourceVersion", Str, OmitZero),
        field(7, "fieldPath", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_ENDPOINT_PORT: Message = Message {
    name: "core.v1.EndpointPort",
    fields: &[
        field(1, "name", Str, OmitZero),
        field(2, "port", I32, Keep),
        field(3, "protocol", Str, OmitZero),
        field(4, "appProtocol", Str, Keep),
    ],
};
pub(super) static CORE_V1_CONFIG_MAP: Message = Message {
    name: "core.v1.ConfigMap",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(4, "immutable", Bool, Keep),
        field(2, "data", Str, Map),
        field(3, "binaryData", Bytes, Map),
    ],
};
pub(super) static CORE_V1_SECRET: Message = Message {
    name: "core.v1.Secret",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(5, "immutable", Bool, Keep),
        field(2, "data", Bytes, Map),
        field(4, "stringData", Str, Map),
        field(3, "type", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_SERVICE_ACCOUNT: Message = Message {
    name: "core.v1.ServiceAccount",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "secrets", Msg(&CORE_V1_OBJECT_REFERENCE), Repeated),
        field(3, "imagePullSecrets", Msg(&CORE_V1_LOCAL_OBJECT_REFERENCE), Repeated),
        field(4, "automountServiceAccountToken", Bool, Keep),
    ],
};
pub(super) static CORE_V1_EVENT: Message = Message {
    name: "core.v1.Event",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "involvedObject", Msg(&CORE_V1_OBJECT_REFERENCE), Keep),
        field(3, "reason", Str, OmitZero),
        field(4, "message", Str, OmitZero),
        field(5, "source", Msg(&CORE_V1_EVENT_SOURCE), OmitZero),
        field(6, "firstTimestamp", Time, OmitZero),
        field(7, "lastTimestamp", Time, OmitZero),
        field(8, "count", I32, OmitZero),
        field(9, "type", Str, OmitZero),
        field(10, "eventTime", MicroTime, OmitZero),
        field(11, "series", Msg(&CORE_V1_EVENT_SERIES), OmitZero),
        field(12, "action", Str, OmitZero),
        field(13, "related", Msg(&CORE_V1_OBJECT_REFERENCE), OmitZero),
        field(14, "reportingComponent", Str, OmitZero),
        field(15, "reportingInstance", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_EVENT_SOURCE: Message = Message {
    name: "core.v1.EventSource",
    fields: &[
        field(1, "component", Str, OmitZero),
        field(2, "host", Str, OmitZero),
    ],
};
pub(super) static CORE_V1_EVENT_SERIES: Message = Message {
    name: "core.v1.EventSeries",
    fields: &[
        field(1, "count", I32, OmitZero),
        field(2, "lastObservedTime", MicroTime, OmitZero),
    ],
};
pub(super) static CORE_V1_BINDING: Message = Message {
    name: "core.v1.Binding",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "target", Msg(&CORE_V1_OBJECT_REFERENCE), Keep),
    ],
};
pub(super) static APPS_V1_DEPLOYMENT: Message = Message {
    name: "apps.v1.Deployment",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "spec", Msg(&APPS_V1_DEPLOYMENT_SPEC), OmitZero),
        field(3, "status", Msg(&APPS_V1_DEPLOYMENT_STATUS), OmitZero),
    ],
};
pub(super) static APPS_V1_DEPLOYMENT_SPEC: Message = Message {
    name: "apps.v1.DeploymentSpec",
    fields: &[
        field(1, "replicas", I32, Keep),
        field(2, "selector", Msg(&META_V1_LABEL_SELECTOR), Keep),
        field(3, "template", Msg(&CORE_V1_POD_TEMPLATE_SPEC), Keep),
        field(4, "strategy", Msg(&APPS_V1_DEPLOYMENT_STRATEGY), OmitZero),
        field(5, "minReadySeconds", I32, OmitZero),
        field(6, "revisionHistoryLimit", I32, Keep),
        field(7, "paused", Bool, OmitZero),
        field(9, "progressDeadlineSeconds", I32, Keep),
    ],
};
pub(super) static CORE_V1_POD_TEMPLATE_SPEC: Message = Message {
    name: "core.v1.PodTemplateSpec",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), OmitZero),
        field(2, "spec", Msg(&CORE_V1_POD_SPEC), OmitZero),
    ],
};
pub(super) static APPS_V1_DEPLOYMENT_STRATEGY: Message = Message {
    name: "apps.v1.DeploymentStrategy",
    fields: &[
        field(1, "type", Str, OmitZero),
        field(2, "rollingUpdate", Msg(&APPS_V1_ROLLING_UPDATE_DEPLOYMENT), OmitZero),
    ],
};
pub(super) static APPS_V1_ROLLING_UPDATE_DEPLOYMENT: Message = Message {
    name: "apps.v1.RollingUpdateDeployment",
    fields: &[
        field(1, "maxUnavailable", IntOrString, OmitZero),
        field(2, "maxSurge", IntOrString, OmitZero),
    ],
};
pub(super) static APPS_V1_DEPLOYMENT_STATUS: Message = Message {
    name: "apps.v1.DeploymentStatus",
    fields: &[
        field(1, "observedGeneration", I64, OmitZero),
        field(2, "replicas", I32, OmitZero),
        field(3, "updatedReplicas", I32, OmitZero),
        field(7, "readyReplicas", I32, OmitZero),
        field(4, "availableReplicas", I32, OmitZero),
        field(5, "unavailableReplicas", I32, OmitZero),
        field(9, "terminatingReplicas", I32, Keep),
        field(6, "conditions", Msg(&APPS_V1_DEPLOYMENT_CONDITION), Repeated),
        field(8, "collisionCount", I32, Keep),
    ],
};
pub(super) static APPS_V1_DEPLOYMENT_CONDITION: Message = Message {
    name: "apps.v1.DeploymentCondition",
    fields: &[
        field(1, "type", Str, Keep),
        field(2, "status", Str, Keep),
        field(6, "lastUpdateTime", Time, OmitZero),
        field(7, "lastTransitionTime", Time, OmitZero),
        field(4, "reason", Str, OmitZero),
        field(5, "message", Str, OmitZero),
    ],
};
pub(super) static APPS_V1_REPLICA_SET: Message = Message {
    name: "apps.v1.ReplicaSet",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "spec", Msg(&APPS_V1_REPLICA_SET_SPEC), OmitZero),
        field(3, "status", Msg(&APPS_V1_REPLICA_SET_STATUS), OmitZero),
    ],
};
pub(super) static APPS_V1_REPLICA_SET_SPEC: Message = Message {
    name: "apps.v1.ReplicaSetSpec",
    fields: &[
        field(1, "replicas", I32, Keep),
        field(4, "minReadySeconds", I32, OmitZero),
        field(2, "selector", Msg(&META_V1_LABEL_SELECTOR), Keep),
        field(3, "template", Msg(&CORE_V1_POD_TEMPLATE_SPEC), OmitZero),
    ],
};
pub(super) static APPS_V1_REPLICA_SET_STATUS: Message = Message {
    name: "apps.v1.ReplicaSetStatus",
    fields: &[
        field(1, "replicas", I32, Keep),
        field(2, "fullyLabeledReplicas", I32, OmitZero),
        field(4, "readyReplicas", I32, OmitZero),
        field(5, "availableReplicas", I32, OmitZero),
        field(7, "terminatingReplicas", I32, Keep),
        field(3, "observedGeneration", I64, OmitZero),
        field(6, "conditions", Msg(&APPS_V1_REPLICA_SET_CONDITION), Repeated),
    ],
};
pub(super) static APPS_V1_REPLICA_SET_CONDITION: Message = Message {
    name: "apps.v1.ReplicaSetCondition",
    fields: &[
        field(1, "type", Str, Keep),
        field(2, "status", Str, Keep),
        field(3, "lastTransitionTime", Time, OmitZero),
        field(4, "reason", Str, OmitZero),
        field(5, "message", Str, OmitZero),
    ],
};
pub(super) static COORDINATION_V1_LEASE: Message = Message {
    name: "coordination.v1.Lease",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "spec", Msg(&COORDINATION_V1_LEASE_SPEC), OmitZero),
    ],
};
pub(super) static COORDINATION_V1_LEASE_SPEC: Message = Message {
    name: "coordination.v1.LeaseSpec",
    fields: &[
        field(1, "holderIdentity", Str, Keep),
        field(2, "leaseDurationSeconds", I32, Keep),
        field(3, "acquireTime", MicroTime, OmitZero),
        field(4, "renewTime", MicroTime, OmitZero),
        field(5, "leaseTransitions", I32, Keep),
        field(6, "strategy", Str, Keep),
        field(7, "preferredHolder", Str, Keep),
    ],
};
pub(super) static DISCOVERY_V1_ENDPOINT_SLICE: Message = Message {
    name: "discovery.v1.EndpointSlice",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(4, "addressType", Str, Keep),
        field(2, "endpoints", Msg(&DISCOVERY_V1_ENDPOINT), Repeated),
        field(3, "ports", Msg(&DISCOVERY_V1_ENDPOINT_PORT), Repeated),
    ],
};
pub(super) static DISCOVERY_V1_ENDPOINT: Message = Message {
    name: "discovery.v1.Endpoint",
    fields: &[
        field(1, "addresses", Str, Repeated),
        field(2, "conditions", Msg(&DISCOVERY_V1_ENDPOINT_CONDITIONS), OmitZero),
        field(3, "hostname", Str, Keep),
        field(4, "targetRef", Msg(&CORE_V1_OBJECT_REFERENCE), OmitZero),
        field(5, "deprecatedTopology", Str, Map),
        field(6, "nodeName", Str, Keep),
        field(7, "zone", Str, Keep),
        field(8, "hints", Msg(&DISCOVERY_V1_ENDPOINT_HINTS), OmitZero),
    ],
};
pub(super) static DISCOVERY_V1_ENDPOINT_CONDITIONS: Message = Message {
    name: "discovery.v1.EndpointConditions",
    fields: &[
        field(1, "ready", Bool, Keep),
        field(2, "serving", Bool, Keep),
        field(3, "terminating", Bool, Keep),
    ],
};
pub(super) static DISCOVERY_V1_ENDPOINT_HINTS: Message = Message {
    name: "discovery.v1.EndpointHints",
    fields: &[
        field(1, "forZones", Msg(&DISCOVERY_V1_FOR_ZONE), Repeated),
        field(2, "forNodes", Msg(&DISCOVERY_V1_FOR_NODE), Repeated),
    ],
};
pub(super) static DISCOVERY_V1_FOR_ZONE: Message = Message {
    name: "discovery.v1.ForZone",
    fields: &[
        field(1, "name", Str, Keep),
    ],
};
pub(super) static DISCOVERY_V1_FOR_NODE: Message = Message {
    name: "discovery.v1.ForNode",
    fields: &[
        field(1, "name", Str, Keep),
    ],
};
pub(super) static DISCOVERY_V1_ENDPOINT_PORT: Message = Message {
    name: "discovery.v1.EndpointPort",
    fields: &[
        field(1, "name", Str, Keep),
        field(2, "protocol", Str, Keep),
        field(3, "port", I32, Keep),
        field(4, "appProtocol", Str, Keep),
    ],
};
pub(super) static META_V1_DELETE_OPTIONS: Message = Message {
    name: "meta.v1.DeleteOptions",
    fields: &[
        field(1, "gracePeriodSeconds", I64, Keep),
        field(2, "preconditions", Msg(&META_V1_PRECONDITIONS), OmitZero),
        field(3, "orphanDependents", Bool, Keep),
        field(4, "propagationPolicy", Str, Keep),
        field(5, "dryRun", Str, Repeated),
        field(6, "ignoreStoreReadErrorWithClusterBreakingPotential", Bool, Keep),
    ],
};
pub(super) static META_V1_PRECONDITIONS: Message = Message {
    name: "meta.v1.Preconditions",
    fields: &[
        field(1, "uid", Str, Keep),
        field(2, "resourceVersion", Str, Keep),
    ],
};
pub(super) static AUTOSCALING_V1_SCALE: Message = Message {
    name: "autoscaling.v1.Scale",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "spec", Msg(&AUTOSCALING_V1_SCALE_SPEC), OmitZero),
        field(3, "status", Msg(&AUTOSCALING_V1_SCALE_STATUS), OmitZero),
    ],
};
pub(super) static AUTOSCALING_V1_SCALE_SPEC: Message = Message {
    name: "autoscaling.v1.ScaleSpec",
    fields: &[
        field(1, "replicas", I32, Keep),
    ],
};
pub(super) static AUTOSCALING_V1_SCALE_STATUS: Message = Message {
    name: "autoscaling.v1.ScaleStatus",
    fields: &[
        field(1, "replicas", I32, Keep),
        field(2, "selector", Str, OmitZero),
    ],
};
pub(super) static RBAC_V1_ROLE: Message = Message {
    name: "rbac.v1.Role",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "rules", Msg(&RBAC_V1_POLICY_RULE), Repeated),
    ],
};
pub(super) static RBAC_V1_CLUSTER_ROLE: Message = Message {
    name: "rbac.v1.ClusterRole",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "rules", Msg(&RBAC_V1_POLICY_RULE), Repeated),
        field(3, "aggregationRule", Msg(&RBAC_V1_AGGREGATION_RULE), OmitZero),
    ],
};
pub(super) static RBAC_V1_AGGREGATION_RULE: Message = Message {
    name: "rbac.v1.AggregationRule",
    fields: &[
        field(1, "clusterRoleSelectors", Msg(&META_V1_LABEL_SELECTOR), Repeated),
    ],
};
pub(super) static RBAC_V1_POLICY_RULE: Message = Message {
    name: "rbac.v1.PolicyRule",
    fields: &[
        field(1, "verbs", Str, Repeated),
        field(2, "apiGroups", Str, Repeated),
        field(3, "resources", Str, Repeated),
        field(4, "resourceNames", Str, Repeated),
        field(5, "nonResourceURLs", Str, Repeated),
    ],
};
pub(super) static RBAC_V1_ROLE_BINDING: Message = Message {
    name: "rbac.v1.RoleBinding",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "subjects", Msg(&RBAC_V1_SUBJECT), Repeated),
        field(3, "roleRef", Msg(&RBAC_V1_ROLE_REF), Keep),
    ],
};
pub(super) static RBAC_V1_CLUSTER_ROLE_BINDING: Message = Message {
    name: "rbac.v1.ClusterRoleBinding",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(2, "subjects", Msg(&RBAC_V1_SUBJECT), Repeated),
        field(3, "roleRef", Msg(&RBAC_V1_ROLE_REF), Keep),
    ],
};
pub(super) static RBAC_V1_SUBJECT: Message = Message {
    name: "rbac.v1.Subject",
    fields: &[
        field(1, "kind", Str, Keep),
        field(2, "apiGroup", Str, OmitZero),
        field(3, "name", Str, Keep),
        field(4, "namespace", Str, OmitZero),
    ],
};
// `kubectl auth can-i` sends its reviews as protobuf. Only the spec is read; a status a
// client sends is ignored by the handler.
pub(super) static AUTHORIZATION_V1_SELF_SUBJECT_ACCESS_REVIEW: Message = Message {
    name: "authorization.v1.SelfSubjectAccessReview",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(
            2,
            "spec",
            Msg(&AUTHORIZATION_V1_SELF_SUBJECT_ACCESS_REVIEW_SPEC),
            Keep,
        ),
    ],
};
pub(super) static AUTHORIZATION_V1_SELF_SUBJECT_ACCESS_REVIEW_SPEC: Message = Message {
    name: "authorization.v1.SelfSubjectAccessReviewSpec",
    fields: &[
        field(
            1,
            "resourceAttributes",
            Msg(&AUTHORIZATION_V1_RESOURCE_ATTRIBUTES),
            Keep,
        ),
        field(
            2,
            "nonResourceAttributes",
            Msg(&AUTHORIZATION_V1_NON_RESOURCE_ATTRIBUTES),
            Keep,
        ),
    ],
};
pub(super) static AUTHORIZATION_V1_RESOURCE_ATTRIBUTES: Message = Message {
    name: "authorization.v1.ResourceAttributes",
    fields: &[
        field(1, "namespace", Str, OmitZero),
        field(2, "verb", Str, OmitZero),
        field(3, "group", Str, OmitZero),
        field(4, "version", Str, OmitZero),
        field(5, "resource", Str, OmitZero),
        field(6, "subresource", Str, OmitZero),
        field(7, "name", Str, OmitZero),
    ],
};
pub(super) static AUTHORIZATION_V1_NON_RESOURCE_ATTRIBUTES: Message = Message {
    name: "authorization.v1.NonResourceAttributes",
    fields: &[
        field(1, "path", Str, OmitZero),
        field(2, "verb", Str, OmitZero),
    ],
};
pub(super) static AUTHORIZATION_V1_SELF_SUBJECT_RULES_REVIEW: Message = Message {
    name: "authorization.v1.SelfSubjectRulesReview",
    fields: &[
        field(1, "metadata", Msg(&META_V1_OBJECT_META), Keep),
        field(
            2,
            "spec",
            Msg(&AUTHORIZATION_V1_SELF_SUBJECT_RULES_REVIEW_SPEC),
            Keep,
        ),
    ],
};
pub(super) static AUTHORIZATION_V1_SELF_SUBJECT_RULES_REVIEW_SPEC: Message = Message {
    name: "authorization.v1.SelfSubjectRulesReviewSpec",
    fields: &[field(1, "namespace", Str, OmitZero)],
};
pub(super) static RBAC_V1_ROLE_REF: Message = Message {
    name: "rbac.v1.RoleRef",
    fields: &[
        field(1, "apiGroup", Str, Keep),
        field(2, "kind", Str, Keep),
        field(3, "name", Str, Keep),
    ],
};
}

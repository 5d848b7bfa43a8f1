//! Manifest loading: the files of a [`Snapshot`](super::source::Snapshot) turned into
//! Kubernetes objects, each with the `file:line` it came from, and every problem reported
//! as a [`LoadError`] with `file:line` too.
//!
//! This module owns reading the two file formats (multi-document YAML, one-value JSON),
//! expanding `List` kinds into their items, and the few shape checks every object needs
//! before anything else can even name it (`apiVersion`, `kind`, `metadata.name`). It does not
//! validate kinds or fields beyond that — the API server does, through a server-side dry-run
//! — and it never touches the cluster or the filesystem.
//!
//! Loading is all-or-report: [`load`] always returns every object it could read *and* every
//! error of every file, so a person fixes all their typos in one round, and the caller
//! decides (it refuses to apply anything while there are errors).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::source::SourceFile;

/// The largest manifest file [`load`] reads, in bytes (4 MiB). Kubernetes itself refuses
/// request bodies of about this size, so a bigger file is a mistake (a log or a data dump
/// saved with a `.yaml` name), not a manifest.
/// Sources refuse bigger files before reading them; this check covers snapshots built
/// any other way.
pub const MAX_FILE_BYTES: usize = super::source::MAX_FILE_BYTES as usize;

/// One Kubernetes object read from a file.
#[derive(Clone, PartialEq)]
pub struct Manifest {
    /// The file's path, relative to the source root (as in [`SourceFile::path`]).
    pub file: String,
    /// The 1-based line where the object's document starts: its first line that is not
    /// blank, a comment or a bare `---`. Items of a `List` carry the `List`'s line.
    pub line: usize,
    /// The object, with at least a non-empty `apiVersion`, `kind` and `metadata.name`.
    pub object: Value,
}

// By hand, so that `{:?}` of a Secret's manifest never prints its values.
impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut object = self.object.clone();
        let is_secret = object.get("apiVersion").and_then(Value::as_str) == Some("v1")
            && object.get("kind").and_then(Value::as_str) == Some("Secret");
        if is_secret {
            super::plan::mask_secret(Some(&mut object), None);
        }
        f.debug_struct("Manifest")
            .field("file", &self.file)
            .field("line", &self.line)
            .field("object", &object)
            .finish()
    }
}

/// A problem with one file or one document in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", LineSuffix(*line))]
pub struct LoadError {
    /// The file's path, relative to the source root.
    pub file: String,
    /// The 1-based line the problem is on, or 0 when no line applies (a file too large,
    /// of an unknown type).
    pub line: usize,
    /// What is wrong, naming the field when there is one (`metadata.name is missing`).
    pub message: String,
}

/// Prints `:{line}` after a file name, or nothing for line 0 ("no line applies").
struct LineSuffix(usize);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            Ok(())
        } else {
            write!(f, ":{}", self.0)
        }
    }
}

/// Reads every file into objects. Returns all the objects that are fine and all the errors
/// of all the files (not just the first): an error in one document does not hide the
/// documents after it. Files are read in the order given; objects come out in file order,
/// then document order, then `List` item order.
pub fn load(files: &[SourceFile]) -> (Vec<Manifest>, Vec<LoadError>) {
    let mut out = Output::default();
    for file in files {
        load_file(file, &mut out);
    }
    (out.manifests, out.errors)
}

/// What [`load`] collects.
#[derive(Default)]
struct Output {
    manifests: Vec<Manifest>,
    errors: Vec<LoadError>,
}

impl Output {
    fn error(&mut self, file: &str, line: usize, message: impl Into<String>) {
        self.errors.push(LoadError {
            file: file.to_owned(),
            line,
            message: message.into(),
        });
    }
}

/// The two file formats; they differ in how a document is split and in the words used for
/// "mapping" and "sequence" in messages, so a JSON author reads JSON terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
}

impl Format {
    fn of(path: &str) -> Option<Format> {
        match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("yaml" | "yml") => Some(Format::Yaml),
            Some("json") => Some(Format::Json),
            _ => None,
        }
    }

    /// How a value's type is named in messages: "a mapping", "a sequence", ...
    fn describe(self, value: &Value) -> &'static str {
        match (value, self) {
            (Value::Object(_), Format::Yaml) => "a mapping",
            (Value::Object(_), Format::Json) => "an object",
            (Value::Array(_), Format::Yaml) => "a sequence",
            (Value::Array(_), Format::Json) => "an array",
            (Value::String(_), _) => "a string",
            (Value::Number(_), _) => "a number",
            (Value::Bool(_), _) => "a boolean",
            (Value::Null, _) => "null",
        }
    }

    fn mapping(self) -> &'static str {
        match self {
            Format::Yaml => "a mapping",
            Format::Json => "an object",
        }
    }

    fn sequence(self) -> &'static str {
        match self {
            Format::Yaml => "a sequence",
            Format::Json => "an array",
        }
    }
}

/// The number of lines of a file as an editor counts them (at least 1, a trailing newline
/// does not start a line). Every reported line is clamped to this, because parsers report
/// "unexpected end" one line past the last newline.
fn line_count(bytes: &[u8]) -> usize {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    let unterminated_last = bytes.last().is_some_and(|&b| b != b'\n');
    (newlines + usize::from(unterminated_last)).max(1)
}

fn load_file(file: &SourceFile, out: &mut Output) {
    let path = file.path.as_str();
    let bytes = file.bytes.as_slice();
    if bytes.len() > MAX_FILE_BYTES {
        out.error(
            path,
            0,
            format!(
                "file is {} bytes, larger than the {} MiB limit for a manifest file",
                bytes.len(),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        );
        return;
    }
    let Some(format) = Format::of(path) else {
        out.error(
            path,
            0,
            "not a manifest file: expected a .yaml, .yml or .json extension",
        );
        return;
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = bytes.get(..err.valid_up_to()).unwrap_or_default();
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            out.error(
                path,
                line,
                format!(
                    "invalid UTF-8 at byte {}: manifests must be UTF-8 text",
                    err.valid_up_to()
                ),
            );
            return;
        }
    };
    // Editors on Windows like to start files with a byte order mark; neither YAML nor JSON
    // consumers in Kubernetes reject it, so neither do we. It never changes line numbers.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = line_count(bytes);
    match format {
        Format::Yaml => load_yaml(path, text, lines, out),
        Format::Json => load_json(path, text, lines, out),
    }
}

// ---------------------------------------------------------------------------------------
// YAML

/// One YAML document of a file: the text between document markers, where it sits in the
/// file, and the line of its first content (what [`Manifest::line`] reports).
#[derive(Debug, PartialEq, Eq)]
struct Document<'a> {
    text: &'a str,
    /// 1-based line of the document's first line (its `---`, or what follows the previous
    /// document). serde_yaml counts lines from here.
    first_line: usize,
    /// 1-based line of its last line.
    last_line: usize,
    /// 1-based line of its first line that is not blank, a comment, a directive or a bare
    /// marker; `None` for a document with nothing in it.
    content_line: Option<usize>,
}

/// What a line means to the document splitter.
enum LineKind {
    /// `---` at column 0: starts a document. `content` when something other than a comment
    /// follows on the same line (`--- !tag`, `--- {a: 1}`).
    Start { content: bool },
    /// `...` at column 0: ends a document.
    End,
    /// Blank, a comment, or a `%` directive: no content.
    Nothing,
    /// Anything else.
    Content,
}

fn classify(line: &str) -> LineKind {
    // A marker is exactly three characters at column 0 followed by the end of the line or
    // by whitespace; `---foo` is a plain scalar, not a marker.
    let marker_rest = |marker: &str| {
        line.strip_prefix(marker)
            .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    };
    if let Some(rest) = marker_rest("---") {
        let rest = rest.trim();
        return LineKind::Start {
            content: !rest.is_empty() && !rest.starts_with('#'),
        };
    }
    if marker_rest("...").is_some() {
        return LineKind::End;
    }
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') || line.starts_with('%') {
        LineKind::Nothing
    } else {
        LineKind::Content
    }
}

/// Splits a YAML stream into its documents, keeping each document's position. Splitting
/// ourselves (rather than letting serde_yaml iterate documents) is what lets an error in
/// one document still report the documents after it, and lets each error carry the line
/// in the file rather than in the document.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut start = 0; // byte offset where the current document starts
    let mut first_line = 1;
    let mut has_marker = false;
    let mut content_line = None;
    let mut offset = 0; // byte offset of the current line
    let mut line_no = 0;
    for line in text.split_inclusive('\n') {
        line_no += 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        match classify(bare) {
            LineKind::Start { content } => {
                // Comments and directives before the first `---` belong to the document
                // that `---` starts; anything else before it is a document of its own.
                if has_marker || content_line.is_some() {
                    documents.push(Document {
                        text: text.get(start..offset).unwrap_or_default(),
                        first_line,
                        last_line: line_no - 1,
                        content_line,
                    });
                    start = offset;
                    first_line = line_no;
                    content_line = None;
                }
                has_marker = true;
                if content && content_line.is_none() {
                    content_line = Some(line_no);
                }
            }
            LineKind::End => {
                // The `...` stays in the document it ends (valid YAML, and if something
                // follows it on the line serde_yaml gets to complain about it).
                let end = offset + line.len();
                documents.push(Document {
                    text: text.get(start..end).unwrap_or_default(),
                    first_line,
                    last_line: line_no,
                    content_line,
                });
                start = end;
                first_line = line_no + 1;
                has_marker = false;
                content_line = None;
            }
            LineKind::Nothing => {}
            LineKind::Content => {
                if content_line.is_none() {
                    content_line = Some(line_no);
                }
            }
        }
        offset += line.len();
    }
    if start < text.len() {
        documents.push(Document {
            text: text.get(start..).unwrap_or_default(),
            first_line,
            last_line: line_no.max(first_line),
            content_line,
        });
    }
    documents
}

fn load_yaml(path: &str, text: &str, lines: usize, out: &mut Output) {
    for document in split_documents(text) {
        // Empty documents (only comments, blank lines, markers) are how people separate
        // and comment out objects; kubectl skips them too.
        let Some(content_line) = document.content_line else {
            continue;
        };
        match serde_yaml::from_str::<Strict>(document.text) {
            Ok(Strict(value)) => accept(path, content_line, Format::Yaml, value, out),
            Err(err) => {
                let (line, message) = yaml_error(&err, &document, content_line, lines);
                out.error(path, line, message);
            }
        }
    }
}

/// Turns a serde_yaml error on one document into a file line and a message whose line
/// numbers are the file's, not the document's.
fn yaml_error(
    err: &serde_yaml::Error,
    document: &Document<'_>,
    content_line: usize,
    lines: usize,
) -> (usize, String) {
    let offset = document.first_line - 1;
    let message = shift_line_numbers(&err.to_string(), offset);
    let Some(location) = err.location() else {
        return (content_line, message);
    };
    let line = location.line().saturating_add(offset);
    let at = format!(" at line {line} column {}", location.column());
    if line > document.last_line || line > lines {
        // "unexpected end of stream" points one line past the document, which is either
        // the next document's `---` or past the end of the file: name the last line.
        let message = message.replacen(&at, " at the end of the document", 1);
        (document.last_line.min(lines).max(1), message)
    } else {
        let message = message.replacen(&at, &format!(" at column {}", location.column()), 1);
        (line.max(1), message)
    }
}

/// Adds `offset` to every `line N column M` in a parser message, so that the context marks
/// ("while parsing a block mapping at line 5 column 1") are file lines too.
fn shift_line_numbers(message: &str, offset: usize) -> String {
    const LINE: &str = "line ";
    let mut out = String::with_capacity(message.len() + 8);
    let mut rest = message;
    while let Some(pos) = rest.find(LINE) {
        let (before, after) = rest.split_at(pos + LINE.len());
        out.push_str(before);
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (number, tail) = after.split_at(digits);
        match number.parse::<usize>() {
            Ok(n) if tail.starts_with(" column ") => {
                out.push_str(&n.saturating_add(offset).to_string())
            }
            _ => out.push_str(number),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------
// JSON

fn load_json(path: &str, text: &str, lines: usize, out: &mut Output) {
    match serde_json::from_str::<Strict>(text) {
        Ok(Strict(value)) => {
            // The object's line is where its value starts, past any leading whitespace.
            let leading = &text[..text.len() - text.trim_start().len()];
            let line = 1 + leading.matches('\n').count();
            accept(path, line.min(lines), Format::Json, value, out);
        }
        Err(err) => {
            let mut message = err.to_string();
            let at = format!(" at line {} column {}", err.line(), err.column());
            if let Some(stripped) = message.strip_suffix(&at) {
                message = if err.line() > lines {
                    format!("{stripped} at the end of the file")
                } else {
                    format!("{stripped} at column {}", err.column())
                };
            }
            out.error(path, err.line().clamp(1, lines), message);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Objects

/// Checks one document's value and adds its objects (one, or a `List`'s items).
fn accept(path: &str, line: usize, format: Format, value: Value, out: &mut Output) {
    let Value::Object(mut object) = value else {
        out.error(
            path,
            line,
            format!(
                "expected a Kubernetes object ({}), found {}",
                format.mapping(),
                format.describe(&value)
            ),
        );
        return;
    };
    let Some(items) = take_list_items(&mut object) else {
        let problems = object_problems(&object, format);
        if problems.is_empty() {
            out.manifests.push(Manifest {
                file: path.to_owned(),
                line,
                object: Value::Object(object),
            });
        }
        for problem in problems {
            out.error(path, line, problem);
        }
        return;
    };
    let items = match items {
        Value::Array(items) => items,
        // `items:` with nothing after it is YAML for null: an empty list.
        Value::Null => Vec::new(),
        other => {
            out.error(
                path,
                line,
                format!(
                    "items must be {} of objects, found {}",
                    format.sequence(),
                    format.describe(&other)
                ),
            );
            return;
        }
    };
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(mut item) = item else {
            out.error(
                path,
                line,
                format!(
                    "items[{index}]: expected a Kubernetes object ({}), found {}",
                    format.mapping(),
                    format.describe(&item)
                ),
            );
            continue;
        };
        if take_list_items(&mut item).is_some() {
            out.error(
                path,
                line,
                format!(
                    "items[{index}]: a list inside a list is not expanded; move its items into the outer list"
                ),
            );
            continue;
        }
        let problems = object_problems(&item, format);
        if problems.is_empty() {
            out.manifests.push(Manifest {
                file: path.to_owned(),
                line,
                object: Value::Object(item),
            });
        }
        for problem in problems {
            out.error(path, line, format!("items[{index}]: {problem}"));
        }
    }
}

/// If the object is a list (`kind: List`, or a kind ending in `List` that has `items`, as
/// kubectl reads them), takes its `items` out. A `kind: List` without `items` is an empty
/// list.
fn take_list_items(object: &mut Map<String, Value>) -> Option<Value> {
    let kind = object.get("kind").and_then(Value::as_str)?;
    if kind == "List" {
        return Some(object.remove("items").unwrap_or(Value::Null));
    }
    if kind.ends_with("List") {
        return object.remove("items");
    }
    None
}

/// What is missing or malformed among the fields every object needs: a message per problem,
/// empty when the object is fine.
fn object_problems(object: &Map<String, Value>, format: Format) -> Vec<String> {
    let mut problems = Vec::new();
    for field in ["apiVersion", "kind"] {
        if let Some(problem) = string_problem(object.get(field), field, format) {
            problems.push(problem);
        }
    }
    match object.get("metadata") {
        None | Some(Value::Null) => problems.push("metadata.name is missing".to_owned()),
        Some(Value::Object(metadata)) => {
            let name = metadata.get("name");
            if matches!(name, None | Some(Value::Null)) && metadata.contains_key("generateName") {
                problems.push(
                    "metadata.name is missing; metadata.generateName is not allowed in GitOps \
                     manifests: an object needs a stable name to be updated and pruned"
                        .to_owned(),
                );
            } else if let Some(problem) = string_problem(name, "metadata.name", format) {
                problems.push(problem);
            }
            match metadata.get("namespace") {
                None | Some(Value::Null | Value::String(_)) => {}
                Some(other) => problems.push(format!(
                    "metadata.namespace must be a string, found {}",
                    format.describe(other)
                )),
            }
        }
        Some(other) => problems.push(format!(
            "metadata must be {}, found {}",
            format.mapping(),
            format.describe(other)
        )),
    }
    problems
}

/// The problem with a required non-empty string field, if any.
fn string_problem(value: Option<&Value>, field: &str, format: Format) -> Option<String> {
    match value {
        None | Some(Value::Null) => Some(format!("{field} is missing")),
        Some(Value::String(s)) if s.is_empty() => Some(format!("{field} is empty")),
        Some(Value::String(_)) => None,
        Some(other) => Some(format!(
            "{field} must be a string, found {}",
            format.describe(other)
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Strict value deserialization

/// A JSON value read from YAML or JSON more strictly than `serde_json::Value` reads itself:
/// a duplicate key is an error (Value silently keeps the last one, hiding a mistake that
/// changes what gets applied), a non-finite float is an error (Value turns `.nan` into
/// null), and a YAML tag is an error naming the tag (Value says "invalid type: enum").
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        if let Ok(v) = i64::try_from(v) {
            Ok(Value::Number(v.into()))
        } else if let Ok(v) = u64::try_from(v) {
            Ok(Value::Number(v.into()))
        } else {
            Err(E::custom(format!("integer {v} is out of range")))
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        u64::try_from(v)
            .map(|v| Value::Number(v.into()))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            E::custom(format!(
                "{v} is not a finite number, which JSON (and so Kubernetes) cannot hold"
            ))
        })
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Strict::deserialize(deserializer).map(|Strict(v)| v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed { seen: &object })? {
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // serde_yaml hands a `!tag value` to visitors as an enum whose variant is the tag.
        let (tag, _) = data.variant::<String>()?;
        Err(de::Error::custom(format!(
            "the YAML tag !{tag} is not supported in manifests"
        )))
    }
}

/// Reads a mapping key as a string, refusing one already seen. The check runs while the key
/// itself is being read so that the parser's position — and so the reported line — is the
/// duplicate key's, not the mapping's first line.
struct KeySeed<'a> {
    seen: &'a Map<String, Value>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if self.seen.contains_key(v) {
            Err(E::custom(format!("duplicate key {v:?}")))
        } else {
            Ok(v.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: path.to_owned(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    fn load_one(path: &str, text: &str) -> (Vec<Manifest>, Vec<LoadError>) {
        load(&[file(path, text)])
    }

    fn error_strings(errors: &[LoadError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    fn names(manifests: &[Manifest]) -> Vec<(&str, usize)> {
        manifests
            .iter()
            .map(|m| (m.object["metadata"]["name"].as_str().unwrap_or("?"), m.line))
            .collect()
    }

    #[test]
    fn multi_document_yaml_keeps_each_objects_line() {
        let text = "\
# leading comment
apiVersion: v1
kind: ConfigMap
metadata:
  name: one
---
# comment inside the second document

apiVersion: v1
kind: ConfigMap
metadata:
  name: two
--- # marker with a comment
apiVersion: v1
kind: Service
metadata:
  name: three
  namespace: web
";
        let (manifests, errors) = load_one("apps/web.yaml", text);
        assert_eq!(errors, vec![]);
        assert_eq!(
            names(&manifests),
            vec![("one", 2), ("two", 9), ("three", 14)]
        );
        assert!(manifests.iter().all(|m| m.file == "apps/web.yaml"));
        assert_eq!(manifests[2].object["metadata"]["namespace"], "web");
    }

    #[test]
    fn empty_and_comment_only_documents_are_skipped() {
        let text = "---\n# only a comment\n---\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n...\n---   \n";
        let (manifests, errors) = load_one("a.yml", text);
        assert_eq!(errors, vec![]);
        assert_eq!(names(&manifests), vec![("a", 6)]);
        let (manifests, errors) = load_one("empty.yaml", "");
        assert!(manifests.is_empty() && errors.is_empty());
        let (manifests, errors) = load_one("comments.yaml", "# nothing here\n   # or here\n");
        assert!(manifests.is_empty() && errors.is_empty());
    }

    #[test]
    fn directives_and_end_markers_split_documents() {
        let text = "%YAML 1.2\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n...\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
        let (manifests, errors) = load_one("d.yaml", text);
        assert_eq!(errors, vec![]);
        assert_eq!(names(&manifests), vec![("a", 3), ("b", 7)]);
    }

    #[test]
    fn content_on_the_marker_line_is_the_documents_first_line() {
        let text = "--- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n--- !!map\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
        let (manifests, errors) = load_one("m.yaml", text);
        assert_eq!(errors, vec![]);
        assert_eq!(names(&manifests), vec![("a", 1), ("b", 2)]);
    }

    #[test]
    fn dashes_not_at_column_zero_or_followed_by_text_are_not_markers() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  script: |\n    ---\n    x\n  other: ---foo\n";
        let (manifests, errors) = load_one("s.yaml", text);
        assert_eq!(errors, vec![]);
        assert_eq!(manifests.len(), 1);
        assert_eq!(manifests[0].object["data"]["script"], "---\nx\n");
        assert_eq!(manifests[0].object["data"]["other"], "---foo");
    }

    #[test]
    fn crlf_line_endings_are_read() {
        let text = "apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: a\r\n---\r\napiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: b\r\n";
        let (manifests, errors) = load_one("w.yaml", text);
        assert_eq!(errors, vec![]);
        assert_eq!(names(&manifests), vec![("a", 1), ("b", 6)]);
    }

    #[test]
    fn yaml_syntax_error_reports_the_line_in_the_file() {
        // Three documents; the third has a bad indentation on line 13. The documents before
        // and after the bad one still load.
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: one
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: two
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: three
 labels: {}
";
        let (manifests, errors) = load_one("bad.yaml", text);
        assert_eq!(names(&manifests), vec![("one", 1), ("two", 6)]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 15);
        assert_eq!(
            errors[0].to_string(),
            "bad.yaml:15: did not find expected key at column 2, while parsing a block mapping at line 11 column 1"
        );
    }

    #[test]
    fn yaml_syntax_error_in_the_middle_document() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: one}
---
apiVersion: v1
kind: ConfigMap
metadata:
    name: two
  labels: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: three}
";
        let (manifests, errors) = load_one("mid.yaml", text);
        assert_eq!(names(&manifests), vec![("one", 1), ("three", 11)]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 9, "{}", errors[0]);
    }

    #[test]
    fn unterminated_quote_points_into_its_own_document() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"one\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n";
        let (manifests, errors) = load_one("q.yaml", text);
        assert_eq!(names(&manifests), vec![("two", 6)]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        // The end of the first document, not the next document's `---`.
        assert_eq!(errors[0].line, 4, "{}", errors[0]);
        assert!(
            errors[0].message.contains("at the end of the document"),
            "{}",
            errors[0]
        );
        assert!(
            errors[0].message.contains("at line 4 column 9"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn duplicate_keys_are_errors_on_the_duplicate_line() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: one
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: two
data:
  a: x
  b: y
  a: z
";
        let (manifests, errors) = load_one("dup.yaml", text);
        assert_eq!(names(&manifests), vec![("one", 1)]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 13, "{}", errors[0]);
        assert!(
            errors[0].message.contains("duplicate key \"a\""),
            "{}",
            errors[0]
        );
        assert!(errors[0].message.starts_with("data: "), "{}", errors[0]);

        let (_, errors) = load_one("dup.json", "{\n  \"a\": 1,\n  \"b\": 2,\n  \"a\": 3\n}\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 4, "{}", errors[0]);
        assert!(
            errors[0].message.contains("duplicate key \"a\""),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn list_items_become_objects_with_the_lists_line() {
        let text = "\
# a list
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
- apiVersion: v1
  kind: Secret
  metadata: {name: b, namespace: ns}
";
        let (manifests, errors) = load_one("list.yaml", text);
        assert_eq!(errors, vec![]);
        assert_eq!(names(&manifests), vec![("a", 2), ("b", 2)]);
        assert_eq!(manifests[1].object["kind"], "Secret");
    }

    #[test]
    fn typed_lists_expand_and_item_errors_name_the_index() {
        let text = "\
apiVersion: v1
kind: PodList
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a}
- 42
- apiVersion: v1
  kind: Pod
  metadata: {}
- apiVersion: v1
  kind: List
  items: []
";
        let (manifests, errors) = load_one("pods.yaml", text);
        assert_eq!(names(&manifests), vec![("a", 1)]);
        assert_eq!(
            error_strings(&errors),
            vec![
                "pods.yaml:1: items[1]: expected a Kubernetes object (a mapping), found a number",
                "pods.yaml:1: items[2]: metadata.name is missing",
                "pods.yaml:1: items[3]: a list inside a list is not expanded; move its items into the outer list",
            ]
        );
        let (manifests, errors) = load_one("l.yaml", "apiVersion: v1\nkind: List\nitems: {a: 1}\n");
        assert!(manifests.is_empty());
        assert_eq!(
            error_strings(&errors),
            vec!["l.yaml:1: items must be a sequence of objects, found a mapping"]
        );
        let (manifests, errors) = load_one("e.yaml", "apiVersion: v1\nkind: List\nitems:\n");
        assert!(manifests.is_empty() && errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn json_object_and_list() {
        let text = r#"
{
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}}
  ]
}"#;
        let (manifests, errors) = load_one("l.json", text);
        assert_eq!(errors, vec![]);
        assert_eq!(names(&manifests), vec![("a", 2), ("b", 2)]);
        let (manifests, errors) = load_one(
            "o.json",
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}"#,
        );
        assert_eq!(errors, vec![]);
        assert_eq!(names(&manifests), vec![("c", 1)]);
        assert_eq!(
            manifests[0].object,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
        );
    }

    #[test]
    fn json_syntax_error_reports_its_position() {
        let text =
            "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\"\n  \"metadata\": {}\n}\n";
        let (manifests, errors) = load_one("bad.json", text);
        assert!(manifests.is_empty());
        assert_eq!(
            error_strings(&errors),
            vec!["bad.json:4: expected `,` or `}` at column 3"]
        );
        let (_, errors) = load_one("cut.json", "{\n  \"a\": 1,\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2);
        assert!(
            errors[0].message.ends_with("at the end of the file"),
            "{}",
            errors[0]
        );
        let (_, errors) = load_one("two.json", "{}\n{}\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 2, "{}", errors[0]);
        let (_, errors) = load_one("empty.json", "");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 1, "{}", errors[0]);
    }

    #[test]
    fn missing_and_malformed_required_fields() {
        let text = "\
kind: ConfigMap
metadata:
  labels: {}
---
apiVersion: ''
kind: 3
metadata:
  generateName: web-
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
  namespace: [x]
---
apiVersion: v1
kind: ConfigMap
metadata: web
---
apiVersion: v1
kind: ConfigMap
";
        let (manifests, errors) = load_one("web.yaml", text);
        assert!(manifests.is_empty());
        assert_eq!(
            error_strings(&errors),
            vec![
                "web.yaml:1: apiVersion is missing",
                "web.yaml:1: metadata.name is missing",
                "web.yaml:5: apiVersion is empty",
                "web.yaml:5: kind must be a string, found a number",
                "web.yaml:5: metadata.name is missing; metadata.generateName is not allowed in \
                 GitOps manifests: an object needs a stable name to be updated and pruned",
                "web.yaml:10: metadata.namespace must be a string, found a sequence",
                "web.yaml:16: metadata must be a mapping, found a string",
                "web.yaml:20: metadata.name is missing",
            ]
        );
    }

    #[test]
    fn scalar_and_sequence_documents_are_not_objects() {
        let text = "just a string\n---\n- a\n- b\n---\n42\n---\nnull\n";
        let (manifests, errors) = load_one("s.yaml", text);
        assert!(manifests.is_empty());
        assert_eq!(
            error_strings(&errors),
            vec![
                "s.yaml:1: expected a Kubernetes object (a mapping), found a string",
                "s.yaml:3: expected a Kubernetes object (a mapping), found a sequence",
                "s.yaml:6: expected a Kubernetes object (a mapping), found a number",
                "s.yaml:8: expected a Kubernetes object (a mapping), found null",
            ]
        );
        let (_, errors) = load_one("a.json", "[1, 2]");
        assert_eq!(
            error_strings(&errors),
            vec!["a.json:1: expected a Kubernetes object (an object), found an array"]
        );
    }

    #[test]
    fn tags_and_non_finite_numbers_are_refused() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  x: !custom 1\n";
        let (_, errors) = load_one("t.yaml", text);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 5, "{}", errors[0]);
        assert!(errors[0].message.contains("tag !custom"), "{}", errors[0]);
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nspec:\n  x: .nan\n";
        let (_, errors) = load_one("n.yaml", text);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 5, "{}", errors[0]);
        assert!(
            errors[0].message.contains("not a finite number"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let mut bytes = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b"\"}\n");
        let (manifests, errors) = load(&[SourceFile {
            path: "bin.yaml".to_owned(),
            bytes,
        }]);
        assert!(manifests.is_empty());
        assert_eq!(
            error_strings(&errors),
            vec!["bin.yaml:3: invalid UTF-8 at byte 49: manifests must be UTF-8 text"]
        );
    }

    #[test]
    fn files_over_the_limit_are_refused_without_a_line() {
        let big = SourceFile {
            path: "big.yaml".to_owned(),
            bytes: vec![b'#'; MAX_FILE_BYTES + 1],
        };
        let (manifests, errors) = load(&[big]);
        assert!(manifests.is_empty());
        assert_eq!(
            error_strings(&errors),
            vec![format!(
                "big.yaml: file is {} bytes, larger than the 4 MiB limit for a manifest file",
                MAX_FILE_BYTES + 1
            )]
        );
    }

    #[test]
    fn errors_of_every_file_are_reported() {
        let files = [
            file("a.yaml", "kind: ConfigMap\n"),
            file(
                "b.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n",
            ),
            file("c.json", "{"),
            file("d.txt", "hello"),
        ];
        let (manifests, errors) = load(&files);
        assert_eq!(names(&manifests), vec![("ok", 1)]);
        let files: Vec<&str> = errors.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(files, vec!["a.yaml", "a.yaml", "c.json", "d.txt"]);
        assert_eq!(
            errors[3].to_string(),
            "d.txt: not a manifest file: expected a .yaml, .yml or .json extension"
        );
    }

    #[test]
    fn non_string_keys_become_strings() {
        let text =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  1: one\n  true: yes\n";
        let (manifests, errors) = load_one("k.yaml", text);
        assert_eq!(errors, vec![]);
        assert_eq!(
            manifests[0].object["data"],
            json!({"1": "one", "true": "yes"})
        );
    }

    #[test]
    fn shift_line_numbers_moves_only_positions() {
        assert_eq!(
            shift_line_numbers(
                "x at line 3 column 2, while y at line 1 column 1 (line 7)",
                10
            ),
            "x at line 13 column 2, while y at line 11 column 1 (line 7)"
        );
    }

    /// Checks the invariant every input must keep: no panic, and every error's line is 0 or
    /// a line of the file.
    fn check_lines(path: &str, bytes: Vec<u8>) -> Result<(), TestCaseError> {
        let lines = line_count(&bytes);
        let (manifests, errors) = load(&[SourceFile {
            path: path.to_owned(),
            bytes,
        }]);
        for error in &errors {
            prop_assert!(error.line <= lines, "{error} is past line {lines}");
        }
        for manifest in &manifests {
            prop_assert!(manifest.line >= 1 && manifest.line <= lines);
        }
        Ok(())
    }

    fn yamlish() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("---"),
            Just("--- "),
            Just("..."),
            Just("%YAML 1.2"),
            Just("# c"),
            Just(""),
            Just("apiVersion: v1"),
            Just("kind: List"),
            Just("kind: ConfigMap"),
            Just("metadata:"),
            Just("  name: a"),
            Just("  name: a"),
            Just("items:"),
            Just("- a: 1"),
            Just("  - b"),
            Just(" bad: indent"),
            Just("key: \"open"),
            Just("{a: [1, 2"),
            Just("&x a: *x"),
            Just("!tag x"),
            Just("a: .inf"),
            Just("\t"),
            Just("\r"),
        ];
        prop::collection::vec(fragment, 0..24).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #[test]
        fn load_never_panics_on_arbitrary_text(
            text in "(?s).{0,300}",
            ext in prop_oneof![Just("yaml"), Just("yml"), Just("json"), Just("txt")],
        ) {
            check_lines(&format!("f.{ext}"), text.into_bytes())?;
        }

        #[test]
        fn load_never_panics_on_yaml_like_text(text in yamlish()) {
            check_lines("f.yaml", text.into_bytes())?;
        }

        #[test]
        fn load_never_panics_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..300),
            json in any::<bool>(),
        ) {
            check_lines(if json { "f.json" } else { "f.yaml" }, bytes)?;
        }
    }
}

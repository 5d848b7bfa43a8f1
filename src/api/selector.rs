//! Label selectors and field selectors, parsed and applied exactly as kube-apiserver does
//! (k8s.io/apimachinery `pkg/labels` and `pkg/fields`, plus the per-kind field label
//! conversions and selectable-field sets of kube-apiserver's registries).
//!
//! This module owns:
//! - [`LabelSelector`]: the `?labelSelector=` string form (`a=b,c in (x,y),!d`) and the
//!   structured `metav1.LabelSelector` (`matchLabels` / `matchExpressions`) controllers use,
//!   both reduced to one list of [`Requirement`]s, rendered back in upstream's canonical form.
//! - [`FieldSelector`]: the `?fieldSelector=` form (`spec.nodeName=n1,status.phase!=Failed`),
//!   which fields each kind lets clients select on, and how a field's value is read from a
//!   stored object.
//!
//! Objects are `serde_json::Value`s as the store holds them. Nothing here touches the store,
//! the network or HTTP: the API server turns a [`SelectorError`] into a `Status` (400
//! BadRequest) and uses [`FieldSelector::exact_match`] to pick an index.
//!
//! Bad input never panics: every string is accepted by the parsers and answered with a
//! selector or an error naming the selector, what is wrong and where.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

/// Why a selector was rejected. Messages follow upstream's wording so that what kubectl
/// shows matches a real cluster, with the offending selector and position added.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    /// The string form of a label selector could not be parsed, or names an invalid label
    /// key or value. `position` is the byte offset of the offending token or requirement.
    #[error("invalid label selector {selector:?} at byte {position}: {message}")]
    LabelSyntax {
        /// The selector as given.
        selector: String,
        /// Byte offset into `selector` where the problem was found.
        position: usize,
        /// What is wrong, in upstream's words.
        message: String,
    },
    /// A structured requirement (from `metav1.LabelSelector` or [`Requirement::new`]) is
    /// invalid; `message` starts with the field path (e.g. `matchExpressions[0].values`).
    #[error("invalid label selector: {message}")]
    InvalidRequirement {
        /// Field path and what is wrong.
        message: String,
    },
    /// The string form of a field selector could not be parsed.
    #[error("invalid field selector {selector:?}: {message}")]
    FieldSyntax {
        /// The selector as given.
        selector: String,
        /// What is wrong and in which term.
        message: String,
    },
    /// The kind has its own list of selectable fields and `field` is not on it. The message
    /// is exactly upstream's, which kubectl shows inside its "Unable to find ..." line.
    #[error("field label not supported: {field}")]
    FieldLabelNotSupported {
        /// API group of the kind ("" for the core group).
        group: String,
        /// The kind selected on.
        kind: String,
        /// The field that is not selectable.
        field: String,
    },
    /// The kind only supports the metadata fields and `field` is another one (upstream's
    /// `DefaultMetaV1FieldSelectorConversion` message).
    #[error(
        "{field:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    )]
    UnknownFieldLabel {
        /// API group of the kind ("" for the core group).
        group: String,
        /// The kind selected on.
        kind: String,
        /// The field that is not selectable.
        field: String,
    },
}

// ---------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------

/// How a [`Requirement`] relates a label key to its values (upstream `selection.Operator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`: the label is present with that value.
    Equals,
    /// `key==value`: same as [`Operator::Equals`]; kept apart so it renders back as written.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>N`: the label is present and an integer greater than N.
    GreaterThan,
    /// `key<N`: the label is present and an integer less than N.
    LessThan,
}

/// One condition on one label key. Constructed only through validation, so every
/// requirement has a valid key, valid values and the number of values its operator needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    // Sorted and de-duplicated: upstream treats values as a set and renders them sorted, and
    // keeping one normal form makes equal selectors compare equal.
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validating it as upstream's `labels.NewRequirement` does: the
    /// key must be a qualified name, every value a valid label value, `In`/`NotIn` need at
    /// least one value, the equality operators exactly one, `Exists`/`DoesNotExist` none,
    /// and `GreaterThan`/`LessThan` exactly one integer.
    pub fn new<S: Into<String>>(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = S>,
    ) -> Result<Self, SelectorError> {
        let values = values.into_iter().map(Into::into).collect();
        new_requirement(None, key.into(), operator, values)
            .map_err(|message| SelectorError::InvalidRequirement { message })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and without duplicates (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set, seen through `get`, satisfies this requirement. Upstream
    /// semantics: `!=` and `notin` match when the key is absent.
    fn matches_with<'a>(&self, get: &impl Fn(&str) -> Option<&'a str>) -> bool {
        let has_value = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                get(&self.key).is_some_and(has_value)
            }
            Operator::NotIn | Operator::NotEquals => !get(&self.key).is_some_and(has_value),
            Operator::Exists => get(&self.key).is_some(),
            Operator::DoesNotExist => get(&self.key).is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // A label that is not an integer matches neither (upstream logs and says no).
                let Some(Ok(have)) = get(&self.key).map(str::parse::<i64>) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in (",
            Operator::NotIn => " notin (",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        f.write_str(&self.values.join(","))?;
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: every requirement must hold. Empty matches everything.
///
/// Requirements are kept sorted by key (stable), as upstream does, so [`fmt::Display`]
/// gives the canonical string form and `parse(&s.to_string())` gives `s` back.
///
/// A `metav1.LabelSelector` that is absent altogether (a nil pointer upstream) selects
/// nothing; callers holding an `Option` decide that before calling
/// [`LabelSelector::from_label_selector`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector from already validated requirements (sorted by key here).
    pub fn new(requirements: impl IntoIterator<Item = Requirement>) -> Self {
        let mut requirements: Vec<Requirement> = requirements.into_iter().collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// Parses the query-string form, e.g. `app=web,tier in (fe,be),!canary`, with
    /// upstream's grammar, keywords, whitespace rules and error messages.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser::new(s);
        match parser.parse() {
            Ok(requirements) => Ok(Self::new(requirements)),
            Err(ParseError { position, message }) => Err(SelectorError::LabelSyntax {
                selector: s.to_string(),
                position,
                message,
            }),
        }
    }

    /// Converts a structured selector as upstream's `metav1.LabelSelectorAsSelector` does:
    /// each `matchLabels` entry becomes `key=value`, each `matchExpressions` entry uses
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`; anything else is an error naming the entry.
    pub fn from_label_selector(sel: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let invalid = |message| SelectorError::InvalidRequirement { message };
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            let path = format!("matchLabels[{key}]");
            let r = new_requirement(
                Some(&path),
                key.clone(),
                Operator::Equals,
                vec![value.clone()],
            )
            .map_err(invalid)?;
            requirements.push(r);
        }
        for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
            let path = format!("matchExpressions[{i}]");
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(invalid(format!(
                        "{path}.operator: {} is not a valid label selector operator",
                        go_quote(other)
                    )));
                }
            };
            let values = expr.values.clone().unwrap_or_default();
            let r = new_requirement(Some(&path), expr.key.clone(), operator, values)
                .map_err(invalid)?;
            requirements.push(r);
        }
        Ok(Self::new(requirements))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when the selector has no requirements and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |k: &str| labels.get(k).map(String::as_str);
        self.requirements.iter().all(|r| r.matches_with(&get))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement. Missing metadata or
    /// labels mean no labels; a non-string label value counts as absent.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| r.matches_with(&get))
    }
}

/// The canonical string form of a selector: its requirements joined by commas.
fn write_comma_separated<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_comma_separated(f, &self.requirements)
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Validates and builds a requirement as upstream's `labels.NewRequirement`, collecting every
/// problem into one message (upstream's aggregate format). `path` prefixes field paths for
/// structured selectors; the string form uses upstream's bare `key` / `values[i][key]`.
fn new_requirement(
    path: Option<&str>,
    key: String,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, String> {
    let child = |name: &str| match path {
        Some(p) => format!("{p}.{name}"),
        None => name.to_string(),
    };
    let mut errs = Vec::new();
    if let Some(e) = validate_label_key(&key, &child("key")) {
        errs.push(e);
    }
    let values_path = child("values");
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => errs.push(invalid_value(
            &values_path,
            &go_string_slice(&values),
            "for 'in', 'notin' operators, values set can't be empty",
        )),
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            errs.push(invalid_value(
                &values_path,
                &go_string_slice(&values),
                "exact-match compatibility requires one single value",
            ))
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            errs.push(invalid_value(
                &values_path,
                &go_string_slice(&values),
                "values set must be empty for exists and does not exist",
            ))
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(invalid_value(
                    &values_path,
                    &go_string_slice(&values),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(invalid_value(
                        &format!("{values_path}[{i}]"),
                        &go_quote(v),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = label_value_errors(v);
        if !msgs.is_empty() {
            errs.push(invalid_value(
                &format!("{values_path}[{i}][{key}]"),
                &go_quote(v),
                &msgs.join("; "),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(aggregate(errs));
    }
    let values: BTreeSet<String> = values.into_iter().collect();
    Ok(Requirement {
        key,
        operator,
        values: values.into_iter().collect(),
    })
}

/// Upstream `field.Invalid(...).Error()`: `<path>: Invalid value: <value>: <detail>`.
fn invalid_value(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value}: {detail}")
}

/// Upstream `utilerrors.NewAggregate(...).Error()`: one error as is, several de-duplicated
/// in brackets.
fn aggregate(errs: Vec<String>) -> String {
    let mut seen = Vec::new();
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    if seen.len() == 1 {
        seen.remove(0)
    } else {
        format!("[{}]", seen.join(", "))
    }
}

/// Go's `%q` for the strings selectors carry; Rust's debug escaping differs only for control
/// and unusual characters, which is fine for a message.
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// Go's `%#v` of a `[]string`, which upstream puts in value-count errors.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

// --- label key and value validation (k8s.io/apimachinery/pkg/util/validation) ----------

/// Upstream `validation.IsQualifiedName`: the list of problems, empty when valid.
fn qualified_name_errors(value: &str) -> Vec<String> {
    // One implementation of upstream's rules, shared with object validation.
    crate::api::validation::is_qualified_name(value)
}

/// Upstream `validation.IsValidLabelValue`: the list of problems, empty when valid.
fn label_value_errors(value: &str) -> Vec<String> {
    crate::api::validation::is_valid_label_value(value)
}

/// A label key error in upstream's field-error form, or `None` when the key is valid.
/// (Upstream's string parser has no field path and prints `<nil>`; `key` says more.)
fn validate_label_key(key: &str, path: &str) -> Option<String> {
    let errs = qualified_name_errors(key);
    (!errs.is_empty()).then(|| invalid_value(path, &go_quote(key), &errs.join("; ")))
}

// --- lexer and parser (a port of k8s.io/apimachinery/pkg/labels/selector.go) ------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(ch: u8) -> bool {
    matches!(ch, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

#[derive(Clone, Debug)]
struct Item {
    tok: Token,
    lit: String,
    /// Byte offset where the token starts, for error messages.
    pos: usize,
}

/// Byte-wise, like upstream: any byte that is not whitespace or a special symbol belongs to
/// an identifier, so multi-byte UTF-8 never splits (its bytes are all >= 0x80).
struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// Upstream's `read`: 0 at the end *and* for a NUL byte, which is still consumed. That
    /// makes a NUL end the selector when a token would start there and merely separate
    /// tokens elsewhere; kept as is so moor accepts exactly what kube-apiserver accepts.
    fn read(&mut self) -> u8 {
        match self.s.as_bytes().get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos -= 1;
    }

    fn lex(&mut self) -> Item {
        let (ch, start) = loop {
            let start = self.pos;
            let ch = self.read();
            if !is_whitespace(ch) {
                break (ch, start);
            }
        };
        if ch == 0 {
            return Item {
                tok: Token::EndOfString,
                lit: String::new(),
                pos: start,
            };
        }
        self.unread();
        if is_special_symbol(ch) {
            self.scan_special_symbol(start)
        } else {
            self.scan_id_or_keyword(start)
        }
    }

    fn scan_id_or_keyword(&mut self, start: usize) -> Item {
        let mut end = start;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            end = self.pos;
        }
        let lit = &self.s[start..end];
        Item {
            tok: keyword(lit).unwrap_or(Token::Identifier),
            lit: lit.to_string(),
            pos: start,
        }
    }

    /// Longest run of special symbols that is still a known operator (`!=` over `!`).
    fn scan_special_symbol(&mut self, start: usize) -> Item {
        let mut last: Option<(Token, usize)> = None;
        let mut end = start;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            end = self.pos;
            match keyword(&self.s[start..end]) {
                Some(tok) => last = Some((tok, end)),
                None if last.is_some() => {
                    self.unread();
                    break;
                }
                None => {}
            }
        }
        match last {
            Some((tok, end)) => Item {
                tok,
                lit: self.s[start..end].to_string(),
                pos: start,
            },
            // Unreachable with today's symbol table (every single symbol is a token), kept
            // so a future symbol cannot turn into a panic.
            None => Item {
                tok: Token::Error,
                lit: format!("error expected: keyword found '{}'", &self.s[start..end]),
                pos: start,
            },
        }
    }
}

/// Whether `in`/`notin` are keywords (after a key) or plain values (everywhere else).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct ParseError {
    position: usize,
    message: String,
}

fn perr(position: usize, message: String) -> ParseError {
    ParseError { position, message }
}

struct Parser {
    items: Vec<Item>,
    position: usize,
}

impl Parser {
    fn new(s: &str) -> Self {
        let mut lexer = Lexer { s, pos: 0 };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let done = item.tok == Token::EndOfString;
            items.push(item);
            if done {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn lookahead(&self, ctx: Context) -> (Token, String, usize) {
        // The last item is always EndOfString; never reading past it keeps a parser bug
        // from becoming an index panic.
        let item = &self.items[self.position.min(self.items.len() - 1)];
        let tok = match item.tok {
            Token::In | Token::NotIn if ctx == Context::Values => Token::Identifier,
            tok => tok,
        };
        (tok, item.lit.clone(), item.pos)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String, usize) {
        let out = self.lookahead(ctx);
        self.position += 1;
        out
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, ParseError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit, pos) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| {
                        perr(
                            e.position,
                            format!("unable to parse requirement: {}", e.message),
                        )
                    })?;
                    requirements.push(r);
                    let (t, l, p) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2, p2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(perr(
                                    p2,
                                    format!("found '{l2}', expected: identifier after ','"),
                                ));
                            }
                        }
                        _ => {
                            return Err(perr(
                                p,
                                format!("found '{l}', expected: ',' or 'end of string'"),
                            ));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(perr(
                        pos,
                        format!("found '{lit}', expected: !, identifier, or 'end of string'"),
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, ParseError> {
        let (_, _, start) = self.lookahead(Context::Values);
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        let (operator, values) = match inferred {
            Some(op) => (op, BTreeSet::new()),
            None => {
                let op = self.parse_operator()?;
                let values = match op {
                    Operator::In | Operator::NotIn => self.parse_values()?,
                    _ => self.parse_exact_value()?,
                };
                (op, values)
            }
        };
        new_requirement(None, key, operator, values.into_iter().collect())
            .map_err(|m| perr(start, m))
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), ParseError> {
        let mut operator = None;
        let (mut tok, mut lit, mut pos) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, lit, pos) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(perr(pos, format!("found '{lit}', expected: identifier")));
        }
        if let Some(e) = validate_label_key(&lit, "key") {
            return Err(perr(pos, e));
        }
        let (next, _, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((lit, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, ParseError> {
        let (tok, lit, pos) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(perr(
                    pos,
                    format!("found '{lit}', expected: in, notin, =, ==, !=, gt, lt"),
                ));
            }
        })
    }

    fn parse_values(&mut self) -> Result<BTreeSet<String>, ParseError> {
        let (tok, lit, pos) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(perr(pos, format!("found '{lit}' expected: '('")));
        }
        let (tok, lit, pos) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                let (t, _, p) = self.consume(Context::Values);
                if t != Token::ClosedPar {
                    return Err(perr(p, format!("found '{lit}', expected: ')'")));
                }
                Ok(set)
            }
            // `()` means the one empty value, as upstream.
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(perr(
                pos,
                format!("found '{lit}', expected: ',', ')' or identifier"),
            )),
        }
    }

    /// Upstream's list grammar, including its reading of empty entries (`(,a)`, `(a,,b)`,
    /// `(a,)`) as the empty value.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, ParseError> {
        let mut set = BTreeSet::new();
        loop {
            let (tok, lit, pos) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (t2, l2, p2) = self.lookahead(Context::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(perr(p2, format!("found '{l2}', expected: ',' or ')'"))),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (t2, _, _) = self.lookahead(Context::Values);
                    if t2 == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if t2 == Token::Comma {
                        self.consume(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => {
                    return Err(perr(
                        pos,
                        format!("found '{lit}', expected: ',', or identifier"),
                    ));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, ParseError> {
        let (tok, _, _) = self.lookahead(Context::Values);
        if matches!(tok, Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (tok, lit, pos) = self.consume(Context::Values);
        if tok == Token::Identifier {
            return Ok(BTreeSet::from([lit]));
        }
        Err(perr(pos, format!("found '{lit}', expected: identifier")))
    }
}

// ---------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------

/// How a [`FieldRequirement`] compares (upstream treats `==` as `=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One `field op value` term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldRequirement {
    /// The field path as written, e.g. `spec.nodeName`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The comparison.
    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    /// The value, unescaped.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A field selector: every term must hold. Empty matches everything.
///
/// Parsing accepts any field name, as upstream's `fields.ParseSelector` does; which fields a
/// kind supports is checked separately by [`FieldSelector::validate_for`], because only the
/// API server knows the kind being listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    // In upstream's order: sorted by the raw term text.
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses `f=v`, `f==v`, `f!=v` terms separated by commas. In values, `\,`, `\=` and
    /// `\\` stand for `,`, `=` and `\`; an unescaped `,`/`=` or any other escape is an error.
    /// Empty terms are skipped, so `""` and `","` select everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let syntax = |message| SelectorError::FieldSyntax {
            selector: s.to_string(),
            message,
        };
        let mut terms = split_terms(s);
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_term(term) else {
                return Err(syntax(format!("can't understand '{term}'")));
            };
            let value = unescape_value(raw).map_err(|e| syntax(format!("{e} in term '{term}'")))?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        Ok(Self { requirements })
    }

    /// The terms, in upstream's order (sorted by their text).
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector has no terms and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Checks every field against what kube-apiserver lets clients select on for this kind
    /// (`group` is "" for the core group). Kinds with their own list answer
    /// [`SelectorError::FieldLabelNotSupported`]; all other kinds allow only `metadata.name`
    /// and `metadata.namespace` and answer [`SelectorError::UnknownFieldLabel`], each with
    /// upstream's message.
    pub fn validate_for(&self, group: &str, kind: &str) -> Result<(), SelectorError> {
        let own = kind_field_labels(group, kind);
        for r in &self.requirements {
            let field = r.field.as_str();
            let err = match own {
                Some(list) if !list.contains(&field) => SelectorError::FieldLabelNotSupported {
                    group: group.to_string(),
                    kind: kind.to_string(),
                    field: field.to_string(),
                },
                None if !DEFAULT_FIELD_LABELS.contains(&field) => {
                    SelectorError::UnknownFieldLabel {
                        group: group.to_string(),
                        kind: kind.to_string(),
                        field: field.to_string(),
                    }
                }
                _ => continue,
            };
            return Err(err);
        }
        Ok(())
    }

    /// Whether the object satisfies every term, reading each field as kube-apiserver's
    /// selectable-field sets render it, compared as strings: anything missing reads as Go's
    /// zero value (`""`, `false`, `0`), booleans as `true`/`false`, integers in decimal.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let have = field_value(obj, &r.field);
            match r.operator {
                FieldOperator::Equals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }

    /// The value of the first `field=value` (or `==`) term on `field`, so the API server can
    /// answer e.g. `spec.nodeName=n1` from an index instead of a scan. `!=` terms never count.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.operator == FieldOperator::Equals && r.field == field)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_comma_separated(f, &self.requirements)
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Fields every kind without its own list supports (upstream
/// `runtime.DefaultMetaV1FieldSelectorConversion`).
const DEFAULT_FIELD_LABELS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The selectable fields of kinds that register their own field label conversion in
/// kube-apiserver, or `None` for the metadata-only default. Note that upstream's Node and
/// Namespace lists omit `metadata.namespace` (they are cluster-scoped), so selecting on it
/// there is an error as on a real cluster.
fn kind_field_labels(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    let fields: &'static [&'static str] = match (group, kind) {
        ("", "Pod") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
            // Old v1 clients' name for spec.nodeName; upstream still accepts it.
            "spec.host",
        ],
        ("", "Node") => &["metadata.name", "spec.unschedulable"],
        ("", "ReplicationController") => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        ("", "Namespace") => &["status.phase", "metadata.name"],
        ("", "Secret") => &["type", "metadata.namespace", "metadata.name"],
        ("", "Service") => &[
            "metadata.namespace",
            "metadata.name",
            "spec.clusterIP",
            "spec.type",
        ],
        ("apps", "ReplicaSet") => &["metadata.name", "metadata.namespace", "status.replicas"],
        ("batch", "Job") => &["metadata.name", "metadata.namespace", "status.successful"],
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            &["metadata.name", "spec.signerName"]
        }
        _ => return None,
    };
    Some(fields)
}

/// The fields a kind supports, as [`FieldSelector::validate_for`] checks them.
pub fn supported_field_labels(group: &str, kind: &str) -> &'static [&'static str] {
    kind_field_labels(group, kind).unwrap_or(DEFAULT_FIELD_LABELS)
}

/// A field's value as kube-apiserver's selectable-field sets hold it: Go zero values for
/// anything missing (`""`, `"false"`, `"0"`), booleans as `true`/`false`, integers in
/// decimal. Field names are unique across kinds where they mean different things, so the
/// kind is not needed. Fields outside every kind's list fall back to the dotted path (only
/// reachable when a caller skipped [`FieldSelector::validate_for`]).
fn field_value<'a>(obj: &'a Value, field: &str) -> Cow<'a, str> {
    let path = |p: &[&str]| p.iter().try_fold(obj, |v, k| v.get(*k));
    let string = |p: &[&str]| path(p).and_then(scalar).unwrap_or(Cow::Borrowed(""));
    let dotted = |f: &str| path(&f.split('.').collect::<Vec<_>>()).and_then(scalar);
    match field {
        "spec.host" => string(&["spec", "nodeName"]),
        // Go bools and ints in upstream's structs: absent means the zero value.
        "spec.hostNetwork" | "spec.unschedulable" => {
            dotted(field).unwrap_or(Cow::Borrowed("false"))
        }
        "status.replicas" | "status.successful" => dotted(field).unwrap_or(Cow::Borrowed("0")),
        // The v1 -> internal conversion makes status.podIP authoritative and falls back to
        // the first of status.podIPs; the selectable field is that first IP.
        "status.podIP" => {
            let ip = string(&["status", "podIP"]);
            if !ip.is_empty() {
                return ip;
            }
            path(&["status", "podIPs"])
                .and_then(|ips| ips.get(0))
                .and_then(|first| first.get("ip"))
                .and_then(scalar)
                .unwrap_or(Cow::Borrowed(""))
        }
        // Accepted by upstream's conversion but absent from its field set, so it always
        // reads as "".
        "status.podIPs" => Cow::Borrowed(""),
        // Events written through events.k8s.io carry reportingController rather than
        // source.component; upstream's `source` falls back to it.
        "source" => {
            let component = string(&["source", "component"]);
            if component.is_empty() {
                string(&["reportingComponent"])
            } else {
                component
            }
        }
        other => dotted(other).unwrap_or(Cow::Borrowed("")),
    }
}

/// A JSON scalar as text; `None` for null, arrays and objects (which read as missing).
fn scalar(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Upstream `splitTerms`: commas separate terms unless escaped; the escape stays in the term.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Upstream `splitTerm`: the first operator occurrence splits the term; `!=` and `==` are
/// tried before `=` so no `=` is left on the value.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] = [
        ("!=", FieldOperator::NotEquals),
        ("==", FieldOperator::Equals),
        ("=", FieldOperator::Equals),
    ];
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in OPERATORS {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

/// Upstream `fields.EscapeValue`.
fn escape_value(s: &str) -> Cow<'_, str> {
    if !s.contains(['\\', ',', '=']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Upstream `fields.UnescapeValue`, with the offending character shown as a character
/// (upstream prints its code point number).
fn unescape_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(format!("invalid escape sequence: \\{c}")),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(format!("unescaped character in value: '{c}'")),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    /// The upstream message part of a label syntax error, plus its position.
    fn label_err(s: &str) -> (usize, String) {
        match LabelSelector::parse(s) {
            Err(SelectorError::LabelSyntax {
                selector,
                position,
                message,
            }) => {
                assert_eq!(selector, s);
                (position, message)
            }
            other => panic!("{s:?}: expected a syntax error, got {other:?}"),
        }
    }

    const NAME_PART_REGEX: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_REGEX: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    // --- label selector parsing -------------------------------------------------------

    #[test]
    fn every_operator_parses_and_renders_canonically() {
        let cases = [
            ("a=b", Operator::Equals, vec!["b"], "a=b"),
            ("a==b", Operator::DoubleEquals, vec!["b"], "a==b"),
            ("a!=b", Operator::NotEquals, vec!["b"], "a!=b"),
            ("a in (y,x)", Operator::In, vec!["x", "y"], "a in (x,y)"),
            (
                "a notin (x, y)",
                Operator::NotIn,
                vec!["x", "y"],
                "a notin (x,y)",
            ),
            ("a", Operator::Exists, vec![], "a"),
            ("!a", Operator::DoesNotExist, vec![], "!a"),
            ("a>5", Operator::GreaterThan, vec!["5"], "a>5"),
            ("a<5", Operator::LessThan, vec!["5"], "a<5"),
        ];
        for (input, op, values, canonical) in cases {
            let s = sel(input);
            assert_eq!(s.requirements().len(), 1, "{input}");
            let r = &s.requirements()[0];
            assert_eq!(r.key(), "a", "{input}");
            assert_eq!(r.operator(), op, "{input}");
            assert_eq!(r.values(), values.as_slice(), "{input}");
            assert_eq!(s.to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn empty_and_blank_selectors_match_everything() {
        for s in ["", "   ", "\t\n"] {
            let parsed = sel(s);
            assert!(parsed.is_empty());
            assert_eq!(parsed, LabelSelector::everything());
            assert!(parsed.matches(&labels(&[("x", "y")])));
            assert!(parsed.matches(&BTreeMap::new()));
            assert_eq!(parsed.to_string(), "");
        }
    }

    #[test]
    fn whitespace_is_tolerated_around_tokens() {
        let s = sel("  env  =  prod ,tier in(  fe ,be  ) ,\t!canary,\nzone notin (a)  ");
        assert_eq!(
            s.to_string(),
            "!canary,env=prod,tier in (be,fe),zone notin (a)"
        );
    }

    #[test]
    fn requirements_are_sorted_by_key_stably() {
        let s = sel("z=1,a=2,m,a!=3");
        assert_eq!(s.to_string(), "a=2,a!=3,m,z=1");
    }

    #[test]
    fn set_values_are_sorted_and_deduplicated() {
        assert_eq!(
            sel("a in (c,b,c,a)").requirements()[0].values(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn empty_values_follow_upstream() {
        // `()` is the single empty value; empty list entries are the empty value too.
        assert_eq!(sel("a in ()").requirements()[0].values(), [""]);
        assert_eq!(sel("a in (,b)").requirements()[0].values(), ["", "b"]);
        assert_eq!(sel("a in (b,)").requirements()[0].values(), ["", "b"]);
        assert_eq!(
            sel("a in (b,,c)").requirements()[0].values(),
            ["", "b", "c"]
        );
        assert_eq!(sel("a=").requirements()[0].values(), [""]);
        assert_eq!(sel("a=,b=c").to_string(), "a=,b=c");
        assert_eq!(sel("a in ()").to_string(), "a in ()");
    }

    #[test]
    fn in_and_notin_are_keywords_only_after_a_key() {
        // As keys and values they are ordinary identifiers.
        assert_eq!(sel("in=notin").to_string(), "in=notin");
        assert_eq!(
            sel("notin in (in,notin)").to_string(),
            "notin in (in,notin)"
        );
        assert_eq!(
            sel("!in").requirements()[0].operator(),
            Operator::DoesNotExist
        );
    }

    #[test]
    fn prefixed_keys_parse() {
        let s = sel("app.kubernetes.io/name=web,example.com/x!=y");
        assert_eq!(s.to_string(), "app.kubernetes.io/name=web,example.com/x!=y");
    }

    #[test]
    fn a_nul_byte_ends_the_selector_where_a_token_would_start() {
        // Upstream's lexer reads NUL as end of input; kept so moor accepts what it accepts.
        assert_eq!(sel("a=b \0c=d").to_string(), "a=b");
        assert_eq!(sel("\0a=b"), LabelSelector::everything());
        assert_eq!(sel("a=b\0"), sel("a=b"));
        let (_, msg) = label_err("a=b\0c");
        assert_eq!(msg, "found 'c', expected: ',' or 'end of string'");
    }

    // --- label selector syntax errors ---------------------------------------------------

    #[test]
    fn syntax_errors_use_upstream_messages_and_positions() {
        let cases = [
            ("a=b c", 4, "found 'c', expected: ',' or 'end of string'"),
            ("a=b(", 3, "found '(', expected: ',' or 'end of string'"),
            ("a=b,", 4, "found '', expected: identifier after ','"),
            (
                ",a",
                0,
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "=a",
                0,
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a b",
                2,
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a in x",
                5,
                "unable to parse requirement: found 'x' expected: '('",
            ),
            (
                "a in (x",
                7,
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a in (x y)",
                8,
                "unable to parse requirement: found 'y', expected: ',' or ')'",
            ),
            (
                "a in (=)",
                6,
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "a in (,=)",
                7,
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
            (
                "a=(",
                2,
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "!",
                1,
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "!=a",
                0,
                "found '!=', expected: !, identifier, or 'end of string'",
            ),
            ("!a=b", 2, "found '=', expected: ',' or 'end of string'"),
            ("a,,b", 2, "found ',', expected: identifier after ','"),
        ];
        for (input, pos, msg) in cases {
            assert_eq!(label_err(input), (pos, msg.to_string()), "{input:?}");
        }
    }

    #[test]
    fn syntax_error_display_names_selector_position_and_problem() {
        let err = LabelSelector::parse("a=b(").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid label selector \"a=b(\" at byte 3: found '(', expected: ',' or 'end of string'"
        );
    }

    // --- key and value validation -------------------------------------------------------

    #[test]
    fn invalid_key_characters_are_rejected() {
        let (pos, msg) = label_err("x=1,a@b=c");
        assert_eq!(pos, 4);
        assert_eq!(
            msg,
            format!("unable to parse requirement: key: Invalid value: \"a@b\": {NAME_PART_REGEX}")
        );
    }

    #[test]
    fn key_name_part_length_is_limited_to_63() {
        let ok = "a".repeat(63);
        assert!(LabelSelector::parse(&ok).is_ok());
        let long = "a".repeat(64);
        let (_, msg) = label_err(&long);
        assert!(
            msg.ends_with(": name part must be no more than 63 characters"),
            "{msg}"
        );
    }

    #[test]
    fn key_prefix_must_be_a_dns_subdomain() {
        assert!(LabelSelector::parse("a.b-c.d/x").is_ok());
        let (_, msg) = label_err("Example.com/x");
        assert_eq!(
            msg,
            "unable to parse requirement: key: Invalid value: \"Example.com/x\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        for bad in ["a..b/x", "-a/x", "a-/x", "a_b/x"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
        let long_prefix = format!("{}/x", "a".repeat(254));
        let (_, msg) = label_err(&long_prefix);
        assert!(
            msg.contains("prefix part must be no more than 253 characters"),
            "{msg}"
        );
    }

    #[test]
    fn key_shapes_upstream_rejects() {
        let (_, msg) = label_err("/x");
        assert_eq!(
            msg,
            "unable to parse requirement: key: Invalid value: \"/x\": prefix part must be non-empty"
        );
        let (_, msg) = label_err("a/");
        assert_eq!(
            msg,
            format!(
                "unable to parse requirement: key: Invalid value: \"a/\": name part must be non-empty; {NAME_PART_REGEX}"
            )
        );
        let (_, msg) = label_err("a/b/c");
        assert!(
            msg.contains("a qualified name must consist of alphanumeric characters")
                && msg.ends_with(
                    "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
                ),
            "{msg}"
        );
        for bad in ["-a", "a-", ".a", "a_", "ü", "a b/c"] {
            assert!(LabelSelector::parse(&format!("{bad}=x")).is_err(), "{bad}");
        }
        for good in ["A", "a-b_c.d", "0", "a1_B"] {
            assert!(LabelSelector::parse(&format!("{good}=x")).is_ok(), "{good}");
        }
    }

    #[test]
    fn invalid_values_are_rejected_with_their_path() {
        let (pos, msg) = label_err("k=x, a in (ok, -bad)");
        assert_eq!(pos, 5);
        assert_eq!(
            msg,
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"-bad\": {VALUE_REGEX}"
            )
        );
        let long = format!("a={}", "v".repeat(64));
        let (_, msg) = label_err(&long);
        assert!(msg.contains("must be no more than 63 characters"), "{msg}");
        assert!(LabelSelector::parse(&format!("a={}", "v".repeat(63))).is_ok());
        assert!(LabelSelector::parse("a=ü").is_err());
    }

    #[test]
    fn gt_and_lt_need_an_integer() {
        let (_, msg) = label_err("a>b");
        assert_eq!(
            msg,
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        let (_, msg) = label_err("a<");
        assert_eq!(
            msg,
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
    }

    #[test]
    fn several_problems_are_aggregated() {
        let err = Requirement::new("a", Operator::GreaterThan, ["x", "-y"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid label selector: [values: Invalid value: []string{{\"x\", \"-y\"}}: for 'Gt', 'Lt' operators, exactly one value is required, values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer, values[1]: Invalid value: \"-y\": for 'Gt', 'Lt' operators, the value must be an integer, values[1][a]: Invalid value: \"-y\": {VALUE_REGEX}]"
            )
        );
    }

    #[test]
    fn requirement_new_checks_value_counts() {
        assert!(Requirement::new("a", Operator::In, Vec::<String>::new()).is_err());
        assert!(Requirement::new("a", Operator::NotIn, Vec::<String>::new()).is_err());
        assert!(Requirement::new("a", Operator::Equals, ["x", "y"]).is_err());
        assert!(Requirement::new("a", Operator::NotEquals, Vec::<String>::new()).is_err());
        assert!(Requirement::new("a", Operator::Exists, ["x"]).is_err());
        assert!(Requirement::new("a", Operator::DoesNotExist, ["x"]).is_err());
        assert!(Requirement::new("a", Operator::LessThan, ["1", "2"]).is_err());
        let r = Requirement::new("a", Operator::In, ["y", "x", "y"]).unwrap();
        assert_eq!(r.values(), ["x", "y"]);
        assert_eq!(r.to_string(), "a in (x,y)");
        let s = LabelSelector::new([r, Requirement::new("0", Operator::Exists, [""; 0]).unwrap()]);
        assert_eq!(s.to_string(), "0,a in (x,y)");
    }

    // --- label matching -----------------------------------------------------------------

    #[test]
    fn equality_and_set_operators_match() {
        let l = labels(&[("env", "prod"), ("tier", "fe")]);
        assert!(sel("env=prod").matches(&l));
        assert!(sel("env==prod").matches(&l));
        assert!(!sel("env=dev").matches(&l));
        assert!(sel("env!=dev").matches(&l));
        assert!(!sel("env!=prod").matches(&l));
        assert!(sel("tier in (fe,be)").matches(&l));
        assert!(!sel("tier in (be)").matches(&l));
        assert!(sel("tier notin (be)").matches(&l));
        assert!(!sel("tier notin (fe,be)").matches(&l));
        assert!(sel("env").matches(&l));
        assert!(!sel("!env").matches(&l));
        assert!(sel("env=prod,tier=fe").matches(&l));
        assert!(!sel("env=prod,tier=be").matches(&l));
    }

    #[test]
    fn absent_keys_follow_upstream() {
        let none = BTreeMap::new();
        // Negative operators are satisfied by absence; positive ones are not.
        assert!(sel("a!=x").matches(&none));
        assert!(sel("a notin (x)").matches(&none));
        assert!(sel("!a").matches(&none));
        assert!(!sel("a=x").matches(&none));
        assert!(!sel("a==x").matches(&none));
        assert!(!sel("a in (x)").matches(&none));
        assert!(!sel("a").matches(&none));
        assert!(!sel("a>1").matches(&none));
        assert!(!sel("a<1").matches(&none));
        // An empty value is still a present key.
        let empty = labels(&[("a", "")]);
        assert!(sel("a=").matches(&empty));
        assert!(sel("a in ()").matches(&empty));
        assert!(sel("a").matches(&empty));
        assert!(!sel("a=").matches(&none));
    }

    #[test]
    fn gt_and_lt_compare_integers() {
        let l = labels(&[("n", "10"), ("s", "ten")]);
        assert!(sel("n>9").matches(&l));
        assert!(!sel("n>10").matches(&l));
        assert!(sel("n<11").matches(&l));
        assert!(!sel("n<10").matches(&l));
        assert!(!sel("s>1").matches(&l));
        assert!(!sel("s<1").matches(&l));
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web", "n": 3}}});
        assert!(sel("app=web").matches_object(&pod));
        assert!(!sel("app=db").matches_object(&pod));
        // A non-string label value counts as absent.
        assert!(!sel("n").matches_object(&pod));
        assert!(sel("!n").matches_object(&pod));
        let bare = json!({"kind": "Pod"});
        assert!(sel("").matches_object(&bare));
        assert!(sel("app!=web").matches_object(&bare));
        assert!(!sel("app").matches_object(&bare));
        assert!(!sel("app").matches_object(&json!("not an object")));
    }

    // --- metav1.LabelSelector -----------------------------------------------------------

    fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn structured_err(s: &metav1::LabelSelector) -> String {
        match LabelSelector::from_label_selector(s) {
            Err(e @ SelectorError::InvalidRequirement { .. }) => e.to_string(),
            other => panic!("expected an invalid requirement, got {other:?}"),
        }
    }

    #[test]
    fn structured_selectors_convert() {
        let s = metav1::LabelSelector {
            match_labels: Some(labels(&[("app", "web"), ("tier", "fe")])),
            match_expressions: Some(vec![
                expr("env", "In", Some(&["prod", "stage"])),
                expr("zone", "NotIn", Some(&["a"])),
                expr("canary", "DoesNotExist", None),
                expr("owner", "Exists", Some(&[])),
            ]),
        };
        let sel = LabelSelector::from_label_selector(&s).unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,!canary,env in (prod,stage),owner,tier=fe,zone notin (a)"
        );
        assert_eq!(LabelSelector::parse(&sel.to_string()).unwrap(), sel);
        let pod = labels(&[
            ("app", "web"),
            ("tier", "fe"),
            ("env", "prod"),
            ("owner", "x"),
        ]);
        assert!(sel.matches(&pod));
        let mut canary = pod.clone();
        canary.insert("canary".into(), "true".into());
        assert!(!sel.matches(&canary));
    }

    #[test]
    fn empty_structured_selector_matches_everything() {
        let s = LabelSelector::from_label_selector(&metav1::LabelSelector::default()).unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn structured_selector_errors_name_the_entry() {
        let unknown = metav1::LabelSelector {
            match_expressions: Some(vec![
                expr("a", "Exists", None),
                expr("b", "Gt", Some(&["1"])),
            ]),
            ..Default::default()
        };
        assert_eq!(
            structured_err(&unknown),
            "invalid label selector: matchExpressions[1].operator: \"Gt\" is not a valid label selector operator"
        );
        let exists_with_values = metav1::LabelSelector {
            match_expressions: Some(vec![expr("a", "Exists", Some(&["x"]))]),
            ..Default::default()
        };
        assert_eq!(
            structured_err(&exists_with_values),
            "invalid label selector: matchExpressions[0].values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
        );
        let in_without_values = metav1::LabelSelector {
            match_expressions: Some(vec![expr("a", "In", None)]),
            ..Default::default()
        };
        assert_eq!(
            structured_err(&in_without_values),
            "invalid label selector: matchExpressions[0].values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        let bad_label = metav1::LabelSelector {
            match_labels: Some(labels(&[("a@b", "x")])),
            ..Default::default()
        };
        assert_eq!(
            structured_err(&bad_label),
            format!(
                "invalid label selector: matchLabels[a@b].key: Invalid value: \"a@b\": {NAME_PART_REGEX}"
            )
        );
        let bad_value = metav1::LabelSelector {
            match_labels: Some(labels(&[("a", "x y")])),
            ..Default::default()
        };
        assert!(structured_err(&bad_value).starts_with(
            "invalid label selector: matchLabels[a].values[0][a]: Invalid value: \"x y\": "
        ));
    }

    // --- field selectors ----------------------------------------------------------------

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn field_err(s: &str) -> String {
        match FieldSelector::parse(s) {
            Err(e @ SelectorError::FieldSyntax { .. }) => e.to_string(),
            other => panic!("{s:?}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn field_operators_parse() {
        let s = fsel("spec.nodeName=n1,status.phase!=Failed,metadata.name==web");
        let terms: Vec<(&str, FieldOperator, &str)> = s
            .requirements()
            .iter()
            .map(|r| (r.field(), r.operator(), r.value()))
            .collect();
        assert_eq!(
            terms,
            [
                ("metadata.name", FieldOperator::Equals, "web"),
                ("spec.nodeName", FieldOperator::Equals, "n1"),
                ("status.phase", FieldOperator::NotEquals, "Failed"),
            ]
        );
        assert_eq!(
            s.to_string(),
            "metadata.name=web,spec.nodeName=n1,status.phase!=Failed"
        );
        assert_eq!(fsel(&s.to_string()), s);
    }

    #[test]
    fn empty_field_selectors_match_everything() {
        for s in ["", ",", ",,"] {
            let f = fsel(s);
            assert!(f.is_empty(), "{s:?}");
            assert_eq!(f, FieldSelector::everything());
            assert!(f.matches_object(&json!({})));
        }
    }

    #[test]
    fn field_values_may_be_empty_or_escaped() {
        assert_eq!(fsel("spec.nodeName=").requirements()[0].value(), "");
        assert_eq!(
            fsel("spec.nodeName=").exact_match("spec.nodeName"),
            Some("")
        );
        let s = fsel(r"metadata.name=a\,b\=c\\d,type=x");
        assert_eq!(s.exact_match("metadata.name"), Some(r"a,b=c\d"));
        assert_eq!(s.exact_match("type"), Some("x"));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,type=x");
        assert_eq!(fsel(&s.to_string()), s);
    }

    #[test]
    fn field_syntax_errors_name_the_term() {
        assert_eq!(
            field_err("a=b,nodeName"),
            "invalid field selector \"a=b,nodeName\": can't understand 'nodeName'"
        );
        assert_eq!(
            field_err("a=b=c"),
            "invalid field selector \"a=b=c\": unescaped character in value: '=' in term 'a=b=c'"
        );
        assert_eq!(
            field_err(r"a=b\x"),
            "invalid field selector \"a=b\\\\x\": invalid escape sequence: \\x in term 'a=b\\x'"
        );
        assert_eq!(
            field_err(r"a=b\"),
            "invalid field selector \"a=b\\\\\": invalid escape sequence: \\ in term 'a=b\\'"
        );
    }

    #[test]
    fn field_names_are_split_at_the_first_operator_and_kept_verbatim() {
        // Upstream does not trim or validate field names; validate_for rejects these.
        let s = fsel("a!b=c, spec.nodeName =x");
        let fields: Vec<&str> = s.requirements().iter().map(|r| r.field()).collect();
        assert_eq!(fields, [" spec.nodeName ", "a!b"]);
        assert!(s.validate_for("", "Pod").is_err());
        assert_eq!(fsel("=x").requirements()[0].field(), "");
    }

    #[test]
    fn exact_match_ignores_not_equals_and_other_fields() {
        let s = fsel("spec.nodeName!=n1,status.phase=Running");
        assert_eq!(s.exact_match("spec.nodeName"), None);
        assert_eq!(s.exact_match("status.phase"), Some("Running"));
        assert_eq!(s.exact_match("metadata.name"), None);
        assert_eq!(
            fsel("spec.nodeName==n2").exact_match("spec.nodeName"),
            Some("n2")
        );
    }

    // --- supported fields per kind ------------------------------------------------------

    fn not_supported(group: &str, kind: &str, field: &str) -> String {
        let s = fsel(&format!("{field}=x"));
        match s.validate_for(group, kind) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{group}/{kind} should reject {field}"),
        }
    }

    #[test]
    fn metadata_fields_are_supported_by_namespaced_kinds() {
        for (group, kind) in [
            ("", "Pod"),
            ("", "Event"),
            ("", "Secret"),
            ("", "Service"),
            ("", "ConfigMap"),
            ("", "ReplicationController"),
            ("apps", "ReplicaSet"),
            ("apps", "Deployment"),
            ("batch", "Job"),
            ("example.com", "Widget"),
        ] {
            fsel("metadata.name=a,metadata.namespace=b")
                .validate_for(group, kind)
                .unwrap_or_else(|e| panic!("{group}/{kind}: {e}"));
        }
    }

    #[test]
    fn pod_fields() {
        let all = "metadata.name=a,metadata.namespace=b,spec.nodeName=n,spec.restartPolicy=Always,\
                   spec.schedulerName=s,spec.serviceAccountName=sa,spec.hostNetwork=true,\
                   status.phase=Running,status.podIP=1.2.3.4,status.nominatedNodeName=n,\
                   status.podIPs=x,spec.host=n";
        fsel(all).validate_for("", "Pod").unwrap();
        assert_eq!(
            not_supported("", "Pod", "status.hostIP"),
            "field label not supported: status.hostIP"
        );
        // Pod is a core kind; the same name in another group is not a Pod.
        assert!(
            fsel("spec.nodeName=n")
                .validate_for("example.com", "Pod")
                .is_err()
        );
    }

    #[test]
    fn event_fields() {
        let all = "involvedObject.kind=Pod,involvedObject.namespace=ns,involvedObject.name=p,\
                   involvedObject.uid=u,involvedObject.apiVersion=v1,involvedObject.resourceVersion=1,\
                   involvedObject.fieldPath=f,reason=r,reportingComponent=c,source=s,type=Normal,\
                   metadata.name=e,metadata.namespace=ns";
        fsel(all).validate_for("", "Event").unwrap();
        assert_eq!(
            not_supported("", "Event", "message"),
            "field label not supported: message"
        );
    }

    #[test]
    fn other_kinds_with_their_own_fields() {
        fsel("type=Opaque").validate_for("", "Secret").unwrap();
        fsel("spec.unschedulable=true,metadata.name=n")
            .validate_for("", "Node")
            .unwrap();
        fsel("status.phase=Active,metadata.name=n")
            .validate_for("", "Namespace")
            .unwrap();
        fsel("status.replicas=1")
            .validate_for("apps", "ReplicaSet")
            .unwrap();
        fsel("status.replicas=1")
            .validate_for("", "ReplicationController")
            .unwrap();
        fsel("spec.clusterIP=None,spec.type=ClusterIP")
            .validate_for("", "Service")
            .unwrap();
        fsel("status.successful=1")
            .validate_for("batch", "Job")
            .unwrap();
        assert_eq!(
            not_supported("", "Secret", "data.x"),
            "field label not supported: data.x"
        );
        assert_eq!(
            not_supported("apps", "ReplicaSet", "spec.replicas"),
            "field label not supported: spec.replicas"
        );
        // Cluster-scoped kinds with their own list leave metadata.namespace out, as upstream.
        assert_eq!(
            not_supported("", "Node", "metadata.namespace"),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            not_supported("", "Namespace", "metadata.namespace"),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            not_supported("", "Node", "status.phase"),
            "field label not supported: status.phase"
        );
    }

    #[test]
    fn kinds_without_their_own_fields_use_the_default_message() {
        assert_eq!(
            not_supported("", "ConfigMap", "data.x"),
            "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(
            not_supported("apps", "Deployment", "status.replicas"),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert_eq!(
            supported_field_labels("", "ConfigMap"),
            DEFAULT_FIELD_LABELS
        );
        assert!(supported_field_labels("", "Pod").contains(&"spec.nodeName"));
    }

    // --- field values read from objects -------------------------------------------------

    #[test]
    fn pod_field_values() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
                       "nominatedNodeName": "n2"}
        });
        let m = |s: &str| fsel(s).matches_object(&pod);
        assert!(m("metadata.name=web-1,metadata.namespace=default"));
        assert!(m("spec.nodeName=n1"));
        assert!(m("spec.host=n1"));
        assert!(m(
            "spec.restartPolicy=Always,spec.schedulerName=default-scheduler"
        ));
        assert!(m("spec.serviceAccountName=default"));
        assert!(m("status.phase=Running,status.phase!=Failed"));
        assert!(m("status.podIP=10.0.0.5"));
        assert!(m("status.nominatedNodeName=n2"));
        // Missing boolean reads as false, never as "".
        assert!(m("spec.hostNetwork=false"));
        assert!(!m("spec.hostNetwork="));
        // status.podIPs is accepted but, as upstream, never has a value.
        assert!(m("status.podIPs="));
        assert!(!m("status.podIPs=10.0.0.5"));
        assert!(!m("spec.nodeName=n2"));
        assert!(!m("spec.nodeName!=n1"));

        let host = json!({"spec": {"hostNetwork": true}, "status": {"podIP": "1.2.3.4"}});
        assert!(fsel("spec.hostNetwork=true,status.podIP=1.2.3.4").matches_object(&host));
        // An unscheduled pod has spec.nodeName "" (how the scheduler lists pending pods).
        assert!(fsel("spec.nodeName=,status.podIP=").matches_object(&json!({})));
        assert!(fsel("spec.nodeName!=").matches_object(&pod));
    }

    #[test]
    fn pod_ip_prefers_status_pod_ip() {
        let both = json!({"status": {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.2"}]}});
        assert!(fsel("status.podIP=10.0.0.1").matches_object(&both));
    }

    #[test]
    fn event_field_values() {
        let ev = json!({
            "metadata": {"name": "e1", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u-1",
                               "apiVersion": "v1", "resourceVersion": "42", "fieldPath": "spec.containers{c}"},
            "reason": "Started", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "reportingComponent": "kubelet-x"
        });
        assert!(
            fsel(
                "involvedObject.kind=Pod,involvedObject.namespace=ns,involvedObject.name=p,\
                 involvedObject.uid=u-1,involvedObject.apiVersion=v1,involvedObject.resourceVersion=42,\
                 involvedObject.fieldPath=spec.containers{c},reason=Started,type=Normal,\
                 source=kubelet,reportingComponent=kubelet-x"
            )
            .matches_object(&ev)
        );
        let reported = json!({"reportingComponent": "my-controller"});
        assert!(fsel("source=my-controller").matches_object(&reported));
        assert!(fsel("source=").matches_object(&json!({})));
    }

    #[test]
    fn typed_field_values() {
        let rs = json!({"status": {"replicas": 3}});
        assert!(fsel("status.replicas=3").matches_object(&rs));
        // A missing integer is Go's zero value.
        assert!(fsel("status.replicas=0").matches_object(&json!({"status": {}})));
        assert!(fsel("status.successful=0").matches_object(&json!({})));
        assert!(fsel("status.successful=2").matches_object(&json!({"status": {"successful": 2}})));
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(fsel("spec.unschedulable=true,metadata.name=n1").matches_object(&node));
        assert!(fsel("spec.unschedulable=false").matches_object(&json!({"spec": {}})));
        // Cluster-scoped objects have no namespace: it reads as "".
        assert!(fsel("metadata.namespace=").matches_object(&node));
        let secret = json!({"type": "kubernetes.io/tls"});
        assert!(fsel("type=kubernetes.io/tls").matches_object(&secret));
        let ns = json!({"status": {"phase": "Terminating"}});
        assert!(fsel("status.phase=Terminating").matches_object(&ns));
        let svc = json!({"spec": {"clusterIP": "None", "type": "ClusterIP"}});
        assert!(fsel("spec.clusterIP=None,spec.type=ClusterIP").matches_object(&svc));
    }

    // --- properties ---------------------------------------------------------------------

    fn key_strategy() -> impl Strategy<Value = String> {
        let prefix = proptest::option::of(
            "[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?){0,2}",
        );
        let name = prop_oneof![
            "[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?",
            Just("in".to_string()),
            Just("notin".to_string()),
        ];
        (prefix, name).prop_map(|(p, n)| match p {
            Some(p) => format!("{p}/{n}"),
            None => n,
        })
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "([A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?)?",
            Just("in".to_string()),
        ]
    }

    fn requirement_strategy() -> impl Strategy<Value = Requirement> {
        (
            key_strategy(),
            0usize..9,
            prop::collection::vec(value_strategy(), 1..4),
            -1000i64..1_000_000,
        )
            .prop_map(|(key, op, values, n)| {
                let (op, values) = match op {
                    0 => (Operator::Equals, vec![values[0].clone()]),
                    1 => (Operator::DoubleEquals, vec![values[0].clone()]),
                    2 => (Operator::NotEquals, vec![values[0].clone()]),
                    3 => (Operator::In, values),
                    4 => (Operator::NotIn, values),
                    5 => (Operator::Exists, vec![]),
                    6 => (Operator::DoesNotExist, vec![]),
                    // Label values cannot start with '-', so only non-negative bounds render.
                    7 => (Operator::GreaterThan, vec![n.abs().to_string()]),
                    _ => (Operator::LessThan, vec![n.abs().to_string()]),
                };
                Requirement::new(key, op, values).expect("generated requirement is valid")
            })
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_strings(s in any::<String>()) {
            let _ = LabelSelector::parse(&s).map(|x| x.to_string());
            let _ = FieldSelector::parse(&s).map(|x| x.to_string());
        }

        #[test]
        fn parsers_never_panic_on_selector_like_strings(
            s in "[a-z0-9!=(),<> \\\\/.\\-_\t\u{0}é]{0,40}|([a-z]{1,3}( in | notin |!=|==|=|<|>|,|\\(|\\)| )){0,8}"
        ) {
            if let Ok(parsed) = LabelSelector::parse(&s) {
                // Whatever parses renders to something that parses to the same selector.
                let again = LabelSelector::parse(&parsed.to_string());
                prop_assert_eq!(again.ok(), Some(parsed));
            }
            if let Ok(parsed) = FieldSelector::parse(&s) {
                let text = parsed.to_string();
                prop_assert!(FieldSelector::parse(&text).is_ok());
                let _ = parsed.validate_for("", "Pod");
                let _ = parsed.matches_object(&json!({"spec": {"nodeName": "a"}}));
            }
        }

        #[test]
        fn valid_label_selectors_round_trip(reqs in prop::collection::vec(requirement_strategy(), 0..6)) {
            let selector = LabelSelector::new(reqs);
            let text = selector.to_string();
            let parsed = LabelSelector::parse(&text);
            prop_assert!(parsed.is_ok(), "{:?} did not parse: {:?}", text, parsed);
            let parsed = parsed.unwrap();
            prop_assert_eq!(&parsed.to_string(), &text);
            prop_assert_eq!(parsed, selector);
        }

        #[test]
        fn field_values_round_trip_through_escaping(value in "[a-z,=\\\\]{0,12}") {
            let text = format!("metadata.name={}", escape_value(&value));
            let parsed = FieldSelector::parse(&text).unwrap();
            prop_assert_eq!(parsed.exact_match("metadata.name"), Some(value.as_str()));
            prop_assert_eq!(parsed.to_string(), text);
        }
    }
}

//! Authentication rules that need no HTTP: the static token file (kube-apiserver's
//! `--token-auth-file`), bootstrap tokens (`ID.SECRET`, checked against their Secret in
//! `kube-system`), and the user a bearer token of each shape stands for.
//!
//! Client certificates are read in [`super::pki::identity`]; ServiceAccount JWTs are
//! verified by [`crate::controllers::serviceaccount::TokenIssuer`]. The API server strings
//! them together with the objects they are checked against.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use super::{GROUP_BOOTSTRAPPERS, UserInfo};

/// The namespace bootstrap token Secrets live in.
pub const BOOTSTRAP_NAMESPACE: &str = "kube-system";
/// The Secret type of bootstrap tokens.
pub const BOOTSTRAP_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The name prefix of bootstrap token Secrets (`bootstrap-token-ID`).
pub const BOOTSTRAP_SECRET_PREFIX: &str = "bootstrap-token-";

/// Why a credential was refused. The messages go to the client (401), so they never
/// repeat the credential.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthnError {
    /// The token file cannot be read.
    #[error("reading the token file {}: {reason}", path.display())]
    ReadTokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A line of the token file is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    BadTokenFile {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No bootstrap token Secret has this id, or its secret differs.
    #[error("invalid bootstrap token")]
    BootstrapInvalid,
    /// The bootstrap token's Secret says it expired.
    #[error("bootstrap token {id} expired at {at}")]
    BootstrapExpired {
        /// The token id (public half).
        id: String,
        /// When.
        at: String,
    },
    /// The bootstrap token is not marked for authentication.
    #[error("bootstrap token {0} may not be used for authentication")]
    BootstrapUsage(String),
}

/// The static tokens of a token file: `token,user,uid[,"group1,group2"]` per line, as
/// kube-apiserver's `--token-auth-file` reads them. Blank lines and `#` comments are
/// skipped.
#[derive(Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl std::fmt::Debug for TokenFile {
    // The tokens stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl TokenFile {
    /// Read `path`.
    pub fn load(path: &Path) -> Result<Self, AuthnError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthnError::ReadTokenFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parse the text of a token file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, AuthnError> {
        let mut tokens = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| AuthnError::BadTokenFile {
                path: path.to_owned(),
                line: index + 1,
                reason: reason.to_owned(),
            };
            let fields = split_csv(line).map_err(&bad)?;
            if fields.len() < 3 {
                return Err(bad("expected token,user,uid[,\"group1,group2\"]"));
            }
            let (token, user, uid) = (&fields[0], &fields[1], &fields[2]);
            if token.is_empty() || user.is_empty() {
                return Err(bad("the token and the user must not be empty"));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let mut info = UserInfo::new(user.clone(), groups);
            info.uid = uid.clone();
            if tokens.insert(token.clone(), info).is_some() {
                return Err(bad("this token is already listed on an earlier line"));
            }
        }
        Ok(Self { tokens })
    }

    /// The user `token` stands for, if any.
    pub fn user(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }

    /// How many tokens the file lists.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Split one CSV line: fields separated by commas, a field in double quotes may hold
/// commas and `""` for a quote.
fn split_csv(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => {
                quoted = false;
                if !matches!(chars.peek(), None | Some(',')) {
                    return Err("text after a closing quote");
                }
            }
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("a quote is not closed");
    }
    fields.push(field);
    Ok(fields)
}

/// The id and secret of a bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`), if `token` has
/// that shape.
pub fn bootstrap_token_parts(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// Check a bootstrap token's `id` and `secret` against its Secret (`None`: there is none)
/// as of `now`, and return the user it authenticates: `system:bootstrap:ID` in
/// `system:bootstrappers` plus the Secret's `auth-extra-groups`.
pub fn bootstrap_user(
    secret_object: Option<&Value>,
    id: &str,
    secret: &str,
    now: jiff::Timestamp,
) -> Result<UserInfo, AuthnError> {
    let object = secret_object.ok_or(AuthnError::BootstrapInvalid)?;
    if object.get("type").and_then(Value::as_str) != Some(BOOTSTRAP_SECRET_TYPE)
        || object.pointer("/metadata/deletionTimestamp").is_some()
    {
        return Err(AuthnError::BootstrapInvalid);
    }
    let field = |name: &str| -> Option<String> {
        let encoded = object.pointer(&format!("/data/{name}"))?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        String::from_utf8(bytes).ok()
    };
    let stored_id = field("token-id").unwrap_or_default();
    let stored_secret = field("token-secret").unwrap_or_default();
    // Compared in constant time: the secret half must not leak through timing.
    if stored_id != id || !constant_time_eq(stored_secret.as_bytes(), secret.as_bytes()) {
        return Err(AuthnError::BootstrapInvalid);
    }
    if let Some(expiration) = field("expiration") {
        let at: jiff::Timestamp = expiration
            .parse()
            .map_err(|_| AuthnError::BootstrapInvalid)?;
        if at <= now {
            return Err(AuthnError::BootstrapExpired {
                id: id.to_owned(),
                at: expiration,
            });
        }
    }
    if field("usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(AuthnError::BootstrapUsage(id.to_owned()));
    }
    let mut groups = vec![GROUP_BOOTSTRAPPERS.to_owned()];
    if let Some(extra) = field("auth-extra-groups") {
        // Upstream only honours extra groups under system:bootstrappers: a token must not
        // be able to name itself into system:masters.
        groups.extend(
            extra
                .split(',')
                .map(str::trim)
                .filter(|g| g.starts_with("system:bootstrappers:"))
                .map(str::to_owned),
        );
    }
    Ok(UserInfo::new(format!("system:bootstrap:{id}"), groups))
}

/// A new bootstrap token (`ID.SECRET`) from the kernel's random source, and the Secret
/// object that makes it valid until `expires`, for `description`.
pub fn new_bootstrap_token(
    expires: Option<jiff::Timestamp>,
    description: &str,
) -> std::io::Result<(String, Value)> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 22];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // 36 symbols: the modulo bias over a byte (256 % 36 = 4) is under 2% per character,
    // against 16 characters of secret; upstream draws the same way.
    let text: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let (id, secret) = text.split_at(6);
    let mut string_data = serde_json::json!({
        "token-id": id,
        "token-secret": secret,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "description": description,
    });
    if let Some(at) = expires {
        string_data["expiration"] = Value::String(at.to_string());
    }
    let data: serde_json::Map<String, Value> = string_data
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let text = v.as_str().unwrap_or_default();
            (
                k.clone(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
            )
        })
        .collect();
    let object = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("{BOOTSTRAP_SECRET_PREFIX}{id}"), "namespace": BOOTSTRAP_NAMESPACE},
        "type": BOOTSTRAP_SECRET_TYPE,
        "data": data,
    });
    Ok((format!("{id}.{secret}"), object))
}

/// Equality that takes as long whatever the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse_as_kube_apiserver_reads_them() {
        let text = "# comment\n\nt1,alice,u1\nt2,bob,u2,\"dev,ops\"\n";
        let file = TokenFile::parse(text, Path::new("tokens.csv")).unwrap();
        assert_eq!(file.len(), 2);
        let alice = file.user("t1").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "u1");
        assert_eq!(alice.groups, vec!["system:authenticated"]);
        let bob = file.user("t2").unwrap();
        assert_eq!(bob.groups, vec!["dev", "ops", "system:authenticated"]);
        assert!(file.user("t3").is_none());
        let err = TokenFile::parse("a,b,c\nonly-two,x\n", Path::new("f")).unwrap_err();
        assert_eq!(
            err.to_string().split(':').take(2).collect::<Vec<_>>(),
            ["f", "2"]
        );
        assert!(TokenFile::parse("a,b,c\na,d,e\n", Path::new("f")).is_err());
        assert!(TokenFile::parse("a,b,c,\"x\n", Path::new("f")).is_err());
        // Debug output never shows a token.
        assert!(!format!("{file:?}").contains("t1"));
    }

    #[test]
    fn bootstrap_tokens_are_checked_against_their_secret() {
        let now = jiff::Timestamp::now();
        let expires = now + jiff::SignedDuration::from_hours(1);
        let (token, secret) = new_bootstrap_token(Some(expires), "test").unwrap();
        let (id, half) = bootstrap_token_parts(&token).unwrap();
        let user = bootstrap_user(Some(&secret), id, half, now).unwrap();
        assert_eq!(user.name, format!("system:bootstrap:{id}"));
        assert!(user.in_group(GROUP_BOOTSTRAPPERS));
        assert!(user.in_group(super::super::GROUP_AUTHENTICATED));
        // Wrong secret, missing Secret, expired.
        let wrong = "0000000000000000";
        assert_eq!(
            bootstrap_user(Some(&secret), id, wrong, now),
            Err(AuthnError::BootstrapInvalid)
        );
        assert_eq!(
            bootstrap_user(None, id, half, now),
            Err(AuthnError::BootstrapInvalid)
        );
        let later = expires + jiff::SignedDuration::from_secs(1);
        assert!(matches!(
            bootstrap_user(Some(&secret), id, half, later),
            Err(AuthnError::BootstrapExpired { .. })
        ));
        // Extra groups outside system:bootstrappers: are ignored.
        let mut escalating = secret.clone();
        escalating["data"]["auth-extra-groups"] = Value::String(
            base64::engine::general_purpose::STANDARD
                .encode("system:masters,system:bootstrappers:workers"),
        );
        let user = bootstrap_user(Some(&escalating), id, half, now).unwrap();
        assert!(!user.in_group("system:masters"));
        assert!(user.in_group("system:bootstrappers:workers"));
    }

    #[test]
    fn bootstrap_token_shape() {
        assert!(bootstrap_token_parts("abcdef.0123456789abcdef").is_some());
        assert!(bootstrap_token_parts("abcdef.0123456789abcde").is_none());
        assert!(bootstrap_token_parts("ABCDEF.0123456789abcdef").is_none());
        assert!(bootstrap_token_parts("eyJhbGciOi.x.y").is_none());
    }
}

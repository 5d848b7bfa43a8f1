//! Service accounts: the controller that gives every namespace its `default`
//! ServiceAccount, and [`TokenIssuer`], which signs and verifies the service-account
//! tokens pods present to the API (the JWTs `kubectl create token` prints upstream).
//!
//! The controller creates `default` when a namespace appears and again whenever it is
//! deleted, except in namespaces being deleted (the API refuses new content there, and the
//! namespace controller is emptying them). It owns only ServiceAccounts named `default`,
//! and only their existence: it never changes or deletes a ServiceAccount, and never
//! touches Secrets (upstream's legacy token Secrets are gone since Kubernetes 1.24).
//!
//! [`TokenIssuer`] owns one file, [`KEY_FILE`] in the data dir: an Ed25519 private key
//! (PKCS#8 DER, `openssl pkey -inform DER -in service-account.key` reads it), created on
//! first use; a PKCS#8 PEM key put there instead (`openssl genpkey -algorithm ed25519`)
//! is used as well. One key: rotation (several verifying keys) is not done yet. Nothing here serves the TokenRequest subresource or authenticates requests:
//! that is the API server's routing, which calls [`TokenIssuer::issue`] and
//! [`TokenIssuer::verify`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{ApiError, Context, api_error};

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The issuer (`iss`) of the tokens: kube-apiserver's usual `--service-account-issuer`.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The signing key's file name in the data dir.
pub const KEY_FILE: &str = "service-account.key";
/// How long a reconcile waits for the ServiceAccount cache's first list.
const CACHE_WAIT: Duration = Duration::from_secs(10);
/// How far a token's `exp`/`nbf` may be off before it is refused: clocks of API servers
/// and nodes drift. Upstream's validator allows the same minute.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------

/// Errors a reconcile returns (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The ServiceAccount cache has not loaded yet.
    #[error("the ServiceAccount cache has not synced within {CACHE_WAIT:?}")]
    NotSynced,
    /// The ServiceAccount watch stopped for good (the controller is shutting down).
    #[error("the ServiceAccount cache is gone")]
    CacheGone(#[source] reflector::store::WriterDropped),
}

struct State {
    ctx: Arc<Context>,
    accounts: Store<ServiceAccount>,
}

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (accounts, writer) = reflector::store();
    // Only `default` matters: the field selector keeps every other ServiceAccount out of
    // the cache.
    let account_events = watcher(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}")),
    )
    .default_backoff()
    .reflect(writer)
    .touched_objects();
    let state = Arc::new(State { ctx, accounts });
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .watches_stream(account_events, |sa: ServiceAccount| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |obj, state| crate::metrics::timed_reconcile("serviceaccount", reconcile(obj, state)),
            error_policy,
            state,
        )
        .for_each(|_| async {})
        .await;
}

fn error_policy(_ns: Arc<Namespace>, error: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "serviceaccount reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

/// Whether the namespace is being deleted (upstream checks the phase; the deletion
/// timestamp comes first and is what the API server refuses creates on).
fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action, Error> {
    if terminating(&ns) {
        return Ok(Action::await_change());
    }
    let namespace = ns.name_any();
    // Before the first list has landed an absent ServiceAccount means nothing. Bounded, so
    // a watch that cannot start shows up as retried errors rather than a silent hang.
    match tokio::time::timeout(CACHE_WAIT, state.accounts.wait_until_ready()).await {
        Ok(ready) => ready.map_err(Error::CacheGone)?,
        Err(_) => return Err(Error::NotSynced),
    }
    let key = ObjectRef::new(DEFAULT_SERVICE_ACCOUNT).within(&namespace);
    if state.accounts.get(&key).is_some() {
        return Ok(Action::await_change());
    }
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.to_owned()),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(state.ctx.client.clone(), &namespace);
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => {
            tracing::debug!(%namespace, "created the default ServiceAccount");
            Ok(Action::await_change())
        }
        // 409: the cache lags and it exists. 403: the namespace started terminating.
        // 404: the namespace is gone. None of these is ours to retry.
        Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => Ok(Action::await_change()),
        Err(source) => Err(api_error(format!(
            "creating ServiceAccount {namespace}/{DEFAULT_SERVICE_ACCOUNT}"
        ))(source)
        .into()),
    }
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

/// What goes wrong loading the key, issuing or verifying a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The key file or the data dir could not be read.
    #[error("reading the service-account signing key {path}: {source}", path = path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The key file could not be written.
    #[error("writing the service-account signing key {path}: {source}", path = path.display())]
    WriteKey {
        /// The key file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds something other than a PKCS#8 Ed25519 private key.
    #[error(
        "the service-account signing key {path} is not a PKCS#8 (DER or PEM) Ed25519 private key: {reason}",
        path = path.display()
    )]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The expiry asked for is zero or too far away to write down.
    #[error("token expiry must be between 1 second and 100 years, not {0:?}")]
    InvalidExpiry(Duration),
    /// Signing failed.
    #[error("signing a service-account token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// Not a JWT, or not one of ours in shape (missing claims, wrong algorithm).
    #[error("malformed service-account token: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// The signature does not match: forged, tampered with, or from another key.
    #[error("service-account token signature is invalid")]
    Signature,
    /// Issued by someone else.
    #[error("service-account token was not issued by {expected}")]
    Issuer {
        /// The issuer tokens must name.
        expected: String,
    },
    /// Not meant for this audience.
    #[error("service-account token is not valid for audience {audience:?}")]
    Audience {
        /// The audience asked for.
        audience: String,
    },
    /// Past its `exp`.
    #[error("service-account token expired at {at}")]
    Expired {
        /// When it expired.
        at: jiff::Timestamp,
    },
    /// Before its `nbf`.
    #[error("service-account token is not valid before {at}")]
    NotYetValid {
        /// When it becomes valid.
        at: jiff::Timestamp,
    },
}

/// A reference to an object in the `kubernetes.io` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectClaim {
    /// Its name.
    pub name: String,
    /// Its uid: a token dies with the object even if one of the same name comes back.
    pub uid: String,
}

/// The private `kubernetes.io` claim, as upstream writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: ObjectClaim,
    /// The pod the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectClaim>,
}

/// The claims of a service-account token (upstream's shape, so tools that decode
/// Kubernetes tokens read these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// `system:serviceaccount:NAMESPACE:NAME`: the user the API server authenticates.
    pub sub: String,
    /// Audiences the token is meant for.
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// A unique id, for audit logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The ServiceAccount (and pod) the token speaks for.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// The ServiceAccount's username, `system:serviceaccount:NAMESPACE:NAME`.
    pub fn username(namespace: &str, name: &str) -> String {
        format!("system:serviceaccount:{namespace}:{name}")
    }
}

/// Signs and verifies service-account tokens with one Ed25519 key kept in the data dir.
/// Cheap to clone; every API server sharing a data dir (or a copy of the key file) issues
/// tokens the others accept.
#[derive(Clone)]
pub struct TokenIssuer {
    issuer: String,
    key_id: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public: Jwk,
}

impl std::fmt::Debug for TokenIssuer {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The fixed DER prefix of a PKCS#8 v1 Ed25519 private key (RFC 8410 §7): the 32-byte
/// seed follows it.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl TokenIssuer {
    /// The issuer for `data_dir`'s key, creating the key (0600, written to a temp file
    /// then linked into place, so a crash never leaves half a key and two processes
    /// starting at once end up with the same one) if there is none yet.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, TokenError> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(der) => return Self::from_der(&path, &der),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(TokenError::ReadKey { path, source }),
        }
        let write_error = |source| TokenError::WriteKey {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(write_error)?;
        let der = new_key_der().map_err(write_error)?;
        // tempfile creates the file 0600 from the start: the key is never readable by
        // others, not even for a moment.
        let mut file = tempfile::Builder::new()
            .prefix(".service-account.key.")
            .tempfile_in(data_dir)
            .map_err(write_error)?;
        file.write_all(&der).map_err(write_error)?;
        file.as_file().sync_all().map_err(write_error)?;
        match file.persist_noclobber(&path) {
            Ok(_) => {
                // The new name must survive a crash too.
                std::fs::File::open(data_dir)
                    .and_then(|dir| dir.sync_all())
                    .map_err(write_error)?;
                Self::from_der(&path, &der)
            }
            // Another process created it first: use theirs, or tokens would not verify.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                let der = std::fs::read(&path).map_err(|source| TokenError::ReadKey {
                    path: path.clone(),
                    source,
                })?;
                Self::from_der(&path, &der)
            }
            Err(e) => Err(write_error(e.error)),
        }
    }

    fn from_der(path: &Path, der: &[u8]) -> Result<Self, TokenError> {
        let bad = |reason: String| TokenError::BadKey {
            path: path.to_owned(),
            reason,
        };
        // A PEM key an operator brought (`openssl genpkey -algorithm ed25519`) is the same
        // DER inside.
        let unwrapped;
        let der = if der.starts_with(b"-----BEGIN") {
            unwrapped = EncodingKey::from_ed_pem(der)
                .map_err(|e| bad(e.to_string()))?
                .as_bytes()
                .to_vec();
            unwrapped.as_slice()
        } else {
            der
        };
        if der.len() != ED25519_PKCS8_PREFIX.len() + 32 || !der.starts_with(&ED25519_PKCS8_PREFIX) {
            return Err(bad(format!("{} bytes of something else", der.len())));
        }
        let encoding = EncodingKey::from_ed_der(der);
        let public =
            Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).map_err(|e| bad(e.to_string()))?;
        let decoding = DecodingKey::from_jwk(&public).map_err(|e| bad(e.to_string()))?;
        // Upstream's kid is a hash of the public key too: verifiers pick the key by it.
        let key_id = public
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| bad(e.to_string()))?;
        let mut public = public;
        public.common.key_id = Some(key_id.clone());
        public.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(TokenIssuer {
            issuer: DEFAULT_ISSUER.to_owned(),
            key_id,
            encoding,
            decoding,
            public,
        })
    }

    /// Use another issuer string (`--service-account-issuer`).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The issuer tokens name and must name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id (`kid`) tokens carry.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as a JWK set, what `/openid/v1/jwks` serves so others can verify.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.public.clone()],
        }
    }

    /// A token for ServiceAccount `namespace/name` (uid `uid`), valid from now for
    /// `expiry`, for `audiences` (none: the issuer itself, as kube-apiserver's default
    /// `--api-audiences`).
    pub fn issue(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        expiry: Duration,
    ) -> Result<String, TokenError> {
        self.issue_claims(namespace, name, uid, None, audiences, expiry)
    }

    /// [`issue`](Self::issue), bound to a pod as well: TokenRequest's `boundObjectRef`.
    pub fn issue_for_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        pod: ObjectClaim,
        audiences: &[String],
        expiry: Duration,
    ) -> Result<String, TokenError> {
        self.issue_claims(namespace, name, uid, Some(pod), audiences, expiry)
    }

    fn issue_claims(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        pod: Option<ObjectClaim>,
        audiences: &[String],
        expiry: Duration,
    ) -> Result<String, TokenError> {
        const MAX_EXPIRY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        if expiry < Duration::from_secs(1) || expiry > MAX_EXPIRY {
            return Err(TokenError::InvalidExpiry(expiry));
        }
        let now = jiff::Timestamp::now().as_second();
        // Bounded above, so the cast cannot wrap.
        let lifetime = i64::try_from(expiry.as_secs()).unwrap_or(i64::MAX / 2);
        let aud = if audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            audiences.to_vec()
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: Claims::username(namespace, name),
            aud,
            exp: now.saturating_add(lifetime),
            iat: now,
            nbf: now,
            jti: Some(uuid::Uuid::new_v4().to_string()),
            kubernetes: KubernetesClaims {
                namespace: namespace.to_owned(),
                serviceaccount: ObjectClaim {
                    name: name.to_owned(),
                    uid: uid.to_owned(),
                },
                pod,
            },
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(TokenError::Sign)
    }

    /// The claims of `token` if it is ours (signature, issuer), meant for `audience`, and
    /// within its validity (allowing [`CLOCK_SKEW`]) now.
    pub fn verify(&self, token: &str, audience: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, audience, jiff::Timestamp::now())
    }

    /// [`verify`](Self::verify) as of `now`.
    pub fn verify_at(
        &self,
        token: &str,
        audience: &str,
        now: jiff::Timestamp,
    ) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked below against `now`, so tests and callers can say when "now" is.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::Signature,
                ErrorKind::InvalidIssuer => TokenError::Issuer {
                    expected: self.issuer.clone(),
                },
                ErrorKind::InvalidAudience => TokenError::Audience {
                    audience: audience.to_owned(),
                },
                _ => TokenError::Malformed(e),
            },
        )?;
        let claims = data.claims;
        let skew = i64::try_from(CLOCK_SKEW.as_secs()).unwrap_or(0);
        let now = now.as_second();
        let at = |seconds: i64| {
            jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        };
        if claims.exp.saturating_add(skew) <= now {
            return Err(TokenError::Expired { at: at(claims.exp) });
        }
        if claims.nbf.saturating_sub(skew) > now {
            return Err(TokenError::NotYetValid { at: at(claims.nbf) });
        }
        Ok(claims)
    }
}

/// A fresh Ed25519 private key as PKCS#8 DER: 32 random bytes behind the fixed prefix.
/// The seed comes from the kernel's CSPRNG (moor runs on Linux only: containerd, CNI),
/// which spares a dependency on a random-number crate for 32 bytes.
fn new_key_der() -> std::io::Result<Vec<u8>> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    Ok(der)
}

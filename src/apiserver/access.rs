//! Access control in front of every handler: who is calling (authentication), whether
//! they may (authorization), how much they may hold open at once (limits), and what they
//! did (the audit log).
//!
//! How a request arrived decides where its identity comes from. The TLS listener tags
//! each request with [`Transport::Tls`] and the client certificate's identity; a bearer
//! token, when sent, takes precedence. The plain-HTTP listener (`--insecure-listen`, loopback
//! only) and the in-process client are trusted with full access, as kube-apiserver's old
//! insecure port and loopback client were. Anonymous requests reach only the health and
//! version endpoints.
//!
//! Authorization asks the node authorizer, then RBAC. Users in `system:masters` skip both.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::Inner;
use super::error::ApiError;
use crate::api::registry;
use crate::auth::authn::{
    BOOTSTRAP_NAMESPACE, BOOTSTRAP_SECRET_PREFIX, TokenFile, bootstrap_token_parts, bootstrap_user,
};
use crate::auth::node::{self, NodeGraph, RefKind};
use crate::auth::pki::ClusterCa;
use crate::auth::rbac::Policy;
use crate::auth::{
    Attributes, Decision, GROUP_AUTHENTICATED, GROUP_MASTERS, GROUP_SERVICE_ACCOUNTS, UserInfo,
};
use crate::controllers::serviceaccount::TokenIssuer;

/// Paths anyone may read without a credential.
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// How a request reached the server: set by the listener that accepted its connection.
#[derive(Clone, Debug)]
pub enum Transport {
    /// A TLS connection, with the identity of the client certificate if one was presented
    /// (the handshake verified it against the cluster CA).
    Tls {
        /// The certificate's user and groups.
        peer: Option<UserInfo>,
        /// The client's address.
        remote: SocketAddr,
    },
    /// The plain-HTTP listener, bound to loopback: full access.
    Insecure {
        /// The client's address.
        remote: SocketAddr,
    },
}

/// The caller of a request, once authenticated: what handlers read (SelfSubjectReview,
/// the audit log).
#[derive(Clone, Debug)]
pub struct Caller(pub UserInfo);

/// Per-user limits on what is open at once (kube-apiserver's `--max-requests-inflight`,
/// per user, and a cap on watches): one caller cannot starve the others.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests other than watches in flight per user.
    pub requests_per_user: usize,
    /// Watches open per user.
    pub watches_per_user: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_user: 400,
            watches_per_user: 1000,
        }
    }
}

/// How the server authenticates and limits callers on its TLS listener.
#[derive(Default)]
pub struct Security {
    /// Static bearer tokens (`--token-auth-file`).
    pub token_file: Option<TokenFile>,
    /// Verifies ServiceAccount tokens.
    pub service_accounts: Option<TokenIssuer>,
    /// Audiences a ServiceAccount token must name one of (default: the issuer).
    pub api_audiences: Vec<String>,
    /// The cluster CA: signs node certificates for joining agents.
    pub ca: Option<Arc<ClusterCa>>,
    /// Per-user limits.
    pub limits: Limits,
    /// Where the audit log goes.
    pub audit: Option<AuditLog>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("token_file", &self.token_file)
            .field("service_accounts", &self.service_accounts)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The state access control keeps: the RBAC policy built from the caches, and the
/// per-user semaphores.
#[derive(Default)]
pub struct AccessState {
    policy: Mutex<(i64, Arc<Policy>)>,
    requests: Mutex<HashMap<String, Arc<Semaphore>>>,
    watches: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The RBAC resources the policy is built from.
const RBAC_RESOURCES: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

impl Inner {
    /// The RBAC policy as of the caches now: rebuilt when any RBAC object changed.
    pub(super) fn rbac_policy(&self) -> Arc<Policy> {
        let caches: Vec<_> = RBAC_RESOURCES
            .iter()
            .filter_map(|plural| self.caches.get(&(RBAC_GROUP, *plural)))
            .collect();
        let stamp: i64 = caches.iter().map(|c| c.revision()).sum();
        let mut cached = self.access.policy.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != stamp || cached.0 == 0 {
            let snapshots: Vec<_> = caches
                .iter()
                .map(|c| c.list("", None, 0, &Default::default()).0)
                .collect();
            let policy = Policy::from_objects(
                snapshots
                    .iter()
                    .flat_map(|s| s.objects.iter().map(|(_, o)| &o.value)),
            );
            *cached = (stamp, Arc::new(policy));
        }
        cached.1.clone()
    }

    /// The decision for `attrs`: superusers, then the node authorizer, then RBAC.
    pub(super) fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.in_group(GROUP_MASTERS) {
            return Decision::Allow("system:masters".to_owned());
        }
        match node::authorize(&CacheGraph(self), attrs) {
            Decision::NoOpinion => self.rbac_policy().authorize(attrs),
            decided => decided,
        }
    }

    /// The user a bearer token stands for.
    fn authenticate_token(&self, token: &str) -> Result<UserInfo, ApiError> {
        let security = self.security();
        if let Some((id, secret)) = bootstrap_token_parts(token) {
            let key = registry::by_resource("", "v1", "secrets").map(|info| {
                info.key(
                    Some(BOOTSTRAP_NAMESPACE),
                    &format!("{BOOTSTRAP_SECRET_PREFIX}{id}"),
                )
            });
            let object = key.and_then(|key| self.cache_of("", "secrets")?.get(&key).0);
            return bootstrap_user(
                object.as_ref().map(|o| &o.value),
                id,
                secret,
                jiff::Timestamp::now(),
            )
            .map_err(|e| ApiError::unauthorized(e.to_string()));
        }
        if let Some(user) = security.token_file.as_ref().and_then(|f| f.user(token)) {
            return Ok(user.clone());
        }
        if let Some(issuer) = &security.service_accounts
            && token.split('.').count() == 3
        {
            return self.authenticate_service_account(issuer, token);
        }
        Err(ApiError::unauthorized("invalid bearer token"))
    }

    fn authenticate_service_account(
        &self,
        issuer: &TokenIssuer,
        token: &str,
    ) -> Result<UserInfo, ApiError> {
        let security = self.security();
        let default_audience = [issuer.issuer().to_owned()];
        let audiences = if security.api_audiences.is_empty() {
            &default_audience[..]
        } else {
            &security.api_audiences[..]
        };
        let mut last = None;
        let mut claims = None;
        for audience in audiences {
            match issuer.verify(token, audience) {
                Ok(c) => {
                    claims = Some(c);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let claims = claims.ok_or_else(|| {
            ApiError::unauthorized(
                last.map(|e| e.to_string())
                    .unwrap_or_else(|| "invalid bearer token".to_owned()),
            )
        })?;
        let k = &claims.kubernetes;
        // A token dies with its ServiceAccount (and its pod): the uid must still match.
        let exists = |plural: &'static str, name: &str, uid: &str| {
            registry::by_resource("", "v1", plural)
                .and_then(|info| {
                    self.cache_of("", info.plural)?
                        .get(&info.key(Some(&k.namespace), name))
                        .0
                })
                .is_some_and(|o| {
                    o.value.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid)
                })
        };
        if !exists(
            "serviceaccounts",
            &k.serviceaccount.name,
            &k.serviceaccount.uid,
        ) {
            return Err(ApiError::unauthorized(format!(
                "service account {}/{} (uid {}) no longer exists",
                k.namespace, k.serviceaccount.name, k.serviceaccount.uid
            )));
        }
        let mut user = UserInfo::new(
            claims.sub.clone(),
            [
                GROUP_SERVICE_ACCOUNTS.to_owned(),
                format!("{GROUP_SERVICE_ACCOUNTS}:{}", k.namespace),
            ],
        );
        user.uid = k.serviceaccount.uid.clone();
        if let Some(pod) = &k.pod {
            if !exists("pods", &pod.name, &pod.uid) {
                return Err(ApiError::unauthorized(format!(
                    "the pod {}/{} the token is bound to no longer exists",
                    k.namespace, pod.name
                )));
            }
            user.extra.insert(
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec![pod.name.clone()],
            );
            user.extra.insert(
                "authentication.kubernetes.io/pod-uid".to_owned(),
                vec![pod.uid.clone()],
            );
        }
        Ok(user)
    }

    fn cache_of(
        &self,
        group: &'static str,
        plural: &'static str,
    ) -> Option<&Arc<super::cache::ResourceCache>> {
        self.caches.get(&(group, plural))
    }

    fn semaphore(
        map: &Mutex<HashMap<String, Arc<Semaphore>>>,
        user: &str,
        permits: usize,
    ) -> Arc<Semaphore> {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        // Users with nothing in flight are dropped now and then, so the map does not grow
        // with every name ever seen.
        if map.len() > 10_000 {
            map.retain(|_, s| s.available_permits() < permits);
        }
        map.entry(user.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }
}

/// The pods cache as the node authorizer's graph.
struct CacheGraph<'a>(&'a Inner);

impl CacheGraph<'_> {
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<super::cache::CachedObject>> {
        let info = registry::by_resource("", "v1", "pods")?;
        self.0
            .cache_of("", "pods")?
            .get(&info.key(Some(namespace), name))
            .0
    }
}

impl NodeGraph for CacheGraph<'_> {
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
        let pod = self.pod(namespace, name)?;
        Some(
            pod.value
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        )
    }

    fn node_references(&self, node: &str, kind: RefKind, namespace: &str, name: &str) -> bool {
        let Some(info) = registry::by_resource("", "v1", "pods") else {
            return false;
        };
        let Some(cache) = self.0.cache_of("", "pods") else {
            return false;
        };
        let (snapshot, _) = cache.list(&info.prefix(Some(namespace)), None, 0, &Default::default());
        snapshot.objects.iter().any(|(_, pod)| {
            pod.value.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node)
                && node::pod_references(&pod.value, kind, name)
        })
    }
}

/// The user of trusted transports (the in-process client, the insecure listener).
fn trusted_user(name: &str) -> UserInfo {
    UserInfo::new(name, [GROUP_MASTERS.to_owned()])
}

/// The middleware: authenticate, authorize, limit, audit, then call the handler.
pub(super) async fn access_control(
    State(inner): State<Arc<Inner>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let transport = req.extensions().get::<Transport>().cloned();
    let (user, remote, limited) = match transport {
        // No transport: the in-process client (or a caller of the router itself).
        None => (trusted_user("system:apiserver"), None, false),
        Some(Transport::Insecure { remote }) => {
            (trusted_user("system:unsecured"), Some(remote), false)
        }
        Some(Transport::Tls { peer, remote }) => {
            let bearer = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(|t| t.trim().to_owned());
            let user = match bearer {
                Some(token) => match inner.authenticate_token(&token) {
                    Ok(user) => user,
                    Err(e) => {
                        return audited(
                            &inner,
                            None,
                            &req,
                            Some(remote),
                            started,
                            e.into_response(),
                        );
                    }
                },
                None => peer.unwrap_or_else(UserInfo::anonymous),
            };
            (user, Some(remote), true)
        }
    };
    // `kubectl --as`: act as another user, if allowed to impersonate them.
    let user = match impersonate(&inner, user, req.headers()) {
        Ok(user) => user,
        Err(e) => return audited(&inner, None, &req, remote, started, e.into_response()),
    };
    if !user.in_group(GROUP_AUTHENTICATED) && !PUBLIC_PATHS.contains(&req.uri().path()) {
        let e = ApiError::unauthorized("Unauthorized");
        return audited(
            &inner,
            Some(&user),
            &req,
            remote,
            started,
            e.into_response(),
        );
    }
    let mut attrs = Attributes::from_request(
        user.clone(),
        req.method().as_str(),
        req.uri().path(),
        req.uri().query(),
    );
    // A node creating its Node or Lease: the name is in the body, and the node authorizer
    // must see it (NodeRestriction's check).
    if attrs.user.node_name().is_some()
        && req.method() == Method::POST
        && attrs
            .resource
            .as_ref()
            .is_some_and(|r| r.name.is_empty() && matches!(r.resource.as_str(), "nodes" | "leases"))
    {
        let (parts, body) = req.into_parts();
        let bytes = match super::read_body(body).await {
            Ok(bytes) => bytes,
            Err(e) => return e.into_response(),
        };
        let name = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.pointer("/metadata/name")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        if let Some(r) = attrs.resource.as_mut() {
            r.name = name;
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let public = PUBLIC_PATHS.contains(&req.uri().path()) && req.method() == Method::GET;
    if !public {
        let decision = inner.authorize(&attrs);
        if !decision.allowed() {
            let reason = match &decision {
                Decision::Deny(reason) => reason.as_str(),
                _ => "",
            };
            let e = ApiError::forbidden(attrs.forbidden_message(reason));
            let e = match &attrs.resource {
                Some(r) => {
                    e.with_details(json!({"name": r.name, "group": r.group, "kind": r.resource}))
                }
                None => e,
            };
            return audited(
                &inner,
                Some(&user),
                &req,
                remote,
                started,
                e.into_response(),
            );
        }
    }
    // Limits apply to callers from the network; in-process components and the loopback
    // listener are the server's own.
    let mut permit: Option<OwnedSemaphorePermit> = None;
    if limited {
        let limits = inner.security().limits;
        let (map, permits, what) = if attrs.verb == "watch" {
            (&inner.access.watches, limits.watches_per_user, "watches")
        } else {
            (&inner.access.requests, limits.requests_per_user, "requests")
        };
        let semaphore = Inner::semaphore(map, &user.name, permits);
        match semaphore.try_acquire_owned() {
            Ok(p) => permit = Some(p),
            Err(_) => {
                let e = ApiError::too_many_requests(format!(
                    "too many {what} in flight for user {:?} (limit {permits}); retry later",
                    user.name
                ));
                let mut response = e.into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return audited(&inner, Some(&user), &req, remote, started, response);
            }
        }
    }
    let audit = inner
        .security()
        .audit
        .as_ref()
        .map(|_| AuditRequest::of(&req));
    req.extensions_mut().insert(Caller(user.clone()));
    let response = next.run(req).await;
    if let (Some(log), Some(request)) = (&inner.security().audit, audit) {
        log.record(&user, &request, remote, response.status().as_u16(), started);
    }
    match permit {
        // A watch holds its permit as long as its stream is open.
        Some(permit) if attrs.verb == "watch" => {
            use http_body_util::BodyExt;
            response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _held = &permit;
                    frame
                }))
            })
        }
        _ => response,
    }
}

/// The user a request acts as: `user`, or the one its `Impersonate-User` (and
/// `Impersonate-Group`, `Impersonate-Uid`) headers name when `user` may impersonate them
/// (the `impersonate` verb on users, groups, serviceaccounts and uids), as kube-apiserver
/// does.
fn impersonate(
    inner: &Inner,
    user: UserInfo,
    headers: &axum::http::HeaderMap,
) -> Result<UserInfo, ApiError> {
    let Some(name) = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    else {
        if headers.contains_key("impersonate-group") || headers.contains_key("impersonate-uid") {
            return Err(ApiError::bad_request(
                "Impersonate-Group and Impersonate-Uid need Impersonate-User",
            ));
        }
        return Ok(user);
    };
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let uid = headers
        .get("impersonate-uid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let check = |resource: &str, namespace: &str, target: &str| {
        let attrs = Attributes {
            user: user.clone(),
            verb: "impersonate".to_owned(),
            resource: Some(crate::auth::ResourceAttributes {
                group: if resource == "uids" {
                    "authentication.k8s.io".to_owned()
                } else {
                    String::new()
                },
                resource: resource.to_owned(),
                namespace: namespace.to_owned(),
                name: target.to_owned(),
                subresource: String::new(),
            }),
            path: String::new(),
        };
        if inner.authorize(&attrs).allowed() {
            Ok(())
        } else {
            Err(ApiError::forbidden(attrs.forbidden_message("")))
        }
    };
    let mut impersonated_groups = groups.clone();
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, account)) => {
            check("serviceaccounts", namespace, account)?;
            impersonated_groups.push(GROUP_SERVICE_ACCOUNTS.to_owned());
            impersonated_groups.push(format!("{GROUP_SERVICE_ACCOUNTS}:{namespace}"));
        }
        None => check("users", "", name)?,
    }
    for group in &groups {
        check("groups", "", group)?;
    }
    if !uid.is_empty() {
        check("uids", "", &uid)?;
    }
    let mut impersonated = if name == "system:anonymous" {
        UserInfo::anonymous()
    } else {
        UserInfo::new(name, impersonated_groups)
    };
    impersonated.uid = uid;
    Ok(impersonated)
}

fn audited(
    inner: &Inner,
    user: Option<&UserInfo>,
    req: &Request,
    remote: Option<SocketAddr>,
    started: Instant,
    response: Response,
) -> Response {
    if let Some(log) = &inner.security().audit {
        let anonymous = UserInfo::anonymous();
        log.record(
            user.unwrap_or(&anonymous),
            &AuditRequest::of(req),
            remote,
            response.status().as_u16(),
            started,
        );
    }
    response
}

/// What the audit log keeps of a request.
struct AuditRequest {
    method: String,
    uri: String,
    user_agent: String,
}

impl AuditRequest {
    fn of(req: &Request) -> Self {
        Self {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        }
    }
}

/// The audit log: one JSON line per request (who, what, from where, the answer), written
/// by a background task so a slow disk never holds a request. Request and response bodies
/// are never written: they may hold Secrets.
#[derive(Clone)]
pub struct AuditLog {
    lines: mpsc::Sender<String>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// Lines the audit writer may fall behind by before it drops (and counts) them.
const AUDIT_BACKLOG: usize = 10_000;

impl AuditLog {
    /// Append to `path` (created 0600 if missing) until every clone of the log is dropped.
    pub async fn open(path: PathBuf) -> std::io::Result<Self> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .await?;
        let (lines, mut rx) = mpsc::channel::<String>(AUDIT_BACKLOG);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            while let Some(line) = rx.recv().await {
                buffer.extend_from_slice(line.as_bytes());
                buffer.push(b'\n');
                while let Ok(line) = rx.try_recv() {
                    buffer.extend_from_slice(line.as_bytes());
                    buffer.push(b'\n');
                }
                if let Err(e) = file.write_all(&buffer).await {
                    tracing::warn!(path = %path.display(), error = %e, "writing the audit log");
                }
                buffer.clear();
            }
            let _ = file.flush().await;
        });
        Ok(Self { lines, dropped })
    }

    fn record(
        &self,
        user: &UserInfo,
        request: &AuditRequest,
        remote: Option<SocketAddr>,
        code: u16,
        started: Instant,
    ) {
        let verb_attrs = Attributes::from_request(
            user.clone(),
            &request.method,
            request.uri.split('?').next().unwrap_or(""),
            request.uri.split_once('?').map(|(_, q)| q),
        );
        let mut line = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "stage": "ResponseComplete",
            "auditID": uuid::Uuid::new_v4().to_string(),
            "requestURI": request.uri,
            "verb": verb_attrs.verb,
            "user": {"username": user.name, "groups": user.groups},
            "sourceIPs": remote.map(|r| vec![r.ip().to_string()]).unwrap_or_default(),
            "userAgent": request.user_agent,
            "responseStatus": {"code": code},
            "stageTimestamp": jiff::Timestamp::now().to_string(),
            "latencyMicros": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
        if let Some(r) = &verb_attrs.resource {
            line["objectRef"] = json!({
                "resource": r.resource,
                "subresource": r.subresource,
                "namespace": r.namespace,
                "name": r.name,
                "apiGroup": r.group,
            });
        }
        if self.lines.try_send(line.to_string()).is_err() {
            let before = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if before.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = before + 1,
                    "the audit log is falling behind: entries were dropped"
                );
            }
        }
    }
}

/// How long a client may take to finish its TLS handshake, or to send a request's headers.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

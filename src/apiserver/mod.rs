//! The Kubernetes-compatible API server: HTTP (axum) over the [`Store`].
//!
//! Writes go to the store; reads (get, list, watch) are served from one in-memory
//! [`cache::ResourceCache`] per resource, each fed by a single store watch, so a thousand
//! watchers cost the store nothing. The router is a plain tower service: `moor server`
//! serves it over TCP, and in-process components can call it directly.
//!
//! This module owns HTTP concerns — routing, status codes, streaming — and the object
//! semantics of each verb, including what kube-apiserver's Service registry adds: cluster
//! IPs and node ports reserved in the store on every write path, and the `kubernetes` and
//! `kube-dns` Services every cluster starts with ([`services`]). Pure rules (defaults,
//! validation, selectors, patches) live in [`crate::api`]; the store knows nothing of any
//! of it.

pub mod access;
pub mod cache;
pub mod discovery;
pub mod error;
pub mod instrument;
pub mod listen;
pub mod logs;
pub mod openapi;
pub mod protobuf;
pub mod reads;
pub mod request;
pub mod reviews;
pub mod services;
pub mod table;
pub mod writes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::registry::{self, RESOURCES, ResourceInfo, Subresource};
use crate::store::{Revision, Store};
use cache::ResourceCache;
use error::ApiError;
use request::{MAX_BODY_BYTES, Params, Route, Target, parse_body, parse_path};
use writes::PatchType;

/// Namespaces that exist from the first start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The result of a write: the object and the HTTP status to answer with.
#[derive(Debug)]
pub struct Written {
    /// The object as stored (or as it would be, for dry runs).
    pub object: Value,
    /// 200, 201 or 202.
    pub status: u16,
}

impl Written {
    fn created(object: Value) -> Self {
        Self {
            object,
            status: 201,
        }
    }
    fn ok(object: Value) -> Self {
        Self {
            object,
            status: 200,
        }
    }
    fn accepted(object: Value) -> Self {
        Self {
            object,
            status: 202,
        }
    }
}

/// State shared by every request.
pub struct Inner {
    store: Arc<dyn Store>,
    caches: HashMap<(&'static str, &'static str), Arc<ResourceCache>>,
    /// Per resource, the revision of the latest write this server acknowledged: a
    /// consistent read waits until the cache has it.
    acked: HashMap<(&'static str, &'static str), AtomicI64>,
    /// Whether other servers write to the same store (etcd), so consistent reads must
    /// check the store's revision too.
    shared_store: std::sync::atomic::AtomicBool,
    /// Cluster IPs and node ports of Services.
    services: services::ServiceAllocator,
    shutdown: CancellationToken,
    /// How TLS callers are authenticated and limited (set once, before serving).
    security: std::sync::OnceLock<access::Security>,
    /// The RBAC policy and per-user semaphores.
    access: access::AccessState,
}

impl Inner {
    fn acknowledge(&self, info: &ResourceInfo, revision: Revision) {
        if let Some(a) = self.acked.get(&(info.group, info.plural)) {
            a.fetch_max(revision, Ordering::AcqRel);
        }
    }

    fn security(&self) -> &access::Security {
        static NONE: std::sync::OnceLock<access::Security> = std::sync::OnceLock::new();
        self.security
            .get()
            .unwrap_or_else(|| NONE.get_or_init(access::Security::default))
    }

    fn acknowledged(&self, info: &ResourceInfo) -> Revision {
        self.acked
            .get(&(info.group, info.plural))
            .map_or(0, |a| a.load(Ordering::Acquire))
    }
}

/// The API server. Clone it freely; clones share state.
#[derive(Clone)]
pub struct ApiServer {
    inner: Arc<Inner>,
    tasks: TaskTracker,
}

impl ApiServer {
    /// A server over `store`. Its caches start filling at [`start`](Self::start).
    pub fn new(store: Arc<dyn Store>, shutdown: CancellationToken) -> Self {
        let caches = RESOURCES
            .iter()
            .map(|r| ((r.group, r.plural), ResourceCache::new(r)))
            .collect();
        let acked = RESOURCES
            .iter()
            .map(|r| ((r.group, r.plural), AtomicI64::new(0)))
            .collect();
        Self {
            inner: Arc::new(Inner {
                services: services::ServiceAllocator::new(store.clone()),
                store,
                caches,
                acked,
                shared_store: std::sync::atomic::AtomicBool::new(false),
                shutdown,
                security: std::sync::OnceLock::new(),
                access: access::AccessState::default(),
            }),
            tasks: TaskTracker::new(),
        }
    }

    /// Declare that other API servers write to the same store (several `moor server` on
    /// one etcd): consistent reads then also check the store's current revision. Call before
    /// [`start`](Self::start).
    pub fn with_shared_store(self, shared: bool) -> Self {
        self.inner.shared_store.store(shared, Ordering::Relaxed);
        self
    }

    /// Keep `events` past events per resource for watches resuming from a resourceVersion
    /// (default 4096); older resourceVersions get 410 Expired.
    pub fn with_watch_history(self, events: usize) -> Self {
        for cache in self.inner.caches.values() {
            cache.set_history(events);
        }
        self
    }

    /// Hand out Services' cluster IPs from `cidr` (default
    /// [`services::DEFAULT_SERVICE_CIDR`]; kube-apiserver's `--service-cluster-ip-range`).
    /// Call before [`start`](Self::start).
    pub fn with_service_cidr(self, cidr: services::ServiceCidr) -> Self {
        self.inner.services.configure(|c| c.cidr = cidr);
        self
    }

    /// Hand out node ports from `range` (default [`services::DEFAULT_NODE_PORT_RANGE`];
    /// kube-apiserver's `--service-node-port-range`). Call before [`start`](Self::start).
    pub fn with_node_port_range(self, range: services::NodePortRange) -> Self {
        self.inner.services.configure(|c| c.node_ports = range);
        self
    }

    /// The address clients reach this server at (kube-apiserver's `--advertise-address`
    /// and `--secure-port`): the `kubernetes` Service's endpoints. Without it the Service
    /// is created with no endpoints. Call before [`start`](Self::start).
    pub fn with_advertise(self, address: SocketAddr) -> Self {
        self.inner
            .services
            .configure(|c| c.advertise = Some(address));
        self
    }

    /// How callers on the TLS listener are authenticated and limited. Call before
    /// [`start`](Self::start); a second call is ignored.
    pub fn with_security(self, security: access::Security) -> Self {
        if self.inner.security.set(security).is_err() {
            tracing::warn!("the API server's security was configured twice; the first stays");
        }
        self
    }

    /// The service CIDR cluster IPs come from.
    pub fn service_cidr(&self) -> services::ServiceCidr {
        self.inner.services.config().cidr
    }

    /// The range node ports come from.
    pub fn node_port_range(&self) -> services::NodePortRange {
        self.inner.services.config().node_ports
    }

    /// Run one repair pass over the Service reservations now (the server also runs one at
    /// start and every [`services::repair::REPAIR_INTERVAL`]): leaked reservations older
    /// than [`services::repair::RESERVATION_GRACE`] are released, Services holding an IP
    /// or port without a reservation get one.
    pub async fn repair_service_allocations(&self) -> Result<services::RepairReport, ApiError> {
        Ok(self
            .inner
            .services
            .repair(services::repair::RESERVATION_GRACE)
            .await?)
    }

    /// Fill every cache, create the system namespaces and Services, and check the Service
    /// reservations; returns once the server can answer reads.
    pub async fn start(&self) -> Result<(), ApiError> {
        for cache in self.inner.caches.values() {
            self.tasks.spawn(
                cache
                    .clone()
                    .run(self.inner.store.clone(), self.inner.shutdown.clone()),
            );
        }
        for cache in self.inner.caches.values() {
            cache.wait_synced().await;
        }
        self.inner.services.load().await?;
        self.bootstrap().await?;
        self.inner.bootstrap_services().await?;
        // Reservations a crash left behind (or Services from before they existed).
        self.repair_and_log().await;
        let server = self.clone();
        let shutdown = self.inner.shutdown.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(services::repair::REPAIR_INTERVAL) => {}
                }
                server.repair_and_log().await;
            }
        });
        Ok(())
    }

    async fn repair_and_log(&self) {
        match self.repair_service_allocations().await {
            Ok(report) => {
                for released in &report.released {
                    tracing::info!(%released, "released a Service reservation nobody holds");
                }
                for reserved in &report.reserved {
                    tracing::info!(%reserved, "reserved what a Service held without a reservation");
                }
                for problem in &report.problems {
                    tracing::warn!(%problem, "Service allocation needs attention");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "the Service allocation repair pass failed")
            }
        }
    }

    async fn bootstrap(&self) -> Result<(), ApiError> {
        let info = registry::by_resource("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
        for ns in SYSTEM_NAMESPACES {
            let (existing, _) = self.inner.store.get(&info.key(None, ns)).await?;
            if existing.is_some() {
                continue;
            }
            let target = Target {
                info,
                namespace: None,
                name: None,
                subresource: None,
            };
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.inner.create(&target, obj, &Params::default()).await {
                Ok(_) => {}
                // Another server on the same etcd made it first.
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        self.bootstrap_rbac().await
    }

    /// Create the default roles and bindings (cluster-admin, admin, edit, view, the
    /// system: roles) that are missing. Existing ones are left as they are: an operator's
    /// edit stays.
    async fn bootstrap_rbac(&self) -> Result<(), ApiError> {
        for object in crate::auth::rbac::default_objects() {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let info = registry::by_kind(api_version, kind).ok_or_else(|| {
                ApiError::internal(format!("{api_version} {kind} is not registered"))
            })?;
            let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
            let (existing, _) = self
                .inner
                .store
                .get(&info.key(namespace.as_deref(), name))
                .await?;
            if existing.is_some() {
                continue;
            }
            let target = Target {
                info,
                namespace,
                name: None,
                subresource: None,
            };
            match self.inner.create(&target, object, &Params::default()).await {
                Ok(_) => {}
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The HTTP router (a tower service).
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/version",
                get(|| async { axum::Json(discovery::version()) }),
            )
            .route("/healthz", get(health))
            .route("/livez", get(health))
            .route("/readyz", get(health))
            .route("/metrics", get(metrics))
            .route("/openapi/v2", get(openapi_v2))
            .route(
                "/openapi/v3",
                get(|| async { axum::Json(openapi::v3_root()) }),
            )
            .route("/openapi/v3/{*path}", get(openapi_v3))
            .route("/api", axum::routing::any(api_root))
            .route("/api/{*path}", axum::routing::any(api_core))
            .route("/apis", axum::routing::any(api_groups_root))
            .route("/apis/{*path}", axum::routing::any(api_groups))
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                axum::routing::post(reviews::self_subject_access_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                axum::routing::post(reviews::self_subject_rules_review),
            )
            .route(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                axum::routing::post(reviews::self_subject_review),
            )
            .route(
                reviews::NODE_CERTIFICATE_PATH,
                axum::routing::post(reviews::node_certificate),
            )
            .fallback(|req: Request| async move { ApiError::no_route(req.uri().path()) })
            .layer(axum::middleware::from_fn_with_state(
                self.inner.clone(),
                access::access_control,
            ))
            .with_state(self.inner.clone())
    }

    /// A Kubernetes client that calls this server's router directly, with no TCP hop: what
    /// in-process components use, so they run the same client code as remote ones.
    pub fn client(&self) -> kube::Client {
        let service = tower::ServiceBuilder::new()
            .map_request(|req: axum::http::Request<kube::client::Body>| req.map(Body::new))
            .service(self.router());
        kube::Client::new(service, "default")
    }

    /// Serve plain HTTP on `listener` until the shutdown token fires; in-flight requests
    /// finish, open watches end. Every caller gets full access, as on kube-apiserver's old
    /// insecure port: bind it to loopback only (`moor server --insecure-listen`, tests).
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.serve_with(listener, listen::Mode::Plain).await
    }

    /// Serve HTTPS on `listener` with `tls` (see [`listen::tls_config`]): callers are
    /// authenticated by client certificate or bearer token and authorized (node
    /// authorizer, RBAC), as configured by [`with_security`](Self::with_security).
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        self.serve_with(listener, listen::Mode::Tls(tls)).await
    }

    async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        mode: listen::Mode,
    ) -> std::io::Result<()> {
        let served =
            listen::serve(listener, self.router(), mode, self.inner.shutdown.clone()).await;
        self.tasks.close();
        self.tasks.wait().await;
        served
    }
}

async fn health() -> &'static str {
    "ok"
}

/// The process's metrics (every component running in it, not only this server's).
async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::encode(),
    )
        .into_response()
}

fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

async fn openapi_v2() -> Response {
    json_bytes(openapi::v2())
}

async fn openapi_v3(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match openapi::v3(&path) {
        Some(doc) => json_bytes(doc),
        None => ApiError::no_route(&format!("/openapi/v3/{path}")).into_response(),
    }
}

async fn api_root() -> Response {
    axum::Json(discovery::core_versions()).into_response()
}

async fn api_groups_root() -> Response {
    axum::Json(discovery::groups()).into_response()
}

async fn api_core(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    serve_api(inner, true, req).await
}

async fn api_groups(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    serve_api(inner, false, req).await
}

/// Dispatch a request under `/api` or `/apis` and record it in the request metrics once
/// [`dispatch`] has said what it was.
async fn serve_api(inner: Arc<Inner>, core: bool, req: Request) -> Response {
    let started = std::time::Instant::now();
    let mut labels = None;
    let response = dispatch(inner, core, req, &mut labels)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    match labels {
        Some(labels) => instrument::record(labels, started, response),
        None => response,
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned()
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::too_large(format!(
                "the request body is over the {MAX_BODY_BYTES}-byte limit"
            ))
        })
}

fn respond(written: Written) -> Response {
    let code = StatusCode::from_u16(written.status).unwrap_or(StatusCode::OK);
    (code, axum::Json(written.object)).into_response()
}

/// Answer a request under `/api` (`core`) or `/apis`. Once the request names a resource,
/// `labels` says what it was for the metrics, whatever the answer.
async fn dispatch(
    inner: Arc<Inner>,
    core: bool,
    req: Request,
    labels: &mut Option<crate::metrics::RequestLabels>,
) -> Result<Response, ApiError> {
    let prefix = if core { "/api/" } else { "/apis/" };
    let path = req
        .uri()
        .path()
        .strip_prefix(prefix)
        .unwrap_or("")
        .to_owned();
    let mut params = Params::parse(req.uri().query())?;
    let method = req.method().clone();
    let headers = req.headers().clone();
    if let Some(agent) = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|p| !p.is_empty())
    {
        // kube-apiserver's default field manager: the User-Agent's program, at most 128.
        let agent: String = agent.chars().take(128).collect();
        params.0.insert(request::USER_AGENT_PARAM.to_owned(), agent);
    }
    if let Some(name) = request::namespace_finalize(core, &path) {
        *labels = Some(instrument::finalize_labels());
        // The finalize subresource has one verb (update) and rules of its own.
        if method != Method::PUT {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} namespaces/finalize)"
            )));
        }
        let ct = content_type(&headers);
        let body = read_body(req.into_body()).await?;
        let obj = parse_body(&ct, &body, ("v1", "Namespace"))?;
        return Ok(respond(inner.finalize_namespace(name, obj, &params).await?));
    }
    let target = match parse_path(core, &path)? {
        Route::CoreVersions => return Ok(axum::Json(discovery::core_versions()).into_response()),
        Route::Groups => return Ok(axum::Json(discovery::groups()).into_response()),
        Route::GroupVersion {
            group,
            version: None,
        } => {
            return discovery::group(&group)
                .map(|d| axum::Json(d).into_response())
                .ok_or_else(|| ApiError::no_route(req.uri().path()));
        }
        Route::GroupVersion {
            group,
            version: Some(version),
        } => {
            return discovery::resources(&group, &version)
                .map(|d| axum::Json(d).into_response())
                .ok_or_else(|| ApiError::no_route(req.uri().path()));
        }
        Route::Resource(target) => target,
    };
    let ct = content_type(&headers);
    // An invalid watch flag is answered with 400 below; it is counted as the LIST it looks
    // like.
    let watch = params.flag("watch").unwrap_or(false);
    let apply = method == Method::PATCH
        && matches!(PatchType::from_content_type(&ct), Ok(PatchType::Apply));
    *labels = Some(instrument::labels(&target, &method, watch, apply));
    let body = read_body(req.into_body()).await?;
    let info = target.info;
    let api_version = info.api_version();
    let own = (api_version.as_str(), info.kind);
    match (method, target.name.is_some(), target.subresource) {
        (Method::GET, false, None) => {
            if params.flag("watch")? {
                inner.watch(&target, &params).await
            } else if wants_table(&headers) {
                let page = inner.list_page(&target, &params).await?;
                let objects: Vec<&Value> = page.objects.iter().map(|(_, o)| &o.value).collect();
                as_table(info, &objects, page.list_meta(), &params)
            } else {
                inner.list(&target, &params).await
            }
        }
        (Method::GET, true, None | Some(Subresource::Status)) => {
            if params.flag("watch")? {
                inner.watch(&target, &params).await
            } else if wants_table(&headers) {
                let obj = inner.get_object(&target, &params).await?;
                let meta = json!({"resourceVersion": obj.revision.to_string()});
                as_table(info, &[&obj.value], meta, &params)
            } else {
                inner.get(&target, &params).await
            }
        }
        (Method::POST, false, None) => {
            let obj = parse_body(&ct, &body, own)?;
            Ok(respond(inner.create(&target, obj, &params).await?))
        }
        (Method::PUT, true, None | Some(Subresource::Status)) => {
            let obj = parse_body(&ct, &body, own)?;
            Ok(respond(inner.update(&target, obj, &params).await?))
        }
        (Method::PATCH, true, None | Some(Subresource::Status)) => {
            let patch_type = PatchType::from_content_type(&ct)?;
            // Apply configurations are YAML (JSON is YAML too); other patches are JSON.
            let format = match patch_type {
                PatchType::Apply => "application/yaml",
                _ => "application/json",
            };
            let patch = parse_body(format, &body, own)?;
            Ok(respond(
                inner.patch(&target, patch_type, patch, &params).await?,
            ))
        }
        (Method::DELETE, true, None) => {
            let options = delete_options(&ct, &body, &api_version)?;
            let deletion = inner.delete_one(&target, &options, &params).await?;
            Ok(respond(deletion.into_answer(info)))
        }
        (Method::DELETE, false, None) => {
            let options = delete_options(&ct, &body, &api_version)?;
            inner.delete_collection(&target, &options, &params).await
        }
        (Method::GET, true, Some(Subresource::Scale)) => {
            Ok(axum::Json(inner.get_scale(&target).await?).into_response())
        }
        (Method::PUT, true, Some(Subresource::Scale)) => {
            let obj = parse_body(&ct, &body, ("autoscaling/v1", "Scale"))?;
            Ok(respond(
                inner.write_scale(&target, obj, None, &params).await?,
            ))
        }
        (Method::PATCH, true, Some(Subresource::Scale)) => {
            let patch_type = PatchType::from_content_type(&ct)?;
            let patch = parse_body("application/json", &body, own)?;
            Ok(respond(
                inner
                    .write_scale(&target, patch, Some(patch_type), &params)
                    .await?,
            ))
        }
        (Method::GET, true, Some(Subresource::Log)) => inner.pod_log(&target, &params).await,
        (Method::POST, true, Some(Subresource::Binding)) => {
            let obj = parse_body(&ct, &body, ("v1", "Binding"))?;
            Ok(respond(inner.bind(&target, obj, &params).await?))
        }
        (method, _, sub) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {}{})",
            info.plural,
            sub.map(|s| format!("/{}", s.name())).unwrap_or_default()
        ))),
    }
}

/// Whether the client asked for a meta.k8s.io Table (as `kubectl get` does).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

/// The Table kubectl prints for `objects`.
fn as_table(
    info: &ResourceInfo,
    objects: &[&Value],
    list_meta: Value,
    params: &Params,
) -> Result<Response, ApiError> {
    let include = params.get("includeObject").unwrap_or("Metadata");
    if !matches!(include, "Object" | "Metadata" | "None") {
        return Err(ApiError::bad_request(format!(
            "invalid includeObject {include:?}: expected Object, Metadata or None"
        )));
    }
    let objects: Vec<Value> = objects.iter().map(|v| (*v).clone()).collect();
    let table = table::table(
        info.group,
        info.kind,
        &objects,
        list_meta,
        include,
        jiff::Timestamp::now(),
    );
    Ok(axum::Json(table).into_response())
}

/// DeleteOptions from a DELETE body (none: defaults).
fn delete_options(content_type: &str, body: &Bytes, api_version: &str) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    parse_body(content_type, body, (api_version, "DeleteOptions"))
}

impl Inner {
    /// DELETE of a collection: every object passing the selectors, one by one.
    async fn delete_collection(
        &self,
        target: &Target,
        options: &Value,
        params: &Params,
    ) -> Result<Response, ApiError> {
        let page = self.list_page(target, params).await?;
        let mut deleted = Vec::new();
        for (_, obj) in &page.objects {
            let one = Target {
                info: target.info,
                namespace: Some(obj.namespace.clone()).filter(|ns| !ns.is_empty()),
                name: Some(obj.name.clone()),
                subresource: None,
            };
            match self.delete(&one, options, params).await {
                Ok(w) => deleted.push(w.object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(axum::Json(json!({
            "kind": format!("{}List", target.info.kind),
            "apiVersion": target.info.api_version(),
            "metadata": {},
            "items": deleted,
        }))
        .into_response())
    }
}

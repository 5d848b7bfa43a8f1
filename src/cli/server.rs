//! `moor server`: the store and the API server in one process, with an admin kubeconfig
//! written to the data dir so `kubectl` works at once.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::StoreBackendArgs;
use super::controller_manager::{self, ControllerArgs, LeaderElectionArgs};
use super::scheduler::SchedulerArgs;
use crate::api::manifest_source::ManifestSourceSpec;
use crate::apiserver::ApiServer;
use crate::apiserver::services::{
    DEFAULT_SERVICE_CIDR, NodePortRange, ServiceCidr, cluster_dns_ip, kubernetes_service_ip,
};
use crate::controllers::leader::run_while_leader;
use crate::gitops::controller::{SourceController, manifest_source_resource};
use crate::gitops::sync::{directory_spec, git_spec};
use crate::store::{Compactor, EmbeddedStore, Store};

/// The Lease the GitOps source controllers of several servers elect a leader on.
const GITOPS_LEASE: &str = "moor-gitops";

/// `moor server ...`
#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub(super) backend: StoreBackendArgs,
    /// Address to serve the Kubernetes API on, over TLS (a cluster CA and a serving
    /// certificate are created in DATA_DIR/pki on first start).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Also serve plain HTTP on this address, with full access for every caller (as
    /// kube-apiserver's old insecure port): loopback addresses only.
    #[arg(long, value_name = "ADDR")]
    insecure_listen: Option<SocketAddr>,
    /// Extra DNS names or IP addresses for the serving certificate, repeatable.
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,
    /// Static bearer tokens, one `token,user,uid[,"group1,group2"]` per line
    /// (kube-apiserver's --token-auth-file).
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<PathBuf>,
    /// Audiences a ServiceAccount token must name one of (default: the issuer).
    #[arg(
        long = "api-audiences",
        value_delimiter = ',',
        value_name = "AUDIENCE,..."
    )]
    api_audiences: Vec<String>,
    /// How data is encrypted at rest (an apiserver.config.k8s.io/v1
    /// EncryptionConfiguration). Default: DATA_DIR/encryption-config.yaml, created on
    /// first start with a new aescbc key for Secrets.
    #[arg(long, value_name = "FILE")]
    encryption_provider_config: Option<PathBuf>,
    /// Append an audit log here: one JSON line (audit.k8s.io/v1 Event, Metadata level)
    /// per request.
    #[arg(long, value_name = "FILE")]
    audit_log_path: Option<PathBuf>,
    /// Requests (other than watches) one user may have in flight at once; more get 429.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    max_requests_inflight_per_user: u32,
    /// Watches one user may have open at once; more get 429.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    max_watches_per_user: u32,
    /// Follow this folder of manifests (creates or updates the ManifestSource --source-name).
    #[arg(long, conflicts_with = "git")]
    manifests: Option<PathBuf>,
    /// Follow this git repository (URL or local path).
    #[arg(long)]
    git: Option<String>,
    /// Branch, tag (`tags/v1`) or commit of --git; the remote's default branch when absent.
    #[arg(long = "ref", requires = "git", default_value = "")]
    reference: String,
    /// Sub-path of the --git repository holding the manifests.
    #[arg(long, requires = "git", default_value = "")]
    path: String,
    /// The IPv4 range Services' cluster IPs come from. Its first address is the
    /// `kubernetes` Service's, its 10th the cluster DNS's (`kube-system/kube-dns`).
    #[arg(long, value_name = "CIDR", default_value = DEFAULT_SERVICE_CIDR)]
    pub(super) service_cluster_ip_range: ServiceCidr,
    /// The ports NodePort (and LoadBalancer) Services are given, FIRST-LAST.
    #[arg(long, value_name = "RANGE", default_value = "30000-32767")]
    service_node_port_range: NodePortRange,
    /// The address the `kubernetes` Service's endpoints name (with the --listen port).
    /// Default: the --listen address, or the host's first non-loopback IPv4 address when
    /// that is unspecified (0.0.0.0).
    #[arg(long, value_name = "IP")]
    advertise_address: Option<IpAddr>,
    /// Name of the ManifestSource that --manifests or --git creates.
    #[arg(long, default_value = "manifests")]
    source_name: String,
    /// Do not run the GitOps source controller in this process. (With several servers on
    /// one etcd it runs leader-elected on the Lease kube-system/moor-gitops.)
    #[arg(long)]
    disable_gitops: bool,
    /// Do not run the controllers in this process.
    #[arg(long)]
    disable_controllers: bool,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    disable_scheduler: bool,
    #[command(flatten)]
    controllers: ControllerArgs,
    #[command(flatten)]
    scheduler: SchedulerArgs,
    #[command(flatten)]
    leader: LeaderElectionArgs,
}

/// Run `moor server` until SIGINT or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let signalled = on_signal();
    let shutdown = CancellationToken::new();
    let plane = ControlPlane::start(&args, shutdown.clone(), started, None).await?;
    tokio::spawn(super::trim_heap_periodically(shutdown.clone()));
    let signal = shutdown.clone();
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    plane.serve().await?;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The control plane of one process: the store, the API server, and unless disabled the
/// controllers, the scheduler and the GitOps source controller, all using the API server's
/// in-process client. `moor server` is this alone; `moor up` adds a node agent.
pub struct ControlPlane {
    server: ApiServer,
    listener: tokio::net::TcpListener,
    insecure: Option<tokio::net::TcpListener>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    stop_server: CancellationToken,
    compactor: tokio::task::JoinHandle<Result<(), crate::store::StoreError>>,
    embedded: Option<EmbeddedStore>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl ControlPlane {
    /// Open the store, start the API server (not yet serving TCP: see [`Self::serve`]),
    /// write the kubeconfig and start the in-process components, printing one line each.
    ///
    /// The GitOps sources start syncing once `source_gate` completes (at once without one):
    /// `moor up` holds them until its node is registered, so the first revision's pods are
    /// scheduled as soon as they exist instead of backing off for want of a node.
    pub async fn start(
        args: &ServerArgs,
        shutdown: CancellationToken,
        started: Instant,
        source_gate: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    ) -> anyhow::Result<Self> {
        if let Some(insecure) = args.insecure_listen
            && !insecure.ip().is_loopback()
        {
            anyhow::bail!(
                "--insecure-listen {insecure}: plain HTTP gives every caller full access, so it only listens on loopback addresses (127.0.0.1, ::1)"
            );
        }
        let security = Security::load(args).await?;
        let (store, embedded): (Arc<dyn Store>, Option<EmbeddedStore>) =
            if args.backend.etcd_endpoints.is_empty() {
                let db = args.backend.db_path();
                let store = EmbeddedStore::open(&db).await.with_context(|| {
                    format!("opening the store in {}", args.backend.data_dir.display())
                })?;
                let revision = store.current_revision().await?;
                println!(
                    "store      embedded  {} (rev {revision})  ready {} ms",
                    db.display(),
                    started.elapsed().as_millis()
                );
                (Arc::new(store.clone()), Some(store))
            } else {
                let store = args.backend.connect_etcd().await?;
                println!(
                    "store      etcd  {}  ready {} ms",
                    args.backend.etcd_endpoints.join(","),
                    started.elapsed().as_millis()
                );
                (Arc::new(store), None)
            };
        // Secrets (and whatever else the configuration names) are encrypted at rest.
        let encryption = match &args.encryption_provider_config {
            Some(path) => crate::store::EncryptionConfig::load(path),
            None => crate::store::EncryptionConfig::load_or_create(&args.backend.data_dir),
        }
        .context("loading the encryption configuration")?;
        let encrypted = crate::store::EncryptedStore::new(store, encryption);
        let rewritten = encrypted
            .rewrite_stale()
            .await
            .context("encrypting what was stored before encryption was configured")?;
        if rewritten > 0 {
            println!("encryption rewrote {rewritten} objects with the current key");
        }
        let store: Arc<dyn Store> = Arc::new(encrypted);
        // The API server outlives the components using it: they stop first (their last
        // requests still answered), then it stops. See `serve`.
        let stop_server = CancellationToken::new();
        let compactor = tokio::spawn(Compactor::new(store.clone()).run(stop_server.clone()));

        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let advertise = SocketAddr::new(
            advertise_ip(args.advertise_address, addr.ip())?,
            addr.port(),
        );
        let insecure = match args.insecure_listen {
            Some(at) => Some(
                tokio::net::TcpListener::bind(at)
                    .await
                    .with_context(|| format!("listening on {at}"))?,
            ),
            None => None,
        };
        let cidr = args.service_cluster_ip_range;
        let hosts = serving_hosts(args, addr.ip(), advertise.ip(), &cidr);
        let serving = security
            .ca
            .issue_serving(&hosts)
            .context("issuing the API server's serving certificate")?;
        let tls = crate::apiserver::listen::tls_config(
            &serving.cert_pem,
            &serving.key_pem,
            security.ca.cert_pem(),
        )
        .context("configuring TLS")?;
        let admin = security
            .ca
            .issue_client(ADMIN_USER, &[crate::auth::GROUP_MASTERS])
            .context("issuing the admin client certificate")?;
        let server = ApiServer::new(store, stop_server.clone())
            .with_shared_store(embedded.is_none())
            .with_service_cidr(args.service_cluster_ip_range)
            .with_node_port_range(args.service_node_port_range)
            .with_advertise(advertise)
            .with_security(security.api);
        server.start().await.context("starting the API server")?;
        let kubeconfig = args.backend.data_dir.join("kubeconfig.yaml");
        let local = if addr.ip().is_unspecified() {
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port())
        } else {
            addr
        };
        write_admin_kubeconfig(
            &kubeconfig,
            &format!("https://{local}"),
            security.ca.cert_pem(),
            &admin,
        )?;
        println!(
            "apiserver  https://{local}  kubeconfig: {}  ready {} ms",
            kubeconfig.display(),
            started.elapsed().as_millis()
        );
        if let Some(insecure) = &insecure {
            println!(
                "           insecure http://{}  (full access, loopback only)",
                insecure.local_addr()?
            );
        }
        println!(
            "           kubectl --kubeconfig {} get namespaces",
            kubeconfig.display()
        );
        println!(
            "services   {cidr}  node ports {}  kubernetes {} -> {advertise}  dns {}",
            args.service_node_port_range,
            kubernetes_service_ip(&cidr),
            cluster_dns_ip(&cidr),
        );

        // With the embedded store only this process can serve the data dir, so its leases
        // are held under an identity stable across restarts: after a crash the restarted
        // components take their leases back at once instead of waiting for them to expire.
        let mut leader = args.leader.clone();
        if embedded.is_some() {
            leader.identity = Some(stable_identity(&args.backend.data_dir));
        }
        let client = server.client();
        let mut tasks = Vec::new();
        if let Some(spec) = source_spec(args)? {
            let origin = match (&spec.directory, &spec.git) {
                (Some(dir), _) => format!("folder {}", dir.path),
                (_, Some(git)) => {
                    format!("git {}", crate::gitops::source::git::redact_url(&git.url))
                }
                _ => String::new(),
            };
            declare_source(&client, &args.source_name, spec)
                .await
                .context("creating the ManifestSource")?;
            if !args.disable_gitops {
                tasks.push((
                    "source announcement",
                    tokio::spawn(announce_first_sync(
                        client.clone(),
                        args.source_name.clone(),
                        origin,
                        started,
                        shutdown.clone(),
                    )),
                ));
            }
        }
        if !args.disable_controllers {
            let manager =
                args.controllers
                    .manager(client.clone(), args.backend.data_dir.clone(), &leader)?;
            println!(
                "controllers {}",
                leader.describe(controller_manager::LEASE_NAME)
            );
            tasks.push(("controllers", tokio::spawn(manager.run(shutdown.clone()))));
        }
        if !args.disable_scheduler {
            let scheduler = args.scheduler.scheduler(client.clone(), &leader)?;
            println!(
                "scheduler  {}",
                leader.describe(crate::scheduler::LEASE_NAME)
            );
            tasks.push(("scheduler", tokio::spawn(scheduler.run(shutdown.clone()))));
        }
        if !args.disable_gitops {
            let cache = args.backend.data_dir.join("gitops");
            let run_sources =
                move |client: kube::Client, cache: PathBuf, token: CancellationToken| async move {
                    if let Err(e) = SourceController::new(client, cache).run(token).await {
                        tracing::warn!(error = %e, "the source controller stopped");
                    }
                };
            // Several servers on one etcd: only the holder of this Lease syncs sources.
            let election = leader.config(GITOPS_LEASE)?;
            let token = shutdown.clone();
            let gate = source_gate.unwrap_or_else(|| Box::pin(std::future::ready(())));
            let task = tokio::spawn(async move {
                tokio::select! {
                    () = gate => {}
                    () = token.cancelled() => return,
                }
                match election {
                    Some(config) => {
                        run_while_leader(client.clone(), config, token, move |token| {
                            run_sources(client.clone(), cache.clone(), token)
                        })
                        .await
                    }
                    None => run_sources(client, cache, token).await,
                }
            });
            tasks.push(("source controller", task));
        }
        Ok(ControlPlane {
            server,
            listener,
            insecure,
            tls,
            shutdown,
            stop_server,
            compactor,
            embedded,
            tasks,
        })
    }

    /// A client that calls the API server in-process (no TCP hop, the same code path).
    pub fn client(&self) -> kube::Client {
        self.server.client()
    }

    /// Serve the API until the shutdown token fires; then stop the components, then the
    /// API server (so no component is left waiting on a request that will never be
    /// answered), and close the store.
    pub async fn serve(self) -> anyhow::Result<()> {
        let insecure = self
            .insecure
            .map(|listener| tokio::spawn(self.server.clone().serve(listener)));
        let mut serving = tokio::spawn(self.server.serve_tls(self.listener, self.tls));
        let early = tokio::select! {
            _ = self.shutdown.cancelled() => None,
            served = &mut serving => Some(served),
        };
        // The API server ended by itself (it failed): stop the components too.
        self.shutdown.cancel();
        for (name, task) in self.tasks {
            match task.await {
                Ok(()) => tracing::debug!(component = name, "stopped"),
                Err(e) => tracing::warn!(component = name, error = %e, "stopped abnormally"),
            }
        }
        self.stop_server.cancel();
        let served = match early {
            Some(served) => served,
            None => serving.await,
        };
        if let Some(insecure) = insecure {
            let _ = insecure.await;
        }
        tracing::debug!("the API server stopped");
        let _ = self.compactor.await;
        if let Some(store) = self.embedded {
            store.close().await;
        }
        tracing::debug!("the store is closed");
        served
            .context("the API server panicked")?
            .context("serving the API")
    }
}

/// A lease identity that stays the same across restarts of the server on `data_dir`.
fn stable_identity(data_dir: &Path) -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    format!("{host}_{}", dir.display())
}

/// Print one line when the source `name` has applied its first revision (or failed to):
/// a person running `moor up` sees when the manifests are in.
async fn announce_first_sync(
    client: kube::Client,
    name: String,
    origin: String,
    started: Instant,
    shutdown: CancellationToken,
) {
    use crate::api::manifest_source::ManifestSourceStatus;
    use futures::StreamExt;
    use kube::api::{Api, DynamicObject};
    use kube::runtime::{WatchStreamExt, watcher};
    let api: Api<DynamicObject> = Api::all_with(client, &manifest_source_resource());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let Some(Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object))) = event
        else {
            if event.is_none() {
                return;
            }
            continue;
        };
        let Some(status) = object
            .data
            .get("status")
            .and_then(|s| serde_json::from_value::<ManifestSourceStatus>(s.clone()).ok())
        else {
            continue;
        };
        if let Some(revision) = &status.revision {
            let short = revision.strip_prefix("sha256:").unwrap_or(revision);
            println!(
                "source     {name}  ({origin})  rev {}  {} objects: {} created, {} updated, {} unchanged  ready {} ms",
                &short[..short.len().min(12)],
                status.created + status.updated + status.unchanged,
                status.created,
                status.updated,
                status.unchanged,
                started.elapsed().as_millis()
            );
            return;
        }
        if let Some(error) = status.errors.first() {
            let place = if error.file.is_empty() {
                String::new()
            } else if error.line > 0 {
                format!("{}:{}: ", error.file, error.line)
            } else {
                format!("{}: ", error.file)
            };
            println!(
                "source     {name}  ({origin})  not applied: {place}{}  (kubectl get manifestsource {name} -o yaml)",
                error.message
            );
            return;
        }
    }
}

/// The address to advertise: the flag's, else the listen address's, else (listening on
/// every address) the host's first non-loopback IPv4 address.
fn advertise_ip(flag: Option<IpAddr>, listen: IpAddr) -> anyhow::Result<IpAddr> {
    if let Some(ip) = flag {
        if ip.is_unspecified() {
            anyhow::bail!("--advertise-address {ip}: name an address clients can reach");
        }
        return Ok(ip);
    }
    if !listen.is_unspecified() {
        return Ok(listen);
    }
    let addresses = nix::ifaddrs::getifaddrs().context("listing the host's addresses")?;
    addresses
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
        .find(|ip| !ip.is_loopback())
        .context("the host has no non-loopback IPv4 address to advertise: pass --advertise-address")
}

/// The ManifestSource spec `--manifests` or `--git` asks for, if any.
fn source_spec(args: &ServerArgs) -> anyhow::Result<Option<ManifestSourceSpec>> {
    if let Some(dir) = &args.manifests {
        let spec = directory_spec(dir)
            .with_context(|| format!("--manifests {}: folder not found", dir.display()))?;
        return Ok(Some(spec));
    }
    Ok(args
        .git
        .as_deref()
        .map(|url| git_spec(url, &args.reference, &args.path)))
}

/// Create or update the ManifestSource `name` with `spec` (server-side apply, so fields set
/// by hand with kubectl, like `suspend`, stay as they are).
async fn declare_source(
    client: &kube::Client,
    name: &str,
    spec: ManifestSourceSpec,
) -> anyhow::Result<()> {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &manifest_source_resource());
    let object = serde_json::json!({
        "apiVersion": crate::api::manifest_source::API_VERSION,
        "kind": crate::api::manifest_source::KIND,
        "metadata": {"name": name},
        "spec": spec,
    });
    api.patch(
        name,
        &PatchParams::apply("moor-server").force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

/// A token cancelled at the first SIGINT or SIGTERM from now on.
pub fn cancel_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let signalled = on_signal();
    tokio::spawn(async move {
        signalled.await;
        signal.cancel();
    });
    shutdown
}

/// Wait for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    on_signal().await
}

/// Register for SIGINT and SIGTERM at once — a signal arriving from here on is not lost,
/// even while start-up is still under way — and return a future that completes at the
/// first of them.
pub fn on_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    async fn received(signal: Option<Signal>) {
        match signal {
            Some(mut signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            () = received(term) => {}
            () = received(interrupt) => {}
        }
    }
}

/// The user of the admin kubeconfig's client certificate (in `system:masters`).
pub const ADMIN_USER: &str = "admin";

/// What `moor server` secures itself with: the cluster CA, and the API server's
/// authentication settings.
struct Security {
    ca: Arc<crate::auth::pki::ClusterCa>,
    api: crate::apiserver::access::Security,
}

impl Security {
    async fn load(args: &ServerArgs) -> anyhow::Result<Self> {
        use crate::apiserver::access::{AuditLog, Limits};
        let data_dir = &args.backend.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let ca = Arc::new(
            crate::auth::pki::ClusterCa::load_or_create(&data_dir.join("pki"))
                .context("loading the cluster CA")?,
        );
        let token_file = match &args.token_auth_file {
            Some(path) => Some(crate::auth::authn::TokenFile::load(path)?),
            None => None,
        };
        let service_accounts =
            crate::controllers::serviceaccount::TokenIssuer::load_or_create(data_dir)
                .context("loading the service-account signing key")?;
        let audit = match &args.audit_log_path {
            Some(path) => Some(
                AuditLog::open(path.clone())
                    .await
                    .with_context(|| format!("opening the audit log {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Self {
            api: crate::apiserver::access::Security {
                token_file,
                service_accounts: Some(service_accounts),
                api_audiences: args.api_audiences.clone(),
                ca: Some(ca.clone()),
                limits: Limits {
                    requests_per_user: args.max_requests_inflight_per_user as usize,
                    watches_per_user: args.max_watches_per_user as usize,
                },
                audit,
            },
            ca,
        })
    }
}

/// The names and addresses the serving certificate is for: where the server listens and
/// is advertised, loopback, the `kubernetes` Service's names and cluster IP, the host
/// name, and `--tls-san`.
fn serving_hosts(
    args: &ServerArgs,
    listen: IpAddr,
    advertise: IpAddr,
    cidr: &ServiceCidr,
) -> Vec<String> {
    let mut hosts: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
        kubernetes_service_ip(cidr).to_string(),
        advertise.to_string(),
    ];
    if !listen.is_unspecified() {
        hosts.push(listen.to_string());
    } else if let Ok(addresses) = nix::ifaddrs::getifaddrs() {
        // Listening everywhere: every address the host has.
        hosts.extend(addresses.filter_map(|a| {
            let address = a.address?;
            address
                .as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()).to_string())
                .or_else(|| {
                    address
                        .as_sockaddr_in6()
                        .map(|s| IpAddr::V6(s.ip()).to_string())
                })
        }));
    }
    if let Ok(host) = nix::unistd::gethostname() {
        let host = host.to_string_lossy().to_lowercase();
        if !host.is_empty() {
            hosts.push(host);
        }
    }
    hosts.extend(args.tls_sans.iter().cloned());
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Write a kubeconfig for `server` (`https://…`) that trusts `ca_pem` and presents the
/// client certificate `credential`, atomically and readable by its owner only.
pub fn write_admin_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    credential: &crate::auth::pki::Issued,
) -> anyhow::Result<()> {
    write_kubeconfig_for(
        path,
        server,
        Some(ca_pem),
        ADMIN_USER,
        serde_json::json!({
            "client-certificate-data": b64(&credential.cert_pem),
            "client-key-data": b64(&credential.key_pem),
        }),
    )
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Write a kubeconfig with one cluster (`server`, trusting `ca_pem` when given), one user
/// `user` with `credentials`, and one context joining them.
pub fn write_kubeconfig_for(
    path: &Path,
    server: &str,
    ca_pem: Option<&str>,
    user: &str,
    credentials: serde_json::Value,
) -> anyhow::Result<()> {
    let mut cluster = serde_json::json!({"server": server});
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] = serde_json::Value::String(b64(ca));
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "moor", "cluster": cluster}],
        "contexts": [{"name": "moor", "context": {"cluster": "moor", "user": user, "namespace": "default"}}],
        "current-context": "moor",
        "users": [{"name": user, "user": credentials}],
        "preferences": {},
    });
    let text = serde_yaml::to_string(&config).context("encoding the kubeconfig")?;
    write_private(path, &text)
}

/// Write a kubeconfig for `server` with no credentials (a plain-HTTP server), atomically,
/// readable by its owner only.
pub fn write_kubeconfig(path: &Path, server: &str) -> anyhow::Result<()> {
    write_kubeconfig_for(path, server, None, ADMIN_USER, serde_json::json!({}))
}

/// Write `text` to `path` through a synced 0600 temp file renamed into place.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("yaml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

//! The service proxy (`moor proxy`, and in-process in every node agent): makes each
//! Service's cluster IP local to the node and forwards its ports, and its NodePorts on the
//! node's addresses, to the Service's ready endpoints.
//!
//! It watches Services and EndpointSlices and reconciles one Service at a time on every
//! change ([`model`] says what a Service needs, pure; [`addresses`] puts cluster IPs on the
//! node over netlink; [`tcp`] and [`udp`] forward in user space, TCP with splice(2);
//! [`backends`] chooses endpoints). A listening socket exists only while its Service has
//! an endpoint to send to, so with none the kernel refuses a TCP connection at once (and
//! answers UDP with port-unreachable) instead of leaving it hanging. Endpoint updates change
//! the live set in place: new connections see them immediately, connections to an endpoint
//! that left are reset.
//!
//! It owns the addresses it adds inside its service CIDRs and the sockets it binds, and
//! nothing else: at start it removes addresses in those CIDRs that no Service holds
//! (left by a proxy that died), and on exit it removes all of them.

pub mod addresses;
pub mod backends;
pub mod model;
pub mod tcp;
pub mod udp;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apiserver::services::ServiceCidr;

use self::addresses::{LocalAddresses, in_cidr};
use self::backends::BackendSet;
use self::model::{Protocol, ServiceName, ServicePort};

/// The default service CIDR (the API server's `--service-cluster-ip-range`).
pub use crate::apiserver::services::DEFAULT_SERVICE_CIDR;
/// How often listeners that failed to bind (a port some other process holds) are retried.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How long open connections get to finish when the proxy stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Failures that stop the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("netlink: {action}: {source}")]
    Netlink {
        action: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// Failures of a node's Service plumbing: the proxy or the cluster DNS next to it.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("service proxy: {0}")]
    Proxy(#[from] ProxyError),
    #[error("cluster DNS: {0}")]
    Dns(#[from] crate::dns::DnsError),
}

/// The cluster DNS server for a node whose proxy runs with `proxy`: it answers on
/// `ip`:53 itself, so the proxy only makes the kube-dns Service's address local.
pub fn cluster_dns(
    proxy: &mut ProxyConfig,
    ip: IpAddr,
    domain: &str,
    resolv_conf: &std::path::Path,
) -> crate::dns::DnsConfig {
    proxy
        .local_services
        .push(ServiceName::new("kube-system", "kube-dns"));
    let mut dns = crate::dns::DnsConfig::new(vec![SocketAddr::new(ip, 53)]);
    dns.cluster_domain = domain.to_owned();
    dns.resolv_conf = resolv_conf.to_owned();
    dns
}

/// Run the proxy and, when given, the cluster DNS server until `shutdown`. If either
/// fails it cancels `shutdown`, so whatever runs them stops too: a node whose Services
/// do not work must not look healthy.
pub async fn run_with_dns(
    client: kube::Client,
    proxy: ProxyConfig,
    dns: Option<crate::dns::DnsConfig>,
    shutdown: CancellationToken,
) -> Result<(), ServicesError> {
    let stop_on_error = |result: Result<(), ServicesError>| {
        if result.is_err() {
            shutdown.cancel();
        }
        result
    };
    let proxy = async {
        stop_on_error(
            Proxy::new(client.clone(), proxy)
                .run(shutdown.clone())
                .await
                .map_err(ServicesError::from),
        )
    };
    let dns = async {
        match dns {
            Some(config) => stop_on_error(
                crate::dns::DnsServer::new(client.clone(), config)
                    .run(shutdown.clone())
                    .await
                    .map_err(ServicesError::from),
            ),
            None => Ok(()),
        }
    };
    let (proxy, dns) = tokio::join!(proxy, dns);
    proxy.and(dns)
}

/// How a proxy runs.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// This node's name: `Local` traffic policies keep endpoints whose nodeName is this.
    pub node_name: String,
    /// Cluster IPs inside these ranges are made local; addresses in them that no Service
    /// holds are removed.
    pub service_cidrs: Vec<ServiceCidr>,
    /// Where NodePorts listen (the node's addresses).
    pub node_addresses: Vec<IpAddr>,
    /// The dummy interface for cluster IPs, where the kernel has the driver.
    pub dummy_interface: String,
    /// A UDP client's session ends after this long without traffic.
    pub udp_idle_timeout: Duration,
    /// Services whose cluster IPs are made local but never forwarded, because something
    /// in this process answers on them itself (the in-process cluster DNS).
    pub local_services: Vec<ServiceName>,
}

impl ProxyConfig {
    /// Defaults for a node: the default service CIDR, NodePorts on `node_addresses`.
    pub fn new(node_name: impl Into<String>, node_addresses: Vec<IpAddr>) -> Self {
        ProxyConfig {
            node_name: node_name.into(),
            service_cidrs: vec![ServiceCidr::default()],
            node_addresses,
            dummy_interface: addresses::DEFAULT_DUMMY_INTERFACE.to_owned(),
            udp_idle_timeout: udp::DEFAULT_IDLE_TIMEOUT,
            local_services: Vec::new(),
        }
    }
}

/// The service proxy.
pub struct Proxy {
    client: kube::Client,
    config: ProxyConfig,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
}

/// One address:port:protocol the proxy listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ListenKey {
    addr: SocketAddr,
    protocol: Protocol,
}

/// What a listener forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ListenTarget {
    endpoints: Vec<SocketAddr>,
    affinity: Option<Duration>,
    describe: String,
}

struct Listener {
    backends: Arc<BackendSet>,
    /// Set while a socket is bound and served.
    running: Option<CancellationToken>,
    describe: String,
}

/// What one Service has on the node now.
#[derive(Default)]
struct Applied {
    ips: BTreeSet<Ipv4Addr>,
    listeners: BTreeSet<ListenKey>,
}

struct State {
    config: ProxyConfig,
    addresses: LocalAddresses,
    services: HashMap<ServiceName, Service>,
    slices: HashMap<ServiceName, HashMap<String, EndpointSlice>>,
    /// Which Service each slice (namespace, name) was filed under, to move it when its
    /// label changes.
    slice_owner: HashMap<(String, String), ServiceName>,
    applied: HashMap<ServiceName, Applied>,
    listeners: HashMap<ListenKey, Listener>,
    /// Listeners that should run but could not bind; retried on a timer.
    failed: HashSet<ListenKey>,
    stop: CancellationToken,
    connections: TaskTracker,
}

// Only one change exists at a time (the loop takes them one by one), so the size
// difference costs nothing; boxing would allocate per event.
#[allow(clippy::large_enum_variant)]
enum Change {
    Service(Event<Service>),
    Slice(Event<EndpointSlice>),
}

impl Proxy {
    pub fn new(client: kube::Client, config: ProxyConfig) -> Self {
        Proxy {
            client,
            config,
            ready: None,
        }
    }

    /// Told once the proxy has applied every Service seen in its first full list.
    pub fn with_ready_signal(mut self, ready: tokio::sync::oneshot::Sender<()>) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Run until `shutdown`, then release every socket and address.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), ProxyError> {
        let addresses = LocalAddresses::open(
            &self.config.dummy_interface,
            self.config.service_cidrs.clone(),
        )
        .await?;
        tracing::info!(
            device = addresses.device(),
            cidrs = ?self.config.service_cidrs,
            node_addresses = ?self.config.node_addresses,
            "service proxy starting"
        );
        let mut state = State {
            config: self.config.clone(),
            addresses,
            services: HashMap::new(),
            slices: HashMap::new(),
            slice_owner: HashMap::new(),
            applied: HashMap::new(),
            listeners: HashMap::new(),
            failed: HashSet::new(),
            stop: shutdown.child_token(),
            connections: TaskTracker::new(),
        };
        let services = watcher::watcher(
            Api::<Service>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(|e| e.map(Change::Service));
        let slices = watcher::watcher(
            Api::<EndpointSlice>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(|e| e.map(Change::Slice));
        let mut changes = std::pin::pin!(futures::stream::select(services, slices));
        let (mut services_listed, mut slices_listed, mut synced) = (false, false, false);
        let mut pending_services = HashMap::new();
        let mut pending_slices = Vec::new();
        let mut retry = tokio::time::interval(RETRY_INTERVAL);
        let result = loop {
            let change = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = retry.tick() => {
                    state.retry_failed();
                    continue;
                }
                change = changes.next() => change,
            };
            let change = match change {
                Some(Ok(change)) => change,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "service proxy watch (retrying)");
                    continue;
                }
                None => break Ok(()),
            };
            match change {
                // A (re)list: collect it whole, then swap it in, so objects deleted while
                // the watch was down disappear too.
                Change::Service(Event::Init) => pending_services.clear(),
                Change::Service(Event::InitApply(svc)) => {
                    if let Some(name) = ServiceName::of(&svc) {
                        pending_services.insert(name, svc);
                    }
                }
                Change::Service(Event::InitDone) => {
                    let old: Vec<ServiceName> = state.services.keys().cloned().collect();
                    state.services = std::mem::take(&mut pending_services);
                    services_listed = true;
                    if synced {
                        let mut touched: BTreeSet<ServiceName> = old.into_iter().collect();
                        touched.extend(state.services.keys().cloned());
                        for name in touched {
                            state.reconcile(&name).await;
                        }
                    }
                }
                Change::Slice(Event::Init) => pending_slices.clear(),
                Change::Slice(Event::InitApply(slice)) => pending_slices.push(slice),
                Change::Slice(Event::InitDone) => {
                    let old: Vec<ServiceName> = state.slices.keys().cloned().collect();
                    state.slices.clear();
                    state.slice_owner.clear();
                    let mut touched: BTreeSet<ServiceName> = old.into_iter().collect();
                    for slice in std::mem::take(&mut pending_slices) {
                        touched.extend(state.file_slice(slice));
                    }
                    slices_listed = true;
                    if synced {
                        for name in touched {
                            state.reconcile(&name).await;
                        }
                    }
                }
                Change::Service(Event::Apply(svc)) => {
                    if let Some(name) = ServiceName::of(&svc) {
                        state.services.insert(name.clone(), svc);
                        if synced {
                            state.reconcile(&name).await;
                        }
                    }
                }
                Change::Service(Event::Delete(svc)) => {
                    if let Some(name) = ServiceName::of(&svc) {
                        state.services.remove(&name);
                        if synced {
                            state.reconcile(&name).await;
                        }
                    }
                }
                Change::Slice(Event::Apply(slice)) => {
                    let touched = state.file_slice(slice);
                    if synced {
                        for name in touched {
                            state.reconcile(&name).await;
                        }
                    }
                }
                Change::Slice(Event::Delete(slice)) => {
                    let touched = state.unfile_slice(&slice);
                    if synced {
                        for name in touched {
                            state.reconcile(&name).await;
                        }
                    }
                }
            }
            if !synced && services_listed && slices_listed {
                synced = true;
                if let Err(e) = state.full_sync().await {
                    break Err(e);
                }
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(());
                }
            }
        };
        state.shutdown().await;
        result
    }
}

impl State {
    /// File `slice` under its Service; returns the Services whose endpoints changed.
    fn file_slice(&mut self, slice: EndpointSlice) -> Vec<ServiceName> {
        let (Some(namespace), Some(name)) = (
            slice.metadata.namespace.clone(),
            slice.metadata.name.clone(),
        ) else {
            return Vec::new();
        };
        let mut touched = self.unfile_slice(&slice);
        if let Some(service) = ServiceName::of_slice(&slice) {
            self.slice_owner
                .insert((namespace, name.clone()), service.clone());
            self.slices
                .entry(service.clone())
                .or_default()
                .insert(name, slice);
            if !touched.contains(&service) {
                touched.push(service);
            }
        }
        touched
    }

    fn unfile_slice(&mut self, slice: &EndpointSlice) -> Vec<ServiceName> {
        let (Some(namespace), Some(name)) = (
            slice.metadata.namespace.clone(),
            slice.metadata.name.clone(),
        ) else {
            return Vec::new();
        };
        let Some(owner) = self.slice_owner.remove(&(namespace, name.clone())) else {
            return Vec::new();
        };
        if let Some(map) = self.slices.get_mut(&owner) {
            map.remove(&name);
            if map.is_empty() {
                self.slices.remove(&owner);
            }
        }
        vec![owner]
    }

    /// After the first full lists: remove addresses nobody holds (left by an earlier
    /// proxy), then apply every Service.
    async fn full_sync(&mut self) -> Result<(), ProxyError> {
        let wanted: HashSet<IpAddr> = self
            .services
            .values()
            .flat_map(model::cluster_ips)
            .collect();
        for ip in self.addresses.list().await? {
            if let IpAddr::V4(v4) = ip
                && !wanted.contains(&ip)
            {
                tracing::info!(address = %ip, device = self.addresses.device(), "removing stale cluster IP");
                self.addresses.remove(v4).await?;
            }
        }
        let names: Vec<ServiceName> = self.services.keys().cloned().collect();
        for name in names {
            self.reconcile(&name).await;
        }
        tracing::info!(
            services = self.services.len(),
            listeners = self
                .listeners
                .values()
                .filter(|l| l.running.is_some())
                .count(),
            "service proxy synced"
        );
        Ok(())
    }

    /// What `name` needs on this node now: its local cluster IPs and its listeners.
    fn desired(
        &self,
        name: &ServiceName,
    ) -> (BTreeSet<Ipv4Addr>, HashMap<ListenKey, ListenTarget>) {
        let mut ips = BTreeSet::new();
        let mut listeners = HashMap::new();
        let Some(svc) = self.services.get(name) else {
            return (ips, listeners);
        };
        let cluster_ips: Vec<IpAddr> = model::cluster_ips(svc)
            .into_iter()
            .filter(|ip| self.config.service_cidrs.iter().any(|c| in_cidr(c, *ip)))
            .collect();
        ips.extend(cluster_ips.iter().filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        }));
        if self.config.local_services.contains(name) {
            return (ips, listeners);
        }
        let empty = HashMap::new();
        let slices = self.slices.get(name).unwrap_or(&empty);
        for port in model::service_ports(svc, slices.values(), &self.config.node_name) {
            for ip in &cluster_ips {
                listeners.insert(
                    ListenKey {
                        addr: SocketAddr::new(*ip, port.port),
                        protocol: port.protocol,
                    },
                    target(&port, &port.cluster_endpoints, *ip),
                );
            }
            if let Some(node_port) = port.node_port {
                for ip in &self.config.node_addresses {
                    listeners.insert(
                        ListenKey {
                            addr: SocketAddr::new(*ip, node_port),
                            protocol: port.protocol,
                        },
                        target(&port, &port.node_port_endpoints, *ip),
                    );
                }
            }
        }
        (ips, listeners)
    }

    /// Bring `name`'s addresses and listeners on the node in line with what it needs.
    async fn reconcile(&mut self, name: &ServiceName) {
        let (ips, wanted) = self.desired(name);
        let applied = self.applied.remove(name).unwrap_or_default();
        for ip in ips.difference(&applied.ips) {
            if let Err(e) = self.addresses.add(*ip).await {
                tracing::warn!(service = %name, error = %e, "making a cluster IP local");
            }
        }
        for key in applied
            .listeners
            .difference(&wanted.keys().copied().collect())
        {
            if let Some(listener) = self.listeners.remove(key) {
                listener.stop();
            }
            self.failed.remove(key);
        }
        for (key, target) in &wanted {
            let listener = self.listeners.entry(*key).or_insert_with(|| Listener {
                backends: Arc::new(BackendSet::default()),
                running: None,
                describe: target.describe.clone(),
            });
            listener.backends.update(&target.endpoints, target.affinity);
            listener.describe.clone_from(&target.describe);
        }
        for key in wanted.keys() {
            self.sync_listener(*key);
        }
        for ip in applied.ips.difference(&ips) {
            if let Err(e) = self.addresses.remove(*ip).await {
                tracing::warn!(service = %name, error = %e, "removing a cluster IP");
            }
        }
        if !ips.is_empty() || !wanted.is_empty() {
            self.applied.insert(
                name.clone(),
                Applied {
                    ips,
                    listeners: wanted.into_keys().collect(),
                },
            );
        }
    }

    /// Bind or close `key`'s socket so that it listens exactly while it has endpoints.
    fn sync_listener(&mut self, key: ListenKey) {
        let Some(listener) = self.listeners.get_mut(&key) else {
            return;
        };
        let has_endpoints = !listener.backends.is_empty();
        match (has_endpoints, listener.running.is_some()) {
            (true, false) => {
                let stop = self.stop.child_token();
                let started = match key.protocol {
                    Protocol::Tcp => tcp::bind(key.addr).map(|socket| {
                        self.connections.spawn(tcp::serve(
                            socket,
                            listener.backends.clone(),
                            stop.clone(),
                            self.connections.clone(),
                        ));
                    }),
                    Protocol::Udp => udp::bind(key.addr).map(|socket| {
                        self.connections.spawn(udp::serve(
                            socket,
                            listener.backends.clone(),
                            stop.clone(),
                            self.connections.clone(),
                            self.config.udp_idle_timeout,
                        ));
                    }),
                };
                match started {
                    Ok(()) => {
                        listener.running = Some(stop);
                        self.failed.remove(&key);
                    }
                    Err(e) => {
                        if self.failed.insert(key) {
                            tracing::warn!(
                                listen = %key.addr, protocol = %key.protocol,
                                service = %listener.describe, error = %e,
                                "cannot listen (retrying)"
                            );
                        }
                    }
                }
            }
            (false, true) => {
                if let Some(stop) = listener.running.take() {
                    stop.cancel();
                }
            }
            _ => {}
        }
    }

    fn retry_failed(&mut self) {
        let keys: Vec<ListenKey> = self.failed.iter().copied().collect();
        for key in keys {
            self.sync_listener(key);
        }
    }

    async fn shutdown(mut self) {
        for (_, listener) in self.listeners.drain() {
            listener.stop();
        }
        self.stop.cancel();
        self.connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("service proxy: connections still closing at exit");
        }
        if let Err(e) = self.addresses.clear().await {
            tracing::warn!(error = %e, "removing cluster IPs at exit");
        }
        tracing::info!("service proxy stopped");
    }
}

impl Listener {
    fn stop(self) {
        if let Some(stop) = self.running {
            stop.cancel();
        }
        self.backends.close();
    }
}

/// A non-blocking socket of `kind` bound to `addr`. The address may be a cluster IP not
/// on the node yet (IP_FREEBIND): addresses and sockets are set up concurrently.
fn bind_socket(addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None)?;
    // TCP: rebinding right after a listener closed must not wait for TIME_WAIT. Not UDP,
    // where it would let a second proxy share the port silently.
    if kind == socket2::Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A listener's target for `port` on `ip`: the endpoints of `ip`'s address family.
fn target(port: &ServicePort, endpoints: &[SocketAddr], ip: IpAddr) -> ListenTarget {
    ListenTarget {
        endpoints: endpoints
            .iter()
            .filter(|e| e.is_ipv4() == ip.is_ipv4())
            .copied()
            .collect(),
        affinity: port.affinity,
        describe: port.describe(),
    }
}

//! Cluster DNS: the in-process equivalent of CoreDNS with the `kubernetes` plugin
//! (`pods insecure`) and `forward . /etc/resolv.conf`.
//!
//! [`DnsServer`] answers `<svc>.<ns>.svc.<domain>`, endpoint names, SRV names, pod names
//! and the PTRs of cluster addresses from an in-memory index fed by watches of Services and
//! EndpointSlices — queries never call the API — and forwards every other name to the
//! nameservers of the host's resolv.conf. It serves UDP and TCP on each listen address
//! (usually the kube-dns Service's cluster IP), bound with `IP_FREEBIND` so it may start
//! before the service proxy puts that address on `lo`.
//!
//! The parts, one file each: `index` (the distilled objects and reverse maps), `watch`
//! (keeping the index current), `zone` (what a cluster name answers), `forward`
//! (upstreams), `handler` (the hickory request handler joining them). This module owns
//! the sockets and the server's lifetime; it reads Services and EndpointSlices and writes
//! nothing to the API, and it never adds addresses or routes (that is the proxy's job).

mod forward;
mod handler;
mod index;
mod watch;
mod zone;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::NetError;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::forward::Forwarder;
use self::handler::Handler;
use self::index::Index;
use self::zone::Zone;

/// The cluster domain Kubernetes uses unless told otherwise.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Where the host's resolver configuration lives.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// A TCP connection idle this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// Failures that stop the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// [`DnsConfig::listen`] is empty.
    #[error("cluster DNS has no address to listen on")]
    NoListenAddress,
    /// The cluster domain is not a valid DNS name.
    #[error("invalid cluster domain {domain:?}: {source}")]
    ClusterDomain {
        /// The domain as configured.
        domain: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    /// The resolv.conf naming the upstream nameservers could not be read.
    #[error("reading the upstream nameservers from {}: {source}", path.display())]
    ResolvConf {
        /// The file that could not be read.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A listen address could not be bound.
    #[error("binding cluster DNS ({protocol}) on {addr}: {source}")]
    Bind {
        /// The address being bound.
        addr: SocketAddr,
        /// `UDP` or `TCP`.
        protocol: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The server's sockets failed while serving.
    #[error("cluster DNS stopped serving: {0}")]
    Serve(#[source] NetError),
}

/// How the DNS server runs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Addresses served over UDP and TCP, e.g. `10.43.0.10:53` (the kube-dns Service's
    /// cluster IP). Port 0 picks one free port per address, the same for UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The cluster domain, `cluster.local` by default.
    pub cluster_domain: String,
    /// The resolv.conf whose nameservers answer every other name (the host's,
    /// `/etc/resolv.conf`, by default). Re-read when it changes.
    pub resolv_conf: PathBuf,
}

impl DnsConfig {
    /// Defaults for everything but the listen addresses.
    pub fn new(listen: Vec<SocketAddr>) -> Self {
        DnsConfig {
            listen,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            resolv_conf: PathBuf::from(DEFAULT_RESOLV_CONF),
        }
    }
}

/// The cluster DNS server.
pub struct DnsServer {
    client: kube::Client,
    config: DnsConfig,
    ready: Option<oneshot::Sender<()>>,
}

impl DnsServer {
    /// A server reading Services and EndpointSlices through `client`.
    pub fn new(client: kube::Client, config: DnsConfig) -> Self {
        DnsServer {
            client,
            config,
            ready: None,
        }
    }

    /// Told once the sockets are bound and the first complete lists of Services and
    /// EndpointSlices are in the index (cluster names answer SERVFAIL until then; forwarded
    /// names work from the start).
    pub fn with_ready_signal(mut self, ready: oneshot::Sender<()>) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Serve until `shutdown`. Fails at start when the configuration is unusable or an
    /// address cannot be bound, later only if every socket fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), DnsError> {
        let config = self.config;
        if config.listen.is_empty() {
            return Err(DnsError::NoListenAddress);
        }
        let own: Vec<IpAddr> = config
            .listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        let zone =
            Zone::new(&config.cluster_domain, own).map_err(|source| DnsError::ClusterDomain {
                domain: config.cluster_domain.clone(),
                source,
            })?;
        let forwarder = Forwarder::load(&config.resolv_conf, &config.listen).map_err(|source| {
            DnsError::ResolvConf {
                path: config.resolv_conf.clone(),
                source,
            }
        })?;
        let upstreams = forwarder.nameservers();

        let mut sockets = Vec::new();
        for addr in &config.listen {
            let udp = bind_udp(*addr)?;
            // Port 0: TCP takes the port UDP got, so one address:port serves both.
            let bound = udp.local_addr().map_err(|source| DnsError::Bind {
                addr: *addr,
                protocol: "UDP",
                source,
            })?;
            let tcp = bind_tcp(bound)?;
            sockets.push((udp, tcp));
        }

        let index = Arc::new(RwLock::new(Index::new()));
        let synced = Arc::new(AtomicBool::new(false));
        let mut server = Server::new(Handler::new(zone, index.clone(), synced.clone(), forwarder));
        for (udp, tcp) in sockets {
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        }

        let watches = TaskTracker::new();
        let stop_watches = shutdown.child_token();
        let (services_listed, services_synced) = oneshot::channel();
        let (slices_listed, slices_synced) = oneshot::channel();
        watches.spawn(watch::run::<Service>(
            self.client.clone(),
            index.clone(),
            services_listed,
            stop_watches.clone(),
        ));
        watches.spawn(watch::run::<EndpointSlice>(
            self.client,
            index,
            slices_listed,
            stop_watches.clone(),
        ));
        watches.close();

        let mut ready = self.ready;
        let serving = async {
            // A watch that stopped before listing drops its sender: nothing to wait for.
            let _ = services_synced.await;
            let _ = slices_synced.await;
            synced.store(true, Ordering::Release);
            tracing::info!(
                listen = ?config.listen,
                domain = %config.cluster_domain,
                ?upstreams,
                "cluster DNS ready"
            );
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            server.block_until_done().await
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => None,
            outcome = serving => Some(outcome),
        };
        stop_watches.cancel();
        let stopped = server.shutdown_gracefully().await;
        watches.wait().await;
        match outcome {
            None => stopped.map_err(DnsError::Serve),
            Some(Err(error)) => Err(DnsError::Serve(error)),
            Some(Ok(())) => Err(DnsError::Serve(NetError::from(
                "every listening socket closed",
            ))),
        }
    }
}

/// A socket for `addr`, bindable before the address exists on this host: the cluster IP
/// appears on `lo` only once the service proxy has added it, possibly after we start.
fn socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            socket.set_freebind_v6(true)?;
            socket.set_only_v6(true)?;
        }
    }
    if ty == Type::STREAM {
        // A restarted server must not wait out TIME_WAIT connections on its TCP port. (Not
        // for UDP: there Linux would let a second server share the port silently.)
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_udp(addr: SocketAddr) -> Result<tokio::net::UdpSocket, DnsError> {
    let bind = || {
        let socket = socket(addr, Type::DGRAM, Protocol::UDP)?;
        socket.bind(&addr.into())?;
        tokio::net::UdpSocket::from_std(socket.into())
    };
    bind().map_err(|source| DnsError::Bind {
        addr,
        protocol: "UDP",
        source,
    })
}

fn bind_tcp(addr: SocketAddr) -> Result<tokio::net::TcpListener, DnsError> {
    let bind = || {
        let socket = socket(addr, Type::STREAM, Protocol::TCP)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        tokio::net::TcpListener::from_std(socket.into())
    };
    bind().map_err(|source| DnsError::Bind {
        addr,
        protocol: "TCP",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_an_address_not_yet_on_this_host() {
        // TEST-NET-3: never configured here, so only IP_FREEBIND lets this bind.
        let addr: SocketAddr = "203.0.113.53:0".parse().unwrap();
        let udp = bind_udp(addr).unwrap();
        let bound = udp.local_addr().unwrap();
        assert_eq!(bound.ip(), addr.ip());
        bind_tcp(bound).unwrap();
    }

    #[tokio::test]
    async fn bind_errors_name_the_address() {
        let taken = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind_udp(addr).unwrap_err();
        assert!(error.to_string().contains(&addr.to_string()), "{error}");
    }

    #[test]
    fn config_defaults() {
        let config = DnsConfig::new(vec!["10.43.0.10:53".parse().unwrap()]);
        assert_eq!(config.cluster_domain, "cluster.local");
        assert_eq!(config.resolv_conf, PathBuf::from("/etc/resolv.conf"));
    }
}

//! The node agent (kubelet): registers its machine as a Node, keeps its Lease and
//! conditions fresh, and converges the pods bound to it into containers through
//! containerd — images, runtime specs, pod networks (CNI), lifecycle and logs. It talks to
//! the API server only as a client and to containerd only in the `moor` namespace.
//!
//! [`Agent::run`] wires the parts: [`node::NodeAgent`] (registration, heartbeat),
//! [`pods::PodManager`] (one worker per pod, level-triggered against containerd's state),
//! [`server::KubeletServer`] (the kubelet API the API server's `pods/log` proxies to), and
//! unless told not to, the service proxy ([`crate::proxy`]) and the cluster DNS server
//! ([`crate::dns`]) on the kube-dns Service's address, which pods' resolv.conf names.

pub mod containerd;
pub mod containerd_daemon;
pub mod dns;
pub mod env;
pub mod exec;
pub mod images;
pub mod logs;
pub mod network;
pub mod node;
pub mod pods;
pub mod probes;
pub mod runtime;
pub mod server;
pub mod spec;
pub mod status;
pub mod volumes;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use tokio_util::sync::CancellationToken;

use self::containerd::{Containerd, ContainerdError};
use self::dns::DnsSettings;
use self::images::ImageStore;
use self::network::{Network, NetworkConfig, NetworkError};
use self::node::{NodeAgent, NodeConfig, NodeError};
use self::pods::{PodManager, Shared};
use self::runtime::Runtime;
use crate::apiserver::services::{ServiceCidr, cluster_dns_ip};
use crate::dns::DnsConfig;
use crate::proxy::ProxyConfig;

/// The kubelet API port upstream uses.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// This node's pod range when the Node has no spec.podCIDR: the first /24 of the default
/// cluster range 10.42.0.0/16.
pub const DEFAULT_POD_CIDR: &str = "10.42.0.0/24";

/// Failures that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("the kubelet API on {addr}: {source}")]
    Serve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Services(#[from] crate::proxy::ServicesError),
    #[error("creating the data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node_name: String,
    /// Pod files, logs, network state; `/var/lib/moor/agent` by default.
    pub data_dir: PathBuf,
    pub containerd_socket: PathBuf,
    /// The pod range when the Node has no spec.podCIDR.
    pub pod_cidr: String,
    pub bridge: String,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The kubelet API (logs) listens here; 0 picks a free port.
    pub kubelet_port: u16,
    /// The node's InternalIP (default: the host's first non-loopback IPv4).
    pub address: Option<IpAddr>,
    /// Image archives (`*.tar`, `*.tar.gz`) imported at start; `<data dir>/images` by default.
    pub images_dir: Option<PathBuf>,
    /// Registries pulled from over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Run pods without CNI, in the host's network (for machines without the plugins).
    pub host_network_only: bool,
    /// The `moor` binary the shims run to write container logs (`moor container-log`);
    /// this executable by default.
    pub log_driver: PathBuf,
    /// DiskPressure when less than this percentage of the data dir's filesystem is free.
    pub disk_pressure_percent: u8,
    /// Run the service proxy and the cluster DNS server in the agent.
    pub proxy: bool,
    /// The API server's service range: the proxy makes cluster IPs in it local.
    pub service_cidr: ServiceCidr,
    /// The cluster DNS address pods' resolv.conf names (kubelet's clusterDNS); the
    /// in-process DNS server answers on it. None: pods get the host's resolvers.
    pub cluster_dns: Option<IpAddr>,
    pub cluster_domain: String,
    /// The host's resolv.conf: upstreams for names outside the cluster, and what pods with
    /// `dnsPolicy: Default` get.
    pub resolv_conf: PathBuf,
}

impl AgentConfig {
    /// Defaults for a node name and data dir.
    pub fn new(node_name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            containerd_socket: PathBuf::from(containerd::DEFAULT_SOCKET),
            pod_cidr: DEFAULT_POD_CIDR.to_owned(),
            bridge: network::DEFAULT_BRIDGE.to_owned(),
            cni_bin_dirs: network::DEFAULT_CNI_BIN_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
            kubelet_port: DEFAULT_KUBELET_PORT,
            address: None,
            images_dir: None,
            insecure_registries: Vec::new(),
            labels: BTreeMap::new(),
            host_network_only: false,
            log_driver: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("moor")),
            disk_pressure_percent: node::DEFAULT_DISK_AVAILABLE_MIN_PERCENT,
            proxy: true,
            service_cidr: ServiceCidr::default(),
            cluster_dns: Some(IpAddr::V4(cluster_dns_ip(&ServiceCidr::default()))),
            cluster_domain: dns::DEFAULT_CLUSTER_DOMAIN.to_owned(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// The node agent.
pub struct Agent {
    client: kube::Client,
    config: AgentConfig,
    ready: Option<tokio::sync::oneshot::Sender<Node>>,
}

impl Agent {
    pub fn new(client: kube::Client, config: AgentConfig) -> Self {
        Agent {
            client,
            config,
            ready: None,
        }
    }

    /// Told the registered Node once the agent syncs pods (for `moor up`'s progress line
    /// and tests).
    pub fn with_ready_signal(mut self, ready: tokio::sync::oneshot::Sender<Node>) -> Self {
        self.ready = Some(ready);
        self
    }

    /// Runs until `shutdown`. Containers keep running when it returns: the next agent on
    /// this data dir and containerd adopts them.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let config = self.config;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let containerd = Containerd::connect(&config.containerd_socket).await?;
        let version = containerd.version().await?;
        let images = ImageStore::new(containerd.clone())
            .with_insecure_registries(config.insecure_registries.clone());
        let images_dir = config
            .images_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("images"));
        if images_dir.is_dir() {
            match images.import_dir(&images_dir).await {
                Ok(names) if !names.is_empty() => {
                    tracing::info!(dir = %images_dir.display(), images = ?names, "imported image archives");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(dir = %images_dir.display(), error = %e, "importing image archives")
                }
            }
        }

        let server =
            server::KubeletServer::bind(config.kubelet_port, Runtime::new(containerd.clone()))
                .await
                .map_err(|source| AgentError::Serve {
                    addr: format!("0.0.0.0:{}", config.kubelet_port),
                    source,
                })?;
        let (runtime_tx, runtime_rx) = tokio::sync::watch::channel(Ok(()));
        let node_agent = NodeAgent::new(
            self.client.clone(),
            NodeConfig {
                name: config.node_name.clone(),
                kubelet_port: server.port(),
                address: config.address,
                data_dir: config.data_dir.clone(),
                runtime_version: format!("containerd://{version}"),
                labels: config.labels.clone(),
                max_pods: 110,
            },
        )
        .with_runtime_status(runtime_rx)
        .with_disk_pressure_percent(config.disk_pressure_percent);
        let node = node_agent.register().await?;
        let node = wait_for_pod_cidr(&self.client, node, &shutdown).await;
        let pod_cidr = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| config.pod_cidr.clone());
        let network = if config.host_network_only {
            None
        } else {
            let net_config = NetworkConfig::new(pod_cidr.clone(), config.data_dir.join("network"))
                .with_bridge(config.bridge.clone())
                .with_cni_bin_dirs(config.cni_bin_dirs.clone());
            Some(Arc::new(Network::new(net_config)?))
        };
        let host_ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse().ok());
        let shared = Shared {
            client: self.client.clone(),
            node_name: config.node_name.clone(),
            runtime: Runtime::new(containerd.clone()),
            images,
            network,
            data_dir: config.data_dir.clone(),
            host_ip,
            log_driver: config.log_driver.clone(),
            dns: DnsSettings {
                cluster_dns: config.cluster_dns.into_iter().collect(),
                cluster_domain: config.cluster_domain.clone(),
            },
            resolv_conf: config.resolv_conf.clone(),
            recorder: Arc::new(
                crate::controllers::events::Recorder::new(self.client.clone(), "kubelet")
                    .with_host(config.node_name.clone()),
            ),
        };
        tracing::info!(node = %config.node_name, pod_cidr = %pod_cidr, kubelet_port = server.port(), containerd = %version, "agent running");
        if let Some(ready) = self.ready {
            let _ = ready.send(node);
        }

        let tracker = tokio_util::task::TaskTracker::new();
        let node_task = tracker.spawn(node_agent.run(shutdown.clone()));
        let server_task = tracker.spawn(server.run(shutdown.clone()));
        let health_task = tracker.spawn(watch_runtime(containerd, runtime_tx, shutdown.clone()));
        let services_task = config.proxy.then(|| {
            let (proxy, dns) = services_config(&config, host_ip);
            tracker.spawn(crate::proxy::run_with_dns(
                self.client.clone(),
                proxy,
                dns,
                shutdown.clone(),
            ))
        });
        let pods = PodManager::new(shared).run(shutdown.clone()).await;
        shutdown.cancel();
        tracker.close();
        let (node_result, server_result, _) = tokio::join!(node_task, server_task, health_task);
        if let Some(task) = services_task
            && let Ok(Err(e)) = task.await
        {
            return Err(e.into());
        }
        pods?;
        if let Ok(Err(e)) = node_result {
            return Err(e.into());
        }
        if let Ok(Err(e)) = server_result {
            return Err(AgentError::Serve {
                addr: "kubelet API".into(),
                source: e,
            });
        }
        Ok(())
    }
}

/// What the in-process proxy and DNS server are told.
fn services_config(
    config: &AgentConfig,
    host_ip: Option<IpAddr>,
) -> (ProxyConfig, Option<DnsConfig>) {
    // NodePorts on the node's address and on loopback (as kube-proxy allows).
    let mut node_addresses = vec![IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];
    node_addresses.extend(host_ip.filter(|ip| !node_addresses.contains(ip)));
    let mut proxy = ProxyConfig::new(config.node_name.clone(), node_addresses);
    proxy.service_cidrs = vec![config.service_cidr];
    let dns = config.cluster_dns.map(|ip| {
        crate::proxy::cluster_dns(&mut proxy, ip, &config.cluster_domain, &config.resolv_conf)
    });
    (proxy, dns)
}

/// A Node without spec.podCIDR may be given one by the node IPAM controller right after
/// registering; wait a moment for it before falling back to the configured range.
async fn wait_for_pod_cidr(
    client: &kube::Client,
    node: Node,
    shutdown: &CancellationToken,
) -> Node {
    let has_cidr = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .is_some_and(|c| !c.is_empty())
    };
    if has_cidr(&node) {
        return node;
    }
    let api: kube::Api<Node> = kube::Api::all(client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    for _ in 0..20 {
        tokio::select! {
            _ = shutdown.cancelled() => return node,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if let Ok(latest) = api.get(&name).await
            && has_cidr(&latest)
        {
            return latest;
        }
    }
    node
}

/// Ready=False while containerd does not answer.
async fn watch_runtime(
    containerd: Containerd,
    status: tokio::sync::watch::Sender<Result<(), String>>,
    shutdown: CancellationToken,
) {
    loop {
        let now = match containerd.version().await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("container runtime is down: {e}")),
        };
        status.send_if_modified(|old| {
            let changed = *old != now;
            *old = now.clone();
            changed
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

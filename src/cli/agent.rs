//! `moor agent`: the node agent for this machine against any API server a kubeconfig
//! names — registers the Node and runs the pods bound to it through containerd.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::kubelet::{Agent, AgentConfig, DEFAULT_KUBELET_PORT, DEFAULT_POD_CIDR};

/// `moor agent ...`
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Kubeconfig of the cluster (moor server writes one to its data dir).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// containerd's socket.
    #[arg(long, default_value = crate::kubelet::containerd::DEFAULT_SOCKET)]
    pub containerd_socket: PathBuf,
    /// Pod files, container logs, network state; image archives in `<dir>/images` are
    /// imported at start.
    #[arg(long, default_value = "/var/lib/moor/agent")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub network: super::proxy::ServiceNetworkArgs,
}

/// How this machine runs as a node: shared by `moor agent` and `moor up`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The Node's name (default: this machine's hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// This node's pod range when its Node has no spec.podCIDR.
    #[arg(long, default_value = DEFAULT_POD_CIDR)]
    pub pod_cidr: String,
    /// The bridge pods attach to.
    #[arg(long, default_value = crate::kubelet::network::DEFAULT_BRIDGE)]
    pub bridge: String,
    /// Where the CNI plugins are (searched in order).
    #[arg(long = "cni-bin-dir", default_values = crate::kubelet::network::DEFAULT_CNI_BIN_DIRS)]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The kubelet API port (container logs, metrics); 0 picks a free one.
    #[arg(long, default_value_t = DEFAULT_KUBELET_PORT)]
    pub kubelet_port: u16,
    /// The node's InternalIP (default: this machine's first non-loopback IPv4).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Extra Node labels, `key=value`, repeatable.
    #[arg(long = "node-label", value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// Registries pulled from over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Report DiskPressure (which taints the node against new pods) when less than this
    /// percentage of the data dir's filesystem is free; 0 never does.
    #[arg(long, env = "MOOR_DISK_PRESSURE_BELOW",
          default_value_t = crate::kubelet::node::DEFAULT_DISK_AVAILABLE_MIN_PERCENT,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub disk_pressure_below: u8,
    /// Run neither the service proxy nor cluster DNS here (run `moor proxy` instead, or
    /// nothing: Services then have no cluster IPs on this machine).
    #[arg(long)]
    pub no_proxy: bool,
}

impl NodeArgs {
    /// The agent's configuration from these flags, for `data_dir` and containerd at
    /// `socket`; the service network and DNS are set by the caller.
    pub fn config(&self, data_dir: PathBuf, socket: PathBuf) -> anyhow::Result<AgentConfig> {
        let mut config = AgentConfig::new(node_name(self.node_name.clone())?, data_dir);
        config.containerd_socket = socket;
        config.pod_cidr.clone_from(&self.pod_cidr);
        config.bridge.clone_from(&self.bridge);
        config.cni_bin_dirs.clone_from(&self.cni_bin_dirs);
        config.kubelet_port = self.kubelet_port;
        config.address = self.node_ip;
        config
            .insecure_registries
            .clone_from(&self.insecure_registries);
        config.disk_pressure_percent = self.disk_pressure_below;
        config.proxy = !self.no_proxy;
        config.labels = self.node_labels.iter().cloned().collect::<BTreeMap<_, _>>();
        Ok(config)
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// The Node's name: as given, or this machine's hostname in lower case (as kubelet).
pub(super) fn node_name(given: Option<String>) -> anyhow::Result<String> {
    Ok(match given {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .context("reading the hostname for the node name (or pass --node-name)")?
            .to_string_lossy()
            .to_lowercase(),
    })
}

/// Run `moor agent` until SIGINT or SIGTERM; containers keep running after it exits.
pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let client = super::diff::connect(args.kubeconfig.clone()).await?;
    let mut config = args.node.config(args.data_dir, args.containerd_socket)?;
    config.service_cidr = args.network.service_cidr;
    config.cluster_dns = Some(args.network.cluster_dns());
    config.cluster_domain = args.network.dns.cluster_domain.clone();
    config.resolv_conf = args.network.dns.resolv_conf.clone();
    let shutdown = super::server::cancel_on_signal();
    tokio::spawn(super::trim_heap_periodically(shutdown.clone()));
    let agent = Agent::new(client, config.clone());
    run_agent(agent, &config, shutdown, std::time::Instant::now(), None).await?;
    Ok(ExitCode::SUCCESS)
}

/// Run `agent` until `shutdown`, printing its progress lines: the Node once registered,
/// and the service proxy and DNS when they run. `registered` is told once the Node is.
pub async fn run_agent(
    agent: Agent,
    config: &AgentConfig,
    shutdown: tokio_util::sync::CancellationToken,
    started: std::time::Instant,
    registered: Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let agent = agent.with_ready_signal(ready_tx);
    let node_name = config.node_name.clone();
    let services = config.proxy.then(|| {
        format!(
            "proxy+dns  {}  dns {}",
            config.service_cidr,
            config
                .cluster_dns
                .map_or_else(|| "off".to_owned(), |ip| ip.to_string())
        )
    });
    let announce = tokio::spawn(async move {
        if let Ok(node) = ready_rx.await {
            let cidr = node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.clone())
                .unwrap_or_else(|| "(no podCIDR)".into());
            let address = node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                .map(|a| a.address.clone())
                .unwrap_or_default();
            println!(
                "agent      node \"{node_name}\" registered  {address}  pods {cidr}  ready {} ms",
                started.elapsed().as_millis()
            );
            if let Some(line) = services {
                println!("{line}");
            }
            if let Some(registered) = registered {
                let _ = registered.send(());
            }
        }
    });
    let result = agent.run(shutdown).await.context("node agent");
    announce.abort();
    result
}

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
    /// The Node's name (default: this machine's hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// containerd's socket.
    #[arg(long, default_value = crate::kubelet::containerd::DEFAULT_SOCKET)]
    pub containerd_socket: PathBuf,
    /// Pod files, container logs, network state; image archives in `<dir>/images` are
    /// imported at start.
    #[arg(long, default_value = "/var/lib/moor/agent")]
    pub data_dir: PathBuf,
    /// This node's pod range when its Node has no spec.podCIDR.
    #[arg(long, default_value = DEFAULT_POD_CIDR)]
    pub pod_cidr: String,
    /// The bridge pods attach to.
    #[arg(long, default_value = crate::kubelet::network::DEFAULT_BRIDGE)]
    pub bridge: String,
    /// Where the CNI plugins are (searched in order).
    #[arg(long = "cni-bin-dir", default_values = crate::kubelet::network::DEFAULT_CNI_BIN_DIRS)]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The kubelet API port (container logs); 0 picks a free one.
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
    #[arg(long, default_value_t = crate::kubelet::node::DEFAULT_DISK_AVAILABLE_MIN_PERCENT,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub disk_pressure_below: u8,
    /// Run neither the service proxy nor cluster DNS here (run `moor proxy` instead, or
    /// nothing: Services then have no cluster IPs on this machine).
    #[arg(long)]
    pub no_proxy: bool,
    #[command(flatten)]
    pub network: super::proxy::ServiceNetworkArgs,
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
    let node_name = node_name(args.node_name)?;
    let mut config = AgentConfig::new(node_name.clone(), args.data_dir);
    config.containerd_socket = args.containerd_socket;
    config.pod_cidr = args.pod_cidr;
    config.bridge = args.bridge;
    config.cni_bin_dirs = args.cni_bin_dirs;
    config.kubelet_port = args.kubelet_port;
    config.address = args.node_ip;
    config.insecure_registries = args.insecure_registries;
    config.disk_pressure_percent = args.disk_pressure_below;
    config.proxy = !args.no_proxy;
    config.service_cidr = args.network.service_cidr;
    config.cluster_dns = Some(args.network.cluster_dns());
    config.cluster_domain = args.network.cluster_domain.clone();
    config.resolv_conf = args.network.resolv_conf.clone();
    config.labels = args.node_labels.into_iter().collect::<BTreeMap<_, _>>();
    let shutdown = super::server::cancel_on_signal();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let agent = Agent::new(client, config).with_ready_signal(ready_tx);
    let announce = tokio::spawn(async move {
        if let Ok(node) = ready_rx.await {
            let cidr = node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.clone())
                .unwrap_or_else(|| "(no podCIDR)".into());
            println!("agent      node \"{node_name}\" registered  {cidr}");
        }
    });
    agent.run(shutdown).await.context("node agent")?;
    announce.abort();
    Ok(ExitCode::SUCCESS)
}

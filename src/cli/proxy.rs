//! `moor proxy`: the service proxy and cluster DNS alone, for a machine whose agent runs
//! with `--no-proxy` (the agent runs both in-process by default). Also the flags both
//! commands share for the service network.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::apiserver::services::{ServiceCidr, cluster_dns_ip};
use crate::proxy::ProxyConfig;

/// The service network as the API server allocates it, and cluster DNS.
#[derive(Debug, Args)]
pub struct ServiceNetworkArgs {
    /// The API server's --service-cluster-ip-range: cluster IPs in it are made local.
    #[arg(long, default_value = crate::proxy::DEFAULT_SERVICE_CIDR)]
    pub service_cidr: ServiceCidr,
    /// The cluster DNS address, written into pods' resolv.conf and answered on (default:
    /// the 10th address of --service-cidr, the kube-dns Service's).
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    #[command(flatten)]
    pub dns: ClusterDnsArgs,
}

/// Cluster DNS's domain and upstreams (`moor up` takes these without the range flags, which
/// it shares with the API server).
#[derive(Debug, Args)]
pub struct ClusterDnsArgs {
    /// The cluster's DNS domain.
    #[arg(long, default_value = crate::kubelet::dns::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// The host's resolv.conf: upstream resolvers for every other name.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
}

impl ServiceNetworkArgs {
    /// The cluster DNS address: as given, or the kube-dns Service's (10th of the range).
    pub fn cluster_dns(&self) -> IpAddr {
        self.cluster_dns
            .unwrap_or_else(|| IpAddr::V4(cluster_dns_ip(&self.service_cidr)))
    }
}

/// `moor proxy ...`
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Kubeconfig of the cluster.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// This machine's Node name, for Services with a Local traffic policy (default: the
    /// hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Addresses NodePorts listen on, repeatable (default: 127.0.0.1 and this machine's
    /// first non-loopback IPv4).
    #[arg(long = "nodeport-address")]
    pub nodeport_addresses: Vec<IpAddr>,
    /// Run only the proxy, without the cluster DNS server.
    #[arg(long)]
    pub no_dns: bool,
    #[command(flatten)]
    pub network: ServiceNetworkArgs,
}

/// Run `moor proxy` until SIGINT or SIGTERM; every address and socket it made is released.
pub async fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let client = super::diff::connect(args.kubeconfig.clone()).await?;
    let node_name = super::agent::node_name(args.node_name)?;
    let mut node_addresses = args.nodeport_addresses;
    if node_addresses.is_empty() {
        node_addresses.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let host = crate::kubelet::node::default_address();
        if !host.is_loopback() {
            node_addresses.push(host);
        }
    }
    let mut config = ProxyConfig::new(node_name, node_addresses);
    config.service_cidrs = vec![args.network.service_cidr];
    let dns_ip = args.network.cluster_dns();
    let dns = (!args.no_dns).then(|| {
        crate::proxy::cluster_dns(
            &mut config,
            dns_ip,
            &args.network.dns.cluster_domain,
            &args.network.dns.resolv_conf,
        )
    });
    println!(
        "proxy+dns  {}  dns {}",
        args.network.service_cidr,
        if dns.is_some() {
            dns_ip.to_string()
        } else {
            "off".into()
        }
    );
    let shutdown = super::server::cancel_on_signal();
    crate::proxy::run_with_dns(client, config, dns, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

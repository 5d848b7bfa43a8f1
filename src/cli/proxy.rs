//! `moor proxy`: the service proxy and cluster DNS alone, for a machine whose agent runs
//! with `--no-proxy` (the agent runs both in-process by default). Also the flags both
//! commands share for the service network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::apiserver::services::{ServiceCidr, cluster_dns_ip};
use crate::dns::{DnsConfig, DnsServer};
use crate::proxy::model::ServiceName;
use crate::proxy::{Proxy, ProxyConfig};

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
    let node_name = match args.node_name {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .context("reading the hostname for the node name (or pass --node-name)")?
            .to_string_lossy()
            .to_lowercase(),
    };
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
    let shutdown = super::server::cancel_on_signal();
    let dns = (!args.no_dns).then(|| {
        config
            .local_services
            .push(ServiceName::new("kube-system", "kube-dns"));
        let mut dns = DnsConfig::new(vec![SocketAddr::new(args.network.cluster_dns(), 53)]);
        dns.cluster_domain = args.network.cluster_domain.clone();
        dns.resolv_conf = args.network.resolv_conf.clone();
        DnsServer::new(client.clone(), dns)
    });
    println!(
        "proxy+dns  {}  dns {}",
        args.network.service_cidr,
        if dns.is_some() {
            args.network.cluster_dns().to_string()
        } else {
            "off".into()
        }
    );
    let proxy = Proxy::new(client, config).run(shutdown.clone());
    let dns = async {
        match dns {
            Some(server) => server.run(shutdown.clone()).await.context("cluster DNS"),
            None => Ok(()),
        }
    };
    let (proxy, dns) = tokio::join!(
        async {
            let r = proxy.await.context("service proxy");
            shutdown.cancel();
            r
        },
        dns
    );
    proxy?;
    dns?;
    Ok(ExitCode::SUCCESS)
}

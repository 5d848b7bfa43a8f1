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
    #[arg(long, env = "KUBECONFIG", conflicts_with = "token")]
    pub kubeconfig: Option<PathBuf>,
    /// Join with this bootstrap token (`moor token create`): the agent obtains its own
    /// client certificate, for `system:node:NAME`, and keeps it in a kubeconfig in its
    /// data dir (later starts use that and need no token).
    #[arg(long, env = "MOOR_TOKEN", requires_all = ["server", "certificate_authority"])]
    pub token: Option<String>,
    /// The API server to join with --token, e.g. https://10.0.0.1:6443.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The cluster CA to trust when joining (the server's DATA_DIR/pki/ca.crt).
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,
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
    let kubeconfig = match &args.token {
        Some(token) => Some(join(&args, token).await?),
        None => args.kubeconfig.clone(),
    };
    let client = super::diff::connect(kubeconfig).await?;
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

/// The agent's own kubeconfig in its data dir, written when it joins.
pub const AGENT_KUBECONFIG: &str = "kubeconfig.yaml";
/// A node certificate this close to expiry is renewed at start.
const RENEW_BEFORE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Join the cluster with a bootstrap token: unless the data dir already holds a node
/// kubeconfig for this server whose certificate is not about to expire, send a
/// certificate signing request for `system:node:NAME` with the token, and write the
/// kubeconfig with the certificate it returns. Returns the kubeconfig's path.
async fn join(args: &AgentArgs, token: &str) -> anyhow::Result<PathBuf> {
    use base64::Engine;
    let node = node_name(args.node.node_name.clone())?;
    let server = args.server.clone().context("--token needs --server")?;
    let ca_path = args
        .certificate_authority
        .clone()
        .context("--token needs --certificate-authority")?;
    let ca_pem = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("reading --certificate-authority {}", ca_path.display()))?;
    let path = args.data_dir.join(AGENT_KUBECONFIG);
    if let Some(expires) = existing_credential(&path, &server, &node) {
        let left = expires.duration_since(jiff::Timestamp::now());
        if left.as_secs() > i64::try_from(RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX) {
            println!(
                "join       node \"{node}\": using its certificate in {} (valid until {expires})",
                path.display()
            );
            return Ok(path);
        }
    }
    let (csr, key_pem) = crate::auth::pki::node_csr(&node).context("creating the CSR")?;
    let ca_der = crate::auth::pki::first_pem_der(&ca_pem)
        .with_context(|| format!("--certificate-authority {}", ca_path.display()))?;
    let mut config = kube::Config::new(
        server
            .parse()
            .with_context(|| format!("--server {server:?} is not a URL"))?,
    );
    config.root_cert = Some(vec![ca_der]);
    config.auth_info.token = Some(token.to_owned().into());
    let client = kube::Client::try_from(config).context("creating the join client")?;
    let body = serde_json::to_vec(&serde_json::json!({"csr": csr}))?;
    let request = http_request(crate::auth::NODE_CERTIFICATE_PATH, body)?;
    let answer: serde_json::Value = client
        .request(request)
        .await
        .with_context(|| format!("joining {server} as node {node:?} with the bootstrap token"))?;
    let certificate = answer["certificate"]
        .as_str()
        .context("the server's answer has no certificate")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    super::server::write_kubeconfig_for(
        &path,
        &server,
        Some(&ca_pem),
        &format!("{}{node}", crate::auth::NODE_USER_PREFIX),
        serde_json::json!({
            "client-certificate-data": b64(certificate),
            "client-key-data": b64(&key_pem),
        }),
    )?;
    println!(
        "join       node \"{node}\" joined {server}: its credential is in {}",
        path.display()
    );
    Ok(path)
}

fn http_request(path: &str, body: Vec<u8>) -> anyhow::Result<axum::http::Request<Vec<u8>>> {
    axum::http::Request::post(path)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .context("building the join request")
}

/// When the node certificate in the kubeconfig at `path` expires, if it is one for `node`
/// on `server`.
fn existing_credential(
    path: &std::path::Path,
    server: &str,
    node: &str,
) -> Option<jiff::Timestamp> {
    use base64::Engine;
    let config = kube::config::Kubeconfig::read_from(path).ok()?;
    let cluster = config.clusters.first()?.cluster.as_ref()?;
    if cluster.server.as_deref() != Some(server) {
        return None;
    }
    let user = config.auth_infos.first()?;
    if user.name != format!("{}{node}", crate::auth::NODE_USER_PREFIX) {
        return None;
    }
    let data = user.auth_info.as_ref()?.client_certificate_data.as_ref()?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    crate::auth::pki::not_after(std::str::from_utf8(&pem).ok()?).ok()
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

//! `moor controller-manager`: the controllers alone, against any API server a kubeconfig
//! names, leader-elected so several can run side by side. The same flags configure the
//! controllers `moor server` runs in-process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::parse_duration;
use crate::controllers::leader::LeaderConfig;
use crate::controllers::node_ipam::{IpamConfig, Ipv4Cidr};
use crate::controllers::{CONTROLLERS, ControllerManager, Options};

/// Leader-election flags, shared by every leader-elected component (`moor server` applies
/// them to its controllers, scheduler and GitOps sources alike).
#[derive(Clone, Debug, Args)]
pub struct LeaderElectionArgs {
    /// Elect a leader through a Lease so only one of several instances acts.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a leader's lease is valid after its last renewal.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// This candidate's identity; a unique one per start when None.
    #[arg(skip)]
    pub identity: Option<String>,
}

impl LeaderElectionArgs {
    /// The election on the Lease `kube-system/{lease}`, or `None` with `--leader-elect=false`.
    pub fn config(&self, lease: &str) -> anyhow::Result<Option<LeaderConfig>> {
        if !self.leader_elect {
            return Ok(None);
        }
        if self.leader_elect_renew_deadline >= self.leader_elect_lease_duration {
            anyhow::bail!(
                "--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"
            );
        }
        let mut config = LeaderConfig::new(lease);
        if let Some(identity) = &self.identity {
            config.identity.clone_from(identity);
        }
        config.lease_duration = self.leader_elect_lease_duration;
        config.renew_deadline = self.leader_elect_renew_deadline;
        config.retry_period = self.leader_elect_retry_period;
        Ok(Some(config))
    }

    /// How `moor` reports the election on `lease` at start-up.
    pub fn describe(&self, lease: &str) -> String {
        if self.leader_elect {
            format!("leader-elected (Lease kube-system/{lease})")
        } else {
            "no leader election".to_owned()
        }
    }
}

/// Flags shared by `moor controller-manager` and `moor server`.
#[derive(Clone, Debug, Args)]
pub struct ControllerArgs {
    /// Run only these controllers (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    pub controllers: Vec<String>,
    /// How long a node may miss heartbeats before it is marked unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How long pods on an unreachable node stay before eviction (for pods without their own
    /// toleration of the unreachable taint).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub pod_eviction_timeout: Duration,
    /// The range pod addresses come from; each node gets a --node-cidr-mask-size slice.
    #[arg(long, default_value = crate::controllers::node_ipam::DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: Ipv4Cidr,
    /// The prefix length of each node's pod range (spec.podCIDR).
    #[arg(long, default_value_t = crate::controllers::node_ipam::DEFAULT_NODE_MASK)]
    pub node_cidr_mask_size: u8,
}

/// The Lease the controller managers elect a leader on.
pub const LEASE_NAME: &str = "moor-controller-manager";

impl ControllerArgs {
    /// The manager these flags describe, using `client` and keeping keys in `data_dir`.
    pub fn manager(
        &self,
        client: kube::Client,
        data_dir: PathBuf,
        leader: &LeaderElectionArgs,
    ) -> anyhow::Result<ControllerManager> {
        for name in &self.controllers {
            if !CONTROLLERS.iter().any(|(known, _)| known == name) {
                let known: Vec<&str> = CONTROLLERS.iter().map(|(n, _)| *n).collect();
                anyhow::bail!(
                    "--controllers: unknown controller {name:?} (known: {})",
                    known.join(", ")
                );
            }
        }
        let heartbeat = crate::kubelet::node::DEFAULT_LEASE_RENEW;
        if self.node_monitor_grace_period < 2 * heartbeat {
            tracing::warn!(
                "--node-monitor-grace-period {:?} is shorter than two node heartbeats ({:?} each): healthy nodes will be marked unreachable between heartbeats",
                self.node_monitor_grace_period,
                heartbeat
            );
        }
        let ipam = IpamConfig::new(self.cluster_cidr, self.node_cidr_mask_size)
            .map_err(|e| anyhow::anyhow!("--cluster-cidr, --node-cidr-mask-size: {e}"))?;
        let mut manager = ControllerManager::new(client)
            .with_options(Options {
                node_monitor_grace: self.node_monitor_grace_period,
                pod_eviction_timeout: self.pod_eviction_timeout,
                data_dir,
            })
            .with_node_ipam(ipam);
        if !self.controllers.is_empty() {
            manager = manager.with_controllers(self.controllers.clone());
        }
        if let Some(config) = leader.config(LEASE_NAME)? {
            manager = manager.with_leader_election(config);
        }
        Ok(manager)
    }
}

/// `moor controller-manager ...`
#[derive(Debug, Args)]
pub struct ControllerManagerArgs {
    /// Kubeconfig of the cluster (moor server writes one to its data dir).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Where keys (the service-account token signing key) are kept.
    #[arg(long, env = "MOOR_DATA_DIR", default_value = super::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub controllers: ControllerArgs,
    #[command(flatten)]
    pub leader: LeaderElectionArgs,
}

/// Run `moor controller-manager` until SIGINT or SIGTERM.
pub async fn run(args: ControllerManagerArgs) -> anyhow::Result<ExitCode> {
    let client = super::diff::connect(args.kubeconfig.clone()).await?;
    let manager = args
        .controllers
        .manager(client, args.data_dir.clone(), &args.leader)?;
    let shutdown = super::server::cancel_on_signal();
    println!(
        "controllers {}  {}",
        if args.controllers.controllers.is_empty() {
            CONTROLLERS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            args.controllers.controllers.join(" ")
        },
        args.leader.describe(LEASE_NAME)
    );
    manager.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

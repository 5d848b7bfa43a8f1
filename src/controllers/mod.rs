//! The controller manager: the controllers that turn desired state into pods and keep the
//! cluster's bookkeeping right, written as controllers are written for Kubernetes — on
//! kube-runtime (watchers, reflectors, level-triggered reconcilers) against the API, never
//! the store, so they run the same in `moor server` and as `moor controller-manager`.
//!
//! When several managers run against one store, only the holder of a Lease acts
//! ([`leader`]). Each controller lives in its own file and exposes
//! `run(ctx, shutdown)`; [`CONTROLLERS`] lists them.

pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod garbage_collector;
pub mod leader;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod replicaset;
pub mod serviceaccount;
pub mod util;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use leader::LeaderConfig;

/// A failed API request and what was being done: what a reconcile returns (and is retried
/// for).
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct ApiError {
    /// What was being done.
    pub action: String,
    /// The error.
    #[source]
    pub source: kube::Error,
}

/// Name what failed: `.map_err(api_error("creating pod web-1"))`.
pub fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ApiError {
    let action = action.into();
    move |source| ApiError { action, source }
}

/// What every controller gets.
pub struct Context {
    /// The API.
    pub client: Client,
    /// Tunables.
    pub options: Options,
    /// The node IPAM controller's ranges (`--cluster-cidr`, `--node-cidr-mask-size`).
    pub node_ipam: node_ipam::IpamConfig,
}

impl Context {
    /// An event recorder for `component` (e.g. `replicaset-controller`).
    pub fn recorder(&self, component: &str) -> events::Recorder {
        events::Recorder::new(self.client.clone(), component)
    }
}

/// Tunables shared by the controllers (flags of `moor controller-manager`).
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a node may miss heartbeats before it is marked unreachable (40 s).
    pub node_monitor_grace: Duration,
    /// How long pods on an unreachable node tolerate it by default before eviction (300 s).
    pub pod_eviction_timeout: Duration,
    /// Where keys (the service-account token signing key) are kept.
    pub data_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_monitor_grace: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
            data_dir: PathBuf::from(crate::cli::DEFAULT_DATA_DIR),
        }
    }
}

/// A controller's entry point.
pub type RunFn = fn(Arc<Context>, CancellationToken) -> BoxFuture<'static, ()>;

/// Every controller, by the name `--controllers` uses.
pub const CONTROLLERS: &[(&str, RunFn)] = &[
    ("replicaset", |ctx, shutdown| {
        Box::pin(replicaset::run(ctx, shutdown))
    }),
    ("deployment", |ctx, shutdown| {
        Box::pin(deployment::run(ctx, shutdown))
    }),
    ("endpoints", |ctx, shutdown| {
        Box::pin(endpoints::run(ctx, shutdown))
    }),
    ("endpointslice", |ctx, shutdown| {
        Box::pin(endpointslice::run(ctx, shutdown))
    }),
    ("garbagecollector", |ctx, shutdown| {
        Box::pin(garbage_collector::run(ctx, shutdown))
    }),
    ("namespace", |ctx, shutdown| {
        Box::pin(namespace::run(ctx, shutdown))
    }),
    ("serviceaccount", |ctx, shutdown| {
        Box::pin(serviceaccount::run(ctx, shutdown))
    }),
    ("nodelifecycle", |ctx, shutdown| {
        Box::pin(node_lifecycle::run(ctx, shutdown))
    }),
    ("nodeipam", |ctx, shutdown| {
        Box::pin(node_ipam::run(ctx, shutdown))
    }),
];

/// Runs the controllers, under leader election when configured.
pub struct ControllerManager {
    client: Client,
    options: Options,
    leader: Option<LeaderConfig>,
    enabled: Option<Vec<String>>,
    node_ipam: node_ipam::IpamConfig,
}

impl ControllerManager {
    /// Every controller, no leader election.
    pub fn new(client: Client) -> Self {
        ControllerManager {
            client,
            options: Options::default(),
            leader: None,
            enabled: None,
            node_ipam: node_ipam::IpamConfig::default(),
        }
    }

    /// Tunables.
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The ranges the node IPAM controller hands out (default 10.42.0.0/16 in /24s).
    pub fn with_node_ipam(mut self, config: node_ipam::IpamConfig) -> Self {
        self.node_ipam = config;
        self
    }

    /// Act only while holding this Lease.
    pub fn with_leader_election(mut self, config: LeaderConfig) -> Self {
        self.leader = Some(config);
        self
    }

    /// Run only these controllers (names from [`CONTROLLERS`]).
    pub fn with_controllers(mut self, names: Vec<String>) -> Self {
        self.enabled = Some(names);
        self
    }

    /// Run until `shutdown` fires. With leader election, the controllers run only while
    /// this instance leads; a lost lease stops them and the instance campaigns again.
    pub async fn run(self, shutdown: CancellationToken) {
        let ctx = Arc::new(Context {
            client: self.client.clone(),
            options: self.options.clone(),
            node_ipam: self.node_ipam,
        });
        let Some(config) = self.leader.clone() else {
            self.run_controllers(ctx, shutdown).await;
            return;
        };
        let selected = self.selected();
        leader::run_while_leader(self.client.clone(), config, shutdown, move |term| {
            run_all(selected.clone(), ctx.clone(), term)
        })
        .await;
    }

    fn selected(&self) -> Vec<(&'static str, RunFn)> {
        CONTROLLERS
            .iter()
            .filter(|(name, _)| {
                self.enabled
                    .as_ref()
                    .is_none_or(|enabled| enabled.iter().any(|e| e == name))
            })
            .copied()
            .collect()
    }

    async fn run_controllers(&self, ctx: Arc<Context>, shutdown: CancellationToken) {
        run_all(self.selected(), ctx, shutdown).await;
    }
}

/// How long a controller may take to finish its reconciles in flight once told to stop.
const STOP_GRACE: Duration = Duration::from_secs(3);

async fn run_all(
    selected: Vec<(&'static str, RunFn)>,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let tasks = TaskTracker::new();
    let names: Vec<&str> = selected.iter().map(|(name, _)| *name).collect();
    tracing::info!(controllers = ?names, "controllers starting");
    for (name, run) in selected {
        let run = run(ctx.clone(), shutdown.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let mut run = std::pin::pin!(run);
            tokio::select! {
                () = &mut run => {}
                () = stop.cancelled() => {
                    // Reconciles in flight get a grace period to finish. A kube-runtime
                    // Controller told to stop before its first list completed never ends
                    // (its runner waits for a cache that will now never be filled), so
                    // it is dropped after the grace period rather than waited for.
                    if tokio::time::timeout(STOP_GRACE, &mut run).await.is_err() {
                        tracing::debug!(controller = name, "did not stop within {STOP_GRACE:?}; dropped");
                    }
                }
            }
            tracing::debug!(controller = name, "controller stopped");
        });
    }
    tasks.close();
    tasks.wait().await;
    tracing::info!("controllers stopped");
}

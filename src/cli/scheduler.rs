//! `moor scheduler`: the scheduler alone, against any API server a kubeconfig names,
//! leader-elected so several can run side by side. The same flags configure the scheduler
//! `moor server` runs in-process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::controller_manager::LeaderElectionArgs;
use crate::scheduler::framework::NodeSampling;
use crate::scheduler::{DEFAULT_SCHEDULER_NAME, LEASE_NAME, Scheduler};

/// Flags shared by `moor scheduler` and `moor server`.
#[derive(Clone, Debug, Args)]
pub struct SchedulerArgs {
    /// Place pods whose spec.schedulerName is this.
    #[arg(long, default_value = DEFAULT_SCHEDULER_NAME)]
    pub scheduler_name: String,
    /// Share of the nodes each decision looks at once enough fit (at least 100): 0 is
    /// upstream's adaptive default (every node below 100, then 50% down to 5% from 5,625
    /// nodes); 100 looks at every node every time.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub percentage_of_nodes_to_score: u32,
}

impl SchedulerArgs {
    /// The scheduler these flags describe.
    pub fn scheduler(
        &self,
        client: kube::Client,
        leader: &LeaderElectionArgs,
    ) -> anyhow::Result<Scheduler> {
        let sampling = match self.percentage_of_nodes_to_score {
            0 => NodeSampling::Adaptive,
            100 => NodeSampling::All,
            p => NodeSampling::Percentage(p),
        };
        let mut scheduler = Scheduler::new(client)
            .with_name(self.scheduler_name.clone())
            .with_sampling(sampling);
        if let Some(config) = leader.config(LEASE_NAME)? {
            scheduler = scheduler.with_leader_election(config);
        }
        Ok(scheduler)
    }
}

/// `moor scheduler ...`
#[derive(Debug, Args)]
pub struct SchedulerCommandArgs {
    /// Kubeconfig of the cluster (moor server writes one to its data dir).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    #[command(flatten)]
    pub leader: LeaderElectionArgs,
}

/// Run `moor scheduler` until SIGINT or SIGTERM.
pub async fn run(args: SchedulerCommandArgs) -> anyhow::Result<ExitCode> {
    let client = super::diff::connect(args.kubeconfig.clone()).await?;
    let scheduler = args.scheduler.scheduler(client, &args.leader)?;
    let shutdown = super::server::cancel_on_signal();
    println!(
        "scheduler  {}  {}",
        args.scheduler.scheduler_name,
        args.leader.describe(LEASE_NAME)
    );
    scheduler.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

//! `moor down`: stop what `moor up` leaves running on purpose. Containers outlive `moor up`
//! (so a restart adopts them instead of starting them again), and so do their pod networks
//! and, after a crash, the Services' addresses. This removes the containers, tears their
//! networks down through CNI, deletes the pods' bridge, releases the Service addresses and
//! stops the private containerd. The cluster's state stays in the data dir: the next
//! `moor up` starts the pods again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::apiserver::services::ServiceCidr;
use crate::kubelet::containerd::Containerd;
use crate::kubelet::containerd_daemon::ContainerdDaemon;
use crate::kubelet::network::{Network, NetworkConfig, delete_bridge};
use crate::kubelet::runtime::Runtime;
use crate::proxy::addresses::{DEFAULT_DUMMY_INTERFACE, LocalAddresses};

/// What `moor up` ran with that `moor down` needs to find its pieces, kept in the data dir.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct UpState {
    /// containerd's socket when it is the user's (`--containerd-socket`); None for the
    /// private one under `<data dir>/containerd`.
    pub containerd_socket: Option<PathBuf>,
    pub bridge: String,
    pub pod_cidr: String,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub service_cidr: String,
}

const STATE_FILE: &str = "up.json";
/// Held (an OS advisory lock) by `moor up` while it runs.
const LOCK_FILE: &str = "up.lock";

impl UpState {
    /// Record the state in `data_dir` (atomically: a crash leaves the old file or the new,
    /// never a half-written one).
    pub(super) fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let path = data_dir.join(STATE_FILE);
        let tmp = data_dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self)?;
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    fn read(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(STATE_FILE);
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "{}: no `moor up` has run on this data dir (pass --data-dir)",
                path.display()
            )
        })?;
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
    }
}

/// Take the lock `moor up` holds while it runs on `data_dir`; fails naming the data dir
/// when another `moor up` holds it.
pub(super) fn lock(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "moor up is running on {}: stop it first (Ctrl-C, or SIGTERM)",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// `moor down ...`
#[derive(Debug, Args)]
pub struct DownArgs {
    /// The data dir `moor up` ran on.
    #[arg(long, env = "MOOR_DATA_DIR", default_value = super::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

/// Run `moor down`.
pub async fn run(args: DownArgs) -> anyhow::Result<ExitCode> {
    let data_dir = &args.data_dir;
    let state = UpState::read(data_dir)?;
    let _lock = lock(data_dir)?;

    let private = state.containerd_socket.is_none();
    let daemon = ContainerdDaemon::new(data_dir.join("containerd"));
    let (socket, running) = match &state.containerd_socket {
        Some(socket) => (socket.clone(), None),
        None => {
            // The containers' state is in the private containerd: start it to remove them.
            let running = daemon.start().await.context("starting containerd")?;
            (daemon.socket(), Some(running))
        }
    };
    let containerd = Containerd::connect(&socket).await?;
    let runtime = Runtime::new(containerd);
    let containers = runtime.list().await.context("listing containers")?;
    for container in &containers {
        runtime
            .remove(&container.id)
            .await
            .with_context(|| format!("removing container {}", container.id))?;
    }
    println!("containers {} removed", containers.len());

    let network = Network::new(
        NetworkConfig::new(
            state.pod_cidr.clone(),
            data_dir.join("agent").join("network"),
        )
        .with_bridge(state.bridge.clone())
        .with_cni_bin_dirs(state.cni_bin_dirs.clone()),
    )?;
    let pods = network.pods().await?;
    for uid in &pods {
        network
            .teardown(uid)
            .await
            .with_context(|| format!("tearing down the network of pod {uid}"))?;
    }
    network.release_netns_dir()?;
    let bridge = if delete_bridge(&state.bridge).await? {
        format!("bridge {} deleted", state.bridge)
    } else {
        format!("no bridge {}", state.bridge)
    };
    println!("network    {} pod networks torn down, {bridge}", pods.len());

    let cidr: ServiceCidr = state
        .service_cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("{STATE_FILE}: service_cidr: {e}"))?;
    let addresses = LocalAddresses::open(DEFAULT_DUMMY_INTERFACE, vec![cidr]).await?;
    let held = addresses.list().await?.len();
    addresses.clear().await?;
    println!("services   {held} addresses in {cidr} released");

    if let Some(running) = running {
        let stopped = running.pid().is_some();
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        daemon.supervise(running, token).await;
        println!(
            "containerd {}",
            if stopped {
                "stopped"
            } else {
                "was already running outside moor up; left running"
            }
        );
    } else if !private {
        println!("containerd {} (yours) left running", socket.display());
    }
    println!(
        "down; the cluster's state is kept in {}",
        data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

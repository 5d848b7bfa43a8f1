//! `moor up`: the whole cluster on this machine in one process, k3s-style — the store, the
//! API server, controllers, scheduler and GitOps source (as `moor server`), a private
//! containerd it supervises (unless `--containerd-socket` names one), and the node agent
//! with the service proxy and cluster DNS. Every in-process component reaches the API
//! through the API server's in-process client, the same code a remote one runs.
//!
//! Stopping (Ctrl-C, SIGTERM) goes in the reverse order of the data flow: the agent first,
//! then the control plane, then containerd. Containers keep running through a stop, as
//! with k3s: the next `moor up` on the same data dir adopts them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::agent::{NodeArgs, run_agent};
use super::proxy::ClusterDnsArgs;
use super::server::{ControlPlane, ServerArgs, on_signal};
use crate::apiserver::services::cluster_dns_ip;
use crate::kubelet::Agent;
use crate::kubelet::containerd_daemon::ContainerdDaemon;

/// How long the GitOps sources wait for this machine's node before syncing anyway.
const NODE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `moor up ...`
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Use the containerd answering on this socket instead of starting a private one
    /// under `<data dir>/containerd`.
    #[arg(long, value_name = "PATH")]
    containerd_socket: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    dns: ClusterDnsArgs,
}

/// Run `moor up` until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let signalled = on_signal();
    check_prerequisites(&args)?;
    let data_dir = args.server.backend.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    // One moor up per data dir; `moor down` takes the same lock.
    let _lock = super::down::lock(&data_dir)?;
    super::down::UpState {
        containerd_socket: args.containerd_socket.clone(),
        bridge: args.node.bridge.clone(),
        pod_cidr: args.node.pod_cidr.clone(),
        cni_bin_dirs: args.node.cni_bin_dirs.clone(),
        service_cidr: args.server.service_cluster_ip_range.to_string(),
    }
    .write(&data_dir)?;

    // containerd starts while the control plane comes up; only the agent waits for it.
    let daemon = args
        .containerd_socket
        .is_none()
        .then(|| ContainerdDaemon::new(data_dir.join("containerd")));
    let starting = daemon.clone().map(|daemon| {
        tokio::spawn(async move {
            let running = daemon.start().await;
            (daemon, running)
        })
    });

    // The agent's configuration before anything runs, so a bad flag stops nothing half-way.
    let socket = daemon
        .as_ref()
        .map(ContainerdDaemon::socket)
        .or_else(|| args.containerd_socket.clone())
        .unwrap_or_default();
    let mut config = args.node.config(data_dir.join("agent"), socket.clone())?;
    config.service_cidr = args.server.service_cluster_ip_range;
    config.cluster_dns = Some(std::net::IpAddr::V4(cluster_dns_ip(&config.service_cidr)));
    config.cluster_domain.clone_from(&args.dns.cluster_domain);
    config.resolv_conf.clone_from(&args.dns.resolv_conf);

    // Each stage stops only once the one after it in the data flow has stopped.
    let stop_agent = CancellationToken::new();
    let stop_plane = CancellationToken::new();
    let stop_containerd = CancellationToken::new();
    // The sources wait for this node (or for the agent to fail, or 30 s at most).
    let (registered_tx, registered_rx) = tokio::sync::oneshot::channel::<()>();
    let gate = Box::pin(async move {
        let _ = tokio::time::timeout(NODE_WAIT, registered_rx).await;
    });
    let plane = ControlPlane::start(&args.server, stop_plane.clone(), started, Some(gate)).await?;
    let client = plane.client();
    let mut serving = tokio::spawn(plane.serve());

    let supervisor = match starting {
        Some(task) => {
            let started_containerd = match task.await {
                Ok((daemon, Ok(running))) => Ok((daemon, running)),
                Ok((_, Err(e))) => Err(anyhow::Error::new(e)),
                Err(e) => Err(anyhow::Error::new(e)),
            };
            let (daemon, running) = match started_containerd {
                Ok(started) => started,
                Err(e) => {
                    // Stop the control plane cleanly before reporting.
                    stop_plane.cancel();
                    let _ = serving.await;
                    return Err(e.context("starting containerd"));
                }
            };
            println!(
                "containerd {}  {}  version {}  log {}  ready {} ms",
                running
                    .pid()
                    .map_or_else(|| "already running".to_owned(), |p| format!("pid {p}")),
                daemon.socket().display(),
                running.version(),
                daemon.log_path().display(),
                started.elapsed().as_millis()
            );
            Some(tokio::spawn(
                daemon.supervise(running, stop_containerd.clone()),
            ))
        }
        None => {
            println!("containerd {} (not supervised by moor)", socket.display());
            None
        }
    };

    let signal = stop_agent.clone();
    tokio::spawn(async move {
        signalled.await;
        let again = on_signal();
        eprintln!("stopping (again to exit at once)");
        signal.cancel();
        again.await;
        eprintln!("exiting without a graceful stop");
        std::process::exit(130);
    });

    tokio::spawn(super::trim_heap_periodically(stop_agent.clone()));
    let agent = Agent::new(client, config.clone());
    let mut agent_run = std::pin::pin!(run_agent(
        agent,
        &config,
        stop_agent.clone(),
        started,
        Some(registered_tx),
    ));
    enum First {
        Agent(anyhow::Result<()>),
        Plane(Result<anyhow::Result<()>, tokio::task::JoinError>),
    }
    let first = tokio::select! {
        result = &mut agent_run => First::Agent(result),
        served = &mut serving => First::Plane(served),
    };
    let failure = match first {
        First::Agent(result) => result.err(),
        First::Plane(served) => {
            // The API server failed under the agent: stop the agent cleanly all the same.
            stop_agent.cancel();
            let _ = agent_run.await;
            Some(match served {
                Ok(Err(e)) => e.context("the API server stopped"),
                Ok(Ok(())) => anyhow::anyhow!("the API server stopped"),
                Err(e) => anyhow::anyhow!("the API server panicked: {e}"),
            })
        }
    };
    stop_plane.cancel();
    if !serving.is_finished() {
        match serving.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "stopping the control plane"),
            Err(e) => tracing::warn!(error = %e, "the control plane panicked"),
            Ok(Ok(())) => {}
        }
    }
    stop_containerd.cancel();
    if let Some(supervisor) = supervisor {
        let _ = supervisor.await;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    println!(
        "stopped; containers keep running and the next `moor up` adopts them (`moor down` stops them)"
    );
    Ok(ExitCode::SUCCESS)
}

/// Everything `moor up` needs from the machine, checked before anything starts so a
/// newcomer gets one message naming every missing piece and how to install it.
fn check_prerequisites(args: &UpArgs) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut packages = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "moor up runs containers and pod networks, which needs root: run it as root (e.g. sudo moor up ...)"
        );
    }
    if args.containerd_socket.is_none() {
        for (binary, package) in [("containerd", "containerd"), ("runc", "runc")] {
            if which(binary).is_none() {
                missing.push(format!("{binary} (not on PATH)"));
                packages.push(package);
            }
        }
    } else if let Some(socket) = &args.containerd_socket
        && !socket.exists()
    {
        missing.push(format!(
            "containerd's socket {} (no such file: is containerd running?)",
            socket.display()
        ));
    }
    if which("iptables").is_none() {
        missing.push("iptables (not on PATH; pod networks masquerade through it)".to_owned());
        packages.push("iptables");
    }
    let plugins = crate::kubelet::network::missing_plugins(&args.node.cni_bin_dirs);
    if !plugins.is_empty() {
        let dirs: Vec<String> = args
            .node
            .cni_bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        missing.push(format!(
            "the CNI plugins {} (looked in {})",
            plugins.join(", "),
            dirs.join(", ")
        ));
        packages.push("containernetworking-plugins");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let install = if packages.is_empty() {
        String::new()
    } else {
        format!(
            "\n  install with: apt-get install {}   (or run scripts/setup from moor's repository)",
            packages.join(" ")
        )
    };
    anyhow::bail!(
        "moor up cannot start; missing:\n  - {}{install}",
        missing.join("\n  - ")
    )
}

/// The first executable file named `binary` on PATH.
fn which(binary: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which("sh").is_some());
        assert!(which("no-such-binary-moor-test").is_none());
    }
}

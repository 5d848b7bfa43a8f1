//! The `moor` command line: one file per subcommand.

pub mod agent;
pub mod apply;
pub mod controller_manager;
pub mod diff;
pub mod down;
pub mod images;
pub mod proxy;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod token;
pub mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::store::etcd::{EtcdConfig, EtcdStore};

/// Where moor keeps its state unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/moor";

/// moor: a Kubernetes-compatible control plane in one binary, with GitOps built in.
#[derive(Debug, Parser)]
#[command(name = "moor", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `moor=debug`.
    #[arg(long, global = true, env = "MOOR_LOG", default_value = "info")]
    pub log: String,
    /// Log lines as readable text, or as JSON objects (one per line) for machines.
    #[arg(long, global = true, env = "MOOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole cluster on this machine: store, API server, controllers, scheduler,
    /// GitOps, a private containerd, the node agent, the service proxy and DNS.
    Up(Box<up::UpArgs>),
    /// Stop what `moor up` leaves running: the pods' containers and networks, the Services'
    /// addresses and its containerd. The cluster's state stays in the data dir.
    Down(down::DownArgs),
    /// Run the API server over the store (embedded, or etcd with --etcd-endpoints).
    Server(Box<server::ServerArgs>),
    /// Inspect, back up and restore the cluster store.
    Store(store::StoreArgs),
    /// Show what applying a folder or git revision would change (exit 0: nothing, 1: changes,
    /// 2: error).
    Diff(diff::DiffArgs),
    /// Apply a folder or git revision once, with the semantics of a ManifestSource.
    Apply(apply::ApplyArgs),
    /// Run the controllers alone against an API server (leader-elected).
    ControllerManager(controller_manager::ControllerManagerArgs),
    /// Run the scheduler alone against an API server (leader-elected).
    Scheduler(scheduler::SchedulerCommandArgs),
    /// Import, pull and list the node agent's container images (containerd namespace moor).
    Images(images::ImagesArgs),
    /// Run the node agent: register this machine as a Node and run its pods through
    /// containerd.
    Agent(agent::AgentArgs),
    /// Run the service proxy and cluster DNS alone (the agent runs both unless --no-proxy).
    Proxy(proxy::ProxyArgs),
    /// Create, list and delete bootstrap tokens, with which `moor agent --token` joins.
    Token(token::TokenArgs),
    /// (internal) Write a container's output to FILE: run by containerd's shim as the
    /// container's logging process.
    #[command(hide = true)]
    ContainerLog { file: PathBuf },
}

/// Run a parsed command line; the returned code is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::ContainerLog { file } = cli.command {
        // Before tracing and the async runtime: this process only copies bytes.
        crate::kubelet::logs::run_driver(file);
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter(&cli.log)?)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(*args).await,
            Command::Down(args) => down::run(args).await,
            Command::Server(args) => server::run(*args).await,
            Command::Store(args) => store::run(args).await,
            Command::Diff(args) => diff::run(args).await,
            Command::Apply(args) => apply::run(args).await,
            Command::ControllerManager(args) => controller_manager::run(args).await,
            Command::Scheduler(args) => scheduler::run(args).await,
            Command::Images(args) => images::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Proxy(args) => proxy::run(args).await,
            Command::Token(args) => token::run(args).await,
            Command::ContainerLog { .. } => {
                anyhow::bail!("container-log runs before the async runtime starts")
            }
        }
    })
}

/// The log filter from `--log`; hickory's server logs every DNS query at info, so it is
/// held to warnings unless the filter names it.
fn log_filter(spec: &str) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    let filter = tracing_subscriber::EnvFilter::try_new(spec)?;
    Ok(if spec.contains("hickory") {
        filter
    } else {
        filter.add_directive("hickory_server=warn".parse()?)
    })
}

/// How long after start the first heap trim runs (the start-up burst is over by then),
/// and how often after that.
const TRIM_FIRST: Duration = Duration::from_secs(5);
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Give freed heap memory back to the kernel now and then, as Go's scavenger does for Go
/// programs: glibc keeps in its arenas what a burst (start-up, a large list, an image
/// import) allocated and freed, and it stays resident long after. Runs until `shutdown`.
pub async fn trim_heap_periodically(shutdown: tokio_util::sync::CancellationToken) {
    let mut wait = TRIM_FIRST;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim has no preconditions and is thread-safe (it takes each
        // arena's lock); it only returns free pages to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
        wait = TRIM_EVERY;
    }
}

/// Which store to use: the embedded one in a data dir, or etcd. Shared by every subcommand
/// that opens the store.
#[derive(Debug, Args)]
pub struct StoreBackendArgs {
    /// Data dir holding the embedded store (`state.db`).
    #[arg(long, env = "MOOR_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Use etcd at these client URLs (comma-separated) instead of the embedded store.
    #[arg(long, env = "MOOR_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// How long to wait for etcd to answer when connecting.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub etcd_connect_timeout: Duration,
}

impl StoreBackendArgs {
    /// The embedded store's database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(crate::store::embedded::DB_FILE)
    }

    /// Connect to the configured etcd.
    pub async fn connect_etcd(&self) -> anyhow::Result<EtcdStore> {
        let config = EtcdConfig::new(self.etcd_endpoints.clone())
            .with_connect_timeout(self.etcd_connect_timeout);
        EtcdStore::connect(config)
            .await
            .context("connecting to etcd")
    }
}

/// Parse durations like `500ms`, `5s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 500ms, 5s, 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("invalid duration {text:?}: unknown unit {other:?}")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
    }
}

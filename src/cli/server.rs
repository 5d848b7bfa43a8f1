//! `moor server`: the store and the API server in one process, with an admin kubeconfig
//! written to the data dir so `kubectl` works at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::StoreBackendArgs;
use crate::apiserver::ApiServer;
use crate::store::{Compactor, EmbeddedStore, Store};

/// `moor server ...`
#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    backend: StoreBackendArgs,
    /// Address to serve the Kubernetes API on. Plain HTTP, so loopback only until TLS lands.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
}

/// Run `moor server` until SIGINT or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {}: moor serves plain HTTP for now, so it only listens on loopback addresses (127.0.0.1, ::1)",
            args.listen
        );
    }
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let (store, embedded): (Arc<dyn Store>, Option<EmbeddedStore>) =
        if args.backend.etcd_endpoints.is_empty() {
            let db = args.backend.db_path();
            let store = EmbeddedStore::open(&db).await.with_context(|| {
                format!("opening the store in {}", args.backend.data_dir.display())
            })?;
            let revision = store.current_revision().await?;
            println!(
                "store      embedded  {} (rev {revision})  ready {} ms",
                db.display(),
                started.elapsed().as_millis()
            );
            (Arc::new(store.clone()), Some(store))
        } else {
            let store = args.backend.connect_etcd().await?;
            println!(
                "store      etcd  {}  ready {} ms",
                args.backend.etcd_endpoints.join(","),
                started.elapsed().as_millis()
            );
            (Arc::new(store), None)
        };
    let compactor = tokio::spawn(Compactor::new(store.clone()).run(shutdown.clone()));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let server = ApiServer::new(store, shutdown.clone()).with_shared_store(embedded.is_none());
    server.start().await.context("starting the API server")?;
    std::fs::create_dir_all(&args.backend.data_dir)
        .with_context(|| format!("creating {}", args.backend.data_dir.display()))?;
    let kubeconfig = args.backend.data_dir.join("kubeconfig.yaml");
    write_kubeconfig(&kubeconfig, &format!("http://{addr}"))?;
    println!(
        "apiserver  http://{addr}  kubeconfig: {}  ready {} ms",
        kubeconfig.display(),
        started.elapsed().as_millis()
    );
    println!(
        "           kubectl --kubeconfig {} get namespaces",
        kubeconfig.display()
    );

    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    server.serve(listener).await.context("serving the API")?;
    let _ = compactor.await;
    if let Some(store) = embedded {
        store.close().await;
    }
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Write an admin kubeconfig for `server` atomically, readable by its owner only.
pub fn write_kubeconfig(path: &Path, server: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: moor\n  cluster:\n    server: {server}\n\
         contexts:\n- name: moor\n  context:\n    cluster: moor\n    user: admin\n    namespace: default\n\
         current-context: moor\nusers:\n- name: admin\n  user: {{}}\npreferences: {{}}\n"
    );
    let mut tmp = PathBuf::from(path);
    tmp.set_extension("yaml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

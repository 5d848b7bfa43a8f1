//! `moor store`: back up and restore the cluster store.
//!
//! `snapshot save` works online against either backend; `snapshot restore` rebuilds an
//! embedded store from a snapshot while no server runs on the data dir. An etcd snapshot is
//! restored with etcd's own tooling (the README shows how).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::StoreBackendArgs;
use crate::store::{EmbeddedStore, Store};

/// `moor store ...`
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Take or restore snapshots (backups) of the store.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Write an online, consistent snapshot of the store to FILE.
    ///
    /// With --etcd-endpoints the snapshot comes from etcd (etcd's own format, restored with
    /// `etcdctl snapshot restore`); otherwise from the embedded store in --data-dir, which
    /// may be in use by a running server.
    Save {
        /// Where to write the snapshot (replaced atomically).
        file: PathBuf,
        #[command(flatten)]
        backend: StoreBackendArgs,
    },
    /// Restore an embedded store from a snapshot taken with `moor store snapshot save`.
    ///
    /// No server may be running on the data dir. An existing store is replaced only with
    /// --force.
    Restore {
        /// The snapshot to restore.
        file: PathBuf,
        /// The data dir to restore into.
        #[arg(long, env = "MOOR_DATA_DIR", default_value = super::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Replace an existing store in the data dir.
        #[arg(long)]
        force: bool,
    },
}

/// Run `moor store`.
pub async fn run(args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StoreCommand::Snapshot(SnapshotCommand::Save { file, backend }) => {
            let started = Instant::now();
            if backend.etcd_endpoints.is_empty() {
                let db = backend.db_path();
                EmbeddedStore::snapshot_file(&db, &file)
                    .await
                    .context("taking a snapshot of the embedded store")?;
            } else {
                let store = backend.connect_etcd().await?;
                store.snapshot(&file).await.context("snapshot of etcd")?;
            }
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            println!(
                "snapshot saved to {} ({} bytes) in {} ms",
                file.display(),
                size,
                started.elapsed().as_millis()
            );
        }
        StoreCommand::Snapshot(SnapshotCommand::Restore {
            file,
            data_dir,
            force,
        }) => {
            let db = data_dir.join(crate::store::embedded::DB_FILE);
            let revision = EmbeddedStore::restore_snapshot(&file, &db, force)
                .await
                .context("restoring the embedded store")?;
            println!(
                "restored {} into {} (revision {revision})",
                file.display(),
                db.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

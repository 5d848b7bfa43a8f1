//! `moor store snapshot save|restore` through the real binary: online snapshots of both
//! backends round-trip, and bad input is a clear error with a non-zero exit.

#[path = "support/etcd.rs"]
mod etcd_support;

use std::path::Path;
use std::process::{Command, Output};

use bytes::Bytes;
use moor::store::etcd::{EtcdConfig, EtcdStore};
use moor::store::{EmbeddedStore, ListOptions, Store};

fn moor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(args)
        .env_remove("MOOR_DATA_DIR")
        .env_remove("MOOR_ETCD_ENDPOINTS")
        .output()
        .expect("run moor")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn keys(store: &dyn Store, prefix: &str) -> Vec<(String, Bytes)> {
    store
        .list(prefix, ListOptions::default())
        .await
        .expect("list")
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

/// Create `{prefix}{i}` for i in 0..n, each holding a small JSON document.
async fn fill(store: &dyn Store, prefix: &str, n: usize) {
    for i in 0..n {
        store
            .create(
                &format!("{prefix}{i}"),
                Bytes::from(format!("{{\"i\":{i}}}")),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_snapshot_of_a_running_store_restores_into_a_new_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = EmbeddedStore::open(&data.join("state.db")).await.unwrap();
    fill(&store, "/registry/configmaps/default/cm-", 50).await;
    let before = keys(&store, "/registry/").await;

    // The store stays open (and locked) while the snapshot is taken: it is online.
    let snap = dir.path().join("backup.db");
    let data_arg = data.to_str().unwrap();
    let out = moor(&[
        "store",
        "snapshot",
        "save",
        snap.to_str().unwrap(),
        "--data-dir",
        data_arg,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("snapshot saved"));

    // Restoring over the running store is refused: it is locked.
    let out = moor(&[
        "store",
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data_arg,
        "--force",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        text(&out)
    );
    store.close().await;

    let restored = dir.path().join("restored");
    let out = moor(&[
        "store",
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revision 50"),
        "{}",
        text(&out)
    );

    let store = EmbeddedStore::open(&restored.join("state.db"))
        .await
        .unwrap();
    assert_eq!(keys(&store, "/registry/").await, before);
    assert_eq!(store.current_revision().await.unwrap(), 50);
    // Revisions continue after the restored ones.
    let kv = store
        .create(
            "/registry/configmaps/default/after",
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    assert_eq!(kv.mod_revision, 51);
}

#[test]
fn bad_snapshot_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a snapshot").unwrap();
    let target = dir.path().join("target");
    let out = moor(&[
        "store",
        "snapshot",
        "restore",
        garbage.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("garbage.db") && err.contains("not a moor store snapshot"),
        "{err}"
    );
    assert!(!target.join("state.db").exists(), "nothing may be written");

    // Saving from a data dir with no store names the missing file.
    let out = moor(&[
        "store",
        "snapshot",
        "save",
        dir.path().join("out.db").to_str().unwrap(),
        "--data-dir",
        dir.path().join("nothing-here").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("state.db"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_snapshot_restores_with_etcdctl_as_the_readme_says() {
    let etcd = etcd_support::EtcdInstance::start();
    let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
        .await
        .unwrap();
    fill(&store, "/registry/pods/default/p", 20).await;
    let before = keys(&store, "/registry/").await;

    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("etcd-backup.db");
    let endpoint = etcd.endpoint();
    let out = moor(&[
        "store",
        "snapshot",
        "save",
        snap.to_str().unwrap(),
        "--etcd-endpoints",
        &endpoint,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    drop(store);
    drop(etcd);

    // The README's procedure: etcdctl snapshot restore into a fresh data dir, start etcd.
    let snap_path = snap.clone();
    let restored =
        etcd_support::EtcdInstance::start_prepared(move |data_dir: &Path, name, peer| {
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore"])
                .arg(&snap_path)
                .args(["--name", name, "--data-dir"])
                .arg(data_dir)
                .arg(format!("--initial-cluster={name}={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .output()
                .expect("run etcdctl (Debian's etcd-client; scripts/setup installs it)");
            assert!(
                out.status.success(),
                "etcdctl snapshot restore: {}",
                text(&out)
            );
        });
    let store = EtcdStore::connect(EtcdConfig::new(vec![restored.endpoint()]))
        .await
        .unwrap();
    assert_eq!(keys(&store, "/registry/").await, before);
}

//! Using moor's store as a library: open the embedded store, watch a prefix, write with
//! optimistic concurrency, and read an older revision.
//!
//! `cargo run --example store_watch [DATA_DIR]` (default: a temporary dir).

use bytes::Bytes;
use futures::StreamExt;
use moor::store::key::{object_key, resource_prefix};
use moor::store::{EmbeddedStore, ListOptions, Store, UpdateOutcome};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let store = EmbeddedStore::open(&dir.join("state.db")).await?;

    let prefix = resource_prefix("", "configmaps", Some("default"));
    let start = store.current_revision().await?;
    let mut watch = store.watch(&prefix, start).await?;

    let key = object_key("", "configmaps", Some("default"), "greeting");
    let created = store
        .create(&key, Bytes::from_static(br#"{"data":{"hello":"world"}}"#))
        .await?;
    // An update names the revision it was based on; a stale one is a conflict, not a
    // silent overwrite.
    let updated = match store
        .update(
            &key,
            Bytes::from_static(br#"{"data":{"hello":"moor"}}"#),
            created.mod_revision,
        )
        .await?
    {
        UpdateOutcome::Updated(kv) => kv,
        UpdateOutcome::Conflict(current) => anyhow::bail!("someone else wrote {current:?}"),
    };
    store.delete(&key, Some(updated.mod_revision)).await?;

    for _ in 0..3 {
        if let Some(event) = watch.next().await {
            let event = event?;
            println!(
                "rev {:>3} {:?} {} {}",
                event.revision(),
                event.kind,
                event.kv.key,
                String::from_utf8_lossy(&event.kv.value)
            );
        }
    }

    // The state as it was right after the create, although the key is gone now.
    let then = store
        .list(
            &prefix,
            ListOptions {
                revision: Some(created.mod_revision),
                ..Default::default()
            },
        )
        .await?;
    println!("at rev {}: {} configmap(s)", then.revision, then.kvs.len());
    store.close().await;
    Ok(())
}

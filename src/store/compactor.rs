//! Periodic compaction of store history, as kube-apiserver runs it.
//!
//! Every `interval` the compactor records the current revision and compacts to the revision
//! it recorded one interval earlier, so watchers always have at least one interval of history
//! to resume from. It works on any [`Store`], so both backends share one policy.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Revision, Store, StoreError};

/// Default time between compactions (kube-apiserver's `--etcd-compaction-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Compacts a store's history on a timer.
pub struct Compactor {
    store: Arc<dyn Store>,
    interval: Duration,
}

impl Compactor {
    /// A compactor for `store` with the default interval.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            interval: DEFAULT_INTERVAL,
        }
    }

    /// Change the interval between compactions.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Run until `shutdown` is cancelled. Failures are logged and retried next tick: a
    /// missed compaction only costs disk, never correctness.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StoreError> {
        let mut previous: Option<Revision> = None;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => {}
            }
            if let Some(target) = previous
                && target > 0
            {
                match self.store.compact(target).await {
                    Ok(()) => tracing::debug!(revision = target, "compacted store history"),
                    Err(err) => {
                        tracing::warn!(revision = target, error = %err, "compaction failed")
                    }
                }
            }
            match self.store.current_revision().await {
                Ok(rev) => previous = Some(rev),
                Err(err) => tracing::warn!(error = %err, "reading the current revision failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;
    use bytes::Bytes;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compacts_to_the_revision_seen_one_interval_earlier() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        for i in 0..5 {
            store
                .create(&format!("/k/{i}"), Bytes::from_static(b"v"))
                .await
                .unwrap();
        }
        let shutdown = CancellationToken::new();
        let compactor =
            Compactor::new(Arc::new(store.clone())).with_interval(Duration::from_millis(50));
        let task = tokio::spawn(compactor.run(shutdown.clone()));
        // First tick only records revision 5; the next compacts to it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while store.compacted_revision().await.unwrap() < 5 {
            assert!(tokio::time::Instant::now() < deadline, "never compacted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Writes after the recorded revision keep their history for a full interval.
        store
            .create("/k/new", Bytes::from_static(b"v"))
            .await
            .unwrap();
        assert!(store.compacted_revision().await.unwrap() < 6);
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
}

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

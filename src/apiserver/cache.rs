//! The watch cache: an in-memory copy of one resource, fed by ONE store watch, from which
//! every get, list and watch of that resource is served (as kube-apiserver's cacher does).
//!
//! Each object is kept as the exact JSON bytes clients receive (resourceVersion filled in),
//! plus the few strings selectors look at, so a list is a concatenation of ready bytes and
//! memory holds one copy of each object. A ring of recent events lets watches resume from
//! a recent resourceVersion; older ones get 410 Expired, as upstream.
//!
//! The cache never writes to the store and knows nothing about HTTP.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::api::registry::ResourceInfo;
use crate::api::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventKind, KeyValue, ListOptions, Revision, Store, StoreError};

/// Events kept by default for watches resuming from a past resourceVersion.
pub const DEFAULT_HISTORY: usize = 4096;

/// Live events buffered per watcher before it is cut off (it then re-watches).
const LIVE_BUFFER: usize = 8192;

/// One object as served.
#[derive(Debug)]
pub struct CachedObject {
    /// The object's JSON, as sent to clients.
    pub bytes: Bytes,
    /// The parsed object, for selectors and for handlers that need fields.
    pub value: Value,
    /// metadata.namespace ("" for cluster-scoped).
    pub namespace: String,
    /// metadata.name.
    pub name: String,
    /// The store's mod_revision (the object's resourceVersion).
    pub revision: Revision,
}

impl CachedObject {
    /// Build from a store value at `revision`: fill in resourceVersion and serialize once.
    pub fn from_store(value: &[u8], revision: Revision) -> Result<Self, serde_json::Error> {
        let mut value: Value = serde_json::from_slice(value)?;
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                Value::String(revision.to_string()),
            );
        }
        let text = |v: &Value, field: &str| {
            v.pointer(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Self {
            bytes: Bytes::from(serde_json::to_vec(&value)?),
            namespace: text(&value, "/metadata/namespace"),
            name: text(&value, "/metadata/name"),
            value,
            revision,
        })
    }

    /// Whether the object passes the selectors (and namespace filter).
    pub fn matches(&self, filter: &Filter) -> bool {
        filter
            .namespace
            .as_deref()
            .is_none_or(|ns| ns == self.namespace)
            && filter.labels.matches_object(&self.value)
            && filter.fields.matches_object(&self.value)
    }
}

/// What a list or watch asks for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Label selector (empty: all).
    pub labels: LabelSelector,
    /// Field selector (empty: all).
    pub fields: FieldSelector,
}

/// A change, as watchers see it.
#[derive(Debug, Clone)]
pub struct CacheEvent {
    /// Created, updated or deleted.
    pub kind: EventKind,
    /// The object after the change (for deletes: its last state, at the delete revision).
    pub object: Arc<CachedObject>,
    /// The object before the change.
    pub prev: Option<Arc<CachedObject>>,
}

impl CacheEvent {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.object.revision
    }
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// The revision the cache reflects: every change at or below it is applied.
    revision: Revision,
    /// Watches from a revision below this cannot be served from history.
    oldest: Revision,
}

/// The cache of one resource.
pub struct ResourceCache {
    /// Which resource.
    pub info: &'static ResourceInfo,
    /// A std RwLock: held only to read or apply in memory, never across an await.
    state: RwLock<State>,
    live: broadcast::Sender<Arc<CacheEvent>>,
    revision: watch::Sender<Revision>,
    synced: watch::Sender<bool>,
    history_limit: std::sync::atomic::AtomicUsize,
}

/// A consistent view of the cache for a list: objects in key order at `revision`.
pub struct Snapshot {
    /// Objects, in storage-key order.
    pub objects: Vec<(String, Arc<CachedObject>)>,
    /// The revision they reflect.
    pub revision: Revision,
}

/// A watch on the cache: past events to replay, then the live feed.
pub struct CacheWatch {
    /// Events after the requested revision, already in the cache's history.
    pub replay: Vec<Arc<CacheEvent>>,
    /// Live events; events at or below `from` must be skipped by the reader.
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// The last revision covered by `replay` (or the start point).
    pub from: Revision,
}

/// Why a watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The requested revision is older than the history kept.
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        /// Requested.
        requested: Revision,
        /// The oldest revision a watch can start from.
        oldest: Revision,
    },
    /// The cache did not reach a revision in time.
    #[error("Too large resource version: {requested}, current: {current}")]
    NotReady {
        /// Requested.
        requested: Revision,
        /// Where the cache is.
        current: Revision,
    },
}

impl ResourceCache {
    /// An empty cache; [`run`](Self::run) fills it.
    pub fn new(info: &'static ResourceInfo) -> Arc<Self> {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (revision, _) = watch::channel(0);
        let (synced, _) = watch::channel(false);
        Arc::new(Self {
            synced,
            history_limit: std::sync::atomic::AtomicUsize::new(DEFAULT_HISTORY),
            info,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                revision: 0,
                oldest: 0,
            }),
            live,
            revision,
        })
    }

    /// Fill the cache from a list of the store, then follow one store watch until
    /// `shutdown`. When the watch breaks (compaction overtook it), list again.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let prefix = self.info.prefix(None);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.sync(&*store, &prefix, &shutdown).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(resource = self.info.plural, error = %err, "watch cache re-listing");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }

    async fn sync(
        &self,
        store: &dyn Store,
        prefix: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        let list = store.list(prefix, ListOptions::default()).await?;
        let mut objects = BTreeMap::new();
        for kv in list.kvs {
            match CachedObject::from_store(&kv.value, kv.mod_revision) {
                Ok(obj) => {
                    objects.insert(kv.key, Arc::new(obj));
                }
                Err(err) => {
                    tracing::error!(key = kv.key, error = %err, "stored object is not JSON; skipped")
                }
            }
        }
        let mut watch = store.watch(prefix, list.revision).await?;
        {
            let mut state = self.write_state();
            // Watchers of the old view cannot be continued across a re-list.
            state.history.clear();
            state.objects = objects;
            state.revision = list.revision;
            state.oldest = list.revision;
        }
        self.revision.send_replace(list.revision);
        self.synced.send_replace(true);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                event = watch.next() => event,
            };
            match event {
                Some(Ok(event)) => self.apply(event),
                Some(Err(err)) => return Err(err),
                None => return Err(StoreError::Closed),
            }
        }
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        // A poisoned lock means a panic while applying in memory; the state is still
        // structurally valid (every mutation is a single insert/remove), so keep serving.
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(&self, event: Event) {
        let Event { kind, kv, prev } = event;
        let revision = kv.mod_revision;
        let parse = |kv: &KeyValue, rev: Revision| match CachedObject::from_store(&kv.value, rev) {
            Ok(obj) => Some(Arc::new(obj)),
            Err(err) => {
                tracing::error!(key = kv.key, error = %err, "stored object is not JSON; skipped");
                None
            }
        };
        let Some(object) = parse(&kv, revision) else {
            return;
        };
        let cache_event = {
            let mut state = self.write_state();
            let old = match kind {
                EventKind::Deleted => state.objects.remove(&kv.key),
                EventKind::Created | EventKind::Updated => {
                    state.objects.insert(kv.key.clone(), object.clone())
                }
            };
            // Prefer the cache's own previous object (already parsed); fall back to the
            // store's prev value.
            let prev = old.or_else(|| prev.as_ref().and_then(|p| parse(p, p.mod_revision)));
            let event = Arc::new(CacheEvent { kind, object, prev });
            state.revision = revision;
            state.history.push_back(event.clone());
            if state.history.len()
                > self
                    .history_limit
                    .load(std::sync::atomic::Ordering::Relaxed)
                && let Some(dropped) = state.history.pop_front()
            {
                state.oldest = dropped.revision();
            }
            event
        };
        // Nobody watching is fine.
        let _ = self.live.send(cache_event);
        self.revision.send_replace(revision);
    }

    /// Keep at most `events` past events (at least 1).
    pub fn set_history(&self, events: usize) {
        self.history_limit
            .store(events.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Wait until the first list from the store is in (the server is ready).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// The revision the cache reflects.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Wait until the cache reflects at least `revision` (bounded).
    pub async fn wait_for(&self, revision: Revision, limit: Duration) -> Result<(), CacheError> {
        let mut rx = self.revision.subscribe();
        let reached = tokio::time::timeout(limit, rx.wait_for(|r| *r >= revision)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(CacheError::NotReady {
                requested: revision,
                current: self.revision(),
            }),
        }
    }

    /// One object.
    pub fn get(&self, key: &str) -> (Option<Arc<CachedObject>>, Revision) {
        let state = self.read_state();
        (state.objects.get(key).cloned(), state.revision)
    }

    /// Objects under `prefix` after `start_after`, passing `filter`, at most `limit` (0: all);
    /// and whether more matching objects follow.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        filter: &Filter,
    ) -> (Snapshot, bool) {
        let state = self.read_state();
        let range = match start_after {
            Some(after) => state
                .objects
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => state.objects.range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            )),
        };
        let mut objects = Vec::new();
        let mut more = false;
        for (key, obj) in range.take_while(|(k, _)| k.starts_with(prefix)) {
            if !obj.matches(filter) {
                continue;
            }
            if limit > 0 && objects.len() == limit {
                more = true;
                break;
            }
            objects.push((key.clone(), obj.clone()));
        }
        (
            Snapshot {
                objects,
                revision: state.revision,
            },
            more,
        )
    }

    /// Start a watch after `revision` (`None`: from now, with a snapshot of the current
    /// objects for initial events).
    pub fn watch(
        &self,
        after: Option<Revision>,
    ) -> Result<(CacheWatch, Option<Snapshot>), CacheError> {
        let state = self.read_state();
        // Subscribing under the lock: no event can slip between the snapshot or history
        // and the live feed.
        let live = self.live.subscribe();
        match after {
            None => {
                let objects = state
                    .objects
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let snapshot = Snapshot {
                    objects,
                    revision: state.revision,
                };
                Ok((
                    CacheWatch {
                        replay: Vec::new(),
                        live,
                        from: state.revision,
                    },
                    Some(snapshot),
                ))
            }
            Some(rev) if rev < state.oldest => Err(CacheError::TooOld {
                requested: rev,
                oldest: state.oldest,
            }),
            Some(rev) => {
                let replay: Vec<_> = state
                    .history
                    .iter()
                    .filter(|e| e.revision() > rev)
                    .cloned()
                    .collect();
                Ok((
                    CacheWatch {
                        replay,
                        live,
                        from: state.revision.max(rev),
                    },
                    None,
                ))
            }
        }
    }
}

//! The store conformance suite: one set of cases, written against the [`Store`] trait only,
//! run against every backend.
//!
//! `conformance_tests!(embedded, make_embedded)` instantiates every case for the embedded
//! (SQLite) backend as `embedded::<case>`; `etcd::<case>` runs the same case against a real,
//! private etcd started per test (Debian's `etcd-server`, see `tests/support/etcd.rs`).
//! Cases never assume absolute revisions (a fresh etcd starts at revision 1 with no keys, a
//! fresh embedded store may start at 0): they measure revisions relative to
//! `current_revision()` read before the writes.
//!
//! Every wait on a watch has a timeout, so a backend that loses an event fails the test
//! instead of hanging it.

#[path = "support/etcd.rs"]
mod etcd_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use moor::store::etcd::EtcdConfig;
use moor::store::key::{object_key, resource_prefix};
use moor::store::{
    DeleteOutcome, EmbeddedStore, EncryptedStore, EncryptionConfig, EtcdStore, Event, EventKind,
    KeyValue, ListOptions, MAX_VALUE_BYTES, Revision, Store, StoreError, UpdateOutcome,
    WatchStream,
};
use tokio::time::timeout;

/// How long any single watch event may take to arrive before the test fails.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// One backend under test, plus whatever must outlive it (its temp dir, its etcd).
pub struct Backend {
    /// Declared first so it is dropped before the etcd or directory it uses.
    pub store: Arc<dyn Store>,
    /// A private directory for files a case writes (snapshots).
    pub scratch: tempfile::TempDir,
    _guard: Box<dyn Send>,
}

async fn make_embedded() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir for the embedded store");
    let store = EmbeddedStore::open(&dir.path().join("state.db"))
        .await
        .expect("open embedded store");
    Backend {
        store: Arc::new(store),
        scratch: tempfile::tempdir().expect("scratch dir"),
        _guard: Box::new(dir),
    }
}

/// The embedded store behind `EncryptedStore`: pods through aesgcm, configmaps through
/// aescbc (identity second), everything else passed through — so the cases exercise both
/// ciphers, plain keys, and lists and watches that mix them.
async fn make_encrypted() -> Backend {
    use base64::Engine as _;
    let b64 = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let yaml = format!(
        "apiVersion: apiserver.config.k8s.io/v1\n\
         kind: EncryptionConfiguration\n\
         resources:\n\
         - resources: [pods]\n  \
           providers: [{{aesgcm: {{keys: [{{name: g1, secret: \"{}\"}}]}}}}]\n\
         - resources: [configmaps]\n  \
           providers: [{{aescbc: {{keys: [{{name: c1, secret: \"{}\"}}]}}}}, {{identity: {{}}}}]\n",
        b64(1),
        b64(2),
    );
    let config = EncryptionConfig::from_yaml(&yaml, Path::new("conformance-encryption.yaml"))
        .expect("encryption config");
    let backend = make_embedded().await;
    Backend {
        store: Arc::new(EncryptedStore::new(backend.store, config)),
        scratch: backend.scratch,
        _guard: backend._guard,
    }
}

async fn make_etcd() -> Backend {
    // Starting etcd sleeps while polling its health: keep that off the async workers.
    let etcd = tokio::task::spawn_blocking(etcd_support::EtcdInstance::start)
        .await
        .expect("start etcd");
    let config = EtcdConfig::new(vec![etcd.endpoint()])
        .with_request_timeout(Duration::from_secs(15))
        .with_connect_timeout(Duration::from_secs(5));
    let store = EtcdStore::connect(config).await.expect("connect to etcd");
    Backend {
        store: Arc::new(store),
        scratch: tempfile::tempdir().expect("scratch dir"),
        _guard: Box::new(etcd),
    }
}

macro_rules! conformance_tests {
    ($backend:ident, $make:ident) => {
        conformance_tests!(@cases $backend, $make, [
            create_then_get,
            create_existing_is_already_exists,
            update_checks_mod_revision,
            delete_with_and_without_precondition,
            list_returns_only_the_prefix_in_order,
            list_pages_return_every_key_once,
            list_at_an_older_revision,
            list_at_a_future_revision_fails,
            watch_replays_history_then_streams_live,
            watch_from_current_revision_sees_only_new_events,
            concurrent_watchers_see_everything,
            concurrent_writers_get_gapless_revisions,
            concurrent_updates_lose_nothing,
            compaction,
            value_size_limits,
            invalid_keys_are_refused,
            snapshot_writes_a_file_atomically,
        ]);
    };
    (@cases $backend:ident, $make:ident, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::$make().await;
                    super::cases::$case(&backend).await;
                }
            )*
        }
    };
}

conformance_tests!(embedded, make_embedded);
conformance_tests!(etcd, make_etcd);
conformance_tests!(encrypted, make_encrypted);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn pod(ns: &str, name: &str) -> String {
    object_key("", "pods", Some(ns), name)
}

async fn current(store: &dyn Store) -> Revision {
    store.current_revision().await.expect("current_revision")
}

async fn create(store: &dyn Store, key: &str, value: &str) -> KeyValue {
    store
        .create(key, val(value))
        .await
        .unwrap_or_else(|err| panic!("create {key}: {err}"))
}

async fn update(store: &dyn Store, key: &str, value: &str, expected: Revision) -> KeyValue {
    match store.update(key, val(value), expected).await {
        Ok(UpdateOutcome::Updated(kv)) => kv,
        other => panic!("update {key} at {expected}: expected Updated, got {other:?}"),
    }
}

async fn delete(store: &dyn Store, key: &str) -> (KeyValue, Revision) {
    match store.delete(key, None).await {
        Ok(DeleteOutcome::Deleted { prev, revision }) => (prev, revision),
        other => panic!("delete {key}: expected Deleted, got {other:?}"),
    }
}

async fn get(store: &dyn Store, key: &str) -> Option<KeyValue> {
    store
        .get(key)
        .await
        .unwrap_or_else(|err| panic!("get {key}: {err}"))
        .0
}

async fn list_all(store: &dyn Store, prefix: &str) -> Vec<KeyValue> {
    let page = store
        .list(prefix, ListOptions::default())
        .await
        .unwrap_or_else(|err| panic!("list {prefix}: {err}"));
    assert!(!page.more, "an unlimited list of {prefix} says more follow");
    page.kvs
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

async fn watch(store: &dyn Store, prefix: &str, after: Revision) -> WatchStream {
    store
        .watch(prefix, after)
        .await
        .unwrap_or_else(|err| panic!("watch {prefix} after {after}: {err}"))
}

async fn next_event(stream: &mut WatchStream) -> Event {
    match timeout(EVENT_WAIT, stream.next()).await {
        Err(_) => panic!("no watch event within {EVENT_WAIT:?}"),
        Ok(None) => panic!("watch stream ended unexpectedly"),
        Ok(Some(Err(err))) => panic!("watch stream failed: {err}"),
        Ok(Some(Ok(event))) => event,
    }
}

async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(stream).await);
    }
    events
}

/// Nothing more arrives within `wait`.
async fn assert_quiet(stream: &mut WatchStream, wait: Duration) {
    if let Ok(item) = timeout(wait, stream.next()).await {
        panic!("expected no more watch items, got {item:?}");
    }
}

fn assert_event(
    event: &Event,
    kind: EventKind,
    kv: &KeyValue,
    prev: Option<&KeyValue>,
    what: &str,
) {
    assert_eq!(event.kind, kind, "{what}: kind of {event:?}");
    assert_eq!(&event.kv, kv, "{what}: kv");
    assert_eq!(event.kv.value, kv.value, "{what}: value");
    assert_eq!(event.prev.as_ref(), prev, "{what}: prev");
    if let (Some(got), Some(want)) = (&event.prev, prev) {
        assert_eq!(got.value, want.value, "{what}: prev value");
    }
    assert_eq!(event.revision(), kv.mod_revision, "{what}: revision()");
}

/// What a Deleted event must carry: the last value with mod_revision = the delete's.
fn deleted_kv(prev: &KeyValue, revision: Revision) -> KeyValue {
    KeyValue {
        mod_revision: revision,
        ..prev.clone()
    }
}

/// A compaction error, whether `watch()` returned it or the stream's first item is it.
async fn expect_compacted_watch(store: &dyn Store, prefix: &str, after: Revision) {
    match store.watch(prefix, after).await {
        Err(err) => assert!(err.is_compacted(), "watch after {after}: {err}"),
        Ok(mut stream) => match timeout(EVENT_WAIT, stream.next()).await {
            Err(_) => panic!("watch after compacted {after}: neither an error nor an item"),
            Ok(None) => panic!("watch after compacted {after}: stream ended without an error"),
            Ok(Some(Ok(event))) => {
                panic!("watch after compacted {after}: got {event:?} instead of Compacted")
            }
            Ok(Some(Err(err))) => assert!(err.is_compacted(), "watch after {after}: {err}"),
        },
    }
}

// ---------------------------------------------------------------------------------------
// The cases: each takes the backend and panics on any deviation from the trait's docs.
// ---------------------------------------------------------------------------------------

mod cases {
    use super::*;

    pub async fn create_then_get(b: &Backend) {
        let s = &*b.store;
        let before = current(s).await;
        let a = pod("default", "a");

        let kv = create(s, &a, "one").await;
        assert_eq!(kv.key, a);
        assert_eq!(kv.value, val("one"));
        assert_eq!(kv.mod_revision, before + 1, "first write is current + 1");
        assert_eq!(kv.create_revision, kv.mod_revision);
        assert_eq!(current(s).await, before + 1);

        let (got, read_at) = s.get(&a).await.expect("get");
        assert_eq!(got, Some(kv.clone()));
        assert_eq!(got.unwrap().value, val("one"));
        assert_eq!(read_at, before + 1, "get reports the revision it read at");

        let kv2 = create(s, &pod("default", "b"), "two").await;
        assert_eq!(kv2.mod_revision, before + 2, "each write adds exactly one");
        assert_eq!(kv2.create_revision, before + 2);
        assert_eq!(current(s).await, before + 2);

        let (missing, read_at) = s.get(&pod("default", "missing")).await.expect("get");
        assert_eq!(missing, None);
        assert_eq!(read_at, before + 2);
        // A read is not a write.
        assert_eq!(current(s).await, before + 2);
        assert_eq!(get(s, &a).await, Some(kv));
    }

    pub async fn create_existing_is_already_exists(b: &Backend) {
        let s = &*b.store;
        let a = pod("default", "a");
        let kv = create(s, &a, "original").await;
        let before = current(s).await;

        match s.create(&a, val("second")).await {
            Err(StoreError::AlreadyExists { key }) => assert_eq!(key, a),
            other => panic!("create on an existing key: expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(
            current(s).await,
            before,
            "a refused create must not bump the revision"
        );
        let got = get(s, &a).await.expect("still there");
        assert_eq!(got, kv);
        assert_eq!(got.value, val("original"));

        // The next successful write is still exactly one more.
        let next = create(s, &pod("default", "b"), "x").await;
        assert_eq!(next.mod_revision, before + 1);
    }

    pub async fn update_checks_mod_revision(b: &Backend) {
        let s = &*b.store;
        let a = pod("default", "a");
        let created = create(s, &a, "v1").await;

        let updated = update(s, &a, "v2", created.mod_revision).await;
        assert_eq!(updated.key, a);
        assert_eq!(updated.value, val("v2"));
        assert_eq!(
            updated.create_revision, created.create_revision,
            "create_revision kept"
        );
        assert_eq!(updated.mod_revision, created.mod_revision + 1);
        assert_eq!(current(s).await, updated.mod_revision);
        assert_eq!(get(s, &a).await, Some(updated.clone()));

        // Stale precondition: nothing written, the current value returned.
        let before = current(s).await;
        match s.update(&a, val("v3"), created.mod_revision).await {
            Ok(UpdateOutcome::Conflict(Some(cur))) => {
                assert_eq!(cur, updated);
                assert_eq!(cur.value, val("v2"));
            }
            other => panic!("stale update: expected Conflict(Some), got {other:?}"),
        }
        // A precondition from the future is just as wrong.
        match s.update(&a, val("v3"), updated.mod_revision + 100).await {
            Ok(UpdateOutcome::Conflict(Some(cur))) => assert_eq!(cur, updated),
            other => panic!("update with a future revision: expected Conflict, got {other:?}"),
        }
        assert_eq!(
            current(s).await,
            before,
            "a conflict must not bump the revision"
        );
        assert_eq!(get(s, &a).await.unwrap().value, val("v2"));

        // Missing key: Conflict(None), no write.
        let missing = pod("default", "missing");
        match s.update(&missing, val("x"), created.mod_revision).await {
            Ok(UpdateOutcome::Conflict(None)) => {}
            other => panic!("update of a missing key: expected Conflict(None), got {other:?}"),
        }
        assert_eq!(current(s).await, before);
        assert_eq!(get(s, &missing).await, None);

        // Chained updates keep working from the returned revision.
        let third = update(s, &a, "v3", updated.mod_revision).await;
        assert_eq!(third.mod_revision, before + 1);
        assert_eq!(third.create_revision, created.create_revision);
    }

    pub async fn delete_with_and_without_precondition(b: &Backend) {
        let s = &*b.store;

        // No precondition.
        let a = pod("default", "a");
        let a1 = create(s, &a, "a-value").await;
        let (prev, rev) = delete(s, &a).await;
        assert_eq!(prev, a1);
        assert_eq!(prev.value, val("a-value"));
        assert_eq!(rev, a1.mod_revision + 1);
        assert_eq!(current(s).await, rev);
        assert_eq!(get(s, &a).await, None);

        // Wrong precondition: Conflict with what is there, nothing written.
        let bkey = pod("default", "b");
        let b1 = create(s, &bkey, "b1").await;
        let b2 = update(s, &bkey, "b2", b1.mod_revision).await;
        let before = current(s).await;
        match s.delete(&bkey, Some(b1.mod_revision)).await {
            Ok(DeleteOutcome::Conflict(cur)) => {
                assert_eq!(cur, b2);
                assert_eq!(cur.value, val("b2"));
            }
            other => panic!("delete with a stale precondition: expected Conflict, got {other:?}"),
        }
        assert_eq!(current(s).await, before);
        assert_eq!(get(s, &bkey).await, Some(b2.clone()));

        // Right precondition.
        match s.delete(&bkey, Some(b2.mod_revision)).await {
            Ok(DeleteOutcome::Deleted { prev, revision }) => {
                assert_eq!(prev, b2);
                assert_eq!(revision, before + 1);
            }
            other => panic!("delete with the right precondition: expected Deleted, got {other:?}"),
        }
        assert_eq!(current(s).await, before + 1);
        assert_eq!(get(s, &bkey).await, None);

        // Missing key, with or without a precondition: NotFound, nothing written.
        let before = current(s).await;
        match s.delete(&a, None).await {
            Ok(DeleteOutcome::NotFound) => {}
            other => panic!("delete of a deleted key: expected NotFound, got {other:?}"),
        }
        match s
            .delete(&pod("default", "never"), Some(a1.mod_revision))
            .await
        {
            Ok(DeleteOutcome::NotFound) => {}
            other => {
                panic!(
                    "delete of a missing key with a precondition: expected NotFound, got {other:?}"
                )
            }
        }
        assert_eq!(
            current(s).await,
            before,
            "NotFound must not bump the revision"
        );

        // Re-create after delete: a new life, a new create_revision.
        let again = create(s, &a, "reborn").await;
        assert_eq!(again.mod_revision, before + 1);
        assert_eq!(again.create_revision, before + 1);
        assert!(again.create_revision > a1.create_revision);
        assert_eq!(get(s, &a).await.unwrap().value, val("reborn"));
    }

    pub async fn list_returns_only_the_prefix_in_order(b: &Backend) {
        let s = &*b.store;
        // Written out of order, with neighbours that share a textual prefix.
        let writes = [
            pod("kube-system", "c"),
            object_key("", "podtemplates", Some("default"), "x"),
            pod("default", "b"),
            object_key("", "services", Some("default"), "a"),
            pod("default", "a"),
            object_key("", "pods-extra", Some("default"), "y"),
            object_key("apps", "deployments", Some("default"), "web"),
            pod("default", "a-longer"),
        ];
        for (i, key) in writes.iter().enumerate() {
            create(s, key, &format!("value-{i}")).await;
        }
        let now = current(s).await;

        let all_pods = resource_prefix("", "pods", None);
        let page = s
            .list(&all_pods, ListOptions::default())
            .await
            .expect("list");
        assert_eq!(
            keys(&page.kvs),
            [
                pod("default", "a"),
                pod("default", "a-longer"),
                pod("default", "b"),
                pod("kube-system", "c"),
            ],
            "only keys under {all_pods}, ascending"
        );
        assert!(!page.more);
        assert_eq!(page.revision, now, "list reads at the current revision");
        for kv in &page.kvs {
            let i = writes.iter().position(|k| *k == kv.key).unwrap();
            assert_eq!(kv.value, val(&format!("value-{i}")), "value of {}", kv.key);
            assert_eq!(get(s, &kv.key).await.as_ref(), Some(kv));
        }

        let default_pods = resource_prefix("", "pods", Some("default"));
        let kvs = list_all(s, &default_pods).await;
        assert_eq!(
            keys(&kvs),
            [
                pod("default", "a"),
                pod("default", "a-longer"),
                pod("default", "b")
            ]
        );

        let templates = list_all(s, &resource_prefix("", "podtemplates", None)).await;
        assert_eq!(keys(&templates), [writes[1].as_str()]);

        let nothing = list_all(s, &resource_prefix("", "secrets", None)).await;
        assert!(nothing.is_empty(), "{nothing:?}");

        // Everything under /registry/, sorted bytewise.
        let every = list_all(s, "/registry/").await;
        let mut sorted: Vec<&str> = writes.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        assert_eq!(keys(&every), sorted);
    }

    pub async fn list_pages_return_every_key_once(b: &Backend) {
        let s = &*b.store;
        let prefix = resource_prefix("", "configmaps", Some("paged"));
        let mut expected = Vec::new();
        for i in 0..25 {
            let key = format!("{prefix}cm-{i:03}");
            create(s, &key, &format!("{i}")).await;
            expected.push(key);
        }
        // Neighbours on both sides of the range.
        create(s, &resource_prefix("", "configmaps", Some("pagea")), "x").await;
        create(s, prefix.trim_end_matches('/'), "x").await;
        create(s, &format!("{}0", prefix.trim_end_matches('/')), "x").await;
        create(s, &resource_prefix("", "configmaps", Some("pagez")), "x").await;

        for limit in [1usize, 5, 7, 25, 26] {
            let mut seen = Vec::new();
            let mut start_after = None;
            let mut pinned = None;
            let mut pages = 0;
            loop {
                pages += 1;
                assert!(pages <= 30, "limit {limit}: paging does not terminate");
                let page = s
                    .list(
                        &prefix,
                        ListOptions {
                            revision: pinned,
                            limit: Some(limit),
                            start_after: start_after.clone(),
                        },
                    )
                    .await
                    .expect("list page");
                assert!(
                    page.kvs.len() <= limit,
                    "limit {limit}: page of {}",
                    page.kvs.len()
                );
                if let Some(rev) = pinned {
                    assert_eq!(page.revision, rev, "a pinned page reads at its revision");
                }
                pinned = Some(page.revision);
                seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
                let remaining = expected.len() - seen.len().min(expected.len());
                assert_eq!(
                    page.more,
                    remaining > 0,
                    "limit {limit}, page {pages}: more={} with {remaining} keys left",
                    page.more
                );
                if pages == 1 {
                    // A write between pages must not show in a list continued at the
                    // first page's revision; its key sorts last so it would.
                    create(s, &format!("{prefix}zzz-late"), "late").await;
                }
                if !page.more {
                    break;
                }
                assert!(
                    !page.kvs.is_empty(),
                    "limit {limit}: empty page that says more"
                );
                start_after = Some(page.kvs.last().unwrap().key.clone());
            }
            assert_eq!(seen, expected, "limit {limit}: every key once, in order");
            s.delete(&format!("{prefix}zzz-late"), None)
                .await
                .expect("delete late key");
        }

        // limit 0 and None both mean "all".
        for limit in [None, Some(0)] {
            let page = s
                .list(
                    &prefix,
                    ListOptions {
                        limit,
                        ..ListOptions::default()
                    },
                )
                .await
                .expect("list");
            assert_eq!(keys(&page.kvs), expected, "limit {limit:?}");
            assert!(!page.more);
        }

        // start_after alone: strictly after, even for a key that does not exist.
        let page = s
            .list(
                &prefix,
                ListOptions {
                    start_after: Some(expected[9].clone()),
                    ..ListOptions::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(keys(&page.kvs), expected[10..]);
        let page = s
            .list(
                &prefix,
                ListOptions {
                    start_after: Some(format!("{prefix}cm-009x")),
                    limit: Some(3),
                    ..ListOptions::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(keys(&page.kvs), expected[10..13]);
        assert!(page.more);
    }

    pub async fn list_at_an_older_revision(b: &Backend) {
        let s = &*b.store;
        let prefix = resource_prefix("", "pods", Some("old"));
        let a = pod("old", "a");
        let bk = pod("old", "b");
        let c = pod("old", "c");

        let a1 = create(s, &a, "a1").await;
        let at_a1 = a1.mod_revision;
        let b1 = create(s, &bk, "b1").await;
        let mid = current(s).await;

        let a2 = update(s, &a, "a2", a1.mod_revision).await;
        delete(s, &bk).await;
        let c1 = create(s, &c, "c1").await;
        let now = current(s).await;

        let old = s
            .list(
                &prefix,
                ListOptions {
                    revision: Some(mid),
                    ..ListOptions::default()
                },
            )
            .await
            .expect("list at mid");
        assert_eq!(
            old.revision, mid,
            "an old list reports the revision it read at"
        );
        assert_eq!(old.kvs, vec![a1.clone(), b1.clone()], "state as of {mid}");
        assert_eq!(old.kvs[0].value, val("a1"));
        assert_eq!(
            old.kvs[1].value,
            val("b1"),
            "a since-deleted key, as it was"
        );
        assert!(!old.more);

        let older = s
            .list(
                &prefix,
                ListOptions {
                    revision: Some(at_a1),
                    ..ListOptions::default()
                },
            )
            .await
            .expect("list at a1");
        assert_eq!(older.kvs, vec![a1.clone()]);

        // Paging at an old revision too.
        let page = s
            .list(
                &prefix,
                ListOptions {
                    revision: Some(mid),
                    limit: Some(1),
                    start_after: None,
                },
            )
            .await
            .expect("list page at mid");
        assert_eq!(page.kvs, vec![a1.clone()]);
        assert!(page.more);

        let latest = s.list(&prefix, ListOptions::default()).await.expect("list");
        assert_eq!(latest.revision, now);
        assert_eq!(latest.kvs, vec![a2, c1]);

        let explicit_now = s
            .list(
                &prefix,
                ListOptions {
                    revision: Some(now),
                    ..ListOptions::default()
                },
            )
            .await
            .expect("list at now");
        assert_eq!(explicit_now.kvs, latest.kvs);
    }

    pub async fn list_at_a_future_revision_fails(b: &Backend) {
        let s = &*b.store;
        create(s, &pod("default", "a"), "x").await;
        let now = current(s).await;
        match s
            .list(
                "/registry/",
                ListOptions {
                    revision: Some(now + 1),
                    ..ListOptions::default()
                },
            )
            .await
        {
            Err(StoreError::FutureRevision { requested, current }) => {
                assert_eq!(requested, now + 1);
                assert_eq!(current, now);
            }
            other => {
                panic!("list above the current revision: expected FutureRevision, got {other:?}")
            }
        }
        match s
            .list(
                "/registry/",
                ListOptions {
                    revision: Some(now + 1000),
                    ..ListOptions::default()
                },
            )
            .await
        {
            Err(StoreError::FutureRevision { .. }) => {}
            other => panic!("list far above the current revision: got {other:?}"),
        }
        assert_eq!(current(s).await, now);
    }

    pub async fn watch_replays_history_then_streams_live(b: &Backend) {
        let s = &*b.store;
        let prefix = resource_prefix("", "pods", None);
        let start = current(s).await;

        let a = pod("default", "a");
        let bk = pod("default", "b");
        let a1 = create(s, &a, "a1").await;
        create(
            s,
            &object_key("", "podtemplates", Some("default"), "t"),
            "no",
        )
        .await;
        let a2 = update(s, &a, "a2", a1.mod_revision).await;
        create(s, &object_key("", "services", Some("default"), "svc"), "no").await;
        let b1 = create(s, &bk, "b1").await;
        let (a_last, a_del) = delete(s, &a).await;
        assert_eq!(a_last, a2);

        let mut w = watch(s, &prefix, start).await;
        let replay = next_events(&mut w, 4).await;
        assert_event(&replay[0], EventKind::Created, &a1, None, "replayed create");
        assert_event(
            &replay[1],
            EventKind::Updated,
            &a2,
            Some(&a1),
            "replayed update",
        );
        assert_event(
            &replay[2],
            EventKind::Created,
            &b1,
            None,
            "replayed create b",
        );
        assert_event(
            &replay[3],
            EventKind::Deleted,
            &deleted_kv(&a2, a_del),
            Some(&a2),
            "replayed delete",
        );
        assert_eq!(
            replay[3].kv.value,
            val("a2"),
            "a Deleted event carries the last value"
        );

        // Live events after the replay, filtered to the prefix.
        create(
            s,
            &object_key("", "podtemplates", Some("default"), "t2"),
            "no",
        )
        .await;
        let b2 = update(s, &bk, "b2", b1.mod_revision).await;
        create(s, "/registry/podsecuritypolicies/x", "no").await;
        let c1 = create(s, &pod("kube-system", "c"), "c1").await;
        let (b_last, b_del) = delete(s, &bk).await;
        let a3 = create(s, &a, "a3").await;

        let live = next_events(&mut w, 4).await;
        assert_event(&live[0], EventKind::Updated, &b2, Some(&b1), "live update");
        assert_event(&live[1], EventKind::Created, &c1, None, "live create");
        assert_event(
            &live[2],
            EventKind::Deleted,
            &deleted_kv(&b_last, b_del),
            Some(&b_last),
            "live delete",
        );
        assert_event(
            &live[3],
            EventKind::Created,
            &a3,
            None,
            "re-create after delete",
        );
        assert_eq!(a3.create_revision, a3.mod_revision);

        let all: Vec<Revision> = replay.iter().chain(&live).map(Event::revision).collect();
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "revision order: {all:?}"
        );
        for event in replay.iter().chain(&live) {
            assert!(
                event.kv.key.starts_with(&prefix),
                "{event:?} outside {prefix}"
            );
        }

        // A final write outside, then one inside: the next event must be the inside one.
        create(s, &object_key("", "podtemplates", Some("x"), "y"), "no").await;
        let last = create(s, &pod("z", "last"), "last").await;
        let event = next_event(&mut w).await;
        assert_event(&event, EventKind::Created, &last, None, "sentinel");
        assert_quiet(&mut w, Duration::from_millis(300)).await;
    }

    pub async fn watch_from_current_revision_sees_only_new_events(b: &Backend) {
        let s = &*b.store;
        let prefix = resource_prefix("", "pods", None);
        let a = pod("default", "a");
        let a1 = create(s, &a, "a1").await;
        create(s, &pod("default", "b"), "b1").await;
        let now = current(s).await;

        let mut w = watch(s, &prefix, now).await;
        assert_quiet(&mut w, Duration::from_millis(300)).await;

        let a2 = update(s, &a, "a2", a1.mod_revision).await;
        assert_eq!(a2.mod_revision, now + 1);
        let event = next_event(&mut w).await;
        assert_event(
            &event,
            EventKind::Updated,
            &a2,
            Some(&a1),
            "first new event",
        );
        assert_quiet(&mut w, Duration::from_millis(300)).await;

        // Watching from one before a write sees exactly that write first.
        let mut w2 = watch(s, &prefix, now).await;
        let event = next_event(&mut w2).await;
        assert_eq!(event.revision(), now + 1);
        assert_quiet(&mut w2, Duration::from_millis(200)).await;
    }

    pub async fn concurrent_watchers_see_everything(b: &Backend) {
        let s = b.store.clone();
        let prefix = resource_prefix("", "pods", None);
        let start = current(&*s).await;

        let mut w1 = watch(&*s, &prefix, start).await;
        let mut w2 = watch(&*s, &prefix, start).await;

        const N: usize = 60;
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                let mut live: Vec<KeyValue> = Vec::new();
                for i in 0..N {
                    // Mix creates, updates and deletes.
                    let rev = if i % 3 == 2 && !live.is_empty() {
                        let kv = live.remove(0);
                        match s.delete(&kv.key, Some(kv.mod_revision)).await.unwrap() {
                            DeleteOutcome::Deleted { revision, .. } => revision,
                            other => panic!("delete: {other:?}"),
                        }
                    } else if i % 3 == 1 && !live.is_empty() {
                        let kv = live.pop().unwrap();
                        match s.update(&kv.key, val("u"), kv.mod_revision).await.unwrap() {
                            UpdateOutcome::Updated(kv) => {
                                let rev = kv.mod_revision;
                                live.push(kv);
                                rev
                            }
                            other => panic!("update: {other:?}"),
                        }
                    } else {
                        let kv = s
                            .create(&pod("w", &format!("p{i}")), val("c"))
                            .await
                            .unwrap();
                        let rev = kv.mod_revision;
                        live.push(kv);
                        rev
                    };
                    revisions.push(rev);
                }
                revisions
            })
        };

        let (e1, e2) = tokio::join!(next_events(&mut w1, N), next_events(&mut w2, N));
        let revisions = writer.await.expect("writer");
        let expected: Vec<Revision> = (start + 1..=start + N as i64).collect();
        assert_eq!(revisions, expected, "one revision per write, no gaps");
        let r1: Vec<Revision> = e1.iter().map(Event::revision).collect();
        let r2: Vec<Revision> = e2.iter().map(Event::revision).collect();
        assert_eq!(r1, expected, "watcher 1");
        assert_eq!(r2, expected, "watcher 2");
        assert_eq!(e1, e2, "both watchers see the same events");
        assert_quiet(&mut w1, Duration::from_millis(200)).await;
    }

    pub async fn concurrent_writers_get_gapless_revisions(b: &Backend) {
        const TASKS: usize = 32;
        const PER_TASK: usize = 20;
        let s = b.store.clone();
        let prefix = resource_prefix("", "configmaps", None);
        let start = current(&*s).await;

        let mut handles = Vec::new();
        for t in 0..TASKS {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..PER_TASK {
                    let key = object_key(
                        "",
                        "configmaps",
                        Some(&format!("t{t:02}")),
                        &format!("{i:02}"),
                    );
                    out.push(
                        s.create(&key, val(&format!("{t}-{i}")))
                            .await
                            .expect("create"),
                    );
                }
                out
            }));
        }
        let mut written = Vec::new();
        for h in handles {
            written.extend(h.await.expect("writer task"));
        }
        let total = (TASKS * PER_TASK) as i64;
        assert_eq!(current(&*s).await, start + total);

        let mut revs: Vec<Revision> = written.iter().map(|kv| kv.mod_revision).collect();
        revs.sort_unstable();
        let expected: Vec<Revision> = (start + 1..=start + total).collect();
        assert_eq!(
            revs, expected,
            "acknowledged revisions are exactly start+1..=start+{total}"
        );

        let mut by_rev = written.clone();
        by_rev.sort_by_key(|kv| kv.mod_revision);

        let mut w = watch(&*s, &prefix, start).await;
        let events = next_events(&mut w, total as usize).await;
        for (event, kv) in events.iter().zip(&by_rev) {
            assert_event(event, EventKind::Created, kv, None, "concurrent create");
        }
        assert_quiet(&mut w, Duration::from_millis(300)).await;

        // From the very beginning too: nothing before `start` is under this prefix.
        let mut w0 = watch(&*s, &prefix, 0).await;
        let events0 = next_events(&mut w0, total as usize).await;
        assert_eq!(events0, events);

        let mut listed = list_all(&*s, &prefix).await;
        assert_eq!(listed.len(), total as usize);
        listed.sort_by_key(|kv| kv.mod_revision);
        assert_eq!(listed, by_rev);
    }

    pub async fn concurrent_updates_lose_nothing(b: &Backend) {
        const TASKS: usize = 8;
        const INCREMENTS: usize = 15;
        let s = b.store.clone();
        let key = object_key("", "configmaps", Some("default"), "counter");
        create(&*s, &key, "0").await;

        let mut handles = Vec::new();
        for _ in 0..TASKS {
            let s = s.clone();
            let key = key.clone();
            handles.push(tokio::spawn(async move {
                let mut conflicts = 0usize;
                let mut kv = s.get(&key).await.unwrap().0.unwrap();
                for _ in 0..INCREMENTS {
                    loop {
                        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                        match s
                            .update(&key, val(&(n + 1).to_string()), kv.mod_revision)
                            .await
                            .unwrap()
                        {
                            UpdateOutcome::Updated(new) => {
                                kv = new;
                                break;
                            }
                            UpdateOutcome::Conflict(Some(cur)) => {
                                conflicts += 1;
                                assert!(
                                    cur.mod_revision > kv.mod_revision,
                                    "conflict went back in time"
                                );
                                kv = cur;
                            }
                            UpdateOutcome::Conflict(None) => panic!("counter vanished"),
                        }
                    }
                }
                conflicts
            }));
        }
        for h in handles {
            h.await.expect("incrementer");
        }
        let kv = get(&*s, &key).await.unwrap();
        assert_eq!(
            kv.value,
            val(&(TASKS * INCREMENTS).to_string()),
            "compare-and-swap lost an update"
        );
    }

    pub async fn compaction(b: &Backend) {
        let s = &*b.store;
        let prefix = resource_prefix("", "pods", None);
        let k1 = pod("default", "k1");
        let k2 = pod("default", "k2");
        let k3 = pod("default", "k3");
        let k4 = pod("default", "k4");

        let start = current(s).await;
        let r1 = create(s, &k1, "k1-v1").await;
        let r2 = update(s, &k1, "k1-v2", r1.mod_revision).await;
        create(s, &k2, "k2").await;
        let (_, _r4) = delete(s, &k2).await;
        let r5 = create(s, &k3, "k3").await;
        let c = r5.mod_revision;
        let r6 = update(s, &k1, "k1-v3", r2.mod_revision).await;
        let r7 = create(s, &k4, "k4").await;
        assert_eq!(r7.mod_revision, start + 7);
        let now = current(s).await;

        s.compact(c).await.expect("compact");
        let compacted = s.compacted_revision().await.expect("compacted_revision");
        assert!(compacted >= c, "compacted_revision {compacted} < {c}");
        assert!(
            compacted <= now,
            "compacted_revision {compacted} beyond current {now}"
        );

        // Lists below the compaction fail; at it and after work.
        for below in [r1.mod_revision, c - 1] {
            match s
                .list(
                    &prefix,
                    ListOptions {
                        revision: Some(below),
                        ..ListOptions::default()
                    },
                )
                .await
            {
                Err(err) => assert!(err.is_compacted(), "list at {below}: {err}"),
                Ok(page) => panic!("list at compacted revision {below} returned {page:?}"),
            }
        }
        let at_c = s
            .list(
                &prefix,
                ListOptions {
                    revision: Some(c),
                    ..ListOptions::default()
                },
            )
            .await
            .expect("list at the compaction revision");
        assert_eq!(at_c.kvs, vec![r2.clone(), r5.clone()], "state at {c}");
        assert_eq!(at_c.kvs[0].value, val("k1-v2"));

        // The current state is intact.
        assert_eq!(current(s).await, now, "compaction is not a write");
        assert_eq!(
            list_all(s, &prefix).await,
            vec![r6.clone(), r5.clone(), r7.clone()]
        );
        assert_eq!(get(s, &k1).await.unwrap().value, val("k1-v3"));
        assert_eq!(get(s, &k2).await, None);

        // Watches that need removed history fail; from C on they replay.
        expect_compacted_watch(s, &prefix, c - 2).await;
        expect_compacted_watch(s, &prefix, start).await;

        let mut w = watch(s, &prefix, c).await;
        let events = next_events(&mut w, 2).await;
        assert_event(
            &events[0],
            EventKind::Updated,
            &r6,
            Some(&r2),
            "after compaction: update",
        );
        assert_event(
            &events[1],
            EventKind::Created,
            &r7,
            None,
            "after compaction: create",
        );
        let r8 = update(s, &k3, "k3-v2", r5.mod_revision).await;
        let live = next_event(&mut w).await;
        assert_event(
            &live,
            EventKind::Updated,
            &r8,
            Some(&r5),
            "live after compaction",
        );

        let mut w_now = watch(s, &prefix, now).await;
        let event = next_event(&mut w_now).await;
        assert_eq!(event.revision(), r8.mod_revision);

        // Compacting again at or below is a no-op, not an error.
        s.compact(r1.mod_revision)
            .await
            .expect("compact below an earlier compaction");
        s.compact(c)
            .await
            .expect("compact at the same revision again");
        assert!(s.compacted_revision().await.unwrap() >= c);
        assert_eq!(get(s, &k4).await, Some(r7));

        // And further compaction still works.
        s.compact(r8.mod_revision)
            .await
            .expect("compact to the latest write");
        assert!(s.compacted_revision().await.unwrap() >= r8.mod_revision);
        expect_compacted_watch(s, &prefix, c).await;
        assert_eq!(get(s, &k3).await, Some(r8));
    }

    pub async fn value_size_limits(b: &Backend) {
        let s = &*b.store;
        let prefix = resource_prefix("", "configmaps", None);
        let start = current(s).await;

        // 1 MiB round-trips through create, get, update, list and watch.
        let big_key = object_key("", "configmaps", Some("default"), "big");
        let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let kv = s
            .create(&big_key, Bytes::from(big.clone()))
            .await
            .expect("create 1 MiB");
        assert_eq!(kv.value.len(), big.len());
        let got = get(s, &big_key).await.expect("1 MiB value stored");
        assert_eq!(got.value.as_ref(), big.as_slice());
        let mut big2 = big.clone();
        big2.reverse();
        let kv2 = match s
            .update(&big_key, Bytes::from(big2.clone()), kv.mod_revision)
            .await
        {
            Ok(UpdateOutcome::Updated(kv2)) => kv2,
            other => panic!("update with 1 MiB: {other:?}"),
        };
        assert_eq!(
            get(s, &big_key).await.unwrap().value.as_ref(),
            big2.as_slice()
        );
        assert_eq!(
            list_all(s, &prefix).await[0].value.as_ref(),
            big2.as_slice()
        );
        let mut w = watch(s, &prefix, start).await;
        let events = next_events(&mut w, 2).await;
        assert_eq!(events[0].kv.value.as_ref(), big.as_slice());
        assert_eq!(events[1].kv.value.as_ref(), big2.as_slice());
        assert_eq!(
            events[1].prev.as_ref().unwrap().value.as_ref(),
            big.as_slice()
        );

        // One byte over the limit: refused before anything is written, naming the key.
        let before = current(s).await;
        let too_big = Bytes::from(vec![b'x'; MAX_VALUE_BYTES + 1]);
        let huge_key = object_key("", "configmaps", Some("default"), "huge");
        match s.create(&huge_key, too_big.clone()).await {
            Err(err @ StoreError::ValueTooLarge { .. }) => {
                assert!(
                    err.to_string().contains(&huge_key),
                    "message names the key: {err}"
                );
                let StoreError::ValueTooLarge { key, size, limit } = err else {
                    unreachable!()
                };
                assert_eq!(key, huge_key);
                assert_eq!(size, MAX_VALUE_BYTES + 1);
                assert_eq!(limit, MAX_VALUE_BYTES);
            }
            other => panic!("create over the limit: expected ValueTooLarge, got {other:?}"),
        }
        match s.update(&big_key, too_big, kv2.mod_revision).await {
            Err(StoreError::ValueTooLarge { key, .. }) => assert_eq!(key, big_key),
            other => panic!("update over the limit: expected ValueTooLarge, got {other:?}"),
        }
        assert_eq!(
            current(s).await,
            before,
            "refused writes do not bump the revision"
        );
        assert_eq!(get(s, &huge_key).await, None);
        assert_eq!(get(s, &big_key).await.unwrap(), kv2);

        // Exactly the limit: the embedded store takes it (see embedded_only); etcd's own
        // request limit counts the key and framing too, so there it may be refused, but
        // only as ValueTooLarge naming the key and without a write.
        let max_key = object_key("", "configmaps", Some("default"), "max");
        let before = current(s).await;
        match s
            .create(&max_key, Bytes::from(vec![b'm'; MAX_VALUE_BYTES]))
            .await
        {
            Ok(kv) => {
                assert_eq!(kv.mod_revision, before + 1);
                assert_eq!(get(s, &max_key).await.unwrap().value.len(), MAX_VALUE_BYTES);
            }
            Err(StoreError::ValueTooLarge { key, .. }) => {
                assert_eq!(key, max_key);
                assert_eq!(current(s).await, before);
                assert_eq!(get(s, &max_key).await, None);
            }
            Err(err) => panic!("a value of exactly the limit: unexpected error {err}"),
        }

        // Empty values are values.
        let empty_key = object_key("", "configmaps", Some("default"), "empty");
        let kv = s
            .create(&empty_key, Bytes::new())
            .await
            .expect("create empty");
        assert!(kv.value.is_empty());
        assert_eq!(get(s, &empty_key).await.unwrap().value.len(), 0);
    }

    pub async fn invalid_keys_are_refused(b: &Backend) {
        let s = &*b.store;
        let before = current(s).await;
        for bad in ["", "registry/pods/default/a", "pods", "/registry/a\0b"] {
            match s.create(bad, val("x")).await {
                Err(StoreError::InvalidKey { key, .. }) => assert_eq!(key, bad),
                other => panic!("create {bad:?}: expected InvalidKey, got {other:?}"),
            }
        }
        for bad in ["", "relative/key"] {
            match s.update(bad, val("x"), 1).await {
                Err(StoreError::InvalidKey { .. }) => {}
                other => panic!("update {bad:?}: expected InvalidKey, got {other:?}"),
            }
            match s.delete(bad, None).await {
                Err(StoreError::InvalidKey { .. }) => {}
                other => panic!("delete {bad:?}: expected InvalidKey, got {other:?}"),
            }
        }
        assert_eq!(
            current(s).await,
            before,
            "refused writes do not bump the revision"
        );
    }

    pub async fn snapshot_writes_a_file_atomically(b: &Backend) {
        let s = &*b.store;
        for i in 0..20 {
            create(s, &pod("snap", &format!("p{i}")), &format!("value {i}")).await;
        }
        let dir = b.scratch.path();
        let path = dir.join("snapshot.db");
        s.snapshot(&path).await.expect("snapshot");
        let len = std::fs::metadata(&path).expect("snapshot file").len();
        assert!(len > 0, "snapshot is empty");
        assert_no_leftovers(dir, &["snapshot.db"]);

        // Replacing an existing file, with more data in the store.
        std::fs::write(&path, b"old garbage").unwrap();
        for i in 20..40 {
            create(s, &pod("snap", &format!("p{i}")), &format!("value {i}")).await;
        }
        s.snapshot(&path)
            .await
            .expect("snapshot over an existing file");
        let len2 = std::fs::metadata(&path).unwrap().len();
        assert!(
            len2 > b"old garbage".len() as u64,
            "snapshot did not replace the file"
        );
        assert_ne!(std::fs::read(&path).unwrap(), b"old garbage");
        assert_no_leftovers(dir, &["snapshot.db"]);

        // A snapshot does not disturb the store.
        assert_eq!(
            list_all(s, &resource_prefix("", "pods", Some("snap")))
                .await
                .len(),
            40
        );

        // A path that cannot be written fails cleanly.
        let nowhere = dir.join("no-such-dir").join("snapshot.db");
        assert!(
            s.snapshot(&nowhere).await.is_err(),
            "snapshot into a missing dir"
        );
    }

    fn assert_no_leftovers(dir: &Path, expected: &[&str]) {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let leftovers: Vec<&String> = names
            .iter()
            .filter(|n| {
                n.ends_with(".tmp") || n.contains(".tmp") || !expected.contains(&n.as_str())
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "files left next to the snapshot: {names:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Embedded-only checks: things etcd cannot do in this harness (a value of exactly the limit
// exceeds etcd's default 1.5 MiB request size once the key and framing are added) or that
// only make sense for a file-backed store.
// ---------------------------------------------------------------------------------------

mod embedded_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn value_of_exactly_the_limit_is_accepted() {
        let b = make_embedded().await;
        let s = &*b.store;
        let key = object_key("", "configmaps", Some("default"), "max");
        let value = Bytes::from(vec![b'm'; MAX_VALUE_BYTES]);
        let kv = s
            .create(&key, value.clone())
            .await
            .expect("a value of exactly the limit");
        assert_eq!(kv.value.len(), MAX_VALUE_BYTES);
        assert_eq!(get(s, &key).await.unwrap().value, value);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_restores_to_the_same_state() {
        let b = make_embedded().await;
        let s = &*b.store;
        let a = create(s, &pod("default", "a"), "a1").await;
        let a = update(s, &a.key, "a2", a.mod_revision).await;
        let bk = create(s, &pod("default", "b"), "b1").await;
        delete(s, &bk.key).await;
        let now = current(s).await;

        let path = b.scratch.path().join("snap.db");
        s.snapshot(&path).await.expect("snapshot");
        // A write after the snapshot must not be in it.
        create(s, &pod("default", "after"), "x").await;

        // The documented restore path: check the snapshot, move it into place, open it.
        let db = b.scratch.path().join("restored").join("state.db");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        let restored_at = EmbeddedStore::restore_snapshot(&path, &db, false)
            .await
            .expect("restore the snapshot");
        assert_eq!(restored_at, now);
        let restored = EmbeddedStore::open(&db)
            .await
            .expect("open the restored store");
        assert_eq!(restored.current_revision().await.unwrap(), now);
        assert_eq!(list_all(&restored, "/registry/").await, vec![a.clone()]);
        let next = create(&restored, &pod("default", "c"), "c").await;
        assert_eq!(next.mod_revision, now + 1);
    }

    /// State, revision and compaction survive close and reopen; nothing is reused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_keeps_state_revision_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let store = EmbeddedStore::open(&db).await.expect("open");
        let a = create(&store, &pod("default", "a"), "a1").await;
        let a = update(&store, &a.key, "a2", a.mod_revision).await;
        let c = create(&store, &pod("default", "c"), "c1").await;
        store.compact(a.mod_revision).await.expect("compact");
        let now = current(&store).await;

        // A second open while this one holds the database is refused.
        match EmbeddedStore::open(&db).await {
            Err(StoreError::Locked { path }) => assert_eq!(path, db),
            Ok(_) => panic!("a second open of a held database succeeded"),
            Err(err) => panic!("second open: expected Locked, got {err}"),
        }
        store.close().await;

        let store = EmbeddedStore::open(&db).await.expect("reopen");
        assert_eq!(current(&store).await, now);
        assert!(store.compacted_revision().await.unwrap() >= a.mod_revision);
        assert_eq!(
            list_all(&store, "/registry/").await,
            vec![a.clone(), c.clone()]
        );
        expect_compacted_watch(&store, "/registry/", a.mod_revision - 2).await;
        let mut w = watch(&store, "/registry/", a.mod_revision).await;
        let event = next_event(&mut w).await;
        assert_event(&event, EventKind::Created, &c, None, "replay after reopen");
        let d = create(&store, &pod("default", "d"), "d1").await;
        assert_eq!(d.mod_revision, now + 1, "revisions continue after reopen");
        store.close().await;
    }
}

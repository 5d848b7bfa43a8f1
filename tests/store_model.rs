//! Model-based test of the embedded store: random writes (creates, updates with right and
//! stale revisions, deletes with and without preconditions) and compactions, checked
//! against a plain in-memory model of every revision — lists at every retained revision
//! (paged with small limits), and a watch replaying the whole retained history.
//!
//! The embedded backend answers historical lists from the log without a key index (the
//! state at R is the current state with every change after R undone); this is where a
//! mistake in that would show.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use moor::store::{
    DeleteOutcome, EmbeddedStore, EventKind, ListOptions, Revision, Store, UpdateOutcome,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Create(u8),
    /// Update key; `stale` uses a wrong expected revision.
    Update(u8, bool),
    /// Delete key; `Some(stale)` uses a precondition, right or wrong.
    Delete(u8, Option<bool>),
    /// Compact to this fraction (0–100 %) of the current revision.
    Compact(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12).prop_map(Op::Create),
        4 => (0u8..12, any::<bool>()).prop_map(|(k, s)| Op::Update(k, s)),
        2 => (0u8..12, proptest::option::of(any::<bool>())).prop_map(|(k, p)| Op::Delete(k, p)),
        1 => (0u8..=100).prop_map(Op::Compact),
    ]
}

/// Keys under two prefixes, so prefix filtering is exercised too.
fn key(k: u8) -> String {
    let group = if k.is_multiple_of(3) { "other" } else { "pods" };
    format!("/registry/{group}/ns/k{k:02}")
}

type State = BTreeMap<String, (Bytes, Revision, Revision)>;

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    // states[r] = the model's state after revision r.
    let mut states: Vec<State> = vec![State::new()];
    let mut compacted: Revision = 0;
    for (i, op) in ops.iter().enumerate() {
        let now = states.last().unwrap().clone();
        let rev = states.len() as Revision - 1;
        let value = Bytes::from(format!("v{i}"));
        let mut next = now.clone();
        let wrote = match op {
            Op::Create(k) => {
                let result = store.create(&key(*k), value.clone()).await;
                match now.get(&key(*k)) {
                    Some(_) => {
                        prop_assert!(result.is_err(), "create of existing {}", key(*k));
                        false
                    }
                    None => {
                        let kv = result.unwrap();
                        prop_assert_eq!(kv.mod_revision, rev + 1);
                        next.insert(key(*k), (value, rev + 1, rev + 1));
                        true
                    }
                }
            }
            Op::Update(k, stale) => {
                let current = now.get(&key(*k)).map(|(_, _, m)| *m);
                let expected = match (current, stale) {
                    (Some(m), false) => m,
                    (Some(m), true) => m + 1000,
                    (None, _) => 1,
                };
                match store
                    .update(&key(*k), value.clone(), expected)
                    .await
                    .unwrap()
                {
                    UpdateOutcome::Updated(kv) => {
                        prop_assert!(current == Some(expected));
                        prop_assert_eq!(kv.mod_revision, rev + 1);
                        let create = now[&key(*k)].1;
                        prop_assert_eq!(kv.create_revision, create);
                        next.insert(key(*k), (value, create, rev + 1));
                        true
                    }
                    UpdateOutcome::Conflict(cur) => {
                        prop_assert!(current != Some(expected));
                        prop_assert_eq!(cur.map(|kv| kv.mod_revision), current);
                        false
                    }
                }
            }
            Op::Delete(k, pre) => {
                let current = now.get(&key(*k)).map(|(_, _, m)| *m);
                let expected = match (current, pre) {
                    (_, None) => None,
                    (Some(m), Some(false)) => Some(m),
                    (Some(m), Some(true)) => Some(m + 1000),
                    (None, Some(_)) => Some(1),
                };
                match store.delete(&key(*k), expected).await.unwrap() {
                    DeleteOutcome::Deleted { revision, .. } => {
                        prop_assert_eq!(revision, rev + 1);
                        next.remove(&key(*k));
                        true
                    }
                    DeleteOutcome::NotFound => {
                        prop_assert!(current.is_none());
                        false
                    }
                    DeleteOutcome::Conflict(cur) => {
                        prop_assert_eq!(Some(cur.mod_revision), current);
                        false
                    }
                }
            }
            Op::Compact(pct) => {
                let target = rev * (*pct as i64) / 100;
                store.compact(target).await.unwrap();
                compacted = compacted.max(target);
                false
            }
        };
        if wrote {
            states.push(next);
        }
    }
    let current = states.len() as Revision - 1;
    prop_assert_eq!(store.current_revision().await.unwrap(), current);
    // Give physical compaction time to run, so lists below exercise a trimmed log.
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Revision 0 means "current" to list, so history starts at 1.
    for at in compacted.max(1)..=current {
        for limit in [1usize, 3, 0] {
            let mut got = State::new();
            let mut start_after = None;
            loop {
                let page = store
                    .list(
                        "/registry/pods/",
                        ListOptions {
                            revision: Some(at),
                            limit: Some(limit),
                            start_after: start_after.clone(),
                        },
                    )
                    .await
                    .unwrap();
                for kv in &page.kvs {
                    got.insert(
                        kv.key.clone(),
                        (kv.value.clone(), kv.create_revision, kv.mod_revision),
                    );
                }
                start_after = page.kvs.last().map(|kv| kv.key.clone());
                if !page.more {
                    break;
                }
                prop_assert!(limit > 0 && page.kvs.len() == limit);
            }
            let want: State = states[at as usize]
                .iter()
                .filter(|(k, _)| k.starts_with("/registry/pods/"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(&got, &want, "list at {} (limit {})", at, limit);
        }
    }
    if compacted > 1 {
        let below = store
            .list(
                "/registry/",
                ListOptions {
                    revision: Some(compacted - 1),
                    ..Default::default()
                },
            )
            .await;
        prop_assert!(below.is_err_and(|e| e.is_compacted()));
    }

    // A watch from the compacted revision replays exactly the model's changes since then.
    let mut watch = store.watch("/registry/", compacted).await.unwrap();
    for r in compacted + 1..=current {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("watch event in time")
            .expect("stream open")
            .unwrap();
        prop_assert_eq!(event.revision(), r);
        let (before, after) = (&states[r as usize - 1], &states[r as usize]);
        let k = &event.kv.key;
        let prev = before.get(k).map(|(v, _, m)| (v.clone(), *m));
        prop_assert_eq!(
            event
                .prev
                .as_ref()
                .map(|p| (p.value.clone(), p.mod_revision)),
            prev
        );
        match event.kind {
            EventKind::Created => prop_assert!(!before.contains_key(k) && after.contains_key(k)),
            EventKind::Updated => prop_assert!(before.contains_key(k) && after.contains_key(k)),
            EventKind::Deleted => prop_assert!(before.contains_key(k) && !after.contains_key(k)),
        }
        if let Some((v, c, _)) = after.get(k) {
            prop_assert_eq!(&event.kv.value, v);
            prop_assert_eq!(event.kv.create_revision, *c);
        }
    }
    store.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn embedded_store_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops))?;
    }
}

//! Several moor servers on one etcd see one consistent state: two independent `EtcdStore`s
//! (as two servers would hold) against one real etcd.

#[path = "support/etcd.rs"]
mod etcd_support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use moor::store::etcd::{EtcdConfig, EtcdStore};
use moor::store::{EventKind, Store, UpdateOutcome};

async fn connect(etcd: &etcd_support::EtcdInstance) -> Arc<dyn Store> {
    Arc::new(
        EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
            .await
            .expect("connect"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_state() {
    let etcd = etcd_support::EtcdInstance::start();
    let (a, b) = (connect(&etcd).await, connect(&etcd).await);
    let key = "/registry/configmaps/default/shared";

    let mut watch_b = b.watch("/registry/configmaps/", 0).await.unwrap();
    let created = a.create(key, Bytes::from_static(b"1")).await.unwrap();
    // B sees A's write at once, at the same revision.
    let (seen, rev) = b.get(key).await.unwrap();
    assert_eq!(seen.unwrap().mod_revision, created.mod_revision);
    assert!(rev >= created.mod_revision);
    // Creating the same key from B is refused: one state, not two.
    assert!(b.create(key, Bytes::from_static(b"2")).await.is_err());

    // Optimistic concurrency across servers: both update from the same revision; exactly
    // one wins and the loser is shown the winner's value.
    let (ra, rb) = tokio::join!(
        a.update(key, Bytes::from_static(b"from-a"), created.mod_revision),
        b.update(key, Bytes::from_static(b"from-b"), created.mod_revision),
    );
    let outcomes = [ra.unwrap(), rb.unwrap()];
    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            UpdateOutcome::Updated(kv) => Some(kv.clone()),
            UpdateOutcome::Conflict(_) => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let loser_saw = outcomes.iter().find_map(|o| match o {
        UpdateOutcome::Conflict(cur) => cur.clone(),
        UpdateOutcome::Updated(_) => None,
    });
    assert_eq!(loser_saw.unwrap(), winners[0]);

    // B's watch saw the create and the one winning update, in order, and nothing else.
    let mut events = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch_b.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .unwrap();
        events.push(event);
    }
    assert_eq!(events[0].kind, EventKind::Created);
    assert_eq!(events[1].kind, EventKind::Updated);
    assert_eq!(events[1].kv, winners[0]);
    assert_eq!(
        a.current_revision().await.unwrap(),
        b.current_revision().await.unwrap()
    );
}

//! Leader election: of several controller managers on one API server only the Lease holder
//! acts; a holder that stops renewing is replaced after the lease duration, one that shuts
//! down hands over at once.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use moor::controllers::ControllerManager;
use moor::controllers::leader::LeaderConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn config(identity: &str) -> LeaderConfig {
    let mut config = LeaderConfig::new("moor-controller-manager");
    config.identity = identity.to_owned();
    config.lease_duration = Duration::from_secs(2);
    config.renew_deadline = Duration::from_millis(1500);
    config.retry_period = Duration::from_millis(200);
    config
}

fn manager(client: &Client, identity: &str) -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn(
        ControllerManager::new(client.clone())
            .with_controllers(vec!["replicaset".into()])
            .with_leader_election(config(identity))
            .run(shutdown.clone()),
    );
    shutdown
}

async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases
        .get_opt("moor-controller-manager")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn pod_count(client: &Client) -> usize {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count()
}

async fn replica_set(client: &Client, replicas: i32) {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_waits_while_another_holds_the_lease() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    // Someone else holds the lease and keeps renewing it.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "moor-controller-manager"},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 2,
                 "renewTime": jiff::Timestamp::now().to_string()}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let renewing = CancellationToken::new();
    let renewer = {
        let leases = leases.clone();
        let renewing = renewing.clone();
        tokio::spawn(async move {
            while !renewing.is_cancelled() {
                let patch = json!({"spec": {"renewTime": jiff::Timestamp::now().to_string()}});
                let _ = leases
                    .patch(
                        "moor-controller-manager",
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let shutdown = manager(&client, "candidate");
    replica_set(&client, 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pod_count(&client).await, 0, "a non-leader acted");
    assert_eq!(holder(&client).await.as_deref(), Some("someone-else"));

    // The holder stops renewing: after the lease duration the candidate takes over.
    renewing.cancel();
    renewer.await.unwrap();
    eventually_ok!("the candidate to lead", {
        let h = holder(&client).await;
        if h.as_deref() == Some("candidate") {
            Ok(())
        } else {
            Err(h)
        }
    });
    eventually_ok!("3 pods", {
        let n = pod_count(&client).await;
        if n == 3 { Ok(()) } else { Err(n) }
    });
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_managers_one_acts_and_the_other_takes_over() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let a = manager(&client, "a");
    let b = manager(&client, "b");
    let first = eventually_ok!("a leader", {
        match holder(&client).await {
            Some(h) if h == "a" || h == "b" => Ok(h),
            other => Err(other),
        }
    });
    replica_set(&client, 4).await;
    eventually_ok!("4 pods", {
        let n = pod_count(&client).await;
        if n == 4 { Ok(()) } else { Err(n) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pod_count(&client).await, 4, "two managers acted");

    // The leader shuts down (and releases the lease): the other leads and acts.
    let (leader, other) = if first == "a" { (a, "b") } else { (b, "a") };
    leader.cancel();
    eventually_ok!("the other to lead", {
        let h = holder(&client).await;
        if h.as_deref() == Some(other) {
            Ok(())
        } else {
            Err(h)
        }
    });
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await
        .unwrap();
    eventually_ok!("6 pods", {
        let n = pod_count(&client).await;
        if n == 6 { Ok(()) } else { Err(n) }
    });
    let names: Vec<String> = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| {
            format!(
                "{} deleting={}",
                p.name_any(),
                p.metadata.deletion_timestamp.is_some()
            )
        })
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
}

/// The generic helper other components (the GitOps sources) use: of two candidates only one
/// runs its work at a time, and the other starts when the first shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_while_leader_runs_one_candidate_at_a_time() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let mut tokens = Vec::new();
    for identity in ["x", "y"] {
        let shutdown = CancellationToken::new();
        let mut config = config(identity);
        config.name = "gitops-test".to_owned();
        let (running, most, started) = (running.clone(), most.clone(), started.clone());
        tokio::spawn(moor::controllers::leader::run_while_leader(
            client.clone(),
            config,
            shutdown.clone(),
            move |term| {
                let (running, most, started) = (running.clone(), most.clone(), started.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    term.cancelled().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            },
        ));
        tokens.push(shutdown);
    }
    eventually_ok!("one started", {
        let n = started.load(Ordering::SeqCst);
        if n == 1 { Ok(()) } else { Err(n) }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(started.load(Ordering::SeqCst), 1, "both candidates ran");
    // Whoever leads shuts down; the other takes over.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let leader = leases
        .get("gitops-test")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    tokens[if leader == "x" { 0 } else { 1 }].cancel();
    eventually_ok!("the other started", {
        let n = started.load(Ordering::SeqCst);
        if n == 2 { Ok(()) } else { Err(n) }
    });
    assert_eq!(most.load(Ordering::SeqCst), 1, "two ran at once");
    for token in tokens {
        token.cancel();
    }
}

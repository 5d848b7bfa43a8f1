//! The ReplicaSet controller against a real API server: scaling both ways, exactly
//! `replicas` pods however the watch lags, adoption and release, which pods go first on a
//! scale-down, status counts, events, and a restart that duplicates nothing.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use moor::controllers::ControllerManager;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn start_controllers(client: &Client) -> CancellationToken {
    let shutdown = CancellationToken::new();
    tokio::spawn(
        ControllerManager::new(client.clone())
            .with_controllers(vec!["replicaset".into()])
            .run(shutdown.clone()),
    );
    shutdown
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .unwrap()
}

/// Live (not terminating) pods controlled by the ReplicaSet named `owner`.
async fn owned_pods(pods: &Api<Pod>, owner: &str) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.name == owner)
        })
        .collect()
}

async fn set_ready(pods: &Api<Pod>, name: &str, ready: bool, since: &str) {
    let status = json!({"status": {
        "phase": "Running",
        "podIP": "10.42.0.9",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                        "lastTransitionTime": since}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_and_down_with_exact_counts_and_status() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let shutdown = start_controllers(&client);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replica_set("web", 25))
        .await
        .unwrap();

    let created = eventually_ok!("25 pods", {
        let owned = owned_pods(&pods, "web").await;
        if owned.len() == 25 {
            Ok(owned)
        } else {
            Err(owned.len())
        }
    });
    // Pods come from the template and point at their owner.
    let pod = &created[0];
    assert!(pod.name_any().starts_with("web-"));
    assert_eq!(pod.labels()["tier"], "web");
    let owner = &pod.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.block_owner_deletion),
        ("ReplicaSet", Some(true))
    );

    // Never more than asked, however the watch lags: give it time to overshoot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(owned_pods(&pods, "web").await.len(), 25);

    // Ready pods show in status; availability waits for minReadySeconds.
    for p in created.iter().take(10) {
        set_ready(&pods, &p.name_any(), true, "2026-01-01T00:00:00Z").await;
    }
    let status = eventually_ok!("status counts", {
        let rs = sets.get("web").await.unwrap();
        let s = rs.status.clone().unwrap_or_default();
        if s.replicas == 25 && s.ready_replicas == Some(10) && s.available_replicas == Some(10) {
            Ok(s)
        } else {
            Err(s)
        }
    });
    assert_eq!(status.fully_labeled_replicas, Some(25));
    assert_eq!(status.observed_generation, Some(1));

    // Scale down: the not-ready pods go first, the ready ones stay.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 10}})),
    )
    .await
    .unwrap();
    let remaining = eventually_ok!("10 pods", {
        let owned = owned_pods(&pods, "web").await;
        if owned.len() == 10 {
            Ok(owned)
        } else {
            Err(owned.len())
        }
    });
    let ready_names: Vec<String> = created.iter().take(10).map(|p| p.name_any()).collect();
    for p in &remaining {
        assert!(
            ready_names.contains(&p.name_any()),
            "a ready pod was deleted first"
        );
    }
    // Events are written in the background, after the pods they tell of.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually_ok!("SuccessfulCreate and SuccessfulDelete events", {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        if reasons.iter().any(|r| r == "SuccessfulCreate")
            && reasons.iter().any(|r| r == "SuccessfulDelete")
        {
            Ok(())
        } else {
            Err(reasons)
        }
    });
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_orphans_and_releases_pods_that_stop_matching() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Two orphans matching the selector exist before the ReplicaSet.
    for name in ["orphan-a", "orphan-b"] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "api"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let shutdown = start_controllers(&client);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replica_set("api", 3))
        .await
        .unwrap();
    let owned = eventually_ok!("3 pods incl. the orphans", {
        let owned = owned_pods(&pods, "api").await;
        if owned.len() == 3 {
            Ok(owned)
        } else {
            Err(owned.len())
        }
    });
    let names: Vec<String> = owned.iter().map(|p| p.name_any()).collect();
    assert!(names.contains(&"orphan-a".to_owned()) && names.contains(&"orphan-b".to_owned()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );

    // A pod relabelled out of the selector is released and replaced.
    pods.patch(
        "orphan-a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "debug"}}})),
    )
    .await
    .unwrap();
    eventually_ok!("orphan-a released", {
        let pod = pods.get("orphan-a").await.unwrap();
        if pod.owner_references().is_empty() {
            Ok(())
        } else {
            Err(pod.owner_references().to_vec())
        }
    });
    eventually_ok!("a replacement", {
        let owned = owned_pods(&pods, "api").await;
        if owned.len() == 3 && !owned.iter().any(|p| p.name_any() == "orphan-a") {
            Ok(())
        } else {
            Err(owned.len())
        }
    });
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_duplicates_nothing() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replica_set("db", 5))
        .await
        .unwrap();
    for round in 0..3 {
        let shutdown = start_controllers(&client);
        eventually_ok!(format!("5 pods in round {round}"), {
            let owned = owned_pods(&pods, "db").await;
            if owned.len() == 5 {
                Ok(())
            } else {
                Err(owned.len())
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(owned_pods(&pods, "db").await.len(), 5);
    let all: Vec<Value> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    assert_eq!(all.len(), 5, "{all:?}");
}

//! The Deployment and ReplicaSet controllers together against a real API server, with a
//! stand-in kubelet that marks new pods Ready: rolling updates within maxSurge and
//! maxUnavailable, Recreate, scaling, pause, revision history, and kubectl's rollout
//! commands (status, history, undo, restart) and scale.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use apiserver_support::{Backend, TestServer};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use moor::controllers::ControllerManager;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(20);

struct Cluster {
    server: TestServer,
    client: Client,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The API server, the ReplicaSet and Deployment controllers, and a kubelet stand-in that
/// marks every new pod Running and Ready after `ready_after`.
async fn start(ready_after: Duration) -> Cluster {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let shutdown = CancellationToken::new();
    tokio::spawn(
        ControllerManager::new(client.clone())
            .with_controllers(vec!["replicaset".into(), "deployment".into()])
            .run(shutdown.clone()),
    );
    tokio::spawn(fake_kubelet(client.clone(), ready_after, shutdown.clone()));
    Cluster {
        server,
        client,
        shutdown,
        dir: tempfile::tempdir().unwrap(),
    }
}

async fn fake_kubelet(client: Client, ready_after: Duration, shutdown: CancellationToken) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut events = watcher(pods, watcher::Config::default()).boxed();
    let mut seen = HashSet::new();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = events.next() => e,
        };
        let Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) = event else {
            continue;
        };
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        if pod.metadata.deletion_timestamp.is_some() || !seen.insert(format!("{ns}/{name}")) {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        tokio::spawn(async move {
            tokio::time::sleep(ready_after).await;
            let now = jiff::Timestamp::now().to_string();
            let status = json!({"status": {"phase": "Running", "podIP": "10.42.0.7",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
            let _ = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await;
        });
    }
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    }))
    .unwrap()
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
}

/// Done when status says every replica runs the current template and is available.
async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) {
    eventually_ok!(format!("{name} rolled out"), {
        let d = api.get(name).await.unwrap();
        let s = d.status.clone().unwrap_or_default();
        let done = s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(replicas)
            && s.replicas == Some(replicas)
            && s.available_replicas == Some(replicas);
        if done { Ok(()) } else { Err(s) }
    });
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_stays_within_surge_and_unavailability() {
    let cluster = start(Duration::from_millis(150)).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 4, "v1"))
        .await
        .unwrap();
    rolled_out(&deployments, "web", 4).await;

    set_image(&deployments, "web", "v2").await;
    // Watch every step: never more than 4 + 1 pods, never fewer than 4 - 1 ready.
    let deadline = Instant::now() + PATIENCE;
    let mut max_total = 0;
    let mut min_ready = usize::MAX;
    loop {
        let all: Vec<Pod> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = all
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        max_total = max_total.max(all.len());
        min_ready = min_ready.min(ready);
        if all.len() == 4 && ready == 4 && all.iter().all(|p| image_of(p) == "v2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollout did not finish: {} pods",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(max_total <= 5, "maxSurge 1 exceeded: {max_total} pods");
    assert!(
        min_ready >= 3,
        "maxUnavailable 1 exceeded: {min_ready} ready"
    );
    rolled_out(&deployments, "web", 4).await;

    // Two ReplicaSets with revisions 1 and 2; the Deployment carries revision 2.
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let mut revisions: Vec<String> = sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|rs| rs.annotations()["deployment.kubernetes.io/revision"].clone())
        .collect();
    revisions.sort();
    assert_eq!(revisions, ["1", "2"]);
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "2");
    let progressing = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let cluster = start(Duration::from_millis(50)).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let mut d = deployment("db", 3, "v1");
    d.spec.as_mut().unwrap().strategy =
        Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    rolled_out(&deployments, "db", 3).await;
    set_image(&deployments, "db", "v2").await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let all = pods.list(&ListParams::default()).await.unwrap().items;
        let images: HashSet<String> = all.iter().map(image_of).collect();
        assert!(images.len() <= 1, "old and new pods together: {images:?}");
        if all.len() == 3 && images.contains("v2") {
            break;
        }
        assert!(Instant::now() < deadline, "recreate did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rolled_out(&deployments, "db", 3).await;
}

fn kubectl(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    let kubeconfig = cluster.dir.path().join("kubeconfig.yaml");
    if !kubeconfig.exists() {
        moor::cli::server::write_kubeconfig(&kubeconfig, &cluster.server.url).unwrap();
    }
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_history_undo_restart_and_scale_work() {
    let cluster = start(Duration::from_millis(50)).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("app", 2, "v1"))
        .await
        .unwrap();
    let (ok, out) = tokio::task::block_in_place(|| {
        kubectl(
            &cluster,
            &["rollout", "status", "deployment/app", "--timeout=20s"],
        )
    });
    assert!(ok, "{out}");
    assert!(out.contains("successfully rolled out"), "{out}");

    set_image(&deployments, "app", "v2").await;
    rolled_out(&deployments, "app", 2).await;
    let (ok, out) = tokio::task::block_in_place(|| {
        kubectl(&cluster, &["rollout", "history", "deployment/app"])
    });
    assert!(ok, "{out}");
    assert!(out.contains('1') && out.contains('2'), "{out}");

    // Undo: back to v1's template, under a new revision (3).
    let (ok, out) =
        tokio::task::block_in_place(|| kubectl(&cluster, &["rollout", "undo", "deployment/app"]));
    assert!(ok, "{out}");
    eventually_ok!("pods back on v1", {
        let all = pods.list(&ListParams::default()).await.unwrap().items;
        let live: Vec<String> = all
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(image_of)
            .collect();
        if live.len() == 2 && live.iter().all(|i| i == "v1") {
            Ok(())
        } else {
            Err(live)
        }
    });
    rolled_out(&deployments, "app", 2).await;
    eventually_ok!("revision 3", {
        let d = deployments.get("app").await.unwrap();
        let rev = d
            .annotations()
            .get("deployment.kubernetes.io/revision")
            .cloned();
        if rev.as_deref() == Some("3") {
            Ok(())
        } else {
            Err(rev)
        }
    });

    // Restart: a new template annotation, so new pods (same image).
    let before: HashSet<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    let (ok, out) = tokio::task::block_in_place(|| {
        kubectl(&cluster, &["rollout", "restart", "deployment/app"])
    });
    assert!(ok, "{out}");
    eventually_ok!("all pods replaced", {
        let all = pods.list(&ListParams::default()).await.unwrap().items;
        let live: Vec<String> = all
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        if live.len() == 2 && live.iter().all(|n| !before.contains(n)) {
            Ok(())
        } else {
            Err(live)
        }
    });

    // Scale through the scale subresource.
    let (ok, out) = tokio::task::block_in_place(|| {
        kubectl(&cluster, &["scale", "deployment/app", "--replicas=5"])
    });
    assert!(ok, "{out}");
    rolled_out(&deployments, "app", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployments_scale_but_do_not_roll_out_and_history_is_limited() {
    let cluster = start(Duration::from_millis(30)).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let mut d = deployment("svc", 2, "v1");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    rolled_out(&deployments, "svc", 2).await;

    deployments
        .patch(
            "svc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap();
    set_image(&deployments, "svc", "v2").await;
    deployments
        .patch(
            "svc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    eventually_ok!("scaled while paused", {
        let d = deployments.get("svc").await.unwrap();
        let s = d.status.unwrap_or_default();
        if s.available_replicas == Some(3) {
            Ok(())
        } else {
            Err(s)
        }
    });
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "a paused deployment rolled out"
    );

    deployments
        .patch(
            "svc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .unwrap();
    rolled_out(&deployments, "svc", 3).await;
    for image in ["v3", "v4"] {
        set_image(&deployments, "svc", image).await;
        rolled_out(&deployments, "svc", 3).await;
    }
    // revisionHistoryLimit 1: the current ReplicaSet and one old one.
    eventually_ok!("old ReplicaSets cleaned up", {
        let items = sets.list(&ListParams::default()).await.unwrap().items;
        let live: Vec<String> = items
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .map(|rs| rs.name_any())
            .collect();
        if live.len() == 2 { Ok(()) } else { Err(live) }
    });
}

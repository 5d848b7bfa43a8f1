//! Node failure end to end: a node's heartbeat stops, the node lifecycle controller taints
//! it and evicts its pods once their toleration runs out, and the ReplicaSet controller
//! replaces them. The test stands in for the agent (node, Lease, heartbeat) and for the
//! scheduler (binding pods to the node).

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use moor::controllers::{ControllerManager, Options};
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn register_node(client: &Client, name: &str) {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "lastHeartbeatTime": now, "lastTransitionTime": now}]},
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                 "renewTime": MicroTime(jiff::Timestamp::now())},
    }))
    .unwrap();
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
}

fn heartbeat(client: &Client, name: &str) -> CancellationToken {
    let stop = CancellationToken::new();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let (name, token) = (name.to_owned(), stop.clone());
    tokio::spawn(async move {
        while !token.is_cancelled() {
            let patch = json!({"spec": {"renewTime": MicroTime(jiff::Timestamp::now())}});
            let _ = leases
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
    stop
}

fn live(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_dead_node_are_evicted_and_replaced() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(
        ControllerManager::new(client.clone())
            .with_controllers(vec!["replicaset".into(), "nodelifecycle".into()])
            .with_options(Options {
                node_monitor_grace: Duration::from_secs(1),
                pod_eviction_timeout: Duration::from_secs(1),
                data_dir: dir.path().into(),
            })
            .run(shutdown.clone()),
    );
    register_node(&client, "n1").await;
    let beating = heartbeat(&client, "n1");

    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first = eventually_ok!("3 pods", {
        let items = pods.list(&ListParams::default()).await.unwrap().items;
        if items.len() == 3 {
            Ok(items)
        } else {
            Err(items.len())
        }
    });
    // The scheduler's part: bind them to n1.
    for pod in &first {
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod.name_any()},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
        let request = axum::http::Request::post(format!(
            "/api/v1/namespaces/default/pods/{}/binding",
            pod.name_any()
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding).unwrap())
        .unwrap();
        client.request::<serde_json::Value>(request).await.unwrap();
    }

    // The node dies: its pods are evicted and replaced by new, unbound ones.
    beating.cancel();
    let evicted: Vec<String> = first.iter().map(|p| p.name_any()).collect();
    eventually_ok!("3 replacements", {
        let items = pods.list(&ListParams::default()).await.unwrap().items;
        let fresh: Vec<String> = live(&items)
            .iter()
            .filter(|p| !evicted.contains(&p.name_any()))
            .map(|p| p.name_any())
            .collect();
        let old_alive = live(&items)
            .iter()
            .filter(|p| evicted.contains(&p.name_any()))
            .count();
        if fresh.len() == 3 && old_alive == 0 {
            Ok(())
        } else {
            Err((fresh, old_alive))
        }
    });
    let node = Api::<Node>::all(client.clone()).get("n1").await.unwrap();
    let taints: Vec<String> = node
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    assert!(
        taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_owned()),
        "{taints:?}"
    );
    shutdown.cancel();
}

//! The garbage collector and the namespace controller against a real API server, with the
//! API server's deletion semantics they rely on: background cascades over several levels,
//! a dependent with another owner left alone, foreground deletion held by blocking
//! dependents, orphaning, dangling dependents found after a restart, and namespace deletion
//! (Terminating, new content refused, everything deleted, then the namespace gone) with the
//! DeleteOptions kubectl sends.
//!
//! Only these two controllers run: owner references are set by the tests themselves.

#[path = "support/wait.rs"]
#[macro_use]
mod wait;

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::fmt::Debug;
use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use moor::controllers::ControllerManager;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(10);

/// The garbage collector and the namespace controller, until the token fires; the handle
/// ends when they have stopped.
fn start_controllers(client: &Client) -> (CancellationToken, JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(
        ControllerManager::new(client.clone())
            .with_controllers(vec!["garbagecollector".into(), "namespace".into()])
            .run(shutdown.clone()),
    );
    (shutdown, running)
}

/// A reference to `owner` (of `api_version`/`kind`), blocking its foreground deletion or not.
fn owned_by<K: Resource>(api_version: &str, kind: &str, owner: &K, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}

fn with_meta<K: DeserializeOwned>(
    mut body: Value,
    name: &str,
    owners: &[OwnerReference],
    finalizers: &[&str],
) -> K {
    body["metadata"] = json!({"name": name, "labels": {"app": "gc"}});
    if !owners.is_empty() {
        body["metadata"]["ownerReferences"] = json!(owners);
    }
    if !finalizers.is_empty() {
        body["metadata"]["finalizers"] = json!(finalizers);
    }
    serde_json::from_value(body).unwrap()
}

async fn config_map(
    api: &Api<ConfigMap>,
    name: &str,
    owners: &[OwnerReference],
    finalizers: &[&str],
) -> ConfigMap {
    let cm = with_meta(json!({"data": {"k": "v"}}), name, owners, finalizers);
    api.create(&PostParams::default(), &cm).await.unwrap()
}

async fn pod(api: &Api<Pod>, name: &str, owners: &[OwnerReference], finalizers: &[&str]) -> Pod {
    let pod = with_meta(
        json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        name,
        owners,
        finalizers,
    );
    api.create(&PostParams::default(), &pod).await.unwrap()
}

fn workload_spec(replicas: i32) -> Value {
    json!({"spec": {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "gc"}},
        "template": {
            "metadata": {"labels": {"app": "gc"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    }})
}

async fn replica_set(api: &Api<ReplicaSet>, name: &str, owners: &[OwnerReference]) -> ReplicaSet {
    let rs = with_meta(workload_spec(2), name, owners, &[]);
    api.create(&PostParams::default(), &rs).await.unwrap()
}

async fn deployment(api: &Api<Deployment>, name: &str) -> Deployment {
    let d = with_meta(workload_spec(2), name, &[], &[]);
    api.create(&PostParams::default(), &d).await.unwrap()
}

/// `Ok` once `name` is gone; the object while it is not.
async fn gone<K>(api: &Api<K>, name: &str) -> Result<(), K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.get_opt(name).await.unwrap() {
        None => Ok(()),
        Some(obj) => Err(obj),
    }
}

/// `Ok(object)` once it exists and `check` holds.
async fn holds<K>(api: &Api<K>, name: &str, check: impl Fn(&K) -> bool) -> Result<K, Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.get_opt(name).await.unwrap() {
        Some(obj) if check(&obj) => Ok(obj),
        other => Err(other),
    }
}

fn owner_uids<K: Resource>(obj: &K) -> Vec<String> {
    obj.meta()
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|r| r.uid.clone())
        .collect()
}

/// A raw request (what kubectl sends), answered with the body as JSON or the error status.
async fn raw(
    client: &Client,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> Result<Value, kube::core::Status> {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    match client.request_text(request).await {
        Ok(text) => Ok(serde_json::from_str(&text).unwrap()),
        Err(kube::Error::Api(status)) => Err(*status),
        Err(other) => panic!("{method} {uri}: {other}"),
    }
}

async fn remove_finalizers<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_cascades_through_every_level() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let (shutdown, _) = start_controllers(&client);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let d = deployment(&deployments, "web").await;
    let rs = replica_set(
        &sets,
        "web-1",
        &[owned_by("apps/v1", "Deployment", &d, true)],
    )
    .await;
    let rs_ref = owned_by("apps/v1", "ReplicaSet", &rs, true);
    for i in 0..3 {
        pod(
            &pods,
            &format!("web-1-{i}"),
            std::slice::from_ref(&rs_ref),
            &[],
        )
        .await;
    }
    // Something that owns nothing and is owned by nothing stays.
    config_map(&cms, "bystander", &[], &[]).await;

    // A removed object of most kinds is answered with a Status naming it.
    let answer = deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let status = answer.right().expect("a Status for a removed Deployment");
    assert_eq!(
        status.details.as_ref().map(|d| d.name.as_str()),
        Some("web")
    );

    eventually_ok!("the ReplicaSet collected", within PATIENCE, gone(&sets, "web-1").await);
    for i in 0..3 {
        eventually_ok!(
            "its pods collected", within PATIENCE,
            gone(&pods, &format!("web-1-{i}")).await
        );
    }
    assert!(cms.get_opt("bystander").await.unwrap().is_some());
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_with_another_owner_stays_until_the_last_one_goes() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let (shutdown, _) = start_controllers(&client);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let a = config_map(&cms, "owner-a", &[], &[]).await;
    let b = config_map(&cms, "owner-b", &[], &[]).await;
    let ref_a = owned_by("v1", "ConfigMap", &a, false);
    let ref_b = owned_by("v1", "ConfigMap", &b, false);
    config_map(&cms, "shared", &[ref_a.clone(), ref_b.clone()], &[]).await;
    config_map(&cms, "only-a", std::slice::from_ref(&ref_a), &[]).await;

    cms.delete("owner-a", &DeleteParams::background())
        .await
        .unwrap();
    eventually_ok!("the sole dependent collected", within PATIENCE, gone(&cms, "only-a").await);
    // The shared one lives on, without its reference to the owner that went.
    let shared = eventually_ok!(
        "the dangling reference dropped", within PATIENCE,
        holds(&cms, "shared", |cm| owner_uids(cm)
            == vec![ref_b.uid.clone()])
        .await
    );
    assert!(shared.metadata.deletion_timestamp.is_none());

    cms.delete("owner-b", &DeleteParams::default())
        .await
        .unwrap();
    eventually_ok!(
        "collected once its last owner went", within PATIENCE,
        gone(&cms, "shared").await
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_waits_for_the_blocking_dependents() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let (shutdown, _) = start_controllers(&client);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let rs = replica_set(&sets, "fg", &[]).await;
    let blocking = owned_by("apps/v1", "ReplicaSet", &rs, true);
    let loose = owned_by("apps/v1", "ReplicaSet", &rs, false);
    pod(&pods, "fg-free", std::slice::from_ref(&blocking), &[]).await;
    pod(&pods, "fg-loose", &[loose], &[]).await;
    // Held by someone else's finalizer: its deletion starts, but it stays for now.
    pod(&pods, "fg-held", &[blocking], &["example.com/hold"]).await;

    sets.delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually_ok!("the free dependents deleted", within PATIENCE, gone(&pods, "fg-free").await);
    eventually_ok!("the loose dependent deleted", within PATIENCE, gone(&pods, "fg-loose").await);
    eventually_ok!(
        "the held dependent being deleted", within PATIENCE,
        holds(&pods, "fg-held", |p| p
            .metadata
            .deletion_timestamp
            .is_some())
        .await
    );
    // The owner waits for its blocking dependent, marked and with the finalizer.
    let waiting = sets.get("fg").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        waiting.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_owned()])
    );

    remove_finalizers(&pods, "fg-held").await;
    eventually_ok!("the held dependent gone", within PATIENCE, gone(&pods, "fg-held").await);
    eventually_ok!(
        "the owner gone after its dependents", within PATIENCE,
        gone(&sets, "fg").await
    );

    // Over two levels: the middle one is deleted in the foreground too.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deployment(&deployments, "deep").await;
    let rs = replica_set(
        &sets,
        "deep-1",
        &[owned_by("apps/v1", "Deployment", &d, true)],
    )
    .await;
    pod(
        &pods,
        "deep-1-a",
        &[owned_by("apps/v1", "ReplicaSet", &rs, true)],
        &["example.com/hold"],
    )
    .await;
    deployments
        .delete("deep", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually_ok!(
        "the middle ReplicaSet deleting its own dependents", within PATIENCE,
        holds(&sets, "deep-1", |rs| {
            rs.metadata.deletion_timestamp.is_some()
                && rs.finalizers().iter().any(|f| f == "foregroundDeletion")
        })
        .await
    );
    eventually_ok!(
        "the pod being deleted", within PATIENCE,
        holds(&pods, "deep-1-a", |p| p
            .metadata
            .deletion_timestamp
            .is_some())
        .await
    );
    assert!(deployments.get_opt("deep").await.unwrap().is_some());
    remove_finalizers(&pods, "deep-1-a").await;
    eventually_ok!("the ReplicaSet gone", within PATIENCE, gone(&sets, "deep-1").await);
    eventually_ok!("the Deployment gone last", within PATIENCE, gone(&deployments, "deep").await);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaning_keeps_the_dependents_and_drops_the_reference() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let (shutdown, _) = start_controllers(&client);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let rs = replica_set(&sets, "orphaner", &[]).await;
    let other = config_map(&cms, "other-owner", &[], &[]).await;
    let rs_ref = owned_by("apps/v1", "ReplicaSet", &rs, true);
    let other_ref = owned_by("v1", "ConfigMap", &other, false);
    pod(&pods, "orphan-1", std::slice::from_ref(&rs_ref), &[]).await;
    pod(&pods, "orphan-2", &[rs_ref.clone(), other_ref.clone()], &[]).await;

    let marked = sets
        .delete("orphaner", &DeleteParams::orphan())
        .await
        .unwrap();
    let marked = marked.left().expect("the ReplicaSet, marked");
    assert!(marked.finalizers().iter().any(|f| f == "orphan"));
    eventually_ok!("the owner gone", within PATIENCE, gone(&sets, "orphaner").await);
    let one = eventually_ok!(
        "orphan-1 without its owner", within PATIENCE,
        holds(&pods, "orphan-1", |p| owner_uids(p).is_empty()).await
    );
    assert!(one.metadata.deletion_timestamp.is_none());
    let two = pods.get("orphan-2").await.unwrap();
    assert_eq!(owner_uids(&two), vec![other_ref.uid.clone()]);
    assert!(two.metadata.deletion_timestamp.is_none());

    // The legacy `orphanDependents=true`, in the query.
    let owner = config_map(&cms, "legacy-owner", &[], &[]).await;
    config_map(
        &cms,
        "legacy-dep",
        &[owned_by("v1", "ConfigMap", &owner, false)],
        &[],
    )
    .await;
    let answer = raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/default/configmaps/legacy-owner?orphanDependents=true",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        answer["metadata"]["finalizers"],
        json!(["orphan"]),
        "{answer}"
    );
    eventually_ok!("the legacy owner gone", within PATIENCE, gone(&cms, "legacy-owner").await);
    eventually_ok!(
        "its dependent orphaned", within PATIENCE,
        holds(&cms, "legacy-dep", |cm| owner_uids(cm).is_empty()).await
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_dependents_are_collected_after_a_restart() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Owners deleted while no collector runs: their dependents dangle.
    let owner = config_map(&cms, "early-owner", &[], &[]).await;
    config_map(
        &cms,
        "early-dep",
        &[owned_by("v1", "ConfigMap", &owner, true)],
        &[],
    )
    .await;
    cms.delete("early-owner", &DeleteParams::default())
        .await
        .unwrap();
    assert!(cms.get_opt("early-dep").await.unwrap().is_some());

    let (shutdown, running) = start_controllers(&client);
    eventually_ok!(
        "the dangling dependent collected", within PATIENCE,
        gone(&cms, "early-dep").await
    );
    shutdown.cancel();
    running.await.unwrap();

    // Again across a stop and a start, with an owner that never existed too.
    let owner = config_map(&cms, "late-owner", &[], &[]).await;
    pod(
        &pods,
        "late-pod",
        &[owned_by("v1", "ConfigMap", &owner, false)],
        &[],
    )
    .await;
    let phantom = OwnerReference {
        uid: "00000000-0000-0000-0000-000000000000".to_owned(),
        name: "never-was".to_owned(),
        ..owned_by("v1", "ConfigMap", &owner, false)
    };
    config_map(&cms, "phantom-dep", &[phantom], &[]).await;
    cms.delete("late-owner", &DeleteParams::default())
        .await
        .unwrap();
    let (shutdown, running) = start_controllers(&client);
    eventually_ok!("the dangling pod collected", within PATIENCE, gone(&pods, "late-pod").await);
    eventually_ok!(
        "the phantom's dependent collected", within PATIENCE,
        gone(&cms, "phantom-dep").await
    );
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_is_emptied_then_removed() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let (shutdown, _) = start_controllers(&client);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let created = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        created.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_owned()]),
        "every namespace carries the finalizer its cleanup removes"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "doomed");
    config_map(&cms, "plain", &[], &[]).await;
    config_map(&cms, "held", &[], &["example.com/hold"]).await;
    let rs = replica_set(&sets, "web", &[]).await;
    pod(
        &pods,
        "web-a",
        &[owned_by("apps/v1", "ReplicaSet", &rs, true)],
        &[],
    )
    .await;

    // An ordinary update cannot drop the finalizer: only `finalize` can.
    namespaces
        .patch(
            "doomed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"finalizers": []}})),
        )
        .await
        .unwrap();
    let kept = namespaces.get("doomed").await.unwrap();
    assert_eq!(
        kept.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_owned()])
    );

    let answer = namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let marked = answer.left().expect("the namespace, marked");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );

    // No new content while it terminates.
    let refused = cms
        .create(
            &PostParams::default(),
            &with_meta(json!({"data": {}}), "late", &[], &[]),
        )
        .await
        .unwrap_err();
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert_eq!(status.reason, "Forbidden");
            assert!(
                status.message.contains(
                    "unable to create new content in namespace doomed because it is being terminated"
                ),
                "{}",
                status.message
            );
        }
        other => panic!("{other}"),
    }

    eventually_ok!("the plain content deleted", within PATIENCE, gone(&cms, "plain").await);
    eventually_ok!("the pods deleted", within PATIENCE, gone(&pods, "web-a").await);
    eventually_ok!("the ReplicaSet deleted", within PATIENCE, gone(&sets, "web").await);
    // Held content holds the namespace, and its status says why.
    let waiting = eventually_ok!(
        "the remaining finalizer reported", within PATIENCE,
        holds(&namespaces, "doomed", |ns| {
            ns.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.type_ == "NamespaceFinalizersRemaining"
                            && c.status == "True"
                            && c.message.as_deref().is_some_and(|m| {
                                m.contains("example.com/hold in 1 resource instances")
                            })
                    })
                })
        })
        .await
    );
    assert_eq!(
        waiting.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    remove_finalizers(&cms, "held").await;
    eventually_ok!("the namespace gone", within PATIENCE, gone(&namespaces, "doomed").await);
    // Its name can be used again, fresh.
    let again = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_ne!(again.uid(), created.metadata.uid);
    assert!(cms.get_opt("held").await.unwrap().is_none());
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletes_take_delete_options_as_kubectl_sends_them() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let (shutdown, _) = start_controllers(&client);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["by-body", "by-query", "by-orphan"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), name);
        config_map(&cms, "content", &[], &[]).await;
    }

    // `kubectl delete ns by-body`: the options in the body.
    let answer = raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/by-body",
        Some(
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(answer["kind"], "Namespace", "{answer}");
    assert_eq!(answer["status"]["phase"], "Terminating", "{answer}");
    assert!(answer["metadata"].get("finalizers").is_none(), "{answer}");

    // The policy in the query: Foreground adds the collector's finalizer.
    let answer = raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/by-query?propagationPolicy=Foreground",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        answer["metadata"]["finalizers"],
        json!(["foregroundDeletion"]),
        "{answer}"
    );
    assert_eq!(answer["status"]["phase"], "Terminating", "{answer}");

    // Orphan in the body.
    let answer = raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/by-orphan",
        Some(json!({"propagationPolicy": "Orphan"})),
    )
    .await
    .unwrap();
    assert_eq!(
        answer["metadata"]["finalizers"],
        json!(["orphan"]),
        "{answer}"
    );

    for name in ["by-body", "by-query", "by-orphan"] {
        eventually_ok!(
            format!("namespace {name} gone"), within PATIENCE,
            gone(&namespaces, name).await
        );
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), name);
        assert!(cms.get_opt("content").await.unwrap().is_none());
    }

    // Bad options are refused as upstream refuses them.
    let bad = raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/kube-node-lease?propagationPolicy=Sideways",
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code, 422, "{bad:?}");
    assert!(
        bad.message.contains(
            "propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        ),
        "{}",
        bad.message
    );
    let both = raw(
        &client,
        "DELETE",
        "/api/v1/namespaces/kube-node-lease",
        Some(json!({"propagationPolicy": "Orphan", "orphanDependents": true})),
    )
    .await
    .unwrap_err();
    assert_eq!(both.code, 422, "{both:?}");
    assert!(
        both.message
            .contains("orphanDependents and deletionPropagation cannot be both set"),
        "{}",
        both.message
    );
    let immortal = raw(&client, "DELETE", "/api/v1/namespaces/default", None)
        .await
        .unwrap_err();
    assert_eq!(immortal.code, 403, "{immortal:?}");
    assert_eq!(
        immortal.message,
        "namespaces \"default\" is forbidden: this namespace may not be deleted"
    );
    let lease_ns = namespaces.get("kube-node-lease").await.unwrap();
    assert!(lease_ns.metadata.deletion_timestamp.is_none());

    // The finalize subresource takes only PUT.
    let get = raw(
        &client,
        "GET",
        "/api/v1/namespaces/kube-node-lease/finalize",
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(get.code, 405, "{get:?}");
    shutdown.cancel();
}

//! The API server driven by kube-rs, as controllers will drive it: typed CRUD, optimistic
//! concurrency, patches, status and scale subresources, selectors, paging, and
//! kube-runtime watchers — on the embedded store and on a real etcd.

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str, data: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": {"k": data},
    }))
    .unwrap()
}

async fn crud(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.client();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&ns.to_owned()), "{names:?}");
    }

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    // A second create is AlreadyExists (409).
    let err = cms
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );

    // Update with the right resourceVersion, then with the stale one: 409 Conflict.
    let mut changed = created.clone();
    changed.data = Some([("k".to_owned(), "2".to_owned())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let err = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );

    // Merge and JSON patches.
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"m": "x"}})),
    )
    .await
    .unwrap();
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::<()>::Json(
                serde_json::from_value(json!([{"op": "add", "path": "/data/j", "value": "y"}]))
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!((data["m"].as_str(), data["j"].as_str()), ("x", "y"));

    // dryRun=All writes nothing.
    let dry = cms
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm("dry", "1"),
        )
        .await
        .unwrap();
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert!(cms.get_opt("dry").await.unwrap().is_none());

    // Namespaced creates need the namespace.
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let err = nowhere
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );

    // Label selectors and paging.
    for i in 0..7 {
        let mut c = cm(&format!("page-{i}"), "p");
        c.metadata.labels = Some([("page".to_owned(), "yes".to_owned())].into());
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().labels("page=yes").limit(3);
    loop {
        let page = cms.list(&lp).await.unwrap();
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..7).map(|i| format!("page-{i}")).collect::<Vec<_>>()
    );

    // Delete a collection by label: exactly the selected objects go.
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("page=yes"),
    )
    .await
    .unwrap();
    assert!(
        cms.list(&ListParams::default().labels("page=yes"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(cms.get_opt("a").await.unwrap().is_some());

    // Delete: gone, and a second delete is 404.
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_none());
    let err = cms.delete("a", &DeleteParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_embedded() {
    crud(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_etcd() {
    crud(Backend::Etcd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_scale_subresources() {
    let server = TestServer::start(Backend::Embedded).await;
    let deploys: Api<Deployment> = Api::namespaced(server.client(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "busybox"}]}}
        },
        "status": {"replicas": 99}
    }))
    .unwrap();
    let created = deploys.create(&PostParams::default(), &d).await.unwrap();
    // A create cannot set status; generation starts at 1.
    assert_eq!(created.status.and_then(|s| s.replicas), None);
    assert_eq!(created.metadata.generation, Some(1));

    // Status writes change only status...
    let s = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2}, "spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(s.status.unwrap().replicas, Some(2));
    assert_eq!(s.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(s.metadata.generation, Some(1));
    // ...and main writes cannot change status; spec changes bump generation.
    let m = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 5}, "spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(m.status.unwrap().replicas, Some(2));
    assert_eq!(m.metadata.generation, Some(2));

    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await
        .unwrap();
    assert_eq!(
        deploys.get("web").await.unwrap().spec.unwrap().replicas,
        Some(6)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_watcher_sees_every_change() {
    let server = TestServer::start(Backend::Embedded).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &cm("before", "0"))
        .await
        .unwrap();

    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    // Short server-side timeouts make the watcher re-watch from its resourceVersion
    // (and bookmarks) many times during the test.
    let config = watcher::Config::default().timeout(1).labels("app=demo");
    use kube::runtime::WatchStreamExt;
    let stream = kube::runtime::reflector(writer, watcher(cms.clone(), config).default_backoff())
        .touched_objects();
    let task = tokio::spawn(async move { stream.try_for_each(|_| async { Ok(()) }).await });

    for i in 0..20 {
        cms.create(&PostParams::default(), &cm(&format!("w{i}"), "1"))
            .await
            .unwrap();
        if i % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    cms.delete("w3", &DeleteParams::default()).await.unwrap();
    cms.patch(
        "w4",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .unwrap();
    // Leaving the selector removes it from the watcher's view.
    cms.patch(
        "w5",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = reader.state();
        let names: std::collections::BTreeSet<String> = state
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        let w4 = state
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("w4"));
        let done = names.len() == 19 // before + w0..w19 - w3 - w5
            && !names.contains("w3")
            && !names.contains("w5")
            && w4.and_then(|c| c.data.as_ref()).map(|d| d["k"].as_str()) == Some("changed");
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "watcher view never converged: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_an_expired_resource_version_gets_410_and_watcher_recovers() {
    let server = TestServer::start_with(Backend::Embedded, |s| s.with_watch_history(4)).await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let first = cms
        .create(&PostParams::default(), &cm("x0", "0"))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 1..12 {
        cms.create(&PostParams::default(), &cm(&format!("x{i}"), "0"))
            .await
            .unwrap();
    }
    // Raw watch from the old revision: one ERROR event carrying 410 Expired.
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}",
        server.url
    );
    let body = tokio::time::timeout(Duration::from_secs(5), async { reqwest_lite(&url).await })
        .await
        .unwrap();
    assert!(
        body.contains("\"type\":\"ERROR\"") && body.contains("\"code\":410"),
        "{body}"
    );

    // kube's watcher treats that as "re-list": its stream keeps delivering.
    let mut stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut saw_init_done = false;
    while let Ok(Ok(Some(event))) =
        tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await
    {
        if matches!(event, watcher::Event::InitDone) {
            saw_init_done = true;
            break;
        }
    }
    assert!(saw_init_done);
}

/// GET a URL and read the body until the server closes it.
async fn reqwest_lite(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream
        .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await.unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_finalizers_and_graceful_pod_deletion() {
    use k8s_openapi::api::core::v1::Pod;
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-"},
        "spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]},
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    // Defaults are applied on create.
    let spec = created.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));

    // Binding places the pod once.
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name}, "target": {"kind": "Node", "name": "box1"}});
    let url = format!("/api/v1/namespaces/default/pods/{name}/binding");
    let request = |body: &serde_json::Value| {
        axum::http::Request::builder()
            .method("POST")
            .uri(url.clone())
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
            .unwrap()
    };
    client.request_text(request(&binding)).await.unwrap();
    let bound = pods.get(&name).await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("box1")
    );
    let conditions = bound.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let err = client.request_text(request(&binding)).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );

    // A pod on a node is deleted gracefully: marked, still there, until deleted with grace 0.
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    let terminating = pods.get(&name).await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    assert!(
        pods.get_opt(&name).await.unwrap().is_some(),
        "a second delete keeps it terminating"
    );
    pods.delete(
        &name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt(&name).await.unwrap().is_none());

    // Finalizers hold an object until they are removed; Foreground records the GC's one.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut held = cm("held", "1");
    held.metadata.finalizers = Some(vec!["example.com/hold".to_owned()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::foreground())
        .await
        .unwrap();
    let marked = cms.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    let finalizers = marked.metadata.finalizers.unwrap();
    assert!(
        finalizers.contains(&"foregroundDeletion".to_owned()),
        "{finalizers:?}"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());
}

/// A store whose watches deliver every event late, as a busy or distant etcd member can:
/// a server reading only its cache would miss writes other servers acknowledged.
struct SlowWatches(std::sync::Arc<dyn moor::store::Store>);

#[async_trait::async_trait]
impl moor::store::Store for SlowWatches {
    async fn get(
        &self,
        key: &str,
    ) -> Result<(Option<moor::store::KeyValue>, i64), moor::store::StoreError> {
        self.0.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        opts: moor::store::ListOptions,
    ) -> Result<moor::store::ListResult, moor::store::StoreError> {
        self.0.list(prefix, opts).await
    }
    async fn create(
        &self,
        key: &str,
        value: bytes::Bytes,
    ) -> Result<moor::store::KeyValue, moor::store::StoreError> {
        self.0.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: bytes::Bytes,
        expected: i64,
    ) -> Result<moor::store::UpdateOutcome, moor::store::StoreError> {
        self.0.update(key, value, expected).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<i64>,
    ) -> Result<moor::store::DeleteOutcome, moor::store::StoreError> {
        self.0.delete(key, expected).await
    }
    async fn current_revision(&self) -> Result<i64, moor::store::StoreError> {
        self.0.current_revision().await
    }
    async fn watch(
        &self,
        prefix: &str,
        after: i64,
    ) -> Result<moor::store::WatchStream, moor::store::StoreError> {
        let inner = self.0.watch(prefix, after).await?;
        Ok(Box::pin(inner.then(|event| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            event
        })))
    }
    async fn compact(&self, revision: i64) -> Result<(), moor::store::StoreError> {
        self.0.compact(revision).await
    }
    async fn compacted_revision(&self) -> Result<i64, moor::store::StoreError> {
        self.0.compacted_revision().await
    }
    async fn snapshot(&self, path: &std::path::Path) -> Result<(), moor::store::StoreError> {
        self.0.snapshot(path).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_store_read_each_others_writes_at_once() {
    use moor::store::etcd::{EtcdConfig, EtcdStore};
    let etcd = apiserver_support::etcd_support::EtcdInstance::start();
    let connect = || async {
        std::sync::Arc::new(
            EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
                .await
                .unwrap(),
        )
    };
    let a = TestServer::start_on_store(connect().await).await;
    // B's caches hear of every write 300 ms late.
    let b = TestServer::start_on_store(std::sync::Arc::new(SlowWatches(connect().await))).await;
    let via_a: Api<ConfigMap> = Api::namespaced(a.client(), "default");
    let via_b: Api<ConfigMap> = Api::namespaced(b.client(), "default");
    for i in 0..5 {
        let name = format!("x{i}");
        via_a
            .create(&PostParams::default(), &cm(&name, "1"))
            .await
            .unwrap();
        // A consistent read on the other server never misses an acknowledged write.
        assert!(
            via_b.get_opt(&name).await.unwrap().is_some(),
            "{name} missing on b"
        );
        let listed = via_b.list(&ListParams::default()).await.unwrap();
        assert_eq!(listed.items.len(), i + 1);
    }
}

/// Patches without a resourceVersion ask for "latest": concurrent ones are retried inside
/// the server (GuaranteedUpdate) and all land; one naming a stale version is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_without_a_version_all_land() {
    let server = TestServer::start(Backend::Embedded).await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "busy"}, "data": {}})).unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let patches = (0..16).map(|i| {
        let api = api.clone();
        async move {
            api.patch(
                "busy",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {format!("k{i}"): "v"}})),
            )
            .await
        }
    });
    for result in futures::future::join_all(patches).await {
        result.expect("a patch without a resourceVersion must not conflict");
    }
    let data = api.get("busy").await.unwrap().data.unwrap();
    assert_eq!(data.len(), 16);

    let stale = created.metadata.resource_version.unwrap();
    let error = api
        .patch(
            "busy",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale}, "data": {"x": "y"}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(s) if s.code == 409),
        "{error:?}"
    );
}

/// Generation follows the spec after defaulting: a write that only leaves out defaulted
/// fields changes nothing, so it bumps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_ignores_fields_that_defaulting_restores() {
    let server = TestServer::start(Backend::Embedded).await;
    let api: Api<Deployment> = Api::namespaced(server.client(), "default");
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "busybox"}]}}}
    });
    let apply = |manager: &'static str| {
        let api = api.clone();
        let manifest = manifest.clone();
        async move {
            api.patch(
                "web",
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(apply("one").await.metadata.generation, Some(1));
    assert_eq!(apply("two").await.metadata.generation, Some(1));
    // A PUT of what was read, minus everything defaulting fills in.
    let mut put = serde_json::to_value(api.get("web").await.unwrap()).unwrap();
    for field in [
        "strategy",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        put["spec"].as_object_mut().unwrap().remove(field);
    }
    let put: Deployment = serde_json::from_value(put).unwrap();
    let replaced = api
        .replace("web", &PostParams::default(), &put)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(1));
    let scaled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
}

//! The endpoints and endpointslice controllers against a real API server (embedded store).
//! There is no kubelet here: tests create Pods and set their status (IP, phase, Ready) with
//! `patch_status`, as a node agent would, and watch the Endpoints and EndpointSlices follow.

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use apiserver_support::{Backend, TestServer};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// Poll `probe` every 20 ms until it answers `Ok`; after 10 s fail with the last state seen.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// An API server with only the two controllers running.
struct Cluster {
    _server: TestServer,
    shutdown: CancellationToken,
    manager: Option<JoinHandle<()>>,
    pods: Api<Pod>,
    services: Api<Service>,
    endpoints: Api<Endpoints>,
    slices: Api<EndpointSlice>,
}

impl Cluster {
    async fn start() -> Self {
        let server = TestServer::start(Backend::Embedded).await;
        let client = server.client();
        let shutdown = CancellationToken::new();
        let manager = tokio::spawn(
            moor::controllers::ControllerManager::new(client.clone())
                .with_controllers(vec!["endpoints".into(), "endpointslice".into()])
                .run(shutdown.clone()),
        );
        Cluster {
            pods: Api::namespaced(client.clone(), "default"),
            services: Api::namespaced(client.clone(), "default"),
            endpoints: Api::namespaced(client.clone(), "default"),
            slices: Api::namespaced(client.clone(), "default"),
            _server: server,
            shutdown,
            manager: Some(manager),
        }
    }

    /// Stop the controllers and check they do stop.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(manager) = self.manager.take() {
            tokio::time::timeout(DEADLINE, manager)
                .await
                .expect("the controllers stop when asked")
                .unwrap();
        }
    }

    async fn service(&self, name: &str, labels: Value, spec: Value) -> Service {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        }))
        .unwrap();
        self.services
            .create(&PostParams::default(), &svc)
            .await
            .unwrap()
    }

    /// A Service as stored before the API server allocated cluster IPs: no clusterIP and
    /// no ipFamilies (one created through the API now always has both), written straight
    /// into the store.
    async fn legacy_service(&self, name: &str, spec: Value) {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": format!("legacy-{name}"),
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": spec,
        });
        self._server
            .store
            .create(
                &format!("/registry/services/default/{name}"),
                svc.to_string().into(),
            )
            .await
            .unwrap();
    }

    /// A pod on node `node-a` (so deleting it leaves it terminating until forced).
    async fn pod(&self, name: &str, labels: Value, ports: Value) -> Pod {
        self.pod_with(name, labels, json!({}), ports).await
    }

    async fn pod_with(&self, name: &str, labels: Value, extra_spec: Value, ports: Value) -> Pod {
        let mut spec = json!({
            "nodeName": "node-a",
            "containers": [{"name": "app", "image": "busybox", "ports": ports}],
        });
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra_spec) {
            spec.extend(extra);
        }
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        }))
        .unwrap();
        self.pods
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    /// What a node agent reports: running, this IP, Ready or not.
    async fn status(&self, name: &str, ip: &str, ready: bool) {
        let status = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        }});
        self.pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    async fn force_delete(&self, name: &str) {
        self.pods
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }

    /// Wait until the Endpoints `name` read as `expected` (see [`subsets`]).
    async fn wait_endpoints(&self, name: &str, expected: &[&str]) -> Endpoints {
        let api = &self.endpoints;
        eventually(
            &format!("endpoints {name} to be {expected:?}"),
            move || async move {
                let endpoints = api
                    .get_opt(name)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "no Endpoints".to_owned())?;
                let got = subsets(&endpoints);
                if got == expected {
                    Ok(endpoints)
                } else {
                    Err(format!("{got:?}"))
                }
            },
        )
        .await
    }

    async fn service_slices(&self, service: &str) -> Result<Vec<EndpointSlice>, String> {
        self.slices
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
            .await
            .map(|l| l.items)
            .map_err(|e| e.to_string())
    }

    /// Wait until the Service's slices read as `expected` (see [`slices`]).
    async fn wait_slices(&self, service: &str, expected: &[&str]) -> Vec<EndpointSlice> {
        eventually(
            &format!("slices of {service} to be {expected:?}"),
            move || async move {
                let items = self.service_slices(service).await?;
                let got = slices(&items);
                if got == expected {
                    Ok(items)
                } else {
                    Err(format!("{got:?}"))
                }
            },
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Endpoints as lines: `ready=[ips] notReady=[ips] ports=[name:port/protocol]`.
fn subsets(endpoints: &Endpoints) -> Vec<String> {
    endpoints
        .subsets
        .iter()
        .flatten()
        .map(|s| {
            let ips = |list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
                list.iter()
                    .flatten()
                    .map(|a| a.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let ports: Vec<String> = s
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p.name.clone().unwrap_or_default(),
                        p.port,
                        p.protocol.clone().unwrap_or_default()
                    )
                })
                .collect();
            format!(
                "ready=[{}] notReady=[{}] ports=[{}]",
                ips(&s.addresses),
                ips(&s.not_ready_addresses),
                ports.join(",")
            )
        })
        .collect()
}

/// Slices as sorted lines: `IPv4 ports=[name:port/protocol] [ip(conditions) ...]`, where the
/// conditions list those that are true among ready, serving and terminating.
fn slices(items: &[EndpointSlice]) -> Vec<String> {
    let mut lines: Vec<String> = items
        .iter()
        .map(|s| {
            let ports: Vec<String> = s
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}:{}/{}",
                        p.name.clone().unwrap_or_default(),
                        p.port.unwrap_or_default(),
                        p.protocol.clone().unwrap_or_default()
                    )
                })
                .collect();
            let mut endpoints: Vec<String> = s
                .endpoints
                .iter()
                .map(|e| {
                    let c = e.conditions.clone().unwrap_or_default();
                    let flags: Vec<&str> = [
                        (c.ready, "ready"),
                        (c.serving, "serving"),
                        (c.terminating, "terminating"),
                    ]
                    .into_iter()
                    .filter(|(on, _)| *on == Some(true))
                    .map(|(_, name)| name)
                    .collect();
                    format!("{}({})", e.addresses.join(","), flags.join(","))
                })
                .collect();
            endpoints.sort();
            format!(
                "{} ports=[{}] [{}]",
                s.address_type,
                ports.join(","),
                endpoints.join(" ")
            )
        })
        .collect();
    lines.sort();
    lines
}

fn label(object: &impl ResourceExt, key: &str) -> Option<String> {
    object.labels().get(key).cloned()
}

#[tokio::test]
async fn addresses_follow_readiness_and_ip_changes() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    let svc = c
        .service(
            "web",
            json!({"tier": "front"}),
            json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}),
        )
        .await;
    // No pods yet: empty Endpoints and one placeholder slice.
    c.wait_endpoints("web", &[]).await;
    let placeholder = c.wait_slices("web", &["IPv4 ports=[] []"]).await;

    c.pod("a", json!({"app": "web"}), json!([])).await;
    c.pod("b", json!({"app": "web"}), json!([])).await;
    // Not started yet (no IP): left out.
    c.pod("pending", json!({"app": "web"}), json!([])).await;
    c.status("a", "10.1.0.1", true).await;
    c.status("b", "10.1.0.2", false).await;
    let endpoints = c
        .wait_endpoints(
            "web",
            &["ready=[10.1.0.1] notReady=[10.1.0.2] ports=[http:8080/TCP]"],
        )
        .await;
    assert_eq!(label(&endpoints, "tier").as_deref(), Some("front"));
    assert_eq!(
        label(&endpoints, "endpoints.kubernetes.io/managed-by").as_deref(),
        Some("endpoint-controller")
    );
    assert_eq!(label(&endpoints, "service.kubernetes.io/headless"), None);
    assert!(
        endpoints.metadata.owner_references.is_none(),
        "no ownerReference, as upstream"
    );
    let address = &endpoints.subsets.as_ref().unwrap()[0]
        .addresses
        .as_ref()
        .unwrap()[0];
    assert_eq!(address.node_name.as_deref(), Some("node-a"));
    let target = address.target_ref.as_ref().unwrap();
    let pod_a = c.pods.get("a").await.unwrap();
    assert_eq!(
        (
            target.kind.as_deref(),
            target.namespace.as_deref(),
            target.name.as_deref(),
            target.uid.clone()
        ),
        (Some("Pod"), Some("default"), Some("a"), pod_a.uid())
    );

    let items = c
        .wait_slices(
            "web",
            &["IPv4 ports=[http:8080/TCP] [10.1.0.1(ready,serving) 10.1.0.2()]"],
        )
        .await;
    let slice = &items[0];
    // The placeholder was reused, not replaced.
    assert_eq!(slice.name_any(), placeholder[0].name_any());
    assert!(slice.name_any().starts_with("web-"), "{}", slice.name_any());
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(
        label(slice, "kubernetes.io/service-name").as_deref(),
        Some("web")
    );
    assert_eq!(
        label(slice, "endpointslice.kubernetes.io/managed-by").as_deref(),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(label(slice, "tier").as_deref(), Some("front"));
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            Some(owner.uid.clone())
        ),
        ("v1", "Service", "web", svc.uid())
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    let endpoint = slice
        .endpoints
        .iter()
        .find(|e| e.addresses == ["10.1.0.1"])
        .unwrap();
    assert_eq!(endpoint.node_name.as_deref(), Some("node-a"));
    assert_eq!(endpoint.target_ref.as_ref().unwrap().uid, pod_a.uid());

    // Readiness flips: the pods swap places.
    c.status("a", "10.1.0.1", false).await;
    c.status("b", "10.1.0.2", true).await;
    c.wait_endpoints(
        "web",
        &["ready=[10.1.0.2] notReady=[10.1.0.1] ports=[http:8080/TCP]"],
    )
    .await;
    let items = c
        .wait_slices(
            "web",
            &["IPv4 ports=[http:8080/TCP] [10.1.0.1() 10.1.0.2(ready,serving)]"],
        )
        .await;
    assert_eq!(items[0].name_any(), placeholder[0].name_any());

    // A new IP replaces the old one.
    c.status("b", "10.1.0.20", true).await;
    c.wait_endpoints(
        "web",
        &["ready=[10.1.0.20] notReady=[10.1.0.1] ports=[http:8080/TCP]"],
    )
    .await;
    c.wait_slices(
        "web",
        &["IPv4 ports=[http:8080/TCP] [10.1.0.1() 10.1.0.20(ready,serving)]"],
    )
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn named_target_ports_resolve_per_pod() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    c.service(
        "api",
        json!({}),
        json!({"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
    )
    .await;
    c.pod(
        "a",
        json!({"app": "api"}),
        json!([{"name": "http", "containerPort": 8080}]),
    )
    .await;
    c.pod(
        "b",
        json!({"app": "api"}),
        json!([{"name": "http", "containerPort": 9090}]),
    )
    .await;
    // No port named "http": no address for that port.
    c.pod(
        "c",
        json!({"app": "api"}),
        json!([{"name": "metrics", "containerPort": 9100}]),
    )
    .await;
    c.status("a", "10.2.0.1", true).await;
    c.status("b", "10.2.0.2", true).await;
    c.status("c", "10.2.0.3", true).await;
    c.wait_endpoints(
        "api",
        &[
            "ready=[10.2.0.1] notReady=[] ports=[http:8080/TCP]",
            "ready=[10.2.0.2] notReady=[] ports=[http:9090/TCP]",
        ],
    )
    .await;
    // Slices group by resolved ports; the pod without the port gets a slice without ports.
    c.wait_slices(
        "api",
        &[
            "IPv4 ports=[] [10.2.0.3(ready,serving)]",
            "IPv4 ports=[http:8080/TCP] [10.2.0.1(ready,serving)]",
            "IPv4 ports=[http:9090/TCP] [10.2.0.2(ready,serving)]",
        ],
    )
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn headless_services_and_publish_not_ready_addresses() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    c.service(
        "db",
        json!({}),
        json!({"clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "db"},
               "ports": [{"name": "pg", "port": 5432}]}),
    )
    .await;
    // Headless without ports, not publishing unready pods.
    c.service(
        "db-raw",
        json!({}),
        json!({"clusterIP": "None", "selector": {"app": "db"}}),
    )
    .await;
    c.pod_with(
        "db-0",
        json!({"app": "db"}),
        json!({"hostname": "db-0", "subdomain": "db"}),
        json!([]),
    )
    .await;
    c.pod("db-1", json!({"app": "db"}), json!([])).await;
    c.status("db-0", "10.3.0.1", false).await;
    c.status("db-1", "10.3.0.2", false).await;

    let endpoints = c
        .wait_endpoints(
            "db",
            &["ready=[10.3.0.1,10.3.0.2] notReady=[] ports=[pg:5432/TCP]"],
        )
        .await;
    assert_eq!(
        label(&endpoints, "service.kubernetes.io/headless").as_deref(),
        Some("")
    );
    let addresses = endpoints.subsets.as_ref().unwrap()[0]
        .addresses
        .clone()
        .unwrap();
    assert_eq!(addresses[0].hostname.as_deref(), Some("db-0"));
    assert_eq!(addresses[1].hostname, None);
    let items = c
        .wait_slices(
            "db",
            &["IPv4 ports=[pg:5432/TCP] [10.3.0.1(ready) 10.3.0.2(ready)]"],
        )
        .await;
    assert_eq!(
        label(&items[0], "service.kubernetes.io/headless").as_deref(),
        Some("")
    );
    let hostnames: BTreeMap<String, Option<String>> = items[0]
        .endpoints
        .iter()
        .map(|e| (e.addresses.join(","), e.hostname.clone()))
        .collect();
    assert_eq!(hostnames["10.3.0.1"].as_deref(), Some("db-0"));
    assert_eq!(hostnames["10.3.0.2"], None);

    // The subdomain names "db", not "db-raw": no hostname there.
    let raw = c
        .wait_endpoints(
            "db-raw",
            &["ready=[] notReady=[10.3.0.1,10.3.0.2] ports=[]"],
        )
        .await;
    assert!(
        raw.subsets.as_ref().unwrap()[0]
            .not_ready_addresses
            .iter()
            .flatten()
            .all(|a| a.hostname.is_none())
    );
    c.wait_slices("db-raw", &["IPv4 ports=[] [10.3.0.1() 10.3.0.2()]"])
        .await;

    // Ready now: the same in both.
    c.status("db-1", "10.3.0.2", true).await;
    c.wait_endpoints("db-raw", &["ready=[10.3.0.2] notReady=[10.3.0.1] ports=[]"])
        .await;
    c.wait_slices(
        "db",
        &["IPv4 ports=[pg:5432/TCP] [10.3.0.1(ready) 10.3.0.2(ready,serving)]"],
    )
    .await;
    cluster.stop().await;
}

#[tokio::test]
async fn selector_and_pod_label_changes_move_pods() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    c.service(
        "web",
        json!({}),
        json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    )
    .await;
    c.pod("a", json!({"app": "web"}), json!([])).await;
    c.pod("b", json!({"app": "api"}), json!([])).await;
    c.status("a", "10.4.0.1", true).await;
    c.status("b", "10.4.0.2", true).await;
    c.wait_endpoints("web", &["ready=[10.4.0.1] notReady=[] ports=[:80/TCP]"])
        .await;
    c.wait_slices("web", &["IPv4 ports=[:80/TCP] [10.4.0.1(ready,serving)]"])
        .await;

    // The Service now selects the other pod.
    c.services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"app": "api"}}})),
        )
        .await
        .unwrap();
    c.wait_endpoints("web", &["ready=[10.4.0.2] notReady=[] ports=[:80/TCP]"])
        .await;
    c.wait_slices("web", &["IPv4 ports=[:80/TCP] [10.4.0.2(ready,serving)]"])
        .await;

    // The pod's labels take it out of the Service: it leaves at once.
    c.pods
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
        )
        .await
        .unwrap();
    c.wait_endpoints("web", &[]).await;
    c.wait_slices("web", &["IPv4 ports=[] []"]).await;

    // And back in.
    c.pods
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "api"}}})),
        )
        .await
        .unwrap();
    c.wait_endpoints("web", &["ready=[10.4.0.2] notReady=[] ports=[:80/TCP]"])
        .await;
    c.wait_slices("web", &["IPv4 ports=[:80/TCP] [10.4.0.2(ready,serving)]"])
        .await;
    cluster.stop().await;
}

#[tokio::test]
async fn terminating_finished_and_deleted_pods() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    c.service(
        "web",
        json!({}),
        json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    )
    .await;
    for (name, ip) in [("a", "10.5.0.1"), ("b", "10.5.0.2"), ("c", "10.5.0.3")] {
        c.pod(name, json!({"app": "web"}), json!([])).await;
        c.status(name, ip, true).await;
    }
    c.wait_endpoints(
        "web",
        &["ready=[10.5.0.1,10.5.0.2,10.5.0.3] notReady=[] ports=[:80/TCP]"],
    )
    .await;

    // Graceful deletion: the pod stays, terminating, until its node lets go.
    c.pods.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        c.pods
            .get("a")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some(),
        "a pod on a node terminates first"
    );
    c.wait_endpoints(
        "web",
        &["ready=[10.5.0.2,10.5.0.3] notReady=[] ports=[:80/TCP]"],
    )
    .await;
    c.wait_slices(
        "web",
        &["IPv4 ports=[:80/TCP] [10.5.0.1(serving,terminating) 10.5.0.2(ready,serving) 10.5.0.3(ready,serving)]"],
    )
    .await;

    // A finished pod is out of both.
    c.pods
        .patch_status(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
        )
        .await
        .unwrap();
    c.wait_endpoints("web", &["ready=[10.5.0.3] notReady=[] ports=[:80/TCP]"])
        .await;
    c.wait_slices(
        "web",
        &["IPv4 ports=[:80/TCP] [10.5.0.1(serving,terminating) 10.5.0.3(ready,serving)]"],
    )
    .await;

    // Gone for good.
    c.force_delete("a").await;
    c.wait_slices("web", &["IPv4 ports=[:80/TCP] [10.5.0.3(ready,serving)]"])
        .await;
    c.force_delete("c").await;
    c.wait_endpoints("web", &[]).await;
    c.wait_slices("web", &["IPv4 ports=[] []"]).await;
    cluster.stop().await;
}

#[tokio::test]
async fn service_deletion_removes_what_was_made_for_it() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    // A Service without a selector: its Endpoints are the user's.
    c.service("manual", json!({}), json!({"ports": [{"port": 5432}]}))
        .await;
    let manual: Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "manual"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}],
    }))
    .unwrap();
    let manual = c
        .endpoints
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();

    let svc = c
        .service(
            "web",
            json!({}),
            json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
        )
        .await;
    c.pod("a", json!({"app": "web"}), json!([])).await;
    c.status("a", "10.6.0.1", true).await;
    c.wait_endpoints("web", &["ready=[10.6.0.1] notReady=[] ports=[:80/TCP]"])
        .await;
    let items = c
        .wait_slices("web", &["IPv4 ports=[:80/TCP] [10.6.0.1(ready,serving)]"])
        .await;
    assert_eq!(
        items[0].metadata.owner_references.as_ref().unwrap()[0].uid,
        svc.uid().unwrap()
    );

    c.services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the Endpoints of the deleted Service to go",
        move || async move {
            match c.endpoints.get_opt("web").await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // There is no garbage collector here: the controller removes the slices itself.
    c.wait_slices("web", &[]).await;

    // The user's Endpoints were left as they were, and got no slices.
    let still = c.endpoints.get("manual").await.unwrap();
    assert_eq!(still.resource_version(), manual.resource_version());
    assert_eq!(label(&still, "endpoints.kubernetes.io/managed-by"), None);
    assert!(c.service_slices("manual").await.unwrap().is_empty());

    // A new Service of the same name starts afresh.
    let again = c
        .service(
            "web",
            json!({}),
            json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
        )
        .await;
    c.wait_endpoints("web", &["ready=[10.6.0.1] notReady=[] ports=[:80/TCP]"])
        .await;
    let items = c
        .wait_slices("web", &["IPv4 ports=[:80/TCP] [10.6.0.1(ready,serving)]"])
        .await;
    assert_eq!(
        items[0].metadata.owner_references.as_ref().unwrap()[0].uid,
        again.uid().unwrap()
    );
    cluster.stop().await;
}

#[tokio::test]
async fn ipv6_pods_get_an_ipv6_slice() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    // Nothing says which family it serves (see legacy_service).
    c.legacy_service(
        "web",
        json!({"selector": {"app": "web"}, "type": "ClusterIP", "sessionAffinity": "None",
               "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    )
    .await;
    // One created now is single-stack IPv4 (moor's service CIDR is IPv4), as upstream.
    c.service(
        "web4",
        json!({}),
        json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    )
    .await;
    c.pod("four", json!({"app": "web"}), json!([])).await;
    c.pod("six", json!({"app": "web"}), json!([])).await;
    c.status("four", "10.7.0.1", true).await;
    c.status("six", "fd00::7", true).await;
    c.wait_slices(
        "web",
        &[
            "IPv4 ports=[:80/TCP] [10.7.0.1(ready,serving)]",
            "IPv6 ports=[:80/TCP] [fd00::7(ready,serving)]",
        ],
    )
    .await;
    // No cluster IP or families to go by: each pod's own address is published.
    c.wait_endpoints(
        "web",
        &["ready=[10.7.0.1,fd00::7] notReady=[] ports=[:80/TCP]"],
    )
    .await;
    c.wait_slices("web4", &["IPv4 ports=[:80/TCP] [10.7.0.1(ready,serving)]"])
        .await;
    c.wait_endpoints("web4", &["ready=[10.7.0.1] notReady=[] ports=[:80/TCP]"])
        .await;
    c.force_delete("six").await;
    c.wait_slices("web", &["IPv4 ports=[:80/TCP] [10.7.0.1(ready,serving)]"])
        .await;
    cluster.stop().await;
}

#[tokio::test]
async fn more_than_a_hundred_pods_fill_several_slices() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    c.service(
        "big",
        json!({}),
        json!({"selector": {"app": "big"}, "ports": [{"port": 80}]}),
    )
    .await;
    let names: Vec<String> = (0..150).map(|i| format!("p{i:03}")).collect();
    futures::stream::iter(names.iter().enumerate())
        .for_each_concurrent(8, |(i, name)| async move {
            c.pod(name, json!({"app": "big"}), json!([])).await;
            c.status(name, &format!("10.8.{}.{}", i / 100, i % 100 + 1), true)
                .await;
        })
        .await;
    let sizes = |items: &[EndpointSlice]| {
        let mut sizes: Vec<usize> = items.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        sizes
    };
    let items = eventually(
        "150 endpoints in slices of at most 100",
        move || async move {
            let items = c.service_slices("big").await?;
            let ready = items
                .iter()
                .flat_map(|s| &s.endpoints)
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
            // How the endpoints spread over the slices depends on how the pods trickled in;
            // what holds is that none has more than 100, so 150 take several.
            if ready == 150 && items.len() >= 2 && items.iter().all(|s| s.endpoints.len() <= 100) {
                Ok(items)
            } else {
                Err(format!(
                    "{ready} ready endpoints in slices of {:?}",
                    sizes(&items)
                ))
            }
        },
    )
    .await;
    let mut addresses: Vec<String> = items
        .iter()
        .flat_map(|s| &s.endpoints)
        .flat_map(|e| e.addresses.clone())
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 150, "every pod once");
    eventually("150 ready addresses in the Endpoints", move || async move {
        let endpoints = c.endpoints.get("big").await.map_err(|e| e.to_string())?;
        let ready: usize = endpoints
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        if ready == 150 {
            Ok(())
        } else {
            Err(format!("{ready} addresses"))
        }
    })
    .await;

    // Sixty go: the slices shrink in place (no new slices; emptied ones are deleted).
    let before: Vec<String> = {
        let mut names: Vec<String> = items.iter().map(|s| s.name_any()).collect();
        names.sort();
        names
    };
    futures::stream::iter(names.iter().take(60))
        .for_each_concurrent(8, |name| c.force_delete(name))
        .await;
    let items = eventually("90 endpoints left", move || async move {
        let items = c.service_slices("big").await?;
        let total: usize = items.iter().map(|s| s.endpoints.len()).sum();
        if total == 90 {
            Ok(items)
        } else {
            Err(format!("{total} endpoints in {:?}", sizes(&items)))
        }
    })
    .await;
    assert!(
        items.iter().all(|s| before.contains(&s.name_any())),
        "no slice was created for the pods that stayed: {before:?} then {:?}",
        items.iter().map(|s| s.name_any()).collect::<Vec<_>>()
    );
    assert!(
        items
            .iter()
            .all(|s| !s.endpoints.is_empty() && s.endpoints.len() <= 100)
    );
    cluster.stop().await;
}

/// How many times objects seen by `api` with `params` are written from `from` on, until
/// one satisfies `done`.
async fn writes_until<K>(
    api: &Api<K>,
    params: &WatchParams,
    from: &str,
    done: impl Fn(&K) -> bool,
) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + 'static,
{
    let stream = api.watch(params, from).await.unwrap().boxed();
    let counting = async move {
        let mut stream = stream;
        let mut writes = 0;
        while let Some(event) = stream.try_next().await.unwrap() {
            match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                    writes += 1;
                    if done(&o) {
                        return writes;
                    }
                }
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => panic!("watch failed: {e:?}"),
            }
        }
        panic!("the watch ended")
    };
    tokio::time::timeout(DEADLINE, counting)
        .await
        .expect("the awaited write within 10 s")
}

#[tokio::test]
async fn nothing_is_rewritten_when_nothing_changed() {
    let cluster = Cluster::start().await;
    let c = &cluster;
    c.service(
        "web",
        json!({}),
        json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
    )
    .await;
    c.service(
        "extra",
        json!({}),
        json!({"selector": {"extra": "yes"}, "ports": [{"port": 81}]}),
    )
    .await;
    c.pod("a", json!({"app": "web"}), json!([])).await;
    c.status("a", "10.9.0.1", true).await;
    let endpoints = c
        .wait_endpoints("web", &["ready=[10.9.0.1] notReady=[] ports=[:80/TCP]"])
        .await;
    let items = c
        .wait_slices("web", &["IPv4 ports=[:80/TCP] [10.9.0.1(ready,serving)]"])
        .await;
    let slice_rv = items[0].resource_version();

    // A change to the pod that means nothing to "web" (a label only "extra" selects, an
    // annotation). Both controllers route the event to both Services at once; once "extra"
    // shows the pod, "web" has been looked at too.
    c.pods
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"extra": "yes"}, "annotations": {"note": "x"}}}),
            ),
        )
        .await
        .unwrap();
    c.wait_endpoints("extra", &["ready=[10.9.0.1] notReady=[] ports=[:81/TCP]"])
        .await;
    c.wait_slices("extra", &["IPv4 ports=[:81/TCP] [10.9.0.1(ready,serving)]"])
        .await;
    assert_eq!(
        c.endpoints.get("web").await.unwrap().resource_version(),
        endpoints.resource_version()
    );
    let now = c.service_slices("web").await.unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].resource_version(), slice_rv);

    // The next real change is the first write since: nothing slipped in between.
    let endpoint_writes = {
        let api = c.endpoints.clone();
        let from = endpoints.resource_version().unwrap();
        tokio::spawn(async move {
            writes_until(
                &api,
                &WatchParams::default().fields("metadata.name=web"),
                &from,
                |e: &Endpoints| subsets(e).iter().any(|s| s.contains("10.9.0.2")),
            )
            .await
        })
    };
    let slice_writes = {
        let api = c.slices.clone();
        let from = slice_rv.clone().unwrap();
        tokio::spawn(async move {
            writes_until(
                &api,
                &WatchParams::default().labels("kubernetes.io/service-name=web"),
                &from,
                |s: &EndpointSlice| s.endpoints.iter().any(|e| e.addresses == ["10.9.0.2"]),
            )
            .await
        })
    };
    c.pod("b", json!({"app": "web"}), json!([])).await;
    c.status("b", "10.9.0.2", true).await;
    assert_eq!(endpoint_writes.await.unwrap(), 1);
    assert_eq!(slice_writes.await.unwrap(), 1);
    cluster.stop().await;
}

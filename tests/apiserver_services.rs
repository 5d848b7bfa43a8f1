//! Service allocation on a real moor API server: cluster IPs from the service CIDR and node
//! ports from the node-port range, with upstream's messages for requests that cannot be
//! honoured; type changes, headless and ExternalName Services; dry runs; reservations that
//! survive a restart and hold across two servers on one etcd; the repair pass; the
//! `kubernetes` and `kube-dns` Services the server starts with; and `kubectl create service`.

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;

use apiserver_support::{Backend, TestServer};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use moor::apiserver::ApiServer;
use moor::apiserver::services::ServiceCidr;
use moor::store::Store;
use serde_json::{Value, json};

const IP_PREFIX: &str = "/registry/moor.dev/serviceipallocations/";
const PORT_PREFIX: &str = "/registry/moor.dev/servicenodeportallocations/";

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn spec_of(svc: &Service) -> Value {
    serde_json::to_value(svc.spec.as_ref().unwrap()).unwrap()
}

fn cluster_ip(svc: &Service) -> String {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .unwrap_or_default()
}

fn node_ports(svc: &Service) -> Vec<i32> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ports| ports.iter().filter_map(|p| p.node_port).collect())
        .unwrap_or_default()
}

/// The items reserved under `prefix` (IPs or ports, as their key names them).
async fn reserved(store: &dyn Store, prefix: &str) -> HashSet<String> {
    store
        .list(prefix, Default::default())
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key.strip_prefix(prefix).unwrap().to_owned())
        .collect()
}

/// The refusal of `result`: (code, message).
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn merge(patch: Value) -> Patch<Value> {
    Patch::Merge(patch)
}

async fn cluster_ips_are_allocated_and_released(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &service(
                "web",
                json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap();
    let ip: Ipv4Addr = cluster_ip(&created).parse().unwrap();
    let cidr = ServiceCidr::default();
    assert!(cidr.contains(ip), "{ip}");
    // Dynamic allocation prefers the upper band: the first 256 addresses are for requests.
    assert!(ip >= Ipv4Addr::new(10, 43, 1, 1), "{ip}");
    let spec = spec_of(&created);
    assert_eq!(spec["clusterIPs"], json!([ip.to_string()]));
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert!(
        reserved(&*server.store, IP_PREFIX)
            .await
            .contains(&ip.to_string())
    );
    // The reservation names its Service.
    let (kv, _) = server.store.get(&format!("{IP_PREFIX}{ip}")).await.unwrap();
    let value: Value = serde_json::from_slice(&kv.unwrap().value).unwrap();
    assert_eq!(value["namespace"], "default");
    assert_eq!(value["name"], "web");
    assert_eq!(value["uid"], json!(created.metadata.uid));

    // A read answers what was written.
    assert_eq!(cluster_ip(&api.get("web").await.unwrap()), ip.to_string());

    api.delete("web", &DeleteParams::default()).await.unwrap();
    assert!(
        !reserved(&*server.store, IP_PREFIX)
            .await
            .contains(&ip.to_string())
    );
}

#[tokio::test]
async fn cluster_ips_are_allocated_and_released_embedded() {
    cluster_ips_are_allocated_and_released(Backend::Embedded).await;
}

#[tokio::test]
async fn cluster_ips_are_allocated_and_released_etcd() {
    cluster_ips_are_allocated_and_released(Backend::Etcd).await;
}

#[tokio::test]
async fn a_service_held_by_a_finalizer_keeps_its_ip_until_it_goes() {
    let server = TestServer::start(Backend::Embedded).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let mut svc = service("held", json!({"ports": [{"port": 80}]}));
    svc.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let ip = cluster_ip(&api.create(&PostParams::default(), &svc).await.unwrap());
    api.delete("held", &DeleteParams::default()).await.unwrap();
    // Marked for deletion only: still holds the address.
    assert!(reserved(&*server.store, IP_PREFIX).await.contains(&ip));
    api.patch(
        "held",
        &PatchParams::default(),
        &merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("held").await.unwrap().is_none());
    assert!(!reserved(&*server.store, IP_PREFIX).await.contains(&ip));
}

#[tokio::test]
async fn requested_cluster_ips_are_checked() {
    let server = TestServer::start(Backend::Embedded).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let pp = PostParams::default();
    let a = api
        .create(
            &pp,
            &service(
                "a",
                json!({"clusterIP": "10.43.0.50", "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&a), "10.43.0.50");
    assert_eq!(spec_of(&a)["clusterIPs"], json!(["10.43.0.50"]));

    let taken = api
        .create(
            &pp,
            &service(
                "b",
                json!({"clusterIP": "10.43.0.50", "ports": [{"port": 80}]}),
            ),
        )
        .await;
    assert_eq!(
        refusal(taken),
        (
            422,
            "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.43.0.50\"}: failed to allocate IP 10.43.0.50: provided IP is already allocated".to_owned()
        )
    );
    for outside in ["10.44.0.1", "10.43.0.0", "10.43.255.255"] {
        let result = api
            .create(
                &pp,
                &service("c", json!({"clusterIP": outside, "ports": [{"port": 80}]})),
            )
            .await;
        assert_eq!(
            refusal(result),
            (
                422,
                format!(
                    "Service \"c\" is invalid: spec.clusterIPs[0]: Invalid value: \"{outside}\": the provided IP ({outside}) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
                )
            )
        );
    }
    // A second create of an existing Service is AlreadyExists, not an IP conflict.
    let again = api
        .create(
            &pp,
            &service(
                "a",
                json!({"clusterIP": "10.43.0.50", "ports": [{"port": 80}]}),
            ),
        )
        .await;
    assert_eq!(refusal(again).0, 409);
    // Nothing of the refused ones stays reserved.
    let ips = reserved(&*server.store, IP_PREFIX).await;
    assert!(ips.contains("10.43.0.50"));
    assert!(!ips.iter().any(|ip| ip.starts_with("10.44.")));

    // clusterIP may not change; an update that leaves it out keeps it.
    let changed = api
        .patch(
            "a",
            &PatchParams::default(),
            &merge(json!({"spec": {"clusterIP": "10.43.0.51", "clusterIPs": ["10.43.0.51"]}})),
        )
        .await;
    let (code, message) = refusal(changed);
    assert_eq!(code, 422);
    assert!(
        message.contains("spec.clusterIP: Invalid value: \"10.43.0.51\": field is immutable"),
        "{message}"
    );
    let mut replaced = service("a", json!({"ports": [{"port": 81}]}));
    replaced.metadata.resource_version = a.metadata.resource_version.clone();
    let replaced = api.replace("a", &pp, &replaced).await.unwrap();
    assert_eq!(cluster_ip(&replaced), "10.43.0.50");
    assert_eq!(spec_of(&replaced)["clusterIPs"], json!(["10.43.0.50"]));
}

#[tokio::test]
async fn headless_and_external_name_services_hold_no_ip() {
    let server = TestServer::start(Backend::Embedded).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let pp = PostParams::default();
    let before = reserved(&*server.store, IP_PREFIX).await;
    let headless = api
        .create(
            &pp,
            &service(
                "db",
                json!({"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&headless), "None");
    assert_eq!(spec_of(&headless)["clusterIPs"], json!(["None"]));
    let external = api
        .create(
            &pp,
            &service(
                "ext",
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
            ),
        )
        .await
        .unwrap();
    let spec = spec_of(&external);
    assert!(spec.get("clusterIP").is_none(), "{spec}");
    assert!(spec.get("ipFamilies").is_none(), "{spec}");
    assert_eq!(reserved(&*server.store, IP_PREFIX).await, before);

    // ExternalName -> ClusterIP allocates; ClusterIP -> ExternalName releases.
    let cluster = api
        .patch(
            "ext",
            &PatchParams::default(),
            &merge(json!({"spec": {"type": "ClusterIP", "externalName": null, "ports": [{"port": 80}]}})),
        )
        .await
        .unwrap();
    let ip = cluster_ip(&cluster);
    assert!(ip.starts_with("10.43."), "{ip}");
    assert!(reserved(&*server.store, IP_PREFIX).await.contains(&ip));
    let external = api
        .patch(
            "ext",
            &PatchParams::default(),
            &merge(json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}})),
        )
        .await
        .unwrap();
    let spec = spec_of(&external);
    assert!(spec.get("clusterIP").is_none(), "{spec}");
    assert!(spec.get("clusterIPs").is_none(), "{spec}");
    assert_eq!(reserved(&*server.store, IP_PREFIX).await, before);
}

#[tokio::test]
async fn node_ports_are_allocated_checked_and_follow_type_changes_embedded() {
    node_ports_are_allocated_checked_and_follow_type_changes(Backend::Embedded).await;
}

#[tokio::test]
async fn node_ports_are_allocated_checked_and_follow_type_changes_etcd() {
    node_ports_are_allocated_checked_and_follow_type_changes(Backend::Etcd).await;
}

async fn node_ports_are_allocated_checked_and_follow_type_changes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let pp = PostParams::default();
    let np = api
        .create(
            &pp,
            &service(
                "np",
                json!({"type": "NodePort", "ports": [
                    {"name": "http", "port": 80},
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ]}),
            ),
        )
        .await
        .unwrap();
    let ports = node_ports(&np);
    assert_eq!(ports.len(), 3);
    assert!(
        ports.iter().all(|p| (30000..=32767).contains(p)),
        "{ports:?}"
    );
    assert_ne!(ports[0], ports[1]);
    // One number, two protocols: one node port.
    assert_eq!(ports[1], ports[2]);
    let held = reserved(&*server.store, PORT_PREFIX).await;
    assert_eq!(
        held,
        HashSet::from([ports[0].to_string(), ports[1].to_string()])
    );

    let taken = api
        .create(
            &pp,
            &service(
                "other",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": ports[0]}]}),
            ),
        )
        .await;
    assert_eq!(
        refusal(taken),
        (
            422,
            format!(
                "Service \"other\" is invalid: spec.ports[0].nodePort: Invalid value: {}: provided port is already allocated",
                ports[0]
            )
        )
    );
    let outside = api
        .create(
            &pp,
            &service("other", json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 8080}]})),
        )
        .await;
    assert_eq!(
        refusal(outside),
        (
            422,
            "Service \"other\" is invalid: spec.ports[1].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767".to_owned()
        )
    );
    // The refused creates gave back what they had reserved (port 0 of "other", its IP).
    assert_eq!(reserved(&*server.store, PORT_PREFIX).await, held);

    // A requested one is honoured.
    let fixed = api
        .create(
            &pp,
            &service(
                "fixed",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&fixed), [30080]);

    // Adding a port allocates; removing one releases (strategic merge patch by port).
    let grown = api
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [{"name": "http", "port": 80, "nodePort": 30080}, {"name": "extra", "port": 90}]}})),
        )
        .await
        .unwrap();
    let grown_ports = node_ports(&grown);
    assert_eq!(grown_ports.len(), 2, "{grown_ports:?}");
    assert!(
        reserved(&*server.store, PORT_PREFIX)
            .await
            .contains(&grown_ports[1].to_string())
    );
    let shrunk = api
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Json::<Value>(
                serde_json::from_value(json!([{"op": "remove", "path": "/spec/ports/1"}])).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&shrunk), [30080]);
    assert!(
        !reserved(&*server.store, PORT_PREFIX)
            .await
            .contains(&grown_ports[1].to_string())
    );

    // NodePort -> ClusterIP clears and releases the node ports; back again allocates.
    let cluster = api
        .patch(
            "np",
            &PatchParams::default(),
            &merge(json!({"spec": {"type": "ClusterIP"}})),
        )
        .await
        .unwrap();
    assert!(node_ports(&cluster).is_empty());
    assert!(spec_of(&cluster).get("externalTrafficPolicy").is_none());
    let now = reserved(&*server.store, PORT_PREFIX).await;
    assert!(!now.contains(&ports[0].to_string()) && !now.contains(&ports[1].to_string()));
    assert_eq!(
        cluster_ip(&cluster),
        cluster_ip(&np),
        "the cluster IP stays"
    );
    let again = api
        .patch(
            "np",
            &PatchParams::default(),
            &merge(json!({"spec": {"type": "NodePort"}})),
        )
        .await
        .unwrap();
    let again_ports = node_ports(&again);
    assert_eq!(again_ports.len(), 3);
    assert!(
        reserved(&*server.store, PORT_PREFIX)
            .await
            .contains(&again_ports[0].to_string())
    );

    // LoadBalancer Services get node ports too, unless they opt out.
    let lb = api
        .create(
            &pp,
            &service(
                "lb",
                json!({"type": "LoadBalancer", "ports": [{"port": 443}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&lb).len(), 1);
    let lb_without = api
        .create(
            &pp,
            &service("lb2", json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 443}]})),
        )
        .await
        .unwrap();
    assert!(node_ports(&lb_without).is_empty());

    // Deleting releases everything.
    for name in ["np", "fixed", "lb", "lb2"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    assert!(reserved(&*server.store, PORT_PREFIX).await.is_empty());
}

#[tokio::test]
async fn server_side_apply_allocates_once_and_keeps_what_it_got() {
    let server = TestServer::start(Backend::Embedded).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let manifest = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "applied"},
        "spec": {"type": "NodePort", "selector": {"app": "a"}, "ports": [{"name": "http", "port": 80}]},
    });
    let params = PatchParams::apply("test").force();
    let first = api
        .patch("applied", &params, &Patch::Apply(&manifest))
        .await
        .unwrap();
    let again = api
        .patch("applied", &params, &Patch::Apply(&manifest))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&first), cluster_ip(&again));
    assert_eq!(node_ports(&first), node_ports(&again));
    assert_eq!(
        first.metadata.resource_version, again.metadata.resource_version,
        "a no-op"
    );
    assert_eq!(reserved(&*server.store, PORT_PREFIX).await.len(), 1);
}

#[tokio::test]
async fn dry_runs_check_but_reserve_nothing() {
    let server = TestServer::start(Backend::Embedded).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let ips_before = reserved(&*server.store, IP_PREFIX).await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let planned = api
        .create(
            &dry,
            &service("dry", json!({"type": "NodePort", "ports": [{"port": 80}]})),
        )
        .await
        .unwrap();
    assert!(cluster_ip(&planned).starts_with("10.43."), "{planned:?}");
    assert_eq!(node_ports(&planned).len(), 1);
    assert!(api.get_opt("dry").await.unwrap().is_none());
    assert_eq!(reserved(&*server.store, IP_PREFIX).await, ips_before);
    assert!(reserved(&*server.store, PORT_PREFIX).await.is_empty());

    // Conflicts are still found.
    api.create(
        &PostParams::default(),
        &service(
            "real",
            json!({"clusterIP": "10.43.0.77", "ports": [{"port": 80}]}),
        ),
    )
    .await
    .unwrap();
    let conflict = api
        .create(
            &dry,
            &service(
                "dry",
                json!({"clusterIP": "10.43.0.77", "ports": [{"port": 80}]}),
            ),
        )
        .await;
    assert_eq!(refusal(conflict).0, 422);

    // A dry-run type change plans node ports and reserves none.
    let patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let planned = api
        .patch(
            "real",
            &patch,
            &merge(json!({"spec": {"type": "NodePort"}})),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&planned).len(), 1);
    assert!(reserved(&*server.store, PORT_PREFIX).await.is_empty());
    assert!(node_ports(&api.get("real").await.unwrap()).is_empty());
}

/// 14 usable addresses: the kubernetes (.1) and kube-dns (.10) Services take two.
fn small_cidr(server: ApiServer) -> ApiServer {
    server.with_service_cidr("10.99.0.0/28".parse().unwrap())
}

/// Create Services `s<i>` for `range` on `server`, each with a cluster IP not in `ips`.
async fn create_distinct(
    server: &TestServer,
    range: std::ops::Range<usize>,
    ips: &mut HashSet<String>,
) {
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    for i in range {
        let svc = api
            .create(
                &PostParams::default(),
                &service(&format!("s{i}"), json!({"ports": [{"port": 80}]})),
            )
            .await
            .unwrap();
        assert!(
            ips.insert(cluster_ip(&svc)),
            "duplicate {}",
            cluster_ip(&svc)
        );
    }
}

#[tokio::test]
async fn a_restart_keeps_every_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start_in(dir.path(), small_cidr).await;
    let mut ips = HashSet::from(["10.99.0.1".to_owned(), "10.99.0.10".to_owned()]);
    create_distinct(&first, 0..6, &mut ips).await;
    first.stop().await;

    let second = TestServer::start_in(dir.path(), small_cidr).await;
    create_distinct(&second, 6..12, &mut ips).await;
    let api: Api<Service> = Api::namespaced(second.client(), "default");
    assert_eq!(ips.len(), 14);
    let full = api
        .create(
            &PostParams::default(),
            &service("s12", json!({"ports": [{"port": 80}]})),
        )
        .await;
    assert_eq!(
        refusal(full),
        (
            500,
            "failed to allocate a serviceIP: range is full".to_owned()
        )
    );
    // Deleting one frees its address for the next.
    let freed = cluster_ip(&api.get("s3").await.unwrap());
    api.delete("s3", &DeleteParams::default()).await.unwrap();
    let next = api
        .create(
            &PostParams::default(),
            &service("s12", json!({"ports": [{"port": 80}]})),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&next), freed);
    // The restart's repair pass found nothing to fix.
    assert!(
        second
            .server
            .repair_service_allocations()
            .await
            .unwrap()
            .is_clean()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_etcd_never_hand_out_the_same_ip_or_port() {
    let etcd = apiserver_support::etcd_support::EtcdInstance::start();
    let configure = |server: ApiServer| {
        server
            .with_service_cidr("10.98.0.0/25".parse().unwrap())
            .with_node_port_range("31000-31199".parse().unwrap())
    };
    // Started together: their bootstraps race.
    let endpoint = etcd.endpoint();
    let (a, b) = tokio::join!(
        TestServer::start_on_etcd_with(&endpoint, configure),
        TestServer::start_on_etcd_with(&endpoint, configure),
    );
    let creates = (0..100).map(|i| {
        let client = if i % 2 == 0 { a.client() } else { b.client() };
        async move {
            let api: Api<Service> = Api::namespaced(client, "default");
            api.create(
                &PostParams::default(),
                &service(
                    &format!("s{i}"),
                    json!({"type": "NodePort", "ports": [{"port": 80}]}),
                ),
            )
            .await
            .unwrap()
        }
    });
    let created: Vec<Service> = futures::stream::iter(creates)
        .buffer_unordered(16)
        .collect()
        .await;
    let ips: HashSet<String> = created.iter().map(cluster_ip).collect();
    let ports: HashSet<i32> = created.iter().flat_map(node_ports).collect();
    assert_eq!(ips.len(), 100, "duplicate cluster IPs");
    assert_eq!(ports.len(), 100, "duplicate node ports");
    assert!(!ips.contains("10.98.0.1") && !ips.contains("10.98.0.10"));
    assert_eq!(reserved(&*a.store, IP_PREFIX).await.len(), 102);
    assert_eq!(reserved(&*a.store, PORT_PREFIX).await.len(), 100);
    assert!(
        a.server
            .repair_service_allocations()
            .await
            .unwrap()
            .is_clean()
    );

    // Both servers publish themselves as the kubernetes Service's endpoints.
    let endpoints: Api<Endpoints> = Api::namespaced(a.client(), "default");
    let listed = serde_json::to_value(endpoints.get("kubernetes").await.unwrap()).unwrap();
    let mut published: Vec<u64> = listed["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ports"][0]["port"].as_u64().unwrap())
        .collect();
    published.sort();
    let mut expected = vec![u64::from(a.addr.port()), u64::from(b.addr.port())];
    expected.sort();
    assert_eq!(published, expected);
    let slices: Api<EndpointSlice> = Api::namespaced(a.client(), "default");
    let names: HashSet<String> = slices
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert!(names.contains("kubernetes"), "{names:?}");
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test]
async fn repair_releases_leaks_and_reserves_what_services_hold() {
    let server = TestServer::start(Backend::Embedded).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    assert!(
        server
            .server
            .repair_service_allocations()
            .await
            .unwrap()
            .is_clean()
    );
    let held = api
        .create(
            &PostParams::default(),
            &service("held", json!({"type": "NodePort", "ports": [{"port": 80}]})),
        )
        .await
        .unwrap();
    let held_ip = cluster_ip(&held);
    let held_port = node_ports(&held)[0];

    // Leaked: reserved by a create that never wrote its Service (a crash in between).
    let leak = |at: &str| {
        json!({"namespace": "default", "name": "ghost", "uid": "no-such-uid", "reserved": at})
            .to_string()
    };
    server
        .store
        .create(
            &format!("{IP_PREFIX}10.43.7.7"),
            leak("2020-01-01T00:00:00Z").into(),
        )
        .await
        .unwrap();
    server
        .store
        .create(
            &format!("{PORT_PREFIX}31999"),
            leak("2020-01-01T00:00:00Z").into(),
        )
        .await
        .unwrap();
    // Just reserved: maybe a create in flight on another server, so left alone.
    server
        .store
        .create(
            &format!("{IP_PREFIX}10.43.8.8"),
            leak(&moor::apiserver::writes::now()).into(),
        )
        .await
        .unwrap();
    // A Service holding its address without a reservation (restored from an old backup).
    server
        .store
        .delete(&format!("{IP_PREFIX}{held_ip}"), None)
        .await
        .unwrap();

    let report = server.server.repair_service_allocations().await.unwrap();
    assert_eq!(report.released.len(), 2, "{report:?}");
    assert!(
        report.released.iter().any(|r| r.contains("10.43.7.7")),
        "{report:?}"
    );
    assert!(
        report.released.iter().any(|r| r.contains("31999")),
        "{report:?}"
    );
    assert_eq!(report.reserved.len(), 1, "{report:?}");
    assert!(report.reserved[0].contains(&held_ip), "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    let ips = reserved(&*server.store, IP_PREFIX).await;
    assert!(!ips.contains("10.43.7.7"));
    assert!(ips.contains("10.43.8.8"));
    assert!(ips.contains(&held_ip));
    assert!(
        reserved(&*server.store, PORT_PREFIX)
            .await
            .contains(&held_port.to_string())
    );

    // Released: the address can be asked for again.
    api.create(
        &PostParams::default(),
        &service(
            "reuse",
            json!({"clusterIP": "10.43.7.7", "ports": [{"port": 80}]}),
        ),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn the_server_starts_with_the_kubernetes_and_kube_dns_services() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |s| s).await;
    let services: Api<Service> = Api::namespaced(server.client(), "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    let spec = spec_of(&kubernetes);
    assert_eq!(spec["clusterIP"], "10.43.0.1");
    assert_eq!(spec["type"], "ClusterIP");
    assert!(spec.get("selector").is_none(), "{spec}");
    assert_eq!(
        spec["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": server.addr.port()}])
    );
    let labels = kubernetes.metadata.labels.clone().unwrap();
    assert_eq!(labels["component"], "apiserver");
    assert_eq!(labels["provider"], "kubernetes");

    let dns: Api<Service> = Api::namespaced(server.client(), "kube-system");
    let kube_dns = dns.get("kube-dns").await.unwrap();
    let spec = spec_of(&kube_dns);
    assert_eq!(spec["clusterIP"], "10.43.0.10");
    assert_eq!(
        spec["ports"],
        json!([
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
        ])
    );
    assert_eq!(
        kube_dns.metadata.labels.clone().unwrap()["k8s-app"],
        "kube-dns"
    );
    assert_eq!(
        moor::apiserver::services::cluster_dns_ip(&ServiceCidr::default()).to_string(),
        "10.43.0.10"
    );

    let endpoints: Api<Endpoints> = Api::namespaced(server.client(), "default");
    let published = serde_json::to_value(endpoints.get("kubernetes").await.unwrap()).unwrap();
    assert_eq!(
        published["subsets"],
        json!([{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": server.addr.port(), "protocol": "TCP"}]}])
    );
    let slices: Api<EndpointSlice> = Api::namespaced(server.client(), "default");
    let slice = serde_json::to_value(slices.get("kubernetes").await.unwrap()).unwrap();
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
    assert_ne!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        slice["endpoints"],
        json!([{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}])
    );
    assert_eq!(
        slice["ports"],
        json!([{"name": "https", "port": server.addr.port(), "protocol": "TCP"}])
    );

    // A person's change stays; a deleted Service comes back at the next start, and the
    // endpoints follow the server to its new port.
    services
        .patch(
            "kubernetes",
            &PatchParams::default(),
            &merge(json!({"metadata": {"labels": {"team": "platform"}}})),
        )
        .await
        .unwrap();
    dns.delete("kube-dns", &DeleteParams::default())
        .await
        .unwrap();
    let old_port = server.addr.port();
    server.stop().await;
    let server = TestServer::start_in(dir.path(), |s| s).await;
    assert_ne!(server.addr.port(), old_port);
    let services: Api<Service> = Api::namespaced(server.client(), "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    assert_eq!(kubernetes.metadata.labels.unwrap()["team"], "platform");
    let dns: Api<Service> = Api::namespaced(server.client(), "kube-system");
    assert_eq!(
        cluster_ip(&dns.get("kube-dns").await.unwrap()),
        "10.43.0.10"
    );
    let endpoints: Api<Endpoints> = Api::namespaced(server.client(), "default");
    let published = serde_json::to_value(endpoints.get("kubernetes").await.unwrap()).unwrap();
    assert_eq!(
        published["subsets"][0]["ports"][0]["port"],
        server.addr.port()
    );
    assert_eq!(published["subsets"].as_array().unwrap().len(), 1);
    let slices: Api<EndpointSlice> = Api::namespaced(server.client(), "default");
    let listed = slices.list(&Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        serde_json::to_value(&listed[0]).unwrap()["ports"][0]["port"],
        server.addr.port()
    );
}

#[tokio::test]
async fn kubectl_create_service_clusterip_and_nodeport() {
    let server = TestServer::start(Backend::Embedded).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    moor::cli::server::write_kubeconfig(&kubeconfig, &server.url).unwrap();
    let kubectl = |args: &[&str]| {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("KUBECACHEDIR", dir.path().join("cache"))
            .env("HOME", dir.path());
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().expect("run kubectl"))
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    kubectl(&["create", "service", "clusterip", "web", "--tcp=80:8080"]).await;
    kubectl(&[
        "create",
        "service",
        "nodeport",
        "np",
        "--tcp=80:8080",
        "--node-port=30080",
    ])
    .await;
    kubectl(&["create", "service", "nodeport", "np2", "--tcp=443:8443"]).await;
    let api: Api<Service> = Api::namespaced(server.client(), "default");
    let web = api.get("web").await.unwrap();
    assert!(cluster_ip(&web).starts_with("10.43."));
    assert_eq!(node_ports(&api.get("np").await.unwrap()), [30080]);
    let np2 = node_ports(&api.get("np2").await.unwrap());
    assert!(
        np2.len() == 1 && (30000..=32767).contains(&np2[0]),
        "{np2:?}"
    );
    let table = kubectl(&["get", "services"]).await;
    assert!(table.contains(&cluster_ip(&web)), "{table}");
    assert!(table.contains("80:30080/TCP"), "{table}");
    assert!(table.contains("kubernetes"), "{table}");
    let jsonpath = kubectl(&[
        "get",
        "service",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])
    .await;
    assert_eq!(jsonpath, "10.43.0.1");
    // A node port already taken is refused with upstream's words.
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "create",
            "service",
            "nodeport",
            "np3",
            "--tcp=80:8080",
            "--node-port=30080",
        ])
        .env("KUBECACHEDIR", dir.path().join("cache"))
        .env("HOME", dir.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{stderr}"
    );
}

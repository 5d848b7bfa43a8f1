//! Cluster DNS against a real API server (embedded store): Services and EndpointSlices are
//! written through kube-rs, the DNS server runs in-process on its own 127.53.x.1:53, and
//! queries go over real UDP and TCP with hickory's client. Forwarding is tested against an
//! upstream hickory server with an in-memory zone on 127.53.x.2:53, named by a temp
//! resolv.conf. Each test has its own x, so tests may run in parallel. Nothing here needs
//! `dig` or `nslookup`.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::client::{Client, ClientHandle};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use moor::dns::{DnsConfig, DnsError, DnsServer};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a single query may take before the test fails (not a performance bound: a
/// lost answer would otherwise hang the test).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to list the cluster and say it is ready.
const READY_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Udp,
    /// UDP without EDNS: the 512-byte limit of RFC 1035 applies.
    UdpNoEdns,
    Tcp,
}

/// `127.53.<test>.<host>:53`
fn address(test: u8, host: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 53, test, host)), 53)
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

async fn query(
    server: SocketAddr,
    qname: &str,
    qtype: RecordType,
    transport: Transport,
) -> Message {
    let provider = TokioRuntimeProvider::default();
    let (mut client, background) = match transport {
        Transport::Udp | Transport::UdpNoEdns => {
            let stream = UdpClientStream::builder(server, provider)
                .with_timeout(Some(QUERY_TIMEOUT))
                .build();
            let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
            if transport == Transport::UdpNoEdns {
                client.disable_edns();
            }
            (client, tokio::spawn(background))
        }
        Transport::Tcp => {
            let (stream, sender) =
                TcpClientStream::new(server, None, Some(QUERY_TIMEOUT), provider);
            let stream = stream.await.expect("connecting over TCP");
            let (client, background) =
                Client::<TokioRuntimeProvider>::with_timeout(stream, sender, QUERY_TIMEOUT);
            (client, tokio::spawn(background))
        }
    };
    let response = client
        .query(name(qname), DNSClass::IN, qtype)
        .await
        .unwrap_or_else(|e| panic!("{transport:?} query {qname} {qtype}: {e}"));
    background.abort();
    response.into_message()
}

/// The answer section's data, as text.
fn answers(message: &Message) -> Vec<String> {
    message.answers.iter().map(|r| r.data.to_string()).collect()
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

fn soa_in_authority(message: &Message) -> bool {
    message
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA && r.name == name("cluster.local."))
}

/// A resolv.conf in a temp dir.
fn resolv_conf(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, text).unwrap();
    path
}

struct Cluster {
    _server: TestServer,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
    client: kube::Client,
}

impl Cluster {
    async fn start() -> Self {
        let server = TestServer::start(Backend::Embedded).await;
        let client = server.client();
        Cluster {
            services: Api::namespaced(client.clone(), "default"),
            slices: Api::namespaced(client.clone(), "default"),
            client,
            _server: server,
        }
    }

    async fn service(&self, name: &str, spec: Value) {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.services
            .create(&PostParams::default(), &svc)
            .await
            .unwrap();
    }

    async fn slice(&self, name: &str, service: &str, endpoints: Value, ports: Value) {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }))
        .unwrap();
        self.slices
            .create(&PostParams::default(), &slice)
            .await
            .unwrap();
    }

    /// The server on `listen`, forwarding to the nameservers of `resolv_conf`; returns once
    /// it says it is ready.
    async fn dns(&self, listen: SocketAddr, resolv_conf: PathBuf) -> RunningDns {
        let mut config = DnsConfig::new(vec![listen]);
        config.resolv_conf = resolv_conf;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            DnsServer::new(self.client.clone(), config)
                .with_ready_signal(ready_tx)
                .run(shutdown.clone()),
        );
        match tokio::time::timeout(READY_PATIENCE, ready_rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the DNS server stopped before ready: {:?}", task.await),
            Err(_) => panic!("the DNS server was not ready after {READY_PATIENCE:?}"),
        }
        RunningDns { shutdown, task }
    }
}

struct RunningDns {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), DnsError>>,
}

impl RunningDns {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// An upstream nameserver on `addr` (UDP and TCP) serving `example.test` (www →
/// 192.0.2.80) and `2.0.192.in-addr.arpa` (192.0.2.80 → www.example.test).
async fn upstream(addr: SocketAddr) -> Server<Catalog> {
    let mut catalog = Catalog::new();
    let www = name("www.example.test.");
    let zones = [
        (
            name("example.test."),
            vec![Record::from_rdata(
                www.clone(),
                60,
                RData::A(A::new(192, 0, 2, 80)),
            )],
        ),
        (
            name("2.0.192.in-addr.arpa."),
            vec![Record::from_rdata(
                name("80.2.0.192.in-addr.arpa."),
                60,
                RData::PTR(PTR(www.clone())),
            )],
        ),
    ];
    for (origin, records) in zones {
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let soa = SOA::new(
            name("ns.example.test."),
            name("hostmaster.example.test."),
            1,
            60,
            60,
            60,
            60,
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1));
        for record in records {
            assert!(zone.upsert_mut(record, 1));
        }
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    }
    let mut server = Server::new(catalog);
    server.register_socket(tokio::net::UdpSocket::bind(addr).await.unwrap());
    server.register_listener(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
        Duration::from_secs(5),
        32,
    );
    server
}

#[tokio::test]
async fn answers_cluster_names_over_udp_and_tcp() {
    let cluster = Cluster::start().await;
    cluster
        .service(
            "web",
            json!({"clusterIP": "10.43.53.5", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        )
        .await;
    cluster
        .service(
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}),
        )
        .await;
    cluster
        .slice(
            "db-1",
            "db",
            json!([
                {"addresses": ["10.42.0.11"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.12"], "conditions": {"ready": true}},
                {"addresses": ["10.42.0.13"], "hostname": "db-2", "conditions": {"ready": false}},
            ]),
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let dns_addr = address(1, 1);
    // Only ourselves upstream: skipped, so forwarding has nowhere to go.
    let dns = cluster
        .dns(
            dns_addr,
            resolv_conf(&dir, &format!("nameserver {}\n", dns_addr.ip())),
        )
        .await;

    // Listed before the server started: ready means they answer at once.
    for transport in [Transport::Udp, Transport::Tcp] {
        let response = query(
            dns_addr,
            "web.default.svc.cluster.local.",
            RecordType::A,
            transport,
        )
        .await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{transport:?}"
        );
        assert!(response.metadata.authoritative, "{transport:?}");
        assert_eq!(answers(&response), ["10.43.53.5"], "{transport:?}");
        assert_eq!(response.answers[0].ttl, 5);
    }

    let srv = query(
        dns_addr,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        Transport::Udp,
    )
    .await;
    assert_eq!(answers(&srv), ["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(answers_of(&srv.additionals), ["10.43.53.5"]);

    let headless = query(
        dns_addr,
        "db.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(sorted(answers(&headless)), ["10.42.0.11", "10.42.0.12"]);

    let hostname = query(
        dns_addr,
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
        Transport::Tcp,
    )
    .await;
    assert_eq!(answers(&hostname), ["10.42.0.11"]);

    let srv = query(
        dns_addr,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
        Transport::Tcp,
    )
    .await;
    assert_eq!(
        sorted(answers(&srv)),
        [
            "0 50 5432 10-42-0-12.db.default.svc.cluster.local.",
            "0 50 5432 db-0.db.default.svc.cluster.local.",
        ]
    );
    assert_eq!(
        sorted(answers_of(&srv.additionals)),
        ["10.42.0.11", "10.42.0.12"]
    );
    // The SRV targets resolve.
    let target = query(
        dns_addr,
        "10-42-0-12.db.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(answers(&target), ["10.42.0.12"]);

    let ptr = query(
        dns_addr,
        "5.53.43.10.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await;
    assert_eq!(answers(&ptr), ["web.default.svc.cluster.local."]);
    assert!(ptr.metadata.authoritative);
    let ptr = query(
        dns_addr,
        "11.0.42.10.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await;
    assert_eq!(answers(&ptr), ["db-0.db.default.svc.cluster.local."]);

    let pod = query(
        dns_addr,
        "10-42-0-99.default.pod.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(answers(&pod), ["10.42.0.99"]);

    let upper = query(
        dns_addr,
        "WEB.Default.SVC.Cluster.Local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(answers(&upper), ["10.43.53.5"]);

    let missing = query(
        dns_addr,
        "nope.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(missing.metadata.authoritative);
    assert!(missing.answers.is_empty());
    assert!(soa_in_authority(&missing), "{missing:?}");
    // The not-ready endpoint has no name.
    let not_ready = query(
        dns_addr,
        "db-2.db.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(not_ready.metadata.response_code, ResponseCode::NXDomain);

    let nodata = query(
        dns_addr,
        "web.default.svc.cluster.local.",
        RecordType::AAAA,
        Transport::Udp,
    )
    .await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert!(soa_in_authority(&nodata), "{nodata:?}");

    // Nowhere to forward to.
    let elsewhere = query(dns_addr, "www.example.test.", RecordType::A, Transport::Udp).await;
    assert_eq!(elsewhere.metadata.response_code, ResponseCode::ServFail);

    dns.stop().await;
}

fn answers_of(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test]
async fn follows_service_and_endpoint_slice_changes() {
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dns_addr = address(2, 1);
    let dns = cluster
        .dns(dns_addr, resolv_conf(&dir, "# no upstreams\n"))
        .await;
    let db = "db.default.svc.cluster.local.";
    let missing = query(dns_addr, db, RecordType::A, Transport::Udp).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

    cluster
        .service(
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        )
        .await;
    cluster
        .slice(
            "db-1",
            "db",
            json!([{"addresses": ["10.42.1.1"], "conditions": {"ready": true}}]),
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        )
        .await;
    eventually_ok!("the new headless Service answering", {
        let response = query(dns_addr, db, RecordType::A, Transport::Udp).await;
        if answers(&response) == ["10.42.1.1"] {
            Ok(())
        } else {
            Err(response)
        }
    });

    // The endpoint goes not-ready and another one comes.
    cluster
        .slices
        .patch(
            "db-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"endpoints": [
                {"addresses": ["10.42.1.1"], "conditions": {"ready": false}},
                {"addresses": ["10.42.1.2"], "conditions": {"ready": true}},
            ]})),
        )
        .await
        .unwrap();
    eventually_ok!("the slice change answering", {
        let response = query(dns_addr, db, RecordType::A, Transport::Tcp).await;
        if answers(&response) == ["10.42.1.2"] {
            Ok(())
        } else {
            Err(response)
        }
    });
    let srv = query(
        dns_addr,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
        Transport::Udp,
    )
    .await;
    assert_eq!(
        answers(&srv),
        ["0 100 5432 10-42-1-2.db.default.svc.cluster.local."]
    );

    // Publishing not-ready addresses brings the first one back.
    cluster
        .services
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"publishNotReadyAddresses": true}})),
        )
        .await
        .unwrap();
    eventually_ok!("publishNotReadyAddresses answering", {
        let response = query(dns_addr, db, RecordType::A, Transport::Udp).await;
        if sorted(answers(&response)) == ["10.42.1.1", "10.42.1.2"] {
            Ok(())
        } else {
            Err(response)
        }
    });

    cluster
        .services
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    eventually_ok!("the deleted Service gone", {
        let response = query(dns_addr, db, RecordType::A, Transport::Udp).await;
        if response.metadata.response_code == ResponseCode::NXDomain {
            Ok(())
        } else {
            Err(response)
        }
    });
    dns.stop().await;
}

#[tokio::test]
async fn forwards_other_names_to_the_resolv_conf_nameservers() {
    let cluster = Cluster::start().await;
    let upstream_addr = address(3, 2);
    let mut upstream = upstream(upstream_addr).await;
    cluster
        .service(
            "ext",
            json!({"type": "ExternalName", "externalName": "www.example.test"}),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let dns_addr = address(3, 1);
    // Our own address first: skipped, not looped through.
    let conf = format!(
        "search default.svc.cluster.local\nnameserver {}\nnameserver {}\noptions ndots:5\n",
        dns_addr.ip(),
        upstream_addr.ip()
    );
    let dns = cluster.dns(dns_addr, resolv_conf(&dir, &conf)).await;

    for transport in [Transport::Udp, Transport::Tcp] {
        let response = query(dns_addr, "www.example.test.", RecordType::A, transport).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NoError,
            "{transport:?}"
        );
        assert_eq!(answers(&response), ["192.0.2.80"], "{transport:?}");

        let missing = query(dns_addr, "missing.example.test.", RecordType::A, transport).await;
        assert_eq!(
            missing.metadata.response_code,
            ResponseCode::NXDomain,
            "{transport:?}"
        );
        assert!(missing.answers.is_empty());
    }

    // A reverse name that is not a cluster address goes upstream too.
    let ptr = query(
        dns_addr,
        "80.2.0.192.in-addr.arpa.",
        RecordType::PTR,
        Transport::Udp,
    )
    .await;
    assert_eq!(answers(&ptr), ["www.example.test."]);

    // An ExternalName answers its CNAME and what the upstream says about the target.
    let ext = query(
        dns_addr,
        "ext.default.svc.cluster.local.",
        RecordType::A,
        Transport::Udp,
    )
    .await;
    assert_eq!(ext.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&ext), ["www.example.test.", "192.0.2.80"]);

    dns.stop().await;
    upstream.shutdown_gracefully().await.unwrap();
}

#[tokio::test]
async fn truncates_large_udp_answers_without_edns() {
    let cluster = Cluster::start().await;
    cluster.service("big", json!({"clusterIP": "None"})).await;
    let endpoints: Vec<Value> = (1..=60)
        .map(|i| json!({"addresses": [format!("10.42.2.{i}")], "conditions": {"ready": true}}))
        .collect();
    cluster
        .slice("big-1", "big", Value::Array(endpoints), json!([]))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let dns_addr = address(4, 1);
    let dns = cluster
        .dns(dns_addr, resolv_conf(&dir, "# no upstreams\n"))
        .await;
    let big = "big.default.svc.cluster.local.";

    let classic = query(dns_addr, big, RecordType::A, Transport::UdpNoEdns).await;
    assert!(
        classic.metadata.truncation,
        "60 A records do not fit 512 bytes"
    );
    assert!(classic.answers.len() < 60);

    let tcp = query(dns_addr, big, RecordType::A, Transport::Tcp).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);

    // hickory's client offers a 1232-byte EDNS buffer: enough for all of them.
    let edns = query(dns_addr, big, RecordType::A, Transport::Udp).await;
    assert!(!edns.metadata.truncation);
    assert_eq!(edns.answers.len(), 60);
    dns.stop().await;
}

#[tokio::test]
async fn an_unreadable_resolv_conf_is_named_in_the_error() {
    let cluster = Cluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-resolv.conf");
    let mut config = DnsConfig::new(vec![address(5, 1)]);
    config.resolv_conf = path.clone();
    let error = DnsServer::new(cluster.client.clone(), config)
        .run(CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(error, DnsError::ResolvConf { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn picks_up_resolv_conf_changes() {
    let cluster = Cluster::start().await;
    let upstream_addr = address(6, 2);
    let mut upstream = upstream(upstream_addr).await;
    let dir = tempfile::tempdir().unwrap();
    let dns_addr = address(6, 1);
    let path = resolv_conf(&dir, "# no upstreams yet\n");
    let dns = cluster.dns(dns_addr, path.clone()).await;
    let before = query(dns_addr, "www.example.test.", RecordType::A, Transport::Udp).await;
    assert_eq!(before.metadata.response_code, ResponseCode::ServFail);

    // Written aside and renamed over, as resolvconf and NetworkManager do.
    let next = dir.path().join("resolv.conf.new");
    std::fs::write(&next, format!("nameserver {}\n", upstream_addr.ip())).unwrap();
    std::fs::rename(&next, &path).unwrap();
    eventually_ok!("the new nameserver answering", {
        let response = query(dns_addr, "www.example.test.", RecordType::A, Transport::Udp).await;
        if answers(&response) == ["192.0.2.80"] {
            Ok(())
        } else {
            Err(response)
        }
    });
    dns.stop().await;
    upstream.shutdown_gracefully().await.unwrap();
}

//! Services end to end: a real API server allocating cluster IPs and NodePorts, the
//! endpointslice controller, and a node agent (private containerd, runc, CNI) running the
//! service proxy and cluster DNS in-process. Pods are busybox httpd; clients are the test
//! itself on the node and other pods. Each node has its own service range and NodePorts
//! (see `support/agent.rs`), because cluster IPs and NodePorts are host-wide.

#[path = "support/agent.rs"]
mod agent_support;
#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/containerd.rs"]
mod containerd_support;
#[path = "support/dnsquery.rs"]
mod dnsquery;
#[path = "support/image.rs"]
mod image_support;
#[path = "support/podnet.rs"]
mod podnet;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use agent_support::{IMAGE, TestNode};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A node plus the endpointslice controller (the agent tests run no controllers).
struct Cluster {
    node: TestNode,
    controllers: CancellationToken,
}

impl Cluster {
    async fn start() -> Cluster {
        let node = TestNode::start().await;
        let controllers = CancellationToken::new();
        tokio::spawn(
            moor::controllers::ControllerManager::new(node.client())
                .with_controllers(vec!["endpointslice".into(), "endpoints".into()])
                .run(controllers.clone()),
        );
        Cluster { node, controllers }
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.node.client(), "default")
    }

    async fn service(&self, spec: serde_json::Value) -> Service {
        let name = spec["name"].as_str().unwrap().to_owned();
        let mut body = spec;
        body.as_object_mut().unwrap().remove("name");
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": body,
        }))
        .unwrap();
        self.services()
            .create(&PostParams::default(), &svc)
            .await
            .unwrap()
    }

    /// A busybox httpd pod labelled `app`, serving its name at `/` on 8080, Ready while
    /// the file `ready` exists in its web root (an emptyDir the test can reach).
    async fn web_pod(&self, name: &str, app: &str) -> Pod {
        self.create_pod(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {
                "nodeName": "box1",
                "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "www", "emptyDir": {}}],
                "containers": [{
                    "name": "web", "image": IMAGE,
                    "command": ["sh", "-c",
                        "hostname > /www/index.html; touch /www/ready; exec httpd -f -p 8080 -h /www"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
                }],
            },
        }))
        .await
    }

    /// A pod running `script` once (a client inside the cluster network).
    async fn client_pod(&self, name: &str, script: &str) -> Pod {
        self.create_pod(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": "box1",
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "client", "image": IMAGE, "command": ["sh", "-c", script]}],
            },
        }))
        .await
    }

    async fn create_pod(&self, mut pod: serde_json::Value) -> Pod {
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        let pod: Pod = serde_json::from_value(pod).unwrap();
        self.node
            .pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    /// The host directory of `pod`'s `www` emptyDir.
    fn web_root(&self, pod: &Pod) -> PathBuf {
        self.node
            .data_dir()
            .join("pods")
            .join(pod.metadata.uid.as_deref().unwrap())
            .join("volumes/empty-dir/www")
    }

    async fn wait_ready(&self, name: &str) -> Pod {
        let pods = self.node.pods();
        eventually_ok!(format!("{name} Ready"), within Duration::from_secs(60), {
            match pods.get(name).await {
                Ok(p) if is_ready(&p) => Ok(p),
                other => Err(format!("{:?}", other.map(|p| p.status))),
            }
        })
    }

    /// Wait until the Service's EndpointSlices list exactly `ready` ready addresses.
    async fn wait_endpoints(&self, service: &str, ready: usize) {
        let slices: Api<EndpointSlice> = Api::namespaced(self.node.client(), "default");
        let selector = format!("kubernetes.io/service-name={service}");
        eventually_ok!(format!("{ready} ready endpoints of {service}"), {
            let list = slices
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .map_err(|e| e.to_string());
            match list {
                Ok(list) => {
                    let n = list
                        .items
                        .iter()
                        .flat_map(|s| &s.endpoints)
                        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                        .count();
                    if n == ready {
                        Ok(())
                    } else {
                        Err(format!("{n} ready"))
                    }
                }
                Err(e) => Err(e),
            }
        });
    }

    async fn pod_log(&self, name: &str) -> String {
        let pods = self.node.pods();
        eventually_ok!(format!("{name} finished"), within Duration::from_secs(60), {
            match pods.get(name).await {
                Ok(p) if matches!(phase(&p), "Succeeded" | "Failed") => Ok(()),
                other => Err(format!("{:?}", other.map(|p| p.status))),
            }
        });
        pods.logs(name, &Default::default()).await.unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controllers.cancel();
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn cluster_ip(svc: &Service) -> IpAddr {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap()
        .parse()
        .unwrap()
}

fn node_port(svc: &Service) -> u16 {
    svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .unwrap() as u16
}

/// GET / over a new connection; the body (the serving pod's name).
fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok();
    write!(stream, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream
        .read_to_string(&mut out)
        .map_err(|e| format!("read {addr}: {e}"))?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_owned();
    if body.is_empty() {
        Err(format!("no body from {addr}: {out:?}"))
    } else {
        Ok(body)
    }
}

/// Which pods answer `n` requests to `addr`.
fn servers(addr: SocketAddr, n: usize) -> Result<BTreeSet<String>, String> {
    (0..n).map(|_| http_get(addr)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_node_port_and_dns_reach_ready_pods() {
    let c = Cluster::start().await;
    c.web_pod("web-a", "web").await;
    c.web_pod("web-b", "web").await;
    let svc = c
        .service(json!({
            "name": "web", "type": "NodePort", "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        }))
        .await;
    let ip = cluster_ip(&svc);
    assert!(
        ip.to_string()
            .starts_with(&format!("10.210.{}.", c.node.subnet)),
        "allocated from the node's service range: {ip}"
    );
    c.wait_ready("web-a").await;
    c.wait_ready("web-b").await;
    c.wait_endpoints("web", 2).await;

    // From the node, by cluster IP: both pods answer, round-robin.
    let seen = eventually_ok!("both pods behind the cluster IP", {
        match servers(SocketAddr::new(ip, 80), 6) {
            Ok(s) if s.len() == 2 => Ok(s),
            other => Err(other),
        }
    });
    assert_eq!(
        seen,
        BTreeSet::from(["web-a".to_owned(), "web-b".to_owned()])
    );

    // By NodePort on the node's address.
    let port = node_port(&svc);
    assert!(agent_support::node_ports(c.node.subnet).contains(&port));
    let body = eventually_ok!(
        "the NodePort",
        http_get(SocketAddr::from(([127, 0, 0, 1], port)))
    );
    assert!(body == "web-a" || body == "web-b", "{body}");

    // By DNS name from the node, asking the cluster DNS.
    let dns = agent_support::cluster_dns(c.node.subnet);
    let resolved = eventually_ok!(
        "web.default.svc.cluster.local from the cluster DNS",
        dnsquery::resolve(dns, "web.default.svc.cluster.local.").await
    );
    assert_eq!(resolved, vec![ip]);
    assert!(http_get(SocketAddr::new(resolved[0], 80)).is_ok());

    // From another pod: by short name (search domains), FQDN and cluster IP; and the pod's
    // resolv.conf is the cluster's. (Not `wget -T`: Debian's static busybox crashes on it.)
    c.client_pod(
        "client",
        &format!(
            "cat /etc/resolv.conf; for u in http://web http://web.default.svc.cluster.local http://{ip}; do \
             timeout 10 wget -q -O - $u || echo FAILED $u; done"
        ),
    )
    .await;
    let log = c.pod_log("client").await;
    assert!(
        log.contains(&format!("nameserver {dns}")),
        "pods use the cluster DNS: {log}"
    );
    assert!(
        log.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{log}"
    );
    assert!(log.contains("options ndots:5"), "{log}");
    assert!(!log.contains("FAILED"), "{log}");
    let answers = log.lines().filter(|l| l.starts_with("web-")).count();
    assert_eq!(answers, 3, "{log}");

    // The system Services are served too: kubernetes (the API server) and kube-dns.
    let kubernetes = Api::<Service>::namespaced(c.node.client(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let kube_dns = Api::<Service>::namespaced(c.node.client(), "kube-system")
        .get("kube-dns")
        .await
        .unwrap();
    assert_eq!(cluster_ip(&kube_dns), dns);
    let api_ip = cluster_ip(&kubernetes);
    let version = eventually_ok!(
        "the API server through the kubernetes Service",
        raw_get(SocketAddr::new(api_ip, 443), "/version")
    );
    assert!(version.contains("gitVersion"), "{version}");
}

/// `GET path` over plain HTTP/1.0; the whole response.
fn raw_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gates_endpoints_and_removal_closes_connections() {
    let c = Cluster::start().await;
    let svc = c
        .service(json!({
            "name": "gate", "selector": {"app": "gate"},
            "ports": [{"port": 80, "targetPort": 8080}],
        }))
        .await;
    let addr = SocketAddr::new(cluster_ip(&svc), 80);

    // No endpoint yet: refused at once, not left hanging.
    let started = Instant::now();
    eventually_ok!("no listener without endpoints", {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(started.elapsed() < Duration::from_secs(5));

    let pod = c.web_pod("gate-a", "gate").await;
    c.wait_ready("gate-a").await;
    c.wait_endpoints("gate", 1).await;
    eventually_ok!("served once ready", http_get(addr));

    // An idle connection to the endpoint is closed when the endpoint goes away, and new
    // connections are refused again.
    let mut idle = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    std::fs::remove_file(c.web_root(&pod).join("ready")).unwrap();
    c.wait_endpoints("gate", 0).await;
    let mut buf = [0u8; 16];
    let closed = Instant::now();
    match idle.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the connection should have been closed, got {other:?}"),
    }
    assert!(closed.elapsed() < Duration::from_secs(10));
    eventually_ok!("refused after the endpoint left", {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    // Ready again: re-added and served.
    std::fs::write(c.web_root(&pod).join("ready"), "").unwrap();
    c.wait_endpoints("gate", 1).await;
    assert_eq!(eventually_ok!("served again", http_get(addr)), "gate-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_pins_a_client_to_one_pod() {
    let c = Cluster::start().await;
    c.web_pod("sticky-a", "sticky").await;
    c.web_pod("sticky-b", "sticky").await;
    let svc = c
        .service(json!({
            "name": "sticky", "selector": {"app": "sticky"},
            "sessionAffinity": "ClientIP",
            "ports": [{"port": 80, "targetPort": 8080}],
        }))
        .await;
    c.wait_ready("sticky-a").await;
    c.wait_ready("sticky-b").await;
    c.wait_endpoints("sticky", 2).await;
    let addr = SocketAddr::new(cluster_ip(&svc), 80);
    eventually_ok!("served", http_get(addr));
    let seen = servers(addr, 10).unwrap();
    assert_eq!(seen.len(), 1, "one client, one pod: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_are_relayed_and_answered_from_the_service_address() {
    let c = Cluster::start().await;
    // busybox has no UDP server, so the endpoint is an echo server on the node's bridge
    // address, given to a selector-less Service by hand as any user can.
    let gateway: IpAddr = format!("10.201.{}.1", c.node.subnet).parse().unwrap();
    c.web_pod("bridge-up", "none").await; // brings the bridge (and its address) up
    c.wait_ready("bridge-up").await;
    let echo = std::net::UdpSocket::bind(SocketAddr::new(gateway, 0)).unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let mut reply = b"echo ".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = echo.send_to(&reply, from);
        }
    });
    let svc = c
        .service(json!({
            "name": "udp", "ports": [{"name": "echo", "port": 5353, "protocol": "UDP"}],
        }))
        .await;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "udp-manual", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "udp"}},
        "addressType": "IPv4",
        "ports": [{"name": "echo", "port": echo_addr.port(), "protocol": "UDP"}],
        "endpoints": [{"addresses": [gateway.to_string()], "conditions": {"ready": true}}],
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(c.node.client(), "default")
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();
    let service = SocketAddr::new(cluster_ip(&svc), 5353);
    let client = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    client.connect(service).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let reply = eventually_ok!("a UDP reply through the cluster IP", {
        match client.send(b"ping").and_then(|_| client.recv(&mut buf)) {
            Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => Err(e.to_string()),
        }
    });
    assert_eq!(
        reply, "echo ping",
        "a connected socket only accepts replies from the service address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_removes_stale_addresses_and_serves_again() {
    let mut c = Cluster::start().await;
    c.web_pod("again-a", "again").await;
    let svc = c
        .service(json!({
            "name": "again", "selector": {"app": "again"},
            "ports": [{"port": 80, "targetPort": 8080}],
        }))
        .await;
    c.wait_ready("again-a").await;
    c.wait_endpoints("again", 1).await;
    let ip = cluster_ip(&svc);
    let addr = SocketAddr::new(ip, 80);
    eventually_ok!("served", http_get(addr));
    let on_lo = |ip: &str| {
        let out = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", "lo"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {ip}/32"))
    };
    assert!(on_lo(&ip.to_string()), "the cluster IP is on lo");

    // Stopped: everything it bound is released.
    c.node.stop_agent().await;
    assert!(!on_lo(&ip.to_string()), "released on exit");
    assert!(http_get(addr).is_err());

    // An address a crashed proxy left behind in the range is removed at start.
    let stale = format!("10.210.{}.200", c.node.subnet);
    let added = Command::new("ip")
        .args(["addr", "add", &format!("{stale}/32"), "dev", "lo"])
        .status()
        .unwrap();
    assert!(added.success());
    c.node.start_agent().await;
    eventually_ok!("served after the restart", http_get(addr));
    eventually_ok!("the stale address removed", {
        if on_lo(&stale) { Err(()) } else { Ok(()) }
    });
    assert!(on_lo(&ip.to_string()));

    // Deleting the Service removes its address.
    c.services()
        .delete("again", &DeleteParams::default())
        .await
        .unwrap();
    eventually_ok!("the deleted Service's address removed", {
        if on_lo(&ip.to_string()) {
            Err(())
        } else {
            Ok(())
        }
    });
}

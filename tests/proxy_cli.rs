//! `moor proxy` as a user runs it next to `moor agent --no-proxy`: the real binary against
//! a real API server, forwarding a selector-less Service (an EndpointSlice written by
//! hand, pointing at a server this test runs on the host) by cluster IP and NodePort,
//! answering its name on the cluster DNS address, and releasing every address on SIGTERM.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/dnsquery.rs"]
mod dnsquery;
#[path = "support/podnet.rs"]
mod podnet;
#[path = "support/process.rs"]
mod process;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use process::Proc;
use serde_json::json;

/// Read one greeting from `addr`.
fn greeting(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moor_proxy_forwards_answers_dns_and_cleans_up() {
    // Cluster IPs are host-wide: this test's range is its own.
    let (subnet, _claim) = podnet::claim_subnet(211, "mprx");
    let cidr = format!("10.211.{subnet}.0/24");
    let prefix = format!("10.211.{subnet}.");
    podnet::remove_lo_addresses(&prefix);
    let server = TestServer::start_with(Backend::Embedded, |s| {
        s.with_service_cidr(cidr.parse().unwrap())
            .with_node_port_range("32610-32619".parse().unwrap())
    })
    .await;
    let client = server.client();

    // The endpoint: a greeting server on the host.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in backend.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut s, b"hello from the host\n");
        }
    });
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "greeter", "namespace": "default"},
        "spec": {"type": "NodePort", "ports": [{"name": "g", "port": 7000}]},
    }))
    .unwrap();
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let spec = svc.spec.unwrap();
    let ip: IpAddr = spec.cluster_ip.unwrap().parse().unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.unwrap() as u16;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "greeter-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "greeter"}},
        "addressType": "IPv4",
        "ports": [{"name": "g", "port": backend_port}],
        "endpoints": [{"addresses": ["127.0.0.1"]}],
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(client, "default")
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\n\
             contexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n\
             current-context: t\nusers:\n- name: t\n  user: {{}}\n",
            server.url
        ),
    )
    .unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["proxy", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--node-name",
            "box1",
            "--service-cidr",
            &cidr,
            "--nodeport-address",
            "127.0.0.1",
            "--resolv-conf",
        ])
        .arg(&resolv)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut proxy = Proc(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let dns: IpAddr = format!("10.211.{subnet}.10").parse().unwrap();
    assert_eq!(first.trim(), format!("proxy+dns  {cidr}  dns {dns}"));

    let by_ip = eventually_ok!("the cluster IP", greeting(SocketAddr::new(ip, 7000)));
    assert_eq!(by_ip, "hello from the host\n");
    let by_node_port = greeting(SocketAddr::from(([127, 0, 0, 1], node_port))).unwrap();
    assert_eq!(by_node_port, "hello from the host\n");
    let resolved = eventually_ok!(
        "the Service's name",
        dnsquery::resolve(dns, "greeter.default.svc.cluster.local.").await
    );
    assert_eq!(resolved, vec![ip]);
    assert!(podnet::lo_addresses(&prefix).contains(&format!("{ip}/32")));

    // SIGTERM: a clean exit that leaves no address behind.
    kill(Pid::from_raw(proxy.0.id() as i32), Signal::SIGTERM).unwrap();
    let status = eventually_some!("moor proxy exits", proxy.0.try_wait().unwrap());
    assert!(status.success(), "{status:?}");
    assert_eq!(podnet::lo_addresses(&prefix), Vec::<String>::new());
    assert!(greeting(SocketAddr::new(ip, 7000)).is_err());
}

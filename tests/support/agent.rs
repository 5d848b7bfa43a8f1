//! A whole node for tests: a real moor API server, a private containerd with the busybox
//! test image imported, and the node agent running in-process on its own pod subnet and
//! bridge. Dropping it stops the agent, tears down pod networks (namespaces, veths,
//! leases, NAT rules) and the bridge, and the containerd instance removes every container.
//!
//! Tests run in parallel (under nextest each in its own process, next to other test
//! binaries), so each node claims a subnet 10.201.N.0/24 with an flock on a file in the
//! temp dir (released by the kernel even if the process dies) and uses the bridge `mtagN`.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use moor::kubelet::containerd::Containerd;
use moor::kubelet::images::ImageStore;
use moor::kubelet::network::NetworkConfig;
use moor::kubelet::{Agent, AgentConfig};
use nix::fcntl::Flock;
use tokio_util::sync::CancellationToken;

use crate::apiserver_support::{Backend, TestServer};
use crate::containerd_support::ContainerdInstance;

/// The test image's name as pods write it (a non-latest tag: pulled only if absent).
pub const IMAGE: &str = "busybox:moor-test";

pub struct TestNode {
    pub server: TestServer,
    pub containerd: ContainerdInstance,
    pub config: AgentConfig,
    pub subnet: u8,
    dir: tempfile::TempDir,
    agent: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    _claim: Flock<File>,
}

impl TestNode {
    /// Server, containerd with the image, and a running agent whose Node is registered.
    pub async fn start() -> TestNode {
        // The claim also gives this node its own service range and node ports: cluster IPs
        // and NodePorts are host-wide, and other tests' proxies run on this host too.
        let (subnet, claim) = crate::podnet::claim_subnet(201, "mtag");
        let server = TestServer::start_with(Backend::Embedded, |s| {
            s.with_service_cidr(service_cidr(subnet).parse().unwrap())
                .with_node_port_range(node_ports(subnet).try_into().unwrap())
        })
        .await;
        let containerd = ContainerdInstance::start();
        let dir = tempfile::tempdir().unwrap();
        let archive = crate::image_support::busybox_oci_archive(dir.path(), IMAGE);
        let c = Containerd::connect(&containerd.socket()).await.unwrap();
        ImageStore::new(c).import_archive(&archive).await.unwrap();
        remove_cluster_ips(subnet);
        let bridge = format!("mtag{subnet}");
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        let mut config = AgentConfig::new("box1", dir.path().join("agent"));
        config.containerd_socket = containerd.socket();
        config.pod_cidr = format!("10.201.{subnet}.0/24");
        config.bridge = bridge;
        config.kubelet_port = 0;
        config.address = Some("127.0.0.1".parse().unwrap());
        config.log_driver = PathBuf::from(env!("CARGO_BIN_EXE_moor"));
        config.service_cidr = service_cidr(subnet).parse().unwrap();
        config.cluster_dns = Some(cluster_dns(subnet));
        let mut node = TestNode {
            server,
            containerd,
            config,
            subnet,
            dir,
            agent: None,
            _claim: claim,
        };
        node.start_agent().await;
        node
    }

    pub fn client(&self) -> kube::Client {
        self.server.client()
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client(), "default")
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Starts the agent (again) and waits for it to have registered.
    pub async fn start_agent(&mut self) {
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let agent = Agent::new(self.client(), self.config.clone()).with_ready_signal(ready_tx);
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = agent.run(token).await {
                panic!("agent failed: {e}");
            }
        });
        tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .expect("agent ready within 20 s")
            .expect("agent ready");
        self.agent = Some((shutdown, handle));
    }

    /// Stops the agent (containers keep running, as when the process is restarted).
    pub async fn stop_agent(&mut self) {
        if let Some((shutdown, handle)) = self.agent.take() {
            shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    /// `ctr -n moor containers ls -q`.
    pub fn containers(&self) -> Vec<String> {
        self.containerd
            .ctr("moor", &["containers", "ls", "-q"])
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// `ctr -n moor tasks ls` rows (container id, pid, status).
    pub fn tasks(&self) -> Vec<(String, String)> {
        crate::containerd_support::tasks(&self.containerd.socket(), "moor")
    }

    fn network_config(&self) -> NetworkConfig {
        NetworkConfig::new(
            self.config.pod_cidr.clone(),
            self.config.data_dir.join("network"),
        )
        .with_bridge(self.config.bridge.clone())
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some((shutdown, handle)) = self.agent.take() {
            shutdown.cancel();
            handle.abort();
        }
        crate::podnet::teardown_networks(&self.network_config());
        remove_cluster_ips(self.subnet);
    }
}

/// Node `subnet`'s service range (the API server's and the agent's).
pub fn service_cidr(subnet: u8) -> String {
    format!("10.210.{subnet}.0/24")
}

/// Node `subnet`'s cluster DNS address (the kube-dns Service's, 10th of the range).
pub fn cluster_dns(subnet: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([10, 210, subnet, 10])
}

/// Node `subnet`'s NodePort range: ten ports of its own.
pub fn node_ports(subnet: u8) -> std::ops::RangeInclusive<u16> {
    let start = 30000 + u16::from(subnet) * 10;
    start..=start + 9
}

/// Remove cluster IPs of node `subnet` left on `lo` (an aborted agent's proxy cannot).
fn remove_cluster_ips(subnet: u8) {
    crate::podnet::remove_lo_addresses(&format!("10.210.{subnet}."));
}

impl TestNode {
    /// A kubeconfig for the real kubectl, pointing at the test server.
    pub fn kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig.yaml");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\nusers:\n- name: test\n  user: {{}}\n",
            self.server.url
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }
}

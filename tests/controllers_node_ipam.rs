//! The node IPAM controller against a real API server: distinct ranges, preset ranges,
//! restarts, reuse after deletion, exhaustion; and its flags on a real `moor server`.

#[path = "support/wait.rs"]
#[macro_use]
mod wait;

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use moor::controllers::ControllerManager;
use moor::controllers::node_ipam::IpamConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(15);

/// The node IPAM controller alone, stopped when dropped.
struct Allocator {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Allocator {
    fn start(client: &Client, config: IpamConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            ControllerManager::new(client.clone())
                .with_controllers(vec!["nodeipam".into()])
                .with_node_ipam(config)
                .run(shutdown.clone()),
        );
        Allocator {
            shutdown,
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the controller stops")
                .unwrap();
        }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config(cidr: &str, mask: u8) -> IpamConfig {
    IpamConfig::new(cidr.parse().unwrap(), mask).unwrap()
}

async fn create_node(client: &Client, name: &str, spec: serde_json::Value) {
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
}

async fn delete_node(client: &Client, name: &str) {
    Api::<Node>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    eventually_ok!(format!("node {name} gone"), within PATIENCE, {
        match Api::<Node>::all(client.clone()).get_opt(name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// The node's podCIDR, once set; checks podCIDRs says the same.
async fn range_of(client: &Client, name: &str) -> Result<String, String> {
    let node = Api::<Node>::all(client.clone())
        .get(name)
        .await
        .map_err(|e| e.to_string())?;
    let spec = node.spec.unwrap_or_default();
    match spec.pod_cidr {
        Some(cidr) => {
            assert_eq!(
                spec.pod_cidrs,
                Some(vec![cidr.clone()]),
                "podCIDRs of {name} agree with podCIDR"
            );
            Ok(cidr)
        }
        None => Err(format!("{name} has no podCIDR yet")),
    }
}

async fn wait_range(client: &Client, name: &str) -> String {
    eventually_ok!(format!("a pod range for {name}"), within PATIENCE, range_of(client, name).await)
}

#[tokio::test]
async fn nodes_get_distinct_ranges() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let _allocator = Allocator::start(&client, IpamConfig::default());
    let names = ["n1", "n2", "n3", "n4", "n5"];
    for name in names {
        create_node(&client, name, json!({})).await;
    }
    let mut ranges = BTreeSet::new();
    for name in names {
        let range = wait_range(&client, name).await;
        assert!(
            range.starts_with("10.42.") && range.ends_with(".0/24"),
            "{name}: {range}"
        );
        assert!(ranges.insert(range.clone()), "{range} given twice");
    }
    // The lowest ranges first.
    let expected: BTreeSet<String> = (0..5).map(|i| format!("10.42.{i}.0/24")).collect();
    assert_eq!(ranges, expected);
}

#[tokio::test]
async fn preset_ranges_are_left_alone_and_counted() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    create_node(
        &client,
        "preset",
        json!({"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"]}),
    )
    .await;
    create_node(
        &client,
        "wide",
        json!({"podCIDR": "10.42.2.0/23", "podCIDRs": ["10.42.2.0/23"]}),
    )
    .await;
    create_node(
        &client,
        "outside",
        json!({"podCIDR": "192.168.9.0/24", "podCIDRs": ["192.168.9.0/24"]}),
    )
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    let before: Vec<Option<String>> = {
        let mut v = Vec::new();
        for name in ["preset", "wide", "outside"] {
            v.push(nodes.get(name).await.unwrap().resource_version());
        }
        v
    };
    let _allocator = Allocator::start(&client, IpamConfig::default());
    create_node(&client, "new1", json!({})).await;
    create_node(&client, "new2", json!({})).await;
    let mut given = BTreeSet::new();
    given.insert(wait_range(&client, "new1").await);
    given.insert(wait_range(&client, "new2").await);
    // 0 is preset, 2 and 3 are covered by the /23: the next free are 1 and 4.
    assert_eq!(
        given,
        BTreeSet::from(["10.42.1.0/24".to_owned(), "10.42.4.0/24".to_owned()])
    );
    for (name, rv) in ["preset", "wide", "outside"].into_iter().zip(before) {
        assert_eq!(
            nodes.get(name).await.unwrap().resource_version(),
            rv,
            "{name} untouched"
        );
    }
    assert_eq!(
        range_of(&client, "outside").await.unwrap(),
        "192.168.9.0/24"
    );
}

#[tokio::test]
async fn restart_does_not_reuse_taken_ranges() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let first = Allocator::start(&client, IpamConfig::default());
    create_node(&client, "a", json!({})).await;
    create_node(&client, "b", json!({})).await;
    let a = wait_range(&client, "a").await;
    let b = wait_range(&client, "b").await;
    first.stop().await;

    let _second = Allocator::start(&client, IpamConfig::default());
    create_node(&client, "c", json!({})).await;
    let c = wait_range(&client, "c").await;
    assert_ne!(c, a);
    assert_ne!(c, b);
    assert_eq!(c, "10.42.2.0/24");
    // The earlier ones stay as they were.
    assert_eq!(range_of(&client, "a").await.unwrap(), a);
    assert_eq!(range_of(&client, "b").await.unwrap(), b);
}

#[tokio::test]
async fn deleted_node_range_is_reused() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let _allocator = Allocator::start(&client, IpamConfig::default());
    for name in ["a", "b", "c"] {
        create_node(&client, name, json!({})).await;
        wait_range(&client, name).await;
    }
    let freed = range_of(&client, "b").await.unwrap();
    assert_eq!(freed, "10.42.1.0/24");
    delete_node(&client, "b").await;
    create_node(&client, "d", json!({})).await;
    assert_eq!(wait_range(&client, "d").await, freed);
}

#[tokio::test]
async fn exhausted_cluster_cidr_leaves_the_node_waiting() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    // Two /24s in all.
    let _allocator = Allocator::start(&client, config("10.99.0.0/23", 24));
    for name in ["a", "b"] {
        create_node(&client, name, json!({})).await;
        wait_range(&client, name).await;
    }
    create_node(&client, "c", json!({})).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = eventually_ok!("a CIDRNotAvailable event for c", within PATIENCE, {
        events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some("c")
                    && e.reason.as_deref() == Some("CIDRNotAvailable")
            })
            .ok_or("no event yet")
    });
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.unwrap_or_default();
    assert!(message.contains("10.99.0.0/23"), "{message}");
    assert!(range_of(&client, "c").await.is_err(), "c has no range");

    let freed = range_of(&client, "a").await.unwrap();
    delete_node(&client, "a").await;
    assert_eq!(wait_range(&client, "c").await, freed);
}

/// A `moor server` process, killed when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn moor_server(data_dir: &std::path::Path, port: u16, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moor"));
    command
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--disable-gitops", "--disable-scheduler"])
        .args(extra)
        .env_remove("MOOR_ETCD_ENDPOINTS");
    command
}

#[tokio::test]
async fn moor_server_flags() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = moor_server(
        dir.path(),
        port,
        &[
            "--cluster-cidr",
            "10.77.0.0/16",
            "--node-cidr-mask-size",
            "26",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = ServerProcess(child);
    // Wait for the ready line, then keep draining so the server never blocks on a pipe.
    let mut lines = BufReader::new(stdout).lines();
    tokio::task::spawn_blocking(move || {
        for line in lines.by_ref() {
            if line.unwrap_or_default().starts_with("apiserver") {
                break;
            }
        }
        for _ in lines {}
    });
    // The server writes its kubeconfig (TLS, admin certificate) before its ready line.
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let config = eventually_ok!("the kubeconfig", within PATIENCE, async {
        let text = kube::config::Kubeconfig::read_from(&kubeconfig)?;
        kube::Config::from_custom_kubeconfig(text, &Default::default())
            .await
            .map_err(anyhow::Error::from)
    }.await);
    let client = Client::try_from(config).unwrap();
    eventually_ok!("the server up", within PATIENCE, client.apiserver_version().await);
    create_node(&client, "box1", json!({})).await;
    // Leader election first (a few seconds at most), then the allocation.
    let range = eventually_ok!("box1's range", within Duration::from_secs(30),
        range_of(&client, "box1").await);
    assert_eq!(range, "10.77.0.0/26");
}

#[test]
fn bad_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, says) in [
        (&["--cluster-cidr", "fd00::/64"][..], "IPv6"),
        (&["--cluster-cidr", "10.0.0.0/99"][..], "10.0.0.0/99"),
        (
            &[
                "--cluster-cidr",
                "10.0.0.0/8",
                "--node-cidr-mask-size",
                "25",
            ][..],
            "25",
        ),
    ] {
        let output = moor_server(dir.path(), free_port(), flags)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flags:?} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}

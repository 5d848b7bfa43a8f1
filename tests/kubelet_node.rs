//! The Node side of the agent against a real moor API server: registration, restart,
//! the heartbeat Lease, runtime readiness, the node lifecycle controller watching the
//! heartbeats, and an API server that goes away and comes back.
//!
//! Intervals are shortened with `with_intervals` so renewals happen in tenths of seconds.

#[path = "support/wait.rs"]
#[macro_use]
mod wait;

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, NodeCondition};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use moor::controllers::{ControllerManager, Options};
use moor::kubelet::node::{NodeAgent, NodeConfig, host_facts};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(15);

fn config(name: &str, data_dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        name: name.to_owned(),
        kubelet_port: 10250,
        address: Some("192.0.2.7".parse().unwrap()),
        data_dir: data_dir.to_owned(),
        runtime_version: "containerd://1.6.20~ds1".to_owned(),
        labels: BTreeMap::from([("tier".to_owned(), "test".to_owned())]),
        max_pods: 110,
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// (status, reason, message) of a condition, for comparisons that show everything.
fn summary(node: &Node, type_: &str) -> Option<(String, String, String)> {
    condition(node, type_).map(|c| {
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    })
}

fn ready(node: &Node) -> Option<String> {
    condition(node, "Ready").map(|c| c.status.clone())
}

async fn get_node(client: &Client, name: &str) -> Result<Node, String> {
    Api::<Node>::all(client.clone())
        .get(name)
        .await
        .map_err(|e| e.to_string())
}

async fn get_lease(client: &Client, name: &str) -> Result<Lease, String> {
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no lease {name}"))
}

fn renew_time(lease: &Lease) -> Option<jiff::Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

/// Cancels the token when dropped, so a failing test stops its agents.
struct Stop(CancellationToken);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[tokio::test]
async fn register_creates_the_node() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let data = tempfile::tempdir().unwrap();
    // No DiskPressure whatever this machine's disk looks like (see disk_pressure_threshold).
    let agent =
        NodeAgent::new(client.clone(), config("box1", data.path())).with_disk_pressure_percent(0);
    let returned = agent.register().await.unwrap();
    let node = get_node(&client, "box1").await.unwrap();
    assert_eq!(returned.uid(), node.uid());

    let labels = node.labels();
    for (key, value) in [
        ("kubernetes.io/hostname", "box1"),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("tier", "test"),
    ] {
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(value),
            "label {key}"
        );
    }

    let status = node.status.clone().unwrap();
    let facts = host_facts(data.path()).unwrap();
    let capacity = status.capacity.clone().unwrap();
    let get = |key: &str| capacity.get(key).map(|q| q.0.clone());
    assert_eq!(get("cpu"), Some(facts.cpus.to_string()));
    assert_eq!(get("pods").as_deref(), Some("110"));
    assert_eq!(get("hugepages-2Mi").as_deref(), Some("0"));
    assert_eq!(get("hugepages-1Gi").as_deref(), Some("0"));
    let memory = get("memory").unwrap();
    assert!(
        memory.ends_with("Ki") || memory.ends_with("Mi") || memory.ends_with("Gi"),
        "memory {memory}"
    );
    assert!(get("ephemeral-storage").is_some());
    assert_eq!(status.allocatable, status.capacity, "nothing reserved yet");

    let addresses: Vec<(String, String)> = status
        .addresses
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert_eq!(
        addresses,
        [
            ("InternalIP".to_owned(), "192.0.2.7".to_owned()),
            ("Hostname".to_owned(), "box1".to_owned())
        ]
    );
    assert_eq!(
        status
            .daemon_endpoints
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port),
        Some(10250)
    );
    let info = status.node_info.unwrap();
    let version = client.apiserver_version().await.unwrap().git_version;
    assert_eq!(info.kubelet_version, version);
    assert_eq!(info.kube_proxy_version, version);
    assert_eq!(info.container_runtime_version, "containerd://1.6.20~ds1");
    assert_eq!(info.operating_system, "linux");
    assert_eq!(info.architecture, "amd64");
    assert_eq!(info.kernel_version, facts.kernel_version);
    assert!(!info.kernel_version.is_empty());
    assert!(!info.os_image.is_empty());
    assert_eq!(info.machine_id, facts.machine_id);
    assert_eq!(info.boot_id, facts.boot_id);
    assert!(!info.boot_id.is_empty());
    assert!(!info.system_uuid.is_empty() || info.machine_id.is_empty());

    let s = |a: &str, b: &str, c: &str| Some((a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(
        summary(&node, "Ready"),
        s("True", "KubeletReady", "kubelet is posting ready status")
    );
    assert_eq!(
        summary(&node, "MemoryPressure"),
        s(
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        )
    );
    assert_eq!(
        summary(&node, "DiskPressure"),
        s(
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        )
    );
    assert_eq!(
        summary(&node, "PIDPressure"),
        s(
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        )
    );
    for c in node.status.as_ref().unwrap().conditions.as_ref().unwrap() {
        assert!(c.last_heartbeat_time.is_some(), "{c:?}");
        assert!(c.last_transition_time.is_some(), "{c:?}");
    }
    // No spec fields of others' are invented.
    let spec = node.spec.unwrap_or_default();
    assert_eq!(spec.pod_cidr, None);
    assert_eq!(spec.taints, None);
}

#[tokio::test]
async fn disk_pressure_threshold() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let data = tempfile::tempdir().unwrap();
    let always = NodeAgent::new(client.clone(), config("full", data.path()))
        .with_disk_pressure_percent(100)
        .register()
        .await
        .unwrap();
    assert_eq!(
        summary(&always, "DiskPressure"),
        Some((
            "True".to_owned(),
            "KubeletHasDiskPressure".to_owned(),
            "kubelet has disk pressure".to_owned()
        ))
    );
    // The default, judged on this machine's disk.
    let stat = nix::sys::statvfs::statvfs(data.path()).unwrap();
    let pressure = stat.blocks_available() * 100
        < stat.blocks() * u64::from(moor::kubelet::node::DEFAULT_DISK_AVAILABLE_MIN_PERCENT);
    let default = NodeAgent::new(client.clone(), config("real", data.path()))
        .register()
        .await
        .unwrap();
    assert_eq!(
        condition(&default, "DiskPressure").map(|c| c.status.as_str()),
        Some(if pressure { "True" } else { "False" })
    );
}

#[tokio::test]
async fn default_address_is_a_host_ipv4() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config("box2", data.path());
    cfg.address = None;
    let node = NodeAgent::new(client, cfg).register().await.unwrap();
    let internal = node
        .status
        .unwrap()
        .addresses
        .unwrap()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .unwrap();
    let ip: IpAddr = internal.address.parse().unwrap();
    assert!(ip.is_ipv4(), "{ip}");
}

#[tokio::test]
async fn restart_keeps_spec_and_unchanged_transition_times() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let data = tempfile::tempdir().unwrap();
    let first = NodeAgent::new(client.clone(), config("box1", data.path()))
        .register()
        .await
        .unwrap();
    let uid = first.uid();

    // Others set the spec and a label of their own.
    let nodes: Api<Node> = Api::all(client.clone());
    let spec_patch = json!({
        "metadata": {"labels": {"team": "blue", "tier": "old"}},
        "spec": {
            "podCIDR": "10.42.7.0/24",
            "podCIDRs": ["10.42.7.0/24"],
            "unschedulable": true,
            "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
        },
    });
    nodes
        .patch("box1", &PatchParams::default(), &Patch::Merge(&spec_patch))
        .await
        .unwrap();
    let before = get_node(&client, "box1").await.unwrap();
    // Times have whole seconds: wait for the clock to pass one so a reset would show.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut cfg = config("box1", data.path());
    cfg.labels.insert("zone".to_owned(), "a".to_owned());
    let again = NodeAgent::new(client.clone(), cfg)
        .register()
        .await
        .unwrap();
    let after = get_node(&client, "box1").await.unwrap();
    assert_eq!(again.resource_version(), after.resource_version());
    assert_eq!(after.uid(), uid, "the same Node, not a new one");

    let spec = after.spec.clone().unwrap();
    assert_eq!(spec.pod_cidr.as_deref(), Some("10.42.7.0/24"));
    assert_eq!(spec.pod_cidrs, Some(vec!["10.42.7.0/24".to_owned()]));
    assert_eq!(spec.unschedulable, Some(true));
    let taints = spec.taints.unwrap();
    assert!(
        taints.iter().any(|t| t.key == "dedicated"),
        "taints: {taints:?}"
    );

    let labels = after.labels();
    assert_eq!(labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(labels.get("tier").map(String::as_str), Some("test"));
    assert_eq!(labels.get("zone").map(String::as_str), Some("a"));

    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let old = condition(&before, type_).unwrap();
        let new = condition(&after, type_).unwrap();
        assert_eq!(new.status, old.status, "{type_}");
        assert_eq!(
            new.last_transition_time, old.last_transition_time,
            "{type_} kept its transition time"
        );
        assert!(
            new.last_heartbeat_time > old.last_heartbeat_time,
            "{type_} heartbeat moved: {:?} -> {:?}",
            old.last_heartbeat_time,
            new.last_heartbeat_time
        );
    }
}

#[tokio::test]
async fn lease_is_created_and_renewed() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let data = tempfile::tempdir().unwrap();
    let stop = Stop(CancellationToken::new());
    let agent = NodeAgent::new(client.clone(), config("box1", data.path()))
        .with_intervals(Duration::from_millis(200), Duration::from_secs(60));
    let task = tokio::spawn(agent.run(stop.0.clone()));

    let lease =
        eventually_ok!("the node's lease", within PATIENCE, get_lease(&client, "box1").await);
    let node = get_node(&client, "box1").await.unwrap();
    let spec = lease.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("box1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owners = lease.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].kind, "Node");
    assert_eq!(owners[0].name, "box1");
    assert_eq!(Some(&owners[0].uid), node.uid().as_ref());

    let first = renew_time(&lease).unwrap();
    let mut renewals = 0;
    let mut last = first;
    eventually_ok!("three more renewals", within PATIENCE, {
        let now = get_lease(&client, "box1")
            .await
            .map(|l| renew_time(&l))
            .unwrap_or_default();
        if let Some(now) = now
            && now > last
        {
            renewals += 1;
            last = now;
        }
        if renewals >= 3 { Ok(()) } else { Err((first, last, renewals)) }
    });

    stop.0.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run returns when shut down")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_deleted_node_is_registered_again() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let data = tempfile::tempdir().unwrap();
    let stop = Stop(CancellationToken::new());
    let agent = NodeAgent::new(client.clone(), config("box1", data.path()))
        .with_intervals(Duration::from_millis(200), Duration::from_secs(60));
    tokio::spawn(agent.run(stop.0.clone()));
    let lease =
        eventually_ok!("the node's lease", within PATIENCE, get_lease(&client, "box1").await);
    let old_uid = lease.owner_references()[0].uid.clone();

    Api::<Node>::all(client.clone())
        .delete("box1", &Default::default())
        .await
        .unwrap();
    let node = eventually_ok!("the node back, as a new object", within PATIENCE, {
        match get_node(&client, "box1").await {
            Ok(node) if node.uid().as_deref() != Some(old_uid.as_str()) => Ok(node),
            other => Err(other.map(|n| n.uid())),
        }
    });
    assert_eq!(ready(&node).as_deref(), Some("True"));
    let new_uid = node.uid().unwrap();
    eventually_ok!("the lease owned by the new node", within PATIENCE, {
        let owners = get_lease(&client, "box1")
            .await
            .map(|l| l.owner_references().to_vec())
            .unwrap_or_default();
        if owners.len() == 1 && owners[0].uid == new_uid {
            Ok(())
        } else {
            Err(owners)
        }
    });
}

#[tokio::test]
async fn runtime_status_drives_ready() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let data = tempfile::tempdir().unwrap();
    let (tx, rx) = watch::channel(Ok(()));
    let stop = Stop(CancellationToken::new());
    // Long intervals: only the runtime change itself can bring the news in time.
    let agent = NodeAgent::new(client.clone(), config("box1", data.path()))
        .with_runtime_status(rx)
        .with_intervals(Duration::from_secs(30), Duration::from_secs(60));
    tokio::spawn(agent.run(stop.0.clone()));
    eventually_ok!("the node Ready", within PATIENCE, {
        match get_node(&client, "box1").await {
            Ok(node) if ready(&node).as_deref() == Some("True") => Ok(()),
            other => Err(other.map(|n| summary(&n, "Ready"))),
        }
    });
    // Let registration's events and writes settle before timing the change.
    tokio::time::sleep(Duration::from_millis(300)).await;

    tx.send(Err("container runtime is down".to_owned()))
        .unwrap();
    let node = eventually_ok!("Ready False within a second", within Duration::from_secs(1), {
        match get_node(&client, "box1").await {
            Ok(node) if ready(&node).as_deref() == Some("False") => Ok(node),
            other => Err(other.map(|n| summary(&n, "Ready"))),
        }
    });
    assert_eq!(
        summary(&node, "Ready"),
        Some((
            "False".to_owned(),
            "KubeletNotReady".to_owned(),
            "container runtime is down".to_owned()
        ))
    );
    let down_since = condition(&node, "Ready")
        .unwrap()
        .last_transition_time
        .clone();

    tx.send(Ok(())).unwrap();
    let node = eventually_ok!("Ready True again within a second", within Duration::from_secs(1), {
        match get_node(&client, "box1").await {
            Ok(node) if ready(&node).as_deref() == Some("True") => Ok(node),
            other => Err(other.map(|n| summary(&n, "Ready"))),
        }
    });
    assert_eq!(
        summary(&node, "Ready").map(|s| s.1),
        Some("KubeletReady".to_owned())
    );
    assert!(condition(&node, "Ready").unwrap().last_transition_time >= down_since);

    // The transitions were recorded as events about the node.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually_ok!("NodeNotReady and NodeReady events", within PATIENCE, {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some("box1"))
            .filter_map(|e| e.reason)
            .collect();
        if reasons.iter().any(|r| r == "NodeNotReady") && reasons.iter().any(|r| r == "NodeReady")
        {
            Ok(())
        } else {
            Err(reasons)
        }
    });
}

#[tokio::test]
async fn node_lifecycle_controller_sees_the_heartbeats() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let data = tempfile::tempdir().unwrap();
    let stop = Stop(CancellationToken::new());
    tokio::spawn(
        ControllerManager::new(client.clone())
            .with_controllers(vec!["nodelifecycle".into()])
            .with_options(Options {
                node_monitor_grace: Duration::from_secs(2),
                pod_eviction_timeout: Duration::from_secs(300),
                data_dir: data.path().into(),
            })
            .run(stop.0.clone()),
    );
    let agent_stop = Stop(CancellationToken::new());
    // The status is written only at registration within this test: the Lease alone
    // must keep the node alive.
    let agent = NodeAgent::new(client.clone(), config("box1", data.path()))
        .with_intervals(Duration::from_millis(300), Duration::from_secs(60));
    let agent_task = tokio::spawn(agent.run(agent_stop.0.clone()));
    eventually_ok!("the node's lease", within PATIENCE, get_lease(&client, "box1").await);

    // Well past the grace period, the node stays Ready and untainted.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let node = get_node(&client, "box1").await.unwrap();
        assert_eq!(ready(&node).as_deref(), Some("True"), "{:?}", node.status);
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        assert!(
            !taints
                .iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable"
                    || t.key == "node.kubernetes.io/not-ready"),
            "taints: {taints:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The controller is watching: with the agent gone, the node is marked Unknown.
    agent_stop.0.cancel();
    let _ = agent_task.await;
    eventually_ok!("the node Unknown after the agent stops", within PATIENCE, {
        match get_node(&client, "box1").await {
            Ok(node) if ready(&node).as_deref() == Some("Unknown") => Ok(()),
            other => Err(other.map(|n| summary(&n, "Ready"))),
        }
    });
}

/// A TCP forwarder standing in for the API server's address, which the test can take
/// away (refusing connections and cutting open ones) and bring back on the same port.
struct Forwarder {
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(port: u16, target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            // Dropped with the task, which aborts every connection: the outage is total.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Forwarder { task }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn survives_the_api_server_going_away() {
    let server = TestServer::start(Backend::Embedded).await;
    let direct = server.client();
    let target: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let via = kube::Client::try_from(kube::Config::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let stop = Stop(CancellationToken::new());
    let agent = NodeAgent::new(via, config("box1", data.path()))
        .with_intervals(Duration::from_millis(200), Duration::from_secs(60));
    let task = tokio::spawn(agent.run(stop.0.clone()));

    // Nothing listens yet: registration keeps failing, and the agent keeps trying.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished());
    assert!(
        Api::<Node>::all(direct.clone())
            .get_opt("box1")
            .await
            .unwrap()
            .is_none()
    );

    let forwarder = Forwarder::start(port, target).await;
    eventually_ok!("the node registered once the server is reachable", within PATIENCE,
        get_lease(&direct, "box1").await);
    eventually_ok!("the node", within PATIENCE, get_node(&direct, "box1").await);

    // Away for a while (connections cut, new ones refused), then back.
    drop(forwarder);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = renew_time(&get_lease(&direct, "box1").await.unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        renew_time(&get_lease(&direct, "box1").await.unwrap()),
        during,
        "no renewals while the server is away"
    );
    assert!(!task.is_finished(), "the agent does not give up");
    let _forwarder = Forwarder::start(port, target).await;
    eventually_ok!("renewals resume once the server is back", within PATIENCE, {
        let now = get_lease(&direct, "box1")
            .await
            .ok()
            .and_then(|l| renew_time(&l));
        if now > during { Ok(()) } else { Err(format!("{now:?} <= {during:?}")) }
    });
    assert!(!task.is_finished());
}

//! `/metrics` of a real API server and node agent, scraped over HTTP as Prometheus (and
//! `kubectl get --raw`) would: requests counted by kube-apiserver's verbs and codes and
//! timed, open watches gauged while open, and the controllers', scheduler's and agent's
//! work measured.
//!
//! The metrics are process-wide and the tests of this file share a process, so each test
//! compares with what it scraped before it acted, and works on resources the others leave
//! alone (ConfigMaps in one; ReplicaSets, pods and nodes in the others).

#[path = "support/agent.rs"]
mod agent_support;
#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/containerd.rs"]
mod containerd_support;
#[path = "support/image.rs"]
mod image_support;
#[path = "support/podnet.rs"]
mod podnet;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, PostParams, WatchParams};
use kube::{Client, ResourceExt};
use moor::controllers::ControllerManager;
use moor::scheduler::Scheduler;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// One scrape: every sample by its series (`name{labels}` as encoded), and the content type.
struct Scrape {
    content_type: String,
    samples: HashMap<String, f64>,
    text: String,
}

impl Scrape {
    async fn take(client: &Client) -> Scrape {
        let request = axum::http::Request::get("/metrics")
            .body(kube::client::Body::empty())
            .unwrap();
        let response = client.send(request).await.expect("GET /metrics");
        assert_eq!(response.status(), 200);
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("reading /metrics")
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).expect("UTF-8 metrics");
        Scrape {
            content_type,
            samples: parse(&text),
            text,
        }
    }

    /// The value of a series (0 when absent: a counter not yet incremented).
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

/// Samples of OpenMetrics text (label values here hold no spaces).
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The series of `name` for a ConfigMap request in namespace `default` (`code`: counters).
fn configmaps(name: &str, verb: &str, scope: &str, code: Option<u16>) -> String {
    let code = code.map(|c| format!(",code=\"{c}\"")).unwrap_or_default();
    format!(
        "{name}{{verb=\"{verb}\",group=\"\",version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"{scope}\"{code}}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_timed_and_watches_gauged_while_open() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let before = Scrape::take(&client).await;
    assert_eq!(
        before.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(before.text.ends_with("# EOF\n"), "{}", before.text);

    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "measured"},
        "data": {"k": "v"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.get("measured").await.unwrap();
    api.get("measured").await.unwrap();
    assert!(api.get_opt("absent").await.unwrap().is_none());
    api.list(&ListParams::default()).await.unwrap();
    let watch_params = WatchParams::default().timeout(300);
    let mut watch = api.watch(&watch_params, "0").await.unwrap().boxed();
    // The watch is established once its first event (the ConfigMap, replayed) arrives.
    let first = watch.next().await.expect("a watch event").unwrap();
    assert!(
        matches!(first, kube::api::WatchEvent::Added(_)),
        "{first:?}"
    );

    let open = Scrape::take(&client).await;
    let delta = |series: String| open.get(&series) - before.get(&series);
    let counted = [
        (
            configmaps("apiserver_request_total", "POST", "resource", Some(201)),
            1.0,
        ),
        (
            configmaps("apiserver_request_total", "GET", "resource", Some(200)),
            2.0,
        ),
        (
            configmaps("apiserver_request_total", "GET", "resource", Some(404)),
            1.0,
        ),
        (
            configmaps("apiserver_request_total", "LIST", "namespace", Some(200)),
            1.0,
        ),
        (
            configmaps("apiserver_request_total", "WATCH", "namespace", Some(200)),
            1.0,
        ),
        (
            configmaps(
                "apiserver_request_duration_seconds_count",
                "GET",
                "resource",
                None,
            ),
            3.0,
        ),
        (
            configmaps(
                "apiserver_request_duration_seconds_count",
                "LIST",
                "namespace",
                None,
            ),
            1.0,
        ),
    ];
    for (series, expected) in counted {
        assert_eq!(
            delta(series.clone()),
            expected,
            "{series} in:\n{}",
            open.text
        );
    }
    let list_seconds = configmaps(
        "apiserver_request_duration_seconds_sum",
        "LIST",
        "namespace",
        None,
    );
    assert!(delta(list_seconds.clone()) > 0.0, "{list_seconds}");
    let watches = configmaps("apiserver_longrunning_requests", "WATCH", "namespace", None);
    assert_eq!(open.get(&watches), 1.0, "{watches} in:\n{}", open.text);

    // The client goes away: the server drops the watch's body, and the gauge follows.
    drop(watch);
    eventually_ok!("the watch gauge back at 0", {
        let now = Scrape::take(&client).await.get(&watches);
        if now == 0.0 { Ok(()) } else { Err(now) }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_the_metrics_raw() {
    let server = TestServer::start(Backend::Embedded).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    moor::cli::server::write_kubeconfig(&kubeconfig, &server.url).unwrap();
    // A request of kubectl's own first (`get --raw` alone needs no discovery, and a warm
    // discovery cache skips it), so the request families have a series to show.
    let out = tokio::task::spawn_blocking(move || {
        let kubectl = |args: &[&str]| {
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(args)
                .output()
                .expect("running kubectl")
        };
        let listed = kubectl(&["get", "namespaces"]);
        assert!(
            listed.status.success(),
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
        kubectl(&["get", "--raw", "/metrics"])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("# TYPE apiserver_request counter")
            && stdout.contains(
                r#"apiserver_request_total{verb="LIST",group="",version="v1",resource="namespaces""#
            )
            && stdout.ends_with("# EOF\n"),
        "{stdout}"
    );
}

async fn create_node(client: &Client, name: &str) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_and_scheduling_are_measured() {
    let server = TestServer::start(Backend::Embedded).await;
    let client = server.client();
    let before = Scrape::take(&client).await;
    create_node(&client, "metrics-node").await;
    let shutdown = CancellationToken::new();
    tokio::spawn(
        ControllerManager::new(client.clone())
            .with_controllers(vec!["replicaset".into()])
            .run(shutdown.clone()),
    );
    tokio::spawn(Scheduler::new(client.clone()).run(shutdown.clone()));
    let _stop = shutdown.clone().drop_guard();

    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "measured"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "measured"}},
            "template": {
                "metadata": {"labels": {"app": "measured"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually_ok!("both pods bound", {
        let bound: Vec<String> = pods
            .list(&ListParams::default().labels("app=measured"))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .map(|p| p.name_any())
            .collect();
        if bound.len() == 2 { Ok(()) } else { Err(bound) }
    });

    // A reconcile is counted when it returns, which may be after its pods are bound.
    let success = r#"moor_controller_reconcile_total{controller="replicaset",result="success"}"#;
    let after = eventually_ok!("a replicaset reconcile counted", {
        let after = Scrape::take(&client).await;
        if after.get(success) - before.get(success) >= 1.0 {
            Ok(after)
        } else {
            Err(after.text)
        }
    });
    let delta = |series: &str| after.get(series) - before.get(series);
    let reconciled = delta(success);
    assert!(
        delta(r#"moor_controller_reconcile_duration_seconds_count{controller="replicaset"}"#)
            >= reconciled,
        "{}",
        after.text
    );
    assert_eq!(
        delta(r#"scheduler_schedule_attempts_total{result="scheduled"}"#),
        2.0,
        "{}",
        after.text
    );
    assert_eq!(
        delta(r#"scheduler_scheduling_attempt_duration_seconds_count{result="scheduled"}"#),
        2.0
    );
    assert_eq!(
        delta("scheduler_pod_scheduling_duration_seconds_count"),
        2.0
    );
    // The scheduler's bindings are API requests too.
    assert!(
        delta(
            r#"apiserver_request_total{verb="POST",group="",version="v1",resource="pods",subresource="binding",scope="resource",code="201"}"#
        ) >= 2.0,
        "{}",
        after.text
    );
}

/// GET `path` from `addr` over plain HTTP/1.0: the head and the body.
fn http_get(addr: &str, path: &str) -> Result<(String, String), String> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))
            .map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no end of head")?;
    Ok((head.to_owned(), body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_serves_pod_starts_on_its_kubelet_port() {
    let node = agent_support::TestNode::start().await;
    let client = node.client();
    let registered = Api::<Node>::all(client.clone()).get("box1").await.unwrap();
    let port = registered
        .status
        .and_then(|s| s.daemon_endpoints)
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .expect("the node's kubelet port");
    let addr = format!("127.0.0.1:{port}");
    let scrape = || {
        let (head, body) = http_get(&addr, "/metrics").expect("GET /metrics from the agent");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{head}"
        );
        (parse(&body), body)
    };
    let (before, _) = tokio::task::block_in_place(scrape);
    let starts = "kubelet_pod_start_duration_seconds_count";

    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "measured", "namespace": "default"},
        "spec": {
            "nodeName": "box1",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": agent_support::IMAGE,
                            "command": ["sleep", "3600"]}],
        },
    }))
    .unwrap();
    node.pods()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let (after, text) = eventually_ok!("the pod's start recorded", {
        let (after, text) = tokio::task::block_in_place(scrape);
        let started = after.get(starts).copied().unwrap_or(0.0);
        if started > before.get(starts).copied().unwrap_or(0.0) {
            Ok((after, text))
        } else {
            Err(started)
        }
    });
    let running = after.get("kubelet_running_pods").copied().unwrap_or(0.0);
    assert!(running >= 1.0, "{text}");
}

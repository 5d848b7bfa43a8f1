//! Scheduler benchmark, in the spirit of upstream scheduler_perf
//! `SchedulingBasic/5000Nodes_10000Pods` (nodes: 4 cpu, 32Gi, 110 pods; pods: 100m cpu,
//! 500Mi memory): `cargo bench --bench scheduler [-- --nodes N --pods N --runs N]`.
//!
//! Prints medians (it asserts nothing about speed):
//! 1. Decisions per second in-process: the real cache and plugins, each decision assumed
//!    into the cache like the scheduler does, looking at every node and with upstream's
//!    adaptive sampling (`--percentage-of-nodes-to-score 0`).
//! 2. Pods bound per second end to end: a real API server on the embedded store in this
//!    process, `--nodes` Node objects and `--pods` pending pods created through the API,
//!    then the scheduler started; timed from its start until a watch has seen every pod
//!    with a node. Next to it, in the same run on a fresh server, the baseline: the same
//!    number of bindings POSTed as fast as the API takes them (round robin, no decisions,
//!    no events, same concurrency) — the ratio is what deciding, events and the scheduler's
//!    watches cost on top of the writes themselves. Then, on the full cluster with the
//!    scheduler idle, the latency of single pods, create call → a watch sees them bound.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use moor::apiserver::ApiServer;
use moor::scheduler::Scheduler;
use moor::scheduler::cache::{Cache, PodInfo};
use moor::scheduler::framework::{NodeSampling, Profile};
use moor::store::EmbeddedStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Concurrent requests while setting up and in the baseline (the scheduler's own limit).
const CONCURRENCY: usize = 512;
/// Single pods timed one at a time after each adaptive run.
const SINGLE_PODS: usize = 50;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i:05}"), "labels": {"kubernetes.io/hostname": format!("node-{i:05}")}},
        "status": {
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }))
    .unwrap()
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i:05}"), "namespace": "default"},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]},
    }))
    .unwrap()
}

/// Section 1: decisions per second over the real cache and plugins.
fn decisions_per_second(nodes: usize, pods: usize, sampling: NodeSampling) -> f64 {
    let mut cache = Cache::new();
    for i in 0..nodes {
        let _ = cache.upsert_node(Arc::new(node(i)));
    }
    let infos: Vec<Arc<PodInfo>> = (0..pods)
        .map(|i| Arc::new(PodInfo::new(Arc::new(pod(i)))))
        .collect();
    let profile = Profile::default().with_sampling(sampling);
    let mut rng = fastrand::Rng::with_seed(1);
    let started = Instant::now();
    for info in infos {
        let node = profile
            .schedule(&cache, &info, &mut rng)
            .expect("every pod fits");
        cache.assume(info, &node);
    }
    pods as f64 / started.elapsed().as_secs_f64()
}

/// A server on a fresh embedded store with `nodes` nodes and `pods` pending pods.
struct Cluster {
    client: kube::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(nodes: usize, pods: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let server = ApiServer::new(Arc::new(store), shutdown.clone());
        server.start().await.unwrap();
        let client = server.client();
        let node_api: Api<Node> = Api::all(client.clone());
        let started = Instant::now();
        futures::stream::iter(0..nodes)
            .map(|i| {
                let api = node_api.clone();
                async move {
                    let n = node(i);
                    let name = n.metadata.name.clone().unwrap();
                    api.create(&PostParams::default(), &n).await?;
                    // Status is the agent's to write; set it the way an agent would.
                    let status = json!({"status": n.status});
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
        let nodes_took = started.elapsed();
        let started = Instant::now();
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
        futures::stream::iter(0..pods)
            .map(|i| {
                let api = pod_api.clone();
                async move { api.create(&PostParams::default(), &pod(i)).await }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
        eprintln!(
            "    setup: {nodes} nodes (create + status) in {:.2} s, {pods} pods in {:.2} s",
            nodes_took.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        Cluster {
            client,
            shutdown,
            _dir: dir,
        }
    }

    /// A watch on the pods, already past its initial list: resolves once it has seen
    /// `pods` pods with a node. Started before the clock, so the bench's own list of the
    /// pending pods is not timed.
    async fn watch_bound(&self, pods: usize) -> tokio::task::JoinHandle<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let (listed_tx, listed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            let mut bound = HashSet::new();
            let mut listed_tx = Some(listed_tx);
            while let Some(event) = events.next().await {
                let pod = match event {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed_tx.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(_) => continue,
                    Err(e) => panic!("watching pods: {e}"),
                };
                if pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some()
                {
                    bound.insert(pod.metadata.name.clone().unwrap());
                    if bound.len() == pods {
                        return;
                    }
                }
            }
        });
        listed.await.expect("the watch lists the pods");
        task
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Section 2: pods bound per second by the scheduler, end to end; then, with the scheduler
/// idle on the full cluster, the latency of single pods from the create call until a watch
/// sees them bound (one at a time).
async fn scheduler_end_to_end(
    nodes: usize,
    pods: usize,
    sampling: NodeSampling,
    singles: usize,
) -> (f64, Vec<f64>) {
    let cluster = Cluster::start(nodes, pods).await;
    let bound = cluster.watch_bound(pods).await;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let scheduler = tokio::spawn(
        Scheduler::new(cluster.client.clone())
            .with_sampling(sampling)
            .run(stop.clone()),
    );
    tokio::time::timeout(Duration::from_secs(600), bound)
        .await
        .expect("every pod bound within 10 minutes")
        .unwrap();
    let rate = pods as f64 / started.elapsed().as_secs_f64();
    if singles > 0 {
        // Let the Scheduled events queued behind the burst drain, so the singles are timed
        // on an idle scheduler.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let latencies = single_pod_latencies(&cluster, singles).await;
    stop.cancel();
    let _ = scheduler.await;
    (rate, latencies)
}

/// Create `n` pods one after the other; for each, the seconds from its create call until a
/// watch (listed beforehand) sees it with a node.
async fn single_pod_latencies(cluster: &Cluster, n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel();
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn({
        let api = api.clone();
        async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            let mut listed_tx = Some(listed_tx);
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(p))
                        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() =>
                    {
                        let _ = bound_tx.send(p.metadata.name.unwrap_or_default());
                    }
                    Ok(_) => {}
                    Err(e) => panic!("watching pods: {e}"),
                }
            }
        }
    });
    listed.await.expect("the watch lists the pods");
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let mut p = pod(i);
        let name = format!("single-{i:03}");
        p.metadata.name = Some(name.clone());
        let started = Instant::now();
        api.create(&PostParams::default(), &p).await.unwrap();
        loop {
            let seen = tokio::time::timeout(Duration::from_secs(30), bound_rx.recv())
                .await
                .expect("a single pod bound within 30 s")
                .expect("the watch runs");
            if seen == name {
                break;
            }
        }
        latencies.push(started.elapsed().as_secs_f64());
    }
    watch.abort();
    latencies
}

/// The baseline: the same bindings with no decisions at all.
async fn bindings_end_to_end(nodes: usize, pods: usize) -> f64 {
    let cluster = Cluster::start(nodes, pods).await;
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let bound = cluster.watch_bound(pods).await;
    let started = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let binding = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": format!("pod-{i:05}"), "namespace": "default"},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": format!("node-{:05}", i % nodes)},
                });
                // A task per binding, as the scheduler sends them, so the work spreads over
                // the runtime's threads.
                tokio::spawn(async move {
                    api.create_subresource::<_, serde_json::Value>(
                        "binding",
                        &format!("pod-{i:05}"),
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                })
                .await
                .expect("binding task")
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(600), bound)
        .await
        .expect("every binding visible within 10 minutes")
        .unwrap();
    pods as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let nodes = arg("--nodes", 5000);
    let pods = arg("--pods", 10_000);
    let runs = arg("--runs", 3).max(1);
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let wanted = |section: &str| only.as_deref().is_none_or(|o| o == section);
    println!("scheduler benchmark: {nodes} nodes, {pods} pods, {runs} runs (medians)");
    if wanted("decisions") {
        decisions(nodes, pods, runs);
    }
    if wanted("scheduler") || wanted("bindings") {
        end_to_end(nodes, pods, runs, wanted("scheduler"), wanted("bindings"));
    }
}

fn decisions(nodes: usize, pods: usize, runs: usize) {
    let all: Vec<f64> = (0..runs)
        .map(|_| decisions_per_second(nodes, pods, NodeSampling::All))
        .collect();
    let adaptive: Vec<f64> = (0..runs)
        .map(|_| decisions_per_second(nodes, pods, NodeSampling::Adaptive))
        .collect();
    println!(
        "in-process decisions/s   every node: {:>9.0}   adaptive sampling ({} of {nodes} nodes): {:>9.0}",
        median(all),
        NodeSampling::Adaptive.enough(nodes),
        median(adaptive)
    );
}

fn end_to_end(nodes: usize, pods: usize, runs: usize, scheduler: bool, bindings: bool) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut scheduled, mut adaptive, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    let mut singles = Vec::new();
    for run in 1..=runs {
        // Interleaved, so drift on this noisy machine hits all three alike.
        if scheduler {
            let (s, _) = runtime.block_on(scheduler_end_to_end(nodes, pods, NodeSampling::All, 0));
            let (a, single) = runtime.block_on(scheduler_end_to_end(
                nodes,
                pods,
                NodeSampling::Adaptive,
                SINGLE_PODS,
            ));
            println!(
                "  run {run}: scheduler {s:.0} pods/s, with adaptive sampling {a:.0} pods/s; single pod create → bound p50 {:.1} ms",
                median(single.clone()) * 1000.0
            );
            scheduled.push(s);
            adaptive.push(a);
            singles.extend(single);
        }
        if bindings {
            let b = runtime.block_on(bindings_end_to_end(nodes, pods));
            println!("  run {run}: raw bindings {b:.0} pods/s");
            baseline.push(b);
        }
    }
    if scheduler {
        println!(
            "end to end (embedded store)   scheduler, every node: {:.0} pods/s   adaptive sampling: {:.0} pods/s",
            median(scheduled.clone()),
            median(adaptive.clone())
        );
        singles.sort_by(|a, b| a.total_cmp(b));
        println!(
            "single pod on the full cluster, create → seen bound: p50 {:.1} ms, p99 {:.1} ms ({} pods)",
            singles[singles.len() / 2] * 1000.0,
            singles[(singles.len() * 99 / 100).min(singles.len() - 1)] * 1000.0,
            singles.len()
        );
    }
    if bindings {
        println!(
            "baseline: raw bindings, no decisions: {:.0} pods/s",
            median(baseline.clone())
        );
    }
    if scheduler && bindings {
        println!(
            "scheduler (adaptive) / raw bindings: {:.2}",
            median(adaptive) / median(baseline)
        );
    }
}

//! Node agent benchmark (issue 7): the real `moor server` (controllers, scheduler and GitOps
//! off: pods are created already bound), a private containerd with the busybox test image
//! imported by `moor images import`, and `moor agent` as its own process on the pod range
//! 10.202.0.0/24 and the bridge `mbench0`.
//!
//! `cargo bench --bench agent` (options after `--`: `--pods N` for the burst, default 100;
//! `--latency-pods N`, default 50; `--ctr-runs N`, default 20; `--runs N`, default 1, each
//! run repeating every section on the same node; `--create-concurrency N`, default 16;
//! `--delete-grace S` deletes with that grace period instead of the pods' own 0, which the
//! API server applies at once as upstream does; `--perf-agent FILE` records
//! `perf record -g` of the agent over the whole run).
//!
//! Prints (it asserts nothing about speed):
//! 1. Pod start latency: pods created bound (`spec.nodeName`), image present
//!    (`IfNotPresent`, a non-latest tag), `sleep 3600`, grace 0; from the create call until
//!    a watch on pods sees phase Running with the container running; one at a time. With a
//!    breakdown per pod from the agent's own traces, no instrumentation needed: the pod
//!    network record's mtime (CNI ADD done), the IPAM lease file's mtime (host-local ran,
//!    inside bridge ADD), containerd's events (`ctr events`: container create, task create,
//!    task start) and the kubelet Events (`Pulled`, `Created`, `Started`: their names carry
//!    the wall-clock nanoseconds at which the agent posted them).
//! 2. The baseline in the same run: `ctr run --rm --null-io IMAGE ID true` of the same
//!    image through the same containerd (runc alone, no CNI), and the ratio.
//! 3. A burst: `--pods` pods created at once (`--create-concurrency` create calls in
//!    flight), until the watch has seen all of them Running.
//! 4. The agent's RSS (VmRSS, VmHWM from /proc/PID/status) with those pods running, and its
//!    CPU time per pod (its own, and its children's: the CNI plugins).
//! 5. Deleting those pods (grace 0): until the watch has seen all of them gone, and until
//!    containerd has no task and the agent no pod network left.

#[path = "../tests/support/containerd.rs"]
mod containerd_support;
#[path = "support/harness.rs"]
mod harness;
#[path = "../tests/support/image.rs"]
mod image_support;
#[path = "../tests/support/process.rs"]
mod process;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use containerd_support::ContainerdInstance;
use futures::{StreamExt, TryStreamExt};
use harness::*;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use process::{Proc, free_port};
use serde_json::json;
use tokio::sync::mpsc;

const IMAGE: &str = "busybox:moor-bench";
const NODE: &str = "bench-node";
const POD_CIDR: &str = "10.202.0.0/24";
const BRIDGE: &str = "mbench0";
const NAMESPACE: &str = "default";

fn wall_ns(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// (own CPU, reaped children's CPU) of a process in seconds, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (0.0, 0.0);
    };
    // Fields after the command (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime, stime, cutime, cstime are fields 14..=17, i.e. 11..=14 after the command.
    if f.len() < 15 {
        return (0.0, 0.0);
    }
    ((f[11] + f[12]) / hz, (f[13] + f[14]) / hz)
}

/// (count, total PSS in MiB) of the processes whose command line contains all of `needles`.
fn processes_pss(needles: &[&str]) -> (usize, f64) {
    let mut count = 0;
    let mut kib = 0u64;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !needles.iter().all(|n| cmdline.contains(n)) {
            continue;
        }
        count += 1;
        kib += std::fs::read_to_string(e.path().join("smaps_rollup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Pss:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0);
    }
    (count, kib as f64 / 1024.0)
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the pods watch reports.
#[derive(Debug)]
enum Seen {
    Running {
        name: String,
        at: Instant,
        wall: SystemTime,
    },
    Gone {
        name: String,
        at: Instant,
    },
}

fn is_running(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.container_statuses.as_ref().is_some_and(|cs| {
            !cs.is_empty()
                && cs
                    .iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

/// A watch on the namespace's pods, listed before it returns: the first time each pod
/// (by uid) is seen running, and when it is deleted.
async fn watch_pods(
    client: kube::Client,
) -> (mpsc::UnboundedReceiver<Seen>, tokio::task::AbortHandle) {
    let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let (tx, rx) = mpsc::unbounded_channel();
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        let mut running: HashSet<String> = HashSet::new();
        let mut listed_tx = Some(listed_tx);
        while let Some(event) = events.next().await {
            let (pod, deleted) = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
                Ok(watcher::Event::Delete(p)) => (p, true),
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                Ok(watcher::Event::Init) => continue,
                Err(e) => {
                    eprintln!("  watching pods: {e}");
                    continue;
                }
            };
            let (at, wall) = (Instant::now(), SystemTime::now());
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let seen = if deleted {
                Some(Seen::Gone { name, at })
            } else if is_running(&pod) && running.insert(uid) {
                Some(Seen::Running { name, at, wall })
            } else {
                None
            };
            if let Some(seen) = seen
                && tx.send(seen).is_err()
            {
                return;
            }
        }
    });
    listed.await.expect("the pods watch lists");
    (rx, task.abort_handle())
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"bench": "agent"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "c",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))
    .unwrap()
}

/// containerd's events (`ctr events`): (wall ns, topic, container id), collected on a
/// thread.
#[derive(Clone, Default)]
struct CtrEvents(Arc<Mutex<Vec<(i128, String, String)>>>);

impl CtrEvents {
    fn start(socket: &Path) -> (Proc, CtrEvents) {
        let mut child = spawn_tied(
            Command::new("ctr")
                .arg("--address")
                .arg(socket)
                .arg("events")
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("ctr events");
        let events = CtrEvents::default();
        let sink = events.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(e) = parse_ctr_event(&line) {
                    sink.0.lock().unwrap().push(e);
                }
            }
        });
        (Proc(child), events)
    }

    /// The first time of `topic` for a container id starting with `prefix`.
    fn first(&self, topic: &str, prefix: &str) -> Option<i128> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t, id)| t == topic && id.starts_with(prefix))
            .map(|(ns, _, _)| *ns)
            .min()
    }
}

/// `2026-11-26 10:00:00.123456789 +0000 UTC moor /tasks/start {"container_id":"…",…}`
fn parse_ctr_event(line: &str) -> Option<(i128, String, String)> {
    let mut parts = line.splitn(7, ' ');
    let (date, time, offset, _zone, namespace, topic, body) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if namespace != "moor" {
        return None;
    }
    let offset = format!("{}:{}", offset.get(..3)?, offset.get(3..)?);
    let ts: jiff::Timestamp = format!("{date}T{time}{offset}").parse().ok()?;
    let body: serde_json::Value = serde_json::from_str(body).ok()?;
    let id = body
        .get("container_id")
        .or_else(|| body.get("id"))
        .or_else(|| body.get("key"))
        .and_then(|v| v.as_str())?
        .to_owned();
    Some((ts.as_nanosecond(), topic.to_owned(), id))
}

/// Everything the bench runs; dropped (in field order) as: agent, event stream, leftover
/// pod networks, server, containerd (its tasks with it), the bridge, the temp dir.
struct Bench {
    agent: Option<Proc>,
    _ctr_events: Proc,
    networks: NetworkGuard,
    server: Proc,
    containerd: ContainerdInstance,
    _bridge: BridgeGuard,
    dir: tempfile::TempDir,
    client: kube::Client,
    events: CtrEvents,
    ctr_image: String,
}

impl Bench {
    fn agent_pid(&self) -> u32 {
        self.agent.as_ref().map_or(0, |p| p.0.id())
    }

    fn agent_data(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    async fn start() -> Bench {
        let moor = env!("CARGO_BIN_EXE_moor");
        let bridge = BridgeGuard::new(BRIDGE);
        let dir = tempfile::tempdir().unwrap();
        let containerd = ContainerdInstance::start();

        // The image, for the agent (namespace moor) and for the ctr baseline (bench).
        let archive = image_support::busybox_oci_archive(dir.path(), IMAGE);
        let out = Command::new(moor)
            .args(["images", "import", "--containerd-socket"])
            .arg(containerd.socket())
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "moor images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        containerd
            .ctr("bench", &["images", "import", archive.to_str().unwrap()])
            .expect("ctr images import");
        let ctr_image = containerd
            .ctr("bench", &["images", "ls", "-q"])
            .unwrap()
            .lines()
            .next()
            .expect("ctr lists the image")
            .trim()
            .to_owned();

        let port = free_port();
        let server_log = dir.path().join("server.log");
        let mut server = spawn_tied(
            Command::new(moor)
                .args([
                    "server",
                    "--disable-controllers",
                    "--disable-scheduler",
                    "--disable-gitops",
                    "--data-dir",
                ])
                .arg(dir.path().join("server"))
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .env("MOOR_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&server_log).unwrap()),
        )
        .unwrap();
        wait_for_line(&mut server, "apiserver", &server_log);
        let server = Proc(server);
        let networks = NetworkGuard {
            data_dir: dir.path().join("agent"),
            pod_cidr: POD_CIDR,
            bridge: BRIDGE,
        };
        let (ctr_events, events) = CtrEvents::start(&containerd.socket());

        let agent_log = dir.path().join("agent.log");
        let mut agent = spawn_tied(
            Command::new(moor)
                .arg("agent")
                .arg("--kubeconfig")
                .arg(dir.path().join("server").join("kubeconfig.yaml"))
                .args(["--node-name", NODE, "--containerd-socket"])
                .arg(containerd.socket())
                .arg("--data-dir")
                .arg(dir.path().join("agent"))
                .args([
                    "--pod-cidr",
                    POD_CIDR,
                    "--bridge",
                    BRIDGE,
                    "--kubelet-port",
                    "0",
                    "--node-ip",
                    "127.0.0.1",
                ])
                .env("MOOR_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&agent_log).unwrap()),
        )
        .unwrap();
        wait_for_line(&mut agent, "agent ", &agent_log);
        let agent = Proc(agent);

        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        Bench {
            agent: Some(agent),
            _ctr_events: ctr_events,
            networks,
            server,
            containerd,
            _bridge: bridge,
            dir,
            client,
            events,
            ctr_image,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// containerd tasks left in the agent's namespace.
    fn tasks(&self) -> usize {
        self.containerd
            .ctr("moor", &["tasks", "ls", "-q"])
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    }

    /// Stops the agent with SIGTERM (killed if it takes over 10 s).
    fn stop_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let pid = nix::unistd::Pid::from_raw(agent.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = agent.0.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(agent);
        }
    }

    fn agent_log_tail(&self) -> String {
        tail(&self.dir.path().join("agent.log"))
    }
}

/// Waits on `seen` for `Running` of every name in `names`; the instants seen.
async fn wait_running(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    names: &HashSet<String>,
    patience: Duration,
    bench: &Bench,
) -> HashMap<String, (Instant, SystemTime)> {
    let mut out = HashMap::new();
    let deadline = tokio::time::Instant::now() + patience;
    while out.len() < names.len() {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(Seen::Running { name, at, wall })) if names.contains(&name) => {
                out.insert(name, (at, wall));
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the pods watch ended"),
            Err(_) => panic!(
                "only {} of {} pods running after {patience:?}; agent log:\n{}",
                out.len(),
                names.len(),
                bench.agent_log_tail()
            ),
        }
    }
    out
}

/// Waits on `seen` for every name in `names` to be deleted; when the last one was.
async fn wait_gone(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    names: &HashSet<String>,
    patience: Duration,
    bench: &Bench,
) -> Instant {
    let mut gone = HashSet::new();
    let mut last = Instant::now();
    let deadline = tokio::time::Instant::now() + patience;
    while gone.len() < names.len() {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(Seen::Gone { name, at })) if names.contains(&name) => {
                gone.insert(name);
                last = at;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the pods watch ended"),
            Err(_) => panic!(
                "only {} of {} pods gone after {patience:?}; agent log:\n{}",
                gone.len(),
                names.len(),
                bench.agent_log_tail()
            ),
        }
    }
    last
}

/// Deletes `names` (grace 0 from the spec); seconds until the watch saw the last one gone,
/// and until containerd had no task and the agent no pod network left.
async fn delete_all(
    bench: &Bench,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    names: &HashSet<String>,
    concurrency: usize,
) -> (f64, f64) {
    let api = bench.pods();
    // No grace period in the request: the pods' own (0) applies, as `kubectl delete` does.
    let params = match arg_str("--delete-grace").and_then(|g| g.parse().ok()) {
        Some(grace) => DeleteParams::default().grace_period(grace),
        None => DeleteParams::default(),
    };
    let started = Instant::now();
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = api.clone();
            let params = params.clone();
            async move { api.delete(&name, &params).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .expect("deleting pods");
    let last = wait_gone(seen, names, Duration::from_secs(120), bench).await;
    let gone = last.duration_since(started).as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if bench.tasks() == 0 && bench.networks.left() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} tasks and {} pod networks still there 120 s after deleting; agent log:\n{}",
            bench.tasks(),
            bench.networks.left(),
            bench.agent_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (gone, started.elapsed().as_secs_f64())
}

/// One latency pod's timeline, wall-clock ns.
#[derive(Default, Clone, Debug)]
struct Timeline {
    name: String,
    uid: String,
    create: i128,
    lease: Option<i128>,
    network: Option<i128>,
    pulled: Option<i128>,
    container_create: Option<i128>,
    task_create: Option<i128>,
    task_start: Option<i128>,
    created_event: Option<i128>,
    started_event: Option<i128>,
    seen: i128,
}

fn mtime_ns(path: &Path) -> Option<i128> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(wall_ns)
}

/// The host-local lease file naming `uid` (its mtime: when IPAM ran inside bridge ADD).
fn lease_mtime(ipam_dir: &Path, uid: &str) -> Option<i128> {
    for network in std::fs::read_dir(ipam_dir).ok()?.filter_map(Result::ok) {
        for f in std::fs::read_dir(network.path())
            .ok()?
            .filter_map(Result::ok)
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with("last_reserved_ip") || name == "lock" {
                continue;
            }
            if std::fs::read_to_string(f.path()).is_ok_and(|s| s.contains(uid)) {
                return mtime_ns(&f.path());
            }
        }
    }
    None
}

/// Section 1: pods one at a time, create → seen running; their timelines.
async fn latency(
    bench: &Bench,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    run: usize,
    n: usize,
) -> (Vec<f64>, Vec<Timeline>, HashSet<String>) {
    let api = bench.pods();
    let mut latencies = Vec::with_capacity(n);
    let mut timelines = Vec::with_capacity(n);
    let mut names = HashSet::new();
    for i in 0..n {
        let name = format!("r{run}-lat-{i:03}");
        let wall = SystemTime::now();
        let started = Instant::now();
        let created = api
            .create(&PostParams::default(), &pod(&name))
            .await
            .expect("creating a pod");
        let one = HashSet::from([name.clone()]);
        let (at, seen_wall) = wait_running(seen, &one, Duration::from_secs(60), bench)
            .await
            .remove(&name)
            .unwrap();
        latencies.push(at.duration_since(started).as_secs_f64() * 1e3);
        timelines.push(Timeline {
            name: name.clone(),
            uid: created.metadata.uid.unwrap_or_default(),
            create: wall_ns(wall),
            seen: wall_ns(seen_wall),
            ..Timeline::default()
        });
        names.insert(name);
    }
    fill_timelines(bench, &mut timelines).await;
    (latencies, timelines, names)
}

/// Fills in what the agent's traces say about pods still there: their network record and
/// lease, containerd's events, the kubelet's Events (posted ahead of the status).
async fn fill_timelines(bench: &Bench, timelines: &mut [Timeline]) {
    let net_dir = bench.agent_data().join("network");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut by_name = HashMap::new();
    for (i, t) in timelines.iter_mut().enumerate() {
        t.lease = lease_mtime(&net_dir.join("ipam"), &t.uid);
        t.network = mtime_ns(&net_dir.join("pods").join(format!("{}.json", t.uid)));
        let prefix: String = t.uid.chars().filter(|c| *c != '-').collect();
        t.container_create = bench.events.first("/containers/create", &prefix);
        t.task_create = bench.events.first("/tasks/create", &prefix);
        t.task_start = bench.events.first("/tasks/start", &prefix);
        by_name.insert(t.name.clone(), i);
    }
    let events: Api<Event> = Api::namespaced(bench.client.clone(), NAMESPACE);
    for e in events.list(&ListParams::default()).await.unwrap().items {
        let (Some(name), Some(object)) = (e.metadata.name, e.involved_object.name) else {
            continue;
        };
        let Some(&i) = by_name.get(&object) else {
            continue;
        };
        let Some(ns) = name
            .rsplit_once('.')
            .and_then(|(_, hex)| i128::from_str_radix(hex, 16).ok())
        else {
            continue;
        };
        let t = &mut timelines[i];
        match e.reason.as_deref() {
            Some("Pulled") => t.pulled = Some(ns),
            Some("Created") => t.created_event = Some(ns),
            Some("Started") => t.started_event = Some(ns),
            _ => {}
        }
    }
}

/// The steps of the timelines as (label, medians in ms); a step missing in a timeline is
/// skipped for it.
type Get = fn(&Timeline) -> Option<i128>;

/// The steps of a pod start, in order, as the traces show them.
const POINTS: [(&str, Get); 10] = [
    ("create call", |t| Some(t.create)),
    ("IPAM lease written (in bridge ADD)", |t| t.lease),
    ("CNI ADD done (network record)", |t| t.network),
    ("event Pulled posted", |t| t.pulled),
    ("containerd: container created", |t| t.container_create),
    ("containerd: task created", |t| t.task_create),
    ("containerd: task started", |t| t.task_start),
    ("event Created posted", |t| t.created_event),
    ("event Started posted", |t| t.started_event),
    ("watch sees Running", |t| Some(t.seen)),
];

fn breakdown(timelines: &[Timeline]) -> Vec<(&'static str, f64, usize)> {
    let mut out = Vec::new();
    for w in POINTS.windows(2) {
        let (_, from) = w[0];
        let (label, to) = w[1];
        let xs: Vec<f64> = timelines
            .iter()
            .filter_map(|t| Some((to(t)? - from(t)?) as f64 / 1e6))
            .collect();
        out.push((label, median(&xs), xs.len()));
    }
    out
}

/// For each step of the burst, when pods reached it (seconds from the first create call):
/// (label, first, median, last).
fn spread(timelines: &[Timeline], start: i128) -> Vec<(&'static str, f64, f64, f64)> {
    POINTS
        .iter()
        .map(|(label, get)| {
            let xs: Vec<f64> = timelines
                .iter()
                .filter_map(|t| Some((get(t)? - start) as f64 / 1e9))
                .collect();
            (*label, pct(&xs, 1e-9), median(&xs), pct(&xs, 1.0))
        })
        .collect()
}

/// Section 2: `ctr run --rm` of the same image; milliseconds per run.
fn ctr_baseline(bench: &Bench, run: usize, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("bench-{run}-{i}");
        let started = Instant::now();
        let status = Command::new("ctr")
            .arg("--address")
            .arg(bench.containerd.socket())
            .args([
                "-n",
                "bench",
                "run",
                "--rm",
                "--null-io",
                &bench.ctr_image,
                &id,
                "true",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("ctr run");
        out.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(
            status.success(),
            "ctr run --rm {} true failed",
            bench.ctr_image
        );
    }
    out
}

struct Burst {
    timelines: Vec<Timeline>,
    shims: (usize, f64),
    loggers: (usize, f64),
    start_wall: i128,
    seconds: f64,
    first_ms: f64,
    p50_ms: f64,
    rss_mib: f64,
    rss_after_mib: f64,
    hwm_mib: f64,
    server_rss_mib: f64,
    agent_cpu_ms_per_pod: f64,
    children_cpu_ms_per_pod: f64,
    delete_seen_s: f64,
    delete_clean_s: f64,
}

/// Sections 3–5: the burst, RSS and CPU with it running, and deleting it.
async fn burst(
    bench: &Bench,
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    run: usize,
    n: usize,
    concurrency: usize,
) -> Burst {
    let api = bench.pods();
    let names: Vec<String> = (0..n).map(|i| format!("r{run}-burst-{i:03}")).collect();
    let set: HashSet<String> = names.iter().cloned().collect();
    let pid = bench.agent_pid();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let created_pods: Vec<(String, String, SystemTime)> =
        futures::stream::iter(names.iter().cloned())
            .map(|name| {
                let api = api.clone();
                async move {
                    let wall = SystemTime::now();
                    let p = api.create(&PostParams::default(), &pod(&name)).await?;
                    Ok::<_, kube::Error>((name, p.metadata.uid.unwrap_or_default(), wall))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await
            .expect("creating pods");
    let created = started.elapsed();
    let running = wait_running(seen, &set, Duration::from_secs(300), bench).await;
    let times: Vec<f64> = running
        .values()
        .map(|(at, _)| at.duration_since(started).as_secs_f64())
        .collect();
    let mut timelines: Vec<Timeline> = created_pods
        .into_iter()
        .map(|(name, uid, wall)| Timeline {
            seen: wall_ns(running[&name].1),
            name,
            uid,
            create: wall_ns(wall),
            ..Timeline::default()
        })
        .collect();
    let seconds = times.iter().copied().fold(0.0, f64::max);
    let cpu_after = cpu_seconds(pid);
    let rss_mib = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let hwm_mib = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    let server_rss_mib = status_kib(bench.server.0.id(), "VmRSS:") as f64 / 1024.0;
    let shims = processes_pss(&[
        "containerd-shim",
        &bench.containerd.dir().display().to_string(),
    ]);
    let loggers = processes_pss(&["container-log"]);
    fill_timelines(bench, &mut timelines).await;
    println!(
        "  burst: {n} pods created in {:.2} s, all running after {seconds:.2} s (first {:.0} ms, median {:.2} s); agent VmRSS {rss_mib:.1} MiB, VmHWM {hwm_mib:.1} MiB; server {server_rss_mib:.1} MiB",
        created.as_secs_f64(),
        pct(&times, 0.0001) * 1e3,
        median(&times)
    );
    let (delete_seen_s, delete_clean_s) = delete_all(bench, seen, &set, concurrency).await;
    let rss_after_mib = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    println!(
        "  delete: all {n} gone from the API after {delete_seen_s:.2} s; no task and no pod network left after {delete_clean_s:.2} s; agent VmRSS then {rss_after_mib:.1} MiB"
    );
    Burst {
        timelines,
        shims,
        loggers,
        start_wall: wall_ns(started_wall),
        seconds,
        first_ms: pct(&times, 0.0001) * 1e3,
        p50_ms: median(&times) * 1e3,
        rss_mib,
        rss_after_mib,
        hwm_mib,
        server_rss_mib,
        agent_cpu_ms_per_pod: (cpu_after.0 - cpu_before.0) * 1e3 / n as f64,
        children_cpu_ms_per_pod: (cpu_after.1 - cpu_before.1) * 1e3 / n as f64,
        delete_seen_s,
        delete_clean_s,
    }
}

#[tokio::main]
async fn main() {
    let pods = arg("--pods", 100);
    let latency_pods = arg("--latency-pods", 50);
    let ctr_runs = arg("--ctr-runs", 20);
    let runs = arg("--runs", 1).max(1);
    let concurrency = arg("--create-concurrency", 16).max(1);
    let perf_out = arg_str("--perf-agent");
    println!(
        "agent benchmark: `moor server` + private containerd + `moor agent` ({POD_CIDR}, bridge {BRIDGE}) as separate processes; {latency_pods} pods one at a time, {ctr_runs} `ctr run --rm`, a burst of {pods} pods ({concurrency} creates in flight); {runs} run(s)"
    );
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("  load average at start: {}", load().trim());
    let whole = Instant::now();
    let mut bench = Bench::start().await;
    let pid = bench.agent_pid();
    // Let the agent settle (its Node status, first heartbeat) before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    println!(
        "  setup {:.1} s; agent pid {pid}, idle VmRSS {idle_rss:.1} MiB",
        whole.elapsed().as_secs_f64()
    );
    let perf = perf_out.map(|out| {
        Proc(
            spawn_tied(
                Command::new("perf")
                    .args(["record", "-g", "-o", &out, "-p", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .expect("perf record"),
        )
    });
    let (mut seen, watch) = watch_pods(bench.client.clone()).await;
    // Stops the watch before the server goes, also on a panic.
    let watch_guard = AbortOnDrop(watch);

    let mut lat_all = Vec::new();
    let mut p50s = Vec::new();
    let mut ctr_p50s = Vec::new();
    let mut timelines = Vec::new();
    let mut bursts = Vec::new();
    let contention = Contention::start(bench.containerd.dir().display().to_string());
    let mut disturbed = Vec::new();
    for run in 1..=runs {
        contention.take();
        // 2. The baseline first: nothing of the agent's runs meanwhile.
        let ctr = ctr_baseline(&bench, run, ctr_runs);
        let ctr_p50 = median(&ctr);
        // 1. Latency.
        let (lat, tl, names) = latency(&bench, &mut seen, run, latency_pods).await;
        let p50 = median(&lat);
        println!(
            "  run {run}: pod start p50 {p50:.0} ms, p90 {:.0}, p99 {:.0}, max {:.0} ms; `ctr run --rm` p50 {ctr_p50:.0} ms (p90 {:.0}); ratio {:.2}",
            pct(&lat, 0.9),
            pct(&lat, 0.99),
            pct(&lat, 1.0),
            pct(&ctr, 0.9),
            p50 / ctr_p50
        );
        let (others, who) = contention.take();
        if others > 0.5 {
            println!("  (run {run}: other processes used {others:.1} CPU s meanwhile: {who})");
            disturbed.push(format!("run {run} latency: {others:.1} CPU s"));
        }
        let (gone, clean) = delete_all(&bench, &mut seen, &names, concurrency).await;
        println!(
            "  deleted the {latency_pods} latency pods: gone from the API after {gone:.2} s, clean after {clean:.2} s"
        );
        lat_all.extend(lat);
        p50s.push(p50);
        ctr_p50s.push(ctr_p50);
        timelines.extend(tl);
        // 3–5. Burst, RSS, delete.
        contention.take();
        bursts.push(burst(&bench, &mut seen, run, pods, concurrency).await);
        let (others, who) = contention.take();
        if others > 0.5 {
            println!("  (run {run}: other processes used {others:.1} CPU s meanwhile: {who})");
            disturbed.push(format!("run {run} burst: {others:.1} CPU s"));
        }
    }
    if let Some(perf) = perf {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(perf.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let mut perf = perf;
        let _ = perf.0.wait();
    }
    let hwm_end = status_kib(pid, "VmHWM:") as f64 / 1024.0;
    drop(watch_guard);
    bench.stop_agent();
    let leftover_tasks = bench.tasks();
    let leftover_networks = bench.networks.left();
    drop(bench);
    let bridge_left = Command::new("ip")
        .args(["link", "show", BRIDGE])
        .output()
        .is_ok_and(|o| o.status.success());

    println!("  load average at the end: {}", load().trim());
    println!();
    println!(
        "latency breakdown, median over {} pods (ms from the previous step):",
        timelines.len()
    );
    for (label, ms, n) in breakdown(&timelines) {
        println!("  {ms:>7.1}  {label}  (n={n})");
    }

    println!();
    println!(
        "burst of run 1: when its {} pods reached each step, s from the first create call (first / median / last):",
        bursts[0].timelines.len()
    );
    for (label, first, med, last) in spread(&bursts[0].timelines, bursts[0].start_wall) {
        println!("  {first:>6.2} / {med:>6.2} / {last:>6.2}  {label}");
    }
    println!(
        "burst of run 1: per-pod step durations, median over {} pods (ms from the previous step):",
        bursts[0].timelines.len()
    );
    for (label, ms, n) in breakdown(&bursts[0].timelines) {
        println!("  {ms:>7.1}  {label}  (n={n})");
    }

    let med = |f: fn(&Burst) -> f64| median(&bursts.iter().map(f).collect::<Vec<_>>());
    let p50 = median(&p50s);
    let ctr_p50 = median(&ctr_p50s);
    let burst_s = med(|b| b.seconds);
    let rss = med(|b| b.rss_mib);
    println!();
    println!("| figure | measured | target |");
    println!("|---|---:|---|");
    println!(
        "| pod start, create → watch sees Running, {latency_pods} pods one at a time: p50 / p90 / p99 / max | {p50:.0} / {:.0} / {:.0} / {:.0} ms | p50 < 300 ms |",
        pct(&lat_all, 0.9),
        pct(&lat_all, 0.99),
        pct(&lat_all, 1.0)
    );
    println!(
        "| baseline: `ctr run --rm --null-io` of the same image ({ctr_runs} runs), p50 | {ctr_p50:.0} ms | |"
    );
    println!("| agent p50 / ctr p50 | {:.2} | |", p50 / ctr_p50);
    println!(
        "| {pods} pods created at once → all seen Running | {burst_s:.2} s (first {:.0} ms, median pod {:.2} s) | < 15 s |",
        med(|b| b.first_ms),
        med(|b| b.p50_ms) / 1e3
    );
    println!(
        "| agent VmRSS / VmHWM with {pods} pods running | {rss:.1} / {:.1} MiB | < 50 MB |",
        med(|b| b.hwm_mib)
    );
    println!(
        "| agent CPU per pod started in the burst: own / CNI plugins (children) | {:.1} / {:.1} ms | |",
        med(|b| b.agent_cpu_ms_per_pod),
        med(|b| b.children_cpu_ms_per_pod)
    );
    println!(
        "| delete {pods} pods (grace {}) → all gone from the API / no task nor pod network left | {:.2} / {:.2} s | |",
        arg_str("--delete-grace").unwrap_or_else(|| "0".into()),
        med(|b| b.delete_seen_s),
        med(|b| b.delete_clean_s)
    );
    println!(
        "| agent VmRSS idle / after deleting the {pods} pods; server VmRSS with them | {idle_rss:.1} / {:.1} MiB; {:.1} MiB | |",
        med(|b| b.rss_after_mib),
        med(|b| b.server_rss_mib)
    );
    let b = &bursts[0];
    println!(
        "| outside the agent, with {pods} pods (run 1): containerd shims; `moor container-log` loggers (PSS) | {} × = {:.1} MiB; {} × = {:.1} MiB | |",
        b.shims.0, b.shims.1, b.loggers.0, b.loggers.1
    );
    if disturbed.is_empty() {
        println!("(other processes used < 0.5 CPU s in each timed section)");
    } else {
        println!(
            "(DISTURBED: other processes used CPU in {}; the figures are inflated)",
            disturbed.join(", ")
        );
    }
    println!(
        "(RSS in MiB; agent VmHWM over the whole run {hwm_end:.1} MiB; left after teardown: {leftover_tasks} tasks, {leftover_networks} pod networks, bridge {}; run time {:.0} s)",
        if bridge_left {
            "STILL THERE"
        } else {
            "removed"
        },
        whole.elapsed().as_secs_f64()
    );
}

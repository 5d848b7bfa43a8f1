//! GitOps latency and throughput:
//! `cargo bench --bench gitops [-- --quick --runs N --objects N --kubectl-full]`.
//!
//! Prints, from one run of this program (medians; it asserts nothing about speed):
//! 1. Folder: file saved → object updated. An in-process API server (embedded store in a temp
//!    dir) and the source controller follow a temp folder of 20 ConfigMaps (one file each).
//!    50 times: one file is rewritten (temp name + rename, as editors save) with a new value;
//!    the time until a ConfigMap watch (started before the loop) delivers that value.
//!    Baseline, interleaved in the same run: a merge patch of the same value through the API
//!    until the same watch sees it (on a ConfigMap of the same shape the source does not own:
//!    patching an owned one would be put back as drift) — the floor the GitOps path adds to.
//! 2. Local git repository: new commit → applied. Same, over a non-bare repository made with
//!    git2 (branch main, interval 1h, so only the refs watch can trigger a sync): 30 commits
//!    each changing one ConfigMap, timed from `repo.commit` returning. Same baseline.
//! 3. First sync of 5,000 objects (10 Namespaces the folder declares, ConfigMaps, Services and
//!    Deployments; files of 50 objects in one folder per namespace), a fresh server each run:
//!    from creating the ManifestSource until a watch on it delivers `status.revision` with all
//!    5,000 in the inventory; also the controller's own `status.lastSyncDuration`. Baseline:
//!    `kubectl apply --server-side -f DIR -R` against a fresh server. kubectl is CPU-bound at
//!    ~11 ms per object on this machine (about a minute for 5,000), so by default it applies a
//!    subset (the namespaces and the first 20 files, 1,010 objects) and the time is scaled
//!    linearly to the full count; `--kubectl-full` applies everything instead.
//! 4. `moor diff DIR --kubeconfig K` (the real binary, end to end) against the server the last
//!    run of 3 synced (controller stopped): nothing changed (exit 0) and one ConfigMap value
//!    changed (exit 1). Baseline: `kubectl diff --server-side -f DIR -R` on the whole folder.
//!
//! The server and the controller run in this process on a tokio runtime of their own; the
//! watches and patches that measure run on another, through a kube client over loopback TCP.
//! kubectl and `moor diff` are child processes (they die with this process) with a cold
//! discovery cache. `--quick` shrinks everything for a smoke run.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use moor::api::manifest_source::{ManifestSource, ManifestSourceStatus};
use moor::apiserver::ApiServer;
use moor::gitops::controller::{SourceController, manifest_source_resource};
use moor::store::EmbeddedStore;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long one watched change may take before the section fails.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a first sync (or an initial small sync) may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one child process (kubectl, moor diff) may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Quiet time after each measured change, so the controller's tail (status write, the echo
/// of its own apply) never overlaps the next measurement.
const PAUSE: Duration = Duration::from_millis(100);
/// ConfigMaps in the folder and repository of sections 1 and 2.
const SMALL: usize = 20;
/// Objects per file in the big folder.
const PER_FILE: usize = 50;
/// Namespaces the big folder declares.
const NAMESPACES: usize = 10;
/// The name of every ManifestSource made here.
const SOURCE: &str = "bench";

struct Opts {
    edits: usize,
    commits: usize,
    objects: usize,
    sync_runs: usize,
    diff_runs: usize,
    /// Objects kubectl applies (the subset), or None for all of them.
    kubectl_subset: Option<usize>,
    quick: bool,
    command: String,
}

fn parse_opts() -> Opts {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut opts = Opts {
        edits: if quick { 10 } else { 50 },
        commits: if quick { 10 } else { 30 },
        objects: if quick { 1_000 } else { 5_000 },
        sync_runs: if quick { 1 } else { 3 },
        diff_runs: if quick { 2 } else { 5 },
        kubectl_subset: Some(if quick { 300 } else { 1_000 }),
        quick,
        command: if args.is_empty() {
            "cargo bench --bench gitops".to_owned()
        } else {
            format!("cargo bench --bench gitops -- {}", args.join(" "))
        },
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" if i + 1 < args.len() => {
                opts.sync_runs = args[i + 1].parse().unwrap_or(opts.sync_runs).max(1);
                i += 1;
            }
            "--objects" if i + 1 < args.len() => {
                opts.objects = args[i + 1]
                    .parse()
                    .unwrap_or(opts.objects)
                    .max(NAMESPACES + 1);
                i += 1;
            }
            "--kubectl-full" => opts.kubectl_subset = None,
            // --quick is read above; anything else cargo passes is ignored.
            _ => {}
        }
        i += 1;
    }
    if opts.kubectl_subset.is_some_and(|s| s >= opts.objects) {
        opts.kubectl_subset = None;
    }
    opts
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .expect("tokio runtime")
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Nearest-rank percentile.
fn percentile(xs: &[f64], q: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// At most 400 characters of some output, for failure reports.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.len() > 400 {
        let mut end = 400;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &text[..end], text.len())
    } else {
        text.to_owned()
    }
}

/// `64ms` or `1.2s` (the controller's format) in seconds.
fn parse_duration(text: &str) -> Option<f64> {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse::<f64>().ok().map(|v| v / 1000.0)
    } else {
        text.strip_suffix('s')?.parse().ok()
    }
}

// ---------------------------------------------------------------------------------------
// The in-process server and controller.

struct Server {
    addr: SocketAddr,
    api: ApiServer,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    embedded: Option<EmbeddedStore>,
    dir: tempfile::TempDir,
}

impl Server {
    /// An embedded store in a temp dir and a server over it on a loopback port, on `rt`.
    fn start(rt: &Runtime) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        rt.block_on(async {
            let store = EmbeddedStore::open(&dir.path().join("state.db"))
                .await
                .map_err(|e| format!("open embedded store: {e}"))?;
            let shutdown = CancellationToken::new();
            let api = ApiServer::new(std::sync::Arc::new(store.clone()), shutdown.clone());
            tokio::time::timeout(Duration::from_secs(30), api.start())
                .await
                .map_err(|_| "server start: not ready within 30 s".to_owned())?
                .map_err(|e| format!("server start: {e:?}"))?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("bind: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let served = tokio::spawn(api.clone().serve(listener));
            Ok(Server {
                addr,
                api,
                shutdown,
                served: Some(served),
                embedded: Some(store),
                dir,
            })
        })
    }

    /// A kube client over loopback TCP, as a user's tool would have; its tasks run on `rt`.
    fn tcp_client(&self, rt: &Runtime) -> Result<Client, String> {
        let _guard = rt.enter();
        let url = format!("http://{}", self.addr);
        let config = kube::Config::new(url.parse().map_err(|e| format!("{url}: {e}"))?);
        Client::try_from(config).map_err(|e| format!("kube client: {e}"))
    }

    /// Write a kubeconfig for this server and return its path.
    fn kubeconfig(&self) -> Result<PathBuf, String> {
        let path = self.dir.path().join("kubeconfig.yaml");
        moor::cli::server::write_kubeconfig(&path, &format!("http://{}", self.addr))
            .map_err(|e| format!("write kubeconfig: {e:#}"))?;
        Ok(path)
    }

    /// Start a source controller on `rt` with the in-process client, as `moor server` does.
    fn controller(&self, rt: &Runtime) -> Controller {
        let _guard = rt.enter();
        let client = self.api.client();
        let cancel = CancellationToken::new();
        let controller = SourceController::new(client, self.dir.path().join("gitops"));
        let handle = rt.spawn(controller.run(cancel.clone()));
        Controller {
            cancel,
            handle: Some(handle),
        }
    }

    fn stop(mut self, rt: &Runtime) {
        self.shutdown.cancel();
        if let Some(served) = self.served.take() {
            let stopped =
                rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), served).await });
            if stopped.is_err() {
                println!("  (odd: the in-process server did not stop within 10 s of shutdown)");
            }
        }
        if let Some(store) = self.embedded.take() {
            rt.block_on(store.close());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Controller {
    cancel: CancellationToken,
    handle: Option<tokio::task::JoinHandle<Result<(), kube::Error>>>,
}

impl Controller {
    fn stop(mut self, rt: &Runtime) {
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            match rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), handle).await })
            {
                Err(_) => println!("  (odd: the controller did not stop within 10 s)"),
                Ok(Ok(Err(e))) => println!("  (odd: the controller ended with an error: {e})"),
                Ok(Err(e)) => println!("  (odd: the controller task failed: {e})"),
                Ok(Ok(Ok(()))) => {}
            }
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------
// ManifestSources.

fn sources(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &manifest_source_resource())
}

async fn create_source(client: &Client, spec: Value) -> Result<(), String> {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "moor.dev/v1alpha1",
        "kind": "ManifestSource",
        "metadata": {"name": SOURCE},
        "spec": spec,
    }))
    .map_err(|e| e.to_string())?;
    sources(client)
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| format!("create ManifestSource: {e}"))?;
    Ok(())
}

fn status_of(obj: DynamicObject) -> ManifestSourceStatus {
    serde_json::to_value(obj)
        .ok()
        .and_then(|v| serde_json::from_value::<ManifestSource>(v).ok())
        .and_then(|s| s.status)
        .unwrap_or_default()
}

/// A short account of a status, for failure reports.
fn describe(status: &ManifestSourceStatus) -> String {
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_else(|| "no Ready condition".into());
    let first_error = status
        .errors
        .first()
        .map(|e| format!("; first of {} errors: {e}", status.errors.len()))
        .unwrap_or_default();
    format!(
        "revision {:?}, {} in the inventory, Ready {ready}{first_error}",
        status.revision,
        status.inventory.len()
    )
}

/// Poll the source's status until `done` holds; fail after `timeout` showing the last status.
async fn wait_status(
    client: &Client,
    what: &str,
    timeout: Duration,
    done: impl Fn(&ManifestSourceStatus) -> bool,
) -> Result<ManifestSourceStatus, String> {
    let deadline = Instant::now() + timeout;
    let api = sources(client);
    loop {
        let status = match api.get_opt(SOURCE).await {
            Ok(Some(obj)) => status_of(obj),
            Ok(None) => ManifestSourceStatus::default(),
            Err(e) => return Err(format!("{what}: reading the ManifestSource: {e}")),
        };
        if done(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what}: not within {} s; last status: {}",
                timeout.as_secs(),
                describe(&status)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The ConfigMap watch that measures sections 1 and 2.

enum Seen {
    /// The watch's initial list is done.
    Ready,
    /// A ConfigMap with `data.key`, and when this process decoded it.
    Value {
        name: String,
        value: String,
        at: Instant,
    },
    Error(String),
}

/// Watch the ConfigMaps of `namespace` (kube-rs watcher over TCP) on `rt`; every event is
/// stamped on arrival and sent down the channel.
fn watch_config_maps(
    rt: &Runtime,
    client: Client,
    namespace: &str,
) -> (mpsc::UnboundedReceiver<Seen>, AbortOnDrop) {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = rt.spawn(async move {
        let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let at = Instant::now();
            let seen = match event {
                Ok(Event::Apply(cm) | Event::InitApply(cm)) => {
                    let value = cm.data.as_ref().and_then(|d| d.get("key")).cloned();
                    match (cm.metadata.name, value) {
                        (Some(name), Some(value)) => Seen::Value { name, value, at },
                        _ => continue,
                    }
                }
                Ok(Event::InitDone) => Seen::Ready,
                Ok(Event::Init | Event::Delete(_)) => continue,
                Err(e) => Seen::Error(e.to_string()),
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    (rx, AbortOnDrop(task))
}

async fn wait_ready(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Seen::Ready)) => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Err("the ConfigMap watch ended".into()),
            Err(_) => return Err("the ConfigMap watch did not finish its initial list".into()),
        }
    }
}

/// When the watch delivered ConfigMap `name` with `data.key` = `value`.
async fn wait_value(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    name: &str,
    value: &str,
) -> Result<Instant, String> {
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    let mut errors = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Seen::Value {
                name: n,
                value: v,
                at,
            })) if n == name && v == value => {
                return Ok(at);
            }
            Ok(Some(Seen::Error(e))) => errors.push(e),
            Ok(Some(_)) => {}
            Ok(None) => return Err("the ConfigMap watch ended".into()),
            Err(_) => {
                return Err(format!(
                    "the watch never delivered ConfigMap {name} with value {value:?} within {} s{}",
                    CHANGE_TIMEOUT.as_secs(),
                    errors
                        .first()
                        .map(|e| format!(" (watch errors: {e})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
}

fn config_map_yaml(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app: bench\n\
         data:\n  key: \"{value}\"\n  settings.yaml: |\n    replicas: 2\n    feature: enabled\n"
    )
}

/// The direct path, the floor: a merge patch of ConfigMap `direct` through the API, until
/// the watch delivers it (ms).
fn direct_change(
    client_rt: &Runtime,
    client: &Client,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    value: &str,
) -> Result<f64, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    client_rt.block_on(async {
        let start = Instant::now();
        api.patch(
            "direct",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"key": value}})),
        )
        .await
        .map_err(|e| format!("patch ConfigMap direct: {e}"))?;
        let at = wait_value(rx, "direct", value).await?;
        Ok(ms(at.saturating_duration_since(start)))
    })
}

/// The unowned ConfigMap the direct baseline patches.
fn create_direct(client_rt: &Runtime, client: &Client) -> Result<(), String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_yaml::from_str(&config_map_yaml("direct", "start"))
        .map_err(|e| format!("direct ConfigMap: {e}"))?;
    client_rt
        .block_on(api.create(&PostParams::default(), &cm))
        .map_err(|e| format!("create ConfigMap direct: {e}"))?;
    Ok(())
}

struct Latencies {
    gitops: Vec<f64>,
    direct: Vec<f64>,
}

impl Latencies {
    fn print(&self, what: &str) {
        let (g, d) = (&self.gitops, &self.direct);
        println!(
            "  {what}: {} changes, p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms",
            g.len(),
            percentile(g, 0.5),
            percentile(g, 0.9),
            percentile(g, 0.0),
            percentile(g, 1.0)
        );
        println!(
            "  direct API patch → watch (same run, interleaved): p50 {:.2} ms, p90 {:.2} ms; \
             GitOps / direct at p50: {:.0}×",
            percentile(d, 0.5),
            percentile(d, 0.9),
            percentile(g, 0.5) / percentile(d, 0.5)
        );
    }
}

// ---------------------------------------------------------------------------------------
// 1. Folder: file saved → object updated.

/// Written beside and renamed, as editors do, so the watcher never reads half a file.
fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename onto {}: {e}", path.display()))
}

fn bench_folder(
    server_rt: &Runtime,
    client_rt: &Runtime,
    opts: &Opts,
) -> Result<Latencies, String> {
    let server = Server::start(server_rt)?;
    let controller = server.controller(server_rt);
    let result = (|| {
        let client = server.tcp_client(client_rt)?;
        let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let folder = work.path().join("manifests");
        std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
        let folder = std::fs::canonicalize(&folder).map_err(|e| e.to_string())?;
        for i in 0..SMALL {
            let name = format!("cm-{i:02}");
            write_atomic(
                &folder.join(format!("{name}.yaml")),
                &config_map_yaml(&name, "v0"),
            )?;
        }
        create_direct(client_rt, &client)?;
        client_rt.block_on(async {
            create_source(
                &client,
                json!({"directory": {"path": folder.to_string_lossy()}}),
            )
            .await?;
            wait_status(
                &client,
                "the initial sync of the folder",
                SYNC_TIMEOUT,
                |s| s.revision.is_some() && s.inventory.len() == SMALL,
            )
            .await
        })?;
        let (mut rx, _watch) = watch_config_maps(client_rt, client.clone(), "default");
        client_rt.block_on(wait_ready(&mut rx))?;
        std::thread::sleep(PAUSE);

        let mut out = Latencies {
            gitops: Vec::new(),
            direct: Vec::new(),
        };
        for i in 0..opts.edits {
            let name = format!("cm-{:02}", i % SMALL);
            let value = format!("edit-{i}");
            let path = folder.join(format!("{name}.yaml"));
            let text = config_map_yaml(&name, &value);
            let start = Instant::now();
            write_atomic(&path, &text)?;
            let at = client_rt
                .block_on(wait_value(&mut rx, &name, &value))
                .map_err(|e| format!("file edit {i}: {e}"))?;
            out.gitops.push(ms(at.saturating_duration_since(start)));
            std::thread::sleep(PAUSE);
            out.direct.push(direct_change(
                client_rt,
                &client,
                &mut rx,
                &format!("direct-{i}"),
            )?);
            std::thread::sleep(PAUSE);
        }
        Ok(out)
    })();
    controller.stop(server_rt);
    server.stop(server_rt);
    result
}

// ---------------------------------------------------------------------------------------
// 2. Local git repository: new commit → applied.

/// Write `files` into the work tree of `repo` and commit them on the current branch.
fn commit(
    repo: &git2::Repository,
    files: &[(String, String)],
    message: &str,
) -> Result<git2::Oid, String> {
    let inner = || -> Result<git2::Oid, git2::Error> {
        let workdir = repo
            .workdir()
            .ok_or_else(|| git2::Error::from_str("bare repository"))?
            .to_path_buf();
        let mut index = repo.index()?;
        for (path, text) in files {
            let full = workdir.join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| git2::Error::from_str(&e.to_string()))?;
            }
            std::fs::write(&full, text).map_err(|e| git2::Error::from_str(&e.to_string()))?;
            index.add_path(Path::new(path))?;
        }
        index.write()?;
        let tree = repo.find_tree(index.write_tree()?)?;
        let signature = git2::Signature::now("bench", "bench@example.com")?;
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(
            Some("HEAD"),
            &signature,
            &signature,
            message,
            &tree,
            &parents,
        )
    };
    inner().map_err(|e| format!("git commit {message:?}: {e}"))
}

fn bench_git(server_rt: &Runtime, client_rt: &Runtime, opts: &Opts) -> Result<Latencies, String> {
    let server = Server::start(server_rt)?;
    let controller = server.controller(server_rt);
    let result = (|| {
        let client = server.tcp_client(client_rt)?;
        let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let repo_dir = work.path().join("repo");
        let repo = git2::Repository::init(&repo_dir).map_err(|e| format!("git init: {e}"))?;
        repo.set_head("refs/heads/main")
            .map_err(|e| format!("git set HEAD: {e}"))?;
        let files: Vec<(String, String)> = (0..SMALL)
            .map(|i| {
                let name = format!("cm-{i:02}");
                (format!("deploy/{name}.yaml"), config_map_yaml(&name, "v0"))
            })
            .collect();
        let first = commit(&repo, &files, "first")?.to_string();
        create_direct(client_rt, &client)?;
        client_rt.block_on(async {
            create_source(
                &client,
                json!({"git": {"url": repo_dir.to_string_lossy(), "branch": "main",
                               "path": "deploy", "interval": "1h"}}),
            )
            .await?;
            wait_status(
                &client,
                "the initial sync of the repository",
                SYNC_TIMEOUT,
                |s| s.revision.as_deref() == Some(first.as_str()),
            )
            .await
        })?;
        let (mut rx, _watch) = watch_config_maps(client_rt, client.clone(), "default");
        client_rt.block_on(wait_ready(&mut rx))?;
        std::thread::sleep(PAUSE);

        let mut out = Latencies {
            gitops: Vec::new(),
            direct: Vec::new(),
        };
        for i in 0..opts.commits {
            let name = format!("cm-{:02}", i % SMALL);
            let value = format!("commit-{i}");
            let file = (
                format!("deploy/{name}.yaml"),
                config_map_yaml(&name, &value),
            );
            commit(&repo, &[file], &format!("change {i}"))?;
            let start = Instant::now();
            let at = client_rt
                .block_on(wait_value(&mut rx, &name, &value))
                .map_err(|e| format!("commit {i}: {e}"))?;
            out.gitops.push(ms(at.saturating_duration_since(start)));
            std::thread::sleep(PAUSE);
            out.direct.push(direct_change(
                client_rt,
                &client,
                &mut rx,
                &format!("direct-{i}"),
            )?);
            std::thread::sleep(PAUSE);
        }
        Ok(out)
    })();
    controller.stop(server_rt);
    server.stop(server_rt);
    result
}

// ---------------------------------------------------------------------------------------
// The big folder.

struct BigFolder {
    root: PathBuf,
    /// Files in the order kubectl reads them (`-R` walks lexically).
    files: Vec<PathBuf>,
    /// Objects per file, same order.
    counts: Vec<usize>,
    namespaces: usize,
    config_maps: usize,
    services: usize,
    deployments: usize,
}

impl BigFolder {
    fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    fn mix(&self) -> String {
        format!(
            "{} objects: {} Namespaces, {} ConfigMaps, {} Services, {} Deployments in {} files",
            self.total(),
            self.namespaces,
            self.config_maps,
            self.services,
            self.deployments,
            self.files.len()
        )
    }
}

fn big_object(g: usize, namespace: &str) -> (&'static str, String) {
    match g % 33 {
        0 => (
            "Deployment",
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{g}\n  namespace: {namespace}\n  \
                 labels:\n    app: app-{g}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: app-{g}\n  \
                 template:\n    metadata:\n      labels:\n        app: app-{g}\n    spec:\n      containers:\n      \
                 - name: web\n        image: nginx:1.27\n        ports:\n        - containerPort: 8080\n        \
                 resources:\n          requests:\n            cpu: 100m\n            memory: 64Mi\n"
            ),
        ),
        1 => (
            "Service",
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{g}\n  namespace: {namespace}\nspec:\n  \
                 selector:\n    app: app-{}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n",
                g - 1
            ),
        ),
        _ => (
            "ConfigMap",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{g}\n  namespace: {namespace}\n  \
                 labels:\n    app.kubernetes.io/part-of: bench\ndata:\n  key: \"value-{g}\"\n  settings.yaml: |\n    \
                 replicas: 2\n    feature: enabled\n    endpoint: http://svc-{g}.{namespace}.svc:8080\n"
            ),
        ),
    }
}

/// `objects` objects: the namespaces in `00-namespaces.yaml`, the rest in files of
/// [`PER_FILE`], file `f` in folder `ns-{f % 10}` for namespace `ns-{f % 10}`.
fn write_big_folder(root: &Path, objects: usize) -> Result<BigFolder, String> {
    let io = |e: std::io::Error| format!("writing the big folder: {e}");
    std::fs::create_dir_all(root).map_err(io)?;
    let root = std::fs::canonicalize(root).map_err(io)?;
    let namespaces = NAMESPACES.min(objects);
    let mut folder = BigFolder {
        root: root.clone(),
        files: Vec::new(),
        counts: Vec::new(),
        namespaces,
        config_maps: 0,
        services: 0,
        deployments: 0,
    };
    let ns_docs: Vec<String> = (0..namespaces)
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{n}\n"))
        .collect();
    let ns_file = root.join("00-namespaces.yaml");
    std::fs::write(&ns_file, ns_docs.join("---\n")).map_err(io)?;
    folder.files.push(ns_file);
    folder.counts.push(namespaces);
    let rest = objects - namespaces;
    let mut files = Vec::new();
    for (f, start) in (0..rest).step_by(PER_FILE).enumerate() {
        let namespace = format!("ns-{}", f % namespaces.max(1));
        let mut docs = Vec::new();
        for g in start..(start + PER_FILE).min(rest) {
            let (kind, text) = big_object(g, &namespace);
            match kind {
                "Deployment" => folder.deployments += 1,
                "Service" => folder.services += 1,
                _ => folder.config_maps += 1,
            }
            docs.push(text);
        }
        let dir = root.join(&namespace);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let path = dir.join(format!("part-{f:03}.yaml"));
        std::fs::write(&path, docs.join("---\n")).map_err(io)?;
        files.push((path, docs.len()));
    }
    files.sort();
    for (path, n) in files {
        folder.files.push(path);
        folder.counts.push(n);
    }
    Ok(folder)
}

/// A copy of the namespaces file and the first files (in creation order) holding about
/// `objects` objects: (folder, object count).
fn write_subset(big: &BigFolder, to: &Path, objects: usize) -> Result<(PathBuf, usize), String> {
    let io = |e: std::io::Error| format!("writing the subset: {e}");
    let files = objects.saturating_sub(big.namespaces).div_ceil(PER_FILE);
    let mut count = 0;
    let mut copy = |from: &Path| -> Result<(), String> {
        let rel = from.strip_prefix(&big.root).map_err(|e| e.to_string())?;
        let dest = to.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::copy(from, &dest).map_err(io)?;
        let i = big.files.iter().position(|p| p == from).unwrap_or(0);
        count += big.counts[i];
        Ok(())
    };
    copy(&big.root.join("00-namespaces.yaml"))?;
    for f in 0..files {
        let path = big
            .root
            .join(format!("ns-{}", f % big.namespaces.max(1)))
            .join(format!("part-{f:03}.yaml"));
        if path.exists() {
            copy(&path)?;
        }
    }
    Ok((to.to_owned(), count))
}

// ---------------------------------------------------------------------------------------
// Child processes.

struct Ran {
    code: Option<i32>,
    secs: f64,
    stdout_bytes: u64,
    stderr: String,
}

/// Run `cmd` with stdout and stderr to files in `dir`, killed after [`COMMAND_TIMEOUT`];
/// timed from spawn to exit.
fn run(mut cmd: Command, dir: &Path, what: &str) -> Result<Ran, String> {
    let out_path = dir.join("cmd.out");
    let err_path = dir.join("cmd.err");
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no parent memory; the
    // child dies with this process even if it is killed.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(status) => status.map_err(|e| format!("{what}: {e}"))?,
        Err(_) => {
            // SAFETY: kill(2) on our own child, not reaped yet (the waiting thread is blocked).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = rx.recv();
            return Err(format!(
                "{what}: still running after {} s; killed",
                COMMAND_TIMEOUT.as_secs()
            ));
        }
    };
    let secs = start.elapsed().as_secs_f64();
    Ok(Ran {
        code: status.code(),
        secs,
        stdout_bytes: std::fs::metadata(&out_path).map_or(0, |m| m.len()),
        stderr: excerpt(&std::fs::read_to_string(&err_path).unwrap_or_default()),
    })
}

fn kubectl(kubeconfig: &Path, cache: &Path) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache);
    cmd
}

// ---------------------------------------------------------------------------------------
// 3. First sync of the big folder.

struct FirstSync {
    objects: usize,
    secs: Vec<f64>,
    controller_secs: Vec<f64>,
    controller_texts: Vec<String>,
}

struct KubectlApply {
    objects: usize,
    secs: f64,
    /// Scaled to the full folder.
    scaled: f64,
}

/// What the last first-sync run leaves for section 4.
struct Synced {
    server: Server,
    kubeconfig: PathBuf,
}

/// One first sync on a fresh server: (seconds, the controller's lastSyncDuration, the server).
fn first_sync_once(
    server_rt: &Runtime,
    client_rt: &Runtime,
    big: &BigFolder,
) -> Result<(f64, String, Server), String> {
    let server = Server::start(server_rt)?;
    let controller = server.controller(server_rt);
    let result = (|| {
        let client = server.tcp_client(client_rt)?;
        // Let the controller discover the kinds and start its watches before the clock.
        std::thread::sleep(Duration::from_millis(500));
        let total = big.total();
        let (tx, mut rx) = mpsc::unbounded_channel::<(ManifestSourceStatus, Instant)>();
        let api = sources(&client);
        let _watch = AbortOnDrop(client_rt.spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                let at = Instant::now();
                if let Ok(Event::Apply(obj) | Event::InitApply(obj)) = event
                    && tx.send((status_of(obj), at)).is_err()
                {
                    return;
                }
            }
        }));
        client_rt.block_on(async {
            // Give the watch a moment to list (nothing yet) and start watching.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let start = Instant::now();
            create_source(
                &client,
                json!({"directory": {"path": big.root.to_string_lossy()}}),
            )
            .await?;
            let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
            let mut last = ManifestSourceStatus::default();
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((status, at))) => {
                        if status.revision.is_some() && status.inventory.len() == total {
                            let text = status.last_sync_duration.clone().unwrap_or_default();
                            return Ok((at.saturating_duration_since(start).as_secs_f64(), text));
                        }
                        last = status;
                    }
                    Ok(None) => return Err("the ManifestSource watch ended".to_owned()),
                    Err(_) => {
                        return Err(format!(
                            "first sync of {total} objects: not done within {} s; last status: {}",
                            SYNC_TIMEOUT.as_secs(),
                            describe(&last)
                        ));
                    }
                }
            }
        })
    })();
    controller.stop(server_rt);
    match result {
        Ok((secs, text)) => Ok((secs, text, server)),
        Err(e) => {
            server.stop(server_rt);
            Err(e)
        }
    }
}

fn bench_first_sync(
    server_rt: &Runtime,
    client_rt: &Runtime,
    opts: &Opts,
    big: &BigFolder,
) -> Result<(FirstSync, Synced), String> {
    let mut out = FirstSync {
        objects: big.total(),
        secs: Vec::new(),
        controller_secs: Vec::new(),
        controller_texts: Vec::new(),
    };
    let mut kept = None;
    for run in 0..opts.sync_runs {
        let (secs, text, server) = first_sync_once(server_rt, client_rt, big)?;
        println!(
            "  run {}: {:.2} s from creating the ManifestSource to status.revision with {} in \
             the inventory; controller's lastSyncDuration {text}",
            run + 1,
            secs,
            big.total()
        );
        out.secs.push(secs);
        out.controller_secs
            .push(parse_duration(&text).unwrap_or(f64::NAN));
        out.controller_texts.push(text);
        if let Some(old) = kept.replace(server) {
            old.stop(server_rt);
        }
    }
    let server = kept.ok_or("no run")?;
    let kubeconfig = match server.kubeconfig() {
        Ok(k) => k,
        Err(e) => {
            server.stop(server_rt);
            return Err(e);
        }
    };
    Ok((out, Synced { server, kubeconfig }))
}

fn bench_kubectl_apply(
    server_rt: &Runtime,
    opts: &Opts,
    big: &BigFolder,
) -> Result<KubectlApply, String> {
    let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let (dir, objects) = match opts.kubectl_subset {
        Some(n) => write_subset(big, &work.path().join("subset"), n)?,
        None => (big.root.clone(), big.total()),
    };
    let server = Server::start(server_rt)?;
    let result = (|| {
        let kubeconfig = server.kubeconfig()?;
        let mut cmd = kubectl(&kubeconfig, &work.path().join("kube-cache"));
        cmd.args(["apply", "--server-side", "-R", "-f"]).arg(&dir);
        let ran = run(cmd, work.path(), "kubectl apply")?;
        if ran.code != Some(0) {
            return Err(format!(
                "kubectl apply exited {:?}: {}",
                ran.code, ran.stderr
            ));
        }
        Ok(KubectlApply {
            objects,
            secs: ran.secs,
            scaled: ran.secs * big.total() as f64 / objects as f64,
        })
    })();
    server.stop(server_rt);
    result
}

// ---------------------------------------------------------------------------------------
// 4. moor diff.

struct DiffFigures {
    objects: usize,
    unchanged: Vec<f64>,
    changed: Vec<f64>,
    changed_stdout: u64,
    kubectl: Result<(f64, i32, u64), String>,
}

fn moor_diff(big: &BigFolder, synced: &Synced, work: &Path, expect: i32) -> Result<Ran, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moor"));
    cmd.arg("diff")
        .arg(&big.root)
        .arg("--kubeconfig")
        .arg(&synced.kubeconfig)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG");
    let ran = run(cmd, work, "moor diff")?;
    if ran.code != Some(expect) {
        return Err(format!(
            "moor diff exited {:?}, expected {expect} ({} bytes of output): {}",
            ran.code,
            ran.stdout_bytes,
            excerpt(&std::fs::read_to_string(work.join("cmd.out")).unwrap_or_default()),
        ) + &format!("; stderr: {}", ran.stderr));
    }
    Ok(ran)
}

fn bench_diff(opts: &Opts, big: &BigFolder, synced: &Synced) -> Result<DiffFigures, String> {
    let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut out = DiffFigures {
        objects: big.total(),
        unchanged: Vec::new(),
        changed: Vec::new(),
        changed_stdout: 0,
        kubectl: Err("not run".into()),
    };
    for _ in 0..opts.diff_runs {
        out.unchanged
            .push(moor_diff(big, synced, work.path(), 0)?.secs);
    }
    println!(
        "  moor diff, nothing changed (exit 0): median {:.3} s of {} ({})",
        median(&out.unchanged),
        out.unchanged.len(),
        out.unchanged
            .iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut cmd = kubectl(&synced.kubeconfig, &work.path().join("kube-cache"));
    cmd.args(["diff", "--server-side", "-R", "-f"])
        .arg(&big.root);
    out.kubectl = run(cmd, work.path(), "kubectl diff").and_then(|ran| match ran.code {
        Some(code @ (0 | 1)) => Ok((ran.secs, code, ran.stdout_bytes)),
        code => Err(format!("kubectl diff exited {code:?}: {}", ran.stderr)),
    });
    match &out.kubectl {
        Ok((secs, code, bytes)) => println!(
            "  kubectl diff --server-side -R, same folder, 1 run: {secs:.3} s (exit {code}, \
             {bytes} bytes of diff)"
        ),
        Err(e) => println!("  kubectl diff FAILED: {e}"),
    }

    // One ConfigMap value changed (the controller is stopped: nothing syncs it).
    let file = big.root.join("ns-0").join("part-000.yaml");
    let original = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    let changed = original.replacen("key: \"value-2\"", "key: \"changed-2\"", 1);
    if changed == original {
        return Err(format!("no ConfigMap cm-2 in {} to change", file.display()));
    }
    std::fs::write(&file, changed).map_err(|e| e.to_string())?;
    let result: Result<(), String> = (|| {
        for _ in 0..opts.diff_runs {
            let ran = moor_diff(big, synced, work.path(), 1)?;
            out.changed.push(ran.secs);
            out.changed_stdout = ran.stdout_bytes;
        }
        Ok(())
    })();
    std::fs::write(&file, original).map_err(|e| e.to_string())?;
    result?;
    println!(
        "  moor diff, one ConfigMap changed (exit 1): median {:.3} s of {} ({} bytes of output)",
        median(&out.changed),
        out.changed.len(),
        out.changed_stdout
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The table.

#[derive(Default)]
struct Table {
    rows: Vec<[String; 7]>,
}

impl Table {
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        figure: &str,
        n: String,
        measured: String,
        baseline: String,
        ratio: String,
        target: &str,
        met: Option<bool>,
    ) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        self.rows.push([
            figure.to_owned(),
            n,
            measured,
            baseline,
            ratio,
            target.to_owned(),
            met.to_owned(),
        ]);
    }

    fn failed(&mut self, figure: &str, target: &str) {
        self.row(
            figure,
            "-".into(),
            "failed (see above)".into(),
            "-".into(),
            "-".into(),
            target,
            Some(false),
        );
    }

    fn print(&self) {
        println!();
        println!("| figure | N | measured | baseline (same run) | ratio | target | met |");
        println!("|---|---:|---:|---:|---:|---|---|");
        for [figure, n, measured, baseline, ratio, target, met] in &self.rows {
            println!("| {figure} | {n} | {measured} | {baseline} | {ratio} | {target} | {met} |");
        }
    }
}

fn latency_rows(
    table: &mut Table,
    what: &str,
    r: &Result<Latencies, String>,
    target_ms: f64,
    target: &str,
) {
    match r {
        Ok(l) => {
            let (g50, g90) = (percentile(&l.gitops, 0.5), percentile(&l.gitops, 0.9));
            let (d50, d90) = (percentile(&l.direct, 0.5), percentile(&l.direct, 0.9));
            table.row(
                &format!("{what} p50"),
                l.gitops.len().to_string(),
                format!("{g50:.1} ms"),
                format!("{d50:.2} ms (API patch)"),
                format!("{:.0}×", g50 / d50),
                target,
                Some(g50 < target_ms),
            );
            table.row(
                &format!("{what} p90"),
                l.gitops.len().to_string(),
                format!("{g90:.1} ms"),
                format!("{d90:.2} ms (API patch)"),
                format!("{:.0}×", g90 / d90),
                "-",
                None,
            );
        }
        Err(_) => table.failed(&format!("{what} p50"), target),
    }
}

fn main() {
    let opts = parse_opts();
    let server_rt = runtime("moor-server");
    let client_rt = runtime("bench-client");
    println!(
        "gitops benchmark{}: {} cores; in-process server (embedded store) and controller on \
         their own tokio runtime, measuring watches and patches through a kube client over \
         loopback TCP on another",
        if opts.quick { " (--quick)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    println!(
        "1. folder of {SMALL} ConfigMaps: file saved (temp + rename) → the ConfigMap watch \
         delivers the new value; {} edits, each followed by a direct API patch as baseline",
        opts.edits
    );
    let folder = bench_folder(&server_rt, &client_rt, &opts);
    match &folder {
        Ok(l) => l.print("file saved → watch"),
        Err(e) => println!("  FAILED: {e}"),
    }

    println!(
        "2. local git repository (branch main, interval 1h): commit → the watch delivers the \
         new value; {} commits, each followed by a direct API patch as baseline",
        opts.commits
    );
    let git = bench_git(&server_rt, &client_rt, &opts);
    match &git {
        Ok(l) => l.print("commit → watch"),
        Err(e) => println!("  FAILED: {e}"),
    }

    let work = tempfile::tempdir().expect("temp dir");
    let big = write_big_folder(&work.path().join("big"), opts.objects);
    let (sync, kubectl_apply, diff) = match &big {
        Err(e) => {
            println!("3./4. FAILED: {e}");
            (Err(e.clone()), Err(e.clone()), Err(e.clone()))
        }
        Ok(big) => {
            println!(
                "3. first sync, fresh server each run, {} runs: {}",
                opts.sync_runs,
                big.mix()
            );
            let sync = bench_first_sync(&server_rt, &client_rt, &opts, big);
            let (sync, synced) = match sync {
                Ok((figures, synced)) => {
                    println!(
                        "  median {:.2} s (controller's own lastSyncDuration: median {})",
                        median(&figures.secs),
                        figures.controller_texts[figures.controller_secs.len() / 2]
                    );
                    (Ok(figures), Some(synced))
                }
                Err(e) => {
                    println!("  FAILED: {e}");
                    (Err(e), None)
                }
            };
            let kubectl_apply = bench_kubectl_apply(&server_rt, &opts, big);
            match &kubectl_apply {
                Ok(k) => println!(
                    "  kubectl apply --server-side -R, fresh server, 1 run: {} objects in {:.2} s \
                     ({:.1} ms/object){}",
                    k.objects,
                    k.secs,
                    1000.0 * k.secs / k.objects as f64,
                    if k.objects == big.total() {
                        String::new()
                    } else {
                        format!(
                            " — a subset (00-namespaces.yaml and the first {} files); scaled \
                             linearly to {}: {:.1} s",
                            (k.objects - big.namespaces).div_ceil(PER_FILE),
                            big.total(),
                            k.scaled
                        )
                    }
                ),
                Err(e) => println!("  kubectl apply FAILED: {e}"),
            }
            let diff = match synced {
                None => Err("no synced server (section 3 failed)".to_owned()),
                Some(synced) => {
                    println!(
                        "4. `moor diff DIR --kubeconfig K` (the real binary) against the last \
                         run's server, controller stopped; median of {}",
                        opts.diff_runs
                    );
                    let diff = bench_diff(&opts, big, &synced);
                    if let Err(e) = &diff {
                        println!("  FAILED: {e}");
                    }
                    synced.server.stop(&server_rt);
                    diff
                }
            };
            (sync, kubectl_apply, diff)
        }
    };

    let mut table = Table::default();
    latency_rows(
        &mut table,
        "folder: file saved → watch sees it",
        &folder,
        100.0,
        "p50 < 100 ms",
    );
    latency_rows(
        &mut table,
        "git: commit → watch sees it",
        &git,
        500.0,
        "p50 < 500 ms",
    );
    match &sync {
        Ok(s) => {
            let m = median(&s.secs);
            let (baseline, ratio) = match &kubectl_apply {
                Ok(k) if k.objects == s.objects => (
                    format!("{:.1} s (kubectl apply)", k.secs),
                    format!("{:.3}×", m / k.secs),
                ),
                Ok(k) => (
                    format!(
                        "{:.1} s (kubectl apply, {} objects in {:.1} s scaled)",
                        k.scaled, k.objects, k.secs
                    ),
                    format!("{:.3}×", m / k.scaled),
                ),
                Err(_) => ("failed".into(), "-".into()),
            };
            table.row(
                "first sync: ManifestSource created → status.revision, all in inventory",
                s.objects.to_string(),
                format!("{m:.2} s"),
                baseline,
                ratio,
                "< 5 s",
                Some(m < 5.0),
            );
            table.row(
                "first sync: controller's status.lastSyncDuration",
                s.objects.to_string(),
                s.controller_texts[s.controller_secs.len() / 2].clone(),
                "-".into(),
                "-".into(),
                "-",
                None,
            );
        }
        Err(_) => table.failed("first sync", "< 5 s"),
    }
    match &diff {
        Ok(d) => {
            let (baseline, ratio) = match &d.kubectl {
                Ok((secs, code, _)) => (
                    format!("{secs:.2} s (kubectl diff, exit {code})"),
                    format!("{:.2}×", median(&d.unchanged) / secs),
                ),
                Err(_) => ("failed".into(), "-".into()),
            };
            let (u, c) = (median(&d.unchanged), median(&d.changed));
            table.row(
                "`moor diff`, nothing changed (exit 0)",
                d.objects.to_string(),
                format!("{u:.3} s"),
                baseline,
                ratio,
                "< 1 s",
                Some(u < 1.0),
            );
            table.row(
                "`moor diff`, one ConfigMap changed (exit 1)",
                d.objects.to_string(),
                format!("{c:.3} s"),
                "-".into(),
                "-".into(),
                "< 1 s",
                Some(c < 1.0),
            );
        }
        Err(_) => table.failed("`moor diff`", "< 1 s"),
    }
    table.print();
    println!();
    println!("command: `{}`", opts.command);
    println!(
        "(latencies: p50/p90 nearest rank; first sync and diff: medians; ratio = measured / \
         baseline. Reference points: Argo CD polls git every 3 min by default; Flux's \
         published figure is 1,000 objects in 4 min 16 s)"
    );
    if opts.quick {
        println!("(--quick: a smoke run with shrunken sizes; the targets are for the full run)");
    }
}

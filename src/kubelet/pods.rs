//! Pod sync: turns the pods bound to this node into containers and reports their status.
//!
//! One worker task per pod (as kubelet's pod workers) runs [`PodWorker::sync`], a
//! level-triggered comparison of the pod's spec with what containerd shows of it, whenever
//! something may have changed: the pod (its watch), one of its tasks (containerd's exit
//! and OOM events), a back-off expiring, or the periodic resync that is only a safety net.
//! The manager ([`PodManager::run`]) owns the workers: it follows the node's pods through a
//! watch with `fieldSelector=spec.nodeName=NAME`, routes containerd events to the pod whose
//! UID the container ID carries, and at start removes containers, networks and directories
//! of pods that were deleted while the agent was down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dns::DnsSettings;
use super::env::{self, ApiLookup};
use super::exec;
use super::images::{ImageInfo, ImageStore, RegistryAuth, credentials_for};
use super::logs;
use super::network::{Network, PortMapping};
use super::probes::{self, ProbeKind, ProbeResult, ProbeState, ProbeTarget, Transition};
use super::runtime::{self, Record, RunRequest, Runtime, State, TaskEvent, labels};
use super::spec::{self, SpecInput};
use super::status::{self, Observed};
use super::volumes;
use crate::controllers::events::{EventType, Recorder, reference};

/// Restart back-off: 10 s doubling to 5 min, forgotten after 10 min of running (kubelet's).
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);
/// Image pull back-off, the same shape.
const PULL_BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// How often every pod is re-synced even when nothing was signalled.
const RESYNC: Duration = Duration::from_secs(60);
/// How often container logs are checked for rotation.
const LOG_ROTATION_CHECK: Duration = Duration::from_secs(10);
/// Network or volume set-up that failed is retried this soon.
const SETUP_RETRY: Duration = Duration::from_secs(2);

/// What the pod workers share.
pub struct Shared {
    pub client: kube::Client,
    pub node_name: String,
    pub runtime: Runtime,
    pub images: ImageStore,
    /// None: every pod runs in the host's network (no CNI on this node).
    pub network: Option<Arc<Network>>,
    pub data_dir: PathBuf,
    pub host_ip: Option<IpAddr>,
    pub recorder: Arc<Recorder>,
    /// The `moor` binary, which containerd's shims run as each container's log writer.
    pub log_driver: PathBuf,
    /// Cluster DNS for pods' resolv.conf.
    pub dns: DnsSettings,
    /// The host's resolv.conf (for `Default` DNS policy and the host's search domains).
    pub resolv_conf: PathBuf,
}

impl Shared {
    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }

    fn log_path(&self, pod: &Pod, container: &str, attempt: u32) -> PathBuf {
        let meta = &pod.metadata;
        self.data_dir
            .join("logs")
            .join(format!(
                "{}_{}_{}",
                meta.namespace.as_deref().unwrap_or("default"),
                meta.name.as_deref().unwrap_or(""),
                meta.uid.as_deref().unwrap_or("")
            ))
            .join(container)
            .join(format!("{attempt}.log"))
    }

    /// Records an event in the background: a pod's start does not wait for its events.
    async fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        let recorder = self.recorder.clone();
        let object = reference(pod);
        let (reason, message) = (reason.to_owned(), message.to_owned());
        tokio::spawn(async move { recorder.publish(&object, kind, &reason, &message).await });
    }
}

/// A restart (or pull) back-off for one key.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    delay: Duration,
    last: Instant,
}

/// One pod's worker.
pub struct PodWorker {
    shared: Arc<Shared>,
    uid: String,
    restart_backoff: HashMap<String, Backoff>,
    pull_backoff: HashMap<String, Backoff>,
    /// Why a container is not running, when that is not an exit (for its status).
    waiting: HashMap<String, (String, String)>,
    /// When containers were signalled to stop, so SIGKILL follows at the deadline.
    stopping: HashMap<String, Instant>,
    network_ips: Option<Vec<IpAddr>>,
    last_status: Option<serde_json::Value>,
    /// Per container name: the running container's ID and its probes.
    probes: HashMap<String, (String, ContainerProbes)>,
    /// When this agent first saw the pod, until its start is recorded in the metrics
    /// (None after that, or for a pod whose containers already ran when it was first seen:
    /// adopted after a restart, it did not start now).
    starting_since: Option<Instant>,
    /// Whether a sync has run (the first one tells a started pod from an adopted one).
    synced: bool,
    /// Counts the pod in `kubelet_running_pods` while any of its containers runs.
    running: Option<crate::metrics::RunningPod>,
}

/// What a sync asks for next.
enum Next {
    /// Sync again by this time at the latest.
    At(Instant),
    /// The pod is gone for good: the worker ends.
    Done,
}

impl PodWorker {
    fn new(shared: Arc<Shared>, uid: String) -> Self {
        PodWorker {
            shared,
            uid,
            restart_backoff: HashMap::new(),
            pull_backoff: HashMap::new(),
            waiting: HashMap::new(),
            stopping: HashMap::new(),
            network_ips: None,
            last_status: None,
            probes: HashMap::new(),
            starting_since: Some(Instant::now()),
            synced: false,
            running: None,
        }
    }

    /// Keep the pod's metrics in step with its containers: its start is recorded once
    /// every app container runs, and it counts as running while any container does.
    fn observe_containers(&mut self, pod: &Pod, by_name: &Attempts) {
        if all_running(pod, by_name)
            && let Some(since) = self.starting_since.take()
        {
            crate::metrics::pod_started(since.elapsed());
        }
        let any_running = by_name
            .values()
            .any(|(latest, _)| matches!(latest.state, State::Running { .. }));
        match (any_running, self.running.is_some()) {
            (true, false) => self.running = Some(crate::metrics::RunningPod::start()),
            (false, true) => self.running = None,
            _ => {}
        }
    }

    /// Runs until the pod is gone or the agent stops (then containers keep running: the
    /// next agent adopts them).
    async fn run(
        mut self,
        mut pod_rx: watch::Receiver<Option<Pod>>,
        poke: Arc<Notify>,
        shutdown: CancellationToken,
    ) {
        let mut wake = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = pod_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = poke.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
            let pod = pod_rx.borrow_and_update().clone();
            let next = match pod {
                Some(pod) => self.sync(&pod).await,
                None => self.remove_everything().await,
            };
            match next {
                Next::Done => return,
                Next::At(at) => wake = at,
            }
        }
    }

    /// The pod was deleted from the API (or never should have run here): everything of it
    /// goes at once.
    async fn remove_everything(&mut self) -> Next {
        match self.remove_all_of(&self.uid.clone()).await {
            Ok(()) => Next::Done,
            Err(e) => {
                tracing::warn!(pod_uid = %self.uid, error = %e, "removing a deleted pod's containers; retrying");
                Next::At(Instant::now() + SETUP_RETRY)
            }
        }
    }

    async fn remove_all_of(&self, uid: &str) -> Result<(), String> {
        remove_pod_leftovers(&self.shared, uid).await
    }

    /// One level-triggered pass.
    async fn sync(&mut self, pod: &Pod) -> Next {
        let now = Instant::now();
        let mut next = now + RESYNC;
        let records = match list_pod(&self.shared.runtime, &self.uid).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(pod = %name_of(pod), error = %e, "listing the pod's containers");
                return Next::At(now + SETUP_RETRY);
            }
        };
        let by_name = self.group(records).await;
        if !std::mem::replace(&mut self.synced, true) && all_running(pod, &by_name) {
            // Adopted (the agent restarted): the pod did not start now.
            self.starting_since = None;
        }
        let spec = pod.spec.clone().unwrap_or_default();

        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(pod, &by_name).await;
        }

        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if finished {
            // A finished pod never runs again; its containers stay for their logs, its
            // network goes.
            self.stop_running(pod, &by_name, 0).await;
            self.running = None;
            if let Some(network) = &self.shared.network
                && let Err(e) = network.teardown(&self.uid).await
            {
                tracing::warn!(pod = %name_of(pod), error = %e, "releasing a finished pod's network");
            }
            self.network_ips = None;
            return Next::At(now + RESYNC);
        }

        // The pod's network and volumes come first; without them no container starts.
        let host_network = spec.host_network.unwrap_or(false);
        let mut ready_to_start = true;
        if !host_network && self.network_ips.is_none() {
            match &self.shared.network {
                Some(network) => {
                    let ports = port_mappings(pod);
                    let meta = &pod.metadata;
                    match network
                        .setup(
                            &self.uid,
                            meta.namespace.as_deref().unwrap_or("default"),
                            meta.name.as_deref().unwrap_or(""),
                            &ports,
                        )
                        .await
                    {
                        Ok(net) => self.network_ips = Some(net.ips),
                        Err(e) => {
                            ready_to_start = false;
                            self.shared
                                .event(
                                    pod,
                                    EventType::Warning,
                                    "FailedCreatePodSandBox",
                                    &format!("Failed to create pod sandbox: {e}"),
                                )
                                .await;
                            next = next.min(now + SETUP_RETRY);
                        }
                    }
                }
                None => self.network_ips = Some(Vec::new()),
            }
        }
        let pod_dir = self.shared.pod_dir(&self.uid);
        let lookup = ApiLookup(self.shared.client.clone());
        let mut prepared = volumes::Prepared::new();
        let mut etc_mounts = Vec::new();
        if ready_to_start {
            match volumes::prepare(pod, &pod_dir, &lookup).await {
                Ok(p) => prepared = p,
                Err(e) => {
                    ready_to_start = false;
                    self.shared
                        .event(pod, EventType::Warning, "FailedMount", &e.to_string())
                        .await;
                    next = next.min(now + SETUP_RETRY);
                }
            }
        }
        if ready_to_start {
            let ips = self.network_ips.clone().unwrap_or_default();
            match volumes::etc_files(
                pod,
                &pod_dir,
                &ips,
                &self.shared.dns,
                &self.shared.resolv_conf,
            ) {
                Ok(m) => etc_mounts = m,
                Err(e) => {
                    ready_to_start = false;
                    tracing::warn!(pod = %name_of(pod), error = %e, "writing the pod's /etc files");
                    next = next.min(now + SETUP_RETRY);
                }
            }
        }

        if ready_to_start {
            let ctx = StartContext {
                pod,
                prepared: &prepared,
                etc_mounts: &etc_mounts,
                lookup: &lookup,
            };
            // Init containers one at a time, in order; apps only once all succeeded.
            let mut init_done = true;
            for c in spec.init_containers.iter().flatten() {
                match by_name.get(&c.name).map(|(latest, _)| latest) {
                    Some(r) if matches!(r.state, State::Exited { code: 0, .. }) => continue,
                    Some(r) if matches!(r.state, State::Running { .. }) => {
                        init_done = false;
                        break;
                    }
                    Some(r) if matches!(r.state, State::Exited { .. } | State::Created) => {
                        init_done = false;
                        if restart_policy != "Never"
                            && let Some(at) = self.start(&ctx, c, true, Some(r)).await
                        {
                            next = next.min(at);
                        }
                        break;
                    }
                    _ => {
                        init_done = false;
                        if let Some(at) = self.start(&ctx, c, true, None).await {
                            next = next.min(at);
                        }
                        break;
                    }
                }
            }
            if init_done {
                for c in &spec.containers {
                    let latest = by_name.get(&c.name).map(|(latest, _)| latest);
                    let start = match latest {
                        None => true,
                        Some(r) => match &r.state {
                            State::Running { .. } => {
                                if r.hash != container_hash(c) {
                                    // The spec changed under a running container: replace it.
                                    self.shared
                                        .event(
                                            pod,
                                            EventType::Normal,
                                            "Killing",
                                            &format!("Container {} definition changed, will be restarted", c.name),
                                        )
                                        .await;
                                    self.stop(pod, r, grace_period(pod)).await;
                                }
                                self.waiting.remove(&c.name);
                                false
                            }
                            State::Created => true,
                            State::Exited { code, .. } => match restart_policy.as_str() {
                                "Always" => true,
                                "OnFailure" => *code != 0,
                                _ => false,
                            },
                        },
                    };
                    if start {
                        if let Some(at) = self.start(&ctx, c, false, latest).await {
                            next = next.min(at);
                        }
                    } else if !matches!(latest.map(|r| &r.state), Some(State::Running { .. })) {
                        self.waiting.remove(&c.name);
                    }
                }
            }
        }

        // Any container killed for a changed spec: make sure SIGKILL follows.
        if let Some(at) = self.kill_overdue(&by_name).await {
            next = next.min(at);
        }
        let records = list_pod(&self.shared.runtime, &self.uid)
            .await
            .unwrap_or_default();
        let (by_name, _) = split_attempts(records);
        self.observe_containers(pod, &by_name);
        if let Some(at) = self.run_probes(pod, &by_name).await {
            next = next.min(at);
        }
        self.write_status(pod, by_name, false).await;
        Next::At(next)
    }

    /// Runs the probes that are due of every running app container and acts on their
    /// verdicts: readiness feeds the Ready condition, a failed liveness or startup probe
    /// stops the container (its restart policy then restarts it). Returns when the next
    /// probe is due. Probes start afresh with each new container, as kubelet's do.
    async fn run_probes(&mut self, pod: &Pod, by_name: &Attempts) -> Option<Instant> {
        let spec = pod.spec.clone().unwrap_or_default();
        let running: HashMap<&str, &Record> = by_name
            .values()
            .filter(|(r, _)| matches!(r.state, State::Running { .. }) && !r.init)
            .map(|(r, _)| (r.name.as_str(), r))
            .collect();
        // Probes of containers that are gone or replaced go with them.
        self.probes
            .retain(|name, (id, _)| running.get(name.as_str()).is_some_and(|r| r.id == *id));
        let now = Instant::now();
        let mut soonest: Option<Instant> = None;
        let pod_ip = self
            .network_ips
            .as_ref()
            .and_then(|ips| ips.first().copied());
        for c in &spec.containers {
            let Some(record) = running.get(c.name.as_str()) else {
                continue;
            };
            if self.stopping.contains_key(&record.id) {
                continue;
            }
            let (_, probes) = self.probes.entry(c.name.clone()).or_insert_with(|| {
                // An adopted container's probes count from when it started.
                let started = record
                    .started_at
                    .and_then(|t| Timestamp::now().duration_since(t).try_into().ok())
                    .and_then(|age: Duration| now.checked_sub(age))
                    .unwrap_or(now);
                (record.id.clone(), ContainerProbes::new(c, started))
            });
            let mut failed: Option<(ProbeKind, String)> = None;
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                // Liveness and readiness wait until the startup probe has passed.
                if kind != ProbeKind::Startup && !probes.started() {
                    continue;
                }
                let Some((definition, state)) = probes.get(c, kind) else {
                    continue;
                };
                if !state.is_due(Instant::now()) {
                    if let Some(at) = state.due(Instant::now()) {
                        soonest = Some(soonest.map_or(at, |s| s.min(at)));
                    }
                    continue;
                }
                let target = ProbeTarget {
                    containerd: self.shared.runtime.containerd(),
                    container_id: &record.id,
                    pod_ip,
                    host_ip: self.shared.host_ip,
                    container: c,
                };
                let result = probes::probe(&definition, &target).await;
                // Upstream's per-run events; an errored run is only logged.
                let event = match &result {
                    ProbeResult::Failure(m) => {
                        Some(("Unhealthy", format!("{kind} probe failed: {m}")))
                    }
                    ProbeResult::Warning(m) => {
                        Some(("ProbeWarning", format!("{kind} probe warning: {m}")))
                    }
                    ProbeResult::Unknown(message) => {
                        tracing::debug!(pod = %name_of(pod), container = %c.name, %kind, %message, "probe errored");
                        None
                    }
                    ProbeResult::Success => None,
                };
                if let Some((reason, message)) = event {
                    self.shared
                        .event(pod, EventType::Warning, reason, &message)
                        .await;
                }
                let Some(state) = probes.get_mut(kind) else {
                    continue;
                };
                let transition = state.record(result, Instant::now());
                if let (
                    Some(Transition::Failed(message)),
                    ProbeKind::Liveness | ProbeKind::Startup,
                ) = (transition, kind)
                {
                    failed = Some((kind, message));
                    break;
                }
                if let Some(at) = state.due(Instant::now()) {
                    soonest = Some(soonest.map_or(at, |s| s.min(at)));
                }
            }
            if let Some((kind, _)) = failed {
                let what = if kind == ProbeKind::Liveness {
                    "liveness"
                } else {
                    "startup"
                };
                self.shared
                    .event(
                        pod,
                        EventType::Normal,
                        "Killing",
                        &format!(
                            "Container {} failed {what} probe, will be restarted",
                            c.name
                        ),
                    )
                    .await;
                let grace = c
                    .liveness_probe
                    .as_ref()
                    .filter(|_| kind == ProbeKind::Liveness)
                    .or(c.startup_probe.as_ref())
                    .and_then(|p| p.termination_grace_period_seconds)
                    .unwrap_or_else(|| grace_period(pod));
                let record = (*record).clone();
                self.signal_stop(pod, &record, grace).await;
                soonest = Some(Instant::now() + Duration::from_millis(200));
            }
        }
        soonest
    }

    /// Groups records by container name into (latest, previous) and removes older attempts.
    async fn group(&self, records: Vec<Record>) -> HashMap<String, (Record, Option<Record>)> {
        let (out, older) = split_attempts(records);
        // Only the newest two attempts are kept (for `kubectl logs --previous`).
        for r in older {
            if matches!(r.state, State::Running { .. }) {
                continue;
            }
            if let Err(e) = self.shared.runtime.remove(&r.id).await {
                tracing::debug!(container = %r.id, error = %e, "removing an old attempt");
            }
            let _ = tokio::fs::remove_file(&r.log_path).await;
        }
        out
    }

    /// Starts a container (a new attempt after `previous`), honouring back-off. Returns
    /// when the pod should be synced again for it, if it waits.
    async fn start(
        &mut self,
        ctx: &StartContext<'_>,
        c: &Container,
        init: bool,
        previous: Option<&Record>,
    ) -> Option<Instant> {
        let pod = ctx.pod;
        let now = Instant::now();
        if let Some(prev) = previous
            && let State::Exited { .. } = prev.state
        {
            let ran_long = match (prev.started_at, exit_time(prev)) {
                (Some(s), Some(f)) => f.duration_since(s).unsigned_abs() >= BACKOFF_RESET_AFTER,
                _ => false,
            };
            if ran_long {
                self.restart_backoff.remove(&c.name);
            }
            if let Some(b) = self.restart_backoff.get(&c.name) {
                let until = b.last + b.delay;
                if now < until {
                    let message = format!(
                        "back-off {} restarting failed container={} pod={}",
                        human(b.delay),
                        c.name,
                        pod_id(pod)
                    );
                    if self.waiting.get(&c.name).map(|w| w.0.as_str()) != Some("CrashLoopBackOff") {
                        self.shared
                            .event(
                                pod,
                                EventType::Warning,
                                "BackOff",
                                &format!(
                                    "Back-off restarting failed container {} in pod {}",
                                    c.name,
                                    pod_id(pod)
                                ),
                            )
                            .await;
                    }
                    self.waiting
                        .insert(c.name.clone(), ("CrashLoopBackOff".into(), message));
                    return Some(until);
                }
            }
            let delay = match self.restart_backoff.get(&c.name) {
                None => BACKOFF_INITIAL,
                Some(b) => (b.delay * 2).min(BACKOFF_MAX),
            };
            self.restart_backoff
                .insert(c.name.clone(), Backoff { delay, last: now });
        }
        let attempt = previous.map(|p| p.attempt + 1).unwrap_or(0);

        let image = match self.ensure_image(pod, c).await {
            Ok(image) => image,
            Err(at) => return Some(at),
        };
        let env = match env::resolve(pod, c, ctx.lookup).await {
            Ok(env) => env,
            Err(e) => return Some(self.config_error(pod, c, e.to_string()).await),
        };
        let mut mounts = match volumes::container_mounts(c, ctx.prepared) {
            Ok(m) => m,
            Err(e) => return Some(self.config_error(pod, c, e.to_string()).await),
        };
        // The pod's /etc files, unless the container mounts something there itself.
        for m in ctx.etc_mounts {
            if !mounts
                .iter()
                .any(|have| have.destination() == m.destination())
            {
                mounts.push(m.clone());
            }
        }
        let id = runtime::container_id(&self.uid, &c.name, attempt);
        let netns = match (
            &self.shared.network,
            pod.spec.as_ref().and_then(|s| s.host_network),
        ) {
            (_, Some(true)) | (None, _) => None,
            (Some(n), _) => Some(n.netns_path(&self.uid)),
        };
        let runtime_spec = match spec::runtime_spec(&SpecInput {
            pod,
            container: c,
            image: &image.config,
            env,
            mounts,
            netns,
            cgroups_path: runtime::cgroups_path(&self.uid, &id),
        }) {
            Ok(s) => s,
            Err(e) => {
                let message = e.to_string();
                self.shared
                    .event(
                        pod,
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {message}"),
                    )
                    .await;
                self.waiting
                    .insert(c.name.clone(), ("CreateContainerError".into(), message));
                return Some(Instant::now() + SETUP_RETRY.max(Duration::from_secs(10)));
            }
        };
        let meta = &pod.metadata;
        let container_labels = BTreeMap::from([
            (labels::POD_UID.to_owned(), self.uid.clone()),
            (
                labels::POD_NAME.to_owned(),
                meta.name.clone().unwrap_or_default(),
            ),
            (
                labels::POD_NAMESPACE.to_owned(),
                meta.namespace.clone().unwrap_or_default(),
            ),
            (labels::CONTAINER_NAME.to_owned(), c.name.clone()),
            (
                labels::KIND.to_owned(),
                if init { "init" } else { "app" }.to_owned(),
            ),
            (labels::ATTEMPT.to_owned(), attempt.to_string()),
            (labels::HASH.to_owned(), container_hash(c)),
            (labels::IMAGE_ID.to_owned(), image.digest.clone()),
        ]);
        let log_path = self.shared.log_path(pod, &c.name, attempt);
        let run = self
            .shared
            .runtime
            .run(RunRequest {
                id: id.clone(),
                labels: container_labels,
                image: &image.name,
                chain_id: &image.chain_id,
                spec: &runtime_spec,
                log_path: &log_path,
                log_driver: &self.shared.log_driver,
            })
            .await;
        match run {
            Ok(_) => {
                self.waiting.remove(&c.name);
                self.shared
                    .event(
                        pod,
                        EventType::Normal,
                        "Created",
                        &format!("Created container: {}", c.name),
                    )
                    .await;
                self.shared
                    .event(
                        pod,
                        EventType::Normal,
                        "Started",
                        &format!("Started container {}", c.name),
                    )
                    .await;
                None
            }
            Err(e) => {
                let message = e.to_string();
                tracing::info!(pod = %name_of(pod), container = %c.name, error = %message, "starting a container failed");
                if let Err(e) = self
                    .shared
                    .runtime
                    .mark_failed(&id, "StartError", &message)
                    .await
                {
                    tracing::warn!(container = %id, error = %e, "recording a failed start");
                }
                self.shared
                    .event(
                        pod,
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {message}"),
                    )
                    .await;
                // The back-off above applies to the next attempt as to a crash.
                self.restart_backoff
                    .entry(c.name.clone())
                    .or_insert(Backoff {
                        delay: BACKOFF_INITIAL,
                        last: Instant::now(),
                    });
                Some(Instant::now())
            }
        }
    }

    /// A configuration problem (missing ConfigMap key, Secret, volume): the container waits
    /// with CreateContainerConfigError and the pod is retried soon, as kubelet does.
    async fn config_error(&mut self, pod: &Pod, c: &Container, message: String) -> Instant {
        if self.waiting.get(&c.name).map(|w| &w.1) != Some(&message) {
            self.shared
                .event(
                    pod,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                )
                .await;
        }
        self.waiting.insert(
            c.name.clone(),
            ("CreateContainerConfigError".into(), message),
        );
        Instant::now() + SETUP_RETRY.max(Duration::from_secs(5))
    }

    /// The image per imagePullPolicy; Err(when to retry) with the container's waiting
    /// reason set on failure.
    async fn ensure_image(&mut self, pod: &Pod, c: &Container) -> Result<ImageInfo, Instant> {
        let name = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            let latest = !name.contains('@')
                && name
                    .rsplit('/')
                    .next()
                    .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"));
            if latest { "Always" } else { "IfNotPresent" }.to_owned()
        });
        let present = match self.shared.images.get(&name).await {
            Ok(p) => p,
            Err(e) => {
                let message = e.to_string();
                self.waiting
                    .insert(c.name.clone(), ("InvalidImageName".into(), message.clone()));
                self.shared
                    .event(pod, EventType::Warning, "InspectFailed", &message)
                    .await;
                return Err(Instant::now() + RESYNC);
            }
        };
        match (policy.as_str(), present) {
            ("Never", Some(image)) | ("IfNotPresent", Some(image)) => {
                if self.waiting.contains_key(&c.name) || !self.pull_backoff.contains_key(&name) {
                    self.shared
                        .event(
                            pod,
                            EventType::Normal,
                            "Pulled",
                            &format!("Container image \"{name}\" already present on machine"),
                        )
                        .await;
                    self.pull_backoff.insert(
                        name.clone(),
                        Backoff {
                            delay: Duration::ZERO,
                            last: Instant::now(),
                        },
                    );
                }
                return Ok(image);
            }
            ("Never", None) => {
                let message =
                    format!("Container image \"{name}\" is not present with pull policy of Never");
                self.waiting.insert(
                    c.name.clone(),
                    ("ErrImageNeverPull".into(), message.clone()),
                );
                self.shared
                    .event(pod, EventType::Warning, "ErrImageNeverPull", &message)
                    .await;
                return Err(Instant::now() + RESYNC);
            }
            _ => {}
        }
        let now = Instant::now();
        if let Some(b) = self
            .pull_backoff
            .get(&name)
            .copied()
            .filter(|b| !b.delay.is_zero())
            && now < b.last + b.delay
        {
            {
                let message = format!("Back-off pulling image \"{name}\"");
                if self.waiting.get(&c.name).map(|w| w.0.as_str()) != Some("ImagePullBackOff") {
                    self.shared
                        .event(pod, EventType::Normal, "BackOff", &message)
                        .await;
                }
                self.waiting
                    .insert(c.name.clone(), ("ImagePullBackOff".into(), message));
                return Err(b.last + b.delay);
            }
        }
        self.shared
            .event(
                pod,
                EventType::Normal,
                "Pulling",
                &format!("Pulling image \"{name}\""),
            )
            .await;
        let auth = self.registry_auth(pod, &name).await;
        let started = std::time::Instant::now();
        match self.shared.images.pull(&name, &auth).await {
            Ok(image) => {
                let took = started.elapsed();
                self.shared
                    .event(
                        pod,
                        EventType::Normal,
                        "Pulled",
                        &format!(
                            "Successfully pulled image \"{name}\" in {took:.3?} ({took:.3?} including waiting). Image size: {} bytes.",
                            image.size
                        ),
                    )
                    .await;
                self.pull_backoff.insert(
                    name,
                    Backoff {
                        delay: Duration::ZERO,
                        last: Instant::now(),
                    },
                );
                Ok(image)
            }
            Err(e) => {
                let message = format!("Failed to pull image \"{name}\": {e}");
                self.shared
                    .event(pod, EventType::Warning, "Failed", &message)
                    .await;
                self.shared
                    .event(pod, EventType::Warning, "Failed", "Error: ErrImagePull")
                    .await;
                let delay = match self.pull_backoff.get(&name).filter(|b| !b.delay.is_zero()) {
                    None => PULL_BACKOFF_INITIAL,
                    Some(b) => (b.delay * 2).min(BACKOFF_MAX),
                };
                self.pull_backoff.insert(name, Backoff { delay, last: now });
                self.waiting
                    .insert(c.name.clone(), ("ErrImagePull".into(), message));
                Err(now + delay)
            }
        }
    }

    /// Credentials from the pod's imagePullSecrets for the image's registry, if any.
    async fn registry_auth(&self, pod: &Pod, image: &str) -> RegistryAuth {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), namespace);
        for r in pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
        {
            let Ok(Some(secret)) = api.get_opt(&r.name).await else {
                continue;
            };
            let Some(config) = secret
                .data
                .as_ref()
                .and_then(|d| d.get(".dockerconfigjson"))
            else {
                continue;
            };
            if let Some(auth) = credentials_for(&config.0, image) {
                return auth;
            }
        }
        RegistryAuth::Anonymous
    }

    /// Deletion: stop every container within the grace period (SIGTERM, SIGKILL at the
    /// deadline), then remove containers, network and files and delete the pod for good.
    async fn terminate(
        &mut self,
        pod: &Pod,
        by_name: &HashMap<String, (Record, Option<Record>)>,
    ) -> Next {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or_else(|| grace_period(pod))
            .max(0);
        let running = self.stop_running(pod, by_name, grace).await;
        if running {
            self.write_status(pod, by_name.clone(), true).await;
            let next = self
                .kill_overdue(by_name)
                .await
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            return Next::At(next.min(Instant::now() + Duration::from_secs(1)));
        }
        if let Err(e) = remove_pod_leftovers(&self.shared, &self.uid).await {
            tracing::warn!(pod = %name_of(pod), error = %e, "removing a deleted pod's containers");
            return Next::At(Instant::now() + SETUP_RETRY);
        }
        self.write_status(pod, HashMap::new(), true).await;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api
            .delete(pod.metadata.name.as_deref().unwrap_or(""), &params)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %name_of(pod), error = %e, "deleting a terminated pod");
                return Next::At(Instant::now() + SETUP_RETRY);
            }
        }
        // The watch's Delete ends the worker; until then nothing is left to do.
        Next::At(Instant::now() + RESYNC)
    }

    /// Signals every running container to stop (once); true while any still runs.
    async fn stop_running(
        &mut self,
        pod: &Pod,
        by_name: &HashMap<String, (Record, Option<Record>)>,
        grace_seconds: i64,
    ) -> bool {
        let mut any = false;
        for (latest, _) in by_name.values() {
            if matches!(latest.state, State::Running { .. } | State::Created) {
                any = true;
                if !self.stopping.contains_key(&latest.id) {
                    self.stop(pod, latest, grace_seconds).await;
                }
            }
        }
        any
    }

    async fn stop(&mut self, pod: &Pod, r: &Record, grace_seconds: i64) {
        self.shared
            .event(
                pod,
                EventType::Normal,
                "Killing",
                &format!("Stopping container {}", r.name),
            )
            .await;
        self.signal_stop(pod, r, grace_seconds).await;
    }

    /// Stops a container within `grace_seconds`: its preStop hook (if any), then SIGTERM
    /// (SIGKILL at once for no grace), and SIGKILL when the grace period is over
    /// ([`PodWorker::kill_overdue`]).
    async fn signal_stop(&mut self, pod: &Pod, r: &Record, grace_seconds: i64) {
        let deadline = Instant::now() + Duration::from_secs(grace_seconds.max(0) as u64);
        self.stopping.insert(r.id.clone(), deadline);
        let container = pod.spec.as_ref().and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == r.name)
        });
        if let Some(hook) = container
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.pre_stop.as_ref())
            .filter(|_| grace_seconds > 0)
            && let Some(c) = container
        {
            let budget = deadline.saturating_duration_since(Instant::now());
            if let Err(message) = self.run_hook(hook, r, c, budget).await {
                self.shared
                    .event(
                        pod,
                        EventType::Warning,
                        "FailedPreStopHook",
                        &format!("PreStopHook failed: {message}"),
                    )
                    .await;
            }
        }
        let signal = if grace_seconds == 0 {
            nix::sys::signal::Signal::SIGKILL
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        if let Err(e) = self.shared.runtime.kill(&r.id, signal as u32).await {
            tracing::warn!(container = %r.id, error = %e, "stopping a container");
        }
    }

    /// Runs a lifecycle hook (exec, httpGet, tcpSocket or sleep) within `budget`.
    async fn run_hook(
        &self,
        hook: &k8s_openapi::api::core::v1::LifecycleHandler,
        r: &Record,
        c: &Container,
        budget: Duration,
    ) -> Result<(), String> {
        if let Some(sleep) = &hook.sleep {
            let wanted = Duration::from_secs(sleep.seconds.max(0) as u64);
            tokio::time::sleep(wanted.min(budget)).await;
            return Ok(());
        }
        if let Some(action) = &hook.exec {
            let argv = action.command.clone().unwrap_or_default();
            return match exec::exec(self.shared.runtime.containerd(), &r.id, &argv, budget).await {
                Ok(out) if out.exit_code == 0 => Ok(()),
                Ok(out) => Err(format!(
                    "command {:?} exited with {}: {}",
                    argv.join(" "),
                    out.exit_code,
                    String::from_utf8_lossy(&out.output).trim_end()
                )),
                Err(e) => Err(e.to_string()),
            };
        }
        // httpGet and tcpSocket handlers behave as the probes of the same kind.
        let probe = k8s_openapi::api::core::v1::Probe {
            http_get: hook.http_get.clone(),
            tcp_socket: hook.tcp_socket.clone(),
            timeout_seconds: Some(budget.as_secs().clamp(1, i32::MAX as u64) as i32),
            ..Default::default()
        };
        let target = ProbeTarget {
            containerd: self.shared.runtime.containerd(),
            container_id: &r.id,
            pod_ip: self
                .network_ips
                .as_ref()
                .and_then(|ips| ips.first().copied()),
            host_ip: self.shared.host_ip,
            container: c,
        };
        match probes::probe(&probe, &target).await {
            ProbeResult::Success | ProbeResult::Warning(_) => Ok(()),
            ProbeResult::Failure(m) | ProbeResult::Unknown(m) => Err(m),
        }
    }

    /// SIGKILL for containers past their deadline; the soonest pending deadline.
    async fn kill_overdue(
        &mut self,
        by_name: &HashMap<String, (Record, Option<Record>)>,
    ) -> Option<Instant> {
        let now = Instant::now();
        let running: HashSet<&str> = by_name
            .values()
            .filter(|(r, _)| matches!(r.state, State::Running { .. }))
            .map(|(r, _)| r.id.as_str())
            .collect();
        self.stopping.retain(|id, _| running.contains(id.as_str()));
        let mut soonest = None;
        for (id, deadline) in &self.stopping {
            if *deadline <= now {
                if let Err(e) = self
                    .shared
                    .runtime
                    .kill(id, nix::sys::signal::Signal::SIGKILL as u32)
                    .await
                {
                    tracing::warn!(container = %id, error = %e, "killing a container past its grace period");
                }
            } else {
                soonest = Some(soonest.map_or(*deadline, |s: Instant| s.min(*deadline)));
            }
        }
        soonest
    }

    /// Computes the status and patches it when it changed.
    async fn write_status(
        &mut self,
        pod: &Pod,
        records: HashMap<String, (Record, Option<Record>)>,
        terminating: bool,
    ) {
        let observed = Observed {
            records,
            waiting: self.waiting.clone(),
            probe_ready: self
                .probes
                .iter()
                .map(|(name, (_, p))| (name.clone(), p.ready()))
                .collect(),
            started: self
                .probes
                .iter()
                .map(|(name, (_, p))| (name.clone(), p.started()))
                .collect(),
            network_ready: self.network_ips.is_some(),
            pod_ips: self.network_ips.clone().unwrap_or_default(),
            host_ip: self.shared.host_ip,
            terminating,
        };
        let mut computed = status::pod_status(pod, &observed, Timestamp::now());
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
            && let Some(ip) = self.shared.host_ip
        {
            computed.pod_ip = Some(ip.to_string());
            computed.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
                ip: ip.to_string(),
            }]);
        }
        let value = match serde_json::to_value(&computed) {
            Ok(v) => v,
            Err(_) => return,
        };
        let current = pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        if current.as_ref() == Some(&value) || self.last_status.as_ref() == Some(&value) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let patch = json!({ "status": value });
        match api
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or(""),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.last_status = Some(value),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(pod = %name_of(pod), error = %e, "writing pod status"),
        }
    }
}

/// The probe states of one running container.
struct ContainerProbes {
    liveness: Option<ProbeState>,
    readiness: Option<ProbeState>,
    startup: Option<ProbeState>,
}

impl ContainerProbes {
    fn new(c: &Container, started: Instant) -> Self {
        ContainerProbes {
            liveness: c
                .liveness_probe
                .as_ref()
                .map(|p| ProbeState::new(p, ProbeKind::Liveness, started)),
            readiness: c
                .readiness_probe
                .as_ref()
                .map(|p| ProbeState::new(p, ProbeKind::Readiness, started)),
            startup: c
                .startup_probe
                .as_ref()
                .map(|p| ProbeState::new(p, ProbeKind::Startup, started)),
        }
    }

    /// Whether the container counts as started: no startup probe, or it passed.
    fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(ProbeState::verdict)
    }

    /// Ready as far as probes tell: started, and the readiness probe (if any) passed.
    fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(ProbeState::verdict)
    }

    fn get_mut(&mut self, kind: ProbeKind) -> Option<&mut ProbeState> {
        match kind {
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
            ProbeKind::Startup => self.startup.as_mut(),
        }
    }

    /// The probe's definition and state.
    fn get(
        &self,
        c: &Container,
        kind: ProbeKind,
    ) -> Option<(k8s_openapi::api::core::v1::Probe, &ProbeState)> {
        let (definition, state) = match kind {
            ProbeKind::Liveness => (c.liveness_probe.as_ref(), self.liveness.as_ref()),
            ProbeKind::Readiness => (c.readiness_probe.as_ref(), self.readiness.as_ref()),
            ProbeKind::Startup => (c.startup_probe.as_ref(), self.startup.as_ref()),
        };
        Some((definition?.clone(), state?))
    }
}

/// What starting a container needs of the pod-level set-up.
struct StartContext<'a> {
    pod: &'a Pod,
    prepared: &'a volumes::Prepared,
    etc_mounts: &'a [oci_spec::runtime::Mount],
    lookup: &'a ApiLookup,
}

/// Per container name, its newest attempt and the one before it.
type Attempts = HashMap<String, (Record, Option<Record>)>;

/// Whether every app container of the pod has a running attempt.
fn all_running(pod: &Pod, by_name: &Attempts) -> bool {
    let containers = pod
        .spec
        .as_ref()
        .map_or(&[][..], |s| s.containers.as_slice());
    !containers.is_empty()
        && containers.iter().all(|c| {
            by_name
                .get(&c.name)
                .is_some_and(|(latest, _)| matches!(latest.state, State::Running { .. }))
        })
}

/// Per container name the newest attempt and the one before it; the older ones apart.
fn split_attempts(records: Vec<Record>) -> (Attempts, Vec<Record>) {
    let mut sorted = records;
    sorted.sort_by_key(|r| std::cmp::Reverse(r.attempt));
    let mut out: HashMap<String, (Record, Option<Record>)> = HashMap::new();
    let mut older = Vec::new();
    for r in sorted {
        match out.get_mut(&r.name) {
            None => {
                out.insert(r.name.clone(), (r, None));
            }
            Some((_, prev @ None)) => *prev = Some(r),
            Some(_) => older.push(r),
        }
    }
    (out, older)
}

/// The pod's containers (all attempts kept).
async fn list_pod(rt: &Runtime, uid: &str) -> Result<Vec<Record>, runtime::RuntimeError> {
    Ok(rt
        .list_pod(uid)
        .await?
        .into_iter()
        .filter(|r| r.pod_uid == uid)
        .collect())
}

/// Removes everything of a pod: containers (killed), network, volumes and logs.
async fn remove_pod_leftovers(shared: &Shared, uid: &str) -> Result<(), String> {
    let records = list_pod(&shared.runtime, uid)
        .await
        .map_err(|e| e.to_string())?;
    for r in records {
        shared
            .runtime
            .remove(&r.id)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(dir) = r.log_path.parent().and_then(Path::parent) {
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
    }
    if let Some(network) = &shared.network {
        network.teardown(uid).await.map_err(|e| e.to_string())?;
    }
    let dir = shared.pod_dir(uid);
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", dir.display())),
    }
    Ok(())
}

/// A hash of what makes a container: a different hash means a new container.
pub fn container_hash(c: &Container) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(c).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&bytes)[..8])
}

fn grace_period(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

fn exit_time(r: &Record) -> Option<Timestamp> {
    match &r.state {
        State::Exited { finished_at, .. } => *finished_at,
        _ => None,
    }
}

fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p
                    .protocol
                    .clone()
                    .unwrap_or_else(|| "TCP".into())
                    .to_ascii_lowercase(),
                host_ip: p.host_ip.clone().filter(|h| !h.is_empty()),
            })
        })
        .collect()
}

fn name_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// `name_namespace(uid)`, as kubelet names a pod in messages.
fn pod_id(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// `10s`, `1m20s`, `5m0s` as Go prints durations.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Follows the node's pods and runs a worker per pod.
pub struct PodManager {
    shared: Arc<Shared>,
}

struct WorkerHandle {
    pod_tx: watch::Sender<Option<Pod>>,
    poke: Arc<Notify>,
}

impl PodManager {
    pub fn new(shared: Shared) -> Self {
        PodManager {
            shared: Arc::new(shared),
        }
    }

    /// Runs until `shutdown`; containers are left running for the next agent to adopt.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), super::AgentError> {
        let workers: Arc<Mutex<HashMap<String, WorkerHandle>>> = Arc::default();
        let tracker = TaskTracker::new();

        // containerd events → the pod whose UID starts the container ID.
        let events_task = {
            let shared = self.shared.clone();
            let workers = workers.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { route_events(shared, workers, shutdown).await })
        };

        let api: Api<Pod> = Api::all(self.shared.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.shared.node_name));
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
        let mut listing: HashSet<String> = HashSet::new();
        let mut cleaned = false;
        let mut resync = tokio::time::interval(RESYNC);
        resync.tick().await;
        let rotation = {
            let root = self.shared.data_dir.join("logs");
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(LOG_ROTATION_CHECK) => {}
                    }
                    let root = root.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        logs::rotate_all(&root, logs::MAX_SIZE, logs::MAX_FILES)
                    })
                    .await;
                }
            })
        };
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = resync.tick() => {
                    // The safety net: every worker re-checks its pod.
                    for w in lock(&workers).values() {
                        w.poke.notify_one();
                    }
                    continue;
                }
                e = stream.try_next() => e,
            };
            let event = match event {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "watching the node's pods");
                    continue;
                }
            };
            match event {
                watcher::Event::Init => listing.clear(),
                watcher::Event::InitApply(pod) => {
                    if let Some(uid) = pod.metadata.uid.clone() {
                        listing.insert(uid);
                    }
                    self.apply(&workers, &tracker, pod, &shutdown);
                }
                watcher::Event::Apply(pod) => self.apply(&workers, &tracker, pod, &shutdown),
                watcher::Event::Delete(pod) => {
                    if let Some(uid) = pod.metadata.uid.as_deref()
                        && let Some(w) = lock(&workers).remove(uid)
                    {
                        let _ = w.pod_tx.send(None);
                    }
                }
                watcher::Event::InitDone => {
                    // Pods that disappeared during a re-list are gone.
                    let gone: Vec<String> = lock(&workers)
                        .keys()
                        .filter(|uid| !listing.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        if let Some(w) = lock(&workers).remove(&uid) {
                            let _ = w.pod_tx.send(None);
                        }
                    }
                    if !cleaned {
                        cleaned = true;
                        self.remove_orphans(&listing).await;
                    }
                }
            }
        }
        events_task.abort();
        rotation.abort();
        // Workers end on shutdown; nothing is stopped.
        lock(&workers).clear();
        tracker.close();
        tracker.wait().await;
        Ok(())
    }

    fn apply(
        &self,
        workers: &Arc<Mutex<HashMap<String, WorkerHandle>>>,
        tracker: &TaskTracker,
        pod: Pod,
        shutdown: &CancellationToken,
    ) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut map = lock(workers);
        if let Some(w) = map.get(&uid) {
            let _ = w.pod_tx.send(Some(pod));
            return;
        }
        let (pod_tx, pod_rx) = watch::channel(Some(pod));
        let poke = Arc::new(Notify::new());
        let worker = PodWorker::new(self.shared.clone(), uid.clone());
        tracker.spawn(worker.run(pod_rx, poke.clone(), shutdown.child_token()));
        map.insert(uid, WorkerHandle { pod_tx, poke });
    }

    /// Containers, networks and pod directories of pods no longer bound here (deleted
    /// while the agent was down) are removed once, after the first full list.
    async fn remove_orphans(&self, live: &HashSet<String>) {
        let mut uids: HashSet<String> = HashSet::new();
        match self.shared.runtime.list().await {
            Ok(records) => uids.extend(records.into_iter().map(|r| r.pod_uid)),
            Err(e) => tracing::warn!(error = %e, "listing containers for clean-up"),
        }
        if let Some(network) = &self.shared.network {
            match network.pods().await {
                Ok(pods) => uids.extend(pods),
                Err(e) => tracing::warn!(error = %e, "listing pod networks for clean-up"),
            }
        }
        if let Ok(mut dir) = tokio::fs::read_dir(self.shared.data_dir.join("pods")).await {
            while let Ok(Some(entry)) = dir.next_entry().await {
                uids.insert(entry.file_name().to_string_lossy().into_owned());
            }
        }
        for uid in uids.difference(live) {
            if uid.is_empty() {
                continue;
            }
            tracing::info!(pod_uid = %uid, "removing what is left of a pod deleted while the agent was away");
            if let Err(e) = remove_pod_leftovers(&self.shared, uid).await {
                tracing::warn!(pod_uid = %uid, error = %e, "removing a deleted pod's leftovers");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Held only for map operations, never across an await; a panic elsewhere cannot leave
    // the map half-updated, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Routes task exits (reaping them first) and OOM kills to their pods' workers; the
/// subscription is re-made if containerd restarts.
async fn route_events(
    shared: Arc<Shared>,
    workers: Arc<Mutex<HashMap<String, WorkerHandle>>>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = match shared.runtime.events().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "subscribing to containerd events; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                _ = shutdown.cancelled() => return,
                item = stream.next() => item,
            };
            let event = match item {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "containerd event stream");
                    break;
                }
                None => break,
            };
            let id = match &event {
                TaskEvent::Exit { container_id } | TaskEvent::Oom { container_id } => {
                    container_id.clone()
                }
            };
            match event {
                TaskEvent::Oom { .. } => {
                    if let Err(e) = shared.runtime.mark_oom(&id).await {
                        tracing::debug!(container = %id, error = %e, "recording an OOM kill");
                    }
                }
                TaskEvent::Exit { .. } => {
                    if let Err(e) = shared.runtime.reap(&id).await {
                        tracing::debug!(container = %id, error = %e, "reaping an exited task");
                    }
                }
            }
            let prefix = runtime::uid_prefix(&id).to_owned();
            let map = lock(&workers);
            if let Some(w) = map
                .iter()
                .find(|(uid, _)| runtime::compact_uid(uid) == prefix)
                .map(|(_, w)| w)
            {
                w.poke.notify_one();
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(human(Duration::from_secs(10)), "10s");
        assert_eq!(human(Duration::from_secs(80)), "1m20s");
        assert_eq!(human(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn container_hash_changes_with_the_spec() {
        let a = Container {
            name: "web".into(),
            image: Some("busybox:1".into()),
            ..Default::default()
        };
        let mut b = a.clone();
        assert_eq!(container_hash(&a), container_hash(&b));
        b.image = Some("busybox:2".into());
        assert_ne!(container_hash(&a), container_hash(&b));
    }
}

//! The scheduler: places each pod that has no node on the most suitable one and binds it
//! through `pods/{name}/binding`, as kube-scheduler does — against the API only, so it runs
//! the same in `moor server` and as `moor scheduler`.
//!
//! Two watches (nodes, pods) feed an incrementally kept [`cache::Cache`] of nodes and
//! placed pods and a [`queue::SchedulingQueue`] of pending pods. One loop takes pods from
//! the queue and decides ([`framework::Profile`] with the [`plugins`]); a decision is
//! *assumed* in the cache at once and its binding sent concurrently, so the loop never
//! waits on the API; a failed binding is rolled back and the pod retried. A pod no node
//! takes waits, marked PodScheduled=False with a FailedScheduling event, until something
//! changes that may help. Nothing is decided before both watches hold a full list, so a
//! fresh leader never double-books a node.
//!
//! It handles pods whose `spec.schedulerName` is its own (`default-scheduler` unless set)
//! and writes nothing else but bindings, the PodScheduled condition and events.

pub mod binder;
pub mod cache;
pub mod framework;
pub mod plugins;
pub mod queue;
pub mod resources;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::controllers::events::Recorder;
use crate::controllers::leader::{LeaderConfig, run_while_leader};
use crate::metrics;
use binder::BindError;
use cache::{Cache, Change, PodInfo};
use framework::{NodeSampling, Profile};
use queue::SchedulingQueue;

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// The Lease (in kube-system) instances elect a leader on.
pub const LEASE_NAME: &str = "moor-scheduler";
/// Bindings and status writes in flight at once; beyond it, deciding waits for the API.
const MAX_IN_FLIGHT: usize = 512;
/// Decisions between yields, so one busy loop does not starve the runtime's other tasks.
const DECISIONS_PER_YIELD: usize = 32;
/// `Scheduled` events waiting to be written. They are written a few at a time behind the
/// bindings, so a burst of decisions is not slowed by as many event writes; beyond this
/// many waiting, new ones are dropped (as upstream's event broadcaster drops when full).
const MAX_PENDING_EVENTS: usize = 16_384;
/// `Scheduled` events written at once.
const EVENT_WRITERS: usize = 8;

/// A placement whose `Scheduled` event is still to be written.
type ScheduledEvent = (Arc<PodInfo>, String);

/// The scheduler and its settings.
#[derive(Clone)]
pub struct Scheduler {
    client: kube::Client,
    name: String,
    sampling: NodeSampling,
    leader: Option<LeaderConfig>,
}

impl Scheduler {
    /// `default-scheduler`, upstream's adaptive node sampling (every node below 100;
    /// `cargo bench --bench scheduler` shows why it pays at thousands), no leader election.
    pub fn new(client: kube::Client) -> Self {
        Scheduler {
            client,
            name: DEFAULT_SCHEDULER_NAME.to_owned(),
            sampling: NodeSampling::Adaptive,
            leader: None,
        }
    }

    /// Handle pods with this `spec.schedulerName`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many nodes each decision looks at.
    pub fn with_sampling(mut self, sampling: NodeSampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Act only while holding this Lease.
    pub fn with_leader_election(mut self, config: LeaderConfig) -> Self {
        self.leader = Some(config);
        self
    }

    /// Run until `shutdown` fires (with leader election: schedule only while leading).
    pub async fn run(self, shutdown: CancellationToken) {
        match self.leader.clone() {
            None => self.run_term(shutdown).await,
            Some(config) => {
                let client = self.client.clone();
                run_while_leader(client, config, shutdown, move |term| {
                    self.clone().run_term(term)
                })
                .await;
            }
        }
    }

    /// One term: fresh cache and queue from full lists, then decide until `term` ends.
    async fn run_term(self, term: CancellationToken) {
        tracing::info!(scheduler = %self.name, "scheduler starting");
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache::new()),
            queue: Mutex::new(SchedulingQueue::new()),
            wake: Notify::new(),
            nodes_synced: AtomicBool::new(false),
            pods_synced: AtomicBool::new(false),
            name: self.name.clone(),
        });
        let tasks = TaskTracker::new();
        tasks.spawn(watch_nodes(
            shared.clone(),
            self.client.clone(),
            term.clone(),
        ));
        tasks.spawn(watch_pods(
            shared.clone(),
            self.client.clone(),
            term.clone(),
        ));
        let profile = Profile::default().with_sampling(self.sampling);
        decide(shared, self.client.clone(), profile, term).await;
        tasks.close();
        tasks.wait().await;
        tracing::info!(scheduler = %self.name, "scheduler stopped");
    }
}

/// State the watches and the deciding loop share.
struct Shared {
    /// std mutexes: held only for in-memory updates and one decision, never across an
    /// await. Never both at once.
    cache: Mutex<Cache>,
    queue: Mutex<SchedulingQueue>,
    /// Something to decide, or something changed.
    wake: Notify,
    nodes_synced: AtomicBool,
    pods_synced: AtomicBool,
    name: String,
}

impl Shared {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self) -> MutexGuard<'_, SchedulingQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn synced(&self) -> bool {
        self.nodes_synced.load(Ordering::Acquire) && self.pods_synced.load(Ordering::Acquire)
    }

    /// Capacity may have appeared: retry parked pods.
    fn may_help(&self) {
        self.queue().move_all(Instant::now());
        self.wake.notify_one();
    }

    /// Whether this scheduler should place the (unassigned) pod.
    fn responsible(&self, pod: &Pod) -> bool {
        let spec = pod.spec.as_ref();
        let scheduler = spec
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER_NAME);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        scheduler == self.name
            && pod.metadata.deletion_timestamp.is_none()
            && !matches!(phase, Some("Succeeded" | "Failed"))
    }

    fn pod_changed(&self, pod: Pod) {
        let info = Arc::new(PodInfo::new(Arc::new(pod)));
        if info.node_name().is_some() {
            self.queue().remove(&info.key);
            if self.cache().upsert_pod(info) == Change::MayHelp {
                self.may_help();
            }
            return;
        }
        if self.cache().is_assumed(&info.key) {
            // Our binding is in flight; its outcome decides what happens next.
            return;
        }
        if self.responsible(&info.pod) {
            self.queue().add_or_update(info, Instant::now());
            self.wake.notify_one();
        } else {
            self.queue().remove(&info.key);
        }
    }

    fn pod_deleted(&self, key: &str) {
        self.queue().remove(key);
        if self.cache().remove_pod(key) {
            self.may_help();
        }
    }
}

/// What a watch reports, re-lists resolved.
enum Seen<K> {
    /// Added or changed (also: listed).
    Changed(K),
    /// Deleted.
    Deleted(K),
    /// A full (re-)list finished; these keys were in it, anything else known is gone.
    Listed(HashSet<String>),
}

/// Follow every object of a kind until `term` ends, handing each change to `on`.
async fn follow<K>(
    api: Api<K>,
    key: fn(&K) -> String,
    term: CancellationToken,
    mut on: impl FnMut(Seen<K>),
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            _ = term.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watching")
            }
            Some(Ok(watcher::Event::Init)) => listed = Some(HashSet::new()),
            Some(Ok(watcher::Event::InitApply(object) | watcher::Event::Apply(object))) => {
                if let Some(listed) = &mut listed {
                    listed.insert(key(&object));
                }
                on(Seen::Changed(object));
            }
            Some(Ok(watcher::Event::InitDone)) => {
                on(Seen::Listed(listed.take().unwrap_or_default()))
            }
            Some(Ok(watcher::Event::Delete(object))) => on(Seen::Deleted(object)),
        }
    }
}

fn node_name(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

/// Keep the cache's nodes in step with the API.
async fn watch_nodes(shared: Arc<Shared>, client: kube::Client, term: CancellationToken) {
    follow(
        Api::<Node>::all(client),
        node_name,
        term,
        |seen| match seen {
            Seen::Changed(node) => {
                if shared.cache().upsert_node(Arc::new(node)) == Change::MayHelp {
                    shared.may_help();
                }
            }
            Seen::Deleted(node) => shared.cache().remove_node(&node_name(&node)),
            Seen::Listed(listed) => {
                {
                    let mut cache = shared.cache();
                    for name in cache.node_names() {
                        if !listed.contains(&name) {
                            cache.remove_node(&name);
                        }
                    }
                }
                shared.nodes_synced.store(true, Ordering::Release);
                shared.may_help();
            }
        },
    )
    .await;
}

/// Keep the cache's placed pods and the queue's pending pods in step with the API.
async fn watch_pods(shared: Arc<Shared>, client: kube::Client, term: CancellationToken) {
    follow(
        Api::<Pod>::all(client),
        cache::pod_key,
        term,
        |seen| match seen {
            Seen::Changed(pod) => shared.pod_changed(pod),
            Seen::Deleted(pod) => shared.pod_deleted(&cache::pod_key(&pod)),
            Seen::Listed(listed) => {
                let mut gone = shared.cache().pod_keys();
                gone.extend(shared.queue().keys());
                for key in gone.iter().filter(|k| !listed.contains(*k)) {
                    shared.pod_deleted(key);
                }
                shared.pods_synced.store(true, Ordering::Release);
                shared.wake.notify_one();
            }
        },
    )
    .await;
}

/// The deciding loop.
async fn decide(
    shared: Arc<Shared>,
    client: kube::Client,
    profile: Profile,
    term: CancellationToken,
) {
    let recorder = Arc::new(Recorder::new(client.clone(), shared.name.clone()));
    let writes = TaskTracker::new();
    let (events, pending_events) = tokio::sync::mpsc::channel(MAX_PENDING_EVENTS);
    writes.spawn(write_scheduled_events(
        recorder.clone(),
        pending_events,
        term.clone(),
    ));
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut rng = fastrand::Rng::new();
    let mut since_yield = 0;
    while !term.is_cancelled() {
        let (popped, wakeup) = if shared.synced() {
            let mut queue = shared.queue();
            queue.flush(Instant::now());
            (queue.pop(), queue.next_wakeup())
        } else {
            (None, None)
        };
        let Some(popped) = popped else {
            let sleep = wakeup.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            tokio::select! {
                _ = term.cancelled() => break,
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            continue;
        };
        let pod = popped.pod;
        // An attempt runs from here to its outcome: a decision, plus the binding if placed.
        let attempt = Instant::now();
        let decision = {
            let mut cache = shared.cache();
            if cache.placement(&pod.key).is_some() {
                // Seen placed since it was queued.
                drop(cache);
                shared.queue().done(&pod.key);
                continue;
            }
            // Decided and assumed under one lock, so no watch event slips in between.
            let decision = profile.schedule(&cache, &pod, &mut rng);
            if let Ok(node) = &decision {
                cache.assume(pod.clone(), node);
            }
            decision
        };
        // Waiting for a permit is waiting on the API: part of a binding, not of a decision.
        let decided = attempt.elapsed();
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        match decision {
            Ok(node) => {
                shared.queue().done(&pod.key);
                tracing::debug!(pod = %pod.key, node, "scheduled");
                let (shared, client, recorder) = (shared.clone(), client.clone(), recorder.clone());
                let events = events.clone();
                let times = Times {
                    attempt,
                    queued: popped.queued,
                };
                writes.spawn(async move {
                    bind(&shared, &client, &recorder, &events, pod, node, times).await;
                    drop(permit);
                });
            }
            Err(unfit) => {
                let message = unfit.to_string();
                tracing::debug!(pod = %pod.key, %message, "unschedulable");
                metrics::scheduling_attempt(metrics::Attempt::Unschedulable, decided);
                shared
                    .queue()
                    .unschedulable(&pod.key, popped.cycle, Instant::now());
                let (client, recorder) = (client.clone(), recorder.clone());
                writes.spawn(async move {
                    binder::record_not_scheduled(
                        &client,
                        &recorder,
                        &pod,
                        binder::UNSCHEDULABLE,
                        &message,
                    )
                    .await;
                    drop(permit);
                });
            }
        }
        since_yield += 1;
        if since_yield >= DECISIONS_PER_YIELD {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
    drop(events);
    writes.close();
    writes.wait().await;
}

/// Write `Scheduled` events as they come, a few at a time, until the term ends (events
/// still waiting then are dropped: they are informational, and the bindings they describe
/// are done).
async fn write_scheduled_events(
    recorder: Arc<Recorder>,
    pending: tokio::sync::mpsc::Receiver<ScheduledEvent>,
    term: CancellationToken,
) {
    let writing = tokio_stream::wrappers::ReceiverStream::new(pending).for_each_concurrent(
        EVENT_WRITERS,
        |(pod, node)| {
            let recorder = recorder.clone();
            async move { binder::record_scheduled(&recorder, &pod, &node).await }
        },
    );
    tokio::select! {
        _ = term.cancelled() => {}
        _ = writing => {}
    }
}

/// When a pod's scheduling began, for the metrics.
#[derive(Clone, Copy)]
struct Times {
    /// This attempt.
    attempt: Instant,
    /// The pod entered the queue.
    queued: Instant,
}

/// Send one binding and act on the answer.
async fn bind(
    shared: &Shared,
    client: &kube::Client,
    recorder: &Recorder,
    events: &tokio::sync::mpsc::Sender<ScheduledEvent>,
    pod: Arc<PodInfo>,
    node: String,
    times: Times,
) {
    match binder::bind(client, &pod, &node).await {
        Ok(()) => {
            metrics::scheduling_attempt(metrics::Attempt::Scheduled, times.attempt.elapsed());
            metrics::pod_scheduled(times.queued.elapsed());
            if events.try_send((pod, node)).is_err() {
                tracing::debug!("too many Scheduled events waiting; one dropped");
            }
        }
        Err(e @ BindError::Settled { .. }) => {
            tracing::debug!(error = %e, "binding not needed");
            shared.cache().forget(&pod.key);
            shared.may_help();
        }
        Err(e @ BindError::Failed { .. }) => {
            tracing::warn!(error = %e, "binding failed; retrying after back-off");
            metrics::scheduling_attempt(metrics::Attempt::Error, times.attempt.elapsed());
            shared.cache().forget(&pod.key);
            shared.queue().retry(pod.clone(), Instant::now());
            shared.may_help();
            binder::record_not_scheduled(
                client,
                recorder,
                &pod,
                binder::SCHEDULER_ERROR,
                &format!("Binding rejected: {e}"),
            )
            .await;
        }
    }
}

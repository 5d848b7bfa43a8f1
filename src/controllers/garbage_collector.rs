//! The garbage collector: deletes objects whose owners are gone, as kube-controller-manager's
//! does, for every kind the API serves.
//!
//! One watch per served kind (found by API discovery) feeds a graph of every object's
//! owner references by uid ([`Graph`]). Changes to the graph put objects on two work
//! queues:
//!
//! - *attempt to delete*: a dependent whose owner went away, an owner that is deleting its
//!   dependents in the foreground, or an owner known only from a reference (a "virtual"
//!   node, looked up to learn whether it exists). A dependent is deleted only after a live
//!   GET of the dependent and of **each** of its owners shows that none of them exists with
//!   the referenced uid — the graph can lag behind the API, so it never decides a delete on
//!   its own. An owner deleted with `propagationPolicy: Foreground` carries the
//!   `foregroundDeletion` finalizer: its dependents are deleted (those with dependents of
//!   their own, in the foreground too), and once no dependent with `blockOwnerDeletion`
//!   remains the finalizer is removed and the API server lets the owner go.
//! - *attempt to orphan*: an owner deleted with `propagationPolicy: Orphan` carries the
//!   `orphan` finalizer: the reference to it is removed from each dependent, then the
//!   finalizer.
//!
//! After a restart the first list of every kind rebuilds the graph; dependents whose owners
//! vanished meanwhile show up as references to owners nobody has, which are looked up and
//! found absent: such dangling dependents are collected like any other.
//!
//! It owns only those deletions, owner-reference removals and the two finalizers; it never
//! creates objects, never changes anything else about them, and never deletes on the
//! strength of its cache alone. Deleting a namespace's content is the namespace
//! controller's work.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::ApiResource;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::events::{EventType, Recorder};
use super::{ApiError, Context, api_error};
use crate::apiserver::writes::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::gitops::kinds::Catalog;

/// Workers deleting (upstream runs 20; two cores here, and each waits on the API).
const DELETE_WORKERS: usize = 4;
/// Workers orphaning.
const ORPHAN_WORKERS: usize = 2;
/// First retry of a failed work item; doubled per consecutive failure.
const RETRY_BASE: Duration = Duration::from_millis(5);
/// Longest wait between retries of one item.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How many owners known to be absent are remembered (saves a GET per dependent when a
/// big owner goes).
const ABSENT_OWNERS: usize = 4096;
/// How many times a finalizer or reference removal is retried on a conflict before the
/// work item is requeued.
const CONFLICT_RETRIES: usize = 8;
/// How long the workers wait for every kind's first list before they start anyway
/// (upstream waits for its informers the same way).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of one work item (it is retried with back-off).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// An object kept changing under a conditional write.
    #[error("{what}: the object kept changing; will look again")]
    Contended {
        /// What was being done.
        what: String,
    },
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

// ---------------------------------------------------------------------------------------------
// Kinds.

/// The served kinds, by group and kind (an owner reference's version need not be the one
/// served; upstream's RESTMapper resolves by group and kind the same way).
#[derive(Clone, Debug, Default)]
pub struct Kinds {
    by_group_kind: HashMap<(String, String), (ApiResource, bool)>,
}

impl Kinds {
    /// From a discovered catalog.
    pub fn from_catalog(catalog: &Catalog) -> Self {
        let by_group_kind = catalog
            .all()
            .map(|k| {
                (
                    (k.resource.group.clone(), k.resource.kind.clone()),
                    (k.resource.clone(), k.namespaced),
                )
            })
            .collect();
        Kinds { by_group_kind }
    }

    /// The resource and scope for an `apiVersion` and kind.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<&(ApiResource, bool)> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        self.by_group_kind.get(&(group.to_owned(), kind.to_owned()))
    }

    fn all(&self) -> impl Iterator<Item = &(ApiResource, bool)> {
        self.by_group_kind.values()
    }
}

// ---------------------------------------------------------------------------------------------
// The graph.

/// Where an object is and which one it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// e.g. `apps/v1`.
    pub api_version: String,
    /// e.g. `ReplicaSet`.
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
    /// The uid.
    pub uid: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{} ({})", self.kind, ns, self.name, self.uid),
            None => write!(f, "{} {} ({})", self.kind, self.name, self.uid),
        }
    }
}

/// What a watch shows of an object: all the collector needs.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Which object.
    pub identity: Identity,
    /// Its owner references.
    pub owners: Vec<OwnerReference>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

impl Observed {
    fn from_object(resource: &ApiResource, obj: &DynamicObject) -> Option<Self> {
        let uid = obj.metadata.uid.clone().filter(|u| !u.is_empty())?;
        Some(Observed {
            identity: Identity {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
                namespace: obj.metadata.namespace.clone().filter(|ns| !ns.is_empty()),
                name: obj.name_any(),
                uid,
            },
            owners: obj.metadata.owner_references.clone().unwrap_or_default(),
            deleting: obj.metadata.deletion_timestamp.is_some(),
            finalizers: obj.metadata.finalizers.clone().unwrap_or_default(),
        })
    }

    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

#[derive(Clone, Debug)]
struct Node {
    identity: Identity,
    owners: Vec<OwnerReference>,
    dependents: HashSet<String>,
    /// Seen by a watch; `false`: known only from the references of its dependents.
    observed: bool,
    being_deleted: bool,
    /// Being deleted in the foreground: waits for its blocking dependents.
    deleting_dependents: bool,
    /// Being deleted with the orphan finalizer.
    orphaning: bool,
}

/// Work the graph hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Look at whether this object (uid) should go, or its foreground deletion is done.
    Delete(String),
    /// Detach this owner's (uid) dependents.
    Orphan(String),
}

/// Owner → dependents, by uid.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

/// A dependent as the worker sees it.
#[derive(Clone, Debug)]
struct DependentView {
    identity: Identity,
    /// Its reference to the owner asks to block the owner's deletion.
    blocking: bool,
    deleting_dependents: bool,
}

/// A node as the worker sees it (a copy: the graph's lock is not held while working).
#[derive(Clone, Debug)]
struct NodeView {
    identity: Identity,
    observed: bool,
    being_deleted: bool,
    deleting_dependents: bool,
    dependents: Vec<DependentView>,
}

impl Graph {
    /// An object was added or changed.
    pub fn upsert(&mut self, obs: Observed, kinds: &Kinds) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = obs.identity.uid.clone();
        let deleting_dependents = obs.deleting && obs.has(FOREGROUND_FINALIZER);
        let orphaning = obs.deleting && obs.has(ORPHAN_FINALIZER);
        let (was_deleting_dependents, was_orphaning, old_owners) = match self.nodes.get_mut(&uid) {
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity: obs.identity.clone(),
                        owners: Vec::new(),
                        dependents: HashSet::new(),
                        observed: true,
                        being_deleted: obs.deleting,
                        deleting_dependents,
                        orphaning,
                    },
                );
                (false, false, Vec::new())
            }
            Some(node) => {
                let was = (
                    node.deleting_dependents,
                    node.orphaning,
                    node.owners.clone(),
                );
                // A virtual node's coordinates were guessed from a reference: the watch
                // knows better.
                node.identity = obs.identity.clone();
                node.observed = true;
                node.being_deleted = obs.deleting;
                node.deleting_dependents = deleting_dependents;
                node.orphaning = orphaning;
                was
            }
        };

        // Owner references added, removed or changed.
        let added: Vec<&OwnerReference> = obs
            .owners
            .iter()
            .filter(|r| !old_owners.iter().any(|o| o.uid == r.uid))
            .collect();
        let removed: Vec<&OwnerReference> = old_owners
            .iter()
            .filter(|o| !obs.owners.iter().any(|r| r.uid == o.uid))
            .collect();
        // A reference that stopped blocking, or went, may be what an owner deleting in the
        // foreground waits for.
        let unblocked: Vec<String> = removed
            .iter()
            .map(|r| (*r, None))
            .chain(old_owners.iter().filter_map(|o| {
                obs.owners
                    .iter()
                    .find(|r| r.uid == o.uid)
                    .map(|r| (o, Some(r)))
            }))
            .filter(|(old, new)| {
                old.block_owner_deletion == Some(true)
                    && new.is_none_or(|n| n.block_owner_deletion != Some(true))
            })
            .map(|(old, _)| old.uid.clone())
            .collect();
        for owner in unblocked {
            if self
                .nodes
                .get(&owner)
                .is_some_and(|n| n.deleting_dependents)
            {
                work.push(Work::Delete(owner));
            }
        }
        for r in &removed {
            if let Some(owner) = self.nodes.get_mut(&r.uid) {
                owner.dependents.remove(&uid);
            }
        }
        for r in &added {
            match self.nodes.get_mut(&r.uid) {
                Some(owner) => {
                    owner.dependents.insert(uid.clone());
                    // A new dependent of an owner already deleting its dependents: it is
                    // one of them.
                    if owner.deleting_dependents {
                        work.push(Work::Delete(uid.clone()));
                    }
                }
                None => {
                    // An owner nobody has seen (yet): a virtual node, looked up by a worker.
                    let namespaced = kinds
                        .resolve(&r.api_version, &r.kind)
                        .is_none_or(|(_, namespaced)| *namespaced);
                    let identity = Identity {
                        api_version: r.api_version.clone(),
                        kind: r.kind.clone(),
                        namespace: if namespaced {
                            obs.identity.namespace.clone()
                        } else {
                            None
                        },
                        name: r.name.clone(),
                        uid: r.uid.clone(),
                    };
                    self.nodes.insert(
                        r.uid.clone(),
                        Node {
                            identity,
                            owners: Vec::new(),
                            dependents: HashSet::from([uid.clone()]),
                            observed: false,
                            being_deleted: false,
                            deleting_dependents: false,
                            orphaning: false,
                        },
                    );
                    work.push(Work::Delete(r.uid.clone()));
                }
            }
        }
        let dependents: Vec<String> = match self.nodes.get_mut(&uid) {
            Some(node) => {
                node.owners = obs.owners.clone();
                node.dependents.iter().cloned().collect()
            }
            None => Vec::new(),
        };

        // Transitions into a deletion that concerns the dependents.
        if orphaning && !was_orphaning {
            work.push(Work::Orphan(uid));
        } else if deleting_dependents && !was_deleting_dependents {
            work.extend(dependents.into_iter().map(Work::Delete));
            work.push(Work::Delete(uid));
        }
        work
    }

    /// An object is gone (seen by a watch, or found absent by a lookup: `lookup`). Its
    /// dependents are looked at again, and so are its owners waiting for it.
    pub fn remove(&mut self, identity: &Identity, lookup: bool) -> Vec<Work> {
        let Some(node) = self.nodes.get(&identity.uid) else {
            return Vec::new();
        };
        // A lookup that disagrees with what a watch showed about this uid says nothing
        // about the object the watch saw.
        if lookup && node.observed && node.identity != *identity {
            return Vec::new();
        }
        let Some(node) = self.nodes.remove(&identity.uid) else {
            return Vec::new();
        };
        let mut work: Vec<Work> = node.dependents.iter().cloned().map(Work::Delete).collect();
        for r in &node.owners {
            if let Some(owner) = self.nodes.get_mut(&r.uid) {
                owner.dependents.remove(&identity.uid);
                if owner.deleting_dependents {
                    work.push(Work::Delete(r.uid.clone()));
                }
                // A virtual owner nobody refers to any more is forgotten.
                if !owner.observed && owner.dependents.is_empty() {
                    self.nodes.remove(&r.uid);
                }
            }
        }
        work
    }

    fn view(&self, uid: &str) -> Option<NodeView> {
        let node = self.nodes.get(uid)?;
        let dependents = node
            .dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .map(|d| DependentView {
                identity: d.identity.clone(),
                blocking: d
                    .owners
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true)),
                deleting_dependents: d.deleting_dependents,
            })
            .collect();
        Some(NodeView {
            identity: node.identity.clone(),
            observed: node.observed,
            being_deleted: node.being_deleted,
            deleting_dependents: node.deleting_dependents,
            dependents,
        })
    }

    /// How many objects (real and virtual) the graph holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Work queues.

#[derive(Default)]
struct QueueState {
    queue: VecDeque<String>,
    /// Queued and not yet handed out.
    dirty: HashSet<String>,
    /// Handed to a worker: not handed out again until it is done.
    processing: HashSet<String>,
    /// Consecutive failures per item, for the back-off.
    failures: HashMap<String, u32>,
}

/// A work queue as client-go's: an item is queued at most once, never worked on by two
/// workers at a time, and retried with a per-item exponential back-off.
struct WorkQueue {
    /// A std mutex: held only to move items, never across an await.
    state: Mutex<QueueState>,
    notify: Notify,
}

impl WorkQueue {
    fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(QueueState::default()),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, item: String) {
        {
            let mut state = self.lock();
            if !state.dirty.insert(item.clone()) {
                return;
            }
            if state.processing.contains(&item) {
                // Queued again when the worker holding it is done.
                return;
            }
            state.queue.push_back(item);
        }
        self.notify.notify_one();
    }

    /// The next item, or `None` once `shutdown` fires.
    async fn get(&self, shutdown: &CancellationToken) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(item) = state.queue.pop_front() {
                    state.dirty.remove(&item);
                    state.processing.insert(item.clone());
                    return Some(item);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = &mut notified => {}
            }
        }
    }

    fn done(&self, item: &str) {
        let requeue = {
            let mut state = self.lock();
            state.processing.remove(item);
            if state.dirty.contains(item) {
                state.queue.push_back(item.to_owned());
                true
            } else {
                false
            }
        };
        if requeue {
            self.notify.notify_one();
        }
    }

    fn forget(&self, item: &str) {
        self.lock().failures.remove(item);
    }

    /// Queue `item` again after its back-off (5 ms, doubling, at most a minute).
    fn retry(self: &Arc<Self>, item: String, shutdown: &CancellationToken) {
        let failures = {
            let mut state = self.lock();
            let count = state.failures.entry(item.clone()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        let delay = RETRY_BASE
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(20)))
            .min(RETRY_MAX);
        let queue = self.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => queue.add(item),
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The collector.

/// What the graph builder is told.
#[derive(Debug)]
enum GraphEvent {
    Upsert(Observed),
    Removed(Identity),
    /// A lookup found the object absent (or another object under its name).
    Absent(Identity),
    /// A kind's first list is all in: every object of it that existed is in the graph.
    Synced,
}

struct Collector {
    client: Client,
    kinds: Kinds,
    graph: Mutex<Graph>,
    deletes: Arc<WorkQueue>,
    orphans: Arc<WorkQueue>,
    events: mpsc::UnboundedSender<GraphEvent>,
    /// Whether every kind's first list is in the graph. Until then the graph does not know
    /// every dependent: orphaning would miss some, and a dependent whose owner's kind is
    /// not listed yet would be looked up for nothing.
    synced: tokio::sync::watch::Sender<bool>,
    /// Owners a lookup found absent: uids are never reused, so absent stays absent.
    absent: Mutex<HashSet<Identity>>,
    /// Dependents already warned about an owner reference that cannot resolve.
    warned: Mutex<HashSet<String>>,
    recorder: Recorder,
}

/// What a work item came to.
enum Outcome {
    /// Nothing more to do.
    Done,
    /// Look again later: a virtual node whose object exists but no watch has shown yet.
    Later,
}

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let Some(kinds) = discover(&ctx.client, &shutdown).await else {
        return;
    };
    let (events, mut inbox) = mpsc::unbounded_channel();
    let collector = Arc::new(Collector {
        client: ctx.client.clone(),
        kinds,
        graph: Mutex::new(Graph::default()),
        deletes: WorkQueue::new(),
        orphans: WorkQueue::new(),
        events,
        synced: tokio::sync::watch::Sender::new(false),
        absent: Mutex::new(HashSet::new()),
        warned: Mutex::new(HashSet::new()),
        recorder: ctx.recorder("garbage-collector-controller"),
    });
    let tasks = TaskTracker::new();
    for (resource, _) in collector.kinds.all() {
        tasks.spawn(watch_kind(
            collector.client.clone(),
            resource.clone(),
            collector.events.clone(),
            shutdown.clone(),
        ));
    }
    {
        let collector = collector.clone();
        let shutdown = shutdown.clone();
        let mut unsynced = collector.kinds.all().count();
        tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    event = inbox.recv() => event,
                };
                match event {
                    None => break,
                    Some(GraphEvent::Synced) => {
                        unsynced = unsynced.saturating_sub(1);
                        if unsynced == 0 {
                            tracing::debug!("garbage collector: every kind listed");
                            collector.synced.send_replace(true);
                        }
                    }
                    Some(event) => collector.apply(event),
                }
            }
        });
    }
    for _ in 0..DELETE_WORKERS {
        tasks.spawn(collector.clone().work(Queue::Delete, shutdown.clone()));
    }
    for _ in 0..ORPHAN_WORKERS {
        tasks.spawn(collector.clone().work(Queue::Orphan, shutdown.clone()));
    }
    tasks.close();
    tasks.wait().await;
}

/// The served kinds, asked until the API answers (or `shutdown`).
async fn discover(client: &Client, shutdown: &CancellationToken) -> Option<Kinds> {
    let mut delay = Duration::from_millis(100);
    loop {
        match Catalog::discover(client).await {
            Ok(catalog) => return Some(Kinds::from_catalog(&catalog)),
            Err(error) => {
                tracing::warn!(%error, "garbage collector: discovering the served kinds");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Watch one kind and tell the graph builder what changes. A relist (after the watch could
/// not resume) also reports the objects deleted while nobody watched.
async fn watch_kind(
    client: Client,
    resource: ApiResource,
    events: mpsc::UnboundedSender<GraphEvent>,
    shutdown: CancellationToken,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let stream = watch_stream(api).default_backoff();
    futures::pin_mut!(stream);
    // What this watch has reported as existing, by uid.
    let mut known: HashMap<String, Identity> = HashMap::new();
    let mut relisted: Option<HashSet<String>> = None;
    let mut synced = false;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = stream.next() => next,
        };
        let Some(next) = next else { return };
        let event = match next {
            Ok(event) => event,
            Err(error) => {
                tracing::debug!(kind = %resource.kind, %error, "garbage collector: watch failed");
                continue;
            }
        };
        let sent = match event {
            Event::Init => {
                relisted = Some(HashSet::new());
                Ok(())
            }
            Event::InitApply(obj) | Event::Apply(obj) => {
                let Some(obs) = Observed::from_object(&resource, &obj) else {
                    continue;
                };
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(obs.identity.uid.clone());
                }
                known.insert(obs.identity.uid.clone(), obs.identity.clone());
                events.send(GraphEvent::Upsert(obs))
            }
            Event::InitDone => {
                let seen = relisted.take().unwrap_or_default();
                let gone: Vec<String> = known
                    .keys()
                    .filter(|uid| !seen.contains(*uid))
                    .cloned()
                    .collect();
                let mut sent = Ok(());
                for uid in gone {
                    if let Some(identity) = known.remove(&uid) {
                        sent = sent.and(events.send(GraphEvent::Removed(identity)));
                    }
                }
                if !synced {
                    synced = true;
                    sent = sent.and(events.send(GraphEvent::Synced));
                }
                sent
            }
            Event::Delete(obj) => {
                let Some(obs) = Observed::from_object(&resource, &obj) else {
                    continue;
                };
                known.remove(&obs.identity.uid);
                events.send(GraphEvent::Removed(obs.identity))
            }
        };
        if sent.is_err() {
            // The graph builder stopped: shutting down.
            return;
        }
    }
}

fn watch_stream(
    api: Api<DynamicObject>,
) -> impl futures::Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Send {
    watcher::watcher(api, watcher::Config::default())
}

#[derive(Clone, Copy, Debug)]
enum Queue {
    Delete,
    Orphan,
}

impl Collector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn apply(&self, event: GraphEvent) {
        let work = {
            let mut graph = self.graph();
            match event {
                GraphEvent::Upsert(obs) => graph.upsert(obs, &self.kinds),
                GraphEvent::Removed(identity) => graph.remove(&identity, false),
                GraphEvent::Absent(identity) => graph.remove(&identity, true),
                GraphEvent::Synced => Vec::new(),
            }
        };
        for item in work {
            match item {
                Work::Delete(uid) => self.deletes.add(uid),
                Work::Orphan(uid) => self.orphans.add(uid),
            }
        }
    }

    async fn work(self: Arc<Self>, queue: Queue, shutdown: CancellationToken) {
        let items = match queue {
            Queue::Delete => self.deletes.clone(),
            Queue::Orphan => self.orphans.clone(),
        };
        let mut synced = self.synced.subscribe();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            waited = tokio::time::timeout(SYNC_TIMEOUT, synced.wait_for(|s| *s)) => {
                if waited.is_err() {
                    tracing::warn!("garbage collector: not every kind could be listed; collecting anyway");
                }
            }
        }
        while let Some(uid) = items.get(&shutdown).await {
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                result = crate::metrics::timed_reconcile(
                    "garbagecollector",
                    self.process(queue, &uid),
                ) => result,
            };
            match result {
                Ok(Outcome::Done) => items.forget(&uid),
                Ok(Outcome::Later) => items.retry(uid.clone(), &shutdown),
                Err(error) => {
                    tracing::debug!(%uid, %error, "garbage collector: will retry");
                    items.retry(uid.clone(), &shutdown);
                }
            }
            items.done(&uid);
        }
    }

    async fn process(&self, queue: Queue, uid: &str) -> Result<Outcome, Error> {
        let Some(node) = self.graph().view(uid) else {
            // Gone from the graph meanwhile: whatever removed it queued what follows.
            return Ok(Outcome::Done);
        };
        match queue {
            Queue::Delete => self.attempt_to_delete(&node).await,
            Queue::Orphan => self.attempt_to_orphan(&node).await,
        }
    }

    fn api(&self, identity: &Identity) -> Option<Api<DynamicObject>> {
        let (resource, namespaced) = self.kinds.resolve(&identity.api_version, &identity.kind)?;
        Some(match (namespaced, &identity.namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
            (true, None) => return None,
            (false, _) => Api::all_with(self.client.clone(), resource),
        })
    }

    /// The object as it is now, if it (that uid) exists; `Err` when the API cannot say.
    async fn live(&self, identity: &Identity) -> Result<Option<DynamicObject>, Error> {
        let Some(api) = self.api(identity) else {
            return Ok(None);
        };
        let found = api
            .get_opt(&identity.name)
            .await
            .map_err(api_error(format!("reading {identity}")))?;
        Ok(found.filter(|obj| obj.metadata.uid.as_deref() == Some(identity.uid.as_str())))
    }

    /// Upstream's attemptToDeleteItem.
    async fn attempt_to_delete(&self, node: &NodeView) -> Result<Outcome, Error> {
        // Someone else's deletion: wait for it to finish, then the dependents follow.
        if node.being_deleted && !node.deleting_dependents {
            return Ok(Outcome::Done);
        }
        if self
            .kinds
            .resolve(&node.identity.api_version, &node.identity.kind)
            .is_none()
        {
            // A kind this server does not serve: nothing can be known, nothing is done.
            tracing::debug!(object = %node.identity, "garbage collector: owner of an unknown kind");
            return Ok(Outcome::Done);
        }
        let Some(latest) = self.live(&node.identity).await? else {
            // Absent: its dependents are looked at through the graph.
            let _ = self.events.send(GraphEvent::Absent(node.identity.clone()));
            return Ok(Outcome::Done);
        };
        if !node.observed {
            // It exists; no watch has shown it yet. Look again until one has.
            return Ok(Outcome::Later);
        }
        if node.deleting_dependents {
            return self.finish_foreground(node).await;
        }
        let references = latest.metadata.owner_references.clone().unwrap_or_default();
        if references.is_empty() {
            return Ok(Outcome::Done);
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for reference in &references {
            match self.owner_state(&node.identity, reference).await? {
                OwnerState::Solid => solid.push(reference),
                OwnerState::Dangling => dangling.push(reference),
                OwnerState::DeletingDependents => waiting.push(reference),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(Outcome::Done);
            }
            // Still owned: only the references to owners that are gone (or are deleting
            // their dependents and must not wait for this one) go.
            let remove: HashSet<&str> = dangling
                .iter()
                .chain(waiting.iter())
                .map(|r| r.uid.as_str())
                .collect();
            self.remove_references(&node.identity, &remove).await?;
            return Ok(Outcome::Done);
        }
        let policy = if !waiting.is_empty() && !node.dependents.is_empty() {
            // An owner waits for this one, which has dependents of its own: delete them
            // first, in the foreground too.
            if node.dependents.iter().any(|d| d.deleting_dependents) {
                // A cycle (or a race that looks like one): stop blocking the owners so the
                // foreground deletions cannot wait for each other for ever.
                self.unblock_references(&node.identity, &latest).await?;
            }
            PropagationPolicy::Foreground
        } else {
            let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
            if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                PropagationPolicy::Orphan
            } else if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }
        };
        tracing::debug!(object = %node.identity, ?policy, "garbage collector: deleting");
        self.delete_object(&node.identity, &latest, policy).await?;
        Ok(Outcome::Done)
    }

    /// Whether `reference` of `dependent` names an owner that exists, is gone, or is
    /// deleting its dependents — by a live lookup (remembered when absent).
    async fn owner_state(
        &self,
        dependent: &Identity,
        reference: &OwnerReference,
    ) -> Result<OwnerState, Error> {
        let Some((_, namespaced)) = self.kinds.resolve(&reference.api_version, &reference.kind)
        else {
            // Nothing can be known about a kind this server does not serve: the dependent
            // stays.
            return Ok(OwnerState::Solid);
        };
        if *namespaced && dependent.namespace.is_none() {
            // A cluster-scoped object cannot have a namespaced owner: the reference can
            // never resolve, and is never taken as proof the owner is gone.
            self.warn_invalid_namespace(dependent, reference).await;
            return Ok(OwnerState::Solid);
        }
        let owner = Identity {
            api_version: reference.api_version.clone(),
            kind: reference.kind.clone(),
            namespace: if *namespaced {
                dependent.namespace.clone()
            } else {
                None
            },
            name: reference.name.clone(),
            uid: reference.uid.clone(),
        };
        if self.absent_lock().contains(&owner) {
            return Ok(OwnerState::Dangling);
        }
        let Some(live) = self.live(&owner).await? else {
            let mut absent = self.absent_lock();
            if absent.len() >= ABSENT_OWNERS {
                absent.clear();
            }
            absent.insert(owner);
            return Ok(OwnerState::Dangling);
        };
        let foreground = live.metadata.deletion_timestamp.is_some()
            && live
                .metadata
                .finalizers
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|f| f == FOREGROUND_FINALIZER);
        Ok(if foreground {
            OwnerState::DeletingDependents
        } else {
            OwnerState::Solid
        })
    }

    fn absent_lock(&self) -> std::sync::MutexGuard<'_, HashSet<Identity>> {
        self.absent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn warn_invalid_namespace(&self, dependent: &Identity, reference: &OwnerReference) {
        let first = {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.len() >= ABSENT_OWNERS {
                warned.clear();
            }
            warned.insert(format!("{}/{}", dependent.uid, reference.uid))
        };
        if !first {
            return;
        }
        let message = format!(
            "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
            reference.api_version, reference.kind, reference.name, reference.uid
        );
        self.recorder
            .publish(
                &object_reference(dependent),
                EventType::Warning,
                "OwnerRefInvalidNamespace",
                &message,
            )
            .await;
    }

    /// Delete `identity` as it was read (`latest`): only that uid, and only if it has not
    /// changed since — unless just its unrelated fields changed (upstream's deleteObject,
    /// so a busy object cannot starve the collector).
    async fn delete_object(
        &self,
        identity: &Identity,
        latest: &DynamicObject,
        policy: PropagationPolicy,
    ) -> Result<(), Error> {
        let Some(api) = self.api(identity) else {
            return Ok(());
        };
        let params = |resource_version: Option<String>| DeleteParams {
            propagation_policy: Some(policy.clone()),
            preconditions: Some(Preconditions {
                uid: Some(identity.uid.clone()),
                resource_version,
            }),
            ..DeleteParams::default()
        };
        let action = || format!("deleting {identity}");
        match api
            .delete(
                &identity.name,
                &params(latest.metadata.resource_version.clone()),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) if is_status(&e, 409) => {
                let Some(now) = self.live(identity).await? else {
                    return Ok(());
                };
                if now.metadata.owner_references != latest.metadata.owner_references {
                    // Its owners changed: decide again.
                    return Err(Error::Contended { what: action() });
                }
                match api.delete(&identity.name, &params(None)).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 404) => Ok(()),
                    Err(e) => Err(api_error(action())(e).into()),
                }
            }
            Err(e) => Err(api_error(action())(e).into()),
        }
    }

    /// Upstream's processDeletingDependentsItem: an owner deleting in the foreground goes
    /// (its finalizer is removed) once no dependent blocks it.
    async fn finish_foreground(&self, node: &NodeView) -> Result<Outcome, Error> {
        let blocking: Vec<&DependentView> = node.dependents.iter().filter(|d| d.blocking).collect();
        if !blocking.is_empty() {
            for dependent in blocking {
                if !dependent.deleting_dependents {
                    self.deletes.add(dependent.identity.uid.clone());
                }
            }
            return Ok(Outcome::Done);
        }
        // The graph knows of no blocking dependent, but a dependent created a moment ago
        // may not have reached it yet: letting the owner go is decided on what the API
        // holds now.
        let live = self.live_dependents(&node.identity).await?;
        let blocking: Vec<&(Identity, OwnerReference)> = live
            .iter()
            .filter(|(_, r)| r.block_owner_deletion == Some(true))
            .collect();
        if blocking.is_empty() {
            self.remove_finalizer(&node.identity, FOREGROUND_FINALIZER)
                .await?;
            return Ok(Outcome::Done);
        }
        // Their watch events will bring them (and queue them as dependents of an owner
        // deleting its dependents); look at the owner again after that.
        for (dependent, _) in blocking {
            self.deletes.add(dependent.uid.clone());
        }
        Ok(Outcome::Later)
    }

    /// Upstream's attemptToOrphanWorker: the references to `node` go from its dependents,
    /// then its orphan finalizer. The dependents are found in the API, not only in the
    /// graph: one the graph has not seen yet would otherwise keep a reference to an owner
    /// about to go, and be collected as garbage.
    async fn attempt_to_orphan(&self, node: &NodeView) -> Result<Outcome, Error> {
        let owner = HashSet::from([node.identity.uid.as_str()]);
        let mut dependents: HashMap<String, Identity> = node
            .dependents
            .iter()
            .map(|d| (d.identity.uid.clone(), d.identity.clone()))
            .collect();
        for (dependent, _) in self.live_dependents(&node.identity).await? {
            dependents.insert(dependent.uid.clone(), dependent);
        }
        for dependent in dependents.values() {
            self.remove_references(dependent, &owner).await?;
        }
        self.remove_finalizer(&node.identity, ORPHAN_FINALIZER)
            .await?;
        Ok(Outcome::Done)
    }

    /// Every object that refers to `owner` now, with its reference, from a list of every
    /// kind that can depend on it (in its namespace when it is namespaced). Only the last
    /// step of a foreground or orphan deletion asks this.
    async fn live_dependents(
        &self,
        owner: &Identity,
    ) -> Result<Vec<(Identity, OwnerReference)>, Error> {
        let Some((_, owner_namespaced)) = self.kinds.resolve(&owner.api_version, &owner.kind)
        else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for (resource, namespaced) in self.kinds.all() {
            let api: Api<DynamicObject> = match (owner_namespaced, namespaced, &owner.namespace) {
                // Cluster-scoped objects cannot depend on namespaced owners.
                (true, false, _) => continue,
                (true, true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
                (true, true, None) => continue,
                (false, _, _) => Api::all_with(self.client.clone(), resource),
            };
            let list = api
                .list(&kube::api::ListParams::default())
                .await
                .map_err(api_error(format!(
                    "listing the {} that may depend on {owner}",
                    resource.plural
                )))?;
            for obj in &list.items {
                let Some(reference) = obj
                    .metadata
                    .owner_references
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .find(|r| r.uid == owner.uid)
                else {
                    continue;
                };
                if let Some(obs) = Observed::from_object(resource, obj) {
                    found.push((obs.identity, reference.clone()));
                }
            }
        }
        Ok(found)
    }

    /// Remove the references to `owners` (uids) from `identity`, conditionally on the
    /// version read.
    async fn remove_references(
        &self,
        identity: &Identity,
        owners: &HashSet<&str>,
    ) -> Result<(), Error> {
        let what = format!("removing owner references from {identity}");
        self.edit(identity, &what, |obj| {
            let references = obj.metadata.owner_references.clone().unwrap_or_default();
            let kept: Vec<OwnerReference> = references
                .iter()
                .filter(|r| !owners.contains(r.uid.as_str()))
                .cloned()
                .collect();
            (kept.len() != references.len()).then(|| {
                json!({"metadata": {
                    "ownerReferences": if kept.is_empty() { json!(null) } else { json!(kept) },
                }})
            })
        })
        .await
    }

    /// Make `identity`'s references to owners deleting their dependents non-blocking.
    async fn unblock_references(
        &self,
        identity: &Identity,
        latest: &DynamicObject,
    ) -> Result<(), Error> {
        let references = latest.metadata.owner_references.clone().unwrap_or_default();
        let mut waiting = HashSet::new();
        for reference in &references {
            if matches!(
                self.owner_state(identity, reference).await?,
                OwnerState::DeletingDependents
            ) {
                waiting.insert(reference.uid.clone());
            }
        }
        let what = format!("unblocking the owner references of {identity}");
        self.edit(identity, &what, |obj| {
            let mut references = obj.metadata.owner_references.clone().unwrap_or_default();
            let mut changed = false;
            for r in references.iter_mut() {
                if waiting.contains(&r.uid) && r.block_owner_deletion == Some(true) {
                    r.block_owner_deletion = Some(false);
                    changed = true;
                }
            }
            changed.then(|| json!({"metadata": {"ownerReferences": references}}))
        })
        .await
    }

    /// Remove `finalizer` from `identity` (the API server deletes an object being deleted
    /// once its last finalizer goes).
    async fn remove_finalizer(&self, identity: &Identity, finalizer: &str) -> Result<(), Error> {
        let what = format!("removing the {finalizer} finalizer from {identity}");
        self.edit(identity, &what, |obj| {
            let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
            let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
            (kept.len() != finalizers.len()).then(|| {
                json!({"metadata": {
                    "finalizers": if kept.is_empty() { json!(null) } else { json!(kept) },
                }})
            })
        })
        .await
    }

    /// Read `identity`, compute a merge patch from it (`None`: nothing to change) and apply
    /// it on condition that the object is still the version read; retried on a conflict.
    async fn edit(
        &self,
        identity: &Identity,
        what: &str,
        change: impl Fn(&DynamicObject) -> Option<serde_json::Value>,
    ) -> Result<(), Error> {
        let Some(api) = self.api(identity) else {
            return Ok(());
        };
        for _ in 0..CONFLICT_RETRIES {
            let Some(obj) = self.live(identity).await? else {
                return Ok(());
            };
            let Some(mut patch) = change(&obj) else {
                return Ok(());
            };
            patch["metadata"]["resourceVersion"] = json!(obj.metadata.resource_version);
            match api
                .patch(
                    &identity.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 404) => return Ok(()),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) => return Err(api_error(what)(e).into()),
            }
        }
        Err(Error::Contended {
            what: what.to_owned(),
        })
    }
}

enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Gone (or another object under its name).
    Dangling,
    /// Exists, being deleted in the foreground.
    DeletingDependents,
}

fn object_reference(identity: &Identity) -> ObjectReference {
    ObjectReference {
        api_version: Some(identity.api_version.clone()),
        kind: Some(identity.kind.clone()),
        namespace: identity.namespace.clone(),
        name: Some(identity.name.clone()),
        uid: Some(identity.uid.clone()),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds() -> Kinds {
        Kinds::from_catalog(&Catalog::from_registry())
    }

    fn id(kind: &str, name: &str, uid: &str) -> Identity {
        let api_version = if kind == "Pod" { "v1" } else { "apps/v1" };
        Identity {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some("default".into()),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn owner_ref(owner: &Identity, blocking: bool) -> OwnerReference {
        OwnerReference {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(blocking),
        }
    }

    fn observed(identity: &Identity, owners: Vec<OwnerReference>) -> Observed {
        Observed {
            identity: identity.clone(),
            owners,
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    #[test]
    fn an_unseen_owner_becomes_a_virtual_node_to_look_up() {
        let kinds = kinds();
        let mut graph = Graph::default();
        let rs = id("ReplicaSet", "web", "rs-1");
        let pod = id("Pod", "web-1", "pod-1");
        let work = graph.upsert(observed(&pod, vec![owner_ref(&rs, true)]), &kinds);
        assert_eq!(work, vec![Work::Delete("rs-1".into())]);
        let view = graph.view("rs-1").unwrap();
        assert!(!view.observed);
        assert_eq!(
            view.identity, rs,
            "namespaced owner: the dependent's namespace"
        );
        // The watch shows it: no longer virtual, nothing to do.
        assert!(graph.upsert(observed(&rs, vec![]), &kinds).is_empty());
        assert!(graph.view("rs-1").unwrap().observed);
        // It goes: its dependents are looked at.
        assert_eq!(graph.remove(&rs, false), vec![Work::Delete("pod-1".into())]);
        assert_eq!(graph.len(), 1);
    }

    #[test]
    fn a_lookup_does_not_remove_what_a_watch_saw_elsewhere() {
        let kinds = kinds();
        let mut graph = Graph::default();
        let rs = id("ReplicaSet", "web", "rs-1");
        graph.upsert(observed(&rs, vec![]), &kinds);
        let elsewhere = Identity {
            namespace: Some("other".into()),
            ..rs.clone()
        };
        assert!(graph.remove(&elsewhere, true).is_empty());
        assert!(graph.view("rs-1").is_some());
    }

    #[test]
    fn foreground_and_orphan_transitions_queue_work_once() {
        let kinds = kinds();
        let mut graph = Graph::default();
        let rs = id("ReplicaSet", "web", "rs-1");
        let pod = id("Pod", "web-1", "pod-1");
        graph.upsert(observed(&rs, vec![]), &kinds);
        graph.upsert(observed(&pod, vec![owner_ref(&rs, true)]), &kinds);
        let mut deleting = observed(&rs, vec![]);
        deleting.deleting = true;
        deleting.finalizers = vec![FOREGROUND_FINALIZER.into()];
        let work = graph.upsert(deleting.clone(), &kinds);
        assert_eq!(
            work,
            vec![Work::Delete("pod-1".into()), Work::Delete("rs-1".into())]
        );
        assert!(
            graph.upsert(deleting, &kinds).is_empty(),
            "no transition, no work"
        );
        let view = graph.view("rs-1").unwrap();
        assert!(view.dependents[0].blocking);
        // The blocking dependent goes: the owner is looked at again.
        assert_eq!(graph.remove(&pod, false), vec![Work::Delete("rs-1".into())]);

        let other = id("ReplicaSet", "api", "rs-2");
        graph.upsert(observed(&other, vec![]), &kinds);
        let mut orphaning = observed(&other, vec![]);
        orphaning.deleting = true;
        orphaning.finalizers = vec![ORPHAN_FINALIZER.into()];
        assert_eq!(
            graph.upsert(orphaning.clone(), &kinds),
            vec![Work::Orphan("rs-2".into())]
        );
        assert!(graph.upsert(orphaning, &kinds).is_empty());
    }

    #[test]
    fn a_reference_that_stops_blocking_wakes_its_waiting_owner() {
        let kinds = kinds();
        let mut graph = Graph::default();
        let rs = id("ReplicaSet", "web", "rs-1");
        let pod = id("Pod", "web-1", "pod-1");
        graph.upsert(observed(&pod, vec![owner_ref(&rs, true)]), &kinds);
        let mut deleting = observed(&rs, vec![]);
        deleting.deleting = true;
        deleting.finalizers = vec![FOREGROUND_FINALIZER.into()];
        graph.upsert(deleting, &kinds);
        let work = graph.upsert(observed(&pod, vec![owner_ref(&rs, false)]), &kinds);
        assert_eq!(work, vec![Work::Delete("rs-1".into())]);
        let work = graph.upsert(observed(&pod, vec![]), &kinds);
        assert!(work.is_empty(), "{work:?}");
        assert!(graph.view("rs-1").unwrap().dependents.is_empty());
    }

    #[test]
    fn the_queue_hands_an_item_to_one_worker_at_a_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let shutdown = CancellationToken::new();
            let queue = WorkQueue::new();
            queue.add("a".into());
            queue.add("a".into());
            queue.add("b".into());
            assert_eq!(queue.get(&shutdown).await.as_deref(), Some("a"));
            queue.add("a".into());
            assert_eq!(queue.get(&shutdown).await.as_deref(), Some("b"));
            // "a" is being worked on: queued again only once it is done.
            assert!(queue.lock().queue.is_empty());
            queue.done("a");
            assert_eq!(queue.get(&shutdown).await.as_deref(), Some("a"));
            shutdown.cancel();
            assert_eq!(queue.get(&shutdown).await, None);
        });
    }
}

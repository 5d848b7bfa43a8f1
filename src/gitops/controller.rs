//! The source controller: runs one worker per ManifestSource object. A worker watches its
//! source (a folder through inotify, a local repository's refs, a remote on its poll
//! interval), syncs each new revision, writes the outcome to the object's status, and puts
//! back objects changed or deleted by hand — noticed through watches on every served kind,
//! filtered to objects carrying the source label.
//!
//! Everything goes through the Kubernetes API with a `kube::Client`, so the controller runs
//! the same in-process (`moor server`) and against a remote server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::kinds::{Catalog, Kind, ObjectId};
use super::plan::{Action, PlanOptions, SOURCE_LABEL, fingerprint, id_of};
use super::source::Snapshot;
use super::source::dir::DirWatcher;
use super::source::git::RefWatcher;
use super::sync::{self, Outcome, ReadError, Reader};
use crate::api::manifest_source::{
    self, InventoryEntry, ManifestSource, ManifestSourceSpec, ManifestSourceStatus, SyncError,
};
use crate::metrics::{self, SyncResult};

/// How long file events are gathered before a folder is re-read: long enough to take an
/// editor's write-rename-chmod as one change, short enough to stay well under 100 ms.
pub const DIR_DEBOUNCE: Duration = Duration::from_millis(25);
/// How long ref updates of a local repository are gathered.
pub const REF_DEBOUNCE: Duration = Duration::from_millis(25);
/// How long hand edits are gathered before they are put back.
const DRIFT_DEBOUNCE: Duration = Duration::from_millis(50);
/// Retry back-off after a failed sync: from the first value, doubling up to the second.
const RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(60));

/// The ManifestSource API resource.
pub fn manifest_source_resource() -> ApiResource {
    ApiResource {
        group: manifest_source::GROUP.to_owned(),
        version: manifest_source::VERSION.to_owned(),
        api_version: manifest_source::API_VERSION.to_owned(),
        kind: manifest_source::KIND.to_owned(),
        plural: "manifestsources".to_owned(),
    }
}

/// The controller of every ManifestSource.
pub struct SourceController {
    client: Client,
    cache_dir: PathBuf,
}

/// A change to an owned object seen by the drift watches: its id and fingerprint (None
/// when deleted).
#[derive(Debug)]
struct Drift {
    id: ObjectId,
    fingerprint: Option<u64>,
}

struct WorkerHandle {
    spec: ManifestSourceSpec,
    generation: Option<i64>,
    cancel: CancellationToken,
    drift: mpsc::UnboundedSender<Drift>,
}

impl SourceController {
    /// A controller using `client`; git mirrors go under `cache_dir/<source name>`.
    pub fn new(client: Client, cache_dir: PathBuf) -> Self {
        SourceController { client, cache_dir }
    }

    /// Run until `shutdown` fires; every worker stops with it.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), kube::Error> {
        // The API server may still be starting (a remote one, or after a restart): keep
        // asking, with back-off, rather than giving up on GitOps for the process's life.
        let mut delay = RETRY.0;
        let catalog = loop {
            match Catalog::discover(&self.client).await {
                Ok(catalog) => break catalog,
                Err(e) => {
                    tracing::warn!(error = %e, "API discovery failed; retrying in {delay:?}");
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(RETRY.1);
                }
            }
        };
        let tasks = TaskTracker::new();
        let (drift_tx, mut drift_rx) = mpsc::unbounded_channel::<(String, Drift)>();
        for kind in catalog.all().cloned() {
            // Events are written by everyone all the time and never come from manifests
            // worth reverting.
            if kind.resource.kind == "Event" {
                continue;
            }
            tasks.spawn(watch_owned(
                self.client.clone(),
                kind,
                drift_tx.clone(),
                shutdown.clone(),
            ));
        }
        drop(drift_tx);

        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &manifest_source_resource());
        let mut sources = watcher::watcher(api, watcher::Config::default()).boxed();
        let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some((source, drift)) = drift_rx.recv() => {
                    if let Some(worker) = workers.get(&source) {
                        let _ = worker.drift.send(drift);
                    }
                }
                event = sources.next() => {
                    let Some(event) = event else { break };
                    match event {
                        Ok(Event::Apply(obj) | Event::InitApply(obj)) => {
                            self.ensure_worker(&mut workers, &tasks, &catalog, obj, &shutdown);
                        }
                        Ok(Event::Delete(obj)) => {
                            if let Some(name) = obj.metadata.name.as_deref()
                                && let Some(worker) = workers.remove(name)
                            {
                                tracing::info!(source = name, "source deleted; its objects are left in place");
                                worker.cancel.cancel();
                                metrics::forget_source(name);
                            }
                        }
                        Ok(Event::Init | Event::InitDone) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "watching ManifestSources");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
        for worker in workers.values() {
            worker.cancel.cancel();
        }
        tasks.close();
        tasks.wait().await;
        Ok(())
    }

    fn ensure_worker(
        &self,
        workers: &mut HashMap<String, WorkerHandle>,
        tasks: &TaskTracker,
        catalog: &Catalog,
        obj: DynamicObject,
        shutdown: &CancellationToken,
    ) {
        let value = serde_json::to_value(&obj).unwrap_or(Value::Null);
        let source: ManifestSource = match serde_json::from_value(value) {
            Ok(source) => source,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable ManifestSource");
                return;
            }
        };
        let Some(name) = source.metadata.name.clone() else {
            return;
        };
        if let Some(worker) = workers.get(&name) {
            // Status writes come back as events too; only a new spec (or generation, which
            // observedGeneration must follow) restarts the worker.
            if worker.spec == source.spec && worker.generation == source.metadata.generation {
                return;
            }
            worker.cancel.cancel();
        }
        let cancel = shutdown.child_token();
        let (drift_tx, drift_rx) = mpsc::unbounded_channel();
        workers.insert(
            name.clone(),
            WorkerHandle {
                spec: source.spec.clone(),
                generation: source.metadata.generation,
                cancel: cancel.clone(),
                drift: drift_tx,
            },
        );
        let worker = Worker {
            client: self.client.clone(),
            catalog: catalog.clone(),
            cache_dir: self.cache_dir.join(&name),
            name,
            generation: source.metadata.generation,
            spec: source.spec,
            status: source.status.unwrap_or_default(),
            fingerprints: HashMap::new(),
            applied: None,
            failure: None,
            correcting: false,
        };
        tasks.spawn(worker.run(cancel, drift_rx));
    }
}

/// Watch one kind's objects that carry a source label and report every change.
async fn watch_owned(
    client: Client,
    kind: Kind,
    tx: mpsc::UnboundedSender<(String, Drift)>,
    shutdown: CancellationToken,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.resource);
    let config = watcher::Config::default().labels(SOURCE_LABEL);
    let mut events = watcher::watcher(api, config).boxed();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        let (obj, deleted) = match event {
            Ok(Event::Apply(obj) | Event::InitApply(obj)) => (obj, false),
            Ok(Event::Delete(obj)) => (obj, true),
            Ok(Event::Init | Event::InitDone) => continue,
            Err(e) => {
                tracing::debug!(kind = %kind.resource.kind, error = %e, "watching owned objects");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let value = serde_json::to_value(&obj).unwrap_or(Value::Null);
        let Some(source) = obj
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SOURCE_LABEL))
        else {
            continue;
        };
        let drift = Drift {
            id: id_of(&kind, &value),
            fingerprint: (!deleted).then(|| fingerprint(&value)),
        };
        if tx.send((source.clone(), drift)).is_err() {
            return;
        }
    }
}

/// What a worker waits for.
enum Trigger {
    Stop,
    SourceChanged,
    Drift,
    Retry,
}

struct Worker {
    client: Client,
    catalog: Catalog,
    cache_dir: PathBuf,
    name: String,
    generation: Option<i64>,
    spec: ManifestSourceSpec,
    status: ManifestSourceStatus,
    /// What each owned object looked like when last applied or checked: a change to
    /// another fingerprint is drift.
    fingerprints: HashMap<ObjectId, u64>,
    /// The last snapshot applied without errors: drift is corrected against it.
    applied: Option<Snapshot>,
    /// A newer revision that failed to plan, with its errors: correcting drift against the
    /// last good revision must not hide them from the status.
    failure: Option<(String, Vec<SyncError>, String)>,
    /// The sync running corrects drift (for the log line).
    correcting: bool,
}

impl Worker {
    async fn run(
        mut self,
        cancel: CancellationToken,
        mut drift_rx: mpsc::UnboundedReceiver<Drift>,
    ) {
        if self.spec.suspended() {
            self.write_status(None, None, "Suspended", "the source is suspended")
                .await;
            cancel.cancelled().await;
            return;
        }
        let mut reader = match Reader::open(&self.spec, self.cache_dir.clone()) {
            Ok(reader) => reader,
            Err(e) => {
                self.source_failed(&e).await;
                cancel.cancelled().await;
                return;
            }
        };
        let (mut dir_watcher, mut ref_watcher) = (None, None);
        match &reader {
            Reader::Dir(path) => match DirWatcher::new(path, DIR_DEBOUNCE) {
                Ok(w) => dir_watcher = Some(w),
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "cannot watch the folder; changes are picked up on retries only")
                }
            },
            Reader::Git(git) => {
                let local = git
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .local_repository();
                if let Some(repo) = local {
                    match RefWatcher::new(&repo, REF_DEBOUNCE) {
                        Ok(w) => ref_watcher = Some(w),
                        Err(e) => {
                            tracing::warn!(source = %self.name, error = %e, "cannot watch the repository's refs; polling only")
                        }
                    }
                }
            }
        }
        let poll = self.spec.git.as_ref().map(|g| g.interval());
        let mut retry: Option<Duration> = None;
        let mut trigger = Trigger::SourceChanged;
        loop {
            match trigger {
                Trigger::Stop => return,
                Trigger::SourceChanged | Trigger::Retry => {
                    let ok = self.sync_source(&mut reader).await;
                    retry = if ok {
                        None
                    } else {
                        Some(retry.map_or(RETRY.0, |d| (d * 2).min(RETRY.1)))
                    };
                }
                Trigger::Drift => {
                    if let Some(snapshot) = self.applied.clone() {
                        tracing::debug!(source = %self.name, "owned objects changed; checking them");
                        self.correcting = true;
                        self.sync_snapshot(&snapshot).await;
                        self.correcting = false;
                        self.restore_failure().await;
                    }
                }
            }
            trigger = self
                .wait(
                    &cancel,
                    &mut drift_rx,
                    dir_watcher.as_mut(),
                    ref_watcher.as_mut(),
                    poll,
                    retry,
                )
                .await;
        }
    }

    /// Wait for the next reason to act. Changes to owned objects that match what this
    /// worker wrote (the echoes of its own applies) are absorbed here.
    async fn wait(
        &self,
        cancel: &CancellationToken,
        drift_rx: &mut mpsc::UnboundedReceiver<Drift>,
        mut dir_watcher: Option<&mut DirWatcher>,
        mut ref_watcher: Option<&mut RefWatcher>,
        poll: Option<Duration>,
        retry: Option<Duration>,
    ) -> Trigger {
        let sleep_or_never = |d: Option<Duration>| async move {
            match d {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let wait_poll = sleep_or_never(poll);
        let wait_retry = sleep_or_never(retry);
        tokio::pin!(wait_poll, wait_retry);
        loop {
            let dir_changed = async {
                match dir_watcher.as_deref_mut() {
                    Some(w) => w.changed().await.map_err(|e| e.to_string()),
                    None => std::future::pending().await,
                }
            };
            let ref_changed = async {
                match ref_watcher.as_deref_mut() {
                    Some(w) => w.changed().await.map_err(|e| e.to_string()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return Trigger::Stop,
                changed = dir_changed => {
                    if let Err(e) = changed {
                        tracing::warn!(source = %self.name, error = %e, "folder watch");
                    }
                    return Trigger::SourceChanged;
                }
                changed = ref_changed => {
                    if let Err(e) = changed {
                        tracing::warn!(source = %self.name, error = %e, "repository watch");
                    }
                    return Trigger::SourceChanged;
                }
                () = &mut wait_poll => return Trigger::SourceChanged,
                () = &mut wait_retry => return Trigger::Retry,
                Some(first) = drift_rx.recv() => {
                    let mut drifted = self.is_drift(&first);
                    // Gather the rest of a burst: one correction for many edits.
                    let deadline = tokio::time::sleep(DRIFT_DEBOUNCE);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            () = &mut deadline => break,
                            Some(more) = drift_rx.recv() => drifted |= self.is_drift(&more),
                        }
                    }
                    if drifted {
                        return Trigger::Drift;
                    }
                }
            }
        }
    }

    /// A change is drift when the object is one this worker applied and it no longer looks
    /// as it did then (or is gone).
    fn is_drift(&self, drift: &Drift) -> bool {
        match self.fingerprints.get(&drift.id) {
            None => false,
            Some(known) => drift.fingerprint != Some(*known),
        }
    }

    fn options(&self, revision: &str) -> PlanOptions {
        PlanOptions {
            source: self.name.clone(),
            revision: revision.to_owned(),
            default_namespace: self.spec.default_namespace().to_owned(),
            prune: self.spec.prune(),
            allow_empty: self.spec.allow_empty.unwrap_or(false),
        }
    }

    /// Read the source and sync its revision unless it is the one already applied.
    /// Returns false when the sync should be retried.
    async fn sync_source(&mut self, reader: &mut Reader) -> bool {
        let snapshot = match reader.read().await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                self.source_failed(&e).await;
                return false;
            }
        };
        if self
            .applied
            .as_ref()
            .is_some_and(|applied| applied.revision == snapshot.revision)
        {
            // Back at the applied revision (a failed one reverted): say so in the status.
            if self.failure.take().is_some() {
                return self.sync_snapshot(&snapshot).await;
            }
            return true;
        }
        self.sync_snapshot(&snapshot).await
    }

    async fn sync_snapshot(&mut self, snapshot: &Snapshot) -> bool {
        let started = std::time::Instant::now();
        let options = self.options(&snapshot.revision);
        let outcome = match sync::sync(
            &self.client,
            &self.catalog,
            snapshot,
            &options,
            true,
            &|_, _| {},
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "sync failed; retrying");
                metrics::source_synced(&self.name, SyncResult::Error, Some(started.elapsed()));
                let error = SyncError {
                    message: format!("talking to the API server: {e}"),
                    ..SyncError::default()
                };
                self.status.last_attempted_revision = Some(snapshot.revision.clone());
                self.status.errors = vec![error];
                self.write_status(None, None, "SyncFailed", &e.to_string())
                    .await;
                return false;
            }
        };
        let errors = outcome.errors().to_vec();
        for error in &errors {
            tracing::warn!(source = %self.name, revision = %short(&snapshot.revision), "{error}");
        }
        let applied = outcome.report.is_some() && errors.is_empty();
        let result = match (applied, outcome.report.is_some()) {
            (true, _) => SyncResult::Applied,
            (false, false) => SyncResult::Invalid,
            (false, true) => SyncResult::ApplyFailed,
        };
        metrics::source_synced(&self.name, result, Some(outcome.duration));
        if applied {
            metrics::source_revision(&self.name, &snapshot.revision);
        }
        self.record(&outcome);
        self.status.last_attempted_revision = Some(snapshot.revision.clone());
        self.status.errors = errors.clone();
        let counts = outcome.plan.counts();
        if applied {
            // A new revision applied supersedes a failed one; a drift correction (the same
            // revision again) does not.
            if self.applied.as_ref().map(|a| &a.revision) != Some(&snapshot.revision) {
                self.failure = None;
            }
            self.applied = Some(snapshot.clone());
            self.status.revision = Some(snapshot.revision.clone());
            let message = format!(
                "applied revision {}: {} created, {} updated, {} unchanged, {} pruned in {} ms",
                short(&snapshot.revision),
                counts.create,
                counts.update + counts.replace,
                counts.unchanged,
                counts.prune,
                outcome.duration.as_millis()
            );
            if counts.create + counts.update + counts.replace + counts.prune > 0 {
                if self.correcting {
                    tracing::info!(source = %self.name, "put back objects changed by hand: {message}");
                } else {
                    tracing::info!(source = %self.name, "{message}");
                }
            }
            self.write_status(Some(&outcome), Some(true), "Synced", &message)
                .await;
            true
        } else if outcome.report.is_none() {
            // The plan itself had errors: nothing was applied and only a change to the
            // source can fix it, so no retry.
            let message = format!(
                "revision {} not applied: {} error(s); the last good revision stays",
                short(&snapshot.revision),
                errors.len()
            );
            self.failure = Some((snapshot.revision.clone(), errors, message.clone()));
            self.write_status(Some(&outcome), Some(true), "InvalidRevision", &message)
                .await;
            true
        } else {
            let message = format!(
                "revision {} partly applied: {} write(s) failed",
                short(&snapshot.revision),
                errors.len()
            );
            self.write_status(Some(&outcome), None, "ApplyFailed", &message)
                .await;
            false
        }
    }

    /// Remember how every owned object looks now, and the inventory.
    fn record(&mut self, outcome: &Outcome) {
        let Some(report) = &outcome.report else {
            return;
        };
        let mut fingerprints = HashMap::new();
        let mut inventory = Vec::new();
        for entry in &outcome.plan.entries {
            if entry.action == Action::Prune {
                continue;
            }
            if let Some(fp) = report
                .fingerprints
                .get(&entry.id)
                .copied()
                .or(entry.live_fingerprint)
            {
                fingerprints.insert(entry.id.clone(), fp);
            }
            inventory.push(InventoryEntry {
                api_version: entry.id.api_version.clone(),
                kind: entry.id.kind.clone(),
                namespace: entry.id.namespace.clone(),
                name: entry.id.name.clone(),
            });
        }
        inventory.sort();
        self.fingerprints = fingerprints;
        self.status.inventory = inventory;
        self.status.created = report.created as i64;
        self.status.updated = report.updated as i64;
        self.status.unchanged = report.unchanged as i64;
        self.status.pruned = report.pruned as i64;
    }

    /// After a drift correction, show the failed newer revision again (if any).
    async fn restore_failure(&mut self) {
        let Some((revision, errors, message)) = self.failure.clone() else {
            return;
        };
        self.status.last_attempted_revision = Some(revision);
        self.status.errors = errors;
        self.write_status(None, Some(true), "InvalidRevision", &message)
            .await;
    }

    async fn source_failed(&mut self, error: &ReadError) {
        let message = self.source_error_message(error);
        tracing::warn!(source = %self.name, "cannot read the source: {message}");
        metrics::source_synced(&self.name, SyncResult::Unavailable, None);
        self.status.errors = vec![SyncError {
            message: message.clone(),
            ..SyncError::default()
        }];
        self.write_status(
            None,
            Some(error.is_permanent()),
            "SourceUnavailable",
            &message,
        )
        .await;
    }

    /// What a person reads about a source that cannot be read: the error with its causes
    /// (libgit2's own words say why a fetch failed), scrubbed of the URL's credentials. The
    /// git errors redact already; scrubbing again here means a cause that quotes the URL in
    /// some spelling the source did not foresee still never reaches the status or the log.
    fn source_error_message(&self, error: &ReadError) -> String {
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(error);
        while let Some(inner) = cause {
            let text = inner.to_string();
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            cause = inner.source();
        }
        match &self.spec.git {
            Some(git) => crate::gitops::source::git::scrub_message(&message, &git.url),
            None => message,
        }
    }

    /// Write the status: counts, errors, inventory, and the Ready/Stalled conditions.
    /// `stalled`: Some(true) when only a change to the source (or spec) can help.
    async fn write_status(
        &mut self,
        outcome: Option<&Outcome>,
        stalled: Option<bool>,
        reason: &str,
        message: &str,
    ) {
        let now = jiff::Timestamp::now();
        if let Some(outcome) = outcome {
            self.status.last_sync_time = Some(now.to_string());
            self.status.last_sync_duration = Some(format_duration(outcome.duration));
        }
        self.status.observed_generation = self.generation;
        let ready = reason == "Synced";
        set_condition(&mut self.status, "Ready", ready, reason, message, now);
        set_condition(
            &mut self.status,
            "Stalled",
            stalled.unwrap_or(false),
            if stalled.unwrap_or(false) {
                reason
            } else {
                "Progressing"
            },
            if stalled.unwrap_or(false) {
                message
            } else {
                ""
            },
            now,
        );
        let mut status = serde_json::to_value(&self.status).unwrap_or(Value::Null);
        // A merge patch leaves out keys untouched: clear emptied lists explicitly.
        if let Some(map) = status.as_object_mut() {
            for key in ["errors", "inventory", "conditions"] {
                map.entry(key).or_insert_with(|| json!([]));
            }
        }
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &manifest_source_resource());
        let patch = json!({"status": status});
        if let Err(e) = api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(source = %self.name, error = %e, "writing the source's status");
        }
    }
}

fn set_condition(
    status: &mut ManifestSourceStatus,
    kind: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    let text = if value { "True" } else { "False" };
    let previous = status.conditions.iter().position(|c| c.type_ == kind);
    let transition = match previous.map(|i| &status.conditions[i]) {
        Some(c) if c.status == text => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: kind.to_owned(),
        status: text.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: transition,
        observed_generation: status.observed_generation,
    };
    match previous {
        Some(i) => status.conditions[i] = condition,
        None => status.conditions.push(condition),
    }
}

/// `64ms`, `1.2s`.
pub fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A revision as people read it: 7 characters of a commit or content hash.
pub fn short(revision: &str) -> String {
    revision
        .strip_prefix("sha256:")
        .unwrap_or(revision)
        .chars()
        .take(7)
        .collect()
}

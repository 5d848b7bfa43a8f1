//! Carrying out a [`Plan`]: server-side apply under the source's field manager in
//! dependency order (each tier concurrently), replacements (delete, wait, create), then
//! prunes in reverse dependency order. Only a plan without errors is ever applied.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::Client;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use serde_json::Value;

use super::kinds::{ObjectId, tier};
use super::plan::{
    Action, CONCURRENCY, Entry, Plan, api_for, field_manager, fingerprint, safe_message,
};
use crate::api::manifest_source::SyncError;

/// How long a replacement waits for the old object to go away.
const REPLACE_TIMEOUT: Duration = Duration::from_secs(60);

/// What an apply did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Objects created.
    pub created: usize,
    /// Objects updated (replacements included).
    pub updated: usize,
    /// Objects already as desired.
    pub unchanged: usize,
    /// Objects pruned.
    pub pruned: usize,
    /// Every write that failed.
    pub errors: Vec<SyncError>,
    /// Fingerprints ([`fingerprint`]) of every object the source now owns, as last written
    /// or seen: a later change with another fingerprint is drift.
    pub fingerprints: HashMap<ObjectId, u64>,
}

/// Called after each object is done: the entry and, on failure, the error.
pub type Progress<'a> = &'a (dyn Fn(&Entry, Option<&SyncError>) + Send + Sync);

/// Apply `plan`. A plan with errors applies nothing and its errors are returned.
pub async fn execute(client: &Client, plan: &Plan, progress: Progress<'_>) -> Report {
    let mut report = Report::default();
    if !plan.errors.is_empty() {
        report.errors = plan.errors.clone();
        return report;
    }
    let manager = field_manager(&plan.source);
    let mut tiers: Vec<u8> = plan
        .entries
        .iter()
        .map(|e| tier(e.id.group(), &e.id.kind))
        .collect();
    tiers.sort_unstable();
    tiers.dedup();

    for &t in &tiers {
        // Collected first: a lazy iterator of closures held across the await below makes
        // the future's Send-ness unprovable to rustc (higher-ranked lifetimes).
        let batch: Vec<BoxFuture<'_, _>> = plan
            .entries
            .iter()
            .filter(|e| e.action != Action::Prune && tier(e.id.group(), &e.id.kind) == t)
            .map(|entry| {
                let manager = manager.clone();
                async move { (entry, apply_one(client, entry, &manager).await) }.boxed()
            })
            .collect();
        let results = futures::stream::iter(batch)
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for (entry, result) in results {
            match result {
                Ok(written) => {
                    match entry.action {
                        Action::Create => report.created += 1,
                        Action::Update | Action::Replace => report.updated += 1,
                        _ => report.unchanged += 1,
                    }
                    if let Some(fp) = written {
                        report.fingerprints.insert(entry.id.clone(), fp);
                    }
                    progress(entry, None);
                }
                Err(error) => {
                    progress(entry, Some(&error));
                    report.errors.push(error);
                }
            }
        }
    }

    for &t in tiers.iter().rev() {
        let batch: Vec<BoxFuture<'_, _>> = plan
            .entries
            .iter()
            .filter(|e| e.action == Action::Prune && tier(e.id.group(), &e.id.kind) == t)
            .map(|entry| async move { (entry, prune_one(client, entry).await) }.boxed())
            .collect();
        let results = futures::stream::iter(batch)
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for (entry, result) in results {
            match result {
                Ok(()) => {
                    report.pruned += 1;
                    progress(entry, None);
                }
                Err(error) => {
                    progress(entry, Some(&error));
                    report.errors.push(error);
                }
            }
        }
    }
    report
        .errors
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    report
}

/// A failed write as the source's status shows it. The server's message can quote the
/// object (a validation error echoes the offending value), so for a Secret it is scrubbed
/// of the Secret's values first ([`safe_message`]).
fn failed(entry: &Entry, what: &str, error: impl std::fmt::Display) -> SyncError {
    let error = match &entry.apply {
        Some(object) => safe_message(&entry.id, object, &error.to_string()),
        None => error.to_string(),
    };
    let message = match what {
        "" => format!("{}: {error}", entry.id),
        what => format!("{} {}: {error}", what, entry.id),
    };
    SyncError {
        file: entry.file.clone(),
        line: i64::try_from(entry.line).unwrap_or(i64::MAX),
        message,
    }
}

fn api_message(error: kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

/// Apply one entry; the fingerprint of what the server now holds.
async fn apply_one(
    client: &Client,
    entry: &Entry,
    manager: &str,
) -> Result<Option<u64>, SyncError> {
    let Some(object) = &entry.apply else {
        return Ok(None);
    };
    let api = api_for(client, &entry.kind, &entry.id.namespace);
    if entry.action == Action::Unchanged {
        return Ok(entry.live_fingerprint);
    }
    if entry.action == Action::Replace {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&entry.id.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(failed(entry, "deleting (to replace)", api_message(e))),
        }
        let deadline = Instant::now() + REPLACE_TIMEOUT;
        loop {
            match api.get_opt(&entry.id.name).await {
                Ok(None) => break,
                Ok(Some(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Some(_)) => {
                    return Err(failed(
                        entry,
                        "replacing",
                        "the old object was not gone after 60 s (finalizers?)",
                    ));
                }
                Err(e) => return Err(failed(entry, "replacing", api_message(e))),
            }
        }
    }
    let params = PatchParams::apply(manager).force();
    match api
        .patch(&entry.id.name, &params, &Patch::Apply(object))
        .await
    {
        Ok(written) => {
            let value = serde_json::to_value(written).unwrap_or(Value::Null);
            Ok(Some(fingerprint(&value)))
        }
        Err(e) => Err(failed(entry, "", api_message(e))),
    }
}

async fn prune_one(client: &Client, entry: &Entry) -> Result<(), SyncError> {
    let api = api_for(client, &entry.kind, &entry.id.namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(&entry.id.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(failed(entry, "pruning", api_message(e))),
    }
}

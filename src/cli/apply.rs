//! `moor apply`: one sync of a folder or git revision, with the semantics of a
//! ManifestSource (validate everything first, apply in dependency order with server-side
//! apply, prune what the source owns and no longer defines), printing each object as it
//! is done.

use std::process::ExitCode;
use std::sync::Mutex;

use clap::Args;

use super::diff::{SourceArgs, color};
use crate::api::manifest_source::SyncError;
use crate::gitops::controller::{format_duration, short};
use crate::gitops::plan::{Action, Entry};
use crate::gitops::sync;

/// `moor apply ...`
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Run `moor apply`: exit 0 when everything applied, 1 when anything failed.
pub async fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let prepared = match args.source.prepare().await {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let paint = color();
    // A std mutex: only held to print one line, never across an await.
    let out = Mutex::new(std::io::stdout());
    let progress = |entry: &Entry, error: Option<&SyncError>| {
        use std::io::Write;
        let verb = match (entry.action, error) {
            (_, Some(_)) => "failed",
            (Action::Create, None) => "created",
            (Action::Update, None) => "updated",
            (Action::Replace, None) => "replaced",
            (Action::Prune, None) => "pruned",
            (Action::Unchanged, None) => return,
        };
        let line = match error {
            Some(error) => format!("{verb:>9} {}: {error}", entry.id),
            None => format!("{verb:>9} {}", entry.id),
        };
        let line = if paint && error.is_some() {
            let style = anstyle::AnsiColor::Red.on_default();
            format!("{style}{line}{style:#}")
        } else {
            line
        };
        let mut out = out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = writeln!(out, "{line}");
    };
    let outcome = sync::sync(
        &prepared.client,
        &prepared.catalog,
        &prepared.snapshot,
        &prepared.options,
        true,
        &progress,
    )
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: talking to the API server: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let Some(report) = &outcome.report else {
        for error in &outcome.plan.errors {
            eprintln!("error: {error}");
        }
        eprintln!(
            "nothing applied: revision {} has {} error(s)",
            short(&prepared.snapshot.revision),
            outcome.plan.errors.len()
        );
        return Ok(ExitCode::FAILURE);
    };
    println!(
        "{} revision {} as source {:?}: {} created, {} updated, {} unchanged, {} pruned in {}",
        if report.errors.is_empty() {
            "applied"
        } else {
            "partly applied"
        },
        short(&prepared.snapshot.revision),
        prepared.options.source,
        report.created,
        report.updated,
        report.unchanged,
        report.pruned,
        format_duration(outcome.duration)
    );
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

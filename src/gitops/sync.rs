//! One sync of one revision: read the source, load its manifests, plan against the live
//! cluster (server-side dry-run of everything), and — only when nothing at all is wrong —
//! apply. Shared by the source controller, `moor apply` and `moor diff` (which stops after
//! the plan), so the three can never disagree.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;

use super::apply::{self, Progress, Report};
use super::kinds::Catalog;
use super::loader;
use super::plan::{self, Plan, PlanOptions};
use super::source::Snapshot;
use super::source::dir::{self, DirError};
use super::source::git::{GitConfig, GitError, GitReference, GitSource};
use crate::api::manifest_source::{DirectorySpec, GitSpec, ManifestSourceSpec, SyncError};

/// Where a source reads from, opened.
pub enum Reader {
    /// A folder.
    Dir(PathBuf),
    /// A git repository (its mirror lives in the config's cache dir). Behind a std mutex
    /// because fetching is blocking work done on the blocking pool; it is only ever locked
    /// there, never across an await.
    Git(Arc<Mutex<GitSource>>),
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The folder source failed.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// The git source failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The spec names neither a folder nor a repository.
    #[error("the source names neither spec.directory nor spec.git")]
    NoSource,
    /// The blocking reader task died.
    #[error("reading the source: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Turn a user's `--ref` into a reference: a 7–40 digit hex id is a commit, `refs/tags/X`
/// or `tags/X` a tag, `refs/heads/X` or anything else a branch; empty means the remote's
/// default branch.
pub fn parse_reference(text: &str) -> GitReference {
    let text = text.trim();
    if text.is_empty() {
        GitReference::DefaultBranch
    } else if (7..=40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        GitReference::Commit(text.to_owned())
    } else if let Some(tag) = text
        .strip_prefix("refs/tags/")
        .or_else(|| text.strip_prefix("tags/"))
    {
        GitReference::Tag(tag.to_owned())
    } else {
        GitReference::Branch(text.strip_prefix("refs/heads/").unwrap_or(text).to_owned())
    }
}

/// The spec of a folder source, from a path as a user typed it: the folder's absolute path
/// (the server may run anywhere, and `moor diff` finds a source by it).
pub fn directory_spec(dir: &Path) -> std::io::Result<ManifestSourceSpec> {
    let absolute = std::fs::canonicalize(dir)?;
    Ok(ManifestSourceSpec {
        directory: Some(DirectorySpec {
            path: absolute.to_string_lossy().into_owned(),
        }),
        ..ManifestSourceSpec::default()
    })
}

/// The spec of a git source from what a user types (`--git URL --ref REF --path SUB`): a
/// local repository path is made absolute, the ref parsed by [`parse_reference`].
pub fn git_spec(url: &str, reference: &str, path: &str) -> ManifestSourceSpec {
    let url = match std::fs::canonicalize(url) {
        Ok(local) if !url.contains("://") => local.to_string_lossy().into_owned(),
        _ => url.to_owned(),
    };
    let mut git = GitSpec {
        url,
        path: (!path.is_empty()).then(|| path.to_owned()),
        ..GitSpec::default()
    };
    match parse_reference(reference) {
        GitReference::Branch(b) => git.branch = Some(b),
        GitReference::Tag(t) => git.tag = Some(t),
        GitReference::Commit(c) => git.commit = Some(c),
        GitReference::DefaultBranch => {}
    }
    ManifestSourceSpec {
        git: Some(git),
        ..ManifestSourceSpec::default()
    }
}

impl ReadError {
    /// Whether retrying cannot help without a change to the source or the spec (a wrong ref,
    /// a missing path, invalid names), as opposed to a remote that is down for now.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            ReadError::Git(GitError::Fetch { .. }) | ReadError::Task(_)
        )
    }
}

impl Reader {
    /// Open the source a ManifestSource spec names; a git mirror goes to `cache_dir`.
    pub fn open(spec: &ManifestSourceSpec, cache_dir: PathBuf) -> Result<Reader, ReadError> {
        if let Some(directory) = &spec.directory {
            return Ok(Reader::Dir(PathBuf::from(&directory.path)));
        }
        let Some(git) = &spec.git else {
            return Err(ReadError::NoSource);
        };
        let reference = match (&git.branch, &git.tag, &git.commit) {
            (Some(branch), _, _) => GitReference::Branch(branch.clone()),
            (_, Some(tag), _) => GitReference::Tag(tag.clone()),
            (_, _, Some(commit)) => GitReference::Commit(commit.clone()),
            _ => GitReference::DefaultBranch,
        };
        let config = GitConfig {
            url: git.url.clone(),
            reference,
            path: git.path.clone().unwrap_or_default(),
            cache_dir,
        };
        Ok(Reader::Git(Arc::new(Mutex::new(GitSource::new(config)?))))
    }

    /// Read the current revision (fetching first, for git). Runs the blocking work on the
    /// blocking pool.
    pub async fn read(&mut self) -> Result<Snapshot, ReadError> {
        match self {
            Reader::Dir(path) => {
                let path = path.clone();
                Ok(tokio::task::spawn_blocking(move || dir::read(&path)).await??)
            }
            Reader::Git(source) => {
                let source = source.clone();
                let fetched = tokio::task::spawn_blocking(move || {
                    let mut source = source
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    source.fetch()
                })
                .await?;
                Ok(fetched?)
            }
        }
    }
}

/// What one sync found and did.
#[derive(Debug)]
pub struct Outcome {
    /// The plan (with every error found while loading and planning).
    pub plan: Plan,
    /// What the apply did; None when the plan had errors or only a plan was asked for.
    pub report: Option<Report>,
    /// How long the whole sync took.
    pub duration: Duration,
}

impl Outcome {
    /// Every error: the plan's, or the apply's.
    pub fn errors(&self) -> &[SyncError] {
        match &self.report {
            Some(report) => &report.errors,
            None => &self.plan.errors,
        }
    }
}

/// Load, plan and (when `apply`, and the plan has no errors) apply one snapshot.
pub async fn sync(
    client: &Client,
    catalog: &Catalog,
    snapshot: &Snapshot,
    options: &PlanOptions,
    apply: bool,
    progress: Progress<'_>,
) -> Result<Outcome, kube::Error> {
    let started = Instant::now();
    let (manifests, load_errors) = loader::load(&snapshot.files);
    tracing::debug!(
        documents = manifests.len(),
        "loaded in {:?}",
        started.elapsed()
    );
    let mut errors: Vec<SyncError> = load_errors
        .into_iter()
        .map(|e| SyncError {
            file: e.file,
            line: i64::try_from(e.line).unwrap_or(i64::MAX),
            message: e.message,
        })
        .collect();
    let (desired, prepare_errors) = plan::prepare(manifests, catalog, options);
    errors.extend(prepare_errors);
    let planning = Instant::now();
    let plan = plan::plan(client, catalog, desired, errors, options).await?;
    tracing::debug!(counts = ?plan.counts(), "planned in {:?}", planning.elapsed());
    let report = if apply && plan.errors.is_empty() {
        Some(apply::execute(client, &plan, progress).await)
    } else {
        None
    };
    Ok(Outcome {
        plan,
        report,
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_git_users_write_them() {
        assert_eq!(parse_reference(""), GitReference::DefaultBranch);
        assert_eq!(parse_reference("main"), GitReference::Branch("main".into()));
        assert_eq!(
            parse_reference("refs/heads/dev"),
            GitReference::Branch("dev".into())
        );
        assert_eq!(
            parse_reference("tags/v1.2"),
            GitReference::Tag("v1.2".into())
        );
        assert_eq!(
            parse_reference("refs/tags/v1.2"),
            GitReference::Tag("v1.2".into())
        );
        assert_eq!(
            parse_reference("3f2a91c"),
            GitReference::Commit("3f2a91c".into())
        );
        assert_eq!(
            parse_reference("release-1"),
            GitReference::Branch("release-1".into())
        );
    }
}

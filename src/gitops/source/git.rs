//! The git source: follows a branch, tag, commit or the default branch of a repository and
//! reads the manifests of one sub-path of a commit into a [`Snapshot`].
//!
//! This module owns the source's private bare mirror (`GitConfig::cache_dir`: created,
//! fetched into, wiped and re-cloned when corrupt), credential lookup for fetches, URL
//! redaction for every message that names a remote, and [`RefWatcher`], which notices new
//! commits in a *local* repository without polling. It never checks out a working tree and
//! never writes to the remote or to a watched repository; parsing the manifests and applying
//! them belong to the loader and the planner.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Once;
use std::time::Duration;

use git2::{
    AutotagOption, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions,
    ObjectType, Oid, RemoteCallbacks, Repository, Tree,
};
use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tracing::{debug, warn};

use super::{
    IGNORE_FILE, MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, Snapshot, SourceFile, is_manifest_file,
};

/// Which commit of the remote a [`GitSource`] follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitReference {
    /// The tip of a branch (`main`, or `refs/heads/main`); force-pushes are followed.
    Branch(String),
    /// The commit a tag points at (`v1.2.0`, or `refs/tags/v1.2.0`); annotated tags are
    /// peeled to their commit.
    Tag(String),
    /// A fixed commit: 7 to 40 hex digits.
    Commit(String),
    /// Whatever branch the remote's `HEAD` names.
    DefaultBranch,
}

impl fmt::Display for GitReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitReference::Branch(name) => write!(f, "branch {name:?}"),
            GitReference::Tag(name) => write!(f, "tag {name:?}"),
            GitReference::Commit(id) => write!(f, "commit {id}"),
            GitReference::DefaultBranch => f.write_str("the default branch (remote HEAD)"),
        }
    }
}

/// Where a [`GitSource`] reads from and where it keeps its mirror.
#[derive(Clone, PartialEq, Eq)]
pub struct GitConfig {
    /// The remote: `https://`, `ssh://`, scp-style `user@host:path`, `file://` or a local path.
    pub url: String,
    /// The commit to read.
    pub reference: GitReference,
    /// The directory inside the repository holding the manifests; `""` is the root.
    /// `./deploy/` and `deploy` mean the same; `..` components and absolute paths are refused.
    pub path: String,
    /// This source's own directory (under moor's data dir) for the bare mirror.
    pub cache_dir: PathBuf,
}

// By hand so that `{:?}` of a config can never print a password embedded in the URL.
impl fmt::Debug for GitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitConfig")
            .field("url", &redact_url(&self.url))
            .field("reference", &self.reference)
            .field("path", &self.path)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

/// What went wrong reading a git source or watching a local repository. Every message that
/// names a remote carries its URL with credentials removed ([`redact_url`]).
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The configured URL can never work.
    #[error("invalid git URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The configured branch, tag or commit is not a valid name or id.
    #[error("invalid {reference}: {reason}")]
    InvalidReference {
        /// The reference as configured.
        reference: GitReference,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The configured sub-path is absolute, climbs out with `..`, or holds a NUL byte.
    #[error("invalid path {path:?} inside the repository: {reason}")]
    InvalidPath {
        /// The path as configured.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The cache directory cannot be created, read or wiped, or is not this source's own.
    #[error("git cache directory {}: {reason}", dir.display())]
    CacheDir {
        /// The cache directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
        /// The I/O error, if there was one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The mirror is damaged (objects missing, unreadable refs, stale locks). [`GitSource::fetch`]
    /// wipes and re-clones once before it returns this.
    #[error("git cache {} is unusable", dir.display())]
    CacheCorrupt {
        /// The cache directory.
        dir: PathBuf,
        /// What libgit2 reported.
        #[source]
        source: git2::Error,
    },
    /// Talking to the remote failed: unreachable, refused credentials, bad certificate, ...
    #[error("fetching {reference} from {url} failed")]
    Fetch {
        /// The URL, redacted.
        url: String,
        /// The reference being fetched.
        reference: GitReference,
        /// What libgit2 reported, with credentials scrubbed from its message.
        #[source]
        source: git2::Error,
    },
    /// The remote has no such branch or tag, or no such commit is reachable from its refs.
    #[error("{reference} not found in {url}")]
    RefNotFound {
        /// The URL, redacted.
        url: String,
        /// The reference that was looked for.
        reference: GitReference,
    },
    /// An abbreviated commit id matches more than one object.
    #[error("commit prefix {prefix} is ambiguous in {url}: give more hex digits")]
    AmbiguousCommit {
        /// The URL, redacted.
        url: String,
        /// The abbreviated id.
        prefix: String,
    },
    /// The reference resolves to a tree or a blob rather than a commit.
    #[error("{reference} in {url} points at a {kind}, not a commit")]
    NotACommit {
        /// The URL, redacted.
        url: String,
        /// The reference.
        reference: GitReference,
        /// What it points at.
        kind: String,
    },
    /// The sub-path does not exist in the commit. Callers must not treat this as "no
    /// manifests": applying it would prune everything.
    #[error("path {path:?} not found in commit {commit} of {url}")]
    PathNotFound {
        /// The URL, redacted.
        url: String,
        /// The sub-path.
        path: String,
        /// The commit id.
        commit: String,
    },
    /// The sub-path exists in the commit but is not a directory.
    #[error("path {path:?} in commit {commit} of {url} is a {kind}, not a directory")]
    NotADirectory {
        /// The URL, redacted.
        url: String,
        /// The sub-path.
        path: String,
        /// The commit id.
        commit: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// A symlink under the sub-path cannot be read safely.
    #[error(
        "symlink {path:?} -> {target:?} in commit {commit} of {url} {problem}; \
         list it in .moorignore to leave it out"
    )]
    Symlink {
        /// The URL, redacted.
        url: String,
        /// The commit id.
        commit: String,
        /// The link, relative to the sub-path.
        path: String,
        /// Where it points.
        target: String,
        /// Why it is refused.
        problem: &'static str,
    },
    /// A component of the configured sub-path is a symlink. Refused rather than followed:
    /// git resolves nothing, and a link is how a sub-path would leave the directory it names.
    #[error(
        "path {path:?} in commit {commit} of {url} goes through the symlink {link:?} -> \
         {target:?}; name the real directory instead"
    )]
    SubPathSymlink {
        /// The URL, redacted.
        url: String,
        /// The commit id.
        commit: String,
        /// The configured sub-path.
        path: String,
        /// The symlink on it, relative to the repository root.
        link: String,
        /// Where it points.
        target: String,
    },
    /// A file under the sub-path is bigger than [`MAX_FILE_BYTES`]; refused before it is
    /// read.
    #[error(
        "{path} in commit {commit} of {url} is {size} bytes, more than the {} MiB a manifest \
         file may hold",
        limit / (1024 * 1024)
    )]
    FileTooLarge {
        /// The URL, redacted.
        url: String,
        /// The commit id.
        commit: String,
        /// The file, relative to the sub-path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The sub-path holds more manifest files, or more bytes of them, than one snapshot may.
    #[error("commit {commit} of {url} holds more than {limit} {what}; refusing to read it all")]
    TooMuch {
        /// The URL, redacted.
        url: String,
        /// The commit id.
        commit: String,
        /// The limit passed ([`MAX_FILES`] or [`MAX_TOTAL_BYTES`]).
        limit: u64,
        /// What was counted: `manifest files` or `bytes of manifests`.
        what: &'static str,
    },
    /// A `.moorignore` file in the commit cannot be used.
    #[error("{path}:{line} in commit {commit} of {url}: {reason}")]
    IgnoreFile {
        /// The URL, redacted.
        url: String,
        /// The commit id.
        commit: String,
        /// The ignore file, relative to the sub-path.
        path: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file or directory name that could hold manifests is not UTF-8.
    #[error("a name in directory {dir:?} of commit {commit} of {url} is not UTF-8: {name:?}")]
    NonUtf8Name {
        /// The URL, redacted.
        url: String,
        /// The commit id.
        commit: String,
        /// The directory holding it, relative to the sub-path.
        dir: String,
        /// The name, with invalid bytes replaced.
        name: String,
    },
    /// The directory given to [`RefWatcher::new`] is not a git repository.
    #[error("cannot open git repository {} to watch it", path.display())]
    WatchOpen {
        /// The directory.
        path: PathBuf,
        /// What libgit2 reported.
        #[source]
        source: git2::Error,
    },
    /// Setting up a file watch failed.
    #[error("cannot watch {}", path.display())]
    Watch {
        /// The watched path.
        path: PathBuf,
        /// What the watcher reported.
        #[source]
        source: notify_debouncer_full::notify::Error,
    },
    /// The watcher's background thread is gone; no more changes will be reported.
    #[error("the watcher of repository {} stopped", path.display())]
    WatcherStopped {
        /// The watched repository.
        path: PathBuf,
    },
}

/// A file whose presence marks a directory as a mirror this module created, so that a
/// misconfigured `cache_dir` pointing at someone's data is refused instead of wiped.
const CACHE_MARKER: &str = "moor-git-mirror";

/// Private key files tried, in order, after the ssh-agent.
const SSH_KEY_FILES: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// How long a TCP connect to a remote may take before the fetch fails.
const CONNECT_TIMEOUT_MS: i32 = 15_000;
/// How long a single read or write on a remote connection may stall.
const IO_TIMEOUT_MS: i32 = 60_000;

/// Reads manifests from one git repository, keeping a bare mirror in its cache directory.
pub struct GitSource {
    config: GitConfig,
    /// The open mirror, kept between fetches; dropped whenever it is wiped.
    repo: Option<Repository>,
}

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GitSource {
    /// Checks the configuration (URL, reference, sub-path) without touching the network or
    /// the cache directory. The sub-path and reference are normalised (`./deploy/` →
    /// `deploy`, `refs/heads/main` → `main`, commit ids lower-cased).
    pub fn new(mut config: GitConfig) -> Result<Self, GitError> {
        validate_url(&config.url)?;
        config.reference = normalize_reference(config.reference)?;
        config.path = normalize_sub_path(&config.path)?;
        if config.cache_dir.as_os_str().is_empty() {
            return Err(GitError::CacheDir {
                dir: config.cache_dir,
                reason: "no cache directory given".to_owned(),
                source: None,
            });
        }
        Ok(GitSource { config, repo: None })
    }

    /// The configuration, normalised.
    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// Fetches the reference from the remote into the mirror, resolves it to a commit and
    /// reads the manifests under the sub-path straight from that commit's tree.
    ///
    /// Blocking: call it from `spawn_blocking`. A commit pin already present in the mirror
    /// is read without contacting the remote. A damaged mirror is wiped and re-cloned once.
    pub fn fetch(&mut self) -> Result<Snapshot, GitError> {
        configure_timeouts();
        match self.fetch_once() {
            Err(GitError::CacheCorrupt { dir, source }) => {
                warn!(
                    cache = %dir.display(),
                    url = %redact_url(&self.config.url),
                    error = %source,
                    "git cache is damaged; wiping it and cloning again"
                );
                self.repo = None;
                wipe_cache(&self.config.cache_dir)?;
                self.fetch_once()
            }
            other => other,
        }
    }

    /// The repository directory when the URL is a local path or a `file://` URL, for
    /// [`RefWatcher`]; `None` for network remotes.
    pub fn local_repository(&self) -> Option<PathBuf> {
        local_path(&self.config.url)
    }

    fn fetch_once(&mut self) -> Result<Snapshot, GitError> {
        let repo = match self.repo.take() {
            Some(repo) => repo,
            None => open_cache(&self.config.cache_dir)?,
        };
        let result = resolve_commit(&self.config, &repo)
            .and_then(|oid| read_snapshot(&self.config, &repo, oid));
        self.repo = Some(repo);
        result
    }
}

/// Sets libgit2's network timeouts once per process, so that a remote that accepts a
/// connection and then goes silent fails the fetch instead of hanging its thread forever.
fn configure_timeouts() {
    static TIMEOUTS: Once = Once::new();
    TIMEOUTS.call_once(|| {
        // SAFETY: these write plain C globals that libgit2 reads when it opens or uses a
        // network connection. Every libgit2 network operation in moor runs through
        // `GitSource::fetch`, which passes this `Once` first; `call_once` returning
        // synchronises-with the completed write, so no read of these globals can race with
        // it. The values are in range for `c_int`.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS);
            let _ = git2::opts::set_server_timeout_in_milliseconds(IO_TIMEOUT_MS);
        }
    });
}

fn validate_url(url: &str) -> Result<(), GitError> {
    let invalid = |reason| GitError::InvalidUrl {
        url: redact_url(url),
        reason,
    };
    if url.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    if url.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    Ok(())
}

fn normalize_reference(reference: GitReference) -> Result<GitReference, GitError> {
    let invalid = |reference, reason| GitError::InvalidReference { reference, reason };
    match reference {
        GitReference::Branch(name) => {
            let short = name.strip_prefix("refs/heads/").unwrap_or(&name).to_owned();
            if short.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{short}")) {
                return Err(invalid(
                    GitReference::Branch(name),
                    "not a valid git branch name",
                ));
            }
            Ok(GitReference::Branch(short))
        }
        GitReference::Tag(name) => {
            let short = name.strip_prefix("refs/tags/").unwrap_or(&name).to_owned();
            if short.is_empty() || !git2::Reference::is_valid_name(&format!("refs/tags/{short}")) {
                return Err(invalid(GitReference::Tag(name), "not a valid git tag name"));
            }
            Ok(GitReference::Tag(short))
        }
        GitReference::Commit(id) => {
            if !(7..=40).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    GitReference::Commit(id),
                    "a commit id is 7 to 40 hex digits",
                ));
            }
            Ok(GitReference::Commit(id.to_ascii_lowercase()))
        }
        GitReference::DefaultBranch => Ok(GitReference::DefaultBranch),
    }
}

/// `./deploy//apps/` → `deploy/apps`; `.` and `` → the root.
fn normalize_sub_path(path: &str) -> Result<String, GitError> {
    let invalid = |reason| GitError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if path.contains('\0') {
        return Err(invalid("it contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(invalid(
            "it must be relative to the repository root, not absolute",
        ));
    }
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(invalid("it must not contain `..`")),
            other => components.push(other),
        }
    }
    Ok(components.join("/"))
}

// ---------------------------------------------------------------------------------------
// The mirror.

fn cache_dir_error(dir: &Path, reason: &str, source: std::io::Error) -> GitError {
    GitError::CacheDir {
        dir: dir.to_owned(),
        reason: reason.to_owned(),
        source: Some(source),
    }
}

/// Opens the mirror, creating it in an empty or missing directory. A non-empty directory
/// without the marker is refused: it is not ours to write into or wipe.
fn open_cache(dir: &Path) -> Result<Repository, GitError> {
    std::fs::create_dir_all(dir).map_err(|e| cache_dir_error(dir, "cannot create it", e))?;
    let is_empty = std::fs::read_dir(dir)
        .map_err(|e| cache_dir_error(dir, "cannot list it", e))?
        .next()
        .is_none();
    if is_empty {
        // The marker goes first: a crash before `init_bare` finishes leaves a directory that
        // is recognisably ours, so the next start may wipe it.
        std::fs::write(
            dir.join(CACHE_MARKER),
            "A bare git mirror owned by moor. It is safe to delete.\n",
        )
        .map_err(|e| cache_dir_error(dir, "cannot write to it", e))?;
        return Repository::init_bare(dir).map_err(|source| GitError::CacheCorrupt {
            dir: dir.to_owned(),
            source,
        });
    }
    if !dir.join(CACHE_MARKER).is_file() {
        return Err(GitError::CacheDir {
            dir: dir.to_owned(),
            reason: format!(
                "it is not empty and has no {CACHE_MARKER} file, so it is not a mirror moor \
                 created; refusing to use or delete it"
            ),
            source: None,
        });
    }
    remove_stale_locks(dir);
    Repository::open_bare(dir).map_err(|source| GitError::CacheCorrupt {
        dir: dir.to_owned(),
        source,
    })
}

/// Deletes the `*.lock` files a crash mid-fetch leaves behind (libgit2 reports them as a
/// plain OS error, not as damage). Safe because the mirror belongs to this source alone and a
/// source fetches one at a time, so no lock can be live while the mirror is being opened.
fn remove_stale_locks(dir: &Path) {
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            // Locks live beside the refs (`refs/**`) and at the top (`packed-refs.lock`,
            // `HEAD.lock`, `config.lock`); the object store has none.
            if is_dir && (current != dir || entry.file_name() == "refs") {
                pending.push(path);
            } else if !is_dir && path.extension().is_some_and(|ext| ext == "lock") {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        warn!(lock = %path.display(), "removed a stale lock from the git cache")
                    }
                    Err(error) => {
                        warn!(lock = %path.display(), %error, "cannot remove a stale lock")
                    }
                }
            }
        }
    }
}

fn wipe_cache(dir: &Path) -> Result<(), GitError> {
    if dir.exists() && !dir.join(CACHE_MARKER).is_file() {
        return Err(GitError::CacheDir {
            dir: dir.to_owned(),
            reason: format!("has no {CACHE_MARKER} file; refusing to delete it"),
            source: None,
        });
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(cache_dir_error(dir, "cannot delete it", e)),
    }
}

/// Fetch errors that mean the mirror itself is damaged (unreadable objects or refs, a lock
/// left by a crash), so wiping and re-cloning can help. Network and OS errors are not among
/// them: wiping a good mirror because a remote is down would throw away pinned commits.
fn is_local_damage(err: &git2::Error) -> bool {
    err.code() == ErrorCode::Locked
        || matches!(
            err.class(),
            ErrorClass::Odb
                | ErrorClass::Zlib
                | ErrorClass::Object
                | ErrorClass::Repository
                | ErrorClass::Reference
                | ErrorClass::Index
        )
}

fn corrupt(config: &GitConfig) -> impl Fn(git2::Error) -> GitError + '_ {
    move |err| GitError::CacheCorrupt {
        dir: config.cache_dir.clone(),
        source: scrub_error(err, &config.url),
    }
}

// ---------------------------------------------------------------------------------------
// Resolving the reference to a commit.

/// Finds the commit to read, fetching from the remote unless a pinned commit is already here.
fn resolve_commit(config: &GitConfig, repo: &Repository) -> Result<Oid, GitError> {
    if let GitReference::Commit(id) = &config.reference
        && let Some(oid) = lookup_commit(config, repo, id)?
    {
        debug!(url = %redact_url(&config.url), commit = %oid, "pinned commit already in the cache");
        return Ok(oid);
    }

    let attempts = RefCell::new(CredentialAttempts::default());
    // Connecting reads nothing from the mirror, so its errors are always the remote's.
    let remote_error = |source: git2::Error| GitError::Fetch {
        url: redact_url(&config.url),
        reference: config.reference.clone(),
        source: scrub_error(source, &config.url),
    };
    let fetch_error = |source: git2::Error| {
        if is_local_damage(&source) {
            corrupt(config)(source)
        } else {
            remote_error(source)
        }
    };
    let not_found = || GitError::RefNotFound {
        url: redact_url(&config.url),
        reference: config.reference.clone(),
    };

    let mut remote = repo.remote_anonymous(&config.url).map_err(remote_error)?;
    // One connection for the advertisement and the download: the advertisement tells whether
    // the ref exists at all (a plain fetch of a missing ref silently leaves a stale local copy).
    let mut connection = remote
        .connect_auth(
            Direction::Fetch,
            Some(credential_callbacks(config, repo, &attempts)),
            None,
        )
        .map_err(remote_error)?;
    let heads: Vec<(String, Oid)> = connection
        .list()
        .map_err(remote_error)?
        .iter()
        .map(|head| (head.name().to_owned(), head.oid()))
        .collect();
    let advertised = |name: &str| {
        heads
            .iter()
            .find(|(head, _)| head == name)
            .map(|(_, oid)| *oid)
    };

    let (refspecs, expected): (Vec<String>, Option<Oid>) = match &config.reference {
        GitReference::Branch(branch) => {
            let oid = advertised(&format!("refs/heads/{branch}")).ok_or_else(not_found)?;
            (
                vec![format!("+refs/heads/{branch}:refs/remotes/origin/{branch}")],
                Some(oid),
            )
        }
        GitReference::Tag(tag) => {
            let oid = advertised(&format!("refs/tags/{tag}")).ok_or_else(not_found)?;
            (vec![format!("+refs/tags/{tag}:refs/tags/{tag}")], Some(oid))
        }
        GitReference::DefaultBranch => {
            let head_branch = connection
                .default_branch()
                .ok()
                .and_then(|name| name.as_str().ok().map(str::to_owned))
                .and_then(|name| {
                    let oid = advertised(&name)?;
                    Some((name.strip_prefix("refs/heads/")?.to_owned(), oid))
                });
            match head_branch {
                Some((branch, oid)) => {
                    let url = redact_url(&config.url);
                    debug!(%url, %branch, "remote HEAD names this branch");
                    (
                        vec![format!("+refs/heads/{branch}:refs/remotes/origin/{branch}")],
                        Some(oid),
                    )
                }
                // A detached HEAD names no branch; follow the commit it points at.
                None => {
                    let oid = advertised("HEAD").ok_or_else(not_found)?;
                    (vec!["+HEAD:refs/remotes/origin/HEAD".to_owned()], Some(oid))
                }
            }
        }
        GitReference::Commit(_) => (
            vec![
                "+refs/heads/*:refs/remotes/origin/*".to_owned(),
                "+refs/tags/*:refs/tags/*".to_owned(),
            ],
            None,
        ),
    };

    let mut options = FetchOptions::new();
    options
        .remote_callbacks(credential_callbacks(config, repo, &attempts))
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    connection
        .remote()
        .fetch(&refspecs, Some(&mut options), None)
        .map_err(fetch_error)?;
    drop(connection);

    match (&config.reference, expected) {
        (GitReference::Commit(id), _) => lookup_commit(config, repo, id)?.ok_or_else(not_found),
        (_, Some(oid)) => {
            // The advertised id was just downloaded; if it is missing the mirror is damaged.
            let object = repo.find_object(oid, None).map_err(corrupt(config))?;
            peel_to_commit(config, object)
        }
        (_, None) => Err(not_found()),
    }
}

/// Looks a pinned commit up in the mirror: `None` when it is not (yet) there.
fn lookup_commit(config: &GitConfig, repo: &Repository, id: &str) -> Result<Option<Oid>, GitError> {
    let found = if id.len() == 40 {
        Oid::from_str(id).and_then(|oid| repo.find_object(oid, None))
    } else {
        repo.find_object_by_prefix(id, None)
    };
    match found {
        Ok(object) => peel_to_commit(config, object).map(Some),
        Err(err) if err.code() == ErrorCode::NotFound => Ok(None),
        Err(err) if err.code() == ErrorCode::Ambiguous => Err(GitError::AmbiguousCommit {
            url: redact_url(&config.url),
            prefix: id.to_owned(),
        }),
        Err(err) => Err(corrupt(config)(err)),
    }
}

fn peel_to_commit(config: &GitConfig, object: git2::Object<'_>) -> Result<Oid, GitError> {
    let kind = object.kind();
    match object.peel_to_commit() {
        Ok(commit) => Ok(commit.id()),
        Err(err) if matches!(err.class(), ErrorClass::Odb | ErrorClass::Zlib) => {
            Err(corrupt(config)(err))
        }
        Err(_) => Err(GitError::NotACommit {
            url: redact_url(&config.url),
            reference: config.reference.clone(),
            kind: kind.map_or_else(|| "object".to_owned(), |k| k.to_string()),
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Credentials.

/// Which credential sources one fetch has already offered. libgit2 calls the credentials
/// callback again after each rejected attempt; offering each source at most once ends that
/// loop with an error instead of retrying forever.
#[derive(Default)]
struct CredentialAttempts {
    username: bool,
    ssh_agent: bool,
    ssh_keys: usize,
    url_userpass: bool,
    helper: bool,
    default: bool,
}

/// One credential to offer, decided without touching libgit2 so the order and the
/// at-most-once rule can be tested.
#[derive(Debug, PartialEq, Eq)]
enum CredentialChoice {
    Username(String),
    SshAgent(String),
    SshKey(String, PathBuf),
    /// From the URL's userinfo: user and password (empty for a bare token).
    UrlUserPass(String, String),
    Helper,
    Default,
}

impl CredentialAttempts {
    /// The next untried credential that libgit2 allows, or `None` when all are used up.
    /// `ssh_agent` says whether an agent socket exists, `home` where `~/.ssh` is, and `url`
    /// is the configured URL (for embedded credentials).
    fn next(
        &mut self,
        allowed: CredentialType,
        username_from_url: Option<&str>,
        url: &str,
        ssh_agent: bool,
        home: Option<&Path>,
    ) -> Option<CredentialChoice> {
        let embedded = parse_userinfo(url);
        let user = username_from_url
            .map(str::to_owned)
            .or_else(|| embedded.as_ref().map(|info| percent_decode(info.user)))
            .filter(|user| !user.is_empty())
            .unwrap_or_else(|| "git".to_owned());

        if allowed.contains(CredentialType::USERNAME) && !self.username {
            self.username = true;
            return Some(CredentialChoice::Username(user));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            if !self.ssh_agent {
                self.ssh_agent = true;
                // Without an agent socket libssh2 fails the whole connection rather than
                // the attempt, so the agent is only offered when there is one.
                if ssh_agent {
                    return Some(CredentialChoice::SshAgent(user));
                }
            }
            while let Some(name) = SSH_KEY_FILES.get(self.ssh_keys) {
                self.ssh_keys += 1;
                if let Some(key) = home.map(|home| home.join(".ssh").join(name))
                    && key.is_file()
                {
                    return Some(CredentialChoice::SshKey(user, key));
                }
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if !self.url_userpass {
                self.url_userpass = true;
                if let Some(info) = &embedded {
                    let password = info.password.map(percent_decode).unwrap_or_default();
                    return Some(CredentialChoice::UrlUserPass(
                        percent_decode(info.user),
                        password,
                    ));
                }
            }
            if !self.helper {
                self.helper = true;
                return Some(CredentialChoice::Helper);
            }
        }
        if allowed.contains(CredentialType::DEFAULT) && !self.default {
            self.default = true;
            return Some(CredentialChoice::Default);
        }
        None
    }
}

/// Callbacks that offer credentials "from the usual places", each at most once per fetch
/// (`attempts` is shared by the connect and the download of one fetch). Credentials are
/// never logged; only where they came from is.
fn credential_callbacks<'a>(
    config: &'a GitConfig,
    repo: &'a Repository,
    attempts: &'a RefCell<CredentialAttempts>,
) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |url, username_from_url, allowed| {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let has_agent = std::env::var_os("SSH_AUTH_SOCK").is_some();
        let shown = redact_url(url);
        loop {
            let choice = attempts.borrow_mut().next(
                allowed,
                username_from_url,
                &config.url,
                has_agent,
                home.as_deref(),
            );
            let Some(choice) = choice else {
                return Err(git2::Error::from_str(
                    "no credentials left to try (ssh-agent, ~/.ssh/id_ed25519, id_ecdsa, \
                     id_rsa, the URL, git credential helpers)",
                ));
            };
            match choice {
                CredentialChoice::Username(user) => return Cred::username(&user),
                CredentialChoice::SshAgent(user) => {
                    debug!(url = %shown, "offering keys from ssh-agent");
                    return Cred::ssh_key_from_agent(&user);
                }
                CredentialChoice::SshKey(user, key) => {
                    debug!(url = %shown, key = %key.display(), "offering an ssh key");
                    return Cred::ssh_key(&user, None, &key, None);
                }
                CredentialChoice::UrlUserPass(user, password) => {
                    debug!(url = %shown, "offering the credentials in the URL");
                    return Cred::userpass_plaintext(&user, &password);
                }
                CredentialChoice::Helper => {
                    let from_helper = repo.config().and_then(|git_config| {
                        Cred::credential_helper(&git_config, url, username_from_url)
                    });
                    if let Ok(cred) = from_helper {
                        debug!(url = %shown, "offering credentials from a git credential helper");
                        return Ok(cred);
                    }
                    // No helper answered: go on to the next kind.
                }
                CredentialChoice::Default => return Cred::default(),
            }
        }
    });
    callbacks
}

// ---------------------------------------------------------------------------------------
// Reading the commit's tree.

/// One `.moorignore` in force: the directory it sits in (relative to the sub-path) and its
/// patterns, matched against paths relative to that directory.
struct IgnoreLevel {
    dir: String,
    patterns: Gitignore,
}

/// Whether `.moorignore` files exclude a path. Deeper files override shallower ones and, within
/// a file, the last matching pattern wins — the rules of nested `.gitignore` files.
fn is_ignored(levels: &[Rc<IgnoreLevel>], path: &str, is_dir: bool) -> bool {
    for level in levels.iter().rev() {
        let relative = if level.dir.is_empty() {
            path
        } else {
            match path
                .strip_prefix(level.dir.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
            {
                Some(rest) => rest,
                None => continue,
            }
        };
        match level.patterns.matched(relative, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
    }
    false
}

fn join_path(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

const MODE_SYMLINK: i32 = 0o120000;
/// How many symlinks-to-symlinks are followed before giving up (a cycle or a silly chain).
const MAX_SYMLINK_HOPS: usize = 8;

/// The longest symlink target read (Linux's PATH_MAX); a longer one is no real link.
const MAX_LINK_BYTES: u64 = 4096;

/// Reads the sub-path of a commit into a snapshot.
struct TreeReader<'a> {
    config: &'a GitConfig,
    repo: &'a Repository,
    /// For object sizes, read from headers before any content is inflated.
    odb: git2::Odb<'a>,
    commit: String,
    /// The tree at the sub-path: symlink targets are looked up in it.
    root: Tree<'a>,
    /// Manifest files and bytes read so far, against [`MAX_FILES`] and [`MAX_TOTAL_BYTES`].
    budget: RefCell<(usize, u64)>,
}

/// Refuses a sub-path that goes through a symlink. libgit2 does not follow links in
/// `Tree::get_path` either (it would answer "not found"), but saying which link is in the
/// way is the clear error.
fn refuse_sub_path_symlinks(
    config: &GitConfig,
    repo: &Repository,
    tree: &Tree<'_>,
    commit: &str,
) -> Result<(), GitError> {
    let mut prefix = String::new();
    for component in config.path.split('/') {
        prefix = join_path(&prefix, component);
        let entry = match tree.get_path(Path::new(&prefix)) {
            Ok(entry) => entry,
            // Reported (as not found, or not a directory) by the caller.
            Err(_) => return Ok(()),
        };
        if entry.filemode() == MODE_SYMLINK {
            let size = repo
                .odb()
                .and_then(|odb| odb.read_header(entry.id()))
                .map_err(corrupt(config))?
                .0 as u64;
            let target = if size > MAX_LINK_BYTES {
                format!("({size} bytes)")
            } else {
                let blob = repo.find_blob(entry.id()).map_err(corrupt(config))?;
                String::from_utf8_lossy(blob.content()).into_owned()
            };
            return Err(GitError::SubPathSymlink {
                url: redact_url(&config.url),
                commit: commit.to_owned(),
                path: config.path.clone(),
                link: prefix,
                target,
            });
        }
        if entry.kind() != Some(ObjectType::Tree) {
            return Ok(());
        }
    }
    Ok(())
}

fn read_snapshot(config: &GitConfig, repo: &Repository, oid: Oid) -> Result<Snapshot, GitError> {
    let commit = repo.find_commit(oid).map_err(corrupt(config))?;
    let commit_id = oid.to_string();
    let tree = commit.tree().map_err(corrupt(config))?;
    let root = if config.path.is_empty() {
        tree
    } else {
        refuse_sub_path_symlinks(config, repo, &tree, &commit_id)?;
        let entry = match tree.get_path(Path::new(&config.path)) {
            Ok(entry) => entry,
            Err(err) if err.code() == ErrorCode::NotFound => {
                return Err(GitError::PathNotFound {
                    url: redact_url(&config.url),
                    path: config.path.clone(),
                    commit: commit_id,
                });
            }
            Err(err) => return Err(corrupt(config)(err)),
        };
        let kind = match entry.kind() {
            Some(ObjectType::Tree) => None,
            Some(ObjectType::Commit) => Some("submodule"),
            _ if entry.filemode() == MODE_SYMLINK => Some("symlink"),
            _ => Some("file"),
        };
        if let Some(kind) = kind {
            return Err(GitError::NotADirectory {
                url: redact_url(&config.url),
                path: config.path.clone(),
                commit: commit_id,
                kind,
            });
        }
        repo.find_tree(entry.id()).map_err(corrupt(config))?
    };
    let reader = TreeReader {
        config,
        repo,
        odb: repo.odb().map_err(corrupt(config))?,
        commit: commit_id.clone(),
        root,
        budget: RefCell::new((0, 0)),
    };
    let mut files = reader.walk()?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    debug!(
        url = %redact_url(&config.url),
        commit = %commit_id,
        path = %config.path,
        files = files.len(),
        "read git snapshot"
    );
    Ok(Snapshot {
        revision: commit_id,
        files,
    })
}

impl TreeReader<'_> {
    /// Walks the sub-path with an explicit stack: tree depth comes from the repository, and a
    /// hostile one must not be able to overflow the thread's stack.
    fn walk(&self) -> Result<Vec<SourceFile>, GitError> {
        let mut files = Vec::new();
        let mut pending: Vec<(Oid, String, Vec<Rc<IgnoreLevel>>)> =
            vec![(self.root.id(), String::new(), Vec::new())];
        while let Some((tree_id, dir, mut ignores)) = pending.pop() {
            let tree = self.repo.find_tree(tree_id).map_err(corrupt(self.config))?;
            if let Some(level) = self.ignore_level(&tree, &dir)? {
                ignores.push(Rc::new(level));
            }
            for entry in tree.iter() {
                let Ok(name) = entry.name() else {
                    let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
                    let could_matter =
                        entry.kind() == Some(ObjectType::Tree) || is_manifest_file(&name);
                    if could_matter && !name.starts_with('.') {
                        return Err(GitError::NonUtf8Name {
                            url: redact_url(&self.config.url),
                            commit: self.commit.clone(),
                            dir: dir.clone(),
                            name,
                        });
                    }
                    continue;
                };
                // Hidden entries never hold manifests (`is_manifest_file`); skipping them
                // here also spares `.git*` oddities and hidden symlinks any scrutiny.
                if name.starts_with('.') {
                    continue;
                }
                let path = join_path(&dir, name);
                let is_dir = entry.kind() == Some(ObjectType::Tree);
                if is_ignored(&ignores, &path, is_dir) {
                    continue;
                }
                match entry.kind() {
                    Some(ObjectType::Tree) => pending.push((entry.id(), path, ignores.clone())),
                    Some(ObjectType::Commit) => {
                        debug!(path = %path, commit = %self.commit, "skipping submodule");
                    }
                    Some(ObjectType::Blob) if entry.filemode() == MODE_SYMLINK => {
                        if let Some(bytes) = self.read_symlink(&path, entry.id())? {
                            files.push(SourceFile { path, bytes });
                        }
                    }
                    Some(ObjectType::Blob) => {
                        if is_manifest_file(&path) {
                            let bytes = self.read_manifest(&path, entry.id())?;
                            files.push(SourceFile { path, bytes });
                        }
                    }
                    _ => debug!(path = %path, commit = %self.commit, "skipping odd tree entry"),
                }
            }
        }
        Ok(files)
    }

    /// The size of a blob, from its header: nothing is inflated.
    fn blob_size(&self, oid: Oid) -> Result<u64, GitError> {
        let (size, _) = self.odb.read_header(oid).map_err(corrupt(self.config))?;
        Ok(size as u64)
    }

    /// A blob's bytes, refused without being read when it is bigger than [`MAX_FILE_BYTES`].
    /// `path` (relative to the sub-path) names it in the error.
    fn read_bounded(&self, path: &str, oid: Oid) -> Result<Vec<u8>, GitError> {
        let size = self.blob_size(oid)?;
        if size > MAX_FILE_BYTES {
            return Err(GitError::FileTooLarge {
                url: redact_url(&self.config.url),
                commit: self.commit.clone(),
                path: path.to_owned(),
                size,
                limit: MAX_FILE_BYTES,
            });
        }
        let blob = self.repo.find_blob(oid).map_err(corrupt(self.config))?;
        Ok(blob.content().to_vec())
    }

    /// A manifest file's bytes, counted against the snapshot's limits.
    fn read_manifest(&self, path: &str, oid: Oid) -> Result<Vec<u8>, GitError> {
        let too_much = |limit, what| GitError::TooMuch {
            url: redact_url(&self.config.url),
            commit: self.commit.clone(),
            limit,
            what,
        };
        if self.budget.borrow().0 >= MAX_FILES {
            return Err(too_much(MAX_FILES as u64, "manifest files"));
        }
        let bytes = self.read_bounded(path, oid)?;
        let mut budget = self.budget.borrow_mut();
        budget.0 += 1;
        budget.1 += bytes.len() as u64;
        if budget.1 > MAX_TOTAL_BYTES {
            return Err(too_much(MAX_TOTAL_BYTES, "bytes of manifests"));
        }
        Ok(bytes)
    }

    /// Parses the `.moorignore` of one directory, if it has one.
    fn ignore_level(&self, tree: &Tree<'_>, dir: &str) -> Result<Option<IgnoreLevel>, GitError> {
        let Some(entry) = tree.get_name(IGNORE_FILE) else {
            return Ok(None);
        };
        let path = join_path(dir, IGNORE_FILE);
        let error = |line, reason: String| GitError::IgnoreFile {
            url: redact_url(&self.config.url),
            commit: self.commit.clone(),
            path: path.clone(),
            line,
            reason,
        };
        if entry.kind() != Some(ObjectType::Blob) || entry.filemode() == MODE_SYMLINK {
            return Err(error(0, "must be a regular file".to_owned()));
        }
        let content = self.read_bounded(&path, entry.id())?;
        let text = std::str::from_utf8(&content).map_err(|e| {
            let line = content[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            error(line, "not valid UTF-8".to_owned())
        })?;
        let mut builder = GitignoreBuilder::new("");
        for (index, line) in text.lines().enumerate() {
            builder
                .add_line(Some(PathBuf::from(&path)), line)
                .map_err(|e| error(index + 1, e.to_string()))?;
        }
        let patterns = builder.build().map_err(|e| error(0, e.to_string()))?;
        Ok(Some(IgnoreLevel {
            dir: dir.to_owned(),
            patterns,
        }))
    }

    /// Decides about a symlink at `path` (relative to the sub-path): refused if it points out
    /// of the sub-path, anywhere absolute, or nowhere; read (the target's bytes under the
    /// link's name) if its name is a manifest file; otherwise skipped, as anything it points at
    /// inside the sub-path is read at its own path.
    fn read_symlink(&self, path: &str, blob: Oid) -> Result<Option<Vec<u8>>, GitError> {
        let mut link_path = path.to_owned();
        let mut link_blob = blob;
        for _ in 0..MAX_SYMLINK_HOPS {
            let size = self.blob_size(link_blob)?;
            if size > MAX_LINK_BYTES {
                return Err(GitError::Symlink {
                    url: redact_url(&self.config.url),
                    commit: self.commit.clone(),
                    path: path.to_owned(),
                    target: format!("({size} bytes)"),
                    problem: "has a target longer than any path",
                });
            }
            let target_bytes = self
                .repo
                .find_blob(link_blob)
                .map_err(corrupt(self.config))?
                .content()
                .to_vec();
            let target = String::from_utf8_lossy(&target_bytes).into_owned();
            let refuse = |problem| GitError::Symlink {
                url: redact_url(&self.config.url),
                commit: self.commit.clone(),
                path: path.to_owned(),
                target: target.clone(),
                problem,
            };
            let link_dir = link_path.rsplit_once('/').map_or("", |(dir, _)| dir);
            let Some(resolved) = resolve_link(link_dir, &target) else {
                return Err(refuse("points outside the source path"));
            };
            if !is_manifest_file(path) {
                debug!(path, target = %target, "skipping symlink that is not a manifest file");
                return Ok(None);
            }
            if resolved.is_empty() {
                return Err(refuse("points at a directory, not a file"));
            }
            let entry = match self.root.get_path(Path::new(&resolved)) {
                Ok(entry) => entry,
                Err(err) if err.code() == ErrorCode::NotFound => {
                    return Err(refuse("points at nothing"));
                }
                Err(err) => return Err(corrupt(self.config)(err)),
            };
            match entry.kind() {
                Some(ObjectType::Blob) if entry.filemode() == MODE_SYMLINK => {
                    link_path = resolved;
                    link_blob = entry.id();
                }
                Some(ObjectType::Blob) => return self.read_manifest(path, entry.id()).map(Some),
                _ => return Err(refuse("points at a directory, not a file")),
            }
        }
        Err(GitError::Symlink {
            url: redact_url(&self.config.url),
            commit: self.commit.clone(),
            path: path.to_owned(),
            target: String::new(),
            problem: "is part of a symlink chain that is too long or loops",
        })
    }
}

/// Resolves a symlink target written in directory `link_dir` (relative to the sub-path),
/// purely by its text: `None` when it is absolute or climbs above the sub-path.
fn resolve_link(link_dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = link_dir.split('/').filter(|c| !c.is_empty()).collect();
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

// ---------------------------------------------------------------------------------------
// URLs.

/// The userinfo (`user[:password]@`) of a URL or scp-style address, as byte offsets.
struct UserInfo<'a> {
    user: &'a str,
    password: Option<&'a str>,
    /// Whether the scheme is http(s), where a bare userinfo is a token, not a user name.
    http: bool,
    start: usize,
    end: usize,
}

fn parse_userinfo(url: &str) -> Option<UserInfo<'_>> {
    let (start, authority, http) = match url.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            (scheme.len() + 3, &rest[..end], http)
        }
        Some(_) => return None,
        // scp-style `user@host:path`: the userinfo ends at an `@` before the first `/`.
        None => {
            let end = url.find('/').unwrap_or(url.len());
            (0, &url[..end], false)
        }
    };
    let at = authority.rfind('@')?;
    let userinfo = &authority[..at];
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    Some(UserInfo {
        user,
        password,
        http,
        start,
        end: start + at,
    })
}

/// The URL with its credentials replaced by `***`: the whole userinfo when it holds a
/// password (`https://user:tok@h/x` → `https://***@h/x`, `ssh://u:pw@h/x` → `ssh://***@h/x`)
/// — the user half is hidden too because hosts take tokens there (`TOKEN:x-oauth-basic@`) —
/// and any userinfo of an http(s) URL, where a lone one is a token (`https://tok@h/x` →
/// `https://***@h/x`). A login name alone outside http(s) (`ssh://git@h/x`, `git@h:x`) is
/// not a secret and stays; paths and URLs without userinfo come back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(info) = parse_userinfo(url) else {
        return url.to_owned();
    };
    if info.password.is_none() && !info.http {
        return url.to_owned();
    }
    format!("{}***{}", &url[..info.start], &url[info.end..])
}

/// The shortest user name scrubbed from messages as a bare word: shorter ones (`u`, `git`)
/// are no tokens, and replacing them everywhere would garble the message.
const MIN_SCRUBBED_USER: usize = 4;

/// The secret parts of a URL's userinfo: the password, and for http(s) the user (a token
/// as often as a name).
fn url_secrets(url: &str) -> Vec<&str> {
    let Some(info) = parse_userinfo(url) else {
        return Vec::new();
    };
    let mut secrets = Vec::new();
    if let Some(password) = info.password {
        secrets.push(password);
    }
    let user_is_token =
        info.http && (info.password.is_none() || info.user.len() >= MIN_SCRUBBED_USER);
    if user_is_token {
        secrets.push(info.user);
    }
    secrets.retain(|secret| !secret.is_empty());
    secrets
}

/// Removes the URL's credentials from a message: the URL itself, then each secret in the
/// raw and the percent-decoded spelling (libgit2 decodes userinfo before it quotes URLs in
/// errors). Longest first, so a secret containing another is replaced whole.
pub fn scrub_message(message: &str, url: &str) -> String {
    let mut message = message.replace(url, &redact_url(url));
    let mut secrets: Vec<String> = Vec::new();
    for secret in url_secrets(url) {
        secrets.push(secret.to_owned());
        secrets.push(percent_decode(secret));
    }
    secrets.retain(|secret| !secret.is_empty());
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    for secret in secrets {
        message = message.replace(&secret, "***");
    }
    message
}

fn scrub_error(err: git2::Error, url: &str) -> git2::Error {
    git2::Error::new(err.code(), err.class(), scrub_message(err.message(), url))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The local directory a URL names, if it names one: `file://` URLs and plain paths, but not
/// `scheme://` URLs or scp-style `host:path` (a `:` before any `/`).
fn local_path(url: &str) -> Option<PathBuf> {
    let lower = url.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() == Some("file://") {
        let rest = &url[7..];
        let rest = rest
            .strip_prefix("localhost")
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(rest);
        return Some(PathBuf::from(percent_decode(rest)));
    }
    if url.contains("://") {
        return None;
    }
    if let Some(colon) = url.find(':')
        && !url[..colon].contains('/')
    {
        return None;
    }
    Some(PathBuf::from(url))
}

// ---------------------------------------------------------------------------------------
// Watching a local repository.

/// Reports ref updates (new commits, branch and tag moves, `HEAD` switches) in a local
/// repository, so a source following it can fetch right away instead of polling.
pub struct RefWatcher {
    /// Kept for its `Drop`, which stops the watch.
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    changes: tokio::sync::mpsc::Receiver<()>,
    repo_dir: PathBuf,
}

impl fmt::Debug for RefWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefWatcher")
            .field("repo_dir", &self.repo_dir)
            .finish_non_exhaustive()
    }
}

/// The places in a git directory where ref updates land.
#[derive(Clone, Debug)]
struct RefPaths {
    /// The repository's git dir (`.git`, or the repository itself when bare): holds `HEAD`.
    git_dir: PathBuf,
    /// Where shared refs live; differs from `git_dir` only for linked worktrees.
    common_dir: PathBuf,
}

impl RefPaths {
    /// Whether a file event is a ref update. Lock files are the first half of git's
    /// write-then-rename; the rename onto the real name is the event that counts. Reads
    /// (our own fetch opens these files) are not changes.
    fn is_ref_change(&self, event: &notify_debouncer_full::notify::Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        if matches!(event.kind, EventKind::Access(_)) {
            return false;
        }
        event.paths.iter().any(|path| {
            if path.extension().is_some_and(|ext| ext == "lock") {
                return false;
            }
            path.starts_with(self.common_dir.join("refs"))
                || path == &self.git_dir.join("HEAD")
                || path == &self.common_dir.join("packed-refs")
        })
    }
}

impl RefWatcher {
    /// Watches the refs of the repository at `repo_dir` (a work tree with a `.git`, or a bare
    /// repository): `refs/` recursively, `packed-refs` and `HEAD`. Events closer together than
    /// `debounce` are reported once.
    pub fn new(repo_dir: &Path, debounce: Duration) -> Result<Self, GitError> {
        let repo = Repository::open(repo_dir).map_err(|source| GitError::WatchOpen {
            path: repo_dir.to_owned(),
            source,
        })?;
        let paths = RefPaths {
            git_dir: repo.path().to_owned(),
            common_dir: repo.commondir().to_owned(),
        };
        drop(repo);

        // Capacity one: a pending signal already says "something changed", so further
        // events while it waits are folded into it.
        let (sender, changes) = tokio::sync::mpsc::channel(1);
        let filter = paths.clone();
        let watched = repo_dir.to_owned();
        let handler = move |result: DebounceEventResult| {
            let changed = match result {
                Ok(events) => events.iter().any(|event| filter.is_ref_change(event)),
                Err(errors) => {
                    // A lost or overflowed watch may have hidden an update; reporting a change
                    // only costs one fetch that finds the same revision.
                    for error in errors {
                        warn!(repo = %watched.display(), %error, "git ref watcher error");
                    }
                    true
                }
            };
            if changed {
                let _ = sender.try_send(());
            }
        };
        // A tick of a quarter of the debounce keeps the delay after the last event within
        // 1.25 × debounce.
        let mut debouncer =
            new_debouncer(debounce, None, handler).map_err(|source| GitError::Watch {
                path: repo_dir.to_owned(),
                source,
            })?;
        let refs_dir = paths.common_dir.join("refs");
        let mut watches = vec![
            (refs_dir, RecursiveMode::Recursive),
            // The git dir itself, not `HEAD` and `packed-refs`: those are replaced by rename
            // (a file watch would follow the old inode) and `packed-refs` may not exist yet.
            (paths.git_dir.clone(), RecursiveMode::NonRecursive),
        ];
        if paths.common_dir != paths.git_dir {
            watches.push((paths.common_dir.clone(), RecursiveMode::NonRecursive));
        }
        for (path, mode) in watches {
            debouncer
                .watch(&path, mode)
                .map_err(|source| GitError::Watch { path, source })?;
        }
        Ok(RefWatcher {
            _debouncer: debouncer,
            changes,
            repo_dir: repo_dir.to_owned(),
        })
    }

    /// Resolves once a ref has been updated since the previous call returned (or since the
    /// watcher was made). Cancel-safe: dropping the future loses no change. Bursts are
    /// coalesced into one wake-up. Watch errors are reported as a change, since an update may
    /// have been missed.
    pub async fn changed(&mut self) -> Result<(), GitError> {
        match self.changes.recv().await {
            Some(()) => Ok(()),
            None => Err(GitError::WatcherStopped {
                path: self.repo_dir.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::error::Error as _;
    use tempfile::TempDir;

    /// What a test puts at a path of a commit.
    #[derive(Clone, Copy)]
    enum Entry<'a> {
        File(&'a str),
        Link(&'a str),
        Submodule,
    }
    use Entry::{File, Link};

    enum Node<'a> {
        Dir(BTreeMap<String, Node<'a>>),
        Leaf(Entry<'a>),
    }

    fn insert_node<'a>(dir: &mut BTreeMap<String, Node<'a>>, path: &str, entry: Entry<'a>) {
        match path.split_once('/') {
            None => {
                dir.insert(path.to_owned(), Node::Leaf(entry));
            }
            Some((first, rest)) => {
                let child = dir
                    .entry(first.to_owned())
                    .or_insert_with(|| Node::Dir(BTreeMap::new()));
                match child {
                    Node::Dir(children) => insert_node(children, rest, entry),
                    Node::Leaf(_) => panic!("test tree puts a file and a dir at {first}"),
                }
            }
        }
    }

    fn write_node(repo: &Repository, dir: &BTreeMap<String, Node<'_>>) -> Oid {
        let mut builder = repo.treebuilder(None).unwrap();
        for (name, node) in dir {
            let (oid, mode) = match node {
                Node::Dir(children) => (write_node(repo, children), 0o040000),
                Node::Leaf(File(text)) => (repo.blob(text.as_bytes()).unwrap(), 0o100644),
                Node::Leaf(Link(target)) => (repo.blob(target.as_bytes()).unwrap(), MODE_SYMLINK),
                Node::Leaf(Entry::Submodule) => (
                    Oid::from_str("1234567890123456789012345678901234567890").unwrap(),
                    0o160000,
                ),
            };
            builder.insert(name.as_str(), oid, mode).unwrap();
        }
        builder.write().unwrap()
    }

    fn build_tree(repo: &Repository, entries: &[(&str, Entry<'_>)]) -> Oid {
        let mut root = BTreeMap::new();
        for (path, entry) in entries {
            insert_node(&mut root, path, *entry);
        }
        write_node(repo, &root)
    }

    fn signature() -> git2::Signature<'static> {
        git2::Signature::now("moor test", "test@example.com").unwrap()
    }

    /// A bare repository playing the remote; each commit holds exactly the given entries.
    struct BareRemote {
        dir: TempDir,
        repo: Repository,
    }

    impl BareRemote {
        fn new() -> Self {
            let dir = TempDir::new().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            repo.set_head("refs/heads/main").unwrap();
            BareRemote { dir, repo }
        }

        fn url(&self) -> String {
            self.dir.path().to_str().unwrap().to_owned()
        }

        fn tip(&self, branch: &str) -> Option<Oid> {
            self.repo
                .find_reference(&format!("refs/heads/{branch}"))
                .ok()
                .and_then(|r| r.target())
        }

        /// A commit on `parent` that no ref points at.
        fn commit_detached(&self, parent: Option<Oid>, entries: &[(&str, Entry<'_>)]) -> Oid {
            let tree = self
                .repo
                .find_tree(build_tree(&self.repo, entries))
                .unwrap();
            let parent = parent.map(|oid| self.repo.find_commit(oid).unwrap());
            let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
            self.repo
                .commit(None, &signature(), &signature(), "test", &tree, &parents)
                .unwrap()
        }

        fn commit(&self, branch: &str, entries: &[(&str, Entry<'_>)]) -> Oid {
            let oid = self.commit_detached(self.tip(branch), entries);
            self.repo
                .reference(&format!("refs/heads/{branch}"), oid, true, "test")
                .unwrap();
            oid
        }
    }

    /// A repository with a work tree, committed to through its index like `git commit -a`.
    struct WorkRepo {
        dir: TempDir,
        repo: Repository,
    }

    impl WorkRepo {
        fn new() -> Self {
            let dir = TempDir::new().unwrap();
            let repo = Repository::init(dir.path()).unwrap();
            WorkRepo { dir, repo }
        }

        fn write(&self, path: &str, text: &str) {
            let full = self.dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }

        fn remove(&self, path: &str) {
            std::fs::remove_file(self.dir.path().join(path)).unwrap();
        }

        fn commit(&self, message: &str) -> Oid {
            let mut index = self.repo.index().unwrap();
            index
                .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
                .unwrap();
            index.update_all(["*"], None).unwrap();
            index.write().unwrap();
            let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
            let parent = self
                .repo
                .head()
                .ok()
                .and_then(|head| head.peel_to_commit().ok());
            let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
            self.repo
                .commit(
                    Some("HEAD"),
                    &signature(),
                    &signature(),
                    message,
                    &tree,
                    &parents,
                )
                .unwrap()
        }
    }

    fn source_at(url: &str, reference: GitReference, path: &str, cache: &Path) -> GitSource {
        GitSource::new(GitConfig {
            url: url.to_owned(),
            reference,
            path: path.to_owned(),
            cache_dir: cache.to_owned(),
        })
        .unwrap()
    }

    fn branch(name: &str) -> GitReference {
        GitReference::Branch(name.to_owned())
    }

    fn paths(snapshot: &Snapshot) -> Vec<&str> {
        snapshot.files.iter().map(|f| f.path.as_str()).collect()
    }

    fn text<'a>(snapshot: &'a Snapshot, path: &str) -> &'a str {
        let file = snapshot.files.iter().find(|f| f.path == path).unwrap();
        std::str::from_utf8(&file.bytes).unwrap()
    }

    /// The error and all its sources, as a person would read them.
    fn full_message(err: &GitError) -> String {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }

    #[test]
    fn first_fetch_reads_the_manifests_of_a_branch() {
        let remote = BareRemote::new();
        let oid = remote.commit(
            "main",
            &[
                ("web.yaml", File("kind: Deployment")),
                ("apps/db.yml", File("kind: Service")),
            ],
        );
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", &cache.path().join("m"));
        let snapshot = source.fetch().unwrap();
        assert_eq!(snapshot.revision, oid.to_string());
        assert_eq!(snapshot.revision.len(), 40);
        assert_eq!(paths(&snapshot), ["apps/db.yml", "web.yaml"]);
        assert_eq!(text(&snapshot, "web.yaml"), "kind: Deployment");
        // The mirror keeps a tracking ref, so later fetches negotiate instead of re-cloning.
        let mirror = Repository::open_bare(cache.path().join("m")).unwrap();
        assert_eq!(
            mirror.refname_to_id("refs/remotes/origin/main").unwrap(),
            oid
        );
    }

    #[test]
    fn next_fetch_picks_up_a_new_commit_and_deletions() {
        let remote = BareRemote::new();
        remote.commit("main", &[("a.yaml", File("a")), ("b.yaml", File("b"))]);
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        assert_eq!(paths(&source.fetch().unwrap()), ["a.yaml", "b.yaml"]);

        let second = remote.commit("main", &[("a.yaml", File("a2")), ("c.json", File("{}"))]);
        let snapshot = source.fetch().unwrap();
        assert_eq!(snapshot.revision, second.to_string());
        assert_eq!(paths(&snapshot), ["a.yaml", "c.json"]);
        assert_eq!(text(&snapshot, "a.yaml"), "a2");
    }

    #[test]
    fn a_revert_brings_the_old_files_back() {
        let remote = BareRemote::new();
        let original: &[(&str, Entry<'_>)] = &[("a.yaml", File("one")), ("b.yaml", File("b"))];
        remote.commit("main", original);
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        let first = source.fetch().unwrap();
        remote.commit("main", &[("a.yaml", File("two"))]);
        assert_eq!(paths(&source.fetch().unwrap()), ["a.yaml"]);
        let revert = remote.commit("main", original);
        let reverted = source.fetch().unwrap();
        assert_eq!(reverted.revision, revert.to_string());
        assert_ne!(reverted.revision, first.revision);
        assert_eq!(reverted.files, first.files);
    }

    #[test]
    fn switching_the_branch_reads_the_other_branch() {
        let remote = BareRemote::new();
        remote.commit("main", &[("main.yaml", File("m"))]);
        let feature = remote.commit("feature/x", &[("feature.yaml", File("f"))]);
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        assert_eq!(paths(&source.fetch().unwrap()), ["main.yaml"]);
        drop(source);
        let mut source = source_at(
            &remote.url(),
            branch("refs/heads/feature/x"),
            "",
            cache.path(),
        );
        assert_eq!(source.config().reference, branch("feature/x"));
        let snapshot = source.fetch().unwrap();
        assert_eq!(snapshot.revision, feature.to_string());
        assert_eq!(paths(&snapshot), ["feature.yaml"]);
    }

    #[test]
    fn the_default_branch_follows_the_remote_head() {
        let remote = BareRemote::new();
        remote.commit("main", &[("main.yaml", File("m"))]);
        let trunk = remote.commit("trunk", &[("trunk.yaml", File("t"))]);
        remote.repo.set_head("refs/heads/trunk").unwrap();
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), GitReference::DefaultBranch, "", cache.path());
        let snapshot = source.fetch().unwrap();
        assert_eq!(snapshot.revision, trunk.to_string());
        assert_eq!(paths(&snapshot), ["trunk.yaml"]);
    }

    #[test]
    fn a_detached_remote_head_is_followed_by_commit() {
        let remote = BareRemote::new();
        let old = remote.commit("main", &[("old.yaml", File("o"))]);
        remote.commit("main", &[("new.yaml", File("n"))]);
        remote.repo.set_head_detached(old).unwrap();
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), GitReference::DefaultBranch, "", cache.path());
        let snapshot = source.fetch().unwrap();
        assert_eq!(snapshot.revision, old.to_string());
        assert_eq!(paths(&snapshot), ["old.yaml"]);
    }

    #[test]
    fn tags_pin_their_commit_lightweight_and_annotated() {
        let remote = BareRemote::new();
        let v1 = remote.commit("main", &[("v.yaml", File("1"))]);
        let v2 = remote.commit("main", &[("v.yaml", File("2"))]);
        remote.commit("main", &[("v.yaml", File("3"))]);
        let v1_object = remote.repo.find_object(v1, None).unwrap();
        remote
            .repo
            .tag_lightweight("v1", &v1_object, false)
            .unwrap();
        let v2_object = remote.repo.find_object(v2, None).unwrap();
        remote
            .repo
            .tag("v2", &v2_object, &signature(), "release 2", false)
            .unwrap();

        let cache = TempDir::new().unwrap();
        let mut light = source_at(
            &remote.url(),
            GitReference::Tag("v1".into()),
            "",
            &cache.path().join("1"),
        );
        let snapshot = light.fetch().unwrap();
        assert_eq!(snapshot.revision, v1.to_string());
        assert_eq!(text(&snapshot, "v.yaml"), "1");

        let mut annotated = source_at(
            &remote.url(),
            GitReference::Tag("refs/tags/v2".into()),
            "",
            &cache.path().join("2"),
        );
        let snapshot = annotated.fetch().unwrap();
        assert_eq!(snapshot.revision, v2.to_string());
        assert_eq!(text(&snapshot, "v.yaml"), "2");
    }

    #[test]
    fn commits_pin_by_full_and_abbreviated_id() {
        let remote = BareRemote::new();
        let first = remote.commit("main", &[("v.yaml", File("1"))]);
        remote.commit("main", &[("v.yaml", File("2"))]);
        let cache = TempDir::new().unwrap();

        let full = first.to_string();
        let mut source = source_at(
            &remote.url(),
            GitReference::Commit(full.to_uppercase()),
            "",
            &cache.path().join("full"),
        );
        let snapshot = source.fetch().unwrap();
        assert_eq!(snapshot.revision, full);
        assert_eq!(text(&snapshot, "v.yaml"), "1");

        let mut source = source_at(
            &remote.url(),
            GitReference::Commit(full[..8].to_owned()),
            "",
            &cache.path().join("short"),
        );
        let snapshot = source.fetch().unwrap();
        assert_eq!(snapshot.revision, full);
    }

    #[test]
    fn a_pinned_commit_already_cached_needs_no_remote() {
        let remote = BareRemote::new();
        let first = remote.commit("main", &[("v.yaml", File("1"))]);
        let cache = TempDir::new().unwrap();
        source_at(&remote.url(), branch("main"), "", cache.path())
            .fetch()
            .unwrap();
        let gone = cache.path().join("no-such-remote");
        let mut pinned = source_at(
            gone.to_str().unwrap(),
            GitReference::Commit(first.to_string()),
            "",
            cache.path(),
        );
        assert_eq!(pinned.fetch().unwrap().revision, first.to_string());
    }

    #[test]
    fn a_force_push_is_followed() {
        let remote = BareRemote::new();
        let base = remote.commit("main", &[("a.yaml", File("base"))]);
        remote.commit("main", &[("a.yaml", File("old tip"))]);
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        assert_eq!(text(&source.fetch().unwrap(), "a.yaml"), "old tip");

        let divergent = remote.commit_detached(Some(base), &[("b.yaml", File("rewritten"))]);
        remote
            .repo
            .reference("refs/heads/main", divergent, true, "force push")
            .unwrap();
        let snapshot = source.fetch().unwrap();
        assert_eq!(snapshot.revision, divergent.to_string());
        assert_eq!(paths(&snapshot), ["b.yaml"]);
    }

    #[test]
    fn the_sub_path_selects_files_and_a_missing_one_is_an_error() {
        let remote = BareRemote::new();
        let oid = remote.commit(
            "main",
            &[
                ("top.yaml", File("t")),
                ("deploy/web.yaml", File("w")),
                ("deploy/apps/db.yaml", File("d")),
                ("deploy-other/x.yaml", File("x")),
            ],
        );
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "./deploy/", cache.path());
        assert_eq!(source.config().path, "deploy");
        assert_eq!(
            paths(&source.fetch().unwrap()),
            ["apps/db.yaml", "web.yaml"]
        );

        let mut missing = source_at(&remote.url(), branch("main"), "nope/deeper", cache.path());
        let err = missing.fetch().unwrap_err();
        assert!(matches!(err, GitError::PathNotFound { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("nope/deeper"), "{message}");
        assert!(message.contains(&oid.to_string()), "{message}");

        let mut file = source_at(&remote.url(), branch("main"), "top.yaml", cache.path());
        let err = file.fetch().unwrap_err();
        assert!(
            matches!(err, GitError::NotADirectory { kind: "file", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn moorignore_hidden_files_and_other_extensions_are_left_out() {
        let remote = BareRemote::new();
        remote.commit(
            "main",
            &[
                (".moorignore", File("# comment\n*.tmpl.yaml\n/drafts/\n")),
                ("web.yaml", File("w")),
                ("web.tmpl.yaml", File("t")),
                ("drafts/a.yaml", File("d")),
                ("apps/drafts/kept.yaml", File("k")),
                ("apps/.moorignore", File("secret*.yaml\n!secret-ok.yaml\n")),
                ("apps/secret.yaml", File("s")),
                ("apps/secret-ok.yaml", File("ok")),
                ("apps/deep/secret-2.yaml", File("s2")),
                ("apps/deep/x.tmpl.yaml", File("t")),
                (".hidden.yaml", File("h")),
                (".github/workflows/ci.yaml", File("ci")),
                ("apps/.draft/web.yaml", File("d")),
                ("README.md", File("readme")),
                ("script.sh", File("#!/bin/sh")),
                ("config.json", File("{}")),
            ],
        );
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        assert_eq!(
            paths(&source.fetch().unwrap()),
            [
                "apps/drafts/kept.yaml",
                "apps/secret-ok.yaml",
                "config.json",
                "web.yaml"
            ]
        );
    }

    #[test]
    fn a_moorignore_that_is_not_text_names_its_line() {
        let remote = BareRemote::new();
        remote.commit(
            "main",
            &[
                ("apps/.moorignore", File("ok\n\u{0}")),
                ("apps/a.yaml", File("a")),
            ],
        );
        // A NUL is valid UTF-8; make the blob invalid by hand instead.
        let tree = {
            let blob = remote.repo.blob(b"fine\nbad \xff\n").unwrap();
            let mut apps = remote.repo.treebuilder(None).unwrap();
            apps.insert(".moorignore", blob, 0o100644).unwrap();
            let mut root = remote.repo.treebuilder(None).unwrap();
            root.insert("apps", apps.write().unwrap(), 0o040000)
                .unwrap();
            remote.repo.find_tree(root.write().unwrap()).unwrap()
        };
        let parent = remote
            .repo
            .find_commit(remote.tip("main").unwrap())
            .unwrap();
        remote
            .repo
            .commit(
                Some("refs/heads/main"),
                &signature(),
                &signature(),
                "bad",
                &tree,
                &[&parent],
            )
            .unwrap();
        let cache = TempDir::new().unwrap();
        let err = source_at(&remote.url(), branch("main"), "", cache.path())
            .fetch()
            .unwrap_err();
        assert!(
            matches!(err, GitError::IgnoreFile { line: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("apps/.moorignore:2"), "{err}");
    }

    #[test]
    fn symlinks_inside_the_sub_path_are_read_and_outside_ones_refused() {
        let remote = BareRemote::new();
        remote.commit(
            "main",
            &[
                ("shared/base.yaml", File("base")),
                ("deploy/real.yaml", File("real")),
                ("deploy/alias.yaml", Link("real.yaml")),
                ("deploy/sub/up.yaml", Link("../real.yaml")),
                ("deploy/dirlink", Link("sub")),
                ("deploy/.hidden-link.yaml", Link("../../etc/passwd")),
            ],
        );
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "deploy", cache.path());
        let snapshot = source.fetch().unwrap();
        assert_eq!(paths(&snapshot), ["alias.yaml", "real.yaml", "sub/up.yaml"]);
        assert_eq!(text(&snapshot, "alias.yaml"), "real");
        assert_eq!(text(&snapshot, "sub/up.yaml"), "real");

        for (name, target) in [
            ("escape.yaml", "../shared/base.yaml"),
            ("abs.yaml", "/etc/passwd"),
        ] {
            let path = format!("deploy/{name}");
            remote.commit(
                "main",
                &[
                    ("shared/base.yaml", File("base")),
                    ("deploy/real.yaml", File("real")),
                    (path.as_str(), Link(target)),
                ],
            );
            let err = source.fetch().unwrap_err();
            assert!(matches!(err, GitError::Symlink { .. }), "{err:?}");
            let message = err.to_string();
            assert!(
                message.contains(name) && message.contains(target),
                "{message}"
            );
        }

        // A link out of the sub-path that .moorignore leaves out is fine.
        remote.commit(
            "main",
            &[
                ("deploy/real.yaml", File("real")),
                ("deploy/escape.yaml", Link("../shared/base.yaml")),
                ("deploy/.moorignore", File("escape.yaml\n")),
            ],
        );
        assert_eq!(paths(&source.fetch().unwrap()), ["real.yaml"]);

        remote.commit(
            "main",
            &[
                ("deploy/a.yaml", Link("b.yaml")),
                ("deploy/b.yaml", Link("a.yaml")),
            ],
        );
        let err = source.fetch().unwrap_err();
        assert!(matches!(err, GitError::Symlink { .. }), "{err:?}");
    }

    #[test]
    fn a_sub_path_through_a_symlink_is_refused_naming_the_link() {
        let remote = BareRemote::new();
        remote.commit(
            "main",
            &[
                ("real/web.yaml", File("w")),
                ("deploy", Link("real")),
                ("escape", Link("../../etc")),
                ("nested/up", Link("..")),
            ],
        );
        let cache = TempDir::new().unwrap();
        for (path, link, target) in [
            ("deploy", "deploy", "real"),
            ("deploy/apps", "deploy", "real"),
            ("escape", "escape", "../../etc"),
            ("nested/up/real", "nested/up", ".."),
        ] {
            let mut source = source_at(&remote.url(), branch("main"), path, cache.path());
            let err = source.fetch().unwrap_err();
            match &err {
                GitError::SubPathSymlink {
                    link: got_link,
                    target: got_target,
                    ..
                } => assert_eq!((got_link.as_str(), got_target.as_str()), (link, target)),
                other => panic!("{path}: unexpected {other:?}"),
            }
            let message = err.to_string();
            assert!(
                message.contains(link) && message.contains(target),
                "{message}"
            );
        }
        let mut real = source_at(&remote.url(), branch("main"), "real", cache.path());
        assert_eq!(paths(&real.fetch().unwrap()), ["web.yaml"]);
    }

    #[test]
    fn a_blob_over_the_size_limit_is_refused_before_it_is_read() {
        let remote = BareRemote::new();
        let at_limit = "#".repeat(MAX_FILE_BYTES as usize);
        let over = "#".repeat(MAX_FILE_BYTES as usize + 1);
        remote.commit(
            "main",
            &[("ok.yaml", File(&at_limit)), ("big.bin", File(&over))],
        );
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        assert_eq!(paths(&source.fetch().unwrap()), ["ok.yaml"]);

        for (path, entry) in [
            ("apps/dump.yaml", File(&over)),
            ("apps/link.yaml", Link("../big.yaml")),
        ] {
            remote.commit("main", &[("big.yaml", File(&over)), (path, entry)]);
            let err = source.fetch().unwrap_err();
            match &err {
                GitError::FileTooLarge { size, limit, .. } => {
                    assert_eq!((*size, *limit), (MAX_FILE_BYTES + 1, MAX_FILE_BYTES));
                }
                other => panic!("{path}: unexpected {other:?}"),
            }
            assert!(err.to_string().contains("4 MiB"), "{err}");
        }

        remote.commit(
            "main",
            &[("ok.yaml", File("x")), (".moorignore", File(&over))],
        );
        let err = source.fetch().unwrap_err();
        assert!(
            matches!(&err, GitError::FileTooLarge { path, .. } if path == ".moorignore"),
            "{err:?}"
        );
    }

    #[test]
    fn too_many_manifest_files_are_refused() {
        let remote = BareRemote::new();
        let names: Vec<String> = (0..=MAX_FILES).map(|i| format!("m/{i}.yaml")).collect();
        let entries: Vec<(&str, Entry<'_>)> =
            names.iter().map(|name| (name.as_str(), File(""))).collect();
        remote.commit("main", &entries);
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        let err = source.fetch().unwrap_err();
        assert!(
            matches!(
                &err,
                GitError::TooMuch {
                    what: "manifest files",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("10000 manifest files"), "{err}");
    }

    #[test]
    fn submodules_are_skipped() {
        let remote = BareRemote::new();
        remote.commit(
            "main",
            &[("web.yaml", File("w")), ("vendor/lib", Entry::Submodule)],
        );
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        assert_eq!(paths(&source.fetch().unwrap()), ["web.yaml"]);
    }

    #[test]
    fn unknown_refs_are_errors_that_name_the_ref_and_url() {
        let remote = BareRemote::new();
        remote.commit("main", &[("a.yaml", File("a"))]);
        let cache = TempDir::new().unwrap();
        let cases = [
            (branch("nope"), "branch \"nope\""),
            (GitReference::Tag("v9".into()), "tag \"v9\""),
            (
                GitReference::Commit("abcdef0123456789abcdef0123456789abcdef01".into()),
                "commit abcdef0123456789abcdef0123456789abcdef01",
            ),
            (GitReference::Commit("abcdef0".into()), "commit abcdef0"),
        ];
        for (reference, named) in cases {
            let mut source = source_at(&remote.url(), reference, "", cache.path());
            let err = source.fetch().unwrap_err();
            assert!(matches!(err, GitError::RefNotFound { .. }), "{err:?}");
            let message = err.to_string();
            assert!(message.contains(named), "{message}");
            assert!(message.contains(&remote.url()), "{message}");
        }
    }

    #[test]
    fn an_empty_remote_has_no_default_branch() {
        let remote = BareRemote::new();
        let cache = TempDir::new().unwrap();
        let err = source_at(&remote.url(), GitReference::DefaultBranch, "", cache.path())
            .fetch()
            .unwrap_err();
        assert!(matches!(err, GitError::RefNotFound { .. }), "{err:?}");
    }

    #[test]
    fn bad_configuration_is_refused_up_front() {
        let cache = Path::new("/nonexistent/cache");
        let make = |url: &str, reference: GitReference, path: &str| {
            GitSource::new(GitConfig {
                url: url.to_owned(),
                reference,
                path: path.to_owned(),
                cache_dir: cache.to_owned(),
            })
        };
        let ok = || branch("main");
        assert!(matches!(
            make("", ok(), ""),
            Err(GitError::InvalidUrl { .. })
        ));
        assert!(matches!(
            make("a\nb", ok(), ""),
            Err(GitError::InvalidUrl { .. })
        ));
        for bad in ["", "a..b", "a b", "x~1", "-/../x", "refs/heads/"] {
            let err = make("/r", branch(bad), "").unwrap_err();
            assert!(
                matches!(err, GitError::InvalidReference { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(make("/r", GitReference::Tag("v1..2".into()), "").is_err());
        for bad in ["abc", "xyz1234", &"a".repeat(41), "12345 78"] {
            let err = make("/r", GitReference::Commit(bad.to_owned()), "").unwrap_err();
            assert!(matches!(err, GitError::InvalidReference { .. }), "{bad}");
        }
        for bad in ["/etc", "../x", "a/../../b", "a/..", "a\0b"] {
            let err = make("/r", ok(), bad).unwrap_err();
            assert!(
                matches!(err, GitError::InvalidPath { .. }),
                "{bad}: {err:?}"
            );
        }
        for (given, normal) in [
            (".", ""),
            ("./", ""),
            ("./deploy/", "deploy"),
            ("a//b/./c", "a/b/c"),
        ] {
            assert_eq!(make("/r", ok(), given).unwrap().config().path, normal);
        }
        let err = GitSource::new(GitConfig {
            url: "/r".into(),
            reference: ok(),
            path: String::new(),
            cache_dir: PathBuf::new(),
        })
        .unwrap_err();
        assert!(matches!(err, GitError::CacheDir { .. }));
    }

    #[test]
    fn the_cache_dir_is_reused_across_instances() {
        let remote = BareRemote::new();
        remote.commit("main", &[("a.yaml", File("1"))]);
        let cache = TempDir::new().unwrap();
        let mirror = cache.path().join("mirror");
        source_at(&remote.url(), branch("main"), "", &mirror)
            .fetch()
            .unwrap();
        // Survives only if the second instance fetches into the mirror rather than re-cloning.
        let sentinel = mirror.join("sentinel");
        std::fs::write(&sentinel, "still here").unwrap();
        let second = remote.commit("main", &[("a.yaml", File("2"))]);
        let snapshot = source_at(&remote.url(), branch("main"), "", &mirror)
            .fetch()
            .unwrap();
        assert_eq!(snapshot.revision, second.to_string());
        assert!(sentinel.exists());
    }

    #[test]
    fn a_corrupt_cache_is_wiped_and_cloned_again() {
        let remote = BareRemote::new();
        let oid = remote.commit("main", &[("a.yaml", File("1"))]);
        let cache = TempDir::new().unwrap();
        let mut source = source_at(&remote.url(), branch("main"), "", cache.path());
        source.fetch().unwrap();

        // Objects gone while the ref that claims them stays: fetch negotiates nothing.
        std::fs::remove_dir_all(cache.path().join("objects")).unwrap();
        std::fs::create_dir_all(cache.path().join("objects/pack")).unwrap();
        assert_eq!(source.fetch().unwrap().revision, oid.to_string());

        // Not even a repository any more, opened by a fresh instance.
        std::fs::write(cache.path().join("HEAD"), "garbage").unwrap();
        std::fs::remove_dir_all(cache.path().join("refs")).unwrap();
        let mut fresh = source_at(&remote.url(), branch("main"), "", cache.path());
        assert_eq!(fresh.fetch().unwrap().revision, oid.to_string());

        // Stale lock files left by a crash mid-fetch, found by the next process.
        drop(fresh);
        let next = remote.commit("main", &[("a.yaml", File("2"))]);
        std::fs::write(cache.path().join("refs/remotes/origin/main.lock"), "").unwrap();
        std::fs::write(cache.path().join("packed-refs.lock"), "").unwrap();
        let mut restarted = source_at(&remote.url(), branch("main"), "", cache.path());
        assert_eq!(restarted.fetch().unwrap().revision, next.to_string());
        assert!(!cache.path().join("packed-refs.lock").exists());
    }

    #[test]
    fn a_foreign_non_empty_dir_is_never_used_or_wiped() {
        let remote = BareRemote::new();
        remote.commit("main", &[("a.yaml", File("1"))]);
        let cache = TempDir::new().unwrap();
        std::fs::write(cache.path().join("precious.txt"), "user data").unwrap();
        let err = source_at(&remote.url(), branch("main"), "", cache.path())
            .fetch()
            .unwrap_err();
        assert!(matches!(err, GitError::CacheDir { .. }), "{err:?}");
        assert!(cache.path().join("precious.txt").exists());
    }

    #[test]
    fn redact_url_removes_user_and_password_and_tokens() {
        let cases = [
            ("https://user:tok@host/x.git", "https://***@host/x.git"),
            ("https://tok@host/x.git", "https://***@host/x.git"),
            (
                "https://ghp_TOKEN:x-oauth-basic@host/x",
                "https://***@host/x",
            ),
            ("HTTP://tok@host:8080/x", "HTTP://***@host:8080/x"),
            ("https://user:p@ss@host/x", "https://***@host/x"),
            ("https://:tok@host", "https://***@host"),
            ("https://host/x.git", "https://host/x.git"),
            ("https://host/a@b", "https://host/a@b"),
            ("ssh://git@host/x.git", "ssh://git@host/x.git"),
            ("ssh://git:pw@host/x.git", "ssh://***@host/x.git"),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("user:pw@host:repo.git", "***@host:repo.git"),
            ("/srv/git/repo", "/srv/git/repo"),
            ("/srv/git/a@b:c", "/srv/git/a@b:c"),
            ("file:///srv/git/repo", "file:///srv/git/repo"),
            ("", ""),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
        let config = GitConfig {
            url: "https://u:hunter2@h/x".into(),
            reference: branch("main"),
            path: String::new(),
            cache_dir: PathBuf::from("/c"),
        };
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            scrub_message("auth failed for u:p%40ss and p@ss", "https://u:p%40ss@h/x"),
            "auth failed for u:*** and ***"
        );
        // A token in the user half (GitHub's `TOKEN:x-oauth-basic`) is scrubbed too.
        assert_eq!(
            scrub_message(
                "401 for ghp_abcdef (x-oauth-basic)",
                "https://ghp_abcdef:x-oauth-basic@h/x"
            ),
            "401 for *** (***)"
        );
        // The URL in a message, as given, comes out redacted.
        assert_eq!(
            scrub_message(
                "cannot reach https://me:hunter2@h/x",
                "https://me:hunter2@h/x"
            ),
            "cannot reach https://***@h/x"
        );
    }

    #[test]
    fn an_unreachable_remote_never_reveals_its_secret() {
        let cache = TempDir::new().unwrap();
        for url in [
            "https://user:secret@127.0.0.1:1/x.git",
            "https://secret@127.0.0.1:1/x.git",
            "http://user:secret@127.0.0.1:1/x.git",
            "https://user:secret-token@127.0.0.1:1/x.git",
            "https://secret-token:x-oauth-basic@127.0.0.1:1/x.git",
            "https://user:secret%2Dtoken@127.0.0.1:1/x.git",
            "ssh://user:secret-token@127.0.0.1:1/x.git",
        ] {
            let mut source = source_at(url, branch("main"), "", cache.path());
            assert!(!format!("{source:?}").contains("secret"));
            let err = source.fetch().unwrap_err();
            assert!(matches!(err, GitError::Fetch { .. }), "{err:?}");
            let message = full_message(&err);
            assert!(message.contains("127.0.0.1:1"), "{message}");
            assert!(!message.contains("secret"), "{message}");
            assert!(!format!("{err:?}").contains("secret"), "{err:?}");
        }
    }

    #[test]
    fn local_repository_is_known_for_paths_and_file_urls_only() {
        let cache = Path::new("/c");
        let local = |url: &str| source_at(url, branch("main"), "", cache).local_repository();
        assert_eq!(local("/srv/repo"), Some(PathBuf::from("/srv/repo")));
        assert_eq!(local("repos/x"), Some(PathBuf::from("repos/x")));
        assert_eq!(
            local("file:///srv/my%20repo"),
            Some(PathBuf::from("/srv/my repo"))
        );
        assert_eq!(
            local("file://localhost/srv/r"),
            Some(PathBuf::from("/srv/r"))
        );
        assert_eq!(local("https://host/x.git"), None);
        assert_eq!(local("ssh://git@host/x.git"), None);
        assert_eq!(local("git@host:x.git"), None);
    }

    #[test]
    fn credentials_are_offered_in_order_and_each_once() {
        let home = TempDir::new().unwrap();
        std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
        std::fs::write(home.path().join(".ssh/id_ecdsa"), "key").unwrap();
        std::fs::write(home.path().join(".ssh/id_rsa"), "key").unwrap();
        let all = CredentialType::all();
        let url = "https://me:p%40ss@host/x.git";
        let mut attempts = CredentialAttempts::default();
        let mut offered = Vec::new();
        // libgit2 asks again after every rejection; the sequence must end.
        for _ in 0..100 {
            match attempts.next(all, Some("me"), url, true, Some(home.path())) {
                Some(choice) => offered.push(choice),
                None => break,
            }
        }
        let ssh = home.path().join(".ssh");
        assert_eq!(
            offered,
            [
                CredentialChoice::Username("me".into()),
                CredentialChoice::SshAgent("me".into()),
                CredentialChoice::SshKey("me".into(), ssh.join("id_ecdsa")),
                CredentialChoice::SshKey("me".into(), ssh.join("id_rsa")),
                CredentialChoice::UrlUserPass("me".into(), "p@ss".into()),
                CredentialChoice::Helper,
                CredentialChoice::Default,
            ]
        );

        // No agent socket, no keys, no user anywhere: ssh falls back to user "git".
        let mut attempts = CredentialAttempts::default();
        let ssh_only = CredentialType::SSH_KEY | CredentialType::USERNAME;
        let first = attempts.next(ssh_only, None, "ssh://host/x", false, None);
        assert_eq!(first, Some(CredentialChoice::Username("git".into())));
        assert_eq!(
            attempts.next(ssh_only, None, "ssh://host/x", false, None),
            None
        );
    }

    #[test]
    fn resolve_link_stays_inside_the_sub_path() {
        assert_eq!(resolve_link("", "a.yaml").as_deref(), Some("a.yaml"));
        assert_eq!(resolve_link("apps", "../a.yaml").as_deref(), Some("a.yaml"));
        assert_eq!(
            resolve_link("apps/x", "./../y//b.yaml").as_deref(),
            Some("apps/y/b.yaml")
        );
        assert_eq!(resolve_link("", "../a.yaml"), None);
        assert_eq!(resolve_link("apps", "../../a.yaml"), None);
        assert_eq!(resolve_link("apps", "/etc/passwd"), None);
    }

    proptest::proptest! {
        #[test]
        fn redacted_urls_never_hold_the_password(
            user in "[a-z]{1,8}",
            // Starts upper-case: nothing else in the redacted URL is, so no accidental match.
            password in "[A-Z][A-Z0-9%@:]{0,23}",
            path in "[a-z/]{0,12}",
        ) {
            let url = format!("https://{user}:{password}@example.com/{path}");
            let redacted = redact_url(&url);
            proptest::prop_assert!(!redacted.contains(&password), "{}", redacted);
            // A token has no `:`; with one it would be `user:password`.
            let token = password.replace(':', "");
            let token_url = format!("https://{token}@example.com/{path}");
            proptest::prop_assert!(!redact_url(&token_url).contains(&token));
        }

        #[test]
        fn sub_paths_normalise_or_are_refused_without_panicking(path in "\\PC{0,40}") {
            if let Ok(normal) = normalize_sub_path(&path) {
                proptest::prop_assert!(!normal.starts_with('/'));
                proptest::prop_assert!(normal.split('/').all(|c| c != ".." && c != "."));
                let no_empty_components = normal.split('/').all(|c| !c.is_empty());
                proptest::prop_assert!(normal.is_empty() || no_empty_components);
            }
        }
    }

    #[test]
    fn only_ref_updates_count_as_changes() {
        use notify_debouncer_full::notify::Event;
        use notify_debouncer_full::notify::event::{
            AccessKind, CreateKind, ModifyKind, RenameMode,
        };
        let paths = RefPaths {
            git_dir: PathBuf::from("/w/.git"),
            common_dir: PathBuf::from("/w/.git"),
        };
        let event = |kind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let create = EventKind::Create(CreateKind::File);
        assert!(paths.is_ref_change(&event(rename, "/w/.git/refs/heads/main")));
        assert!(paths.is_ref_change(&event(create, "/w/.git/refs/tags/v1")));
        assert!(paths.is_ref_change(&event(rename, "/w/.git/HEAD")));
        assert!(paths.is_ref_change(&event(rename, "/w/.git/packed-refs")));
        assert!(!paths.is_ref_change(&event(create, "/w/.git/refs/heads/main.lock")));
        assert!(!paths.is_ref_change(&event(create, "/w/.git/index")));
        assert!(!paths.is_ref_change(&event(create, "/w/.git/objects/ab/cdef")));
        assert!(!paths.is_ref_change(&event(create, "/w/web.yaml")));
        assert!(!paths.is_ref_change(&event(
            EventKind::Access(AccessKind::Any),
            "/w/.git/refs/heads/main"
        )));
    }

    const WATCH_BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn the_watcher_sees_a_commit_in_a_work_tree_repo_but_not_file_edits() {
        let work = WorkRepo::new();
        work.write("web.yaml", "one");
        work.commit("first");
        let mut watcher = RefWatcher::new(work.dir.path(), Duration::from_millis(50)).unwrap();

        work.write("web.yaml", "edited but not committed");
        work.write("new/file.yaml", "untracked");
        // The bounded wait only matters if an event arrives: a wrong wake-up fails the test,
        // a slow machine cannot.
        let spurious = tokio::time::timeout(Duration::from_millis(300), watcher.changed()).await;
        assert!(
            spurious.is_err(),
            "work tree edits reported as a ref change"
        );

        work.remove("new/file.yaml");
        work.commit("second");
        tokio::time::timeout(WATCH_BOUND, watcher.changed())
            .await
            .expect("no change reported within the bound")
            .unwrap();
    }

    #[tokio::test]
    async fn the_watcher_sees_a_commit_in_a_bare_repo() {
        let remote = BareRemote::new();
        remote.commit("main", &[("a.yaml", File("1"))]);
        let mut watcher = RefWatcher::new(remote.dir.path(), Duration::from_millis(50)).unwrap();
        remote.commit("main", &[("a.yaml", File("2"))]);
        tokio::time::timeout(WATCH_BOUND, watcher.changed())
            .await
            .expect("no change reported within the bound")
            .unwrap();
    }

    #[tokio::test]
    async fn a_watched_local_repo_change_is_fetched() {
        let work = WorkRepo::new();
        work.write("deploy/a.yaml", "1");
        work.commit("first");
        let cache = TempDir::new().unwrap();
        let url = format!("file://{}", work.dir.path().display());
        let mut source = source_at(&url, GitReference::DefaultBranch, "deploy", cache.path());
        source.fetch().unwrap();
        let local = source.local_repository().unwrap();
        let mut watcher = RefWatcher::new(&local, Duration::from_millis(50)).unwrap();
        work.write("deploy/b.yaml", "2");
        let second = work.commit("second");
        tokio::time::timeout(WATCH_BOUND, watcher.changed())
            .await
            .expect("no change reported within the bound")
            .unwrap();
        let snapshot = tokio::task::spawn_blocking(move || source.fetch())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(snapshot.revision, second.to_string());
        assert_eq!(paths(&snapshot), ["a.yaml", "b.yaml"]);
    }

    #[test]
    fn a_non_repository_cannot_be_watched() {
        let dir = TempDir::new().unwrap();
        let err =
            RefWatcher::new(&dir.path().join("missing"), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, GitError::WatchOpen { .. }), "{err:?}");
    }
}

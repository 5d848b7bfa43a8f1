//! The folder source: a directory on this machine read into a [`Snapshot`] ([`read`]), and
//! watched for changes ([`DirWatcher`]) so that a saved file reaches the cluster within
//! tens of milliseconds, without polling.
//!
//! This module owns which files of a folder count (hidden files and `.moorignore` patterns
//! left out, [`is_manifest_file`] applied), the folder's revision (a content hash), and the
//! rule that nothing outside the folder is ever read: a symlink that leaves the folder
//! (or leads nowhere, or loops) makes the whole read fail. It does not parse files — that is
//! [`loader`](crate::gitops::loader) — and it never writes to the folder.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ignore::WalkBuilder;
use notify_debouncer_full::notify::{self, EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer_opt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    IGNORE_FILE, MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, Snapshot, SourceFile, is_manifest_file,
};

/// Why a folder could not be read or watched. Every variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The folder itself could not be found or examined.
    #[error("manifest folder {path}: {source}")]
    Root {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The path given as the folder is a file (or something else that is not a directory).
    #[error("manifest folder {path} is not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A symlink in the folder leads outside it. Refused, rather than skipped, because
    /// silently leaving out what a person linked in would prune it from the cluster.
    #[error(
        "symlink {link} points outside the manifest folder (to {target}); \
         refusing to read outside the folder"
    )]
    SymlinkOutside {
        /// The symlink.
        link: PathBuf,
        /// Where it resolves to.
        target: PathBuf,
    },
    /// A symlink in the folder cannot be resolved: its target does not exist, or it is a
    /// chain of links that loops.
    #[error("symlink {link} cannot be followed: {source}")]
    SymlinkBroken {
        /// The symlink.
        link: PathBuf,
        /// Why resolving it failed.
        #[source]
        source: io::Error,
    },
    /// A symlink in the folder leads to a directory that contains it, so the folder would
    /// be endless.
    #[error("symlink {link} loops back to its ancestor {ancestor}")]
    SymlinkLoop {
        /// The symlink.
        link: PathBuf,
        /// The directory it leads back to.
        ancestor: PathBuf,
    },
    /// A `.moorignore` file has a pattern that is not valid gitignore syntax. Refused,
    /// because applying files the person meant to leave out is worse than applying nothing.
    #[error("ignore file {path}: {source}")]
    IgnoreFile {
        /// The `.moorignore` file.
        path: PathBuf,
        /// The parse error (with the line number).
        #[source]
        source: ignore::Error,
    },
    /// A file or directory in the folder could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Walking the folder failed in a way not covered by the other variants.
    #[error("cannot walk {path}: {source}")]
    Walk {
        /// The folder, or the path the walk failed at.
        path: PathBuf,
        /// What the walker said.
        #[source]
        source: ignore::Error,
    },
    /// A path with a manifest file's name is not a regular file (a socket, a FIFO, a
    /// device), so reading it could block or make no sense.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A manifest file or `.moorignore` is bigger than [`MAX_FILE_BYTES`]; it is refused
    /// before it is read.
    #[error(
        "{path} is {size} bytes, more than the {} MiB a manifest file may hold",
        limit / (1024 * 1024)
    )]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least; a growing file is refused as soon as it passes the limit).
        size: u64,
        /// The limit, [`MAX_FILE_BYTES`].
        limit: u64,
    },
    /// The folder holds more manifest files, or more bytes of them, than one snapshot may.
    #[error("manifest folder {path} holds more than {limit} {what}; refusing to read it all")]
    TooMuch {
        /// The folder.
        path: PathBuf,
        /// The limit passed ([`MAX_FILES`] or [`MAX_TOTAL_BYTES`]).
        limit: u64,
        /// What was counted: `manifest files` or `bytes of manifests`.
        what: &'static str,
    },
    /// A manifest file's path is not valid UTF-8, so it cannot be named in a snapshot.
    #[error("path {path} is not valid UTF-8")]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// The OS watch on the folder failed (for example the inotify watch limit was reached).
    #[error("watching {path}: {source}")]
    Watch {
        /// The folder, or the path the watch failed at.
        path: PathBuf,
        /// What notify said.
        #[source]
        source: notify::Error,
    },
    /// The watcher's background thread is gone, so no more changes can be noticed.
    #[error("the watcher of {path} stopped")]
    WatcherStopped {
        /// The folder.
        path: PathBuf,
    },
}

/// Reads the manifest files under `root` (recursively) into a [`Snapshot`], sorted by
/// path, with a content-hash revision.
///
/// Left out: hidden files and directories (names starting with `.`), whatever a
/// `.moorignore` in any directory matches (gitignore syntax, relative to that directory),
/// and files [`is_manifest_file`] rejects. Git's own ignore files are *not* honoured: a
/// folder is not a repository, and a `.gitignore` meant for build output should not decide
/// what runs in the cluster. Symlinks are followed while they stay inside `root`.
///
/// An empty folder gives an empty snapshot, not an error: whether that may prune
/// everything is the caller's decision. This blocks on the filesystem; call it from
/// `tokio::task::spawn_blocking`.
pub fn read(root: &Path) -> Result<Snapshot, DirError> {
    let metadata = fs::metadata(root).map_err(|source| DirError::Root {
        path: root.to_owned(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(DirError::NotADirectory {
            path: root.to_owned(),
        });
    }
    let canonical_root = fs::canonicalize(root).map_err(|source| DirError::Root {
        path: root.to_owned(),
        source,
    })?;

    // The walker reads each directory's `.moorignore` itself, following links: check the
    // root's here and every other directory's in the entry filter, before the walker gets to
    // them, so no ignore file outside the folder (or endless, or huge) is ever opened.
    check_ignore_file(&canonical_root, root)?;

    // The symlink check runs in the walker's entry filter, which sees an entry before the
    // walker reads its `.moorignore` or yields anything below it, so no file outside the
    // root is read (walkdir may already have opened the directory's listing, nothing more).
    // The filter can only say yes or no, so it leaves its error here.
    let refused: Arc<Mutex<Option<DirError>>> = Arc::default();
    let mut builder = WalkBuilder::new(root);
    builder
        .standard_filters(false)
        .hidden(true)
        .parents(false)
        .follow_links(true)
        .add_custom_ignore_filename(IGNORE_FILE);
    {
        let refused = Arc::clone(&refused);
        let canonical_root = canonical_root.clone();
        builder.filter_entry(move |entry| match check_entry(&canonical_root, entry) {
            Ok(()) => true,
            Err(err) => {
                refused
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(err);
                false
            }
        });
    }
    let take_refusal = || {
        refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    };

    let mut files = Vec::new();
    let mut total_bytes = 0u64;
    for result in builder.build() {
        if let Some(err) = take_refusal() {
            return Err(err);
        }
        let entry = match result {
            Ok(entry) => entry,
            Err(err) => match walk_error(root, &canonical_root, err) {
                Some(err) => return Err(err),
                None => continue,
            },
        };
        if let Some(err) = entry.error() {
            // A problem with this directory's `.moorignore`.
            let path = error_path(err).unwrap_or_else(|| entry.path()).to_owned();
            return Err(DirError::IgnoreFile {
                path,
                source: without_path(err.clone()),
            });
        }
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            continue;
        }
        let Some(relative) = relative_path(root, entry.path()) else {
            if entry
                .file_name()
                .to_string_lossy()
                .rsplit_once('.')
                .is_some_and(|(_, ext)| matches!(ext, "yaml" | "yml" | "json"))
            {
                return Err(DirError::NonUtf8Path {
                    path: entry.path().to_owned(),
                });
            }
            continue;
        };
        if !is_manifest_file(&relative) {
            continue;
        }
        if !file_type.is_file() {
            return Err(DirError::NotAFile {
                path: entry.path().to_owned(),
            });
        }
        if files.len() >= MAX_FILES {
            return Err(DirError::TooMuch {
                path: root.to_owned(),
                limit: MAX_FILES as u64,
                what: "manifest files",
            });
        }
        let bytes = read_inside(&canonical_root, entry.path())?;
        total_bytes += bytes.len() as u64;
        if total_bytes > MAX_TOTAL_BYTES {
            return Err(DirError::TooMuch {
                path: root.to_owned(),
                limit: MAX_TOTAL_BYTES,
                what: "bytes of manifests",
            });
        }
        files.push(SourceFile {
            path: relative,
            bytes,
        });
    }
    if let Some(err) = take_refusal() {
        return Err(err);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot {
        revision: revision(&files),
        files,
    })
}

/// The folder revision: `sha256:` + hex of SHA-256 over, for each file in path order, its
/// path, a 0 byte, its length as a little-endian u64, and its bytes. The length makes the
/// encoding unambiguous (no two file lists hash the same input), so any change to a path
/// or a byte, a rename, an added or removed file changes the revision.
fn revision(files: &[SourceFile]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.path.as_bytes());
        hasher.update([0u8]);
        hasher.update((file.bytes.len() as u64).to_le_bytes());
        hasher.update(&file.bytes);
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// The entry filter: [`check_symlink`] for every entry and, for a directory, its
/// `.moorignore` ([`check_ignore_file`]) before the walker reads it.
fn check_entry(canonical_root: &Path, entry: &ignore::DirEntry) -> Result<(), DirError> {
    check_symlink(canonical_root, entry)?;
    if entry.file_type().is_some_and(|t| t.is_dir()) {
        check_ignore_file(canonical_root, entry.path())?;
    }
    Ok(())
}

/// Refuses the `.moorignore` of `dir` unless reading it is safe: a symlink must resolve
/// inside the root, the file must be a regular file (a FIFO would block the walk forever)
/// and no bigger than [`MAX_FILE_BYTES`]. The walker reads it by itself and would report a
/// bad pattern with the line's text, so one outside the folder must never be parsed.
fn check_ignore_file(canonical_root: &Path, dir: &Path) -> Result<(), DirError> {
    let path = dir.join(IGNORE_FILE);
    let link = match fs::symlink_metadata(&path) {
        Ok(metadata) => metadata.file_type().is_symlink(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(DirError::Read { path, source }),
    };
    if link {
        let target = fs::canonicalize(&path).map_err(|source| DirError::SymlinkBroken {
            link: path.clone(),
            source,
        })?;
        if !target.starts_with(canonical_root) {
            return Err(DirError::SymlinkOutside { link: path, target });
        }
    }
    let metadata = fs::metadata(&path).map_err(|source| DirError::Read {
        path: path.clone(),
        source,
    })?;
    if metadata.is_dir() {
        // Never read as patterns; the walker skips it as a hidden directory.
        return Ok(());
    }
    if !metadata.is_file() {
        return Err(DirError::NotAFile { path });
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(DirError::FileTooLarge {
            path,
            size: metadata.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(())
}

/// Reads one manifest file, making sure what is read is a regular file inside the root and
/// no bigger than [`MAX_FILE_BYTES`], whatever happened to the path since the walker looked
/// at it (a file swapped for a link out, a FIFO, a file still growing).
fn read_inside(canonical_root: &Path, path: &Path) -> Result<Vec<u8>, DirError> {
    let read_error = |source| DirError::Read {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading blocks until a writer comes; non-blocking it opens at
        // once and is refused below as not a regular file.
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(read_error)?;
    let opened = opened_path(&file).unwrap_or_else(|| fs::canonicalize(path));
    let target = opened.map_err(read_error)?;
    if !target.starts_with(canonical_root) {
        return Err(DirError::SymlinkOutside {
            link: path.to_owned(),
            target,
        });
    }
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(DirError::NotAFile {
            path: path.to_owned(),
        });
    }
    let too_large = |size| DirError::FileTooLarge {
        path: path.to_owned(),
        size,
        limit: MAX_FILE_BYTES,
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The path the kernel resolved an open file to (Linux: `/proc/self/fd/N`), which no later
/// rename or link swap can change; `None` where that is not available.
fn opened_path(file: &fs::File) -> Option<io::Result<PathBuf>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let link = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        match fs::read_link(link) {
            Ok(path) => Some(Ok(path)),
            // No /proc mounted: fall back to resolving the path again.
            Err(_) => None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

/// Refuses a symlink that resolves outside the root or does not resolve. A link to a file
/// outside the root whose name is not a manifest's (`LICENSE -> ../LICENSE`) is let through:
/// it is never read, so refusing it would only get in the way.
fn check_symlink(canonical_root: &Path, entry: &ignore::DirEntry) -> Result<(), DirError> {
    if !entry.path_is_symlink() {
        return Ok(());
    }
    let link = entry.path();
    let target = fs::canonicalize(link).map_err(|source| DirError::SymlinkBroken {
        link: link.to_owned(),
        source,
    })?;
    if target.starts_with(canonical_root) {
        return Ok(());
    }
    let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
    let manifest_name = entry.file_name().to_str().is_some_and(is_manifest_file);
    if !is_dir && !manifest_name {
        return Ok(());
    }
    Err(DirError::SymlinkOutside {
        link: link.to_owned(),
        target,
    })
}

/// Turns a walk error into a [`DirError`], or `None` for an error that does not concern the
/// folder: following links makes the walker read the ignore files of the root's ancestors
/// (for its loop bookkeeping; with `parents(false)` it never applies them), and a broken
/// one there is none of our business.
fn walk_error(root: &Path, canonical_root: &Path, err: ignore::Error) -> Option<DirError> {
    if let Some((ancestor, child)) = loop_of(&err) {
        return Some(DirError::SymlinkLoop {
            link: child.to_owned(),
            ancestor: ancestor.to_owned(),
        });
    }
    let path = error_path(&err).map(Path::to_owned);
    if is_ignore_file_error(&err) {
        let path = path.unwrap_or_else(|| root.to_owned());
        let inside = path.starts_with(root) || path.starts_with(canonical_root);
        if !inside {
            // Its text is not logged: the file is outside the folder and none of ours.
            tracing::debug!(path = %path.display(), "ignoring an ignore file above the manifest folder");
            return None;
        }
        return Some(DirError::IgnoreFile {
            path,
            source: without_path(err),
        });
    }
    let Some(path) = path else {
        return Some(DirError::Walk {
            path: root.to_owned(),
            source: err,
        });
    };
    let is_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        // The walker could not follow this link; resolving it again gives the precise
        // reason (no such file, too many levels of links).
        match fs::canonicalize(&path) {
            Err(source) => return Some(DirError::SymlinkBroken { link: path, source }),
            Ok(_) => return Some(DirError::Walk { path, source: err }),
        }
    }
    // The walker's error repeats the path; keep the OS error alone under the path.
    let source = err.io_error().map(|e| match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    });
    Some(match source {
        Some(source) => DirError::Read { path, source },
        None => DirError::Walk { path, source: err },
    })
}

/// The path an ignore error is about, looking through its wrappers.
fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Partial(errs) => errs.iter().find_map(error_path),
        ignore::Error::Loop { child, .. } => Some(child),
        _ => None,
    }
}

/// An ignore-file error without its path wrapper, for [`DirError::IgnoreFile`], which
/// names the path itself (the message would say it twice otherwise).
fn without_path(err: ignore::Error) -> ignore::Error {
    match err {
        ignore::Error::WithPath { err, .. } => without_path(*err),
        ignore::Error::Partial(mut errs) if errs.len() == 1 => match errs.pop() {
            Some(err) => without_path(err),
            None => ignore::Error::Partial(errs),
        },
        other => other,
    }
}

/// The `(ancestor, child)` of a symlink loop error.
fn loop_of(err: &ignore::Error) -> Option<(&Path, &Path)> {
    match err {
        ignore::Error::Loop { ancestor, child } => Some((ancestor, child)),
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => loop_of(err),
        ignore::Error::Partial(errs) => errs.iter().find_map(loop_of),
        _ => None,
    }
}

/// Whether an ignore error comes from parsing an ignore file (rather than from walking).
fn is_ignore_file_error(err: &ignore::Error) -> bool {
    match err {
        ignore::Error::Glob { .. } | ignore::Error::Partial(_) => true,
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => is_ignore_file_error(err),
        _ => false,
    }
}

/// `path` relative to `root`, `/`-separated; `None` when a component is not UTF-8.
fn relative_path(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

// ---------------------------------------------------------------------------------------
// Watching

/// The shortest debounce [`DirWatcher`] uses: the debouncer checks for due events every
/// quarter of the debounce, so a zero debounce would make its thread spin.
const MIN_DEBOUNCE: Duration = Duration::from_millis(4);

/// How many watch errors wait for [`DirWatcher::changed`] before more are dropped. Errors
/// come in bursts of the same cause (one per directory over the watch limit); the first
/// few say all there is to say.
const ERROR_BACKLOG: usize = 16;

/// The first and the longest wait between attempts to re-arm the watch on a root that is
/// gone. The parent's watch normally notices the root's return at once; the retries cover
/// the parent going away too.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Which directory a watch is on: a path can be removed and created again (or renamed
/// over) and then names a different directory, which the old OS watch does not see.
type DirId = (u64, u64);

#[cfg(unix)]
fn dir_id(metadata: &fs::Metadata) -> DirId {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
fn dir_id(_metadata: &fs::Metadata) -> DirId {
    // Without inode numbers a replaced root is only noticed once it has been seen missing.
    (0, 0)
}

/// Watches a folder and tells when something that can change its [`read`] has changed.
///
/// Built on the OS's file notifications (inotify on Linux) through a debouncer, so a burst
/// of events (an editor's save, a `git checkout`) is one notification, delivered
/// `debounce` after the burst. Access events and changes to hidden paths (except
/// `.moorignore` files) are left out; creating, removing and renaming files and
/// directories, and editing `.moorignore`, are not.
///
/// The root itself may go away: [`changed`](DirWatcher::changed) then resolves (the
/// caller's next [`read`] fails or comes back empty), and the watch is re-armed when the
/// root returns. To notice the return without polling, the root's parent is watched too
/// (non-recursively, its other entries' events filtered out); only if the parent cannot be
/// watched does re-arming fall back to retries with a back-off up to 2 s.
pub struct DirWatcher {
    /// The root, absolute, as given (not canonicalized: if it is a symlink, swapping the
    /// link is a change of root).
    root: PathBuf,
    parent: Option<PathBuf>,
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    /// One pending "something changed": capacity 1 coalesces any number of batches.
    changes: mpsc::Receiver<()>,
    errors: mpsc::Receiver<notify::Error>,
    /// The directory the recursive root watch is on; `None` while the root is gone.
    root_watch: Option<DirId>,
    /// The directory the parent watch is on; `None` when not armed.
    parent_watch: Option<DirId>,
    /// The wait before the next re-arm attempt, doubling up to [`RETRY_MAX`].
    retry: Duration,
    /// No re-arm attempt before this, so a failing one is not retried in a busy loop.
    next_arm: Option<Instant>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("root", &self.root)
            .field("root_watch", &self.root_watch)
            .field("parent_watch", &self.parent_watch)
            .finish_non_exhaustive()
    }
}

/// What woke [`DirWatcher::changed`] up.
enum Wake {
    Changed,
    Error(notify::Error),
    Stopped,
    Retry,
}

impl DirWatcher {
    /// Starts watching `root` recursively. Events are delivered `debounce` after the last
    /// one of a burst (30–50 ms is a good value: editors write a file in several steps).
    /// Fails if `root` is not an existing directory or cannot be watched.
    pub fn new(root: &Path, debounce: Duration) -> Result<Self, DirError> {
        let root = std::path::absolute(root).map_err(|source| DirError::Root {
            path: root.to_owned(),
            source,
        })?;
        let metadata = fs::metadata(&root).map_err(|source| DirError::Root {
            path: root.clone(),
            source,
        })?;
        if !metadata.is_dir() {
            return Err(DirError::NotADirectory { path: root });
        }

        let (change_tx, changes) = mpsc::channel(1);
        let (error_tx, errors) = mpsc::channel(ERROR_BACKLOG);
        let filter_root = root.clone();
        // Runs on the debouncer's thread: filter there, so irrelevant events never wake
        // the async side.
        let handler = move |result: DebounceEventResult| match result {
            Ok(events) => {
                if events.iter().any(|e| is_relevant(&filter_root, &e.event)) {
                    // Full means a notification is already pending, which is all the
                    // async side needs; Closed means the watcher was dropped.
                    let _ = change_tx.try_send(());
                }
            }
            Err(errors) => {
                for error in errors {
                    let _ = error_tx.try_send(error);
                }
            }
        };
        let debounce = debounce.max(MIN_DEBOUNCE);
        let debouncer = new_debouncer_opt::<_, RecommendedWatcher, RecommendedCache>(
            debounce,
            Some(debounce / 4),
            handler,
            RecommendedCache::new(),
            notify::Config::default(),
        )
        .map_err(|source| DirError::Watch {
            path: root.clone(),
            source,
        })?;

        let mut watcher = DirWatcher {
            parent: root.parent().map(Path::to_owned),
            root,
            debouncer,
            changes,
            errors,
            root_watch: None,
            parent_watch: None,
            retry: RETRY_FIRST,
            next_arm: None,
        };
        watcher.arm()?;
        if watcher.root_watch.is_none() {
            // Removed between the check above and arming.
            return Err(DirError::Root {
                path: watcher.root.clone(),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        Ok(watcher)
    }

    /// The folder being watched (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves once something relevant under the root has changed since the last call
    /// (or since [`new`](DirWatcher::new)), including the root being removed or coming
    /// back. Returns watch errors (such as reaching the inotify watch limit) rather than
    /// dropping them; the watcher stays usable after one.
    ///
    /// Cancel-safe: dropping the future loses no notification, so it can sit in a
    /// `tokio::select!` next to a shutdown signal.
    pub async fn changed(&mut self) -> Result<(), DirError> {
        loop {
            if self.root_watch.is_none() && self.next_arm.is_none_or(|at| at <= Instant::now()) {
                match self.arm() {
                    // The root is back since we last looked: that is a change.
                    Ok(true) => return Ok(()),
                    Ok(false) => self.schedule_retry(),
                    Err(err) => {
                        self.schedule_retry();
                        return Err(err);
                    }
                }
            }
            let retry_at = self.next_arm.filter(|_| self.root_watch.is_none());
            // Every branch is cancel-safe (mpsc::Receiver::recv, sleep), and state only
            // changes after the select, so dropping this future at the await loses nothing.
            let wake = tokio::select! {
                biased;
                error = self.errors.recv() => error.map_or(Wake::Stopped, Wake::Error),
                change = self.changes.recv() => change.map_or(Wake::Stopped, |()| Wake::Changed),
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)),
                    if retry_at.is_some() => Wake::Retry,
            };
            match wake {
                Wake::Changed => {
                    // The change may be the root being removed, replaced or restored:
                    // bring the watches in line before the caller reads the folder, so
                    // nothing that happens after that read goes unnoticed.
                    if let Err(err) = self.arm() {
                        self.schedule_retry();
                        return Err(err);
                    }
                    return Ok(());
                }
                Wake::Error(source) => {
                    let path = source
                        .paths
                        .first()
                        .cloned()
                        .unwrap_or_else(|| self.root.clone());
                    return Err(DirError::Watch { path, source });
                }
                Wake::Stopped => {
                    return Err(DirError::WatcherStopped {
                        path: self.root.clone(),
                    });
                }
                Wake::Retry => self.next_arm = None,
            }
        }
    }

    fn schedule_retry(&mut self) {
        self.next_arm = Some(Instant::now() + self.retry);
        self.retry = (self.retry * 2).min(RETRY_MAX);
    }

    /// Makes the OS watches match the filesystem: the root watched recursively when it is
    /// a directory (re-armed if it is a different directory than the one watched), not
    /// watched when it is gone, and the parent watched when possible. Returns whether the
    /// root watch was newly armed.
    fn arm(&mut self) -> Result<bool, DirError> {
        let mut armed = false;
        match fs::metadata(&self.root) {
            Ok(metadata) if metadata.is_dir() => {
                let id = dir_id(&metadata);
                if self.root_watch != Some(id) {
                    self.disarm_root();
                    match self.debouncer.watch(&self.root, RecursiveMode::Recursive) {
                        Ok(()) => {
                            self.root_watch = Some(id);
                            self.retry = RETRY_FIRST;
                            self.next_arm = None;
                            armed = true;
                        }
                        // Gone again already (or a subdirectory vanished mid-arm); the next
                        // event or retry looks again.
                        Err(err) if matches!(err.kind, notify::ErrorKind::PathNotFound) => {
                            let _ = self.debouncer.unwatch(&self.root);
                        }
                        Err(source) => {
                            let _ = self.debouncer.unwatch(&self.root);
                            return Err(DirError::Watch {
                                path: self.root.clone(),
                                source,
                            });
                        }
                    }
                }
            }
            _ => self.disarm_root(),
        }
        self.arm_parent();
        Ok(armed)
    }

    fn disarm_root(&mut self) {
        if self.root_watch.take().is_some() {
            // notify drops the watch of a removed directory by itself, so "not found" is the
            // expected answer here; for a moved-away root this stops its events.
            let _ = self.debouncer.unwatch(&self.root);
        }
    }

    /// Watches the root's parent (non-recursively) so that the root's removal and return are
    /// seen as events. Failing is not an error: the re-arm retries cover it.
    fn arm_parent(&mut self) {
        let Some(parent) = &self.parent else {
            return;
        };
        let id = fs::metadata(parent)
            .ok()
            .filter(|m| m.is_dir())
            .map(|m| dir_id(&m));
        if id == self.parent_watch {
            return;
        }
        if self.parent_watch.take().is_some() {
            let _ = self.debouncer.unwatch(parent);
        }
        let Some(id) = id else {
            return;
        };
        match self.debouncer.watch(parent, RecursiveMode::NonRecursive) {
            Ok(()) => self.parent_watch = Some(id),
            Err(err) => {
                tracing::debug!(parent = %parent.display(), error = %err, "cannot watch the manifest folder's parent; relying on retries to notice the folder's return");
            }
        }
    }
}

/// Whether an event can change what [`read`] returns for `root`.
fn is_relevant(root: &Path, event: &notify::Event) -> bool {
    // The OS dropped events: anything may have changed.
    if event.need_rescan() {
        return true;
    }
    // Reads — including our own `read` of the folder — must not wake anyone up.
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| path_is_relevant(root, path))
}

/// Whether a change at `path` can matter to the folder at `root`: the root itself, or a
/// path under it that is not hidden (a `.moorignore` file, though hidden, matters).
/// Anything outside the root comes from the parent's watch and is someone else's.
fn path_is_relevant(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        let Component::Normal(name) = component else {
            continue;
        };
        if name.as_encoded_bytes().first() == Some(&b'.') {
            return components.peek().is_none() && name == IGNORE_FILE;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tokio::time::timeout;

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, text).unwrap();
    }

    fn paths(snapshot: &Snapshot) -> Vec<&str> {
        snapshot.files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn reads_nested_directories_sorted_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "z.yaml", "z");
        write(root, "apps/web/deploy.yaml", "d");
        write(root, "apps/web/svc.yml", "s");
        write(root, "apps/db.json", "{}");
        write(root, "a.yaml", "a");
        let snapshot = read(root).unwrap();
        assert_eq!(
            paths(&snapshot),
            vec![
                "a.yaml",
                "apps/db.json",
                "apps/web/deploy.yaml",
                "apps/web/svc.yml",
                "z.yaml"
            ]
        );
        assert_eq!(snapshot.files[2].bytes, b"d");
        assert!(snapshot.revision.starts_with("sha256:"));
        assert_eq!(snapshot.revision.len(), "sha256:".len() + 64);
    }

    #[test]
    fn only_manifest_extensions_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            "a.yaml",
            "b.yml",
            "c.json",
            "README.md",
            "d.yaml.bak",
            "e.txt",
            "yaml",
            "f.YAML~",
        ] {
            write(root, name, "x");
        }
        assert_eq!(
            paths(&read(root).unwrap()),
            vec!["a.yaml", "b.yml", "c.json"]
        );
    }

    #[test]
    fn hidden_files_and_directories_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "web.yaml", "x");
        write(root, ".draft.yaml", "x");
        write(root, ".git/config.yaml", "x");
        write(root, "apps/.wip/web.yaml", "x");
        write(root, "apps/ok.yaml", "x");
        assert_eq!(
            paths(&read(root).unwrap()),
            vec!["apps/ok.yaml", "web.yaml"]
        );
    }

    #[test]
    fn moorignore_is_honoured_at_the_root_and_nested() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, IGNORE_FILE, "# drafts\ndrafts/\n*.local.yaml\n");
        write(root, "web.yaml", "x");
        write(root, "web.local.yaml", "x");
        write(root, "drafts/new.yaml", "x");
        write(
            root,
            "apps/.moorignore",
            "secret.yaml\n/only-here.yaml\n!keep.local.yaml\n",
        );
        write(root, "apps/secret.yaml", "x");
        write(root, "apps/only-here.yaml", "x");
        write(root, "apps/deeper/only-here.yaml", "x");
        write(root, "apps/deeper/secret.yaml", "x");
        write(root, "apps/keep.local.yaml", "x");
        write(root, "apps/ok.yaml", "x");
        // Git's ignore files are not ours to honour.
        write(root, ".gitignore", "web.yaml\n");
        assert_eq!(
            paths(&read(root).unwrap()),
            vec![
                "apps/deeper/only-here.yaml",
                "apps/keep.local.yaml",
                "apps/ok.yaml",
                "web.yaml"
            ]
        );
    }

    #[test]
    fn moorignore_above_the_root_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), IGNORE_FILE, "*.yaml\n[z-a]\n");
        let root = dir.path().join("manifests");
        write(&root, "web.yaml", "x");
        assert_eq!(paths(&read(&root).unwrap()), vec!["web.yaml"]);
    }

    #[test]
    fn invalid_moorignore_pattern_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "web.yaml", "x");
        write(root, "apps/.moorignore", "ok.yaml\n[z-a].yaml\n");
        let err = read(root).unwrap_err();
        assert!(matches!(err, DirError::IgnoreFile { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("apps/.moorignore: line 2: "), "{message}");
        assert_eq!(message.matches(".moorignore").count(), 1, "{message}");
    }

    #[test]
    fn empty_folder_is_an_empty_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = read(dir.path()).unwrap();
        assert!(snapshot.files.is_empty());
        assert_eq!(snapshot.revision, revision(&[]));
    }

    #[test]
    fn missing_root_or_file_root_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = read(&missing).unwrap_err();
        assert!(matches!(err, DirError::Root { .. }), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
        let file = dir.path().join("file.yaml");
        fs::write(&file, "x").unwrap();
        let err = read(&file).unwrap_err();
        assert!(matches!(err, DirError::NotADirectory { .. }), "{err:?}");
        assert!(err.to_string().contains("file.yaml"), "{err}");
    }

    #[test]
    fn revision_is_stable_and_follows_content_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "a.yaml", "one");
        write(root, "b/c.yaml", "two");
        let first = read(root).unwrap().revision;
        assert_eq!(
            read(root).unwrap().revision,
            first,
            "same content, same revision"
        );

        write(root, "a.yaml", "one!");
        let edited = read(root).unwrap().revision;
        assert_ne!(edited, first);

        write(root, "a.yaml", "one");
        assert_eq!(
            read(root).unwrap().revision,
            first,
            "back to the same content"
        );

        fs::rename(root.join("a.yaml"), root.join("a2.yaml")).unwrap();
        let renamed = read(root).unwrap().revision;
        assert_ne!(renamed, first);

        write(root, "README.md", "not a manifest");
        assert_eq!(
            read(root).unwrap().revision,
            renamed,
            "other files do not count"
        );

        // The length prefix keeps moving bytes between path and content from colliding.
        let a = [SourceFile {
            path: "ab".into(),
            bytes: b"c".to_vec(),
        }];
        let b = [SourceFile {
            path: "a".into(),
            bytes: b"bc".to_vec(),
        }];
        assert_ne!(revision(&a), revision(&b));
    }

    #[test]
    fn symlinks_inside_the_root_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write(&root, "base/web.yaml", "web");
        symlink("base", root.join("linked-dir")).unwrap();
        symlink("base/web.yaml", root.join("linked.yaml")).unwrap();
        // A link out to a file that is not a manifest is never read, so it is allowed.
        write(dir.path(), "LICENSE", "text");
        symlink("../LICENSE", root.join("LICENSE")).unwrap();
        let snapshot = read(&root).unwrap();
        assert_eq!(
            paths(&snapshot),
            vec!["base/web.yaml", "linked-dir/web.yaml", "linked.yaml"]
        );
        assert!(snapshot.files.iter().all(|f| f.bytes == b"web"));

        // The root itself may be a symlink (e.g. a release directory swapped atomically).
        symlink(&root, dir.path().join("current")).unwrap();
        let through_link = read(&dir.path().join("current")).unwrap();
        assert_eq!(through_link, snapshot);
    }

    #[test]
    fn symlinks_outside_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write(&root, "ok.yaml", "x");
        write(dir.path(), "outside/secret.yaml", "secret");

        symlink("../outside/secret.yaml", root.join("file.yaml")).unwrap();
        let err = read(&root).unwrap_err();
        match &err {
            DirError::SymlinkOutside { link, target } => {
                assert_eq!(link, &root.join("file.yaml"));
                assert!(target.ends_with("outside/secret.yaml"), "{target:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("file.yaml"), "{err}");
        fs::remove_file(root.join("file.yaml")).unwrap();

        symlink("../outside", root.join("dir")).unwrap();
        let err = read(&root).unwrap_err();
        assert!(
            matches!(&err, DirError::SymlinkOutside { link, .. } if link == &root.join("dir")),
            "{err:?}"
        );
        fs::remove_file(root.join("dir")).unwrap();

        // An absolute link out, nested.
        fs::create_dir(root.join("apps")).unwrap();
        symlink(dir.path().join("outside"), root.join("apps/abs")).unwrap();
        let err = read(&root).unwrap_err();
        assert!(matches!(err, DirError::SymlinkOutside { .. }), "{err:?}");
    }

    #[test]
    fn dangling_and_looping_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "ok.yaml", "x");

        symlink("missing.yaml", root.join("dangling.yaml")).unwrap();
        let err = read(root).unwrap_err();
        assert!(
            matches!(&err, DirError::SymlinkBroken { link, .. } if link.ends_with("dangling.yaml")),
            "{err:?}"
        );
        fs::remove_file(root.join("dangling.yaml")).unwrap();

        symlink("self.yaml", root.join("self.yaml")).unwrap();
        let err = read(root).unwrap_err();
        assert!(matches!(&err, DirError::SymlinkBroken { .. }), "{err:?}");
        fs::remove_file(root.join("self.yaml")).unwrap();

        fs::create_dir(root.join("sub")).unwrap();
        symlink("..", root.join("sub/up")).unwrap();
        let err = read(root).unwrap_err();
        assert!(
            matches!(&err, DirError::SymlinkLoop { link, .. } if link.ends_with("sub/up")),
            "{err:?}"
        );
        fs::remove_file(root.join("sub/up")).unwrap();

        // Hidden or ignored links are never looked at.
        symlink("/nonexistent", root.join(".hidden")).unwrap();
        write(root, IGNORE_FILE, "ignored\n");
        symlink("/usr", root.join("ignored")).unwrap();
        assert_eq!(paths(&read(root).unwrap()), vec!["ok.yaml"]);
    }

    /// A file of `len` bytes without writing them (sparse), so size limits cost nothing.
    fn sized(path: &Path, len: u64) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::File::create(path).unwrap().set_len(len).unwrap();
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "ok.yaml", "x");
        sized(&root.join("apps/at-limit.yaml"), MAX_FILE_BYTES);
        assert_eq!(
            paths(&read(root).unwrap()),
            vec!["apps/at-limit.yaml", "ok.yaml"]
        );

        sized(&root.join("apps/dump.yaml"), MAX_FILE_BYTES + 1);
        let err = read(root).unwrap_err();
        match &err {
            DirError::FileTooLarge { path, size, limit } => {
                assert!(path.ends_with("apps/dump.yaml"), "{path:?}");
                assert_eq!((*size, *limit), (MAX_FILE_BYTES + 1, MAX_FILE_BYTES));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("dump.yaml"), "{err}");
        assert!(err.to_string().contains("4 MiB"), "{err}");

        // Not a manifest's name: never read, never refused.
        fs::remove_file(root.join("apps/dump.yaml")).unwrap();
        sized(&root.join("disk.img"), MAX_FILE_BYTES * 4);
        assert_eq!(paths(&read(root).unwrap()).len(), 2);

        // A huge `.moorignore` is refused before the walker reads it.
        sized(&root.join("apps").join(IGNORE_FILE), MAX_FILE_BYTES + 1);
        let err = read(root).unwrap_err();
        assert!(
            matches!(&err, DirError::FileTooLarge { path, .. } if path.ends_with("apps/.moorignore")),
            "{err:?}"
        );
    }

    #[test]
    fn too_many_files_or_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for i in 0..=MAX_FILES {
            fs::write(root.join(format!("{i}.yaml")), "").unwrap();
        }
        let err = read(root).unwrap_err();
        assert!(
            matches!(
                &err,
                DirError::TooMuch {
                    what: "manifest files",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("10000 manifest files"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files = MAX_TOTAL_BYTES / MAX_FILE_BYTES + 1;
        for i in 0..files {
            sized(&root.join(format!("{i}.yaml")), MAX_FILE_BYTES);
        }
        let err = read(root).unwrap_err();
        assert!(
            matches!(
                &err,
                DirError::TooMuch {
                    what: "bytes of manifests",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_moorignore_outside_the_folder_or_not_a_file_is_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write(&root, "apps/web.yaml", "x");
        // An invalid pattern would be quoted in the error: the file must not be parsed.
        write(dir.path(), "outside/private", "[s3cr3t-line\n");

        for at in ["", "apps"] {
            let link = root.join(at).join(IGNORE_FILE);
            symlink(dir.path().join("outside/private"), &link).unwrap();
            let err = read(&root).unwrap_err();
            match &err {
                DirError::SymlinkOutside { link: got, target } => {
                    assert_eq!(got, &link);
                    assert!(target.ends_with("outside/private"), "{target:?}");
                }
                other => panic!("{at:?}: unexpected {other:?}"),
            }
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
            fs::remove_file(&link).unwrap();
        }

        // Inside the folder, a linked `.moorignore` is fine.
        write(&root, "shared-ignore", "web.yaml\n");
        symlink("../shared-ignore", root.join("apps").join(IGNORE_FILE)).unwrap();
        assert!(paths(&read(&root).unwrap()).is_empty());
        fs::remove_file(root.join("apps").join(IGNORE_FILE)).unwrap();

        // A FIFO would block the walk forever.
        nix::unistd::mkfifo(
            &root.join(IGNORE_FILE),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let err = read(&root).unwrap_err();
        assert!(
            matches!(&err, DirError::NotAFile { path } if path.ends_with(IGNORE_FILE)),
            "{err:?}"
        );
    }

    #[test]
    fn reading_rechecks_where_the_opened_file_really_is() {
        // The walker checked the path; by the time it is read it may have been swapped for
        // a link out (or a FIFO). The read itself refuses both.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write(&root, "ok.yaml", "fine");
        write(dir.path(), "outside.yaml", "private");
        let canonical = fs::canonicalize(&root).unwrap();
        assert_eq!(
            read_inside(&canonical, &root.join("ok.yaml")).unwrap(),
            b"fine"
        );

        symlink("../outside.yaml", root.join("swapped.yaml")).unwrap();
        let err = read_inside(&canonical, &root.join("swapped.yaml")).unwrap_err();
        assert!(
            matches!(&err, DirError::SymlinkOutside { target, .. } if target.ends_with("outside.yaml")),
            "{err:?}"
        );

        nix::unistd::mkfifo(
            &root.join("fifo.yaml"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let err = read_inside(&canonical, &root.join("fifo.yaml")).unwrap_err();
        assert!(matches!(err, DirError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn special_and_unreadable_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock.yaml")).unwrap();
        let err = read(root).unwrap_err();
        assert!(
            matches!(&err, DirError::NotAFile { path } if path.ends_with("sock.yaml")),
            "{err:?}"
        );
        fs::remove_file(root.join("sock.yaml")).unwrap();

        use std::os::unix::fs::PermissionsExt;
        write(root, "locked.yaml", "x");
        fs::set_permissions(root.join("locked.yaml"), fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read(root.join("locked.yaml")).is_ok() {
            // Running as root: permissions do not stop reads, nothing more to check.
            return;
        }
        let err = read(root).unwrap_err();
        assert!(
            matches!(&err, DirError::Read { path, .. } if path.ends_with("locked.yaml")),
            "{err:?}"
        );
    }

    #[test]
    fn relevance_filter() {
        let root = Path::new("/m");
        for (path, relevant) in [
            ("/m", true),
            ("/m/web.yaml", true),
            ("/m/apps", true),
            ("/m/apps/README", true),
            ("/m/.moorignore", true),
            ("/m/apps/.moorignore", true),
            ("/m/.web.yaml.swp", false),
            ("/m/.git/index", false),
            ("/m/.git/.moorignore", false),
            ("/m/apps/.wip/x.yaml", false),
            ("/other", false),
            ("/mm/web.yaml", false),
        ] {
            assert_eq!(path_is_relevant(root, Path::new(path)), relevant, "{path}");
        }
        let access = notify::Event::new(EventKind::Access(notify::event::AccessKind::Any))
            .add_path("/m/web.yaml".into());
        assert!(!is_relevant(root, &access));
        let create = notify::Event::new(EventKind::Create(notify::event::CreateKind::File))
            .add_path("/m/web.yaml".into());
        assert!(is_relevant(root, &create));
        let rescan = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(is_relevant(root, &rescan));
        let rename_to_hidden = notify::Event::new(EventKind::Modify(
            notify::event::ModifyKind::Name(notify::event::RenameMode::Both),
        ))
        .add_path("/m/web.yaml".into())
        .add_path("/m/.web.yaml".into());
        assert!(is_relevant(root, &rename_to_hidden));
    }

    // ---- watcher: real directories, real inotify ----

    const DEBOUNCE: Duration = Duration::from_millis(30);
    /// The failure bound: a change that has not arrived by then never will.
    const DEADLINE: Duration = Duration::from_secs(5);

    async fn expect_change(watcher: &mut DirWatcher, what: &str) {
        match timeout(DEADLINE, watcher.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("{what}: watcher error {err}"),
            Err(_) => panic!("{what}: no change noticed within {DEADLINE:?}"),
        }
    }

    async fn expect_quiet(watcher: &mut DirWatcher, what: &str) {
        let waited = timeout(Duration::from_millis(400), watcher.changed()).await;
        assert!(waited.is_err(), "{what}: unexpected wake-up {waited:?}");
    }

    /// Lets the notifications of the previous step arrive and drops them, so each step
    /// checks its own change. (A step's events can land in two debounce batches.)
    async fn settle(watcher: &mut DirWatcher) {
        while timeout(Duration::from_millis(150), watcher.changed())
            .await
            .is_ok()
        {}
    }

    fn watched(root: &Path) -> DirWatcher {
        DirWatcher::new(root, DEBOUNCE).unwrap()
    }

    #[test]
    fn watcher_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<DirWatcher>();
    }

    #[tokio::test]
    async fn watcher_sees_file_create_edit_rename_delete() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "existing.yaml", "a");
        let mut watcher = watched(root);

        write(root, "new.yaml", "x");
        expect_change(&mut watcher, "create").await;
        settle(&mut watcher).await;

        fs::write(root.join("existing.yaml"), "b").unwrap();
        expect_change(&mut watcher, "edit").await;
        settle(&mut watcher).await;

        fs::rename(root.join("new.yaml"), root.join("renamed.yaml")).unwrap();
        expect_change(&mut watcher, "rename").await;
        settle(&mut watcher).await;

        fs::remove_file(root.join("renamed.yaml")).unwrap();
        expect_change(&mut watcher, "delete").await;
    }

    #[tokio::test]
    async fn watcher_sees_new_directories_and_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut watcher = watched(root);

        write(root, "apps/web/deploy.yaml", "x");
        expect_change(&mut watcher, "new nested directory").await;
        settle(&mut watcher).await;
        assert_eq!(paths(&read(root).unwrap()), vec!["apps/web/deploy.yaml"]);

        // The new directory is watched too.
        fs::write(root.join("apps/web/deploy.yaml"), "y").unwrap();
        expect_change(&mut watcher, "edit in new directory").await;
        settle(&mut watcher).await;

        fs::remove_dir_all(root.join("apps")).unwrap();
        expect_change(&mut watcher, "directory removed").await;
    }

    #[tokio::test]
    async fn watcher_sees_moorignore_edits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "apps/web.yaml", "x");
        let mut watcher = watched(root);
        write(root, "apps/.moorignore", "web.yaml\n");
        expect_change(&mut watcher, ".moorignore created").await;
    }

    #[tokio::test]
    async fn watcher_ignores_hidden_paths_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "web.yaml", "x");
        write(root, ".git/HEAD", "x");
        let mut watcher = watched(root);

        write(root, ".web.yaml.swp", "x");
        fs::write(root.join(".git/HEAD"), "y").unwrap();
        write(root, ".cache/a/b.yaml", "x");
        expect_quiet(&mut watcher, "hidden changes").await;

        // The caller's own reads must not wake it up, or it would loop.
        read(root).unwrap();
        expect_quiet(&mut watcher, "reading the folder").await;

        // Still watching.
        write(root, "web.yaml", "y");
        expect_change(&mut watcher, "visible change after hidden ones").await;
    }

    #[tokio::test]
    async fn watcher_survives_the_root_going_away_and_coming_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("manifests");
        write(&root, "web.yaml", "x");
        let mut watcher = watched(&root);

        fs::remove_dir_all(&root).unwrap();
        expect_change(&mut watcher, "root removed").await;
        assert!(read(&root).is_err());
        settle(&mut watcher).await;

        write(&root, "web.yaml", "back");
        expect_change(&mut watcher, "root restored").await;
        settle(&mut watcher).await;
        assert_eq!(paths(&read(&root).unwrap()), vec!["web.yaml"]);

        // The watch was re-armed on the new directory.
        write(&root, "more.yaml", "x");
        expect_change(&mut watcher, "change in restored root").await;
        settle(&mut watcher).await;

        // Replaced in one step (rename over a missing path) is seen too.
        let staged = dir.path().join("staged");
        write(&staged, "v2.yaml", "x");
        fs::rename(&root, dir.path().join("old")).unwrap();
        fs::rename(&staged, &root).unwrap();
        expect_change(&mut watcher, "root replaced").await;
        settle(&mut watcher).await;
        write(&root, "v3.yaml", "x");
        expect_change(&mut watcher, "change in replaced root").await;
        settle(&mut watcher).await;

        // Events in the moved-away old root are no longer ours.
        write(&dir.path().join("old"), "stale.yaml", "x");
        expect_quiet(&mut watcher, "change in the old, moved-away root").await;

        // Siblings of the root (seen through the parent's watch) do not count.
        write(dir.path(), "sibling.yaml", "x");
        expect_quiet(&mut watcher, "sibling of the root").await;
    }

    #[tokio::test]
    async fn watcher_changed_is_cancel_safe() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut watcher = watched(root);
        // Drop a pending `changed` future, then make a change: it is not lost.
        assert!(
            timeout(Duration::from_millis(10), watcher.changed())
                .await
                .is_err()
        );
        write(root, "web.yaml", "x");
        expect_change(&mut watcher, "change after a cancelled wait").await;
    }

    #[test]
    fn watcher_on_a_missing_root_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DirWatcher::new(&dir.path().join("nope"), DEBOUNCE).unwrap_err();
        assert!(matches!(err, DirError::Root { .. }), "{err:?}");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}

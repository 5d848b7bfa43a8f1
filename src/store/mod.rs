//! The versioned key-value store that holds all cluster state.
//!
//! This module owns the [`Store`] trait and the types every backend shares; the backends
//! themselves live in [`embedded`] (SQLite, the default) and [`etcd`]. Semantics follow etcd
//! as kube-apiserver uses it:
//!
//! - one global revision, increased by exactly one by every successful write;
//! - every key carries `create_revision` and `mod_revision` (the API's resourceVersion);
//! - create is "put if absent", update is "put if mod_revision matches, else return what is
//!   there", delete takes an optional mod_revision precondition;
//! - a watch from revision `R` replays every event after `R` in revision order and then
//!   streams live ones; asking for history that compaction removed fails with
//!   [`StoreError::Compacted`], which the API maps to `410 Gone`.
//!
//! The store knows nothing about Kubernetes objects: values are opaque bytes (JSON by
//! convention) and keys are built by [`key`]. It must not reach into the API layer.

pub mod compactor;
pub mod embedded;
pub mod encryption;
pub mod etcd;
pub mod key;

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use compactor::Compactor;
pub use embedded::EmbeddedStore;
pub use encryption::{EncryptedStore, EncryptionConfig, EncryptionError};
pub use etcd::EtcdStore;

/// Largest value either backend accepts: etcd's default request limit (1.5 MiB). etcd counts
/// the key and the request's framing against the same limit, so on etcd a value within a
/// few hundred bytes of it is refused too — with the same [`StoreError::ValueTooLarge`].
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// A revision of the whole store. Revisions start at 1; 0 means "never written".
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The stored bytes (JSON by convention).
    pub value: Bytes,
    /// Revision at which this key was (last) created.
    pub create_revision: Revision,
    /// Revision of the write that produced this value; the API's resourceVersion.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    // Values may hold Secrets and can be large: print their size, never their content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What happened to a key at one revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key did not exist before this revision.
    Created,
    /// The key existed and got a new value.
    Updated,
    /// The key was removed.
    Deleted,
}

/// One change, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Created, updated or deleted.
    pub kind: EventKind,
    /// The key after the change. For [`EventKind::Deleted`] this is the last value the key
    /// held, with `mod_revision` set to the revision of the delete (as kube-apiserver
    /// reports a deleted object's resourceVersion).
    pub kv: KeyValue,
    /// The key before the change: `None` for creates.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options for [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Read the state as of this revision instead of the current one. Fails with
    /// [`StoreError::Compacted`] below the compacted revision and with
    /// [`StoreError::FutureRevision`] above the current one.
    pub revision: Option<Revision>,
    /// Return at most this many keys (`None` or 0: all).
    pub limit: Option<usize>,
    /// Start strictly after this key (the continuation of a previous page).
    pub start_after: Option<String>,
}

/// One page of a [`Store::list`].
#[derive(Clone, Debug)]
pub struct ListResult {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// The revision this page was read at. Continue at this same revision for a
    /// consistent multi-page list.
    pub revision: Revision,
    /// Whether more keys follow the last one returned.
    pub more: bool,
}

/// Outcome of a conditional update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Written at this revision.
    Updated(KeyValue),
    /// The precondition failed; this is what the key holds now (`None`: it does not exist).
    Conflict(Option<KeyValue>),
}

/// Outcome of a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted at `revision`; `prev` is the value it held.
    Deleted {
        /// The key's last value.
        prev: KeyValue,
        /// The revision of the delete.
        revision: Revision,
    },
    /// The key does not exist.
    NotFound,
    /// The precondition failed; this is what the key holds now.
    Conflict(KeyValue),
}

/// A live stream of changes under a prefix, in revision order. It ends only when dropped or
/// on an error it cannot recover from (compaction overtook it, the store shut down).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// Everything a backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` on a key that exists.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A value over [`MAX_VALUE_BYTES`].
    #[error(
        "value for {key} is {size} bytes; the store takes at most {limit} bytes per write, \
         key and request framing included"
    )]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A key that is empty or not valid for the store.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted {
        /// What was asked for.
        requested: Revision,
        /// The compacted revision.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current one.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// What was asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// The embedded database could not be opened, read or written.
    #[error("store database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The embedded database file exists but is not one this version of moor can use.
    #[error("store database {path}: {reason}")]
    Format {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The embedded database is held by another process.
    #[error(
        "store database {path} is locked by another process (is another moor running on this data dir?)"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// A file next to the store (lock file, snapshot) could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file given as a snapshot is not one this store can restore.
    #[error("{path} is not a moor store snapshot: {reason}")]
    InvalidSnapshot {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// etcd could not be reached or answered with an error.
    #[error("etcd at {endpoints}: {source}")]
    Etcd {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// What the client said.
        #[source]
        source: etcd_client::Error,
    },
    /// etcd did not answer within the configured time.
    #[error("etcd at {endpoints} did not answer within {timeout_ms} ms")]
    EtcdTimeout {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// The time allowed.
        timeout_ms: u64,
    },
    /// The store has been closed.
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// Whether this error means the asked-for history is gone (API: 410 Gone).
    pub fn is_compacted(&self) -> bool {
        matches!(self, StoreError::Compacted { .. })
    }
}

/// The versioned key-value store. Both backends implement it with the same semantics; the
/// conformance suite in `tests/store_conformance.rs` holds them to it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`, and the store revision it was read at.
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError>;

    /// Keys under `prefix` in ascending order, at the current or a given revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError>;

    /// Write `value` at `key` only if the key does not exist.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError>;

    /// Write `value` at `key` only if its mod_revision is `expected`.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<UpdateOutcome, StoreError>;

    /// Remove `key`, only if its mod_revision is `expected` when given.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<DeleteOutcome, StoreError>;

    /// The revision of the latest write.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Changes under `prefix` after revision `after`, then live ones.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Discard history before `revision`: reads and watches that need it fail with
    /// [`StoreError::Compacted`] afterwards. The state at `revision` and everything after
    /// stays. Compacting at or below an earlier compaction is a no-op.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The revision history has been compacted to (0 when never).
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;

    /// Write an online, consistent snapshot of the whole store to `path` (replacing it
    /// atomically). Embedded: a SQLite database; etcd: etcd's own snapshot format.
    async fn snapshot(&self, path: &std::path::Path) -> Result<(), StoreError>;
}

/// Refuse values over the limit and keys that are empty or not under `/`, in one place for
/// both backends.
pub(crate) fn check_write(key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
    check_key(key)?;
    if let Some(value) = value
        && value.len() > MAX_VALUE_BYTES
    {
        return Err(StoreError::ValueTooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    let reason = if key.is_empty() {
        "empty"
    } else if !key.starts_with('/') {
        "must start with /"
    } else if key.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey {
        key: key.to_owned(),
        reason,
    })
}

/// The first key after every key that starts with `prefix`: the exclusive end of a prefix
/// range, as etcd computes `range_end`. `None` when no such key exists (all 0xff).
pub(crate) fn prefix_end(prefix: &str) -> Option<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/registry/pods/").unwrap(), b"/registry/pods0");
        assert_eq!(prefix_end("a").unwrap(), b"b");
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn write_checks_name_the_key() {
        let big = vec![b'x'; MAX_VALUE_BYTES + 1];
        let err = check_write("/registry/a", Some(&big)).unwrap_err();
        assert!(err.to_string().contains("/registry/a"), "{err}");
        assert!(check_write("/registry/a", Some(&big[..MAX_VALUE_BYTES])).is_ok());
        assert!(matches!(
            check_write("relative", None),
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(matches!(
            check_write("", None),
            Err(StoreError::InvalidKey { .. })
        ));
    }
}

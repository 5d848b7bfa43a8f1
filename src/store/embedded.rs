//! The embedded store: a revision log in SQLite, in-process and durable. The default backend.
//!
//! Layout (one SQLite file in WAL mode, `synchronous=FULL`):
//!
//! - `log`: one row per write, keyed by its global revision: key, create_revision,
//!   prev_revision (the row it supersedes), a deleted flag and the value (for a delete, the
//!   value the key last held, so delete events need no lookup). History lives here. It has
//!   no secondary index: everything reads it by revision, and each write appends to its end,
//!   so a write dirties one page of it rather than one per index.
//! - `kv`: the current state, key → (create_revision, mod_revision); values stay in `log`.
//! - `meta`: the compacted revision and how far physical compaction has got. The current
//!   revision is the newest row of `log` (compaction never removes that row), so it can
//!   never disagree with what was written, whatever moment a crash hits.
//!
//! One writer thread owns the only write connection. Callers queue requests; the thread
//! takes every request waiting, applies them in one transaction and one fsync (group
//! commit), then answers them and publishes their events. Compaction deletes superseded
//! history in small chunks between write batches, so writers never wait more than one chunk
//! (k3s's SQLite store stalls writers for seconds while it compacts).
//!
//! Reads use a small pool of read-only connections; each read runs in one SQLite read
//! transaction, so a page of a list is a consistent snapshot at the revision it reports.
//! Watches subscribe to the writer's event broadcast first and then replay history from the
//! log, so no event falls between the two; a watcher that falls behind the broadcast goes
//! back to the log instead of losing events.
//!
//! A lock file (`<db>.lock`, an OS advisory lock) keeps a second process off the same
//! database. This module touches only its database files; it knows nothing of the API.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::{broadcast, oneshot};

use super::{
    DeleteOutcome, Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store,
    StoreError, UpdateOutcome, WatchStream, check_key, check_write, prefix_end,
};

/// The database file's name inside a data dir.
pub const DB_FILE: &str = "state.db";

/// The schema this version writes and understands (SQLite `user_version`).
const SCHEMA_VERSION: i64 = 1;

/// At most this many requests go into one transaction: bounds the time any one caller waits
/// for a batch to commit.
const MAX_BATCH: usize = 2048;

/// Revisions examined per physical compaction chunk: a few milliseconds of work.
const COMPACTION_CHUNK: i64 = 2000;

/// Events replayed from the log per read transaction.
const REPLAY_PAGE: i64 = 1000;

/// Batches buffered per watcher before it must catch up from the log.
const BROADCAST_CAPACITY: usize = 4096;

/// How long the idle writer polls for the next request before it sleeps.
const WRITER_POLL: Duration = Duration::from_micros(50);

/// How often the checkpointer folds the WAL back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// WAL frames (pages) past which the writer itself forces a full checkpoint: passive
/// checkpoints cannot shrink a WAL that is written to without pause.
const WAL_FRAMES_LIMIT: i64 = 16 * 1024;

/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    key             BLOB    NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    value           BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key             BLOB    PRIMARY KEY,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES
    ('compacted', 0), ('compact_scanned', 0);
";

/// The embedded, SQLite-backed [`Store`]. Cheap to clone; every clone talks to the same
/// writer thread. The writer stops once every clone is dropped (or at [`close`](Self::close)).
#[derive(Clone)]
pub struct EmbeddedStore {
    handle: Arc<Handle>,
    shared: Arc<Shared>,
}

/// What only the store handles hold: dropping the last one closes the request queue and so
/// stops the writer, even while watch tasks (which hold [`Shared`] only) still run.
struct Handle {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// State shared by handles, the writer thread and watch tasks.
struct Shared {
    path: PathBuf,
    /// The revision of the latest committed write.
    revision: AtomicI64,
    /// The revision history is compacted to.
    compacted: AtomicI64,
    /// Set by the checkpointer when the WAL has outgrown [`WAL_FRAMES_LIMIT`].
    wal_too_big: AtomicBool,
    /// Idle read-only connections. A std Mutex: it is held only to push or pop, never
    /// across an await or a query.
    readers: Mutex<Vec<Connection>>,
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

enum Reply {
    Created(KeyValue),
    Updated(UpdateOutcome),
    Deleted(DeleteOutcome),
    Compacted,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

impl EmbeddedStore {
    /// Open (creating if needed) the store in the SQLite file at `path`. Fails with
    /// [`StoreError::Locked`] when another process has it open, and with an error naming
    /// the file when it is unreadable, corrupt or from a newer moor.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let lock = lock_file(&path)?;
        let db_err = |source| StoreError::Database {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(db_err)?;
        init_schema(&mut conn, &path)?;
        let (revision, compacted, scanned) = {
            let meta = |name: &str| {
                conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                    r.get::<_, i64>(0)
                })
            };
            (
                last_revision(&conn).map_err(db_err)?,
                meta("compacted").map_err(db_err)?,
                meta("compact_scanned").map_err(db_err)?,
            )
        };
        let shared = Arc::new(Shared {
            path: path.clone(),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            wal_too_big: AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
        });
        let (requests, queue) = mpsc::channel();
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        // Checkpoints run on their own connection and thread so commits never wait for the
        // WAL to be copied into the database file.
        let (checkpoint_stop, checkpoint_rx) = mpsc::channel::<()>();
        let checkpointer = {
            let conn = Connection::open(&path).map_err(db_err)?;
            let shared = shared.clone();
            move || checkpoint_loop(conn, &shared, checkpoint_rx)
        };
        std::thread::Builder::new()
            .name("moor-store-checkpoint".into())
            .spawn(checkpointer)
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        let mut writer = Writer {
            _checkpoint_stop: checkpoint_stop,
            conn,
            _lock: lock,
            shared: shared.clone(),
            events: events.clone(),
            revision,
            compacted,
            scanned,
        };
        let thread = std::thread::Builder::new()
            .name("moor-store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        tracing::debug!(path = %path.display(), revision, compacted, "opened embedded store");
        Ok(Self {
            handle: Arc::new(Handle {
                requests,
                events,
                writer: Mutex::new(Some(thread)),
            }),
            shared,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Drop this handle; when it is the last one, wait until the writer has finished the
    /// queued writes and released the database, so it can be opened again (by this or
    /// another process) as soon as this returns. Open watches then end with
    /// [`StoreError::Closed`].
    pub async fn close(self) {
        let Ok(handle) = Arc::try_unwrap(self.handle) else {
            // Other handles still use the writer; it stops when the last one goes.
            return;
        };
        let Handle {
            requests,
            events,
            writer,
        } = handle;
        // Closing the queue is what ends the writer's loop once it is drained.
        drop(requests);
        drop(events);
        let thread = writer.into_inner().ok().flatten();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Write a consistent snapshot of the database at `db` to `out` without opening it as
    /// a store: works while a server has it open (a read transaction, no lock taken).
    pub async fn snapshot_file(db: &Path, out: &Path) -> Result<(), StoreError> {
        let (db, out) = (db.to_path_buf(), out.to_path_buf());
        tokio::task::spawn_blocking(move || {
            if !db.exists() {
                return Err(StoreError::Io {
                    path: db,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no store database here (wrong --data-dir?)",
                    ),
                });
            }
            let conn = open_reader(&db)?;
            vacuum_into(&conn, &db, &out)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Replace the database at `db` with the snapshot at `snapshot`. The store must not be
    /// open anywhere (the lock is taken for the duration); an existing database is only
    /// replaced when `force` is set. The snapshot is checked before anything is touched,
    /// and the new file is moved into place atomically.
    pub async fn restore_snapshot(
        snapshot: &Path,
        db: &Path,
        force: bool,
    ) -> Result<Revision, StoreError> {
        let (snapshot, db) = (snapshot.to_path_buf(), db.to_path_buf());
        tokio::task::spawn_blocking(move || restore_blocking(&snapshot, &db, force))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    async fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.handle
            .requests
            .send(Request { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on a pooled read-only connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Shared) -> Result<T, StoreError> + Send + 'static,
    {
        self.shared.clone().read(f).await
    }
}

impl Shared {
    async fn read<T, F>(self: Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Shared) -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let pooled = self.readers.lock().ok().and_then(|mut idle| idle.pop());
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&self.path)?,
            };
            let result = f(&mut conn, &self);
            if let Ok(mut idle) = self.readers.lock()
                && idle.len() < MAX_IDLE_READERS
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    fn db_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        check_key(key)?;
        let key = key.to_owned();
        self.read(move |conn, shared| {
            let tx = conn.transaction().map_err(|e| shared.db_err(e))?;
            let revision = last_revision(&tx).map_err(|e| shared.db_err(e))?;
            let kv = current(&tx, &key).map_err(|e| shared.db_err(e))?;
            Ok((kv, revision))
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let prefix = prefix.to_owned();
        self.read(move |conn, shared| list_blocking(conn, shared, &prefix, &opts))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        check_write(key, Some(&value))?;
        match self
            .submit(Op::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            Reply::Created(kv) => Ok(kv),
            _ => unreachable_reply(),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<UpdateOutcome, StoreError> {
        check_write(key, Some(&value))?;
        match self
            .submit(Op::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?
        {
            Reply::Updated(outcome) => Ok(outcome),
            _ => unreachable_reply(),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<DeleteOutcome, StoreError> {
        check_key(key)?;
        match self
            .submit(Op::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            Reply::Deleted(outcome) => Ok(outcome),
            _ => unreachable_reply(),
        }
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        // Subscribe before replaying: every event committed from here on is in the
        // broadcast, every earlier one is in the log; the overlap is skipped by revision.
        let live = self.handle.events.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let watcher = Watcher {
            shared: self.shared.clone(),
            prefix: prefix.to_owned(),
            last: after,
            tx,
        };
        tokio::spawn(watcher.run(live));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        match self.submit(Op::Compact { revision }).await? {
            Reply::Compacted => Ok(()),
            _ => unreachable_reply(),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn snapshot(&self, path: &Path) -> Result<(), StoreError> {
        let out = path.to_path_buf();
        self.read(move |conn, shared| vacuum_into(conn, &shared.path, &out))
            .await
    }
}

/// The writer answers each op with the reply of its own kind; anything else is a bug in
/// this file, reported as a closed store rather than a panic in the caller.
fn unreachable_reply<T>() -> Result<T, StoreError> {
    tracing::error!("embedded store writer answered with the wrong reply kind");
    Err(StoreError::Closed)
}

/// The writer thread's state: the only write connection and the revision counters.
struct Writer {
    conn: Connection,
    /// Held for the writer's lifetime: the advisory lock keeping other processes out.
    _lock: File,
    /// Dropped with the writer, which stops the checkpointer thread.
    _checkpoint_stop: mpsc::Sender<()>,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    revision: Revision,
    compacted: Revision,
    /// Physical compaction has walked successors up to (not including) this revision; it
    /// stops at the compacted revision itself.
    scanned: Revision,
}

impl Writer {
    fn run(&mut self, queue: mpsc::Receiver<Request>) {
        loop {
            let first = if self.compaction_pending() {
                // Compaction pending: do a chunk whenever no write is waiting.
                match queue.try_recv() {
                    Ok(req) => req,
                    Err(mpsc::TryRecvError::Empty) => {
                        self.compact_chunk();
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match next_request(&queue) {
                    Some(req) => req,
                    None => break,
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.apply(batch);
            if self.shared.wal_too_big.swap(false, Ordering::AcqRel) {
                // Waits for readers briefly (busy timeout), then restarts the WAL from its
                // beginning so it stops growing.
                if let Err(err) = self
                    .conn
                    .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                {
                    tracing::warn!(error = %err, "store WAL checkpoint failed");
                }
            }
            if self.compaction_pending() {
                self.compact_chunk();
            }
        }
        // Fold the WAL back into the main file so the next open starts clean; failure here
        // only costs a longer recovery on next open.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        tracing::debug!(path = %self.shared.path.display(), "embedded store writer stopped");
    }

    fn db_err(&self, source: rusqlite::Error) -> StoreError {
        self.shared.db_err(source)
    }

    fn compaction_pending(&self) -> bool {
        self.compacted > 0 && self.scanned < self.compacted
    }

    /// Apply a batch in one transaction. Either every write in it commits or none does;
    /// replies and events go out only after the commit is durable.
    fn apply(&mut self, batch: Vec<Request>) {
        let mut replies = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let start_revision = self.revision;
        let mut compact_to = None;
        let result = (|| -> Result<Revision, rusqlite::Error> {
            let tx = self.conn.transaction()?;
            let mut revision = start_revision;
            for req in &batch {
                let reply = match &req.op {
                    Op::Create { key, value } => {
                        apply_create(&tx, &mut revision, key, value, &mut events)?
                    }
                    Op::Update {
                        key,
                        value,
                        expected,
                    } => apply_update(&tx, &mut revision, key, value, *expected, &mut events)?,
                    Op::Delete { key, expected } => {
                        apply_delete(&tx, &mut revision, key, *expected, &mut events)?
                    }
                    Op::Compact { revision: target } => {
                        // Compaction is checked against the revision as of this point in
                        // the batch, like every other op.
                        if *target > revision {
                            Err(StoreError::FutureRevision {
                                requested: *target,
                                current: revision,
                            })
                        } else {
                            let to = compact_to.unwrap_or(self.compacted).max(*target);
                            compact_to = Some(to);
                            Ok(Reply::Compacted)
                        }
                    }
                };
                replies.push(reply);
            }
            if let Some(to) = compact_to.filter(|to| *to > self.compacted) {
                set_meta(&tx, "compacted", to)?;
            }
            tx.commit()?;
            Ok(revision)
        })();
        match result {
            Ok(revision) => {
                self.revision = revision;
                self.shared.revision.store(revision, Ordering::Release);
                if let Some(to) = compact_to.filter(|to| *to > self.compacted) {
                    self.compacted = to;
                    self.shared.compacted.store(to, Ordering::Release);
                }
                if !events.is_empty() {
                    // No receivers is fine: nobody is watching.
                    let _ = self.events.send(Arc::new(events));
                }
                for (req, reply) in batch.into_iter().zip(replies) {
                    let _ = req.reply.send(reply);
                }
            }
            Err(err) => {
                tracing::error!(path = %self.shared.path.display(), error = %err, "store write batch failed; nothing written");
                for req in batch {
                    let _ = req.reply.send(Err(self.db_err(clone_sqlite_error(&err))));
                }
            }
        }
    }

    /// Delete one chunk of superseded history below the compacted revision `C`.
    ///
    /// Every row has at most one successor (the next row of its key, which names it in
    /// `prev_revision`). A row is superseded at `C` exactly when its successor is at or
    /// below `C`, so walking successors in revision order finds every such row through the
    /// primary key alone — no index on keys, which would double the pages every write
    /// dirties. Tombstones below `C` go too: the key does not exist at `C`. What stays is the
    /// state at `C` and the prev rows of every later event.
    ///
    /// `scanned` never passes `C`: the row at exactly `C` is revisited by the next
    /// compaction, which removes it if it is a tombstone then below the new target.
    fn compact_chunk(&mut self) {
        let from = self.scanned;
        let target = self.compacted;
        let to = (from + COMPACTION_CHUNK).min(target + 1);
        let result = (|| -> Result<usize, rusqlite::Error> {
            let tx = self.conn.transaction()?;
            let superseded = tx
                .prepare_cached(
                    "DELETE FROM log WHERE revision IN (SELECT prev_revision FROM log \
                     WHERE revision >= ?1 AND revision < ?2 AND prev_revision > 0)",
                )?
                .execute(params![from, to])?;
            let tombstones = tx
                .prepare_cached(
                    "DELETE FROM log WHERE revision >= ?1 AND revision < ?2 AND revision < ?3 \
                     AND deleted = 1",
                )?
                .execute(params![from, to, target])?;
            let scanned = to.min(target);
            set_meta(&tx, "compact_scanned", scanned)?;
            tx.commit()?;
            Ok(superseded + tombstones)
        })();
        match result {
            Ok(removed) => {
                self.scanned = to.min(target);
                if removed > 0 {
                    tracing::trace!(from, to, removed, "compacted a chunk of history");
                }
            }
            Err(err) => {
                // Leave `scanned` where it is; the next idle moment retries. Back off so a
                // persistent failure (disk full) does not spin.
                tracing::warn!(error = %err, "store compaction chunk failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

type OpResult = Result<Result<Reply, StoreError>, rusqlite::Error>;

fn apply_create(
    tx: &Transaction<'_>,
    revision: &mut Revision,
    key: &str,
    value: &Bytes,
    events: &mut Vec<Event>,
) -> OpResult {
    let rev = *revision + 1;
    // One b-tree visit decides and writes: no row inserted means the key exists.
    let inserted = tx
        .prepare_cached(
            "INSERT INTO kv (key, create_revision, mod_revision) VALUES (?1, ?2, ?2) \
             ON CONFLICT (key) DO NOTHING",
        )?
        .execute(params![key.as_bytes(), rev])?;
    if inserted == 0 {
        return Ok(Err(StoreError::AlreadyExists {
            key: key.to_owned(),
        }));
    }
    insert_log(tx, rev, key, rev, 0, false, value)?;
    *revision = rev;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision: rev,
        mod_revision: rev,
    };
    events.push(Event {
        kind: EventKind::Created,
        kv: kv.clone(),
        prev: None,
    });
    Ok(Ok(Reply::Created(kv)))
}

fn apply_update(
    tx: &Transaction<'_>,
    revision: &mut Revision,
    key: &str,
    value: &Bytes,
    expected: Revision,
    events: &mut Vec<Event>,
) -> OpResult {
    let prev = match current(tx, key)? {
        Some(prev) if prev.mod_revision == expected => prev,
        other => return Ok(Ok(Reply::Updated(UpdateOutcome::Conflict(other)))),
    };
    let rev = *revision + 1;
    insert_log(
        tx,
        rev,
        key,
        prev.create_revision,
        prev.mod_revision,
        false,
        value,
    )?;
    tx.prepare_cached("UPDATE kv SET mod_revision = ?2 WHERE key = ?1")?
        .execute(params![key.as_bytes(), rev])?;
    *revision = rev;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision: prev.create_revision,
        mod_revision: rev,
    };
    events.push(Event {
        kind: EventKind::Updated,
        kv: kv.clone(),
        prev: Some(prev),
    });
    Ok(Ok(Reply::Updated(UpdateOutcome::Updated(kv))))
}

fn apply_delete(
    tx: &Transaction<'_>,
    revision: &mut Revision,
    key: &str,
    expected: Option<Revision>,
    events: &mut Vec<Event>,
) -> OpResult {
    let Some(prev) = current(tx, key)? else {
        return Ok(Ok(Reply::Deleted(DeleteOutcome::NotFound)));
    };
    if expected.is_some_and(|e| e != prev.mod_revision) {
        return Ok(Ok(Reply::Deleted(DeleteOutcome::Conflict(prev))));
    }
    let rev = *revision + 1;
    insert_log(
        tx,
        rev,
        key,
        prev.create_revision,
        prev.mod_revision,
        true,
        &prev.value,
    )?;
    tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
        .execute([key.as_bytes()])?;
    *revision = rev;
    events.push(Event {
        kind: EventKind::Deleted,
        kv: KeyValue {
            mod_revision: rev,
            ..prev.clone()
        },
        prev: Some(prev.clone()),
    });
    Ok(Ok(Reply::Deleted(DeleteOutcome::Deleted {
        prev,
        revision: rev,
    })))
}

fn insert_log(
    tx: &Transaction<'_>,
    revision: Revision,
    key: &str,
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
    value: &[u8],
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO log (revision, key, create_revision, prev_revision, deleted, value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key.as_bytes(),
        create_revision,
        prev_revision,
        deleted as i64,
        value
    ])?;
    Ok(())
}

/// The current value of `key`, read inside the caller's transaction.
fn current(conn: &Connection, key: &str) -> Result<Option<KeyValue>, rusqlite::Error> {
    conn.prepare_cached(
        "SELECT kv.create_revision, kv.mod_revision, log.value FROM kv \
         JOIN log ON log.revision = kv.mod_revision WHERE kv.key = ?1",
    )?
    .query_row([key.as_bytes()], |row| {
        Ok(KeyValue {
            key: key.to_owned(),
            create_revision: row.get(0)?,
            mod_revision: row.get(1)?,
            value: Bytes::from(row.get::<_, Vec<u8>>(2)?),
        })
    })
    .optional()
}

/// The store's current revision: the newest row of the log. Compaction never removes it (a
/// row goes only when superseded, a tombstone only below the compacted revision), so no
/// separate counter has to be written with every commit.
fn last_revision(conn: &Connection) -> Result<Revision, rusqlite::Error> {
    conn.prepare_cached("SELECT COALESCE(MAX(revision), 0) FROM log")?
        .query_row([], |r| r.get(0))
}

fn meta(conn: &Connection, name: &str) -> Result<i64, rusqlite::Error> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

fn set_meta(conn: &Connection, name: &str, value: i64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(params![name, value])?;
    Ok(())
}

fn list_blocking(
    conn: &mut Connection,
    shared: &Shared,
    prefix: &str,
    opts: &ListOptions,
) -> Result<ListResult, StoreError> {
    let tx = conn.transaction().map_err(|e| shared.db_err(e))?;
    let current_rev = last_revision(&tx).map_err(|e| shared.db_err(e))?;
    let compacted = meta(&tx, "compacted").map_err(|e| shared.db_err(e))?;
    let at = match opts.revision.filter(|r| *r > 0) {
        Some(r) if r > current_rev => {
            return Err(StoreError::FutureRevision {
                requested: r,
                current: current_rev,
            });
        }
        Some(r) if r < compacted => {
            return Err(StoreError::Compacted {
                requested: r,
                compacted,
            });
        }
        Some(r) => r,
        None => current_rev,
    };
    // Keys are BLOBs so byte order is memcmp order and a range end that is not valid UTF-8
    // still compares correctly. Start is exclusive after a continuation key, inclusive at
    // the prefix itself.
    let (start, start_inclusive) = match &opts.start_after {
        Some(after) if after.as_str() >= prefix => (after.as_bytes().to_vec(), false),
        _ => (prefix.as_bytes().to_vec(), true),
    };
    let end = range_end(prefix);
    let limit = opts.limit.filter(|l| *l > 0);
    let op = if start_inclusive { ">=" } else { ">" };
    let db = |e| shared.db_err(e);
    // Keys changed after `at`, with the state each had at `at` (None: absent then).
    let changed = if at == current_rev {
        std::collections::BTreeMap::new()
    } else {
        state_before_changes(&tx, at, &start, start_inclusive, &end).map_err(db)?
    };
    // Current keys, enough of them that every key changed since `at` could be dropped and
    // a full page still remain.
    let sql_limit = limit.map_or(-1, |l| (l + 1 + changed.len()) as i64);
    let sql = format!(
        "SELECT k.key, k.create_revision, k.mod_revision, l.value \
         FROM kv AS k JOIN log AS l ON l.revision = k.mod_revision \
         WHERE k.key {op} ?1 AND k.key < ?2 ORDER BY k.key LIMIT ?3"
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(db)?;
    let current = stmt
        .query_map(params![start, end, sql_limit], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, kv_from_row(row, 1)?))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(db)?;
    // Merge the current keys that did not change since `at` with the state at `at` of the
    // keys that did, in key order.
    let mut merged: Vec<(Vec<u8>, KeyValue)> = current
        .into_iter()
        .filter(|(key, _)| !changed.contains_key(key))
        .collect();
    merged.extend(
        changed
            .into_iter()
            .filter_map(|(key, kv)| kv.map(|kv| (key, kv))),
    );
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kvs: Vec<KeyValue> = merged.into_iter().map(|(_, kv)| kv).collect();
    let more = limit.is_some_and(|l| kvs.len() > l);
    if let Some(l) = limit {
        kvs.truncate(l);
    }
    Ok(ListResult {
        kvs,
        revision: at,
        more,
    })
}

/// For every key in the range changed after revision `at`, its state at `at`: the row its
/// first later change supersedes (`prev_revision`), or `None` when that change created it.
/// Compaction keeps the prev row of every change above the compacted revision, so this is
/// exact for any `at` at or above it, and costs only the history since `at`.
fn state_before_changes(
    tx: &Transaction<'_>,
    at: Revision,
    start: &[u8],
    start_inclusive: bool,
    end: &[u8],
) -> Result<std::collections::BTreeMap<Vec<u8>, Option<KeyValue>>, rusqlite::Error> {
    let op = if start_inclusive { ">=" } else { ">" };
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT l.key, l.prev_revision, p.create_revision, p.revision, p.value \
         FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision \
         WHERE l.revision > ?1 AND l.key {op} ?2 AND l.key < ?3 ORDER BY l.revision"
    ))?;
    let mut rows = stmt.query(params![at, start, end])?;
    let mut changed = std::collections::BTreeMap::new();
    while let Some(row) = rows.next()? {
        let key: Vec<u8> = row.get(0)?;
        if changed.contains_key(&key) {
            continue;
        }
        let prev_revision: Revision = row.get(1)?;
        let state = if prev_revision == 0 {
            None
        } else {
            Some(kv_from_row(row, 2)?)
        };
        changed.insert(key, state);
    }
    Ok(changed)
}

/// A KeyValue from columns `key` (col 0), then create_revision, mod_revision, value
/// starting at column `first`.
fn kv_from_row(row: &rusqlite::Row<'_>, first: usize) -> Result<KeyValue, rusqlite::Error> {
    let key: Vec<u8> = row.get(0)?;
    Ok(KeyValue {
        key: String::from_utf8_lossy(&key).into_owned(),
        create_revision: row.get(first)?,
        mod_revision: row.get(first + 1)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(first + 2)?),
    })
}

/// One watch: replays from the log, then follows the broadcast, falling back to the log
/// whenever it lags. Runs as its own task until the consumer drops the stream.
struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    /// The last revision delivered (or skipped as not ours).
    last: Revision,
    tx: tokio::sync::mpsc::Sender<Result<Event, StoreError>>,
}

impl Watcher {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Vec<Event>>>) {
        if self.replay().await.is_err() {
            return;
        }
        loop {
            let batch = tokio::select! {
                _ = self.tx.closed() => return,
                batch = live.recv() => batch,
            };
            match batch {
                Ok(events) => {
                    for event in events.iter() {
                        if event.revision() <= self.last {
                            continue;
                        }
                        self.last = event.revision();
                        if event.kv.key.starts_with(&self.prefix)
                            && self.tx.send(Ok(event.clone())).await.is_err()
                        {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if self.replay().await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = self.tx.send(Err(StoreError::Closed)).await;
                    return;
                }
            }
        }
    }

    /// Deliver every committed event after `last` from the log. `Err` means the watch is
    /// over (consumer gone, or history compacted away — already reported to the consumer).
    async fn replay(&mut self) -> Result<(), ()> {
        loop {
            let (prefix, after) = (self.prefix.clone(), self.last);
            let page = self
                .shared
                .clone()
                .read(move |conn, shared| replay_page(conn, shared, &prefix, after))
                .await;
            match page {
                Ok((events, scanned_to, done)) => {
                    for event in events {
                        self.tx.send(Ok(event)).await.map_err(|_| ())?;
                    }
                    self.last = self.last.max(scanned_to);
                    if done {
                        return Ok(());
                    }
                }
                Err(err) => {
                    let _ = self.tx.send(Err(err)).await;
                    return Err(());
                }
            }
        }
    }
}

/// Events after `after` under `prefix`, one page, plus the revision scanned up to and
/// whether that reached the current revision.
fn replay_page(
    conn: &mut Connection,
    shared: &Shared,
    prefix: &str,
    after: Revision,
) -> Result<(Vec<Event>, Revision, bool), StoreError> {
    let tx = conn.transaction().map_err(|e| shared.db_err(e))?;
    let current_rev = last_revision(&tx).map_err(|e| shared.db_err(e))?;
    let compacted = meta(&tx, "compacted").map_err(|e| shared.db_err(e))?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let upto = current_rev.min(after + REPLAY_PAGE);
    let end = range_end(prefix);
    let mut stmt = tx
        .prepare_cached(
            "SELECT l.revision, l.key, l.create_revision, l.prev_revision, l.deleted, l.value, \
             CASE WHEN l.deleted = 0 THEN p.value END \
             FROM log AS l LEFT JOIN log AS p ON p.revision = l.prev_revision \
             WHERE l.revision > ?1 AND l.revision <= ?2 AND l.key >= ?3 AND l.key < ?4 \
             ORDER BY l.revision",
        )
        .map_err(|e| shared.db_err(e))?;
    let events = stmt
        .query_map(params![after, upto, prefix.as_bytes(), end], |row| {
            let revision: Revision = row.get(0)?;
            let key: Vec<u8> = row.get(1)?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let create_revision: Revision = row.get(2)?;
            let prev_revision: Revision = row.get(3)?;
            let deleted: bool = row.get::<_, i64>(4)? != 0;
            let value = Bytes::from(row.get::<_, Vec<u8>>(5)?);
            let prev_value: Option<Vec<u8>> = row.get(6)?;
            let kv = KeyValue {
                key,
                value,
                create_revision,
                mod_revision: revision,
            };
            Ok(if deleted {
                Event {
                    kind: EventKind::Deleted,
                    prev: Some(KeyValue {
                        mod_revision: prev_revision,
                        ..kv.clone()
                    }),
                    kv,
                }
            } else if prev_revision == 0 {
                Event {
                    kind: EventKind::Created,
                    kv,
                    prev: None,
                }
            } else {
                Event {
                    kind: EventKind::Updated,
                    prev: prev_value.map(|v| KeyValue {
                        key: kv.key.clone(),
                        value: Bytes::from(v),
                        create_revision,
                        mod_revision: prev_revision,
                    }),
                    kv,
                }
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| shared.db_err(e))?;
    Ok((events, upto, upto >= current_rev))
}

/// The next request, waiting as long as it takes (`None`: every handle is gone).
///
/// A caller that just got its answer usually sends its next write within microseconds.
/// Polling for a short moment (yielding the CPU between polls) catches it without the
/// futex sleep and cross-CPU wake-up that a blocking receive costs, which on a VM is a
/// large share of a serial write's latency.
fn next_request(queue: &mpsc::Receiver<Request>) -> Option<Request> {
    let spin_until = std::time::Instant::now() + WRITER_POLL;
    while std::time::Instant::now() < spin_until {
        match queue.try_recv() {
            Ok(req) => return Some(req),
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Disconnected) => return None,
        }
    }
    queue.recv().ok()
}

/// Copy committed WAL frames into the database file every [`CHECKPOINT_INTERVAL`] until
/// the writer goes away. A PASSIVE checkpoint never blocks the writer or readers.
fn checkpoint_loop(conn: Connection, shared: &Shared, stop: mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(frames) if frames > WAL_FRAMES_LIMIT => {
                shared.wal_too_big.store(true, Ordering::Release);
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "passive WAL checkpoint failed"),
        }
    }
}

/// The exclusive end of the key range under `prefix`. Keys are UTF-8, which never contains
/// the byte 0xff, so `[0xff]` bounds every key when the prefix has no successor.
fn range_end(prefix: &str) -> Vec<u8> {
    prefix_end(prefix).unwrap_or_else(|| vec![0xff])
}

/// Take the advisory lock next to the database; `Locked` when another process holds it.
fn lock_file(db: &Path) -> Result<File, StoreError> {
    let path = lock_path(db);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: db.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io { path, source }),
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Set the connection up for the writer and create or check the schema.
fn init_schema(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let db_err = |source| StoreError::Database {
        path: path.to_path_buf(),
        source,
    };
    // journal_mode answers with the mode in force; anything but wal means the file could
    // not be switched (e.g. it is not a database at all, which fails before this).
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Format {
            path: path.to_path_buf(),
            reason: format!("cannot switch to WAL journaling (mode is {mode})"),
        });
    }
    // FULL: a commit is on disk before it is acknowledged. No acknowledged write is lost.
    // Checkpoints are the checkpointer thread's job, not the committing writer's.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA wal_autocheckpoint = 0; \
         PRAGMA busy_timeout = 2000;",
    )
    .map_err(db_err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    match version {
        0 => {
            let has_tables: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table')",
                    [],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if has_tables {
                return Err(StoreError::Format {
                    path: path.to_path_buf(),
                    reason: "an SQLite database that is not a moor store".into(),
                });
            }
            let tx = conn.transaction().map_err(db_err)?;
            tx.execute_batch(SCHEMA).map_err(db_err)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
        }
        SCHEMA_VERSION => {}
        other => {
            return Err(StoreError::Format {
                path: path.to_path_buf(),
                reason: format!(
                    "schema version {other}; this moor understands {SCHEMA_VERSION} (written by a newer moor?)"
                ),
            });
        }
    }
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Database {
        path: path.to_path_buf(),
        source,
    })?;
    // A reader may meet the writer mid-checkpoint; wait briefly instead of failing.
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|source| StoreError::Database {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(conn)
}

/// `VACUUM INTO` a temporary file beside `out`, fsync it, then rename it over `out`: a
/// reader never sees a half-written snapshot and a crash leaves at most the temp file.
fn vacuum_into(conn: &Connection, db: &Path, out: &Path) -> Result<(), StoreError> {
    let tmp = tmp_path(out);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&tmp)(e)),
    }
    let tmp_str = tmp.to_str().ok_or_else(|| StoreError::Io {
        path: tmp.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
    })?;
    conn.execute("VACUUM INTO ?1", [tmp_str])
        .map_err(|source| StoreError::Database {
            path: db.to_path_buf(),
            source,
        })?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    sync_parent(out);
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Make a rename durable. Best effort: some filesystems refuse to fsync a directory.
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

fn restore_blocking(snapshot: &Path, db: &Path, force: bool) -> Result<Revision, StoreError> {
    let invalid = |reason: String| StoreError::InvalidSnapshot {
        path: snapshot.to_path_buf(),
        reason,
    };
    if !snapshot.is_file() {
        return Err(invalid("no such file".into()));
    }
    // Check the snapshot thoroughly before touching anything at the destination.
    let revision = {
        let conn = Connection::open_with_flags(snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| invalid(e.to_string()))?;
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| {
                invalid(format!(
                    "{e} (a snapshot taken from etcd is restored with etcdctl; see the README)"
                ))
            })?;
        if check != "ok" {
            return Err(invalid(format!("integrity check failed: {check}")));
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| invalid(e.to_string()))?;
        if version != SCHEMA_VERSION {
            return Err(invalid(format!(
                "schema version {version}, expected {SCHEMA_VERSION}"
            )));
        }
        meta(&conn, "compacted").map_err(|e| invalid(format!("no store metadata: {e}")))?;
        last_revision(&conn).map_err(|e| invalid(e.to_string()))?
    };
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let _lock = lock_file(db)?;
    if db.exists() && !force {
        return Err(StoreError::Io {
            path: db.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a store already exists here; pass --force to replace it",
            ),
        });
    }
    let tmp = tmp_path(db);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    std::fs::copy(snapshot, &tmp).map_err(io(&tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    // The old database's WAL belongs to the old file: it must not be replayed into the
    // restored one.
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(db)(e)),
        }
    }
    std::fs::rename(&tmp, db).map_err(io(db))?;
    sync_parent(db);
    Ok(revision)
}

/// rusqlite errors are not `Clone`; a batch failure is reported to every caller in it, so
/// rebuild an equivalent error for each.
fn clone_sqlite_error(err: &rusqlite::Error) -> rusqlite::Error {
    match err {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    async fn open_temp() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn second_open_of_same_file_is_locked() {
        let (dir, _store) = open_temp().await;
        let err = EmbeddedStore::open(&dir.path().join("state.db"))
            .await
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("state.db"), "{err}");
    }

    #[tokio::test]
    async fn garbage_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = EmbeddedStore::open(&path).await.err().expect("must fail");
        assert!(err.to_string().contains("state.db"), "{err}");
    }

    #[tokio::test]
    async fn foreign_sqlite_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        let err = EmbeddedStore::open(&path).await.err().expect("must fail");
        assert!(matches!(err, StoreError::Format { .. }), "{err}");
    }

    #[tokio::test]
    async fn reopen_continues_revisions_and_keeps_data() {
        let (dir, store) = open_temp().await;
        for i in 0..10 {
            store
                .create(&format!("/k/{i}"), Bytes::from_static(b"v"))
                .await
                .unwrap();
        }
        store.close().await;
        let store = EmbeddedStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        assert_eq!(store.current_revision().await.unwrap(), 10);
        let kv = store
            .create("/k/new", Bytes::from_static(b"v"))
            .await
            .unwrap();
        assert_eq!(kv.mod_revision, 11);
        let list = store.list("/k/", ListOptions::default()).await.unwrap();
        assert_eq!(list.kvs.len(), 11);
    }

    #[tokio::test]
    async fn compaction_removes_superseded_rows_but_keeps_state() {
        let (_dir, store) = open_temp().await;
        let mut rev = store
            .create("/k/a", Bytes::from_static(b"0"))
            .await
            .unwrap()
            .mod_revision;
        for i in 1..50 {
            match store
                .update("/k/a", Bytes::from(format!("{i}")), rev)
                .await
                .unwrap()
            {
                UpdateOutcome::Updated(kv) => rev = kv.mod_revision,
                other => panic!("{other:?}"),
            }
        }
        store
            .create("/k/gone", Bytes::from_static(b"x"))
            .await
            .unwrap();
        store.delete("/k/gone", None).await.unwrap();
        let current = store.current_revision().await.unwrap();
        store.compact(current).await.unwrap();
        // Physical compaction runs in the background; wait until the log has shrunk.
        let rows = || {
            let conn = open_reader(store.path()).unwrap();
            conn.query_row("SELECT COUNT(*) FROM log", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while rows() > 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Left: the latest value of /k/a and the tombstone of /k/gone at `current`.
        assert_eq!(rows(), 2);
        let (kv, _) = store.get("/k/a").await.unwrap();
        assert_eq!(kv.unwrap().value, Bytes::from_static(b"49"));
        let list = store
            .list(
                "/k/",
                ListOptions {
                    revision: Some(current),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(list.kvs.len(), 1);
        // A watch from the compacted revision still works and sees new writes.
        let mut watch = store.watch("/k/", current).await.unwrap();
        store
            .create("/k/b", Bytes::from_static(b"b"))
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(event.kv.key, "/k/b");
    }

    #[tokio::test]
    async fn restore_refuses_garbage_and_existing_store_without_force() {
        let (dir, store) = open_temp().await;
        store
            .create("/k/a", Bytes::from_static(b"1"))
            .await
            .unwrap();
        let snap = dir.path().join("snap.db");
        store.snapshot(&snap).await.unwrap();
        store.close().await;

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, b"not a snapshot").unwrap();
        let target = dir.path().join("restored/state.db");
        let err = EmbeddedStore::restore_snapshot(&garbage, &target, false)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidSnapshot { .. }), "{err}");
        assert!(!target.exists());

        let rev = EmbeddedStore::restore_snapshot(&snap, &target, false)
            .await
            .unwrap();
        assert_eq!(rev, 1);
        let err = EmbeddedStore::restore_snapshot(&snap, &target, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        EmbeddedStore::restore_snapshot(&snap, &target, true)
            .await
            .unwrap();
        let restored = EmbeddedStore::open(&target).await.unwrap();
        let (kv, rev) = restored.get("/k/a").await.unwrap();
        assert_eq!(kv.unwrap().value, Bytes::from_static(b"1"));
        assert_eq!(rev, 1);
    }
}

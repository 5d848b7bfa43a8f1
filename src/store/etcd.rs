//! The etcd backend of the [`Store`]: cluster state kept in an etcd v3 cluster, for several
//! moor servers sharing one state.
//!
//! This module owns the translation between the [`Store`] contract and etcd's v3 API: the
//! exact transactions kube-apiserver issues (create = put-if-absent, update = compare
//! mod_revision then put or read, delete with an optional precondition), the mapping of
//! etcd's revision errors to [`StoreError::Compacted`] / [`StoreError::FutureRevision`], a
//! watch that survives etcd restarts and lost connections, and the time limits on every
//! request. It owns no state of its own beyond a hint of the compacted revision, and it knows
//! nothing about Kubernetes objects: keys and values pass through untouched.
//!
//! Finding the compacted revision: etcd v3 has no RPC that reports it. A read at revision
//! `R` fails with "required revision has been compacted" exactly when `R` is below the
//! compacted revision, so [`EtcdStore::compacted_revision`] probes with count-only reads:
//! first at the last value this client learned (from its own compactions and from compacted
//! watch responses, which carry the exact value); only when another client compacted
//! further does it binary-search the range up to the current revision. Compacting to
//! revision 1 cannot be told apart from never compacting by probing (both allow reads at 1);
//! that case reports 0 unless this client did the compaction, and loses no history either way.
//! The hint assumes etcd's compacted revision never goes back, which holds unless etcd is
//! restored from an older snapshot (and then moor must be restarted anyway: revisions went
//! back too).
//!
//! It must not reach into the API layer or interpret values; retry and back-off policy for
//! callers (re-listing after [`StoreError::Compacted`], retrying failed writes) is theirs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient,
    MaintenanceClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient,
    WatchOptions,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    DeleteOutcome, Event, EventKind, KeyValue, ListOptions, ListResult, MAX_VALUE_BYTES, Revision,
    Store, StoreError, UpdateOutcome, WatchStream, check_key, check_write, prefix_end,
};

/// Default time allowed for reaching etcd in [`EtcdStore::connect`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time allowed for one request (or one step of a streaming request).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest gRPC message accepted from etcd. tonic's default (4 MiB) is smaller than one
/// unpaginated list or one catching-up watch batch can be; etcd itself sends messages up to
/// 2 GiB, so match that rather than fail on a large but legitimate answer.
const MAX_DECODING_MESSAGE_BYTES: usize = i32::MAX as usize;

/// Events buffered between the watch task and the consumer. Past this the task stops
/// reading from etcd, and HTTP/2 flow control pushes back on etcd, which keeps the events.
const WATCH_BUFFER: usize = 256;

/// First delay before re-opening a broken watch; doubled up to [`WATCH_BACKOFF_MAX`].
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay between attempts to re-open a broken watch.
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Pause between attempts to reach etcd inside [`EtcdStore::connect`], so an etcd that is
/// still starting gets the whole connect timeout to come up.
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Pause before repeating a request that failed on the connection.
const RETRY_DELAY: Duration = Duration::from_millis(50);

/// gRPC status codes (as numbers: tonic's `Code` is not a dependency of this crate).
/// Unavailable: no connection, or etcd has no leader right now.
const GRPC_UNAVAILABLE: i32 = 14;
/// Unknown: tonic's code for a connection that broke mid-request.
const GRPC_UNKNOWN: i32 = 2;
/// Cancelled: hyper's answer for a request queued on a connection that closed before it
/// was sent.
const GRPC_CANCELLED: i32 = 1;

/// HTTP/2 pings on connections with open streams, so a watch on a silently dead connection
/// (a partition rather than a restart) is noticed and re-opened. etcd refuses pings closer
/// than 5 s apart (`--grpc-keepalive-min-time`), hence 10 s.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is considered dead.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The key read by count-only probes (current revision, compaction). Any key works: etcd
/// answers a count-only read of a single key from its index, whatever the key holds.
const PROBE_KEY: &str = "/";

/// Where etcd is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`; requests are balanced across them.
    pub endpoints: Vec<String>,
    /// Time allowed for [`EtcdStore::connect`] to get an answer, and for each TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed for each request; for streams (watch creation, snapshot), each step.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// A config for `endpoints` with the default timeouts (connect 5 s, request 10 s).
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Change the time allowed for reaching etcd.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Change the time allowed for each request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// A [`Store`] backed by etcd. Cheap to clone: clones share one connection pool, which
/// reconnects by itself when etcd restarts.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

struct Inner {
    kv: KvClient,
    watch: WatchClient,
    maintenance: MaintenanceClient,
    /// The configured endpoints, comma-separated, for error messages.
    endpoints: String,
    request_timeout: Duration,
    /// A lower bound of etcd's compacted revision: what this client compacted to or saw in
    /// a compacted watch response. Only ever raised. See the module docs.
    known_compacted: AtomicI64,
}

impl EtcdStore {
    /// Connect to etcd and check that it answers within `config.connect_timeout`.
    ///
    /// The underlying channels connect lazily and reconnect on their own, so one real read is
    /// made here (retried until the deadline, for an etcd that is still starting): an
    /// unreachable etcd fails now, with an error naming the endpoints, rather than on the
    /// first request.
    pub async fn connect(config: EtcdConfig) -> Result<Self, StoreError> {
        let endpoints = config.endpoints.join(",");
        let etcd_error = |source| StoreError::Etcd {
            endpoints: endpoints.clone(),
            source,
        };
        if config.endpoints.is_empty() {
            return Err(etcd_error(etcd_client::Error::InvalidArgs(
                "no etcd endpoints configured".to_owned(),
            )));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            // A member cut off from its cluster would otherwise keep a watch open that never
            // delivers; with this etcd cancels it and the watch re-opens elsewhere.
            .with_require_leader(true);
        // Without credentials this only builds the (lazy) channels; the timeout guards
        // against that ever changing.
        let client = match tokio::time::timeout(
            config.connect_timeout,
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(source)) => return Err(etcd_error(source)),
            Err(_) => {
                return Err(StoreError::EtcdTimeout {
                    endpoints,
                    timeout_ms: millis(config.connect_timeout),
                });
            }
        };
        let store = EtcdStore {
            inner: Arc::new(Inner {
                kv: client
                    .kv_client()
                    .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES),
                watch: client
                    .watch_client()
                    .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES),
                maintenance: client.maintenance_client(),
                endpoints: endpoints.clone(),
                request_timeout: config.request_timeout,
                known_compacted: AtomicI64::new(0),
            }),
        };

        let deadline = Instant::now() + config.connect_timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                remaining,
                store
                    .inner
                    .kv
                    .clone()
                    .get(PROBE_KEY, Some(GetOptions::new().with_count_only())),
            )
            .await;
            match attempt {
                Ok(Ok(_)) => return Ok(store),
                Ok(Err(source)) => {
                    // Only a connection problem can clear up by waiting; anything else
                    // (refused credentials, not etcd at all) is reported at once.
                    if !is_transient(&source) || Instant::now() + CONNECT_RETRY_DELAY >= deadline {
                        return Err(etcd_error(source));
                    }
                    tracing::debug!(endpoints = %endpoints, error = %source, "etcd not answering yet");
                    tokio::time::sleep(CONNECT_RETRY_DELAY).await;
                }
                Err(_) => {
                    return Err(StoreError::EtcdTimeout {
                        endpoints,
                        timeout_ms: millis(config.connect_timeout),
                    });
                }
            }
        }
    }
}

impl Inner {
    /// Run one request under the request timeout. The outer error is the timeout; the inner
    /// one is left to the caller, which may need to tell revision errors apart.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<Result<T, etcd_client::Error>, StoreError> {
        tokio::time::timeout(self.request_timeout, request)
            .await
            .map_err(|_| self.timeout())
    }

    /// Run a read, repeating it while the failure is one of the connection (etcd
    /// restarting, a connection that died with the old process, a leader election), all
    /// under one request timeout, so a brief etcd outage costs latency rather than errors.
    async fn read<T, F, Fut>(&self, attempt: F) -> Result<Result<T, etcd_client::Error>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.retrying(is_transient, attempt).await
    }

    /// Run a write, repeating it only while the request certainly had no effect (see
    /// [`is_unsent`]). A write that failed in transit may have been applied; sending it
    /// again would report a conflict with itself.
    async fn write<T, F, Fut>(
        &self,
        attempt: F,
    ) -> Result<Result<T, etcd_client::Error>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.retrying(is_unsent, attempt).await
    }

    async fn retrying<T, F, Fut>(
        &self,
        retry_if: fn(&etcd_client::Error) -> bool,
        mut attempt: F,
    ) -> Result<Result<T, etcd_client::Error>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let result = tokio::time::timeout_at(deadline, attempt())
                .await
                .map_err(|_| self.timeout())?;
            match result {
                Err(e) if retry_if(&e) && tokio::time::Instant::now() + RETRY_DELAY < deadline => {
                    tracing::debug!(endpoints = %self.endpoints, error = %e, "retrying an etcd request");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                // Out of time with the connection still failing: its error says more than
                // a timeout would (refused, reset, no leader).
                result => return Ok(result),
            }
        }
    }

    /// One Txn request that owns what it needs, so it can be repeated.
    fn txn_once(
        &self,
        txn: Txn,
    ) -> impl Future<Output = Result<TxnResponse, etcd_client::Error>> + use<> {
        let mut kv = self.kv.clone();
        async move { kv.txn(txn).await }
    }

    /// One Range request that owns what it needs, so it can be repeated.
    fn range(
        &self,
        key: Vec<u8>,
        options: Option<GetOptions>,
    ) -> impl Future<Output = Result<etcd_client::GetResponse, etcd_client::Error>> + use<> {
        let mut kv = self.kv.clone();
        async move { kv.get(key, options).await }
    }

    /// Run one request under the request timeout, with every failure mapped.
    async fn request<T>(
        &self,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        self.bounded(request).await?.map_err(|e| self.etcd(e))
    }

    fn timeout(&self) -> StoreError {
        StoreError::EtcdTimeout {
            endpoints: self.endpoints.clone(),
            timeout_ms: millis(self.request_timeout),
        }
    }

    fn etcd(&self, source: etcd_client::Error) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            source,
        }
    }

    /// etcd answered with something the protocol does not allow (a missing header, an
    /// operation result of the wrong kind): typed, never a panic.
    fn protocol(&self, what: &str) -> StoreError {
        self.etcd(etcd_client::Error::Internal(format!(
            "unexpected answer from etcd: {what}"
        )))
    }

    /// A write refused by etcd for its size (its `--max-request-bytes` counts the key and
    /// the framing too, so a value just under [`MAX_VALUE_BYTES`] can still be refused).
    fn write_error(&self, key: &str, size: usize, source: etcd_client::Error) -> StoreError {
        if grpc_message(&source).is_some_and(|m| m.contains("request is too large")) {
            return StoreError::ValueTooLarge {
                key: key.to_owned(),
                size,
                limit: MAX_VALUE_BYTES,
            };
        }
        self.etcd(source)
    }

    fn header_revision(
        &self,
        header: Option<&etcd_client::ResponseHeader>,
    ) -> Result<Revision, StoreError> {
        header
            .map(|h| h.revision())
            .ok_or_else(|| self.protocol("response without a header"))
    }

    /// The only operation result of a one-operation transaction branch.
    fn single_op(&self, resp: &TxnResponse) -> Result<TxnOpResponse, StoreError> {
        resp.op_responses()
            .into_iter()
            .next()
            .ok_or_else(|| self.protocol("transaction without an operation result"))
    }

    /// A count-only read at `revision` (0: current): the cheapest request that checks a
    /// revision against compaction and reports the current revision.
    async fn probe(&self, revision: Revision) -> Result<Probe, StoreError> {
        let options = GetOptions::new().with_count_only().with_revision(revision);
        match self
            .read(|| self.range(PROBE_KEY.into(), Some(options.clone())))
            .await?
        {
            Ok(resp) => Ok(Probe::Readable(self.header_revision(resp.header())?)),
            Err(e) => match revision_fault(&e) {
                Some(RevisionFault::Compacted) => Ok(Probe::Compacted),
                Some(RevisionFault::Future) => Ok(Probe::Future),
                None => Err(self.etcd(e)),
            },
        }
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        match self.probe(0).await? {
            Probe::Readable(revision) => Ok(revision),
            // A read at "current" cannot be compacted or in the future.
            Probe::Compacted | Probe::Future => {
                Err(self.protocol("a read at the current revision was refused"))
            }
        }
    }

    fn learn_compacted(&self, revision: Revision) {
        self.known_compacted.fetch_max(revision, Ordering::Relaxed);
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        let known = self.known_compacted.load(Ordering::Relaxed);
        // A read at `known` succeeds exactly when etcd has compacted no further than that;
        // `known` never exceeds what etcd reached, so then it is the answer.
        let start = known.max(1);
        match self.probe(start).await? {
            Probe::Readable(_) | Probe::Future => return Ok(known),
            Probe::Compacted => {}
        }
        // Another client compacted further: the answer lies in (start, current].
        let current = self.current_revision().await?;
        let found = search_compacted(start, current, |revision| async move {
            Ok(!matches!(self.probe(revision).await?, Probe::Compacted))
        })
        .await?;
        self.learn_compacted(found);
        Ok(found)
    }

    async fn compacted_error(&self, requested: Revision) -> StoreError {
        match self.compacted_revision().await {
            Ok(compacted) => StoreError::Compacted {
                requested,
                compacted,
            },
            Err(err) => err,
        }
    }

    async fn future_error(&self, requested: Revision) -> StoreError {
        match self.current_revision().await {
            Ok(current) => StoreError::FutureRevision { requested, current },
            Err(err) => err,
        }
    }

    /// Open an etcd watch on `prefix` from `start` (inclusive) and wait until etcd confirms
    /// it, so failures surface here rather than as a silent stream.
    async fn open_watch(
        &self,
        prefix: &str,
        start: Revision,
    ) -> Result<etcd_client::WatchStream, OpenFailure> {
        let (key, end) = list_range(prefix, None);
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(start)
            .with_prev_key();
        let opened = async {
            let mut stream = self.watch.clone().watch(key, Some(options)).await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        };
        let (stream, first) = match self.bounded(opened).await {
            Err(timeout) => return Err(OpenFailure::Store(timeout)),
            Ok(Err(e)) => return Err(OpenFailure::Store(self.etcd(e))),
            Ok(Ok(opened)) => opened,
        };
        let Some(first) = first else {
            return Err(OpenFailure::Store(
                self.protocol("watch stream closed before the watch was created"),
            ));
        };
        if first.compact_revision() > 0 {
            return Err(OpenFailure::Compacted(first.compact_revision()));
        }
        if first.canceled() || !first.created() {
            let reason = first.cancel_reason();
            return Err(OpenFailure::Store(self.etcd(
                etcd_client::Error::WatchError(format!("watch was not created: {reason}")),
            )));
        }
        Ok(stream)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        check_key(key)?;
        let inner = &self.inner;
        let mut resp = inner
            .read(|| inner.range(key.into(), None))
            .await?
            .map_err(|e| inner.etcd(e))?;
        let revision = inner.header_revision(resp.header())?;
        let kv = resp.take_kvs().into_iter().next().map(owned_kv);
        Ok((kv, revision))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let inner = &self.inner;
        let (start, end) = list_range(prefix, opts.start_after.as_deref());
        // etcd, too, reads revision <= 0 as "current".
        let at = opts.revision.filter(|r| *r > 0);
        let mut options = GetOptions::new()
            .with_range(end)
            .with_revision(at.unwrap_or(0));
        if let Some(limit) = opts.limit.filter(|l| *l > 0) {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let mut resp = match inner
            .read(|| inner.range(start.clone(), Some(options.clone())))
            .await?
        {
            Ok(resp) => resp,
            Err(e) => {
                let requested = at.unwrap_or(0);
                return Err(match revision_fault(&e) {
                    Some(RevisionFault::Compacted) => inner.compacted_error(requested).await,
                    Some(RevisionFault::Future) => inner.future_error(requested).await,
                    None => inner.etcd(e),
                });
            }
        };
        let header_revision = inner.header_revision(resp.header())?;
        Ok(ListResult {
            more: resp.more(),
            kvs: resp.take_kvs().into_iter().map(owned_kv).collect(),
            revision: at.unwrap_or(header_revision),
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        check_write(key, Some(&value))?;
        let inner = &self.inner;
        let size = value.len();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let resp = inner
            .write(|| inner.txn_once(txn.clone()))
            .await?
            .map_err(|e| inner.write_error(key, size, e))?;
        let revision = inner.header_revision(resp.header())?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<UpdateOutcome, StoreError> {
        check_write(key, Some(&value))?;
        let inner = &self.inner;
        let size = value.len();
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            // prev_kv carries the create_revision to keep, saving a read.
            .and_then([TxnOp::put(
                key,
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = inner
            .write(|| inner.txn_once(txn.clone()))
            .await?
            .map_err(|e| inner.write_error(key, size, e))?;
        let revision = inner.header_revision(resp.header())?;
        match (resp.succeeded(), inner.single_op(&resp)?) {
            (true, TxnOpResponse::Put(put)) => {
                // No previous value: `expected` was 0 and the key absent, so this created it.
                let create_revision = put.prev_key().map_or(revision, |p| p.create_revision());
                Ok(UpdateOutcome::Updated(KeyValue {
                    key: key.to_owned(),
                    value,
                    create_revision,
                    mod_revision: revision,
                }))
            }
            (false, TxnOpResponse::Get(mut get)) => Ok(UpdateOutcome::Conflict(
                get.take_kvs().into_iter().next().map(owned_kv),
            )),
            _ => Err(inner.protocol("update transaction answered with the wrong operation")),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<DeleteOutcome, StoreError> {
        check_key(key)?;
        let inner = &self.inner;
        let Some(expected) = expected else {
            let mut resp = inner
                .write(|| {
                    let mut kv = inner.kv.clone();
                    async move {
                        kv.delete(key, Some(DeleteOptions::new().with_prev_key()))
                            .await
                    }
                })
                .await?
                .map_err(|e| inner.etcd(e))?;
            let revision = inner.header_revision(resp.header())?;
            return Ok(match resp.take_prev_kvs().into_iter().next() {
                Some(prev) => DeleteOutcome::Deleted {
                    prev: owned_kv(prev),
                    revision,
                },
                None => DeleteOutcome::NotFound,
            });
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = inner
            .write(|| inner.txn_once(txn.clone()))
            .await?
            .map_err(|e| inner.etcd(e))?;
        let revision = inner.header_revision(resp.header())?;
        match (resp.succeeded(), inner.single_op(&resp)?) {
            (true, TxnOpResponse::Delete(mut delete)) => {
                // Nothing deleted although the precondition held: `expected` was 0 and the
                // key absent.
                Ok(match delete.take_prev_kvs().into_iter().next() {
                    Some(prev) => DeleteOutcome::Deleted {
                        prev: owned_kv(prev),
                        revision,
                    },
                    None => DeleteOutcome::NotFound,
                })
            }
            (false, TxnOpResponse::Get(mut get)) => Ok(match get.take_kvs().into_iter().next() {
                Some(current) => DeleteOutcome::Conflict(owned_kv(current)),
                None => DeleteOutcome::NotFound,
            }),
            _ => Err(inner.protocol("delete transaction answered with the wrong operation")),
        }
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let inner = Arc::clone(&self.inner);
        let after = after.max(0);
        // Replaying from `after` needs the state at `after` (each event's previous value),
        // so `after` itself must not be compacted away; etcd alone would accept one revision
        // less and then send events without their previous values. etcd also reports a
        // compacted start only asynchronously, after confirming the watch. A read at `after`
        // answers both, so the caller gets the error here rather than from the stream.
        if let Probe::Compacted = inner.probe(after.max(1)).await? {
            return Err(inner.compacted_error(after).await);
        }
        let start = after.saturating_add(1);
        let stream = match inner.open_watch(prefix, start).await {
            Ok(stream) => stream,
            Err(OpenFailure::Compacted(compacted)) => {
                inner.learn_compacted(compacted);
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted,
                });
            }
            Err(OpenFailure::Store(err)) => return Err(err),
        };
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(run_watch(inner, prefix.to_owned(), after, stream, tx));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let inner = &self.inner;
        // Nothing precedes revision 1, and `known_compacted` never exceeds etcd's value.
        if revision < 1 || revision <= inner.known_compacted.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Logical compaction: etcd marks the revision at once and frees space in the
        // background; waiting for the physical pass would only add latency.
        // Repeating a compaction that was applied only meets "already compacted", which is
        // success here: safe to retry like a read.
        let attempt = || {
            let mut kv = inner.kv.clone();
            async move { kv.compact(revision, None).await }
        };
        match inner.read(attempt).await? {
            Ok(_) => {
                inner.learn_compacted(revision);
                Ok(())
            }
            Err(e) => match revision_fault(&e) {
                // Another client compacted at or past this revision already.
                Some(RevisionFault::Compacted) => Ok(()),
                Some(RevisionFault::Future) => Err(inner.future_error(revision).await),
                None => Err(inner.etcd(e)),
            },
        }
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.compacted_revision().await
    }

    async fn snapshot(&self, path: &Path) -> Result<(), StoreError> {
        let inner = &self.inner;
        let tmp = tmp_path(path);
        let result = write_snapshot(inner, path, &tmp).await;
        if result.is_err() {
            // Best effort: a half-written temporary file is useless.
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

/// Stream etcd's snapshot into `tmp`, make it durable, then move it over `path`.
async fn write_snapshot(inner: &Inner, path: &Path, tmp: &Path) -> Result<(), StoreError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    let mut stream = inner.request(inner.maintenance.clone().snapshot()).await?;
    let mut file = tokio::fs::File::create(tmp).await.map_err(io(tmp))?;
    // Each chunk is bounded by the request timeout rather than the whole transfer, which
    // legitimately takes as long as the database is large.
    while let Some(chunk) = inner.request(stream.message()).await? {
        file.write_all(chunk.blob()).await.map_err(io(tmp))?;
    }
    file.sync_all().await.map_err(io(tmp))?;
    drop(file);
    tokio::fs::rename(tmp, path).await.map_err(io(path))?;
    // The rename is only durable once the directory entry is.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir_handle = tokio::fs::File::open(&dir).await.map_err(io(&dir))?;
    dir_handle.sync_all().await.map_err(io(&dir))?;
    Ok(())
}

/// `path` with `.tmp` appended, in the same directory so the final rename is atomic.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The task behind one [`WatchStream`]: forwards etcd's events, re-opens the etcd watch from
/// the next undelivered revision whenever the connection breaks, and stops when the
/// consumer drops the stream or history it needs is compacted.
async fn run_watch(
    inner: Arc<Inner>,
    prefix: String,
    after: Revision,
    first: etcd_client::WatchStream,
    tx: mpsc::Sender<Result<Event, StoreError>>,
) {
    // Every event up to `last` has been handed to the channel; a re-opened watch starts
    // after it, so nothing is lost or delivered twice. etcd never splits one revision's
    // events across responses, so a response boundary is always a revision boundary.
    // `last` deliberately does not follow progress notifications: before 3.4.24 / 3.5.8
    // etcd could send one ahead of events still queued (etcd-io/etcd#15220), and resuming
    // from its revision would skip them. An idle watch overtaken by compaction therefore
    // reports Compacted on re-open, and its consumer re-lists.
    let mut last = after;
    let mut stream = Some(first);
    let mut backoff = Backoff::new();
    loop {
        let mut current = match stream.take() {
            Some(current) => current,
            None => {
                let opened = tokio::select! {
                    _ = tx.closed() => return,
                    opened = inner.open_watch(&prefix, last.saturating_add(1)) => opened,
                };
                match opened {
                    Ok(current) => {
                        tracing::info!(prefix = %prefix, after = last, "etcd watch re-opened");
                        backoff = Backoff::new();
                        current
                    }
                    Err(OpenFailure::Compacted(compacted)) => {
                        inner.learn_compacted(compacted);
                        let _ = tx
                            .send(Err(StoreError::Compacted {
                                requested: last,
                                compacted,
                            }))
                            .await;
                        return;
                    }
                    Err(OpenFailure::Store(err)) => {
                        let delay = backoff.next_delay();
                        tracing::debug!(prefix = %prefix, error = %err, ?delay, "re-opening etcd watch failed");
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        continue;
                    }
                }
            }
        };
        loop {
            let message = tokio::select! {
                _ = tx.closed() => return,
                message = current.message() => message,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    tracing::warn!(prefix = %prefix, "etcd watch stream ended; re-opening");
                    break;
                }
                Err(err) => {
                    tracing::warn!(prefix = %prefix, error = %err, "etcd watch stream broke; re-opening");
                    break;
                }
            };
            if resp.compact_revision() > 0 {
                inner.learn_compacted(resp.compact_revision());
                let _ = tx
                    .send(Err(StoreError::Compacted {
                        requested: last,
                        compacted: resp.compact_revision(),
                    }))
                    .await;
                return;
            }
            if resp.canceled() {
                // Not compaction (handled above): e.g. the member lost its leader. Another
                // attempt, possibly on another member, can succeed.
                tracing::warn!(prefix = %prefix, reason = resp.cancel_reason(), "etcd canceled the watch; re-opening");
                break;
            }
            // Progress notifications and the creation answer carry no events and yield
            // nothing.
            for ev in resp.events() {
                let event = match convert_event(ev) {
                    Ok(event) => event,
                    Err(fault) => {
                        let err = match fault {
                            EventFault::MissingPrev => inner.compacted_error(last).await,
                            EventFault::MissingKv => {
                                inner.protocol("watch event without a key-value")
                            }
                        };
                        let _ = tx.send(Err(err)).await;
                        return;
                    }
                };
                let revision = event.revision();
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
                last = revision;
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Why one etcd watch event could not become an [`Event`].
#[derive(Debug, PartialEq, Eq)]
enum EventFault {
    /// etcd sent an event without its key-value: a protocol violation.
    MissingKv,
    /// An update or delete without the previous value: etcd could not read it because
    /// compaction removed it (the watch resumed right at the compacted revision).
    /// kube-apiserver treats this as an error too; the consumer re-lists.
    MissingPrev,
}

fn convert_event(ev: &etcd_client::Event) -> Result<Event, EventFault> {
    let kv = ev.kv().map(borrowed_kv).ok_or(EventFault::MissingKv)?;
    let prev = ev.prev_kv().map(borrowed_kv);
    map_event(ev.event_type() == EventType::Delete, kv, prev)
}

/// Map one etcd event (already converted key-values) to the store's [`Event`].
fn map_event(is_delete: bool, kv: KeyValue, prev: Option<KeyValue>) -> Result<Event, EventFault> {
    if is_delete {
        // etcd's delete event holds only the key and the delete revision; the store reports
        // the last value with the delete revision, as kube-apiserver does.
        let prev = prev.ok_or(EventFault::MissingPrev)?;
        return Ok(Event {
            kind: EventKind::Deleted,
            kv: KeyValue {
                key: kv.key,
                value: prev.value.clone(),
                create_revision: prev.create_revision,
                mod_revision: kv.mod_revision,
            },
            prev: Some(prev),
        });
    }
    if kv.create_revision == kv.mod_revision {
        Ok(Event {
            kind: EventKind::Created,
            kv,
            prev: None,
        })
    } else {
        Ok(Event {
            kind: EventKind::Updated,
            kv,
            prev: Some(prev.ok_or(EventFault::MissingPrev)?),
        })
    }
}

/// Binary search for etcd's compacted revision in `(compacted, readable]`, where `compacted`
/// is known to be compacted away and `readable` is known to be readable; `is_readable`
/// probes one revision. Returns the lowest readable revision, which is the compacted one.
async fn search_compacted<F, Fut>(
    compacted: Revision,
    readable: Revision,
    mut is_readable: F,
) -> Result<Revision, StoreError>
where
    F: FnMut(Revision) -> Fut,
    Fut: Future<Output = Result<bool, StoreError>>,
{
    let (mut lo, mut hi) = (compacted, readable);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if is_readable(mid).await? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// The key range `[start, end)` for keys under `prefix`, starting strictly after
/// `start_after` when given. An empty `end` never occurs: with no key after the prefix
/// (all 0xff, or empty) it is `\0`, etcd's "to the end of the keyspace".
fn list_range(prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
    let mut start = prefix.as_bytes().to_vec();
    if let Some(after) = start_after {
        // The smallest key greater than `after`.
        let mut next = after.as_bytes().to_vec();
        next.push(0);
        if next > start {
            start = next;
        }
    }
    if start.is_empty() {
        // etcd reads an empty key as "no key"; `\0` is the first possible one.
        start = vec![0];
    }
    // Past the end, read the empty range [end, end) rather than let etcd interpret a
    // reversed range; the read still checks the revision and reports the header.
    if end != [0] && start > end {
        start = end.clone();
    }
    (start, end)
}

/// Whether an etcd error is one of its revision errors (both come as gRPC OutOfRange).
#[derive(Debug, PartialEq, Eq)]
enum RevisionFault {
    Compacted,
    Future,
}

fn revision_fault(err: &etcd_client::Error) -> Option<RevisionFault> {
    grpc_message(err).and_then(classify_message)
}

fn classify_message(message: &str) -> Option<RevisionFault> {
    // etcd's ErrCompacted / ErrFutureRev texts ("etcdserver: mvcc: required revision ...").
    if message.contains("required revision has been compacted") {
        Some(RevisionFault::Compacted)
    } else if message.contains("required revision is a future revision") {
        Some(RevisionFault::Future)
    } else {
        None
    }
}

/// Whether an error is about the connection rather than the request, so that the same
/// read can succeed a moment later.
fn is_transient(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            let code = status.code() as i32;
            code == GRPC_UNAVAILABLE
                || code == GRPC_CANCELLED
                || (code == GRPC_UNKNOWN && status.message() == "transport error")
        }
        _ => false,
    }
}

/// Whether a request certainly had no effect: no connection could be made, hyper dropped it
/// from a connection that closed before sending it, or etcd had no leader to propose it to.
fn is_unsent(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let code = status.code() as i32;
            (code == GRPC_UNAVAILABLE
                // No connection; or etcd refusing before proposing anything (asked to
                // require a leader, it checks that first).
                && (status.message() == "tcp connect error"
                    || status.message() == "etcdserver: no leader"))
                || (code == GRPC_CANCELLED && status.message() == "operation was canceled")
        }
        _ => false,
    }
}

fn grpc_message(err: &etcd_client::Error) -> Option<&str> {
    match err {
        etcd_client::Error::GRpcStatus(status) => Some(status.message()),
        _ => None,
    }
}

/// Result of a count-only read at one revision.
enum Probe {
    /// The revision can be read; the current revision.
    Readable(Revision),
    /// The revision is below the compacted one.
    Compacted,
    /// The revision is above the current one.
    Future,
}

/// Why an etcd watch could not be opened.
enum OpenFailure {
    /// The start revision is compacted; etcd's compacted revision.
    Compacted(Revision),
    /// etcd could not be reached or refused.
    Store(StoreError),
}

/// Delays between attempts to re-open a watch: 100 ms doubling to 2 s.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: WATCH_BACKOFF_MIN,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_MAX);
        delay
    }
}

/// Keys are written by this module from `&str`; one that is not UTF-8 was written by
/// something else into etcd, and is shown rather than refused.
fn key_string(key: Vec<u8>) -> String {
    String::from_utf8(key).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn owned_kv(kv: etcd_client::KeyValue) -> KeyValue {
    let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    KeyValue {
        key: key_string(key),
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    }
}

fn borrowed_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: key_string(kv.key().to_vec()),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Bytes::from(value.to_owned()),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn put_of_a_new_key_is_a_create() {
        let event = map_event(false, kv("/a", "1", 5, 5), None).unwrap();
        assert_eq!(event.kind, EventKind::Created);
        assert_eq!(event.prev, None);
        assert_eq!(event.revision(), 5);
    }

    #[test]
    fn put_of_an_existing_key_is_an_update_with_prev() {
        let prev = kv("/a", "1", 5, 5);
        let event = map_event(false, kv("/a", "2", 5, 7), Some(prev.clone())).unwrap();
        assert_eq!(event.kind, EventKind::Updated);
        assert_eq!(event.prev, Some(prev));
        assert_eq!(event.kv.value, Bytes::from("2"));
    }

    #[test]
    fn delete_reports_last_value_at_delete_revision() {
        let prev = kv("/a", "2", 5, 7);
        // etcd's delete kv: key and delete revision only.
        let event = map_event(true, kv("/a", "", 0, 9), Some(prev.clone())).unwrap();
        assert_eq!(event.kind, EventKind::Deleted);
        assert_eq!(event.kv, kv("/a", "2", 5, 9));
        assert_eq!(event.prev, Some(prev));
        assert_eq!(event.revision(), 9);
    }

    #[test]
    fn update_or_delete_without_prev_is_a_fault() {
        assert_eq!(
            map_event(true, kv("/a", "", 0, 9), None),
            Err(EventFault::MissingPrev)
        );
        assert_eq!(
            map_event(false, kv("/a", "2", 5, 9), None),
            Err(EventFault::MissingPrev)
        );
    }

    #[test]
    fn list_range_covers_the_prefix() {
        let (start, end) = list_range("/registry/pods/", None);
        assert_eq!(start, b"/registry/pods/");
        assert_eq!(end, b"/registry/pods0");
    }

    #[test]
    fn list_range_starts_strictly_after_the_continue_key() {
        let (start, end) = list_range("/r/", Some("/r/b"));
        assert_eq!(start, b"/r/b\0");
        assert_eq!(end, b"/r0");
        // A continue key before the prefix does not widen the range.
        let (start, _) = list_range("/r/", Some("/a"));
        assert_eq!(start, b"/r/");
        // One past the prefix gives an empty range, not a reversed one.
        let (start, end) = list_range("/r/", Some("/s"));
        assert_eq!(start, end);
    }

    #[test]
    fn list_range_of_everything() {
        assert_eq!(list_range("", None), (vec![0], vec![0]));
    }

    #[test]
    fn revision_errors_are_recognised() {
        assert_eq!(
            classify_message("etcdserver: mvcc: required revision has been compacted"),
            Some(RevisionFault::Compacted)
        );
        assert_eq!(
            classify_message("etcdserver: mvcc: required revision is a future revision"),
            Some(RevisionFault::Future)
        );
        assert_eq!(classify_message("etcdserver: request timed out"), None);
    }

    #[tokio::test]
    async fn search_finds_the_lowest_readable_revision() {
        for compacted in 2..40 {
            let found = search_compacted(1, 40, |r| async move { Ok(r >= compacted) })
                .await
                .unwrap();
            assert_eq!(found, compacted);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new();
        let delays: Vec<_> = (0..7).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn tmp_path_is_a_sibling() {
        assert_eq!(
            tmp_path(Path::new("/var/lib/moor/snap.db")),
            PathBuf::from("/var/lib/moor/snap.db.tmp")
        );
    }

    #[test]
    fn config_builders() {
        let config = EtcdConfig::new(vec!["http://127.0.0.1:2379".into()])
            .with_connect_timeout(Duration::from_secs(1))
            .with_request_timeout(Duration::from_secs(2));
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert_eq!(config.request_timeout, Duration::from_secs(2));
        assert_eq!(
            EtcdConfig::new(vec![]).connect_timeout,
            DEFAULT_CONNECT_TIMEOUT
        );
    }
}

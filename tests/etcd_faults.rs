//! The etcd backend against a real etcd that is missing, killed and restarted: errors are
//! typed, bounded in time and name the endpoints; the same store and the same watch carry on
//! once etcd is back, losing and duplicating nothing.

#[path = "support/etcd.rs"]
mod etcd_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use moor::store::etcd::EtcdConfig;
use moor::store::{EtcdStore, Event, EventKind, Store, StoreError, UpdateOutcome, WatchStream};

use etcd_support::EtcdInstance;

/// Scheduling noise allowed on top of a configured timeout.
const SLACK: Duration = Duration::from_secs(2);

async fn start_etcd() -> EtcdInstance {
    // Starting etcd sleeps while polling its health: keep that off the async workers.
    tokio::task::spawn_blocking(EtcdInstance::start)
        .await
        .expect("start etcd")
}

async fn stop_etcd(mut etcd: EtcdInstance) -> EtcdInstance {
    tokio::task::spawn_blocking(move || {
        etcd.stop();
        etcd
    })
    .await
    .expect("stop etcd")
}

async fn restart_etcd(mut etcd: EtcdInstance) -> EtcdInstance {
    tokio::task::spawn_blocking(move || {
        etcd.start_again();
        etcd
    })
    .await
    .expect("restart etcd")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

fn val(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(err))) => panic!("watch failed: {err}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within 20 s"),
    }
}

/// Retry `op` until it succeeds: the first request after a restart may meet the connection
/// that died with the old process. Returns the value and how many attempts failed.
async fn until_ok<T, F, Fut>(what: &str, mut op: F) -> (T, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failures = 0;
    loop {
        match op().await {
            Ok(value) => return (value, failures),
            Err(err) if Instant::now() < deadline => {
                failures += 1;
                eprintln!("{what}: attempt {failures} failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("{what}: still failing after 10 s: {err}"),
        }
    }
}

/// `request` fails with a typed etcd error naming `endpoint`, within `limit`.
async fn fails_in_time<T: std::fmt::Debug>(
    what: &str,
    endpoint: &str,
    limit: Duration,
    request: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    let result = request.await;
    let elapsed = started.elapsed();
    let err = match result {
        Ok(value) => panic!("{what} succeeded with etcd stopped: {value:?}"),
        Err(err) => err,
    };
    assert!(
        matches!(
            err,
            StoreError::Etcd { .. } | StoreError::EtcdTimeout { .. }
        ),
        "{what}: typed etcd error: {err:?}"
    );
    assert!(
        err.to_string().contains(endpoint),
        "{what}: error names {endpoint}: {err}"
    );
    assert!(
        elapsed < limit,
        "{what} failed after {elapsed:?}, allowed {limit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_nothing_fails_in_time_naming_the_endpoint() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let connect_timeout = Duration::from_secs(1);
    let config = EtcdConfig::new(vec![endpoint.clone()]).with_connect_timeout(connect_timeout);

    let started = Instant::now();
    let result = EtcdStore::connect(config).await;
    let elapsed = started.elapsed();

    let err = match result {
        Ok(store) => panic!("connected to nothing at {endpoint}: {store:?}"),
        Err(err) => err,
    };
    assert!(
        matches!(
            err,
            StoreError::Etcd { .. } | StoreError::EtcdTimeout { .. }
        ),
        "typed etcd error: {err:?}"
    );
    assert!(
        err.to_string().contains(&endpoint),
        "error names {endpoint}: {err}"
    );
    assert!(
        elapsed < connect_timeout + SLACK,
        "connect gave up after {elapsed:?}, allowed {connect_timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_no_endpoints_is_an_error() {
    match EtcdStore::connect(EtcdConfig::new(vec![])).await {
        Err(StoreError::Etcd { .. }) => {}
        other => panic!("expected an etcd error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_store_works_again_after_etcd_restarts() {
    let etcd = start_etcd().await;
    let endpoint = etcd.endpoint();
    let request_timeout = Duration::from_secs(1);
    let config = EtcdConfig::new(vec![endpoint.clone()])
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(request_timeout);
    let store = EtcdStore::connect(config).await.expect("connect");
    let before = store
        .create("/registry/pods/default/a", val("a1"))
        .await
        .expect("create before the restart");

    let etcd = stop_etcd(etcd).await;

    // Reads, writes and watches all fail, typed, in time, naming the endpoint.
    let limit = request_timeout + SLACK;
    let key = "/registry/pods/default/a";
    fails_in_time("get", &endpoint, limit, store.get(key)).await;
    fails_in_time(
        "update",
        &endpoint,
        limit,
        store.update(key, val("a2"), before.mod_revision),
    )
    .await;
    fails_in_time("delete", &endpoint, limit, store.delete(key, None)).await;
    fails_in_time(
        "list",
        &endpoint,
        limit,
        store.list("/registry/", Default::default()),
    )
    .await;
    fails_in_time(
        "current_revision",
        &endpoint,
        limit,
        store.current_revision(),
    )
    .await;
    fails_in_time(
        "compact",
        &endpoint,
        limit,
        store.compact(before.mod_revision),
    )
    .await;
    let watch = async { store.watch("/registry/pods/", 0).await.map(|_| ()) };
    fails_in_time("watch", &endpoint, limit, watch).await;

    let etcd = restart_etcd(etcd).await;

    // The same store, no reconnecting by hand, and not one failed request.
    let (kv, _) = store
        .get("/registry/pods/default/a")
        .await
        .expect("get after restart");
    assert_eq!(kv, Some(before.clone()), "data survived the restart");
    match store
        .update("/registry/pods/default/a", val("a2"), before.mod_revision)
        .await
        .expect("update after restart")
    {
        UpdateOutcome::Updated(kv) => {
            assert_eq!(kv.create_revision, before.create_revision);
            assert_eq!(kv.mod_revision, before.mod_revision + 1);
        }
        other => panic!("update after restart: {other:?}"),
    }
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_survives_an_etcd_restart_without_loss_or_duplicates() {
    let etcd = start_etcd().await;
    let config = EtcdConfig::new(vec![etcd.endpoint()])
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Duration::from_secs(2));
    let store = EtcdStore::connect(config).await.expect("connect");
    let prefix = "/registry/configmaps/";
    let start = store.current_revision().await.expect("current revision");

    let a = store
        .create("/registry/configmaps/default/a", val("a1"))
        .await
        .expect("create a");
    let b = store
        .create("/registry/configmaps/default/b", val("b1"))
        .await
        .expect("create b");
    let mut w = store.watch(prefix, start).await.expect("watch");
    // One event before the restart is read, one is still in flight.
    assert_eq!(next_event(&mut w).await.kv, a);

    let etcd = stop_etcd(etcd).await;
    // Long enough for the watch to notice and start backing off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let etcd = restart_etcd(etcd).await;

    let a2 = store
        .update("/registry/configmaps/default/a", val("a2"), a.mod_revision)
        .await
        .expect("update after restart");
    let UpdateOutcome::Updated(a2) = a2 else {
        panic!("update after restart: {a2:?}");
    };
    let outcome = store
        .delete("/registry/configmaps/default/b", Some(b.mod_revision))
        .await
        .expect("delete after restart");
    let deleted_at = match outcome {
        moor::store::DeleteOutcome::Deleted { revision, .. } => revision,
        other => panic!("delete after restart: {other:?}"),
    };

    // Exactly: b's create (pre-restart, not yet read), a's update, b's delete.
    let created_b = next_event(&mut w).await;
    assert_eq!(created_b.kind, EventKind::Created);
    assert_eq!(created_b.kv, b);
    let updated_a = next_event(&mut w).await;
    assert_eq!(updated_a.kind, EventKind::Updated);
    assert_eq!(updated_a.kv, a2);
    assert_eq!(updated_a.prev, Some(a.clone()));
    let deleted_b = next_event(&mut w).await;
    assert_eq!(deleted_b.kind, EventKind::Deleted);
    assert_eq!(deleted_b.revision(), deleted_at);
    assert_eq!(deleted_b.prev, Some(b.clone()));

    // Nothing is delivered twice.
    match tokio::time::timeout(Duration::from_millis(1500), w.next()).await {
        Err(_) => {}
        Ok(item) => panic!("unexpected watch item after the last write: {item:?}"),
    }

    // A second restart with the watch idle: it re-opens from where it was and carries on.
    let etcd = stop_etcd(etcd).await;
    let etcd = restart_etcd(etcd).await;
    let c = store
        .create("/registry/configmaps/default/c", val("c1"))
        .await
        .expect("create after the second restart");
    let created_c = next_event(&mut w).await;
    assert_eq!(created_c.kind, EventKind::Created);
    assert_eq!(created_c.kv, c);
    match tokio::time::timeout(Duration::from_millis(1500), w.next()).await {
        Err(_) => {}
        Ok(item) => panic!("unexpected watch item after the last write: {item:?}"),
    }
    drop(etcd);
}

/// A TCP proxy in front of etcd whose connections can be cut and restored, so a store can
/// lose etcd while another store keeps writing to it.
struct Proxy {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    accept: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    mode: ProxyMode,
    connections: Vec<tokio::task::AbortHandle>,
    /// Connections accepted in [`ProxyMode::Stall`], held open and never answered.
    stalled: Vec<tokio::net::TcpStream>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProxyMode {
    /// Forward to etcd.
    Open,
    /// Close new connections at once.
    Refuse,
    /// Accept new connections and never answer: a hung etcd or a black-holed network.
    Stall,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(ProxyState {
            mode: ProxyMode::Open,
            connections: Vec::new(),
            stalled: Vec::new(),
        }));
        let accept_state = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                // No await while the lock is held: it only guards the flag and the list.
                let mut state = accept_state.lock().expect("proxy state");
                match state.mode {
                    ProxyMode::Open => {}
                    // Dropping the socket closes it: the client sees the connection fail.
                    ProxyMode::Refuse => continue,
                    ProxyMode::Stall => {
                        state.stalled.push(client);
                        continue;
                    }
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                state.connections.push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            state,
            accept,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Close every proxied connection and refuse new ones.
    fn cut(&self) {
        self.close_all(ProxyMode::Refuse);
    }

    /// Close every proxied connection and let new ones hang.
    fn stall(&self) {
        self.close_all(ProxyMode::Stall);
    }

    fn close_all(&self, mode: ProxyMode) {
        let mut state = self.state.lock().expect("proxy state");
        state.mode = mode;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
        state.stalled.clear();
    }

    fn restore(&self) {
        let mut state = self.state.lock().expect("proxy state");
        state.mode = ProxyMode::Open;
        state.stalled.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// One store straight to etcd, one through a proxy that the test can cut; requests time out
/// after 2 s, TCP connects after `connect_timeout`.
async fn direct_and_proxied(
    etcd: &EtcdInstance,
    connect_timeout: Duration,
) -> (EtcdStore, EtcdStore, Proxy) {
    let upstream = etcd
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("etcd address");
    let proxy = Proxy::start(upstream).await;
    let config = |endpoint: String| {
        EtcdConfig::new(vec![endpoint])
            .with_connect_timeout(connect_timeout)
            .with_request_timeout(Duration::from_secs(2))
    };
    let direct = EtcdStore::connect(config(etcd.endpoint()))
        .await
        .expect("connect directly");
    let proxied = EtcdStore::connect(config(proxy.endpoint()))
        .await
        .expect("connect through the proxy");
    (direct, proxied, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cut_off_from_etcd_catches_up_on_writes_made_meanwhile() {
    let etcd = start_etcd().await;
    let (direct, proxied, proxy) = direct_and_proxied(&etcd, Duration::from_secs(2)).await;
    let prefix = "/registry/services/";
    let start = direct.current_revision().await.expect("current revision");
    let a = direct
        .create("/registry/services/default/a", val("a1"))
        .await
        .expect("create a");
    let mut w = proxied.watch(prefix, start).await.expect("watch");
    assert_eq!(next_event(&mut w).await.kv, a);

    proxy.cut();
    // While the watch is cut off, writes go on.
    let mut written = Vec::new();
    for i in 0..5 {
        let kv = direct
            .create(&format!("/registry/services/default/b{i}"), val("b"))
            .await
            .expect("create while the watch is cut off");
        written.push(kv);
    }
    // Let the watch notice and back off a few times.
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.restore();

    for kv in &written {
        let event = next_event(&mut w).await;
        assert_eq!(event.kind, EventKind::Created);
        assert_eq!(&event.kv, kv);
    }
    let late = direct
        .create("/registry/services/default/late", val("c"))
        .await
        .expect("create after the restore");
    assert_eq!(next_event(&mut w).await.kv, late);
    match tokio::time::timeout(Duration::from_millis(1500), w.next()).await {
        Err(_) => {}
        Ok(item) => panic!("unexpected watch item after the last write: {item:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_whose_history_is_compacted_while_cut_off_fails_typed_and_ends() {
    let etcd = start_etcd().await;
    let (direct, proxied, proxy) = direct_and_proxied(&etcd, Duration::from_secs(2)).await;
    let prefix = "/registry/secrets/";
    let start = direct.current_revision().await.expect("current revision");
    let s = direct
        .create("/registry/secrets/default/s", val("s1"))
        .await
        .expect("create s");
    let mut w = proxied.watch(prefix, start).await.expect("watch");
    assert_eq!(next_event(&mut w).await.kv, s);

    proxy.cut();
    let mut last = s.mod_revision;
    for i in 0..3 {
        let kv = direct
            .create(&format!("/registry/other/{i}"), val("x"))
            .await
            .expect("write while the watch is cut off");
        last = kv.mod_revision;
    }
    direct.compact(last).await.expect("compact");
    proxy.restore();

    // The watch must re-open after `s`, which compaction removed: a typed error, then the
    // end of the stream.
    match tokio::time::timeout(Duration::from_secs(20), w.next()).await {
        Ok(Some(Err(StoreError::Compacted {
            requested,
            compacted,
        }))) => {
            assert_eq!(requested, s.mod_revision);
            assert_eq!(compacted, last);
        }
        Ok(other) => panic!("expected a compaction error, got {other:?}"),
        Err(_) => panic!("watch neither delivered nor failed"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends after the error");
    // The proxied store learned the compaction from the watch.
    assert_eq!(proxied.compacted_revision().await.expect("compacted"), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_unresponsive_etcd_times_out_typed() {
    let etcd = start_etcd().await;
    // Connecting may take longer than a request: the request's own limit is what is tested.
    let (_direct, proxied, proxy) = direct_and_proxied(&etcd, Duration::from_secs(10)).await;
    let request_timeout = Duration::from_secs(2);
    let key = "/registry/pods/default/hung";
    proxied.create(key, val("v")).await.expect("create");

    proxy.stall();
    let started = Instant::now();
    let result = proxied.get(key).await;
    let elapsed = started.elapsed();
    match result {
        Err(err @ StoreError::EtcdTimeout { .. }) => {
            assert!(
                err.to_string().contains(&proxy.endpoint()),
                "error names the endpoint: {err}"
            );
        }
        other => panic!("expected a timeout, got {other:?} after {elapsed:?}"),
    }
    assert!(
        elapsed >= request_timeout - Duration::from_millis(100)
            && elapsed < request_timeout + SLACK,
        "timed out after {elapsed:?}, configured {request_timeout:?}"
    );

    // A write that times out is typed the same way.
    match proxied
        .create("/registry/pods/default/other", val("v"))
        .await
    {
        Err(StoreError::EtcdTimeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }

    proxy.restore();
    let ((kv, _), _) = until_ok("get after the stall", || proxied.get(key)).await;
    assert!(kv.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_short_outage_waits_for_etcd() {
    let etcd = start_etcd().await;
    let config = EtcdConfig::new(vec![etcd.endpoint()])
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Duration::from_secs(15));
    let store = EtcdStore::connect(config).await.expect("connect");
    let before = store.current_revision().await.expect("current revision");

    let etcd = stop_etcd(etcd).await;
    // Let the client notice the old connection is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create("/registry/pods/default/patient", val("v"))
                .await
        })
    };
    let reader = {
        let store = store.clone();
        tokio::spawn(async move { store.get("/registry/pods/default/other").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let etcd = restart_etcd(etcd).await;

    // Both waited for etcd instead of failing; the write happened exactly once.
    let kv = writer
        .await
        .expect("writer task")
        .expect("the write waited for etcd");
    assert_eq!(kv.mod_revision, before + 1);
    let (other, _) = reader
        .await
        .expect("reader task")
        .expect("the read waited for etcd");
    assert_eq!(other, None);
    assert_eq!(store.current_revision().await.unwrap(), before + 1);
    drop(etcd);
}

/// etcd's count of open watchers, from its Prometheus metrics.
async fn etcd_watchers(etcd: &EtcdInstance) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = etcd.endpoint().trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect to etcd metrics");
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("ask for metrics");
    let mut body = String::new();
    conn.read_to_string(&mut body).await.expect("read metrics");
    body.lines()
        .find_map(|line| line.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .expect("etcd_debugging_mvcc_watcher_total in etcd's metrics")
}

async fn wait_for_watchers(etcd: &EtcdInstance, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let watchers = etcd_watchers(etcd).await;
        if watchers == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "etcd has {watchers} watchers, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_watch_closes_it_in_etcd() {
    let etcd = start_etcd().await;
    let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
        .await
        .expect("connect");
    let now = store.current_revision().await.expect("current revision");
    let mut watches = Vec::new();
    for prefix in ["/registry/a/", "/registry/b/", "/registry/c/"] {
        watches.push(store.watch(prefix, now).await.expect("watch"));
    }
    wait_for_watchers(&etcd, 3).await;

    drop(watches.pop());
    wait_for_watchers(&etcd, 2).await;
    drop(watches);
    wait_for_watchers(&etcd, 0).await;

    // Compaction behind a live watch does not disturb it, and dropping it still closes it.
    let first = store
        .create("/registry/a/x", val("x"))
        .await
        .expect("create");
    let mut w = store
        .watch("/registry/a/", first.mod_revision)
        .await
        .expect("watch");
    wait_for_watchers(&etcd, 1).await;
    let second = store
        .create("/registry/a/y", val("y"))
        .await
        .expect("create");
    store.compact(second.mod_revision).await.expect("compact");
    assert_eq!(next_event(&mut w).await.kv, second);
    wait_for_watchers(&etcd, 1).await;
    drop(w);
    wait_for_watchers(&etcd, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cannot_start_where_previous_values_are_compacted() {
    let etcd = start_etcd().await;
    let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
        .await
        .expect("connect");
    let a = store
        .create("/registry/pods/default/a", val("a1"))
        .await
        .expect("create");
    let UpdateOutcome::Updated(a2) = store
        .update("/registry/pods/default/a", val("a2"), a.mod_revision)
        .await
        .expect("update")
    else {
        panic!("update conflicted");
    };
    store.compact(a2.mod_revision).await.expect("compact");

    // etcd itself would start a watch at the compacted revision but could not give the
    // update there its previous value: refused, naming both revisions.
    let before = a2.mod_revision - 1;
    match store.watch("/registry/pods/", before).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, before);
            assert_eq!(compacted, a2.mod_revision);
        }
        Err(other) => panic!("expected Compacted, got {other}"),
        Ok(_) => panic!("watch after {before} accepted below the compaction"),
    }
    // From the compacted revision on, history is complete.
    let mut w = store
        .watch("/registry/pods/", a2.mod_revision)
        .await
        .expect("watch at the compaction");
    let (deleted, _) = until_ok("delete", || store.delete("/registry/pods/default/a", None)).await;
    let moor::store::DeleteOutcome::Deleted { prev, revision } = deleted else {
        panic!("delete: {deleted:?}");
    };
    assert_eq!(prev, a2);
    let event = next_event(&mut w).await;
    assert_eq!(event.kind, EventKind::Deleted);
    assert_eq!(event.revision(), revision);
    assert_eq!(event.prev, Some(a2));
}

//! API server throughput, latency and memory:
//! `cargo bench --bench apiserver [-- --seconds S --runs N --quick]`.
//!
//! Prints, from one run of this program (medians; it asserts nothing about speed):
//! 1. Pod creates/s through HTTP with 64 concurrent clients, on the embedded store and on a
//!    private etcd, next to the store's own creates/s with 64 concurrent writers in the same
//!    run (the value written is the very bytes the server stored for a pod), and the ratio
//!    API / store. Clients speak raw HTTP/1.1 through hyper's connection-level client, one
//!    keep-alive connection per client (no kube-rs: no typed encoding or decoding on the
//!    client side). Store and API windows are interleaved so drift hits both alike.
//! 2. LIST of all pods of namespace `default` when it holds 10,000 pods (a fresh embedded
//!    server filled through HTTP): p50/p99 of 30 GETs reading the whole body, and its size.
//! 3. One write fanned out to 1,000 concurrent watchers (raw HTTP/1.1 watch connections,
//!    chunked lines): per watcher, the time from the start of the create call until the
//!    watcher read the line naming the new ConfigMap; p50/p99/max over 5 rounds.
//! 4. Memory (VmRSS) of the real `moor server` binary, idle and holding 10,000 pods.
//!
//! Sections 1–3 run the server in this process, as the tests do, but on a tokio runtime of
//! its own (a separate process would have its own); the load generators run on another.
//! Both share the machine's cores, so client-side work is part of every figure.
//! `--quick` shrinks everything for a smoke run. Child processes (etcd, moor) die with this
//! process (PR_SET_PDEATHSIG) and temp dirs are removed on drop, also when a section panics.

#[path = "../tests/support/etcd.rs"]
mod etcd_support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use moor::apiserver::ApiServer;
use moor::store::etcd::{EtcdConfig, EtcdStore};
use moor::store::{EmbeddedStore, ListOptions, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Any single request, connect or wait that takes longer than this is reported as a failure.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a watch round waits for every watcher to see the write.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
const PODS_PATH: &str = "/api/v1/namespaces/default/pods";
const CONFIGMAPS_PATH: &str = "/api/v1/namespaces/default/configmaps";

struct Opts {
    seconds: f64,
    runs: usize,
    quick: bool,
    warmup: f64,
    clients: usize,
    pods: usize,
    list_gets: usize,
    watchers: usize,
    rounds: usize,
    /// The command line, for the report.
    command: String,
}

fn parse_opts() -> Opts {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut opts = Opts {
        seconds: if quick { 1.0 } else { 3.0 },
        runs: if quick { 1 } else { 3 },
        quick,
        warmup: if quick { 0.5 } else { 1.0 },
        clients: 64,
        pods: if quick { 2_000 } else { 10_000 },
        list_gets: 30,
        watchers: if quick { 200 } else { 1_000 },
        rounds: 5,
        command: if args.is_empty() {
            "cargo bench --bench apiserver".to_owned()
        } else {
            format!("cargo bench --bench apiserver -- {}", args.join(" "))
        },
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--seconds" if i + 1 < args.len() => {
                opts.seconds = args[i + 1].parse().unwrap_or(opts.seconds);
                i += 1;
            }
            "--runs" if i + 1 < args.len() => {
                opts.runs = args[i + 1].parse().unwrap_or(opts.runs).max(1);
                i += 1;
            }
            // --quick is read above; anything else cargo passes is ignored.
            _ => {}
        }
        i += 1;
    }
    opts
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .expect("tokio runtime")
}

/// Raise the soft open-files limit to the hard one (1,000 watchers need 2,000 descriptors
/// in this process: both ends of every connection).
fn raise_fd_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Nearest-rank percentile of a sorted slice.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// At most 600 characters of a response body, for failure reports.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.len() > 600 {
        let mut end = 600;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &text[..end], body.len())
    } else {
        text.into_owned()
    }
}

async fn timed<T>(what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .map_err(|_| format!("{what}: no answer within {} s", OP_TIMEOUT.as_secs()))
}

// ---------------------------------------------------------------------------------------
// HTTP client: one hyper HTTP/1.1 keep-alive connection per client task.

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = timed("connect", TcpStream::connect(addr))
        .await?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connect_all(addr: SocketAddr, n: usize) -> Result<Vec<Sender>, String> {
    let mut senders = Vec::with_capacity(n);
    for _ in 0..n {
        senders.push(connect(addr).await?);
    }
    Ok(senders)
}

/// One request; the status and the whole body.
async fn request(
    sender: &mut Sender,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let what = format!("{method} {path}");
    timed(&what, async {
        sender
            .ready()
            .await
            .map_err(|e| format!("{what}: connection closed: {e}"))?;
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("{what}: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{what}: reading the body: {e}"))?
            .to_bytes();
        Ok((status, body))
    })
    .await?
}

fn pod_json(name: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox:1.36"}}]}}}}"#
    ))
}

/// POST `body` to `path`, expecting 201.
async fn create(sender: &mut Sender, path: &str, body: Bytes) -> Result<(), String> {
    let (status, resp) = request(sender, Method::POST, path, body.clone()).await?;
    if status != StatusCode::CREATED {
        return Err(format!(
            "POST {path} {} -> {status} {}",
            String::from_utf8_lossy(&body),
            excerpt(&resp)
        ));
    }
    Ok(())
}

/// When a load run stops.
#[derive(Clone, Copy)]
enum Until {
    /// After this many seconds.
    Seconds(f64),
    /// When the shared name counter reaches this.
    Count(u64),
}

/// Create pods `{prefix}{n}` (n from the shared counter) with one task per connection;
/// (pods created, seconds). The first failure stops every task and is returned.
async fn post_pods(
    addr: SocketAddr,
    clients: usize,
    until: Until,
    names: Arc<AtomicU64>,
    prefix: &str,
) -> Result<(u64, f64), String> {
    let senders = connect_all(addr, clients).await?;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut sender in senders {
        let (names, done, failed, prefix) = (
            names.clone(),
            done.clone(),
            failed.clone(),
            prefix.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            while !failed.load(Ordering::Relaxed) {
                if let Until::Seconds(s) = until
                    && start.elapsed().as_secs_f64() >= s
                {
                    break;
                }
                let n = names.fetch_add(1, Ordering::Relaxed);
                if let Until::Count(limit) = until
                    && n >= limit
                {
                    break;
                }
                let name = format!("{prefix}{n}");
                if let Err(e) = create(&mut sender, PODS_PATH, pod_json(&name)).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(format!("client task panicked: {e}"));
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    match first_err {
        Some(e) => Err(e),
        None => Ok((done.load(Ordering::Relaxed), secs)),
    }
}

/// Store creates with `writers` concurrent writers for `seconds`; creates/s.
async fn store_creates(
    store: Arc<dyn Store>,
    writers: usize,
    seconds: f64,
    value: Bytes,
    tag: &str,
) -> Result<f64, String> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, value, done, failed) =
            (store.clone(), value.clone(), done.clone(), failed.clone());
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while !failed.load(Ordering::Relaxed) && start.elapsed().as_secs_f64() < seconds {
                // Outside /registry/: no cache of a server on the same store watches it.
                let key = format!("/bench-raw/{tag}/w{w}-{seq}");
                match timed("store create", store.create(&key, value.clone())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(format!("store create {key}: {e}"));
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                seq += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("writer panicked: {e}"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// The in-process server.

enum Backend {
    Embedded,
    Etcd(String),
}

struct InProcess {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    embedded: Option<EmbeddedStore>,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Open the store and start the server, on `rt`.
    fn start(rt: &Runtime, backend: &Backend) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        rt.block_on(async {
            let (store, embedded): (Arc<dyn Store>, _) = match backend {
                Backend::Embedded => {
                    let s = EmbeddedStore::open(&dir.path().join("state.db"))
                        .await
                        .map_err(|e| format!("open embedded store: {e}"))?;
                    (Arc::new(s.clone()), Some(s))
                }
                Backend::Etcd(endpoint) => {
                    let s = EtcdStore::connect(EtcdConfig::new(vec![endpoint.clone()]))
                        .await
                        .map_err(|e| format!("connect to etcd: {e}"))?;
                    (Arc::new(s), None)
                }
            };
            let shutdown = CancellationToken::new();
            let server = ApiServer::new(store.clone(), shutdown.clone());
            timed("server start", server.start())
                .await?
                .map_err(|e| format!("server start: {e:?}"))?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("bind: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let served = tokio::spawn(server.serve(listener));
            Ok(Self {
                addr,
                store,
                embedded,
                shutdown,
                served: Some(served),
                _dir: dir,
            })
        })
    }

    fn stop(mut self, rt: &Runtime) {
        self.shutdown.cancel();
        if let Some(served) = self.served.take() {
            rt.block_on(async {
                if tokio::time::timeout(Duration::from_secs(10), served)
                    .await
                    .is_err()
                {
                    println!("  (odd: the in-process server did not stop within 10 s of shutdown)");
                }
            });
        }
        if let Some(store) = self.embedded.take() {
            rt.block_on(store.close());
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// ---------------------------------------------------------------------------------------
// 1. Creates through HTTP vs the store.

struct Creates {
    api: Vec<f64>,
    raw: Vec<f64>,
    value_len: usize,
}

fn bench_creates(
    server_rt: &Runtime,
    client_rt: &Runtime,
    opts: &Opts,
    etcd: bool,
) -> Result<Creates, String> {
    let instance = if etcd {
        Some(
            std::panic::catch_unwind(etcd_support::EtcdInstance::start)
                .map_err(|_| "etcd did not start (see the panic above)".to_owned())?,
        )
    } else {
        None
    };
    let backend = match &instance {
        Some(etcd) => Backend::Etcd(etcd.endpoint()),
        None => Backend::Embedded,
    };
    let server = InProcess::start(server_rt, &backend)?;
    let raw_dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let (raw, raw_embedded): (Arc<dyn Store>, Option<EmbeddedStore>) =
        client_rt.block_on(async {
            match &backend {
                // A store of its own, on the same disk: the server's store stays as it
                // would be without the bench.
                Backend::Embedded => {
                    let s = EmbeddedStore::open(&raw_dir.path().join("state.db"))
                        .await
                        .map_err(|e| format!("open raw embedded store: {e}"))?;
                    Ok::<_, String>((Arc::new(s.clone()) as Arc<dyn Store>, Some(s)))
                }
                // The server's etcd, another client: same disk, same etcd.
                Backend::Etcd(endpoint) => {
                    let s = EtcdStore::connect(EtcdConfig::new(vec![endpoint.clone()]))
                        .await
                        .map_err(|e| format!("connect raw etcd store: {e}"))?;
                    Ok((Arc::new(s) as Arc<dyn Store>, None))
                }
            }
        })?;
    let names = Arc::new(AtomicU64::new(0));
    let clients = opts.clients;
    let result = (|| {
        // Warm-up, unmeasured (a fresh WAL grows on its first writes).
        client_rt.block_on(post_pods(
            server.addr,
            clients,
            Until::Seconds(opts.warmup),
            names.clone(),
            "p-",
        ))?;
        // The raw store writes exactly what the server stored for a pod.
        let page = server_rt
            .block_on(server.store.list(
                "/registry/pods/",
                ListOptions {
                    limit: Some(1),
                    ..ListOptions::default()
                },
            ))
            .map_err(|e| format!("store list: {e}"))?;
        let value = page
            .kvs
            .first()
            .map(|kv| kv.value.clone())
            .ok_or("no pod in the store under /registry/pods/ after the warm-up creates")?;
        let value = Bytes::from(value.to_vec());
        client_rt.block_on(store_creates(
            raw.clone(),
            clients,
            opts.warmup,
            value.clone(),
            "warmup",
        ))?;
        let mut out = Creates {
            api: Vec::new(),
            raw: Vec::new(),
            value_len: value.len(),
        };
        for run in 0..opts.runs {
            let r = client_rt.block_on(store_creates(
                raw.clone(),
                clients,
                opts.seconds,
                value.clone(),
                &format!("run{run}"),
            ))?;
            let (n, secs) = client_rt.block_on(post_pods(
                server.addr,
                clients,
                Until::Seconds(opts.seconds),
                names.clone(),
                "p-",
            ))?;
            let a = n as f64 / secs;
            println!(
                "  run {}: API {a:.0} pod creates/s, store {r:.0} creates/s ({:.0}%)",
                run + 1,
                100.0 * a / r
            );
            out.api.push(a);
            out.raw.push(r);
        }
        Ok(out)
    })();
    server.stop(server_rt);
    if let Some(s) = raw_embedded {
        client_rt.block_on(s.close());
    }
    drop(raw);
    drop(instance);
    result
}

// ---------------------------------------------------------------------------------------
// 2. LIST.

struct ListFigures {
    pods: usize,
    items: usize,
    body_bytes: usize,
    p50: f64,
    p99: f64,
    max: f64,
    fill_rate: f64,
}

async fn get_pods(sender: &mut Sender) -> Result<Bytes, String> {
    let (status, body) = request(sender, Method::GET, PODS_PATH, Bytes::new()).await?;
    if status != StatusCode::OK {
        return Err(format!("GET {PODS_PATH} -> {status} {}", excerpt(&body)));
    }
    Ok(body)
}

async fn bench_list(addr: SocketAddr, gets: usize) -> Result<(usize, usize, Vec<f64>), String> {
    let mut sender = connect(addr).await?;
    // One unmeasured GET, also to check what comes back.
    let body = get_pods(&mut sender).await?;
    let items = count(&body, br#""kind":"Pod""#);
    let mut ms = Vec::with_capacity(gets);
    for _ in 0..gets {
        let t = Instant::now();
        let body = get_pods(&mut sender).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(body.len());
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok((items, body.len(), ms))
}

// ---------------------------------------------------------------------------------------
// 3. Watch fan-out.

struct WatchFigures {
    watchers: usize,
    rounds: usize,
    deliveries: usize,
    p50: f64,
    p99: f64,
    max: f64,
    create_p50: f64,
    establish_ms: f64,
}

enum WatchMsg {
    /// Watcher `w` read the line naming `wcm-<round>` at `at`.
    Seen { w: usize, round: usize, at: Instant },
    /// Anything that is not a plain ADDED of one of our ConfigMaps.
    Odd { w: usize, line: String },
    /// The watch ended.
    Closed { w: usize, why: String },
}

/// Decodes a chunked HTTP body into `\n`-terminated lines.
#[derive(Default)]
struct ChunkedLines {
    raw: Vec<u8>,
    line: Vec<u8>,
    ended: bool,
}

impl ChunkedLines {
    fn feed(&mut self, data: &[u8], mut on_line: impl FnMut(&[u8])) -> Result<(), String> {
        self.raw.extend_from_slice(data);
        let mut pos = 0;
        while !self.ended {
            let rest = &self.raw[pos..];
            let Some(eol) = find(rest, b"\r\n") else {
                break;
            };
            let size_line = String::from_utf8_lossy(&rest[..eol]);
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size line {size_line:?}"))?;
            if size == 0 {
                self.ended = true;
                break;
            }
            let need = eol + 2 + size + 2;
            if rest.len() < need {
                break;
            }
            if &rest[need - 2..need] != b"\r\n" {
                return Err("chunk not followed by CRLF".to_owned());
            }
            for piece in rest[eol + 2..eol + 2 + size].split_inclusive(|b| *b == b'\n') {
                self.line.extend_from_slice(piece);
                if piece.ends_with(b"\n") {
                    on_line(&self.line);
                    self.line.clear();
                }
            }
            pos += need;
        }
        self.raw.drain(..pos);
        Ok(())
    }
}

/// Open one watch; the stream and whatever body bytes came with the headers.
async fn open_watch(addr: SocketAddr, rv: &str) -> Result<(TcpStream, Vec<u8>), String> {
    let path = format!("{CONFIGMAPS_PATH}?watch=true&resourceVersion={rv}");
    timed(&format!("GET {path}"), async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("GET {path}: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "GET {path}: connection closed before the response headers ({:?})",
                    excerpt(&buf)
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") || !head.contains("transfer-encoding: chunked") {
            return Err(format!(
                "GET {path} -> expected 200 with a chunked stream, got: {}",
                excerpt(&buf)
            ));
        }
        Ok((stream, buf[head_end..].to_vec()))
    })
    .await?
}

fn parse_line(w: usize, line: &[u8], at: Instant) -> WatchMsg {
    const NAME: &[u8] = br#""name":"wcm-"#;
    let odd = || WatchMsg::Odd {
        w,
        line: excerpt(line),
    };
    if !line.starts_with(br#"{"type":"ADDED""#) {
        return odd();
    }
    let Some(i) = find(line, NAME) else {
        return odd();
    };
    let digits: Vec<u8> = line[i + NAME.len()..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    match String::from_utf8_lossy(&digits).parse::<usize>() {
        Ok(round) => WatchMsg::Seen { w, round, at },
        Err(_) => odd(),
    }
}

async fn read_watch(
    w: usize,
    mut stream: TcpStream,
    first: Vec<u8>,
    tx: tokio::sync::mpsc::UnboundedSender<WatchMsg>,
) {
    let mut decoder = ChunkedLines::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut data = first;
    let mut at = Instant::now();
    loop {
        if let Err(e) = decoder.feed(&data, |line| {
            let _ = tx.send(parse_line(w, line, at));
        }) {
            let _ = tx.send(WatchMsg::Closed { w, why: e });
            return;
        }
        if decoder.ended {
            let _ = tx.send(WatchMsg::Closed {
                w,
                why: "the server ended the chunked stream".to_owned(),
            });
            return;
        }
        match stream.read(&mut buf).await {
            Ok(0) => {
                let _ = tx.send(WatchMsg::Closed {
                    w,
                    why: "EOF".to_owned(),
                });
                return;
            }
            Ok(n) => {
                at = Instant::now();
                data = buf[..n].to_vec();
            }
            Err(e) => {
                let _ = tx.send(WatchMsg::Closed {
                    w,
                    why: e.to_string(),
                });
                return;
            }
        }
    }
}

struct Collector {
    rx: tokio::sync::mpsc::UnboundedReceiver<WatchMsg>,
    seen: Vec<Vec<Option<Instant>>>,
    counts: Vec<usize>,
    odd: Vec<String>,
    closed: Vec<String>,
}

impl Collector {
    fn handle(&mut self, msg: WatchMsg) {
        match msg {
            WatchMsg::Seen { w, round, at } => {
                if round < self.seen.len() {
                    if self.seen[round][w].is_none() {
                        self.seen[round][w] = Some(at);
                        self.counts[round] += 1;
                    } else {
                        self.odd.push(format!("watcher {w} saw wcm-{round} twice"));
                    }
                } else {
                    self.odd
                        .push(format!("watcher {w} saw unknown wcm-{round}"));
                }
            }
            WatchMsg::Odd { w, line } => self.odd.push(format!("watcher {w} read {line}")),
            WatchMsg::Closed { w, why } => self.closed.push(format!("watcher {w}: {why}")),
        }
    }

    /// Wait until every watcher saw round `round`, or `limit` passed.
    async fn wait_round(&mut self, round: usize, limit: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        let total = self.seen[round].len();
        while self.counts[round] < total {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(msg)) => self.handle(msg),
                Ok(None) | Err(_) => break,
            }
        }
        if self.counts[round] < total {
            return Err(format!(
                "only {} of {total} watchers read the ADDED line of ConfigMap wcm-{round} within \
                 {} s; watches ended: {} {:?}; odd lines: {} {:?}",
                self.counts[round],
                limit.as_secs(),
                self.closed.len(),
                self.closed.iter().take(3).collect::<Vec<_>>(),
                self.odd.len(),
                self.odd.iter().take(3).collect::<Vec<_>>(),
            ));
        }
        Ok(())
    }
}

async fn bench_watch(
    addr: SocketAddr,
    watchers: usize,
    rounds: usize,
) -> Result<WatchFigures, String> {
    let mut sender = connect(addr).await?;
    let (status, body) = request(&mut sender, Method::GET, CONFIGMAPS_PATH, Bytes::new()).await?;
    if status != StatusCode::OK {
        return Err(format!(
            "GET {CONFIGMAPS_PATH} -> {status} {}",
            excerpt(&body)
        ));
    }
    let list: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("GET {CONFIGMAPS_PATH}: {e}"))?;
    let rv = list
        .pointer("/metadata/resourceVersion")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            format!(
                "GET {CONFIGMAPS_PATH}: no metadata.resourceVersion in {}",
                excerpt(&body)
            )
        })?
        .to_owned();

    // Open every watch, 64 connection attempts at a time.
    let t_open = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut opening = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let (gate, rv) = (gate.clone(), rv.clone());
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            open_watch(addr, &rv).await
        }));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut readers = Vec::with_capacity(watchers);
    let mut open_err = None;
    for (w, t) in opening.into_iter().enumerate() {
        match t.await {
            Ok(Ok((stream, first))) => {
                readers.push(tokio::spawn(read_watch(w, stream, first, tx.clone())));
            }
            Ok(Err(e)) => {
                open_err.get_or_insert(format!("watch {w}: {e}"));
            }
            Err(e) => {
                open_err.get_or_insert(format!("watch {w}: task panicked: {e}"));
            }
        }
    }
    drop(tx);
    let abort_all =
        |readers: &[tokio::task::JoinHandle<()>]| readers.iter().for_each(|r| r.abort());
    if let Some(e) = open_err {
        abort_all(&readers);
        return Err(e);
    }

    let mut collector = Collector {
        rx,
        seen: vec![vec![None; watchers]; rounds + 1],
        counts: vec![0; rounds + 1],
        odd: Vec::new(),
        closed: Vec::new(),
    };
    let result = async {
        let cm = |round: usize| {
            Bytes::from(format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"wcm-{round}"}},"data":{{"k":"v"}}}}"#
            ))
        };
        // Round 0 is the warm-up: once every watcher saw it, every watch is established.
        create(&mut sender, CONFIGMAPS_PATH, cm(0)).await?;
        collector.wait_round(0, OP_TIMEOUT).await?;
        let establish_ms = t_open.elapsed().as_secs_f64() * 1000.0;
        let mut lat = Vec::with_capacity(watchers * rounds);
        let mut create_ms = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t0 = Instant::now();
            create(&mut sender, CONFIGMAPS_PATH, cm(round)).await?;
            create_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            collector.wait_round(round, ROUND_TIMEOUT).await?;
            lat.extend(
                collector.seen[round]
                    .iter()
                    .map(|at| at.expect("counted").duration_since(t0).as_secs_f64() * 1000.0),
            );
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        Ok::<_, String>(WatchFigures {
            watchers,
            rounds,
            deliveries: lat.len(),
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
            max: *lat.last().unwrap_or(&0.0),
            create_p50: median(&create_ms),
            establish_ms,
        })
    }
    .await;
    // Anything odd that arrived after the last round.
    while let Ok(msg) = collector.rx.try_recv() {
        collector.handle(msg);
    }
    if !collector.odd.is_empty() || !collector.closed.is_empty() {
        println!(
            "  (odd: {} unexpected watch lines, {} watches ended early; first: {:?} {:?})",
            collector.odd.len(),
            collector.closed.len(),
            collector.odd.first(),
            collector.closed.first()
        );
    }
    abort_all(&readers);
    result
}

fn bench_list_and_watch(
    server_rt: &Runtime,
    client_rt: &Runtime,
    opts: &Opts,
) -> (Result<ListFigures, String>, Result<WatchFigures, String>) {
    let server = match InProcess::start(server_rt, &Backend::Embedded) {
        Ok(s) => s,
        Err(e) => return (Err(e.clone()), Err(e)),
    };
    let list = (|| {
        // A fresh server holding exactly `pods` pods (section 1 leaves far more behind).
        let (n, secs) = client_rt.block_on(post_pods(
            server.addr,
            opts.clients,
            Until::Count(opts.pods as u64),
            Arc::new(AtomicU64::new(0)),
            "l-",
        ))?;
        let (items, body_bytes, ms) =
            client_rt.block_on(bench_list(server.addr, opts.list_gets))?;
        Ok(ListFigures {
            pods: opts.pods,
            items,
            body_bytes,
            p50: percentile(&ms, 0.5),
            p99: percentile(&ms, 0.99),
            max: *ms.last().unwrap_or(&0.0),
            fill_rate: n as f64 / secs,
        })
    })();
    match &list {
        Ok(l) => {
            println!(
                "  filled {} pods through HTTP at {:.0}/s; GET {PODS_PATH}: {} items, {:.2} MB body; \
                 {} GETs p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.pods,
                l.fill_rate,
                l.items,
                l.body_bytes as f64 / 1e6,
                opts.list_gets,
                l.p50,
                l.p99,
                l.max
            );
            if l.items != l.pods {
                println!(
                    "  (odd: the list returned {} pods, {} were created)",
                    l.items, l.pods
                );
            }
        }
        Err(e) => println!("  FAILED: {e}"),
    }
    println!(
        "3. watch fan-out: {} watchers on {CONFIGMAPS_PATH}?watch=true, {} rounds",
        opts.watchers, opts.rounds
    );
    let watch = client_rt.block_on(bench_watch(server.addr, opts.watchers, opts.rounds));
    match &watch {
        Ok(w) => println!(
            "  {} watches established in {:.0} ms; {} deliveries: p50 {:.2} ms, p99 {:.2} ms, \
             max {:.2} ms (the create call itself: p50 {:.2} ms)",
            w.watchers, w.establish_ms, w.deliveries, w.p50, w.p99, w.max, w.create_p50
        ),
        Err(e) => println!("  FAILED: {e}"),
    }
    server.stop(server_rt);
    (list, watch)
}

// ---------------------------------------------------------------------------------------
// 4. Memory of the real binary.

struct MemFigures {
    idle_mib: f64,
    loaded_mib: f64,
    peak_mib: f64,
    pods: usize,
    fill_rate: f64,
}

/// Kills (SIGTERM, then SIGKILL) and reaps the child when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe {
                libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("  (odd: moor server did not exit within 5 s of SIGTERM; killed)");
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn moor_binary() -> Result<PathBuf, String> {
    if let Some(p) = option_env!("CARGO_BIN_EXE_moor") {
        return Ok(PathBuf::from(p));
    }
    // target/<profile>/deps/apiserver-HASH -> target/<profile>/moor
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("moor"))
        .filter(|p| p.exists())
        .ok_or_else(|| format!("cannot find the moor binary next to {}", exe.display()))
}

/// A field of /proc/<pid>/status in MiB.
fn proc_status_mib(pid: u32, field: &str) -> Result<f64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

fn bench_memory(client_rt: &Runtime, opts: &Opts) -> Result<MemFigures, String> {
    let bin = moor_binary()?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let log_path = dir.path().join("moor.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(&listen)
        .env_remove("MOOR_ETCD_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no parent memory; the
    // server dies with this process even if it is killed.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = ChildGuard(
        cmd.spawn()
            .map_err(|e| format!("run {}: {e}", bin.display()))?,
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    // Drains stdout until the server exits, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = line_tx.send(line);
        }
    });
    let log_text = || {
        excerpt(
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .as_bytes(),
        )
    };
    let deadline = Instant::now() + OP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!(
                "moor server exited ({status}) before serving; log: {}",
                log_text()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "moor server printed no `apiserver` line in 30 s; log: {}",
                log_text()
            ));
        }
        match line_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.starts_with("apiserver") => break,
            _ => {}
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let idle_mib = proc_status_mib(pid, "VmRSS")?;
    let addr: SocketAddr = listen.parse().map_err(|e| format!("{listen}: {e}"))?;
    let (n, secs) = client_rt.block_on(post_pods(
        addr,
        opts.clients,
        Until::Count(opts.pods as u64),
        Arc::new(AtomicU64::new(0)),
        "m-",
    ))?;
    // A consistent list returns once the cache holds every acknowledged pod.
    let (items, _, _) = client_rt.block_on(bench_list(addr, 0))?;
    if items != opts.pods {
        println!(
            "  (odd: the list returned {items} pods, {} were created)",
            opts.pods
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let loaded_mib = proc_status_mib(pid, "VmRSS")?;
    let peak_mib = proc_status_mib(pid, "VmHWM")?;
    drop(child);
    Ok(MemFigures {
        idle_mib,
        loaded_mib,
        peak_mib,
        pods: opts.pods,
        fill_rate: n as f64 / secs,
    })
}

// ---------------------------------------------------------------------------------------

/// The final markdown table.
#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, figure: String, measured: String, target: String, met: Option<bool>) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        self.rows.push([figure, measured, target, met.to_owned()]);
    }

    fn print(&self) {
        println!();
        println!("| figure | measured | target | met |");
        println!("|---|---:|---|---|");
        for [figure, measured, target, met] in &self.rows {
            println!("| {figure} | {measured} | {target} | {met} |");
        }
    }
}

fn report_creates(name: &str, r: &Result<Creates, String>) {
    match r {
        Ok(c) => println!(
            "  {name}: API {:.0} pod creates/s, store {:.0} creates/s ({}-byte values), API/store {:.0}%",
            median(&c.api),
            median(&c.raw),
            c.value_len,
            100.0 * median(&c.api) / median(&c.raw)
        ),
        Err(e) => println!("  {name} FAILED: {e}"),
    }
}

fn main() {
    let opts = parse_opts();
    let fds = raise_fd_limit();
    let server_rt = runtime("moor-server");
    let client_rt = runtime("bench-client");
    println!(
        "apiserver benchmark{}: {} cores, {} clients, median of {} runs of {} s, open-files limit {fds}",
        if opts.quick { " (--quick)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.clients,
        opts.runs,
        opts.seconds,
    );
    println!(
        "client: raw HTTP/1.1 (hyper connection-level client, one keep-alive connection per \
         client, no kube-rs); in-process server on its own tokio runtime"
    );

    println!(
        "1. pod creates through HTTP vs the store, {} concurrent clients/writers",
        opts.clients
    );
    let embedded = bench_creates(&server_rt, &client_rt, &opts, false);
    report_creates("embedded", &embedded);
    let etcd = bench_creates(&server_rt, &client_rt, &opts, true);
    report_creates("etcd", &etcd);

    println!("2. LIST of {} pods (fresh embedded server)", opts.pods);
    let (list, watch) = bench_list_and_watch(&server_rt, &client_rt, &opts);

    println!("4. memory of `moor server` (the real binary, embedded store)");
    let mem = bench_memory(&client_rt, &opts);
    match &mem {
        Ok(m) => println!(
            "  VmRSS idle {:.1} MiB; with {} pods {:.1} MiB (peak VmHWM {:.1} MiB); filled at {:.0} pods/s \
             (separate process)",
            m.idle_mib, m.pods, m.loaded_mib, m.peak_mib, m.fill_rate
        ),
        Err(e) => println!("  FAILED: {e}"),
    }

    // The table.
    let mut table = Table::default();
    let failed = "failed (see above)";
    for (name, r, target) in [
        ("embedded", &embedded, Some(10_000.0)),
        ("etcd", &etcd, None),
    ] {
        match r {
            Ok(c) => {
                let (a, s) = (median(&c.api), median(&c.raw));
                table.row(
                    format!("pod creates/s via HTTP, {name}, {} clients", opts.clients),
                    format!("{a:.0}"),
                    target.map_or("-".into(), |_| "≥ 10,000/s".into()),
                    target.map(|t| a >= t),
                );
                table.row(
                    format!("store creates/s, {name}, {} writers", opts.clients),
                    format!("{s:.0}"),
                    "-".into(),
                    None,
                );
                table.row(
                    format!("API / store, {name}"),
                    format!("{:.0}%", 100.0 * a / s),
                    "-".into(),
                    None,
                );
            }
            Err(_) => table.row(
                format!("pod creates/s via HTTP, {name}"),
                failed.into(),
                target.map_or("-".into(), |_| "≥ 10,000/s".into()),
                target.map(|_| false),
            ),
        }
    }
    match &list {
        Ok(l) => {
            let name = format!("LIST {} pods (whole body, {} GETs)", l.pods, opts.list_gets);
            table.row(
                format!("{name} p50"),
                format!("{:.1} ms", l.p50),
                "< 100 ms".into(),
                Some(l.p50 < 100.0),
            );
            table.row(
                format!("{name} p99"),
                format!("{:.1} ms", l.p99),
                "-".into(),
                None,
            );
            table.row(
                "LIST body size".into(),
                format!("{:.2} MB ({} items)", l.body_bytes as f64 / 1e6, l.items),
                "-".into(),
                None,
            );
        }
        Err(_) => table.row(
            format!("LIST {} pods p50", opts.pods),
            failed.into(),
            "< 100 ms".into(),
            Some(false),
        ),
    }
    match &watch {
        Ok(w) => {
            let name = format!(
                "watch delivery, {} watchers × {} writes",
                w.watchers, w.rounds
            );
            table.row(
                format!("{name} p50"),
                format!("{:.2} ms", w.p50),
                "-".into(),
                None,
            );
            table.row(
                format!("{name} p99"),
                format!("{:.2} ms", w.p99),
                "< 50 ms".into(),
                Some(w.p99 < 50.0),
            );
            table.row(
                format!("{name} max"),
                format!("{:.2} ms", w.max),
                "-".into(),
                None,
            );
        }
        Err(_) => table.row(
            format!("watch delivery, {} watchers p99", opts.watchers),
            failed.into(),
            "< 50 ms".into(),
            Some(false),
        ),
    }
    match &mem {
        Ok(m) => {
            table.row(
                "`moor server` RSS idle".into(),
                format!("{:.1} MiB", m.idle_mib),
                "< 30 MB".into(),
                Some(m.idle_mib < 30.0),
            );
            table.row(
                format!("`moor server` RSS with {} pods", m.pods),
                format!("{:.1} MiB", m.loaded_mib),
                "< 250 MB".into(),
                Some(m.loaded_mib < 250.0),
            );
        }
        Err(_) => table.row(
            "`moor server` RSS".into(),
            failed.into(),
            "< 30 MB / < 250 MB".into(),
            Some(false),
        ),
    }
    table.print();
    println!();
    println!("command: `{}`", opts.command);
    println!("(RSS in MiB, 2^20 bytes; the MB targets are read as MiB)");
    if opts.quick {
        println!("(--quick: a smoke run with shrunken sizes; the targets are for the full run)");
    }
}

//! Store throughput: `cargo bench --bench store [-- --seconds S --runs N]`.
//!
//! Prints, from one run of this program and against one private etcd:
//! - creates/s of the embedded backend with 1 and 64 concurrent writers, next to raw SQLite
//!   commits/s (one row per transaction, same settings, same disk): the floor a serial
//!   writer cannot beat, since every acknowledged write is an fsync;
//! - creates/s of the etcd backend with 1 and 64 writers;
//! - raw etcd-client puts/s against the same etcd (the baseline) and the ratio
//!   etcd backend / raw at equal concurrency; and raw etcd-client transactions of exactly
//!   the shape the backend sends for a create (`If mod_revision == 0 Then Put`, as
//!   kube-apiserver sends it), which separates the backend's own overhead from what etcd
//!   charges for a transaction over a plain put;
//! - create latency on the embedded backend while it compacts a long history, next to the
//!   same latency with no compaction running (compaction must not stall writers).
//!
//! Each figure is the median of `--runs` timed windows of `--seconds`; backend and raw runs
//! are interleaved so drift on a noisy machine hits both alike, after one unmeasured second
//! of warm-up per backend. It measures; it asserts nothing about speed.

#[path = "../tests/support/etcd.rs"]
mod etcd_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use moor::store::etcd::{EtcdConfig, EtcdStore};
use moor::store::{EmbeddedStore, Store, UpdateOutcome};

/// A 256-byte value, the size the reference figures use.
fn value() -> Bytes {
    let mut v = br#"{"kind":"ConfigMap","apiVersion":"v1","data":{"k":""#.to_vec();
    v.resize(254, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

struct Opts {
    seconds: f64,
    runs: usize,
    embedded_only: bool,
}

fn parse_opts() -> Opts {
    let mut opts = Opts {
        seconds: 3.0,
        runs: 3,
        embedded_only: false,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
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
            "--embedded-only" => opts.embedded_only = true,
            // cargo bench passes --bench; anything else is ignored too.
            _ => {}
        }
        i += 1;
    }
    opts
}

/// Run `writers` tasks calling `op(writer, seq)` back to back for `seconds`; ops/s.
async fn throughput<F, Fut>(writers: usize, seconds: f64, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (op, done) = (op.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while Instant::now() < deadline {
                op(w, seq).await;
                seq += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("bench task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

async fn store_creates(store: Arc<dyn Store>, tag: &str, writers: usize, seconds: f64) -> f64 {
    let tag = tag.to_owned();
    let v = value();
    throughput(writers, seconds, move |w, seq| {
        let (store, v) = (store.clone(), v.clone());
        let key = format!("/registry/configmaps/{tag}/w{w}-{seq}");
        async move {
            store.create(&key, v).await.expect("create");
        }
    })
    .await
}

/// Raw etcd-client writes: plain puts, or (`txn`) the very transaction the backend sends
/// for a create — `If mod_revision(key) == 0 Then Put` — without anything around it.
async fn raw_writes(
    client: etcd_client::Client,
    tag: &str,
    writers: usize,
    seconds: f64,
    txn: bool,
) -> f64 {
    let tag = tag.to_owned();
    let v = value();
    throughput(writers, seconds, move |w, seq| {
        let (mut client, v) = (client.clone(), v.clone());
        let key = format!("/raw/{tag}/w{w}-{seq}");
        async move {
            if txn {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, v.to_vec(), None)]);
                client.txn(txn).await.expect("raw txn");
            } else {
                client.put(key, v.to_vec(), None).await.expect("raw put");
            }
        }
    })
    .await
}

/// The floor under the embedded backend: raw SQLite commits of one 256-byte row each, in
/// WAL mode with synchronous=FULL, on the same disk, through the same bundled SQLite.
fn raw_sqlite_commits(dir: &std::path::Path, seconds: f64) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("raw.db")).expect("open raw sqlite");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
    )
    .expect("set up raw sqlite");
    let v = value();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut n = 0u64;
    while Instant::now() < deadline {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [&v[..]])
            .expect("raw insert");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Latencies (ms) of back-to-back creates for `seconds`: (p50, p99, max).
async fn create_latencies(store: &EmbeddedStore, tag: &str, seconds: f64) -> (f64, f64, f64) {
    let v = value();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut lat = Vec::new();
    let mut seq = 0;
    while Instant::now() < deadline {
        let t = Instant::now();
        store
            .create(&format!("/registry/configmaps/{tag}/{seq}"), v.clone())
            .await
            .expect("create");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        seq += 1;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    (pick(0.5), pick(0.99), *lat.last().unwrap_or(&0.0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = parse_opts();
    let (secs, runs) = (opts.seconds, opts.runs);
    println!(
        "store benchmark: 256-byte values, median of {runs} runs of {secs} s, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Embedded backend.
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = EmbeddedStore::open(&dir.path().join("state.db"))
        .await
        .expect("open embedded store");
    let embedded_dyn: Arc<dyn Store> = Arc::new(embedded.clone());
    // Warm-up, unmeasured: a fresh SQLite WAL (and etcd WAL) grows on its first writes, which
    // makes every fsync also a metadata update; a server that has run for a second no
    // longer pays that.
    store_creates(embedded_dyn.clone(), "warmup", 1, 1.0).await;
    let mut emb = [Vec::new(), Vec::new()];
    let raw_dir = dir.path().to_path_buf();
    raw_sqlite_commits(&raw_dir, 1.0);
    let mut sqlite_floor = Vec::new();
    for run in 0..runs {
        sqlite_floor.push(raw_sqlite_commits(&raw_dir, secs));
        for (i, writers) in [1usize, 64].into_iter().enumerate() {
            let tag = format!("e{run}-{writers}");
            emb[i].push(store_creates(embedded_dyn.clone(), &tag, writers, secs).await);
        }
    }

    // etcd backend and raw etcd-client, interleaved, against one private etcd.
    let (mut backend, mut baseline, mut baseline_txn) = (
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
    );
    let etcd = if opts.embedded_only {
        None
    } else {
        let etcd = etcd_support::EtcdInstance::start();
        let etcd_store: Arc<dyn Store> = Arc::new(
            EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
                .await
                .expect("connect etcd backend"),
        );
        let raw = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .expect("connect raw etcd client");
        raw_writes(raw.clone(), "warmup", 1, 1.0, false).await;
        store_creates(etcd_store.clone(), "warmup", 1, 1.0).await;
        for run in 0..runs {
            for (i, writers) in [1usize, 64].into_iter().enumerate() {
                let tag = format!("r{run}-{writers}");
                baseline[i].push(raw_writes(raw.clone(), &tag, writers, secs, false).await);
                let tag_txn = format!("{tag}-txn");
                baseline_txn[i].push(raw_writes(raw.clone(), &tag_txn, writers, secs, true).await);
                backend[i].push(store_creates(etcd_store.clone(), &tag, writers, secs).await);
            }
        }
        Some(etcd)
    };

    // Compaction: build a long history on one key, then measure create latency with and
    // without a compaction of that history running.
    let history = 100_000;
    let mut rev = embedded
        .create("/registry/configmaps/hist/k", value())
        .await
        .expect("create")
        .mod_revision;
    for _ in 0..history {
        match embedded
            .update("/registry/configmaps/hist/k", value(), rev)
            .await
            .expect("update")
        {
            UpdateOutcome::Updated(kv) => rev = kv.mod_revision,
            UpdateOutcome::Conflict(_) => unreachable!("single writer"),
        }
    }
    let idle = create_latencies(&embedded, "lat-idle", secs).await;
    let target = embedded.current_revision().await.expect("revision");
    let compact_start = Instant::now();
    embedded.compact(target).await.expect("compact");
    let compact_call_ms = compact_start.elapsed().as_secs_f64() * 1000.0;
    // Physical compaction now runs between writes on the writer thread.
    let busy = create_latencies(&embedded, "lat-compact", secs).await;

    let fmt = |x: f64| format!("{x:.0}");
    println!();
    println!("| backend                 | 1 writer (creates/s) | 64 writers (creates/s) |");
    println!("|-------------------------|----------------------|------------------------|");
    let row = |name: &str, xs: &[Vec<f64>; 2]| {
        println!(
            "| {name:<23} | {:>20} | {:>22} |",
            fmt(median(xs[0].clone())),
            fmt(median(xs[1].clone()))
        );
    };
    row("embedded (SQLite)", &emb);
    println!(
        "| raw SQLite commits      | {:>20} | {:>22} |",
        fmt(median(sqlite_floor.clone())),
        "-"
    );
    println!(
        "| embedded / raw SQLite   | {:>19.0}% | {:>22} |",
        100.0 * median(emb[0].clone()) / median(sqlite_floor.clone()),
        "-"
    );
    if etcd.is_some() {
        row("etcd backend", &backend);
        row("raw etcd-client puts", &baseline);
        row("raw etcd-client txns", &baseline_txn);
        let ratio = |a: &[Vec<f64>; 2], b: &[Vec<f64>; 2], i: usize| {
            100.0 * median(a[i].clone()) / median(b[i].clone())
        };
        println!(
            "| etcd backend / raw puts | {:>19.0}% | {:>21.0}% |",
            ratio(&backend, &baseline, 0),
            ratio(&backend, &baseline, 1)
        );
        println!(
            "| etcd backend / raw txns | {:>19.0}% | {:>21.0}% |",
            ratio(&backend, &baseline_txn, 0),
            ratio(&backend, &baseline_txn, 1)
        );
    }
    println!();
    println!(
        "embedded create latency, 1 writer (ms): idle p50 {:.2} p99 {:.2} max {:.2}; \
         while compacting {history} revisions p50 {:.2} p99 {:.2} max {:.2} \
         (the compact call itself took {:.1} ms)",
        idle.0, idle.1, idle.2, busy.0, busy.1, busy.2, compact_call_ms
    );
    embedded.close().await;
    drop(etcd);
}

//! Crash safety of the embedded store: a writer process is SIGKILLed mid-stream, and every
//! write it acknowledged must survive with the revision it was acknowledged at, with no
//! revision lost, repeated or reused.
//!
//! The test re-executes its own test binary as the writer: `child_writer` does nothing
//! unless `MOOR_CRASH_DB` names a database, in which case it opens the store there and
//! creates keys from many tasks until killed, printing `moor-crash-writer: ACK <key> <revision>` (flushed) for
//! each write only after the store acknowledged it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use moor::store::{EmbeddedStore, ListOptions, Revision, Store, StoreError};

/// Names the database the child writes to; the child test is a no-op without it.
const DB_ENV: &str = "MOOR_CRASH_DB";
/// Distinguishes each kill round's keys.
const ROUND_ENV: &str = "MOOR_CRASH_ROUND";
const WRITER_TASKS: usize = 16;
/// Acknowledged writes to wait for before the kill, in the first round; later rounds wait
/// for more so each kill lands at a different point.
const ACKS_BEFORE_KILL: usize = 400;
const ROUNDS: usize = 3;
const KEY_PREFIX: &str = "/registry/crash/";
/// Starts every line the writer reports, to tell them from libtest's own output.
const MARK: &str = "moor-crash-writer: ";

/// The writer. Runs only when re-executed by [`acknowledged_writes_survive_sigkill`].
#[test]
fn child_writer() {
    let Some(db) = std::env::var_os(DB_ENV) else {
        return;
    };
    let round: usize = std::env::var(ROUND_ENV)
        .expect("round")
        .parse()
        .expect("round number");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = EmbeddedStore::open(Path::new(&db))
            .await
            .expect("child: open store");
        let start = store
            .current_revision()
            .await
            .expect("child: current revision");
        emit(&format!("START {start}"));
        let mut tasks = Vec::new();
        for t in 0..WRITER_TASKS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded so a parent that never kills cannot leave it running forever.
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let key = format!("{KEY_PREFIX}r{round}/t{t:02}/{i:08}");
                    let value =
                        Bytes::from(format!("{{\"round\":{round},\"task\":{t},\"i\":{i}}}"));
                    let kv = store.create(&key, value).await.expect("child: create");
                    emit(&format!("ACK {} {}", kv.key, kv.mod_revision));
                    i += 1;
                }
            }));
        }
        for task in tasks {
            task.await.expect("child writer task");
        }
    });
}

/// One line per call, written and flushed in one piece so the parent never sees two
/// interleaved, marked so it can be told from libtest's own output.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{MARK}{line}\n").as_bytes())
        .expect("stdout");
    out.flush().expect("flush stdout");
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("state.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // key -> acknowledged revision, over every round.
    let mut acked: BTreeMap<String, Revision> = BTreeMap::new();
    // The revision the store was at before its first write ever.
    let mut first_start: Option<Revision> = None;

    for round in 0..ROUNDS {
        let (start, round_acks) = run_and_kill_writer(&db, round);
        eprintln!(
            "round {round}: writer started at revision {start}, {} acknowledged writes before SIGKILL",
            round_acks.len()
        );
        let base = *first_start.get_or_insert(start);
        for (key, rev) in round_acks {
            assert!(
                acked.insert(key.clone(), rev).is_none(),
                "{key} acknowledged twice"
            );
        }
        rt.block_on(verify_after_crash(&db, &acked, base, start));
    }
}

/// Start a writer on `db`, read its acknowledgements until enough have come, SIGKILL it,
/// and return its starting revision and every write it acknowledged (including those still
/// in the pipe when it died).
fn run_and_kill_writer(db: &Path, round: usize) -> (Revision, Vec<(String, Revision)>) {
    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(DB_ENV, db)
        .env(ROUND_ENV, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout);

    let mut start = None;
    let mut acks = Vec::new();
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        let n = lines.read_line(&mut line).expect("read child output");
        if n == 0 {
            break;
        }
        // A line cut short by the kill was never fully reported: not counted.
        let Some(text) = line.strip_suffix('\n') else {
            break;
        };
        // libtest may have written "test child_writer ... " on the same line first.
        let Some(at) = text.find(MARK) else {
            continue;
        };
        let mut words = text[at + MARK.len()..].split(' ');
        match words.next() {
            Some("START") => {
                start = Some(words.next().unwrap().parse::<Revision>().unwrap());
            }
            Some("ACK") => {
                let key = words.next().expect("key").to_owned();
                let rev: Revision = words.next().expect("revision").parse().expect("revision");
                acks.push((key, rev));
            }
            other => panic!("unexpected writer line {text:?} ({other:?})"),
        }
        if !killed && acks.len() >= ACKS_BEFORE_KILL + 173 * round {
            // Mid-stream: the writer is busy with 16 writes in flight.
            child.kill().expect("SIGKILL the writer");
            killed = true;
        }
    }
    let status = child.wait().expect("wait for the writer");
    assert!(
        killed,
        "writer exited on its own ({status}) after {} acknowledgements",
        acks.len()
    );
    let start = start.expect("the writer never reported its start revision");
    (start, acks)
}

async fn verify_after_crash(
    db: &Path,
    acked: &BTreeMap<String, Revision>,
    base: Revision,
    round_start: Revision,
) {
    let store = EmbeddedStore::open(db).await.expect("reopen after SIGKILL");
    let current = store.current_revision().await.expect("current revision");
    assert!(
        current >= round_start,
        "revision went back: {current} < {round_start}"
    );

    // The state: every acknowledged key, at its acknowledged revision.
    let listed = store
        .list(KEY_PREFIX, ListOptions::default())
        .await
        .expect("list after reopen");
    assert!(!listed.more);
    assert_eq!(listed.revision, current);
    let state: BTreeMap<&str, Revision> = listed
        .kvs
        .iter()
        .map(|kv| {
            assert_eq!(
                kv.create_revision, kv.mod_revision,
                "{kv:?} was only ever created"
            );
            (kv.key.as_str(), kv.mod_revision)
        })
        .collect();
    let mut lost = Vec::new();
    for (key, rev) in acked {
        match state.get(key.as_str()) {
            Some(got) => assert_eq!(got, rev, "{key}: acknowledged at {rev}, stored at {got}"),
            None => lost.push(key),
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // Every write is a create of a distinct key, so the keys' revisions must be exactly
    // base+1..=current: a gap is a counted-but-lost write, a repeat a reused revision.
    let revisions: Vec<Revision> = {
        let mut r: Vec<Revision> = state.values().copied().collect();
        r.sort_unstable();
        r
    };
    let expected: Vec<Revision> = (base + 1..=current).collect();
    assert_revisions(&revisions, &expected, "live keys");

    // The history says the same: a watch from the beginning replays exactly one event per
    // revision, in order, up to the current one.
    let mut watch = store
        .watch(KEY_PREFIX, base)
        .await
        .expect("watch from the start");
    let mut history = Vec::new();
    while history.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "replay stalled after {} of {} events",
                    history.len(),
                    expected.len()
                )
            })
            .expect("watch ended")
            .expect("watch replay");
        assert_eq!(
            state.get(event.kv.key.as_str()),
            Some(&event.revision()),
            "replayed {event:?} disagrees with the state"
        );
        history.push(event.revision());
    }
    assert_revisions(&history, &expected, "replayed history");
    drop(watch);

    // Nothing is reused: the next write gets exactly current + 1.
    let kv = store
        .create(
            &format!("{KEY_PREFIX}after-reopen/{current}"),
            Bytes::from_static(b"{}"),
        )
        .await
        .expect("write after reopen");
    assert_eq!(kv.mod_revision, current + 1, "first write after a crash");
    assert_eq!(store.current_revision().await.unwrap(), current + 1);

    // A second process must be able to take the store over: release it fully.
    store.close().await;
    match EmbeddedStore::open(db).await {
        Ok(again) => again.close().await,
        Err(StoreError::Locked { .. }) => panic!("close() left the store locked"),
        Err(err) => panic!("reopen after close: {err}"),
    }
}

fn assert_revisions(got: &[Revision], expected: &[Revision], what: &str) {
    if got == expected {
        return;
    }
    let got_set: BTreeSet<_> = got.iter().copied().collect();
    let want: BTreeSet<_> = expected.iter().copied().collect();
    let missing: Vec<_> = want.difference(&got_set).take(10).collect();
    let extra: Vec<_> = got_set.difference(&want).take(10).collect();
    let repeats = got.len() - got_set.len();
    panic!(
        "{what}: revisions are not exactly {:?}..={:?}: {} present, missing {missing:?}, \
         unexpected {extra:?}, {repeats} repeated, out of order: {}",
        expected.first(),
        expected.last(),
        got.len(),
        got.windows(2).any(|w| w[0] >= w[1])
    );
}

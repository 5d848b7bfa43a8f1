//! Controller benchmark: 100 ReplicaSets × 100 replicas = 10,000 pods, created and counted
//! in status.replicas, end to end on the embedded store — the real `moor server` (controllers
//! off) and the real `moor controller-manager` as separate processes, so the figure
//! includes every API round trip and the manager's RSS can be read alone.
//!
//! `cargo bench --bench controllers` (options after `--`: `--sets N`, `--replicas N`,
//! `--runs N`). Prints medians; asserts nothing about timings.

#[path = "../tests/support/process.rs"]
mod process;
use process::{Proc, free_port};

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    seconds: f64,
    manager_rss_mib: f64,
    server_rss_mib: f64,
}

async fn run_once(sets: usize, replicas: i32) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let moor = env!("CARGO_BIN_EXE_moor");
    let mut server = Command::new(moor)
        .args([
            "server",
            "--disable-controllers",
            "--disable-gitops",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("MOOR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with("apiserver") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let server = Proc(server);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let manager = Proc(
        Command::new(moor)
            .args([
                "controller-manager",
                "--leader-elect=false",
                "--controllers",
                "replicaset",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(dir.path())
            .env("MOOR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    // Let the manager's watches start before the clock does.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    for i in 0..sets {
        let name = format!("rs-{i}");
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &rs).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|rs| rs.status.as_ref().is_some_and(|s| s.replicas == replicas))
            .count();
        if done == sets {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {sets} ReplicaSets reached {replicas} replicas in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    Run {
        seconds,
        manager_rss_mib: rss_kib(manager.0.id()) as f64 / 1024.0,
        server_rss_mib: rss_kib(server.0.id()) as f64 / 1024.0,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let sets = arg("--sets", 100);
    let replicas = i32::try_from(arg("--replicas", 100)).unwrap_or(100);
    let runs = arg("--runs", 3);
    println!(
        "controllers benchmark: {sets} ReplicaSets × {replicas} replicas = {} pods; `moor server` (embedded, controllers off) and `moor controller-manager --controllers replicaset` as separate processes; {runs} runs",
        sets * replicas as usize
    );
    let mut results = Vec::new();
    for run in 1..=runs {
        let r = run_once(sets, replicas).await;
        println!(
            "  run {run}: {:.2} s to create all ReplicaSets and see every status.replicas = {replicas}; controller-manager RSS {:.1} MiB, server RSS {:.1} MiB",
            r.seconds, r.manager_rss_mib, r.server_rss_mib
        );
        results.push(r);
    }
    let seconds = median(results.iter().map(|r| r.seconds).collect());
    let rss = median(results.iter().map(|r| r.manager_rss_mib).collect());
    let server_rss = median(results.iter().map(|r| r.server_rss_mib).collect());
    let pods = sets * replicas as usize;
    println!();
    println!("| figure | measured | target |");
    println!("|---|---:|---|");
    println!(
        "| {pods} pods via {sets} ReplicaSets, created and counted in status (median) | {seconds:.2} s ({:.0} pods/s) | < 10 s |",
        pods as f64 / seconds
    );
    println!("| controller-manager RSS at that point | {rss:.1} MiB | |");
    println!("| server RSS at that point | {server_rss:.1} MiB | |");
    println!(
        "(reference: kube-controller-manager's default client rate limit of 20 requests/s needs ≥ {:.0} min for {pods} pod creates)",
        pods as f64 / 20.0 / 60.0
    );
}

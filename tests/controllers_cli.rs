//! The controllers as a user runs them: in-process in `moor server` by default, and as a
//! separate `moor controller-manager --kubeconfig FILE` next to `moor server
//! --disable-controllers`.

#[path = "support/process.rs"]
mod process;
use process::{Proc, free_port};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn server(data_dir: &Path, extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .env_remove("MOOR_ETCD_ENDPOINTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("server exited early").unwrap();
        if line.starts_with("apiserver") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Proc(child)
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pods_of(kubeconfig: &Path) -> usize {
    kubectl(kubeconfig, &["get", "pods", "-o", "name"])
        .lines()
        .filter(|l| l.starts_with("pod/"))
        .count()
}

fn wait_for_pods(kubeconfig: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count = pods_of(kubeconfig);
        if count == n {
            return;
        }
        assert!(Instant::now() < deadline, "{count} pods, not {n}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  \
    selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    \
    spec:\n      containers:\n      - name: web\n        image: busybox\n";

#[test]
fn moor_server_runs_the_controllers_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let _server = server(dir.path(), &[]);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, DEPLOYMENT).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", manifest.to_str().unwrap()]);
    wait_for_pods(&kubeconfig, 3);
    let sets = kubectl(&kubeconfig, &["get", "replicasets", "-o", "name"]);
    assert_eq!(sets.lines().count(), 1, "{sets}");
    // The default ServiceAccount exists in a new namespace.
    kubectl(&kubeconfig, &["create", "namespace", "team"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubectl(
        &kubeconfig,
        &["get", "serviceaccounts", "-n", "team", "-o", "name"],
    )
    .contains("serviceaccount/default")
    {
        assert!(
            Instant::now() < deadline,
            "no default ServiceAccount in team"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_separate_controller_manager_drives_a_server_without_controllers() {
    let dir = tempfile::tempdir().unwrap();
    let _server = server(dir.path(), &["--disable-controllers"]);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let manifest = dir.path().join("web.yaml");
    std::fs::write(&manifest, DEPLOYMENT).unwrap();
    kubectl(&kubeconfig, &["apply", "-f", manifest.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        pods_of(&kubeconfig),
        0,
        "controllers ran despite --disable-controllers"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args([
            "controller-manager",
            "--controllers",
            "nope",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unknown controller \"nope\""),
        "{bad:?}"
    );

    let _manager = Proc(
        Command::new(env!("CARGO_BIN_EXE_moor"))
            .args(["controller-manager", "--kubeconfig"])
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_pods(&kubeconfig, 3);
    let lease = kubectl(
        &kubeconfig,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "moor-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    assert!(!lease.is_empty(), "the manager holds no lease");
}

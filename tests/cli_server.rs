//! `moor server` as a user runs it: ready at once with a kubeconfig kubectl can use, and a
//! graceful stop on SIGTERM even with a watch open; restarting keeps every object.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `moor server` and wait for its "apiserver" ready line.
fn start(data_dir: &std::path::Path, port: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("MOOR_ETCD_ENDPOINTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("server exited before it was ready")
            .unwrap();
        if line.starts_with("apiserver") {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl")
}

#[test]
fn server_starts_serves_kubectl_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // How fast it gets ready is measured by the server itself (its ready line) and by the
    // benchmarks, not asserted here.
    let mut child = start(dir.path(), port);
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let out = kubectl(&kubeconfig, &["get", "ns", "-o", "name"]);
    assert!(out.status.success(), "{out:?}");
    let names = String::from_utf8_lossy(&out.stdout);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&format!("namespace/{ns}")), "{names}");
    }
    let cm = dir.path().join("cm.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\ndata:\n  a: b\n",
    )
    .unwrap();
    assert!(
        kubectl(&kubeconfig, &["create", "-f", cm.to_str().unwrap()])
            .status
            .success()
    );

    // An open watch must not keep the server from stopping.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "cm", "-w"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child's pid; no memory is touched.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let _ = watch.kill();
    let _ = watch.wait();

    // Restart on the same data dir: the object is still there.
    let mut child = start(dir.path(), port);
    let out = kubectl(
        &kubeconfig,
        &["get", "cm", "kept", "-o", "jsonpath={.data.a}"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b", "{out:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn plain_http_off_loopback_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure-listen",
            "0.0.0.0:6443",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--insecure-listen 0.0.0.0:6443") && stderr.contains("loopback"),
        "{out:?}"
    );
    // Refused before anything was written.
    assert!(!dir.path().join("kubeconfig.yaml").exists());
}

//! The `moor agent` binary next to a default `moor server` (controllers, scheduler and node
//! IPAM in-process), driven with the real kubectl as a user would: the node registers and
//! gets its pod range, a Deployment's pods are placed, run as containerd containers with
//! IPs the host reaches, `kubectl describe` and `kubectl logs` tell their story, and
//! scaling to zero removes every container.

#[path = "support/process.rs"]
mod process;
use process::{Proc, free_port};
#[path = "support/containerd.rs"]
mod containerd_support;
#[path = "support/image.rs"]
mod image_support;
#[path = "support/podnet.rs"]
mod podnet;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_support::ContainerdInstance;
use moor::kubelet::network::NetworkConfig;

const IMAGE: &str = "busybox:moor-test";

/// Starts `moor ARGS` and waits for a stdout line starting with `ready`.
fn spawn_moor(args: &[&str], ready: &str) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(args)
        .env_remove("MOOR_ETCD_ENDPOINTS")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("moor {args:?} exited before printing {ready:?}"))
            .unwrap();
        if line.starts_with(ready) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is installed (scripts/setup)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn http_get(addr: &str) -> Result<String, String> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))
            .map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(stream, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Pod networks the agent left (it was killed): torn down through the code under test.
struct NetworkCleanup(NetworkConfig, String);

impl Drop for NetworkCleanup {
    fn drop(&mut self) {
        podnet::teardown_networks(&self.0);
        podnet::remove_lo_addresses(&self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_runs_a_deployment_on_a_moor_agent() {
    let containerd = ContainerdInstance::start();
    let dir = tempfile::tempdir().unwrap();
    let (subnet, _claim) = podnet::claim_subnet(203, "magt");
    let cluster_cidr = format!("10.203.{subnet}.0/24");
    let bridge = format!("magt{subnet}");
    let agent_dir = dir.path().join("agent");
    let service_cidr = format!("10.213.{subnet}.0/24");
    let _cleanup = NetworkCleanup(
        NetworkConfig::new(cluster_cidr.clone(), agent_dir.join("network")).with_bridge(&bridge),
        format!("10.213.{subnet}."),
    );

    let archive = image_support::busybox_oci_archive(dir.path(), IMAGE);
    let socket = containerd.socket();
    let imported = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["images", "import", "--containerd-socket"])
        .arg(&socket)
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );

    let server_dir = dir.path().join("server");
    let listen = format!("127.0.0.1:{}", free_port());
    let _server = spawn_moor(
        &[
            "server",
            "--data-dir",
            server_dir.to_str().unwrap(),
            "--listen",
            &listen,
            "--disable-gitops",
            "--cluster-cidr",
            &cluster_cidr,
            "--node-cidr-mask-size",
            "24",
            // Cluster IPs and NodePorts are host-wide: a range no other test uses.
            "--service-cluster-ip-range",
            &service_cidr,
            "--service-node-port-range",
            "32600-32609",
        ],
        "apiserver",
    );
    let kubeconfig = server_dir.join("kubeconfig.yaml");
    let _agent = spawn_moor(
        &[
            "agent",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--node-name",
            "box1",
            "--containerd-socket",
            socket.to_str().unwrap(),
            "--data-dir",
            agent_dir.to_str().unwrap(),
            "--bridge",
            &bridge,
            "--kubelet-port",
            "0",
            "--node-ip",
            "127.0.0.1",
            // Scheduling must not depend on how full the test machine's disk is.
            "--disk-pressure-below",
            "0",
            "--service-cidr",
            &service_cidr,
        ],
        "agent",
    );
    let k = |args: &[&str]| kubectl(&kubeconfig, args, None);

    let nodes = eventually_ok!("box1 Ready", {
        let nodes = k(&["get", "nodes"]).unwrap_or_else(|e| e);
        if nodes
            .lines()
            .any(|l| l.starts_with("box1 ") && l.contains(" Ready "))
        {
            Ok(nodes)
        } else {
            Err(nodes)
        }
    });
    assert!(nodes.contains("box1"), "{nodes}");
    let cidr = k(&["get", "node", "box1", "-o", "jsonpath={.spec.podCIDR}"]).unwrap();
    assert_eq!(
        cidr, cluster_cidr,
        "the node IPAM controller gave the node its range"
    );

    kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      volumes: [{{name: www, emptyDir: {{}}}}]\n      containers:\n      - name: web\n        image: {IMAGE}\n        command: [sh, -c, 'echo serving; hostname > /www/index.html; exec httpd -f -p 8080 -h /www']\n        volumeMounts: [{{name: www, mountPath: /www}}]\n        ports: [{{containerPort: 8080}}]\n"
        )),
    )
    .unwrap();
    eventually_ok!("2/2 ready", {
        let ready = k(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])
        .unwrap_or_else(|e| e);
        if ready == "2" {
            Ok(())
        } else {
            // What a person would look at next.
            let pods = k(&["get", "pods", "-o", "wide"]).unwrap_or_else(|e| e);
            let events = k(&["get", "events"]).unwrap_or_else(|e| e);
            Err(format!("ready {ready:?}\n{pods}\n{events}"))
        }
    });
    let wide = k(&["get", "pods", "-l", "app=web", "-o", "wide", "--no-headers"]).unwrap();
    let rows: Vec<Vec<&str>> = wide
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{wide}");
    for row in &rows {
        let (name, status, ip, node) = (row[0], row[2], row[5], row[6]);
        assert_eq!(status, "Running", "{wide}");
        assert_eq!(node, "box1", "{wide}");
        assert!(ip.starts_with(&format!("10.203.{subnet}.")), "{wide}");
        let body = eventually_ok!("the pod answers on its IP", http_get(&format!("{ip}:8080")));
        assert!(body.ends_with(&format!("{name}\n")), "{body}");
    }

    // The in-process proxy: a NodePort Service answers on its cluster IP and node port.
    k(&[
        "expose",
        "deployment",
        "web",
        "--type",
        "NodePort",
        "--port",
        "80",
        "--target-port",
        "8080",
    ])
    .unwrap();
    let ip = k(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]).unwrap();
    assert!(ip.starts_with(&format!("10.213.{subnet}.")), "{ip}");
    let node_port = k(&[
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ])
    .unwrap();
    assert!(node_port.starts_with("3260"), "{node_port}");
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    for addr in [format!("{ip}:80"), format!("127.0.0.1:{node_port}")] {
        let body = eventually_ok!(format!("the Service on {addr}"), http_get(&addr));
        assert!(
            names.iter().any(|n| body.ends_with(&format!("{n}\n"))),
            "{body}"
        );
    }

    let pod = rows[0][0];
    let described = k(&["describe", "pod", pod]).unwrap();
    for expected in [
        "Started container web",
        "Created container: web",
        &format!("Container image \"{IMAGE}\" already present on machine"),
        "kubelet",
    ] {
        assert!(
            described.contains(expected),
            "{expected:?} in:\n{described}"
        );
    }
    assert_eq!(k(&["logs", pod]).unwrap(), "serving\n");
    assert_eq!(k(&["logs", "deployment/web"]).unwrap(), "serving\n");

    k(&["scale", "deployment", "web", "--replicas", "0"]).unwrap();
    eventually_ok!("the pods gone", {
        let left = k(&["get", "pods", "--no-headers"]).unwrap_or_else(|e| e);
        if left.trim().is_empty() {
            Ok(())
        } else {
            Err(left)
        }
    });
    let containers = containerd.ctr("moor", &["containers", "ls", "-q"]).unwrap();
    assert!(
        containers.trim().is_empty(),
        "containers left: {containers}"
    );
}

//! `moor up` end to end, as a user runs it: the real binary following a temporary git
//! repository, its own containerd (Debian's, with runc), CNI pod networks, the proxy and
//! cluster DNS, `moor diff` and kubectl-compatible clients. One test walks the whole story
//! (pods run as containers, the Service answers by cluster IP and DNS name, a commit scales
//! 3 → 5, `moor diff` before and after, a deleted file is pruned, SIGKILL and a restart lose
//! and duplicate nothing); the others check the messages a newcomer meets.

#[path = "support/process.rs"]
mod process;
use process::Proc;
#[path = "support/containerd.rs"]
mod containerd_support;
#[path = "support/dnsquery.rs"]
mod dnsquery;
#[path = "support/image.rs"]
mod image_support;
#[path = "support/podnet.rs"]
mod podnet;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use moor::kubelet::network::NetworkConfig;

const IMAGE: &str = "busybox:moor-test";

/// The app in the repository: a web server reading its page from a ConfigMap, behind a
/// Service, plus a ConfigMap in a file of its own that a later commit deletes.
fn write_app(repo: &Path, replicas: u32) {
    let deploy = repo.join("deploy");
    std::fs::create_dir_all(&deploy).unwrap();
    std::fs::write(
        deploy.join("web.yaml"),
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [httpd, -f, -p, "8080", -h, /www]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
        volumeMounts: [{{name: page, mountPath: /www}}]
      volumes:
      - name: page
        configMap: {{name: page}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: page
data:
  index.html: "hello from moor up\n"
"#
        ),
    )
    .unwrap();
    std::fs::write(
        deploy.join("extra.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  k: v\n",
    )
    .unwrap();
}

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything one `moor up` made on the host, removed when the test ends however it ends:
/// the containers (through its containerd, as they outlive `moor up` by design), the
/// shims, mounts, pod networks and service addresses.
struct Cluster {
    dir: tempfile::TempDir,
    args: Vec<String>,
    process: Option<Proc>,
    network: NetworkConfig,
    service_prefix: String,
    _claim: nix::fcntl::Flock<std::fs::File>,
}

impl Cluster {
    fn new(repo: &Path) -> Self {
        // Under /tmp with a short name: containerd's socket path must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("moor-up-")
            .tempdir()
            .unwrap();
        let (subnet, claim) = podnet::claim_subnet(216, "mup");
        let cluster_cidr = format!("10.216.{subnet}.0/24");
        let bridge = format!("mup{subnet}");
        let data = dir.path().join("data");
        // The agent imports archives in its images folder at start: no registry needed.
        let images = data.join("agent").join("images");
        std::fs::create_dir_all(&images).unwrap();
        image_support::busybox_oci_archive(&images, IMAGE);
        let args: Vec<String> = [
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--git",
            repo.to_str().unwrap(),
            "--ref",
            "main",
            "--path",
            "deploy",
            "--listen",
            "127.0.0.1:0",
            "--kubelet-port",
            "0",
            "--node-name",
            "up-node",
            "--bridge",
            &bridge,
            "--cluster-cidr",
            &cluster_cidr,
            "--service-cluster-ip-range",
            &format!("10.217.{subnet}.0/24"),
            "--service-node-port-range",
            "32620-32629",
            // Scheduling must not depend on how full the test machine's disk is.
            "--disk-pressure-below",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Cluster {
            network: NetworkConfig::new(cluster_cidr, data.join("agent").join("network"))
                .with_bridge(&bridge),
            service_prefix: format!("10.217.{subnet}."),
            dir,
            args,
            process: None,
            _claim: claim,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data().join("kubeconfig.yaml")
    }

    fn socket(&self) -> PathBuf {
        self.data().join("containerd").join("containerd.sock")
    }

    /// Start `moor up` and return its progress lines up to the agent's, which comes once
    /// the node is registered and the proxy and DNS start.
    fn start(&mut self) -> Vec<String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
            .args(&self.args)
            .env_remove("MOOR_ETCD_ENDPOINTS")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.path().join("up.log")).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.process = Some(Proc(child));
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        loop {
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "moor up exited during start-up; stdout:\n{}\nlog:\n{}",
                    seen.join("\n"),
                    self.log()
                );
            };
            let done = line.starts_with("agent ");
            seen.push(line);
            if done {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        seen
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    fn sigkill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.0.kill();
            let _ = process.0.wait();
        }
    }

    async fn client(&self) -> kube::Client {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(self.kubeconfig()).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        containerd_support::ctr(&self.socket(), "moor", args)
    }

    /// containerd's tasks in the agent's namespace: (container id, status).
    fn tasks(&self) -> Vec<(String, String)> {
        containerd_support::tasks(&self.socket(), "moor")
    }

    /// The `moor diff` of the repository's working tree against the cluster: (exit code,
    /// output).
    fn diff(&self, dir: &Path) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_moor"))
            .arg("diff")
            .arg(dir)
            .args(["--source", "manifests"])
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Freeze moor up so its agent does not restart what is removed here; its
        // containerd (a separate process) keeps answering until moor up is killed.
        if let Some(process) = &self.process {
            let pid = nix::unistd::Pid::from_raw(process.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP);
            for (task, _) in self.tasks() {
                let _ = self.ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", &task]);
                let _ = self.ctr(&["tasks", "rm", "-f", &task]);
            }
        }
        self.sigkill();
        let dir = self.dir.path().display().to_string();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &format!("containerd-shim.*{dir}")])
            .status();
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &format!("containerd --config {dir}")])
            .status();
        // Rootfs mounts a killed task left, deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
        podnet::teardown_networks(&self.network);
        podnet::remove_lo_addresses(&self.service_prefix);
    }
}

fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(stream, "GET / HTTP/1.0\r\nHost: web\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The web pods that run, by UID, when there are exactly `n` of them all Running and ready.
async fn web_pods_ready(pods: &Api<Pod>, n: usize) -> Result<BTreeSet<String>, String> {
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .map_err(|e| e.to_string())?;
    let live: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let ready = live.iter().filter(|p| {
        p.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    });
    if live.len() != n || ready.count() != n || list.items.len() != n {
        return Err(format!(
            "{} pods, {} live: {:?}",
            list.items.len(),
            live.len(),
            live.iter()
                .map(|p| p.status.as_ref().and_then(|s| s.phase.clone()))
                .collect::<Vec<_>>()
        ));
    }
    Ok(live.iter().filter_map(|p| p.metadata.uid.clone()).collect())
}

/// Every running task is one web container of one of `uids`, each exactly once.
fn containers_match(cluster: &Cluster, uids: &BTreeSet<String>) -> Result<(), String> {
    let tasks = cluster.tasks();
    let running: Vec<&String> = tasks
        .iter()
        .filter(|(_, status)| status == "RUNNING")
        .map(|(id, _)| id)
        .collect();
    let expected: BTreeSet<String> = uids
        .iter()
        .map(|uid| moor::kubelet::runtime::container_id(uid, "web", 0))
        .collect();
    let found: BTreeSet<String> = running.iter().map(|s| s.to_string()).collect();
    if running.len() == expected.len() && found == expected && tasks.len() == running.len() {
        Ok(())
    } else {
        Err(format!("tasks {tasks:?}, expected {expected:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moor_up_follows_a_git_repository_end_to_end() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    write_app(&repo, 3);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "web: three replicas"]);

    let mut cluster = Cluster::new(&repo);
    let lines = cluster.start();
    for component in [
        "store ",
        "apiserver ",
        "controllers ",
        "scheduler ",
        "containerd ",
        "agent ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(component)),
            "no {component:?} line in {lines:#?}"
        );
    }
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The Deployment's pods run, each as one containerd container.
    let uids = eventually_ok!("3 web pods running", within Duration::from_secs(60),
        web_pods_ready(&pods, 3).await);
    eventually_ok!("one container per pod", containers_match(&cluster, &uids));

    // The Service answers through its cluster IP and through its name in cluster DNS.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services.get("web").await.unwrap();
    let ip: IpAddr = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .unwrap()
        .parse()
        .unwrap();
    let page = eventually_ok!(
        "the page through the cluster IP",
        http_get(SocketAddr::new(ip, 80)).and_then(|r| if r.contains("hello from moor up") {
            Ok(r)
        } else {
            Err(r)
        })
    );
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    let dns: IpAddr = format!("{}10", cluster.service_prefix).parse().unwrap();
    let resolved = eventually_ok!(
        "web.default.svc.cluster.local",
        dnsquery::resolve(dns, "web.default.svc.cluster.local").await
    );
    assert_eq!(resolved, vec![ip]);
    let by_name = http_get(SocketAddr::new(resolved[0], 80)).unwrap();
    assert!(by_name.contains("hello from moor up"), "{by_name}");

    // moor diff shows the pending change before the commit, nothing after it converged.
    write_app(&repo, 5);
    let (code, plan) = cluster.diff(&repo.join("deploy"));
    assert_eq!(code, 1, "{plan}");
    assert!(
        plan.contains("Deployment default/web") && plan.contains("replicas"),
        "{plan}"
    );
    assert!(
        plan.contains("-     replicas: 3") && plan.contains("+     replicas: 5"),
        "{plan}"
    );
    git(&repo, &["commit", "-qam", "web: five replicas"]);
    let uids = eventually_ok!("5 web pods running", within Duration::from_secs(60),
        web_pods_ready(&pods, 5).await);
    eventually_ok!("one container per pod", containers_match(&cluster, &uids));
    let (code, plan) = cluster.diff(&repo.join("deploy"));
    assert_eq!(code, 0, "nothing left to change after the commit: {plan}");

    // Deleting a file from the repository prunes what it defined, and only that.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert!(configmaps.get_opt("extra").await.unwrap().is_some());
    git(&repo, &["rm", "-q", "deploy/extra.yaml"]);
    git(&repo, &["commit", "-qm", "no extra"]);
    eventually_ok!(
        "extra pruned",
        match configmaps.get_opt("extra").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    );
    assert!(configmaps.get_opt("page").await.unwrap().is_some());

    // An acknowledged write just before a SIGKILL survives it; the restart adopts the
    // running containers: the same pods, the same containers, none started twice.
    let acked = configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "acked"}, "data": {"written": "before the kill"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    cluster.sigkill();
    let lines = cluster.start();
    assert!(
        lines.iter().any(|l| l.starts_with("containerd pid")),
        "a new private containerd: {lines:#?}"
    );
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // containerd dying is not the end: moor up starts it again, and the running
    // containers (held by their shims) are found again.
    let pid = containerd_pid(&lines);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually_ok!("containerd restarted", within Duration::from_secs(30), {
        let restarted = Command::new("pgrep")
            .args(["-f", &format!("containerd --config {}", cluster.dir.path().display())])
            .output()
            .unwrap();
        let pids = String::from_utf8_lossy(&restarted.stdout).trim().to_owned();
        match cluster.ctr(&["version"]) {
            Ok(_) if !pids.is_empty() && pids != pid.to_string() => Ok(pids),
            other => Err(format!("pids {pids:?}: {other:?}")),
        }
    });
    assert!(
        cluster.log().contains("containerd exited; restarting it"),
        "{}",
        cluster.log()
    );
    let kept = configmaps.get("acked").await.unwrap();
    assert_eq!(kept.data, acked.data);
    assert_eq!(kept.metadata.uid, acked.metadata.uid);
    let after = eventually_ok!("5 web pods running after the restart", within Duration::from_secs(60),
        web_pods_ready(&pods, 5).await);
    assert_eq!(after, uids, "the same pods, none replaced");
    // Give the agent time to act on anything it would wrongly restart, then check that
    // containerd still runs exactly the first containers (attempt 0: none restarted).
    tokio::time::sleep(Duration::from_secs(3)).await;
    containers_match(&cluster, &uids).unwrap();
    let restarts: i32 = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    assert_eq!(restarts, 0, "no container was restarted");
    let (code, plan) = cluster.diff(&repo.join("deploy"));
    assert_eq!(code, 0, "still nothing to change: {plan}");
    let page = eventually_ok!(
        "the page after the restart",
        http_get(SocketAddr::new(ip, 80)).and_then(|r| if r.contains("hello from moor up") {
            Ok(r)
        } else {
            Err(r)
        })
    );
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");

    // Ctrl-C stops moor up gracefully; the containers keep running (the next moor up
    // adopts them) until `moor down` removes them, their networks and the addresses.
    let mut process = cluster.process.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(process.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = process.0.wait().unwrap();
    assert!(status.success(), "{status}; log:\n{}", cluster.log());
    assert!(
        podnet::lo_addresses(&cluster.service_prefix).is_empty(),
        "the proxy released its addresses"
    );
    let dir = cluster.dir.path().display().to_string();
    let running = Command::new("pgrep")
        .args(["-f", &format!("containerd --config {dir}")])
        .output()
        .unwrap();
    assert!(!running.status.success(), "containerd stopped with moor up");
    containers_running_without_containerd(&dir, 5);
    let down = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["down", "--data-dir"])
        .arg(cluster.data())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&down.stdout);
    assert!(
        down.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(said.contains("containers 5 removed"), "{said}");
    assert!(said.contains("5 pod networks torn down"), "{said}");
    let bridge = Command::new("ip")
        .args(["link", "show", &cluster.network.bridge])
        .output()
        .unwrap();
    assert!(!bridge.status.success(), "the bridge is gone");
    let left = Command::new("pgrep")
        .args(["-f", &format!("containerd.*{dir}")])
        .output()
        .unwrap();
    assert!(
        !left.status.success(),
        "no containerd or shim left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// `n` shims of containers under `dir` still run while containerd is stopped.
fn containers_running_without_containerd(dir: &str, n: usize) {
    let shims = Command::new("pgrep")
        .args(["-f", &format!("containerd-shim.*{dir}")])
        .output()
        .unwrap();
    let count = String::from_utf8_lossy(&shims.stdout).lines().count();
    assert_eq!(count, n, "the containers' shims outlive moor up");
}

/// The pid on moor up's `containerd pid N …` line.
fn containerd_pid(lines: &[String]) -> i32 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("containerd pid "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no containerd pid in {lines:#?}"))
}

#[test]
fn a_missing_prerequisite_is_named_with_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--cni-bin-dir", "/nonexistent/cni"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bridge, host-local, loopback, portmap")
            && stderr.contains("/nonexistent/cni")
            && stderr.contains("apt-get install containernetworking-plugins"),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing is created before the checks pass");
}

#[test]
fn logs_can_be_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["--log-format", "json", "server", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("MOOR_ETCD_ENDPOINTS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut server = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The components log as they take their leases; then stop it so its log is complete.
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a log line within 20 s");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = server.0.wait();
    reader.join().unwrap();
    let lines: Vec<String> = std::iter::once(first).chain(rx.try_iter()).collect();
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{lines:#?}"
    );
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

//! Exec and container probes against a real private containerd with runc and the busybox
//! test image: commands run inside a running container with its environment, working dir
//! and user, their exit codes and (capped) output, a command that outlives its timeout
//! killed; and the three probe kinds with kubelet's verdicts and messages — exec (exit
//! status, output, timeout), httpGet (200, a followed redirect, 404, a refused
//! connection, named ports) against busybox's httpd, tcpSocket (open and closed ports).
//! Exec output goes through FIFOs: a regression test guards the lost-stderr race of
//! containerd's `file://` IO.
//! Containers run in the host's network (no CNI), so the pod IP is 127.0.0.1.

#[path = "support/containerd.rs"]
mod containerd_support;
#[path = "support/image.rs"]
mod image_support;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use containerd_client::services::v1::{
    CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest,
};
use containerd_support::ContainerdInstance;
use image_support::busybox_oci_archive;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use moor::kubelet::containerd::Containerd;
use moor::kubelet::exec::{self, ExecError, MAX_OUTPUT};
use moor::kubelet::images::{ImageInfo, ImageStore};
use moor::kubelet::probes::{ProbeResult, ProbeTarget, probe};
use moor::kubelet::runtime::{RunRequest, Runtime};
use moor::kubelet::spec::{SpecInput, runtime_spec};
use serde_json::json;

/// Tests that exec take turns: one of them checks that exec leaves no temp dirs behind,
/// which only holds while no other exec is in flight.
static EXEC_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Fixture {
    client: Containerd,
    runtime: Runtime,
    image: ImageInfo,
    dir: tempfile::TempDir,
    // Dropped last: kills whatever a failed test left running.
    _containerd: ContainerdInstance,
}

impl Fixture {
    async fn start() -> Fixture {
        let containerd = ContainerdInstance::start();
        let client = Containerd::connect(&containerd.socket()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(client.clone());
        let archive = busybox_oci_archive(dir.path(), "busybox");
        store.import_archive(&archive).await.unwrap();
        let image = store
            .get("busybox")
            .await
            .unwrap()
            .expect("busybox imported");
        settle_gc(&client).await;
        Fixture {
            runtime: Runtime::new(client.clone()),
            _containerd: containerd,
            client,
            image,
            dir,
        }
    }

    /// Runs `container` (host network) and returns its containerd ID.
    async fn run(&self, container: &Container, env: &[(&str, &str)]) -> String {
        let id = format!("probes-{}", container.name);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "probes", "namespace": "default", "uid": "u1"},
            "spec": {"hostNetwork": true, "containers": [container]},
        }))
        .unwrap();
        let spec = runtime_spec(&SpecInput {
            pod: &pod,
            container,
            image: &self.image.config,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            mounts: vec![],
            netns: None,
            cgroups_path: format!("/moor-probes/{id}"),
        })
        .unwrap();
        let log_path: PathBuf = self.dir.path().join(format!("{id}.log"));
        self.runtime
            .run(RunRequest {
                id: id.clone(),
                labels: Default::default(),
                image: &self.image.name,
                chain_id: &self.image.chain_id,
                spec: &spec,
                log_path: &log_path,
                log_driver: std::path::Path::new(env!("CARGO_BIN_EXE_moor")),
            })
            .await
            .unwrap();
        id
    }

    fn target<'a>(&'a self, id: &'a str, container: &'a Container) -> ProbeTarget<'a> {
        ProbeTarget {
            containerd: &self.client,
            container_id: id,
            pod_ip: Some(LOCALHOST),
            host_ip: None,
            container,
        }
    }
}

/// Runs containerd's garbage collection now and waits for it (deleting a lease with
/// `sync` does). The import's lease release has just scheduled one, and a collection that
/// lands between `Runtime::run` preparing the container's snapshot and creating the
/// container removes the snapshot, which nothing references yet (the task then fails to
/// mount its rootfs). With the collection done up front, none is pending while the tests
/// start containers.
async fn settle_gc(client: &Containerd) {
    let id = format!("probes-gc-{}", uuid::Uuid::new_v4().simple());
    client
        .leases()
        .create(client.request(CreateLeaseRequest {
            id: id.clone(),
            labels: Default::default(),
        }))
        .await
        .unwrap();
    client
        .leases()
        .delete(client.request(DeleteLeaseRequest { id, sync: true }))
        .await
        .unwrap();
}

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn container(value: serde_json::Value) -> Container {
    serde_json::from_value(value).unwrap()
}

fn probe_spec(value: serde_json::Value) -> Probe {
    serde_json::from_value(value).unwrap()
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// The exec temp dirs in the temp dir now (other tests' execs come and go meanwhile).
fn exec_dirs() -> std::collections::HashSet<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("moor-exec-"))
        .collect()
}

/// No exec dir made since `before` stays: any still there after 5 s was leaked (dirs of
/// execs other tests run concurrently are gone by then).
async fn assert_no_exec_dirs_left(before: &std::collections::HashSet<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = exec_dirs().difference(before).cloned().collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "exec left temp dirs: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port free right now on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_the_container_as_its_process_and_reports_exit_and_output() {
    let _turn = EXEC_LOCK.lock().await;
    let f = Fixture::start().await;
    let c = container(json!({
        "name": "sleeper", "image": "busybox", "command": ["sleep", "3600"],
        "workingDir": "/tmp", "securityContext": {"runAsUser": 1234, "runAsGroup": 1234},
    }));
    let id = f.run(&c, &[("GREETING", "hello")]).await;
    let before = exec_dirs();
    let t = Duration::from_secs(10);

    let out = exec::exec(
        &f.client,
        &id,
        &argv(&[
            "sh",
            "-c",
            "echo out; echo err >&2; echo \"$GREETING\"; pwd; id -u; exit 3",
        ]),
        t,
    )
    .await
    .unwrap();
    assert_eq!(out.exit_code, 3);
    // kubelet's order: all of stdout, then all of stderr.
    assert_eq!(
        String::from_utf8(out.output).unwrap(),
        "out\nhello\n/tmp\n1234\nerr\n"
    );

    let out = exec::exec(&f.client, &id, &argv(&["true"]), t)
        .await
        .unwrap();
    assert_eq!((out.exit_code, out.output), (0, vec![]));

    let out = exec::exec(
        &f.client,
        &id,
        &argv(&["sh", "-c", "yes | head -c 50000"]),
        t,
    )
    .await
    .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.output.len(), MAX_OUTPUT, "capped as kubelet caps it");

    // A signal's death reads as 128 + signal, as kubelet shows it.
    let out = exec::exec(&f.client, &id, &argv(&["sh", "-c", "kill -9 $$"]), t)
        .await
        .unwrap();
    assert_eq!(out.exit_code, 137);

    let missing = exec::exec(&f.client, &id, &argv(&["/no/such/binary"]), t)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ExecError::Containerd(_)),
        "a command that cannot start is containerd's error: {missing:?}"
    );
    let nowhere = exec::exec(&f.client, "no-such-container", &argv(&["true"]), t)
        .await
        .unwrap_err();
    assert!(
        matches!(nowhere, ExecError::ContainerNotFound(ref id) if id == "no-such-container"),
        "{nowhere:?}"
    );
    assert!(matches!(
        exec::exec(&f.client, &id, &[], t).await,
        Err(ExecError::EmptyCommand)
    ));
    assert_no_exec_dirs_left(&before).await;
    f.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_past_its_timeout_is_killed_and_told_apart() {
    let _turn = EXEC_LOCK.lock().await;
    let f = Fixture::start().await;
    let c = container(json!({"name": "slow", "image": "busybox", "command": ["sleep", "3600"]}));
    let id = f.run(&c, &[]).await;
    let before = exec_dirs();

    let started = Instant::now();
    let err = exec::exec(
        &f.client,
        &id,
        &argv(&["sleep", "31"]),
        Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "command \"sleep 31\" timed out after 500ms"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The timed-out process is gone from the container, and so is its output file.
    let ps = exec::exec(
        &f.client,
        &id,
        &argv(&["ps", "-o", "args"]),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let ps = String::from_utf8(ps.output).unwrap();
    assert!(ps.contains("sleep 3600"), "{ps}");
    assert!(
        !ps.contains("sleep 31"),
        "the timed-out exec still runs:\n{ps}"
    );
    assert_no_exec_dirs_left(&before).await;
    f.runtime.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probes_pass_fail_with_the_output_and_time_out() {
    let _turn = EXEC_LOCK.lock().await;
    let f = Fixture::start().await;
    let c = container(json!({
        "name": "app", "image": "busybox", "command": ["sleep", "3600"],
        "env": [{"name": "HEALTH_FILE", "value": "/tmp/healthy"}],
    }));
    let id = f.run(&c, &[("HEALTH_FILE", "/tmp/healthy")]).await;
    let target = f.target(&id, &c);

    let check = probe_spec(json!({"exec": {"command": ["cat", "$(HEALTH_FILE)"]}}));
    assert_eq!(
        probe(&check, &target).await,
        ProbeResult::Failure("cat: can't open '/tmp/healthy': No such file or directory\n".into())
    );
    let touch = probe_spec(json!({"exec": {"command": ["touch", "/tmp/healthy"]}}));
    assert_eq!(probe(&touch, &target).await, ProbeResult::Success);
    assert_eq!(probe(&check, &target).await, ProbeResult::Success);

    let slow = probe_spec(json!({"exec": {"command": ["sleep", "10"]}, "timeoutSeconds": 1}));
    let started = Instant::now();
    assert_eq!(
        probe(&slow, &target).await,
        ProbeResult::Failure("command \"sleep 10\" timed out".into())
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A container that is gone: the probe could not run, which is no verdict.
    f.runtime.remove(&id).await.unwrap();
    assert!(matches!(
        probe(&check, &target).await,
        ProbeResult::Unknown(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_probes_against_busybox_httpd() {
    let f = Fixture::start().await;
    let port = free_port();
    let script = format!(
        "mkdir -p /www/sub && echo ok > /www/healthz && echo index > /www/sub/index.html \
         && exec httpd -f -p {port} -h /www"
    );
    let c = container(json!({
        "name": "web", "image": "busybox", "command": ["sh", "-c", script],
        "ports": [{"name": "http", "containerPort": port}],
    }));
    let id = f.run(&c, &[]).await;
    wait_listening(port).await;
    let target = f.target(&id, &c);
    let http = |path: &str, port: serde_json::Value| {
        probe_spec(json!({"httpGet": {"path": path, "port": port}}))
    };

    assert_eq!(
        probe(&http("/healthz", json!(port)), &target).await,
        ProbeResult::Success
    );
    assert_eq!(
        probe(&http("/healthz", json!("http")), &target).await,
        ProbeResult::Success,
        "a named port"
    );
    // busybox answers a directory without its slash with a redirect to it, on the same
    // host: followed, and the index decides.
    assert_eq!(
        probe(&http("/sub", json!(port)), &target).await,
        ProbeResult::Success
    );
    assert_eq!(
        probe(&http("/missing", json!(port)), &target).await,
        ProbeResult::Failure("HTTP probe failed with statuscode: 404".into())
    );
    let tcp = |port: u16| probe_spec(json!({"tcpSocket": {"port": port}}));
    assert_eq!(probe(&tcp(port), &target).await, ProbeResult::Success);

    // The server gone: refused connections, in kubelet's words.
    f.runtime.remove(&id).await.unwrap();
    assert_eq!(
        probe(&http("/healthz", json!(port)), &target).await,
        ProbeResult::Failure(format!(
            "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
    assert_eq!(
        probe(&tcp(port), &target).await,
        ProbeResult::Failure(format!(
            "dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

/// A command that fails at once with a message on stderr only (what a failing exec probe
/// typically is) keeps its message every time. Through containerd's `file://` IO about one
/// run in thirteen lost it (see `exec`'s module docs); fifty runs catch that nearly always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_commands_writing_only_stderr_keep_their_output() {
    let _turn = EXEC_LOCK.lock().await;
    let f = Fixture::start().await;
    let c = container(json!({"name": "fast", "image": "busybox", "command": ["sleep", "3600"]}));
    let id = f.run(&c, &[]).await;
    for run in 0..50 {
        let out = exec::exec(
            &f.client,
            &id,
            &argv(&["cat", "/nope"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(
            (out.exit_code, String::from_utf8_lossy(&out.output).as_ref()),
            (1, "cat: can't open '/nope': No such file or directory\n"),
            "run {run}"
        );
    }
    f.runtime.remove(&id).await.unwrap();
}

//! The node agent end to end: a real API server, a private containerd with runc, the CNI
//! plugins, and the busybox test image. Pods are created already bound (`spec.nodeName`)
//! and the tests watch what kubectl would show: phase, container states, exit codes,
//! restarts and back-off, readiness, pod IPs reachable from the host, volumes and env,
//! cgroup limits, graceful deletion, restart adoption and the errors of bad specs.

#[path = "support/agent.rs"]
mod agent_support;
#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/containerd.rs"]
mod containerd_support;
#[path = "support/image.rs"]
mod image_support;
#[path = "support/podnet.rs"]
mod podnet;
#[path = "support/registry.rs"]
mod registry_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::io::{Read, Write};
use std::time::Duration;

use agent_support::{IMAGE, TestNode};
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod};
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = json!("box1");
    if spec.get("terminationGracePeriodSeconds").is_none() {
        spec["terminationGracePeriodSeconds"] = json!(5);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": spec,
    }))
    .unwrap()
}

fn sh(name: &str, script: &str) -> serde_json::Value {
    json!({"name": name, "image": IMAGE, "command": ["sh", "-c", script]})
}

async fn create(node: &TestNode, pod: Pod) -> Pod {
    node.pods()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

fn status_of<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
}

fn phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn condition(pod: &Pod, type_: &str) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// The pod's events as `Reason message` lines.
async fn events_about(node: &TestNode, pod: &str) -> Vec<String> {
    kube::Api::<k8s_openapi::api::core::v1::Event>::namespaced(node.client(), "default")
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .map(|e| {
            format!(
                "{} {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

/// The reason and message of a waiting container.
fn waiting_of(pod: &Pod, container: &str) -> (String, String) {
    let waiting = status_of(pod, container)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.clone())
        .unwrap_or_default();
    (
        waiting.reason.unwrap_or_default(),
        waiting.message.unwrap_or_default(),
    )
}

/// Polls the pod until `check` accepts it.
async fn wait_for(node: &TestNode, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    eventually_ok!(what, within Duration::from_secs(30), {
        let pod = node.pods().get(name).await.unwrap();
        if check(&pod) { Ok(pod) } else { Err(pod.status) }
    })
}

/// Waits until a container's log file holds `expected`: the shim copies output to the
/// file on its own schedule, so it may trail the exit that ends the container.
async fn wait_log(node: &TestNode, pod: &Pod, container: &str, attempt: u32, expected: &str) {
    eventually_ok!(format!("{container}'s log to be {expected:?}"), within Duration::from_secs(5), {
        let log = log_of(node, pod, container, attempt);
        if log == expected { Ok(()) } else { Err(log) }
    });
}

fn log_of(node: &TestNode, pod: &Pod, container: &str, attempt: u32) -> String {
    let meta = &pod.metadata;
    let path = node
        .data_dir()
        .join("logs")
        .join(format!(
            "default_{}_{}",
            meta.name.as_deref().unwrap(),
            meta.uid.as_deref().unwrap()
        ))
        .join(container)
        .join(format!("{attempt}.log"));
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn containers_run_to_completion_with_their_exit_codes() {
    let node = TestNode::start().await;
    create(&node, pod("ok", json!({"restartPolicy": "Never", "containers": [sh("main", "echo hello from busybox")]}))).await;
    create(&node, pod("bad", json!({"restartPolicy": "Never", "containers": [sh("main", "echo failing >&2; exit 3")]}))).await;

    let ok = wait_for(&node, "ok", "pod ok Succeeded", |p| phase(p) == "Succeeded").await;
    let t = status_of(&ok, "main")
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(t.exit_code, 0);
    assert_eq!(t.reason.as_deref(), Some("Completed"));
    assert!(t.started_at.is_some() && t.finished_at.is_some());
    wait_log(&node, &ok, "main", 0, "hello from busybox\n").await;
    assert_eq!(condition(&ok, "Ready"), "False");

    let bad = wait_for(&node, "bad", "pod bad Failed", |p| phase(p) == "Failed").await;
    let cs = status_of(&bad, "main").unwrap();
    let t = cs.state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!(t.exit_code, 3);
    assert_eq!(t.reason.as_deref(), Some("Error"));
    assert_eq!(cs.restart_count, 0);
    wait_log(&node, &bad, "main", 0, "failing\n").await;
    assert!(
        cs.container_id
            .as_deref()
            .unwrap()
            .starts_with("containerd://")
    );
}

#[tokio::test]
async fn restart_policies_restart_with_back_off() {
    let node = TestNode::start().await;
    create(
        &node,
        pod(
            "crash",
            json!({"restartPolicy": "Always", "containers": [sh("main", "echo attempt; exit 1")]}),
        ),
    )
    .await;
    create(&node, pod("retry", json!({"restartPolicy": "OnFailure", "containers": [sh("main", "test -f /tmp/x || (touch /tmp/x; exit 0)")]}))).await;

    // The first restart is immediate, the next waits 10 s: CrashLoopBackOff in between.
    let crashing = wait_for(&node, "crash", "CrashLoopBackOff after a restart", |p| {
        status_of(p, "main").is_some_and(|c| {
            c.restart_count >= 1
                && c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some("CrashLoopBackOff")
        })
    })
    .await;
    let cs = status_of(&crashing, "main").unwrap();
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(last.exit_code, 1);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    let message = cs
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(
        message.starts_with("back-off 10s restarting failed container=main pod=crash_default("),
        "{message}"
    );
    assert_eq!(phase(&crashing), "Running");
    // Only the newest two attempts are kept in containerd.
    assert!(node.containers().len() <= 3, "{:?}", node.containers());

    // OnFailure: a success ends it, without a restart.
    let retried = wait_for(&node, "retry", "OnFailure pod Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(status_of(&retried, "main").unwrap().restart_count, 0);
}

#[tokio::test]
async fn a_server_pod_is_ready_and_reachable_on_its_ip_with_volumes_and_env() {
    let node = TestNode::start().await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "site"},
        "data": {"index.html": "hello from a configmap\n", "greeting": "hi"}
    }))
    .unwrap();
    kube::Api::<ConfigMap>::namespaced(node.client(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    create(
        &node,
        pod(
            "web",
            json!({
                "volumes": [{"name": "site", "configMap": {"name": "site"}}],
                "containers": [{
                    "name": "httpd",
                    "image": IMAGE,
                    "command": ["sh", "-c", "echo \"$GREETING $POD_NAME $(cat /etc/hostname)\"; exec httpd -f -p 8080 -h /www"],
                    "env": [
                        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "site", "key": "greeting"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                    ],
                    "volumeMounts": [{"name": "site", "mountPath": "/www", "readOnly": true}],
                    "ports": [{"containerPort": 8080}]
                }]
            }),
        ),
    )
    .await;
    let web = wait_for(&node, "web", "web Running and Ready", |p| {
        phase(p) == "Running" && condition(p, "Ready") == "True"
    })
    .await;
    let status = web.status.clone().unwrap();
    let ip: std::net::Ipv4Addr = status.pod_ip.clone().unwrap().parse().unwrap();
    assert_eq!(
        ip.octets()[..3],
        [10, 201, node.subnet],
        "pod IP {ip} in the node's range"
    );
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    for c in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        assert_eq!(condition(&web, c), "True", "{c}");
    }
    let cs = status_of(&web, "httpd").unwrap();
    assert!(cs.ready && cs.started == Some(true));
    assert!(cs.image_id.starts_with("sha256:"), "{}", cs.image_id);

    // The host reaches the server on the pod's IP.
    let body = eventually_ok!("GET / from the pod", {
        http_get(&format!("{ip}:8080"), "/index.html")
    });
    assert!(body.ends_with("hello from a configmap\n"), "{body}");
    let log = eventually_ok!("the greeting in the log", {
        let log = log_of(&node, &web, "httpd", 0);
        if log.is_empty() { Err(()) } else { Ok(log) }
    });
    assert_eq!(log, "hi web web\n");
}

fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))
            .map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    stream.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::test]
async fn deleting_a_pod_stops_it_gracefully_and_removes_everything() {
    let node = TestNode::start().await;
    create(
        &node,
        pod("graceful", json!({"containers": [sh("main", "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done")]})),
    )
    .await;
    let running = wait_for(&node, "graceful", "Running", |p| phase(p) == "Running").await;
    let uid = running.metadata.uid.clone().unwrap();
    node.pods()
        .delete("graceful", &DeleteParams::default())
        .await
        .unwrap();
    eventually_ok!("the pod gone from the API", {
        match node.pods().get_opt("graceful").await.unwrap() {
            None => Ok(()),
            Some(p) => Err(p.status),
        }
    });
    assert!(
        node.containers().is_empty(),
        "containers left: {:?}",
        node.containers()
    );
    let netns = node.data_dir().join("network").join("netns");
    let left: Vec<_> = std::fs::read_dir(&netns)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(!node.data_dir().join("pods").join(&uid).exists());
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_containers_and_cleans_up_deleted_pods() {
    let mut node = TestNode::start().await;
    create(
        &node,
        pod(
            "keep",
            json!({"containers": [sh("main", "while true; do sleep 1; done")]}),
        ),
    )
    .await;
    create(&node, pod("drop", json!({"terminationGracePeriodSeconds": 0, "containers": [sh("main", "while true; do sleep 1; done")]}))).await;
    let keep = wait_for(&node, "keep", "keep Running", |p| phase(p) == "Running").await;
    wait_for(&node, "drop", "drop Running", |p| phase(p) == "Running").await;
    let before = status_of(&keep, "main").unwrap().container_id.clone();

    node.stop_agent().await;
    // Deleted while the agent is away: force-deleted, as an operator would.
    node.pods()
        .delete(
            "drop",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    if node.pods().get_opt("drop").await.unwrap().is_some() {
        // The API server waits for the agent to finish graceful deletions; remove it for good.
        let _ = node
            .pods()
            .delete(
                "drop",
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await;
    }
    node.start_agent().await;

    eventually_ok!("only keep's container left", {
        let containers = node.containers();
        if containers.len() == 1 {
            Ok(())
        } else {
            Err(containers)
        }
    });
    let keep = node.pods().get("keep").await.unwrap();
    let cs = status_of(&keep, "main").unwrap();
    assert_eq!(cs.container_id, before, "the same container, adopted");
    assert_eq!(cs.restart_count, 0);
    assert_eq!(phase(&keep), "Running");
    assert_eq!(node.tasks().len(), 1, "{:?}", node.tasks());
}

#[tokio::test]
async fn bad_specs_get_a_clear_reason_and_the_agent_carries_on() {
    let node = TestNode::start().await;
    create(&node, pod("noimage", json!({"containers": [{"name": "main", "image": "example.invalid/none:1", "imagePullPolicy": "Never"}]}))).await;
    create(&node, pod("nocmd", json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE, "command": ["/no/such/binary"]}]}))).await;
    create(&node, pod("nocm", json!({"containers": [{"name": "main", "image": IMAGE, "envFrom": [{"configMapRef": {"name": "missing"}}]}]}))).await;

    let waiting_reason = |p: &Pod| {
        status_of(p, "main")
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .unwrap_or_default()
    };
    let p = wait_for(&node, "noimage", "ErrImageNeverPull", |p| {
        waiting_reason(p) == "ErrImageNeverPull"
    })
    .await;
    let message = waiting_of(&p, "main").1;
    assert_eq!(
        message,
        "Container image \"example.invalid/none:1\" is not present with pull policy of Never"
    );
    assert_eq!(phase(&p), "Pending");

    let p = wait_for(&node, "nocmd", "a failed start", |p| phase(p) == "Failed").await;
    let t = status_of(&p, "main")
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(t.exit_code, 128);
    assert_eq!(t.reason.as_deref(), Some("StartError"));
    assert!(
        t.message
            .as_deref()
            .unwrap_or("")
            .contains("/no/such/binary"),
        "{t:?}"
    );

    let p = wait_for(&node, "nocm", "CreateContainerConfigError", |p| {
        waiting_reason(p) == "CreateContainerConfigError"
    })
    .await;
    let message = waiting_of(&p, "main").1;
    assert_eq!(message, "configmap \"missing\" not found");

    // The agent still runs pods.
    create(
        &node,
        pod(
            "fine",
            json!({"restartPolicy": "Never", "containers": [sh("main", "true")]}),
        ),
    )
    .await;
    wait_for(&node, "fine", "a good pod next to bad ones", |p| {
        phase(p) == "Succeeded"
    })
    .await;
}

#[tokio::test]
async fn limits_become_cgroup_settings_and_init_containers_run_first() {
    let node = TestNode::start().await;
    create(
        &node,
        pod(
            "limited",
            json!({
                "volumes": [{"name": "shared", "emptyDir": {}}],
                "initContainers": [
                    {"name": "first", "image": IMAGE, "command": ["sh", "-c", "echo one > /shared/order"],
                     "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
                    {"name": "second", "image": IMAGE, "command": ["sh", "-c", "echo two >> /shared/order"],
                     "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}
                ],
                "containers": [{
                    "name": "main",
                    "image": IMAGE,
                    "command": ["sh", "-c", "cat /shared/order; while true; do sleep 1; done"],
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}
                }]
            }),
        ),
    )
    .await;
    let p = wait_for(&node, "limited", "Running after its init containers", |p| {
        phase(p) == "Running"
    })
    .await;
    assert_eq!(condition(&p, "Initialized"), "True");
    let inits = p
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    assert!(inits.iter().all(|c| {
        c.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code
            == 0
    }));
    // Burstable, not Guaranteed: the init containers set no limits, and upstream counts
    // them too.
    assert_eq!(
        p.status.as_ref().unwrap().qos_class.as_deref(),
        Some("Burstable")
    );
    let log = eventually_ok!("main's output", {
        let log = log_of(&node, &p, "main", 0);
        if log.is_empty() { Err(()) } else { Ok(log) }
    });
    assert_eq!(log, "one\ntwo\n");

    let uid = p.metadata.uid.clone().unwrap();
    let id = status_of(&p, "main")
        .unwrap()
        .container_id
        .clone()
        .unwrap()
        .replace("containerd://", "");
    let cgroup = |controller: &str, file: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{controller}/moor/pod{uid}/{id}/{file}"
        ))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
    };
    assert_eq!(
        cgroup("memory", "memory.limit_in_bytes"),
        (64 * 1024 * 1024).to_string()
    );
    assert_eq!(cgroup("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup("cpu", "cpu.cfs_period_us"), "100000");
}

/// `kubectl logs` through the API server's `pods/log` proxy to the agent. Multi-threaded:
/// kubectl runs synchronously while the in-process server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_with_tail_previous_follow_and_container_choice() {
    let node = TestNode::start().await;
    let kubeconfig = node.kubeconfig();
    let kubectl = |args: &[&str]| -> (bool, String) {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl is installed (scripts/setup)");
        let text = if out.status.success() {
            out.stdout
        } else {
            out.stderr
        };
        (
            out.status.success(),
            String::from_utf8_lossy(&text).into_owned(),
        )
    };
    create(&node, pod("done", json!({"restartPolicy": "Never", "containers": [sh("main", "echo one; echo two; echo three")]}))).await;
    create(
        &node,
        pod(
            "crash",
            json!({"containers": [sh("main", "echo run; exit 1")]}),
        ),
    )
    .await;
    create(&node, pod("ticker", json!({"containers": [sh("main", "echo start; while true; do echo tick; sleep 0.2; done"), sh("side", "sleep 3600")]}))).await;

    let done = wait_for(&node, "done", "done Succeeded", |p| phase(p) == "Succeeded").await;
    wait_log(&node, &done, "main", 0, "one\ntwo\nthree\n").await;
    assert_eq!(
        kubectl(&["logs", "done"]),
        (true, "one\ntwo\nthree\n".into())
    );
    assert_eq!(
        kubectl(&["logs", "done", "--tail", "2"]),
        (true, "two\nthree\n".into())
    );
    let (ok, message) = kubectl(&["logs", "done", "--previous"]);
    assert!(
        !ok && message.contains("previous terminated container \"main\" in pod \"done\" not found"),
        "{message}"
    );

    wait_for(&node, "crash", "a restart", |p| {
        status_of(p, "main").is_some_and(|c| c.restart_count >= 1)
    })
    .await;
    assert_eq!(
        kubectl(&["logs", "crash", "--previous"]),
        (true, "run\n".into())
    );

    wait_for(&node, "ticker", "ticker Running", |p| phase(p) == "Running").await;
    // kubectl itself picks the first container when none is named.
    let (ok, text) = kubectl(&["logs", "ticker"]);
    assert!(ok && text.starts_with("start\ntick\n"), "{text}");
    let (ok, message) = kubectl(&["logs", "ticker", "-c", "nope"]);
    assert!(
        !ok && message.contains("container nope is not valid for pod ticker"),
        "{message}"
    );

    // --follow streams what the container writes after the request.
    let mut follow = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", "-f", "ticker", "-c", "main"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut ticks = 0;
        while let Some(Ok(line)) = lines.next() {
            if line == "tick" {
                ticks += 1;
                if ticks == 15 {
                    return ticks;
                }
            }
        }
        ticks
    });
    // 15 ticks take ~3 s at 5 a second: more than the log held when kubectl started.
    let ticks = tokio::time::timeout(Duration::from_secs(20), seen)
        .await
        .expect("ticks keep coming")
        .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(ticks, 15);
}

/// Images from a registry that wants credentials: without a pull secret the container
/// waits in ErrImagePull, then ImagePullBackOff; with the pod's imagePullSecrets it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_images_pull_with_pull_secrets_and_back_off_without() {
    let registry = registry_support::RegistryInstance::start_with_basic_auth("moor", "s3cret");
    registry_support::push_busybox(
        &registry,
        "private/busybox",
        "1",
        &oci_client::secrets::RegistryAuth::Basic("moor".into(), "s3cret".into()),
    )
    .await;
    let node = TestNode::start().await;
    let image = format!("{}/private/busybox:1", registry.host());
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": format!(
            r#"{{"auths":{{"{}":{{"username":"moor","password":"s3cret"}}}}}}"#,
            registry.host()
        )}
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(node.client(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    create(
        &node,
        pod(
            "anonymous",
            // Always: pulled with this pod's (lack of) credentials even once the other
            // pod has put the image on the node, as kubelet does.
            json!({"restartPolicy": "Never", "containers": [
        {"name": "main", "image": image, "imagePullPolicy": "Always", "command": ["true"]}]}),
        ),
    )
    .await;
    create(
        &node,
        pod(
            "authorized",
            json!({"restartPolicy": "Never",
        "imagePullSecrets": [{"name": "regcred"}],
        "containers": [{"name": "main", "image": image, "command": ["sh", "-c", "echo pulled"]}]}),
        ),
    )
    .await;

    let waiting = |p: &Pod| {
        status_of(p, "main")
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.clone())
    };
    // ErrImagePull is the status only until the next sync finds the pull backing off (as
    // with kubelet, it can be replaced before a status write publishes it), so the failed
    // pull is checked in the pod's Events, which are recorded before either.
    wait_for(&node, "anonymous", "ImagePullBackOff", |p| {
        waiting(p).and_then(|w| w.reason).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    let failed = format!("Failed Failed to pull image \"{image}\": ");
    eventually_ok!("the failed pull's events", {
        let anonymous = events_about(&node, "anonymous").await;
        if anonymous.iter().any(|e| e.starts_with(&failed))
            && anonymous.iter().any(|e| e == "Failed Error: ErrImagePull")
        {
            Ok(())
        } else {
            Err(anonymous)
        }
    });

    let p = wait_for(&node, "authorized", "authorized Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    wait_log(&node, &p, "main", 0, "pulled\n").await;
    let authorized = events_about(&node, "authorized").await;
    assert!(
        authorized
            .iter()
            .any(|e| e == &format!("Pulling Pulling image \"{image}\"")),
        "{authorized:?}"
    );
    assert!(
        authorized
            .iter()
            .any(|e| e.starts_with(&format!("Pulled Successfully pulled image \"{image}\" in "))),
        "{authorized:?}"
    );
    let anonymous = events_about(&node, "anonymous").await;
    assert!(
        anonymous.iter().any(|e| e == "Failed Error: ErrImagePull"),
        "{anonymous:?}"
    );
}

/// A container over its memory limit is killed by the kernel and reported OOMKilled.
#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let node = TestNode::start().await;
    create(
        &node,
        pod(
            "hog",
            json!({"restartPolicy": "Never", "containers": [{
                "name": "main",
                "image": IMAGE,
                // tail keeps a line without newline in memory until its end: 200 MiB of zeros.
                "command": ["sh", "-c", "head -c 209715200 /dev/zero | tail"],
                "resources": {"limits": {"memory": "32Mi"}}
            }]}),
        ),
    )
    .await;
    let p = wait_for(&node, "hog", "hog Failed", |p| phase(p) == "Failed").await;
    let t = status_of(&p, "main")
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(t.reason.as_deref(), Some("OOMKilled"), "{t:?}");
    assert_eq!(t.exit_code, 137);
}

/// A hostNetwork pod runs in the host's network namespace: no pod network is made and its
/// IP is the node's.
#[tokio::test]
async fn host_network_pods_share_the_hosts_network() {
    let node = TestNode::start().await;
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    create(
        &node,
        pod(
            "hostnet",
            json!({"hostNetwork": true, "restartPolicy": "Never",
                   "containers": [sh("main", "readlink /proc/self/ns/net")]}),
        ),
    )
    .await;
    let p = wait_for(&node, "hostnet", "hostnet Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(
        p.status.as_ref().unwrap().pod_ip.as_deref(),
        Some("127.0.0.1")
    );
    // The host's network namespace.
    wait_log(
        &node,
        &p,
        "main",
        0,
        &format!("{}\n", host_netns.to_str().unwrap()),
    )
    .await;
    let netns = node.data_dir().join("network").join("netns");
    let made = std::fs::read_dir(&netns).map(|d| d.count()).unwrap_or(0);
    assert_eq!(made, 0, "no pod network namespace for a hostNetwork pod");
}

/// Probes drive readiness and restarts: a readiness probe gates Ready until a file exists;
/// a failing liveness probe restarts the container (Unhealthy and Killing events); a
/// startup probe holds the others back until it passes; preStop runs before SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let node = TestNode::start().await;
    create(
        &node,
        pod(
            "probed",
            json!({"containers": [{
                "name": "main",
                "image": IMAGE,
                "command": ["sh", "-c", "mkdir -p /www; echo ok > /www/index.html; (sleep 2; touch /tmp/ready) & exec httpd -f -p 8080 -h /www"],
                "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1},
                "livenessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
                "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
            }]}),
        ),
    )
    .await;
    let p = wait_for(&node, "probed", "Running but not ready", |p| {
        phase(p) == "Running" && status_of(p, "main").is_some_and(|c| c.started == Some(true))
    })
    .await;
    assert_eq!(
        condition(&p, "Ready"),
        "False",
        "not ready before /tmp/ready exists"
    );
    let p = wait_for(&node, "probed", "Ready", |p| {
        condition(p, "Ready") == "True"
    })
    .await;
    assert_eq!(status_of(&p, "main").unwrap().restart_count, 0);

    create(
        &node,
        pod(
            "unhealthy",
            json!({"terminationGracePeriodSeconds": 2, "containers": [{
                "name": "main",
                "image": IMAGE,
                "command": ["sh", "-c", "touch /tmp/alive; while true; do sleep 0.1; done"],
                "livenessProbe": {"exec": {"command": ["sh", "-c", "test -f /tmp/alive && rm /tmp/alive"]},
                                  "periodSeconds": 1, "failureThreshold": 2},
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop > /proc/1/fd/1"]}}}
            }]}),
        ),
    )
    .await;
    // The first run removes the file; the next two fail: restart.
    let p = wait_for(&node, "unhealthy", "a restart after failed liveness", |p| {
        status_of(p, "main").is_some_and(|c| c.restart_count >= 1)
    })
    .await;
    // preStop ran before the stop.
    wait_log(&node, &p, "main", 0, "prestop\n").await;
    let messages = events_about(&node, "unhealthy").await;
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Unhealthy Liveness probe failed: ")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m == "Killing Container main failed liveness probe, will be restarted"),
        "{messages:?}"
    );
}

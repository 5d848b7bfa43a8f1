//! The API server driven by the real kubectl binary (Debian's `kubectl`, installed by
//! scripts/setup): discovery, create/apply of multi-document files, get in several output
//! formats, watch, describe, label, annotate, scale, the three patch types and deletion.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/kubectl.rs"]
mod kubectl_support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use kubectl_support::{Kubectl, text};

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

const APP: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web
  namespace: demo
  labels: {app: web}
data:
  index.html: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#;

async fn kubectl_basics(backend: Backend) {
    let server = TestServer::start(backend).await;
    let k = Kubectl::new(&server);
    let dir = tempfile::tempdir().unwrap();

    let resources = k.ok(&["api-resources"]).await;
    for line in [
        "pods",
        "po",
        "deployments",
        "deploy",
        "apps/v1",
        "namespaces",
        "ns",
    ] {
        assert!(resources.contains(line), "{resources}");
    }
    let ns = k.ok(&["get", "namespaces"]).await;
    assert!(ns.contains("kube-system") && ns.contains("default"), "{ns}");

    // kubectl's generator commands send protobuf bodies.
    k.ok(&["create", "namespace", "made-by-create"]).await;
    k.ok(&[
        "-n",
        "made-by-create",
        "create",
        "configmap",
        "c1",
        "--from-literal=a=b",
    ])
    .await;
    k.ok(&[
        "-n",
        "made-by-create",
        "create",
        "deployment",
        "d1",
        "--image=busybox:1.36",
        "--replicas=2",
    ])
    .await;
    let made = k
        .ok(&[
            "-n",
            "made-by-create",
            "get",
            "deploy",
            "d1",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(made, "2 busybox:1.36");
    let cm = k
        .ok(&[
            "-n",
            "made-by-create",
            "get",
            "cm",
            "c1",
            "-o",
            "jsonpath={.data.a}",
        ])
        .await;
    assert_eq!(cm, "b");

    // apply of a multi-document file (client-side apply: create, then strategic merge).
    let app = write(dir.path(), "app.yaml", APP);
    let out = k.ok(&["apply", "-f", &app]).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let again = k.ok(&["apply", "-f", &app]).await;
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
    let changed = write(
        dir.path(),
        "app2.yaml",
        &APP.replace("replicas: 3", "replicas: 4"),
    );
    let out = k.ok(&["apply", "-f", &changed]).await;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    // kubectl diff: the server's dry run of the apply; exit 0 when nothing would change,
    // 1 when something would.
    let same = k.run(&["diff", "-f", &changed]).await;
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    let six = write(
        dir.path(),
        "app6.yaml",
        &APP.replace("replicas: 3", "replicas: 6"),
    );
    let differs = k.run(&["diff", "-f", &six]).await;
    assert_eq!(differs.status.code(), Some(1), "{}", text(&differs));
    let shown = String::from_utf8_lossy(&differs.stdout);
    assert!(
        shown.contains("-  replicas: 4") && shown.contains("+  replicas: 6"),
        "{shown}"
    );

    // Server-side apply: field ownership, conflicts between managers, force, and the
    // server-side diff.
    let ssa = write(
        dir.path(),
        "ssa.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: demo\ndata:\n  a: \"1\"\n",
    );
    let out = k.ok(&["apply", "--server-side", "-f", &ssa]).await;
    assert!(out.contains("serverside-applied"), "{out}");
    let ssa2 = write(
        dir.path(),
        "ssa2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: demo\ndata:\n  a: \"2\"\n",
    );
    let conflict = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &ssa2,
        ])
        .await;
    assert!(!conflict.status.success(), "{}", text(&conflict));
    assert!(
        String::from_utf8_lossy(&conflict.stderr).contains("conflict with \"kubectl\""),
        "{}",
        text(&conflict)
    );
    let differs = k
        .run(&[
            "diff",
            "--server-side",
            "--force-conflicts",
            "--field-manager=other",
            "-f",
            &ssa2,
        ])
        .await;
    assert_eq!(differs.status.code(), Some(1), "{}", text(&differs));
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &ssa2,
    ])
    .await;
    let a = k
        .ok(&["-n", "demo", "get", "cm", "ssa", "-o", "jsonpath={.data.a}"])
        .await;
    assert_eq!(a, "2");
    let same = k
        .run(&[
            "diff",
            "--server-side",
            "--field-manager=other",
            "-f",
            &ssa2,
        ])
        .await;
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    let managers = k
        .ok(&[
            "-n",
            "demo",
            "get",
            "cm",
            "ssa",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert!(managers.contains("other"), "{managers}");

    let replicas = k
        .ok(&[
            "-n",
            "demo",
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "4");

    // kubectl validates through the server (fieldValidation=Strict): unknown fields are
    // refused with upstream's message; explain reads the OpenAPI v3 schemas.
    let bogus = write(
        dir.path(),
        "bogus.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bogus\n  namespace: demo\nbogus: 1\n",
    );
    let out = k.run(&["apply", "-f", &bogus]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("strict decoding error: unknown field \"bogus\""),
        "{}",
        text(&out)
    );
    let explained = k.ok(&["explain", "pod.spec.containers"]).await;
    assert!(
        explained.contains("KIND:       Pod") && explained.contains("image"),
        "{explained}"
    );

    let yaml = k
        .ok(&["-n", "demo", "get", "configmap", "web", "-o", "yaml"])
        .await;
    assert!(
        yaml.contains("index.html: hello") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let wide = k
        .ok(&["-n", "demo", "get", "deploy,svc,cm", "-o", "wide"])
        .await;
    assert!(wide.contains("web"), "{wide}");

    k.ok(&["-n", "demo", "label", "cm", "web", "tier=front"])
        .await;
    k.ok(&["-n", "demo", "annotate", "cm", "web", "note=hi"])
        .await;
    let selected = k
        .ok(&["-n", "demo", "get", "cm", "-l", "tier=front", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "configmap/web");

    k.ok(&["-n", "demo", "scale", "deploy", "web", "--replicas=2"])
        .await;
    k.ok(&[
        "-n",
        "demo",
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}"#,
    ])
    .await;
    k.ok(&[
        "-n",
        "demo",
        "patch",
        "cm",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"m":"1"}}"#,
    ])
    .await;
    k.ok(&[
        "-n",
        "demo",
        "patch",
        "cm",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
    ])
    .await;
    let d = k.ok(&["-n", "demo", "get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"]).await;
    assert_eq!(d, "2 busybox:1.37 8080", "strategic merge keeps the port");
    let data = k
        .ok(&[
            "-n",
            "demo",
            "get",
            "cm",
            "web",
            "-o",
            "jsonpath={.data.m}{.data.j}",
        ])
        .await;
    assert_eq!(data, "12");

    let described = k.ok(&["-n", "demo", "describe", "cm", "web"]).await;
    assert!(described.contains("tier=front"), "{described}");

    // A watch sees a change made while it runs.
    let mut watch = k
        .command(&[
            "-n",
            "demo",
            "get",
            "cm",
            "-w",
            "--output-watch-events",
            "--request-timeout=5s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    k.ok(&[
        "-n",
        "demo",
        "create",
        "-f",
        &write(
            dir.path(),
            "w.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\n",
        ),
    ])
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = watch.kill();
    let watched = tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap())
        .await
        .unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout).into_owned();
    assert!(
        watched.contains("ADDED") && watched.contains("watched"),
        "{watched}"
    );

    let out = k
        .ok(&[
            "-n",
            "demo",
            "delete",
            "deploy",
            "web",
            "--cascade=foreground",
            "--wait=false",
        ])
        .await;
    assert!(out.contains("deleted"), "{out}");
    k.ok(&["-n", "demo", "delete", "cm", "web"]).await;
    let left = k.run(&["-n", "demo", "get", "cm", "web"]).await;
    assert!(
        !left.status.success() && String::from_utf8_lossy(&left.stderr).contains("NotFound"),
        "{}",
        text(&left)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_on_embedded_store() {
    kubectl_basics(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_on_etcd() {
    kubectl_basics(Backend::Etcd).await;
}

//! Hostile and careless input to GitOps sources, end to end against a real API server:
//! credentials in a git URL never reach a ManifestSource's status, an Event or the output of
//! `moor diff` / `moor apply`, and a Secret's values never show in a diff or in the error
//! of a failed apply — whatever the spelling (`data`, `stringData`, the copy client-side
//! `kubectl apply` keeps in an annotation).

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::path::Path;
use std::process::Command;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use moor::api::manifest_source::ManifestSource;
use moor::gitops::controller::{SourceController, manifest_source_resource};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The token every test hides somewhere and then looks for everywhere.
const TOKEN: &str = "secret-token";

/// Run the moor binary; its exit code and stdout + stderr together.
fn moor(args: &[&str], kubeconfig: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run moor");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

struct Env {
    server: TestServer,
    client: Client,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        let server = TestServer::start(Backend::Embedded).await;
        let client = server.client();
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let controller = SourceController::new(client.clone(), dir.path().join("cache"));
        tokio::spawn(controller.run(shutdown.clone()));
        Env {
            server,
            client,
            shutdown,
            dir,
        }
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("kubeconfig.yaml");
        if !path.exists() {
            moor::cli::server::write_kubeconfig(&path, &self.server.url).unwrap();
        }
        path
    }

    async fn add_source(&self, name: &str, spec: Value) {
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &manifest_source_resource());
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "moor.dev/v1alpha1",
            "kind": "ManifestSource",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
    }

    async fn source(&self, name: &str) -> ManifestSource {
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &manifest_source_resource());
        let obj = api.get(name).await.unwrap();
        serde_json::from_value(serde_json::to_value(obj).unwrap()).unwrap()
    }

    /// Every Event in the cluster, as one JSON text.
    async fn events(&self) -> String {
        let api: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::Event>(&()),
        );
        let list = api.list(&ListParams::default()).await.unwrap();
        serde_json::to_string(&list.items).unwrap()
    }

    /// Waits until the source's Ready condition has `reason`; its status as JSON text.
    async fn wait_reason(&self, name: &str, reason: &str) -> String {
        eventually_ok!(format!("source {name} with reason {reason}"), {
            let source = self.source(name).await;
            let status = source.status.unwrap_or_default();
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            match ready {
                Some(c) if c.reason == reason => Ok(serde_json::to_string(&status).unwrap()),
                other => Err(format!("{other:?}")),
            }
        })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_git_source_never_shows_its_credentials() {
    let env = Env::start().await;
    // Port 1 on loopback refuses connections: the fetch fails at once.
    let urls = [
        format!("https://user:{TOKEN}@127.0.0.1:1/org/apps.git"),
        format!("https://{TOKEN}:x-oauth-basic@127.0.0.1:1/org/apps.git"),
        format!("ssh://user:{TOKEN}@127.0.0.1:1/org/apps.git"),
    ];
    for (i, url) in urls.iter().enumerate() {
        let name = format!("leaky-{i}");
        env.add_source(&name, json!({"git": {"url": url, "branch": "main"}}))
            .await;
        let status = env.wait_reason(&name, "SourceUnavailable").await;
        assert!(!status.contains(TOKEN), "{status}");
        assert!(!status.contains("x-oauth-basic"), "{status}");
        assert!(status.contains("***@127.0.0.1:1/org/apps.git"), "{status}");
        // The cause is there, not just "failed".
        assert!(status.contains("fetching branch"), "{status}");
    }
    let events = env.events().await;
    assert!(!events.contains(TOKEN), "{events}");

    // The same URLs on the command line.
    let kubeconfig = env.kubeconfig();
    for url in &urls {
        for command in ["diff", "apply"] {
            let (code, out) = moor(&[command, "--git", url], &kubeconfig);
            assert_ne!(code, 0, "{command}: {out}");
            assert!(!out.contains(TOKEN), "{command} {url}: {out}");
            assert!(out.contains("***@127.0.0.1:1"), "{command} {url}: {out}");
        }
    }
}

const BAD_SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad\ndata:\n  password: 98765432\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_the_server_refuses_never_shows_its_value() {
    let env = Env::start().await;
    let folder = env.dir.path().join("manifests");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("bad.yaml"), BAD_SECRET).unwrap();

    env.add_source(
        "folder",
        json!({"directory": {"path": folder.to_string_lossy()}}),
    )
    .await;
    let status = env.wait_reason("folder", "InvalidRevision").await;
    // The error is there and names the place and the field...
    assert!(status.contains("bad.yaml"), "{status}");
    assert!(status.contains("data[password]"), "{status}");
    // ...but not the value the validator echoed.
    assert!(!status.contains("98765432"), "{status}");
    let events = env.events().await;
    assert!(!events.contains("98765432"), "{events}");

    let kubeconfig = env.kubeconfig();
    let dir = folder.to_str().unwrap();
    for command in ["diff", "apply"] {
        let (code, out) = moor(&[command, dir, "--source", "cli"], &kubeconfig);
        assert_ne!(code, 0, "{command}: {out}");
        assert!(out.contains("data[password]"), "{command}: {out}");
        assert!(!out.contains("98765432"), "{command}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn string_data_and_kubectls_copy_of_a_secret_are_hidden_in_diffs() {
    let env = Env::start().await;
    let kubeconfig = env.kubeconfig();
    let folder = env.dir.path().join("manifests");
    std::fs::create_dir(&folder).unwrap();

    // A Secret made earlier with client-side `kubectl apply`: the annotation holds its
    // values in clear.
    let last_applied = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db", "namespace": "default"},
        "stringData": {"password": "old-plain-value"},
    })
    .to_string();
    let existing: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": last_applied,
        }},
        "stringData": {"password": "old-plain-value"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(env.client.clone(), "default")
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();

    std::fs::write(
        folder.join("db.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: new-plain-value\n",
    )
    .unwrap();
    // A namespace created by the same revision: its Secret is checked locally, not by a
    // server dry-run, and must be masked the same.
    std::fs::write(
        folder.join("team.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: team\n\
         stringData:\n  token: team-plain-value\n",
    )
    .unwrap();

    let dir = folder.to_str().unwrap();
    for args in [vec!["diff", dir], vec!["diff", dir, "-o", "json"]] {
        let (code, out) = moor(&args, &kubeconfig);
        assert_eq!(code, 1, "{args:?}: {out}");
        // Both Secrets are in the plan (text: `~ v1 Secret default/db`, JSON: their names),
        // the kubectl copy among the diff's context lines.
        for name in ["db", "api", "last-applied-configuration: (hidden)"] {
            assert!(out.contains(name), "{args:?}: {name} missing: {out}");
        }
        for value in [
            "old-plain-value",
            "new-plain-value",
            "team-plain-value",
            // Their base64 spellings.
            "b2xkLXBsYWluLXZhbHVl",
            "bmV3LXBsYWluLXZhbHVl",
            "dGVhbS1wbGFpbi12YWx1ZQ",
        ] {
            assert!(!out.contains(value), "{args:?} shows {value}: {out}");
        }
    }
    let (code, out) = moor(&["apply", dir], &kubeconfig);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("plain-value"), "{out}");
}

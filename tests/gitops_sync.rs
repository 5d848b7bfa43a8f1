//! The source controller against a real API server (embedded store): folders and git
//! repositories made by the tests, followed into the store; invalid revisions, hand edits,
//! ownership, the prune-everything guard and immutable fields.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/wait.rs"]
#[macro_use]
mod wait;

use std::path::{Path, PathBuf};
use std::time::Duration;

use apiserver_support::{Backend, TestServer};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use moor::api::manifest_source::ManifestSource;
use moor::gitops::controller::{SourceController, manifest_source_resource};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Env {
    _server: TestServer,
    client: Client,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        Env::start_on(Backend::Embedded).await
    }

    async fn start_on(backend: Backend) -> Env {
        let server = TestServer::start(backend).await;
        let client = server.client();
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let controller = SourceController::new(client.clone(), dir.path().join("cache"));
        tokio::spawn(controller.run(shutdown.clone()));
        Env {
            _server: server,
            client,
            shutdown,
            dir,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Written beside and renamed, as editors do, so the watcher never reads half a file.
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
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

    async fn patch_source(&self, name: &str, spec: Value) {
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &manifest_source_resource());
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .unwrap();
    }

    async fn source(&self, name: &str) -> ManifestSource {
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &manifest_source_resource());
        let obj = api.get(name).await.unwrap();
        serde_json::from_value(serde_json::to_value(obj).unwrap()).unwrap()
    }

    async fn config_map(&self, ns: &str, name: &str) -> Option<ConfigMap> {
        Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap()
    }

    async fn namespace(&self, name: &str) -> Option<Namespace> {
        Api::<Namespace>::all(self.client.clone())
            .get_opt(name)
            .await
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config_map_yaml(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

fn data(cm: &Option<ConfigMap>) -> Option<String> {
    cm.as_ref()?.data.as_ref()?.get("key").cloned()
}

fn deployment_yaml(name: &str, replicas: i32, app: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  \
         selector:\n    matchLabels: {{app: {app}}}\n  template:\n    metadata:\n      labels: {{app: {app}}}\n    \
         spec:\n      containers:\n      - name: web\n        image: busybox\n"
    )
}

async fn dir_source(env: &Env, name: &str) {
    std::fs::create_dir_all(env.path("src")).unwrap();
    env.add_source(
        name,
        json!({"directory": {"path": env.path("src").to_string_lossy()}}),
    )
    .await;
}

#[tokio::test]
async fn a_folder_is_followed_through_create_edit_rename_and_delete() {
    folder_is_followed(Env::start().await).await;
}

#[tokio::test]
async fn a_folder_is_followed_on_etcd_too() {
    folder_is_followed(Env::start_on(Backend::Etcd).await).await;
}

async fn folder_is_followed(env: Env) {
    env.write("src/keep.yaml", &config_map_yaml("keep", "k"));
    env.write("src/a.yaml", &config_map_yaml("one", "v1"));
    dir_source(&env, "apps").await;
    eventually_some!(
        "one created",
        data(&env.config_map("default", "one").await).filter(|v| v == "v1")
    );

    env.write("src/a.yaml", &config_map_yaml("one", "v2"));
    eventually_some!(
        "one edited",
        data(&env.config_map("default", "one").await).filter(|v| v == "v2")
    );

    // A rename changes the revision but not the objects: nothing is pruned or re-created.
    let uid = env.config_map("default", "one").await.unwrap().metadata.uid;
    let before = eventually_some!("the edit recorded", {
        let status = env.source("apps").await.status.unwrap_or_default();
        (status.updated == 1).then_some(status.revision)
    });
    std::fs::create_dir_all(env.path("src/sub")).unwrap();
    std::fs::rename(env.path("src/a.yaml"), env.path("src/sub/b.yml")).unwrap();
    eventually_some!("rename synced", {
        let status = env.source("apps").await.status.unwrap_or_default();
        (status.revision != before).then_some(())
    });
    assert_eq!(
        env.config_map("default", "one").await.unwrap().metadata.uid,
        uid
    );

    std::fs::remove_file(env.path("src/sub/b.yml")).unwrap();
    eventually_some!(
        "one pruned",
        env.config_map("default", "one")
            .await
            .is_none()
            .then_some(())
    );
    assert!(env.config_map("default", "keep").await.is_some());

    // The status is written right after the prune.
    let status = eventually_some!("status after the prune", {
        let status = env.source("apps").await.status.unwrap_or_default();
        (status.pruned == 1).then_some(status)
    });
    assert_eq!(status.inventory.len(), 1);
    assert_eq!(status.inventory[0].name, "keep");
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    assert!(status.revision.unwrap().starts_with("sha256:"));
}

#[tokio::test]
async fn an_invalid_revision_applies_nothing_and_reports_every_error() {
    let env = Env::start().await;
    env.write("src/good.yaml", &config_map_yaml("good", "v1"));
    dir_source(&env, "apps").await;
    eventually_some!("good created", env.config_map("default", "good").await);
    let good_revision = eventually_some!("the first revision recorded", {
        env.source("apps").await.status.and_then(|s| s.revision)
    });

    env.write("src/good.yaml", &config_map_yaml("good", "v2"));
    env.write(
        "src/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
    );
    env.write(
        "src/widget.yaml",
        "---\n# a comment\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
    );
    env.write("src/dup.yaml", &config_map_yaml("good", "v3"));
    env.write("src/bad.yaml", &deployment_yaml("web", -1, "web"));
    env.write(
        "src/data.json",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": ConfigMap\n}\n",
    );
    let status = eventually_some!("the broken revision attempted", {
        let status = env.source("apps").await.status.unwrap_or_default();
        (status.last_attempted_revision.as_deref() != Some(good_revision.as_str())
            && status.errors.len() >= 5)
            .then_some(status)
    });
    let errors: Vec<String> = status.errors.iter().map(ToString::to_string).collect();
    let all = errors.join("\n");
    assert!(all.contains("broken.yaml:4:"), "{all}");
    assert!(all.contains("data.json:3:"), "{all}");
    assert!(all.contains("widget.yaml:3: unknown kind Widget"), "{all}");
    assert!(
        all.contains("is defined twice")
            && all.contains("dup.yaml:1")
            && all.contains("good.yaml:1"),
        "{all}"
    );
    assert!(
        all.contains("bad.yaml:1:") && all.contains("spec.replicas"),
        "{all}"
    );
    // Nothing applied: the valid edit in good.yaml waits for the whole revision to be fixed.
    assert_eq!(
        data(&env.config_map("default", "good").await).unwrap(),
        "v1"
    );
    assert_eq!(status.revision.as_deref(), Some(good_revision.as_str()));
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(condition("Ready"), "False");
    assert_eq!(condition("Stalled"), "True");

    // Drift is still corrected against the last good revision, and the status keeps
    // showing the failed one's errors.
    Api::<ConfigMap>::namespaced(env.client.clone(), "default")
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"key": "by hand"}})),
        )
        .await
        .unwrap();
    eventually_some!(
        "hand edit put back to the last good revision",
        data(&env.config_map("default", "good").await).filter(|v| v == "v1")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_drift = env.source("apps").await.status.unwrap();
    assert_eq!(after_drift.errors, status.errors);
    assert_eq!(
        after_drift.last_attempted_revision,
        status.last_attempted_revision
    );

    for file in [
        "broken.yaml",
        "widget.yaml",
        "dup.yaml",
        "bad.yaml",
        "data.json",
    ] {
        std::fs::remove_file(env.path(&format!("src/{file}"))).unwrap();
    }
    eventually_some!(
        "the fixed revision applied",
        data(&env.config_map("default", "good").await).filter(|v| v == "v2")
    );
}

#[tokio::test]
async fn hand_edits_are_put_back_unless_suspended() {
    let env = Env::start().await;
    env.write("src/web.yaml", &deployment_yaml("web", 3, "web"));
    env.write("src/cm.yaml", &config_map_yaml("conf", "v1"));
    dir_source(&env, "apps").await;
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), "default");
    eventually_some!("web created", deployments.get_opt("web").await.unwrap());

    // `kubectl scale`: the scale subresource, another field manager.
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    eventually_some!("replicas put back", {
        let d = deployments.get("web").await.unwrap();
        (d.spec.and_then(|s| s.replicas) == Some(3)).then_some(())
    });

    // `kubectl edit` of a ConfigMap, then a deletion by hand.
    Api::<ConfigMap>::namespaced(env.client.clone(), "default")
        .patch(
            "conf",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"key": "edited"}})),
        )
        .await
        .unwrap();
    eventually_some!(
        "edit put back",
        data(&env.config_map("default", "conf").await).filter(|v| v == "v1")
    );
    Api::<ConfigMap>::namespaced(env.client.clone(), "default")
        .delete("conf", &DeleteParams::default())
        .await
        .unwrap();
    eventually_some!(
        "deleted object re-created",
        env.config_map("default", "conf").await
    );

    env.patch_source("apps", json!({"suspend": true})).await;
    eventually_some!("suspended", {
        let status = env.source("apps").await.status.unwrap_or_default();
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "Suspended")
            .then_some(())
    });
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        deployments
            .get("web")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.replicas),
        Some(5)
    );
}

#[tokio::test]
async fn only_what_the_source_owns_is_ever_pruned() {
    let env = Env::start().await;
    // A namespace that exists before the source declares it, and one the source creates.
    Api::<Namespace>::all(env.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    env.write(
        "src/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: fresh\n",
    );
    env.write("src/cm.yaml", &config_map_yaml("mine", "v1"));
    env.write("src/keep.yaml", &config_map_yaml("keep", "v1"));
    dir_source(&env, "apps").await;
    eventually_some!("fresh created", env.namespace("fresh").await);
    eventually_some!("mine created", env.config_map("default", "mine").await);
    // Someone else's ConfigMap next to the source's.
    Api::<ConfigMap>::namespaced(env.client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "theirs"}, "data": {"a": "b"}}))
                .unwrap(),
        )
        .await
        .unwrap();

    std::fs::remove_file(env.path("src/ns.yaml")).unwrap();
    std::fs::remove_file(env.path("src/cm.yaml")).unwrap();
    eventually_some!(
        "mine pruned",
        env.config_map("default", "mine")
            .await
            .is_none()
            .then_some(())
    );
    eventually_some!("fresh pruned", {
        match env.namespace("fresh").await {
            None => Some(()),
            Some(ns) if ns.metadata.deletion_timestamp.is_some() => Some(()),
            Some(_) => None,
        }
    });
    assert!(env.config_map("default", "theirs").await.is_some());
    let team = env
        .namespace("team")
        .await
        .expect("a namespace the source did not create stays");
    assert!(team.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn a_revision_that_would_prune_everything_is_refused_unless_allowed() {
    let env = Env::start().await;
    env.write("src/a.yaml", &config_map_yaml("a", "1"));
    env.write("src/b.yaml", &config_map_yaml("b", "1"));
    dir_source(&env, "apps").await;
    eventually_some!("b created", env.config_map("default", "b").await);

    std::fs::remove_file(env.path("src/a.yaml")).unwrap();
    std::fs::remove_file(env.path("src/b.yaml")).unwrap();
    let status = eventually_ok!("the empty revision refused", {
        let status = env.source("apps").await.status.unwrap_or_default();
        if status.errors.is_empty() {
            Err(status)
        } else {
            Ok(status)
        }
    });
    assert!(
        status.errors[0]
            .message
            .contains("refusing to prune all 2 objects"),
        "{:?}",
        status.errors
    );
    assert!(env.config_map("default", "a").await.is_some());
    assert!(env.config_map("default", "b").await.is_some());

    env.patch_source("apps", json!({"allowEmpty": true})).await;
    eventually_some!("everything pruned once allowed", {
        (env.config_map("default", "a").await.is_none()
            && env.config_map("default", "b").await.is_none())
        .then_some(())
    });
}

#[tokio::test]
async fn an_immutable_field_change_is_reported_and_replaced_only_on_opt_in() {
    let env = Env::start().await;
    env.write("src/web.yaml", &deployment_yaml("web", 1, "web"));
    dir_source(&env, "apps").await;
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), "default");
    let first = eventually_some!("web created", deployments.get_opt("web").await.unwrap());

    env.write("src/web.yaml", &deployment_yaml("web", 1, "web2"));
    let status = eventually_some!("the selector change refused", {
        let status = env.source("apps").await.status.unwrap_or_default();
        (!status.errors.is_empty()).then_some(status)
    });
    let message = status.errors[0].to_string();
    assert!(message.starts_with("web.yaml:1:"), "{message}");
    assert!(
        message.contains("immutable") && message.contains("moor.dev/replace"),
        "{message}"
    );

    let opted_in = deployment_yaml("web", 1, "web2").replace(
        "metadata:\n  name: web\n",
        "metadata:\n  name: web\n  annotations:\n    moor.dev/replace: \"true\"\n",
    );
    env.write("src/web.yaml", &opted_in);
    let replaced = eventually_some!("web replaced", {
        deployments
            .get_opt("web")
            .await
            .unwrap()
            .filter(|d| d.metadata.uid != first.metadata.uid)
    });
    let labels = replaced.spec.unwrap().selector.match_labels.unwrap();
    assert_eq!(labels["app"], "web2");
}

// ---------------------------------------------------------------------------------------
// git
// ---------------------------------------------------------------------------------------

/// Write `files` (path → contents; None deletes) into the work tree of `repo` and commit
/// them on the current branch.
fn commit(repo: &git2::Repository, files: &[(&str, Option<&str>)], message: &str) -> git2::Oid {
    let workdir = repo.workdir().unwrap().to_path_buf();
    let mut index = repo.index().unwrap();
    for (path, contents) in files {
        let full = workdir.join(path);
        match contents {
            Some(text) => {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, text).unwrap();
                index.add_path(Path::new(path)).unwrap();
            }
            None => {
                std::fs::remove_file(&full).unwrap();
                index.remove_path(Path::new(path)).unwrap();
            }
        }
    }
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let signature = git2::Signature::now("test", "test@example.com").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        message,
        &tree,
        &parents,
    )
    .unwrap()
}

async fn wait_revision(env: &Env, name: &str, commit: git2::Oid) -> ManifestSource {
    let wanted = commit.to_string();
    eventually_ok!(format!("revision {wanted} applied"), {
        let source = env.source(name).await;
        if source.status.as_ref().and_then(|s| s.revision.as_deref()) == Some(wanted.as_str()) {
            Ok(source)
        } else {
            Err(source.status)
        }
    })
}

#[tokio::test]
async fn a_git_repository_is_followed_commit_by_commit() {
    let env = Env::start().await;
    let repo_dir = env.path("repo");
    let repo = git2::Repository::init(&repo_dir).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let c1 = commit(
        &repo,
        &[
            ("deploy/a.yaml", Some(&config_map_yaml("a", "1"))),
            ("deploy/b.yaml", Some(&config_map_yaml("b", "1"))),
            ("README.md", Some("not a manifest")),
        ],
        "first",
    );
    env.add_source(
        "repo",
        json!({"git": {"url": repo_dir.to_string_lossy(), "branch": "main", "path": "deploy", "interval": "1h"}}),
    )
    .await;
    wait_revision(&env, "repo", c1).await;
    assert_eq!(data(&env.config_map("default", "a").await).unwrap(), "1");

    // A new commit applies through the refs watch, not the (hour-long) poll.
    let c2 = commit(
        &repo,
        &[("deploy/a.yaml", Some(&config_map_yaml("a", "2")))],
        "edit",
    );
    wait_revision(&env, "repo", c2).await;
    assert_eq!(data(&env.config_map("default", "a").await).unwrap(), "2");

    let c3 = commit(&repo, &[("deploy/b.yaml", None)], "delete b");
    wait_revision(&env, "repo", c3).await;
    assert!(env.config_map("default", "b").await.is_none());

    // Revert: b comes back.
    let c4 = commit(
        &repo,
        &[("deploy/b.yaml", Some(&config_map_yaml("b", "1")))],
        "revert",
    );
    wait_revision(&env, "repo", c4).await;
    assert!(env.config_map("default", "b").await.is_some());

    // Force-push: main moves to a commit that is not a descendant of what was applied.
    let c1_commit = repo.find_commit(c1).unwrap();
    repo.reset(c1_commit.as_object(), git2::ResetType::Hard, None)
        .unwrap();
    let c5 = commit(
        &repo,
        &[("deploy/a.yaml", Some(&config_map_yaml("a", "rewritten")))],
        "rewrite",
    );
    wait_revision(&env, "repo", c5).await;
    assert_eq!(
        data(&env.config_map("default", "a").await).unwrap(),
        "rewritten"
    );

    // Switching the source to another branch.
    repo.branch("dev", &repo.find_commit(c5).unwrap(), false)
        .unwrap();
    repo.set_head("refs/heads/dev").unwrap();
    let c6 = commit(
        &repo,
        &[("deploy/c.yaml", Some(&config_map_yaml("c", "dev")))],
        "dev only",
    );
    repo.set_head("refs/heads/main").unwrap();
    env.patch_source("repo", json!({"git": {"branch": "dev"}}))
        .await;
    wait_revision(&env, "repo", c6).await;
    assert_eq!(data(&env.config_map("default", "c").await).unwrap(), "dev");
}

#[tokio::test]
async fn a_missing_git_path_is_an_error_not_a_prune() {
    let env = Env::start().await;
    let repo_dir = env.path("repo");
    let repo = git2::Repository::init(&repo_dir).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let c1 = commit(
        &repo,
        &[("deploy/a.yaml", Some(&config_map_yaml("a", "1")))],
        "first",
    );
    env.add_source(
        "repo",
        json!({"git": {"url": repo_dir.to_string_lossy(), "branch": "main", "path": "deploy"}}),
    )
    .await;
    wait_revision(&env, "repo", c1).await;
    // The folder moves away: the configured path is gone from the new commit.
    commit(
        &repo,
        &[
            ("deploy/a.yaml", None),
            ("manifests/a.yaml", Some(&config_map_yaml("a", "1"))),
        ],
        "move",
    );
    let status = eventually_some!("the missing path reported", {
        let status = env.source("repo").await.status.unwrap_or_default();
        status
            .errors
            .iter()
            .any(|e| e.message.contains("deploy"))
            .then_some(status)
    });
    assert!(env.config_map("default", "a").await.is_some(), "{status:?}");
}

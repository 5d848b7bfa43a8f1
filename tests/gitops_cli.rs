//! `moor diff`, `moor apply` and `moor server --manifests/--git` as a user runs them: the
//! real binary against a real API server, and kubectl reading the sources' state.

#[path = "support/process.rs"]
mod process;
use process::free_port;

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use apiserver_support::{Backend, TestServer};

/// Run the moor binary; returns its exit code, stdout and stderr.
fn moor(args: &[&str], kubeconfig: &Path) -> (i32, String, String) {
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
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, rel: &str, text: &str) {
    std::fs::write(dir.join(rel), text).unwrap();
}

const CONFIG_MAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  index.html: hello\n";
/// `aHVudGVyMg==` is base64 of `hunter2`.
const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  user: YWRtaW4=\n  password: aHVudGVyMg==\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  \
    selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    \
    spec:\n      containers:\n      - name: web\n        image: busybox\n";

#[tokio::test(flavor = "multi_thread")]
async fn diff_and_apply_show_the_plan_with_exit_codes_and_hidden_secrets() {
    let server = TestServer::start(Backend::Embedded).await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig.yaml");
    moor::cli::server::write_kubeconfig(&kubeconfig, &server.url).unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "web.yaml", CONFIG_MAP);
    write(&dir, "db.yaml", SECRET);
    write(&dir, "deploy.yaml", DEPLOYMENT);
    let d = dir.to_str().unwrap();

    let (code, out, err) = moor(&["diff", d], &kubeconfig);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("+ v1 Secret default/db"), "{out}");
    assert!(out.contains("+ apps/v1 Deployment default/web"), "{out}");
    assert!(out.contains("+ v1 ConfigMap default/web"), "{out}");
    assert!(
        out.ends_with("Plan: 3 to create, 0 to update, 0 to prune, 0 unchanged.\n"),
        "{out}"
    );
    for secret in ["aHVudGVyMg", "hunter2", "YWRtaW4", "admin"] {
        assert!(!out.contains(secret), "secret value {secret} shown: {out}");
    }
    // The diff is computed after server-side defaulting.
    assert!(out.contains("+     progressDeadlineSeconds: 600"), "{out}");

    let (code, out, err) = moor(&["apply", d], &kubeconfig);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created v1 Secret default/db"), "{out}");
    assert!(
        out.contains("3 created, 0 updated, 0 unchanged, 0 pruned"),
        "{out}"
    );

    // Nothing changed: no diff at all, only the summary.
    let (code, out, err) = moor(&["diff", d], &kubeconfig);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "Plan: 0 to create, 0 to update, 0 to prune, 3 unchanged.\n"
        ),
        "{err}"
    );

    // A changed secret shows which key changed, never a value.
    write(&dir, "db.yaml", &SECRET.replace("aHVudGVyMg==", "czNjcjN0"));
    let (code, out, _) = moor(&["diff", d], &kubeconfig);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("~ v1 Secret default/db"), "{out}");
    assert!(out.contains("-     password: (hidden, before)"), "{out}");
    assert!(out.contains("+     password: (hidden, after)"), "{out}");
    assert!(
        !out.contains("user: (hidden, "),
        "an unchanged key is marked changed: {out}"
    );
    for secret in ["aHVudGVyMg", "czNjcjN0", "hunter2", "s3cr3t"] {
        assert!(!out.contains(secret), "secret value {secret} shown: {out}");
    }
    let (code, json, _) = moor(&["diff", d, "-o", "json"], &kubeconfig);
    assert_eq!(code, 1);
    assert!(
        !json.contains("czNjcjN0") && !json.contains("aHVudGVyMg"),
        "{json}"
    );
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(plan["summary"]["update"], 1);
    assert_eq!(plan["summary"]["unchanged"], 2);
    let secret = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "Secret")
        .unwrap();
    assert_eq!(secret["action"], "update");
    assert_eq!(secret["file"], "db.yaml");

    // A file removed: its object would be pruned.
    std::fs::remove_file(dir.join("web.yaml")).unwrap();
    let (code, out, _) = moor(&["diff", d], &kubeconfig);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "- v1 ConfigMap default/web  (prune: no longer in {d})"
        )),
        "{out}"
    );

    // An invalid document: exit 2 with the place.
    write(
        &dir,
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
    );
    let (code, out, _) = moor(&["diff", d], &kubeconfig);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("error: bad.yaml:4:"), "{out}");
    let (code, _, err) = moor(&["apply", d], &kubeconfig);
    assert_eq!(code, 1);
    assert!(err.contains("nothing applied"), "{err}");
    assert!(
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "configmap", "web"])
            .output()
            .unwrap()
            .status
            .success(),
        "an invalid revision must not prune anything"
    );

    // No server: exit 2, not a hang.
    let dead = tmp.path().join("dead.yaml");
    moor::cli::server::write_kubeconfig(&dead, "http://127.0.0.1:1").unwrap();
    std::fs::remove_file(dir.join("bad.yaml")).unwrap();
    let (code, _, err) = moor(&["diff", d], &dead);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("error:"), "{err}");
}

/// A `moor server` child, stopped (SIGTERM) when dropped — also when a test fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Start `moor server` with extra arguments; wait for its "source" line.
fn start_server(data_dir: &Path, port: u16, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moor"))
        .args(["server", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
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
        if line.starts_with("source") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server(child)
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl")
}

fn wait_until(what: &str, mut check: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn server_manifests_flag_creates_a_source_kubectl_can_show() {
    let tmp = tempfile::tempdir().unwrap();
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    write(&manifests, "web.yaml", CONFIG_MAP);
    write(&manifests, "deploy.yaml", DEPLOYMENT);
    let data = tmp.path().join("data");
    let _server = start_server(
        &data,
        free_port(),
        &["--manifests", manifests.to_str().unwrap()],
    );
    let kubeconfig = data.join("kubeconfig.yaml");

    let table = wait_until("the source to be ready", || {
        let out = kubectl(&kubeconfig, &["get", "manifestsources"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("True").then_some(text)
    });
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "KIND", "REVISION", "READY", "APPLIED", "PRUNED", "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["manifests", "dir"]);
    assert_eq!(row[2].len(), 7, "{table}");
    assert_eq!(&row[3..6], ["True", "2", "0"]);

    let out = kubectl(
        &kubeconfig,
        &["get", "deploy", "web", "-o", "jsonpath={.metadata.labels}"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("moor.dev/source"));
    let out = kubectl(&kubeconfig, &["describe", "manifestsource", "manifests"]);
    let described = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for expected in ["Directory:", "Inventory:", "Ready", "Stalled"] {
        assert!(
            described.contains(expected),
            "{expected} missing: {described}"
        );
    }
    // kubectl explain reads the served schema.
    let out = kubectl(&kubeconfig, &["explain", "manifestsource.spec.git"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("interval"),
        "{out:?}"
    );

    // `moor diff` finds the source by its folder: nothing to do.
    let (code, out, err) = moor(&["diff", manifests.to_str().unwrap()], &kubeconfig);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn server_git_flag_follows_a_local_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = git2::Repository::init(&repo_dir).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    std::fs::create_dir_all(repo_dir.join("deploy")).unwrap();
    std::fs::write(repo_dir.join("deploy/web.yaml"), CONFIG_MAP).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("deploy/web.yaml")).unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let me = git2::Signature::now("test", "test@example.com").unwrap();
    let commit = repo
        .commit(Some("HEAD"), &me, &me, "first", &tree, &[])
        .unwrap();

    let data = tmp.path().join("data");
    let _server = start_server(
        &data,
        free_port(),
        &[
            "--git",
            repo_dir.to_str().unwrap(),
            "--ref",
            "main",
            "--path",
            "deploy",
        ],
    );
    let kubeconfig = data.join("kubeconfig.yaml");
    let short = &commit.to_string()[..7];
    wait_until("the commit to be applied", || {
        let out = kubectl(&kubeconfig, &["get", "manifestsources"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains(short) && text.contains("git")).then_some(text)
    });
    let out = kubectl(&kubeconfig, &["get", "configmap", "web"]);
    assert!(out.status.success(), "{out:?}");

    // `moor diff --git` reads the same commit into its own temporary mirror: no change.
    let repo_arg = repo_dir.to_str().unwrap();
    let (code, out, err) = moor(
        &[
            "diff", "--git", repo_arg, "--ref", "main", "--path", "deploy",
        ],
        &kubeconfig,
    );
    assert_eq!(code, 0, "{out}{err}");
    // A wrong ref is an error (exit 2), not an empty revision that would prune everything.
    let (code, _, err) = moor(
        &[
            "diff", "--git", repo_arg, "--ref", "nope", "--path", "deploy",
        ],
        &kubeconfig,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
}

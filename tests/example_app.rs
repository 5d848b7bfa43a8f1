//! The example app `moor up --manifests manifests` runs out of the box: its image, built by
//! `scripts/example-image`, is reproducible, imports into a real private containerd with
//! `moor images import` and runs busybox httpd there; and the files in `manifests/` agree
//! with each other and with that image, pass the API server's dry-run through `moor diff`,
//! apply with `moor apply`, and leave nothing to change afterwards.

#[path = "support/apiserver.rs"]
mod apiserver_support;
#[path = "support/containerd.rs"]
mod containerd_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use apiserver_support::{Backend, TestServer};
use containerd_support::ContainerdInstance;
use serde::Deserialize;
use serde_json::Value;

/// The image the manifests run and the script builds.
const IMAGE: &str = "moor.local/web:1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn example_image(out: Option<&Path>, data_dir: &Path) -> String {
    let mut cmd = Command::new(repo().join("scripts/example-image"));
    cmd.env("MOOR_DATA_DIR", data_dir);
    if let Some(out) = out {
        cmd.arg(out);
    }
    check(
        "scripts/example-image",
        cmd.output().expect("run scripts/example-image"),
    )
}

#[test]
fn the_example_image_is_reproducible_imports_and_serves_http() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("web.tar");
    let said = example_image(Some(&archive), tmp.path());
    assert!(
        said.starts_with(&format!("wrote {}: image {IMAGE} ", archive.display())),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "one line: {said}");

    // Without an argument it writes where `moor up --data-dir` imports from; byte for
    // byte the same archive, so the image's digest is stable.
    let data_dir = tmp.path().join("data");
    example_image(None, &data_dir);
    let default = data_dir.join("agent/images/moor-web.tar");
    let first = std::fs::read(&archive).unwrap();
    assert!(
        first == std::fs::read(&default).unwrap(),
        "two builds of the example image differ"
    );
    let leftovers: Vec<_> = std::fs::read_dir(default.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["moor-web.tar"], "only the archive is left");

    // The layer: a single uncompressed tar whose digest is the config's diff ID.
    let mut outer = tar::Archive::new(first.as_slice());
    let mut files = std::collections::HashMap::new();
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        files.insert(path, bytes);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([IMAGE]));
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = &files[layers[0].as_str().unwrap()];
    let config: Value =
        serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()]).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str().unwrap(),
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(layer))
        )
    );
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    let mut layer_tar = tar::Archive::new(layer.as_slice());
    let mut tmp_mode = None;
    for entry in layer_tar.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!(header.uid().unwrap(), 0);
        assert_eq!(header.mtime().unwrap(), 0);
        // Path equality compares components: "tmp/" is "tmp".
        if entry.path().unwrap() == Path::new("tmp") {
            tmp_mode = Some(header.mode().unwrap() & 0o7777);
        }
    }
    assert_eq!(
        tmp_mode,
        Some(0o1777),
        "/tmp is in the layer with mode 1777"
    );

    // Imported into a real containerd by moor, and run there.
    let containerd = ContainerdInstance::start();
    let moor = |args: &[&str]| {
        check(
            &format!("moor {args:?}"),
            Command::new(env!("CARGO_BIN_EXE_moor"))
                .args(args)
                .arg("--containerd-socket")
                .arg(containerd.socket())
                .output()
                .expect("run moor"),
        )
    };
    let imported = moor(&["images", "import", archive.to_str().unwrap()]);
    assert!(imported.contains(IMAGE), "{imported}");
    let listed = moor(&["images", "ls"]);
    assert!(listed.lines().any(|l| l.starts_with(IMAGE)), "{listed}");

    // What the example Deployment runs: httpd serving a folder, asked over the container's
    // own loopback.
    let served = containerd
        .ctr(
            "moor",
            &[
                "run",
                "--rm",
                IMAGE,
                "example-app-test",
                "sh",
                "-c",
                "mkdir -p /tmp/www && echo served >/tmp/www/index.html && \
                 httpd -p 127.0.0.1:8080 -h /tmp/www && \
                 wget -qO- http://127.0.0.1:8080/ && ls -d /var/www",
            ],
        )
        .unwrap_or_else(|e| panic!("ctr run {IMAGE}: {e}"));
    assert_eq!(served, "served\n/var/www\n");
}

/// Every document of every manifest file, by kind.
fn manifests() -> Vec<(String, Value)> {
    let dir = repo().join("manifests");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("manifests/{name} does not parse: {e}"));
            if value.is_null() {
                continue;
            }
            for field in ["apiVersion", "kind"] {
                assert!(value[field].is_string(), "manifests/{name}: no {field}");
            }
            assert!(value["metadata"]["name"].is_string(), "manifests/{name}");
            // The app goes wherever the source's default namespace says.
            assert!(
                value["metadata"]["namespace"].is_null(),
                "manifests/{name} names a namespace"
            );
            out.push((value["kind"].as_str().unwrap().to_owned(), value));
        }
    }
    out
}

fn one<'a>(objects: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<_> = objects.iter().filter(|(k, _)| k == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in manifests/");
    &found[0].1
}

#[test]
fn the_example_manifests_fit_together() {
    let objects = manifests();
    let deployment = one(&objects, "Deployment");
    let service = one(&objects, "Service");
    let config_map = one(&objects, "ConfigMap");
    let template = &deployment["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["image"], IMAGE);
    assert_eq!(container["imagePullPolicy"], "IfNotPresent", "never pulled");
    let volume = template["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == config_map["metadata"]["name"])
        .expect("the ConfigMap is a volume of the Deployment");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap volume is mounted");
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let served = command[command.iter().position(|&a| a == "-h").unwrap() + 1];
    assert_eq!(mount["mountPath"], served, "httpd serves the ConfigMap");
    assert!(config_map["data"]["index.html"].is_string());
    // The Service reaches the pods: its selector is in the template's labels and its
    // target port is the container's.
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &template["metadata"]["labels"][key], value,
            "selector {key}"
        );
    }
    let target = &service["spec"]["ports"][0]["targetPort"];
    assert!(
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| &p["containerPort"] == target || &p["name"] == target),
        "targetPort {target} is a port of the container"
    );
}

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

#[tokio::test(flavor = "multi_thread")]
async fn the_example_manifests_pass_the_servers_dry_run_and_apply() {
    let server = TestServer::start(Backend::Embedded).await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig.yaml");
    moor::cli::server::write_kubeconfig(&kubeconfig, &server.url).unwrap();
    let dir = repo().join("manifests");
    let dir = dir.to_str().unwrap();
    let count = manifests().len();

    // `moor diff` dry-runs every object through the server's admission (defaults and
    // validation): exit 1, everything to create, no error. The folder's README is not read.
    // (The server runs on the runtime's other worker while this one waits for moor.)
    let (code, out) = moor(&["diff", dir], &kubeconfig);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "Plan: {count} to create, 0 to update, 0 to prune, 0 unchanged."
        )),
        "{out}"
    );

    let (code, out) = moor(&["apply", dir], &kubeconfig);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{count} created, 0 updated, 0 unchanged, 0 pruned"
        )),
        "{out}"
    );

    // Applied as written: nothing the server defaults makes the manifests drift.
    let (code, out) = moor(&["diff", dir], &kubeconfig);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "Plan: 0 to create, 0 to update, 0 to prune, {count} unchanged."
        )),
        "{out}"
    );
    server.stop().await;
}

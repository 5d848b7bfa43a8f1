//! The node agent's image store against a real private containerd (and, for pulls, a real
//! private `docker-registry`): importing OCI-layout and `docker save` archives (plain and
//! gzip), what `ctr` then sees (image records, committed snapshots named by the same chain
//! IDs containerd's own importer computes), idempotent re-imports and pulls, corrupted
//! archives failing with nothing recorded, a folder of archives with one bad one, the
//! `moor images` command, and pulls — anonymous, from a multi-arch index, of a missing tag,
//! and with basic auth.

#[path = "support/containerd.rs"]
mod containerd_support;
#[path = "support/image.rs"]
mod image_support;
#[path = "support/registry.rs"]
mod registry_support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use containerd_client::services::v1::{GetImageRequest, ListContentRequest};
use containerd_support::ContainerdInstance;
use image_support::{busybox, busybox_docker_archive, busybox_oci_archive, write_tar};
use moor::kubelet::containerd::{Containerd, NAMESPACE};
use moor::kubelet::images::{ImageError, ImageStore, RegistryAuth};
use registry_support::RegistryInstance;

async fn store(containerd: &ContainerdInstance) -> ImageStore {
    ImageStore::new(Containerd::connect(&containerd.socket()).await.unwrap())
}

fn ctr(containerd: &ContainerdInstance, args: &[&str]) -> String {
    containerd
        .ctr(NAMESPACE, args)
        .unwrap_or_else(|e| panic!("ctr {args:?}: {e}"))
}

fn image_names(containerd: &ContainerdInstance) -> Vec<String> {
    ctr(containerd, &["images", "ls", "-q"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every content blob's labels and update time, and every image's update time: what a
/// no-op re-import must leave exactly as it was.
async fn state_of(store: &ImageStore) -> (Vec<String>, HashMap<String, String>) {
    let containerd = store.containerd();
    let mut blobs = Vec::new();
    let mut stream = containerd
        .content()
        .list(containerd.request(ListContentRequest { filters: vec![] }))
        .await
        .unwrap()
        .into_inner();
    while let Some(reply) = stream.message().await.unwrap() {
        for info in reply.info {
            let mut labels: Vec<_> = info.labels.into_iter().collect();
            labels.sort();
            blobs.push(format!(
                "{} {:?} {:?}",
                info.digest, info.updated_at, labels
            ));
        }
    }
    blobs.sort();
    let mut images = HashMap::new();
    for name in store.list().await.unwrap().into_iter().map(|i| i.name) {
        let image = containerd
            .images()
            .get(containerd.request(GetImageRequest { name: name.clone() }))
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        images.insert(name, format!("{:?}", image.updated_at));
    }
    (blobs, images)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_archive_imports_unpacks_and_reimports_as_a_no_op() {
    let containerd = ContainerdInstance::start();
    let store = store(&containerd).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = busybox_oci_archive(dir.path(), "busybox");

    let names = store.import_archive(&archive).await.unwrap();
    assert_eq!(names, ["docker.io/library/busybox:latest"]);
    assert_eq!(image_names(&containerd), names);

    let info = store.get("busybox").await.unwrap().expect("image present");
    let image = busybox();
    assert_eq!(info.name, "docker.io/library/busybox:latest");
    assert_eq!(info.digest, image.manifest_digest);
    // One layer: the chain ID is its diff ID.
    assert_eq!(info.chain_id, image.diff_id);
    let config = info.config.config().as_ref().unwrap();
    assert_eq!(config.cmd().as_deref(), Some(&["sh".to_owned()][..]));
    assert_eq!(
        config.env().as_deref(),
        Some(&[image_support::PATH_ENV.to_owned()][..])
    );
    assert_eq!(
        info.size,
        (image.manifest.len() + image.config.len() + image.layer_gzip.len()) as u64
    );
    let snapshots = ctr(&containerd, &["snapshots", "ls"]);
    assert!(
        snapshots
            .lines()
            .any(|l| l.starts_with(&info.chain_id) && l.contains("Committed")),
        "{snapshots}"
    );
    // GC labels as containerd's own client sets them.
    let content = ctr(&containerd, &["content", "ls"]);
    let line = |digest: &str| {
        content
            .lines()
            .find(|l| l.starts_with(digest))
            .unwrap_or_else(|| panic!("{digest} not in\n{content}"))
            .to_owned()
    };
    assert!(line(&image.manifest_digest).contains(&format!(
        "containerd.io/gc.ref.content.l.0={}",
        image.layer_gzip_digest
    )));
    assert!(line(&image.config_digest).contains(&format!(
        "containerd.io/gc.ref.snapshot.overlayfs={}",
        image.diff_id
    )));
    assert!(
        line(&image.layer_gzip_digest)
            .contains(&format!("containerd.io/uncompressed={}", image.diff_id))
    );

    // Again: same answer, nothing rewritten.
    let before = state_of(&store).await;
    assert_eq!(store.import_archive(&archive).await.unwrap(), names);
    assert_eq!(state_of(&store).await, before);

    // containerd's own importer, in another namespace, unpacks to the same chain ID.
    let out = containerd
        .ctr(
            "reference",
            &["images", "import", archive.to_str().unwrap()],
        )
        .unwrap();
    assert!(out.contains("busybox"), "{out}");
    let theirs = containerd.ctr("reference", &["snapshots", "ls"]).unwrap();
    assert!(theirs.contains(&info.chain_id), "{theirs}");

    // Nothing but our image is left to GC: leases are gone.
    let leases = ctr(&containerd, &["leases", "ls", "-q"]);
    assert!(leases.trim().is_empty(), "{leases}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_archive_and_gzip_archive_import() {
    let containerd = ContainerdInstance::start();
    let store = store(&containerd).await;
    let dir = tempfile::tempdir().unwrap();

    let docker = busybox_docker_archive(dir.path(), "moor.test/busybox:docker");
    let names = store.import_archive(&docker).await.unwrap();
    assert_eq!(names, ["moor.test/busybox:docker"]);
    let info = store
        .get("moor.test/busybox:docker")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.chain_id, busybox().diff_id);
    assert_ne!(
        info.digest,
        busybox().manifest_digest,
        "a docker manifest of our making"
    );
    let out = ctr(&containerd, &["images", "ls"]);
    assert!(
        out.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{out}"
    );
    // Again, to the same manifest digest.
    let before = state_of(&store).await;
    assert_eq!(store.import_archive(&docker).await.unwrap(), names);
    assert_eq!(state_of(&store).await, before);

    // A gzip-compressed OCI archive.
    let gz = dir.path().join("busybox.tar.gz");
    write_tar(
        &gz,
        &image_support::busybox_oci_files("moor.test/busybox:gz"),
        true,
    );
    assert_eq!(
        store.import_archive(&gz).await.unwrap(),
        ["moor.test/busybox:gz"]
    );
    assert_eq!(
        store
            .get("moor.test/busybox:gz")
            .await
            .unwrap()
            .unwrap()
            .chain_id,
        info.chain_id
    );
    assert!(store.get("moor.test/absent:1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_layer_image_unpacks_to_containerds_chain_id() {
    let containerd = ContainerdInstance::start();
    let store = store(&containerd).await;
    let dir = tempfile::tempdir().unwrap();
    let (files, chain_id) = image_support::busybox_with_files_oci_files(
        "moor.test/app:1",
        &[("/app/run.sh", b"#!/bin/sh\necho hello\n")],
    );
    let path = dir.path().join("app.tar");
    write_tar(&path, &files, false);
    assert_eq!(
        store.import_archive(&path).await.unwrap(),
        ["moor.test/app:1"]
    );
    let info = store.get("moor.test/app:1").await.unwrap().unwrap();
    assert_eq!(info.chain_id, chain_id);
    let ours = ctr(&containerd, &["snapshots", "ls"]);
    assert!(ours.contains(&chain_id), "{ours}");
    // The base layer's snapshot is shared with plain busybox: importing it unpacks nothing.
    assert!(ours.contains(&busybox().diff_id), "{ours}");
    let before = ours.lines().count();
    store
        .import_archive(&busybox_oci_archive(dir.path(), "busybox"))
        .await
        .unwrap();
    assert_eq!(
        ctr(&containerd, &["snapshots", "ls"]).lines().count(),
        before
    );

    // containerd's own importer agrees on the chain ID.
    containerd
        .ctr("reference", &["images", "import", path.to_str().unwrap()])
        .unwrap();
    let theirs = containerd.ctr("reference", &["snapshots", "ls"]).unwrap();
    assert!(theirs.contains(&chain_id), "{theirs}");
}

/// Imports an archive of the given files, expecting an error that mentions `needle`, and
/// no image record afterwards.
async fn assert_rejected(
    store: &ImageStore,
    containerd: &ContainerdInstance,
    path: &Path,
    needle: &str,
) {
    let err = store.import_archive(path).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(needle), "{needle:?} not in {message}");
    assert!(matches!(err, ImageError::Archive { .. }), "{err:?}");
    assert!(
        image_names(containerd).is_empty(),
        "{:?}",
        image_names(containerd)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_archives_fail_and_record_nothing() {
    let containerd = ContainerdInstance::start();
    let store = store(&containerd).await;
    let dir = tempfile::tempdir().unwrap();
    let image = busybox();
    let layer_path = format!(
        "blobs/sha256/{}",
        image.layer_gzip_digest.trim_start_matches("sha256:")
    );

    // A flipped byte in the layer.
    let mut files = image_support::busybox_oci_files("busybox");
    let layer = files.iter_mut().find(|(p, _)| *p == layer_path).unwrap();
    let middle = layer.1.len() / 2;
    layer.1[middle] ^= 0xff;
    let path = dir.path().join("flipped.tar");
    write_tar(&path, &files, false);
    assert_rejected(&store, &containerd, &path, "digest mismatch").await;
    assert!(store.get("busybox").await.unwrap().is_none());

    // The layer left out.
    let mut files = image_support::busybox_oci_files("busybox");
    files.retain(|(p, _)| *p != layer_path);
    let path = dir.path().join("missing.tar");
    write_tar(&path, &files, false);
    assert_rejected(&store, &containerd, &path, &image.layer_gzip_digest).await;

    // index.json that is not JSON.
    let mut files = image_support::busybox_oci_files("busybox");
    files.iter_mut().find(|(p, _)| p == "index.json").unwrap().1 = b"{\"manifests\": [".to_vec();
    let path = dir.path().join("badjson.tar");
    write_tar(&path, &files, false);
    assert_rejected(&store, &containerd, &path, "index.json").await;

    // A docker archive whose layer is missing.
    let mut files = image_support::busybox_docker_files("busybox");
    files.retain(|(p, _)| !p.ends_with("layer.tar"));
    let path = dir.path().join("docker-missing.tar");
    write_tar(&path, &files, false);
    assert_rejected(&store, &containerd, &path, "layer.tar").await;

    // Not an archive at all, and an archive that names nothing.
    let path = dir.path().join("garbage.tar");
    std::fs::write(&path, b"this is not a tar file at all, not even close").unwrap();
    store.import_archive(&path).await.unwrap_err();
    let path = dir.path().join("nameless.tar");
    let mut files = image_support::busybox_oci_files("busybox");
    let index = files.iter_mut().find(|(p, _)| p == "index.json").unwrap();
    let text = String::from_utf8(index.1.clone()).unwrap();
    index.1 = text
        .replace("io.containerd.image.name", "x")
        .replace("org.opencontainers.image.ref.name", "y")
        .into_bytes();
    write_tar(&path, &files, false);
    assert_rejected(&store, &containerd, &path, "names no image").await;

    // And the intact archive still imports after all that.
    let good = busybox_oci_archive(dir.path(), "busybox");
    assert_eq!(store.import_archive(&good).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_dir_reports_the_bad_archive_and_imports_the_rest() {
    let containerd = ContainerdInstance::start();
    let store = store(&containerd).await;
    let dir = tempfile::tempdir().unwrap();
    busybox_oci_archive(dir.path(), "moor.test/a:1");
    write_tar(
        &dir.path().join("b.tgz"),
        &image_support::busybox_docker_files("moor.test/b:1"),
        true,
    );
    std::fs::write(dir.path().join("broken.tar.gz"), b"\x1f\x8bnot really").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();

    let err = store.import_dir(dir.path()).await.unwrap_err();
    let ImageError::ImportDir {
        imported, failures, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    let mut imported = imported.clone();
    imported.sort();
    assert_eq!(imported, ["moor.test/a:1", "moor.test/b:1"]);
    assert_eq!(failures.len(), 1);
    assert!(err.to_string().contains("broken.tar.gz"), "{err}");
    let mut names = image_names(&containerd);
    names.sort();
    assert_eq!(names, imported);

    // A folder that is not there imports nothing.
    assert!(
        store
            .import_dir(&dir.path().join("none"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_snapshot_is_unpacked_again_by_get() {
    let containerd = ContainerdInstance::start();
    let store = store(&containerd).await;
    let dir = tempfile::tempdir().unwrap();
    store
        .import_archive(&busybox_oci_archive(dir.path(), "busybox"))
        .await
        .unwrap();
    let chain_id = busybox().diff_id.clone();
    ctr(&containerd, &["snapshots", "rm", &chain_id]);
    assert!(!ctr(&containerd, &["snapshots", "ls"]).contains(&chain_id));
    let info = store
        .get("docker.io/library/busybox")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.chain_id, chain_id);
    assert!(ctr(&containerd, &["snapshots", "ls"]).contains(&chain_id));
}

#[test]
fn moor_images_import_and_ls() {
    let containerd = ContainerdInstance::start();
    let dir = tempfile::tempdir().unwrap();
    let oci = busybox_oci_archive(dir.path(), "moor.test/cli:oci");
    let docker = busybox_docker_archive(dir.path(), "moor.test/cli:docker");
    let moor = env!("CARGO_BIN_EXE_moor");
    let socket = containerd.socket();
    let out = Command::new(moor)
        .args(["images", "import"])
        .arg(&oci)
        .arg(&docker)
        .arg("--containerd-socket")
        .arg(&socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("imported moor.test/cli:oci  sha256:"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("imported moor.test/cli:docker  sha256:"),
        "{stdout}"
    );

    let out = Command::new(moor)
        .args(["images", "ls", "--containerd-socket"])
        .arg(&socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(stdout.contains(&busybox().manifest_digest), "{stdout}");
    assert!(stdout.contains("moor.test/cli:docker"), "{stdout}");

    // A bad file: exit 1, the error names it.
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, b"nope").unwrap();
    let out = Command::new(moor)
        .args(["images", "import"])
        .arg(&bad)
        .arg("--containerd-socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.tar"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_private_registry() {
    let registry = RegistryInstance::start();
    let index_digest = registry_support::push_busybox(
        &registry,
        "tools/busybox",
        "1",
        &oci_client::secrets::RegistryAuth::Anonymous,
    )
    .await;
    let containerd = ContainerdInstance::start();
    let store = store(&containerd).await;
    let name = format!("{}/tools/busybox:1", registry.host());

    let info = store.pull(&name, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(info.name, name);
    assert_eq!(info.digest, index_digest);
    assert_eq!(info.chain_id, busybox().diff_id);
    assert_eq!(image_names(&containerd), std::slice::from_ref(&name));
    let got = store.get(&name).await.unwrap().unwrap();
    assert_eq!(got.chain_id, info.chain_id);
    let content = ctr(&containerd, &["content", "ls"]);
    assert!(
        content.contains(&format!(
            "containerd.io/distribution.source.{}=tools/busybox",
            registry.host()
        )),
        "{content}"
    );

    // Again: nothing rewritten.
    let before = state_of(&store).await;
    let again = store.pull(&name, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(again.digest, index_digest);
    assert_eq!(state_of(&store).await, before);

    // By digest, of the amd64 manifest itself.
    let by_digest = format!(
        "{}/tools/busybox@{}",
        registry.host(),
        busybox().manifest_digest
    );
    let info = store
        .pull(&by_digest, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(info.digest, busybox().manifest_digest);

    // A tag and a repository that are not there.
    for missing in [
        format!("{}/tools/busybox:nope", registry.host()),
        format!("{}/no/such:1", registry.host()),
    ] {
        let err = store
            .pull(&missing, &RegistryAuth::Anonymous)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{missing}: {err:?}");
        assert!(err.to_string().contains(&missing), "{err}");
        assert!(store.get(&missing).await.unwrap().is_none());
    }
    // Nothing listens here: a failure, but not "not found".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = store
        .pull(&format!("127.0.0.1:{port}/x:1"), &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(!err.is_not_found(), "{err:?}");
    let err = store
        .pull("Bad Name", &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"Bad Name\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_basic_auth() {
    let registry = RegistryInstance::start_with_basic_auth("moor", "s3cret");
    registry_support::push_busybox(
        &registry,
        "private/busybox",
        "1",
        &oci_client::secrets::RegistryAuth::Basic("moor".into(), "s3cret".into()),
    )
    .await;
    let containerd = ContainerdInstance::start();
    let store = store(&containerd).await;
    let name = format!("{}/private/busybox:1", registry.host());

    let err = store
        .pull(&name, &RegistryAuth::Anonymous)
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(!err.is_not_found(), "{err:?}");
    let wrong = RegistryAuth::Basic {
        username: "moor".into(),
        password: "wrong".into(),
    };
    let err = store.pull(&name, &wrong).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err:?}");
    assert!(image_names(&containerd).is_empty());

    // The credentials as a pull secret carries them.
    let secret = format!(
        r#"{{"auths":{{"{}":{{"username":"moor","password":"s3cret"}}}}}}"#,
        registry.host()
    );
    let auth = moor::kubelet::images::credentials_for(secret.as_bytes(), &name).unwrap();
    let info = store.pull(&name, &auth).await.unwrap();
    assert_eq!(info.chain_id, busybox().diff_id);
}

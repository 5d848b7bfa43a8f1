//! A private OCI registry for pull tests: Debian's `docker-registry` (distribution 2.x)
//! serving plain HTTP on a free loopback port, its storage in a temp dir, optionally with
//! htpasswd (bcrypt) basic auth. Killed when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RegistryInstance {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl RegistryInstance {
    /// An open registry (anonymous pulls and pushes).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A registry wanting `username`/`password` for everything.
    pub fn start_with_basic_auth(username: &str, password: &str) -> Self {
        Self::start_with(Some((username, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let root = dir.path();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n\
             storage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root = root.display()
        );
        if let Some((username, password)) = auth {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            std::fs::write(root.join("htpasswd"), format!("{username}:{hash}\n"))
                .expect("htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: moor-test\n    path: {}/htpasswd\n",
                root.display()
            ));
        }
        std::fs::write(root.join("config.yml"), config).expect("registry config");
        let log = std::fs::File::create(root.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker-registry (Debian's package): {e}"));
        let instance = RegistryInstance {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !instance.answers() {
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not come up; log:\n{}",
                    std::fs::read_to_string(instance.dir.path().join("registry.log"))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        instance
    }

    /// `127.0.0.1:PORT`, as image names spell the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Whether `GET /v2/` gets any HTTP answer (401 counts: auth is on).
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.1 401")
    }
}

impl Drop for RegistryInstance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pushes the busybox image to `registry` as `repo:tag` through the registry API (with
/// oci-client), as an index whose first entry is an arm64 manifest and second the amd64
/// one; returns the index digest.
pub async fn push_busybox(
    registry: &RegistryInstance,
    repo: &str,
    tag: &str,
    auth: &oci_client::secrets::RegistryAuth,
) -> String {
    use oci_client::client::{ClientConfig, ClientProtocol};
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let reference: oci_client::Reference =
        format!("{}/{repo}:{tag}", registry.host()).parse().unwrap();
    client
        .auth(&reference, auth, oci_client::RegistryOperation::Push)
        .await
        .unwrap();
    let image = crate::image_support::busybox();
    client
        .push_blob(&reference, image.config.clone(), &image.config_digest)
        .await
        .unwrap();
    client
        .push_blob(
            &reference,
            image.layer_gzip.clone(),
            &image.layer_gzip_digest,
        )
        .await
        .unwrap();
    let manifest_type = axum::http::HeaderValue::from_static(crate::image_support::OCI_MANIFEST);
    // An "arm64" manifest: the same blobs, told apart by an annotation.
    let mut arm: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    arm["annotations"] = serde_json::json!({"moor.test/arch": "arm64"});
    let arm = serde_json::to_vec(&arm).unwrap();
    let arm_digest = crate::image_support::sha256(&arm);
    for (bytes, digest) in [
        (arm.clone(), arm_digest.clone()),
        (image.manifest.clone(), image.manifest_digest.clone()),
    ] {
        client
            .push_manifest_raw(
                &reference.clone_with_digest(digest),
                bytes,
                manifest_type.clone(),
            )
            .await
            .unwrap();
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::image_support::OCI_INDEX,
        "manifests": [
            {"mediaType": crate::image_support::OCI_MANIFEST, "digest": arm_digest, "size": arm.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": crate::image_support::OCI_MANIFEST, "digest": image.manifest_digest,
             "size": image.manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .unwrap();
    client
        .push_manifest_raw(
            &reference,
            index.clone(),
            axum::http::HeaderValue::from_static(crate::image_support::OCI_INDEX),
        )
        .await
        .unwrap();
    crate::image_support::sha256(&index)
}

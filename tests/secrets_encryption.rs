//! Secrets encrypted at rest: a real API server on the embedded store wrapped in
//! `EncryptedStore`, driven by kube-rs, with the SQLite file read behind its back to check
//! what actually reaches the disk.
//!
//! The data dir gets its `encryption-config.yaml` from `EncryptionConfig::load_or_create`,
//! as `moor server`/`moor up` will: one aescbc key `key1` for secrets, then identity.

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apiserver_support::TestServer;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use moor::store::encryption::CONFIG_FILE_NAME;
use moor::store::{EmbeddedStore, EncryptedStore, EncryptionConfig, StoreError};
use serde_json::json;

const PASSWORD: &str = "correct-horse-battery-staple-42";
const CM_VALUE: &str = "not-a-secret-setting-17";

/// The embedded store in `dir`, wrapped as the CLI wraps it. Retries while a server stopped
/// a moment ago in this process still holds the database.
async fn open_encrypted(dir: &Path) -> EncryptedStore {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let inner = loop {
        match EmbeddedStore::open(&dir.join("state.db")).await {
            Ok(store) => break store,
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("opening the store in {}: {e}", dir.display()),
        }
    };
    let config = EncryptionConfig::load_or_create(dir).expect("encryption config");
    EncryptedStore::new(Arc::new(inner), config)
}

/// The newest value SQLite holds for `key`, read straight from the file.
fn stored_bytes(dir: &Path, key: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the database read-only");
    conn.query_row(
        "SELECT value FROM log WHERE key = ?1 ORDER BY revision DESC LIMIT 1",
        [key.as_bytes()],
        |row| row.get(0),
    )
    .unwrap_or_else(|e| panic!("no stored value for {key}: {e}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn storage_key(plural: &str, name: &str) -> String {
    moor::api::registry::by_resource("", "v1", plural)
        .expect("served resource")
        .key(Some("default"), name)
}

fn password_of(secret: &Secret) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get("password"))
        .map(|b| b.0.clone())
        .expect("the secret has data.password")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_encrypted_on_disk_and_read_back_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_on_store(Arc::new(open_encrypted(dir.path()).await)).await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");

    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db"},
        "data": {"password": ByteString(PASSWORD.as_bytes().to_vec())},
    }))
    .unwrap();
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the secret");
    assert_eq!(password_of(&created), PASSWORD.as_bytes());
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"value": CM_VALUE},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create the configmap");

    // On disk: upstream's aescbc format with the generated key, and neither the value nor
    // its base64 (what the JSON would hold) anywhere in it.
    let on_disk = stored_bytes(dir.path(), &storage_key("secrets", "db"));
    assert!(
        on_disk.starts_with(b"k8s:enc:aescbc:v1:key1:"),
        "stored secret starts with {:?}",
        String::from_utf8_lossy(&on_disk[..on_disk.len().min(32)])
    );
    let b64 = serde_json::to_value(ByteString(PASSWORD.as_bytes().to_vec())).unwrap();
    let b64 = b64.as_str().unwrap();
    assert!(
        !contains(&on_disk, PASSWORD.as_bytes()),
        "plain value on disk"
    );
    assert!(!contains(&on_disk, b64.as_bytes()), "base64 value on disk");
    assert!(!contains(&on_disk, b"\"password\""), "secret JSON on disk");
    // ConfigMaps are not configured: plain JSON, as before.
    let cm_on_disk = stored_bytes(dir.path(), &storage_key("configmaps", "settings"));
    let cm_json: serde_json::Value =
        serde_json::from_slice(&cm_on_disk).expect("the configmap is stored as JSON");
    assert_eq!(cm_json["data"]["value"], CM_VALUE);

    // Read back through the API: get and list.
    let got = secrets.get("db").await.expect("get the secret");
    assert_eq!(password_of(&got), PASSWORD.as_bytes());
    let listed = secrets.list(&ListParams::default()).await.unwrap();
    let db = listed
        .items
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("db"))
        .expect("db in the list");
    assert_eq!(password_of(db), PASSWORD.as_bytes());
    let resource_version = got.metadata.resource_version.clone();

    // An update is encrypted again, with a fresh IV.
    let mut changed = got.clone();
    changed.data.as_mut().unwrap().insert(
        "password".to_owned(),
        ByteString(b"second-secret-value".to_vec()),
    );
    let updated = secrets
        .replace("db", &PostParams::default(), &changed)
        .await
        .expect("update the secret");
    assert_ne!(updated.metadata.resource_version, resource_version);
    let on_disk2 = stored_bytes(dir.path(), &storage_key("secrets", "db"));
    assert!(on_disk2.starts_with(b"k8s:enc:aescbc:v1:key1:"));
    assert!(!contains(&on_disk2, b"second-secret-value"));

    // Restart on the same dir: the same config file, so the same key, reads it back.
    let config_before = std::fs::read(dir.path().join(CONFIG_FILE_NAME)).unwrap();
    // The clients' kept-alive connections hold the old server (and its store) open.
    drop((secrets, cms));
    server.stop().await;
    let server = TestServer::start_on_store(Arc::new(open_encrypted(dir.path()).await)).await;
    assert_eq!(
        std::fs::read(dir.path().join(CONFIG_FILE_NAME)).unwrap(),
        config_before,
        "the config is reused, not regenerated"
    );
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    let again = secrets.get("db").await.expect("get after restart");
    assert_eq!(password_of(&again), b"second-secret-value");
    assert_eq!(
        again.metadata.resource_version,
        updated.metadata.resource_version
    );
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let cm = cms.get("settings").await.expect("get the configmap");
    assert_eq!(cm.data.unwrap()["value"], CM_VALUE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_written_before_encryption_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    // First without encryption, as a data dir from before this feature.
    {
        let plain = EmbeddedStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let server = TestServer::start_on_store(Arc::new(plain)).await;
        let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "old"},
            "stringData": {"password": PASSWORD},
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create the plain secret");
        server.stop().await;
    }
    let key = storage_key("secrets", "old");
    assert!(stored_bytes(dir.path(), &key).starts_with(b"{"));

    let store = open_encrypted(dir.path()).await;
    let server = TestServer::start_on_store(Arc::new(store.clone())).await;
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    let old = secrets.get("old").await.expect("plain secret readable");
    assert_eq!(password_of(&old), PASSWORD.as_bytes());
    // Turning encryption on leaves old values as they are until rewritten; moor's API
    // server skips writes that change nothing, so the store pass does it.
    assert_eq!(
        store.rewrite_stale().await.expect("rewrite stale values"),
        1
    );
    assert!(stored_bytes(dir.path(), &key).starts_with(b"k8s:enc:aescbc:v1:key1:"));
    let again = secrets.get("old").await.unwrap();
    assert_eq!(password_of(&again), PASSWORD.as_bytes());
    drop(secrets);
    server.stop().await;
}

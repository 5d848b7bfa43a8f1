//! The API server driven by the official Kubernetes Python client (`kubernetes` on PyPI,
//! installed by scripts/setup into `target/python`): list, create, watch, delete.

#[path = "support/apiserver.rs"]
mod apiserver_support;

use std::path::Path;

use apiserver_support::{Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_lists_creates_watches_and_deletes() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup (it installs the Python client)",
        python.display()
    );
    let server = TestServer::start(Backend::Embedded).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_smoke.py");
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! A real moor API server for tests: on a free loopback port, over the embedded store in a
//! temp dir or over a private etcd; stopped when dropped.

use std::sync::Arc;

use moor::apiserver::ApiServer;
use moor::store::etcd::{EtcdConfig, EtcdStore};
use moor::store::{EmbeddedStore, Store};
use tokio_util::sync::CancellationToken;

#[path = "etcd.rs"]
pub mod etcd_support;

/// Which store the server runs on.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
pub enum Backend {
    Embedded,
    Etcd,
}

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _etcd: Option<etcd_support::EtcdInstance>,
}

#[allow(dead_code)]
impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |s| s).await
    }

    /// A server on an etcd someone else runs (several servers on one etcd).
    pub async fn start_on_etcd(endpoint: &str) -> Self {
        let store = EtcdStore::connect(EtcdConfig::new(vec![endpoint.to_owned()]))
            .await
            .unwrap();
        Self::start_on_store(Arc::new(store)).await
    }

    /// A server on a store shared with other servers.
    pub async fn start_on_store(store: Arc<dyn Store>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::serve(store, true, None, dir, |s| s).await
    }

    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(ApiServer) -> ApiServer,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, etcd): (Arc<dyn Store>, _) = match backend {
            Backend::Embedded => (
                Arc::new(
                    EmbeddedStore::open(&dir.path().join("state.db"))
                        .await
                        .unwrap(),
                ),
                None,
            ),
            Backend::Etcd => {
                let etcd = etcd_support::EtcdInstance::start();
                let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint()]))
                    .await
                    .unwrap();
                (Arc::new(store), Some(etcd))
            }
        };
        let shared = matches!(backend, Backend::Etcd);
        Self::serve(store, shared, etcd, dir, configure).await
    }

    async fn serve(
        store: Arc<dyn Store>,
        shared: bool,
        etcd: Option<etcd_support::EtcdInstance>,
        dir: tempfile::TempDir,
        configure: impl FnOnce(ApiServer) -> ApiServer,
    ) -> Self {
        let shutdown = CancellationToken::new();
        let server = configure(ApiServer::new(store, shutdown.clone()).with_shared_store(shared));
        server.start().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server.serve(listener));
        Self {
            url,
            shutdown,
            _dir: dir,
            _etcd: etcd,
        }
    }

    /// A kube-rs client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

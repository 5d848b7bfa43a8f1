//! A real moor API server for tests: on a free loopback port, over the embedded store in a
//! temp dir or over a private etcd; stopped when dropped.
//!
//! The listener is bound before the server starts, so the server advertises its real
//! address (the `kubernetes` Service's endpoints). Tests that run a service proxy on this
//! host give each server its own service CIDR and node-port range (cluster IPs become
//! host-wide addresses): `TestServer::start_with(backend, |s| s.with_service_cidr(..))`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use moor::apiserver::ApiServer;
use moor::store::etcd::{EtcdConfig, EtcdStore};
use moor::store::{EmbeddedStore, Store, StoreError};
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
#[allow(dead_code)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The address it listens on (and advertises).
    pub addr: SocketAddr,
    /// The server itself (for calls no client can make, such as a repair pass).
    pub server: ApiServer,
    /// Its store.
    pub store: Arc<dyn Store>,
    shutdown: CancellationToken,
    serving: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
    _etcd: Option<etcd_support::EtcdInstance>,
}

#[allow(dead_code)]
impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |s| s).await
    }

    /// A server on an etcd someone else runs (several servers on one etcd).
    pub async fn start_on_etcd(endpoint: &str) -> Self {
        Self::start_on_etcd_with(endpoint, |s| s).await
    }

    /// A server on an etcd someone else runs, configured by `configure`.
    pub async fn start_on_etcd_with(
        endpoint: &str,
        configure: impl FnOnce(ApiServer) -> ApiServer,
    ) -> Self {
        let store = EtcdStore::connect(EtcdConfig::new(vec![endpoint.to_owned()]))
            .await
            .unwrap();
        Self::serve(Arc::new(store), true, None, None, configure).await
    }

    /// A server on a store shared with other servers.
    pub async fn start_on_store(store: Arc<dyn Store>) -> Self {
        Self::serve(store, true, None, None, |s| s).await
    }

    /// A server on the embedded store in `dir`, which the caller keeps: stop this one and
    /// start another in the same dir to restart it.
    pub async fn start_in(dir: &Path, configure: impl FnOnce(ApiServer) -> ApiServer) -> Self {
        let store = open_embedded(&dir.join("state.db")).await;
        Self::serve(Arc::new(store), false, None, None, configure).await
    }

    pub async fn start_with(
        backend: Backend,
        configure: impl FnOnce(ApiServer) -> ApiServer,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, etcd): (Arc<dyn Store>, _) = match backend {
            Backend::Embedded => (
                Arc::new(open_embedded(&dir.path().join("state.db")).await),
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
        Self::serve(store, shared, etcd, Some(dir), configure).await
    }

    async fn serve(
        store: Arc<dyn Store>,
        shared: bool,
        etcd: Option<etcd_support::EtcdInstance>,
        dir: Option<tempfile::TempDir>,
        configure: impl FnOnce(ApiServer) -> ApiServer,
    ) -> Self {
        let shutdown = CancellationToken::new();
        // Bound first: the server publishes this address as the kubernetes Service's
        // endpoint when it starts.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = configure(
            ApiServer::new(store.clone(), shutdown.clone())
                .with_shared_store(shared)
                .with_advertise(addr),
        );
        server.start().await.unwrap();
        let serving = tokio::spawn(server.clone().serve(listener));
        Self {
            url: format!("http://{addr}"),
            addr,
            server,
            store,
            shutdown,
            serving: Some(serving),
            _dir: dir,
            _etcd: etcd,
        }
    }

    /// A kube-rs client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Stop serving and wait until every task of the server has ended.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
    }
}

/// Open the embedded store at `path`, waiting (briefly) for a server stopped a moment ago
/// in this process to let go of it.
async fn open_embedded(path: &Path) -> EmbeddedStore {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match EmbeddedStore::open(path).await {
            Ok(store) => return store,
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("opening {}: {e}", path.display()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

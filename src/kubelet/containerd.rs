//! The connection to containerd: one gRPC channel over its unix socket and the namespace
//! every request of the agent carries (`moor`, so nothing of other containerd users — k3s,
//! docker, ctr's `default` — is ever seen or touched). Owns nothing else: the services are
//! used by `images`, `runtime` and the pod sync.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{
    AddResourceRequest, CreateRequest as CreateLeaseRequest, DeleteRequest as DeleteLeaseRequest,
    Resource,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{self, Request};

/// The containerd namespace holding everything the agent creates.
pub const NAMESPACE: &str = "moor";

/// The socket of a system containerd, used when none is given.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// The snapshotter the agent unpacks into and runs containers from.
pub const SNAPSHOTTER: &str = "overlayfs";

/// Failures talking to containerd.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("cannot connect to containerd at {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("containerd {what}: {status}")]
    Call {
        what: String,
        #[source]
        status: Box<tonic::Status>,
    },
}

impl ContainerdError {
    /// A failed call, naming what was asked.
    pub fn call(what: impl Into<String>, status: tonic::Status) -> Self {
        ContainerdError::Call {
            what: what.into(),
            status: Box::new(status),
        }
    }

    /// The gRPC code of a failed call (NotFound, AlreadyExists, ...), if it was one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ContainerdError::Call { status, .. } => Some(status.code()),
            ContainerdError::Connect { .. } => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }

    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(tonic::Code::AlreadyExists)
    }
}

/// A cheap-to-clone handle on containerd (tonic channels multiplex one connection).
#[derive(Clone, Debug)]
pub struct Containerd {
    channel: Channel,
    socket: PathBuf,
    namespace: String,
}

impl Containerd {
    /// Connects to the socket; the namespace is [`NAMESPACE`].
    pub async fn connect(socket: &Path) -> Result<Self, ContainerdError> {
        let channel = containerd_client::connect(socket).await.map_err(|source| {
            ContainerdError::Connect {
                socket: socket.to_owned(),
                source,
            }
        })?;
        Ok(Containerd {
            channel,
            socket: socket.to_owned(),
            namespace: NAMESPACE.to_owned(),
        })
    }

    /// The same connection, in another containerd namespace (tests keep apart this way).
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A request carrying the namespace header every namespaced service wants.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        // A namespace is a plain DNS-label-like name; it always parses as a header value.
        if let Ok(value) = self.namespace.parse() {
            request.metadata_mut().insert("containerd-namespace", value);
        }
        request
    }

    /// containerd's version string (`1.6.20~ds1`), for the Node's nodeInfo.
    pub async fn version(&self) -> Result<String, ContainerdError> {
        let reply = VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(|status| ContainerdError::call("version", status))?;
        Ok(reply.into_inner().version)
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }

    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
}

/// A lease lives at most this long if moor dies before deleting it.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// A containerd lease: content and snapshots created by requests made through
/// [`Lease::request`] are held until the lease is deleted (or expires, if moor dies), so
/// containerd's garbage collector cannot take them before something references them.
pub struct Lease {
    containerd: Containerd,
    id: String,
}

impl Lease {
    pub async fn create(containerd: &Containerd) -> Result<Self, ContainerdError> {
        let id = format!("moor-{}", uuid::Uuid::new_v4().simple());
        let expire = jiff::Timestamp::try_from(SystemTime::now() + LEASE_EXPIRY)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let labels = HashMap::from([("containerd.io/gc.expire".to_owned(), expire)]);
        containerd
            .leases()
            .create(containerd.request(CreateLeaseRequest {
                id: id.clone(),
                labels,
            }))
            .await
            .map_err(|status| ContainerdError::call("creating a lease", status))?;
        Ok(Lease {
            containerd: containerd.clone(),
            id,
        })
    }

    /// A namespaced request carrying this lease.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = self.containerd.request(message);
        if let Ok(value) = self.id.parse() {
            request.metadata_mut().insert("containerd-lease", value);
        }
        request
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// Puts an existing resource (`content` digest, `snapshots/overlayfs` key) under the
    /// lease.
    pub async fn hold(&self, kind: &str, id: &str) -> Result<(), ContainerdError> {
        self.containerd
            .leases()
            .add_resource(self.containerd.request(AddResourceRequest {
                id: self.id.clone(),
                resource: Some(Resource {
                    id: id.to_owned(),
                    r#type: kind.to_owned(),
                }),
            }))
            .await
            .map_err(|status| ContainerdError::call(format!("leasing {kind} {id}"), status))?;
        Ok(())
    }

    /// Deletes the lease: what it held now lives only as long as something references it.
    pub async fn release(self) {
        let result = self
            .containerd
            .leases()
            .delete(self.containerd.request(DeleteLeaseRequest {
                id: self.id.clone(),
                sync: false,
            }))
            .await;
        if let Err(status) = result {
            // Harmless: the lease expires by itself.
            tracing::warn!(lease = %self.id, %status, "cannot delete containerd lease");
        }
    }
}

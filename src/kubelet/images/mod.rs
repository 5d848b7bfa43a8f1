//! Container images for the node agent, kept in containerd (namespace `moor`): importing
//! image archives (OCI layout or `docker save`, as k3s does from `agent/images`), pulling
//! from registries, unpacking layers into [`SNAPSHOTTER`] snapshots, and answering "is this
//! image here, and what does it run?" for the pod sync.
//!
//! containerd 1.6 has no Transfer service, so this does client-side what containerd's Go
//! client does: blobs through the Content service (under a lease, with GC labels), snapshots
//! through Snapshots + Diff, image records through Images. Everything is idempotent: a
//! second import or pull finds its content, snapshots and record in place and rewrites
//! nothing. An image record is created only once its content is complete and unpacked.
//!
//! Owns image records, content blobs and the committed layer snapshots; never touches
//! containers, tasks or the active snapshots containers run on.

mod archive;
mod content;
mod oci;
mod pull;
mod reference;
mod unpack;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::{
    CreateImageRequest, GetImageRequest, Image, ListImagesRequest, UpdateImageRequest,
};
use containerd_client::tonic;
use containerd_client::types::Descriptor as ApiDescriptor;

use self::content::Lease;
pub use self::reference::{credentials_for, normalize_reference};
#[cfg(doc)]
use crate::kubelet::containerd::SNAPSHOTTER;
use crate::kubelet::containerd::{Containerd, ContainerdError};

/// The images of one containerd namespace.
#[derive(Clone, Debug)]
pub struct ImageStore {
    containerd: Containerd,
    insecure_registries: Vec<String>,
}

/// An image that is present and unpacked.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    /// The normalised name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The image's target digest (its index or manifest), `sha256:...`.
    pub digest: String,
    /// What the image runs: Env, Cmd, Entrypoint, WorkingDir, User.
    pub config: oci_spec::image::ImageConfiguration,
    /// The committed snapshot (in [`SNAPSHOTTER`]) holding the unpacked root filesystem:
    /// a container's rootfs is a snapshot prepared on it.
    pub chain_id: String,
    /// Manifest, config and (compressed) layers, in bytes.
    pub size: u64,
}

/// Credentials for a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
}

impl fmt::Debug for RegistryAuth {
    // Passwords stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// Failures importing, pulling or reading images. Messages name the archive, entry, image
/// or blob concerned.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {source}")]
    InvalidReference {
        reference: String,
        #[source]
        source: oci_spec::distribution::ParseError,
    },
    #[error("image archive {}: {source}", path.display())]
    Archive {
        path: PathBuf,
        #[source]
        source: Box<ImageError>,
    },
    #[error("reading {}: {source}", entry.as_deref().unwrap_or("the tar stream"))]
    ArchiveRead {
        entry: Option<String>,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list image archives in {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} of the image archives in {} failed (imported {}): {}",
        failures.len(),
        dir.display(),
        imported.len(),
        failures.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
    )]
    ImportDir {
        dir: PathBuf,
        /// The images the other archives gave.
        imported: Vec<String>,
        /// One [`ImageError::Archive`] per failed archive.
        failures: Vec<ImageError>,
    },
    #[error("{what}: invalid JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: blob {digest} is missing from the content store")]
    MissingContent { what: String, digest: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("image {image} has no manifest for {platform}")]
    NoPlatform { image: String, platform: String },
    #[error("pulling {reference}: {source}")]
    Registry {
        reference: String,
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    #[error("downloading {what}: {source}")]
    Download {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Containerd(#[from] ContainerdError),
}

impl ImageError {
    pub(crate) fn invalid(what: &str, message: impl Into<String>) -> Self {
        ImageError::Invalid {
            what: what.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn containerd(what: impl Into<String>, status: tonic::Status) -> Self {
        ImageError::Containerd(ContainerdError::call(what, status))
    }

    /// The error underneath archive context.
    fn innermost(&self) -> &ImageError {
        match self {
            ImageError::Archive { source, .. } => source.innermost(),
            other => other,
        }
    }

    /// The registry (or archive) has no such image, tag, manifest or platform: what the
    /// kubelet reports as "not found" in ErrImagePull, rather than a transient failure.
    pub fn is_not_found(&self) -> bool {
        match self.innermost() {
            ImageError::Registry { source, .. } => pull::registry_not_found(source),
            ImageError::NoPlatform { .. } => true,
            _ => false,
        }
    }

    /// The registry refused the credentials, or wanted some.
    pub fn is_unauthorized(&self) -> bool {
        match self.innermost() {
            ImageError::Registry { source, .. } => pull::registry_unauthorized(source),
            _ => false,
        }
    }
}

impl ImageStore {
    /// The images of `containerd`'s namespace (normally [`NAMESPACE`](crate::kubelet::containerd::NAMESPACE)).
    pub fn new(containerd: Containerd) -> Self {
        ImageStore {
            containerd,
            insecure_registries: Vec::new(),
        }
    }

    /// Registries (`host:port`, as in image names) to pull from over plain HTTP. Loopback
    /// ones (`localhost`, `127.0.0.1`, `[::1]`) always are, as with docker.
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Self {
        self.insecure_registries = registries;
        self
    }

    /// The containerd handle images are kept through.
    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// Imports an OCI image-layout tar (image names from the annotations
    /// `io.containerd.image.name` or `org.opencontainers.image.ref.name`) or a `docker save`
    /// tar (`manifest.json`, `RepoTags`), plain or gzip-compressed: writes its blobs to the
    /// content store, unpacks the images and creates or updates their records. Returns the
    /// names imported. On failure no image record is created or changed.
    pub async fn import_archive(&self, path: &Path) -> Result<Vec<String>, ImageError> {
        let in_archive = |source| ImageError::Archive {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let lease = Lease::create(&self.containerd).await?;
        let result = async {
            let named = archive::import(&lease, path).await.map_err(in_archive)?;
            // Every image is unpacked before any is recorded: a failure part-way leaves no
            // record behind (the lease lets GC take what was written).
            for image in &named {
                self.prepare(&lease, &image.name, &image.target)
                    .await
                    .map_err(in_archive)?;
            }
            let mut names = Vec::new();
            for image in &named {
                self.record(&image.name, &image.target)
                    .await
                    .map_err(in_archive)?;
                if !names.contains(&image.name) {
                    names.push(image.name.clone());
                }
            }
            Ok(names)
        }
        .await;
        lease.release().await;
        result
    }

    /// Imports every `*.tar`, `*.tar.gz` and `*.tgz` in `dir` (in name order), as k3s
    /// imports `agent/images` at start. A missing folder imports nothing. One bad archive
    /// does not stop the others: the error then lists every failure and what was imported.
    pub async fn import_dir(&self, dir: &Path) -> Result<Vec<String>, ImageError> {
        let read_dir = |source| ImageError::ReadDir {
            dir: dir.to_owned(),
            source,
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(read_dir(err)),
        };
        let mut archives = Vec::new();
        for entry in entries {
            let path = entry.map_err(read_dir)?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_archive =
                name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz");
            if is_archive && path.is_file() {
                archives.push(path);
            }
        }
        archives.sort();
        let mut imported = Vec::new();
        let mut failures = Vec::new();
        for path in archives {
            match self.import_archive(&path).await {
                Ok(names) => {
                    tracing::info!(archive = %path.display(), images = ?names, "imported");
                    imported.extend(names);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "image archive not imported");
                    failures.push(err);
                }
            }
        }
        if failures.is_empty() {
            Ok(imported)
        } else {
            Err(ImageError::ImportDir {
                dir: dir.to_owned(),
                imported,
                failures,
            })
        }
    }

    /// The image if present (unpacking it first if its snapshot is missing), `None` if
    /// there is no image of that name.
    pub async fn get(&self, name: &str) -> Result<Option<ImageInfo>, ImageError> {
        let name = normalize_reference(name)?;
        let Some(image) = self.image_record(&name).await? else {
            return Ok(None);
        };
        let target = descriptor_of(&name, image.target)?;
        let resolved = oci::resolve(&self.containerd, &name, &target).await?;
        let chain = unpack::chain_ids(resolved.diff_ids());
        let top = chain.last().cloned().unwrap_or_default();
        if !unpack::snapshot_exists(&self.containerd, &top).await? {
            let lease = Lease::create(&self.containerd).await?;
            let result = self.prepare(&lease, &name, &target).await;
            lease.release().await;
            result?;
        }
        Ok(Some(info_of(name, &resolved, top)))
    }

    /// Pulls `name` from its registry (plain HTTP for loopback and insecure registries),
    /// unpacks it and records it; a pull of an image already present fetches only its
    /// manifest. [`ImageError::is_not_found`] tells a missing image or tag from other
    /// failures.
    pub async fn pull(&self, name: &str, auth: &RegistryAuth) -> Result<ImageInfo, ImageError> {
        let reference = reference::parse_reference(name)?;
        let name = reference.whole();
        let lease = Lease::create(&self.containerd).await?;
        let result = async {
            let target =
                pull::fetch(&lease, &name, &reference, auth, &self.insecure_registries).await?;
            let chain_id = self.prepare(&lease, &name, &target).await?;
            self.record(&name, &target).await?;
            let resolved = oci::resolve(&self.containerd, &name, &target).await?;
            Ok(info_of(name.clone(), &resolved, chain_id))
        }
        .await;
        lease.release().await;
        result
    }

    /// Every image record of the namespace, resolved (images whose content is incomplete
    /// are skipped with a warning). Does not unpack.
    pub async fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let images = self
            .containerd
            .images()
            .list(
                self.containerd
                    .request(ListImagesRequest { filters: vec![] }),
            )
            .await
            .map_err(|status| ImageError::containerd("list images", status))?
            .into_inner()
            .images;
        let mut out = Vec::new();
        for image in images {
            let name = image.name.clone();
            let resolved = match descriptor_of(&name, image.target) {
                Ok(target) => oci::resolve(&self.containerd, &name, &target).await,
                Err(err) => Err(err),
            };
            match resolved {
                Ok(resolved) => {
                    let chain = unpack::chain_ids(resolved.diff_ids());
                    let top = chain.last().cloned().unwrap_or_default();
                    out.push(info_of(name, &resolved, top));
                }
                Err(err) => tracing::warn!(image = %name, error = %err, "skipping image"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Resolves a target whose content is in the store, labels it for GC, and unpacks it;
    /// returns the top chain ID.
    async fn prepare(
        &self,
        lease: &Lease,
        name: &str,
        target: &oci::Descriptor,
    ) -> Result<String, ImageError> {
        let resolved = oci::resolve(&self.containerd, name, target).await?;
        for (digest, labels) in resolved.gc_labels() {
            content::ensure_labels(&self.containerd, &digest, &labels).await?;
        }
        let chain_id =
            unpack::unpack(lease, name, &resolved.manifest.layers, resolved.diff_ids()).await?;
        // The config keeps the unpacked snapshot alive, as containerd's unpacker arranges.
        let labels = HashMap::from([(unpack::snapshot_gc_label(), chain_id.clone())]);
        content::ensure_labels(&self.containerd, &resolved.manifest.config.digest, &labels).await?;
        Ok(chain_id)
    }

    async fn image_record(&self, name: &str) -> Result<Option<Image>, ImageError> {
        match self
            .containerd
            .images()
            .get(self.containerd.request(GetImageRequest {
                name: name.to_owned(),
            }))
            .await
        {
            Ok(reply) => Ok(reply.into_inner().image),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(ImageError::containerd(format!("get image {name}"), status)),
        }
    }

    /// Creates the image record, or points an existing one at `target` (untouched when it
    /// already does).
    async fn record(&self, name: &str, target: &oci::Descriptor) -> Result<(), ImageError> {
        let wanted = ApiDescriptor {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size: target.size as i64,
            annotations: HashMap::new(),
        };
        let image = Image {
            name: name.to_owned(),
            labels: HashMap::new(),
            target: Some(wanted.clone()),
            created_at: None,
            updated_at: None,
        };
        if let Some(existing) = self.image_record(name).await? {
            if existing
                .target
                .as_ref()
                .is_some_and(|t| t.digest == wanted.digest && t.media_type == wanted.media_type)
            {
                return Ok(());
            }
            self.containerd
                .images()
                .update(self.containerd.request(UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".to_owned()],
                    }),
                    source_date_epoch: None,
                }))
                .await
                .map_err(|status| ImageError::containerd(format!("update image {name}"), status))?;
            return Ok(());
        }
        match self
            .containerd
            .images()
            .create(self.containerd.request(CreateImageRequest {
                image: Some(image),
                source_date_epoch: None,
            }))
            .await
        {
            Ok(_) => Ok(()),
            // Created concurrently (another import of the same name): point it at ours.
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                Box::pin(self.record(name, target)).await
            }
            Err(status) => Err(ImageError::containerd(
                format!("create image {name}"),
                status,
            )),
        }
    }
}

fn descriptor_of(name: &str, target: Option<ApiDescriptor>) -> Result<oci::Descriptor, ImageError> {
    let Some(target) = target else {
        return Err(ImageError::invalid(
            &format!("image {name}"),
            "record has no target",
        ));
    };
    Ok(oci::Descriptor {
        media_type: target.media_type,
        digest: target.digest,
        size: u64::try_from(target.size).unwrap_or(0),
        ..Default::default()
    })
}

fn info_of(name: String, resolved: &oci::Resolved, chain_id: String) -> ImageInfo {
    ImageInfo {
        name,
        digest: resolved.target.digest.clone(),
        config: resolved.config.clone(),
        chain_id,
        size: resolved.size(),
    }
}

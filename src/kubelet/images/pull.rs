//! Pulls from an OCI distribution registry (Docker Hub, a private `docker-registry`, ...)
//! through the oci-client crate: it speaks the HTTP API, the anonymous/basic/bearer-token
//! auth dance and TLS; this module takes the raw manifests (so their digests are the
//! registry's), picks the linux/amd64 manifest of an index, and streams every blob into
//! the content store under the caller's lease — children before the documents that
//! reference them, as containerd's fetch handlers do — with the
//! `containerd.io/distribution.source.<registry>` label.

use std::collections::HashMap;

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference};

use super::content::{self, BlobWriter, Lease};
use super::oci::{self, DOCKER_LIST, DOCKER_MANIFEST, Document, OCI_INDEX, OCI_MANIFEST};
use super::reference::is_loopback_registry;
use super::{ImageError, RegistryAuth};

const ACCEPT: &[&str] = &[OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];

/// A registry client for `reference`: plain HTTP for loopback and listed insecure
/// registries, HTTPS otherwise.
fn client_for(reference: &Reference, insecure: &[String]) -> Client {
    let mut plain: Vec<String> = insecure.to_vec();
    let registry = reference.resolve_registry().to_owned();
    if is_loopback_registry(&registry) && !plain.contains(&registry) {
        plain.push(registry);
    }
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain),
        platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
        ..Default::default()
    })
}

fn oci_auth(auth: &RegistryAuth) -> OciAuth {
    match auth {
        RegistryAuth::Anonymous => OciAuth::Anonymous,
        RegistryAuth::Basic { username, password } => {
            OciAuth::Basic(username.clone(), password.clone())
        }
    }
}

/// Whether a registry error means "no such repository, tag, manifest or blob".
pub(crate) fn registry_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::BlobUnknown
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        _ => false,
    }
}

/// Whether a registry error means the credentials were missing or refused.
pub(crate) fn registry_unauthorized(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        _ => false,
    }
}

/// Fetches `reference` into the content store; returns the image's target descriptor.
pub(crate) async fn fetch(
    lease: &Lease,
    name: &str,
    reference: &Reference,
    auth: &RegistryAuth,
    insecure: &[String],
) -> Result<oci::Descriptor, ImageError> {
    let client = client_for(reference, insecure);
    let registry_error = |source| ImageError::Registry {
        reference: name.to_owned(),
        source: Box::new(source),
    };
    let (raw, digest) = client
        .pull_manifest_raw(reference, &oci_auth(auth), ACCEPT)
        .await
        .map_err(registry_error)?;
    let what = format!("image {name} manifest {digest}");
    content::check_digest(&what, &digest)?;
    content::verify(&what, &digest, &raw)?;
    let source_labels = HashMap::from([(
        format!("containerd.io/distribution.source.{}", reference.registry()),
        reference.repository().to_owned(),
    )]);
    let (target, manifest_raw, manifest_descriptor, index) =
        match oci::parse_document(&what, "", &raw)? {
            Document::Manifest(manifest) => {
                let descriptor = oci::Descriptor {
                    media_type: manifest
                        .media_type
                        .clone()
                        .unwrap_or(OCI_MANIFEST.to_owned()),
                    digest: digest.clone(),
                    size: raw.len() as u64,
                    ..Default::default()
                };
                (descriptor.clone(), raw.clone(), descriptor, None)
            }
            Document::Index(index) => {
                let target = oci::Descriptor {
                    media_type: index.media_type.clone().unwrap_or(OCI_INDEX.to_owned()),
                    digest: digest.clone(),
                    size: raw.len() as u64,
                    ..Default::default()
                };
                let Some(chosen) = oci::select_platform(&index).cloned() else {
                    return Err(ImageError::NoPlatform {
                        image: name.to_owned(),
                        platform: format!("{}/{}", oci::OS, oci::ARCHITECTURE),
                    });
                };
                let by_digest = reference.clone_with_digest(chosen.digest.clone());
                let (manifest_raw, manifest_digest) = client
                    .pull_manifest_raw(&by_digest, &oci_auth(auth), ACCEPT)
                    .await
                    .map_err(registry_error)?;
                let what = format!("image {name} manifest {}", chosen.digest);
                if manifest_digest != chosen.digest {
                    return Err(ImageError::DigestMismatch {
                        what,
                        expected: chosen.digest,
                        actual: manifest_digest,
                    });
                }
                content::verify(&what, &chosen.digest, &manifest_raw)?;
                (target, manifest_raw, chosen, Some(raw.clone()))
            }
        };
    let manifest_what = format!("image {name} manifest {}", manifest_descriptor.digest);
    let manifest = match oci::parse_document(
        &manifest_what,
        &manifest_descriptor.media_type,
        &manifest_raw,
    )? {
        Document::Manifest(manifest) => manifest,
        Document::Index(_) => {
            return Err(ImageError::invalid(
                &manifest_what,
                "nested index where a manifest was expected",
            ));
        }
    };
    // Config first: its diff IDs are checked against the layers before any layer is fetched.
    let config_what = format!("image {name} config {}", manifest.config.digest);
    fetch_blob(
        lease,
        &client,
        reference,
        &config_what,
        &manifest.config,
        &source_labels,
    )
    .await?;
    let config_raw =
        content::read_blob(lease.containerd(), &manifest.config.digest, &config_what).await?;
    let config = oci::parse_config(&config_what, &config_raw)?;
    oci::check_layers(&format!("image {name}"), &manifest, &config)?;
    for (i, layer) in manifest.layers.iter().enumerate() {
        let what = format!("image {name} layer {i} ({})", layer.digest);
        fetch_blob(lease, &client, reference, &what, layer, &source_labels).await?;
    }
    content::write_bytes(
        lease,
        &manifest_what,
        &manifest_descriptor.digest,
        &manifest_raw,
        source_labels.clone(),
    )
    .await?;
    if let Some(index_raw) = index {
        content::write_bytes(lease, &what, &target.digest, &index_raw, source_labels).await?;
    }
    Ok(target)
}

/// Streams one blob from the registry into the content store unless it is there already.
async fn fetch_blob(
    lease: &Lease,
    client: &Client,
    reference: &Reference,
    what: &str,
    descriptor: &oci::Descriptor,
    labels: &HashMap<String, String>,
) -> Result<(), ImageError> {
    let containerd = lease.containerd();
    if content::info(containerd, &descriptor.digest)
        .await?
        .is_some()
    {
        lease.hold_content(&descriptor.digest).await?;
        return content::ensure_labels(containerd, &descriptor.digest, labels).await;
    }
    let Some(mut writer) = BlobWriter::open(
        lease,
        what,
        Some(&descriptor.digest),
        Some(descriptor.size),
        labels.clone(),
    )
    .await?
    else {
        lease.hold_content(&descriptor.digest).await?;
        return content::ensure_labels(containerd, &descriptor.digest, labels).await;
    };
    let layer = OciDescriptor {
        media_type: descriptor.media_type.clone(),
        digest: descriptor.digest.clone(),
        size: descriptor.size as i64,
        ..Default::default()
    };
    let mut stream = client
        .pull_blob_stream(reference, &layer)
        .await
        .map_err(|source| ImageError::Registry {
            reference: format!("{reference} ({what})"),
            source: Box::new(source),
        })?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| ImageError::Download {
            what: what.to_owned(),
            source,
        })?;
        writer.write(&chunk).await?;
    }
    let (_, written) = writer.commit().await?;
    if written == content::Written::Existing {
        lease.hold_content(&descriptor.digest).await?;
        content::ensure_labels(containerd, &descriptor.digest, labels).await?;
    }
    Ok(())
}

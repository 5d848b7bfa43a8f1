//! Image archives: an OCI image-layout tar (`oci-layout`, `index.json`, `blobs/sha256/…`)
//! or a `docker save` tar (`manifest.json` with `Config`, `RepoTags`, `Layers`), plain or
//! gzip-compressed, read in one pass as containerd's `images/archive` importer does. A
//! blocking thread walks the tar and streams each file's bytes to the async side, which
//! writes blobs straight into the content store (skipping those it already has) and keeps
//! only the small JSON files in memory. What the archive names is then resolved into image
//! targets; nothing here creates an image record (that is `ImageStore`'s last step).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use tokio::sync::mpsc;

use super::ImageError;
use super::content::{self, BlobWriter, Lease, MAX_JSON_BLOB, WRITE_CHUNK};
use super::oci::{self, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST};
use super::reference;

/// The annotation containerd writes with an image's full name.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation naming a reference (a full name, or just a tag).
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What the reader thread sends for each tar entry.
enum Item {
    File { path: String, size: u64 },
    Chunk(Vec<u8>),
    EndOfFile,
    Symlink { path: String, target: String },
}

/// A file of the archive now in the content store.
#[derive(Clone, Debug)]
struct Blob {
    digest: String,
    size: u64,
    gzip: bool,
}

/// An image the archive names: its normalised name and target descriptor.
#[derive(Clone, Debug)]
pub(crate) struct Named {
    pub name: String,
    pub target: oci::Descriptor,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct DockerManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: oci::Descriptor,
    layers: Vec<oci::Descriptor>,
}

/// `a/./b/../c` → `a/c`, the way tar paths and symlink targets are compared.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn entry_path(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect();
    clean_path(&parts.join("/"))
}

/// Walks the tar on the calling (blocking) thread, sending its entries. Stops quietly when
/// the receiver is gone (the import failed and stopped listening).
fn read_tar(
    path: &Path,
    sender: &mpsc::Sender<Result<Item, ImageError>>,
) -> Result<(), ImageError> {
    let io = |entry: Option<&str>| {
        let entry = entry.map(str::to_owned);
        move |source| ImageError::ArchiveRead { entry, source }
    };
    let file = std::fs::File::open(path).map_err(io(None))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let gzip = reader
        .fill_buf()
        .map_err(io(None))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(reader);
    let mut seen_any = false;
    for entry in archive.entries().map_err(io(None))? {
        let mut entry = entry.map_err(io(None))?;
        seen_any = true;
        let name = entry_path(&entry.path().map_err(io(None))?);
        let kind = entry.header().entry_type();
        let item = if kind.is_file() {
            Item::File {
                path: name.clone(),
                size: entry.size(),
            }
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(io(Some(&name)))?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
            let target = if target.starts_with('/') {
                clean_path(&target)
            } else {
                clean_path(&format!("{dir}/{target}"))
            };
            Item::Symlink {
                path: name.clone(),
                target,
            }
        } else {
            continue;
        };
        let is_file = matches!(item, Item::File { .. });
        if sender.blocking_send(Ok(item)).is_err() {
            return Ok(());
        }
        if !is_file {
            continue;
        }
        loop {
            let mut chunk = vec![0u8; WRITE_CHUNK];
            let mut filled = 0;
            while filled < chunk.len() {
                let n = entry.read(&mut chunk[filled..]).map_err(io(Some(&name)))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            if sender.blocking_send(Ok(Item::Chunk(chunk))).is_err() {
                return Ok(());
            }
        }
        if sender.blocking_send(Ok(Item::EndOfFile)).is_err() {
            return Ok(());
        }
    }
    if !seen_any {
        return Err(ImageError::invalid(
            "archive",
            "not a tar archive, or an empty one",
        ));
    }
    Ok(())
}

/// Everything one pass over the archive learned.
#[derive(Default)]
struct Pass {
    /// Files written to the content store, by path in the archive.
    blobs: HashMap<String, Blob>,
    /// Small JSON (and `oci-layout`, `repositories`) files, by path.
    json: HashMap<String, Vec<u8>>,
    symlinks: HashMap<String, String>,
}

/// Files kept in memory rather than written to the content store: the layout's JSON, and
/// the legacy `docker save` per-layer metadata (`<id>/json`, `<id>/VERSION`) that no image
/// references.
fn is_json_file(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    path.ends_with(".json")
        || path == "oci-layout"
        || path == "repositories"
        || base == "json"
        || base == "VERSION"
}

/// Reads the archive into the content store under `lease` and returns the images it names
/// (validated: each target resolves to a linux/amd64 manifest whose config and layers are
/// all present).
pub(crate) async fn import(lease: &Lease, path: &Path) -> Result<Vec<Named>, ImageError> {
    let (sender, mut receiver) = mpsc::channel::<Result<Item, ImageError>>(8);
    let reader_path: PathBuf = path.to_owned();
    let reader = tokio::task::spawn_blocking(move || {
        if let Err(err) = read_tar(&reader_path, &sender) {
            let _ = sender.blocking_send(Err(err));
        }
    });
    let pass = receive(lease, &mut receiver).await;
    // Stop the reader if we stopped early; it notices the closed channel.
    drop(receiver);
    let _ = reader.await;
    let pass = pass?;
    if pass.json.contains_key("index.json") {
        oci_layout(lease, &pass).await
    } else if pass.json.contains_key("manifest.json") {
        docker_archive(lease, &pass).await
    } else {
        Err(ImageError::invalid(
            "archive",
            "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
        ))
    }
}

async fn receive(
    lease: &Lease,
    receiver: &mut mpsc::Receiver<Result<Item, ImageError>>,
) -> Result<Pass, ImageError> {
    let mut pass = Pass::default();
    while let Some(item) = receiver.recv().await {
        match item? {
            Item::File { path, size } => {
                if is_json_file(&path) && !path.starts_with("blobs/") {
                    let data = receive_bytes(receiver, &path, size).await?;
                    pass.json.insert(path, data);
                } else {
                    let blob = receive_blob(lease, receiver, &path, size).await?;
                    pass.blobs.insert(path, blob);
                }
            }
            Item::Symlink { path, target } => {
                pass.symlinks.insert(path, target);
            }
            Item::Chunk(_) | Item::EndOfFile => {
                return Err(ImageError::invalid("archive", "reader out of step"));
            }
        }
    }
    Ok(pass)
}

async fn receive_bytes(
    receiver: &mut mpsc::Receiver<Result<Item, ImageError>>,
    path: &str,
    size: u64,
) -> Result<Vec<u8>, ImageError> {
    if size > MAX_JSON_BLOB {
        return Err(ImageError::invalid(
            path,
            format!("{size} bytes is too large for JSON"),
        ));
    }
    let mut data = Vec::with_capacity(size as usize);
    loop {
        match receiver.recv().await {
            Some(Ok(Item::Chunk(chunk))) => data.extend_from_slice(&chunk),
            Some(Ok(Item::EndOfFile)) => return Ok(data),
            Some(Err(err)) => return Err(err),
            Some(Ok(_)) | None => {
                return Err(ImageError::invalid(path, "archive ended inside this file"));
            }
        }
    }
}

/// Streams one archive file into the content store. Files under `blobs/<alg>/` are named by
/// their digest, which the write verifies; others (a `docker save` layer.tar) are hashed
/// as they go and stored under the digest found.
async fn receive_blob(
    lease: &Lease,
    receiver: &mut mpsc::Receiver<Result<Item, ImageError>>,
    path: &str,
    size: u64,
) -> Result<Blob, ImageError> {
    let expected = match path.strip_prefix("blobs/") {
        Some(rest) => {
            let digest = rest.replacen('/', ":", 1);
            content::check_digest(path, &digest)?;
            Some(digest)
        }
        None => None,
    };
    let what = format!("archive entry {path}");
    let mut writer = None;
    let mut skip = false;
    if let Some(digest) = &expected {
        // Held before the check (see content::write_bytes): the lease then keeps the blob
        // if it exists, and costs nothing if it does not and is written below.
        lease.hold_content(digest).await?;
        skip = content::info(lease.containerd(), digest).await?.is_some();
    }
    if !skip {
        writer = BlobWriter::open(
            lease,
            &what,
            expected.as_deref(),
            Some(size),
            HashMap::new(),
        )
        .await?;
        if writer.is_none()
            && let Some(digest) = &expected
        {
            // Committed by someone else between our check and the write.
            lease.hold_content(digest).await?;
        }
    }
    let mut gzip = None;
    let mut received = 0u64;
    loop {
        match receiver.recv().await {
            Some(Ok(Item::Chunk(chunk))) => {
                if gzip.is_none() {
                    gzip = Some(chunk.starts_with(&[0x1f, 0x8b]));
                }
                received += chunk.len() as u64;
                if let Some(writer) = writer.as_mut() {
                    writer.write(&chunk).await?;
                }
            }
            Some(Ok(Item::EndOfFile)) => break,
            Some(Err(err)) => return Err(err),
            Some(Ok(_)) | None => {
                return Err(ImageError::invalid(&what, "archive ended inside this file"));
            }
        }
    }
    if received != size {
        return Err(ImageError::invalid(
            &what,
            format!("{received} bytes where the tar header says {size}"),
        ));
    }
    let digest = match (writer, expected) {
        (Some(writer), _) => {
            let (digest, written) = writer.commit().await?;
            if written == content::Written::Existing {
                lease.hold_content(&digest).await?;
            }
            digest
        }
        (None, Some(digest)) => digest,
        (None, None) => {
            return Err(ImageError::invalid(&what, "content write gave no digest"));
        }
    };
    Ok(Blob {
        digest,
        size,
        gzip: gzip.unwrap_or(false),
    })
}

/// The name an OCI layout's index entry gives its image, if any: containerd's annotation,
/// else the OCI ref name when it is a whole reference rather than a bare tag.
fn oci_entry_name(descriptor: &oci::Descriptor) -> Result<Option<String>, ImageError> {
    if let Some(name) = descriptor.annotations.get(ANNOTATION_IMAGE_NAME) {
        return reference::normalize_reference(name).map(Some);
    }
    match descriptor.annotations.get(ANNOTATION_REF_NAME) {
        Some(name) if name.contains(['/', ':', '@']) => {
            reference::normalize_reference(name).map(Some)
        }
        Some(tag) => {
            tracing::warn!(%tag, "archive entry names only a tag; not imported under a name");
            Ok(None)
        }
        None => Ok(None),
    }
}

async fn oci_layout(lease: &Lease, pass: &Pass) -> Result<Vec<Named>, ImageError> {
    if let Some(layout) = pass.json.get("oci-layout") {
        let layout: serde_json::Value =
            serde_json::from_slice(layout).map_err(|source| ImageError::Json {
                what: "oci-layout".to_owned(),
                source,
            })?;
        let version = layout.get("imageLayoutVersion").and_then(|v| v.as_str());
        if version != Some("1.0.0") {
            return Err(ImageError::invalid(
                "oci-layout",
                format!("unsupported imageLayoutVersion {version:?}"),
            ));
        }
    }
    let data = &pass.json["index.json"];
    let index = match oci::parse_document("index.json", oci::OCI_INDEX, data)? {
        oci::Document::Index(index) => index,
        oci::Document::Manifest(_) => {
            return Err(ImageError::invalid(
                "index.json",
                "is a manifest, not an index",
            ));
        }
    };
    let mut named = Vec::new();
    for entry in &index.manifests {
        let Some(name) = oci_entry_name(entry)? else {
            continue;
        };
        named.push(Named {
            name,
            target: entry.clone(),
        });
    }
    finish(lease, named).await
}

async fn docker_archive(lease: &Lease, pass: &Pass) -> Result<Vec<Named>, ImageError> {
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&pass.json["manifest.json"])
        .map_err(|source| ImageError::Json {
            what: "manifest.json".to_owned(),
            source,
        })?;
    let lookup = |path: &str| {
        let path = clean_path(path);
        let path = pass.symlinks.get(&path).cloned().unwrap_or(path);
        pass.blobs.get(&path).cloned()
    };
    let mut named = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let what = format!("manifest.json entry {i}");
        let config = match lookup(&entry.config) {
            Some(blob) => blob,
            None => {
                let Some(data) = pass.json.get(&clean_path(&entry.config)) else {
                    return Err(ImageError::invalid(
                        &what,
                        format!("config {:?} is not in the archive", entry.config),
                    ));
                };
                let digest = content::sha256_digest(data);
                // `docker save` names the config file by its digest: hold it to that.
                let stem = entry.config.trim_end_matches(".json");
                let stem = stem.rsplit('/').next().unwrap_or(stem);
                if stem.len() == 64 && format!("sha256:{stem}") != digest {
                    return Err(ImageError::DigestMismatch {
                        what: format!("config {}", entry.config),
                        expected: format!("sha256:{stem}"),
                        actual: digest,
                    });
                }
                content::write_bytes(lease, &what, &digest, data, HashMap::new()).await?;
                Blob {
                    digest,
                    size: data.len() as u64,
                    gzip: false,
                }
            }
        };
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let Some(blob) = lookup(layer) else {
                return Err(ImageError::invalid(
                    &what,
                    format!("layer {layer:?} is not in the archive"),
                ));
            };
            layers.push(oci::Descriptor {
                media_type: if blob.gzip {
                    DOCKER_LAYER_GZIP
                } else {
                    DOCKER_LAYER
                }
                .to_owned(),
                digest: blob.digest,
                size: blob.size,
                ..Default::default()
            });
        }
        let manifest = DockerManifest {
            schema_version: 2,
            media_type: DOCKER_MANIFEST,
            config: oci::Descriptor {
                media_type: DOCKER_CONFIG.to_owned(),
                digest: config.digest,
                size: config.size,
                ..Default::default()
            },
            layers,
        };
        // Serialised from a struct, so the same archive always gives the same bytes and
        // digest: a second import finds the manifest already there.
        let bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::Json {
            what: what.clone(),
            source,
        })?;
        let digest = content::sha256_digest(&bytes);
        content::write_bytes(lease, &what, &digest, &bytes, HashMap::new()).await?;
        for tag in entry.repo_tags.iter().flatten() {
            named.push(Named {
                name: reference::normalize_reference(tag)?,
                target: oci::Descriptor {
                    media_type: DOCKER_MANIFEST.to_owned(),
                    digest: digest.clone(),
                    size: bytes.len() as u64,
                    ..Default::default()
                },
            });
        }
    }
    finish(lease, named).await
}

async fn finish(lease: &Lease, named: Vec<Named>) -> Result<Vec<Named>, ImageError> {
    if named.is_empty() {
        return Err(ImageError::invalid(
            "archive",
            "names no image (no io.containerd.image.name / org.opencontainers.image.ref.name \
             annotation, no RepoTags)",
        ));
    }
    // Resolve every image before any is recorded: a missing or corrupt blob anywhere fails
    // the whole archive with nothing half-imported.
    for image in &named {
        oci::resolve(lease.containerd(), &image.name, &image.target).await?;
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path("./index.json"), "index.json");
        assert_eq!(clean_path("a/../b/layer.tar"), "b/layer.tar");
        assert_eq!(clean_path("/abs//x/"), "abs/x");
        assert_eq!(
            entry_path(Path::new("./blobs/sha256/ab")),
            "blobs/sha256/ab"
        );
    }

    #[test]
    fn oci_names_come_from_annotations() {
        let with = |key: &str, value: &str| oci::Descriptor {
            annotations: HashMap::from([(key.to_owned(), value.to_owned())]),
            ..Default::default()
        };
        assert_eq!(
            oci_entry_name(&with(ANNOTATION_IMAGE_NAME, "busybox")).unwrap(),
            Some("docker.io/library/busybox:latest".to_owned())
        );
        assert_eq!(
            oci_entry_name(&with(ANNOTATION_REF_NAME, "reg:5000/a:1")).unwrap(),
            Some("reg:5000/a:1".to_owned())
        );
        assert_eq!(
            oci_entry_name(&with(ANNOTATION_REF_NAME, "latest")).unwrap(),
            None
        );
        assert_eq!(oci_entry_name(&oci::Descriptor::default()).unwrap(), None);
        assert!(oci_entry_name(&with(ANNOTATION_IMAGE_NAME, "Bad Name")).is_err());
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// Runs the reader thread's half alone, collecting what it sends.
    fn read_all(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        std::fs::write(&path, bytes).unwrap();
        let (sender, mut receiver) = mpsc::channel(1024);
        read_tar(&path, &sender)?;
        drop(sender);
        let mut files = Vec::new();
        while let Some(item) = receiver.blocking_recv() {
            match item? {
                Item::File { path, .. } => files.push((path, Vec::new())),
                Item::Chunk(chunk) => files.last_mut().unwrap().1.extend(chunk),
                Item::EndOfFile | Item::Symlink { .. } => {}
            }
        }
        Ok(files)
    }

    #[test]
    fn plain_and_gzip_tars_read_alike() {
        let tar = tar_of(&[("./index.json", b"{}"), ("blobs/sha256/x", b"data")]);
        let plain = read_all(&tar).unwrap();
        assert_eq!(plain[0], ("index.json".to_owned(), b"{}".to_vec()));
        assert_eq!(plain[1], ("blobs/sha256/x".to_owned(), b"data".to_vec()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        assert_eq!(read_all(&gz.finish().unwrap()).unwrap(), plain);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(read_all(b"").is_err());
        assert!(read_all(&[0x1f, 0x8b, 1, 2, 3]).is_err());
        let mut truncated = tar_of(&[("blobs/sha256/x", &[7u8; 5000])]);
        truncated.truncate(2000);
        assert!(read_all(&truncated).is_err());
    }
}

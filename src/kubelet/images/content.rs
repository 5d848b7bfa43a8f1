//! containerd's content store as the image code uses it: blobs written through the Content
//! service's Write stream (stat → write → commit with the expected digest and size, every
//! byte hashed here as well), read back whole when they are small JSON documents, and
//! labelled for containerd's garbage collector. Everything written runs under a
//! [`Lease`], so GC cannot collect content or snapshots while an import or pull is half
//! done; the GC reference labels keep them once the lease is gone.

use std::collections::HashMap;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{
    Info as ContentInfo, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction,
    WriteContentRequest,
};
use containerd_client::tonic;
use containerd_client::tonic::transport::Channel;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ImageError;
use crate::kubelet::containerd::Containerd;

/// The label on a blob that names the digest of its uncompressed form (a layer's diff ID).
pub(crate) const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";
/// The prefix of the labels by which one blob keeps others alive in GC.
pub(crate) const LABEL_GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// How long a lease outlives a crashed moor before GC may collect what it held.
/// JSON documents (manifests, indexes, configs) are read whole; anything this large is not one.
pub(crate) const MAX_JSON_BLOB: u64 = 16 << 20;
/// Bytes per Write message; containerd's own client uses 1 MiB.
pub(crate) const WRITE_CHUNK: usize = 1 << 20;

pub(crate) use crate::kubelet::containerd::Lease;

impl Lease {
    /// Puts existing content under the lease, so GC cannot take it between our check that
    /// it exists and the moment something references it.
    pub(crate) async fn hold_content(&self, digest: &str) -> Result<(), ImageError> {
        self.hold("content", digest).await.map_err(ImageError::from)
    }
}

fn content(containerd: &Containerd) -> ContentClient<Channel> {
    containerd.content()
}

/// The content store's record of a blob, `None` if it has none.
pub(crate) async fn info(
    containerd: &Containerd,
    digest: &str,
) -> Result<Option<ContentInfo>, ImageError> {
    match content(containerd)
        .info(containerd.request(InfoRequest {
            digest: digest.to_owned(),
        }))
        .await
    {
        Ok(reply) => Ok(reply.into_inner().info),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(ImageError::containerd(
            format!("content info {digest}"),
            status,
        )),
    }
}

/// Reads a whole blob that must be small (a JSON document), verifying its digest.
pub(crate) async fn read_blob(
    containerd: &Containerd,
    digest: &str,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    let Some(info) = info(containerd, digest).await? else {
        return Err(ImageError::MissingContent {
            what: what.to_owned(),
            digest: digest.to_owned(),
        });
    };
    if info.size < 0 || info.size as u64 > MAX_JSON_BLOB {
        return Err(ImageError::invalid(
            what,
            format!(
                "{digest} is {} bytes, too large for a JSON document",
                info.size
            ),
        ));
    }
    let mut stream = content(containerd)
        .read(containerd.request(ReadContentRequest {
            digest: digest.to_owned(),
            offset: 0,
            size: 0,
        }))
        .await
        .map_err(|status| ImageError::containerd(format!("read {what} {digest}"), status))?
        .into_inner();
    let mut data = Vec::with_capacity(info.size as usize);
    while let Some(message) = stream.next().await {
        let message = message
            .map_err(|status| ImageError::containerd(format!("read {what} {digest}"), status))?;
        data.extend_from_slice(&message.data);
        if data.len() as u64 > MAX_JSON_BLOB {
            return Err(ImageError::invalid(what, format!("{digest} is too large")));
        }
    }
    verify(what, digest, &data)?;
    Ok(data)
}

/// Checks bytes against a `sha256:` digest.
pub(crate) fn verify(what: &str, digest: &str, data: &[u8]) -> Result<(), ImageError> {
    let actual = sha256_digest(data);
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Validates a digest string: only sha256 is written or verified here.
pub(crate) fn check_digest(what: &str, digest: &str) -> Result<(), ImageError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(ImageError::invalid(
            what,
            format!("unsupported or malformed digest {digest:?} (want sha256:<64 hex>)"),
        ))
    }
}

/// Sets labels on a blob, touching only those that are missing or different (so a second
/// import rewrites nothing).
pub(crate) async fn ensure_labels(
    containerd: &Containerd,
    digest: &str,
    labels: &HashMap<String, String>,
) -> Result<(), ImageError> {
    if labels.is_empty() {
        return Ok(());
    }
    let Some(current) = info(containerd, digest).await? else {
        return Err(ImageError::MissingContent {
            what: "blob to label".to_owned(),
            digest: digest.to_owned(),
        });
    };
    let changed: Vec<&String> = labels
        .iter()
        .filter(|(k, v)| current.labels.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let paths = changed.iter().map(|k| format!("labels.{k}")).collect();
    content(containerd)
        .update(containerd.request(UpdateRequest {
            info: Some(ContentInfo {
                digest: digest.to_owned(),
                labels: labels.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        }))
        .await
        .map_err(|status| ImageError::containerd(format!("label content {digest}"), status))?;
    Ok(())
}

/// What a blob write did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The bytes were committed now.
    New,
    /// The store had the blob already; nothing was written.
    Existing,
}

/// One blob being written through the Content service's Write stream. Feed it with
/// [`BlobWriter::write`] and finish with [`BlobWriter::commit`]; dropping it unfinished
/// abandons the ingest (the lease lets GC clean it up).
pub(crate) struct BlobWriter {
    what: String,
    expected: Option<String>,
    total: Option<u64>,
    labels: HashMap<String, String>,
    sender: mpsc::Sender<WriteContentRequest>,
    replies: tonic::Streaming<containerd_client::services::v1::WriteContentResponse>,
    reference: String,
    offset: u64,
    hasher: Sha256,
}

impl BlobWriter {
    /// Opens a write of the blob `expected` (when known) of `total` bytes (when known).
    /// `Ok(None)` when the store already has that blob: nothing needs writing.
    pub(crate) async fn open(
        lease: &Lease,
        what: &str,
        expected: Option<&str>,
        total: Option<u64>,
        labels: HashMap<String, String>,
    ) -> Result<Option<Self>, ImageError> {
        // A fresh ingest ref per write: two pulls of the same blob then never contend for
        // one ref's lock, and an ingest left by a crash is simply abandoned to GC.
        let reference = format!(
            "moor-{}-{}",
            expected.unwrap_or("unknown"),
            uuid::Uuid::new_v4().simple()
        );
        let (sender, receiver) = mpsc::channel(4);
        // The first message must be queued before the call: containerd answers (and so the
        // call returns) only once it has read it.
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total: total.map_or(0, |t| t as i64),
            expected: expected.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        if sender.send(stat).await.is_err() {
            return Err(ImageError::invalid(what, "content write stream closed"));
        }
        let call = content(lease.containerd())
            .write(lease.request(ReceiverStream::new(receiver)))
            .await;
        let mut replies = match call {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::AlreadyExists => return Ok(None),
            Err(status) => return Err(ImageError::containerd(format!("write {what}"), status)),
        };
        match replies.message().await {
            Ok(Some(reply)) if reply.offset != 0 => {
                // A fresh ref has no earlier bytes; anything else is not ours to resume.
                return Err(ImageError::invalid(
                    what,
                    format!("ingest {reference} unexpectedly at offset {}", reply.offset),
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(ImageError::invalid(what, "content write stream closed")),
            Err(status) if status.code() == tonic::Code::AlreadyExists => return Ok(None),
            Err(status) => return Err(ImageError::containerd(format!("write {what}"), status)),
        }
        Ok(Some(BlobWriter {
            what: what.to_owned(),
            expected: expected.map(str::to_owned),
            total,
            labels,
            sender,
            replies,
            reference,
            offset: 0,
            hasher: Sha256::new(),
        }))
    }

    async fn exchange(&mut self, request: WriteContentRequest) -> Result<(), tonic::Status> {
        if self.sender.send(request).await.is_err() {
            // The stream ended on containerd's side: its reason is in the reply stream.
            return match self.replies.message().await {
                Err(status) => Err(status),
                Ok(_) => Err(tonic::Status::unavailable("content write stream closed")),
            };
        }
        match self.replies.message().await? {
            Some(_) => Ok(()),
            None => Err(tonic::Status::unavailable("content write stream closed")),
        }
    }

    /// Appends bytes.
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), ImageError> {
        if data.is_empty() {
            return Ok(());
        }
        if let Some(total) = self.total
            && self.offset + data.len() as u64 > total
        {
            return Err(ImageError::invalid(
                &self.what,
                format!("more than the expected {total} bytes"),
            ));
        }
        self.hasher.update(data);
        for chunk in data.chunks(WRITE_CHUNK) {
            let request = WriteContentRequest {
                action: WriteAction::Write as i32,
                r#ref: self.reference.clone(),
                offset: self.offset as i64,
                data: chunk.to_vec(),
                ..Default::default()
            };
            self.exchange(request)
                .await
                .map_err(|status| ImageError::containerd(format!("write {}", self.what), status))?;
            self.offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Checks size and digest and commits the blob under its digest, with its labels.
    /// Returns the digest.
    pub(crate) async fn commit(mut self) -> Result<(String, Written), ImageError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if let Some(total) = self.total
            && self.offset != total
        {
            return Err(ImageError::invalid(
                &self.what,
                format!("{} bytes where {total} were expected", self.offset),
            ));
        }
        if let Some(expected) = &self.expected
            && *expected != actual
        {
            return Err(ImageError::DigestMismatch {
                what: self.what.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        let request = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            total: self.offset as i64,
            offset: self.offset as i64,
            expected: actual.clone(),
            labels: std::mem::take(&mut self.labels),
            ..Default::default()
        };
        match self.exchange(request).await {
            Ok(()) => Ok((actual, Written::New)),
            // Someone (another import, or an earlier one when the digest was not known up
            // front) committed the same bytes first.
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                Ok((actual, Written::Existing))
            }
            Err(status) => Err(ImageError::containerd(
                format!("commit {}", self.what),
                status,
            )),
        }
    }
}

/// Writes a blob held in memory (a manifest or config): skipped if the store has it.
pub(crate) async fn write_bytes(
    lease: &Lease,
    what: &str,
    digest: &str,
    data: &[u8],
    labels: HashMap<String, String>,
) -> Result<Written, ImageError> {
    verify(what, digest, data)?;
    // Held before the check, not after: a GC running between "it exists" and "hold it"
    // would take it from under us (an earlier import's lease just ended, say).
    lease.hold_content(digest).await?;
    if info(lease.containerd(), digest).await?.is_some() {
        ensure_labels(lease.containerd(), digest, &labels).await?;
        return Ok(Written::Existing);
    }
    let Some(mut writer) = BlobWriter::open(
        lease,
        what,
        Some(digest),
        Some(data.len() as u64),
        labels.clone(),
    )
    .await?
    else {
        lease.hold_content(digest).await?;
        ensure_labels(lease.containerd(), digest, &labels).await?;
        return Ok(Written::Existing);
    };
    writer.write(data).await?;
    let (_, written) = writer.commit().await?;
    if written == Written::Existing {
        lease.hold_content(digest).await?;
        ensure_labels(lease.containerd(), digest, &labels).await?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked() {
        let good = sha256_digest(b"hello");
        assert!(check_digest("x", &good).is_ok());
        assert!(verify("x", &good, b"hello").is_ok());
        let err = verify("blob foo", &good, b"hellO").unwrap_err();
        assert!(err.to_string().contains("blob foo"), "{err}");
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        for bad in [
            "sha256:abc",
            "md5:00",
            &good.to_uppercase(),
            &good.replace("sha256", "sha512"),
        ] {
            assert!(check_digest("x", bad).is_err(), "{bad}");
        }
    }
}

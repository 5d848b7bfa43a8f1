//! Unpacking an image's layers into a chain of committed snapshots, as containerd's own
//! client does (`rootfs/apply.go`): for each layer, by the OCI chain ID of the layers up to
//! it, Stat the snapshot and stop there if it exists; otherwise Prepare a temporary active
//! snapshot on its parent, Diff.Apply the layer blob onto its mounts, check the applied
//! digest against the config's diff ID and Commit under the chain ID. Owns only the
//! snapshots it creates, in [`SNAPSHOTTER`].

use std::collections::HashMap;

use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::tonic;
use containerd_client::types::{Descriptor as ApiDescriptor, Mount};

use super::ImageError;
use super::content::{self, LABEL_UNCOMPRESSED, Lease};
use super::oci::Descriptor;
use crate::kubelet::containerd::{Containerd, SNAPSHOTTER};

/// The label on an image config that keeps its unpacked snapshot alive in GC.
pub(crate) fn snapshot_gc_label() -> String {
    format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}")
}

/// The OCI chain IDs of a stack of layers: the first is its diff ID, each next one
/// `sha256(parent_chain_id + " " + diff_id)`.
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => content::sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Whether a committed snapshot named `key` exists.
pub(crate) async fn snapshot_exists(
    containerd: &Containerd,
    key: &str,
) -> Result<bool, ImageError> {
    match containerd
        .snapshots()
        .stat(containerd.request(StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.to_owned(),
        }))
        .await
    {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
        Err(status) => Err(ImageError::containerd(
            format!("stat snapshot {key}"),
            status,
        )),
    }
}

/// Unpacks `layers` (with their config's `diff_ids`) under `lease`; returns the top chain
/// ID. Layers already unpacked (by this image or another sharing them) are skipped.
pub(crate) async fn unpack(
    lease: &Lease,
    image: &str,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<String, ImageError> {
    let chain = chain_ids(diff_ids);
    let Some(top) = chain.last().cloned() else {
        return Err(ImageError::invalid(
            &format!("image {image}"),
            "the image has no layers",
        ));
    };
    // Walk down from the top to find the highest snapshot already there, then apply upwards.
    let mut present = 0;
    for (i, chain_id) in chain.iter().enumerate().rev() {
        if snapshot_exists(lease.containerd(), chain_id).await? {
            present = i + 1;
            break;
        }
    }
    for i in present..chain.len() {
        let parent = if i == 0 { "" } else { chain[i - 1].as_str() };
        apply_layer(lease, image, i, &layers[i], &diff_ids[i], &chain[i], parent).await?;
    }
    Ok(top)
}

async fn apply_layer(
    lease: &Lease,
    image: &str,
    index: usize,
    layer: &Descriptor,
    diff_id: &str,
    chain_id: &str,
    parent: &str,
) -> Result<(), ImageError> {
    let containerd = lease.containerd();
    let what = format!("image {image} layer {index} ({})", layer.digest);
    let key = format!("extract-{} {chain_id}", uuid::Uuid::new_v4().simple());
    let mut snapshots = containerd.snapshots();
    let prepared = snapshots
        .prepare(lease.request(PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            key: key.clone(),
            parent: parent.to_owned(),
            labels: HashMap::from([("containerd.io/snapshot.ref".to_owned(), chain_id.to_owned())]),
        }))
        .await
        .map_err(|status| ImageError::containerd(format!("prepare snapshot for {what}"), status))?
        .into_inner();
    let result = apply_and_commit(
        lease,
        &what,
        layer,
        diff_id,
        chain_id,
        &key,
        prepared.mounts,
    )
    .await;
    if result.is_err() || matches!(result, Ok(Committed::AlreadyThere)) {
        // The active snapshot is ours alone; leaving it would pin its parent forever.
        let removed = snapshots
            .remove(lease.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: key.clone(),
            }))
            .await;
        if let Err(status) = removed
            && status.code() != tonic::Code::NotFound
        {
            tracing::warn!(%key, %status, "cannot remove temporary snapshot");
        }
    }
    result.map(|_| ())
}

enum Committed {
    Now,
    /// Another unpack of the same layer committed it first.
    AlreadyThere,
}

async fn apply_and_commit(
    lease: &Lease,
    what: &str,
    layer: &Descriptor,
    diff_id: &str,
    chain_id: &str,
    key: &str,
    mounts: Vec<Mount>,
) -> Result<Committed, ImageError> {
    let containerd = lease.containerd();
    let applied = containerd
        .diff()
        .apply(lease.request(ApplyRequest {
            diff: Some(ApiDescriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size as i64,
                annotations: layer.annotations.clone(),
            }),
            mounts,
            payloads: HashMap::new(),
            sync_fs: false,
        }))
        .await
        .map_err(|status| ImageError::containerd(format!("apply {what}"), status))?
        .into_inner();
    let applied_digest = applied.applied.map(|d| d.digest).unwrap_or_default();
    if applied_digest != diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("{what}: uncompressed content against the config's diff ID"),
            expected: diff_id.to_owned(),
            actual: applied_digest,
        });
    }
    let committed = containerd
        .snapshots()
        .commit(lease.request(CommitSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_owned(),
            name: chain_id.to_owned(),
            key: key.to_owned(),
            labels: HashMap::new(),
        }))
        .await;
    let outcome = match committed {
        Ok(_) => Committed::Now,
        Err(status) if status.code() == tonic::Code::AlreadyExists => Committed::AlreadyThere,
        Err(status) => {
            return Err(ImageError::containerd(
                format!("commit snapshot for {what}"),
                status,
            ));
        }
    };
    // The compressed blob remembers what it unpacks to, as containerd's unpacker records.
    if layer.digest != diff_id {
        let labels = HashMap::from([(LABEL_UNCOMPRESSED.to_owned(), diff_id.to_owned())]);
        content::ensure_labels(containerd, &layer.digest, &labels).await?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = format!("sha256:{}", "c".repeat(64));
        let chain = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chain[0], a);
        let ab = content::sha256_digest(format!("{a} {b}").as_bytes());
        assert_eq!(chain[1], ab);
        assert_eq!(
            chain[2],
            content::sha256_digest(format!("{ab} {c}").as_bytes())
        );
        assert!(chain_ids(&[]).is_empty());
    }
}

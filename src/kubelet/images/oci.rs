//! The image documents themselves — descriptors, manifests, indexes (OCI and Docker schema 2
//! alike) and configs — parsed leniently enough for what registries and `docker save`
//! actually produce, and resolved from a target descriptor down to the one linux/amd64
//! manifest, its config and its layers. Also the GC labels each document needs so that it
//! keeps its children alive in containerd.

use std::collections::HashMap;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::ImageError;
use super::content::{self, LABEL_GC_REF_CONTENT};
use crate::kubelet::containerd::Containerd;

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub(crate) const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The layer media types containerd's differ applies (zstd included: containerd 1.6 has it).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// The platform moor runs containers for.
pub(crate) const OS: &str = "linux";
pub(crate) const ARCHITECTURE: &str = "amd64";

/// A content descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest or index.
#[derive(Debug)]
pub(crate) enum Document {
    Manifest(Manifest),
    Index(Index),
}

pub(crate) fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub(crate) fn is_manifest_type(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

pub(crate) fn is_layer_type(media_type: &str) -> bool {
    LAYER_TYPES.contains(&media_type)
}

/// Parses a manifest or index. The descriptor's media type decides when it says; otherwise
/// the document's own `mediaType`, then its shape (`manifests` or `config`).
pub(crate) fn parse_document(
    what: &str,
    media_type: &str,
    data: &[u8],
) -> Result<Document, ImageError> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|source| ImageError::Json {
            what: what.to_owned(),
            source,
        })?;
    let own_type = value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let kind = if is_index_type(media_type) || is_manifest_type(media_type) {
        media_type.to_owned()
    } else if !own_type.is_empty() {
        own_type
    } else if value.get("manifests").is_some() {
        OCI_INDEX.to_owned()
    } else if value.get("config").is_some() {
        OCI_MANIFEST.to_owned()
    } else {
        String::new()
    };
    let json = |source| ImageError::Json {
        what: what.to_owned(),
        source,
    };
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(ImageError::invalid(
            what,
            "Docker schema 1 manifests are not supported",
        ));
    }
    if is_index_type(&kind) {
        let index: Index = serde_json::from_value(value).map_err(json)?;
        for entry in &index.manifests {
            content::check_digest(what, &entry.digest)?;
        }
        Ok(Document::Index(index))
    } else if is_manifest_type(&kind) {
        let manifest: Manifest = serde_json::from_value(value).map_err(json)?;
        content::check_digest(what, &manifest.config.digest)?;
        for layer in &manifest.layers {
            content::check_digest(what, &layer.digest)?;
        }
        Ok(Document::Manifest(manifest))
    } else {
        Err(ImageError::invalid(
            what,
            format!("not an image manifest or index (media type {kind:?})"),
        ))
    }
}

/// The index entry for linux/amd64; failing any platform, a lone entry without one.
pub(crate) fn select_platform(index: &Index) -> Option<&Descriptor> {
    let manifests = || {
        index
            .manifests
            .iter()
            .filter(|d| d.media_type.is_empty() || is_manifest_type(&d.media_type))
    };
    manifests()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == OS && p.architecture == ARCHITECTURE)
        })
        .or_else(|| {
            let mut without: Vec<_> = manifests().filter(|d| d.platform.is_none()).collect();
            if without.len() == 1 {
                without.pop()
            } else {
                None
            }
        })
}

/// An image resolved from its target down to what runs: the platform's manifest, config
/// and layers.
pub(crate) struct Resolved {
    pub target: Descriptor,
    /// The index the target is, if it is one, with the chosen entry's position.
    pub index: Option<(Index, usize)>,
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfiguration,
}

impl Resolved {
    pub(crate) fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }

    /// The image's size as containerd reports it: manifest, config and (compressed) layers.
    pub(crate) fn size(&self) -> u64 {
        self.manifest_descriptor.size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// The GC labels every document needs so that the target keeps everything alive:
    /// index → its chosen manifest, manifest → config and layers.
    pub(crate) fn gc_labels(&self) -> Vec<(String, HashMap<String, String>)> {
        let mut out = Vec::new();
        if let Some((index, _)) = &self.index {
            let labels = index
                .manifests
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("{LABEL_GC_REF_CONTENT}.m.{i}"), m.digest.clone()))
                .collect();
            out.push((self.target.digest.clone(), labels));
        }
        let mut labels = HashMap::from([(
            format!("{LABEL_GC_REF_CONTENT}.config"),
            self.manifest.config.digest.clone(),
        )]);
        for (i, layer) in self.manifest.layers.iter().enumerate() {
            labels.insert(
                format!("{LABEL_GC_REF_CONTENT}.l.{i}"),
                layer.digest.clone(),
            );
        }
        out.push((self.manifest_descriptor.digest.clone(), labels));
        out
    }
}

/// Checks a config against its manifest: one diff ID per layer, layers of known types.
pub(crate) fn check_layers(
    what: &str,
    manifest: &Manifest,
    config: &ImageConfiguration,
) -> Result<(), ImageError> {
    let diff_ids = config.rootfs().diff_ids();
    if manifest.layers.is_empty() {
        return Err(ImageError::invalid(what, "the image has no layers"));
    }
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::invalid(
            what,
            format!(
                "the manifest has {} layers but the config {} diff IDs",
                manifest.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    for (i, layer) in manifest.layers.iter().enumerate() {
        if !is_layer_type(&layer.media_type) {
            return Err(ImageError::invalid(
                what,
                format!(
                    "layer {i} has unsupported media type {:?}",
                    layer.media_type
                ),
            ));
        }
    }
    for diff_id in diff_ids {
        content::check_digest(what, diff_id)?;
    }
    Ok(())
}

pub(crate) fn parse_config(what: &str, data: &[u8]) -> Result<ImageConfiguration, ImageError> {
    serde_json::from_slice(data).map_err(|source| ImageError::Json {
        what: what.to_owned(),
        source,
    })
}

/// Reads the target and what it points to from the content store. `name` is for messages.
pub(crate) async fn resolve(
    containerd: &Containerd,
    name: &str,
    target: &Descriptor,
) -> Result<Resolved, ImageError> {
    let what = format!("image {name}");
    let data = content::read_blob(containerd, &target.digest, &format!("{what} target")).await?;
    let (index, manifest_descriptor, manifest) = match parse_document(
        &format!("{what} target {}", target.digest),
        &target.media_type,
        &data,
    )? {
        Document::Manifest(manifest) => (None, target.clone(), manifest),
        Document::Index(index) => {
            let Some(position) = select_platform(&index)
                .and_then(|chosen| index.manifests.iter().position(|m| m == chosen))
            else {
                return Err(ImageError::NoPlatform {
                    image: name.to_owned(),
                    platform: format!("{OS}/{ARCHITECTURE}"),
                });
            };
            let chosen = index.manifests[position].clone();
            let what_manifest = format!("{what} manifest {}", chosen.digest);
            let data = content::read_blob(containerd, &chosen.digest, &what_manifest).await?;
            match parse_document(&what_manifest, &chosen.media_type, &data)? {
                Document::Manifest(manifest) => (Some((index, position)), chosen, manifest),
                Document::Index(_) => {
                    return Err(ImageError::invalid(
                        &what_manifest,
                        "nested index where a manifest was expected",
                    ));
                }
            }
        }
    };
    let what_config = format!("{what} config {}", manifest.config.digest);
    let data = content::read_blob(containerd, &manifest.config.digest, &what_config).await?;
    let config = parse_config(&what_config, &data)?;
    check_layers(&what, &manifest, &config)?;
    Ok(Resolved {
        target: target.clone(),
        index,
        manifest_descriptor,
        manifest,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn entry(c: char, os: &str, arch: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest(c),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn index_picks_linux_amd64() {
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                entry('a', "linux", "arm64"),
                entry('b', "linux", "amd64"),
                entry('c', "unknown", "unknown"),
            ],
        };
        assert_eq!(select_platform(&index).unwrap().digest, digest('b'));
        let arm_only = Index {
            manifests: vec![entry('a', "linux", "arm64")],
            ..index
        };
        assert!(select_platform(&arm_only).is_none());
    }

    #[test]
    fn documents_are_told_apart_and_checked() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{}","size":3}},"layers":[]}}"#,
            digest('a')
        );
        assert!(matches!(
            parse_document("m", "", manifest.as_bytes()).unwrap(),
            Document::Manifest(_)
        ));
        let index = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_document("i", "", index.as_bytes()).unwrap(),
            Document::Index(_)
        ));
        let err = parse_document("the manifest", "", b"{not json").unwrap_err();
        assert!(err.to_string().contains("the manifest"), "{err}");
        let bad_digest = manifest.replace(&digest('a'), "sha256:xyz");
        let err = parse_document("m2", "", bad_digest.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("sha256:xyz"), "{err}");
        let err = parse_document("m3", "", br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        let err = parse_document("m4", "", br#"{"hello":1}"#).unwrap_err();
        assert!(err.to_string().contains("not an image manifest"), "{err}");
    }
}

//! A pod's volumes on the host and the bind mounts that put them into its containers:
//! emptyDir (a directory of the pod's), hostPath (with its `type` checks), configMap,
//! secret, downwardAPI and projected (their sources but service-account tokens) written as
//! files, and the pod's own /etc/hosts, /etc/hostname and /etc/resolv.conf. Everything of a
//! pod lives under its directory `<data dir>/pods/<uid>/`, removed with the pod.
//!
//! Files are replaced atomically (write, then rename) and only when their content changed,
//! so a container reading a config file never sees half of it and a re-sync writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, Volume};
use oci_spec::runtime::Mount;

use super::dns::{DnsSettings, resolv_conf};
use super::env::{Lookup, field_value};
use super::spec::{bind_mount, pod_hostname};

/// Why a volume could not be set up (the container's CreateContainerConfigError /
/// FailedMount message).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume:?}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume:?}: {kind} \"{name}\" not found")]
    NotFound {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error("volume {volume:?}: {path}: {source}")]
    Io {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volumeMount {mount:?} of container {container:?}: no volume of that name in the pod")]
    UnknownVolume { container: String, mount: String },
}

fn io(volume: &str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let volume = volume.to_owned();
    let path = path.to_owned();
    move |source| VolumeError::Io {
        volume,
        path,
        source,
    }
}

/// Where each of the pod's volumes is on the host, by volume name.
pub type Prepared = HashMap<String, PathBuf>;

/// Creates or refreshes every volume of the pod under `pod_dir`.
pub async fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    lookup: &dyn Lookup,
) -> Result<Prepared, VolumeError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut out = Prepared::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = prepare_one(pod, &namespace, volume, pod_dir, lookup).await?;
        out.insert(volume.name.clone(), path);
    }
    Ok(out)
}

async fn prepare_one(
    pod: &Pod,
    namespace: &str,
    volume: &Volume,
    pod_dir: &Path,
    lookup: &dyn Lookup,
) -> Result<PathBuf, VolumeError> {
    let name = volume.name.as_str();
    let dir = |kind: &str| pod_dir.join("volumes").join(kind).join(name);
    if let Some(host) = &volume.host_path {
        return host_path(name, &host.path, host.type_.as_deref().unwrap_or(""));
    }
    if volume.empty_dir.is_some() {
        let path = dir("empty-dir");
        std::fs::create_dir_all(&path).map_err(io(name, &path))?;
        // World-writable as upstream's emptyDir, so a non-root container can use it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .map_err(io(name, &path))?;
        return Ok(path);
    }
    let mut files: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
    let path;
    let from = |kind, object: &str, items, optional: Option<bool>| Keyed {
        volume: name,
        namespace,
        kind,
        name: object.to_owned(),
        items,
        optional: optional.unwrap_or(false),
    };
    if let Some(cm) = &volume.config_map {
        path = dir("configmap");
        let mode = cm.default_mode.unwrap_or(0o644) as u32;
        from(Kind::ConfigMap, &cm.name, cm.items.as_deref(), cm.optional)
            .project(lookup, mode, &mut files)
            .await?;
    } else if let Some(secret) = &volume.secret {
        path = dir("secret");
        let mode = secret.default_mode.unwrap_or(0o644) as u32;
        let object = secret.secret_name.clone().unwrap_or_default();
        from(
            Kind::Secret,
            &object,
            secret.items.as_deref(),
            secret.optional,
        )
        .project(lookup, mode, &mut files)
        .await?;
    } else if let Some(downward) = &volume.downward_api {
        path = dir("downward-api");
        let mode = downward.default_mode.unwrap_or(0o644) as u32;
        for item in downward.items.iter().flatten() {
            downward_item(pod, name, item, mode, &mut files)?;
        }
    } else if let Some(projected) = &volume.projected {
        path = dir("projected");
        let mode = projected.default_mode.unwrap_or(0o644) as u32;
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                from(Kind::ConfigMap, &cm.name, cm.items.as_deref(), cm.optional)
                    .project(lookup, mode, &mut files)
                    .await?;
            }
            if let Some(secret) = &source.secret {
                from(
                    Kind::Secret,
                    &secret.name,
                    secret.items.as_deref(),
                    secret.optional,
                )
                .project(lookup, mode, &mut files)
                .await?;
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    downward_item(pod, name, item, mode, &mut files)?;
                }
            }
            if source.service_account_token.is_some() {
                return Err(VolumeError::Invalid {
                    volume: name.to_owned(),
                    message: "service account tokens are not issued by this cluster yet".into(),
                });
            }
        }
    } else {
        return Err(VolumeError::Invalid {
            volume: name.to_owned(),
            message: "unsupported volume type (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)".into(),
        });
    }
    write_files(name, &path, &files)?;
    Ok(path)
}

/// Which keyed object a volume (or projected source) reads.
#[derive(Clone, Copy)]
enum Kind {
    ConfigMap,
    Secret,
}

/// A configMap or secret source of a volume.
struct Keyed<'a> {
    volume: &'a str,
    namespace: &'a str,
    kind: Kind,
    name: String,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

impl Keyed<'_> {
    /// Adds the object's keys (or the listed items) to `files`; a missing object is an
    /// error unless optional.
    async fn project(
        self,
        lookup: &dyn Lookup,
        mode: u32,
        files: &mut BTreeMap<String, (Vec<u8>, u32)>,
    ) -> Result<(), VolumeError> {
        let (read, kind) = match self.kind {
            Kind::ConfigMap => (
                lookup.config_map(self.namespace, &self.name).await,
                "configmap",
            ),
            Kind::Secret => (lookup.secret(self.namespace, &self.name).await, "secret"),
        };
        match read.map_err(|message| VolumeError::Invalid {
            volume: self.volume.to_owned(),
            message,
        })? {
            Some(data) => project(self.volume, &data, self.items, mode, files),
            None if self.optional => Ok(()),
            None => Err(VolumeError::NotFound {
                volume: self.volume.to_owned(),
                kind,
                name: self.name,
            }),
        }
    }
}

fn host_path(volume: &str, path: &str, kind: &str) -> Result<PathBuf, VolumeError> {
    let p = PathBuf::from(path);
    let invalid = |message: String| VolumeError::Invalid {
        volume: volume.to_owned(),
        message,
    };
    match kind {
        "" => {}
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(&p).map_err(io(volume, &p))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .map_err(io(volume, &p))?;
        }
        "Directory" if !p.is_dir() => {
            return Err(invalid(format!(
                "hostPath type check failed: {path} is not a directory"
            )));
        }
        "FileOrCreate" => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(volume, parent))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(io(volume, &p))?;
        }
        "File" if !p.is_file() => {
            return Err(invalid(format!(
                "hostPath type check failed: {path} is not a file"
            )));
        }
        "Socket" | "CharDevice" | "BlockDevice" if !p.exists() => {
            return Err(invalid(format!(
                "hostPath type check failed: {path} does not exist"
            )));
        }
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {}
        other => return Err(invalid(format!("unknown hostPath type {other:?}"))),
    }
    Ok(p)
}

/// All keys, or the listed items (each must exist unless the source is optional — the
/// caller decides that by whether data came at all).
fn project(
    volume: &str,
    data: &BTreeMap<String, String>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), VolumeError> {
    match items {
        None | Some([]) => {
            for (k, v) in data {
                files.insert(k.clone(), (v.clone().into_bytes(), mode));
            }
        }
        Some(items) => {
            for item in items {
                let value = data.get(&item.key).ok_or_else(|| VolumeError::Invalid {
                    volume: volume.to_owned(),
                    message: format!("configured to use key {:?}, which does not exist", item.key),
                })?;
                let item_mode = item.mode.map(|m| m as u32).unwrap_or(mode);
                files.insert(item.path.clone(), (value.clone().into_bytes(), item_mode));
            }
        }
    }
    Ok(())
}

fn downward_item(
    pod: &Pod,
    volume: &str,
    item: &k8s_openapi::api::core::v1::DownwardAPIVolumeFile,
    mode: u32,
    files: &mut BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), VolumeError> {
    let value = match (&item.field_ref, &item.resource_field_ref) {
        (Some(field), _) => {
            field_value(pod, &field.field_path).ok_or_else(|| VolumeError::Invalid {
                volume: volume.to_owned(),
                message: format!("unsupported fieldPath {:?}", field.field_path),
            })?
        }
        (None, Some(resource)) => {
            let container = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .cloned()
                .unwrap_or_default();
            super::env::resource_value(pod, &container, resource).map_err(|message| {
                VolumeError::Invalid {
                    volume: volume.to_owned(),
                    message,
                }
            })?
        }
        (None, None) => String::new(),
    };
    let item_mode = item.mode.map(|m| m as u32).unwrap_or(mode);
    files.insert(item.path.clone(), (value.into_bytes(), item_mode));
    Ok(())
}

/// Writes `files` under `dir` (creating sub-directories), replacing only changed files and
/// removing files no longer listed. Paths are relative and may not climb out of `dir`.
fn write_files(
    volume: &str,
    dir: &Path,
    files: &BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(volume, dir))?;
    for (rel, (content, mode)) in files {
        let rel_path = Path::new(rel);
        if rel_path.is_absolute()
            || rel_path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
        {
            return Err(VolumeError::Invalid {
                volume: volume.to_owned(),
                message: format!("path {rel:?} must be relative and may not contain '..'"),
            });
        }
        let target = dir.join(rel_path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(volume, parent))?;
        }
        let same = std::fs::read(&target).is_ok_and(|old| old == *content);
        if !same {
            let tmp = target.with_file_name(format!(
                ".{}.tmp",
                target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("file")
            ));
            std::fs::write(&tmp, content).map_err(io(volume, &tmp))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))
                .map_err(io(volume, &tmp))?;
            std::fs::rename(&tmp, &target).map_err(io(volume, &target))?;
        }
    }
    // Keys removed from the source go from the volume too (top level only: nested item
    // paths are rare and left as they are).
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let listed = files
                .keys()
                .any(|k| k == &name || k.starts_with(&format!("{name}/")));
            if !listed && entry.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

/// The bind mounts of a container's volumeMounts (subPath and readOnly honoured).
pub fn container_mounts(
    container: &Container,
    volumes: &Prepared,
) -> Result<Vec<Mount>, VolumeError> {
    let mut out = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let source = volumes
            .get(&vm.name)
            .ok_or_else(|| VolumeError::UnknownVolume {
                container: container.name.clone(),
                mount: vm.name.clone(),
            })?;
        let mut source = source.clone();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let sub_path = Path::new(sub);
            if sub_path.is_absolute()
                || sub_path
                    .components()
                    .any(|c| matches!(c, Component::ParentDir))
            {
                return Err(VolumeError::Invalid {
                    volume: vm.name.clone(),
                    message: format!("subPath {sub:?} must be relative and may not contain '..'"),
                });
            }
            source = source.join(sub_path);
            if !source.exists() {
                std::fs::create_dir_all(&source).map_err(io(&vm.name, &source))?;
            }
        }
        out.push(bind_mount(
            source,
            &vm.mount_path,
            vm.read_only.unwrap_or(false),
        ));
    }
    Ok(out)
}

/// The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf (written once per pod, shared
/// by its containers), as mounts. hostNetwork pods get the host's hosts file; resolv.conf
/// follows the pod's dnsPolicy ([`super::dns`]) over the host's file at `host_resolv`.
pub fn etc_files(
    pod: &Pod,
    pod_dir: &Path,
    ips: &[IpAddr],
    dns: &DnsSettings,
    host_resolv: &Path,
) -> Result<Vec<Mount>, VolumeError> {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let etc = pod_dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(io("etc-hosts", &etc))?;
    let hostname = pod_hostname(pod);
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        hosts_file(pod, &hostname, ips, &dns.cluster_domain)
    };
    let files = [
        ("hosts", hosts, "/etc/hosts"),
        ("hostname", format!("{hostname}\n"), "/etc/hostname"),
        (
            "resolv.conf",
            resolv_conf(
                pod,
                dns,
                &std::fs::read_to_string(host_resolv).unwrap_or_default(),
            ),
            "/etc/resolv.conf",
        ),
    ];
    let mut mounts = Vec::new();
    for (name, content, destination) in files {
        if host_network && name == "hostname" {
            continue;
        }
        let path = etc.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::write(&path, content).map_err(io("etc-hosts", &path))?;
        }
        mounts.push(bind_mount(path, destination, false));
    }
    Ok(mounts)
}

/// Kubelet's managed hosts file: localhost entries, the pod's own addresses with its
/// hostname (and FQDN when it has a subdomain), then spec.hostAliases.
fn hosts_file(pod: &Pod, hostname: &str, ips: &[IpAddr], domain: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    for ip in ips {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => out.push_str(&format!(
                "{ip}\t{hostname}.{sub}.{namespace}.svc.{domain}\t{hostname}\n"
            )),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases: Vec<_> = spec.host_aliases.iter().flatten().collect();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            out.push_str(&format!(
                "{}\t{}\n",
                alias.ip,
                alias
                    .hostnames
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\t")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, EmptyDirVolumeSource, PodSpec, VolumeMount,
    };

    struct Fake;
    #[async_trait::async_trait]
    impl Lookup for Fake {
        async fn config_map(
            &self,
            _: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, String> {
            Ok((name == "cfg")
                .then(|| BTreeMap::from([("index.html".to_owned(), "hello".to_owned())])))
        }
        async fn secret(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<BTreeMap<String, String>>, String> {
            Ok(None)
        }
    }

    fn pod(volumes: Vec<Volume>) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[tokio::test]
    async fn config_maps_become_files_and_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(vec![
            Volume {
                name: "site".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "cfg".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ]);
        let prepared = prepare(&p, dir.path(), &Fake).await.unwrap();
        let site = &prepared["site"];
        assert_eq!(
            std::fs::read_to_string(site.join("index.html")).unwrap(),
            "hello"
        );
        assert!(prepared["scratch"].is_dir());
        let c = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "site".into(),
                mount_path: "/www".into(),
                read_only: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mounts = container_mounts(&c, &prepared).unwrap();
        assert_eq!(mounts[0].destination(), Path::new("/www"));
        assert!(
            mounts[0]
                .options()
                .as_ref()
                .unwrap()
                .contains(&"ro".to_owned())
        );
        let bad = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(matches!(
            container_mounts(&bad, &prepared),
            Err(VolumeError::UnknownVolume { .. })
        ));
    }

    #[tokio::test]
    async fn missing_config_map_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(vec![Volume {
            name: "site".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "absent".into(),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let err = prepare(&p, dir.path(), &Fake).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume \"site\": configmap \"absent\" not found"
        );
    }

    #[test]
    fn item_paths_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let files = BTreeMap::from([("../evil".to_owned(), (b"x".to_vec(), 0o644))]);
        assert!(write_files("v", dir.path(), &files).is_err());
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let p = pod(vec![]);
        let hosts = hosts_file(&p, "web", &["10.42.0.5".parse().unwrap()], "cluster.local");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("10.42.0.5\tweb\n"));
    }
}

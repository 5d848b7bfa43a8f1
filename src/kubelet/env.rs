//! A container's environment variables as kubelet resolves them: `env` (plain values,
//! `valueFrom` fieldRef / resourceFieldRef / configMapKeyRef / secretKeyRef) and `envFrom`
//! (whole ConfigMaps and Secrets, with a prefix). ConfigMaps and Secrets are read through
//! a [`Lookup`] so the rules are unit-tested without an API server. A missing object or key
//! is an error worded as kubelet words it (the container's CreateContainerConfigError
//! message) unless the reference is optional.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::api::validation::parse_quantity;

/// Why the environment could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("reading {kind} {namespace}/{name}: {message}")]
    Read {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("env {name}: {message}")]
    Field { name: String, message: String },
}

/// Reads ConfigMap and Secret data (Secret values already decoded) of the pod's namespace.
#[async_trait::async_trait]
pub trait Lookup: Send + Sync {
    /// `Ok(None)` when the object does not exist.
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String>;
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String>;
}

/// The real lookup: GETs through the API server.
pub struct ApiLookup(pub kube::Client);

#[async_trait::async_trait]
impl Lookup for ApiLookup {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(self.0.clone(), namespace);
        let cm = api.get_opt(name).await.map_err(|e| e.to_string())?;
        Ok(cm.map(|cm| {
            let mut data = cm.data.unwrap_or_default();
            for (k, v) in cm.binary_data.unwrap_or_default() {
                data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
            }
            data
        }))
    }

    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(self.0.clone(), namespace);
        let secret = api.get_opt(name).await.map_err(|e| e.to_string())?;
        Ok(secret.map(|s| {
            let mut data: BTreeMap<String, String> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            data.extend(s.string_data.unwrap_or_default());
            data
        }))
    }
}

/// The container's variables in order (envFrom first, then env, as kubelet does; a later
/// definition of a name replaces an earlier one in place).
pub async fn resolve(
    pod: &Pod,
    container: &Container,
    lookup: &dyn Lookup,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |name: String, value: String| match out.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => out.push((name, value)),
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let sources = [
            from.config_map_ref
                .as_ref()
                .map(|r| ("configmap", &r.name, r.optional)),
            from.secret_ref
                .as_ref()
                .map(|r| ("secret", &r.name, r.optional)),
        ];
        for (kind, name, optional) in sources.into_iter().flatten() {
            let data = fetch(lookup, kind, &namespace, name, optional.unwrap_or(false)).await?;
            for (k, v) in data.unwrap_or_default() {
                set(format!("{prefix}{k}"), v);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            set(var.name.clone(), var.value.clone().unwrap_or_default());
            continue;
        };
        let value = if let Some(field) = &from.field_ref {
            Some(
                field_value(pod, &field.field_path).ok_or_else(|| EnvError::Field {
                    name: var.name.clone(),
                    message: format!("unsupported fieldPath {:?}", field.field_path),
                })?,
            )
        } else if let Some(resource) = &from.resource_field_ref {
            Some(
                resource_value(pod, container, resource).map_err(|message| EnvError::Field {
                    name: var.name.clone(),
                    message,
                })?,
            )
        } else if let Some(key) = &from.config_map_key_ref {
            keyed(
                lookup,
                "configmap",
                "ConfigMap",
                &namespace,
                &key.name,
                &key.key,
                key.optional.unwrap_or(false),
            )
            .await?
        } else if let Some(key) = &from.secret_key_ref {
            keyed(
                lookup,
                "secret",
                "Secret",
                &namespace,
                &key.name,
                &key.key,
                key.optional.unwrap_or(false),
            )
            .await?
        } else {
            None
        };
        if let Some(value) = value {
            set(var.name.clone(), value);
        }
    }
    Ok(out)
}

async fn fetch(
    lookup: &dyn Lookup,
    kind: &'static str,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, String>>, EnvError> {
    let read = if kind == "configmap" {
        lookup.config_map(namespace, name).await
    } else {
        lookup.secret(namespace, name).await
    };
    match read {
        Ok(Some(data)) => Ok(Some(data)),
        Ok(None) if optional => Ok(None),
        Ok(None) => Err(EnvError::NotFound {
            kind,
            name: name.to_owned(),
        }),
        Err(message) => Err(EnvError::Read {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            message,
        }),
    }
}

async fn keyed(
    lookup: &dyn Lookup,
    kind: &'static str,
    kind_title: &'static str,
    namespace: &str,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<String>, EnvError> {
    let Some(data) = fetch(lookup, kind, namespace, name, optional).await? else {
        return Ok(None);
    };
    match data.get(key) {
        Some(v) => Ok(Some(v.clone())),
        None if optional => Ok(None),
        None => Err(EnvError::MissingKey {
            kind: kind_title,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        }),
    }
}

/// The downward API's fields (env and downwardAPI volumes share them).
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let status = pod.status.clone().unwrap_or_default();
    let map_entry = |map: &Option<BTreeMap<String, String>>, rest: &str| -> Option<String> {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    let format_map = |map: &Option<BTreeMap<String, String>>| -> String {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&meta.labels),
        "metadata.annotations" => format_map(&meta.annotations),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()?
            .service_account_name
            .clone()
            .unwrap_or_default(),
        "status.hostIP" => status.host_ip.unwrap_or_default(),
        "status.hostIPs" => status
            .host_ips
            .iter()
            .flatten()
            .map(|i| i.ip.clone())
            .collect::<Vec<_>>()
            .join(","),
        "status.podIP" => status.pod_ip.unwrap_or_default(),
        "status.podIPs" => status
            .pod_ips
            .iter()
            .flatten()
            .map(|i| i.ip.clone())
            .collect::<Vec<_>>()
            .join(","),
        other => {
            if let Some(rest) = other.strip_prefix("metadata.labels") {
                map_entry(&meta.labels, rest)?
            } else if let Some(rest) = other.strip_prefix("metadata.annotations") {
                map_entry(&meta.annotations, rest)?
            } else {
                return None;
            }
        }
    })
}

/// `limits.cpu`, `requests.memory`, ... of the named (or this) container, divided by the
/// divisor and rounded up, as upstream's ExtractContainerResourceValue.
pub fn resource_value(
    pod: &Pod,
    container: &Container,
    reference: &k8s_openapi::api::core::v1::ResourceFieldSelector,
) -> Result<String, String> {
    let target = match reference
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        Some(name) => pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == name))
            .ok_or_else(|| format!("no container {name:?} in the pod"))?,
        None => container,
    };
    let (list, name) = reference
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {:?}", reference.resource))?;
    let resources = target.resources.clone().unwrap_or_default();
    let map = match list {
        "limits" => resources.limits,
        "requests" => resources.requests,
        _ => return Err(format!("unsupported resource {:?}", reference.resource)),
    };
    let Some(q) = map.as_ref().and_then(|m| m.get(name)) else {
        // Upstream falls back to the node's allocatable for unset limits; "0" for unset
        // requests. Without the node at hand, report 0 for both (documented gap).
        return Ok("0".to_owned());
    };
    let value = parse_quantity(&q.0)?.milli;
    let divisor = reference
        .divisor
        .as_ref()
        .map(|d| parse_quantity(&d.0).map(|q| q.milli))
        .transpose()?
        .filter(|d| *d != 0)
        // The default divisor is 1 (whole cores, bytes), 1000 in milli-units.
        .unwrap_or(1000);
    Ok(((value + divisor - 1) / divisor).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, SecretKeySelector,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    struct Fake;
    #[async_trait::async_trait]
    impl Lookup for Fake {
        async fn config_map(
            &self,
            _: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, String> {
            Ok((name == "cfg").then(|| {
                BTreeMap::from([
                    ("color".to_owned(), "blue".to_owned()),
                    ("size".to_owned(), "L".to_owned()),
                ])
            }))
        }
        async fn secret(
            &self,
            _: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, String> {
            Ok((name == "creds")
                .then(|| BTreeMap::from([("password".to_owned(), "hunter2".to_owned())])))
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn from(source: EnvVarSource) -> Option<EnvVarSource> {
        Some(source)
    }

    #[tokio::test]
    async fn every_source_resolves_in_order() {
        let c = Container {
            name: "c".into(),
            env_from: Some(vec![EnvFromSource {
                prefix: Some("CFG_".into()),
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                secret_ref: None,
            }]),
            env: Some(vec![
                EnvVar {
                    name: "PLAIN".into(),
                    value: Some("x".into()),
                    value_from: None,
                },
                EnvVar {
                    name: "POD".into(),
                    value: None,
                    value_from: from(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "APP".into(),
                    value: None,
                    value_from: from(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels['app']".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "COLOR".into(),
                    value: None,
                    value_from: from(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cfg".into(),
                            key: "color".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "PASSWORD".into(),
                    value: None,
                    value_from: from(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "CFG_size".into(),
                    value: Some("override".into()),
                    value_from: None,
                },
            ]),
            ..Default::default()
        };
        let env = resolve(&pod(), &c, &Fake).await.unwrap();
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("CFG_color", "blue"),
                ("CFG_size", "override"),
                ("PLAIN", "x"),
                ("POD", "web-1"),
                ("APP", "web"),
                ("COLOR", "blue"),
                ("PASSWORD", "hunter2"),
            ]
        );
    }

    #[tokio::test]
    async fn missing_references_are_named_unless_optional() {
        let key = |name: &str, key: &str, optional| Container {
            name: "c".into(),
            env: Some(vec![EnvVar {
                name: "V".into(),
                value: None,
                value_from: from(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: name.into(),
                        key: key.into(),
                        optional,
                    }),
                    ..Default::default()
                }),
            }]),
            ..Default::default()
        };
        assert_eq!(
            resolve(&pod(), &key("nope", "k", None), &Fake)
                .await
                .unwrap_err()
                .to_string(),
            "configmap \"nope\" not found"
        );
        assert_eq!(
            resolve(&pod(), &key("cfg", "k", None), &Fake)
                .await
                .unwrap_err()
                .to_string(),
            "couldn't find key k in ConfigMap shop/cfg"
        );
        assert!(
            resolve(&pod(), &key("nope", "k", Some(true)), &Fake)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

//! The Services every cluster starts with, created at server start next to the system
//! namespaces:
//!
//! - `default/kubernetes`: the API server itself at the first address of the service CIDR
//!   (port `https` 443/TCP to the server's port), labelled `component=apiserver`,
//!   `provider=kubernetes`, with no selector; its Endpoints and EndpointSlice (both named
//!   `kubernetes`) list the address each API server advertises.
//! - `kube-system/kube-dns`: the cluster DNS at the 10th address (`dns` 53/UDP, `dns-tcp`
//!   53/TCP), labelled `k8s-app=kube-dns`, `kubernetes.io/cluster-service=true`, with no
//!   selector and no endpoints: every node agent answers DNS on that address itself.
//!
//! The Services are created when missing and otherwise left alone, so a person's later
//! change to them stands (deleting one re-creates it at the next start). Several servers
//! starting together may race: the loser finds the object made by the winner.
//!
//! The endpoints are the server's own: at start, a server on its own store (embedded)
//! lists exactly its advertise address; servers sharing a store (etcd) each add theirs to
//! what is there. An address of a server that has gone for good stays listed until its
//! Endpoints object is edited or deleted (then re-created by the next server to start):
//! moor keeps no per-server liveness record (upstream's apiserver identity leases) to tell
//! a stopped server from a slow one. Servers on different ports get one EndpointSlice per
//! port (a slice has one port list): `kubernetes` for the lowest, `kubernetes-<port>` for
//! the others — named from the Endpoints alone, so servers starting together agree, and
//! each re-reads the Endpoints after writing the slices until they match. The Endpoints carry
//! `endpointslice.kubernetes.io/skip-mirror: "true"` and the slices
//! `endpointslice.kubernetes.io/managed-by: moor-apiserver`, so the endpoint controllers
//! leave both alone (as they do every Service without a selector).
//!
//! Loopback addresses (the default `127.0.0.1:6443`) are accepted here although upstream
//! validation refuses them in endpoints: moor does not validate Endpoints or EndpointSlice
//! addresses, and a loopback endpoint is right for a single machine, where the proxy that
//! forwards the `kubernetes` Service runs on the host whose loopback it names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{Config, cluster_dns_ip, kubernetes_service_ip};
use crate::api::registry::{self, ResourceInfo};
use crate::apiserver::Inner;
use crate::apiserver::error::ApiError;
use crate::apiserver::request::{Params, Target};

/// The field manager of what the server writes itself, and the `managed-by` value of the
/// `kubernetes` EndpointSlices.
pub const MANAGER: &str = "moor-apiserver";
/// The `kubernetes` Service's name and namespace.
pub const KUBERNETES_SERVICE: (&str, &str) = ("default", "kubernetes");
/// The cluster DNS Service's name and namespace.
pub const KUBE_DNS_SERVICE: (&str, &str) = ("kube-system", "kube-dns");

/// The EndpointSlice label naming the Service (upstream `discovery.LabelServiceName`).
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The EndpointSlice label naming its manager (upstream `discovery.LabelManagedBy`).
const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The Endpoints label telling the mirroring controller to leave it (upstream's
/// `discovery.LabelSkipMirror`, which kube-apiserver sets on its own Endpoints).
const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// How often a bootstrap write is retried when it loses to a concurrent writer.
const ATTEMPTS: usize = 8;

/// The `default/kubernetes` Service for `config`.
fn kubernetes_service(config: &Config) -> Value {
    let target_port = config.advertise.map_or(6443, |a| a.port());
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": KUBERNETES_SERVICE.1,
            "namespace": KUBERNETES_SERVICE.0,
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": kubernetes_service_ip(&config.cidr).to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": target_port}],
            "sessionAffinity": "None",
        },
    })
}

/// The `kube-system/kube-dns` Service for `config`.
fn kube_dns_service(config: &Config) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": KUBE_DNS_SERVICE.1,
            "namespace": KUBE_DNS_SERVICE.0,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_dns_ip(&config.cidr).to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
            "sessionAffinity": "None",
        },
    })
}

fn info(group: &str, version: &str, plural: &str) -> Result<&'static ResourceInfo, ApiError> {
    registry::by_resource(group, version, plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))
}

fn params() -> Params {
    let mut params = Params::default();
    params.0.insert("fieldManager".into(), MANAGER.into());
    params
}

/// The (address, port) pairs an Endpoints object lists.
fn endpoint_pairs(endpoints: &Value) -> BTreeSet<(IpAddr, u16)> {
    let mut pairs = BTreeSet::new();
    let subsets = endpoints.get("subsets").and_then(Value::as_array);
    for subset in subsets.into_iter().flatten() {
        let ips = subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("ip").and_then(Value::as_str))
            .filter_map(|ip| ip.parse::<IpAddr>().ok());
        let ports: Vec<u16> = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("port").and_then(Value::as_u64))
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        for ip in ips {
            pairs.extend(ports.iter().map(|p| (ip, *p)));
        }
    }
    pairs
}

/// The pairs grouped by port: Endpoints subsets (addresses offering the same ports share
/// one, as upstream's RepackSubsets makes them).
fn subsets(pairs: &BTreeSet<(IpAddr, u16)>) -> Value {
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for (ip, port) in pairs {
        by_port.entry(*port).or_default().push(ip.to_string());
    }
    Value::Array(
        by_port
            .into_iter()
            .map(|(port, ips)| {
                let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
                json!({
                    "addresses": addresses,
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                })
            })
            .collect(),
    )
}

/// Set `labels` on `obj` (keeping its others); whether anything changed.
fn ensure_labels(obj: &mut Value, labels: &[(&str, &str)]) -> bool {
    let mut changed = false;
    if !obj["metadata"]["labels"].is_object() {
        obj["metadata"]["labels"] = json!({});
    }
    for (key, value) in labels {
        if obj["metadata"]["labels"][*key] != *value {
            obj["metadata"]["labels"][*key] = json!(value);
            changed = true;
        }
    }
    changed
}

impl Inner {
    /// Create the `kubernetes` and `kube-dns` Services when missing and publish this
    /// server's address in the `kubernetes` Endpoints and EndpointSlice.
    pub(in crate::apiserver) async fn bootstrap_services(&self) -> Result<(), ApiError> {
        let config = self.services.config();
        self.ensure_service(KUBERNETES_SERVICE, kubernetes_service(&config))
            .await?;
        self.ensure_service(KUBE_DNS_SERVICE, kube_dns_service(&config))
            .await?;
        match config.advertise {
            Some(advertise) if advertise.ip().is_unspecified() => tracing::warn!(
                %advertise,
                "the advertise address is unspecified: the kubernetes Service gets no endpoints"
            ),
            Some(advertise) => self.publish_endpoints(advertise).await?,
            None => {}
        }
        Ok(())
    }

    /// The stored object, with its resourceVersion (a precondition for an update).
    async fn stored(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let (kv, _) = self.store.get(&info.key(Some(namespace), name)).await?;
        let Some(kv) = kv else {
            return Ok(None);
        };
        let mut value: Value = serde_json::from_slice(&kv.value).map_err(|e| {
            ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key))
        })?;
        value["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
        Ok(Some(value))
    }

    /// Create the Service `(namespace, name)` unless it exists. One that cannot get its
    /// well-known address (another Service holds it) is logged and skipped: the server
    /// still starts.
    async fn ensure_service(
        &self,
        (namespace, name): (&str, &str),
        obj: Value,
    ) -> Result<(), ApiError> {
        let info = info("", "v1", "services")?;
        if self.stored(info, namespace, name).await?.is_some() {
            return Ok(());
        }
        let target = Target {
            info,
            namespace: Some(namespace.to_owned()),
            name: None,
            subresource: None,
        };
        match self.create(&target, obj, &params()).await {
            Ok(_) => Ok(()),
            // Another server on the same etcd made it first.
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) if e.code == 422 => {
                // Its address may be reserved by the winner of a race; otherwise it is taken.
                if self.stored(info, namespace, name).await?.is_none() {
                    tracing::warn!(service = %format!("{namespace}/{name}"), error = %e.message, "could not create a system Service");
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Create or update `(namespace, name)` of `info` to what `desired` makes of the
    /// stored version (`None`: leave it as it is), retried when a concurrent writer wins.
    async fn converge(
        &self,
        info: &'static ResourceInfo,
        (namespace, name): (&str, &str),
        desired: impl Fn(Option<Value>) -> Option<Value>,
    ) -> Result<(), ApiError> {
        for _ in 0..ATTEMPTS {
            let existing = self.stored(info, namespace, name).await?;
            let exists = existing.is_some();
            let Some(obj) = desired(existing) else {
                return Ok(());
            };
            let target = Target {
                info,
                namespace: Some(namespace.to_owned()),
                name: exists.then(|| name.to_owned()),
                subresource: None,
            };
            let written = if exists {
                self.update(&target, obj, &params()).await
            } else {
                self.create(&target, obj, &params()).await
            };
            match written {
                Ok(_) => return Ok(()),
                Err(e) if e.reason == "Conflict" || e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::internal(format!(
            "{} {namespace}/{name} kept changing while the server published its address",
            info.kind
        )))
    }

    /// List `advertise` in the `kubernetes` Endpoints (alone, or next to the other
    /// servers' on a shared store), then make the EndpointSlices match.
    async fn publish_endpoints(&self, advertise: SocketAddr) -> Result<(), ApiError> {
        let shared = self.shared_store.load(Ordering::Relaxed);
        let endpoints = info("", "v1", "endpoints")?;
        let mine = (advertise.ip(), advertise.port());
        self.converge(endpoints, KUBERNETES_SERVICE, |existing| {
            let mut pairs = BTreeSet::from([mine]);
            if shared && let Some(e) = &existing {
                pairs.extend(endpoint_pairs(e));
            }
            let subsets = subsets(&pairs);
            let labels = [(LABEL_SKIP_MIRROR, "true")];
            match existing {
                None => Some(json!({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {
                        "name": KUBERNETES_SERVICE.1,
                        "namespace": KUBERNETES_SERVICE.0,
                        "labels": {LABEL_SKIP_MIRROR: "true"},
                    },
                    "subsets": subsets,
                })),
                Some(mut e) => {
                    let relabelled = ensure_labels(&mut e, &labels);
                    if e.get("subsets") == Some(&subsets) && !relabelled {
                        return None;
                    }
                    e["subsets"] = subsets;
                    Some(e)
                }
            }
        })
        .await?;
        // Another server may add itself meanwhile: the slices follow the Endpoints as they
        // are after this server's pass.
        let read = || async {
            let stored = self
                .stored(endpoints, KUBERNETES_SERVICE.0, KUBERNETES_SERVICE.1)
                .await?;
            Ok::<_, ApiError>(stored.map_or_else(|| BTreeSet::from([mine]), |e| endpoint_pairs(&e)))
        };
        let mut pairs = read().await?;
        for _ in 0..ATTEMPTS {
            self.publish_slices(&pairs).await?;
            let now = read().await?;
            if now == pairs {
                break;
            }
            pairs = now;
        }
        Ok(())
    }

    /// One EndpointSlice per port the `kubernetes` Endpoints list; stale ones of ours go.
    async fn publish_slices(&self, pairs: &BTreeSet<(IpAddr, u16)>) -> Result<(), ApiError> {
        let slices = info("discovery.k8s.io", "v1", "endpointslices")?;
        // IPv4 before IPv6, then by port: the first group is `kubernetes`.
        let mut groups: BTreeMap<(bool, u16), Vec<String>> = BTreeMap::new();
        for (ip, port) in pairs {
            groups
                .entry((ip.is_ipv6(), *port))
                .or_default()
                .push(ip.to_string());
        }
        let mut names = Vec::new();
        for (i, ((v6, port), ips)) in groups.into_iter().enumerate() {
            let name = if i == 0 {
                KUBERNETES_SERVICE.1.to_owned()
            } else if v6 {
                format!("{}-{port}-ipv6", KUBERNETES_SERVICE.1)
            } else {
                format!("{}-{port}", KUBERNETES_SERVICE.1)
            };
            let address_type = if v6 { "IPv6" } else { "IPv4" };
            let endpoints: Vec<Value> = ips
                .iter()
                .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
                .collect();
            let ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
            let labels = [
                (LABEL_SERVICE_NAME, KUBERNETES_SERVICE.1),
                (LABEL_MANAGED_BY, MANAGER),
            ];
            self.converge(slices, (KUBERNETES_SERVICE.0, &name), |existing| {
                let mut slice = existing.unwrap_or_else(|| {
                    json!({
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSlice",
                        "metadata": {"name": name, "namespace": KUBERNETES_SERVICE.0},
                    })
                });
                let fresh = slice["metadata"].get("resourceVersion").is_none();
                let mut changed = ensure_labels(&mut slice, &labels) || fresh;
                for (field, value) in [
                    ("addressType", json!(address_type)),
                    ("endpoints", Value::Array(endpoints.clone())),
                    ("ports", ports.clone()),
                ] {
                    if slice.get(field) != Some(&value) {
                        slice[field] = value;
                        changed = true;
                    }
                }
                changed.then_some(slice)
            })
            .await?;
            names.push(name);
        }
        // Slices of ours for ports no longer listed (this server moved to another port).
        let prefix = slices.prefix(Some(KUBERNETES_SERVICE.0));
        let listed = self.store.list(&prefix, Default::default()).await?;
        for kv in listed.kvs {
            let Ok(slice) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let labels = &slice["metadata"]["labels"];
            let name = slice["metadata"]["name"].as_str().unwrap_or_default();
            if labels[LABEL_SERVICE_NAME] != KUBERNETES_SERVICE.1
                || labels[LABEL_MANAGED_BY] != MANAGER
                || names.iter().any(|n| n == name)
            {
                continue;
            }
            let target = Target {
                info: slices,
                namespace: Some(KUBERNETES_SERVICE.0.to_owned()),
                name: Some(name.to_owned()),
                subresource: None,
            };
            match self.delete(&target, &json!({}), &params()).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_group_addresses_by_port() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let pairs = BTreeSet::from([(a, 6443), (b, 6443), (a, 7443)]);
        let subsets = subsets(&pairs);
        assert_eq!(
            subsets,
            json!([
                {"addresses": [{"ip": "10.0.0.2"}, {"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
            ])
        );
        let endpoints = json!({"subsets": subsets});
        assert_eq!(endpoint_pairs(&endpoints), pairs);
        assert!(endpoint_pairs(&json!({"subsets": "bad"})).is_empty());
    }

    #[test]
    fn system_services_use_the_well_known_addresses() {
        let config = Config {
            cidr: "10.96.0.0/12".parse().unwrap(),
            advertise: Some("127.0.0.1:7000".parse().unwrap()),
            ..Config::default()
        };
        let k = kubernetes_service(&config);
        assert_eq!(k["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(k["spec"]["ports"][0]["targetPort"], 7000);
        assert!(k["spec"].get("selector").is_none());
        let dns = kube_dns_service(&config);
        assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(dns["metadata"]["labels"]["k8s-app"], "kube-dns");
    }
}

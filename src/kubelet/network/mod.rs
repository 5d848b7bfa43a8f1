//! Pod networking through the standard CNI plugins (Debian's `containernetworking-plugins`):
//! every pod gets its own network namespace, `lo` brought up by `loopback`, and `eth0` on
//! a node-wide Linux bridge by `bridge` with `host-local` IPAM from this node's pod CIDR
//! (gateway on the bridge, masquerade for traffic leaving the pod network), plus `portmap`
//! when the pod asks for host ports.
//!
//! Owns, under [`NetworkConfig::data_dir`]:
//! - `netns/<pod uid>`: the pod's network namespace (see the `netns` submodule),
//! - `ipam/`: host-local's leases (keyed by network name `moor`),
//! - `pods/<pod uid>.json`: what was set up for the pod and the cached ADD results
//!   (see the `state` submodule), which DEL needs and which answers setup after a restart.
//!
//! It creates the bridge and the iptables rules only through the plugins and removes them
//! only through CNI DEL; it never deletes the bridge itself (other pods use it) nor the
//! shared `CNI-HOSTPORT-*` chains portmap creates. It knows nothing of the API server or
//! containerd: the pod sync calls [`Network::setup`] before starting a pod's sandbox and
//! [`Network::teardown`] after removing it.

mod cni;
mod netns;
mod state;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cni::CniError;
use cni::{ExecRunner, Runtime};
use state::{Attachment, PodRecord, Records};

/// Where the plugins are looked for when nothing else is configured: Debian's package
/// first, then the upstream release tarball's conventional place.
pub const DEFAULT_CNI_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// The CNI plugins pod networks need that none of `dirs` holds (checked before start-up, so
/// a missing package is reported once and clearly rather than at the first pod).
pub fn missing_plugins(dirs: &[PathBuf]) -> Vec<&'static str> {
    cni::REQUIRED_PLUGINS
        .into_iter()
        .filter(|plugin| cni::find_plugin(dirs, plugin).is_none())
        .collect()
}

/// Delete the pods' bridge `name` (for uninstalling: the agent never deletes it, as
/// other pods use it). Returns whether there was one.
pub async fn delete_bridge(name: &str) -> Result<bool, NetworkError> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
    let failed = |action: &str, e: rtnetlink::Error| NetworkError::Netlink {
        action: format!("{action} bridge {name}"),
        message: e.to_string(),
    };
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| NetworkError::Netlink {
            action: "opening a netlink socket".into(),
            message: e.to_string(),
        })?;
    let connection = tokio::spawn(connection);
    let result = async {
        let mut links = handle.link().get().match_name(name.to_owned()).execute();
        let link = match links.try_next().await {
            Ok(Some(link)) => link,
            Ok(None) => return Ok(false),
            // ENODEV: no such link.
            Err(rtnetlink::Error::NetlinkError(m)) if m.code.map(|c| -c.get()) == Some(19) => {
                return Ok(false);
            }
            Err(e) => return Err(failed("looking up", e)),
        };
        // Only a bridge: a mistyped name must not take down some other interface.
        let is_bridge = link.attributes.iter().any(|attribute| {
            matches!(attribute, LinkAttribute::LinkInfo(infos)
                if infos.iter().any(|info| matches!(info, LinkInfo::Kind(InfoKind::Bridge))))
        });
        if !is_bridge {
            return Err(NetworkError::Netlink {
                action: format!("deleting bridge {name}"),
                message: "it is not a bridge; left alone".into(),
            });
        }
        handle
            .link()
            .del(link.header.index)
            .execute()
            .await
            .map_err(|e| failed("deleting", e))?;
        Ok(true)
    }
    .await;
    connection.abort();
    result
}

/// The bridge's name when nothing else is configured.
pub const DEFAULT_BRIDGE: &str = "moor0";

/// How this node's pod network is built.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Directories searched for the plugin binaries, in order (also the plugins' CNI_PATH).
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The Linux bridge pods attach to (at most 15 bytes, a kernel limit).
    pub bridge: String,
    /// This node's pod range, e.g. "10.42.0.0/24"; the first address is the gateway.
    pub pod_cidr: String,
    /// Namespace mounts, IPAM state and cached ADD results.
    pub data_dir: PathBuf,
    /// The MTU of the bridge and the pods' interfaces; the kernel's default when `None`.
    pub mtu: Option<u32>,
}

impl NetworkConfig {
    /// A configuration with the default plugin directories and bridge name.
    pub fn new(pod_cidr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        NetworkConfig {
            cni_bin_dirs: DEFAULT_CNI_BIN_DIRS.iter().map(PathBuf::from).collect(),
            bridge: DEFAULT_BRIDGE.to_string(),
            pod_cidr: pod_cidr.into(),
            data_dir: data_dir.into(),
            mtu: None,
        }
    }

    /// Uses `bridge` as the bridge's name.
    pub fn with_bridge(mut self, bridge: impl Into<String>) -> Self {
        self.bridge = bridge.into();
        self
    }

    /// Searches `dirs` for the plugins.
    pub fn with_cni_bin_dirs(mut self, dirs: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.cni_bin_dirs = dirs.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the MTU.
    pub fn with_mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
}

/// A host port forwarded to a pod's port (a container port's `hostPort`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp", "udp" or "sctp" (Kubernetes' upper-case spelling is accepted too).
    pub protocol: String,
    /// Only this host address is forwarded; all of the node's addresses when `None`.
    pub host_ip: Option<String>,
}

/// A pod's network as set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    /// The namespace file, for the OCI spec's network namespace path.
    pub netns: PathBuf,
    /// The pod's addresses on `eth0` (IPv4 first when the result lists it first).
    pub ips: Vec<IpAddr>,
}

/// What went wrong setting up or tearing down pod networking.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "CNI plugin{} {} not found in {}; install Debian's containernetworking-plugins package \
         or point the agent at the directory holding the plugins",
        if .plugins.len() == 1 { "" } else { "s" },
        .plugins.join(", "),
        join_paths(.searched)
    )]
    PluginsMissing {
        plugins: Vec<String>,
        searched: Vec<PathBuf>,
    },

    #[error("invalid pod network configuration: {reason}")]
    InvalidConfig { reason: String },

    #[error("{action}: {message}")]
    Netlink { action: String, message: String },

    #[error("invalid pod network request for pod {pod_uid:?}: {reason}")]
    InvalidRequest { pod_uid: String, reason: String },

    #[error("CNI plugin {plugin} {command} for pod {pod_uid} failed ({status}): {}", describe_failure(.error, .output))]
    Plugin {
        plugin: String,
        command: &'static str,
        pod_uid: String,
        /// The plugin's own error object, when it printed one (boxed: keeps every
        /// `Result<_, NetworkError>` small).
        error: Option<Box<CniError>>,
        /// How the process ended.
        status: String,
        /// What it printed otherwise (shortened).
        output: String,
    },

    #[error("could not run CNI plugin {plugin} {command} for pod {pod_uid}")]
    Exec {
        plugin: String,
        command: &'static str,
        pod_uid: String,
        #[source]
        source: io::Error,
    },

    #[error("CNI plugin {plugin} {command} for pod {pod_uid} did not finish within {timeout:?}")]
    Timeout {
        plugin: String,
        command: &'static str,
        pod_uid: String,
        timeout: Duration,
    },

    #[error("CNI plugin {plugin} for pod {pod_uid} gave an unusable result: {reason}")]
    BadResult {
        plugin: String,
        pod_uid: String,
        reason: String,
    },

    #[error("CNI ADD for pod {pod_uid} gave no IP address on {ifname}")]
    NoPodIp { pod_uid: String, ifname: String },

    #[error("network namespace {}: {op} failed", .path.display())]
    Netns {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("pod network state {}: {op} failed", .path.display())]
    State {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(no directories configured)".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_failure(error: &Option<Box<CniError>>, output: &str) -> String {
    match error {
        Some(e) => e.to_string(),
        None if output.is_empty() => "no output".into(),
        None => output.to_string(),
    }
}

/// The pod network of this node. Share it (`Arc`) between the tasks syncing pods: calls
/// for different pods run concurrently, calls for the same pod one after another.
pub struct Network {
    config: NetworkConfig,
    runner: ExecRunner,
    records: Records,
    netns_dir: PathBuf,
    ipam_dir: PathBuf,
    netns_dir_ready: tokio::sync::OnceCell<()>,
    locks: PodLocks,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Checks the configuration and that the plugin binaries exist; a missing one is an
    /// error naming it and the Debian package that ships it.
    pub fn new(mut config: NetworkConfig) -> Result<Self, NetworkError> {
        validate_bridge_name(&config.bridge)?;
        validate_cidr(&config.pod_cidr)?;
        // The plugins get paths under the data dir (CNI_NETNS, IPAM dataDir) and run with
        // our working directory only by accident: make them absolute.
        config.data_dir =
            std::path::absolute(&config.data_dir).map_err(|e| NetworkError::InvalidConfig {
                reason: format!("data dir {}: {e}", config.data_dir.display()),
            })?;
        let missing: Vec<String> = cni::REQUIRED_PLUGINS
            .iter()
            .filter(|p| cni::find_plugin(&config.cni_bin_dirs, p).is_none())
            .map(|p| p.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(NetworkError::PluginsMissing {
                plugins: missing,
                searched: config.cni_bin_dirs.clone(),
            });
        }
        Ok(Network {
            runner: ExecRunner {
                bin_dirs: config.cni_bin_dirs.clone(),
            },
            records: Records {
                dir: config.data_dir.join("pods"),
            },
            netns_dir: config.data_dir.join("netns"),
            ipam_dir: config.data_dir.join("ipam"),
            netns_dir_ready: tokio::sync::OnceCell::new(),
            locks: PodLocks::default(),
            config,
        })
    }

    /// The configuration in use (with the data dir made absolute).
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Where a pod's namespace is (for the OCI spec's network namespace path).
    pub fn netns_path(&self, pod_uid: &str) -> PathBuf {
        self.netns_dir.join(pod_uid)
    }

    /// Creates the pod's network namespace (if absent) and runs loopback, bridge (with
    /// host-local) and, for host ports, portmap ADD.
    ///
    /// Idempotent: a pod already set up gets its recorded network back without a second
    /// ADD (its port mappings stay as first set up). A pod left half set up by a failed or
    /// interrupted earlier call is torn down and set up afresh. When ADD fails, what it did
    /// is undone before the error is returned.
    pub async fn setup(
        &self,
        pod_uid: &str,
        namespace: &str,
        name: &str,
        ports: &[PortMapping],
    ) -> Result<PodNetwork, NetworkError> {
        validate_uid(pod_uid)?;
        validate_cni_arg(pod_uid, "namespace", namespace)?;
        validate_cni_arg(pod_uid, "name", name)?;
        let ports = normalize_ports(pod_uid, ports)?;
        let _lock = self.locks.lock(pod_uid).await;

        let netns_path = self.netns_path(pod_uid);
        let existing = self.read_record(pod_uid).await?;
        if let Some(record) = &existing
            && record.complete()
            && netns::is_netns(&netns_path)
            && let Some(net) = pod_network(record, &netns_path)
        {
            return Ok(net);
        }
        // Whatever a previous attempt left (or a reboot left stale) goes first: a second
        // ADD onto a half-configured namespace fails ("eth0 already exists").
        self.teardown_locked(pod_uid, existing).await?;

        let mut record = PodRecord {
            namespace: namespace.to_string(),
            name: name.to_string(),
            attachments: vec![
                Attachment {
                    ifname: cni::LOOPBACK_IFNAME.into(),
                    network: cni::loopback_network(),
                    result: None,
                },
                Attachment {
                    ifname: cni::POD_IFNAME.into(),
                    network: cni::bridge_network(&self.config, &self.ipam_dir, !ports.is_empty()),
                    result: None,
                },
            ],
            ports,
        };
        // Written before anything is created, so a crash from here on leaves a record saying
        // what to undo.
        self.records.write(pod_uid, &record).await?;
        match self.add(pod_uid, &netns_path, &mut record).await {
            Ok(net) => Ok(net),
            Err(err) => {
                if let Err(undo) = self.teardown_locked(pod_uid, Some(record)).await {
                    // The record stays, so pods() still lists the pod for a later teardown.
                    tracing::warn!(pod_uid, error = %undo, "undoing a failed pod network setup failed");
                }
                Err(err)
            }
        }
    }

    async fn add(
        &self,
        pod_uid: &str,
        netns_path: &Path,
        record: &mut PodRecord,
    ) -> Result<PodNetwork, NetworkError> {
        self.netns_dir_ready
            .get_or_try_init(|| {
                let dir = self.netns_dir.clone();
                blocking(move || netns::prepare_dir(&dir))
            })
            .await?;
        netns::create(netns_path).await?;
        let args = cni_args(pod_uid, &record.namespace, &record.name);
        for i in 0..record.attachments.len() {
            let att = &record.attachments[i];
            let rt = Runtime {
                container_id: pod_uid,
                netns: Some(netns_path),
                ifname: &att.ifname,
                args: &args,
                port_mappings: &record.ports,
            };
            let result = cni::add_list(&self.runner, &att.network, &rt).await?;
            record.attachments[i].result = Some(result);
        }
        let net = pod_network(record, netns_path).ok_or_else(|| NetworkError::NoPodIp {
            pod_uid: pod_uid.to_string(),
            ifname: cni::POD_IFNAME.to_string(),
        })?;
        self.records.write(pod_uid, record).await?;
        Ok(net)
    }

    /// CNI DEL (with the cached results and port mappings) for every network, then removes
    /// the namespace and the record. Idempotent: an unknown pod is fine, and so is one half
    /// set up, crashed mid-way, or whose namespace vanished (a reboot): DEL then runs
    /// without a namespace, which still releases the IP lease.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), NetworkError> {
        validate_uid(pod_uid)?;
        let _lock = self.locks.lock(pod_uid).await;
        let record = self.read_record(pod_uid).await?;
        self.teardown_locked(pod_uid, record).await
    }

    async fn teardown_locked(
        &self,
        pod_uid: &str,
        record: Option<PodRecord>,
    ) -> Result<(), NetworkError> {
        let netns_path = self.netns_path(pod_uid);
        let alive = netns::is_netns(&netns_path);
        let (attachments, ports, args) = match record {
            Some(r) => {
                let args = cni_args(pod_uid, &r.namespace, &r.name);
                (r.attachments, r.ports, args)
            }
            // A namespace without a record (the record lost or unreadable): DEL with today's
            // configuration and no cached result. The plugins find what to remove in the
            // namespace (bridge reads the addresses off eth0) and by container ID (IPAM).
            None if std::fs::symlink_metadata(&netns_path).is_ok() => (
                vec![
                    Attachment {
                        ifname: cni::LOOPBACK_IFNAME.into(),
                        network: cni::loopback_network(),
                        result: None,
                    },
                    Attachment {
                        ifname: cni::POD_IFNAME.into(),
                        network: cni::bridge_network(&self.config, &self.ipam_dir, false),
                        result: None,
                    },
                ],
                Vec::new(),
                cni_args(pod_uid, "", ""),
            ),
            None => (Vec::new(), Vec::new(), String::new()),
        };
        for att in attachments.iter().rev() {
            let rt = Runtime {
                container_id: pod_uid,
                netns: alive.then_some(netns_path.as_path()),
                ifname: &att.ifname,
                args: &args,
                port_mappings: &ports,
            };
            cni::del_list(&self.runner, &att.network, att.result.as_ref(), &rt).await?;
        }
        let path = netns_path.clone();
        blocking(move || netns::remove(&path)).await?;
        self.records.remove(pod_uid).await
    }

    /// Pod UIDs that have a namespace or a record here: after a restart, those of pods no
    /// longer bound to this node are to be torn down.
    pub async fn pods(&self) -> Result<Vec<String>, NetworkError> {
        let mut uids = self.records.uids().await?;
        uids.extend(state::list_names(&self.netns_dir).await?);
        uids.retain(|u| validate_uid(u).is_ok());
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    /// Detaches the shared mount `setup` makes of `data_dir/netns` (as `ip netns` does for
    /// /run/netns) so the data dir can be deleted: for tests and uninstalling. Namespaces
    /// still mounted below it are detached with it; tear pods down first.
    pub fn release_netns_dir(&self) -> Result<(), NetworkError> {
        netns::release_dir(&self.netns_dir)
    }

    /// The pod's record; an unreadable one counts as none (with a warning) so the pod can
    /// still be torn down from its namespace, rather than failing forever.
    async fn read_record(&self, pod_uid: &str) -> Result<Option<PodRecord>, NetworkError> {
        match self.records.read(pod_uid).await {
            Err(NetworkError::State {
                op: "parse",
                path,
                source,
            }) => {
                tracing::warn!(path = %path.display(), error = %source, "ignoring an unreadable pod network record");
                Ok(None)
            }
            other => other,
        }
    }
}

/// The pod's network from a complete record: the eth0 network's addresses.
fn pod_network(record: &PodRecord, netns: &Path) -> Option<PodNetwork> {
    let att = record
        .attachments
        .iter()
        .find(|a| a.ifname == cni::POD_IFNAME)?;
    let ips = cni::pod_ips(att.result.as_ref()?, cni::POD_IFNAME);
    (!ips.is_empty()).then(|| PodNetwork {
        netns: netns.to_path_buf(),
        ips,
    })
}

/// CNI_ARGS as the kubelet's CRI runtimes pass them; IgnoreUnknown because plugins reject
/// keys they do not know otherwise.
fn cni_args(pod_uid: &str, namespace: &str, name: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};\
         K8S_POD_INFRA_CONTAINER_ID={pod_uid};K8S_POD_UID={pod_uid}"
    )
}

/// Pod UIDs become file names and CNI container IDs: the spec allows alphanumerics, `_`,
/// `.` and `-`, starting alphanumeric (which also rules out "." and "..").
fn validate_uid(uid: &str) -> Result<(), NetworkError> {
    let reason = if uid.is_empty() {
        Some("empty")
    } else if uid.len() > 253 {
        Some("longer than 253 bytes")
    } else if !uid.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("must start with a letter or digit")
    } else if !uid
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        Some("may hold only letters, digits, '_', '.' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetworkError::InvalidRequest {
            pod_uid: uid.to_string(),
            reason: format!("pod UID {reason}"),
        }),
        None => Ok(()),
    }
}

/// CNI_ARGS is `K=V;K=V`: a value holding ';' or '=' would forge keys.
fn validate_cni_arg(pod_uid: &str, what: &str, value: &str) -> Result<(), NetworkError> {
    if value.contains([';', '=', '\0']) {
        return Err(NetworkError::InvalidRequest {
            pod_uid: pod_uid.to_string(),
            reason: format!("pod {what} {value:?} holds ';', '=' or NUL"),
        });
    }
    Ok(())
}

/// Checks the mappings and spells protocols the way portmap wants (lower case).
fn normalize_ports(pod_uid: &str, ports: &[PortMapping]) -> Result<Vec<PortMapping>, NetworkError> {
    let bad = |i: usize, reason: String| NetworkError::InvalidRequest {
        pod_uid: pod_uid.to_string(),
        reason: format!("port mapping {i}: {reason}"),
    };
    ports
        .iter()
        .enumerate()
        .map(|(i, pm)| {
            let protocol = pm.protocol.to_ascii_lowercase();
            if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
                return Err(bad(
                    i,
                    format!("protocol {:?} is not tcp, udp or sctp", pm.protocol),
                ));
            }
            if pm.host_port == 0 || pm.container_port == 0 {
                return Err(bad(i, "host and container ports must not be 0".into()));
            }
            if let Some(ip) = &pm.host_ip
                && ip.parse::<IpAddr>().is_err()
            {
                return Err(bad(i, format!("host IP {ip:?} is not an IP address")));
            }
            Ok(PortMapping {
                protocol,
                ..pm.clone()
            })
        })
        .collect()
}

fn validate_bridge_name(name: &str) -> Result<(), NetworkError> {
    // Linux: IFNAMSIZ is 16 with the NUL; no '/', ':' or whitespace; not "." or "..".
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidConfig {
            reason: format!(
                "bridge name {name:?} is not a valid interface name (1-15 bytes, no '/', ':' or spaces)"
            ),
        })
    }
}

fn validate_cidr(cidr: &str) -> Result<(), NetworkError> {
    let bad = |why: &str| NetworkError::InvalidConfig {
        reason: format!("pod CIDR {cidr:?} {why}"),
    };
    let (addr, prefix) = cidr.split_once('/').ok_or_else(|| bad("has no /prefix"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| bad("does not start with an IP address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| bad("has a prefix that is not a number"))?;
    // Network, gateway and broadcast take three addresses: /30 leaves one pod, /31 none.
    let max = if addr.is_ipv4() { 30 } else { 126 };
    if prefix > max {
        return Err(bad(&format!(
            "is too small for pods (prefix longer than /{max})"
        )));
    }
    Ok(())
}

/// Runs blocking mount work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetworkError::Netns {
            path: PathBuf::new(),
            op: "run blocking namespace work",
            source: io::Error::other(e),
        })?
}

/// One async lock per pod UID, present only while someone holds or waits for it.
#[derive(Default)]
struct PodLocks {
    // A std Mutex: it guards only the map and is never held across an await.
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl PodLocks {
    async fn lock(&self, uid: &str) -> PodLock {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(uid.to_string()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        PodLock {
            guard: Some(guard),
            lock,
            uid: uid.to_string(),
            map: self.map.clone(),
        }
    }
}

struct PodLock {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    uid: String,
    map: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Drop for PodLock {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // Two references left (the map's and ours) means nobody waits: forget the entry.
        // Waiters hold clones taken under this same map lock, so none can appear meanwhile.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delete_bridge_leaves_other_interfaces_and_missing_ones_alone() {
        let err = delete_bridge("lo").await.unwrap_err();
        assert!(err.to_string().contains("not a bridge"), "{err}");
        assert!(!delete_bridge("moor-no-such0").await.unwrap());
    }

    #[test]
    fn uids_must_be_safe_file_names_and_container_ids() {
        for ok in ["0b6a2c9e-5f4e-4a8f-9d2b-1e0f3a4b5c6d", "a", "pod_1.x"] {
            validate_uid(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-a",
            "a b",
            "a\0b",
            &"a".repeat(254),
        ] {
            assert!(validate_uid(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn config_checks_bridge_and_cidr() {
        validate_bridge_name("moor0").unwrap();
        validate_bridge_name("abcdefghijklmno").unwrap();
        for bad in ["", "abcdefghijklmnop", "a/b", "a b", "a:b", ".."] {
            assert!(validate_bridge_name(bad).is_err(), "{bad:?} accepted");
        }
        validate_cidr("10.42.0.0/24").unwrap();
        validate_cidr("fd00::/64").unwrap();
        for bad in [
            "10.42.0.0",
            "10.42.0/24",
            "x/24",
            "10.0.0.0/31",
            "10.0.0.0/abc",
            "fd00::/127",
        ] {
            let msg = validate_cidr(bad).unwrap_err().to_string();
            assert!(msg.contains(bad), "{msg}");
        }
    }

    #[test]
    fn ports_are_checked_and_protocols_lowercased() {
        let pm = |p: &str, host: u16, ip: Option<&str>| PortMapping {
            host_port: host,
            container_port: 80,
            protocol: p.into(),
            host_ip: ip.map(str::to_string),
        };
        let out = normalize_ports(
            "u",
            &[pm("TCP", 8080, None), pm("udp", 53, Some("10.0.0.1"))],
        )
        .unwrap();
        assert_eq!(out[0].protocol, "tcp");
        assert_eq!(out[1].host_ip.as_deref(), Some("10.0.0.1"));
        for bad in [
            pm("icmp", 1, None),
            pm("tcp", 0, None),
            pm("tcp", 1, Some("localhost")),
        ] {
            let msg = normalize_ports("u", &[bad]).unwrap_err().to_string();
            assert!(msg.contains("port mapping 0"), "{msg}");
        }
    }

    #[test]
    fn cni_args_refuse_injection() {
        assert!(validate_cni_arg("u", "name", "web-1").is_ok());
        assert!(validate_cni_arg("u", "name", "x;K8S_POD_UID=evil").is_err());
        assert_eq!(
            cni_args("u1", "ns", "web"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=u1;K8S_POD_UID=u1"
        );
    }

    #[test]
    fn missing_plugins_are_all_named_with_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = Network::new(
            NetworkConfig::new("10.42.0.0/24", dir.path())
                .with_cni_bin_dirs([dir.path().join("nowhere")]),
        )
        .unwrap_err();
        let msg = err.to_string();
        for want in [
            "bridge",
            "host-local",
            "loopback",
            "portmap",
            "containernetworking-plugins",
            "nowhere",
        ] {
            assert!(msg.contains(want), "{want} missing from: {msg}");
        }
    }

    #[test]
    fn plugin_failures_show_the_plugins_error_object_or_its_output() {
        let err = NetworkError::Plugin {
            plugin: "bridge".into(),
            command: "ADD",
            pod_uid: "u1".into(),
            error: Some(Box::new(CniError {
                code: 999,
                msg: "no IP addresses available".into(),
                details: String::new(),
            })),
            status: "exit status: 1".into(),
            output: String::new(),
        };
        assert_eq!(
            err.to_string(),
            "CNI plugin bridge ADD for pod u1 failed (exit status: 1): code 999: no IP addresses available"
        );
        let err = NetworkError::Plugin {
            plugin: "portmap".into(),
            command: "DEL",
            pod_uid: "u1".into(),
            error: None,
            status: "signal: 9 (SIGKILL)".into(),
            output: "panic: oops".into(),
        };
        assert!(
            err.to_string()
                .ends_with("(signal: 9 (SIGKILL)): panic: oops")
        );
    }

    #[test]
    fn pod_network_comes_from_the_eth0_result() {
        let mut record = PodRecord {
            namespace: "ns".into(),
            name: "p".into(),
            ports: vec![],
            attachments: vec![Attachment {
                ifname: "eth0".into(),
                network: cni::loopback_network(),
                result: None,
            }],
        };
        assert_eq!(pod_network(&record, Path::new("n")), None);
        record.attachments[0].result =
            Some(serde_json::json!({"ips": [{"address": "10.42.0.9/24"}]}));
        let net = pod_network(&record, Path::new("n")).unwrap();
        assert_eq!(net.ips, vec!["10.42.0.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(net.netns, PathBuf::from("n"));
    }

    #[test]
    fn setup_and_teardown_futures_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let config =
            NetworkConfig::new("10.42.0.0/24", dir.path()).with_cni_bin_dirs(Vec::<PathBuf>::new());
        // Built by hand: new() would refuse the missing plugins, and nothing runs here.
        let net = Network {
            runner: ExecRunner { bin_dirs: vec![] },
            records: Records {
                dir: dir.path().join("pods"),
            },
            netns_dir: dir.path().join("netns"),
            ipam_dir: dir.path().join("ipam"),
            netns_dir_ready: tokio::sync::OnceCell::new(),
            locks: PodLocks::default(),
            config,
        };
        assert_send(&net.setup("u", "ns", "n", &[]));
        assert_send(&net.teardown("u"));
        assert_send(&net.pods());
    }

    #[tokio::test]
    async fn pod_locks_serialize_one_pod_and_forget_idle_entries() {
        let locks = Arc::new(PodLocks::default());
        let first = locks.lock("a").await;
        let _other = locks.lock("b").await; // another pod is not blocked
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        waiter.await.unwrap();
        assert_eq!(locks.map.lock().unwrap().len(), 1, "only b's entry remains");
    }
}

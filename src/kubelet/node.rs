//! The Node side of the agent — what upstream kubelet's node status manager and node lease
//! controller do: it registers the machine as a Node (capacity, allocatable, addresses,
//! nodeInfo, daemon endpoints, the default labels), renews the heartbeat Lease
//! `kube-node-lease/<node>` every 10 s, and writes the four node conditions (Ready,
//! MemoryPressure, DiskPressure, PIDPressure, worded as kubelet words them) through the
//! `nodes/{name}/status` subresource whenever one changes and at least every 60 s.
//!
//! It owns the Node's `status` fields listed above, the default labels and the Lease. It
//! never touches the Node's `spec` (podCIDR, taints, unschedulable belong to the IPAM and
//! node lifecycle controllers and to people), other labels, or conditions other agents
//! post (NetworkUnavailable, ...). Host measurements live in [`host_facts`] and the
//! private pressure readers so the condition logic stays unit-testable.
//!
//! Unlike upstream, an agent whose Node was deleted under it registers it again rather
//! than failing every status write until restarted.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::controllers::events::{EventType, Recorder, reference};
use crate::controllers::node_lifecycle::LEASE_NAMESPACE;

/// How long the Lease is valid after a renewal (upstream's nodeLeaseDurationSeconds).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Lease is renewed and the conditions are checked (a quarter of the lease
/// duration, as upstream).
pub const DEFAULT_LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often the status is written even when nothing changed, so `lastHeartbeatTime`
/// stays fresh for people and tools reading it (upstream's nodeStatusReportFrequency is
/// 5 min; the issue asks for 60 s).
pub const DEFAULT_STATUS_PERIOD: Duration = Duration::from_secs(60);
/// How long one API request may take before it counts as failed: about a renewal
/// interval, as upstream's heartbeat client, so a hung server cannot starve the Lease.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Write attempts when the Node changes under us (upstream's nodeStatusUpdateRetry).
const STATUS_ATTEMPTS: usize = 5;
/// Back-off between failed attempts to reach the API server.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Upstream's default hard eviction thresholds decide the pressure conditions:
/// memory.available < 100Mi and pid.available < 10%; for the disk, k3s's 5% rather than
/// upstream's 10% (see below).
const MEMORY_AVAILABLE_MIN: u64 = 100 * 1024 * 1024;
/// DiskPressure below this share of the data dir's filesystem available, by default. 5%
/// as k3s sets it: a single machine running everything (and building software) is often
/// fuller than a dedicated node, and DiskPressure taints it against every new pod.
pub const DEFAULT_DISK_AVAILABLE_MIN_PERCENT: u8 = 5;
const PIDS_IN_USE_MAX_PERCENT: u64 = 90;

/// The agent's component name in events.
const COMPONENT: &str = "kubelet";

/// Failures of the node agent.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A host file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A host file did not say what it should.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The data dir's filesystem could not be measured.
    #[error("measuring the filesystem of {path}: {source}")]
    Statvfs {
        /// The data dir.
        path: PathBuf,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// The host measurement task died.
    #[error("measuring the host: {source}")]
    Measure {
        /// The error.
        #[source]
        source: tokio::task::JoinError,
    },
    /// An API request failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// An API request got no answer in time.
    #[error("{action}: no answer from the API server within {timeout:?}")]
    Timeout {
        /// What was being done.
        action: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The Node kept changing under every write.
    #[error("writing the status of node {name}: it changed under every one of {attempts} attempts")]
    Contended {
        /// The node.
        name: String,
        /// How many writes were tried.
        attempts: usize,
    },
}

impl NodeError {
    fn code(&self) -> Option<u16> {
        match self {
            NodeError::Api {
                source: kube::Error::Api(status),
                ..
            } => Some(status.code),
            _ => None,
        }
    }

    /// Whether the API answered 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether the API answered 409 Conflict (or AlreadyExists).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
}

/// Run one API request, naming it and bounding how long it may take.
async fn api<T>(
    action: impl Into<String>,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, NodeError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(NodeError::Api {
            action: action.into(),
            source,
        }),
        Err(_) => Err(NodeError::Timeout {
            action: action.into(),
            timeout: REQUEST_TIMEOUT,
        }),
    }
}

/// What the agent registers its node as.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Node's name (also its `kubernetes.io/hostname` label and Hostname address).
    pub name: String,
    /// The kubelet API port (`status.daemonEndpoints.kubeletEndpoint.port`).
    pub kubelet_port: u16,
    /// The InternalIP; default: the host's first non-loopback IPv4 (that of the default
    /// route's interface first), else 127.0.0.1.
    pub address: Option<IpAddr>,
    /// Where the agent keeps its data: ephemeral-storage capacity and DiskPressure are
    /// measured on this filesystem.
    pub data_dir: PathBuf,
    /// The container runtime, e.g. `containerd://1.6.20~ds1`.
    pub runtime_version: String,
    /// Labels besides the default ones (`kubernetes.io/hostname`, `kubernetes.io/os`,
    /// `kubernetes.io/arch` and their `beta.` forms), which win over these as upstream.
    pub labels: BTreeMap<String, String>,
    /// How many pods the node takes (`pods` capacity), 110 upstream.
    pub max_pods: u32,
}

/// Facts about the host, for capacity and `nodeInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// Online CPUs.
    pub cpus: u32,
    /// MemTotal, in bytes.
    pub memory_bytes: u64,
    /// Size of the data dir's filesystem, in bytes.
    pub ephemeral_storage_bytes: u64,
    /// `uname -r`.
    pub kernel_version: String,
    /// PRETTY_NAME of /etc/os-release ("Linux" without one, as cadvisor).
    pub os_image: String,
    /// The Go name of the architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// /etc/machine-id (empty when absent, as cadvisor).
    pub machine_id: String,
    /// The DMI product UUID if readable, else the machine id.
    pub system_uuid: String,
    /// /proc/sys/kernel/random/boot_id.
    pub boot_id: String,
}

/// Measure the host: CPUs, memory, the data dir's filesystem and the identifiers
/// `nodeInfo` reports. Only what capacity needs is required; identifiers that cannot be
/// read are left empty, as cadvisor leaves them.
pub fn host_facts(data_dir: &Path) -> Result<HostFacts, NodeError> {
    let meminfo = read_meminfo()?;
    let memory_kib = meminfo
        .get("MemTotal")
        .copied()
        .ok_or_else(|| NodeError::Parse {
            path: MEMINFO.into(),
            message: "no MemTotal line".to_owned(),
        })?;
    let fs = filesystem(data_dir)?;
    let machine_id = read_trimmed("/etc/machine-id").unwrap_or_default();
    let system_uuid = read_trimmed("/sys/class/dmi/id/product_uuid")
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| machine_id.clone());
    Ok(HostFacts {
        cpus: online_cpus(),
        memory_bytes: memory_kib.saturating_mul(1024),
        ephemeral_storage_bytes: fs.total,
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        os_image: std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| os_release_pretty_name(&text))
            .unwrap_or_else(|| "Linux".to_owned()),
        architecture: go_arch(std::env::consts::ARCH).to_owned(),
        machine_id,
        system_uuid,
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
    })
}

const MEMINFO: &str = "/proc/meminfo";

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn read_meminfo() -> Result<BTreeMap<String, u64>, NodeError> {
    let text = std::fs::read_to_string(MEMINFO).map_err(|source| NodeError::Read {
        path: MEMINFO.into(),
        source,
    })?;
    Ok(parse_meminfo(&text))
}

/// /proc/meminfo's fields in kB (`MemTotal:  16393292 kB`); lines that do not parse are
/// skipped, since the kernel adds fields over time.
fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let number = rest.split_whitespace().next()?.parse().ok()?;
            Some((key.trim().to_owned(), number))
        })
        .collect()
}

/// PRETTY_NAME from os-release(5) text: shell-like `KEY=value`, the value optionally in
/// single or double quotes, with backslash escapes inside double quotes.
fn os_release_pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("PRETTY_NAME=")?;
        let value = if let Some(inner) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        } else if let Some(inner) = value.strip_prefix('\'') {
            inner.split('\'').next().unwrap_or_default().to_owned()
        } else {
            value.to_owned()
        };
        (!value.is_empty()).then_some(value)
    })
}

/// The number of CPUs in a kernel CPU list (`0-3,8,10-11`); None if it does not parse.
fn parse_cpu_list(text: &str) -> Option<u32> {
    let mut count = 0u32;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        count += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
}

/// Online CPUs, as cadvisor counts them for capacity (the machine's, not this process's
/// affinity); the process's parallelism if the kernel list cannot be read.
fn online_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|t| parse_cpu_list(&t))
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1)
        })
}

/// Go's name (GOARCH) for a Rust target architecture: nodes report Go's names.
fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Sizes of a filesystem, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FsUsage {
    total: u64,
    available: u64,
}

fn filesystem(path: &Path) -> Result<FsUsage, NodeError> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(|source| NodeError::Statvfs {
        path: path.to_owned(),
        source,
    })?;
    let fragment = stat.fragment_size();
    Ok(FsUsage {
        total: stat.blocks().saturating_mul(fragment),
        // Available to unprivileged users, as nodefs.available counts it.
        available: stat.blocks_available().saturating_mul(fragment),
    })
}

/// PIDs in use and the most there can be: like kubelet's pidlimit, the scheduling
/// entities of /proc/loadavg (exact, unlike sysinfo's 16-bit count) against the lower of
/// pid_max and threads-max.
fn pid_usage() -> Option<(u64, u64)> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let in_use = parse_loadavg_threads(&loadavg)?;
    let pid_max: u64 = read_trimmed("/proc/sys/kernel/pid_max")?.parse().ok()?;
    let max = read_trimmed("/proc/sys/kernel/threads-max")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(pid_max, |threads| threads.min(pid_max));
    Some((in_use, max))
}

/// The total of `running/total` in /proc/loadavg (`0.00 0.01 0.05 1/123 4567`).
fn parse_loadavg_threads(text: &str) -> Option<u64> {
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The host's InternalIP when none is configured: the first IPv4 of the default route's
/// interface (what upstream's ChooseHostInterface picks), else the first non-loopback
/// IPv4 of any interface that is up, else 127.0.0.1.
pub fn default_address() -> IpAddr {
    use nix::net::if_::InterfaceFlags;
    let default_interface = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_route_interface(&t));
    let mut candidates: Vec<(String, Ipv4Addr)> = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if !a.flags.contains(InterfaceFlags::IFF_UP)
                || a.flags.contains(InterfaceFlags::IFF_LOOPBACK)
            {
                continue;
            }
            let Some(ip) = a
                .address
                .as_ref()
                .and_then(|s| s.as_sockaddr_in())
                .map(|s| s.ip())
            else {
                continue;
            };
            if !ip.is_loopback() && !ip.is_unspecified() && !ip.is_link_local() {
                candidates.push((a.interface_name, ip));
            }
        }
    }
    candidates
        .iter()
        .find(|(name, _)| Some(name) == default_interface.as_ref())
        .or(candidates.first())
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |(_, ip)| IpAddr::V4(*ip))
}

/// The interface of the IPv4 default route in /proc/net/route text (destination and mask
/// 00000000), the one with the lowest metric if several.
fn default_route_interface(text: &str) -> Option<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, metric, mask) = (
                fields.first()?,
                fields.get(1)?,
                fields.get(6)?,
                fields.get(7)?,
            );
            (*dest == "00000000" && *mask == "00000000")
                .then(|| Some((metric.parse::<u64>().ok()?, (*iface).to_owned())))
                .flatten()
        })
        .min()
        .map(|(_, iface)| iface)
}

/// A byte count as Kubernetes writes a BinarySI quantity: the largest power-of-1024
/// suffix that divides it exactly (`16393292Ki`, `8Gi`), plain below 1024.
fn binary_si(bytes: u64) -> String {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut value = bytes;
    let mut suffix = None;
    for s in SUFFIXES {
        if !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        suffix = Some(s);
    }
    format!("{value}{}", suffix.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------

/// What the agent observed, from which the conditions follow. A pressure signal that
/// could not be measured counts as no pressure, as upstream's eviction manager does.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Signals {
    /// The runtime's readiness: Err carries why it is not ready.
    runtime: Result<(), String>,
    /// MemAvailable, in bytes.
    memory_available: Option<u64>,
    /// The data dir's filesystem.
    disk: Option<FsUsage>,
    /// PIDs in use and their maximum.
    pids: Option<(u64, u64)>,
}

/// One condition as the agent wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wanted {
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
    /// The event upstream records when the condition becomes this.
    event: &'static str,
}

fn wanted(
    type_: &'static str,
    pressure: bool,
    [
        (reason_ok, message_ok, event_ok),
        (reason_bad, message_bad, event_bad),
    ]: [(&'static str, &str, &'static str); 2],
) -> Wanted {
    let (reason, message, event) = if pressure {
        (reason_bad, message_bad, event_bad)
    } else {
        (reason_ok, message_ok, event_ok)
    };
    Wanted {
        type_,
        status: if pressure { "True" } else { "False" },
        reason,
        message: message.to_owned(),
        event,
    }
}

/// The four conditions the agent owns, in upstream's order, worded as kubelet words them.
/// DiskPressure is True below `disk_min_percent` of the filesystem available.
fn wanted_conditions(signals: &Signals, disk_min_percent: u8) -> [Wanted; 4] {
    let memory = signals
        .memory_available
        .is_some_and(|available| available < MEMORY_AVAILABLE_MIN);
    let disk = signals.disk.is_some_and(|fs| {
        fs.total > 0
            && u128::from(fs.available) * 100 < u128::from(fs.total) * u128::from(disk_min_percent)
    });
    let pids = signals.pids.is_some_and(|(in_use, max)| {
        max > 0 && u128::from(in_use) * 100 > u128::from(max) * u128::from(PIDS_IN_USE_MAX_PERCENT)
    });
    let ready = match &signals.runtime {
        Ok(()) => Wanted {
            type_: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "kubelet is posting ready status".to_owned(),
            event: "NodeReady",
        },
        Err(message) => Wanted {
            type_: "Ready",
            status: "False",
            reason: "KubeletNotReady",
            message: message.clone(),
            event: "NodeNotReady",
        },
    };
    [
        wanted(
            "MemoryPressure",
            memory,
            [
                (
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    "NodeHasSufficientMemory",
                ),
                (
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available",
                    "NodeHasInsufficientMemory",
                ),
            ],
        ),
        wanted(
            "DiskPressure",
            disk,
            [
                (
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    "NodeHasNoDiskPressure",
                ),
                (
                    "KubeletHasDiskPressure",
                    "kubelet has disk pressure",
                    "NodeHasDiskPressure",
                ),
            ],
        ),
        wanted(
            "PIDPressure",
            pids,
            [
                (
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    "NodeHasSufficientPID",
                ),
                (
                    "KubeletHasInsufficientPID",
                    "kubelet has insufficient PID available",
                    "NodeHasInsufficientPID",
                ),
            ],
        ),
        ready,
    ]
}

/// The outcome of applying the wanted conditions to a node's current ones.
#[derive(Debug)]
struct Merged {
    /// The full list: ours rewritten (heartbeat now), others' kept as they are.
    conditions: Vec<NodeCondition>,
    /// Whether any of ours differs from what was there in status, reason or message.
    changed: bool,
    /// Ours whose status changed (or that were missing): the events to record.
    transitions: Vec<Wanted>,
}

/// Apply `wanted` to `existing`: `lastTransitionTime` is kept while a condition's status
/// stays the same (even if its reason or message changes, as upstream), `now` otherwise;
/// `lastHeartbeatTime` is `now` on every write.
fn merge_conditions(existing: &[NodeCondition], wanted: &[Wanted], now: jiff::Timestamp) -> Merged {
    let mut conditions: Vec<NodeCondition> = existing
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
        .cloned()
        .collect();
    let mut changed = false;
    let mut transitions = Vec::new();
    for w in wanted {
        let old = existing.iter().find(|c| c.type_ == w.type_);
        let same_status = old.is_some_and(|c| c.status == w.status);
        let same = same_status
            && old.is_some_and(|c| {
                c.reason.as_deref() == Some(w.reason) && c.message.as_deref() == Some(&*w.message)
            });
        changed |= !same;
        if !same_status {
            transitions.push(w.clone());
        }
        let transition = match old {
            Some(c) if same_status => c.last_transition_time.clone(),
            _ => None,
        };
        conditions.push(NodeCondition {
            type_: w.type_.to_owned(),
            status: w.status.to_owned(),
            reason: Some(w.reason.to_owned()),
            message: Some(w.message.clone()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition.unwrap_or(Time(now))),
        });
    }
    Merged {
        conditions,
        changed,
        transitions,
    }
}

// ---------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------

/// Exponential back-off with jitter, for reaching an API server that is away.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: BACKOFF_MIN }
    }

    fn next(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // Up to +25 %, so many agents coming back at once do not knock in step.
        base + base.mul_f64(fastrand::f64() / 4.0)
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Registers the node, keeps its Lease renewed and its status current.
pub struct NodeAgent {
    client: Client,
    config: NodeConfig,
    address: IpAddr,
    runtime: Option<watch::Receiver<Result<(), String>>>,
    lease_renew: Duration,
    status_period: Duration,
    disk_min_percent: u8,
    events: Recorder,
}

/// What the run loop remembers between ticks.
struct Heartbeat {
    /// The Node's uid, for the Lease's owner reference.
    node_uid: String,
    /// The Lease as last written, so a renewal is one update.
    lease: Option<Lease>,
    /// When the status was last written.
    status_written: Option<tokio::time::Instant>,
}

impl NodeAgent {
    /// An agent for `config`, reporting to the API server behind `client`.
    pub fn new(client: Client, config: NodeConfig) -> Self {
        let address = config.address.unwrap_or_else(default_address);
        NodeAgent {
            events: Recorder::new(client.clone(), COMPONENT),
            client,
            config,
            address,
            runtime: None,
            lease_renew: DEFAULT_LEASE_RENEW,
            status_period: DEFAULT_STATUS_PERIOD,
            disk_min_percent: DEFAULT_DISK_AVAILABLE_MIN_PERCENT,
        }
    }

    /// Readiness of the runtime side: Ready=False (reason KubeletNotReady, the message
    /// given) while Err. Without one, the node is Ready whenever the agent runs.
    pub fn with_runtime_status(mut self, status: watch::Receiver<Result<(), String>>) -> Self {
        self.runtime = Some(status);
        self
    }

    /// How often the Lease is renewed (and conditions checked) and how often the status is
    /// written even when nothing changed; 10 s and 60 s by default.
    pub fn with_intervals(mut self, lease_renew: Duration, status_period: Duration) -> Self {
        self.lease_renew = lease_renew;
        self.status_period = status_period;
        self
    }

    /// Report DiskPressure when less than `percent` of the data dir's filesystem is
    /// available (upstream's nodefs.available hard eviction threshold; 10 by default, k3s
    /// uses 5). Over 100 counts as 100.
    pub fn with_disk_pressure_percent(mut self, percent: u8) -> Self {
        self.disk_min_percent = percent.min(100);
        self
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), LEASE_NAMESPACE)
    }

    /// The labels the agent sets: the configured ones, then the defaults over them.
    fn labels(&self, arch: &str) -> BTreeMap<String, String> {
        let mut labels = self.config.labels.clone();
        for (key, value) in [
            ("kubernetes.io/hostname", self.config.name.to_lowercase()),
            ("kubernetes.io/os", "linux".to_owned()),
            ("kubernetes.io/arch", arch.to_owned()),
            ("beta.kubernetes.io/os", "linux".to_owned()),
            ("beta.kubernetes.io/arch", arch.to_owned()),
        ] {
            labels.insert(key.to_owned(), value);
        }
        labels
    }

    /// Measure the host and the pressure signals, off the async threads (statvfs on a
    /// network filesystem can block).
    async fn measure(&self) -> Result<(HostFacts, Signals), NodeError> {
        let data_dir = self.config.data_dir.clone();
        let (facts, memory_available, disk, pids) = tokio::task::spawn_blocking(move || {
            let facts = host_facts(&data_dir)?;
            let memory_available = read_meminfo()
                .ok()
                .and_then(|m| m.get("MemAvailable").copied())
                .map(|kib| kib.saturating_mul(1024));
            let disk = filesystem(&data_dir).ok();
            Ok::<_, NodeError>((facts, memory_available, disk, pid_usage()))
        })
        .await
        .map_err(|source| NodeError::Measure { source })??;
        let runtime = self.runtime.as_ref().map_or(Ok(()), |r| r.borrow().clone());
        Ok((
            facts,
            Signals {
                runtime,
                memory_available,
                disk,
                pids,
            },
        ))
    }

    /// The status fields the agent owns, with these conditions.
    fn status(&self, facts: &HostFacts, conditions: Vec<NodeCondition>) -> NodeStatus {
        let capacity: BTreeMap<String, Quantity> = [
            ("cpu", facts.cpus.to_string()),
            ("memory", binary_si(facts.memory_bytes)),
            (
                "ephemeral-storage",
                binary_si(facts.ephemeral_storage_bytes),
            ),
            ("pods", self.config.max_pods.to_string()),
            ("hugepages-2Mi", "0".to_owned()),
            ("hugepages-1Gi", "0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Quantity(v)))
        .collect();
        // Nothing is reserved for the system or the agent yet (no --kube-reserved,
        // --system-reserved or eviction thresholds): allocatable is all of capacity.
        let allocatable = capacity.clone();
        let version = kubelet_version();
        NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".to_owned(),
                    address: self.address.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".to_owned(),
                    address: self.config.name.clone(),
                },
            ]),
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            conditions: Some(conditions),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(self.config.kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: facts.architecture.clone(),
                boot_id: facts.boot_id.clone(),
                container_runtime_version: self.config.runtime_version.clone(),
                kernel_version: facts.kernel_version.clone(),
                kube_proxy_version: version.clone(),
                kubelet_version: version,
                machine_id: facts.machine_id.clone(),
                operating_system: "linux".to_owned(),
                os_image: facts.os_image.clone(),
                system_uuid: facts.system_uuid.clone(),
                swap: None,
            }),
            ..NodeStatus::default()
        }
    }

    /// Creates the Node, or on restart updates the existing one (labels merged, status
    /// rewritten, spec — podCIDR, taints, unschedulable — left as others set it). Returns
    /// the Node as stored.
    pub async fn register(&self) -> Result<Node, NodeError> {
        let name = &self.config.name;
        let (facts, signals) = self.measure().await?;
        let labels = self.labels(&facts.architecture);
        let merged = merge_conditions(
            &[],
            &wanted_conditions(&signals, self.disk_min_percent),
            jiff::Timestamp::now(),
        );
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(self.status(&facts, merged.conditions)),
        };
        match api(
            format!("creating node {name}"),
            self.nodes().create(&PostParams::default(), &node),
        )
        .await
        {
            Ok(created) => {
                tracing::info!(node = %name, "registered the node");
                self.publish(&created, EventType::Normal, "Starting", "Starting kubelet.")
                    .await;
                self.record_transitions(&created, &merged.transitions).await;
                return Ok(created);
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        // Registered before: ours are merged into its labels; its spec stays as it is.
        let patch = json!({"metadata": {"labels": labels}});
        api(
            format!("updating the labels of node {name}"),
            self.nodes()
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await?;
        let (node, _) = self.write_status(true).await?;
        tracing::info!(node = %name, "node registered before: status rewritten");
        self.publish(&node, EventType::Normal, "Starting", "Starting kubelet.")
            .await;
        Ok(node)
    }

    /// Bring the Node's status up to date: written when one of our conditions changed, or
    /// always with `force`. Returns the Node as stored and whether it was written. A Node
    /// changed under us is re-read and the write retried.
    async fn write_status(&self, force: bool) -> Result<(Node, bool), NodeError> {
        let name = &self.config.name;
        for _ in 0..STATUS_ATTEMPTS {
            let current = api(format!("reading node {name}"), self.nodes().get(name)).await?;
            let (facts, signals) = self.measure().await?;
            let existing = current
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let merged = merge_conditions(
                &existing,
                &wanted_conditions(&signals, self.disk_min_percent),
                jiff::Timestamp::now(),
            );
            if !merged.changed && !force {
                return Ok((current, false));
            }
            let status = self.status(&facts, merged.conditions);
            // The resourceVersion makes it a precondition: the transitions were judged
            // against exactly this Node.
            let patch = json!({
                "metadata": {"resourceVersion": current.resource_version()},
                "status": status,
            });
            match api(
                format!("updating the status of node {name}"),
                self.nodes()
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await
            {
                Ok(written) => {
                    self.record_transitions(&written, &merged.transitions).await;
                    return Ok((written, true));
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(NodeError::Contended {
            name: name.clone(),
            attempts: STATUS_ATTEMPTS,
        })
    }

    async fn publish(&self, node: &Node, kind: EventType, reason: &str, message: &str) {
        self.events
            .publish(&reference(node), kind, reason, message)
            .await;
    }

    async fn record_transitions(&self, node: &Node, transitions: &[Wanted]) {
        for t in transitions {
            let message = format!("Node {} status is now: {}", self.config.name, t.event);
            self.publish(node, EventType::Normal, t.event, &message)
                .await;
        }
    }

    /// Renew the Lease (creating it if missing), owned by the Node as upstream's lease
    /// controller does, so it goes when the Node goes.
    async fn renew_lease(&self, state: &mut Heartbeat) -> Result<(), NodeError> {
        let name = &self.config.name;
        let leases = self.leases();
        let now = MicroTime(jiff::Timestamp::now());
        let owner = OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Node".to_owned(),
            name: name.clone(),
            uid: state.node_uid.clone(),
            ..OwnerReference::default()
        };
        let mut lease = match state.lease.take() {
            Some(lease) => lease,
            None => match api(format!("reading lease {name}"), leases.get_opt(name)).await? {
                Some(lease) => lease,
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            namespace: Some(LEASE_NAMESPACE.to_owned()),
                            owner_references: Some(vec![owner]),
                            ..ObjectMeta::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(name.clone()),
                            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                            renew_time: Some(now),
                            ..LeaseSpec::default()
                        }),
                    };
                    let created = api(
                        format!("creating lease {name}"),
                        leases.create(&PostParams::default(), &lease),
                    )
                    .await?;
                    state.lease = Some(created);
                    return Ok(());
                }
            },
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(name.clone());
        spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
        spec.renew_time = Some(now);
        // A Node registered again has a new uid: point the owner at it, or the garbage
        // collector would take the Lease for an orphan.
        let owners = lease.metadata.owner_references.get_or_insert_with(Vec::new);
        owners.retain(|o| !(o.kind == "Node" && o.api_version == "v1"));
        owners.push(owner);
        // On failure the next renewal reads the Lease afresh (state.lease stays None).
        let renewed = api(
            format!("renewing lease {name}"),
            leases.replace(name, &PostParams::default(), &lease),
        )
        .await?;
        state.lease = Some(renewed);
        Ok(())
    }

    /// Registers (retrying with back-off while the API server is unreachable), then renews
    /// the Lease `kube-node-lease/<name>` every 10 s (holderIdentity = name,
    /// leaseDurationSeconds 40; created if missing; owned by the Node) and writes the Node
    /// status when a condition changes or at least every 60 s. Returns when `shutdown`
    /// fires; API failures are logged and retried, never returned.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), NodeError> {
        let mut backoff = Backoff::new();
        let Some(node) = self.register_until_done(&shutdown, &mut backoff).await else {
            return Ok(());
        };
        let mut state = Heartbeat {
            node_uid: node.uid().unwrap_or_default(),
            lease: None,
            status_written: Some(tokio::time::Instant::now()),
        };
        let mut runtime = self.runtime.clone();
        let mut next = tokio::time::Instant::now();
        loop {
            let runtime_changed = async {
                match runtime.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let woke_by_runtime = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(next) => false,
                open = runtime_changed => {
                    if !open {
                        // The sender is gone: its last word stands.
                        runtime = None;
                        continue;
                    }
                    true
                }
            };
            let work = async {
                if woke_by_runtime {
                    // A runtime change is news now, not at the next tick.
                    return self.sync_status(&mut state).await;
                }
                let lease = self.renew_lease(&mut state).await;
                if let Err(e) = &lease {
                    tracing::warn!(node = %self.config.name, error = %e, "renewing the node lease");
                }
                let status = self.sync_status(&mut state).await;
                lease.and(status)
            };
            let result = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                result = work => result,
            };
            if woke_by_runtime {
                continue;
            }
            next = tokio::time::Instant::now()
                + match result {
                    Ok(()) => {
                        backoff.reset();
                        self.lease_renew
                    }
                    // Sooner than a full interval, so a server that comes back hears
                    // from us before the lease runs out.
                    Err(_) => backoff.next().min(self.lease_renew),
                };
        }
    }

    /// Register, retrying with back-off; None if `shutdown` fired first.
    async fn register_until_done(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Option<Node> {
        loop {
            let result = tokio::select! {
                () = shutdown.cancelled() => return None,
                result = self.register() => result,
            };
            match result {
                Ok(node) => {
                    backoff.reset();
                    return Some(node);
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(node = %self.config.name, error = %e, retry_in = ?wait, "registering the node");
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Write the status if a condition changed or the status period ran out; register
    /// again if the Node was deleted.
    async fn sync_status(&self, state: &mut Heartbeat) -> Result<(), NodeError> {
        let due = state
            .status_written
            .is_none_or(|at| at.elapsed() >= self.status_period);
        match self.write_status(due).await {
            Ok((_, true)) => {
                state.status_written = Some(tokio::time::Instant::now());
                Ok(())
            }
            Ok((_, false)) => Ok(()),
            Err(e) if e.is_not_found() => {
                tracing::warn!(node = %self.config.name, "the node was deleted: registering it again");
                let node = self.register().await?;
                state.node_uid = node.uid().unwrap_or_default();
                state.lease = None;
                state.status_written = Some(tokio::time::Instant::now());
                Ok(())
            }
            Err(e) => {
                tracing::warn!(node = %self.config.name, error = %e, "updating the node status");
                Err(e)
            }
        }
    }
}

/// The version the agent reports as kubelet and kube-proxy: the API server's gitVersion,
/// so `kubectl get nodes` shows the same version `kubectl version` does.
fn kubelet_version() -> String {
    crate::apiserver::discovery::version()["gitVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_in_kib() {
        let text = "MemTotal:       16393292 kB\nMemFree:         1234 kB\n\
                    MemAvailable:   8000000 kB\nHugePages_Total:       0\nbogus line\nX: notanumber kB\n";
        let m = parse_meminfo(text);
        assert_eq!(m.get("MemTotal"), Some(&16393292));
        assert_eq!(m.get("MemAvailable"), Some(&8000000));
        assert_eq!(m.get("HugePages_Total"), Some(&0));
        assert_eq!(m.get("X"), None);
        assert_eq!(m.len(), 4);
        assert!(parse_meminfo("").is_empty());
    }

    #[test]
    fn os_release_pretty_name_forms() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n";
        assert_eq!(
            os_release_pretty_name(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            os_release_pretty_name("NAME=x\nPRETTY_NAME=Plain\n").as_deref(),
            Some("Plain")
        );
        assert_eq!(
            os_release_pretty_name("PRETTY_NAME='Single quoted'").as_deref(),
            Some("Single quoted")
        );
        assert_eq!(
            os_release_pretty_name(r#"PRETTY_NAME="Say \"hi\" \\ ok""#).as_deref(),
            Some(r#"Say "hi" \ ok"#)
        );
        assert_eq!(os_release_pretty_name("NAME=x\n"), None);
        assert_eq!(os_release_pretty_name("PRETTY_NAME=\"\"\n"), None);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("a-b"), None);
    }

    #[test]
    fn quantities_as_kubernetes_writes_them() {
        assert_eq!(binary_si(0), "0");
        assert_eq!(binary_si(1000), "1000");
        assert_eq!(binary_si(16393292 * 1024), "16393292Ki");
        assert_eq!(binary_si(8 << 30), "8Gi");
        assert_eq!(binary_si(1025), "1025");
        assert_eq!(binary_si(3 << 20), "3Mi");
    }

    #[test]
    fn loadavg_and_routes() {
        assert_eq!(
            parse_loadavg_threads("0.00 0.01 0.05 1/123 4567\n"),
            Some(123)
        );
        assert_eq!(parse_loadavg_threads("0.00 0.01"), None);
        let routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                      eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                      eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                      wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(routes).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn go_architecture_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("riscv64"), "riscv64");
    }

    #[test]
    fn host_facts_of_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let facts = host_facts(dir.path()).unwrap();
        assert!(facts.cpus >= 1);
        assert!(facts.memory_bytes > 0);
        assert!(facts.ephemeral_storage_bytes > 0);
        assert!(!facts.kernel_version.is_empty());
        assert_eq!(facts.architecture, go_arch(std::env::consts::ARCH));
        let missing = dir.path().join("missing");
        assert!(matches!(
            host_facts(&missing),
            Err(NodeError::Statvfs { path, .. }) if path == missing
        ));
    }

    fn healthy() -> Signals {
        Signals {
            runtime: Ok(()),
            memory_available: Some(8 << 30),
            disk: Some(FsUsage {
                total: 100,
                available: 50,
            }),
            pids: Some((100, 4_000_000)),
        }
    }

    fn status_of<'a>(conditions: &'a [NodeCondition], type_: &str) -> &'a NodeCondition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn healthy_node_conditions() {
        let w = wanted_conditions(&healthy(), 10);
        let types: Vec<&str> = w.iter().map(|c| c.type_).collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(
            w.iter().map(|c| (c.status, c.reason)).collect::<Vec<_>>(),
            [
                ("False", "KubeletHasSufficientMemory"),
                ("False", "KubeletHasNoDiskPressure"),
                ("False", "KubeletHasSufficientPID"),
                ("True", "KubeletReady"),
            ]
        );
        assert_eq!(w[3].message, "kubelet is posting ready status");
        // Unmeasurable signals are no pressure.
        let blind = Signals {
            runtime: Ok(()),
            memory_available: None,
            disk: None,
            pids: None,
        };
        assert_eq!(wanted_conditions(&blind, 10), w);
    }

    #[test]
    fn pressure_thresholds() {
        let mut s = healthy();
        s.memory_available = Some(MEMORY_AVAILABLE_MIN - 1);
        s.disk = Some(FsUsage {
            total: 1000,
            available: 99,
        });
        s.pids = Some((91, 100));
        s.runtime = Err("container runtime is down".to_owned());
        let w = wanted_conditions(&s, 10);
        assert_eq!(
            w.iter().map(|c| (c.status, c.reason)).collect::<Vec<_>>(),
            [
                ("True", "KubeletHasInsufficientMemory"),
                ("True", "KubeletHasDiskPressure"),
                ("True", "KubeletHasInsufficientPID"),
                ("False", "KubeletNotReady"),
            ]
        );
        assert_eq!(w[3].message, "container runtime is down");
        // Exactly at the thresholds: no pressure.
        s.memory_available = Some(MEMORY_AVAILABLE_MIN);
        s.disk = Some(FsUsage {
            total: 1000,
            available: 100,
        });
        s.pids = Some((90, 100));
        let w = wanted_conditions(&s, 10);
        assert!(w[..3].iter().all(|c| c.status == "False"), "{w:?}");
        // The disk threshold is the caller's: 0 never, 100 always (unless the fs is full).
        assert_eq!(wanted_conditions(&s, 0)[1].status, "False");
        assert_eq!(wanted_conditions(&s, 100)[1].status, "True");
        assert_eq!(wanted_conditions(&s, 11)[1].status, "True");
    }

    #[test]
    fn transitions_keep_time_while_status_stays() {
        let t0 = jiff::Timestamp::from_second(1_000).unwrap();
        let t1 = jiff::Timestamp::from_second(2_000).unwrap();
        let t2 = jiff::Timestamp::from_second(3_000).unwrap();
        let foreign = NodeCondition {
            type_: "NetworkUnavailable".to_owned(),
            status: "False".to_owned(),
            ..NodeCondition::default()
        };
        let first = merge_conditions(
            std::slice::from_ref(&foreign),
            &wanted_conditions(&healthy(), 10),
            t0,
        );
        assert!(first.changed);
        assert_eq!(first.transitions.len(), 4, "all four are new");
        assert_eq!(status_of(&first.conditions, "NetworkUnavailable"), &foreign);
        assert_eq!(first.conditions.len(), 5);

        // Nothing changes: only the heartbeat moves.
        let same = merge_conditions(&first.conditions, &wanted_conditions(&healthy(), 10), t1);
        assert!(!same.changed);
        assert!(same.transitions.is_empty());
        let ready = status_of(&same.conditions, "Ready");
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));

        // The runtime goes down: Ready flips, the others keep their times.
        let mut down = healthy();
        down.runtime = Err("runtime down".to_owned());
        let flipped = merge_conditions(&same.conditions, &wanted_conditions(&down, 10), t2);
        assert!(flipped.changed);
        assert_eq!(
            flipped
                .transitions
                .iter()
                .map(|t| t.event)
                .collect::<Vec<_>>(),
            ["NodeNotReady"]
        );
        let ready = status_of(&flipped.conditions, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.message.as_deref(), Some("runtime down"));
        assert_eq!(ready.last_transition_time, Some(Time(t2)));
        let memory = status_of(&flipped.conditions, "MemoryPressure");
        assert_eq!(memory.last_transition_time, Some(Time(t0)));

        // A new message with the same status is a change to write, not a transition.
        down.runtime = Err("still down, differently".to_owned());
        let reworded = merge_conditions(&flipped.conditions, &wanted_conditions(&down, 10), t1);
        assert!(reworded.changed);
        assert!(reworded.transitions.is_empty());
        assert_eq!(
            status_of(&reworded.conditions, "Ready").last_transition_time,
            Some(Time(t2))
        );

        // Set to Unknown by the node lifecycle controller: back to ours is a transition.
        let mut unknown = reworded.conditions.clone();
        for c in &mut unknown {
            if c.type_ == "Ready" {
                c.status = "Unknown".to_owned();
            }
        }
        let back = merge_conditions(&unknown, &wanted_conditions(&healthy(), 10), t0);
        assert_eq!(
            back.transitions.iter().map(|t| t.event).collect::<Vec<_>>(),
            ["NodeReady"]
        );
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        let mut b = Backoff::new();
        let first = b.next();
        assert!(first >= BACKOFF_MIN && first <= BACKOFF_MIN.mul_f64(1.25));
        for _ in 0..20 {
            assert!(b.next() <= BACKOFF_MAX.mul_f64(1.25));
        }
        b.reset();
        assert!(b.next() <= BACKOFF_MIN.mul_f64(1.25));
    }
}

//! The node IPAM controller, as kube-controller-manager's nodeipam "range allocator": it
//! gives every node without one a pod range — `spec.podCIDR` and `spec.podCIDRs` — of
//! `--node-cidr-mask-size` (24) bits from `--cluster-cidr` (10.42.0.0/16), the range the
//! node's agent hands pod addresses out of.
//!
//! **What is taken** is read from the nodes themselves, level-triggered: every range that
//! a node in the cache holds (preset by hand or given by an earlier allocator, before a
//! restart or under another leader) is in use, so nothing is handed out twice, and a
//! deleted node's range is free again as soon as the cache drops the node. Ranges written
//! but not yet seen back through the watch are remembered in memory until they are.
//! The lowest free range is given first, so a freed range is reused at once.
//!
//! **Writes** are merge patches carrying the node's resourceVersion: a node that changed
//! meanwhile (its agent posting status, another allocator giving it a range) answers 409,
//! is read again and only gets a range if it still has none — two allocators cannot give
//! one node two ranges.
//!
//! It owns `spec.podCIDR` and `spec.podCIDRs` of nodes that have none, and never changes a
//! range once set (Kubernetes makes it immutable). Nodes whose range was preset are left
//! alone, ranges outside the cluster CIDR are ignored. When the cluster CIDR is exhausted
//! the node is left without, with a `CIDRNotAvailable` warning event, and is looked at
//! again every few seconds. Not done, unlike upstream: IPv6 and dual-stack cluster CIDRs
//! (the node's agent handles IPv6 ranges set by hand), and the rotating "next candidate"
//! that delays reusing a freed range.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::events::{EventType, Recorder, reference};
use super::{Context, api_error};

/// Errors a reconcile returns (retried with back-off): a failed API request.
pub use super::ApiError as Error;

/// The default `--cluster-cidr`.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The default `--node-cidr-mask-size`.
pub const DEFAULT_NODE_MASK: u8 = 24;
/// At most 2^16 ranges, as upstream's range allocator allows.
const MAX_MASK_DIFFERENCE: u8 = 16;
/// How often a node waiting for a free range is looked at again.
const EXHAUSTED_RETRY: Duration = Duration::from_secs(5);
/// Writes tried when the node keeps changing under us, before requeueing.
const WRITE_ATTEMPTS: usize = 5;

/// A bad `--cluster-cidr` or `--node-cidr-mask-size`.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Not an IPv4 CIDR.
    #[error("{input:?} is not an IPv4 CIDR: {reason}")]
    Cidr {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// The node mask does not fit the cluster CIDR.
    #[error(
        "node CIDR mask size {mask} does not fit cluster CIDR {cluster}: it must be between /{} and /30 and at most {MAX_MASK_DIFFERENCE} bits longer",
        cluster.prefix()
    )]
    Mask {
        /// The cluster CIDR.
        cluster: Ipv4Cidr,
        /// The node mask size.
        mask: u8,
    },
}

/// An IPv4 network, e.g. `10.42.0.0/16` (host bits cleared, as Go's ParseCIDR gives it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network of `addr` with `prefix` bits (host bits cleared); None past /32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(addr) & Self::mask(prefix)),
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// First and last address, as numbers.
    fn bounds(&self) -> (u32, u32) {
        let start = u32::from(self.network);
        (start, start | !Self::mask(self.prefix))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = IpamError;

    fn from_str(input: &str) -> Result<Self, IpamError> {
        let bad = |reason: &str| IpamError::Cidr {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = input
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("no /prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| {
            if addr.contains(':') {
                bad("IPv6 is not supported yet")
            } else {
                bad("bad address")
            }
        })?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("bad prefix length"))?;
        Ipv4Cidr::new(addr, prefix).ok_or_else(|| bad("prefix length over 32"))
    }
}

/// What the allocator hands out: `node_mask`-bit ranges of `cluster_cidr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    cluster_cidr: Ipv4Cidr,
    node_mask: u8,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            cluster_cidr: Ipv4Cidr {
                network: Ipv4Addr::new(10, 42, 0, 0),
                prefix: 16,
            },
            node_mask: DEFAULT_NODE_MASK,
        }
    }
}

impl IpamConfig {
    /// Ranges of `node_mask` bits from `cluster_cidr`; the mask must be at least the
    /// cluster's prefix, at most /30 (a node needs addresses for pods) and at most 16 bits
    /// longer (as upstream, so the ranges can be counted).
    pub fn new(cluster_cidr: Ipv4Cidr, node_mask: u8) -> Result<Self, IpamError> {
        if node_mask < cluster_cidr.prefix
            || node_mask > 30
            || node_mask - cluster_cidr.prefix > MAX_MASK_DIFFERENCE
        {
            return Err(IpamError::Mask {
                cluster: cluster_cidr,
                mask: node_mask,
            });
        }
        Ok(IpamConfig {
            cluster_cidr,
            node_mask,
        })
    }

    /// The cluster CIDR.
    pub fn cluster_cidr(&self) -> Ipv4Cidr {
        self.cluster_cidr
    }

    /// The prefix length of each node's range.
    pub fn node_mask(&self) -> u8 {
        self.node_mask
    }

    /// How many node ranges the cluster CIDR holds.
    fn count(&self) -> u32 {
        1 << (self.node_mask - self.cluster_cidr.prefix)
    }

    fn shift(&self) -> u32 {
        32 - u32::from(self.node_mask)
    }

    /// The `index`th node range.
    fn range(&self, index: u32) -> Ipv4Cidr {
        let start = u32::from(self.cluster_cidr.network) + (index << self.shift());
        Ipv4Cidr {
            network: Ipv4Addr::from(start),
            prefix: self.node_mask,
        }
    }

    /// The node ranges `cidr` overlaps, if any (a preset range of another size takes
    /// every range it touches).
    fn overlapping(&self, cidr: Ipv4Cidr) -> Option<RangeInclusive<u32>> {
        let (start, end) = cidr.bounds();
        let (first, last) = self.cluster_cidr.bounds();
        let (start, end) = (start.max(first), end.min(last));
        (start <= end).then(|| ((start - first) >> self.shift())..=((end - first) >> self.shift()))
    }
}

/// The lowest range not taken by any of `taken`, if one is left.
fn lowest_free(config: &IpamConfig, taken: impl IntoIterator<Item = Ipv4Cidr>) -> Option<u32> {
    let mut used = vec![false; config.count() as usize];
    for cidr in taken {
        if let Some(indices) = config.overlapping(cidr) {
            for i in indices {
                used[i as usize] = true;
            }
        }
    }
    used.iter()
        .position(|u| !u)
        .and_then(|i| u32::try_from(i).ok())
}

/// Whether the node has a pod range of any family (then it is left alone).
fn has_range(node: &Node) -> bool {
    node.spec.as_ref().is_some_and(|s| {
        s.pod_cidr.as_deref().is_some_and(|c| !c.is_empty())
            || s.pod_cidrs.as_deref().is_some_and(|c| !c.is_empty())
    })
}

/// The node's IPv4 ranges; others (IPv6, unparsable) are not ours to count.
fn ranges_of(node: &Node) -> impl Iterator<Item = Ipv4Cidr> + '_ {
    let spec = node.spec.as_ref();
    spec.and_then(|s| s.pod_cidr.as_deref())
        .into_iter()
        .chain(
            spec.and_then(|s| s.pod_cidrs.as_deref())
                .into_iter()
                .flatten()
                .map(String::as_str),
        )
        .filter_map(|c| c.parse().ok())
}

struct State {
    ctx: Arc<Context>,
    config: IpamConfig,
    nodes: Store<Node>,
    /// Ranges written (or being written) but not yet seen in the cache, by node uid. A
    /// std mutex: held only while the cache is scanned and a range picked, never across an
    /// await, so two reconciles cannot pick the same range.
    pending: Mutex<HashMap<String, Ipv4Cidr>>,
    events: Recorder,
}

impl State {
    /// The range for the node with `uid`: the one already picked for it, else the lowest
    /// free one; None when the cluster CIDR is exhausted.
    fn claim(&self, uid: &str) -> Option<Ipv4Cidr> {
        let nodes = self.nodes.state();
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Written ranges the cache now shows (or whose node is gone) need no memory.
        pending.retain(|uid, _| {
            nodes
                .iter()
                .any(|n| n.uid().as_deref() == Some(uid.as_str()) && !has_range(n))
        });
        if let Some(cidr) = pending.get(uid) {
            return Some(*cidr);
        }
        let taken = nodes
            .iter()
            .flat_map(|n| ranges_of(n).collect::<Vec<_>>())
            .chain(pending.values().copied());
        let index = lowest_free(&self.config, taken)?;
        let cidr = self.config.range(index);
        pending.insert(uid.to_owned(), cidr);
        Some(cidr)
    }
}

/// Run the controller until `shutdown` fires.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let controller = Controller::new(
        Api::<Node>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let state = Arc::new(State {
        config: ctx.node_ipam,
        nodes: controller.store(),
        events: ctx.recorder("node-ipam-controller"),
        pending: Mutex::new(HashMap::new()),
        ctx,
    });
    tracing::info!(
        cluster_cidr = %state.config.cluster_cidr,
        node_mask = state.config.node_mask,
        "node IPAM: allocating pod ranges"
    );
    controller
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            |obj, state| crate::metrics::timed_reconcile("nodeipam", reconcile(obj, state)),
            error_policy,
            state,
        )
        .for_each(|_| async {})
        .await;
}

fn error_policy(_node: Arc<Node>, error: &Error, _state: Arc<State>) -> Action {
    tracing::debug!(%error, "node IPAM reconcile failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action, Error> {
    // Every node must be listed before anything is judged free.
    if state.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    if node.metadata.deletion_timestamp.is_some() || has_range(&node) {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let Some(uid) = node.uid() else {
        return Ok(Action::await_change());
    };
    let Some(cidr) = state.claim(&uid) else {
        let config = state.config;
        let message = format!(
            "Node {name} status is now: CIDRNotAvailable (no free /{} left in cluster CIDR {})",
            config.node_mask, config.cluster_cidr
        );
        tracing::warn!(node = %name, cluster_cidr = %config.cluster_cidr, "no pod range left for the node");
        state
            .events
            .publish(
                &reference(node.as_ref()),
                EventType::Warning,
                "CIDRNotAvailable",
                &message,
            )
            .await;
        return Ok(Action::requeue(EXHAUSTED_RETRY));
    };
    let nodes: Api<Node> = Api::all(state.ctx.client.clone());
    let mut resource_version = node.resource_version();
    for _ in 0..WRITE_ATTEMPTS {
        // Only against the node as judged: one changed meanwhile is looked at again.
        let patch = json!({
            "metadata": {"resourceVersion": resource_version},
            "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]},
        });
        match nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, pod_cidr = %cidr, "pod range allocated");
                return Ok(Action::await_change());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let fresh = nodes
                    .get_opt(&name)
                    .await
                    .map_err(api_error(format!("reading node {name}")))?;
                match fresh {
                    Some(fresh) if fresh.uid().as_deref() == Some(&uid) && !has_range(&fresh) => {
                        resource_version = fresh.resource_version();
                    }
                    // Given a range by someone else, or gone: the cache will show it, and
                    // the pick is forgotten then.
                    _ => return Ok(Action::await_change()),
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => {
                // Keep the pick: the write may have landed, and the retry gives the same.
                return Err(api_error(format!("setting the pod range of node {name}"))(
                    e,
                ));
            }
        }
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_print() {
        assert_eq!(cidr("10.42.0.0/16").to_string(), "10.42.0.0/16");
        assert_eq!(
            cidr("10.42.7.9/16").to_string(),
            "10.42.0.0/16",
            "host bits cleared"
        );
        assert_eq!(cidr("0.0.0.0/0").bounds(), (0, u32::MAX));
        assert_eq!(cidr("1.2.3.4/32").bounds(), (0x01020304, 0x01020304));
        for bad in [
            "10.42.0.0",
            "10.42.0.0/33",
            "10.42.0/16",
            "fd00::/64",
            "x/1",
            "10.0.0.0/-1",
        ] {
            let err = bad.parse::<Ipv4Cidr>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(
            "fd00::/64"
                .parse::<Ipv4Cidr>()
                .unwrap_err()
                .to_string()
                .contains("IPv6")
        );
    }

    #[test]
    fn config_checks_the_mask() {
        let cluster = cidr(DEFAULT_CLUSTER_CIDR);
        assert_eq!(IpamConfig::new(cluster, 24).unwrap(), IpamConfig::default());
        assert!(IpamConfig::new(cluster, 16).is_ok());
        assert!(IpamConfig::new(cluster, 15).is_err());
        assert!(IpamConfig::new(cluster, 31).is_err());
        assert!(IpamConfig::new(cidr("10.0.0.0/8"), 24).is_ok());
        let err = IpamConfig::new(cidr("10.0.0.0/8"), 25).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    }

    #[test]
    fn ranges_and_overlaps() {
        let config = IpamConfig::default();
        assert_eq!(config.count(), 256);
        assert_eq!(config.range(0).to_string(), "10.42.0.0/24");
        assert_eq!(config.range(255).to_string(), "10.42.255.0/24");
        assert_eq!(config.overlapping(cidr("10.42.7.0/24")), Some(7..=7));
        assert_eq!(config.overlapping(cidr("10.42.7.128/25")), Some(7..=7));
        assert_eq!(config.overlapping(cidr("10.42.4.0/22")), Some(4..=7));
        assert_eq!(config.overlapping(cidr("10.0.0.0/8")), Some(0..=255));
        assert_eq!(config.overlapping(cidr("10.43.0.0/24")), None);
        assert_eq!(config.overlapping(cidr("192.168.0.0/24")), None);
    }

    #[test]
    fn lowest_free_skips_taken() {
        let config = IpamConfig::default();
        assert_eq!(lowest_free(&config, []), Some(0));
        assert_eq!(
            lowest_free(&config, [cidr("10.42.0.0/24"), cidr("10.42.1.0/24")]),
            Some(2)
        );
        // A gap is filled first: a freed range is reused.
        assert_eq!(
            lowest_free(&config, [cidr("10.42.0.0/24"), cidr("10.42.2.0/24")]),
            Some(1)
        );
        assert_eq!(lowest_free(&config, [cidr("10.42.0.0/23")]), Some(2));
        assert_eq!(lowest_free(&config, [cidr("192.168.0.0/24")]), Some(0));
        assert_eq!(lowest_free(&config, [cidr("10.42.0.0/16")]), None);
        let small = IpamConfig::new(cidr("10.9.0.0/23"), 24).unwrap();
        assert_eq!(lowest_free(&small, [cidr("10.9.0.0/24")]), Some(1));
        assert_eq!(
            lowest_free(&small, [cidr("10.9.0.0/24"), cidr("10.9.1.0/24")]),
            None
        );
    }

    #[test]
    fn node_ranges() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"podCIDR": "10.42.3.0/24", "podCIDRs": ["10.42.3.0/24", "fd00:1::/64", "junk"]},
        }))
        .unwrap();
        assert!(has_range(&node));
        assert_eq!(
            ranges_of(&node).collect::<Vec<_>>(),
            [cidr("10.42.3.0/24"), cidr("10.42.3.0/24")]
        );
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        assert!(!has_range(&bare));
        let empty: Node = serde_json::from_value(
            json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "", "podCIDRs": []}}),
        )
        .unwrap();
        assert!(!has_range(&empty));
        let v6: Node = serde_json::from_value(
            json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["fd00::/64"]}}),
        )
        .unwrap();
        assert!(has_range(&v6), "a preset IPv6 range is left alone");
    }
}

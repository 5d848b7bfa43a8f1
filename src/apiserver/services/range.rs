//! The two ranges Services draw from — the service CIDR (cluster IPs) and the node-port
//! range — and where in them each kind of allocation looks first.
//!
//! Pure values and arithmetic: parsing the flags, which addresses are usable (never the
//! network nor the broadcast address), the index of an address or port in its range, and
//! upstream's scan order. Nothing here touches the store; the reservations that make an
//! allocation stick live in `super::reservations`.
//!
//! Like kube-apiserver, each range has a lower band kept for static requests (a Service
//! that names its clusterIP or nodePort): dynamic allocation starts at a random point of the
//! upper band and only falls back to the lower band when the upper one is full, so a
//! well-known address such as the cluster DNS (the 10th of the range) is rarely taken by
//! chance. The band's size is upstream's `min(max(16, size/step), max)`: step 16 and at
//! most 256 addresses for the CIDR, step 32 and at most 128 ports for node ports.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// The service CIDR kube-apiserver calls `--service-cluster-ip-range`, as k3s chooses it.
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
/// kube-apiserver's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: RangeInclusive<u16> = 30000..=32767;

/// The shortest prefix accepted: kube-apiserver refuses service CIDRs with more than 20 host
/// bits (the allocator's bitmap would be too large).
const MIN_PREFIX: u8 = 12;
/// The longest prefix accepted: the cluster DNS takes the 10th address, so a range needs at
/// least 10 usable ones (a /28 has 14).
const MAX_PREFIX: u8 = 28;

/// A bad `--service-cluster-ip-range` or `--service-node-port-range`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The service CIDR cannot be used.
    #[error("invalid service CIDR {value:?}: {reason}")]
    Cidr {
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The node-port range cannot be used.
    #[error("invalid node port range {value:?}: {reason}")]
    PortRange {
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// An IPv4 service CIDR such as `10.43.0.0/16`: where cluster IPs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceCidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl ServiceCidr {
    /// The CIDR of `addr`/`prefix_len`; host bits of `addr` are cleared (as kube-apiserver's
    /// sloppy CIDR parser does). The prefix must be between /12 and /28.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, RangeError> {
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix_len) {
            return Err(RangeError::Cidr {
                value: format!("{addr}/{prefix_len}"),
                reason: format!(
                    "the prefix length must be between /{MIN_PREFIX} (at most 2^20 addresses) and /{MAX_PREFIX} (the cluster DNS takes the 10th address)"
                ),
            });
        }
        let mask = u32::MAX << (32 - u32::from(prefix_len));
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix_len,
        })
    }

    /// The network address (never handed out).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The broadcast address (never handed out).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix_len))
    }

    /// Whether `ip` is inside the CIDR (network and broadcast addresses included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// How many addresses can be handed out: all but the network and broadcast addresses.
    pub fn usable(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix_len))) - 2
    }

    /// The `n`th usable address, counting from 1 (the address after the network address):
    /// `nth(1)` is the `kubernetes` Service's, `nth(10)` the cluster DNS's.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (1..=self.usable())
            .contains(&n)
            .then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// The 0-based index of `ip` among the usable addresses; `None` outside them.
    pub(super) fn index_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let offset = u32::from(ip).checked_sub(u32::from(self.network))?;
        (1..=self.usable()).contains(&offset).then(|| offset - 1)
    }

    /// The usable address at 0-based `index`.
    pub(super) fn at(&self, index: u32) -> Option<Ipv4Addr> {
        self.nth(index + 1)
    }

    /// Upstream's size of the lower band kept for static requests.
    pub(super) fn static_band(&self) -> u32 {
        band(1u32 << (32 - u32::from(self.prefix_len)), 16, 256, 16)
    }
}

impl Default for ServiceCidr {
    fn default() -> Self {
        DEFAULT_SERVICE_CIDR
            .parse()
            .expect("the default service CIDR parses")
    }
}

impl fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for ServiceCidr {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| RangeError::Cidr {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected an IPv4 network such as 10.43.0.0/16"))?;
        if addr.contains(':') {
            return Err(bad(
                "IPv6 service CIDRs are not supported; give an IPv4 network such as 10.43.0.0/16",
            ));
        }
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("expected an IPv4 network such as 10.43.0.0/16"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| bad("the prefix length must be a number between 0 and 32"))?;
        Self::new(addr, prefix).map_err(|e| match e {
            RangeError::Cidr { reason, .. } => bad(&reason),
            other => other,
        })
    }
}

/// A node-port range such as `30000-32767` (both ends included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodePortRange {
    first: u16,
    last: u16,
}

impl NodePortRange {
    /// The range `range`; it must hold at least one port and not start at 0.
    pub fn new(range: RangeInclusive<u16>) -> Result<Self, RangeError> {
        let (first, last) = range.into_inner();
        let bad = |reason: &str| RangeError::PortRange {
            value: format!("{first}-{last}"),
            reason: reason.to_owned(),
        };
        if first == 0 {
            return Err(bad("port 0 cannot be a node port"));
        }
        if first > last {
            return Err(bad("the first port is after the last"));
        }
        Ok(Self { first, last })
    }

    /// The first port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last port.
    pub fn last(&self) -> u16 {
        self.last
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// How many ports the range holds.
    pub fn size(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    /// The port at 0-based `index`.
    pub(super) fn at(&self, index: u32) -> Option<u16> {
        (index < self.size()).then(|| self.first + index as u16)
    }

    /// Upstream's size of the lower band kept for static requests.
    pub(super) fn static_band(&self) -> u32 {
        band(self.size(), 16, 128, 32)
    }
}

impl Default for NodePortRange {
    fn default() -> Self {
        Self {
            first: *DEFAULT_NODE_PORT_RANGE.start(),
            last: *DEFAULT_NODE_PORT_RANGE.end(),
        }
    }
}

impl TryFrom<RangeInclusive<u16>> for NodePortRange {
    type Error = RangeError;

    fn try_from(range: RangeInclusive<u16>) -> Result<Self, Self::Error> {
        Self::new(range)
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for NodePortRange {
    type Err = RangeError;

    /// kube-apiserver's forms: `first-last`, `first+count` (count more after first) or a
    /// single port.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| RangeError::PortRange {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let port = |p: &str| {
            p.trim().parse::<u16>().map_err(|_| {
                bad("expected FIRST-LAST with ports between 1 and 65535, such as 30000-32767")
            })
        };
        let s_trim = s.trim();
        let (first, last) = if let Some((a, b)) = s_trim.split_once('-') {
            (port(a)?, port(b)?)
        } else if let Some((a, n)) = s_trim.split_once('+') {
            let first = port(a)?;
            let count = port(n)?;
            let last = first
                .checked_add(count)
                .ok_or_else(|| bad("the range goes past port 65535"))?;
            (first, last)
        } else {
            let p = port(s_trim)?;
            (p, p)
        };
        Self::new(first..=last).map_err(|e| match e {
            RangeError::PortRange { reason, .. } => bad(&reason),
            other => other,
        })
    }
}

/// Upstream's `calculateRangeOffset`: `min(max(min, size/step), max)`, and none at all for
/// ranges of at most `min`.
fn band(size: u32, min: u32, max: u32, step: u32) -> u32 {
    if size <= min {
        return 0;
    }
    (size / step).clamp(min, max)
}

/// The order in which dynamic allocation tries the indices `0..size`: the upper band
/// `static_band..size` from `upper_start` (wrapping inside the band), then the lower band
/// `0..static_band` from `lower_start` (upstream's random scan with offset; the caller picks
/// the starts at random). Every index comes exactly once.
pub(super) fn scan_order(
    size: u32,
    static_band: u32,
    upper_start: u32,
    lower_start: u32,
) -> impl Iterator<Item = u32> {
    let band = static_band.min(size);
    let upper = size - band;
    let upper_iter = (0..upper).map(move |i| band + (upper_start % upper.max(1) + i) % upper);
    let lower_iter = (0..band).map(move |i| (lower_start % band.max(1) + i) % band);
    upper_iter.chain(lower_iter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_name_what_is_wrong() {
        let cidr: ServiceCidr = "10.43.0.0/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.43.0.0/16");
        assert_eq!(cidr, ServiceCidr::default());
        // Host bits are cleared, as kube-apiserver does.
        assert_eq!(
            "10.43.7.1/16".parse::<ServiceCidr>().unwrap().to_string(),
            "10.43.0.0/16"
        );
        for (bad, says) in [
            ("10.43.0.0", "expected an IPv4 network"),
            ("10.43.0/16", "expected an IPv4 network"),
            ("fd00::/108", "IPv6 service CIDRs are not supported"),
            ("10.43.0.0/33", "between 0 and 32"),
            ("10.43.0.0/x", "between 0 and 32"),
            ("10.0.0.0/8", "between /12"),
            ("10.43.0.0/30", "the 10th address"),
        ] {
            let err = bad.parse::<ServiceCidr>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn usable_addresses_exclude_network_and_broadcast() {
        let cidr: ServiceCidr = "10.43.0.0/28".parse().unwrap();
        assert_eq!(cidr.usable(), 14);
        assert_eq!(cidr.nth(1), Some(Ipv4Addr::new(10, 43, 0, 1)));
        assert_eq!(cidr.nth(10), Some(Ipv4Addr::new(10, 43, 0, 10)));
        assert_eq!(cidr.nth(14), Some(Ipv4Addr::new(10, 43, 0, 14)));
        assert_eq!(cidr.nth(15), None);
        assert_eq!(cidr.nth(0), None);
        assert_eq!(cidr.broadcast(), Ipv4Addr::new(10, 43, 0, 15));
        assert_eq!(cidr.index_of(Ipv4Addr::new(10, 43, 0, 0)), None);
        assert_eq!(cidr.index_of(Ipv4Addr::new(10, 43, 0, 15)), None);
        assert_eq!(cidr.index_of(Ipv4Addr::new(10, 43, 0, 16)), None);
        assert_eq!(cidr.index_of(Ipv4Addr::new(10, 42, 255, 255)), None);
        assert_eq!(cidr.index_of(Ipv4Addr::new(10, 43, 0, 1)), Some(0));
        assert_eq!(cidr.at(13), Some(Ipv4Addr::new(10, 43, 0, 14)));
        assert!(cidr.contains(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 43, 0, 16)));
    }

    #[test]
    fn static_bands_follow_upstream() {
        let band_of = |s: &str| s.parse::<ServiceCidr>().unwrap().static_band();
        assert_eq!(band_of("10.43.0.0/16"), 256);
        assert_eq!(band_of("10.43.0.0/24"), 16);
        assert_eq!(band_of("10.43.0.0/20"), 256);
        assert_eq!(band_of("10.43.0.0/21"), 128);
        assert_eq!(band_of("10.43.0.0/28"), 0);
        assert_eq!(NodePortRange::default().static_band(), 86);
        assert_eq!(NodePortRange::new(30000..=30009).unwrap().static_band(), 0);
        assert_eq!(NodePortRange::new(1..=65535).unwrap().static_band(), 128);
    }

    #[test]
    fn node_port_ranges_parse_like_kube_apiserver() {
        let range: NodePortRange = "30000-32767".parse().unwrap();
        assert_eq!(range, NodePortRange::default());
        assert_eq!(range.size(), 2768);
        assert_eq!(range.to_string(), "30000-32767");
        assert_eq!(
            "30000+10".parse::<NodePortRange>().unwrap(),
            NodePortRange::new(30000..=30010).unwrap()
        );
        assert_eq!("31000".parse::<NodePortRange>().unwrap().size(), 1);
        for (bad, says) in [
            ("30000-", "FIRST-LAST"),
            ("a-b", "FIRST-LAST"),
            ("30000-70000", "FIRST-LAST"),
            ("32767-30000", "after the last"),
            ("0-10", "port 0"),
            ("65000+1000", "past port 65535"),
        ] {
            let err = bad.parse::<NodePortRange>().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(range.contains(30000) && !range.contains(29999));
        assert_eq!(range.at(2767), Some(32767));
        assert_eq!(range.at(2768), None);
    }

    #[test]
    fn scan_order_tries_the_upper_band_first_and_everything_once() {
        for (size, band, up, low) in [
            (14, 0, 5, 3),
            (100, 16, 7, 20),
            (100, 16, 83, 15),
            (3, 16, 1, 2),
        ] {
            let order: Vec<u32> = scan_order(size, band, up, low).collect();
            assert_eq!(order.len(), size as usize);
            let mut sorted = order.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted, (0..size).collect::<Vec<_>>());
            let band = band.min(size);
            let upper = (size - band) as usize;
            assert!(order[..upper].iter().all(|i| *i >= band), "{order:?}");
            assert!(order[upper..].iter().all(|i| *i < band), "{order:?}");
        }
        let order: Vec<u32> = scan_order(100, 16, 7, 0).take(2).collect();
        assert_eq!(order, [23, 24]);
    }
}

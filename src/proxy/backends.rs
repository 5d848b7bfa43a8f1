//! The endpoints one listener forwards to, and the choice among them: round-robin, or
//! sticky per client IP when the Service asks for ClientIP session affinity. The set is
//! updated in place when the EndpointSlices change, so new connections see the change at
//! once; each endpoint carries a token cancelled when it leaves the set, which closes the
//! connections still going to it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Sticky entries are swept once there are this many, so a stream of one-off clients
/// cannot grow the map without bound.
const AFFINITY_SWEEP_AT: usize = 4096;

/// One endpoint in a set.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    gone: CancellationToken,
}

impl Backend {
    /// Cancelled when the endpoint leaves the set (or the set is closed).
    pub fn gone(&self) -> &CancellationToken {
        &self.gone
    }
}

#[derive(Debug, Default)]
struct Affinity {
    timeout: Option<Duration>,
    clients: HashMap<IpAddr, (SocketAddr, Instant)>,
}

/// The endpoints of one listener.
#[derive(Debug, Default)]
pub struct BackendSet {
    // std locks: held only to copy an Arc or touch a map, never across an await.
    current: RwLock<Arc<Vec<Arc<Backend>>>>,
    next: AtomicUsize,
    affinity: Mutex<Affinity>,
}

impl BackendSet {
    /// A set of `addrs`, sticky per client for `affinity` when given.
    pub fn new(addrs: &[SocketAddr], affinity: Option<Duration>) -> Arc<Self> {
        let set = Arc::new(BackendSet::default());
        set.update(addrs, affinity);
        set
    }

    /// Replace the endpoints: ones that stay keep their connections, removed ones are
    /// cancelled (closing their connections).
    pub fn update(&self, addrs: &[SocketAddr], affinity: Option<Duration>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let next: Vec<Arc<Backend>> = addrs
            .iter()
            .map(|addr| {
                current
                    .iter()
                    .find(|b| b.addr == *addr)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Backend {
                            addr: *addr,
                            gone: CancellationToken::new(),
                        })
                    })
            })
            .collect();
        for old in current.iter() {
            if !addrs.contains(&old.addr) {
                old.gone.cancel();
            }
        }
        *current = Arc::new(next);
        drop(current);
        let mut sticky = self.affinity.lock().unwrap_or_else(|e| e.into_inner());
        if sticky.timeout != affinity {
            sticky.clients.clear();
        }
        sticky.timeout = affinity;
        sticky.clients.retain(|_, (addr, _)| addrs.contains(addr));
    }

    /// Whether there is nowhere to send traffic.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// The endpoints now.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every endpoint in the order to try them for a new connection from `client`: its
    /// sticky endpoint first (under affinity), otherwise the next in round-robin, then the
    /// others as fallbacks should the first refuse.
    pub fn candidates(&self, client: IpAddr, now: Instant) -> Vec<Arc<Backend>> {
        let all = self.snapshot();
        if all.is_empty() {
            return Vec::new();
        }
        let sticky = {
            let mut affinity = self.affinity.lock().unwrap_or_else(|e| e.into_inner());
            match affinity.timeout {
                Some(timeout) => match affinity.clients.get(&client) {
                    Some((addr, at)) if now.duration_since(*at) < timeout => Some(*addr),
                    Some(_) => {
                        affinity.clients.remove(&client);
                        None
                    }
                    None => None,
                },
                None => None,
            }
        };
        let start = match sticky.and_then(|addr| all.iter().position(|b| b.addr == addr)) {
            Some(i) => i,
            None => self.next.fetch_add(1, Ordering::Relaxed) % all.len(),
        };
        (0..all.len())
            .map(|i| all[(start + i) % all.len()].clone())
            .collect()
    }

    /// Record that `client` was served by `addr` (under affinity: its next connections go
    /// there too until the timeout passes without one).
    pub fn served(&self, client: IpAddr, addr: SocketAddr, now: Instant) {
        let mut affinity = self.affinity.lock().unwrap_or_else(|e| e.into_inner());
        let Some(timeout) = affinity.timeout else {
            return;
        };
        if affinity.clients.len() >= AFFINITY_SWEEP_AT {
            affinity
                .clients
                .retain(|_, (_, at)| now.duration_since(*at) < timeout);
        }
        affinity.clients.insert(client, (addr, now));
    }

    /// Drop every endpoint and close their connections (the listener goes away).
    pub fn close(&self) {
        self.update(&[], None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn firsts(set: &BackendSet, client: &str, n: usize, now: Instant) -> Vec<String> {
        (0..n)
            .map(|_| {
                let b = set.candidates(client.parse().unwrap(), now)[0].clone();
                set.served(client.parse().unwrap(), b.addr, now);
                b.addr.to_string()
            })
            .collect()
    }

    #[test]
    fn round_robin_visits_every_endpoint_and_offers_the_rest_as_fallbacks() {
        let set = BackendSet::new(&addrs(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]), None);
        let now = Instant::now();
        let mut seen = firsts(&set, "1.1.1.1", 6, now);
        assert_eq!(seen[0..3], seen[3..6], "a fixed rotation");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3);
        let c = set.candidates("1.1.1.1".parse().unwrap(), now);
        assert_eq!(c.len(), 3);
        assert_ne!(c[0].addr, c[1].addr);
    }

    #[test]
    fn client_ip_affinity_sticks_until_the_timeout() {
        let set = BackendSet::new(
            &addrs(&["10.0.0.1:80", "10.0.0.2:80"]),
            Some(Duration::from_secs(10)),
        );
        let t0 = Instant::now();
        let a = firsts(&set, "1.1.1.1", 5, t0);
        assert!(a.iter().all(|x| *x == a[0]), "{a:?}");
        let b = firsts(&set, "2.2.2.2", 1, t0);
        // Another client is not forced to the same endpoint: round-robin moved on.
        assert_ne!(a[0], b[0]);
        // Past the timeout (measured from the last connection) the client is rebalanced.
        let later = t0 + Duration::from_secs(11);
        let c = set.candidates("1.1.1.1".parse().unwrap(), later);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn removed_endpoints_are_cancelled_and_kept_ones_are_not() {
        let set = BackendSet::new(&addrs(&["10.0.0.1:80", "10.0.0.2:80"]), None);
        let before = set.snapshot();
        set.update(&addrs(&["10.0.0.2:80", "10.0.0.3:80"]), None);
        assert!(before[0].gone().is_cancelled());
        assert!(!before[1].gone().is_cancelled());
        let after = set.snapshot();
        assert!(
            Arc::ptr_eq(&before[1], &after[0]),
            "kept endpoint is the same one"
        );
        set.close();
        assert!(set.is_empty());
        assert!(after.iter().all(|b| b.gone().is_cancelled()));
    }

    #[test]
    fn a_sticky_endpoint_that_left_is_forgotten() {
        let set = BackendSet::new(
            &addrs(&["10.0.0.1:80", "10.0.0.2:80"]),
            Some(Duration::from_secs(100)),
        );
        let now = Instant::now();
        let first = firsts(&set, "1.1.1.1", 1, now)[0].clone();
        let other = if first == "10.0.0.1:80" {
            "10.0.0.2:80"
        } else {
            "10.0.0.1:80"
        };
        set.update(&addrs(&[other]), Some(Duration::from_secs(100)));
        assert_eq!(firsts(&set, "1.1.1.1", 1, now)[0], other);
    }
}

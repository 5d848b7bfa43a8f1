//! Forwarding to the host's nameservers: every name that is not the cluster's goes to the
//! `nameserver`s of a resolv.conf (the host's), tried in file order, and their answer —
//! response code included — is what the client gets.
//!
//! A query goes over UDP (EDNS, 1232-byte buffer) and again over TCP when the upstream
//! truncates. Nameservers that are this server's own listen addresses are skipped, so a
//! host whose resolv.conf points at cluster DNS does not loop. The file is re-read when it
//! changes (checked at most once a second). This module owns the upstream connections and
//! nothing else: it never looks at the cluster's names.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message, Query};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::net::xfer::DnsExchange;
use hickory_server::net::{DnsHandle, NetError};

/// How long one upstream gets to answer (UDP retries included) before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the resolv.conf is looked at for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// Why a query could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// The resolv.conf names no nameserver we may use.
    #[error("no usable nameserver in {0}")]
    NoUpstream(PathBuf),
    /// Every nameserver failed; this is the last one's failure.
    #[error("upstream nameserver {addr}: {source}")]
    Upstream {
        addr: SocketAddr,
        #[source]
        source: NetError,
    },
}

/// The upstream nameservers of one resolv.conf.
pub(crate) struct Forwarder {
    path: PathBuf,
    /// Our own listen addresses: never forwarded to.
    exclude: Vec<SocketAddr>,
    /// A std lock: held only to compare the file's stamp and swap the list, never across
    /// an await.
    state: Mutex<State>,
}

struct State {
    checked: Instant,
    stamp: Option<(SystemTime, u64)>,
    upstreams: Vec<Upstream>,
}

#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    /// Kept for the life of the list: it only holds the request channel; each query still
    /// goes out from a fresh random port.
    udp: DnsExchange<TokioRuntimeProvider>,
}

impl Forwarder {
    /// Read `path` and prepare its nameservers, leaving out `exclude`. Must run inside the
    /// tokio runtime (the UDP exchanges start their tasks there).
    pub(crate) fn load(path: &Path, exclude: &[SocketAddr]) -> io::Result<Self> {
        let stamp = stamp(path);
        let text = std::fs::read_to_string(path)?;
        let upstreams = upstreams(&text, exclude);
        if upstreams.is_empty() {
            tracing::warn!(path = %path.display(), "no usable nameserver: names outside the cluster will fail");
        }
        Ok(Forwarder {
            path: path.to_owned(),
            exclude: exclude.to_vec(),
            state: Mutex::new(State {
                checked: Instant::now(),
                stamp,
                upstreams,
            }),
        })
    }

    /// The nameservers queries go to now, in order.
    pub(crate) fn nameservers(&self) -> Vec<SocketAddr> {
        self.current().iter().map(|u| u.addr).collect()
    }

    /// Ask the upstreams `query`, first answer wins.
    pub(crate) async fn forward(
        &self,
        query: &Query,
        recursion_desired: bool,
    ) -> Result<Message, ForwardError> {
        let upstreams = self.current();
        let mut last = None;
        for upstream in upstreams {
            match exchange(&upstream, query, recursion_desired).await {
                Ok(message) => return Ok(message),
                Err(source) => {
                    tracing::debug!(upstream = %upstream.addr, %source, "upstream nameserver failed");
                    last = Some(ForwardError::Upstream {
                        addr: upstream.addr,
                        source,
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| ForwardError::NoUpstream(self.path.clone())))
    }

    /// The upstream list, re-read first if the file changed.
    fn current(&self) -> Vec<Upstream> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let now = stamp(&self.path);
            if now != state.stamp {
                // A file being rewritten may be missing for a moment: keep the old list.
                match std::fs::read_to_string(&self.path) {
                    Ok(text) => {
                        state.upstreams = upstreams(&text, &self.exclude);
                        state.stamp = now;
                        tracing::info!(
                            path = %self.path.display(),
                            nameservers = ?state.upstreams.iter().map(|u| u.addr).collect::<Vec<_>>(),
                            "re-read resolv.conf"
                        );
                    }
                    Err(error) => {
                        tracing::warn!(path = %self.path.display(), %error, "re-reading resolv.conf")
                    }
                }
            }
        }
        state.upstreams.clone()
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn upstreams(resolv_conf: &str, exclude: &[SocketAddr]) -> Vec<Upstream> {
    nameservers(resolv_conf)
        .into_iter()
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|addr| !is_ours(*addr, exclude))
        .map(|addr| Upstream {
            addr,
            udp: UdpClientStream::builder(addr, TokioRuntimeProvider::default())
                .with_timeout(Some(UPSTREAM_TIMEOUT))
                .exchange(),
        })
        .collect()
}

/// The `nameserver` addresses of a resolv.conf, in order (resolv.conf(5): one per line,
/// `#` or `;` starts a comment, IPv6 may carry a `%zone`).
pub(crate) fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next()?;
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let address = words.next()?;
            address.split('%').next()?.parse().ok()
        })
        .collect()
}

/// Whether `upstream` would reach this server itself.
fn is_ours(upstream: SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|l| {
        *l == upstream
            || (l.port() == upstream.port()
                && l.ip().is_unspecified()
                && (upstream.ip().is_loopback() || upstream.ip().is_unspecified()))
    })
}

async fn exchange(
    upstream: &Upstream,
    query: &Query,
    recursion_desired: bool,
) -> Result<Message, NetError> {
    let mut options = DnsRequestOptions::default();
    options.recursion_desired = recursion_desired;
    let request = DnsRequest::from_query(query.clone(), options);
    let response = first(upstream.udp.send(request.clone())).await?;
    if !response.metadata.truncation {
        return Ok(response.into_message());
    }
    let tcp = TcpClientStream::exchange(
        upstream.addr,
        None,
        UPSTREAM_TIMEOUT,
        None,
        TokioRuntimeProvider::default(),
    )
    .await?;
    Ok(first(tcp.send(request)).await?.into_message())
}

async fn first(
    responses: impl Stream<Item = Result<DnsResponse, NetError>> + Unpin,
) -> Result<DnsResponse, NetError> {
    let mut responses = responses;
    responses
        .next()
        .await
        .unwrap_or_else(|| Err(NetError::from("the upstream closed without answering")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\n\
                    nameserver   fe80::1%eth0 ; link-local\n  nameserver 1.1.1.1 # cloudflare\n\
                    nameserver not-an-ip\noptions ndots:5\n#nameserver 9.9.9.9\n";
        let expected: Vec<IpAddr> = ["10.0.0.2", "fe80::1", "1.1.1.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nameservers(text), expected);
    }

    #[test]
    fn our_own_addresses_are_not_upstreams() {
        let listen: Vec<SocketAddr> = vec!["10.43.0.10:53".parse().unwrap()];
        assert!(is_ours("10.43.0.10:53".parse().unwrap(), &listen));
        assert!(!is_ours("10.43.0.11:53".parse().unwrap(), &listen));
        let any: Vec<SocketAddr> = vec!["0.0.0.0:53".parse().unwrap()];
        assert!(is_ours("127.0.0.53:53".parse().unwrap(), &any));
        assert!(!is_ours("192.168.1.1:53".parse().unwrap(), &any));
    }

    #[tokio::test]
    async fn no_usable_upstream_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 10.43.0.10\n").unwrap();
        let forwarder = Forwarder::load(&path, &["10.43.0.10:53".parse().unwrap()]).unwrap();
        assert!(forwarder.nameservers().is_empty());
        let query = Query::query(
            hickory_proto::rr::Name::from_ascii("example.com.").unwrap(),
            hickory_proto::rr::RecordType::A,
        );
        assert!(matches!(
            forwarder.forward(&query, true).await,
            Err(ForwardError::NoUpstream(p)) if p == path
        ));
    }

    #[test]
    fn a_missing_resolv_conf_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Forwarder::load(&dir.path().join("nope"), &[]).is_err());
    }
}

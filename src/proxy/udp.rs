//! UDP forwarding for one listening address. UDP has no connections, so the proxy keeps a
//! session per client address: a socket connected to the endpoint chosen for that client,
//! whose replies are sent back from the Service's address. A session ends after
//! [`DEFAULT_IDLE_TIMEOUT`] without traffic (conntrack's UDP timeout), when its endpoint
//! leaves the Service, or when the proxy stops.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::Type;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backends::{Backend, BackendSet};

/// A client's session is dropped after this long without a datagram either way.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest datagram relayed (the most UDP can carry).
const MAX_DATAGRAM: usize = 65536;

/// A UDP socket on `addr` (see [`super::bind_socket`]).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    UdpSocket::from_std(super::bind_socket(addr, Type::DGRAM)?.into())
}

struct Session {
    upstream: UdpSocket,
    /// Milliseconds since the listener's epoch at the last datagram.
    last: AtomicU64,
    ended: CancellationToken,
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<Session>>>>;

/// Relay datagrams arriving on `socket` to `backends` until `stop`.
pub async fn serve(
    socket: UdpSocket,
    backends: Arc<BackendSet>,
    stop: CancellationToken,
    tasks: TaskTracker,
    idle_timeout: Duration,
) {
    let socket = Arc::new(socket);
    // std Mutex: only looked up or changed, never held across an await.
    let sessions: Sessions = Arc::default();
    let epoch = Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            _ = stop.cancelled() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                // An ICMP error for an earlier reply to a client that went away: not ours
                // to act on.
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive");
                    continue;
                }
            },
        };
        let existing = sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client)
            .cloned();
        let session = match existing {
            Some(s) => s,
            None => {
                let Some((session, backend)) = open(&backends, client).await else {
                    continue;
                };
                sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(client, session.clone());
                tasks.spawn(relay_replies(
                    socket.clone(),
                    session.clone(),
                    backend,
                    client,
                    sessions.clone(),
                    stop.clone(),
                    epoch,
                    idle_timeout,
                ));
                session
            }
        };
        session
            .last
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        if let Err(e) = session.upstream.send(&buf[..n]).await {
            // The endpoint is unreachable (an earlier ICMP error): start over with the
            // next datagram, which picks again.
            tracing::debug!(%client, error = %e, "udp send to endpoint");
            session.ended.cancel();
        }
    }
    let open: Vec<_> = sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (_, s) in open {
        s.ended.cancel();
    }
}

async fn open(backends: &BackendSet, client: SocketAddr) -> Option<(Arc<Session>, Arc<Backend>)> {
    let backend = backends
        .candidates(client.ip(), Instant::now())
        .into_iter()
        .next()?;
    let local: SocketAddr = match backend.addr.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let upstream = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "udp socket for an endpoint");
            return None;
        }
    };
    if let Err(e) = upstream.connect(backend.addr).await {
        tracing::debug!(endpoint = %backend.addr, error = %e, "udp connect");
        return None;
    }
    backends.served(client.ip(), backend.addr, Instant::now());
    Some((
        Arc::new(Session {
            upstream,
            last: AtomicU64::new(0),
            ended: CancellationToken::new(),
        }),
        backend,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn relay_replies(
    socket: Arc<UdpSocket>,
    session: Arc<Session>,
    backend: Arc<Backend>,
    client: SocketAddr,
    sessions: Sessions,
    stop: CancellationToken,
    epoch: Instant,
    idle_timeout: Duration,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let last = Duration::from_millis(session.last.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(epoch + last + idle_timeout);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = session.ended.cancelled() => break,
            _ = backend.gone().cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => {
                let seen = Duration::from_millis(session.last.load(Ordering::Relaxed));
                if epoch.elapsed() >= seen + idle_timeout {
                    break;
                }
            }
            received = session.upstream.recv(&mut buf) => match received {
                Ok(n) => {
                    session.last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    if let Err(e) = socket.send_to(&buf[..n], client).await {
                        tracing::debug!(%client, error = %e, "udp reply");
                    }
                }
                // ICMP port unreachable from the endpoint: this session is useless.
                Err(_) => break,
            },
        }
    }
    let mut map = sessions.lock().unwrap_or_else(|e| e.into_inner());
    if map.get(&client).is_some_and(|s| Arc::ptr_eq(s, &session)) {
        map.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn datagrams_reach_an_endpoint_and_replies_come_from_the_service_address() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 100];
            loop {
                let (n, from) = echo.recv_from(&mut buf).await.unwrap();
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                echo.send_to(&reply, from).await.unwrap();
            }
        });
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let service = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let backends = BackendSet::new(&[echo_addr], None);
        tokio::spawn(serve(
            listener,
            backends.clone(),
            stop.clone(),
            tasks.clone(),
            Duration::from_millis(200),
        ));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(service).await.unwrap();
        let mut buf = [0u8; 100];
        for round in 0..3 {
            client
                .send(format!("ping{round}").as_bytes())
                .await
                .unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..n], format!("echo:ping{round}").as_bytes());
        }
        // The idle session ends and its task with it; a new datagram opens a new one.
        tokio::time::sleep(Duration::from_millis(400)).await;
        client.send(b"again").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"echo:again");
        stop.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .expect("sessions end with the proxy");
    }
}

//! TCP forwarding for one listening address (a cluster IP's port or a NodePort on one node
//! address): accept, pick an endpoint, connect (falling back to the next endpoint when one
//! refuses), then move bytes both ways with `splice(2)` through a pipe so the payload never
//! enters user space. A connection ends when either side closes, when its endpoint leaves
//! the Service (reset, so clients notice at once), or when the proxy stops.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{OFlag, SpliceFFlags, splice};
use socket2::{SockRef, Type};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backends::BackendSet;

/// How long one endpoint gets to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes moved per splice call: the default pipe's capacity.
const SPLICE_CHUNK: usize = 64 * 1024;
/// The pipe a bulk transfer grows to (Linux's default pipe-max-size).
const BULK_PIPE: usize = 1024 * 1024;
/// Pending connections the kernel queues before accept.
const BACKLOG: i32 = 4096;

/// A listening socket on `addr` (see [`super::bind_socket`]).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = super::bind_socket(addr, Type::STREAM)?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Accept on `listener` until `stop`, forwarding each connection to `backends`.
pub async fn serve(
    listener: TcpListener,
    backends: Arc<BackendSet>,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                connections.spawn(handle(client, peer, backends.clone(), stop.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listen = ?listener.local_addr().ok(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(
    client: TcpStream,
    peer: SocketAddr,
    backends: Arc<BackendSet>,
    stop: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let mut chosen = None;
    for backend in backends.candidates(peer.ip(), Instant::now()) {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr)).await {
            Ok(Ok(upstream)) => {
                chosen = Some((backend, upstream));
                break;
            }
            Ok(Err(e)) => tracing::debug!(endpoint = %backend.addr, error = %e, "endpoint refused"),
            Err(_) => tracing::debug!(endpoint = %backend.addr, "endpoint connect timed out"),
        }
    }
    let Some((backend, upstream)) = chosen else {
        reset(&client);
        return;
    };
    backends.served(peer.ip(), backend.addr, Instant::now());
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        result = forward(&client, &upstream) => {
            if let Err(e) = result {
                tracing::debug!(%peer, endpoint = %backend.addr, error = %e, "connection ended");
                reset(&client);
                reset(&upstream);
            }
        }
        _ = backend.gone().cancelled() => {
            reset(&client);
            reset(&upstream);
        }
        _ = stop.cancelled() => {}
    }
}

/// Make the coming close a reset: the peer learns at once that the connection is gone.
fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Move bytes both ways until both directions are done; a direction that ends half-closes
/// its destination so request/response protocols that shut down writing keep working.
pub async fn forward(a: &TcpStream, b: &TcpStream) -> io::Result<()> {
    match (pipe(), pipe()) {
        (Ok(up), Ok(down)) => {
            tokio::try_join!(splice_one_way(a, b, up), splice_one_way(b, a, down))?;
            Ok(())
        }
        // No pipes (descriptor or pipe-buffer limits): copy through user space instead.
        _ => {
            tokio::try_join!(copy_then_shutdown(a, b), copy_then_shutdown(b, a))?;
            Ok(())
        }
    }
}

async fn copy_then_shutdown(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; SPLICE_CHUNK];
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return SockRef::from(to).shutdown(std::net::Shutdown::Write);
        }
        let mut sent = 0;
        while sent < n {
            to.writable().await?;
            match to.try_write(&buf[sent..n]) {
                Ok(m) => sent += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?)
}

async fn splice_one_way(
    from: &TcpStream,
    to: &TcpStream,
    (pipe_out, pipe_in): (OwnedFd, OwnedFd),
) -> io::Result<()> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut chunk = SPLICE_CHUNK;
    loop {
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing to read
        // (which is what lets try_io clear the socket's readiness on it).
        let n = loop {
            from.readable().await?;
            match from.try_io(Interest::READABLE, || {
                splice(from.as_fd(), None, pipe_in.as_fd(), None, chunk, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return SockRef::from(to).shutdown(std::net::Shutdown::Write);
        }
        let mut left = n;
        while left > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe_out.as_fd(), None, to.as_fd(), None, left, flags)
                    .map_err(io::Error::from)
            }) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        // A read that filled the pipe is a bulk transfer: a bigger pipe moves more per
        // pair of calls. Only such connections pay for it; request/response traffic keeps
        // the default pipe.
        if n == chunk
            && chunk < BULK_PIPE
            && let Ok(size) = nix::fcntl::fcntl(
                pipe_in.as_fd(),
                nix::fcntl::FcntlArg::F_SETPIPE_SZ(BULK_PIPE as i32),
            )
        {
            chunk = usize::try_from(size).unwrap_or(SPLICE_CHUNK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    #[tokio::test]
    async fn forward_moves_bytes_both_ways_and_propagates_half_close() {
        // client <-> (a | b) <-> server, with forward() joining a and b.
        let (mut client, a) = pair().await;
        let (b, mut server) = pair().await;
        let relay = tokio::spawn(async move { forward(&a, &b).await });
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), payload.len());
        assert!(got == payload, "bytes arrive unchanged and in order");
        server.write_all(b"done").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"done");
        relay.await.unwrap().unwrap();
    }
}

//! The listeners: accepting TCP connections, TLS handshakes, and HTTP/1.1 and HTTP/2 on
//! each connection, with the bounds that keep a slow or hostile client from holding the
//! server: a deadline for the handshake and for each request's headers, a cap on header
//! size, and a graceful end (open requests finish, watches end) at shutdown.
//!
//! Each request is tagged with how it arrived ([`Transport`]); access control reads it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::access::{HANDSHAKE_TIMEOUT, Transport};
use crate::auth::UserInfo;

/// Largest request head (request line and headers) accepted on HTTP/1.1, and header list
/// on HTTP/2.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;
/// How long open connections get to finish at shutdown before they are cut.
const DRAIN: Duration = Duration::from_secs(10);

/// Whether connections are plain or TLS.
pub enum Mode {
    /// Plain HTTP (the loopback-only insecure listener, and tests).
    Plain,
    /// TLS with this configuration.
    Tls(Arc<rustls::ServerConfig>),
}

/// Serve `router` on `listener` until `shutdown` fires, then let open connections finish
/// (bounded by [`DRAIN`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    mode: Mode,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = Arc::new(GracefulShutdown::new());
    let acceptor = match &mode {
        Mode::Tls(config) => Some(tokio_rustls::TlsAcceptor::from(config.clone())),
        Mode::Plain => None,
    };
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let graceful = graceful.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match acceptor {
                None => {
                    let transport = Transport::Insecure { remote };
                    serve_connection(tcp, router, transport, &graceful).await;
                }
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        h = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => h,
                    };
                    let tls = match handshake {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|cert| match crate::auth::pki::identity(cert) {
                            Ok((user, groups)) => Some(UserInfo::new(user, groups)),
                            Err(e) => {
                                tracing::debug!(%remote, error = %e, "unusable client certificate");
                                None
                            }
                        });
                    let transport = Transport::Tls { peer, remote };
                    serve_connection(tls, router, transport, &graceful).await;
                }
            }
        });
    }
    drop(listener);
    // Connections still open get DRAIN to finish what they are doing.
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}

async fn serve_connection<S>(
    io: S,
    router: Router,
    transport: Transport,
    graceful: &GracefulShutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = match &transport {
        Transport::Tls { remote, .. } | Transport::Insecure { remote } => *remote,
    };
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(transport.clone());
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo::<SocketAddr>(remote));
        router.clone().oneshot(req)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slowloris: a client dribbling its headers is cut off instead of holding a task
        // and a socket for ever.
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = graceful.watch(connection.into_owned()).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// The TLS configuration of the API server: `cert_pem` and `key_pem` serve, client
/// certificates are optional and verified against `client_ca_pem` when sent, and HTTP/2 is
/// offered (kubectl uses it).
pub fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let bad =
        |what: &str, e: &dyn std::fmt::Display| rustls::Error::General(format!("{what}: {e}"));
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("serving certificate", &e))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad("serving key", &e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| bad("client CA", &e))?)
            .map_err(|e| bad("client CA", &e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    // Tokens and anonymous health checks come without a certificate.
    .allow_unauthenticated()
    .build()
    .map_err(|e| bad("client verifier", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

//! The kubelet API of this node: what the API server's `pods/{name}/log` proxies to
//! (`GET /containerLogs/{namespace}/{pod}/{container}` with follow, previous, tailLines
//! and limitBytes, as kubelet serves it), `/healthz` and `/metrics` (the process's
//! Prometheus metrics). Logs are read from the files the containerd shims append to; the
//! containers are found by their labels.
//!
//! Plain HTTP for now: the cluster CA and client certificates come with the security
//! work, and until then this port should be reachable only from the API server's host.

use std::io::SeekFrom;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::runtime::{Record, Runtime, State};

/// A bound, not yet serving, kubelet API.
pub struct KubeletServer {
    listener: TcpListener,
    runtime: Runtime,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    #[serde(default)]
    pub follow: Option<String>,
    #[serde(default)]
    pub previous: Option<String>,
    #[serde(default)]
    pub tail_lines: Option<i64>,
    #[serde(default)]
    pub limit_bytes: Option<i64>,
}

fn flag(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| v == "true" || v == "1")
}

impl KubeletServer {
    /// Binds 0.0.0.0:port (0: any free port).
    pub async fn bind(port: u16, runtime: Runtime) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("0.0.0.0", port)).await?;
        Ok(KubeletServer { listener, runtime })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/metrics", get(metrics))
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                get(container_logs),
            )
            .with_state(self.runtime);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

/// The process's metrics, as kubelet serves its own at `/metrics` (in `moor up` the same
/// text as the API server's: one process, one registry).
async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::encode(),
    )
        .into_response()
}

async fn container_logs(
    AxumState(runtime): AxumState<Runtime>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(options): Query<LogOptions>,
) -> Response {
    let records = match runtime.list().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut attempts: Vec<Record> = records
        .into_iter()
        .filter(|r| r.pod_namespace == namespace && r.pod_name == pod && r.name == container)
        .collect();
    attempts.sort_by_key(|r| std::cmp::Reverse(r.attempt));
    let previous = flag(&options.previous);
    let record = if previous {
        match attempts.get(1) {
            Some(r) => r.clone(),
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                    ),
                )
                    .into_response();
            }
        }
    } else {
        match attempts.first() {
            Some(r) => r.clone(),
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"),
                )
                    .into_response();
            }
        }
    };
    let content = match tokio::fs::read(&record.log_path).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut start = match options.tail_lines {
        Some(n) if n >= 0 => tail_offset(&content, n as usize),
        _ => 0,
    };
    let limit = options.limit_bytes.filter(|l| *l > 0).map(|l| l as usize);
    let mut head = content[start..].to_vec();
    if let Some(limit) = limit {
        head.truncate(limit);
    }
    start = content.len();
    let follow = flag(&options.follow) && !previous && limit.is_none();
    if !follow || !matches!(record.state, State::Running { .. }) {
        return (StatusCode::OK, head).into_response();
    }
    // Follow: what is there, then whatever the container appends until it stops.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::spawn(async move {
        if tx.send(Ok(head)).await.is_err() {
            return;
        }
        let mut offset = start as u64;
        let mut checks = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let chunk = read_from(&record.log_path, offset).await;
            match chunk {
                Ok(bytes) if !bytes.is_empty() => {
                    offset += bytes.len() as u64;
                    if tx.send(Ok(bytes)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            checks += 1;
            // Every second, see whether the container still runs; once it stopped and
            // everything was sent, the stream ends as kubelet's does.
            if checks.is_multiple_of(10) {
                let running = runtime
                    .list_pod(&record.pod_uid)
                    .await
                    .map(|rs| {
                        rs.iter()
                            .any(|r| r.id == record.id && matches!(r.state, State::Running { .. }))
                    })
                    .unwrap_or(false);
                if !running {
                    if let Ok(bytes) = read_from(&record.log_path, offset).await
                        && !bytes.is_empty()
                    {
                        let _ = tx.send(Ok(bytes)).await;
                    }
                    return;
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    (StatusCode::OK, Body::from_stream(stream)).into_response()
}

async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file.metadata().await?.len();
    // A rotated (truncated) file starts over.
    let offset = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset)).await?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).await?;
    Ok(out)
}

/// Where the last `n` lines of `content` start.
pub fn tail_offset(content: &[u8], n: usize) -> usize {
    if n == 0 {
        return content.len();
    }
    let mut seen = 0;
    // A trailing newline ends the last line; it does not start another.
    let end = if content.ends_with(b"\n") {
        content.len() - 1
    } else {
        content.len()
    };
    for i in (0..end).rev() {
        if content[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::tail_offset;

    #[test]
    fn tail_counts_lines_from_the_end() {
        let text = b"one\ntwo\nthree\n";
        assert_eq!(&text[tail_offset(text, 1)..], b"three\n");
        assert_eq!(&text[tail_offset(text, 2)..], b"two\nthree\n");
        assert_eq!(&text[tail_offset(text, 10)..], text);
        assert_eq!(&text[tail_offset(text, 0)..], b"");
        let open = b"one\ntwo";
        assert_eq!(&open[tail_offset(open, 1)..], b"two");
    }
}

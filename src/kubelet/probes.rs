//! Container probes, with kubelet's semantics (`pkg/kubelet/prober`, `pkg/probe`): running
//! one probe ([`probe`]: exec in the container, HTTP GET, TCP connect) into a
//! [`ProbeResult`] carrying kubelet's own messages, and the per-probe state machine
//! ([`ProbeState`]) that turns a stream of results into a verdict — when the next run is
//! due, and when successThreshold successes or failureThreshold failures in a row flip it.
//!
//! Owns no task and no clock: the pod sync decides when to call [`probe`] (from
//! [`ProbeState::due`]), feeds the result to [`ProbeState::record`] and acts on the
//! [`Transition`]s (restart on liveness/startup failure, readiness in the pod's status,
//! `Unhealthy` events). Nothing here touches the API or the container's lifecycle.
//!
//! What kubelet does that is not here: HTTPS and gRPC probes (answered
//! [`ProbeResult::Unknown`], which kubelet's workers discard, so an unsupported probe
//! neither kills a container nor makes it ready).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::containerd::Containerd;
use super::exec::{self, ExecError};

/// Defaults of the API's probe fields (applied here too: a probe that reached the agent
/// without the API server's defaulting still behaves as upstream's would).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// The User-Agent kubelet sends (`kube-probe/<major>.<minor>` of the API version served).
const USER_AGENT: &str = "kube-probe/1.33";
/// Go's HTTP client gives up after this many redirects; kubelet's probes keep that limit.
const MAX_REDIRECTS: usize = 10;
/// kubelet stops reading a probe's response body after 10 KiB.
const MAX_BODY: usize = 10 * 1024;

/// Which of a container's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// As kubelet words it in events: `Liveness probe failed: ...`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One probe run's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// Counts as a success; kubelet records a `ProbeWarning` event with the message (an
    /// HTTP redirect it did not follow).
    Warning(String),
    /// kubelet's message, as shown in `Unhealthy` events (`Liveness probe failed: <msg>`).
    Failure(String),
    /// The probe could not be run at all (containerd failed, a named port that does not
    /// exist, an unsupported probe kind). kubelet throws such results away: they count
    /// neither way (its event says `probe errored`).
    Unknown(String),
}

impl ProbeResult {
    /// Whether this run counts as a success.
    pub fn is_success(&self) -> bool {
        matches!(self, ProbeResult::Success | ProbeResult::Warning(_))
    }
}

/// Where and what to probe.
pub struct ProbeTarget<'a> {
    pub containerd: &'a Containerd,
    /// The containerd ID of the running container (exec probes run in it).
    pub container_id: &'a str,
    /// HTTP and TCP probes without a `host` go here.
    pub pod_ip: Option<IpAddr>,
    /// Used when the pod has no IP of its own yet (a hostNetwork pod's IP is the host's).
    pub host_ip: Option<IpAddr>,
    /// For named ports (`port: http`) and the static environment exec commands expand.
    pub container: &'a Container,
}

impl ProbeTarget<'_> {
    fn default_host(&self) -> Option<IpAddr> {
        self.pod_ip.or(self.host_ip)
    }
}

/// Runs `probe` once against `target`, within the probe's timeoutSeconds.
pub async fn probe(probe: &Probe, target: &ProbeTarget<'_>) -> ProbeResult {
    let timeout = seconds(probe.timeout_seconds, DEFAULT_TIMEOUT);
    match &probe.exec {
        Some(action) => exec_probe(action, target, timeout).await,
        None => network_probe(probe, target.container, target.default_host(), timeout).await,
    }
}

/// The probes kubelet makes from the node: HTTP, TCP (and gRPC, unsupported here).
async fn network_probe(
    probe: &Probe,
    container: &Container,
    default_host: Option<IpAddr>,
    timeout: Duration,
) -> ProbeResult {
    if let Some(action) = &probe.http_get {
        http_probe(action, container, default_host, timeout).await
    } else if let Some(action) = &probe.tcp_socket {
        tcp_probe(action, container, default_host, timeout).await
    } else if probe.grpc.is_some() {
        ProbeResult::Unknown("gRPC probes are not supported by moor's kubelet".to_owned())
    } else {
        ProbeResult::Unknown("missing probe handler".to_owned())
    }
}

async fn exec_probe(
    action: &ExecAction,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> ProbeResult {
    let argv = exec_command(action, target.container);
    match exec::exec(target.containerd, target.container_id, &argv, timeout).await {
        Ok(out) if out.exit_code == 0 => ProbeResult::Success,
        // kubelet's message for a failing command is its output alone (the famous
        // "cat: can't open '/tmp/healthy': No such file or directory").
        Ok(out) => ProbeResult::Failure(String::from_utf8_lossy(&out.output).into_owned()),
        // A timeout is a failure (kubelet's ExecProbeTimeout, on since 1.20); its words.
        Err(ExecError::Timeout { command, .. }) => {
            ProbeResult::Failure(format!("command {command:?} timed out"))
        }
        Err(e) => ProbeResult::Unknown(e.to_string()),
    }
}

/// The probe's command with `$(VAR)` expanded from the container's own `env` entries only
/// (kubelet's `ExpandContainerCommandOnlyStatic`: a `valueFrom` variable counts as empty,
/// nothing from the image or the downward API).
fn exec_command(action: &ExecAction, container: &Container) -> Vec<String> {
    let env = container.env.as_deref().unwrap_or(&[]);
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|e| e.name == name)
            .map(|e| e.value.clone().unwrap_or_default())
    };
    action
        .command
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|arg| super::spec::expand(arg, &lookup))
        .collect()
}

async fn tcp_probe(
    action: &TCPSocketAction,
    container: &Container,
    default_host: Option<IpAddr>,
    timeout: Duration,
) -> ProbeResult {
    let port = match resolve_port(&action.port, container) {
        Ok(p) => p,
        Err(e) => return ProbeResult::Unknown(e),
    };
    let Some(host) = probe_host(action.host.as_deref(), default_host) else {
        return ProbeResult::Unknown("the pod has no IP to probe yet".to_owned());
    };
    let deadline = Instant::now() + timeout;
    match dial(&host, port, deadline).await {
        // Connected is all a TCP probe asks; the connection is closed at once.
        Ok(_) => ProbeResult::Success,
        Err(message) => ProbeResult::Failure(message),
    }
}

async fn http_probe(
    action: &HTTPGetAction,
    container: &Container,
    default_host: Option<IpAddr>,
    timeout: Duration,
) -> ProbeResult {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP");
    if !scheme.eq_ignore_ascii_case("http") {
        return ProbeResult::Unknown(format!(
            "{scheme} probes are not supported by moor's kubelet"
        ));
    }
    let port = match resolve_port(&action.port, container) {
        Ok(p) => p,
        Err(e) => return ProbeResult::Unknown(e),
    };
    let Some(host) = probe_host(action.host.as_deref(), default_host) else {
        return ProbeResult::Unknown("the pod has no IP to probe yet".to_owned());
    };
    let headers: Vec<(String, String)> = action
        .http_headers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    http_get(
        &host,
        port,
        action.path.as_deref().unwrap_or(""),
        &headers,
        timeout,
    )
    .await
}

/// The probe's `host`, else the pod's IP, as a host string.
fn probe_host(host: Option<&str>, default_host: Option<IpAddr>) -> Option<String> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => Some(h.to_owned()),
        None => default_host.map(|ip| ip.to_string()),
    }
}

/// A port number, or a container port's name (kubelet's `ResolveContainerPort`: a name
/// not among the ports is tried as a number before giving up).
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            let named = container
                .ports
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port);
            match named {
                Some(n) => n,
                None => name
                    .parse::<i32>()
                    .map_err(|_| format!("port {name:?} not found in the container's ports"))?,
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// Connects to `host:port` before `deadline`; on failure, Go's dial error text, which is
/// what kubelet shows (`dial tcp 10.42.0.5:8080: connect: connection refused`).
async fn dial(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addr = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => {
            let resolved = tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| format!("dial tcp: lookup {host}: i/o timeout"))?;
            resolved
                .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("dial tcp: lookup {host}: no such host"))?
        }
    };
    match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", errno_text(&e))),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// An OS error as Go words it ("connection refused", "no route to host"): the C library's
/// text with a lower-case first letter.
fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let desc = nix::errno::Errno::from_raw(code).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => e.to_string(),
            }
        }
        None => e.to_string(),
    }
}

/// Where an HTTP request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HttpUrl {
    host: String,
    port: u16,
    /// As given (with a leading `/` added); may carry a query.
    path: String,
}

impl HttpUrl {
    fn new(host: &str, port: u16, path: &str) -> Self {
        let path = if path.is_empty() || path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        HttpUrl {
            host: host.to_owned(),
            port,
            path,
        }
    }

    /// `host:port`, bracketing an IPv6 address (Go's `JoinHostPort`).
    fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn target(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }

    /// Where a `Location` sends a request for this URL: None when it leaves plain HTTP
    /// (kubelet cannot follow, and takes the redirect itself as the answer).
    fn redirect(&self, location: &str) -> Option<HttpUrl> {
        let location = location.trim();
        let absolute = if let Some(rest) = location.strip_prefix("//") {
            Some(format!("http://{rest}"))
        } else if location.contains("://") {
            Some(location.to_owned())
        } else {
            None
        };
        if let Some(absolute) = absolute {
            let uri: hyper::Uri = absolute.parse().ok()?;
            if !uri.scheme_str()?.eq_ignore_ascii_case("http") {
                return None;
            }
            let authority = uri.authority()?;
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            return Some(HttpUrl::new(host, authority.port_u16().unwrap_or(80), path));
        }
        let path = if location.starts_with('/') {
            location.to_owned()
        } else {
            // Relative to the current path's directory (RFC 3986 merge, without
            // dot-segment removal: servers resolve those themselves).
            let current = self.path.split('?').next().unwrap_or("");
            let dir = match current.rfind('/') {
                Some(i) => &current[..=i],
                None => "/",
            };
            format!("{dir}{location}")
        };
        Some(HttpUrl::new(&self.host, self.port, &path))
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

/// kubelet's HTTP probe: GET with its User-Agent and the probe's headers; 200–399 is a
/// success; redirects are followed while they stay on the same host name (up to ten, as
/// Go's client), and one that leaves it is answered with the redirect itself — a success
/// with a warning. One deadline covers the whole exchange.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> ProbeResult {
    let deadline = Instant::now() + timeout;
    let first = HttpUrl::new(host, port, path);
    let mut url = first.clone();
    let mut redirects = 0;
    loop {
        let shown = url.to_string();
        let response = match tokio::time::timeout_at(deadline, get_once(&url, headers, deadline))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(message)) => return ProbeResult::Failure(format!("Get {shown:?}: {message}")),
            Err(_) => {
                return ProbeResult::Failure(format!(
                    "Get {shown:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                ));
            }
        };
        let status = response.status;
        let follow = matches!(status, 301 | 302 | 303 | 307 | 308);
        if let (true, Some(location)) = (follow, response.location.as_deref()) {
            match url.redirect(location) {
                Some(next) if next.host == first.host => {
                    if redirects == MAX_REDIRECTS {
                        return ProbeResult::Failure(format!(
                            "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
                            next.to_string()
                        ));
                    }
                    redirects += 1;
                    url = next;
                    continue;
                }
                _ => {}
            }
        }
        return match status {
            200..=299 => ProbeResult::Success,
            300..=399 => ProbeResult::Warning("Probe terminated redirects".to_owned()),
            _ => ProbeResult::Failure(format!("HTTP probe failed with statuscode: {status}")),
        };
    }
}

/// What one exchange told.
struct HttpResponse {
    status: u16,
    location: Option<String>,
}

/// One GET on a fresh connection (kubelet disables keep-alive for probes).
async fn get_once(
    url: &HttpUrl,
    headers: &[(String, String)],
    deadline: Instant,
) -> Result<HttpResponse, String> {
    let mut request = hyper::Request::get(url.target());
    let mut host_header = url.authority();
    let mut has_user_agent = false;
    let mut has_accept = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("host") {
            // Go sends a Host header of the probe's as the request's host.
            host_header = value.clone();
            continue;
        }
        let name_ok = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
        let value_ok = HeaderValue::from_str(value)
            .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
        has_user_agent |= name_ok == hyper::header::USER_AGENT;
        has_accept |= name_ok == hyper::header::ACCEPT;
        request = request.header(name_ok, value_ok);
    }
    if !has_user_agent {
        request = request.header(hyper::header::USER_AGENT, USER_AGENT);
    }
    if !has_accept {
        request = request.header(hyper::header::ACCEPT, "*/*");
    }
    let request = request
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request: {e}"))?;

    let stream = dial(&url.host, url.port, deadline).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // The connection is driven beside the request and dropped with this function (the
    // guard aborts it), so nothing outlives the probe.
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The status decides; the body is read (at most 10 KiB, as kubelet) only so a server
    // sees its response taken rather than the connection cut mid-write. A body that fails
    // or stalls changes nothing.
    let mut body = response.into_body();
    let mut read = 0;
    while read < MAX_BODY {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
    drop(driver);
    Ok(HttpResponse { status, location })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn seconds(value: Option<i32>, default: Duration) -> Duration {
    match value {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => default,
    }
}

fn threshold(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// A change of a probe's verdict, for the pod sync to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Ready (readiness), started (startup). Liveness never reports this: it starts as a
    /// success and stops probing once it fails.
    Succeeded,
    /// Not ready (readiness); for liveness and startup: restart the container (kubelet:
    /// `Container X failed liveness probe, will be restarted`). Carries the last run's
    /// message.
    Failed(String),
}

/// A probe's verdict: kubelet's results manager value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// A startup probe before its first verdict: not started, but not failed either.
    Unknown,
    Success,
    Failure,
}

/// One probe of one container instance (kubelet's probe worker, without its goroutine):
/// when it runs and what its results add up to. Make a new one for each new container
/// (a restart is a new container: kubelet starts every probe afresh then).
#[derive(Clone, Debug)]
pub struct ProbeState {
    kind: ProbeKind,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    /// The next run; None once the probe is done with this container (liveness or startup
    /// failed: the container is to be restarted; startup succeeded: never probed again).
    next: Option<Instant>,
    verdict: Verdict,
    /// The outcome of the last counted run (true: success) and how many in a row.
    last: Option<bool>,
    run: u32,
}

impl ProbeState {
    /// The probe of a container that started at `started` (its first run is
    /// initialDelaySeconds after that). For a container the agent adopts, pass the
    /// instant it was found: the delay then counts from there.
    pub fn new(probe: &Probe, kind: ProbeKind, started: Instant) -> Self {
        let initial_delay = probe
            .initial_delay_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or_default();
        // Validation forces successThreshold 1 on liveness and startup probes.
        let success_threshold = match kind {
            ProbeKind::Readiness => threshold(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD),
            ProbeKind::Liveness | ProbeKind::Startup => 1,
        };
        ProbeState {
            kind,
            period: seconds(probe.period_seconds, DEFAULT_PERIOD),
            timeout: seconds(probe.timeout_seconds, DEFAULT_TIMEOUT),
            success_threshold,
            failure_threshold: threshold(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
            next: Some(started + initial_delay),
            // Upstream's initial values: a container is live until proven otherwise, not
            // ready until proven ready, and neither started nor failed to start.
            verdict: match kind {
                ProbeKind::Liveness => Verdict::Success,
                ProbeKind::Readiness => Verdict::Failure,
                ProbeKind::Startup => Verdict::Unknown,
            },
            last: None,
            run: 0,
        }
    }

    /// Which probe this is.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// periodSeconds: the spacing of runs.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// timeoutSeconds: [`probe`] applies it itself; for callers that bound the run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When the probe should next run: `now` if it is overdue, None once it is done with
    /// this container.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        self.next.map(|next| next.max(now))
    }

    /// Whether a run is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.next.is_some_and(|next| next <= now)
    }

    /// The verdict: live (liveness), ready (readiness), started (startup).
    pub fn verdict(&self) -> bool {
        self.verdict == Verdict::Success
    }

    /// Counts a run that finished at `now` and schedules the next. Returns the change of
    /// verdict it caused, if any: successThreshold successes or failureThreshold failures
    /// in a row decide; [`ProbeResult::Unknown`] counts for nothing.
    pub fn record(&mut self, result: ProbeResult, now: Instant) -> Option<Transition> {
        self.next = self.next.map(|next| self.after(next, now));
        let success = match &result {
            ProbeResult::Unknown(_) => return None,
            other => other.is_success(),
        };
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let needed = if success {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < needed {
            return None;
        }
        let verdict = if success {
            Verdict::Success
        } else {
            Verdict::Failure
        };
        let changed = verdict != self.verdict;
        self.verdict = verdict;
        match (self.kind, success) {
            // A failed liveness or startup probe means a restart; kubelet stops probing
            // the doomed container (execs into a stopping container misbehave).
            (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                self.next = None;
                self.run = 0;
            }
            // Started is for good: the startup probe is not run again for this container.
            (ProbeKind::Startup, true) => self.next = None,
            _ => {}
        }
        if !changed {
            return None;
        }
        Some(match result {
            ProbeResult::Failure(message) => Transition::Failed(message),
            _ => Transition::Succeeded,
        })
    }

    /// The run after one scheduled at `scheduled` that finished at `now`: on the period's
    /// grid, skipping runs missed while it ran or the caller was late (a Go ticker drops
    /// ticks the same way), so probes neither drift nor bunch up.
    fn after(&self, scheduled: Instant, now: Instant) -> Instant {
        if scheduled > now {
            // Run early (a manual trigger): the period starts over from here.
            return now + self.period;
        }
        let behind = now.duration_since(scheduled);
        let periods = behind.as_nanos() / self.period.as_nanos().max(1) + 1;
        let periods = u32::try_from(periods).unwrap_or(u32::MAX);
        scheduled + self.period.saturating_mul(periods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, EnvVarSource};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn spec(json: serde_json::Value) -> Probe {
        serde_json::from_value(json).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn fail(msg: &str) -> ProbeResult {
        ProbeResult::Failure(msg.to_owned())
    }

    #[test]
    fn defaults_and_initial_verdicts_are_upstreams() {
        let t0 = Instant::now();
        let p = spec(serde_json::json!({}));
        let live = ProbeState::new(&p, ProbeKind::Liveness, t0);
        assert_eq!(live.period(), secs(10));
        assert_eq!(live.timeout(), secs(1));
        assert_eq!(live.failure_threshold, 3);
        assert_eq!(live.success_threshold, 1);
        assert!(live.verdict(), "liveness starts as a success");
        assert!(!ProbeState::new(&p, ProbeKind::Readiness, t0).verdict());
        let startup = ProbeState::new(&p, ProbeKind::Startup, t0);
        assert!(!startup.verdict());
        assert_eq!(startup.verdict, Verdict::Unknown);
        // Zero or negative values (no API defaulting happened) fall back to the defaults.
        let p = spec(serde_json::json!({
            "periodSeconds": 0, "timeoutSeconds": -1, "failureThreshold": 0,
            "successThreshold": 0, "initialDelaySeconds": -5,
        }));
        let s = ProbeState::new(&p, ProbeKind::Readiness, t0);
        assert_eq!((s.period(), s.timeout()), (secs(10), secs(1)));
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
        assert_eq!(s.due(t0), Some(t0));
    }

    #[test]
    fn the_first_run_waits_for_the_initial_delay_then_runs_every_period() {
        let t0 = Instant::now();
        let p = spec(serde_json::json!({"initialDelaySeconds": 5, "periodSeconds": 2}));
        let mut s = ProbeState::new(&p, ProbeKind::Readiness, t0);
        assert_eq!(s.due(t0), Some(t0 + secs(5)));
        assert!(!s.is_due(t0 + secs(4)));
        assert!(s.is_due(t0 + secs(5)));
        // A run that took a while stays on the grid.
        s.record(ProbeResult::Success, t0 + Duration::from_millis(5300));
        assert_eq!(s.due(t0 + secs(6)), Some(t0 + secs(7)));
        // Overdue: due now.
        assert_eq!(s.due(t0 + secs(8)), Some(t0 + secs(8)));
        // Late by several periods: the missed runs are skipped, not bunched.
        s.record(ProbeResult::Success, t0 + Duration::from_millis(12_500));
        assert_eq!(s.due(t0), Some(t0 + secs(13)));
        // Run early (before due): the period restarts from the run.
        s.record(ProbeResult::Success, t0 + secs(12));
        assert_eq!(s.due(t0), Some(t0 + secs(14)));
    }

    #[test]
    fn readiness_needs_success_threshold_successes_and_failure_threshold_failures() {
        let t0 = Instant::now();
        let p = spec(serde_json::json!({"successThreshold": 2, "failureThreshold": 3}));
        let mut s = ProbeState::new(&p, ProbeKind::Readiness, t0);
        let t = |n: u64| t0 + secs(10 * n);
        assert_eq!(s.record(ProbeResult::Success, t(0)), None);
        assert!(!s.verdict(), "one success is not enough");
        // A failure breaks the run of successes.
        assert_eq!(s.record(fail("boom"), t(1)), None);
        assert_eq!(s.record(ProbeResult::Success, t(2)), None);
        assert_eq!(
            s.record(ProbeResult::Warning("redirect".into()), t(3)),
            Some(Transition::Succeeded),
            "a warning counts as a success"
        );
        assert!(s.verdict());
        assert_eq!(
            s.record(ProbeResult::Success, t(4)),
            None,
            "no change, no transition"
        );
        assert_eq!(s.record(fail("a"), t(5)), None);
        assert_eq!(s.record(fail("b"), t(6)), None);
        assert!(s.verdict());
        assert_eq!(
            s.record(fail("c"), t(7)),
            Some(Transition::Failed("c".into()))
        );
        assert!(!s.verdict());
        // Readiness keeps probing after failing, and more failures change nothing.
        assert!(s.due(t(8)).is_some());
        assert_eq!(s.record(fail("d"), t(8)), None);
        assert_eq!(s.record(ProbeResult::Success, t(9)), None);
        assert_eq!(
            s.record(ProbeResult::Success, t(10)),
            Some(Transition::Succeeded)
        );
    }

    #[test]
    fn readiness_failing_from_the_start_reports_no_transition() {
        let t0 = Instant::now();
        let p = spec(serde_json::json!({"failureThreshold": 1}));
        let mut s = ProbeState::new(&p, ProbeKind::Readiness, t0);
        assert_eq!(s.record(fail("x"), t0), None, "it was never ready");
        assert!(!s.verdict());
    }

    #[test]
    fn unknown_results_count_for_nothing() {
        let t0 = Instant::now();
        let p = spec(serde_json::json!({"failureThreshold": 2}));
        let mut s = ProbeState::new(&p, ProbeKind::Liveness, t0);
        assert_eq!(s.record(fail("a"), t0), None);
        assert_eq!(
            s.record(
                ProbeResult::Unknown("containerd down".into()),
                t0 + secs(10)
            ),
            None
        );
        assert!(s.due(t0 + secs(20)).is_some(), "still scheduled");
        // The unknown did not break the run of failures.
        assert_eq!(
            s.record(fail("b"), t0 + secs(20)),
            Some(Transition::Failed("b".into()))
        );
    }

    #[test]
    fn liveness_fails_after_the_threshold_and_stops_probing() {
        let t0 = Instant::now();
        let p = spec(serde_json::json!({"failureThreshold": 3, "successThreshold": 5}));
        let mut s = ProbeState::new(&p, ProbeKind::Liveness, t0);
        assert_eq!(s.success_threshold, 1, "liveness ignores successThreshold");
        assert_eq!(s.record(fail("1"), t0), None);
        assert_eq!(s.record(ProbeResult::Success, t0 + secs(10)), None);
        assert_eq!(s.record(fail("1"), t0 + secs(20)), None);
        assert_eq!(s.record(fail("2"), t0 + secs(30)), None);
        assert!(s.verdict());
        assert_eq!(
            s.record(
                fail("HTTP probe failed with statuscode: 500"),
                t0 + secs(40)
            ),
            Some(Transition::Failed(
                "HTTP probe failed with statuscode: 500".into()
            ))
        );
        assert!(!s.verdict());
        assert_eq!(s.due(t0 + secs(50)), None, "on hold until a new container");
        assert!(!s.is_due(t0 + secs(1000)));
    }

    #[test]
    fn startup_succeeds_once_and_is_not_run_again() {
        let t0 = Instant::now();
        let p = spec(serde_json::json!({"failureThreshold": 30}));
        let mut s = ProbeState::new(&p, ProbeKind::Startup, t0);
        assert_eq!(s.record(fail("not yet"), t0), None);
        assert!(!s.verdict());
        assert_eq!(
            s.record(ProbeResult::Success, t0 + secs(10)),
            Some(Transition::Succeeded)
        );
        assert!(s.verdict());
        assert_eq!(s.due(t0 + secs(20)), None);
    }

    #[test]
    fn startup_failing_is_a_transition_from_unknown() {
        let t0 = Instant::now();
        let p = spec(serde_json::json!({"failureThreshold": 2}));
        let mut s = ProbeState::new(&p, ProbeKind::Startup, t0);
        assert_eq!(s.record(fail("a"), t0), None);
        assert_eq!(
            s.record(fail("b"), t0 + secs(10)),
            Some(Transition::Failed("b".into()))
        );
        assert_eq!(s.due(t0 + secs(20)), None);
    }

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn ports_resolve_by_number_name_or_numeric_string() {
        let c = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("9090".into()), &c),
            Ok(9090)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("admin".into()), &c),
            Err("port \"admin\" not found in the container's ports".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &c),
            Err("invalid port number: 0".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c),
            Err("invalid port number: 70000".into())
        );
    }

    #[test]
    fn exec_commands_expand_only_the_containers_static_env() {
        let c = Container {
            env: Some(vec![
                EnvVar {
                    name: "FILE".into(),
                    value: Some("/tmp/a".into()),
                    value_from: None,
                },
                EnvVar {
                    name: "FILE".into(),
                    value: Some("/tmp/healthy".into()),
                    value_from: None,
                },
                EnvVar {
                    name: "SECRET".into(),
                    value: None,
                    value_from: Some(EnvVarSource::default()),
                },
            ]),
            ..container(serde_json::json!({"name": "c"}))
        };
        let action = ExecAction {
            command: Some(vec![
                "cat".into(),
                "$(FILE)".into(),
                "[$(SECRET)]".into(),
                "$(NOPE)".into(),
                "$$(FILE)".into(),
            ]),
        };
        assert_eq!(
            exec_command(&action, &c),
            ["cat", "/tmp/healthy", "[]", "$(NOPE)", "$(FILE)"]
        );
    }

    #[test]
    fn redirects_resolve_like_a_browser() {
        let u = HttpUrl::new("10.0.0.5", 8080, "/a/b?x=1");
        assert_eq!(u.to_string(), "http://10.0.0.5:8080/a/b?x=1");
        assert_eq!(u.redirect("/c"), Some(HttpUrl::new("10.0.0.5", 8080, "/c")));
        assert_eq!(
            u.redirect("c?y=2"),
            Some(HttpUrl::new("10.0.0.5", 8080, "/a/c?y=2"))
        );
        assert_eq!(
            u.redirect("http://10.0.0.5:9090/d"),
            Some(HttpUrl::new("10.0.0.5", 9090, "/d"))
        );
        assert_eq!(
            u.redirect("//example.com/e"),
            Some(HttpUrl::new("example.com", 80, "/e"))
        );
        assert_eq!(u.redirect("https://10.0.0.5/f"), None);
        let v6 = HttpUrl::new("::1", 80, "healthz");
        assert_eq!(v6.to_string(), "http://[::1]:80/healthz");
        assert_eq!(
            v6.redirect("http://[::1]:81/x"),
            Some(HttpUrl::new("::1", 81, "/x"))
        );
        assert_eq!(HttpUrl::new("h", 1, "").target(), "/");
    }

    #[test]
    fn os_errors_read_as_go_prints_them() {
        let e = std::io::Error::from_raw_os_error(nix::libc::ECONNREFUSED);
        assert_eq!(errno_text(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(nix::libc::EHOSTUNREACH);
        assert_eq!(errno_text(&e), "no route to host");
    }

    /// A one-shot-per-connection HTTP server on 127.0.0.1 answering every request with
    /// `respond(path)`; the requests it saw come back through the channel.
    async fn server(
        respond: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let respond = std::sync::Arc::new(respond);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&buf).into_owned();
                    let path = request.split(' ').nth(1).unwrap_or("").to_owned();
                    let _ = tx.send(request);
                    let _ = stream.write_all(respond(&path).as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (port, rx)
    }

    fn reply(status: &str, extra: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok")
    }

    #[tokio::test]
    async fn http_status_decides_and_headers_are_kubelets() {
        let (port, mut seen) = server(|path| match path {
            "/ok" => reply("200 OK", ""),
            "/nocontent" => reply("204 No Content", ""),
            _ => reply("500 Internal Server Error", ""),
        })
        .await;
        let headers = vec![
            ("X-Probe".to_owned(), "1".to_owned()),
            ("Host".to_owned(), "app.example".to_owned()),
        ];
        let r = http_get("127.0.0.1", port, "/ok", &headers, secs(2)).await;
        assert_eq!(r, ProbeResult::Success);
        let request = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /ok http/1.1\r\n"), "{request}");
        assert!(
            request.contains("user-agent: kube-probe/1.33\r\n"),
            "{request}"
        );
        assert!(request.contains("x-probe: 1\r\n"), "{request}");
        assert!(request.contains("host: app.example\r\n"), "{request}");
        assert!(request.contains("accept: */*\r\n"), "{request}");
        assert_eq!(
            http_get("127.0.0.1", port, "nocontent", &[], secs(2)).await,
            ProbeResult::Success
        );
        let request = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(
            request.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{request}"
        );
        assert_eq!(
            http_get("127.0.0.1", port, "/broken", &[], secs(2)).await,
            fail("HTTP probe failed with statuscode: 500")
        );
        let custom_agent = vec![("User-Agent".to_owned(), "mine".to_owned())];
        http_get("127.0.0.1", port, "/ok", &custom_agent, secs(2)).await;
        seen.recv().await.unwrap();
        let request = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(request.contains("user-agent: mine\r\n"), "{request}");
        assert!(!request.contains("kube-probe"), "{request}");
    }

    #[tokio::test]
    async fn same_host_redirects_are_followed_and_others_are_a_warning() {
        let (port, _seen) = server(|path| match path {
            "/old" => reply("301 Moved Permanently", "Location: /new\r\n"),
            "/new" => reply("200 OK", ""),
            "/gone" => reply("302 Found", "Location: /dead\r\n"),
            "/dead" => reply("503 Service Unavailable", ""),
            "/away" => reply("302 Found", "Location: http://other.example/\r\n"),
            "/tls" => reply("302 Found", "Location: https://127.0.0.1/\r\n"),
            "/nolocation" => reply("302 Found", ""),
            p if p.starts_with("/loop") => reply("302 Found", &format!("Location: {p}x\r\n")),
            _ => reply("404 Not Found", ""),
        })
        .await;
        let get = |path: &'static str| http_get("127.0.0.1", port, path, &[], secs(2));
        assert_eq!(get("/old").await, ProbeResult::Success);
        assert_eq!(
            get("/gone").await,
            fail("HTTP probe failed with statuscode: 503"),
            "the redirect's target decides"
        );
        let warning = ProbeResult::Warning("Probe terminated redirects".into());
        assert_eq!(get("/away").await, warning);
        assert_eq!(get("/tls").await, warning);
        assert_eq!(get("/nolocation").await, warning);
        assert_eq!(
            get("/loop").await,
            fail(&format!(
                "Get \"http://127.0.0.1:{port}/loopxxxxxxxxxxx\": stopped after 10 redirects"
            ))
        );
    }

    #[tokio::test]
    async fn http_failures_carry_gos_messages() {
        // A port nobody listens on: bind one, note it, close it.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            http_get("127.0.0.1", closed, "/healthz", &[], secs(2)).await,
            fail(&format!(
                "Get \"http://127.0.0.1:{closed}/healthz\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
        // A server that accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let r = http_get("127.0.0.1", port, "/slow", &[], Duration::from_millis(300)).await;
        assert_eq!(
            r,
            fail(&format!(
                "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))
        );
        assert!(started.elapsed() < secs(2), "{:?}", started.elapsed());
        drop(silent);
    }

    #[tokio::test]
    async fn http_and_tcp_probes_use_the_pod_ip_and_named_ports() {
        let (port, _seen) = server(|_| reply("200 OK", "")).await;
        let c = container(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": port}],
        }));
        let local: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let run = |p: serde_json::Value, host: Option<IpAddr>| {
            let p = spec(p);
            let c = c.clone();
            async move { network_probe(&p, &c, host, secs(2)).await }
        };
        let http = serde_json::json!({"httpGet": {"port": "http", "path": "/"}});
        assert_eq!(run(http.clone(), local).await, ProbeResult::Success);
        assert_eq!(
            run(http, None).await,
            ProbeResult::Unknown("the pod has no IP to probe yet".into())
        );
        let with_host = serde_json::json!({"httpGet": {"port": port, "host": "127.0.0.1"}});
        assert_eq!(run(with_host, None).await, ProbeResult::Success);
        let tcp = serde_json::json!({"tcpSocket": {"port": "http"}});
        assert_eq!(run(tcp, local).await, ProbeResult::Success);
        assert_eq!(
            run(serde_json::json!({"tcpSocket": {"port": "nope"}}), local).await,
            ProbeResult::Unknown("port \"nope\" not found in the container's ports".into())
        );
        assert_eq!(
            run(
                serde_json::json!({"httpGet": {"port": port, "scheme": "HTTPS"}}),
                local
            )
            .await,
            ProbeResult::Unknown("HTTPS probes are not supported by moor's kubelet".into())
        );
        assert_eq!(
            run(serde_json::json!({"grpc": {"port": port}}), local).await,
            ProbeResult::Unknown("gRPC probes are not supported by moor's kubelet".into())
        );
        assert_eq!(
            run(serde_json::json!({}), local).await,
            ProbeResult::Unknown("missing probe handler".into())
        );
    }

    #[tokio::test]
    async fn tcp_failures_carry_gos_messages() {
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = container(serde_json::json!({"name": "c"}));
        let p = spec(serde_json::json!({"tcpSocket": {"port": closed}}));
        assert_eq!(
            network_probe(&p, &c, Some("127.0.0.1".parse().unwrap()), secs(2)).await,
            fail(&format!(
                "dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
    }
}

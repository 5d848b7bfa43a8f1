//! `moor up` start-up benchmark (issue 9): the real binary running the example app of
//! `manifests/` (a Deployment `web` of 3 busybox httpd replicas, a Service, a ConfigMap)
//! with its image built by `scripts/example-image` and imported by the agent at start,
//! on private ranges: pods 10.240.0.0/24 on the bridge `mupb0`, services 10.241.0.0/24
//! (cluster IPs are /32 addresses on `lo`), node ports 31800-31809.
//!
//! `cargo bench --bench up` (as root; options after `--`: `--runs N`, default 5;
//! `--idle-seconds S` before the RSS is read, default 10; `--settle-seconds S` a restart is
//! watched for pods turning unready or duplicated after everything answers, default 3;
//! `--timeout S` per wait, default 120).
//!
//! Each run, all clocks starting when the process is spawned:
//! 1. Baseline: `moor server --data-dir FRESH --listen 127.0.0.1:0` (the control plane
//!    alone) until `GET /readyz` answers 200, then 1 s later SIGTERM until it exits.
//! 2. Cold start of `moor up` on a fresh data dir (the image archive copied into
//!    `<data>/agent/images/`): when each progress line appeared on stdout; API ready (the
//!    address is parsed from the `apiserver` line, then `GET /readyz` is sent every 2 ms
//!    until one answers 200: the listener is bound before the line is printed, so a
//!    request sent early waits for the server rather than failing); the 3 `web` pods
//!    created, bound, Running (every container running) and Ready (`GET` of the pods every
//!    10 ms); the Service answering `GET /` with the ConfigMap's page through its cluster IP
//!    (tried only once the cluster IP is an address of this machine, so nothing is sent off
//!    the host); then, after `--idle-seconds` of idling with the app running, VmRSS/VmHWM
//!    and CPU of the `moor up` process, and containerd's and the shims' RSS apart; then
//!    SIGTERM until it exits (a graceful stop: containers keep running, by design).
//! 3. Restart after that graceful stop, on the same data dir, and then once more after a
//!    SIGKILL: API ready, the agent's line, the 3 pods Running and Ready with the new agent
//!    (the API still holds their status from before, so this is the later of the agent's
//!    line and the last time all three turned Ready after having been seen unready), the
//!    Service answering again; and that the pods (UIDs) and containerd's tasks are the same
//!    ones, with no container restarted or started twice.
//! 4. Teardown as tests/up.rs does: SIGSTOP `moor up`, kill and remove its tasks through its
//!    containerd, SIGKILL, kill what is left running from the data dir (containerd, shims,
//!    their children), tear the pod networks down, lazy-unmount what is mounted under the
//!    dir, delete the bridge and the service addresses on `lo`; then check nothing is left.
//!
//! Prints the medians (and min–max) with the targets; asserts nothing about speed.
//! Ctrl-C (or SIGTERM) of the bench cleans up as well, and a bench killed outright leaves
//! its dirs as `/tmp/mub-*`, which the next run cleans up first.

#[path = "support/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::*;
use k8s_openapi::api::core::v1::Pod;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const MOOR: &str = env!("CARGO_BIN_EXE_moor");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const NODE: &str = "bench-up";
const POD_CIDR: &str = "10.240.0.0/24";
const POD_PREFIX: &str = "10.240.0.";
const SERVICE_CIDR: &str = "10.241.0.0/24";
const SERVICE_PREFIX: &str = "10.241.0.";
const NODE_PORTS: &str = "31800-31809";
const BRIDGE: &str = "mupb0";
/// Every dir of the bench starts with this (short: containerd's socket path is limited).
const DIR_PREFIX: &str = "/tmp/mub-";
const LOCK: &str = "/tmp/moor-bench-up.lock";
const REPLICAS: usize = 3;
const PODS_PATH: &str = "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb";
const SERVICE_PATH: &str = "/api/v1/namespaces/default/services/web";
/// In the ConfigMap's index.html.
const PAGE_MARK: &str = "Hello from moor";
const TARGET_API_MS: f64 = 500.0;
/// How long the baseline server runs after ready before its SIGTERM.
const BASELINE_SETTLE: Duration = Duration::from_secs(1);
const TARGET_RUNNING_S: f64 = 5.0;
const TARGET_RSS_MB: f64 = 60.0;

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------
// Cleanup that also runs on Ctrl-C.

/// What is running or on disk now, for the Ctrl-C handler: the cluster's dir and its
/// `moor up` pid, the baseline server's pid, other temp dirs.
#[derive(Default)]
struct Active {
    cluster: Option<(PathBuf, Option<u32>)>,
    server: Option<u32>,
    dirs: Vec<PathBuf>,
}

static ACTIVE: Mutex<Active> = Mutex::new(Active {
    cluster: None,
    server: None,
    dirs: Vec::new(),
});

fn active() -> std::sync::MutexGuard<'static, Active> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGINT and SIGTERM are taken by a thread that cleans up and exits. `moor` children
/// start in their own process group (a Ctrl-C on the terminal reaches the bench only)
/// with these signals unblocked again.
fn handle_interrupts() {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().expect("blocking SIGINT and SIGTERM");
    std::thread::spawn(move || {
        let Ok(signal) = set.wait() else { return };
        eprintln!("\n{signal:?}: cleaning up before exiting");
        // Held until the process exits: the main thread cannot start anything new.
        let mut state = active();
        if let Some(pid) = state.server.take() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if let Some((dir, pid)) = state.cluster.take() {
            teardown_dir(&dir, pid);
            let _ = std::fs::remove_dir_all(&dir);
        }
        for dir in state.dirs.drain(..) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        for left in leftovers(None) {
            eprintln!("  left behind: {left}");
        }
        std::process::exit(130);
    });
}

/// A temp dir under `/tmp/mub-…`, removed when dropped and by the Ctrl-C handler.
struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    fn new() -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&DIR_PREFIX["/tmp/".len()..])
            .tempdir_in("/tmp")
            .expect("a temp dir in /tmp");
        active().dirs.push(dir.path().to_owned());
        TempDir(Some(dir))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            active().dirs.retain(|d| d != dir.path());
        }
    }
}

/// Processes (other than this one) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// `pids` and all their descendants.
fn with_descendants(pids: &[u32]) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, ..)) = proc_stat(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = BTreeSet::new();
    let mut todo = pids.to_vec();
    while let Some(pid) = todo.pop() {
        if out.insert(pid) {
            todo.extend(children.get(&pid).into_iter().flatten().copied());
        }
    }
    out.into_iter().collect()
}

fn alive(pid: u32) -> bool {
    // A zombie has no memory map left: gone for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.starts_with(" Z"))
    })
}

fn ctr(socket: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--connect-timeout", "2s", "--timeout", "20s", "-n", "moor"])
        .args(args)
        .output()
        .map_err(|e| format!("ctr: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// containerd's tasks in the agent's namespace: (container id, status).
fn tasks(socket: &Path) -> Result<Vec<(String, String)>, String> {
    Ok(ctr(socket, &["tasks", "ls"])?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.to_string(), cols.get(2)?.to_string()))
        })
        .collect())
}

fn socket_of(dir: &Path) -> PathBuf {
    dir.join("d").join("containerd").join("containerd.sock")
}

/// Removes everything a `moor up` on `dir` made on the host, as tests/up.rs does; `pid`
/// is the `moor up` process, if it still runs (it is SIGKILLed and reaped).
fn teardown_dir(dir: &Path, pid: Option<u32>) {
    let needle = format!("{}/", dir.display());
    // Frozen, its agent does not restart what is removed here; its containerd (a separate
    // process) keeps answering.
    if let Some(pid) = pid {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
    }
    let socket = socket_of(dir);
    if socket.exists() {
        for (task, _) in tasks(&socket).unwrap_or_default() {
            let _ = ctr(&socket, &["tasks", "kill", "-a", "-s", "SIGKILL", &task]);
            let _ = ctr(&socket, &["tasks", "rm", "-f", &task]);
        }
    }
    if let Some(pid) = pid {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
    }
    // What runs from the dir (containerd, shims, loggers) and below them (containers whose
    // task could not be killed through containerd).
    let doomed = with_descendants(&processes_with(&needle));
    for pid in &doomed {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while doomed.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Pod networks through the agent's own code, while their namespaces are still mounted.
    drop(NetworkGuard {
        data_dir: dir.join("d").join("agent"),
        pod_cidr: POD_CIDR,
        bridge: BRIDGE,
    });
    // Rootfs and namespace mounts, deepest first.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&needle))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).output();
    }
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    remove_service_addresses();
}

/// The addresses of the service range on any interface: (address/prefix, device).
fn service_addresses() -> Vec<(String, String)> {
    local_ipv4_addresses()
        .into_iter()
        .map(|(ip, len, device)| (format!("{ip}/{len}"), device))
        .filter(|(addr, _)| addr.starts_with(SERVICE_PREFIX))
        .collect()
}

fn remove_service_addresses() {
    for (addr, device) in service_addresses() {
        let _ = Command::new("ip")
            .args(["addr", "del", &addr, "dev", &device])
            .output();
    }
}

/// What the bench's clusters left on the machine (`dir`: one cluster's; None: all of them).
fn leftovers(dir: Option<&Path>) -> Vec<String> {
    let needle = dir.map_or_else(|| DIR_PREFIX.to_owned(), |d| format!("{}/", d.display()));
    let mut left = Vec::new();
    if Command::new("ip")
        .args(["link", "show", BRIDGE])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        left.push(format!("the bridge {BRIDGE}"));
    }
    let addrs = service_addresses();
    if !addrs.is_empty() {
        left.push(format!("{} addresses of {SERVICE_CIDR}", addrs.len()));
    }
    let procs = processes_with(&needle);
    if !procs.is_empty() {
        left.push(format!("{} processes running from {needle}", procs.len()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mounted = mounts
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with(&needle))
        })
        .count();
    if mounted > 0 {
        left.push(format!("{mounted} mounts under {needle}"));
    }
    let nat = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let rules = nat.lines().filter(|l| l.contains(POD_PREFIX)).count();
    if rules > 0 {
        left.push(format!("{rules} NAT rules for {POD_CIDR}"));
    }
    left
}

/// Dirs of a bench killed outright (no other runs: the lock is held).
fn clean_stale() {
    let stale: Vec<PathBuf> = std::fs::read_dir("/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.display().to_string().starts_with(DIR_PREFIX))
        .collect();
    for dir in &stale {
        println!(
            "  cleaning up {} left by an earlier run of this bench",
            dir.display()
        );
        teardown_dir(dir, None);
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    remove_service_addresses();
}

// ---------------------------------------------------------------------------------------
// Processes, their lines, HTTP.

/// A child's stdout lines, each with when it was read.
struct Lines {
    rx: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Lines {
    fn start(stdout: ChildStdout) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
    }

    /// The first line starting with `prefix` so far.
    fn find(&mut self, prefix: &str) -> Option<(Instant, String)> {
        self.drain();
        self.seen
            .iter()
            .find(|(_, l)| l.starts_with(prefix))
            .cloned()
    }

    /// The first line starting with `prefix`, waiting until `deadline` (None: the
    /// process closed its stdout or time ran out).
    fn wait_for(&mut self, prefix: &str, deadline: Instant) -> Option<(Instant, String)> {
        loop {
            if let Some(found) = self.find(prefix) {
                return Some(found);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return None,
            }
        }
    }
}

/// One `moor up` or `moor server` process.
struct Instance {
    child: Child,
    lines: Lines,
    spawned: Instant,
    log: PathBuf,
}

impl Instance {
    fn spawn(args: &[String], log: &Path) -> Result<Instance, String> {
        let err = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(MOOR);
        command
            .args(args)
            .env_remove("MOOR_ETCD_ENDPOINTS")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0);
        // SAFETY: pthread_sigmask(2) is async-signal-safe and touches no parent memory.
        // The bench blocks SIGINT and SIGTERM for its signal thread, and a child inherits
        // the mask (std does not reset it): `moor up` must get them.
        unsafe {
            command.pre_exec(|| {
                nix::sys::signal::SigSet::empty()
                    .thread_set_mask()
                    .map_err(std::io::Error::from)
            });
        }
        let spawned = Instant::now();
        let mut child = spawn_tied(&mut command).map_err(|e| format!("spawning {MOOR}: {e}"))?;
        let lines = Lines::start(child.stdout.take().unwrap());
        Ok(Instance {
            child,
            lines,
            spawned,
            log: log.to_owned(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Why a wait failed: whether the process still runs, its stdout and its log's tail.
    fn failure(&mut self, what: &str) -> String {
        self.lines.drain();
        let state = match self.exited() {
            Some(status) => format!("it exited ({status})"),
            None => "it still runs".to_owned(),
        };
        let stdout: Vec<&str> = self.lines.seen.iter().map(|(_, l)| l.as_str()).collect();
        format!(
            "{what} ({:.1} s after spawn; {state})\n  stdout:\n    {}\n  log {}:\n{}",
            self.spawned.elapsed().as_secs_f64(),
            stdout.join("\n    "),
            self.log.display(),
            tail(&self.log)
        )
    }

    /// The API's address from the `apiserver` line, then `GET /readyz` every 2 ms until
    /// it answers 200: (address, ms from spawn).
    fn api_ready(&mut self, deadline: Instant) -> Result<(SocketAddr, f64), String> {
        let Some((_, line)) = self.lines.wait_for("apiserver ", deadline) else {
            return Err(self.failure("no `apiserver` line"));
        };
        let addr: SocketAddr = line
            .split_whitespace()
            .nth(1)
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("no address in {line:?}"))?;
        loop {
            if let Ok((200, _)) = http_get(addr, "/readyz", Duration::from_secs(5)) {
                return Ok((addr, ms(self.spawned, Instant::now())));
            }
            if Instant::now() > deadline || self.exited().is_some() {
                return Err(self.failure(&format!("GET http://{addr}/readyz never answered 200")));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// SIGTERM, then until the process exits: ms, or None after `patience` (then killed).
    fn terminate(&mut self, patience: Duration) -> Option<f64> {
        let sent = Instant::now();
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
        while sent.elapsed() < patience {
            if self.exited().is_some() {
                return Some(ms(sent, Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Every progress line: (first word, ms from spawn it was read, the `ready N ms` moor
    /// printed in it, if any).
    fn progress(&mut self) -> Vec<(String, f64, Option<f64>)> {
        self.lines.drain();
        let spawned = self.spawned;
        self.lines
            .seen
            .iter()
            .filter(|(_, l)| !l.starts_with(' '))
            .filter_map(|(at, l)| {
                let key = l.split_whitespace().next()?.to_owned();
                let reported = l
                    .rsplit_once("ready ")
                    .and_then(|(_, r)| r.strip_suffix(" ms"))
                    .and_then(|n| n.trim().parse().ok());
                Some((key, ms(spawned, *at), reported))
            })
            .collect()
    }
}

/// `GET path` over HTTP/1.0 (the server closes the connection after the answer):
/// (status, body).
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    stream.set_nodelay(true).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: web\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Whether `ip` is an address of this machine (binding to it needs no packet).
fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

/// The page through the Service's cluster IP, if the proxy has made it local and it
/// answers with the ConfigMap's page.
fn service_answers(ip: IpAddr) -> bool {
    is_local(ip)
        && http_get(SocketAddr::new(ip, 80), "/", Duration::from_millis(500))
            .is_ok_and(|(status, body)| status == 200 && body.contains(PAGE_MARK))
}

fn cluster_ip(api: SocketAddr) -> Option<IpAddr> {
    let (status, body) = http_get(api, SERVICE_PATH, Duration::from_secs(2)).ok()?;
    if status != 200 {
        return None;
    }
    let svc: serde_json::Value = serde_json::from_str(&body).ok()?;
    svc["spec"]["clusterIP"].as_str()?.parse().ok()
}

/// The web pods as the API has them.
#[derive(Clone, Debug, Default)]
struct Pods {
    total: usize,
    live: usize,
    bound: usize,
    running: usize,
    ready: usize,
    uids: BTreeSet<String>,
    restarts: i32,
}

impl Pods {
    fn all_ready(&self) -> bool {
        self.total == REPLICAS
            && self.live == REPLICAS
            && self.running == REPLICAS
            && self.ready == REPLICAS
    }

    fn describe(&self) -> String {
        format!(
            "{} pods, {} live, {} bound, {} running, {} ready",
            self.total, self.live, self.bound, self.running, self.ready
        )
    }
}

fn pods(api: SocketAddr) -> Result<Pods, String> {
    let (status, body) = http_get(api, PODS_PATH, Duration::from_secs(2))?;
    if status != 200 {
        return Err(format!("GET {PODS_PATH}: {status} {body}"));
    }
    let mut list: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let items: Vec<Pod> =
        serde_json::from_value(list["items"].take()).map_err(|e| format!("pods: {e}"))?;
    let mut out = Pods {
        total: items.len(),
        ..Pods::default()
    };
    for pod in items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        out.live += 1;
        out.uids.extend(pod.metadata.uid.clone());
        let spec = pod.spec.as_ref();
        if spec.is_some_and(|s| s.node_name.is_some()) {
            out.bound += 1;
        }
        let Some(status) = &pod.status else { continue };
        let statuses = status.container_statuses.as_deref().unwrap_or_default();
        out.restarts += statuses.iter().map(|c| c.restart_count).sum::<i32>();
        let containers = spec.map_or(0, |s| s.containers.len());
        if status.phase.as_deref() == Some("Running")
            && statuses.len() == containers
            && statuses
                .iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        {
            out.running += 1;
        }
        if status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            out.ready += 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The measured runs.

struct Options {
    runs: usize,
    idle: Duration,
    settle: Duration,
    timeout: Duration,
}

/// What the baseline `moor server` showed.
struct Baseline {
    api_ms: f64,
    stop_ms: Option<f64>,
    progress: Vec<(String, f64, Option<f64>)>,
}

/// The baseline: `moor server` spawn → API ready, and SIGTERM → exited (ms).
fn baseline(opts: &Options) -> Result<Baseline, String> {
    let dir = TempDir::new();
    let args: Vec<String> = [
        "server",
        "--data-dir",
        &dir.path().join("d").display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut server = Instance::spawn(&args, &dir.path().join("server.log"))?;
    active().server = Some(server.pid());
    let ready = server.api_ready(Instant::now() + opts.timeout);
    // A SIGTERM within a few ms of ready reaches controllers still making their first
    // list, which then take their whole stop grace (3 s): let them start first, as the
    // idle period does for `moor up`.
    std::thread::sleep(BASELINE_SETTLE);
    let progress = server.progress();
    let stop_ms = server.terminate(Duration::from_secs(30));
    active().server = None;
    let _ = server.child.wait();
    Ok(Baseline {
        api_ms: ready?.1,
        stop_ms,
        progress,
    })
}

/// One cold start, measured from spawn.
#[derive(Default)]
struct Cold {
    progress: Vec<(String, f64, Option<f64>)>,
    api_ms: f64,
    created_ms: f64,
    bound_ms: f64,
    running_ms: f64,
    ready_ms: f64,
    service_ms: f64,
    tasks_ok: bool,
    rss_mib: f64,
    hwm_mib: f64,
    idle_cpu_pct: f64,
    containerd_mib: Option<f64>,
    shims: (usize, f64),
    stop_ms: Option<f64>,
    after_stop: String,
}

/// One restart on the same data dir, measured from spawn.
#[derive(Default)]
struct Warm {
    progress: Vec<(String, f64, Option<f64>)>,
    api_ms: f64,
    agent_ms: f64,
    pods_ms: f64,
    service_ms: f64,
    dips: usize,
    same_pods: bool,
    tasks_ok: bool,
    restarts: i32,
    note: String,
}

struct Cluster {
    dir: TempDir,
    up: Option<Instance>,
    uids: BTreeSet<String>,
    service_ip: Option<IpAddr>,
}

impl Cluster {
    fn new(image: &Path) -> Result<Cluster, String> {
        let dir = TempDir::new();
        let images = dir.path().join("d").join("agent").join("images");
        std::fs::create_dir_all(&images).map_err(|e| e.to_string())?;
        std::fs::copy(image, images.join("moor-web.tar")).map_err(|e| e.to_string())?;
        active().cluster = Some((dir.path().to_owned(), None));
        Ok(Cluster {
            dir,
            up: None,
            uids: BTreeSet::new(),
            service_ip: None,
        })
    }

    fn socket(&self) -> PathBuf {
        socket_of(self.dir.path())
    }

    fn start(&mut self) -> Result<&mut Instance, String> {
        let data = self.dir.path().join("d");
        let args: Vec<String> = [
            "up",
            "--data-dir",
            &data.display().to_string(),
            "--manifests",
            &format!("{REPO}/manifests"),
            "--listen",
            "127.0.0.1:0",
            "--kubelet-port",
            "0",
            "--bridge",
            BRIDGE,
            "--cluster-cidr",
            POD_CIDR,
            "--node-cidr-mask-size",
            "24",
            "--pod-cidr",
            POD_CIDR,
            "--service-cluster-ip-range",
            SERVICE_CIDR,
            "--service-node-port-range",
            NODE_PORTS,
            "--node-name",
            NODE,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let up = Instance::spawn(&args, &self.dir.path().join("up.log"))?;
        if let Some((_, pid)) = &mut active().cluster {
            *pid = Some(up.pid());
        }
        Ok(self.up.insert(up))
    }

    fn forget_pid(&self) {
        if let Some((_, pid)) = &mut active().cluster {
            *pid = None;
        }
    }

    fn sigkill(&mut self) {
        if let Some(mut up) = self.up.take() {
            self.forget_pid();
            let containerd = containerd_pid(&mut up);
            let _ = up.child.kill();
            let _ = up.child.wait();
            // Its containerd dies with it (PR_SET_PDEATHSIG); a restart that came quicker
            // would find it still answering and not supervise the next one.
            let deadline = Instant::now() + Duration::from_secs(5);
            while containerd.is_some_and(alive) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// containerd's tasks: whether exactly one runs per pod, the first attempt of each,
    /// and nothing else; with a description when not.
    fn check_tasks(&self) -> (bool, String) {
        let tasks = match tasks(&self.socket()) {
            Ok(t) => t,
            Err(e) => return (false, format!("ctr tasks ls: {e}")),
        };
        let expected: BTreeSet<String> = self
            .uids
            .iter()
            .map(|uid| moor::kubelet::runtime::container_id(uid, "web", 0))
            .collect();
        let running: BTreeSet<String> = tasks
            .iter()
            .filter(|(_, s)| s == "RUNNING")
            .map(|(id, _)| id.clone())
            .collect();
        let ok = tasks.len() == expected.len() && running == expected;
        (ok, format!("{} tasks: {tasks:?}", tasks.len()))
    }

    fn cold(&mut self, opts: &Options) -> Result<Cold, String> {
        let deadline = Instant::now() + opts.timeout;
        let up = self.start()?;
        let spawned = up.spawned;
        let (api, api_ms) = up.api_ready(deadline)?;
        let mut cold = Cold {
            api_ms,
            ..Cold::default()
        };
        let (mut created, mut bound, mut running, mut ready, mut answered) =
            (None, None, None, None, None);
        let mut last = Err("not asked yet".to_owned());
        loop {
            let tick = Instant::now();
            last = pods(api).or(last);
            if let Ok(p) = &last {
                let now = Instant::now();
                let mark = |slot: &mut Option<Instant>, n: usize| {
                    if slot.is_none() && n >= REPLICAS {
                        *slot = Some(now);
                    }
                };
                mark(&mut created, p.live);
                mark(&mut bound, p.bound);
                mark(&mut running, p.running);
                mark(&mut ready, if p.all_ready() { p.ready } else { 0 });
            }
            if self.service_ip.is_none() {
                self.service_ip = cluster_ip(api);
            }
            if answered.is_none() && self.service_ip.is_some_and(service_answers) {
                answered = Some(Instant::now());
            }
            if ready.is_some() && answered.is_some() {
                break;
            }
            let up = self.up.as_mut().unwrap();
            if Instant::now() > deadline || up.exited().is_some() {
                let pods = last.map_or_else(|e| e, |p| p.describe());
                return Err(up.failure(&format!(
                    "the app did not come up: {pods}; Service {}",
                    match (self.service_ip, answered) {
                        (None, _) => "without a cluster IP".to_owned(),
                        (Some(ip), None) => format!("{ip} not answering"),
                        (Some(ip), Some(_)) => format!("{ip} answering"),
                    }
                )));
            }
            std::thread::sleep(Duration::from_millis(10).saturating_sub(tick.elapsed()));
        }
        let at = |slot: Option<Instant>| slot.map_or(f64::NAN, |t| ms(spawned, t));
        (
            cold.created_ms,
            cold.bound_ms,
            cold.running_ms,
            cold.ready_ms,
            cold.service_ms,
        ) = (at(created), at(bound), at(running), at(ready), at(answered));
        self.uids = last.map(|p| p.uids).unwrap_or_default();
        let (tasks_ok, tasks) = self.check_tasks();
        cold.tasks_ok = tasks_ok;
        if !tasks_ok {
            println!("    cold start: containerd's tasks are not one per pod: {tasks}");
        }

        // Idle with the app running.
        let up = self.up.as_mut().unwrap();
        let pid = up.pid();
        let hz = clock_hz();
        let ticks = || proc_stat(pid).map_or(0, |s| s.2);
        let (before, idle_from) = (ticks(), Instant::now());
        std::thread::sleep(opts.idle);
        cold.idle_cpu_pct =
            (ticks() - before) as f64 / hz / idle_from.elapsed().as_secs_f64() * 100.0;
        if up.exited().is_some() {
            return Err(up.failure("moor up exited while idle"));
        }
        cold.rss_mib = status_kib(pid, "VmRSS:") as f64 / 1024.0;
        cold.hwm_mib = status_kib(pid, "VmHWM:") as f64 / 1024.0;
        let containerd = containerd_pid(up);
        cold.containerd_mib = containerd.map(|p| status_kib(p, "VmRSS:") as f64 / 1024.0);
        let shims: Vec<u32> = processes_with(&format!("{}/", self.dir.path().display()))
            .into_iter()
            .filter(|p| proc_stat(*p).is_some_and(|s| s.1.starts_with("containerd-shim")))
            .collect();
        cold.shims = (
            shims.len(),
            shims
                .iter()
                .map(|p| status_kib(*p, "VmRSS:") as f64 / 1024.0)
                .sum(),
        );
        cold.progress = up.progress();

        // Graceful stop.
        cold.stop_ms = up.terminate(Duration::from_secs(30));
        let stopped_line = up.find_stopped();
        let _ = up.child.wait();
        self.up = None;
        self.forget_pid();
        let mut notes = Vec::new();
        if cold.stop_ms.is_none() {
            notes.push("did not exit within 30 s of SIGTERM (killed)".to_owned());
        } else if !stopped_line {
            notes.push("exited without its `stopped` line".to_owned());
        }
        if containerd.is_some_and(alive) {
            notes.push("its containerd still runs".to_owned());
        }
        let addrs = service_addresses().len();
        if addrs > 0 {
            notes.push(format!("{addrs} service addresses left on lo"));
        }
        cold.after_stop = notes.join("; ");
        Ok(cold)
    }

    /// A restart on the same data dir (the previous `moor up` gone).
    fn warm(&mut self, opts: &Options) -> Result<Warm, String> {
        let deadline = Instant::now() + opts.timeout;
        let up = self.start()?;
        let spawned = up.spawned;
        let (api, api_ms) = up.api_ready(deadline)?;
        let mut warm = Warm {
            api_ms,
            ..Warm::default()
        };
        let ip = self.service_ip.ok_or("no cluster IP from the cold start")?;
        let (mut agent, mut answered) = (None, None);
        // Since when all pods have been Running and Ready without a break.
        let mut ready_since: Option<Instant> = None;
        let mut last: Result<Pods, String>;
        loop {
            let tick = Instant::now();
            let up = self.up.as_mut().unwrap();
            match pods(api) {
                Ok(p) => {
                    let now = Instant::now();
                    match (p.all_ready(), ready_since) {
                        (true, None) => ready_since = Some(now),
                        (false, Some(_)) => {
                            warm.dips += 1;
                            ready_since = None;
                        }
                        _ => {}
                    }
                    last = Ok(p);
                }
                Err(e) => last = Err(e),
            }
            if agent.is_none() {
                agent = up.lines.find("agent ").map(|(at, _)| at);
            }
            if answered.is_none() && service_answers(ip) {
                answered = Some(Instant::now());
            }
            if let (Some(a), Some(s), Some(r)) = (agent, answered, ready_since)
                && Instant::now() > a.max(s).max(r) + opts.settle
            {
                warm.agent_ms = ms(spawned, a);
                warm.pods_ms = ms(spawned, a.max(r));
                warm.service_ms = ms(spawned, s);
                break;
            }
            if Instant::now() > deadline || up.exited().is_some() {
                let pods = last.map_or_else(|e| e, |p| p.describe());
                return Err(up.failure(&format!(
                    "the restart did not settle: {pods}; agent line {}; Service {}",
                    if agent.is_some() { "seen" } else { "not seen" },
                    if answered.is_some() {
                        "answering"
                    } else {
                        "not answering"
                    }
                )));
            }
            std::thread::sleep(Duration::from_millis(10).saturating_sub(tick.elapsed()));
        }
        let pods = last.unwrap_or_default();
        warm.same_pods = pods.uids == self.uids;
        warm.restarts = pods.restarts;
        let (tasks_ok, tasks) = self.check_tasks();
        warm.tasks_ok = tasks_ok;
        let mut notes = Vec::new();
        if !warm.same_pods {
            notes.push(format!("pods {:?}, before {:?}", pods.uids, self.uids));
        }
        if !tasks_ok {
            notes.push(tasks);
        }
        if warm.restarts > 0 {
            notes.push(format!("{} container restarts", warm.restarts));
        }
        let up = self.up.as_mut().unwrap();
        if let Some((_, line)) = up.lines.find("containerd ")
            && !line.starts_with("containerd pid")
        {
            notes.push(format!("containerd: {line}"));
        }
        warm.note = notes.join("; ");
        warm.progress = up.progress();
        Ok(warm)
    }

    /// Everything removed; what is left after that.
    fn teardown(&mut self) -> Vec<String> {
        let pid = self.up.as_ref().map(Instance::pid);
        {
            // The handler must not clean up the same dir meanwhile.
            let mut state = active();
            state.cluster = None;
            teardown_dir(self.dir.path(), pid);
        }
        if let Some(mut up) = self.up.take() {
            // Reaped by teardown_dir already; this only drops the handle.
            let _ = up.child.try_wait();
        }
        leftovers(Some(self.dir.path()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if active()
            .cluster
            .as_ref()
            .is_some_and(|(d, _)| d == self.dir.path())
        {
            for left in self.teardown() {
                eprintln!("  left behind: {left}");
            }
        }
    }
}

impl Instance {
    fn find_stopped(&mut self) -> bool {
        self.lines.find("stopped").is_some()
    }
}

fn containerd_pid(up: &mut Instance) -> Option<u32> {
    let (_, line) = up.lines.find("containerd pid ")?;
    line.split_whitespace().nth(2)?.parse().ok()
}

struct Run {
    baseline: Baseline,
    cold: Cold,
    warm: Vec<Warm>,
}

fn one_run(run: usize, opts: &Options, image: &Path) -> Result<Run, String> {
    let baseline = baseline(opts).map_err(|e| format!("baseline `moor server`: {e}"))?;
    let mut cluster = Cluster::new(image)?;
    let result = measure(&mut cluster, opts);
    let left = cluster.teardown();
    if !left.is_empty() {
        println!(
            "  run {run}: LEFT BEHIND after teardown: {}",
            left.join(", ")
        );
    }
    let (cold, warm) = result?;
    Ok(Run {
        baseline,
        cold,
        warm,
    })
}

/// Cold start, graceful stop, restart, SIGKILL, restart.
fn measure(cluster: &mut Cluster, opts: &Options) -> Result<(Cold, Vec<Warm>), String> {
    let cold = cluster.cold(opts).map_err(|e| format!("cold start: {e}"))?;
    let after_term = cluster
        .warm(opts)
        .map_err(|e| format!("restart after SIGTERM: {e}"))?;
    cluster.sigkill();
    let after_kill = cluster
        .warm(opts)
        .map_err(|e| format!("restart after SIGKILL: {e}"))?;
    Ok((cold, vec![after_term, after_kill]))
}

// ---------------------------------------------------------------------------------------
// Report.

/// `median (min–max)` of `xs` in `unit`, scaled by `scale` and printed with `prec` decimals.
fn spread(xs: &[f64], scale: f64, prec: usize, unit: &str) -> (String, String) {
    let xs: Vec<f64> = xs
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| x * scale)
        .collect();
    if xs.is_empty() {
        return ("–".into(), String::new());
    }
    let med = format!("{:.prec$} {unit}", median(&xs));
    let range = if xs.len() > 1 {
        format!("{:.prec$} – {:.prec$}", pct(&xs, 0.0), pct(&xs, 1.0))
    } else {
        String::new()
    };
    (med, range)
}

fn check(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn row(figure: &str, xs: &[f64], scale: f64, prec: usize, unit: &str, target: &str, ok: &str) {
    let (med, range) = spread(xs, scale, prec, unit);
    println!("| {figure} | {med} | {range} | {target} | {ok} |");
}

/// The progress lines: per first word, (ms from spawn, moor's own `ready N ms`) over runs.
type LineTimes = BTreeMap<String, (Vec<f64>, Vec<f64>)>;

fn collect_lines<'a>(all: impl Iterator<Item = &'a Vec<(String, f64, Option<f64>)>>) -> LineTimes {
    let mut out = LineTimes::new();
    for progress in all {
        let mut seen = BTreeSet::new();
        for (key, at, reported) in progress {
            // The first of each kind (`containerd` may come twice if it was restarted).
            if !seen.insert(key.clone()) {
                continue;
            }
            let entry = out.entry(key.clone()).or_default();
            entry.0.push(*at);
            entry.1.extend(*reported);
        }
    }
    out
}

fn main() {
    let opts = Options {
        runs: arg("--runs", 5usize).max(1),
        idle: Duration::from_secs_f64(arg("--idle-seconds", 10.0f64).max(0.0)),
        settle: Duration::from_secs_f64(arg("--settle-seconds", 3.0f64).max(0.0)),
        timeout: Duration::from_secs_f64(arg("--timeout", 120.0f64).max(1.0)),
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let command = if args.is_empty() {
        "cargo bench --bench up".to_owned()
    } else {
        format!("cargo bench --bench up -- {}", args.join(" "))
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the up benchmark runs `moor up`, which needs root: run it as root");
        std::process::exit(1);
    }
    let lock = std::fs::File::create(LOCK).expect(LOCK);
    let _lock = match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err(_) => {
            eprintln!("another run of the up benchmark holds {LOCK}; wait for it to finish");
            std::process::exit(1);
        }
    };
    handle_interrupts();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "up benchmark ({date}): `moor up --manifests manifests` (3 × web, image from scripts/example-image), pods {POD_CIDR} on {BRIDGE}, services {SERVICE_CIDR}, node ports {NODE_PORTS}; {} run(s), each: `moor server` baseline, cold start, idle {} s, SIGTERM, restart, SIGKILL, restart",
        opts.runs,
        opts.idle.as_secs_f64()
    );
    println!("  command: {command}");
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("  load average at start: {}", load().trim());
    clean_stale();
    let whole = Instant::now();

    let image_dir = TempDir::new();
    let image = image_dir.path().join("moor-web.tar");
    let built = Instant::now();
    let out = Command::new(format!("{REPO}/scripts/example-image"))
        .arg(&image)
        .output()
        .expect("running scripts/example-image");
    if !out.status.success() {
        eprintln!(
            "scripts/example-image failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    println!(
        "  {} ({:.2} s)",
        String::from_utf8_lossy(&out.stdout).trim(),
        built.elapsed().as_secs_f64()
    );

    let contention = Contention::start(DIR_PREFIX.to_owned());
    let mut disturbed = Vec::new();
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for run in 1..=opts.runs {
        contention.take();
        match one_run(run, &opts, &image) {
            Ok(r) => {
                let c = &r.cold;
                println!(
                    "  run {run}: baseline API {:.0} ms | cold: API {:.0} ms, pods created {:.2} s, bound {:.2} s, Running {:.2} s, Ready {:.2} s, Service {:.2} s; idle VmRSS {:.1} MiB (HWM {:.1}), CPU {:.2}%; SIGTERM → exit {}{}",
                    r.baseline.api_ms,
                    c.api_ms,
                    c.created_ms / 1e3,
                    c.bound_ms / 1e3,
                    c.running_ms / 1e3,
                    c.ready_ms / 1e3,
                    c.service_ms / 1e3,
                    c.rss_mib,
                    c.hwm_mib,
                    c.idle_cpu_pct,
                    c.stop_ms
                        .map_or_else(|| "TIMED OUT".to_owned(), |m| format!("{m:.0} ms")),
                    if c.after_stop.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", c.after_stop)
                    }
                );
                for (how, w) in ["SIGTERM", "SIGKILL"].iter().zip(&r.warm) {
                    println!(
                        "         restart after {how}: API {:.0} ms, agent {:.2} s, pods Ready {:.2} s{}, Service {:.2} s; same pods {}, tasks {}{}",
                        w.api_ms,
                        w.agent_ms / 1e3,
                        w.pods_ms / 1e3,
                        if w.dips > 0 {
                            format!(" (unready {} time(s) first)", w.dips)
                        } else {
                            String::new()
                        },
                        w.service_ms / 1e3,
                        check(w.same_pods),
                        check(w.tasks_ok),
                        if w.note.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", w.note)
                        }
                    );
                }
                runs.push(r);
            }
            Err(e) => {
                println!("  run {run}: FAILED: {e}");
                failures.push(format!("run {run}: {}", e.lines().next().unwrap_or("")));
            }
        }
        contention.report(&format!("run {run}"), &mut disturbed);
    }
    drop(image_dir);
    let left = leftovers(None);
    println!("  load average at the end: {}", load().trim());
    if runs.is_empty() {
        println!("no run succeeded: {}", failures.join("; "));
        std::process::exit(1);
    }

    let cold = |f: fn(&Cold) -> f64| runs.iter().map(|r| f(&r.cold)).collect::<Vec<_>>();
    let warm =
        |i: usize, f: fn(&Warm) -> f64| runs.iter().map(|r| f(&r.warm[i])).collect::<Vec<_>>();
    let base: Vec<f64> = runs.iter().map(|r| r.baseline.api_ms).collect();
    let api = cold(|c| c.api_ms);
    let running = cold(|c| c.running_ms);
    let rss_mb: Vec<f64> = cold(|c| c.rss_mib * 1.048_576);
    let n = runs.len();

    println!();
    println!(
        "progress lines of `moor up`, ms from spawn: when the bench read the line / the `ready N ms` moor printed in it (its own clock starts after argument parsing), medians of {n}:"
    );
    let cold_lines = collect_lines(runs.iter().map(|r| &r.cold.progress));
    let term_lines = collect_lines(runs.iter().map(|r| &r.warm[0].progress));
    let kill_lines = collect_lines(runs.iter().map(|r| &r.warm[1].progress));
    let base_lines = collect_lines(runs.iter().map(|r| &r.baseline.progress));
    let mut keys: Vec<(&String, f64)> = cold_lines
        .iter()
        .map(|(k, (at, _))| (k, median(at)))
        .collect();
    keys.sort_by(|a, b| a.1.total_cmp(&b.1));
    println!(
        "| line | cold start | restart after SIGTERM | restart after SIGKILL | baseline `moor server`, fresh data dir |"
    );
    println!("|---|---:|---:|---:|---:|");
    let cell = |lines: &LineTimes, key: &str| match lines.get(key) {
        Some((at, reported)) if reported.is_empty() => format!("{:.0}", median(at)),
        Some((at, reported)) => format!("{:.0} / {:.0}", median(at), median(reported)),
        None => "–".to_owned(),
    };
    for (key, _) in keys {
        println!(
            "| `{key}` | {} | {} | {} | {} |",
            cell(&cold_lines, key),
            cell(&term_lines, key),
            cell(&kill_lines, key),
            cell(&base_lines, key)
        );
    }

    println!();
    println!("| figure (from spawn unless said) | median | min – max | target | |");
    println!("|---|---:|---:|---|---|");
    row(
        "`moor up` cold start → API ready (first `GET /readyz` 200)",
        &api,
        1.0,
        0,
        "ms",
        "< 0.5 s (k3s ~50 s to all default pods Ready; kind 12–17 s)",
        check(median(&api) < TARGET_API_MS),
    );
    row(
        "baseline: `moor server` (control plane alone) → API ready",
        &base,
        1.0,
        0,
        "ms",
        "",
        "",
    );
    println!(
        "| `moor up` / `moor server`, API ready medians | {:.2} | | | |",
        median(&api) / median(&base)
    );
    row(
        "→ 3 web pods created",
        &cold(|c| c.created_ms),
        1e-3,
        2,
        "s",
        "",
        "",
    );
    row(
        "→ 3 web pods bound",
        &cold(|c| c.bound_ms),
        1e-3,
        2,
        "s",
        "",
        "",
    );
    row(
        "→ 3 web pods Running (every container running)",
        &running,
        1e-3,
        2,
        "s",
        "< 5 s",
        check(median(&running) / 1e3 < TARGET_RUNNING_S),
    );
    row(
        "→ 3 web pods Ready",
        &cold(|c| c.ready_ms),
        1e-3,
        2,
        "s",
        "",
        "",
    );
    row(
        "→ the Service answers with the page through its cluster IP",
        &cold(|c| c.service_ms),
        1e-3,
        2,
        "s",
        "",
        "",
    );
    row(
        &format!(
            "`moor up` VmRSS after {:.0} s idle with the app running",
            opts.idle.as_secs_f64()
        ),
        &rss_mb,
        1.0,
        1,
        "MB",
        "< 60 MB (containerd, containers not counted)",
        check(median(&rss_mb) < TARGET_RSS_MB),
    );
    row(
        "`moor up` VmRSS, MiB",
        &cold(|c| c.rss_mib),
        1.0,
        1,
        "MiB",
        "",
        "",
    );
    row(
        "`moor up` VmHWM, MiB",
        &cold(|c| c.hwm_mib),
        1.0,
        1,
        "MiB",
        "",
        "",
    );
    row(
        "`moor up` CPU while idle, % of one core",
        &cold(|c| c.idle_cpu_pct),
        1.0,
        2,
        "%",
        "",
        "",
    );
    row(
        "for information: its containerd's VmRSS",
        &cold(|c| c.containerd_mib.unwrap_or(f64::NAN)),
        1.0,
        1,
        "MiB",
        "",
        "",
    );
    println!(
        "| for information: containerd shims, count × VmRSS (run 1) | {} × = {:.1} MiB | | | |",
        runs[0].cold.shims.0, runs[0].cold.shims.1
    );
    row(
        "SIGTERM → `moor up` exited (graceful stop)",
        &cold(|c| c.stop_ms.unwrap_or(f64::NAN)),
        1.0,
        0,
        "ms",
        "",
        "",
    );
    row(
        "baseline: SIGTERM (1 s after ready) → `moor server` exited",
        &runs
            .iter()
            .map(|r| r.baseline.stop_ms.unwrap_or(f64::NAN))
            .collect::<Vec<_>>(),
        1.0,
        0,
        "ms",
        "",
        "",
    );
    for (i, how) in ["graceful stop", "SIGKILL"].iter().enumerate() {
        let w = |f: fn(&Warm) -> f64| warm(i, f);
        row(
            &format!("restart after {how} → API ready"),
            &w(|w| w.api_ms),
            1.0,
            0,
            "ms",
            "",
            "",
        );
        row(
            &format!("restart after {how} → agent registered"),
            &w(|w| w.agent_ms),
            1e-3,
            2,
            "s",
            "",
            "",
        );
        row(
            &format!("restart after {how} → 3 pods Running and Ready with the new agent"),
            &w(|w| w.pods_ms),
            1e-3,
            2,
            "s",
            "",
            "",
        );
        row(
            &format!("restart after {how} → the Service answers again"),
            &w(|w| w.service_ms),
            1e-3,
            2,
            "s",
            "",
            "",
        );
        let same = runs.iter().filter(|r| r.warm[i].same_pods).count();
        let tasks = runs.iter().filter(|r| r.warm[i].tasks_ok).count();
        let dips = runs.iter().filter(|r| r.warm[i].dips > 0).count();
        let restarts: i32 = runs.iter().map(|r| r.warm[i].restarts).sum();
        println!(
            "| restart after {how}: same pod UIDs / one task per pod, none twice / container restarts / pods seen unready | {same}/{n} / {tasks}/{n} / {restarts} / {dips}/{n} runs | | {n}/{n} / {n}/{n} / 0 | {} |",
            check(same == n && tasks == n && restarts == 0)
        );
    }
    if disturbed.is_empty() {
        println!("(other processes used < 0.5 CPU s in each run)");
    } else {
        println!(
            "(DISTURBED: other processes used CPU in {}; the figures are inflated)",
            disturbed.join(", ")
        );
    }
    println!(
        "({n} of {} runs succeeded{}; left after teardown: {}; run time {:.0} s)",
        opts.runs,
        if failures.is_empty() {
            String::new()
        } else {
            format!("; FAILED: {}", failures.join("; "))
        },
        if left.is_empty() {
            "nothing".to_owned()
        } else {
            left.join(", ")
        },
        whole.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

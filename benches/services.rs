//! Service proxy benchmark (issue 8): the real `moor server` (controllers, scheduler and
//! GitOps off: Services are selector-less and the bench writes their EndpointSlices itself,
//! pods are created already bound), a private containerd with the busybox test image, and
//! `moor agent` as its own process on the pod range 10.204.0.0/24, the bridge `msvcb0` and
//! the service range 10.230.0.0/16, running the service proxy and cluster DNS in-process
//! (cluster IPs are /32 addresses on `lo` on a kernel without the `dummy` driver, as
//! here; TCP forwarded with splice(2), UDP with sessions). At the end it checks that no
//! address of the service range is left on the machine.
//!
//! `cargo bench --bench services` (options after `--`: `--transfers N` bulk transfers per
//! path and direction, default 7; `--seconds S` per transfer, default 3; `--round-trips N`
//! on one connection per path, default 4000; `--connections N` fresh connections per path
//! and server, default 300; `--services N`, default 5000; `--updates N`, default 30;
//! `--create-concurrency N`, default 64; `--no-restart` skips restarting the agent with
//! the Services present; `--agent-cpus LIST`, a diagnostic, pins the agent's threads with
//! `taskset -a -c -p LIST`).
//!
//! One pod runs four busybox `nc -ll` servers: a sink (`dd of=/dev/null bs=1M`), a source
//! (`dd if=/dev/zero bs=1M`), an echo (`cat`) and one that answers `B` (`echo B`). The
//! bench process, on the host, reaches them directly at the pod IP, or through a Service's
//! cluster IP (the proxy in the agent). Prints (it asserts nothing about speed):
//! 1. Bulk TCP throughput, pod → host and host → pod, direct vs proxied, interleaved, with
//!    a host-only baseline (the same transfer against a thread on 127.0.0.1) and the CPU
//!    the agent, the bench and the whole machine used meanwhile.
//! 2. 64-byte request → echo round trips over one persistent connection, and with a fresh
//!    connection per request, direct vs proxied; against the pod's `cat` and, to isolate
//!    the proxy from busybox's fork per connection, against an echo thread in the bench
//!    reached at the bridge's host address. UDP round trips through the proxy as well
//!    (a UDP echo thread in the bench: busybox has no UDP server).
//! 3. 5,000 selector-less Services, each with a hand-written EndpointSlice to the pod's
//!    echo: how long until the proxy serves all, the agent's RSS; then EndpointSlice
//!    updates (echo → `B`) from the API write's return until a fresh connection to the
//!    cluster IP is answered by the new endpoint, next to when a watch in the bench sees the
//!    same write; and the agent restarted with all of them present.

#[path = "../tests/support/containerd.rs"]
mod containerd_support;
#[path = "support/harness.rs"]
mod harness;
#[path = "../tests/support/image.rs"]
mod image_support;
#[path = "../tests/support/process.rs"]
mod process;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containerd_support::ContainerdInstance;
use futures::{StreamExt, TryStreamExt};
use harness::*;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use process::{Proc, free_port};
use serde_json::json;
use tokio::sync::mpsc;

const IMAGE: &str = "busybox:moor-bench";
const NODE: &str = "svc-bench-node";
const POD_CIDR: &str = "10.204.0.0/24";
const BRIDGE: &str = "msvcb0";
const SERVICE_CIDR: &str = "10.230.0.0/16";
const NODE_PORT_RANGE: &str = "31700-31799";
const NAMESPACE: &str = "default";
const POD: &str = "svc-bench-server";
/// The pod's servers.
const SINK_PORT: u16 = 5001;
const SOURCE_PORT: u16 = 5002;
const ECHO_PORT: u16 = 5003;
const IDENT_PORT: u16 = 5004;
/// The bench's own servers, as Service ports.
const HOST_ECHO_PORT: u16 = 7000;
const HOST_UDP_PORT: u16 = 7001;
/// The port of each of the many Services.
const MANY_PORT: u16 = 80;
/// Bytes of a request (and of its echo).
const REQUEST: usize = 64;
/// Bytes per read or write call in bulk transfers.
const CHUNK: usize = 1 << 20;

fn has_flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    proc_stat(pid).map_or(0.0, |(_, _, ticks, _)| ticks as f64 / clock_hz())
}

/// CPU seconds the CPUs of the machine have spent busy (not idle, not waiting on I/O, not
/// stolen), and stolen (the hypervisor ran something else while this VM wanted to run).
fn machine_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let busy: f64 = f
        .iter()
        .take(7)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    let steal = f.get(7).copied().unwrap_or(0.0);
    (busy / clock_hz(), steal / clock_hz())
}

fn service_cidr() -> (u32, u32) {
    let (net, prefix) = SERVICE_CIDR.split_once('/').unwrap();
    let net: Ipv4Addr = net.parse().unwrap();
    let prefix: u32 = prefix.parse().unwrap();
    (u32::from(net), u32::MAX << (32 - prefix))
}

fn in_service_cidr(ip: Ipv4Addr) -> bool {
    let (net, mask) = service_cidr();
    u32::from(ip) & mask == net
}

/// The IPv4 addresses of the service range on any interface, with the interface: `lo`
/// here (this kernel has no `dummy` driver), the proxy's dummy interface where there is one.
fn local_service_addresses() -> Vec<(Ipv4Addr, String)> {
    local_ipv4_addresses()
        .into_iter()
        .filter(|(ip, _, _)| in_service_cidr(*ip))
        .map(|(ip, _, device)| (ip, device))
        .collect()
}

/// Removes the addresses of the service range from the machine; how many there were.
fn remove_service_addresses() -> usize {
    let left = local_service_addresses();
    for (ip, device) in &left {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{ip}/32"), "dev", device])
            .output();
    }
    left.len()
}

/// TCP sockets listening on `port` at an address of the service range (/proc/net/tcp).
fn service_listeners(port: u16) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| {
            let mut f = l.split_whitespace();
            let (Some(local), Some(_), Some(state)) = (f.nth(1), f.next(), f.next()) else {
                return false;
            };
            let Some((ip, p)) = local.split_once(':') else {
                return false;
            };
            let (Ok(ip), Ok(p)) = (u32::from_str_radix(ip, 16), u16::from_str_radix(p, 16)) else {
                return false;
            };
            // The address is printed as the raw network-order word in host order.
            state == "0A" && p == port && in_service_cidr(Ipv4Addr::from(ip.to_ne_bytes()))
        })
        .count()
}

/// Removes service-range addresses left on the machine (by a killed run, or an agent that did not
/// get to clean up) when made and when dropped.
struct AddressGuard;

impl AddressGuard {
    fn new() -> Self {
        let n = remove_service_addresses();
        if n > 0 {
            println!("  removed {n} addresses in {SERVICE_CIDR} left by an earlier run");
        }
        AddressGuard
    }
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let n = remove_service_addresses();
        if n > 0 {
            eprintln!("  cleaning up {n} addresses in {SERVICE_CIDR} left behind");
        }
    }
}

/// Everything the bench runs; dropped (in field order) as: agent, leftover service
/// addresses, leftover pod networks, server, containerd (its tasks with it), the bridge,
/// the temp dir.
struct Bench {
    agent: Option<Proc>,
    _addresses: AddressGuard,
    networks: NetworkGuard,
    server: Proc,
    containerd: ContainerdInstance,
    _bridge: BridgeGuard,
    dir: tempfile::TempDir,
    client: kube::Client,
    /// `--agent-cpus`: the CPUs the agent's threads are pinned to (a diagnostic).
    agent_cpus: Option<String>,
}

impl Bench {
    fn agent_pid(&self) -> u32 {
        self.agent.as_ref().map_or(0, |p| p.0.id())
    }

    async fn start() -> Bench {
        let moor = env!("CARGO_BIN_EXE_moor");
        let bridge = BridgeGuard::new(BRIDGE);
        let addresses = AddressGuard::new();
        let dir = tempfile::tempdir().unwrap();
        let containerd = ContainerdInstance::start();

        let archive = image_support::busybox_oci_archive(dir.path(), IMAGE);
        let out = Command::new(moor)
            .args(["images", "import", "--containerd-socket"])
            .arg(containerd.socket())
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "moor images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let port = free_port();
        let server_log = dir.path().join("server.log");
        let mut server = spawn_tied(
            Command::new(moor)
                .args([
                    "server",
                    "--disable-controllers",
                    "--disable-scheduler",
                    "--disable-gitops",
                    "--service-cluster-ip-range",
                    SERVICE_CIDR,
                    "--service-node-port-range",
                    NODE_PORT_RANGE,
                    "--data-dir",
                ])
                .arg(dir.path().join("server"))
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .env("MOOR_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&server_log).unwrap()),
        )
        .unwrap();
        wait_for_line(&mut server, "apiserver", &server_log);
        let server = Proc(server);
        let networks = NetworkGuard {
            data_dir: dir.path().join("agent"),
            pod_cidr: POD_CIDR,
            bridge: BRIDGE,
        };
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let mut bench = Bench {
            agent: None,
            _addresses: addresses,
            networks,
            server,
            containerd,
            _bridge: bridge,
            dir,
            client,
            agent_cpus: arg_str("--agent-cpus"),
        };
        bench.start_agent("agent.log");
        // The node IPAM controller is off: give the Node its podCIDR as that controller
        // would, or a restarted agent waits 2 s for one before it starts the proxy.
        let nodes: Api<Node> = Api::all(bench.client.clone());
        nodes
            .patch(
                NODE,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}})),
            )
            .await
            .expect("setting the Node's podCIDR");
        bench
    }

    /// Starts `moor agent` and waits until it has registered its Node.
    fn start_agent(&mut self, log_name: &str) {
        let moor = env!("CARGO_BIN_EXE_moor");
        let dir = self.dir.path();
        let agent_log = dir.join(log_name);
        let mut agent = spawn_tied(
            Command::new(moor)
                .arg("agent")
                .arg("--kubeconfig")
                .arg(dir.join("server").join("kubeconfig.yaml"))
                .args(["--node-name", NODE, "--containerd-socket"])
                .arg(self.containerd.socket())
                .arg("--data-dir")
                .arg(dir.join("agent"))
                .args([
                    "--pod-cidr",
                    POD_CIDR,
                    "--bridge",
                    BRIDGE,
                    "--kubelet-port",
                    "0",
                    "--node-ip",
                    "127.0.0.1",
                    "--service-cidr",
                    SERVICE_CIDR,
                ])
                .env("MOOR_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&agent_log).unwrap()),
        )
        .unwrap();
        wait_for_line(&mut agent, "agent ", &agent_log);
        if let Some(cpus) = &self.agent_cpus {
            let ok = Command::new("taskset")
                .args(["-a", "-c", "-p", cpus, &agent.id().to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "taskset -a -c -p {cpus} of the agent failed");
        }
        self.agent = Some(Proc(agent));
    }

    /// Stops the agent with SIGTERM (killed if it takes over 20 s); seconds it took.
    fn stop_agent(&mut self) -> f64 {
        let started = Instant::now();
        if let Some(mut agent) = self.agent.take() {
            let pid = nix::unistd::Pid::from_raw(agent.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = agent.0.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(agent);
        }
        started.elapsed().as_secs_f64()
    }

    fn agent_log_tail(&self) -> String {
        tail(&self.dir.path().join("agent.log"))
    }

    /// containerd tasks left in the agent's namespace.
    fn tasks(&self) -> usize {
        self.containerd
            .ctr("moor", &["tasks", "ls", "-q"])
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    }
}

fn is_running(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.container_statuses.as_ref().is_some_and(|cs| {
            !cs.is_empty()
                && cs
                    .iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

fn server_pod() -> Pod {
    let container = |name: &str, command: &[&str]| {
        json!({
            "name": name,
            "image": IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "command": command,
        })
    };
    serde_json::from_value(json!({
        "metadata": {"name": POD, "namespace": NAMESPACE, "labels": {"bench": "services"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                container("sink", &["nc", "-ll", "-p", "5001", "-e", "dd", "of=/dev/null", "bs=1M"]),
                container("source", &["nc", "-ll", "-p", "5002", "-e", "dd", "if=/dev/zero", "bs=1M"]),
                container("echo", &["nc", "-ll", "-p", "5003", "-e", "cat"]),
                container("ident", &["nc", "-ll", "-p", "5004", "-e", "echo", "B"]),
            ],
        },
    }))
    .unwrap()
}

/// Creates the server pod and waits until it runs and its echo answers; its IP.
async fn start_server_pod(bench: &Bench) -> Ipv4Addr {
    let api: Api<Pod> = Api::namespaced(bench.client.clone(), NAMESPACE);
    api.create(&PostParams::default(), &server_pod())
        .await
        .expect("creating the server pod");
    let deadline = Instant::now() + Duration::from_secs(60);
    let ip = loop {
        let pod = api.get(POD).await.expect("reading the server pod");
        if is_running(&pod)
            && let Some(ip) = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok())
        {
            break ip;
        }
        assert!(
            Instant::now() < deadline,
            "the server pod is not running after 60 s; agent log:\n{}",
            bench.agent_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_answers(SocketAddr::new(IpAddr::V4(ip), ECHO_PORT), b'x').await;
    ip
}

/// Waits (up to 30 s) until an echo at `addr` answers (`expect` is the first byte back).
async fn wait_answers(addr: SocketAddr, expect: u8) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if blocking(move || ask(addr)).await == Some(expect) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} does not answer after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One fresh connection to `addr`: sends `x`, returns the first byte of the answer.
fn ask(addr: SocketAddr) -> Option<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let _ = s.set_nodelay(true);
    let _ = s.write_all(b"x");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).ok()?;
    Some(b[0])
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// The bridge's host address (the pods' gateway).
fn bridge_address() -> Ipv4Addr {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", BRIDGE])
        .output()
        .expect("ip addr show");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{BRIDGE} has no IPv4 address"))
}

/// The bench's own servers, each on a thread per connection: a source and a sink on
/// 127.0.0.1 (the host-only baseline), a TCP echo and a UDP echo on every address.
struct HostServers {
    source: SocketAddr,
    sink: SocketAddr,
    echo_port: u16,
    udp_port: u16,
}

fn serve_each(listener: TcpListener, handle: fn(TcpStream)) {
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || handle(conn));
        }
    });
}

impl HostServers {
    fn start() -> HostServers {
        let source = TcpListener::bind("127.0.0.1:0").unwrap();
        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo = TcpListener::bind("0.0.0.0:0").unwrap();
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        let servers = HostServers {
            source: source.local_addr().unwrap(),
            sink: sink.local_addr().unwrap(),
            echo_port: echo.local_addr().unwrap().port(),
            udp_port: udp.local_addr().unwrap().port(),
        };
        serve_each(source, |mut s| {
            let buf = vec![0u8; CHUNK];
            while s.write_all(&buf).is_ok() {}
        });
        serve_each(sink, |mut s| {
            let mut buf = vec![0u8; CHUNK];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
        serve_each(echo, |mut s| {
            let _ = s.set_nodelay(true);
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, peer)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], peer);
            }
        });
        servers
    }
}

/// Reads from `addr` for `seconds`; MB/s (10^6 bytes) from connect to the last read, and
/// bytes.
fn download(addr: SocketAddr, seconds: f64) -> (f64, u64) {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        match s.read(&mut buf) {
            Ok(0) => panic!("{addr} closed during a download"),
            Ok(n) => total += n as u64,
            Err(e) => panic!("reading from {addr}: {e}"),
        }
    }
    (total as f64 / started.elapsed().as_secs_f64() / 1e6, total)
}

/// Writes to `addr` for `seconds`, then half-closes and waits for the server's close (so
/// every byte was read at the far end); MB/s from connect to that close, and bytes.
fn upload(addr: SocketAddr, seconds: f64) -> (f64, u64) {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        match s.write(&buf) {
            Ok(n) => total += n as u64,
            Err(e) => panic!("writing to {addr}: {e}"),
        }
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = [0u8; 4096];
    loop {
        match s.read(&mut rest) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("waiting for {addr} to finish reading: {e}"),
        }
    }
    (total as f64 / started.elapsed().as_secs_f64() / 1e6, total)
}

/// `n` request → echo round trips of REQUEST bytes on `s`, in µs.
fn round_trips(s: &mut TcpStream, n: usize) -> Vec<f64> {
    let req = [b'r'; REQUEST];
    let mut resp = [0u8; REQUEST];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            s.write_all(&req).expect("sending a request");
            s.read_exact(&mut resp).expect("reading an echo");
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn connect_echo(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Connect, one round trip of REQUEST bytes, close; µs.
fn fresh_round_trip(addr: SocketAddr) -> f64 {
    let t = Instant::now();
    let mut s = connect_echo(addr);
    let req = [b'r'; REQUEST];
    let mut resp = [0u8; REQUEST];
    s.write_all(&req).expect("sending a request");
    s.read_exact(&mut resp)
        .unwrap_or_else(|e| panic!("reading an echo from {addr}: {e}"));
    drop(s);
    t.elapsed().as_secs_f64() * 1e6
}

/// `n` UDP round trips of REQUEST bytes from one socket; µs, and how many got no answer
/// within 1 s.
fn udp_round_trips(addr: SocketAddr, n: usize) -> (Vec<f64>, usize) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let req = [b'u'; REQUEST];
    let mut buf = [0u8; 2048];
    let mut out = Vec::with_capacity(n);
    let mut lost = 0;
    for _ in 0..n {
        let t = Instant::now();
        s.send(&req).expect("sending a datagram");
        match s.recv(&mut buf) {
            Ok(_) => out.push(t.elapsed().as_secs_f64() * 1e6),
            Err(_) => lost += 1,
        }
    }
    (out, lost)
}

/// CPU use over an interval: the agent's, the bench's own and the whole machine's (CPU
/// seconds per second: 1.0 is one core busy).
/// Also the agent's context switches (all its threads), a count of its wake-ups. The
/// agent's CPU is summed over its threads alive at both marks.
#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    agent: f64,
    me: f64,
    machine: f64,
    steal: f64,
    agent_switches: u64,
}

/// What was used between two marks.
struct Usage {
    /// Cores used (CPU seconds per second) by the agent, the bench and the machine, and
    /// stolen from the machine by the hypervisor.
    agent: f64,
    me: f64,
    machine: f64,
    steal: f64,
    /// The agent's CPU seconds and context switches.
    agent_seconds: f64,
    agent_switches: u64,
}

/// Voluntary and involuntary context switches of every thread of `pid`.
fn context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches:")
                || line.starts_with("nonvoluntary_ctxt_switches:")
            {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

/// CPU seconds the live threads of `pid` have run, from /proc/PID/task/*/schedstat (in
/// ns, unlike /proc/PID/stat's clock ticks).
fn threads_cpu_seconds(pid: u32) -> f64 {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        ns += std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns as f64 / 1e9
}

impl CpuMark {
    fn now(agent: u32) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            agent: threads_cpu_seconds(agent),
            me: cpu_seconds(std::process::id()),
            machine: machine_seconds().0,
            steal: machine_seconds().1,
            agent_switches: context_switches(agent),
        }
    }

    fn since(&self, agent: u32) -> Usage {
        let now = CpuMark::now(agent);
        let wall = now.at.duration_since(self.at).as_secs_f64();
        Usage {
            agent: (now.agent - self.agent).max(0.0) / wall,
            me: (now.me - self.me) / wall,
            machine: (now.machine - self.machine) / wall,
            steal: (now.steal - self.steal) / wall,
            agent_seconds: (now.agent - self.agent).max(0.0),
            agent_switches: now.agent_switches.saturating_sub(self.agent_switches),
        }
    }
}

/// The figures of one path of one bulk direction.
#[derive(Default)]
struct PathRuns {
    mbps: Vec<f64>,
    agent: Vec<f64>,
    me: Vec<f64>,
    machine: Vec<f64>,
    steal: Vec<f64>,
    /// The agent's context switches per MB moved.
    switches_per_mb: Vec<f64>,
}

impl PathRuns {
    fn cpu(&self) -> String {
        format!(
            "agent {:.2}, bench {:.2}, machine {:.2} (stolen {:.2})",
            median(&self.agent),
            median(&self.me),
            median(&self.machine),
            median(&self.steal)
        )
    }

    /// The agent's CPU µs and context switches per MB moved (medians).
    fn agent_per_mb(&self) -> (f64, f64) {
        let us: Vec<f64> = self
            .agent
            .iter()
            .zip(&self.mbps)
            .map(|(cores, mbps)| cores / mbps * 1e6)
            .collect();
        (median(&us), median(&self.switches_per_mb))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Download,
    Upload,
}

/// Section 1: bulk transfers, each path in turn, the order rotating per round.
async fn bulk(
    agent: u32,
    paths: [SocketAddr; 3],
    dir: Dir,
    transfers: usize,
    seconds: f64,
) -> Vec<PathRuns> {
    let mut out: Vec<PathRuns> = (0..paths.len()).map(|_| PathRuns::default()).collect();
    for round in 0..transfers {
        for k in 0..paths.len() {
            let i = (k + round) % paths.len();
            let addr = paths[i];
            let mark = CpuMark::now(agent);
            let (mbps, bytes) = blocking(move || match dir {
                Dir::Download => download(addr, seconds),
                Dir::Upload => upload(addr, seconds),
            })
            .await;
            let used = mark.since(agent);
            let runs = &mut out[i];
            runs.mbps.push(mbps);
            runs.agent.push(used.agent);
            runs.me.push(used.me);
            runs.machine.push(used.machine);
            runs.steal.push(used.steal);
            runs.switches_per_mb
                .push(used.agent_switches as f64 / (bytes as f64 / 1e6));
            // Let the closed connection's ends finish before the next transfer.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    out
}

/// Latencies of one test, direct and proxied, in µs; and the agent's CPU µs and context
/// switches per proxied request.
struct Latency {
    direct: Vec<f64>,
    proxied: Vec<f64>,
    agent_us: f64,
    agent_switches: f64,
    /// Cores stolen from the machine meanwhile.
    steal: f64,
}

impl Latency {
    /// Runs `test` (which returns direct and proxied samples), noting the agent's use.
    async fn measure(
        agent: u32,
        test: impl FnOnce() -> (Vec<f64>, Vec<f64>) + Send + 'static,
    ) -> Latency {
        let mark = CpuMark::now(agent);
        let (direct, proxied) = blocking(test).await;
        let used = mark.since(agent);
        let n = proxied.len().max(1) as f64;
        Latency {
            direct,
            proxied,
            agent_us: used.agent_seconds * 1e6 / n,
            agent_switches: used.agent_switches as f64 / n,
            steal: used.steal,
        }
    }

    fn added_p50(&self) -> f64 {
        median(&self.proxied) - median(&self.direct)
    }
}

/// Round trips on one persistent connection per path, in interleaved blocks: (direct,
/// proxied) in µs.
async fn persistent(agent: u32, direct: SocketAddr, proxied: SocketAddr, n: usize) -> Latency {
    Latency::measure(agent, move || {
        let mut d = connect_echo(direct);
        let mut p = connect_echo(proxied);
        round_trips(&mut d, 200);
        round_trips(&mut p, 200);
        let blocks = 20;
        let (mut ds, mut ps) = (Vec::new(), Vec::new());
        for b in 0..blocks {
            let k = n / blocks;
            if b % 2 == 0 {
                ds.extend(round_trips(&mut d, k));
                ps.extend(round_trips(&mut p, k));
            } else {
                ps.extend(round_trips(&mut p, k));
                ds.extend(round_trips(&mut d, k));
            }
        }
        (ds, ps)
    })
    .await
}

/// A fresh connection per request, alternating paths: (direct, proxied) in µs.
async fn fresh(agent: u32, direct: SocketAddr, proxied: SocketAddr, n: usize) -> Latency {
    Latency::measure(agent, move || {
        for _ in 0..20 {
            fresh_round_trip(direct);
            fresh_round_trip(proxied);
        }
        let (mut ds, mut ps) = (Vec::new(), Vec::new());
        for i in 0..n {
            if i % 2 == 0 {
                ds.push(fresh_round_trip(direct));
                ps.push(fresh_round_trip(proxied));
            } else {
                ps.push(fresh_round_trip(proxied));
                ds.push(fresh_round_trip(direct));
            }
        }
        (ds, ps)
    })
    .await
}

/// UDP round trips from one socket per path, interleaved in blocks; and how many got no
/// answer.
async fn udp(agent: u32, direct: SocketAddr, proxied: SocketAddr, n: usize) -> (Latency, usize) {
    let lost = Arc::new(Mutex::new(0));
    let counter = lost.clone();
    let latency = Latency::measure(agent, move || {
        udp_round_trips(direct, 100);
        udp_round_trips(proxied, 100);
        let (mut ds, mut ps) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let (d, l1) = udp_round_trips(direct, n / 10);
            let (p, l2) = udp_round_trips(proxied, n / 10);
            ds.extend(d);
            ps.extend(p);
            *counter.lock().unwrap() += l1 + l2;
        }
        (ds, ps)
    })
    .await;
    let lost = *lost.lock().unwrap();
    (latency, lost)
}

/// The bench's Service for sections 1–2: the pod's four servers and the bench's echoes.
fn bench_service() -> Service {
    let port = |name: &str, port: u16, protocol: &str| json!({"name": name, "port": port, "protocol": protocol, "targetPort": port});
    serde_json::from_value(json!({
        "metadata": {"name": "bench", "namespace": NAMESPACE},
        "spec": {
            "type": "ClusterIP",
            "ports": [
                port("sink", SINK_PORT, "TCP"),
                port("source", SOURCE_PORT, "TCP"),
                port("echo", ECHO_PORT, "TCP"),
                port("ident", IDENT_PORT, "TCP"),
                port("host-echo", HOST_ECHO_PORT, "TCP"),
                port("host-udp", HOST_UDP_PORT, "UDP"),
            ],
        },
    }))
    .unwrap()
}

fn slice(name: &str, service: &str, ip: Ipv4Addr, ports: &[(&str, u16, &str)]) -> EndpointSlice {
    let ports: Vec<_> = ports
        .iter()
        .map(|(n, p, proto)| json!({"name": n, "port": p, "protocol": proto}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service, "bench": "services"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": ports,
    }))
    .unwrap()
}

fn many_service(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"bench": "services"}},
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "echo", "port": MANY_PORT, "protocol": "TCP", "targetPort": ECHO_PORT}],
        },
    }))
    .unwrap()
}

fn cluster_ip(svc: &Service) -> Ipv4Addr {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .expect("the Service got a cluster IP")
}

/// Waits until `n` listeners of the many Services are up; seconds since `since`, polling
/// every 100 ms.
async fn wait_listeners(n: usize, since: Instant, patience: Duration, bench: &Bench) -> f64 {
    loop {
        let (count, at) = blocking(|| (service_listeners(MANY_PORT), Instant::now())).await;
        if count >= n {
            return at.duration_since(since).as_secs_f64();
        }
        assert!(
            since.elapsed() < patience,
            "only {count} of {n} Services listening after {patience:?}; agent log:\n{}",
            bench.agent_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watch events on the EndpointSlices: (name, resourceVersion, when seen).
async fn watch_slices(
    client: kube::Client,
) -> (
    mpsc::UnboundedReceiver<(String, String, Instant)>,
    tokio::task::AbortHandle,
) {
    let api: Api<EndpointSlice> = Api::namespaced(client, NAMESPACE);
    let (tx, rx) = mpsc::unbounded_channel();
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        let mut listed_tx = Some(listed_tx);
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(s)) => {
                    let at = Instant::now();
                    let name = s.metadata.name.unwrap_or_default();
                    let rv = s.metadata.resource_version.unwrap_or_default();
                    if tx.send((name, rv, at)).is_err() {
                        return;
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("  watching EndpointSlices: {e}"),
            }
        }
    });
    listed.await.expect("the EndpointSlice watch lists");
    (rx, task.abort_handle())
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Section 3's figures.
struct Many {
    created_s: f64,
    all_local_s: f64,
    after_creates_s: f64,
    addresses: usize,
    rss_mib: f64,
    server_rss_mib: f64,
    updates_ms: Vec<f64>,
    watch_ms: Vec<f64>,
    failed_updates: usize,
    /// Fresh connections each update took until the new endpoint answered.
    update_polls: Vec<f64>,
    restart: Option<Restart>,
}

struct Restart {
    stop_s: f64,
    left_after_stop: usize,
    ready_s: f64,
    rss_mib: f64,
    /// When the restarted agent logged "service proxy starting" and "service proxy
    /// synced", seconds after it was started.
    proxy_starting_s: Option<f64>,
    proxy_synced_s: Option<f64>,
}

/// When a log line containing `needle` was written (tracing's timestamp at its start),
/// seconds after `since`.
fn log_time(path: &Path, needle: &str, since: std::time::SystemTime) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.contains(needle))?;
    // Without ANSI colours: ESC '[' ... 'm'.
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let at: jiff::Timestamp = plain.split_whitespace().next()?.parse().ok()?;
    let since = jiff::Timestamp::try_from(since).ok()?;
    Some(at.duration_since(since).as_secs_f64())
}

/// Section 3: many Services, update latency among them, restart with them.
async fn many(
    bench: &mut Bench,
    pod_ip: Ipv4Addr,
    n: usize,
    updates: usize,
    concurrency: usize,
    restart: bool,
) -> Many {
    let services: Api<Service> = Api::namespaced(bench.client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(bench.client.clone(), NAMESPACE);
    let before = service_listeners(MANY_PORT);
    assert_eq!(
        before, 0,
        "listeners on port {MANY_PORT} in {SERVICE_CIDR} already"
    );
    let started = Instant::now();
    let mut ips: Vec<(usize, Ipv4Addr)> = futures::stream::iter(0..n)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let name = format!("s-{i:05}");
                let svc = services
                    .create(&PostParams::default(), &many_service(&name))
                    .await?;
                slices
                    .create(
                        &PostParams::default(),
                        &slice(
                            &format!("{name}-a"),
                            &name,
                            pod_ip,
                            &[("echo", ECHO_PORT, "TCP")],
                        ),
                    )
                    .await?;
                Ok::<_, kube::Error>((i, cluster_ip(&svc)))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
        .expect("creating the Services");
    ips.sort();
    let created_s = started.elapsed().as_secs_f64();
    let all_local_s = wait_listeners(n, started, Duration::from_secs(300), bench).await;
    let after_creates_s = (all_local_s - created_s).max(0.0);
    let local: HashSet<Ipv4Addr> = local_service_addresses()
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    let addresses = ips.iter().filter(|(_, ip)| local.contains(ip)).count();
    let last = SocketAddr::new(IpAddr::V4(ips[n - 1].1), MANY_PORT);
    wait_answers(last, b'x').await;
    let pid = bench.agent_pid();
    let rss_mib = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let server_rss_mib = status_kib(bench.server.0.id(), "VmRSS:") as f64 / 1024.0;
    println!(
        "  {n} Services and EndpointSlices created in {created_s:.2} s; all {n} listening {all_local_s:.2} s after the first create ({after_creates_s:.2} s after the last returned); {addresses} of their cluster IPs local; agent VmRSS {rss_mib:.1} MiB, server {server_rss_mib:.1} MiB"
    );

    // Updates: one Service at a time, its slice moved from the echo to the `B` server.
    let (mut seen, watch) = watch_slices(bench.client.clone()).await;
    let _watch = AbortOnDrop(watch);
    let mut updates_ms = Vec::new();
    let mut watch_ms = Vec::new();
    let mut failed_updates = 0;
    let mut update_polls = Vec::new();
    for k in 0..updates {
        let (i, ip) = ips[(k * n / updates.max(1) + n / (2 * updates.max(1))) % n];
        let name = format!("s-{i:05}-a");
        let addr = SocketAddr::new(IpAddr::V4(ip), MANY_PORT);
        assert_eq!(
            blocking(move || ask(addr)).await,
            Some(b'x'),
            "{addr} answers from the echo before its update"
        );
        // Drain what the watch has seen so far.
        while seen.try_recv().is_ok() {}
        let patch = json!({"ports": [{"name": "echo", "port": IDENT_PORT, "protocol": "TCP"}]});
        let written = slices
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("updating an EndpointSlice");
        let wrote = Instant::now();
        let rv = written.metadata.resource_version.unwrap_or_default();
        let answered = blocking(move || {
            let deadline = wrote + Duration::from_secs(10);
            let mut polls = 0;
            loop {
                polls += 1;
                if ask(addr) == Some(b'B') {
                    return Some((Instant::now(), polls));
                }
                if Instant::now() > deadline {
                    return None;
                }
            }
        })
        .await;
        match answered {
            Some((at, polls)) => {
                updates_ms.push(at.duration_since(wrote).as_secs_f64() * 1e3);
                update_polls.push(polls as f64);
            }
            None => failed_updates += 1,
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some((n, r, at))) = tokio::time::timeout_at(deadline, seen.recv()).await {
            if n == name && r == rv {
                // Signed: the event may arrive before the write's response.
                let ms = if at >= wrote {
                    at.duration_since(wrote).as_secs_f64() * 1e3
                } else {
                    -(wrote.duration_since(at).as_secs_f64() * 1e3)
                };
                watch_ms.push(ms);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "  {} EndpointSlice updates: write returned → new endpoint answers p50 {:.1} ms, p90 {:.1}, max {:.1} ms ({failed_updates} not within 10 s; fresh connections until then: median {:.0}, max {:.0}); the bench's own watch saw them p50 {:.1} ms, max {:.1} ms after the write returned",
        updates_ms.len(),
        median(&updates_ms),
        pct(&updates_ms, 0.9),
        pct(&updates_ms, 1.0),
        median(&update_polls),
        pct(&update_polls, 1.0),
        median(&watch_ms),
        pct(&watch_ms, 1.0)
    );

    let restart = if restart {
        let stop_s = bench.stop_agent();
        let left_after_stop = local_service_addresses().len();
        let t = Instant::now();
        let wall = std::time::SystemTime::now();
        bench.start_agent("agent-restarted.log");
        let ready_s = wait_listeners(n, t, Duration::from_secs(300), bench).await;
        wait_answers(last, b'x').await;
        let rss_mib = status_kib(bench.agent_pid(), "VmRSS:") as f64 / 1024.0;
        let log = bench.dir.path().join("agent-restarted.log");
        let proxy_starting_s = log_time(&log, "service proxy starting", wall);
        let proxy_synced_s = log_time(&log, "service proxy synced", wall);
        let secs = |s: Option<f64>| s.map_or("?".into(), |s| format!("{s:.2}"));
        println!(
            "  agent restart: SIGTERM → exit {stop_s:.2} s ({left_after_stop} service addresses left); start → all {n} listening {ready_s:.2} s (its log: proxy starting at {} s, synced at {} s); VmRSS then {rss_mib:.1} MiB",
            secs(proxy_starting_s),
            secs(proxy_synced_s)
        );
        Some(Restart {
            stop_s,
            left_after_stop,
            ready_s,
            rss_mib,
            proxy_starting_s,
            proxy_synced_s,
        })
    } else {
        None
    };
    Many {
        created_s,
        all_local_s,
        after_creates_s,
        addresses,
        rss_mib,
        server_rss_mib,
        updates_ms,
        watch_ms,
        failed_updates,
        update_polls,
        restart,
    }
}

fn us(xs: &[f64]) -> String {
    format!("{:.0} / {:.0} µs", median(xs), pct(xs, 0.99))
}

#[tokio::main]
async fn main() {
    let transfers = arg("--transfers", 7).max(1);
    let seconds = arg("--seconds", 3.0);
    let round_trips_n = arg("--round-trips", 4000).max(20);
    let connections = arg("--connections", 300).max(2);
    let services_n = arg("--services", 5000).max(1);
    let updates = arg("--updates", 30).max(1);
    let concurrency = arg("--create-concurrency", 64).max(1);
    let restart = !has_flag("--no-restart");
    let command: Vec<String> = std::env::args().skip(1).collect();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "services benchmark ({date}): `moor server` + private containerd + `moor agent` (pods {POD_CIDR}, bridge {BRIDGE}, services {SERVICE_CIDR}, proxy in-process) as separate processes; {transfers} transfers of {seconds} s per path and direction, {round_trips_n} round trips, {connections} fresh connections, {services_n} Services, {updates} updates{}",
        arg_str("--agent-cpus").map_or(String::new(), |c| format!("; agent pinned to CPUs {c}"))
    );
    println!(
        "  command: cargo bench --bench services{}",
        if command
            .iter()
            .any(|a| a.starts_with("--") && a != "--bench")
        {
            format!(
                " -- {}",
                command
                    .iter()
                    .filter(|a| *a != "--bench")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        } else {
            String::new()
        }
    );
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("  load average at start: {}", load().trim());
    let whole = Instant::now();
    let mut bench = Bench::start().await;
    let contention = Contention::start(bench.containerd.dir().display().to_string());
    let mut disturbed = Vec::new();
    let pod_ip = start_server_pod(&bench).await;
    let gateway = bridge_address();
    let host = HostServers::start();

    let services: Api<Service> = Api::namespaced(bench.client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(bench.client.clone(), NAMESPACE);
    let svc = services
        .create(&PostParams::default(), &bench_service())
        .await
        .expect("creating the bench Service");
    let cip = IpAddr::V4(cluster_ip(&svc));
    slices
        .create(
            &PostParams::default(),
            &slice(
                "bench-pod",
                "bench",
                pod_ip,
                &[
                    ("sink", SINK_PORT, "TCP"),
                    ("source", SOURCE_PORT, "TCP"),
                    ("echo", ECHO_PORT, "TCP"),
                    ("ident", IDENT_PORT, "TCP"),
                ],
            ),
        )
        .await
        .expect("creating the bench EndpointSlice");
    slices
        .create(
            &PostParams::default(),
            &slice(
                "bench-host",
                "bench",
                gateway,
                &[
                    ("host-echo", host.echo_port, "TCP"),
                    ("host-udp", host.udp_port, "UDP"),
                ],
            ),
        )
        .await
        .expect("creating the bench host EndpointSlice");
    let t = Instant::now();
    wait_answers(SocketAddr::new(cip, ECHO_PORT), b'x').await;
    wait_answers(SocketAddr::new(cip, HOST_ECHO_PORT), b'x').await;
    let answering_ms = t.elapsed().as_secs_f64() * 1e3;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = bench.agent_pid();
    let idle_rss = status_kib(pid, "VmRSS:") as f64 / 1024.0;
    let device = local_service_addresses()
        .into_iter()
        .find(|(ip, _)| IpAddr::V4(*ip) == cip)
        .map_or_else(|| "no interface".to_owned(), |(_, d)| d);
    println!(
        "  setup {:.1} s; pod {pod_ip}, bridge {gateway}, Service cluster IP {cip} on {device} (answering {answering_ms:.0} ms after its slices were written); agent pid {pid}, VmRSS {idle_rss:.1} MiB",
        whole.elapsed().as_secs_f64()
    );
    contention.take();

    // 1. Bulk throughput.
    let pod = |port| SocketAddr::new(IpAddr::V4(pod_ip), port);
    let down = bulk(
        pid,
        [
            pod(SOURCE_PORT),
            SocketAddr::new(cip, SOURCE_PORT),
            host.source,
        ],
        Dir::Download,
        transfers,
        seconds,
    )
    .await;
    contention.report("download", &mut disturbed);
    let up = bulk(
        pid,
        [pod(SINK_PORT), SocketAddr::new(cip, SINK_PORT), host.sink],
        Dir::Upload,
        transfers,
        seconds,
    )
    .await;
    contention.report("upload", &mut disturbed);
    for (label, runs) in [("pod → host", &down), ("host → pod", &up)] {
        for (path, r) in ["direct", "proxied", "host-only"].iter().zip(runs.iter()) {
            println!(
                "  {label} {path}: MB/s {:?}; cores used: {}; agent per MB: {:.0} µs CPU, {:.1} context switches",
                r.mbps.iter().map(|v| v.round()).collect::<Vec<_>>(),
                r.cpu(),
                r.agent_per_mb().0,
                r.agent_per_mb().1
            );
        }
    }

    // 2. Latency.
    let host_echo = SocketAddr::new(IpAddr::V4(gateway), host.echo_port);
    let pod_echo = pod(ECHO_PORT);
    let cip_echo = SocketAddr::new(cip, ECHO_PORT);
    let cip_host_echo = SocketAddr::new(cip, HOST_ECHO_PORT);
    let pers = persistent(pid, pod_echo, cip_echo, round_trips_n).await;
    let hpers = persistent(pid, host_echo, cip_host_echo, round_trips_n).await;
    contention.report("persistent round trips", &mut disturbed);
    let fresh_pod = fresh(pid, pod_echo, cip_echo, connections).await;
    let fresh_host = fresh(pid, host_echo, cip_host_echo, connections).await;
    contention.report("fresh connections", &mut disturbed);
    let (udp_rt, udp_lost) = udp(
        pid,
        SocketAddr::new(IpAddr::V4(gateway), host.udp_port),
        SocketAddr::new(cip, HOST_UDP_PORT),
        round_trips_n,
    )
    .await;
    contention.report("UDP round trips", &mut disturbed);
    let latencies = [
        (
            "64 B round trip, one connection, pod `cat`",
            &pers,
            "added p50 < 100 µs",
        ),
        ("64 B round trip, one connection, host echo", &hpers, ""),
        (
            "connect + 64 B round trip + close, pod `nc -e cat`",
            &fresh_pod,
            "",
        ),
        (
            "connect + 64 B round trip + close, host echo",
            &fresh_host,
            "",
        ),
        ("UDP 64 B round trip, host echo", &udp_rt, ""),
    ];
    for (label, l, _) in &latencies {
        println!(
            "  {label}: direct {}, proxied {} (p50 / p99); agent per proxied request: {:.0} µs CPU, {:.1} context switches; {:.2} cores stolen",
            us(&l.direct),
            us(&l.proxied),
            l.agent_us,
            l.agent_switches,
            l.steal
        );
    }

    // 3. Many Services.
    let many = many(
        &mut bench,
        pod_ip,
        services_n,
        updates,
        concurrency,
        restart,
    )
    .await;
    contention.report("many Services", &mut disturbed);

    // Teardown: the pod (through the agent), then the agent (which removes its addresses).
    let pods: Api<Pod> = Api::namespaced(bench.client.clone(), NAMESPACE);
    pods.delete(POD, &DeleteParams::default())
        .await
        .expect("deleting the server pod");
    let deadline = Instant::now() + Duration::from_secs(60);
    while (bench.tasks() > 0 || bench.networks.left() > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hwm = status_kib(bench.agent_pid(), "VmHWM:") as f64 / 1024.0;
    let agent_stop_s = bench.stop_agent();
    let addresses_left = local_service_addresses().len();
    let tasks_left = bench.tasks();
    let networks_left = bench.networks.left();
    drop(bench);
    let bridge_left = Command::new("ip")
        .args(["link", "show", BRIDGE])
        .output()
        .is_ok_and(|o| o.status.success());
    let netns_left = std::fs::read_dir("/var/run/netns")
        .map(|d| d.count())
        .unwrap_or(0);
    println!("  load average at the end: {}", load().trim());

    let mb = |r: &PathRuns| median(&r.mbps);
    println!();
    println!("| figure | direct | through the cluster IP | proxied / direct | target |");
    println!("|---|---:|---:|---:|---|");
    for (label, runs) in [("pod → host", &down), ("host → pod", &up)] {
        println!(
            "| bulk TCP {label}, median of {transfers} × {seconds} s, MB/s (host-only baseline: {:.0}) | {:.0} | {:.0} | {:.0}% | ≥ 70% |",
            mb(&runs[2]),
            mb(&runs[0]),
            mb(&runs[1]),
            100.0 * mb(&runs[1]) / mb(&runs[0])
        );
    }
    for (label, l, target) in &latencies {
        println!(
            "| {label}: p50 / p99 | {} | {} | +{:.0} µs p50 | {target} |",
            us(&l.direct),
            us(&l.proxied),
            l.added_p50()
        );
    }
    println!(
        "| {services_n} Services: EndpointSlice write returned → new endpoint answers, p50 / p90 / max ({} updates; polls each: median {:.0}, max {:.0}) | | {:.1} / {:.1} / {:.1} ms | | < 50 ms |",
        many.updates_ms.len(),
        median(&many.update_polls),
        pct(&many.update_polls, 1.0),
        median(&many.updates_ms),
        pct(&many.updates_ms, 0.9),
        pct(&many.updates_ms, 1.0)
    );
    println!(
        "| same writes seen by a watch in the bench, p50 / max | | {:.1} / {:.1} ms | | |",
        median(&many.watch_ms),
        pct(&many.watch_ms, 1.0)
    );
    println!(
        "| {services_n} Services created ({concurrency} in flight) / all listening and local, from the first create | | {:.2} / {:.2} s ({:.2} s after the last create) | | |",
        many.created_s, many.all_local_s, many.after_creates_s
    );
    if let Some(r) = &many.restart {
        println!(
            "| agent restarted with {services_n} Services: start → all listening (proxy started / synced, from its log) / SIGTERM → exit | | {:.2} s ({:.2} / {:.2} s) / {:.2} s | | |",
            r.ready_s,
            r.proxy_starting_s.unwrap_or(f64::NAN),
            r.proxy_synced_s.unwrap_or(f64::NAN),
            r.stop_s
        );
    }
    println!(
        "| agent VmRSS idle / with {services_n} Services{} | | {idle_rss:.1} / {:.1} MiB{} | | |",
        if many.restart.is_some() {
            " / after a restart with them"
        } else {
            ""
        },
        many.rss_mib,
        many.restart
            .as_ref()
            .map(|r| format!(" / {:.1} MiB", r.rss_mib))
            .unwrap_or_default()
    );
    println!(
        "(cores used during the transfers, medians: CPU seconds per second of the agent, the bench and the whole 2-core machine; stolen: the VM wanted to run but the hypervisor ran something else)"
    );
    for (label, runs) in [("pod → host", &down), ("host → pod", &up)] {
        let (us_per_mb, switches_per_mb) = runs[1].agent_per_mb();
        println!(
            "(  {label}: direct {}; proxied {}; host-only {}; the agent per MB proxied: {us_per_mb:.0} µs CPU, {switches_per_mb:.1} context switches)",
            runs[0].cpu(),
            runs[1].cpu(),
            runs[2].cpu()
        );
    }
    println!(
        "(agent per proxied request: CPU µs / context switches:{})",
        latencies
            .iter()
            .map(|(label, l, _)| format!(" {label}: {:.0} / {:.1}", l.agent_us, l.agent_switches))
            .collect::<Vec<_>>()
            .join(";")
    );
    if disturbed.is_empty() {
        println!("(other processes used < 0.5 CPU s in each section)");
    } else {
        println!(
            "(DISTURBED: other processes used CPU in {}; the figures are inflated)",
            disturbed.join(", ")
        );
    }
    println!(
        "(agent VmRSS per Service: {:.1} KiB; server VmRSS with {services_n} Services {:.1} MiB; {} of {services_n} cluster IPs were local; {} updates not seen within 10 s; UDP datagrams lost {udp_lost}; agent VmHWM {hwm:.1} MiB)",
        (many.rss_mib - idle_rss) * 1024.0 / services_n as f64,
        many.server_rss_mib,
        many.addresses,
        many.failed_updates
    );
    println!(
        "(teardown: agent stopped in {agent_stop_s:.2} s; left: {addresses_left} addresses in {SERVICE_CIDR} on any interface{}, {tasks_left} tasks, {networks_left} pod networks, {netns_left} entries in /var/run/netns (anyone's), bridge {}; run time {:.0} s)",
        many.restart
            .as_ref()
            .map(|r| format!(" ({} after the restart's stop)", r.left_after_stop))
            .unwrap_or_default(),
        if bridge_left {
            "STILL THERE"
        } else {
            "removed"
        },
        whole.elapsed().as_secs_f64()
    );
}

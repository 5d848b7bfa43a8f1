//! Pod networking against the real CNI plugins (Debian's containernetworking-plugins), as
//! root: namespaces, the bridge, host-local leases, masquerade and portmap rules are all
//! real, and traffic really flows between the host and the pods.
//!
//! Tests run in parallel (and under nextest each in its own process, next to other test
//! binaries), so each one claims a pod subnet 10.200.N.0/24 with an flock on a file in the
//! temp dir (released by the kernel even if the process dies), uses the bridge `mtnetN`
//! that goes with it, and removes bridge, namespaces and rules in a drop guard, also when
//! an assertion fails.

#[path = "support/podnet.rs"]
mod podnet;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moor::kubelet::network::{Network, NetworkConfig, NetworkError, PodNetwork, PortMapping};
use nix::fcntl::Flock;
use nix::mount::{MntFlags, umount2};
use nix::sched::{CloneFlags, setns};

/// The port test servers listen on inside pods (each pod has its own namespace, so the
/// same port everywhere is fine).
const POD_PORT: u16 = 8080;

/// One test's private pod network: subnet, bridge, data dir, and cleanup.
struct Fixture {
    net: Arc<Network>,
    dir: tempfile::TempDir,
    subnet: u8,
    bridge: String,
    uids: Mutex<Vec<String>>,
    _claim: Flock<File>,
}

impl Fixture {
    fn new() -> Fixture {
        let (subnet, claim) = podnet::claim_subnet(200, "mtnet");
        let bridge = format!("mtnet{subnet}");
        // A bridge of this name can only be a leftover of a killed run that held the claim.
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        let dir = tempfile::tempdir().unwrap();
        let config =
            NetworkConfig::new(format!("10.200.{subnet}.0/24"), dir.path()).with_bridge(&bridge);
        let net = Arc::new(Network::new(config).expect("CNI plugins installed"));
        Fixture {
            net,
            dir,
            subnet,
            bridge,
            uids: Mutex::new(Vec::new()),
            _claim: claim,
        }
    }

    /// A fresh pod UID, remembered for the iptables scrub in `drop`.
    fn uid(&self) -> String {
        let uid = uuid::Uuid::new_v4().to_string();
        self.uids.lock().unwrap().push(uid.clone());
        uid
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.subnet, 1)
    }

    fn in_subnet(&self, ip: IpAddr) -> bool {
        matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, 200, self.subnet] && v4.octets()[3] > 1)
    }

    /// Another agent on the same data dir, as after a restart.
    fn restarted(&self) -> Network {
        Network::new(self.net.config().clone()).unwrap()
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    fn lease(&self, ip: IpAddr) -> PathBuf {
        self.data().join("ipam").join("moor").join(ip.to_string())
    }

    /// Host-side veths on the bridge.
    fn veths(&self) -> usize {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Teardown through the code under test first: that also removes the rules the plugins
        // made. A separate thread with its own runtime, since drop may run inside the test's.
        let net = self.net.clone();
        let torn = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                for uid in net.pods().await.ok()? {
                    if let Err(e) = net.teardown(&uid).await {
                        eprintln!("cleanup: teardown {uid}: {e}");
                    }
                }
                Some(())
            })
        })
        .join();
        if !matches!(torn, Ok(Some(()))) {
            eprintln!("cleanup: teardown did not complete");
        }
        // Whatever teardown could not remove.
        if let Ok(entries) = std::fs::read_dir(self.data().join("netns")) {
            for e in entries.flatten() {
                let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
            }
        }
        let _ = self.net.release_netns_dir();
        scrub_iptables(&self.uids.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Removes nat rules mentioning `uids` and the per-pod chains they jump to; for when a
/// test's teardown failed. The shared CNI-HOSTPORT-* chains stay (other tests use them).
fn scrub_iptables(uids: &[String]) {
    let Ok(out) = Command::new("iptables").args(["-t", "nat", "-S"]).output() else {
        return;
    };
    let rules = String::from_utf8_lossy(&out.stdout).to_string();
    let mut chains = Vec::new();
    for line in rules
        .lines()
        .filter(|l| uids.iter().any(|u| l.contains(u.as_str())))
    {
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        if let Some(target) = line.split(" -j ").nth(1).map(str::trim)
            && target.starts_with("CNI-")
            && !target.starts_with("CNI-HOSTPORT")
        {
            chains.push(target.to_string());
        }
        // -S output is shell-quoted (the comments); let sh unquote it.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("iptables -w -t nat -D {rest}"))
            .output();
    }
    for chain in chains {
        let _ = Command::new("iptables")
            .args(["-w", "-t", "nat", "-F", &chain])
            .output();
        let _ = Command::new("iptables")
            .args(["-w", "-t", "nat", "-X", &chain])
            .output();
    }
}

fn nat_rules_mentioning(uid: &str) -> Vec<String> {
    let out = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(uid))
        .map(str::to_string)
        .collect()
}

/// Runs `f` on a thread that has joined the network namespace at `netns`.
fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = File::open(netns).unwrap();
    std::thread::spawn(move || {
        // Only this thread moves; it ends when f returns.
        setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
}

/// A TCP server inside a pod answering every connection with a greeting.
struct PodServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodServer {
    fn start(pod: &PodNetwork, greeting: &str) -> PodServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let greeting = greeting.to_string();
        let flag = stop.clone();
        let thread = in_netns(&pod.netns, move || {
            let listener = TcpListener::bind(("0.0.0.0", POD_PORT)).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.write_all(format!("{greeting} to {}\n", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("pod server listening");
        PodServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PodServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects and reads the greeting.
fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    conn.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut s = String::new();
    conn.read_to_string(&mut s)?;
    Ok(s)
}

fn ipv4(net: &PodNetwork) -> IpAddr {
    *net.ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .expect("an IPv4 address")
}

#[tokio::test]
async fn setup_gives_an_ip_in_the_pod_cidr_reachable_from_the_host() {
    let fx = Fixture::new();
    let uid = fx.uid();
    let started = Instant::now();
    let pod = fx.net.setup(&uid, "default", "web", &[]).await.unwrap();
    eprintln!("setup took {:?}", started.elapsed());

    assert_eq!(pod.netns, fx.net.netns_path(&uid));
    assert!(
        pod.netns.starts_with(fx.data()),
        "namespace under the data dir"
    );
    let ip = ipv4(&pod);
    assert!(
        fx.in_subnet(ip),
        "{ip} not a pod address in 10.200.{}.0/24",
        fx.subnet
    );
    assert!(fx.lease(ip).exists(), "host-local lease in our data dir");
    assert_eq!(fx.veths(), 1);

    let _server = PodServer::start(&pod, "hello");
    let got = fetch(SocketAddr::new(ip, POD_PORT)).unwrap();
    // The host reaches the pod from the gateway address on the bridge.
    assert_eq!(got, format!("hello to {}\n", fx.gateway()));

    // The pod leaves its subnet through the default route: the node's main address.
    if let Some(node_ip) = default_route_source() {
        let host = TcpListener::bind((node_ip, 0)).unwrap();
        let addr = host.local_addr().unwrap();
        let dialed = in_netns(&pod.netns, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map(drop)
        })
        .join()
        .unwrap();
        dialed.unwrap_or_else(|e| panic!("pod could not reach the node at {addr}: {e}"));
    }

    // lo is up inside the pod (the loopback plugin ran).
    let lo = in_netns(&pod.netns, || {
        fetch(SocketAddr::from(([127, 0, 0, 1], POD_PORT)))
    })
    .join()
    .unwrap();
    assert_eq!(lo.unwrap(), "hello to 127.0.0.1\n");
}

#[tokio::test]
async fn two_pods_get_different_ips_and_reach_each_other() {
    let fx = Fixture::new();
    let (a_uid, b_uid) = (fx.uid(), fx.uid());
    let (a, b) = tokio::join!(
        fx.net.setup(&a_uid, "default", "a", &[]),
        fx.net.setup(&b_uid, "default", "b", &[])
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let (a_ip, b_ip) = (ipv4(&a), ipv4(&b));
    assert_ne!(a_ip, b_ip);
    assert!(fx.in_subnet(a_ip) && fx.in_subnet(b_ip));

    let _server = PodServer::start(&b, "from b");
    let got = in_netns(&a.netns, move || fetch(SocketAddr::new(b_ip, POD_PORT)))
        .join()
        .unwrap()
        .unwrap();
    // Pod to pod on the bridge keeps the source address (no masquerade inside the subnet).
    assert_eq!(got, format!("from b to {a_ip}\n"));
}

#[tokio::test]
async fn setup_is_idempotent_also_across_a_restart() {
    let fx = Fixture::new();
    let uid = fx.uid();
    let first = fx.net.setup(&uid, "default", "web", &[]).await.unwrap();
    let again = fx.net.setup(&uid, "default", "web", &[]).await.unwrap();
    // Without the namespace, bridge DEL cannot read the old address off eth0 and leaves
    // that address's masquerade rule; after a real reboot iptables is empty anyway. The
    // fixture's scrub removes it here.
    assert_eq!(first, again);
    // host-local hands out addresses round-robin: a second ADD would have taken the next.
    let restarted = fx.restarted();
    assert_eq!(
        restarted.setup(&uid, "default", "web", &[]).await.unwrap(),
        first
    );
    // Concurrent first calls for one pod do not interleave into two ADDs (the second would
    // fail on the existing eth0 and its undo would tear down the first).
    let other = fx.uid();
    let (x, y) = tokio::join!(
        fx.net.setup(&other, "default", "other", &[]),
        fx.net.setup(&other, "default", "other", &[])
    );
    assert_eq!(x.unwrap(), y.unwrap());

    let leases = std::fs::read_dir(fx.data().join("ipam/moor"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("10.")
        })
        .count();
    assert_eq!(leases, 2);
    assert_eq!(fx.veths(), 2);
}

#[tokio::test]
async fn teardown_removes_namespace_veth_lease_and_rules() {
    let fx = Fixture::new();
    let uid = fx.uid();
    let pod = fx.net.setup(&uid, "default", "web", &[]).await.unwrap();
    let ip = ipv4(&pod);
    assert!(
        !nat_rules_mentioning(&uid).is_empty(),
        "bridge ipMasq made rules"
    );

    fx.net.teardown(&uid).await.unwrap();
    assert!(!pod.netns.exists(), "namespace file removed");
    assert_eq!(fx.veths(), 0, "veth removed");
    assert!(!fx.lease(ip).exists(), "lease released");
    assert_eq!(nat_rules_mentioning(&uid), Vec::<String>::new());
    assert!(fx.net.pods().await.unwrap().is_empty());
    assert!(!fx.data().join("pods").join(format!("{uid}.json")).exists());

    // Again, and a pod never seen, are fine.
    fx.net.teardown(&uid).await.unwrap();
    fx.net.teardown(&fx.uid()).await.unwrap();
    // A UID that cannot be one is refused, not used as a path.
    let err = fx.net.teardown("../etc").await.unwrap_err();
    assert!(matches!(err, NetworkError::InvalidRequest { .. }), "{err}");
}

#[tokio::test]
async fn pods_lists_what_exists_for_stale_cleanup_after_a_restart() {
    let fx = Fixture::new();
    let (a, b) = (fx.uid(), fx.uid());
    fx.net.setup(&a, "default", "a", &[]).await.unwrap();
    fx.net.setup(&b, "default", "b", &[]).await.unwrap();

    let restarted = fx.restarted();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(restarted.pods().await.unwrap(), want);
    for uid in restarted.pods().await.unwrap() {
        restarted.teardown(&uid).await.unwrap();
    }
    assert!(restarted.pods().await.unwrap().is_empty());
    assert_eq!(fx.veths(), 0);
}

#[tokio::test]
async fn a_pod_whose_record_was_lost_is_still_torn_down_from_its_namespace() {
    let fx = Fixture::new();
    let uid = fx.uid();
    let pod = fx.net.setup(&uid, "default", "web", &[]).await.unwrap();
    let ip = ipv4(&pod);
    std::fs::remove_file(fx.data().join("pods").join(format!("{uid}.json"))).unwrap();

    assert_eq!(
        fx.net.pods().await.unwrap(),
        vec![uid.clone()],
        "listed by its namespace"
    );
    fx.net.teardown(&uid).await.unwrap();
    assert!(!pod.netns.exists());
    assert_eq!(fx.veths(), 0);
    assert!(!fx.lease(ip).exists(), "lease released by container ID");
    assert_eq!(
        nat_rules_mentioning(&uid),
        Vec::<String>::new(),
        "bridge found the address on eth0"
    );
}

#[tokio::test]
async fn a_namespace_lost_at_reboot_still_releases_the_lease_and_sets_up_afresh() {
    let fx = Fixture::new();
    let uid = fx.uid();
    let pod = fx.net.setup(&uid, "default", "web", &[]).await.unwrap();
    let ip = ipv4(&pod);
    // A reboot loses the mount but keeps the file and the record.
    umount2(&pod.netns, MntFlags::MNT_DETACH).unwrap();
    assert!(pod.netns.exists());

    // setup notices the namespace is gone: DEL (releasing the old lease), then a fresh ADD.
    let again = fx.net.setup(&uid, "default", "web", &[]).await.unwrap();
    // Without the namespace, bridge DEL cannot read the old address off eth0 and leaves
    // that address's masquerade rule; after a real reboot iptables is empty anyway. The
    // fixture's scrub removes it here.
    assert!(
        !fx.lease(ip).exists() || ipv4(&again) == ip,
        "old lease released"
    );
    let _server = PodServer::start(&again, "back");
    assert!(
        fetch(SocketAddr::new(ipv4(&again), POD_PORT))
            .unwrap()
            .starts_with("back")
    );

    // And teardown after a lost mount works too.
    umount2(&again.netns, MntFlags::MNT_DETACH).unwrap();
    fx.net.teardown(&uid).await.unwrap();
    assert!(!fx.lease(ipv4(&again)).exists());
    assert!(!again.netns.exists());
    assert!(fx.net.pods().await.unwrap().is_empty());
}

#[tokio::test]
async fn host_ports_reach_the_pod_through_node_addresses() {
    let fx = Fixture::new();
    let uid = fx.uid();
    let host_port = TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ports = [PortMapping {
        host_port,
        container_port: POD_PORT,
        protocol: "TCP".into(),
        host_ip: None,
    }];
    let pod = fx.net.setup(&uid, "default", "web", &ports).await.unwrap();
    let _server = PodServer::start(&pod, "mapped");

    // The gateway address on the bridge is a node address: DNAT in OUTPUT.
    let via_gateway = fetch(SocketAddr::from((fx.gateway(), host_port))).unwrap();
    assert!(via_gateway.starts_with("mapped"), "{via_gateway}");
    // Loopback works too: portmap sets route_localnet on the bridge and masquerades
    // 127.0.0.1, so the pod sees the gateway address as the peer.
    let via_lo = fetch(SocketAddr::from(([127, 0, 0, 1], host_port))).unwrap();
    assert_eq!(via_lo, format!("mapped to {}\n", fx.gateway()));
    // The node's main address (of the default route), where there is one.
    if let Some(node_ip) = default_route_source() {
        let via_node = fetch(SocketAddr::new(node_ip, host_port)).unwrap();
        assert!(via_node.starts_with("mapped"), "{via_node}");
    }

    let dnat = nat_rules_mentioning(&uid);
    assert!(
        dnat.iter().any(|r| r.contains("dnat")),
        "portmap rules: {dnat:?}"
    );
    fx.net.teardown(&uid).await.unwrap();
    assert_eq!(
        nat_rules_mentioning(&uid),
        Vec::<String>::new(),
        "portmap DEL got the mappings"
    );
    let gone = fetch(SocketAddr::from((fx.gateway(), host_port)));
    assert!(gone.is_err(), "host port still forwarded: {gone:?}");
}

fn default_route_source() -> Option<IpAddr> {
    let out = Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "src")?;
    words.next()?.parse().ok()
}

#[tokio::test]
async fn a_failing_plugin_is_named_and_what_it_did_is_undone() {
    let fx = Fixture::new();
    // A /30 holds one pod: the gateway takes .1, the pod .2. Same data dir, so the
    // fixture's cleanup sees its pods too (teardown uses each pod's recorded config).
    let small = Network::new(NetworkConfig {
        pod_cidr: format!("10.200.{}.0/30", fx.subnet),
        ..fx.net.config().clone()
    })
    .unwrap();
    let (first, second) = (fx.uid(), fx.uid());
    small.setup(&first, "default", "one", &[]).await.unwrap();

    let err = small
        .setup(&second, "default", "two", &[])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, NetworkError::Plugin { .. }), "{msg}");
    assert!(msg.contains("bridge ADD") && msg.contains(&second), "{msg}");
    assert!(
        msg.contains("no IP addresses available"),
        "the plugin's own message: {msg}"
    );
    assert!(
        !small.netns_path(&second).exists(),
        "failed pod's namespace removed"
    );
    assert_eq!(small.pods().await.unwrap(), vec![first.clone()]);
    assert_eq!(fx.veths(), 1, "failed pod's veth removed");

    small.teardown(&first).await.unwrap();
}

#[tokio::test]
async fn many_pods_set_up_and_torn_down_concurrently() {
    let fx = Fixture::new();
    let uids: Vec<String> = (0..8).map(|_| fx.uid()).collect();
    let started = Instant::now();
    let pods =
        futures::future::join_all(uids.iter().map(|u| fx.net.setup(u, "default", u, &[]))).await;
    eprintln!("8 concurrent setups took {:?}", started.elapsed());
    let mut ips: Vec<IpAddr> = pods.into_iter().map(|p| ipv4(&p.unwrap())).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "distinct addresses");
    assert_eq!(fx.veths(), 8);

    for r in futures::future::join_all(uids.iter().map(|u| fx.net.teardown(u))).await {
        r.unwrap();
    }
    assert_eq!(fx.veths(), 0);
    assert!(fx.net.pods().await.unwrap().is_empty());
}

#[test]
fn missing_plugin_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("cni-bin");
    std::fs::create_dir(&empty).unwrap();
    let err =
        Network::new(NetworkConfig::new("10.200.0.0/24", dir.path()).with_cni_bin_dirs([&empty]))
            .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, NetworkError::PluginsMissing { .. }));
    assert!(msg.contains("containernetworking-plugins"), "{msg}");
    assert!(msg.contains("bridge") && msg.contains("portmap"), "{msg}");
    assert!(msg.contains(&empty.display().to_string()), "{msg}");

    let err = Network::new(
        NetworkConfig::new("10.200.0.0/24", dir.path()).with_bridge("a-name-far-too-long"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("a-name-far-too-long"), "{err}");
}

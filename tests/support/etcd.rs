//! A private etcd (Debian's `etcd-server`) for tests and benchmarks: free loopback ports, a
//! temporary data dir, stopped (SIGKILL) when dropped and killed with its parent process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd member name every instance uses.
pub const MEMBER_NAME: &str = "test";

/// A running (or stopped, between [`EtcdInstance::stop`] and [`EtcdInstance::start_again`])
/// etcd on 127.0.0.1.
pub struct EtcdInstance {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

#[allow(dead_code)]
impl EtcdInstance {
    /// Start etcd and wait until it answers `/health`. Panics with etcd's log when it does
    /// not come up: this is test scaffolding.
    pub fn start() -> Self {
        Self::start_prepared(|_, _, _| {})
    }

    /// Start etcd after `prepare(data_dir, member_name, peer_url)` has filled its (not yet
    /// existing) data dir — e.g. with `etcdctl snapshot restore`.
    pub fn start_prepared(prepare: impl Fn(&Path, &str, &str)) -> Self {
        let mut last_log = String::new();
        // Ports picked by binding :0 can be taken by someone else before etcd binds them;
        // retry with fresh ports a few times.
        for _ in 0..5 {
            let mut inst = EtcdInstance {
                child: None,
                dir: tempfile::tempdir().expect("temp dir for etcd"),
                client_port: free_port(),
                peer_port: free_port(),
            };
            prepare(
                &inst.data_dir(),
                MEMBER_NAME,
                &format!("http://127.0.0.1:{}", inst.peer_port),
            );
            if inst.spawn_and_wait() {
                return inst;
            }
            last_log = read_log(inst.dir.path());
        }
        panic!("etcd did not start after 5 attempts; last log: {last_log}");
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The data dir etcd runs on.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kill etcd (SIGKILL) and wait for it to exit; its data dir stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start etcd again on the same ports and data dir.
    pub fn start_again(&mut self) {
        assert!(
            self.spawn_and_wait(),
            "etcd did not restart; log: {}",
            read_log(self.dir.path())
        );
    }

    fn spawn_and_wait(&mut self) -> bool {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log file");
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg(MEMBER_NAME)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("{MEMBER_NAME}={peer}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent; it makes the kernel kill etcd when the test process dies, so a crashed
        // test never leaks an etcd.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(err) => {
                panic!("cannot run etcd (install Debian's etcd-server: scripts/setup): {err}")
            }
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if healthy(self.client_port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }
}

impl Drop for EtcdInstance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
}

//! A private containerd (Debian's `containerd` with `runc`) for tests and benchmarks: its
//! own root, state, config and socket under a temp dir, the CRI plugin off. When dropped,
//! every task it runs is killed and removed (through Debian's `ctr`, as a `Drop` cannot
//! await), containerd is stopped and its shims with it, so no container outlives a test.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ContainerdInstance {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl ContainerdInstance {
    /// Starts containerd and waits until its socket answers. Panics with its log when it does
    /// not come up: this is test scaffolding.
    pub fn start() -> Self {
        // Under /tmp, not a nested temp dir of the test's: unix socket paths must stay under
        // 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("moor-ctd-")
            .tempdir()
            .expect("temp dir for containerd");
        let root = dir.path();
        let config = format!(
            "version = 2\n\
             root = \"{root}/root\"\n\
             state = \"{root}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{root}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{root}/containerd.sock.ttrpc\"\n",
            root = root.display()
        );
        std::fs::write(root.join("config.toml"), config).expect("containerd config");
        let log = std::fs::File::create(root.join("containerd.log")).expect("containerd log");
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(root.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent; it makes the kernel kill containerd when the test process dies.
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
            Err(err) => panic!("cannot run containerd (scripts/setup installs it): {err}"),
        };
        let instance = ContainerdInstance {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new("ctr")
                .arg("--address")
                .arg(instance.socket())
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return instance;
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not come up; log:\n{}",
                    std::fs::read_to_string(instance.dir.path().join("containerd.log"))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ctr --address SOCKET --namespace NS ARGS...`, its stdout on success.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> Result<String, String> {
        ctr(&self.socket(), namespace, args)
    }

    /// Kills and removes every task and container in every namespace.
    fn remove_everything(&self) {
        let namespaces = self
            .ctr("default", &["namespaces", "ls", "-q"])
            .unwrap_or_default();
        for ns in namespaces.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let tasks = self.ctr(ns, &["tasks", "ls", "-q"]).unwrap_or_default();
            for task in tasks.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self.ctr(ns, &["tasks", "kill", "-a", "-s", "SIGKILL", task]);
                let _ = self.ctr(ns, &["tasks", "rm", "-f", task]);
            }
            let containers = self
                .ctr(ns, &["containers", "ls", "-q"])
                .unwrap_or_default();
            for c in containers.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self.ctr(ns, &["containers", "rm", c]);
            }
        }
    }
}

#[allow(dead_code)]
/// `ctr --address SOCKET --namespace NS ARGS...` against any containerd, its stdout on
/// success.
pub fn ctr(socket: &Path, namespace: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .arg("--namespace")
        .arg(namespace)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[allow(dead_code)]
/// The tasks `ctr tasks ls` lists in `namespace`: (container id, status).
pub fn tasks(socket: &Path, namespace: &str) -> Vec<(String, String)> {
    ctr(socket, namespace, &["tasks", "ls"])
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.to_string(), cols.get(2)?.to_string()))
        })
        .collect()
}

impl Drop for ContainerdInstance {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.remove_everything();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shims outlive containerd by design; ours name our socket on their command line.
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(format!("containerd-shim.*{}", self.dir.path().display()))
            .status();
        // Anything still mounted under the root (a snapshot a test left) would make the
        // temp dir's removal fail.
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}

//! A private containerd that `moor up` starts and supervises, as k3s does with its bundled
//! one: its own config, root, state, socket and log under one directory (`<data dir>/
//! containerd`), the CRI plugin off (moor's agent talks to containerd's own API). It is
//! restarted when it dies and stopped when `moor up` stops.
//!
//! Containers outlive containerd by design: their shims keep running while containerd
//! restarts or `moor up` is stopped, and the next containerd on the same root and state
//! finds them again, so the agent adopts them rather than starting duplicates.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::containerd::Containerd;

/// The longest path a unix socket may have (sun_path holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How long containerd may take to answer after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long containerd may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Restart back-off: doubled after each quick death, up to the cap, reset after a healthy
/// run of [`HEALTHY_RUN`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Why the private containerd could not be run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{path}: {source}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "containerd's socket path {path} is {len} bytes, longer than the {MAX_SOCKET_PATH} a unix socket allows: use a shorter --data-dir"
    )]
    SocketPath { path: PathBuf, len: usize },
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("containerd exited ({status}) before it answered on {socket}; its log ends:\n{log}")]
    Exited {
        status: ExitStatus,
        socket: PathBuf,
        log: String,
    },
    #[error("containerd did not answer on {socket} within {timeout:?}; its log ends:\n{log}")]
    NotReady {
        socket: PathBuf,
        timeout: Duration,
        log: String,
    },
}

/// A private containerd living in one directory.
#[derive(Clone, Debug)]
pub struct ContainerdDaemon {
    dir: PathBuf,
    binary: PathBuf,
}

impl ContainerdDaemon {
    /// A containerd keeping everything in `dir`, run from `containerd` on PATH.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ContainerdDaemon {
            dir: dir.into(),
            binary: PathBuf::from("containerd"),
        }
    }

    /// Run this binary instead of `containerd` from PATH.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }

    /// The socket its API answers on.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// Its log file (stdout and stderr, appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// Write the config, start containerd and wait until it answers. When a containerd
    /// already answers on the socket (one left by a `moor up` that could not stop it), it
    /// is used as it is and not supervised.
    pub async fn start(&self) -> Result<Running, DaemonError> {
        let socket = self.socket();
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(DaemonError::SocketPath { path: socket, len });
        }
        if let Some(version) = answers(&socket).await {
            tracing::warn!(socket = %socket.display(), %version, "a containerd already answers on this socket; using it unsupervised");
            return Ok(Running {
                child: None,
                version,
                started: Instant::now(),
            });
        }
        self.write_config()?;
        let mut child = self.spawn()?;
        let version = self.wait_ready(&mut child).await?;
        Ok(Running {
            child: Some(child),
            version,
            started: Instant::now(),
        })
    }

    fn write_config(&self) -> Result<(), DaemonError> {
        let files = |path: &Path| {
            let path = path.to_owned();
            move |source| DaemonError::Files { path, source }
        };
        for sub in ["root", "state"] {
            let dir = self.dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(files(&dir))?;
        }
        // Paths are quoted as TOML basic strings; a data dir with a quote or backslash in
        // its name is escaped rather than breaking the file.
        let quote = |path: PathBuf| serde_json::to_string(&path.display().to_string());
        let text = format!(
            "# Written by moor up at every start; edits are overwritten.\n\
             version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {socket}\n\
             [ttrpc]\n  address = {ttrpc}\n",
            root = quote(self.dir.join("root")).unwrap_or_default(),
            state = quote(self.dir.join("state")).unwrap_or_default(),
            socket = quote(self.socket()).unwrap_or_default(),
            ttrpc = quote(self.dir.join("containerd.sock.ttrpc")).unwrap_or_default(),
        );
        let path = self.config_path();
        std::fs::write(&path, text).map_err(files(&path))
    }

    fn spawn(&self) -> Result<tokio::process::Child, DaemonError> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| DaemonError::Files {
                path: log_path.clone(),
                source,
            })?;
        let err_log = log.try_clone().map_err(|source| DaemonError::Files {
            path: log_path,
            source,
        })?;
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            // Its own process group: a Ctrl-C on the terminal reaches moor up only, which
            // stops containerd last, after the agent.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: the closure only calls prctl(2), which is async-signal-safe and touches no
        // memory of the parent. PR_SET_PDEATHSIG makes the kernel kill containerd when moor
        // up dies without stopping it (SIGKILL), so a restart finds no stale daemon. The
        // signal follows the spawning thread: this runs on a runtime worker, which lives as
        // long as the runtime.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        command.spawn().map_err(|source| DaemonError::Spawn {
            binary: self.binary.clone(),
            source,
        })
    }

    async fn wait_ready(&self, child: &mut tokio::process::Child) -> Result<String, DaemonError> {
        let socket = self.socket();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(DaemonError::Exited {
                    status,
                    socket,
                    log: self.log_tail(),
                });
            }
            if let Some(version) = answers(&socket).await {
                return Ok(version);
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(DaemonError::NotReady {
                    socket,
                    timeout: READY_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last lines of its log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Keep `running` alive until `shutdown`: restart containerd whenever it exits (with a
    /// growing back-off when it keeps dying), then stop it gracefully. A containerd found
    /// already running is left alone.
    pub async fn supervise(self, mut running: Running, shutdown: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let Some(child) = running.child.as_mut() else {
                return;
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    stop(child).await;
                    return;
                }
                status = child.wait() => {
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    if running.started.elapsed() > HEALTHY_RUN {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::warn!(%status, restart_in = ?backoff, log = %self.log_path().display(), "containerd exited; restarting it");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match self.start().await {
                Ok(restarted) => {
                    tracing::info!(pid = restarted.pid(), "containerd restarted");
                    running = restarted;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "restarting containerd failed; trying again");
                    running.started = Instant::now();
                }
            }
        }
    }
}

/// A started containerd.
#[derive(Debug)]
pub struct Running {
    /// None when an already running containerd was found on the socket.
    child: Option<tokio::process::Child>,
    version: String,
    started: Instant,
}

impl Running {
    /// The process id, when this process started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// containerd's version, as it reported it.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// containerd's version if something answers on `socket`.
async fn answers(socket: &Path) -> Option<String> {
    if !socket.exists() {
        return None;
    }
    let containerd = Containerd::connect(socket).await.ok()?;
    tokio::time::timeout(Duration::from_secs(2), containerd.version())
        .await
        .ok()?
        .ok()
}

/// SIGTERM, then SIGKILL if it has not stopped within [`STOP_TIMEOUT`].
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!("containerd did not stop within {STOP_TIMEOUT:?}; killing it");
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_path_too_long_is_refused_before_anything_runs() {
        let dir = PathBuf::from("/tmp").join("d".repeat(100));
        let err = ContainerdDaemon::new(&dir).start().await.unwrap_err();
        assert!(matches!(err, DaemonError::SocketPath { .. }), "{err}");
        assert!(err.to_string().contains("--data-dir"), "{err}");
        assert!(!dir.exists(), "nothing is created");
    }

    #[tokio::test]
    async fn a_missing_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = ContainerdDaemon::new(dir.path())
            .with_binary("/nonexistent/containerd")
            .start()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/containerd"), "{err}");
    }

    #[tokio::test]
    async fn a_daemon_that_exits_at_once_reports_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-containerd");
        std::fs::write(&fake, "#!/bin/sh\necho 'bad config line 3' >&2\nexit 3\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ContainerdDaemon::new(dir.path())
            .with_binary(&fake)
            .start()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, DaemonError::Exited { .. }), "{text}");
        assert!(text.contains("bad config line 3"), "{text}");
        let config = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
        assert!(config.contains("io.containerd.grpc.v1.cri"), "{config}");
        assert!(
            config.contains(&format!(
                "{:?}",
                dir.path().join("containerd.sock").display().to_string()
            )),
            "{config}"
        );
    }
}

//! Running a command inside a running container (what exec probes need, and what
//! `kubectl exec` without a terminal would): containerd's Tasks.Exec with a process spec
//! copied from the container's own OCI spec (environment, working dir, user, capabilities)
//! with only the arguments replaced, as containerd's CRI does; Start, Wait under a
//! timeout, and on timeout a SIGKILL of the exec'd process. The exec process is always
//! deleted from the task afterwards, so a probe every few seconds leaves nothing behind in
//! the shim.
//!
//! Output comes back through two FIFOs in a private temp dir, one per stream, which the
//! runc shim opens and copies into while we read them; kubelet's output is stdout followed
//! by stderr (as its CRI exec gives them). Not `file://` IO, which the container logs use:
//! for it the shim shares one file between both streams, and a fast process with nothing
//! on stdout can have that file closed before its stderr is copied (the shim's
//! `copyPipes` counts the sharers only after the first copy is already running), which
//! loses exactly the error message a failing probe is about. Owns nothing of the
//! container itself: it never touches the container's labels, its init process or its log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest, StartRequest,
    WaitRequest,
};
use containerd_client::tonic::Code;
use nix::sys::stat::Mode;
use tokio::net::unix::pipe;

use super::containerd::{Containerd, ContainerdError};

/// kubelet keeps at most this much of a probe's output (`maxReadLength` of its exec
/// prober): enough for a message, bounded however chatty the command.
pub const MAX_OUTPUT: usize = 10 * 1024;

/// containerd's type URL for an OCI process spec in an Exec request.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// How long each clean-up step may take: waiting for a killed process, deleting it (the
/// shim waits up to 2 s for its copies first). A child the command left behind holding
/// its output open keeps those going; the caller is not kept waiting for it.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a command could not be run, or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The command ran longer than its timeout and was killed.
    #[error("command {command:?} timed out after {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("no command to run")]
    EmptyCommand,
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("container {id} has no OCI spec with a process")]
    NoProcess { id: String },
    #[error("reading the OCI spec of container {id}: {source}")]
    Spec {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("encoding the process spec: {source}")]
    EncodeProcess {
        #[source]
        source: serde_json::Error,
    },
    #[error("the exec output pipe {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// containerd refused or failed a step (the task is not running, the executable does
    /// not exist in the container, ...).
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
}

impl ExecError {
    /// The command ran out of time (a probe failure), as opposed to never running.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ExecError::Timeout { .. })
    }
}

/// What a finished command left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit status as the shim reports it: 128 + signal for a process killed by one.
    pub exit_code: i32,
    /// stdout, then stderr, at most [`MAX_OUTPUT`] bytes together.
    pub output: Vec<u8>,
}

/// Runs `argv` in the running container `container_id` and waits at most `timeout` for it
/// to exit and its output to end (as CRI's ExecSync, a background child that keeps the
/// output open counts as still running). The exec process is deleted afterwards in every
/// case.
pub async fn exec(
    containerd: &Containerd,
    container_id: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutput, ExecError> {
    if argv.is_empty() {
        return Err(ExecError::EmptyCommand);
    }
    let spec = process_spec(containerd, container_id, argv).await?;
    // A directory of our own: the FIFOs go away with it, whatever happens below.
    let dir = tempfile::Builder::new()
        .prefix("moor-exec-")
        .tempdir()
        .map_err(|source| ExecError::Output {
            path: std::env::temp_dir(),
            source,
        })?;
    let stdout = Fifo::create(dir.path().join("stdout"))?;
    let stderr = Fifo::create(dir.path().join("stderr"))?;
    let process = ExecProcess {
        containerd,
        container_id,
        exec_id: format!("exec-{}", uuid::Uuid::new_v4().simple()),
    };

    let ran = tokio::time::timeout(timeout, async {
        process.start(spec, &stdout.path, &stderr.path).await?;
        // From here the shim holds the FIFOs' write ends; reading them concurrently with
        // the wait keeps a chatty command from filling a pipe and stalling.
        let (code, out, err) = tokio::join!(process.wait(), stdout.drain(), stderr.drain());
        Ok::<_, ExecError>((code?, out?, err?))
    })
    .await;
    let (exit_code, out, err) = match ran {
        Ok(Ok(done)) => {
            process.delete().await;
            done
        }
        Ok(Err(e)) => {
            process.delete().await;
            return Err(e);
        }
        Err(_elapsed) => {
            process.kill_and_delete().await;
            return Err(ExecError::Timeout {
                command: argv.join(" "),
                timeout,
            });
        }
    };
    let mut output = out;
    output.extend_from_slice(&err);
    output.truncate(MAX_OUTPUT);
    Ok(ExecOutput { exit_code, output })
}

/// One output stream: a FIFO the shim writes and we read.
struct Fifo {
    path: PathBuf,
    receiver: pipe::Receiver,
}

impl Fifo {
    /// Makes the FIFO and opens its read end (non-blocking: there is no writer yet). It
    /// must be read only once the shim has opened the write end — when Start returned —
    /// because a FIFO without a writer reads as at its end.
    fn create(path: PathBuf) -> Result<Self, ExecError> {
        let failed = |source: std::io::Error| ExecError::Output {
            path: path.clone(),
            source,
        };
        nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(|errno| failed(errno.into()))?;
        let receiver = pipe::OpenOptions::new()
            .open_receiver(&path)
            .map_err(failed)?;
        Ok(Fifo { path, receiver })
    }

    /// Everything the stream carries until the shim closes it, keeping the first
    /// [`MAX_OUTPUT`] bytes.
    async fn drain(&self) -> Result<Vec<u8>, ExecError> {
        let mut kept = Vec::new();
        let mut chunk = vec![0u8; 8192];
        loop {
            self.receiver
                .readable()
                .await
                .map_err(|source| self.error(source))?;
            match self.receiver.try_read(&mut chunk) {
                Ok(0) => return Ok(kept),
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(source) => return Err(self.error(source)),
            }
        }
    }

    fn error(&self, source: std::io::Error) -> ExecError {
        ExecError::Output {
            path: self.path.clone(),
            source,
        }
    }
}

/// The container's process spec with `argv` in place of its arguments, as JSON.
async fn process_spec(
    containerd: &Containerd,
    container_id: &str,
    argv: &[String],
) -> Result<Vec<u8>, ExecError> {
    let container = match containerd
        .containers()
        .get(containerd.request(GetContainerRequest {
            id: container_id.to_owned(),
        }))
        .await
    {
        Ok(reply) => reply.into_inner().container,
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => {
            return Err(
                ContainerdError::call(format!("reading container {container_id}"), s).into(),
            );
        }
    }
    .ok_or_else(|| ExecError::ContainerNotFound(container_id.to_owned()))?;
    let no_process = || ExecError::NoProcess {
        id: container_id.to_owned(),
    };
    let spec = container.spec.ok_or_else(no_process)?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&spec.value).map_err(|source| ExecError::Spec {
            id: container_id.to_owned(),
            source,
        })?;
    let mut process = spec.process().clone().ok_or_else(no_process)?;
    process.set_args(Some(argv.to_vec()));
    // No terminal: output is read as plain bytes, and a terminal would merge the streams
    // with CR/LF translation.
    process.set_terminal(Some(false));
    serde_json::to_vec(&process).map_err(|source| ExecError::EncodeProcess { source })
}

/// One exec process of a container's task.
struct ExecProcess<'a> {
    containerd: &'a Containerd,
    container_id: &'a str,
    exec_id: String,
}

impl ExecProcess<'_> {
    /// Creates and starts the process, its streams going to the FIFOs at these paths.
    async fn start(&self, spec: Vec<u8>, stdout: &Path, stderr: &Path) -> Result<(), ExecError> {
        let c = self.containerd;
        c.tasks()
            .exec(c.request(ExecProcessRequest {
                container_id: self.container_id.to_owned(),
                stdin: String::new(),
                // Plain paths are FIFOs to the shim (its default scheme).
                stdout: stdout.display().to_string(),
                stderr: stderr.display().to_string(),
                terminal: false,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_owned(),
                    value: spec,
                }),
                exec_id: self.exec_id.clone(),
            }))
            .await
            .map_err(|s| self.call_error("creating", s))?;
        c.tasks()
            .start(c.request(StartRequest {
                container_id: self.container_id.to_owned(),
                exec_id: self.exec_id.clone(),
            }))
            .await
            .map_err(|s| self.call_error("starting", s))?;
        Ok(())
    }

    async fn wait(&self) -> Result<i32, ExecError> {
        let c = self.containerd;
        let reply = c
            .tasks()
            .wait(c.request(WaitRequest {
                container_id: self.container_id.to_owned(),
                exec_id: self.exec_id.clone(),
            }))
            .await
            .map_err(|s| self.call_error("waiting for", s))?
            .into_inner();
        // The shim's statuses fit in a byte (128 + signal at most); anything else would be
        // a containerd oddity, kept visible rather than wrapped.
        Ok(i32::try_from(reply.exit_status).unwrap_or(i32::MAX))
    }

    /// After a timeout: SIGKILL, wait for the exit, delete. Bounded, logged, never fails:
    /// the caller already has its answer (the timeout).
    async fn kill_and_delete(&self) {
        let c = self.containerd;
        let killed = c
            .tasks()
            .kill(c.request(KillRequest {
                container_id: self.container_id.to_owned(),
                exec_id: self.exec_id.clone(),
                signal: nix::sys::signal::Signal::SIGKILL as u32,
                all: false,
            }))
            .await;
        match killed {
            // NotFound: it was never created (the timeout hit during Exec) or is gone.
            Err(s) if s.code() == Code::NotFound => return,
            Err(s) => {
                tracing::warn!(container = %self.container_id, exec = %self.exec_id, error = %s, "killing a timed-out exec");
            }
            Ok(_) => {
                if tokio::time::timeout(CLEANUP_TIMEOUT, self.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(container = %self.container_id, exec = %self.exec_id, "a killed exec did not exit");
                }
            }
        }
        self.delete().await;
    }

    /// Removes the process from the task (and with it the shim's record of it).
    async fn delete(&self) {
        let c = self.containerd;
        let deleted = tokio::time::timeout(
            CLEANUP_TIMEOUT,
            c.tasks().delete_process(c.request(DeleteProcessRequest {
                container_id: self.container_id.to_owned(),
                exec_id: self.exec_id.clone(),
            })),
        )
        .await;
        match deleted {
            Ok(Ok(_)) => {}
            Ok(Err(s)) if s.code() == Code::NotFound => {}
            Ok(Err(s)) => {
                tracing::warn!(container = %self.container_id, exec = %self.exec_id, error = %s, "deleting an exec process");
            }
            Err(_) => {
                tracing::warn!(container = %self.container_id, exec = %self.exec_id, "deleting an exec process timed out (a child may hold its output open)");
            }
        }
    }

    fn call_error(&self, what: &str, status: containerd_client::tonic::Status) -> ExecError {
        ContainerdError::call(
            format!(
                "{what} exec {} in container {}",
                self.exec_id, self.container_id
            ),
            status,
        )
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fifo_is_drained_to_its_end_keeping_the_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = Fifo::create(dir.path().join("out")).unwrap();
        // A writer that sends more than is kept, in pieces, then closes: everything is
        // read (the writer never blocks on a full pipe) and the head is kept.
        let mut tx = pipe::OpenOptions::new().open_sender(&fifo.path).unwrap();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for i in 0..100u8 {
                tx.write_all(&[b'a' + i % 26; 1000]).await.unwrap();
            }
        });
        let kept = fifo.drain().await.unwrap();
        writer.await.unwrap();
        assert_eq!(kept.len(), MAX_OUTPUT);
        assert!(kept[..1000].iter().all(|b| *b == b'a'));
        assert!(kept[1000..2000].iter().all(|b| *b == b'b'));
        assert!(
            Fifo::create(fifo.path.clone()).is_err(),
            "an existing path is an error"
        );
    }

    #[test]
    fn timeouts_are_told_apart() {
        let timeout = ExecError::Timeout {
            command: "sleep 10".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(timeout.is_timeout());
        assert_eq!(
            timeout.to_string(),
            "command \"sleep 10\" timed out after 1s"
        );
        assert!(!ExecError::EmptyCommand.is_timeout());
    }
}

//! Containers and tasks in containerd: create a container from an image snapshot and an
//! OCI spec and start its task with its output going to a log file; stop, reap and remove
//! them; list what exists; and the stream of task exits and OOM kills. Every container is
//! labelled with its pod's UID, its name, kind and restart attempt, so an agent that
//! restarts adopts what it had instead of starting duplicates.
//!
//! A task that exits is reaped at once: its exit code, reason and times move into the
//! container's labels and the task (with its shim) is deleted, so a dead container costs no
//! process while kubectl can still show its last state and previous logs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use containerd_client::services::v1::container::Runtime as RuntimeInfo;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    Container as CtrContainer, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetRequest, KillRequest, ListContainersRequest, StartRequest,
    SubscribeRequest, UpdateContainerRequest,
};
use containerd_client::types::v1::Status as TaskStatus;
use futures::{Stream, StreamExt};
use jiff::Timestamp;

use super::containerd::{Containerd, ContainerdError, Lease, SNAPSHOTTER};

/// Label keys on containerd containers.
pub mod labels {
    pub const POD_UID: &str = "io.moor.pod.uid";
    pub const POD_NAME: &str = "io.moor.pod.name";
    pub const POD_NAMESPACE: &str = "io.moor.pod.namespace";
    pub const CONTAINER_NAME: &str = "io.moor.container.name";
    /// `init` or `app`.
    pub const KIND: &str = "io.moor.container.kind";
    /// How many times this container of the pod was started before (kubectl's RESTARTS).
    pub const ATTEMPT: &str = "io.moor.container.attempt";
    /// A hash of the container's spec: a changed spec means a new container.
    pub const HASH: &str = "io.moor.container.hash";
    pub const IMAGE_ID: &str = "io.moor.container.image-id";
    pub const LOG_PATH: &str = "io.moor.container.log";
    pub const STARTED_AT: &str = "io.moor.started-at";
    pub const FINISHED_AT: &str = "io.moor.finished-at";
    pub const EXIT_CODE: &str = "io.moor.exit-code";
    pub const REASON: &str = "io.moor.reason";
    pub const MESSAGE: &str = "io.moor.message";
    pub const OOM: &str = "io.moor.oom";
}

/// The OCI spec's type URL containerd expects.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const RUNC: &str = "io.containerd.runc.v2";

/// Failures of runtime operations.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error("encoding the OCI spec of {id}: {source}")]
    Spec {
        id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("creating the log directory {path}: {source}")]
    LogDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a container is doing, as containerd and our labels tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Created but its task not (yet) running — a start that failed half-way.
    Created,
    Running {
        pid: u32,
    },
    Exited {
        code: i32,
        reason: String,
        message: Option<String>,
        finished_at: Option<Timestamp>,
    },
}

/// One container of a pod, as observed.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub name: String,
    pub init: bool,
    pub attempt: u32,
    pub hash: String,
    pub image: String,
    pub image_id: String,
    pub log_path: PathBuf,
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub state: State,
}

/// What to run.
pub struct RunRequest<'a> {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub image: &'a str,
    pub chain_id: &'a str,
    pub spec: &'a oci_spec::runtime::Spec,
    pub log_path: &'a Path,
    /// The `moor` binary, run by the shim as the container's logging process.
    pub log_driver: &'a Path,
}

/// Something happened to a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEvent {
    Exit { container_id: String },
    Oom { container_id: String },
}

/// containerd's containers and tasks in the agent's namespace.
#[derive(Clone)]
pub struct Runtime {
    containerd: Containerd,
}

impl Runtime {
    pub fn new(containerd: Containerd) -> Self {
        Runtime { containerd }
    }

    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// Every container the agent made, with its state. Tasks found stopped are reaped
    /// first (an exit the agent missed while it was down, or raced with).
    pub async fn list(&self) -> Result<Vec<Record>, RuntimeError> {
        self.list_filtered(format!("labels.\"{}\"", labels::POD_UID))
            .await
    }

    /// The containers of one pod, as [`Runtime::list`].
    pub async fn list_pod(&self, pod_uid: &str) -> Result<Vec<Record>, RuntimeError> {
        self.list_filtered(format!("labels.\"{}\"=={pod_uid}", labels::POD_UID))
            .await
    }

    async fn list_filtered(&self, filter: String) -> Result<Vec<Record>, RuntimeError> {
        let c = &self.containerd;
        let containers = c
            .containers()
            .list(c.request(ListContainersRequest {
                filters: vec![filter],
            }))
            .await
            .map_err(|s| ContainerdError::call("listing containers", s))?
            .into_inner()
            .containers;
        let mut out = Vec::with_capacity(containers.len());
        for container in containers {
            let mut container = container;
            if container.labels.contains_key(labels::EXIT_CODE) {
                out.push(record(&container, None));
                continue;
            }
            let task = match c
                .tasks()
                .get(c.request(GetRequest {
                    container_id: container.id.clone(),
                    ..Default::default()
                }))
                .await
            {
                Ok(reply) => reply.into_inner().process,
                Err(s) if s.code() == containerd_client::tonic::Code::NotFound => {
                    // Reaped between our two reads? The reaper labels before it deletes, so
                    // a fresh read tells an exit from a container never started.
                    if let Some(fresh) = self.get(&container.id).await? {
                        out.push(record(&fresh, None));
                    }
                    continue;
                }
                Err(s) => {
                    return Err(
                        ContainerdError::call(format!("reading task {}", container.id), s).into(),
                    );
                }
            };
            let stopped = task
                .as_ref()
                .is_some_and(|t| t.status == TaskStatus::Stopped as i32);
            if stopped {
                match self.reap(&container.id).await {
                    Ok(Some(updated)) => container = updated,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(container = %container.id, error = %e, "reaping an exited task")
                    }
                }
            }
            let running = task
                .filter(|t| !stopped && t.status != TaskStatus::Created as i32)
                .map(|t| t.pid);
            out.push(record(&container, running));
        }
        Ok(out)
    }

    /// Creates the container (snapshot from the image's chain ID, spec, labels) and starts
    /// its task. On failure, nothing is left but a container in state Created, which the
    /// next sync removes or reports.
    pub async fn run(&self, req: RunRequest<'_>) -> Result<Record, RuntimeError> {
        let c = &self.containerd;
        let spec = serde_json::to_vec(req.spec).map_err(|source| RuntimeError::Spec {
            id: req.id.clone(),
            source,
        })?;
        if let Some(dir) = req.log_path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| RuntimeError::LogDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        // The new snapshot belongs to nothing until the container is created; a lease keeps
        // containerd's garbage collector off it in between.
        let lease = Lease::create(c).await?;
        let mounts = match c
            .snapshots()
            .prepare(lease.request(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: req.id.clone(),
                parent: req.chain_id.to_owned(),
                labels: HashMap::new(),
            }))
            .await
        {
            Ok(reply) => reply.into_inner().mounts,
            Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => {
                c.snapshots()
                    .mounts(c.request(MountsRequest {
                        snapshotter: SNAPSHOTTER.to_owned(),
                        key: req.id.clone(),
                    }))
                    .await
                    .map_err(|s| {
                        ContainerdError::call(format!("mounts of snapshot {}", req.id), s)
                    })?
                    .into_inner()
                    .mounts
            }
            Err(s) => {
                lease.release().await;
                return Err(
                    ContainerdError::call(format!("preparing snapshot {}", req.id), s).into(),
                );
            }
        };
        let mut labels: HashMap<String, String> = req.labels.into_iter().collect();
        labels.insert(
            labels::LOG_PATH.to_owned(),
            req.log_path.display().to_string(),
        );
        let container = CtrContainer {
            id: req.id.clone(),
            labels: labels.clone(),
            image: req.image.to_owned(),
            runtime: Some(RuntimeInfo {
                name: RUNC.to_owned(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_owned(),
                value: spec,
            }),
            snapshotter: SNAPSHOTTER.to_owned(),
            snapshot_key: req.id.clone(),
            ..Default::default()
        };
        let created = c
            .containers()
            .create(lease.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await;
        lease.release().await;
        if let Err(s) = created
            && s.code() != containerd_client::tonic::Code::AlreadyExists
        {
            self.remove_snapshot(&req.id).await;
            return Err(ContainerdError::call(format!("creating container {}", req.id), s).into());
        }
        // The shim's own logging process writes both streams to the file (see
        // `logs::shim_uri`): output is kept while the agent is down, nothing passes through us.
        let log_uri = super::logs::shim_uri(req.log_driver, req.log_path);
        let task = c
            .tasks()
            .create(c.request(CreateTaskRequest {
                container_id: req.id.clone(),
                rootfs: mounts,
                stdout: log_uri.clone(),
                stderr: log_uri,
                ..Default::default()
            }))
            .await
            .map_err(|s| ContainerdError::call(format!("creating task {}", req.id), s))?
            .into_inner();
        c.tasks()
            .start(c.request(StartRequest {
                container_id: req.id.clone(),
                ..Default::default()
            }))
            .await
            .map_err(|s| ContainerdError::call(format!("starting task {}", req.id), s))?;
        let started = Timestamp::now();
        let updated = self
            .set_labels(&req.id, [(labels::STARTED_AT, started.to_string())])
            .await?;
        Ok(record(&updated, Some(task.pid)))
    }

    /// Signals a container's task (its init process; runc forwards to the container).
    pub async fn kill(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        let c = &self.containerd;
        match c
            .tasks()
            .kill(c.request(KillRequest {
                container_id: id.to_owned(),
                signal,
                all: false,
                ..Default::default()
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => Ok(()),
            Err(s) => Err(ContainerdError::call(format!("signalling {id}"), s).into()),
        }
    }

    /// After a task exit: records the exit in the container's labels, then deletes the
    /// task (and with it the shim). In that order, so whoever finds the task gone also
    /// finds the exit recorded. Returns the updated container, or None when it is gone.
    pub async fn reap(&self, id: &str) -> Result<Option<CtrContainer>, RuntimeError> {
        let c = &self.containerd;
        let Some(container) = self.get(id).await? else {
            return Ok(None);
        };
        let task = match c
            .tasks()
            .get(c.request(GetRequest {
                container_id: id.to_owned(),
                ..Default::default()
            }))
            .await
        {
            Ok(reply) => reply.into_inner().process,
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => None,
            Err(s) => return Err(ContainerdError::call(format!("reading task {id}"), s).into()),
        };
        let Some(task) = task.filter(|t| t.status == TaskStatus::Stopped as i32) else {
            // Still running (an exit event of an exec, or a race), or already reaped.
            return Ok(Some(container));
        };
        let container = if container.labels.contains_key(labels::EXIT_CODE) {
            container
        } else {
            let code = task.exit_status as i32;
            // The OOM event may not have been handled yet; the cgroup (still there until
            // the task is deleted) tells for sure.
            let oom = container.labels.contains_key(labels::OOM)
                || container
                    .labels
                    .get(labels::POD_UID)
                    .is_some_and(|uid| oom_killed(&cgroups_path(uid, id)));
            let reason = match (oom, code) {
                (true, _) => "OOMKilled",
                (false, 0) => "Completed",
                _ => "Error",
            };
            let finished = task
                .exited_at
                .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
                .unwrap_or_else(Timestamp::now);
            self.set_labels(
                id,
                [
                    (labels::EXIT_CODE, code.to_string()),
                    (labels::REASON, reason.to_owned()),
                    (labels::FINISHED_AT, finished.to_string()),
                ],
            )
            .await?
        };
        match c
            .tasks()
            .delete(c.request(DeleteTaskRequest {
                container_id: id.to_owned(),
            }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => {}
            Err(s) => return Err(ContainerdError::call(format!("deleting task {id}"), s).into()),
        }
        Ok(Some(container))
    }

    /// Marks a container whose start failed as exited with `reason`/`message` (kubelet
    /// shows these as terminated with exit code 128, reason StartError).
    pub async fn mark_failed(
        &self,
        id: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), RuntimeError> {
        if self.get(id).await?.is_none() {
            return Ok(());
        }
        self.set_labels(
            id,
            [
                (labels::EXIT_CODE, "128".to_owned()),
                (labels::REASON, reason.to_owned()),
                (labels::MESSAGE, truncate(message, 1024)),
                (labels::FINISHED_AT, Timestamp::now().to_string()),
            ],
        )
        .await?;
        // A task that was created but not started would keep its shim.
        let c = &self.containerd;
        let _ = c
            .tasks()
            .delete(c.request(DeleteTaskRequest {
                container_id: id.to_owned(),
            }))
            .await;
        Ok(())
    }

    /// Remembers that the kernel OOM-killed in this container, for the exit reason.
    pub async fn mark_oom(&self, id: &str) -> Result<(), RuntimeError> {
        if self.get(id).await?.is_none() {
            return Ok(());
        }
        self.set_labels(id, [(labels::OOM, "true".to_owned())])
            .await?;
        Ok(())
    }

    /// Removes a container for good: its task (killed if still running), the container
    /// and its snapshot. Missing pieces are fine.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let c = &self.containerd;
        let deleted = c
            .tasks()
            .delete(c.request(DeleteTaskRequest {
                container_id: id.to_owned(),
            }))
            .await;
        if let Err(s) = deleted {
            match s.code() {
                containerd_client::tonic::Code::NotFound => {}
                _ => {
                    self.kill(id, libc_sigkill()).await?;
                    self.wait_gone(id).await?;
                }
            }
        }
        match c
            .containers()
            .delete(c.request(DeleteContainerRequest { id: id.to_owned() }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => {}
            Err(s) => {
                return Err(ContainerdError::call(format!("deleting container {id}"), s).into());
            }
        }
        self.remove_snapshot(id).await;
        Ok(())
    }

    /// After SIGKILL: deletes the task once it has stopped (briefly polled).
    async fn wait_gone(&self, id: &str) -> Result<(), RuntimeError> {
        let c = &self.containerd;
        for _ in 0..100 {
            match c
                .tasks()
                .delete(c.request(DeleteTaskRequest {
                    container_id: id.to_owned(),
                }))
                .await
            {
                Ok(_) => return Ok(()),
                Err(s) if s.code() == containerd_client::tonic::Code::NotFound => return Ok(()),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        Err(ContainerdError::call(
            format!("deleting task {id}"),
            containerd_client::tonic::Status::deadline_exceeded(
                "the task did not stop after SIGKILL",
            ),
        )
        .into())
    }

    async fn remove_snapshot(&self, key: &str) {
        let c = &self.containerd;
        let _ = c
            .snapshots()
            .remove(c.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_owned(),
                key: key.to_owned(),
            }))
            .await;
    }

    async fn get(&self, id: &str) -> Result<Option<CtrContainer>, RuntimeError> {
        let c = &self.containerd;
        match c
            .containers()
            .get(
                c.request(containerd_client::services::v1::GetContainerRequest {
                    id: id.to_owned(),
                }),
            )
            .await
        {
            Ok(reply) => Ok(reply.into_inner().container),
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => Ok(None),
            Err(s) => Err(ContainerdError::call(format!("reading container {id}"), s).into()),
        }
    }

    /// Sets these labels and leaves the others: concurrent writers (the start recording
    /// its time, the reaper recording an exit) never undo each other.
    async fn set_labels<const N: usize>(
        &self,
        id: &str,
        set: [(&str, String); N],
    ) -> Result<CtrContainer, RuntimeError> {
        let c = &self.containerd;
        let paths = set.iter().map(|(k, _)| format!("labels.{k}")).collect();
        let labels = set.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let reply = c
            .containers()
            .update(c.request(UpdateContainerRequest {
                container: Some(CtrContainer {
                    id: id.to_owned(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .map_err(|s| ContainerdError::call(format!("labelling container {id}"), s))?;
        reply.into_inner().container.ok_or_else(|| {
            ContainerdError::call(
                format!("labelling container {id}"),
                containerd_client::tonic::Status::internal("no container in the reply"),
            )
            .into()
        })
    }

    /// Task exits and OOM kills in the agent's namespace, as they happen.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<TaskEvent, ContainerdError>> + use<>, ContainerdError>
    {
        let c = &self.containerd;
        let filters = vec![
            format!("namespace=={},topic==\"/tasks/exit\"", c.namespace()),
            format!("namespace=={},topic==\"/tasks/oom\"", c.namespace()),
        ];
        let stream = c
            .events()
            .subscribe(SubscribeRequest { filters })
            .await
            .map_err(|s| ContainerdError::call("subscribing to events", s))?
            .into_inner();
        Ok(stream.filter_map(|item| async move {
            match item {
                Err(s) => Some(Err(ContainerdError::call("event stream", s))),
                Ok(envelope) => {
                    let any = envelope.event?;
                    if envelope.topic == "/tasks/exit" {
                        let exit: containerd_client::events::TaskExit =
                            prost::Message::decode(any.value.as_slice()).ok()?;
                        // Exits of exec'd processes carry their own id; only the init
                        // process's exit (id == container id) ends the container.
                        (exit.id == exit.container_id).then_some(Ok(TaskEvent::Exit {
                            container_id: exit.container_id,
                        }))
                    } else {
                        let oom: containerd_client::events::TaskOom =
                            prost::Message::decode(any.value.as_slice()).ok()?;
                        Some(Ok(TaskEvent::Oom {
                            container_id: oom.container_id,
                        }))
                    }
                }
            }
        }))
    }
}

/// The cgroup of a pod's container, relative to each controller's root.
pub fn cgroups_path(pod_uid: &str, container_id: &str) -> String {
    format!("/moor/pod{pod_uid}/{container_id}")
}

/// Whether the kernel's OOM killer struck in this cgroup (cgroup v1 `memory.oom_control`,
/// or v2 `memory.events`).
fn oom_killed(cgroups_path: &str) -> bool {
    let relative = cgroups_path.trim_start_matches('/');
    let candidates = [
        (
            format!("/sys/fs/cgroup/memory/{relative}/memory.oom_control"),
            "oom_kill ",
        ),
        (
            format!("/sys/fs/cgroup/{relative}/memory.events"),
            "oom_kill ",
        ),
    ];
    candidates.iter().any(|(path, key)| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|line| {
                line.strip_prefix(key)
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

fn libc_sigkill() -> u32 {
    nix::sys::signal::Signal::SIGKILL as u32
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn record(container: &CtrContainer, running_pid: Option<u32>) -> Record {
    let l = &container.labels;
    let get = |k: &str| l.get(k).cloned().unwrap_or_default();
    let time = |k: &str| l.get(k).and_then(|t| t.parse::<Timestamp>().ok());
    let state = if let Some(code) = l.get(labels::EXIT_CODE).and_then(|c| c.parse().ok()) {
        State::Exited {
            code,
            reason: get(labels::REASON),
            message: l.get(labels::MESSAGE).cloned(),
            finished_at: time(labels::FINISHED_AT),
        }
    } else if let Some(pid) = running_pid {
        State::Running { pid }
    } else {
        State::Created
    };
    Record {
        id: container.id.clone(),
        pod_uid: get(labels::POD_UID),
        pod_name: get(labels::POD_NAME),
        pod_namespace: get(labels::POD_NAMESPACE),
        name: get(labels::CONTAINER_NAME),
        init: l.get(labels::KIND).is_some_and(|k| k == "init"),
        attempt: l
            .get(labels::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        hash: get(labels::HASH),
        image: container.image.clone(),
        image_id: get(labels::IMAGE_ID),
        log_path: PathBuf::from(get(labels::LOG_PATH)),
        created_at: container
            .created_at
            .as_ref()
            .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok()),
        started_at: time(labels::STARTED_AT),
        state,
    }
}

/// The containerd ID of a pod's container: the pod UID (so events map to their pod without
/// a lookup), the name and the attempt; a long name is replaced by its hash to stay within
/// containerd's 76 characters.
pub fn container_id(pod_uid: &str, name: &str, attempt: u32) -> String {
    let uid: String = pod_uid.chars().filter(|c| *c != '-').collect();
    let id = format!("{uid}-{name}-{attempt}");
    if id.len() <= 76 {
        return id;
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    format!("{uid}-{}-{attempt}", &digest[..24])
}

/// The pod UID (dashes removed) a container ID starts with.
pub fn uid_prefix(container_id: &str) -> &str {
    container_id.split('-').next().unwrap_or("")
}

/// Pod UID without dashes, as container IDs carry it.
pub fn compact_uid(uid: &str) -> String {
    uid.chars().filter(|c| *c != '-').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_bounded_and_carry_the_uid() {
        let uid = "0b9e2f9c-4a1e-4f0e-9a55-0c3d3f1d2b7a";
        let id = container_id(uid, "web", 3);
        assert_eq!(id, "0b9e2f9c4a1e4f0e9a550c3d3f1d2b7a-web-3");
        assert_eq!(uid_prefix(&id), compact_uid(uid));
        let long = "x".repeat(63);
        let id = container_id(uid, &long, 12);
        assert!(id.len() <= 76, "{id}");
        assert_eq!(uid_prefix(&id), compact_uid(uid));
        assert_ne!(
            container_id(uid, &long, 12),
            container_id(uid, &"y".repeat(63), 12)
        );
    }

    #[test]
    fn records_read_exit_labels() {
        let mut c = CtrContainer {
            id: "u-c-0".into(),
            ..Default::default()
        };
        c.labels.insert(labels::CONTAINER_NAME.into(), "c".into());
        c.labels.insert(labels::ATTEMPT.into(), "2".into());
        c.labels.insert(labels::EXIT_CODE.into(), "137".into());
        c.labels.insert(labels::REASON.into(), "OOMKilled".into());
        let r = record(&c, Some(5));
        assert_eq!(r.attempt, 2);
        assert!(
            matches!(r.state, State::Exited { code: 137, ref reason, .. } if reason == "OOMKilled")
        );
        c.labels.remove(labels::EXIT_CODE);
        assert_eq!(record(&c, Some(5)).state, State::Running { pid: 5 });
        assert_eq!(record(&c, None).state, State::Created);
    }
}

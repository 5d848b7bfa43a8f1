//! The per-pod record under `data_dir/pods/<uid>.json`: which networks were attached with
//! which configuration, the pod's port mappings, and each network's ADD result once it is
//! known. DEL needs all of it (prevResult, portmap's mappings, the configuration ADD ran
//! with), and setup answers from it after an agent restart.
//!
//! The record is written before the first ADD and removed only after the last DEL, so a
//! crash at any point leaves either nothing to undo or a record saying what to undo.
//! Writes are atomic (temporary file, fsync, rename).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::cni::NetworkList;
use super::{NetworkError, PortMapping};

/// One network attached to the pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Attachment {
    pub ifname: String,
    pub network: NetworkList,
    /// The network's ADD result; `None` until ADD finished.
    #[serde(default)]
    pub result: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct PodRecord {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// In ADD order; DEL goes backwards.
    pub attachments: Vec<Attachment>,
}

impl PodRecord {
    /// Whether every network's ADD finished.
    pub fn complete(&self) -> bool {
        self.attachments.iter().all(|a| a.result.is_some())
    }
}

/// The records directory.
#[derive(Clone, Debug)]
pub(super) struct Records {
    pub dir: PathBuf,
}

fn state_err(path: &Path, op: &'static str, source: io::Error) -> NetworkError {
    NetworkError::State {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl Records {
    pub fn path(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{uid}.json"))
    }

    /// The pod's record; `Ok(None)` when there is none. A record that does not parse is an
    /// error naming the file, not silently nothing: it may be all that says what to undo.
    pub async fn read(&self, uid: &str) -> Result<Option<PodRecord>, NetworkError> {
        let path = self.path(uid);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(state_err(&path, "read", e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            state_err(
                &path,
                "parse",
                io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })
    }

    pub async fn write(&self, uid: &str, record: &PodRecord) -> Result<(), NetworkError> {
        let path = self.path(uid);
        let tmp = self.dir.join(format!("{uid}.json.tmp"));
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| state_err(&path, "serialize", io::Error::other(e)))?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| state_err(&self.dir, "create directory", e))?;
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| state_err(&tmp, "create", e))?;
        f.write_all(&bytes)
            .await
            .map_err(|e| state_err(&tmp, "write", e))?;
        f.sync_all()
            .await
            .map_err(|e| state_err(&tmp, "fsync", e))?;
        drop(f);
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| state_err(&path, "rename into place", e))?;
        sync_dir(&self.dir).await
    }

    pub async fn remove(&self, uid: &str) -> Result<(), NetworkError> {
        let path = self.path(uid);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => sync_dir(&self.dir).await,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state_err(&path, "remove", e)),
        }
    }

    /// UIDs with a record (temporary files of interrupted writes are not records).
    pub async fn uids(&self) -> Result<Vec<String>, NetworkError> {
        list_names(&self.dir).await.map(|names| {
            names
                .into_iter()
                .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
                .collect()
        })
    }
}

/// File names in `dir` (none when it does not exist).
pub(super) async fn list_names(dir: &Path) -> Result<Vec<String>, NetworkError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(state_err(dir, "list", e)),
    };
    let mut names = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| state_err(dir, "list", e))?
    {
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Makes a rename or unlink in `dir` durable.
async fn sync_dir(dir: &Path) -> Result<(), NetworkError> {
    let d = tokio::fs::File::open(dir)
        .await
        .map_err(|e| state_err(dir, "open", e))?;
    d.sync_all().await.map_err(|e| state_err(dir, "fsync", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::network::cni::loopback_network;

    fn record() -> PodRecord {
        PodRecord {
            namespace: "default".into(),
            name: "web".into(),
            ports: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: None,
            }],
            attachments: vec![Attachment {
                ifname: "lo".into(),
                network: loopback_network(),
                result: None,
            }],
        }
    }

    #[tokio::test]
    async fn records_round_trip_list_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records {
            dir: dir.path().join("pods"),
        };
        assert_eq!(records.read("a").await.unwrap(), None);
        assert!(records.uids().await.unwrap().is_empty());

        let mut rec = record();
        records.write("a", &rec).await.unwrap();
        assert!(!rec.complete());
        rec.attachments[0].result = Some(serde_json::json!({"cniVersion": "1.0.0"}));
        records.write("a", &rec).await.unwrap();
        std::fs::write(records.dir.join("b.json.tmp"), "{").unwrap();
        let back = records.read("a").await.unwrap().unwrap();
        assert_eq!(back, rec);
        assert!(back.complete());
        assert_eq!(records.uids().await.unwrap(), vec!["a".to_string()]);

        records.remove("a").await.unwrap();
        records.remove("a").await.unwrap();
        assert_eq!(records.read("a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records {
            dir: dir.path().to_path_buf(),
        };
        std::fs::write(records.path("x"), "{not json").unwrap();
        let msg = records.read("x").await.unwrap_err().to_string();
        assert!(msg.contains("x.json") && msg.contains("parse"), "{msg}");
    }
}

//! Network namespaces kept alive as files, the way `ip netns add` does it: a short-lived
//! thread unshares into a fresh network namespace and bind-mounts its
//! `/proc/thread-self/ns/net` onto a file; the mount holds the namespace after the thread
//! is gone, and the file's path is what the CNI plugins and the OCI runtime spec get.
//!
//! Owns only the files and mounts under the directory it is given (the agent's
//! `data_dir/netns`), never /run/netns, so several agents and parallel tests cannot collide.
//! Like `ip netns`, it makes that directory a shared mount point (a bind mount of itself
//! when it is not one already): a mount namespace created later (a daemon with private
//! mounts, say) then sees our unmounts too instead of pinning dead namespaces forever.
//! Everything here is in the caller's mount namespace, which containerd and runc share, so
//! they can open the paths.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use super::NetworkError;

fn err(path: &Path, op: &'static str, source: impl Into<io::Error>) -> NetworkError {
    NetworkError::Netns {
        path: path.to_path_buf(),
        op,
        source: source.into(),
    }
}

/// Whether `path` is a mounted network namespace (and not, say, the empty file a reboot
/// leaves behind once the mount is gone).
pub(super) fn is_netns(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Creates `dir` and makes it a shared mount point (see the module docs). Blocking.
pub(super) fn prepare_dir(dir: &Path) -> Result<(), NetworkError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, "create directory", e))?;
    let mut bound = false;
    loop {
        match mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            // EINVAL: not a mount point yet. Make it one, once, then try again.
            Err(Errno::EINVAL) if !bound => {
                mount(
                    Some(dir),
                    dir,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| err(dir, "bind-mount onto itself", e))?;
                bound = true;
            }
            Err(e) => return Err(err(dir, "make shared mount", e)),
        }
    }
}

/// Undoes [`prepare_dir`]'s mount. Namespaces still mounted below are detached with it.
pub(super) fn release_dir(dir: &Path) -> Result<(), NetworkError> {
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(err(dir, "unmount", e)),
    }
}

/// Creates a network namespace mounted at `path` unless one already is.
pub(super) async fn create(path: &Path) -> Result<(), NetworkError> {
    if is_netns(path) {
        return Ok(());
    }
    // A stale file (the mount lost at reboot) is reused; no O_EXCL.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(|e| err(path, "create mount point file", e))?;

    let (tx, rx) = tokio::sync::oneshot::channel();
    let target: PathBuf = path.to_path_buf();
    // A dedicated thread, not spawn_blocking: unshare moves the calling thread into the new
    // namespace for good, and a pool thread would carry it into unrelated work afterwards.
    // This thread only mounts and exits.
    let spawned = std::thread::Builder::new()
        .name("moor-netns".into())
        .spawn(move || {
            let result = unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| ("unshare network namespace", e))
                .and_then(|()| {
                    mount(
                        Some("/proc/thread-self/ns/net"),
                        &target,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|e| ("bind-mount network namespace", e))
                });
            let _ = tx.send(result);
        });
    let outcome = match spawned {
        Ok(_) => match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err((op, e))) => Err(err(path, op, e)),
            Err(_) => Err(err(
                path,
                "create namespace thread",
                io::Error::other("thread ended without answering"),
            )),
        },
        Err(e) => Err(err(path, "spawn namespace thread", e)),
    };
    if outcome.is_err() {
        let _ = std::fs::remove_file(path);
    }
    outcome
}

/// Unmounts and deletes the namespace file at `path`; nothing there is fine. Blocking.
pub(super) fn remove(path: &Path) -> Result<(), NetworkError> {
    // Bounded: a mount stacked twice (it should not be) is peeled off too.
    for _ in 0..8 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(e) => return Err(err(path, "unmount", e)),
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(path, "remove", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_file_or_nothing_is_not_a_namespace_and_removes_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stale");
        std::fs::write(&file, "").unwrap();
        assert!(!is_netns(&file));
        assert!(!is_netns(&dir.path().join("absent")));
        remove(&file).unwrap();
        assert!(!file.exists());
        remove(&file).unwrap();
    }
}

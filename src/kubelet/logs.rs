//! Container log files: `<data dir>/logs/<namespace>_<pod>_<uid>/<container>/<attempt>.log`,
//! appended to by containerd's shims, and their rotation by size (kubelet's
//! containerLogMaxSize 10 MiB, containerLogMaxFiles 5). A file over the limit is copied to
//! `<attempt>.log.<UTC time>` and truncated in place: the shim holds it open with
//! O_APPEND, so it keeps writing at the new end, and the oldest copies beyond the limit
//! are removed. Lines written between the copy and the truncation can be lost; kubelet's
//! own copy-truncate for CRI logs has the same window.

use std::path::Path;

/// Rotate a file above this size.
pub const MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Keep at most this many files per container attempt (the live one included).
pub const MAX_FILES: usize = 5;

/// Rotates every container log under `root` that grew past `max_size`; returns how many
/// were rotated. Unreadable entries are skipped: a pod being removed meanwhile is normal.
pub fn rotate_all(root: &Path, max_size: u64, max_files: usize) -> usize {
    let mut rotated = 0;
    let Ok(pods) = std::fs::read_dir(root) else {
        return 0;
    };
    for pod in pods.flatten() {
        let Ok(containers) = std::fs::read_dir(pod.path()) else {
            continue;
        };
        for container in containers.flatten() {
            let Ok(files) = std::fs::read_dir(container.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_some_and(|e| e == "log")
                    && file.metadata().is_ok_and(|m| m.len() > max_size)
                    && rotate(&path, max_files).is_ok()
                {
                    rotated += 1;
                }
            }
        }
    }
    rotated
}

/// Copies `path` aside with a timestamp, truncates it, and prunes old copies.
pub fn rotate(path: &Path, max_files: usize) -> std::io::Result<()> {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%d-%H%M%S%.f")
        .to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let copy = path.with_file_name(format!("{name}.{stamp}"));
    std::fs::copy(path, &copy)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    let prefix = format!("{name}.");
    let mut copies: Vec<_> = std::fs::read_dir(path.parent().unwrap_or(Path::new(".")))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    // Timestamps sort as text; the newest copies are kept.
    copies.sort();
    let keep = max_files.saturating_sub(1);
    let excess = copies.len().saturating_sub(keep);
    for old in &copies[..excess] {
        let _ = std::fs::remove_file(path.with_file_name(old));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn big_logs_are_copied_aside_truncated_and_pruned() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("default_web_uid").join("web");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        let small = dir.join("1.log");
        std::fs::write(&small, b"tiny\n").unwrap();
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for round in 0..4 {
            writer.write_all(&[b'x'; 100]).unwrap();
            assert_eq!(rotate_all(root.path(), 50, 3), 1, "round {round}");
            assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // The writer keeps appending at the start of the truncated file (O_APPEND).
        writer.write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
        let copies: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("0.log."))
            .collect();
        assert_eq!(copies.len(), 2, "{copies:?}");
        assert_eq!(std::fs::read_to_string(&small).unwrap(), "tiny\n");
    }
}

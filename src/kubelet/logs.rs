//! Container log files: `<data dir>/logs/<namespace>_<pod>_<uid>/<container>/<attempt>.log`,
//! written by the logging process containerd's shim starts for each container (the `moor`
//! binary itself, `moor container-log FILE`, through the shim's `binary://` protocol), and
//! their rotation by size (kubelet's
//! containerLogMaxSize 10 MiB, containerLogMaxFiles 5). A file over the limit is copied to
//! `<attempt>.log.<UTC time>` and truncated in place: the shim holds it open with
//! O_APPEND, so it keeps writing at the new end, and the oldest copies beyond the limit
//! are removed. Lines written between the copy and the truncation can be lost; kubelet's
//! own copy-truncate for CRI logs has the same window.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

/// The file the logging process writes to, set before the shim protocol starts.
static LOG_FILE: OnceLock<PathBuf> = OnceLock::new();

/// The shim's logging URI for a container whose output goes to `log_path`: containerd's
/// runc shim starts `driver container-log <log_path>` with the container's stdout and
/// stderr as its fds 3 and 4. The process belongs to the shim, so logging goes on while the
/// agent is down, and the shim waits for it when the task is deleted, so an exit the agent
/// has reaped has all its output in the file.
pub fn shim_uri(driver: &Path, log_path: &Path) -> String {
    let query = serde_urlencoded::to_string([("container-log", log_path.display().to_string())])
        .unwrap_or_default();
    format!("binary://{}?{query}", driver.display())
}

/// `moor container-log FILE`: runs as the shim's logging process until the container's
/// stdout and stderr close. Never returns.
pub fn run_driver(path: PathBuf) -> ! {
    let _ = LOG_FILE.set(path);
    containerd_shim_logging::run::<FileDriver>();
    // `run` exits the process itself.
    std::process::exit(0)
}

/// Copies stdout and stderr line by line into one file: each line is one `write` to a file
/// opened for appending, so lines of the two streams never mix.
struct FileDriver {
    config: containerd_shim_logging::Config,
    path: PathBuf,
}

impl containerd_shim_logging::Driver for FileDriver {
    type Error = std::io::Error;

    fn new(config: containerd_shim_logging::Config) -> Result<Self, Self::Error> {
        let path = LOG_FILE
            .get()
            .cloned()
            .ok_or_else(|| std::io::Error::other("no log file given"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(FileDriver { config, path })
    }

    fn run(self) -> Result<(), Self::Error> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        };
        let (out_file, err_file) = (open()?, open()?);
        let stderr = self.config.stderr;
        let errors = std::thread::spawn(move || copy_lines(stderr, err_file));
        let copied = copy_lines(self.config.stdout, out_file);
        let copied_errors = errors
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("stderr copier panicked")));
        copied.and(copied_errors)
    }
}

fn copy_lines(from: std::fs::File, mut to: std::fs::File) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, from);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        // A line longer than this is written in pieces; its parts stay in order.
        let n = reader
            .by_ref()
            .take(64 * 1024)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_shim_uri_names_the_driver_and_the_file() {
        assert_eq!(
            shim_uri(
                Path::new("/usr/bin/moor"),
                Path::new("/var/lib/moor/logs/a b/0.log")
            ),
            "binary:///usr/bin/moor?container-log=%2Fvar%2Flib%2Fmoor%2Flogs%2Fa+b%2F0.log"
        );
    }

    #[test]
    fn lines_of_both_streams_are_copied_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let (out_r, mut out_w) = std::io::pipe().unwrap();
        let (err_r, mut err_w) = std::io::pipe().unwrap();
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
        };
        let (a, b) = (open(), open());
        let out = std::thread::spawn(move || {
            copy_lines(std::fs::File::from(std::os::fd::OwnedFd::from(out_r)), a)
        });
        let err = std::thread::spawn(move || {
            copy_lines(std::fs::File::from(std::os::fd::OwnedFd::from(err_r)), b)
        });
        for i in 0..200 {
            writeln!(out_w, "out {i}").unwrap();
            writeln!(err_w, "err {i}").unwrap();
        }
        drop((out_w, err_w));
        out.join().unwrap().unwrap();
        err.join().unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 400);
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("out ") || l.starts_with("err "))
        );
        let outs: Vec<&&str> = lines.iter().filter(|l| l.starts_with("out ")).collect();
        assert_eq!(outs[199], &"out 199", "each stream in its order");
    }

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

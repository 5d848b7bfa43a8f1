//! Sources of manifests: a folder or a git repository, read into a [`Snapshot`] — the files
//! that hold manifests and the revision they were read at. Both kinds share one rule for
//! which files count ([`is_manifest_file`], hidden files and `.moorignore` patterns left out).

pub mod dir;
pub mod git;

/// One file read from a source.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the source root, `/`-separated, e.g. `apps/web.yaml`.
    pub path: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

// By hand: a file's bytes may be a Secret's manifest, and `{:?}` must not print them.
impl std::fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFile")
            .field("path", &self.path)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// The manifest files of a source at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The git commit id (40 hex digits), or for a folder a content hash of the files
    /// (`sha256:` + 64 hex digits over every path and its bytes, in path order).
    pub revision: String,
    /// Files sorted by path.
    pub files: Vec<SourceFile>,
}

/// The largest manifest file (or `.moorignore`) a source reads, in bytes (4 MiB, the
/// loader's limit too). Checked before a file is read, so a log or a disk image saved with a
/// `.yaml` name is refused with an error naming it instead of being pulled into memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The most manifest files one snapshot may hold. Far above any real repository; it keeps a
/// generated or hostile tree from exhausting memory one small file at a time.
pub const MAX_FILES: usize = 10_000;

/// The most bytes all the manifest files of one snapshot may hold together (256 MiB).
pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;

/// The name of the file holding gitignore-syntax patterns of files a source leaves out.
/// Honoured in every directory of the source, as `.gitignore` is.
pub const IGNORE_FILE: &str = ".moorignore";

/// Whether a file at this `/`-separated path (relative to the source root) can hold
/// manifests: it ends in `.yaml`, `.yml` or `.json`, and no component of the path is hidden
/// (starts with `.`). `.moorignore` patterns are applied separately, by each source kind.
pub fn is_manifest_file(path: &str) -> bool {
    let hidden = path
        .split('/')
        .any(|component| component.starts_with('.') && component != "." && component != "..");
    let manifest_extension = path
        .rsplit_once('.')
        .is_some_and(|(_, ext)| matches!(ext, "yaml" | "yml" | "json"));
    !hidden && manifest_extension
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_files_are_yaml_or_json_and_not_hidden() {
        assert!(is_manifest_file("web.yaml"));
        assert!(is_manifest_file("apps/web.yml"));
        assert!(is_manifest_file("apps/web.json"));
        assert!(!is_manifest_file("README.md"));
        assert!(!is_manifest_file(".hidden.yaml"));
        assert!(!is_manifest_file(".github/workflows/ci.yaml"));
        assert!(!is_manifest_file("apps/.draft/web.yaml"));
        assert!(!is_manifest_file("yaml"));
    }
}

//! A small runnable image for tests, built here from Debian's `busybox-static` with no
//! network: one layer holding `/bin/busybox`, its applet links (sh, echo, cat, sleep, ls,
//! env, id, wget, httpd, nc, ...), `/etc/passwd`, `/etc/group` and the usual empty
//! folders; a config with the standard PATH and `Cmd ["sh"]`. Written as an OCI
//! image-layout tar (gzip layer) or a `docker save` tar (plain layer). The layer is built
//! once per test process; each call only writes the archive (a few ms).
//!
//! Uses only tar, flate2, sha2, hex and serde_json, so any test can include it with
//! `#[path = "support/image.rs"] mod image_support;`.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The applets linked in `/bin`: enough for shell scripts, probes and small servers.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "echo", "cat", "sleep", "ls", "env", "id", "true", "false", "wget", "httpd", "nc",
    "hostname", "mkdir", "touch", "printf", "test", "[", "kill", "ps", "grep", "sed", "head",
    "tail", "rm", "cp", "mv", "ln", "chmod", "date", "pwd", "uname", "whoami", "wc", "tee", "yes",
    "seq", "expr", "basename", "dirname", "readlink", "stat", "find", "xargs", "mount", "umount",
    "ip", "ifconfig", "ping", "nslookup", "vi", "tr", "cut", "sort", "uniq", "timeout", "usleep",
    "killall", "pidof", "top", "free", "df", "du", "netstat",
];

pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The built pieces of the image, shared by every archive written in this process.
pub struct BusyboxImage {
    /// The uncompressed layer tar and its digest (the diff ID).
    pub layer_tar: Vec<u8>,
    pub diff_id: String,
    /// The same layer gzip-compressed, and its digest.
    pub layer_gzip: Vec<u8>,
    pub layer_gzip_digest: String,
    /// The config JSON and its digest.
    pub config: Vec<u8>,
    pub config_digest: String,
    /// The OCI manifest (pointing at the gzip layer) and its digest.
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The image, built on first use.
pub fn busybox() -> &'static BusyboxImage {
    static IMAGE: OnceLock<BusyboxImage> = OnceLock::new();
    IMAGE.get_or_init(build)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn build() -> BusyboxImage {
    let binary = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("{BUSYBOX} (Debian's busybox-static) is needed: {e}"));
    let mut tar = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("proc/", 0o555),
        ("root/", 0o700),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
        ("usr/", 0o755),
        ("usr/bin/", 0o755),
        ("var/", 0o755),
    ] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    let mut h = header(tar::EntryType::Regular, 0o755, binary.len() as u64);
    tar.append_data(&mut h, "bin/busybox", binary.as_slice())
        .unwrap();
    for applet in APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let files: [(&str, &[u8]); 3] = [
        (
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hostname", b"busybox\n"),
    ];
    for (path, data) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut h, path, data).unwrap();
    }
    let layer_tar = tar.into_inner().unwrap();
    let diff_id = sha256(&layer_tar);
    // Fastest compression: the point is a valid gzip layer, not a small one.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer_tar).unwrap();
    let layer_gzip = gz.finish().unwrap();
    let layer_gzip_digest = sha256(&layer_gzip);
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": [PATH_ENV], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "moor tests: busybox-static" }],
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": OCI_LAYER_GZIP, "digest": layer_gzip_digest, "size": layer_gzip.len() }],
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);
    BusyboxImage {
        layer_tar,
        diff_id,
        layer_gzip,
        layer_gzip_digest,
        config,
        config_digest,
        manifest,
        manifest_digest,
    }
}

/// The files of an OCI image-layout archive of the image named `name` (as written in the
/// `io.containerd.image.name` and `org.opencontainers.image.ref.name` annotations), for tests
/// that alter one before writing it with [`write_tar`].
pub fn busybox_oci_files(name: &str) -> Vec<(String, Vec<u8>)> {
    let image = busybox();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name,
            },
            "platform": { "architecture": "amd64", "os": "linux" },
        }],
    }))
    .unwrap();
    vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index),
        (
            format!("blobs/sha256/{}", hex_of(&image.manifest_digest)),
            image.manifest.clone(),
        ),
        (
            format!("blobs/sha256/{}", hex_of(&image.config_digest)),
            image.config.clone(),
        ),
        (
            format!("blobs/sha256/{}", hex_of(&image.layer_gzip_digest)),
            image.layer_gzip.clone(),
        ),
    ]
}

/// The files of an OCI image-layout archive of busybox plus a second, uncompressed layer
/// holding `files` (paths relative to `/`, mode 0755 so scripts run), and the image's
/// top chain ID. For tests that need their own programs in an image.
pub fn busybox_with_files_oci_files(
    name: &str,
    files: &[(&str, &[u8])],
) -> (Vec<(String, Vec<u8>)>, String) {
    let image = busybox();
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = header(tar::EntryType::Regular, 0o755, data.len() as u64);
        tar.append_data(&mut h, path.trim_start_matches('/'), *data)
            .unwrap();
    }
    let layer = tar.into_inner().unwrap();
    let layer_digest = sha256(&layer);
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["rootfs"]["diff_ids"] = serde_json::json!([image.diff_id, layer_digest]);
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [
            { "mediaType": OCI_LAYER_GZIP, "digest": image.layer_gzip_digest, "size": image.layer_gzip.len() },
            { "mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len() },
        ],
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);
    let mut out = busybox_oci_files(name);
    out.retain(|(path, _)| {
        !path.starts_with("blobs/sha256/") || path.ends_with(hex_of(&image.layer_gzip_digest))
    });
    let index = out
        .iter_mut()
        .find(|(path, _)| path == "index.json")
        .unwrap();
    let text = String::from_utf8(index.1.clone()).unwrap();
    index.1 = text
        .replace(&image.manifest_digest, &manifest_digest)
        .replace(
            &format!("\"size\":{}", image.manifest.len()),
            &format!("\"size\":{}", manifest.len()),
        )
        .into_bytes();
    out.push((
        format!("blobs/sha256/{}", hex_of(&manifest_digest)),
        manifest,
    ));
    out.push((format!("blobs/sha256/{}", hex_of(&config_digest)), config));
    out.push((format!("blobs/sha256/{}", hex_of(&layer_digest)), layer));
    // OCI image spec: ChainID(L0|L1) = sha256(ChainID(L0) + " " + DiffID(L1)).
    let chain_id = sha256(format!("{} {}", image.diff_id, layer_digest).as_bytes());
    (out, chain_id)
}

/// The files of a `docker save` archive (legacy layout: `<id>/layer.tar`, `<config>.json`,
/// `manifest.json`) of the image with the repo tag `name`.
pub fn busybox_docker_files(name: &str) -> Vec<(String, Vec<u8>)> {
    let image = busybox();
    let layer_dir = hex_of(&image.diff_id).to_owned();
    let config_file = format!("{}.json", hex_of(&image.config_digest));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_file,
        "RepoTags": [name],
        "Layers": [format!("{layer_dir}/layer.tar")],
    }]))
    .unwrap();
    vec![
        (format!("{layer_dir}/VERSION"), b"1.0".to_vec()),
        (format!("{layer_dir}/json"), b"{}".to_vec()),
        (format!("{layer_dir}/layer.tar"), image.layer_tar.clone()),
        (config_file, image.config.clone()),
        ("manifest.json".into(), manifest),
    ]
}

/// Writes `files` as a tar (gzip-compressed if `gzip`) at `path`.
pub fn write_tar(path: &Path, files: &[(String, Vec<u8>)], gzip: bool) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    let bytes = if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        gz.finish().unwrap()
    } else {
        bytes
    };
    std::fs::write(path, bytes).unwrap();
}

/// An OCI image-layout archive of the image named `name`, written into `dest_dir`.
pub fn busybox_oci_archive(dest_dir: &Path, name: &str) -> PathBuf {
    let path = dest_dir.join(format!("{}.oci.tar", file_stem(name)));
    write_tar(&path, &busybox_oci_files(name), false);
    path
}

/// A `docker save` archive of the image tagged `name`, written into `dest_dir`.
pub fn busybox_docker_archive(dest_dir: &Path, name: &str) -> PathBuf {
    let path = dest_dir.join(format!("{}.docker.tar", file_stem(name)));
    write_tar(&path, &busybox_docker_files(name), false);
    path
}

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

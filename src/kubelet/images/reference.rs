//! Image references and registry credentials: the docker-style normalisation every image
//! name goes through before it names anything in containerd (`busybox` →
//! `docker.io/library/busybox:latest`), and the lookup of a pull secret's
//! `.dockerconfigjson` for the registry an image lives in. Pure functions: no I/O.

use std::collections::HashMap;

use base64::Engine as _;
use oci_spec::distribution::{ParseError, Reference};
use serde::Deserialize;

use super::{ImageError, RegistryAuth};

/// Parses `name` as a docker reference.
pub(crate) fn parse_reference(name: &str) -> Result<Reference, ImageError> {
    let invalid = |source| ImageError::InvalidReference {
        reference: name.to_owned(),
        source,
    };
    let reference = Reference::try_from(name.trim()).map_err(invalid)?;
    // The grammar lets a first component in capitals pass as a registry host; docker then
    // rejects it as a repository, and so do we.
    if reference
        .repository()
        .chars()
        .any(|c| c.is_ascii_uppercase())
    {
        return Err(invalid(ParseError::NameContainsUppercase));
    }
    Ok(reference)
}

/// "busybox" → "docker.io/library/busybox:latest", "reg:5000/a/b" → "reg:5000/a/b:latest";
/// a digest is kept (with the tag, if both are given). A bad reference gives an error naming
/// it.
pub fn normalize_reference(name: &str) -> Result<String, ImageError> {
    Ok(parse_reference(name)?.whole())
}

/// Whether a registry host (with optional port) is on this machine, where docker and
/// containerd allow plain HTTP without being told.
pub(crate) fn is_loopback_registry(registry: &str) -> bool {
    let host = host_of(registry);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `host[:port]`, `[v6]:port` included.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// The names docker uses for Docker Hub in config files, all meaning `docker.io`.
fn canonical_registry(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    }
}

/// A `.dockerconfigjson` key (`https://reg:5000/v1/`, `reg:5000`, `reg:5000/team`,
/// `*.example.com`) split into its registry and the repository path prefix it covers.
fn parse_auth_key(key: &str) -> (String, String) {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let host = canonical_registry(&host.to_ascii_lowercase()).to_owned();
    // Docker Hub's legacy key ends in /v1/: that is an API version, not a repository.
    let path = path.trim_matches('/');
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    (host, path.to_owned())
}

/// Whether a key's registry (possibly `*.domain`) matches the image's registry.
fn registry_matches(pattern: &str, registry: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        // Kubernetes' keyring: one wildcard label, the port must match exactly.
        return registry
            .split_once('.')
            .is_some_and(|(_, rest)| rest == suffix);
    }
    pattern == registry
}

/// Credentials for `image`'s registry from a `kubernetes.io/dockerconfigjson` secret's
/// `.dockerconfigjson` bytes: `auths.<registry>.{username,password}` or the base64
/// `auth` ("user:password"). The most specific key wins (`reg/team` over `reg`), as in the
/// kubelet's keyring. `None` when nothing matches or the document is not valid.
pub fn credentials_for(dockerconfigjson: &[u8], image: &str) -> Option<RegistryAuth> {
    let config: DockerConfig = serde_json::from_slice(dockerconfigjson).ok()?;
    let reference = parse_reference(image).ok()?;
    let registry = canonical_registry(reference.registry()).to_owned();
    let repository = reference.repository();
    let mut best: Option<(usize, RegistryAuth)> = None;
    for (key, entry) in &config.auths {
        let (key_registry, key_path) = parse_auth_key(key);
        if !registry_matches(&key_registry, &registry) {
            continue;
        }
        let path_matches = key_path.is_empty()
            || repository == key_path
            || repository.starts_with(&format!("{key_path}/"));
        if !path_matches {
            continue;
        }
        let Some(auth) = entry.credentials() else {
            continue;
        };
        // Longer path first; an exact registry beats a wildcard one at equal length.
        let score = key_path.len() * 2 + usize::from(!key_registry.starts_with("*."));
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, auth));
        }
    }
    best.map(|(_, auth)| auth)
}

impl DockerAuth {
    fn credentials(&self) -> Option<RegistryAuth> {
        if let (Some(username), Some(password)) = (&self.username, &self.password)
            && !username.is_empty()
        {
            return Some(RegistryAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            });
        }
        let encoded = self.auth.as_deref()?.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        Some(RegistryAuth::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("team/app:v1", "docker.io/team/app:v1"),
            ("reg:5000/a/b", "reg:5000/a/b:latest"),
            ("localhost/a", "localhost/a:latest"),
            ("127.0.0.1:5000/a:t", "127.0.0.1:5000/a:t"),
            ("quay.io/x/y:z", "quay.io/x/y:z"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_reference(input).unwrap(), want, "{input}");
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize_reference(&format!("busybox@{digest}")).unwrap(),
            format!("docker.io/library/busybox@{digest}")
        );
        assert_eq!(
            normalize_reference(&format!("reg:5000/b:1@{digest}")).unwrap(),
            format!("reg:5000/b:1@{digest}")
        );
    }

    #[test]
    fn bad_references_name_themselves() {
        for bad in [
            "",
            "UPPER/case",
            "a b",
            "busybox@sha256:abc",
            "x:y:z",
            "-leading",
        ] {
            let err = normalize_reference(bad).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidReference { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn loopback_registries_are_recognised() {
        assert!(is_loopback_registry("localhost"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("127.0.0.1:35111"));
        assert!(is_loopback_registry("127.3.4.5"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("docker.io"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
        assert!(!is_loopback_registry("localhost.example.com"));
    }

    fn basic(user: &str, pass: &str) -> Option<RegistryAuth> {
        Some(RegistryAuth::Basic {
            username: user.into(),
            password: pass.into(),
        })
    }

    #[test]
    fn docker_config_credentials_match_the_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3:cret");
        let config = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "reg:5000": {{"username": "alice", "password": "pw"}},
                "reg:5000/team": {{"username": "team", "password": "tpw"}},
                "*.example.com": {{"username": "wild", "password": "w"}},
                "http://plain.test": {{"username": "p", "password": "q"}}
            }}}}"#
        );
        let config = config.as_bytes();
        assert_eq!(credentials_for(config, "busybox"), basic("bob", "s3:cret"));
        assert_eq!(
            credentials_for(config, "reg:5000/app"),
            basic("alice", "pw")
        );
        assert_eq!(
            credentials_for(config, "reg:5000/team/app:1"),
            basic("team", "tpw")
        );
        assert_eq!(
            credentials_for(config, "reg:5000/teamster"),
            basic("alice", "pw")
        );
        assert_eq!(
            credentials_for(config, "a.example.com/x"),
            basic("wild", "w")
        );
        assert_eq!(credentials_for(config, "a.b.example.com/x"), None);
        assert_eq!(credentials_for(config, "plain.test/x"), basic("p", "q"));
        assert_eq!(credentials_for(config, "reg:5001/app"), None);
        assert_eq!(credentials_for(config, "quay.io/x"), None);
        assert_eq!(credentials_for(b"not json", "busybox"), None);
        assert_eq!(
            credentials_for(br#"{"auths":{"reg":{"auth":"%%%"}}}"#, "reg/x"),
            None
        );
    }
}

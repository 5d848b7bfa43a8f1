//! Encryption of stored values at rest, as kube-apiserver's `EncryptionConfiguration` does it.
//!
//! This module owns three things:
//!
//! - [`EncryptionConfig`]: the parsed `EncryptionConfiguration` file (`apiVersion:
//!   apiserver.config.k8s.io/v1`), which says, per resource, which providers encrypt and
//!   decrypt its values. moor supports the providers `aescbc`, `aesgcm` and `identity`;
//!   `kms` and `secretbox` are refused with an error naming the file and entry.
//! - the storage format, byte for byte upstream's so data is recognisable:
//!   `k8s:enc:aescbc:v1:<key name>:` + 16-byte IV + AES-CBC (PKCS#7) ciphertext, and
//!   `k8s:enc:aesgcm:v1:<key name>:` + 12-byte nonce + AES-GCM ciphertext and tag (the
//!   storage key is the additional authenticated data, as upstream, so a value copied to
//!   another key does not decrypt). `identity` stores the plain bytes.
//! - [`EncryptedStore`]: a [`Store`] decorator that encrypts the values of configured
//!   resources on every write and decrypts them on every read, list and watch event.
//!
//! Semantics as upstream: the *first* provider of a resource's list encrypts writes; a read
//! picks the provider and key named by the value's prefix; a value without the `k8s:enc:`
//! prefix is read as plain only when `identity` is in the list. Revisions, preconditions and
//! compaction are the inner store's: the trait compares mod revisions, never values, so
//! nothing here needs to compare ciphertexts.
//!
//! This module must not reach into the API layer: it maps storage keys to resources by the
//! key layout of [`super::key`] alone. Key material and plaintext never appear in errors,
//! logs or `Debug` output.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Poll, ready};

use async_trait::async_trait;
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    self, DecryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Deserialize;
use serde_yaml::Value;

use super::{
    DeleteOutcome, Event, KeyValue, ListOptions, ListResult, Revision, Store, StoreError,
    UpdateOutcome, WatchStream,
};

/// The file [`EncryptionConfig::load_or_create`] reads (and creates) in the data dir.
pub const CONFIG_FILE_NAME: &str = "encryption-config.yaml";

/// The only `apiVersion` accepted, as kube-apiserver's `--encryption-provider-config`.
pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";

/// The `kind` accepted.
pub const KIND: &str = "EncryptionConfiguration";

/// Every encrypted value starts with this.
const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// Where object keys live; keys outside it are never encrypted.
const REGISTRY: &str = "/registry/";

/// Groups whose names have no dot. Every other API group must contain one (Kubernetes API
/// review and CRD validation require it), so a key's first segment names a group exactly
/// when it contains a dot or is one of these; core resources have neither.
const DOTLESS_GROUPS: &[&str] = &["apps", "autoscaling", "batch", "extensions", "policy"];

const CBC_IV_LEN: usize = cipher::AES_CBC_IV_LEN;
const BLOCK_LEN: usize = 16;
const GCM_NONCE_LEN: usize = aead::NONCE_LEN;
const GCM_TAG_LEN: usize = 16;

/// Keys per list page of [`EncryptedStore::rewrite_stale`].
const REWRITE_PAGE: usize = 500;

/// Everything loading a configuration or transforming a value can fail with. Messages name
/// files, entries, providers and key names, never key material or values.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The configuration file could not be read.
    #[error("encryption config {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file could not be created.
    #[error("encryption config {}: cannot create: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML of the expected shape.
    #[error("encryption config {}: {source}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line and column).
        #[source]
        source: serde_yaml::Error,
    },
    /// An entry is invalid.
    #[error("encryption config {}: {entry}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which entry, e.g. `resources[0].providers[1].aescbc.keys[0]`.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A provider kube-apiserver knows but moor does not implement.
    #[error(
        "encryption config {}: {entry}: provider {provider:?} is not supported by moor \
         (supported: aescbc, aesgcm, identity)",
        path.display()
    )]
    UnsupportedProvider {
        /// The file.
        path: PathBuf,
        /// Which entry.
        entry: String,
        /// The provider's name, e.g. `kms`.
        provider: String,
    },
    /// The random number generator failed (creating a key, an IV or a nonce).
    #[error("no random bytes available for {purpose}")]
    Random {
        /// What they were for.
        purpose: &'static str,
    },
    /// A stored value names a provider this resource's configuration does not list.
    #[error(
        "value is encrypted by provider {provider:?}, which {} does not list for this \
         resource",
        config.display()
    )]
    UnknownProvider {
        /// The configuration file.
        config: PathBuf,
        /// The provider named by the value.
        provider: String,
    },
    /// A stored value names a key this resource's configuration does not hold.
    #[error(
        "value is encrypted with {provider} key {key_name:?}, which {} does not hold for \
         this resource",
        config.display()
    )]
    UnknownKey {
        /// The configuration file.
        config: PathBuf,
        /// The provider named by the value.
        provider: String,
        /// The key name the value carries.
        key_name: String,
    },
    /// A plain value where the configuration allows only encrypted ones.
    #[error(
        "value is stored unencrypted, but {} has no identity provider for this resource",
        config.display()
    )]
    NotEncrypted {
        /// The configuration file.
        config: PathBuf,
    },
    /// The value has the encrypted prefix but not the shape of one.
    #[error("malformed encrypted value: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The cipher refused the value: a different key of the same name, or corruption.
    #[error("cannot decrypt with {provider} key {key_name:?}: wrong key or corrupted value")]
    Decrypt {
        /// The provider.
        provider: &'static str,
        /// The key name.
        key_name: String,
    },
    /// The cipher failed to encrypt.
    #[error("cannot encrypt with {provider} key {key_name:?}")]
    Encrypt {
        /// The provider.
        provider: &'static str,
        /// The key name.
        key_name: String,
    },
}

impl EncryptionError {
    /// As a store error naming `key`: the store's callers (the API server) report store
    /// errors, and the key tells an operator which object is unreadable.
    fn into_store_error(self, key: &str) -> StoreError {
        StoreError::Io {
            path: PathBuf::from(key),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, self),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// A parsed `EncryptionConfiguration`: which provider list applies to which resource.
/// Cheap to clone (the keys are shared).
#[derive(Clone)]
pub struct EncryptionConfig {
    inner: Arc<ConfigInner>,
}

struct ConfigInner {
    /// The file it came from, named in errors.
    origin: PathBuf,
    rules: Vec<Rule>,
}

struct Rule {
    matchers: Vec<Matcher>,
    providers: ProviderList,
}

/// Which keys a `resources` entry covers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Matcher {
    /// One resource: every key under its prefix.
    Exact {
        name: String,
        group: String,
        prefix: String,
    },
    /// `*.group` of a named group.
    Group { name: String, prefix: String },
    /// `*.`: every resource of the core group.
    Core,
    /// `*.*`: every resource.
    All,
}

impl Matcher {
    fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("a resource name is empty".to_owned());
        }
        if name != name.to_ascii_lowercase() {
            return Err(format!("resource {name:?} must be lowercase"));
        }
        if name == "*" {
            return Err(
                "\"*\" is not a resource: use \"*.\" for every core resource or \"*.*\" for \
                 every resource"
                    .to_owned(),
            );
        }
        if name == "*.*" {
            return Ok(Matcher::All);
        }
        if name == "*." {
            return Ok(Matcher::Core);
        }
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !s.starts_with('.')
                && !s.ends_with('.')
        };
        if let Some(group) = name.strip_prefix("*.") {
            if !valid(group) {
                return Err(format!(
                    "resource {name:?}: {group:?} is not an API group name"
                ));
            }
            return Ok(Matcher::Group {
                name: name.to_owned(),
                prefix: format!("{REGISTRY}{group}/"),
            });
        }
        if !valid(name) {
            return Err(format!(
                "resource {name:?} is not a resource name (e.g. \"secrets\", \
                 \"deployments.apps\", \"*.apps\", \"*.\" or \"*.*\")"
            ));
        }
        let (resource, group) = name.split_once('.').unwrap_or((name, ""));
        Ok(Matcher::Exact {
            name: name.to_owned(),
            group: group.to_owned(),
            prefix: super::key::resource_prefix(group, resource, None),
        })
    }

    fn name(&self) -> &str {
        match self {
            Matcher::Exact { name, .. } | Matcher::Group { name, .. } => name,
            Matcher::Core => "*.",
            Matcher::All => "*.*",
        }
    }

    /// Whether every key `other` covers is covered by `self` already: upstream refuses
    /// such an entry, as it could never take effect.
    fn masks(&self, other: &Matcher) -> bool {
        match (self, other) {
            (Matcher::All, _) => true,
            (Matcher::Core, Matcher::Core) => true,
            (Matcher::Core, Matcher::Exact { group, .. }) => group.is_empty(),
            (Matcher::Group { prefix: a, .. }, Matcher::Group { prefix: b, .. }) => a == b,
            (Matcher::Group { name, .. }, Matcher::Exact { group, .. }) => {
                name.strip_prefix("*.") == Some(group.as_str())
            }
            (Matcher::Exact { prefix: a, .. }, Matcher::Exact { prefix: b, .. }) => a == b,
            _ => false,
        }
    }

    fn matches(&self, key: &str) -> bool {
        match self {
            Matcher::Exact { prefix, .. } | Matcher::Group { prefix, .. } => {
                key.starts_with(prefix.as_str())
            }
            Matcher::Core => key
                .strip_prefix(REGISTRY)
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(first, _)| !is_group_segment(first)),
            Matcher::All => key.starts_with(REGISTRY),
        }
    }
}

/// Whether the first segment of a key (after `/registry/`) names an API group rather than
/// a core resource.
fn is_group_segment(segment: &str) -> bool {
    segment.contains('.') || DOTLESS_GROUPS.contains(&segment)
}

/// Whether every key under `prefix` belongs to one resource, so one lookup answers for all.
fn pins_resource(prefix: &str) -> bool {
    let Some(rest) = prefix.strip_prefix(REGISTRY) else {
        return false;
    };
    match rest.split_once('/') {
        None => false,
        Some((first, after)) if is_group_segment(first) => after.contains('/'),
        Some(_) => true,
    }
}

/// The providers of one `resources` entry, in order.
struct ProviderList {
    providers: Vec<Provider>,
}

enum Provider {
    AesCbc(Vec<CbcKey>),
    AesGcm(Vec<GcmKey>),
    Identity,
}

struct CbcKey {
    name: String,
    /// `k8s:enc:aescbc:v1:<name>:`
    prefix: Vec<u8>,
    encrypting: PaddedBlockEncryptingKey,
    decrypting: PaddedBlockDecryptingKey,
}

struct GcmKey {
    name: String,
    /// `k8s:enc:aesgcm:v1:<name>:`
    prefix: Vec<u8>,
    key: LessSafeKey,
}

impl Provider {
    fn kind(&self) -> &'static str {
        match self {
            Provider::AesCbc(_) => "aescbc",
            Provider::AesGcm(_) => "aesgcm",
            Provider::Identity => "identity",
        }
    }

    fn key_names(&self) -> Vec<&str> {
        match self {
            Provider::AesCbc(keys) => keys.iter().map(|k| k.name.as_str()).collect(),
            Provider::AesGcm(keys) => keys.iter().map(|k| k.name.as_str()).collect(),
            Provider::Identity => Vec::new(),
        }
    }
}

impl fmt::Debug for EncryptionConfig {
    // Key names and providers only: the keys themselves never leave this module.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rules = f.debug_list();
        for rule in &self.inner.rules {
            let resources: Vec<&str> = rule.matchers.iter().map(Matcher::name).collect();
            let providers: Vec<String> = rule
                .providers
                .providers
                .iter()
                .map(|p| format!("{}{:?}", p.kind(), p.key_names()))
                .collect();
            rules.entry(&format_args!("{resources:?} -> {providers:?}"));
        }
        rules.finish()?;
        write!(f, " from {}", self.inner.origin.display())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    resources: Vec<String>,
    // Kept as YAML values and checked by hand: serde's type errors quote the offending
    // scalar, which for a misplaced key would print the key.
    #[serde(default)]
    providers: Vec<Value>,
}

impl EncryptionConfig {
    /// Parse an `EncryptionConfiguration` document; `origin` names it in errors.
    pub fn from_yaml(yaml: &str, origin: &Path) -> Result<Self, EncryptionError> {
        let invalid = |entry: &str, reason: String| EncryptionError::Invalid {
            path: origin.to_owned(),
            entry: entry.to_owned(),
            reason,
        };
        let raw: RawConfig =
            serde_yaml::from_str(yaml).map_err(|source| EncryptionError::Yaml {
                path: origin.to_owned(),
                source,
            })?;
        match raw.api_version.as_deref() {
            Some(API_VERSION) => {}
            other => {
                return Err(invalid(
                    "apiVersion",
                    format!("is {other:?}, expected {API_VERSION:?}"),
                ));
            }
        }
        match raw.kind.as_deref() {
            Some(KIND) => {}
            other => return Err(invalid("kind", format!("is {other:?}, expected {KIND:?}"))),
        }
        if raw.resources.is_empty() {
            return Err(invalid(
                "resources",
                "at least one entry is required".to_owned(),
            ));
        }
        let mut rules = Vec::with_capacity(raw.resources.len());
        // Every matcher seen so far, with where it was, to refuse entries masked by earlier
        // ones as upstream does.
        let mut seen: Vec<(Matcher, String)> = Vec::new();
        for (i, raw_rule) in raw.resources.iter().enumerate() {
            if raw_rule.resources.is_empty() {
                return Err(invalid(
                    &format!("resources[{i}].resources"),
                    "at least one resource is required".to_owned(),
                ));
            }
            let mut matchers = Vec::with_capacity(raw_rule.resources.len());
            for (j, name) in raw_rule.resources.iter().enumerate() {
                let entry = format!("resources[{i}].resources[{j}]");
                let matcher = Matcher::parse(name).map_err(|reason| invalid(&entry, reason))?;
                if let Some((earlier, at)) = seen.iter().find(|(m, _)| m.masks(&matcher)) {
                    return Err(invalid(
                        &entry,
                        format!(
                            "resource {:?} is masked by the earlier entry {:?} ({at}), so it \
                             would never take effect",
                            matcher.name(),
                            earlier.name()
                        ),
                    ));
                }
                seen.push((matcher.clone(), entry));
                matchers.push(matcher);
            }
            if raw_rule.providers.is_empty() {
                return Err(invalid(
                    &format!("resources[{i}].providers"),
                    "at least one provider is required".to_owned(),
                ));
            }
            let mut providers = Vec::with_capacity(raw_rule.providers.len());
            for (j, raw_provider) in raw_rule.providers.iter().enumerate() {
                let entry = format!("resources[{i}].providers[{j}]");
                let provider = parse_provider(origin, &entry, raw_provider)?;
                // Reads find a key by provider and name: two keys of one name would make
                // the older one unreachable.
                for name in provider.key_names() {
                    let duplicate = providers.iter().any(|p: &Provider| {
                        p.kind() == provider.kind() && p.key_names().contains(&name)
                    });
                    if duplicate {
                        return Err(invalid(
                            &entry,
                            format!(
                                "{} key name {name:?} is used twice in this entry's providers",
                                provider.kind()
                            ),
                        ));
                    }
                }
                providers.push(provider);
            }
            rules.push(Rule {
                matchers,
                providers: ProviderList { providers },
            });
        }
        Ok(EncryptionConfig {
            inner: Arc::new(ConfigInner {
                origin: origin.to_owned(),
                rules,
            }),
        })
    }

    /// Read and parse the configuration at `path`.
    pub fn load(path: &Path) -> Result<Self, EncryptionError> {
        let yaml = std::fs::read_to_string(path).map_err(|source| EncryptionError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&yaml, path)
    }

    /// Read `data_dir/encryption-config.yaml`, creating it first if absent: a fresh random
    /// 32-byte `aescbc` key named `key1` for `secrets`, followed by `identity` so Secrets
    /// written before encryption was turned on stay readable. The file is created 0600 and
    /// synced before it appears under its name; when another process creates it at the same
    /// moment, both use the one that won.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, EncryptionError> {
        let path = data_dir.join(CONFIG_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(yaml) => {
                warn_if_readable_by_others(&path);
                return Self::from_yaml(&yaml, &path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EncryptionError::Read { path, source }),
        }
        let write_error = |source| EncryptionError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(write_error)?;
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| EncryptionError::Random {
            purpose: "a new encryption key",
        })?;
        let yaml = default_config_yaml(&key);
        // tempfile creates the file 0600 from the start: the key is never readable by
        // others, not even for a moment.
        let mut file = tempfile::Builder::new()
            .prefix(".encryption-config.yaml.")
            .tempfile_in(data_dir)
            .map_err(write_error)?;
        file.write_all(yaml.as_bytes()).map_err(write_error)?;
        file.as_file().sync_all().map_err(write_error)?;
        match file.persist_noclobber(&path) {
            Ok(_) => {
                // The new name must survive a crash too, or the Secrets written with this
                // key would be lost with it.
                std::fs::File::open(data_dir)
                    .and_then(|dir| dir.sync_all())
                    .map_err(write_error)?;
                tracing::info!(path = %path.display(), "created encryption config for secrets");
                Self::from_yaml(&yaml, &path)
            }
            // Another process created it first: use theirs, or the two would write Secrets
            // the other cannot read.
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Self::load(&path),
            Err(e) => Err(write_error(e.error)),
        }
    }

    /// The file this configuration came from.
    pub fn origin(&self) -> &Path {
        &self.inner.origin
    }

    /// Whether values stored under `key` go through a provider list (they may still be
    /// stored plain when `identity` comes first).
    pub fn covers(&self, key: &str) -> bool {
        self.providers_for(key).is_some()
    }

    fn providers_for(&self, key: &str) -> Option<&ProviderList> {
        self.inner
            .rules
            .iter()
            .find(|rule| rule.matchers.iter().any(|m| m.matches(key)))
            .map(|rule| &rule.providers)
    }

    /// Prefixes that together hold every key some provider list covers (whole-registry
    /// when a wildcard spans groups), for a pass over all of them.
    fn covered_prefixes(&self) -> Vec<String> {
        let mut prefixes = Vec::new();
        for matcher in self.inner.rules.iter().flat_map(|r| &r.matchers) {
            match matcher {
                Matcher::Exact { prefix, .. } | Matcher::Group { prefix, .. } => {
                    prefixes.push(prefix.clone());
                }
                Matcher::Core | Matcher::All => return vec![REGISTRY.to_owned()],
            }
        }
        prefixes
    }

    /// Whether `stored` at `key` was written by something other than the provider and key
    /// that writes now.
    fn is_stale(&self, key: &str, stored: &[u8]) -> bool {
        let Some(list) = self.providers_for(key) else {
            return false;
        };
        match list.providers.first() {
            Some(Provider::AesCbc(keys)) => {
                keys.first().is_some_and(|k| !stored.starts_with(&k.prefix))
            }
            Some(Provider::AesGcm(keys)) => {
                keys.first().is_some_and(|k| !stored.starts_with(&k.prefix))
            }
            Some(Provider::Identity) | None => stored.starts_with(ENCRYPTED_PREFIX),
        }
    }

    /// Whether some key under `prefix` may need decrypting; `false` lets list and watch
    /// pass the inner store's results through untouched.
    fn may_cover_prefix(&self, prefix: &str) -> bool {
        if pins_resource(prefix) {
            self.covers(prefix)
        } else {
            !self.inner.rules.is_empty()
        }
    }

    /// The bytes to store for `plain` at `key`: encrypted by the first provider configured
    /// for the key's resource, or `plain` itself when none is (or it is `identity`).
    pub fn encrypt(&self, key: &str, plain: &Bytes) -> Result<Bytes, EncryptionError> {
        let Some(list) = self.providers_for(key) else {
            return Ok(plain.clone());
        };
        match list.providers.first() {
            None | Some(Provider::Identity) => Ok(plain.clone()),
            Some(Provider::AesCbc(keys)) => match keys.first() {
                Some(k) => encrypt_cbc(k, plain),
                None => Ok(plain.clone()),
            },
            Some(Provider::AesGcm(keys)) => match keys.first() {
                Some(k) => encrypt_gcm(k, key, plain),
                None => Ok(plain.clone()),
            },
        }
    }

    /// The plain bytes of `stored`, read at `key`.
    pub fn decrypt(&self, key: &str, stored: &Bytes) -> Result<Bytes, EncryptionError> {
        let Some(list) = self.providers_for(key) else {
            return Ok(stored.clone());
        };
        let Some(rest) = stored.strip_prefix(ENCRYPTED_PREFIX) else {
            return if list
                .providers
                .iter()
                .any(|p| matches!(p, Provider::Identity))
            {
                Ok(stored.clone())
            } else {
                Err(EncryptionError::NotEncrypted {
                    config: self.inner.origin.clone(),
                })
            };
        };
        // `<provider>:v1:<key name>:<payload>`
        let malformed = |reason| EncryptionError::Malformed { reason };
        let (provider, rest) =
            split_colon(rest).ok_or(malformed("no provider name after k8s:enc:"))?;
        let rest = rest
            .strip_prefix(b"v1:")
            .ok_or(malformed("no v1: after the provider name"))?;
        let (key_name, payload) =
            split_colon(rest).ok_or(malformed("no key name after the provider"))?;
        let provider = String::from_utf8_lossy(provider);
        let key_name = String::from_utf8_lossy(key_name);
        let mut provider_listed = false;
        for configured in &list.providers {
            match configured {
                Provider::AesCbc(keys) if provider == "aescbc" => {
                    provider_listed = true;
                    if let Some(k) = keys.iter().find(|k| k.name == key_name) {
                        return decrypt_cbc(k, payload);
                    }
                }
                Provider::AesGcm(keys) if provider == "aesgcm" => {
                    provider_listed = true;
                    if let Some(k) = keys.iter().find(|k| k.name == key_name) {
                        return decrypt_gcm(k, key, payload);
                    }
                }
                _ => {}
            }
        }
        let config = self.inner.origin.clone();
        Err(if provider_listed {
            EncryptionError::UnknownKey {
                config,
                provider: provider.into_owned(),
                key_name: key_name.into_owned(),
            }
        } else {
            EncryptionError::UnknownProvider {
                config,
                provider: provider.into_owned(),
            }
        })
    }

    fn decrypt_kv(&self, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
        kv.value = self
            .decrypt(&kv.key, &kv.value)
            .map_err(|e| e.into_store_error(&kv.key))?;
        Ok(kv)
    }

    fn decrypt_event(&self, mut event: Event) -> Result<Event, StoreError> {
        event.kv = self.decrypt_kv(event.kv)?;
        event.prev = event.prev.map(|kv| self.decrypt_kv(kv)).transpose()?;
        Ok(event)
    }
}

fn split_colon(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == b':')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

fn default_config_yaml(key: &[u8; 32]) -> String {
    let secret = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        "# Created by moor: the keys that encrypt Secrets at rest in this data dir.\n\
         # Keep this file private and back it up with the data dir: without it the Secrets\n\
         # stored here cannot be read. Format: kube-apiserver's EncryptionConfiguration.\n\
         # To rotate: add a new key above key1, restart, rewrite every Secret, then remove key1.\n\
         apiVersion: {API_VERSION}\n\
         kind: {KIND}\n\
         resources:\n\
         \x20 - resources:\n\
         \x20     - secrets\n\
         \x20   providers:\n\
         \x20     - aescbc:\n\
         \x20         keys:\n\
         \x20           - name: key1\n\
         \x20             secret: {secret}\n\
         \x20     - identity: {{}}\n"
    )
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "encryption config is readable by others than its owner; it holds the keys to \
             every encrypted Secret (chmod 600 it)"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

fn parse_provider(origin: &Path, entry: &str, value: &Value) -> Result<Provider, EncryptionError> {
    let invalid = |entry: &str, reason: String| EncryptionError::Invalid {
        path: origin.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    let Value::Mapping(map) = value else {
        return Err(invalid(
            entry,
            "expected a mapping naming one provider, e.g. `aescbc: {keys: [...]}`".to_owned(),
        ));
    };
    let mut names = map.iter();
    let (Some((name, body)), None) = (names.next(), names.next()) else {
        return Err(invalid(
            entry,
            format!(
                "names {} providers; each entry must name exactly one",
                map.len()
            ),
        ));
    };
    let Some(name) = name.as_str() else {
        return Err(invalid(
            entry,
            "the provider name is not a string".to_owned(),
        ));
    };
    let entry = format!("{entry}.{name}");
    match name {
        "identity" => match body {
            Value::Null => Ok(Provider::Identity),
            Value::Mapping(m) if m.is_empty() => Ok(Provider::Identity),
            _ => Err(invalid(
                &entry,
                "takes no settings: write `identity: {}`".to_owned(),
            )),
        },
        "aescbc" | "aesgcm" => {
            let cbc = name == "aescbc";
            let keys = parse_keys(origin, &entry, body)?;
            let mut built_cbc = Vec::new();
            let mut built_gcm = Vec::new();
            for (k, (key_name, secret)) in keys.into_iter().enumerate() {
                let key_entry = format!("{entry}.keys[{k}] ({key_name:?})");
                let bad_key = || invalid(&key_entry, format!("the {name} cipher refused the key"));
                if cbc {
                    let algorithm = match secret.len() {
                        16 => &cipher::AES_128,
                        24 => &cipher::AES_192,
                        _ => &cipher::AES_256,
                    };
                    let encrypting = UnboundCipherKey::new(algorithm, &secret)
                        .and_then(PaddedBlockEncryptingKey::cbc_pkcs7)
                        .map_err(|_| bad_key())?;
                    let decrypting = UnboundCipherKey::new(algorithm, &secret)
                        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
                        .map_err(|_| bad_key())?;
                    built_cbc.push(CbcKey {
                        prefix: format!("k8s:enc:aescbc:v1:{key_name}:").into_bytes(),
                        name: key_name,
                        encrypting,
                        decrypting,
                    });
                } else {
                    let algorithm = match secret.len() {
                        16 => &aead::AES_128_GCM,
                        24 => &aead::AES_192_GCM,
                        _ => &aead::AES_256_GCM,
                    };
                    let key = UnboundKey::new(algorithm, &secret).map_err(|_| bad_key())?;
                    built_gcm.push(GcmKey {
                        prefix: format!("k8s:enc:aesgcm:v1:{key_name}:").into_bytes(),
                        name: key_name,
                        key: LessSafeKey::new(key),
                    });
                }
            }
            Ok(if cbc {
                Provider::AesCbc(built_cbc)
            } else {
                Provider::AesGcm(built_gcm)
            })
        }
        "secretbox" | "kms" => Err(EncryptionError::UnsupportedProvider {
            path: origin.to_owned(),
            entry,
            provider: name.to_owned(),
        }),
        other => Err(invalid(
            &entry,
            format!("unknown provider {other:?} (moor supports aescbc, aesgcm and identity)"),
        )),
    }
}

/// The `keys` of an aescbc/aesgcm provider: names and decoded secrets, checked.
fn parse_keys(
    origin: &Path,
    entry: &str,
    body: &Value,
) -> Result<Vec<(String, Vec<u8>)>, EncryptionError> {
    let invalid = |entry: &str, reason: String| EncryptionError::Invalid {
        path: origin.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    let Value::Mapping(body) = body else {
        return Err(invalid(
            entry,
            "expected a mapping with `keys: [{name, secret}]`".to_owned(),
        ));
    };
    if let Some(other) = body.keys().find(|k| k.as_str() != Some("keys")) {
        return Err(invalid(
            entry,
            format!(
                "unknown field {:?} (only `keys`)",
                other.as_str().unwrap_or("?")
            ),
        ));
    }
    let keys = match body.get("keys") {
        Some(Value::Sequence(keys)) if !keys.is_empty() => keys,
        Some(Value::Sequence(_)) | None | Some(Value::Null) => {
            return Err(invalid(
                &format!("{entry}.keys"),
                "at least one key is required".to_owned(),
            ));
        }
        Some(_) => {
            return Err(invalid(
                &format!("{entry}.keys"),
                "expected a list of `{name, secret}`".to_owned(),
            ));
        }
    };
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(keys.len());
    for (k, key) in keys.iter().enumerate() {
        let key_entry = format!("{entry}.keys[{k}]");
        let Value::Mapping(key) = key else {
            return Err(invalid(
                &key_entry,
                "expected a mapping `{name, secret}`".to_owned(),
            ));
        };
        if let Some(other) = key
            .keys()
            .find(|f| !matches!(f.as_str(), Some("name" | "secret")))
        {
            return Err(invalid(
                &key_entry,
                format!(
                    "unknown field {:?} (only `name` and `secret`)",
                    other.as_str().unwrap_or("?")
                ),
            ));
        }
        let name = match key.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => {
                return Err(invalid(
                    &key_entry,
                    "`name` is required and must be a non-empty string".to_owned(),
                ));
            }
        };
        let key_entry = format!("{key_entry} ({name:?})");
        // The name is part of every stored value's prefix, delimited by colons.
        if name.contains(':') || name.chars().any(char::is_whitespace) {
            return Err(invalid(
                &key_entry,
                "the key name must not contain ':' or whitespace".to_owned(),
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(invalid(
                &key_entry,
                "the key name is used twice in this provider".to_owned(),
            ));
        }
        let Some(Value::String(secret)) = key.get("secret") else {
            return Err(invalid(
                &key_entry,
                "`secret` is required: the base64 of a 32-byte key".to_owned(),
            ));
        };
        let Ok(secret) = base64::engine::general_purpose::STANDARD.decode(secret.trim()) else {
            return Err(invalid(
                &key_entry,
                "`secret` is not valid base64".to_owned(),
            ));
        };
        if ![16, 24, 32].contains(&secret.len()) {
            return Err(invalid(
                &key_entry,
                format!(
                    "`secret` decodes to {} bytes; AES takes a 16, 24 or 32-byte key \
                     (32 recommended)",
                    secret.len()
                ),
            ));
        }
        out.push((name, secret));
    }
    Ok(out)
}

fn encrypt_cbc(k: &CbcKey, plain: &[u8]) -> Result<Bytes, EncryptionError> {
    let failed = || EncryptionError::Encrypt {
        provider: "aescbc",
        key_name: k.name.clone(),
    };
    let mut ciphertext = Vec::with_capacity(plain.len() + BLOCK_LEN);
    ciphertext.extend_from_slice(plain);
    // `encrypt` draws a fresh random IV for every value, and hands it back to store.
    let context = k
        .encrypting
        .encrypt(&mut ciphertext)
        .map_err(|_| failed())?;
    let iv: &[u8] = (&context).try_into().map_err(|_| failed())?;
    if iv.len() != CBC_IV_LEN {
        return Err(failed());
    }
    let mut out = Vec::with_capacity(k.prefix.len() + CBC_IV_LEN + ciphertext.len());
    out.extend_from_slice(&k.prefix);
    out.extend_from_slice(iv);
    out.extend_from_slice(&ciphertext);
    Ok(Bytes::from(out))
}

fn decrypt_cbc(k: &CbcKey, payload: &[u8]) -> Result<Bytes, EncryptionError> {
    if payload.len() < CBC_IV_LEN + BLOCK_LEN {
        return Err(EncryptionError::Malformed {
            reason: "aescbc value shorter than an IV and one block",
        });
    }
    let (iv, ciphertext) = payload.split_at(CBC_IV_LEN);
    if ciphertext.len() % BLOCK_LEN != 0 {
        return Err(EncryptionError::Malformed {
            reason: "aescbc ciphertext is not a whole number of blocks",
        });
    }
    let iv: [u8; CBC_IV_LEN] = iv.try_into().map_err(|_| EncryptionError::Malformed {
        reason: "aescbc IV has the wrong length",
    })?;
    let mut buf = ciphertext.to_vec();
    let plain_len = k
        .decrypting
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| EncryptionError::Decrypt {
            provider: "aescbc",
            key_name: k.name.clone(),
        })?
        .len();
    buf.truncate(plain_len);
    Ok(Bytes::from(buf))
}

fn encrypt_gcm(k: &GcmKey, key: &str, plain: &[u8]) -> Result<Bytes, EncryptionError> {
    let mut nonce = [0u8; GCM_NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| EncryptionError::Random {
        purpose: "an AES-GCM nonce",
    })?;
    let start = k.prefix.len() + GCM_NONCE_LEN;
    let mut out = Vec::with_capacity(start + plain.len() + GCM_TAG_LEN);
    out.extend_from_slice(&k.prefix);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = k
        .key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(key.as_bytes()),
            &mut out[start..],
        )
        .map_err(|_| EncryptionError::Encrypt {
            provider: "aesgcm",
            key_name: k.name.clone(),
        })?;
    out.extend_from_slice(tag.as_ref());
    Ok(Bytes::from(out))
}

fn decrypt_gcm(k: &GcmKey, key: &str, payload: &[u8]) -> Result<Bytes, EncryptionError> {
    if payload.len() < GCM_NONCE_LEN + GCM_TAG_LEN {
        return Err(EncryptionError::Malformed {
            reason: "aesgcm value shorter than a nonce and a tag",
        });
    }
    let (nonce, sealed) = payload.split_at(GCM_NONCE_LEN);
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| EncryptionError::Malformed {
            reason: "aesgcm nonce has the wrong length",
        })?;
    let mut buf = sealed.to_vec();
    let plain_len = k
        .key
        .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
        .map_err(|_| EncryptionError::Decrypt {
            provider: "aesgcm",
            key_name: k.name.clone(),
        })?
        .len();
    buf.truncate(plain_len);
    Ok(Bytes::from(buf))
}

// ---------------------------------------------------------------------------------------
// The store decorator
// ---------------------------------------------------------------------------------------

/// A [`Store`] that encrypts the values of the resources an [`EncryptionConfig`] covers
/// before they reach `inner`, and decrypts them on the way out. Keys of other resources
/// pass through untouched. Callers see plain values everywhere: in what writes return, in
/// conflicts, in lists and in watch events (current and previous values).
#[derive(Clone)]
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    config: EncryptionConfig,
}

impl fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EncryptedStore {
    /// Wrap `inner`; every value `config` covers is encrypted from now on.
    pub fn new(inner: Arc<dyn Store>, config: EncryptionConfig) -> Self {
        EncryptedStore { inner, config }
    }

    /// The wrapped store (it holds the encrypted bytes).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The configuration in force.
    pub fn config(&self) -> &EncryptionConfig {
        &self.config
    }

    /// Rewrite every stored value of a configured resource that the first provider (with
    /// its first key) did not write: plain values after encryption was turned on, values of
    /// an older key after a rotation. Upstream gets this by replacing every Secret through
    /// the API; moor's API server skips writes that change nothing, so this is the way here.
    /// Each rewrite is conditional on the value's mod revision: a concurrent write (which
    /// encrypts with the current key anyway) wins. Returns how many values were rewritten;
    /// a value that cannot be decrypted stops it with an error naming the key.
    pub async fn rewrite_stale(&self) -> Result<usize, StoreError> {
        let mut rewritten = 0;
        for prefix in self.config.covered_prefixes() {
            let mut start_after = None;
            loop {
                let opts = ListOptions {
                    revision: None,
                    limit: Some(REWRITE_PAGE),
                    start_after: start_after.take(),
                };
                let page = self.inner.list(&prefix, opts).await?;
                for kv in &page.kvs {
                    if !self.config.is_stale(&kv.key, &kv.value) {
                        continue;
                    }
                    let plain = self
                        .config
                        .decrypt(&kv.key, &kv.value)
                        .map_err(|e| e.into_store_error(&kv.key))?;
                    let stored = self.encrypt(&kv.key, &plain)?;
                    if let UpdateOutcome::Updated(_) =
                        self.inner.update(&kv.key, stored, kv.mod_revision).await?
                    {
                        rewritten += 1;
                    }
                }
                match page.kvs.last() {
                    Some(last) if page.more => start_after = Some(last.key.clone()),
                    _ => break,
                }
            }
        }
        Ok(rewritten)
    }

    fn encrypt(&self, key: &str, value: &Bytes) -> Result<Bytes, StoreError> {
        // The limit is on what the caller wrote: a too-large value is refused with the size
        // the caller knows before any work. (Encryption adds a few dozen bytes; a value that
        // fits only without them is refused by the inner store, naming the key as well.)
        super::check_write(key, Some(value))?;
        self.config
            .encrypt(key, value)
            .map_err(|e| e.into_store_error(key))
    }
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        let (kv, revision) = self.inner.get(key).await?;
        let kv = kv.map(|kv| self.config.decrypt_kv(kv)).transpose()?;
        Ok((kv, revision))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let mut page = self.inner.list(prefix, opts).await?;
        if self.config.may_cover_prefix(prefix) {
            page.kvs = page
                .kvs
                .into_iter()
                .map(|kv| self.config.decrypt_kv(kv))
                .collect::<Result<_, _>>()?;
        }
        Ok(page)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        if !self.config.covers(key) {
            return self.inner.create(key, value).await;
        }
        let stored = self.encrypt(key, &value)?;
        let mut kv = self.inner.create(key, stored).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<UpdateOutcome, StoreError> {
        if !self.config.covers(key) {
            return self.inner.update(key, value, expected).await;
        }
        let stored = self.encrypt(key, &value)?;
        // The precondition is on mod revisions, which encryption leaves alone; only the
        // values handed back need decrypting.
        Ok(match self.inner.update(key, stored, expected).await? {
            UpdateOutcome::Updated(mut kv) => {
                kv.value = value;
                UpdateOutcome::Updated(kv)
            }
            UpdateOutcome::Conflict(current) => {
                UpdateOutcome::Conflict(current.map(|kv| self.config.decrypt_kv(kv)).transpose()?)
            }
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<DeleteOutcome, StoreError> {
        let outcome = self.inner.delete(key, expected).await?;
        if !self.config.covers(key) {
            return Ok(outcome);
        }
        Ok(match outcome {
            DeleteOutcome::Deleted { prev, revision } => DeleteOutcome::Deleted {
                prev: self.config.decrypt_kv(prev)?,
                revision,
            },
            DeleteOutcome::NotFound => DeleteOutcome::NotFound,
            DeleteOutcome::Conflict(current) => {
                DeleteOutcome::Conflict(self.config.decrypt_kv(current)?)
            }
        })
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.inner.current_revision().await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let stream = self.inner.watch(prefix, after).await?;
        if !self.config.may_cover_prefix(prefix) {
            return Ok(stream);
        }
        let config = self.config.clone();
        // An event that cannot be decrypted ends the stream after its error: a consumer that
        // carried on would silently miss that change. Checked before polling the inner
        // stream again, which may wait forever for a live event.
        let mut inner = stream;
        let mut failed = false;
        let stream = futures::stream::poll_fn(move |cx| {
            if failed {
                return Poll::Ready(None);
            }
            let item = ready!(inner.poll_next_unpin(cx))
                .map(|item| item.and_then(|event| config.decrypt_event(event)));
            failed = matches!(item, Some(Err(_)));
            Poll::Ready(item)
        });
        Ok(Box::pin(stream))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.inner.compacted_revision().await
    }

    async fn snapshot(&self, path: &Path) -> Result<(), StoreError> {
        // A snapshot holds the stored (encrypted) bytes: it is only as readable as the
        // config that goes with it.
        self.inner.snapshot(path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    const KEY1: [u8; 32] = [1; 32];
    const KEY2: [u8; 32] = [2; 32];

    fn b64(key: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    fn secret_key(name: &str) -> String {
        crate::api::registry::by_resource("", "v1", "secrets")
            .expect("secrets are served")
            .key(Some("default"), name)
    }

    fn config(yaml: &str) -> EncryptionConfig {
        EncryptionConfig::from_yaml(yaml, Path::new("test-config.yaml"))
            .unwrap_or_else(|e| panic!("config: {e}"))
    }

    fn config_err(yaml: &str) -> String {
        EncryptionConfig::from_yaml(yaml, Path::new("test-config.yaml"))
            .expect_err("config must be refused")
            .to_string()
    }

    /// One provider list for `resources`, providers given as YAML flow items.
    fn yaml_for(resources: &str, providers: &[String]) -> String {
        let mut yaml = format!(
            "apiVersion: {API_VERSION}\nkind: {KIND}\nresources:\n  - resources: [{resources}]\n    providers:\n"
        );
        for p in providers {
            yaml.push_str(&format!("      - {p}\n"));
        }
        yaml
    }

    fn aes(provider: &str, keys: &[(&str, &[u8])]) -> String {
        let keys: Vec<String> = keys
            .iter()
            .map(|(name, key)| format!("{{name: {name}, secret: \"{}\"}}", b64(key)))
            .collect();
        format!("{provider}: {{keys: [{}]}}", keys.join(", "))
    }

    fn identity() -> String {
        "identity: {}".to_owned()
    }

    const PLAIN: &[u8] = br#"{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}"#;

    #[test]
    fn aescbc_round_trips_in_upstream_format() {
        let c = config(&yaml_for("secrets", &[aes("aescbc", &[("key1", &KEY1)])]));
        let key = secret_key("db");
        let stored = c.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
        let prefix = b"k8s:enc:aescbc:v1:key1:";
        assert!(stored.starts_with(prefix));
        let body = stored.len() - prefix.len() - CBC_IV_LEN;
        assert_eq!(body % BLOCK_LEN, 0);
        assert!(body > PLAIN.len(), "PKCS#7 always pads");
        assert!(!contains(&stored, b"aHVudGVyMg=="));
        assert_eq!(c.decrypt(&key, &stored).unwrap(), PLAIN);
        // A fresh IV each time: the same value never encrypts to the same bytes.
        let again = c.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
        assert_ne!(stored, again);
        // The empty value round-trips too (one block of padding).
        let empty = c.encrypt(&key, &Bytes::new()).unwrap();
        assert_eq!(empty.len(), prefix.len() + CBC_IV_LEN + BLOCK_LEN);
        assert_eq!(c.decrypt(&key, &empty).unwrap(), Bytes::new());
    }

    #[test]
    fn aescbc_matches_a_known_vector() {
        // NIST SP 800-38A F.2.5 (CBC-AES256.Encrypt), first block, checks the byte layout
        // is upstream's: prefix, then IV, then ciphertext.
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap();
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let cipher = hex::decode("f58c4c04d6e5f1ba779eabfb5f7bfbd6").unwrap();
        let c = config(&yaml_for("secrets", &[aes("aescbc", &[("k", &key)])]));
        // What upstream would have stored: the vector's block, then PKCS#7's full padding
        // block, encrypted with the same key by chaining from the first ciphertext block.
        let mut stored = b"k8s:enc:aescbc:v1:k:".to_vec();
        stored.extend_from_slice(&iv);
        stored.extend_from_slice(&cipher);
        let mut padding = [16u8; 16];
        for (p, c) in padding.iter_mut().zip(&cipher) {
            *p ^= c;
        }
        let unbound = UnboundCipherKey::new(&cipher::AES_256, &key).unwrap();
        let ecb = cipher::EncryptingKey::ecb(unbound).unwrap();
        ecb.encrypt(&mut padding).unwrap();
        stored.extend_from_slice(&padding);
        assert_eq!(
            c.decrypt(&secret_key("v"), &Bytes::from(stored)).unwrap(),
            plain
        );
    }

    #[test]
    fn aesgcm_round_trips_and_binds_the_key() {
        for len in [16, 24, 32] {
            let secret = vec![7u8; len];
            let c = config(&yaml_for("secrets", &[aes("aesgcm", &[("g1", &secret)])]));
            let key = secret_key("db");
            let stored = c.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
            let prefix = b"k8s:enc:aesgcm:v1:g1:";
            assert!(stored.starts_with(prefix));
            assert_eq!(
                stored.len(),
                prefix.len() + GCM_NONCE_LEN + PLAIN.len() + GCM_TAG_LEN
            );
            assert_eq!(c.decrypt(&key, &stored).unwrap(), PLAIN);
            // The storage key is authenticated: a value moved to another key is refused.
            let err = c.decrypt(&secret_key("other"), &stored).unwrap_err();
            assert!(matches!(err, EncryptionError::Decrypt { .. }), "{err}");
        }
    }

    #[test]
    fn aescbc_takes_all_aes_key_sizes() {
        for len in [16, 24, 32] {
            let secret = vec![9u8; len];
            let c = config(&yaml_for("secrets", &[aes("aescbc", &[("k", &secret)])]));
            let key = secret_key("x");
            let stored = c.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
            assert_eq!(c.decrypt(&key, &stored).unwrap(), PLAIN);
        }
    }

    #[test]
    fn identity_first_stores_plain_and_reads_encrypted() {
        let writer = config(&yaml_for("secrets", &[aes("aescbc", &[("key1", &KEY1)])]));
        let c = config(&yaml_for(
            "secrets",
            &[identity(), aes("aescbc", &[("key1", &KEY1)])],
        ));
        let key = secret_key("db");
        let stored = c.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
        assert_eq!(stored, PLAIN, "identity first: written plain");
        let encrypted = writer.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
        assert_eq!(c.decrypt(&key, &encrypted).unwrap(), PLAIN);
    }

    #[test]
    fn plain_values_are_read_only_with_identity() {
        let key = secret_key("db");
        let with = config(&yaml_for(
            "secrets",
            &[aes("aescbc", &[("key1", &KEY1)]), identity()],
        ));
        assert_eq!(
            with.decrypt(&key, &Bytes::from_static(PLAIN)).unwrap(),
            PLAIN
        );
        let without = config(&yaml_for("secrets", &[aes("aescbc", &[("key1", &KEY1)])]));
        let err = without
            .decrypt(&key, &Bytes::from_static(PLAIN))
            .unwrap_err();
        assert!(matches!(err, EncryptionError::NotEncrypted { .. }), "{err}");
        assert!(err.to_string().contains("test-config.yaml"), "{err}");
    }

    #[test]
    fn unknown_key_and_provider_are_clear_errors() {
        let key = secret_key("db");
        let old = config(&yaml_for("secrets", &[aes("aescbc", &[("key9", &KEY1)])]));
        let stored = old.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
        let c = config(&yaml_for(
            "secrets",
            &[aes("aescbc", &[("key1", &KEY1)]), identity()],
        ));
        let err = c.decrypt(&key, &stored).unwrap_err();
        assert!(matches!(err, EncryptionError::UnknownKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("key9") && msg.contains("aescbc"), "{msg}");

        let gcm = config(&yaml_for("secrets", &[aes("aesgcm", &[("key1", &KEY1)])]));
        let err = gcm.decrypt(&key, &stored).unwrap_err();
        assert!(
            matches!(err, EncryptionError::UnknownProvider { .. }),
            "{err}"
        );

        // Providers moor never writes, and truncated values, are errors too, never
        // ciphertext handed back as if it were the value.
        for bad in [
            &b"k8s:enc:kms:v2:foo:xxxx"[..],
            b"k8s:enc:",
            b"k8s:enc:aescbc",
            b"k8s:enc:aescbc:v1:key1",
            b"k8s:enc:aescbc:v1:key1:short",
            b"k8s:enc:aescbc:v2:key1:0123456789abcdef0123456789abcdef",
        ] {
            assert!(
                c.decrypt(&key, &Bytes::copy_from_slice(bad)).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut odd = b"k8s:enc:aescbc:v1:key1:".to_vec();
        odd.extend_from_slice(&[0u8; CBC_IV_LEN + BLOCK_LEN + 3]);
        assert!(matches!(
            c.decrypt(&key, &Bytes::from(odd)).unwrap_err(),
            EncryptionError::Malformed { .. }
        ));
    }

    #[test]
    fn wrong_key_of_the_same_name_fails_cleanly() {
        let key = secret_key("db");
        for provider in ["aescbc", "aesgcm"] {
            let right = config(&yaml_for("secrets", &[aes(provider, &[("key1", &KEY1)])]));
            let wrong = config(&yaml_for("secrets", &[aes(provider, &[("key1", &KEY2)])]));
            // Several values: CBC padding may by chance look valid under a wrong key; it
            // must then not decrypt to the original, and never panic.
            for i in 0..32 {
                let plain = Bytes::from(format!("{{\"n\":{i}}}"));
                let stored = right.encrypt(&key, &plain).unwrap();
                match wrong.decrypt(&key, &stored) {
                    Err(EncryptionError::Decrypt { .. }) => {}
                    Err(other) => panic!("{provider}: unexpected error {other}"),
                    Ok(garbage) => {
                        assert_eq!(provider, "aescbc", "GCM must authenticate");
                        assert_ne!(garbage, plain);
                    }
                }
            }
            // Flipping one ciphertext bit: GCM refuses it.
            if provider == "aesgcm" {
                let mut stored = right
                    .encrypt(&key, &Bytes::from_static(PLAIN))
                    .unwrap()
                    .to_vec();
                let last = stored.len() - 1;
                stored[last] ^= 1;
                assert!(right.decrypt(&key, &Bytes::from(stored)).is_err());
            }
        }
    }

    #[test]
    fn key_rotation_reads_old_and_writes_new() {
        let key = secret_key("db");
        let before = config(&yaml_for(
            "secrets",
            &[aes("aescbc", &[("key1", &KEY1)]), identity()],
        ));
        let old = before.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
        let after = config(&yaml_for(
            "secrets",
            &[
                aes("aescbc", &[("key2", &KEY2), ("key1", &KEY1)]),
                identity(),
            ],
        ));
        assert_eq!(after.decrypt(&key, &old).unwrap(), PLAIN);
        let new = after.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
        assert!(new.starts_with(b"k8s:enc:aescbc:v1:key2:"));
        assert_eq!(after.decrypt(&key, &new).unwrap(), PLAIN);
        // Moving between providers works the same way.
        let to_gcm = config(&yaml_for(
            "secrets",
            &[
                aes("aesgcm", &[("g1", &KEY2)]),
                aes("aescbc", &[("key1", &KEY1)]),
            ],
        ));
        assert_eq!(to_gcm.decrypt(&key, &old).unwrap(), PLAIN);
        assert!(
            to_gcm
                .encrypt(&key, &Bytes::from_static(PLAIN))
                .unwrap()
                .starts_with(b"k8s:enc:aesgcm:v1:g1:")
        );
    }

    #[test]
    fn resources_select_keys() {
        let c = config(&format!(
            "apiVersion: {API_VERSION}\nkind: {KIND}\nresources:\n\
             - resources: [secrets, deployments.apps]\n  providers: [{}]\n\
             - resources: ['*.coordination.k8s.io']\n  providers: [{}]\n",
            aes("aescbc", &[("a", &KEY1)]),
            aes("aesgcm", &[("b", &KEY2)]),
        ));
        let key = |g: &str, r: &str| super::super::key::object_key(g, r, Some("ns"), "n");
        assert!(c.covers(&key("", "secrets")));
        assert!(c.covers(&key("apps", "deployments")));
        assert!(c.covers(&key("coordination.k8s.io", "leases")));
        assert!(!c.covers(&key("", "configmaps")));
        assert!(!c.covers(&key("apps", "replicasets")));
        assert!(!c.covers(&key("", "secretsx")));
        assert!(!c.covers("/other/secrets/ns/n"));
        let plain = Bytes::from_static(b"{}");
        assert_eq!(c.encrypt(&key("", "configmaps"), &plain).unwrap(), plain);
        assert!(
            c.encrypt(&key("coordination.k8s.io", "leases"), &plain)
                .unwrap()
                .starts_with(b"k8s:enc:aesgcm:v1:b:")
        );

        let core = config(&yaml_for("'*.'", &[aes("aescbc", &[("a", &KEY1)])]));
        let all = config(&yaml_for("'*.*'", &[aes("aescbc", &[("a", &KEY1)])]));
        // Agrees with the registry on which keys are core, for every served kind.
        for r in crate::api::registry::RESOURCES {
            let k = r.key(Some("ns"), "n");
            assert_eq!(core.covers(&k), r.group.is_empty(), "*. and {k}");
            assert!(all.covers(&k), "*.* and {k}");
            assert_eq!(
                core.may_cover_prefix(&r.prefix(None)),
                r.group.is_empty(),
                "*. and prefix of {k}"
            );
            assert!(pins_resource(&r.prefix(None)), "{k}");
        }
        assert!(!pins_resource("/registry/"));
        assert!(!pins_resource("/registry/apps/"));
        assert!(!pins_resource("/registry/secr"));
    }

    #[test]
    fn bad_configs_name_the_file_and_entry() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            ("a: [".to_owned(), vec!["test-config.yaml"]),
            (
                yaml_for("secrets", &[]).replace("    providers:\n", "    providers: []\n"),
                vec!["resources[0].providers", "at least one provider"],
            ),
            (
                yaml_for(
                    "secrets",
                    &["kms: {name: x, endpoint: unix:///k.sock}".to_owned()],
                ),
                vec!["resources[0].providers[0].kms", "\"kms\"", "not supported"],
            ),
            (
                yaml_for("secrets", &["secretbox: {keys: []}".to_owned()]),
                vec!["secretbox", "not supported"],
            ),
            (
                yaml_for(
                    "secrets",
                    &["aescbc: {keys: [{name: k1, secret: '!!notbase64'}]}".to_owned()],
                ),
                vec![
                    "resources[0].providers[0].aescbc.keys[0] (\"k1\")",
                    "base64",
                ],
            ),
            (
                yaml_for("secrets", &[aes("aesgcm", &[("short", &[1u8; 20])])]),
                vec!["keys[0] (\"short\")", "20 bytes"],
            ),
            (
                yaml_for("secrets", &[aes("aescbc", &[("a", &KEY1), ("a", &KEY2)])]),
                vec!["keys[1]", "twice"],
            ),
            (
                yaml_for("secrets", &[aes("aescbc", &[("a:b", &KEY1)])]),
                vec!["':'"],
            ),
            (
                yaml_for("secrets", &["aescbc: {keys: []}".to_owned()]),
                vec!["aescbc.keys", "at least one key"],
            ),
            (
                yaml_for(
                    "secrets",
                    &["{aescbc: {keys: []}, identity: {}}".to_owned()],
                ),
                vec!["providers[0]", "exactly one"],
            ),
            (
                yaml_for("secrets", &["rot13: {}".to_owned()]),
                vec!["rot13", "unknown provider"],
            ),
            (
                yaml_for("'*'", &[identity()]),
                vec!["resources[0].resources[0]", "*.*"],
            ),
            (yaml_for("Secrets", &[identity()]), vec!["lowercase"]),
            (
                yaml_for("'*.', secrets", &[identity()]),
                vec!["resources[0].resources[1]", "masked"],
            ),
            (
                yaml_for("'*.apps', deployments.apps", &[identity()]),
                vec!["masked"],
            ),
            (
                yaml_for("secrets", &[identity()]).replace(API_VERSION, "v1"),
                vec!["apiVersion"],
            ),
            (
                format!("apiVersion: {API_VERSION}\nkind: {KIND}\nresources: []\n"),
                vec!["resources", "at least one"],
            ),
        ];
        for (yaml, needles) in cases {
            let msg = config_err(&yaml);
            assert!(msg.contains("test-config.yaml"), "{msg}");
            for needle in needles {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}\n{yaml}");
            }
        }
        // A secret never shows up in an error, even when it is the problem.
        let secret = b64(&[3u8; 31]);
        let msg = config_err(&yaml_for(
            "secrets",
            &[format!(
                "aescbc: {{keys: [{{name: k, secret: \"{secret}\"}}]}}"
            )],
        ));
        assert!(!msg.contains(&secret), "{msg}");
        let msg = config_err(&yaml_for(
            "secrets",
            &[format!("aescbc: {{keys: \"{secret}\"}}")],
        ));
        assert!(!msg.contains(&secret), "{msg}");
    }

    #[test]
    fn debug_never_prints_keys() {
        let c = config(&yaml_for("secrets", &[aes("aescbc", &[("key1", &KEY1)])]));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("key1") && shown.contains("secrets"),
            "{shown}"
        );
        assert!(!shown.contains(&b64(&KEY1)), "{shown}");
    }

    #[cfg(unix)]
    #[test]
    fn load_or_create_writes_a_private_file_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let first = EncryptionConfig::load_or_create(&data_dir).unwrap();
        let path = data_dir.join(CONFIG_FILE_NAME);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let yaml = std::fs::read_to_string(&path).unwrap();
        assert!(
            yaml.contains("aescbc") && yaml.contains("name: key1"),
            "{yaml}"
        );
        // Only the config file is left in the dir: no temp files.
        let names: Vec<_> = std::fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CONFIG_FILE_NAME)]);

        let key = secret_key("db");
        let stored = first.encrypt(&key, &Bytes::from_static(PLAIN)).unwrap();
        assert!(stored.starts_with(b"k8s:enc:aescbc:v1:key1:"));
        // Secrets stored before encryption stay readable; others pass through.
        assert_eq!(
            first.decrypt(&key, &Bytes::from_static(PLAIN)).unwrap(),
            PLAIN
        );
        assert!(!first.covers("/registry/configmaps/default/x"));

        // The second call reuses the file (and so the key) rather than making a new one.
        let second = EncryptionConfig::load_or_create(&data_dir).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), yaml);
        assert_eq!(second.decrypt(&key, &stored).unwrap(), PLAIN);
        // A new data dir gets a different key.
        EncryptionConfig::load_or_create(&dir.path().join("other")).unwrap();
        let other = std::fs::read_to_string(dir.path().join("other").join(CONFIG_FILE_NAME));
        assert_ne!(other.unwrap(), yaml);
    }

    #[test]
    fn load_reports_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE_NAME), "kind: [").unwrap();
        let err = EncryptionConfig::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains(CONFIG_FILE_NAME), "{err}");
        let err = EncryptionConfig::load(&dir.path().join("missing.yaml")).unwrap_err();
        assert!(matches!(err, EncryptionError::Read { .. }), "{err}");
    }

    async fn encrypted_store(dir: &Path, yaml: &str) -> (EncryptedStore, Arc<dyn Store>) {
        let inner: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.join("state.db")).await.unwrap());
        let store = EncryptedStore::new(inner.clone(), config(yaml));
        (store, inner)
    }

    #[tokio::test]
    async fn store_encrypts_every_write_and_decrypts_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = yaml_for("secrets", &[aes("aesgcm", &[("key1", &KEY1)]), identity()]);
        let (store, inner) = encrypted_store(dir.path(), &yaml).await;
        let key = secret_key("db");
        let cm = "/registry/configmaps/default/db".to_owned();
        let start = store.current_revision().await.unwrap();
        let mut watch = store.watch("/registry/", start).await.unwrap();
        let mut secrets_watch = store.watch("/registry/secrets/", start).await.unwrap();

        let v1 = Bytes::from_static(b"{\"v\":1}");
        let v2 = Bytes::from_static(b"{\"v\":2}");
        let created = store.create(&key, v1.clone()).await.unwrap();
        assert_eq!(created.value, v1);
        let raw = inner.get(&key).await.unwrap().0.unwrap();
        assert!(raw.value.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
        assert_eq!(raw.mod_revision, created.mod_revision);
        store.create(&cm, v1.clone()).await.unwrap();
        assert_eq!(inner.get(&cm).await.unwrap().0.unwrap().value, v1);

        // Conflicts hand back the plain current value.
        match store
            .update(&key, v2.clone(), created.mod_revision - 1)
            .await
            .unwrap()
        {
            UpdateOutcome::Conflict(Some(kv)) => assert_eq!(kv, created),
            other => panic!("expected a conflict, got {other:?}"),
        }
        let updated = match store
            .update(&key, v2.clone(), created.mod_revision)
            .await
            .unwrap()
        {
            UpdateOutcome::Updated(kv) => kv,
            other => panic!("expected an update, got {other:?}"),
        };
        assert_eq!(updated.value, v2);
        assert_eq!(store.get(&key).await.unwrap().0.unwrap(), updated);
        let page = store
            .list("/registry/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(page.kvs.len(), 2);
        assert!(
            page.kvs
                .iter()
                .all(|kv| !kv.value.starts_with(ENCRYPTED_PREFIX))
        );

        match store
            .delete(&key, Some(created.mod_revision))
            .await
            .unwrap()
        {
            DeleteOutcome::Conflict(kv) => assert_eq!(kv, updated),
            other => panic!("expected a conflict, got {other:?}"),
        }
        match store.delete(&key, None).await.unwrap() {
            DeleteOutcome::Deleted { prev, .. } => assert_eq!(prev, updated),
            other => panic!("expected a delete, got {other:?}"),
        }

        for w in [&mut watch, &mut secrets_watch] {
            let mut seen = Vec::new();
            while seen.len() < 3 {
                let event = w.next().await.unwrap().unwrap();
                if event.kv.key == key {
                    seen.push(event);
                }
            }
            assert_eq!(seen[0].kv.value, v1);
            assert_eq!(seen[1].kv.value, v2);
            assert_eq!(seen[1].prev.as_ref().unwrap().value, v1);
            assert_eq!(seen[2].kv.value, v2, "a delete carries the last value");
            assert_eq!(seen[2].prev.as_ref().unwrap().value, v2);
        }
    }

    #[tokio::test]
    async fn rewrite_stale_moves_every_value_to_the_first_key() {
        let dir = tempfile::tempdir().unwrap();
        let old_yaml = yaml_for("secrets", &[aes("aescbc", &[("key1", &KEY1)]), identity()]);
        let (old_store, inner) = encrypted_store(dir.path(), &old_yaml).await;
        inner
            .create(&secret_key("plain"), Bytes::from_static(PLAIN))
            .await
            .unwrap();
        for i in 0..(REWRITE_PAGE + 3) {
            old_store
                .create(
                    &secret_key(&format!("s{i:04}")),
                    Bytes::from(format!("{{\"n\":{i}}}")),
                )
                .await
                .unwrap();
        }
        let cm = "/registry/configmaps/default/x";
        inner.create(cm, Bytes::from_static(b"{}")).await.unwrap();
        let rotated = EncryptedStore::new(
            inner.clone(),
            config(&yaml_for(
                "secrets",
                &[
                    aes("aescbc", &[("key2", &KEY2), ("key1", &KEY1)]),
                    identity(),
                ],
            )),
        );
        let before = inner.current_revision().await.unwrap();
        assert_eq!(rotated.rewrite_stale().await.unwrap(), REWRITE_PAGE + 4);
        let raw = inner
            .list("/registry/secrets/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(raw.kvs.len(), REWRITE_PAGE + 4);
        assert!(
            raw.kvs
                .iter()
                .all(|kv| kv.value.starts_with(b"k8s:enc:aescbc:v1:key2:"))
        );
        assert_eq!(
            rotated
                .get(&secret_key("plain"))
                .await
                .unwrap()
                .0
                .unwrap()
                .value,
            PLAIN
        );
        assert_eq!(
            rotated
                .get(&secret_key("s0007"))
                .await
                .unwrap()
                .0
                .unwrap()
                .value,
            "{\"n\":7}"
        );
        let cm_kv = inner.get(cm).await.unwrap().0.unwrap();
        assert!(
            cm_kv.mod_revision <= before,
            "other resources are left alone"
        );
        // Nothing left to do the second time.
        assert_eq!(rotated.rewrite_stale().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn store_reports_undecryptable_values_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = yaml_for("secrets", &[aes("aescbc", &[("key1", &KEY1)])]);
        let (store, inner) = encrypted_store(dir.path(), &yaml).await;
        let key = secret_key("plain");
        let start = store.current_revision().await.unwrap();
        // Written behind the decorator's back: plain, and identity is not configured.
        inner.create(&key, Bytes::from_static(PLAIN)).await.unwrap();
        let err = store.get(&key).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&key) && msg.contains("unencrypted"), "{msg}");
        assert!(
            !msg.contains("hunter") && !msg.contains("aHVudGVy"),
            "{msg}"
        );
        assert!(
            store
                .list("/registry/secrets/", ListOptions::default())
                .await
                .is_err()
        );
        let mut w = store.watch("/registry/", start).await.unwrap();
        assert!(w.next().await.unwrap().is_err());
        assert!(w.next().await.is_none(), "the stream ends after the error");
    }
}

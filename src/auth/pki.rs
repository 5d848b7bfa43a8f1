//! The cluster's certificate authority and the certificates it signs.
//!
//! On first start the API server creates a CA (ECDSA P-256, ten years) in `DATA_DIR/pki`:
//! [`CA_CERT`] and [`CA_KEY`] (0600). Every start then issues a fresh serving certificate
//! for the addresses the server is reached at (written to [`SERVING_CERT`] and
//! [`SERVING_KEY`] for operators' `openssl s_client`; clients trust the CA, never the
//! serving certificate, so re-issuing it costs nothing) and an admin client certificate
//! for the kubeconfig. Client certificates carry the user as their CN and the groups as
//! their O, as kube-apiserver reads them ([`identity`]).
//!
//! Node agents joining with a bootstrap token send a certificate signing request; the CA
//! signs it for `system:node:NAME` ([`ClusterCa::sign_node_csr`]) with the subject this
//! module sets, whatever the request asked for.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::{GROUP_NODES, NODE_USER_PREFIX};

/// The CA certificate's file name in the pki dir.
pub const CA_CERT: &str = "ca.crt";
/// The CA private key's file name in the pki dir.
pub const CA_KEY: &str = "ca.key";
/// The API server's serving certificate.
pub const SERVING_CERT: &str = "apiserver.crt";
/// The API server's serving key.
pub const SERVING_KEY: &str = "apiserver.key";
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long issued certificates are valid (kubeadm's default for client certificates).
pub const CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Issued certificates start this long in the past: clocks of nodes drift.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Errors of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something that is not the certificate or key expected.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Generating or signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate signing request is unusable.
    #[error("certificate signing request refused: {0}")]
    BadRequest(String),
    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Malformed(String),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// The cluster CA: signs serving and client certificates.
pub struct ClusterCa {
    dir: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// The CA in `dir` (`DATA_DIR/pki`), created on first use. The key is written 0600 to
    /// a temp file and linked into place after the certificate, so a crash never leaves a
    /// certificate without its key, and two processes starting at once agree on one CA.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        match std::fs::read_to_string(&key_path) {
            Ok(key_pem) => {
                let cert_pem =
                    std::fs::read_to_string(&cert_path).map_err(|source| PkiError::Read {
                        path: cert_path.clone(),
                        source,
                    })?;
                return Self::from_pem(dir, &cert_path, cert_pem, &key_path, &key_pem);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PkiError::Read {
                    path: key_path,
                    source,
                });
            }
        }
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| PkiError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "moor-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let cert_pem = params.self_signed(&key)?.pem();
        // The certificate first (a plain overwrite: nobody trusts it before the key
        // exists), then the key, linked without clobbering: whoever links first wins and
        // the loser reads the winner's pair.
        write_atomically(&cert_path, cert_pem.as_bytes(), 0o644)?;
        let key_pem = key.serialize_pem();
        match link_new(&key_path, key_pem.as_bytes()) {
            Ok(()) => {}
            Err(PkiError::Write { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                return Self::load_or_create(dir);
            }
            Err(e) => return Err(e),
        }
        Self::from_pem(dir, &cert_path, cert_pem, &key_path, &key_pem)
    }

    fn from_pem(
        dir: &Path,
        cert_path: &Path,
        cert_pem: String,
        key_path: &Path,
        key_pem: &str,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Invalid {
            path: key_path.to_owned(),
            reason: format!("not a private key: {e}"),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| PkiError::Invalid {
            path: cert_path.to_owned(),
            reason: format!("not a CA certificate: {e}"),
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            cert_pem,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate's path.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// A serving certificate for `hosts` (DNS names and IP addresses), written to
    /// [`SERVING_CERT`] and [`SERVING_KEY`] in the pki dir.
    pub fn issue_serving(&self, hosts: &[String]) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for host in hosts {
            let san = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.clone().try_into()?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "moor-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, CERT_VALIDITY);
        let cert = params.signed_by(&key, &self.issuer)?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write_atomically(
            &self.dir.join(SERVING_KEY),
            issued.key_pem.as_bytes(),
            0o600,
        )?;
        write_atomically(
            &self.dir.join(SERVING_CERT),
            issued.cert_pem.as_bytes(),
            0o644,
        )?;
        Ok(issued)
    }

    /// A client certificate for `user` in `groups` (at most one: rcgen writes one
    /// organization per subject), with a fresh key. Certificates from other tools with
    /// several O attributes are read with every group ([`identity`]).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<Issued, PkiError> {
        if groups.len() > 1 {
            return Err(PkiError::BadRequest(format!(
                "a certificate issued here carries one group, not {}",
                groups.len()
            )));
        }
        let key = KeyPair::generate()?;
        let params = client_params(user, groups.iter().copied())?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Sign a node agent's certificate signing request (PEM). The request must ask for
    /// `system:node:NAME` in `system:nodes` (what the agent believes it is); `allowed`
    /// decides whether the caller may have a certificate for that node. The certificate
    /// carries exactly that subject and client-auth usage, whatever else the request asked
    /// for. Returns the certificate (PEM) and the node name.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        allowed: impl FnOnce(&str) -> bool,
    ) -> Result<(String, String), PkiError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadRequest(format!("not a valid PEM CSR: {e}")))?;
        let dn = &request.params.distinguished_name;
        let common_name = dn
            .get(&DnType::CommonName)
            .and_then(dn_value_text)
            .ok_or_else(|| PkiError::BadRequest("the CSR has no common name".to_owned()))?;
        let node = common_name
            .strip_prefix(NODE_USER_PREFIX)
            .filter(|n| crate::api::validation::is_dns1123_subdomain(n).is_empty())
            .ok_or_else(|| {
                PkiError::BadRequest(format!(
                    "the CSR asks for {common_name:?}; node certificates are for \"system:node:NAME\""
                ))
            })?
            .to_owned();
        let organization = dn.get(&DnType::OrganizationName).and_then(dn_value_text);
        if organization.as_deref() != Some(GROUP_NODES) {
            return Err(PkiError::BadRequest(format!(
                "the CSR's organization must be {GROUP_NODES:?}"
            )));
        }
        if !allowed(&node) {
            return Err(PkiError::BadRequest(format!(
                "this credential may not obtain a certificate for node {node:?}"
            )));
        }
        let params = client_params(&common_name, [GROUP_NODES])?;
        let signed = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.issuer)?;
        Ok((signed.pem(), node))
    }
}

/// The text of a distinguished-name value, whatever string type carries it.
fn dn_value_text(value: &rcgen::DnValue) -> Option<String> {
    use rcgen::DnValue;
    match value {
        DnValue::Utf8String(s) => Some(s.clone()),
        DnValue::PrintableString(s) => Some(s.as_str().to_owned()),
        DnValue::Ia5String(s) => Some(s.as_str().to_owned()),
        DnValue::TeletexString(s) => Some(s.as_str().to_owned()),
        DnValue::BmpString(_) | DnValue::UniversalString(_) => None,
        _ => None,
    }
}

/// A new key and a certificate signing request for node `node`: what a joining agent
/// sends. Returns (CSR PEM, key PEM).
pub fn node_csr(node: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    // Only the subject: usages and validity are the signer's to set.
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, GROUP_NODES);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{NODE_USER_PREFIX}{node}"));
    let csr = params.serialize_request(&key)?;
    let pem = csr
        .pem()
        .map_err(|e| PkiError::BadRequest(format!("encoding the CSR: {e}")))?;
    Ok((pem, key.serialize_pem()))
}

fn client_params<'a>(
    user: &str,
    groups: impl IntoIterator<Item = &'a str>,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    for group in groups {
        params
            .distinguished_name
            .push(DnType::OrganizationName, group);
    }
    params.distinguished_name.push(DnType::CommonName, user);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, CERT_VALIDITY);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
}

/// The user (CN) and groups (every O) a client certificate names, as kube-apiserver's
/// x509 authenticator reads them.
pub fn identity(cert_der: &[u8]) -> Result<(String, Vec<String>), PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::Malformed(e.to_string()))?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| PkiError::Malformed("the certificate has no common name".to_owned()))?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_owned)
        .collect();
    Ok((user, groups))
}

/// When a certificate (PEM) stops being valid.
pub fn not_after(cert_pem: &str) -> Result<jiff::Timestamp, PkiError> {
    let der = first_pem_der(cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::Malformed(e.to_string()))?;
    jiff::Timestamp::from_second(cert.validity().not_after.timestamp())
        .map_err(|e| PkiError::Malformed(e.to_string()))
}

/// The DER of the first PEM block of `pem`.
pub fn first_pem_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| PkiError::Malformed(format!("no PEM certificate: {e}")))
}

/// Write `bytes` to `path` with `mode` through a synced temp file renamed into place.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    let file = temp_with(path, bytes, mode).map_err(err)?;
    file.persist(path).map_err(|e| err(e.error))?;
    sync_parent(path).map_err(err)
}

/// Link `bytes` into `path` (mode 0600) unless it exists (then `AlreadyExists`).
fn link_new(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    let file = temp_with(path, bytes, 0o600).map_err(err)?;
    file.persist_noclobber(path).map_err(|e| err(e.error))?;
    sync_parent(path).map_err(err)
}

fn temp_with(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // tempfile creates 0600: a key is never readable by others, not even for a moment.
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    if mode != 0o600 {
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    file.as_file().sync_all()?;
    Ok(file)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let again = ClusterCa::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.cert_pem(), again.cert_pem());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(CA_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn client_certificates_carry_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let issued = ca.issue_client("alice", &["dev"]).unwrap();
        let der = first_pem_der(&issued.cert_pem).unwrap();
        assert_eq!(
            identity(&der).unwrap(),
            ("alice".to_owned(), vec!["dev".to_owned()])
        );
        assert!(ca.issue_client("alice", &["dev", "ops"]).is_err());
        let expires = not_after(&issued.cert_pem).unwrap();
        assert!(expires > jiff::Timestamp::now());
    }

    #[test]
    fn node_csrs_are_signed_for_the_node_they_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let (csr, _key) = node_csr("n1").unwrap();
        let (cert, node) = ca.sign_node_csr(&csr, |n| n == "n1").unwrap();
        assert_eq!(node, "n1");
        let der = first_pem_der(&cert).unwrap();
        assert_eq!(
            identity(&der).unwrap(),
            ("system:node:n1".to_owned(), vec!["system:nodes".to_owned()])
        );
        let refused = ca.sign_node_csr(&csr, |n| n == "n2").unwrap_err();
        assert!(refused.to_string().contains("\"n1\""), "{refused}");
        // A request for another kind of user is refused whoever asks.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        params.distinguished_name.push(DnType::CommonName, "admin");
        let admin = params.serialize_request(&key).unwrap().pem().unwrap();
        assert!(ca.sign_node_csr(&admin, |_| true).is_err());
        assert!(ca.sign_node_csr("garbage", |_| true).is_err());
    }
}

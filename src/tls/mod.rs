//! TLS for both ends: the server's configuration (PEM files or a generated self-signed
//! certificate) and the chat client's, which trusts a pinned SHA-256 fingerprint or a CA file.
//!
//! Everything uses rustls with the *ring* provider. Errors name the command-line option and the
//! file at fault, so they can be printed as they are.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, InconsistentKeys, RootCertStore, ServerConfig,
    SignatureScheme,
};

/// The only application protocol spoken over TLS: HTTP/1.1 (WebSocket upgrades included).
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// How long a generated self-signed certificate stays valid.
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How far back a generated certificate's validity starts, to tolerate clocks that run late.
const SELF_SIGNED_BACKDATE: Duration = Duration::from_secs(24 * 60 * 60);

/// A TLS set-up problem, worded for the person who typed the command line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file given on the command line does not exist.
    #[error("{option}: file `{}` not found", path.display())]
    NotFound {
        /// The option that named the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A file exists but cannot be read (a directory, no permission, an I/O error).
    #[error("{option}: cannot read `{}`: {reason}", path.display())]
    Unreadable {
        /// The option that named the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why, as the operating system put it.
        reason: String,
    },
    /// A file has PEM sections that cannot be decoded.
    #[error("{option}: `{}` is not valid PEM: {reason}", path.display())]
    BadPem {
        /// The option that named the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file that should hold certificates holds none.
    #[error("{option}: `{}` holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- section)", path.display())]
    NoCertificate {
        /// The option that named the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable private key.
    #[error("--ssl-key: `{}` holds no PEM private key{}", path.display(),
        if *encrypted { " (it is encrypted: decrypt it with `openssl pkey -in KEY -out PLAIN.key`)" }
        else { " (expected a -----BEGIN PRIVATE KEY----- section, or RSA or EC PRIVATE KEY)" })]
    NoKey {
        /// The key file.
        path: PathBuf,
        /// Whether the file holds an encrypted key, which is not supported.
        encrypted: bool,
    },
    /// The private key does not belong to the certificate.
    #[error("--ssl-key: the private key in `{}` does not match the certificate in `{}`",
        key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The key file holds a key of a kind or size that cannot be used.
    #[error("--ssl-key: `{}` holds a key this server cannot use (supported: RSA of 2048 to \
             8192 bits, ECDSA P-256 or P-384, Ed25519)", .0.display())]
    BadKey(PathBuf),
    /// A certificate file holds a PEM certificate that is not a valid X.509 certificate.
    #[error("--ssl-certificate: the first certificate in `{}` cannot be parsed as X.509",
        .0.display())]
    BadCertificate(PathBuf),
    /// A CA file holds certificates, none of which can serve as a trust anchor.
    #[error("--ca-file: `{}` holds no certificate usable as a trust anchor ({ignored} unparsable)",
        path.display())]
    NoTrustAnchor {
        /// The CA file.
        path: PathBuf,
        /// How many certificates were rejected.
        ignored: usize,
    },
    /// A pinned fingerprint is not 32 hexadecimal bytes.
    #[error(
        "--fingerprint: `{0}` is not a SHA-256 fingerprint: expected 32 hex bytes such as \
             `AB:CD:…` (the server prints it at start)"
    )]
    BadFingerprint(String),
    /// The client was given no way to trust the server.
    #[error(
        "TLS needs a way to trust the server: pass --fingerprint with the SHA-256 fingerprint \
             the server printed at start, or --ca-file with the certificate authority that signed \
             its certificate"
    )]
    NoTrust,
    /// A name given for the self-signed certificate is neither an IP address nor a DNS name.
    #[error("cannot put `{name}` in a certificate: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// What rcgen said.
        reason: String,
    },
    /// Generating the self-signed certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration (should not happen with the ring provider).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What a generated self-signed certificate looks like to its users.
#[derive(Clone)]
pub struct SelfSigned {
    /// The certificate in PEM, for users who want to import it.
    pub cert_pem: String,
    /// Its SHA-256 fingerprint as browsers show it (see [`fingerprint`]).
    pub fingerprint: String,
    /// The private key in PKCS#8 PEM, to save it for the next start. Never printed.
    pub key_pem: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 fingerprint of a DER certificate as browsers show it: 32 uppercase hex bytes
/// separated by colons.
///
/// ```
/// let f = dyspatcher::tls::fingerprint(b"abc");
/// assert!(f.starts_with("BA:78:16:BF:"));
/// assert_eq!(f.len(), 32 * 3 - 1);
/// ```
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = ::ring::digest::digest(&::ring::digest::SHA256, cert_der);
    let mut out = String::with_capacity(32 * 3);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Builds the server's TLS configuration from PEM files: the certificate chain (leaf first), its
/// private key (PKCS#8, PKCS#1 or SEC1) and an optional CA bundle appended to the chain.
pub fn load_server_config(
    cert: &Path,
    key: &Path,
    cabundle: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut chain = read_certificates("--ssl-certificate", cert)?;
    if let Some(bundle) = cabundle {
        chain.extend(read_certificates("--ssl-cabundle", bundle)?);
    }
    let signing_key = signing_key_from_pem(key, &read_file("--ssl-key", key)?)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                key: key.to_path_buf(),
                cert: cert.to_path_buf(),
            })
        }
        Err(_) => return Err(TlsError::BadCertificate(cert.to_path_buf())),
    }
    let config = server_builder()?.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    Ok(finish_server(config))
}

/// Generates a self-signed certificate (fresh ECDSA P-256 key, valid from a day ago for a year)
/// for `names` plus `localhost` and `127.0.0.1`, and a server configuration that uses it.
///
/// IP addresses become IP subject alternative names, everything else DNS names.
pub fn self_signed(names: &[String]) -> Result<(Arc<ServerConfig>, SelfSigned), TlsError> {
    let mut all: Vec<String> = Vec::new();
    for name in names
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1"])
    {
        let name = name.trim();
        if !name.is_empty() && !all.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            all.push(name.to_string());
        }
    }
    for name in &all {
        // Validate one by one so the error names the culprit.
        rcgen::CertificateParams::new(vec![name.clone()]).map_err(|e| TlsError::BadName {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    }
    let mut params = rcgen::CertificateParams::new(all).map_err(generate_error)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dyspatcher self-signed");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = SystemTime::now();
    params.not_before = (now - SELF_SIGNED_BACKDATE).into();
    params.not_after = (now + SELF_SIGNED_VALIDITY).into();

    let key_pair =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generate_error)?;
    let cert = params.self_signed(&key_pair).map_err(generate_error)?;
    let cert_der = cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let info = SelfSigned {
        cert_pem: cert.pem(),
        fingerprint: fingerprint(&cert_der),
        key_pem: zeroize::Zeroizing::new(key_pair.serialize_pem()),
    };
    let config = server_builder()?.with_single_cert(vec![cert_der], key_der)?;
    Ok((finish_server(config), info))
}

fn server_builder(
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, TlsError> {
    let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
    Ok(ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth())
}

fn finish_server(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

fn generate_error(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// Reads a whole file, turning I/O failures into errors that name `option`.
fn read_file(option: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => TlsError::NotFound {
            option,
            path: path.to_path_buf(),
        },
        _ => TlsError::Unreadable {
            option,
            path: path.to_path_buf(),
            reason: io_reason(&e),
        },
    })
}

/// The OS's message without the " (os error N)" suffix, in lower case as in our other messages.
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

fn read_certificates(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates_from_pem(option, path, &read_file(option, path)?)
}

/// Parses the PEM text of `--ssl-certificate` or `--ssl-cabundle` (named by `option`, read from
/// `path`): every certificate in it, at least one.
pub fn certificates_from_pem(
    option: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(option, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            option,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Parses the PEM text of `--ssl-key` (read from `path`) into a key rustls can sign with.
pub fn signing_key_from_pem(
    path: &Path,
    bytes: &[u8],
) -> Result<Arc<dyn rustls::sign::SigningKey>, TlsError> {
    let key_der = private_key_from_pem(path, bytes)?;
    ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|_| TlsError::BadKey(path.to_path_buf()))
}

fn private_key_from_pem(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
            encrypted: bytes.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED"),
        },
        other => pem_error("--ssl-key", path, other),
    })
}

fn pem_error(option: &'static str, path: &Path, e: pem::Error) -> TlsError {
    let reason = match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no -----END line".to_string(),
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed".to_string(),
        pem::Error::Base64Decode(_) => "a section is not valid base64".to_string(),
        pem::Error::SectionTooLarge => "a section is too large".to_string(),
        other => other.to_string(),
    };
    TlsError::BadPem {
        option,
        path: path.to_path_buf(),
        reason,
    }
}

/// A self-signed certificate kept in `dir` and reused at every start while it covers the same
/// names, so that people accept it once and its fingerprint stays the same. A new one is made when
/// the names change (another network) or the kept one is over 330 days old (it lasts a year).
/// Returns whether the kept one was reused.
pub fn persistent_self_signed(
    names: &[String],
    dir: &Path,
) -> Result<(Arc<ServerConfig>, SelfSigned, bool), TlsError> {
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    sorted.sort();
    sorted.dedup();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(sorted.join(",").as_bytes());
    let stem = format!("self-signed-{}", crate::crypto::hex(&digest[..6]));
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    let fresh_enough = std::fs::metadata(&cert_path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < Duration::from_secs(330 * 86_400));
    if fresh_enough {
        if let (Ok(config), Ok(cert_pem), Ok(key_pem)) = (
            load_server_config(&cert_path, &key_path, None),
            std::fs::read_to_string(&cert_path),
            std::fs::read_to_string(&key_path),
        ) {
            if let Some(Ok(der)) = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() {
                let info = SelfSigned {
                    fingerprint: fingerprint(&der),
                    cert_pem,
                    key_pem: zeroize::Zeroizing::new(key_pem),
                };
                return Ok((config, info, true));
            }
        }
    }
    let (config, info) = self_signed(names)?;
    save_private(dir, &key_path, info.key_pem.as_bytes())
        .and_then(|()| std::fs::write(&cert_path, &info.cert_pem))
        .map_err(|e| TlsError::Generate(format!("cannot keep it in {}: {e}", dir.display())))?;
    Ok((config, info, false))
}

fn save_private(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    std::fs::rename(&tmp, path)
}

mod client;

pub use client::client_config;
#[cfg(test)]
use client::parse_fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_through_parse() {
        let f = fingerprint(b"certificate");
        let bytes = parse_fingerprint(&f).unwrap();
        assert_eq!(parse_fingerprint(&f.to_lowercase()).unwrap(), bytes);
        assert_eq!(parse_fingerprint(&f.replace(':', "")).unwrap(), bytes);
    }

    #[test]
    fn bad_fingerprints_are_rejected() {
        let zz = "ZZ".repeat(32);
        let long = "A".repeat(65);
        let accented = "é".repeat(32);
        for bad in ["", "AB:CD", zz.as_str(), long.as_str(), accented.as_str()] {
            assert!(
                matches!(parse_fingerprint(bad), Err(TlsError::BadFingerprint(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn client_without_trust_explains_the_options() {
        let err = client_config(None, None).unwrap_err().to_string();
        assert!(
            err.contains("--fingerprint") && err.contains("--ca-file"),
            "{err}"
        );
    }

    #[test]
    fn self_signed_rejects_bad_names() {
        let err = self_signed(&["bad name\u{e9}".to_string()]).unwrap_err();
        assert!(matches!(err, TlsError::BadName { .. }), "{err}");
    }
}

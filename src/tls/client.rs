//! TLS for the chat client (`dyspatcher connect`, the load generator): trust a pinned SHA-256
//! fingerprint of the server's certificate, as SSH does with host keys, or a CA file.

use super::*;

/// Builds the chat client's TLS configuration.
///
/// With `pin` (a fingerprint as [`fingerprint`] prints it; case and colons do not matter) exactly
/// the server certificate with that SHA-256 is accepted, whatever names and dates it carries, as
/// SSH does with host keys; the handshake signatures are still verified. A pin takes precedence
/// over `ca_file`. With `ca_file` only, the server's chain must lead to one of its certificates
/// and name the host connected to (standard web PKI rules).
pub fn client_config(
    pin: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match (pin, ca_file) {
        (Some(pin), _) => {
            let verifier = PinnedCert {
                sha256: parse_fingerprint(pin)?,
                algorithms: provider.signature_verification_algorithms,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        (None, Some(path)) => {
            let mut roots = RootCertStore::empty();
            let (_, ignored) =
                roots.add_parsable_certificates(read_certificates("--ca-file", path)?);
            if roots.is_empty() {
                return Err(TlsError::NoTrustAnchor {
                    path: path.to_path_buf(),
                    ignored,
                });
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
        (None, None) => return Err(TlsError::NoTrust),
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Parses a fingerprint written as [`fingerprint`] prints it, in any case, colons optional.
pub(super) fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let bad = || TlsError::BadFingerprint(text.to_string());
    let hex: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b':' && !b.is_ascii_whitespace())
        .collect();
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Accepts exactly one server certificate, identified by its SHA-256.
#[derive(Debug)]
struct PinnedCert {
    sha256: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ::ring::digest::digest(&::ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            // `General` rather than `InvalidCertificate(Other(..))`: rustls shows the latter's
            // message through `Debug`, and this one is meant for the user.
            Err(rustls::Error::General(format!(
                "the server's certificate has fingerprint {}, not the one given with --fingerprint",
                fingerprint(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

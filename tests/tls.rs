//! TLS set-up against real files made by the `openssl` command, and real handshakes over
//! 127.0.0.1 between a `TlsAcceptor` and a `TlsConnector` using `dyspatcher::tls` configs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dyspatcher::tls::{self, TlsError};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::pki_types::ServerName;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dyspatcher-tls-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl` in `dir` and returns its standard output; panics with its stderr on failure.
fn openssl(dir: &TempDir, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(&dir.0)
        .output()
        .expect("the openssl command is needed by these tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed RSA certificate for `localhost`, as an operator would make one.
fn rsa_cert(dir: &TempDir, stem: &str) -> (PathBuf, PathBuf) {
    let (key, cert) = (format!("{stem}.key"), format!("{stem}.crt"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
        ],
    );
    (dir.path(&cert), dir.path(&key))
}

/// The fingerprint openssl shows for a PEM certificate, in the `AB:CD:…` form.
fn openssl_fingerprint(dir: &TempDir, cert: &Path) -> String {
    let out = openssl(
        dir,
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            cert.to_str().unwrap(),
        ],
    );
    out.trim().rsplit('=').next().unwrap().to_string()
}

fn with_timeout<T>(fut: impl std::future::Future<Output = T>) -> T {
    smol::block_on(smol::future::or(fut, async {
        smol::Timer::after(TIMEOUT).await;
        panic!("timed out after {TIMEOUT:?}");
    }))
}

/// Serves one TLS connection on 127.0.0.1 (echoes "ping" as "pong") and connects to it with
/// `client` under `name`. Returns the certificates the client saw, or the client's error.
fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<usize, String> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    with_timeout(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_task = smol::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut tls = TlsAcceptor::from(server).accept(stream).await.ok()?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.ok()?;
            assert_eq!(&buf, b"ping");
            tls.write_all(b"pong").await.ok()?;
            tls.flush().await.ok()?;
            Some(())
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let result = async {
            let mut tls = TlsConnector::from(client)
                .connect(name, stream)
                .await
                .map_err(|e| e.to_string())?;
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
            let seen = conn.peer_certificates().map_or(0, |c| c.len());
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            assert_eq!(&buf, b"pong");
            Ok(seen)
        }
        .await;
        let served = server_task.await;
        assert_eq!(
            served.is_some(),
            result.is_ok(),
            "server and client disagree"
        );
        result
    })
}

#[test]
fn openssl_certificate_serves_a_pinned_client() {
    let dir = TempDir::new();
    let (cert, key) = rsa_cert(&dir, "server");
    let server = tls::load_server_config(&cert, &key, None).unwrap();
    let pin = openssl_fingerprint(&dir, &cert);
    assert_eq!(pin.len(), 95, "{pin}");

    let client = tls::client_config(Some(&pin), None).unwrap();
    assert_eq!(handshake(server.clone(), client, "localhost"), Ok(1));

    // Case and colons do not matter; the name does not either with a pin.
    let relaxed = pin.replace(':', "").to_lowercase();
    let client = tls::client_config(Some(&relaxed), None).unwrap();
    assert_eq!(handshake(server, client, "elsewhere.example"), Ok(1));
}

#[test]
fn wrong_pin_fails_the_handshake() {
    let dir = TempDir::new();
    let (cert, key) = rsa_cert(&dir, "server");
    let server = tls::load_server_config(&cert, &key, None).unwrap();
    let wrong = tls::fingerprint(b"some other certificate");
    let client = tls::client_config(Some(&wrong), None).unwrap();
    let err = handshake(server, client, "localhost").unwrap_err();
    assert!(
        err.contains("the server's certificate has fingerprint"),
        "{err}"
    );
}

#[test]
fn every_private_key_format_loads() {
    let dir = TempDir::new();
    let (cert, pkcs8) = rsa_cert(&dir, "server");
    let pkcs1 = dir.path("pkcs1.key");
    let pkcs8_str = pkcs8.to_str().unwrap();
    openssl(
        &dir,
        &[
            "rsa",
            "-in",
            pkcs8_str,
            "-traditional",
            "-out",
            pkcs1.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read_to_string(&pkcs1)
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    tls::load_server_config(&cert, &pkcs8, None).unwrap();
    tls::load_server_config(&cert, &pkcs1, None).unwrap();

    openssl(
        &dir,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ec.key",
            "-subj",
            "/CN=localhost",
            "-out",
            "ec.crt",
            "-days",
            "2",
        ],
    );
    assert!(std::fs::read_to_string(dir.path("ec.key"))
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    let server = tls::load_server_config(&dir.path("ec.crt"), &dir.path("ec.key"), None).unwrap();
    let pin = openssl_fingerprint(&dir, &dir.path("ec.crt"));
    let client = tls::client_config(Some(&pin), None).unwrap();
    assert_eq!(handshake(server, client, "localhost"), Ok(1));
}

#[test]
fn missing_and_unreadable_files_are_named() {
    let dir = TempDir::new();
    let (cert, key) = rsa_cert(&dir, "server");
    let nowhere = dir.path("nowhere.crt");

    let err = tls::load_server_config(&nowhere, &key, None).unwrap_err();
    assert!(matches!(
        err,
        TlsError::NotFound {
            option: "--ssl-certificate",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        format!("--ssl-certificate: file `{}` not found", nowhere.display())
    );

    let err = tls::load_server_config(&cert, &nowhere, None).unwrap_err();
    assert!(err.to_string().starts_with("--ssl-key: file `"), "{err}");

    let err = tls::load_server_config(&cert, &key, Some(&nowhere)).unwrap_err();
    assert!(
        err.to_string().starts_with("--ssl-cabundle: file `"),
        "{err}"
    );

    // Tests run as root, for whom chmod 000 blocks nothing: a directory cannot be read by anyone.
    let err = tls::load_server_config(&dir.0, &key, None).unwrap_err();
    assert!(matches!(
        err,
        TlsError::Unreadable {
            option: "--ssl-certificate",
            ..
        }
    ));
    let text = err.to_string();
    assert!(
        text.starts_with("--ssl-certificate: cannot read `"),
        "{text}"
    );
    assert!(text.contains("directory"), "{text}");

    let err = tls::load_server_config(&cert, &dir.0, None).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Unreadable {
                option: "--ssl-key",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn files_without_pem_are_rejected() {
    let dir = TempDir::new();
    let (cert, key) = rsa_cert(&dir, "server");
    let text = dir.write("notes.txt", "these are not the files you are looking for\n");

    let err = tls::load_server_config(&text, &key, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--ssl-certificate: `{}` holds no PEM certificate (expected a -----BEGIN \
             CERTIFICATE----- section)",
            text.display()
        )
    );

    let err = tls::load_server_config(&cert, &text, None).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::NoKey {
                encrypted: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("--ssl-key: `"), "{err}");
    assert!(
        err.to_string().contains("holds no PEM private key"),
        "{err}"
    );

    // The certificate file is not a key file.
    let err = tls::load_server_config(&cert, &cert, None).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err}");

    let broken = dir.write(
        "broken.crt",
        "-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
    );
    let err = tls::load_server_config(&broken, &key, None).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::BadPem {
                option: "--ssl-certificate",
                ..
            }
        ),
        "{err}"
    );

    // PEM, but not a certificate inside.
    let garbage = dir.write(
        "garbage.crt",
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    );
    let err = tls::load_server_config(&garbage, &key, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--ssl-certificate: the first certificate in `{}` cannot be parsed as X.509",
            garbage.display()
        )
    );

    let truncated = dir.write("truncated.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let err = tls::load_server_config(&truncated, &key, None).unwrap_err();
    assert!(matches!(err, TlsError::BadPem { .. }), "{err}");
}

#[test]
fn encrypted_key_gets_a_hint() {
    let dir = TempDir::new();
    let (cert, key) = rsa_cert(&dir, "server");
    openssl(
        &dir,
        &[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "enc.key",
        ],
    );
    let err = tls::load_server_config(&cert, &dir.path("enc.key"), None).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::NoKey {
                encrypted: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("openssl pkey"), "{err}");
}

#[test]
fn key_of_another_certificate_is_a_mismatch() {
    let dir = TempDir::new();
    let (cert, _) = rsa_cert(&dir, "server");
    let (_, other_key) = rsa_cert(&dir, "other");
    let err = tls::load_server_config(&cert, &other_key, None).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "--ssl-key: the private key in `{}` does not match the certificate in `{}`",
            other_key.display(),
            cert.display()
        )
    );

    // Another key type entirely (EC key, RSA certificate) is a mismatch too.
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.key",
        ],
    );
    let err = tls::load_server_config(&cert, &dir.path("ec.key"), None).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn key_too_small_for_ring_is_refused() {
    let dir = TempDir::new();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "small.key",
            "-out",
            "small.crt",
            "-days",
            "2",
        ],
    );
    let err =
        tls::load_server_config(&dir.path("small.crt"), &dir.path("small.key"), None).unwrap_err();
    assert!(matches!(err, TlsError::BadKey(_)), "{err:?}");
    assert!(err.to_string().starts_with("--ssl-key: `"), "{err}");
}

#[test]
fn empty_ca_bundle_is_rejected() {
    let dir = TempDir::new();
    let (cert, key) = rsa_cert(&dir, "server");
    let empty = dir.write("empty.pem", "");
    let err = tls::load_server_config(&cert, &key, Some(&empty)).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::NoCertificate {
                option: "--ssl-cabundle",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("--ssl-cabundle: `"), "{err}");
}

/// A CA, and a leaf for `localhost` signed by it.
fn ca_and_leaf(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=Test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
    );
    let ext = dir.write(
        "leaf.ext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "leaf.crt",
            "-extfile",
            ext.to_str().unwrap(),
        ],
    );
    (
        dir.path("leaf.crt"),
        dir.path("leaf.key"),
        dir.path("ca.crt"),
    )
}

#[test]
fn ca_bundle_is_sent_and_ca_file_client_verifies_the_chain() {
    let dir = TempDir::new();
    let (leaf, key, ca) = ca_and_leaf(&dir);
    let server = tls::load_server_config(&leaf, &key, Some(&ca)).unwrap();
    let client = tls::client_config(None, Some(&ca)).unwrap();
    assert_eq!(
        handshake(server.clone(), client.clone(), "localhost"),
        Ok(2)
    );

    // The standard verifier checks the name, unlike a pin.
    let err = handshake(server, client, "elsewhere.example").unwrap_err();
    assert!(err.contains("certificate"), "{err}");

    // A CA that did not sign the server's certificate is no use.
    let (other_ca, _) = rsa_cert(&dir, "other-ca");
    let server = tls::load_server_config(&leaf, &key, None).unwrap();
    let client = tls::client_config(None, Some(&other_ca)).unwrap();
    assert!(handshake(server, client, "localhost").is_err());
}

#[test]
fn ca_file_errors_name_the_option() {
    let dir = TempDir::new();
    let err = tls::client_config(None, Some(&dir.path("none.crt"))).unwrap_err();
    assert!(err.to_string().starts_with("--ca-file: file `"), "{err}");
    let empty = dir.write("empty.crt", "\n");
    let err = tls::client_config(None, Some(&empty)).unwrap_err();
    assert!(err.to_string().starts_with("--ca-file: `"), "{err}");
    let err = tls::client_config(Some("12:34"), None).unwrap_err();
    assert!(
        err.to_string().starts_with("--fingerprint: `12:34`"),
        "{err}"
    );
}

#[test]
fn self_signed_certificate_matches_openssl_and_serves() {
    let dir = TempDir::new();
    let names = [
        "chat.example".to_string(),
        "192.168.1.20".to_string(),
        "::1".to_string(),
    ];
    let (server, info) = tls::self_signed(&names).unwrap();
    let pem = dir.write("self.crt", &info.cert_pem);
    assert_eq!(info.fingerprint, openssl_fingerprint(&dir, &pem));
    assert_eq!(info.fingerprint.len(), 95);
    assert!(info
        .fingerprint
        .chars()
        .all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));

    let text = openssl(&dir, &["x509", "-noout", "-text", "-in", "self.crt"]);
    for san in [
        "DNS:chat.example",
        "DNS:localhost",
        "IP Address:192.168.1.20",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ] {
        assert!(text.contains(san), "{san} missing from:\n{text}");
    }
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    assert!(
        text.contains("NIST CURVE: P-256") || text.contains("prime256v1"),
        "{text}"
    );
    // Valid now, and for about a year.
    openssl(
        &dir,
        &["x509", "-noout", "-checkend", "0", "-in", "self.crt"],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-noout",
            "-checkend",
            &(360 * 86400).to_string(),
            "-in",
            "self.crt",
        ],
    );
    let late = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-checkend",
            &(370 * 86400).to_string(),
            "-in",
            "self.crt",
        ])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert!(
        !late.status.success(),
        "the certificate should expire within a year"
    );

    let client = tls::client_config(Some(&info.fingerprint), None).unwrap();
    assert_eq!(handshake(server.clone(), client, "localhost"), Ok(1));

    // A fresh certificate has a fresh key and fingerprint: the old pin no longer works.
    let (_, again) = tls::self_signed(&[]).unwrap();
    assert_ne!(again.fingerprint, info.fingerprint);
    let client = tls::client_config(Some(&again.fingerprint), None).unwrap();
    assert!(handshake(server, client, "localhost").is_err());
}

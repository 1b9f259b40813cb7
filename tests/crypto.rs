//! Cryptography against the openssl CLI, and round trips with tampering.
mod common;
use std::process::Command;

use dyspatcher::crypto::{self, ChainKey, CryptoError, Identity, PublicIdentity};

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("crypto");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn key_id_matches_openssl_for_pkcs1_and_pkcs8_keys() {
    for (file, args) in [
        ("pkcs1.pem", vec!["genrsa", "-traditional", "2048"]),
        (
            "pkcs8.pem",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
    ] {
        let path = temp(file);
        let pem = openssl(&args);
        std::fs::write(&path, &pem).unwrap();
        let public = temp(&format!("{file}.pub"));
        openssl(&[
            "rsa",
            "-in",
            path.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        let der = openssl(&[
            "pkey",
            "-pubin",
            "-in",
            public.to_str().unwrap(),
            "-outform",
            "DER",
        ]);
        let sha = Command::new("sha256sum")
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        sha.stdin.as_ref().unwrap().write_all(&der).unwrap();
        let expected = String::from_utf8(sha.wait_with_output().unwrap().stdout).unwrap();
        let expected = expected.split_whitespace().next().unwrap();
        let id = Identity::from_pem(&String::from_utf8(pem).unwrap()).unwrap();
        assert_eq!(id.public().key_id(), expected, "{file}");
        let from_public =
            PublicIdentity::from_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
        assert_eq!(from_public.key_id(), expected);
    }
}

#[test]
fn openssl_opens_what_we_wrap_and_verifies_what_we_sign() {
    let key_path = temp("interop.pem");
    std::fs::write(&key_path, openssl(&["genrsa", "2048"])).unwrap();
    let id = Identity::from_pem(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    let k = key_path.to_str().unwrap();
    // RSA-OAEP-SHA256 with MGF1-SHA256, as the README of Dyspatcher documents for openssl.
    let wrapped = id.public().wrap(b"0123456789abcdef0123456789abcdef");
    let wrapped_path = temp("wrapped.bin");
    std::fs::write(&wrapped_path, &wrapped).unwrap();
    let opened = openssl(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        k,
        "-in",
        wrapped_path.to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
    ]);
    assert_eq!(opened, b"0123456789abcdef0123456789abcdef");
    // And the other way: openssl wraps, we unwrap.
    let secret = temp("secret.bin");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let theirs = openssl(&[
        "pkeyutl",
        "-encrypt",
        "-inkey",
        k,
        "-in",
        secret.to_str().unwrap(),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
    ]);
    assert_eq!(*id.unwrap_key(&theirs).unwrap(), [7u8; 32]);
    // RSA-PSS SHA-256 salt 32: openssl verifies our signature.
    let msg = temp("msg.bin");
    std::fs::write(&msg, b"signed bytes").unwrap();
    let sig = temp("sig.bin");
    std::fs::write(&sig, id.sign(b"signed bytes")).unwrap();
    let out = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            "/dev/stdin",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-signature",
            sig.to_str().unwrap(),
            msg.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    out.stdin
        .as_ref()
        .unwrap()
        .write_all(id.public().to_pem().as_bytes())
        .unwrap();
    let out = out.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
}

#[test]
fn signatures_and_wrapping_refuse_tampering() {
    let keys = common::keys(2);
    let (a, b) = (&keys[0], &keys[1]);
    let sig = a.sign(b"message");
    assert_eq!(a.public().verify(b"message", &sig), Ok(()));
    assert_eq!(
        a.public().verify(b"messagf", &sig),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        b.public().verify(b"message", &sig),
        Err(CryptoError::BadSignature)
    );
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert_eq!(
        a.public().verify(b"message", &bad),
        Err(CryptoError::BadSignature)
    );
    let wrapped = a.public().wrap(&[1u8; 32]);
    assert_eq!(*a.unwrap_key(&wrapped).unwrap(), [1u8; 32]);
    assert_eq!(b.unwrap_key(&wrapped).err(), Some(CryptoError::Unwrap));
    let mut bad = wrapped.clone();
    bad[5] ^= 1;
    assert_eq!(a.unwrap_key(&bad).err(), Some(CryptoError::Unwrap));
    assert_eq!(a.unwrap_key(b"short").err(), Some(CryptoError::Unwrap));
}

#[test]
fn aes_gcm_round_trip_and_tampering() {
    let key = [9u8; 32];
    let (iv, ct) = crypto::aes_seal(&key, b"hello");
    assert_eq!(crypto::aes_open(&key, &iv, &ct).unwrap(), b"hello");
    let mut bad = ct.clone();
    bad[0] ^= 1;
    assert_eq!(crypto::aes_open(&key, &iv, &bad), Err(CryptoError::Open));
    assert_eq!(
        crypto::aes_open(&[8u8; 32], &iv, &ct),
        Err(CryptoError::Open)
    );
    assert_eq!(
        crypto::aes_open(&key, &iv[..11], &ct),
        Err(CryptoError::Open)
    );
    let (iv2, _) = crypto::aes_seal(&key, b"hello");
    assert_ne!(iv, iv2, "every seal takes a fresh IV");
}

#[test]
fn the_chain_ratchets_forward_as_documented() {
    // Known-answer test: HMAC-SHA-256(CK, 0x01) and (CK, 0x02), computed by openssl.
    let ck = ChainKey::from_bytes(zeroize::Zeroizing::new([0u8; 32]));
    let hmac = |label: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf '\\0{label}' | openssl dgst -sha256 -mac HMAC -macopt hexkey:{} -r",
                "00".repeat(32)
            ))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(crypto::hex(&*ck.message_key()), hmac("01"));
    assert_eq!(crypto::hex(ck.next().bytes()), hmac("02"));
    assert_ne!(
        crypto::hex(ck.next().next().bytes()),
        crypto::hex(ck.next().bytes())
    );
    assert_eq!(
        crypto::commitment(ck.bytes()),
        crypto::hex(&<sha2::Sha256 as sha2::Digest>::digest([0u8; 32]))
    );
}

#[test]
fn bad_pem_and_bad_sizes_are_named() {
    assert_eq!(
        Identity::from_pem("garbage").err().unwrap(),
        CryptoError::NotRsaPrivateKey
    );
    let small = std::fs::read_to_string(common::fixture("small1024.pem")).unwrap();
    assert_eq!(
        Identity::from_pem(&small).err().unwrap(),
        CryptoError::KeySize(1024)
    );
    let ec = openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ]);
    assert_eq!(
        Identity::from_pem(&String::from_utf8(ec).unwrap())
            .err()
            .unwrap(),
        CryptoError::NotRsaPrivateKey
    );
    let big = openssl(&["genrsa", "5120"]);
    let big = Identity::from_pem(&String::from_utf8(big).unwrap())
        .err()
        .unwrap();
    assert_eq!(
        big.to_string(),
        "RSA key of 5120 bits: between 2048 and 4096 bits required"
    );
    // A saved key loads back to the same identity.
    let keys = common::keys(1);
    let again = Identity::from_pem(&keys[0].private_pem()).unwrap();
    assert_eq!(again.public().key_id(), keys[0].public().key_id());
    assert!(
        !format!("{:?}", keys[0]).contains("PRIVATE"),
        "Debug never shows key material"
    );
}

#[test]
fn public_exponents_other_than_65537_are_refused() {
    for (e, ok) in [("3", false), ("65539", false), ("65537", true)] {
        let pem = openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-pkeyopt",
            &format!("rsa_keygen_pubexp:{e}"),
        ]);
        let path = temp(&format!("exponent-{e}.pem"));
        std::fs::write(&path, pem).unwrap();
        let der = openssl(&[
            "pkey",
            "-in",
            path.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        let got = dyspatcher::crypto::PublicIdentity::from_spki_der(&der);
        match ok {
            true => assert!(got.is_ok(), "e = {e}"),
            false => assert_eq!(
                got.err().map(|e| e.to_string()).as_deref(),
                Some("RSA public exponent must be 65537"),
                "e = {e}"
            ),
        }
    }
}

//! Fuzzes the PEM and key loaders: the admin's private key file (and the key cache's, read the
//! same way), public keys in PEM and in SPKI DER as `join` carries them, and the TLS certificate
//! and key files. The first byte picks the loader; the rest is the file.
#![no_main]

use std::path::Path;

use dyspatcher::crypto::{Identity, PublicIdentity, MAX_RSA_BITS, MIN_RSA_BITS};
use dyspatcher::tls;
use libfuzzer_sys::fuzz_target;

fn check_public(key: &PublicIdentity) {
    assert!((MIN_RSA_BITS..=MAX_RSA_BITS).contains(&key.bits()));
    assert_eq!(key.key_id().len(), 64);
    // What was accepted reads back the same.
    let again = PublicIdentity::from_spki_der(key.spki_der()).expect("an accepted key reloads");
    assert_eq!(again.key_id(), key.key_id());
}

fuzz_target!(|input: &[u8]| {
    let Some((&which, file)) = input.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(file);
    let path = Path::new("fuzz.pem");
    match which % 5 {
        0 => {
            if let Ok(id) = Identity::from_pem(&text) {
                check_public(id.public());
                // A loaded key must sign what its public half verifies.
                let sig = id.sign(b"fuzz");
                id.public()
                    .verify(b"fuzz", &sig)
                    .expect("own signature verifies");
            }
        }
        1 => {
            if let Ok(key) = PublicIdentity::from_pem(&text) {
                check_public(&key);
            }
        }
        2 => {
            if let Ok(key) = PublicIdentity::from_spki_der(file) {
                check_public(&key);
            }
        }
        3 => {
            if let Ok(certs) = tls::certificates_from_pem("--ssl-certificate", path, file) {
                assert!(!certs.is_empty());
            }
        }
        _ => {
            let _ = tls::signing_key_from_pem(path, file);
        }
    }
});

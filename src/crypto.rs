//! Cryptographic primitives: identities (RSA key pairs), key IDs, RSA-PSS signatures, RSA-OAEP
//! key wrapping, AES-256-GCM and the sender-key chain. See `docs/PROTOCOL.md` for how they combine.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use getrandom::rand_core::UnwrapErr;
use getrandom::SysRng;
use ring::signature::{RsaKeyPair, UnparsedPublicKey, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, PrivateKey, PublicKey};
use sha2::{Digest, Sha256};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
pub const MAX_RSA_BITS: usize = 4096;
/// Bits of a freshly generated key (the admin's, when no key file is given).
pub const DEFAULT_RSA_BITS: usize = 4096;
/// Length of an AES-GCM IV in bytes.
pub const IV_LEN: usize = 12;
/// Length of a symmetric key (AES-256, chain keys) in bytes.
pub const KEY_LEN: usize = 32;

/// A 32-byte secret that is wiped when dropped.
pub type SecretKey = zeroize::Zeroizing<[u8; KEY_LEN]>;

/// Why a key, a signature or a ciphertext was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The bytes are not an RSA public key in SPKI DER form.
    #[error("not an RSA public key (SPKI DER expected)")]
    NotRsaPublicKey,
    /// The key size is outside the accepted range.
    #[error("RSA key of {0} bits: between {MIN_RSA_BITS} and {MAX_RSA_BITS} bits required")]
    KeySize(usize),
    /// The public exponent is not 65537.
    #[error("RSA public exponent must be 65537")]
    Exponent,
    /// The PEM text holds no usable RSA private key.
    #[error("not an RSA private key in PEM form (PKCS#8 or PKCS#1 expected)")]
    NotRsaPrivateKey,
    /// The key pair cannot be used for signing.
    #[error("the private key cannot sign: {0}")]
    Unusable(String),
    /// A signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A wrapped key cannot be unwrapped with this private key.
    #[error("wrapped key cannot be opened with this key")]
    Unwrap,
    /// An authenticated ciphertext was altered or the key is wrong.
    #[error("ciphertext cannot be opened (altered, or wrong key)")]
    Open,
}

/// Lowercase hex of `bytes`.
///
/// ```
/// assert_eq!(dyspatcher::crypto::hex(&[0x00, 0xab, 0x7f]), "00ab7f");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The key ID of a public key: lowercase hex SHA-256 of its SPKI DER, as
/// `openssl pkey -pubin -in public.pem -outform DER | sha256sum` prints it.
///
/// ```
/// let id = dyspatcher::crypto::key_id(b"");
/// assert_eq!(id, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
/// ```
pub fn key_id(spki_der: &[u8]) -> String {
    hex(&Sha256::digest(spki_der))
}

/// SHA-256 of a chain key, hex: what a sender-key distribution commits to.
pub fn commitment(chain_key: &[u8; KEY_LEN]) -> String {
    hex(&Sha256::digest(chain_key))
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

/// A fresh random 128-bit id as 32 lowercase hex characters (message ids, sender key ids).
pub fn random_id() -> String {
    hex(&random_bytes::<16>())
}

/// Someone's public key, parsed once and ready to verify and to wrap for.
#[derive(Clone)]
pub struct PublicIdentity {
    spki_der: Vec<u8>,
    key_id: String,
    pkcs1_der: Vec<u8>,
    oaep: PublicKey,
    bits: usize,
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicIdentity({} bits, {})",
            self.bits,
            &self.key_id[..12]
        )
    }
}

impl PublicIdentity {
    /// Parses an SPKI DER RSA public key, refusing sizes outside 2048–4096 bits.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let oaep = match PublicKey::from_public_key_der(der) {
            Ok(key) => key,
            // rsa refuses keys over its own maximum with the same error as garbage; tell them apart.
            Err(_) => return Err(oversized_or_not_rsa(der)),
        };
        Self::from_rsa(oaep, der.to_vec())
    }

    fn from_rsa(oaep: PublicKey, spki_der: Vec<u8>) -> Result<Self, CryptoError> {
        let bits = oaep.size() * 8;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(CryptoError::KeySize(bits));
        }
        let e = oaep.e().to_be_bytes();
        let first = e.iter().position(|&b| b != 0).unwrap_or(e.len());
        if e[first..] != [1, 0, 1] {
            return Err(CryptoError::Exponent);
        }
        let pkcs1_der = oaep
            .to_pkcs1_der()
            .map_err(|_| CryptoError::NotRsaPublicKey)?
            .into_vec();
        Ok(Self {
            key_id: key_id(&spki_der),
            spki_der,
            pkcs1_der,
            oaep,
            bits,
        })
    }

    /// Parses a `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let key = PublicKey::from_public_key_pem(pem).map_err(|_| CryptoError::NotRsaPublicKey)?;
        let der = key
            .to_public_key_der()
            .map_err(|_| CryptoError::NotRsaPublicKey)?;
        Self::from_rsa(key, der.as_bytes().to_vec())
    }

    /// The SPKI DER bytes.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The full 64-character key ID.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        self.oaep
            .to_public_key_pem(LineEnding::LF)
            .expect("an RSA public key always encodes")
    }

    /// Verifies an RSA-PSS-SHA256 (salt 32) signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &self.pkcs1_der)
            .verify(message, signature)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Wraps a secret with RSA-OAEP-SHA256 (MGF1-SHA256, empty label) for this key.
    pub fn wrap(&self, secret: &[u8]) -> Vec<u8> {
        self.oaep
            .encrypt(&mut UnwrapErr(SysRng), Oaep::<Sha256>::new(), secret)
            .expect("a 32-byte secret always fits RSA-OAEP at 2048 bits or more")
    }
}

fn oversized_or_not_rsa(der: &[u8]) -> CryptoError {
    // The modulus length tells oversized RSA keys apart from other keys without a second parser:
    // rsa's own limit stops at 4096 bits, and everything bigger lands here.
    match rsa::pkcs8::spki::SubjectPublicKeyInfoRef::try_from(der) {
        Ok(spki) if spki.algorithm.oid == rsa::pkcs1::ALGORITHM_OID => {
            let bits = spki
                .subject_public_key
                .as_bytes()
                .and_then(|b| rsa::pkcs1::RsaPublicKeyRef::try_from(b).ok())
                .map(|k| k.modulus.as_bytes().len() * 8);
            match bits {
                Some(bits) => CryptoError::KeySize(bits),
                None => CryptoError::NotRsaPublicKey,
            }
        }
        _ => CryptoError::NotRsaPublicKey,
    }
}

/// One's own key pair: signs, unwraps, and knows its public half.
pub struct Identity {
    private: PrivateKey,
    signer: RsaKeyPair,
    public: PublicIdentity,
}

impl fmt::Debug for Identity {
    // Never print key material, whatever the caller formats.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?})", self.public)
    }
}

impl Identity {
    /// Generates a fresh key pair of `bits` bits (slow: seconds at 4096 bits).
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        let private = PrivateKey::new(&mut UnwrapErr(SysRng), bits)
            .map_err(|e| CryptoError::Unusable(e.to_string()))?;
        Self::from_private(private)
    }

    /// Loads a private key from PEM text: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`, what `openssl genrsa -traditional` writes).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let private = PrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| PrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| CryptoError::NotRsaPrivateKey)?;
        Self::from_private(private)
    }

    fn from_private(private: PrivateKey) -> Result<Self, CryptoError> {
        let public_rsa = private.to_public_key();
        let spki = public_rsa
            .to_public_key_der()
            .map_err(|_| CryptoError::NotRsaPrivateKey)?;
        let public = PublicIdentity::from_rsa(public_rsa, spki.as_bytes().to_vec())?;
        let pkcs1 = private
            .to_pkcs1_der()
            .map_err(|e| CryptoError::Unusable(e.to_string()))?;
        let signer = RsaKeyPair::from_der(pkcs1.as_bytes())
            .map_err(|e| CryptoError::Unusable(e.to_string()))?;
        Ok(Self {
            private,
            signer,
            public,
        })
    }

    /// The public half.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// The private key as PKCS#8 PEM. Only for `/key private` and for saving to a file.
    pub fn private_pem(&self) -> zeroize::Zeroizing<String> {
        self.private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an RSA private key always encodes")
    }

    /// Signs `message` with RSA-PSS-SHA256, salt length 32.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut sig = vec![0u8; self.signer.public().modulus_len()];
        self.signer
            .sign(
                &RSA_PSS_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut sig,
            )
            .expect("signing with a validated key cannot fail");
        sig
    }

    /// Unwraps an RSA-OAEP-SHA256 wrapped 32-byte key.
    pub fn unwrap_key(&self, wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        // Only a block exactly one modulus long is worth a private-key operation; anything else
        // fails the same way as a block that does not open.
        if wrapped.len() != self.private.size() {
            return Err(CryptoError::Unwrap);
        }
        let plain = zeroize::Zeroizing::new(
            self.private
                .decrypt(Oaep::<Sha256>::new(), wrapped)
                .map_err(|_| CryptoError::Unwrap)?,
        );
        let key: [u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Unwrap)?;
        Ok(zeroize::Zeroizing::new(key))
    }
}

/// Encrypts `plaintext` with AES-256-GCM under `key` and a fresh random IV.
pub fn aes_seal(key: &[u8; KEY_LEN], plaintext: &[u8]) -> ([u8; IV_LEN], Vec<u8>) {
    let iv = random_bytes::<IV_LEN>();
    let cipher = Aes256Gcm::new(key.into());
    let ct = cipher
        .encrypt(&Nonce::from(iv), plaintext)
        .expect("AES-GCM encryption of a bounded message cannot fail");
    (iv, ct)
}

/// Opens an AES-256-GCM ciphertext (tag appended), failing if anything was altered.
pub fn aes_open(key: &[u8; KEY_LEN], iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| CryptoError::Open)?;
    Aes256Gcm::new(key.into())
        .decrypt(&Nonce::from(iv), ciphertext)
        .map_err(|_| CryptoError::Open)
}

/// Encrypts `plaintext` with AES-256-GCM under `key`, a fresh random IV and additional data
/// `aad` (bound to the ciphertext: it must be given again to open it).
pub fn aes_seal_aad(key: &[u8; KEY_LEN], plaintext: &[u8], aad: &[u8]) -> ([u8; IV_LEN], Vec<u8>) {
    let iv = random_bytes::<IV_LEN>();
    let cipher = Aes256Gcm::new(key.into());
    let ct = cipher
        .encrypt(
            &Nonce::from(iv),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption of a bounded message cannot fail");
    (iv, ct)
}

/// Opens an AES-256-GCM ciphertext sealed with additional data `aad`, failing if anything
/// (the ciphertext or the additional data) differs.
pub fn aes_open_aad(
    key: &[u8; KEY_LEN],
    iv: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| CryptoError::Open)?;
    Aes256Gcm::new(key.into())
        .decrypt(
            &Nonce::from(iv),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Open)
}

/// One state of a sender-key chain (see "Sender keys" in `docs/PROTOCOL.md`).
#[derive(Clone)]
pub struct ChainKey(SecretKey);

impl ChainKey {
    /// A fresh random chain key.
    pub fn random() -> Self {
        Self(zeroize::Zeroizing::new(random_bytes()))
    }

    /// A chain key from its 32 bytes (as unwrapped from a distribution).
    pub fn from_bytes(bytes: SecretKey) -> Self {
        Self(bytes)
    }

    /// The raw bytes, to wrap for a member.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The AES-256-GCM key of the message at this state: HMAC-SHA-256(CK, 0x01).
    pub fn message_key(&self) -> SecretKey {
        self.derive(0x01)
    }

    /// The next state: HMAC-SHA-256(CK, 0x02).
    pub fn next(&self) -> ChainKey {
        ChainKey(self.derive(0x02))
    }

    fn derive(&self, label: u8) -> SecretKey {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_slice());
        let tag = ring::hmac::sign(&key, &[label]);
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(tag.as_ref());
        zeroize::Zeroizing::new(out)
    }
}

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey(..)")
    }
}

// dyspatcher web client: cryptography (identities, PEM files, signatures, sealing, sender-key chains).
// Pure functions over WebCrypto; no DOM, so it also runs under Node for the unit tests.
// The wire formats and canonical strings are those of docs/PROTOCOL.md.
import { t } from './i18n/i18n.js';

const subtle = () => globalThis.crypto.subtle;
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

const PSS = { name: 'RSA-PSS', hash: 'SHA-256' };
const OAEP = { name: 'RSA-OAEP', hash: 'SHA-256' };
const SIGN_PARAMS = { name: 'RSA-PSS', saltLength: 32 };
/**
 * The RSA key sizes accepted: the server's `welcome.limits.min_key_bits`/`max_key_bits` once a
 * welcome said them (`setKeyBits`), 2048 to 4096 before.
 */
export const KEY_BITS = { min: 2048, max: 4096 };

export function setKeyBits(min, max) {
  if (Number.isSafeInteger(min) && Number.isSafeInteger(max) && min >= 1024 && min <= max) Object.assign(KEY_BITS, { min, max });
}

// ---------------------------------------------------------------- encodings

export function b64encode(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (let i = 0; i < u8.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decodes standard base64 with padding; throws on anything else. */
export function b64decode(text) {
  if (typeof text !== 'string' || !B64_RE.test(text)) throw new Error('not base64');
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export function hex(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (const b of u8) s += b.toString(16).padStart(2, '0');
  return s;
}

export function randomBytes(n) {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/** A message id or sender key id: 16 random bytes as 32 lowercase hex characters. */
export const randomId = () => hex(randomBytes(16));

export const utf8 = (text) => enc.encode(text);
export const fromUtf8 = (bytes) => dec.decode(bytes);

export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest('SHA-256', bytes));
}

export const sha256hex = async (bytes) => hex(await sha256(bytes));

/** The key ID: lowercase hex SHA-256 of the SPKI DER (as `openssl pkey -pubin -outform DER | sha256sum`). */
export const keyIdOf = (spki) => sha256hex(spki);

// ---------------------------------------------------------------- canonical signed strings

export const canonical = {
  join: (nonce, name, keyId) => ['dyspatcher-v1-join', nonce, name, keyId].join('\n'),
  direct: (m, fromKeyId) =>
    ['dyspatcher-v1-direct', m.id, String(m.ts), fromKeyId, m.to, m.iv, m.ciphertext].join('\n'),
  all: (m, fromKeyId) =>
    ['dyspatcher-v1-all', m.id, String(m.ts), fromKeyId, m.skid, String(m.n), m.iv, m.ciphertext].join('\n'),
  senderKey: (m, fromKeyId) =>
    ['dyspatcher-v1-sender-key', fromKeyId, m.skid, String(m.n), m.commitment].join('\n'),
};

// ---------------------------------------------------------------- DER and PEM

function derLength(n) {
  if (n < 0x80) return [n];
  const bytes = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

function der(tag, content) {
  const head = [tag, ...derLength(content.length)];
  const out = new Uint8Array(head.length + content.length);
  out.set(head, 0);
  out.set(content, head.length);
  return out;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// AlgorithmIdentifier { rsaEncryption, NULL }
const RSA_ALGORITHM = new Uint8Array([
  0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
]);

/** Wraps a PKCS#1 RSAPrivateKey (`BEGIN RSA PRIVATE KEY`) into a PKCS#8 PrivateKeyInfo. */
export function pkcs1ToPkcs8(pkcs1) {
  const version = new Uint8Array([0x02, 0x01, 0x00]);
  return der(0x30, concat(version, RSA_ALGORITHM, der(0x04, pkcs1)));
}

/** Wraps a PKCS#1 RSAPublicKey (`BEGIN RSA PUBLIC KEY`) into a SubjectPublicKeyInfo. */
export function pkcs1PublicToSpki(pkcs1) {
  return der(0x30, concat(RSA_ALGORITHM, der(0x03, concat(new Uint8Array([0]), pkcs1))));
}

/** Finds the PEM blocks in a text: [{label, der}]. */
export function pemBlocks(text) {
  const blocks = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  for (let m; (m = re.exec(text)); ) {
    const body = m[2];
    if (/Proc-Type:\s*4,ENCRYPTED/.test(body)) {
      blocks.push({ label: 'ENCRYPTED ' + m[1], der: null });
      continue;
    }
    const b64 = body.replace(/[^A-Za-z0-9+/=]/g, '');
    let bytes;
    try {
      bytes = b64decode(b64);
    } catch {
      throw new Error(t('key.err.damaged', { block: m[1].toLowerCase() }));
    }
    blocks.push({ label: m[1], der: bytes });
  }
  return blocks;
}

export function pemEncode(label, bytes) {
  const lines = b64encode(bytes).match(/.{1,64}/g) || [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

// ---------------------------------------------------------------- identities

/**
 * An identity is one RSA key pair imported twice: RSA-PSS to sign, RSA-OAEP to unwrap.
 * Fields: keyId, spki, publicB64, bits, signKey, unwrapKey, verifyKey, wrapKey, pkcs8.
 */
async function identityFromPkcs8(pkcs8) {
  let pss;
  try {
    pss = await subtle().importKey('pkcs8', pkcs8, PSS, true, ['sign']);
  } catch {
    throw new Error(t('key.err.not_rsa'));
  }
  const jwk = await subtle().exportKey('jwk', pss);
  const bits = b64urlLength(jwk.n) * 8;
  if (jwk.e !== 'AQAB') throw new Error(t('key.err.exponent'));
  if (bits < KEY_BITS.min || bits > KEY_BITS.max) {
    throw new Error(t('key.err.bits', { bits, min: KEY_BITS.min, max: KEY_BITS.max }));
  }
  const pubJwk = { kty: 'RSA', n: jwk.n, e: jwk.e, ext: true };
  const verifyKey = await subtle().importKey('jwk', { ...pubJwk, alg: 'PS256' }, PSS, true, ['verify']);
  const spki = new Uint8Array(await subtle().exportKey('spki', verifyKey));
  const signKey = await subtle().importKey('pkcs8', pkcs8, PSS, false, ['sign']);
  const unwrapKey = await subtle().importKey('pkcs8', pkcs8, OAEP, false, ['decrypt']);
  const wrapKey = await subtle().importKey('spki', spki, OAEP, false, ['encrypt']);
  return {
    keyId: await keyIdOf(spki),
    spki,
    publicB64: b64encode(spki),
    bits,
    signKey,
    unwrapKey,
    verifyKey,
    wrapKey,
    pkcs8,
  };
}

function b64urlLength(s) {
  // Bytes in an unpadded base64url string, leading zero bytes excluded (JWK n has none).
  return Math.floor((s.length * 3) / 4);
}

/** Makes a fresh identity: RSA (default 4096 bits), e = 65537. `step(name)` reports progress. */
export async function generateIdentity(bits = 4096, step = () => {}) {
  step('generate');
  const pair = await subtle().generateKey(
    { ...PSS, modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ['sign', 'verify'],
  );
  step('export');
  const pkcs8 = new Uint8Array(await subtle().exportKey('pkcs8', pair.privateKey));
  step('keyid');
  return identityFromPkcs8(pkcs8);
}

/**
 * Loads an identity from PEM text: a private key (PKCS#8 `BEGIN PRIVATE KEY`, or PKCS#1
 * `BEGIN RSA PRIVATE KEY` as `openssl genrsa` writes it) and, optionally, its public key, which
 * must match.
 */
export async function importIdentity(privatePem, publicPem = '') {
  const blocks = pemBlocks(privatePem);
  if (blocks.some((b) => b.label.includes('ENCRYPTED'))) {
    throw new Error(t('key.err.encrypted'));
  }
  const priv = blocks.find((b) => b.label === 'PRIVATE KEY' || b.label === 'RSA PRIVATE KEY');
  if (!priv) {
    if (blocks.some((b) => b.label.includes('PUBLIC KEY'))) {
      throw new Error(t('key.err.public_given'));
    }
    throw new Error(t('key.err.no_private'));
  }
  const pkcs8 = priv.label === 'RSA PRIVATE KEY' ? pkcs1ToPkcs8(priv.der) : priv.der;
  const identity = await identityFromPkcs8(pkcs8);
  // A file may hold the public key after the private one; a separate public file is optional.
  const isPublic = (b) => b.label === 'PUBLIC KEY' || b.label === 'RSA PUBLIC KEY';
  const publicBlocks = pemBlocks(publicPem);
  if (publicPem.trim() && !publicBlocks.some(isPublic)) {
    throw new Error(t('key.err.no_public'));
  }
  const pub = publicBlocks.concat(blocks).find(isPublic);
  if (pub) {
    const spki = pub.label === 'RSA PUBLIC KEY' ? pkcs1PublicToSpki(pub.der) : pub.der;
    const peer = await importPeer(b64encode(spki)).catch(() => null);
    if (!peer) throw new Error(t('key.err.public_unreadable'));
    if (peer.keyId !== identity.keyId) {
      throw new Error(t('key.err.mismatch'));
    }
  }
  return identity;
}

/**
 * What is kept of an identity on the device: the private key only as the two non-extractable
 * CryptoKeys (sign, unwrap), never its bytes; the public key as SPKI.
 */
export async function storableIdentity(identity) {
  for (const key of [identity.signKey, identity.unwrapKey]) {
    if (key.extractable) throw new Error('a private key to be kept must not be extractable');
  }
  return { keyId: identity.keyId, spki: identity.spki, bits: identity.bits, signKey: identity.signKey, unwrapKey: identity.unwrapKey };
}

/** The identity again from what `storableIdentity` kept; it cannot be exported (no `pkcs8`). */
export async function identityFromStored(record) {
  const spki = new Uint8Array(record.spki);
  const peer = await importPeer(b64encode(spki));
  if (peer.keyId !== record.keyId) throw new Error('the kept public key does not match its Key ID');
  return {
    keyId: peer.keyId,
    spki,
    publicB64: b64encode(spki),
    bits: record.bits,
    signKey: record.signKey,
    unwrapKey: record.unwrapKey,
    verifyKey: peer.verifyKey,
    wrapKey: peer.wrapKey,
    pkcs8: null,
  };
}

export function identityPems(identity) {
  if (!identity.pkcs8) throw new Error(t('key.err.not_exportable'));
  return {
    privatePem: pemEncode('PRIVATE KEY', identity.pkcs8),
    publicPem: pemEncode('PUBLIC KEY', identity.spki),
  };
}

/** Imports a member's public key (SPKI DER, base64): {keyId, verifyKey, wrapKey}. */
export async function importPeer(publicB64) {
  const spki = b64decode(publicB64);
  const verifyKey = await subtle().importKey('spki', spki, PSS, true, ['verify']);
  const wrapKey = await subtle().importKey('spki', spki, OAEP, false, ['encrypt']);
  // Re-export so that the key ID is over the canonical DER.
  const canonicalSpki = new Uint8Array(await subtle().exportKey('spki', verifyKey));
  return { keyId: await keyIdOf(canonicalSpki), verifyKey, wrapKey };
}

// ---------------------------------------------------------------- signatures and wrapping

export async function sign(identity, text) {
  return b64encode(await subtle().sign(SIGN_PARAMS, identity.signKey, utf8(text)));
}

/** True when `signatureB64` is a valid RSA-PSS (salt 32) signature of `text`; false otherwise. */
export async function verify(verifyKey, text, signatureB64) {
  try {
    return await subtle().verify(SIGN_PARAMS, verifyKey, b64decode(signatureB64), utf8(text));
  } catch {
    return false;
  }
}

export async function wrap(wrapKey, bytes) {
  return b64encode(await subtle().encrypt({ name: 'RSA-OAEP' }, wrapKey, bytes));
}

export async function unwrap(identity, wrappedB64) {
  return new Uint8Array(await subtle().decrypt({ name: 'RSA-OAEP' }, identity.unwrapKey, b64decode(wrappedB64)));
}

// ---------------------------------------------------------------- content

/** AES-256-GCM with a fresh 12-byte IV: {iv, ciphertext} in base64 (tag appended). */
export async function seal(keyBytes, text) {
  const key = await subtle().importKey('raw', keyBytes, 'AES-GCM', false, ['encrypt']);
  const iv = randomBytes(12);
  const ct = await subtle().encrypt({ name: 'AES-GCM', iv }, key, utf8(text));
  return { iv: b64encode(iv), ciphertext: b64encode(ct) };
}

/** Opens AES-256-GCM content; throws when the key is wrong or the content was altered. */
export async function open(keyBytes, ivB64, ciphertextB64) {
  const iv = b64decode(ivB64);
  if (iv.length !== 12) throw new Error('bad iv');
  const key = await subtle().importKey('raw', keyBytes, 'AES-GCM', false, ['decrypt']);
  const pt = await subtle().decrypt({ name: 'AES-GCM', iv }, key, b64decode(ciphertextB64));
  return fromUtf8(new Uint8Array(pt));
}

// ---------------------------------------------------------------- sender-key chain

async function hmac(keyBytes, byte) {
  const key = await subtle().importKey('raw', keyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle().sign('HMAC', key, new Uint8Array([byte])));
}

/** One step of a sender-key chain: {mk: HMAC(CK, 0x01), next: HMAC(CK, 0x02)}. */
export async function chainStep(ck) {
  return { mk: await hmac(ck, 0x01), next: await hmac(ck, 0x02) };
}

// Unit tests of assets/crypto.js under Node (WebCrypto is globalThis.crypto.subtle),
// checked against the openssl command line and node:crypto as independent implementations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as c from '../../assets/crypto.js';

let dir;
const ssl = (...args) => execFileSync('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
const file = (name) => join(dir, name);
const read = (name) => readFileSync(file(name), 'utf8');
const opensslKeyId = (pubPem) =>
  execFileSync('sh', ['-c', `openssl pkey -pubin -in "${pubPem}" -outform DER | sha256sum`]).toString().slice(0, 64);

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dysp-crypto-'));
  ssl('genrsa', '-traditional', '-out', file('pkcs1.pem'), '2048');
  ssl('rsa', '-in', file('pkcs1.pem'), '-pubout', '-out', file('pkcs1.pub.pem'));
  ssl('rsa', '-in', file('pkcs1.pem'), '-RSAPublicKey_out', '-out', file('pkcs1.rsapub.pem'));
  ssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', file('pkcs8.pem'));
  ssl('pkey', '-in', file('pkcs8.pem'), '-pubout', '-out', file('pkcs8.pub.pem'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('base64 is standard with padding, and strict', () => {
  const bytes = new Uint8Array([0, 1, 2, 250, 251, 252, 253, 254, 255]);
  assert.equal(c.b64encode(bytes), Buffer.from(bytes).toString('base64'));
  assert.deepEqual(c.b64decode('AAEC+vv8/f7/'), bytes);
  assert.deepEqual(c.b64decode('YQ=='), new Uint8Array([97]));
  for (const bad of ['YQ', 'Y Q==', 'AAEC-_v8', 'YQ=', '====']) {
    assert.throws(() => c.b64decode(bad), /not base64/, bad);
  }
  const big = c.randomBytes(60000);
  assert.deepEqual(c.b64decode(c.b64encode(big)), big);
});

test('canonical signed strings follow PROTOCOL.md', () => {
  assert.equal(c.canonical.join('bm9uY2U=', 'alice', 'k'.repeat(64)), `dyspatcher-v1-join\nbm9uY2U=\nalice\n${'k'.repeat(64)}`);
  const m = { id: 'a'.repeat(32), ts: 1763766000000, to: 'b'.repeat(64), iv: 'aXY=', ciphertext: 'Y3Q=', skid: 'c'.repeat(32), n: 7, commitment: 'd'.repeat(64) };
  assert.equal(
    c.canonical.direct(m, 'f'.repeat(64)),
    ['dyspatcher-v1-direct', m.id, '1763766000000', 'f'.repeat(64), m.to, 'aXY=', 'Y3Q='].join('\n'),
  );
  assert.equal(
    c.canonical.all(m, 'f'.repeat(64)),
    ['dyspatcher-v1-all', m.id, '1763766000000', 'f'.repeat(64), m.skid, '7', 'aXY=', 'Y3Q='].join('\n'),
  );
  assert.equal(c.canonical.senderKey({ ...m, n: 0 }, 'f'.repeat(64)), ['dyspatcher-v1-sender-key', 'f'.repeat(64), m.skid, '0', m.commitment].join('\n'));
  assert.ok(!c.canonical.all(m, 'x').endsWith('\n'));
});

test('PKCS#1 private keys wrap into the same PKCS#8 DER as openssl writes', () => {
  const [pkcs1] = c.pemBlocks(read('pkcs1.pem'));
  assert.equal(pkcs1.label, 'RSA PRIVATE KEY');
  const expected = ssl('pkcs8', '-topk8', '-nocrypt', '-in', file('pkcs1.pem'), '-outform', 'DER');
  assert.deepEqual(Buffer.from(c.pkcs1ToPkcs8(pkcs1.der)), expected);
  const [pub] = c.pemBlocks(read('pkcs1.rsapub.pem'));
  assert.equal(pub.label, 'RSA PUBLIC KEY');
  const spki = ssl('pkey', '-in', file('pkcs1.pem'), '-pubout', '-outform', 'DER');
  assert.deepEqual(Buffer.from(c.pkcs1PublicToSpki(pub.der)), spki);
});

test('imported PKCS#1 and PKCS#8 keys show the key ID openssl computes', async () => {
  for (const [priv, pub] of [['pkcs1.pem', 'pkcs1.pub.pem'], ['pkcs8.pem', 'pkcs8.pub.pem']]) {
    const expected = opensslKeyId(file(pub));
    assert.match(expected, /^[0-9a-f]{64}$/);
    const alone = await c.importIdentity(read(priv));
    assert.equal(alone.keyId, expected, priv);
    assert.equal(alone.bits, 2048);
    const withPublic = await c.importIdentity(read(priv), read(pub));
    assert.equal(withPublic.keyId, expected);
  }
  const withRsaPublic = await c.importIdentity(read('pkcs1.pem'), read('pkcs1.rsapub.pem'));
  assert.equal(withRsaPublic.keyId, opensslKeyId(file('pkcs1.pub.pem')));
});

test('a public key that belongs to another private key is refused', async () => {
  await assert.rejects(c.importIdentity(read('pkcs1.pem'), read('pkcs8.pub.pem')), /does not belong/);
  await assert.rejects(c.importIdentity(read('pkcs1.pem'), 'hello'), /No public key found/);
});

test('unusable private key files get a clear error', async () => {
  await assert.rejects(c.importIdentity(read('pkcs8.pub.pem')), /This is a public key/);
  await assert.rejects(c.importIdentity('just text'), /No private key found/);
  ssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', file('small.pem'));
  await assert.rejects(c.importIdentity(read('small.pem')), /1024 bits/);
  // Past 4096 bits the server refuses the key: so does the page, before a welcome says otherwise.
  ssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:4104', '-out', file('big.pem'));
  await assert.rejects(c.importIdentity(read('big.pem')), /4104 bits; between 2048 and 4096/);
  c.setKeyBits(2048, 8192); // a welcome with max_key_bits 8192
  assert.equal((await c.importIdentity(read('big.pem'))).bits, 4104);
  c.setKeyBits(4096, 1024); // nonsense changes nothing
  assert.deepEqual(c.KEY_BITS, { min: 2048, max: 8192 });
  c.setKeyBits(2048, 4096);
  ssl('pkey', '-in', file('pkcs8.pem'), '-aes256', '-passout', 'pass:secret', '-out', file('enc.pem'));
  await assert.rejects(c.importIdentity(read('enc.pem')), /passphrase/);
  ssl('genrsa', '-traditional', '-aes256', '-passout', 'pass:secret', '-out', file('enc1.pem'), '2048');
  await assert.rejects(c.importIdentity(read('enc1.pem')), /passphrase/);
  await assert.rejects(c.importIdentity('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), /not an RSA private key/);
});

test('exported PEM files are read back by openssl with the same key ID', async () => {
  const id = await c.importIdentity(read('pkcs1.pem'));
  const { privatePem, publicPem } = c.identityPems(id);
  writeFileSync(file('out.pem'), privatePem);
  writeFileSync(file('out.pub.pem'), publicPem);
  ssl('pkey', '-in', file('out.pem'), '-check', '-noout');
  assert.equal(opensslKeyId(file('out.pub.pem')), id.keyId);
  assert.equal((await c.importIdentity(privatePem, publicPem)).keyId, id.keyId);
});

test('generated identities sign with RSA-PSS salt 32 as openssl verifies, and openssl signatures verify', async () => {
  const id = await c.generateIdentity(2048);
  assert.equal(id.bits, 2048);
  const { privatePem, publicPem } = c.identityPems(id);
  writeFileSync(file('gen.pem'), privatePem);
  writeFileSync(file('gen.pub.pem'), publicPem);
  assert.equal(opensslKeyId(file('gen.pub.pem')), id.keyId);
  const text = c.canonical.join('bm9uY2U=', 'alice', id.keyId);
  writeFileSync(file('msg.txt'), text);
  writeFileSync(file('msg.sig'), c.b64decode(await c.sign(id, text)));
  const pss = ['-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32', '-sigopt', 'rsa_mgf1_md:sha256'];
  const out = ssl('dgst', '-sha256', '-verify', file('gen.pub.pem'), ...pss, '-signature', file('msg.sig'), file('msg.txt'));
  assert.match(out.toString(), /Verified OK/);
  // The other way: openssl signs, verify() accepts; a changed text or salt is refused.
  ssl('dgst', '-sha256', '-sign', file('gen.pem'), '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32', '-out', file('o.sig'), file('msg.txt'));
  const sig = c.b64encode(readFileSync(file('o.sig')));
  assert.equal(await c.verify(id.verifyKey, text, sig), true);
  assert.equal(await c.verify(id.verifyKey, text + 'x', sig), false);
  assert.equal(await c.verify(id.verifyKey, text, 'not base64!'), false);
  ssl('dgst', '-sha256', '-sign', file('gen.pem'), '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:20', '-out', file('o20.sig'), file('msg.txt'));
  assert.equal(await c.verify(id.verifyKey, text, c.b64encode(readFileSync(file('o20.sig')))), false);
});

test('keys wrapped with RSA-OAEP SHA-256 are opened by openssl, and the other way', async () => {
  const id = await c.importIdentity(read('pkcs8.pem'));
  const secret = c.randomBytes(32);
  writeFileSync(file('wrapped.bin'), c.b64decode(await c.wrap(id.wrapKey, secret)));
  const oaep = ['-pkeyopt', 'rsa_padding_mode:oaep', '-pkeyopt', 'rsa_oaep_md:sha256', '-pkeyopt', 'rsa_mgf1_md:sha256'];
  const opened = ssl('pkeyutl', '-decrypt', '-inkey', file('pkcs8.pem'), '-in', file('wrapped.bin'), ...oaep);
  assert.deepEqual(new Uint8Array(opened), secret);
  writeFileSync(file('plain.bin'), secret);
  ssl('pkeyutl', '-encrypt', '-pubin', '-inkey', file('pkcs8.pub.pem'), '-in', file('plain.bin'), '-out', file('ow.bin'), ...oaep);
  assert.deepEqual(await c.unwrap(id, c.b64encode(readFileSync(file('ow.bin')))), secret);
});

test('the sender-key chain is HMAC-SHA-256 with 0x01 and 0x02', async () => {
  let ck = c.randomBytes(32);
  for (let n = 0; n < 3; n++) {
    const { mk, next } = await c.chainStep(ck);
    assert.deepEqual(Buffer.from(mk), createHmac('sha256', ck).update(Buffer.from([1])).digest());
    assert.deepEqual(Buffer.from(next), createHmac('sha256', ck).update(Buffer.from([2])).digest());
    ck = next;
  }
});

test('AES-256-GCM content opens with its key only, and not when altered', async () => {
  const key = c.randomBytes(32);
  const text = 'héllo <b>world</b>\nline two 🎉';
  const sealed = await c.seal(key, text);
  assert.equal(c.b64decode(sealed.iv).length, 12);
  assert.equal(c.b64decode(sealed.ciphertext).length, c.utf8(text).length + 16);
  assert.equal(await c.open(key, sealed.iv, sealed.ciphertext), text);
  await assert.rejects(c.open(c.randomBytes(32), sealed.iv, sealed.ciphertext));
  const ct = c.b64decode(sealed.ciphertext);
  ct[0] ^= 1;
  await assert.rejects(c.open(key, sealed.iv, c.b64encode(ct)));
});

test('ids are 32 lowercase hex characters and key IDs 64', async () => {
  assert.match(c.randomId(), /^[0-9a-f]{32}$/);
  assert.notEqual(c.randomId(), c.randomId());
  assert.equal(await c.keyIdOf(c.utf8('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

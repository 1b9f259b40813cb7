// Unit tests of assets/files.js and assets/sha256.js under Node: the incremental SHA-256 against
// WebCrypto, chunk sealing bound to (file id, index), manifest checks, file names, and two Chat
// endpoints sending a file through a tiny relay that does what docs/PROTOCOL.md ("Files") says
// the server does: the window of unanswered chunks, `cseq` acks, and hostile chunks refused.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import * as c from '../../assets/crypto.js';
import { Sha256 } from '../../assets/sha256.js';
import { chunkCount, cleanName, fileCanonical, hashBlob, importFileKey, openChunk, readManifest, sealChunk } from '../../assets/files.js';
import { Chat } from '../../assets/session.js';

const CHUNK = 65536;
/** `n` random bytes (getRandomValues gives at most 64 KiB at a time). */
const randomBig = (n) => {
  const out = new Uint8Array(n);
  for (let at = 0; at < n; at += 65536) out.set(c.randomBytes(Math.min(65536, n - at)), at);
  return out;
};
const digest = async (bytes) => c.hex(new Uint8Array(await webcrypto.subtle.digest('SHA-256', bytes)));

test('SHA-256 fed in pieces equals WebCrypto over the whole, at every block boundary', async () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000, 65536 + 7]) {
    const bytes = n <= 65536 ? c.randomBytes(n) : new Uint8Array(n).map((_, i) => (i * 7) & 255);
    const whole = new Sha256().update(bytes).hex();
    assert.equal(whole, await digest(bytes), `length ${n}`);
    const pieces = new Sha256();
    for (let at = 0; at < n; at += 17) pieces.update(bytes.subarray(at, at + 17));
    assert.equal(pieces.hex(), whole, `length ${n} in pieces of 17`);
  }
  assert.equal(new Sha256().update(c.utf8('abc')).hex(), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  const blob = new Blob([c.randomBytes(65536), c.randomBytes(65536), c.randomBytes(100)]);
  assert.equal(await hashBlob(blob), await digest(new Uint8Array(await blob.arrayBuffer())));
});

test('a chunk opens only with its own file id and index', async () => {
  const key = await importFileKey(c.randomBytes(32));
  const id = c.randomId();
  const bytes = c.randomBytes(1000);
  const sealed = await sealChunk(key, id, 3, bytes);
  assert.deepEqual(await openChunk(key, id, 3, sealed.iv, sealed.ciphertext), bytes);
  await assert.rejects(openChunk(key, id, 2, sealed.iv, sealed.ciphertext), 'another index');
  await assert.rejects(openChunk(key, c.randomId(), 3, sealed.iv, sealed.ciphertext), 'another file');
  const altered = c.b64decode(sealed.ciphertext);
  altered[10] ^= 1;
  await assert.rejects(openChunk(key, id, 3, sealed.iv, c.b64encode(altered)), 'altered');
  assert.equal(c.b64decode(sealed.ciphertext).length, 1016, 'plaintext + 16-byte tag');
  assert.equal(chunkCount(CHUNK, CHUNK), 1);
  assert.equal(chunkCount(CHUNK + 1, CHUNK), 2);
});

test('the canonical strings of a file manifest', () => {
  const m = { id: 'i', ts: 5, to: 'bob', size: 10, chunks: 1, iv: 'v', ciphertext: 'x', skid: 's', n: 2 };
  assert.equal(fileCanonical.direct(m, 'me'), 'dyspatcher-v2-file-direct\ni\n5\nme\nbob\n10\n1\nv\nx');
  assert.equal(fileCanonical.all(m, 'me'), 'dyspatcher-v2-file-all\ni\n5\nme\ns\n2\n10\n1\nv\nx');
});

test('a manifest is refused when it is not what its frame says', () => {
  const good = { name: 'map.jpg', mime: 'image/jpeg', size: 70000, chunks: 2, sha256: 'a'.repeat(64), key: c.b64encode(c.randomBytes(32)), kind: 'photo', width: 10 };
  const frame = { size: 70000, chunks: 2 };
  const read = readManifest(JSON.stringify(good), frame, CHUNK);
  assert.deepEqual(read.meta, { name: 'map.jpg', mime: 'image/jpeg', size: 70000, kind: 'photo', width: 10 });
  assert.throws(() => readManifest(JSON.stringify(good), { size: 70001, chunks: 2 }, CHUNK), /sizes/);
  assert.throws(() => readManifest(JSON.stringify({ ...good, chunks: 3 }), { size: 70000, chunks: 3 }, CHUNK), /sizes/);
  assert.throws(() => readManifest(JSON.stringify({ ...good, kind: 'script' }), frame, CHUNK), /unreadable/);
  assert.throws(() => readManifest(JSON.stringify({ ...good, key: c.b64encode(c.randomBytes(16)) }), frame, CHUNK), /unreadable/);
  assert.throws(() => readManifest(JSON.stringify({ ...good, sha256: 'xyz' }), frame, CHUNK), /unreadable/);
  assert.throws(() => readManifest('not json', frame, CHUNK), /unreadable/);
  assert.throws(() => readManifest(JSON.stringify({ ...good, name: 'x'.repeat(5000) }), frame, CHUNK), /unreadable/);
});

test('file names are shown and saved without paths, dots in front or control characters', () => {
  assert.equal(cleanName('../../x'), 'x');
  assert.equal(cleanName('..\\..\\evil.exe'), 'evil.exe');
  assert.equal(cleanName('.bashrc'), 'bashrc');
  assert.equal(cleanName('a\u0000b\u001bc\u202ed.txt'), 'abcd.txt');
  assert.equal(cleanName('...'), 'file');
  assert.equal([...cleanName('é'.repeat(300))].length, 255);
});

// ------------------------------------------------------------ two endpoints through a relay

let ids;
before(async () => {
  ids = { alice: await c.generateIdentity(2048), bobby: await c.generateIdentity(2048) };
});

const member = (ch) => ({ name: ch.name, key_id: ch.identity.keyId, public_key: ch.identity.publicB64, admin: false });

/** alice and bobby; `tamper(msg)` may change a chunk frame on its way to bobby (return null to drop it). */
async function pair({ tamper = (m) => m, window = 4 } = {}) {
  const chats = {};
  const log = { maxUnanswered: 0, chunksToBob: 0, cancels: [] };
  const inflight = new Map(); // file id -> {next acked}
  let seq = { alice: 0, bobby: 0 };
  let cseq = 0;
  const pending = [];
  const wire = (name) => {
    const chat = chats[name];
    chat.ws = {
      readyState: 1,
      close() {},
      send: (text) => {
        const msg = JSON.parse(text);
        // Public keys are fetched on demand (`get_keys`), answered at once on the connection.
        if (msg.type === 'get_keys') {
          const known = new Map(Object.values(ids).map((id) => [id.keyId, id.publicB64]));
          const keys = {};
          const unknown = [];
          for (const k of msg.key_ids) (known.has(k) ? (keys[k] = known.get(k)) : unknown.push(k));
          queueMicrotask(() => chat.receiveNow(JSON.stringify({ type: 'keys', keys, unknown })));
          return;
        }
        pending.push({ name, msg });
      },
    };
  };
  for (const name of ['alice', 'bobby']) {
    const transfers = [];
    chats[name] = new Chat({ identity: ids[name], name, url: 'ws://unused', hooks: { transfer: (tr) => transfers.push({ ...tr }), rejected: () => {} } });
    clearInterval(chats[name].sweeper);
    chats[name].transfers_seen = transfers;
    wire(name);
  }
  for (const name of ['alice', 'bobby']) {
    await chats[name].receive(JSON.stringify({
      type: 'welcome', you: member(chats[name]), members: [member(chats.alice), member(chats.bobby)], away: [], resumed: false, seq: 0, cseq: 0,
      options: { remember: true }, limits: { chunk_size: CHUNK, file_window: window, max_file: 16777216, files_in_flight: 4 }, time: Date.now(),
    }));
  }
  const sentBy = new Map(); // file id -> chunks sent
  /** Runs the relay until nothing moves. */
  const run = async () => {
    while (pending.length) {
      const { name, msg } = pending.shift();
      const from = { name, key_id: chats[name].identity.keyId };
      if (msg.type === 'file') {
        inflight.set(msg.id, { acked: -1, sent: 0 });
        const { keys, type, ...rest } = msg;
        await chats.alice.receive(JSON.stringify({ type: 'ack', id: msg.id }));
        seq.bobby += 1;
        await chats.bobby.receive(JSON.stringify({ seq: seq.bobby, type, ...rest, from, key: keys[chats.bobby.identity.keyId] }));
      } else if (msg.type === 'chunk' && name === 'alice') {
        const f = inflight.get(msg.file);
        f.sent += 1;
        log.maxUnanswered = Math.max(log.maxUnanswered, f.sent - 1 - f.acked);
        assert.ok(msg.i <= f.acked + window, `chunk ${msg.i} sent past the window (last acked ${f.acked})`);
        const out = tamper({ cseq: 0, type: 'chunk', file: msg.file, from, i: msg.i, iv: msg.iv, ciphertext: msg.ciphertext });
        if (out) {
          cseq += 1;
          log.chunksToBob += 1;
          f.last = { cseq, i: msg.i, file: msg.file };
          (f.byCseq ??= new Map()).set(cseq, msg.i);
          await chats.bobby.receive(JSON.stringify({ ...out, cseq }));
        }
      } else if (msg.type === 'ack' && name === 'bobby' && msg.cseq !== undefined) {
        for (const [file, f] of inflight) {
          for (const [n, i] of f.byCseq ?? []) {
            if (n <= msg.cseq && i > f.acked) {
              f.acked = i;
              await chats.alice.receive(JSON.stringify({ type: 'chunk_ack', file, i }));
            }
          }
        }
      } else if (msg.type === 'file_cancel') {
        log.cancels.push({ name, file: msg.file });
      }
      await chats.alice.queue;
      await chats.bobby.queue;
      // Chunks are sent outside the queue (pump): let them be read and sealed.
      await new Promise((r) => setTimeout(r, 0));
    }
  };
  return { chats, run, log, pending, settle: async () => {
    for (let i = 0; i < 50 && !pending.length; i++) await new Promise((r) => setTimeout(r, 2));
    await run();
  } };
}

const lastOf = (chat, id) => chat.transfers_seen.filter((x) => x.id === id).at(-1);

test('a file goes whole with at most file_window chunks unanswered, and its hash is checked', async () => {
  const { chats, log, settle } = await pair();
  const bytes = randomBig(65536 * 9 + 123);
  const tr = await chats.alice.sendFile(chats.bobby.identity.keyId, new Blob([bytes]), { name: 'data.bin', mime: 'application/octet-stream', kind: 'file' });
  for (let i = 0; i < 40 && lastOf(chats.bobby, tr.id)?.state !== 'done'; i++) await settle();
  const got = lastOf(chats.bobby, tr.id);
  assert.equal(got.state, 'done');
  assert.equal(await digest(new Uint8Array(await got.blob.arrayBuffer())), await digest(bytes));
  assert.equal(lastOf(chats.alice, tr.id).state, 'done');
  assert.equal(log.chunksToBob, 10);
  assert.ok(log.maxUnanswered <= 4 && log.maxUnanswered >= 1, `unanswered ${log.maxUnanswered}`);
  assert.equal(chats.bobby.lastCseq, 10);
});

for (const [what, tamper, pattern] of [
  ['altered', (m) => (m.i === 2 ? { ...m, ciphertext: flip(m.ciphertext) } : m), /Chunk 3 of data\.bin did not open/],
  ['from someone else', (m) => (m.i === 1 ? { ...m, from: { name: 'mallory', key_id: 'f'.repeat(64) } } : m), /Chunk 2 of data\.bin .*not from the file’s sender/],
  ['out of order (one dropped)', (m) => (m.i === 1 ? null : m), /Chunk 3 of data\.bin came out of order \(chunk 2 was expected\)/],
  ['duplicated index', (m) => (m.i === 2 ? { ...m, i: 1 } : m), /Chunk 2 of data\.bin came out of order \(chunk 3 was expected\)/],
]) {
  test(`a chunk ${what} ends the file with a message naming it, and cancels it`, async () => {
    const { chats, log, settle } = await pair({ tamper });
    const tr = await chats.alice.sendFile(chats.bobby.identity.keyId, new Blob([randomBig(65536 * 5)]), { name: 'data.bin', mime: 'application/octet-stream', kind: 'file' });
    for (let i = 0; i < 40 && !['done', 'failed'].includes(lastOf(chats.bobby, tr.id)?.state); i++) await settle();
    const got = lastOf(chats.bobby, tr.id);
    assert.equal(got.state, 'failed');
    assert.match(got.error, pattern);
    assert.equal(got.blob, null);
    assert.deepEqual(log.cancels, [{ name: 'bobby', file: tr.id }]);
  });
}

function flip(b64) {
  const bytes = c.b64decode(b64);
  bytes[5] ^= 0x40;
  return c.b64encode(bytes);
}

test('a file over max_file is refused before anything is sent', async () => {
  const { chats, pending } = await pair();
  await assert.rejects(
    chats.alice.sendFile(chats.bobby.identity.keyId, new Blob([new Uint8Array(16777217)]), { name: 'big.bin', kind: 'file' }),
    /big\.bin is too large: 16777217 B, at most 16777216 B on this server\. Nothing was sent\./,
  );
  assert.equal(pending.length, 0);
});

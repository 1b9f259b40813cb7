// Files, photos and voice notes between real pages through the real server: a 10 MB file with
// equal SHA-256 on both sides, to Everyone with three receivers, a photo that loses its EXIF GPS
// tags (and keeps them when sent as the original), a voice note from Chromium's fake microphone
// that plays, cancel from either side, the size limit (before any chunk, in the page and at the
// server), a file for an away member whose mailbox cannot hold it, and hostile chunks (altered,
// reordered, duplicated, from another file, out of order at the server) refused with a visible
// error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import exifr from 'exifr';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys,
  openConversation, rmSync, join, screenshotPath, waitUntil, waitConnected, startTerminalClient,
} from './helpers.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = {};
  for (const name of ['alice', 'bobby', 'carol', 'daveo', 'erinn', 'mallory', 'termy']) keys[name] = opensslKey(dir, name, 'pkcs8');
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Waits until `page` lists each of `names` as online. */
const sees = (page, ...names) => Promise.all(names.map((n) => page.waitForSelector(`#member-list .member.online[data-key="${keys[n].keyId}"]`)));

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');
const card = (name) => `.attachment[data-name="${name}"]`;

/** A page joined as `name`, recording every frame it sends (`page.frames`). */
async function member(name, { t, b = browser, viewport } = {}) {
  const page = await openPage(b, server.url, { t, name, viewport });
  page.frames = [];
  page.on('websocket', (ws) => ws.on('framesent', (f) => page.frames.push(String(f.payload))));
  await joinWithKeys(page, name, keys[name]);
  return page;
}

/** Frames of `type` the page sent. */
const sent = (page, type) => page.frames.filter((f) => f.includes(`"type":"${type}"`)).length;

/** Attaches `files` (paths or {name, mimeType, buffer}) in the conversation with `dest`. */
async function attach(page, dest, files) {
  await openConversation(page, dest);
  await page.setInputFiles('#attach-input', files);
}

/** Saves a received file with its Save button; resolves to its bytes. */
async function save(page, name) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(`${card(name)} .file-save`)]);
  const path = join(dir, `saved-${randomBytes(4).toString('hex')}`);
  await download.saveAs(path);
  assert.equal(download.suggestedFilename(), name);
  return readFileSync(path);
}

/** Records whether a progress bar was ever shown on the page. */
const watchProgress = (page) =>
  page.evaluate(() => {
    window.__progress = false;
    new MutationObserver(() => {
      if (document.querySelector('.attachment progress')) window.__progress = true;
    }).observe(document.getElementById('messages'), { subtree: true, childList: true });
  });

test('a 10 MB file goes from page to page with equal SHA-256, with progress on both sides', { timeout: 120000 }, async (t) => {
  const alice = await member('alice', { t });
  const bob = await member('bobby', { t, viewport: { width: 360, height: 740 } });
  await sees(alice, 'bobby');
  await openConversation(bob, 'alice');
  await watchProgress(alice);
  await watchProgress(bob);
  const bytes = randomBytes(10 * 1024 * 1024);
  await attach(alice, 'bobby', { name: 'ten.bin', mimeType: 'application/octet-stream', buffer: bytes });
  await bob.waitForSelector(`${card('ten.bin')}[data-state="done"]`, { timeout: 60000 });
  await alice.waitForSelector(`${card('ten.bin')}[data-state="done"]`, { timeout: 60000 });
  assert.equal(sha(await save(bob, 'ten.bin')), sha(bytes));
  assert.equal(await bob.textContent(`${card('ten.bin')} .file-size`), '10 MB');
  assert.ok(await alice.evaluate(() => window.__progress), 'the sender showed a progress bar');
  assert.ok(await bob.evaluate(() => window.__progress), 'the receiver showed a progress bar');
  assert.equal(sent(alice, 'chunk'), 160);
  // The message line of the file says it was delivered, as a direct message does.
  await alice.waitForSelector(`.msg.own:has(${card('ten.bin')}) .state.delivered`);
  assertClean(alice, bob);
});

test('a file to Everyone reaches three pages whole', { timeout: 120000 }, async (t) => {
  const pages = [];
  for (const name of ['alice', 'bobby', 'carol', 'daveo']) pages.push(await member(name, { t }));
  const [alice, ...others] = pages;
  await sees(alice, 'bobby', 'carol', 'daveo');
  for (const page of others) await openConversation(page, '@all');
  const bytes = randomBytes(1536 * 1024 + 77);
  await attach(alice, '@all', { name: 'everyone.pdf', mimeType: 'application/pdf', buffer: bytes });
  for (const page of others) {
    await page.waitForSelector(`.messages[data-conv="all"] ${card('everyone.pdf')}[data-state="done"]`, { timeout: 60000 });
    assert.equal(sha(await save(page, 'everyone.pdf')), sha(bytes));
  }
  await alice.waitForSelector(`${card('everyone.pdf')}[data-state="done"]`);
  assertClean(...pages);
});

/** A JPEG drawn by Chromium (2000×1000), as bytes. */
async function drawJpeg(page) {
  const b64 = await page.evaluate(async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 2000;
    canvas.height = 1000;
    const g = canvas.getContext('2d');
    g.fillStyle = '#2e7d4f';
    g.fillRect(0, 0, 2000, 1000);
    g.fillStyle = '#fff';
    g.fillRect(200, 200, 900, 400);
    const blob = await new Promise((r) => canvas.toBlob(r, 'image/jpeg', 0.9));
    const u8 = new Uint8Array(await blob.arrayBuffer());
    let s = '';
    for (const x of u8) s += String.fromCharCode(x);
    return btoa(s);
  });
  return Buffer.from(b64, 'base64');
}

/** `jpeg` with an EXIF APP1 segment holding GPS tags (48°51'24" N, 2°21'9" E), written by hand. */
function withGps(jpeg) {
  const tiff = Buffer.alloc(128);
  tiff.write('II', 0, 'latin1');
  tiff.writeUInt16LE(42, 2);
  tiff.writeUInt32LE(8, 4);
  // IFD0: one entry, the GPS IFD pointer.
  tiff.writeUInt16LE(1, 8);
  tiff.writeUInt16LE(0x8825, 10);
  tiff.writeUInt16LE(4, 12);
  tiff.writeUInt32LE(1, 14);
  tiff.writeUInt32LE(26, 18);
  tiff.writeUInt32LE(0, 22);
  // GPS IFD: latitude ref and value, longitude ref and value.
  const entries = [
    [1, 2, 2, Buffer.from('N\0\0\0', 'latin1').readUInt32LE(0)],
    [2, 5, 3, 80],
    [3, 2, 2, Buffer.from('E\0\0\0', 'latin1').readUInt32LE(0)],
    [4, 5, 3, 104],
  ];
  tiff.writeUInt16LE(entries.length, 26);
  entries.forEach(([tag, type, count, value], k) => {
    const at = 28 + k * 12;
    tiff.writeUInt16LE(tag, at);
    tiff.writeUInt16LE(type, at + 2);
    tiff.writeUInt32LE(count, at + 4);
    tiff.writeUInt32LE(value, at + 8);
  });
  tiff.writeUInt32LE(0, 76);
  [[48, 1], [51, 1], [2400, 100], [2, 1], [21, 1], [900, 100]].forEach(([num, den], k) => {
    tiff.writeUInt32LE(num, 80 + k * 8);
    tiff.writeUInt32LE(den, 84 + k * 8);
  });
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const head = Buffer.from([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 0xff]);
  assert.deepEqual([...jpeg.subarray(0, 2)], [0xff, 0xd8]);
  return Buffer.concat([jpeg.subarray(0, 2), head, body, jpeg.subarray(2)]);
}

test('a photo arrives re-encoded without its EXIF GPS tags, shown as a thumbnail that opens full size; the original keeps them', { timeout: 120000 }, async (t) => {
  const alice = await member('alice', { t });
  const bob = await member('bobby', { t });
  await sees(alice, 'bobby');
  await openConversation(bob, 'alice');
  const photo = withGps(await drawJpeg(alice));
  const gps = await exifr.gps(photo);
  assert.ok(Math.abs(gps.latitude - 48.8567) < 0.001 && Math.abs(gps.longitude - 2.3525) < 0.001, 'the test photo carries GPS tags');
  await attach(alice, 'bobby', { name: 'map.jpg', mimeType: 'image/jpeg', buffer: photo });
  await bob.waitForSelector(`${card('map.jpg')}[data-state="done"] .thumb img`, { timeout: 60000 });
  const size = await bob.$eval(`${card('map.jpg')} .thumb img`, (img) => img.decode().then(() => [img.naturalWidth, img.naturalHeight]));
  assert.deepEqual(size, [1600, 800], 'at most 1600 pixels on the longest side');
  const received = await save(bob, 'map.jpg');
  assert.equal(await exifr.gps(received), undefined, 'no GPS tags');
  assert.equal(await exifr.parse(received), undefined, 'no EXIF at all');
  // The thumbnail opens the photo at full size.
  await bob.click(`${card('map.jpg')} .thumb`);
  await bob.waitForSelector('#viewer[open] #viewer-img');
  assert.equal(await bob.textContent('#viewer-title'), 'map.jpg');
  await bob.keyboard.press('Escape');
  await bob.waitForSelector('#viewer[open]', { state: 'detached' });
  // "Send photos as they are": the original bytes, metadata and all.
  await alice.click('#menu-open');
  await alice.check('#send-original');
  await alice.keyboard.press('Escape');
  await attach(alice, 'bobby', { name: 'original.jpg', mimeType: 'image/jpeg', buffer: photo });
  await bob.waitForSelector(`${card('original.jpg')}[data-state="done"] .thumb img`, { timeout: 60000 });
  const original = await save(bob, 'original.jpg');
  assert.equal(sha(original), sha(photo));
  assert.ok((await exifr.gps(original))?.latitude > 48);
  assertClean(alice, bob);
});

test('a voice note recorded from the fake microphone plays in the other page', { timeout: 120000 }, async (t) => {
  const media = await launchBrowser(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', '--autoplay-policy=no-user-gesture-required']);
  t.after(() => media.close());
  const alice = await member('alice', { t, b: media });
  const bob = await member('bobby', { t, b: media });
  await sees(alice, 'bobby');
  await openConversation(bob, 'alice');
  await openConversation(alice, 'bobby');
  await alice.click('#record');
  await alice.waitForSelector('#record[aria-pressed="true"]');
  await alice.waitForFunction(() => /\b[1-9]\d* /.test(document.getElementById('record-state').textContent));
  await alice.click('#record');
  await alice.waitForSelector('#record[aria-pressed="false"]');
  await bob.waitForSelector('.attachment[data-kind="voice"][data-state="done"] audio', { timeout: 60000 });
  const played = await bob.$eval('.attachment[data-kind="voice"] audio', async (audio) => {
    await audio.play();
    if (!(audio.duration > 0)) await new Promise((r) => audio.addEventListener('durationchange', r, { once: true }));
    audio.pause();
    return { duration: audio.duration > 0, type: audio.src.startsWith('blob:') };
  });
  assert.deepEqual(played, { duration: true, type: true });
  assert.match(await bob.getAttribute('.attachment[data-kind="voice"]', 'data-name'), /^voice-\d{8}-\d{4}\.(webm|ogg|m4a)$/);
  assertClean(alice, bob);
});

test('either side can cancel a file on its way', { timeout: 120000 }, async (t) => {
  const alice = await member('alice', { t });
  const bob = await member('bobby', { t });
  await sees(alice, 'bobby');
  await openConversation(bob, 'alice');
  const big = () => ({ mimeType: 'application/octet-stream', buffer: randomBytes(16 * 1024 * 1024) });
  await attach(alice, 'bobby', { name: 'stop-by-bob.bin', ...big() });
  await bob.click(`${card('stop-by-bob.bin')}[data-state="receiving"] .file-cancel`);
  await bob.waitForSelector(`${card('stop-by-bob.bin')}[data-state="cancelled"]`);
  assert.equal(await bob.textContent(`${card('stop-by-bob.bin')} .file-status`), 'You cancelled it.');
  await alice.waitForSelector(`${card('stop-by-bob.bin')}[data-state="cancelled"]`);
  assert.equal(await alice.textContent(`${card('stop-by-bob.bin')} .file-status`), 'bobby cancelled stop-by-bob.bin.');

  await attach(alice, 'bobby', { name: 'stop-by-alice.bin', ...big() });
  await bob.waitForSelector(`${card('stop-by-alice.bin')}[data-state="receiving"]`);
  await alice.click(`${card('stop-by-alice.bin')}[data-state="sending"] .file-cancel`);
  await alice.waitForSelector(`${card('stop-by-alice.bin')}[data-state="cancelled"]`);
  await bob.waitForSelector(`${card('stop-by-alice.bin')}[data-state="cancelled"]`);
  assert.equal(await bob.textContent(`${card('stop-by-alice.bin')} .file-status`), 'alice cancelled stop-by-alice.bin.');
  // Chat goes on.
  await alice.fill('#text', 'still here');
  await alice.press('#text', 'Enter');
  await bob.waitForFunction(() => [...document.querySelectorAll('.msg .text')].some((p) => p.textContent === 'still here'));
  assertClean(alice, bob);
});

test('a file over the limit is refused before any chunk, in the page and at the server', { timeout: 120000 }, async (t) => {
  const small = await startServer(['--max-file-mb', '1']);
  t.after(() => small.stop());
  const page = async (name) => {
    const p = await openPage(browser, small.url, { t, name });
    p.frames = [];
    p.on('websocket', (ws) => ws.on('framesent', (f) => p.frames.push(String(f.payload))));
    await joinWithKeys(p, name, keys[name]);
    return p;
  };
  const alice = await page('alice');
  const bob = await page('bobby');
  await sees(alice, 'bobby');
  await attach(alice, 'bobby', { name: 'toobig.bin', mimeType: 'application/octet-stream', buffer: randomBytes(1024 * 1024 + 1) });
  await alice.waitForSelector('.notice.warning');
  assert.match(await alice.textContent('.notice.warning'), /toobig\.bin is too large: 1048577 B, at most 1048576 B on this server\. Nothing was sent\./);
  assert.equal(sent(alice, 'file'), 0);
  // A page that ignores the limit (here: told a larger one) is refused by the server, still before any chunk.
  await alice.evaluate(async () => {
    const { S } = await import('/state.js');
    S.chat.limits.max_file = 16 * 1024 * 1024;
  });
  await attach(alice, 'bobby', { name: 'toobig2.bin', mimeType: 'application/octet-stream', buffer: randomBytes(1024 * 1024 + 1) });
  await alice.waitForSelector(`${card('toobig2.bin')}[data-state="failed"]`);
  assert.match(await alice.textContent(`${card('toobig2.bin')} .file-status`), /toobig2\.bin is over the server’s limit/);
  assert.equal(sent(alice, 'file'), 1);
  assert.equal(sent(alice, 'chunk'), 0);
  assert.equal(await bob.locator('.attachment').count(), 0);
  assertClean(bob);
});

test('a file for an away member whose mailbox cannot hold it is refused, and the sender is told', { timeout: 120000 }, async (t) => {
  const alice = await member('alice', { t });
  const erin = await openPage(browser, server.url, { name: 'erinn' });
  await joinWithKeys(erin, 'erinn', keys.erinn);
  await sees(alice, 'erinn');
  // erinn's page goes without leaving: away, with a mailbox of 1 MiB.
  await erin.context().close();
  await alice.waitForSelector(`#member-list .member.away[data-key="${keys.erinn.keyId}"]`);
  await attach(alice, 'erinn', { name: 'away.bin', mimeType: 'application/octet-stream', buffer: randomBytes(2 * 1024 * 1024) });
  await alice.waitForSelector(`${card('away.bin')}[data-state="failed"]`);
  assert.match(await alice.textContent(`${card('away.bin')} .file-status`), /away\.bin was not sent: the recipient is away and their mailbox cannot hold it/);
  assert.equal(sent(alice, 'chunk'), 0);
  // To Everyone: the sender is told who was skipped.
  await attach(alice, '@all', { name: 'skips.bin', mimeType: 'application/octet-stream', buffer: randomBytes(2 * 1024 * 1024) });
  await alice.waitForFunction((sel) => /Not sent to .*erinn.*: away, and their mailbox cannot hold it\./.test(document.querySelector(sel)?.textContent ?? ''), card('skips.bin'));
  assertClean(alice);
});

/**
 * Makes the page's session send its chunks as `mode` says: 'altered' (a bit flipped in chunk 2),
 * 'reordered' (chunk 2's sealed bytes sent as chunk 1), 'duplicated' (chunk 1's sealed bytes
 * again as chunk 2), 'foreign' (chunk 0 of the file sent before as this file's chunk 0), 'skip'
 * (chunk 1 never sent: the server sees chunk 2 out of order).
 */
const tamper = (page, mode) =>
  page.evaluate(async (m) => {
    // The page's own session: the same module instance as the app's.
    const { S } = await import('/state.js');
    const chat = S.chat;
    const send = Object.getPrototypeOf(chat).send.bind(chat);
    const seen = (globalThis.__chunks ??= {});
    let held = null;
    delete chat.send;
    chat.send = (msg) => {
      if (msg.type !== 'chunk') return send(msg);
      const mine = (seen[msg.file] ??= {});
      mine[msg.i] = msg;
      if (m === 'altered' && msg.i === 2) {
        const bytes = atob(msg.ciphertext);
        const flipped = String.fromCharCode(bytes.charCodeAt(0) ^ 1) + bytes.slice(1);
        return send({ ...msg, ciphertext: btoa(flipped) });
      }
      if (m === 'reordered' && msg.i === 1) {
        held = msg;
        return true;
      }
      if (m === 'reordered' && msg.i === 2) return send({ ...held, iv: msg.iv, ciphertext: msg.ciphertext });
      if (m === 'duplicated' && msg.i === 2) return send({ ...msg, iv: mine[1].iv, ciphertext: mine[1].ciphertext });
      if (m === 'foreign' && msg.i === 0) {
        const other = Object.entries(seen).find(([id, c]) => id !== msg.file && c[0]);
        return send({ ...msg, iv: other[1][0].iv, ciphertext: other[1][0].ciphertext });
      }
      if (m === 'skip' && msg.i === 1) return true;
      if (m === 'stall' && msg.i > 0) return true;
      return send(msg);
    };
  }, mode);

test('hostile chunks are refused with a visible error naming the file and the chunk; chat goes on', { timeout: 180000 }, async (t) => {
  const mallory = await member('mallory', { t });
  const bob = await member('bobby', { t });
  await sees(bob, 'mallory');
  await openConversation(bob, 'mallory');
  const file = (name) => ({ name, mimeType: 'application/octet-stream', buffer: randomBytes(6 * 65536) });
  const cases = [
    ['altered', 'altered.bin', 'Chunk 3 of altered.bin did not open: altered or not from this file. The file was stopped.'],
    ['reordered', 'reordered.bin', 'Chunk 2 of reordered.bin did not open: altered or not from this file. The file was stopped.'],
    ['duplicated', 'duplicated.bin', 'Chunk 3 of duplicated.bin did not open: altered or not from this file. The file was stopped.'],
  ];
  for (const [mode, name, text] of cases) {
    await tamper(mallory, mode);
    await attach(mallory, 'bobby', file(name));
    await bob.waitForSelector(`${card(name)}[data-state="failed"]`, { timeout: 30000 });
    assert.equal(await bob.textContent(`${card(name)} .file-status`), text);
    await bob.waitForFunction((x) => [...document.querySelectorAll('.notice.warning')].some((n) => n.textContent.includes(x)), text);
  }
  // A chunk of another file: the first one arrives whole, the second one is refused at chunk 1.
  await tamper(mallory, 'none');
  await attach(mallory, 'bobby', file('first.bin'));
  await bob.waitForSelector(`${card('first.bin')}[data-state="done"]`, { timeout: 30000 });
  await tamper(mallory, 'foreign');
  await attach(mallory, 'bobby', file('foreign.bin'));
  await bob.waitForSelector(`${card('foreign.bin')}[data-state="failed"]`, { timeout: 30000 });
  assert.equal(await bob.textContent(`${card('foreign.bin')} .file-status`), 'Chunk 1 of foreign.bin did not open: altered or not from this file. The file was stopped.');
  // A manifest whose SHA-256 is not that of the file: every chunk opens, the whole is refused.
  await tamper(mallory, 'none');
  await mallory.evaluate(async () => {
    const { S } = await import('/state.js');
    const seal = Object.getPrototypeOf(S.chat).sealFile;
    S.chat.sealFile = (to, blob, meta) => seal.call(S.chat, to, blob, meta, '0'.repeat(64));
  });
  await attach(mallory, 'bobby', file('hash.bin'));
  await bob.waitForSelector(`${card('hash.bin')}[data-state="failed"]`, { timeout: 30000 });
  assert.equal(await bob.textContent(`${card('hash.bin')} .file-status`), 'hash.bin arrived altered: its SHA-256 does not match. It was thrown away.');
  await mallory.evaluate(async () => {
    delete (await import('/state.js')).S.chat.sealFile;
  });
  // Out of order at the server: refused there (the sender sees why), and the receiver is told it ended.
  await tamper(mallory, 'skip');
  await attach(mallory, 'bobby', file('skipped.bin'));
  await mallory.waitForSelector(`${card('skipped.bin')}[data-state="failed"]`, { timeout: 30000 });
  assert.match(await mallory.textContent(`${card('skipped.bin')} .file-status`), /The server refused a chunk of skipped\.bin: .*expected chunk 1/);
  await bob.waitForSelector(`${card('skipped.bin')}[data-state="cancelled"]`, { timeout: 30000 });
  assert.equal(await bob.textContent(`${card('skipped.bin')} .file-status`), 'mallory cancelled skipped.bin.');
  // Nothing else was affected.
  await tamper(mallory, 'none');
  await mallory.fill('#text', 'after the hostile chunks');
  await mallory.press('#text', 'Enter');
  await bob.waitForFunction(() => [...document.querySelectorAll('.msg .text')].some((p) => p.textContent === 'after the hostile chunks'));
  assertClean(bob);
});


/** axe-core over the whole page (injected by the test, not served by the product). */
async function axe(page, label) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')})`);
  });
  assert.deepEqual(violations, [], `${label}: accessibility violations`);
}

test('a photo, a file card, a voice note and progress bars on a phone: axe finds nothing, light, dark and Arabic', { timeout: 180000 }, async (t) => {
  const media = await launchBrowser(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream']);
  t.after(() => media.close());
  const phone = { width: 360, height: 740 };
  const alice = await member('alice', { t, b: media, viewport: phone });
  const bob = await member('bobby', { t, b: media, viewport: phone });
  await sees(alice, 'bobby');
  await openConversation(bob, 'alice');
  await attach(alice, 'bobby', { name: 'map.jpg', mimeType: 'image/jpeg', buffer: withGps(await drawJpeg(alice)) });
  await bob.waitForSelector(`${card('map.jpg')}[data-state="done"] .thumb img`);
  await attach(alice, 'bobby', { name: 'Shelter list, district 4 (updated).pdf', mimeType: 'application/pdf', buffer: randomBytes(200 * 1024) });
  await bob.waitForSelector(`${card('Shelter list, district 4 (updated).pdf')}[data-state="done"]`);
  await alice.click('#record');
  await alice.waitForFunction(() => /\b[1-9]\d* /.test(document.getElementById('record-state').textContent));
  await alice.click('#record');
  await bob.waitForSelector('.attachment[data-kind="voice"][data-state="done"] audio');
  // A transfer that stays on its way: only its first chunk is sent.
  await tamper(alice, 'stall');
  await attach(alice, 'bobby', { name: 'water-points.zip', mimeType: 'application/zip', buffer: randomBytes(1024 * 1024) });
  await bob.waitForSelector(`${card('water-points.zip')}[data-state="receiving"] progress`);
  await alice.waitForSelector(`${card('water-points.zip')}[data-state="sending"] progress`);
  for (const scheme of ['light', 'dark']) {
    for (const [who, page] of [['receiver', bob], ['sender', alice]]) {
      await page.emulateMedia({ colorScheme: scheme, reducedMotion: 'reduce' });
      await page.evaluate(() => { const s = document.getElementById('conversation'); s.scrollTop = s.scrollHeight; });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${who} ${scheme}: ${overflow}px wider than the screen`);
      await axe(page, `files ${who} ${scheme}`);
      await page.screenshot({ path: screenshotPath(`files-${who}-phone-${scheme}`) });
      // And the photo at the top of the conversation.
      await page.evaluate(() => {
        const s = document.getElementById('conversation');
        const li = document.querySelector('.attachment .thumb').closest('.msg');
        s.scrollTop += li.getBoundingClientRect().top - s.getBoundingClientRect().top - 8;
      });
      await page.screenshot({ path: screenshotPath(`files-${who}-phone-${scheme}-photo`) });
    }
  }
  await bob.emulateMedia({ colorScheme: 'light' });
  await bob.click('#menu-open');
  await bob.selectOption('#lang-chat', 'ar');
  await bob.keyboard.press('Escape');
  await bob.waitForFunction(() => document.documentElement.dir === 'rtl');
  await bob.evaluate(() => { const s = document.getElementById('conversation'); s.scrollTop = s.scrollHeight; });
  assert.ok((await bob.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)) <= 0, 'arabic: wider than the screen');
  await axe(bob, 'files arabic');
  await bob.screenshot({ path: screenshotPath('files-receiver-phone-arabic') });
  await bob.selectOption('#lang-chat', 'en').catch(() => {});
  await alice.click(`${card('water-points.zip')} .file-cancel`);
  await bob.waitForSelector(`${card('water-points.zip')}[data-state="cancelled"]`);
  assertClean(alice, bob);
});

/** The keys of this page's IndexedDB store that hold media, with the sizes of what they keep. */
const keptMedia = (page) =>
  page.evaluate(() => new Promise((res) => {
    if (!indexedDB) return res([]);
    const req = indexedDB.open('dyspatcher');
    req.onupgradeneeded = () => req.transaction.abort();
    req.onerror = () => res([]);
    req.onsuccess = () => {
      const tx = req.result.transaction('kv');
      const store = tx.objectStore('kv');
      const out = [];
      store.openCursor().onsuccess = (ev) => {
        const cur = ev.target.result;
        if (!cur) return;
        if (String(cur.key).startsWith('media:')) out.push([String(cur.key), cur.value.ciphertext.length]);
        cur.continue();
      };
      tx.oncomplete = () => {
        req.result.close();
        res(out);
      };
    };
  }));

test('received media are kept with the history (encrypted) when remembering, within 50 MB, oldest dropped with a line saying so; nothing kept otherwise', { timeout: 180000 }, async (t) => {
  const alice = await member('alice', { t });
  const bob = await member('bobby', { t });
  const carol = await openPage(browser, server.url, { t, name: 'carol' });
  await carol.uncheck('#remember');
  await joinWithKeys(carol, 'carol', keys.carol);
  await sees(alice, 'bobby', 'carol');
  await openConversation(bob, 'alice');
  await openConversation(carol, 'alice');
  const photo = withGps(await drawJpeg(alice));
  await attach(alice, '@all', { name: 'kept.jpg', mimeType: 'image/jpeg', buffer: photo });
  await bob.waitForSelector(`.messages[data-conv="all"] ${card('kept.jpg')}[data-state="done"]`, { state: 'attached' });
  await carol.waitForSelector(`.messages[data-conv="all"] ${card('kept.jpg')}[data-state="done"]`, { state: 'attached' });
  const id = await bob.getAttribute(`.msg:has(${card('kept.jpg')})`, 'data-id');
  await waitUntil(bob, async (k) => (await (await import('/store.js')).loadMedia(k))?.size > 0, id);
  const kept = await keptMedia(bob);
  const size = await bob.evaluate(async (k) => (await (await import('/store.js')).loadMedia(k)).size, id);
  assert.deepEqual(kept, [[`media:${id}`, size + 16]], 'sealed with AES-GCM: its length and a tag');
  assert.deepEqual(await keptMedia(carol), [], 'nothing kept when not remembering');
  // After a reload the photo is shown again from the device.
  await bob.reload();
  await waitConnected(bob);
  await openConversation(bob, '@all');
  await bob.waitForSelector(`.msg.history ${card('kept.jpg')}[data-state="done"] .thumb img`);
  // The budget: filled with 3 × 16 MiB kept earlier, the next file pushes the oldest out, with a line.
  const before = await bob.evaluate(async (conv) => {
    const store = await import('/store.js');
    for (let i = 0; i < 3; i++) await store.saveMedia(`filler${i}`, conv, new Blob([new Uint8Array(16 * 1024 * 1024)]));
    return [store.MEDIA_BUDGET, (await store.loadMedia('filler0'))?.size];
  }, keys.alice.keyId);
  assert.deepEqual(before, [50 * 1024 * 1024, 16 * 1024 * 1024]);
  await attach(alice, 'bobby', { name: 'pushes.bin', mimeType: 'application/octet-stream', buffer: randomBytes(3 * 1024 * 1024) });
  await openConversation(bob, 'alice');
  await bob.waitForSelector(`${card('pushes.bin')}[data-state="done"]`);
  await bob.waitForFunction(() => [...document.querySelectorAll('.notice')].some((n) => n.textContent === 'Older photos and files were removed from this device to stay under 50 MB.'));
  const after = (await keptMedia(bob)).map(([k]) => k).sort();
  assert.equal(after.length, 3);
  assert.ok(!after.includes(`media:${id}`) && !after.includes('media:filler0'), `the two oldest went: ${after}`);
  assert.ok(after.includes('media:filler2'));
  assertClean(alice, bob, carol);
});

test('10 MB from a page to the Rust client and back, with equal SHA-256', { timeout: 180000 }, async (t) => {
  const alice = await member('alice', { t });
  const inbox = join(dir, 'termy-files');
  mkdirSync(inbox);
  const term = startTerminalClient(server, 'termy', ['--key', keys.termy.priv, '--files-dir', inbox]);
  t.after(() => term.stop());
  await sees(alice, 'termy');
  const toTerm = randomBytes(10 * 1024 * 1024);
  let mark = term.output.length;
  await attach(alice, 'termy', { name: 'page-to-term.bin', mimeType: 'application/octet-stream', buffer: toTerm });
  const [, hash, path] = await term.waitFor(/received page-to-term\.bin \(.*sha256 ([0-9a-f]{64})\), saved as (\S+)/, 60000, mark);
  assert.equal(hash, sha(toTerm));
  assert.equal(sha(readFileSync(path)), sha(toTerm));
  await alice.waitForSelector(`${card('page-to-term.bin')}[data-state="done"]`);

  const fromTerm = randomBytes(10 * 1024 * 1024 + 5);
  const file = join(dir, 'term-to-page.bin');
  writeFileSync(file, fromTerm);
  mark = term.output.length;
  term.write(`/send alice ${file}`);
  await alice.waitForSelector(`${card('term-to-page.bin')}[data-state="done"]`, { timeout: 60000 });
  assert.equal(sha(await save(alice, 'term-to-page.bin')), sha(fromTerm));
  await term.waitFor(/sent term-to-page\.bin/, 15000, mark);
  assertClean(alice);
});

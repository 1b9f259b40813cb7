// The start screen: name rule checked as you type, keys made in the browser (RSA 4096) and
// downloaded, keys made by openssl (PKCS#1 and PKCS#8) imported with the Key ID openssl computes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, opensslKeyId, waitConnected, join, rmSync,
} from './helpers.mjs';

let server, browser, dir;

before(async () => {
  dir = tempDir();
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('the name is checked as it is typed, with the rule shown', { timeout: 60000 }, async (t) => {
  const page = await openPage(browser, server.url, { t });
  assert.match(await page.textContent('#name-rule'), /4 to 15 characters: lowercase letters a–z and digits 0–9/);
  const cases = [
    ['Alice', /lowercase/, true],
    ['al ce', /Only letters a–z and digits 0–9/, true],
    ['ab', /2 more characters needed/, true],
    ['alice', /Good name/, false],
  ];
  for (const [name, message, invalid] of cases) {
    await page.fill('#name', name);
    assert.match(await page.textContent('#name-check'), message, name);
    assert.equal(await page.getAttribute('#name', 'aria-invalid'), String(invalid), name);
  }
  // Never more than 15 characters.
  await page.fill('#name', '');
  await page.type('#name', 'abcdefghijklmnopqrst');
  assert.equal(await page.inputValue('#name'), 'abcdefghijklmno');
  assertClean(page);
});

test('PKCS#1 and PKCS#8 keys made by openssl import with the Key ID openssl computes', { timeout: 60000 }, async (t) => {
  const page = await openPage(browser, server.url, { t });
  await page.click('#own-keys-toggle');
  for (const kind of ['pkcs1', 'pkcs8']) {
    const key = opensslKey(dir, kind, kind);
    assert.match(readFileSync(key.priv, 'utf8'), kind === 'pkcs1' ? /BEGIN RSA PRIVATE KEY/ : /BEGIN PRIVATE KEY/);
    await page.setInputFiles('#private-file', key.priv);
    await page.waitForFunction((id) => document.querySelector('#key-id').textContent === id, key.keyId.slice(0, 12));
    assert.equal(await page.getAttribute('#key-id', 'title'), `Full Key ID: ${key.keyId}`);
    assert.match(await page.textContent('#key-source'), /Your own RSA 2048 key/);
    // With its public key, which is checked.
    await page.setInputFiles('#public-file', key.pub);
    await page.waitForFunction(() => document.querySelector('#key-source').textContent.includes('public key checked'));
    assert.equal(await page.textContent('#key-id'), key.keyId.slice(0, 12));
    await page.setInputFiles('#public-file', []);
  }
  // A public key of another pair is refused, and the loaded identity stays.
  const other = opensslKey(dir, 'other', 'pkcs8');
  const before = await page.textContent('#key-id');
  await page.setInputFiles('#public-file', other.pub);
  await page.waitForSelector('#own-keys-error:text("does not belong")');
  assert.equal(await page.textContent('#key-id'), before);
  // A pasted key works as well as a file.
  await page.setInputFiles('#public-file', []);
  await page.setInputFiles('#private-file', []);
  await page.click('summary');
  await page.fill('#private-text', readFileSync(other.priv, 'utf8'));
  await page.click('#load-keys');
  await page.waitForFunction((id) => document.querySelector('#key-id').textContent === id, other.keyId.slice(0, 12));
  assertClean(page);
});

test('a key pair made in the browser (RSA 4096) shows its Key ID, downloads as PEM and connects', { timeout: 120000 }, async (t) => {
  const page = await openPage(browser, server.url, { t });
  // The page first looks for a key remembered on this device, then makes one. Chromium sometimes
  // finds a 4096-bit key in under half a second: then the progress is gone before it can be
  // seen, and the key is there instead.
  await page.waitForFunction(() => {
    const progress = document.querySelector('#keygen progress');
    const key = document.querySelector('#key-info');
    return (progress && progress.getClientRects().length > 0) || (key && !key.hidden);
  });
  if (await page.isVisible('#keygen progress')) {
    assert.match(await page.textContent('#keygen-status'), /RSA 4096/);
    assert.equal(await page.isDisabled('#connect'), true);
  } else {
    assert.equal(await page.isVisible('#key-info'), true, 'either the progress or the key is shown');
  }
  await page.waitForSelector('#key-info:not([hidden])', { timeout: 90000 });
  const shown = await page.textContent('#key-id');
  assert.match(shown, /^[0-9a-f]{12}$/);
  const full = (await page.getAttribute('#key-id', 'title')).replace('Full Key ID: ', '');
  assert.ok(full.startsWith(shown));

  const downloads = [];
  page.on('download', (d) => downloads.push(d));
  await page.click('#download-keys');
  for (let i = 0; i < 50 && downloads.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(downloads.length, 2);
  const files = {};
  for (const d of downloads) {
    const path = join(dir, d.suggestedFilename());
    await d.saveAs(path);
    files[d.suggestedFilename()] = path;
  }
  const priv = files[`dyspatcher-${shown}-private.pem`];
  const pub = files[`dyspatcher-${shown}-public.pem`];
  assert.ok(priv && pub, `downloaded ${Object.keys(files)}`);
  assert.equal(opensslKeyId(pub), full);
  const text = execFileSync('openssl', ['pkey', '-in', priv, '-text', '-noout']).toString();
  assert.match(text, /Private-Key: \(4096 bit/);
  const derived = join(dir, 'derived.pub.pem');
  execFileSync('openssl', ['pkey', '-in', priv, '-pubout', '-out', derived]);
  assert.equal(opensslKeyId(derived), full);

  await page.fill('#name', 'gena');
  await page.click('#connect');
  await waitConnected(page);
  assert.equal(await page.textContent('#me-key'), shown);
  assert.equal(await page.textContent(`#member-list .member[data-key="${full}"] .kid`), shown);
  assertClean(page);
});

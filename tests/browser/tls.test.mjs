// Over https with a self-signed certificate: the page and its WebSocket share the one port, so
// the certificate is accepted once and two pages chat end to end over wss.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys,
  sendTo, waitMessage, waitMembers, rmSync,
} from './helpers.mjs';

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { alice: opensslKey(dir, 'alice', 'pkcs8'), bob: opensslKey(dir, 'bob', 'pkcs1') };
  server = await startServer(['--ssl-self-signed']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('two pages chat over https and wss with the self-signed certificate', { timeout: 90000 }, async (t) => {
  assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
  // The server printed the fingerprint people compare with what their browser shows.
  const [, fingerprint] = await server.waitFor(/fingerprint is\s+((?:[0-9A-F]{2}:){31}[0-9A-F]{2})/, 5000);
  assert.equal(fingerprint.split(':').length, 32);
  const alice = await openPage(browser, server.url, { t, name: 'alice', acceptCertificate: true });
  const bob = await openPage(browser, server.url, { t, name: 'bob', acceptCertificate: true, viewport: { width: 360, height: 740 } });
  assert.equal(await alice.evaluate(() => window.isSecureContext), true);
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(alice, 2);
  await sendTo(alice, 'bobby', 'secret over wss');
  await waitMessage(bob, 'secret over wss');
  await sendTo(bob, '@all', 'everyone over wss');
  await waitMessage(alice, 'everyone over wss');
  assertClean(alice, bob);
});

// Public keys on request in a real page: the member list carries none, the page asks for a key
// (get_keys) only when it first needs it, keeps it, and refuses a key that does not match its
// key ID. Playwright sits between bob's page and the real server and can alter the answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys, sendTo,
  waitMessage, waitMembers, rmSync,
} from './helpers.mjs';

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { alice: opensslKey(dir, 'alice'), bob: opensslKey(dir, 'bob') };
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The SPKI of a public key PEM file, base64, as the server sends it. */
const spkiOf = (pubPem) => readFileSync(pubPem, 'utf8').replace(/-----[^-]+-----|\s/g, '');

test('a page fetches public keys only when it needs them, and refuses one that does not match its key ID', { timeout: 90000 }, async (t) => {
  let tamper = true;
  const fromBob = [];
  const toBob = [];
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await bob.routeWebSocket(/\/ws$/, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((m) => {
      fromBob.push(JSON.parse(m));
      upstream.send(m);
    });
    upstream.onMessage((m) => {
      let msg = JSON.parse(m);
      toBob.push(msg);
      // A hostile server: bob's own key handed out under every key ID asked for.
      if (tamper && msg.type === 'keys') {
        msg = { ...msg, keys: Object.fromEntries(Object.keys(msg.keys).map((k) => [k, spkiOf(keys.bob.pub)])) };
      }
      ws.send(JSON.stringify(msg));
    });
  });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(alice, 2);
  await waitMembers(bob, 2);

  // The welcome and the join notices carry no keys, and nobody has spoken: nothing asked.
  const welcome = toBob.find((m) => m.type === 'welcome');
  assert.ok(welcome.members.every((m) => !('public_key' in m) && JSON.stringify(m).length <= 200), JSON.stringify(welcome.members));
  assert.deepEqual(fromBob.filter((m) => m.type === 'get_keys'), []);

  // Alice writes: bob asks for her key, gets a key that is not hers, and refuses it.
  await sendTo(alice, 'bobby', 'under a forged key');
  await bob.waitForSelector('#messages .notice.warning:has-text("key ID does not match")');
  assert.equal(await bob.locator('.msg .text:text-is("under a forged key")').count(), 0, 'not shown as a message');
  const asked = fromBob.filter((m) => m.type === 'get_keys');
  assert.deepEqual(asked.map((m) => m.key_ids), [[keys.alice.keyId]]);

  // The honest answer: the key is asked for again, checked, and the message opens.
  tamper = false;
  await sendTo(alice, 'bobby', 'under the real key');
  await waitMessage(bob, 'under the real key');
  await sendTo(alice, 'bobby', 'and once more');
  await waitMessage(bob, 'and once more');
  const asks = fromBob.filter((m) => m.type === 'get_keys').map((m) => m.key_ids);
  assert.deepEqual(asks, [[keys.alice.keyId], [keys.alice.keyId]], 'a key that was taken is not asked for again');

  // Bob writes to everyone: he needs the admin's key too (to wrap his sender key), not alice's.
  await sendTo(bob, '@all', 'hello everyone');
  await waitMessage(alice, 'hello everyone');
  const last = fromBob.filter((m) => m.type === 'get_keys').at(-1).key_ids;
  assert.equal(last.includes(keys.alice.keyId), false);
  assert.equal(last.length, 1, 'only the admin key was missing');
  assertClean(alice, bob);
});

// What the page does with messages it must not trust, and with sender keys that go missing.
// Playwright sits between bob's page and the real server and alters, repeats or drops frames.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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

/** Changes one base64 character (not the padding). */
const flip = (b64) => (b64[0] === 'A' ? 'B' : 'A') + b64.slice(1);

/** Opens alice and bob; bob's WebSocket passes through `rules` (toPage(msg) → [msgs], toServer(msg) → bool). */
async function pair(t, rules) {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  const fromBob = [];
  await bob.routeWebSocket(/\/ws$/, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((m) => {
      const msg = JSON.parse(m);
      fromBob.push(msg);
      if (rules.toServer?.(msg) !== false) upstream.send(m);
    });
    upstream.onMessage((m) => {
      const out = rules.toPage?.(JSON.parse(m));
      for (const msg of out ?? [JSON.parse(m)]) ws.send(JSON.stringify(msg));
    });
  });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(alice, 2);
  await waitMembers(bob, 2);
  return { alice, bob, fromBob };
}

const shown = (page) => page.locator('#messages .msg.in').count();

test('altered, forged and repeated messages are never shown as messages', { timeout: 90000 }, async (t) => {
  let mode = 'pass';
  const rules = {
    toPage(msg) {
      if (msg.type !== 'direct' && msg.type !== 'all') return [msg];
      if (mode === 'alter') return [{ ...msg, ciphertext: flip(msg.ciphertext) }];
      if (mode === 'retimed') return [{ ...msg, ts: msg.ts - 6 * 60_000 }];
      if (mode === 'forge') {
        // Claims to come from bob's own key: the signature cannot match that key.
        return [{ ...msg, from: { name: 'bobby', key_id: keys.bob.keyId } }];
      }
      if (mode === 'repeat') return [msg, msg];
      return [msg];
    },
  };
  const { alice, bob } = await pair(t, rules);
  await sendTo(alice, 'bobby', 'a first, honest message');
  await waitMessage(bob, 'a first, honest message');

  let warnings = 0;
  for (const [m, dest, expect] of [
    ['alter', 'bobby', /alice was not shown: its signature does not verify/],
    ['alter', '@all', /alice was not shown: its signature does not verify/],
    ['retimed', 'bobby', /alice was not shown: its signature does not verify/],
    ['forge', 'bobby', /bobby was not shown: its signature does not verify/],
    ['forge', '@all', /bobby was not shown: its signature does not verify/],
  ]) {
    mode = m;
    const before = await shown(bob);
    await sendTo(alice, dest, `${m} to ${dest}`);
    warnings += 1;
    await bob.waitForFunction((n) => document.querySelectorAll('#messages .notice.warning').length === n, warnings);
    assert.match(await bob.locator('#messages .notice.warning').last().textContent(), expect, `${m} ${dest}`);
    assert.equal(await shown(bob), before, `${m} ${dest}: nothing shown as a message`);
    assert.equal(await bob.locator(`.msg .text:text-is("${m} to ${dest}")`).count(), 0);
  }

  mode = 'repeat';
  await sendTo(alice, 'bobby', 'said once, delivered twice');
  await sendTo(alice, '@all', 'to all once, delivered twice');
  await waitMessage(bob, 'to all once, delivered twice');
  mode = 'pass';
  await sendTo(alice, 'bobby', 'the last one');
  await waitMessage(bob, 'the last one');
  assert.equal(await bob.locator('.msg .text:text-is("said once, delivered twice")').count(), 1);
  assert.equal(await bob.locator('.msg .text:text-is("to all once, delivered twice")').count(), 1);
  assert.equal(await bob.locator('#messages .notice.warning').count(), warnings, 'repeats are dropped quietly');
  assertClean(alice, bob);
});

test('a missing sender key is asked for; one that never comes is reported after 30 s', { timeout: 120000 }, async (t) => {
  let blockKeys = true;
  const rules = {
    toPage: (msg) => (blockKeys && msg.type === 'sender_key' ? [] : [msg]),
    toServer: (msg) => !(blockKeys && msg.type === 'key_request'),
  };
  const { alice, bob, fromBob } = await pair(t, rules);

  // Neither the key nor the answer to bob's request gets through.
  await sendTo(alice, '@all', 'a message whose key is lost');
  const started = Date.now();
  await bob.waitForSelector('.notice.warning:has-text("never came")', { timeout: 45000 });
  const waited = Date.now() - started;
  assert.ok(waited >= 25000, `reported after ${waited} ms`);
  assert.match(await bob.locator('.notice.warning').first().textContent(), /alice was not shown: the sender.s key never came/);
  assert.equal(await bob.locator('.msg .text:text-is("a message whose key is lost")').count(), 0);
  const lostRequest = fromBob.find((m) => m.type === 'key_request');
  assert.equal(lostRequest.n, 0);

  // Now the request gets through: alice answers with the state of her recent message.
  blockKeys = false;
  const requestsBefore = fromBob.filter((m) => m.type === 'key_request').length;
  await sendTo(alice, '@all', 'a message opened after asking');
  await waitMessage(bob, 'a message opened after asking');
  const requests = fromBob.filter((m) => m.type === 'key_request');
  assert.equal(requests.length, requestsBefore + 1);
  assert.equal(requests.at(-1).n, 1);
  assert.equal(requests.at(-1).skid, lostRequest.skid);
  assertClean(alice, bob);
});

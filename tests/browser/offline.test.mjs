// A phone-sized page goes offline for 30 s while another page and the terminal client write to
// it, directly and via @all: it stays a member (away), the writers see their direct messages
// held, and when it comes back it resumes and shows every message exactly once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, startTerminalClient, launchBrowser, openPage, assertClean, tempDir, opensslKey,
  joinWithKeys, waitConnected, sendTo, waitMessage, waitMembers, sleep, rmSync,
  waitUntil,
} from './helpers.mjs';

const OFFLINE_MS = 30_000;
let server, browser, dir, keys, term;

before(async () => {
  dir = tempDir();
  keys = { alice: opensslKey(dir, 'alice'), bob: opensslKey(dir, 'bob'), term: opensslKey(dir, 'term') };
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await term?.stop();
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const count = (page, text) => page.locator('#messages .msg .text', { hasText: new RegExp(`^${text}$`) }).count();

test('offline for 30 s while two others write: after coming back, every message is shown once', { timeout: 150000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice', viewport: { width: 360, height: 740 } });
  // Chromium's offline emulation (context.setOffline) keeps an open WebSocket open and passing
  // data: only new connections fail. A phone that loses its network loses the connection too,
  // so the test cuts it here, between the page and the server, and refuses new ones while offline.
  let offline = false;
  const cuts = [];
  await alice.routeWebSocket(/\/ws$/, (ws) => {
    if (offline) {
      ws.close();
      return;
    }
    const upstream = ws.connectToServer();
    cuts.push(() => {
      ws.close();
      upstream.close();
    });
  });
  await joinWithKeys(alice, 'alice', keys.alice);
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  term = startTerminalClient(server, 'termy', ['--key', keys.term.priv]);
  await waitMembers(alice, 3);

  // Before: everyone has everyone's sender key, and alice has seen a message from each.
  await sendTo(bob, '@all', 'bob before');
  term.write('@all termy before');
  await waitMessage(alice, 'bob before');
  await waitMessage(alice, 'termy before');

  const context = alice.context();
  await context.setOffline(true);
  offline = true;
  const wentAt = Date.now();
  for (const cut of cuts.splice(0)) cut();
  await alice.waitForSelector('#status[data-state="reconnecting"]');
  assert.match(await alice.textContent('#status-text'), /offline/i);
  // The others see alice away, still listed, still someone to write to.
  await bob.waitForSelector(`#member-list .member.away[data-key="${keys.alice.keyId}"]`);
  assert.match(await bob.textContent(`#member-list .member[data-key="${keys.alice.keyId}"]`), /away/);

  await sendTo(bob, 'alice', 'bob direct while away');
  await sendTo(bob, '@all', 'bob to all while away');
  term.write('@alice termy direct while away');
  term.write('@all termy to all while away');
  // bob's direct message is held for alice, with a clock and words, not only a colour.
  const held = bob.locator('.msg.own', { hasText: 'bob direct while away' }).locator('.state.held');
  await held.waitFor({ state: 'attached' }); // in bob's conversation with alice, not the one open
  assert.match(await held.textContent(), /waiting: recipient away/);
  assert.match(await held.getAttribute('aria-label'), /away/);

  await sleep(Math.max(0, OFFLINE_MS - (Date.now() - wentAt)));
  offline = false;
  await context.setOffline(false);
  await waitConnected(alice, 30000);
  for (const text of ['bob direct while away', 'bob to all while away', 'termy direct while away', 'termy to all while away']) {
    await waitMessage(alice, text);
  }
  // Exactly once each, and the earlier ones were not shown again.
  for (const text of ['bob before', 'termy before', 'bob direct while away', 'bob to all while away', 'termy direct while away', 'termy to all while away']) {
    assert.equal(await count(alice, text), 1, text);
  }
  assert.equal(await alice.locator('#messages .msg.in').count(), 6);
  assert.equal(await alice.locator('.notice.warning').count(), 0);
  // bob's direct message reached alice's page: delivered, with two ticks.
  const delivered = bob.locator('.msg.own', { hasText: 'bob direct while away' }).locator('.state.delivered');
  await delivered.waitFor({ state: 'attached' });
  assert.match(await delivered.textContent(), /\u2713\u2713 delivered/);
  // Nobody rotated for an absence: alice's return cost no new sender keys, and she writes on.
  await sendTo(alice, '@all', 'alice is back');
  await waitMessage(bob, 'alice is back');
  await term.waitFor(/alice is back/);
  assert.doesNotMatch(term.output, /cannot be opened|refused/);
  // The attempts refused while offline are Chromium's own console lines.
  alice.problems = alice.problems.filter((p) => !/WebSocket connection to .* failed/.test(p));
  assertClean(alice, bob);
});

test('what no longer fits in the mailbox of an away page is dropped, and the page says how much', { timeout: 90000 }, async (t) => {
  const small = await startServer(['--mailbox-bytes', String(512 * 1024)]);
  t.after(() => small.stop());
  const alice = await openPage(browser, small.url, { t, name: 'alice' });
  await joinWithKeys(alice, 'alice', keys.alice);
  const bob = await openPage(browser, small.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitUntil(alice, async () => (await indexedDB.databases()).length === 1);
  await alice.goto('about:blank');
  await bob.waitForSelector(`#member-list .member.away[data-key="${keys.alice.keyId}"]`);
  // 16 direct messages of 30 KiB (about 41 KiB each on the wire) into a 512 KiB mailbox.
  const filler = 'z'.repeat(30 * 1024);
  for (let i = 1; i <= 16; i++) await sendTo(bob, 'alice', `${String(i).padStart(2, '0')} ${filler}`);
  await alice.goto(small.url);
  await waitConnected(alice);
  const gap = alice.locator('.notice', { hasText: /kept for you (was|were) dropped while you were away/ });
  await gap.waitFor();
  const [, dropped, direct] = (await gap.textContent()).match(/^(\d+) messages? kept .* \((\d+) direct/);
  assert.ok(Number(dropped) >= 1 && Number(direct) >= 1, await gap.textContent());
  await waitMessage(alice, `16 ${filler}`);
  const shown = await alice.$$eval('#messages .msg.in .text', (els) => els.map((e) => e.textContent.slice(0, 2)));
  // The oldest went, the newest stayed, in order, each once.
  assert.deepEqual(shown, Array.from({ length: shown.length }, (_, i) => String(17 - shown.length + i).padStart(2, '0')));
  assert.ok(shown.length < 16 && shown.length + Number(direct) === 16, `${shown.length} shown, ${direct} dropped`);
  assertClean(alice, bob);
});

test('a message whose answer was lost with the connection is sent again, and counts as sent once', { timeout: 60000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  let dropAnswers = false;
  const cuts = [];
  const sentByPage = [];
  await alice.routeWebSocket(/\/ws$/, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((m) => {
      sentByPage.push(JSON.parse(m));
      upstream.send(m);
    });
    upstream.onMessage((m) => {
      const msg = JSON.parse(m);
      // The server's answers (ack, delivery) die with the connection.
      if (dropAnswers && (msg.type === 'ack' || msg.type === 'delivery')) return;
      ws.send(m);
    });
    cuts.push(() => {
      ws.close();
      upstream.close();
    });
  });
  await joinWithKeys(alice, 'alice', keys.alice);
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  await alice.waitForSelector(`#member-list .member[data-key="${keys.bob.keyId}"]`);
  dropAnswers = true;
  await alice.click(`#member-list .member[data-key="${keys.bob.keyId}"]`);
  await alice.fill('#text', 'did this arrive?');
  await alice.press('#text', 'Enter');
  await waitMessage(bob, 'did this arrive?');
  assert.equal(await alice.textContent('.msg.own .state'), 'sending\u2026');
  dropAnswers = false;
  for (const cut of cuts.splice(0)) cut();
  // After the resume the page sends it again with the same id; the server knew it: accepted.
  await waitConnected(alice, 30000);
  await alice.waitForSelector('.msg.own .state.sent, .msg.own .state.delivered');
  const copies = sentByPage.filter((m) => m.type === 'direct');
  assert.equal(copies.length, 2);
  assert.equal(copies[0].id, copies[1].id);
  assert.equal(await bob.locator('.msg .text:text-is("did this arrive?")').count(), 1);
  assertClean(alice, bob);
});

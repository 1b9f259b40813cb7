// The web client as a messenger: conversations that route right, unread counts and the Everyone
// conversation; key-change warnings; the verify screen (safety codes equal on both sides, a QR
// code that decodes to the key ID); notifications while hidden; history kept across a reload and
// wiped by "Forget this device".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import jsQR from 'jsqr';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys, leave,
  sendTo, waitMessage, waitMembers, waitConnected, openConversation, listEntry, rmSync, waitUntil,
} from './helpers.mjs';

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = {
    alice: opensslKey(dir, 'alice'),
    alice2: opensslKey(dir, 'alice2'),
    bob: opensslKey(dir, 'bob'),
    carol: opensslKey(dir, 'carol'),
  };
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const unread = (page, key) => page.locator(`#member-list .member[data-key="${key}"] .unread`).textContent({ timeout: 5000 }).catch(() => null);

test('conversations route right: a message typed in bob\u2019s conversation reaches bob only; unread counts; Everyone', { timeout: 120000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob', viewport: { width: 360, height: 740 } });
  const carol = await openPage(browser, server.url, { t, name: 'carol' });
  const bobIn = [];
  const carolIn = [];
  bob.on('websocket', (ws) => ws.on('framereceived', (f) => bobIn.push(JSON.parse(f.payload))));
  carol.on('websocket', (ws) => ws.on('framereceived', (f) => carolIn.push(JSON.parse(f.payload))));
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await joinWithKeys(carol, 'carol', keys.carol);
  await waitMembers(alice, 3);

  // The phone starts on the list; the desktop shows the list beside a conversation.
  assert.equal(await bob.getAttribute('#chat', 'data-view'), 'list');
  assert.equal(await bob.isVisible('#text'), false);
  await sendTo(alice, 'bobby', 'for bob only');
  assert.equal(await alice.textContent('#conv-title'), 'bobby');
  assert.match(await alice.getAttribute('#text', 'placeholder'), /bobby/);
  await bob.waitForFunction((k) => document.querySelector(`#member-list .member[data-key="${k}"] .unread`)?.textContent === '1', keys.alice.keyId);
  assert.match(await bob.textContent(`#member-list .member[data-key="${keys.alice.keyId}"] .last`), /^for bob only$/);
  // The message sits in bob's conversation with alice, not in Everyone.
  const got = await waitMessage(bob, 'for bob only');
  assert.equal(got.conversation, keys.alice.keyId);
  assert.equal(await bob.locator('.messages[data-conv="all"] .msg').count(), 0);
  // Only bob got a direct frame; carol none.
  assert.equal(bobIn.filter((m) => m.type === 'direct').length, 1);
  assert.equal(carolIn.filter((m) => m.type === 'direct').length, 0);

  // The conversation open on alice's page stays the recipient: a second message goes to bob too.
  await alice.fill('#text', 'still for bob');
  await alice.press('#text', 'Enter');
  await bob.waitForFunction((k) => document.querySelector(`#member-list .member[data-key="${k}"] .unread`)?.textContent === '2', keys.alice.keyId);
  // Opening the conversation reads it; back returns to the list.
  await openConversation(bob, 'alice');
  assert.equal(await bob.getAttribute('#chat', 'data-view'), 'conv');
  assert.equal(await unread(bob, keys.alice.keyId), null);
  await bob.click('#back');
  assert.equal(await bob.getAttribute('#chat', 'data-view'), 'list');

  // Everyone: @all reaches both, counted as unread where it is not open.
  await sendTo(alice, '@all', 'hello all');
  await waitMessage(carol, 'hello all');
  const all = await waitMessage(bob, 'hello all');
  assert.equal(all.conversation, 'all');
  assert.equal(await unread(bob, 'all'), '1');
  assert.equal(carolIn.filter((m) => m.type === 'direct').length, 0, 'carol never got a direct message');
  // The admin's prompt shows the @all, and never what was typed in bob's conversation.
  await server.waitFor(/alice.*hello all/);
  assert.ok(!server.output.includes('for bob only') && !server.output.includes('still for bob'), 'the prompt saw a direct message to bob');
  assert.equal(await carol.locator('#messages .msg', { hasText: 'bob' }).count(), 0);
  // Scrolled up, a new message shows a "New messages" button instead of moving the view.
  await openConversation(bob, 'alice');
  const long = (n) => Array.from({ length: 14 }, (_, i) => `message ${n}, line ${i + 1}`).join('\n');
  for (let n = 1; n <= 3; n++) await sendTo(alice, 'bobby', long(n));
  await waitMessage(bob, long(3));
  await bob.evaluate(() => {
    const s = document.querySelector('#conversation');
    s.scrollTop = 0;
    s.dispatchEvent(new Event('scroll'));
  });
  assert.equal(await bob.isVisible('#new-pill'), false);
  await sendTo(alice, 'bobby', 'while bob reads older ones');
  await waitMessage(bob, 'while bob reads older ones');
  await bob.waitForSelector('#new-pill', { state: 'visible' });
  assert.equal(await bob.evaluate(() => document.querySelector('#conversation').scrollTop), 0, 'the view stays where bob was');
  await bob.click('#new-pill');
  await bob.waitForSelector('#new-pill', { state: 'hidden' });
  assert.ok(await bob.evaluate(() => {
    const s = document.querySelector('#conversation');
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }));
  // A sender's name in Everyone opens that person's conversation.
  await carol.click('#member-list .member[data-key="all"]');
  await carol.click('.messages[data-conv="all"] .msg .from');
  assert.equal(await carol.textContent('#conv-title'), 'alice');
  assertClean(alice, bob, carol);
});

test('a name seen before with another key is flagged in the list and on its messages until verified', { timeout: 120000 }, async (t) => {
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  const first = await openPage(browser, server.url, { t, name: 'alice' });
  await joinWithKeys(first, 'alice', keys.alice);
  await bob.waitForSelector(`#member-list .member[data-key="${keys.alice.keyId}"]`);
  assert.equal(await bob.locator('#member-list .member.changed').count(), 0, 'a first sighting is no change');
  await leave(first);
  await bob.waitForSelector(`#member-list .member[data-key="${keys.alice.keyId}"]`, { state: 'detached' });
  // Someone else takes the name with another key.
  const other = await openPage(browser, server.url, { t, name: 'alice2' });
  await joinWithKeys(other, 'alice', keys.alice2);
  const entry = `#member-list .member[data-key="${keys.alice2.keyId}"]`;
  await bob.waitForSelector(`${entry}.changed`);
  assert.match(await bob.textContent(`${entry} .badge.changed`), /key changed/);
  await sendTo(other, 'bobby', 'it is me, honest');
  const got = await waitMessage(bob, 'it is me, honest');
  assert.match(got.classes, /\bchanged\b/);
  assert.equal(
    await bob.textContent('.msg.changed .changed-note'),
    '\u26a0 alice\u2019s key changed \u2014 verify again',
  );
  await openConversation(bob, 'alice');
  assert.match(await bob.textContent('#conv-warning'), /alice’s key changed — verify again/);
  // Verifying the new key takes the warning away.
  await bob.click('#verify-open');
  assert.match(await bob.textContent('#verify-warning'), /another key/);
  await bob.click('#mark-verified');
  await bob.waitForSelector(`${entry}:not(.changed) .badge.verified`);
  assertClean(bob, other);
});

test('verify: the safety code is the same on both pages, and the QR code decodes to the key ID', { timeout: 90000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice', viewport: { width: 360, height: 740 } });
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await openConversation(alice, 'bobby');
  await alice.click('#verify-open');
  await openConversation(bob, 'alice');
  await bob.click('#verify-open');
  await alice.waitForFunction(() => /^\d{5} \d{5} \d{5} \d{5}$/.test(document.querySelector('#safety-code').textContent));
  await bob.waitForFunction(() => /^\d{5} \d{5} \d{5} \d{5}$/.test(document.querySelector('#safety-code').textContent));
  assert.equal(await alice.textContent('#safety-code'), await bob.textContent('#safety-code'));
  // Both fingerprints in full, in groups of 4.
  const grouped = (id) => id.match(/.{4}/g).join(' ');
  assert.equal(await alice.textContent('#their-key'), grouped(keys.bob.keyId));
  assert.equal(await alice.textContent('#your-key'), grouped(keys.alice.keyId));
  // Another pair has another code.
  const carol = await openPage(browser, server.url, { t, name: 'carol' });
  await joinWithKeys(carol, 'carol', keys.carol);
  await openConversation(carol, 'alice');
  await carol.click('#verify-open');
  await carol.waitForFunction(() => /^\d{5}/.test(document.querySelector('#safety-code').textContent));
  assert.notEqual(await carol.textContent('#safety-code'), await bob.textContent('#safety-code'));
  // The QR code, read back from the canvas the page drew, holds alice's key ID.
  for (const [page, id] of [[alice, keys.alice.keyId], [bob, keys.bob.keyId]]) {
    const image = await page.evaluate(() => {
      const canvas = document.querySelector('#qr');
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      return { width: data.width, height: data.height, data: [...data.data] };
    });
    const code = jsQR(Uint8ClampedArray.from(image.data), image.width, image.height);
    assert.equal(code?.data, id);
  }
  // Marked verified: shown in the list and on every message from that key.
  await alice.click('#mark-verified');
  assert.match(await alice.textContent('#verify-state'), /bobby is verified/);
  await alice.click('#verify-back');
  await sendTo(bob, 'alice', 'verified hello');
  const got = await waitMessage(alice, 'verified hello');
  assert.equal(await alice.locator('.msg:has-text("verified hello") .badge.verified').count(), 1, got.classes);
  assert.equal(await alice.locator(`#member-list .member[data-key="${keys.bob.keyId}"] .badge.verified`).count(), 1);
  assertClean(alice, bob, carol);
});

test('notifications: asked from the menu, shown for a direct message while hidden, never for your own', { timeout: 90000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await bob.context().grantPermissions(['notifications']);
  await bob.evaluate(() => {
    window.__shown = [];
    window.Notification = class extends window.Notification {
      constructor(title, options) {
        super(title, options);
        window.__shown.push({ title, body: options?.body });
      }
    };
  });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  assert.deepEqual(await bob.evaluate(() => window.__shown), [], 'nothing asked or shown on load');
  await bob.click('#menu-open');
  await bob.click('#notify');
  await bob.waitForFunction(() => document.querySelector('#notify').getAttribute('aria-pressed') === 'true');
  await bob.keyboard.press('Escape');
  await bob.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await sendTo(bob, 'alice', 'my own words');
  await sendTo(alice, '@all', 'to all, no mention');
  await waitMessage(bob, 'to all, no mention');
  await sendTo(alice, 'bobby', 'psst bob');
  await waitMessage(bob, 'psst bob');
  await sendTo(alice, '@all', 'hey @bobby look');
  await waitMessage(bob, 'hey @bobby look');
  // A long message is cut at 140 characters in the notification.
  const long = 'x'.repeat(139) + 'yz';
  await sendTo(alice, 'bobby', long);
  await waitMessage(bob, long);
  assert.deepEqual(await bob.evaluate(() => window.__shown), [
    { title: 'dyspatcher: alice', body: 'psst bob' },
    { title: 'dyspatcher: alice to everyone', body: 'hey @bobby look' },
    { title: 'dyspatcher: alice', body: `${'x'.repeat(139)}y\u2026` },
  ]);
  assert.equal(await bob.title(), '(4) dyspatcher \u2014 bobby');
  assert.match(await bob.getAttribute('#favicon', 'href'), /^data:image\/png;base64,/);
  assert.equal(await bob.locator('.msg.mention mark.mention').count(), 1);
  assertClean(alice, bob);
});

test('history: a reload shows the conversations again (remember on); "Forget this device" wipes them', { timeout: 120000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await sendTo(alice, 'bobby', 'kept one');
  await sendTo(bob, 'alice', 'kept two');
  await sendTo(alice, '@all', 'kept three');
  await waitMessage(bob, 'kept three');
  // The history is on the device, encrypted (read back through the page's own storage module).
  // (Written within a moment of each message; asked again until it is.)
  await waitUntil(alice, async () => {
    const store = await import('/store.js');
    const kept = await store.loadHistories();
    const texts = (k) => (kept.get(k) ?? []).filter((r) => !r.event).map((r) => r.text).join('|');
    return texts('all') === 'kept three' && [...kept.keys()].some((k) => texts(k) === 'kept one|kept two');
  });
  const raw = await alice.evaluate(() => new Promise((res) => {
    const req = indexedDB.open('dyspatcher');
    req.onsuccess = () => {
      const tx = req.result.transaction('kv');
      const r = tx.objectStore('kv').getAll();
      tx.oncomplete = () => {
        req.result.close();
        res(JSON.stringify(r.result.map((v) => (v?.ciphertext ? [...v.ciphertext] : String(v)))));
      };
    };
  }));
  assert.equal(raw.includes('kept'), false);
  await alice.reload();
  await waitConnected(alice);
  const shown = await alice.$$eval('#messages .msg.history .text', (els) => els.map((e) => e.textContent));
  assert.deepEqual(shown.sort(), ['kept one', 'kept three', 'kept two']);
  assert.equal(await alice.locator('#messages .msg .text:text-is("kept two")').count(), 1, 'shown once');
  assert.match(await alice.textContent(`#member-list .member[data-key="${keys.bob.keyId}"] .last`), /kept two/);
  // Bounded: the last 2000 messages of a conversation are kept, the oldest go first.
  const bounded = await alice.evaluate(async () => {
    const store = await import('/store.js');
    const records = Array.from({ length: store.MAX_HISTORY + 1 }, (_, i) => ({ event: true, ts: i, text: `n${i}` }));
    await store.saveHistory('bound-check', records);
    const kept = (await store.loadHistories()).get('bound-check');
    return [store.MAX_HISTORY, kept.length, kept[0].text, kept.at(-1).text];
  });
  assert.deepEqual(bounded, [2000, 2000, 'n1', 'n2000']);
  // Forget this device: the history goes with everything else.
  await alice.click('#menu-open');
  await alice.click('#forget');
  await alice.click('#forget-confirm');
  await alice.waitForSelector('#start:not([hidden])');
  assert.equal(await alice.locator('#messages li').count(), 0);
  assert.deepEqual(await alice.evaluate(async () => (await indexedDB.databases()).map((d) => d.name)), []);
  await alice.reload();
  await alice.waitForSelector('#start:not([hidden])');
  assert.equal(await alice.locator('#messages li').count(), 0);
  assertClean(alice, bob);
});

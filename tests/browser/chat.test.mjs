// Two (and three) browser pages chat through the real server: direct, @all, sender-key
// rotation when someone leaves, HTML shown as text, unread count, export.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys,
  sendTo, waitMessage, memberNames, waitMembers, rmSync, leave, openConversation,
} from './helpers.mjs';

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = {
    alice: opensslKey(dir, 'alice', 'pkcs1'),
    bob: opensslKey(dir, 'bob', 'pkcs8'),
    carol: opensslKey(dir, 'carol', 'pkcs1'),
  };
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('two pages chat directly and via @all, with verified signatures', { timeout: 90000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob', viewport: { width: 360, height: 740 } });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(alice, 2);
  assert.deepEqual(await memberNames(alice), ['ADMIN', 'alice', 'bobby']);
  assert.equal(await alice.textContent('#member-list .member.admin .badge.admin'), 'admin');
  const bobKid = await alice.textContent(`#member-list .member[data-key="${keys.bob.keyId}"] .kid`);
  assert.equal(await alice.locator('#member-list .member.all .name').textContent(), 'Everyone');
  assert.equal(bobKid, keys.bob.keyId.slice(0, 12));

  await sendTo(alice, 'bobby', 'hello bob, only for you');
  let got = await waitMessage(bob, 'hello bob, only for you');
  assert.match(got.classes, /\bdirect\b/);
  assert.match(got.classes, /\bin\b/);
  assert.equal(got.from, 'alice');
  assert.equal(got.to, 'bobby');
  assert.equal(got.conversation, keys.alice.keyId, "in bob's conversation with alice");
  assert.equal(got.state, null, 'shown only once its signature verified; no delivery state on a received message');

  await sendTo(bob, '@all', 'hello everyone from bob');
  got = await waitMessage(alice, 'hello everyone from bob');
  assert.match(got.classes, /\ball\b/);
  assert.equal(got.to, '@all');
  assert.equal(got.conversation, 'all');
  assert.equal(got.state, null, 'shown only once its signature verified; no delivery state on a received message');

  await sendTo(bob, 'alice', 'line one\nline two');
  got = await waitMessage(alice, 'line one\nline two');
  assert.match(got.classes, /\bdirect\b/);

  // A second @all uses the same sender key without distributing it again.
  await sendTo(bob, '@all', 'second to all');
  await waitMessage(alice, 'second to all');
  assert.equal(await alice.locator('.notice.warning').count(), 0);
  assertClean(alice, bob);
});

test('a message holding HTML and script is shown as plain text', { timeout: 60000 }, async (t) => {
  const a = await openPage(browser, server.url, { t, name: 'a' });
  const b = await openPage(browser, server.url, { t, name: 'b' });
  await joinWithKeys(a, 'alice', keys.alice);
  await joinWithKeys(b, 'bobby', keys.bob);
  const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b> & "quotes"';
  await sendTo(a, 'bobby', evil);
  const got = await waitMessage(b, evil);
  assert.equal(got.elements, 0, 'no element was created from the text');
  assert.ok(got.html.includes('&lt;script&gt;'));
  await sendTo(a, '@all', evil);
  await b.waitForFunction((t) => [...document.querySelectorAll('.msg.all .text')].some((e) => e.textContent === t), evil);
  assert.equal(await b.evaluate(() => window.__pwned ?? null), null);
  assert.equal(await b.locator('#messages img, #messages script, #messages b').count(), 0);
  // Links: http and https only, built as elements, opened without opener or referrer.
  await sendTo(a, 'bobby', 'see https://example.org/a?b=1, or javascript:alert(1) or ftp://x.test');
  await waitMessage(b, 'see https://example.org/a?b=1, or javascript:alert(1) or ftp://x.test');
  const links = await b.$$eval('#messages .msg .text a', (els) => els.map((e) => [e.getAttribute('href'), e.getAttribute('rel'), e.getAttribute('target'), e.textContent]));
  assert.deepEqual(links, [['https://example.org/a?b=1', 'noopener noreferrer', '_blank', 'https://example.org/a?b=1']]);
  assertClean(a, b);
});

test('after a member leaves, @all goes on under fresh sender keys that the leaver never gets', { timeout: 90000 }, async (t) => {
  const a = await openPage(browser, server.url, { t, name: 'a' });
  const b = await openPage(browser, server.url, { t, name: 'b' });
  const c = await openPage(browser, server.url, { t, name: 'c' });
  const sent = [];
  a.on('websocket', (ws) => ws.on('framesent', (f) => sent.push(JSON.parse(f.payload))));
  await joinWithKeys(a, 'alice', keys.alice);
  await joinWithKeys(b, 'bobby', keys.bob);
  await joinWithKeys(c, 'carol', keys.carol);
  await waitMembers(a, 3);
  const adminKey = await a.getAttribute('#member-list .member.admin', 'data-key');
  await sendTo(a, '@all', 'before carol leaves');
  await waitMessage(b, 'before carol leaves');
  await waitMessage(c, 'before carol leaves');
  const allBefore = sent.filter((m) => m.type === 'all');
  assert.equal(allBefore.length, 1);
  const keysBefore = sent.filter((m) => m.type === 'sender_key' && m.skid === allBefore[0].skid);
  assert.deepEqual(keysBefore.flatMap((m) => Object.keys(m.keys)).sort(), [adminKey, keys.bob.keyId, keys.carol.keyId].sort());

  await leave(c);
  await a.waitForSelector('.notice:text("carol left")');
  await b.waitForSelector('.notice:text("carol left")');
  await sendTo(a, '@all', 'after carol left');
  await waitMessage(b, 'after carol left');
  const allAfter = sent.filter((m) => m.type === 'all').at(-1);
  assert.notEqual(allAfter.skid, allBefore[0].skid, 'a fresh sender key after someone left');
  assert.equal(allAfter.n, 0);
  const keysAfter = sent.filter((m) => m.type === 'sender_key' && m.skid === allAfter.skid);
  assert.deepEqual(keysAfter.flatMap((m) => Object.keys(m.keys)).sort(), [adminKey, keys.bob.keyId].sort(), 'carol does not get the new key');
  await sendTo(b, '@all', 'bob after carol left');
  await waitMessage(a, 'bob after carol left');
  assert.equal(await a.locator('.notice.warning').count(), 0);
  assert.equal(await b.locator('.notice.warning').count(), 0);
  assertClean(a, b, c);
});

test('the tab title counts unread messages while the page is hidden; export of a conversation and of all, with a header', { timeout: 60000 }, async (t) => {
  const a = await openPage(browser, server.url, { t, name: 'a' });
  const b = await openPage(browser, server.url, { t, name: 'b' });
  await joinWithKeys(b, 'bobby', keys.bob);
  await joinWithKeys(a, 'alice', keys.alice);
  // Make page b look hidden to itself, as a background tab is.
  await b.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await sendTo(a, 'bobby', 'unread one');
  await sendTo(a, '@all', 'unread two');
  await waitMessage(b, 'unread two');
  assert.equal(await b.title(), '(2) dyspatcher \u2014 bobby');
  await b.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'visible' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  assert.equal(await b.title(), 'dyspatcher \u2014 bobby');

  await sendTo(b, 'alice', 'a reply\nwith two lines');
  // Export of one conversation: a header, then its messages (the @all one is in Everyone).
  const [download] = await Promise.all([b.waitForEvent('download'), b.click('#export')]);
  assert.match(download.suggestedFilename(), /^dyspatcher-alice-\d{8}-\d{4}\.txt$/);
  const text = readFileSync(await download.path(), 'utf8');
  const [head, body] = text.split('\n\n');
  assert.match(head, /^dyspatcher conversation export\nServer: http:\/\/127\.0\.0\.1:\d+\nExported: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n/);
  assert.ok(head.includes(`Your Key ID: ${keys.bob.keyId}`));
  assert.ok(head.includes('Conversation: alice'));
  const lines = body.trimEnd().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d alice \u2192 bobby: unread one$/);
  assert.match(lines[1], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d bobby \u2192 alice: a reply\\nwith two lines$/);
  // Export of everything: every conversation, joins and leaves included.
  await b.click('#menu-open');
  const [all] = await Promise.all([b.waitForEvent('download'), b.click('#export-all')]);
  const everything = readFileSync(await all.path(), 'utf8');
  assert.match(everything, /alice \u2192 @all: unread two\n/);
  assert.match(everything, /alice \u2192 bobby: unread one\n/);
  assert.match(everything, /\* alice joined\n/);
  assertClean(a, b);
});

test('keyboard only: join with Enter, open a conversation with Tab and Enter, Shift+Enter for a new line, a sheet opened and closed', { timeout: 60000 }, async (t) => {
  const a = await openPage(browser, server.url, { t, name: 'a' });
  const b = await openPage(browser, server.url, { t, name: 'b' });
  await joinWithKeys(b, 'bobby', keys.bob);
  await a.click('#own-keys-toggle');
  await a.setInputFiles('#private-file', keys.alice.priv);
  await a.waitForSelector('#key-info:not([hidden])');
  await a.focus('#name');
  await a.keyboard.type('alice');
  await a.keyboard.press('Enter');
  await a.waitForSelector('#status[data-state="connected"]');
  await waitMembers(a, 2);
  // Tab walks the conversation list; Enter opens one and puts the cursor in its composer.
  const target = `#member-list .member[data-key="${keys.bob.keyId}"]`;
  await a.focus('#member-list .member[data-key="all"]');
  for (let i = 0; i < 6 && !(await a.evaluate((s) => document.activeElement === document.querySelector(s), target)); i++) {
    await a.keyboard.press('Tab');
  }
  assert.equal(await a.evaluate((s) => document.activeElement === document.querySelector(s), target), true);
  await a.keyboard.press('Enter');
  assert.equal(await a.textContent('#conv-title'), 'bobby');
  assert.equal(await a.evaluate(() => document.activeElement.id), 'text');
  await a.keyboard.type('first line');
  await a.keyboard.press('Shift+Enter');
  await a.keyboard.type('second line');
  await a.keyboard.press('Enter');
  const got = await waitMessage(b, 'first line\nsecond line');
  assert.equal(got.from, 'alice');
  assert.equal(await a.inputValue('#text'), '');
  // Before the message box: the voice note and attach buttons; then the history, which scrolls by
  // keyboard: the conversation is a focusable region.
  await a.keyboard.press('Shift+Tab');
  assert.equal(await a.evaluate(() => document.activeElement.id), 'record');
  await a.keyboard.press('Shift+Tab');
  assert.equal(await a.evaluate(() => document.activeElement.id), 'attach');
  await a.keyboard.press('Shift+Tab');
  assert.equal(await a.evaluate(() => !!document.activeElement.closest('#conversation')), true);
  await a.focus('#conversation');
  // The menu is a modal dialog: focus stays inside, Escape closes it and focus comes back.
  await a.focus('#menu-open');
  await a.keyboard.press('Enter');
  assert.equal(await a.evaluate(() => document.querySelector('#menu').open), true);
  for (let i = 0; i < 12; i++) {
    await a.keyboard.press('Tab');
    assert.equal(await a.evaluate(() => !!document.activeElement.closest('#menu')), true, 'focus stays in the menu');
  }
  await a.keyboard.press('Escape');
  assert.equal(await a.evaluate(() => document.querySelector('#menu').open), false);
  assert.equal(await a.evaluate(() => document.activeElement.id), 'menu-open');
  assertClean(a, b);
});

// Server options as the page shows them: --disable-all hides @all from users (not from the
// admin), --only-admin shows users only the admin, --welcome arrives from the admin, verified.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys, sendTo,
  waitMessage, memberNames, rmSync,
} from './helpers.mjs';

let browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { admin: opensslKey(dir, 'admin'), alice: opensslKey(dir, 'alice'), bob: opensslKey(dir, 'bob') };
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('--disable-all: users have no @all, the admin web seat has it', { timeout: 90000 }, async (t) => {
  const server = await startServer(['--disable-all', '--admin-private-key', keys.admin.priv]);
  t.after(() => server.stop());
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  await joinWithKeys(alice, 'alice', keys.alice);
  await alice.waitForSelector('#member-list .member.admin');
  assert.equal(await alice.locator('#member-list .member.all').count(), 0);
  // The admin is the only other member: its conversation is the one open.
  assert.equal(await alice.textContent('#conv-title'), 'ADMIN');
  await sendTo(alice, 'ADMIN', 'to the admin without @all');
  await server.waitFor(/to the admin without @all/);

  const seat = await openPage(browser, server.url, { t, name: 'seat' });
  await joinWithKeys(seat, 'whoever', keys.admin);
  assert.equal(await seat.locator('#member-list .member.all').count(), 1);
  await sendTo(seat, '@all', 'the admin can still write to all');
  const got = await waitMessage(alice, 'the admin can still write to all');
  assert.equal(got.to, '@all');
  assertClean(alice, seat);
});

test('--only-admin: users see and write only to the admin', { timeout: 90000 }, async (t) => {
  const server = await startServer(['--only-admin', '--admin-private-key', keys.admin.priv]);
  t.after(() => server.stop());
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  const seat = await openPage(browser, server.url, { t, name: 'seat' });
  await joinWithKeys(seat, 'whoever', keys.admin);
  await seat.waitForFunction(() => document.querySelectorAll('#member-list .member:not(.all)').length === 3);
  assert.deepEqual(await memberNames(seat), ['ADMIN', 'alice', 'bobby']);
  assert.deepEqual(await memberNames(alice), ['ADMIN', 'alice']);
  assert.deepEqual(await memberNames(bob), ['ADMIN', 'bobby']);
  assert.equal(await alice.locator('#member-list .member.all').count(), 0);
  await sendTo(alice, 'ADMIN', 'only the admin reads this');
  await waitMessage(seat, 'only the admin reads this');
  await sendTo(seat, 'alice', 'and only alice reads this');
  await waitMessage(alice, 'and only alice reads this');
  assertClean(alice, bob, seat);
});

test('--welcome: the welcome text arrives from the admin, verified', { timeout: 60000 }, async (t) => {
  const server = await startServer(['--welcome', 'Welcome to the <b>test</b> chat']);
  t.after(() => server.stop());
  // The admin, who sends the welcome, joins once its fresh key is made.
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  await bob.waitForSelector('#member-list .member.admin');
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  await joinWithKeys(alice, 'alice', keys.alice);
  const got = await waitMessage(alice, 'Welcome to the <b>test</b> chat');
  assert.equal(got.from, 'ADMIN');
  assert.equal(got.state, null, 'shown only once its signature verified; no delivery state on a received message');
  assert.equal(got.elements, 0);
  assertClean(alice, bob);
});

test('a message the server refuses (rate limit) is marked as not delivered, with the reason', { timeout: 60000 }, async (t) => {
  const server = await startServer(['--rate-limit', '1']);
  t.after(() => server.stop());
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await alice.click(`#member-list .member[data-key="${keys.bob.keyId}"]`);
  for (let i = 1; i <= 6; i++) {
    await alice.fill('#text', `burst ${i}`);
    await alice.press('#text', 'Enter');
  }
  await alice.waitForFunction(() => document.querySelectorAll('.msg.own .state.sending').length === 0, null, { timeout: 20000 });
  const states = await alice.$$eval('.msg.own', (els) => els.map((e) => [e.querySelector('.text').textContent, e.querySelector('.state').textContent, e.classList.contains('refused')]));
  const refused = states.filter(([, , r]) => r);
  const sent = states.filter(([, s]) => s === '\u2713 sent' || s === '\u2713\u2713 delivered');
  assert.ok(refused.length >= 1, JSON.stringify(states));
  assert.equal(refused.length + sent.length, 6);
  // Refused with the server's reason, or, when the refusal names no message, unconfirmed.
  for (const [, s] of refused) assert.match(s, /^not (delivered|confirmed): .+/);
  for (const [text] of sent) await waitMessage(bob, text);
  assert.equal(await bob.locator('.msg.in').count(), sent.length);
  // Not delivered is never a silent loss: Retry sends it again, under a new id, and it arrives.
  const [lost] = states.find(([, s, r]) => r && /^not delivered/.test(s)) ?? [];
  if (lost) {
    await alice.locator('.msg.own.refused', { hasText: lost }).locator('.retry').click();
    await alice.waitForFunction((t) => [...document.querySelectorAll('.msg.own:not(.refused)')].some((li) => li.querySelector('.text').textContent === t && li.querySelector('.state.sent, .state.delivered')), lost);
    await waitMessage(bob, lost);
  }
  assertClean(alice, bob);
});

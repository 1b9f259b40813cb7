// The admin's web seat: a page that loads the server's admin key becomes the admin, and the
// admin prompt (the server's stdin/stdout) and the web seat mirror each other both ways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys, waitConnected,
  sendTo, waitMessage, waitMembers, rmSync,
} from './helpers.mjs';

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { admin: opensslKey(dir, 'admin', 'pkcs1'), bob: opensslKey(dir, 'bob', 'pkcs8') };
  server = await startServer(['--admin-private-key', keys.admin.priv]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('the admin web seat and the prompt mirror each other both ways', { timeout: 120000 }, async (t) => {
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(bob, 1);
  assert.equal(await bob.getAttribute('#member-list .member.admin', 'data-key'), keys.admin.keyId);
  // bob gives his sender key to the admin (the prompt) before the web seat exists.
  await sendTo(bob, '@all', 'bob to all before the web seat');
  await server.waitFor(/bob to all before the web seat/);

  // Any valid name: the server's admin name replaces it.
  const seat = await openPage(browser, server.url, { t, name: 'seat' });
  await joinWithKeys(seat, 'whoever', keys.admin);
  assert.equal(await seat.textContent('#me-name'), 'ADMIN');
  assert.equal(await seat.isVisible('#me-admin'), true);
  assert.equal(await seat.textContent('#me-key'), keys.admin.keyId.slice(0, 12));
  assert.equal(await seat.title(), 'dyspatcher \u2014 ADMIN');

  // Prompt → user: the user sees "via prompt", the web seat sees what the prompt sent.
  server.write('@bobby from the prompt to bob');
  let got = await waitMessage(bob, 'from the prompt to bob');
  assert.equal(got.from, 'ADMIN');
  assert.equal(got.via, 'via prompt');
  assert.match(got.classes, /\bfrom-admin\b/);
  assert.equal(got.state, null, 'shown only once its signature verified; no delivery state on a received message');
  got = await waitMessage(seat, 'from the prompt to bob');
  assert.equal(got.via, 'via prompt');
  assert.equal(got.to, 'bobby');
  assert.match(got.classes, /\bown\b/);

  // Web seat → user: the user sees "via web", the prompt shows what the web seat sent.
  let mark = server.output.length;
  await sendTo(seat, 'bobby', 'from the web seat to bob');
  got = await waitMessage(bob, 'from the web seat to bob');
  assert.equal(got.via, 'via web');
  await server.waitFor(/from the web seat to bob/, 15000, mark);

  mark = server.output.length;
  await sendTo(seat, '@all', 'web seat to everyone');
  await waitMessage(bob, 'web seat to everyone');
  await server.waitFor(/web seat to everyone/, 15000, mark);

  server.write('@all prompt to everyone');
  await waitMessage(bob, 'prompt to everyone');
  got = await waitMessage(seat, 'prompt to everyone');
  assert.equal(got.via, 'via prompt');

  // User → admin: both endpoints open it.
  mark = server.output.length;
  await sendTo(bob, 'ADMIN', 'bob to the admin');
  got = await waitMessage(seat, 'bob to the admin');
  assert.equal(got.from, 'bobby');
  await server.waitFor(/bob to the admin/, 15000, mark);

  // bob's @all after the web seat joined is given to it too ("joined" for a known key).
  mark = server.output.length;
  await sendTo(bob, '@all', 'bob to all after the web seat');
  await waitMessage(seat, 'bob to all after the web seat');
  await server.waitFor(/bob to all after the web seat/, 15000, mark);

  // The web seat writes to the prompt (the admin's own key).
  mark = server.output.length;
  await sendTo(seat, 'ADMIN', 'web seat to the prompt');
  await server.waitFor(/web seat to the prompt/, 15000, mark);

  assert.equal(await bob.locator('.notice.warning').count(), 0);
  assert.equal(await seat.locator('.notice.warning').count(), 0);
  assert.doesNotMatch(server.output, /refused/);
  assertClean(bob, seat);
});

test('a second admin web seat takes over the first, which stays closed', { timeout: 60000 }, async (t) => {
  const seat = await openPage(browser, server.url, { t, name: 'seat' });
  const sockets = { opened: 0 };
  seat.on('websocket', () => (sockets.opened += 1));
  await joinWithKeys(seat, 'whoever', keys.admin);
  const second = await openPage(browser, server.url, { t, name: 'second' });
  await joinWithKeys(second, 'another', keys.admin);
  assert.equal(await second.textContent('#me-name'), 'ADMIN');
  await seat.waitForSelector('#status[data-state="closed"]');
  assert.match(await seat.textContent('#closed-text'), /opened somewhere else/);
  assert.equal(await seat.isVisible('#take-back'), true);
  await waitConnected(second);
  assert.equal(sockets.opened, 1, 'the replaced seat does not reconnect by itself');
  assertClean(seat, second);
});

test('the admin web seat kicks, lists and lifts bans by typing the prompt commands', { timeout: 90000 }, async (t) => {
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  const seat = await openPage(browser, server.url, { t, name: 'seat' });
  await joinWithKeys(seat, 'whoever', keys.admin);
  await waitMembers(seat, 1);
  const type = async (line) => {
    await seat.fill('#text', line);
    await seat.press('#text', 'Enter');
  };
  // A usage error stays on the page; nothing is sent.
  await type('/kick');
  assert.equal(await seat.textContent('#composer-hint'), 'usage: /kick NAME [MINUTES]');
  assert.equal(await seat.inputValue('#text'), '/kick');
  await type('/kick bobby 3');
  await seat.waitForSelector('.notice:text("bobby was kicked; may return in 3 minutes")');
  await bob.waitForSelector('#closed-text:text("kicked by the admin")');
  await server.waitFor(/\(via web\) bobby was kicked/);
  await type('/bans');
  await seat.waitForSelector('.notice:has-text("may return in 3 minutes")');
  await type('/unban bobby');
  await seat.waitForSelector('.notice:text("bobby may join again")');
  // Not a member: the server says so.
  await type('/ban nobody');
  await seat.waitForSelector(':text("no member named nobody")');
  await assertClean(seat);
});

// Connection life: reconnection after the server restarts, no reconnection after a refusal or a
// kick (with the reason shown), and the explanation on a non-secure origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys, waitConnected,
  sendTo, waitMessage, waitMembers, sleep, rmSync,
} from './helpers.mjs';

let browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { alice: opensslKey(dir, 'alice'), bob: opensslKey(dir, 'bob'), eve: opensslKey(dir, 'eve') };
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Counts the WebSockets a page opens. */
function countSockets(page) {
  const counter = { opened: 0 };
  page.on('websocket', () => (counter.opened += 1));
  return counter;
}

/** Joins alice, stops the server with `signal`, restarts it on the same port, checks the chat. */
async function restartAndChat(t, signal, expectText) {
  let server = await startServer();
  const port = server.port;
  try {
    const alice = await openPage(browser, server.url, { t, name: 'alice' });
    const sockets = countSockets(alice);
    await joinWithKeys(alice, 'alice', keys.alice);
    await server.stop(signal);
    await alice.waitForSelector('#status[data-state="reconnecting"]', { timeout: 15000 });
    assert.match(await alice.textContent('#messages'), expectText);
    // One line for the event, not one for the notice and another for the close.
    assert.equal(await alice.locator('#messages .notice', { hasText: expectText }).count(), 1);
    assert.match(await alice.textContent('#status-text'), /Reconnecting in \d+ s/);
    // The first attempts fail while the server is down; then it comes back on the same port.
    await sleep(1500);
    server = await startServer([], { port });
    await waitConnected(alice, 45000);
    assert.ok(sockets.opened >= 2);
    assert.equal(await alice.textContent('#me-name'), 'alice');
    assert.equal(await alice.textContent('#me-key'), keys.alice.keyId.slice(0, 12));

    const bob = await openPage(browser, server.url, { t, name: 'bob' });
    await joinWithKeys(bob, 'bobby', keys.bob);
    await sendTo(bob, 'alice', 'welcome back');
    await waitMessage(alice, 'welcome back');
    await sendTo(alice, '@all', 'glad to be back');
    await waitMessage(bob, 'glad to be back');
    // While the server was down, Chromium itself logged the refused attempts: expected here.
    alice.problems = alice.problems.filter((p) => !/WebSocket connection to .* failed: .*ERR_(CONNECTION_(REFUSED|RESET|CLOSED)|SOCKET_NOT_CONNECTED|EMPTY_RESPONSE)/.test(p));
    assertClean(alice, bob);
  } finally {
    await server.stop();
  }
}

test('the page reconnects with the same name and keys after the server dies and restarts', { timeout: 120000 }, (t) =>
  restartAndChat(t, 'SIGKILL', /connection was lost/));

test('a graceful shutdown is announced, and the page reconnects when the server is back', { timeout: 120000 }, (t) =>
  restartAndChat(t, 'SIGTERM', /shutting down/i));

test('a name taken by another member is refused on the start screen, with the reason, and not retried', { timeout: 60000 }, async (t) => {
  const server = await startServer();
  try {
    const alice = await openPage(browser, server.url, { t, name: 'alice' });
    await joinWithKeys(alice, 'alice', keys.alice);
    const eve = await openPage(browser, server.url, { t, name: 'eve' });
    const sockets = countSockets(eve);
    await eve.fill('#name', 'alice');
    await eve.click('#own-keys-toggle');
    await eve.setInputFiles('#private-file', keys.eve.priv);
    await eve.waitForSelector('#key-info:not([hidden])');
    await eve.click('#connect');
    await eve.waitForSelector('#start:not([hidden]) #join-error:has-text("refused")');
    assert.match(await eve.textContent('#join-error'), /alice/);
    assert.equal(await eve.isVisible('#chat'), false);
    assert.equal(await eve.evaluate(() => document.activeElement.id), 'name');
    assert.equal(sockets.opened, 1, 'no second attempt after a refusal');
    // Another name works with the same keys; typing clears the old reason.
    await eve.fill('#name', 'evelyn');
    assert.equal(await eve.textContent('#join-error'), '');
    await eve.click('#connect');
    await waitConnected(eve);
    assertClean(alice, eve);
  } finally {
    await server.stop();
  }
});

test("reserved names and the admin's name in any case are refused with the server's reason", { timeout: 60000 }, async (t) => {
  const server = await startServer(['-n', 'CHIEF']);
  try {
    const page = await openPage(browser, server.url, { t, name: 'page' });
    await page.click('#own-keys-toggle');
    await page.setInputFiles('#private-file', keys.eve.priv);
    await page.waitForSelector('#key-info:not([hidden])');
    for (const [name, reason] of [['chief', /admin/i], ['admin', /reserved|admin/i], ['everyone', /reserved/i]]) {
      await page.fill('#name', name);
      await page.click('#connect');
      await page.waitForSelector('#start:not([hidden]) #join-error:has-text("refused")');
      assert.match(await page.textContent('#join-error'), reason, name);
    }
    assertClean(page);
  } finally {
    await server.stop();
  }
});

test('a page kicked for some minutes says until when, does not reconnect, and is refused until then', { timeout: 60000 }, async (t) => {
  const server = await startServer();
  try {
    const alice = await openPage(browser, server.url, { t, name: 'alice' });
    const sockets = countSockets(alice);
    await joinWithKeys(alice, 'alice', keys.alice);
    const bob = await openPage(browser, server.url, { t, name: 'bob' });
    await joinWithKeys(bob, 'bobby', keys.bob);
    await waitMembers(bob, 2); // the admin is there to kick
    server.write('/kick alice 5');
    await alice.waitForSelector('#status[data-state="closed"]');
    assert.match(await alice.textContent('#closed-text'), /kicked by the admin/);
    // "You may come back at 14:32 (in 4 min 59 s)." and no button to try before then.
    assert.match(await alice.textContent('#closed-detail'), /^You may come back at \d\d:\d\d \(in [45] min \d+ s\)\.$/);
    assert.equal(await alice.isHidden('#closed-retry'), true, 'no "connect again" before the time');
    await bob.waitForSelector('.notice:text("alice was kicked by the admin")');
    // A reload during the kick is refused by the server, with the same time.
    await alice.reload();
    await alice.waitForSelector('#status[data-state="closed"]');
    assert.match(await alice.textContent('#closed-text'), /does not let you in/);
    assert.match(await alice.textContent('#closed-detail'), /You may come back at \d\d:\d\d \(in [45] min/);
    assert.equal(await alice.isHidden('#closed-retry'), true, 'no "connect again" before the time');
    assert.equal(sockets.opened, 2, 'one connection before the reload, one after, no retries');

    // /ban has no end: only the admin lifts it; trying again is allowed and refused.
    server.write('/ban bobby');
    await bob.waitForSelector('#status[data-state="closed"]');
    assert.match(await bob.textContent('#closed-text'), /banned by the admin/);
    assert.equal(await bob.textContent('#closed-detail'), 'You may come back when the admin lifts the ban.');
    server.write('/unban bobby');
    await server.waitFor(/bobby may join again/);
    await bob.click('#closed-retry');
    await waitConnected(bob);
    assertClean(alice, bob);
  } finally {
    await server.stop();
  }
});

test('on a non-secure origin the page explains why it cannot work and what to run', { timeout: 60000 }, async (t) => {
  // chat.test is not one of the server's own names: it must be allowed.
  const server = await startServer(['--allowed-host', 'chat.test']);
  const insecureBrowser = await launchBrowser(['--host-resolver-rules=MAP chat.test 127.0.0.1']);
  try {
    const page = await openPage(insecureBrowser, `http://chat.test:${server.port}/`, { t, viewport: { width: 360, height: 740 } });
    const sockets = countSockets(page);
    assert.equal(await page.evaluate(() => window.isSecureContext), false);
    await page.waitForSelector('#insecure:not([hidden])');
    assert.equal(await page.isVisible('#join'), false);
    const text = await page.textContent('#insecure');
    assert.match(text, /crypto\.subtle/);
    assert.match(text, /dyspatcher --lan/);
    assert.match(text, /--ssl-self-signed/);
    assert.match(text, /--ssl-certificate FILE --ssl-key FILE/);
    assert.match(await page.textContent('#insecure-origin'), /http:\/\/chat\.test:\d+/);
    await sleep(500);
    assert.equal(sockets.opened, 0);
    assertClean(page);
  } finally {
    await insecureBrowser.close();
    await server.stop();
  }
});

test('the panic stop (4007) says the chat was ended, and the page neither retries nor offers to', { timeout: 60000 }, async (t) => {
  const server = await startServer(['--panic']);
  try {
    const alice = await openPage(browser, server.url, { t, name: 'alice' });
    const sockets = countSockets(alice);
    await joinWithKeys(alice, 'alice', keys.alice);
    server.write('/panic');
    await server.exited;
    await alice.waitForSelector('#status[data-state="closed"]');
    assert.match(await alice.textContent('#closed-text'), /The chat was ended: the server stopped and erased everything/);
    assert.equal(await alice.isHidden('#closed-retry'), true);
    assert.equal(await alice.isVisible('#closed-start'), true);
    assert.equal(await alice.locator('#messages .notice', { hasText: /chat was ended/ }).count(), 0, 'said once, in the panel');
    assert.equal(sockets.opened, 1, 'no attempt to reconnect');
    assertClean(alice);
  } finally {
    await server.stop();
  }
});

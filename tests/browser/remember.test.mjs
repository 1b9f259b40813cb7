// What the page keeps on the device (IndexedDB): the same identity after a reload, with what was
// sent meanwhile; "Forget this device" deleting everything; `--no-remember` keeping nothing; and a
// second tab with the same remembered identity taking over from the first.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPage, openTab, assertClean, tempDir, opensslKey, joinWithKeys,
  waitConnected, sendTo, waitMessage, waitMembers, rmSync,
  waitUntil,
} from './helpers.mjs';

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { alice: opensslKey(dir, 'alice', 'pkcs1'), bob: opensslKey(dir, 'bob') };
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The names of the page origin's IndexedDB databases. */
const databases = (page) => page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));

/** What the page keeps, as far as a script of the same origin can see it. */
const kept = (page) =>
  page.evaluate(
    () =>
      new Promise((res, rej) => {
        const req = indexedDB.open('dyspatcher');
        req.onerror = () => rej(req.error);
        req.onsuccess = () => {
          const db = req.result;
          const tx = db.transaction('kv');
          const store = tx.objectStore('kv');
          const all = store.getAll();
          const keys = store.getAllKeys();
          tx.oncomplete = () => {
            const byKey = Object.fromEntries(keys.result.map((k, i) => [k, all.result[i]]));
            const id = byKey.identity;
            db.close(); // a connection left open would block the page's own deleteDatabase
            res({
              entries: keys.result.sort(),
              identityFields: Object.keys(id).sort(),
              name: id.name,
              sign: [id.signKey.type, id.signKey.algorithm.name, id.signKey.extractable],
              unwrap: [id.unwrapKey.type, id.unwrapKey.algorithm.name, id.unwrapKey.extractable],
              stateFields: Object.keys(byKey.state ?? {}).sort(),
              stateKey: byKey.state_key ? [byKey.state_key.algorithm.name, byKey.state_key.extractable] : null,
            });
          };
        };
      }),
  );

const once = async (page, text) => assert.equal(await page.locator('#messages .msg .text', { hasText: new RegExp(`^${text}$`) }).count(), 1, text);

test('with "remember" on, a reload rejoins with the same key ID and shows what was sent meanwhile', { timeout: 90000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice', viewport: { width: 360, height: 740 } });
  assert.equal(await alice.isChecked('#remember'), true, 'on by default');
  await joinWithKeys(alice, 'alice', keys.alice);
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(alice, 2);
  await sendTo(bob, '@all', 'bob before the reload');
  await waitMessage(alice, 'bob before the reload');
  await sendTo(alice, '@all', 'alice before the reload');
  await waitMessage(bob, 'alice before the reload');

  // The keys are kept only as non-extractable CryptoKeys; the session state only encrypted.
  await waitUntil(alice, async () => (await indexedDB.databases()).some((d) => d.name === 'dyspatcher'));
  await waitUntil(
    alice,
    () =>
      new Promise((res) => {
        const req = indexedDB.open('dyspatcher');
        req.onsuccess = () => {
          const get = req.result.transaction('kv').objectStore('kv').get('state');
          get.onsuccess = () => {
            req.result.close();
            res(!!get.result);
          };
        };
      }),
  );
  const stored = await kept(alice);
  // Besides: the contacts and each conversation's history, encrypted under the same key.
  assert.deepEqual(stored.entries.filter((k) => !k.startsWith('history:')), ['contacts', 'identity', 'state', 'state_key']);
  assert.deepEqual(stored.identityFields, ['bits', 'keyId', 'left', 'name', 'signKey', 'source', 'spki', 'unwrapKey']);
  assert.equal(stored.name, 'alice');
  assert.deepEqual(stored.sign, ['private', 'RSA-PSS', false]);
  assert.deepEqual(stored.unwrap, ['private', 'RSA-OAEP', false]);
  assert.deepEqual(stored.stateFields, ['ciphertext', 'iv']);
  assert.deepEqual(stored.stateKey, ['AES-GCM', false]);

  // The page goes away (the others see alice away), and bob writes meanwhile.
  await alice.goto('about:blank');
  await bob.waitForSelector(`#member-list .member.away[data-key="${keys.alice.keyId}"]`);
  await sendTo(bob, 'alice', 'direct while the page was gone');
  await sendTo(bob, '@all', 'to all while the page was gone');

  await alice.goto(server.url);
  await waitConnected(alice);
  assert.equal(await alice.isVisible('#start'), false, 'straight back into the chat');
  assert.equal(await alice.textContent('#me-key'), keys.alice.keyId.slice(0, 12));
  assert.equal(await alice.textContent('#me-name'), 'alice');
  await waitMessage(alice, 'direct while the page was gone');
  await waitMessage(alice, 'to all while the page was gone');
  await once(alice, 'direct while the page was gone');
  await once(alice, 'to all while the page was gone');
  // What came before is shown from the device's history, once, not sent again by the server.
  assert.equal(await alice.locator('#messages .msg:not(.history) .text', { hasText: 'before the reload' }).count(), 0, 'nothing from before comes again');
  assert.equal(await alice.locator('#messages .msg.history .text', { hasText: 'bob before the reload' }).count(), 1);
  assert.match(await alice.textContent('#messages'), /this device remembered you/);
  // Her sender key went on where it was: bob opens what she writes next.
  await sendTo(alice, '@all', 'alice after the reload');
  await waitMessage(bob, 'alice after the reload');
  await sendTo(alice, 'bobby', 'direct after the reload');
  await waitMessage(bob, 'direct after the reload');
  await bob.waitForSelector(`#member-list .member.online[data-key="${keys.alice.keyId}"]`);
  assert.equal(await bob.locator('.notice', { hasText: /^alice (joined|left)/ }).count(), 0, 'a reload is neither a join nor a departure');
  assert.equal(await alice.locator('.notice.warning').count(), 0);
  assert.equal(await bob.locator('.notice.warning').count(), 0);
  assertClean(alice, bob);
});

test('"Forget this device" leaves, deletes everything kept here, and the next visit is someone new', { timeout: 150000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  await joinWithKeys(alice, 'alice', keys.alice);
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(bob, 2);
  await waitUntil(alice, async () => (await indexedDB.databases()).some((d) => d.name === 'dyspatcher'));

  // Asked first; "Cancel" changes nothing.
  await alice.click('#menu-open');
  await alice.click('#forget');
  await alice.waitForSelector('#forget-dialog[open]');
  await alice.click('#forget-cancel');
  assert.equal(await alice.isVisible('#forget-dialog'), false);
  assert.deepEqual(await databases(alice), ['dyspatcher']);

  await alice.click('#menu-open');
  await alice.click('#forget');
  await alice.click('#forget-confirm');
  await alice.waitForSelector('#start:not([hidden])');
  await bob.waitForSelector('.notice:text("alice left")');
  await waitMembers(bob, 1);
  assert.deepEqual(await databases(alice), []);
  assert.equal(await alice.evaluate(() => localStorage.length + sessionStorage.length), 0);
  assert.match(await alice.textContent('#start-note'), /forgotten/);
  assert.equal(await alice.locator('#messages li').count(), 0, 'the conversation is gone from the screen too');

  // The next visit starts over: the start screen, and a new key made in the browser.
  await alice.reload();
  await alice.waitForSelector('#key-info:not([hidden])', { timeout: 90000 });
  assert.equal(await alice.isVisible('#chat'), false);
  assert.notEqual(await alice.textContent('#key-id'), keys.alice.keyId.slice(0, 12));
  assert.equal(await alice.inputValue('#name'), '');
  assert.equal(await alice.isDisabled('#download-keys'), false, 'a new key can be downloaded');
  assertClean(alice, bob);
});

test('--no-remember: nothing is kept on the device, and what was kept before is deleted', { timeout: 60000 }, async (t) => {
  const bare = await startServer(['--no-remember']);
  t.after(() => bare.stop());
  const alice = await openPage(browser, bare.url, { t, name: 'alice' });
  // What an earlier visit to a server that allowed it would have left.
  await alice.evaluate(
    () =>
      new Promise((res) => {
        localStorage.setItem('dyspatcher-old', '1');
        const req = indexedDB.open('dyspatcher', 1);
        req.onupgradeneeded = () => req.result.createObjectStore('kv');
        req.onsuccess = () => {
          req.result.close();
          res();
        };
      }),
  );
  assert.deepEqual(await databases(alice), ['dyspatcher']);
  await joinWithKeys(alice, 'alice', keys.alice);
  await alice.waitForSelector('#no-remember-note:not([hidden])');
  assert.match(await alice.textContent('#messages'), /stores nothing on your device/);
  await waitUntil(alice, async () => (await indexedDB.databases()).length === 0);
  assert.equal(await alice.evaluate(() => localStorage.length + sessionStorage.length), 0);
  // Still nothing once messages flow (acks, sender keys).
  const bob = await openPage(browser, bare.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  await sendTo(bob, '@all', 'nothing kept of this');
  await waitMessage(alice, 'nothing kept of this');
  await sendTo(alice, 'bobby', 'nor of this');
  await waitMessage(bob, 'nor of this');
  assert.deepEqual(await databases(alice), []);
  assert.deepEqual(await databases(bob), []);
  assertClean(alice, bob);
});

test('the same remembered identity in a second tab takes over; the first stays closed until taken back', { timeout: 90000 }, async (t) => {
  const first = await openPage(browser, server.url, { t, name: 'first' });
  let sockets = 0;
  first.on('websocket', () => (sockets += 1));
  await joinWithKeys(first, 'alice', keys.alice);
  const bob = await openPage(browser, server.url, { t, name: 'bob' });
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitUntil(first, async () => (await indexedDB.databases()).some((d) => d.name === 'dyspatcher'));

  const second = await openTab(first.context(), server.url, { name: 'second' });
  await waitConnected(second);
  assert.equal(await second.textContent('#me-key'), keys.alice.keyId.slice(0, 12));
  assert.equal(await second.textContent('#me-name'), 'alice');
  await first.waitForSelector('#status[data-state="closed"]');
  assert.match(await first.textContent('#closed-text'), /opened somewhere else \(another tab or device\)/);
  assert.equal(await first.isVisible('#take-back'), true);
  assert.equal(await first.isVisible('#closed-retry'), false);

  // The chat goes on in the second tab; the first neither reconnects nor shows it.
  await sendTo(bob, 'alice', 'to the second tab');
  await waitMessage(second, 'to the second tab');
  assert.equal(await first.locator('.msg .text', { hasText: 'to the second tab' }).count(), 0);
  assert.equal(sockets, 1, 'the first tab did not reconnect by itself');
  assert.equal(await bob.locator('.notice', { hasText: /^alice left/ }).count(), 0, 'a takeover is not a departure');

  // Taken back: now the second tab is the one replaced.
  await first.click('#take-back');
  await waitConnected(first);
  await second.waitForSelector('#status[data-state="closed"]');
  assert.match(await second.textContent('#closed-text'), /opened somewhere else/);
  await sendTo(bob, '@all', 'to the first tab again');
  await waitMessage(first, 'to the first tab again');
  await sendTo(first, '@all', 'the first tab writes');
  await waitMessage(bob, 'the first tab writes');
  assert.equal(await bob.locator('.notice.warning').count(), 0);

  // "Forget this device" in one tab empties the other one too.
  await first.click('#menu-open');
  await first.click('#forget');
  await first.click('#forget-confirm');
  await second.waitForSelector('#start-note:has-text("in another tab")');
  await first.waitForSelector('#start:not([hidden])');
  await bob.waitForSelector('.notice:text("alice left")');
  assert.deepEqual(await first.evaluate(async () => (await indexedDB.databases()).length), 0);
  assertClean(first, second, bob);
});

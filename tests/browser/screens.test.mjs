// Screens on a phone (360×740) and a desktop (1280×800), light and dark: nothing overflows
// sideways, the composer stays on screen, and screenshots are saved to look at (in the temporary
// directory, or $SCREENSHOTS).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPage, openTab, assertClean, tempDir, opensslKey, joinWithKeys, sendTo,
  waitMessage, waitMembers, waitConnected, screenshotPath, rmSync,
} from './helpers.mjs';

const VIEWPORTS = { phone: { width: 360, height: 740 }, desktop: { width: 1280, height: 800 } };
const SCHEMES = ['light', 'dark'];

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { admin: opensslKey(dir, 'admin'), alice: opensslKey(dir, 'alice'), bob: opensslKey(dir, 'bob') };
  // chat.test (the non-secure origin screen) is not one of the server's own names.
  server = await startServer(['--admin-private-key', keys.admin.priv, '--allowed-host', 'chat.test']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Shoots `page` in every viewport and scheme, checking the layout of each. */
async function shootAll(page, name, check = async () => {}) {
  for (const [device, viewport] of Object.entries(VIEWPORTS)) {
    for (const colorScheme of SCHEMES) {
      await page.setViewportSize(viewport);
      await page.emulateMedia({ colorScheme });
      await page.waitForTimeout(300); // let transitions and scrolling settle
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${name} ${device} ${colorScheme}: ${overflow}px wider than the screen`);
      await check(device);
      await page.screenshot({ path: screenshotPath(`${name}-${device}-${colorScheme}`) });
    }
  }
}

test('start screen', { timeout: 120000 }, async (t) => {
  const page = await openPage(browser, server.url, { t, viewport: VIEWPORTS.phone });
  await page.screenshot({ path: screenshotPath('start-generating-phone-light') });
  await page.fill('#name', 'Alice');
  await page.click('#own-keys-toggle');
  await page.setInputFiles('#private-file', keys.alice.priv);
  await page.waitForSelector('#key-info:not([hidden])');
  await shootAll(page, 'start-invalid-name');
  await page.fill('#name', 'alice');
  await page.click('#own-keys-toggle');
  await shootAll(page, 'start', async () => {
    assert.equal(await page.isVisible('#connect'), true);
  });
  assertClean(page);
});

test('chat screen', { timeout: 120000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob', viewport: VIEWPORTS.phone });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(alice, 2);
  server.write('@all Welcome! This is the admin writing to everyone from the prompt.');
  await waitMessage(alice, 'Welcome! This is the admin writing to everyone from the prompt.');
  await sendTo(bob, 'alice', 'Hi alice, this is a direct message only you can read.');
  await sendTo(alice, 'bobby', 'Hello bob!\nA second line, and a long link: https://example.invalid/' + 'a'.repeat(120));
  await sendTo(alice, '@all', 'Morning everyone \u2014 @all messages look different from direct ones.');
  await sendTo(bob, '@all', 'Good morning!');
  server.write('@alice A direct word from the admin.');
  await waitMessage(alice, 'A direct word from the admin.');
  await waitMessage(alice, 'Good morning!');
  await alice.waitForSelector('.msg.own .state.delivered');
  await bob.screenshot({ path: screenshotPath('chat-bob-phone-light') });
  // bob's page goes away: he stays listed, away, and what alice writes him is held.
  await bob.goto('about:blank');
  await alice.waitForSelector(`#member-list .member.away[data-key="${keys.bob.keyId}"]`);
  await sendTo(alice, 'bobby', 'Are you there? This waits for you.');
  await alice.waitForSelector('.msg.own .state.held');
  const inView = async (device) => {
    const box = await alice.locator('#composer').boundingBox();
    const vh = VIEWPORTS[device].height;
    assert.ok(box.y + box.height <= vh + 1, `composer bottom ${box.y + box.height} > ${vh}`);
    assert.equal(await alice.isVisible('#text'), true);
  };
  await shootAll(alice, 'chat', inView);

  // The member sheet on a phone, opened from "To".
  await alice.setViewportSize(VIEWPORTS.phone);
  for (const colorScheme of SCHEMES) {
    await alice.emulateMedia({ colorScheme });
    await alice.click('#to');
    await alice.waitForFunction(() => getComputedStyle(document.querySelector('#members')).visibility === 'visible');
    await alice.waitForTimeout(300);
    await alice.screenshot({ path: screenshotPath(`members-phone-${colorScheme}`) });
    await alice.keyboard.press('Escape');
  }

  // The closed state, with its reason.
  await alice.setViewportSize(VIEWPORTS.desktop);
  await alice.click('#leave');
  await alice.waitForSelector('#closed:not([hidden])');
  await shootAll(alice, 'closed', inView);
  assertClean(alice, bob);
});

test('replaced and kicked screens', { timeout: 120000 }, async (t) => {
  const first = await openPage(browser, server.url, { t, name: 'first' });
  await joinWithKeys(first, 'alice', keys.alice);
  await first.waitForFunction(async () => (await indexedDB.databases()).length === 1);
  const second = await openTab(first.context(), server.url, { name: 'second' });
  await waitConnected(second);
  await first.waitForSelector('#take-back:not([hidden])');
  await shootAll(first, 'replaced');
  server.write('/kick alice 10');
  await second.waitForSelector('#closed-detail:has-text("You may come back")');
  await shootAll(second, 'kicked');
  await second.setViewportSize(VIEWPORTS.phone);
  await second.click('#forget');
  await second.waitForSelector('#forget-dialog[open]');
  await shootAll(second, 'forget-dialog');
  assertClean(first, second);
});

test('non-secure origin screen', { timeout: 60000 }, async (t) => {
  const insecure = await launchBrowser(['--host-resolver-rules=MAP chat.test 127.0.0.1']);
  t.after(() => insecure.close());
  const page = await openPage(insecure, `http://chat.test:${server.port}/`, { t });
  await page.waitForSelector('#insecure:not([hidden])');
  await shootAll(page, 'insecure');
  assertClean(page);
});

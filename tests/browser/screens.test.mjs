// Every screen on a phone (360×740) and a desktop (1280×800), light and dark: nothing overflows
// sideways, the composer stays on screen, axe-core finds no accessibility violation (all its
// rules), and screenshots are saved to look at (in the temporary directory, or $SCREENSHOTS).
// An Arabic page is laid out right to left.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  startServer, launchBrowser, openPage, openTab, assertClean, tempDir, opensslKey, joinWithKeys, sendTo,
  waitMessage, waitMembers, waitConnected, screenshotPath, openConversation, leave, rmSync,
  waitUntil,
} from './helpers.mjs';

const VIEWPORTS = { phone: { width: 360, height: 740 }, desktop: { width: 1280, height: 800 } };
const SCHEMES = ['light', 'dark'];
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const ARABIC = new URL('../../assets/i18n/ar.js', import.meta.url);

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { admin: opensslKey(dir, 'admin'), alice: opensslKey(dir, 'alice'), bob: opensslKey(dir, 'bob'), carol: opensslKey(dir, 'carol') };
  // chat.test (the non-secure origin screen) is not one of the server's own names.
  server = await startServer(['--admin-private-key', keys.admin.priv, '--allowed-host', 'chat.test']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** axe-core over the whole page as it is (injected by the test, not served by the product). */
async function axe(page, label) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')})`);
  });
  assert.deepEqual(violations, [], `${label}: accessibility violations`);
}

/**
 * Shoots `page` in every viewport and scheme, checking the layout and accessibility of each;
 * `prepare(device)` puts the page in the state to shoot first, `check(device)` looks after.
 */
async function shootAll(page, name, { check = async () => {}, prepare = async () => {}, devices = Object.keys(VIEWPORTS) } = {}) {
  for (const device of devices) {
    for (const colorScheme of SCHEMES) {
      await page.setViewportSize(VIEWPORTS[device]);
      await page.emulateMedia({ colorScheme, reducedMotion: 'reduce' });
      await prepare(device);
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${name} ${device} ${colorScheme}: ${overflow}px wider than the screen`);
      await check(device);
      await axe(page, `${name} ${device} ${colorScheme}`);
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
  await shootAll(page, 'start', { check: async () => assert.equal(await page.isVisible('#connect'), true) });
  await page.click('#how-start');
  await shootAll(page, 'how-sheet', { check: async () => assert.equal(await page.isVisible('#how'), true) });
  await page.keyboard.press('Escape');
  assertClean(page);
});

test('conversation list, conversation, verify screen and menu', { timeout: 240000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob', viewport: VIEWPORTS.phone });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await waitMembers(alice, 2);
  server.write('@all Welcome! This is the admin writing to everyone from the prompt.');
  await waitMessage(alice, 'Welcome! This is the admin writing to everyone from the prompt.');
  await sendTo(bob, 'alice', 'Hi alice, this is a direct message only you can read.');
  await sendTo(bob, 'alice', 'And a second one, grouped under the same header.');
  await sendTo(alice, 'bobby', 'Hello bob! Shall we meet at the station at six? @bobby');
  await sendTo(bob, 'alice', 'Yes, see you there!');
  await waitMessage(alice, 'Yes, see you there!');
  await bob.locator('.msg.own', { hasText: 'Yes, see you there!' }).locator('.state.delivered').waitFor();
  await bob.screenshot({ path: screenshotPath('readme-phone-light') }); // the README's picture
  await sendTo(alice, 'bobby', 'A second line, and a long link: https://example.invalid/' + 'a'.repeat(120));
  await sendTo(alice, 'bobby', Array.from({ length: 20 }, (_, i) => `line ${i + 1} of a long message`).join('\n'));
  await sendTo(alice, '@all', 'Morning everyone \u2014 @bobby, @all messages look different from direct ones.');
  await sendTo(bob, '@all', 'Good morning!');
  server.write('@alice A direct word from the admin.');
  await waitMessage(alice, 'A direct word from the admin.');
  await waitMessage(alice, 'Good morning!');
  await bob.click('#back');
  await bob.screenshot({ path: screenshotPath('list-bob-phone-light') });
  await openConversation(bob, 'alice');
  await bob.screenshot({ path: screenshotPath('conversation-bob-phone-light') });
  // bob's page goes away: he stays listed, away, and what alice writes him is held.
  await bob.goto('about:blank');
  await alice.waitForSelector(`#member-list .member.away[data-key="${keys.bob.keyId}"]`);
  await sendTo(alice, 'bobby', 'Are you there? This waits for you.');
  await alice.waitForSelector('.msg.own .state.held');
  const composerInView = async (device) => {
    const box = await alice.locator('#composer').boundingBox();
    const vh = VIEWPORTS[device].height;
    assert.ok(box.y + box.height <= vh + 1, `composer bottom ${box.y + box.height} > ${vh}`);
    assert.equal(await alice.isVisible('#text'), true);
  };
  const view = (v) => async (device) => {
    if (device === 'phone' && v === 'list' && (await alice.isVisible('#back'))) await alice.click('#back');
    if (v === 'conv' && !(await alice.isVisible('#conv-title'))) await openConversation(alice, 'bobby');
  };
  await shootAll(alice, 'list', { prepare: view('list'), devices: ['phone'] });
  await shootAll(alice, 'conversation', { prepare: view('conv'), check: composerInView });
  // The phone keyboard takes about half the screen: several messages still show.
  await alice.setViewportSize({ width: 360, height: 400 });
  const shown = await alice.evaluate(() => {
    const box = document.querySelector('#conversation').getBoundingClientRect();
    return [...document.querySelectorAll('.messages:not([hidden]) .msg')].filter((m) => {
      const r = m.getBoundingClientRect();
      return r.bottom > box.top && r.top < box.bottom;
    }).length;
  });
  assert.ok(shown >= 2, `${shown} messages visible with the keyboard open`);
  await alice.screenshot({ path: screenshotPath('conversation-keyboard-phone-light') });

  await alice.click('#verify-open');
  await alice.waitForFunction(() => /\d{5}/.test(document.querySelector('#safety-code').textContent));
  await shootAll(alice, 'verify', { check: async () => assert.equal(await alice.isVisible('#qr'), true) });
  await alice.click('#verify-back');
  await shootAll(alice, 'menu-sheet', {
    prepare: async () => (await alice.isVisible('#menu')) || alice.click('#menu-open'),
    check: async () => assert.equal(await alice.isVisible('#leave'), true),
  });
  await alice.keyboard.press('Escape');

  // The closed state, with its reason.
  await leave(alice);
  await alice.waitForSelector('#closed:not([hidden])');
  await shootAll(alice, 'closed', { prepare: view('conv') });
  assertClean(alice, bob);
});

test('replaced, kicked and forget screens', { timeout: 180000 }, async (t) => {
  const first = await openPage(browser, server.url, { t, name: 'first' });
  await joinWithKeys(first, 'alice', keys.alice);
  await waitUntil(first, async () => (await indexedDB.databases()).length === 1);
  const second = await openTab(first.context(), server.url, { name: 'second' });
  await waitConnected(second);
  await first.waitForSelector('#take-back:not([hidden])');
  await shootAll(first, 'replaced');
  server.write('/kick alice 10');
  await second.waitForSelector('#closed-detail:has-text("You may come back")');
  await shootAll(second, 'kicked');
  await second.setViewportSize(VIEWPORTS.phone);
  await second.click('#menu-open');
  await second.click('#forget');
  await second.waitForSelector('#forget-dialog[open]');
  await shootAll(second, 'forget-dialog');
  assertClean(first, second);
});

test('Arabic: the page is laid out right to left, in Arabic', { timeout: 120000, skip: !existsSync(ARABIC) && 'no Arabic catalogue yet' }, async (t) => {
  const ctx = await browser.newContext({ viewport: VIEWPORTS.phone, locale: 'ar' });
  t.after(() => ctx.close());
  const page = await ctx.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(e.message));
  await page.goto(server.url);
  await page.waitForFunction(() => document.documentElement.lang === 'ar');
  assert.equal(await page.getAttribute('html', 'dir'), 'rtl');
  assert.equal(await page.inputValue('#lang'), 'ar');
  const label = await page.textContent('label[for="name"]');
  assert.match(label, /[\u0600-\u06ff]/, `the name label is in Arabic: ${label}`);
  // Right to left: the label starts at the right edge of the card.
  const box = await page.locator('label[for="name"]').boundingBox();
  const card = await page.locator('#join').boundingBox();
  assert.ok(card.x + card.width - (box.x + box.width) < 40, 'the label hugs the right edge');
  await page.click('#own-keys-toggle');
  await page.setInputFiles('#private-file', keys.bob.priv);
  await page.waitForSelector('#key-info:not([hidden])');
  await page.fill('#name', 'bobby');
  await page.screenshot({ path: screenshotPath('start-arabic-phone-light') });
  await page.click('#connect');
  await waitConnected(page);
  // The list is drawn once the welcome is in: wait for its first entry.
  const allIcon = page.locator('#member-list .member[data-key="all"] .all-icon');
  await allIcon.waitFor();
  await page.screenshot({ path: screenshotPath('list-arabic-phone-light') });
  // In the list, the identicon is on the right of the name. Measured in one go: the list is
  // drawn again on every event, so two separate lookups may straddle a redraw.
  const [iconX, nameX] = await page.evaluate(() => {
    const entry = document.querySelector('#member-list .member[data-key="all"]');
    return ['.all-icon', '.name'].map((s) => entry.querySelector(s).getBoundingClientRect().x);
  });
  assert.ok(iconX > nameX, 'the icon is at the start, on the right');
  await axe(page, 'arabic list');
  // The switcher turns the page back to English, left to right.
  await page.click('#menu-open');
  await page.selectOption('#lang-chat', 'en');
  await page.waitForFunction(() => document.documentElement.dir === 'ltr');
  assert.equal(await page.textContent('#menu-title'), 'Menu');
  await page.keyboard.press('Escape');
  await leave(page);
  assert.deepEqual(page.problems, []);
});

test('reconnecting: the countdown fits a phone', { timeout: 120000 }, async (t) => {
  const own = await startServer();
  const page = await openPage(browser, own.url, { t, name: 'page', viewport: VIEWPORTS.phone });
  await joinWithKeys(page, 'alice', keys.alice);
  await own.stop('SIGKILL');
  await page.waitForSelector('#status[data-state="reconnecting"]');
  await shootAll(page, 'reconnecting', {
    prepare: async (device) => {
      if (device === 'phone' && !(await page.isVisible('#conv-title'))) await openConversation(page, '@all');
    },
    check: async () => {
      const status = await page.locator('#status').boundingBox();
      assert.ok(status.x >= 0 && status.x + status.width <= (await page.evaluate(() => innerWidth)), 'the countdown is on screen');
      assert.match(await page.textContent('#status-text'), /Reconnecting in \d+ s/);
    },
  });
  // The refused attempts while the server is gone are Chromium's own log lines: expected here.
  page.problems = page.problems.filter((p) => !/WebSocket connection to .* failed: .*ERR_(CONNECTION_(REFUSED|RESET|CLOSED)|SOCKET_NOT_CONNECTED|EMPTY_RESPONSE)/.test(p));
  assertClean(page);
});

test('non-secure origin screen', { timeout: 60000 }, async (t) => {
  const insecure = await launchBrowser(['--host-resolver-rules=MAP chat.test 127.0.0.1']);
  t.after(() => insecure.close());
  const page = await openPage(insecure, `http://chat.test:${server.port}/`, { t });
  await page.waitForSelector('#insecure:not([hidden])');
  await shootAll(page, 'insecure');
  assertClean(page);
});

test('groups: creating one, its conversation and its roster on a phone, light, dark and Arabic', { timeout: 240000 }, async (t) => {
  // Its own server: alice was kicked for 10 minutes on the shared one.
  const server = await startServer();
  t.after(() => server.stop());
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bob = await openPage(browser, server.url, { t, name: 'bob', viewport: VIEWPORTS.phone });
  const ctx = await browser.newContext({ viewport: VIEWPORTS.phone, locale: 'ar' });
  t.after(async () => {
    for (const p of ctx.pages()) await leave(p).catch(() => {});
    await ctx.close();
  });
  const carol = await openTab(ctx, server.url, { name: 'carol' });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bob, 'bobby', keys.bob);
  await joinWithKeys(carol, 'carol', keys.carol);
  await alice.waitForFunction(() => document.querySelectorAll('#member-list .member:not(.all):not(.group):not(.gone)').length === 4);
  // bob fills in "New group" on his phone.
  await bob.click('#group-new');
  await bob.fill('#group-name', 'Medics at the north gate');
  await bob.fill('#group-topic', 'First aid, water, where to meet');
  await bob.locator('#group-body .pick-list label', { hasText: 'alice' }).locator('input').check();
  await bob.locator('#group-body .pick-list label', { hasText: 'carol' }).locator('input').check();
  await shootAll(bob, 'group-create', { devices: ['phone'], check: async () => assert.equal(await bob.isVisible('#group-body button[type="submit"]'), true) });
  await bob.click('#group-body button[type="submit"]');
  await bob.waitForFunction(() => document.querySelector('#conv-title')?.textContent === 'Medics at the north gate');
  const group = await bob.evaluate(() => document.querySelector('#messages .messages:not([hidden])').dataset.conv);
  const entry = (page) => page.locator(`#member-list .member[data-key="${group}"]`);
  await entry(alice).click();
  for (const [page, text] of [[bob, 'Who has the spare kit?'], [alice, 'I do, by the fountain.'], [bob, 'On my way \u2014 five minutes.']]) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
    await page.waitForFunction((x) => [...document.querySelectorAll('.msg.own')].some((li) => li.querySelector('.text').textContent === x && li.querySelector('.state.sent')), text);
  }
  await waitMessage(bob, 'I do, by the fountain.');
  await shootAll(bob, 'group-conversation', { devices: ['phone'], check: async () => assert.equal(await bob.isVisible('#text'), true) });
  await bob.click('#group-open');
  await bob.waitForSelector('#group-body .roster');
  await shootAll(bob, 'group-roster', { devices: ['phone'] });
  // carol's page is in Arabic, right to left.
  await entry(carol).click();
  await waitMessage(carol, 'On my way \u2014 five minutes.');
  assert.equal(await carol.getAttribute('html', 'dir'), 'rtl');
  await carol.screenshot({ path: screenshotPath('group-conversation-arabic-phone-light') });
  await axe(carol, 'group conversation arabic');
  await carol.click('#group-open');
  await carol.waitForSelector('#group-body .roster');
  await carol.screenshot({ path: screenshotPath('group-roster-arabic-phone-light') });
  await axe(carol, 'group roster arabic');
  await carol.click('#group-back');
  await carol.click('#back');
  await carol.click('#group-new');
  await carol.fill('#group-name', '\u0627\u0644\u0645\u0633\u0639\u0641\u0648\u0646');
  await carol.screenshot({ path: screenshotPath('group-create-arabic-phone-light') });
  await axe(carol, 'group create arabic');
  assertClean(alice, bob, carol);
});

// Private groups through the real server: four pages create a group, write in it (text, a file, a
// voice note from Chromium's fake microphone), add a member
// (who cannot read what was written before), remove one (who cannot read what comes after), hand
// over ownership and leave (the owner's page signs the next roster by itself). Then a server that
// lies, played by Playwright's WebSocket routing between a page and the real server: an altered
// roster, an older epoch replayed and a roster signed by someone else, each refused with a
// visible warning and nothing changed; the admin lists groups (ids and sizes, never names) and
// deletes one. The Rust client (`dyspatcher connect`) in a group with pages: created there,
// written both ways, handed over, left. axe-core finds no violation on the group screens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import {
  startServer, startTerminalClient, launchBrowser, openPage, assertClean, tempDir, opensslKey, joinWithKeys, waitMessage, waitMembers, rmSync,
} from './helpers.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const PHONE = { width: 360, height: 740 };

let server, browser, dir, keys;

before(async () => {
  dir = tempDir();
  keys = { alice: opensslKey(dir, 'alice'), bobby: opensslKey(dir, 'bobby'), carol: opensslKey(dir, 'carol'), david: opensslKey(dir, 'david') };
  server = await startServer();
  // A fake microphone for the voice note.
  browser = await launchBrowser(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', '--autoplay-policy=no-user-gesture-required']);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function axe(page, label) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')})`);
  });
  assert.deepEqual(violations, [], `${label}: accessibility violations`);
}

/** Frames a page received, parsed (what the server sent it). */
function framesOf(page) {
  const got = [];
  page.on('websocket', (ws) => ws.on('framereceived', (f) => {
    try {
      got.push(JSON.parse(f.payload));
    } catch {
      // not JSON: not ours to look at
    }
  }));
  return got;
}

const groupEntry = (page, name) => page.locator('#member-list .member.group', { has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) });

async function toList(page) {
  if (await page.isVisible('#group-back')) await page.click('#group-back');
  if (await page.isVisible('#back')) await page.click('#back');
}

async function openGroup(page, name) {
  await toList(page);
  await groupEntry(page, name).click();
  await page.waitForFunction((n) => document.querySelector('#conv-title')?.textContent === n, name);
}

/** Creates a group from the list: name, topic, members ticked by name; waits until it is open. */
async function createGroup(page, name, topic, members) {
  await toList(page);
  await page.click('#group-new');
  await page.fill('#group-name', name);
  await page.fill('#group-topic', topic);
  for (const m of members) await page.locator('#group-body .pick-list label', { hasText: m }).locator('input').check();
  await page.click('#group-body button[type="submit"]');
  await page.waitForFunction((n) => document.querySelector('#conv-title')?.textContent === n && !document.querySelector('#chat').dataset.view.startsWith('group'), name);
  return page.evaluate(() => document.querySelector('#messages .messages:not([hidden])').dataset.conv);
}

async function writeGroup(page, name, text) {
  await openGroup(page, name);
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await page.waitForFunction((t) => [...document.querySelectorAll('.msg.own')].some((li) => li.querySelector('.text').textContent === t && li.querySelector('.state.sent')), text);
}

async function openRoster(page, name) {
  await openGroup(page, name);
  await page.click('#group-open');
  await page.waitForSelector('#group-body .roster');
}

const rosterNames = (page) => page.$$eval('#group-body .roster .who .name', (els) => els.map((e) => e.textContent));
const waitNotice = (page, group, text) =>
  page.waitForFunction(([g, t]) => [...document.querySelectorAll(`.messages[data-conv="${g}"] .notice`)].some((li) => li.textContent.includes(t)), [group, text]);
const shown = (page, text) => page.evaluate((t) => [...document.querySelectorAll('#messages .msg .text')].some((p) => p.textContent === t), text);

test('create, write, add (no reading before), remove (no reading after), hand over, leave', { timeout: 300000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bobby = await openPage(browser, server.url, { t, name: 'bobby' });
  const carol = await openPage(browser, server.url, { t, name: 'carol' });
  const david = await openPage(browser, server.url, { t, name: 'david', viewport: PHONE });
  const frames = { carol: framesOf(carol), david: framesOf(david) };
  for (const [page, name] of [[alice, 'alice'], [bobby, 'bobby'], [carol, 'carol'], [david, 'david']]) await joinWithKeys(page, name, keys[name]);
  await waitMembers(alice, 4);

  const group = await createGroup(alice, 'medics', 'north gate', ['bobby', 'carol']);
  assert.match(group, /^[0-9a-f]{32}$/);
  for (const page of [bobby, carol]) {
    await groupEntry(page, 'medics').waitFor();
    assert.match(await groupEntry(page, 'medics').locator('.detail').textContent(), /3 members/);
    await waitNotice(page, group, 'alice added you to this group (created by alice)');
  }
  assert.equal(await groupEntry(david, 'medics').count(), 0);

  await writeGroup(bobby, 'medics', 'before david');
  for (const page of [alice, carol]) assert.equal((await waitMessage(page, 'before david')).conversation, group);
  // A file and a voice note in the group, under the group's sender keys.
  const plan = { name: 'plan.txt', mimeType: 'text/plain', buffer: Buffer.from('meet at the fountain\n'.repeat(5000)) };
  await openGroup(alice, 'medics');
  await alice.setInputFiles('#attach-input', [plan]);
  for (const page of [bobby, carol]) await page.waitForSelector(`.messages[data-conv="${group}"] .attachment[data-name="plan.txt"][data-state="done"]`, { state: 'attached', timeout: 60000 });
  await openGroup(bobby, 'medics');
  const [download] = await Promise.all([bobby.waitForEvent('download'), bobby.click('.attachment[data-name="plan.txt"] .file-save')]);
  assert.deepEqual(readFileSync(await download.path()), plan.buffer);
  await openGroup(bobby, 'medics');
  await bobby.click('#record');
  await bobby.waitForFunction(() => /\b[1-9]\d* /.test(document.getElementById('record-state').textContent));
  await bobby.click('#record');
  for (const page of [alice, carol]) await page.waitForSelector(`.messages[data-conv="${group}"] .attachment[data-kind="voice"][data-state="done"] audio`, { state: 'attached', timeout: 60000 });

  // alice adds david: a new epoch; david gets only the new chains.
  await openRoster(alice, 'medics');
  await alice.locator('#group-body .pick-list label', { hasText: 'david' }).locator('input').check();
  await alice.click('#group-body button.primary');
  await alice.waitForFunction(() => document.querySelectorAll('#group-body .roster li').length === 4);
  await waitNotice(bobby, group, 'david was added by alice');
  await groupEntry(david, 'medics').waitFor();
  await writeGroup(carol, 'medics', 'welcome david');
  assert.equal((await waitMessage(david, 'welcome david')).conversation, group);
  assert.equal(await shown(david, 'before david'), false);
  assert.equal(await david.locator('.attachment').count(), 0);
  // Nothing sealed for epoch 1 ever reached david.
  assert.ok(!frames.david.some((f) => f.group === group && f.epoch === 1));

  // alice removes carol: the next messages are sealed under chains carol never gets.
  await openRoster(alice, 'medics');
  await alice.getByRole('button', { name: 'Remove carol from the group' }).click();
  await alice.waitForFunction(() => document.querySelectorAll('#group-body .roster li').length === 3);
  await waitNotice(carol, group, 'alice removed you from this group');
  await openGroup(carol, 'medics');
  assert.equal(await carol.isDisabled('#text'), true);
  await writeGroup(bobby, 'medics', 'after carol');
  await waitMessage(alice, 'after carol');
  await waitMessage(david, 'after carol');
  assert.equal(await shown(carol, 'after carol'), false);
  const epochNow = Math.max(...frames.david.filter((f) => f.type === 'group_roster').map((f) => f.roster.epoch));
  assert.ok(!frames.carol.some((f) => f.type === 'sender_key' && f.group === group && f.epoch === epochNow));

  // alice hands the group over to bobby.
  await openRoster(alice, 'medics');
  await alice.getByRole('button', { name: 'Make owner: bobby' }).click();
  await waitNotice(david, group, 'alice handed the group over to bobby');
  await waitNotice(bobby, group, 'alice handed the group over to you');
  await openRoster(david, 'medics');
  assert.equal(await david.locator('#group-body .roster li', { has: david.locator('.badge.owner') }).locator('.who .name').textContent(), 'bobby');

  // david leaves: bobby's page (the owner) signs the next roster without him, by itself.
  await david.getByRole('button', { name: 'Leave group' }).click();
  await waitNotice(david, group, 'You left this group.');
  await waitNotice(alice, group, 'david left the group.');
  await openRoster(alice, 'medics');
  await alice.waitForFunction(() => document.querySelectorAll('#group-body .roster li').length === 2);
  assert.deepEqual((await rosterNames(alice)).sort(), ['alice', 'bobby']);
  await axe(alice, 'roster screen');
  await writeGroup(alice, 'medics', 'just the two of us');
  await waitMessage(bobby, 'just the two of us');
  assert.equal(await shown(david, 'just the two of us'), false);
  // The history stays in the list for those who are out.
  await toList(carol);
  assert.match(await groupEntry(carol, 'medics').locator('.detail').textContent(), /removed/);
  assertClean(alice, bobby, carol, david);
});

/** RSA-PSS (SHA-256, salt 32) with an openssl key, as the clients sign. */
const signWith = (key, text) =>
  sign('sha256', Buffer.from(text), { key: createPrivateKey(readFileSync(key.priv)), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }).toString('base64');
const rosterText = (r) => ['dyspatcher-v2-roster', r.group, String(r.epoch), r.owner, r.members.join(',')].join('\n');

test('a lying server: an altered roster, an older epoch and a roster signed by someone else are refused', { timeout: 240000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const carol = await openPage(browser, server.url, { t, name: 'carol' });
  const bobby = await openPage(browser, 'about:blank', { t, name: 'bobby' });
  // Between bobby's page and the real server: frames pass through, `rewrite` may change the next roster.
  let rewrite = null;
  let first = null;
  await bobby.routeWebSocket(/\/ws$/, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((m) => upstream.send(m));
    upstream.onMessage((m) => {
      let out = m;
      try {
        const f = JSON.parse(m);
        if (f.type === 'group_roster') {
          first ??= f;
          if (rewrite) {
            out = JSON.stringify(rewrite(f));
            rewrite = null;
          }
        }
      } catch {
        // not JSON: passed on as it is
      }
      ws.send(out);
    });
  });
  await bobby.goto(server.url);
  for (const [page, name] of [[alice, 'alice'], [bobby, 'bobby'], [carol, 'carol']]) await joinWithKeys(page, name, keys[name]);
  await waitMembers(alice, 3);
  const group = await createGroup(alice, 'drivers', '', ['bobby']);
  await groupEntry(bobby, 'drivers').waitFor();
  await openGroup(bobby, 'drivers');
  const members = () => bobby.evaluate((g) => document.querySelector(`#member-list .member[data-key="${g}"] .detail`).textContent, group);
  assert.match(await members(), /2 members/);
  const warned = (text, n = 1) =>
    bobby.waitForFunction(([g, t, n]) => [...document.querySelectorAll(`.messages[data-conv="${g}"] .notice.warning[role="alert"]`)].filter((li) => li.textContent.includes(t)).length === n, [group, text, n]);
  const tick = async (name) => {
    await alice.locator('#group-body .pick-list label', { hasText: name }).locator('input').check();
    await alice.click('#group-body button.primary');
  };

  // A change passed as it is: alice adds carol (epoch 2).
  await openRoster(alice, 'drivers');
  await tick('carol');
  await waitNotice(bobby, group, 'carol was added by alice');
  assert.match(await members(), /3 members/);

  // 1. alice removes carol; on its way the roster is altered (carol kept, david in), alice's signature kept.
  rewrite = (f) => ({ ...f, roster: { ...f.roster, members: [...f.roster.members, keys.carol.keyId, keys.david.keyId].sort() } });
  await alice.getByRole('button', { name: 'Remove carol from the group' }).click();
  await warned('A roster for drivers was refused: not signed by its owner. Nothing changed.');
  assert.match(await members(), /3 members/);

  // 2. alice adds carol again; the server replays the first roster (epoch 1) in its place.
  rewrite = (f) => ({ ...f, roster: first.roster });
  await tick('carol');
  await warned('A roster for drivers was refused: older epoch (1; this device has 2). Nothing changed.');
  assert.match(await members(), /3 members/);

  // 3. alice removes carol; in its place, a roster carol signed (not the owner) for a later epoch, with david in.
  rewrite = (f) => {
    const r = { group, epoch: f.roster.epoch + 5, owner: keys.alice.keyId, members: [keys.alice.keyId, keys.bobby.keyId, keys.carol.keyId, keys.david.keyId].sort() };
    return { ...f, roster: { ...r, signature: signWith(keys.carol, rosterText(r)) } };
  };
  await alice.getByRole('button', { name: 'Remove carol from the group' }).click();
  await warned('A roster for drivers was refused: not signed by its owner. Nothing changed.', 2);
  assert.match(await members(), /3 members/);
  await openRoster(bobby, 'drivers');
  assert.deepEqual((await rosterNames(bobby)).sort(), ['alice', 'bobby', 'carol']);
  await axe(bobby, 'roster screen after refusals');

  // The admin sees the group's id and size at the prompt, never its name, and deletes it.
  const from = server.output.length;
  server.write('/groups');
  await server.waitFor(new RegExp(group.slice(0, 8)), 15000, from);
  assert.ok(!server.output.slice(from).includes('drivers'));
  server.write(`/group delete ${group.slice(0, 10)}`);
  for (const page of [alice, bobby]) await waitNotice(page, group, 'The admin deleted this group.');
  await bobby.click('#group-back');
  assert.equal(await bobby.isDisabled('#text'), true);
  assertClean(alice, bobby, carol);
});

test('dyspatcher connect in a group with pages: created there, written both ways, handed over, left', { timeout: 240000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  const bobby = await openPage(browser, server.url, { t, name: 'bobby', viewport: PHONE });
  await joinWithKeys(alice, 'alice', keys.alice);
  await joinWithKeys(bobby, 'bobby', keys.bobby);
  const term = startTerminalClient(server, 'carol', ['--key', keys.carol.priv]);
  t.after(() => term.stop());
  await alice.waitForSelector(`#member-list .member[data-key="${keys.carol.keyId}"]`);
  let mark = term.output.length;
  term.write('/group create medics alice bobby');
  await term.waitFor(/group #medics created with alice, bobby/, 20000, mark);
  for (const page of [alice, bobby]) await groupEntry(page, 'medics').waitFor();
  const group = await alice.evaluate(() => document.querySelector('#member-list .member.group').dataset.key);
  await waitNotice(bobby, group, 'carol added you to this group (created by carol)');

  mark = term.output.length;
  await writeGroup(alice, 'medics', 'from the page to the group');
  await term.waitFor(new RegExp(`alice \\([0-9a-f]{12}\\) → #(medics|${group.slice(0, 12)}): from the page to the group`), 20000, mark);
  term.write(`#${group.slice(0, 12)} from the terminal to the group`);
  for (const page of [alice, bobby]) assert.equal((await waitMessage(page, 'from the terminal to the group')).conversation, group);

  // The terminal hands the group over to alice, whose page then removes bobby.
  term.write(`/group owner ${group.slice(0, 12)} alice`);
  await waitNotice(bobby, group, 'carol handed the group over to alice');
  mark = term.output.length;
  await openRoster(alice, 'medics');
  await alice.getByRole('button', { name: 'Remove bobby from the group' }).click();
  await term.waitFor(/bobby was removed/, 20000, mark);
  await waitNotice(bobby, group, 'alice removed you from this group');

  // The terminal leaves: alice's page (the owner) signs the roster without it.
  term.write(`/group leave ${group.slice(0, 12)}`);
  await waitNotice(alice, group, 'carol left the group.');
  await alice.waitForFunction(() => document.querySelectorAll('#group-body .roster li').length === 1);
  assertClean(alice, bobby);
});


// A browser page and the Rust terminal client (`dyspatcher connect`) chat both ways, directly
// and via @all: the two implementations of the protocol open each other's messages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, startTerminalClient, launchBrowser, openPage, assertClean, tempDir, opensslKey,
  joinWithKeys, sendTo, waitMessage, rmSync,
} from './helpers.mjs';

let server, browser, dir, keys, term;

before(async () => {
  dir = tempDir();
  keys = { alice: opensslKey(dir, 'alice', 'pkcs8'), term: opensslKey(dir, 'term', 'pkcs1') };
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await term?.stop();
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a page and the terminal client chat both ways, directly and via @all', { timeout: 90000 }, async (t) => {
  const alice = await openPage(browser, server.url, { t, name: 'alice' });
  await joinWithKeys(alice, 'alice', keys.alice);
  term = startTerminalClient(server, 'termy', ['--key', keys.term.priv]);
  await alice.waitForSelector(`#member-list .member[data-key="${keys.term.keyId}"]`);
  assert.equal(await alice.textContent(`#member-list .member[data-key="${keys.term.keyId}"] .kid`), keys.term.keyId.slice(0, 12));

  let mark = term.output.length;
  await sendTo(alice, 'termy', 'direct from the page');
  await term.waitFor(/alice.*direct from the page/, 15000, mark);

  mark = term.output.length;
  await sendTo(alice, '@all', 'page to everyone');
  await term.waitFor(/alice.*page to everyone/, 15000, mark);

  term.write('@alice direct from the terminal');
  let got = await waitMessage(alice, 'direct from the terminal');
  assert.equal(got.from, 'termy');
  assert.equal(got.to, 'alice');
  assert.match(got.classes, /\bdirect\b/);
  assert.equal(got.state, null, 'shown only once its signature verified; no delivery state on a received message');

  term.write('@all terminal to everyone');
  got = await waitMessage(alice, 'terminal to everyone');
  assert.equal(got.from, 'termy');
  assert.equal(got.to, '@all');
  assert.equal(got.state, null, 'shown only once its signature verified; no delivery state on a received message');

  // A second round on the same sender keys.
  mark = term.output.length;
  await sendTo(alice, '@all', 'page to everyone again');
  await term.waitFor(/page to everyone again/, 15000, mark);
  term.write('@all terminal again');
  await waitMessage(alice, 'terminal again');

  assert.doesNotMatch(term.output, /refused|cannot be opened/);
  assert.equal(await alice.locator('.notice.warning').count(), 0);
  assertClean(alice);
});

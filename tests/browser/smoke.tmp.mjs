import { startServer, launchBrowser, openPage, tempDir, opensslKey } from './helpers.mjs';
const dir = tempDir();
const server = await startServer();
const browser = await launchBrowser();
const ka = opensslKey(dir, 'alice'), kb = opensslKey(dir, 'bob');
const a = await openPage(browser, server.url, { name: 'a' });
const b = await openPage(browser, server.url, { name: 'b', viewport: { width: 360, height: 740 } });
try {
  for (const [p, n, k] of [[a, 'alice', ka], [b, 'bobby', kb]]) {
    await p.fill('#name', n);
    await p.click('#own-keys-toggle');
    await p.setInputFiles('#private-file', k.priv);
    await p.waitForSelector('#key-info:not([hidden])', { timeout: 5000 });
    await p.screenshot({ path: `/tmp/smoke/${n}-start.png` });
    await p.click('#connect');
    await p.waitForSelector('#status[data-state="connected"]', { timeout: 10000 });
  }
  await a.waitForSelector(`#member-list .member[data-key="${kb.keyId}"]`, { timeout: 5000 });
  await a.click(`#member-list .member[data-key="${kb.keyId}"]`);
  await a.fill('#text', 'hello bob https://example.org/x, see @bobby');
  await a.press('#text', 'Enter');
  await b.waitForSelector('#member-list .unread', { timeout: 5000 });
  await b.screenshot({ path: '/tmp/smoke/bob-list.png' });
  await b.click(`#member-list .member[data-key="${ka.keyId}"]`);
  await b.screenshot({ path: '/tmp/smoke/bob-conv.png' });
  await a.screenshot({ path: '/tmp/smoke/alice-conv.png' });
  await b.click('#verify-open');
  await b.screenshot({ path: '/tmp/smoke/bob-verify.png' });
} catch (e) { console.log('ERR', e.message); await a.screenshot({ path: '/tmp/smoke/err-a.png' }); await b.screenshot({ path: '/tmp/smoke/err-b.png' }); }
console.log([...a.problems, ...b.problems]);
await browser.close(); await server.stop();

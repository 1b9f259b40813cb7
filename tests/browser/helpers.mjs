// Shared helpers of the browser tests: the real server binary, headless Chromium through
// playwright-core, openssl-made keys, and the checks every page must pass (no CSP violation,
// no console error).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = resolve(here, process.env.DYSPATCHER_BIN || '../../target/debug/dyspatcher');
// Screenshots are for looking at, not for the repository: they go to the temporary directory.
export const SCREENSHOTS = process.env.SCREENSHOTS || join(tmpdir(), 'dyspatcher-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const URL_RE = /https?:\/\/127\.0\.0\.1:\d+\//;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** A child process whose output is kept and can be waited on. */
class Child {
  constructor(cmd, args, opts = {}) {
    this.output = '';
    this.proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
    children.add(this.proc);
    this.waiters = new Set();
    this.exited = new Promise((res) => {
      this.proc.on('exit', (code, signal) => {
        children.delete(this.proc);
        res({ code, signal });
      });
    });
    const take = (chunk) => {
      this.output += chunk.toString();
      for (const w of this.waiters) w();
    };
    this.proc.stdout.on('data', take);
    this.proc.stderr.on('data', take);
    this.proc.stdin.on('error', () => {});
  }

  /** Resolves with the first match of `re` in the output from `from` on; fails after `ms`. */
  waitFor(re, ms = 15000, from = 0) {
    return new Promise((res, rej) => {
      const check = () => {
        const m = this.output.slice(from).match(re);
        if (m) {
          this.waiters.delete(check);
          clearTimeout(timer);
          res(m);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        rej(new Error(`timed out waiting for ${re} in output:\n${this.output.slice(-3000)}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  write(line) {
    this.proc.stdin.write(`${line}\n`);
  }

  async stop(signal = 'SIGTERM', ms = 5000) {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill(signal);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), ms);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }
}

/** Starts the real server on 127.0.0.1 (port 0 unless given) and waits for the URL it prints. */
/** `--files-dir` in a fresh temporary folder unless `args` has one: nothing lands in the checkout. */
function withFilesDir(args) {
  return args.includes('--files-dir') ? args : [...args, '--files-dir', tempDir('dysp-files-')];
}

export async function startServer(args = [], { port = 0 } = {}) {
  const server = new Child(BIN, ['-i', '127.0.0.1', '-p', String(port), ...withFilesDir(args)], {
    env: { ...process.env, NO_COLOR: '1' },
  });
  const [url] = await server.waitFor(URL_RE, 20000);
  server.url = url;
  server.port = Number(new URL(url).port);
  server.wsUrl = `ws://127.0.0.1:${server.port}/ws`;
  return server;
}

/** Starts `dyspatcher connect` (the Rust terminal client). */
export function startTerminalClient(server, name, extra = []) {
  return new Child(BIN, ['connect', server.wsUrl, '--name', name, ...withFilesDir(extra)], {
    env: { ...process.env, NO_COLOR: '1' },
  });
}

export function tempDir(prefix = 'dysp-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Makes an RSA key with openssl: 'pkcs1' (`genrsa -traditional`) or 'pkcs8' (`genpkey`). */
export function opensslKey(dir, name, kind = 'pkcs1', bits = 2048) {
  const priv = join(dir, `${name}.pem`);
  const pub = join(dir, `${name}.pub.pem`);
  if (kind === 'pkcs1') execFileSync('openssl', ['genrsa', '-traditional', '-out', priv, String(bits)], { stdio: 'ignore' });
  else execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${bits}`, '-out', priv], { stdio: 'ignore' });
  execFileSync('openssl', ['pkey', '-in', priv, '-pubout', '-out', pub], { stdio: 'ignore' });
  return { priv, pub, keyId: opensslKeyId(pub) };
}

/** The key ID as openssl computes it: SHA-256 of the SPKI DER. */
export function opensslKeyId(pubPem) {
  return execFileSync('sh', ['-c', 'openssl pkey -pubin -in "$1" -outform DER | sha256sum', 'sh', pubPem])
    .toString()
    .slice(0, 64);
}

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Headless Chromium with a fresh profile (playwright makes a new user-data-dir per launch). */
export async function launchBrowser(extraArgs = []) {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...ARGS, ...extraArgs], timeout: 30000 });
}

/**
 * Opens `url` in a new context (its own storage). The page records CSP violations, console errors and uncaught
 * exceptions in `page.problems`; `assertClean(page)` fails on any.
 */
export async function openPage(browser, url, { viewport = { width: 1280, height: 800 }, colorScheme = 'light', name = 'page', t, acceptCertificate = false } = {}) {
  // `acceptCertificate`: the user has accepted the server's self-signed certificate.
  const context = await browser.newContext({ viewport, colorScheme, acceptDownloads: true, ignoreHTTPSErrors: acceptCertificate });
  // Closed when the test `t` ends, passed or failed, so that no page stays connected. A member
  // whose page just closes stays in the chat (away) with what was sent to it kept: pages leave
  // first, so that the next test with the same keys starts a membership of its own.
  t?.after(async () => {
    for (const page of context.pages()) await leaveIfConnected(page);
    await context.close().catch(() => {});
  });
  return openTab(context, url, { name });
}

/** Opens `url` in another tab of `context` (same storage), watched as `openPage` does. */
export async function openTab(context, url, { name = 'tab' } = {}) {
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.problems = [];
  await page.exposeFunction('__reportViolation', (v) => page.problems.push(`${name}: CSP violation ${v}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__reportViolation(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`),
    );
  });
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.problems.push(`${name}: uncaught ${e.message}`));
  await page.goto(url);
  return page;
}

export function assertClean(...pages) {
  assert.deepEqual(pages.flatMap((p) => p.problems), []);
}

/** Fills the start screen with `name` and the key files, and connects. */
export async function joinWithKeys(page, name, key) {
  await page.fill('#name', name);
  await page.click('#own-keys-toggle');
  await page.setInputFiles('#private-file', key.priv);
  if (key.pub) await page.setInputFiles('#public-file', key.pub);
  await page.waitForFunction((id) => document.querySelector('#key-id')?.textContent === id, key.keyId.slice(0, 12));
  await page.click('#connect');
  await waitConnected(page);
}

/** Leaves the chat through the menu. */
export async function leave(page, opts = {}) {
  await page.click('#menu-open', opts);
  await page.click('#leave', opts);
}

/** Clicks "Leave" on a connected page and waits until the page says it left. */
export async function leaveIfConnected(page) {
  try {
    if (!(await page.isVisible('#status[data-state="connected"]', { timeout: 1000 }))) return;
    await leave(page, { timeout: 2000 });
    await page.waitForSelector('#status[data-state="closed"]', { timeout: 5000 });
  } catch {
    // a page already gone or broken has nothing to leave
  }
}

/**
 * Waits until `fn` (run in the page, may be async) returns something truthy. Playwright's
 * waitForFunction takes a returned promise as truthy at once, so async checks are asked again
 * here until they hold (or the test's timeout ends it).
 */
export async function waitUntil(page, fn, arg) {
  for (;;) {
    const value = await page.evaluate(fn, arg);
    if (value) return value;
    await page.waitForTimeout(50);
  }
}

export const waitConnected = (page, ms = 20000) => page.waitForSelector('#status[data-state="connected"]', { timeout: ms });

/** The conversation list's entry for '@all' (Everyone) or a member's name. */
export function listEntry(page, dest) {
  if (dest === '@all') return page.locator('#member-list .member[data-key="all"]');
  return page.locator('#member-list .member:not(.gone)', { has: page.locator('.name', { hasText: new RegExp(`^${dest}$`) }) });
}

/** Opens a conversation ('@all' for Everyone, or a name), from the list (after "back" on a phone). */
export async function openConversation(page, dest) {
  if (await page.isVisible('#back')) await page.click('#back');
  await listEntry(page, dest).click();
  await page.waitForSelector('#conv-title', { state: 'visible' });
}

/** Opens the conversation with `dest` ('@all' or a name) and sends `text` with Enter. */
export async function sendTo(page, dest, text) {
  await openConversation(page, dest);
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('.msg.own')].some((li) => li.querySelector('.text').textContent === t && li.querySelector('.state.sent, .state.held, .state.delivered')),
    text,
  );
}

/** Waits for a received message with exactly `text`; returns what the page shows of it. */
export async function waitMessage(page, text, ms = 20000) {
  const handle = await page.waitForFunction(
    (t) => {
      const li = [...document.querySelectorAll('#messages .msg:not(.history)')].find((m) => m.querySelector('.text').textContent === t);
      if (!li) return null;
      const q = (s) => li.querySelector(s)?.textContent ?? null;
      return {
        conversation: li.closest('.messages').dataset.conv,
        classes: li.className,
        from: q('.from'),
        to: q('.dest'),
        via: q('.via'),
        state: q('.state'),
        html: li.querySelector('.text').innerHTML,
        elements: li.querySelector('.text').children.length,
      };
    },
    text,
    { timeout: ms },
  );
  return handle.jsonValue();
}

/** Waits until the member list shows `count` members besides the admin (and the admin itself). */
export async function waitMembers(page, count) {
  await page.waitForFunction(
    (n) => document.querySelectorAll('#member-list .member.admin').length === 1 &&
      document.querySelectorAll('#member-list .member:not(.all):not(.admin):not(.gone)').length === n,
    count,
  );
}

export async function memberNames(page) {
  return page.$$eval('#member-list .member:not(.all):not(.gone) .name', (els) => els.map((e) => e.textContent));
}

export function screenshotPath(name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return join(SCREENSHOTS, `${name}.png`);
}

export { rmSync, join };

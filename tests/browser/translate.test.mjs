// The catalogue function under Node: placeholders, plural forms by the language's rules, the
// English fallback, the language picked from the browser's list, and every key the code asks
// for present in the English catalogue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import en from '../../assets/i18n/en.js';
import { LANGUAGES, pickLanguage, reason, setLanguage, t, tNodes } from '../../assets/i18n/i18n.js';

const ASSETS = resolve(dirname(fileURLToPath(import.meta.url)), '../../assets');

test('placeholders and English plurals', () => {
  assert.equal(t('notice.joined', { name: 'alice' }), 'alice joined');
  assert.equal(t('start.name_short', { n: 1 }), '1 more character needed (at least 4).');
  assert.equal(t('start.name_short', { n: 3 }), '3 more characters needed (at least 4).');
  assert.equal(t('list.unread', { n: 0 }), '0 unread messages');
  assert.equal(t('send.too_long', { size: 40000, max: 32768 }), 'The message is too long: 40000 bytes, at most 32768.');
  // A placeholder without a value stays visible rather than vanishing.
  assert.equal(t('notice.joined'), '{name} joined');
  assert.deepEqual(tNodes('verify.title', 'name', 'NODE'), ['Verify ', 'NODE']);
});

test('the language comes from the browser\u2019s list: first one we have, Simplified Chinese only', () => {
  assert.equal(pickLanguage(['es-MX', 'en']), 'es');
  assert.equal(pickLanguage(['de-DE', 'fr-CA', 'en']), 'fr');
  assert.equal(pickLanguage(['zh-TW', 'ru']), 'ru');
  assert.equal(pickLanguage(['zh-CN']), 'zh');
  assert.equal(pickLanguage(['zh-Hans-SG']), 'zh');
  assert.equal(pickLanguage(['fa-IR']), 'fa');
  assert.equal(pickLanguage(['de', 'it']), 'en');
  assert.equal(pickLanguage([]), 'en');
  assert.deepEqual(LANGUAGES.filter((l) => l.dir === 'rtl').map((l) => l.code), ['ar', 'fa']);
});

test('every key the page asks for is in the English catalogue', () => {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.(js|html)$/.test(entry.name) && !path.includes('/i18n/')) files.push(path);
    }
  };
  walk(ASSETS);
  const used = new Set();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\bt(?:Nodes)?\(\s*'([a-z_.0-9]+)'/g)) used.add(m[1]);
    for (const m of text.matchAll(/data-i18n(?:-[a-z-]+)?="([a-z_.0-9]+)"/g)) used.add(m[1]);
    for (const m of text.matchAll(/\[\s*'(key\.source\.[a-z_]+)'/g)) used.add(m[1]);
    for (const m of text.matchAll(/t\(\w+ \? '([a-z_.0-9]+)' : '([a-z_.0-9]+)'/g)) used.add(m[1]).add(m[2]);
  }
  assert.ok(used.size > 100, `${used.size} keys found`);
  const missing = [...used].filter((k) => !(k in en));
  assert.deepEqual(missing, []);
  // Keys built at run time.
  for (const k of ['keygen.generate', 'keygen.export', 'keygen.keyid', 'left.expired', 'left.kicked', 'gap.kind.sender_key', 'msg.held_title']) assert.ok(k in en, k);
});

test('the server\u2019s refusals: its own words in English, ours for the code in any other language', async () => {
  try {
    assert.equal(reason('name_taken', 'the name alice is taken'), 'the name alice is taken');
    await setLanguage('es');
    assert.equal(reason('name_taken', 'the name alice is taken'), 'Otro miembro ya usa este nombre. Elige otro.');
    assert.equal(reason('rate_limited', 'slow down'), 'Estás enviando demasiado rápido. Espera un momento.');
    // A code without a text of ours keeps the server's words rather than nothing.
    assert.equal(reason('lost', 'no answer'), 'no answer');
    assert.equal(reason('some_future_code', undefined), 'some_future_code');
    await setLanguage('ar');
    assert.match(reason('not_allowed', 'not on the allow list'), /[\u0600-\u06ff]/);
  } finally {
    await setLanguage('en');
  }
});

// The translated catalogues against the English one, under Node: the same keys, plural entries
// with `other` and only the categories the language's Intl.PluralRules selects, the same
// `{placeholders}` as the English text, the product terms kept as they are, and the language's
// own punctuation (French no-break spaces, Arabic and Persian ، ؟, Chinese full-width marks). A
// language whose file is not there yet is skipped, named; a file for a language the switcher does
// not offer fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import en from '../../assets/i18n/en.js';
import { LANGUAGES } from '../../assets/i18n/i18n.js';

const DIR = new URL('../../assets/i18n/', import.meta.url);

/** Written the same in every language: a translation keeps each one the English text has. */
const KEPT = [
  '@all', 'dyspatcher', 'HTTPS', 'https://', 'http://localhost', 'crypto.subtle', 'openssl',
  '-----BEGIN PRIVATE KEY-----', '-----BEGIN RSA PRIVATE KEY-----', '-----BEGIN PUBLIC KEY-----',
  'private.pem', 'key.pem', 'plain.pem', '/kick', '/ban', '/unban', '/bans',
];

/** Punctuation a language writes its own way: a pattern that must not occur, and why. */
const PUNCTUATION = {
  fr: [
    [/(^|[^\u00a0\u202f])[:;!?](\s|$)/, 'a no-break space (U+00A0, U+202F) goes before : ; ! ?'],
    [/«(?!\u00a0)|(?<!\u00a0)»/, 'a no-break space (U+00A0) goes inside « »'],
  ],
  ar: [[/[\u0600-\u06ff]\s?[,;?]/, 'Arabic punctuation ، ؛ ؟ after Arabic text']],
  fa: [[/[\u0600-\u06ff]\s?[,;?]/, 'Persian punctuation ، ؛ ؟ after Persian text']],
  zh: [[/[\u4e00-\u9fff][,:;?!]|[,:;?!]\s?[\u4e00-\u9fff]/, 'full-width punctuation ，：；？！ next to Chinese text']],
};

/** The names of the `{placeholders}` in `text`, sorted, each once. */
const placeholders = (text) => [...new Set([...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]))].sort();

/** `{a} {b}`, or "none". */
const listed = (names) => (names.length ? names.map((n) => `{${n}}`).join(' ') : 'none');

/** Braces left over once the placeholders are taken out: a mistyped `{name` or `name}`. */
const strayBraces = (text) => text.replace(/\{\w+\}/g, '').match(/[{}]/g)?.length ?? 0;

const isPlural = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

/** The integers 0..9999 each plural category of `tag` selects, counted. */
function categoryCounts(tag) {
  const rules = new Intl.PluralRules(tag);
  const counts = {};
  for (let n = 0; n < 10000; n++) {
    const c = rules.select(n);
    counts[c] = (counts[c] ?? 0) + 1;
  }
  return counts;
}

/**
 * Every problem of `catalogue` (the language `lang`) against English, as readable lines; an
 * empty list when it is right.
 */
function catalogueProblems(catalogue, lang) {
  const problems = [];
  if (!isPlural(catalogue)) return [`${lang.code}.js: the default export is not an object`];
  const categories = new Set(new Intl.PluralRules(lang.tag).resolvedOptions().pluralCategories);
  const counts = categoryCounts(lang.tag);
  for (const key of Object.keys(en)) if (!(key in catalogue)) problems.push(`${key}: missing`);
  for (const key of Object.keys(catalogue)) if (!(key in en)) problems.push(`${key}: not in en.js`);
  for (const [key, english] of Object.entries(en)) {
    if (!(key in catalogue)) continue;
    const value = catalogue[key];
    const check = (text, where, wanted, optionalN) => {
      if (typeof text !== 'string' || !text.trim()) {
        problems.push(`${where}: not a text`);
        return;
      }
      let got = placeholders(text);
      // A form that only ever stands for one number may spell it out ("one message").
      if (optionalN && !got.includes('n')) got = [...got, 'n'].sort();
      if (got.join() !== wanted.join()) {
        problems.push(`${where}: placeholders ${listed(placeholders(text))}, English has ${listed(wanted)}`);
      }
      if (strayBraces(text)) problems.push(`${where}: a brace outside a {placeholder}`);
      for (const [pattern, rule] of PUNCTUATION[lang.code] ?? []) {
        if (pattern.test(text)) problems.push(`${where}: ${rule}`);
      }
      const englishText = isPlural(english) ? english.other : english;
      for (const term of KEPT) {
        if (englishText.includes(term) && !text.includes(term)) problems.push(`${where}: "${term}" is not kept as it is`);
      }
    };
    if (isPlural(english)) {
      if (!isPlural(value)) {
        problems.push(`${key}: should hold plural forms, like the English`);
        continue;
      }
      const wanted = [...new Set(Object.values(english).flatMap(placeholders))].sort();
      if (!('other' in value)) problems.push(`${key}: no "other" form`);
      for (const [form, text] of Object.entries(value)) {
        if (!categories.has(form)) {
          problems.push(`${key}.${form}: ${lang.tag} plural rules never select "${form}" (they use ${[...categories].join(', ')})`);
          continue;
        }
        check(text, `${key}.${form}`, wanted, form !== 'other' && counts[form] === 1);
      }
    } else if (typeof value !== 'string') {
      problems.push(`${key}: should be a text, like the English`);
    } else {
      check(value, key, placeholders(english), false);
    }
  }
  return problems;
}

test('the English catalogue is the reference the checks assume', () => {
  const en1 = { code: 'en', tag: 'en' };
  assert.deepEqual(catalogueProblems(en, en1), []);
  // Each kind of fault is caught.
  const broken = { ...en };
  delete broken['chat.you'];
  broken['chat.extra'] = 'extra';
  broken['notice.joined'] = '{nom} joined';
  broken['list.members'] = { one: '{n} member', few: '{n} members' };
  broken['list.unread'] = { one: 'one unread message', other: 'unread messages' };
  broken['send.all_disabled'] = '@todos is disabled on this server.';
  broken['conv.via'] = 'via {via';
  broken['chat.menu'] = { other: 'Menu' };
  assert.deepEqual(catalogueProblems(broken, en1).sort(), [
    'chat.extra: not in en.js',
    'chat.menu: should be a text, like the English',
    'chat.you: missing',
    'conv.via: a brace outside a {placeholder}',
    'conv.via: placeholders none, English has {via}',
    'list.members.few: en plural rules never select "few" (they use one, other)',
    'list.members: no "other" form',
    'list.unread.other: placeholders none, English has {n}',
    'notice.joined: placeholders {nom}, English has {name}',
    'send.all_disabled: "@all" is not kept as it is',
  ]);
  // Russian "one" covers 1, 21, 31…: it must show the number; Arabic "one" is only 1.
  const ru = { code: 'ru', tag: 'ru' };
  const ruLike = { ...en, 'list.members': { one: 'один участник', few: '{n} участника', many: '{n} участников', other: '{n} участника' } };
  // (The English "1 more character needed" would be wrong in Russian for 21 as well.)
  assert.deepEqual(catalogueProblems(ruLike, ru).sort(), [
    'list.members.one: placeholders none, English has {n}',
    'start.name_short.one: placeholders none, English has {n}',
  ]);
  const ar = { code: 'ar', tag: 'ar' };
  const arLike = { ...en, 'list.members': { zero: 'لا أعضاء', one: 'عضو واحد', two: 'عضوان', other: '{n} عضو' } };
  assert.deepEqual(catalogueProblems(arLike, ar), []);
  // Each language's own punctuation.
  const fr = { code: 'fr', tag: 'fr' };
  const frLike = { ...en, 'chat.menu': 'Menu : ici', 'chat.close': 'Fermer\u00a0?', 'chat.leave': 'https://x', 'chat.export': '« Exporter\u00a0»' };
  const about = (keys) => (p) => keys.includes(p.split(':')[0]);
  assert.deepEqual(catalogueProblems(frLike, fr).filter(about(['chat.menu', 'chat.close', 'chat.leave', 'chat.export'])), [
    'chat.menu: a no-break space (U+00A0, U+202F) goes before : ; ! ?',
    'chat.export: a no-break space (U+00A0) goes inside « »',
  ]);
  const arPunct = { ...arLike, 'chat.close': 'إغلاق?', 'chat.menu': 'القائمة، هنا' };
  assert.deepEqual(catalogueProblems(arPunct, ar), ['chat.close: Arabic punctuation ، ؛ ؟ after Arabic text']);
  const zh = { code: 'zh', tag: 'zh-CN' };
  const zhLike = { ...en, 'chat.close': '关闭: 是', 'chat.menu': '菜单：{x}' };
  assert.deepEqual(catalogueProblems(zhLike, zh).filter(about(['chat.close', 'chat.menu'])), [
    'chat.menu: placeholders {x}, English has none',
    'chat.close: full-width punctuation ，：；？！ next to Chinese text',
  ]);
});

test('no catalogue file for a language the switcher does not offer', () => {
  const offered = new Set(LANGUAGES.map((l) => `${l.code}.js`));
  const files = readdirSync(DIR).filter((f) => f.endsWith('.js') && f !== 'i18n.js');
  assert.deepEqual(files.filter((f) => !offered.has(f)), []);
});

for (const lang of LANGUAGES.filter((l) => l.code !== 'en')) {
  const file = new URL(`${lang.code}.js`, DIR);
  const there = existsSync(file);
  test(`${lang.name} (${lang.code}.js) matches en.js`, { skip: !there && `no ${lang.code}.js yet` }, async () => {
    const catalogue = (await import(file.href)).default;
    assert.deepEqual(catalogueProblems(catalogue, lang), []);
  });
}

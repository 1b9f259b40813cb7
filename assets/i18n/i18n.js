// dyspatcher web client: every string the page shows comes from here. `t(key, params)` looks the
// key up in the current language's catalogue (assets/i18n/<code>.js), falling back to English,
// and fills `{name}` placeholders; a value that is an object holds plural forms, chosen by
// `params.n` with the language's plural rules (Intl.PluralRules: zero, one, two, few, many, other).
import en from './en.js';

/** The languages offered, in the switcher's order. `dir` is the writing direction. */
export const LANGUAGES = [
  { code: 'en', name: 'English', dir: 'ltr', tag: 'en' },
  { code: 'es', name: 'Español', dir: 'ltr', tag: 'es' },
  { code: 'fr', name: 'Français', dir: 'ltr', tag: 'fr' },
  { code: 'ar', name: 'العربية', dir: 'rtl', tag: 'ar' },
  { code: 'ru', name: 'Русский', dir: 'ltr', tag: 'ru' },
  { code: 'uk', name: 'Українська', dir: 'ltr', tag: 'uk' },
  { code: 'fa', name: 'فارسی', dir: 'rtl', tag: 'fa' },
  { code: 'zh', name: '简体中文', dir: 'ltr', tag: 'zh-CN' },
];

const current = { code: 'en', catalogue: en, plural: new Intl.PluralRules('en') };

export const language = () => LANGUAGES.find((l) => l.code === current.code);

/** The catalogue entry for `key` (English when the language lacks it), or undefined. */
function entry(key) {
  return current.catalogue[key] ?? en[key];
}

/** The text of `key` with `{name}` placeholders replaced from `params`. */
export function t(key, params = {}) {
  let value = entry(key);
  if (value === undefined) {
    console.warn(`dyspatcher: no text for "${key}"`);
    return key;
  }
  if (typeof value === 'object') {
    const n = Number(params.n);
    const form = Number.isFinite(n) ? current.plural.select(n) : 'other';
    value = value[form] ?? value.other ?? en[key]?.other ?? key;
  }
  return value.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/**
 * What the server said when it refused something (`error.code`, `error.message`): in English its
 * own words (they name the rule or the limit), in any other language our text for that code
 * when we have one — never English text in a translated page when it can be helped.
 */
export function reason(code, message) {
  const key = `reason.${code}`;
  if (current.code === 'en' || !(key in en)) return String(message ?? code);
  return t(key);
}

/**
 * The language to start in: the first of the browser's languages we have ("es-MX" → "es";
 * Chinese only for Simplified: zh, zh-CN, zh-SG, zh-Hans), English otherwise.
 */
export function pickLanguage(wanted = globalThis.navigator?.languages ?? []) {
  for (const tag of wanted) {
    const lower = String(tag).toLowerCase();
    const base = lower.split('-')[0];
    if (base === 'zh') {
      if (lower === 'zh' || /^zh-(cn|sg|hans)/.test(lower)) return 'zh';
      continue;
    }
    if (LANGUAGES.some((l) => l.code === base)) return base;
  }
  return 'en';
}

/**
 * Switches to `code`, loading its catalogue; English when it cannot be loaded. Resolves to the
 * language in use.
 */
export async function setLanguage(code) {
  const lang = LANGUAGES.find((l) => l.code === code) ?? LANGUAGES[0];
  let catalogue = en;
  if (lang.code !== 'en') {
    try {
      catalogue = (await import(`./${lang.code}.js`)).default;
    } catch (e) {
      console.warn(`dyspatcher: the ${lang.name} texts could not be loaded:`, e);
      return setLanguage('en');
    }
  }
  current.code = lang.code;
  current.catalogue = catalogue;
  current.plural = new Intl.PluralRules(lang.tag);
  if (globalThis.document) {
    document.documentElement.lang = lang.tag;
    document.documentElement.dir = lang.dir;
  }
  return lang;
}

/**
 * Fills the page's fixed texts: `data-i18n` (text), `data-i18n-<attribute>` (placeholder, title,
 * aria-label) name the key.
 */
export function translatePage(root = document) {
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const attr of ['placeholder', 'title', 'aria-label', 'alt']) {
    const data = `data-i18n-${attr}`;
    for (const node of root.querySelectorAll(`[${data}]`)) node.setAttribute(attr, t(node.getAttribute(data)));
  }
}

/** "14:32" in the user's language. */
export const timeText = (d) => d.toLocaleTimeString(language().tag, { hour: '2-digit', minute: '2-digit' });
/** "3 December 2026, 14:32:05" in the user's language. */
export const fullTimeText = (d) => d.toLocaleString(language().tag, { dateStyle: 'long', timeStyle: 'medium' });
/** "Thursday 3 December" in the user's language, for date separators. */
export const dateText = (d) => d.toLocaleDateString(language().tag, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });

/** `t(key)` as nodes, with the `{slot}` placeholder replaced by `node` (a coloured name, say). */
export function tNodes(key, slot, node, params = {}) {
  const [before, after = ''] = t(key, { ...params, [slot]: '\u0001' }).split('\u0001');
  return [before, node, after].filter((x) => x !== '');
}

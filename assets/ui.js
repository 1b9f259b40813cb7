// dyspatcher web client: small DOM helpers shared by the screens. Every untrusted string goes
// through textContent or a text node; links are built with DOM APIs, never innerHTML.
import { t } from './i18n/i18n.js';

export const $ = (id) => document.getElementById(id);

/** Creates an element: el('li', {class: 'x', text: 'y', title: 'z'}, ...children). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) if (dv !== undefined) node.dataset[dk] = dv;
    } else node.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

export const shortId = (keyId) => keyId.slice(0, 12);

/** "1a2b 3c4d …": a key ID in groups of 4 hex characters, as read aloud or compared. */
export const groups = (hex, size = 4) => hex.match(new RegExp(`.{1,${size}}`, 'g')).join(' ');

const pad = (n) => String(n).padStart(2, '0');
export const isoTime = (d) =>
  `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;

/** Saves `text` as a file through the browser's download. */
export function download(filename, text, type = 'text/plain') {
  const url = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
  const a = el('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function exportFilename(now = new Date(), what = '') {
  const stamp = `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}`;
  return `dyspatcher-${what ? `${what}-` : ''}${stamp}.txt`;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"]+/gi;
const TRAILING = /[.,;:!?)\]}'’”]+$/;

/**
 * The text of a message as nodes: plain text, with http(s) links made clickable (opened in a
 * new tab, no referrer, no opener) and `@name` mentions of `me` highlighted.
 */
export function richText(text, me) {
  const out = [];
  let at = 0;
  for (const m of text.matchAll(URL_RE)) {
    let url = m[0];
    const trail = url.match(TRAILING);
    if (trail) url = url.slice(0, -trail[0].length);
    let href = null;
    try {
      const parsed = new URL(url);
      if (parsed.protocol === 'http:' || parsed.protocol === 'https:') href = parsed.href;
    } catch {
      href = null;
    }
    if (!href) continue;
    out.push(...mentions(text.slice(at, m.index), me));
    out.push(el('a', { href, target: '_blank', rel: 'noopener noreferrer', text: url }));
    at = m.index + url.length;
  }
  out.push(...mentions(text.slice(at), me));
  return out;
}

function mentions(text, me) {
  if (!me || !text) return text ? [text] : [];
  const re = new RegExp(`@${me}\\b`, 'g');
  const out = [];
  let at = 0;
  for (const m of text.matchAll(re)) {
    out.push(text.slice(at, m.index), el('mark', { class: 'mention', text: m[0] }));
    at = m.index + m[0].length;
  }
  out.push(text.slice(at));
  return out.filter((x) => x !== '');
}

/** Whether `text` mentions `@name` as a word. */
export const mentionsMe = (text, name) => !!name && new RegExp(`@${name}\\b`).test(text);

const FOCUSABLE = 'button:not([disabled]), [href], input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex="0"]';

/** Keeps Tab and Shift+Tab inside `dialog` (the browser lets focus leave for its own bar). */
function trapFocus(dialog) {
  if (dialog.dataset.trapped) return;
  dialog.dataset.trapped = 'yes';
  dialog.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Tab') return;
    const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((n) => n.offsetParent !== null);
    if (!items.length) return;
    const first = items[0];
    const last = items.at(-1);
    if (ev.shiftKey && document.activeElement === first) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && document.activeElement === last) {
      ev.preventDefault();
      first.focus();
    }
  });
}

/**
 * Opens `dialog` as a modal (Escape closes it), with focus kept inside, and gives focus back to
 * what had it when it closes.
 */
export function openDialog(dialog, focus = null) {
  const before = document.activeElement;
  trapFocus(dialog);
  if (!dialog.open) dialog.showModal();
  (focus || dialog.querySelector(FOCUSABLE))?.focus();
  dialog.addEventListener('close', () => before?.focus?.(), { once: true });
}

export function closeDialog(dialog) {
  if (dialog.open) dialog.close();
}

/** "Export" header lines: server, date, your key ID. */
export function exportHeader(keyId, what) {
  return [
    t('export.header'),
    t('export.server', { server: location.origin }),
    t('export.date', { date: isoTime(new Date()) }),
    t('export.key', { id: keyId }),
    what ? t('export.conversation', { name: what }) : null,
    '',
  ].filter((x) => x !== null);
}

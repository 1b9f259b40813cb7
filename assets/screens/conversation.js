// dyspatcher web client: the conversations and the open one. Each conversation ("Everyone" or
// one member) keeps its records and its own list of messages on the page; the open one is shown
// with its composer, and it is the recipient: there is nothing else to pick. Unread counts, the
// "new messages" pill, delivery states, and the history kept on the device (store.js).
import { t } from '../i18n/i18n.js';
import { colour, identicon } from '../identicon.js';
import { daySeparator, exportLine, mark, messageItem, RANK } from '../messages.js';
import { arrived } from '../notify.js';
import { canWriteAll, convKey, emit, group, member, narrow, S } from '../state.js';
import * as store from '../store.js';
import { changedFrom } from '../trust.js';
import { $, download, el, exportFilename, exportHeader, shortId } from '../ui.js';

const UNCONFIRMED_AFTER = 10_000; // an own message with no answer from the server by then is flagged
const MAX_TRACKED = 500; // own messages whose delivery state is still followed
const NEAR_BOTTOM = 80; // pixels from the end that still count as "at the newest message"

const tracked = new Map(); // id -> {li, record} of own messages
const early = new Map(); // id -> [state, detail] that came before the message was shown
const dirty = new Set(); // conversations whose history is to be written

/** Whether histories are kept on this device. */
export const keeps = () => S.remember && S.remembered && !S.keepsNothing;

let fileView = null; // draws a file message's card (screens/attachments.js)
export const setFileView = (fn) => {
  fileView = fn;
};

/** The conversation `key`, made when first needed. */
export function conversation(key, name = key) {
  let conv = S.conversations.get(key);
  if (!conv) {
    // The open conversation's new messages are read out (not timers: those are elsewhere).
    const list = el('ol', { class: 'messages', dataset: { conv: key }, hidden: key !== S.open, 'aria-live': 'polite', 'aria-relevant': 'additions' });
    $('messages').append(list);
    conv = { key, name, records: [], unread: 0, list };
    S.conversations.set(key, conv);
  }
  if (name !== key) conv.name = name;
  return conv;
}

/** The conversation a message belongs to: @all, a group, or the other person of a direct message. */
const keyOf = convKey;
const nameOf = (m) => (m.to.kind === 'all' ? t('list.everyone') : m.to.kind === 'group' ? groupName(m.to.group, m.to.name) : m.own ? m.to.name : m.from.name);

/** A group's name as shown: the one its owner sent, or its id's start until then. */
export const groupName = (id, known = '') => group(id)?.name || known || t('group.unnamed', { id: id.slice(0, 8) });

/** The name of conversation `key` as things are now. */
const convName = (key) => (key === 'all' ? t('list.everyone') : group(key) ? groupName(key) : member(key)?.name ?? S.conversations.get(key)?.name ?? key);

const scroller = () => $('conversation');
const atBottom = () => {
  const s = scroller();
  return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM;
};
const toBottom = () => {
  scroller().scrollTop = scroller().scrollHeight;
  $('new-pill').hidden = true;
};

/** Whether the person is looking at conversation `key` right now. */
const watching = (key) => S.open === key && !document.hidden && !(narrow() && S.view !== 'conv');

function append(conv, node, m, force = false) {
  const open = conv.key === S.open;
  const stick = force || (open && atBottom());
  const prev = conv.records.filter((r) => !r.event).at(-1);
  const sep = m ? daySeparator(prev, m) : null;
  if (sep && !conv.list.querySelector(`.day[data-day="${sep.dataset.day}"]`)) conv.list.append(sep);
  conv.list.append(node);
  if (open && stick) toBottom();
  else if (open && m && !m.own) $('new-pill').hidden = false;
}

/** Shows a message: verified from the session, or written here (`local`) with its delivery state. */
export function addMessage(m) {
  const key = keyOf(m);
  const conv = conversation(key, nameOf(m));
  if (conv.records.some((r) => r.id === m.id)) return;
  const record = { id: m.id, ts: m.ts, from: m.from, to: m.to, text: m.text, via: m.via, own: m.own, history: m.history };
  if (m.file) Object.assign(record, { file: m.file, fileError: m.fileError });
  if (m.own) record.state = m.state ?? 'sending';
  const prev = conv.records.at(-1);
  const li = messageItem(record, prev, { onRetry: retry });
  if (record.file) fileView?.(li, record);
  append(conv, li, record, m.local);
  conv.records.push(record);
  conv.last = record.ts;
  if (m.local) track(record, li);
  if (!m.own && !m.history && !watching(key)) conv.unread += 1;
  if (!m.history) {
    arrived(m);
    remember(key);
  }
  emit('list');
}

function track(record, li) {
  tracked.set(record.id, { li, record });
  while (tracked.size > MAX_TRACKED) tracked.delete(tracked.keys().next().value);
  const before = early.get(record.id);
  early.delete(record.id);
  if (before) status(record.id, ...before);
  // The server answers every message; silence means it may be lost (an ack may still come).
  setTimeout(() => {
    if (li.dataset.state === 'sending') setState(record, li, 'unconfirmed', t('msg.unconfirmed_detail'));
  }, UNCONFIRMED_AFTER);
}

function setState(record, li, state, detail) {
  record.state = state;
  record.detail = detail;
  mark(li, state, detail, retry);
  remember(keyOf(record));
}

/** Updates one of our messages: 'sent', 'held', 'delivered' or 'refused'; never goes back. */
export function status(id, state, detail = '') {
  const entry = tracked.get(id);
  if (!entry) {
    // An answer may overtake the showing of the message it is about: keep it for a moment.
    const before = early.get(id);
    if (!before || RANK[state] > RANK[before[0]]) early.set(id, [state, detail]);
    setTimeout(() => early.delete(id), 5000);
    return;
  }
  if (RANK[state] <= RANK[entry.li.dataset.state]) return;
  setState(entry.record, entry.li, state, detail);
  // Only direct messages learn more after 'sent'.
  if (state === 'delivered' || state === 'refused' || (state === 'sent' && entry.record.to.kind === 'all')) tracked.delete(id);
}

/** A line about what happened; `keep` ones (joins, leaves, gaps) are kept in the history too. */
export function notice(text, { kind = 'info', key = S.open, keep = false, alert = false } = {}) {
  const conv = conversation(key, convName(key));
  const li = el('li', { class: `notice ${kind}`, role: alert ? 'alert' : null, text: alert ? `\u26a0 ${text}` : text });
  append(conv, li, null);
  if (keep) {
    conv.records.push({ event: true, ts: Date.now(), text });
    remember(key);
  }
}

export const warning = (text, key) => notice(text, { kind: 'warning', key, alert: true });

/** Sends the open conversation's message (or the admin's command). */
export async function send(text) {
  const key = S.open;
  const m = key === 'all' ? await S.chat.sendAll(text) : group(key) ? await S.chat.sendGroup(key, text) : await S.chat.sendDirect(key, text);
  addMessage(m);
  return m;
}

async function retry(id) {
  const conv = S.conversations.get(S.open);
  const record = [...S.conversations.values()].flatMap((c) => c.records).find((r) => r.id === id);
  if (!record || !S.chat) return;
  if (record.file) return; // a file is attached again, not retried
  try {
    const to = record.to;
    const m = to.kind === 'all' ? await S.chat.sendAll(record.text) : to.kind === 'group' ? await S.chat.sendGroup(to.group, record.text) : await S.chat.sendDirect(to.keyId, record.text);
    addMessage(m);
  } catch (e) {
    if (conv) warning(e.message, conv.key);
  }
}

/** Opens conversation `key`: its messages, header, composer and warnings. */
export function openConversation(key) {
  const previous = S.open;
  S.open = key;
  const conv = conversation(key, convName(key));
  for (const c of S.conversations.values()) c.list.hidden = c.key !== key;
  conv.unread = 0;
  showHeader();
  if (previous !== key) {
    toBottom();
    $('text').value = '';
  }
  emit('list');
}

/** The open conversation's header, composer placeholder and banners, as things are now. */
export function showHeader() {
  const key = S.open;
  const conv = S.conversations.get(key);
  const g = group(key);
  if (g) return showGroupHeader(g, conv);
  $('group-open').hidden = true;
  $('conv-title').removeAttribute('dir');
  const m = member(key);
  const all = key === 'all';
  const name = all ? t('list.everyone') : m?.name ?? conv?.name ?? '';
  $('conv-title').textContent = name;
  $('conv-title').replaceChildren(all ? name : colour(el('span', { text: name }), key));
  $('conv-icon').replaceChildren(all ? el('span', { class: 'all-icon', text: '@' }) : identicon(key, 36));
  $('conv-sub').textContent = all ? t('conv.everyone_members', { n: S.members.length }) : m ? `${t(m.away ? 'list.away' : 'list.online')} \u00b7 ${shortId(key)}` : t('list.gone');
  $('conversation').setAttribute('aria-label', all ? t('conv.everyone_label') : t('conv.label', { name }));
  $('verify-open').hidden = all || !m || key === S.me?.keyId;
  const changed = !all && changedFrom(key);
  $('conv-warning').hidden = !changed;
  if (changed) $('conv-warning').textContent = `\u26a0 ${t('trust.key_changed', { name })}`;
  $('conv-away').hidden = !m?.away || key === S.me?.keyId;
  if (m?.away) $('conv-away').textContent = t('conv.away_banner', { name });
  const writable = all ? canWriteAll() : !!m;
  $('text').disabled = !writable && !S.me?.admin;
  $('text').placeholder = all
    ? t(canWriteAll() ? 'conv.placeholder_all' : 'conv.placeholder_no_all')
    : !m
      ? t('conv.placeholder_gone', { name })
      : t(m.away ? 'conv.placeholder_away' : 'conv.placeholder_to', { name });
}

/** The header of a group's conversation: its name, size, owner and whether we are still in it. */
function showGroupHeader(g, conv) {
  const name = groupName(g.id);
  if (conv) conv.name = name;
  $('conv-title').replaceChildren(name);
  // A group's name is anyone's text: laid out by its own direction.
  $('conv-title').dir = 'auto';
  $('conv-icon').replaceChildren(el('span', { class: 'all-icon group-icon', text: '#' }));
  const creator = member(g.creator)?.name ?? g.creator.slice(0, 12);
  $('conv-sub').textContent = [t('list.members', { n: g.members.length }), g.topic].filter(Boolean).join(' · ') || t('group.created_by', { name: creator });
  $('conversation').setAttribute('aria-label', t('conv.group_label', { name }));
  $('verify-open').hidden = true;
  $('group-open').hidden = false;
  $('conv-warning').hidden = !g.out;
  if (g.out) $('conv-warning').textContent = `⚠ ${t(`group.out_${g.out}`)}`;
  $('conv-away').hidden = true;
  $('text').disabled = !!g.out;
  $('text').placeholder = g.out ? t(`group.out_${g.out}`) : t('conv.placeholder_group', { name });
}

/** The conversation became visible again (or the page did): nothing in it is unread. */
export function seenOpen() {
  const conv = S.conversations.get(S.open);
  if (conv && watching(S.open) && conv.unread) {
    conv.unread = 0;
    emit('list');
  }
}

// ------------------------------------------------------------ history and export

const FLUSH_AFTER = 300; // ms: changes to the history are written together, soon

let flushTimer = null;
function remember(key) {
  if (!keeps()) return;
  dirty.add(key);
  flushTimer ||= setTimeout(() => {
    flushTimer = null;
    flushHistory();
  }, FLUSH_AFTER);
}

/** Writes the conversations changed since last time (before the state that saw them is acked). */
export async function flushHistory() {
  const keys = [...dirty];
  dirty.clear();
  for (const key of keys) {
    const conv = S.conversations.get(key);
    if (!conv) continue;
    const records = conv.records.map(({ history, ...r }) => r);
    await store.saveHistory(key, records).catch((e) => {
      console.warn('dyspatcher: history not kept, trying again:', e);
      remember(key);
    });
  }
}

/** Shows what this device kept, marked as history. */
export function showHistory(histories) {
  for (const [key, records] of histories) {
    const named = records.find((r) => !r.event);
    const conv = conversation(key, key === 'all' ? t('list.everyone') : named ? nameOf(named) : key);
    if (conv.records.length) continue;
    for (const r of records) {
      if (r.event) {
        conv.list.append(el('li', { class: 'notice info history', text: r.text }));
        conv.records.push(r);
      } else addMessage({ ...r, history: true, state: r.state === 'sending' || r.state === 'unconfirmed' ? 'unconfirmed' : r.state });
    }
  }
  emit('list');
}

function exportText(keys) {
  const out = exportHeader(S.identity.keyId, keys.length === 1 ? S.conversations.get(keys[0])?.name : '');
  for (const key of keys) {
    const conv = S.conversations.get(key);
    if (!conv) continue;
    if (keys.length > 1) out.push(t('export.conversation', { name: conv.name }));
    out.push(...conv.records.map(exportLine));
    if (keys.length > 1) out.push('');
  }
  return `${out.join('\n')}\n`;
}

export function exportOpen() {
  const what = S.open === 'all' ? 'everyone' : group(S.open) ? `group-${S.open.slice(0, 8)}` : S.conversations.get(S.open)?.name;
  download(exportFilename(new Date(), what), exportText([S.open]));
}

export function exportAll() {
  download(exportFilename(), exportText([...S.conversations.keys()]));
}

/** Removes every conversation (after "Forget this device"). */
export function clearConversations() {
  $('messages').replaceChildren();
  S.conversations.clear();
  tracked.clear();
  early.clear();
  dirty.clear();
  S.open = 'all';
}

export function initConversation() {
  scroller().addEventListener('scroll', () => {
    if (atBottom()) $('new-pill').hidden = true;
  }, { passive: true });
  $('new-pill').addEventListener('click', () => {
    toBottom();
    $('text').focus();
  });
  // Keep the newest message in view when the screen changes size (rotation, keyboard).
  let stuck = true;
  scroller().addEventListener('scroll', () => (stuck = atBottom()), { passive: true });
  new ResizeObserver(() => {
    if (stuck) scroller().scrollTop = scroller().scrollHeight;
  }).observe(scroller());
}

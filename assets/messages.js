// dyspatcher web client: one message as the page shows it. Sender with identicon and colour
// (grouped under one header when the same sender writes again soon), trust marks, local time
// (the full date on a tap), links, @mentions, long texts folded, and on our own messages the
// delivery state: sending → sent → held (away) → delivered, or not delivered with a retry.
import { dateText, fullTimeText, t, timeText } from './i18n/i18n.js';
import { colour, identicon } from './identicon.js';
import { group, S } from './state.js';
import { changedFrom, isVerified } from './trust.js';
import { el, isoTime, richText } from './ui.js';

const GROUP_WITHIN = 5 * 60_000; // a message this soon after the last one from its sender joins its group
const FOLD_LINES = 12; // longer messages are folded, with "show more"
const LINE_CHARS = 40; // a rough line on a phone, to count lines of long paragraphs

/** How far a message of ours got; a state never goes back. */
export const RANK = { sending: 0, unconfirmed: 1, sent: 2, held: 3, delivered: 4, refused: 5 };

const sameDay = (a, b) => new Date(a).toDateString() === new Date(b).toDateString();

/** "Today", "Yesterday" or the date, for a separator. */
function dayLabel(ts) {
  const now = Date.now();
  if (sameDay(ts, now)) return t('conv.today');
  if (sameDay(ts, now - 86_400_000)) return t('conv.yesterday');
  return dateText(new Date(ts));
}

const lines = (text) => text.split('\n').reduce((n, l) => n + Math.max(1, Math.ceil(l.length / LINE_CHARS)), 0);

/** The separator to put before `m` in a conversation whose last record is `prev`, or null. */
export function daySeparator(prev, m) {
  if (prev && sameDay(prev.ts, m.ts)) return null;
  return el('li', { class: 'day', dataset: { day: new Date(m.ts).toDateString() } }, el('span', { text: dayLabel(m.ts) }));
}

/** Where a message went, as written: @all, #group or a name. */
const destText = (m) => (m.to.kind === 'all' ? '@all' : m.to.kind === 'group' ? `#${group(m.to.group)?.name || m.to.name || m.to.group.slice(0, 8)}` : m.to.name);

/** The list item of message `m`; `prev` is the record before it in its conversation. */
export function messageItem(m, prev, { onRetry } = {}) {
  const kind = m.to.kind === 'all' || m.to.kind === 'group' ? m.to.kind : 'direct';
  const toMe = kind === 'direct' && m.to.keyId === S.me?.keyId && !m.own;
  const grouped = prev && !prev.event && prev.from.keyId === m.from.keyId && m.ts - prev.ts < GROUP_WITHIN && sameDay(prev.ts, m.ts);
  const changed = !m.own && changedFrom(m.from.keyId);
  const verified = !m.own && isVerified(m.from.keyId);
  const mention = !m.own && S.me && new RegExp(`@${S.me.name}\\b`).test(m.text);
  const classes = ['msg', kind, m.own ? 'own' : 'in', m.from.admin && 'from-admin', toMe && 'to-me', grouped && 'cont', changed && 'changed', mention && 'mention', m.history && 'history'];
  const when = new Date(m.ts);
  const time = el('button', { type: 'button', class: 'time', title: t('msg.full_time', { time: fullTimeText(when) }) }, el('time', { datetime: when.toISOString(), text: timeText(when) }));
  time.addEventListener('click', () => {
    const full = time.classList.toggle('full');
    time.firstChild.textContent = full ? fullTimeText(when) : timeText(when);
  });
  const from = colour(el('span', { class: 'from', text: m.from.name }), m.from.keyId);
  const meta = el(
    'div',
    { class: 'meta' },
    el('span', { class: 'avatar' }, identicon(m.from.keyId, 24)),
    from,
    m.from.admin ? el('span', { class: 'badge admin', text: t('chat.admin') }) : null,
    verified ? el('span', { class: 'badge verified', title: t('msg.contact_verified'), text: `\u2713 ${t('trust.verified_mark')}` }) : null,
    el('span', { class: 'sr-only', text: ` ${t('conv.to')} ` }),
    el('span', { class: 'dest sr-only', text: destText(m) }),
    m.via ? el('span', { class: 'via', text: t('conv.via', { via: m.via }) }) : null,
    time,
    m.own ? el('span', { class: 'state sending', text: t('msg.sending'), title: t('msg.sending_title') }) : null,
  );
  const text = el('p', { class: 'text', dir: 'auto' }, ...richText(m.text, S.me?.name));
  const li = el('li', { class: classes.filter(Boolean).join(' '), dataset: { id: m.id, from: m.from.keyId } }, meta);
  if (changed) li.append(el('p', { class: 'changed-note', text: `\u26a0 ${t('trust.key_changed', { name: m.from.name })}` }));
  li.append(text);
  if (lines(m.text) > FOLD_LINES) {
    text.classList.add('folded');
    const more = el('button', { type: 'button', class: 'link more', 'aria-expanded': 'false', text: t('conv.show_more') });
    more.addEventListener('click', () => {
      const open = text.classList.toggle('folded') === false;
      more.textContent = t(open ? 'conv.show_less' : 'conv.show_more');
      more.setAttribute('aria-expanded', String(open));
    });
    li.append(more);
  }
  if (m.own) {
    li.dataset.state = 'sending';
    if (m.state && m.state !== 'sending') mark(li, m.state, m.detail ?? '', onRetry);
  }
  return li;
}

const STATE_KEYS = {
  unconfirmed: 'msg.unconfirmed',
  sent: 'msg.sent',
  held: 'msg.held',
  delivered: 'msg.delivered',
  refused: 'msg.refused',
};

/** Shows `state` on our message `li`; a refused one gets a Retry button. */
export function mark(li, state, detail, onRetry) {
  const span = li.querySelector('.state');
  const key = STATE_KEYS[state];
  if (!span || !key) return;
  const title = t(`${key}_title`);
  li.dataset.state = state;
  span.className = `state ${state}`;
  span.replaceChildren();
  if (state === 'held') span.append(el('span', { class: 'icon clock', 'aria-hidden': 'true' }));
  span.append(t(key) + (detail ? `: ${detail}` : ''));
  span.title = detail || title;
  span.setAttribute('aria-label', `${title}${detail ? `: ${detail}` : ''}`);
  li.classList.toggle('refused', state === 'refused' || state === 'unconfirmed');
  if (state === 'refused' && onRetry && !li.querySelector('.retry')) {
    const retry = el('button', { type: 'button', class: 'retry', text: t('conv.retry') });
    retry.addEventListener('click', () => {
      retry.remove();
      onRetry(li.dataset.id);
    });
    li.append(retry);
  }
}

/** One line per message or event: time, sender → destination, text (newlines written as \n). */
export function exportLine(m) {
  if (m.event) return `${isoTime(new Date(m.ts))} * ${m.text}`;
  const body = m.file ? t('file.export', { name: m.file.name, size: m.file.size }) : m.text;
  const text = body.replace(/\\/g, '\\\\').replace(/\r?\n/g, '\\n');
  const via = m.via ? ` (via ${m.via})` : '';
  const dest = destText(m);
  return `${isoTime(new Date(m.ts))} ${m.from.name}${via} \u2192 ${dest}: ${text}`;
}

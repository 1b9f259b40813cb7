// dyspatcher web client: rendering. Every untrusted string goes through textContent.

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

const UNCONFIRMED_AFTER = 10_000;
const MAX_TRACKED = 500; // own messages whose delivery state is still followed

/** How far a message of ours got; a state never goes back. */
const RANK = { sending: 0, unconfirmed: 1, sent: 2, held: 3, delivered: 4, refused: 5 };
const STATES = {
  unconfirmed: { text: 'not confirmed', title: 'Not confirmed by the server' },
  sent: { text: '\u2713 sent', title: 'Sent: the server accepted and routed it' },
  held: { text: 'waiting: recipient away', title: 'Waiting: the recipient is away; the server keeps it for them' },
  delivered: { text: '\u2713\u2713 delivered', title: 'Delivered to the recipient\u2019s device' },
  refused: { text: 'not delivered', title: 'Not delivered' },
};

const pad = (n) => String(n).padStart(2, '0');
export const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;
export const fullTime = (d) =>
  `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(d)}:${pad(d.getSeconds())}`;

/** Saves `text` as a file through the browser's download. */
export function download(filename, text, type = 'text/plain') {
  const url = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
  const a = el('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function exportFilename(now = new Date()) {
  const stamp = `${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}`;
  return `dyspatcher-${stamp}.txt`;
}

const destination = (m) => (m.to.kind === 'all' ? '@all' : m.to.name);

/** One line per message: time, sender → destination, text (newlines written as \n). */
export function exportLine(m) {
  const text = m.text.replace(/\\/g, '\\\\').replace(/\r?\n/g, '\\n');
  const via = m.via ? ` (via ${m.via})` : '';
  return `${fullTime(new Date(m.ts))} ${m.from.name}${via} \u2192 ${destination(m)}: ${text}`;
}

// ---------------------------------------------------------------- conversation

export class Conversation {
  constructor(list, scroller) {
    this.list = list;
    this.scroller = scroller;
    this.records = []; // shown messages, for the export
    this.items = new Map(); // id -> li of own messages, for their status
    this.early = new Map(); // id -> [state, detail] that came before the message was shown
    // Keep the newest message in view when the screen changes size (rotation, keyboard).
    this.stuck = true;
    scroller.addEventListener('scroll', () => (this.stuck = this.atBottom()), { passive: true });
    new ResizeObserver(() => {
      if (this.stuck) this.scroller.scrollTop = this.scroller.scrollHeight;
    }).observe(scroller);
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  append(node, force = false) {
    const stick = force || this.atBottom();
    this.list.append(node);
    if (stick) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
      this.stuck = true;
    }
  }

  /** Shows a verified message, or one written on this page (`local`) with its delivery status. */
  message(m, me) {
    const kind = m.to.kind === 'all' ? 'all' : 'direct';
    const toMe = kind === 'direct' && m.to.keyId === me.keyId && !m.own;
    const classes = ['msg', kind, m.own ? 'own' : 'in', m.from.admin ? 'from-admin' : '', toMe ? 'to-me' : '']
      .filter(Boolean)
      .join(' ');
    const when = new Date(m.ts);
    const meta = el(
      'div',
      { class: 'meta' },
      el('span', { class: 'from', text: m.from.name }),
      m.from.admin ? el('span', { class: 'badge admin', text: 'admin' }) : null,
      el('span', { class: 'arrow', text: '\u2192', 'aria-label': 'to' }),
      el('span', { class: kind === 'all' ? 'dest all-dest' : 'dest', text: destination(m) }),
      m.via ? el('span', { class: 'via', text: `via ${m.via}` }) : null,
      el('time', { datetime: when.toISOString(), title: fullTime(when), text: clock(when) }),
      m.local
        ? el('span', { class: 'state sending', text: 'sending\u2026', title: 'Sending to the server' })
        : el('span', { class: 'state verified', title: 'Signature verified with the sender\u2019s key', text: '\u2713 verified' }),
    );
    const li = el(
      'li',
      { class: classes, dataset: { id: m.id } },
      meta,
      el('p', { class: 'text', text: m.text }),
    );
    this.records.push(m);
    this.append(li, m.local);
    if (m.local) {
      li.dataset.state = 'sending';
      this.items.set(m.id, li);
      while (this.items.size > MAX_TRACKED) this.items.delete(this.items.keys().next().value);
      const early = this.early.get(m.id);
      this.early.delete(m.id);
      if (early) this.status(m.id, ...early);
      // The server answers every message; silence means it may be lost (an ack may still come).
      setTimeout(() => {
        if (li.dataset.state === 'sending') this.mark(li, 'unconfirmed', 'no answer from the server yet');
      }, UNCONFIRMED_AFTER);
    }
    return li;
  }

  /**
   * Updates the status of one of our messages: 'sent', 'held', 'delivered' or 'refused'. A state
   * never goes back (a late 'sent' after 'delivered' changes nothing).
   */
  status(id, state, detail = '') {
    const li = this.items.get(id);
    if (!li) {
      // An answer may overtake the showing of the message it is about: keep it for a moment.
      const early = this.early.get(id);
      if (!early || RANK[state] > RANK[early[0]]) this.early.set(id, [state, detail]);
      setTimeout(() => this.early.delete(id), 5000);
      return false;
    }
    if (RANK[state] <= RANK[li.dataset.state]) return true;
    this.mark(li, state, detail);
    // Only direct messages learn more after 'sent'.
    if (state === 'delivered' || state === 'refused' || (state === 'sent' && !li.classList.contains('direct'))) this.items.delete(id);
    return true;
  }

  mark(li, state, detail) {
    const span = li.querySelector('.state');
    const { text, title } = STATES[state];
    li.dataset.state = state;
    span.className = `state ${state}`;
    span.replaceChildren();
    if (state === 'held') span.append(el('span', { class: 'icon clock', 'aria-hidden': 'true' }));
    span.append(text + (detail ? `: ${detail}` : ''));
    span.title = detail || title;
    span.setAttribute('aria-label', `${title}${detail ? `: ${detail}` : ''}`);
    li.classList.toggle('refused', state === 'refused' || state === 'unconfirmed');
  }

  /** Removes every message and notice (after "Forget this device"). */
  clear() {
    this.list.replaceChildren();
    this.records = [];
    this.items.clear();
    this.early.clear();
  }

  notice(text, kind = 'info') {
    this.append(el('li', { class: `notice ${kind}`, text }));
  }

  warning(text) {
    this.append(el('li', { class: 'notice warning', role: 'alert', text: `\u26a0 ${text}` }));
  }

  exportText() {
    return this.records.map(exportLine).join('\n') + (this.records.length ? '\n' : '');
  }
}

// ---------------------------------------------------------------- members

/**
 * Renders the member list: @all first (unless hidden), then members by name, each a button
 * that picks the destination.
 */
export function renderMembers(ul, { members, me, showAll, selected, onPick }) {
  const items = [];
  if (showAll) {
    items.push(
      memberButton({ key: 'all', selected: selected === 'all', onPick, label: '@all', detail: 'everyone here', classes: 'all' }),
    );
  }
  for (const m of members) {
    const self = m.keyId === me.keyId;
    // Only the admin can write to its own key: it reaches the admin's other endpoint.
    const pickable = !self || me.admin;
    items.push(
      memberButton({
        key: m.keyId,
        selected: selected === m.keyId,
        onPick: pickable ? onPick : null,
        label: m.name,
        detail: shortId(m.keyId),
        admin: m.admin,
        self,
        away: !self && m.away,
      }),
    );
  }
  ul.replaceChildren(...items);
}

function memberButton({ key, selected, onPick, label, detail, admin, self, away = false, classes = '' }) {
  const person = key !== 'all';
  const btn = el(
    'button',
    {
      type: 'button',
      class: ['member', classes, admin && 'admin', self && 'self', person && (away ? 'away' : 'online')].filter(Boolean).join(' '),
      'aria-pressed': selected ? 'true' : 'false',
      disabled: !onPick,
      title: !person ? 'Write to everyone' : away ? `Away: messages are kept for ${label} \u00b7 Key ID ${key}` : `Key ID ${key}`,
      dataset: { key, presence: person ? (away ? 'away' : 'online') : undefined },
    },
    el(
      'span',
      { class: 'member-name' },
      person ? el('span', { class: 'presence', 'aria-hidden': 'true' }) : null,
      el('span', { class: 'name', text: label }),
      person ? el('span', { class: 'sr-only', text: away ? ', away' : ', online' }) : null,
      admin ? el('span', { class: 'badge admin', text: 'admin' }) : null,
      self ? el('span', { class: 'badge you', text: 'you' }) : null,
    ),
    el(
      'span',
      { class: 'member-detail' },
      away ? el('span', { class: 'away-label', text: 'away' }) : null,
      el(person ? 'code' : 'span', { class: person ? 'kid' : 'detail', text: detail }),
    ),
  );
  if (onPick) btn.addEventListener('click', () => onPick(key));
  return el('li', {}, btn);
}

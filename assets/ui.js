// dyspatcher web client: rendering. Every untrusted string goes through textContent.

export const $ = (id) => document.getElementById(id);

/** Creates an element: el('li', {class: 'x', text: 'y', title: 'z'}, ...children). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

export const shortId = (keyId) => keyId.slice(0, 12);

const UNCONFIRMED_AFTER = 10_000;

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
        ? el('span', { class: 'state sending', text: 'sending\u2026' })
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
      this.items.set(m.id, li);
      const early = this.early.get(m.id);
      if (early) this.status(m.id, ...early);
      // The server answers every message; silence means it may be lost (an ack may still come).
      setTimeout(() => {
        if (li.querySelector('.state.sending')) this.mark(li, 'unconfirmed', 'no answer from the server');
      }, UNCONFIRMED_AFTER);
    }
    return li;
  }

  /** Updates the status of one of our messages: 'sent' or 'refused'. */
  status(id, state, detail = '') {
    const li = this.items.get(id);
    if (!li) {
      // An answer may overtake the showing of the message it is about: keep it for a moment.
      this.early.set(id, [state, detail]);
      setTimeout(() => this.early.delete(id), 5000);
      return false;
    }
    this.early.delete(id);
    this.items.delete(id);
    this.mark(li, state, detail);
    return true;
  }

  mark(li, state, detail) {
    const span = li.querySelector('.state');
    span.className = `state ${state}`;
    span.textContent = { sent: '\u2713 sent', refused: 'not delivered', unconfirmed: 'not confirmed' }[state] + (detail ? `: ${detail}` : '');
    span.title = state === 'sent' ? 'The server accepted and routed it' : detail;
    li.classList.toggle('refused', state !== 'sent');
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
      }),
    );
  }
  ul.replaceChildren(...items);
}

function memberButton({ key, selected, onPick, label, detail, admin, self, classes = '' }) {
  const btn = el(
    'button',
    {
      type: 'button',
      class: ['member', classes, admin && 'admin', self && 'self'].filter(Boolean).join(' '),
      'aria-pressed': selected ? 'true' : 'false',
      disabled: !onPick,
      title: key === 'all' ? 'Write to everyone' : `Key ID ${key}`,
      dataset: { key },
    },
    el(
      'span',
      { class: 'member-name' },
      el('span', { class: 'name', text: label }),
      admin ? el('span', { class: 'badge admin', text: 'admin' }) : null,
      self ? el('span', { class: 'badge you', text: 'you' }) : null,
    ),
    el(key === 'all' ? 'span' : 'code', { class: key === 'all' ? 'detail' : 'kid', text: detail }),
  );
  if (onPick) btn.addEventListener('click', () => onPick(key));
  return el('li', {}, btn);
}

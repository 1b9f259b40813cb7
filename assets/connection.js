// dyspatcher web client: the connection. A Connection keeps one WebSocket at a time, reconnects
// with backoff (and waits for the network while the browser is offline), stops for good on the
// close codes that say so, runs received frames one at a time in order, and keeps what it sent
// until the server confirms it, to send again after a resume. The end-to-end session
// (session.js) builds on it; it knows nothing of the DOM.
import { t } from './i18n/i18n.js';
import { backoffDelay, closeMeaning } from './meaning.js';

const OUTBOX_MAX_BYTES = 1024 * 1024; // sent frames kept until the server confirms them
const OFFLINE_RETRY = 30_000; // while the browser says it is offline, try this seldom
const LEAVE_WAIT = 3000; // how long a leave waits for the server's close
export const OPEN = 1; // WebSocket.OPEN, named here: Node (the unit tests) may have no WebSocket
const CLOSED = 3; // WebSocket.CLOSED

export class Connection {
  /** `hooks.state({state, text, retryIn, kind, until, offline, refusal})` hears every change. */
  constructor({ url, hooks }) {
    this.url = url;
    this.hooks = hooks;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.queue = Promise.resolve();
    this.outbox = []; // [{id, type, text}] sent, not yet confirmed by an ack or error
    this.outboxBytes = 0;
    this.resent = new Set(); // ids sent again after a resume
  }

  /** Forgets what belongs to one connection (the session adds its own). */
  connReset() {
    this.refusal = null;
    this.ending = null; // the notice before a close: kicked, banned, replaced
    this.joined = false;
  }

  /** One frame received, in its turn (the session reads it). */
  receive() {}

  /** A frame taken at once, before its turn; true when it was. */
  receiveNow() {
    return false;
  }

  /** The membership ended (left or disposed): nothing more is kept. */
  left() {}

  /** A kick or ban ended the membership: the next join starts afresh. */
  forgetMembership() {}

  start() {
    this.stopped = false;
    this.open();
  }

  open() {
    clearTimeout(this.timer);
    this.timer = null;
    this.connReset();
    this.state('connecting', t(this.attempt ? 'conn.connecting_again' : 'conn.connecting'));
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.closed(null, 1006);
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      // Answers that frames in the queue may be waiting for are taken at once (session.js).
      if (this.receiveNow(ev.data)) return;
      // Checked again when its turn comes: a newer connection may have replaced this one meanwhile.
      this.enqueue(() => (this.ws === ws ? this.receive(ev.data) : undefined));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.enqueue(() => this.closed(ws, ev.code));
    };
  }

  /** Disconnects without leaving (the membership stays, away, for the grace period). */
  stop(text = t('conn.disconnected')) {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    this.connReset();
    if (ws) ws.close(1000);
    this.state('closed', text, { kind: 'stopped' });
  }

  /** Ends the membership: everyone is told and rotates; resolves once the server closed (or 3 s). */
  async leave() {
    const ws = this.ws;
    const joined = this.joined;
    this.stopped = true;
    this.left();
    clearTimeout(this.timer);
    this.timer = null;
    if (ws && joined && ws.readyState === OPEN) {
      const gone = new Promise((res) => {
        ws.addEventListener('close', res, { once: true });
        setTimeout(res, LEAVE_WAIT);
      });
      ws.send(JSON.stringify({ type: 'leave' }));
      await gone;
    }
    this.ws = null;
    this.connReset();
    if (ws && ws.readyState !== CLOSED) ws.close(1000);
    const text = t(joined ? 'conn.left' : 'conn.left_offline');
    this.state('closed', text, { kind: 'left' });
    return joined;
  }

  /** Stops for good: no timers, no connection. */
  dispose() {
    this.stopped = true;
    this.left();
    clearTimeout(this.timer);
    this.connReset();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
  }

  /** Connects again after a stop or a close that does not retry by itself (kick over, retry). */
  retry() {
    this.attempt = 0;
    this.start();
  }

  /** Skips the wait before the next attempt. */
  reconnectNow() {
    if (this.stopped || !this.timer) return;
    this.open();
  }

  closed(ws, code) {
    if (ws && this.ws !== ws) return;
    this.ws = null;
    const { refusal, ending } = this;
    this.connReset();
    // A refused join ends the connection whatever close code arrives (or fails to).
    const meaning = closeMeaning(refusal ? 4005 : ending?.code === 'replaced' ? 4006 : code, refusal, ending);
    if (this.stopped) return;
    if (!meaning.retry) {
      this.stopped = true;
      if (meaning.kind === 'kicked' || meaning.kind === 'banned' || meaning.kind === 'ended') this.forgetMembership();
      this.state('closed', meaning.text, { code, refusal, kind: meaning.kind, until: meaning.until });
      return;
    }
    if (globalThis.navigator?.onLine === false) {
      // No attempt while the device is offline; the page's `online` event calls reconnectNow().
      this.timer = setTimeout(() => this.open(), OFFLINE_RETRY);
      this.state('reconnecting', `${meaning.text} ${t('conn.offline')}`, { code, retryIn: OFFLINE_RETRY, offline: true });
      return;
    }
    const delay = backoffDelay(this.attempt++);
    this.timer = setTimeout(() => this.open(), delay);
    this.state('reconnecting', meaning.text, { code, retryIn: delay });
  }

  state(state, text, extra = {}) {
    this.hooks.state?.({ state, text, ...extra });
  }

  /** Runs `task` after everything queued before it; resolves or rejects with its result. */
  enqueue(task) {
    const result = this.queue.then(task);
    this.queue = result.catch((e) => console.error('dyspatcher:', e));
    return result;
  }

  /**
   * Sends a connection-level message (join, ack); false when the connection is closing: the next
   * connection joins and acknowledges afresh.
   */
  send(msg) {
    if (!this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Sends a message the server confirms later; it is kept until then and sent again after a resume. */
  transmit(msg) {
    const text = JSON.stringify(msg);
    this.outbox.push({ id: msg.id ?? null, type: msg.type, text });
    this.outboxBytes += text.length;
    while (this.outboxBytes > OUTBOX_MAX_BYTES && this.outbox.length > 1) {
      this.outboxBytes -= this.outbox.shift().text.length;
    }
    if (this.ws && this.ws.readyState === OPEN) this.ws.send(text);
  }

  /** The server answered `id`: it handled everything sent before it on the connection too. */
  confirm(id) {
    const at = this.outbox.findIndex((e) => e.id === id);
    if (at < 0) return;
    for (const e of this.outbox.splice(0, at + 1)) this.outboxBytes -= e.text.length;
  }

  /** After a welcome: what the server may not have got is sent again, with the same ids. */
  resend(resumed) {
    let entries = this.outbox;
    if (!resumed) {
      // A new membership: everyone forgot our old sender key, so @all under it cannot be opened.
      for (const e of entries) {
        if (e.type === 'all') {
          this.hooks.refused?.({ id: e.id, code: 'lost', message: t('conn.lost') });
        }
      }
      entries = entries.filter((e) => e.type === 'direct');
      this.outbox = entries;
      this.outboxBytes = entries.reduce((a, e) => a + e.text.length, 0);
    }
    if (!this.ws || this.ws.readyState !== OPEN) return;
    for (const e of entries) {
      if (e.id) this.resent.add(e.id);
      this.ws.send(e.text);
    }
  }
}

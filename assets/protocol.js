// dyspatcher web client: the connection and the end-to-end protocol (docs/PROTOCOL.md, v1).
// One Chat keeps the WebSocket alive (reconnecting with backoff), joins with proof of
// possession, seals and opens direct and @all messages, and manages sender keys.
// It knows nothing of the DOM: it reports to the `hooks` it is given.
import * as c from './crypto.js';

const MAX_SKIPPED = 1000; // kept message keys per receiving chain
const MAX_JUMP = 2000; // largest forward jump in a receiving chain
const MAX_PENDING = 64; // @all messages waiting for their sender key
const PENDING_TTL = 30_000; // how long they wait
const RECENT_TTL = 10_000; // how long a sender keeps states to answer key requests
const SKEW = 5 * 60_000; // accepted distance of `ts` from the corrected clock
const SEEN_WINDOW = 10 * 60_000; // how long message ids are remembered
const MAX_SENDER_KEY_ENTRIES = 256;
const MAX_CHAINS_PER_SENDER = 3; // a sender's older chains still open messages in flight
const BACKOFF_BASE = 1000;
const BACKOFF_MAX = 30_000;

/** Join refusals worth retrying: the server may have room or time later. */
const RETRYABLE_REFUSALS = new Set(['server_full', 'join_timeout']);

/** What a member leaving means, by `left.reason`. */
export const LEFT_REASONS = {
  left: 'left',
  kicked: 'was kicked by the admin',
  removed: 'was removed from the allow list',
  timeout: 'timed out',
  too_slow: 'was disconnected (connection too slow)',
};

/** What a close code means, and whether to reconnect after it. */
export function closeMeaning(code, refusal) {
  switch (code) {
    case 1000:
      return { text: 'The server closed the connection.', retry: true };
    case 1001:
      return { text: 'The server is shutting down.', retry: true };
    case 1009:
      return { text: 'A message was too large for the server.', retry: true };
    case 4000:
      return { text: 'You were kicked by the admin.', retry: false };
    case 4001:
      return { text: 'You were removed from the allow list.', retry: false };
    case 4002:
      return { text: 'The connection was too slow and the server dropped it.', retry: true };
    case 4003:
      return { text: 'The connection was idle for too long.', retry: true };
    case 4005:
      return {
        text: refusal ? `The server refused to let you in: ${refusal.message}` : 'The server refused to let you in.',
        retry: !!refusal && RETRYABLE_REFUSALS.has(refusal.code),
      };
    default:
      return { text: 'The connection was lost.', retry: true };
  }
}

export function backoffDelay(attempt) {
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempt);
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export function chatUrl(loc = globalThis.location) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

function freshSenderKey() {
  return { skid: c.randomId(), ck: c.randomBytes(32), n: 0, given: new Set(), recent: [], signed: null };
}

export class Chat {
  /**
   * hooks: state({state, text, retryIn}), welcome(info), members(list), message(m),
   * rejected({fromName, reason}), joined(member, again), left({name, keyId, reason}),
   * notice({code, text}), ack(id), refused({id, code, message}), serverError({code, message}).
   */
  constructor({ identity, name, url, hooks }) {
    this.identity = identity;
    this.name = name;
    this.url = url;
    this.hooks = hooks;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.seen = new Map(); // id -> corrected time seen
    this.queue = Promise.resolve();
    this.reset();
    this.sweeper = setInterval(() => this.enqueue(() => this.expirePending()), 5000);
  }

  /** Forgets everything that belongs to one connection. */
  reset() {
    this.me = null;
    this.options = null;
    this.limits = null;
    this.offset = 0;
    this.peers = new Map(); // key_id -> {member, verifyKey, wrapKey}
    this.otherEndpoint = false;
    this.own = freshSenderKey();
    this.chains = new Map(); // "sender skid" -> {ck, n, skipped: Map}
    this.pending = [];
    this.requested = new Set();
    this.refusal = null;
    this.joined = false;
  }

  now() {
    return Date.now() + this.offset;
  }

  // ------------------------------------------------------------ connection life

  start() {
    this.stopped = false;
    this.open();
  }

  open() {
    clearTimeout(this.timer);
    this.timer = null;
    this.reset();
    this.state('connecting', this.attempt ? 'Connecting again\u2026' : 'Connecting\u2026');
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
      this.enqueue(() => this.receive(ev.data));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.enqueue(() => this.closed(ws, ev.code));
    };
  }

  /** Leaves for good (the user's choice). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.sweeper);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    this.state('closed', 'You left the chat.');
  }

  /** Skips the wait before the next attempt. */
  reconnectNow() {
    if (this.stopped || !this.timer) return;
    this.open();
  }

  closed(ws, code) {
    if (ws && this.ws !== ws) return;
    this.ws = null;
    // A refused join ends the connection whatever close code arrives (or fails to).
    const meaning = closeMeaning(this.refusal ? 4005 : code, this.refusal);
    if (this.stopped) return;
    if (!meaning.retry) {
      this.stopped = true;
      clearInterval(this.sweeper);
      this.state('closed', meaning.text, { code, refusal: this.refusal });
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

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error('Not connected.');
    this.ws.send(JSON.stringify(msg));
  }

  // ------------------------------------------------------------ incoming

  async receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'challenge':
        return this.onChallenge(msg);
      case 'welcome':
        return this.onWelcome(msg);
      case 'joined':
        return this.onJoined(msg.member);
      case 'left':
        return this.onLeft(msg);
      case 'direct':
        return this.onDirect(msg);
      case 'all':
        return this.onAll(msg);
      case 'sender_key':
        return this.onSenderKey(msg);
      case 'key_request':
        return this.onKeyRequest(msg);
      case 'ack':
        return this.hooks.ack?.(msg.id);
      case 'notice':
        return this.hooks.notice?.({ code: String(msg.code), text: String(msg.text ?? '') });
      case 'error':
        return this.onError(msg);
      default:
        return undefined;
    }
  }

  async onChallenge(msg) {
    if (msg.version !== 1) {
      this.refusal = { code: 'version', message: `the server speaks protocol version ${msg.version}, this page speaks 1.` };
      this.ws?.close(4005);
      return;
    }
    this.offset = Number(msg.time) - Date.now() || 0;
    const signature = await c.sign(this.identity, c.canonical.join(msg.nonce, this.name, this.identity.keyId));
    this.send({ type: 'join', name: this.name, public_key: this.identity.publicB64, signature });
  }

  async onWelcome(msg) {
    this.offset = Number(msg.time) - Date.now() || this.offset;
    this.me = { name: msg.you.name, keyId: msg.you.key_id, admin: !!msg.you.admin };
    this.options = msg.options || {};
    this.limits = msg.limits || {};
    this.peers.clear();
    for (const m of msg.members || []) await this.addPeer(m);
    this.otherEndpoint = this.me.admin && this.peers.has(this.identity.keyId);
    this.joined = true;
    this.attempt = 0;
    this.hooks.welcome?.({ me: this.me, options: this.options, limits: this.limits });
    this.hooks.members?.(this.memberList());
    this.state('connected', `Connected as ${this.me.name}.`);
  }

  async addPeer(member) {
    try {
      const peer = await c.importPeer(member.public_key);
      if (peer.keyId !== member.key_id) throw new Error('key ID does not match the public key');
      const entry = { name: String(member.name), keyId: member.key_id, admin: !!member.admin };
      this.peers.set(member.key_id, { member: entry, ...peer });
      return true;
    } catch {
      this.hooks.rejected?.({ fromName: String(member?.name), reason: 'the server announced an unusable public key for this member' });
      return false;
    }
  }

  async onJoined(member) {
    if (!member) return;
    const again = this.peers.has(member.key_id);
    // A known key joining again (the admin's web seat) must be given our sender key again.
    this.own.given.delete(member.key_id);
    if (member.key_id === this.identity.keyId) this.otherEndpoint = true;
    if (!(await this.addPeer(member))) return;
    this.hooks.joined?.(this.peers.get(member.key_id).member, again);
    this.hooks.members?.(this.memberList());
  }

  onLeft(msg) {
    if (msg.key_id === this.identity.keyId) this.otherEndpoint = false;
    else this.peers.delete(msg.key_id);
    for (const id of this.chains.keys()) if (id.startsWith(msg.key_id + ' ')) this.chains.delete(id);
    // Whoever left must not open what comes next.
    this.own = freshSenderKey();
    this.hooks.left?.({ name: String(msg.name), keyId: msg.key_id, reason: msg.reason });
    this.hooks.members?.(this.memberList());
  }

  onError(msg) {
    const err = { id: msg.id, code: String(msg.code), message: String(msg.message ?? msg.code) };
    if (!this.joined) this.refusal = err;
    else if (msg.id) this.hooks.refused?.(err);
    else this.hooks.serverError?.(err);
  }

  memberList() {
    return [...this.peers.values()].map((p) => p.member).sort((a, b) => a.name.localeCompare(b.name));
  }

  nameOf(keyId) {
    return this.peers.get(keyId)?.member.name ?? keyId.slice(0, 12);
  }

  sender(from) {
    const peer = this.peers.get(from?.key_id);
    if (!peer) throw new Error('the sender is not a known member');
    return peer;
  }

  /**
   * Checks the timestamp and the id, and remembers the id. Throws on a stale message; false for
   * an id already seen (a repeat, dropped without a word).
   */
  isFresh(id, ts) {
    const now = this.now();
    if (!Number.isSafeInteger(ts) || Math.abs(ts - now) > SKEW) {
      throw new Error('its time is too far from the server\u2019s clock (stale or replayed)');
    }
    for (const [old, t] of this.seen) {
      if (now - t <= SEEN_WINDOW) break;
      this.seen.delete(old);
    }
    if (this.seen.has(id)) return false;
    this.seen.set(id, now);
    return true;
  }

  opened(msg, to, text) {
    const from = this.sender(msg.from).member;
    return {
      id: msg.id,
      ts: msg.ts,
      from,
      to,
      text,
      via: msg.via ?? null,
      own: from.keyId === this.identity.keyId,
    };
  }

  reject(msg, reason) {
    this.hooks.rejected?.({ fromName: String(msg?.from?.name ?? 'someone'), reason });
  }

  async onDirect(msg) {
    try {
      const peer = this.sender(msg.from);
      const signed = c.canonical.direct(msg, msg.from.key_id);
      if (!(await c.verify(peer.verifyKey, signed, msg.signature))) throw new Error('its signature does not verify');
      if (msg.to !== this.identity.keyId && msg.from.key_id !== this.identity.keyId) {
        throw new Error('it is addressed to someone else');
      }
      if (!this.isFresh(msg.id, msg.ts)) return;
      const key = await c.unwrap(this.identity, msg.key).catch(() => {
        throw new Error('its key cannot be unwrapped with your private key');
      });
      const text = await c.open(key, msg.iv, msg.ciphertext).catch(() => {
        throw new Error('its content does not decrypt');
      });
      const to = { kind: 'direct', keyId: msg.to, name: this.nameOf(msg.to) };
      this.hooks.message?.(this.opened(msg, to, text));
    } catch (e) {
      this.reject(msg, e.message);
    }
  }

  async onAll(msg) {
    try {
      const peer = this.sender(msg.from);
      const signed = c.canonical.all(msg, msg.from.key_id);
      if (!(await c.verify(peer.verifyKey, signed, msg.signature))) throw new Error('its signature does not verify');
      if (!this.chains.has(`${msg.from.key_id} ${msg.skid}`)) return this.park(msg);
      if (!this.isFresh(msg.id, msg.ts)) return undefined;
      const text = await this.openAll(msg);
      this.hooks.message?.(this.opened(msg, { kind: 'all' }, text));
    } catch (e) {
      this.reject(msg, e.message);
    }
    return undefined;
  }

  async openAll(msg) {
    const chain = this.chains.get(`${msg.from.key_id} ${msg.skid}`);
    const n = msg.n;
    if (!Number.isInteger(n) || n < 0) throw new Error('its chain index is invalid');
    let mk;
    if (n < chain.n) {
      mk = chain.skipped.get(n);
      if (!mk) throw new Error('its message key was already used or is too old');
      chain.skipped.delete(n);
    } else {
      if (n - chain.n > MAX_JUMP) throw new Error('its chain index jumps too far ahead');
      while (chain.n < n) {
        const step = await c.chainStep(chain.ck);
        if (chain.skipped.size >= MAX_SKIPPED) chain.skipped.delete(chain.skipped.keys().next().value);
        chain.skipped.set(chain.n, step.mk);
        chain.ck = step.next;
        chain.n += 1;
      }
      const step = await c.chainStep(chain.ck);
      mk = step.mk;
      chain.ck = step.next;
      chain.n += 1;
    }
    return c.open(mk, msg.iv, msg.ciphertext).catch(() => {
      throw new Error('its content does not decrypt');
    });
  }

  park(msg) {
    this.expirePending();
    if (this.pending.length >= MAX_PENDING) {
      const dropped = this.pending.shift();
      this.reject(dropped.msg, 'too many messages were waiting for sender keys');
    }
    const chainId = `${msg.from.key_id} ${msg.skid}`;
    if (!this.requested.has(chainId)) {
      this.requested.add(chainId);
      this.send({ type: 'key_request', to: msg.from.key_id, skid: msg.skid, n: msg.n });
    }
    this.pending.push({ t: Date.now(), msg });
  }

  expirePending() {
    const now = Date.now();
    while (this.pending.length && now - this.pending[0].t > PENDING_TTL) {
      const { msg } = this.pending.shift();
      this.reject(msg, 'the sender\u2019s key never came, so the message cannot be opened');
    }
    // A later message under a chain whose key never came may ask again.
    const waiting = new Set(this.pending.map((p) => `${p.msg.from.key_id} ${p.msg.skid}`));
    for (const id of this.requested) if (!waiting.has(id)) this.requested.delete(id);
  }

  async onSenderKey(msg) {
    try {
      const peer = this.sender(msg.from);
      const signed = c.canonical.senderKey(msg, msg.from.key_id);
      if (!(await c.verify(peer.verifyKey, signed, msg.signature))) throw new Error('its signature does not verify');
      if (!Number.isInteger(msg.n) || msg.n < 0 || msg.n >= 2 ** 32) throw new Error('its chain index is invalid');
      const ck = await c.unwrap(this.identity, msg.wrapped).catch(() => {
        throw new Error('it cannot be unwrapped with your private key');
      });
      if ((await c.sha256hex(ck)) !== msg.commitment) throw new Error('the key does not match its commitment');
      const chainId = `${msg.from.key_id} ${msg.skid}`;
      // A chain already held is kept: it derives any later state itself, and replacing it
      // with an earlier one would bring back used message keys.
      if (!this.chains.has(chainId)) {
        this.chains.set(chainId, { ck, n: msg.n, skipped: new Map() });
        this.forgetOldChains(msg.from.key_id);
      }
      await this.releasePending(msg.from.key_id, msg.skid);
    } catch (e) {
      this.reject(msg, `a sender key was refused: ${e.message}`);
    }
  }

  /** Keeps the newest few chains of a sender: older ones were rotated away. */
  forgetOldChains(sender) {
    const ids = [...this.chains.keys()].filter((id) => id.startsWith(`${sender} `));
    for (const id of ids.slice(0, -MAX_CHAINS_PER_SENDER)) this.chains.delete(id);
  }

  async releasePending(sender, skid) {
    const ready = this.pending.filter((p) => p.msg.from.key_id === sender && p.msg.skid === skid);
    this.pending = this.pending.filter((p) => !ready.includes(p));
    this.requested.delete(`${sender} ${skid}`);
    for (const p of ready) await this.onAll(p.msg);
  }

  async onKeyRequest(msg) {
    const from = msg.from?.key_id;
    if (msg.skid !== this.own.skid || !this.peers.has(from)) return;
    const now = Date.now();
    const state = this.own.recent.find((r) => r.n === msg.n && now - r.t <= RECENT_TTL);
    if (state) await this.distribute([from], state.n, state.ck);
  }

  // ------------------------------------------------------------ outgoing

  checkText(text) {
    if (!text.trim()) throw new Error('The message is empty.');
    const max = this.limits?.max_text ?? 32768;
    const size = c.utf8(text).length;
    if (size > max) throw new Error(`The message is too long: ${size} bytes, at most ${max}.`);
  }

  /** Seals and sends a direct message; resolves to the shown record. */
  sendDirect(toKeyId, text) {
    return this.enqueue(() => this.sealDirect(toKeyId, text));
  }

  /** Seals and sends an @all message (sender keys first); resolves to the shown record. */
  sendAll(text) {
    return this.enqueue(() => this.sealAll(text));
  }

  async sealDirect(toKeyId, text) {
    this.checkText(text);
    if (!this.joined) throw new Error('Not connected.');
    const peer = this.peers.get(toKeyId);
    if (!peer) throw new Error('This member is no longer here.');
    const key = c.randomBytes(32);
    const { iv, ciphertext } = await c.seal(key, text);
    const keys = { [toKeyId]: await c.wrap(peer.wrapKey, key) };
    if (toKeyId !== this.identity.keyId) keys[this.identity.keyId] = await c.wrap(this.identity.wrapKey, key);
    const msg = { type: 'direct', id: c.randomId(), ts: this.now(), to: toKeyId, iv, ciphertext, keys };
    msg.signature = await c.sign(this.identity, c.canonical.direct(msg, this.identity.keyId));
    this.send(msg);
    this.seen.set(msg.id, this.now());
    return this.ownRecord(msg, { kind: 'direct', keyId: toKeyId, name: peer.member.name }, text);
  }

  async sealAll(text) {
    this.checkText(text);
    if (!this.joined) throw new Error('Not connected.');
    if (this.options.disable_all && !this.me.admin) throw new Error('@all is disabled on this server.');
    const own = this.own;
    const lacking = [...this.peers.keys()].filter(
      (k) => (k !== this.identity.keyId || this.otherEndpoint) && !own.given.has(k),
    );
    await this.distribute(lacking, own.n, own.ck);
    lacking.forEach((k) => own.given.add(k));
    const { mk, next } = await c.chainStep(own.ck);
    const { iv, ciphertext } = await c.seal(mk, text);
    const msg = { type: 'all', id: c.randomId(), ts: this.now(), skid: own.skid, n: own.n, iv, ciphertext };
    msg.signature = await c.sign(this.identity, c.canonical.all(msg, this.identity.keyId));
    this.send(msg);
    this.seen.set(msg.id, this.now());
    const t = Date.now();
    own.recent = own.recent.filter((r) => t - r.t <= RECENT_TTL).slice(-31);
    own.recent.push({ n: own.n, ck: own.ck, t });
    own.ck = next;
    own.n += 1;
    return this.ownRecord(msg, { kind: 'all' }, text);
  }

  /** Sends chain state (n, ck) of our sender key to `keyIds`, one signature for all. */
  async distribute(keyIds, n, ck) {
    if (!keyIds.length) return;
    const own = this.own;
    const commitment = await c.sha256hex(ck);
    if (!own.signed || own.signed.n !== n || own.signed.commitment !== commitment) {
      const text = c.canonical.senderKey({ skid: own.skid, n, commitment }, this.identity.keyId);
      own.signed = { n, commitment, signature: await c.sign(this.identity, text) };
    }
    for (let i = 0; i < keyIds.length; i += MAX_SENDER_KEY_ENTRIES) {
      const keys = {};
      for (const k of keyIds.slice(i, i + MAX_SENDER_KEY_ENTRIES)) {
        const peer = this.peers.get(k);
        if (peer) keys[k] = await c.wrap(peer.wrapKey, ck);
      }
      this.send({ type: 'sender_key', skid: own.skid, n, commitment, signature: own.signed.signature, keys });
    }
  }

  ownRecord(msg, to, text) {
    return {
      id: msg.id,
      ts: msg.ts,
      from: { name: this.me.name, keyId: this.identity.keyId, admin: this.me.admin },
      to,
      text,
      via: this.me.admin && this.otherEndpoint ? 'web' : null,
      own: true,
      local: true,
    };
  }
}

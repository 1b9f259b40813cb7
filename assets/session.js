// dyspatcher web client: the end-to-end session (docs/PROTOCOL.md, v2), on top of the connection
// (connection.js). It joins with proof of possession, resumes the membership, acknowledges
// sequenced frames, seals and opens direct and @all messages, and manages sender keys. Its state
// (sender keys, receiving chains, seen ids, last seq) outlives connections; `snapshot()` and
// `restore()` carry it across a reload. It knows nothing of the DOM nor of storage: it reports to
// the `hooks` it is given. The bounds on receiving chains come from the server's `welcome.limits`.
import * as c from './crypto.js';
import { Connection } from './connection.js';
import { t } from './i18n/i18n.js';

export { backoffDelay, chatUrl, closeMeaning, gapText, LEFT_REASONS, untilText } from './meaning.js';

export const VERSION = 2;
/** Until the welcome says otherwise (`limits`): kept message keys per receiving chain, ... */
export const DEFAULT_LIMITS = { max_skipped: 1000, max_jump: 2000, max_chains_per_sender: 4 };
const MAX_PENDING = 64; // @all messages waiting for their sender key
const PENDING_TTL = 30_000; // how long they wait
const RECENT_TTL = 10_000; // how long a sender keeps states to answer key requests
const SKEW = 5 * 60_000; // accepted distance of `ts` from the corrected clock
const SEEN_WINDOW = 10 * 60_000; // how long message ids are remembered
const MAX_SENDER_KEY_ENTRIES = 256;
const MAX_FORMER = 64; // members gone, kept to check frames sent before they went
const ACK_EVERY = 64; // frames between two acks
const ACK_BYTES = 128 * 1024; // or this many bytes of frames, whichever comes first
const ACK_DELAY = 1000; // at most this long before an ack while frames arrive
const SNAPSHOT_VERSION = 1;
/** Frames the server numbers (`seq`) and keeps until acknowledged. */
const SEQUENCED = new Set(['joined', 'left', 'presence', 'direct', 'all', 'sender_key', 'key_request', 'delivery', 'gap']);

function freshSenderKey() {
  return { skid: c.randomId(), ck: c.randomBytes(32), n: 0, given: new Set(), recent: [], signed: null };
}

const wireMember = (m) => ({ name: m.name, key_id: m.keyId, public_key: m.publicKey, admin: m.admin });

/** A positive whole number from the welcome's limits, or the default. */
const limit = (limits, name) => (Number.isSafeInteger(limits?.[name]) && limits[name] > 0 ? limits[name] : DEFAULT_LIMITS[name]);

export class Chat extends Connection {
  /**
   * hooks: state({state, text, retryIn, kind, until, offline}), welcome(info), members(list),
   * message(m), rejected({fromName, reason}), joined(member, again), left({name, keyId, reason}),
   * presence({name, keyId, state}), delivery({id, to, state}), gap({dropped, kinds}),
   * notice({code, text, until}), ack(id), refused({id, code, message}), serverError({code, message}).
   *
   * `state`: a `snapshot()` to continue from (a reload). `save(snapshot)`: keeps the state on the
   * device; when set, frames are acknowledged only once the state that saw them is saved, so a
   * reload never loses a frame the server has forgotten.
   */
  constructor({ identity, name, url, hooks, state = null, save = null }) {
    super({ url, hooks });
    this.identity = identity;
    this.name = name;
    this.save = save;
    // The session: it survives reconnects; only a welcome that did not resume resets it.
    this.me = null;
    this.options = null;
    this.limits = null;
    this.offset = 0;
    this.peers = new Map(); // key_id -> {member, verifyKey, wrapKey}
    this.former = new Map(); // members gone: their frames sent before may still arrive
    this.away = new Set(); // key_ids of away members
    this.otherEndpoint = false;
    this.own = freshSenderKey();
    this.chains = new Map(); // "sender skid" -> {ck, n, skipped: Map}
    this.seen = new Map(); // id -> corrected time seen
    this.pending = [];
    this.requested = new Set();
    this.lastSeq = 0;
    this.resumable = false; // a membership exists to resume
    this.restoredFromDevice = false;
    this.connReset();
    if (state) this.enqueue(() => this.restore(state));
    this.sweeper = setInterval(() => this.enqueue(() => this.expirePending()), 5000);
  }

  /** Forgets what belongs to one connection. */
  connReset() {
    super.connReset();
    this.unacked = 0;
    this.unackedBytes = 0;
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
  }

  left() {
    this.resumable = false;
    this.save = null;
  }

  dispose() {
    clearInterval(this.sweeper);
    super.dispose();
  }

  forgetMembership() {
    this.resumable = false;
  }

  /** Bound `name` of `welcome.limits` (or its default before a welcome). */
  limit(name) {
    return limit(this.limits, name);
  }

  now() {
    return Date.now() + this.offset;
  }

  /**
   * Takes the chat back from the tab or device that replaced this one: continues from `state`
   * (what that one saved, when the device remembers) with a fresh sender key of our own, since
   * the other endpoint may have used ours meanwhile.
   */
  takeBack(state = null) {
    this.enqueue(async () => {
      if (state) await this.restore(state);
      this.own = freshSenderKey();
      this.retry();
    });
  }



  // ------------------------------------------------------------ sequence numbers and acks

  /** Counts a sequenced frame handled; acks after 64 of them (or 128 KiB) or within a second. */
  async counted(bytes = 0) {
    this.unacked += 1;
    this.unackedBytes += bytes;
    if (this.unacked >= ACK_EVERY || this.unackedBytes >= ACK_BYTES) {
      await this.flushAck();
    } else if (!this.ackTimer) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = null;
        this.enqueue(() => this.flushAck());
      }, ACK_DELAY);
    }
  }

  async flushAck() {
    if (!this.unacked || !this.joined) return;
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    this.unacked = 0;
    this.unackedBytes = 0;
    const ws = this.ws;
    const seq = this.lastSeq;
    // The state that saw these frames is on the device before the server forgets them.
    await this.persist();
    if (this.ws !== ws || !this.joined) return; // the next resume covers them
    this.send({ type: 'ack', seq });
  }

  /** Saves the session state (when the device remembers). */
  async persist() {
    if (!this.save) return;
    try {
      await this.save(this.snapshot());
    } catch (e) {
      console.warn('dyspatcher: the state could not be kept on this device:', e);
    }
  }

  // ------------------------------------------------------------ incoming

  async receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return undefined;
    }
    if (!msg || typeof msg !== 'object') return undefined;
    // `welcome` carries a `seq` too, with another meaning: only frames addressed to the member count.
    if (!SEQUENCED.has(msg.type) || msg.seq === undefined) return this.handle(msg);
    if (!Number.isSafeInteger(msg.seq) || msg.seq < 1) return undefined;
    // A frame seen before (sent again after a resume): once is enough.
    if (msg.seq <= this.lastSeq || !this.joined) return undefined;
    try {
      await this.handle(msg);
    } finally {
      this.lastSeq = msg.seq;
    }
    return this.counted(data.length);
  }

  handle(msg) {
    switch (msg.type) {
      case 'challenge':
        return this.onChallenge(msg);
      case 'welcome':
        return this.onWelcome(msg);
      case 'joined':
        return this.onJoined(msg.member);
      case 'left':
        return this.onLeft(msg);
      case 'presence':
        return this.onPresence(msg);
      case 'direct':
        return this.onDirect(msg);
      case 'all':
        return this.onAll(msg);
      case 'sender_key':
        return this.onSenderKey(msg);
      case 'key_request':
        return this.onKeyRequest(msg);
      case 'delivery':
        if (typeof msg.id === 'string' && (msg.state === 'held' || msg.state === 'delivered')) {
          this.hooks.delivery?.({ id: msg.id, to: msg.to, state: msg.state });
        }
        return undefined;
      case 'gap':
        return this.hooks.gap?.({ dropped: Number(msg.dropped) || 0, kinds: msg.kinds ?? {} });
      case 'ack':
        this.confirm(msg.id);
        return this.hooks.ack?.(msg.id);
      case 'notice':
        return this.onNotice(msg);
      case 'error':
        return this.onError(msg);
      default:
        return undefined;
    }
  }

  async onChallenge(msg) {
    if (msg.version !== VERSION) {
      this.refusal = { code: 'version', message: t('refuse.version', { theirs: msg.version, ours: VERSION }) };
      this.ws?.close(4005);
      return;
    }
    this.offset = Number(msg.time) - Date.now() || 0;
    const signature = await c.sign(this.identity, c.canonical.join(msg.nonce, this.name, this.identity.keyId));
    const join = { type: 'join', name: this.name, public_key: this.identity.publicB64, signature };
    if (this.resumable) join.resume = { since: this.lastSeq };
    this.send(join);
  }

  async onWelcome(msg) {
    this.offset = Number(msg.time) - Date.now() || this.offset;
    const resumed = msg.resumed === true;
    if (!resumed) {
      // A new membership: seq starts again at 1, and nobody holds our old sender key.
      this.lastSeq = 0;
      this.own = freshSenderKey();
    }
    this.me = { name: String(msg.you.name), keyId: msg.you.key_id, admin: !!msg.you.admin };
    this.options = msg.options || {};
    this.limits = msg.limits || {};
    const before = new Map(this.peers);
    this.peers = new Map();
    for (const m of Array.isArray(msg.members) ? msg.members : []) {
      const known = before.get(m?.key_id) ?? this.former.get(m?.key_id);
      if (known && known.member.publicKey === m.public_key) {
        known.member = { ...known.member, name: String(m.name), admin: !!m.admin };
        this.peers.set(m.key_id, known);
        this.former.delete(m.key_id);
      } else {
        await this.addPeer(m);
      }
    }
    // Whoever went while we were away must not open what we send next.
    let gone = false;
    for (const [keyId, peer] of before) {
      if (this.peers.has(keyId) || keyId === this.identity.keyId) continue;
      gone = true;
      this.remember(keyId, peer);
    }
    if (gone) this.own = freshSenderKey();
    for (const k of this.own.given) if (!this.peers.has(k)) this.own.given.delete(k);
    for (const id of this.chains.keys()) {
      const sender = id.split(' ')[0];
      if (!this.peers.has(sender) && !this.former.has(sender)) this.chains.delete(id);
    }
    this.away = new Set((Array.isArray(msg.away) ? msg.away : []).filter((k) => this.peers.has(k)));
    this.otherEndpoint = this.me.admin && this.peers.has(this.identity.keyId);
    this.joined = true;
    this.attempt = 0;
    this.resumable = true;
    this.hooks.welcome?.({ me: this.me, options: this.options, limits: this.limits, resumed, restored: this.restoredFromDevice });
    this.restoredFromDevice = false;
    this.hooks.members?.(this.memberList());
    this.state('connected', t('conn.connected_as', { name: this.me.name }));
    this.resend(resumed);
    await this.persist();
  }

  /** Keeps a departed member's keys for a while: its earlier frames may still be replayed. */
  remember(keyId, peer) {
    this.former.set(keyId, peer);
    while (this.former.size > MAX_FORMER) this.former.delete(this.former.keys().next().value);
  }

  async addPeer(member) {
    try {
      const peer = await c.importPeer(member.public_key);
      if (peer.keyId !== member.key_id) throw new Error(t('reject.key_id_mismatch'));
      const entry = { name: String(member.name), keyId: member.key_id, admin: !!member.admin, publicKey: member.public_key };
      this.peers.set(member.key_id, { member: entry, ...peer });
      return true;
    } catch {
      this.hooks.rejected?.({ fromName: String(member?.name), reason: t('reject.unusable_key') });
      return false;
    }
  }

  async onJoined(member) {
    if (!member) return;
    const again = this.peers.has(member.key_id);
    // A known key joining again (a reloaded page, the admin's web seat) must be given our sender key again.
    this.own.given.delete(member.key_id);
    this.former.delete(member.key_id);
    this.away.delete(member.key_id);
    if (member.key_id === this.identity.keyId) this.otherEndpoint = true;
    if (!(await this.addPeer(member))) return;
    this.hooks.joined?.(this.peers.get(member.key_id).member, again);
    this.hooks.members?.(this.memberList());
  }

  onLeft(msg) {
    if (msg.key_id === this.identity.keyId) this.otherEndpoint = false;
    else this.peers.delete(msg.key_id);
    this.former.delete(msg.key_id);
    this.away.delete(msg.key_id);
    for (const id of this.chains.keys()) if (id.startsWith(msg.key_id + ' ')) this.chains.delete(id);
    // Whoever left must not open what comes next.
    this.own = freshSenderKey();
    this.hooks.left?.({ name: String(msg.name), keyId: msg.key_id, reason: msg.reason });
    this.hooks.members?.(this.memberList());
  }

  onPresence(msg) {
    // Away is not leaving: keys stay as they are.
    if (!this.peers.has(msg.key_id) || msg.key_id === this.identity.keyId) return;
    if (msg.state === 'away') this.away.add(msg.key_id);
    else if (msg.state === 'online') this.away.delete(msg.key_id);
    else return;
    this.hooks.presence?.({ name: this.nameOf(msg.key_id), keyId: msg.key_id, state: msg.state });
    this.hooks.members?.(this.memberList());
  }

  onNotice(msg) {
    const notice = { code: String(msg.code), text: String(msg.text ?? ''), until: Number.isSafeInteger(msg.until) ? msg.until : null };
    if (['kicked', 'banned', 'replaced'].includes(notice.code)) this.ending = notice;
    this.hooks.notice?.(notice);
  }

  onError(msg) {
    const err = {
      id: msg.id,
      code: String(msg.code),
      message: String(msg.message ?? msg.code),
      until: Number.isSafeInteger(msg.until) ? msg.until : null,
    };
    if (!this.joined) {
      this.refusal = err;
      return;
    }
    if (msg.id) this.confirm(msg.id);
    if (msg.id && err.code === 'duplicate_id' && this.resent.has(msg.id)) {
      // Sent again after a resume, and the server already had it: it was accepted.
      this.resent.delete(msg.id);
      this.hooks.ack?.(msg.id);
    } else if (msg.id) this.hooks.refused?.(err);
    else this.hooks.serverError?.(err);
  }

  memberList() {
    return [...this.peers.values()]
      .map((p) => ({ ...p.member, away: this.away.has(p.member.keyId) }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  nameOf(keyId) {
    return this.peers.get(keyId)?.member.name ?? this.former.get(keyId)?.member.name ?? keyId.slice(0, 12);
  }

  sender(from) {
    const peer = this.peers.get(from?.key_id) ?? this.former.get(from?.key_id);
    if (!peer) throw new Error(t('reject.unknown_sender'));
    return peer;
  }

  /**
   * Checks the timestamp and the id, and remembers the id. Throws on a stale message; false for
   * an id already seen (a repeat, dropped without a word).
   */
  isFresh(id, ts) {
    const now = this.now();
    if (!Number.isSafeInteger(ts) || Math.abs(ts - now) > SKEW) {
      throw new Error(t('reject.stale'));
    }
    this.forgetSeen(now);
    if (this.seen.has(id)) return false;
    this.seen.set(id, now);
    return true;
  }

  forgetSeen(now = this.now()) {
    for (const [old, t] of this.seen) {
      if (now - t <= SEEN_WINDOW) break;
      this.seen.delete(old);
    }
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
      if (!(await c.verify(peer.verifyKey, signed, msg.signature))) throw new Error(t('reject.signature'));
      if (msg.to !== this.identity.keyId && msg.from.key_id !== this.identity.keyId) {
        throw new Error(t('reject.not_for_you'));
      }
      if (!this.isFresh(msg.id, msg.ts)) return;
      const key = await c.unwrap(this.identity, msg.key).catch(() => {
        throw new Error(t('reject.unwrap'));
      });
      const text = await c.open(key, msg.iv, msg.ciphertext).catch(() => {
        throw new Error(t('reject.decrypt'));
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
      if (!(await c.verify(peer.verifyKey, signed, msg.signature))) throw new Error(t('reject.signature'));
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
    if (!Number.isInteger(n) || n < 0) throw new Error(t('reject.chain_index'));
    let mk;
    if (n < chain.n) {
      mk = chain.skipped.get(n);
      if (!mk) throw new Error(t('reject.used_key'));
      chain.skipped.delete(n);
    } else {
      if (n - chain.n > this.limit('max_jump')) throw new Error(t('reject.jump'));
      while (chain.n < n) {
        const step = await c.chainStep(chain.ck);
        if (chain.skipped.size >= this.limit('max_skipped')) chain.skipped.delete(chain.skipped.keys().next().value);
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
      throw new Error(t('reject.decrypt'));
    });
  }

  park(msg) {
    this.expirePending();
    if (this.pending.length >= MAX_PENDING) {
      const dropped = this.pending.shift();
      this.reject(dropped.msg, t('reject.too_many_waiting'));
    }
    const chainId = `${msg.from.key_id} ${msg.skid}`;
    if (!this.requested.has(chainId) && this.peers.has(msg.from.key_id)) {
      this.requested.add(chainId);
      this.transmit({ type: 'key_request', to: msg.from.key_id, skid: msg.skid, n: msg.n });
    }
    this.pending.push({ t: Date.now(), msg });
  }

  expirePending() {
    const now = Date.now();
    while (this.pending.length && now - this.pending[0].t > PENDING_TTL) {
      const { msg } = this.pending.shift();
      this.reject(msg, t('reject.key_never_came'));
    }
    // A later message under a chain whose key never came may ask again.
    const waiting = new Set(this.pending.map((p) => `${p.msg.from.key_id} ${p.msg.skid}`));
    for (const id of this.requested) if (!waiting.has(id)) this.requested.delete(id);
  }

  async onSenderKey(msg) {
    try {
      const peer = this.sender(msg.from);
      const signed = c.canonical.senderKey(msg, msg.from.key_id);
      if (!(await c.verify(peer.verifyKey, signed, msg.signature))) throw new Error(t('reject.signature'));
      if (!Number.isInteger(msg.n) || msg.n < 0 || msg.n >= 2 ** 32) throw new Error(t('reject.chain_index'));
      const ck = await c.unwrap(this.identity, msg.wrapped).catch(() => {
        throw new Error(t('reject.sender_key_unwrap'));
      });
      if ((await c.sha256hex(ck)) !== msg.commitment) throw new Error(t('reject.commitment'));
      const chainId = `${msg.from.key_id} ${msg.skid}`;
      // A chain already held is kept: it derives any later state itself, and replacing it
      // with an earlier one would bring back used message keys.
      if (!this.chains.has(chainId)) {
        this.chains.set(chainId, { ck, n: msg.n, skipped: new Map() });
        this.forgetOldChains(msg.from.key_id);
      }
      await this.releasePending(msg.from.key_id, msg.skid);
    } catch (e) {
      this.reject(msg, t('reject.sender_key', { reason: e.message }));
    }
  }

  /** Keeps the newest few chains of a sender: older ones were rotated away. */
  forgetOldChains(sender) {
    const ids = [...this.chains.keys()].filter((id) => id.startsWith(`${sender} `));
    for (const id of ids.slice(0, -this.limit('max_chains_per_sender'))) this.chains.delete(id);
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
    if (!text.trim()) throw new Error(t('send.empty'));
    const max = this.limits?.max_text ?? 32768;
    const size = c.utf8(text).length;
    if (size > max) throw new Error(t('send.too_long', { size, max }));
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
    if (!this.joined) throw new Error(t('send.not_connected'));
    const peer = this.peers.get(toKeyId);
    if (!peer) throw new Error(t('send.gone'));
    const key = c.randomBytes(32);
    const { iv, ciphertext } = await c.seal(key, text);
    const keys = { [toKeyId]: await c.wrap(peer.wrapKey, key) };
    if (toKeyId !== this.identity.keyId) keys[this.identity.keyId] = await c.wrap(this.identity.wrapKey, key);
    const msg = { type: 'direct', id: c.randomId(), ts: this.now(), to: toKeyId, iv, ciphertext, keys };
    msg.signature = await c.sign(this.identity, c.canonical.direct(msg, this.identity.keyId));
    this.seen.set(msg.id, this.now());
    this.transmit(msg);
    return this.ownRecord(msg, { kind: 'direct', keyId: toKeyId, name: peer.member.name }, text);
  }

  async sealAll(text) {
    this.checkText(text);
    if (!this.joined) throw new Error(t('send.not_connected'));
    if (this.options.disable_all && !this.me.admin) throw new Error(t('send.all_disabled'));
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
    this.seen.set(msg.id, this.now());
    const t = Date.now();
    own.recent = own.recent.filter((r) => t - r.t <= RECENT_TTL).slice(-31);
    own.recent.push({ n: own.n, ck: own.ck, t });
    own.ck = next;
    own.n += 1;
    // The used chain state is on the device before the message leaves: a reload never reuses it.
    await this.persist();
    this.transmit(msg);
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
      this.transmit({ type: 'sender_key', skid: own.skid, n, commitment, signature: own.signed.signature, keys });
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

  // ------------------------------------------------------------ across reloads

  /** The session state as plain JSON: what a reload needs to resume and open what comes. */
  snapshot() {
    const b64 = c.b64encode;
    const own = this.own;
    const t = Date.now();
    this.forgetSeen();
    const members = (map, former) => [...map.values()].map((p) => ({ ...wireMember(p.member), former }));
    return {
      v: SNAPSHOT_VERSION,
      savedAt: t,
      lastSeq: this.lastSeq,
      own: {
        skid: own.skid,
        ck: b64(own.ck),
        n: own.n,
        given: [...own.given],
        recent: own.recent.filter((r) => t - r.t <= RECENT_TTL).map((r) => ({ n: r.n, ck: b64(r.ck), t: r.t })),
      },
      chains: [...this.chains].map(([id, ch]) => [id, { ck: b64(ch.ck), n: ch.n, skipped: [...ch.skipped].map(([n, mk]) => [n, b64(mk)]) }]),
      seen: [...this.seen],
      members: [...members(this.peers, false), ...members(this.former, true)],
      away: [...this.away],
      pending: this.pending.map((p) => ({ t: p.t, msg: p.msg })),
    };
  }

  /** Continues from a `snapshot()`; anything unreadable leaves a fresh session. */
  async restore(state) {
    if (!state || state.v !== SNAPSHOT_VERSION) return;
    const b = c.b64decode;
    try {
      const own = {
        skid: String(state.own.skid),
        ck: b(state.own.ck),
        n: Number(state.own.n) || 0,
        given: new Set(state.own.given),
        recent: (state.own.recent || []).map((r) => ({ n: r.n, ck: b(r.ck), t: r.t })),
        signed: null,
      };
      const chains = new Map(
        state.chains.map(([id, ch]) => [id, { ck: b(ch.ck), n: ch.n, skipped: new Map(ch.skipped.map(([n, mk]) => [n, b(mk)])) }]),
      );
      const peers = new Map();
      const former = new Map();
      for (const m of state.members || []) {
        const peer = await c.importPeer(m.public_key).catch(() => null);
        if (!peer || peer.keyId !== m.key_id) continue;
        const entry = { name: String(m.name), keyId: m.key_id, admin: !!m.admin, publicKey: m.public_key };
        (m.former ? former : peers).set(m.key_id, { member: entry, ...peer });
      }
      this.own = own;
      this.chains = chains;
      this.peers = peers;
      this.former = former;
      this.away = new Set(state.away || []);
      this.seen = new Map(state.seen);
      this.pending = (state.pending || []).slice(-MAX_PENDING);
      this.lastSeq = Number.isSafeInteger(state.lastSeq) ? state.lastSeq : 0;
      this.resumable = true;
      this.restoredFromDevice = true;
    } catch (e) {
      console.warn('dyspatcher: the kept state is unreadable; starting afresh:', e);
    }
  }
}

// dyspatcher web client: the end-to-end session (docs/PROTOCOL.md, v2), on top of the connection
// (connection.js). It joins with proof of possession, resumes the membership, acknowledges
// sequenced frames, seals and opens direct and @all messages, and manages sender keys. Its state
// (sender keys, receiving chains, seen ids, last seq) outlives connections; `snapshot()` and
// `restore()` carry it across a reload. It knows nothing of the DOM nor of storage: it reports to
// the `hooks` it is given. The bounds on receiving chains come from the server's `welcome.limits`.
import * as c from './crypto.js';
import { Connection } from './connection.js';
import { FilesIn } from './fileopen.js';
import { Files } from './files.js';
import { GroupKeys } from './groupkeys.js';
import { GROUP_ID, Groups } from './groups.js';
import { t } from './i18n/i18n.js';
import { PublicKeys } from './keys.js';
import { freshSenderKey, Members } from './members.js';
import { Outgoing } from './sealing.js';
import { SenderKeys } from './senderkeys.js';
import { Snapshots } from './snapshot.js';

export { backoffDelay, chatUrl, closeMeaning, gapText, LEFT_REASONS, untilText } from './meaning.js';

export const VERSION = 2;
/** Until the welcome says otherwise (`limits`): kept message keys per receiving chain, ... */
export const DEFAULT_LIMITS = { max_skipped: 1000, max_jump: 2000, max_chains_per_sender: 4 };
const SKEW = 5 * 60_000; // accepted distance of `ts` from the corrected clock
const SEEN_WINDOW = 10 * 60_000; // how long message ids are remembered
const ACK_EVERY = 64; // frames between two acks
const ACK_BYTES = 128 * 1024; // or this many bytes of frames, whichever comes first
const ACK_DELAY = 1000; // at most this long before an ack while frames arrive
/** Frames the server numbers (`seq`) and keeps until acknowledged. */
const SEQUENCED = new Set(['joined', 'left', 'presence', 'direct', 'all', 'sender_key', 'key_request', 'delivery', 'gap', 'file', 'file_cancel', 'group', 'group_roster', 'group_left', 'group_deleted']);


/** A positive whole number from the welcome's limits, or the default. */
const limit = (limits, name) => (Number.isSafeInteger(limits?.[name]) && limits[name] > 0 ? limits[name] : DEFAULT_LIMITS[name]);

export class Chat extends Connection {
  /**
   * hooks: state({state, text, retryIn, kind, until, offline}), welcome(info), members(list),
   * message(m), rejected({fromName, reason}), joined(member, again), left({name, keyId, reason}),
   * presence({name, keyId, state}), delivery({id, to, state}), gap({dropped, kinds}),
   * notice({code, text, until}), ack(id), refused({id, code, message}), serverError({code, message}),
   * transfer(tr) (files.js: a file sent or received, at every change).
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
    this.peers = new Map(); // key_id -> {member}
    this.keys = new Map(); // key_id -> {verifyKey, wrapKey}: public keys fetched and checked (keys.js)
    this.keyWaits = new Map(); // key_id -> {promise, resolve}: asked for, not answered yet
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
    this.filesInit();
    this.groupsInit();
    this.connReset();
    if (state) this.enqueue(() => this.restore(state));
    this.sweeper = setInterval(() => this.enqueue(() => this.expirePending()), 5000);
  }

  /** Forgets what belongs to one connection. */
  connReset() {
    super.connReset();
    this.dropKeyWaits?.();
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
    // Chunks have their own lane (`cseq`), acknowledged apart from the `seq` frames.
    if (msg.type === 'chunk' && msg.cseq !== undefined) return this.receiveChunk(msg);
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
        // One member, or several who joined together (`members`, in order).
        return this.onJoinedAll(msg.member ? [msg.member] : Array.isArray(msg.members) ? msg.members : []);
      case 'left':
        return this.onLeft(msg);
      case 'presence':
        return this.onPresence(msg);
      case 'direct':
        return this.onDirect(msg);
      case 'all':
        return this.onAll(msg);
      case 'sender_key':
        return msg.group === undefined ? this.onSenderKey(msg) : this.onGroupSenderKey(msg);
      case 'key_request':
        return msg.group === undefined ? this.onKeyRequest(msg) : this.onGroupKeyRequest(msg);
      case 'group':
        return this.onGroup(msg);
      case 'group_roster':
        return this.onGroupRoster(msg);
      case 'group_left':
        return this.onGroupLeft(msg);
      case 'group_deleted':
        return this.onGroupDeleted(msg);
      case 'delivery':
        if (typeof msg.id === 'string' && (msg.state === 'held' || msg.state === 'delivered')) {
          this.hooks.delivery?.({ id: msg.id, to: msg.to, state: msg.state });
        }
        return undefined;
      case 'gap':
        return this.hooks.gap?.({ dropped: Number(msg.dropped) || 0, kinds: msg.kinds ?? {} });
      case 'file':
        return this.onFile(msg);
      case 'file_cancel':
        return this.onFileCancel(msg);
      case 'chunk_ack':
        return this.onChunkAck(msg);
      case 'ack':
        return this.onAck(msg);
      case 'notice':
        return this.onNotice(msg);
      case 'error':
        return this.onError(msg);
      default:
        return undefined;
    }
  }

  async onAck(msg) {
    if (typeof msg.id === 'string' && GROUP_ID.test(msg.id) && (await this.rosterAnswered(msg.id))) return undefined;
    this.confirm(msg.id);
    this.fileAccepted(msg);
    return this.hooks.ack?.(msg.id);
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
    if (this.resumable) join.resume = { since: this.lastSeq, since_chunks: this.lastCseq };
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
    this.filesReconnected(resumed, msg.cseq);
    this.me = { name: String(msg.you.name), keyId: msg.you.key_id, admin: !!msg.you.admin };
    this.options = msg.options || {};
    this.limits = msg.limits || {};
    const before = new Map(this.peers);
    this.peers = new Map();
    for (const m of Array.isArray(msg.members) ? msg.members : []) {
      this.former.delete(m?.key_id);
      this.addPeer(m);
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
    for (const k of this.keys.keys()) if (!this.peers.has(k) && !this.former.has(k)) this.keys.delete(k);
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
    await this.welcomeGroups(msg.groups);
    this.groupsChanged();
    await this.persist();
  }

  onNotice(msg) {
    const notice = { code: String(msg.code), text: String(msg.text ?? ''), until: Number.isSafeInteger(msg.until) ? msg.until : null };
    if (['kicked', 'banned', 'replaced'].includes(notice.code)) this.ending = notice;
    this.hooks.notice?.(notice);
  }

  async onError(msg) {
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
    if (msg.id && (await this.rosterAnswered(msg.id, err))) return;
    if (msg.id) this.confirm(msg.id);
    if (msg.id && this.fileError(err)) return;
    if (msg.id && err.code === 'duplicate_id' && this.resent.has(msg.id)) {
      // Sent again after a resume, and the server already had it: it was accepted.
      this.resent.delete(msg.id);
      this.hooks.ack?.(msg.id);
    } else if (msg.id) this.hooks.refused?.(err);
    else this.hooks.serverError?.(err);
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
      const peer = await this.verifierOf(msg.from);
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
      const peer = await this.verifierOf(msg.from);
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

}

// The receiving side of sender keys, the outgoing side and the snapshots live in their own modules, as methods of Chat.
for (const part of [Members, PublicKeys, SenderKeys, Outgoing, Snapshots, Files, FilesIn, Groups, GroupKeys]) {
  for (const name of Object.getOwnPropertyNames(part.prototype)) {
    if (name !== 'constructor') Chat.prototype[name] = part.prototype[name];
  }
}

// dyspatcher web client: group messages under sender keys per (group, epoch). Our chain for the
// group's current epoch is wrapped only for the members of the roster we verified (less those the
// server said left); a frame is opened only from a member of that roster, for that epoch. Files
// to a group are sealed the same way. Mixed into Chat (session.js); the rosters are in groups.js.
import * as c from './crypto.js';
import { t } from './i18n/i18n.js';
import { cut, groupCanonical, MAX_GROUP_NAME, MAX_GROUP_TOPIC } from './groups.js';
import { RECENT_TTL } from './sealing.js';

const MAX_SENDER_KEY_ENTRIES = 256;
const GROUP_PENDING_TTL = 30_000; // how long a group message waits for its sender key
const MAX_GROUP_PENDING = 64;

/** A fresh group sender key for the group's current epoch. */
const freshGroupKey = (epoch) => ({ epoch, skid: c.randomId(), ck: c.randomBytes(32), n: 0, given: new Set(), recent: [], signed: null });

export class GroupKeys {
  // ------------------------------------------------------------ sending

  /** The members our group sender key may be wrapped for: the verified roster, less the excluded. */
  groupRecipients(g) {
    return g.roster.members.filter((k) => k !== this.identity.keyId && !g.excluded.has(k) && this.peers.has(k));
  }

  sendGroup(groupId, text) {
    return this.enqueue(async () => {
      this.checkText(text);
      const msg = await this.sealGroup(groupId, { text });
      return this.ownRecord(msg, this.groupDest(groupId), text);
    });
  }

  groupDest(groupId) {
    return { kind: 'group', group: groupId, name: this.groups.get(groupId)?.name ?? '' };
  }

  /** Our sender key for the group's current epoch, given to whoever on the roster lacks it. */
  async groupKey(groupId) {
    if (!this.joined) throw new Error(t('send.not_connected'));
    const g = this.groups?.get(groupId);
    if (!g || g.out) throw new Error(t('group.err.not_member'));
    if (!g.own || g.own.epoch !== g.roster.epoch) g.own = freshGroupKey(g.roster.epoch);
    const own = g.own;
    const wanted = this.groupRecipients(g).filter((k) => !own.given.has(k));
    await this.needKeys(wanted);
    const lacking = wanted.filter((k) => this.keyOf(k));
    await this.distributeGroup(g, lacking, own.n, own.ck);
    lacking.forEach((k) => own.given.add(k));
    return { g, own };
  }

  /** Takes the next message key of our group chain (its state kept for key requests). */
  async stepGroup(own) {
    const { mk, next } = await c.chainStep(own.ck);
    const now = Date.now();
    own.recent = own.recent.filter((r) => now - r.t <= RECENT_TTL).slice(-31);
    own.recent.push({ n: own.n, ck: own.ck, t: now });
    const n = own.n;
    own.ck = next;
    own.n += 1;
    return { mk, n };
  }

  async sealGroup(groupId, payload) {
    const { g, own } = await this.groupKey(groupId);
    const { mk, n } = await this.stepGroup(own);
    const { iv, ciphertext } = await c.seal(mk, JSON.stringify(payload));
    const msg = { type: 'group', group: g.id, epoch: own.epoch, id: c.randomId(), ts: this.now(), skid: own.skid, n, iv, ciphertext };
    msg.signature = await c.sign(this.identity, groupCanonical.message(msg, this.identity.keyId));
    this.seen.set(msg.id, this.now());
    await this.persist();
    this.transmit(msg);
    if (payload.info) this.setInfo(g, payload.info);
    return msg;
  }

  async distributeGroup(g, keyIds, n, ck) {
    if (!keyIds.length) return;
    const own = g.own;
    const commitment = await c.sha256hex(ck);
    if (!own.signed || own.signed.n !== n || own.signed.commitment !== commitment) {
      const text = groupCanonical.senderKey({ group: g.id, epoch: own.epoch, skid: own.skid, n, commitment }, this.identity.keyId);
      own.signed = { n, commitment, signature: await c.sign(this.identity, text) };
    }
    for (let i = 0; i < keyIds.length; i += MAX_SENDER_KEY_ENTRIES) {
      const keys = {};
      for (const k of keyIds.slice(i, i + MAX_SENDER_KEY_ENTRIES)) {
        const key = this.keyOf(k);
        if (key) keys[k] = await c.wrap(key.wrapKey, ck);
      }
      this.transmit({ type: 'sender_key', group: g.id, epoch: own.epoch, skid: own.skid, n, commitment, signature: own.signed.signature, keys });
    }
  }

  // ------------------------------------------------------------ receiving

  /** The group and chain of a group frame from a member of the roster we verified; throws otherwise. */
  groupOf(msg) {
    this.groupsInit();
    const g = this.groups.get(msg.group ?? msg.to);
    if (!g) throw new Error(t('group.reject.unknown'));
    if (g.out) throw new Error(t('group.reject.out'));
    if (msg.epoch !== g.roster.epoch) throw new Error(t('group.reject.epoch', { epoch: msg.epoch, current: g.roster.epoch }));
    if (!g.roster.members.includes(msg.from?.key_id)) throw new Error(t('group.reject.not_member'));
    return g;
  }

  async onGroup(msg) {
    try {
      const peer = await this.verifierOf(msg.from);
      if (!(await c.verify(peer.verifyKey, groupCanonical.message(msg, msg.from.key_id), msg.signature))) throw new Error(t('reject.signature'));
      const g = this.groupOf(msg);
      const chain = this.groupChains.get(`${g.id} ${msg.epoch} ${msg.from.key_id} ${msg.skid}`);
      if (!chain) return this.parkGroup(msg);
      if (!this.isFresh(msg.id, msg.ts)) return undefined;
      const text = await this.openAll(msg, chain);
      let body;
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
      if (body && typeof body.text === 'string') {
        this.hooks.message?.(this.opened(msg, this.groupDest(g.id), body.text));
      } else if (body?.info && typeof body.info === 'object') {
        // The name and topic come from the owner only.
        if (msg.from.key_id !== g.roster.owner) throw new Error(t('group.reject.info'));
        this.setInfo(g, body.info, msg.from.key_id);
      } else throw new Error(t('group.reject.body'));
    } catch (e) {
      this.reject(msg, e.message);
    }
    return undefined;
  }

  setInfo(g, info, from = null) {
    const name = cut(String(info.name ?? ''), MAX_GROUP_NAME);
    const topic = cut(String(info.topic ?? ''), MAX_GROUP_TOPIC);
    if (name === g.name && topic === g.topic) return;
    const first = !g.name;
    g.name = name;
    g.topic = topic;
    this.groupsChanged();
    if (from && !first) this.groupEvent({ kind: 'info', group: g.id, by: this.nameOf(from), name });
  }

  parkGroup(msg) {
    this.expireGroupPending();
    if (this.groupPending.length >= MAX_GROUP_PENDING) this.reject(this.groupPending.shift().msg, t('reject.too_many_waiting'));
    const asked = this.groupPending.some((p) => p.msg.group === msg.group && p.msg.from.key_id === msg.from.key_id && p.msg.skid === msg.skid);
    if (!asked && this.peers.has(msg.from.key_id)) {
      this.transmit({ type: 'key_request', to: msg.from.key_id, group: msg.group, skid: msg.skid, n: msg.n });
    }
    this.groupPending.push({ t: Date.now(), msg });
  }

  expireGroupPending() {
    const now = Date.now();
    while (this.groupPending?.length && now - this.groupPending[0].t > GROUP_PENDING_TTL) {
      this.reject(this.groupPending.shift().msg, t('reject.key_never_came'));
    }
  }

  async onGroupSenderKey(msg) {
    try {
      const peer = await this.verifierOf(msg.from);
      if (!(await c.verify(peer.verifyKey, groupCanonical.senderKey(msg, msg.from.key_id), msg.signature))) throw new Error(t('reject.signature'));
      if (!Number.isInteger(msg.n) || msg.n < 0 || msg.n >= 2 ** 32) throw new Error(t('reject.chain_index'));
      const g = this.groupOf(msg);
      const ck = await c.unwrap(this.identity, msg.wrapped).catch(() => {
        throw new Error(t('reject.sender_key_unwrap'));
      });
      if ((await c.sha256hex(ck)) !== msg.commitment) throw new Error(t('reject.commitment'));
      const id = `${g.id} ${msg.epoch} ${msg.from.key_id} ${msg.skid}`;
      if (!this.groupChains.has(id)) {
        this.groupChains.set(id, { ck, n: msg.n, skipped: new Map() });
        const mine = [...this.groupChains.keys()].filter((x) => x.startsWith(`${g.id} ${msg.epoch} ${msg.from.key_id} `));
        for (const old of mine.slice(0, -this.limit('max_chains_per_sender'))) this.groupChains.delete(old);
      }
      const ready = this.groupPending.filter((p) => p.msg.group === g.id && p.msg.from.key_id === msg.from.key_id && p.msg.skid === msg.skid);
      this.groupPending = this.groupPending.filter((p) => !ready.includes(p));
      for (const p of ready) await (p.msg.type === 'file' ? this.onFile(p.msg) : this.onGroup(p.msg));
    } catch (e) {
      this.reject(msg, t('reject.sender_key', { reason: e.message }));
    }
  }

  /** A member of the verified roster lacks our group chain state: given again if still recent. */
  async onGroupKeyRequest(msg) {
    const from = msg.from?.key_id;
    const g = this.groups?.get(msg.group);
    if (!g || g.out || !g.own || msg.skid !== g.own.skid || !this.groupRecipients(g).includes(from)) return;
    const now = Date.now();
    const state = g.own.recent.find((r) => r.n === msg.n && now - r.t <= RECENT_TTL);
    if (!state) return;
    await this.needKeys([from]);
    await this.distributeGroup(g, [from], state.n, state.ck);
  }

  // ------------------------------------------------------------ files to a group

  /** Seals a file manifest for a group: the frame's fields and the destination shown. */
  async sealGroupFile(groupId, id, text, size, chunks) {
    const { g, own } = await this.groupKey(groupId);
    const { mk, n } = await this.stepGroup(own);
    const { iv, ciphertext } = await c.seal(mk, text);
    const msg = { type: 'file', id, ts: this.now(), to: g.id, epoch: own.epoch, size, chunks, iv, ciphertext, skid: own.skid, n };
    msg.signature = await c.sign(this.identity, groupCanonical.file(msg, this.identity.keyId));
    await this.persist();
    return { msg, dest: this.groupDest(g.id) };
  }

  /** The chain a group file manifest is sealed under, or throws (a missing chain is asked for). */
  async openGroupFile(msg) {
    const g = this.groupOf(msg);
    const chain = this.groupChains.get(`${g.id} ${msg.epoch} ${msg.from.key_id} ${msg.skid}`);
    if (!chain) {
      this.transmit({ type: 'key_request', to: msg.from.key_id, group: g.id, skid: msg.skid, n: msg.n });
      throw new Error(t('file.err.no_key'));
    }
    return { chain, dest: this.groupDest(g.id) };
  }
}

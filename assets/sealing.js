// dyspatcher web client: the session's outgoing side. Seals direct messages for one member and
// @all messages under our sender key (distributing it first to whoever lacks it). Mixed into
// Chat (session.js): the methods use its state.
import * as c from './crypto.js';
import { t } from './i18n/i18n.js';

export const RECENT_TTL = 10_000; // how long a sender keeps states to answer key requests
const MAX_SENDER_KEY_ENTRIES = 256;

export class Outgoing {
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
    await this.needKeys([toKeyId]);
    const theirs = this.keyOf(toKeyId);
    if (!theirs) throw new Error(t('send.gone'));
    const key = c.randomBytes(32);
    const { iv, ciphertext } = await c.seal(key, text);
    const keys = { [toKeyId]: await c.wrap(theirs.wrapKey, key) };
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
    const wanted = [...this.peers.keys()].filter(
      (k) => (k !== this.identity.keyId || this.otherEndpoint) && !own.given.has(k),
    );
    // Their public keys first (fetched in batches); whoever has none now gets ours next time.
    await this.needKeys(wanted);
    const lacking = wanted.filter((k) => this.keyOf(k));
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
        const key = this.keyOf(k);
        if (key) keys[k] = await c.wrap(key.wrapKey, ck);
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

}

// dyspatcher web client: @all under sender keys, the receiving side. Opens a message with the
// sender's chain (keeping skipped message keys, bounded by `welcome.limits`), parks messages whose
// chain has not come yet and asks for it, takes sender keys, and answers key requests. Mixed into
// Chat (session.js).
import * as c from './crypto.js';
import { t } from './i18n/i18n.js';
import { RECENT_TTL } from './sealing.js';
import { MAX_PENDING } from './snapshot.js';

const PENDING_TTL = 30_000; // how long @all messages wait for their sender key

export class SenderKeys {
  /** Opens a message under a sender key: @all's chain of the sender, or the `chain` given (a group's). */
  async openAll(msg, chain = this.chains.get(`${msg.from.key_id} ${msg.skid}`)) {
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
      const peer = await this.verifierOf(msg.from);
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
    if (!state) return;
    await this.needKeys([from]);
    await this.distribute([from], state.n, state.ck);
  }

}

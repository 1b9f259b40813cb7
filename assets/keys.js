// dyspatcher web client: members' public keys, fetched when needed. The member list carries
// none: the session asks the server (`get_keys`, at most 256 key IDs at a time) for the keys it
// needs to verify a sender or to wrap a key for someone, checks that SHA-256 of each SPKI is its
// key ID (a key that does not match is refused and reported), and keeps them imported. Mixed into
// Chat (session.js).
import * as c from './crypto.js';
import { t } from './i18n/i18n.js';

export const MAX_GET_KEYS = 256; // key IDs in one get_keys (docs/PROTOCOL.md)
const KEY_WAIT = 10_000; // how long a message or a send waits for a key asked for

export class PublicKeys {
  /** The imported key of `keyId` ({verifyKey, wrapKey}), or undefined when not fetched yet. */
  keyOf(keyId) {
    if (keyId === this.identity.keyId) return this.identity;
    return this.keys.get(keyId);
  }

  /**
   * Asks for the keys of `keyIds` we lack (those not asked already) and waits until each is
   * known or refused, for at most KEY_WAIT. Runs inside the session's queue: the answer is taken
   * outside it (`receiveNow`), so waiting here holds back later frames, in order, and nothing
   * else.
   */
  async needKeys(keyIds) {
    const ask = [];
    const waits = [];
    for (const id of new Set(keyIds)) {
      if (typeof id !== 'string' || this.keyOf(id)) continue;
      let wait = this.keyWaits.get(id);
      if (!wait) {
        let resolve;
        const promise = new Promise((r) => (resolve = r));
        wait = { promise, resolve };
        this.keyWaits.set(id, wait);
        ask.push(id);
      }
      waits.push(wait.promise);
    }
    for (let i = 0; i < ask.length; i += MAX_GET_KEYS) {
      this.send({ type: 'get_keys', key_ids: ask.slice(i, i + MAX_GET_KEYS) });
    }
    if (!waits.length) return;
    let timer;
    await Promise.race([Promise.all(waits), new Promise((r) => (timer = setTimeout(r, KEY_WAIT)))]);
    clearTimeout(timer);
    // Never answered (a lost connection, a dropped request): a later need asks again.
    for (const id of ask) this.settleKey(id);
  }

  settleKey(keyId) {
    const wait = this.keyWaits.get(keyId);
    if (!wait) return;
    this.keyWaits.delete(keyId);
    wait.resolve();
  }

  /** Frames handled at once, outside the queue: the `keys` answers others wait for. */
  receiveNow(data) {
    if (typeof data !== 'string' || !data.startsWith('{"type":"keys"')) return false;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return true;
    }
    this.onKeys(msg).catch((e) => console.error('dyspatcher:', e));
    return true;
  }

  async onKeys(msg) {
    const keys = msg.keys && typeof msg.keys === 'object' ? msg.keys : {};
    for (const [keyId, spki] of Object.entries(keys)) {
      // Only what we asked for: a key nobody asked for could not be told from a planted one.
      if (!this.keyWaits.has(keyId)) continue;
      const peer = await c.importPeer(spki).catch(() => null);
      if (peer && peer.keyId === keyId) {
        this.keys.set(keyId, { verifyKey: peer.verifyKey, wrapKey: peer.wrapKey });
      } else {
        this.hooks.rejected?.({ fromName: this.nameOf(keyId), reason: t(peer ? 'reject.key_id_mismatch' : 'reject.unusable_key') });
      }
      this.settleKey(keyId);
    }
    for (const keyId of Array.isArray(msg.unknown) ? msg.unknown : []) this.settleKey(keyId);
  }

  /** The sender's imported key, fetched if need be; throws when it is not a member or no key came. */
  async verifierOf(from) {
    const keyId = from?.key_id;
    if (!this.peers.has(keyId) && !this.former.has(keyId) && keyId !== this.identity.keyId) {
      throw new Error(t('reject.unknown_sender'));
    }
    await this.needKeys([keyId]);
    const key = this.keyOf(keyId);
    if (!key) throw new Error(t('reject.key_never_came'));
    return key;
  }

  /** Forgets the answers still awaited: they died with the connection. */
  dropKeyWaits() {
    for (const id of [...(this.keyWaits?.keys() ?? [])]) this.settleKey(id);
  }
}

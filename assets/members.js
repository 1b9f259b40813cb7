// dyspatcher web client: the members as the session knows them (docs/PROTOCOL.md, "Members and
// presence"): who joined, left, went away or came back, their names, and the members gone lately
// (kept a while to check frames sent before they went). Public keys are fetched on demand
// (keys.js). Mixed into Chat (session.js).
import * as c from './crypto.js';
import { t } from './i18n/i18n.js';

const MAX_FORMER = 64; // members gone, kept to check frames sent before they went

export function freshSenderKey() {
  return { skid: c.randomId(), ck: c.randomBytes(32), n: 0, given: new Set(), recent: [], signed: null };
}

export class Members {
  /** Keeps a departed member's keys for a while: its earlier frames may still be replayed. */
  remember(keyId, peer) {
    this.former.set(keyId, peer);
    while (this.former.size > MAX_FORMER) {
      const oldest = this.former.keys().next().value;
      this.former.delete(oldest);
      this.keys.delete(oldest);
    }
  }

  /** Lists a member (its public key is fetched when first needed: keys.js). */
  addPeer(member) {
    if (typeof member?.key_id !== 'string' || !/^[0-9a-f]{64}$/.test(member.key_id)) {
      this.hooks.rejected?.({ fromName: String(member?.name), reason: t('reject.unusable_key') });
      return false;
    }
    const entry = { name: String(member.name), keyId: member.key_id, admin: !!member.admin };
    this.peers.set(member.key_id, { member: entry });
    return true;
  }

  async onJoinedAll(members) {
    for (const m of members) await this.onJoined(m);
  }

  async onJoined(member) {
    if (!member) return;
    const again = this.peers.has(member.key_id);
    // A known key joining again (a reloaded page, the admin's web seat) must be given our sender key again.
    this.own.given.delete(member.key_id);
    this.former.delete(member.key_id);
    this.away.delete(member.key_id);
    if (member.key_id === this.identity.keyId) this.otherEndpoint = true;
    if (!this.addPeer(member)) return;
    this.hooks.joined?.(this.peers.get(member.key_id).member, again);
    this.hooks.members?.(this.memberList());
  }

  onLeft(msg) {
    if (msg.key_id === this.identity.keyId) this.otherEndpoint = false;
    else this.peers.delete(msg.key_id);
    this.former.delete(msg.key_id);
    this.keys.delete(msg.key_id);
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
}

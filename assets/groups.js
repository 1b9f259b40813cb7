// dyspatcher web client: private groups (docs/PROTOCOL.md, "Groups"). A group's roster is signed
// by its owner; a roster is accepted only by the rules below (a later epoch signed by the owner of
// the roster accepted last, or, for a group not known yet, one naming us and signed by its stated
// owner), and anything else is refused and reported, leaving the state as it was. Group messages
// are sealed under a sender key per (group, epoch), wrapped only for the members of the verified
// roster (less those the server said left): groupkeys.js. Mixed into Chat (session.js).
import * as c from './crypto.js';
import { reason as serverReason, t } from './i18n/i18n.js';
import { RECENT_TTL } from './sealing.js';

export const GROUP_ID = /^[0-9a-f]{32}$/;
const KEY_ID = /^[0-9a-f]{64}$/;
export const MAX_GROUP_NAME = 64; // bytes of a group's name (UTF-8)
export const MAX_GROUP_TOPIC = 256; // bytes of a group's topic (UTF-8)

export const groupCanonical = {
  roster: (r) => ['dyspatcher-v2-roster', r.group, String(r.epoch), r.owner, r.members.join(',')].join('\n'),
  message: (m, from) =>
    ['dyspatcher-v2-group', m.group, String(m.epoch), m.id, String(m.ts), from, m.skid, String(m.n), m.iv, m.ciphertext].join('\n'),
  senderKey: (m, from) =>
    ['dyspatcher-v2-group-sender-key', m.group, String(m.epoch), from, m.skid, String(m.n), m.commitment].join('\n'),
  file: (m, from) =>
    ['dyspatcher-v2-file-group', m.id, String(m.ts), from, m.to, String(m.epoch), m.skid, String(m.n), String(m.size), String(m.chunks), m.iv, m.ciphertext].join('\n'),
};

/** `text` cut to at most `max` UTF-8 bytes, whole characters only, without control characters. */
export function cut(text, max) {
  let out = '';
  let size = 0;
  for (const ch of text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').trim()) {
    size += c.utf8(ch).length;
    if (size > max) break;
    out += ch;
  }
  return out.trim();
}

/** Throws unless `r` is a roster as the protocol writes it (members sorted, unique, owner in). */
export function checkRoster(r) {
  const ok =
    r && typeof r === 'object' && typeof r.group === 'string' && GROUP_ID.test(r.group) &&
    Number.isSafeInteger(r.epoch) && r.epoch >= 1 && typeof r.owner === 'string' && KEY_ID.test(r.owner) &&
    Array.isArray(r.members) && r.members.length >= 1 && r.members.every((k) => typeof k === 'string' && KEY_ID.test(k)) &&
    r.members.every((k, i) => i === 0 || r.members[i - 1] < k) && r.members.includes(r.owner) && typeof r.signature === 'string';
  if (!ok) throw new Error(t('group.refused_shape'));
  return { group: r.group, epoch: r.epoch, owner: r.owner, members: [...r.members], signature: r.signature };
}

export class Groups {
  groupsInit() {
    this.groups ??= new Map(); // id -> {id, roster, name, topic, creator, own, excluded: Map key_id -> epoch, out}
    this.groupChains ??= new Map(); // "group epoch sender skid" -> {ck, n, skipped}
    this.groupPending ??= [];
    this.proposed ??= new Map(); // group id -> {roster, info}: sent, not answered yet
    this.leaving ??= new Set(); // group ids we asked to leave, not answered yet
  }

  /** The groups as the page lists them. */
  groupList() {
    this.groupsInit();
    return [...this.groups.values()].map((g) => ({
      id: g.id,
      name: g.name,
      topic: g.topic,
      epoch: g.roster.epoch,
      owner: g.roster.owner,
      members: [...g.roster.members],
      creator: g.creator,
      out: g.out,
      excluded: [...g.excluded.keys()],
    }));
  }

  groupsChanged() {
    this.hooks.groups?.(this.groupList());
  }

  groupEvent(e) {
    this.hooks.groupEvent?.(e);
  }

  // ------------------------------------------------------------ rosters

  /**
   * Judges roster `raw` by the rules; applies it and reports what changed, or reports it refused
   * (the state unchanged). `by`: the key ID the server says sent it (shown only as a hint).
   */
  async takeRoster(raw, { quiet = false } = {}) {
    this.groupsInit();
    let r;
    try {
      r = checkRoster(raw);
    } catch (e) {
      this.groupEvent({ kind: 'refused', group: String(raw?.group ?? ''), name: '', reason: e.message });
      return false;
    }
    const g = this.groups.get(r.group);
    if (g && g.roster.signature === r.signature && g.roster.epoch === r.epoch) return true; // ours again, or a repeat
    const name = g?.name ?? '';
    const refuse = (reason) => {
      this.groupEvent({ kind: 'refused', group: r.group, name, reason });
      return false;
    };
    let signer;
    if (g) {
      if (r.epoch <= g.roster.epoch) return refuse(t('group.refused_epoch', { epoch: r.epoch, current: g.roster.epoch }));
      signer = g.roster.owner;
    } else {
      if (!r.members.includes(this.identity.keyId)) return refuse(t('group.refused_not_member'));
      if (!this.peers.has(r.owner) && r.owner !== this.identity.keyId) return refuse(t('group.refused_owner_gone'));
      signer = r.owner;
    }
    await this.needKeys([signer]);
    const key = this.keyOf(signer);
    if (!key || !(await c.verify(key.verifyKey, groupCanonical.roster(r), r.signature))) return refuse(t('group.refused_signature'));
    const handedToMe = g && g.roster.owner !== r.owner && r.owner === this.identity.keyId;
    this.applyRoster(g, r, signer, quiet);
    // A new owner says the group's name under the new epoch, for whoever joins next.
    const now = this.groups.get(r.group);
    if (handedToMe && now.name) {
      await this.sealGroup(r.group, { info: { name: now.name, topic: now.topic } }).catch((e) => this.groupEvent({ kind: 'server_refused', group: r.group, name: now.name, reason: e.message }));
    }
    return true;
  }

  applyRoster(g, r, signer, quiet) {
    const me = this.identity.keyId;
    const before = g ? new Set(g.roster.members) : new Set();
    const oldOwner = g?.roster.owner;
    const gone = new Set(g?.excluded.keys() ?? []); // already said to have left
    if (!g) {
      g = { id: r.group, roster: r, name: '', topic: '', creator: r.owner, own: null, excluded: new Map(), out: null };
      this.groups.set(r.group, g);
    }
    g.roster = r;
    // A new epoch: fresh chains for everyone; the earlier epochs' chains are of no more use.
    g.own = null;
    for (const id of this.groupChains.keys()) {
      const [group, epoch] = id.split(' ');
      if (group === r.group && Number(epoch) < r.epoch) this.groupChains.delete(id);
    }
    // The server's word excludes until a roster made after it names the member again.
    for (const [k, at] of g.excluded) if (!r.members.includes(k) || r.epoch > at + 1) g.excluded.delete(k);
    const inNow = r.members.includes(me);
    g.out = inNow ? null : 'removed';
    if (!inNow) for (const id of this.groupChains.keys()) if (id.startsWith(`${r.group} `)) this.groupChains.delete(id);
    this.groupsChanged();
    if (quiet) return;
    const by = this.nameOf(signer);
    if (!before.size) {
      this.groupEvent({ kind: 'joined', group: r.group, by, creator: this.nameOf(r.owner), self: signer === me });
      return;
    }
    for (const k of r.members) if (!before.has(k)) this.groupEvent({ kind: 'added', group: r.group, who: this.nameOf(k), by, self: k === me });
    for (const k of before) if (!r.members.includes(k) && !gone.has(k)) this.groupEvent({ kind: 'removed', group: r.group, who: this.nameOf(k), by, self: k === me });
    if (oldOwner && oldOwner !== r.owner) this.groupEvent({ kind: 'owner', group: r.group, who: this.nameOf(r.owner), by, self: r.owner === me });
  }

  /** Signs and sends a roster for `group` (null: a new group) with these members and owner. */
  async proposeRoster(groupId, members, owner, info = null) {
    this.groupsInit();
    if (!this.joined) throw new Error(t('send.not_connected'));
    const g = groupId ? this.groups.get(groupId) : null;
    if (groupId && (!g || g.out)) throw new Error(t('group.err.not_member'));
    const me = this.identity.keyId;
    if (g && g.roster.owner !== me) throw new Error(t('group.err.not_owner'));
    const set = new Set([...members, owner]);
    const max = Number.isSafeInteger(this.limits?.max_group_size) ? this.limits.max_group_size : 64;
    if (set.size > max) throw new Error(t('group.err.too_large', { max }));
    const roster = {
      group: g ? g.id : c.hex(c.randomBytes(16)),
      epoch: g ? g.roster.epoch + 1 : 1,
      owner,
      members: [...set].sort(),
    };
    roster.signature = await c.sign(this.identity, groupCanonical.roster(roster));
    this.proposed.set(roster.group, { roster, info });
    if (!this.send({ type: 'group_roster', roster })) {
      this.proposed.delete(roster.group);
      throw new Error(t('send.not_connected'));
    }
    return roster.group;
  }

  createGroup(name, topic, memberIds) {
    return this.enqueue(() => this.proposeRoster(null, memberIds, this.identity.keyId, { name, topic }));
  }

  changeMembers(groupId, { add = [], remove = [] }) {
    return this.enqueue(() => {
      const g = this.groups.get(groupId);
      const members = [...(g?.roster.members ?? []), ...add].filter((k) => !remove.includes(k));
      return this.proposeRoster(groupId, members, this.identity.keyId, g ? { name: g.name, topic: g.topic } : null);
    });
  }

  handOver(groupId, newOwner) {
    return this.enqueue(() => {
      const g = this.groups.get(groupId);
      if (!g?.roster.members.includes(newOwner)) throw new Error(t('group.err.not_member'));
      return this.proposeRoster(groupId, g.roster.members, newOwner);
    });
  }

  leaveGroup(groupId) {
    return this.enqueue(() => {
      const g = this.groups.get(groupId);
      if (!g || g.out) throw new Error(t('group.err.not_member'));
      if (g.roster.owner === this.identity.keyId && g.roster.members.length > 1) throw new Error(t('group.err.owner_leaves'));
      if (!this.send({ type: 'group_leave', group: groupId })) throw new Error(t('send.not_connected'));
      this.leaving.add(groupId);
      g.out = 'left';
      g.own = null;
      this.groupsChanged();
      this.groupEvent({ kind: 'you_left', group: groupId });
    });
  }

  /** The server took (ack) or refused (error) a roster we sent: true when `id` was one. */
  async rosterAnswered(id, err = null) {
    if (this.leaving?.delete(id)) {
      if (err) this.groupEvent({ kind: 'server_refused', group: id, name: this.groups.get(id)?.name ?? '', reason: serverReason(err.code, err.message) });
      return true;
    }
    const sent = this.proposed?.get(id);
    if (!sent) return false;
    this.proposed.delete(id);
    if (err) {
      this.groupEvent({ kind: 'server_refused', group: id, name: this.groups.get(id)?.name ?? sent.info?.name ?? '', reason: serverReason(err.code, err.message) });
      return true;
    }
    await this.takeRoster(sent.roster);
    const g = this.groups.get(id);
    if (g && sent.info && g.roster.owner === this.identity.keyId) await this.sealGroup(id, { info: sent.info });
    return true;
  }

  onGroupRoster(msg) {
    return this.takeRoster(msg.roster);
  }

  /** The server says a member left the group or the chat: excluded at once; the owner re-signs. */
  async onGroupLeft(msg) {
    this.groupsInit();
    const g = this.groups.get(msg.group);
    const k = msg.key_id;
    if (!g || typeof k !== 'string') return;
    if (k === this.identity.keyId) {
      g.out = g.out ?? 'left';
      g.own = null;
      this.groupsChanged();
      return;
    }
    if (!g.roster.members.includes(k)) return;
    g.excluded.set(k, g.roster.epoch);
    g.own = null;
    for (const id of this.groupChains.keys()) if (id.startsWith(`${g.id} `) && id.split(' ')[2] === k) this.groupChains.delete(id);
    this.groupsChanged();
    this.groupEvent({ kind: msg.reason === 'removed_from_chat' ? 'gone' : 'left', group: g.id, who: this.nameOf(k) });
    if (g.roster.owner === this.identity.keyId && !g.out) {
      try {
        await this.proposeRoster(g.id, g.roster.members.filter((m) => m !== k), this.identity.keyId, { name: g.name, topic: g.topic });
      } catch (e) {
        this.groupEvent({ kind: 'server_refused', group: g.id, name: g.name, reason: e.message });
      }
    }
  }

  onGroupDeleted(msg) {
    this.groupsInit();
    const g = this.groups.get(msg.group);
    if (!g) return;
    g.out = 'deleted';
    g.own = null;
    this.groupsChanged();
    this.groupEvent({ kind: 'deleted', group: g.id, by: msg.by === 'admin' ? 'admin' : 'owner' });
  }

  /**
   * The welcome's rosters: a later one than we accepted is judged as any other; a group we are in
   * that the server no longer routes us in is over for us (excluding needs only its word).
   */
  async welcomeGroups(list) {
    this.groupsInit();
    if (!Array.isArray(list)) return;
    for (const r of list) {
      const g = this.groups.get(r?.group);
      if (!g || r.epoch > g.roster.epoch) await this.takeRoster(r);
    }
    for (const g of this.groups.values()) {
      if (g.out || list.some((r) => r?.group === g.id)) continue;
      g.out = 'left';
      g.own = null;
    }
  }

  // ------------------------------------------------------------ across reloads

  groupSnapshot() {
    this.groupsInit();
    const b64 = c.b64encode;
    const now = Date.now();
    return {
      groups: [...this.groups.values()].map((g) => ({
        roster: g.roster,
        name: g.name,
        topic: g.topic,
        creator: g.creator,
        out: g.out,
        excluded: [...g.excluded],
        own: g.own && {
          epoch: g.own.epoch, skid: g.own.skid, ck: b64(g.own.ck), n: g.own.n, given: [...g.own.given],
          recent: g.own.recent.filter((r) => now - r.t <= RECENT_TTL).map((r) => ({ n: r.n, ck: b64(r.ck), t: r.t })),
        },
      })),
      groupPending: (this.groupPending ?? []).map((p) => ({ t: p.t, msg: p.msg })),
      groupChains: [...this.groupChains].map(([id, ch]) => [id, { ck: b64(ch.ck), n: ch.n, skipped: [...ch.skipped].map(([n, mk]) => [n, b64(mk)]) }]),
    };
  }

  groupRestore(state) {
    const b = c.b64decode;
    const groups = new Map();
    for (const s of state.groups ?? []) {
      const roster = checkRoster(s.roster);
      const own = s.own && {
        epoch: s.own.epoch, skid: String(s.own.skid), ck: b(s.own.ck), n: Number(s.own.n) || 0, given: new Set(s.own.given),
        recent: (s.own.recent || []).map((r) => ({ n: r.n, ck: b(r.ck), t: r.t })), signed: null,
      };
      groups.set(roster.group, {
        id: roster.group, roster, name: String(s.name ?? ''), topic: String(s.topic ?? ''), creator: String(s.creator ?? roster.owner),
        out: s.out ?? null, excluded: new Map(s.excluded ?? []), own,
      });
    }
    const chains = new Map((state.groupChains ?? []).map(([id, ch]) => [id, { ck: b(ch.ck), n: ch.n, skipped: new Map(ch.skipped.map(([n, mk]) => [n, b(mk)])) }]));
    this.groups = groups;
    this.groupChains = chains;
    this.groupPending = (state.groupPending ?? []).slice(-64);
  }
}

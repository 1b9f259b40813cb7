// Unit tests of assets/groups.js under Node: Chat endpoints wired through an in-memory relay that
// routes groups as docs/PROTOCOL.md ("Groups") says the server does, and, for the forgeries, a
// relay that lies: an altered roster, an older epoch replayed, a roster signed by someone else, a
// ghost key routed in. Each is refused (reported, state unchanged) or gets nothing it can open.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as c from '../../assets/crypto.js';
import { Chat } from '../../assets/session.js';
import { checkRoster, groupCanonical } from '../../assets/groups.js';

let ids;
before(async () => {
  ids = {};
  for (const name of ['alice', 'bobby', 'carol', 'david', 'ghost']) ids[name] = await c.generateIdentity(2048);
});

const member = (ch) => ({ name: ch.name, key_id: ch.identity.keyId, admin: false });

/** A relay that numbers frames per member, answers get_keys, and routes groups by its rosters. */
class Relay {
  constructor() {
    this.chats = new Map();
    this.queue = [];
    this.rosters = new Map(); // group -> roster the "server" holds
    this.extra = new Map(); // group -> key IDs a lying server routes to besides the roster
  }

  endpoint(name) {
    const events = { messages: [], rejected: [], groupEvents: [], groups: [] };
    const chat = new Chat({
      identity: ids[name],
      name,
      url: 'ws://unused',
      hooks: {
        message: (m) => events.messages.push(m),
        rejected: (r) => events.rejected.push(r),
        groupEvent: (e) => events.groupEvents.push(e),
        groups: (list) => (events.groups = list),
      },
    });
    clearInterval(chat.sweeper);
    chat.events = events;
    chat.seqOut = 0;
    chat.ws = {
      readyState: 1,
      send: (text) => {
        const msg = JSON.parse(text);
        if (msg.type === 'get_keys') {
          const keys = {};
          for (const k of msg.key_ids) {
            const id = Object.values(ids).find((i) => i.keyId === k);
            if (id) keys[k] = id.publicB64;
          }
          queueMicrotask(() => chat.receiveNow(JSON.stringify({ type: 'keys', keys, unknown: [] })));
          return;
        }
        this.queue.push({ from: chat, msg });
      },
      close() {},
    };
    return chat;
  }

  async add(name) {
    const chat = this.endpoint(name);
    for (const other of this.chats.values()) await this.frame(other, { type: 'joined', member: member(chat) });
    this.chats.set(name, chat);
    await chat.receive(JSON.stringify({
      type: 'welcome', you: member(chat), members: [...this.chats.values()].map(member), away: [], resumed: false, seq: 0,
      options: { disable_all: false }, limits: { max_text: 32768, max_group_size: 64 }, time: Date.now(),
    }));
    return chat;
  }

  byKey(k) {
    return [...this.chats.values()].find((ch) => ch.identity.keyId === k);
  }

  frame(chat, msg) {
    chat.seqOut += 1;
    return chat.receive(JSON.stringify({ seq: chat.seqOut, ...msg }));
  }

  routeTo(group) {
    return [...(this.rosters.get(group)?.members ?? []), ...(this.extra.get(group) ?? [])];
  }

  /** Hands over everything sent; `filter(to, out)` may drop (false) or replace a frame. */
  async deliver(filter = () => true) {
    while (this.queue.length) {
      const { from, msg } = this.queue.shift();
      const fromField = { name: from.name, key_id: from.identity.keyId };
      const out = [];
      if (msg.type === 'group_roster') {
        const r = msg.roster;
        const before = this.rosters.get(r.group);
        this.rosters.set(r.group, r);
        await from.receive(JSON.stringify({ type: 'ack', id: r.group }));
        const to = new Set([...r.members, ...(before?.members ?? [])]);
        for (const k of to) out.push([k, { type: 'group_roster', roster: r, by: from.identity.keyId }]);
      } else if (msg.type === 'group_leave') {
        const r = this.rosters.get(msg.group);
        for (const k of r.members) if (k !== from.identity.keyId) out.push([k, { type: 'group_left', group: msg.group, key_id: from.identity.keyId, reason: 'left' }]);
        this.rosters.set(msg.group, { ...r, members: r.members.filter((k) => k !== from.identity.keyId) });
      } else if (msg.type === 'group') {
        await from.receive(JSON.stringify({ type: 'ack', id: msg.id }));
        for (const k of this.routeTo(msg.group)) if (k !== from.identity.keyId) out.push([k, { ...msg, from: fromField }]);
      } else if (msg.type === 'sender_key' && msg.group) {
        const { keys, ...rest } = msg;
        const routed = new Set(this.routeTo(msg.group));
        for (const [k, wrapped] of Object.entries(keys)) if (routed.has(k)) out.push([k, { ...rest, from: fromField, wrapped }]);
      } else if (msg.type === 'key_request') {
        out.push([msg.to, { ...msg, from: fromField }]);
      }
      for (const [k, frame] of out) {
        const to = this.byKey(k);
        if (!to) continue;
        const verdict = filter(to, frame);
        if (verdict === false) continue;
        await this.frame(to, verdict === true ? frame : verdict);
      }
    }
  }
}

const texts = (chat, group) => chat.events.messages.filter((m) => m.to.kind === 'group' && m.to.group === group).map((m) => m.text);
const kinds = (chat) => chat.events.groupEvents.map((e) => e.kind);
const epochOf = (chat, group) => chat.groups.get(group)?.roster.epoch;

async function threeInAGroup() {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  const carol = await relay.add('carol');
  const group = await alice.createGroup('medics', 'north gate', [bobby.identity.keyId, carol.identity.keyId]);
  await relay.deliver();
  return { relay, alice, bobby, carol, group };
}

test('a created group reaches its members with its name, and its messages open for them only', async () => {
  const { relay, alice, bobby, carol, group } = await threeInAGroup();
  const david = await relay.add('david');
  for (const ch of [alice, bobby, carol]) {
    assert.equal(epochOf(ch, group), 1);
    assert.equal(ch.groups.get(group).name, 'medics');
    assert.equal(ch.groups.get(group).topic, 'north gate');
  }
  assert.equal(bobby.events.groupEvents[0].kind, 'joined');
  assert.equal(bobby.events.groupEvents[0].creator, 'alice');
  await bobby.sendGroup(group, 'hello group');
  await relay.deliver();
  assert.deepEqual(texts(alice, group), ['hello group']);
  assert.deepEqual(texts(carol, group), ['hello group']);
  assert.equal(david.groups.size, 0);
  // bob's sender key was wrapped for the roster only.
  for (const ch of [alice, bobby, carol]) assert.deepEqual(ch.events.rejected, []);
});

test('an added member reads what comes after, not what was written before; a removed one the reverse', async () => {
  const { relay, alice, bobby, carol, group } = await threeInAGroup();
  const david = await relay.add('david');
  await carol.sendGroup(group, 'before david');
  const early = [];
  await relay.deliver((to, m) => (m.type === 'group' && early.push(m), true));
  await alice.changeMembers(group, { add: [david.identity.keyId] });
  await relay.deliver();
  assert.equal(epochOf(david, group), 2);
  assert.ok(kinds(bobby).includes('added'));
  assert.equal(bobby.events.groupEvents.find((e) => e.kind === 'added').who, 'david');
  assert.equal(bobby.events.groupEvents.find((e) => e.kind === 'added').by, 'alice');
  // The message of epoch 1, given to david anyway: refused, never opened.
  await relay.frame(david, early[0]);
  assert.deepEqual(texts(david, group), []);
  assert.match(david.events.rejected.at(-1).reason, /version 1, this device has 2/);
  await carol.sendGroup(group, 'with david');
  await relay.deliver();
  assert.deepEqual(texts(david, group), ['with david']);
  // carol is removed: a new epoch, new chains she never gets.
  await alice.changeMembers(group, { remove: [carol.identity.keyId] });
  await relay.deliver();
  assert.equal(carol.groups.get(group).out, 'removed');
  assert.ok(kinds(carol).includes('removed'));
  const after = [];
  await bobby.sendGroup(group, 'without carol');
  await relay.deliver((to, m) => (m.type === 'group' && after.push(m), true));
  assert.deepEqual(texts(david, group), ['with david', 'without carol']);
  // Routed to carol anyway (a lying server): she has no chain for it.
  await relay.frame(carol, after[0]);
  assert.ok(!texts(carol, group).includes('without carol'));
  assert.match(carol.events.rejected.at(-1).reason, /no longer in this group/);
  const sk = bobby.groups.get(group).own;
  assert.equal(sk.epoch, 3);
  assert.ok(!sk.given.has(carol.identity.keyId));
});

test('ownership handed over: the new owner signs the next roster; a leaver is dropped by the owner automatically', async () => {
  const { relay, alice, bobby, carol, group } = await threeInAGroup();
  await alice.handOver(group, bobby.identity.keyId);
  const infos = [];
  await relay.deliver((to, m) => (m.type === 'group' && infos.push(m), true));
  // The new owner says the name under the new epoch.
  assert.ok(infos.some((m) => m.from.key_id === bobby.identity.keyId && m.epoch === 2));
  for (const ch of [alice, bobby, carol]) assert.equal(ch.groups.get(group).roster.owner, bobby.identity.keyId);
  assert.ok(kinds(carol).includes('owner'));
  await assert.rejects(alice.changeMembers(group, { remove: [carol.identity.keyId] }), /owner/);
  // carol leaves: the others exclude her at once, bob (the owner) signs epoch 3 without her.
  await carol.leaveGroup(group);
  await relay.deliver();
  for (const ch of [alice, bobby]) {
    assert.equal(epochOf(ch, group), 3);
    assert.deepEqual(ch.groups.get(group).roster.members, [alice.identity.keyId, bobby.identity.keyId].sort());
    assert.ok(kinds(ch).includes('left'));
  }
  await alice.sendGroup(group, 'just us');
  await relay.deliver();
  assert.deepEqual(texts(bobby, group), ['just us']);
  assert.deepEqual(texts(carol, group), []);
});

test('forged rosters are refused with a reason and change nothing', async () => {
  const { relay, alice, bobby, carol, group } = await threeInAGroup();
  const david = await relay.add('david');
  const current = bobby.groups.get(group).roster;
  const refusedSince = (ch, n) => ch.events.groupEvents.slice(n).filter((e) => e.kind === 'refused');
  let n = bobby.events.groupEvents.length;
  // Altered: david slipped into the members, the owner's signature kept.
  const altered = { ...current, epoch: 2, members: [...current.members, david.identity.keyId].sort() };
  await relay.frame(bobby, { type: 'group_roster', roster: altered, by: alice.identity.keyId });
  assert.equal(epochOf(bobby, group), 1);
  assert.match(refusedSince(bobby, n)[0].reason, /signed/);
  // Signed by someone else (carol, not the owner), with david in.
  n = bobby.events.groupEvents.length;
  const byCarol = { group, epoch: 2, owner: current.owner, members: altered.members };
  byCarol.signature = await c.sign(ids.carol, groupCanonical.roster(byCarol));
  await relay.frame(bobby, { type: 'group_roster', roster: byCarol, by: alice.identity.keyId });
  assert.equal(epochOf(bobby, group), 1);
  assert.match(refusedSince(bobby, n)[0].reason, /signed/);
  // Older epoch replayed: epoch 1 after epoch 2.
  await alice.changeMembers(group, { remove: [carol.identity.keyId] });
  await relay.deliver();
  assert.equal(epochOf(bobby, group), 2);
  n = bobby.events.groupEvents.length;
  await relay.frame(bobby, { type: 'group_roster', roster: current, by: alice.identity.keyId });
  assert.equal(epochOf(bobby, group), 2);
  assert.match(refusedSince(bobby, n)[0].reason, /epoch/);
  // A group "created" for david by carol that names a ghost as owner: refused (owner not here).
  const ghostly = { group: 'ab'.repeat(16), epoch: 1, owner: ids.ghost.keyId, members: [ids.ghost.keyId, david.identity.keyId].sort() };
  ghostly.signature = await c.sign(ids.ghost, groupCanonical.roster(ghostly));
  await relay.frame(david, { type: 'group_roster', roster: ghostly, by: ids.ghost.keyId });
  assert.equal(david.groups.size, 0);
  assert.equal(kinds(david).at(-1), 'refused');
  // Malformed: members unsorted.
  const unsorted = { ...current, epoch: 5, members: [...current.members].reverse() };
  await relay.frame(alice, { type: 'group_roster', roster: unsorted, by: alice.identity.keyId });
  assert.equal(kinds(alice).at(-1), 'refused');
  assert.throws(() => checkRoster(unsorted));
});

test('a ghost key routed in by the server receives nothing it can open', async () => {
  const { relay, alice, bobby, group } = await threeInAGroup();
  const ghost = await relay.add('ghost');
  relay.extra.set(group, [ghost.identity.keyId]);
  const got = [];
  await alice.sendGroup(group, 'secret');
  await bobby.sendGroup(group, 'also secret');
  await relay.deliver((to, m) => (to === ghost && got.push(m), true));
  // The ghost gets the messages routed, but no member wrapped a sender key for it.
  assert.ok(got.some((m) => m.type === 'group'));
  assert.ok(!got.some((m) => m.type === 'sender_key'));
  for (const ch of [alice, bobby]) assert.ok(!ch.groups.get(group).own.given.has(ghost.identity.keyId));
  assert.deepEqual(texts(ghost, group), []);
  // The ghost asks for the key: members answer only roster members.
  const m = got.find((x) => x.type === 'group');
  await relay.frame(alice, { type: 'key_request', group, to: alice.identity.keyId, skid: m.skid, n: m.n, from: { name: 'ghost', key_id: ghost.identity.keyId } });
  await relay.deliver((to, out) => (to === ghost && got.push(out), true));
  assert.ok(!got.some((x) => x.type === 'sender_key'));
});

test('the server saying a member left excludes it at once: the next message uses a fresh chain not given to it', async () => {
  const { relay, alice, bobby, carol, group } = await threeInAGroup();
  await bobby.sendGroup(group, 'one');
  await relay.deliver();
  const before = bobby.groups.get(group).own.skid;
  // The server says carol left (it cannot add anyone; excluding is allowed); the roster still has her.
  await relay.frame(bobby, { type: 'group_left', group, key_id: carol.identity.keyId, reason: 'removed_from_chat' });
  await bobby.sendGroup(group, 'two');
  const sent = relay.queue.filter((q) => q.from === bobby).map((q) => q.msg);
  const sk = sent.find((m) => m.type === 'sender_key');
  assert.notEqual(sk.skid, before);
  assert.deepEqual(Object.keys(sk.keys), [alice.identity.keyId]);
});

test('groups, their keys and chains survive a snapshot and restore', async () => {
  const { relay, alice, bobby, carol, group } = await threeInAGroup();
  await alice.sendGroup(group, 'kept');
  await relay.deliver();
  const snap = JSON.parse(JSON.stringify(bobby.snapshot()));
  const again = relay.endpoint('bobby');
  await again.restore(snap);
  assert.equal(again.groups.get(group).name, 'medics');
  assert.equal(again.groups.get(group).roster.epoch, 1);
  assert.equal(again.groupChains.size, bobby.groupChains.size);
  // A message waiting for its sender key when the page reloads still opens once the key comes.
  await carol.sendGroup(group, 'waited');
  const held = [];
  await relay.deliver((to, m) => (to === bobby ? (held.push(m), false) : true));
  await relay.frame(bobby, held.find((m) => m.type === 'group'));
  assert.equal(bobby.groupPending.length, 1);
  const later = relay.endpoint('bobby');
  await later.restore(JSON.parse(JSON.stringify(bobby.snapshot())));
  later.joined = true;
  await later.receive(JSON.stringify({ seq: 1000, ...held.find((m) => m.type === 'sender_key') }));
  assert.deepEqual(texts(later, group), ['waited']);
});

test('refusals: a non-member\'s message, a non-owner\'s name, the server\'s error, limits, the owner leaving first', async () => {
  const { relay, alice, bobby, carol, group } = await threeInAGroup();
  const david = await relay.add('david');
  // david (not on the roster) writes to the group anyway, the server routing it: refused.
  david.groupsInit();
  david.groups.set(group, { ...alice.groups.get(group), own: null, excluded: new Map(), out: null });
  await david.sendGroup(group, 'let me in');
  await relay.deliver();
  assert.ok(!texts(bobby, group).includes('let me in'));
  assert.match(bobby.events.rejected.at(-1).reason, /not on the group/);
  // bobby (not the owner) sends a name: refused, the owner's stays.
  await bobby.enqueue(() => bobby.sealGroup(group, { info: { name: 'hijacked', topic: '' } }));
  await relay.deliver();
  assert.equal(carol.groups.get(group).name, 'medics');
  assert.match(carol.events.rejected.at(-1).reason, /not its owner/);
  // A body that is neither text nor info: refused.
  await bobby.enqueue(() => bobby.sealGroup(group, { what: 1 }));
  await relay.deliver();
  assert.match(carol.events.rejected.at(-1).reason, /cannot be read/);
  // The server refuses a roster: said, nothing changed.
  const n = alice.events.groupEvents.length;
  await alice.changeMembers(group, { remove: [carol.identity.keyId] });
  relay.queue = [];
  await alice.receive(JSON.stringify({ type: 'error', code: 'stale_epoch', message: 'epoch 2 is not current + 1', id: group }));
  assert.deepEqual(kinds(alice).slice(n), ['server_refused']);
  assert.equal(epochOf(alice, group), 1);
  // Limits and rules checked before anything is sent.
  alice.limits.max_group_size = 2;
  await assert.rejects(alice.changeMembers(group, { add: [david.identity.keyId] }), /at most 2 members/);
  await assert.rejects(alice.leaveGroup(group), /Hand the group over/);
  await assert.rejects(bobby.changeMembers(group, { remove: [carol.identity.keyId] }), /Only the group/);
});

test('a welcome that no longer routes us in a group ends it for us; a later roster in it is judged', async () => {
  const { relay, alice, bobby, carol, group } = await threeInAGroup();
  await alice.changeMembers(group, { remove: [carol.identity.keyId] });
  const later = [];
  await relay.deliver((to, m) => {
    if (m.type !== 'group_roster' || (to !== bobby && to !== carol)) return true;
    if (to === bobby) later.push(m.roster);
    return false;
  });
  assert.equal(carol.groups.get(group).out, null);
  assert.equal(epochOf(bobby, group), 1);
  // bobby comes back: the welcome carries epoch 2, accepted as any roster would be.
  await bobby.receive(JSON.stringify({ type: 'welcome', you: { name: 'bobby', key_id: bobby.identity.keyId }, members: [...relay.chats.values()].map(member), away: [], resumed: true, seq: 0, options: {}, limits: {}, time: Date.now(), groups: later }));
  assert.equal(epochOf(bobby, group), 2);
  assert.ok(kinds(bobby).includes('removed'));
  // carol comes back: the welcome lists no group for her.
  await carol.receive(JSON.stringify({ type: 'welcome', you: { name: 'carol', key_id: carol.identity.keyId }, members: [...relay.chats.values()].map(member), away: [], resumed: true, seq: 0, options: {}, limits: {}, time: Date.now(), groups: [] }));
  assert.equal(carol.groups.get(group).out, 'left');
  await assert.rejects(carol.sendGroup(group, 'still here?'), /not a member/);
});


// Unit tests of assets/protocol.js under Node: Chat endpoints wired through a tiny in-memory
// relay that does what docs/PROTOCOL.md says the server does (sender fields, per-recipient keys).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as c from '../../assets/crypto.js';
import { Chat, backoffDelay, closeMeaning, gapText, untilText } from '../../assets/session.js';
import { moderation } from '../../assets/meaning.js';

let ids;
before(async () => {
  ids = {};
  for (const name of ['alice', 'bobby', 'carol']) ids[name] = await c.generateIdentity(2048);
});

const member = (ch) => ({ name: ch.name, key_id: ch.identity.keyId, admin: false });

/** The server's answer to `get_keys`: the keys of the test's identities, the others unknown. */
function keysAnswer(msg) {
  const known = new Map(Object.values(ids).map((id) => [id.keyId, id.publicB64]));
  const keys = {};
  const unknown = [];
  for (const k of msg.key_ids) (known.has(k) ? (keys[k] = known.get(k)) : unknown.push(k));
  return { type: 'keys', keys, unknown };
}

/**
 * Endpoints joined to one relay that numbers every frame per member (`seq`), acknowledges
 * accepted messages (`ack {id}`) and answers duplicates as the server does; `deliver()` hands
 * over everything sent so far.
 */
class Relay {
  constructor() {
    this.chats = new Map(); // name -> chat
    this.queue = [];
    this.accepted = new Set(); // message ids the "server" took
    this.tamper = (answer) => answer; // what a hostile server does to `keys` answers
  }

  /** A Chat with a fake open socket; `state`/`save` as for a reload. */
  endpoint(name, { state = null, save = null } = {}) {
    const events = { messages: [], rejected: [], acks: [], refused: [], delivery: [], gaps: [], presence: [], states: [] };
    const chat = new Chat({
      identity: ids[name],
      name,
      url: 'ws://unused',
      state,
      save,
      hooks: {
        message: (m) => events.messages.push(m),
        rejected: (r) => events.rejected.push(r),
        ack: (id) => events.acks.push(id),
        refused: (r) => events.refused.push(r),
        delivery: (d) => events.delivery.push(d),
        gap: (g) => events.gaps.push(g),
        presence: (p) => events.presence.push(p),
        state: (s) => events.states.push(s),
      },
    });
    clearInterval(chat.sweeper);
    chat.events = events;
    chat.sent = [];
    chat.asked = []; // key IDs it asked for with get_keys
    chat.seqOut = 0; // the relay's numbering of frames for this member
    this.connect(chat);
    return chat;
  }

  /** Gives `chat` a fresh "connection" (the old one, if any, is dead). */
  connect(chat) {
    chat.ws = {
      readyState: 1,
      send: (text) => {
        const msg = JSON.parse(text);
        // Answered at once, on the connection, as the server does (no seq); `tamper` may alter it.
        if (msg.type === 'get_keys') {
          chat.asked.push(...msg.key_ids);
          queueMicrotask(() => chat.receiveNow(JSON.stringify(this.tamper(keysAnswer(msg)))));
          return;
        }
        chat.sent.push(msg);
        this.queue.push({ from: chat, msg });
      },
      close() {},
    };
  }

  async add(name, opts) {
    const chat = this.endpoint(name, opts);
    for (const other of this.chats.values()) await this.frame(other, { type: 'joined', member: member(chat) });
    this.chats.set(name, chat);
    await this.welcome(chat, false);
    return chat;
  }

  async welcome(chat, resumed, extra = {}) {
    if (!resumed) chat.seqOut = 0;
    await chat.receive(
      JSON.stringify({
        type: 'welcome',
        you: member(chat),
        members: [...this.chats.values()].map(member),
        away: [],
        resumed,
        seq: chat.seqOut,
        options: { admin_name: 'ADMIN', disable_all: false, only_admin: false, remember: true },
        limits: { max_text: 32768 },
        time: Date.now(),
        ...extra,
      }),
    );
  }

  /** A sequenced frame to `chat`. */
  frame(chat, msg) {
    chat.seqOut += 1;
    return chat.receive(JSON.stringify({ seq: chat.seqOut, ...msg }));
  }

  async leave(name) {
    const chat = this.chats.get(name);
    this.chats.delete(name);
    for (const other of this.chats.values()) {
      await this.frame(other, { type: 'left', key_id: chat.identity.keyId, name, reason: 'left' });
    }
  }

  byKey(keyId) {
    return [...this.chats.values()].find((ch) => ch.identity.keyId === keyId);
  }

  /** What the server would send for `msg` from `chat`: [[recipient, message]]. */
  route(chat, msg) {
    const from = { name: chat.name, key_id: chat.identity.keyId };
    const { type, keys, ...rest } = msg;
    if (type === 'direct') return [[this.byKey(msg.to), { type, ...rest, from, key: keys[msg.to] }]];
    if (type === 'all') return [...this.chats.values()].filter((o) => o !== chat).map((o) => [o, { type, ...rest, from }]);
    if (type === 'sender_key') {
      return Object.entries(keys).map(([k, wrapped]) => [
        this.byKey(k),
        { type, from, skid: msg.skid, n: msg.n, commitment: msg.commitment, signature: msg.signature, wrapped },
      ]);
    }
    if (type === 'key_request') return [[this.byKey(msg.to), { type, from, skid: msg.skid, n: msg.n }]];
    return [];
  }

  /**
   * Delivers what was sent; `filter(recipient, message)` may drop (false) or replace it. Filtered
   * messages carry no `seq` yet: the relay numbers what it hands over.
   */
  async deliver(filter = () => true) {
    while (this.queue.length) {
      const { from, msg } = this.queue.shift();
      if (msg.id) {
        if (this.accepted.has(msg.id)) {
          await from.receive(JSON.stringify({ type: 'error', code: 'duplicate_id', message: 'seen', id: msg.id }));
          continue;
        }
        this.accepted.add(msg.id);
        await from.receive(JSON.stringify({ type: 'ack', id: msg.id }));
      }
      for (const [to, out] of this.route(from, msg)) {
        if (!to) continue;
        const verdict = filter(to, out);
        if (verdict === false) continue;
        await this.frame(to, verdict === true ? out : verdict);
      }
    }
  }
}

const texts = (chat) => chat.events.messages.map((m) => m.text);

test('direct messages wrap a fresh key for the recipient and the sender, and open', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  const record = await alice.sendDirect(bobby.identity.keyId, 'hi bob');
  assert.equal(record.local, true);
  const sent = alice.sent.at(-1);
  assert.deepEqual(Object.keys(sent.keys).sort(), [alice.identity.keyId, bobby.identity.keyId].sort());
  assert.ok(await c.verify(ids.alice.verifyKey, c.canonical.direct(sent, ids.alice.keyId), sent.signature));
  await relay.deliver();
  assert.deepEqual(texts(bobby), ['hi bob']);
  assert.equal(bobby.events.messages[0].from.name, 'alice');
  assert.equal(bobby.events.messages[0].to.keyId, bobby.identity.keyId);
  // The sender's own wrapped key opens it too (what the admin's other endpoint relies on).
  const own = await c.unwrap(ids.alice, sent.keys[ids.alice.keyId]);
  assert.equal(await c.open(own, sent.iv, sent.ciphertext), 'hi bob');
});

test('@all hands out the sender key once, then only messages; out-of-order messages open', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  const carol = await relay.add('carol');
  await alice.sendAll('one');
  assert.deepEqual(alice.sent.map((m) => m.type), ['sender_key', 'all']);
  assert.deepEqual(Object.keys(alice.sent[0].keys).sort(), [bobby.identity.keyId, carol.identity.keyId].sort());
  await alice.sendAll('two');
  await alice.sendAll('three');
  await alice.sendAll('four');
  assert.deepEqual(alice.sent.map((m) => m.type), ['sender_key', 'all', 'all', 'all', 'all']);
  assert.deepEqual(alice.sent.slice(1).map((m) => m.n), [0, 1, 2, 3]);
  // bob gets them in the order 0, 3, 1, 2: the skipped keys are kept.
  const held = [];
  await relay.deliver((to, m) => {
    if (to === bobby && m.type === 'all' && (m.n === 1 || m.n === 2)) {
      held.push(m);
      return false;
    }
    return true;
  });
  for (const m of held) await bobby.receive(JSON.stringify(m));
  assert.deepEqual(texts(bobby), ['one', 'four', 'two', 'three']);
  assert.deepEqual(texts(carol), ['one', 'two', 'three', 'four']);
  assert.deepEqual(bobby.events.rejected, []);
});

test('a repeated @all is dropped quietly, and a message key opens once only', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  await alice.sendAll('once');
  let copy;
  await relay.deliver((to, m) => {
    if (m.type === 'all') copy = m;
    return true;
  });
  await bobby.receive(JSON.stringify(copy));
  assert.deepEqual(texts(bobby), ['once']);
  assert.deepEqual(bobby.events.rejected, []);
  bobby.seen.clear(); // as if the id had been forgotten: the used key still is
  await bobby.receive(JSON.stringify(copy));
  assert.deepEqual(texts(bobby), ['once']);
  assert.match(bobby.events.rejected[0].reason, /already used/);
});

test('a chain index that jumps more than 2000 ahead is refused', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  await alice.sendAll('first');
  await relay.deliver();
  alice.own.n = 2002; // bob holds n = 1 now
  await alice.sendAll('far ahead');
  await relay.deliver();
  assert.deepEqual(texts(bobby), ['first']);
  assert.match(bobby.events.rejected[0].reason, /jumps too far ahead/);
});

test('when a member leaves, senders rotate and the leaver is not given the new key', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  const carol = await relay.add('carol');
  await alice.sendAll('before');
  await carol.sendAll('from carol');
  await relay.deliver();
  const oldSkid = alice.own.skid;
  assert.equal(bobby.chains.size, 2);
  await relay.leave('carol');
  assert.notEqual(alice.own.skid, oldSkid);
  assert.equal(alice.own.n, 0);
  assert.equal([...bobby.chains.keys()].some((k) => k.startsWith(carol.identity.keyId)), false, "carol's chain is forgotten");
  alice.sent.length = 0;
  await alice.sendAll('after');
  assert.deepEqual(Object.keys(alice.sent[0].keys), [bobby.identity.keyId]);
  await relay.deliver();
  assert.deepEqual(texts(bobby), ['before', 'from carol', 'after']);
});

test('"joined" for a known key (the admin web seat) makes the next @all give the key again', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  await alice.sendAll('one');
  await relay.deliver();
  alice.sent.length = 0;
  const member = { name: 'bobby', key_id: bobby.identity.keyId, admin: false };
  await alice.receive(JSON.stringify({ type: 'joined', member }));
  await alice.sendAll('two');
  assert.deepEqual(alice.sent.map((m) => m.type), ['sender_key', 'all']);
  assert.equal(alice.sent[0].n, 1, 'the current state, not the first one');
  await relay.deliver();
  assert.deepEqual(texts(bobby), ['one', 'two']);
});

test('key requests are answered for the current key, recent messages and members only', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  await alice.sendAll('lost key');
  // The sender key to bob is lost, and so is the answer to bob's request: bob parks the
  // message and asks once.
  await relay.deliver((to, m) => !(to === bobby && m.type === 'sender_key'));
  assert.deepEqual(texts(bobby), []);
  assert.equal(bobby.pending.length, 1);
  const asks = bobby.sent.filter((m) => m.type === 'key_request');
  assert.deepEqual(asks.map(({ to, skid, n }) => ({ to, skid, n })), [{ to: alice.identity.keyId, skid: alice.own.skid, n: 0 }]);
  const answer = alice.sent.at(-1);
  assert.equal(answer.type, 'sender_key');
  assert.equal(answer.n, 0);
  assert.deepEqual(Object.keys(answer.keys), [bobby.identity.keyId]);
  // The answer comes through this time.
  relay.queue.push({ from: alice, msg: answer });
  await relay.deliver();
  assert.deepEqual(texts(bobby), ['lost key']);
  assert.equal(bobby.pending.length, 0);

  // Not answered: an old skid, a message older than 10 s, a non-member.
  const before = alice.sent.length;
  const asker = { name: 'bobby', key_id: bobby.identity.keyId };
  await alice.receive(JSON.stringify({ type: 'key_request', from: asker, skid: 'f'.repeat(32), n: 0 }));
  alice.own.recent[0].t -= 11_000;
  await alice.receive(JSON.stringify({ type: 'key_request', from: asker, skid: alice.own.skid, n: 0 }));
  await alice.sendAll('recent');
  const after = alice.sent.length;
  await alice.receive(JSON.stringify({ type: 'key_request', from: { name: 'eve', key_id: 'e'.repeat(64) }, skid: alice.own.skid, n: 1 }));
  assert.equal(alice.sent.length, after);
  assert.equal(after - before, 1, 'only the new @all was sent');
});

test('messages from unknown senders, with bad signatures or stale times are refused', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  await alice.sendDirect(bobby.identity.keyId, 'genuine');
  const msgs = [];
  await relay.deliver((to, m) => {
    msgs.push(m);
    return false;
  });
  const [m] = msgs;
  await bobby.receive(JSON.stringify({ ...m, from: { name: 'eve', key_id: 'e'.repeat(64) } }));
  await bobby.receive(JSON.stringify({ ...m, from: { name: 'bobby', key_id: bobby.identity.keyId } }));
  await bobby.receive(JSON.stringify({ ...m, iv: c.b64encode(c.randomBytes(12)) }));
  bobby.offset += 6 * 60_000; // bob's corrected clock is now 6 minutes ahead of the message
  await bobby.receive(JSON.stringify(m));
  assert.deepEqual(texts(bobby), []);
  assert.deepEqual(bobby.events.rejected.map((r) => r.reason), [
    'the sender is not a known member',
    'its signature does not verify',
    'its signature does not verify',
    'its time is too far from the server\u2019s clock (stale or replayed)',
  ]);
  bobby.offset -= 6 * 60_000;
  await bobby.receive(JSON.stringify(m));
  assert.deepEqual(texts(bobby), ['genuine']);
});

test('close codes: reconnect after losses, never after kicks, takeovers and join refusals', () => {
  for (const code of [1000, 1001, 1002, 1006, 1009, 4002, 4003]) assert.equal(closeMeaning(code).retry, true, code);
  assert.deepEqual(closeMeaning(4000), { text: 'You were kicked by the admin.', retry: false, kind: 'kicked', until: null });
  const until = Date.now() + 5 * 60_000;
  assert.deepEqual(closeMeaning(4000, null, { code: 'kicked', until }), { text: 'You were kicked by the admin.', retry: false, kind: 'kicked', until });
  assert.deepEqual(closeMeaning(4000, null, { code: 'banned', until: null }), { text: 'You were banned by the admin.', retry: false, kind: 'banned', until: null });
  assert.deepEqual(closeMeaning(4006), { text: 'This chat was opened somewhere else (another tab or device).', retry: false, kind: 'replaced' });
  assert.equal(closeMeaning(4001).retry, false);
  assert.deepEqual(closeMeaning(4007), { text: 'The chat was ended: the server stopped and erased everything it held. There is nothing to reconnect to.', retry: false, kind: 'ended' });
  for (const code of ['name_taken', 'bad_name', 'bad_proof', 'not_allowed', 'bad_key', 'banned']) {
    assert.equal(closeMeaning(4005, { code, message: 'm' }).retry, false, code);
  }
  assert.deepEqual(closeMeaning(4005, { code: 'banned', message: 'banned', until }), {
    text: 'The admin does not let you in at the moment.', retry: false, kind: 'banned', until,
  });
  assert.match(closeMeaning(4005, { code: 'bad_name', message: 'the name admin is reserved' }).text, /the name admin is reserved/);
  assert.equal(closeMeaning(4005, { code: 'join_timeout', message: 'too slow' }).retry, true);
  assert.equal(closeMeaning(4005, { code: 'too_many_joins', message: 'slow down' }).retry, true);
  assert.equal(closeMeaning(4005, { code: 'server_full', message: 'full' }).retry, false, 'server_full is gone from the protocol');
  assert.match(closeMeaning(4005, { code: 'name_taken', message: 'the name alice is taken' }).text, /the name alice is taken/);
  // Exponential backoff with jitter, capped at 30 s.
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(30000, 1000 * 2 ** attempt);
    for (let i = 0; i < 20; i++) {
      const d = backoffDelay(attempt);
      assert.ok(d >= ceiling / 2 && d <= ceiling, `${attempt}: ${d}`);
    }
  }
});

const acks = (chat) => chat.sent.filter((m) => m.type === 'ack').map((m) => m.seq);
const settle = (chat) => chat.enqueue(() => {});

test('frames are acknowledged after 64 and within a second; repeats of a seq are dropped', async (t) => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  t.after(() => [alice, bobby].forEach((ch) => ch.dispose()));
  for (let i = 0; i < 70; i++) await alice.sendDirect(bobby.identity.keyId, `m${i}`);
  await relay.deliver();
  await settle(bobby);
  assert.equal(texts(bobby).length, 70);
  assert.deepEqual(acks(bobby), [64], 'one ack after 64 frames');
  // The rest within a second, by the timer.
  await new Promise((r) => setTimeout(r, 1100));
  await settle(bobby);
  assert.deepEqual(acks(bobby), [64, 70]);
  // A frame whose seq was seen before (a replay after a resume) is dropped.
  const before = texts(bobby).length;
  await bobby.receive(JSON.stringify({ seq: 70, type: 'presence', key_id: alice.identity.keyId, name: 'alice', state: 'away' }));
  assert.equal(texts(bobby).length, before);
  assert.deepEqual(bobby.events.presence, []);
  assert.equal(bobby.lastSeq, 70);
});

test('128 KiB of frames are acknowledged at once, however few they are', async (t) => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  t.after(() => [alice, bobby].forEach((ch) => ch.dispose()));
  const big = 'x'.repeat(30 * 1024);
  for (let i = 0; i < 3; i++) await alice.sendDirect(bobby.identity.keyId, `${i}${big}`);
  await relay.deliver();
  await settle(bobby);
  assert.deepEqual(acks(bobby), [], 'three frames of ~40 KiB: not yet');
  await alice.sendDirect(bobby.identity.keyId, `3${big}`);
  await relay.deliver();
  await settle(bobby);
  assert.deepEqual(acks(bobby), [bobby.lastSeq]);
});

test('an ack waits until the state that saw its frames is saved', async (t) => {
  const relay = new Relay();
  const saved = [];
  let release;
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby', {
    save: (state) => {
      saved.push(state);
      return saved.length === 1 ? Promise.resolve() : new Promise((r) => (release = r));
    },
  });
  t.after(() => [alice, bobby].forEach((ch) => ch.dispose()));
  await alice.sendAll('kept before the ack');
  await relay.deliver();
  await new Promise((r) => setTimeout(r, 1100));
  assert.deepEqual(acks(bobby), [], 'no ack while the save is under way');
  assert.equal(saved.at(-1).lastSeq, bobby.lastSeq);
  release();
  await settle(bobby);
  assert.deepEqual(acks(bobby), [saved.at(-1).lastSeq]);
});

test('a reload continues from the saved state: same chains, own key, seen ids and seq', async (t) => {
  const relay = new Relay();
  let kept = null;
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby', { save: async (s) => (kept = JSON.parse(JSON.stringify(s))) });
  t.after(() => [alice, bobby].forEach((ch) => ch.dispose()));
  await alice.sendAll('before the reload');
  await bobby.sendAll('bob before the reload');
  await relay.deliver();
  await bobby.enqueue(() => bobby.persist());
  const ownBefore = { skid: bobby.own.skid, n: bobby.own.n };
  const seqBefore = bobby.lastSeq;
  bobby.dispose();

  // Frames that came while the page was gone (alice's next @all) wait on the relay.
  const again = relay.endpoint('bobby', { state: kept, save: async (s) => (kept = s) });
  relay.chats.set('bobby', again);
  again.seqOut = bobby.seqOut;
  t.after(() => again.dispose());
  await settle(again);
  assert.equal(again.lastSeq, seqBefore);
  await alice.sendAll('while bob was reloading');
  await relay.deliver();
  assert.deepEqual(texts(again), [], 'frames before the welcome are not taken');
  // The frames sent while the page was away come again after the resumed welcome.
  const joins = [];
  again.ws.send = (text) => joins.push(JSON.parse(text));
  await again.receive(JSON.stringify({ type: 'challenge', version: 2, nonce: 'bm9uY2U=', time: Date.now() }));
  // Chunks in flight die with the page: a reload asks for the chunk lane from the start.
  assert.deepEqual(joins[0].resume, { since: seqBefore, since_chunks: 0 });
  relay.connect(again);
  again.seqOut = seqBefore;
  await relay.welcome(again, true);
  // The relay replays: the @all and a repeat of an older frame with its old seq.
  const lost = alice.sent.filter((m) => m.type === 'all').at(-1);
  await again.receive(JSON.stringify({ seq: seqBefore, type: 'all', ...lost, from: { name: 'alice', key_id: alice.identity.keyId }, id: 'f'.repeat(32) }));
  await relay.frame(again, { ...lost, from: { name: 'alice', key_id: alice.identity.keyId } });
  assert.deepEqual(texts(again), ['while bob was reloading']);
  assert.deepEqual(again.events.rejected, []);
  // Its own sender key goes on where it was: receivers open the next message.
  assert.deepEqual({ skid: again.own.skid, n: again.own.n }, ownBefore);
  await again.sendAll('bob after the reload');
  await relay.deliver();
  assert.deepEqual(texts(alice).slice(-1), ['bob after the reload']);
  assert.deepEqual(alice.events.rejected, []);
});

test('a welcome that did not resume resets seq and the own sender key; a resumed one keeps them', async (t) => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  t.after(() => [alice, bobby].forEach((ch) => ch.dispose()));
  await alice.sendAll('one');
  await relay.deliver();
  const skid = alice.own.skid;
  relay.connect(alice);
  await relay.welcome(alice, true);
  assert.equal(alice.own.skid, skid, 'resumed: same sender key');
  assert.ok(alice.own.given.has(bobby.identity.keyId));
  await relay.frame(alice, { type: 'presence', key_id: bobby.identity.keyId, name: 'bobby', state: 'away' });
  assert.equal(alice.own.skid, skid, 'away is not leaving');
  assert.deepEqual(alice.memberList().map((m) => [m.name, m.away]), [['alice', false], ['bobby', true]]);
  relay.connect(alice);
  await relay.welcome(alice, false);
  assert.notEqual(alice.own.skid, skid);
  assert.equal(alice.own.given.size, 0);
  assert.equal(alice.lastSeq, 0);
  await relay.frame(alice, { type: 'presence', key_id: bobby.identity.keyId, name: 'bobby', state: 'online' });
  assert.equal(alice.lastSeq, 1, 'seq starts again at 1');
});

test('a member missing from a welcome went while we were away: the sender key rotates', async (t) => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  const carol = await relay.add('carol');
  t.after(() => [alice, bobby, carol].forEach((ch) => ch.dispose()));
  await alice.sendAll('all three');
  await carol.sendAll('carol speaks');
  await relay.deliver();
  const skid = alice.own.skid;
  // carol left while alice's connection was down; her last @all is replayed after the welcome.
  relay.chats.delete('carol');
  await carol.sendAll('carol before she left');
  await relay.deliver((to) => to !== alice);
  const lastFromCarol = carol.sent.filter((m) => m.type === 'all').at(-1);
  relay.connect(alice);
  await relay.welcome(alice, true, { away: [bobby.identity.keyId] });
  assert.notEqual(alice.own.skid, skid);
  assert.deepEqual(alice.memberList().map((m) => [m.name, m.away]), [['alice', false], ['bobby', true]]);
  await relay.frame(alice, { ...lastFromCarol, from: { name: 'carol', key_id: carol.identity.keyId } });
  assert.deepEqual(texts(alice), ['carol speaks', 'carol before she left'], 'frames sent before she left still open');
  alice.sent.length = 0;
  await alice.sendAll('without carol');
  assert.deepEqual(Object.keys(alice.sent[0].keys), [bobby.identity.keyId]);
});

test('unconfirmed messages are sent again after a resume; duplicate_id counts as accepted', async (t) => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  t.after(() => [alice, bobby].forEach((ch) => ch.dispose()));
  const first = await alice.sendDirect(bobby.identity.keyId, 'reached the server');
  await relay.deliver();
  // The connection dies: the next two never get an answer (the first did reach the server).
  const lostAnswer = await alice.sendDirect(bobby.identity.keyId, 'answer lost');
  relay.queue.length = 0;
  relay.accepted.add(lostAnswer.id);
  const neverArrived = await alice.sendAll('never arrived');
  relay.queue.length = 0;
  assert.deepEqual(alice.outbox.map((e) => e.type), ['direct', 'sender_key', 'all']);
  relay.connect(alice);
  await relay.welcome(alice, true);
  assert.deepEqual(alice.sent.slice(-3).map((m) => m.id ?? m.type), [lostAnswer.id, 'sender_key', neverArrived.id]);
  await relay.deliver();
  assert.deepEqual(alice.events.acks, [first.id, lostAnswer.id, neverArrived.id]);
  assert.deepEqual(alice.events.refused, []);
  assert.deepEqual(texts(bobby), ['reached the server', 'never arrived']);
  assert.equal(alice.outbox.length, 0);

  // After a welcome that did not resume, direct messages go again; @all under the old key cannot.
  const d = await alice.sendDirect(bobby.identity.keyId, 'direct again');
  const a = await alice.sendAll('all lost');
  relay.queue.length = 0;
  relay.connect(alice);
  await relay.welcome(alice, false);
  assert.deepEqual(alice.events.refused.map((r) => [r.id, r.code]), [[a.id, 'lost']]);
  await relay.deliver();
  assert.ok(alice.events.acks.includes(d.id));
  assert.deepEqual(texts(bobby).slice(-1), ['direct again']);
});

test('delivery states, gaps and kick notices reach the hooks', async (t) => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  t.after(() => alice.dispose());
  const id = 'a'.repeat(32);
  await relay.frame(alice, { type: 'delivery', id, to: 'b'.repeat(64), state: 'held' });
  await relay.frame(alice, { type: 'delivery', id, to: 'b'.repeat(64), state: 'delivered' });
  await relay.frame(alice, { type: 'delivery', id, to: 'b'.repeat(64), state: 'bogus' });
  assert.deepEqual(alice.events.delivery.map((d) => d.state), ['held', 'delivered']);
  await relay.frame(alice, { type: 'gap', dropped: 3, kinds: { all: 2, direct: 1 }, first_seq: 4, last_seq: 6 });
  assert.deepEqual(alice.events.gaps, [{ dropped: 3, kinds: { all: 2, direct: 1 } }]);
  const until = Date.now() + 120_000;
  await alice.receive(JSON.stringify({ type: 'notice', code: 'kicked', text: 'You were kicked.', until }));
  alice.ws = { readyState: 3, send() {}, close() {} };
  await alice.closed(alice.ws, 4000);
  const last = alice.events.states.at(-1);
  assert.equal(last.state, 'closed');
  assert.equal(last.kind, 'kicked');
  assert.equal(last.until, until);
  assert.equal(alice.timer, null, 'no reconnection');
  assert.equal(alice.resumable, false);
});

test('gaps and waiting times read as sentences', () => {
  assert.equal(gapText({ dropped: 3, kinds: { all: 2, direct: 1 } }), '3 messages kept for you were dropped while you were away (2 @all and 1 direct).');
  assert.equal(gapText({ dropped: 1, kinds: { sender_key: 1 } }), '1 message kept for you was dropped while you were away (1 sender key).');
  const now = new Date(2030, 0, 1, 14, 0, 0).getTime();
  assert.equal(untilText(now + 10 * 60_000, now), 'at 14:10 (in 10 min 0 s)');
  assert.equal(untilText(now + 42_000, now), 'at 14:00 (in 42 s)');
  assert.equal(untilText(now - 1, now), 'now');
});

test('the admin\'s typed commands become moderate messages, with usage for mistakes', () => {
  assert.deepEqual(moderation('/kick alice'), { type: 'moderate', action: 'kick', name: 'alice' });
  assert.deepEqual(moderation(' /kick alice 30 '), { type: 'moderate', action: 'kick', name: 'alice', minutes: 30 });
  assert.deepEqual(moderation('/ban alice'), { type: 'moderate', action: 'ban', name: 'alice' });
  assert.deepEqual(moderation('/unban alice'), { type: 'moderate', action: 'unban', name: 'alice' });
  assert.deepEqual(moderation('/bans'), { type: 'moderate', action: 'bans' });
  assert.equal(moderation('/kick'), 'usage: /kick NAME [MINUTES]');
  assert.equal(moderation('/kick alice soon'), 'usage: /kick NAME [MINUTES]');
  assert.equal(moderation('/kick alice 3 4'), 'usage: /kick NAME [MINUTES]');
  assert.equal(moderation('/ban alice 3'), 'usage: /ban NAME');
  assert.equal(moderation('/bans x'), 'usage: /bans');
  assert.equal(moderation('hello /kick'), null);
  assert.equal(moderation('/dance'), null);
});

test('the bounds of receiving chains come from the welcome\u2019s limits', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  // Before a welcome says otherwise: the defaults (the server's own values).
  const fresh = new Chat({ identity: ids.alice, name: 'alice', url: 'ws://unused', hooks: {} });
  clearInterval(fresh.sweeper);
  assert.deepEqual([fresh.limit('max_jump'), fresh.limit('max_skipped'), fresh.limit('max_chains_per_sender')], [2000, 1000, 4]);
  // A welcome with smaller bounds: a jump of 11 is refused, 10 is not.
  await relay.welcome(bobby, true, { limits: { max_text: 32768, max_jump: 10, max_skipped: 5, max_chains_per_sender: 2 } });
  await alice.sendAll('zero');
  await relay.deliver();
  const lost = async (n) => {
    for (let i = 0; i < n; i++) {
      await alice.sendAll('lost');
      relay.queue.length = 0; // never delivered
    }
  };
  await lost(10); // bobby holds n = 1: a jump of 10
  await alice.sendAll('ten ahead');
  await relay.deliver();
  assert.deepEqual(texts(bobby), ['zero', 'ten ahead']);
  assert.equal([...bobby.chains.values()][0].skipped.size, 5, 'skipped keys bounded by max_skipped');
  await lost(11);
  await alice.sendAll('eleven ahead');
  await relay.deliver();
  assert.match(bobby.events.rejected.at(-1).reason, /jumps too far ahead/);
  // Rotations: only the newest 2 chains of a sender are kept.
  for (const word of ['a', 'b', 'c']) {
    alice.own = { ...alice.own, skid: c.randomId(), n: 0, given: new Set(), recent: [], signed: null, ck: c.randomBytes(32) };
    await alice.sendAll(word);
    await relay.deliver();
  }
  assert.equal([...bobby.chains.keys()].filter((k) => k.startsWith(alice.identity.keyId)).length, 2);
  // Nonsense limits fall back to the defaults.
  await relay.welcome(bobby, true, { limits: { max_jump: -1, max_skipped: 'x' } });
  assert.deepEqual([bobby.limit('max_jump'), bobby.limit('max_skipped')], [2000, 1000]);
});

test('public keys are fetched only when needed, once, and a key that does not match its key ID is refused', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  const carol = await relay.add('carol');
  // Joining asked for nothing: the member list has no keys and nobody has spoken.
  assert.deepEqual([alice.asked, bobby.asked, carol.asked], [[], [], []]);
  await alice.sendAll('hello');
  // Alice needed bob's and carol's keys to wrap her sender key; asked in one batch.
  assert.deepEqual(alice.asked.sort(), [bobby.identity.keyId, carol.identity.keyId].sort());
  await relay.deliver();
  // Each receiver fetched alice's key only, once, to verify her.
  assert.deepEqual(bobby.asked, [alice.identity.keyId]);
  assert.deepEqual(carol.asked, [alice.identity.keyId]);
  await alice.sendAll('again');
  await relay.deliver();
  assert.deepEqual(texts(bobby), ['hello', 'again']);
  assert.deepEqual(bobby.asked, [alice.identity.keyId], 'a key is kept, not fetched again');
  // A server that hands out carol's key under bob's key ID: refused and reported; bob's
  // message to carol is not shown as verified.
  relay.tamper = (answer) => {
    const keys = Object.fromEntries(Object.keys(answer.keys).map((k) => [k, ids.alice.publicB64]));
    return { ...answer, keys };
  };
  await bobby.sendDirect(carol.identity.keyId, 'forged?').catch(() => {});
  assert.deepEqual(bobby.sent.filter((m) => m.type === 'direct'), [], 'nothing sealed for a key that does not match');
  assert.equal(bobby.events.rejected.length, 1);
  assert.match(bobby.events.rejected[0].reason, /key ID does not match/);
  relay.tamper = (answer) => answer;
  await bobby.sendDirect(carol.identity.keyId, 'fine');
  await relay.deliver();
  assert.deepEqual(texts(carol), ['hello', 'again', 'fine']);
});

test('a sender whose key the server does not know cannot be verified: the message is refused', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = await relay.add('bobby');
  relay.tamper = (answer) => ({ type: 'keys', keys: {}, unknown: Object.keys(answer.keys) });
  const refused = await alice.sendDirect(bobby.identity.keyId, 'who am I').catch((e) => e);
  assert.match(String(refused?.message), /no longer here/);
  assert.equal(alice.sent.filter((m) => m.type === 'direct').length, 0, 'no key for bob: not sent');
  relay.tamper = (answer) => answer;
  await alice.sendDirect(bobby.identity.keyId, 'who am I');
  relay.tamper = (answer) => ({ type: 'keys', keys: {}, unknown: Object.keys(answer.keys) });
  await relay.deliver();
  assert.deepEqual(texts(bobby), []);
  assert.equal(bobby.events.rejected.length, 1);
  assert.match(bobby.events.rejected[0].reason, /never came/);
});

test('a "joined" with several members (joined together) adds each of them', async () => {
  const relay = new Relay();
  const alice = await relay.add('alice');
  const bobby = relay.endpoint('bobby');
  const carol = relay.endpoint('carol');
  await relay.frame(alice, { type: 'joined', members: [member(bobby), member(carol)] });
  assert.deepEqual(alice.memberList().map((m) => m.name), ['alice', 'bobby', 'carol']);
});

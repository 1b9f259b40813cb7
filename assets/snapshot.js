// dyspatcher web client: the session across reloads. `snapshot()` writes the session state as
// plain JSON; `restore()` continues from it. Mixed into Chat (session.js).
import * as c from './crypto.js';
import { RECENT_TTL } from './sealing.js';

const SNAPSHOT_VERSION = 1;
export const MAX_PENDING = 64; // @all messages waiting for their sender key

// Members without their public keys: those are fetched again when needed (keys.js).
const wireMember = (m) => ({ name: m.name, key_id: m.keyId, admin: m.admin });

export class Snapshots {
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
      ...this.groupSnapshot(),
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
        if (typeof m?.key_id !== 'string' || !/^[0-9a-f]{64}$/.test(m.key_id)) continue;
        const entry = { name: String(m.name), keyId: m.key_id, admin: !!m.admin };
        (m.former ? former : peers).set(m.key_id, { member: entry });
      }
      this.own = own;
      this.chains = chains;
      this.peers = peers;
      this.former = former;
      this.keys = new Map();
      this.away = new Set(state.away || []);
      this.seen = new Map(state.seen);
      this.pending = (state.pending || []).slice(-MAX_PENDING);
      this.groupRestore(state);
      this.lastSeq = Number.isSafeInteger(state.lastSeq) ? state.lastSeq : 0;
      this.resumable = true;
      this.restoredFromDevice = true;
    } catch (e) {
      console.warn('dyspatcher: the kept state is unreadable; starting afresh:', e);
    }
  }
}

// dyspatcher web client: trust you can check. Names seen with their key (a name that comes back
// with another key is flagged until verified), contacts marked verified, and the safety code two
// people compare. Kept on the device (encrypted) when it remembers, in memory otherwise.
import * as c from './crypto.js';
import { S } from './state.js';
import * as store from './store.js';

/** Whether the contacts are kept on this device. */
const kept = () => S.remember && S.remembered && !S.keepsNothing;

export function saveContacts() {
  if (!kept()) return;
  const { seen, verified } = S.contacts;
  store.saveContacts({ seen, verified: [...verified] }).catch((e) => console.warn('dyspatcher: contacts not kept:', e));
}

/** Takes what this device kept (after a reload). */
export async function loadContacts() {
  const kept = await store.loadContacts().catch(() => null);
  if (!kept) return;
  S.contacts.seen = kept.seen && typeof kept.seen === 'object' ? kept.seen : {};
  S.contacts.verified = new Set(Array.isArray(kept.verified) ? kept.verified : []);
}

/**
 * Looks at the members now here: a name first seen is remembered with its key; a name seen
 * before with another key is flagged (`changed`: key ID -> the key seen before).
 */
export function observe(members) {
  const { seen, changed } = S.contacts;
  let dirty = false;
  for (const m of members) {
    if (m.keyId === S.identity?.keyId) continue;
    const before = seen[m.name];
    if (!before) {
      seen[m.name] = m.keyId;
      dirty = true;
    } else if (before !== m.keyId) {
      changed.set(m.keyId, before);
    }
  }
  if (dirty) saveContacts();
}

export const isVerified = (keyId) => S.contacts.verified.has(keyId);
/** The key seen before under this key's name, when it changed; null otherwise. */
export const changedFrom = (keyId) => S.contacts.changed.get(keyId) ?? null;

/** Marks `keyId` (named `name`) verified: its name now belongs to it, the warning goes. */
export function setVerified(keyId, name, yes) {
  if (yes) {
    S.contacts.verified.add(keyId);
    S.contacts.seen[name] = keyId;
    S.contacts.changed.delete(keyId);
  } else {
    S.contacts.verified.delete(keyId);
  }
  saveContacts();
}

/**
 * The safety code of two key IDs: SHA-256 of both (sorted, so it is the same on both sides),
 * as 20 digits in 4 groups of 5, easy to read aloud.
 */
export async function safetyCode(a, b) {
  const [x, y] = [a, b].sort();
  const digest = await c.sha256(c.utf8(`dyspatcher safety code v1\n${x}\n${y}`));
  const parts = [];
  for (let i = 0; i < 4; i++) {
    const v = digest.slice(i * 5, i * 5 + 5).reduce((acc, byte) => acc * 256 + byte, 0);
    parts.push(String(v % 100000).padStart(5, '0'));
  }
  return parts.join(' ');
}

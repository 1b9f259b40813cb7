// dyspatcher web client: what this device remembers (IndexedDB), and the panic wipe.
// One database holds the identity as non-extractable CryptoKeys, the name, and, encrypted with
// AES-GCM under a non-extractable key kept beside it: the session state (last seq, sender keys,
// seen ids), each conversation's history, the contacts (keys seen, verified) and media received or sent
// (within MEDIA_BUDGET). Nothing is created until there is something to keep; `wipe()` deletes everything at once.
import * as c from './crypto.js';

export const DB_NAME = 'dyspatcher';
const DB_VERSION = 1;
const STORE = 'kv';

let db = null; // an open connection, or null
let opening = null; // the open in progress
let queue = Promise.resolve(); // writes run one after another

const request = (req) =>
  new Promise((res, rej) => {
    req.onsuccess = () => res(req.result);
    req.onerror = () => rej(req.error);
  });

/** Opens the database; without `create`, resolves to null when it does not exist (and makes none). */
function openDb(create) {
  if (db) return Promise.resolve(db);
  if (!globalThis.indexedDB) return Promise.resolve(null);
  if (opening) return opening.then((d) => d || (create ? openDb(true) : null));
  opening = new Promise((res, rej) => {
    let req;
    try {
      req = indexedDB.open(DB_NAME, DB_VERSION);
    } catch (e) {
      rej(e);
      return;
    }
    let fresh = false;
    req.onupgradeneeded = (ev) => {
      if (!create && ev.oldVersion === 0) {
        // Looking must leave no trace: abort, and the empty database is not created.
        fresh = true;
        req.transaction.abort();
        return;
      }
      req.result.createObjectStore(STORE);
    };
    req.onsuccess = () => {
      db = req.result;
      // Another tab deleting the database (its "Forget this device") must not be blocked by us.
      db.onversionchange = () => {
        db?.close();
        db = null;
      };
      res(db);
    };
    req.onerror = (ev) => {
      if (fresh) {
        ev.preventDefault();
        res(null);
      } else rej(req.error);
    };
    req.onblocked = () => rej(new Error('the storage is held by another tab'));
  }).finally(() => {
    opening = null;
  });
  return opening;
}

async function tx(mode, fn, create = mode === 'readwrite') {
  const d = await openDb(create);
  if (!d) return undefined;
  return new Promise((res, rej) => {
    const t = d.transaction(STORE, mode);
    const result = fn(t.objectStore(STORE));
    t.oncomplete = () => res(result instanceof IDBRequest ? result.result : result);
    t.onerror = () => rej(t.error);
    t.onabort = () => rej(t.error || new Error('storage transaction aborted'));
  });
}

const get = (key) => tx('readonly', (s) => s.get(key));

/** Runs `task` after the writes queued before it. */
function serial(task) {
  const result = queue.then(task);
  queue = result.catch((e) => console.warn('dyspatcher: storage:', e));
  return result;
}

async function stateKey() {
  let key = await get('state_key');
  if (!key) {
    key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
    await tx('readwrite', (s) => s.put(key, 'state_key'));
  }
  return key;
}

/**
 * What this device remembers: {identity, name, left, state} or null. `state` is null when it is
 * missing or cannot be decrypted (then the membership starts afresh).
 */
export async function load() {
  const record = await get('identity').catch(() => undefined);
  if (!record) return null;
  const identity = await c.identityFromStored(record);
  const state = await unseal('state');
  return { identity, name: record.name, left: !!record.left, source: record.source, state };
}

/** Keeps the identity (non-extractable keys and the public key) with the name. */
export function saveIdentity(identity, name, source) {
  return serial(async () => {
    const record = await c.storableIdentity(identity);
    await tx('readwrite', (s) => s.put({ ...record, name, source, left: false }, 'identity'));
  });
}

/** Keeps `value` (JSON-able) encrypted under `name`, if this device still holds an identity. */
function seal(name, value) {
  return serial(() => sealNow(name, value));
}

async function sealNow(name, value) {
  if (!(await get('identity'))) return; // forgotten meanwhile: keep nothing
  const key = await stateKey();
  const iv = c.randomBytes(12);
  const ciphertext = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, c.utf8(JSON.stringify(value)));
  await tx('readwrite', (s) => s.put({ iv, ciphertext: new Uint8Array(ciphertext) }, name));
}

/** The value kept under `name`, decrypted; null when missing or unreadable. */
async function unseal(name) {
  const sealed = await get(name).catch(() => undefined);
  const key = sealed && (await get('state_key').catch(() => undefined));
  if (!sealed || !key) return null;
  try {
    const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.iv }, key, sealed.ciphertext);
    return JSON.parse(c.fromUtf8(new Uint8Array(plain)));
  } catch {
    return null;
  }
}

/** Keeps the session state (a JSON-able object), encrypted. Resolves when it is written. */
export const saveState = (state) => seal('state', state);

/** Messages kept per conversation on this device: the oldest go first. */
export const MAX_HISTORY = 2000;
const HISTORY = 'history:';

/** Keeps one conversation's messages (the last MAX_HISTORY), encrypted. */
export const saveHistory = (conversation, records) => seal(`${HISTORY}${conversation}`, records.slice(-MAX_HISTORY));

/** Every conversation kept here: Map conversation -> records. */
export async function loadHistories() {
  const keys = (await tx('readonly', (s) => s.getAllKeys()).catch(() => [])) || [];
  const out = new Map();
  for (const k of keys) {
    if (typeof k !== 'string' || !k.startsWith(HISTORY)) continue;
    const records = await unseal(k);
    if (Array.isArray(records)) out.set(k.slice(HISTORY.length), records);
  }
  return out;
}

/** Bytes of received and sent media (photos, files, voice notes) kept on this device in all. */
export const MEDIA_BUDGET = 50 * 1024 * 1024;
const MEDIA = 'media:';

/**
 * Keeps a file's bytes, encrypted, with the index of kept media (oldest first). Past
 * MEDIA_BUDGET the oldest are deleted: resolves to the entries {id, conv, size} dropped.
 */
export function saveMedia(id, conv, blob) {
  return serial(async () => {
    if (!(await get('identity'))) return [];
    const key = await stateKey();
    const index = (await unseal('media-index')) ?? [];
    if (index.some((e) => e.id === id)) return [];
    const iv = c.randomBytes(12);
    const bytes = await blob.arrayBuffer();
    const ciphertext = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, bytes));
    index.push({ id, conv, size: blob.size, type: blob.type });
    const dropped = [];
    let total = index.reduce((a, e) => a + e.size, 0);
    while (total > MEDIA_BUDGET && index.length) {
      const old = index.shift();
      total -= old.size;
      dropped.push(old);
    }
    const kept = index.some((e) => e.id === id);
    await tx('readwrite', (s) => {
      for (const old of dropped) s.delete(`${MEDIA}${old.id}`);
      if (kept) s.put({ iv, ciphertext }, `${MEDIA}${id}`);
    });
    await sealNow('media-index', index);
    return dropped;
  });
}

/** A kept file as a Blob, or null when this device does not hold it (never kept, or dropped). */
export async function loadMedia(id) {
  const sealed = await get(`${MEDIA}${id}`).catch(() => undefined);
  const key = sealed && (await get('state_key').catch(() => undefined));
  if (!sealed || !key) return null;
  const index = (await unseal('media-index')) ?? [];
  const entry = index.find((e) => e.id === id);
  try {
    const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: sealed.iv }, key, sealed.ciphertext);
    return new Blob([plain], { type: entry?.type ?? '' });
  } catch {
    return null;
  }
}

/** The contacts: {seen: {name: keyId}, verified: [keyId]}, encrypted. */
export const saveContacts = (contacts) => seal('contacts', contacts);
export const loadContacts = () => unseal('contacts');

/** After an explicit leave: keep the keys and the name, drop the session, do not rejoin by itself. */
export function markLeft() {
  return serial(async () => {
    const record = await get('identity');
    if (!record) return;
    await tx('readwrite', (s) => {
      s.put({ ...record, left: true }, 'identity');
      s.delete('state');
    });
  });
}

/** Deletes the whole database and every other trace this page could have left. */
export function wipe() {
  return serial(async () => {
    db?.close();
    db = null;
    try {
      localStorage.clear();
      sessionStorage.clear();
    } catch {
      // storage may be disabled: then it holds nothing either
    }
    if (!globalThis.indexedDB) return;
    await new Promise((res, rej) => {
      const req = indexedDB.deleteDatabase(DB_NAME);
      req.onsuccess = () => res();
      req.onerror = () => rej(req.error);
      // Other tabs close their connection on `versionchange`; success follows.
      req.onblocked = () => {};
    });
  });
}

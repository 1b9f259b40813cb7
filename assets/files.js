// dyspatcher web client: files on the wire (docs/PROTOCOL.md, "Files"). A file is a signed manifest
// sealed like a direct or an @all message, then chunks sealed with the manifest's file key and
// bound to (file id, index) as additional data. This module seals and sends, keeping at most
// `file_window` chunks unanswered; fileopen.js receives. Mixed into Chat (session.js); every
// change of a transfer, either way, goes to `hooks.transfer(tr)`.
import * as c from './crypto.js';
import { t } from './i18n/i18n.js';
import { GROUP_ID } from './groups.js';
import { Sha256 } from './sha256.js';

/** Until the welcome says otherwise (`limits`). */
export const FILE_DEFAULTS = { max_file: 16 * 1024 * 1024, chunk_size: 65536, file_window: 4, files_in_flight: 4 };
export const MAX_MANIFEST = 4096; // bytes of the sealed manifest's JSON
const MAX_FINISHED = 256; // ended transfers remembered, so that their late chunks are dropped quietly
const KINDS = new Set(['file', 'photo', 'voice']);
const HEX64 = /^[0-9a-f]{64}$/;
const SERVER_CODES = new Set(['file_too_large', 'unknown_file', 'bad_chunk', 'file_window', 'too_many_files', 'mailbox_full']);
const MAX_NAME = 255;
/**
 * Types a received file keeps (it is shown: a photo, a voice note); anything else is saved as
 * bytes, so that a page opened from its object URL (HTML, SVG) never runs in this origin.
 */
export const SHOWN = /^(image\/(jpeg|png|webp|gif|avif|bmp)|audio\/(webm|ogg|mp4|mpeg|aac|wav))$/; // characters of a file name kept (longer ones are cut)

export const fileCanonical = {
  direct: (m, from) =>
    ['dyspatcher-v2-file-direct', m.id, String(m.ts), from, m.to, String(m.size), String(m.chunks), m.iv, m.ciphertext].join('\n'),
  all: (m, from) =>
    ['dyspatcher-v2-file-all', m.id, String(m.ts), from, m.skid, String(m.n), String(m.size), String(m.chunks), m.iv, m.ciphertext].join('\n'),
};

const subtle = () => globalThis.crypto.subtle;
/** The additional data of chunk `i` of file `id`. */
export const chunkAad = (id, i) => c.utf8(`dyspatcher-v2-chunk\n${id}\n${i}`);
export const chunkCount = (size, chunkSize) => Math.ceil(size / chunkSize);

export const importFileKey = (raw) => subtle().importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);

/** Seals chunk `i` (a Uint8Array) of file `id`: {iv, ciphertext} in base64. */
export async function sealChunk(key, id, i, bytes) {
  const iv = c.randomBytes(12);
  const ct = await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: chunkAad(id, i) }, key, bytes);
  return { iv: c.b64encode(iv), ciphertext: c.b64encode(ct) };
}

/** Opens chunk `i` of file `id`; throws when it was altered, or sealed for another file or index. */
export async function openChunk(key, id, i, ivB64, ctB64) {
  const iv = c.b64decode(ivB64);
  if (iv.length !== 12) throw new Error('bad iv');
  const pt = await subtle().decrypt({ name: 'AES-GCM', iv, additionalData: chunkAad(id, i) }, key, c.b64decode(ctB64));
  return new Uint8Array(pt);
}

/** SHA-256 (hex) of a Blob, read a chunk at a time. */
export async function hashBlob(blob, chunkSize = FILE_DEFAULTS.chunk_size) {
  const h = new Sha256();
  for (let at = 0; at < blob.size; at += chunkSize) h.update(new Uint8Array(await blob.slice(at, at + chunkSize).arrayBuffer()));
  return h.hex();
}

/** A file name as shown and saved: no path, no control characters, no leading dots, bounded. */
export function cleanName(name) {
  const s = String(name ?? '')
    .replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '')
    .split(/[/\\]/)
    .pop()
    .replace(/^[.\s]+/, '')
    .trim();
  return [...(s || 'file')].slice(0, MAX_NAME).join('');
}

/** Checks an opened manifest against its frame; returns the fields the page uses. */
export function readManifest(text, frame, chunkSize) {
  if (c.utf8(text).length > MAX_MANIFEST) throw new Error(t('file.err.manifest'));
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    throw new Error(t('file.err.manifest'));
  }
  const ok =
    m && typeof m === 'object' && typeof m.name === 'string' && typeof m.mime === 'string' &&
    Number.isSafeInteger(m.size) && Number.isSafeInteger(m.chunks) && typeof m.sha256 === 'string' &&
    HEX64.test(m.sha256) && typeof m.key === 'string' && KINDS.has(m.kind);
  if (!ok) throw new Error(t('file.err.manifest'));
  if (m.size !== frame.size || m.chunks !== frame.chunks || m.size < 1 || m.chunks !== chunkCount(m.size, chunkSize)) {
    throw new Error(t('file.err.sizes'));
  }
  const key = c.b64decode(m.key);
  if (key.length !== 32) throw new Error(t('file.err.manifest'));
  const meta = { name: cleanName(m.name), mime: m.mime.slice(0, 100).toLowerCase(), size: m.size, kind: m.kind };
  for (const f of ['duration_ms', 'width', 'height']) if (Number.isSafeInteger(m[f]) && m[f] >= 0) meta[f] = m[f];
  return { meta, chunks: m.chunks, sha256: m.sha256, key };
}

export class Files {
  fileLimit(name) {
    const v = this.limits?.[name];
    return Number.isSafeInteger(v) && v > 0 ? v : FILE_DEFAULTS[name];
  }

  filesInit() {
    this.transfers ??= new Map(); // id -> transfer, ours and theirs
    this.lastCseq ??= 0;
  }

  /** Tells the page about a transfer as it is now. */
  changed(tr) {
    this.hooks.transfer?.(tr);
    if (tr.state === 'done' || tr.state === 'failed' || tr.state === 'cancelled') this.forgetEnded();
  }

  forgetEnded() {
    const ended = [...this.transfers.values()].filter((x) => x.ended);
    for (const x of ended.slice(0, Math.max(0, ended.length - MAX_FINISHED))) this.transfers.delete(x.id);
  }

  end(tr, state, error = '') {
    if (tr.ended) return;
    clearTimeout(tr.idle);
    tr.ended = true;
    tr.state = state;
    tr.error = error;
    tr.parts = [];
    tr.folded = [];
    tr.source = null;
    this.changed(tr);
  }

  // ------------------------------------------------------------ sending

  /**
   * Sends `blob` to `to` (a key ID or 'all') as a file: `meta` {name, mime, kind, width, height,
   * duration_ms}. Resolves to the transfer (its `record` is the message to show) once the manifest
   * is sent; throws, before anything is sent, when the file cannot go.
   */
  async sendFile(to, blob, meta) {
    this.filesInit();
    const size = blob.size;
    const name = cleanName(meta.name);
    const max = this.fileLimit('max_file');
    if (size < 1) throw new Error(t('file.err.empty', { name }));
    if (size > max) {
      // Sizes that round alike are written in bytes.
      const [a, b] = sizeText(size) === sizeText(max) ? [`${size} B`, `${max} B`] : [sizeText(size), sizeText(max)];
      throw new Error(t('file.err.too_large', { name, size: a, max: b }));
    }
    const busy = [...this.transfers.values()].filter((x) => x.own && !x.ended).length;
    if (busy >= this.fileLimit('files_in_flight')) throw new Error(t('file.err.too_many', { n: this.fileLimit('files_in_flight') }));
    const sha256 = await hashBlob(blob, this.fileLimit('chunk_size'));
    return this.enqueue(() => this.sealFile(to, blob, { ...meta, name }, sha256));
  }

  async sealFile(to, blob, meta, sha256) {
    if (!this.joined) throw new Error(t('send.not_connected'));
    const chunkSize = this.fileLimit('chunk_size');
    const size = blob.size;
    const chunks = chunkCount(size, chunkSize);
    const raw = c.randomBytes(32);
    const plain = { name: meta.name, mime: meta.mime || 'application/octet-stream', size, chunks, sha256, key: c.b64encode(raw), kind: meta.kind };
    for (const f of ['duration_ms', 'width', 'height']) if (Number.isSafeInteger(meta[f])) plain[f] = meta[f];
    const text = JSON.stringify(plain);
    if (c.utf8(text).length > MAX_MANIFEST) throw new Error(t('file.err.name_long'));
    const id = c.randomId();
    let msg;
    let dest;
    if (to === 'all') {
      if (this.options.disable_all && !this.me.admin) throw new Error(t('send.all_disabled'));
      const own = this.own;
      const wanted = [...this.peers.keys()].filter((k) => (k !== this.identity.keyId || this.otherEndpoint) && !own.given.has(k));
      // Their public keys first (fetched in batches); whoever has none now gets ours next time.
      await this.needKeys(wanted);
      const lacking = wanted.filter((k) => this.keyOf(k));
      await this.distribute(lacking, own.n, own.ck);
      lacking.forEach((k) => own.given.add(k));
      const { mk, next } = await c.chainStep(own.ck);
      const { iv, ciphertext } = await c.seal(mk, text);
      msg = { type: 'file', id, ts: this.now(), to: 'all', size, chunks, iv, ciphertext, skid: own.skid, n: own.n };
      msg.signature = await c.sign(this.identity, fileCanonical.all(msg, this.identity.keyId));
      const now = Date.now();
      own.recent = own.recent.filter((r) => now - r.t <= 10_000).slice(-31);
      own.recent.push({ n: own.n, ck: own.ck, t: now });
      own.ck = next;
      own.n += 1;
      await this.persist();
      dest = { kind: 'all' };
    } else if (GROUP_ID.test(to)) {
      ({ msg, dest } = await this.sealGroupFile(to, id, text, size, chunks));
    } else {
      const peer = this.peers.get(to);
      if (!peer) throw new Error(t('send.gone'));
      await this.needKeys([to]);
      const theirs = this.keyOf(to);
      if (!theirs) throw new Error(t('send.gone'));
      const key = c.randomBytes(32);
      const { iv, ciphertext } = await c.seal(key, text);
      const keys = { [to]: await c.wrap(theirs.wrapKey, key) };
      if (to !== this.identity.keyId) keys[this.identity.keyId] = await c.wrap(this.identity.wrapKey, key);
      msg = { type: 'file', id, ts: this.now(), to, size, chunks, iv, ciphertext, keys };
      msg.signature = await c.sign(this.identity, fileCanonical.direct(msg, this.identity.keyId));
      dest = { kind: 'direct', keyId: to, name: peer.member.name };
    }
    this.seen.set(id, this.now());
    const tr = {
      id, own: true, to, state: 'waiting', meta: { ...plain, key: undefined, sha256: undefined }, sha256, size, chunks,
      done: 0, next: 0, acked: -1, key: await importFileKey(raw), source: blob, blob, ws: this.ws, skipped: [],
      record: { id, ts: msg.ts, from: { name: this.me.name, keyId: this.identity.keyId, admin: this.me.admin }, to: dest, text: '', via: null, own: true, local: true },
    };
    delete tr.meta.key;
    delete tr.meta.sha256;
    tr.record.file = tr.meta;
    if (!this.send(msg)) throw new Error(t('send.not_connected'));
    this.transfers.set(id, tr);
    return tr;
  }

  /** The manifest was accepted: chunks may go. For @all, `skipped` lists who gets nothing. */
  fileAccepted(msg) {
    const tr = this.transfers.get(msg.id);
    if (!tr?.own || tr.ended || tr.state !== 'waiting') return;
    tr.state = 'sending';
    tr.skipped = (Array.isArray(msg.skipped) ? msg.skipped : []).map((k) => this.nameOf(String(k)));
    this.changed(tr);
    this.pump(tr);
  }

  /** Sends chunks while fewer than `file_window` are unanswered. */
  async pump(tr) {
    if (tr.pumping) return;
    tr.pumping = true;
    try {
      const size = this.fileLimit('chunk_size');
      while (!tr.ended && tr.state === 'sending' && tr.next < tr.chunks && tr.next <= tr.acked + this.fileLimit('file_window')) {
        if (this.ws !== tr.ws) return;
        const i = tr.next;
        const bytes = new Uint8Array(await tr.source.slice(i * size, (i + 1) * size).arrayBuffer());
        const sealed = await sealChunk(tr.key, tr.id, i, bytes);
        if (tr.ended || this.ws !== tr.ws) return;
        this.send({ type: 'chunk', file: tr.id, i, ...sealed });
        tr.next += 1;
      }
    } finally {
      tr.pumping = false;
    }
  }

  onChunkAck(msg) {
    const tr = this.transfers.get(msg.file);
    if (!tr?.own || tr.ended || !Number.isSafeInteger(msg.i) || msg.i <= tr.acked || msg.i >= tr.next) return;
    tr.acked = msg.i;
    tr.done = Math.min(tr.size, (msg.i + 1) * this.fileLimit('chunk_size'));
    if (msg.i === tr.chunks - 1) {
      tr.ended = true;
      tr.state = 'done';
      tr.source = null;
      this.changed(tr);
      return;
    }
    this.changed(tr);
    this.pump(tr);
  }

  /** Cancels one of our transfers, either way. */
  cancelFile(id) {
    return this.enqueue(() => {
      const tr = this.transfers?.get(id);
      if (!tr || tr.ended) return;
      this.send({ type: 'file_cancel', file: id });
      this.end(tr, 'cancelled', t('file.cancelled_by_you'));
    });
  }

  /** An error naming a file: true when it was about one of ours (shown on its card). */
  fileError(err) {
    const tr = this.transfers?.get(err.id);
    if (!tr) return false;
    // A refused chunk leaves the transfer open on the server: end it there too.
    if (tr.own && !tr.ended && (err.code === 'bad_chunk' || err.code === 'file_window')) this.send({ type: 'file_cancel', file: tr.id });
    const text = SERVER_CODES.has(err.code) ? t(`file.err.server.${err.code}`, { name: tr.meta.name, message: err.message }) : t('file.err.server', { name: tr.meta.name, message: err.message });
    this.end(tr, 'failed', text);
    return true;
  }

  /** A new connection: the server ended our unfinished sending (and, unless resumed, receiving). */
  filesReconnected(resumed, cseq) {
    this.filesInit();
    if (!resumed) this.lastCseq = Number.isSafeInteger(cseq) && cseq >= 0 ? cseq : 0;
    for (const tr of this.transfers.values()) {
      if (tr.ended) continue;
      if (tr.own) this.end(tr, 'failed', t('file.err.connection', { name: tr.meta.name }));
      else if (!resumed) this.end(tr, 'failed', t('file.err.connection', { name: tr.meta.name }));
    }
  }
}

/** "1.5 MB": a size for people (units of 1024 bytes: the server's limits are round in them). */
export function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let v = bytes;
  let u = -1;
  do {
    v /= 1024;
    u += 1;
  } while (v >= 1024 && u < units.length - 1);
  return `${v >= 10 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

// dyspatcher web client: files arriving (docs/PROTOCOL.md, "Files"). Opens and checks a manifest
// (signature, sizes), then each chunk in its lane (`cseq`, acknowledged at once): its sender, its
// index, AES-GCM with the (file id, index) additional data; hashes as it goes and assembles a Blob
// from the parts; at the end, the SHA-256. Any failure ends that file only, with a message naming
// it and the chunk, and a `file_cancel`. Mixed into Chat (session.js), beside files.js.
import * as c from './crypto.js';
import { t } from './i18n/i18n.js';
import { fileCanonical, importFileKey, openChunk, readManifest, SHOWN } from './files.js';
import { GROUP_ID, groupCanonical } from './groups.js';
import { Sha256 } from './sha256.js';

const IDLE_FACTOR = 2; // a file receiving nothing for this many times `file_idle_secs` has stalled
const FOLD_EVERY = 16; // chunks kept as separate parts before they are folded into one Blob

export class FilesIn {
  async onFile(msg) {
    this.filesInit();
    try {
      const peer = this.sender(msg.from);
      const verifier = await this.verifierOf(msg.from);
      const all = msg.to === 'all';
      const group = typeof msg.to === 'string' && GROUP_ID.test(msg.to);
      const signed = all ? fileCanonical.all(msg, msg.from.key_id) : group ? groupCanonical.file(msg, msg.from.key_id) : fileCanonical.direct(msg, msg.from.key_id);
      if (!(await c.verify(verifier.verifyKey, signed, msg.signature))) throw new Error(t('reject.signature'));
      if (!all && !group && msg.to !== this.identity.keyId && msg.from.key_id !== this.identity.keyId) throw new Error(t('reject.not_for_you'));
      if (all && !this.chains.has(`${msg.from.key_id} ${msg.skid}`)) {
        // Its chunks come right behind it: a file cannot wait for the key as a message does.
        this.transmit({ type: 'key_request', to: msg.from.key_id, skid: msg.skid, n: msg.n });
        throw new Error(t('file.err.no_key'));
      }
      let groupOpened = null;
      if (group) groupOpened = await this.openGroupFile(msg);
      if (!this.isFresh(msg.id, msg.ts)) return;
      let text;
      if (group) text = await this.openAll(msg, groupOpened.chain);
      else if (all) text = await this.openAll(msg);
      else {
        const key = await c.unwrap(this.identity, msg.key).catch(() => {
          throw new Error(t('reject.unwrap'));
        });
        text = await c.open(key, msg.iv, msg.ciphertext).catch(() => {
          throw new Error(t('reject.decrypt'));
        });
      }
      const m = readManifest(text, msg, this.fileLimit('chunk_size'));
      const from = peer.member;
      const to = group ? groupOpened.dest : all ? { kind: 'all' } : { kind: 'direct', keyId: msg.to, name: this.nameOf(msg.to) };
      const tr = {
        id: msg.id, own: false, from, state: 'receiving', meta: m.meta, sha256: m.sha256, size: m.meta.size, chunks: m.chunks,
        done: 0, next: 0, key: await importFileKey(m.key), hash: new Sha256(), parts: [], folded: [], blob: null,
        record: { id: msg.id, ts: msg.ts, from, to, text: '', via: msg.via ?? null, own: from.keyId === this.identity.keyId, file: m.meta },
      };
      this.transfers.set(tr.id, tr);
      this.watch(tr);
      this.changed(tr);
    } catch (e) {
      this.reject(msg, t('file.err.refused', { reason: e.message }));
      if (typeof msg.id === 'string') this.send({ type: 'file_cancel', file: msg.id });
    }
  }

  /**
   * Ends a file whose chunks stopped coming: the server cancels an idle transfer itself, but a
   * manifest sent again after a reconnection may have no chunks left to follow it.
   */
  watch(tr) {
    clearTimeout(tr.idle);
    const secs = Number.isSafeInteger(this.limits?.file_idle_secs) && this.limits.file_idle_secs > 0 ? this.limits.file_idle_secs : 60;
    tr.idle = setTimeout(() => {
      this.enqueue(() => {
        if (tr.ended) return;
        this.send({ type: 'file_cancel', file: tr.id });
        this.end(tr, 'cancelled', t('file.cancel.timeout', { name: tr.meta.name, by: '' }));
      });
    }, secs * IDLE_FACTOR * 1000);
  }

  /** A frame of the chunk lane: handled, then acknowledged at once (the sender's window waits on it). */
  async receiveChunk(msg) {
    this.filesInit();
    if (!Number.isSafeInteger(msg.cseq) || msg.cseq < 1 || !this.joined) return;
    // The manifest (a `seq` frame) is acknowledged before its chunks: after a reload the server
    // must not send a manifest again whose chunks it no longer has.
    if (this.unacked) await this.flushAck();
    if (msg.cseq > this.lastCseq) {
      try {
        await this.onChunk(msg);
      } finally {
        this.lastCseq = msg.cseq;
      }
    }
    this.send({ type: 'ack', cseq: this.lastCseq });
  }

  async onChunk(msg) {
    const tr = this.transfers.get(msg.file);
    // A chunk of a file unknown, refused, cancelled or ended is dropped (still acknowledged).
    if (!tr || tr.own || tr.ended) return;
    const i = msg.i;
    const name = tr.meta.name;
    const n = Number.isSafeInteger(i) ? i + 1 : '?';
    let bytes;
    try {
      if (msg.from?.key_id !== tr.from.keyId) throw new Error(t('file.err.chunk_sender', { n, name }));
      if (i !== tr.next) throw new Error(t('file.err.chunk_order', { n, name, expected: tr.next + 1 }));
      bytes = await openChunk(tr.key, tr.id, i, msg.iv, msg.ciphertext).catch(() => {
        throw new Error(t('file.err.chunk_open', { n, name }));
      });
      const chunkSize = this.fileLimit('chunk_size');
      const want = Math.min(chunkSize, tr.size - i * chunkSize);
      if (bytes.length !== want) throw new Error(t('file.err.chunk_open', { n, name }));
    } catch (e) {
      this.send({ type: 'file_cancel', file: tr.id });
      this.end(tr, 'failed', e.message);
      return;
    }
    tr.hash.update(bytes);
    tr.parts.push(bytes);
    if (tr.parts.length >= FOLD_EVERY) {
      tr.folded.push(new Blob(tr.parts));
      tr.parts = [];
    }
    tr.next += 1;
    tr.done += bytes.length;
    if (tr.next < tr.chunks) {
      this.watch(tr);
      this.changed(tr);
      return;
    }
    if (tr.hash.hex() !== tr.sha256) {
      this.end(tr, 'failed', t('file.err.hash', { name }));
      return;
    }
    tr.blob = new Blob([...tr.folded, ...tr.parts], { type: SHOWN.test(tr.meta.mime) ? tr.meta.mime : 'application/octet-stream' });
    tr.parts = [];
    tr.folded = [];
    tr.hash = null;
    clearTimeout(tr.idle);
    tr.ended = true;
    tr.state = 'done';
    this.changed(tr);
  }

  onFileCancel(msg) {
    const tr = this.transfers?.get(msg.file);
    if (!tr || tr.ended) return;
    const reason = ['cancelled', 'timeout', 'sender_gone', 'mailbox_full', 'deleted'].includes(msg.reason) ? msg.reason : 'cancelled';
    const by = typeof msg.by === 'string' ? this.nameOf(msg.by) : '';
    const mine = reason === 'mailbox_full' && msg.by === this.identity.keyId && !tr.own;
    const text = t(mine ? 'file.cancel.mailbox_full_you' : `file.cancel.${reason}`, { name: tr.meta.name, by });
    // For @all and a group, one recipient's cancel, full mailbox or departure ends it for that one
    // only; the others go on (and chunk_ack says when it is done).
    if (tr.own && (tr.to === 'all' || GROUP_ID.test(tr.to)) && ['cancelled', 'mailbox_full', 'deleted'].includes(reason)) {
      tr.note = text;
      this.changed(tr);
      return;
    }
    this.end(tr, 'cancelled', text);
  }
}

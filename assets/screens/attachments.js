// dyspatcher web client: files, photos and voice notes in a conversation. The attach button, drag
// and drop and the voice button send (files.js, media.js); each file message gets a card: progress
// with cancel while it travels, then a photo's thumbnail (opening full size), a voice note's player
// or a file's name, size and save button; a refused, cancelled or failed file says why. Received
// and sent media are kept on the device with the history when it remembers (store.js, within
// MEDIA_BUDGET), the oldest dropped first.
import { t } from '../i18n/i18n.js';
import { sizeText } from '../files.js';
import { canRecord, imageSize, isPhoto, reencodePhoto, startRecording, voiceName } from '../media.js';
import { canWriteAll, convKey, S } from '../state.js';
import * as store from '../store.js';
import { $, closeDialog, el, openDialog } from '../ui.js';
import { addMessage, keeps, notice, setFileView, status, warning } from './conversation.js';

const HOLD_MIN_MS = 400; // a press on a phone shorter than this records nothing (and says how)
const SHOWN_MIME = { photo: /^image\/(jpeg|png|webp|gif|avif|bmp)$/, voice: /^audio\/(webm|ogg|mp4|mpeg|aac|wav)$/ };

const views = new Map(); // id -> {li, card, record}
const live = new Map(); // id -> the session's transfer while this page shows it
const blobs = new Map(); // id -> {blob, url}: files received or sent, whole

/** The conversation of a file record (as conversation.js keys them). */
const convOf = convKey;

const SVG = 'http://www.w3.org/2000/svg';
function icon(d) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon-svg');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}
const CLIP = 'M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5';
const MIC = 'M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM6 11a6 6 0 0 0 12 0M12 17v4M8.5 21h7';
const DOC = 'M7 3h7l4 4v14H7zM14 3v4h4';

/** A Blob kept for `id`, with its object URL. */
function hold(id, blob) {
  if (!blobs.has(id)) blobs.set(id, { blob, url: URL.createObjectURL(blob) });
  return blobs.get(id);
}

// ------------------------------------------------------------ the cards

/** Called by conversation.js for every file message it shows. */
function fileView(li, record) {
  li.classList.add('file-msg');
  const card = el('div', { class: 'attachment' });
  li.append(card);
  const view = { li, card, record };
  views.set(record.id, view);
  const tr = live.get(record.id);
  if (tr) draw(view, tr);
  else if (blobs.has(record.id)) draw(view, { state: 'done', meta: record.file, own: record.own });
  else if (record.history) {
    draw(view, { state: 'loading', meta: record.file });
    store.loadMedia(record.id).then((blob) => {
      if (blob) hold(record.id, blob);
      draw(view, blob ? { state: 'done', meta: record.file } : { state: 'absent', meta: record.file, error: record.fileError });
    });
  } else draw(view, { state: 'absent', meta: record.file });
}

/** Sizes inside a sentence, kept left to right in a right-to-left one ("64 KB", not "KB 64"). */
const ltr = (text) => `\u2066${text}\u2069`;

function draw(view, tr) {
  const { card, record, li } = view;
  const meta = tr.meta ?? record.file;
  view.tr = tr;
  // On its way: the bar and its words move, the card (and its Cancel button) stays as it is.
  const moving = tr.state === 'waiting' || tr.state === 'sending' || tr.state === 'receiving';
  if (moving && view.bar && card.dataset.state === tr.state && !tr.skipped?.length && !tr.note) {
    view.bar.value = tr.done || 0;
    view.words.textContent = progressWords(tr);
    return;
  }
  view.bar = null;
  card.dataset.state = tr.state;
  // The message's delivery state speaks of the file once it is whole.
  li.dataset.transfer = tr.state;
  card.dataset.kind = meta.kind;
  card.dataset.name = meta.name;
  const name = el('span', { class: 'file-name', dir: 'auto', text: meta.name });
  const size = el('bdi', { class: 'file-size', dir: 'ltr', text: sizeText(meta.size) });
  const parts = [];
  const held = blobs.get(record.id);
  if (tr.state === 'done' && held) {
    if (meta.kind === 'photo' && SHOWN_MIME.photo.test(held.blob.type)) parts.push(thumbnail(record, meta, held));
    else if (meta.kind === 'voice' && SHOWN_MIME.voice.test(held.blob.type)) parts.push(player(meta, held));
    else parts.push(fileLine(meta, name, size));
    parts.push(saveLink(meta, held));
  } else {
    parts.push(fileLine(meta, name, size));
    if (moving) parts.push(progress(view, tr));
    else if (tr.state === 'failed' || tr.state === 'cancelled') parts.push(el('p', { class: `file-status ${tr.state}`, text: tr.error }));
    else if (tr.state === 'absent') parts.push(el('p', { class: 'file-status', text: tr.error || t('file.not_kept') }));
    else if (tr.state === 'done') parts.push(el('p', { class: 'file-status', text: t('file.sent_done') }));
  }
  if (tr.skipped?.length) parts.push(el('p', { class: 'file-status', text: t('file.skipped', { names: tr.skipped.join(', ') }) }));
  if (tr.note) parts.push(el('p', { class: 'file-status', text: tr.note }));
  card.replaceChildren(...parts);
}

function fileLine(meta, name, size) {
  const kind = meta.kind === 'voice' ? t('file.kind_voice') : meta.kind === 'photo' ? t('file.kind_photo') : t('file.kind_file');
  return el('div', { class: 'file-line' }, el('span', { class: 'file-icon' }, icon(meta.kind === 'voice' ? MIC : DOC)), el('span', { class: 'file-text' }, name, el('span', { class: 'file-kind', text: `${kind} \u00b7 ` }), size));
}

const progressWords = (tr) =>
  tr.state === 'waiting' ? t('file.waiting') : t(tr.own ? 'file.sending' : 'file.receiving', { done: ltr(sizeText(tr.done || 0)), size: ltr(sizeText(tr.size)) });

function progress(view, tr) {
  const bar = el('progress', { max: String(tr.size || tr.meta.size), value: String(tr.done || 0), 'aria-label': t('file.progress_label', { name: tr.meta.name }) });
  const words = el('span', { class: 'file-words', text: progressWords(tr) });
  const cancel = el('button', { type: 'button', class: 'file-cancel', text: t('file.cancel'), 'aria-label': t('file.cancel_label', { name: tr.meta.name }) });
  cancel.addEventListener('click', () => S.chat?.cancelFile(view.record.id));
  view.bar = bar;
  view.words = words;
  return el('div', { class: 'file-progress' }, bar, words, cancel);
}

function thumbnail(record, meta, held) {
  const img = el('img', { src: held.url, alt: t('file.photo_alt', { name: meta.name }), width: meta.width, height: meta.height, decoding: 'async' });
  const button = el('button', { type: 'button', class: 'thumb', title: t('file.open_full') }, img);
  button.addEventListener('click', () => openViewer(meta, held));
  return button;
}

function player(meta, held) {
  const audio = el('audio', { controls: true, preload: 'metadata', src: held.url, 'aria-label': t('file.voice_label', { name: meta.name }) });
  const secs = Number.isSafeInteger(meta.duration_ms) ? Math.round(meta.duration_ms / 1000) : null;
  const length = secs === null ? '' : ` \u00b7 ${ltr(t('file.duration', { m: Math.floor(secs / 60), s: String(secs % 60).padStart(2, '0') }))}`;
  return el('div', { class: 'voice' }, audio, el('span', { class: 'file-kind', text: `${t('file.kind_voice')}${length}` }));
}

function saveLink(meta, held) {
  return el('a', { class: 'button file-save', href: held.url, download: meta.name, text: t('file.save'), 'aria-label': t('file.save_label', { name: meta.name }) });
}

function openViewer(meta, held) {
  const dialog = $('viewer');
  $('viewer-img').src = held.url;
  $('viewer-img').alt = t('file.photo_alt', { name: meta.name });
  $('viewer-title').textContent = meta.name;
  openDialog(dialog, $('viewer-close'));
}

// ------------------------------------------------------------ the session's news

/** Every change of a transfer (session hook `transfer`). */
export function onTransfer(tr) {
  live.set(tr.id, tr);
  if (!views.has(tr.id)) {
    if (tr.own) return; // our own is shown by sendOne once the manifest is out
    addMessage(tr.record);
  }
  if (tr.state === 'done' && tr.blob) hold(tr.id, tr.blob);
  const view = views.get(tr.id);
  if (!view) return;
  draw(view, tr);
  if (!tr.ended) return;
  live.delete(tr.id);
  if (tr.state === 'done') keepMedia(view.record);
  else {
    view.record.fileError = tr.error;
    if (tr.own) {
      status(tr.id, 'refused', tr.error);
      view.li.querySelector('.retry')?.remove();
    }
    if (tr.state === 'failed') warning(tr.error, convOf(view.record));
  }
}

/** Keeps a whole file with the history, when this device remembers. */
async function keepMedia(record) {
  const held = blobs.get(record.id);
  if (!held || !keeps()) return;
  const dropped = await store.saveMedia(record.id, convOf(record), held.blob).catch((e) => {
    console.warn('dyspatcher: a file could not be kept on this device:', e);
    return [];
  });
  const convs = new Set(dropped.map((d) => d.conv));
  for (const conv of convs) notice(t('file.dropped_old', { max: sizeText(store.MEDIA_BUDGET) }), { key: conv, keep: true });
}

// ------------------------------------------------------------ sending

/** Sends `files` (a FileList or array) to the open conversation, one after another. */
export async function sendFiles(files) {
  for (const file of files) await sendOne(file);
}

async function sendOne(file, extra = {}) {
  const key = S.open;
  if (!S.chat) return;
  try {
    if (key === 'all' && !canWriteAll()) throw new Error(t('send.all_disabled'));
    let blob = file;
    let meta = { name: file.name, mime: file.type || 'application/octet-stream', kind: 'file', ...extra };
    if (!extra.kind && isPhoto(file)) {
      if ($('send-original').checked) meta = { ...meta, kind: 'photo', ...(await imageSize(file)) };
      else {
        try {
          const photo = await reencodePhoto(file);
          blob = photo.blob;
          meta = { ...meta, kind: 'photo', name: photo.name, mime: photo.mime, width: photo.width, height: photo.height };
        } catch {
          // a format this browser cannot draw goes as a file, untouched
        }
      }
    }
    const tr = await S.chat.sendFile(key, blob, meta);
    hold(tr.id, blob);
    live.set(tr.id, tr);
    addMessage(tr.record);
  } catch (e) {
    warning(e.message, key);
  }
}

// ------------------------------------------------------------ voice notes

let recording = null; // {recorder, started, timer}

async function startVoice() {
  if (recording) return;
  recording = { pending: true };
  try {
    const recorder = await startRecording({ onLimit: () => stopVoice(true) });
    recording = { recorder, timer: setInterval(showRecording, 500) };
    showRecording();
  } catch (e) {
    recording = null;
    warning(t('file.mic_refused', { reason: e.message || e.name }));
    showRecording();
  }
}

async function stopVoice(send) {
  const rec = recording;
  if (!rec?.recorder) return;
  recording = null;
  clearInterval(rec.timer);
  showRecording();
  if (!send) {
    await rec.recorder.cancel();
    return;
  }
  const { blob, mime, duration_ms } = await rec.recorder.stop();
  if (duration_ms < HOLD_MIN_MS || !blob.size) {
    // Shown on a phone too (the hint line is hidden there unless it says something wrong).
    $('composer-hint').textContent = t('file.hold_hint');
    $('composer-hint').classList.add('error');
    return;
  }
  const file = new File([blob], voiceName(mime), { type: mime });
  await sendOne(file, { kind: 'voice', duration_ms });
}

function showRecording() {
  const button = $('record');
  const on = !!recording?.recorder;
  button.setAttribute('aria-pressed', String(on));
  button.classList.toggle('recording', on);
  $('record-cancel').hidden = !on;
  const label = on ? t('file.record_stop', { s: Math.floor((performance.now() - recording.recorder.began) / 1000) }) : t('file.record');
  button.setAttribute('aria-label', label);
  button.title = label;
  $('record-state').textContent = on ? label : '';
}

// ------------------------------------------------------------ setup

export function initAttachments() {
  setFileView(fileView);
  const input = $('attach-input');
  $('attach').append(icon(CLIP));
  $('record').append(icon(MIC));
  $('attach').addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    const files = [...input.files];
    input.value = '';
    sendFiles(files);
  });
  // Drag and drop onto the open conversation.
  const conv = $('conv');
  const hasFiles = (ev) => [...(ev.dataTransfer?.types ?? [])].includes('Files');
  conv.addEventListener('dragover', (ev) => {
    if (!hasFiles(ev) || !S.chat) return;
    ev.preventDefault();
    conv.classList.add('dropping');
  });
  conv.addEventListener('dragleave', (ev) => {
    if (!conv.contains(ev.relatedTarget)) conv.classList.remove('dropping');
  });
  conv.addEventListener('drop', (ev) => {
    conv.classList.remove('dropping');
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    sendFiles([...ev.dataTransfer.files]);
  });
  // Voice: hold to record on a touch screen; click (or Enter, Space) to start and to stop.
  const record = $('record');
  record.hidden = !canRecord();
  let touched = false;
  record.addEventListener('pointerdown', (ev) => {
    if (ev.pointerType !== 'touch') return;
    touched = true;
    record.setPointerCapture?.(ev.pointerId);
    startVoice();
  });
  const release = (send) => (ev) => {
    if (ev.pointerType !== 'touch' || !touched) return;
    // Released before the microphone answered: stop as soon as it does.
    const wait = () => (recording?.pending ? setTimeout(wait, 50) : stopVoice(send));
    wait();
  };
  record.addEventListener('pointerup', release(true));
  record.addEventListener('pointercancel', release(false));
  record.addEventListener('click', (ev) => {
    if (touched) {
      touched = false;
      ev.preventDefault();
      return;
    }
    if (recording?.recorder) stopVoice(true);
    else startVoice();
  });
  record.addEventListener('contextmenu', (ev) => ev.preventDefault());
  $('record-cancel').addEventListener('click', () => stopVoice(false));
  $('viewer-close').addEventListener('click', () => closeDialog($('viewer')));
  showRecording();
}

/** Draws every card again (after a change of language). */
export function redrawAttachments() {
  for (const view of views.values()) {
    view.bar = null;
    if (view.tr) draw(view, view.tr);
  }
}

/** Forgets every file shown (after "Forget this device"). */
export function clearAttachments() {
  for (const { url } of blobs.values()) URL.revokeObjectURL(url);
  blobs.clear();
  views.clear();
  live.clear();
}

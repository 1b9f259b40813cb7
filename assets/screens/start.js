// dyspatcher web client: the start screen. A name, keys (made here, loaded from files, or
// remembered), "Remember me", and Connect; a refused join comes back here with its reason.
import * as c from '../crypto.js';
import { t, tNodes } from '../i18n/i18n.js';
import { S } from '../state.js';
import { $, download, el, shortId } from '../ui.js';

const NAME_RE = /^[a-z0-9]{4,15}$/;
const GENERATED_BITS = 4096;

function nameProblem(name) {
  if (!name) return '';
  if (/[A-Z]/.test(name)) return t('start.name_upper');
  if (/[^a-z0-9]/.test(name)) return t('start.name_chars');
  if (name.length < 4) return t('start.name_short', { n: 4 - name.length });
  if (name.length > 15) return t('start.name_long');
  return null;
}

/** The server refused the name (or the join): the field is flagged with the reason. */
export function showJoinError(text) {
  $('join-error').textContent = text;
  $('name').setAttribute('aria-invalid', 'true');
  $('name').focus();
  $('name').select();
}

export function checkName() {
  $('join-error').textContent = '';
  const name = $('name').value;
  const problem = nameProblem(name);
  const check = $('name-check');
  check.textContent = problem === null ? t('start.name_good') : problem;
  check.className = problem === null ? 'check ok' : problem ? 'check bad' : 'check';
  $('name').setAttribute('aria-invalid', problem ? 'true' : 'false');
  updateConnect();
  return problem === null;
}

function updateConnect() {
  const ready = NAME_RE.test($('name').value) && !!S.identity;
  $('connect').disabled = !ready;
  $('connect').textContent = t(S.identity ? 'start.connect' : 'start.connect_waiting');
}

/** `source`: [key, params] of the text saying where the keys came from. */
export function setIdentity(identity, source, { generated = false } = {}) {
  S.identity = identity;
  S.source = source;
  $('keygen').hidden = true;
  $('key-info').hidden = false;
  $('key-source').textContent = t(...source);
  $('key-id').textContent = shortId(identity.keyId);
  $('key-id').title = t('start.full_key_id', { id: identity.keyId });
  // Keys kept on this device are locked inside the browser: they cannot be downloaded.
  $('download-keys').disabled = !identity.pkcs8;
  $('download-keys').title = identity.pkcs8 ? '' : t('start.download_locked');
  // Keys made here exist nowhere else: say so while they can still be downloaded.
  $('key-offer').hidden = !generated;
  updateConnect();
}

export async function generateKeys() {
  const run = {};
  S.generation = run;
  const started = Date.now();
  const status = $('keygen-status');
  let stepText = '';
  const show = () => {
    status.textContent = t('keygen.seconds', { step: stepText, s: Math.floor((Date.now() - started) / 1000) });
  };
  $('keygen').hidden = false;
  const ticker = setInterval(show, 250);
  try {
    const identity = await c.generateIdentity(GENERATED_BITS, (step) => {
      stepText = t(`keygen.${step}`, { bits: GENERATED_BITS });
      show();
    });
    if (S.generation === run) setIdentity(identity, ['key.source.generated', { bits: GENERATED_BITS }], { generated: true });
  } catch (e) {
    if (S.generation === run) status.textContent = t('keygen.failed', { reason: e.message });
  } finally {
    clearInterval(ticker);
  }
}

async function loadOwnKeys() {
  const error = $('own-keys-error');
  error.textContent = '';
  const privFile = $('private-file').files[0];
  const pubFile = $('public-file').files[0];
  const privText = privFile ? await privFile.text() : $('private-text').value;
  const pubText = pubFile ? await pubFile.text() : $('public-text').value;
  if (!privText.trim()) {
    error.textContent = t('start.choose_private');
    return;
  }
  try {
    const identity = await c.importIdentity(privText, pubText);
    S.generation = null;
    setIdentity(identity, [pubText.trim() ? 'key.source.own_checked' : 'key.source.own', { bits: identity.bits }]);
  } catch (e) {
    error.textContent = e.message;
  }
}

function downloadKeys() {
  if (!S.identity?.pkcs8) return;
  const { privatePem, publicPem } = c.identityPems(S.identity);
  const base = `dyspatcher-${shortId(S.identity.keyId)}`;
  download(`${base}-private.pem`, privatePem, 'application/x-pem-file');
  download(`${base}-public.pem`, publicPem, 'application/x-pem-file');
}

function toggleOwnKeys() {
  const open = $('own-keys').hidden;
  $('own-keys').hidden = !open;
  $('own-keys-toggle').setAttribute('aria-expanded', String(open));
  if (open) $('private-file').focus();
}

export function showInsecure() {
  $('join').hidden = true;
  $('insecure').hidden = false;
  $('insecure-body').replaceChildren(...tNodes('insecure.body', 'origin', el('strong', { id: 'insecure-origin', text: location.origin })));
  $('insecure-then').replaceChildren(...tNodes('insecure.then', 'url', el('strong', { id: 'insecure-https', text: `https://${location.hostname}:8443/` })));
}

/** Texts that depend on the state, written again after a change of language. */
export function translateStart() {
  $('own-keys-hint').textContent = t('start.own_hint', { min: c.KEY_BITS.min, max: c.KEY_BITS.max });
  if (S.identity) $('key-source').textContent = t(...S.source);
  if (!$('insecure').hidden) showInsecure();
  if ($('name').value) checkName();
  updateConnect();
}

/** Shows the start screen again, with a note (after a forget) or none. */
export function showStart(note = '') {
  $('chat').hidden = true;
  $('start').hidden = false;
  $('start-note').hidden = !note;
  $('start-note').textContent = note;
  $('name').focus();
}

/** `join(name)` is called when the user connects with a good name and keys. */
export function initStart({ join }) {
  $('name').addEventListener('input', checkName);
  $('own-keys-toggle').addEventListener('click', toggleOwnKeys);
  $('download-keys').addEventListener('click', downloadKeys);
  $('load-keys').addEventListener('click', loadOwnKeys);
  $('private-file').addEventListener('change', loadOwnKeys);
  $('public-file').addEventListener('change', () => $('private-file').files[0] && loadOwnKeys());
  $('join').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!checkName()) {
      $('name-check').textContent ||= t('start.name_missing');
      $('name-check').className = 'check bad';
      $('name').focus();
      return;
    }
    if (S.identity) join($('name').value);
  });
  translateStart();
  checkName();
  $('name').focus();
}

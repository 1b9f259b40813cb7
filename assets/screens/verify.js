// dyspatcher web client: the verify screen. Both key IDs in groups of 4, the safety code (the
// same on both sides), your key ID as a QR code drawn here, a scan of theirs where the browser
// has BarcodeDetector and a camera, and the "verified" mark kept on this device.
import { t, tNodes } from '../i18n/i18n.js';
import { colour, identicon } from '../identicon.js';
import { drawQr } from '../qr.js';
import { emit, member, S } from '../state.js';
import { changedFrom, isVerified, safetyCode, setVerified } from '../trust.js';
import { $, el, groups } from '../ui.js';

let scanning = null; // {stream, stop} while the camera is on

/** Fills the verify screen for member `keyId`. */
export async function showVerify(keyId) {
  const m = member(keyId);
  if (!m || !S.me) return;
  S.verifying = keyId;
  const name = m.name;
  $('verify-title').replaceChildren(...tNodes('verify.title', 'name', colour(el('span', { text: name }), keyId)));
  $('verify-icon').replaceChildren(identicon(keyId, 36));
  $('verify-intro').textContent = t('verify.intro', { name });
  const changed = changedFrom(keyId);
  $('verify-warning').hidden = !changed;
  if (changed) $('verify-warning').textContent = t('trust.key_changed_detail', { name, old: groups(changed.slice(0, 16)) });
  $('their-key-title').textContent = t('verify.their_key', { name });
  $('their-key').textContent = groups(keyId);
  $('your-key').textContent = groups(S.me.keyId);
  $('safety-code').textContent = await safetyCode(S.me.keyId, keyId);
  drawQr($('qr'), S.me.keyId, 5);
  $('qr-hint').textContent = t('verify.qr_hint', { name });
  $('scan').hidden = !('BarcodeDetector' in globalThis && navigator.mediaDevices?.getUserMedia);
  showMark();
}

function showMark() {
  const m = member(S.verifying);
  if (!m) return;
  const yes = isVerified(m.keyId);
  $('mark-verified').textContent = t(yes ? 'verify.unmark' : 'verify.mark');
  $('mark-verified').setAttribute('aria-pressed', String(yes));
  $('verify-state').textContent = t(yes ? 'verify.is_verified' : 'verify.not_verified', { name: m.name });
}

function toggleMark() {
  const m = member(S.verifying);
  if (!m) return;
  setVerified(m.keyId, m.name, !isVerified(m.keyId));
  showMark();
  emit('trust');
}

/** Scans the other person's QR code with the camera; a match marks them verified. */
async function scan() {
  if (scanning) {
    stopScan();
    return;
  }
  const m = member(S.verifying);
  if (!m) return;
  const video = $('scan-video');
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
    const detector = new globalThis.BarcodeDetector({ formats: ['qr_code'] });
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    scanning = { stream };
    $('scan').textContent = t('verify.scan_stop');
    while (scanning) {
      const codes = await detector.detect(video).catch(() => []);
      const found = codes.map((c) => c.rawValue.trim().toLowerCase()).find((v) => /^[0-9a-f]{64}$/.test(v));
      if (found) {
        stopScan();
        if (found === m.keyId) {
          setVerified(m.keyId, m.name, true);
          showMark();
          emit('trust');
          $('verify-state').textContent = t('verify.scan_match', { name: m.name });
        } else {
          $('verify-state').textContent = t('verify.scan_mismatch', { name: m.name });
        }
        return;
      }
      await new Promise((r) => requestAnimationFrame(r));
    }
  } catch (e) {
    stopScan();
    $('verify-state').textContent = t('verify.scan_failed', { reason: e.message });
  }
}

export function stopScan() {
  if (!scanning) return;
  for (const track of scanning.stream.getTracks()) track.stop();
  scanning = null;
  $('scan-video').hidden = true;
  $('scan').textContent = t('verify.scan');
}

export function initVerify({ back }) {
  $('mark-verified').addEventListener('click', toggleMark);
  $('scan').addEventListener('click', scan);
  $('verify-back').addEventListener('click', () => {
    stopScan();
    back();
  });
}

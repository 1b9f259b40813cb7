// dyspatcher web client: photos and voice notes before they are sent. A photo is drawn on a canvas
// and encoded again as JPEG, which leaves behind everything but the pixels (EXIF, GPS location,
// camera, thumbnails), at most PHOTO_MAX_SIDE pixels on its longest side. A voice note is recorded
// with MediaRecorder; the microphone is asked for only when recording starts and released when it
// stops.
export const PHOTO_MAX_SIDE = 1600; // pixels, longest side of a re-encoded photo
export const PHOTO_QUALITY = 0.85; // JPEG quality of a re-encoded photo
export const VOICE_MAX_MS = 5 * 60_000; // a voice note stops by itself after this long
const VOICE_TYPES = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/mp4', 'audio/webm'];
/** Images a browser can decode and that are worth re-encoding (not animations, not vector images). */
const PHOTO_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/heic', 'image/heif', 'image/avif', 'image/bmp']);

export const isPhoto = (file) => PHOTO_TYPES.has(String(file.type).toLowerCase());

/** The JPEG name of a re-encoded photo: "map.png" -> "map.jpg". */
export const jpegName = (name) => `${String(name).replace(/\.[^.]*$/, '') || 'photo'}.jpg`;

/**
 * Re-encodes a photo: {blob, width, height, name, mime}. The orientation the camera recorded is
 * applied to the pixels first, so the photo stands as it was taken without its metadata.
 */
export async function reencodePhoto(file, maxSide = PHOTO_MAX_SIDE, quality = PHOTO_QUALITY) {
  const bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  try {
    const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
    const width = Math.max(1, Math.round(bitmap.width * scale));
    const height = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const g = canvas.getContext('2d');
    // Transparent parts of a PNG would turn black in a JPEG.
    g.fillStyle = '#fff';
    g.fillRect(0, 0, width, height);
    g.drawImage(bitmap, 0, 0, width, height);
    const blob = await new Promise((res, rej) => canvas.toBlob((b) => (b ? res(b) : rej(new Error('encoding failed'))), 'image/jpeg', quality));
    return { blob, width, height, name: jpegName(file.name), mime: 'image/jpeg' };
  } finally {
    bitmap.close();
  }
}

/** The size of an image as it is (for a photo sent as the original). */
export async function imageSize(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const size = { width: bitmap.width, height: bitmap.height };
    bitmap.close();
    return size;
  } catch {
    return {};
  }
}

export const canRecord = () => !!globalThis.MediaRecorder && !!navigator.mediaDevices?.getUserMedia;

/**
 * Starts recording from the microphone (asking for it now). Resolves to a recorder:
 * `stop()` resolves to {blob, mime, duration_ms}; `cancel()` throws the recording away. It stops
 * by itself after VOICE_MAX_MS (`onLimit` is called then).
 */
export async function startRecording({ onLimit } = {}) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const mimeType = VOICE_TYPES.find((m) => MediaRecorder.isTypeSupported(m)) ?? '';
  let rec;
  try {
    rec = new MediaRecorder(stream, mimeType ? { mimeType } : {});
  } catch (e) {
    stream.getTracks().forEach((tr) => tr.stop());
    throw e;
  }
  const parts = [];
  const began = performance.now();
  rec.ondataavailable = (ev) => {
    if (ev.data.size) parts.push(ev.data);
  };
  const stopped = new Promise((res) => {
    rec.onstop = () => {
      stream.getTracks().forEach((tr) => tr.stop());
      res();
    };
  });
  rec.start(1000);
  const limit = setTimeout(() => onLimit?.(), VOICE_MAX_MS);
  const finish = async () => {
    clearTimeout(limit);
    if (rec.state !== 'inactive') rec.stop();
    await stopped;
  };
  return {
    began,
    async stop() {
      const duration = Math.round(performance.now() - began);
      await finish();
      const mime = (rec.mimeType || mimeType || 'audio/webm').split(';')[0];
      return { blob: new Blob(parts, { type: mime }), mime, duration_ms: duration };
    },
    async cancel() {
      await finish();
      parts.length = 0;
    },
  };
}

/** "map.jpg" for a voice note's file: "voice-20261203-1648.webm". */
export function voiceName(mime, now = new Date()) {
  const pad = (n) => String(n).padStart(2, '0');
  const ext = { 'audio/ogg': 'ogg', 'audio/mp4': 'm4a' }[mime] ?? 'webm';
  return `voice-${now.getFullYear()}${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}.${ext}`;
}

// dyspatcher web client: noticing new messages while the page is hidden. The tab title and the
// favicon count them; a browser notification (only once the user allowed it from the menu, never
// on load) for direct messages and @all mentions of your name (every @all if asked); an optional
// sound and vibration.
import { t } from './i18n/i18n.js';
import { S } from './state.js';
import { $, mentionsMe } from './ui.js';

const BODY_MAX = 140; // characters of the message shown in a notification

export function updateTitle() {
  const prefix = S.hiddenUnread ? `(${S.hiddenUnread}) ` : '';
  document.title = `${prefix}dyspatcher${S.me ? ` \u2014 ${S.me.name}` : ''}`;
  badge(S.hiddenUnread);
}

/** The favicon with a red count, drawn on a canvas; the plain icon without one. */
function badge(n) {
  const link = $('favicon');
  if (!n) {
    link.href = 'icon.svg';
    return;
  }
  const canvas = document.createElement('canvas');
  canvas.width = 64;
  canvas.height = 64;
  const g = canvas.getContext('2d');
  g.fillStyle = '#1f6f5c';
  g.beginPath();
  g.arc(32, 32, 30, 0, Math.PI * 2);
  g.fill();
  g.fillStyle = '#c62828';
  g.beginPath();
  g.arc(44, 20, 20, 0, Math.PI * 2);
  g.fill();
  g.fillStyle = '#fff';
  g.font = 'bold 26px sans-serif';
  g.textAlign = 'center';
  g.textBaseline = 'middle';
  g.fillText(n > 99 ? '99' : String(n), 44, 21);
  link.href = canvas.toDataURL('image/png');
}

/** A message arrived: counted while hidden, notified when it concerns us and the user asked. */
export function arrived(m) {
  if (m.own || !document.hidden) return;
  S.hiddenUnread += 1;
  updateTitle();
  const direct = m.to.kind === 'direct';
  const inGroup = m.to.kind === 'group';
  const wanted = direct || inGroup || mentionsMe(m.text, S.me?.name) || S.prefs.notifyAll;
  if (!wanted) return;
  if (S.prefs.sound) ding();
  if (!S.prefs.notify || globalThis.Notification?.permission !== 'granted') return;
  const title = inGroup ? t('notify.group_title', { name: m.from.name, group: m.to.name }) : t(direct ? 'notify.title' : 'notify.all_title', { name: m.from.name });
  const body = m.text.length > BODY_MAX ? `${m.text.slice(0, BODY_MAX)}\u2026` : m.text;
  try {
    const n = new Notification(title, { body, tag: direct ? m.from.keyId : inGroup ? m.to.group : 'all', lang: document.documentElement.lang });
    n.onclick = () => {
      globalThis.focus();
      n.close();
    };
  } catch (e) {
    console.warn('dyspatcher: no notification:', e);
  }
}

/** The page is seen again: nothing is unread any more. */
export function seen() {
  S.hiddenUnread = 0;
  updateTitle();
}

let audio = null;
function ding() {
  globalThis.navigator?.vibrate?.(120);
  try {
    audio ||= new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.25);
  } catch {
    // no sound here: the title and the notification still tell
  }
}

/** The menu's notification button: asks for permission (on a click, never on load). */
export async function enable() {
  const note = $('notify-note');
  if (!globalThis.Notification) {
    note.textContent = t('chat.notify_unsupported');
    return;
  }
  let permission = Notification.permission;
  if (permission === 'default') permission = await Notification.requestPermission();
  S.prefs.notify = permission === 'granted';
  note.textContent = permission === 'denied' ? t('chat.notify_denied') : '';
  showPrefs();
}

export function showPrefs() {
  const on = S.prefs.notify && globalThis.Notification?.permission === 'granted';
  $('notify').textContent = t(on ? 'chat.notify_off' : 'chat.notify_on');
  $('notify').setAttribute('aria-pressed', String(on));
  $('notify-all').checked = S.prefs.notifyAll;
  $('sound').checked = S.prefs.sound;
}

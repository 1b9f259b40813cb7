// dyspatcher web client: the menu and the dialogs. Language, notifications, "How this works",
// export, leave, and "Forget this device" (the panic wipe, in every tab of this device).
import { LANGUAGES, setLanguage, t, translatePage } from '../i18n/i18n.js';
import * as notify from '../notify.js';
import { emit, S } from '../state.js';
import * as store from '../store.js';
import { $, closeDialog, el, openDialog } from '../ui.js';
import { clearAttachments } from './attachments.js';
import { clearConversations, exportAll } from './conversation.js';
import { checkName, generateKeys, showStart } from './start.js';

const PREFS = 'dyspatcher.prefs';

/** Keeps the language and notification choices, only on a device that remembers. */
export function savePrefs() {
  if (!S.remember || S.keepsNothing) return;
  try {
    localStorage.setItem(PREFS, JSON.stringify({ ...S.prefs, lang: S.lang }));
  } catch {
    // storage disabled: the choices last as long as the page
  }
}

export function loadPrefs() {
  try {
    const kept = JSON.parse(localStorage.getItem(PREFS) || 'null');
    if (kept && typeof kept === 'object') {
      S.prefs.notify = !!kept.notify;
      S.prefs.notifyAll = !!kept.notifyAll;
      S.prefs.sound = !!kept.sound;
      return typeof kept.lang === 'string' ? kept.lang : null;
    }
  } catch {
    // nothing kept
  }
  return null;
}

/** Switches the language everywhere (the page's fixed texts, then `redraw` for the rest). */
export async function useLanguage(code, redraw) {
  const lang = await setLanguage(code);
  S.lang = lang.code;
  for (const select of [$('lang'), $('lang-chat')]) select.value = lang.code;
  translatePage();
  redraw();
  notify.showPrefs();
}

export function fillLanguages() {
  for (const select of [$('lang'), $('lang-chat')]) {
    select.replaceChildren(...LANGUAGES.map((l) => el('option', { value: l.code, lang: l.tag, dir: l.dir, text: l.name })));
  }
}

// ---------------------------------------------------------------- leaving and forgetting

export async function leave() {
  closeDialog($('menu'));
  const chat = S.chat;
  if (!chat) return;
  await chat.leave();
  if (S.remembered) store.markLeft().catch(() => {});
}

/** Other tabs of this page on this device: a wipe in one empties them all. */
const tabs = globalThis.BroadcastChannel ? new BroadcastChannel('dyspatcher') : null;

/**
 * The panic wipe: leave, disconnect, delete everything kept here, start again as someone new.
 * `elsewhere`: another tab of this device asked for it.
 */
export async function forgetDevice({ elsewhere = false } = {}) {
  closeDialog($('forget-dialog'));
  closeDialog($('menu'));
  if (!elsewhere) tabs?.postMessage('forget');
  const chat = S.chat;
  S.chat = null;
  // Still trying to reconnect: the server cannot be told, the membership expires by itself.
  const offline = !!chat && !chat.stopped && !chat.joined;
  if (chat) {
    await chat.leave();
    chat.dispose();
  }
  const grace = Math.round((chat?.limits?.away_grace_secs ?? 600) / 60);
  await store.wipe().catch((e) => console.warn('dyspatcher: could not delete what this device kept:', e));
  Object.assign(S, { remembered: false, identity: null, generation: null, me: null, members: [], hiddenUnread: 0 });
  S.contacts = { seen: {}, verified: new Set(), changed: new Map() };
  clearInterval(S.closedTimer);
  clearConversations();
  clearAttachments();
  notify.updateTitle();
  $('start-forget').hidden = true;
  $('key-info').hidden = true;
  $('name').value = '';
  checkName();
  const note = t(elsewhere ? 'start.forgotten_elsewhere' : 'start.forgotten') + (offline ? ` ${t('start.forgotten_offline', { n: grace })}` : '');
  showStart(note);
  generateKeys();
  emit('list');
}

export function initMenu({ redraw }) {
  tabs?.addEventListener('message', (ev) => {
    if (ev.data === 'forget') forgetDevice({ elsewhere: true });
  });
  for (const select of [$('lang'), $('lang-chat')]) {
    select.addEventListener('change', () => useLanguage(select.value, redraw).then(savePrefs));
  }
  $('menu-open').addEventListener('click', () => openDialog($('menu')));
  $('menu-close').addEventListener('click', () => closeDialog($('menu')));
  const how = () => openDialog($('how'), $('how-close'));
  $('how-start').addEventListener('click', how);
  $('how-chat').addEventListener('click', how);
  $('how-close').addEventListener('click', () => closeDialog($('how')));
  $('notify').addEventListener('click', () => notify.enable().then(savePrefs));
  $('notify-all').addEventListener('change', () => {
    S.prefs.notifyAll = $('notify-all').checked;
    savePrefs();
  });
  $('sound').addEventListener('change', () => {
    S.prefs.sound = $('sound').checked;
    savePrefs();
  });
  $('export-all').addEventListener('click', () => {
    closeDialog($('menu'));
    exportAll();
  });
  $('leave').addEventListener('click', leave);
  const askForget = () => {
    closeDialog($('menu'));
    openDialog($('forget-dialog'), $('forget-cancel'));
  };
  $('forget').addEventListener('click', askForget);
  $('start-forget').addEventListener('click', askForget);
  $('forget-cancel').addEventListener('click', () => closeDialog($('forget-dialog')));
  $('forget-confirm').addEventListener('click', () => forgetDevice());
  // A click on the backdrop of a dialog closes it.
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.addEventListener('click', (ev) => {
      if (ev.target === dialog) closeDialog(dialog);
    });
  }
}

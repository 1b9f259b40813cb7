// dyspatcher web client: the page. Wires the session (session.js) to the screens: start →
// conversation list and the open conversation (two panes on a desktop, one screen at a time on a
// phone) → verify; the menu, leaving, forgetting, and the connection's state.
import { pickLanguage, reason, t } from './i18n/i18n.js';
import { leftText, moderation } from './meaning.js';
import * as notify from './notify.js';
import { addMessage, conversation, exportOpen, flushHistory, initConversation, notice, openConversation, seenOpen, send, showHeader, showHistory, status, warning } from './screens/conversation.js';
import { initAttachments, onTransfer, redrawAttachments } from './screens/attachments.js';
import { renderList } from './screens/list.js';
import { checkName, generateKeys, initStart, setIdentity, showInsecure, showJoinError, showStart, translateStart } from './screens/start.js';
import { initVerify, showVerify, stopScan } from './screens/verify.js';
import { groupNotice, initGroups, redrawGroup, showCreate, showRoster } from './screens/group.js';
import { Chat, chatUrl, gapText, untilText } from './session.js';
import { canWriteAll, group, member, narrow, on, S } from './state.js';
import * as store from './store.js';
import * as trust from './trust.js';
import { $, shortId } from './ui.js';
import { setKeyBits } from './crypto.js';
import { identicon } from './identicon.js';
import { fillLanguages, initMenu, loadPrefs, useLanguage } from './screens/menu.js';

/** Join refusals about the name: answered on the start screen. */
const NAME_REFUSALS = new Set(['bad_name', 'name_taken']);

// ---------------------------------------------------------------- views

/** Shows 'list', 'conv', 'verify' or 'group' (a phone shows one; a desktop shows the list beside). */
function showView(view) {
  if (S.view === 'verify' && view !== 'verify') stopScan();
  S.view = view;
  $('chat').dataset.view = view;
  $('verify').hidden = view !== 'verify';
  $('group').hidden = view !== 'group';
  renderList(pick);
  seenOpen();
}

/** A conversation picked in the list (or a sender's name tapped): it opens, ready to write. */
function pick(key) {
  openConversation(key);
  showView('conv');
  $('text').focus();
}

function back() {
  showView('list');
  $('member-list').querySelector(`.member[data-key="${CSS.escape(S.open)}"]`)?.focus();
}

// ---------------------------------------------------------------- joining

/** Opens the chat as `name`; `state` is the session this device kept (a reload). */
function enterChat(name, state = null) {
  $('start').hidden = true;
  $('chat').hidden = false;
  $('closed').hidden = true;
  $('join-error').textContent = '';
  $('me-name').textContent = name;
  $('me-key').textContent = shortId(S.identity.keyId);
  $('me-key').title = t('chat.your_key', { id: S.identity.keyId });
  $('me-icon').replaceChildren(identicon(S.identity.keyId, 32));
  S.remember = $('remember').checked;
  if (!S.remember && S.remembered) forgetStored();
  conversation('all', t('list.everyone'));
  openConversation(S.open);
  showView(narrow() ? 'list' : 'conv');
  S.chat?.dispose();
  S.chat = new Chat({ identity: S.identity, name, url: chatUrl(), hooks, state });
  S.chat.start();
}

function backToStart() {
  S.chat?.dispose();
  S.chat = null;
  S.me = null;
  clearInterval(S.closedTimer);
  showStart();
  notify.updateTitle();
}

/** Deletes what this device keeps (the user unticked "Remember me", or the server said so). */
function forgetStored() {
  S.remembered = false;
  $('start-forget').hidden = true;
  return store.wipe().catch((e) => console.warn('dyspatcher: could not delete what this device kept:', e));
}

/** Keeps the identity and, from now on, the session state, when both the user and the server agree. */
function keepOnDevice(me) {
  const chat = S.chat;
  if (!chat) return;
  if (S.options.remember === false) {
    chat.save = null;
    S.keepsNothing = true;
    if (S.remembered || S.remember) forgetStored();
    return;
  }
  S.keepsNothing = false;
  if (!S.remember) {
    chat.save = null;
    return;
  }
  const first = !S.remembered;
  store.saveIdentity(S.identity, me.name, S.source).catch((e) => console.warn('dyspatcher: could not keep the keys:', e));
  S.remembered = true;
  $('start-forget').hidden = false;
  if (first) trust.saveContacts();
  // What the conversations showed is on the device before the frames are acknowledged.
  chat.save = async (state) => {
    await flushHistory();
    await store.saveState(state);
  };
}

// ---------------------------------------------------------------- the session's news

/** The status line; `announce` (a change of state, not a countdown's tick) is read out. */
function setStatus(state, text, announce = true) {
  $('status').dataset.state = state;
  $('status-text').textContent = text;
  if (announce) $('status-live').textContent = text;
  $('send').disabled = state !== 'connected';
}

const hooks = {
  state({ state, text, retryIn, offline, kind, until, refusal }) {
    // A refused join is fixed where it was typed: back on the start screen, with its reason
    // (a ban says until when on the chat screen instead).
    if (state === 'closed' && refusal && kind !== 'banned' && (NAME_REFUSALS.has(refusal.code) || !S.me)) {
      S.connState = state;
      backToStart();
      showJoinError(t(NAME_REFUSALS.has(refusal.code) ? 'start.refused' : 'start.refused_other', { reason: reason(refusal.code, refusal.message) }));
      return;
    }
    const wasConnected = S.connState === 'connected';
    S.connState = state;
    clearInterval(S.countdown);
    clearInterval(S.closedTimer);
    $('reconnect-now').hidden = state !== 'reconnecting';
    $('closed').hidden = state !== 'closed';
    $('composer').hidden = state === 'closed';
    if (state === 'reconnecting') {
      const end = Date.now() + retryIn;
      const tick = (announce = false) =>
        setStatus(state, offline ? t('status.waiting_network', { text }) : t('status.reconnecting', { text, s: Math.max(0, Math.ceil((end - Date.now()) / 1000)) }), announce);
      tick(true);
      S.countdown = setInterval(tick, 500);
      // Failed attempts while the server stays away add no new lines to the conversation.
      if (wasConnected && !S.shuttingDown) notice(text, { kind: 'trouble' });
      S.reconnecting = true;
    } else if (state === 'closed') {
      setStatus(state, t('status.disconnected'));
      // The panel under the conversation says it: no second line above it.
      showClosed(text, kind, until);
      S.reconnecting = false;
    } else if (state === 'connected') {
      setStatus(state, t('status.connected'));
      // No stale "Not connected." under the composer once connected.
      if ($('composer-hint').classList.contains('error')) {
        $('composer-hint').textContent = t('conv.hint');
        $('composer-hint').classList.remove('error');
      }
      if (S.reconnecting) notice(t('status.connected_again'));
      S.reconnecting = false;
      S.shuttingDown = false;
    } else {
      setStatus(state, text);
    }
  },
  welcome({ me, options, limits, resumed, restored }) {
    S.me = me;
    // Keys loaded from now on (after going back to the start screen) are checked against the server's sizes.
    setKeyBits(limits?.min_key_bits, limits?.max_key_bits);
    translateStart();
    S.options = options;
    $('me-name').textContent = me.name;
    $('me-admin').hidden = !me.admin;
    if (me.admin && $('name').value !== me.name) notice(t('chat.admin_seat', { name: me.name }));
    keepOnDevice(me);
    $('no-remember-note').hidden = !S.keepsNothing;
    if (S.keepsNothing && !S.toldNothingKept) {
      S.toldNothingKept = true;
      notice(t('chat.nothing_kept'));
    }
    if (restored) notice(t(resumed ? 'chat.welcome_back' : 'chat.welcome_afresh', { name: me.name }));
    notify.updateTitle();
  },
  members(list) {
    S.members = list;
    trust.observe(list);
    // Without @all, a lone other member (the admin, with --only-admin) is the obvious one to write to.
    if (S.open === 'all' && !canWriteAll()) {
      const others = list.filter((m) => m.keyId !== S.me?.keyId);
      if (others.length === 1) openConversation(others[0].keyId);
    }
    renderList(pick);
    showHeader();
    redrawGroup();
  },
  message(m) {
    addMessage(m);
  },
  rejected({ fromName, reason }) {
    warning(t('notice.not_shown', { name: fromName, reason }));
  },
  joined(m, again) {
    // Only the admin has a second endpoint: its web seat beside the prompt.
    if (again && !m.admin) return;
    const text = t(again ? 'notice.joined_seat' : 'notice.joined', { name: m.name });
    notice(text, { key: 'all', keep: true });
    if (S.conversations.has(m.keyId)) notice(text, { key: m.keyId, keep: true });
  },
  left({ name, keyId, reason }) {
    const text = leftText(name, reason);
    const kind = reason === 'left' ? 'info' : 'trouble';
    notice(text, { key: 'all', kind, keep: true });
    if (S.conversations.has(keyId)) notice(text, { key: keyId, kind, keep: true });
  },
  presence() {
    showHeader();
  },
  groups(list) {
    S.groups = list;
    // A group just created opens once the server took it.
    if (S.opening && group(S.opening)) {
      const id = S.opening;
      S.opening = null;
      renderList(pick);
      pick(id);
    }
    renderList(pick);
    showHeader();
    redrawGroup();
  },
  groupEvent(e) {
    groupNotice(e);
  },
  gap(gap) {
    notice(gapText(gap), { kind: 'trouble', keep: true });
  },
  delivery({ id, state }) {
    status(id, state);
  },
  notice({ code, text }) {
    // The panel under the conversation says these, with the time to come back.
    if (code === 'replaced' || code === 'kicked' || code === 'banned') return;
    if (code === 'shutting_down') {
      // One line for a shutdown: the close that follows adds none.
      S.shuttingDown = true;
      notice(text || t('status.shutting_down'), { kind: 'trouble' });
    } else notice(text || code);
  },
  ack(id) {
    status(id, 'sent');
  },
  refused({ id, code, message }) {
    status(id, 'refused', reason(code, message));
  },
  serverError({ code, message }) {
    warning(t('notice.server_said', { message: reason(code, message) }));
  },
  transfer(tr) {
    onTransfer(tr);
  },
};

/** The panel under the conversation once the connection will not come back by itself. */
function showClosed(text, kind, until) {
  $('closed-text').textContent = text;
  const detail = $('closed-detail');
  const retry = $('closed-retry');
  $('take-back').hidden = kind !== 'replaced';
  retry.hidden = kind === 'replaced' || kind === 'ended';
  retry.textContent = t('closed.retry');
  detail.hidden = true;
  if (kind === 'replaced') {
    // This page no longer writes the remembered state: the other one does.
    if (S.chat) S.chat.save = null;
    detail.hidden = false;
    detail.textContent = t('closed.replaced_detail');
  } else if (kind === 'kicked' || kind === 'banned') {
    detail.hidden = false;
    if (until === null || until === undefined) {
      detail.textContent = t('closed.until_lifted');
      retry.textContent = t('closed.try_again');
    } else {
      // No "connect again" before the time the admin set.
      const tick = () => {
        const open = Date.now() >= until;
        detail.textContent = open ? t('closed.may_return_now') : t('closed.may_return', { when: untilText(until) });
        retry.hidden = !open;
        if (open) clearInterval(S.closedTimer);
      };
      tick();
      S.closedTimer = setInterval(tick, 1000);
    }
  }
}

/** "Use the chat here": takes the membership back from the tab or device that took it. */
async function takeBack() {
  if (!S.chat) return;
  let state = null;
  if (S.remember && !S.keepsNothing) {
    const saved = await store.load().catch(() => null);
    if (saved?.identity.keyId === S.identity.keyId) state = saved.state;
  }
  notice(t('closed.taking_back'));
  S.chat.takeBack(state);
}

// ---------------------------------------------------------------- writing

async function submit() {
  const text = $('text').value;
  const hint = $('composer-hint');
  if (!text.trim() || !S.chat) return;
  const command = S.me?.admin ? moderation(text) : null;
  if (command) {
    const ok = typeof command === 'object' && S.chat.send(command);
    hint.textContent = typeof command === 'string' ? command : ok ? t('conv.admin_sent') : t('send.not_connected');
    hint.classList.toggle('error', !ok);
    if (ok) $('text').value = '';
    return;
  }
  try {
    await send(text);
    if ($('text').value === text) $('text').value = '';
    hint.textContent = t('conv.hint');
    hint.classList.remove('error');
  } catch (e) {
    hint.textContent = e.message;
    hint.classList.add('error');
  }
  autosize();
}

// Browsers without `field-sizing: content` grow the box here.
const grows = globalThis.CSS?.supports?.('field-sizing', 'content');
function autosize() {
  if (grows) return;
  const box = $('text');
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight + 2, 160)}px`;
}

// ---------------------------------------------------------------- start

/** Everything drawn from the state, again (after a change of language). */
function redraw() {
  translateStart();
  if (S.me) {
    renderList(pick);
    showHeader();
    redrawAttachments();
    redrawGroup();
  }
  if (S.view === 'verify' && S.verifying) showVerify(S.verifying);
}

function initChat() {
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    submit();
  });
  $('text').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submit();
    }
  });
  $('text').addEventListener('input', autosize);
  $('back').addEventListener('click', back);
  $('verify-open').addEventListener('click', () => {
    showVerify(S.open);
    showView('verify');
    $('verify-body').focus();
  });
  $('export').addEventListener('click', exportOpen);
  // A sender's name in the Everyone conversation opens their conversation.
  $('messages').addEventListener('click', (ev) => {
    const from = ev.target.closest('.from');
    const key = from?.closest('.msg')?.dataset.from;
    if (key && key !== S.me?.keyId && member(key)) pick(key);
  });
  $('reconnect-now').addEventListener('click', () => S.chat?.reconnectNow());
  $('closed-retry').addEventListener('click', () => S.chat?.retry());
  $('take-back').addEventListener('click', takeBack);
  $('closed-start').addEventListener('click', backToStart);
  // A page closed or hidden may not come back: what it saw is kept first.
  addEventListener('pagehide', () => S.chat?.enqueue(() => S.chat?.persist()));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      notify.seen();
      seenOpen();
    }
  });
  addEventListener('online', () => S.chat?.reconnectNow());
  on('list', () => renderList(pick));
  on('trust', () => {
    renderList(pick);
    showHeader();
    redrawGroup();
  });
}

/** Starts where this device left off: rejoins as the remembered member, or makes keys. */
async function boot() {
  let saved = null;
  try {
    saved = await store.load();
  } catch (e) {
    console.warn('dyspatcher: nothing usable is remembered here:', e);
  }
  if (!saved) {
    generateKeys();
    return;
  }
  S.remembered = true;
  $('start-forget').hidden = false;
  const source = Array.isArray(saved.source) ? saved.source : ['key.source.remembered', { bits: saved.identity.bits }];
  setIdentity(saved.identity, source);
  $('name').value = saved.name || '';
  checkName();
  await trust.loadContacts();
  const histories = await store.loadHistories().catch(() => new Map());
  if (!saved.left) {
    S.me = { name: saved.name, keyId: saved.identity.keyId, admin: false };
    showHistory(histories);
    S.me = null;
    enterChat(saved.name, saved.state);
  }
}

async function main() {
  fillLanguages();
  const kept = loadPrefs();
  await useLanguage(kept ?? pickLanguage(), redraw);
  if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) {
    showInsecure();
    return;
  }
  initStart({ join: (name) => enterChat(name) });
  initConversation();
  initAttachments();
  initVerify({ back: () => showView('conv') });
  initGroups({
    opened(mode) {
      if (mode === 'create') showCreate();
      else showRoster(S.open);
      showView('group');
      $('group-body').focus();
    },
    created(id) {
      S.opening = id;
    },
    back: () => showView(S.conversations.has(S.open) ? 'conv' : 'list'),
  });
  initMenu({ redraw });
  initChat();
  notify.showPrefs();
  await boot();
}

main();

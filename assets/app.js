// dyspatcher web client: the screens. Start (name, keys) → chat (members, conversation, composer).
import * as c from './crypto.js';
import { Chat, chatUrl, gapText, untilText } from './session.js';
import { leftText } from './meaning.js';
import { moderation } from './meaning.js';
import * as store from './store.js';
import { $, Conversation, download, exportFilename, renderMembers, shortId } from './ui.js';

const NAME_RE = /^[a-z0-9]{4,15}$/;
/** Join refusals about the name: answered on the start screen. */
const NAME_REFUSALS = new Set(['bad_name', 'name_taken']);
const GENERATED_BITS = 4096;

const app = {
  identity: null,
  generation: null, // the running key generation; replaced when the user loads own keys
  chat: null,
  me: null,
  options: {},
  members: [],
  selected: 'all',
  unread: 0,
  conversation: null,
  countdown: null,
  state: null,
  reconnecting: false,
  source: '', // where the identity came from, as shown
  remember: true, // the user's choice on the start screen
  keepsNothing: false, // the server said --no-remember
  remembered: false, // this device holds an identity
  closedTimer: null,
};

// ---------------------------------------------------------------- start screen

function nameProblem(name) {
  if (!name) return '';
  if (/[A-Z]/.test(name)) return 'Use lowercase letters only (a–z).';
  if (/[^a-z0-9]/.test(name)) return 'Only letters a–z and digits 0–9: no spaces, accents or symbols.';
  if (name.length < 4) return `${4 - name.length} more character${name.length === 3 ? '' : 's'} needed (at least 4).`;
  if (name.length > 15) return 'At most 15 characters.';
  return null;
}

function showJoinError(text) {
  $('join-error').textContent = text;
  $('name').setAttribute('aria-invalid', 'true');
  $('name').focus();
  $('name').select();
}

function checkName() {
  $('join-error').textContent = '';
  const name = $('name').value;
  const problem = nameProblem(name);
  const check = $('name-check');
  check.textContent = problem === null ? '\u2713 Good name.' : problem;
  check.className = problem === null ? 'check ok' : problem ? 'check bad' : 'check';
  $('name').setAttribute('aria-invalid', problem ? 'true' : 'false');
  updateConnect();
  return problem === null;
}

function updateConnect() {
  const ready = NAME_RE.test($('name').value) && !!app.identity;
  $('connect').disabled = !ready;
  $('connect').textContent = app.identity ? 'Connect' : 'Connect (waiting for your keys\u2026)';
}

function setIdentity(identity, source, { generated = false } = {}) {
  app.identity = identity;
  app.source = source;
  $('keygen').hidden = true;
  $('key-info').hidden = false;
  $('key-source').textContent = source;
  $('key-id').textContent = shortId(identity.keyId);
  $('key-id').title = `Full Key ID: ${identity.keyId}`;
  // Keys kept on this device are locked inside the browser: they cannot be downloaded.
  $('download-keys').disabled = !identity.pkcs8;
  $('download-keys').title = identity.pkcs8 ? '' : 'Keys remembered on this device cannot be exported';
  // Keys made here exist nowhere else: say so while they can still be downloaded.
  $('key-offer').hidden = !generated;
  updateConnect();
}

async function generateKeys() {
  const run = {};
  app.generation = run;
  const started = Date.now();
  const status = $('keygen-status');
  let stepText = '';
  const show = () => {
    const s = Math.floor((Date.now() - started) / 1000);
    status.textContent = `${stepText} ${s} s`;
  };
  const steps = {
    generate: `Step 1 of 3: generating your RSA ${GENERATED_BITS} key pair in this browser (a few seconds)\u2026`,
    export: 'Step 2 of 3: preparing the key for signing and decryption\u2026',
    keyid: 'Step 3 of 3: computing your Key ID\u2026',
  };
  $('keygen').hidden = false;
  const ticker = setInterval(show, 250);
  try {
    const identity = await c.generateIdentity(GENERATED_BITS, (step) => {
      stepText = steps[step];
      show();
    });
    if (app.generation === run) setIdentity(identity, `New RSA ${GENERATED_BITS} key pair, made in this browser.`, { generated: true });
  } catch (e) {
    if (app.generation === run) status.textContent = `Key generation failed: ${e.message}`;
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
    error.textContent = 'Choose or paste your private key first.';
    return;
  }
  try {
    const identity = await c.importIdentity(privText, pubText);
    app.generation = null;
    setIdentity(identity, `Your own RSA ${identity.bits} key${pubText.trim() ? ' (public key checked)' : ''}.`);
  } catch (e) {
    error.textContent = e.message;
  }
}

function downloadKeys() {
  if (!app.identity?.pkcs8) return;
  const { privatePem, publicPem } = c.identityPems(app.identity);
  const base = `dyspatcher-${shortId(app.identity.keyId)}`;
  download(`${base}-private.pem`, privatePem, 'application/x-pem-file');
  download(`${base}-public.pem`, publicPem, 'application/x-pem-file');
}

function toggleOwnKeys() {
  const open = $('own-keys').hidden;
  $('own-keys').hidden = !open;
  $('own-keys-toggle').setAttribute('aria-expanded', String(open));
  if (open) $('private-file').focus();
}

function showInsecure() {
  $('join').hidden = true;
  $('insecure').hidden = false;
  $('insecure-origin').textContent = location.origin;
  $('insecure-https').textContent = `https://${location.hostname}:8443/`;
}

function initStart() {
  $('name').addEventListener('input', checkName);
  $('own-keys-toggle').addEventListener('click', toggleOwnKeys);
  $('download-keys').addEventListener('click', downloadKeys);
  $('load-keys').addEventListener('click', loadOwnKeys);
  $('private-file').addEventListener('change', loadOwnKeys);
  $('public-file').addEventListener('change', () => $('private-file').files[0] && loadOwnKeys());
  $('join').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!checkName()) {
      $('name-check').textContent ||= 'Type a name first.';
      $('name-check').className = 'check bad';
      $('name').focus();
      return;
    }
    if (app.identity) enterChat($('name').value);
  });
  $('start-forget').addEventListener('click', () => askForget());
  checkName();
  $('name').focus();
}

/** Starts where this device left off: rejoins as the remembered member, or offers its keys. */
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
  app.remembered = true;
  $('start-forget').hidden = false;
  setIdentity(saved.identity, saved.source || `RSA ${saved.identity.bits} key remembered on this device.`);
  $('name').value = saved.name || '';
  checkName();
  if (!saved.left) enterChat(saved.name, saved.state);
}

// ---------------------------------------------------------------- chat screen

/** Opens the chat as `name`; `state` is the session this device kept (a reload). */
function enterChat(name, state = null) {
  $('start').hidden = true;
  $('chat').hidden = false;
  $('closed').hidden = true;
  $('start-note').hidden = true;
  $('join-error').textContent = '';
  $('me-name').textContent = name;
  $('me-key').textContent = shortId(app.identity.keyId);
  $('me-key').title = `Your Key ID: ${app.identity.keyId}`;
  app.conversation ||= new Conversation($('messages'), $('conversation'));
  app.remember = $('remember').checked;
  if (!app.remember && app.remembered) forgetStored();
  app.chat?.dispose();
  app.chat = new Chat({ identity: app.identity, name, url: chatUrl(), hooks, state });
  app.chat.start();
  $('text').focus();
}

function backToStart() {
  app.chat?.dispose();
  app.chat = null;
  app.me = null;
  clearInterval(app.closedTimer);
  $('chat').hidden = true;
  $('start').hidden = false;
  updateTitle();
  $('name').focus();
}

/** Deletes what this device keeps (the user unticked "Remember me", or the server said so). */
function forgetStored() {
  app.remembered = false;
  $('start-forget').hidden = true;
  return store.wipe().catch((e) => console.warn('dyspatcher: could not delete what this device kept:', e));
}

/** Keeps the identity and, from now on, the session state, when both the user and the server agree. */
function keepOnDevice(me) {
  const chat = app.chat;
  if (!chat) return;
  if (app.options.remember === false) {
    chat.save = null;
    app.keepsNothing = true;
    if (app.remembered || app.remember) forgetStored();
    return;
  }
  app.keepsNothing = false;
  if (!app.remember) {
    chat.save = null;
    return;
  }
  store.saveIdentity(app.identity, me.name, app.source).catch((e) => console.warn('dyspatcher: could not keep the keys:', e));
  app.remembered = true;
  $('start-forget').hidden = false;
  chat.save = (state) => store.saveState(state);
}

// ---------------------------------------------------------------- leaving and forgetting

async function leave() {
  const chat = app.chat;
  if (!chat) return;
  await chat.leave();
  if (app.remembered) store.markLeft().catch(() => {});
}

function askForget() {
  const dialog = $('forget-dialog');
  if (typeof dialog.showModal === 'function') dialog.showModal();
  else dialog.setAttribute('open', '');
  $('forget-cancel').focus();
}

function closeForget() {
  const dialog = $('forget-dialog');
  if (typeof dialog.close === 'function' && dialog.open) dialog.close();
  else dialog.removeAttribute('open');
}

/** Other tabs of this page on this device: a wipe in one empties them all. */
const tabs = globalThis.BroadcastChannel ? new BroadcastChannel('dyspatcher') : null;
tabs?.addEventListener('message', (ev) => {
  if (ev.data === 'forget') forgetDevice({ elsewhere: true });
});

/**
 * The panic wipe: leave, disconnect, delete everything kept here, start again as someone new.
 * `elsewhere`: another tab of this device asked for it.
 */
async function forgetDevice({ elsewhere = false } = {}) {
  closeForget();
  if (!elsewhere) tabs?.postMessage('forget');
  const chat = app.chat;
  app.chat = null;
  // Still trying to reconnect: the server cannot be told, the membership expires by itself.
  const offline = !!chat && !chat.stopped && !chat.joined;
  if (chat) {
    await chat.leave();
    chat.dispose();
  }
  const grace = Math.round((chat?.limits?.away_grace_secs ?? 600) / 60);
  await store.wipe().catch((e) => console.warn('dyspatcher: could not delete what this device kept:', e));
  app.remembered = false;
  app.identity = null;
  app.generation = null;
  app.me = null;
  app.members = [];
  app.unread = 0;
  clearInterval(app.closedTimer);
  app.conversation?.clear();
  $('start-forget').hidden = true;
  $('chat').hidden = true;
  $('start').hidden = false;
  $('key-info').hidden = true;
  $('name').value = '';
  checkName();
  $('start-note').hidden = false;
  $('start-note').textContent =
    (elsewhere ? 'This device was told to forget you in another tab: ' : 'This device has forgotten you: ') +
    'your keys, your name and everything this page kept here are deleted.' +
    (offline ? ` You were offline, so the others see you leave within ${grace} minute${grace === 1 ? '' : 's'}.` : '');
  updateTitle();
  generateKeys();
  $('name').focus();
}

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status-text').textContent = text;
  $('send').disabled = state !== 'connected';
}

const hooks = {
  state({ state, text, retryIn, offline, kind, until, refusal }) {
    // A name the server refuses is fixed where it is typed: back on the start screen, with its reason.
    if (state === 'closed' && NAME_REFUSALS.has(refusal?.code)) {
      app.state = state;
      backToStart();
      showJoinError(`The server refused this name: ${refusal.message}`);
      return;
    }
    // Failed attempts while the server stays away add no new lines to the conversation.
    const wasConnected = app.state === 'connected';
    app.state = state;
    clearInterval(app.countdown);
    clearInterval(app.closedTimer);
    $('reconnect-now').hidden = state !== 'reconnecting';
    $('closed').hidden = state !== 'closed';
    if (state === 'reconnecting') {
      const until = Date.now() + retryIn;
      const tick = () =>
        setStatus(
          state,
          offline
            ? `${text} Waiting for the network\u2026`
            : `${text} Reconnecting in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s\u2026`,
        );
      tick();
      app.countdown = setInterval(tick, 500);
      if (wasConnected) app.conversation.notice(text, 'trouble');
      app.reconnecting = true;
    } else if (state === 'closed') {
      setStatus(state, 'Disconnected');
      showClosed(text, kind, until);
      if (kind !== 'stopped') app.conversation.notice(text, 'trouble');
      app.reconnecting = false;
    } else if (state === 'connected') {
      setStatus(state, 'Connected');
      if (app.reconnecting) app.conversation.notice('Connected again.');
      app.reconnecting = false;
    } else {
      setStatus(state, text);
    }
  },
  welcome({ me, options, resumed, restored }) {
    app.me = me;
    app.options = options;
    $('me-name').textContent = me.name;
    $('me-admin').hidden = !me.admin;
    if (me.admin && $('name').value !== me.name) {
      app.conversation.notice(`These are the admin's keys: you are ${me.name}, the admin's web seat.`);
    }
    keepOnDevice(me);
    $('no-remember-note').hidden = !app.keepsNothing;
    if (app.keepsNothing && !app.toldNothingKept) {
      app.toldNothingKept = true;
      app.conversation.notice('This server asks browsers to keep nothing: this page stores nothing on your device.');
    }
    if (restored) {
      app.conversation.notice(
        resumed ? `Welcome back, ${me.name}: this device remembered you.` : `This device remembered your keys, ${me.name}; your earlier place in the chat was gone, so you joined afresh.`,
      );
    }
    if (app.selected === 'all' && !canWriteAll()) app.selected = null;
    updateTitle();
  },
  members(list) {
    app.members = list;
    const exists = app.selected === 'all' ? canWriteAll() : list.some((m) => m.keyId === app.selected);
    if (!exists) app.selected = canWriteAll() ? 'all' : onlyOther(list);
    showMembers();
  },
  message(m) {
    app.conversation.message(m, app.me);
    if (document.hidden && !m.local) {
      app.unread += 1;
      updateTitle();
    }
  },
  rejected({ fromName, reason }) {
    app.conversation.warning(`A message from ${fromName} was not shown: ${reason}.`);
  },
  joined(member, again) {
    // Only the admin has a second endpoint: its web seat beside the prompt.
    if (again && member.admin) app.conversation.notice(`${member.name} joined from the admin's web seat`);
    else if (!again) app.conversation.notice(`${member.name} joined`);
  },
  left({ name, reason }) {
    app.conversation.notice(leftText(name, reason), reason === 'left' ? 'info' : 'trouble');
  },
  gap(gap) {
    app.conversation.notice(gapText(gap), 'trouble');
  },
  delivery({ id, state }) {
    app.conversation.status(id, state);
  },
  notice({ code, text }) {
    // The panel under the conversation says these, with the time to come back.
    if (code === 'replaced' || code === 'kicked' || code === 'banned') return;
    if (code === 'shutting_down') app.conversation.notice(text || 'The server is shutting down.', 'trouble');
    else app.conversation.notice(text || code);
  },
  ack(id) {
    app.conversation.status(id, 'sent');
  },
  refused({ id, message }) {
    app.conversation.status(id, 'refused', message);
  },
  serverError({ message }) {
    app.conversation.warning(`The server said: ${message}`);
  },
};

/** The panel under the conversation once the connection will not come back by itself. */
function showClosed(text, kind, until) {
  $('closed-text').textContent = text;
  const detail = $('closed-detail');
  const retry = $('closed-retry');
  $('take-back').hidden = kind !== 'replaced';
  retry.hidden = kind === 'replaced';
  retry.disabled = false;
  retry.textContent = 'Connect again';
  detail.hidden = true;
  if (kind === 'replaced') {
    // This page no longer writes the remembered state: the other one does.
    if (app.chat) app.chat.save = null;
    detail.hidden = false;
    detail.textContent = 'This page stays quiet so that the two do not take turns. The others still see you as here.';
  } else if (kind === 'kicked' || kind === 'banned') {
    detail.hidden = false;
    if (until === null || until === undefined) {
      detail.textContent = 'You may come back when the admin lifts the ban.';
      retry.textContent = 'Try again';
    } else {
      const tick = () => {
        const open = Date.now() >= until;
        detail.textContent = open ? 'You may come back now.' : `You may come back ${untilText(until)}.`;
        retry.disabled = !open;
        if (open) clearInterval(app.closedTimer);
      };
      tick();
      app.closedTimer = setInterval(tick, 1000);
    }
  }
}

/** "Use the chat here": takes the membership back from the tab or device that took it. */
async function takeBack() {
  if (!app.chat) return;
  let state = null;
  if (app.remember && !app.keepsNothing) {
    const saved = await store.load().catch(() => null);
    if (saved?.identity.keyId === app.identity.keyId) state = saved.state;
  }
  app.conversation.notice('Taking the chat back to this page\u2026');
  app.chat.takeBack(state);
}

const canWriteAll = () => !!app.me && (app.me.admin || !app.options.disable_all);

/** Without @all, a lone other member (the admin, with --only-admin) is the obvious destination. */
function onlyOther(list) {
  const others = list.filter((m) => m.keyId !== app.me?.keyId);
  return others.length === 1 ? others[0].keyId : null;
}

function showMembers() {
  if (!app.me) return;
  renderMembers($('member-list'), {
    members: app.members,
    me: app.me,
    showAll: canWriteAll(),
    selected: app.selected,
    onPick: pick,
  });
  $('member-count').textContent = String(app.members.length);
  const target = app.members.find((m) => m.keyId === app.selected);
  $('to-name').textContent = app.selected === 'all' ? '@all' : target ? target.name : 'choose\u2026';
  $('text').placeholder =
    app.selected === 'all'
      ? 'Message to everyone'
      : target
        ? target.away
          ? `Message to ${target.name} (away: kept for them)`
          : `Message to ${target.name}`
        : 'Choose who receives it';
}

function pick(key) {
  app.selected = key;
  showMembers();
  setSheet(false);
  $('text').focus();
}

function setSheet(open) {
  $('chat').classList.toggle('sheet-open', open);
  $('backdrop').hidden = !open;
  $('to').setAttribute('aria-expanded', String(open));
  if (open) focusMembers();
}

function focusMembers() {
  const list = $('member-list');
  (list.querySelector('[aria-pressed="true"]') || list.querySelector('button:not([disabled])'))?.focus();
}

const wideScreen = () => matchMedia('(min-width: 800px)').matches;

function updateTitle() {
  const prefix = app.unread ? `(${app.unread}) ` : '';
  document.title = `${prefix}dyspatcher${app.me ? ` \u2014 ${app.me.name}` : ''}`;
}

async function send() {
  const text = $('text').value;
  const hint = $('composer-hint');
  if (!text.trim() || !app.chat) return;
  const command = app.me?.admin ? moderation(text) : null;
  if (command) {
    const ok = typeof command === 'object' && app.chat.send(command);
    hint.textContent = typeof command === 'string' ? command : ok ? 'Sent to the server.' : 'Not connected.';
    hint.classList.toggle('error', !ok);
    if (ok) $('text').value = '';
    return;
  }
  if (!app.selected) {
    hint.textContent = 'Choose who receives the message first.';
    hint.classList.add('error');
    setSheet(true);
    return;
  }
  try {
    const record = app.selected === 'all' ? await app.chat.sendAll(text) : await app.chat.sendDirect(app.selected, text);
    if ($('text').value === text) $('text').value = '';
    hint.textContent = 'Enter sends \u00b7 Shift+Enter for a new line';
    hint.classList.remove('error');
    app.conversation.message(record, app.me);
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
  const t = $('text');
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight + 2, 160)}px`;
}

function initChat() {
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
  });
  $('text').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      send();
    }
  });
  $('text').addEventListener('input', autosize);
  $('to').addEventListener('click', () => {
    if (wideScreen()) focusMembers();
    else setSheet(!$('chat').classList.contains('sheet-open'));
  });
  $('members-close').addEventListener('click', () => {
    setSheet(false);
    $('to').focus();
  });
  $('backdrop').addEventListener('click', () => setSheet(false));
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && $('chat').classList.contains('sheet-open')) {
      setSheet(false);
      $('to').focus();
    }
  });
  $('export').addEventListener('click', () => download(exportFilename(), app.conversation.exportText()));
  $('leave').addEventListener('click', leave);
  $('forget').addEventListener('click', askForget);
  $('forget-cancel').addEventListener('click', closeForget);
  $('forget-confirm').addEventListener('click', () => forgetDevice());
  $('reconnect-now').addEventListener('click', () => app.chat?.reconnectNow());
  $('closed-retry').addEventListener('click', () => app.chat?.retry());
  $('take-back').addEventListener('click', takeBack);
  $('closed-start').addEventListener('click', backToStart);
  // A page closed or hidden may not come back: what it saw is kept first.
  addEventListener('pagehide', () => app.chat?.enqueue(() => app.chat?.persist()));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      app.unread = 0;
      updateTitle();
    }
  });
  addEventListener('online', () => app.chat?.reconnectNow());
}

if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) {
  showInsecure();
} else {
  initStart();
  initChat();
  boot();
}

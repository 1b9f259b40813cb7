// dyspatcher web client: the screens. Start (name, keys) → chat (members, conversation, composer).
import * as c from './crypto.js';
import { Chat, chatUrl, LEFT_REASONS } from './protocol.js';
import { $, Conversation, download, exportFilename, renderMembers, shortId } from './ui.js';

const NAME_RE = /^[a-z0-9]{4,15}$/;
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

function checkName() {
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

function setIdentity(identity, source) {
  app.identity = identity;
  $('keygen').hidden = true;
  $('key-info').hidden = false;
  $('key-source').textContent = source;
  $('key-id').textContent = shortId(identity.keyId);
  $('key-id').title = `Full Key ID: ${identity.keyId}`;
  $('download-keys').disabled = false;
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
    if (app.generation === run) setIdentity(identity, `New RSA ${GENERATED_BITS} key pair, made in this browser.`);
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
  if (!app.identity) return;
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
  checkName();
  $('name').focus();
  generateKeys();
}

// ---------------------------------------------------------------- chat screen

function enterChat(name) {
  $('start').hidden = true;
  $('chat').hidden = false;
  $('closed').hidden = true;
  $('me-name').textContent = name;
  $('me-key').textContent = shortId(app.identity.keyId);
  $('me-key').title = `Your Key ID: ${app.identity.keyId}`;
  app.conversation ||= new Conversation($('messages'), $('conversation'));
  app.chat?.stop();
  app.chat = new Chat({ identity: app.identity, name, url: chatUrl(), hooks });
  app.chat.start();
  $('text').focus();
}

function backToStart() {
  app.chat?.stop();
  app.chat = null;
  app.me = null;
  $('chat').hidden = true;
  $('start').hidden = false;
  updateTitle();
  $('name').focus();
}

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status-text').textContent = text;
  $('send').disabled = state !== 'connected';
}

const hooks = {
  state({ state, text, retryIn }) {
    // Failed attempts while the server stays away add no new lines to the conversation.
    const wasConnected = app.state === 'connected';
    app.state = state;
    clearInterval(app.countdown);
    $('reconnect-now').hidden = state !== 'reconnecting';
    $('closed').hidden = state !== 'closed';
    if (state === 'reconnecting') {
      const until = Date.now() + retryIn;
      const tick = () => setStatus(state, `${text} Reconnecting in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s\u2026`);
      tick();
      app.countdown = setInterval(tick, 500);
      if (wasConnected) app.conversation.notice(text, 'trouble');
      app.reconnecting = true;
    } else if (state === 'closed') {
      setStatus(state, 'Disconnected');
      $('closed-text').textContent = text;
      app.conversation.notice(text, 'trouble');
      app.reconnecting = false;
    } else if (state === 'connected') {
      setStatus(state, 'Connected');
      if (app.reconnecting) app.conversation.notice('Connected again.');
      app.reconnecting = false;
    } else {
      setStatus(state, text);
    }
  },
  welcome({ me, options }) {
    app.me = me;
    app.options = options;
    $('me-name').textContent = me.name;
    $('me-admin').hidden = !me.admin;
    if (me.admin && $('name').value !== me.name) {
      app.conversation.notice(`These are the admin's keys: you are ${me.name}, the admin's web seat.`);
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
    app.conversation.notice(again && member.admin ? `${member.name} joined from the admin's web seat` : `${member.name} joined`);
  },
  left({ name, reason }) {
    app.conversation.notice(`${name} ${LEFT_REASONS[reason] ?? 'left'}`, reason === 'left' ? 'info' : 'trouble');
  },
  notice({ code, text }) {
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
  $('text').placeholder = app.selected === 'all' ? 'Message to everyone' : target ? `Message to ${target.name}` : 'Choose who receives it';
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
  $('leave').addEventListener('click', () => app.chat?.stop());
  $('reconnect-now').addEventListener('click', () => app.chat?.reconnectNow());
  $('closed-retry').addEventListener('click', () => enterChat($('name').value));
  $('closed-start').addEventListener('click', backToStart);
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
}

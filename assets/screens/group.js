// dyspatcher web client: the group screens. "New group" (a name, a topic, members picked from
// the chat) and a group's roster: each member with its verification state (the marks of the
// verify screen), the owner, and for the owner: add, remove, hand over; for anyone: leave. What
// the session does with them is in groups.js; the name and topic travel only end to end.
import { t } from '../i18n/i18n.js';
import { colour, identicon } from '../identicon.js';
import { cut, MAX_GROUP_NAME, MAX_GROUP_TOPIC } from '../groups.js';
import { group, member, S } from '../state.js';
import { changedFrom, isVerified } from '../trust.js';
import { $, el, shortId } from '../ui.js';
import { groupName, notice, warning } from './conversation.js';

let hooks = { opened: () => {}, created: () => {} };
let shown = null; // {mode: 'create'} or {mode: 'roster', id}

const errorLine = () => el('p', { id: 'group-error', class: 'group-error', role: 'alert' });
const fail = (e) => {
  const line = $('group-error');
  if (line) line.textContent = e.message ?? String(e);
};

/** A checkbox per chat member in `keyIds`, each with its verification state. */
function pickList(keyIds, label) {
  const items = keyIds.map((k) => {
    const m = member(k);
    const box = el('input', { type: 'checkbox', value: k, name: 'pick' });
    return el('li', {}, el('label', {}, box, identicon(k, 24), colour(el('span', { class: 'name', text: m?.name ?? shortId(k) }), k), ...marks(k)));
  });
  return el(
    'fieldset',
    {},
    el('legend', { text: label }),
    items.length ? el('ul', { class: 'pick-list' }, ...items) : el('p', { class: 'hint', text: t('group.nobody_to_add') }),
  );
}

/** The trust marks of a member: verified, not verified, key changed. */
function marks(keyId) {
  if (keyId === S.me?.keyId) return [el('span', { class: 'badge you', text: t('chat.you') })];
  const out = [isVerified(keyId) ? el('span', { class: 'badge verified', text: `\u2713 ${t('list.verified')}` }) : el('span', { class: 'badge unverified', text: t('group.not_verified') })];
  if (changedFrom(keyId)) out.push(el('span', { class: 'badge changed', text: `\u26a0 ${t('list.key_changed')}` }));
  return out;
}

const picked = () => [...$('group-body').querySelectorAll('input[name="pick"]:checked')].map((b) => b.value);

/** Shows the "New group" form. */
export function showCreate() {
  shown = { mode: 'create' };
  $('group-title').textContent = t('group.create_title');
  const name = el('input', { type: 'text', id: 'group-name', autocomplete: 'off', dir: 'auto', required: true });
  const topic = el('input', { type: 'text', id: 'group-topic', autocomplete: 'off', dir: 'auto' });
  const others = S.members.filter((m) => m.keyId !== S.me?.keyId).map((m) => m.keyId);
  const create = el('button', { type: 'submit', class: 'primary', text: t('group.create') });
  const form = el(
    'form',
    { class: 'group-form', novalidate: true },
    el('p', { class: 'hint', text: t('group.e2e_note') }),
    el('div', { class: 'field' }, el('label', { for: 'group-name', text: t('group.name') }), name),
    el('div', { class: 'field' }, el('label', { for: 'group-topic', text: t('group.topic') }), topic),
    pickList(others, t('group.pick')),
    errorLine(),
    el('div', { class: 'row' }, create),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const n = name.value.trim();
      if (!n) throw new Error(t('group.name_missing'));
      if (cut(n, MAX_GROUP_NAME) !== n) throw new Error(t('group.name_long', { max: MAX_GROUP_NAME }));
      if (cut(topic.value.trim(), MAX_GROUP_TOPIC) !== topic.value.trim()) throw new Error(t('group.topic_long', { max: MAX_GROUP_TOPIC }));
      const members = picked();
      if (!members.length) throw new Error(t('group.pick_missing'));
      create.disabled = true;
      const id = await S.chat.createGroup(n, topic.value.trim(), members);
      hooks.created(id);
    } catch (e) {
      create.disabled = false;
      fail(e);
    }
  });
  $('group-body').replaceChildren(form);
}

/** Shows group `id`'s roster. */
export function showRoster(id) {
  const g = group(id);
  if (!g) return;
  shown = { mode: 'roster', id };
  const me = S.me?.keyId;
  const owner = g.owner === me && !g.out;
  const name = groupName(id);
  $('group-title').textContent = t('group.roster_title', { name });
  const who = (k) => member(k)?.name ?? shortId(k);
  const body = [];
  if (g.topic) body.push(el('p', { dir: 'auto', text: g.topic }));
  body.push(el('p', { class: 'hint', text: `${t('group.created_by', { name: who(g.creator) })} \u00b7 ${t('group.epoch', { epoch: g.epoch, owner: who(g.owner) })}` }));
  if (g.out) body.push(el('p', { class: 'conv-warning', text: `\u26a0 ${t(`group.out_${g.out}`)}` }));
  body.push(el('h3', { text: t('list.members', { n: g.members.length }) }));
  // The owner first, then by name.
  const order = [...g.members].sort((a, b) => (b === g.owner) - (a === g.owner) || who(a).localeCompare(who(b)));
  const rows = order.map((k) => {
    const actions = [];
    if (owner && k !== me) {
      actions.push(button(t('group.remove'), () => S.chat.changeMembers(id, { remove: [k] }), t('group.remove_label', { name: who(k) })));
      actions.push(button(t('group.make_owner'), () => S.chat.handOver(id, k), t('group.make_owner_label', { name: who(k) })));
    }
    return el(
      'li',
      {},
      el(
        'span',
        { class: 'who' },
        identicon(k, 28),
        colour(el('span', { class: 'name', text: who(k) }), k),
        k === g.owner ? el('span', { class: 'badge owner', text: t('group.owner') }) : null,
        g.excluded.includes(k) ? el('span', { class: 'badge changed', text: t('group.excluded') }) : null,
        ...marks(k),
      ),
      actions.length ? el('span', { class: 'actions' }, ...actions) : null,
    );
  });
  body.push(el('ul', { class: 'roster' }, ...rows));
  body.push(errorLine());
  if (owner) {
    const outside = S.members.map((m) => m.keyId).filter((k) => k !== me && !g.members.includes(k));
    body.push(pickList(outside, t('group.add_title')));
    if (outside.length) body.push(el('div', { class: 'row' }, button(t('group.add'), () => S.chat.changeMembers(id, { add: picked() }), null, 'primary')));
  }
  if (!g.out) {
    const alone = g.members.length === 1;
    if (owner && !alone) body.push(el('p', { class: 'hint', text: t('group.owner_hands_over') }));
    else body.push(el('div', { class: 'row' }, button(t('group.leave'), () => S.chat.leaveGroup(id), null)));
  }
  $('group-body').replaceChildren(...body);
}

function button(text, act, label, cls = null) {
  const b = el('button', { type: 'button', class: cls, text, 'aria-label': label });
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      if (b.textContent === t('group.add') && !picked().length) throw new Error(t('group.pick_missing'));
      await act();
    } catch (e) {
      fail(e);
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** Draws the screen again when the groups or members change, if it is shown. */
export function redrawGroup() {
  if (S.view !== 'group' || !shown) return;
  if (shown.mode === 'roster') showRoster(shown.id);
}

/** A line in the group's conversation about what happened to it (a warning for a refusal). */
export function groupNotice(e) {
  const key = e.group;
  const name = groupName(key, e.name);
  switch (e.kind) {
    case 'joined':
      return notice(e.self ? t('group.ev.created_you') : t('group.ev.joined', { by: e.by, creator: e.creator }), { key, keep: true });
    case 'added':
      return notice(e.self ? t('group.ev.added_you', { by: e.by }) : t('group.ev.added', { who: e.who, by: e.by }), { key, keep: true });
    case 'removed':
      return notice(e.self ? t('group.ev.removed_you', { by: e.by }) : t('group.ev.removed', { who: e.who, by: e.by }), { key, keep: true, kind: e.self ? 'trouble' : 'info' });
    case 'owner':
      return notice(t(e.self ? 'group.ev.owner_you' : 'group.ev.owner', { who: e.who, by: e.by }), { key, keep: true });
    case 'left':
      return notice(t('group.ev.left', { who: e.who }), { key, keep: true });
    case 'gone':
      return notice(t('group.ev.gone', { who: e.who }), { key, keep: true });
    case 'you_left':
      return notice(t('group.ev.you_left'), { key, keep: true });
    case 'deleted':
      return notice(t(e.by === 'admin' ? 'group.ev.deleted_admin' : 'group.ev.deleted_owner'), { key, keep: true, kind: 'trouble' });
    case 'info':
      return notice(t('group.ev.info', { by: e.by, name: e.name }), { key, keep: true });
    case 'refused':
      // A group we do not know has no conversation: the warning goes to the one open.
      return warning(t('group.ev.refused', { group: name, reason: e.reason }), group(key) ? key : undefined);
    case 'server_refused':
      if (S.view === 'group' && shown?.mode === 'create') {
        fail(new Error(t('group.ev.server_refused', { group: name, reason: e.reason })));
        $('group-body').querySelector('button[type="submit"]').disabled = false;
      }
      return warning(t('group.ev.server_refused', { group: name, reason: e.reason }), group(key) ? key : undefined);
    default:
      return undefined;
  }
}

export function initGroups(h) {
  hooks = h;
  $('group-new').addEventListener('click', () => h.opened('create'));
  $('group-open').addEventListener('click', () => h.opened('roster'));
  $('group-back').addEventListener('click', () => h.back());
}

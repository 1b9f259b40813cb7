// dyspatcher web client: the conversation list. "Everyone" (@all) first, then the groups (with
// their member counts), then one conversation per member by name (and those who left, while their history is shown), each with its identicon,
// presence, trust marks, unread count and last message. Picking one opens it: the open
// conversation is the recipient.
import { t } from '../i18n/i18n.js';
import { colour, identicon } from '../identicon.js';
import { canWriteAll, S } from '../state.js';
import { GROUP_ID } from '../groups.js';
import { groupName } from './conversation.js';
import { changedFrom, isVerified } from '../trust.js';
import { $, el, shortId } from '../ui.js';

const PREVIEW = 60; // characters of the last message shown

function preview(conv) {
  const last = conv?.records.filter((r) => !r.event).at(-1);
  if (!last) return t('list.no_messages');
  const kind = { photo: 'file.kind_photo', voice: 'file.kind_voice' }[last.file?.kind] ?? 'file.kind_file';
  const text = (last.file ? `${t(kind)} \u00b7 ${last.file.name}` : last.text).replace(/\s+/g, ' ');
  const short = text.length > PREVIEW ? `${text.slice(0, PREVIEW)}\u2026` : text;
  if (last.own) return t('list.you_prefix', { text: short });
  return conv.key === 'all' || GROUP_ID.test(conv.key) ? `${last.from.name}: ${short}` : short;
}

function unreadBadge(conv) {
  const n = conv?.unread ?? 0;
  if (!n) return null;
  return el('span', { class: 'unread', text: String(n), 'aria-label': t('list.unread', { n }) });
}

function item({ key, label, icon, classes, badges = [], detail, conv, disabled = false, presence }) {
  const btn = el(
    'button',
    {
      type: 'button',
      class: ['member', ...classes].filter(Boolean).join(' '),
      'aria-current': S.open === key && S.view !== 'list' ? 'true' : null,
      disabled,
      dataset: { key, presence },
    },
    icon,
    el(
      'span',
      { class: 'member-main' },
      el('span', { class: 'member-name' }, el('span', { class: 'name', dir: 'auto', text: label }), ...badges),
      el('span', { class: 'member-detail' }, ...detail),
      disabled ? null : el('span', { class: 'last', dir: 'auto', text: preview(conv) }),
    ),
    unreadBadge(conv),
  );
  return el('li', {}, btn);
}

export function renderList(onPick) {
  if (!S.me) return;
  const items = [];
  const all = S.conversations.get('all');
  // Without @all (--disable-all), Everyone is listed only once the admin wrote there.
  if (canWriteAll() || all?.records.some((r) => !r.event)) items.push(
    item({
      key: 'all',
      label: t('list.everyone'),
      icon: el('span', { class: 'all-icon', 'aria-hidden': 'true', text: '@' }),
      classes: ['all'],
      detail: [el('span', { class: 'detail', text: t('list.members', { n: S.members.length }) })],
      conv: all,
    }),
  );
  // Groups, then those left or deleted whose history is shown.
  const groupIds = new Set(S.groups.map((g) => g.id));
  for (const conv of S.conversations.values()) if (GROUP_ID.test(conv.key) && conv.records.length) groupIds.add(conv.key);
  for (const id of groupIds) {
    const g = S.groups.find((x) => x.id === id);
    const conv = S.conversations.get(id);
    items.push(
      item({
        key: id,
        label: groupName(id, conv?.name !== id ? conv?.name : ''),
        icon: el('span', { class: 'all-icon group-icon', 'aria-hidden': 'true', text: '#' }),
        classes: ['group', g?.out || !g ? 'gone' : null],
        detail: [el('span', { class: 'detail', text: g && !g.out ? t('list.members', { n: g.members.length }) : t(`group.out_${g?.out ?? 'deleted'}`) })],
        conv,
      }),
    );
  }
  const here = new Set();
  for (const m of S.members) {
    here.add(m.keyId);
    const self = m.keyId === S.me.keyId;
    const verified = isVerified(m.keyId);
    const changed = !self && changedFrom(m.keyId);
    const away = !self && m.away;
    const badges = [
      m.admin ? el('span', { class: 'badge admin', text: t('chat.admin') }) : null,
      self ? el('span', { class: 'badge you', text: t('chat.you') }) : null,
      verified ? el('span', { class: 'badge verified', text: `\u2713 ${t('list.verified')}` }) : null,
      changed ? el('span', { class: 'badge changed', text: `\u26a0 ${t('list.key_changed')}` }) : null,
    ];
    items.push(
      item({
        key: m.keyId,
        label: m.name,
        icon: identicon(m.keyId, 36),
        classes: [m.admin && 'admin', self && 'self', away ? 'away' : 'online', changed && 'changed'],
        badges,
        detail: [
          el('span', { class: 'presence', 'aria-hidden': 'true' }),
          el('span', { class: away ? 'away-label' : 'sr-only', text: t(away ? 'list.away' : 'list.online') }),
          el('code', { class: 'kid', dir: 'ltr', text: shortId(m.keyId) }),
        ],
        conv: S.conversations.get(m.keyId),
        // Only the admin can write to its own key: it reaches the admin's other endpoint.
        disabled: self && !S.me.admin,
        presence: self ? undefined : away ? 'away' : 'online',
      }),
    );
    const name = items.at(-1).querySelector('.name');
    colour(name, m.keyId);
  }
  // Conversations with members who left stay readable.
  for (const conv of S.conversations.values()) {
    if (conv.key === 'all' || groupIds.has(conv.key) || here.has(conv.key) || !conv.records.length) continue;
    items.push(
      item({
        key: conv.key,
        label: conv.name,
        icon: identicon(conv.key, 36),
        classes: ['gone'],
        detail: [el('span', { class: 'detail', text: t('list.gone') })],
        conv,
      }),
    );
  }
  $('member-list').replaceChildren(...items);
  for (const btn of $('member-list').querySelectorAll('.member')) {
    btn.addEventListener('click', () => onPick(btn.dataset.key));
  }
}

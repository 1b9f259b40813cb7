// dyspatcher web client: the page's shared state, in one place. Screens read it and change it
// through the functions they export; `emit(event)` tells the others ('list': the conversation
// list needs drawing again, 'open': another conversation is open).

export const S = {
  // start screen
  identity: null,
  source: '', // where the identity came from, as shown
  generation: null, // the running key generation; replaced when the user loads own keys
  remember: true, // the user's choice on the start screen
  remembered: false, // this device holds an identity
  keepsNothing: false, // the server said --no-remember
  // session
  chat: null,
  me: null,
  options: {},
  members: [], // as the session lists them: {name, keyId, admin, away}
  groups: [], // as the session lists them (groups.js: groupList)
  opening: null, // a group created here, opened once the server took it
  connState: null,
  reconnecting: false,
  shuttingDown: false, // the server said so: the close that follows adds no second line
  toldNothingKept: false,
  // conversations: key ('all' or a key ID) -> {key, name, keyId, records, unread, list, last, gone}
  conversations: new Map(),
  open: 'all',
  view: 'list', // phone: 'list' | 'conv' | 'verify'; desktop shows the list beside the other two
  verifying: null, // the key ID on the verify screen
  // trust: names seen with their first key, keys verified, keys that replaced a seen one
  contacts: { seen: {}, verified: new Set(), changed: new Map() },
  // notifications while hidden
  hiddenUnread: 0,
  prefs: { notify: false, notifyAll: false, sound: false },
  lang: 'en',
  // timers
  countdown: null,
  closedTimer: null,
};

const listeners = new Map();

/** Calls `fn(detail)` on every `emit(event, detail)`. */
export function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(fn);
}

export function emit(event, detail) {
  for (const fn of listeners.get(event) ?? []) fn(detail);
}

/** The member with `keyId` now here, or undefined. */
export const member = (keyId) => S.members.find((m) => m.keyId === keyId);

/** The group with this id that the session knows, or undefined. */
export const group = (id) => S.groups.find((g) => g.id === id);

/** The conversation a message belongs to: 'all', a group's id, or the other person's key ID. */
export const convKey = (m) => (m.to.kind === 'all' ? 'all' : m.to.kind === 'group' ? m.to.group : m.own ? m.to.keyId : m.from.keyId);

/** Whether this member may write to everyone (@all). */
export const canWriteAll = () => !!S.me && (S.me.admin || !S.options.disable_all);

/** The narrow layout: one screen at a time. */
export const narrow = () => !matchMedia('(min-width: 50rem)').matches;

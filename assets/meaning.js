// dyspatcher web client: what the server's close codes, departures and gaps mean to a person,
// and whether to reconnect (docs/PROTOCOL.md, "Close codes"); the admin's typed commands.
// Pure functions, no DOM.

const BACKOFF_BASE = 1000;
const BACKOFF_MAX = 30_000;

/** Join refusals worth retrying: the server may have room or time later. */
const RETRYABLE_REFUSALS = new Set(['server_full', 'join_timeout']);

/** What a member leaving means, by `left.reason`. */
export const LEFT_REASONS = {
  left: 'left',
  expired: 'left (away for too long)',
  kicked: 'was kicked by the admin',
  banned: 'was banned by the admin',
  removed: 'was removed from the allow list',
};

/**
 * What a close code means: {text, retry, kind?, until?}. `refusal` is the `error` that came
 * before a 4005, `ending` the `notice` (kicked, banned, replaced) that came before the close.
 * `kind` is 'replaced' (4006: opened elsewhere), 'kicked' or 'banned' (with `until`, ms since the
 * epoch, or null when only the admin can lift it).
 */
export function closeMeaning(code, refusal = null, ending = null) {
  switch (code) {
    case 1000:
      return { text: 'The server closed the connection.', retry: true };
    case 1001:
      return { text: 'The server is shutting down.', retry: true };
    case 1009:
      return { text: 'A message was too large for the server.', retry: true };
    case 4000: {
      const banned = ending?.code === 'banned';
      return {
        text: banned ? 'You were banned by the admin.' : 'You were kicked by the admin.',
        retry: false,
        kind: banned ? 'banned' : 'kicked',
        until: Number.isSafeInteger(ending?.until) ? ending.until : null,
      };
    }
    case 4001:
      return { text: 'You were removed from the allow list.', retry: false };
    case 4002:
      return { text: 'The connection was too slow and the server dropped it.', retry: true };
    case 4003:
      return { text: 'The connection was idle for too long.', retry: true };
    case 4005:
      if (refusal?.code === 'banned') {
        return {
          text: 'The admin does not let you in at the moment.',
          retry: false,
          kind: 'banned',
          until: Number.isSafeInteger(refusal.until) ? refusal.until : null,
        };
      }
      return {
        text: refusal ? `The server refused to let you in: ${refusal.message}` : 'The server refused to let you in.',
        retry: !!refusal && RETRYABLE_REFUSALS.has(refusal.code),
      };
    case 4006:
      return { text: 'This chat was opened somewhere else (another tab or device).', retry: false, kind: 'replaced' };
    default:
      return { text: 'The connection was lost.', retry: true };
  }
}

export function backoffDelay(attempt) {
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempt);
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export function chatUrl(loc = globalThis.location) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

const KIND_NAMES = { all: ['@all', '@all'], direct: ['direct', 'direct'], sender_key: ['sender key', 'sender keys'] };

/** "3 messages kept for you were dropped while you were away (2 @all, 1 direct)". */
export function gapText({ dropped, kinds }) {
  const n = Number(dropped) || 0;
  const parts = Object.entries(kinds && typeof kinds === 'object' ? kinds : {})
    .filter(([, count]) => Number(count) > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([kind, count]) => {
      const [one, many] = KIND_NAMES[kind] ?? [String(kind), String(kind)];
      return `${count} ${count === 1 ? one : many}`;
    });
  const what = n === 1 ? '1 message kept for you was' : `${n} messages kept for you were`;
  return `${what} dropped while you were away${parts.length ? ` (${parts.join(', ')})` : ''}.`;
}

/** "at 14:32 (in 9 min 58 s)" for a moment ahead; "now" once it has passed. */
export function untilText(until, now = Date.now()) {
  const d = new Date(until);
  const pad = (x) => String(x).padStart(2, '0');
  const left = Math.max(0, Math.ceil((until - now) / 1000));
  if (!left) return 'now';
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = left % 60;
  const span = h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
  const sameDay = d.toDateString() === new Date(now).toDateString();
  const day = sameDay ? '' : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `;
  return `at ${day}${pad(d.getHours())}:${pad(d.getMinutes())} (in ${span})`;
}

/** The admin's commands about members, from the web seat: `/kick NAME [MINUTES]`, `/ban NAME`,
 * `/unban NAME`, `/bans`. Returns the `moderate` message, an error text, or null (not a command). */
export function moderation(text) {
  const words = text.trim().split(/\s+/);
  const [cmd, name, minutes, extra] = words;
  const usage = {
    '/kick': 'usage: /kick NAME [MINUTES]',
    '/ban': 'usage: /ban NAME',
    '/unban': 'usage: /unban NAME',
    '/bans': 'usage: /bans',
  }[cmd];
  if (!usage) return null;
  if (cmd === '/bans') return words.length === 1 ? { type: 'moderate', action: 'bans' } : usage;
  if (!name || extra || (cmd !== '/kick' && minutes)) return usage;
  const msg = { type: 'moderate', action: cmd.slice(1), name };
  if (minutes !== undefined) {
    if (!/^[0-9]{1,6}$/.test(minutes)) return usage;
    msg.minutes = Number(minutes);
  }
  return msg;
}

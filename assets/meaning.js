// dyspatcher web client: what the server's close codes, departures and gaps mean to a person,
// and whether to reconnect (docs/PROTOCOL.md, "Close codes"); the admin's typed commands.
// Pure functions, no DOM; texts from the catalogue (i18n/).
import { language, reason, t } from './i18n/i18n.js';

const BACKOFF_BASE = 1000;
const BACKOFF_MAX = 30_000;

/** Join refusals worth retrying after a few seconds. (A full server answers the upgrade with
 * HTTP 503: the connection fails and is retried like any other.) */
const RETRYABLE_REFUSALS = new Set(['join_timeout', 'too_many_joins']);

/** What a member leaving means, by `left.reason`. */
export const LEFT_REASONS = ['left', 'expired', 'kicked', 'banned', 'removed'];

/** "alice left", "alice was kicked by the admin"... by `left.reason`. */
export const leftText = (name, reason) => t(`left.${LEFT_REASONS.includes(reason) ? reason : 'left'}`, { name });

/**
 * What a close code means: {text, retry, kind?, until?}. `refusal` is the `error` that came
 * before a 4005, `ending` the `notice` (kicked, banned, replaced) that came before the close.
 * `kind` is 'replaced' (4006: opened elsewhere), 'kicked' or 'banned' (with `until`, ms since the
 * epoch, or null when only the admin can lift it).
 */
export function closeMeaning(code, refusal = null, ending = null) {
  switch (code) {
    case 1000:
      return { text: t('close.1000'), retry: true };
    case 1001:
      return { text: t('close.1001'), retry: true };
    case 1009:
      return { text: t('close.1009'), retry: true };
    case 4000: {
      const banned = ending?.code === 'banned';
      return {
        text: t(banned ? 'close.banned' : 'close.kicked'),
        retry: false,
        kind: banned ? 'banned' : 'kicked',
        until: Number.isSafeInteger(ending?.until) ? ending.until : null,
      };
    }
    case 4001:
      return { text: t('close.4001'), retry: false };
    case 4002:
      return { text: t('close.4002'), retry: true };
    case 4003:
      return { text: t('close.4003'), retry: true };
    case 4005:
      if (refusal?.code === 'banned') {
        return {
          text: t('close.refused_banned'),
          retry: false,
          kind: 'banned',
          until: Number.isSafeInteger(refusal.until) ? refusal.until : null,
        };
      }
      return {
        text: refusal ? t('close.refused_because', { reason: reason(refusal.code, refusal.message) }) : t('close.refused'),
        retry: !!refusal && RETRYABLE_REFUSALS.has(refusal.code),
      };
    case 4006:
      return { text: t('close.4006'), retry: false, kind: 'replaced' };
    case 4007:
      return { text: t('close.4007'), retry: false, kind: 'ended' };
    default:
      return { text: t('close.lost'), retry: true };
  }
}

export function backoffDelay(attempt) {
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempt);
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

export function chatUrl(loc = globalThis.location) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

/** "3 messages kept for you were dropped while you were away (2 @all, 1 direct)". */
export function gapText({ dropped, kinds }) {
  const n = Number(dropped) || 0;
  const parts = Object.entries(kinds && typeof kinds === 'object' ? kinds : {})
    .filter(([, count]) => Number(count) > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([kind, count]) =>
      ['all', 'direct', 'sender_key'].includes(kind) ? t(`gap.kind.${kind}`, { n: count }) : `${count} ${kind}`,
    );
  const what = t('gap.dropped', { n });
  // The list in the language's own way ("a, b and c", "a、b和c", "a، b و c").
  const list = new Intl.ListFormat(language().tag, { style: 'long', type: 'conjunction' });
  return parts.length ? t('gap.with_kinds', { what, kinds: list.format(parts) }) : t('gap.plain', { what });
}

/** "at 14:32 (in 9 min 58 s)" for a moment ahead; "now" once it has passed. */
export function untilText(until, now = Date.now()) {
  const d = new Date(until);
  const pad = (x) => String(x).padStart(2, '0');
  const left = Math.max(0, Math.ceil((until - now) / 1000));
  if (!left) return t('until.now');
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = left % 60;
  const span = h ? t('span.hm', { h, m }) : m ? t('span.ms', { m, s }) : t('span.s', { s });
  const sameDay = d.toDateString() === new Date(now).toDateString();
  const day = sameDay ? '' : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `;
  return t('until.at', { time: `${day}${pad(d.getHours())}:${pad(d.getMinutes())}`, span });
}

/** The admin's commands about members, from the web seat: `/kick NAME [MINUTES]`, `/ban NAME`,
 * `/unban NAME`, `/bans`. Returns the `moderate` message, an error text, or null (not a command). */
export function moderation(text) {
  const words = text.trim().split(/\s+/);
  const [cmd, name, minutes, extra] = words;
  const usage = {
    '/kick': t('usage.kick'),
    '/ban': t('usage.ban'),
    '/unban': t('usage.unban'),
    '/bans': t('usage.bans'),
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

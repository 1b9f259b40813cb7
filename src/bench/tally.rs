//! What each simulated member received: deliveries counted once by message id (duplicates,
//! unknown ids and broken frames apart), latency against the message's scheduled send time, acks,
//! errors, gaps and the ways back after cuts. Every member's receiving task (`receive`) ends
//! with its [`Tally`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::churn::Back;
use super::wire::body;

/// The messages of the timed phase, known to every receiver once sending starts.
pub struct Table {
    /// Message index by id.
    pub ids: HashMap<[u8; 32], u32>,
    /// Scheduled send time of message 0.
    pub t0: Instant,
    /// Nanoseconds between scheduled sends (all senders together).
    pub interval_ns: f64,
    /// Number of messages sent on the schedule (`due`); ids past them (the soak's unscheduled
    /// messages) are counted but not timed.
    pub messages: usize,
    /// For direct messages: the member each message is for ([`EVERYONE`] for an `@all`).
    pub recipient: Vec<u32>,
}

/// In [`Table::recipient`]: an `@all` message, for every member.
pub const EVERYONE: u32 = u32::MAX;

impl Table {
    /// When message `i` was due to be sent.
    pub fn due(&self, i: usize) -> Instant {
        self.t0 + Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }
}

/// State every receiving task shares.
pub struct Shared {
    /// Set when the timed phase starts; frames before it are setup.
    pub table: OnceLock<Table>,
    /// Unique deliveries so far (flushed in batches).
    pub delivered: AtomicU64,
    /// Sender keys the auditors have received.
    pub keys_received: AtomicUsize,
    /// `presence` `away` frames received, by everyone.
    pub away_seen: AtomicUsize,
    /// Acks of sent messages received, by every sender.
    pub acked: AtomicU64,
    /// Messages `gap` frames said were dropped from mailboxes: they will never come.
    pub dropped: AtomicU64,
    /// Closed to stop every receiving task.
    pub stop: async_channel::Receiver<()>,
}

/// What one member received.
pub struct Tally {
    pub(super) me: u32,
    seen: Vec<u64>,
    /// Deliveries counted once each.
    pub unique: u64,
    unflushed: u64,
    /// Messages received more than once.
    pub duplicated: u64,
    /// Deliveries of a direct message to the wrong member.
    pub misrouted: u64,
    /// Frames that looked like a delivery but were not whole, valid JSON text.
    pub malformed: u64,
    /// Deliveries with an id that was never sent.
    pub unknown: u64,
    /// Acks of our own messages.
    pub acks: u64,
    /// Messages opened and verified (auditors).
    pub opened: u64,
    /// Messages an auditor refused to show.
    pub rejected: u64,
    /// Errors from the server, by code.
    pub errors: BTreeMap<String, u64>,
    /// Why the connection ended before it was told to stop.
    pub closed: Option<String>,
    /// Latency in microseconds.
    pub latency: Histogram<u32>,
    /// When the last delivery arrived.
    pub last: Option<Instant>,
    /// Frames dropped by `seq`: received before a cut, sent again after the resume.
    pub repeats: u64,
    /// Latency of the deliveries that came in a replay after a resume, µs.
    pub replay_latency: Histogram<u32>,
    /// Whether the frame being counted is part of a replay.
    pub(super) replaying: bool,
    /// Each way back after a cut.
    pub backs: Vec<Back>,
    /// `gap` frames, and the frames they say were dropped.
    pub gaps: u64,
    /// Frames dropped from the mailbox, as `gap` frames count them.
    pub gap_dropped: u64,
    /// Connections the server ended (too slow, idle, or without a close frame) after which the
    /// member came back, with the reasons.
    pub reopened: Vec<String>,
    /// Of them, messages (`all` and `direct`).
    pub gap_messages: u64,
    /// `left` frames received, by reason.
    pub left: BTreeMap<String, u64>,
}

const ALL: &[u8] = br#""type":"all","id":""#;
const DIRECT: &[u8] = br#""type":"direct","id":""#;
const GROUP: &[u8] =
    br#""type":"group","group":"0123456789abcdef0123456789abcdef","epoch":1,"id":""#;
const ACK: &[u8] = br#""type":"ack","#;
const ERROR: &[u8] = br#""type":"error","#;
const PRESENCE: &[u8] = br#""type":"presence","#;
const GAP: &[u8] = br#""type":"gap","#;
const LEFT: &[u8] = br#""type":"left","#;

/// A latency histogram: 1 µs to 10 minutes, 2 significant digits (1 %).
pub fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

impl Tally {
    /// An empty tally for member `me`.
    pub fn new(me: usize) -> Self {
        Self {
            me: me as u32,
            seen: Vec::new(),
            unique: 0,
            unflushed: 0,
            duplicated: 0,
            misrouted: 0,
            malformed: 0,
            unknown: 0,
            acks: 0,
            opened: 0,
            rejected: 0,
            errors: BTreeMap::new(),
            closed: None,
            latency: histogram(),
            last: None,
            repeats: 0,
            replay_latency: histogram(),
            replaying: false,
            backs: Vec::new(),
            gaps: 0,
            gap_dropped: 0,
            gap_messages: 0,
            reopened: Vec::new(),
            left: BTreeMap::new(),
        }
    }

    /// Counts one text frame. A delivery is checked for framing (a whole JSON object in valid
    /// UTF-8 with a 32-character id) and counted by id; opening it is left to the auditors.
    pub fn text(&mut self, p: &[u8], now: Instant, shared: &Shared) {
        let b = body(p);
        let rest = b
            .strip_prefix(ALL)
            .or_else(|| b.strip_prefix(DIRECT))
            .or_else(|| b.strip_prefix(GROUP));
        if let Some(rest) = rest {
            let whole = rest.len() > 33
                && rest[32] == b'"'
                && p.last() == Some(&b'}')
                && std::str::from_utf8(p).is_ok();
            if whole {
                self.deliver(&rest[..32], now, shared);
            } else {
                self.malformed += 1;
            }
        } else if b.starts_with(ACK) {
            self.acks += 1;
            shared.acked.fetch_add(1, Ordering::Relaxed);
        } else if b.starts_with(PRESENCE) {
            const AWAY: &[u8] = br#""state":"away""#;
            if b.windows(AWAY.len()).any(|w| w == AWAY) {
                shared.away_seen.fetch_add(1, Ordering::Relaxed);
            }
        } else if b.starts_with(GAP) {
            let gap = serde_json::from_slice::<serde_json::Value>(p).unwrap_or_default();
            let count = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            self.gaps += 1;
            self.gap_dropped += count(&gap["dropped"]);
            let messages = count(&gap["kinds"]["all"]) + count(&gap["kinds"]["direct"]);
            self.gap_messages += messages;
            shared.dropped.fetch_add(messages, Ordering::Relaxed);
        } else if b.starts_with(LEFT) {
            let reason = serde_json::from_slice::<serde_json::Value>(p)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unreadable".into());
            *self.left.entry(reason).or_default() += 1;
        } else if b.starts_with(ERROR) {
            let code = serde_json::from_slice::<serde_json::Value>(p)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unreadable".into());
            *self.errors.entry(code).or_default() += 1;
        }
    }

    /// Counts the delivery of the message with `id`.
    pub fn deliver(&mut self, id: &[u8], now: Instant, shared: &Shared) {
        let Some(table) = shared.table.get() else {
            return;
        };
        let Some(&i) = <[u8; 32]>::try_from(id)
            .ok()
            .and_then(|id| table.ids.get(&id))
        else {
            self.unknown += 1;
            return;
        };
        let i = i as usize;
        if table
            .recipient
            .get(i)
            .is_some_and(|&r| r != self.me && r != EVERYONE)
        {
            self.misrouted += 1;
        }
        if self.seen.is_empty() {
            self.seen = vec![0; table.messages.max(table.ids.len()).div_ceil(64)];
        }
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        self.unflushed += 1;
        self.last = Some(now);
        if i >= table.messages {
            return;
        }
        let late = (now.saturating_duration_since(table.due(i)).as_micros() as u64).max(1);
        self.latency.saturating_record(late);
        if self.replaying {
            self.replay_latency.saturating_record(late);
        }
    }

    /// Whether message `i` (its index in the table) was received.
    pub fn has(&self, i: usize) -> bool {
        self.seen
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Publishes the count of deliveries so far.
    pub fn flush(&mut self, shared: &Shared) {
        if self.unflushed > 0 {
            shared
                .delivered
                .fetch_add(self.unflushed, Ordering::Relaxed);
            self.unflushed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_with(ids: &[&str]) -> Shared {
        let (_tx, stop) = async_channel::bounded(1);
        let shared = Shared {
            table: OnceLock::new(),
            delivered: AtomicU64::new(0),
            keys_received: AtomicUsize::new(0),
            away_seen: AtomicUsize::new(0),
            acked: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            stop,
        };
        let table = Table {
            ids: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (<[u8; 32]>::try_from(id.as_bytes()).unwrap(), i as u32))
                .collect(),
            t0: Instant::now(),
            interval_ns: 1000.0,
            messages: ids.len(),
            recipient: Vec::new(),
        };
        let _ = shared.table.set(table);
        shared
    }

    #[test]
    fn counts_once_and_tells_duplicates_unknown_and_broken_frames_apart() {
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba9876543210fedcba9876543210";
        let shared = shared_with(&[a, b]);
        let mut t = Tally::new(0);
        let now = Instant::now();
        let frame = |id: &str| format!(r#"{{"type":"all","id":"{id}","ts":1}}"#);
        t.text(frame(a).as_bytes(), now, &shared);
        t.text(frame(a).as_bytes(), now, &shared);
        t.text(frame(b).as_bytes(), now, &shared);
        t.text(frame(&"9".repeat(32)).as_bytes(), now, &shared);
        t.text(&frame(b).as_bytes()[..40], now, &shared);
        t.text(br#"{"type":"ack","id":"x"}"#, now, &shared);
        t.text(
            br#"{"type":"error","code":"stale","message":"m"}"#,
            now,
            &shared,
        );
        // Sequenced frames are told apart the same way.
        let seq = format!(r#"{{"seq":9,"type":"direct","id":"{a}","ts":1}}"#);
        t.text(seq.as_bytes(), now, &shared);
        t.text(
            br#"{"seq":10,"type":"presence","key_id":"k","name":"n","state":"away"}"#,
            now,
            &shared,
        );
        t.text(
            br#"{"seq":11,"type":"gap","dropped":3,"kinds":{"all":3},"first_seq":1,"last_seq":3}"#,
            now,
            &shared,
        );
        t.flush(&shared);
        assert_eq!(
            (t.unique, t.duplicated, t.unknown, t.malformed),
            (2, 2, 1, 1)
        );
        assert_eq!((t.gaps, t.gap_dropped, t.gap_messages), (1, 3, 3));
        assert_eq!(shared.away_seen.load(Ordering::Relaxed), 1);
        assert_eq!((t.acks, t.errors["stale"]), (1, 1));
        assert_eq!(shared.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(t.latency.len(), 2);
    }
}

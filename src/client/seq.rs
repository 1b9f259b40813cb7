//! Sequence numbers and acknowledgements on the client's side (`docs/PROTOCOL.md`, *Sequence
//! numbers and acknowledgements*): which server frames are new, when to send `ack {seq}`, and the
//! messages we sent that the server has not yet answered, kept to be sent again after a resume.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Acknowledge at least after this many sequenced frames.
pub const ACK_EVERY: u64 = 64;
/// Acknowledge at least after this many bytes of sequenced frames: large frames must not pile up
/// unacknowledged past the server's mailbox bound (at least 512 KiB).
pub const ACK_BYTES: usize = 128 * 1024;
/// Acknowledge a frame at most this long after it arrived, even when nothing follows it.
pub const ACK_WITHIN: Duration = Duration::from_secs(1);
/// Bytes of sent messages kept until the server answers them (`ack {id}` or `error`); past it the
/// oldest are forgotten and will not be sent again after a resume.
pub const UNANSWERED_BYTES: usize = 1 << 20;

/// The `seq` of a sequenced server frame: the server writes it as the first field
/// (`{"seq":7,"type":…}`), so it is read without parsing the frame.
///
/// ```
/// use dyspatcher::client::seq_of;
/// assert_eq!(seq_of(br#"{"seq":42,"type":"all"}"#), Some(42));
/// assert_eq!(seq_of(br#"{"type":"ack","id":"x"}"#), None);
/// assert_eq!(seq_of(br#"{"seq":,"type":"all"}"#), None);
/// ```
pub fn seq_of(frame: &[u8]) -> Option<u64> {
    number_after(frame, br#"{"seq":"#)
}

/// The `cseq` of a file chunk (`{"cseq":7,"type":"chunk",…}`), read the same way.
///
/// ```
/// use dyspatcher::client::cseq_of;
/// assert_eq!(cseq_of(br#"{"cseq":3,"type":"chunk"}"#), Some(3));
/// assert_eq!(cseq_of(br#"{"seq":3,"type":"all"}"#), None);
/// ```
pub fn cseq_of(frame: &[u8]) -> Option<u64> {
    number_after(frame, br#"{"cseq":"#)
}

fn number_after(frame: &[u8], prefix: &[u8]) -> Option<u64> {
    let rest = frame.strip_prefix(prefix)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// What a received frame is, as far as sequencing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Not sequenced (`challenge`, `welcome`, `ack`, `error`, `notice`).
    Unsequenced,
    /// A sequenced frame seen for the first time.
    New(u64),
    /// A sequenced frame already received (replayed after a resume): drop it.
    Repeat(u64),
    /// A file chunk seen for the first time (its `cseq`): acknowledge it once processed.
    NewChunk(u64),
    /// A file chunk already received: drop it.
    RepeatChunk(u64),
}

/// The last `seq` received in order, and what has been acknowledged of it.
#[derive(Debug, Clone, Default)]
pub struct Acks {
    last: u64,
    acked: u64,
    unacked_bytes: usize,
    oldest_unacked: Option<Instant>,
    /// The end of a replay: acknowledged as soon as it is read, because the server kept up to
    /// its mailbox bound and the next frame must find room.
    replay_end: Option<u64>,
    /// The last `cseq` received, and the last acknowledged.
    last_cseq: u64,
    acked_cseq: u64,
}

impl Acks {
    /// Starts after `last` (0: nothing received), with nothing to acknowledge.
    pub fn after(last: u64) -> Self {
        Self {
            last,
            acked: last,
            unacked_bytes: 0,
            oldest_unacked: None,
            replay_end: None,
            last_cseq: 0,
            acked_cseq: 0,
        }
    }

    /// The same, going on after the chunk `last_cseq` (a resume of the same membership).
    pub fn with_cseq(mut self, last_cseq: u64) -> Self {
        self.last_cseq = last_cseq;
        self.acked_cseq = last_cseq;
        self
    }

    /// The last `cseq` received.
    pub fn last_cseq(&self) -> u64 {
        self.last_cseq
    }

    /// The `cseq` to acknowledge now: chunks are acknowledged as soon as they are processed,
    /// because the sender's window waits on it.
    pub fn due_cseq(&self) -> Option<u64> {
        (self.last_cseq > self.acked_cseq).then_some(self.last_cseq)
    }

    /// Records that `ack {cseq}` was sent.
    pub fn acked_cseq(&mut self, cseq: u64) {
        self.acked_cseq = self.acked_cseq.max(cseq);
    }

    /// A resume replays the frames up to `seq` (the welcome's): acknowledge them all at once
    /// when the last one is read.
    pub fn replay_until(&mut self, seq: u64) {
        self.replay_end = (seq > self.acked).then_some(seq);
    }

    /// Takes a frame that arrived `now`.
    pub fn receive(&mut self, frame: &[u8], now: Instant) -> Received {
        if let Some(cseq) = cseq_of(frame) {
            if cseq <= self.last_cseq {
                return Received::RepeatChunk(cseq);
            }
            self.last_cseq = cseq;
            return Received::NewChunk(cseq);
        }
        let Some(seq) = seq_of(frame) else {
            return Received::Unsequenced;
        };
        if seq <= self.last {
            return Received::Repeat(seq);
        }
        // A jump forward is legitimate: frames dropped from a full mailbox (a `gap` follows).
        self.last = seq;
        self.unacked_bytes += frame.len();
        self.oldest_unacked.get_or_insert(now);
        Received::New(seq)
    }

    /// The `seq` to acknowledge now, if one is due.
    pub fn due(&self, now: Instant) -> Option<u64> {
        let late = self.deadline().is_some_and(|d| d <= now);
        let many = self.last - self.acked >= ACK_EVERY || self.unacked_bytes >= ACK_BYTES;
        let replayed = self.replay_end.is_some_and(|end| self.last >= end);
        (self.last > self.acked && (many || late || replayed)).then_some(self.last)
    }

    /// When the oldest unacknowledged frame must be acknowledged.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest_unacked.map(|t| t + ACK_WITHIN)
    }

    /// Records that `ack {seq}` was sent.
    pub fn acked(&mut self, seq: u64) {
        self.acked = self.acked.max(seq);
        if self.replay_end.is_some_and(|end| self.acked >= end) {
            self.replay_end = None;
        }
        if self.acked >= self.last {
            self.oldest_unacked = None;
            self.unacked_bytes = 0;
        }
    }

    /// The last `seq` received.
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// What kind of message a kept one is, to know what may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A direct message: valid in any membership of ours.
    Direct,
    /// An `@all` message or a sender-key distribution: only valid while our sender key is.
    SenderKeyed,
}

/// Messages sent and not yet answered, oldest first, as the JSON that was sent.
#[derive(Debug, Default)]
pub struct Unanswered {
    list: VecDeque<(Option<String>, Kind, String)>,
    bytes: usize,
}

impl Unanswered {
    /// Keeps a message that is about to be sent; `id` is `None` for messages the server does not
    /// acknowledge (sender keys), which are forgotten once a later message is answered.
    pub fn keep(&mut self, id: Option<String>, kind: Kind, json: String) {
        self.bytes += json.len();
        self.list.push_back((id, kind, json));
        while self.bytes > UNANSWERED_BYTES {
            match self.list.pop_front() {
                Some((_, _, j)) => self.bytes -= j.len(),
                None => break,
            }
        }
    }

    /// The server answered the message `id`: forget it and the unacknowledged messages sent
    /// before it (the server handles a connection's messages in order).
    pub fn answered(&mut self, id: &str) -> bool {
        let Some(at) = self
            .list
            .iter()
            .position(|(i, _, _)| i.as_deref() == Some(id))
        else {
            return false;
        };
        let mut kept = VecDeque::with_capacity(self.list.len() - 1);
        for (n, entry) in self.list.drain(..).enumerate() {
            let forget = n == at || (n < at && entry.0.is_none());
            if forget {
                self.bytes -= entry.2.len();
            } else {
                kept.push_back(entry);
            }
        }
        self.list = kept;
        true
    }

    /// Keeps only the messages of `kind`; returns how many others were forgotten.
    pub fn retain(&mut self, kind: Kind) -> usize {
        let before = self.list.len();
        self.list.retain(|(_, k, _)| *k == kind);
        self.bytes = self.list.iter().map(|(_, _, j)| j.len()).sum();
        before - self.list.len()
    }

    /// The kept messages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&str>, &str)> {
        self.list.iter().map(|(i, _, j)| (i.as_deref(), j.as_str()))
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped_and_acks_come_every_64_frames_or_within_a_second() {
        let t0 = Instant::now();
        let mut a = Acks::after(0);
        let frame = |s: u64| format!(r#"{{"seq":{s},"type":"all"}}"#);
        assert_eq!(a.receive(b"{\"type\":\"ack\"}", t0), Received::Unsequenced);
        assert_eq!(a.due(t0), None);
        for s in 1..=63 {
            assert_eq!(a.receive(frame(s).as_bytes(), t0), Received::New(s));
        }
        assert_eq!(a.due(t0), None);
        assert_eq!(a.due(t0 + ACK_WITHIN), Some(63));
        assert_eq!(a.receive(frame(64).as_bytes(), t0), Received::New(64));
        assert_eq!(a.due(t0), Some(64));
        a.acked(64);
        assert_eq!((a.due(t0 + ACK_WITHIN * 5), a.deadline()), (None, None));
        assert_eq!(a.receive(frame(64).as_bytes(), t0), Received::Repeat(64));
        assert_eq!(a.receive(frame(3).as_bytes(), t0), Received::Repeat(3));
        // A jump forward (dropped frames, then a gap) is taken.
        assert_eq!(a.receive(frame(70).as_bytes(), t0), Received::New(70));
        assert_eq!(a.last(), 70);
        // The end of a replay is acknowledged at once.
        a.acked(70);
        a.replay_until(73);
        assert_eq!(a.receive(frame(72).as_bytes(), t0), Received::New(72));
        assert_eq!(a.due(t0), None);
        assert_eq!(a.receive(frame(73).as_bytes(), t0), Received::New(73));
        assert_eq!(a.due(t0), Some(73));
        a.acked(73);
        assert_eq!(a.receive(frame(74).as_bytes(), t0), Received::New(74));
        assert_eq!(a.due(t0), None);
    }

    #[test]
    fn chunks_have_their_own_numbers_and_are_acknowledged_at_once() {
        let t0 = Instant::now();
        let mut a = Acks::after(5);
        let chunk = |c: u64| format!(r#"{{"cseq":{c},"type":"chunk"}}"#);
        assert_eq!(a.receive(chunk(1).as_bytes(), t0), Received::NewChunk(1));
        assert_eq!((a.last(), a.due_cseq()), (5, Some(1)));
        a.acked_cseq(1);
        assert_eq!(a.due_cseq(), None);
        assert_eq!(a.receive(chunk(1).as_bytes(), t0), Received::RepeatChunk(1));
        let resumed = Acks::after(a.last()).with_cseq(a.last_cseq());
        assert_eq!((resumed.last_cseq(), resumed.due_cseq()), (1, None));
    }

    #[test]
    fn answered_messages_are_forgotten_with_the_sender_keys_before_them() {
        let mut u = Unanswered::default();
        u.keep(None, Kind::SenderKeyed, "k1".into());
        u.keep(Some("a".into()), Kind::SenderKeyed, "all-a".into());
        u.keep(Some("d".into()), Kind::Direct, "direct-d".into());
        u.keep(None, Kind::SenderKeyed, "k2".into());
        u.keep(Some("b".into()), Kind::SenderKeyed, "all-b".into());
        assert!(u.answered("d"));
        let left: Vec<&str> = u.iter().map(|(_, j)| j).collect();
        assert_eq!(left, ["all-a", "k2", "all-b"]);
        assert!(!u.answered("d"));
        assert_eq!(u.retain(Kind::Direct), 3);
        assert_eq!(u.len(), 0);
    }

    #[test]
    fn kept_messages_are_bounded_in_bytes() {
        let mut u = Unanswered::default();
        let big = "x".repeat(UNANSWERED_BYTES / 3 + 1);
        for i in 0..4 {
            u.keep(Some(i.to_string()), Kind::Direct, big.clone());
        }
        assert_eq!(u.len(), 2);
        assert_eq!(u.iter().next().unwrap().0, Some("2"));
    }
}

//! Mailboxes: every frame addressed to an endpoint is numbered (`seq`) and kept until the
//! endpoint acknowledges it, while connected (frames in flight when a connection dies are not
//! lost) and while away. Bounded in bytes per endpoint and in all; what no longer fits is dropped
//! oldest first and counted, so the member is told exactly what it missed. Memory only.
//!
//! A frame for many (an `@all`, a batch of join notices) is one allocation shared by every
//! mailbox that keeps it: each mailbox counts it against its own bound, but the bound for all
//! together counts it once, as the memory it takes — else a room of thousands, each a few frames
//! behind, would look like gigabytes and its members would be closed as too slow.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::outbox::Payload;

mod chunks;
mod gap;
pub use chunks::ChunkRef;
pub use gap::Gap;

/// Identifies one endpoint's place in a member (a user's only one, the admin's prompt or web seat).
pub type SeatId = u64;

/// Who to tell when a kept direct message is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The sender's key ID.
    pub sender: String,
    /// The message id.
    pub id: String,
    /// The recipient's key ID.
    pub to: String,
}

struct Kept {
    seq: u64,
    payload: Payload,
    kind: &'static str,
    receipt: Option<Receipt>,
}

#[derive(Default)]
struct Mailbox {
    last_seq: u64,
    kept: VecDeque<Kept>,
    /// Bytes of both lanes.
    bytes: usize,
    away: bool,
    gap: Gap,
    /// The file chunks' lane: numbered apart, never dropped for room (see `chunks`).
    last_cseq: u64,
    chunks: VecDeque<chunks::KeptChunk>,
    chunk_bytes: usize,
}

impl Mailbox {
    /// Bytes that may be dropped for room: the sequenced frames, not the chunks.
    fn droppable(&self) -> usize {
        self.bytes - self.chunk_bytes
    }
}

/// Every endpoint's mailbox, and the bytes they hold.
pub struct Mailboxes {
    boxes: HashMap<SeatId, Mailbox>,
    /// Away mailboxes by the size of their sequenced frames, to drop from the largest when all
    /// together are over the bound.
    away_by_size: BTreeSet<(usize, SeatId)>,
    /// Bytes held: each kept frame once however many mailboxes keep it, and the chunks.
    total: usize,
    /// How many mailboxes keep each frame (by the address of its shared bytes).
    holders: HashMap<usize, usize>,
    /// Bound per endpoint, in bytes.
    pub each: usize,
    /// Bound for all together, in bytes.
    pub limit: usize,
}

impl Mailboxes {
    /// No mailboxes yet; `each` and `limit` bytes at most.
    pub fn new(each: usize, limit: usize) -> Self {
        Self {
            boxes: HashMap::new(),
            away_by_size: BTreeSet::new(),
            total: 0,
            holders: HashMap::new(),
            each,
            limit,
        }
    }

    /// Opens an empty mailbox for `seat` (numbering starts at 1).
    pub fn open(&mut self, seat: SeatId) {
        self.boxes.insert(seat, Mailbox::default());
    }

    /// Drops `seat`'s mailbox and everything in it.
    pub fn close(&mut self, seat: SeatId) {
        if let Some(b) = self.boxes.remove(&seat) {
            self.total -= b.chunk_bytes;
            self.away_by_size.remove(&(b.droppable(), seat));
            for k in &b.kept {
                self.release(&k.payload);
            }
        }
    }

    /// One more mailbox keeps `payload`: counted in the total if it is the first.
    fn hold(&mut self, payload: &Payload) {
        let refs = self.holders.entry(payload.as_ptr() as usize).or_insert(0);
        if *refs == 0 {
            self.total += payload.len();
        }
        *refs += 1;
    }

    /// One mailbox less keeps `payload`: out of the total when it was the last.
    fn release(&mut self, payload: &Payload) {
        let key = payload.as_ptr() as usize;
        if let Some(refs) = self.holders.get_mut(&key) {
            *refs -= 1;
            if *refs == 0 {
                self.holders.remove(&key);
                self.total -= payload.len();
            }
        }
    }

    /// Bytes kept in all mailboxes (a frame kept by many counted once).
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes kept for `seat`.
    pub fn bytes(&self, seat: SeatId) -> usize {
        self.boxes.get(&seat).map_or(0, |b| b.bytes)
    }

    /// The last `seq` given to `seat`.
    pub fn last_seq(&self, seat: SeatId) -> u64 {
        self.boxes.get(&seat).map_or(0, |b| b.last_seq)
    }

    /// The next `seq` for `seat`.
    pub fn next_seq(&mut self, seat: SeatId) -> u64 {
        let b = self.boxes.entry(seat).or_default();
        b.last_seq += 1;
        b.last_seq
    }

    /// Marks `seat` as away (its frames may be dropped for room) or connected.
    pub fn set_away(&mut self, seat: SeatId, away: bool) {
        let Some(b) = self.boxes.get_mut(&seat) else {
            return;
        };
        if b.away != away {
            b.away = away;
            if away {
                self.away_by_size.insert((b.droppable(), seat));
            } else {
                self.away_by_size.remove(&(b.droppable(), seat));
            }
        }
    }

    fn resize(&mut self, seat: SeatId, f: impl FnOnce(&mut Mailbox)) {
        let Some(b) = self.boxes.get_mut(&seat) else {
            return;
        };
        let (before, dropped_before) = (b.chunk_bytes, b.droppable());
        f(b);
        let (after, dropped_after) = (b.chunk_bytes, b.droppable());
        // The chunks' bytes; the frames' are counted by `hold` and `release`.
        self.total = self.total + after - before;
        if b.away && dropped_before != dropped_after {
            let (before, after) = (dropped_before, dropped_after);
            self.away_by_size.remove(&(before, seat));
            self.away_by_size.insert((after, seat));
        }
    }

    /// Keeps a frame for `seat` until it is acknowledged.
    pub fn keep(
        &mut self,
        seat: SeatId,
        seq: u64,
        payload: Payload,
        kind: &'static str,
        receipt: Option<Receipt>,
    ) {
        if !self.boxes.contains_key(&seat) {
            return;
        }
        self.hold(&payload);
        self.resize(seat, |b| {
            b.bytes += payload.len();
            b.kept.push_back(Kept {
                seq,
                payload,
                kind,
                receipt,
            });
        });
    }

    /// Forgets every frame of `seat` up to `seq`; returns the receipts of the direct messages
    /// among them.
    pub fn ack(&mut self, seat: SeatId, seq: u64) -> Vec<Receipt> {
        let mut receipts = Vec::new();
        let mut gone = Vec::new();
        self.resize(seat, |b| {
            while b.kept.front().is_some_and(|k| k.seq <= seq) {
                let k = b.kept.pop_front().expect("front exists");
                b.bytes -= k.payload.len();
                receipts.extend(k.receipt);
                gone.push(k.payload);
            }
        });
        for p in &gone {
            self.release(p);
        }
        receipts
    }

    /// Drops the oldest frame of `seat`, counting it in the gap; false if there was none.
    pub fn drop_oldest(&mut self, seat: SeatId) -> bool {
        let mut dropped = None;
        self.resize(seat, |b| {
            if let Some(k) = b.kept.pop_front() {
                b.bytes -= k.payload.len();
                b.gap.record(k.seq, k.kind);
                dropped = Some(k.payload);
            }
        });
        match dropped {
            Some(p) => {
                self.release(&p);
                true
            }
            None => false,
        }
    }

    /// Drops `seat`'s oldest frames until it holds at most `bytes`.
    pub fn trim(&mut self, seat: SeatId, bytes: usize) {
        while self.bytes(seat) > bytes && self.drop_oldest(seat) {}
    }

    /// The away mailbox holding the most bytes, if any holds some.
    pub fn largest_away(&self) -> Option<SeatId> {
        self.away_by_size
            .last()
            .filter(|(bytes, _)| *bytes > 0)
            .map(|&(_, seat)| seat)
    }

    /// Among the mailboxes that are not away, the one holding the most bytes.
    pub fn largest_connected(&self) -> Option<SeatId> {
        self.boxes
            .iter()
            .filter(|(_, b)| !b.away && b.bytes > 0)
            .max_by_key(|(_, b)| b.bytes)
            .map(|(&seat, _)| seat)
    }

    /// The kept frames of `seat` after `since`, in order.
    pub fn after(&self, seat: SeatId, since: u64) -> Vec<(u64, Payload)> {
        self.boxes.get(&seat).map_or_else(Vec::new, |b| {
            b.kept
                .iter()
                .filter(|k| k.seq > since)
                .map(|k| (k.seq, k.payload.clone()))
                .collect()
        })
    }

    /// What was dropped from `seat`, not yet reported, and not received before it was dropped
    /// (the member says it received everything up to `since`); reporting it is the caller's.
    pub fn take_gap(&mut self, seat: SeatId, since: u64) -> Option<Gap> {
        let b = self.boxes.get_mut(&seat)?;
        b.gap.received(since);
        (b.gap.dropped > 0).then(|| std::mem::take(&mut b.gap))
    }
}

#[cfg(test)]
mod tests {
    use super::gap::MAX_GAP_RUNS;
    use super::*;
    use std::sync::Arc;

    fn p(n: usize) -> Payload {
        Arc::from(vec![b'x'; n])
    }

    #[test]
    fn kept_until_acknowledged_and_counted_in_bytes() {
        let mut m = Mailboxes::new(100, 1000);
        m.open(1);
        for _ in 0..3 {
            let seq = m.next_seq(1);
            let receipt = Receipt {
                sender: "s".into(),
                id: format!("id{seq}"),
                to: "t".into(),
            };
            m.keep(1, seq, p(10), "direct", Some(receipt));
        }
        assert_eq!((m.bytes(1), m.total()), (30, 30));
        let receipts = m.ack(1, 2);
        assert_eq!(receipts.len(), 2);
        assert_eq!(receipts[1].id, "id2");
        assert_eq!(m.after(1, 0).len(), 1);
        assert_eq!(m.after(1, 0)[0].0, 3);
        m.close(1);
        assert_eq!(m.total(), 0);
    }

    #[test]
    fn a_frame_kept_by_many_mailboxes_counts_once_in_the_total() {
        let mut m = Mailboxes::new(100, 1000);
        let shared = p(40);
        for seat in 1..=3 {
            m.open(seat);
            let seq = m.next_seq(seat);
            m.keep(seat, seq, shared.clone(), "all", None);
        }
        let own = p(10);
        m.keep(1, 2, own, "direct", None);
        // Each mailbox counts the frame against its own bound; the total, the memory.
        assert_eq!((m.bytes(1), m.bytes(2), m.bytes(3)), (50, 40, 40));
        assert_eq!(m.total(), 50);
        m.ack(2, 1);
        assert!(m.drop_oldest(3));
        assert_eq!(m.total(), 50, "mailbox 1 still keeps it");
        m.ack(1, 1);
        assert_eq!((m.bytes(1), m.total()), (10, 10));
        m.close(1);
        assert_eq!(m.total(), 0);
    }

    #[test]
    fn drops_are_counted_by_kind_and_range() {
        let mut m = Mailboxes::new(100, 1000);
        m.open(7);
        m.set_away(7, true);
        for kind in ["all", "direct", "all", "presence"] {
            let seq = m.next_seq(7);
            m.keep(7, seq, p(40), kind, None);
        }
        assert_eq!(m.largest_away(), Some(7));
        m.trim(7, 100);
        assert_eq!(m.bytes(7), 80);
        let gap = m.take_gap(7, 0).unwrap();
        assert_eq!((gap.dropped, gap.first, gap.last), (2, 1, 2));
        assert_eq!(gap.kinds["all"], 1);
        assert_eq!(gap.kinds["direct"], 1);
        assert_eq!(m.take_gap(7, 0), None);
        m.set_away(7, false);
        assert_eq!(m.largest_away(), None);
        assert_eq!(m.largest_connected(), Some(7));
    }

    #[test]
    fn frames_received_before_they_were_dropped_are_not_reported() {
        let mut m = Mailboxes::new(100, 1000);
        m.open(3);
        m.set_away(3, true);
        for kind in ["all", "all", "direct", "all", "all"] {
            let seq = m.next_seq(3);
            m.keep(3, seq, p(30), kind, None);
        }
        m.trim(3, 30);
        // Seqs 1..=4 dropped; the member had received up to 3.
        let gap = m.take_gap(3, 3).unwrap();
        assert_eq!((gap.dropped, gap.first, gap.last), (1, 4, 4));
        assert_eq!(gap.kinds.get("all"), Some(&1));
        assert_eq!(gap.kinds.get("direct"), None);
        // Received everything that was dropped: nothing to report.
        let seq = m.next_seq(3);
        m.keep(3, seq, p(30), "all", None);
        m.trim(3, 30);
        assert_eq!(m.take_gap(3, 6), None);
    }

    #[test]
    fn past_its_runs_a_gap_reports_conservatively() {
        let mut gap = Gap::default();
        let kinds = ["all", "direct"];
        for seq in 1..=(2 * MAX_GAP_RUNS as u64 + 2) {
            gap.record(seq, kinds[seq as usize % 2]);
        }
        let total = gap.dropped;
        gap.received(10);
        assert_eq!(gap.dropped, total, "runs unknown: nothing subtracted");
        gap.received(gap.last);
        assert_eq!(gap, Gap::default());
    }
}

//! The mailbox's second lane: file chunks, numbered with their own `cseq` and kept until
//! acknowledged like any frame. They count against the same bounds, but are never dropped to
//! make room: a chunk that does not fit is not kept, and the caller ends that transfer for that
//! recipient, saying so.

use std::sync::Arc;

use super::{Mailbox, Mailboxes, SeatId};
use crate::hub::outbox::Payload;

/// Which chunk a kept frame is: its file and index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// The file id.
    pub file: Arc<str>,
    /// The chunk index.
    pub i: u64,
}

pub(super) struct KeptChunk {
    cseq: u64,
    payload: Payload,
    chunk: ChunkRef,
}

impl Mailboxes {
    /// The last `cseq` given to `seat`.
    pub fn last_cseq(&self, seat: SeatId) -> u64 {
        self.boxes.get(&seat).map_or(0, |b| b.last_cseq)
    }

    /// Whether `bytes` more fit `seat`'s mailbox and all mailboxes together.
    pub fn fits(&self, seat: SeatId, bytes: usize) -> bool {
        self.bytes(seat) + bytes <= self.each && self.total + bytes <= self.limit
    }

    /// Numbers a chunk for `seat` and keeps it until acknowledged; returns its `cseq`.
    pub fn keep_chunk(&mut self, seat: SeatId, payload: Payload, chunk: ChunkRef) -> u64 {
        let mut cseq = 0;
        self.resize(seat, |b| {
            b.last_cseq += 1;
            cseq = b.last_cseq;
            b.bytes += payload.len();
            b.chunk_bytes += payload.len();
            b.chunks.push_back(KeptChunk {
                cseq,
                payload,
                chunk,
            });
        });
        cseq
    }

    /// Numbers a chunk for `seat` without keeping it (the admin's prompt, which receives at once).
    pub fn next_cseq(&mut self, seat: SeatId) -> u64 {
        let b = self.boxes.entry(seat).or_default();
        b.last_cseq += 1;
        b.last_cseq
    }

    /// Forgets every chunk of `seat` up to `cseq`; returns which they were.
    pub fn ack_chunks(&mut self, seat: SeatId, cseq: u64) -> Vec<ChunkRef> {
        let mut acked = Vec::new();
        self.resize(seat, |b| {
            while b.chunks.front().is_some_and(|k| k.cseq <= cseq) {
                let k = b.chunks.pop_front().expect("front exists");
                forget(b, &k);
                acked.push(k.chunk);
            }
        });
        acked
    }

    /// Drops the kept chunks of `file` from `seat` (the transfer ended for it).
    pub fn drop_chunks_of(&mut self, seat: SeatId, file: &str) {
        self.resize(seat, |b| {
            let mut kept = std::mem::take(&mut b.chunks);
            kept.retain(|k| {
                let keep = &*k.chunk.file != file;
                if !keep {
                    forget(b, k);
                }
                keep
            });
            b.chunks = kept;
        });
    }

    /// The kept chunks of `seat` after `since`, in order.
    pub fn chunks_after(&self, seat: SeatId, since: u64) -> Vec<(u64, Payload)> {
        self.boxes.get(&seat).map_or_else(Vec::new, |b| {
            b.chunks
                .iter()
                .filter(|k| k.cseq > since)
                .map(|k| (k.cseq, k.payload.clone()))
                .collect()
        })
    }
}

fn forget(b: &mut Mailbox, k: &KeptChunk) {
    b.bytes -= k.payload.len();
    b.chunk_bytes -= k.payload.len();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(file: &str, i: u64) -> ChunkRef {
        ChunkRef {
            file: Arc::from(file),
            i,
        }
    }

    #[test]
    fn chunks_are_numbered_apart_counted_and_never_dropped_for_room() {
        let mut m = Mailboxes::new(100, 1000);
        m.open(1);
        m.set_away(1, true);
        let seq = m.next_seq(1);
        m.keep(1, seq, Arc::from(vec![b'x'; 30]), "all", None);
        assert_eq!(m.keep_chunk(1, Arc::from(vec![b'c'; 40]), chunk("f", 0)), 1);
        assert_eq!(m.keep_chunk(1, Arc::from(vec![b'c'; 20]), chunk("g", 0)), 2);
        assert_eq!((m.bytes(1), m.total(), m.last_cseq(1)), (90, 90, 2));
        assert!(m.fits(1, 10) && !m.fits(1, 11));
        // Only the sequenced frame may go for room.
        assert_eq!(m.largest_away(), Some(1));
        m.trim(1, 0);
        assert_eq!((m.bytes(1), m.largest_away()), (60, None));
        assert!(!m.drop_oldest(1), "chunks are not dropped");
        assert_eq!(m.chunks_after(1, 1).len(), 1);
        m.drop_chunks_of(1, "g");
        assert_eq!(m.bytes(1), 40);
        assert_eq!(m.ack_chunks(1, 5), vec![chunk("f", 0)]);
        assert_eq!((m.bytes(1), m.total()), (0, 0));
    }
}

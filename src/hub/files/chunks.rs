//! Chunks of the files in flight: each is checked (the sender's connection, the next index, the
//! window, its exact length) and relayed in the `cseq` lane; `chunk_ack` follows once no
//! connected recipient still owes it.

use std::sync::Arc;
use std::time::Instant;

use super::super::directory::Kind;
use super::super::mailbox::{ChunkRef, SeatId};
use super::super::{frame_of, payload_of, ConnId, Hub, Item, PushError, Refusal};
use super::{decoded_len, refuse};
use crate::protocol::{self, CancelReason, ChunkIn, ChunkOut, ErrorCode, ServerMsg};

impl Hub {
    pub(in crate::hub) fn chunk(&mut self, conn: ConnId, c: ChunkOut) -> Result<(), Refusal> {
        let window = protocol::FILE_WINDOW;
        let Some((key, t)) = self.files.by_id.get_key_value(c.file.as_str()) else {
            return Err(refuse(
                ErrorCode::UnknownFile,
                "no such file in flight",
                &c.file,
            ));
        };
        if t.sender_conn != conn {
            return Err(refuse(
                ErrorCode::UnknownFile,
                "no such file in flight from this connection",
                &c.file,
            ));
        }
        if c.i != t.next {
            let m = format!("expected chunk {}", t.next);
            return Err(refuse(ErrorCode::BadChunk, m, &c.file));
        }
        if c.i >= t.done + window {
            let m = format!(
                "chunk {} is more than {window} ahead of the last acknowledged one",
                c.i
            );
            return Err(refuse(ErrorCode::FileWindow, m, &c.file));
        }
        let expected = protocol::chunk_len(t.size, c.i) + protocol::TAG_LEN;
        let iv_ok = c.iv.len() == 16 && protocol::is_base64(&c.iv);
        let ct_ok = protocol::is_base64(&c.ciphertext) && decoded_len(&c.ciphertext) == expected;
        if !iv_ok || !ct_ok {
            let m = format!(
                "chunk {}: iv must be 12 bytes and ciphertext exactly {expected} bytes, in base64",
                c.i
            );
            return Err(refuse(ErrorCode::BadChunk, m, &c.file));
        }
        let file = key.clone();
        let payload = payload_of(&ServerMsg::Chunk(ChunkIn {
            file: c.file,
            from: t.from.clone(),
            i: c.i,
            iv: c.iv,
            ciphertext: c.ciphertext,
        }));
        let recipients: Vec<SeatId> = t.recipients.keys().copied().collect();
        if let Some(t) = self.files.by_id.get_mut(&file) {
            t.next += 1;
            t.last_chunk = Instant::now();
        }
        for seat in recipients {
            self.deliver_chunk(seat, &file, c.i, &payload);
        }
        self.advance(&file);
        Ok(())
    }

    /// Relays chunk `i` of `file` to `seat`: kept until acknowledged; for an away seat only if
    /// its mailbox can hold it, else the transfer ends for that seat (`mailbox_full`).
    fn deliver_chunk(
        &mut self,
        seat: SeatId,
        file: &Arc<str>,
        i: u64,
        payload: &super::super::Payload,
    ) {
        let Some(s) = self.dir.seats.get(&seat) else {
            return;
        };
        let outbox = s.conn.as_ref().map(|(_, o)| o.clone());
        if s.kind == Kind::Console {
            let cseq = self.boxes.next_cseq(seat);
            if let Some(outbox) = outbox {
                if outbox.push(Item::Chunk(cseq, payload.clone())).is_err() {
                    self.console_dropped += 1;
                }
            }
            return;
        }
        let chunk = ChunkRef {
            file: file.clone(),
            i,
        };
        match outbox {
            Some(outbox) => {
                let cseq = self.boxes.keep_chunk(seat, payload.clone(), chunk);
                if let Some(owed) = self
                    .files
                    .by_id
                    .get_mut(file)
                    .and_then(|t| t.recipients.get_mut(&seat))
                {
                    owed.insert(i);
                }
                let full = outbox.push(Item::Chunk(cseq, payload.clone())) == Err(PushError::Full);
                let bound =
                    self.boxes.each + self.boxes.each / super::super::CONNECTED_HEADROOM_DIVISOR;
                if full || self.boxes.bytes(seat) > bound {
                    self.slow.push(seat);
                }
            }
            None if self.boxes.fits(seat, payload.len()) => {
                self.boxes.keep_chunk(seat, payload.clone(), chunk);
            }
            None => {
                let by = self.dir.seats[&seat].key_id.clone();
                self.drop_recipient(file, seat, &by, CancelReason::MailboxFull);
            }
        }
    }

    /// Sends the `chunk_ack`s that are due, and forgets the transfer once its last chunk is.
    pub(in crate::hub) fn advance(&mut self, file: &Arc<str>) {
        let Some(t) = self.files.by_id.get_mut(file) else {
            return;
        };
        let mut acks = Vec::new();
        while t.done < t.next && !t.recipients.values().any(|owed| owed.contains(&t.done)) {
            acks.push(t.done);
            t.done += 1;
        }
        let complete = t.done == t.chunks;
        let sender = t.sender_conn;
        if complete {
            self.files.by_id.remove(file);
        }
        let Some(outbox) = self.outbox_of(sender) else {
            return;
        };
        for i in acks {
            let _ = outbox.push(frame_of(&ServerMsg::ChunkAck {
                file: file.to_string(),
                i,
            }));
        }
    }

    /// `ack {cseq}` from `seat`.
    pub(in crate::hub) fn ack_chunks(&mut self, seat: SeatId, cseq: u64) -> Result<(), Refusal> {
        let last = self.boxes.last_cseq(seat);
        if cseq > last {
            return Err(Refusal::new(
                ErrorCode::BadField,
                format!("ack: cseq {cseq} was never sent (the last is {last})"),
            ));
        }
        let mut touched: Vec<Arc<str>> = Vec::new();
        for c in self.boxes.ack_chunks(seat, cseq) {
            if let Some(owed) = self
                .files
                .by_id
                .get_mut(&c.file)
                .and_then(|t| t.recipients.get_mut(&seat))
            {
                owed.remove(&c.i);
                if touched.last() != Some(&c.file) {
                    touched.push(c.file);
                }
            }
        }
        touched.dedup();
        for file in touched {
            self.advance(&file);
        }
        Ok(())
    }
}

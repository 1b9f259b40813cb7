//! Files in flight (`docs/PROTOCOL.md`, *Files*): the manifest is routed like a direct or an
//! `@all` message, then its chunks are relayed one by one in the `cseq` lane, never assembled.
//! Per file the hub knows the sender's connection, the recipients' seats, the next index and,
//! per recipient, which chunks it has not acknowledged yet: chunk K is acknowledged to the sender
//! (`chunk_ack`) once no connected recipient still owes it. Nothing is written to disk.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use super::directory::Kind;
use super::mailbox::{ChunkRef, Receipt, SeatId};
use super::route::{check_rsa_field, check_sealed_with};
use super::{frame_of, payload_of, ConnId, DeliveryState, Hub, Item, PushError, Refusal};
use crate::protocol::{
    self, CancelReason, ChunkIn, ChunkOut, ErrorCode, FileIn, FileOut, Sender, ServerMsg,
};

/// One file in flight.
pub(super) struct Transfer {
    sender_seat: SeatId,
    sender_conn: ConnId,
    from: Sender,
    size: u64,
    chunks: u64,
    /// The next index the sender may send.
    next: u64,
    /// Chunks acknowledged to the sender (`chunk_ack` sent for `0..done`).
    done: u64,
    /// A file to one member (not `all`): it ends when its recipient cancels or leaves.
    direct: bool,
    /// Recipient seats and the chunk indexes each has not acknowledged yet.
    recipients: HashMap<SeatId, BTreeSet<u64>>,
    last_chunk: Instant,
}

/// The files in flight, by file id.
#[derive(Default)]
pub(super) struct Transfers {
    pub(super) by_id: HashMap<Arc<str>, Transfer>,
}

impl Transfers {
    fn of_conn(&self, conn: ConnId) -> usize {
        self.by_id
            .values()
            .filter(|t| t.sender_conn == conn)
            .count()
    }

    /// When the transfer idle the longest times out, if any is in flight.
    pub(super) fn next_deadline(&self, idle: std::time::Duration) -> Option<Instant> {
        self.by_id.values().map(|t| t.last_chunk + idle).min()
    }
}

fn refuse(code: ErrorCode, message: impl Into<String>, id: &str) -> Refusal {
    Refusal::new(code, message).about(Some(id.to_string()))
}

/// Decoded length of padded base64 text (checked as base64 by the caller).
fn decoded_len(b64: &str) -> u64 {
    let pad = b64.bytes().rev().take_while(|&b| b == b'=').count();
    (b64.len() / 4 * 3).saturating_sub(pad) as u64
}

impl Hub {
    pub(super) fn file(&mut self, seat: SeatId, conn: ConnId, f: FileOut) -> Result<(), Refusal> {
        let id = f.id.clone();
        check_sealed_with(
            &f.id,
            &f.iv,
            &f.ciphertext,
            &f.signature,
            protocol::MAX_MANIFEST_B64,
        )
        .map_err(|m| refuse(ErrorCode::BadField, m, &id))?;
        let max = self.settings.max_file;
        if f.size > max {
            return Err(refuse(
                ErrorCode::FileTooLarge,
                format!("files are at most {max} bytes ({} MiB)", max >> 20),
                &id,
            ));
        }
        if f.size == 0 {
            return Err(refuse(ErrorCode::BadField, "size must be at least 1", &id));
        }
        if f.chunks != protocol::chunk_count(f.size) {
            return Err(refuse(
                ErrorCode::BadField,
                format!(
                    "chunks must be {} for {} bytes in chunks of {}",
                    protocol::chunk_count(f.size),
                    f.size,
                    protocol::CHUNK_SIZE
                ),
                &id,
            ));
        }
        if self.files.of_conn(conn) >= protocol::FILES_IN_FLIGHT {
            return Err(refuse(
                ErrorCode::TooManyFiles,
                format!(
                    "at most {} unfinished files at once",
                    protocol::FILES_IN_FLIGHT
                ),
                &id,
            ));
        }
        let (from, via, own) = self.sender(seat);
        // A file to a group is relayed like one to `all`, to the group's members only.
        let to_group = protocol::is_hex(&f.to, 32);
        let to_all = f.to == "all" || to_group;
        let targets = if to_group {
            self.file_to_group_checks(seat, &f)?
        } else if to_all {
            self.file_to_all_checks(seat, &f)?
        } else {
            self.file_direct_checks(seat, &own, &f)?
        };
        self.fresh(&f.id, f.ts)?;
        let relay = FileIn {
            id: f.id.clone(),
            ts: f.ts,
            from: from.clone(),
            to: f.to.clone(),
            size: f.size,
            chunks: f.chunks,
            iv: f.iv,
            ciphertext: f.ciphertext,
            key: None,
            skid: f.skid,
            n: f.n,
            epoch: f.epoch,
            signature: f.signature,
            via,
        };
        // What an away mailbox must be able to hold: every chunk and this manifest.
        let manifest_len = serde_json::to_vec(&relay).map_or(0, |v| v.len()) + 64;
        let need = protocol::kept_estimate(f.size, f.chunks) as usize + manifest_len;
        let (fit, skipped): (Vec<SeatId>, Vec<SeatId>) = targets.into_iter().partition(|&t| {
            let s = &self.dir.seats[&t];
            s.conn.is_some() || s.kind == Kind::Console || self.boxes.fits(t, need)
        });
        if fit.is_empty() && !to_all {
            return Err(refuse(
                ErrorCode::MailboxFull,
                format!(
                    "the recipient is away and its mailbox cannot hold {need} more bytes: \
                     send it when the recipient is back"
                ),
                &id,
            ));
        }
        let skipped_ids: Vec<String> = skipped
            .iter()
            .map(|t| self.dir.seats[t].key_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let answer = ServerMsg::Ack {
            id: f.id.clone(),
            skipped: to_all.then_some(skipped_ids),
        };
        if let Some(outbox) = self.outbox_of(conn) {
            let _ = outbox.push(frame_of(&answer));
        }
        let receipt = (!to_all && f.to != own).then(|| Receipt {
            sender: own.clone(),
            id: f.id.clone(),
            to: f.to.clone(),
        });
        let held = receipt.is_some() && !self.dir.online(&f.to);
        let carrier = fit
            .iter()
            .copied()
            .find(|t| self.dir.seats[t].kind == Kind::Console)
            .or(fit.first().copied());
        let keys = f.keys.unwrap_or_default();
        let mut payloads: HashMap<String, super::Payload> = HashMap::new();
        for &t in &fit {
            let key_id = self.dir.seats[&t].key_id.clone();
            let payload = payloads
                .entry(key_id.clone())
                .or_insert_with(|| {
                    let mut r = relay.clone();
                    r.key = keys.get(&key_id).cloned();
                    payload_of(&ServerMsg::File(r))
                })
                .clone();
            let r = if Some(t) == carrier {
                receipt.clone()
            } else {
                None
            };
            self.deliver(t, &payload, "file", r);
        }
        if held {
            if let Some(r) = receipt {
                self.delivery(r, DeliveryState::Held);
            }
        }
        let recipients = fit.into_iter().map(|t| (t, BTreeSet::new())).collect();
        self.files.by_id.insert(
            Arc::from(f.id.as_str()),
            Transfer {
                sender_seat: seat,
                sender_conn: conn,
                from,
                size: f.size,
                chunks: f.chunks,
                next: 0,
                done: 0,
                direct: !to_all,
                recipients,
                last_chunk: Instant::now(),
            },
        );
        Ok(())
    }

    fn file_to_all_checks(&self, seat: SeatId, f: &FileOut) -> Result<Vec<SeatId>, Refusal> {
        if !self.is_admin_seat(seat) && (self.settings.disable_all || self.settings.only_admin) {
            return Err(refuse(
                ErrorCode::Forbidden,
                "@all is disabled on this server",
                &f.id,
            ));
        }
        if !f.skid.as_deref().is_some_and(|s| protocol::is_hex(s, 32)) || f.n.is_none() {
            return Err(refuse(
                ErrorCode::BadField,
                "a file to all needs skid (32 hex characters) and n",
                &f.id,
            ));
        }
        let own = &self.dir.seats[&seat].key_id;
        // Not copied to the sender's other endpoint.
        Ok(self
            .dir
            .seats
            .iter()
            .filter(|(_, s)| &s.key_id != own)
            .map(|(&t, _)| t)
            .collect())
    }

    fn file_to_group_checks(&self, seat: SeatId, f: &FileOut) -> Result<Vec<SeatId>, Refusal> {
        if !f.skid.as_deref().is_some_and(|s| protocol::is_hex(s, 32)) || f.n.is_none() {
            return Err(refuse(
                ErrorCode::BadField,
                "a file to a group needs skid (32 hex characters), n and epoch",
                &f.id,
            ));
        }
        let Some(epoch) = f.epoch else {
            return Err(refuse(
                ErrorCode::BadField,
                "a file to a group needs skid (32 hex characters), n and epoch",
                &f.id,
            ));
        };
        self.routed_in(seat, &f.to, &f.id)?;
        self.current_epoch(&f.to, epoch, &f.id)?;
        let own = &self.dir.seats[&seat].key_id;
        // Not copied to the sender's other endpoint, as for `all`.
        Ok(self
            .group_seats(&f.to, seat)
            .into_iter()
            .filter(|t| &self.dir.seats[t].key_id != own)
            .collect())
    }

    fn file_direct_checks(
        &self,
        seat: SeatId,
        own: &str,
        f: &FileOut,
    ) -> Result<Vec<SeatId>, Refusal> {
        if !self.dir.members.contains_key(&f.to) || !self.can_see(own, &f.to) {
            return Err(refuse(ErrorCode::UnknownRecipient, "no such member", &f.id));
        }
        let targets = self.dir.seats_of(&f.to, seat);
        if targets.is_empty() {
            return Err(refuse(
                ErrorCode::BadField,
                "to: your own key has no other endpoint to send to",
                &f.id,
            ));
        }
        let mut expected = vec![f.to.as_str(), own];
        expected.dedup();
        let keys_ok = f.keys.as_ref().is_some_and(|keys| {
            keys.len() == expected.len()
                && expected.iter().all(|k| {
                    keys.get(*k)
                        .is_some_and(|w| check_rsa_field("a wrapped key", w).is_ok())
                })
        });
        if !keys_ok {
            return Err(refuse(
                ErrorCode::BadKeys,
                "keys must hold the key wrapped for the recipient and for yourself",
                &f.id,
            ));
        }
        Ok(targets)
    }

    pub(super) fn chunk(&mut self, conn: ConnId, c: ChunkOut) -> Result<(), Refusal> {
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
    fn deliver_chunk(&mut self, seat: SeatId, file: &Arc<str>, i: u64, payload: &super::Payload) {
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
                let bound = self.boxes.each + self.boxes.each / super::CONNECTED_HEADROOM_DIVISOR;
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
    fn advance(&mut self, file: &Arc<str>) {
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
    pub(super) fn ack_chunks(&mut self, seat: SeatId, cseq: u64) -> Result<(), Refusal> {
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

mod cancel;

//! How transfers end early: cancelled by the sender or a recipient, the sender's connection gone,
//! a recipient's mailbox full or its membership ended, or no chunk for `file_idle_secs`. Every
//! end is told (`file_cancel`, `seq` lane) to whoever still expects the file; nothing is silent.

use std::sync::Arc;
use std::time::Instant;

use super::super::mailbox::SeatId;
use super::super::{payload_of, ConnId, Hub, Refusal};
use crate::protocol::{CancelReason, ErrorCode, ServerMsg};

impl Hub {
    /// `file_cancel` from `seat` on `conn`.
    pub(in crate::hub) fn file_cancel(
        &mut self,
        seat: SeatId,
        conn: ConnId,
        file: String,
    ) -> Result<(), Refusal> {
        let unknown = || {
            Refusal::new(ErrorCode::UnknownFile, "no such file in flight").about(Some(file.clone()))
        };
        let Some((key, t)) = self.files.by_id.get_key_value(file.as_str()) else {
            return Err(unknown());
        };
        let key = key.clone();
        if t.sender_conn == conn {
            let by = t.from.key_id.clone();
            self.end_transfer(&key, &by, CancelReason::Cancelled, false);
            Ok(())
        } else if t.recipients.contains_key(&seat) {
            let by = self.dir.seats[&seat].key_id.clone();
            self.drop_recipient(&key, seat, &by, CancelReason::Cancelled);
            Ok(())
        } else {
            Err(unknown())
        }
    }

    fn tell_cancel(&mut self, seat: SeatId, file: &str, by: &str, reason: CancelReason) {
        let payload = payload_of(&ServerMsg::FileCancel {
            file: file.to_string(),
            by: by.to_string(),
            reason,
        });
        self.deliver(seat, &payload, "file_cancel", None);
    }

    /// Ends the transfer for everyone: recipients are told, and the sender too if `tell_sender`.
    fn end_transfer(&mut self, file: &Arc<str>, by: &str, reason: CancelReason, tell_sender: bool) {
        let Some(t) = self.files.by_id.remove(file) else {
            return;
        };
        for seat in t.recipients.keys() {
            self.boxes.drop_chunks_of(*seat, file);
            self.tell_cancel(*seat, file, by, reason);
        }
        if tell_sender && self.dir.seats.contains_key(&t.sender_seat) {
            self.tell_cancel(t.sender_seat, file, by, reason);
        }
    }

    /// Ends the transfer for one recipient (it cancelled, its mailbox is full, or it is gone):
    /// it and the sender are told; a file to one member ends there, a file to all goes on for
    /// the others while any is left.
    pub(in crate::hub) fn drop_recipient(
        &mut self,
        file: &Arc<str>,
        seat: SeatId,
        by: &str,
        reason: CancelReason,
    ) {
        let Some(t) = self.files.by_id.get_mut(file) else {
            return;
        };
        if t.recipients.remove(&seat).is_none() {
            return;
        }
        let (sender, direct, left) = (t.sender_seat, t.direct, t.recipients.len());
        self.boxes.drop_chunks_of(seat, file);
        // A recipient that cancelled knows; one whose mailbox is full is told.
        if reason != CancelReason::Cancelled && self.dir.seats.contains_key(&seat) {
            self.tell_cancel(seat, file, by, reason);
        }
        if self.dir.seats.contains_key(&sender) {
            self.tell_cancel(sender, file, by, reason);
        }
        if direct || left == 0 {
            self.end_transfer(file, by, reason, false);
        } else {
            self.advance(file);
        }
    }

    /// The connection `conn` ended: its unfinished files are cancelled (`sender_gone`).
    pub(in crate::hub) fn files_conn_gone(&mut self, conn: ConnId) {
        let theirs: Vec<(Arc<str>, String)> = self
            .files
            .by_id
            .iter()
            .filter(|(_, t)| t.sender_conn == conn)
            .map(|(k, t)| (k.clone(), t.from.key_id.clone()))
            .collect();
        for (file, by) in theirs {
            self.end_transfer(&file, &by, CancelReason::SenderGone, false);
        }
    }

    /// `seat` went away: what it had not acknowledged stays in its mailbox (which counts as kept);
    /// if that is more than its mailbox may hold, the transfers it receives end for it.
    pub(in crate::hub) fn files_seat_away(&mut self, seat: SeatId) {
        let files: Vec<Arc<str>> = self
            .files
            .by_id
            .iter()
            .filter(|(_, t)| t.recipients.contains_key(&seat))
            .map(|(k, _)| k.clone())
            .collect();
        let over = self.boxes.bytes(seat) > self.boxes.each;
        let by = self.dir.seats.get(&seat).map(|s| s.key_id.clone());
        for file in files {
            if let (true, Some(by)) = (over, &by) {
                self.drop_recipient(&file, seat, by, CancelReason::MailboxFull);
                continue;
            }
            if let Some(owed) = self
                .files
                .by_id
                .get_mut(&file)
                .and_then(|t| t.recipients.get_mut(&seat))
            {
                owed.clear();
            }
            self.advance(&file);
        }
    }

    /// `seat` (of the member `key_id`) was removed: the transfers it receives end for it
    /// (`deleted`, told to the sender).
    pub(in crate::hub) fn files_seat_removed(&mut self, seat: SeatId, key_id: &str) {
        let files: Vec<Arc<str>> = self
            .files
            .by_id
            .iter()
            .filter(|(_, t)| t.recipients.contains_key(&seat))
            .map(|(k, _)| k.clone())
            .collect();
        for file in files {
            self.drop_recipient(&file, seat, key_id, CancelReason::Deleted);
        }
    }

    /// Cancels the transfers with no chunk for the idle time (`timeout`, told to all).
    pub(in crate::hub) fn expire_files(&mut self, now: Instant) {
        let idle = self.settings.file_idle;
        let stale: Vec<(Arc<str>, String)> = self
            .files
            .by_id
            .iter()
            .filter(|(_, t)| t.last_chunk + idle <= now)
            .map(|(k, t)| (k.clone(), t.from.key_id.clone()))
            .collect();
        for (file, by) in stale {
            self.end_transfer(&file, &by, CancelReason::Timeout, true);
        }
    }
}

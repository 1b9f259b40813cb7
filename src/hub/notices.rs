//! Join notices, batched: members who join within [`JOIN_NOTICE_WAIT`] of one another are told
//! to everyone in one `joined` frame (`members`, a list) instead of one frame each, so that a
//! crowd arriving costs each member one frame, one mailbox entry and one acknowledgement per
//! batch. Anything else the hub does first sends the notices waiting, so no frame about a new
//! member can overtake its `joined`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::mailbox::SeatId;
use super::{Hub, Kind, Payload};
use crate::protocol::{JoinedManyOut, JoinedOut};

/// How long a join notice may wait for others to go with it, in a room of fewer than
/// [`MEMBERS_PER_STEP`] members.
pub const JOIN_NOTICE_WAIT: Duration = Duration::from_millis(50);
/// Each this many members lets a join notice wait [`JOIN_NOTICE_WAIT`] longer: in a crowd every
/// batch wakes every member's connection, so batches grow with the room.
pub const MEMBERS_PER_STEP: usize = 250;
/// The longest a join notice waits, however large the room.
pub const JOIN_NOTICE_WAIT_MAX: Duration = Duration::from_millis(500);
/// The most member records (their JSON bytes) one batch of join notices carries: a fuller batch
/// goes at once. Members who joined within a batch each hear of those after them, a different
/// list each, so a batch of n costs about n² / 2 records of memory until acknowledged: this
/// bounds it (about 140 members a batch, ~1 MiB in all for the newcomers' frames).
pub const JOIN_NOTICE_MAX_BYTES: usize = 16 * 1024;

/// How long a join notice may wait in a room of `members`.
pub fn join_notice_wait(members: usize) -> Duration {
    let steps = 1 + members / MEMBERS_PER_STEP;
    (JOIN_NOTICE_WAIT * steps as u32).min(JOIN_NOTICE_WAIT_MAX)
}

/// Join notices not sent yet: each member's key ID, the seat that joined (its own seats are
/// not told; for the admin's web seat, the prompt is), and the newest seat then (seats made
/// later had it in their welcome).
#[derive(Default)]
pub struct PendingJoins {
    list: Vec<(String, SeatId, SeatId)>,
    due: Option<Instant>,
    /// The JSON bytes of the members listed.
    bytes: usize,
}

impl PendingJoins {
    /// When the notices waiting must go.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Adds a member whose record is `bytes` long, due after `wait` at the latest; true when the
    /// batch reached [`JOIN_NOTICE_MAX_BYTES`] and must go now.
    fn push(&mut self, joined: (String, SeatId, SeatId), bytes: usize, wait: Duration) -> bool {
        self.list.push(joined);
        self.bytes += bytes;
        self.due.get_or_insert_with(|| Instant::now() + wait);
        self.bytes >= JOIN_NOTICE_MAX_BYTES
    }

    /// Takes the batch, leaving nothing waiting.
    fn take(&mut self) -> Vec<(String, SeatId, SeatId)> {
        self.due = None;
        self.bytes = 0;
        std::mem::take(&mut self.list)
    }
}

impl Hub {
    /// Tells everyone who sees the member that `seat` joined, with the others who join within
    /// [`JOIN_NOTICE_WAIT`].
    pub(super) fn announce_joined(&mut self, key_id: &str, seat: SeatId) {
        // The prompt is in this process: it costs no write to tell it at once, and the admin
        // may write to the newcomer straight away.
        if let (Some(console), Some(m)) = (
            self.dir.admin_seat(Kind::Console),
            self.dir.members.get(key_id),
        ) {
            if console != seat {
                let payload: Payload = serde_json::to_vec(&JoinedOut { member: &m.json })
                    .expect("joined encodes")
                    .into();
                self.deliver(console, &payload, "joined", None);
            }
        }
        let newest = self.dir.newest_seat();
        let wait = join_notice_wait(self.dir.members.len());
        let bytes = self
            .dir
            .members
            .get(key_id)
            .map_or(0, |m| m.json.get().len());
        if self
            .joins
            .push((key_id.to_string(), seat, newest), bytes, wait)
        {
            self.flush_joins();
        }
    }

    /// Sends the join notices waiting, one frame per seat: the members it sees, in order.
    pub(super) fn flush_joins(&mut self) {
        let list = self.joins.take();
        if list.is_empty() {
            return;
        }
        let joined: Vec<(String, SeatId, SeatId, Box<RawValue>)> = list
            .into_iter()
            .filter_map(|(k, s, newest)| {
                let json = self.dir.members.get(&k)?.json.clone();
                Some((k, s, newest, json))
            })
            .collect();
        // Which of them each seat hears of; seats with the same list share one payload.
        let mut payloads: HashMap<Vec<usize>, Payload> = HashMap::new();
        let seats: Vec<(SeatId, Vec<usize>)> = self
            .dir
            .seats
            .iter()
            .filter(|(_, s)| s.kind != Kind::Console)
            .map(|(&id, s)| {
                let heard = joined
                    .iter()
                    .enumerate()
                    .filter(|(_, (k, seat, newest, _))| {
                        id != *seat && id <= *newest && self.can_see(&s.key_id, k)
                    })
                    .map(|(i, _)| i)
                    .collect();
                (id, heard)
            })
            .filter(|(_, heard): &(SeatId, Vec<usize>)| !heard.is_empty())
            .collect();
        for (seat, heard) in seats {
            let payload = payloads
                .entry(heard)
                .or_insert_with_key(|heard| {
                    let bytes = match heard[..] {
                        [one] => serde_json::to_vec(&JoinedOut {
                            member: &joined[one].3,
                        }),
                        _ => serde_json::to_vec(&JoinedManyOut {
                            members: heard.iter().map(|&i| &*joined[i].3).collect(),
                        }),
                    };
                    bytes.expect("joined encodes").into()
                })
                .clone();
            self.deliver(seat, &payload, "joined", None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_notices_wait_longer_in_larger_rooms_up_to_a_bound() {
        assert_eq!(join_notice_wait(0), Duration::from_millis(50));
        assert_eq!(join_notice_wait(249), Duration::from_millis(50));
        assert_eq!(join_notice_wait(250), Duration::from_millis(100));
        assert_eq!(join_notice_wait(2000), Duration::from_millis(450));
        assert_eq!(join_notice_wait(2250), JOIN_NOTICE_WAIT_MAX);
        assert_eq!(join_notice_wait(100_000), JOIN_NOTICE_WAIT_MAX);
    }

    #[test]
    fn a_batch_of_join_notices_goes_at_once_when_it_reaches_its_byte_bound() {
        let mut joins = PendingJoins::default();
        let wait = Duration::from_millis(50);
        let record = 110;
        let fit = JOIN_NOTICE_MAX_BYTES.div_ceil(record) - 1;
        for i in 0..fit {
            assert!(!joins.push((format!("k{i}"), i as SeatId, i as SeatId), record, wait));
        }
        assert!(joins.due().is_some());
        // The record that crosses the bound sends the batch now.
        assert!(joins.push(("last".into(), 0, 0), record, wait));
        assert_eq!(joins.take().len(), fit + 1);
        assert_eq!((joins.due(), joins.bytes), (None, 0));
        assert!(!joins.push(("next".into(), 0, 0), record, wait));
    }
}

//! Public keys on request: `get_keys` is answered on the asking connection with the keys of the
//! members it sees, and of members who left lately (frames they sent before leaving may still
//! reach someone who must verify them). The member list itself carries no keys, so that a join
//! costs the same in a room of ten and of two thousand.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mailbox::SeatId;
use super::{frame_of, Hub, PushError, Refusal};
use crate::protocol::{self, ErrorCode, ServerMsg, MAX_GET_KEYS};

/// Keys of members who left that are still answered, at most (the oldest is forgotten first):
/// about 0.7 KiB each with 4096-bit keys.
pub const LEFT_KEYS_KEPT: usize = 512;

/// The keys of members who left, each for the away grace period (or until crowded out).
pub struct LeftKeys {
    keep_for: Duration,
    order: VecDeque<(Instant, String)>,
    keys: HashMap<String, Arc<str>>,
}

impl LeftKeys {
    /// Keeps keys for `keep_for` after their member left.
    pub fn new(keep_for: Duration) -> Self {
        Self {
            keep_for,
            order: VecDeque::new(),
            keys: HashMap::new(),
        }
    }

    /// Remembers the key of a member who just left.
    pub fn keep(&mut self, key_id: &str, spki_b64: Arc<str>, now: Instant) {
        self.expire(now);
        if self.keys.insert(key_id.to_string(), spki_b64).is_none() {
            self.order.push_back((now, key_id.to_string()));
        }
        while self.keys.len() > LEFT_KEYS_KEPT {
            let Some((_, old)) = self.order.pop_front() else {
                break;
            };
            self.keys.remove(&old);
        }
    }

    /// Forgets a key whose member joined again (the member list has it now).
    pub fn forget(&mut self, key_id: &str) {
        if self.keys.remove(key_id).is_some() {
            self.order.retain(|(_, k)| k != key_id);
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.keep_for {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.keys.remove(&old);
        }
    }

    fn get(&mut self, key_id: &str, now: Instant) -> Option<&Arc<str>> {
        self.expire(now);
        self.keys.get(key_id)
    }
}

/// Checks a `get_keys` list: 1 to [`MAX_GET_KEYS`] key IDs of 64 lowercase hex characters.
pub fn check_get_keys(key_ids: &[String]) -> Result<(), String> {
    if key_ids.is_empty() {
        return Err("get_keys: key_ids is empty".into());
    }
    if key_ids.len() > MAX_GET_KEYS {
        return Err(format!(
            "get_keys: at most {MAX_GET_KEYS} key IDs at a time, got {}",
            key_ids.len()
        ));
    }
    if let Some(i) = key_ids.iter().position(|k| !protocol::is_hex(k, 64)) {
        return Err(format!(
            "get_keys: key_ids[{i}] is not 64 lowercase hex characters"
        ));
    }
    Ok(())
}

impl Hub {
    /// Answers `get_keys` from `seat` on its connection: the keys it may have, the rest unknown.
    pub(super) fn get_keys(&mut self, seat: SeatId, key_ids: Vec<String>) -> Result<(), Refusal> {
        check_get_keys(&key_ids).map_err(|m| Refusal::new(ErrorCode::BadField, m))?;
        let Some(viewer) = self.dir.seats.get(&seat).map(|s| s.key_id.clone()) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut keys = BTreeMap::new();
        let mut unknown = Vec::new();
        for id in key_ids {
            if keys.contains_key(&id) || unknown.contains(&id) {
                continue;
            }
            let found = if !self.can_see(&viewer, &id) {
                None
            } else if let Some(m) = self.dir.members.get(&id) {
                Some(m.public_key.clone())
            } else {
                self.left_keys.get(&id, now).cloned()
            };
            match found {
                Some(k) => {
                    keys.insert(id, k.to_string());
                }
                None => unknown.push(id),
            }
        }
        let frame = frame_of(&ServerMsg::Keys { keys, unknown });
        let outbox = self.dir.seats[&seat].conn.as_ref().map(|(_, o)| o.clone());
        if let Some(outbox) = outbox {
            // A client that asks and does not read is as slow as one that does not acknowledge.
            if outbox.push(frame) == Err(PushError::Full)
                && self.dir.seats[&seat].kind != super::Kind::Console
            {
                self.slow.push(seat);
            }
        }
        Ok(())
    }
}

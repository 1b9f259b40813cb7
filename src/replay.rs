//! Replay protection, for the hub and for every endpoint's session: message ids seen in the last
//! ten minutes, and timestamps near the server's clock. Ids are kept as the 16 bytes they encode, so the bound in count is one in bytes:
//! about [`BYTES_PER_ID`] each, [`MAX_SEEN_IDS`] at most.

use std::collections::{HashSet, VecDeque};

use crate::protocol::{self, ErrorCode};

/// Largest number of ids the hub remembers: past it the oldest are forgotten early (endpoints
/// keep their own window of seen ids too).
pub const MAX_SEEN_IDS: usize = 200_000;
/// Memory one remembered id takes, in the set and in the queue (at most 1/8 of a set is free).
pub const BYTES_PER_ID: usize = 16 * 8 / 7 + 1 + 32;

/// The ids seen recently, oldest first.
pub struct Seen {
    ids: HashSet<u128>,
    order: VecDeque<(i64, u128)>,
    max: usize,
}

impl Seen {
    /// Remembers at most `max` ids.
    pub fn new(max: usize) -> Self {
        Self {
            ids: HashSet::new(),
            order: VecDeque::new(),
            max,
        }
    }

    /// Accepts `id` stamped `ts` at `now`, or says why not.
    pub fn check(&mut self, id: &str, ts: i64, now: i64) -> Result<(), (ErrorCode, &'static str)> {
        // `abs_diff`: a timestamp near `i64::MIN` or `i64::MAX` must not overflow the subtraction.
        if ts.abs_diff(now) > protocol::MAX_CLOCK_SKEW_MS.unsigned_abs() {
            return Err((
                ErrorCode::Stale,
                "timestamp is more than 5 minutes from the server's clock",
            ));
        }
        while let Some((t, _)) = self.order.front() {
            if now - *t <= protocol::SEEN_ID_WINDOW_MS && self.order.len() < self.max {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.ids.remove(&old);
        }
        let id = if protocol::is_hex(id, 32) {
            u128::from_str_radix(id, 16).map_err(|_| (ErrorCode::BadField, "id: not hex"))?
        } else {
            return Err((ErrorCode::BadField, "id: 32 lowercase hex characters"));
        };
        if !self.ids.insert(id) {
            return Err((ErrorCode::DuplicateId, "this message id was already used"));
        }
        self.order.push_back((now, id));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_stale_are_refused_and_old_ids_forgotten() {
        let mut seen = Seen::new(MAX_SEEN_IDS);
        let now = 1_000_000_000;
        let [a, b, c] = ["0a", "0b", "0c"].map(|x| format!("{:0>32}", x));
        let (a, b, c) = (a.as_str(), b.as_str(), c.as_str());
        assert_eq!(
            seen.check("A", now, now).unwrap_err().0,
            ErrorCode::BadField
        );
        assert!(seen.check(a, now, now).is_ok());
        assert_eq!(
            seen.check(a, now, now).unwrap_err().0,
            ErrorCode::DuplicateId
        );
        let skew = protocol::MAX_CLOCK_SKEW_MS;
        assert_eq!(
            seen.check(b, now - skew - 1, now).unwrap_err().0,
            ErrorCode::Stale
        );
        assert!(seen.check(c, now + skew, now).is_ok());
        let later = now + protocol::SEEN_ID_WINDOW_MS + 1;
        assert!(seen.check(a, later, later).is_ok());
    }

    #[test]
    fn at_most_max_seen_ids_are_kept() {
        let mut seen = Seen::new(MAX_SEEN_IDS);
        let now = 1_000_000_000;
        for n in 0..MAX_SEEN_IDS as u128 + 10 {
            seen.check(&format!("{n:032x}"), now, now).unwrap();
        }
        assert_eq!(seen.ids.len(), MAX_SEEN_IDS);
        assert_eq!(seen.order.len(), MAX_SEEN_IDS);
        // The oldest were forgotten; the newest are still refused as repeats.
        assert!(seen.check(&format!("{:032x}", 0), now, now).is_ok());
        let newest = format!("{:032x}", MAX_SEEN_IDS as u128 + 9);
        assert_eq!(
            seen.check(&newest, now, now).unwrap_err().0,
            ErrorCode::DuplicateId
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_i64_are_stale() {
        // Found while writing the fuzz targets: `(ts - now).abs()` overflowed. With overflow
        // checks it panicked the hub; without them `i64::MIN + now` wrapped to an accepted skew.
        let mut seen = Seen::new(MAX_SEEN_IDS);
        let now = 1_700_000_000_000;
        let id = format!("{:032x}", 1);
        for ts in [i64::MIN, i64::MIN + now, i64::MAX, i64::MAX - 1, 0] {
            assert_eq!(
                seen.check(&id, ts, now).unwrap_err().0,
                ErrorCode::Stale,
                "ts {ts}"
            );
        }
    }
}

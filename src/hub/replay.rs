//! Replay protection: message ids seen in the last ten minutes, and timestamps near the server's
//! clock. Bounded by count (and so by bytes: an id is 32 characters).

use std::collections::{HashSet, VecDeque};

use crate::protocol::{self, ErrorCode};

/// Largest number of ids remembered.
pub const MAX_SEEN_IDS: usize = 200_000;

/// The ids seen recently, oldest first.
#[derive(Default)]
pub struct Seen {
    ids: HashSet<String>,
    order: VecDeque<(i64, String)>,
}

impl Seen {
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
            if now - *t <= protocol::SEEN_ID_WINDOW_MS && self.order.len() < MAX_SEEN_IDS {
                break;
            }
            let (_, old) = self.order.pop_front().expect("front exists");
            self.ids.remove(&old);
        }
        if !self.ids.insert(id.to_string()) {
            return Err((ErrorCode::DuplicateId, "this message id was already used"));
        }
        self.order.push_back((now, id.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_stale_are_refused_and_old_ids_forgotten() {
        let mut seen = Seen::default();
        let now = 1_000_000_000;
        assert!(seen.check("a", now, now).is_ok());
        assert_eq!(
            seen.check("a", now, now).unwrap_err().0,
            ErrorCode::DuplicateId
        );
        let skew = protocol::MAX_CLOCK_SKEW_MS;
        assert_eq!(
            seen.check("b", now - skew - 1, now).unwrap_err().0,
            ErrorCode::Stale
        );
        assert!(seen.check("c", now + skew, now).is_ok());
        let later = now + protocol::SEEN_ID_WINDOW_MS + 1;
        assert!(seen.check("a", later, later).is_ok());
    }

    #[test]
    fn timestamps_at_the_ends_of_i64_are_stale() {
        // Found while writing the fuzz targets: `(ts - now).abs()` overflowed. With overflow
        // checks it panicked the hub; without them `i64::MIN + now` wrapped to an accepted skew.
        let mut seen = Seen::default();
        let now = 1_700_000_000_000;
        for ts in [i64::MIN, i64::MIN + now, i64::MAX, i64::MAX - 1, 0] {
            assert_eq!(
                seen.check("a", ts, now).unwrap_err().0,
                ErrorCode::Stale,
                "ts {ts}"
            );
        }
    }
}

//! Lines for the operator that anyone on the network can cause (refused joins, connections that
//! end in an error) are throttled, so that they cannot fill the transcript's disk: the first
//! [`LINES_PER_WINDOW`] of each [`WINDOW`] are shown, the rest are counted and summarised in one
//! line when the window ends.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Lines of one kind shown one by one in each window.
pub const LINES_PER_WINDOW: u32 = 5;
/// The length of a window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Distinct addresses counted in a summary (more are reported as "at least").
const MAX_COUNTED_ADDRESSES: usize = 256;
/// Distinct reasons counted in a summary (more are counted as "other").
const MAX_COUNTED_REASONS: usize = 8;

/// What to do with a line.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The summary of the window that ended before this line, to show first.
    pub summary: Option<String>,
    /// Show this line.
    pub show: bool,
    /// This is the first line held back in its window: write the summary when it ends, at this
    /// instant (if no later line does it first).
    pub flush_at: Option<Instant>,
}

/// One kind of throttled line.
pub struct Throttle {
    what: &'static str,
    started: Option<Instant>,
    shown: u32,
    held: u32,
    addresses: HashSet<IpAddr>,
    reasons: BTreeMap<&'static str, u32>,
}

impl Throttle {
    /// A throttle for lines about `what` (a plural noun: "refused joins").
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            started: None,
            shown: 0,
            held: 0,
            addresses: HashSet::new(),
            reasons: BTreeMap::new(),
        }
    }

    /// Decides about a line caused by `from`, for `reason` (a short fixed word).
    pub fn line(&mut self, now: Instant, from: IpAddr, reason: &'static str) -> Verdict {
        let summary = match self.started {
            Some(t) if now.duration_since(t) >= WINDOW => self.flush(),
            _ => None,
        };
        let started = *self.started.get_or_insert(now);
        if self.shown < LINES_PER_WINDOW {
            self.shown += 1;
            return Verdict {
                summary,
                show: true,
                flush_at: None,
            };
        }
        self.held += 1;
        if self.addresses.len() < MAX_COUNTED_ADDRESSES {
            self.addresses.insert(from);
        }
        let key = if self.reasons.len() < MAX_COUNTED_REASONS || self.reasons.contains_key(reason) {
            reason
        } else {
            "other"
        };
        *self.reasons.entry(key).or_default() += 1;
        Verdict {
            summary,
            show: false,
            flush_at: (self.held == 1).then_some(started + WINDOW),
        }
    }

    /// Ends the window: its summary, if any line was held back.
    pub fn flush(&mut self) -> Option<String> {
        let held = std::mem::take(&mut self.held);
        self.started = None;
        self.shown = 0;
        let addresses = std::mem::take(&mut self.addresses).len();
        let reasons = std::mem::take(&mut self.reasons);
        if held == 0 {
            return None;
        }
        let more = if addresses >= MAX_COUNTED_ADDRESSES {
            "at least "
        } else {
            ""
        };
        let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        Some(format!(
            "{held} more {} in {} s not shown one by one, from {more}{addresses} address{}: {}",
            self.what,
            WINDOW.as_secs(),
            if addresses == 1 { "" } else { "es" },
            reasons.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn the_first_lines_show_the_rest_are_summarised_once() {
        let mut t = Throttle::new("refused joins");
        let start = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert!(t.line(start, A, "bad_proof").show);
        }
        let held = t.line(start, A, "bad_proof");
        assert!(!held.show);
        assert_eq!(held.flush_at, Some(start + WINDOW));
        for i in 0..1000 {
            let v = t.line(start + Duration::from_millis(i), B, "bad_key");
            assert_eq!(
                v,
                Verdict {
                    summary: None,
                    show: false,
                    flush_at: None
                }
            );
        }
        assert_eq!(
            t.flush().unwrap(),
            "1001 more refused joins in 60 s not shown one by one, from 2 addresses: bad_key 1000, bad_proof 1"
        );
        assert_eq!(t.flush(), None, "summarised once");
        assert!(t.line(start + WINDOW, A, "bad_proof").show, "a new window");
    }

    #[test]
    fn a_line_after_the_window_brings_its_summary() {
        let mut t = Throttle::new("errors");
        let start = Instant::now();
        for _ in 0..=LINES_PER_WINDOW {
            t.line(start, A, "protocol");
        }
        let v = t.line(start + WINDOW, A, "protocol");
        assert!(v.show);
        assert!(v.summary.unwrap().starts_with("1 more errors in 60 s"));
    }

    #[test]
    fn counted_addresses_and_reasons_are_bounded() {
        let mut t = Throttle::new("errors");
        let start = Instant::now();
        for n in 0..10_000u32 {
            let reason = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][n as usize % 10];
            t.line(start, IpAddr::V4(n.into()), reason);
        }
        assert_eq!(t.addresses.len(), MAX_COUNTED_ADDRESSES);
        assert!(t.reasons.len() <= MAX_COUNTED_REASONS + 1);
        assert!(t.flush().unwrap().contains("from at least 256 addresses"));
    }
}

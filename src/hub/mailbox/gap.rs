//! What was dropped from a mailbox and not yet reported: counted by type and as runs of `seq`,
//! so that frames the member had received before they were dropped are not reported.

use std::collections::BTreeMap;

/// Runs of dropped frames remembered per mailbox, to tell which the member had received.
pub const MAX_GAP_RUNS: usize = 256;

/// Frames dropped from a mailbox and not yet reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Gap {
    /// How many.
    pub dropped: u64,
    /// How many of each `type`.
    pub kinds: BTreeMap<String, u64>,
    /// First dropped `seq`.
    pub first: u64,
    /// Last dropped `seq`.
    pub last: u64,
    /// The dropped frames as runs of consecutive `seq` of one type, while there are at most
    /// [`MAX_GAP_RUNS`] (`None` past that).
    runs: Option<Vec<(u64, u64, &'static str)>>,
}

impl Gap {
    pub(super) fn record(&mut self, seq: u64, kind: &'static str) {
        if self.dropped == 0 {
            self.first = seq;
            self.runs = Some(Vec::new());
        }
        self.dropped += 1;
        self.last = seq;
        *self.kinds.entry(kind.to_string()).or_default() += 1;
        if let Some(runs) = &mut self.runs {
            let extends = runs
                .last()
                .is_some_and(|&(_, last, k)| k == kind && last + 1 == seq);
            if extends {
                if let Some(run) = runs.last_mut() {
                    run.1 = seq;
                }
            } else if runs.len() < MAX_GAP_RUNS {
                runs.push((seq, seq, kind));
            } else {
                self.runs = None;
            }
        }
    }

    /// Forgets the frames up to `since`: the member received them before they were dropped
    /// (they were in flight when its connection was closed).
    pub(super) fn received(&mut self, since: u64) {
        if since < self.first {
            return;
        }
        let Some(runs) = self.runs.take() else {
            if since >= self.last {
                *self = Gap::default();
            }
            return;
        };
        let mut kept = Vec::new();
        for (first, last, kind) in runs {
            if since >= first {
                let got = since.min(last) - first + 1;
                self.dropped -= got;
                let count = self.kinds.get_mut(kind).expect("counted when dropped");
                *count -= got;
                if *count == 0 {
                    self.kinds.remove(kind);
                }
            }
            if last > since {
                kept.push((first.max(since + 1), last, kind));
            }
        }
        match kept.first() {
            Some(&(first, ..)) => {
                self.first = first;
                self.runs = Some(kept);
            }
            None => *self = Gap::default(),
        }
    }
}

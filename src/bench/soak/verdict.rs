//! What a soak measured and its verdict: the server's resident memory, open file descriptors and
//! threads sampled over the run, their least-squares slope over the second half (after warm-up),
//! the counts of every part of the mix, and the failures that make the run exit non-zero (a loss
//! or a duplicate for a member that stayed, more threads at the end than after warm-up, a part of
//! the mix that did not behave as the protocol says).

use std::collections::BTreeMap;

/// One reading of the server's `/proc`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the soak started.
    pub secs: f64,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
}

/// How one figure went over the second half of the soak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// At the first sample of the second half.
    pub start: u64,
    /// At the last sample.
    pub end: u64,
    /// Least-squares slope over the second half, per minute.
    pub per_minute: f64,
}

/// The least-squares slope of `points` (seconds, value), per minute; none for fewer than two
/// distinct times.
pub fn slope_per_minute(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, v) in points {
        num += (t - mean_t) * (v - mean_v);
        den += (t - mean_t) * (t - mean_t);
    }
    (den > 0.0).then(|| num / den * 60.0)
}

/// The samples of the second half (after warm-up): from half the last sample's time on.
pub fn second_half(samples: &[Sample]) -> &[Sample] {
    let Some(last) = samples.last() else {
        return samples;
    };
    let from = samples
        .iter()
        .position(|s| s.secs >= last.secs / 2.0)
        .unwrap_or(0);
    &samples[from..]
}

/// The trend of one figure over the second half.
pub fn trend(samples: &[Sample], figure: impl Fn(&Sample) -> u64) -> Option<Trend> {
    let half = second_half(samples);
    let points: Vec<(f64, f64)> = half.iter().map(|s| (s.secs, figure(s) as f64)).collect();
    Some(Trend {
        start: figure(half.first()?),
        end: figure(half.last()?),
        per_minute: slope_per_minute(&points)?,
    })
}

/// Thread growth: more threads at any point of the second half than at any point of the first
/// (the server's threads are made at start; a task or thread per connection would show here).
pub fn thread_growth(samples: &[Sample]) -> Option<String> {
    let half = second_half(samples);
    let first = &samples[..samples.len() - half.len()];
    let before = first.iter().map(|s| s.threads).max()?;
    let after = half.iter().map(|s| s.threads).max()?;
    (after > before).then(|| {
        format!("the server's threads grew from at most {before} in the first half to {after}")
    })
}

/// Counts of one part of the mix, by what happened (`joined`, `left`, `kicked` …).
pub type Counts = BTreeMap<&'static str, u64>;

/// What a soak measured.
#[derive(Debug, Default)]
pub struct SoakReport {
    /// Minutes asked for.
    pub minutes: f64,
    /// Key size of the members.
    pub bits: usize,
    /// The server's URL.
    pub url: String,
    /// Members that stayed, of them senders.
    pub core: usize,
    /// Of the members that stayed, those who send.
    pub core_senders: usize,
    /// Messages they sent (`@all` and direct).
    pub core_sent: u64,
    /// Of them, direct.
    pub core_direct: u64,
    /// Messages of the others the server accepted (acknowledged): every member that stayed must
    /// get them too.
    pub others_accepted: u64,
    /// Deliveries owed to the members that stayed.
    pub expected: u64,
    /// Of them, received (once).
    pub received: u64,
    /// Owed but never received.
    pub lost: u64,
    /// Received more than once (after dropping repeats by `seq`).
    pub duplicated: u64,
    /// Messages `gap` frames said were dropped for them.
    pub gap_messages: u64,
    /// Direct messages delivered to the wrong member, or ids never sent.
    pub misrouted: u64,
    /// Ids never sent.
    pub unknown: u64,
    /// Cuts of the members that stayed (TCP cut, resume).
    pub cuts: u64,
    /// Their ways back, and of them the resumed ones.
    pub resumes: (u64, u64),
    /// Latency of the members' deliveries, p50 and p99, ms.
    pub latency_ms: (f64, f64),
    /// Errors the members that stayed were sent, by code.
    pub errors: BTreeMap<String, u64>,
    /// `left` frames a member that stayed saw, by reason.
    pub left_seen: BTreeMap<String, u64>,
    /// Joins of every member (resumes included), and per second of the soak.
    pub joins: u64,
    /// Visitors.
    pub visitors: Counts,
    /// Kicks by the admin's web seat.
    pub kicks: Counts,
    /// The slow reader's rounds.
    pub slow: Counts,
    /// The flooder's bursts.
    pub flood: Counts,
    /// The server's `/proc` over the run.
    pub samples: Vec<Sample>,
    /// Seconds between samples.
    pub sample_every: f64,
    /// Why the run failed (empty: it passed).
    pub failures: Vec<String>,
    /// Whether the server stopped when asked.
    pub server_stopped: Option<bool>,
}

impl SoakReport {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Adds the failures the figures show: losses, duplicates, unknown or misrouted messages for
    /// the members that stayed, and thread growth.
    pub fn judge(&mut self) {
        if self.lost > 0 {
            self.failures.push(format!(
                "{} deliveries to members that stayed were lost",
                self.lost
            ));
        }
        if self.duplicated > 0 {
            self.failures.push(format!(
                "{} deliveries to members that stayed came twice",
                self.duplicated
            ));
        }
        if self.misrouted + self.unknown > 0 {
            self.failures.push(format!(
                "{} misrouted and {} unknown messages reached members that stayed",
                self.misrouted, self.unknown
            ));
        }
        if self.gap_messages > 0 {
            self.failures.push(format!(
                "{} messages were dropped from the mailboxes of members that stayed",
                self.gap_messages
            ));
        }
        if let Some(why) = thread_growth(&self.samples) {
            self.failures.push(why);
        }
    }
}

/// The first sample of every minute (and the last), for the report.
pub fn by_minute(samples: &[Sample]) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    for s in samples {
        let minute = (s.secs / 60.0).floor();
        if out.last().is_none_or(|l| (l.secs / 60.0).floor() < minute) {
            out.push(*s);
        }
    }
    if let (Some(last), Some(kept)) = (samples.last(), out.last()) {
        if kept != last {
            out.push(*last);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, f: impl Fn(usize) -> (u64, u64, u64)) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let (rss_kib, fds, threads) = f(i);
                Sample {
                    secs: i as f64 * 6.0,
                    rss_kib,
                    fds,
                    threads,
                }
            })
            .collect()
    }

    #[test]
    fn the_slope_of_a_line_is_found_per_minute() {
        // 10 KiB more every 6 s: 100 KiB a minute.
        let s = series(100, |i| (1000 + 10 * i as u64, 20, 8));
        let rss = trend(&s, |s| s.rss_kib).unwrap();
        assert!((rss.per_minute - 100.0).abs() < 1e-6, "{rss:?}");
        assert_eq!((rss.start, rss.end), (1000 + 10 * 50, 1000 + 10 * 99));
        let fds = trend(&s, |s| s.fds).unwrap();
        assert_eq!(fds.per_minute, 0.0);
        assert_eq!(slope_per_minute(&[(1.0, 5.0)]), None);
        assert_eq!(slope_per_minute(&[(1.0, 5.0), (1.0, 6.0)]), None);
    }

    #[test]
    fn warm_up_growth_is_left_out_of_the_slope() {
        // Grows for the first half, flat after (with noise that cancels out).
        let s = series(100, |i| {
            let rss = if i < 50 { 1000 + 100 * i as u64 } else { 6000 };
            (rss + (i % 2) as u64 * 8, 30, 8)
        });
        let rss = trend(&s, |s| s.rss_kib).unwrap();
        assert!(rss.per_minute.abs() < 1.0, "{rss:?}");
    }

    #[test]
    fn threads_that_grow_fail_the_run_and_steady_ones_do_not() {
        let steady = series(40, |i| (1000, 20 + (i % 3) as u64, 6 + (i % 2) as u64));
        assert_eq!(thread_growth(&steady), None);
        let growing = series(40, |i| (1000, 20, 6 + i as u64 / 10));
        let why = thread_growth(&growing).unwrap();
        assert!(
            why.contains("from at most 7") && why.contains("to 9"),
            "{why}"
        );
        let mut r = SoakReport {
            samples: growing,
            ..SoakReport::default()
        };
        r.judge();
        assert!(!r.passed());
        assert!(r
            .to_string()
            .contains("FAIL          the server's threads grew"));
        assert!(r.to_string().contains("passed=false"));
    }

    #[test]
    fn one_sample_a_minute_and_the_last() {
        let s = series(25, |i| (i as u64, 0, 0));
        let m: Vec<f64> = by_minute(&s).iter().map(|s| s.secs).collect();
        assert_eq!(m, [0.0, 60.0, 120.0, 144.0]);
        assert!(by_minute(&[]).is_empty());
    }

    #[test]
    fn a_loss_or_a_duplicate_fails_the_run() {
        let mut r = SoakReport {
            samples: series(10, |_| (1000, 20, 6)),
            ..SoakReport::default()
        };
        r.judge();
        assert!(r.passed(), "{r}");
        assert!(r.to_string().contains("verdict       PASS"));
        r.lost = 1;
        r.duplicated = 2;
        r.judge();
        assert_eq!(r.failures.len(), 2, "{r}");
        assert!(r
            .to_string()
            .contains("1 deliveries to members that stayed were lost"));
        assert!(r.to_string().contains("lost=1 duplicated=2"));
    }
}

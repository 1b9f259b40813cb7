//! The soak's report for people (aligned lines) and scripts (one `result:` line).

use std::fmt;

use super::verdict::{by_minute, trend, Counts, Sample, SoakReport, Trend};

fn counts(c: &Counts) -> String {
    let parts: Vec<String> = c.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn trend_line(t: Option<Trend>, unit: &str) -> String {
    match t {
        Some(t) => format!(
            "{} → {} {unit}, slope {:+.1} {unit}/min",
            t.start, t.end, t.per_minute
        ),
        None => "not read".into(),
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        writeln!(
            f,
            "soak          {} min against {} ({}-bit keys)",
            r.minutes, r.url, r.bits
        )?;
        writeln!(
            f,
            "staying       {} members ({} send): {} messages ({} direct), {} from others accepted",
            r.core, r.core_senders, r.core_sent, r.core_direct, r.others_accepted
        )?;
        writeln!(
            f,
            "deliveries    expected {}, received {}, lost {}, duplicated {}, gap {}, misrouted {}, unknown {}",
            r.expected, r.received, r.lost, r.duplicated, r.gap_messages, r.misrouted, r.unknown
        )?;
        writeln!(
            f,
            "latency       p50 {:.1} ms, p99 {:.1} ms",
            r.latency_ms.0, r.latency_ms.1
        )?;
        writeln!(
            f,
            "cuts          {} (back {}, resumed {})",
            r.cuts, r.resumes.0, r.resumes.1
        )?;
        writeln!(
            f,
            "joins         {} ({:.1} per second, resumes and refused ones included)",
            r.joins,
            r.joins as f64 / (r.minutes * 60.0)
        )?;
        writeln!(f, "visitors      {}", counts(&r.visitors))?;
        writeln!(f, "kicks         {}", counts(&r.kicks))?;
        writeln!(f, "slow reader   {}", counts(&r.slow))?;
        writeln!(f, "flood         {}", counts(&r.flood))?;
        let left: Vec<String> = r
            .left_seen
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(f, "left seen     {}", left.join(", "))?;
        if !r.errors.is_empty() {
            let e: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(f, "errors        {}", e.join(", "))?;
        }
        let (first, last) = (r.samples.first(), r.samples.last());
        writeln!(
            f,
            "samples       {} every {:.2} s; second half (after warm-up):",
            r.samples.len(),
            r.sample_every
        )?;
        let rss = trend(&r.samples, |s| s.rss_kib);
        let fds = trend(&r.samples, |s| s.fds);
        writeln!(f, "  server RSS  {}", trend_line(rss, "KiB"))?;
        writeln!(f, "  server fds  {}", trend_line(fds, "fds"))?;
        if let (Some(a), Some(b)) = (first, last) {
            writeln!(
                f,
                "  whole run   RSS {} → {} KiB, fds {} → {}, threads {} → {} (max {})",
                a.rss_kib,
                b.rss_kib,
                a.fds,
                b.fds,
                a.threads,
                b.threads,
                r.samples.iter().map(|s| s.threads).max().unwrap_or(0)
            )?;
        }
        let minutes = by_minute(&r.samples);
        if minutes.len() > 2 {
            let line = |f: fn(&Sample) -> u64| {
                minutes
                    .iter()
                    .map(|s| f(s).to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            writeln!(f, "  each minute RSS KiB {}", line(|s| s.rss_kib))?;
            writeln!(f, "  each minute fds {}", line(|s| s.fds))?;
        }
        if let Some(stopped) = r.server_stopped {
            writeln!(
                f,
                "server        {}",
                if stopped {
                    "stopped on /quit"
                } else {
                    "killed"
                }
            )?;
        }
        if r.passed() {
            writeln!(f, "verdict       PASS")?;
        } else {
            for why in &r.failures {
                writeln!(f, "FAIL          {why}")?;
            }
        }
        write!(
            f,
            "result: soak_minutes={} lost={} duplicated={} expected={} rss_slope_kib_min={:.1} fds_slope_min={:.2} threads_end={} passed={}",
            r.minutes,
            r.lost,
            r.duplicated,
            r.expected,
            rss.map_or(f64::NAN, |t| t.per_minute),
            fds.map_or(f64::NAN, |t| t.per_minute),
            last.map_or(0, |s| s.threads),
            r.passed()
        )
    }
}

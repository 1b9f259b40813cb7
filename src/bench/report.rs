//! What a run measured, printed for people (aligned lines) and for scripts (one `result:` line of
//! `key=value` pairs).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::churn::Back;
use super::proc::Memory;
use super::tally::{self, Tally};
use super::{Mode, Plan};

/// The report of a run.
pub enum Report {
    /// A load run.
    Load(Box<LoadReport>),
    /// Start-up timings.
    Startup(super::startup::StartupReport),
    /// A soak.
    Soak(Box<super::soak::verdict::SoakReport>),
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Load(r) => r.fmt(f),
            Report::Startup(r) => r.fmt(f),
            Report::Soak(r) => r.fmt(f),
        }
    }
}

/// Median, 99th percentile and maximum of some durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Maximum.
    pub max: Duration,
}

impl Summary {
    /// Summarizes `d`, if not empty.
    pub fn of(d: &[Duration]) -> Option<Self> {
        if d.is_empty() {
            return None;
        }
        let mut v = d.to_vec();
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            p50: at(0.5),
            p99: at(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// What a load run measured.
pub struct LoadReport {
    /// The plan.
    pub plan: Plan,
    /// The server's URL.
    pub url: String,
    /// Server memory once started, before anyone joined.
    pub idle: Option<Memory>,
    /// Server memory once every member had joined.
    pub joined: Option<Memory>,
    /// Server memory at the end.
    pub end: Option<Memory>,
    /// Wall time of all joins.
    pub join_wall: Duration,
    /// Each join, connection to welcome.
    pub join_each: Option<Summary>,
    /// Each light join, join sent to welcome (the server's part).
    pub join_server: Option<Summary>,
    /// Server CPU seconds spent during the joins.
    pub join_server_cpu: Option<f64>,
    /// Server CPU seconds over the first `TAIL_JOINS` joins.
    pub join_cpu_first: Option<f64>,
    /// Server CPU seconds over the last `TAIL_JOINS` joins.
    pub join_cpu_last: Option<f64>,
    /// Bytes of the last light member's welcome.
    pub welcome_bytes: Option<usize>,
    /// Messages sent.
    pub sent: u64,
    /// Worst lateness of a send against its schedule.
    pub send_lag_max: Duration,
    /// Sends more than 10 ms late.
    pub late_sends: u64,
    /// Why a sender stopped early.
    pub send_errors: Vec<String>,
    /// Deliveries expected for the messages sent.
    pub expected: u64,
    /// Deliveries counted (once each).
    pub delivered: u64,
    /// Deliveries received twice or more.
    pub duplicated: u64,
    /// Direct messages delivered to the wrong member.
    pub misrouted: u64,
    /// Broken delivery frames.
    pub malformed: u64,
    /// Deliveries of ids never sent.
    pub unknown: u64,
    /// Acks received by senders.
    pub acks: u64,
    /// Messages opened and verified by auditors.
    pub opened: u64,
    /// Messages auditors refused.
    pub rejected: u64,
    /// Errors from the server, by code.
    pub errors: BTreeMap<String, u64>,
    /// Connections that ended early, and the first reasons.
    pub closed: u64,
    /// The first reasons connections ended early.
    pub closed_why: Vec<String>,
    /// End-to-end latency, µs.
    pub latency: Histogram<u32>,
    /// When the first message was due.
    pub t0: Option<Instant>,
    /// When the last delivery arrived.
    pub last: Option<Instant>,
    /// When the wait for deliveries ended.
    pub finished: Instant,
    /// Server CPU seconds over the timed phase.
    pub server_cpu: Option<f64>,
    /// Load generator CPU seconds over the timed phase.
    pub client_cpu: Option<f64>,
    /// `@all` lines the server's prompt showed.
    pub prompt_all_lines: Option<u64>,
    /// Times the prompt said it fell behind.
    pub prompt_behind: u64,
    /// When the prompt showed its last `@all` line.
    pub prompt_last: Option<Instant>,
    /// `@all` lines in the transcript.
    pub transcript_all_lines: Option<u64>,
    /// Whether the child server stopped cleanly on `/quit`.
    pub server_stopped: Option<bool>,
    /// Lines worth a look from the server's prompt.
    pub notes: Vec<String>,
    /// Connections cut with `--churn`.
    pub cuts: Option<u64>,
    /// Members away with `--away`.
    pub away_members: usize,
    /// Server memory with the members away, before the sending.
    pub away_before: Option<Memory>,
    /// Server memory once every message was taken, the away members' mailboxes full.
    pub away_full: Option<Memory>,
    /// Frames dropped by `seq` as already received (sent again after a resume).
    pub repeats: u64,
    /// Latency of deliveries that came in a replay, µs.
    pub replay_latency: Histogram<u32>,
    /// Every way back after a cut.
    pub backs: Vec<Back>,
    /// `gap` frames received.
    pub gaps: u64,
    /// Frames the `gap` frames said were dropped.
    pub gap_dropped: u64,
    /// Of them, messages.
    pub gap_messages: u64,
    /// Connections the server ended after which the member came back.
    pub reopened: u64,
    /// The first reasons.
    pub reopened_why: Vec<String>,
}

impl LoadReport {
    /// Server CPU per join in ms, over `TAIL_JOINS` joins (or all, if fewer).
    fn join_cpu_each_ms(&self, cpu: Option<f64>) -> Option<f64> {
        let n = super::members::TAIL_JOINS
            .min(self.plan.args.members)
            .max(1);
        cpu.map(|c| c * 1000.0 / n as f64)
    }

    /// The line on what joins cost the server at each end of the run, and the last welcome.
    fn fmt_join_cpu(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(first), Some(last)) = (
            self.join_cpu_each_ms(self.join_cpu_first),
            self.join_cpu_each_ms(self.join_cpu_last),
        ) else {
            return Ok(());
        };
        let n = super::members::TAIL_JOINS.min(self.plan.args.members);
        write!(
            f,
            "join CPU     server {first:.3} ms per join over the first {n}, {last:.3} ms over the last {n}"
        )?;
        if let Some(b) = self.welcome_bytes {
            write!(f, "; the last welcome {b} bytes")?;
        }
        writeln!(f)
    }
}

impl LoadReport {
    /// An empty report for `plan`.
    pub fn new(plan: &Plan, url: &str) -> Self {
        Self {
            plan: plan.clone(),
            url: url.to_string(),
            idle: None,
            joined: None,
            end: None,
            join_wall: Duration::ZERO,
            join_each: None,
            join_server: None,
            join_server_cpu: None,
            join_cpu_first: None,
            join_cpu_last: None,
            welcome_bytes: None,
            sent: 0,
            send_lag_max: Duration::ZERO,
            late_sends: 0,
            send_errors: Vec::new(),
            expected: 0,
            delivered: 0,
            duplicated: 0,
            misrouted: 0,
            malformed: 0,
            unknown: 0,
            acks: 0,
            opened: 0,
            rejected: 0,
            errors: BTreeMap::new(),
            closed: 0,
            closed_why: Vec::new(),
            latency: tally::histogram(),
            t0: None,
            last: None,
            finished: Instant::now(),
            server_cpu: None,
            client_cpu: None,
            prompt_all_lines: None,
            prompt_behind: 0,
            prompt_last: None,
            transcript_all_lines: None,
            server_stopped: None,
            notes: Vec::new(),
            cuts: None,
            away_members: 0,
            away_before: None,
            away_full: None,
            repeats: 0,
            replay_latency: tally::histogram(),
            backs: Vec::new(),
            gaps: 0,
            gap_dropped: 0,
            gap_messages: 0,
            reopened: 0,
            reopened_why: Vec::new(),
        }
    }

    /// Adds one member's tally.
    pub fn add(&mut self, t: Tally) {
        self.delivered += t.unique;
        self.duplicated += t.duplicated;
        self.misrouted += t.misrouted;
        self.malformed += t.malformed;
        self.unknown += t.unknown;
        self.acks += t.acks;
        self.opened += t.opened;
        self.rejected += t.rejected;
        for (code, n) in t.errors {
            *self.errors.entry(code).or_default() += n;
        }
        if let Some(why) = t.closed {
            self.closed += 1;
            if self.closed_why.len() < 3 {
                self.closed_why.push(why);
            }
        }
        let _ = self.latency.add(&t.latency);
        let _ = self.replay_latency.add(&t.replay_latency);
        self.last = self.last.max(t.last);
        self.repeats += t.repeats;
        self.backs.extend(t.backs);
        self.gaps += t.gaps;
        self.gap_dropped += t.gap_dropped;
        self.gap_messages += t.gap_messages;
        self.reopened += t.reopened.len() as u64;
        for why in t.reopened {
            if self.reopened_why.len() < 3 && !self.reopened_why.contains(&why) {
                self.reopened_why.push(why);
            }
        }
    }

    /// A quantile of the latency of replayed deliveries, in milliseconds.
    pub fn replay_latency_ms(&self, q: f64) -> Option<f64> {
        (!self.replay_latency.is_empty())
            .then(|| self.replay_latency.value_at_quantile(q) as f64 / 1000.0)
    }

    /// Server memory per away member with its mailbox full, KiB.
    pub fn away_kib_each(&self) -> Option<f64> {
        let (before, full) = (self.away_before?, self.away_full?);
        (self.away_members > 0)
            .then(|| (full.rss_kib as f64 - before.rss_kib as f64) / self.away_members as f64)
    }

    /// Ways back after a cut: cut (or told) → welcome, and welcome → last replayed frame.
    pub fn back_times(&self) -> (Option<Summary>, Option<Summary>) {
        let rejoin: Vec<Duration> = self.backs.iter().map(|b| b.rejoin).collect();
        let replay: Vec<Duration> = self.backs.iter().map(|b| b.replay).collect();
        (Summary::of(&rejoin), Summary::of(&replay))
    }

    /// Frames replayed in all.
    pub fn replayed_frames(&self) -> u64 {
        self.backs.iter().map(|b| b.frames).sum()
    }

    /// Adds one sender's result.
    pub fn add_sent(&mut self, count: u64, lag: Duration, late: u64, error: Option<String>) {
        self.sent += count;
        self.send_lag_max = self.send_lag_max.max(lag);
        self.late_sends += late;
        self.send_errors.extend(error);
    }

    /// Deliveries missing.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// From the first due send to the last delivery.
    pub fn active(&self) -> Option<Duration> {
        Some(self.last?.saturating_duration_since(self.t0?))
    }

    /// Deliveries per second over the active time.
    pub fn deliveries_per_sec(&self) -> Option<f64> {
        let secs = self.active()?.as_secs_f64();
        (secs > 0.0).then(|| self.delivered as f64 / secs)
    }

    /// A latency quantile in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q) as f64 / 1000.0)
    }

    /// Server CPU microseconds per delivery.
    pub fn server_us_per_delivery(&self) -> Option<f64> {
        per_delivery(self.server_cpu, self.delivered)
    }

    fn client_us_per_delivery(&self) -> Option<f64> {
        per_delivery(self.client_cpu, self.delivered)
    }

    fn per_member_kib(&self) -> Option<f64> {
        let (idle, joined) = (self.idle?, self.joined?);
        Some((joined.rss_kib as f64 - idle.rss_kib as f64) / self.plan.args.members as f64)
    }
}

fn per_delivery(cpu: Option<f64>, delivered: u64) -> Option<f64> {
    (delivered > 0).then_some(cpu? * 1e6 / delivered as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.plan.args;
        let kind = if a.bare {
            "bare relay, raw frames"
        } else if self.plan.raw {
            "raw frames"
        } else {
            "sealed"
        };
        let mode = match a.mode {
            Mode::All => "@all",
            Mode::Direct => "direct",
            Mode::Group => "group",
        };
        writeln!(
            f,
            "dyspatcher bench: {} members, {} {mode} msg/s for {} s from {} senders, {}-byte texts, {kind}, {}",
            a.members, a.rate, a.seconds, self.plan.senders, a.bytes, self.url
        )?;
        write!(
            f,
            "joins        {} one after another in {:.3} s",
            a.members,
            self.join_wall.as_secs_f64()
        )?;
        if let Some(s) = self.join_each {
            write!(f, "; each p50 {}, max {}", ms(s.p50), ms(s.max))?;
        }
        if let Some(s) = self.join_server {
            write!(
                f,
                "; join sent → welcome p50 {}, max {}",
                ms(s.p50),
                ms(s.max)
            )?;
        }
        writeln!(f)?;
        self.fmt_join_cpu(f)?;
        if let (Some(idle), Some(joined)) = (self.idle, self.joined) {
            writeln!(
                f,
                "server RSS   idle {}; with {} members {} ({} KiB each); {} threads",
                mib(idle.rss_kib),
                a.members,
                mib(joined.rss_kib),
                opt(self.per_member_kib(), 1),
                joined.threads
            )?;
        }
        if let Some(end) = self.end {
            writeln!(
                f,
                "             at the end {}, peak {}",
                mib(end.rss_kib),
                mib(end.peak_kib)
            )?;
        }
        if a.seconds > 0 {
            self.fmt_load(f)?;
        }
        write!(
            f,
            "result: members={} senders={} mode={mode} rate={} seconds={} bytes={} kind={} \
             join_s={:.3} join_cpu_s={} idle_kib={} joined_kib={} per_member_kib={} peak_kib={} sent={} \
             expected={} delivered={} lost={} dup={} dps={} p50_ms={} p99_ms={} max_ms={} \
             server_cpu_s={} server_us={} client_us={} prompt={} errors={} closed={}",
            a.members,
            self.plan.senders,
            a.rate,
            a.seconds,
            a.bytes,
            kind.replace([' ', ','], "_"),
            self.join_wall.as_secs_f64(),
            opt(self.join_server_cpu, 2),
            self.idle.map_or(0, |m| m.rss_kib),
            self.joined.map_or(0, |m| m.rss_kib),
            opt(self.per_member_kib(), 1),
            self.end.map_or(0, |m| m.peak_kib),
            self.sent,
            self.expected,
            self.delivered,
            self.lost(),
            self.duplicated,
            opt(self.deliveries_per_sec(), 0),
            opt(self.latency_ms(0.5), 2),
            opt(self.latency_ms(0.99), 2),
            opt(self.latency_ms(1.0), 2),
            opt(self.server_cpu, 2),
            opt(self.server_us_per_delivery(), 3),
            opt(self.client_us_per_delivery(), 3),
            self.prompt_all_lines.map_or("-".into(), |n| n.to_string()),
            self.errors.values().sum::<u64>(),
            self.closed
        )?;
        write!(
            f,
            " join_first_ms={} join_last_ms={} welcome_bytes={}",
            opt(self.join_cpu_each_ms(self.join_cpu_first), 3),
            opt(self.join_cpu_each_ms(self.join_cpu_last), 3),
            self.welcome_bytes.map_or("-".into(), |b| b.to_string()),
        )?;
        let (rejoin, replay) = self.back_times();
        let ms_of = |s: Option<Summary>, pick: fn(&Summary) -> Duration| {
            opt(s.map(|s| pick(&s).as_secs_f64() * 1000.0), 2)
        };
        write!(
            f,
            " churn={} cuts={} backs={} not_resumed={} cut_short={} replayed={} repeats={} replay_p50_ms={} \
             replay_p99_ms={} rejoin_p50_ms={} rejoin_max_ms={} replay_time_p50_ms={} \
             replay_time_max_ms={} away={} away_kib_each={} gaps={} gap_dropped={} gap_messages={} reopened={}",
            a.churn,
            self.cuts.unwrap_or(0),
            self.backs.len(),
            self.backs.iter().filter(|b| !b.resumed).count(),
            self.backs.iter().filter(|b| !b.replayed).count(),
            self.replayed_frames(),
            self.repeats,
            opt(self.replay_latency_ms(0.5), 2),
            opt(self.replay_latency_ms(0.99), 2),
            ms_of(rejoin, |s| s.p50),
            ms_of(rejoin, |s| s.max),
            ms_of(replay, |s| s.p50),
            ms_of(replay, |s| s.max),
            self.away_members,
            opt(self.away_kib_each(), 1),
            self.gaps,
            self.gap_dropped,
            self.gap_messages,
            self.reopened
        )
    }
}

impl LoadReport {
    fn fmt_load(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent         {} of {} (acked {}); worst send {} behind schedule, {} sends over 10 ms late",
            self.sent,
            self.plan.messages,
            self.acks,
            ms(self.send_lag_max),
            self.late_sends
        )?;
        for e in &self.send_errors {
            writeln!(f, "             a sender stopped: {e}")?;
        }
        write!(
            f,
            "deliveries   {} of {} expected: lost {}, duplicated {}",
            self.delivered,
            self.expected,
            self.lost(),
            self.duplicated
        )?;
        for (what, n) in [
            ("misrouted", self.misrouted),
            ("malformed", self.malformed),
            ("unknown ids", self.unknown),
        ] {
            if n > 0 {
                write!(f, ", {what} {n}")?;
            }
        }
        writeln!(f)?;
        if let (Some(dps), Some(active)) = (self.deliveries_per_sec(), self.active()) {
            writeln!(
                f,
                "throughput   {dps:.0} deliveries/s over {:.2} s ({:.0} messages/s)",
                active.as_secs_f64(),
                self.sent as f64 / active.as_secs_f64()
            )?;
        }
        if !self.latency.is_empty() {
            writeln!(
                f,
                "latency      p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms (from each message's scheduled send)",
                opt(self.latency_ms(0.5), 2),
                opt(self.latency_ms(0.9), 2),
                opt(self.latency_ms(0.99), 2),
                opt(self.latency_ms(0.999), 2),
                opt(self.latency_ms(1.0), 2)
            )?;
        }
        if let Some(cpu) = self.server_cpu {
            writeln!(
                f,
                "server CPU   {cpu:.2} s: {} µs per delivery",
                opt(self.server_us_per_delivery(), 3)
            )?;
        }
        if let Some(cpu) = self.client_cpu {
            writeln!(
                f,
                "members CPU  {cpu:.2} s: {} µs per delivery (this process)",
                opt(self.client_us_per_delivery(), 3)
            )?;
        }
        if self.plan.audit > 0 {
            writeln!(
                f,
                "audit        {} member(s) opened and verified {} messages, refused {}",
                self.plan.audit, self.opened, self.rejected
            )?;
        }
        if let Some(lines) = self.prompt_all_lines {
            write!(f, "prompt       {lines} @all lines shown of {}", self.sent)?;
            if let (Some(p), Some(last)) = (self.prompt_last, self.last) {
                if lines > 0 {
                    let lag = p.saturating_duration_since(last);
                    write!(f, ", the last {} after the last delivery", ms(lag))?;
                }
            }
            if self.prompt_behind > 0 {
                write!(f, "; fell behind {} times", self.prompt_behind)?;
            }
            if let Some(t) = self.transcript_all_lines {
                write!(f, "; transcript {t} lines")?;
            }
            writeln!(f)?;
        }
        self.fmt_churn(f)?;
        if !self.errors.is_empty() {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect();
            writeln!(f, "errors       {}", list.join(", "))?;
        }
        if self.closed > 0 {
            writeln!(
                f,
                "closed       {} connections ended early: {}",
                self.closed,
                self.closed_why.join("; ")
            )?;
        }
        for n in &self.notes {
            writeln!(f, "note         {n}")?;
        }
        Ok(())
    }
}

impl LoadReport {
    fn fmt_churn(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rejoin, replay) = self.back_times();
        let not_resumed = self.backs.iter().filter(|b| !b.resumed).count();
        if let Some(cuts) = self.cuts {
            write!(
                f,
                "churn        {cuts} connections cut ({}/s), {} back",
                self.plan.args.churn,
                self.backs.len()
            )?;
            if let Some(r) = rejoin {
                write!(f, ": cut → welcome p50 {}, max {}", ms(r.p50), ms(r.max))?;
            }
            writeln!(f)?;
        }
        if self.away_members > 0 {
            writeln!(
                f,
                "away         {} members cut off before the sending, {} back one after another",
                self.away_members,
                self.backs.len()
            )?;
            if let (Some(before), Some(full)) = (self.away_before, self.away_full) {
                writeln!(
                    f,
                    "             server RSS with them away {}, with their mailboxes full {}: {} KiB per away member",
                    mib(before.rss_kib),
                    mib(full.rss_kib),
                    opt(self.away_kib_each(), 1)
                )?;
            }
            if let (Some(r), Some(p)) = (rejoin, replay) {
                let frames: Vec<u64> = self.backs.iter().map(|b| b.frames).collect();
                let per = frames.iter().sum::<u64>() / frames.len().max(1) as u64;
                writeln!(
                    f,
                    "             told → welcome p50 {}; welcome → last replayed frame p50 {}, max {} ({per} frames each on average)",
                    ms(r.p50),
                    ms(p.p50),
                    ms(p.max)
                )?;
            }
        }
        if !self.backs.is_empty() || self.repeats > 0 {
            write!(
                f,
                "replay       {} frames replayed after resumes, {} dropped by seq as already received",
                self.replayed_frames(),
                self.repeats
            )?;
            if not_resumed > 0 {
                write!(f, "; {not_resumed} memberships NOT resumed")?;
            }
            let cut_short = self.backs.iter().filter(|b| !b.replayed).count();
            if cut_short > 0 {
                write!(f, "; {cut_short} connections ended during their replay")?;
            }
            writeln!(f)?;
        }
        if !self.replay_latency.is_empty() {
            writeln!(
                f,
                "             {} deliveries came in a replay: p50 {} ms, p99 {} ms, max {} ms (from each message's scheduled send)",
                self.replay_latency.len(),
                opt(self.replay_latency_ms(0.5), 2),
                opt(self.replay_latency_ms(0.99), 2),
                opt(self.replay_latency_ms(1.0), 2)
            )?;
        }
        if self.reopened > 0 {
            writeln!(
                f,
                "reopened     {} connections ended by the server, each member came back: {}",
                self.reopened,
                self.reopened_why.join("; ")
            )?;
        }
        if self.gaps > 0 {
            writeln!(
                f,
                "gaps         {} gap frames: {} frames dropped from mailboxes, {} of them messages",
                self.gaps, self.gap_dropped, self.gap_messages
            )?;
        }
        Ok(())
    }
}

//! The soak (`dyspatcher bench --soak MINUTES`): a server in a child process lives through a mix
//! of everything members do, for minutes, while its memory, file descriptors and threads are
//! sampled. Members that stay exchange `@all` and direct messages at a modest rate and are cut
//! and resume; visitors join, write and leave (or drop and resume, or drop and expire); the
//! admin's web seat kicks members (each tries to come back during its kick); a slow reader stops
//! reading until it is closed as too slow; a flooder goes past the rate limit. Every message owed
//! to a member that stayed must arrive exactly once. Messages are made up with the right shapes
//! and sizes (as `--raw`): the server relays what it cannot read, and the keys are real.

mod actors;
mod print;
mod staying;
pub mod verdict;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use smol::{Executor, Task, Timer};

use super::churn::Churn;
use super::load::{on_threads, start_child};
use super::members::{self, join_light};
use super::messages::{id_bytes, Fake};
use super::receive;
use super::tally::{Shared, Table, Tally, EVERYONE};
use super::wire::{Target, Writer};
use super::{within, BenchError, Plan};
use crate::client::Acks;
use crate::crypto::{self, Identity};
use staying::{core_recipient, sample, send_core};
use verdict::{Counts, SoakReport};

/// Members that stay for the whole soak; the first [`CORE_SENDERS`] of them send.
const CORE: usize = 10;
/// Members that stay and send (never cut: a cut would lose their place in the schedule).
const CORE_SENDERS: usize = 4;
/// Messages per second of the members that stay, all together: well under the rate limit.
const CORE_RATE: f64 = 8.0;
/// Every third message of theirs is direct, the others `@all`.
const DIRECT_EVERY: usize = 3;
/// Cuts of members that stay (receivers), per second.
const CUTS_PER_SEC: u32 = 1;
/// Visitors joining and going in parallel.
const VISITORS: usize = 8;
/// Keys kicked in turn.
const KICK_KEYS: usize = 6;
/// Members in all: those that stay, visitors, kicked, the slow reader, its feeder, the flooder.
const MEMBERS: usize = CORE + VISITORS + KICK_KEYS + 3;
/// The server's rate limit (its default): messages per second per connection, burst twice that.
const RATE_LIMIT: u32 = 20;
/// The server's grace period for away members, so that visitors who drop expire in the soak.
const AWAY_GRACE_SECS: u64 = 10;
/// The server's mailbox bound per endpoint (its smallest): the slow reader is closed sooner.
const MAILBOX_BYTES: usize = 512 * 1024;
/// Longest wait for deliveries still on their way after the soak.
const DRAIN: Duration = Duration::from_secs(30);
/// Largest soak, in minutes.
pub const MAX_MINUTES: f64 = 120.0;

/// What every part of the mix shares.
pub(super) struct Ctx {
    target: Target,
    keys: Vec<Arc<Identity>>,
    admin: Arc<Identity>,
    /// When the mix stops.
    until: Instant,
    /// Length of the soak.
    span: Duration,
    /// Made-up message fields, small and as large as a message may be.
    fake: Fake,
    big: Fake,
    big_next: AtomicUsize,
    /// Table indexes for the messages of members that do not stay, handed out in order.
    extra_first: usize,
    extra_next: AtomicUsize,
    extra_end: usize,
    /// Of them, those the server acknowledged.
    accepted: Mutex<Vec<u32>>,
    /// Counts of each part of the mix.
    counts: Mutex<HashMap<&'static str, Counts>>,
    failures: Mutex<Vec<String>>,
    joins: AtomicU64,
}

impl Ctx {
    fn key_id(&self, i: usize) -> String {
        self.keys[i].public().key_id().to_string()
    }

    /// The next unscheduled message: its table index and its `@all` JSON.
    fn extra(&self) -> Option<(u32, String, String)> {
        let i = self.extra_next.fetch_add(1, Ordering::Relaxed);
        (self.extra_first + i < self.extra_end).then(|| {
            let index = self.extra_first + i;
            let id = self.fake.id(index);
            let json = self.fake.message(&id, 0, i, None, 1, false);
            (index as u32, id, json)
        })
    }

    fn accept(&self, index: u32) {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(index);
    }

    fn count(&self, part: &'static str, what: &'static str) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry(part).or_default().entry(what).or_default() += 1;
    }

    fn add(&self, part: &'static str, what: &'static str, n: u64) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry(part).or_default().entry(what).or_default() += n;
    }

    fn fail(&self, why: String) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < 20 {
            f.push(why);
        }
    }

    fn joined(&self) {
        self.joins.fetch_add(1, Ordering::Relaxed);
    }
}

/// Checks the soak's options (it starts its own server, with the flags it needs).
pub fn check(plan: &Plan) -> Result<(), BenchError> {
    let a = &plan.args;
    let Some(m) = a.soak else { return Ok(()) };
    if !(m > 0.0 && m <= MAX_MINUTES) {
        return Err(BenchError::Option(format!(
            "--soak: minutes above 0 and at most {MAX_MINUTES}"
        )));
    }
    if a.url.is_some() || a.tls || a.bare || a.raw || a.churn > 0 || a.away || a.startup {
        return Err(BenchError::Option(
            "--soak: starts its own server with its own mix; not with --url, --tls, --bare, \
             --raw, --churn, --away or --startup"
                .into(),
        ));
    }
    Ok(())
}

/// Runs the soak of `plan` (`--soak MINUTES`).
pub fn run(plan: &Plan) -> Result<SoakReport, BenchError> {
    let a = &plan.args;
    let minutes = a.soak.unwrap_or(1.0);
    let keys_dir = plan.keys_dir();
    let keys: Vec<Arc<Identity>> = crate::keycache::load_or_make(&keys_dir, MEMBERS, a.bits)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let transcript = std::env::temp_dir().join(format!(
        "dyspatcher-soak-{}-{}.txt",
        std::process::id(),
        crypto::random_id()
    ));
    let extra = [
        ("--away-grace", AWAY_GRACE_SECS.to_string()),
        ("--mailbox-bytes", MAILBOX_BYTES.to_string()),
    ]
    .iter()
    .flat_map(|(f, v)| [f.to_string(), v.clone()])
    .collect::<Vec<_>>();
    let child = start_child(plan, &keys_dir, &transcript, RATE_LIMIT, &extra)?;
    let admin_dir = keys_dir.join(format!("admin-{}", a.bits));
    let admin = crate::keycache::load_or_make(&admin_dir, 1, a.bits)?
        .pop()
        .map(Arc::new)
        .ok_or_else(|| BenchError::Run("no admin key".into()))?;
    let url = format!("ws://{}/ws", child.addr);
    let target = Target::new(&url, None).map_err(BenchError::Run)?;
    let span = Duration::from_secs_f64(minutes * 60.0);
    let pid = child.pid;
    let result = on_threads(|ex| smol::block_on(drive(ex, target, keys, admin, span, pid)));
    let _ = std::fs::remove_file(&transcript);
    let mut report = result?;
    report.minutes = minutes;
    report.bits = a.bits;
    report.url = url;
    report.server_stopped = Some(child.stop(Duration::from_secs(10)));
    report.judge();
    Ok(report)
}

/// Seconds between samples: about two hundred in a run, every 0.25 to 3 s.
fn sample_every(span: Duration) -> Duration {
    Duration::from_secs_f64((span.as_secs_f64() / 200.0).clamp(0.25, 3.0))
}

async fn drive(
    ex: Arc<Executor<'static>>,
    target: Target,
    keys: Vec<Arc<Identity>>,
    admin: Arc<Identity>,
    span: Duration,
    pid: u32,
) -> Result<SoakReport, BenchError> {
    let scheduled = (CORE_RATE * span.as_secs_f64()).ceil() as usize;
    // Room for every message the others can have accepted (visitors, flood bursts).
    // Twice what visitors and flood bursts can write.
    let extras = (span.as_secs_f64() * 20.0).ceil() as usize + 1000;
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let shared = Arc::new(Shared {
        table: OnceLock::new(),
        delivered: AtomicU64::new(0),
        keys_received: AtomicUsize::new(0),
        away_seen: AtomicUsize::new(0),
        acked: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        stop: stop_rx,
    });
    let churn = Churn::new(&target, &keys, MEMBERS, false);
    let mut writers: Vec<Writer> = Vec::new();
    let mut receivers: Vec<Task<Tally>> = Vec::new();
    for (i, key) in keys.iter().enumerate().take(CORE) {
        let j = within(
            Duration::from_secs(30),
            &format!("{} joining", members::name(i)),
            join_light(&target, &members::name(i), Some(key), None),
        )
        .await?;
        let mine = (i >= CORE_SENDERS).then(|| churn.clone());
        if i < CORE_SENDERS {
            writers.push(j.light.writer.clone());
        } else {
            churn.attach(i, j.socket);
        }
        let task = receive::receive(j.light, Acks::after(0), i, shared.clone(), mine);
        receivers.push(ex.spawn(task));
    }
    let fake = Fake::new(100);
    let mut ids = HashMap::with_capacity(scheduled + extras);
    let mut recipient = Vec::with_capacity(scheduled + extras);
    for i in 0..scheduled + extras {
        ids.insert(id_bytes(&fake.id(i)), i as u32);
        recipient.push(match core_recipient(i) {
            Some(r) if i < scheduled => r as u32,
            _ => EVERYONE,
        });
    }
    let t0 = Instant::now() + Duration::from_millis(100);
    let interval_ns = 1e9 / CORE_RATE;
    let _ = shared.table.set(Table {
        ids,
        t0,
        interval_ns,
        messages: scheduled,
        recipient,
    });
    let ctx = Arc::new(Ctx {
        target,
        keys,
        admin,
        until: t0 + span,
        span,
        fake,
        big: Fake::new(crate::protocol::MAX_TEXT),
        big_next: AtomicUsize::new(0),
        extra_first: scheduled,
        extra_next: AtomicUsize::new(0),
        extra_end: scheduled + extras,
        accepted: Mutex::new(Vec::new()),
        counts: Mutex::new(HashMap::new()),
        failures: Mutex::new(Vec::new()),
        joins: AtomicU64::new(CORE as u64),
    });
    let every = sample_every(span);
    let sampler = ex.spawn(sample(pid, t0, ctx.until, every));
    let cut_members: Vec<usize> = (CORE_SENDERS..CORE).collect();
    let cutting = {
        let (churn, until) = (churn.clone(), ctx.until);
        ex.spawn(async move { churn.drive(&cut_members, CUTS_PER_SEC, t0, until).await })
    };
    let senders: Vec<Task<u64>> = writers
        .into_iter()
        .enumerate()
        .map(|(s, w)| ex.spawn(send_core(ctx.clone(), s, w, scheduled)))
        .collect();
    let parts = actors::spawn_all(&ex, &ctx);

    let mut sent = Vec::new();
    for t in senders {
        sent.push(t.await);
    }
    for p in parts {
        if let Err(e) = p.await {
            ctx.fail(e.to_string());
        }
    }
    let cuts = cutting.await;
    let samples = sampler.await;

    // What each member that stayed is owed.
    let sent_index = |i: usize| (i / CORE_SENDERS) < sent[i % CORE_SENDERS] as usize;
    let accepted = ctx
        .accepted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let owed: Vec<Vec<usize>> = (0..CORE)
        .map(|m| {
            let mut v: Vec<usize> = (0..scheduled)
                .filter(|&i| sent_index(i))
                .filter(|&i| match core_recipient(i) {
                    Some(r) => r == m,
                    None => i % CORE_SENDERS != m,
                })
                .collect();
            v.extend(accepted.iter().map(|&i| i as usize));
            v
        })
        .collect();
    let expected: u64 = owed.iter().map(|v| v.len() as u64).sum();
    let until = Instant::now() + DRAIN;
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < until {
        Timer::after(Duration::from_millis(20)).await;
    }
    drop(stop_tx);
    let mut report = SoakReport {
        core: CORE,
        core_senders: CORE_SENDERS,
        core_sent: sent.iter().sum(),
        core_direct: (0..scheduled)
            .filter(|&i| sent_index(i) && core_recipient(i).is_some())
            .count() as u64,
        others_accepted: accepted.len() as u64,
        expected,
        cuts,
        samples,
        sample_every: every.as_secs_f64(),
        ..SoakReport::default()
    };
    let mut latency = super::tally::histogram();
    for (m, r) in receivers.into_iter().enumerate() {
        let t = within(Duration::from_secs(10), "receivers stopping", async {
            Ok(r.await)
        })
        .await?;
        let got = owed[m].iter().filter(|&&i| t.has(i)).count() as u64;
        report.received += got;
        report.lost += owed[m].len() as u64 - got;
        report.duplicated += t.duplicated;
        report.gap_messages += t.gap_messages;
        report.misrouted += t.misrouted;
        report.unknown += t.unknown + t.malformed;
        report.resumes.0 += t.backs.len() as u64;
        report.resumes.1 += t.backs.iter().filter(|b| b.resumed).count() as u64;
        let _ = latency.add(&t.latency);
        for (k, v) in &t.errors {
            *report.errors.entry(k.clone()).or_default() += v;
        }
        if m == 0 {
            report.left_seen = t.left.clone();
        }
        if let Some(why) = t.closed {
            ctx.fail(format!("{} (stays) ended: {why}", members::name(m)));
        }
        if !t.reopened.is_empty() {
            ctx.fail(format!(
                "{} (stays) was closed by the server: {}",
                members::name(m),
                t.reopened.join("; ")
            ));
        }
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    report.latency_ms = (ms(0.5), ms(0.99));
    let counts = ctx.counts.lock().unwrap_or_else(|e| e.into_inner());
    let part = |p: &str| counts.get(p).cloned().unwrap_or_default();
    report.visitors = part("visitors");
    report.kicks = part("kicks");
    report.slow = part("slow");
    report.flood = part("flood");
    report.joins = ctx.joins.load(Ordering::Relaxed) + report.resumes.0;
    report.failures = ctx
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(report)
}

//! The members that stay: the schedule of their messages (which are direct, and for whom), their
//! senders, and the readings of the server's `/proc` taken meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::Timer;

use super::super::members;
use super::super::proc;
use super::super::wire::{self, Writer, OP_TEXT};
use super::verdict::Sample;
use super::{Ctx, CORE, CORE_RATE, CORE_SENDERS, DIRECT_EVERY};

/// The member a scheduled message is for, if it is direct (else it is `@all`).
pub(super) fn core_recipient(i: usize) -> Option<usize> {
    (i % DIRECT_EVERY == DIRECT_EVERY - 1).then(|| {
        let s = i % CORE_SENDERS;
        (s + 1 + (i / DIRECT_EVERY) % (CORE - 1)) % CORE
    })
}

/// Sends member `s`'s scheduled messages (`s`, `s + CORE_SENDERS` …) on time until the soak
/// ends; returns how many were written (the first ones of its share).
pub(super) async fn send_core(ctx: Arc<Ctx>, s: usize, w: Writer, scheduled: usize) -> u64 {
    let t0 = ctx.until - ctx.span;
    let mut count = 0;
    for i in (s..scheduled).step_by(CORE_SENDERS) {
        let due = t0 + Duration::from_secs_f64(i as f64 / CORE_RATE);
        if due >= ctx.until {
            break;
        }
        Timer::at(due).await;
        let id = ctx.fake.id(i);
        let to = core_recipient(i).map(|r| (ctx.key_id(r), ctx.key_id(s)));
        let json = ctx.fake.message(&id, 0, i / CORE_SENDERS, to, 1, false);
        let frame = wire::client_frame(OP_TEXT, json.as_bytes());
        if let Err(e) = wire::send(&mut *w.lock().await, &frame).await {
            ctx.fail(format!("{} (stays) cannot send: {e}", members::name(s)));
            break;
        }
        count += 1;
    }
    count
}

/// Reads the server's memory, open file descriptors and threads every `every` until `until`.
pub(super) async fn sample(pid: u32, t0: Instant, until: Instant, every: Duration) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut at = t0;
    loop {
        Timer::at(at).await;
        let (Some(m), Some(fds)) = (proc::memory(pid), proc::open_fds(pid)) else {
            break;
        };
        out.push(Sample {
            secs: at.saturating_duration_since(t0).as_secs_f64(),
            rss_kib: m.rss_kib,
            fds,
            threads: m.threads,
        });
        if at >= until {
            break;
        }
        at = (at + every).min(until);
    }
    out
}

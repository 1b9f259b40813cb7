//! The parts of the soak's mix besides the members that stay, each bounded and stopping by itself
//! when the soak ends: visitors, kicks from the admin's web seat, the slow reader and its
//! feeder, the flooder. Each checks what the protocol promises it and counts what happened.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::{Executor, Task, Timer};

use super::super::members;
use super::super::peer::{is, Peer, Pumped};
use super::super::BenchError;
use super::{Ctx, AWAY_GRACE_SECS, CORE, KICK_KEYS, VISITORS};

/// First member index of each part.
const VISITOR0: usize = CORE;
const KICKED0: usize = VISITOR0 + VISITORS;
const SLOW: usize = KICKED0 + KICK_KEYS;
const FEEDER: usize = SLOW + 1;
const FLOODER: usize = FEEDER + 1;
/// How long a kick lasts, in minutes (the shortest the protocol allows).
const KICK_MINUTES: u64 = 1;
/// `@all` messages a visitor writes per visit.
const VISIT_WRITES: usize = 2;
/// Pause between two visits of one visitor (keeps joins well under 20 a second in total).
const VISIT_PAUSE: Duration = Duration::from_millis(1500);
/// Messages in one flood burst: past the burst of 40 the server allows.
const FLOOD: usize = 60;
/// Direct messages of the largest size sent to the slow reader in one round: past 1.5 × the
/// 512 KiB mailbox bound.
const FEED: usize = 20;

type Part = Task<Result<(), BenchError>>;

/// Starts every part of the mix.
pub(super) fn spawn_all(ex: &Executor<'static>, ctx: &Arc<Ctx>) -> Vec<Part> {
    let mut parts: Vec<Part> = (0..VISITORS)
        .map(|v| ex.spawn(visitor(ctx.clone(), VISITOR0 + v)))
        .collect();
    parts.push(ex.spawn(kicker(ctx.clone())));
    parts.push(ex.spawn(slow_reader(ctx.clone())));
    parts.push(ex.spawn(flooder(ctx.clone())));
    parts
}

/// A period of the soak's length divided by `parts`, within `min`..`max`.
fn every(ctx: &Ctx, parts: f64, min: f64, max: f64) -> Duration {
    Duration::from_secs_f64((ctx.span.as_secs_f64() / parts).clamp(min, max))
}

/// Writes an `@all` message and waits for its `ack`; an acknowledged one is owed to everyone.
async fn write_all(ctx: &Ctx, peer: &mut Peer, part: &'static str) -> Result<(), BenchError> {
    let Some((index, id, json)) = ctx.extra() else {
        return Ok(());
    };
    peer.send(&json).await?;
    let needle = format!(r#""id":"{id}""#);
    peer.expect("the ack of its message", |p| is(p, "ack", &needle))
        .await?;
    ctx.accept(index);
    ctx.count(part, "messages");
    Ok(())
}

/// Sends `leave` and expects the close 1000.
async fn leave(ctx: &Ctx, mut peer: Peer, part: &'static str) -> Result<(), BenchError> {
    peer.send(r#"{"type":"leave"}"#).await?;
    match peer.closed().await? {
        1000 => {
            ctx.count(part, "left");
            Ok(())
        }
        code => Err(BenchError::Run(format!(
            "{}: leave answered with close {code}, not 1000",
            peer.name
        ))),
    }
}

/// A visitor: joins, writes, and then in turn leaves; drops and resumes, writes and leaves; or
/// drops and stays away until its grace period ends (it expires).
async fn visitor(ctx: Arc<Ctx>, i: usize) -> Result<(), BenchError> {
    let name = members::name(i);
    let key = ctx.keys[i].clone();
    // Visitors start one after another.
    Timer::after(Duration::from_millis(200 * (i - VISITOR0) as u64)).await;
    let mut visit = i;
    while Instant::now() + Duration::from_secs(2) < ctx.until {
        let mut peer = Peer::join(&ctx.target, &name, &key, None).await?;
        ctx.joined();
        ctx.count("visitors", "visits");
        for _ in 0..VISIT_WRITES {
            write_all(&ctx, &mut peer, "visitors").await?;
        }
        match visit % 3 {
            0 => leave(&ctx, peer, "visitors").await?,
            1 => {
                let since = peer.cut();
                let mut back = Peer::join(&ctx.target, &name, &key, Some(since)).await?;
                ctx.joined();
                if !back.welcome.is_some_and(|w| w.resumed) {
                    return Err(BenchError::Run(format!(
                        "{name}: cut and back at once, but not resumed"
                    )));
                }
                ctx.count("visitors", "resumed");
                write_all(&ctx, &mut back, "visitors").await?;
                leave(&ctx, back, "visitors").await?;
            }
            _ => {
                peer.cut();
                ctx.count("visitors", "dropped to expire");
                Timer::at(
                    (Instant::now() + Duration::from_secs(AWAY_GRACE_SECS + 1)).min(ctx.until),
                )
                .await;
            }
        }
        visit += 1;
        Timer::after(VISIT_PAUSE).await;
    }
    Ok(())
}

/// The admin's web seat kicks a member in turn; the kicked member gets `notice` `kicked` and
/// close 4000, and its join during the kick is refused (`banned`, close 4005).
async fn kicker(ctx: Arc<Ctx>) -> Result<(), BenchError> {
    let mut admin = Peer::join(&ctx.target, "soakadmin", &ctx.admin, None).await?;
    ctx.joined();
    let period = every(&ctx, 20.0, 3.0, 30.0);
    let mut last_kick: Vec<Option<Instant>> = vec![None; KICK_KEYS];
    let mut next = Instant::now() + period / 2;
    let mut n = 0;
    loop {
        let k = n % KICK_KEYS;
        // A key is used again once its kick is over.
        if let Some(at) = last_kick[k] {
            next = next.max(at + Duration::from_secs(KICK_MINUTES * 60 + 5));
        }
        if next + Duration::from_secs(1) >= ctx.until {
            break;
        }
        if admin.pump(next, |_| false).await? != Pumped::Deadline {
            return Err(BenchError::Run("the admin's web seat was closed".into()));
        }
        let i = KICKED0 + k;
        let name = members::name(i);
        let mut victim = Peer::join(&ctx.target, &name, &ctx.keys[i], None).await?;
        ctx.joined();
        let order = format!(
            r#"{{"type":"moderate","action":"kick","name":"{name}","minutes":{KICK_MINUTES}}}"#
        );
        admin.send(&order).await?;
        admin
            .expect("the answer to moderate", |p| {
                is(p, "notice", r#""moderated""#)
            })
            .await?;
        last_kick[k] = Some(Instant::now());
        ctx.count("kicks", "kicks");
        victim
            .expect("notice kicked", |p| is(p, "notice", r#""kicked""#))
            .await?;
        match victim.closed().await? {
            4000 => ctx.count("kicks", "closed 4000"),
            code => {
                return Err(BenchError::Run(format!(
                    "{name}: kicked, closed with {code}, not 4000"
                )))
            }
        }
        match Peer::join(&ctx.target, &name, &ctx.keys[i], Some(0)).await {
            Ok(_) => {
                return Err(BenchError::Run(format!(
                    "{name}: came back during its kick"
                )))
            }
            Err(e) if e.to_string().contains(r#""banned""#) => {
                ctx.joined();
                ctx.count("kicks", "back during kick: refused");
            }
            Err(e) => return Err(e),
        }
        n += 1;
        next += period;
    }
    admin.pump(ctx.until, |_| false).await?;
    Ok(())
}

/// Rounds of the slow reader: it joins and stops reading; the feeder sends it the largest direct
/// messages until the server closes it as too slow (4002) and everyone sees it away; it reads
/// what was sent up to the close, resumes, and leaves.
async fn slow_reader(ctx: Arc<Ctx>) -> Result<(), BenchError> {
    let mut feeder =
        Peer::join(&ctx.target, &members::name(FEEDER), &ctx.keys[FEEDER], None).await?;
    ctx.joined();
    let period = every(&ctx, 4.0, 5.0, 120.0);
    let mut next = Instant::now() + period / 3;
    let slow_id = ctx.key_id(SLOW);
    let own = ctx.key_id(FEEDER);
    let name = members::name(SLOW);
    while next + Duration::from_secs(2) < ctx.until {
        feeder.pump(next, |_| false).await?;
        let mut slow = Peer::join(&ctx.target, &name, &ctx.keys[SLOW], None).await?;
        ctx.joined();
        ctx.count("slow", "rounds");
        let mut waiting = Vec::new();
        for _ in 0..FEED {
            let j = ctx.big_next.fetch_add(1, Ordering::Relaxed);
            let id = ctx.big.id(j);
            let json = ctx
                .big
                .message(&id, 0, j, Some((slow_id.clone(), own.clone())), 1, false);
            feeder.send(&json).await?;
            waiting.push(format!(r#""id":"{id}""#));
        }
        // Every message accepted, and the slow reader seen away.
        let away = format!(r#""key_id":"{slow_id}""#);
        let (mut acks, mut seen_away) = (0, false);
        feeder
            .expect("the acks and the slow reader going away", |p| {
                if is(p, "ack", "") && waiting.iter().any(|w| is(p, "ack", w)) {
                    acks += 1;
                } else if is(p, "presence", &away) && is(p, "presence", r#""state":"away""#) {
                    seen_away = true;
                }
                acks == FEED && seen_away
            })
            .await?;
        ctx.count("slow", "seen away");
        // It reads what was sent before the close, still writing nothing.
        slow.quiet = true;
        match slow.closed().await? {
            4002 => ctx.count("slow", "closed 4002"),
            code => {
                return Err(BenchError::Run(format!(
                    "{name}: stopped reading, closed with {code}, not 4002"
                )))
            }
        }
        let since = slow.last_seq();
        let back = Peer::join(&ctx.target, &name, &ctx.keys[SLOW], Some(since)).await?;
        ctx.joined();
        if !back.welcome.is_some_and(|w| w.resumed) {
            return Err(BenchError::Run(format!(
                "{name}: closed as too slow, then not resumed"
            )));
        }
        ctx.count("slow", "resumed");
        leave(&ctx, back, "slow").await?;
        next += period;
    }
    feeder.pump(ctx.until, |_| false).await?;
    Ok(())
}

/// The flooder: bursts of messages past the rate limit. Some are refused (`rate_limited`, at
/// most once a second); those acknowledged are owed to everyone like any other.
async fn flooder(ctx: Arc<Ctx>) -> Result<(), BenchError> {
    let name = members::name(FLOODER);
    let mut peer = Peer::join(&ctx.target, &name, &ctx.keys[FLOODER], None).await?;
    ctx.joined();
    let period = every(&ctx, 10.0, 4.0, 60.0);
    let mut next = Instant::now() + period / 2;
    while next + Duration::from_secs(2) < ctx.until {
        peer.pump(next, |_| false).await?;
        let mut burst = HashMap::new();
        for _ in 0..FLOOD {
            let Some((index, id, json)) = ctx.extra() else {
                break;
            };
            peer.send(&json).await?;
            burst.insert(format!(r#""id":"{id}""#), index);
        }
        ctx.count("flood", "bursts");
        ctx.add("flood", "sent", burst.len() as u64);
        // Acks come for the messages let through; the refusal comes once. Whatever is still on
        // its way when the next burst is due is read then (and counted from then on).
        let (mut acked, mut limited) = (0u64, 0u64);
        let until = (next + period).min(ctx.until);
        let ended = peer
            .pump(until, |p| {
                if is(p, "ack", "") {
                    if let Some((_, &index)) = burst.iter().find(|(w, _)| is(p, "ack", w)) {
                        ctx.accept(index);
                        acked += 1;
                    }
                } else if is(p, "error", r#""rate_limited""#) {
                    limited += 1;
                }
                false
            })
            .await?;
        if ended != Pumped::Deadline {
            return Err(BenchError::Run(format!(
                "{name}: connection ended: {ended:?}"
            )));
        }
        ctx.add("flood", "accepted", acked);
        ctx.add("flood", "rate_limited", limited);
        if limited == 0 || acked as usize >= burst.len() {
            return Err(BenchError::Run(format!(
                "{name}: {} messages at once, {acked} accepted, {limited} rate_limited",
                burst.len()
            )));
        }
        next += period;
    }
    Ok(())
}

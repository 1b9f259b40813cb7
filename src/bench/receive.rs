//! The receiving tasks of the simulated members: each reads its connection until told to stop,
//! counts what comes in its [`Tally`], acknowledges as a client must (every 64 frames or 128 KiB,
//! within a second of an unacknowledged frame, and at once at the end of a replay), drops frames
//! already received by `seq`, and after a cut (`--churn`, `--away`) or a connection the server
//! ended comes back with `resume {since}`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_lite::{future, StreamExt};
use smol::Timer;

use super::churn::{Back, Churn};
use super::members::Light;
use super::tally::{Shared, Tally};
use super::wire::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::client::{Acks, BoxedStream, Client, Received};
use crate::protocol::ServerMsg;
use crate::session::Event;

/// Times a member comes back after the server ended its connection, at most.
const MAX_REOPENED: usize = 5;

fn close_reason(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "closed by the server: {} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "closed by the server".into(),
    }
}

/// Keeps the acknowledgement timer set to the deadline of the oldest unacknowledged frame.
struct AckTimer {
    timer: Timer,
    armed: Option<Instant>,
}

impl AckTimer {
    fn new() -> Self {
        Self {
            timer: Timer::never(),
            armed: None,
        }
    }

    /// Re-arms when the deadline changed (once per acknowledgement, not once per frame).
    fn arm(&mut self, deadline: Option<Instant>) {
        if deadline != self.armed {
            match deadline {
                Some(d) => self.timer.set_at(d),
                None => self.timer = Timer::never(),
            }
            self.armed = deadline;
        }
    }

    async fn fired(&mut self) {
        (&mut self.timer).await;
        self.armed = None;
    }
}

/// A replay in progress after a resume.
struct Replay {
    since: u64,
    until: u64,
    rejoin: Duration,
    welcomed: Instant,
    resumed: bool,
}

/// Records a way back (and tells the one waiting for it with `--away`).
fn back(tally: &mut Tally, churn: Option<&Churn>, rp: &Replay, replayed: bool) {
    let back = Back {
        member: tally.me as usize,
        rejoin: rp.rejoin,
        replay: rp.welcomed.elapsed(),
        frames: rp.until.saturating_sub(rp.since),
        resumed: rp.resumed,
        replayed,
    };
    tally.backs.push(back);
    if let Some(c) = churn.filter(|c| c.hold) {
        c.report(back);
    }
}

enum Next<T> {
    Frame(T),
    Stop,
    Tick,
}

/// Receives on a light member's connection until told to stop: answers pings, acknowledges, and
/// when `churn` cut the connection, comes back with `resume` and goes on.
pub async fn receive(
    mut conn: Light,
    mut acks: Acks,
    me: usize,
    shared: Arc<Shared>,
    churn: Option<Arc<Churn>>,
) -> Tally {
    let mut tally = Tally::new(me);
    let stop = shared.stop.clone();
    let mut stop = std::pin::pin!(stop.recv());
    let mut timer = AckTimer::new();
    let mut replay: Option<Replay> = None;
    loop {
        timer.arm(acks.deadline());
        let next = future::or(async { Next::Frame(conn.reader.next().await) }, async {
            future::or(
                async {
                    let _ = stop.as_mut().await;
                    Next::Stop
                },
                async {
                    timer.fired().await;
                    Next::Tick
                },
            )
            .await
        })
        .await;
        let now = Instant::now();
        let (mut ping, mut lost) = (false, None);
        match next {
            Next::Stop => break,
            Next::Tick => {}
            Next::Frame(Err(e)) => lost = Some((format!("connection lost: {e}"), None)),
            Next::Frame(Ok((OP_TEXT, p))) => match acks.receive(p, now) {
                Received::Repeat(_) => tally.repeats += 1,
                r => {
                    tally.replaying =
                        matches!((r, &replay), (Received::New(s), Some(rp)) if s <= rp.until);
                    tally.text(p, now, &shared);
                }
            },
            Next::Frame(Ok((OP_CLOSE, p))) => {
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                lost = Some((close_reason(p), code.or(Some(1005))));
            }
            Next::Frame(Ok((op, _))) => ping = op == OP_PING,
        }
        if let Some((why, code)) = lost {
            let cut_at = churn.as_ref().and_then(|c| c.was_cut(me));
            // Like a real client, come back after a drop the server chose too (too slow, idle),
            // a bounded number of times; it is reported.
            let again = matches!(code, None | Some(4002) | Some(4003))
                && tally.reopened.len() < MAX_REOPENED;
            let churn = match &churn {
                Some(c) if cut_at.is_some() || again => c.clone(),
                _ => {
                    if let Some(rp) = replay.take() {
                        back(&mut tally, churn.as_deref(), &rp, false);
                    }
                    tally.closed = Some(why);
                    break;
                }
            };
            if cut_at.is_none() {
                tally.reopened.push(why);
                if let Some(rp) = replay.take() {
                    back(&mut tally, None, &rp, false);
                }
            }
            tally.flush(&shared);
            let started = match cut_at {
                Some(_) if churn.hold => {
                    let told = future::or(
                        async {
                            churn.wait_for_go(me).await;
                            true
                        },
                        async {
                            let _ = stop.as_mut().await;
                            false
                        },
                    );
                    if !told.await {
                        break;
                    }
                    Instant::now()
                }
                Some(at) => at,
                None => now,
            };
            let since = acks.last();
            match churn.rejoin(me, since).await {
                Ok(back) => {
                    conn = back.light;
                    acks = Acks::after(if back.resumed { since } else { 0 });
                    acks.replay_until(back.seq);
                    replay = Some(Replay {
                        since,
                        until: back.seq,
                        rejoin: started.elapsed(),
                        welcomed: Instant::now(),
                        resumed: back.resumed,
                    });
                }
                Err(e) => {
                    tally.closed = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(rp) = replay.take_if(|rp| acks.last() >= rp.until) {
            back(&mut tally, churn.as_deref(), &rp, true);
        }
        // A write on a cut connection fails; the next read says so.
        if ping {
            let _ = wire::send(
                &mut *conn.writer.lock().await,
                &wire::client_frame(OP_PONG, b""),
            )
            .await;
        }
        if let Some(seq) = acks.due(Instant::now()) {
            let _ = wire::send_ack(&conn.writer, seq).await;
            acks.acked(seq);
        }
        if !conn.reader.has_frame() {
            tally.flush(&shared);
        }
    }
    tally.flush(&shared);
    tally
}

/// The writing half of a sealed sender's WebSocket, shared with its receiving task.
pub type WsWriter = Arc<smol::lock::Mutex<async_tungstenite::WebSocketSender<BoxedStream>>>;

/// Receives on a sending member's tungstenite half until told to stop, acknowledging on `sink`.
pub async fn receive_ws(
    mut stream: async_tungstenite::WebSocketReceiver<BoxedStream>,
    sink: WsWriter,
    mut acks: Acks,
    me: usize,
    shared: Arc<Shared>,
) -> Tally {
    let mut tally = Tally::new(me);
    let stop = shared.stop.clone();
    let mut stop = std::pin::pin!(stop.recv());
    let mut timer = AckTimer::new();
    loop {
        timer.arm(acks.deadline());
        let next = future::or(async { Next::Frame(stream.next().await) }, async {
            future::or(
                async {
                    let _ = stop.as_mut().await;
                    Next::Stop
                },
                async {
                    timer.fired().await;
                    Next::Tick
                },
            )
            .await
        })
        .await;
        let now = Instant::now();
        let item = match next {
            Next::Stop => break,
            Next::Tick => None,
            Next::Frame(item) => Some(item),
        };
        match item {
            None => {}
            Some(Some(Ok(Message::Text(t)))) => match acks.receive(t.as_bytes(), now) {
                Received::Repeat(_) => tally.repeats += 1,
                _ => tally.text(t.as_bytes(), now, &shared),
            },
            Some(Some(Ok(Message::Close(f)))) => {
                tally.closed = Some(match f {
                    Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by the server".into(),
                });
                break;
            }
            Some(Some(Ok(_))) => {}
            Some(Some(Err(e))) => {
                tally.closed = Some(format!("connection lost: {e}"));
                break;
            }
            Some(None) => {
                tally.closed = Some("connection ended".into());
                break;
            }
        }
        if let Some(seq) = acks.due(Instant::now()) {
            let ack = serde_json::to_string(&crate::protocol::ClientMsg::Ack {
                seq: Some(seq),
                cseq: None,
            })
            .expect("acks encode");
            let _ = sink.lock().await.send(Message::text(ack)).await;
            acks.acked(seq);
        }
        tally.flush(&shared);
    }
    tally.flush(&shared);
    tally
}

/// An auditor: opens and verifies every message through its [`Client`]'s session, counting
/// sender keys as they come so the timed phase can wait for them.
pub async fn audit(mut client: Client, me: usize, shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::new(me);
    let stop = shared.stop.clone();
    let mut stop = std::pin::pin!(stop.recv());
    loop {
        let next = future::or(async { Some(client.recv_msg().await) }, async {
            let _ = stop.as_mut().await;
            None
        })
        .await;
        let Some(msg) = next else { break };
        let now = Instant::now();
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tally.closed = Some(e.to_string());
                break;
            }
        };
        let key = matches!(msg, ServerMsg::SenderKey(_));
        let events = match client.process(msg).await {
            Ok(e) => e,
            Err(e) => {
                tally.closed = Some(e.to_string());
                break;
            }
        };
        if key {
            shared.keys_received.fetch_add(1, Ordering::Relaxed);
        }
        for event in events {
            match event {
                Event::Message(m) => {
                    tally.opened += 1;
                    tally.deliver(m.id.as_bytes(), now, &shared);
                }
                Event::Rejected { reason, .. } => {
                    tally.rejected += 1;
                    *tally
                        .errors
                        .entry(format!("refused: {reason}"))
                        .or_default() += 1;
                }
                Event::Presence {
                    state: crate::protocol::Presence::Away,
                    ..
                } => {
                    shared.away_seen.fetch_add(1, Ordering::Relaxed);
                }
                Event::Gap { dropped, kinds } => {
                    tally.gaps += 1;
                    tally.gap_dropped += dropped;
                    let messages = ["all", "direct"]
                        .iter()
                        .map(|k| kinds.get(*k).copied().unwrap_or(0))
                        .sum::<u64>();
                    tally.gap_messages += messages;
                    shared.dropped.fetch_add(messages, Ordering::Relaxed);
                }
                Event::Error { code, .. } => {
                    let code = serde_json::to_string(&code).unwrap_or_default();
                    *tally
                        .errors
                        .entry(code.trim_matches('"').to_string())
                        .or_default() += 1;
                }
                _ => {}
            }
        }
        tally.flush(&shared);
    }
    tally.flush(&shared);
    tally
}

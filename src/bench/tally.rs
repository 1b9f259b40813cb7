//! What each simulated member received: deliveries counted once by message id (duplicates,
//! unknown ids and broken frames apart), latency against the message's scheduled send time, acks
//! and errors. Every member runs one receiving task that ends with its [`Tally`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{future, StreamExt};
use hdrhistogram::Histogram;

use super::wire::{self, FrameReader, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::client::{BoxedStream, Client};
use crate::protocol::ServerMsg;
use crate::session::Event;

/// The messages of the timed phase, known to every receiver once sending starts.
pub struct Table {
    /// Message index by id.
    pub ids: HashMap<[u8; 32], u32>,
    /// Scheduled send time of message 0.
    pub t0: Instant,
    /// Nanoseconds between scheduled sends (all senders together).
    pub interval_ns: f64,
    /// Number of messages.
    pub messages: usize,
    /// For direct messages: the member each message is for.
    pub recipient: Vec<u32>,
}

impl Table {
    /// When message `i` was due to be sent.
    pub fn due(&self, i: usize) -> Instant {
        self.t0 + Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }
}

/// State every receiving task shares.
pub struct Shared {
    /// Set when the timed phase starts; frames before it are setup.
    pub table: OnceLock<Table>,
    /// Unique deliveries so far (flushed in batches).
    pub delivered: AtomicU64,
    /// Sender keys the auditors have received.
    pub keys_received: AtomicUsize,
    /// Closed to stop every receiving task.
    pub stop: async_channel::Receiver<()>,
}

/// What one member received.
pub struct Tally {
    me: u32,
    seen: Vec<u64>,
    /// Deliveries counted once each.
    pub unique: u64,
    unflushed: u64,
    /// Messages received more than once.
    pub duplicated: u64,
    /// Deliveries of a direct message to the wrong member.
    pub misrouted: u64,
    /// Frames that looked like a delivery but were not whole, valid JSON text.
    pub malformed: u64,
    /// Deliveries with an id that was never sent.
    pub unknown: u64,
    /// Acks of our own messages.
    pub acks: u64,
    /// Messages opened and verified (auditors).
    pub opened: u64,
    /// Messages an auditor refused to show.
    pub rejected: u64,
    /// Errors from the server, by code.
    pub errors: BTreeMap<String, u64>,
    /// Why the connection ended before it was told to stop.
    pub closed: Option<String>,
    /// Latency in microseconds.
    pub latency: Histogram<u32>,
    /// When the last delivery arrived.
    pub last: Option<Instant>,
}

const ALL: &[u8] = br#"{"type":"all","id":""#;
const DIRECT: &[u8] = br#"{"type":"direct","id":""#;
const ACK: &[u8] = br#"{"type":"ack","#;
const ERROR: &[u8] = br#"{"type":"error","#;

/// A latency histogram: 1 µs to 10 minutes, 2 significant digits (1 %).
pub fn histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

impl Tally {
    /// An empty tally for member `me`.
    pub fn new(me: usize) -> Self {
        Self {
            me: me as u32,
            seen: Vec::new(),
            unique: 0,
            unflushed: 0,
            duplicated: 0,
            misrouted: 0,
            malformed: 0,
            unknown: 0,
            acks: 0,
            opened: 0,
            rejected: 0,
            errors: BTreeMap::new(),
            closed: None,
            latency: histogram(),
            last: None,
        }
    }

    /// Counts one text frame. A delivery is checked for framing (a whole JSON object in valid
    /// UTF-8 with a 32-character id) and counted by id; opening it is left to the auditors.
    pub fn text(&mut self, p: &[u8], now: Instant, shared: &Shared) {
        if let Some(rest) = p.strip_prefix(ALL).or_else(|| p.strip_prefix(DIRECT)) {
            let whole = rest.len() > 33
                && rest[32] == b'"'
                && p.last() == Some(&b'}')
                && std::str::from_utf8(p).is_ok();
            if whole {
                self.deliver(&rest[..32], now, shared);
            } else {
                self.malformed += 1;
            }
        } else if p.starts_with(ACK) {
            self.acks += 1;
        } else if p.starts_with(ERROR) {
            let code = serde_json::from_slice::<serde_json::Value>(p)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unreadable".into());
            *self.errors.entry(code).or_default() += 1;
        }
    }

    /// Counts the delivery of the message with `id`.
    pub fn deliver(&mut self, id: &[u8], now: Instant, shared: &Shared) {
        let Some(table) = shared.table.get() else {
            return;
        };
        let Some(&i) = <[u8; 32]>::try_from(id)
            .ok()
            .and_then(|id| table.ids.get(&id))
        else {
            self.unknown += 1;
            return;
        };
        let i = i as usize;
        if table.recipient.get(i).is_some_and(|&r| r != self.me) {
            self.misrouted += 1;
        }
        if self.seen.is_empty() {
            self.seen = vec![0; table.messages.div_ceil(64)];
        }
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        self.unflushed += 1;
        self.last = Some(now);
        let late = now.saturating_duration_since(table.due(i));
        self.latency
            .saturating_record((late.as_micros() as u64).max(1));
    }

    /// Publishes the count of deliveries so far.
    pub fn flush(&mut self, shared: &Shared) {
        if self.unflushed > 0 {
            shared
                .delivered
                .fetch_add(self.unflushed, Ordering::Relaxed);
            self.unflushed = 0;
        }
    }
}

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

/// Receives on a light member's connection until told to stop; answers pings when it holds the
/// writing half too.
pub async fn receive<R, W>(
    mut reader: FrameReader<R>,
    mut pong: Option<W>,
    me: usize,
    shared: Arc<Shared>,
) -> Tally
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut tally = Tally::new(me);
    let stop = shared.stop.clone();
    let mut stop = std::pin::pin!(stop.recv());
    loop {
        let next = future::or(async { Some(reader.next().await) }, async {
            let _ = stop.as_mut().await;
            None
        })
        .await;
        let Some(frame) = next else { break };
        let now = Instant::now();
        let ping = match frame {
            Err(e) => {
                tally.closed = Some(format!("connection lost: {e}"));
                break;
            }
            Ok((OP_TEXT, p)) => {
                tally.text(p, now, &shared);
                false
            }
            Ok((OP_CLOSE, p)) => {
                tally.closed = Some(close_reason(p));
                break;
            }
            Ok((op, _)) => op == OP_PING,
        };
        if let (true, Some(w)) = (ping, pong.as_mut()) {
            let _ = wire::send(w, &wire::client_frame(OP_PONG, b"")).await;
        }
        if !reader.has_frame() {
            tally.flush(&shared);
        }
    }
    tally.flush(&shared);
    tally
}

/// Receives on a sending member's tungstenite half until told to stop.
pub async fn receive_ws(
    mut stream: async_tungstenite::WebSocketReceiver<BoxedStream>,
    me: usize,
    shared: Arc<Shared>,
) -> Tally {
    let mut tally = Tally::new(me);
    let stop = shared.stop.clone();
    let mut stop = std::pin::pin!(stop.recv());
    loop {
        let next = future::or(async { Some(stream.next().await) }, async {
            let _ = stop.as_mut().await;
            None
        })
        .await;
        let Some(item) = next else { break };
        let now = Instant::now();
        match item {
            Some(Ok(Message::Text(t))) => tally.text(t.as_bytes(), now, &shared),
            Some(Ok(Message::Close(f))) => {
                tally.closed = Some(match f {
                    Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by the server".into(),
                });
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tally.closed = Some(format!("connection lost: {e}"));
                break;
            }
            None => {
                tally.closed = Some("connection ended".into());
                break;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_with(ids: &[&str]) -> Shared {
        let (_tx, stop) = async_channel::bounded(1);
        let shared = Shared {
            table: OnceLock::new(),
            delivered: AtomicU64::new(0),
            keys_received: AtomicUsize::new(0),
            stop,
        };
        let table = Table {
            ids: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (<[u8; 32]>::try_from(id.as_bytes()).unwrap(), i as u32))
                .collect(),
            t0: Instant::now(),
            interval_ns: 1000.0,
            messages: ids.len(),
            recipient: Vec::new(),
        };
        let _ = shared.table.set(table);
        shared
    }

    #[test]
    fn counts_once_and_tells_duplicates_unknown_and_broken_frames_apart() {
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba9876543210fedcba9876543210";
        let shared = shared_with(&[a, b]);
        let mut t = Tally::new(0);
        let now = Instant::now();
        let frame = |id: &str| format!(r#"{{"type":"all","id":"{id}","ts":1}}"#);
        t.text(frame(a).as_bytes(), now, &shared);
        t.text(frame(a).as_bytes(), now, &shared);
        t.text(frame(b).as_bytes(), now, &shared);
        t.text(frame(&"9".repeat(32)).as_bytes(), now, &shared);
        t.text(&frame(b).as_bytes()[..40], now, &shared);
        t.text(br#"{"type":"ack","id":"x"}"#, now, &shared);
        t.text(
            br#"{"type":"error","code":"stale","message":"m"}"#,
            now,
            &shared,
        );
        t.flush(&shared);
        assert_eq!(
            (t.unique, t.duplicated, t.unknown, t.malformed),
            (2, 1, 1, 1)
        );
        assert_eq!((t.acks, t.errors["stale"]), (1, 1));
        assert_eq!(shared.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(t.latency.len(), 2);
    }
}

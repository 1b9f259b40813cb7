//! One connection: HTTP requests until a WebSocket upgrade, then the chat session — a reader that
//! checks the join proof and forwards messages to the hub, and a writer that drains the bounded
//! outgoing queue in batches. Errors end only this connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::crypto::{self, PublicIdentity};
use crate::hub::{self, Outbox};
use crate::protocol::{self, close, ClientMsg, ErrorCode, ServerMsg};
use crate::server::{Ctx, Progress};
use crate::ws::{self, Frame, FrameReader, Incoming};

mod checks;
mod gate;
mod page;
mod race;
mod writer;

pub use checks::{check_join, parse, Bucket, ByteRate};
pub use gate::{Crossed, JoinGate};
use page::http_phase;

/// Runs `f`, giving up after `d`.
pub(crate) async fn timeout<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        smol::Timer::after(d).await;
        None
    })
    .await
}

/// A deadline for a loop of waits, moved forward without touching the reactor each time: a new
/// timer for every frame read (or a timer set anew) is two timer operations and a wake-up of the
/// thread waiting on the reactor per frame. The timer stays at an earlier deadline and, when it
/// fires before the current one, is set once to it.
struct Deadline {
    timer: smol::Timer,
    at: Instant,
}

impl Deadline {
    fn new(at: Instant) -> Self {
        Self {
            timer: smol::Timer::at(at),
            at,
        }
    }

    /// Runs `f`, giving up once `due` has passed.
    async fn run<T>(&mut self, due: Instant, f: impl std::future::Future<Output = T>) -> Option<T> {
        if due < self.at {
            self.timer.set_at(due);
            self.at = due;
        }
        let expired = async {
            loop {
                (&mut self.timer).await;
                if Instant::now() >= due {
                    return None;
                }
                self.timer.set_at(due);
                self.at = due;
            }
        };
        future::or(async { Some(f.await) }, expired).await
    }
}

/// Serves HTTP on `stream` until it upgrades to a chat session or closes.
// Not an `async fn`: that would keep the stream in its future twice (argument and binding).
#[allow(clippy::manual_async_fn)]
pub fn serve<S>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    ws_only: bool,
    progress: Progress,
    first_head: Instant,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A connection's task keeps the size of its future for as long as it lives. Each phase is
    // boxed so that only the one running takes memory: an idle member holds its session, not
    // also the request-head buffer and the answers of the HTTP phase.
    async move {
        let upgraded = Box::pin(http_phase(
            &mut stream,
            &ctx,
            ws_only,
            &progress,
            first_head,
        ))
        .await;
        if let Some(leftover) = upgraded {
            Box::pin(session(stream, leftover, peer, ctx, progress)).await;
        }
    }
}

fn session<S>(
    stream: S,
    leftover: Vec<u8>,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    progress: Progress,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Split before the future is made, so that it holds the two halves and not the stream.
    let (reader, writer) = writer::split(stream);
    let spare = writer.another();
    let reader = futures_lite::io::Cursor::new(leftover).chain(reader);
    async move {
        let _running = Running::new(&ctx.sessions, &ctx.session_ended);
        session_halves(reader, writer, peer, ctx.clone(), progress).await;
        writer::linger(spare).await;
    }
}

/// Counts a running chat session for as long as it lives, and says when it ends.
struct Running<'a>(
    &'a std::sync::atomic::AtomicUsize,
    &'a event_listener::Event,
);

impl<'a> Running<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize, ended: &'a event_listener::Event) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(count, ended)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.1.notify(usize::MAX);
    }
}

async fn session_halves<R, W>(
    reader: R,
    writer: W,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    progress: Progress,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let conn = ctx
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (outbox, frames, controls) = Outbox::new(
        ctx.limits.mailbox_bytes
            + ctx.limits.mailbox_bytes / hub::CONNECTED_HEADROOM_DIVISOR
            + hub::QUEUE_SLACK_BYTES,
    );
    let nonce = B64.encode(crypto::random_bytes::<32>());
    let challenge = ServerMsg::Challenge {
        version: protocol::VERSION,
        nonce: nonce.clone(),
        time: protocol::now_ms(),
    };
    let _ = outbox.push(frame(&challenge));
    let mut joined = false;
    let read = read_loop(
        reader,
        Reading {
            conn,
            outbox: &outbox,
            ctx: &ctx,
            nonce: &nonce,
            peer,
            progress: &progress,
        },
        &mut joined,
    );
    let write = writer::write_loop(writer, frames, controls, ctx.limits.ping_interval);
    race::race(read, write).await;
    if joined {
        let _ = ctx.hub.send(hub::Event::Gone { conn }).await;
    }
}

fn frame(msg: &ServerMsg) -> Frame {
    ws::text_frame(&serde_json::to_vec(msg).expect("server messages always encode"))
}

fn send_error(outbox: &Outbox, code: ErrorCode, message: impl Into<String>) {
    let msg = ServerMsg::Error {
        code,
        message: message.into(),
        id: None,
        until: None,
    };
    let _ = outbox.push(frame(&msg));
    if code.closes() {
        outbox.close(close::JOIN_REFUSED, "join refused");
    }
}

/// What the reader of one chat session knows.
struct Reading<'a> {
    conn: hub::ConnId,
    outbox: &'a Outbox,
    ctx: &'a Ctx,
    nonce: &'a str,
    peer: SocketAddr,
    progress: &'a Progress,
}

/// Checks a `join` against the gate and its proof: the key, or the refusal (told to the
/// operator, throttled).
fn admit_join(
    r: &Reading<'_>,
    name: &str,
    public_key: &str,
    signature: &str,
) -> Result<PublicIdentity, (ErrorCode, String)> {
    let gate = r
        .ctx
        .join_gate
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(r.peer.ip(), Instant::now());
    let checked = match gate {
        Err(crossed) => Err((
            ErrorCode::TooManyJoins,
            match crossed {
                Crossed::Address => "too many joins from your address; try again in a few seconds",
                Crossed::Total => "too many joins right now; try again in a few seconds",
            }
            .to_string(),
        )),
        Ok(()) => check_join(r.nonce, name, public_key, signature),
    };
    if let Err((code, message)) = &checked {
        r.ctx
            .tell_throttled(&r.ctx.refused_joins, r.peer.ip(), code.as_str(), || {
                format!("join refused for {}: {message}", r.peer.ip())
            });
    }
    checked
}

async fn read_loop<R: AsyncRead + Unpin>(reader: R, r: Reading<'_>, joined: &mut bool) {
    let Reading {
        conn,
        outbox,
        ctx,
        peer,
        ..
    } = r;
    let mut frames = FrameReader::new(reader, protocol::MAX_MESSAGE);
    let mut bucket = Bucket::new(ctx.limits.rate_per_sec, ctx.limits.burst);
    let mut file_rate = ByteRate::new(protocol::FILE_BYTES_PER_SEC, protocol::FILE_BURST_BYTES);
    let mut chunk_acks = ByteRate::new(protocol::CHUNK_ACKS_PER_SEC, protocol::CHUNK_ACKS_PER_SEC);
    let mut last_rate_error: Option<Instant> = None;
    let join_deadline = Instant::now() + ctx.limits.join_timeout;
    let mut deadline = Deadline::new(join_deadline);
    let (code, reason) = loop {
        let due = if *joined {
            Instant::now() + ctx.limits.idle_timeout
        } else {
            join_deadline
        };
        let incoming = match deadline.run(due, frames.next()).await {
            None if *joined => break (close::IDLE, "idle timeout".to_string()),
            None => {
                send_error(
                    outbox,
                    ErrorCode::JoinTimeout,
                    "no join within the time allowed",
                );
                future::pending::<()>().await;
                return;
            }
            Some(Err(e)) => {
                if let Some(reason) = e.kind() {
                    ctx.tell_throttled(&ctx.conn_errors, peer.ip(), reason, || {
                        format!("connection from {peer} ended: {e}")
                    });
                }
                match e.close_code() {
                    Some(code) => break (code, e.to_string()),
                    None => return,
                }
            }
            Some(Ok(i)) => i,
        };
        let text = match incoming {
            Incoming::Ping(p) => {
                outbox.pong(p);
                continue;
            }
            Incoming::Pong => continue,
            // Answered with the client's own code (RFC 6455 §5.5.1).
            Incoming::Close(code) => break (code.unwrap_or(close::NORMAL), String::new()),
            Incoming::Binary => {
                send_error(
                    outbox,
                    ErrorCode::BinaryUnsupported,
                    "binary messages are not supported; send JSON text",
                );
                continue;
            }
            Incoming::Text(t) => t,
        };
        let now = Instant::now();
        let parsed = parse(&text);
        // Chunks are governed by their byte rate, not by the message rate.
        // So are acknowledgements of chunks alone, which must never be dropped (the sender's
        // window waits on them): past their own rate, the reader waits instead.
        let paced = match &parsed {
            Ok(ClientMsg::Chunk(c)) if *joined => {
                Some((&mut file_rate, c.ciphertext.len() as u64 / 4 * 3))
            }
            Ok(ClientMsg::Ack {
                seq: None,
                cseq: Some(_),
            }) if *joined => Some((&mut chunk_acks, 1)),
            _ => None,
        };
        if let Some((rate, cost)) = paced {
            if let Some(wait) = rate.spend(cost, now) {
                // Over the budget: this reader stops reading for a while.
                smol::Timer::after(wait).await;
            }
        } else if *joined && !bucket.take(now) {
            if last_rate_error.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                last_rate_error = Some(now);
                send_error(
                    outbox,
                    ErrorCode::RateLimited,
                    "too many messages; this one was dropped",
                );
            }
            continue;
        }
        // Waits while the hub has too much to do: this reader stops reading, TCP pushes back.
        let credit = ctx.hub_budget.take(text.len()).await;
        let msg = match parsed {
            Ok(m) => m,
            Err((code, message)) => {
                send_error(outbox, code, message);
                continue;
            }
        };
        match msg {
            ClientMsg::Join { .. } if *joined => {
                send_error(outbox, ErrorCode::AlreadyJoined, "already joined")
            }
            ClientMsg::Join {
                name,
                public_key,
                signature,
                resume,
            } => match admit_join(&r, &name, &public_key, &signature) {
                Ok(key) => {
                    *joined = true;
                    r.progress.joined();
                    let event = hub::Event::Join {
                        conn,
                        name,
                        key,
                        outbox: outbox.clone(),
                        console: false,
                        resume,
                    };
                    if ctx.hub.send(event).await.is_err() {
                        return;
                    }
                }
                Err((code, message)) => send_error(outbox, code, message),
            },
            _ if !*joined => send_error(outbox, ErrorCode::NotJoined, "send join first"),
            msg => {
                let event = hub::Event::Msg { conn, msg, credit };
                if ctx.hub.send(event).await.is_err() {
                    return;
                }
            }
        }
    };
    outbox.close(code, &reason);
    // The writer sends the close frame and ends the connection.
    future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_moved_later_expires_at_the_new_time_and_not_before() {
        smol::block_on(async {
            let start = Instant::now();
            // The timer is set for the first deadline; the wait asks for a later one: the timer
            // fires early, is moved once, and the wait ends only at the later deadline.
            let mut d = Deadline::new(start + Duration::from_millis(20));
            let due = start + Duration::from_millis(120);
            assert_eq!(d.run(due, future::pending::<()>()).await, None);
            assert!(Instant::now() >= due);
            // A wait that ends first gives its output; the deadline is kept for the next.
            assert_eq!(
                d.run(due + Duration::from_secs(60), async { 7 }).await,
                Some(7)
            );
            // An earlier deadline than the timer's moves the timer back.
            let mut d = Deadline::new(Instant::now() + Duration::from_secs(60));
            let soon = Instant::now() + Duration::from_millis(20);
            assert_eq!(d.run(soon, future::pending::<()>()).await, None);
            assert!(Instant::now() >= soon);
        });
    }
}

//! One connection: HTTP requests until a WebSocket upgrade, then the chat session — a reader that
//! checks the join proof and forwards messages to the hub, and a writer that drains the bounded
//! outgoing queue in batches. Errors end only this connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use futures_lite::StreamExt;

use crate::crypto::{self, PublicIdentity};
use crate::http::{self, HeadError};
use crate::hub::{self, Control, Outbox};
use crate::protocol::{self, close, ClientMsg, ErrorCode, ServerMsg};
use crate::server::Ctx;
use crate::ws::{self, Frame, FrameReader, Incoming, WsError};

/// Time allowed to write one batch (or the close frame) before the peer is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Shortest time between two writes to one connection. Frames that come sooner wait and go out
/// together: under load every connection is written at most this often, and each write carries
/// more frames, instead of one system call per frame per recipient. An idle connection's first
/// frame goes out at once.
const WRITE_INTERVAL: Duration = Duration::from_millis(2);
/// Most frames in one write.
const MAX_BATCH: usize = 256;

async fn timeout<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        smol::Timer::after(d).await;
        None
    })
    .await
}

/// Serves HTTP on `stream` until it upgrades to a chat session or closes.
pub async fn serve<S>(mut stream: S, peer: SocketAddr, ctx: Arc<Ctx>, ws_only: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = Vec::new();
    loop {
        let req = match timeout(
            ctx.limits.head_timeout,
            http::read_head(&mut stream, &mut buf),
        )
        .await
        {
            None | Some(Err(HeadError::Closed)) | Some(Err(HeadError::Io(_))) => return,
            Some(Err(HeadError::TooLarge)) => {
                let _ = http::respond_error(
                    &mut stream,
                    "431 Request Header Fields Too Large",
                    "request head too large",
                )
                .await;
                return;
            }
            Some(Err(e @ HeadError::Malformed(_))) => {
                let _ = http::respond_error(&mut stream, "400 Bad Request", &e.to_string()).await;
                return;
            }
            Some(Ok(req)) => req,
        };
        let head_only = req.method == "HEAD";
        if req.method != "GET" && !head_only {
            let _ = http::respond_error(
                &mut stream,
                "405 Method Not Allowed",
                "only GET and HEAD are served",
            )
            .await;
            return;
        }
        if req.path == "/ws" {
            match http::check_upgrade(&req) {
                Ok(accept) if !head_only => {
                    if http::accept_upgrade(&mut stream, &accept).await.is_ok() {
                        session(stream, std::mem::take(&mut buf), peer, ctx).await;
                    }
                }
                Ok(_) => {
                    let _ = http::respond_error(
                        &mut stream,
                        "400 Bad Request",
                        "WebSocket upgrade expected at /ws",
                    )
                    .await;
                }
                Err((status, text)) => {
                    let _ = http::respond_error(&mut stream, status, text).await;
                }
            }
            return;
        }
        let found = if ws_only {
            None
        } else {
            http::asset(&req.path)
        };
        let Some(asset) = found else {
            let _ = http::respond_error(&mut stream, "404 Not Found", "not found").await;
            return;
        };
        let keep = req.keep_alive();
        let extra = if keep { "" } else { "Connection: close\r\n" };
        if http::respond(
            &mut stream,
            "200 OK",
            asset.content_type,
            asset.body,
            head_only,
            extra,
        )
        .await
        .is_err()
            || !keep
        {
            return;
        }
    }
}

async fn session<S>(stream: S, leftover: Vec<u8>, peer: SocketAddr, ctx: Arc<Ctx>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (reader, writer) = split(stream);
    let reader = futures_lite::io::Cursor::new(leftover).chain(reader);
    let conn = ctx
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (outbox, frames, controls) = Outbox::new(ctx.limits.queue_len);
    let nonce = B64.encode(crypto::random_bytes::<32>());
    let challenge = ServerMsg::Challenge {
        version: protocol::VERSION,
        nonce: nonce.clone(),
        time: protocol::now_ms(),
    };
    let _ = outbox.queue.try_send(frame(&challenge));
    let mut joined = false;
    let read = read_loop(reader, conn, &outbox, &ctx, &nonce, peer, &mut joined);
    let write = write_loop(writer, frames, controls, ctx.limits.ping_interval);
    future::or(read, write).await;
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
    };
    let _ = outbox.queue.try_send(frame(&msg));
    if code.closes() {
        outbox.close(close::JOIN_REFUSED, "join refused");
    }
}

/// A token bucket: `rate` per second, holding at most `burst`.
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Parses a client message, telling unknown types apart from malformed ones.
pub fn parse(text: &str) -> Result<ClientMsg, (ErrorCode, String)> {
    serde_json::from_str(text).map_err(|e| {
        #[derive(serde::Deserialize)]
        struct Tagged {
            #[serde(rename = "type")]
            kind: String,
        }
        match serde_json::from_str::<Tagged>(text) {
            Ok(t)
                if !["join", "direct", "all", "sender_key", "key_request"]
                    .contains(&t.kind.as_str()) =>
            {
                (
                    ErrorCode::UnknownType,
                    format!("unknown message type `{}`", t.kind),
                )
            }
            _ => (ErrorCode::BadJson, format!("malformed message: {e}")),
        }
    })
}

fn check_join(
    nonce: &str,
    name: &str,
    public_key: &str,
    signature: &str,
) -> Result<PublicIdentity, (ErrorCode, String)> {
    let der = B64
        .decode(public_key)
        .map_err(|_| (ErrorCode::BadKey, "public_key is not base64".to_string()))?;
    let key =
        PublicIdentity::from_spki_der(&der).map_err(|e| (ErrorCode::BadKey, e.to_string()))?;
    let sig = B64
        .decode(signature)
        .map_err(|_| (ErrorCode::BadProof, "signature is not base64".to_string()))?;
    key.verify(&protocol::join_bytes(nonce, name, key.key_id()), &sig)
        .map_err(|_| {
            (
                ErrorCode::BadProof,
                "the signature does not prove possession of this key".to_string(),
            )
        })?;
    Ok(key)
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: R,
    conn: hub::ConnId,
    outbox: &Outbox,
    ctx: &Ctx,
    nonce: &str,
    peer: SocketAddr,
    joined: &mut bool,
) {
    let mut frames = FrameReader::new(reader, protocol::MAX_MESSAGE);
    let mut bucket = Bucket::new(ctx.limits.rate_per_sec, ctx.limits.burst);
    let mut last_rate_error: Option<Instant> = None;
    let join_deadline = Instant::now() + ctx.limits.join_timeout;
    let (code, reason) = loop {
        let wait = if *joined {
            ctx.limits.idle_timeout
        } else {
            join_deadline.saturating_duration_since(Instant::now())
        };
        let incoming = match timeout(wait, frames.next()).await {
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
            Some(Err(WsError::TooBig(max))) => {
                break (close::TOO_BIG, format!("message over {max} bytes"))
            }
            Some(Err(WsError::Protocol(m))) => break (close::PROTOCOL, m.to_string()),
            Some(Err(WsError::Io(_))) => return,
            Some(Ok(i)) => i,
        };
        let text = match incoming {
            Incoming::Ping(p) => {
                let _ = outbox.ctl.try_send(Control::Pong(p));
                continue;
            }
            Incoming::Pong => continue,
            Incoming::Close => break (close::NORMAL, String::new()),
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
        if *joined && !bucket.take(now) {
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
        let msg = match parse(&text) {
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
            } => match check_join(nonce, &name, &public_key, &signature) {
                Ok(key) => {
                    *joined = true;
                    let event = hub::Event::Join {
                        conn,
                        name,
                        key,
                        outbox: outbox.clone(),
                        console: false,
                    };
                    if ctx.hub.send(event).await.is_err() {
                        return;
                    }
                }
                Err((code, message)) => {
                    ctx.out
                        .notice(format!("join refused for {}: {message}", peer.ip()));
                    send_error(outbox, code, message);
                }
            },
            _ if !*joined => send_error(outbox, ErrorCode::NotJoined, "send join first"),
            msg => {
                if ctx.hub.send(hub::Event::Msg { conn, msg }).await.is_err() {
                    return;
                }
            }
        }
    };
    outbox.close(code, &reason);
    // The writer sends the close frame and ends the connection.
    future::pending::<()>().await;
}

enum Next {
    Ctl(Option<Control>),
    Frame(Option<Frame>),
    Ping,
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    frames: async_channel::Receiver<Frame>,
    controls: async_channel::Receiver<Control>,
    ping_every: Duration,
) {
    // The control listener and the ping timer live across iterations: registering them anew for
    // every batch would cost more than the batch.
    let mut ping = smol::Timer::interval(ping_every);
    let ctl = controls.recv();
    let mut ctl = std::pin::pin!(ctl);
    let mut batch: Vec<Frame> = Vec::new();
    let mut last_write: Option<Instant> = None;
    loop {
        let next = future::or(
            async { Next::Ctl(ctl.as_mut().await.ok()) },
            future::or(async { Next::Frame(frames.recv().await.ok()) }, async {
                ping.next().await;
                Next::Ping
            }),
        )
        .await;
        batch.clear();
        match next {
            Next::Ctl(Some(Control::Close(code, reason))) => {
                // What was queued before the close still goes out (a refused join's error, say).
                while let Ok(f) = frames.try_recv() {
                    batch.push(f);
                }
                batch.push(ws::close_frame(code, &reason));
                let _ = timeout(Duration::from_secs(5), ws::write_batch(&mut writer, &batch)).await;
                return;
            }
            Next::Ctl(Some(Control::Pong(p))) => {
                ctl.set(controls.recv());
                batch.push(ws::pong_frame(&p));
            }
            Next::Frame(Some(f)) => {
                if let Some(due) = last_write.map(|t| t + WRITE_INTERVAL) {
                    if Instant::now() < due {
                        smol::Timer::at(due).await;
                    }
                }
                batch.push(f);
                while batch.len() < MAX_BATCH {
                    match frames.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
            }
            Next::Ping => batch.push(ws::ping_frame()),
            Next::Ctl(None) | Next::Frame(None) => return,
        }
        match timeout(WRITE_TIMEOUT, ws::write_batch(&mut writer, &batch)).await {
            Some(Ok(())) => last_write = Some(Instant::now()),
            _ => return,
        }
    }
}

/// One half of a stream shared by the reader and the writer. Unlike `futures_lite::io::split`,
/// it passes vectored writes through, so a batch of frames is one system call.
struct Half<S>(Arc<Mutex<S>>);

fn split<S>(stream: S) -> (Half<S>, Half<S>) {
    let shared = Arc::new(Mutex::new(stream));
    (Half(shared.clone()), Half(shared))
}

impl<S> Half<S> {
    fn with<T>(&self, f: impl FnOnce(Pin<&mut S>) -> T) -> T
    where
        S: Unpin,
    {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(Pin::new(&mut *inner))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Half<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Half<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_write_vectored(cx, bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(10, 3);
        assert!((0..3).all(|_| b.take(start)));
        assert!(!b.take(start));
        assert!(b.take(start + Duration::from_millis(100)));
        assert!(!b.take(start + Duration::from_millis(100)));
    }

    /// Counts write calls; accepts everything.
    #[derive(Default)]
    struct Calls(usize, usize);

    impl AsyncWrite for Calls {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            me.0 += 1;
            me.1 += b.len();
            Poll::Ready(Ok(b.len()))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            let n = bufs.iter().map(|b| b.len()).sum();
            me.0 += 1;
            me.1 += n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_batch_is_one_write_through_the_split_half() {
        let frames: Vec<Frame> = (0..50).map(|i| ws::text_frame(&[b'x'; 100][..i])).collect();
        let (_, mut half) = split(Calls::default());
        smol::block_on(ws::write_batch(&mut half, &frames)).unwrap();
        let total: usize = frames.iter().map(|f| f.len()).sum();
        half.with(|c| assert_eq!((c.0, c.1), (1, total)));
    }

    #[test]
    fn parse_tells_unknown_from_malformed() {
        assert_eq!(
            parse(r#"{"type":"dance"}"#).unwrap_err().0,
            ErrorCode::UnknownType
        );
        assert_eq!(
            parse(r#"{"type":"direct"}"#).unwrap_err().0,
            ErrorCode::BadJson
        );
        assert_eq!(parse("not json").unwrap_err().0, ErrorCode::BadJson);
        assert_eq!(parse("[1,2]").unwrap_err().0, ErrorCode::BadJson);
    }
}

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
use crate::http::{self, HeadError};
use crate::hub::{self, Outbox};
use crate::protocol::{self, close, ClientMsg, ErrorCode, ServerMsg};
use crate::server::Ctx;
use crate::ws::{self, Frame, FrameReader, Incoming};

mod writer;

/// Runs `f`, giving up after `d`.
pub(crate) async fn timeout<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        smol::Timer::after(d).await;
        None
    })
    .await
}

/// Serves HTTP on `stream` until it upgrades to a chat session or closes.
// Not an `async fn`: that would keep the stream in its future twice (argument and binding).
#[allow(clippy::manual_async_fn)]
pub fn serve<S>(
    mut stream: S,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    ws_only: bool,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A connection's task keeps the size of its future for as long as it lives. Each phase is
    // boxed so that only the one running takes memory: an idle member holds its session, not
    // also the request-head buffer and the answers of the HTTP phase.
    async move {
        let upgraded = Box::pin(http_phase(&mut stream, &ctx, ws_only)).await;
        if let Some(leftover) = upgraded {
            Box::pin(session(stream, leftover, peer, ctx)).await;
        }
    }
}

/// Answers HTTP requests until one upgrades to a WebSocket (then returns the bytes read past
/// the upgrade request) or the connection ends.
async fn http_phase<S>(stream: &mut S, ctx: &Ctx, ws_only: bool) -> Option<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let req = match timeout(ctx.limits.head_timeout, http::read_head(stream, &mut buf)).await {
            None | Some(Err(HeadError::Closed)) | Some(Err(HeadError::Io(_))) => return None,
            Some(Err(HeadError::TooLarge)) => {
                let _ = http::respond_error(
                    stream,
                    "431 Request Header Fields Too Large",
                    "request head too large",
                )
                .await;
                return None;
            }
            Some(Err(e @ HeadError::Malformed(_))) => {
                let _ = http::respond_error(stream, "400 Bad Request", &e.to_string()).await;
                return None;
            }
            Some(Ok(req)) => req,
        };
        if let Err(refused) = ctx.hosts.check(&req) {
            let _ = http::respond_error(stream, refused.status, &refused.reason).await;
            return None;
        }
        let head_only = req.method == "HEAD";
        if req.method != "GET" && !head_only {
            let _ = http::respond_error(
                stream,
                "405 Method Not Allowed",
                "only GET and HEAD are served",
            )
            .await;
            return None;
        }
        if req.path == "/ws" {
            match http::check_upgrade(&req) {
                Ok(accept) if !head_only => {
                    if http::accept_upgrade(stream, &accept).await.is_ok() {
                        return Some(buf);
                    }
                }
                Ok(_) => {
                    let _ = http::respond_error(
                        stream,
                        "400 Bad Request",
                        "WebSocket upgrade expected at /ws",
                    )
                    .await;
                }
                Err((status, text)) => {
                    let _ = http::respond_error(stream, status, text).await;
                }
            }
            return None;
        }
        let found = if ws_only {
            None
        } else {
            http::asset(&req.path)
        };
        let Some(asset) = found else {
            let _ = http::respond_error(stream, "404 Not Found", "not found").await;
            return None;
        };
        let keep = req.keep_alive();
        let extra = if keep { "" } else { "Connection: close\r\n" };
        if http::respond(
            stream,
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
            return None;
        }
    }
}

fn session<S>(
    stream: S,
    leftover: Vec<u8>,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Split before the future is made, so that it holds the two halves and not the stream.
    let (reader, writer) = writer::split(stream);
    let reader = futures_lite::io::Cursor::new(leftover).chain(reader);
    async move {
        let _running = Running::new(&ctx.sessions);
        session_halves(reader, writer, peer, ctx.clone()).await
    }
}

/// Counts a running chat session for as long as it lives.
struct Running<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Running<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn session_halves<R, W>(reader: R, writer: W, peer: SocketAddr, ctx: Arc<Ctx>)
where
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
    let read = read_loop(reader, conn, &outbox, &ctx, &nonce, peer, &mut joined);
    let write = writer::write_loop(writer, frames, controls, ctx.limits.ping_interval);
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
        until: None,
    };
    let _ = outbox.push(frame(&msg));
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
                if ![
                    "join",
                    "ack",
                    "leave",
                    "moderate",
                    "direct",
                    "all",
                    "sender_key",
                    "key_request",
                ]
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

/// Checks a `join`'s proof: `public_key` is an acceptable RSA key in base64 SPKI DER, and
/// `signature` signs the join bytes of `nonce`, `name` and its key ID.
pub fn check_join(
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
            Some(Err(e)) => match e.close_code() {
                Some(code) => break (code, e.to_string()),
                None => return,
            },
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
                resume,
            } => match check_join(nonce, &name, &public_key, &signature) {
                Ok(key) => {
                    *joined = true;
                    let event = hub::Event::Join {
                        conn,
                        name,
                        key,
                        outbox: outbox.clone(),
                        console: false,
                        resume: resume.map(|r| r.since),
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

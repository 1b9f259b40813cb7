//! Accepting connections: a slot for each (or an answer that the server is full), the TLS
//! handshake within the first head's deadline, and the connection's task, which ends early if a
//! new connection evicts it while it is still silent.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};
use smol::net::{TcpListener, TcpStream};

use super::{Ctx, Slot};
use crate::{conn, http};

pub(super) async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, ws_only: bool) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: report, breathe, go on.
                ctx.out.notice(format!("accept failed: {e}"));
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if ctx.stopping.load(Ordering::SeqCst) {
            return;
        }
        let _ = stream.set_nodelay(true);
        let accepted = Instant::now();
        let slot = Slot::acquire(&ctx.slots, &ctx.limits, peer.ip());
        let task_ctx = ctx.clone();
        ctx.ex
            .spawn(async move {
                let Ok((slot, evicted)) = slot else {
                    if task_ctx.tls.is_none() {
                        refuse_full(stream, &task_ctx).await;
                    }
                    return;
                };
                let first_head = accepted + task_ctx.limits.first_head_timeout;
                let connection = async {
                    match task_ctx.tls.clone() {
                        None => serve(stream, peer, &task_ctx, ws_only, &slot, first_head).await,
                        Some(acceptor) => {
                            let handshake = acceptor.accept(stream);
                            let tls = conn::timeout(
                                first_head.saturating_duration_since(Instant::now()),
                                handshake,
                            )
                            .await;
                            // A refused handshake is ordinary (a browser meeting a self-signed
                            // certificate).
                            if let Some(Ok(tls)) = tls {
                                serve(tls, peer, &task_ctx, ws_only, &slot, first_head).await;
                            }
                        }
                    }
                };
                // A connection still silent when the server is full makes room for a new one.
                futures_lite::future::or(connection, async {
                    let _ = evicted.recv().await;
                })
                .await;
            })
            .detach();
    }
}

/// Most connections answered "full" at once; past it, new connections are closed unanswered, so
/// that a flood of them cannot hold more sockets than this.
const MAX_REFUSING: usize = 64;

/// How long a connection refused for lack of slots may take to send its request head.
const REFUSING_HEAD: Duration = Duration::from_secs(2);

async fn refuse_full(mut stream: TcpStream, ctx: &Ctx) {
    if ctx.refusing.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        ctx.refusing.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    // Read the request first: closing on unread bytes would reset the connection and lose the answer.
    let mut buf = Vec::new();
    let _ = conn::timeout(REFUSING_HEAD, http::read_head(&mut stream, &mut buf)).await;
    let _ = http::respond_error(
        &mut stream,
        "503 Service Unavailable",
        "the server is full; try again later",
    )
    .await;
    ctx.refusing.fetch_sub(1, Ordering::SeqCst);
}

async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    ctx: &Arc<Ctx>,
    ws_only: bool,
    slot: &Slot,
    first_head: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    conn::serve(
        stream,
        peer,
        ctx.clone(),
        ws_only,
        slot.progress(),
        first_head,
    )
    .await;
}

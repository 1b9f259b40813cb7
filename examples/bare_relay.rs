//! A bare WebSocket relay, the floor dyspatcher is measured against: it accepts `/ws` and sends
//! every text frame it receives to every other connection, looking at nothing. It is built as a
//! careful engineer would build one with smol and async-tungstenite: a received frame is shared
//! (not copied) between recipients, each connection has one writer task draining a bounded queue,
//! and writes are batched (frames fed to the sink while more are queued, then one flush).
//!
//! Run it and drive it with the load generator (the same executor thread count as dyspatcher):
//!
//! ```text
//! cargo build --release --example bare_relay
//! dyspatcher bench --bare --server-command target/release/examples/bare_relay
//! ```
//!
//! It takes `-p PORT` (default 0: a free port) and ignores other options; it prints
//! `listening on http://ADDR/` and stops on `/quit` read from standard input. It runs as many
//! executor threads as dyspatcher does, or `BARE_RELAY_THREADS` if set.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::Message;
use futures_lite::{future, StreamExt};
use futures_util::SinkExt;
use smol::net::{TcpListener, TcpStream};
use smol::Executor;

/// Frames waiting for a slow reader before it is dropped.
const QUEUE: usize = 1024;
/// Frames fed before one flush.
const BATCH: usize = 256;

type Peers = Arc<Mutex<HashMap<u64, async_channel::Sender<Message>>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .windows(2)
        .find(|w| w[0] == "-p" || w[0] == "--port")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(0);
    let listener = match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare_relay: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("bare relay listening on http://{addr}/");
    std::thread::spawn(|| {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if line.trim() == "/quit" {
                std::process::exit(0);
            }
        }
    });
    let threads = std::env::var("BARE_RELAY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8)
        });
    relay(listener, threads);
}

/// Relays on `listener` forever with `threads` executor threads (this one included).
pub fn relay(listener: std::net::TcpListener, threads: usize) {
    let ex = Arc::new(Executor::new());
    for _ in 1..threads {
        let ex = ex.clone();
        std::thread::spawn(move || smol::block_on(ex.run(future::pending::<()>())));
    }
    let listener = TcpListener::try_from(listener).expect("the listener is usable");
    let peers: Peers = Arc::default();
    let next = AtomicU64::new(0);
    smol::block_on(ex.run(async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let id = next.fetch_add(1, Ordering::Relaxed);
            ex.spawn(serve(stream, id, peers.clone())).detach();
        }
    }));
}

// The signature is tungstenite's handshake callback; its error type is not ours to shrink.
#[allow(clippy::result_large_err)]
fn only_ws(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() == "/ws" {
        return Ok(resp);
    }
    let mut refusal = ErrorResponse::new(Some("not found".into()));
    *refusal.status_mut() = StatusCode::NOT_FOUND;
    Err(refusal)
}

async fn serve(stream: TcpStream, id: u64, peers: Peers) {
    let Ok(ws) = async_tungstenite::accept_hdr_async(stream, only_ws).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, rx) = async_channel::bounded::<Message>(QUEUE);
    peers.lock().unwrap().insert(id, tx);
    let writer = async {
        while let Ok(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            let mut fed = 1;
            while fed < BATCH {
                let Ok(more) = rx.try_recv() else { break };
                if sink.feed(more).await.is_err() {
                    return;
                }
                fed += 1;
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        while let Some(Ok(msg)) = source.next().await {
            if !msg.is_text() {
                if msg.is_close() {
                    return;
                }
                continue;
            }
            let mut slow = Vec::new();
            {
                let peers = peers.lock().unwrap();
                for (&other, tx) in peers.iter() {
                    // Cloning a message shares its bytes.
                    if other != id && tx.try_send(msg.clone()).is_err() {
                        slow.push(other);
                    }
                }
            }
            if !slow.is_empty() {
                let mut peers = peers.lock().unwrap();
                for other in slow {
                    peers.remove(&other);
                }
            }
        }
    };
    future::or(writer, reader).await;
    peers.lock().unwrap().remove(&id);
}

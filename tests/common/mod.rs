//! Shared helpers for the integration tests: a real server on 127.0.0.1:0, cached keys, and
//! clients that wait for what they expect (with time limits, never sleeps).
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dyspatcher::client::Client;
use dyspatcher::config::{AdminKey, Config};
use dyspatcher::console::Line;
use dyspatcher::crypto::Identity;
use dyspatcher::server::{self, Running};
use dyspatcher::session::{Event, Opened};

pub mod files;

/// Runs `f` to completion or panics after `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    futures_lite::future::or(f, async {
        smol::Timer::after(Duration::from_secs(secs)).await;
        panic!("timed out after {secs} s waiting for {what}");
    })
    .await
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn admin_key() -> Arc<Identity> {
    static KEY: OnceLock<Arc<Identity>> = OnceLock::new();
    KEY.get_or_init(|| {
        Arc::new(
            Identity::from_pem(&std::fs::read_to_string(fixture("admin.pem")).unwrap()).unwrap(),
        )
    })
    .clone()
}

/// `n` distinct 2048-bit user keys, cached on disk across runs.
pub fn keys(n: usize) -> Vec<Arc<Identity>> {
    static CACHE: OnceLock<Vec<Arc<Identity>>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-keys");
        dyspatcher::keycache::load_or_make(&dir, 320, 2048)
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect()
    });
    assert!(n <= all.len());
    all[..n].to_vec()
}

pub struct TestServer {
    pub running: Running,
}

pub fn start(configure: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::local(AdminKey::Loaded(admin_key()));
    // Files sent to the admin are saved in a folder of this server's own, never in the checkout.
    static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    config.files_dir =
        std::env::temp_dir().join(format!("dyspatcher-test-files-{}-{n}", std::process::id()));
    configure(&mut config);
    TestServer {
        running: server::start(config).expect("server starts"),
    }
}

impl TestServer {
    pub fn url_of(addr: &str) -> String {
        format!("ws://{addr}/ws")
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.running.addr)
    }

    pub fn prompt(&self, line: &str) {
        self.running.prompt.send_blocking(line.to_string()).unwrap();
    }

    /// Waits for an operator line containing `needle`; returns it.
    pub async fn output_containing(&self, needle: &str) -> String {
        within(10, needle, async {
            loop {
                match self.running.output.recv().await {
                    Ok(Line::Show(s)) | Ok(Line::Secret(s)) if s.contains(needle) => return s,
                    Ok(_) => continue,
                    Err(_) => panic!("output closed while waiting for {needle:?}"),
                }
            }
        })
        .await
    }

    /// Waits until the admin endpoint has joined the hub.
    pub async fn admin_ready(&self) {
        self.output_containing("admin connected").await;
    }

    pub async fn join(&self, name: &str, key: &Arc<Identity>) -> Client {
        within(
            10,
            "join",
            Client::connect(&self.url(), name, key.clone(), None),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} cannot join: {e}"))
    }
}

/// The next chat message (skipping joins, leaves and acks).
pub async fn next_message(c: &mut Client) -> Opened {
    within(10, "a message", async {
        loop {
            match c.next_event().await.expect("connection alive") {
                Event::Message(m) => return m,
                Event::Rejected { reason, .. } => panic!("a message was rejected: {reason}"),
                _ => continue,
            }
        }
    })
    .await
}

/// The next event that is not an ack or a join/leave notice.
pub async fn next_significant(c: &mut Client) -> Event {
    within(10, "an event", async {
        loop {
            match c.next_event().await.expect("connection alive") {
                Event::Ack(_) | Event::Joined(_) | Event::Left { .. } | Event::Welcome { .. } => {
                    continue
                }
                e => return e,
            }
        }
    })
    .await
}

/// Waits for `name` to appear in `c`'s member list.
pub async fn wait_joined(c: &mut Client, name: &str) {
    within(10, "a join", async {
        while c.session().key_id_of(name).is_none() {
            c.next_event().await.expect("connection alive");
        }
    })
    .await
}

/// Waits for a `left` event about `name`; returns its reason.
pub async fn wait_left(c: &mut Client, name: &str) -> String {
    within(10, "a leave", async {
        loop {
            if let Event::Left {
                name: n, reason, ..
            } = c.next_event().await.expect("connection alive")
            {
                if n == name {
                    return reason;
                }
            }
        }
    })
    .await
}

pub type Raw = async_tungstenite::WebSocketStream<smol::net::TcpStream>;

/// A bare WebSocket to the server, for sending what a correct client never would.
pub async fn raw(server: &TestServer) -> Raw {
    let tcp = smol::net::TcpStream::connect(server.running.addr)
        .await
        .unwrap();
    async_tungstenite::client_async(server.url(), tcp)
        .await
        .unwrap()
        .0
}

/// The next JSON message on a bare WebSocket, or the close frame as `{"close": code}`.
pub async fn raw_next(ws: &mut Raw) -> serde_json::Value {
    use async_tungstenite::tungstenite::Message;
    use futures_lite::StreamExt;
    within(10, "a frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Close(f))) => {
                    return serde_json::json!({"close": f.map(|f| u16::from(f.code)), "reason": ""})
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return serde_json::json!({"close": null}),
            }
        }
    })
    .await
}

pub async fn raw_send(ws: &mut Raw, text: String) {
    use async_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.unwrap();
}

/// Reads the challenge and answers it with `name`, presenting `presented` but signing with
/// `signer`; returns the server's answer.
pub async fn raw_join(
    ws: &mut Raw,
    name: &str,
    signer: &Identity,
    presented: &Identity,
) -> serde_json::Value {
    use base64::Engine;
    let challenge = raw_next(ws).await;
    let nonce = challenge["nonce"].as_str().unwrap();
    let key_id = presented.public().key_id();
    let sig = signer.sign(&dyspatcher::protocol::join_bytes(nonce, name, key_id));
    let b64 = base64::engine::general_purpose::STANDARD;
    let join = serde_json::json!({
        "type": "join",
        "name": name,
        "public_key": b64.encode(presented.public().spki_der()),
        "signature": b64.encode(sig),
    });
    raw_send(ws, join.to_string()).await;
    raw_next(ws).await
}

/// Sends `request` on a new connection; returns everything the server answered until it closed.
pub async fn http(server: &TestServer, request: &str) -> String {
    let mut tcp = smol::net::TcpStream::connect(server.running.addr)
        .await
        .unwrap();
    futures_lite::AsyncWriteExt::write_all(&mut tcp, request.as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    within(
        10,
        "an HTTP answer",
        futures_lite::AsyncReadExt::read_to_end(&mut tcp, &mut out),
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

//! The Rust chat client: a [`Session`] over a WebSocket (plain or TLS) that acknowledges what it
//! receives, drops what it has already seen, keeps what it sent until the server answers, and
//! resumes its membership on a new connection. The terminal client, the load generator and the
//! tests all use it.

mod seq;

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{future, StreamExt};
use smol::net::TcpStream;

pub use seq::{seq_of, Acks, Received, ACK_EVERY, ACK_WITHIN, UNANSWERED_BYTES};
use seq::{Kind, Unanswered};

use crate::crypto::Identity;
use crate::protocol::{ClientMsg, ErrorCode, Resume, ServerMsg};
use crate::session::{Event, SendError, Session};

/// Why the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `ws://` or `wss://HOST:PORT/...`.
    #[error("bad URL `{0}`: expected ws://HOST:PORT/ws or wss://HOST:PORT/ws")]
    Url(String),
    /// TCP or TLS failed.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// The server said something unexpected.
    #[error("unexpected from the server: {0}")]
    Protocol(String),
    /// The server refused the join.
    #[error("join refused: {}: {message}", code_str(*code))]
    Refused {
        /// Why.
        code: ErrorCode,
        /// The server's words.
        message: String,
        /// For `banned`: when the key may return (ms since the epoch), if it may.
        until: Option<i64>,
    },
    /// The connection closed.
    #[error("connection closed{0}")]
    Closed(String),
    /// A message could not be sealed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// The wire name of an error code (`bad_name`).
pub fn code_str(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "error".into())
}

/// Any byte stream a WebSocket can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// A boxed transport (plain TCP or TLS).
pub struct BoxedStream(Box<dyn Transport>);

impl AsyncRead for BoxedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoxedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_close(cx)
    }
}

/// Splits `ws://host:port/path` into (tls, host, port).
pub fn parse_url(url: &str) -> Result<(bool, String, u16), ClientError> {
    let bad = || ClientError::Url(url.to_string());
    let (tls, rest) = if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| bad())?)
        }
        _ => (authority, if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((tls, host.trim_matches(['[', ']']).to_string(), port))
}

/// How a connection ended, from its close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code (1006 when the connection ended without a close frame).
    pub code: u16,
    /// The reason the server gave.
    pub reason: String,
}

/// A joined chat client.
pub struct Client {
    ws: WebSocketStream<BoxedStream>,
    /// The same socket, to cut it with [`Client::sever`].
    tcp: TcpStream,
    url: String,
    name: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    session: Session,
    queued: VecDeque<Event>,
    acks: Acks,
    unanswered: Unanswered,
    /// Ids sent again after a resume: `duplicate_id` for them means the first copy got through.
    resent: HashSet<String>,
    closed: Option<Closed>,
    resumed: bool,
}

/// Opens the TCP (and TLS) connection and the WebSocket.
async fn open(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(WebSocketStream<BoxedStream>, TcpStream), ClientError> {
    let (secure, host, port) = parse_url(url)?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(ClientError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let stream = match (secure, tls) {
        (false, _) => BoxedStream(Box::new(tcp.clone())),
        (true, Some(config)) => {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| ClientError::Url(url.into()))?;
            let tls = futures_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp.clone())
                .await
                .map_err(ClientError::Connect)?;
            BoxedStream(Box::new(tls))
        }
        (true, None) => {
            return Err(ClientError::Url(format!(
                "{url} (wss:// needs a TLS configuration)"
            )))
        }
    };
    let (ws, _) = async_tungstenite::client_async(url, stream).await?;
    Ok((ws, tcp))
}

impl Client {
    /// Connects to `url` and joins as `name`, proving possession of `identity`. `tls` is required
    /// for `wss://` URLs.
    pub async fn connect(
        url: &str,
        name: &str,
        identity: Arc<Identity>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Client, ClientError> {
        let (ws, tcp) = open(url, tls.as_ref()).await?;
        let mut client = Client {
            ws,
            tcp,
            url: url.to_string(),
            name: name.to_string(),
            tls,
            session: Session::new(identity),
            queued: Default::default(),
            acks: Acks::default(),
            unanswered: Unanswered::default(),
            resent: HashSet::new(),
            closed: None,
            resumed: false,
        };
        client.join(name, None).await?;
        Ok(client)
    }

    /// Opens a new connection and joins again with the same key and session, resuming the
    /// membership after the last `seq` received: the server replays what it kept, and messages
    /// sent but never answered are sent again with their ids. Returns whether the membership was
    /// resumed (if not, it had ended: `seq` numbering starts again and the session has a fresh
    /// sender key, so unanswered `@all` messages are dropped with a notice).
    pub async fn resume(&mut self) -> Result<bool, ClientError> {
        let (ws, tcp) = open(&self.url, self.tls.as_ref()).await?;
        self.ws = ws;
        self.tcp = tcp;
        self.closed = None;
        // The server takes `since` as an acknowledgement.
        self.acks = Acks::after(self.acks.last());
        let name = self.session.name().unwrap_or(&self.name).to_string();
        let since = self.acks.last();
        self.join(&name, Some(since)).await?;
        if !self.resumed {
            let dropped = self.unanswered.retain(Kind::Direct);
            if dropped > 0 {
                self.queued.push_back(Event::Notice {
                    code: "not_resent".into(),
                    text: format!(
                        "{dropped} @all message(s) sent as the connection was lost could not be \
                         sent again: the membership had ended"
                    ),
                    until: None,
                });
            }
        }
        let again: Vec<(Option<String>, String)> = self
            .unanswered
            .iter()
            .map(|(id, json)| (id.map(str::to_string), json.to_string()))
            .collect();
        for (id, json) in again {
            if let Some(id) = id {
                self.resent.insert(id);
            }
            self.send_text(json).await?;
        }
        Ok(self.resumed)
    }

    async fn join(&mut self, name: &str, resume: Option<u64>) -> Result<(), ClientError> {
        let (nonce, time) = match self.recv_msg().await? {
            ServerMsg::Challenge { nonce, time, .. } => (nonce, time),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected a challenge, got {other:?}"
                )))
            }
        };
        let mut join = self.session.answer_challenge(&nonce, time, name);
        if let (ClientMsg::Join { resume: r, .. }, Some(since)) = (&mut join, resume) {
            *r = Some(Resume { since });
        }
        self.send_msg(&join).await?;
        match self.recv_msg().await? {
            ServerMsg::Error {
                message,
                code,
                until,
                ..
            } => Err(ClientError::Refused {
                code,
                message,
                until,
            }),
            msg @ ServerMsg::Welcome { .. } => {
                let ServerMsg::Welcome { resumed, seq, .. } = &msg else {
                    unreachable!("matched a welcome")
                };
                self.resumed = *resumed && resume.is_some();
                if !*resumed {
                    // A new membership numbers its frames from 1 again.
                    self.acks = Acks::after(0);
                }
                self.acks.replay_until(*seq);
                let out = self.session.handle(msg);
                self.queued.extend(out.events);
                Ok(())
            }
            other => Err(ClientError::Protocol(format!(
                "expected welcome, got {other:?}"
            ))),
        }
    }

    /// Cuts the TCP connection at once, both ways, without a close frame: a dropped network, for
    /// tests. Everything afterwards fails until [`Client::resume`].
    pub fn sever(&self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }

    /// The end-to-end session (members, names, options).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Mutable access to the session, to seal messages by hand.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The last `seq` received (what a resume asks to continue after).
    pub fn last_seq(&self) -> u64 {
        self.acks.last()
    }

    /// Whether the last join resumed a membership.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Messages sent that the server has not answered yet.
    pub fn unanswered(&self) -> usize {
        self.unanswered.len()
    }

    /// Acknowledges now every frame received so far, if any is not yet acknowledged (otherwise
    /// acknowledgements go out while receiving).
    pub async fn ack(&mut self) -> Result<(), ClientError> {
        let seq = self.acks.last();
        if self.acks.deadline().is_some() {
            self.send_msg(&ClientMsg::Ack { seq }).await?;
            self.acks.acked(seq);
        }
        Ok(())
    }

    /// Events already received and not yet returned by [`Client::next_event`] (the welcome of
    /// a resume, notices about it), for callers that read with [`Client::recv_msg`].
    pub fn take_events(&mut self) -> Vec<Event> {
        self.queued.drain(..).collect()
    }

    /// The close frame that ended the connection, once one came.
    pub fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    /// Sends a raw text frame (tests use it to send what a correct client never would).
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.ws.send(Message::binary(bytes)).await?;
        Ok(())
    }

    /// Sends one protocol message.
    pub async fn send_msg(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        self.send_text(serde_json::to_string(msg).expect("client messages encode"))
            .await
    }

    /// Keeps a message until the server answers it, to send it again after a resume.
    fn keep(&mut self, msg: &ClientMsg) -> String {
        let (id, kind) = match msg {
            ClientMsg::Direct(d) => (Some(d.id.clone()), Kind::Direct),
            ClientMsg::All(a) => (Some(a.id.clone()), Kind::SenderKeyed),
            _ => (None, Kind::SenderKeyed),
        };
        let json = serde_json::to_string(msg).expect("client messages encode");
        self.unanswered.keep(id, kind, json.clone());
        json
    }

    /// Receives the next raw text frame from the server. Sequenced frames already received are
    /// dropped here, and acknowledgements go out as they fall due (every [`ACK_EVERY`] frames,
    /// and [`ACK_WITHIN`] after an unacknowledged frame even when nothing else comes).
    pub async fn recv_text(&mut self) -> Result<String, ClientError> {
        loop {
            if let Some(seq) = self.acks.due(Instant::now()) {
                self.send_msg(&ClientMsg::Ack { seq }).await?;
                self.acks.acked(seq);
            }
            let item = match self.acks.deadline() {
                None => self.ws.next().await,
                Some(at) => {
                    let next = future::or(async { Some(self.ws.next().await) }, async {
                        smol::Timer::at(at).await;
                        None
                    });
                    match next.await {
                        Some(item) => item,
                        None => continue,
                    }
                }
            };
            match item {
                None => return Err(self.ended("")),
                Some(Err(e)) => {
                    self.closed.get_or_insert(Closed {
                        code: 1006,
                        reason: e.to_string(),
                    });
                    return Err(e.into());
                }
                Some(Ok(Message::Text(t))) => {
                    if let Received::Repeat(_) = self.acks.receive(t.as_bytes(), Instant::now()) {
                        continue;
                    }
                    return Ok(t.to_string());
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    self.closed = Some(Closed {
                        code,
                        reason: reason.clone(),
                    });
                    return Err(ClientError::Closed(format!(": {code} {reason}")));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    fn ended(&mut self, why: &str) -> ClientError {
        self.closed.get_or_insert(Closed {
            code: 1006,
            reason: why.to_string(),
        });
        ClientError::Closed(why.to_string())
    }

    /// Receives and parses the next server message, without handling it. Answers to our own
    /// messages are noted here; `duplicate_id` for a message sent again after a resume comes out
    /// as the `ack` it stands for.
    pub async fn recv_msg(&mut self) -> Result<ServerMsg, ClientError> {
        let text = self.recv_text().await?;
        let msg = serde_json::from_str(&text)
            .map_err(|e| ClientError::Protocol(format!("{e}: {text}")))?;
        Ok(match msg {
            ServerMsg::Ack { id } => {
                self.unanswered.answered(&id);
                self.resent.remove(&id);
                ServerMsg::Ack { id }
            }
            ServerMsg::Error {
                code: ErrorCode::DuplicateId,
                id: Some(id),
                ..
            } if self.resent.remove(&id) => {
                self.unanswered.answered(&id);
                ServerMsg::Ack { id }
            }
            ServerMsg::Error {
                code,
                message,
                id: Some(id),
                until,
            } => {
                self.unanswered.answered(&id);
                self.resent.remove(&id);
                ServerMsg::Error {
                    code,
                    message,
                    id: Some(id),
                    until,
                }
            }
            other => other,
        })
    }

    /// Opens one server message; key requests and answers it calls for are sent on the way.
    pub async fn process(&mut self, msg: ServerMsg) -> Result<Vec<Event>, ClientError> {
        let out = self.session.handle(msg);
        for m in &out.send {
            self.send_msg(m).await?;
        }
        Ok(out.events)
    }

    /// Fetches the public keys of `key_ids` that the session lacks (`get_keys`, in batches),
    /// handling what arrives meanwhile; returns once each is known or refused by the server.
    pub async fn fetch_keys(&mut self, key_ids: Vec<String>) -> Result<(), ClientError> {
        for m in self.session.request_keys(key_ids.iter().cloned()) {
            self.send_msg(&m).await?;
        }
        while key_ids.iter().any(|k| self.session.is_asked(k)) {
            let msg = self.recv_msg().await?;
            let events = self.process(msg).await?;
            self.queued.extend(events);
        }
        Ok(())
    }

    /// The next event, after opening and verifying.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Ok(e);
            }
            let msg = self.recv_msg().await?;
            let events = self.process(msg).await?;
            self.queued.extend(events);
        }
    }

    /// Sends a direct message to the member called `name`; returns its id. The message is kept
    /// until the server answers it, and sent again after a resume.
    pub async fn send_direct(&mut self, name: &str, text: &str) -> Result<String, ClientError> {
        let key = self
            .session
            .key_id_of(name)
            .ok_or_else(|| SendError::UnknownMember(name.to_string()))?
            .to_string();
        self.fetch_keys(vec![key.clone()]).await?;
        let msg = self.session.seal_direct(&key, text)?;
        let ClientMsg::Direct(d) = &msg else {
            unreachable!("seal_direct seals a direct message")
        };
        let id = d.id.clone();
        let text = self.keep(&msg);
        self.send_text(text).await?;
        Ok(id)
    }

    /// Sends an `@all` message (with the sender-key distributions it needs); returns its id.
    /// Kept until answered, as [`Client::send_direct`].
    pub async fn send_all(&mut self, text: &str) -> Result<String, ClientError> {
        let missing = self.session.missing_for_all();
        self.fetch_keys(missing).await?;
        let msgs = self.session.seal_all(text)?;
        let mut id = String::new();
        for m in &msgs {
            if let ClientMsg::All(a) = m {
                id = a.id.clone();
            }
        }
        // Kept before any is written: after a failed write, all of them go again on resume.
        let texts: Vec<String> = msgs.iter().map(|m| self.keep(m)).collect();
        for text in texts {
            self.send_text(text).await?;
        }
        Ok(id)
    }

    /// The underlying WebSocket, for callers that drive it themselves (the load generator).
    pub fn into_websocket(self) -> WebSocketStream<BoxedStream> {
        self.ws
    }

    /// The WebSocket, the acknowledgement state to go on with, and a handle on the TCP socket
    /// (to sever it), for callers that drive the connection themselves.
    pub fn into_parts(self) -> (WebSocketStream<BoxedStream>, Acks, TcpStream) {
        (self.ws, self.acks, self.tcp)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

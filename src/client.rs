//! The Rust chat client: a [`Session`] over a WebSocket (plain or TLS). The terminal client, the
//! load generator and the tests all use it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::StreamExt;
use smol::net::TcpStream;

use crate::crypto::Identity;
use crate::protocol::{ClientMsg, ServerMsg};
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
    #[error("join refused: {0}")]
    Refused(String),
    /// The connection closed.
    #[error("connection closed{0}")]
    Closed(String),
    /// A message could not be sealed.
    #[error(transparent)]
    Send(#[from] SendError),
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

/// A joined chat client.
pub struct Client {
    ws: WebSocketStream<BoxedStream>,
    session: Session,
    queued: std::collections::VecDeque<Event>,
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
        let (secure, host, port) = parse_url(url)?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let stream = match (secure, tls) {
            (false, _) => BoxedStream(Box::new(tcp)),
            (true, Some(config)) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| ClientError::Url(url.into()))?;
                let tls = futures_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
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
        let mut client = Client {
            ws,
            session: Session::new(identity),
            queued: Default::default(),
        };
        client.join(name).await?;
        Ok(client)
    }

    async fn join(&mut self, name: &str) -> Result<(), ClientError> {
        let (nonce, time) = match self.recv_msg().await? {
            ServerMsg::Challenge { nonce, time, .. } => (nonce, time),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected a challenge, got {other:?}"
                )))
            }
        };
        let join = self.session.answer_challenge(&nonce, time, name);
        self.send_msg(&join).await?;
        match self.recv_msg().await? {
            ServerMsg::Error { message, code, .. } => {
                let code = serde_json::to_value(code).ok();
                let code = code.as_ref().and_then(|c| c.as_str()).unwrap_or("error");
                Err(ClientError::Refused(format!("{code}: {message}")))
            }
            msg @ ServerMsg::Welcome { .. } => {
                let out = self.session.handle(msg);
                self.queued.extend(out.events);
                Ok(())
            }
            other => Err(ClientError::Protocol(format!(
                "expected welcome, got {other:?}"
            ))),
        }
    }

    /// The end-to-end session (members, names, options).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Mutable access to the session, to seal messages by hand.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
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

    /// Receives the next raw text frame from the server.
    pub async fn recv_text(&mut self) -> Result<String, ClientError> {
        loop {
            match self.ws.next().await {
                None => return Err(ClientError::Closed(String::new())),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Close(frame))) => {
                    let why = frame
                        .map(|f| format!(": {} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default();
                    return Err(ClientError::Closed(why));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Receives and parses the next server message, without handling it.
    pub async fn recv_msg(&mut self) -> Result<ServerMsg, ClientError> {
        let text = self.recv_text().await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Protocol(format!("{e}: {text}")))
    }

    /// Opens one server message; key requests and answers it calls for are sent on the way.
    pub async fn process(&mut self, msg: ServerMsg) -> Result<Vec<Event>, ClientError> {
        let out = self.session.handle(msg);
        for m in &out.send {
            self.send_msg(m).await?;
        }
        Ok(out.events)
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

    /// Sends a direct message to the member called `name`; returns its id.
    pub async fn send_direct(&mut self, name: &str, text: &str) -> Result<String, ClientError> {
        let key = self
            .session
            .key_id_of(name)
            .ok_or_else(|| SendError::UnknownMember(name.to_string()))?
            .to_string();
        let msg = self.session.seal_direct(&key, text)?;
        let ClientMsg::Direct(d) = &msg else {
            unreachable!("seal_direct seals a direct message")
        };
        let id = d.id.clone();
        self.send_msg(&msg).await?;
        Ok(id)
    }

    /// Sends an `@all` message (with the sender-key distributions it needs); returns its id.
    pub async fn send_all(&mut self, text: &str) -> Result<String, ClientError> {
        let msgs = self.session.seal_all(text)?;
        let mut id = String::new();
        for m in &msgs {
            if let ClientMsg::All(a) = m {
                id = a.id.clone();
            }
            self.send_msg(m).await?;
        }
        Ok(id)
    }

    /// The underlying WebSocket, for callers that drive it themselves (the load generator).
    pub fn into_websocket(self) -> WebSocketStream<BoxedStream> {
        self.ws
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

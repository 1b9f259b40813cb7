//! A minimal client side of a WebSocket for the load generator's many simulated members: one
//! upgrade request, then whole server frames read from a buffer and handed out as borrowed
//! slices. A thousand members each parsing every frame with a general-purpose library would cost
//! the machine more than the server under test; this costs a header parse per frame.

use std::io;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;

use crate::client::Transport;

/// Where the members connect.
#[derive(Clone)]
pub struct Target {
    /// Host name or address, as in the URL.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path of the WebSocket, e.g. `/ws`.
    pub path: String,
    /// TLS settings for `wss://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The URL as given.
    pub url: String,
}

impl Target {
    /// Parses `ws://HOST:PORT/PATH` or `wss://…`; `wss://` needs `tls`.
    pub fn new(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, String> {
        let (secure, host, port) = crate::client::parse_url(url).map_err(|e| e.to_string())?;
        if secure && tls.is_none() {
            return Err(format!("{url}: wss:// needs --fingerprint"));
        }
        let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
        let path = after_scheme
            .find('/')
            .map_or("/".to_string(), |i| after_scheme[i..].to_string());
        Ok(Self {
            host,
            port,
            path,
            tls: if secure { tls } else { None },
            url: url.to_string(),
        })
    }
}

/// A boxed stream, plain or TLS.
pub type Stream = Box<dyn Transport>;

/// Opens the TCP (and TLS) connection and performs the WebSocket upgrade. Bytes that arrived
/// after the upgrade answer are returned with the stream, and a handle on the TCP socket (to cut
/// it).
pub async fn connect(target: &Target) -> io::Result<(Stream, Vec<u8>, TcpStream)> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    tcp.set_nodelay(true)?;
    let socket = tcp.clone();
    let mut stream: Stream = match &target.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            Box::new(
                futures_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?,
            )
        }
    };
    let key = B64.encode(crate::crypto::random_bytes::<16>());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.path, target.host, target.port
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 8192 {
            return Err(bad("upgrade answer too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let status = text.lines().next().unwrap_or_default().to_string();
    if !status.starts_with("http/1.1 101") {
        return Err(bad(&format!("upgrade refused: {status}")));
    }
    let accept = crate::http::accept_key(&key).to_ascii_lowercase();
    if !text.contains(&format!("sec-websocket-accept: {accept}")) {
        return Err(bad("upgrade answer without the right Sec-WebSocket-Accept"));
    }
    Ok((stream, head.split_off(end), socket))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Opcodes the load generator tells apart.
pub const OP_TEXT: u8 = 0x1;
/// Close.
pub const OP_CLOSE: u8 = 0x8;
/// Ping.
pub const OP_PING: u8 = 0x9;
/// Pong.
pub const OP_PONG: u8 = 0xA;

/// Reads whole server frames (unmasked, unfragmented) from a buffer.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Buffer kept between reads; larger frames (the member list) grow it for a moment.
const READ_BUF: usize = 32 * 1024;
/// Largest frame accepted from the server.
const MAX_FRAME: usize = 16 * 1024 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`, starting with bytes already read from it.
    pub fn new(inner: R, leftover: Vec<u8>) -> Self {
        let end = leftover.len();
        let mut buf = leftover;
        buf.resize(end.max(READ_BUF), 0);
        Self {
            inner,
            buf,
            start: 0,
            end,
        }
    }

    /// The next frame: its opcode and payload. Fragmented messages are refused (no server
    /// under test fragments).
    pub async fn next(&mut self) -> io::Result<(u8, &[u8])> {
        loop {
            if let Some((op, from, to)) = self.parse()? {
                self.start = to;
                return Ok((op, &self.buf[from..to]));
            }
            self.fill().await?;
        }
    }

    /// Whether a whole frame is already buffered (a read would not wait).
    pub fn has_frame(&self) -> bool {
        matches!(self.parse(), Ok(Some(_)))
    }

    fn parse(&self) -> io::Result<Option<(u8, usize, usize)>> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x80 == 0 || b[0] & 0x0f == 0 {
            return Err(bad("fragmented frame from the server"));
        }
        if b[1] & 0x80 != 0 {
            return Err(bad("masked frame from the server"));
        }
        let (len, head) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => return Ok(None),
            n => (usize::from(n), 2),
        };
        if len > MAX_FRAME {
            return Err(bad("frame too large"));
        }
        if b.len() < head + len {
            return Ok(None);
        }
        let from = self.start + head;
        Ok(Some((b[0] & 0x0f, from, from + len)))
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > READ_BUF {
                self.buf.truncate(READ_BUF);
                self.buf.shrink_to_fit();
            }
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.buf.len();
                self.buf.resize(len * 2, 0);
            }
        }
        let n = self.inner.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// The wrapped stream, for writing when it is not split.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

/// A masked client frame with `opcode` and `payload`, ready to write.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = crate::crypto::random_bytes::<4>();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// The write half of a light member's connection, shared by its sending and receiving tasks (the
/// receiving one writes pongs and acknowledgements).
pub type Writer = Arc<smol::lock::Mutex<futures_lite::io::WriteHalf<Stream>>>;

/// Writes `{"type":"ack","seq":SEQ}` on `w`.
pub async fn send_ack(w: &Writer, seq: u64) -> io::Result<()> {
    let json = format!(r#"{{"type":"ack","seq":{seq}}}"#);
    let frame = client_frame(OP_TEXT, json.as_bytes());
    send(&mut *w.lock().await, &frame).await
}

/// The body of a server frame after its opening brace and its `"seq":N,` if it has one, so that
/// frames are told apart by their first bytes whether they are sequenced or not.
///
/// ```
/// use dyspatcher::bench::wire::body;
/// assert_eq!(body(br#"{"seq":12,"type":"all"}"#), br#""type":"all"}"#);
/// assert_eq!(body(br#"{"type":"ack"}"#), br#""type":"ack"}"#);
/// ```
pub fn body(frame: &[u8]) -> &[u8] {
    let Some(rest) = frame.strip_prefix(b"{") else {
        return frame;
    };
    match rest.strip_prefix(br#""seq":"#) {
        Some(after) => {
            let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
            after[digits..].strip_prefix(b",").unwrap_or(rest)
        }
        None => rest,
    }
}

/// Writes one frame and flushes (TLS needs the flush).
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
        crate::ws::text_frame(payload)
            .iter()
            .enumerate()
            .map(|(i, &b)| if i == 0 { 0x80 | op } else { b })
            .collect()
    }

    #[test]
    fn reads_frames_split_across_reads_and_grows_for_large_ones() {
        let mut bytes = server_frame(OP_TEXT, b"hello");
        bytes.extend(server_frame(OP_TEXT, &vec![b'x'; 100_000]));
        bytes.extend(server_frame(OP_PING, b""));
        let (first, rest) = bytes.split_at(3);
        let mut r = FrameReader::new(futures_lite::io::Cursor::new(rest.to_vec()), first.to_vec());
        smol::block_on(async {
            assert_eq!(r.next().await.unwrap(), (OP_TEXT, &b"hello"[..]));
            let (op, p) = r.next().await.unwrap();
            assert_eq!((op, p.len()), (OP_TEXT, 100_000));
            assert_eq!(r.next().await.unwrap().0, OP_PING);
            assert!(r.next().await.is_err());
        });
    }

    #[test]
    fn client_frames_are_masked() {
        let f = client_frame(OP_TEXT, b"abc");
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x80 | 3);
        let mask = &f[2..6];
        let plain: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        assert_eq!(plain, b"abc");
    }
}

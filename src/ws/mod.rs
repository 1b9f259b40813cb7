//! Server-side WebSocket framing (RFC 6455). The server writes frames itself so that a frame fanned
//! out to many members is encoded once and shared, and no connection keeps a write buffer sized
//! by the largest frame it was ever sent.

use std::io::{self, IoSlice};
use std::sync::Arc;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An encoded frame, ready to write, shared between recipients.
pub type Frame = Arc<[u8]>;

/// A complete message or control frame read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message.
    Text(String),
    /// A binary message (refused by the protocol, but read whole).
    Binary,
    /// A ping with its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// The client closes, with the status code it gave, if any (answered with the same code).
    Close(Option<u16>),
}

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The message exceeds the size limit.
    #[error("message over {0} bytes")]
    TooBig(usize),
    /// The peer broke the framing rules.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or a close reason is not UTF-8.
    #[error("invalid WebSocket payload: {0}")]
    NotUtf8(&'static str),
    /// The socket failed or closed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close code for a text message or close reason that is not UTF-8 (RFC 6455 §7.4.1, §8.1).
pub const CLOSE_INVALID_DATA: u16 = 1007;

impl WsError {
    /// A short word for the operator's log, or `None` for how connections ordinarily end (the
    /// peer went away: reset, end of stream, broken pipe), which is not worth a line.
    pub fn kind(&self) -> Option<&'static str> {
        use io::ErrorKind::*;
        match self {
            Self::TooBig(_) => Some("too_big"),
            Self::Protocol(_) => Some("protocol"),
            Self::NotUtf8(_) => Some("not_utf8"),
            Self::Io(e) => match e.kind() {
                ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe | TimedOut => None,
                _ => Some("io"),
            },
        }
    }

    /// The close code that tells the peer what it did wrong (`None`: the socket is gone).
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::TooBig(_) => Some(crate::protocol::close::TOO_BIG),
            Self::Protocol(_) => Some(crate::protocol::close::PROTOCOL),
            Self::NotUtf8(_) => Some(CLOSE_INVALID_DATA),
            Self::Io(_) => None,
        }
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4): the codes defined for use
/// on the wire and the registered and private ranges; never 1004–1006 or 1015, which only
/// report a local condition, nor anything unassigned.
///
/// ```
/// use dyspatcher::ws::close_code_allowed;
/// assert!(close_code_allowed(1000) && close_code_allowed(1011) && close_code_allowed(4999));
/// assert!(!close_code_allowed(1005) && !close_code_allowed(999) && !close_code_allowed(5000));
/// ```
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The status code of a received close frame's payload, checked (RFC 6455 §5.5.1, §7.4).
fn close_code_of(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !close_code_allowed(code) {
                return Err(WsError::Protocol("close code not allowed on the wire"));
            }
            std::str::from_utf8(reason).map_err(|_| WsError::NotUtf8("close reason"))?;
            Ok(Some(code))
        }
    }
}

/// Reads client frames, enforcing masking and a maximum message size. Bytes are read in chunks
/// (a frame of up to 4 KiB usually takes one read, a burst of frames fewer), and the chunk buffer is given back
/// whenever it is used up, so an idle connection holds none. A fragmented message is kept across
/// the control frames that may come between its fragments (RFC 6455 §5.4).
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    /// The fragments so far of an unfinished message (at most `max` bytes) and its opcode.
    partial: Vec<u8>,
    kind: Option<u8>,
    buf: Vec<u8>,
    /// Unread bytes are `buf[at..end]`.
    at: usize,
    end: usize,
}

/// Bytes asked for per read.
const READ_CHUNK: usize = 4096;

thread_local! {
    /// Where a connection with nothing buffered reads into (no connection holds a buffer while
    /// it waits). `poll_read` is not re-entered on one thread, so one per thread serves them all.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`; messages over `max` bytes are refused.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            partial: Vec::new(),
            kind: None,
            buf: Vec::new(),
            at: 0,
            end: 0,
        }
    }

    /// Reads the next whole message or control frame. A control frame between two fragments is
    /// returned on its own; the message it interrupted comes whole with a later call.
    pub async fn next(&mut self) -> Result<Incoming, WsError> {
        loop {
            let (fin, opcode, payload) = self.frame(self.max - self.partial.len()).await?;
            match opcode {
                OP_PING => return Ok(Incoming::Ping(payload)),
                OP_PONG => return Ok(Incoming::Pong),
                OP_CLOSE => return close_code_of(&payload).map(Incoming::Close),
                OP_TEXT | OP_BINARY if self.kind.is_none() => self.kind = Some(opcode),
                OP_CONT if self.kind.is_some() => {}
                OP_CONT => return Err(WsError::Protocol("continuation without a message")),
                _ => return Err(WsError::Protocol("new message inside a fragmented one")),
            }
            if self.partial.is_empty() {
                self.partial = payload;
            } else {
                self.partial.extend_from_slice(&payload);
            }
            if fin {
                let message = std::mem::take(&mut self.partial);
                return match self.kind.take() {
                    Some(OP_TEXT) => String::from_utf8(message)
                        .map(Incoming::Text)
                        .map_err(|_| WsError::NotUtf8("text message")),
                    _ => Ok(Incoming::Binary),
                };
            }
        }
    }

    /// Makes `n` unread bytes available. With nothing buffered it waits on a few bytes read
    /// into the future itself, and only then takes a buffer for the rest.
    async fn want(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.at < n {
            if self.at == self.end {
                let got = self.read_fresh(n).await?;
                if got == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                (self.at, self.end) = (0, got);
                continue;
            }
            if self.end + (n - (self.end - self.at)) > self.buf.len() {
                self.buf.copy_within(self.at..self.end, 0);
                (self.at, self.end) = (0, self.end - self.at);
                if self.buf.len() < n {
                    self.buf.resize(n, 0);
                }
            }
            let got = self.inner.read(&mut self.buf[self.end..]).await?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += got;
        }
        Ok(())
    }

    /// With nothing buffered: waits for bytes without holding a buffer, then reads up to a chunk
    /// at once into the thread's scratch buffer and moves them to a buffer of at least `n` bytes.
    /// A whole small frame is one read, and an idle connection holds no buffer.
    async fn read_fresh(&mut self, n: usize) -> io::Result<usize> {
        let (inner, buf) = (&mut self.inner, &mut self.buf);
        std::future::poll_fn(|cx| {
            SCRATCH.with_borrow_mut(|scratch| {
                let got =
                    std::task::ready!(std::pin::Pin::new(&mut *inner).poll_read(cx, scratch))?;
                if got == 0 {
                    return std::task::Poll::Ready(Ok(0));
                }
                buf.clear();
                buf.extend_from_slice(&scratch[..got]);
                buf.resize(READ_CHUNK.max(n), 0);
                std::task::Poll::Ready(Ok(got))
            })
        })
        .await
    }

    /// Takes `n` bytes that [`Self::want`] made available.
    fn take(&mut self, n: usize) -> &[u8] {
        let from = self.at;
        self.at += n;
        &self.buf[from..from + n]
    }

    async fn frame(&mut self, room: usize) -> Result<(bool, u8, Vec<u8>), WsError> {
        self.want(2).await?;
        let head = [self.buf[self.at], self.buf[self.at + 1]];
        let fin = head[0] & 0x80 != 0;
        if head[0] & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let opcode = head[0] & 0x0f;
        if !matches!(
            opcode,
            OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            return Err(WsError::Protocol("unknown opcode"));
        }
        if head[1] & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let ext = match head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        self.want(2 + ext + 4).await?;
        self.take(2);
        let len = match ext {
            2 => u64::from(u16::from_be_bytes([
                self.buf[self.at],
                self.buf[self.at + 1],
            ])),
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[self.at..self.at + 8]);
                u64::from_be_bytes(b)
            }
            _ => u64::from(head[1] & 0x7f),
        };
        self.take(ext);
        let control = opcode & 0x8 != 0;
        if control && !fin {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        if control && len > 125 {
            return Err(WsError::Protocol("control frame over 125 bytes"));
        }
        if !control && len > room as u64 {
            return Err(WsError::TooBig(self.max));
        }
        let len = len as usize;
        self.want(4 + len).await?;
        let mut mask = [0u8; 4];
        mask.copy_from_slice(self.take(4));
        let payload = self
            .take(len)
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        if self.at == self.end {
            // Used up: give the buffer back rather than keep it for an idle connection.
            self.buf = Vec::new();
            (self.at, self.end) = (0, 0);
        }
        Ok((fin, opcode, payload))
    }
}

mod write;

pub use write::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    fn read(bytes: Vec<u8>, max: usize) -> Result<Incoming, WsError> {
        smol::block_on(FrameReader::new(futures_lite::io::Cursor::new(bytes), max).next())
    }

    #[test]
    fn reads_fragmented_text_across_control_frames() {
        // RFC 6455 §5.4: control frames may come between the fragments of a message.
        let mut bytes = masked(OP_TEXT, false, b"hel");
        bytes.extend(masked(OP_PING, true, b"p"));
        bytes.extend(masked(OP_CONT, false, b"l"));
        bytes.extend(masked(OP_PONG, true, b""));
        bytes.extend(masked(OP_CONT, true, b"o"));
        bytes.extend(masked(OP_TEXT, true, b"next"));
        let mut reader = FrameReader::new(futures_lite::io::Cursor::new(bytes), 100);
        smol::block_on(async {
            assert_eq!(reader.next().await.unwrap(), Incoming::Ping(b"p".to_vec()));
            assert_eq!(reader.next().await.unwrap(), Incoming::Pong);
            assert_eq!(reader.next().await.unwrap(), Incoming::Text("hello".into()));
            assert_eq!(reader.next().await.unwrap(), Incoming::Text("next".into()));
        });
        assert!(reader.partial.is_empty() && reader.kind.is_none());
    }

    #[test]
    fn the_size_limit_counts_every_fragment() {
        let mut bytes = masked(OP_TEXT, false, &[b'a'; 60]);
        bytes.extend(masked(OP_PING, true, b""));
        bytes.extend(masked(OP_CONT, true, &[b'a'; 60]));
        let mut reader = FrameReader::new(futures_lite::io::Cursor::new(bytes), 100);
        smol::block_on(async {
            assert_eq!(reader.next().await.unwrap(), Incoming::Ping(Vec::new()));
            assert!(matches!(reader.next().await, Err(WsError::TooBig(100))));
        });
    }

    #[test]
    fn checks_close_frames() {
        assert_eq!(
            read(masked(OP_CLOSE, true, b""), 100).unwrap(),
            Incoming::Close(None)
        );
        let mut ok = 4000u16.to_be_bytes().to_vec();
        ok.extend_from_slice("bye ✓".as_bytes());
        assert_eq!(
            read(masked(OP_CLOSE, true, &ok), 100).unwrap(),
            Incoming::Close(Some(4000))
        );
        for bad in [
            &[3u8][..],
            &1005u16.to_be_bytes(),
            &999u16.to_be_bytes(),
            &5000u16.to_be_bytes(),
        ] {
            let got = read(masked(OP_CLOSE, true, bad), 100);
            assert!(matches!(got, Err(WsError::Protocol(_))), "{bad:?}: {got:?}");
        }
        let got = read(masked(OP_CLOSE, true, &[0x03, 0xe8, 0xff]), 100);
        assert!(matches!(got, Err(WsError::NotUtf8(_))), "{got:?}");
    }

    /// Hands out its bytes a few at a time.
    struct Trickle(Vec<u8>, usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            std::task::Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn reads_frames_in_bursts_and_in_dribbles() {
        let big = vec![b'b'; 10_000];
        let mut bytes = masked(OP_TEXT, true, b"one");
        bytes.extend(masked(OP_TEXT, true, &big));
        bytes.extend(masked(OP_PING, true, b""));
        bytes.extend(masked(OP_TEXT, false, b"tw"));
        bytes.extend(masked(OP_CONT, true, b"o"));
        for step in [1, 3, 7, 100_000] {
            let mut reader = FrameReader::new(Trickle(bytes.clone(), step), 20_000);
            smol::block_on(async {
                assert_eq!(reader.next().await.unwrap(), Incoming::Text("one".into()));
                let long = String::from_utf8(big.clone()).unwrap();
                assert_eq!(reader.next().await.unwrap(), Incoming::Text(long));
                assert_eq!(reader.next().await.unwrap(), Incoming::Ping(Vec::new()));
                assert_eq!(reader.next().await.unwrap(), Incoming::Text("two".into()));
                assert!(matches!(reader.next().await, Err(WsError::Io(_))));
            });
            assert!(reader.buf.is_empty(), "the buffer is given back");
        }
    }

    #[test]
    fn refuses_oversized_unmasked_and_bad_utf8() {
        assert!(matches!(
            read(masked(OP_TEXT, true, &[b'a'; 300]), 200),
            Err(WsError::TooBig(200))
        ));
        assert!(matches!(
            read(vec![0x81, 0x02, b'h', b'i'], 100),
            Err(WsError::Protocol(_))
        ));
        let bad_utf8 = read(masked(OP_TEXT, true, &[0xff, 0xfe]), 100).unwrap_err();
        assert!(matches!(bad_utf8, WsError::NotUtf8(_)));
        assert_eq!(bad_utf8.close_code(), Some(CLOSE_INVALID_DATA));
        assert!(matches!(
            read(masked(OP_CONT, true, b"x"), 100),
            Err(WsError::Protocol(_))
        ));
        for (bytes, why) in [
            (masked(0x3, true, b"x"), "unknown opcode"),
            (masked(0xB, true, b"x"), "unknown opcode"),
            (masked(OP_PING, false, b"x"), "fragmented control frame"),
            (
                masked(OP_PING, true, &[0; 126]),
                "control frame over 125 bytes",
            ),
        ] {
            assert!(matches!(read(bytes, 200), Err(WsError::Protocol(m)) if m == why));
        }
        let mut rsv = masked(OP_TEXT, true, b"x");
        rsv[0] |= 0x40;
        assert!(matches!(
            read(rsv, 100),
            Err(WsError::Protocol("reserved bits set"))
        ));
    }

    #[test]
    fn encodes_lengths_and_payload_roundtrip() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let data = vec![7u8; len];
            let frame = text_frame(&data);
            assert_eq!(payload(&frame), &data[..]);
        }
        let close = close_frame(4000, "kicked");
        assert_eq!(&close[..4], &[0x88, 8, 0x0f, 0xa0]);
    }

    #[test]
    fn batch_writes_everything() {
        let frames: Vec<Frame> = (0..100)
            .map(|i| text_frame(&vec![i as u8; i * 7]))
            .collect();
        let mut out = futures_lite::io::Cursor::new(Vec::new());
        smol::block_on(write_batch(&mut out, &frames)).unwrap();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        assert_eq!(out.into_inner(), expected);
    }
}

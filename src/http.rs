//! The HTTP side of the single port: request heads, the embedded web client, strict headers on
//! every answer, and the WebSocket upgrade handshake.

use std::io;

use base64::Engine;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod host;
pub use host::{split_authority, HostName, Hosts, Refused};

/// Largest request head accepted, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;

/// Headers on every answer: nothing but the server itself may be loaded or framed.
pub const SECURITY_HEADERS: &str =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data: blob:; media-src blob:; connect-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'none'\r\n\
X-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\n\
Cache-Control: no-store\r\n\
X-Frame-Options: DENY\r\n";

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// One embedded file of the web client.
pub struct Asset {
    /// Its path, without the leading slash.
    pub name: &'static str,
    /// Its content type.
    pub content_type: &'static str,
    /// Its bytes, gzip-compressed when `gzip`.
    pub body: &'static [u8],
    /// Whether `body` is a gzip member (text is; images are not).
    pub gzip: bool,
}

impl Asset {
    /// The bytes as they are: inflated when they are embedded compressed (for a client that does
    /// not take gzip).
    pub fn plain(&self) -> std::borrow::Cow<'static, [u8]> {
        if !self.gzip {
            return std::borrow::Cow::Borrowed(self.body);
        }
        // The build writes a fixed 10-byte header and an 8-byte trailer around the deflate stream.
        let deflated = &self.body[10..self.body.len() - 8];
        let inflated = miniz_oxide::inflate::decompress_to_vec(deflated)
            .expect("the build compressed this asset");
        std::borrow::Cow::Owned(inflated)
    }
}

/// Whether the request's `Accept-Encoding` takes gzip (`gzip` or `*`, with a quality above 0).
pub fn accepts_gzip(req: &Request) -> bool {
    let Some(list) = req.header("accept-encoding") else {
        return false;
    };
    list.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding == "gzip" || coding == "*") && !refused
    })
}

/// The embedded web client's files.
pub fn assets() -> &'static [Asset] {
    ASSETS
}

/// A parsed request head.
#[derive(Debug, Default)]
pub struct Request {
    /// Method, as sent.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Header names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Whether the client wants to keep the connection open.
    pub fn keep_alive(&self) -> bool {
        !self.has_token("connection", "close")
    }

    /// Whether this asks for a WebSocket upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.has_token("connection", "upgrade") && self.has_token("upgrade", "websocket")
    }
}

/// Why a request head was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The peer closed before sending anything.
    #[error("connection closed")]
    Closed,
    /// The head is larger than [`MAX_HEAD`].
    #[error("request head over {MAX_HEAD} bytes")]
    TooLarge,
    /// The head is not HTTP/1.x.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one request head. `buf` carries bytes read past a previous head (pipelining).
pub async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Request, HeadError> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_end(buf) {
            if end > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let head = buf[..end].to_vec();
            buf.drain(..end + 4);
            return parse_head(&head);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Malformed("connection closed inside the request head")
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(HeadError::Malformed("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed("only HTTP/1.x is served"));
    }
    if method.is_empty() || !target.starts_with('/') {
        return Err(HeadError::Malformed("bad request target"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header line without a colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
    Ok(Request {
        method: method.to_string(),
        path,
        headers,
    })
}

/// Writes a complete answer with the security headers. `body` is omitted for `HEAD`.
pub async fn respond<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    extra: &str,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{SECURITY_HEADERS}{extra}\r\n",
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    if !head_only {
        w.write_all(body).await?;
    }
    w.flush().await
}

/// Writes a plain-text error answer and asks the client to close.
pub async fn respond_error<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: &str,
    text: &str,
) -> io::Result<()> {
    let extra = if status.starts_with("405") {
        "Allow: GET, HEAD\r\nConnection: close\r\n"
    } else {
        "Connection: close\r\n"
    };
    respond(
        w,
        status,
        "text/plain; charset=utf-8",
        format!("{text}\n").as_bytes(),
        false,
        extra,
    )
    .await
}

/// The embedded file served at `path`, if any (`/` is the client's page).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let name = if path == "/" {
        "index.html"
    } else {
        path.trim_start_matches('/')
    };
    ASSETS.iter().find(|a| a.name == name)
}

/// The `Sec-WebSocket-Accept` value for a client's key (RFC 6455 §4.2.2).
///
/// ```
/// // The example from RFC 6455.
/// assert_eq!(dyspatcher::http::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// Checks a WebSocket upgrade request; the error is the reason for a `400`. `Host` and `Origin`
/// are checked for every request, by [`Hosts::check`].
pub fn check_upgrade(req: &Request) -> Result<String, (&'static str, &'static str)> {
    if !req.is_upgrade() {
        return Err(("400 Bad Request", "WebSocket upgrade expected at /ws"));
    }
    if req.header("sec-websocket-version") != Some("13") {
        return Err(("400 Bad Request", "WebSocket version 13 required"));
    }
    let key = req
        .header("sec-websocket-key")
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k)
                .map(|b| b.len())
                == Ok(16)
        })
        .ok_or(("400 Bad Request", "missing or bad Sec-WebSocket-Key"))?;
    Ok(accept_key(key))
}

/// Writes the `101 Switching Protocols` answer.
pub async fn accept_upgrade<W: AsyncWrite + Unpin>(w: &mut W, accept: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    w.write_all(head.as_bytes()).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, HeadError> {
        let mut buf = Vec::new();
        smol::block_on(read_head(
            &mut futures_lite::io::Cursor::new(text.as_bytes().to_vec()),
            &mut buf,
        ))
    }

    #[test]
    fn parses_and_keeps_pipelined_bytes() {
        let mut buf = Vec::new();
        let data = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n".to_vec();
        let mut cursor = futures_lite::io::Cursor::new(data);
        let first = smol::block_on(read_head(&mut cursor, &mut buf)).unwrap();
        assert_eq!((first.method.as_str(), first.path.as_str()), ("GET", "/a"));
        assert_eq!(first.header("host"), Some("h"));
        let second = smol::block_on(read_head(&mut cursor, &mut buf)).unwrap();
        assert_eq!(second.path, "/b");
    }

    #[test]
    fn refuses_bad_heads() {
        assert!(matches!(
            parse("GARBAGE\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/2\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: h"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(parse(""), Err(HeadError::Closed)));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&big), Err(HeadError::TooLarge)));
    }

    #[test]
    fn upgrade_checks() {
        let ok = "GET /ws HTTP/1.1\r\nHost: h:1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://h:1\r\n\r\n";
        assert_eq!(
            check_upgrade(&parse(ok).unwrap()).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let plain = "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(
            check_upgrade(&parse(plain).unwrap()).unwrap_err().0,
            "400 Bad Request"
        );
        let badkey = ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
        assert!(check_upgrade(&parse(&badkey).unwrap()).is_err());
    }

    #[test]
    fn index_is_embedded() {
        assert!(asset("/").is_some());
        assert!(asset("/nope.js").is_none());
    }

    #[test]
    fn text_is_embedded_compressed_and_inflates_to_the_file() {
        let app = asset("/app.js").expect("embedded");
        assert!(app.gzip);
        let on_disk = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/app.js")).unwrap();
        assert_eq!(&*app.plain(), &on_disk[..]);
        assert!(
            app.body.len() * 2 < on_disk.len(),
            "compressed to less than half"
        );
        let len = u32::from_le_bytes(app.body[app.body.len() - 4..].try_into().unwrap());
        assert_eq!(len as usize, on_disk.len());
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        let with = |v: &str| Request {
            headers: vec![("accept-encoding".into(), v.into())],
            ..Request::default()
        };
        assert!(accepts_gzip(&with("gzip, deflate, br, zstd")));
        assert!(accepts_gzip(&with("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("identity")));
        assert!(!accepts_gzip(&with("br, deflate")));
        assert!(!accepts_gzip(&Request::default()));
    }

    #[test]
    fn catalogues_are_served_from_their_folder_as_javascript() {
        let en = asset("/i18n/en.js").expect("the English catalogue is embedded");
        assert_eq!(en.content_type, "text/javascript; charset=utf-8");
        assert!(asset("/i18n/i18n.js").is_some());
        assert!(asset("/en.js").is_none());
        assert!(asset("/i18n/../app.js").is_none());
    }
}

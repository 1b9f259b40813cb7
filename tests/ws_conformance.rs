//! WebSocket conformance of `/ws` (RFC 6455 §5.4–5.6, §7, §8.1), over real sockets with
//! hand-made masked frames: fragments around control frames, control-frame limits, reserved bits,
//! unknown opcodes, the close handshake and its payload rules, and UTF-8.
mod common;

use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A client frame: `first` is the first byte whole (FIN, RSV bits, opcode), the payload is masked.
fn raw_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
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

fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    raw_frame(if fin { 0x80 } else { 0 } | opcode, payload)
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A WebSocket on `/ws` after the handshake and the server's challenge.
async fn open(server: &TestServer) -> TcpStream {
    let addr = server.running.addr;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        within(10, "the upgrade answer", tcp.read_exact(&mut byte))
            .await
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (opcode, payload) = read_frame(&mut tcp).await.expect("the challenge");
    assert_eq!(opcode, TEXT);
    assert!(String::from_utf8(payload).unwrap().contains("challenge"));
    tcp
}

/// The next server frame (opcode and payload), or `None` once the server has closed the socket.
async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    within(10, "a frame", tcp.read_exact(&mut head))
        .await
        .ok()?;
    assert_eq!(head[0] & 0x70, 0, "the server sets no reserved bit");
    assert!(head[0] & 0x80 != 0, "the server does not fragment");
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).await.unwrap();
            usize::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).await.unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    within(10, "a frame's payload", tcp.read_exact(&mut payload))
        .await
        .unwrap();
    Some((head[0] & 0x0f, payload))
}

/// What the server sent up to and including its close frame: text messages as JSON, pong
/// payloads, and the close code and reason. Then checks that it closed the socket.
#[derive(Debug, Default)]
struct Heard {
    texts: Vec<serde_json::Value>,
    pongs: Vec<Vec<u8>>,
    close: Option<(u16, String)>,
}

async fn until_close(tcp: &mut TcpStream) -> Heard {
    let mut heard = Heard::default();
    while let Some((opcode, payload)) = read_frame(tcp).await {
        match opcode {
            TEXT => heard
                .texts
                .push(serde_json::from_slice(&payload).expect("JSON text")),
            PONG => heard.pongs.push(payload),
            PING => {}
            CLOSE => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = String::from_utf8(payload[2..].to_vec()).unwrap();
                heard.close = Some((code, reason));
                // Then the server ends the connection: end of stream, or a reset when it
                // closed with bytes of ours unread (a frame it refused before its payload).
                let mut rest = Vec::new();
                let end = within(10, "the end of the connection", tcp.read_to_end(&mut rest));
                if let Err(e) = end.await {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                }
                assert!(rest.is_empty(), "nothing after the close frame: {rest:?}");
                return heard;
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    heard
}

/// Sends `bytes` on a fresh connection and returns the close code the server answers with.
async fn close_code_after(server: &TestServer, bytes: Vec<u8>) -> (u16, String) {
    let mut tcp = open(server).await;
    tcp.write_all(&bytes).await.unwrap();
    until_close(&mut tcp)
        .await
        .close
        .expect("the server sends a close frame")
}

#[test]
fn control_frames_between_fragments_keep_the_message() {
    smol::block_on(async {
        let server = start(|_| {});
        let mut tcp = open(&server).await;
        // Each ping is answered while its message is still unfinished.
        let pings: [(Vec<u8>, &[u8]); 4] = [
            (frame(TEXT, false, br#"{"type":"#), b"between"),
            (frame(CONT, false, br#""dan"#), b""),
            // A character split across two fragments is valid UTF-8 once whole.
            (
                [
                    frame(CONT, true, br#"ce"}"#),
                    frame(TEXT, false, &[b'"', 0xc3]),
                ]
                .concat(),
                &[b'x'; 125],
            ),
            // A fragmented binary message around a ping is read whole, then refused as binary.
            (
                [
                    frame(CONT, true, &[0xa9, b'"']),
                    frame(BINARY, false, &[1, 2]),
                ]
                .concat(),
                b"bin",
            ),
        ];
        let mut texts = Vec::new();
        for (before, ping) in pings {
            tcp.write_all(&[before, frame(PING, true, ping)].concat())
                .await
                .unwrap();
            loop {
                match read_frame(&mut tcp).await.expect("a pong") {
                    (PONG, payload) => {
                        assert_eq!(payload, ping);
                        break;
                    }
                    (TEXT, t) => texts.push(serde_json::from_slice(&t).unwrap()),
                    (PING, _) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        let mut bytes = frame(PONG, true, b"unasked");
        bytes.extend(frame(CONT, true, &[3]));
        bytes.extend(frame(CLOSE, true, &close_payload(1000, b"done")));
        tcp.write_all(&bytes).await.unwrap();
        let mut heard = until_close(&mut tcp).await;
        texts.append(&mut heard.texts);
        let heard = Heard { texts, ..heard };
        let codes: Vec<_> = heard.texts.iter().map(|t| t["code"].clone()).collect();
        assert_eq!(codes, ["unknown_type", "bad_json", "binary_unsupported"]);
        assert!(heard.texts[0]["message"]
            .as_str()
            .unwrap()
            .contains("dance"));
        assert_eq!(heard.close, Some((1000, String::new())));
    });
}

#[test]
fn invalid_utf8_closes_with_1007() {
    smol::block_on(async {
        let server = start(|_| {});
        let mut split = frame(TEXT, false, b"ok ");
        split.extend(frame(CONT, true, &[0xc3, 0x28]));
        for bytes in [frame(TEXT, true, &[b'a', 0xff, b'b']), split] {
            let (code, reason) = close_code_after(&server, bytes).await;
            assert_eq!(code, 1007, "{reason}");
            assert!(reason.contains("text message"), "{reason}");
        }
        let reason = close_payload(1000, &[0xc3, 0x28]);
        assert_eq!(
            close_code_after(&server, frame(CLOSE, true, &reason))
                .await
                .0,
            1007
        );
    });
}

#[test]
fn framing_violations_close_with_1002() {
    smol::block_on(async {
        let server = start(|_| {});
        let mut unmasked = vec![0x81u8, 2];
        unmasked.extend_from_slice(b"hi");
        let mut nested = frame(TEXT, false, b"a");
        nested.extend(frame(TEXT, true, b"b"));
        let cases = [
            (frame(PING, false, b"x"), "fragmented control frame"),
            (frame(PING, true, &[0; 126]), "control frame over 125 bytes"),
            (
                frame(CLOSE, true, &[0; 126]),
                "control frame over 125 bytes",
            ),
            (raw_frame(0x80 | 0x40 | TEXT, b"{}"), "reserved bits set"),
            (raw_frame(0x80 | 0x20 | PING, b""), "reserved bits set"),
            (raw_frame(0x80 | 0x10 | TEXT, b"{}"), "reserved bits set"),
            (frame(0x3, true, b""), "unknown opcode"),
            (frame(0x7, true, b""), "unknown opcode"),
            (frame(0xB, true, b""), "unknown opcode"),
            (frame(0xF, true, b""), "unknown opcode"),
            (frame(CONT, true, b"x"), "continuation without a message"),
            (nested, "new message inside a fragmented one"),
            (unmasked, "client frames must be masked"),
            (frame(CLOSE, true, &[3]), "one-byte payload"),
        ];
        for (bytes, why) in cases {
            let (code, reason) = close_code_after(&server, bytes).await;
            assert_eq!(code, 1002, "{why}: {reason}");
            assert!(reason.contains(why), "{why}: {reason}");
        }
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
        ] {
            let bytes = frame(CLOSE, true, &close_payload(code, b""));
            let (answer, reason) = close_code_after(&server, bytes).await;
            assert_eq!(answer, 1002, "close code {code}: {reason}");
            assert!(reason.contains("close code"), "{reason}");
        }
    });
}

#[test]
fn a_client_close_is_answered_with_its_code() {
    smol::block_on(async {
        let server = start(|_| {});
        assert_eq!(
            close_code_after(&server, frame(CLOSE, true, b"")).await.0,
            1000
        );
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let bytes = frame(CLOSE, true, &close_payload(code, "fin ✓".as_bytes()));
            assert_eq!(close_code_after(&server, bytes).await.0, code);
        }
        // A ping that came before the close is answered before the close (§5.5.2).
        let mut tcp = open(&server).await;
        let mut bytes = frame(PING, true, b"last");
        bytes.extend(frame(CLOSE, true, &close_payload(1001, b"")));
        tcp.write_all(&bytes).await.unwrap();
        let heard = until_close(&mut tcp).await;
        assert_eq!(heard.pongs, [b"last".to_vec()]);
        assert_eq!(heard.close, Some((1001, String::new())));
        // Mid-message, a close still ends the connection cleanly.
        let mut bytes = frame(TEXT, false, b"{");
        bytes.extend(frame(CLOSE, true, &close_payload(1000, b"")));
        assert_eq!(close_code_after(&server, bytes).await.0, 1000);
    });
}

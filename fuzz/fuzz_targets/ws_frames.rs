//! Fuzzes the WebSocket frame reader: arbitrary bytes from a client, delivered in chunks of
//! sizes the input chooses, read as messages until the reader refuses or the bytes run out.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use dyspatcher::ws::{FrameReader, Incoming, WsError};
use futures_lite::io::AsyncRead;
use libfuzzer_sys::fuzz_target;

/// A largest message small enough that the fuzzer crosses it often.
const MAX: usize = 1024;

/// Hands out `data` a few bytes at a time, as a socket might.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let size = match self.sizes {
            [] => usize::MAX,
            s => usize::from(s[self.turn % s.len()]).max(1),
        };
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

fuzz_target!(|input: &[u8]| {
    // The first byte says how many chunk sizes follow; the rest is the byte stream.
    let (sizes, data) = match input.split_first() {
        Some((&k, rest)) => rest.split_at(usize::from(k % 8).min(rest.len())),
        None => return,
    };
    let mut reader = FrameReader::new(
        Chunked {
            data,
            sizes,
            turn: 0,
        },
        MAX,
    );
    futures_lite::future::block_on(async {
        loop {
            match reader.next().await {
                Ok(Incoming::Text(t)) => assert!(t.len() <= MAX),
                Ok(Incoming::Ping(p)) => assert!(p.len() <= 125),
                Ok(Incoming::Close(Some(code))) => {
                    assert!(dyspatcher::ws::close_code_allowed(code))
                }
                Ok(_) => {}
                Err(WsError::Io(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
                    break;
                }
                Err(e) => {
                    assert!(e.close_code().is_some());
                    break;
                }
            }
        }
    });
});

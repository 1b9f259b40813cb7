//! Fuzzes the HTTP request head parser: arbitrary bytes from a client, delivered in chunks of
//! sizes the input chooses, read as pipelined request heads; each head is then checked as the
//! server checks it (`Host` and `Origin`, the WebSocket upgrade).
#![no_main]

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::task::{Context, Poll};

use dyspatcher::http::{self, HeadError, HostName, Hosts, MAX_HEAD};
use futures_lite::io::AsyncRead;
use libfuzzer_sys::fuzz_target;

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
            s => usize::from(s[self.turn % s.len()]).max(1) * 16,
        };
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(n))
    }
}

fuzz_target!(|input: &[u8]| {
    let (sizes, data) = match input.split_first() {
        Some((&k, rest)) => rest.split_at(usize::from(k % 8).min(rest.len())),
        None => return,
    };
    // A server on loopback and one address, with a certificate name and an allowed host.
    let tls = input.first().is_some_and(|k| k & 0x80 != 0);
    let hosts = Hosts::new(
        &[
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)),
        ],
        tls,
    )
    .with_own([HostName::parse("chat.example.org").expect("a valid name")])
    .with_allowed([HostName::parse("proxy.example.net").expect("a valid name")]);
    let mut reader = Chunked {
        data,
        sizes,
        turn: 0,
    };
    let mut buf = Vec::new();
    futures_lite::future::block_on(async {
        loop {
            match http::read_head(&mut reader, &mut buf).await {
                Ok(req) => {
                    assert!(req.path.starts_with('/'));
                    let _ = req.keep_alive();
                    if let Err(refused) = hosts.check(&req) {
                        assert!(["400", "421", "403"].contains(&&refused.status[..3]));
                    }
                    if let Ok(accept) = http::check_upgrade(&req) {
                        assert_eq!(accept.len(), 28);
                    }
                    let _ = http::asset(&req.path);
                }
                Err(HeadError::Closed) => break,
                Err(HeadError::Io(e)) => panic!("the reader never fails: {e}"),
                Err(HeadError::TooLarge) => {
                    assert!(buf.len() > MAX_HEAD);
                    break;
                }
                Err(HeadError::Malformed(_)) => break,
            }
        }
    });
});

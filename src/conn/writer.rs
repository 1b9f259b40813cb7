//! The writing side of a connection: it drains the outgoing queue in batches, one system call
//! per batch. Under load a connection is written at most every few milliseconds, so each write
//! carries more frames; join notices wait a little for one another.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::StreamExt;

use super::timeout;
use crate::hub::{self, is_join_notice, Controls, Frames};
use crate::ws::{self, Frame};

/// Time allowed to write one batch (or the close frame) before the peer is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Shortest time between two writes to one connection. Frames that come sooner wait and go out
/// together: under load every connection is written at most this often, and each write carries
/// more frames, instead of one system call per frame per recipient. An idle connection's first
/// frame goes out at once.
const WRITE_INTERVAL: Duration = Duration::from_millis(5);
/// Longest a `joined` notice waits to share a write with the next ones.
const NOTICE_WAIT: Duration = Duration::from_millis(50);
/// Most frames in one write.
const MAX_BATCH: usize = 256;
/// Longest a connection is kept, after its close frame, for the peer to close its side.
pub const LINGER: Duration = Duration::from_secs(2);

pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    frames: Frames,
    controls: Controls,
    ping_every: Duration,
) {
    // The ping timer lives across iterations: registering it anew for every batch would cost
    // more than the batch.
    let mut ping = smol::Timer::interval(ping_every);
    let mut batch: Vec<Frame> = Vec::new();
    // The last two writes: frames are held back only in a busy spell (two writes in a row closer
    // than the interval), so a lone answer (the welcome after a join) never waits.
    let mut last_write: Option<Instant> = None;
    let mut busy = false;
    loop {
        batch.clear();
        if let Some((code, reason)) = controls.take_close() {
            // What was queued before the close still goes out (a refused join's error, say),
            // and so does the pong of a ping that came before the peer's close (RFC 6455 §5.5.2).
            if let Some(p) = controls.take_pong() {
                batch.push(ws::pong_frame(&p));
            }
            frames.drain_into(&mut batch, usize::MAX);
            batch.push(ws::close_frame(code, &reason));
            let _ = timeout(Duration::from_secs(5), ws::write_batch(&mut writer, &batch)).await;
            return;
        }
        if let Some(p) = controls.take_pong() {
            batch.push(ws::pong_frame(&p));
        }
        frames.drain_into(&mut batch, MAX_BATCH);
        if batch.is_empty() {
            let ready = future::or(async { Some(frames.ready().await) }, async {
                ping.next().await;
                None
            })
            .await;
            match ready {
                None => batch.push(ws::ping_frame()),
                Some(Err(hub::Closed)) => return,
                // Look at the requests again before taking frames.
                Some(Ok(())) => continue,
            }
        } else {
            let due = last_write.map(|t| t + WRITE_INTERVAL).filter(|_| busy);
            gather(&frames, &mut batch, due).await;
        }
        match timeout(WRITE_TIMEOUT, ws::write_batch(&mut writer, &batch)).await {
            Some(Ok(())) => {
                let now = Instant::now();
                busy = last_write.is_some_and(|t| now < t + WRITE_INTERVAL);
                last_write = Some(now);
            }
            _ => return,
        }
    }
}

/// Adds to `batch` what else comes soon. A batch of nothing but join notices waits up to
/// [`NOTICE_WAIT`] for more, ending as soon as anything else comes: when people join one after
/// another, each member gets their notices a few at a time instead of one write each. Otherwise,
/// in a busy spell, the batch waits until `due`.
async fn gather(frames: &Frames, batch: &mut Vec<Frame>, due: Option<Instant>) {
    if batch.iter().all(|f| is_join_notice(f)) {
        // Woken only by something that is not a notice: the outbox holds back the wake-ups.
        let deadline = smol::Timer::at(Instant::now() + NOTICE_WAIT);
        future::or(async { drop(frames.urgent().await) }, async {
            deadline.await;
        })
        .await;
        frames.drain_into(batch, MAX_BATCH);
    } else if let Some(due) = due.filter(|&d| Instant::now() < d) {
        smol::Timer::at(due).await;
        frames.drain_into(batch, MAX_BATCH);
    }
}

/// One half of a stream shared by the reader and the writer. Unlike `futures_lite::io::split`,
/// it passes vectored writes through, so a batch of frames is one system call.
pub struct Half<S>(Arc<Mutex<S>>);

pub fn split<S>(stream: S) -> (Half<S>, Half<S>) {
    let shared = Arc::new(Mutex::new(stream));
    (Half(shared.clone()), Half(shared))
}

impl<S> Half<S> {
    /// A third handle on the same stream, for [`linger`] once the other two are gone.
    pub fn another(&self) -> Self {
        Self(self.0.clone())
    }

    fn with<T>(&self, f: impl FnOnce(Pin<&mut S>) -> T) -> T
    where
        S: Unpin,
    {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(Pin::new(&mut *inner))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Half<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Half<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_write_vectored(cx, bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_close(cx))
    }
}

/// Ends a connection whose close frame was written: shuts the writing side (the peer reads the
/// close frame, then the end of the stream) and reads and drops whatever the peer still sends
/// until it closes too, or [`LINGER`] passed. Dropping a socket with unread bytes, or receiving
/// bytes after it is dropped, makes the kernel answer with a reset, and a reset makes the peer's
/// kernel discard what the peer had not read yet: the close frame and its code with it.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut half: Half<S>) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let _ = timeout(LINGER, async {
        let _ = half.close().await;
        let mut buf = [0u8; 4096];
        while let Ok(n) = half.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts write calls; accepts everything.
    #[derive(Default)]
    struct Calls(usize, usize);

    impl AsyncWrite for Calls {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            me.0 += 1;
            me.1 += b.len();
            Poll::Ready(Ok(b.len()))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            let n = bufs.iter().map(|b| b.len()).sum();
            me.0 += 1;
            me.1 += n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_batch_is_one_write_through_the_split_half() {
        let frames: Vec<Frame> = (0..50).map(|i| ws::text_frame(&[b'x'; 100][..i])).collect();
        let (_, mut half) = split(Calls::default());
        smol::block_on(ws::write_batch(&mut half, &frames)).unwrap();
        let total: usize = frames.iter().map(|f| f.len()).sum();
        half.with(|c| assert_eq!((c.0, c.1), (1, total)));
    }

    #[test]
    fn only_join_notices_may_wait() {
        assert!(is_join_notice(&ws::text_frame(
            br#"{"type":"joined","member":{"name":"alice"}}"#
        )));
        for other in [
            &br#"{"type":"left","key_id":"k","name":"n","reason":"left"}"#[..],
            br#"{"type":"all","id":"x"}"#,
            br#"{"type":"welcome"}"#,
        ] {
            assert!(!is_join_notice(&ws::text_frame(other)));
        }
    }
}

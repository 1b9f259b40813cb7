//! A connection's outgoing queue: frames to send in order, bounded in bytes, and the requests
//! that go around them (close, answer a ping). It is a deque under a lock and the writer's waker:
//! an idle connection holds about 150 bytes, where a channel would hold a kilobyte and more of
//! queue padded against false sharing (and a bounded one every slot). Sequenced frames are queued
//! as their shared JSON and numbered only when written, so one encoding serves every recipient.
//! File chunks wait in a second lane that the writer takes only when the first is empty: chat
//! never waits behind a file.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use crate::ws::{self, Frame};

/// One queued item: a whole frame, or a member's sequenced frame (its shared JSON payload, to be
/// written as `{"seq":N,` followed by the payload after its opening brace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A frame of this connection only (challenge, welcome, ack, error, notice).
    Frame(Frame),
    /// A frame addressed to the member, with its sequence number.
    Seq(u64, Payload),
    /// A file chunk addressed to the member, with its chunk sequence number (`cseq`).
    Chunk(u64, Payload),
}

/// A JSON object as shared between the recipients (and mailboxes) of one frame.
pub type Payload = Arc<[u8]>;

impl Item {
    /// Bytes this item holds (counted against the queue's bound).
    pub fn len(&self) -> usize {
        match self {
            Item::Frame(f) => f.len(),
            Item::Seq(_, p) | Item::Chunk(_, p) => p.len(),
        }
    }

    /// Whether the item holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame to write.
    pub fn into_frame(self) -> Frame {
        match self {
            Item::Frame(f) => f,
            Item::Seq(seq, p) => {
                let head = format!("{{\"seq\":{seq},");
                let rest = p.get(1..).unwrap_or_default();
                ws::text_frame_of(&[head.as_bytes(), rest])
            }
            Item::Chunk(cseq, p) => {
                let head = format!("{{\"cseq\":{cseq},");
                let rest = p.get(1..).unwrap_or_default();
                ws::text_frame_of(&[head.as_bytes(), rest])
            }
        }
    }

    fn is_join_notice(&self) -> bool {
        match self {
            Item::Frame(f) => is_join_notice(f),
            Item::Seq(_, p) => p.starts_with(br#"{"type":"joined""#),
            Item::Chunk(..) => false,
        }
    }
}

impl From<Frame> for Item {
    fn from(f: Frame) -> Self {
        Item::Frame(f)
    }
}

/// Queue capacity kept after a burst; more is given back once the queue is empty.
const KEEP: usize = 32;
/// Most chunks taken into one batch: a chat frame queued while a batch is written waits behind
/// at most this many chunks (about 350 KiB).
pub const CHUNKS_PER_BATCH: usize = 4;

#[derive(Default)]
struct State {
    frames: VecDeque<Item>,
    /// File chunks, written only when `frames` is empty.
    chunks: VecDeque<Item>,
    bytes: usize,
    waker: Option<Waker>,
    /// The writer holds join notices back and wants waking only for anything else.
    urgent_only: bool,
    close: Option<(u16, String)>,
    pong: Option<Vec<u8>>,
    senders: usize,
    receiver_gone: bool,
}

impl State {
    fn has_work(&self) -> bool {
        !self.frames.is_empty()
            || !self.chunks.is_empty()
            || self.close.is_some()
            || self.pong.is_some()
    }
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and wakes the writer if it waits for this.
    fn update<T>(&self, urgent: bool, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.lock();
        let out = f(&mut state);
        let wanted = (urgent || !state.urgent_only) && state.has_work();
        let waker = if wanted || state.senders == 0 {
            state.waker.take()
        } else {
            None
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        out
    }
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// `capacity` bytes are waiting already: the reader is too slow.
    Full,
    /// The connection's writer has ended.
    Closed,
}

/// The sending side of a connection's bounded outgoing queue.
pub struct Outbox(Arc<Shared>);

/// The writer's side: the frames, in order.
pub struct Frames(Arc<Shared>);

/// The writer's side of the requests (see [`Outbox::close`] and [`Outbox::pong`]).
pub struct Controls(Arc<Shared>);

/// The queue ended: every [`Outbox`] is gone and nothing is left.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl Outbox {
    /// A new outbox holding at most `capacity` bytes, and its receiving ends.
    pub fn new(capacity: usize) -> (Self, Frames, Controls) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                senders: 1,
                ..State::default()
            }),
            capacity,
        });
        (
            Self(shared.clone()),
            Frames(shared.clone()),
            Controls(shared),
        )
    }

    /// Queues a frame or item, unless it would take the queue past `capacity` bytes.
    pub fn push(&self, item: impl Into<Item>) -> Result<(), PushError> {
        let item = item.into();
        let capacity = self.0.capacity;
        let urgent = !item.is_join_notice();
        self.0.update(urgent, |s| {
            if s.receiver_gone {
                Err(PushError::Closed)
            } else if s.bytes + item.len() > capacity {
                Err(PushError::Full)
            } else {
                s.bytes += item.len();
                match item {
                    Item::Chunk(..) => s.chunks.push_back(item),
                    _ => s.frames.push_back(item),
                }
                Ok(())
            }
        })
    }

    /// Asks for a close: the writer sends the frames already queued, then the close frame, and
    /// ends. The first close asked for is the one sent; a full queue does not hold it back.
    pub fn close(&self, code: u16, reason: &str) {
        self.0.update(true, |s| {
            s.close.get_or_insert_with(|| (code, reason.to_string()));
        });
    }

    /// Asks for a close at once: what is queued is dropped and the close frame goes next, in
    /// place of any close asked for before.
    pub fn abort(&self, code: u16, reason: &str) {
        self.0.update(true, |s| {
            s.frames = VecDeque::new();
            s.chunks = VecDeque::new();
            s.bytes = 0;
            s.close = Some((code, reason.to_string()));
        });
    }

    /// Asks the writer to answer a ping.
    pub fn pong(&self, payload: Vec<u8>) {
        self.0.update(true, |s| s.pong = Some(payload));
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.update(true, |s| s.senders -= 1);
    }
}

impl Frames {
    /// Waits until there are frames or requests; `Err(Closed)` once every outbox is gone and
    /// nothing is left to do.
    pub async fn ready(&self) -> Result<(), Closed> {
        self.wait(false).await
    }

    /// Waits, with frames already queued, for anything but a join notice (or a request).
    pub async fn urgent(&self) -> Result<(), Closed> {
        self.wait(true).await
    }

    async fn wait(&self, urgent_only: bool) -> Result<(), Closed> {
        poll_fn(|cx| {
            let mut s = self.0.lock();
            let urgent = s.close.is_some()
                || s.pong.is_some()
                || !s.chunks.is_empty()
                || s.frames.iter().any(|f| !f.is_join_notice());
            if urgent || (!urgent_only && s.has_work()) {
                s.urgent_only = false;
                return Poll::Ready(Ok(()));
            }
            if s.senders == 0 {
                s.urgent_only = false;
                return Poll::Ready(Err(Closed));
            }
            s.urgent_only = urgent_only;
            if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Moves queued frames into `batch` until it holds `max`: every frame of the first lane,
    /// then chunks (at most [`CHUNKS_PER_BATCH`]) only if the first lane is empty.
    pub fn drain_into(&self, batch: &mut Vec<Frame>, max: usize) {
        let mut s = self.0.lock();
        let n = max.saturating_sub(batch.len()).min(s.frames.len());
        let taken: usize = s.frames.iter().take(n).map(Item::len).sum();
        s.bytes -= taken;
        batch.extend(s.frames.drain(..n).map(Item::into_frame));
        if s.frames.is_empty() && s.frames.capacity() > KEEP {
            s.frames = VecDeque::new();
        }
        if s.frames.is_empty() {
            let n = max
                .saturating_sub(batch.len())
                .min(CHUNKS_PER_BATCH)
                .min(s.chunks.len());
            let taken: usize = s.chunks.iter().take(n).map(Item::len).sum();
            s.bytes -= taken;
            batch.extend(s.chunks.drain(..n).map(Item::into_frame));
            if s.chunks.is_empty() && s.chunks.capacity() > KEEP {
                s.chunks = VecDeque::new();
            }
        }
    }

    /// The next frame, waiting for one; requests are ignored (for the server's own endpoint,
    /// which has no socket).
    pub async fn recv(&self) -> Result<Frame, Closed> {
        loop {
            self.ready().await?;
            let mut s = self.0.lock();
            s.close = None;
            s.pong = None;
            if let Some(f) = s.frames.pop_front().or_else(|| s.chunks.pop_front()) {
                s.bytes -= f.len();
                return Ok(f.into_frame());
            }
        }
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.receiver_gone = true;
        s.frames = VecDeque::new();
        s.chunks = VecDeque::new();
        s.bytes = 0;
    }
}

impl Controls {
    /// The close asked for, if any.
    pub fn take_close(&self) -> Option<(u16, String)> {
        self.0.lock().close.take()
    }

    /// The payload of a ping to answer, if any.
    pub fn take_pong(&self) -> Option<Vec<u8>> {
        self.0.lock().pong.take()
    }
}

/// Whether `frame` is a `joined` notice, which may wait a little to share a write.
pub fn is_join_notice(frame: &[u8]) -> bool {
    let payload = crate::ws::payload(frame);
    let body = match payload.strip_prefix(br#"{"seq":"#) {
        Some(rest) => match rest.iter().position(|&b| b == b',') {
            Some(i) => &rest[i..],
            None => return false,
        },
        None => payload,
    };
    body.strip_prefix(b",")
        .map_or(body.starts_with(br#"{"type":"joined""#), |b| {
            b.starts_with(br#""type":"joined""#)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequenced_items_are_numbered_when_written() {
        let payload: Payload = Arc::from(&br#"{"type":"left","name":"x"}"#[..]);
        let frame = Item::Seq(42, payload).into_frame();
        assert_eq!(
            ws::payload(&frame),
            br#"{"seq":42,"type":"left","name":"x"}"#
        );
        let joined: Payload = Arc::from(&br#"{"type":"joined","member":{}}"#[..]);
        assert!(is_join_notice(&Item::Seq(7, joined).into_frame()));
        assert!(!is_join_notice(&frame));
    }

    fn frame(b: &[u8]) -> Frame {
        Frame::from(b)
    }

    #[test]
    fn bounded_in_order_and_closed_both_ways() {
        let (outbox, frames, controls) = Outbox::new(5);
        assert_eq!(outbox.push(frame(b"a")), Ok(()));
        assert_eq!(outbox.push(frame(b"bcde")), Ok(()));
        assert_eq!(outbox.push(frame(b"c")), Err(PushError::Full));
        outbox.close(4002, "too slow");
        outbox.close(1000, "later");
        let mut batch = Vec::new();
        smol::block_on(frames.ready()).unwrap();
        frames.drain_into(&mut batch, 10);
        assert_eq!(batch, vec![frame(b"a"), frame(b"bcde")]);
        // Sent bytes no longer count.
        assert_eq!(outbox.push(frame(b"fghij")), Ok(()));
        frames.drain_into(&mut batch, 10);
        assert_eq!(controls.take_close(), Some((4002, "too slow".into())));
        assert_eq!(controls.take_close(), None);
        let second = outbox.clone();
        drop(outbox);
        outbox_still_open(&frames);
        drop(second);
        assert_eq!(smol::block_on(frames.ready()), Err(Closed));
        let (outbox, frames, controls) = Outbox::new(100);
        outbox.push(frame(b"queued")).unwrap();
        outbox.close(4002, "too slow");
        outbox.abort(4007, "now");
        let mut batch = Vec::new();
        frames.drain_into(&mut batch, usize::MAX);
        assert!(batch.is_empty(), "an abort drops what was queued");
        assert_eq!(controls.take_close(), Some((4007, "now".into())));
        assert_eq!(outbox.push(frame(b"y")), Ok(()));
        let (outbox, frames, _) = Outbox::new(2);
        drop(frames);
        assert_eq!(outbox.push(frame(b"x")), Err(PushError::Closed));
    }

    #[test]
    fn chunks_wait_until_no_other_frame_is_queued() {
        let (outbox, frames, _) = Outbox::new(1 << 20);
        let chunk: Payload = Arc::from(&br#"{"type":"chunk","i":0}"#[..]);
        for c in 1..=6 {
            outbox.push(Item::Chunk(c, chunk.clone())).unwrap();
        }
        outbox.push(frame(b"chat")).unwrap();
        let mut batch = Vec::new();
        frames.drain_into(&mut batch, 100);
        assert_eq!(
            batch[0],
            frame(b"chat"),
            "the chat frame queued last goes first"
        );
        assert_eq!(batch.len(), 1 + CHUNKS_PER_BATCH);
        assert_eq!(
            ws::payload(&batch[1]),
            br#"{"cseq":1,"type":"chunk","i":0}"#
        );
        outbox.push(frame(b"more chat")).unwrap();
        batch.clear();
        frames.drain_into(&mut batch, 100);
        assert_eq!(batch[0], frame(b"more chat"));
        assert_eq!(
            ws::payload(&batch[1]),
            br#"{"cseq":5,"type":"chunk","i":0}"#
        );
    }

    fn outbox_still_open(frames: &Frames) {
        let waiting = smol::block_on(futures_lite::future::or(
            async { Some(frames.ready().await) },
            async { None },
        ));
        assert_eq!(waiting, None);
    }

    #[test]
    fn a_waiting_writer_is_woken() {
        use std::future::Future;
        use std::sync::atomic::{AtomicBool, Ordering};
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let (outbox, frames, _) = Outbox::new(1024);
        let mut ready = std::pin::pin!(frames.ready());
        assert!(ready.as_mut().poll(&mut cx).is_pending());
        outbox.push(frame(b"late")).unwrap();
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(ready.as_mut().poll(&mut cx).is_ready());

        // Waiting for something urgent, a join notice does not wake; anything else does.
        flag.0.store(false, Ordering::SeqCst);
        let mut batch = Vec::new();
        frames.drain_into(&mut batch, 10);
        let mut urgent = std::pin::pin!(frames.urgent());
        assert!(urgent.as_mut().poll(&mut cx).is_pending());
        let notice: Payload = Arc::from(&br#"{"type":"joined","member":{}}"#[..]);
        outbox.push(Item::Seq(3, notice)).unwrap();
        assert!(!flag.0.load(Ordering::SeqCst));
        assert!(urgent.as_mut().poll(&mut cx).is_pending());
        outbox.push(frame(b"message")).unwrap();
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(urgent.as_mut().poll(&mut cx).is_ready());
    }
}

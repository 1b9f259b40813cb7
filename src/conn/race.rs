//! Two futures of one task, each polled only when it was woken: a connection's reader and writer
//! share a task (one allocation, one future) but not their wake-ups. `future::or` polls both
//! whenever either is woken, so every frame queued for a connection also tried to read its socket
//! (a `recvfrom` answered `EAGAIN` and the readiness registered again: two system calls), and
//! every frame read polled the writer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Runs `a` and `b` until either ends, with the output of the one that ended first.
pub async fn race<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    let parent = Arc::new(Mutex::new(None::<Waker>));
    let slots = [Slot::new(&parent), Slot::new(&parent)];
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    std::future::poll_fn(|cx| {
        {
            let mut p = parent.lock().unwrap_or_else(|e| e.into_inner());
            if !p.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *p = Some(cx.waker().clone());
            }
        }
        if let Some(out) = slots[0].poll_if_woken(a.as_mut()) {
            return Poll::Ready(out);
        }
        if let Some(out) = slots[1].poll_if_woken(b.as_mut()) {
            return Poll::Ready(out);
        }
        Poll::Pending
    })
    .await
}

/// One branch's waker: it marks the branch woken and wakes the task.
struct Branch {
    woken: AtomicBool,
    parent: Arc<Mutex<Option<Waker>>>,
}

/// A branch and the waker its future is polled with.
struct Slot {
    branch: Arc<Branch>,
    waker: Waker,
}

impl Slot {
    fn new(parent: &Arc<Mutex<Option<Waker>>>) -> Self {
        let branch = Arc::new(Branch {
            // Both are polled the first time.
            woken: AtomicBool::new(true),
            parent: parent.clone(),
        });
        let waker = Waker::from(branch.clone());
        Self { branch, waker }
    }

    /// Polls `f` if it was woken since its last poll.
    fn poll_if_woken<T>(&self, f: Pin<&mut impl Future<Output = T>>) -> Option<T> {
        if !self.branch.woken.swap(false, Ordering::AcqRel) {
            return None;
        }
        match f.poll(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        }
    }
}

impl Wake for Branch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let parent = self
            .parent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(w) = parent {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Pending until `ready` is set; counts its polls; keeps its waker for the test to call.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
        out: u8,
    }

    impl Future for Probe {
        type Output = u8;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(self.out);
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    struct Handle {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    fn probe(out: u8) -> (Probe, Handle) {
        let h = Handle {
            polls: Arc::default(),
            ready: Arc::default(),
            waker: Arc::default(),
        };
        let p = Probe {
            polls: h.polls.clone(),
            ready: h.ready.clone(),
            waker: h.waker.clone(),
            out,
        };
        (p, h)
    }

    impl Handle {
        fn wake(&self, ready: bool) {
            self.ready.store(ready, Ordering::SeqCst);
            self.waker
                .lock()
                .unwrap()
                .take()
                .expect("polled once")
                .wake();
        }
        fn polls(&self) -> usize {
            self.polls.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn only_the_woken_branch_is_polled_and_the_first_to_end_wins() {
        let (a, ha) = probe(1);
        let (b, hb) = probe(2);
        let counter = Arc::new(AtomicUsize::new(0));
        struct Count(Arc<AtomicUsize>);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let task_waker = Waker::from(Arc::new(Count(counter.clone())));
        let mut cx = Context::from_waker(&task_waker);
        let mut both = std::pin::pin!(race(a, b));
        assert!(both.as_mut().poll(&mut cx).is_pending());
        assert_eq!((ha.polls(), hb.polls()), (1, 1));
        // Waking the second branch wakes the task and polls the second branch only.
        hb.wake(false);
        assert_eq!(counter.load(Ordering::SeqCst), 1);
        assert!(both.as_mut().poll(&mut cx).is_pending());
        assert_eq!((ha.polls(), hb.polls()), (1, 2));
        // A poll of the task with nothing woken polls neither.
        assert!(both.as_mut().poll(&mut cx).is_pending());
        assert_eq!((ha.polls(), hb.polls()), (1, 2));
        ha.wake(true);
        assert_eq!(counter.load(Ordering::SeqCst), 2);
        assert_eq!(both.as_mut().poll(&mut cx), Poll::Ready(1));
        assert_eq!((ha.polls(), hb.polls()), (2, 2));
    }
}

//! The bytes of messages waiting for the hub, bounded: a reader takes credit for a message's size
//! before handing it over and the hub gives it back when it has dealt with the message. A member
//! that sends faster than the hub can route (the hub serialises, checks and fans out) waits in
//! its reader — TCP pushes back on it — instead of filling memory with parsed messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of messages that may wait for the hub at once, from all connections together.
pub const HUB_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// The shared budget.
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
    freed: event_listener::Event,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
            freed: event_listener::Event::new(),
        })
    }

    /// Takes `bytes` of credit, waiting until there is room. A message larger than the whole
    /// budget still goes through, alone.
    pub async fn take(self: &Arc<Self>, bytes: usize) -> Credit {
        loop {
            if self.try_take(bytes) {
                return Credit {
                    budget: Some(self.clone()),
                    bytes,
                };
            }
            let listener = self.freed.listen();
            if self.try_take(bytes) {
                return Credit {
                    budget: Some(self.clone()),
                    bytes,
                };
            }
            listener.await;
        }
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used + bytes <= self.limit).then_some(used + bytes)
            })
            .is_ok()
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Credit held by a message on its way through the hub; given back on drop.
pub struct Credit {
    budget: Option<Arc<Budget>>,
    bytes: usize,
}

impl Credit {
    /// No credit: for the server's own endpoint, whose messages the operator types.
    pub fn none() -> Self {
        Self {
            budget: None,
            bytes: 0,
        }
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
            budget.freed.notify(usize::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takers_wait_for_room_and_a_large_message_goes_alone() {
        smol::block_on(async {
            let budget = Budget::new(100);
            let a = budget.take(60).await;
            let waiting = smol::spawn({
                let budget = budget.clone();
                async move { budget.take(60).await }
            });
            smol::Timer::after(std::time::Duration::from_millis(50)).await;
            assert_eq!(budget.used(), 60, "the second waits");
            drop(a);
            let b = waiting.await;
            assert_eq!(budget.used(), 60);
            drop(b);
            let big = budget.take(1000).await;
            assert_eq!(budget.used(), 1000, "alone, over the budget");
            drop(big);
            assert_eq!(budget.used(), 0);
        });
    }
}

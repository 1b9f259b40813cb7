//! Connection slots: at most `--max-connections` at once and `--max-per-ip` from one address
//! (loopback counts only toward the total: everyone arriving through the SSH tunnel comes from
//! loopback). A share of the slots is kept for connections that have joined, and a connection
//! that has not yet sent a complete request head is the first to make room for a new one, so
//! silent sockets cannot lock anyone out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::Limits;

/// The share of `--max-connections` that only connections which have joined may fill: at most
/// `max - max / RESERVED_DIVISOR` connections may be waiting to join at once.
pub const RESERVED_DIVISOR: usize = 4;

/// Where a connection is in its life, for the accounting of slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing complete received yet (no TLS handshake or no request head).
    Silent,
    /// Heard from, not joined.
    Heard,
    /// Joined the chat.
    Joined,
}

struct Entry {
    ip: IpAddr,
    phase: Phase,
    /// Closes the connection when it is evicted.
    evict: async_channel::Sender<()>,
}

/// The slots in use.
#[derive(Default)]
pub struct Slots {
    total: usize,
    unjoined: usize,
    per_ip: HashMap<IpAddr, usize>,
    live: BTreeMap<u64, Entry>,
    /// Connections in [`Phase::Silent`], oldest first.
    silent: BTreeSet<u64>,
    next: u64,
}

/// Why a new connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `--max-per-ip` connections from this address.
    PerIp,
    /// Every slot that a new connection may take is in use by one that has been heard from.
    Total,
}

/// Most connections that may be waiting to join at once.
pub fn unjoined_cap(limits: &Limits) -> usize {
    (limits.max_connections - limits.max_connections / RESERVED_DIVISOR).max(1)
}

impl Slots {
    /// Gives a slot to a new connection from `ip`, closing the oldest silent connection if that is
    /// what it takes. The receiver is told when this connection is evicted in turn.
    pub fn acquire(
        &mut self,
        limits: &Limits,
        ip: IpAddr,
    ) -> Result<(u64, async_channel::Receiver<()>), Full> {
        let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if !ip.is_loopback() && from_ip >= limits.max_per_ip {
            return Err(Full::PerIp);
        }
        if self.total >= limits.max_connections || self.unjoined >= unjoined_cap(limits) {
            let oldest = self.silent.first().copied().ok_or(Full::Total)?;
            self.evict(oldest);
        }
        let id = self.next;
        self.next += 1;
        let (evict, evicted) = async_channel::bounded(1);
        self.total += 1;
        self.unjoined += 1;
        *self.per_ip.entry(ip).or_default() += 1;
        self.live.insert(
            id,
            Entry {
                ip,
                phase: Phase::Silent,
                evict,
            },
        );
        self.silent.insert(id);
        Ok((id, evicted))
    }

    fn evict(&mut self, id: u64) {
        if let Some(entry) = self.release(id) {
            let _ = entry.evict.try_send(());
        }
    }

    /// Frees the slot of `id` (when it ends or is evicted); the second time does nothing.
    fn release(&mut self, id: u64) -> Option<Entry> {
        let entry = self.live.remove(&id)?;
        self.silent.remove(&id);
        self.total -= 1;
        if entry.phase != Phase::Joined {
            self.unjoined -= 1;
        }
        if let Some(n) = self.per_ip.get_mut(&entry.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&entry.ip);
            }
        }
        Some(entry)
    }

    fn advance(&mut self, id: u64, to: Phase) {
        let Some(entry) = self.live.get_mut(&id) else {
            return;
        };
        if entry.phase == Phase::Silent {
            self.silent.remove(&id);
        }
        if to == Phase::Joined && entry.phase != Phase::Joined {
            self.unjoined -= 1;
        }
        entry.phase = to;
    }

    /// Connections in use: (all, waiting to join, silent).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.total, self.unjoined, self.silent.len())
    }
}

/// A held connection slot, released on drop.
pub struct Slot {
    slots: Arc<Mutex<Slots>>,
    id: u64,
}

impl Slot {
    /// Takes a slot from `slots` for a connection from `ip`.
    pub fn acquire(
        slots: &Arc<Mutex<Slots>>,
        limits: &Limits,
        ip: IpAddr,
    ) -> Result<(Self, async_channel::Receiver<()>), Full> {
        let (id, evicted) = lock(slots).acquire(limits, ip)?;
        Ok((
            Self {
                slots: slots.clone(),
                id,
            },
            evicted,
        ))
    }

    /// What the connection uses to say how far it got.
    pub fn progress(&self) -> Progress {
        Progress {
            slots: self.slots.clone(),
            id: self.id,
        }
    }
}

/// Tells the slots how far a connection got.
#[derive(Clone)]
pub struct Progress {
    slots: Arc<Mutex<Slots>>,
    id: u64,
}

impl Progress {
    /// The connection sent a complete request head: it may no longer be evicted for a new one.
    pub fn heard(&self) {
        lock(&self.slots).advance(self.id, Phase::Heard);
    }

    /// The connection joined: it no longer counts toward the connections waiting to join.
    pub fn joined(&self) {
        lock(&self.slots).advance(self.id, Phase::Joined);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.slots).release(self.id);
    }
}

fn lock(slots: &Mutex<Slots>) -> std::sync::MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_ip: usize) -> Limits {
        Limits {
            max_connections: max,
            max_per_ip: per_ip,
            ..Limits::default()
        }
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));
    const LOOP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn per_ip_limit_spares_loopback() {
        let l = limits(100, 2);
        let mut s = Slots::default();
        for _ in 0..2 {
            s.acquire(&l, HOST).unwrap();
        }
        assert_eq!(s.acquire(&l, HOST).unwrap_err(), Full::PerIp);
        for _ in 0..10 {
            s.acquire(&l, LOOP).unwrap();
        }
    }

    #[test]
    fn a_new_connection_evicts_the_oldest_silent_one() {
        let l = limits(4, 32);
        let mut s = Slots::default();
        let (first, first_evicted) = s.acquire(&l, LOOP).unwrap();
        let (second, _) = s.acquire(&l, LOOP).unwrap();
        let (third, _) = s.acquire(&l, LOOP).unwrap();
        // Three may wait to join (4 - 4/4): the fourth takes the place of the oldest silent one.
        assert_eq!(s.counts(), (3, 3, 3));
        s.advance(first, Phase::Heard);
        s.acquire(&l, LOOP).unwrap();
        assert!(s.live.contains_key(&first), "heard from: not evicted");
        assert!(!s.live.contains_key(&second), "oldest silent one evicted");
        assert!(first_evicted.try_recv().is_err());
        assert_eq!(s.counts(), (3, 3, 2));
        // Releasing an evicted slot again changes nothing.
        s.release(second);
        assert_eq!(s.counts(), (3, 3, 2));
        s.advance(third, Phase::Heard);
        let _ = s.acquire(&l, LOOP).unwrap();
        s.advance(first, Phase::Heard);
        // Everything waiting has been heard from: nobody to evict.
        let (all, _, silent) = s.counts();
        assert_eq!((all, silent), (3, 1));
    }

    #[test]
    fn joined_connections_keep_a_share_that_waiting_ones_cannot_take() {
        let l = limits(4, 32);
        let mut s = Slots::default();
        let ids: Vec<u64> = (0..3).map(|_| s.acquire(&l, LOOP).unwrap().0).collect();
        for id in &ids {
            s.advance(*id, Phase::Heard);
        }
        // Three heard, waiting to join: the reserved fourth slot is not for a fourth waiting one.
        assert_eq!(s.acquire(&l, LOOP).unwrap_err(), Full::Total);
        s.advance(ids[0], Phase::Joined);
        let (id, _) = s.acquire(&l, LOOP).unwrap();
        s.advance(id, Phase::Heard);
        assert_eq!(s.counts(), (4, 3, 0));
        assert_eq!(s.acquire(&l, LOOP).unwrap_err(), Full::Total);
    }

    #[test]
    fn eviction_is_told_to_the_connection() {
        let l = limits(1, 32);
        let mut s = Slots::default();
        let (_, evicted) = s.acquire(&l, HOST).unwrap();
        s.acquire(&l, HOST).unwrap();
        assert!(evicted.try_recv().is_ok());
    }
}

//! The join gate: join attempts are rate-limited per address and in total, before any key is
//! parsed or signature checked. Through the SSH tunnel everyone arrives from loopback, so
//! loopback has only the total. (Each connection may attempt one join: a refused join closes it.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::Bucket;

/// Join attempts per second from one address other than loopback.
pub const JOINS_PER_SEC_PER_IP: u32 = 1;
/// Burst of join attempts from one address above that rate.
pub const JOIN_BURST_PER_IP: u32 = 10;
/// Addresses whose join rate is remembered; past it, addresses whose bucket is full again are
/// forgotten, and if none is, new addresses share one bucket.
pub const MAX_TRACKED_ADDRESSES: usize = 4096;

/// Which limit a join attempt crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossed {
    /// The limit of its address.
    Address,
    /// The limit of all addresses together.
    Total,
}

/// Join-attempt buckets.
pub struct JoinGate {
    total: Bucket,
    rate_per_ip: u32,
    burst_per_ip: u32,
    per_ip: HashMap<IpAddr, Bucket>,
    /// Shared by addresses that found no room in `per_ip`.
    overflow: Bucket,
}

impl JoinGate {
    /// A gate letting `per_sec` joins a second through in total (bursts of four times that).
    pub fn new(per_sec: u32) -> Self {
        Self::with_per_ip(per_sec, JOINS_PER_SEC_PER_IP, JOIN_BURST_PER_IP)
    }

    fn with_per_ip(per_sec: u32, rate_per_ip: u32, burst_per_ip: u32) -> Self {
        Self {
            total: Bucket::new(per_sec, per_sec.saturating_mul(4)),
            rate_per_ip,
            burst_per_ip,
            per_ip: HashMap::new(),
            overflow: Bucket::new(rate_per_ip, burst_per_ip),
        }
    }

    /// Counts a join attempt from `ip`; `Err` says which limit it crossed.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Result<(), Crossed> {
        if !ip.is_loopback() {
            if !self.per_ip.contains_key(&ip) && self.per_ip.len() >= MAX_TRACKED_ADDRESSES {
                self.per_ip.retain(|_, b| !b.is_full(now));
            }
            let bucket = if self.per_ip.len() < MAX_TRACKED_ADDRESSES {
                self.per_ip
                    .entry(ip)
                    .or_insert_with(|| Bucket::new(self.rate_per_ip, self.burst_per_ip))
            } else {
                self.per_ip.get_mut(&ip).unwrap_or(&mut self.overflow)
            };
            if !bucket.take(now) {
                return Err(Crossed::Address);
            }
        }
        if !self.total.take(now) {
            return Err(Crossed::Total);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn an_address_gets_its_burst_then_its_rate() {
        let mut g = JoinGate::new(1000);
        let t = Instant::now();
        assert!((0..JOIN_BURST_PER_IP).all(|_| g.admit(ip(1), t).is_ok()));
        assert_eq!(g.admit(ip(1), t), Err(Crossed::Address));
        assert!(g.admit(ip(2), t).is_ok(), "another address is not affected");
        assert!(g.admit(ip(1), t + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn loopback_has_only_the_total() {
        let mut g = JoinGate::new(5);
        let t = Instant::now();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..20).all(|_| g.admit(lo, t).is_ok()));
        assert_eq!(g.admit(lo, t), Err(Crossed::Total));
        assert_eq!(g.admit(ip(1), t), Err(Crossed::Total));
        assert!(g.admit(lo, t + Duration::from_millis(200)).is_ok());
    }

    #[test]
    fn remembered_addresses_are_bounded() {
        let mut g = JoinGate::new(1_000_000);
        let t = Instant::now();
        for n in 0..MAX_TRACKED_ADDRESSES as u32 {
            g.admit(ip(n), t).unwrap_or_else(|_| panic!("address {n}"));
        }
        // No room: newcomers share one bucket of one address's size.
        let newcomers = MAX_TRACKED_ADDRESSES as u32..MAX_TRACKED_ADDRESSES as u32 + 100;
        let admitted = newcomers.filter(|n| g.admit(ip(*n), t).is_ok()).count();
        assert_eq!(admitted, JOIN_BURST_PER_IP as usize);
        assert_eq!(g.per_ip.len(), MAX_TRACKED_ADDRESSES);
        // Once buckets are full again, old addresses are forgotten to make room.
        let later = t + Duration::from_secs(60);
        g.admit(ip(999_999), later).unwrap();
        assert_eq!(g.per_ip.len(), 1);
    }
}

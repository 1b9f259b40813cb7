//! Members that drop and come back. With `--churn RATE` members who only receive have their TCP
//! connection cut (both ways, no close frame) RATE times a second, at random to the server, and
//! come back at once with `resume {since}`; with `--away` they are all cut before the timed phase
//! and come back one after another once it is over, so that their mailboxes fill and each replay
//! is timed alone. Each member's receiving task notices the cut, rejoins and reports here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::net::TcpStream;

use super::members::{self, Light};
use super::wire::Target;
use super::{within, BenchError};
use crate::crypto::Identity;

/// One member's way back, measured.
#[derive(Debug, Clone, Copy)]
pub struct Back {
    /// The member.
    pub member: usize,
    /// From the cut (or, with `--away`, from being told to come back) to the welcome.
    pub rejoin: Duration,
    /// From the welcome to the last replayed frame.
    pub replay: Duration,
    /// Frames replayed (kept by the server after the last `seq` received).
    pub frames: u64,
    /// Whether the membership was resumed (if not, everything kept was lost).
    pub resumed: bool,
    /// Whether the replay came to its end (the connection may end before).
    pub replayed: bool,
}

#[derive(Default)]
struct Slot {
    socket: Option<TcpStream>,
    cut_at: Option<Instant>,
}

/// The members that may be cut, their sockets, and the reports of their way back.
pub struct Churn {
    target: Target,
    keys: Vec<Arc<Identity>>,
    slots: Vec<Mutex<Slot>>,
    /// `--away`: a cut member waits to be told before it comes back.
    pub hold: bool,
    go: Vec<(async_channel::Sender<()>, async_channel::Receiver<()>)>,
    back: (async_channel::Sender<Back>, async_channel::Receiver<Back>),
}

/// What a rejoin gave.
pub struct Rejoined {
    /// The new connection.
    pub light: Light,
    /// The last `seq` the server had given before its welcome: the replay ends there.
    pub seq: u64,
    /// Whether the membership was resumed.
    pub resumed: bool,
}

impl Churn {
    /// Room for `members` members joining at `target` with `keys`.
    pub fn new(target: &Target, keys: &[Arc<Identity>], members: usize, hold: bool) -> Arc<Self> {
        Arc::new(Self {
            target: target.clone(),
            keys: keys.to_vec(),
            slots: (0..members).map(|_| Mutex::default()).collect(),
            hold,
            go: (0..members).map(|_| async_channel::bounded(1)).collect(),
            back: async_channel::unbounded(),
        })
    }

    fn slot(&self, i: usize) -> std::sync::MutexGuard<'_, Slot> {
        self.slots[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records member `i`'s socket, to cut it later.
    pub fn attach(&self, i: usize, socket: TcpStream) {
        self.slot(i).socket = Some(socket);
    }

    /// Cuts member `i`'s connection, unless it is already cut and not back yet.
    pub fn cut(&self, i: usize) -> bool {
        let mut slot = self.slot(i);
        let Some(socket) = slot.socket.take() else {
            return false;
        };
        slot.cut_at = Some(Instant::now());
        let _ = socket.shutdown(std::net::Shutdown::Both);
        true
    }

    /// When member `i` was cut, if its connection ended because of a cut (asked once).
    pub fn was_cut(&self, i: usize) -> Option<Instant> {
        self.slot(i).cut_at.take()
    }

    /// With `--away`: waits until member `i` is told to come back.
    pub async fn wait_for_go(&self, i: usize) {
        let _ = self.go[i].1.recv().await;
    }

    /// Joins member `i` again, resuming after `since`.
    pub async fn rejoin(&self, i: usize, since: u64) -> Result<Rejoined, BenchError> {
        let name = members::name(i);
        let joined = within(
            Duration::from_secs(30),
            &format!("{name} resuming"),
            members::join_light(
                &self.target,
                &name,
                self.keys.get(i).map(|k| &**k),
                Some(since),
            ),
        )
        .await?;
        let welcome = joined.welcome.unwrap_or_default();
        self.attach(i, joined.socket);
        Ok(Rejoined {
            light: joined.light,
            seq: welcome.seq,
            resumed: welcome.resumed,
        })
    }

    /// Reports a member's way back (to [`Churn::bring_back`]).
    pub fn report(&self, back: Back) {
        let _ = self.back.0.try_send(back);
    }

    /// Cuts members in turn, `rate` a second, from `t0` until `until`; returns how many were cut.
    pub async fn drive(&self, members: &[usize], rate: u32, t0: Instant, until: Instant) -> u64 {
        if members.is_empty() || rate == 0 {
            return 0;
        }
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        let (mut cuts, mut next) = (0u64, 0usize);
        let mut at = t0 + interval;
        while at < until {
            smol::Timer::at(at).await;
            // The next member still connected; one that is on its way back is passed over.
            for _ in 0..members.len() {
                let i = members[next % members.len()];
                next += 1;
                if self.cut(i) {
                    cuts += 1;
                    break;
                }
            }
            at += interval;
        }
        cuts
    }

    /// Brings the cut `members` back one after another, each once the previous one has replayed
    /// everything kept for it; returns their reports.
    pub async fn bring_back(&self, members: &[usize], limit: Duration) -> Vec<Back> {
        let mut backs = Vec::new();
        for &i in members {
            let _ = self.go[i].0.try_send(());
            let got = futures_lite::future::or(
                async {
                    // Reports of others (back after the server ended their connection) are not
                    // what is waited for.
                    while let Ok(b) = self.back.1.recv().await {
                        if b.member == i {
                            return Some(b);
                        }
                    }
                    None
                },
                async {
                    smol::Timer::after(limit).await;
                    None
                },
            )
            .await;
            match got {
                Some(b) => backs.push(b),
                None => break,
            }
        }
        backs
    }
}

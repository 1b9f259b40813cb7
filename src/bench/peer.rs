//! A member the soak drives step by step (a visitor, the admin's web seat, a kicked member, the
//! slow reader, the flooder): it reads its connection as a client must (answers pings,
//! acknowledges with the receiving tasks' rule) until a frame it waits for, a close, or a
//! deadline, and writes frames between.

use std::time::{Duration, Instant};

use futures_lite::future;
use smol::net::TcpStream;
use smol::Timer;

use super::members::{self, Light, LightJoin, Welcome};
use super::wire::{self, Target, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use super::{within, BenchError};
use crate::client::Acks;
use crate::crypto::Identity;

/// Longest a soak member waits for one answer of the server.
pub const ANSWER: Duration = Duration::from_secs(30);

/// A joined member driven step by step.
pub struct Peer {
    /// Its name.
    pub name: String,
    light: Light,
    socket: TcpStream,
    acks: Acks,
    /// The welcome of the last join (read only when resuming).
    pub welcome: Option<Welcome>,
    /// Reads without writing anything (no ack, no pong): a client that is stuck and then reads
    /// what was sent to it.
    pub quiet: bool,
}

/// How a [`Peer::pump`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pumped {
    /// A frame it waited for came.
    Matched,
    /// The server closed the connection, with this close code (1005: none given).
    Closed(u16),
    /// The deadline passed.
    Deadline,
}

impl Peer {
    /// Joins `name` with `key`; with `since`, resumes after that `seq`.
    pub async fn join(
        target: &Target,
        name: &str,
        key: &Identity,
        since: Option<u64>,
    ) -> Result<Self, BenchError> {
        let LightJoin {
            light,
            socket,
            welcome,
            ..
        } = within(
            ANSWER,
            &format!("{name} joining"),
            members::join_light(target, name, Some(key), since),
        )
        .await?;
        let acks = match (since, welcome) {
            (Some(s), Some(w)) if w.resumed => {
                let mut acks = Acks::after(s);
                acks.replay_until(w.seq);
                acks
            }
            _ => Acks::after(0),
        };
        Ok(Self {
            name: name.to_string(),
            light,
            socket,
            acks,
            welcome,
            quiet: false,
        })
    }

    /// The last `seq` received (what a resume gives as `since`).
    pub fn last_seq(&self) -> u64 {
        self.acks.last()
    }

    /// Writes one text frame.
    pub async fn send(&self, text: &str) -> Result<(), BenchError> {
        let frame = wire::client_frame(OP_TEXT, text.as_bytes());
        wire::send(&mut *self.light.writer.lock().await, &frame)
            .await
            .map_err(|e| BenchError::Run(format!("{}: cannot write: {e}", self.name)))
    }

    /// Cuts the TCP connection both ways, without a close frame (a phone losing its network).
    pub fn cut(self) -> u64 {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        self.acks.last()
    }

    /// Reads until `want` accepts a text frame, the server closes, or `until`; pings are
    /// answered and frames acknowledged on the way. A connection lost without a close frame is
    /// `Closed(1006)`.
    pub async fn pump(
        &mut self,
        until: Instant,
        mut want: impl FnMut(&[u8]) -> bool,
    ) -> Result<Pumped, BenchError> {
        let Peer {
            light, acks, quiet, ..
        } = self;
        loop {
            let wake = acks.deadline().map_or(until, |d| d.min(until));
            let next = future::or(async { Some(light.reader.next().await) }, async {
                Timer::at(wake).await;
                None
            })
            .await;
            let mut pong = false;
            match next {
                None if Instant::now() >= until => return Ok(Pumped::Deadline),
                None => {}
                Some(Err(_)) => return Ok(Pumped::Closed(1006)),
                Some(Ok((OP_TEXT, p))) => {
                    let _ = acks.receive(p, Instant::now());
                    if want(p) {
                        return Ok(Pumped::Matched);
                    }
                }
                Some(Ok((OP_CLOSE, p))) => {
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    return Ok(Pumped::Closed(code.unwrap_or(1005)));
                }
                Some(Ok((op, _))) => pong = op == OP_PING,
            }
            if *quiet {
                continue;
            }
            if pong {
                let frame = wire::client_frame(OP_PONG, b"");
                let _ = wire::send(&mut *light.writer.lock().await, &frame).await;
            }
            if let Some(seq) = acks.due(Instant::now()) {
                let _ = wire::send_ack(&light.writer, seq).await;
                acks.acked(seq);
            }
        }
    }

    /// Reads until `want` accepts a text frame; anything else (a close, no answer within
    /// [`ANSWER`]) is an error naming `what`.
    pub async fn expect(
        &mut self,
        what: &str,
        want: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), BenchError> {
        match self.pump(Instant::now() + ANSWER, want).await? {
            Pumped::Matched => Ok(()),
            other => Err(BenchError::Run(format!(
                "{}: waiting for {what}: {other:?}",
                self.name
            ))),
        }
    }

    /// Reads until the server closes the connection (within [`ANSWER`]); its close code.
    pub async fn closed(&mut self) -> Result<u16, BenchError> {
        match self.pump(Instant::now() + ANSWER, |_| false).await? {
            Pumped::Closed(code) => Ok(code),
            other => Err(BenchError::Run(format!(
                "{}: waiting for the close: {other:?}",
                self.name
            ))),
        }
    }
}

/// Whether `p` is a server frame of `type` (sequenced or not) that contains `needle`.
pub fn is(p: &[u8], kind: &str, needle: &str) -> bool {
    let body = wire::body(p);
    let head = format!(r#""type":"{kind}""#);
    body.starts_with(head.as_bytes())
        && (needle.is_empty() || p.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

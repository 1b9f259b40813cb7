//! Joining the simulated members, one after another. Members who seal or open messages join
//! through [`Client`] (the project's client, with its end-to-end session); the others join with
//! the same proof of possession over a light connection that never parses the member list, so a
//! thousand of them cost the machine little next to the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_lite::io::ReadHalf;
use smol::net::TcpStream;
use smol::{Executor, Task};

use super::churn::Churn;
use super::receive;
use super::tally::{Shared, Tally};
use super::wire::{self, FrameReader, Stream, Target, Writer, OP_TEXT};
use super::{within, BenchError};
use crate::client::{Acks, Client};
use crate::crypto::Identity;
use crate::protocol::{self, ClientMsg, ServerMsg};

/// What a member does in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends (and receives).
    Sender,
    /// Receives, opening everything.
    Auditor,
    /// Receives, counting by id.
    Receiver,
}

/// The joined members.
pub struct Joined {
    /// Receiving tasks already running (light members).
    pub receivers: Vec<Task<Tally>>,
    /// Writing halves of light senders, by member index.
    pub writers: Vec<(usize, Writer)>,
    /// Full members (with a session), by member index, once they have seen everyone join.
    pub full: Vec<(usize, Role, Ready)>,
    /// Wall time of all joins.
    pub wall: Duration,
    /// Each join: connection to welcome.
    pub each: Vec<Duration>,
    /// Each light join: join sent to welcome received (the server's part).
    pub server_part: Vec<Duration>,
    /// Server CPU seconds over the first and the last [`TAIL_JOINS`] joins (or all, if fewer).
    pub cpu_first: Option<f64>,
    /// See `cpu_first`.
    pub cpu_last: Option<f64>,
    /// Bytes of the last welcome a light member read (the whole member list).
    pub welcome_bytes: Option<usize>,
}

/// Joins at each end of the run whose server CPU is measured apart: what a join costs in an
/// empty room and in a full one.
pub const TAIL_JOINS: usize = 250;

/// A full member's task: its client, once it has seen everyone join.
pub type Ready = Task<Result<Client, BenchError>>;

/// How the members join.
pub struct JoinSpec<'a> {
    /// Where.
    pub target: &'a Target,
    /// Member keys (empty for a bare relay: nobody joins).
    pub keys: &'a [Arc<Identity>],
    /// Members.
    pub members: usize,
    /// Role of each member.
    pub role: &'a dyn Fn(usize) -> Role,
    /// Whether roles other than receivers need a session.
    pub sessions: bool,
    /// Members each full member must see before it is ready (admin and itself included).
    pub expect_members: usize,
    /// Where receivers who may be cut register their sockets.
    pub churn: Option<&'a Arc<Churn>>,
    /// The server's process id, to read its CPU time at the first and last joins.
    pub pid: Option<u32>,
}

/// A light member's connection.
pub struct Light {
    /// Whole frames from the server.
    pub reader: FrameReader<ReadHalf<Stream>>,
    /// The writing half, shared with the member's sending task if it sends.
    pub writer: Writer,
}

/// What the server's welcome says about a resume.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(default)]
pub struct Welcome {
    /// Whether the membership was resumed.
    pub resumed: bool,
    /// The last `seq` given before the welcome.
    pub seq: u64,
}

/// A light member that joined.
pub struct LightJoin {
    /// The connection.
    pub light: Light,
    /// Its TCP socket, to cut it.
    pub socket: TcpStream,
    /// From sending the join to the welcome (the server's part), when it joined.
    pub server_part: Option<Duration>,
    /// The welcome, read when resuming.
    pub welcome: Option<Welcome>,
    /// The welcome's size in bytes, when it joined.
    pub welcome_bytes: Option<usize>,
}

/// The name of member `i`.
pub fn name(i: usize) -> String {
    format!("bench{i:04}")
}

/// Joins every member in turn.
pub async fn join_all(
    spec: &JoinSpec<'_>,
    ex: &Arc<Executor<'static>>,
    shared: &Arc<Shared>,
) -> Result<Joined, BenchError> {
    let mut joined = Joined {
        receivers: Vec::new(),
        writers: Vec::new(),
        full: Vec::new(),
        wall: Duration::ZERO,
        each: Vec::new(),
        server_part: Vec::new(),
        cpu_first: None,
        cpu_last: None,
        welcome_bytes: None,
    };
    let cpu = || spec.pid.and_then(super::proc::cpu_seconds);
    let tail = TAIL_JOINS.min(spec.members);
    let mut first_from = None;
    let mut last_from = None;
    let start = Instant::now();
    for i in 0..spec.members {
        if i == 0 {
            first_from = cpu();
        }
        if i == tail {
            joined.cpu_first = first_from.zip(cpu()).map(|(a, b)| b - a);
        }
        if i == spec.members - tail {
            last_from = cpu();
        }
        let role = (spec.role)(i);
        let key = spec.keys.get(i).cloned();
        let began = Instant::now();
        if spec.sessions && role != Role::Receiver {
            let key = key.ok_or_else(|| BenchError::Run("no key for a member".into()))?;
            let client = within(
                Duration::from_secs(30),
                &format!("{} joining", name(i)),
                async {
                    Client::connect(&spec.target.url, &name(i), key, spec.target.tls.clone())
                        .await
                        .map_err(|e| BenchError::Run(format!("{} cannot join: {e}", name(i))))
                },
            )
            .await?;
            joined.each.push(began.elapsed());
            let expect = spec.expect_members;
            let task = ex.spawn(see_everyone(client, expect, i));
            joined.full.push((i, role, task));
            continue;
        }
        let j = within(
            Duration::from_secs(30),
            &format!("{} joining", name(i)),
            join_light(spec.target, &name(i), key.as_deref(), None),
        )
        .await?;
        joined.each.push(began.elapsed());
        joined.welcome_bytes = j.welcome_bytes.or(joined.welcome_bytes);
        if let Some(t) = j.server_part {
            joined.server_part.push(t);
        }
        if role == Role::Sender {
            joined.writers.push((i, j.light.writer.clone()));
        }
        let churn = match spec.churn {
            Some(c) if role == Role::Receiver => {
                c.attach(i, j.socket);
                Some(c.clone())
            }
            _ => None,
        };
        let task = receive::receive(j.light, Acks::after(0), i, shared.clone(), churn);
        joined.receivers.push(ex.spawn(task));
    }
    joined.wall = start.elapsed();
    let end = cpu();
    if tail == spec.members {
        joined.cpu_first = first_from.zip(end).map(|(a, b)| b - a);
    }
    joined.cpu_last = last_from.zip(end).map(|(a, b)| b - a);
    Ok(joined)
}

/// Connects and, when `key` is given, joins: challenge, proof, welcome; with `since`, resumes
/// the membership after that `seq`.
pub async fn join_light(
    target: &Target,
    name: &str,
    key: Option<&Identity>,
    since: Option<u64>,
) -> Result<LightJoin, BenchError> {
    let fail = |e: String| BenchError::Run(format!("{name} cannot join: {e}"));
    let (stream, leftover, socket) = wire::connect(target)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (r, w) = futures_lite::io::split(stream);
    let mut reader = FrameReader::new(r, leftover);
    let writer: Writer = Arc::new(smol::lock::Mutex::new(w));
    let Some(key) = key else {
        return Ok(LightJoin {
            light: Light { reader, writer },
            socket,
            server_part: None,
            welcome: None,
            welcome_bytes: None,
        });
    };
    let nonce = loop {
        let (op, p) = reader.next().await.map_err(|e| fail(e.to_string()))?;
        if op != OP_TEXT {
            continue;
        }
        match serde_json::from_slice::<ServerMsg>(p) {
            Ok(ServerMsg::Challenge { nonce, .. }) => break nonce,
            _ => {
                return Err(fail(format!(
                    "expected a challenge, got {}",
                    String::from_utf8_lossy(&p[..p.len().min(200)])
                )))
            }
        }
    };
    let public = key.public();
    let join = ClientMsg::Join {
        name: name.to_string(),
        public_key: B64.encode(public.spki_der()),
        signature: B64.encode(key.sign(&protocol::join_bytes(&nonce, name, public.key_id()))),
        resume: since.map(|since| protocol::Resume { since }),
    };
    let text = serde_json::to_vec(&join).expect("join encodes");
    let sent = Instant::now();
    wire::send(
        &mut *writer.lock().await,
        &wire::client_frame(OP_TEXT, &text),
    )
    .await
    .map_err(|e| fail(e.to_string()))?;
    let welcome_bytes;
    let welcome = loop {
        let (op, p) = reader.next().await.map_err(|e| fail(e.to_string()))?;
        if op != OP_TEXT {
            continue;
        }
        if p.starts_with(br#"{"type":"welcome""#) {
            welcome_bytes = p.len();
            // The member list is parsed only when resuming: a thousand joins would cost more.
            break match since {
                Some(_) => Some(
                    serde_json::from_slice::<Welcome>(p)
                        .map_err(|e| fail(format!("unreadable welcome: {e}")))?,
                ),
                None => None,
            };
        }
        if p.starts_with(br#"{"type":"error""#) {
            return Err(fail(String::from_utf8_lossy(p).into_owned()));
        }
    };
    Ok(LightJoin {
        light: Light { reader, writer },
        socket,
        server_part: Some(sent.elapsed()),
        welcome,
        welcome_bytes: Some(welcome_bytes),
    })
}

/// Reads a full member's events until its session knows `expect` members.
async fn see_everyone(mut client: Client, expect: usize, i: usize) -> Result<Client, BenchError> {
    while client.session().members().len() < expect {
        client
            .next_event()
            .await
            .map_err(|e| BenchError::Run(format!("{}: {e}", name(i))))?;
    }
    Ok(client)
}

//! The messages of a run: sealed by the senders' sessions before the timed phase (senders spread
//! over threads), or made up with the right shapes and sizes for `--raw`; and the senders that
//! write them on schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::members::{self, Role};
use super::receive::WsWriter;
use super::tally::Shared;
use super::wire::{self, Writer};
use super::BenchError;
use crate::client::Client;
use crate::crypto;
use crate::protocol::ClientMsg;
use async_tungstenite::tungstenite::Message;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// What sealing needs to know.
pub struct Sealing<'a> {
    /// Messages in all.
    pub total: usize,
    /// Members that send; message `i` is sender `i % senders`'s.
    pub senders: usize,
    /// The text of every message.
    pub text: &'a str,
    /// For direct messages, the member each is for.
    pub recipient: &'a [u32],
    /// Key IDs of the members.
    pub keys: &'a [String],
    /// Threads to seal on.
    pub threads: usize,
}

/// One sender's sealed messages.
pub struct Sealed {
    /// Sender-key distributions to send before the timed phase.
    pub setup: Vec<ClientMsg>,
    /// The messages, as JSON text, in order.
    pub texts: Vec<String>,
    /// Each message's id and index.
    pub ids: Vec<(String, u32)>,
}

/// A sender's messages, ready to go.
pub enum Outgoing {
    /// Encoded, masked frames for a light connection.
    Frames(Writer, Vec<Vec<u8>>),
    /// JSON texts for a client's WebSocket.
    Texts(WsWriter, Vec<String>),
}

/// How a sender kept to its schedule.
#[derive(Default)]
pub struct Sent {
    /// Messages written.
    pub count: u64,
    /// Worst lateness.
    pub lag_max: Duration,
    /// Sends over 10 ms late.
    pub late: u64,
    /// Why the sender stopped early.
    pub error: Option<String>,
}

/// Fetches, for each sender, the public keys its messages need (the member list carries none):
/// its recipients' for direct messages, everyone's for `@all`.
pub async fn fetch_keys(
    senders: &mut [(usize, Role, Client)],
    plan: &Sealing<'_>,
) -> Result<(), BenchError> {
    for (s, _, client) in senders.iter_mut() {
        let wanted: Vec<String> = if plan.recipient.is_empty() {
            client.session().missing_for_all()
        } else {
            let mut w: Vec<String> = (*s..plan.total)
                .step_by(plan.senders)
                .filter_map(|i| plan.recipient.get(i))
                .map(|&r| plan.keys[r as usize].clone())
                .collect();
            w.sort();
            w.dedup();
            w
        };
        let what = format!("{} fetching keys", members::name(*s));
        super::within(Duration::from_secs(60), &what, async {
            client
                .fetch_keys(wanted)
                .await
                .map_err(|e| BenchError::Run(format!("{what}: {e}")))
        })
        .await?;
    }
    Ok(())
}

/// Seals every sender's messages, senders spread over threads.
pub fn seal(
    senders: &mut [(usize, Role, Client)],
    plan: &Sealing<'_>,
) -> Result<Vec<Sealed>, BenchError> {
    let per = senders.len().div_ceil(plan.threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = senders
            .chunks_mut(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter_mut()
                        .map(|(s, _, client)| seal_one(client, *s, plan))
                        .collect::<Result<Vec<_>, BenchError>>()
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.extend(h.join().expect("sealing thread panicked")?);
        }
        Ok(out)
    })
}

/// Seals sender `s`'s messages: `s`, `s + senders`, `s + 2 × senders`…
fn seal_one(client: &mut Client, s: usize, plan: &Sealing<'_>) -> Result<Sealed, BenchError> {
    let mut setup = Vec::new();
    let mut texts = Vec::new();
    let mut ids = Vec::new();
    for i in (s..plan.total).step_by(plan.senders) {
        let session = client.session_mut();
        let msgs = match plan.recipient.get(i) {
            Some(&r) => session
                .seal_direct(&plan.keys[r as usize], plan.text)
                .map(|m| vec![m]),
            None => session.seal_all(plan.text),
        }
        .map_err(|e| BenchError::Run(format!("{}: {e}", members::name(s))))?;
        for m in msgs {
            match &m {
                ClientMsg::All(x) => ids.push((x.id.clone(), i as u32)),
                ClientMsg::Direct(x) => ids.push((x.id.clone(), i as u32)),
                _ => {
                    setup.push(m);
                    continue;
                }
            }
            texts.push(serde_json::to_string(&m).expect("client messages encode"));
        }
    }
    Ok(Sealed { setup, texts, ids })
}

/// Sends one sender's messages on schedule: message `i` is due at `t0 + i / rate`.
pub async fn send(out: Outgoing, s: usize, senders: usize, shared: Arc<Shared>) -> Sent {
    let table = shared.table.get().expect("the table is set before sending");
    let mut sent = Sent::default();
    let note = |sent: &mut Sent, i: usize| {
        let lag = Instant::now().saturating_duration_since(table.due(i));
        sent.lag_max = sent.lag_max.max(lag);
        if lag > Duration::from_millis(10) {
            sent.late += 1;
        }
    };
    match out {
        Outgoing::Frames(w, frames) => {
            for (k, frame) in frames.into_iter().enumerate() {
                let i = k * senders + s;
                smol::Timer::at(table.due(i)).await;
                note(&mut sent, i);
                if let Err(e) = wire::send(&mut *w.lock().await, &frame).await {
                    sent.error = Some(e.to_string());
                    break;
                }
                sent.count += 1;
            }
        }
        Outgoing::Texts(sink, texts) => {
            for (k, text) in texts.into_iter().enumerate() {
                let i = k * senders + s;
                smol::Timer::at(table.due(i)).await;
                note(&mut sent, i);
                if let Err(e) = sink.lock().await.send(Message::text(text)).await {
                    sent.error = Some(e.to_string());
                    break;
                }
                sent.count += 1;
            }
        }
    }
    sent
}

pub fn id_bytes(id: &str) -> [u8; 32] {
    id.as_bytes().try_into().expect("ids are 32 characters")
}

/// `bytes` bytes of readable text.
pub fn text_of(bytes: usize) -> String {
    "dyspatcher bench message "
        .chars()
        .cycle()
        .take(bytes)
        .collect()
}

/// Made-up fields of the right shapes and sizes, for `--raw`.
pub struct Fake {
    prefix: String,
    skid: String,
    iv: String,
    ciphertext: String,
    signature: String,
    wrapped: String,
}

impl Fake {
    pub fn new(bytes: usize) -> Self {
        let filler =
            |n: usize| B64.encode((0..n).map(|i| (i * 131 % 251) as u8).collect::<Vec<_>>());
        Self {
            prefix: crypto::random_id()[..16].to_string(),
            skid: crypto::random_id(),
            iv: B64.encode(crypto::random_bytes::<12>()),
            ciphertext: filler(bytes + 16),
            signature: filler(256),
            wrapped: filler(256),
        }
    }

    pub fn id(&self, i: usize) -> String {
        format!("{}{i:016x}", self.prefix)
    }

    /// Message `i`, the `n`th of its sender, to everyone or (`to`, own key ID) directly.
    pub fn message(
        &self,
        id: &str,
        i: usize,
        n: usize,
        to: Option<(String, String)>,
        rate: u32,
        group: bool,
    ) -> String {
        let ts = crate::protocol::now_ms() + (i as u64 * 1000 / u64::from(rate)) as i64;
        let Fake {
            skid,
            iv,
            ciphertext,
            signature,
            wrapped,
            ..
        } = self;
        if group {
            let g = super::BENCH_GROUP;
            return format!(
                r#"{{"type":"group","group":"{g}","epoch":1,"id":"{id}","ts":{ts},"skid":"{skid}","n":{n},"iv":"{iv}","ciphertext":"{ciphertext}","signature":"{signature}"}}"#
            );
        }
        match to {
            None => format!(
                r#"{{"type":"all","id":"{id}","ts":{ts},"skid":"{skid}","n":{n},"iv":"{iv}","ciphertext":"{ciphertext}","signature":"{signature}"}}"#
            ),
            Some((to, own)) => format!(
                r#"{{"type":"direct","id":"{id}","ts":{ts},"to":"{to}","iv":"{iv}","ciphertext":"{ciphertext}","keys":{{"{to}":"{wrapped}","{own}":"{wrapped}"}},"signature":"{signature}"}}"#
            ),
        }
    }
}

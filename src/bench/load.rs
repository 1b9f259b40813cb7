//! One load run: reach (or start) the server, join the members, seal every message, send them on
//! a fixed schedule, wait for what is still on its way, and read the server's CPU and memory
//! around the timed phase.

use base64::Engine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use smol::{Executor, Task};

use super::churn::Churn;
use super::members::{self, JoinSpec, Role};
use super::messages::{self, id_bytes, send, text_of, Fake, Outgoing, Sealed, Sealing, Sent};
use super::proc::{self, ChildServer, Launch};
use super::receive;
use super::report::{LoadReport, Summary};
use super::tally::{Shared, Table, Tally};
use super::wire::{self, Target, Writer, OP_TEXT};
use super::{within, BenchError, Mode, Plan};
use crate::client::Client;
use crate::crypto::{self, Identity};

/// Runs the load described by `plan`.
pub fn run(plan: &Plan) -> Result<LoadReport, BenchError> {
    let a = &plan.args;
    let keys_dir = plan.keys_dir();
    let keys: Vec<Arc<Identity>> = if a.bare {
        Vec::new()
    } else {
        crate::keycache::load_or_make(&keys_dir, a.members, a.bits)?
            .into_iter()
            .map(Arc::new)
            .collect()
    };
    let transcript = std::env::temp_dir().join(format!(
        "dyspatcher-bench-{}-{}.txt",
        std::process::id(),
        crypto::random_id()
    ));
    let child = match &a.url {
        Some(_) => None,
        None => Some(start_child(plan, &keys_dir, &transcript, 100_000, &[])?),
    };
    let (url, fingerprint) = match (&a.url, &child) {
        (Some(url), _) => (url.clone(), a.fingerprint.clone()),
        (None, Some(c)) => (
            format!("{}://{}/ws", if c.tls { "wss" } else { "ws" }, c.addr),
            c.fingerprint.clone(),
        ),
        (None, None) => unreachable!("a child is started without --url"),
    };
    let tls = match &fingerprint {
        Some(f) if url.starts_with("wss://") => Some(
            crate::tls::client_config(Some(f), None)
                .map_err(|e| BenchError::Option(format!("--fingerprint: {e}")))?,
        ),
        _ => None,
    };
    let target = Target::new(&url, tls).map_err(|e| BenchError::Option(format!("--url: {e}")))?;
    let pid = child.as_ref().map(|c| c.pid).or(a.server_pid);

    let mut report = on_threads(|ex| {
        let run = Run {
            plan,
            ex,
            target,
            keys,
            pid,
            child: child.as_ref(),
        };
        smol::block_on(run.drive())
    })?;
    if let Some(child) = child {
        report.server_stopped = Some(child.stop(Duration::from_secs(10)));
        report.transcript_all_lines = proc::count_lines(&transcript, " → @all: ");
        let _ = std::fs::remove_file(&transcript);
    }
    Ok(report)
}

/// Runs `f` with an executor that [`client_threads`] threads run until `f` returns.
pub(super) fn on_threads<T>(f: impl FnOnce(Arc<Executor<'static>>) -> T) -> T {
    let ex = Arc::new(Executor::<'static>::new());
    let (quit, quit_rx) = async_channel::bounded::<()>(1);
    let threads: Vec<_> = (0..client_threads())
        .map(|i| {
            let ex = ex.clone();
            let quit = quit_rx.clone();
            std::thread::Builder::new()
                .name(format!("bench-{i}"))
                .spawn(move || smol::block_on(ex.run(quit.recv())))
                .expect("cannot start a thread")
        })
        .collect();
    let out = f(ex);
    drop(quit);
    for t in threads {
        let _ = t.join();
    }
    out
}

pub(super) fn client_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
}

/// Starts the server for `plan` in a child process, with `--rate-limit rate_limit` and `extra`
/// flags.
pub(super) fn start_child(
    plan: &Plan,
    keys_dir: &std::path::Path,
    transcript: &std::path::Path,
    rate_limit: u32,
    extra: &[String],
) -> Result<ChildServer, BenchError> {
    let a = &plan.args;
    let program = match &a.server_command {
        Some(p) => p.clone(),
        None => proc::this_executable()
            .ok_or_else(|| BenchError::Run("cannot find this executable".into()))?,
    };
    let mut args: Vec<String> = vec!["-p".into(), "0".into()];
    let mut ready = None;
    if !a.bare {
        let admin_dir = keys_dir.join(format!("admin-{}", a.bits));
        crate::keycache::load_or_make(&admin_dir, 1, a.bits)?;
        let admin = admin_dir.join(format!("rsa{}-00000.pem", a.bits));
        args.extend([
            "--admin-private-key".into(),
            admin.display().to_string(),
            "--rate-limit".into(),
            rate_limit.to_string(),
            // Members join as fast as the server lets them: the join gate is not measured here.
            "--join-rate".into(),
            "100000".into(),
            "--max-connections".into(),
            (a.members + 16).to_string(),
            "--transcription".into(),
            transcript.display().to_string(),
        ]);
        if a.tls {
            args.push("--ssl-self-signed".into());
        }
        for (flag, value) in [
            ("--mailbox-bytes", a.mailbox_bytes),
            ("--mailbox-total", a.mailbox_total),
            (
                "--max-group-size",
                (a.mode == Mode::Group).then_some(crate::protocol::MAX_GROUP_SIZE_BOUND),
            ),
        ] {
            if let Some(v) = value {
                args.extend([flag.into(), v.to_string()]);
            }
        }
        ready = Some("admin connected");
    }
    args.extend(extra.iter().cloned());
    let launch = Launch {
        program,
        args,
        ready_line: ready,
    };
    Ok(ChildServer::start(&launch, Duration::from_secs(30))?)
}

struct Run<'a> {
    plan: &'a Plan,
    ex: Arc<Executor<'static>>,
    target: Target,
    keys: Vec<Arc<Identity>>,
    pid: Option<u32>,
    child: Option<&'a ChildServer>,
}

impl Run<'_> {
    fn role(&self, i: usize) -> Role {
        if i < self.plan.senders {
            Role::Sender
        } else if i < self.plan.senders + self.plan.audit {
            Role::Auditor
        } else {
            Role::Receiver
        }
    }

    async fn drive(&self) -> Result<LoadReport, BenchError> {
        let a = &self.plan.args;
        let mut report = LoadReport::new(self.plan, &self.target.url);
        report.idle = self.pid.and_then(proc::memory);
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let shared = Arc::new(Shared {
            table: OnceLock::new(),
            delivered: AtomicU64::new(0),
            keys_received: AtomicUsize::new(0),
            away_seen: AtomicUsize::new(0),
            acked: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            stop: stop_rx,
        });
        let churn = (a.churn > 0 || a.away)
            .then(|| Churn::new(&self.target, &self.keys, a.members, a.away));
        let cut_off: Vec<usize> = (0..a.members)
            .filter(|&i| self.role(i) == Role::Receiver)
            .collect();
        let role = |i| self.role(i);
        let spec = JoinSpec {
            target: &self.target,
            keys: &self.keys,
            members: a.members,
            role: &role,
            sessions: !self.plan.raw,
            expect_members: a.members + 1,
            churn: churn.as_ref(),
            pid: self.pid,
        };
        let cpu_joins = self.pid.and_then(proc::cpu_seconds);
        let joined = members::join_all(&spec, &self.ex, &shared).await?;
        report.join_server_cpu = match (cpu_joins, self.pid.and_then(proc::cpu_seconds)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        report.join_wall = joined.wall;
        report.join_each = Summary::of(&joined.each);
        report.join_server = Summary::of(&joined.server_part);
        report.join_cpu_first = joined.cpu_first;
        report.join_cpu_last = joined.cpu_last;
        report.welcome_bytes = joined.welcome_bytes;
        let mut full = Vec::new();
        for (i, role, task) in joined.full {
            let limit = Duration::from_secs(30);
            full.push((
                i,
                role,
                within(limit, "members seeing everyone", task).await?,
            ));
        }
        smol::Timer::after(Duration::from_secs(u64::from(a.hold))).await;
        report.joined = self.pid.and_then(proc::memory);
        let mut receivers = joined.receivers;
        if a.seconds == 0 {
            drop(stop_tx);
            for r in receivers {
                report.add(r.await);
            }
            report.end = self.pid.and_then(proc::memory);
            return Ok(report);
        }

        let (mut outgoing, table) = self
            .prepare(full, joined.writers, &shared, &mut receivers)
            .await?;
        let keys_expected = self.plan.senders * self.plan.audit;
        let waited = within(
            Duration::from_secs(60),
            "auditors receiving sender keys",
            async {
                while shared.keys_received.load(Ordering::Relaxed) < keys_expected {
                    smol::Timer::after(Duration::from_millis(5)).await;
                }
                Ok(())
            },
        );
        waited.await?;
        smol::Timer::after(Duration::from_millis(200)).await;
        if let (Some(churn), true) = (&churn, a.away) {
            self.go_away(churn, &cut_off, &shared, &mut report).await?;
        }

        let t0 = Instant::now() + Duration::from_millis(50);
        let interval_ns = 1e9 / f64::from(a.rate);
        let _ = shared.table.set(Table {
            t0,
            interval_ns,
            ..table
        });
        let cpu0 = self.pid.and_then(proc::cpu_seconds);
        let own0 = proc::cpu_seconds(std::process::id());
        let senders = self.plan.senders;
        let cutting = churn.as_ref().filter(|_| a.churn > 0).map(|churn| {
            let (churn, members) = (churn.clone(), cut_off.clone());
            let until = t0 + Duration::from_secs(u64::from(a.seconds));
            let rate = a.churn;
            self.ex
                .spawn(async move { churn.drive(&members, rate, t0, until).await })
        });
        let tasks: Vec<Task<Sent>> = outgoing
            .drain(..)
            .enumerate()
            .map(|(s, out)| {
                let shared = shared.clone();
                self.ex.spawn(send(out, s, senders, shared))
            })
            .collect();
        let limit = Duration::from_secs(u64::from(a.seconds) + 30);
        let mut sent = Vec::new();
        for t in tasks {
            sent.push(within(limit, "senders", async { Ok(t.await) }).await?);
        }
        let sent_total: u64 = sent.iter().map(|s| s.count).sum();
        let per_message = match a.mode {
            Mode::All | Mode::Group => (a.members - 1) as u64,
            Mode::Direct => 1,
        };
        report.expected = sent_total * per_message;
        if let Some(cutting) = cutting {
            report.cuts = Some(cutting.await);
        }
        if let (Some(churn), true) = (&churn, a.away) {
            self.come_back(churn, &cut_off, &shared, sent_total, &mut report)
                .await;
        }
        let drain_until = Instant::now() + Duration::from_secs(u64::from(a.drain));
        // Messages dropped from full mailboxes (and reported in a gap) will never come.
        let settled =
            || shared.delivered.load(Ordering::Relaxed) + shared.dropped.load(Ordering::Relaxed);
        while settled() < report.expected && Instant::now() < drain_until {
            smol::Timer::after(Duration::from_millis(2)).await;
        }
        let done = Instant::now();
        report.server_cpu = match (cpu0, self.pid.and_then(proc::cpu_seconds)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        report.client_cpu = match (own0, proc::cpu_seconds(std::process::id())) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        report.end = self.pid.and_then(proc::memory);
        drop(stop_tx);
        for r in receivers {
            let tally = within(Duration::from_secs(10), "receivers stopping", async {
                Ok(r.await)
            })
            .await?;
            report.add(tally);
        }
        report.t0 = Some(t0);
        report.finished = done;
        for s in sent {
            report.add_sent(s.count, s.lag_max, s.late, s.error);
        }
        self.wait_for_prompt(&mut report).await;
        Ok(report)
    }

    /// Seals (or makes up) every message, sends the sender-key distributions, and starts the
    /// receiving tasks of the full members.
    async fn prepare(
        &self,
        full: Vec<(usize, Role, Client)>,
        writers: Vec<(usize, Writer)>,
        shared: &Arc<Shared>,
        receivers: &mut Vec<Task<Tally>>,
    ) -> Result<(Vec<Outgoing>, Table), BenchError> {
        let a = &self.plan.args;
        let s_count = self.plan.senders;
        let total = self.plan.messages as usize;
        let text = text_of(a.bytes);
        let recipient_of = |s: usize, k: usize| (s + 1 + k % (a.members - 1)) % a.members;
        let mut ids = HashMap::with_capacity(total);
        let mut recipient = Vec::new();
        if a.mode == Mode::Direct {
            recipient = (0..total)
                .map(|i| recipient_of(i % s_count, i / s_count) as u32)
                .collect();
        }
        let mut outgoing = Vec::new();
        if self.plan.raw {
            let fake = Fake::new(a.bytes);
            let mut writers = writers;
            writers.sort_by_key(|(i, _)| *i);
            if a.mode == Mode::Group {
                self.create_group(&writers).await?;
            }
            for (s, w) in writers {
                let mut frames = Vec::new();
                for i in (s..total).step_by(s_count) {
                    let id = fake.id(i);
                    let to = (a.mode == Mode::Direct).then(|| {
                        let r = recipient[i] as usize;
                        (self.key_id(r), self.key_id(s))
                    });
                    let group = a.mode == Mode::Group;
                    let json = fake.message(&id, i, i / s_count, to, a.rate, group);
                    frames.push(wire::client_frame(OP_TEXT, json.as_bytes()));
                    ids.insert(id_bytes(&id), i as u32);
                }
                outgoing.push(Outgoing::Frames(w, frames));
            }
        } else {
            let (mut senders, auditors): (Vec<_>, Vec<_>) =
                full.into_iter().partition(|(_, r, _)| *r == Role::Sender);
            senders.sort_by_key(|(i, _, _)| *i);
            for (i, _, client) in auditors {
                receivers.push(self.ex.spawn(receive::audit(client, i, shared.clone())));
            }
            let keys: Vec<String> = (0..self.keys.len()).map(|i| self.key_id(i)).collect();
            let sealing = Sealing {
                total,
                senders: s_count,
                text: &text,
                recipient: &recipient,
                keys: &keys,
                threads: client_threads(),
            };
            messages::fetch_keys(&mut senders, &sealing).await?;
            let sealed = messages::seal(&mut senders, &sealing)?;
            for ((i, _, mut client), sealed) in senders.into_iter().zip(sealed) {
                let Sealed {
                    setup,
                    texts,
                    ids: sealed_ids,
                } = sealed;
                for m in &setup {
                    client
                        .send_msg(m)
                        .await
                        .map_err(|e| BenchError::Run(format!("{}: {e}", members::name(i))))?;
                }
                for (id, index) in sealed_ids {
                    ids.insert(id_bytes(&id), index);
                }
                let (ws, acks, _) = client.into_parts();
                let (sink, stream) = ws.split();
                let sink = Arc::new(smol::lock::Mutex::new(sink));
                let task = receive::receive_ws(stream, sink.clone(), acks, i, shared.clone());
                receivers.push(self.ex.spawn(task));
                outgoing.push(Outgoing::Texts(sink, texts));
            }
        }
        if ids.len() != total {
            return Err(BenchError::Run(format!(
                "prepared {} messages, expected {total}",
                ids.len()
            )));
        }
        let table = Table {
            ids,
            t0: Instant::now(),
            interval_ns: 0.0,
            messages: total,
            recipient,
        };
        Ok((outgoing, table))
    }

    /// Cuts the `members` off and waits until everyone still connected has seen them go away.
    async fn go_away(
        &self,
        churn: &Churn,
        members: &[usize],
        shared: &Shared,
        report: &mut LoadReport,
    ) -> Result<(), BenchError> {
        let online = self.plan.senders + self.plan.audit;
        let want = online * members.len();
        let before = shared.away_seen.load(Ordering::Relaxed);
        for &i in members {
            churn.cut(i);
        }
        within(Duration::from_secs(30), "members going away", async {
            while shared.away_seen.load(Ordering::Relaxed) < before + want {
                smol::Timer::after(Duration::from_millis(5)).await;
            }
            Ok(())
        })
        .await?;
        report.away_members = members.len();
        report.away_before = self.pid.and_then(proc::memory);
        Ok(())
    }

    /// Once the server has taken every message (all acknowledged), reads its memory with the
    /// mailboxes full, then brings the `members` back one after another.
    async fn come_back(
        &self,
        churn: &Churn,
        members: &[usize],
        shared: &Shared,
        sent: u64,
        report: &mut LoadReport,
    ) {
        let until = Instant::now() + Duration::from_secs(u64::from(self.plan.args.drain));
        while shared.acked.load(Ordering::Relaxed) < sent && Instant::now() < until {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
        report.away_full = self.pid.and_then(proc::memory);
        churn.bring_back(members, Duration::from_secs(30)).await;
    }

    /// `--mode group`: the first sender creates a group of every member (a roster it signs),
    /// before the timed phase.
    async fn create_group(&self, writers: &[(usize, Writer)]) -> Result<(), BenchError> {
        let Some((owner, w)) = writers.first() else {
            return Ok(());
        };
        let mut members: Vec<String> = (0..self.keys.len()).map(|i| self.key_id(i)).collect();
        members.sort();
        let group = super::BENCH_GROUP;
        let bytes = crate::protocol::roster_bytes(group, 1, &self.key_id(*owner), &members);
        let roster = crate::protocol::Roster {
            group: group.into(),
            epoch: 1,
            owner: self.key_id(*owner),
            members,
            signature: base64::engine::general_purpose::STANDARD
                .encode(self.keys[*owner].sign(&bytes)),
        };
        let json = serde_json::to_string(&crate::protocol::ClientMsg::GroupRoster { roster })
            .expect("a roster encodes");
        let frame = wire::client_frame(OP_TEXT, json.as_bytes());
        wire::send(&mut *w.lock().await, &frame)
            .await
            .map_err(|e| BenchError::Run(format!("creating the group: {e}")))?;
        // The hub handles the roster long before the first message of the timed phase.
        smol::Timer::after(Duration::from_millis(500)).await;
        Ok(())
    }

    fn key_id(&self, member: usize) -> String {
        self.keys[member].public().key_id().to_string()
    }

    async fn wait_for_prompt(&self, report: &mut LoadReport) {
        let Some(child) = self.child else { return };
        if self.plan.args.mode != Mode::All || self.plan.raw {
            return;
        }
        let want = report.sent;
        let until = Instant::now() + Duration::from_secs(5);
        while child.prompt.all_lines.load(Ordering::Relaxed) < want && Instant::now() < until {
            smol::Timer::after(Duration::from_millis(5)).await;
        }
        report.prompt_all_lines = Some(child.prompt.all_lines.load(Ordering::Relaxed));
        report.prompt_behind = child.prompt.behind.load(Ordering::Relaxed);
        let last_us = child.prompt.last_all_us.load(Ordering::Relaxed);
        report.prompt_last = Some(child.started + Duration::from_micros(last_us));
        report.notes.extend(
            child
                .prompt
                .notes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
    }
}

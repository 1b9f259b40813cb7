//! `dyspatcher bench --mode file`: files through a server started here. Each member is a real
//! [`Client`] that seals (sender) or opens and hashes (receiver) every chunk. Measured, each
//! three times (the median is reported): one 16 MiB transfer (MB/s, and the server's CPU per MB);
//! ten concurrent transfers of 4 MiB, then of 16 MiB, with the server's resident memory sampled
//! every 20 ms (it must not grow with the size of the files); and the round trip of chat between
//! two other members, alone and during the ten 16 MiB transfers.

use std::fmt;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use super::load::start_child;
use super::proc;
use super::{BenchError, Plan, Summary};
use crate::client::files::Sending;
use crate::client::Client;
use crate::crypto::{self, Identity};
use crate::protocol::{self, FileKind};
use crate::session::{Destination, Event, FileEvent, FileMeta};

const MIB: u64 = 1024 * 1024;
/// Runs of each measurement (the median is reported).
const RUNS: usize = 3;
/// Concurrent transfers in the memory and chat phases.
const CONCURRENT: usize = 10;
/// Chat messages per chat measurement, and their spacing.
const CHATS: usize = 200;
const CHAT_EVERY: Duration = Duration::from_millis(20);
/// Longest any phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(300);

/// What the file bench measured (medians of [`RUNS`]).
pub struct FileReport {
    /// One 16 MiB transfer, MB/s (10⁶ bytes).
    pub single_mb_s: f64,
    /// The server's CPU time per MB of that transfer, ms.
    pub cpu_ms_per_mb: f64,
    /// Ten concurrent transfers: all bytes over the wall time, MB/s, for 4 and 16 MiB files.
    pub concurrent_mb_s: [f64; 2],
    /// The server's resident memory before, and at its highest during, ten transfers of 4 MiB
    /// and of 16 MiB files (KiB).
    pub rss_kib: [(u64, u64); 2],
    /// Chat round trips alone and during ten 16 MiB transfers.
    pub chat: [Summary; 2],
}

fn fail(e: impl fmt::Display) -> BenchError {
    BenchError::Run(e.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the file bench against a server started here.
pub fn run(plan: &Plan) -> Result<FileReport, BenchError> {
    let keys_dir = plan.keys_dir();
    let keys: Vec<Arc<Identity>> =
        crate::keycache::load_or_make(&keys_dir, 2 * CONCURRENT + 2, plan.args.bits)?
            .into_iter()
            .map(Arc::new)
            .collect();
    let transcript = std::env::temp_dir().join(format!(
        "dyspatcher-bench-files-{}-{}.txt",
        std::process::id(),
        crypto::random_id()
    ));
    let files_dir =
        std::env::temp_dir().join(format!("dyspatcher-bench-files-{}", crypto::random_id()));
    // Members leave as soon as they disconnect, so each run starts from an empty room.
    let extra = ["--away-grace", "0", "--files-dir"].map(String::from);
    let mut extra = extra.to_vec();
    extra.push(files_dir.display().to_string());
    let child = start_child(plan, &keys_dir, &transcript, Some(100_000), &extra)?;
    let url = format!("ws://{}/ws", child.addr);
    let result = measure(&url, child.pid, &keys);
    child.stop(Duration::from_secs(10));
    let _ = std::fs::remove_file(&transcript);
    let _ = std::fs::remove_dir_all(&files_dir);
    result
}

fn measure(url: &str, pid: u32, keys: &[Arc<Identity>]) -> Result<FileReport, BenchError> {
    let mut single = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..RUNS {
        let before = proc::cpu_seconds(pid).unwrap_or(0.0);
        let took = transfers(url, keys, 1, 16 * MIB)?[0];
        let mb = (16 * MIB) as f64 / 1e6;
        cpu.push((proc::cpu_seconds(pid).unwrap_or(0.0) - before) * 1000.0 / mb);
        single.push(mb / took.as_secs_f64());
    }
    let mut concurrent = [0.0; 2];
    let mut rss = [(0, 0); 2];
    for (slot, size) in [4 * MIB, 16 * MIB].into_iter().enumerate() {
        let (mut rates, mut idle, mut peak) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            idle.push(proc::memory(pid).map_or(0, |m| m.rss_kib) as f64);
            let sampler = Sampler::start(pid);
            let t0 = Instant::now();
            transfers(url, keys, CONCURRENT, size)?;
            let wall = t0.elapsed();
            peak.push(sampler.stop() as f64);
            rates.push((CONCURRENT as u64 * size) as f64 / 1e6 / wall.as_secs_f64());
        }
        concurrent[slot] = median(rates);
        rss[slot] = (median(idle) as u64, median(peak) as u64);
    }
    let chat_keys = &keys[2 * CONCURRENT..];
    let mut alone = Vec::new();
    let mut busy = Vec::new();
    for _ in 0..RUNS {
        alone.extend(chat(url, chat_keys)?);
        let url2 = url.to_string();
        let transfer_keys = keys.to_vec();
        let load =
            std::thread::spawn(move || transfers(&url2, &transfer_keys, CONCURRENT, 16 * MIB));
        busy.extend(chat(url, chat_keys)?);
        load.join()
            .map_err(|_| fail("a transfer thread panicked"))??;
    }
    let summary = |d: &[Duration]| Summary::of(d).ok_or_else(|| fail("no chat message arrived"));
    Ok(FileReport {
        single_mb_s: median(single),
        cpu_ms_per_mb: median(cpu),
        concurrent_mb_s: concurrent,
        rss_kib: rss,
        chat: [summary(&alone)?, summary(&busy)?],
    })
}

/// Samples a process's resident memory every 20 ms; [`Sampler::stop`] gives the highest.
struct Sampler {
    stop: Arc<Mutex<bool>>,
    thread: std::thread::JoinHandle<u64>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(Mutex::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !*flag.lock().unwrap_or_else(|e| e.into_inner()) {
                peak = peak.max(proc::memory(pid).map_or(0, |m| m.rss_kib));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Self { stop, thread }
    }

    fn stop(self) -> u64 {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.thread.join().unwrap_or(0)
    }
}

/// `n` transfers of `size` bytes at once, each between its own two members; their durations.
/// `n` transfers of `size` bytes at once, each between its own pair of members (keys `2i` and
/// `2i + 1`); the time each took, from the manifest to the receiver's check of the hash.
pub fn transfers(
    url: &str,
    keys: &[Arc<Identity>],
    n: usize,
    size: u64,
) -> Result<Vec<Duration>, BenchError> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (url, barrier) = (url.to_string(), barrier.clone());
            let (sk, rk) = (keys[2 * i].clone(), keys[2 * i + 1].clone());
            std::thread::spawn(move || {
                smol::block_on(super::within(PHASE_LIMIT, "a file transfer", async {
                    pair(&url, sk, rk, i, size, &barrier).await
                }))
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().map_err(|_| fail("a transfer thread panicked"))?)
        .collect()
}

async fn connect(url: &str, name: &str, key: Arc<Identity>) -> Result<Client, BenchError> {
    Client::connect(url, name, key, None)
        .await
        .map_err(|e| fail(format!("{name}: {e}")))
}

async fn until_member(c: &mut Client, name: &str) -> Result<(), BenchError> {
    while c.session().key_id_of(name).is_none() {
        c.next_event().await.map_err(fail)?;
    }
    Ok(())
}

async fn pair(
    url: &str,
    sk: Arc<Identity>,
    rk: Arc<Identity>,
    i: usize,
    size: u64,
    barrier: &Barrier,
) -> Result<Duration, BenchError> {
    let (sname, rname) = (format!("fsend{i}"), format!("frecv{i}"));
    let mut r = connect(url, &rname, rk).await?;
    let mut s = connect(url, &sname, sk).await?;
    until_member(&mut s, &rname).await?;
    until_member(&mut r, &sname).await?;
    let data: Vec<u8> = (0..size).map(|b| (b as u8) ^ (i as u8)).collect();
    let meta = FileMeta {
        name: format!("bench{i}.bin"),
        mime: "application/octet-stream".into(),
        kind: FileKind::File,
        size,
        sha256: crypto::hex(&<sha2::Sha256 as sha2::Digest>::digest(&data)),
    };
    let to_key = s
        .session()
        .key_id_of(&rname)
        .unwrap_or_default()
        .to_string();
    // The member list carries no public keys: the recipient's is fetched before the clock starts.
    s.fetch_keys(vec![to_key.clone()]).await.map_err(fail)?;
    let to = Destination::Direct(to_key);
    barrier.wait();
    let t0 = Instant::now();
    let (msgs, file) = s.session_mut().seal_file(&to, &meta).map_err(fail)?;
    for m in &msgs {
        s.send_msg(m).await.map_err(fail)?;
    }
    let sending = Sending::new(
        file,
        Box::new(std::io::Cursor::new(data)),
        protocol::FILE_WINDOW,
    );
    let (sent, got) = futures_lite::future::zip(send_all(&mut s, sending), receive(&mut r)).await;
    sent?;
    got?;
    let took = t0.elapsed();
    s.close().await;
    r.close().await;
    Ok(took)
}

async fn send_all(c: &mut Client, mut s: Sending) -> Result<(), BenchError> {
    loop {
        for m in s.ready().map_err(fail)? {
            c.send_msg(&m).await.map_err(fail)?;
        }
        if s.finished() {
            return Ok(());
        }
        match c.next_event().await.map_err(fail)? {
            Event::File(FileEvent::ChunkAck { id, i }) if id == s.id() => s.acked(i),
            Event::File(FileEvent::Cancelled { reason, .. }) => {
                return Err(fail(format!(
                    "the transfer was cancelled: {}",
                    reason.as_str()
                )))
            }
            Event::Error { message, .. } => return Err(fail(message)),
            _ => {}
        }
    }
}

async fn receive(c: &mut Client) -> Result<(), BenchError> {
    loop {
        match c.next_event().await.map_err(fail)? {
            Event::File(FileEvent::Done { .. }) => return Ok(()),
            Event::File(FileEvent::Failed { reason, .. }) => return Err(fail(reason)),
            Event::File(FileEvent::Cancelled { reason, .. }) => {
                return Err(fail(format!("cancelled: {}", reason.as_str())))
            }
            _ => {}
        }
    }
}

/// [`CHATS`] direct messages from one member to another, every [`CHAT_EVERY`]; the time from
/// sealing each to its arrival, opened.
fn chat(url: &str, keys: &[Arc<Identity>]) -> Result<Vec<Duration>, BenchError> {
    smol::block_on(super::within(PHASE_LIMIT, "chat", async {
        let mut c = connect(url, "chatc", keys[0].clone()).await?;
        let mut d = connect(url, "chatd", keys[1].clone()).await?;
        until_member(&mut c, "chatd").await?;
        until_member(&mut d, "chatc").await?;
        let sent: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
        let log = sent.clone();
        let sender = async {
            for n in 0..CHATS {
                let at = Instant::now();
                let id = c
                    .send_direct("chatd", &format!("ping {n}"))
                    .await
                    .map_err(fail)?;
                log.lock().unwrap_or_else(|e| e.into_inner()).insert(id, at);
                smol::Timer::after(CHAT_EVERY).await;
            }
            Ok::<_, BenchError>(())
        };
        let receiver = async {
            let mut took = Vec::new();
            while took.len() < CHATS {
                if let Event::Message(m) = d.next_event().await.map_err(fail)? {
                    // The id is logged just after the send: wait for it if the message won.
                    let at = loop {
                        if let Some(at) = sent.lock().unwrap_or_else(|e| e.into_inner()).get(&m.id)
                        {
                            break *at;
                        }
                        smol::Timer::after(Duration::from_millis(1)).await;
                    };
                    took.push(at.elapsed());
                }
            }
            Ok::<_, BenchError>(took)
        };
        let (s, took) = futures_lite::future::zip(sender, receiver).await;
        s?;
        c.close().await;
        d.close().await;
        took
    }))
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "files (medians of {RUNS} runs; members are real clients on this machine)"
        )?;
        writeln!(
            f,
            "  one 16 MiB transfer: {:.1} MB/s; server CPU {:.1} ms per MB",
            self.single_mb_s, self.cpu_ms_per_mb
        )?;
        for (slot, size) in ["4 MiB", "16 MiB"].iter().enumerate() {
            let (idle, peak) = self.rss_kib[slot];
            writeln!(
                f,
                "  {CONCURRENT} transfers of {size} at once: {:.1} MB/s in all; server RSS {:.1} MiB before, {:.1} MiB at most during",
                self.concurrent_mb_s[slot],
                idle as f64 / 1024.0,
                peak as f64 / 1024.0
            )?;
        }
        for (slot, what) in ["alone", "during 10 transfers of 16 MiB"]
            .iter()
            .enumerate()
        {
            let s = self.chat[slot];
            writeln!(
                f,
                "  chat {what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({CHATS} messages × {RUNS})",
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            )?;
        }
        Ok(())
    }
}

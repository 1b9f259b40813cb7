//! The load generator (`dyspatcher bench`): simulated members join a server and exchange sealed
//! messages while deliveries, latency, losses and the server's CPU and memory are measured.
//!
//! By default it starts the server as a child process of this same executable (so the server's
//! CPU and memory are its own) on 127.0.0.1 with a cached admin key. Member keys are cached on disk
//! (`keycache`), and every message is sealed before the timed phase. Receivers count messages by
//! id after checking the frame (`--audit` of them open and verify every message for real).
//! `--raw` sends frames with made-up ciphertext, and `--bare` drives a relay that knows nothing of
//! the protocol (`examples/bare_relay.rs`), the floor to compare with. Every member acknowledges
//! what it receives, as a client must. `--churn` cuts members' connections and has them resume
//! while messages flow; `--away` lets their mailboxes fill and times each replay. `--soak MINUTES`
//! runs a mix of everything members do for minutes and watches the server's memory, file
//! descriptors and threads (`soak`). Every phase has a time limit.

mod churn;
mod load;
mod members;
mod messages;
mod peer;
pub mod proc;
mod receive;
mod report;
pub mod soak;
mod startup;
mod tally;
pub mod wire;

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use argh::FromArgs;

pub use report::{LoadReport, Report, Summary};

/// measure a dyspatcher server with simulated members (loopback only by default)
#[derive(FromArgs, Debug, Clone)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {
    /// members who join, one after another (default 100)
    #[argh(option, default = "100")]
    pub members: usize,
    /// members among them who send (default 10)
    #[argh(option, default = "10")]
    pub senders: usize,
    /// messages per second, all senders together (default 1000)
    #[argh(option, default = "1000")]
    pub rate: u32,
    /// seconds of sending (default 10; 0 only joins, to measure joins and memory)
    #[argh(option, default = "10")]
    pub seconds: u32,
    /// bytes of text in each message (default 100)
    #[argh(option, default = "100")]
    pub bytes: usize,
    /// all: every message to everyone; direct: each to one member; group: every message to a
    /// private group of all the members (with --raw) (default all)
    #[argh(option, default = "Mode::All")]
    pub mode: Mode,
    /// the server's WebSocket URL (default: start a server in a child process)
    #[argh(option)]
    pub url: Option<String>,
    /// process id of the server behind --url, to read its CPU time and memory
    #[argh(option)]
    pub server_pid: Option<u32>,
    /// executable to start as the server (default: this one)
    #[argh(option)]
    pub server_command: Option<PathBuf>,
    /// folder of cached member keys (default ~/.cache/dyspatcher/bench-keys)
    #[argh(option)]
    pub keys_dir: Option<PathBuf>,
    /// size of the member keys in bits (default 2048)
    #[argh(option, default = "2048")]
    pub bits: usize,
    /// start the server with a self-signed certificate and connect over wss://
    #[argh(switch)]
    pub tls: bool,
    /// for a wss:// --url: the certificate's SHA-256 fingerprint
    #[argh(option)]
    pub fingerprint: Option<String>,
    /// send frames with made-up ciphertext and signatures: no cryptography on the members' side
    #[argh(switch)]
    pub raw: bool,
    /// the server is a bare relay: no join, every frame goes to every other connection (implies --raw)
    #[argh(switch)]
    pub bare: bool,
    /// receivers that open and verify every message they get; the others count by id (default 1)
    #[argh(option, default = "1")]
    pub audit: usize,
    /// seconds to wait for late deliveries after the last send (default 5)
    #[argh(option, default = "5")]
    pub drain: u32,
    /// seconds to keep the members connected after the joins before the server's memory is read
    /// (default 0)
    #[argh(option, default = "0")]
    pub hold: u32,
    /// members who only receive have their connection cut (TCP shut both ways, no close frame)
    /// and resume at once, this many per second while messages are sent (default 0)
    #[argh(option, default = "0")]
    pub churn: u32,
    /// members who only receive are cut off before the sending and come back one after another
    /// after it: the server's memory with their mailboxes full, and each replay timed
    #[argh(switch)]
    pub away: bool,
    /// for a server started here: --mailbox-bytes (bytes kept per member until acknowledged)
    #[argh(option)]
    pub mailbox_bytes: Option<usize>,
    /// for a server started here: --mailbox-total (bytes kept in all mailboxes together)
    #[argh(option)]
    pub mailbox_total: Option<usize>,
    /// allow a --url that is not on this machine
    #[argh(switch)]
    pub remote: bool,
    /// measure start-up instead: time until the port accepts and the page is served
    #[argh(switch)]
    pub startup: bool,
    /// start-ups to time with --startup (default 10)
    #[argh(option, default = "10")]
    pub repeat: usize,
    /// soak the server for MINUTES (fractions allowed) with a mix of joins, leaves, resumes,
    /// kicks, a slow reader, floods and @all/direct traffic; exits 1 on any loss or thread growth
    #[argh(option)]
    pub soak: Option<f64>,
}

/// Where each message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `@all`: to every other member.
    All,
    /// To one member.
    Direct,
    /// To a private group of every member (raw frames only).
    Group,
}

/// The id of the group `--mode group` creates.
pub const BENCH_GROUP: &str = "0123456789abcdef0123456789abcdef";

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Mode::All),
            "direct" => Ok(Mode::Direct),
            "group" => Ok(Mode::Group),
            other => Err(format!("`{other}`: expected all, direct or group")),
        }
    }
}

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad option.
    #[error("{0}")]
    Option(String),
    /// Keys could not be loaded or made.
    #[error(transparent)]
    Keys(#[from] crate::keycache::KeyCacheError),
    /// The server could not be started.
    #[error(transparent)]
    Server(#[from] proc::ChildError),
    /// Something failed during the run.
    #[error("{0}")]
    Run(String),
}

/// Largest values the options accept: every run is bounded in count and time.
pub mod bounds {
    /// Members.
    pub const MEMBERS: usize = 5000;
    /// Messages per second.
    pub const RATE: u32 = 100_000;
    /// Seconds of sending.
    pub const SECONDS: u32 = 120;
    /// Messages in one run.
    pub const MESSAGES: u64 = 1_000_000;
    /// Bits of receipt bookkeeping (members × messages).
    pub const RECEIPTS: u64 = 2_000_000_000;
    /// Seconds of draining.
    pub const DRAIN: u32 = 60;
    /// Start-ups with --startup.
    pub const REPEAT: usize = 100;
    /// Cuts per second with --churn.
    pub const CHURN: u32 = 100;
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The options.
    pub args: BenchArgs,
    /// Total messages to send.
    pub messages: u64,
    /// Members that send.
    pub senders: usize,
    /// Members that open everything.
    pub audit: usize,
    /// No cryptography per message.
    pub raw: bool,
}

fn opt_err(s: impl Into<String>) -> BenchError {
    BenchError::Option(s.into())
}

impl Plan {
    /// Checks the options; every message names the option at fault.
    pub fn new(args: &BenchArgs) -> Result<Self, BenchError> {
        let a = args;
        if !(1..=bounds::MEMBERS).contains(&a.members) {
            return Err(opt_err(format!(
                "--members: must be 1 to {}",
                bounds::MEMBERS
            )));
        }
        if a.seconds > bounds::SECONDS {
            return Err(opt_err(format!(
                "--seconds: at most {} (sealed timestamps must stay fresh)",
                bounds::SECONDS
            )));
        }
        if !(1..=bounds::RATE).contains(&a.rate) {
            return Err(opt_err(format!("--rate: must be 1 to {}", bounds::RATE)));
        }
        if !(1..=crate::protocol::MAX_TEXT).contains(&a.bytes) {
            return Err(opt_err(format!(
                "--bytes: must be 1 to {}",
                crate::protocol::MAX_TEXT
            )));
        }
        if !(2048..=4096).contains(&a.bits) {
            return Err(opt_err("--bits: must be 2048 to 4096"));
        }
        if a.hold > bounds::DRAIN {
            return Err(opt_err(format!("--hold: at most {}", bounds::DRAIN)));
        }
        if a.drain > bounds::DRAIN {
            return Err(opt_err(format!("--drain: at most {}", bounds::DRAIN)));
        }
        if !(1..=bounds::REPEAT).contains(&a.repeat) {
            return Err(opt_err(format!(
                "--repeat: must be 1 to {}",
                bounds::REPEAT
            )));
        }
        let sending = a.seconds > 0;
        if sending && !(1..=a.members).contains(&a.senders) {
            return Err(opt_err("--senders: must be 1 to --members"));
        }
        if sending && a.members < 2 {
            return Err(opt_err("--members: at least 2 to send messages"));
        }
        if a.bare && a.mode == Mode::Direct {
            return Err(opt_err(
                "--mode direct: a bare relay only sends every frame to everyone",
            ));
        }
        if a.mode == Mode::Group && (!a.raw || a.bare || a.url.is_some()) {
            return Err(opt_err(
                "--mode group: with --raw, against a server started here (not --bare or --url)",
            ));
        }
        if a.mode == Mode::Group && a.members > crate::protocol::MAX_GROUP_SIZE_BOUND {
            return Err(opt_err(format!(
                "--mode group: at most {} members (the largest group)",
                crate::protocol::MAX_GROUP_SIZE_BOUND
            )));
        }
        if a.bare && a.tls {
            return Err(opt_err("--tls: the bare relay serves plain WebSocket only"));
        }
        if a.churn > bounds::CHURN {
            return Err(opt_err(format!("--churn: at most {}", bounds::CHURN)));
        }
        if (a.churn > 0 || a.away) && a.bare {
            return Err(opt_err(
                "--churn, --away: a bare relay has no members to resume",
            ));
        }
        if (a.churn > 0 || a.away) && a.seconds == 0 {
            return Err(opt_err("--churn, --away: need --seconds above 0"));
        }
        if a.churn > 0 && a.away {
            return Err(opt_err("--churn: not together with --away"));
        }
        if (a.mailbox_bytes.is_some() || a.mailbox_total.is_some()) && a.url.is_some() {
            return Err(opt_err(
                "--mailbox-bytes, --mailbox-total: for a server started here, not with --url",
            ));
        }
        if a.server_pid.is_some() && a.url.is_none() {
            return Err(opt_err(
                "--server-pid: goes with --url (a server started here is measured anyway)",
            ));
        }
        if a.url.is_some() && (a.server_command.is_some() || a.tls) {
            return Err(opt_err(
                "--url: not together with --server-command or --tls (for wss:// give --fingerprint)",
            ));
        }
        if a.fingerprint.is_some() && !a.url.as_deref().is_some_and(|u| u.starts_with("wss://")) {
            return Err(opt_err("--fingerprint: goes with a wss:// --url"));
        }
        if let Some(url) = &a.url {
            let (_, host, _) =
                crate::client::parse_url(url).map_err(|e| opt_err(format!("--url: {e}")))?;
            if !a.remote && !is_local(&host) {
                return Err(opt_err(format!(
                    "--url: {host} is not this machine; add --remote to measure a server elsewhere"
                )));
            }
        }
        soak::check(&Plan {
            args: a.clone(),
            messages: 0,
            senders: 0,
            audit: 0,
            raw: false,
        })?;
        let raw = a.raw || a.bare;
        let senders = if sending { a.senders } else { 0 };
        let audit = if sending && !raw && a.mode == Mode::All {
            a.audit
        } else {
            0
        };
        if audit > a.members - senders {
            return Err(opt_err(
                "--audit: at most the members who do not send (--members minus --senders)",
            ));
        }
        if (a.churn > 0 || a.away) && a.members - senders - audit == 0 {
            return Err(opt_err(
                "--churn, --away: no member only receives; raise --members or lower --senders, --audit",
            ));
        }
        let messages = u64::from(a.rate) * u64::from(a.seconds);
        if messages > bounds::MESSAGES {
            return Err(opt_err(format!(
                "--rate × --seconds: at most {} messages in one run",
                bounds::MESSAGES
            )));
        }
        if messages * a.members as u64 > bounds::RECEIPTS {
            return Err(opt_err(
                "--members × --rate × --seconds: too many receipts to track; lower one of them",
            ));
        }
        if sending && messages < senders as u64 {
            return Err(opt_err(
                "--rate × --seconds: fewer messages than senders; raise --rate or --seconds",
            ));
        }
        Ok(Self {
            args: a.clone(),
            messages,
            senders,
            audit,
            raw,
        })
    }

    /// Where member keys are cached.
    pub fn keys_dir(&self) -> PathBuf {
        if let Some(d) = &self.args.keys_dir {
            return d.clone();
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })
            .unwrap_or_else(std::env::temp_dir);
        cache.join("dyspatcher").join("bench-keys")
    }
}

fn is_local(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Runs one measurement and returns its report.
pub fn run_bench(args: &BenchArgs) -> Result<Report, BenchError> {
    let plan = Plan::new(args)?;
    if args.startup {
        return startup::run(&plan).map(Report::Startup);
    }
    if args.soak.is_some() {
        return soak::run(&plan).map(|r| Report::Soak(Box::new(r)));
    }
    load::run(&plan).map(|r| Report::Load(Box::new(r)))
}

/// Runs the load generator; returns the process exit code.
pub fn run(args: BenchArgs) -> i32 {
    match run_bench(&args) {
        Ok(report) => {
            println!("{report}");
            match &report {
                Report::Soak(r) if !r.passed() => {
                    eprintln!(
                        "dyspatcher bench: the soak failed: {}",
                        r.failures.join("; ")
                    );
                    1
                }
                _ => 0,
            }
        }
        Err(e @ BenchError::Option(_)) => {
            eprintln!("dyspatcher bench: {e}");
            2
        }
        Err(e) => {
            eprintln!("dyspatcher bench: {e}");
            1
        }
    }
}

/// Runs `f` to completion, or fails with `what` after `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    futures_lite::future::or(f, async {
        smol::Timer::after(limit).await;
        Err(BenchError::Run(format!(
            "{what}: no answer within {} s",
            limit.as_secs()
        )))
    })
    .await
}

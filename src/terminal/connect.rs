//! `dyspatcher connect`: the chat in a terminal. Reads `@NAME text`, `@all text`, `#GROUP text`,
//! `/send NAME|#GROUP|all FILE`, `/cancel`, `/users` and `/quit` from stdin (received files go to `--files-dir`), prints what arrives, and when the connection drops reconnects with backoff
//! (1 s doubling to 30 s, jittered) and resumes the membership, one line per change of state. It
//! does not come back after a kick or ban (until it ends), a removal from the allow list, a
//! takeover by a newer connection with the same key, or a refused join.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;

use crate::admin::{self, Command};
use crate::cli::ConnectArgs;
use crate::client::desk::{Desk, DeskOutput};
use crate::client::{Client, ClientError};
use crate::console;
use crate::crypto::Identity;
use crate::protocol::{close, now_ms, DeliveryState, ErrorCode, Presence};
use crate::session::Event;

/// First wait before reconnecting.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Own direct messages remembered to name them in delivery lines.
const SENT_KEPT: usize = 256;
/// Characters of a sent message quoted in its delivery line.
const QUOTE_CHARS: usize = 24;

/// Runs `dyspatcher connect`; returns the process exit code.
pub fn connect(args: ConnectArgs) -> i32 {
    let identity = match &args.key {
        Some(path) => match crate::config::load_key(path) {
            Ok(id) => id,
            Err(e) => {
                eprintln!(
                    "dyspatcher: {}",
                    e.to_string().replace("--admin-private-key", "--key")
                );
                return 2;
            }
        },
        None => {
            eprintln!("generating a {}-bit key for this session…", args.bits);
            match Identity::generate(args.bits) {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("dyspatcher: --bits: {e}");
                    return 2;
                }
            }
        }
    };
    match smol::block_on(chat(&args, Arc::new(identity))) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dyspatcher: {e}");
            1
        }
    }
}

/// Why a conversation on one connection ended.
enum End {
    /// `/quit`.
    Quit,
    /// The connection was lost or closed.
    Lost(ClientError),
}

/// What the terminal remembers across connections.
struct Chat {
    me: String,
    /// Own direct messages by id: (recipient, the start of the text).
    sent: HashMap<String, (String, String)>,
    sent_order: VecDeque<String>,
    /// When a kick or ban ends, from the last `kicked`/`banned` notice (`None` inside: never).
    until: Option<Option<i64>>,
    /// Files being sent and received.
    desk: Desk,
}

async fn chat(args: &ConnectArgs, identity: Arc<Identity>) -> Result<(), ClientError> {
    let tls = if args.url.starts_with("wss://") {
        let config =
            crate::tls::client_config(args.fingerprint.as_deref(), args.ca_file.as_deref())
                .map_err(|e| ClientError::Url(format!("{}: {e}", args.url)))?;
        Some(config)
    } else {
        None
    };
    let mut client = Client::connect(&args.url, &args.name, identity, tls).await?;
    let mut chat = Chat {
        me: client.session().name().unwrap_or(&args.name).to_string(),
        sent: HashMap::new(),
        sent_order: VecDeque::new(),
        until: None,
        desk: Desk::new(
            args.files_dir
                .clone()
                .unwrap_or_else(|| crate::client::files::DEFAULT_DIR.into()),
        ),
    };
    println!(
        "joined as {} ({}); {} member(s). Type @NAME text, @all text, /send NAME|#GROUP|all FILE, \
         /users, /quit.",
        chat.me,
        &client.session().key_id()[..12],
        client.session().members().len()
    );
    chat.print_queued(&mut client);
    let (tx, lines) = async_channel::bounded::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send_blocking(line).is_err() {
                return;
            }
        }
    });
    loop {
        let lost = match chat.converse(&mut client, &lines).await? {
            End::Quit => {
                let _ = client.ack().await;
                client.close().await;
                return Ok(());
            }
            End::Lost(e) => e,
        };
        if let Some(why) = chat.final_close(&client) {
            println!("[{}] * {why}", now());
            return Err(lost);
        }
        println!("[{}] * connection lost ({lost}); reconnecting", now());
        for line in chat.desk.connection_lost() {
            println!("[{}] * {line}", now());
        }
        if chat.reconnect(&mut client, &lines).await? {
            return Ok(());
        }
    }
}

fn now() -> String {
    console::clock(now_ms())
}

impl Chat {
    /// Reads the server and stdin until the connection ends or the user quits.
    async fn converse(
        &mut self,
        client: &mut Client,
        lines: &async_channel::Receiver<String>,
    ) -> Result<End, ClientError> {
        loop {
            enum Step {
                Msg(Box<Result<crate::protocol::ServerMsg, ClientError>>),
                Line(Option<String>),
            }
            // Only `recv_msg` is raced: it loses nothing when the other side wins.
            let step = future::or(
                async { Step::Msg(Box::new(client.recv_msg().await)) },
                async {
                    if lines.is_closed() && lines.is_empty() {
                        // End of input: stay to read what arrives (a piped client keeps listening).
                        future::pending::<()>().await;
                    }
                    Step::Line(lines.recv().await.ok())
                },
            )
            .await;
            let step = match step {
                Step::Msg(msg) => Ok(*msg),
                Step::Line(line) => Err(line),
            };
            match step {
                Ok(Err(e)) => return Ok(End::Lost(e)),
                Ok(Ok(msg)) => match client.process(msg).await {
                    Ok(events) => {
                        for event in events {
                            let (out, handled) = self.desk.event(client.session_mut(), &event);
                            if let Err(e) = desk_output(client, out).await {
                                return Ok(End::Lost(e));
                            }
                            if !handled {
                                self.show(client, event);
                            }
                        }
                        let out = self.desk.keys_arrived(client.session_mut());
                        if let Err(e) = desk_output(client, out).await {
                            return Ok(End::Lost(e));
                        }
                    }
                    Err(e) => return Ok(End::Lost(e)),
                },
                Err(None) => {}
                Err(Some(line)) => {
                    if let Some(end) = self.typed(client, &line).await {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Acts on one typed line; `Some` when it ends the conversation.
    async fn typed(&mut self, client: &mut Client, line: &str) -> Option<End> {
        if let Some(cmd) = console::groups::parse(line) {
            return self.group(client, cmd).await;
        }
        match admin::parse(line) {
            Ok(Command::Send { to, text }) => {
                let sent = match &to {
                    Some(name) => client.send_direct(name, &text).await,
                    None => client.send_all(&text).await,
                };
                let shown = format!(
                    "[{}] {} → {}: {text}",
                    now(),
                    self.me,
                    to.as_deref().unwrap_or("@all")
                );
                match sent {
                    Ok(id) => {
                        println!("{shown}");
                        if let Some(name) = to {
                            self.remember(id, name, &text);
                        }
                    }
                    Err(ClientError::Send(e)) => println!("not sent: {e}"),
                    // Kept by the client: it goes out when the connection is back.
                    Err(e) => {
                        println!("{shown} (queued until the connection is back)");
                        return Some(End::Lost(e));
                    }
                }
            }
            Ok(Command::SendFile { to, path }) => {
                let started = self
                    .desk
                    .send(client.session_mut(), to.as_deref(), path.as_ref());
                match started {
                    Ok(out) => {
                        if let Err(e) = desk_output(client, out).await {
                            return Some(End::Lost(e));
                        }
                    }
                    Err(e) => println!("not sent: {e}"),
                }
            }
            Ok(Command::CancelFiles) => {
                let out = self.desk.cancel_all(client.session_mut());
                if let Err(e) = desk_output(client, out).await {
                    return Some(End::Lost(e));
                }
            }
            Ok(Command::Users) => println!("{}", admin::users(client.session())),
            Ok(Command::Moderate(crate::hub::Moderation::Groups)) => {
                println!("{}", console::list_groups(client.session()))
            }
            Ok(Command::Quit) => return Some(End::Quit),
            Ok(Command::Empty) => {}
            Ok(Command::Help) => println!("{HELP}"),
            Ok(_) => println!("not available here; {HELP}"),
            Err(e) => println!("{e}"),
        }
        None
    }

    /// A group command: the keys it needs are fetched, then it is sealed and sent.
    async fn group(
        &mut self,
        client: &mut Client,
        cmd: Result<console::groups::GroupCommand, String>,
    ) -> Option<End> {
        let cmd = match cmd {
            Ok(cmd) => cmd,
            Err(e) => {
                println!("{e}");
                return None;
            }
        };
        let missing = console::groups::keys_needed(client.session(), &cmd);
        if let Err(e) = client.fetch_keys(missing).await {
            return Some(End::Lost(e));
        }
        match console::groups::run(client.session_mut(), &cmd) {
            Ok((msgs, shown)) => {
                for m in &msgs {
                    if let Err(e) = client.send_msg(m).await {
                        return Some(End::Lost(e));
                    }
                }
                println!("[{}] {shown}", now());
            }
            Err(e) => println!("not done: {e}"),
        }
        None
    }

    fn remember(&mut self, id: String, to: String, text: &str) {
        let quote: String = text.chars().take(QUOTE_CHARS).collect();
        let quote = if quote.len() < text.len() {
            format!("{quote}…")
        } else {
            quote
        };
        self.sent_order.push_back(id.clone());
        self.sent.insert(id, (to, quote));
        while self.sent_order.len() > SENT_KEPT {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
    }

    /// Why not to reconnect after the connection closed this way, if so.
    fn final_close(&self, client: &Client) -> Option<String> {
        let closed = client.closed()?;
        Some(match closed.code {
            close::KICKED => match self.until {
                Some(Some(until)) => format!(
                    "removed by the admin; you may come back after {} ({})",
                    console::clock(until),
                    minutes_left(until)
                ),
                Some(None) => "banned by the admin until the ban is lifted".into(),
                None => format!("removed by the admin: {}", closed.reason),
            },
            close::REMOVED => "removed from the allow list".into(),
            close::REPLACED => {
                "this chat was opened elsewhere with the same key; this one stops here".into()
            }
            close::JOIN_REFUSED => format!("the server refused the join: {}", closed.reason),
            _ => return None,
        })
    }

    /// Reconnects with backoff until the membership is back; `Ok(true)` when the user quit
    /// meanwhile.
    async fn reconnect(
        &mut self,
        client: &mut Client,
        lines: &async_channel::Receiver<String>,
    ) -> Result<bool, ClientError> {
        let mut delay = BACKOFF_FIRST;
        let mut last_error = String::new();
        loop {
            if self.wait(client, lines, jitter(delay)).await {
                return Ok(true);
            }
            match client.resume().await {
                Ok(resumed) => {
                    let how = if resumed {
                        format!(
                            "resumed after message {}; what was kept for you follows",
                            client.last_seq()
                        )
                    } else {
                        "the server had ended the membership: joined again as new".into()
                    };
                    println!("[{}] * reconnected: {how}", now());
                    self.print_queued(client);
                    return Ok(false);
                }
                Err(ClientError::Refused {
                    code: ErrorCode::JoinTimeout,
                    ..
                }) => {}
                Err(e @ ClientError::Refused { .. }) => {
                    if let ClientError::Refused {
                        code: ErrorCode::Banned,
                        until: Some(until),
                        ..
                    } = &e
                    {
                        println!(
                            "[{}] * banned; you may come back after {} ({})",
                            now(),
                            console::clock(*until),
                            minutes_left(*until)
                        );
                    }
                    return Err(e);
                }
                Err(e) => {
                    let text = e.to_string();
                    if text != last_error {
                        println!("[{}] * still offline: {text}; trying again", now());
                        last_error = text;
                    }
                }
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// Waits `d` while still taking typed lines (sealed and kept for when the connection is
    /// back); `true` when the user quit.
    async fn wait(
        &mut self,
        client: &mut Client,
        lines: &async_channel::Receiver<String>,
        d: Duration,
    ) -> bool {
        let until = std::time::Instant::now() + d;
        loop {
            let line = future::or(
                async {
                    if lines.is_closed() && lines.is_empty() {
                        future::pending::<()>().await;
                    }
                    lines.recv().await.ok()
                },
                async {
                    smol::Timer::at(until).await;
                    None
                },
            )
            .await;
            let Some(line) = line else { return false };
            if let Some(End::Quit) = self.typed(client, &line).await {
                return true;
            }
        }
    }

    fn print_queued(&mut self, client: &mut Client) {
        for event in client.take_events() {
            self.show(client, event);
        }
    }

    fn show(&mut self, client: &Client, event: Event) {
        if let Event::Notice { code, until, .. } = &event {
            if code == "kicked" || code == "banned" {
                self.until = Some(*until);
            }
        }
        print_event(client, event, &self.sent);
    }
}

/// What `/help` says here.
const HELP: &str =
    "@NAME text, @all text, #GROUP text, /send NAME|#GROUP|all FILE, /cancel, /users, \
/groups, /group create NAME member…, /group add|remove|owner GROUP NAME, /group leave GROUP, /quit";

/// Shows the desk's lines and sends its messages.
async fn desk_output(client: &mut Client, out: DeskOutput) -> Result<(), ClientError> {
    for line in out.lines {
        println!("[{}] * {line}", now());
    }
    for msg in &out.send {
        client.send_msg(msg).await?;
    }
    Ok(())
}

fn minutes_left(until: i64) -> String {
    let mins = ((until - now_ms()).max(0) as u64).div_ceil(60_000);
    format!("in {mins} min")
}

/// `d` give or take a quarter, so that clients cut off together do not come back together.
fn jitter(d: Duration) -> Duration {
    let r = u16::from_le_bytes(crate::crypto::random_bytes::<2>());
    d.mul_f64(0.75 + 0.5 * f64::from(r) / f64::from(u16::MAX))
}

/// Prints one event; `sent` names own direct messages in delivery lines.
pub fn print_event(client: &Client, event: Event, sent: &HashMap<String, (String, String)>) {
    let now = now();
    match event {
        Event::Message(m) => println!("[{now}] {}", console::describe(client.session(), &m)),
        Event::Joined(m) => println!("[{now}] * {} ({}) joined", m.name, &m.key_id[..12]),
        Event::Left { name, reason, .. } => println!("[{now}] * {name} left ({reason})"),
        Event::Rejected { from_name, reason } => {
            println!("[{now}] ! a message from {from_name} was refused: {reason}")
        }
        Event::Notice { text, .. } => println!("[{now}] * {text}"),
        Event::Error { message, .. } => println!("[{now}] ! the server refused: {message}"),
        Event::Presence { name, state, .. } => {
            let state = match state {
                Presence::Online => "is online",
                Presence::Away => "is away",
            };
            println!("[{now}] * {name} {state}")
        }
        Event::Delivery { id, to, state } => {
            let (name, quote) = match sent.get(&id) {
                Some((name, quote)) => (name.as_str(), format!(": \"{quote}\"")),
                None => (
                    client
                        .session()
                        .name_of(&to)
                        .unwrap_or(&to[..12.min(to.len())]),
                    String::new(),
                ),
            };
            let state = match state {
                DeliveryState::Held => "held for",
                DeliveryState::Delivered => "delivered to",
            };
            println!("[{now}] · {state} {name}{quote}")
        }
        Event::Gap { dropped, kinds } => {
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            println!(
                "[{now}] ! {dropped} message(s) kept for you were dropped while you were away ({})",
                kinds.join(", ")
            )
        }
        Event::NotSent { to, reason } => {
            let to = client.session().name_of(&to).unwrap_or(&to).to_string();
            println!("[{now}] ! not sent to {to}: {reason}")
        }
        Event::Group(g) => println!(
            "[{now}] * {}",
            console::describe_group(client.session(), &g)
        ),
        Event::Welcome { .. } | Event::Ack(_) => {}
        Event::File(_) | Event::FileSkipped { .. } => {}
    }
}

//! The admin's endpoint in the server's process: it gets the admin's key (loaded or generated
//! while the page is already served), joins the hub, opens what reaches the admin, and runs the
//! prompt's commands, on its own thread.

use super::*;
use crate::client::desk::{Desk, DeskOutput};

async fn admin_identity(
    config: &Config,
    out: &Output,
    prompt: &async_channel::Receiver<String>,
    stop: &async_channel::Sender<()>,
    panic: &crate::panic::Button,
) -> Option<Arc<Identity>> {
    let bits = match &config.admin_key {
        AdminKey::Loaded(id) => return Some(id.clone()),
        AdminKey::Generate(bits) => *bits,
    };
    out.notice(format!("generating the admin's {bits}-bit RSA key (the page is already served; the admin joins when it is ready)…"));
    let started = std::time::Instant::now();
    let mut key = smol::unblock(move || Identity::generate(bits));
    loop {
        let tick = smol::Timer::after(Duration::from_secs(5));
        enum Step {
            Key(Box<Result<Identity, crate::crypto::CryptoError>>),
            Tick,
            Line(Option<String>),
        }
        let step = future::or(
            async { Step::Key(Box::new((&mut key).await)) },
            future::or(async { Step::Line(prompt.recv().await.ok()) }, async {
                tick.await;
                Step::Tick
            }),
        )
        .await;
        match step {
            Step::Key(result) => match *result {
                Ok(id) => {
                    out.notice(format!(
                        "admin key ready after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                    return Some(Arc::new(id));
                }
                Err(e) => {
                    out.notice(format!("cannot generate the admin key: {e}"));
                    let _ = stop.try_send(());
                    return None;
                }
            },
            Step::Tick => out.notice(format!(
                "still generating the admin key… {} s",
                started.elapsed().as_secs()
            )),
            Step::Line(None) => return None,
            Step::Line(Some(line)) => match admin::parse(&line) {
                Ok(Command::Quit) => {
                    let _ = stop.try_send(());
                    return None;
                }
                Ok(Command::Help) => out.reply(admin::HELP.to_string()),
                Ok(Command::Panic) => {
                    if !panic.press("/panic") {
                        out.reply(crate::panic::OFF.to_string());
                    }
                }
                Ok(Command::Empty) => {}
                _ => out
                    .reply("the admin key is still being generated; try again in a moment".into()),
            },
        }
    }
}

/// Runs the admin endpoint until the server stops.
pub async fn run(
    config: Config,
    ctx: Arc<Ctx>,
    prompt: async_channel::Receiver<String>,
    stop: async_channel::Sender<()>,
) {
    let out = ctx.out.clone();
    let Some(identity) = admin_identity(&config, &out, &prompt, &stop, &ctx.panic).await else {
        return;
    };
    out.notice(format!(
        "admin {} key ID {}",
        config.admin_name,
        identity.public().key_id()
    ));
    let (outbox, frames, _controls) = Outbox::new(CONSOLE_QUEUE_BYTES);
    let join = hub::Event::Join {
        conn: CONSOLE_CONN,
        name: config.admin_name.clone(),
        key: identity.public().clone(),
        outbox,
        console: true,
        resume: None,
    };
    if ctx.hub.send(join).await.is_err() {
        return;
    }
    let mut endpoint = Endpoint {
        session: Session::new(identity),
        out: out.clone(),
        ctx: ctx.clone(),
        welcome: config.welcome.clone(),
        budgets: HashMap::new(),
        desk: Desk::new(config.files_dir.clone()),
    };
    loop {
        enum Step {
            Frame(Option<ws::Frame>),
            Line(Option<String>),
            Tick,
        }
        // Woken only by a frame, a line, or a parked message's time running out: an idle
        // prompt does not wake at all.
        let due = endpoint.session.pending_due();
        let step = future::or(
            async { Step::Frame(frames.recv().await.ok()) },
            future::or(async { Step::Line(prompt.recv().await.ok()) }, async {
                match due {
                    Some(at) => drop(smol::Timer::at(at).await),
                    None => future::pending::<()>().await,
                }
                Step::Tick
            }),
        )
        .await;
        match step {
            Step::Frame(None) => return,
            Step::Frame(Some(frame)) => endpoint.frame(&frame).await,
            Step::Line(Some(line)) => {
                if !endpoint.command(&line).await {
                    let _ = stop.try_send(());
                }
            }
            Step::Line(None) => {}
            Step::Tick => {
                let expired = endpoint.session.expire_pending();
                endpoint.apply(expired).await;
            }
        }
    }
}

struct Endpoint {
    session: Session,
    out: Output,
    ctx: Arc<Ctx>,
    welcome: Option<String>,
    budgets: HashMap<String, Budget>,
    desk: Desk,
}

/// One sender's private-key operations in the current minute.
struct Budget {
    since: Instant,
    used: u32,
    reported: bool,
}

impl Endpoint {
    async fn send(&self, msg: crate::protocol::ClientMsg) {
        let _ = self
            .ctx
            .hub
            .send(hub::Event::Msg {
                conn: CONSOLE_CONN,
                msg,
                credit: hub::Credit::none(),
            })
            .await;
    }

    async fn frame(&mut self, frame: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<ServerMsg>(ws::payload(frame)) else {
            return;
        };
        let costly = match &msg {
            ServerMsg::Direct(d) => Some(&d.from),
            ServerMsg::SenderKey(k) => Some(&k.from),
            ServerMsg::File(f) if f.key.is_some() => Some(&f.from),
            _ => None,
        };
        if let Some(from) = costly {
            if !self.spend(&from.key_id) {
                let budget = self.budgets.get_mut(&from.key_id).expect("just spent");
                if !std::mem::replace(&mut budget.reported, true) {
                    self.out.show(format!(
                        "! messages from {} are not opened for a minute: more than {KEY_OPS_PER_MINUTE} a minute need the admin's private key",
                        from.name
                    ));
                }
                return;
            }
        }
        let output = self.session.handle(msg);
        self.apply(output).await;
    }

    /// Takes one private-key operation from `sender`'s budget; false when it is spent.
    fn spend(&mut self, sender: &str) -> bool {
        let now = Instant::now();
        if self.budgets.len() >= MAX_BUDGETS && !self.budgets.contains_key(sender) {
            self.budgets
                .retain(|_, b| now.duration_since(b.since) < Duration::from_secs(60));
            if self.budgets.len() >= MAX_BUDGETS {
                return false;
            }
        }
        let budget = self.budgets.entry(sender.to_string()).or_insert(Budget {
            since: now,
            used: 0,
            reported: false,
        });
        if now.duration_since(budget.since) >= Duration::from_secs(60) {
            *budget = Budget {
                since: now,
                used: 0,
                reported: false,
            };
        }
        budget.used += 1;
        budget.used <= KEY_OPS_PER_MINUTE
    }

    async fn apply(&mut self, output: SessionOutput) {
        for msg in output.send {
            self.send(msg).await;
        }
        for event in output.events {
            let (out, handled) = self.desk.event(&mut self.session, &event);
            self.desk_output(out).await;
            if !handled {
                self.show(event).await;
            }
        }
    }

    /// Shows (and records in the transcript: names, sizes and hashes, never content) what the
    /// files desk says, and sends its messages.
    async fn desk_output(&mut self, out: DeskOutput) {
        for line in out.lines {
            self.out.show(line);
        }
        for msg in out.send {
            self.send(msg).await;
        }
    }

    async fn show(&mut self, event: Event) {
        let me = self.session.key_id().to_string();
        match event {
            Event::Welcome { members, .. } => {
                self.out.notice(format!(
                    "admin connected; {} member(s) online",
                    members.len()
                ));
                // Users who joined while the admin's key was being made get their welcome now.
                if let Some(text) = self.welcome.clone() {
                    for m in members.iter().filter(|m| !m.admin) {
                        if let Ok(msgs) = self.session.queue_direct(&m.key_id, &text) {
                            for msg in msgs {
                                self.send(msg).await;
                            }
                        }
                    }
                }
            }
            Event::Joined(m) if m.key_id == me => {
                self.out.notice("the admin's web seat connected".into())
            }
            Event::Joined(m) => {
                self.out
                    .notice(format!("{} ({}) joined", m.name, &m.key_id[..12]));
                if let Some(text) = self.welcome.clone() {
                    if let Ok(msgs) = self.session.queue_direct(&m.key_id, &text) {
                        for msg in msgs {
                            self.send(msg).await;
                        }
                    }
                }
            }
            Event::Left { key_id, .. } if key_id == me => {
                self.out.notice("the admin's web seat disconnected".into())
            }
            Event::Left {
                name,
                key_id,
                reason,
            } => {
                let why = match reason.as_str() {
                    "left" => String::new(),
                    r => format!(" ({})", r.replace('_', " ")),
                };
                self.out.notice(format!(
                    "{name} ({}) left{why}",
                    &key_id[..12.min(key_id.len())]
                ));
            }
            Event::Message(m) => {
                let line = describe(&self.session, &m);
                self.out.show(line);
            }
            Event::Rejected { from_name, reason } => self.out.show(format!(
                "! a message from {from_name} was refused: {reason}"
            )),
            // The prompt has already said "the server is stopping" itself, before the hub's
            // notice to every connection: one line for one event.
            Event::Notice { code, .. } if code == "shutting_down" => {}
            Event::Notice { text, .. } => self.out.notice(text),
            Event::Error { message, .. } => {
                self.out.show(format!("! the server refused: {message}"))
            }
            Event::Presence { key_id, state, .. } if key_id == me => {
                let text = match state {
                    Presence::Online => "the admin's web seat is back online",
                    Presence::Away => "the admin's web seat is away",
                };
                self.out.notice(text.into())
            }
            Event::Presence {
                name,
                key_id,
                state,
            } => {
                let state = match state {
                    Presence::Online => "is back online",
                    Presence::Away => "is away",
                };
                self.out.notice(format!(
                    "{name} ({}) {state}",
                    &key_id[..12.min(key_id.len())]
                ))
            }
            Event::Gap { dropped, .. } => self.out.notice(format!(
                "{dropped} message(s) for the admin were dropped (mailbox full)"
            )),
            Event::Delivery { to, state, .. } => {
                let name = self.session.name_of(&to).unwrap_or("?").to_string();
                let text = match state {
                    crate::protocol::DeliveryState::Held => format!("held for {name} (away)"),
                    crate::protocol::DeliveryState::Delivered => format!("delivered to {name}"),
                };
                self.out.notice(text)
            }
            Event::NotSent { to, reason } => {
                let to = self.session.name_of(&to).unwrap_or(&to).to_string();
                self.out.show(format!("! not sent to {to}: {reason}"))
            }
            Event::Ack(_) => {}
            Event::File(_) | Event::FileSkipped { .. } => {}
            Event::Group(g) => self.out.notice(super::describe_group(&self.session, &g)),
        }
    }

    /// Runs one prompt line; false means quit.
    async fn command(&mut self, line: &str) -> bool {
        if let Some(cmd) = super::groups::parse(line) {
            let done = cmd.and_then(|c| super::groups::run(&mut self.session, &c));
            match done {
                Ok((msgs, shown)) => {
                    for m in msgs {
                        self.send(m).await;
                    }
                    self.out.show(shown);
                }
                Err(e) => self.out.reply(format!("not done: {e}")),
            }
            return true;
        }
        match admin::parse(line) {
            Err(e) => self.out.reply(e),
            Ok(Command::Empty) => {}
            Ok(Command::Help) => self.out.reply(admin::HELP.to_string()),
            Ok(Command::Quit) => return false,
            Ok(Command::Panic) => {
                if !self.ctx.panic.press("/panic") {
                    self.out.reply(crate::panic::OFF.to_string());
                }
            }
            Ok(Command::Users) => self.out.reply(admin::users(&self.session)),
            Ok(Command::Moderate(action)) => {
                let listing = matches!(action, hub::Moderation::List | hub::Moderation::Groups);
                let (reply, answer) = async_channel::bounded(1);
                let _ = self
                    .ctx
                    .hub
                    .send(hub::Event::Moderate { action, reply })
                    .await;
                match answer.recv().await {
                    Ok(Ok(text)) if listing => self.out.reply(text),
                    Ok(Ok(text)) => self.out.notice(text),
                    Ok(Err(text)) => self.out.reply(text),
                    Err(_) => {}
                }
            }
            Ok(Command::KeyPublic) => self.out.reply(self.session.identity().public().to_pem()),
            Ok(Command::KeyPrivate) => self
                .out
                .secret(self.session.identity().private_pem().to_string()),
            Ok(Command::Send { to, text }) => self.say(to, &text).await,
            Ok(Command::SendFile { to, path }) => {
                match self
                    .desk
                    .send(&mut self.session, to.as_deref(), path.as_ref())
                {
                    Ok(out) => self.desk_output(out).await,
                    Err(e) => self.out.reply(format!("not sent: {e}")),
                }
            }
            Ok(Command::CancelFiles) => {
                let out = self.desk.cancel_all(&mut self.session);
                self.desk_output(out).await;
            }
            Ok(Command::AllowList) => self.out.reply(admin::allow_list(&self.ctx, &self.session)),
            Ok(Command::Reload) => admin::reload_allow_list(&self.ctx).await,
            Ok(Command::Tunnel) => self.out.reply(admin::tunnel(&self.ctx)),
        }
        true
    }

    async fn say(&mut self, to: Option<String>, text: &str) {
        let name = self.session.name().unwrap_or("ADMIN").to_string();
        let (msgs, shown_to) = match &to {
            // Sent once the keys it needs are fetched (at once when they are known).
            None => (self.session.queue_all(text), "@all".to_string()),
            Some(target) => {
                let key = self.session.key_id_of(target).map(str::to_string);
                match key {
                    Some(k) => (self.session.queue_direct(&k, text), target.clone()),
                    None => {
                        self.out.reply(format!(
                            "no member named {target}; /users lists who is here"
                        ));
                        return;
                    }
                }
            }
        };
        match msgs {
            Ok(msgs) => {
                for m in msgs {
                    self.send(m).await;
                }
                let short = &self.session.key_id()[..12];
                self.out.show(format!(
                    "{name} ({short}) (via prompt) → {shown_to}: {text}"
                ));
            }
            Err(e) => self.out.reply(format!("not sent: {e}")),
        }
    }
}

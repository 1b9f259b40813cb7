//! The hub: the one owner of who is a member. Connection tasks feed it events over a bounded
//! channel; it runs them one at a time, and between them expires away members and enforces the
//! mailbox bounds. Membership (join, resume, away, leave, kicks) is in `membership`, routing in
//! `route`, the data in `directory` and `mailbox`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::allowlist::AllowList;
use crate::crypto::PublicIdentity;
use crate::protocol::{close, ClientMsg, DeliveryState, ErrorCode, NoticeCode, ServerMsg};
use crate::replay::{Seen, MAX_SEEN_IDS};
use crate::ws::{self, Frame};

mod bans;
mod credit;
mod directory;
mod files;
mod group_admin;
mod groups;
mod keys;
mod mailbox;
mod membership;
mod moderate;
mod outbox;
mod route;

pub use bans::DEFAULT_KICK_MINUTES;
pub use credit::{Budget, Credit, HUB_QUEUE_BYTES};
pub use directory::{ConnId, Kind};
pub use keys::{check_get_keys, LEFT_KEYS_KEPT};
pub use outbox::{is_join_notice, Closed, Controls, Frames, Item, Outbox, Payload, PushError};

use directory::Directory;
use mailbox::{Mailboxes, Receipt, SeatId};

/// A connected endpoint may hold this fraction of its mailbox bound more, unacknowledged, before
/// it counts as too slow: coming back to a full mailbox, it must have room for what arrives
/// before it acknowledges the replay.
pub const CONNECTED_HEADROOM_DIVISOR: usize = 2;

/// The reason of the panic stop's close frame.
pub const PANIC_REASON: &str = "the chat was ended and the server erased its state";

/// Bytes an outgoing queue may hold beyond the mailbox bound (answers, errors, the welcome).
pub const QUEUE_SLACK_BYTES: usize = 256 * 1024;

/// Events the hub handles, in order.
pub enum Event {
    /// A connection proved possession of `key` and asks to join as `name`.
    Join {
        /// The connection.
        conn: ConnId,
        /// The name it asked for.
        name: String,
        /// Its verified public key.
        key: PublicIdentity,
        /// Its outgoing queue.
        outbox: Outbox,
        /// Whether this is the server's own endpoint (only from inside the server).
        console: bool,
        /// Where it resumes: the last `seq` and `cseq` it received.
        resume: Option<crate::protocol::Resume>,
    },
    /// A message from a joined connection.
    Msg {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: ClientMsg,
        /// Its share of the hub's queue, given back once it is dealt with.
        credit: Credit,
    },
    /// A connection ended.
    Gone {
        /// The connection.
        conn: ConnId,
    },
    /// An admin command about members.
    Moderate {
        /// What to do.
        action: Moderation,
        /// Where to say how it went.
        reply: async_channel::Sender<Result<String, String>>,
    },
    /// The allow list changed.
    AllowList(Option<Arc<AllowList>>),
    /// Close every connection: the server is stopping.
    Shutdown,
    /// The panic stop: close every connection at once (dropping what is queued) and forget every
    /// member, mailbox, kick and ban; the hub ends.
    Panic,
}

/// The admin's commands about members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moderation {
    /// Remove a member and refuse its key for some minutes (the admin's web seat: close it).
    Kick {
        /// The member's name.
        name: String,
        /// How long it is refused.
        minutes: u64,
    },
    /// Remove a member and refuse its key until lifted.
    Ban(String),
    /// Lift a kick or a ban.
    Unban(String),
    /// List kicks and bans in force.
    List,
    /// List the groups: ids, sizes, member names.
    Groups,
    /// Delete the group whose id starts with this.
    GroupDelete(String),
}

/// Who may create groups and how large they may be.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupSettings {
    /// `--groups`.
    pub policy: crate::protocol::GroupPolicy,
    /// `--max-group-size`, `--max-groups`.
    pub limits: crate::protocol::GroupLimits,
}

/// Settings the hub needs.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The admin's name.
    pub admin_name: String,
    /// `@all` is off for users.
    pub disable_all: bool,
    /// Users see and reach only the admin.
    pub only_admin: bool,
    /// Clients may store their identity and state.
    pub remember: bool,
    /// Messages per second per connection.
    pub rate_per_sec: u32,
    /// Burst above the rate.
    pub burst: u32,
    /// Bytes kept per endpoint.
    pub mailbox_bytes: usize,
    /// Bytes kept in all.
    pub mailbox_total: usize,
    /// How long an away member is kept.
    pub away_grace: Duration,
    /// Most endpoints kept away at once; past it the one away longest leaves early.
    pub max_away: usize,
    /// Largest file, in bytes of plaintext.
    pub max_file: u64,
    /// A transfer with no chunk for this long is cancelled.
    pub file_idle: Duration,
    /// Groups.
    pub groups: GroupSettings,
}

/// The hub's state. Run it with [`run`].
pub struct Hub {
    settings: HubSettings,
    allow: Option<Arc<AllowList>>,
    dir: Directory,
    boxes: Mailboxes,
    seen: Seen,
    bans: bans::Bans,
    /// Seats that fell behind, to close once the current event is done.
    slow: Vec<SeatId>,
    /// When away seats expire, in order (the grace period is the same for all).
    expiries: VecDeque<(Instant, SeatId, u64)>,
    console_dropped: u64,
    files: files::Transfers,
    groups: groups::Groups,
    /// Keys of members who left lately, still answered to `get_keys`.
    left_keys: keys::LeftKeys,
}

/// The payload of a server message, encoded once.
fn payload_of(msg: &ServerMsg) -> Payload {
    serde_json::to_vec(msg)
        .expect("server messages always encode")
        .into()
}

fn frame_of(msg: &ServerMsg) -> Frame {
    ws::text_frame(&serde_json::to_vec(msg).expect("server messages always encode"))
}

fn notice(code: NoticeCode, text: impl Into<String>, until: Option<i64>) -> Frame {
    frame_of(&ServerMsg::Notice {
        code,
        text: text.into(),
        until,
    })
}

/// Why a client's message was refused: what its `error` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code.
    pub code: ErrorCode,
    /// What a person reads.
    pub message: String,
    /// The refused message's id, if it had one.
    pub id: Option<String>,
    /// When a ban ends.
    pub until: Option<i64>,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            id: None,
            until: None,
        }
    }

    /// Names the refused message.
    pub fn about(mut self, id: Option<String>) -> Self {
        self.id = id;
        self
    }

    /// Says when a ban ends.
    pub fn until(mut self, until: Option<i64>) -> Self {
        self.until = until;
        self
    }

    /// The `error` frame.
    pub fn frame(&self) -> Frame {
        frame_of(&ServerMsg::Error {
            code: self.code,
            message: self.message.clone(),
            id: self.id.clone(),
            until: self.until,
        })
    }
}

/// Runs the hub until `Shutdown` (or every sender is gone).
pub async fn run(mut hub: Hub, events: async_channel::Receiver<Event>) {
    loop {
        let away = hub.expiries.front().map(|&(at, ..)| at);
        let idle = hub.files.next_deadline(hub.settings.file_idle);
        let wake = match (away, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let next = match wake {
            // Nobody is away and no file is in flight: sleep until something happens.
            None => Some(events.recv().await),
            Some(at) => {
                future::or(async { Some(events.recv().await) }, async {
                    smol::Timer::at(at).await;
                    None
                })
                .await
            }
        };
        let mut stop = false;
        match next {
            None => {
                hub.expire(Instant::now());
                hub.expire_files(Instant::now());
            }
            Some(Err(_)) => break,
            Some(Ok(event)) => {
                stop = matches!(event, Event::Shutdown | Event::Panic);
                hub.handle(event);
            }
        }
        hub.settle();
        if stop {
            break;
        }
    }
}

impl Hub {
    /// A hub with no members.
    pub fn new(settings: HubSettings, allow: Option<Arc<AllowList>>) -> Self {
        let boxes = Mailboxes::new(settings.mailbox_bytes, settings.mailbox_total);
        let left_keys = keys::LeftKeys::new(settings.away_grace);
        Self {
            left_keys,
            settings,
            allow,
            dir: Directory::default(),
            boxes,
            seen: Seen::new(MAX_SEEN_IDS),
            bans: bans::Bans::default(),
            slow: Vec::new(),
            expiries: VecDeque::new(),
            console_dropped: 0,
            files: files::Transfers::default(),
            groups: groups::Groups::default(),
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Join {
                conn,
                name,
                key,
                outbox,
                console,
                resume,
            } => {
                if let Err(refusal) = self.join(conn, name, key, outbox.clone(), console, resume) {
                    let _ = outbox.push(refusal.frame());
                    outbox.close(close::JOIN_REFUSED, code_reason(refusal.code));
                }
            }
            Event::Msg { conn, msg, credit } => {
                self.message(conn, msg);
                drop(credit);
            }
            Event::Gone { conn } => {
                self.files_conn_gone(conn);
                if let Some(seat) = self.dir.seat_of(conn) {
                    self.go_away(seat);
                }
            }
            Event::Moderate { action, reply } => {
                let _ = reply.try_send(self.moderate(action));
            }
            Event::AllowList(list) => self.set_allow_list(list),
            Event::Shutdown => {
                let bye = notice(
                    NoticeCode::ShuttingDown,
                    "the server is shutting down",
                    None,
                );
                for s in self.dir.seats.values() {
                    if let Some((_, outbox)) = &s.conn {
                        let _ = outbox.push(bye.clone());
                        outbox.close(close::GOING_AWAY, "the server is shutting down");
                    }
                }
            }
            Event::Panic => self.forget_everything(),
        }
    }

    /// The panic stop: every connection gets its close frame before anything still queued for
    /// it, then every member, mailbox, kick and ban is dropped.
    fn forget_everything(&mut self) {
        for s in self.dir.seats.values() {
            if let Some((_, outbox)) = &s.conn {
                outbox.abort(close::PANIC, PANIC_REASON);
            }
        }
        self.dir = Directory::default();
        self.boxes = Mailboxes::new(self.settings.mailbox_bytes, self.settings.mailbox_total);
        self.seen = Seen::new(MAX_SEEN_IDS);
        self.bans = bans::Bans::default();
        self.slow.clear();
        self.expiries.clear();
        self.console_dropped = 0;
        self.files = files::Transfers::default();
        self.groups = groups::Groups::default();
        self.left_keys = keys::LeftKeys::new(self.settings.away_grace);
    }

    /// Sends a sequenced frame to `seat` and keeps it in its mailbox until acknowledged.
    fn deliver(
        &mut self,
        seat: SeatId,
        payload: &Payload,
        kind: &'static str,
        receipt: Option<Receipt>,
    ) {
        let Some(s) = self.dir.seats.get(&seat) else {
            return;
        };
        let seq = self.boxes.next_seq(seat);
        let item = Item::Seq(seq, payload.clone());
        if s.kind == Kind::Console {
            // The prompt is in this process: what reaches its queue is delivered. It never
            // stalls the relay; it learns how much it missed instead.
            if let Some((_, outbox)) = &s.conn {
                if outbox.push(item).is_err() {
                    self.console_dropped += 1;
                }
            }
            if let Some(r) = receipt {
                self.delivery(r, DeliveryState::Delivered);
            }
            return;
        }
        let outbox = s.conn.as_ref().map(|(_, o)| o.clone());
        self.boxes.keep(seat, seq, payload.clone(), kind, receipt);
        match outbox {
            Some(outbox) => {
                let full = outbox.push(item) == Err(PushError::Full);
                let bound = self.boxes.each + self.boxes.each / CONNECTED_HEADROOM_DIVISOR;
                if full || self.boxes.bytes(seat) > bound {
                    self.slow.push(seat);
                }
            }
            None => self.boxes.trim(seat, self.boxes.each),
        }
    }

    /// Tells the sender of a direct message what became of it.
    fn delivery(&mut self, r: Receipt, state: DeliveryState) {
        let payload = payload_of(&ServerMsg::Delivery {
            id: r.id,
            to: r.to,
            state,
        });
        for seat in self.dir.seats_of(&r.sender, 0) {
            self.deliver(seat, &payload, "delivery", None);
        }
    }

    /// After each event: closes the endpoints that fell behind, keeps all mailboxes within their
    /// bound, and tells the prompt what it missed.
    fn settle(&mut self) {
        loop {
            while let Some(seat) = self.slow.pop() {
                self.too_slow(seat);
            }
            if self.boxes.total() <= self.boxes.limit {
                break;
            }
            if let Some(seat) = self.boxes.largest_away() {
                self.boxes.drop_oldest(seat);
            } else if let Some(seat) = self.boxes.largest_connected() {
                self.slow.push(seat);
            } else {
                break;
            }
        }
        if self.console_dropped > 0 {
            if let Some((_, outbox)) = self
                .dir
                .admin_seat(Kind::Console)
                .and_then(|s| self.dir.seats.get(&s))
                .and_then(|s| s.conn.as_ref())
            {
                let text = format!(
                    "the prompt fell behind: {} messages not shown",
                    self.console_dropped
                );
                if outbox
                    .push(notice(NoticeCode::PromptBehind, text, None))
                    .is_ok()
                {
                    self.console_dropped = 0;
                }
            }
        }
    }

    fn too_slow(&mut self, seat: SeatId) {
        let connected = self.dir.seats.get(&seat).and_then(|s| s.conn.as_ref());
        if let Some((_, outbox)) = connected {
            outbox.close(close::TOO_SLOW, "too slow: messages were piling up");
            self.go_away(seat);
        }
        self.boxes.trim(seat, self.boxes.each);
    }

    fn refuse(&mut self, conn: ConnId, refusal: Refusal) {
        if let Some(outbox) = self.outbox_of(conn) {
            let _ = outbox.push(refusal.frame());
        }
    }

    fn outbox_of(&self, conn: ConnId) -> Option<Outbox> {
        let seat = self.dir.seats.get(&self.dir.seat_of(conn)?)?;
        seat.conn.as_ref().map(|(_, o)| o.clone())
    }

    fn message(&mut self, conn: ConnId, msg: ClientMsg) {
        let Some(seat) = self.dir.seat_of(conn) else {
            return;
        };
        let result = match msg {
            ClientMsg::Join { .. } => Err(Refusal::new(ErrorCode::AlreadyJoined, "already joined")),
            ClientMsg::Ack { seq, cseq } => self.ack(seat, seq, cseq),
            ClientMsg::File(f) => self.file(seat, conn, f),
            ClientMsg::Chunk(c) => self.chunk(conn, c),
            ClientMsg::FileCancel { file } => self.file_cancel(seat, conn, file),
            ClientMsg::Leave {} => {
                self.leave(seat);
                Ok(())
            }
            ClientMsg::Moderate(m) => self.moderate_from_web(seat, m),
            ClientMsg::Direct(d) => self.direct(seat, d),
            ClientMsg::All(a) => self.all(seat, a),
            ClientMsg::SenderKey(k) => self.sender_key(seat, k),
            ClientMsg::KeyRequest { to, skid, n, group } => {
                self.key_request(seat, to, skid, n, group)
            }
            ClientMsg::GroupRoster { roster } => self.group_roster(seat, roster),
            ClientMsg::GroupLeave { group } => self.group_leave(seat, group),
            ClientMsg::Group(m) => self.group_msg(seat, m),
            ClientMsg::GetKeys { key_ids } => self.get_keys(seat, key_ids),
        };
        if let Err(refusal) = result {
            self.refuse(conn, refusal);
        }
    }

    fn ack(&mut self, seat: SeatId, seq: Option<u64>, cseq: Option<u64>) -> Result<(), Refusal> {
        if seq.is_none() && cseq.is_none() {
            return Err(Refusal::new(
                ErrorCode::BadJson,
                "ack needs seq, cseq or both",
            ));
        }
        if let Some(cseq) = cseq {
            self.ack_chunks(seat, cseq)?;
        }
        let Some(seq) = seq else {
            return Ok(());
        };
        let last = self.boxes.last_seq(seat);
        if seq > last {
            return Err(Refusal::new(
                ErrorCode::BadField,
                format!("ack: seq {seq} was never sent (the last is {last})"),
            ));
        }
        for r in self.boxes.ack(seat, seq) {
            self.delivery(r, DeliveryState::Delivered);
        }
        Ok(())
    }
}

fn code_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadName => "bad name",
        ErrorCode::NameTaken => "name taken",
        ErrorCode::Banned => "banned",
        ErrorCode::NotAllowed => "not on the allow list",
        _ => "join refused",
    }
}

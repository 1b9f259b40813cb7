//! The hub: the one owner of who is connected. Connection tasks feed it events over a bounded
//! channel; it checks each message against the sending session and routes it by key ID, encoding
//! every outgoing frame once and sharing it between recipients.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use base64::Engine;

use crate::allowlist::AllowList;
use crate::crypto::PublicIdentity;
use crate::protocol::{
    self, close, AllIn, AllOut, ClientMsg, DirectIn, DirectOut, ErrorCode, Limits, Member, Options,
    Sender as From, SenderKeyIn, SenderKeyOut, ServerMsg, Via,
};
use crate::ws::{self, Frame};

mod outbox;
pub use outbox::{is_join_notice, Closed, Controls, Frames, Outbox, PushError};

/// Identifies one connection (or the server's own admin endpoint).
pub type ConnId = u64;

/// What kind of endpoint a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A user.
    User,
    /// The admin's web seat.
    AdminWeb,
    /// The server's own admin endpoint (prompt or transcript).
    Console,
}

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
        /// Which endpoint kind it asks to be (`Console` only from inside the server).
        console: bool,
    },
    /// A message from a joined connection.
    Msg {
        /// The connection.
        conn: ConnId,
        /// The message.
        msg: ClientMsg,
    },
    /// A connection ended.
    Gone {
        /// The connection.
        conn: ConnId,
    },
    /// The admin kicks a member by name.
    Kick {
        /// The member's name.
        name: String,
        /// Where to say how it went.
        reply: async_channel::Sender<Result<String, String>>,
    },
    /// The allow list changed.
    AllowList(Option<Arc<AllowList>>),
    /// Close every connection: the server is stopping.
    Shutdown,
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
    /// Messages per second per connection.
    pub rate_per_sec: u32,
    /// Burst above the rate.
    pub burst: u32,
}

struct Conn {
    kind: Kind,
    key_id: String,
    name: String,
    outbox: Outbox,
    member_json: Arc<str>,
}

/// The hub's state. Run it with [`run`].
pub struct Hub {
    settings: HubSettings,
    allow: Option<Arc<AllowList>>,
    conns: HashMap<ConnId, Conn>,
    by_key: HashMap<String, Vec<ConnId>>,
    user_names: HashMap<String, ConnId>,
    admin_key_id: Option<String>,
    seen: HashMap<String, i64>,
    seen_order: VecDeque<(i64, String)>,
    slow: Vec<(ConnId, &'static str)>,
    console_dropped: u64,
}

/// Largest number of ids remembered for replay protection.
const MAX_SEEN_IDS: usize = 200_000;

fn frame_of(msg: &ServerMsg) -> Frame {
    ws::text_frame(&serde_json::to_vec(msg).expect("server messages always encode"))
}

fn error_frame(code: ErrorCode, message: impl Into<String>, id: Option<String>) -> Frame {
    frame_of(&ServerMsg::Error {
        code,
        message: message.into(),
        id,
        until: None,
    })
}

/// Runs the hub until `Shutdown` (or every sender is gone).
pub async fn run(mut hub: Hub, events: async_channel::Receiver<Event>) {
    while let Ok(event) = events.recv().await {
        let stop = matches!(event, Event::Shutdown);
        hub.handle(event);
        hub.drop_slow();
        if stop {
            break;
        }
    }
}

impl Hub {
    /// A hub with nobody connected.
    pub fn new(settings: HubSettings, allow: Option<Arc<AllowList>>) -> Self {
        Self {
            settings,
            allow,
            conns: HashMap::new(),
            by_key: HashMap::new(),
            user_names: HashMap::new(),
            admin_key_id: None,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            slow: Vec::new(),
            console_dropped: 0,
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
            } => {
                if let Err((code, message)) = self.join(conn, name, key, outbox.clone(), console) {
                    let _ = outbox.push(error_frame(code, message, None));
                    outbox.close(close::JOIN_REFUSED, code_reason(code));
                }
            }
            Event::Msg { conn, msg } => self.message(conn, msg),
            Event::Gone { conn } => self.remove(conn, "left"),
            Event::Kick { name, reply } => {
                let _ = reply.try_send(self.kick(&name));
            }
            Event::AllowList(list) => self.set_allow_list(list),
            Event::Shutdown => {
                let notice = frame_of(&ServerMsg::Notice {
                    code: "shutting_down".into(),
                    text: "the server is shutting down".into(),
                    until: None,
                });
                for c in self.conns.values() {
                    let _ = c.outbox.push(notice.clone());
                    c.outbox
                        .close(close::GOING_AWAY, "the server is shutting down");
                }
            }
        }
    }

    fn push(&mut self, conn: ConnId, frame: &Frame) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        match c.outbox.push(frame.clone()) {
            Ok(()) => {}
            // The prompt never stalls the relay; it learns how much it missed instead.
            Err(_) if c.kind == Kind::Console => self.console_dropped += 1,
            Err(PushError::Full) => self.slow.push((conn, "too_slow")),
            // The connection ended; its Gone event is on the way.
            Err(PushError::Closed) => self.slow.push((conn, "left")),
        }
    }

    fn drop_slow(&mut self) {
        while let Some((conn, reason)) = self.slow.pop() {
            if let Some(c) = self.conns.get(&conn) {
                c.outbox
                    .close(close::TOO_SLOW, "too slow: messages were piling up");
                self.remove(conn, reason);
            }
        }
        if self.console_dropped > 0 {
            if let Some(console) = self.console() {
                let notice = frame_of(&ServerMsg::Notice {
                    code: "prompt_behind".into(),
                    text: format!(
                        "the prompt fell behind: {} messages not shown",
                        self.console_dropped
                    ),
                    until: None,
                });
                if self.conns[&console].outbox.push(notice).is_ok() {
                    self.console_dropped = 0;
                }
            }
        }
    }

    fn console(&self) -> Option<ConnId> {
        let admin = self.admin_key_id.as_ref()?;
        self.by_key
            .get(admin)?
            .iter()
            .copied()
            .find(|id| self.conns[id].kind == Kind::Console)
    }

    fn is_admin(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.kind != Kind::User)
    }

    fn can_see(&self, viewer: ConnId, target: ConnId) -> bool {
        !self.settings.only_admin
            || viewer == target
            || self.is_admin(viewer)
            || self.is_admin(target)
    }

    fn join(
        &mut self,
        conn: ConnId,
        name: String,
        key: PublicIdentity,
        outbox: Outbox,
        console: bool,
    ) -> Result<(), (ErrorCode, String)> {
        let key_id = key.key_id().to_string();
        let is_admin_key = console || self.admin_key_id.as_deref() == Some(key_id.as_str());
        let kind = if console {
            self.admin_key_id = Some(key_id.clone());
            Kind::Console
        } else if is_admin_key {
            self.check_listed(&key_id)?;
            let seat_taken = self
                .by_key
                .get(&key_id)
                .is_some_and(|ids| ids.iter().any(|id| self.conns[id].kind == Kind::AdminWeb));
            if seat_taken {
                return Err((
                    ErrorCode::NameTaken,
                    "the admin's web seat is already taken".into(),
                ));
            }
            Kind::AdminWeb
        } else {
            Kind::User
        };
        let name = match kind {
            Kind::User => self.user_name(&key_id, name)?,
            _ => self.settings.admin_name.clone(),
        };
        let member = Member {
            name: name.clone(),
            key_id: key_id.clone(),
            public_key: base64::engine::general_purpose::STANDARD.encode(key.spki_der()),
            admin: kind != Kind::User,
        };
        let member_json: Arc<str> = serde_json::to_string(&member)
            .expect("members encode")
            .into();
        if kind == Kind::User {
            self.user_names.insert(name.clone(), conn);
        }
        self.conns.insert(
            conn,
            Conn {
                kind,
                key_id: key_id.clone(),
                name,
                outbox,
                member_json: member_json.clone(),
            },
        );
        self.by_key.entry(key_id).or_default().push(conn);
        let welcome = self.welcome_frame(conn);
        self.push(conn, &welcome);
        let joined =
            ws::text_frame(format!(r#"{{"type":"joined","member":{member_json}}}"#).as_bytes());
        let others: Vec<ConnId> = self
            .conns
            .keys()
            .copied()
            .filter(|&id| id != conn && self.can_see(id, conn))
            .collect();
        for id in others {
            self.push(id, &joined);
        }
        Ok(())
    }

    fn check_listed(&self, key_id: &str) -> Result<Option<String>, (ErrorCode, String)> {
        match &self.allow {
            None => Ok(None),
            Some(list) => list.name_of(key_id).map(|n| Some(n.to_string())).ok_or((
                ErrorCode::NotAllowed,
                "this key is not on the allow list".into(),
            )),
        }
    }

    fn user_name(&self, key_id: &str, asked: String) -> Result<String, (ErrorCode, String)> {
        let name = self.check_listed(key_id)?.unwrap_or(asked);
        if !protocol::valid_user_name(&name) {
            return Err((
                ErrorCode::BadName,
                "names are 4 to 15 characters: a-z and 0-9".into(),
            ));
        }
        if self.user_names.contains_key(&name) {
            return Err((ErrorCode::NameTaken, format!("the name {name} is taken")));
        }
        if self.by_key.get(key_id).is_some_and(|ids| !ids.is_empty()) {
            return Err((ErrorCode::NameTaken, "this key is already connected".into()));
        }
        Ok(name)
    }

    fn welcome_frame(&self, conn: ConnId) -> Frame {
        let me = &self.conns[&conn];
        let admin = me.kind != Kind::User;
        let mut members: Vec<&str> = Vec::new();
        if let Some(first) = self
            .admin_key_id
            .as_ref()
            .and_then(|k| self.by_key.get(k)?.first())
        {
            members.push(&self.conns[first].member_json);
        }
        for (&id, c) in &self.conns {
            if c.kind == Kind::User && self.can_see(conn, id) {
                members.push(&c.member_json);
            }
        }
        let options = Options {
            admin_name: self.settings.admin_name.clone(),
            disable_all: !admin && (self.settings.disable_all || self.settings.only_admin),
            only_admin: self.settings.only_admin,
            remember: true,
        };
        let limits = Limits {
            max_message: protocol::MAX_MESSAGE,
            max_text: protocol::MAX_TEXT,
            rate_per_sec: self.settings.rate_per_sec,
            burst: self.settings.burst,
            mailbox_bytes: 0,
            away_grace_secs: 0,
        };
        let tail = format!(
            r#"],"options":{},"limits":{},"time":{}}}"#,
            serde_json::to_string(&options).expect("options encode"),
            serde_json::to_string(&limits).expect("limits encode"),
            protocol::now_ms()
        );
        // Up to 400 KB at 500 members: written once, straight into the frame.
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * members.len() + 4);
        parts.extend([
            &br#"{"type":"welcome","you":"#[..],
            me.member_json.as_bytes(),
        ]);
        parts.push(br#","members":["#);
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                parts.push(b",");
            }
            parts.push(m.as_bytes());
        }
        parts.push(tail.as_bytes());
        ws::text_frame_of(&parts)
    }

    fn remove(&mut self, conn: ConnId, reason: &str) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(ids) = self.by_key.get_mut(&c.key_id) {
            ids.retain(|&id| id != conn);
            if ids.is_empty() {
                self.by_key.remove(&c.key_id);
            }
        }
        if c.kind == Kind::User {
            self.user_names.remove(&c.name);
        }
        let left = frame_of(&ServerMsg::Left {
            key_id: c.key_id.clone(),
            name: c.name.clone(),
            reason: reason.to_string(),
        });
        let audience: Vec<ConnId> = match c.kind {
            // The admin is still present through the other endpoint: only that one is told.
            Kind::AdminWeb | Kind::Console => {
                self.by_key.get(&c.key_id).cloned().unwrap_or_default()
            }
            Kind::User => self
                .conns
                .iter()
                .filter(|(_, v)| !self.settings.only_admin || v.kind != Kind::User)
                .map(|(&id, _)| id)
                .collect(),
        };
        for id in audience {
            self.push(id, &left);
        }
    }

    fn kick(&mut self, name: &str) -> Result<String, String> {
        let target = if name == self.settings.admin_name {
            self.conns
                .iter()
                .find(|(_, c)| c.kind == Kind::AdminWeb)
                .map(|(&id, _)| id)
        } else {
            self.user_names.get(name).copied()
        };
        let Some(conn) = target else {
            return Err(format!("no connected member named {name}"));
        };
        self.conns[&conn]
            .outbox
            .close(close::KICKED, "kicked by the admin");
        self.remove(conn, "kicked");
        Ok(format!("{name} was kicked"))
    }

    fn set_allow_list(&mut self, list: Option<Arc<AllowList>>) {
        self.allow = list;
        let Some(list) = self.allow.clone() else {
            return;
        };
        let removed: Vec<(ConnId, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.kind != Kind::Console && list.name_of(&c.key_id).is_none())
            .map(|(&id, c)| (id, c.kind == Kind::User))
            .collect();
        for (conn, _) in removed {
            self.conns[&conn]
                .outbox
                .close(close::REMOVED, "removed from the allow list");
            self.remove(conn, "removed");
        }
    }

    fn refuse(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: impl Into<String>,
        id: Option<String>,
    ) {
        let frame = error_frame(code, message, id);
        self.push(conn, &frame);
    }

    fn message(&mut self, conn: ConnId, msg: ClientMsg) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let result = match msg {
            ClientMsg::Join { .. } => {
                Err((ErrorCode::AlreadyJoined, "already joined".to_string(), None))
            }
            ClientMsg::Direct(d) => self.direct(conn, d),
            ClientMsg::All(a) => self.all(conn, a),
            ClientMsg::SenderKey(k) => self.sender_key(conn, k),
            ClientMsg::KeyRequest { to, skid, n } => self.key_request(conn, to, skid, n),
            ClientMsg::Ack { .. } | ClientMsg::Leave {} => Ok(()),
        };
        if let Err((code, message, id)) = result {
            self.refuse(conn, code, message, id);
        }
    }

    fn sender(&self, conn: ConnId) -> (From, Option<Via>) {
        let c = &self.conns[&conn];
        let via = match c.kind {
            Kind::User => None,
            Kind::AdminWeb => Some(Via::Web),
            Kind::Console => Some(Via::Prompt),
        };
        (
            From {
                name: c.name.clone(),
                key_id: c.key_id.clone(),
            },
            via,
        )
    }

    fn endpoints(&self, key_id: &str, except: ConnId) -> Vec<ConnId> {
        self.by_key
            .get(key_id)
            .map(|ids| ids.iter().copied().filter(|&id| id != except).collect())
            .unwrap_or_default()
    }

    fn fresh(&mut self, id: &str, ts: i64) -> Result<(), (ErrorCode, String, Option<String>)> {
        let now = protocol::now_ms();
        if (ts - now).abs() > protocol::MAX_CLOCK_SKEW_MS {
            return Err((
                ErrorCode::Stale,
                "timestamp is more than 5 minutes from the server's clock".into(),
                Some(id.into()),
            ));
        }
        while let Some((t, _)) = self.seen_order.front() {
            if now - *t <= protocol::SEEN_ID_WINDOW_MS && self.seen_order.len() < MAX_SEEN_IDS {
                break;
            }
            let (_, old) = self.seen_order.pop_front().expect("front exists");
            self.seen.remove(&old);
        }
        if self.seen.insert(id.to_string(), now).is_some() {
            return Err((
                ErrorCode::DuplicateId,
                "this message id was already used".into(),
                Some(id.into()),
            ));
        }
        self.seen_order.push_back((now, id.to_string()));
        Ok(())
    }

    fn direct(
        &mut self,
        conn: ConnId,
        d: DirectOut,
    ) -> Result<(), (ErrorCode, String, Option<String>)> {
        let id = Some(d.id.clone());
        check_sealed(&d.id, &d.iv, &d.ciphertext, &d.signature)
            .map_err(|m| (ErrorCode::BadField, m, id.clone()))?;
        let own = self.conns[&conn].key_id.clone();
        let targets = self.endpoints(&d.to, conn);
        if targets.is_empty() {
            return Err((
                ErrorCode::UnknownRecipient,
                "no such member is connected".into(),
                id,
            ));
        }
        if !targets.iter().all(|&t| self.can_see(conn, t)) {
            return Err((
                ErrorCode::Forbidden,
                "on this server you can write only to the admin".into(),
                id,
            ));
        }
        let mut expected = vec![d.to.as_str(), own.as_str()];
        expected.dedup();
        let keys_ok = d.keys.len() == expected.len()
            && expected.iter().all(|k| {
                d.keys
                    .get(*k)
                    .is_some_and(|w| protocol::is_base64(w) && !w.is_empty())
            });
        if !keys_ok {
            return Err((
                ErrorCode::BadKeys,
                "keys must hold the key wrapped for the recipient and for yourself".into(),
                id,
            ));
        }
        self.fresh(&d.id, d.ts)?;
        let (from, via) = self.sender(conn);
        let mut relay = DirectIn {
            id: d.id.clone(),
            ts: d.ts,
            from,
            to: d.to.clone(),
            iv: d.iv,
            ciphertext: d.ciphertext,
            key: d.keys[&d.to].clone(),
            signature: d.signature,
            via,
        };
        let frame = frame_of(&ServerMsg::Direct(relay.clone()));
        for t in targets {
            self.push(t, &frame);
        }
        if d.to != own {
            // The sender's other endpoint (the admin's) shows what this one sent.
            let mirrors = self.endpoints(&own, conn);
            if !mirrors.is_empty() {
                relay.key = d.keys[&own].clone();
                let frame = frame_of(&ServerMsg::Direct(relay));
                for m in mirrors {
                    self.push(m, &frame);
                }
            }
        }
        self.push(conn, &frame_of(&ServerMsg::Ack { id: d.id }));
        Ok(())
    }

    fn all(&mut self, conn: ConnId, a: AllOut) -> Result<(), (ErrorCode, String, Option<String>)> {
        let id = Some(a.id.clone());
        if !self.is_admin(conn) && (self.settings.disable_all || self.settings.only_admin) {
            return Err((
                ErrorCode::Forbidden,
                "@all is disabled on this server".into(),
                id,
            ));
        }
        check_sealed(&a.id, &a.iv, &a.ciphertext, &a.signature)
            .map_err(|m| (ErrorCode::BadField, m, id.clone()))?;
        if !protocol::is_hex(&a.skid, 32) {
            return Err((
                ErrorCode::BadField,
                "skid must be 32 hex characters".into(),
                id,
            ));
        }
        self.fresh(&a.id, a.ts)?;
        let (from, via) = self.sender(conn);
        let ack = frame_of(&ServerMsg::Ack { id: a.id.clone() });
        let frame = frame_of(&ServerMsg::All(AllIn {
            id: a.id,
            ts: a.ts,
            from,
            skid: a.skid,
            n: a.n,
            iv: a.iv,
            ciphertext: a.ciphertext,
            signature: a.signature,
            via,
        }));
        let targets: Vec<ConnId> = self
            .conns
            .keys()
            .copied()
            .filter(|&id| id != conn)
            .collect();
        for t in targets {
            self.push(t, &frame);
        }
        self.push(conn, &ack);
        Ok(())
    }

    fn sender_key(
        &mut self,
        conn: ConnId,
        k: SenderKeyOut,
    ) -> Result<(), (ErrorCode, String, Option<String>)> {
        let bad = |m: &str| Err((ErrorCode::BadField, m.to_string(), None));
        if !protocol::is_hex(&k.skid, 32) {
            return bad("skid must be 32 hex characters");
        }
        if !protocol::is_hex(&k.commitment, 64) {
            return bad("commitment must be 64 hex characters");
        }
        if !protocol::is_base64(&k.signature) {
            return bad("signature must be base64");
        }
        if k.keys.is_empty() || k.keys.len() > protocol::MAX_SENDER_KEY_ENTRIES {
            return bad("keys must hold 1 to 256 entries");
        }
        if k.keys.values().any(|w| !protocol::is_base64(w)) {
            return bad("wrapped keys must be base64");
        }
        let (from, _) = self.sender(conn);
        for (key_id, wrapped) in k.keys {
            let targets: Vec<ConnId> = self
                .endpoints(&key_id, conn)
                .into_iter()
                .filter(|&t| self.can_see(conn, t))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let frame = frame_of(&ServerMsg::SenderKey(SenderKeyIn {
                from: from.clone(),
                skid: k.skid.clone(),
                n: k.n,
                commitment: k.commitment.clone(),
                signature: k.signature.clone(),
                wrapped,
            }));
            for t in targets {
                self.push(t, &frame);
            }
        }
        Ok(())
    }

    fn key_request(
        &mut self,
        conn: ConnId,
        to: String,
        skid: String,
        n: u32,
    ) -> Result<(), (ErrorCode, String, Option<String>)> {
        if !protocol::is_hex(&skid, 32) {
            return Err((
                ErrorCode::BadField,
                "skid must be 32 hex characters".into(),
                None,
            ));
        }
        let targets: Vec<ConnId> = self
            .endpoints(&to, conn)
            .into_iter()
            .filter(|&t| self.can_see(conn, t))
            .collect();
        if targets.is_empty() {
            return Err((
                ErrorCode::UnknownRecipient,
                "no such member is connected".into(),
                None,
            ));
        }
        let (from, _) = self.sender(conn);
        let frame = frame_of(&ServerMsg::KeyRequest { from, skid, n });
        for t in targets {
            self.push(t, &frame);
        }
        Ok(())
    }
}

fn check_sealed(id: &str, iv: &str, ciphertext: &str, signature: &str) -> Result<(), String> {
    if !protocol::is_hex(id, 32) {
        return Err("id must be 32 lowercase hex characters".into());
    }
    if iv.len() != 16 || !protocol::is_base64(iv) {
        return Err("iv must be 12 bytes in base64".into());
    }
    if ciphertext.len() < 24 || !protocol::is_base64(ciphertext) {
        return Err("ciphertext must be base64 holding at least the 16-byte tag".into());
    }
    if signature.is_empty() || !protocol::is_base64(signature) {
        return Err("signature must be base64".into());
    }
    Ok(())
}

fn code_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadName => "bad name",
        ErrorCode::NameTaken => "name taken",
        ErrorCode::NotAllowed => "not on the allow list",
        _ => "join refused",
    }
}

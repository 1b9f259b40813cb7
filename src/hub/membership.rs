//! Membership: joining (new, resumed, taking over), going away and coming back, leaving (grace
//! expired, leave, kick, ban, removal from the allow list), and who sees whom.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use serde_json::value::RawValue;

use super::bans::describe_until;
use super::directory::{Kind, Member};
use super::mailbox::SeatId;
use super::{
    notice, payload_of, ConnId, DeliveryState, Hub, Item, Moderation, Outbox, Payload, Refusal,
};
use crate::allowlist::AllowList;
use crate::crypto::PublicIdentity;
use crate::protocol::{
    self, close, ErrorCode, JoinedOut, LeftReason, Limits, Member as WireMember, NoticeCode,
    Options, Presence, ServerMsg, WelcomeOut,
};
use crate::ws;

impl Hub {
    /// Whether the member `viewer` sees (and may reach) the member `target`.
    pub(super) fn can_see(&self, viewer: &str, target: &str) -> bool {
        let admin = |k: &str| self.dir.admin_key_id.as_deref() == Some(k);
        !self.settings.only_admin || viewer == target || admin(viewer) || admin(target)
    }

    /// Sends `payload` to every seat of every member that sees `about`, except `about`'s own.
    fn tell_others(&mut self, about: &str, payload: &Payload, kind: &'static str) {
        self.tell_seats(about, None, payload, kind);
    }

    /// Sends `payload` to every seat that sees `about`: all but `except` when it is given (the
    /// admin's other endpoint hears of its web seat), else all but `about`'s own.
    fn tell_seats(
        &mut self,
        about: &str,
        except: Option<SeatId>,
        payload: &Payload,
        kind: &'static str,
    ) {
        let seats: Vec<SeatId> = self
            .dir
            .seats
            .iter()
            .filter(|&(&id, s)| match except {
                Some(e) => id != e,
                None => s.key_id != about,
            })
            .filter(|(_, s)| self.can_see(&s.key_id, about))
            // An away endpoint learns who is online from its next welcome: presence frames
            // would only push messages out of its mailbox.
            .filter(|(_, s)| kind != "presence" || s.conn.is_some())
            .map(|(&id, _)| id)
            .collect();
        for seat in seats {
            self.deliver(seat, payload, kind, None);
        }
    }

    /// Sends `payload` to the admin's prompt only.
    fn tell_console(&mut self, payload: &Payload, kind: &'static str) {
        if let Some(seat) = self.dir.admin_seat(Kind::Console) {
            self.deliver(seat, payload, kind, None);
        }
    }

    fn check_listed(&self, key_id: &str) -> Result<Option<String>, Refusal> {
        match &self.allow {
            None => Ok(None),
            Some(list) => list
                .name_of(key_id)
                .map(|n| Some(n.to_string()))
                .ok_or(Refusal::new(
                    ErrorCode::NotAllowed,
                    "this key is not on the allow list",
                )),
        }
    }

    fn new_member_name(&self, key_id: &str, asked: String) -> Result<String, Refusal> {
        let name = self.check_listed(key_id)?.unwrap_or(asked);
        if let Some(why) = protocol::name_refusal(&name, &self.settings.admin_name) {
            return Err(Refusal::new(ErrorCode::BadName, why));
        }
        if self.dir.user_named(&name).is_some() {
            return Err(Refusal::new(
                ErrorCode::NameTaken,
                format!("the name {name} is taken"),
            ));
        }
        Ok(name)
    }

    fn add_member(&mut self, key: &PublicIdentity, name: String, admin: bool) {
        let wire = WireMember {
            name: name.clone(),
            key_id: key.key_id().to_string(),
            admin,
        };
        self.left_keys.forget(key.key_id());
        self.dir.add_member(Member {
            key_id: key.key_id().to_string(),
            name,
            json: protocol::encoded_member(&wire),
            public_key: base64::engine::general_purpose::STANDARD
                .encode(key.spki_der())
                .into(),
            admin,
            seats: Vec::new(),
        });
    }

    fn new_seat(&mut self, key_id: &str, kind: Kind) -> SeatId {
        let seat = self.dir.add_seat(key_id, kind);
        self.boxes.open(seat);
        seat
    }

    pub(super) fn join(
        &mut self,
        conn: ConnId,
        name: String,
        key: PublicIdentity,
        outbox: Outbox,
        console: bool,
        resume: Option<protocol::Resume>,
    ) -> Result<(), Refusal> {
        let key_id = key.key_id().to_string();
        if console {
            self.dir.admin_key_id = Some(key_id.clone());
            self.add_member(&key, self.settings.admin_name.clone(), true);
            let seat = self.new_seat(&key_id, Kind::Console);
            self.dir.attach(seat, conn, outbox.clone());
            let _ = outbox.push(self.welcome_frame(seat, false));
            self.announce_joined(&key_id, seat);
            return Ok(());
        }
        let admin_key = self.dir.admin_key_id.as_deref() == Some(key_id.as_str());
        self.check_listed(&key_id)?;
        if !admin_key {
            let now = protocol::now_ms();
            if let Some(ban) = self.bans.active(&key_id, now) {
                let message = format!(
                    "you were removed by the admin; you may return {}",
                    describe_until(ban.until, now)
                );
                return Err(Refusal::new(ErrorCode::Banned, message).until(ban.until));
            }
        }
        let (seat, resumed) = if admin_key {
            match self.dir.admin_seat(Kind::AdminWeb) {
                Some(seat) => (seat, true),
                None => (self.new_seat(&key_id, Kind::AdminWeb), false),
            }
        } else if let Some(member) = self.dir.members.get(&key_id) {
            (member.seats[0], true)
        } else {
            let name = self.new_member_name(&key_id, name)?;
            self.add_member(&key, name, false);
            (self.new_seat(&key_id, Kind::User), false)
        };
        let was_online = if admin_key {
            self.dir.seats.get(&seat).is_some_and(|s| s.conn.is_some())
        } else {
            self.dir.online(&key_id)
        };
        if let Some((_, old)) = self.dir.attach(seat, conn, outbox.clone()) {
            let _ = old.push(notice(
                NoticeCode::Replaced,
                "this chat was opened by a newer connection with the same key",
                None,
            ));
            old.close(close::REPLACED, "replaced by a newer connection");
        }
        self.boxes.set_away(seat, false);
        let since = resume.map_or(0, |r| r.since).min(self.boxes.last_seq(seat));
        let since_chunks = resume
            .map_or(0, |r| r.since_chunks)
            .min(self.boxes.last_cseq(seat));
        // Chunks up to `since_chunks` were received: acknowledged as by `ack {cseq}`.
        let _ = self.ack_chunks(seat, since_chunks);
        for r in self.boxes.ack(seat, since) {
            self.delivery(r, DeliveryState::Delivered);
        }
        let _ = outbox.push(self.welcome_frame(seat, resumed));
        for (seq, payload) in self.boxes.after(seat, since) {
            if outbox.push(Item::Seq(seq, payload)).is_err() {
                self.slow.push(seat);
                break;
            }
        }
        if let Some(gap) = self.boxes.take_gap(seat, since) {
            let payload = payload_of(&ServerMsg::Gap {
                dropped: gap.dropped,
                kinds: gap.kinds,
                first_seq: gap.first,
                last_seq: gap.last,
            });
            self.deliver(seat, &payload, "gap", None);
        }
        // Chunks after the sequenced frames (the outbox's second lane).
        for (cseq, payload) in self.boxes.chunks_after(seat, since_chunks) {
            if outbox.push(Item::Chunk(cseq, payload)).is_err() {
                self.slow.push(seat);
                break;
            }
        }
        if !resumed || resume.is_none() {
            // A new member, or an endpoint that kept nothing: others give it their sender keys.
            self.announce_joined(&key_id, seat);
        } else if !was_online {
            self.announce_presence(seat, Presence::Online);
        }
        Ok(())
    }

    /// Tells everyone who sees the member that `seat` joined (the admin's prompt included, when
    /// `seat` is the admin's web seat).
    fn announce_joined(&mut self, key_id: &str, seat: SeatId) {
        let Some(member) = self.dir.members.get(key_id) else {
            return;
        };
        let payload: Payload = serde_json::to_vec(&JoinedOut {
            member: &member.json,
        })
        .expect("joined encodes")
        .into();
        self.tell_seats(key_id, Some(seat), &payload, "joined");
    }

    /// Tells who needs to know that `seat` came back or went away: everyone who sees a user;
    /// for the admin's web seat, only the prompt (the admin stays online through it).
    fn announce_presence(&mut self, seat: SeatId, state: Presence) {
        let Some(s) = self.dir.seats.get(&seat) else {
            return;
        };
        let (kind, key_id) = (s.kind, s.key_id.clone());
        let Some(name) = self.dir.members.get(&key_id).map(|m| m.name.clone()) else {
            return;
        };
        let payload = payload_of(&ServerMsg::Presence {
            key_id: key_id.clone(),
            name,
            state,
        });
        match kind {
            Kind::User => self.tell_others(&key_id, &payload, "presence"),
            Kind::AdminWeb => self.tell_console(&payload, "presence"),
            Kind::Console => {}
        }
    }

    fn welcome_frame(&self, seat: SeatId, resumed: bool) -> ws::Frame {
        let s = &self.dir.seats[&seat];
        let me = &self.dir.members[&s.key_id];
        let admin = s.kind != Kind::User;
        let mut members: Vec<&RawValue> = Vec::new();
        let mut away: Vec<&str> = Vec::new();
        for m in self.dir.members.values() {
            if !self.can_see(&me.key_id, &m.key_id) {
                continue;
            }
            members.push(&m.json);
            if !self.dir.online(&m.key_id) {
                away.push(&m.key_id);
            }
        }
        let options = Options {
            admin_name: self.settings.admin_name.clone(),
            disable_all: !admin && (self.settings.disable_all || self.settings.only_admin),
            only_admin: self.settings.only_admin,
            remember: self.settings.remember,
            groups: self.settings.groups.policy,
        };
        let mut limits = Limits::new(
            self.settings.rate_per_sec,
            self.settings.burst,
            self.settings.mailbox_bytes,
            self.settings.away_grace.as_secs(),
        )
        .with_max_file(self.settings.max_file);
        limits.files.file_idle_secs = self.settings.file_idle.as_secs();
        limits.groups = self.settings.groups.limits;
        let welcome = WelcomeOut {
            you: &me.json,
            members,
            away,
            resumed,
            seq: self.boxes.last_seq(seat),
            cseq: self.boxes.last_cseq(seat),
            options: &options,
            limits: &limits,
            time: protocol::now_ms(),
            groups: self.rosters_of(&me.key_id),
        };
        ws::text_frame(&serde_json::to_vec(&welcome).expect("welcome encodes"))
    }

    /// `seat`'s connection ended (or was closed): the seat is kept, away, for the grace period.
    pub(super) fn go_away(&mut self, seat: SeatId) {
        if self.dir.detach(seat).is_none() {
            return;
        }
        self.boxes.set_away(seat, true);
        self.files_seat_away(seat);
        let Some(s) = self.dir.seats.get(&seat) else {
            return;
        };
        self.expiries.push_back((
            Instant::now() + self.settings.away_grace,
            seat,
            s.away_serial,
        ));
        let key_id = s.key_id.clone();
        if s.kind == Kind::AdminWeb || !self.dir.online(&key_id) {
            self.announce_presence(seat, Presence::Away);
        }
        self.cap_away();
    }

    /// Keeps at most `max_away` endpoints away: past it, the one away longest leaves as if its
    /// grace period had ended, so that members who come and go cannot pin unbounded memory.
    fn cap_away(&mut self) {
        // The queue holds every away seat (and some stale entries): nothing to count below it.
        if self.expiries.len() <= self.settings.max_away {
            return;
        }
        let mut away = self.dir.seats.values().filter(|s| s.conn.is_none()).count();
        while away > self.settings.max_away {
            let Some((_, seat, serial)) = self.expiries.pop_front() else {
                return;
            };
            let Some(s) = self.dir.seats.get(&seat) else {
                continue;
            };
            if s.conn.is_some() || s.away_serial != serial {
                continue;
            }
            let key_id = s.key_id.clone();
            match s.kind {
                Kind::User => self.end_membership(&key_id, LeftReason::Expired, None),
                Kind::AdminWeb => self.end_web_seat(seat, LeftReason::Expired, None),
                Kind::Console => {}
            }
            away -= 1;
        }
    }

    /// Ends the grace period of the seats away since before `now` minus the grace.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(at, seat, serial)) = self.expiries.front() {
            if at > now {
                break;
            }
            self.expiries.pop_front();
            let Some(s) = self.dir.seats.get(&seat) else {
                continue;
            };
            if s.conn.is_some() || s.away_serial != serial {
                continue;
            }
            let key_id = s.key_id.clone();
            match s.kind {
                Kind::User => self.end_membership(&key_id, LeftReason::Expired, None),
                Kind::AdminWeb => self.end_web_seat(seat, LeftReason::Expired, None),
                Kind::Console => {}
            }
        }
    }

    /// An explicit `leave` from `seat`.
    pub(super) fn leave(&mut self, seat: SeatId) {
        let Some(s) = self.dir.seats.get(&seat) else {
            return;
        };
        let key_id = s.key_id.clone();
        let bye = Some((close::NORMAL, "you left"));
        match s.kind {
            Kind::User => self.end_membership(&key_id, LeftReason::Left, bye),
            Kind::AdminWeb => self.end_web_seat(seat, LeftReason::Left, bye),
            Kind::Console => {}
        }
    }

    /// Ends a user's membership: its connection (if any) is closed with `close`, its mailbox
    /// dropped, and everyone is told `left` (and rotates sender keys).
    fn end_membership(&mut self, key_id: &str, reason: LeftReason, close: Option<(u16, &str)>) {
        let Some((member, seats)) = self.dir.remove_member(key_id) else {
            return;
        };
        // What it sent before it left may still be on its way to someone who must verify it.
        self.left_keys
            .keep(key_id, member.public_key.clone(), Instant::now());
        for (id, seat) in seats {
            self.files_seat_removed(id, key_id);
            self.boxes.close(id);
            if let (Some((_, outbox)), Some((code, why))) = (seat.conn, close) {
                outbox.close(code, why);
            }
        }
        let payload = payload_of(&ServerMsg::Left {
            key_id: member.key_id.clone(),
            name: member.name,
            reason,
        });
        self.tell_others(key_id, &payload, "left");
        self.groups_member_gone(key_id);
    }

    /// Ends the admin's web seat; only the prompt is told.
    fn end_web_seat(&mut self, seat: SeatId, reason: LeftReason, close: Option<(u16, &str)>) {
        let Some(s) = self.dir.remove_seat(seat) else {
            return;
        };
        self.files_seat_removed(seat, &s.key_id);
        self.boxes.close(seat);
        if let (Some((_, outbox)), Some((code, why))) = (s.conn, close) {
            outbox.close(code, why);
        }
        let payload = payload_of(&ServerMsg::Left {
            key_id: s.key_id,
            name: self.settings.admin_name.clone(),
            reason,
        });
        self.tell_console(&payload, "left");
    }

    pub(super) fn moderate(&mut self, action: Moderation) -> Result<String, String> {
        let now = protocol::now_ms();
        match action {
            Moderation::Kick { name, minutes } => {
                let until = now + (minutes as i64).saturating_mul(60_000);
                self.remove_by_name(&name, Some(until), LeftReason::Kicked)
            }
            Moderation::Ban(name) => self.remove_by_name(&name, None, LeftReason::Banned),
            Moderation::Unban(name) => {
                if self.bans.lift(&name, now) {
                    Ok(format!("{name} may join again"))
                } else {
                    Err(format!("{name} is neither kicked nor banned"))
                }
            }
            Moderation::Groups => Ok(self.list_groups()),
            Moderation::GroupDelete(prefix) => self.admin_delete_group(&prefix),
            Moderation::List => {
                let list = self.bans.list(now);
                if list.is_empty() {
                    return Ok("nobody is kicked or banned".into());
                }
                let mut out = format!("{} kicked or banned:", list.len());
                for (name, key_id, until) in list {
                    out += &format!(
                        "\n  {name:<15} {}  may return {}",
                        &key_id[..12],
                        describe_until(until, now)
                    );
                }
                Ok(out)
            }
        }
    }

    fn remove_by_name(
        &mut self,
        name: &str,
        until: Option<i64>,
        reason: LeftReason,
    ) -> Result<String, String> {
        let left_reason = reason;
        let code = match reason {
            LeftReason::Kicked => NoticeCode::Kicked,
            _ => NoticeCode::Banned,
        };
        let word = reason.as_str();
        let now = protocol::now_ms();
        if name == self.settings.admin_name {
            let seat = self
                .dir
                .admin_seat(Kind::AdminWeb)
                .ok_or_else(|| format!("the admin {name} has no web seat to close"))?;
            self.end_web_seat(
                seat,
                left_reason,
                Some((close::KICKED, "closed by the admin")),
            );
            return Ok("the admin's web seat was closed".to_string());
        }
        let key_id = self
            .dir
            .user_named(name)
            .map(str::to_string)
            .ok_or_else(|| format!("no member named {name}"))?;
        self.bans.add(&key_id, name, until);
        let when = describe_until(until, now);
        let text = format!("you were {word} by the admin; you may return {when}");
        let seat_conn = self
            .dir
            .members
            .get(&key_id)
            .and_then(|m| self.dir.seats.get(&m.seats[0]))
            .and_then(|s| s.conn.as_ref().map(|(_, o)| o.clone()));
        if let Some(outbox) = seat_conn {
            let _ = outbox.push(notice(code, text, until));
        }
        let why = if until.is_some() {
            "kicked by the admin"
        } else {
            "banned by the admin"
        };
        self.end_membership(&key_id, left_reason, Some((close::KICKED, why)));
        Ok(format!("{name} was {word}; may return {when}"))
    }

    pub(super) fn set_allow_list(&mut self, list: Option<Arc<AllowList>>) {
        self.allow = list;
        let Some(list) = self.allow.clone() else {
            return;
        };
        let admin = self.dir.admin_key_id.clone();
        let removed: Vec<String> = self
            .dir
            .members
            .keys()
            .filter(|k| Some(*k) != admin.as_ref() && list.name_of(k).is_none())
            .cloned()
            .collect();
        let bye = Some((close::REMOVED, "removed from the allow list"));
        for key_id in removed {
            self.end_membership(&key_id, LeftReason::Removed, bye);
        }
        if let Some(admin) = admin.filter(|a| list.name_of(a).is_none()) {
            let _ = admin;
            if let Some(seat) = self.dir.admin_seat(Kind::AdminWeb) {
                self.end_web_seat(seat, LeftReason::Removed, bye);
            }
        }
    }
}

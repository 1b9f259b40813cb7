//! Who is a member: members by key ID with their names, and each member's endpoints ("seats":
//! a user's one, the admin's prompt and web seat), connected or not. Data only; the hub decides.

use std::collections::HashMap;

use super::mailbox::SeatId;
use super::Outbox;

/// Identifies one connection (or the server's own admin endpoint).
pub type ConnId = u64;

/// What kind of endpoint a seat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A user.
    User,
    /// The admin's web seat.
    AdminWeb,
    /// The server's own admin endpoint (prompt or transcript).
    Console,
}

/// One endpoint of a member.
pub struct Seat {
    /// Its kind.
    pub kind: Kind,
    /// Its member's key ID.
    pub key_id: String,
    /// The connection holding it, if one does.
    pub conn: Option<(ConnId, Outbox)>,
    /// Counts the times the seat went away, so that a stale expiry is recognised.
    pub away_serial: u64,
}

/// A member: an identity, not a connection.
pub struct Member {
    /// Key ID.
    pub key_id: String,
    /// Name.
    pub name: String,
    /// The member as listed to clients, encoded once.
    pub json: Box<serde_json::value::RawValue>,
    /// Its public key (SPKI DER, base64), answered to `get_keys`.
    pub public_key: std::sync::Arc<str>,
    /// Whether this is the admin.
    pub admin: bool,
    /// Its seats.
    pub seats: Vec<SeatId>,
}

/// Members and seats.
#[derive(Default)]
pub struct Directory {
    /// Members by key ID.
    pub members: HashMap<String, Member>,
    /// Seats by id.
    pub seats: HashMap<SeatId, Seat>,
    by_conn: HashMap<ConnId, SeatId>,
    names: HashMap<String, String>,
    /// The admin's key ID, once the prompt has joined.
    pub admin_key_id: Option<String>,
    next_seat: SeatId,
}

impl Directory {
    /// The id of the newest seat: seats made later have higher ids.
    pub fn newest_seat(&self) -> SeatId {
        self.next_seat
    }

    /// The seat a connection holds.
    pub fn seat_of(&self, conn: ConnId) -> Option<SeatId> {
        self.by_conn.get(&conn).copied()
    }

    /// The key ID of the user called `name`.
    pub fn user_named(&self, name: &str) -> Option<&str> {
        self.names.get(name).map(String::as_str)
    }

    /// Adds a member (its name taken, for users) with no seats.
    pub fn add_member(&mut self, member: Member) {
        if !member.admin {
            self.names
                .insert(member.name.clone(), member.key_id.clone());
        }
        self.members.insert(member.key_id.clone(), member);
    }

    /// Adds a seat of `kind` to the member with `key_id`.
    pub fn add_seat(&mut self, key_id: &str, kind: Kind) -> SeatId {
        self.next_seat += 1;
        let id = self.next_seat;
        self.seats.insert(
            id,
            Seat {
                kind,
                key_id: key_id.to_string(),
                conn: None,
                away_serial: 0,
            },
        );
        if let Some(m) = self.members.get_mut(key_id) {
            m.seats.push(id);
        }
        id
    }

    /// Removes a seat; returns it (with its connection, if any).
    pub fn remove_seat(&mut self, seat: SeatId) -> Option<Seat> {
        let s = self.seats.remove(&seat)?;
        if let Some((conn, _)) = &s.conn {
            self.by_conn.remove(conn);
        }
        if let Some(m) = self.members.get_mut(&s.key_id) {
            m.seats.retain(|&id| id != seat);
        }
        Some(s)
    }

    /// Removes a member and its seats; returns them.
    pub fn remove_member(&mut self, key_id: &str) -> Option<(Member, Vec<(SeatId, Seat)>)> {
        let member = self.members.remove(key_id)?;
        if !member.admin {
            self.names.remove(&member.name);
        }
        let seats = member
            .seats
            .iter()
            .filter_map(|&id| {
                let s = self.seats.remove(&id)?;
                if let Some((conn, _)) = &s.conn {
                    self.by_conn.remove(conn);
                }
                Some((id, s))
            })
            .collect();
        Some((member, seats))
    }

    /// Gives `seat` to `conn`; returns the connection that held it before, if any.
    pub fn attach(
        &mut self,
        seat: SeatId,
        conn: ConnId,
        outbox: Outbox,
    ) -> Option<(ConnId, Outbox)> {
        let s = self.seats.get_mut(&seat)?;
        let old = s.conn.replace((conn, outbox));
        if let Some((old_conn, _)) = &old {
            self.by_conn.remove(old_conn);
        }
        self.by_conn.insert(conn, seat);
        old
    }

    /// Takes `seat` from whatever connection holds it; returns that connection.
    pub fn detach(&mut self, seat: SeatId) -> Option<(ConnId, Outbox)> {
        let s = self.seats.get_mut(&seat)?;
        let old = s.conn.take()?;
        self.by_conn.remove(&old.0);
        s.away_serial += 1;
        Some(old)
    }

    /// Whether any seat of the member with `key_id` is connected.
    pub fn online(&self, key_id: &str) -> bool {
        self.members.get(key_id).is_some_and(|m| {
            m.seats
                .iter()
                .any(|id| self.seats.get(id).is_some_and(|s| s.conn.is_some()))
        })
    }

    /// The seats of the member with `key_id`, except `except`.
    pub fn seats_of(&self, key_id: &str, except: SeatId) -> Vec<SeatId> {
        self.members.get(key_id).map_or_else(Vec::new, |m| {
            m.seats.iter().copied().filter(|&s| s != except).collect()
        })
    }

    /// The admin's seat of `kind`.
    pub fn admin_seat(&self, kind: Kind) -> Option<SeatId> {
        let admin = self.members.get(self.admin_key_id.as_ref()?)?;
        admin
            .seats
            .iter()
            .copied()
            .find(|id| self.seats.get(id).is_some_and(|s| s.kind == kind))
    }
}

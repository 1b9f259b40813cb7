//! Private groups on the server (`docs/PROTOCOL.md`, *Groups*): the last roster each group's
//! owner signed, who is routed in it (the roster minus those who left since), the checks of a
//! new roster, and routing of group messages, leaves and deletions. The server cannot add a
//! member: members verify every roster themselves; what it keeps here is routing only.

use std::collections::{BTreeSet, HashMap};

use base64::Engine;

use super::mailbox::SeatId;
use super::{frame_of, payload_of, Hub, Refusal};
use crate::crypto::PublicIdentity;
use crate::protocol::{
    self, DeletedBy, ErrorCode, GroupIn, GroupLeftReason, GroupOut, GroupPolicy, Roster, ServerMsg,
};

/// One group as the server knows it.
pub(super) struct Group {
    /// The last roster its owner signed and the server accepted.
    pub(super) roster: Roster,
    /// Key IDs routed in it: the roster's members minus those who left since.
    pub(super) routed: BTreeSet<String>,
}

/// The groups, by id, and the groups of each member.
#[derive(Default)]
pub(super) struct Groups {
    pub(super) by_id: HashMap<String, Group>,
    of_member: HashMap<String, BTreeSet<String>>,
}

impl Groups {
    /// How many groups `key_id` is routed in.
    pub(super) fn count(&self, key_id: &str) -> usize {
        self.of_member.get(key_id).map_or(0, BTreeSet::len)
    }

    /// The ids of the groups `key_id` is routed in.
    pub(super) fn of(&self, key_id: &str) -> Vec<String> {
        self.of_member
            .get(key_id)
            .map_or_else(Vec::new, |s| s.iter().cloned().collect())
    }

    pub(super) fn unroute(&mut self, group: &str, key_id: &str) {
        if let Some(g) = self.by_id.get_mut(group) {
            g.routed.remove(key_id);
        }
        if let Some(set) = self.of_member.get_mut(key_id) {
            set.remove(group);
            if set.is_empty() {
                self.of_member.remove(key_id);
            }
        }
    }

    /// Replaces (or creates) a group with `roster`, everyone on it routed.
    fn set(&mut self, roster: Roster) {
        let id = roster.group.clone();
        if let Some(old) = self.by_id.remove(&id) {
            for k in old.routed {
                self.unroute_index(&id, &k);
            }
        }
        for k in &roster.members {
            self.of_member
                .entry(k.clone())
                .or_default()
                .insert(id.clone());
        }
        let routed = roster.members.iter().cloned().collect();
        self.by_id.insert(id, Group { roster, routed });
    }

    fn unroute_index(&mut self, group: &str, key_id: &str) {
        if let Some(set) = self.of_member.get_mut(key_id) {
            set.remove(group);
            if set.is_empty() {
                self.of_member.remove(key_id);
            }
        }
    }

    /// Removes a group; returns who was routed in it.
    pub(super) fn remove(&mut self, group: &str) -> Vec<String> {
        let Some(g) = self.by_id.remove(group) else {
            return Vec::new();
        };
        for k in &g.routed {
            self.unroute_index(group, k);
        }
        g.routed.into_iter().collect()
    }
}

fn refuse(code: ErrorCode, message: impl Into<String>, id: &str) -> Refusal {
    Refusal::new(code, message).about(Some(id.to_string()))
}

impl Hub {
    fn groups_off(&self, id: &str) -> Result<(), Refusal> {
        if self.settings.groups.policy == GroupPolicy::Off {
            return Err(refuse(
                ErrorCode::Forbidden,
                "groups are disabled on this server",
                id,
            ));
        }
        Ok(())
    }

    pub(super) fn name_of(&self, key_id: &str) -> String {
        self.dir.members.get(key_id).map_or_else(
            || key_id[..12.min(key_id.len())].to_string(),
            |m| m.name.clone(),
        )
    }

    /// A `group_roster`: creates or changes a group (checks in the order PROTOCOL.md lists).
    pub(super) fn group_roster(&mut self, seat: SeatId, roster: Roster) -> Result<(), Refusal> {
        let id = roster.group.clone();
        roster
            .check_fields()
            .map_err(|m| refuse(ErrorCode::BadField, m, &id))?;
        self.groups_off(&id)?;
        let (_, _, own) = self.sender(seat);
        let previous = self.groups.by_id.get(&id).map(|g| &g.roster);
        match previous {
            None => {
                if self.settings.groups.policy == GroupPolicy::Admin && !self.is_admin_seat(seat) {
                    return Err(refuse(
                        ErrorCode::Forbidden,
                        "only the admin may create groups on this server",
                        &id,
                    ));
                }
                if roster.epoch != 1 {
                    return Err(refuse(
                        ErrorCode::StaleEpoch,
                        "a new group starts at epoch 1",
                        &id,
                    ));
                }
                if roster.owner != own {
                    return Err(refuse(
                        ErrorCode::Forbidden,
                        "a new group's owner must be its creator",
                        &id,
                    ));
                }
            }
            Some(prev) => {
                let routed = self.groups.by_id[&id].routed.contains(&own);
                if !routed {
                    return Err(refuse(
                        ErrorCode::NotInGroup,
                        "you are not in this group",
                        &id,
                    ));
                }
                if prev.owner != own {
                    return Err(refuse(
                        ErrorCode::Forbidden,
                        "only the group's owner may change its roster",
                        &id,
                    ));
                }
                if Some(roster.epoch) != prev.epoch.checked_add(1) {
                    return Err(refuse(
                        ErrorCode::StaleEpoch,
                        format!("the next epoch is {}", prev.epoch as u64 + 1),
                        &id,
                    ));
                }
                if roster.owner != prev.owner && roster.members != prev.members {
                    return Err(refuse(
                        ErrorCode::BadField,
                        "a handover may not change the members in the same epoch",
                        &id,
                    ));
                }
            }
        }
        if let Some(m) = roster
            .members
            .iter()
            .find(|m| !self.dir.members.contains_key(*m) || !self.can_see(&own, m))
        {
            return Err(refuse(
                ErrorCode::UnknownRecipient,
                format!("{} is not a member of the chat", &m[..12]),
                &id,
            ));
        }
        let max_size = self.settings.groups.limits.max_group_size;
        if roster.members.len() > max_size {
            return Err(refuse(
                ErrorCode::GroupTooLarge,
                format!("groups have at most {max_size} members"),
                &id,
            ));
        }
        let max_groups = self.settings.groups.limits.max_groups;
        let already = |k: &str| {
            self.groups
                .by_id
                .get(&id)
                .is_some_and(|g| g.routed.contains(k))
        };
        if let Some(m) = roster
            .members
            .iter()
            .find(|m| !already(m) && self.groups.count(m) >= max_groups)
        {
            let who = if *m == own {
                "you are".to_string()
            } else {
                format!("{} is", self.name_of(m))
            };
            return Err(refuse(
                ErrorCode::TooManyGroups,
                format!("{who} already in {max_groups} groups (the most allowed)"),
                &id,
            ));
        }
        self.check_roster_signature(&own, &roster)
            .map_err(|m| refuse(ErrorCode::BadField, m, &id))?;
        let removed: Vec<String> = self
            .groups
            .by_id
            .get(&id)
            .map(|g| {
                g.routed
                    .iter()
                    .filter(|k| !roster.lists(k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let payload = payload_of(&ServerMsg::GroupRoster {
            roster: roster.clone(),
            by: own,
        });
        let told: Vec<String> = roster.members.iter().cloned().chain(removed).collect();
        self.groups.set(roster);
        self.answer(seat, &id);
        for k in told {
            for t in self.dir.seats_of(&k, seat) {
                self.deliver(t, &payload, "group_roster", None);
            }
        }
        Ok(())
    }

    fn check_roster_signature(&self, signer: &str, roster: &Roster) -> Result<(), String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let der = b64
            .decode(self.dir.members[signer].public_key.as_bytes())
            .map_err(|_| "the signer's key does not decode".to_string())?;
        let key = PublicIdentity::from_spki_der(&der).map_err(|e| e.to_string())?;
        let sig = b64
            .decode(roster.signature.as_bytes())
            .map_err(|_| "roster.signature is not base64".to_string())?;
        key.verify(&roster.bytes(), &sig)
            .map_err(|_| "the roster's signature does not verify".to_string())
    }

    fn answer(&self, seat: SeatId, id: &str) {
        let frame = frame_of(&ServerMsg::Ack {
            id: id.to_string(),
            skipped: None,
        });
        if let Some((_, outbox)) = self.dir.seats.get(&seat).and_then(|s| s.conn.as_ref()) {
            let _ = outbox.push(frame);
        }
    }

    /// Checks that `group` exists and that the member of `seat` is routed in it.
    pub(super) fn routed_in(&self, seat: SeatId, group: &str, id: &str) -> Result<(), Refusal> {
        self.groups_off(id)?;
        let g =
            self.groups.by_id.get(group).ok_or_else(|| {
                refuse(ErrorCode::UnknownGroup, "no such group on this server", id)
            })?;
        if !g.routed.contains(&self.dir.seats[&seat].key_id) {
            return Err(refuse(
                ErrorCode::NotInGroup,
                "you are not in this group",
                id,
            ));
        }
        Ok(())
    }

    /// Checks a frame's epoch against the group's current one.
    pub(super) fn current_epoch(&self, group: &str, epoch: u32, id: &str) -> Result<(), Refusal> {
        let now = self.groups.by_id[group].roster.epoch;
        if epoch != now {
            return Err(refuse(
                ErrorCode::StaleEpoch,
                format!("the group's epoch is {now}"),
                id,
            ));
        }
        Ok(())
    }

    /// Every seat routed in `group` but `seat`.
    pub(super) fn group_seats(&self, group: &str, seat: SeatId) -> Vec<SeatId> {
        self.groups.by_id.get(group).map_or_else(Vec::new, |g| {
            g.routed
                .iter()
                .flat_map(|k| self.dir.seats_of(k, seat))
                .collect()
        })
    }

    /// Whether `key_id` is routed in `group`.
    pub(super) fn is_routed(&self, group: &str, key_id: &str) -> bool {
        self.groups
            .by_id
            .get(group)
            .is_some_and(|g| g.routed.contains(key_id))
    }

    /// A group message.
    pub(super) fn group_msg(&mut self, seat: SeatId, m: GroupOut) -> Result<(), Refusal> {
        let id = m.id.clone();
        super::route::check_sealed_with(
            &m.id,
            &m.iv,
            &m.ciphertext,
            &m.signature,
            protocol::MAX_CIPHERTEXT_B64,
        )
        .map_err(|e| refuse(ErrorCode::BadField, e, &id))?;
        if !protocol::is_hex(&m.skid, 32) {
            return Err(refuse(
                ErrorCode::BadField,
                "skid must be 32 hex characters",
                &id,
            ));
        }
        self.routed_in(seat, &m.group, &id)?;
        self.current_epoch(&m.group, m.epoch, &id)?;
        self.fresh(&m.id, m.ts)?;
        let (from, via, _) = self.sender(seat);
        let targets = self.group_seats(&m.group, seat);
        let payload = payload_of(&ServerMsg::Group(GroupIn {
            group: m.group,
            epoch: m.epoch,
            id: m.id,
            ts: m.ts,
            from,
            skid: m.skid,
            n: m.n,
            iv: m.iv,
            ciphertext: m.ciphertext,
            signature: m.signature,
            via,
        }));
        self.answer(seat, &id);
        for t in targets {
            self.deliver(t, &payload, "group", None);
        }
        Ok(())
    }

    /// `group_leave`: the member is no longer routed; the others are told.
    pub(super) fn group_leave(&mut self, seat: SeatId, group: String) -> Result<(), Refusal> {
        if !protocol::is_hex(&group, 32) {
            return Err(Refusal::new(
                ErrorCode::BadField,
                "group must be 32 lowercase hex characters",
            ));
        }
        self.routed_in(seat, &group, &group)?;
        let own = self.dir.seats[&seat].key_id.clone();
        let g = &self.groups.by_id[&group];
        if g.roster.owner == own {
            if g.routed.len() > 1 {
                return Err(refuse(
                    ErrorCode::Forbidden,
                    "the owner may not leave: hand the group over first",
                    &group,
                ));
            }
            self.answer(seat, &group);
            self.delete_group(&group, DeletedBy::Owner, Some(seat));
            return Ok(());
        }
        self.answer(seat, &group);
        self.groups.unroute(&group, &own);
        self.tell_group_left(&group, &own, GroupLeftReason::Left);
        Ok(())
    }

    /// The rosters of the groups `key_id` is routed in (for its welcome).
    pub(super) fn rosters_of(&self, key_id: &str) -> Vec<&Roster> {
        self.groups
            .of(key_id)
            .iter()
            .filter_map(|g| self.groups.by_id.get(g).map(|g| &g.roster))
            .collect()
    }
}

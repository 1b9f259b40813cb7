//! Private groups at an endpoint (`docs/PROTOCOL.md`, *Groups*): which rosters are accepted
//! (a later epoch signed by the owner we accepted last; for a new group, one that lists us and
//! is signed by its stated owner) and the warning for any other; one sender key per (group,
//! epoch), wrapped only for the members of the roster we verified, never for someone the server
//! alone names; rotation on a new epoch and on `group_left`; and the owner's commands.

use std::collections::BTreeSet;

use super::*;
use crate::protocol::{
    GroupInfo, GroupLeftReason, GroupPlain, Roster, MAX_GROUP_NAME, MAX_GROUP_TOPIC,
};

/// What happened in a group, for the endpoint to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// A roster was verified and accepted.
    Roster {
        /// The group id.
        group: String,
        /// Its epoch.
        epoch: u32,
        /// Whether we learned of the group with it (created by `owner`).
        new: bool,
        /// The owner's name (or key ID prefix).
        owner: String,
        /// Names added since the roster we accepted before.
        added: Vec<String>,
        /// Names removed since.
        removed: Vec<String>,
    },
    /// We are no longer in a group (removed, left, or it was deleted).
    Gone {
        /// The group id.
        group: String,
        /// Why, for a person.
        why: String,
    },
    /// A roster was refused; nothing changed.
    Refused {
        /// The group id.
        group: String,
        /// Why.
        reason: String,
    },
    /// The server says a member left the group (or the chat); it is excluded from now on.
    MemberLeft {
        /// The group id.
        group: String,
        /// Who (name or key ID prefix).
        name: String,
        /// `left` or `removed_from_chat`.
        reason: GroupLeftReason,
    },
    /// The owner set the group's name and topic.
    Info {
        /// The group id.
        group: String,
        /// Name and topic.
        info: GroupInfo,
    },
}

/// One group as this endpoint accepted it.
pub struct GroupState {
    /// The last roster we verified.
    pub roster: Roster,
    /// Members the server says left since (excluded on its word).
    pub excluded: BTreeSet<String>,
    /// The latest name and topic from the owner.
    pub info: Option<GroupInfo>,
    pub(super) own: OwnSenderKey,
}

impl GroupState {
    /// Whom we give our sender key for this group: the verified roster minus the excluded.
    pub fn verified_members(&self) -> impl Iterator<Item = &String> {
        self.roster
            .members
            .iter()
            .filter(|k| !self.excluded.contains(*k))
    }
}

fn short(k: &str) -> &str {
    &k[..12.min(k.len())]
}

impl Session {
    fn label(&self, key_id: &str) -> String {
        self.name_of(key_id)
            .map_or_else(|| short(key_id).to_string(), str::to_string)
    }

    /// The groups we are in, by id.
    pub fn groups(&self) -> &HashMap<String, GroupState> {
        &self.groups
    }

    /// The id of the group named `name` (its latest `info`), or whose id starts with it.
    pub fn group_named(&self, name: &str) -> Option<String> {
        let by_name: Vec<&String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.info.as_ref().is_some_and(|i| i.name == name))
            .map(|(id, _)| id)
            .collect();
        if let [id] = by_name[..] {
            return Some(id.clone());
        }
        let by_id: Vec<&String> = self
            .groups
            .keys()
            .filter(|id| !name.is_empty() && id.starts_with(name))
            .collect();
        match by_id[..] {
            [id] => Some(id.clone()),
            _ => None,
        }
    }

    /// Checks a roster against what we accepted (PROTOCOL.md, *What a member accepts*).
    fn check_roster(&self, r: &Roster) -> Result<(), String> {
        r.check_fields()?;
        let signer = match self.groups.get(&r.group) {
            Some(g) => {
                if r.epoch <= g.roster.epoch {
                    return Err(format!(
                        "older epoch ({} after {})",
                        r.epoch, g.roster.epoch
                    ));
                }
                g.roster.owner.clone()
            }
            None => {
                if !r.lists(self.key_id()) {
                    return Err("it does not list you".into());
                }
                r.owner.clone()
            }
        };
        let key = self
            .keys
            .get(&signer)
            .ok_or("not signed by its owner (the owner's key is not known)")?;
        key.verify(&r.bytes(), &unb64(&r.signature)?)
            .map_err(|_| "not signed by its owner".to_string())
    }

    /// Accepts `r` if it passes [`Self::check_roster`]; the warning otherwise. A roster that
    /// hands us the group makes us send its name (the owner's to send).
    pub(super) fn receive_roster(&mut self, r: Roster) -> Output {
        if let Err(reason) = self.check_roster(&r) {
            let reason = format!("a roster for {} was refused: {reason}", short(&r.group));
            return single(Event::Group(GroupEvent::Refused {
                group: r.group,
                reason,
            }));
        }
        let me = self.key_id().to_string();
        let was_owner = self
            .groups
            .get(&r.group)
            .is_none_or(|g| g.roster.owner == me);
        let group = r.group.clone();
        let now_owner = r.owner == me;
        let mut out = self.accept_roster(r);
        if now_owner && !was_owner {
            out.send.extend(self.resend_info(&group));
        }
        out
    }

    /// The group's name sealed for the current epoch, when we own it and know it: the owner
    /// sends it after each change, so that newcomers learn it.
    fn resend_info(&mut self, group: &str) -> Vec<ClientMsg> {
        let info = self.groups.get(group).and_then(|g| g.info.clone());
        match info {
            Some(info) => self
                .seal_group_plain(group, &GroupPlain::Info { info })
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Takes a verified roster (or one we signed ourselves): new epoch, fresh sender key.
    pub(super) fn accept_roster(&mut self, r: Roster) -> Output {
        let me = self.key_id().to_string();
        let group = r.group.clone();
        let before: Vec<String> = self
            .groups
            .get(&group)
            .map(|g| g.roster.members.clone())
            .unwrap_or_default();
        let new = !self.groups.contains_key(&group);
        let added = r
            .members
            .iter()
            .filter(|k| !new && !before.contains(k))
            .map(|k| self.label(k))
            .collect();
        let removed = before
            .iter()
            .filter(|k| !r.lists(k))
            .map(|k| self.label(k))
            .collect();
        let mut out = Output::default();
        if !r.lists(&me) {
            self.groups.remove(&group);
            out.events.push(Event::Group(GroupEvent::Gone {
                group,
                why: "you were removed from the group".into(),
            }));
            return out;
        }
        // The members' keys, to wrap our group sender key for them when we write.
        out.send = self.request_keys(r.members.iter().cloned());
        out.events.push(Event::Group(GroupEvent::Roster {
            group: group.clone(),
            epoch: r.epoch,
            new,
            owner: self.label(&r.owner),
            added,
            removed,
        }));
        let info = self.groups.remove(&group).and_then(|g| g.info);
        self.groups.insert(
            group,
            GroupState {
                roster: r,
                excluded: BTreeSet::new(),
                info,
                own: OwnSenderKey::fresh(),
            },
        );
        out
    }

    /// The server says `key_id` left `group`: exclude it, rotate, and (as the owner) sign a new
    /// epoch without it.
    pub(super) fn group_left(
        &mut self,
        group: &str,
        key_id: &str,
        reason: GroupLeftReason,
    ) -> Output {
        let name = self.label(key_id);
        let me = self.key_id().to_string();
        let Some(g) = self.groups.get_mut(group) else {
            return Output::default();
        };
        g.excluded.insert(key_id.to_string());
        g.own = OwnSenderKey::fresh();
        let mut out = single(Event::Group(GroupEvent::MemberLeft {
            group: group.to_string(),
            name,
            reason,
        }));
        if g.roster.owner == me {
            let members: Vec<String> = g.verified_members().cloned().collect();
            if let Ok(msg) = self.sign_roster(group, &me, members) {
                out.send.push(msg);
                out.send.extend(self.resend_info(group));
            }
        }
        out
    }

    /// The group was deleted on the server.
    pub(super) fn group_deleted(&mut self, group: String, by: protocol::DeletedBy) -> Output {
        if self.groups.remove(&group).is_none() {
            return Output::default();
        }
        let why = match by {
            protocol::DeletedBy::Admin => "the admin deleted the group",
            protocol::DeletedBy::Owner => "its owner left: the group was deleted",
        };
        single(Event::Group(GroupEvent::Gone {
            group,
            why: why.into(),
        }))
    }

    /// Signs the next epoch of `group` with `owner` and `members` (sorted here), takes it at
    /// once, and returns the `group_roster` to send.
    fn sign_roster(
        &mut self,
        group: &str,
        owner: &str,
        mut members: Vec<String>,
    ) -> Result<ClientMsg, SendError> {
        let epoch = self.groups.get(group).map_or(1, |g| g.roster.epoch + 1);
        members.sort();
        members.dedup();
        let bytes = protocol::roster_bytes(group, epoch, owner, &members);
        let roster = Roster {
            group: group.to_string(),
            epoch,
            owner: owner.to_string(),
            members,
            signature: b64(&self.me.sign(&bytes)),
        };
        // The server sends a roster to everyone but its sender: we take ours as we send it.
        let _ = self.accept_roster(roster.clone());
        Ok(ClientMsg::GroupRoster { roster })
    }

    fn owned(&self, group: &str) -> Result<&GroupState, SendError> {
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| SendError::UnknownGroup(group.to_string()))?;
        if g.roster.owner != self.key_id() {
            return Err(SendError::NotOwner);
        }
        Ok(g)
    }

    fn member_key(&self, name: &str) -> Result<String, SendError> {
        self.key_id_of(name)
            .map(str::to_string)
            .ok_or_else(|| SendError::UnknownMember(name.to_string()))
    }

    /// Creates a group of us and the members called `names`, named `name`: the roster, then
    /// the sealed name (and the sender-key distributions it needs).
    pub fn create_group(
        &mut self,
        name: &str,
        names: &[&str],
    ) -> Result<Vec<ClientMsg>, SendError> {
        if name.is_empty() || name.len() > MAX_GROUP_NAME {
            return Err(SendError::BadGroupName);
        }
        let me = self.key_id().to_string();
        let mut members = vec![me.clone()];
        for n in names {
            members.push(self.member_key(n)?);
        }
        let group = crypto::random_id();
        let mut out = vec![self.sign_roster(&group, &me, members)?];
        let info = GroupInfo {
            name: name.to_string(),
            topic: String::new(),
        };
        if let Some(g) = self.groups.get_mut(&group) {
            g.info = Some(info.clone());
        }
        out.extend(self.seal_group_plain(&group, &GroupPlain::Info { info })?);
        Ok(out)
    }

    /// Sets the group's name and topic (owner only).
    pub fn set_group_info(
        &mut self,
        group: &str,
        name: &str,
        topic: &str,
    ) -> Result<Vec<ClientMsg>, SendError> {
        self.owned(group)?;
        if name.is_empty() || name.len() > MAX_GROUP_NAME || topic.len() > MAX_GROUP_TOPIC {
            return Err(SendError::BadGroupName);
        }
        let info = GroupInfo {
            name: name.into(),
            topic: topic.into(),
        };
        if let Some(g) = self.groups.get_mut(group) {
            g.info = Some(info.clone());
        }
        self.seal_group_plain(group, &GroupPlain::Info { info })
    }

    /// Adds the member called `name` (owner only): a new epoch, then the group's name sealed
    /// for it.
    pub fn group_add(&mut self, group: &str, name: &str) -> Result<Vec<ClientMsg>, SendError> {
        let key = self.member_key(name)?;
        let g = self.owned(group)?;
        let mut members: Vec<String> = g.verified_members().cloned().collect();
        members.push(key);
        let owner = g.roster.owner.clone();
        let mut out = vec![self.sign_roster(group, &owner, members)?];
        out.extend(self.resend_info(group));
        Ok(out)
    }

    /// Removes the member called `name` (owner only): a new epoch, then the group's name.
    pub fn group_remove(&mut self, group: &str, name: &str) -> Result<Vec<ClientMsg>, SendError> {
        let key = self.member_key(name)?;
        let g = self.owned(group)?;
        if key == g.roster.owner || !g.roster.lists(&key) {
            return Err(SendError::UnknownMember(name.to_string()));
        }
        let members = g
            .verified_members()
            .filter(|k| **k != key)
            .cloned()
            .collect();
        let owner = g.roster.owner.clone();
        let mut out = vec![self.sign_roster(group, &owner, members)?];
        out.extend(self.resend_info(group));
        Ok(out)
    }

    /// Hands the group to the member called `name` (owner only): a new epoch, same members.
    pub fn group_owner(&mut self, group: &str, name: &str) -> Result<ClientMsg, SendError> {
        let key = self.member_key(name)?;
        let g = self.owned(group)?;
        if !g.roster.lists(&key) || g.excluded.contains(&key) {
            return Err(SendError::UnknownMember(name.to_string()));
        }
        let members = g.roster.members.clone();
        self.sign_roster(group, &key, members)
    }

    /// Leaves a group (forgotten at once).
    pub fn group_leave(&mut self, group: &str) -> Result<ClientMsg, SendError> {
        self.groups
            .remove(group)
            .ok_or_else(|| SendError::UnknownGroup(group.to_string()))?;
        Ok(ClientMsg::GroupLeave {
            group: group.to_string(),
        })
    }
}

//! Private groups at an endpoint (`docs/PROTOCOL.md`, *Groups*): which rosters are accepted
//! (a later epoch signed by the owner we accepted last; for a new group, one that lists us and
//! is signed by its stated owner) and the warning for any other; one sender key per (group,
//! epoch), wrapped only for the members of the roster we verified, never for someone the server
//! alone names; rotation on a new epoch and on `group_left`; and the owner's commands.

use std::collections::BTreeSet;

use super::*;
use crate::protocol::{
    GroupAt, GroupIn, GroupInfo, GroupLeftReason, GroupOut, GroupPlain, Roster, MAX_GROUP_NAME,
    MAX_GROUP_TOPIC,
};

/// Group messages kept while waiting for their sender key.
const MAX_GROUP_PENDING: usize = 64;

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
    own: OwnSenderKey,
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

    /// Accepts `r` if it passes [`Self::check_roster`]; the warning otherwise.
    pub(super) fn receive_roster(&mut self, r: Roster) -> Output {
        if let Err(reason) = self.check_roster(&r) {
            let reason = format!("a roster for {} was refused: {reason}", short(&r.group));
            return single(Event::Group(GroupEvent::Refused {
                group: r.group,
                reason,
            }));
        }
        self.accept_roster(r)
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
        let info = GroupPlain::Info {
            info: GroupInfo {
                name: name.to_string(),
                topic: String::new(),
            },
        };
        out.extend(self.seal_group_plain(&group, &info)?);
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
        self.seal_group_plain(group, &GroupPlain::Info { info })
    }

    /// Adds the member called `name` (owner only): a new epoch.
    pub fn group_add(&mut self, group: &str, name: &str) -> Result<ClientMsg, SendError> {
        let key = self.member_key(name)?;
        let g = self.owned(group)?;
        let mut members: Vec<String> = g.verified_members().cloned().collect();
        members.push(key);
        let owner = g.roster.owner.clone();
        self.sign_roster(group, &owner, members)
    }

    /// Removes the member called `name` (owner only): a new epoch.
    pub fn group_remove(&mut self, group: &str, name: &str) -> Result<ClientMsg, SendError> {
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
        self.sign_roster(group, &owner, members)
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

    /// The verified members of `group` whose public key we lack (fetch them before writing).
    pub fn missing_for_group(&self, group: &str) -> Vec<String> {
        self.groups.get(group).map_or_else(Vec::new, |g| {
            g.verified_members()
                .filter(|k| !self.keys.contains_key(*k))
                .cloned()
                .collect()
        })
    }

    /// Seals a text for `group`: the sender-key distributions it needs, then the message.
    pub fn seal_group(&mut self, group: &str, text: &str) -> Result<Vec<ClientMsg>, SendError> {
        check_text(text)?;
        self.seal_group_plain(group, &GroupPlain::Text { text: text.into() })
    }

    fn seal_group_plain(
        &mut self,
        group: &str,
        plain: &GroupPlain,
    ) -> Result<Vec<ClientMsg>, SendError> {
        let me = self.key_id().to_string();
        let other = self.other_endpoint;
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| SendError::UnknownGroup(group.to_string()))?;
        let epoch = g.roster.epoch;
        // Only members of the roster we verified, never anyone the server alone names.
        let lacking: Vec<String> = g
            .roster
            .members
            .iter()
            .filter(|k| !g.excluded.contains(*k) && !g.own.given.contains(*k))
            .filter(|k| **k != me || other)
            .filter(|k| self.keys.contains_key(*k))
            .cloned()
            .collect();
        let (n, chain) = (g.own.n, g.own.chain.clone());
        let skid = g.own.skid.clone();
        g.own.given.extend(lacking.iter().cloned());
        g.own.chain = chain.next();
        g.own.n += 1;
        g.own.recent.push_back((n, chain.clone(), Instant::now()));
        while g.own.recent.len() > 32 {
            g.own.recent.pop_front();
        }
        let mut out = self.group_distribution(group, epoch, &skid, &lacking, n, &chain);
        let key = chain.message_key();
        let bytes = serde_json::to_vec(plain).expect("group plaintext encodes");
        let (iv, ct) = crypto::aes_seal(&key, &bytes);
        let (iv, ciphertext) = (b64(&iv), b64(&ct));
        let (id, ts) = (crypto::random_id(), self.now());
        let signed = protocol::group_bytes(group, epoch, &id, ts, &me, &skid, n, &iv, &ciphertext);
        out.push(ClientMsg::Group(GroupOut {
            group: group.to_string(),
            epoch,
            id,
            ts,
            skid,
            n,
            iv,
            ciphertext,
            signature: b64(&self.me.sign(&signed)),
        }));
        Ok(out)
    }

    fn group_distribution(
        &self,
        group: &str,
        epoch: u32,
        skid: &str,
        to: &[String],
        n: u32,
        chain: &ChainKey,
    ) -> Vec<ClientMsg> {
        if to.is_empty() {
            return Vec::new();
        }
        let commitment = crypto::commitment(chain.bytes());
        let bytes =
            protocol::group_sender_key_bytes(group, epoch, self.key_id(), skid, n, &commitment);
        let signature = b64(&self.me.sign(&bytes));
        let keys = to
            .iter()
            .filter_map(|k| {
                let p = self.keys.get(k)?;
                Some((k.clone(), b64(&p.wrap(chain.bytes()))))
            })
            .collect();
        vec![ClientMsg::SenderKey(SenderKeyOut {
            skid: skid.to_string(),
            n,
            commitment,
            signature,
            keys,
            group: Some(GroupAt {
                group: group.to_string(),
                epoch,
            }),
        })]
    }

    /// Answers a member's `key_request` for our group chain: only a verified member, only our
    /// current skid, only a state of the last few seconds.
    pub(super) fn answer_group_request(
        &mut self,
        from: &str,
        group: &str,
        skid: &str,
        n: u32,
    ) -> Output {
        let Some(g) = self.groups.get(group) else {
            return Output::default();
        };
        let verified = g.verified_members().any(|k| k == from);
        if !verified || g.own.skid != skid || !self.keys.contains_key(from) {
            return Output::default();
        }
        let now = Instant::now();
        let Some(chain) = g
            .own
            .recent
            .iter()
            .find(|(sn, _, t)| *sn == n && now.duration_since(*t) <= RECENT_TTL)
            .map(|(_, c, _)| c.clone())
        else {
            return Output::default();
        };
        let (epoch, skid) = (g.roster.epoch, g.own.skid.clone());
        Output {
            events: Vec::new(),
            send: self.group_distribution(group, epoch, &skid, &[from.to_string()], n, &chain),
        }
    }

    /// A group sender key: from a verified member, for a group we are in.
    pub(super) fn receive_group_key(&mut self, k: SenderKeyIn, at: GroupAt) -> Output {
        let from_name = k.from.name.clone();
        match self.try_group_key(&k, &at) {
            Ok(()) => self.release_group_pending(&k.from.key_id, &k.skid),
            Err(reason) => single(Event::Rejected {
                from_name,
                reason: format!("group sender key refused: {reason}"),
            }),
        }
    }

    fn check_group_sender(&self, group: &str, epoch: u32, from: &str) -> Result<(), String> {
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| format!("not in group {}", short(group)))?;
        if !g.verified_members().any(|k| k == from) {
            return Err("the sender is not on the group's verified roster".into());
        }
        if epoch < g.roster.epoch {
            return Err("older epoch".into());
        }
        Ok(())
    }

    fn try_group_key(&mut self, k: &SenderKeyIn, at: &GroupAt) -> Result<(), String> {
        self.check_group_sender(&at.group, at.epoch, &k.from.key_id)?;
        let key = self.sender_key(&k.from.key_id)?;
        let signed = protocol::group_sender_key_bytes(
            &at.group,
            at.epoch,
            &k.from.key_id,
            &k.skid,
            k.n,
            &k.commitment,
        );
        key.verify(&signed, &unb64(&k.signature)?)
            .map_err(|e| e.to_string())?;
        let ck = self
            .me
            .unwrap_key(&unb64(&k.wrapped)?)
            .map_err(|e| e.to_string())?;
        if crypto::commitment(&ck) != k.commitment {
            return Err("chain key does not match its commitment".into());
        }
        let chain_id = (k.from.key_id.clone(), k.skid.clone());
        if self.chains.get(&chain_id).is_some_and(|c| c.n >= k.n) {
            return Ok(());
        }
        self.chain_serial += 1;
        self.group_chains
            .insert(chain_id.clone(), (at.group.clone(), at.epoch));
        self.chains.insert(
            chain_id,
            RecvChain {
                chain: ChainKey::from_bytes(ck),
                n: k.n,
                skipped: std::collections::BTreeMap::new(),
                serial: self.chain_serial,
            },
        );
        Ok(())
    }

    /// A group message: verified, from a verified member, opened under its group chain.
    pub(super) fn receive_group(&mut self, m: GroupIn) -> Output {
        let from_name = m.from.name.clone();
        let checked = self
            .check_group_sender(&m.group, m.epoch, &m.from.key_id)
            .and_then(|()| self.sender_key(&m.from.key_id).map(Clone::clone))
            .and_then(|key| {
                let signed = protocol::group_bytes(
                    &m.group,
                    m.epoch,
                    &m.id,
                    m.ts,
                    &m.from.key_id,
                    &m.skid,
                    m.n,
                    &m.iv,
                    &m.ciphertext,
                );
                key.verify(&signed, &unb64(&m.signature)?)
                    .map_err(|e| e.to_string())
            });
        if let Err(reason) = checked {
            return single(Event::Rejected { from_name, reason });
        }
        let chain_id = (m.from.key_id.clone(), m.skid.clone());
        if !self.chains.contains_key(&chain_id) {
            return self.park_group(m);
        }
        if self.group_chains.get(&chain_id) != Some(&(m.group.clone(), m.epoch)) {
            let reason = "its sender key is not for this group and epoch".to_string();
            return single(Event::Rejected { from_name, reason });
        }
        if let Err(reason) = self.check_fresh(&m.id, m.ts) {
            return single(Event::Rejected { from_name, reason });
        }
        match self.open_group(m) {
            Ok(out) => out,
            Err(reason) => single(Event::Rejected { from_name, reason }),
        }
    }

    fn open_group(&mut self, m: GroupIn) -> Result<Output, String> {
        let key = self.chain_key_of(&m.from.key_id, &m.skid, m.n)?;
        let plain = crypto::aes_open(&key, &unb64(&m.iv)?, &unb64(&m.ciphertext)?)
            .map_err(|e| e.to_string())?;
        let plain: GroupPlain =
            serde_json::from_slice(&plain).map_err(|_| "not a group message".to_string())?;
        let owner = self.groups.get(&m.group).map(|g| g.roster.owner.clone());
        match plain {
            GroupPlain::Text { text } => Ok(single(Event::Message(Opened {
                text,
                id: m.id,
                ts: m.ts,
                from_name: m.from.name,
                from_key_id: m.from.key_id,
                to: Destination::Group(m.group),
                via: m.via,
            }))),
            GroupPlain::Info { info } if owner.as_deref() == Some(&m.from.key_id) => {
                if let Some(g) = self.groups.get_mut(&m.group) {
                    g.info = Some(info.clone());
                }
                Ok(single(Event::Group(GroupEvent::Info {
                    group: m.group,
                    info,
                })))
            }
            GroupPlain::Info { .. } => Err("a group's name may come from its owner only".into()),
        }
    }

    fn park_group(&mut self, m: GroupIn) -> Output {
        let mut out = Output::default();
        while self.group_pending.len() >= MAX_GROUP_PENDING {
            if let Some(dropped) = self.group_pending.pop_front() {
                out.events.push(Event::Rejected {
                    from_name: dropped.from.name,
                    reason: "too many group messages waiting for sender keys".into(),
                });
            }
        }
        out.send.push(ClientMsg::KeyRequest {
            to: m.from.key_id.clone(),
            skid: m.skid.clone(),
            n: m.n,
            group: Some(m.group.clone()),
        });
        self.group_pending.push_back(m);
        out
    }

    fn release_group_pending(&mut self, sender: &str, skid: &str) -> Output {
        let mut out = Output::default();
        let (ready, rest): (Vec<_>, Vec<_>) = self
            .group_pending
            .drain(..)
            .partition(|m| m.from.key_id == sender && m.skid == skid);
        self.group_pending = rest.into();
        for m in ready {
            let o = self.receive_group(m);
            out.events.extend(o.events);
            out.send.extend(o.send);
        }
        out
    }
}

//! Group sender keys (`docs/PROTOCOL.md`, *Groups*): one chain per (group, epoch), handed
//! lazily and wrapped only for the members of the roster this endpoint verified; group messages
//! sealed and opened under them, parked while their chain is asked for.

use super::*;
use crate::protocol::{GroupAt, GroupIn, GroupOut, GroupPlain};

/// Group messages kept while waiting for their sender key.
const MAX_GROUP_PENDING: usize = 64;

fn short(k: &str) -> &str {
    &k[..12.min(k.len())]
}

impl Session {
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

    pub(super) fn seal_group_plain(
        &mut self,
        group: &str,
        plain: &GroupPlain,
    ) -> Result<Vec<ClientMsg>, SendError> {
        let me = self.key_id().to_string();
        let (mut out, at, skid, n, key) = self.next_group_key(group)?;
        let bytes = serde_json::to_vec(plain).expect("group plaintext encodes");
        let (iv, ct) = crypto::aes_seal(&key, &bytes);
        let (iv, ciphertext) = (b64(&iv), b64(&ct));
        let (id, ts) = (crypto::random_id(), self.now());
        let signed =
            protocol::group_bytes(group, at.epoch, &id, ts, &me, &skid, n, &iv, &ciphertext);
        out.push(ClientMsg::Group(GroupOut {
            group: group.to_string(),
            epoch: at.epoch,
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

    /// Steps our chain of `group` by one: the sender-key distributions it needs first (only
    /// members of the roster we verified), the group and epoch, our skid, the index and its
    /// message key.
    pub(super) fn next_group_key(
        &mut self,
        group: &str,
    ) -> Result<(Vec<ClientMsg>, GroupAt, String, u32, crypto::SecretKey), SendError> {
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
        let out = self.group_distribution(group, epoch, &skid, &lacking, n, &chain);
        let at = GroupAt {
            group: group.to_string(),
            epoch,
        };
        Ok((out, at, skid, n, chain.message_key()))
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

    pub(super) fn check_group_sender(
        &self,
        group: &str,
        epoch: u32,
        from: &str,
    ) -> Result<(), String> {
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
            .and_then(|()| self.sender_key(&m.from.key_id).cloned())
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

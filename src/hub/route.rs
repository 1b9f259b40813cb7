//! Routing: which seats a `direct`, `all`, `sender_key` or `key_request` goes to, checked against
//! the sending member. Away members are reached through their mailboxes.

use super::directory::Kind;
use super::mailbox::{Receipt, SeatId};
use super::{payload_of, DeliveryState, Hub, Refusal};
use crate::protocol::{
    self, AllIn, AllOut, DirectIn, DirectOut, ErrorCode, Sender, SenderKeyIn, SenderKeyOut,
    ServerMsg, Via,
};

impl Hub {
    pub(super) fn sender(&self, seat: SeatId) -> (Sender, Option<Via>, String) {
        let s = &self.dir.seats[&seat];
        let name = self.dir.members[&s.key_id].name.clone();
        let via = match s.kind {
            Kind::User => None,
            Kind::AdminWeb => Some(Via::Web),
            Kind::Console => Some(Via::Prompt),
        };
        let key_id = s.key_id.clone();
        (
            Sender {
                name,
                key_id: key_id.clone(),
            },
            via,
            key_id,
        )
    }

    pub(super) fn is_admin_seat(&self, seat: SeatId) -> bool {
        self.dir
            .seats
            .get(&seat)
            .is_some_and(|s| s.kind != Kind::User)
    }

    fn accepted(&mut self, seat: SeatId, id: String) {
        let frame = super::frame_of(&ServerMsg::Ack { id, skipped: None });
        if let Some((_, outbox)) = self.dir.seats.get(&seat).and_then(|s| s.conn.as_ref()) {
            let _ = outbox.push(frame);
        }
    }

    pub(super) fn fresh(&mut self, id: &str, ts: i64) -> Result<(), Refusal> {
        self.seen
            .check(id, ts, protocol::now_ms())
            .map_err(|(code, m)| Refusal::new(code, m).about(Some(id.to_string())))
    }

    pub(super) fn direct(&mut self, seat: SeatId, d: DirectOut) -> Result<(), Refusal> {
        let id = Some(d.id.clone());
        check_sealed(&d.id, &d.iv, &d.ciphertext, &d.signature)
            .map_err(|m| Refusal::new(ErrorCode::BadField, m).about(id.clone()))?;
        let (from, via, own) = self.sender(seat);
        // A member hidden by --only-admin is answered exactly as an absent one.
        if !self.dir.members.contains_key(&d.to) || !self.can_see(&own, &d.to) {
            return Err(Refusal::new(ErrorCode::UnknownRecipient, "no such member").about(id));
        }
        let targets = self.dir.seats_of(&d.to, seat);
        if targets.is_empty() {
            return Err(Refusal::new(
                ErrorCode::BadField,
                "to: your own key has no other endpoint to write to",
            )
            .about(id));
        }
        let mut expected = vec![d.to.as_str(), own.as_str()];
        expected.dedup();
        let keys_ok = d.keys.len() == expected.len()
            && expected.iter().all(|k| {
                d.keys
                    .get(*k)
                    .is_some_and(|w| check_rsa_field("a wrapped key", w).is_ok())
            });
        if !keys_ok {
            return Err(Refusal::new(
                ErrorCode::BadKeys,
                "keys must hold the key wrapped for the recipient and for yourself",
            )
            .about(id));
        }
        self.fresh(&d.id, d.ts)?;
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
        let payload = payload_of(&ServerMsg::Direct(relay.clone()));
        let to_self = d.to == own;
        let receipt = (!to_self).then(|| Receipt {
            sender: own.clone(),
            id: d.id.clone(),
            to: d.to.clone(),
        });
        // One seat carries the receipt: the prompt if the admin is the recipient (it receives
        // at once), else the member's seat.
        let carrier = targets
            .iter()
            .copied()
            .find(|t| self.dir.seats[t].kind == Kind::Console)
            .unwrap_or(targets[0]);
        let held = !to_self && !self.dir.online(&d.to);
        self.accepted(seat, d.id.clone());
        for t in targets {
            let r = if t == carrier { receipt.clone() } else { None };
            self.deliver(t, &payload, "direct", r);
        }
        if held {
            if let Some(r) = receipt {
                self.delivery(r, DeliveryState::Held);
            }
        }
        if !to_self {
            // The sender's other endpoint (the admin's) shows what this one sent.
            let mirrors = self.dir.seats_of(&own, seat);
            if !mirrors.is_empty() {
                relay.key = d.keys[&own].clone();
                let payload = payload_of(&ServerMsg::Direct(relay));
                for m in mirrors {
                    self.deliver(m, &payload, "direct", None);
                }
            }
        }
        Ok(())
    }

    pub(super) fn all(&mut self, seat: SeatId, a: AllOut) -> Result<(), Refusal> {
        let id = Some(a.id.clone());
        if !self.is_admin_seat(seat) && (self.settings.disable_all || self.settings.only_admin) {
            return Err(
                Refusal::new(ErrorCode::Forbidden, "@all is disabled on this server").about(id),
            );
        }
        check_sealed(&a.id, &a.iv, &a.ciphertext, &a.signature)
            .map_err(|m| Refusal::new(ErrorCode::BadField, m).about(id.clone()))?;
        if !protocol::is_hex(&a.skid, 32) {
            return Err(
                Refusal::new(ErrorCode::BadField, "skid must be 32 hex characters").about(id),
            );
        }
        self.fresh(&a.id, a.ts)?;
        let (from, via, _) = self.sender(seat);
        let payload = payload_of(&ServerMsg::All(AllIn {
            id: a.id.clone(),
            ts: a.ts,
            from,
            skid: a.skid,
            n: a.n,
            iv: a.iv,
            ciphertext: a.ciphertext,
            signature: a.signature,
            via,
        }));
        self.accepted(seat, a.id);
        let targets: Vec<SeatId> = self
            .dir
            .seats
            .keys()
            .copied()
            .filter(|&t| t != seat)
            .collect();
        for t in targets {
            self.deliver(t, &payload, "all", None);
        }
        Ok(())
    }

    /// The seats of `to` that the member of `seat` may reach, `seat` itself excepted.
    fn reachable(&self, seat: SeatId, to: &str) -> Vec<SeatId> {
        let own = &self.dir.seats[&seat].key_id;
        if !self.can_see(own, to) {
            return Vec::new();
        }
        self.dir.seats_of(to, seat)
    }

    pub(super) fn sender_key(&mut self, seat: SeatId, k: SenderKeyOut) -> Result<(), Refusal> {
        let bad = |m: &str| Err(Refusal::new(ErrorCode::BadField, m));
        if !protocol::is_hex(&k.skid, 32) {
            return bad("skid must be 32 hex characters");
        }
        if !protocol::is_hex(&k.commitment, 64) {
            return bad("commitment must be 64 hex characters");
        }
        if let Err(m) = check_rsa_field("signature", &k.signature) {
            return bad(&m);
        }
        if k.keys.is_empty() || k.keys.len() > protocol::MAX_SENDER_KEY_ENTRIES {
            return bad("keys must hold 1 to 256 entries");
        }
        if k.keys.keys().any(|key_id| !protocol::is_hex(key_id, 64)) {
            return bad("keys: every key ID must be 64 lowercase hex characters");
        }
        if let Some(Err(m)) = k
            .keys
            .values()
            .map(|w| check_rsa_field("a wrapped key", w))
            .find(Result::is_err)
        {
            return bad(&m);
        }
        if let Some(at) = &k.group {
            self.routed_in(seat, &at.group, &at.group)?;
            self.current_epoch(&at.group, at.epoch, &at.group)?;
        }
        let (from, _, _) = self.sender(seat);
        for (key_id, wrapped) in k.keys {
            // A group sender key reaches only members routed in the group.
            if let Some(at) = &k.group {
                if !self.is_routed(&at.group, &key_id) {
                    continue;
                }
            }
            let targets = self.reachable(seat, &key_id);
            if targets.is_empty() {
                continue;
            }
            let payload = payload_of(&ServerMsg::SenderKey(SenderKeyIn {
                from: from.clone(),
                skid: k.skid.clone(),
                n: k.n,
                commitment: k.commitment.clone(),
                signature: k.signature.clone(),
                wrapped,
                group: k.group.clone(),
            }));
            for t in targets {
                self.deliver(t, &payload, "sender_key", None);
            }
        }
        Ok(())
    }

    pub(super) fn key_request(
        &mut self,
        seat: SeatId,
        to: String,
        skid: String,
        n: u32,
        group: Option<String>,
    ) -> Result<(), Refusal> {
        if let Some(g) = &group {
            self.routed_in(seat, g, g)?;
            if !self.is_routed(g, &to) {
                return Err(Refusal::new(
                    ErrorCode::UnknownRecipient,
                    "no such member in this group",
                ));
            }
        }
        if !protocol::is_hex(&skid, 32) {
            return Err(Refusal::new(
                ErrorCode::BadField,
                "skid must be 32 hex characters",
            ));
        }
        let targets = self.reachable(seat, &to);
        if targets.is_empty() {
            return Err(Refusal::new(ErrorCode::UnknownRecipient, "no such member"));
        }
        let (from, _, _) = self.sender(seat);
        let payload = payload_of(&ServerMsg::KeyRequest {
            from,
            skid,
            n,
            group,
        });
        for t in targets {
            self.deliver(t, &payload, "key_request", None);
        }
        Ok(())
    }
}

fn check_sealed(id: &str, iv: &str, ciphertext: &str, signature: &str) -> Result<(), String> {
    check_sealed_with(id, iv, ciphertext, signature, protocol::MAX_CIPHERTEXT_B64)
}

/// Checks the fields of a sealed, signed message whose `ciphertext` may be `max_b64` long.
pub(super) fn check_sealed_with(
    id: &str,
    iv: &str,
    ciphertext: &str,
    signature: &str,
    max_b64: usize,
) -> Result<(), String> {
    if !protocol::is_hex(id, 32) {
        return Err("id must be 32 lowercase hex characters".into());
    }
    if iv.len() != 16 || !protocol::is_base64(iv) {
        return Err("iv must be 12 bytes in base64".into());
    }
    if ciphertext.len() < 24 || !protocol::is_base64(ciphertext) {
        return Err("ciphertext must be base64 holding at least the 16-byte tag".into());
    }
    if ciphertext.len() > max_b64 {
        return Err(format!(
            "ciphertext longer than {max_b64} characters (what {} bytes encrypt to)",
            (max_b64 / 4 * 3).saturating_sub(16)
        ));
    }
    check_rsa_field("signature", signature)
}

/// A signature or wrapped key: non-empty base64, at most one 4096-bit modulus.
pub(super) fn check_rsa_field(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || !protocol::is_base64(value) {
        return Err(format!("{what} must be non-empty base64"));
    }
    if value.len() > protocol::MAX_RSA_B64 {
        return Err(format!(
            "{what} longer than {} characters (one 4096-bit RSA block)",
            protocol::MAX_RSA_B64
        ));
    }
    Ok(())
}

//! Sealing what this endpoint sends: direct messages (a fresh key wrapped for the recipient and
//! the sender), `@all` under this endpoint's sender key, and handing that key to whoever needs it.

use super::*;

impl Session {
    /// Seals a direct message for the member with `to_key_id`.
    pub fn seal_direct(&mut self, to_key_id: &str, text: &str) -> Result<ClientMsg, SendError> {
        check_text(text)?;
        if self.name.is_none() {
            return Err(SendError::NotJoined);
        }
        if !self.peers.contains_key(to_key_id) {
            return Err(SendError::UnknownMember(to_key_id.to_string()));
        }
        let recipient = self
            .keys
            .get(to_key_id)
            .ok_or_else(|| SendError::NoKey(to_key_id.to_string()))?;
        let key = zeroize::Zeroizing::new(crypto::random_bytes::<{ crypto::KEY_LEN }>());
        let (iv, ct) = crypto::aes_seal(&key, text.as_bytes());
        let (iv, ciphertext) = (b64(&iv), b64(&ct));
        let mut keys = std::collections::BTreeMap::new();
        keys.insert(to_key_id.to_string(), b64(&recipient.wrap(key.as_slice())));
        if to_key_id != self.key_id() {
            let own = b64(&self.me.public().wrap(key.as_slice()));
            keys.insert(self.key_id().to_string(), own);
        }
        let (id, ts) = (crypto::random_id(), self.now());
        let signed = protocol::direct_bytes(&id, ts, self.key_id(), to_key_id, &iv, &ciphertext);
        Ok(ClientMsg::Direct(DirectOut {
            id,
            ts,
            to: to_key_id.to_string(),
            iv,
            ciphertext,
            keys,
            signature: b64(&self.me.sign(&signed)),
        }))
    }

    /// Seals an `@all` message: first the sender-key distributions that members lack, then the
    /// message itself.
    pub fn seal_all(&mut self, text: &str) -> Result<Vec<ClientMsg>, SendError> {
        check_text(text)?;
        let (mut out, n, key) = self.next_own_key()?;
        let (iv, ct) = crypto::aes_seal(&key, text.as_bytes());
        let (iv, ciphertext) = (b64(&iv), b64(&ct));
        let (id, ts) = (crypto::random_id(), self.now());
        let skid = self.own.skid.clone();
        let signed = protocol::all_bytes(&id, ts, self.key_id(), &skid, n, &iv, &ciphertext);
        out.push(ClientMsg::All(AllOut {
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

    /// The message key of the next index of our sender key, with the sender-key distributions
    /// members lack (to send first); the chain moves on.
    pub(super) fn next_own_key(
        &mut self,
    ) -> Result<(Vec<ClientMsg>, u32, crypto::SecretKey), SendError> {
        let options = self.options.as_ref().ok_or(SendError::NotJoined)?;
        if options.disable_all && !self.admin {
            return Err(SendError::AllDisabled);
        }
        // Members whose key is not known are not given our sender key now: they get it with a
        // later message, once their key is fetched (`missing_for_all`, `queue_all`).
        let lacking: Vec<String> = self
            .lacking_sender_key()
            .into_iter()
            .filter(|k| self.keys.contains_key(k))
            .collect();
        let out = self.distribution(&lacking, self.own.n, self.own.chain.clone());
        self.own.given.extend(lacking);
        let (n, chain) = (self.own.n, self.own.chain.clone());
        let key = chain.message_key();
        self.own.chain = chain.next();
        self.own.n += 1;
        let now = Instant::now();
        self.own.recent.push_back((n, chain, now));
        while self.own.recent.front().is_some_and(|(_, _, t)| {
            now.duration_since(*t) > RECENT_TTL || self.own.recent.len() > 32
        }) {
            self.own.recent.pop_front();
        }
        Ok((out, n, key))
    }

    /// The members who do not hold our current sender key.
    pub(super) fn lacking_sender_key(&self) -> Vec<String> {
        self.peers
            .keys()
            .filter(|k| {
                (*k != self.key_id() || self.other_endpoint) && !self.own.given.contains(*k)
            })
            .cloned()
            .collect()
    }

    pub(super) fn distribution(
        &mut self,
        to: &[String],
        n: u32,
        chain: ChainKey,
    ) -> Vec<ClientMsg> {
        if to.is_empty() {
            return Vec::new();
        }
        let commitment = crypto::commitment(chain.bytes());
        let signature = match &self.own.signed {
            Some((sn, c, sig)) if *sn == n && *c == commitment => sig.clone(),
            _ => {
                let bytes =
                    protocol::sender_key_bytes(self.key_id(), &self.own.skid, n, &commitment);
                let sig = b64(&self.me.sign(&bytes));
                self.own.signed = Some((n, commitment.clone(), sig.clone()));
                sig
            }
        };
        to.chunks(protocol::MAX_SENDER_KEY_ENTRIES)
            .map(|chunk| {
                let keys = chunk
                    .iter()
                    .filter_map(|k| {
                        self.keys
                            .get(k)
                            .map(|p| (k.clone(), b64(&p.wrap(chain.bytes()))))
                    })
                    .collect();
                ClientMsg::SenderKey(SenderKeyOut {
                    skid: self.own.skid.clone(),
                    n,
                    commitment: commitment.clone(),
                    signature: signature.clone(),
                    keys,
                    group: None,
                })
            })
            .collect()
    }

    pub(super) fn answer_key_request(&mut self, from: &str, skid: &str, n: u32) -> Output {
        if skid != self.own.skid || !self.peers.contains_key(from) || !self.keys.contains_key(from)
        {
            return Output::default();
        }
        let now = Instant::now();
        let state = self
            .own
            .recent
            .iter()
            .find(|(sn, _, t)| *sn == n && now.duration_since(*t) <= RECENT_TTL)
            .map(|(_, chain, _)| chain.clone());
        let Some(chain) = state else {
            return Output::default();
        };
        Output {
            events: Vec::new(),
            send: self.distribution(&[from.to_string()], n, chain),
        }
    }
}

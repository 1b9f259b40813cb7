//! Opening what this endpoint receives: freshness, direct messages, `@all` under the senders'
//! chains (parked while their key is asked for), and sender keys.

use super::*;

impl Session {
    pub(super) fn check_fresh(&mut self, id: &str, ts: i64) -> Result<(), String> {
        let now = self.now();
        self.seen.check(id, ts, now).map_err(|(code, _)| {
            match code {
                ErrorCode::Stale => "timestamp too far from the server's clock (stale or replayed)",
                ErrorCode::DuplicateId => "duplicate message id (replayed)",
                _ => "its id is not 32 lowercase hex characters",
            }
            .to_string()
        })
    }

    pub(super) fn sender_key(&self, key_id: &str) -> Result<&PublicIdentity, String> {
        if !self.peers.contains_key(key_id) && key_id != self.key_id() {
            return Err("sender is not a known member".to_string());
        }
        self.keys
            .get(key_id)
            .ok_or_else(|| "the sender's public key is not known".to_string())
    }

    pub(super) fn open_direct(&mut self, d: DirectIn) -> Output {
        let from_name = d.from.name.clone();
        match self.try_open_direct(d) {
            Ok(opened) => single(Event::Message(opened)),
            Err(reason) => single(Event::Rejected { from_name, reason }),
        }
    }

    pub(super) fn try_open_direct(&mut self, d: DirectIn) -> Result<Opened, String> {
        let key = self.sender_key(&d.from.key_id)?;
        let signed =
            protocol::direct_bytes(&d.id, d.ts, &d.from.key_id, &d.to, &d.iv, &d.ciphertext);
        key.verify(&signed, &unb64(&d.signature)?)
            .map_err(|e| e.to_string())?;
        self.check_fresh(&d.id, d.ts)?;
        let aes = self
            .me
            .unwrap_key(&unb64(&d.key)?)
            .map_err(|e| e.to_string())?;
        let plain = crypto::aes_open(&aes, &unb64(&d.iv)?, &unb64(&d.ciphertext)?)
            .map_err(|e| e.to_string())?;
        Ok(Opened {
            text: String::from_utf8(plain).map_err(|_| "text is not UTF-8".to_string())?,
            id: d.id,
            ts: d.ts,
            from_name: d.from.name,
            from_key_id: d.from.key_id,
            to: Destination::Direct(d.to),
            via: d.via,
        })
    }

    pub(super) fn receive_all(&mut self, a: AllIn) -> Output {
        let from_name = a.from.name.clone();
        let verified = self.sender_key(&a.from.key_id).and_then(|key| {
            let signed = protocol::all_bytes(
                &a.id,
                a.ts,
                &a.from.key_id,
                &a.skid,
                a.n,
                &a.iv,
                &a.ciphertext,
            );
            key.verify(&signed, &unb64(&a.signature)?)
                .map_err(|e| e.to_string())
        });
        if let Err(reason) = verified {
            return single(Event::Rejected { from_name, reason });
        }
        let chain_id = (a.from.key_id.clone(), a.skid.clone());
        if !self.chains.contains_key(&chain_id) {
            return self.park(a);
        }
        if let Err(reason) = self.check_fresh(&a.id, a.ts) {
            return single(Event::Rejected { from_name, reason });
        }
        match self.open_all(a) {
            Ok(opened) => single(Event::Message(opened)),
            Err(reason) => single(Event::Rejected { from_name, reason }),
        }
    }

    pub(super) fn park(&mut self, a: AllIn) -> Output {
        let mut out = self.expire_pending();
        let size = |a: &AllIn| a.ciphertext.len() + a.signature.len();
        let mut bytes = self.pending.iter().map(|(_, p)| size(p)).sum::<usize>() + size(&a);
        while self.pending.len() >= MAX_PENDING || bytes > MAX_PENDING_BYTES {
            let Some((_, dropped)) = self.pending.pop_front() else {
                break;
            };
            bytes -= size(&dropped);
            out.events.push(Event::Rejected {
                from_name: dropped.from.name,
                reason: "too many messages waiting for sender keys".into(),
            });
        }
        let chain_id = (a.from.key_id.clone(), a.skid.clone());
        if self.requested.insert(chain_id) {
            out.send.push(ClientMsg::KeyRequest {
                to: a.from.key_id.clone(),
                skid: a.skid.clone(),
                n: a.n,
                group: None,
            });
        }
        self.pending.push_back((Instant::now(), a));
        out
    }

    /// When the oldest pending `@all` message is due to be given up on: call
    /// [`Session::expire_pending`] then (nothing to do before, so no need to wake).
    pub fn pending_due(&self) -> Option<Instant> {
        let pending = self
            .pending
            .front()
            .map(|(t, _)| *t + PENDING_TTL + Duration::from_millis(1));
        [pending, self.keys_due()].into_iter().flatten().min()
    }

    /// Reports pending `@all` messages whose sender key never came. Call now and then.
    pub fn expire_pending(&mut self) -> Output {
        let mut out = Output::default();
        self.expire_keys(&mut out);
        while self
            .pending
            .front()
            .is_some_and(|(t, _)| t.elapsed() > PENDING_TTL)
        {
            let (_, a) = self.pending.pop_front().expect("front exists");
            out.events.push(Event::Rejected {
                from_name: a.from.name,
                reason: "the sender's key never came; the message cannot be opened".into(),
            });
        }
        // Forget the requests nothing waits for any more: a key asked for and never given must
        // not be remembered for ever.
        let waiting: HashSet<(String, String)> = self
            .pending
            .iter()
            .map(|(_, a)| (a.from.key_id.clone(), a.skid.clone()))
            .collect();
        self.requested.retain(|r| waiting.contains(r));
        out
    }

    pub(super) fn open_all(&mut self, a: AllIn) -> Result<Opened, String> {
        let key = self.chain_key_of(&a.from.key_id, &a.skid, a.n)?;
        let plain = crypto::aes_open(&key, &unb64(&a.iv)?, &unb64(&a.ciphertext)?)
            .map_err(|e| e.to_string())?;
        Ok(Opened {
            text: String::from_utf8(plain).map_err(|_| "text is not UTF-8".to_string())?,
            id: a.id,
            ts: a.ts,
            from_name: a.from.name,
            from_key_id: a.from.key_id,
            to: Destination::All,
            via: a.via,
        })
    }

    /// The message key of index `n` of the chain (`from`, `skid`), used up.
    pub(super) fn chain_key_of(
        &mut self,
        from: &str,
        skid: &str,
        n: u32,
    ) -> Result<crypto::SecretKey, String> {
        let chain_id = (from.to_string(), skid.to_string());
        let recv = self
            .chains
            .get_mut(&chain_id)
            .ok_or_else(|| "no sender key".to_string())?;
        // The last index has no next chain state: refused rather than overflow the chain.
        if n == u32::MAX {
            return Err("chain index at its end".into());
        }
        let key = if n < recv.n {
            recv.skipped
                .remove(&n)
                .ok_or_else(|| "message key already used or too old".to_string())?
        } else {
            if n - recv.n > MAX_JUMP {
                return Err("chain index jumps too far ahead".into());
            }
            while recv.n < n {
                if recv.skipped.len() >= MAX_SKIPPED {
                    recv.skipped.pop_first();
                }
                recv.skipped.insert(recv.n, recv.chain.message_key());
                recv.chain = recv.chain.next();
                recv.n += 1;
            }
            let key = recv.chain.message_key();
            recv.chain = recv.chain.next();
            recv.n += 1;
            key
        };
        Ok(key)
    }

    pub(super) fn receive_sender_key(&mut self, k: SenderKeyIn) -> Output {
        let from_name = k.from.name.clone();
        match self.try_sender_key(&k) {
            Ok(()) => self.release_pending(&k.from.key_id, &k.skid),
            Err(reason) => single(Event::Rejected {
                from_name,
                reason: format!("sender key refused: {reason}"),
            }),
        }
    }

    pub(super) fn try_sender_key(&mut self, k: &SenderKeyIn) -> Result<(), String> {
        let key = self.sender_key(&k.from.key_id)?;
        let signed = protocol::sender_key_bytes(&k.from.key_id, &k.skid, k.n, &k.commitment);
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
        // Never move a chain backwards: that would reopen used message keys.
        if self.chains.get(&chain_id).is_some_and(|c| c.n >= k.n) {
            return Ok(());
        }
        let theirs: Vec<(u64, (String, String))> = self
            .chains
            .iter()
            .filter(|((sender, _), _)| *sender == k.from.key_id)
            .map(|(id, c)| (c.serial, id.clone()))
            .collect();
        if theirs.len() >= MAX_CHAINS_PER_SENDER {
            if let Some((_, oldest)) = theirs.into_iter().min() {
                self.chains.remove(&oldest);
            }
        }
        self.chain_serial += 1;
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

    pub(super) fn release_pending(&mut self, sender: &str, skid: &str) -> Output {
        let mut out = Output::default();
        let (ready, rest): (Vec<_>, Vec<_>) = self
            .pending
            .drain(..)
            .partition(|(_, a)| a.from.key_id == sender && a.skid == skid);
        self.pending = rest.into();
        self.requested
            .remove(&(sender.to_string(), skid.to_string()));
        for (_, a) in ready {
            out.events.extend(self.receive_all(a).events);
        }
        out
    }
}

//! Members' public keys, fetched when needed: the member list carries none. A message from a
//! sender whose key is not known waits (bounded in count, bytes and time) while the key is asked
//! for with `get_keys`; each key that comes is checked against its key ID and kept parsed.
//! Messages of ours that need keys (`queue_direct`, `queue_all`) wait for them the same way.

use super::*;

/// Messages kept waiting for their senders' public keys, at most.
pub const MAX_WAITING: usize = 256;
/// Bytes of messages kept waiting for public keys (their ciphertext, signature and wrapped key).
pub const MAX_WAITING_BYTES: usize = 1024 * 1024;
/// How long a message waits for its sender's key before it is reported as not verifiable.
const KEY_WAIT: Duration = Duration::from_secs(30);
/// How long a `get_keys` may go unanswered before the key is asked for again.
pub const KEY_ASK_TTL: Duration = Duration::from_secs(10);
/// Messages of ours kept waiting for their recipients' keys, at most.
pub const MAX_DEFERRED: usize = 64;

/// A message of ours waiting for public keys.
pub(super) enum Deferred {
    Direct { to: String, text: String },
    All { text: String },
}

/// The member whose key a message needs to be verified (or answered), if any.
fn signer(msg: &ServerMsg) -> Option<&str> {
    match msg {
        ServerMsg::Direct(d) => Some(&d.from.key_id),
        ServerMsg::All(a) => Some(&a.from.key_id),
        ServerMsg::SenderKey(k) => Some(&k.from.key_id),
        ServerMsg::KeyRequest { from, .. } => Some(&from.key_id),
        ServerMsg::File(f) => Some(&f.from.key_id),
        ServerMsg::Group(g) => Some(&g.from.key_id),
        ServerMsg::GroupRoster { by, .. } => Some(by),
        _ => None,
    }
}

/// Who a message concerns, for keeping order: a member's `left` goes after what it sent.
fn concerns(msg: &ServerMsg) -> Option<&str> {
    match msg {
        ServerMsg::Left { key_id, .. } => Some(key_id),
        // A file's chunks and its end wait behind its manifest.
        ServerMsg::Chunk(c) => Some(&c.from.key_id),
        ServerMsg::FileCancel { by, .. } => Some(by),
        other => signer(other),
    }
}

fn waiting_size(msg: &ServerMsg) -> usize {
    match msg {
        ServerMsg::Direct(d) => d.ciphertext.len() + d.signature.len() + d.key.len(),
        ServerMsg::All(a) => a.ciphertext.len() + a.signature.len(),
        ServerMsg::SenderKey(k) => k.signature.len() + k.wrapped.len(),
        ServerMsg::File(f) => f.ciphertext.len() + f.signature.len(),
        ServerMsg::Group(g) => g.ciphertext.len() + g.signature.len(),
        ServerMsg::Chunk(c) => c.ciphertext.len(),
        _ => 64,
    }
}

fn sender_name(msg: &ServerMsg) -> String {
    match msg {
        ServerMsg::Direct(d) => d.from.name.clone(),
        ServerMsg::All(a) => a.from.name.clone(),
        ServerMsg::SenderKey(k) => k.from.name.clone(),
        ServerMsg::KeyRequest { from, .. } => from.name.clone(),
        ServerMsg::File(f) => f.from.name.clone(),
        ServerMsg::Chunk(c) => c.from.name.clone(),
        ServerMsg::Group(g) => g.from.name.clone(),
        _ => String::new(),
    }
}

impl Session {
    /// Whether the public key of `key_id` is known (fetched and checked).
    pub fn has_key(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    /// Whether `key_id` was asked for and the answer has not come yet.
    pub fn is_asked(&self, key_id: &str) -> bool {
        self.asked.contains_key(key_id)
    }

    /// Adds public keys known by other means (the server's own endpoint, tests): each is kept
    /// under its own key ID.
    pub fn add_keys(&mut self, keys: impl IntoIterator<Item = PublicIdentity>) {
        for k in keys {
            self.keys.insert(k.key_id().to_string(), k);
        }
    }

    /// The members an `@all` would have to give our sender key to whose keys are not known.
    pub fn missing_for_all(&self) -> Vec<String> {
        self.lacking_sender_key()
            .into_iter()
            .filter(|k| !self.keys.contains_key(k))
            .collect()
    }

    /// `get_keys` messages (at most `MAX_GET_KEYS` key IDs each) for those of `key_ids` whose
    /// keys are neither known nor already asked for; they count as asked from now.
    pub fn request_keys(&mut self, key_ids: impl IntoIterator<Item = String>) -> Vec<ClientMsg> {
        let now = Instant::now();
        let mut wanted: Vec<String> = Vec::new();
        for k in key_ids {
            if self.keys.contains_key(&k) || self.asked.contains_key(&k) || wanted.contains(&k) {
                continue;
            }
            wanted.push(k);
        }
        for k in &wanted {
            self.asked.insert(k.clone(), now);
        }
        wanted
            .chunks(protocol::MAX_GET_KEYS)
            .map(|c| ClientMsg::GetKeys {
                key_ids: c.to_vec(),
            })
            .collect()
    }

    /// Keeps `msg` waiting when its sender's key is being fetched (or must be), or when an
    /// earlier message about the same member waits; gives it back otherwise.
    // The message given back is the one given: no allocation to make the error smaller.
    #[allow(clippy::result_large_err)]
    pub(super) fn hold_for_key(&mut self, msg: ServerMsg) -> Result<Output, ServerMsg> {
        let Some(who) = concerns(&msg) else {
            return Err(msg);
        };
        let behind = self.waiting.iter().any(|(_, w)| concerns(w) == Some(who));
        let needs = signer(&msg).is_some_and(|s| {
            !self.keys.contains_key(s) && (self.peers.contains_key(s) || self.asked.contains_key(s))
        });
        if !behind && !needs {
            return Err(msg);
        }
        let who = who.to_string();
        let mut out = Output::default();
        let size = |m: &ServerMsg| waiting_size(m);
        let mut bytes = self.waiting.iter().map(|(_, w)| size(w)).sum::<usize>() + size(&msg);
        while self.waiting.len() >= MAX_WAITING || bytes > MAX_WAITING_BYTES {
            let Some((_, dropped)) = self.waiting.pop_front() else {
                break;
            };
            bytes -= size(&dropped);
            out.events.push(Event::Rejected {
                from_name: sender_name(&dropped),
                reason: "too many messages waiting for public keys".into(),
            });
        }
        if needs {
            out.send.extend(self.request_keys([who]));
        }
        self.waiting.push_back((Instant::now(), msg));
        Ok(out)
    }

    /// Takes a `keys` answer: checks and keeps each key asked for, then handles the messages
    /// that waited for them and sends ours that can go now.
    pub(super) fn keys_answer(
        &mut self,
        keys: std::collections::BTreeMap<String, String>,
        unknown: Vec<String>,
    ) -> Output {
        let mut out = Output::default();
        let mut failed: HashSet<String> = HashSet::new();
        for (key_id, spki) in keys {
            // Only what we asked for: an unasked key could not be told from a planted one.
            if self.asked.remove(&key_id).is_none() {
                continue;
            }
            let parsed = unb64(&spki)
                .map_err(|_| CryptoError::NotRsaPublicKey)
                .and_then(|der| PublicIdentity::from_spki_der(&der));
            match parsed {
                Ok(k) if k.key_id() == key_id => {
                    self.keys.insert(key_id, k);
                }
                Ok(_) => {
                    out.events.push(Event::Rejected {
                        from_name: self.name_or_short(&key_id),
                        reason: "the server sent a public key that does not match its key ID; it was refused".into(),
                    });
                    failed.insert(key_id);
                }
                Err(e) => {
                    out.events.push(Event::Rejected {
                        from_name: self.name_or_short(&key_id),
                        reason: format!("the server sent an unusable public key: {e}"),
                    });
                    failed.insert(key_id);
                }
            }
        }
        for key_id in unknown {
            if self.asked.remove(&key_id).is_some() {
                failed.insert(key_id);
            }
        }
        self.release_waiting(&failed, &mut out);
        self.flush_deferred(&failed, &mut out);
        out
    }

    fn name_or_short(&self, key_id: &str) -> String {
        self.name_of(key_id)
            .map(str::to_string)
            .unwrap_or_else(|| key_id[..12.min(key_id.len())].to_string())
    }

    /// Handles, in order, the waiting messages whose keys are settled: verified with the key
    /// now known, or refused when it could not be had.
    fn release_waiting(&mut self, failed: &HashSet<String>, out: &mut Output) {
        let mut still = VecDeque::new();
        let waiting = std::mem::take(&mut self.waiting);
        for (at, msg) in waiting {
            let who = concerns(&msg).unwrap_or_default().to_string();
            let blocked = self.asked.contains_key(&who)
                || still
                    .iter()
                    .any(|(_, w): &(Instant, ServerMsg)| concerns(w) == Some(&who));
            if blocked {
                still.push_back((at, msg));
                continue;
            }
            if failed.contains(&who) && signer(&msg).is_some() {
                out.events.push(Event::Rejected {
                    from_name: sender_name(&msg),
                    reason:
                        "the sender's public key could not be had; the message cannot be verified"
                            .into(),
                });
                continue;
            }
            let more = self.handle_now(msg);
            out.events.extend(more.events);
            out.send.extend(more.send);
        }
        self.waiting = still;
    }

    /// Queues a direct message until the recipient's key is known; the messages to send now
    /// (the sealed message, or the `get_keys` it waits for).
    pub fn queue_direct(&mut self, to: &str, text: &str) -> Result<Vec<ClientMsg>, SendError> {
        check_text(text)?;
        if self.name.is_none() {
            return Err(SendError::NotJoined);
        }
        if !self.peers.contains_key(to) {
            return Err(SendError::UnknownMember(to.to_string()));
        }
        if self.deferred.is_empty() && self.keys.contains_key(to) {
            return self.seal_direct(to, text).map(|m| vec![m]);
        }
        if self.deferred.len() >= MAX_DEFERRED {
            return Err(SendError::Busy);
        }
        self.deferred.push_back(Deferred::Direct {
            to: to.to_string(),
            text: text.to_string(),
        });
        let mut out = Output {
            send: self.request_keys([to.to_string()]),
            ..Output::default()
        };
        self.flush_deferred(&HashSet::new(), &mut out);
        Ok(out.send)
    }

    /// Queues an `@all` until the keys of everyone it must give our sender key to are known;
    /// the messages to send now.
    pub fn queue_all(&mut self, text: &str) -> Result<Vec<ClientMsg>, SendError> {
        check_text(text)?;
        let options = self.options.as_ref().ok_or(SendError::NotJoined)?;
        if options.disable_all && !self.admin {
            return Err(SendError::AllDisabled);
        }
        let missing = self.missing_for_all();
        if self.deferred.is_empty() && missing.is_empty() {
            return self.seal_all(text);
        }
        if self.deferred.len() >= MAX_DEFERRED {
            return Err(SendError::Busy);
        }
        self.deferred.push_back(Deferred::All {
            text: text.to_string(),
        });
        let mut out = Output {
            send: self.request_keys(missing),
            ..Output::default()
        };
        self.flush_deferred(&HashSet::new(), &mut out);
        Ok(out.send)
    }

    /// Seals the queued messages of ours, in order, as long as none of the keys they need is
    /// still on its way (a key that could not be had is left out: an `@all` is not given to
    /// that member, a direct message to it is not sent).
    fn flush_deferred(&mut self, failed: &HashSet<String>, out: &mut Output) {
        while let Some(next) = self.deferred.front() {
            let needs = match next {
                Deferred::Direct { to, .. } if self.keys.contains_key(to) => Vec::new(),
                Deferred::Direct { to, .. } => vec![to.clone()],
                Deferred::All { .. } => self.missing_for_all(),
            };
            if needs.iter().any(|k| self.asked.contains_key(k)) {
                return;
            }
            let ask: Vec<String> = needs.into_iter().filter(|k| !failed.contains(k)).collect();
            if !ask.is_empty() {
                out.send.extend(self.request_keys(ask));
                return;
            }
            let Some(next) = self.deferred.pop_front() else {
                return;
            };
            let (to, sealed) = match next {
                Deferred::Direct { to, text } => {
                    let sealed = if self.keys.contains_key(&to) {
                        self.seal_direct(&to, &text).map(|m| vec![m])
                    } else {
                        Err(SendError::NoKey(self.name_or_short(&to)))
                    };
                    (to, sealed)
                }
                Deferred::All { text } => ("@all".to_string(), self.seal_all(&text)),
            };
            match sealed {
                Ok(msgs) => out.send.extend(msgs),
                Err(e) => out.events.push(Event::NotSent {
                    to,
                    reason: e.to_string(),
                }),
            }
        }
    }

    /// Gives up on messages that waited too long for a key, and asks again for keys whose
    /// answer never came.
    pub(super) fn expire_keys(&mut self, out: &mut Output) {
        let now = Instant::now();
        while self
            .waiting
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > KEY_WAIT)
        {
            let (_, msg) = self.waiting.pop_front().expect("front exists");
            if signer(&msg).is_none() {
                let more = self.handle_now(msg);
                out.events.extend(more.events);
                continue;
            }
            out.events.push(Event::Rejected {
                from_name: sender_name(&msg),
                reason: "the sender's public key never came; the message cannot be verified".into(),
            });
        }
        let stale: Vec<String> = self
            .asked
            .iter()
            .filter(|(_, t)| now.duration_since(**t) > KEY_ASK_TTL)
            .map(|(k, _)| k.clone())
            .collect();
        if stale.is_empty() {
            return;
        }
        for k in &stale {
            self.asked.remove(k);
        }
        // Still needed (a message waits for it, or one of ours): ask again.
        let wanted: Vec<String> = stale
            .into_iter()
            .filter(|k| {
                self.waiting
                    .iter()
                    .any(|(_, w)| signer(w) == Some(k.as_str()))
                    || !self.deferred.is_empty()
            })
            .collect();
        out.send.extend(self.request_keys(wanted));
    }

    /// When the next key-related deadline falls (a waiting message or an unanswered request).
    pub(super) fn keys_due(&self) -> Option<Instant> {
        let waiting = self.waiting.front().map(|(t, _)| *t + KEY_WAIT);
        let asked = self.asked.values().min().map(|t| *t + KEY_ASK_TTL);
        [waiting, asked]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t + Duration::from_millis(1))
    }
}

//! The end-to-end side of a chat endpoint, without I/O: it turns server messages into opened,
//! verified events and text into sealed client messages. The admin's prompt, the terminal client,
//! the load generator and the tests all drive one of these.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::crypto::{self, ChainKey, CryptoError, Identity, PublicIdentity};
use crate::protocol::{
    self, AllIn, AllOut, ClientMsg, DeliveryState, DirectIn, DirectOut, ErrorCode, Member, Options,
    Presence, SenderKeyIn, SenderKeyOut, ServerMsg, Via, MAX_CHAINS_PER_SENDER, MAX_JUMP,
    MAX_SKIPPED,
};
use crate::replay::Seen;

/// `@all` messages kept while waiting for their sender key.
const MAX_PENDING: usize = 64;
/// Bytes of `@all` messages kept while waiting for their sender key (ciphertext and signature).
pub const MAX_PENDING_BYTES: usize = 1024 * 1024;
/// How long a pending message waits for its key.
const PENDING_TTL: Duration = Duration::from_secs(30);
/// How long a sender keeps the states of its recent messages to answer key requests.
const RECENT_TTL: Duration = Duration::from_secs(10);
/// Seen message ids kept at most.
const MAX_SEEN: usize = 100_000;

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// To one member (by key ID).
    Direct(String),
    /// To everyone.
    All,
}

/// An opened and verified message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Message id.
    pub id: String,
    /// Sender's timestamp (ms).
    pub ts: i64,
    /// Sender's name.
    pub from_name: String,
    /// Sender's key ID.
    pub from_key_id: String,
    /// Destination.
    pub to: Destination,
    /// Which admin endpoint sent it.
    pub via: Option<Via>,
    /// The text.
    pub text: String,
}

/// What happened, for the endpoint to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Joined: our name and the members we see.
    Welcome {
        /// Our name as the server set it.
        name: String,
        /// Whether we are the admin.
        admin: bool,
        /// Members, ourselves included.
        members: Vec<Member>,
        /// Key IDs of the members that are away.
        away: Vec<String>,
        /// Whether the membership was resumed (kept frames follow).
        resumed: bool,
    },
    /// A member came back or went away (not a leave: nobody rotates).
    Presence {
        /// Name.
        name: String,
        /// Key ID.
        key_id: String,
        /// Online or away.
        state: Presence,
    },
    /// What became of one of our direct messages.
    Delivery {
        /// The message id.
        id: String,
        /// The recipient's key ID.
        to: String,
        /// Held or delivered.
        state: DeliveryState,
    },
    /// Frames kept for us were dropped while we were away.
    Gap {
        /// How many.
        dropped: u64,
        /// How many of each type.
        kinds: std::collections::BTreeMap<String, u64>,
    },
    /// A member joined.
    Joined(Member),
    /// A member left.
    Left {
        /// Name.
        name: String,
        /// Key ID.
        key_id: String,
        /// Why.
        reason: String,
    },
    /// A message was opened and its signature verified.
    Message(Opened),
    /// A message was refused; it is never shown as a normal message.
    Rejected {
        /// Who the server says sent it.
        from_name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A server notice.
    Notice {
        /// Code.
        code: String,
        /// Text.
        text: String,
        /// When a kick or ban ends (ms since the epoch).
        until: Option<i64>,
    },
    /// The server refused something we sent.
    Error {
        /// Code.
        code: ErrorCode,
        /// Text.
        message: String,
        /// The refused message's id.
        id: Option<String>,
        /// When a ban ends (ms since the epoch).
        until: Option<i64>,
    },
    /// The server accepted a message of ours.
    Ack(String),
}

/// What handling one server message produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Things to show.
    pub events: Vec<Event>,
    /// Messages to send back (key requests and answers).
    pub send: Vec<ClientMsg>,
}

/// Why a message could not be sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Not joined yet.
    #[error("not connected yet")]
    NotJoined,
    /// No member with that name or key.
    #[error("no member named {0}")]
    UnknownMember(String),
    /// Text too long.
    #[error("message too long: {0} bytes, at most {max}", max = protocol::MAX_TEXT)]
    TooLong(usize),
    /// Empty text.
    #[error("empty message")]
    Empty,
    /// `@all` is disabled for us.
    #[error("@all is disabled on this server")]
    AllDisabled,
}

struct Peer {
    member: Member,
    key: PublicIdentity,
}

struct OwnSenderKey {
    skid: String,
    chain: ChainKey,
    n: u32,
    given: HashSet<String>,
    recent: VecDeque<(u32, ChainKey, Instant)>,
    signed: Option<(u32, String, String)>,
}

impl OwnSenderKey {
    fn fresh() -> Self {
        Self {
            skid: crypto::random_id(),
            chain: ChainKey::random(),
            n: 0,
            given: HashSet::new(),
            recent: VecDeque::new(),
            signed: None,
        }
    }
}

struct RecvChain {
    chain: ChainKey,
    n: u32,
    /// Kept keys of skipped messages, in chain order: the oldest goes first, in O(log n).
    skipped: std::collections::BTreeMap<u32, crypto::SecretKey>,
    /// Order of arrival, to drop a sender's oldest chain first.
    serial: u64,
}

/// One endpoint's end-to-end state.
pub struct Session {
    me: Arc<Identity>,
    name: Option<String>,
    admin: bool,
    offset_ms: i64,
    options: Option<Options>,
    peers: HashMap<String, Peer>,
    other_endpoint: bool,
    /// Members that are away (their connection ended; they are still members).
    away: HashSet<String>,
    own: OwnSenderKey,
    chains: HashMap<(String, String), RecvChain>,
    pending: VecDeque<(Instant, AllIn)>,
    requested: HashSet<(String, String)>,
    seen: Seen,
    chain_serial: u64,
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, String> {
    B64.decode(s).map_err(|_| "bad base64".to_string())
}

impl Session {
    /// A session for `me`, not yet joined.
    pub fn new(me: Arc<Identity>) -> Self {
        Self {
            me,
            name: None,
            admin: false,
            offset_ms: 0,
            options: None,
            peers: HashMap::new(),
            other_endpoint: false,
            away: HashSet::new(),
            own: OwnSenderKey::fresh(),
            chains: HashMap::new(),
            pending: VecDeque::new(),
            requested: HashSet::new(),
            seen: Seen::new(MAX_SEEN),
            chain_serial: 0,
        }
    }

    /// Our identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.me
    }

    /// Our key ID.
    pub fn key_id(&self) -> &str {
        self.me.public().key_id()
    }

    /// Our name, once joined.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Server options, once joined.
    pub fn options(&self) -> Option<&Options> {
        self.options.as_ref()
    }

    /// The members we see, sorted by name.
    pub fn members(&self) -> Vec<&Member> {
        let mut list: Vec<&Member> = self.peers.values().map(|p| &p.member).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Whether the member with `key_id` is away (a member still, with no connection).
    pub fn is_away(&self, key_id: &str) -> bool {
        self.away.contains(key_id)
    }

    /// The key ID of the member called `name`.
    pub fn key_id_of(&self, name: &str) -> Option<&str> {
        self.peers
            .values()
            .find(|p| p.member.name == name)
            .map(|p| p.member.key_id.as_str())
    }

    /// The name of the member with `key_id`.
    pub fn name_of(&self, key_id: &str) -> Option<&str> {
        self.peers.get(key_id).map(|p| p.member.name.as_str())
    }

    /// The current time on the server's clock.
    pub fn now(&self) -> i64 {
        protocol::now_ms().saturating_add(self.offset_ms)
    }

    /// Answers a challenge: the `join` message with its proof of possession.
    pub fn answer_challenge(&mut self, nonce: &str, server_time: i64, name: &str) -> ClientMsg {
        self.offset_ms = server_time.saturating_sub(protocol::now_ms());
        let signature = self
            .me
            .sign(&protocol::join_bytes(nonce, name, self.key_id()));
        ClientMsg::Join {
            name: name.to_string(),
            public_key: b64(self.me.public().spki_der()),
            signature: b64(&signature),
            resume: None,
        }
    }

    /// Marks this session as joined directly, without a challenge: for the server's own endpoint.
    pub fn join_local(&mut self, name: &str, members: Vec<Member>, options: Options) -> Output {
        self.welcome(name.to_string(), true, members, Vec::new(), false, options)
    }

    /// Handles one message from the server.
    pub fn handle(&mut self, msg: ServerMsg) -> Output {
        match msg {
            ServerMsg::Challenge { .. } => Output::default(),
            ServerMsg::Welcome {
                you,
                members,
                away,
                resumed,
                options,
                time,
                ..
            } => {
                self.offset_ms = time.saturating_sub(protocol::now_ms());
                self.welcome(you.name, you.admin, members, away, resumed, options)
            }
            ServerMsg::Joined { member } => self.joined(member),
            ServerMsg::Left {
                key_id,
                name,
                reason,
            } => self.left(key_id, name, reason.as_str().to_string()),
            ServerMsg::Direct(d) => self.open_direct(d),
            ServerMsg::All(a) => self.receive_all(a),
            ServerMsg::SenderKey(k) => self.receive_sender_key(k),
            ServerMsg::KeyRequest { from, skid, n } => {
                self.answer_key_request(&from.key_id, &skid, n)
            }
            ServerMsg::Presence {
                key_id,
                name,
                state,
            } => {
                match state {
                    Presence::Away => self.away.insert(key_id.clone()),
                    Presence::Online => self.away.remove(&key_id),
                };
                single(Event::Presence {
                    name,
                    key_id,
                    state,
                })
            }
            ServerMsg::Delivery { id, to, state } => single(Event::Delivery { id, to, state }),
            ServerMsg::Gap { dropped, kinds, .. } => single(Event::Gap { dropped, kinds }),
            ServerMsg::Ack { id } => single(Event::Ack(id)),
            ServerMsg::Notice { code, text, until } => single(Event::Notice {
                code: code.as_str().to_string(),
                text,
                until,
            }),
            ServerMsg::Error {
                code,
                message,
                id,
                until,
            } => single(Event::Error {
                code,
                message,
                id,
                until,
            }),
        }
    }

    fn welcome(
        &mut self,
        name: String,
        admin: bool,
        members: Vec<Member>,
        away: Vec<String>,
        resumed: bool,
        options: Options,
    ) -> Output {
        self.name = Some(name.clone());
        self.admin = admin;
        // The admin's web seat always has the server's own endpoint beside it.
        self.other_endpoint = admin && members.iter().any(|m| m.key_id == self.key_id());
        self.options = Some(options);
        let before: Vec<String> = self.peers.keys().cloned().collect();
        self.peers.clear();
        for m in &members {
            self.add_peer(m.clone());
        }
        // A new membership: everyone forgot our old sender key. A resumed one: whoever we knew
        // and is gone left while we were away, and must not open what comes next.
        let someone_left = before.iter().any(|k| !self.peers.contains_key(k));
        if !resumed || someone_left {
            self.own = OwnSenderKey::fresh();
        }
        if !resumed {
            self.chains.clear();
        } else {
            self.chains
                .retain(|(sender, _), _| self.peers.contains_key(sender));
        }
        self.away = away.iter().cloned().collect();
        single(Event::Welcome {
            name,
            admin,
            members,
            away,
            resumed,
        })
    }

    fn add_peer(&mut self, member: Member) -> bool {
        let Ok(key) = unb64(&member.public_key)
            .map_err(|_| CryptoError::NotRsaPublicKey)
            .and_then(|der| PublicIdentity::from_spki_der(&der))
        else {
            return false;
        };
        if key.key_id() != member.key_id {
            return false;
        }
        self.peers
            .insert(member.key_id.clone(), Peer { member, key });
        true
    }

    fn joined(&mut self, member: Member) -> Output {
        // A known key joining again (the admin's web seat) must be given our sender key again.
        self.own.given.remove(&member.key_id);
        self.away.remove(&member.key_id);
        if member.key_id == self.key_id() {
            self.other_endpoint = true;
        }
        if !self.add_peer(member.clone()) {
            return single(Event::Rejected {
                from_name: member.name,
                reason: "the server announced an unusable public key".into(),
            });
        }
        single(Event::Joined(member))
    }

    fn left(&mut self, key_id: String, name: String, reason: String) -> Output {
        self.away.remove(&key_id);
        if key_id == self.key_id() {
            self.other_endpoint = false;
        } else {
            self.peers.remove(&key_id);
        }
        self.chains.retain(|(sender, _), _| *sender != key_id);
        // Whoever leaves must not be able to open what comes next.
        self.own = OwnSenderKey::fresh();
        single(Event::Left {
            name,
            key_id,
            reason,
        })
    }

    /// Seals a direct message for the member with `to_key_id`.
    pub fn seal_direct(&mut self, to_key_id: &str, text: &str) -> Result<ClientMsg, SendError> {
        check_text(text)?;
        if self.name.is_none() {
            return Err(SendError::NotJoined);
        }
        let recipient = self
            .peers
            .get(to_key_id)
            .ok_or_else(|| SendError::UnknownMember(to_key_id.to_string()))?;
        let key = zeroize::Zeroizing::new(crypto::random_bytes::<{ crypto::KEY_LEN }>());
        let (iv, ct) = crypto::aes_seal(&key, text.as_bytes());
        let (iv, ciphertext) = (b64(&iv), b64(&ct));
        let mut keys = std::collections::BTreeMap::new();
        keys.insert(
            to_key_id.to_string(),
            b64(&recipient.key.wrap(key.as_slice())),
        );
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
        let options = self.options.as_ref().ok_or(SendError::NotJoined)?;
        if options.disable_all && !self.admin {
            return Err(SendError::AllDisabled);
        }
        let lacking: Vec<String> = self
            .peers
            .keys()
            .filter(|k| {
                (*k != self.key_id() || self.other_endpoint) && !self.own.given.contains(*k)
            })
            .cloned()
            .collect();
        let mut out = self.distribution(&lacking, self.own.n, self.own.chain.clone());
        self.own.given.extend(lacking);
        let (n, chain) = (self.own.n, self.own.chain.clone());
        let key = chain.message_key();
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
        self.own.chain = chain.next();
        self.own.n += 1;
        let now = Instant::now();
        self.own.recent.push_back((n, chain, now));
        while self.own.recent.front().is_some_and(|(_, _, t)| {
            now.duration_since(*t) > RECENT_TTL || self.own.recent.len() > 32
        }) {
            self.own.recent.pop_front();
        }
        Ok(out)
    }

    fn distribution(&mut self, to: &[String], n: u32, chain: ChainKey) -> Vec<ClientMsg> {
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
                        self.peers
                            .get(k)
                            .map(|p| (k.clone(), b64(&p.key.wrap(chain.bytes()))))
                    })
                    .collect();
                ClientMsg::SenderKey(SenderKeyOut {
                    skid: self.own.skid.clone(),
                    n,
                    commitment: commitment.clone(),
                    signature: signature.clone(),
                    keys,
                })
            })
            .collect()
    }

    fn answer_key_request(&mut self, from: &str, skid: &str, n: u32) -> Output {
        if skid != self.own.skid || !self.peers.contains_key(from) {
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

    fn check_fresh(&mut self, id: &str, ts: i64) -> Result<(), String> {
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

    fn sender_key(&self, key_id: &str) -> Result<&PublicIdentity, String> {
        self.peers
            .get(key_id)
            .map(|p| &p.key)
            .ok_or_else(|| "sender is not a known member".to_string())
    }

    fn open_direct(&mut self, d: DirectIn) -> Output {
        let from_name = d.from.name.clone();
        match self.try_open_direct(d) {
            Ok(opened) => single(Event::Message(opened)),
            Err(reason) => single(Event::Rejected { from_name, reason }),
        }
    }

    fn try_open_direct(&mut self, d: DirectIn) -> Result<Opened, String> {
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

    fn receive_all(&mut self, a: AllIn) -> Output {
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

    fn park(&mut self, a: AllIn) -> Output {
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
            });
        }
        self.pending.push_back((Instant::now(), a));
        out
    }

    /// When the oldest pending `@all` message is due to be given up on: call
    /// [`Session::expire_pending`] then (nothing to do before, so no need to wake).
    pub fn pending_due(&self) -> Option<Instant> {
        self.pending
            .front()
            .map(|(t, _)| *t + PENDING_TTL + Duration::from_millis(1))
    }

    /// Reports pending `@all` messages whose sender key never came. Call now and then.
    pub fn expire_pending(&mut self) -> Output {
        let mut out = Output::default();
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

    fn open_all(&mut self, a: AllIn) -> Result<Opened, String> {
        let chain_id = (a.from.key_id.clone(), a.skid.clone());
        let recv = self
            .chains
            .get_mut(&chain_id)
            .ok_or_else(|| "no sender key".to_string())?;
        // The last index has no next chain state: refused rather than overflow the chain.
        if a.n == u32::MAX {
            return Err("chain index at its end".into());
        }
        let key = if a.n < recv.n {
            recv.skipped
                .remove(&a.n)
                .ok_or_else(|| "message key already used or too old".to_string())?
        } else {
            if a.n - recv.n > MAX_JUMP {
                return Err("chain index jumps too far ahead".into());
            }
            while recv.n < a.n {
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

    fn receive_sender_key(&mut self, k: SenderKeyIn) -> Output {
        let from_name = k.from.name.clone();
        match self.try_sender_key(&k) {
            Ok(()) => self.release_pending(&k.from.key_id, &k.skid),
            Err(reason) => single(Event::Rejected {
                from_name,
                reason: format!("sender key refused: {reason}"),
            }),
        }
    }

    fn try_sender_key(&mut self, k: &SenderKeyIn) -> Result<(), String> {
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

    fn release_pending(&mut self, sender: &str, skid: &str) -> Output {
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

fn single(event: Event) -> Output {
    Output {
        events: vec![event],
        send: Vec::new(),
    }
}

fn check_text(text: &str) -> Result<(), SendError> {
    if text.trim().is_empty() {
        return Err(SendError::Empty);
    }
    if text.len() > protocol::MAX_TEXT {
        return Err(SendError::TooLong(text.len()));
    }
    Ok(())
}

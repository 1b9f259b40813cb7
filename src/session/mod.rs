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

mod files;
mod group_keys;
mod groups;
mod keys;
mod open;
mod seal;

pub use files::{FileEvent, FileMeta, OutgoingFile, MAX_INCOMING};
pub use groups::{GroupEvent, GroupState};
pub use keys::{KEY_ASK_TTL, MAX_DEFERRED, MAX_WAITING, MAX_WAITING_BYTES};

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
    /// To a group (by id).
    Group(String),
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
    /// Something about a file (see [`FileEvent`]).
    File(FileEvent),
    /// Something about a group (see [`GroupEvent`]).
    Group(GroupEvent),
    /// A file of ours to everyone was accepted, but these away members (names) cannot get it.
    FileSkipped {
        /// The file id.
        id: String,
        /// Their names.
        names: Vec<String>,
    },
    /// A message queued while the keys it needed were fetched could not be sent.
    NotSent {
        /// Whom it was for (a key ID, or `@all`).
        to: String,
        /// Why.
        reason: String,
    },
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
    /// The recipient's public key is not known yet: fetch it with `get_keys` first.
    #[error("the public key of {0} is not known yet")]
    NoKey(String),
    /// Too many messages already wait for keys.
    #[error("too many messages are waiting for public keys")]
    Busy,
    /// No group by that name or id.
    #[error("no group {0}")]
    UnknownGroup(String),
    /// Only the group's owner may do this.
    #[error("only the group's owner may do this")]
    NotOwner,
    /// A group name must be 1 to 64 bytes (and a topic at most 256).
    #[error("a group's name is 1 to 64 bytes, its topic at most 256")]
    BadGroupName,
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
    peers: HashMap<String, Member>,
    /// Public keys fetched and checked against their key IDs, parsed once.
    keys: HashMap<String, PublicIdentity>,
    /// Key IDs asked for with `get_keys` and not answered yet, with when.
    asked: HashMap<String, Instant>,
    /// Messages waiting for their sender's public key, in order of arrival.
    waiting: VecDeque<(Instant, ServerMsg)>,
    /// Messages of ours waiting for their recipients' public keys, in order.
    deferred: VecDeque<keys::Deferred>,
    other_endpoint: bool,
    /// Members that are away (their connection ended; they are still members).
    away: HashSet<String>,
    own: OwnSenderKey,
    chains: HashMap<(String, String), RecvChain>,
    pending: VecDeque<(Instant, AllIn)>,
    requested: HashSet<(String, String)>,
    seen: Seen,
    chain_serial: u64,
    incoming: HashMap<String, files::Incoming>,
    limits: Option<protocol::Limits>,
    groups: HashMap<String, GroupState>,
    /// The (group, epoch) of each receiving chain that is a group's.
    group_chains: HashMap<(String, String), (String, u32)>,
    group_pending: VecDeque<protocol::GroupIn>,
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
        let own_key = (me.public().key_id().to_string(), me.public().clone());
        Self {
            me,
            name: None,
            admin: false,
            offset_ms: 0,
            options: None,
            peers: HashMap::new(),
            keys: HashMap::from([own_key]),
            asked: HashMap::new(),
            waiting: VecDeque::new(),
            deferred: VecDeque::new(),
            other_endpoint: false,
            away: HashSet::new(),
            own: OwnSenderKey::fresh(),
            chains: HashMap::new(),
            pending: VecDeque::new(),
            requested: HashSet::new(),
            seen: Seen::new(MAX_SEEN),
            chain_serial: 0,
            incoming: HashMap::new(),
            limits: None,
            groups: HashMap::new(),
            group_chains: HashMap::new(),
            group_pending: VecDeque::new(),
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

    /// The server's limits, once welcomed.
    pub fn limits(&self) -> Option<&protocol::Limits> {
        self.limits.as_ref()
    }

    /// The members we see, sorted by name.
    pub fn members(&self) -> Vec<&Member> {
        let mut list: Vec<&Member> = self.peers.values().collect();
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
            .find(|p| p.name == name)
            .map(|p| p.key_id.as_str())
    }

    /// The name of the member with `key_id`.
    pub fn name_of(&self, key_id: &str) -> Option<&str> {
        self.peers.get(key_id).map(|p| p.name.as_str())
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

    /// Handles one message from the server. A message whose sender's public key is not known
    /// yet waits for it (and asks for it); what waited comes out when the `keys` answer does.
    pub fn handle(&mut self, msg: ServerMsg) -> Output {
        if self.must_wait(&msg) {
            self.wait_for_key(msg)
        } else {
            self.handle_now(msg)
        }
    }

    /// Handles one message whose sender's key, if it needs one, is known.
    fn handle_now(&mut self, msg: ServerMsg) -> Output {
        match msg {
            ServerMsg::Challenge { .. } => Output::default(),
            ServerMsg::Welcome {
                you,
                members,
                away,
                resumed,
                options,
                time,
                limits,
                ..
            } => {
                self.limits = Some(limits);
                self.offset_ms = time.saturating_sub(protocol::now_ms());
                self.welcome(you.name, you.admin, members, away, resumed, options)
            }
            ServerMsg::Joined { member, members } => {
                let mut out = Output::default();
                for m in member.into_iter().chain(members) {
                    out.events.extend(self.joined(m).events);
                }
                out
            }
            ServerMsg::Left {
                key_id,
                name,
                reason,
            } => self.left(key_id, name, reason.as_str().to_string()),
            ServerMsg::Direct(d) => self.open_direct(d),
            ServerMsg::All(a) => self.receive_all(a),
            ServerMsg::SenderKey(mut k) => match k.group.take() {
                Some(at) => self.receive_group_key(k, at),
                None => self.receive_sender_key(k),
            },
            ServerMsg::KeyRequest {
                from,
                skid,
                n,
                group: None,
            } => self.answer_key_request(&from.key_id, &skid, n),
            ServerMsg::KeyRequest {
                from,
                skid,
                n,
                group: Some(group),
            } => self.answer_group_request(&from.key_id, &group, &skid, n),
            ServerMsg::GroupRoster { roster, .. } => self.receive_roster(roster),
            ServerMsg::GroupLeft {
                group,
                key_id,
                reason,
            } => self.group_left(&group, &key_id, reason),
            ServerMsg::GroupDeleted { group, by } => self.group_deleted(group, by),
            ServerMsg::Group(m) => self.receive_group(m),
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
            ServerMsg::Ack {
                id,
                skipped: Some(skipped),
            } if !skipped.is_empty() => {
                let names = skipped
                    .iter()
                    .map(|k| self.name_of(k).unwrap_or(k).to_string())
                    .collect();
                Output {
                    events: vec![
                        Event::FileSkipped {
                            id: id.clone(),
                            names,
                        },
                        Event::Ack(id),
                    ],
                    send: Vec::new(),
                }
            }
            ServerMsg::Ack { id, .. } => single(Event::Ack(id)),
            ServerMsg::File(f) => self.receive_file(f),
            ServerMsg::Chunk(c) => self.receive_chunk(c),
            ServerMsg::FileCancel { file, by, reason } => self.file_cancelled(file, by, reason),
            ServerMsg::ChunkAck { file, i } => {
                single(Event::File(FileEvent::ChunkAck { id: file, i }))
            }
            ServerMsg::Keys { keys, unknown } => self.keys_answer(keys, unknown),
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
            } => {
                let mut out = id
                    .as_deref()
                    .map(|g| self.group_refused(g))
                    .unwrap_or_default();
                out.events.push(Event::Error {
                    code,
                    message,
                    id,
                    until,
                });
                out
            }
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
            self.peers.insert(m.key_id.clone(), m.clone());
        }
        let me = self.key_id().to_string();
        self.keys
            .retain(|k, _| *k == me || self.peers.contains_key(k));
        // A new membership: everyone forgot our old sender key. A resumed one: whoever we knew
        // and is gone left while we were away, and must not open what comes next.
        let someone_left = before.iter().any(|k| !self.peers.contains_key(k));
        if !resumed || someone_left {
            self.own = OwnSenderKey::fresh();
        }
        if !resumed {
            self.chains.clear();
            self.groups.clear();
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

    fn joined(&mut self, member: Member) -> Output {
        // A known key joining again (the admin's web seat) must be given our sender key again.
        self.own.given.remove(&member.key_id);
        self.away.remove(&member.key_id);
        if member.key_id == self.key_id() {
            self.other_endpoint = true;
        }
        self.peers.insert(member.key_id.clone(), member.clone());
        single(Event::Joined(member))
    }

    fn left(&mut self, key_id: String, name: String, reason: String) -> Output {
        self.away.remove(&key_id);
        if key_id == self.key_id() {
            self.other_endpoint = false;
        } else {
            self.peers.remove(&key_id);
            self.keys.remove(&key_id);
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

//! Wire types of protocol v2 (`docs/PROTOCOL.md`), their limits, and the canonical bytes that are
//! signed. Everything a client and the server exchange is one of these JSON objects.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Protocol version spoken by this build.
pub const VERSION: u32 = 2;
/// Receiving chains an endpoint keeps per sender: a member who keeps sending new sender keys
/// cannot make others hold an unbounded number of them.
pub const MAX_CHAINS_PER_SENDER: usize = 4;
/// Skipped message keys an endpoint keeps per receiving chain.
pub const MAX_SKIPPED: usize = 1000;
/// Largest forward jump an endpoint follows in a receiving chain.
pub const MAX_JUMP: u32 = 2000;
/// Largest WebSocket message accepted, in bytes.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Largest text before encryption, in bytes.
pub const MAX_TEXT: usize = 32 * 1024;
/// Longest `ciphertext` field: base64 of the largest text and its 16-byte tag.
pub const MAX_CIPHERTEXT_B64: usize = (MAX_TEXT + 16).div_ceil(3) * 4;
/// Longest `signature` or wrapped key: base64 of one 4096-bit modulus.
pub const MAX_RSA_B64: usize = 512usize.div_ceil(3) * 4;
/// Largest number of wrapped keys in one `sender_key` message.
pub const MAX_SENDER_KEY_ENTRIES: usize = 256;
/// How far a message timestamp may be from the server's clock, in milliseconds.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// How long message ids are remembered to refuse replays, in milliseconds.
pub const SEEN_ID_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Longest kick, in minutes (a week; a ban has no end).
pub const MAX_KICK_MINUTES: u64 = 7 * 24 * 60;
/// Minutes a kick lasts unless the admin says otherwise.
pub const DEFAULT_KICK_MINUTES: u64 = 10;
/// Words no user may take as a name.
pub const RESERVED_NAMES: [&str; 5] = ["admin", "all", "everyone", "server", "system"];

/// A member as listed to clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Display name.
    pub name: String,
    /// Full key ID.
    pub key_id: String,
    /// SPKI DER, base64.
    pub public_key: String,
    /// Whether this is the admin.
    pub admin: bool,
}

/// The sender of a relayed message, filled in by the server from the authenticated session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sender {
    /// Sender's name.
    pub name: String,
    /// Sender's key ID.
    pub key_id: String,
}

/// Server options a client needs to know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Options {
    /// The admin's name.
    pub admin_name: String,
    /// `@all` is off for this client.
    pub disable_all: bool,
    /// Users see and reach only the admin.
    pub only_admin: bool,
    /// Whether clients may keep their identity and state on the device (`--no-remember` off).
    pub remember: bool,
}

/// Limits a client must respect.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket message.
    pub max_message: usize,
    /// Largest text before encryption.
    pub max_text: usize,
    /// Sustained messages per second.
    pub rate_per_sec: u32,
    /// Burst of messages above the rate.
    pub burst: u32,
    /// Bytes of frames the server keeps for one member until acknowledged.
    pub mailbox_bytes: usize,
    /// Seconds an away member is kept before it leaves.
    pub away_grace_secs: u64,
    /// Smallest member key accepted, in bits.
    pub min_key_bits: usize,
    /// Largest member key accepted, in bits.
    pub max_key_bits: usize,
    /// Receiving chains a client keeps per sender (older ones are dropped first).
    pub max_chains_per_sender: usize,
    /// Skipped message keys a client keeps per receiving chain.
    pub max_skipped: usize,
    /// Largest forward jump of a chain index a client follows.
    pub max_jump: u32,
}

impl Limits {
    /// The limits of this build, with the server's configurable ones.
    pub fn new(rate_per_sec: u32, burst: u32, mailbox_bytes: usize, away_grace_secs: u64) -> Self {
        Self {
            max_message: MAX_MESSAGE,
            max_text: MAX_TEXT,
            rate_per_sec,
            burst,
            mailbox_bytes,
            away_grace_secs,
            min_key_bits: crate::crypto::MIN_RSA_BITS,
            max_key_bits: crate::crypto::MAX_RSA_BITS,
            max_chains_per_sender: MAX_CHAINS_PER_SENDER,
            max_skipped: MAX_SKIPPED,
            max_jump: MAX_JUMP,
        }
    }
}

/// Which of the admin's endpoints sent a message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The command prompt on the server's terminal.
    Prompt,
    /// The admin's web seat.
    Web,
}

/// Messages a client sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Join with a name, a public key and a proof of possession over the challenge.
    Join {
        /// Chosen name.
        name: String,
        /// SPKI DER, base64.
        public_key: String,
        /// Signature over the join proof bytes, base64.
        signature: String,
        /// Resume a membership: replay what was kept after `since`.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        resume: Option<Resume>,
    },
    /// Acknowledges every sequenced frame up to `seq` (cumulative).
    Ack {
        /// The highest `seq` received, in order, with nothing missing before it.
        seq: u64,
    },
    /// Leaves for good: the membership ends now and everyone rotates sender keys.
    Leave {},
    /// An admin command from the admin's web seat (`/kick`, `/ban`, `/unban`, `/bans`).
    Moderate(ModerateIn),
    /// A direct message to one member.
    Direct(DirectOut),
    /// An `@all` message sealed under the sender's sender key.
    All(AllOut),
    /// The sender's current chain state wrapped for some members.
    SenderKey(SenderKeyOut),
    /// A request for a member's sender key.
    KeyRequest {
        /// The sender whose key is wanted.
        to: String,
        /// The sender key id.
        skid: String,
        /// The chain index of the message that could not be opened.
        n: u32,
    },
}

/// What the admin's web seat asks of the server about members.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModerateAction {
    /// Remove a member and refuse its key for `minutes` (default 10).
    Kick,
    /// Remove a member and refuse its key until lifted.
    Ban,
    /// Lift a kick or a ban.
    Unban,
    /// List the kicks and bans in force.
    Bans,
}

/// A `moderate` message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModerateIn {
    /// What to do.
    pub action: ModerateAction,
    /// The member's name (not for `bans`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// For `kick`: minutes, 1 to 10080 (default 10).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub minutes: Option<u64>,
}

/// Why a member left (`left.reason`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// It sent `leave`.
    Left,
    /// It was away longer than the grace period.
    Expired,
    /// The admin kicked it (for some minutes).
    Kicked,
    /// The admin banned it (until lifted).
    Banned,
    /// Its key left the allow list.
    Removed,
}

impl LeftReason {
    /// The reason as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Expired => "expired",
            Self::Kicked => "kicked",
            Self::Banned => "banned",
            Self::Removed => "removed",
        }
    }
}

/// What a `notice` is about.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoticeCode {
    /// The server is about to close with 1001.
    ShuttingDown,
    /// A newer connection took over (close 4006 follows).
    Replaced,
    /// The admin kicked this member (close 4000 follows; `until` says until when).
    Kicked,
    /// The admin banned this member (close 4000 follows).
    Banned,
    /// The answer to `moderate`.
    Moderated,
    /// The admin's prompt fell behind.
    PromptBehind,
    /// A code this build does not know (from a newer server).
    #[serde(other)]
    Other,
}

impl NoticeCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShuttingDown => "shutting_down",
            Self::Replaced => "replaced",
            Self::Kicked => "kicked",
            Self::Banned => "banned",
            Self::Moderated => "moderated",
            Self::PromptBehind => "prompt_behind",
            Self::Other => "other",
        }
    }
}

/// Where a resumed membership picks up.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resume {
    /// The last `seq` the client received (0: none).
    pub since: u64,
}

/// A member's presence.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// At least one endpoint is connected.
    Online,
    /// No endpoint; kept (with a mailbox) for the grace period.
    Away,
}

/// What the server knows of a direct message's delivery.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// The recipient is away: the message waits in its mailbox.
    Held,
    /// The recipient's endpoint acknowledged the message.
    Delivered,
}

/// A direct message as the client sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectOut {
    /// Message id, 32 hex.
    pub id: String,
    /// Timestamp, ms since the epoch.
    pub ts: i64,
    /// Recipient key ID.
    pub to: String,
    /// AES-GCM IV, base64.
    pub iv: String,
    /// Ciphertext with tag, base64.
    pub ciphertext: String,
    /// The AES key wrapped for the recipient and for the sender, by key ID.
    pub keys: BTreeMap<String, String>,
    /// Signature over the direct-message bytes, base64.
    pub signature: String,
}

/// An `@all` message as the client sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AllOut {
    /// Message id, 32 hex.
    pub id: String,
    /// Timestamp, ms since the epoch.
    pub ts: i64,
    /// Sender key id.
    pub skid: String,
    /// Chain index.
    pub n: u32,
    /// AES-GCM IV, base64.
    pub iv: String,
    /// Ciphertext with tag, base64.
    pub ciphertext: String,
    /// Signature over the `@all` bytes, base64.
    pub signature: String,
}

/// A sender-key distribution as the client sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SenderKeyOut {
    /// Sender key id.
    pub skid: String,
    /// Chain index of the distributed state.
    pub n: u32,
    /// SHA-256 of the chain key, hex.
    pub commitment: String,
    /// Signature over the sender-key bytes, base64.
    pub signature: String,
    /// The chain key wrapped for each member, by key ID.
    pub keys: BTreeMap<String, String>,
}

/// Messages the server sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message of every connection.
    Challenge {
        /// Protocol version.
        version: u32,
        /// 32 random bytes, base64.
        nonce: String,
        /// The server's clock, ms since the epoch.
        time: i64,
    },
    /// The join was accepted.
    Welcome {
        /// The joined member itself.
        you: Member,
        /// Everyone this member can see, itself included, away members too.
        members: Vec<Member>,
        /// Key IDs of the listed members that are away.
        away: Vec<String>,
        /// Whether the membership was resumed: kept frames after `resume.since` follow.
        resumed: bool,
        /// The last `seq` given to this member before this welcome.
        seq: u64,
        /// Server options.
        options: Options,
        /// Limits.
        limits: Limits,
        /// The server's clock, ms since the epoch.
        time: i64,
    },
    /// Someone joined (or the admin's web seat connected).
    Joined {
        /// Who.
        member: Member,
    },
    /// Someone went away.
    Left {
        /// Their key ID.
        key_id: String,
        /// Their name.
        name: String,
        /// Why.
        reason: LeftReason,
    },
    /// A member's endpoints came or went (away is not leaving: keep your sender keys).
    Presence {
        /// Their key ID.
        key_id: String,
        /// Their name.
        name: String,
        /// Online or away.
        state: Presence,
    },
    /// What became of one of your direct messages.
    Delivery {
        /// The message id.
        id: String,
        /// The recipient's key ID.
        to: String,
        /// Held or delivered.
        state: DeliveryState,
    },
    /// Frames kept for you were dropped (a mailbox bound was crossed).
    Gap {
        /// How many frames were dropped.
        dropped: u64,
        /// How many of each `type`.
        kinds: BTreeMap<String, u64>,
        /// The first dropped `seq`.
        first_seq: u64,
        /// The last dropped `seq`.
        last_seq: u64,
    },
    /// A direct message for this client.
    Direct(DirectIn),
    /// An `@all` message.
    All(AllIn),
    /// A sender key for this client.
    SenderKey(SenderKeyIn),
    /// A member asks for this client's sender key.
    KeyRequest {
        /// Who asks.
        from: Sender,
        /// Sender key id asked for.
        skid: String,
        /// Chain index of the message it could not open.
        n: u32,
    },
    /// The client's message was accepted and routed.
    Ack {
        /// Its id.
        id: String,
    },
    /// A notice from the server.
    Notice {
        /// What it is about.
        code: NoticeCode,
        /// Human text.
        text: String,
        /// For `kicked` and `banned`: when the ban ends (ms since the epoch), if it does.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        until: Option<i64>,
    },
    /// The client's last message was refused.
    Error {
        /// Machine-readable code (see `ErrorCode`).
        code: ErrorCode,
        /// Human text.
        message: String,
        /// The refused message's id, if it had one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        /// For `banned`: when the ban ends (ms since the epoch), if it does.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        until: Option<i64>,
    },
}

/// `welcome` as the server writes it: the members, kept encoded once each, are embedded as they
/// are, so a join costs no re-encoding of the room. Same JSON as [`ServerMsg::Welcome`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "welcome")]
pub struct WelcomeOut<'a> {
    /// The joined member itself.
    pub you: &'a RawValue,
    /// Everyone this member can see, itself included, away members too.
    pub members: Vec<&'a RawValue>,
    /// Key IDs of the listed members that are away.
    pub away: Vec<&'a str>,
    /// Whether the membership was resumed.
    pub resumed: bool,
    /// The last `seq` given to this member before this welcome.
    pub seq: u64,
    /// Server options.
    pub options: &'a Options,
    /// Limits.
    pub limits: &'a Limits,
    /// The server's clock, ms since the epoch.
    pub time: i64,
}

/// `joined` as the server writes it, with the member kept encoded. Same JSON as
/// [`ServerMsg::Joined`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "joined")]
pub struct JoinedOut<'a> {
    /// Who.
    pub member: &'a RawValue,
}

/// A member encoded once, to embed in `welcome` and `joined`.
pub fn encoded_member(m: &Member) -> Box<RawValue> {
    RawValue::from_string(serde_json::to_string(m).expect("members encode"))
        .expect("a member encodes to JSON")
}

/// A relayed direct message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirectIn {
    /// Message id.
    pub id: String,
    /// Sender's timestamp.
    pub ts: i64,
    /// Sender, from the server.
    pub from: Sender,
    /// Recipient key ID.
    pub to: String,
    /// IV, base64.
    pub iv: String,
    /// Ciphertext, base64.
    pub ciphertext: String,
    /// The AES key wrapped for this recipient, base64.
    pub key: String,
    /// Signature, base64.
    pub signature: String,
    /// Which admin endpoint sent it, for messages from the admin.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub via: Option<Via>,
}

/// A relayed `@all` message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AllIn {
    /// Message id.
    pub id: String,
    /// Sender's timestamp.
    pub ts: i64,
    /// Sender, from the server.
    pub from: Sender,
    /// Sender key id.
    pub skid: String,
    /// Chain index.
    pub n: u32,
    /// IV, base64.
    pub iv: String,
    /// Ciphertext, base64.
    pub ciphertext: String,
    /// Signature, base64.
    pub signature: String,
    /// Which admin endpoint sent it, for messages from the admin.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub via: Option<Via>,
}

/// A relayed sender-key distribution, holding only this recipient's wrapped key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SenderKeyIn {
    /// Sender, from the server.
    pub from: Sender,
    /// Sender key id.
    pub skid: String,
    /// Chain index of the distributed state.
    pub n: u32,
    /// SHA-256 of the chain key, hex.
    pub commitment: String,
    /// Signature over the sender-key bytes, base64.
    pub signature: String,
    /// The chain key wrapped for this recipient, base64.
    pub wrapped: String,
}

/// Error codes of `error` messages; see the table in `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a JSON object with the fields its type needs.
    BadJson,
    /// Unknown `type`.
    UnknownType,
    /// A field has the wrong encoding or length.
    BadField,
    /// A binary WebSocket message.
    BinaryUnsupported,
    /// Anything but `join` before `welcome`.
    NotJoined,
    /// A second `join`.
    AlreadyJoined,
    /// The name breaks the rule.
    BadName,
    /// Another connected user has the name.
    NameTaken,
    /// The public key is unusable.
    BadKey,
    /// The join signature does not verify.
    BadProof,
    /// This key is banned (kicked for a while, or banned by the admin).
    Banned,
    /// The allow list does not list this key.
    NotAllowed,
    /// No `join` in time.
    JoinTimeout,
    /// Too many join attempts from this address, or from everyone, right now.
    TooManyJoins,
    /// The recipient is not connected or not visible.
    UnknownRecipient,
    /// The destination is not allowed for this client.
    Forbidden,
    /// `direct.keys` is not exactly the recipient and the sender.
    BadKeys,
    /// The id was seen recently.
    DuplicateId,
    /// The timestamp is too far from the server's clock.
    Stale,
    /// Too many messages per second.
    RateLimited,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::UnknownType => "unknown_type",
            Self::BadField => "bad_field",
            Self::BinaryUnsupported => "binary_unsupported",
            Self::NotJoined => "not_joined",
            Self::AlreadyJoined => "already_joined",
            Self::BadName => "bad_name",
            Self::NameTaken => "name_taken",
            Self::BadKey => "bad_key",
            Self::BadProof => "bad_proof",
            Self::Banned => "banned",
            Self::NotAllowed => "not_allowed",
            Self::JoinTimeout => "join_timeout",
            Self::TooManyJoins => "too_many_joins",
            Self::UnknownRecipient => "unknown_recipient",
            Self::Forbidden => "forbidden",
            Self::BadKeys => "bad_keys",
            Self::DuplicateId => "duplicate_id",
            Self::Stale => "stale",
            Self::RateLimited => "rate_limited",
        }
    }

    /// Whether the server closes the connection after this error.
    pub fn closes(self) -> bool {
        matches!(
            self,
            Self::BadName
                | Self::NameTaken
                | Self::BadKey
                | Self::BadProof
                | Self::Banned
                | Self::NotAllowed
                | Self::JoinTimeout
                | Self::TooManyJoins
        )
    }
}

/// WebSocket close codes used by the server.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// WebSocket protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// Kicked by the admin.
    pub const KICKED: u16 = 4000;
    /// Removed from the allow list.
    pub const REMOVED: u16 = 4001;
    /// The outgoing queue overflowed.
    pub const TOO_SLOW: u16 = 4002;
    /// Nothing received for too long.
    pub const IDLE: u16 = 4003;
    /// The join was refused.
    pub const JOIN_REFUSED: u16 = 4005;
    /// A newer connection with the same key took over.
    pub const REPLACED: u16 = 4006;
    /// The panic stop: the server closed the chat and erased its state.
    pub const PANIC: u16 = 4007;
}

fn canonical(fields: &[&str]) -> Vec<u8> {
    fields.join("\n").into_bytes()
}

/// The bytes a join proof signs.
///
/// ```
/// let b = dyspatcher::protocol::join_bytes("Tm9uY2U=", "alice", "ab12");
/// assert_eq!(b, b"dyspatcher-v1-join\nTm9uY2U=\nalice\nab12");
/// ```
pub fn join_bytes(nonce: &str, name: &str, key_id: &str) -> Vec<u8> {
    canonical(&["dyspatcher-v1-join", nonce, name, key_id])
}

/// The bytes a direct message signs.
///
/// ```
/// let b = dyspatcher::protocol::direct_bytes("id1", 5, "from", "to", "iv", "ct");
/// assert_eq!(b, b"dyspatcher-v1-direct\nid1\n5\nfrom\nto\niv\nct");
/// ```
pub fn direct_bytes(id: &str, ts: i64, from: &str, to: &str, iv: &str, ct: &str) -> Vec<u8> {
    canonical(&[
        "dyspatcher-v1-direct",
        id,
        &ts.to_string(),
        from,
        to,
        iv,
        ct,
    ])
}

/// The bytes an `@all` message signs.
///
/// ```
/// let b = dyspatcher::protocol::all_bytes("id1", 5, "from", "sk", 7, "iv", "ct");
/// assert_eq!(b, b"dyspatcher-v1-all\nid1\n5\nfrom\nsk\n7\niv\nct");
/// ```
pub fn all_bytes(id: &str, ts: i64, from: &str, skid: &str, n: u32, iv: &str, ct: &str) -> Vec<u8> {
    let (ts, n) = (ts.to_string(), n.to_string());
    canonical(&["dyspatcher-v1-all", id, &ts, from, skid, &n, iv, ct])
}

/// The bytes a sender-key distribution signs.
///
/// ```
/// let b = dyspatcher::protocol::sender_key_bytes("from", "sk", 3, "c0ffee");
/// assert_eq!(b, b"dyspatcher-v1-sender-key\nfrom\nsk\n3\nc0ffee");
/// ```
pub fn sender_key_bytes(from: &str, skid: &str, n: u32, commitment: &str) -> Vec<u8> {
    canonical(&[
        "dyspatcher-v1-sender-key",
        from,
        skid,
        &n.to_string(),
        commitment,
    ])
}

/// Whether `s` is exactly `len` lowercase hex characters.
pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` looks like padded standard base64 (checked cheaply, without decoding).
pub fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() % 4 == 0
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Whether `name` is a valid user name: `^[a-z0-9]{4,15}$`.
pub fn valid_user_name(name: &str) -> bool {
    (4..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Why `name` cannot be a user's name next to the admin called `admin_name`, if it cannot.
///
/// ```
/// use dyspatcher::protocol::name_refusal;
/// assert_eq!(name_refusal("alice", "ADMIN"), None);
/// assert!(name_refusal("admin", "BOSS").unwrap().contains("reserved"));
/// assert!(name_refusal("boss", "BOSS").unwrap().contains("admin"));
/// ```
pub fn name_refusal(name: &str, admin_name: &str) -> Option<String> {
    if !valid_user_name(name) {
        return Some("names are 4 to 15 characters: a-z and 0-9".into());
    }
    if name.eq_ignore_ascii_case(admin_name) {
        return Some(format!("{name} is the admin's name"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Some(format!("{name} is a reserved word"));
    }
    None
}

/// Whether `name` is a valid admin name: `^[A-Z0-9]{4,15}$`.
pub fn valid_admin_name(name: &str) -> bool {
    (4..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_as_str_are_their_wire_names() {
        for code in [
            ErrorCode::BadJson,
            ErrorCode::UnknownType,
            ErrorCode::BadField,
            ErrorCode::BinaryUnsupported,
            ErrorCode::NotJoined,
            ErrorCode::AlreadyJoined,
            ErrorCode::BadName,
            ErrorCode::NameTaken,
            ErrorCode::BadKey,
            ErrorCode::BadProof,
            ErrorCode::Banned,
            ErrorCode::NotAllowed,
            ErrorCode::JoinTimeout,
            ErrorCode::TooManyJoins,
            ErrorCode::UnknownRecipient,
            ErrorCode::Forbidden,
            ErrorCode::BadKeys,
            ErrorCode::DuplicateId,
            ErrorCode::Stale,
            ErrorCode::RateLimited,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str())
            );
        }
    }

    #[test]
    fn golden_client_direct() {
        let json = r#"{"type":"direct","id":"00112233445566778899aabbccddeeff","ts":1,"to":"k","iv":"aXY=","ciphertext":"Y3Q=","keys":{"k":"d3I="},"signature":"c2ln"}"#;
        let msg: ClientMsg = serde_json::from_str(json).unwrap();
        assert!(matches!(&msg, ClientMsg::Direct(d) if d.keys["k"] == "d3I="));
        assert_eq!(serde_json::to_string(&msg).unwrap(), json);
    }

    #[test]
    fn golden_server_messages() {
        let left = ServerMsg::Left {
            key_id: "k".into(),
            name: "alice".into(),
            reason: LeftReason::Kicked,
        };
        assert_eq!(
            serde_json::to_string(&left).unwrap(),
            r#"{"type":"left","key_id":"k","name":"alice","reason":"kicked"}"#
        );
        let err = ServerMsg::Error {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            id: None,
            until: None,
        };
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"type":"error","code":"rate_limited","message":"slow down"}"#
        );
        let all = ServerMsg::All(AllIn {
            id: "i".into(),
            ts: 2,
            from: Sender {
                name: "ADMIN".into(),
                key_id: "k".into(),
            },
            skid: "s".into(),
            n: 0,
            iv: "v".into(),
            ciphertext: "c".into(),
            signature: "g".into(),
            via: Some(Via::Prompt),
        });
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"{"type":"all","id":"i","ts":2,"from":{"name":"ADMIN","key_id":"k"},"skid":"s","n":0,"iv":"v","ciphertext":"c","signature":"g","via":"prompt"}"#
        );
    }

    #[test]
    fn golden_v2_messages() {
        let join: ClientMsg = serde_json::from_str(
            r#"{"type":"join","name":"alice","public_key":"a","signature":"s","resume":{"since":41}}"#,
        )
        .unwrap();
        assert!(matches!(
            join,
            ClientMsg::Join {
                resume: Some(Resume { since: 41 }),
                ..
            }
        ));
        let ack: ClientMsg = serde_json::from_str(r#"{"type":"ack","seq":42}"#).unwrap();
        assert_eq!(ack, ClientMsg::Ack { seq: 42 });
        let leave: ClientMsg = serde_json::from_str(r#"{"type":"leave"}"#).unwrap();
        assert_eq!(leave, ClientMsg::Leave {});
        let presence = ServerMsg::Presence {
            key_id: "k".into(),
            name: "alice".into(),
            state: Presence::Away,
        };
        assert_eq!(
            serde_json::to_string(&presence).unwrap(),
            r#"{"type":"presence","key_id":"k","name":"alice","state":"away"}"#
        );
        let delivery = ServerMsg::Delivery {
            id: "i".into(),
            to: "k".into(),
            state: DeliveryState::Held,
        };
        assert_eq!(
            serde_json::to_string(&delivery).unwrap(),
            r#"{"type":"delivery","id":"i","to":"k","state":"held"}"#
        );
        let gap = ServerMsg::Gap {
            dropped: 3,
            kinds: [("all".to_string(), 2), ("direct".to_string(), 1)].into(),
            first_seq: 4,
            last_seq: 6,
        };
        assert_eq!(
            serde_json::to_string(&gap).unwrap(),
            r#"{"type":"gap","dropped":3,"kinds":{"all":2,"direct":1},"first_seq":4,"last_seq":6}"#
        );
        let banned = ServerMsg::Error {
            code: ErrorCode::Banned,
            message: "m".into(),
            id: None,
            until: Some(5),
        };
        assert_eq!(
            serde_json::to_string(&banned).unwrap(),
            r#"{"type":"error","code":"banned","message":"m","until":5}"#
        );
    }

    #[test]
    fn notice_codes_and_left_reasons_are_snake_case_and_unknown_codes_parse() {
        let kicked = ServerMsg::Notice {
            code: NoticeCode::Kicked,
            text: "t".into(),
            until: Some(9),
        };
        assert_eq!(
            serde_json::to_string(&kicked).unwrap(),
            r#"{"type":"notice","code":"kicked","text":"t","until":9}"#
        );
        for code in [
            NoticeCode::ShuttingDown,
            NoticeCode::PromptBehind,
            NoticeCode::Moderated,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        let newer: ServerMsg =
            serde_json::from_str(r#"{"type":"notice","code":"tea_time","text":"t"}"#).unwrap();
        assert!(matches!(
            newer,
            ServerMsg::Notice {
                code: NoticeCode::Other,
                ..
            }
        ));
        for reason in [LeftReason::Left, LeftReason::Expired, LeftReason::Removed] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
    }

    #[test]
    fn welcome_and_joined_as_written_are_what_clients_parse() {
        let alice = Member {
            name: "alice".into(),
            key_id: "k1".into(),
            public_key: "cGs=".into(),
            admin: false,
        };
        let admin = Member {
            name: "ADMIN".into(),
            key_id: "k0".into(),
            public_key: "cGs=".into(),
            admin: true,
        };
        let options = Options {
            admin_name: "ADMIN".into(),
            disable_all: false,
            only_admin: false,
            remember: true,
        };
        let limits = Limits::new(20, 40, 1 << 20, 600);
        let (a, b) = (encoded_member(&alice), encoded_member(&admin));
        let written = serde_json::to_string(&WelcomeOut {
            you: &a,
            members: vec![&b, &a],
            away: vec!["k1"],
            resumed: true,
            seq: 7,
            options: &options,
            limits: &limits,
            time: 5,
        })
        .unwrap();
        let typed = ServerMsg::Welcome {
            you: alice.clone(),
            members: vec![admin, alice.clone()],
            away: vec!["k1".into()],
            resumed: true,
            seq: 7,
            options,
            limits,
            time: 5,
        };
        assert_eq!(written, serde_json::to_string(&typed).unwrap());
        assert_eq!(serde_json::from_str::<ServerMsg>(&written).unwrap(), typed);
        assert!(written.starts_with(r#"{"type":"welcome","you":{"name":"alice""#));
        let joined = serde_json::to_string(&JoinedOut { member: &a }).unwrap();
        assert_eq!(
            joined,
            serde_json::to_string(&ServerMsg::Joined { member: alice }).unwrap()
        );
    }

    #[test]
    fn names() {
        assert!(valid_user_name("alice"));
        assert!(valid_user_name("a1b2"));
        assert!(!valid_user_name("abc"));
        assert!(!valid_user_name("Alice"));
        assert!(!valid_user_name("alice_bob"));
        assert!(!valid_user_name("abcdefghijklmnop"));
        assert!(valid_admin_name("ADMIN"));
        assert!(!valid_admin_name("admin"));
        assert!(!valid_admin_name("ADM"));
    }

    #[test]
    fn encodings() {
        assert!(is_base64("aGVsbG8="));
        assert!(is_base64(""));
        assert!(!is_base64("aGVsbG8"));
        assert!(!is_base64("aGVs*G8="));
        assert!(!is_base64("a==="));
        assert!(is_hex("00ff", 4));
        assert!(!is_hex("00FF", 4));
        assert!(!is_hex("00f", 4));
    }
}

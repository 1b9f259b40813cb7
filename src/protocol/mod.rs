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
/// Largest number of key IDs in one `get_keys` message.
pub const MAX_GET_KEYS: usize = 256;
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

/// A member as listed to clients: no public key (a client asks for the keys it needs with
/// `get_keys`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Display name.
    pub name: String,
    /// Full key ID.
    pub key_id: String,
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
    /// Who may create groups.
    #[serde(default)]
    pub groups: GroupPolicy,
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
    /// The limits of files.
    #[serde(flatten)]
    pub files: FileLimits,
    /// The limits of groups.
    #[serde(flatten, default)]
    pub groups: GroupLimits,
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
            files: FileLimits::default(),
            groups: GroupLimits::default(),
        }
    }

    /// The same limits with files of at most `max_file` bytes.
    pub fn with_max_file(mut self, max_file: u64) -> Self {
        self.files.max_file = max_file;
        self
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
    /// Acknowledges every sequenced frame up to `seq` and every chunk up to `cseq` (cumulative;
    /// at least one of them).
    Ack {
        /// The highest `seq` received, in order, with nothing missing before it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        seq: Option<u64>,
        /// The highest `cseq` received.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        cseq: Option<u64>,
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
        /// For a group sender key: the group.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        group: Option<String>,
    },
    /// A file's manifest (to a member or to `all`); its chunks follow.
    File(FileOut),
    /// One chunk of a file this connection is sending.
    Chunk(ChunkOut),
    /// Ends a transfer (from its sender) or stops receiving it (from a recipient).
    FileCancel {
        /// The file id.
        file: String,
    },
    /// Asks for members' public keys (answered with `keys`).
    GetKeys {
        /// Key IDs, 1 to [`MAX_GET_KEYS`].
        key_ids: Vec<String>,
    },
    /// Creates or changes a group.
    GroupRoster {
        /// The signed roster.
        roster: Roster,
    },
    /// Leaves a group.
    GroupLeave {
        /// The group id.
        group: String,
    },
    /// A message to a group.
    Group(GroupOut),
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
    /// The last `cseq` (file chunk) the client received (0: none).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub since_chunks: u64,
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
    /// For a group sender key: the group and epoch.
    #[serde(flatten, default)]
    pub group: Option<GroupAt>,
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
        /// The last `cseq` given to this member before this welcome.
        #[serde(default)]
        cseq: u64,
        /// Server options.
        options: Options,
        /// Limits.
        limits: Limits,
        /// The server's clock, ms since the epoch.
        time: i64,
        /// The rosters of the groups this member is routed in.
        #[serde(default)]
        groups: Vec<Roster>,
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
        /// For a group sender key: the group.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        group: Option<String>,
    },
    /// A file's manifest for this client.
    File(FileIn),
    /// A chunk of a file (written with `cseq`, not `seq`).
    Chunk(ChunkIn),
    /// A transfer ended early.
    FileCancel {
        /// The file id.
        file: String,
        /// Key ID of who cancelled (the sender, a recipient, or the recipient concerned).
        by: String,
        /// Why.
        reason: CancelReason,
    },
    /// Chunk `i` of this client's file reached every recipient.
    ChunkAck {
        /// The file id.
        file: String,
        /// The chunk index.
        i: u64,
    },
    /// The client's message was accepted and routed.
    Ack {
        /// Its id.
        id: String,
        /// For a file to `all`: away members whose mailbox could not hold it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        skipped: Option<Vec<String>>,
    },
    /// The answer to `get_keys`: the public keys the server knows, and the key IDs it does not.
    Keys {
        /// SPKI DER, base64, by key ID.
        keys: BTreeMap<String, String>,
        /// Asked-for key IDs of no member this client sees (nor of one who left lately).
        unknown: Vec<String>,
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
    /// A roster for a group this member is in or was just removed from.
    GroupRoster {
        /// The signed roster.
        roster: Roster,
        /// Key ID of who sent it.
        by: String,
    },
    /// A member is no longer routed in a group.
    GroupLeft {
        /// The group id.
        group: String,
        /// Who.
        key_id: String,
        /// Why.
        reason: GroupLeftReason,
    },
    /// A group was deleted.
    GroupDeleted {
        /// The group id.
        group: String,
        /// By whom.
        by: DeletedBy,
    },
    /// A group message.
    Group(GroupIn),
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
    /// The last `cseq` given to this member before this welcome.
    pub cseq: u64,
    /// Server options.
    pub options: &'a Options,
    /// Limits.
    pub limits: &'a Limits,
    /// The server's clock, ms since the epoch.
    pub time: i64,
    /// The rosters of the groups this member is routed in.
    pub groups: Vec<&'a Roster>,
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
    /// For a group sender key: the group and epoch.
    #[serde(flatten, default)]
    pub group: Option<GroupAt>,
}

mod canonical;
mod codes;
mod files;
mod groups;
#[cfg(test)]
mod tests;

pub use canonical::*;
pub use codes::*;
pub use files::*;
pub use groups::*;

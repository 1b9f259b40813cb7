//! Wire types of private groups (`docs/PROTOCOL.md`, *Groups*): the owner-signed roster, group
//! messages, the group limits and policy, the canonical strings, and the roster's field checks
//! that the server and every member run the same way.

use serde::{Deserialize, Serialize};

use super::{canonical_of, is_base64, is_hex, Sender, Via, MAX_RSA_B64};

/// Default most members of one group, owner included (`--max-group-size`).
pub const DEFAULT_MAX_GROUP_SIZE: usize = 64;
/// Default most groups one member may be in (`--max-groups`).
pub const DEFAULT_MAX_GROUPS: usize = 16;
/// Largest `--max-group-size` accepted: one `sender_key` message wraps for every member.
pub const MAX_GROUP_SIZE_BOUND: usize = super::MAX_SENDER_KEY_ENTRIES;
/// Largest `--max-groups` accepted.
pub const MAX_GROUPS_BOUND: usize = 256;
/// Longest group name inside the sealed `info`, in bytes.
pub const MAX_GROUP_NAME: usize = 64;
/// Longest group topic inside the sealed `info`, in bytes.
pub const MAX_GROUP_TOPIC: usize = 256;

/// Who may create groups (`--groups`, `options.groups`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupPolicy {
    /// Anyone may create a group.
    #[default]
    Users,
    /// Only the admin creates groups.
    Admin,
    /// No groups at all.
    Off,
}

impl GroupPolicy {
    /// Parses `users`, `admin` or `off`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "users" => Some(Self::Users),
            "admin" => Some(Self::Admin),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// The group limits in `welcome.limits`.
/// A server that sends none (one without groups) gets the defaults.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct GroupLimits {
    /// Most members of one group, owner included.
    pub max_group_size: usize,
    /// Most groups one member may be in.
    pub max_groups: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            max_group_size: DEFAULT_MAX_GROUP_SIZE,
            max_groups: DEFAULT_MAX_GROUPS,
        }
    }
}

/// A group's membership list, signed by its owner (of the previous epoch, for a change).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Roster {
    /// The group id, 32 lowercase hex.
    pub group: String,
    /// 1 for a new group, +1 per change.
    pub epoch: u32,
    /// The owner's key ID (one of `members`).
    pub owner: String,
    /// Member key IDs, sorted ascending, no duplicates.
    pub members: Vec<String>,
    /// RSA-PSS signature over [`roster_bytes`], base64.
    pub signature: String,
}

impl Roster {
    /// The bytes its signature covers.
    pub fn bytes(&self) -> Vec<u8> {
        roster_bytes(&self.group, self.epoch, &self.owner, &self.members)
    }

    /// Checks every field's encoding and the list's shape (sorted, unique, owner included, at
    /// least one member); says what is wrong.
    pub fn check_fields(&self) -> Result<(), String> {
        if !is_hex(&self.group, 32) {
            return Err("roster.group must be 32 lowercase hex characters".into());
        }
        if self.epoch == 0 {
            return Err("roster.epoch must be at least 1".into());
        }
        if !is_hex(&self.owner, 64) {
            return Err("roster.owner must be a key ID (64 lowercase hex characters)".into());
        }
        if self.members.is_empty() {
            return Err("roster.members must list at least the owner".into());
        }
        if self.members.iter().any(|m| !is_hex(m, 64)) {
            return Err("roster.members: every entry must be a key ID".into());
        }
        if self.members.windows(2).any(|w| w[0] >= w[1]) {
            return Err("roster.members must be sorted ascending without duplicates".into());
        }
        if !self.members.contains(&self.owner) {
            return Err("roster.members must include the owner".into());
        }
        if self.signature.is_empty()
            || !is_base64(&self.signature)
            || self.signature.len() > MAX_RSA_B64
        {
            return Err(format!(
                "roster.signature must be non-empty base64 of at most {MAX_RSA_B64} characters"
            ));
        }
        Ok(())
    }

    /// Whether `key_id` is on the roster.
    pub fn lists(&self, key_id: &str) -> bool {
        self.members
            .binary_search_by(|m| m.as_str().cmp(key_id))
            .is_ok()
    }
}

/// The bytes a roster signs: `dyspatcher-v2-roster` · group · epoch · owner · members joined
/// by `,`.
///
/// ```
/// let m = vec!["aa".to_string(), "bb".to_string()];
/// let b = dyspatcher::protocol::roster_bytes("g1", 2, "aa", &m);
/// assert_eq!(b, b"dyspatcher-v2-roster\ng1\n2\naa\naa,bb");
/// ```
pub fn roster_bytes(group: &str, epoch: u32, owner: &str, members: &[String]) -> Vec<u8> {
    canonical_of(&[
        "dyspatcher-v2-roster",
        group,
        &epoch.to_string(),
        owner,
        &members.join(","),
    ])
}

/// The bytes a group message signs.
///
/// ```
/// let b = dyspatcher::protocol::group_bytes("g", 3, "id", 5, "from", "sk", 7, "iv", "ct");
/// assert_eq!(b, b"dyspatcher-v2-group\ng\n3\nid\n5\nfrom\nsk\n7\niv\nct");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn group_bytes(
    group: &str,
    epoch: u32,
    id: &str,
    ts: i64,
    from: &str,
    skid: &str,
    n: u32,
    iv: &str,
    ct: &str,
) -> Vec<u8> {
    let (epoch, ts, n) = (epoch.to_string(), ts.to_string(), n.to_string());
    canonical_of(&[
        "dyspatcher-v2-group",
        group,
        &epoch,
        id,
        &ts,
        from,
        skid,
        &n,
        iv,
        ct,
    ])
}

/// The bytes a group sender key signs.
///
/// ```
/// let b = dyspatcher::protocol::group_sender_key_bytes("g", 3, "from", "sk", 0, "c0");
/// assert_eq!(b, b"dyspatcher-v2-group-sender-key\ng\n3\nfrom\nsk\n0\nc0");
/// ```
pub fn group_sender_key_bytes(
    group: &str,
    epoch: u32,
    from: &str,
    skid: &str,
    n: u32,
    commitment: &str,
) -> Vec<u8> {
    canonical_of(&[
        "dyspatcher-v2-group-sender-key",
        group,
        &epoch.to_string(),
        from,
        skid,
        &n.to_string(),
        commitment,
    ])
}

/// The bytes a file manifest to a group signs.
///
/// ```
/// let b = dyspatcher::protocol::file_group_bytes("id", 5, "f", "g", 2, "sk", 7, 9, 1, "iv", "ct");
/// assert_eq!(b, b"dyspatcher-v2-file-group\nid\n5\nf\ng\n2\nsk\n7\n9\n1\niv\nct");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn file_group_bytes(
    id: &str,
    ts: i64,
    from: &str,
    group: &str,
    epoch: u32,
    skid: &str,
    n: u32,
    size: u64,
    chunks: u64,
    iv: &str,
    ct: &str,
) -> Vec<u8> {
    let (ts, epoch, n) = (ts.to_string(), epoch.to_string(), n.to_string());
    let (size, chunks) = (size.to_string(), chunks.to_string());
    canonical_of(&[
        "dyspatcher-v2-file-group",
        id,
        &ts,
        from,
        group,
        &epoch,
        skid,
        &n,
        &size,
        &chunks,
        iv,
        ct,
    ])
}

/// The group and epoch a `sender_key` is for (absent: the sender's `@all` key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupAt {
    /// The group id.
    pub group: String,
    /// The epoch.
    pub epoch: u32,
}

/// A group message as the client sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupOut {
    /// The group id.
    pub group: String,
    /// The group's current epoch.
    pub epoch: u32,
    /// Message id, 32 hex.
    pub id: String,
    /// Timestamp, ms since the epoch.
    pub ts: i64,
    /// Group sender key id.
    pub skid: String,
    /// Chain index.
    pub n: u32,
    /// AES-GCM IV, base64.
    pub iv: String,
    /// Ciphertext with tag, base64.
    pub ciphertext: String,
    /// Signature over [`group_bytes`], base64.
    pub signature: String,
}

/// A relayed group message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupIn {
    /// The group id.
    pub group: String,
    /// The epoch it was sent in.
    pub epoch: u32,
    /// Message id.
    pub id: String,
    /// Sender's timestamp.
    pub ts: i64,
    /// Sender, from the server.
    pub from: Sender,
    /// Group sender key id.
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

/// Why a member is no longer routed in a group (`group_left.reason`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupLeftReason {
    /// It sent `group_leave`.
    Left,
    /// Its membership of the chat ended.
    RemovedFromChat,
}

/// Who deleted a group (`group_deleted.by`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeletedBy {
    /// The admin, with `/group delete`.
    Admin,
    /// The owner left it as the last member, or left the chat.
    Owner,
}

/// The sealed plaintext of a group message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum GroupPlain {
    /// A text message.
    Text {
        /// The text.
        text: String,
    },
    /// The group's name and topic, from its owner.
    Info {
        /// Name and topic.
        info: GroupInfo,
    },
}

/// A group's name and topic (sealed; the server never sees them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct GroupInfo {
    /// The name, at most [`MAX_GROUP_NAME`] bytes.
    pub name: String,
    /// The topic, at most [`MAX_GROUP_TOPIC`] bytes.
    #[serde(default)]
    pub topic: String,
}

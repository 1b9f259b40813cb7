//! The codes of `error` messages and the WebSocket close codes, as `docs/PROTOCOL.md` lists them.

use serde::{Deserialize, Serialize};

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
    /// A file over `limits.max_file`.
    FileTooLarge,
    /// A chunk or cancel for a file not in flight (or not this connection's).
    UnknownFile,
    /// A chunk out of order or of the wrong length.
    BadChunk,
    /// A chunk beyond the file's window.
    FileWindow,
    /// Too many unfinished files on this connection.
    TooManyFiles,
    /// An away recipient's mailbox cannot hold the file.
    MailboxFull,
    /// A group the server does not have.
    UnknownGroup,
    /// A group frame from a member not routed in that group.
    NotInGroup,
    /// A roster's epoch is not current + 1, or a group frame's is not the current one.
    StaleEpoch,
    /// A roster over `limits.max_group_size`.
    GroupTooLarge,
    /// A roster would put a member in more than `limits.max_groups` groups.
    TooManyGroups,
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
            Self::FileTooLarge => "file_too_large",
            Self::UnknownFile => "unknown_file",
            Self::BadChunk => "bad_chunk",
            Self::FileWindow => "file_window",
            Self::TooManyFiles => "too_many_files",
            Self::MailboxFull => "mailbox_full",
            Self::UnknownGroup => "unknown_group",
            Self::NotInGroup => "not_in_group",
            Self::StaleEpoch => "stale_epoch",
            Self::GroupTooLarge => "group_too_large",
            Self::TooManyGroups => "too_many_groups",
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

//! Wire types and limits of files (`docs/PROTOCOL.md`, *Files*): the manifest, its chunks in
//! their own `cseq` lane, cancels, and the sizes and strings both sides compute the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{canonical_of, Sender, Via};

/// Default largest file, in bytes of plaintext (`--max-file-mb` 16).
pub const DEFAULT_MAX_FILE: u64 = 16 * 1024 * 1024;
/// Plaintext bytes per chunk (the last may be shorter).
pub const CHUNK_SIZE: u64 = 64 * 1024;
/// Chunks a sender may have sent without `chunk_ack`, per file.
pub const FILE_WINDOW: u64 = 4;
/// Unfinished outgoing files per connection.
pub const FILES_IN_FLIGHT: usize = 4;
/// Chunk ciphertext bytes per second per connection.
pub const FILE_BYTES_PER_SEC: u64 = 4 * 1024 * 1024;
/// Chunk ciphertext bytes a connection may send at once above its rate.
pub const FILE_BURST_BYTES: u64 = 1024 * 1024;
/// `ack`s carrying only `cseq` read per second per connection before its reader waits (they
/// do not count toward the message rate, and are never dropped).
pub const CHUNK_ACKS_PER_SEC: u64 = 1000;
/// Seconds without a chunk after which a transfer is cancelled (`timeout`).
pub const FILE_IDLE_SECS: u64 = 60;
/// Largest sealed manifest plaintext (a JSON object), in bytes.
pub const MAX_MANIFEST: usize = 4096;
/// Longest manifest `ciphertext`: base64 of the largest manifest and its 16-byte tag.
pub const MAX_MANIFEST_B64: usize = (MAX_MANIFEST + 16).div_ceil(3) * 4;
/// AES-GCM tag length, in bytes.
pub const TAG_LEN: u64 = 16;
/// What a kept chunk frame costs beyond its ciphertext, in the mailbox estimate.
pub const CHUNK_FRAME_OVERHEAD: u64 = 512;

/// The number of chunks of a file of `size` bytes.
///
/// ```
/// use dyspatcher::protocol::chunk_count;
/// assert_eq!(chunk_count(1), 1);
/// assert_eq!(chunk_count(65536), 1);
/// assert_eq!(chunk_count(65537), 2);
/// ```
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE)
}

/// The plaintext length of chunk `i` of a file of `size` bytes (0 past the end).
///
/// ```
/// use dyspatcher::protocol::chunk_len;
/// assert_eq!(chunk_len(70000, 0), 65536);
/// assert_eq!(chunk_len(70000, 1), 4464);
/// assert_eq!(chunk_len(70000, 2), 0);
/// ```
pub fn chunk_len(size: u64, i: u64) -> u64 {
    let start = i.saturating_mul(CHUNK_SIZE);
    size.saturating_sub(start).min(CHUNK_SIZE)
}

/// The bytes a mailbox is expected to keep for a whole file of `size` bytes in `chunks` chunks,
/// manifest excluded: `chunks × 512 + ceil((size + 16 × chunks) / 3) × 4`.
///
/// ```
/// assert_eq!(dyspatcher::protocol::kept_estimate(65536, 1), 512 + 87404);
/// ```
pub fn kept_estimate(size: u64, chunks: u64) -> u64 {
    chunks * CHUNK_FRAME_OVERHEAD + (size + TAG_LEN * chunks).div_ceil(3) * 4
}

/// The additional data a chunk is sealed with: binds it to its file and its place.
///
/// ```
/// let aad = dyspatcher::protocol::chunk_aad("ab", 3);
/// assert_eq!(aad, b"dyspatcher-v2-chunk\nab\n3");
/// ```
pub fn chunk_aad(file: &str, i: u64) -> Vec<u8> {
    canonical_of(&["dyspatcher-v2-chunk", file, &i.to_string()])
}

/// The bytes a manifest to one member signs.
///
/// ```
/// let b = dyspatcher::protocol::file_direct_bytes("id", 5, "from", "to", 9, 1, "iv", "ct");
/// assert_eq!(b, b"dyspatcher-v2-file-direct\nid\n5\nfrom\nto\n9\n1\niv\nct");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn file_direct_bytes(
    id: &str,
    ts: i64,
    from: &str,
    to: &str,
    size: u64,
    chunks: u64,
    iv: &str,
    ct: &str,
) -> Vec<u8> {
    let (ts, size, chunks) = (ts.to_string(), size.to_string(), chunks.to_string());
    canonical_of(&[
        "dyspatcher-v2-file-direct",
        id,
        &ts,
        from,
        to,
        &size,
        &chunks,
        iv,
        ct,
    ])
}

/// The bytes a manifest to everyone signs.
///
/// ```
/// let b = dyspatcher::protocol::file_all_bytes("id", 5, "from", "sk", 7, 9, 1, "iv", "ct");
/// assert_eq!(b, b"dyspatcher-v2-file-all\nid\n5\nfrom\nsk\n7\n9\n1\niv\nct");
/// ```
#[allow(clippy::too_many_arguments)]
pub fn file_all_bytes(
    id: &str,
    ts: i64,
    from: &str,
    skid: &str,
    n: u32,
    size: u64,
    chunks: u64,
    iv: &str,
    ct: &str,
) -> Vec<u8> {
    let (ts, n) = (ts.to_string(), n.to_string());
    let (size, chunks) = (size.to_string(), chunks.to_string());
    canonical_of(&[
        "dyspatcher-v2-file-all",
        id,
        &ts,
        from,
        skid,
        &n,
        &size,
        &chunks,
        iv,
        ct,
    ])
}

/// A file's manifest as the client sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileOut {
    /// Message id, which is also the file id, 32 hex.
    pub id: String,
    /// Timestamp, ms since the epoch.
    pub ts: i64,
    /// A member's key ID, or `all`.
    pub to: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Number of chunks: ceil(size / chunk_size).
    pub chunks: u64,
    /// AES-GCM IV of the sealed manifest, base64.
    pub iv: String,
    /// The sealed manifest, base64.
    pub ciphertext: String,
    /// To a member: the manifest key wrapped for the recipient and for the sender.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keys: Option<BTreeMap<String, String>>,
    /// To `all`: the sender key id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub skid: Option<String>,
    /// To `all`: the chain index.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<u32>,
    /// To a group: its current epoch.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub epoch: Option<u32>,
    /// Signature over the manifest bytes, base64.
    pub signature: String,
}

/// A chunk as the client sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkOut {
    /// The file id.
    pub file: String,
    /// Chunk index, from 0.
    pub i: u64,
    /// AES-GCM IV, base64.
    pub iv: String,
    /// Sealed chunk with its tag, base64.
    pub ciphertext: String,
}

/// A relayed manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileIn {
    /// The file id.
    pub id: String,
    /// Sender's timestamp.
    pub ts: i64,
    /// Sender, from the server.
    pub from: Sender,
    /// A member's key ID, or `all`.
    pub to: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// IV, base64.
    pub iv: String,
    /// The sealed manifest, base64.
    pub ciphertext: String,
    /// To a member: the manifest key wrapped for this recipient.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
    /// To `all`: the sender key id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub skid: Option<String>,
    /// To `all`: the chain index.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<u32>,
    /// To a group: the epoch it was sent in.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub epoch: Option<u32>,
    /// Signature, base64.
    pub signature: String,
    /// Which admin endpoint sent it, for files from the admin.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub via: Option<Via>,
}

/// A relayed chunk (in the `cseq` lane).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkIn {
    /// The file id.
    pub file: String,
    /// Sender, from the server.
    pub from: Sender,
    /// Chunk index.
    pub i: u64,
    /// IV, base64.
    pub iv: String,
    /// Sealed chunk, base64.
    pub ciphertext: String,
}

/// Why a transfer ended early (`file_cancel.reason`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The sender or a recipient cancelled.
    Cancelled,
    /// No chunk for `file_idle_secs`.
    Timeout,
    /// The sender's connection ended.
    SenderGone,
    /// A recipient's mailbox could not keep the next chunk.
    MailboxFull,
    /// The recipient's membership ended.
    Deleted,
    /// A reason this build does not know (from a newer server).
    #[serde(other)]
    Other,
}

impl CancelReason {
    /// The reason as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::SenderGone => "sender_gone",
            Self::MailboxFull => "mailbox_full",
            Self::Deleted => "deleted",
            Self::Other => "other",
        }
    }
}

/// What a file is, for display (`kind` in the sealed manifest).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Any file.
    File,
    /// A photo.
    Photo,
    /// A voice note.
    Voice,
}

/// The sealed plaintext of a manifest (a JSON object of at most [`MAX_MANIFEST`] bytes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// The file's name as the sender gave it (receivers sanitise it).
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// SHA-256 of the whole plaintext, 64 hex.
    pub sha256: String,
    /// The 32-byte AES-256 file key, base64.
    pub key: String,
    /// File, photo or voice note.
    pub kind: FileKind,
    /// A voice note's length in ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_ms: Option<u64>,
    /// A photo's width in pixels.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub width: Option<u32>,
    /// A photo's height in pixels.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub height: Option<u32>,
}

/// The file limits sent in `welcome.limits` (missing ones, from an older server, take this
/// build's values).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FileLimits {
    /// Largest plaintext size in bytes.
    pub max_file: u64,
    /// Plaintext bytes per chunk.
    pub chunk_size: u64,
    /// Chunks in flight per file without `chunk_ack`.
    pub file_window: u64,
    /// Unfinished outgoing files per connection.
    pub files_in_flight: usize,
    /// Chunk ciphertext bytes per second per connection.
    pub file_bytes_per_sec: u64,
    /// Seconds without a chunk before a transfer is cancelled.
    pub file_idle_secs: u64,
}

impl FileLimits {
    /// The limits of this build with `max_file` bytes at most per file.
    pub fn new(max_file: u64) -> Self {
        Self {
            max_file,
            chunk_size: CHUNK_SIZE,
            file_window: FILE_WINDOW,
            files_in_flight: FILES_IN_FLIGHT,
            file_bytes_per_sec: FILE_BYTES_PER_SEC,
            file_idle_secs: FILE_IDLE_SECS,
        }
    }
}

impl Default for FileLimits {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FILE)
    }
}

/// Whether `value` is zero (to leave default counters off the wire).
pub fn is_zero(value: &u64) -> bool {
    *value == 0
}

//! The canonical bytes that are signed, the checks of field encodings and names, and the clock.

use super::RESERVED_NAMES;

/// Fields joined by `\n`, as every signed string and the chunk's additional data are.
pub(crate) fn canonical_of(fields: &[&str]) -> Vec<u8> {
    fields.join("\n").into_bytes()
}

use canonical_of as canonical;

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

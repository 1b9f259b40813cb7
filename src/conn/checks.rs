//! Checks of what a client sends, free of any connection: the token bucket of the message rate,
//! the parsing of client messages (unknown types told apart from malformed ones), and the join's
//! proof of possession.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::crypto::PublicIdentity;
use crate::protocol::{self, ClientMsg, ErrorCode};

/// A token bucket: `rate` per second, holding at most `burst`.
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: Instant::now(),
        }
    }

    /// Whether the bucket has refilled to its burst by `now`.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A byte budget: `rate` bytes per second, at most `burst` saved up. A connection over it is
/// not refused: its reader waits until it is back under (TCP pushes back on the sender).
pub struct ByteRate {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl ByteRate {
    /// A full budget.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            at: Instant::now(),
        }
    }

    /// Spends `bytes` at `now`; returns how long to wait before reading again, if over.
    pub fn spend(&mut self, bytes: u64, now: Instant) -> Option<std::time::Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - bytes as f64;
        (self.tokens < 0.0).then(|| std::time::Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// Parses a client message, telling unknown types apart from malformed ones.
pub fn parse(text: &str) -> Result<ClientMsg, (ErrorCode, String)> {
    serde_json::from_str(text).map_err(|e| {
        #[derive(serde::Deserialize)]
        struct Tagged {
            #[serde(rename = "type")]
            kind: String,
        }
        match serde_json::from_str::<Tagged>(text) {
            Ok(t)
                if ![
                    "join",
                    "ack",
                    "leave",
                    "moderate",
                    "direct",
                    "all",
                    "sender_key",
                    "key_request",
                    "file",
                    "chunk",
                    "file_cancel",
                    "get_keys",
                    "group_roster",
                    "group_leave",
                    "group",
                ]
                .contains(&t.kind.as_str()) =>
            {
                (
                    ErrorCode::UnknownType,
                    format!("unknown message type `{}`", t.kind),
                )
            }
            _ => (ErrorCode::BadJson, format!("malformed message: {e}")),
        }
    })
}

/// Checks a `join`'s proof: `public_key` is an acceptable RSA key in base64 SPKI DER, and
/// `signature` signs the join bytes of `nonce`, `name` and its key ID.
pub fn check_join(
    nonce: &str,
    name: &str,
    public_key: &str,
    signature: &str,
) -> Result<PublicIdentity, (ErrorCode, String)> {
    let der = B64
        .decode(public_key)
        .map_err(|_| (ErrorCode::BadKey, "public_key is not base64".to_string()))?;
    let key =
        PublicIdentity::from_spki_der(&der).map_err(|e| (ErrorCode::BadKey, e.to_string()))?;
    let sig = B64
        .decode(signature)
        .map_err(|_| (ErrorCode::BadProof, "signature is not base64".to_string()))?;
    key.verify(&protocol::join_bytes(nonce, name, key.key_id()), &sig)
        .map_err(|_| {
            (
                ErrorCode::BadProof,
                "the signature does not prove possession of this key".to_string(),
            )
        })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(10, 3);
        assert!((0..3).all(|_| b.take(start)));
        assert!(!b.take(start));
        assert!(b.take(start + Duration::from_millis(100)));
        assert!(!b.take(start + Duration::from_millis(100)));
    }

    #[test]
    fn byte_rate_lets_a_burst_through_then_asks_to_wait() {
        let start = Instant::now();
        let mut r = ByteRate::new(1000, 500);
        assert_eq!(r.spend(500, start), None);
        let wait = r.spend(250, start).unwrap();
        assert_eq!(wait, Duration::from_millis(250));
        assert_eq!(r.spend(0, start + wait), None);
    }

    #[test]
    fn parse_tells_unknown_from_malformed() {
        assert_eq!(
            parse(r#"{"type":"dance"}"#).unwrap_err().0,
            ErrorCode::UnknownType
        );
        assert_eq!(
            parse(r#"{"type":"direct"}"#).unwrap_err().0,
            ErrorCode::BadJson
        );
        assert_eq!(parse("not json").unwrap_err().0, ErrorCode::BadJson);
        assert_eq!(parse("[1,2]").unwrap_err().0, ErrorCode::BadJson);
    }
}

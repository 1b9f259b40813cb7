//! Fuzzes the Rust session's opening of `direct`, `all` and `sender_key`: each line of the input
//! is one server message to bobby, whose session was welcomed with alice and bob. Lines whose
//! signature is `SIGN` are signed with alice's real key first (a member signs whatever it
//! likes), so the fuzzer reaches unwrapping, chain indices, decryption and the pending queue.
#![no_main]

use std::sync::{Arc, OnceLock};

use dyspatcher::crypto::Identity;
use dyspatcher::protocol::{self, ServerMsg};
use dyspatcher::session::Event;
use dyspatcher_fuzz::{joined, keys, sign_as};
use libfuzzer_sys::fuzz_target;

fn fixture() -> &'static (Arc<Identity>, Arc<Identity>) {
    static KEYS: OnceLock<(Arc<Identity>, Arc<Identity>)> = OnceLock::new();
    KEYS.get_or_init(keys)
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let (alice, bob) = fixture();
    let mut session = joined(bob, "bobby", alice, bob);
    let now = protocol::now_ms();
    for line in text.lines().take(64) {
        let Ok(mut msg) = serde_json::from_str::<ServerMsg>(line) else {
            continue;
        };
        sign_as(alice, &mut msg, now);
        for event in session.handle(msg).events {
            if let Event::Message(opened) = event {
                assert!(opened.text.len() <= protocol::MAX_TEXT + 16);
            }
        }
    }
    session.expire_pending();
});

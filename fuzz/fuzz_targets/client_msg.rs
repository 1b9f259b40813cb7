//! Fuzzes what a client may send once connected: each line of the input is one text message,
//! parsed as the connection parses it; a `join` has its proof checked as the connection checks
//! it, anything else goes from a joined member to a real hub (the admin's prompt and two members
//! joined with real keys: `ADMIN`, `alice`, `bobby`), which checks and routes it. Every frame the hub answers must be a
//! well-formed server message.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use dyspatcher::conn;
use dyspatcher::crypto::{Identity, PublicIdentity};
use dyspatcher::hub::{self, Event, Frames, Hub, HubSettings, Outbox};
use dyspatcher::protocol::{ClientMsg, ServerMsg};
use dyspatcher::ws;
use libfuzzer_sys::fuzz_target;

/// The challenge the seeds' `join` lines answer.
const NONCE: &str = "fuzz-nonce";

fn keys() -> &'static [PublicIdentity; 3] {
    static KEYS: OnceLock<[PublicIdentity; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let load = |pem: &str| {
            Identity::from_pem(pem)
                .expect("fixture key")
                .public()
                .clone()
        };
        [
            load(include_str!("../../tests/fixtures/admin.pem")),
            load(include_str!("../../tests/fixtures/alice.pem")),
            load(include_str!("../../tests/fixtures/bob.pem")),
        ]
    })
}

fn settings() -> HubSettings {
    HubSettings {
        admin_name: "ADMIN".into(),
        disable_all: false,
        only_admin: false,
        remember: true,
        groups: Default::default(),
        rate_per_sec: 1000,
        burst: 1000,
        mailbox_bytes: 64 * 1024,
        mailbox_total: 1024 * 1024,
        away_grace: Duration::from_secs(60),
        max_away: 16,
    }
}

/// Checks that every frame queued for one endpoint is a server message, the first a welcome
/// (the harness's members really joined).
fn check_frames(frames: &Frames) {
    let mut batch = Vec::new();
    frames.drain_into(&mut batch, usize::MAX);
    for (i, frame) in batch.iter().enumerate() {
        let text = std::str::from_utf8(ws::payload(frame)).expect("frames are UTF-8");
        let msg = serde_json::from_str::<ServerMsg>(text)
            .unwrap_or_else(|e| panic!("the hub sent a malformed message ({e}): {text}"));
        assert!(
            i > 0 || matches!(msg, ServerMsg::Welcome { .. }),
            "not joined: {text}"
        );
    }
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let [admin, alice, bob] = keys();
    let (tx, rx) = async_channel::unbounded();
    let mut receivers = Vec::new();
    for (conn, (name, key, console)) in [
        ("ADMIN", admin, true),
        ("alice", alice, false),
        ("bobby", bob, false),
    ]
    .into_iter()
    .enumerate()
    {
        let (outbox, frames, controls) = Outbox::new(1024 * 1024);
        receivers.push((frames, controls));
        let join = Event::Join {
            conn: conn as u64,
            name: name.into(),
            key: key.clone(),
            outbox,
            console,
            resume: None,
        };
        tx.try_send(join).expect("unbounded");
    }
    for line in text.lines() {
        match conn::parse(line) {
            Ok(ClientMsg::Join {
                name,
                public_key,
                signature,
                ..
            }) => {
                if let Ok(key) = conn::check_join(NONCE, &name, &public_key, &signature) {
                    assert_eq!(key.key_id(), alice.key_id(), "only alice's key signs");
                }
            }
            Ok(msg) => tx
                .try_send(Event::Msg {
                    conn: 1,
                    msg,
                    credit: hub::Credit::none(),
                })
                .expect("unbounded"),
            Err((code, message)) => assert!(!message.is_empty(), "{code:?} without a message"),
        }
    }
    drop(tx);
    futures_lite::future::block_on(hub::run(Hub::new(settings(), None), rx));
    for (frames, _) in &receivers {
        check_frames(frames);
    }
});

//! The memory a hostile member can pin. It never reads; it sends the largest frames the protocol
//! allows — `@all` under sender keys nobody has (the admin's endpoint in this process parks them
//! and asks for the key), chain indices at the top of their range, directs with wrapped keys the
//! admin's endpoint cannot open, `sender_key` with a wrapped key for every member, `key_request`
//! floods — and, each time it is closed as too slow, comes back and goes on. The server (the
//! real executable, in a child process) must stay within its stated bound, read from
//! /proc/PID/status. (Bounds of a receiving chain — jumps, skipped keys, chains per sender — are
//! tested on the session in `tests/session.rs`.)

mod child;
mod common;
mod flooding;

use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use base64::Engine;
use common::*;
use flooding::{join, rss_kib};
use futures_lite::StreamExt;
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&format!("{:016x}", rand_u64()));
    }
    s.truncate(n);
    s
}

fn rand_u64() -> u64 {
    u64::from_le_bytes(dyspatcher::crypto::random_bytes::<8>())
}

/// A member that reads and acknowledges everything, until the test ends.
fn reader(mut ws: Raw) -> smol::Task<()> {
    smol::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let Ok(text) = m.to_text() {
                let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
                if let Some(seq) = v["seq"].as_u64() {
                    let ack = json!({"type": "ack", "seq": seq}).to_string();
                    // Closed as too slow when this process is busy: then it is done.
                    if ws.send(Message::text(ack)).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

#[test]
fn a_member_that_never_reads_and_sends_the_worst_it_can_pins_a_bounded_amount() {
    const EACH: usize = dyspatcher::config::MIN_MAILBOX_BYTES;
    const TOTAL: usize = 8 * 1024 * 1024;
    // Everything the server may keep because of one member: all mailboxes, the messages waiting
    // for the hub, the queue of the admin's prompt, its outgoing queue (1.5 mailboxes and
    // 256 KiB), the admin's endpoint's parked messages, plus room for the allocator and the
    // sockets' buffers.
    const BOUND: usize = TOTAL
        + dyspatcher::hub::HUB_QUEUE_BYTES
        + dyspatcher::console::CONSOLE_QUEUE_BYTES
        + 2 * EACH
        + dyspatcher::session::MAX_PENDING_BYTES
        + 8 * 1024 * 1024;
    // What it sends: 2000 rounds of five frames, about 270 MiB.
    const ROUNDS: usize = 2000;
    let (_server, addr, pid) = flooding::start("hostile", EACH, TOTAL);
    smol::block_on(async {
        let k = keys(5);
        let hostile = &k[4];
        let admin = admin_key().public().key_id().to_string();
        let own = hostile.public().key_id().to_string();
        let members: Vec<String> = k[..4]
            .iter()
            .map(|k| k.public().key_id().to_string())
            .collect();
        // Two members read everything; two are away with full mailboxes.
        let _readers = [
            reader(join(&addr, "reader0", &k[0]).await),
            reader(join(&addr, "reader1", &k[1]).await),
        ];
        drop(join(&addr, "away0", &k[2]).await);
        drop(join(&addr, "away1", &k[3]).await);
        let before = rss_kib(pid);
        let ciphertext = B64.encode(vec![7u8; 32 * 1024 + 16]);
        let wrapped = B64.encode(vec![9u8; 512]);
        let mut ws = join(&addr, "hostile", hostile).await;
        let (mut sent, mut comebacks) = (0usize, 0usize);
        for round in 0..ROUNDS {
            if round % 500 == 0 {
                eprintln!(
                    "round {round}: the server's RSS grew by {} KiB",
                    rss_kib(pid) - before
                );
            }
            let now = dyspatcher::protocol::now_ms();
            let skid = hex(32);
            let mut keys = serde_json::Map::new();
            for to in members.iter().chain([&admin]) {
                keys.insert(to.clone(), json!(wrapped));
            }
            let frames = [
                json!({"type": "all", "id": hex(32), "ts": now, "skid": skid,
                       "n": u32::MAX - round as u32, "iv": "AAAAAAAAAAAAAAAA",
                       "ciphertext": ciphertext, "signature": wrapped}),
                json!({"type": "direct", "id": hex(32), "ts": now, "to": admin,
                       "iv": "AAAAAAAAAAAAAAAA", "ciphertext": ciphertext,
                       "keys": {admin.clone(): wrapped, own.clone(): wrapped},
                       "signature": wrapped}),
                json!({"type": "direct", "id": hex(32), "ts": now, "to": members[2],
                       "iv": "AAAAAAAAAAAAAAAA", "ciphertext": ciphertext,
                       "keys": {members[2].clone(): wrapped, own.clone(): wrapped},
                       "signature": wrapped}),
                json!({"type": "sender_key", "skid": skid, "n": 0,
                       "commitment": hex(64), "signature": wrapped, "keys": keys}),
                json!({"type": "key_request", "to": members[round % 2], "skid": hex(32), "n": 5}),
            ];
            for frame in frames {
                let text = frame.to_string();
                let len = text.len();
                // Closed as too slow (it never reads): it comes back, taking over its membership.
                while ws.send(Message::text(text.clone())).await.is_err() {
                    comebacks += 1;
                    assert!(comebacks < 10_000, "cannot come back");
                    ws = join(&addr, "hostile", hostile).await;
                }
                sent += len;
            }
        }
        // Let the server catch up with what is in flight before measuring.
        let mut probe = join(&addr, "probe", &keys(6)[5]).await;
        drop(probe.close(None).await);
        smol::Timer::after(Duration::from_millis(200)).await;
        let grown = rss_kib(pid).saturating_sub(before) * 1024;
        eprintln!(
            "sent {} MiB in {ROUNDS} rounds, came back {comebacks} times; RSS grew by {} KiB (bound {} KiB)",
            sent >> 20,
            grown >> 10,
            BOUND >> 10
        );
        assert!(sent > 250 << 20, "sent only {sent} bytes");
        assert!(grown < BOUND, "RSS grew by {grown} bytes, over {BOUND}");
    });
}

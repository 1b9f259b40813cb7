//! The memory a flooder can pin: 200 away members, each sent more than its mailbox holds in
//! distinct direct messages. The server (the real executable, in a child process) must stay
//! within the bound for all mailboxes, read from /proc/PID/status.

mod child;
mod common;
mod flooding;

use base64::Engine;
use common::*;
use flooding::{join, rss_kib};
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[test]
fn a_flooder_writing_to_200_away_members_pins_at_most_the_total() {
    const AWAY: usize = 200;
    const EACH: usize = dyspatcher::config::MIN_MAILBOX_BYTES;
    const TOTAL: usize = 16 * 1024 * 1024;
    let (_server, addr, pid) = flooding::start("memory", EACH, TOTAL);
    smol::block_on(async {
        let k = keys(AWAY + 1);
        let flooder = &k[AWAY];
        let mut ws = join(&addr, "flooder", flooder).await;
        // The members join and go. They never acknowledge anything (the joins of those after
        // them count in their mailboxes); the flooder acknowledges what it is told, as a client
        // must, or it would be the reader holding the most and be cut first.
        let mut away = Vec::new();
        for (i, key) in k[..AWAY].iter().enumerate() {
            away.push(join(&addr, &format!("away{i}"), key).await);
        }
        drop(away);
        let mut gone = 0;
        while gone < AWAY {
            let v = raw_next(&mut ws).await;
            if v["type"] == "presence" && v["state"] == "away" {
                gone += 1;
            }
            if let Some(seq) = v["seq"].as_u64() {
                raw_send(&mut ws, json!({"type": "ack", "seq": seq}).to_string()).await;
            }
        }
        let before = rss_kib(pid);
        // Each away member is sent 24 distinct messages of 32 KiB: 1.5 times its mailbox, and
        // 150 MiB in all against a bound of 16 MiB.
        let own = flooder.public().key_id().to_string();
        let ct = B64.encode(vec![5u8; 24 * 1024]);
        let mut sent = 0u64;
        for round in 0..24u64 {
            for key in &k[..AWAY] {
                let to = key.public().key_id().to_string();
                sent += 1;
                let msg = json!({
                    "type": "direct",
                    "id": format!("{:016x}{:016x}", round, sent),
                    "ts": dyspatcher::protocol::now_ms(),
                    "to": to,
                    "iv": "AAAAAAAAAAAAAAAA",
                    "ciphertext": ct,
                    "keys": {to.clone(): "d3JhcA==", own.clone(): "d3JhcA=="},
                    "signature": "c2ln",
                });
                raw_send(&mut ws, msg.to_string()).await;
            }
            // Wait for the server to take this round; acknowledge the delivery states it sends.
            let mut acks = 0;
            let mut last_seq = 0;
            while acks < AWAY {
                let v = raw_next(&mut ws).await;
                if v["type"] == "ack" {
                    acks += 1;
                }
                assert_ne!(v["type"], "error", "{v}");
                last_seq = v["seq"].as_u64().unwrap_or(last_seq);
            }
            raw_send(&mut ws, json!({"type": "ack", "seq": last_seq}).to_string()).await;
        }
        let grown = rss_kib(pid).saturating_sub(before) * 1024;
        let unbounded = AWAY * 24 * 32 * 1024;
        eprintln!(
            "RSS grew by {} KiB while {} KiB were sent ({} KiB would be kept unbounded)",
            grown / 1024,
            sent as usize * 32,
            unbounded.min(AWAY * EACH) / 1024
        );
        // The bound plus room for the allocator and the sockets' buffers; without the total
        // bound, each mailbox alone would keep 512 KiB: 100 MiB.
        assert!(
            grown < TOTAL + 24 * 1024 * 1024,
            "RSS grew by {grown} bytes"
        );
    });
}

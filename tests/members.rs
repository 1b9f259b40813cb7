//! Members outlive connections: takeover, presence, grace expiry, acknowledgements, delivery
//! states, leaving, names, kicks and bans — over real sockets, with bare WebSockets where the
//! test must see exactly what the server sends.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use dyspatcher::crypto::Identity;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Joins on a bare WebSocket as `name` with `key`, resuming after `since` when given; returns
/// the socket and the welcome (or the refusal).
async fn member(
    server: &TestServer,
    name: &str,
    key: &Identity,
    since: Option<u64>,
) -> (Raw, Value) {
    let mut ws = raw(server).await;
    let challenge = raw_next(&mut ws).await;
    assert_eq!(challenge["version"], 2);
    let nonce = challenge["nonce"].as_str().unwrap();
    let sig = key.sign(&dyspatcher::protocol::join_bytes(
        nonce,
        name,
        key.public().key_id(),
    ));
    let mut join = json!({
        "type": "join",
        "name": name,
        "public_key": B64.encode(key.public().spki_der()),
        "signature": B64.encode(sig),
    });
    if let Some(since) = since {
        join["resume"] = json!({ "since": since });
    }
    raw_send(&mut ws, join.to_string()).await;
    let welcome = raw_next(&mut ws).await;
    (ws, welcome)
}

/// The next frame of `kind` (skipping others).
async fn next_of(ws: &mut Raw, kind: &str) -> Value {
    loop {
        let v = raw_next(ws).await;
        if v["type"] == kind || (kind == "close" && v.get("close").is_some()) {
            return v;
        }
        assert!(
            v.get("close").is_none(),
            "closed while waiting for {kind}: {v}"
        );
    }
}

/// A syntactically valid direct message from `own` to `to` (the server never opens it).
fn fake_direct(i: usize, own: &str, to: &str, bytes: usize) -> String {
    let ct = B64.encode(vec![7u8; bytes.max(16)]);
    json!({
        "type": "direct",
        "id": format!("{:032x}", (i as u128) << 64 | rand_u64() as u128),
        "ts": dyspatcher::protocol::now_ms(),
        "to": to,
        "iv": "AAAAAAAAAAAAAAAA",
        "ciphertext": ct,
        "keys": {to: "d3JhcA==", own: "d3JhcA=="},
        "signature": "c2ln",
    })
    .to_string()
}

/// A syntactically valid `@all` (the server never opens it).
fn fake_all(i: usize, bytes: usize) -> String {
    let ct = B64.encode(vec![7u8; bytes.max(16)]);
    json!({
        "type": "all",
        "id": format!("{:032x}", (i as u128) << 64 | rand_u64() as u128),
        "ts": dyspatcher::protocol::now_ms(),
        "skid": "0".repeat(32),
        "n": i,
        "iv": "AAAAAAAAAAAAAAAA",
        "ciphertext": ct,
        "signature": "c2ln",
    })
    .to_string()
}

fn rand_u64() -> u64 {
    u64::from_le_bytes(dyspatcher::crypto::random_bytes::<8>())
}

fn fast(c: &mut dyspatcher::config::Config) {
    c.limits.rate_per_sec = 100_000;
    c.limits.burst = 100_000;
}

#[test]
fn a_new_connection_with_the_same_key_takes_over_without_a_leave() {
    let server = start(fast);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (mut old, welcome) = member(&server, "alice", &k[0], None).await;
        assert_eq!(welcome["resumed"], false);
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        next_of(&mut old, "joined").await;
        // The old connection stays open (half-open, as after a Wi-Fi change); a new one proves
        // the same key and asks to resume.
        let (mut new, welcome) = member(&server, "ignored", &k[0], Some(0)).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["resumed"], true);
        assert_eq!(welcome["you"]["name"], "alice", "the member keeps its name");
        let replaced = next_of(&mut old, "notice").await;
        assert_eq!(replaced["code"], "replaced");
        assert_eq!(next_of(&mut old, "close").await["close"], 4006);
        // Bob learns nothing: no left, no presence, no joined. The next thing he gets is the
        // message alice sends through the new connection.
        raw_send(&mut new, fake_all(1, 16)).await;
        let next = raw_next(&mut bob).await;
        assert_eq!(next["type"], "all", "bob saw {next}");
        assert_eq!(next["from"]["name"], "alice");
    });
}

#[test]
fn away_is_presence_and_the_grace_period_ends_in_a_leave() {
    let server = start(|c| {
        fast(c);
        c.limits.away_grace = Duration::from_secs(2);
    });
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (alice, _) = member(&server, "alice", &k[0], None).await;
        let (mut bob, welcome) = member(&server, "bobby", &k[1], None).await;
        assert_eq!(welcome["limits"]["away_grace_secs"], 2);
        drop(alice);
        let away = next_of(&mut bob, "presence").await;
        assert_eq!(
            (away["name"].as_str(), away["state"].as_str()),
            (Some("alice"), Some("away"))
        );
        assert!(away["seq"].as_u64().unwrap() >= 1);
        // Within the grace period alice comes back: presence, not a join.
        let (alice, welcome) = member(&server, "alice", &k[0], Some(0)).await;
        assert_eq!(welcome["resumed"], true);
        let back = next_of(&mut bob, "presence").await;
        assert_eq!(back["state"], "online");
        drop(alice);
        assert_eq!(next_of(&mut bob, "presence").await["state"], "away");
        let left = within(10, "the grace period to end", next_of(&mut bob, "left")).await;
        assert_eq!(
            (left["name"].as_str(), left["reason"].as_str()),
            (Some("alice"), Some("expired"))
        );
        // A new membership after that: numbering starts again, others see a join.
        let (_alice, welcome) = member(&server, "alice", &k[0], Some(40)).await;
        assert_eq!(
            (welcome["resumed"].as_bool(), welcome["seq"].as_u64()),
            (Some(false), Some(0))
        );
        assert_eq!(next_of(&mut bob, "joined").await["member"]["name"], "alice");
    });
}

#[test]
fn no_more_are_kept_away_than_may_be_connected() {
    // 4 connections at most: 4 away at most; the fifth to go makes the first leave.
    let server = start(|c| {
        fast(c);
        c.limits.max_connections = 4;
    });
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(6);
        let (mut watch, _) = member(&server, "watch", &k[5], None).await;
        for (i, key) in k[..5].iter().enumerate() {
            let (ws, welcome) = member(&server, &format!("away{i}"), key, None).await;
            assert_eq!(welcome["type"], "welcome", "{welcome}");
            drop(ws);
            let away = next_of(&mut watch, "presence").await;
            assert_eq!(away["name"], format!("away{i}"));
            assert_eq!(away["state"], "away");
        }
        let left = next_of(&mut watch, "left").await;
        assert_eq!(
            (left["name"].as_str(), left["reason"].as_str()),
            (Some("away0"), Some("expired"))
        );
        // The others are still members: away1 comes back to its membership.
        let (_back, welcome) = member(&server, "away1", &k[1], Some(0)).await;
        assert_eq!(welcome["resumed"], true, "{welcome}");
    });
}

#[test]
fn frames_are_numbered_kept_until_acknowledged_and_replayed_in_order() {
    let server = start(fast);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (mut alice, _) = member(&server, "alice", &k[0], None).await;
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        for i in 0..5 {
            raw_send(&mut bob, fake_all(i, 16)).await;
        }
        let mut seqs = Vec::new();
        while seqs.len() < 6 {
            let v = raw_next(&mut alice).await;
            if let Some(seq) = v["seq"].as_u64() {
                seqs.push(seq);
            }
        }
        assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "joined, then five @all");
        // An ack for a frame never sent is refused; a true one is taken.
        raw_send(&mut alice, json!({"type":"ack","seq":99}).to_string()).await;
        let refused = next_of(&mut alice, "error").await;
        assert_eq!(refused["code"], "bad_field");
        assert!(
            refused["message"].as_str().unwrap().contains("99"),
            "{refused}"
        );
        raw_send(&mut alice, json!({"type":"ack","seq":3}).to_string()).await;
        // The connection dies; what was not acknowledged comes again, in order, after since.
        drop(alice);
        let (mut alice, welcome) = member(&server, "alice", &k[0], Some(4)).await;
        assert_eq!(
            (welcome["resumed"].as_bool(), welcome["seq"].as_u64()),
            (Some(true), Some(6))
        );
        let again: Vec<u64> = vec![
            raw_next(&mut alice).await["seq"].as_u64().unwrap(),
            raw_next(&mut alice).await["seq"].as_u64().unwrap(),
        ];
        assert_eq!(again, vec![5, 6]);
        raw_send(&mut bob, fake_all(9, 16)).await;
        assert_eq!(raw_next(&mut alice).await["seq"], 7);
    });
}

#[test]
fn direct_messages_are_held_for_away_members_then_delivered() {
    let server = start(fast);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (alice_ws, _) = member(&server, "alice", &k[0], None).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut bob, "alice").await;
        drop(alice_ws);
        let alice_id = k[0].public().key_id().to_string();
        let id = bob.send_direct("alice", "are you there?").await.unwrap();
        let mut states = Vec::new();
        let mut resumed = None;
        within(10, "held then delivered", async {
            loop {
                match bob.next_event().await.unwrap() {
                    dyspatcher::session::Event::Delivery { id: d, to, state } => {
                        assert_eq!((d.as_str(), to.as_str()), (id.as_str(), alice_id.as_str()));
                        states.push(state);
                        if states.len() == 1 {
                            // Held: alice comes back and acknowledges what she is given.
                            let (mut ws, _) = member(&server, "alice", &k[0], Some(0)).await;
                            let direct = next_of(&mut ws, "direct").await;
                            assert_eq!(direct["id"].as_str(), Some(id.as_str()));
                            let seq = direct["seq"].as_u64().unwrap();
                            raw_send(&mut ws, json!({"type":"ack","seq":seq}).to_string()).await;
                            resumed = Some(ws);
                        } else {
                            break;
                        }
                    }
                    _ => continue,
                }
            }
        })
        .await;
        use dyspatcher::protocol::DeliveryState::*;
        assert_eq!(states, vec![Held, Delivered]);
    });
}

#[test]
fn leave_ends_the_membership_at_once() {
    let server = start(fast);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (mut alice, _) = member(&server, "alice", &k[0], None).await;
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        next_of(&mut alice, "joined").await;
        raw_send(&mut alice, json!({"type":"leave"}).to_string()).await;
        assert_eq!(next_of(&mut alice, "close").await["close"], 1000);
        let left = next_of(&mut bob, "left").await;
        assert_eq!(
            (left["name"].as_str(), left["reason"].as_str()),
            (Some("alice"), Some("left"))
        );
        server.output_containing("alice").await;
    });
}

#[test]
fn reserved_words_and_the_admins_name_in_any_case_are_refused() {
    let server = start(|c| c.admin_name = "BOSS".into());
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(1);
        for (name, why) in [
            ("admin", "reserved"),
            ("system", "reserved"),
            ("everyone", "reserved"),
            ("boss", "admin's name"),
        ] {
            let (mut ws, answer) = member(&server, name, &k[0], None).await;
            assert_eq!(answer["code"], "bad_name", "{name}: {answer}");
            assert!(
                answer["message"].as_str().unwrap().contains(why),
                "{answer}"
            );
            assert_eq!(next_of(&mut ws, "close").await["close"], 4005);
        }
    });
}

#[test]
fn a_reader_that_writes_but_does_not_read_still_gets_its_close_code() {
    let each = dyspatcher::config::MIN_MAILBOX_BYTES;
    let server = start(|c| {
        fast(c);
        c.limits.mailbox_bytes = each;
    });
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (alice, _) = member(&server, "alice", &k[0], None).await;
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        // Alice does not read while bob floods her; she keeps writing (acks of nothing new).
        // When the server closes her as too slow, her bytes are still arriving: dropping the
        // connection at once would answer them with a reset, and her kernel would discard the
        // close frame she has not read yet.
        let (mut tx, mut rx) = alice.split();
        let writing = smol::spawn(async move {
            use async_tungstenite::tungstenite::Message;
            let ack = json!({"type": "ack", "seq": 0}).to_string();
            while tx.send(Message::text(ack.clone())).await.is_ok() {
                smol::future::yield_now().await;
            }
        });
        for i in 0..60 {
            raw_send(&mut bob, fake_all(i, 24 * 1024)).await;
        }
        let away = next_of(&mut bob, "presence").await;
        assert_eq!(away["state"], "away");
        drop(writing);
        let end = within(10, "alice's close", async {
            use async_tungstenite::tungstenite::Message;
            use futures_lite::StreamExt;
            loop {
                match rx.next().await {
                    Some(Ok(Message::Close(f))) => return Ok(f.map(|f| u16::from(f.code))),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("end of stream".into()),
                }
            }
        })
        .await;
        assert_eq!(end, Ok(Some(4002)));
    });
}

#[test]
fn kick_with_minutes_bans_until_then_and_unban_lifts_it() {
    let server = start(fast);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (mut alice, _) = member(&server, "alice", &k[0], None).await;
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        next_of(&mut alice, "joined").await;
        let before = dyspatcher::protocol::now_ms();
        server.prompt("/kick alice 5");
        let kicked = next_of(&mut alice, "notice").await;
        assert_eq!(kicked["code"], "kicked");
        let until = kicked["until"].as_i64().unwrap();
        assert!((before + 5 * 60_000..before + 5 * 60_000 + 5_000).contains(&until));
        assert_eq!(next_of(&mut alice, "close").await["close"], 4000);
        assert_eq!(next_of(&mut bob, "left").await["reason"], "kicked");
        let (_, refused) = member(&server, "alice", &k[0], Some(9)).await;
        assert_eq!(refused["code"], "banned", "{refused}");
        assert_eq!(refused["until"].as_i64(), Some(until));
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("in 5 minutes"),
            "{refused}"
        );
        server.prompt("/bans");
        server.output_containing("may return in 5 minutes").await;
        server.prompt("/unban alice");
        server.output_containing("alice may join again").await;
        let (_alice, welcome) = member(&server, "alice", &k[0], None).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        // A ban has no end; the name is free for nobody else meanwhile is not promised.
        server.prompt("/ban alice");
        server.output_containing("alice was banned").await;
        let (_, refused) = member(&server, "alice", &k[0], None).await;
        assert_eq!(refused["code"], "banned");
        assert!(refused.get("until").is_none(), "{refused}");
        server.prompt("/unban nobody");
        server
            .output_containing("nobody is neither kicked nor banned")
            .await;
        server.prompt("/kick nobody");
        server.output_containing("no member named nobody").await;
    });
}

#[test]
fn an_away_mailbox_over_its_bound_drops_the_oldest_and_says_exactly_what() {
    let each = dyspatcher::config::MIN_MAILBOX_BYTES;
    let server = start(|c| {
        fast(c);
        c.limits.mailbox_bytes = each;
    });
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (alice, _) = member(&server, "alice", &k[0], None).await;
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        drop(alice);
        next_of(&mut bob, "presence").await;
        // 40 @all of about 32 KiB: 1.25 MiB for a 512 KiB mailbox.
        for i in 0..40 {
            raw_send(&mut bob, fake_all(i, 24 * 1024)).await;
            next_of(&mut bob, "ack").await;
        }
        let (mut alice, welcome) = member(&server, "alice", &k[0], Some(0)).await;
        assert_eq!(welcome["resumed"], true);
        let mut kept = Vec::new();
        let gap = loop {
            let v = raw_next(&mut alice).await;
            match v["type"].as_str() {
                Some("all") => kept.push(v["n"].as_u64().unwrap()),
                Some("gap") => break v,
                _ => {}
            }
        };
        // Bob's `joined` (never acknowledged) and the oldest @all went.
        let dropped = gap["dropped"].as_u64().unwrap();
        let all = gap["kinds"]["all"].as_u64().unwrap();
        assert_eq!(gap["kinds"]["joined"].as_u64(), Some(1), "{gap}");
        assert_eq!(dropped, all + 1, "{gap}");
        assert_eq!(all as usize + kept.len(), 40, "{gap}");
        // The oldest went: what is left is the newest, in order.
        assert_eq!(kept, (all..40).collect::<Vec<_>>());
        assert!(kept.len() * 24 * 1024 <= each, "{} kept", kept.len());
        let (first, last) = (
            gap["first_seq"].as_u64().unwrap(),
            gap["last_seq"].as_u64().unwrap(),
        );
        assert_eq!(
            last + 1 - first,
            dropped,
            "one contiguous range, oldest first"
        );
    });
}

#[test]
fn all_mailboxes_together_stay_under_the_total() {
    let each = dyspatcher::config::MIN_MAILBOX_BYTES;
    let server = start(|c| {
        fast(c);
        c.limits.mailbox_bytes = each;
        c.limits.mailbox_total = each;
    });
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(3);
        let (a, _) = member(&server, "alice", &k[0], None).await;
        let (c, _) = member(&server, "carol", &k[2], None).await;
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        drop(a);
        drop(c);
        for _ in 0..2 {
            next_of(&mut bob, "presence").await;
        }
        // 30 direct messages of 24 KiB to each of two away members: 1.4 MiB for a 512 KiB
        // total (an `@all` would be one frame kept by both, counted once).
        let own = k[1].public().key_id().to_string();
        for i in 0..60 {
            let to = k[if i % 2 == 0 { 0 } else { 2 }]
                .public()
                .key_id()
                .to_string();
            raw_send(&mut bob, fake_direct(i, &own, &to, 18 * 1024)).await;
            next_of(&mut bob, "ack").await;
        }
        let mut total_kept = 0;
        let mut total_dropped = 0;
        for (name, key) in [("alice", &k[0]), ("carol", &k[2])] {
            let (mut ws, _) = member(&server, name, key, Some(0)).await;
            let mut kept = 0;
            loop {
                let v = raw_next(&mut ws).await;
                match v["type"].as_str() {
                    Some("direct") => kept += 1,
                    Some("gap") => {
                        total_dropped += v["kinds"]["direct"].as_u64().unwrap();
                        break;
                    }
                    _ => {}
                }
            }
            total_kept += kept;
        }
        assert_eq!(total_kept + total_dropped, 60);
        assert!(total_kept as usize * 18 * 1024 <= each, "{total_kept} kept");
    });
}

#[test]
fn a_connected_reader_that_never_acknowledges_is_closed_as_too_slow_and_becomes_away() {
    let each = dyspatcher::config::MIN_MAILBOX_BYTES;
    let server = start(|c| {
        fast(c);
        c.limits.mailbox_bytes = each;
    });
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (mut alice, _) = member(&server, "alice", &k[0], None).await;
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        // Alice reads everything but acknowledges nothing.
        let reader = smol::spawn(async move {
            loop {
                let v = raw_next(&mut alice).await;
                if v.get("close").is_some() {
                    return v;
                }
            }
        });
        for i in 0..40 {
            raw_send(&mut bob, fake_all(i, 24 * 1024)).await;
        }
        assert_eq!(reader.await["close"], 4002);
        let away = next_of(&mut bob, "presence").await;
        assert_eq!(away["state"], "away");
    });
}

#[test]
fn the_prompt_lists_away_members_and_says_what_became_of_its_messages() {
    let server = start(fast);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(1);
        let alice = server.join("alice", &k[0]).await;
        server.output_containing("alice").await;
        drop(alice);
        assert!(server.output_containing("is away").await.contains("alice"));
        server.prompt("/users");
        let users = server.output_containing("1 away:").await;
        assert!(
            users.contains("alice") && users.contains("(away)"),
            "{users}"
        );
        server.prompt("@alice see you later");
        server.output_containing("held for alice (away)").await;
        let mut alice = server.join("alice", &k[0]).await;
        assert_eq!(next_message(&mut alice).await.text, "see you later");
        alice.ack().await.unwrap();
        server.output_containing("delivered to alice").await;
    });
}

#[test]
fn the_admins_web_seat_moderates_and_users_may_not() {
    let server = start(fast);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (mut web, welcome) = member(&server, "whatever", &admin_key(), None).await;
        assert_eq!(welcome["you"]["admin"], true);
        let (mut alice, _) = member(&server, "alice", &k[0], None).await;
        let (mut bob, _) = member(&server, "bobby", &k[1], None).await;
        raw_send(
            &mut bob,
            json!({"type":"moderate","action":"kick","name":"alice"}).to_string(),
        )
        .await;
        assert_eq!(next_of(&mut bob, "error").await["code"], "forbidden");
        for (bad, code) in [
            (json!({"type":"moderate","action":"kick"}), "bad_field"),
            (
                json!({"type":"moderate","action":"kick","name":"alice","minutes":0}),
                "bad_field",
            ),
            (
                json!({"type":"moderate","action":"ban","name":"nobody"}),
                "unknown_recipient",
            ),
            (
                json!({"type":"moderate","action":"dance","name":"alice"}),
                "bad_json",
            ),
        ] {
            raw_send(&mut web, bad.to_string()).await;
            assert_eq!(next_of(&mut web, "error").await["code"], code, "{bad}");
        }
        let cmd = json!({"type":"moderate","action":"kick","name":"alice","minutes":3});
        raw_send(&mut web, cmd.to_string()).await;
        let done = next_of(&mut web, "notice").await;
        assert_eq!(done["code"], "moderated");
        assert!(
            done["text"].as_str().unwrap().contains("alice was kicked"),
            "{done}"
        );
        assert_eq!(next_of(&mut alice, "notice").await["code"], "kicked");
        server.output_containing("(via web) alice was kicked").await;
        raw_send(
            &mut web,
            json!({"type":"moderate","action":"bans"}).to_string(),
        )
        .await;
        let list = next_of(&mut web, "notice").await;
        assert!(
            list["text"].as_str().unwrap().contains("in 3 minutes"),
            "{list}"
        );
        raw_send(
            &mut web,
            json!({"type":"moderate","action":"unban","name":"alice"}).to_string(),
        )
        .await;
        assert!(next_of(&mut web, "notice").await["text"]
            .as_str()
            .unwrap()
            .contains("may join again"));
    });
}

#[test]
fn malformed_sender_key_entries_and_a_direct_to_oneself_are_refused_by_name() {
    let server = start(fast);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(1);
        let (mut alice, _) = member(&server, "alice", &k[0], None).await;
        let own = k[0].public().key_id().to_string();
        let sender_key = |keys: Value| {
            json!({"type":"sender_key","skid":"0".repeat(32),"n":0,"commitment":"0".repeat(64),
                   "signature":"c2ln","keys":keys})
            .to_string()
        };
        for (keys, needle) in [
            (json!({"ab": "d3JhcA=="}), "64 lowercase hex"),
            (json!({"AB".repeat(32): "d3JhcA=="}), "64 lowercase hex"),
            (json!({"ab".repeat(32): ""}), "non-empty base64"),
        ] {
            raw_send(&mut alice, sender_key(keys)).await;
            let refused = next_of(&mut alice, "error").await;
            assert_eq!(refused["code"], "bad_field");
            assert!(
                refused["message"].as_str().unwrap().contains(needle),
                "{refused}"
            );
        }
        let direct = json!({"type":"direct","id":"0".repeat(32),"ts":dyspatcher::protocol::now_ms(),
            "to":own,"iv":"AAAAAAAAAAAAAAAA","ciphertext":"A".repeat(24),"keys":{own.clone():"d3JhcA=="},
            "signature":"c2ln"});
        raw_send(&mut alice, direct.to_string()).await;
        let refused = next_of(&mut alice, "error").await;
        assert_eq!(refused["code"], "bad_field", "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains("own key"),
            "{refused}"
        );
    });
}

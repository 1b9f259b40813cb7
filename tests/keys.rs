//! Public keys on request: the welcome and join notices carry none, `get_keys` answers them (and
//! refuses bad requests, each with its own message), clients check each key against its key ID,
//! and sender keys still reach everyone who was there, over real sockets.

mod common;

use base64::Engine;
use common::*;
use dyspatcher::crypto::PublicIdentity;
use dyspatcher::session::Event;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The next frame on a bare socket that is not a sequenced notice (joined, presence…).
async fn next_unsequenced(ws: &mut Raw) -> Value {
    loop {
        let v = raw_next(ws).await;
        if v.get("seq").is_none() || v["type"] == "welcome" {
            return v;
        }
    }
}

#[test]
fn the_welcome_and_join_notices_list_members_without_public_keys() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = raw(&server).await;
        let welcome = raw_join(&mut alice, "alice", &k[0], &k[0]).await;
        assert_eq!(welcome["type"], "welcome");
        let mut bob = raw(&server).await;
        let welcome = raw_join(&mut bob, "bobby", &k[1], &k[1]).await;
        let members = welcome["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{welcome}");
        for m in members.iter().chain([&welcome["you"]]) {
            let mut fields: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
            fields.sort();
            assert_eq!(fields, ["admin", "key_id", "name"], "{m}");
            assert!(m.to_string().len() <= 200, "{m}");
        }
        // Alice hears of bob with the same compact member.
        let joined = raw_next(&mut alice).await;
        assert_eq!(joined["type"], "joined");
        assert_eq!(
            joined["member"],
            json!({"name": "bobby", "key_id": k[1].public().key_id(), "admin": false})
        );
    });
}

#[test]
fn get_keys_answers_the_keys_of_members_and_lists_the_others_unknown() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = raw(&server).await;
        raw_join(&mut alice, "alice", &k[0], &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        let admin = admin_key().public().key_id().to_string();
        let stranger = k[2].public().key_id().to_string();
        let bob_id = k[1].public().key_id().to_string();
        let ask = json!({"type": "get_keys", "key_ids": [bob_id, admin, stranger, bob_id]});
        raw_send(&mut alice, ask.to_string()).await;
        let answer = next_unsequenced(&mut alice).await;
        assert_eq!(answer["type"], "keys", "{answer}");
        assert!(answer.get("seq").is_none(), "keys is not numbered");
        assert_eq!(answer["unknown"], json!([stranger]));
        let keys = answer["keys"].as_object().unwrap();
        assert_eq!(keys.len(), 2);
        for (key_id, spki) in keys {
            let der = B64.decode(spki.as_str().unwrap()).unwrap();
            // The key is the one its key ID names.
            assert_eq!(
                PublicIdentity::from_spki_der(&der).unwrap().key_id(),
                key_id
            );
        }
        // Bob leaves: his key is still answered (his last frames may still be on their way).
        bob.send_msg(&dyspatcher::protocol::ClientMsg::Leave {})
            .await
            .unwrap();
        loop {
            let v = raw_next(&mut alice).await;
            if v["type"] == "left" {
                break;
            }
        }
        raw_send(
            &mut alice,
            json!({"type": "get_keys", "key_ids": [bob_id]}).to_string(),
        )
        .await;
        let answer = next_unsequenced(&mut alice).await;
        assert!(answer["keys"].get(&bob_id).is_some(), "{answer}");
    });
}

#[test]
fn a_bad_get_keys_is_refused_with_what_is_wrong_and_the_connection_goes_on() {
    smol::block_on(async {
        let server = start(|c| {
            c.limits.rate_per_sec = 1000;
            c.limits.burst = 1000;
        });
        server.admin_ready().await;
        let k = keys(1);
        let mut ws = raw(&server).await;
        // Before the welcome: not_joined.
        let challenge = raw_next(&mut ws).await;
        assert_eq!(challenge["type"], "challenge");
        raw_send(
            &mut ws,
            json!({"type": "get_keys", "key_ids": [k[0].public().key_id()]}).to_string(),
        )
        .await;
        assert_eq!(raw_next(&mut ws).await["code"], "not_joined");
        drop(ws);
        let mut ws = raw(&server).await;
        raw_join(&mut ws, "alice", &k[0], &k[0]).await;
        let hex = "a".repeat(64);
        let too_many: Vec<String> = (0..257).map(|i| format!("{i:064x}")).collect();
        for (ask, code, says) in [
            (
                json!({"type": "get_keys", "key_ids": []}),
                "bad_field",
                "key_ids is empty",
            ),
            (
                json!({"type": "get_keys", "key_ids": too_many}),
                "bad_field",
                "at most 256 key IDs at a time, got 257",
            ),
            (
                json!({"type": "get_keys", "key_ids": [hex, "A".repeat(64)]}),
                "bad_field",
                "key_ids[1] is not 64 lowercase hex",
            ),
            (
                json!({"type": "get_keys", "key_ids": ["abc"]}),
                "bad_field",
                "key_ids[0] is not 64 lowercase hex",
            ),
            (json!({"type": "get_keys"}), "bad_json", "key_ids"),
            (json!({"type": "get_keys", "key_ids": [1]}), "bad_json", ""),
        ] {
            raw_send(&mut ws, ask.to_string()).await;
            let answer = next_unsequenced(&mut ws).await;
            assert_eq!(answer["type"], "error", "{ask}: {answer}");
            assert_eq!(answer["code"], code, "{ask}: {answer}");
            assert!(
                answer["message"].as_str().unwrap().contains(says),
                "{ask}: {answer}"
            );
        }
        // Exactly 256 is fine, and the connection was not harmed.
        let most: Vec<String> = (0..256).map(|i| format!("{i:064x}")).collect();
        raw_send(
            &mut ws,
            json!({"type": "get_keys", "key_ids": most}).to_string(),
        )
        .await;
        let answer = next_unsequenced(&mut ws).await;
        assert_eq!(answer["type"], "keys", "{answer}");
        assert_eq!(answer["unknown"].as_array().unwrap().len(), 256);
    });
}

#[test]
fn with_only_admin_a_hidden_member_s_key_is_unknown() {
    smol::block_on(async {
        let server = start(|c| c.only_admin = true);
        server.admin_ready().await;
        let k = keys(2);
        let _bob = server.join("bobby", &k[1]).await;
        let mut alice = raw(&server).await;
        raw_join(&mut alice, "alice", &k[0], &k[0]).await;
        let bob_id = k[1].public().key_id().to_string();
        let admin = admin_key().public().key_id().to_string();
        raw_send(
            &mut alice,
            json!({"type": "get_keys", "key_ids": [bob_id, admin]}).to_string(),
        )
        .await;
        let answer = next_unsequenced(&mut alice).await;
        assert_eq!(answer["unknown"], json!([bob_id]), "{answer}");
        assert!(answer["keys"].get(&admin).is_some(), "{answer}");
    });
}

#[test]
fn sender_keys_reach_everyone_whose_key_was_fetched_and_members_verify_lazily() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(6);
        let names = ["alice", "bobby", "carol", "david", "erika", "frank"];
        let mut clients = Vec::new();
        for (name, key) in names.iter().zip(&k) {
            clients.push(server.join(name, key).await);
        }
        for c in clients.iter_mut() {
            wait_joined(c, "frank").await;
        }
        let mut alice = clients.remove(0);
        // Nobody holds anybody's key yet: the welcome had none.
        assert!(!alice.session().has_key(k[1].public().key_id()));
        alice.send_all("to everyone").await.unwrap();
        for (i, c) in clients.iter_mut().enumerate() {
            let m = next_message(c).await;
            assert_eq!(
                (m.text.as_str(), m.from_name.as_str()),
                ("to everyone", "alice")
            );
            assert!(c.session().has_key(k[0].public().key_id()), "{i}");
            // A member who only received holds the key of the one who spoke, and no other.
            for (j, other) in k.iter().enumerate().skip(1) {
                assert_eq!(c.session().has_key(other.public().key_id()), j == i + 1);
            }
        }
        // The admin's prompt opened it too (its own key fetch).
        server.output_containing("to everyone").await;
    });
}

#[test]
fn a_direct_message_from_a_sender_whose_key_is_not_fetched_waits_for_it_then_verifies() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        assert!(!bob.session().has_key(k[0].public().key_id()));
        alice.send_direct("bobby", "first words").await.unwrap();
        // Bob's session parks the message, asks for alice's key, then verifies and opens it.
        let m = next_message(&mut bob).await;
        assert_eq!(m.text, "first words");
        assert!(bob.session().has_key(k[0].public().key_id()));
        // Nothing was refused on the way.
        alice.send_direct("bobby", "second").await.unwrap();
        match next_significant(&mut bob).await {
            Event::Message(m) => assert_eq!(m.text, "second"),
            e => panic!("{e:?}"),
        }
    });
}

#[test]
fn members_who_join_together_are_announced_once_each_in_order() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(5);
        let mut alice = raw(&server).await;
        raw_join(&mut alice, "alice", &k[0], &k[0]).await;
        let names = ["bobby", "carol", "david", "erika"];
        let mut others = Vec::new();
        for (name, key) in names.iter().zip(&k[1..]) {
            let mut ws = raw(&server).await;
            let welcome = raw_join(&mut ws, name, key, key).await;
            assert_eq!(welcome["type"], "welcome");
            others.push(ws);
        }
        // One `joined` each, or several in one (`members`): each newcomer once, in order.
        let mut heard = Vec::new();
        while heard.len() < names.len() {
            let v = raw_next(&mut alice).await;
            assert_eq!(v["type"], "joined", "{v}");
            match (v.get("member"), v.get("members")) {
                (Some(m), None) => heard.push(m["name"].as_str().unwrap().to_string()),
                (None, Some(list)) => heard.extend(
                    list.as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["name"].as_str().unwrap().to_string()),
                ),
                _ => panic!("{v}"),
            }
        }
        assert_eq!(heard, names);
        // The last to join heard of nobody: its welcome listed everyone.
        raw_send(
            others.last_mut().unwrap(),
            json!({"type": "get_keys", "key_ids": [k[0].public().key_id()]}).to_string(),
        )
        .await;
        assert_eq!(raw_next(others.last_mut().unwrap()).await["type"], "keys");
    });
}

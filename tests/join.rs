//! Joining: proofs of possession, names, keys, the admin's seat.
mod common;
use common::*;

#[test]
fn valid_proof_joins_and_lists_members() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let keys = keys(2);
        let mut alice = server.join("alice", &keys[0]).await;
        let names: Vec<_> = alice
            .session()
            .members()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(names, ["ADMIN", "alice"]);
        let mut bob = server.join("bobby", &keys[1]).await;
        assert_eq!(bob.session().members().len(), 3);
        // Each member's key ID is the SHA-256 of the key it proved.
        assert_eq!(
            bob.session().key_id_of("alice"),
            Some(keys[0].public().key_id())
        );
        // A closed connection makes a member away, not gone; leaving is explicit.
        alice
            .send_msg(&dyspatcher::protocol::ClientMsg::Leave {})
            .await
            .unwrap();
        assert_eq!(wait_left(&mut bob, "alice").await, "left");
    });
}

#[test]
fn bad_signature_is_refused() {
    smol::block_on(async {
        let server = start(|_| {});
        let keys = keys(2);
        let mut ws = raw(&server).await;
        let challenge = raw_next(&mut ws).await;
        assert_eq!(challenge["type"], "challenge");
        let join = serde_json::json!({
            "type": "join", "name": "alice",
            "public_key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, keys[0].public().spki_der()),
            "signature": "AAAA",
        });
        raw_send(&mut ws, join.to_string()).await;
        let answer = raw_next(&mut ws).await;
        assert_eq!(answer["code"], "bad_proof", "{answer}");
        assert_eq!(raw_next(&mut ws).await["close"], 4005);
    });
}

#[test]
fn someone_elses_key_without_its_private_half_is_refused() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let keys = keys(2);
        // A user presenting another user's public key.
        let mut ws = raw(&server).await;
        let answer = raw_join(&mut ws, "mallory", &keys[1], &keys[0]).await;
        assert_eq!(answer["code"], "bad_proof", "{answer}");
        // And the admin's: knowing the admin's public key does not open the admin's seat.
        let mut ws = raw(&server).await;
        let answer = raw_join(&mut ws, "mallory", &keys[1], &admin_key()).await;
        assert_eq!(answer["code"], "bad_proof", "{answer}");
        // A proof made for another challenge does not count either.
        let mut ws = raw(&server).await;
        let _challenge = raw_next(&mut ws).await;
        let sig = keys[0].sign(&dyspatcher::protocol::join_bytes(
            "b3RoZXI=",
            "alice",
            keys[0].public().key_id(),
        ));
        let b64 = base64::engine::general_purpose::STANDARD;
        let join = serde_json::json!({"type": "join", "name": "alice",
            "public_key": base64::Engine::encode(&b64, keys[0].public().spki_der()),
            "signature": base64::Engine::encode(&b64, sig)});
        raw_send(&mut ws, join.to_string()).await;
        assert_eq!(raw_next(&mut ws).await["code"], "bad_proof");
    });
}

#[test]
fn names_must_follow_the_rule_and_be_unique() {
    smol::block_on(async {
        let server = start(|_| {});
        let keys = keys(4);
        for bad in ["Alice", "abc", "al ice", "abcdefghijklmnop", "ADMIN"] {
            let mut ws = raw(&server).await;
            let answer = raw_join(&mut ws, bad, &keys[0], &keys[0]).await;
            assert_eq!(answer["code"], "bad_name", "{bad}: {answer}");
            assert!(answer["message"].as_str().unwrap().contains("4 to 15"));
        }
        let _alice = server.join("alice", &keys[0]).await;
        let mut ws = raw(&server).await;
        let answer = raw_join(&mut ws, "alice", &keys[1], &keys[1]).await;
        assert_eq!(answer["code"], "name_taken", "{answer}");
        let mut ws = raw(&server).await;
        // The same key again takes over, under the member's name.
        let answer = raw_join(&mut ws, "alice2", &keys[0], &keys[0]).await;
        assert_eq!(answer["type"], "welcome", "{answer}");
        assert_eq!(answer["you"]["name"], "alice", "{answer}");
    });
}

#[test]
fn small_or_foreign_keys_are_refused() {
    smol::block_on(async {
        let server = start(|_| {});
        let b64 = base64::engine::general_purpose::STANDARD;
        let small = std::fs::read_to_string(fixture("small1024.pem")).unwrap();
        let small = rsa::PublicKey::from(
            <rsa::PrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&small).unwrap(),
        );
        let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&small).unwrap();
        for (public_key, expect) in [
            (base64::Engine::encode(&b64, der.as_bytes()), "1024 bits"),
            ("not base64!".to_string(), "not base64"),
            (
                base64::Engine::encode(&b64, b"not a key"),
                "not an RSA public key",
            ),
        ] {
            let mut ws = raw(&server).await;
            raw_next(&mut ws).await;
            let join = serde_json::json!({"type": "join", "name": "alice", "public_key": public_key, "signature": "AAAA"});
            raw_send(&mut ws, join.to_string()).await;
            let answer = raw_next(&mut ws).await;
            assert_eq!(answer["code"], "bad_key", "{answer}");
            assert!(
                answer["message"].as_str().unwrap().contains(expect),
                "{answer}"
            );
        }
    });
}

#[test]
fn messages_before_join_and_second_joins_are_refused() {
    smol::block_on(async {
        let server = start(|_| {});
        let keys = keys(1);
        let mut ws = raw(&server).await;
        raw_next(&mut ws).await;
        raw_send(
            &mut ws,
            r#"{"type":"key_request","to":"x","skid":"00000000000000000000000000000000","n":0}"#
                .into(),
        )
        .await;
        assert_eq!(raw_next(&mut ws).await["code"], "not_joined");
        let mut ws = raw(&server).await;
        assert_eq!(
            raw_join(&mut ws, "alice", &keys[0], &keys[0]).await["type"],
            "welcome"
        );
        raw_send(
            &mut ws,
            r#"{"type":"join","name":"alice","public_key":"","signature":""}"#.into(),
        )
        .await;
        loop {
            let m = raw_next(&mut ws).await;
            if m["type"] == "error" {
                assert_eq!(m["code"], "already_joined");
                break;
            }
        }
    });
}

#[test]
fn the_admin_web_seat_is_one_at_most_and_a_newer_one_takes_over() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let admin = admin_key();
        let web = server.join("whatever", &admin).await;
        // The typed name is replaced by the admin's.
        assert_eq!(web.session().name(), Some("ADMIN"));
        server
            .output_containing("the admin's web seat connected")
            .await;
        let mut ws = raw(&server).await;
        let answer = raw_join(&mut ws, "whatever", &admin, &admin).await;
        assert_eq!(answer["type"], "welcome", "{answer}");
        assert_eq!(answer["resumed"], true, "{answer}");
        let mut web = web.into_websocket();
        let closed = within(10, "the old seat's close", async {
            use futures_lite::StreamExt;
            loop {
                match web.next().await {
                    Some(Ok(async_tungstenite::tungstenite::Message::Close(f))) => {
                        return f.map(|f| u16::from(f.code))
                    }
                    Some(Ok(_)) => continue,
                    _ => return None,
                }
            }
        })
        .await;
        assert_eq!(closed, Some(4006));
        drop(ws);
        server
            .output_containing("the admin's web seat is away")
            .await;
        let again = server.join("whatever", &admin).await;
        assert_eq!(again.session().name(), Some("ADMIN"));
    });
}

#[test]
fn join_must_come_in_time() {
    smol::block_on(async {
        let server = start(|c| c.limits.join_timeout = std::time::Duration::from_millis(300));
        let mut ws = raw(&server).await;
        raw_next(&mut ws).await;
        let answer = raw_next(&mut ws).await;
        assert_eq!(answer["code"], "join_timeout", "{answer}");
        assert_eq!(raw_next(&mut ws).await["close"], 4005);
    });
}

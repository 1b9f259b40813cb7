//! Messages: direct, @all under sender keys, rotation, key requests, tampering, replays.
mod common;
use common::*;
use dyspatcher::protocol::{ClientMsg, ServerMsg};
use dyspatcher::session::{Destination, Event};

#[test]
fn a_direct_message_reaches_its_recipient_and_nobody_else() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        let mut carol = server.join("carol", &k[2]).await;
        wait_joined(&mut alice, "carol").await;
        let long = "é".repeat(5000); // far beyond what raw RSA could carry
        alice.send_direct("bobby", &long).await.unwrap();
        let m = next_message(&mut bob).await;
        assert_eq!(
            (m.from_name.as_str(), m.text.as_str()),
            ("alice", long.as_str())
        );
        assert_eq!(m.to, Destination::Direct(k[1].public().key_id().into()));
        // Carol's next frame is the sentinel: the direct message never reached her.
        alice.send_direct("carol", "sentinel").await.unwrap();
        let raw = within(10, "carol's frame", async {
            loop {
                let msg = carol.recv_msg().await.unwrap();
                if !matches!(msg, ServerMsg::Joined { .. }) {
                    return msg;
                }
            }
        })
        .await;
        let ServerMsg::Direct(d) = &raw else {
            panic!("expected the sentinel, got {raw:?}")
        };
        assert_eq!(d.to, k[2].public().key_id());
        // And the admin's prompt saw neither (it only shows what is addressed to the admin).
        alice.send_direct("ADMIN", "for the admin").await.unwrap();
        let line = server.output_containing("→").await;
        assert!(
            line.contains("alice") && line.contains("for the admin"),
            "{line}"
        );
    });
}

#[test]
fn all_reaches_every_member_and_opens() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        let mut carol = server.join("carol", &k[2]).await;
        wait_joined(&mut alice, "carol").await;
        wait_joined(&mut bob, "carol").await;
        for i in 0..3 {
            alice.send_all(&format!("hello {i}")).await.unwrap();
        }
        for c in [&mut bob, &mut carol] {
            for i in 0..3 {
                let m = next_message(c).await;
                assert_eq!(
                    (m.text.as_str(), &m.to),
                    (format!("hello {i}").as_str(), &Destination::All)
                );
            }
        }
        assert!(server.output_containing("hello 2").await.contains("alice"));
        // The admin answers from the prompt; everyone opens it.
        server.prompt("@all from the prompt");
        for c in [&mut alice, &mut bob, &mut carol] {
            let m = next_message(c).await;
            assert_eq!(m.text, "from the prompt");
            assert_eq!(m.from_name, "ADMIN");
        }
    });
}

#[test]
fn no_server_message_carries_a_group_key() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        alice.send_all("one").await.unwrap();
        server.prompt("@all two");
        let mut seen = Vec::new();
        within(10, "two messages", async {
            let mut opened = 0;
            while opened < 2 {
                let text = bob.recv_text().await.unwrap();
                seen.push(text.clone());
                let msg: ServerMsg = serde_json::from_str(&text).unwrap();
                if matches!(msg, ServerMsg::All(_)) {
                    opened += 1;
                }
                bob.process(msg).await.unwrap();
            }
        })
        .await;
        for text in &seen {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            // Sender keys come only wrapped for this one recipient, never as a shared key.
            if v["type"] == "sender_key" {
                assert!(
                    v.get("wrapped").is_some() && v.get("keys").is_none(),
                    "{text}"
                );
            }
            for field in ["group_key", "aes_key", "key"] {
                assert!(
                    v.get(field).is_none() || v["type"] == "direct",
                    "{field} in {text}"
                );
            }
        }
    });
}

#[test]
fn a_newcomer_cannot_open_earlier_all_messages() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        // Capture what alice sends before carol exists.
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        let early = alice.session_mut().seal_all("before carol").unwrap();
        for m in &early {
            alice.send_msg(m).await.unwrap();
        }
        assert_eq!(next_message(&mut bob).await.text, "before carol");
        let mut carol = server.join("carol", &k[2]).await;
        wait_joined(&mut alice, "carol").await;
        alice.send_all("after carol").await.unwrap();
        assert_eq!(next_message(&mut carol).await.text, "after carol");
        // Carol holds alice's chain from index 1 on; the earlier message (index 0) stays closed,
        // even when handed to her directly.
        let ClientMsg::All(a) = early.last().unwrap().clone() else {
            panic!()
        };
        let relayed = ServerMsg::All(dyspatcher::protocol::AllIn {
            id: "0123456789abcdef0123456789abcdef".into(),
            ts: a.ts,
            from: dyspatcher::protocol::Sender {
                name: "alice".into(),
                key_id: k[0].public().key_id().into(),
            },
            skid: a.skid,
            n: a.n,
            iv: a.iv,
            ciphertext: a.ciphertext,
            signature: a.signature,
            via: None,
        });
        let out = carol.session_mut().handle(relayed);
        assert!(
            matches!(&out.events[..], [Event::Rejected { .. }]),
            "{:?}",
            out.events
        );
    });
}

#[test]
fn after_a_member_leaves_or_is_kicked_all_uses_fresh_sender_keys() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(4);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        let mut carol = server.join("carol", &k[2]).await;
        let dave = server.join("david", &k[3]).await;
        wait_joined(&mut alice, "david").await;
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        let first = alice.session_mut().seal_all("to four").unwrap();
        let skid_of = |msgs: &[ClientMsg]| match msgs.last() {
            Some(ClientMsg::All(a)) => a.skid.clone(),
            _ => panic!(),
        };
        let given = |msgs: &[ClientMsg]| -> Vec<String> {
            msgs.iter()
                .filter_map(|m| match m {
                    ClientMsg::SenderKey(s) => Some(s.keys.keys().cloned().collect::<Vec<_>>()),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        assert!(given(&first).contains(&k[2].public().key_id().to_string()));
        for m in &first {
            alice.send_msg(m).await.unwrap();
        }
        carol
            .send_msg(&dyspatcher::protocol::ClientMsg::Leave {})
            .await
            .unwrap();
        assert_eq!(wait_left(&mut alice, "carol").await, "left");
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        let second = alice.session_mut().seal_all("carol gone").unwrap();
        assert_ne!(skid_of(&first), skid_of(&second));
        assert!(!given(&second).contains(&k[2].public().key_id().to_string()));
        for m in &second {
            alice.send_msg(m).await.unwrap();
        }
        server.prompt("/kick david");
        assert_eq!(wait_left(&mut alice, "david").await, "kicked");
        drop(dave);
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        let third = alice.session_mut().seal_all("david gone").unwrap();
        assert_ne!(skid_of(&second), skid_of(&third));
        assert!(!given(&third).contains(&k[3].public().key_id().to_string()));
        for m in &third {
            alice.send_msg(m).await.unwrap();
        }
        for text in ["to four", "carol gone", "david gone"] {
            assert_eq!(next_message(&mut bob).await.text, text);
        }
    });
}

#[test]
fn a_message_before_its_sender_key_opens_once_the_key_comes() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        // Alice sends the message but holds back the distribution, as when she had not yet seen
        // bob join: bob must ask, and alice answers.
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        let msgs = alice.session_mut().seal_all("asked for").unwrap();
        let (dist, msg): (Vec<_>, Vec<_>) = msgs
            .into_iter()
            .partition(|m| matches!(m, ClientMsg::SenderKey(_)));
        assert_eq!(dist.len(), 1);
        alice.send_msg(&msg[0]).await.unwrap();
        // Alice's client answers bob's key request on its own.
        let answered = smol::spawn(async move {
            loop {
                let e = alice.next_event().await.unwrap();
                if let Event::Ack(_) = e {
                    continue;
                }
            }
        });
        assert_eq!(next_message(&mut bob).await.text, "asked for");
        drop(answered);
    });
}

#[test]
fn altered_signatures_and_ciphertexts_are_rejected() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        let bob_id = k[1].public().key_id().to_string();
        let flip = |s: &str| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut bytes = b64.decode(s).unwrap();
            bytes[0] ^= 1;
            b64.encode(bytes)
        };
        alice.fetch_keys(vec![bob_id.clone()]).await.unwrap();
        let ClientMsg::Direct(mut d) = alice.session_mut().seal_direct(&bob_id, "x").unwrap()
        else {
            panic!()
        };
        d.signature = flip(&d.signature);
        alice.send_msg(&ClientMsg::Direct(d)).await.unwrap();
        let ClientMsg::Direct(mut d) = alice.session_mut().seal_direct(&bob_id, "y").unwrap()
        else {
            panic!()
        };
        d.ciphertext = flip(&d.ciphertext);
        alice.send_msg(&ClientMsg::Direct(d)).await.unwrap();
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        let mut msgs = alice.session_mut().seal_all("z").unwrap();
        if let Some(ClientMsg::All(a)) = msgs.last_mut() {
            a.ciphertext = flip(&a.ciphertext);
        }
        for m in &msgs {
            alice.send_msg(m).await.unwrap();
        }
        for _ in 0..3 {
            match next_significant(&mut bob).await {
                Event::Rejected { from_name, reason } => {
                    assert_eq!(from_name, "alice");
                    assert!(reason.contains("signature does not verify"), "{reason}");
                }
                e => panic!("an altered message was shown: {e:?}"),
            }
        }
        alice.send_direct("bobby", "intact").await.unwrap();
        assert_eq!(next_message(&mut bob).await.text, "intact");
    });
}

#[test]
fn a_replayed_id_is_dropped() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        alice
            .fetch_keys(vec![k[1].public().key_id().to_string()])
            .await
            .unwrap();
        let msg = alice
            .session_mut()
            .seal_direct(k[1].public().key_id(), "once")
            .unwrap();
        alice.send_msg(&msg).await.unwrap();
        alice.send_msg(&msg).await.unwrap();
        assert_eq!(next_message(&mut bob).await.text, "once");
        let refusal = within(10, "the refusal", async {
            loop {
                if let Event::Error { code, .. } = alice.next_event().await.unwrap() {
                    return code;
                }
            }
        })
        .await;
        assert_eq!(refusal, dyspatcher::protocol::ErrorCode::DuplicateId);
        // A stale timestamp is refused too.
        let ClientMsg::Direct(mut d) = alice
            .session_mut()
            .seal_direct(k[1].public().key_id(), "old")
            .unwrap()
        else {
            panic!()
        };
        d.ts -= 10 * 60 * 1000;
        alice.send_msg(&ClientMsg::Direct(d)).await.unwrap();
        let refusal = within(10, "the refusal", async {
            loop {
                if let Event::Error { code, .. } = alice.next_event().await.unwrap() {
                    return code;
                }
            }
        })
        .await;
        assert_eq!(refusal, dyspatcher::protocol::ErrorCode::Stale);
    });
}

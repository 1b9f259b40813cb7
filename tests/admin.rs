//! The admin: prompt commands, welcome, kick, the web seat mirroring the prompt, and the options
//! that shape what users may do.
mod common;
use common::*;
use dyspatcher::protocol::{ErrorCode, Via};
use dyspatcher::session::{Destination, Event};

#[test]
fn welcome_is_sent_end_to_end_from_the_admin() {
    smol::block_on(async {
        let server = start(|c| c.welcome = Some("Welcome to the <b>chat</b>".into()));
        server.admin_ready().await;
        let k = keys(1);
        let mut alice = server.join("alice", &k[0]).await;
        let m = next_message(&mut alice).await;
        assert_eq!(m.text, "Welcome to the <b>chat</b>");
        assert_eq!(m.from_name, "ADMIN");
        assert_eq!(m.via, Some(Via::Prompt));
        assert_eq!(m.to, Destination::Direct(k[0].public().key_id().into()));
    });
}

#[test]
fn kick_disconnects_with_a_reason_and_others_are_told() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        server.prompt("/kick nobody");
        assert!(server
            .output_containing("no member named")
            .await
            .contains("nobody"));
        server.prompt("/kick bobby");
        server.output_containing("bobby was kicked").await;
        assert_eq!(wait_left(&mut alice, "bobby").await, "kicked");
        let end = within(10, "the close", async {
            loop {
                if let Err(e) = bob.next_event().await {
                    return e.to_string();
                }
            }
        })
        .await;
        assert!(
            end.contains("4000") && end.contains("kicked by the admin"),
            "{end}"
        );
    });
}

#[test]
fn prompt_commands_answer() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(1);
        let _alice = server.join("alice", &k[0]).await;
        server.output_containing("alice").await;
        server.prompt("/u");
        let users = server.output_containing("online, 0 away:").await;
        assert!(
            users.contains("alice") && users.contains(&k[0].public().key_id()[..12]),
            "{users}"
        );
        assert!(
            users.contains("ADMIN") && users.contains("(admin)"),
            "{users}"
        );
        server.prompt("/k pub");
        assert!(server
            .output_containing("BEGIN PUBLIC KEY")
            .await
            .contains("END PUBLIC KEY"));
        server.prompt("/key private");
        let private = within(10, "the private key", async {
            loop {
                if let Ok(dyspatcher::console::Line::Secret(s)) = server.running.output.recv().await
                {
                    return s;
                }
            }
        })
        .await;
        assert!(private.contains("BEGIN PRIVATE KEY"));
        server.prompt("/dance");
        assert!(server
            .output_containing("unknown command")
            .await
            .contains("/help"));
        server.prompt("@nobody hi");
        server.output_containing("no member named nobody").await;
        server.prompt("/h");
        server.output_containing("/kick NAME").await;
    });
}

#[test]
fn the_web_seat_and_the_prompt_mirror_each_other() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(1);
        let mut alice = server.join("alice", &k[0]).await;
        let mut web = server.join("anything", &admin_key()).await;
        server.output_containing("web seat connected").await;
        wait_joined(&mut alice, "ADMIN").await;
        // Prompt → alice: the web seat sees it too, marked as sent from the prompt.
        server.prompt("@alice from the prompt");
        let m = next_message(&mut alice).await;
        assert_eq!(
            (m.text.as_str(), m.via),
            ("from the prompt", Some(Via::Prompt))
        );
        let m = next_message(&mut web).await;
        assert_eq!(
            (m.text.as_str(), m.via),
            ("from the prompt", Some(Via::Prompt))
        );
        // Web seat → alice: the prompt shows it, marked via web.
        web.send_direct("alice", "from the web").await.unwrap();
        assert_eq!(next_message(&mut alice).await.via, Some(Via::Web));
        let line = server.output_containing("from the web").await;
        assert!(
            line.contains("(via web)") && line.contains("→ alice"),
            "{line}"
        );
        // Alice → admin reaches both endpoints.
        alice.send_direct("ADMIN", "to both").await.unwrap();
        assert_eq!(next_message(&mut web).await.text, "to both");
        assert!(server.output_containing("to both").await.contains("alice"));
        // @all from the web seat: alice and the prompt open it.
        web.send_all("web to all").await.unwrap();
        assert_eq!(next_message(&mut alice).await.text, "web to all");
        assert!(server
            .output_containing("web to all")
            .await
            .contains("(via web) → @all"));
        // @all from the prompt: the web seat opens it.
        server.prompt("@all prompt to all");
        assert_eq!(next_message(&mut web).await.text, "prompt to all");
        // Admin to admin: between the two endpoints.
        web.send_direct("ADMIN", "note to self").await.unwrap();
        assert!(server
            .output_containing("note to self")
            .await
            .contains("(via web) → ADMIN"));
    });
}

#[test]
fn disable_all_stops_users_but_not_the_admin() {
    smol::block_on(async {
        let server = start(|c| c.disable_all = true);
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        assert!(alice.session().options().unwrap().disable_all);
        // The client refuses locally; a client that ignores the option is refused by the server.
        assert!(alice.send_all("nope").await.is_err());
        let mut sneaky = dyspatcher::session::Session::new(k[0].clone());
        sneaky.join_local(
            "alice",
            alice.session().members().into_iter().cloned().collect(),
            dyspatcher::protocol::Options {
                admin_name: "ADMIN".into(),
                disable_all: false,
                only_admin: false,
                remember: true,
                groups: Default::default(),
            },
        );
        for m in sneaky.seal_all("forced").unwrap() {
            alice.send_msg(&m).await.unwrap();
        }
        match next_significant(&mut alice).await {
            Event::Error { code, message, .. } => {
                assert_eq!(code, ErrorCode::Forbidden);
                assert!(message.contains("@all is disabled"));
            }
            e => panic!("{e:?}"),
        }
        server.prompt("@all admin may");
        assert_eq!(next_message(&mut bob).await.text, "admin may");
    });
}

#[test]
fn only_admin_hides_users_from_each_other() {
    smol::block_on(async {
        let server = start(|c| c.only_admin = true);
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        // Users see themselves and the admin only; no join of other users reaches them.
        let names: Vec<_> = bob
            .session()
            .members()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(names, ["ADMIN", "bobby"]);
        assert!(bob.session().options().unwrap().disable_all);
        // The admin sees everyone.
        server.prompt("/users");
        let users = server.output_containing("online, 0 away:").await;
        assert!(
            users.contains("alice") && users.contains("bobby"),
            "{users}"
        );
        let web = server.join("x", &admin_key()).await;
        assert_eq!(web.session().members().len(), 3);
        // A user cannot write to another user, even knowing the key.
        let msg = alice
            .session_mut()
            .seal_direct(k[0].public().key_id(), "self")
            .unwrap();
        let dyspatcher::protocol::ClientMsg::Direct(mut d) = msg else {
            panic!()
        };
        d.to = k[1].public().key_id().into();
        d.keys = [
            (d.to.clone(), d.keys.values().next().unwrap().clone()),
            (
                k[0].public().key_id().to_string(),
                d.keys.values().next().unwrap().clone(),
            ),
        ]
        .into();
        alice
            .send_msg(&dyspatcher::protocol::ClientMsg::Direct(d))
            .await
            .unwrap();
        // A hidden member is answered exactly as an absent one: no presence oracle.
        let hidden = match next_significant(&mut alice).await {
            Event::Error { code, message, .. } => (code, message),
            e => panic!("{e:?}"),
        };
        let mut d = match alice
            .session_mut()
            .seal_direct(k[0].public().key_id(), "self")
            .unwrap()
        {
            dyspatcher::protocol::ClientMsg::Direct(d) => d,
            _ => panic!(),
        };
        let absent = "ab".repeat(32);
        d.keys = [
            (absent.clone(), d.keys.values().next().unwrap().clone()),
            (
                k[0].public().key_id().to_string(),
                d.keys.values().next().unwrap().clone(),
            ),
        ]
        .into();
        d.to = absent;
        alice
            .send_msg(&dyspatcher::protocol::ClientMsg::Direct(d))
            .await
            .unwrap();
        let missing = match next_significant(&mut alice).await {
            Event::Error { code, message, .. } => (code, message),
            e => panic!("{e:?}"),
        };
        assert_eq!(hidden, missing);
        assert_eq!(hidden.0, ErrorCode::UnknownRecipient);
        // But both ways with the admin work.
        alice.send_direct("ADMIN", "hello admin").await.unwrap();
        assert!(server
            .output_containing("hello admin")
            .await
            .contains("alice"));
        server.prompt("@bobby hello bobby");
        assert_eq!(next_message(&mut bob).await.text, "hello bobby");
        // A third user's join and leave stay hidden from the others.
        let carol = server.join("carol", &k[2]).await;
        drop(carol);
        server.output_containing("carol (").await;
        server.prompt("@all to everyone");
        assert_eq!(next_message(&mut bob).await.text, "to everyone");
        assert!(bob.session().key_id_of("carol").is_none());
    });
}

#[test]
fn the_chat_works_while_the_admin_key_is_being_made() {
    smol::block_on(async {
        let server = start(|c| {
            c.admin_key = dyspatcher::config::AdminKey::Generate(4096);
            c.welcome = Some("late welcome".into());
        });
        server
            .output_containing("generating the admin's 4096-bit RSA key")
            .await;
        // Users join at once; the admin is not there yet.
        let k = keys(1);
        let mut alice = server.join("alice", &k[0]).await;
        let names: Vec<_> = alice
            .session()
            .members()
            .iter()
            .map(|m| m.name.clone())
            .collect();
        assert_eq!(names, ["alice"]);
        // When the key is ready the admin joins, and alice still gets the welcome.
        within(120, "the admin", async {
            wait_joined(&mut alice, "ADMIN").await
        })
        .await;
        let m = within(120, "the welcome", next_message(&mut alice)).await;
        assert_eq!(
            (m.text.as_str(), m.from_name.as_str()),
            ("late welcome", "ADMIN")
        );
    });
}

#[test]
fn garbage_wrapped_keys_for_the_admin_cost_a_budget_and_answer_nothing_different() {
    smol::block_on(async {
        let server = start(|c| {
            c.limits.rate_per_sec = 100_000;
            c.limits.burst = 100_000;
        });
        server.admin_ready().await;
        let k = keys(3);
        let mut mallory = server.join("mallory", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        let mut carol = server.join("carol", &k[2]).await;
        wait_joined(&mut mallory, "carol").await;
        wait_joined(&mut bob, "carol").await;
        let admin = admin_key().public().key_id().to_string();
        let floods = dyspatcher::console::KEY_OPS_PER_MINUTE as usize + 80;
        let mut ids = Vec::new();
        mallory.fetch_keys(vec![admin.clone()]).await.unwrap();
        for i in 0..floods {
            let msg = mallory.session_mut().seal_direct(&admin, "x").unwrap();
            let dyspatcher::protocol::ClientMsg::Direct(mut d) = msg else {
                panic!()
            };
            // Half exactly one block long, half shorter: neither opens.
            let len = if i % 2 == 0 { 256 } else { 100 };
            let garbage = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                vec![i as u8; len],
            );
            d.keys.insert(admin.clone(), garbage);
            ids.push(d.id.clone());
            mallory
                .send_msg(&dyspatcher::protocol::ClientMsg::Direct(d))
                .await
                .unwrap();
        }
        // Meanwhile bob's @all reach carol, all and in order.
        for i in 0..20 {
            bob.send_all(&format!("b{i}")).await.unwrap();
        }
        for i in 0..20 {
            assert_eq!(next_message(&mut carol).await.text, format!("b{i}"));
        }
        // Mallory hears an ack for every one, and nothing else: no answer tells garbage apart.
        within(30, "mallory's acks", async {
            let mut acked = 0;
            while acked < floods {
                match mallory.next_event().await.unwrap() {
                    Event::Ack(id) => {
                        assert!(ids.contains(&id));
                        acked += 1;
                    }
                    Event::Delivery { .. } | Event::Joined(_) => {}
                    Event::Message(m) if m.to == Destination::All => {}
                    e => panic!("mallory heard {e:?}"),
                }
            }
        })
        .await;
        server
            .output_containing("messages from mallory are not opened for a minute")
            .await;
        // Another sender's budget is its own.
        bob.send_direct("ADMIN", "bob is fine").await.unwrap();
        server.output_containing("bob is fine").await;
    });
}

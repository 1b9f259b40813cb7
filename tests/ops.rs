//! Running for real: the allow list (with hot reload) and the transcript.
mod common;
use std::sync::Arc;

use common::*;
use dyspatcher::allowlist::AllowList;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn with_list(path: &std::path::Path) -> impl FnOnce(&mut dyspatcher::config::Config) + '_ {
    move |c| {
        let loaded = AllowList::load(path).unwrap();
        c.allow_list = Some((path.to_path_buf(), Arc::new(loaded.list), loaded.problems));
    }
}

#[test]
fn the_allow_list_admits_refuses_and_forces_names() {
    smol::block_on(async {
        let dir = temp_dir("allow");
        let k = keys(3);
        let list = dir.join("allow.csv");
        std::fs::write(
            &list,
            format!(
                "# team\n{},listedname\nthis,is,bad\n{},ADMIN\n",
                k[0].public().key_id(),
                admin_key().public().key_id()
            ),
        )
        .unwrap();
        let server = start(with_list(&list));
        server
            .output_containing("line 3: expected `keyid,name`, found 3 fields")
            .await;
        server.admin_ready().await;
        // Listed: joins under the listed name, whatever it typed.
        let alice = server.join("typedname", &k[0]).await;
        assert_eq!(alice.session().name(), Some("listedname"));
        // Not listed: refused after proving its key.
        let mut ws = raw(&server).await;
        let answer = raw_join(&mut ws, "bobby", &k[1], &k[1]).await;
        assert_eq!(answer["code"], "not_allowed", "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("allow list"));
        // The admin's web seat needs the admin key listed: it is.
        let web = server.join("x", &admin_key()).await;
        assert_eq!(web.session().name(), Some("ADMIN"));
        server.prompt("/a");
        let listing = server.output_containing("allow list").await;
        assert!(
            listing.contains("listedname") && listing.contains("connected"),
            "{listing}"
        );
    });
}

#[test]
fn the_admin_seat_needs_the_admin_key_listed() {
    smol::block_on(async {
        let dir = temp_dir("seat");
        let list = dir.join("allow.csv");
        std::fs::write(&list, format!("{},alice\n", keys(1)[0].public().key_id())).unwrap();
        let server = start(with_list(&list));
        server.admin_ready().await;
        let mut ws = raw(&server).await;
        let answer = raw_join(&mut ws, "x", &admin_key(), &admin_key()).await;
        assert_eq!(answer["code"], "not_allowed", "{answer}");
    });
}

#[test]
fn changes_apply_without_a_restart_and_removal_disconnects() {
    smol::block_on(async {
        let dir = temp_dir("reload");
        let k = keys(2);
        let list = dir.join("allow.csv");
        std::fs::write(&list, format!("{},alice\n", k[0].public().key_id())).unwrap();
        let server = start(with_list(&list));
        server.admin_ready().await;
        let mut alice = server.join("alice", &k[0]).await;
        let mut ws = raw(&server).await;
        assert_eq!(
            raw_join(&mut ws, "bobby", &k[1], &k[1]).await["code"],
            "not_allowed"
        );
        // Add bob: the watcher picks the change up by itself.
        std::fs::write(
            &list,
            format!(
                "{},alice\n{},bobby\n",
                k[0].public().key_id(),
                k[1].public().key_id()
            ),
        )
        .unwrap();
        server
            .output_containing("allow list reloaded: 2 entries")
            .await;
        let _bob = server.join("bobby", &k[1]).await;
        // Remove alice: she is disconnected with the reason.
        std::fs::write(
            &list,
            format!("{},bobby\n# alice removed\n", k[1].public().key_id()),
        )
        .unwrap();
        server.prompt("/reload");
        server
            .output_containing("allow list reloaded: 1 entries")
            .await;
        let end = within(10, "alice's removal", async {
            loop {
                if let Err(e) = alice.next_event().await {
                    return e.to_string();
                }
            }
        })
        .await;
        assert!(
            end.contains("4001") && end.contains("removed from the allow list"),
            "{end}"
        );
        server.output_containing("alice (").await;
        // A broken file keeps the previous list.
        std::fs::remove_file(&list).unwrap();
        server.prompt("/reload");
        server
            .output_containing("keeping the previous allow list")
            .await;
    });
}

#[test]
fn the_transcript_holds_what_the_admin_sees_and_never_a_private_key() {
    smol::block_on(async {
        let dir = temp_dir("transcript");
        let path = dir.join("chat.log");
        let server = start(|c| c.transcript = Some(path.clone()));
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        let carol = server.join("carol", &k[2]).await;
        wait_joined(&mut alice, "carol").await;
        wait_joined(&mut bob, "carol").await;
        alice.send_direct("ADMIN", "to the admin").await.unwrap();
        alice
            .send_direct("bobby", "private between users")
            .await
            .unwrap();
        assert_eq!(next_message(&mut bob).await.text, "private between users");
        bob.send_all("to everyone").await.unwrap();
        server.output_containing("to everyone").await;
        server.prompt("@alice from the admin");
        server.prompt("/key private");
        server.prompt("/kick carol");
        server.output_containing("carol was kicked").await;
        drop(carol);
        server.running.shutdown();
        let TestServer { running } = server;
        running.wait();
        let text = std::fs::read_to_string(&path).unwrap();
        for needle in [
            "alice (",
            "joined",
            "→ ADMIN: to the admin",
            "bobby (",
            "→ @all: to everyone",
            "(via prompt) → alice: from the admin",
            "carol was kicked",
            "the server is stopping",
            "stopped",
        ] {
            assert!(
                text.contains(needle),
                "{needle:?} missing from the transcript:\n{text}"
            );
        }
        assert!(
            !text.contains("private between users"),
            "user-to-user content cannot be in the transcript"
        );
        assert!(
            !text.contains("PRIVATE KEY"),
            "a private key reached the transcript"
        );
        // Each line: its chained hash, its number, then a timestamp (or, continuing an entry,
        // four spaces).
        for (i, line) in text.lines().enumerate() {
            let prefix = format!(" {} ", i + 1);
            assert_eq!(&line[16..16 + prefix.len()], prefix, "{line}");
            let body = &line[16 + prefix.len()..];
            assert!(
                body.starts_with("    ")
                    || (body.len() > 21 && body.as_bytes()[4] == b'-' && &body[19..21] == "Z "),
                "untimestamped line: {line}"
            );
        }
        let intact = dyspatcher::transcript::verify::verify(text.as_bytes()).unwrap();
        assert!(intact.stopped);
        // Never overwritten.
        let err = dyspatcher::transcript::Transcript::create(&path)
            .err()
            .unwrap();
        assert!(err.contains("already exists"));
    });
}

#[test]
fn a_tls_join_with_a_pinned_self_signed_certificate() {
    smol::block_on(async {
        let (server_config, cert) =
            dyspatcher::tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let server = start(|c| {
            c.tls = Some(dyspatcher::config::Tls {
                server: server_config,
                self_signed: Some(cert.clone()),
                kept_in: None,
            })
        });
        server.admin_ready().await;
        let url = format!("wss://{}/ws", server.running.addr);
        let k = keys(2);
        let pinned = dyspatcher::tls::client_config(Some(&cert.fingerprint), None).unwrap();
        let mut alice =
            dyspatcher::client::Client::connect(&url, "alice", k[0].clone(), Some(pinned))
                .await
                .unwrap();
        alice.send_direct("ADMIN", "over tls").await.unwrap();
        assert!(server.output_containing("over tls").await.contains("alice"));
        // A different pin is refused during the handshake.
        let other = "00:".repeat(31) + "00";
        let wrong = dyspatcher::tls::client_config(Some(&other), None).unwrap();
        let err = dyspatcher::client::Client::connect(&url, "bobby", k[1].clone(), Some(wrong))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("fingerprint"), "{err}");
        // Plain HTTP on the TLS port gets nothing usable, and the server carries on.
        let plain = dyspatcher::client::Client::connect(
            &format!("ws://{}/ws", server.running.addr),
            "carol",
            k[1].clone(),
            None,
        )
        .await;
        assert!(plain.is_err());
        alice.send_direct("ADMIN", "still fine").await.unwrap();
        server.output_containing("still fine").await;
    });
}

#[test]
fn the_self_signed_certificate_is_kept_between_starts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("selfsigned");
    let names = vec!["localhost".to_string(), "192.0.2.4".to_string()];
    let (_, first, reused) = dyspatcher::tls::persistent_self_signed(&names, &dir).unwrap();
    assert!(!reused);
    let (_, again, reused) = dyspatcher::tls::persistent_self_signed(&names, &dir).unwrap();
    assert!(reused);
    assert_eq!(
        first.fingerprint, again.fingerprint,
        "people accept it once"
    );
    let other = vec!["localhost".to_string(), "198.51.100.7".to_string()];
    let (_, moved, reused) = dyspatcher::tls::persistent_self_signed(&other, &dir).unwrap();
    assert!(
        !reused && moved.fingerprint != first.fingerprint,
        "another network, another certificate"
    );
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "key") {
            assert_eq!(
                entry.metadata().unwrap().permissions().mode() & 0o777,
                0o600
            );
            // A damaged key is replaced, not trusted.
            std::fs::write(entry.path(), "garbage").unwrap();
        }
    }
    let (_, replaced, reused) = dyspatcher::tls::persistent_self_signed(&names, &dir).unwrap();
    assert!(!reused && replaced.fingerprint != first.fingerprint);
    assert!(!format!("{replaced:?}").contains("PRIVATE"));
}

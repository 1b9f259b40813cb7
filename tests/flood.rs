//! Floods that must not lock anyone out or fill a disk: silent sockets, connections that never
//! join, join attempts, and connections that end in errors.
mod common;
use std::time::Duration;

use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn raw_joined(server: &TestServer, name: &str, key: &dyspatcher::crypto::Identity) -> Raw {
    let mut ws = raw(server).await;
    assert_eq!(raw_join(&mut ws, name, key, key).await["type"], "welcome");
    ws
}

/// Operator lines up to the answer of `/users`, which comes after everything said before.
async fn lines_until_users(server: &TestServer) -> Vec<String> {
    server.prompt("/users");
    within(10, "the /users answer", async {
        let mut lines = Vec::new();
        loop {
            match server.running.output.recv().await.unwrap() {
                dyspatcher::console::Line::Show(s) if s.contains("online,") => return lines,
                dyspatcher::console::Line::Show(s) => lines.push(s),
                _ => {}
            }
        }
    })
    .await
}

#[test]
fn silent_sockets_make_room_for_a_client_that_speaks() {
    smol::block_on(async {
        let server = start(|c| {
            c.limits.max_connections = 50;
            // Long deadlines: what frees the slots here is eviction, not a timeout.
            c.limits.first_head_timeout = Duration::from_secs(120);
            c.limits.head_timeout = Duration::from_secs(120);
        });
        let mut silent = Vec::new();
        for _ in 0..55 {
            silent.push(
                smol::net::TcpStream::connect(server.running.addr)
                    .await
                    .unwrap(),
            );
        }
        let k = keys(1);
        let mut alice = server.join("alice", &k[0]).await;
        server.prompt("@alice you got in");
        assert_eq!(next_message(&mut alice).await.text, "you got in");
        // The oldest silent socket made room: the server closed it.
        let mut buf = [0u8; 16];
        let n = within(
            10,
            "the oldest silent socket's end",
            silent[0].read(&mut buf),
        )
        .await;
        assert_eq!(n.unwrap(), 0);
        // The newest silent socket is still open: it can still be served.
        let last = silent.last_mut().unwrap();
        last.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        within(10, "an answer", last.read_to_string(&mut answer))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    });
}

#[test]
fn connections_that_never_join_cannot_take_the_share_kept_for_members() {
    smol::block_on(async {
        // 8 slots: at most 6 connections waiting to join, 2 kept for members.
        let server = start(|c| c.limits.max_connections = 8);
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut waiting = Vec::new();
        for _ in 0..6 {
            let mut ws = raw(&server).await;
            let nonce = raw_next(&mut ws).await["nonce"]
                .as_str()
                .unwrap()
                .to_string();
            waiting.push((ws, nonce));
        }
        let answer = http(&server, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.contains("server is full"),
            "{answer}"
        );
        server.prompt("@alice still here");
        assert_eq!(next_message(&mut alice).await.text, "still here");
        // One of the waiting connections joins: a slot to wait in is free again.
        let (mut bob, nonce) = waiting.pop().unwrap();
        let join = dyspatcher::protocol::ClientMsg::Join {
            name: "bobby".into(),
            public_key: b64(k[1].public().spki_der()),
            signature: b64(&k[1].sign(&dyspatcher::protocol::join_bytes(
                &nonce,
                "bobby",
                k[1].public().key_id(),
            ))),
            resume: None,
        };
        raw_send(&mut bob, serde_json::to_string(&join).unwrap()).await;
        let welcome = raw_next(&mut bob).await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let answer = http(
            &server,
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(bob);
    });
}

#[test]
fn join_attempts_are_rate_limited_and_their_refusals_told_a_few_at_a_time() {
    smol::block_on(async {
        // 2 joins a second in all, bursts of 8: loopback has only this total.
        let server = start(|c| c.limits.join_rate = 2);
        server.admin_ready().await;
        let k = keys(2);
        for i in 0..8 {
            let mut ws = raw(&server).await;
            let answer = raw_join(&mut ws, &format!("mallory{i}"), &k[0], &k[1]).await;
            assert_eq!(answer["code"], "bad_proof", "{answer}");
        }
        let mut ws = raw(&server).await;
        let answer = raw_join(&mut ws, "mallory", &k[0], &k[0]).await;
        assert_eq!(answer["code"], "too_many_joins", "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("try again"));
        assert_eq!(raw_next(&mut ws).await["close"], 4005);
        let told = lines_until_users(&server).await;
        let refusals: Vec<_> = told.iter().filter(|l| l.contains("join refused")).collect();
        assert_eq!(
            refusals.len(),
            dyspatcher::throttle::LINES_PER_WINDOW as usize,
            "{told:?}"
        );
    });
}

#[test]
fn a_connection_that_ends_in_an_error_is_told_with_its_peer() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(1);
        let mut ws = raw_joined(&server, "alice", &k[0]).await;
        raw_send(&mut ws, "x".repeat(300 * 1024)).await;
        loop {
            if raw_next(&mut ws).await.get("close").is_some() {
                break;
            }
        }
        let line = server.output_containing("ended: message over").await;
        assert!(line.contains("connection from 127.0.0.1:"), "{line}");
    });
}

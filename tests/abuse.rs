//! Bad input and hostile peers: each gets a specific answer and nobody else notices.
mod common;
use std::time::Duration;

use common::*;
use dyspatcher::protocol::ClientMsg;
use dyspatcher::session::Event;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

async fn joined_raw(server: &TestServer, name: &str, key: &dyspatcher::crypto::Identity) -> Raw {
    let mut ws = raw(server).await;
    assert_eq!(raw_join(&mut ws, name, key, key).await["type"], "welcome");
    ws
}

async fn next_error(ws: &mut Raw) -> serde_json::Value {
    loop {
        let m = raw_next(ws).await;
        if m["type"] == "error" || m.get("close").is_some() {
            return m;
        }
    }
}

#[test]
fn malformed_unknown_binary_and_bad_fields_get_specific_errors() {
    smol::block_on(async {
        let server = start(|_| {});
        let k = keys(1);
        let mut ws = joined_raw(&server, "alice", &k[0]).await;
        for (text, code, says) in [
            ("{not json", "bad_json", "malformed"),
            ("[1,2,3]", "bad_json", "malformed"),
            (r#"{"type":"teleport"}"#, "unknown_type", "teleport"),
            (r#"{"type":"direct","id":"x"}"#, "bad_json", "missing field"),
            (
                r#"{"type":"all","id":"0123456789abcdef0123456789abcdef","ts":1,"skid":"0123456789abcdef0123456789abcdef","n":0,"iv":"***","ciphertext":"AAAAAAAAAAAAAAAAAAAAAAAA","signature":"AA=="}"#,
                "bad_field",
                "iv",
            ),
            (
                r#"{"type":"direct","id":"0123456789abcdef0123456789abcdef","ts":1,"to":"nobody","iv":"AAAAAAAAAAAAAAAA","ciphertext":"AAAAAAAAAAAAAAAAAAAAAAAA","keys":{},"signature":"AA=="}"#,
                "unknown_recipient",
                "no such member",
            ),
            (
                r#"{"type":"sender_key","skid":"zz","n":0,"commitment":"00","signature":"AA==","keys":{}}"#,
                "bad_field",
                "skid",
            ),
        ] {
            raw_send(&mut ws, text.into()).await;
            let e = next_error(&mut ws).await;
            assert_eq!(e["code"], code, "{text}: {e}");
            assert!(e["message"].as_str().unwrap().contains(says), "{text}: {e}");
        }
        use async_tungstenite::tungstenite::Message;
        ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        assert_eq!(next_error(&mut ws).await["code"], "binary_unsupported");
        // After all that the connection still works.
        raw_send(&mut ws, r#"{"type":"teleport"}"#.into()).await;
        assert_eq!(next_error(&mut ws).await["code"], "unknown_type");
    });
}

#[test]
fn an_oversized_message_closes_only_that_connection() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(2);
        let mut ws = joined_raw(&server, "alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        raw_send(&mut ws, "x".repeat(300 * 1024)).await;
        let end = next_error(&mut ws).await;
        assert_eq!(end["close"], 1009, "{end}");
        server.prompt("@bobby still here");
        assert_eq!(next_message(&mut bob).await.text, "still here");
    });
}

#[test]
fn a_flood_is_rate_limited_and_others_are_unaffected() {
    smol::block_on(async {
        let server = start(|c| {
            c.limits.rate_per_sec = 5;
            c.limits.burst = 5;
        });
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        let bob_id = k[1].public().key_id().to_string();
        // Bob's key is given, not fetched: a `get_keys` would take one of the burst's tokens.
        alice.session_mut().add_keys([k[1].public().clone()]);
        let sealed: Vec<ClientMsg> = (0..30)
            .map(|i| {
                alice
                    .session_mut()
                    .seal_direct(&bob_id, &format!("m{i}"))
                    .unwrap()
            })
            .collect();
        for m in &sealed {
            alice.send_msg(m).await.unwrap();
        }
        let mut refused = 0;
        let mut acked = 0;
        within(10, "answers", async {
            while acked + refused < 6 {
                match alice.next_event().await.unwrap() {
                    Event::Error {
                        code: dyspatcher::protocol::ErrorCode::RateLimited,
                        message,
                        ..
                    } => {
                        assert!(message.contains("too many messages"));
                        refused += 1;
                    }
                    Event::Ack(_) => acked += 1,
                    _ => {}
                }
            }
        })
        .await;
        assert_eq!(
            refused, 1,
            "one rate_limited answer per second, not one per dropped message"
        );
        // Bob got the burst and nothing after it; the admin can still reach him at once.
        for i in 0..5 {
            assert_eq!(next_message(&mut bob).await.text, format!("m{i}"));
        }
        server.prompt("@bobby unaffected");
        assert_eq!(next_message(&mut bob).await.text, "unaffected");
    });
}

#[test]
fn a_slow_reader_is_cut_while_others_keep_receiving() {
    smol::block_on(async {
        let server = start(|c| {
            // Bob keeps up to 20 messages of 40 KiB in flight: within 2 MiB; carol reads nothing.
            c.limits.mailbox_bytes = 2 * 1024 * 1024;
            c.limits.rate_per_sec = 100_000;
            c.limits.burst = 100_000;
        });
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        // Carol joins and then never reads again.
        let mut carol = joined_raw(&server, "carol", &k[2]).await;
        wait_joined(&mut alice, "carol").await;
        wait_joined(&mut bob, "carol").await;
        let text = "x".repeat(30_000);
        let count = 600;
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        let sealed: Vec<Vec<ClientMsg>> = (0..count)
            .map(|_| alice.session_mut().seal_all(&text).unwrap())
            .collect();
        // Bob says each message he got, so that alice never runs more than 20 ahead of him.
        let (seen, progress) = async_channel::unbounded::<()>();
        let reader = smol::spawn(async move {
            let mut got = 0;
            let mut carol_left = None;
            while got < count {
                match bob.next_event().await.unwrap() {
                    Event::Message(_) => {
                        got += 1;
                        let _ = seen.try_send(());
                    }
                    Event::Presence { name, state, .. } if name == "carol" => {
                        carol_left = Some(format!("{state:?}"))
                    }
                    Event::Rejected { reason, .. } => panic!("{reason}"),
                    _ => {}
                }
            }
            (got, carol_left)
        });
        // Alice sends on one half of her socket and drains her acks on the other.
        let (mut tx, mut rx) = alice.into_websocket().split();
        let drain = smol::spawn(async move {
            use futures_lite::StreamExt;
            while let Some(Ok(_)) = rx.next().await {}
        });
        let mut bob_got = 0;
        for (i, batch) in sealed.iter().enumerate() {
            // Bob keeps up (never more than 20 behind); carol reads nothing.
            while i >= bob_got + 20 {
                within(30, "bob's progress", progress.recv()).await.unwrap();
                bob_got += 1;
            }
            for m in batch {
                tx.send(async_tungstenite::tungstenite::Message::text(
                    serde_json::to_string(m).unwrap(),
                ))
                .await
                .unwrap();
            }
        }
        let (got, carol_left) = within(60, "bob's messages", reader).await;
        assert_eq!(got, count);
        // Carol is away, not gone: her membership and mailbox wait for her to resume.
        assert_eq!(carol_left.as_deref(), Some("Away"));
        // Carol finally reads: what was queued, then the reason.
        let end = within(30, "carol's close", async {
            loop {
                let m = raw_next(&mut carol).await;
                if m.get("close").is_some() {
                    return m;
                }
            }
        })
        .await;
        // Either the close frame got through after what was queued, or (on a busy machine) the
        // writer gave up on a socket that took nothing for 20 s: she was cut either way.
        assert!(end["close"] == 4002 || end["close"].is_null(), "{end}");
        drop(drain);
    });
}

#[test]
fn three_hundred_clients_joining_at_once_see_a_consistent_member_list() {
    smol::block_on(async {
        let server = start(|_| {});
        server.admin_ready().await;
        let k = keys(300);
        let url = server.url();
        let tasks: Vec<_> = k
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let (url, key) = (url.clone(), key.clone());
                smol::spawn(async move {
                    dyspatcher::client::Client::connect(&url, &format!("user{i:03}"), key, None)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut clients = Vec::new();
        for t in tasks {
            clients.push(within(120, "300 joins", t).await);
        }
        let expected: Vec<String> = std::iter::once("ADMIN".to_string())
            .chain((0..300).map(|i| format!("user{i:03}")))
            .collect();
        for c in clients.iter_mut() {
            within(60, "a full member list", async {
                while c.session().members().len() < 301 {
                    c.next_event().await.unwrap();
                }
            })
            .await;
            let names: Vec<String> = c
                .session()
                .members()
                .iter()
                .map(|m| m.name.clone())
                .collect();
            assert_eq!(names, expected);
        }
        server.prompt("/users");
        assert!(server
            .output_containing("online, 0 away:")
            .await
            .starts_with("301 member(s), 301 online"));
    });
}

#[test]
fn a_busy_prompt_does_not_hold_up_others() {
    smol::block_on(async {
        let server = start(|c| {
            c.limits.rate_per_sec = 100_000;
            c.limits.burst = 100_000;
        });
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        let admin_id = admin_key().public().key_id().to_string();
        // Each direct message to the admin costs the prompt an RSA decryption: as many as one
        // sender may cost it in a minute.
        let count = dyspatcher::console::KEY_OPS_PER_MINUTE as usize;
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        let to_admin: Vec<ClientMsg> = (0..count)
            .map(|i| {
                alice
                    .session_mut()
                    .seal_direct(&admin_id, &format!("busy {i}"))
                    .unwrap()
            })
            .collect();
        let to_all: Vec<Vec<ClientMsg>> = (0..20)
            .map(|i| alice.session_mut().seal_all(&format!("all {i}")).unwrap())
            .collect();
        for m in &to_admin {
            alice.send_msg(m).await.unwrap();
        }
        for batch in &to_all {
            for m in batch {
                alice.send_msg(m).await.unwrap();
            }
        }
        for i in 0..20 {
            assert_eq!(next_message(&mut bob).await.text, format!("all {i}"));
        }
        // Bob has everything while the prompt is still working through its backlog.
        let mut shown = 0;
        while let Ok(line) = server.running.output.try_recv() {
            if format!("{line:?}").contains("busy ") {
                shown += 1;
            }
        }
        assert!(
            shown < count,
            "the prompt had already shown all {shown} messages"
        );
        server
            .output_containing(&format!("busy {}", count - 1))
            .await;
    });
}

#[test]
fn http_answers_carry_strict_headers() {
    smol::block_on(async {
        let server = start(|_| {});
        let page = http(
            &server,
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Content-Type: text/html; charset=utf-8"));
        for answer in [
            page.clone(),
            http(&server, "GET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n").await,
            http(&server, "POST / HTTP/1.1\r\nHost: localhost\r\n\r\n").await,
            http(&server, "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n").await,
            http(&server, "NONSENSE\r\n\r\n").await,
        ] {
            assert!(answer.contains("Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n"), "{answer}");
            assert!(answer.contains("X-Content-Type-Options: nosniff\r\n"));
            assert!(answer.contains("Referrer-Policy: no-referrer\r\n"));
            assert!(answer.contains("Cache-Control: no-store\r\n"));
        }
        assert!(
            http(&server, "GET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        let post = http(&server, "POST / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(
            post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"),
            "{post}"
        );
        assert!(http(&server, "GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400"));
        assert!(http(&server, "NONSENSE\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400"));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(http(&server, &big).await.starts_with("HTTP/1.1 431"));
        let cross = "GET /ws HTTP/1.1\r\nHost: localhost:1\r\nOrigin: http://evil:1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert!(http(&server, cross).await.starts_with("HTTP/1.1 403"));
        let head = http(
            &server,
            "HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        // Keep-alive: two requests on one connection.
        let two = http(
            &server,
            "GET / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await;
        assert_eq!(two.matches("HTTP/1.1 ").count(), 2, "{two}");
        for asset in dyspatcher::http::assets() {
            let answer = http(
                &server,
                &format!(
                    "GET /{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    asset.name
                ),
            )
            .await;
            assert!(
                answer.contains(&format!("Content-Type: {}", asset.content_type)),
                "{}",
                asset.name
            );
            // Without Accept-Encoding, the file as it is.
            let plain = asset.plain().len();
            assert!(
                answer.contains(&format!("Content-Length: {plain}\r\n"))
                    && !answer.contains("Content-Encoding"),
                "{}",
                asset.name
            );
        }
        // A browser takes the embedded gzip as it is.
        let app = dyspatcher::http::asset("/app.js").unwrap();
        let gz = http(
            &server,
            "GET /app.js HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(gz.contains("Content-Encoding: gzip\r\n"), "{gz}");
        assert!(gz.contains("Vary: Accept-Encoding\r\n"));
        assert!(gz.contains(&format!("Content-Length: {}\r\n", app.body.len())));
    });
}

#[test]
fn silent_and_idle_connections_are_closed() {
    smol::block_on(async {
        let server = start(|c| {
            // Long for later heads, short for the first: a socket that never speaks is closed
            // after the short one.
            c.limits.head_timeout = Duration::from_secs(120);
            c.limits.first_head_timeout = Duration::from_millis(200);
            c.limits.idle_timeout = Duration::from_millis(300);
        });
        // Says nothing at all: the server hangs up after the first head's deadline.
        let mut tcp = smol::net::TcpStream::connect(server.running.addr)
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            within(10, "the hang-up", tcp.read(&mut buf)).await.unwrap(),
            0
        );
        // Joined but silent (no pongs, since it does not read): closed as idle.
        let k = keys(1);
        let mut ws = joined_raw(&server, "alice", &k[0]).await;
        loop {
            let m = raw_next(&mut ws).await;
            if let Some(code) = m.get("close") {
                assert_eq!(code, 4003, "{m}");
                break;
            }
        }
    });
}

#[test]
fn connection_limits_answer_503() {
    smol::block_on(async {
        let server = start(|c| c.limits.max_connections = 2);
        // Two pages that were served and keep their connections: heard from, so not evicted.
        let mut kept = Vec::new();
        for _ in 0..2 {
            let mut tcp = smol::net::TcpStream::connect(server.running.addr)
                .await
                .unwrap();
            tcp.write_all(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 12];
            within(10, "an answer", tcp.read_exact(&mut buf))
                .await
                .unwrap();
            assert_eq!(&buf, b"HTTP/1.1 200");
            kept.push(tcp);
        }
        let answer = http(&server, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.contains("server is full"),
            "{answer}"
        );
    });
}

#[test]
fn the_extra_websocket_port_serves_only_the_websocket() {
    smol::block_on(async {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let server = start(|c| c.ws_port = Some(port));
        let ws_addr = server.running.ws_addr.unwrap();
        let k = keys(1);
        let client = dyspatcher::client::Client::connect(
            &format!("ws://{ws_addr}/ws"),
            "alice",
            k[0].clone(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(client.session().name(), Some("alice"));
        let mut tcp = smol::net::TcpStream::connect(ws_addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 404"));
    });
}

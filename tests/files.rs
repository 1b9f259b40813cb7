//! Files between real clients over real sockets: a 10 MB file arrives whole, a file to all
//! reaches everyone, every refusal of the server comes with its own error, cancels from either
//! side, the sender's connection ending, away recipients whose mailbox is too small, resuming in
//! the middle of a file.

mod common;

use std::time::Duration;

use common::files::*;
use common::*;
use dyspatcher::protocol::{self, CancelReason, ErrorCode};
use futures_lite::future::zip;

#[test]
fn ten_megabytes_arrive_whole_between_two_clients() {
    let server = start(|_| {});
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        let data = content(10 * 1000 * 1000 + 123, 1);
        let mut sending = accepted(offer(&mut a, "bobby", "map.bin", data.clone()).await);
        let (sent, got) = zip(pump(&mut a, &mut sending), receive(&mut b)).await;
        sent.unwrap();
        assert_eq!(got, Got::File("map.bin".into(), sha(&data)));
    });
}

#[test]
fn a_file_to_all_reaches_three_receivers() {
    let server = start(|_| {});
    smol::block_on(async {
        let k = keys(4);
        let mut a = server.join("alice", &k[0]).await;
        let mut others = Vec::new();
        for (i, name) in ["bobby", "carol", "david"].iter().enumerate() {
            others.push(server.join(name, &k[i + 1]).await);
        }
        wait_joined(&mut a, "david").await;
        let data = content(300_000, 2);
        let (mut sending, skipped) = match offer(&mut a, "all", "list.txt", data.clone()).await {
            Answer::Accepted(s, skipped) => (s, skipped),
            Answer::Refused(c, m) => panic!("{c:?} {m}"),
        };
        assert_eq!(skipped, None, "nobody is away");
        let [b, c, d] = &mut others[..] else {
            unreachable!()
        };
        let receivers = zip(zip(receive(b), receive(c)), receive(d));
        let (sent, ((gb, gc), gd)) = zip(pump(&mut a, &mut sending), receivers).await;
        sent.unwrap();
        for got in [gb, gc, gd] {
            assert_eq!(got, Got::File("list.txt".into(), sha(&data)));
        }
    });
}

#[test]
fn over_the_limit_is_refused_before_any_chunk() {
    let server = start(|c| c.limits.max_file = 1 << 20);
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        let data = content((1 << 20) + 1, 3);
        match offer(&mut a, "bobby", "big.bin", data).await {
            Answer::Refused(code, message) => {
                assert_eq!(code, ErrorCode::FileTooLarge);
                assert!(message.contains("1048576"), "{message}");
            }
            Answer::Accepted(..) => panic!("accepted a file over the limit"),
        }
        // Exactly at the limit is accepted; bob sees that file, never the refused one.
        let data = content(1 << 20, 4);
        let mut sending = accepted(offer(&mut a, "bobby", "ok.bin", data.clone()).await);
        let (sent, got) = zip(pump(&mut a, &mut sending), receive(&mut b)).await;
        sent.unwrap();
        assert_eq!(got, Got::File("ok.bin".into(), sha(&data)));
    });
}

#[test]
fn bad_chunks_get_their_own_errors() {
    let server = start(|_| {});
    smol::block_on(async {
        let k = keys(3);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        let mut c = server.join("carol", &k[2]).await;
        wait_joined(&mut a, "carol").await;
        wait_joined(&mut c, "alice").await;
        let data = content(10 * 65536, 5);
        let mut sending = accepted(offer(&mut a, "bobby", "ten.bin", data).await);
        let id = sending.id().to_string();
        let full = 65536 + 16;
        // Unknown file, and a file that is not this connection's.
        a.send_text(chunk_text(&"0".repeat(32), 0, full))
            .await
            .unwrap();
        assert_eq!(
            error_about(&mut a, &"0".repeat(32)).await.0,
            ErrorCode::UnknownFile
        );
        c.send_text(chunk_text(&id, 0, full)).await.unwrap();
        assert_eq!(error_about(&mut c, &id).await.0, ErrorCode::UnknownFile);
        // Wrong index, wrong length.
        a.send_text(chunk_text(&id, 1, full)).await.unwrap();
        let (code, message) = error_about(&mut a, &id).await;
        assert_eq!(
            (code, message.as_str()),
            (ErrorCode::BadChunk, "expected chunk 0")
        );
        a.send_text(chunk_text(&id, 0, full - 1)).await.unwrap();
        assert_eq!(error_about(&mut a, &id).await.0, ErrorCode::BadChunk);
        // The window: four chunks go out, the fifth is refused until one is acknowledged.
        // Bob does not read: nothing is acknowledged.
        send_window(&mut a, &mut sending).await;
        a.send_text(chunk_text(&id, protocol::FILE_WINDOW, full))
            .await
            .unwrap();
        assert_eq!(error_about(&mut a, &id).await.0, ErrorCode::FileWindow);
        // Too many files at once.
        for n in 1..protocol::FILES_IN_FLIGHT {
            accepted(offer(&mut a, "carol", &format!("f{n}"), content(10, 1)).await);
        }
        match offer(&mut a, "carol", "one-more", content(10, 1)).await {
            Answer::Refused(code, _) => assert_eq!(code, ErrorCode::TooManyFiles),
            Answer::Accepted(..) => panic!("a fifth file was accepted"),
        }
        // None of this disturbed the transfer: bob reads, and it completes.
        let (sent, got) = zip(pump(&mut a, &mut sending), receive(&mut b)).await;
        sent.unwrap();
        assert!(matches!(got, Got::File(..)), "{got:?}");
    });
}

#[test]
fn either_side_may_cancel() {
    let server = start(|_| {});
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        // The sender cancels: the recipient is told.
        let mut sending = accepted(offer(&mut a, "bobby", "one", content(400_000, 6)).await);
        send_window(&mut a, &mut sending).await;
        let cancel = a.session_mut().cancel_file(sending.id());
        a.send_msg(&cancel).await.unwrap();
        assert_eq!(
            receive(&mut b).await,
            Got::Cancelled(CancelReason::Cancelled)
        );
        // The recipient cancels: the sender is told, by whom.
        let mut sending = accepted(offer(&mut a, "bobby", "two", content(400_000, 7)).await);
        send_window(&mut a, &mut sending).await;
        let id = sending.id().to_string();
        within(10, "the offer", async {
            loop {
                if let dyspatcher::session::Event::File(dyspatcher::session::FileEvent::Offered {
                    ..
                }) = b.next_event().await.unwrap()
                {
                    return;
                }
            }
        })
        .await;
        let cancel = b.session_mut().cancel_file(&id);
        b.send_msg(&cancel).await.unwrap();
        let (by, reason) = cancelled(&mut a).await;
        assert_eq!((by.as_str(), reason), ("bobby", CancelReason::Cancelled));
        // The transfer is over: more chunks are unknown.
        a.send_text(chunk_text(&id, 4, 65552)).await.unwrap();
        assert_eq!(error_about(&mut a, &id).await.0, ErrorCode::UnknownFile);
        let cancel = b.session_mut().cancel_file(&id);
        b.send_msg(&cancel).await.unwrap();
        assert_eq!(error_about(&mut b, &id).await.0, ErrorCode::UnknownFile);
    });
}

#[test]
fn a_recipient_leaving_ends_the_transfer_and_acks_are_checked() {
    let server = start(|_| {});
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        // An ack with neither seq nor cseq, and one for a chunk never sent.
        b.send_text(r#"{"type":"ack"}"#.into()).await.unwrap();
        b.send_text(r#"{"type":"ack","cseq":5}"#.into())
            .await
            .unwrap();
        let mut codes = Vec::new();
        within(10, "two errors", async {
            while codes.len() < 2 {
                if let dyspatcher::session::Event::Error { code, .. } =
                    b.next_event().await.unwrap()
                {
                    codes.push(code);
                }
            }
        })
        .await;
        assert_eq!(codes, [ErrorCode::BadJson, ErrorCode::BadField]);
        let mut sending = accepted(offer(&mut a, "bobby", "left", content(400_000, 14)).await);
        send_window(&mut a, &mut sending).await;
        b.send_msg(&protocol::ClientMsg::Leave {}).await.unwrap();
        let (by, reason) = cancelled(&mut a).await;
        assert_eq!((by.as_str(), reason), ("bobby", CancelReason::Deleted));
    });
}

#[test]
fn the_sender_going_away_cancels_its_files() {
    let server = start(|_| {});
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        let mut sending = accepted(offer(&mut a, "bobby", "cut", content(400_000, 8)).await);
        send_window(&mut a, &mut sending).await;
        a.sever();
        assert_eq!(
            receive(&mut b).await,
            Got::Cancelled(CancelReason::SenderGone)
        );
    });
}

#[test]
fn an_idle_transfer_times_out_for_both_sides() {
    let server = start(|c| c.limits.file_idle = Duration::from_secs(1));
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        accepted(offer(&mut a, "bobby", "slow", content(400_000, 9)).await);
        assert_eq!(receive(&mut b).await, Got::Cancelled(CancelReason::Timeout));
        assert_eq!(cancelled(&mut a).await.1, CancelReason::Timeout);
    });
}

#[test]
fn away_recipients_whose_mailbox_is_too_small_are_reported() {
    let server = start(|c| c.limits.mailbox_bytes = dyspatcher::config::MIN_MAILBOX_BYTES);
    smol::block_on(async {
        let k = keys(3);
        let mut a = server.join("alice", &k[0]).await;
        let b = server.join("bobby", &k[1]).await;
        let mut c = server.join("carol", &k[2]).await;
        wait_joined(&mut a, "carol").await;
        b.sever();
        wait_presence_away(&mut a, "bobby").await;
        // 600 KB cannot fit a 512 KiB mailbox: a direct file is refused...
        let big = content(600_000, 10);
        match offer(&mut a, "bobby", "big", big.clone()).await {
            Answer::Refused(code, _) => assert_eq!(code, ErrorCode::MailboxFull),
            Answer::Accepted(..) => panic!("accepted for a mailbox too small"),
        }
        // ...and a file to all skips bob, saying so; carol gets it.
        let (mut sending, skipped) = match offer(&mut a, "all", "big", big.clone()).await {
            Answer::Accepted(s, skipped) => (s, skipped),
            Answer::Refused(c, m) => panic!("{c:?} {m}"),
        };
        assert_eq!(skipped, Some(vec!["bobby".to_string()]));
        let (sent, got) = zip(pump(&mut a, &mut sending), receive(&mut c)).await;
        sent.unwrap();
        assert_eq!(got, Got::File("big".into(), sha(&big)));
        // A small file for bob is held in his mailbox.
        let small = content(100_000, 11);
        let mut sending = accepted(offer(&mut a, "bobby", "small", small).await);
        pump(&mut a, &mut sending).await.unwrap();
    });
}

#[test]
fn a_chunk_that_no_longer_fits_ends_the_transfer_for_that_recipient() {
    let server = start(|c| c.limits.mailbox_bytes = dyspatcher::config::MIN_MAILBOX_BYTES);
    smol::block_on(async {
        let k = keys(3);
        let mut a = server.join("alice", &k[0]).await;
        let b = server.join("bobby", &k[1]).await;
        let mut c = server.join("carol", &k[2]).await;
        wait_joined(&mut a, "carol").await;
        b.sever();
        wait_presence_away(&mut a, "bobby").await;
        // 300 KB fits bob's mailbox when offered; then carol fills it with @all messages.
        let data = content(300_000, 12);
        let mut sending = accepted(offer(&mut a, "bobby", "late", data).await);
        for _ in 0..6 {
            c.send_all(&"x".repeat(30_000)).await.unwrap();
        }
        c.send_direct("alice", "done").await.unwrap();
        assert_eq!(next_message(&mut a).await.text.len(), 30_000);
        let err = pump(&mut a, &mut sending).await.unwrap_err();
        let dyspatcher::session::Event::File(dyspatcher::session::FileEvent::Cancelled {
            by,
            reason,
            ..
        }) = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((by.as_str(), reason), ("bobby", CancelReason::MailboxFull));
    });
}

#[test]
fn a_resumed_recipient_gets_the_chunks_it_missed() {
    let server = start(|_| {});
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        let data = content(500_000, 13);
        let mut sending = accepted(offer(&mut a, "bobby", "resumed", data.clone()).await);
        send_window(&mut a, &mut sending).await;
        // Bob reads two chunks, then loses his connection.
        let mut got = Vec::new();
        within(10, "two chunks", async {
            while got.len() < 2 * 65536 {
                if let dyspatcher::session::Event::File(dyspatcher::session::FileEvent::Data {
                    data,
                    ..
                }) = b.next_event().await.unwrap()
                {
                    got.extend(data);
                }
            }
        })
        .await;
        b.sever();
        // Alice goes on: what bob did not acknowledge is kept in his mailbox, then the rest.
        let (sent, rest) = zip(pump(&mut a, &mut sending), async {
            assert!(within(10, "resume", b.resume()).await.unwrap());
            receive_data(&mut b).await
        })
        .await;
        sent.unwrap();
        let (Got::File(..), tail) = rest else {
            panic!("{:?}", rest.0)
        };
        got.extend(tail);
        assert_eq!(sha(&got), sha(&data));
    });
}

async fn wait_presence_away(c: &mut dyspatcher::client::Client, name: &str) {
    within(10, "presence away", async {
        loop {
            if let dyspatcher::session::Event::Presence {
                name: n,
                state: protocol::Presence::Away,
                ..
            } = c.next_event().await.unwrap()
            {
                if n == name {
                    return;
                }
            }
        }
    })
    .await
}

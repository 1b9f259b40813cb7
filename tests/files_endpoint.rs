//! Files at the Rust endpoint: chat to a member busy receiving files is not queued behind their
//! chunks; altered and misplaced chunks are refused with a message naming the file and chunk;
//! hostile file names are saved safely, never overwriting.

mod common;

use base64::Engine;
use common::files::*;
use common::*;
use dyspatcher::client::files::{Inbox, MAX_NAME_BYTES};
use dyspatcher::client::Client;
use dyspatcher::protocol::{self, CancelReason, ClientMsg};
use dyspatcher::session::{Destination, Event, FileEvent};

#[test]
fn chat_to_a_busy_recipient_goes_before_the_chunks_queued_for_it() {
    let server = start(|c| {
        c.limits.mailbox_bytes = 16 << 20;
        c.limits.mailbox_total = 256 << 20;
    });
    smol::block_on(async {
        let k = keys(7);
        let mut b = server.join("bobby", &k[0]).await;
        let mut c = server.join("carol", &k[1]).await;
        let mut d = server.join("david", &k[2]).await;
        let mut senders: Vec<Client> = Vec::new();
        for (i, name) in ["alice", "sendera", "senderb", "senderc"]
            .iter()
            .enumerate()
        {
            let mut s = server.join(name, &k[3 + i]).await;
            wait_joined(&mut s, "bobby").await;
            senders.push(s);
        }
        wait_joined(&mut c, "senderc").await;
        // Alice sends 16 MB to bob, and every sender as many files as it may: bob reads
        // nothing meanwhile, so their windows fill his queue with 64 chunks (5.6 MB).
        let mut queued = 0;
        for (n, s) in senders.iter_mut().enumerate() {
            for f in 0..protocol::FILES_IN_FLIGHT {
                let size = if n == 0 && f == 0 { 16 << 20 } else { 1 << 20 };
                let mut sending =
                    accepted(offer(s, "bobby", &format!("f{n}{f}"), content(size, f as u8)).await);
                send_window(s, &mut sending).await;
                queued += protocol::FILE_WINDOW;
            }
            // Answered in order: every chunk before it was routed.
            let probe = "f".repeat(32);
            s.send_msg(&ClientMsg::FileCancel {
                file: probe.clone(),
            })
            .await
            .unwrap();
            error_about(s, &probe).await;
        }
        // Carol writes to bob, then to david; david reads at once.
        c.send_direct("bobby", "chat for bob").await.unwrap();
        c.send_direct("david", "chat for david").await.unwrap();
        assert_eq!(next_message(&mut d).await.text, "chat for david");
        // Bob reads now: carol's message comes before the last chunk queued before it.
        let mut last_cseq_before = 0;
        within(60, "carol's message", async {
            loop {
                let text = b.recv_text().await.unwrap();
                if let Some(cseq) = dyspatcher::client::cseq_of(text.as_bytes()) {
                    last_cseq_before = cseq;
                } else if text.contains(r#""type":"direct""#) {
                    return;
                }
            }
        })
        .await;
        assert!(
            last_cseq_before < queued,
            "the chat frame came after all {queued} chunks ({last_cseq_before} before it)"
        );
    });
}

/// Offers a file of `chunks` full chunks to bob by hand; returns its sealer.
async fn offer_by_hand(
    a: &mut Client,
    to: &str,
    name: &str,
    data: &[u8],
) -> dyspatcher::session::OutgoingFile {
    let dest = Destination::Direct(to.to_string());
    a.fetch_keys(vec![to.to_string()]).await.unwrap();
    let (msgs, file) = a.session_mut().seal_file(&dest, &meta(name, data)).unwrap();
    for m in &msgs {
        a.send_msg(m).await.unwrap();
    }
    file
}

async fn failure(b: &mut Client) -> String {
    within(10, "a refused file", async {
        loop {
            if let Event::File(FileEvent::Failed { reason, .. }) = b.next_event().await.unwrap() {
                return reason;
            }
        }
    })
    .await
}

#[test]
fn altered_and_misplaced_chunks_are_refused_with_a_clear_message() {
    let server = start(|_| {});
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        let bob = b.session().key_id().to_string();
        let data = content(3 * 65536, 1);
        let chunk = |i: usize| data[i * 65536..(i + 1) * 65536].to_vec();
        // Chunk 1 sent in place of chunk 0: sealed for another index.
        let file = offer_by_hand(&mut a, &bob, "map.jpg", &data).await;
        let ClientMsg::Chunk(mut misplaced) = file.seal_chunk(1, &chunk(1)) else {
            unreachable!()
        };
        misplaced.i = 0;
        a.send_msg(&ClientMsg::Chunk(misplaced)).await.unwrap();
        let reason = failure(&mut b).await;
        assert_eq!(
            reason,
            "chunk 0 of map.jpg did not open: altered or not from this file"
        );
        // Bob cancelled it: alice is told.
        let (by, why) = cancelled(&mut a).await;
        assert_eq!((by.as_str(), why), ("bobby", CancelReason::Cancelled));
        // A chunk with one byte flipped.
        let file = offer_by_hand(&mut a, &bob, "list.pdf", &data).await;
        let ClientMsg::Chunk(mut flipped) = file.seal_chunk(0, &chunk(0)) else {
            unreachable!()
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ct = b64.decode(&flipped.ciphertext).unwrap();
        ct[100] ^= 1;
        flipped.ciphertext = b64.encode(ct);
        a.send_msg(&ClientMsg::Chunk(flipped)).await.unwrap();
        assert_eq!(
            failure(&mut b).await,
            "chunk 0 of list.pdf did not open: altered or not from this file"
        );
        // A chunk of another file spliced in (same index, same length).
        let one = offer_by_hand(&mut a, &bob, "one.bin", &data).await;
        let two = offer_by_hand(&mut a, &bob, "two.bin", &data).await;
        let ClientMsg::Chunk(mut spliced) = one.seal_chunk(0, &chunk(0)) else {
            unreachable!()
        };
        spliced.file = two.id.clone();
        a.send_msg(&ClientMsg::Chunk(spliced)).await.unwrap();
        assert_eq!(
            failure(&mut b).await,
            "chunk 0 of two.bin did not open: altered or not from this file"
        );
        // Nothing else was affected: one.bin still arrives whole.
        // (Three chunks: within the window.)
        for i in 0..3 {
            a.send_msg(&one.seal_chunk(i, &chunk(i as usize)))
                .await
                .unwrap();
        }
        // (Its offer was read above, while waiting for the refusal of two.bin.)
        assert_eq!(receive(&mut b).await, Got::File(String::new(), sha(&data)));
    });
}

#[test]
fn hostile_names_are_saved_safely_and_never_overwrite() {
    let server = start(|_| {});
    let dir = std::env::temp_dir().join(format!(
        "dyspatcher-files-{}",
        dyspatcher::crypto::random_id()
    ));
    smol::block_on(async {
        let k = keys(2);
        let mut a = server.join("alice", &k[0]).await;
        let mut b = server.join("bobby", &k[1]).await;
        wait_joined(&mut a, "bobby").await;
        let long = format!("{}.txt", "n".repeat(296));
        let names = [
            "../../x",
            ".bashrc",
            long.as_str(),
            "a\u{1b}[31mred\r\nline\u{7}.txt",
            "../../x",
        ];
        let mut inbox = Inbox::new(dir.clone());
        let mut saved = Vec::new();
        for (n, name) in names.iter().enumerate() {
            let data = content(1000 + n, n as u8);
            let mut sending = accepted(offer(&mut a, "bobby", name, data.clone()).await);
            let (sent, path) = futures_lite::future::zip(pump(&mut a, &mut sending), async {
                within(10, "a saved file", async {
                    loop {
                        match b.next_event().await.unwrap() {
                            Event::File(FileEvent::Offered {
                                id,
                                name,
                                size,
                                sha256,
                                ..
                            }) => {
                                inbox.offered(&id, &name, size, &sha256).unwrap();
                            }
                            Event::File(FileEvent::Data { id, data, .. }) => {
                                inbox.data(&id, &data).unwrap()
                            }
                            Event::File(FileEvent::Done { id }) => {
                                return inbox.done(&id).unwrap().0
                            }
                            _ => continue,
                        }
                    }
                })
                .await
            })
            .await;
            sent.unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data);
            saved.push(path);
        }
        let file_names: Vec<String> = saved
            .iter()
            .map(|p| {
                assert_eq!(p.parent().unwrap(), dir, "saved outside the folder: {p:?}");
                p.file_name().unwrap().to_string_lossy().into_owned()
            })
            .collect();
        assert_eq!(file_names[0], "x");
        assert_eq!(file_names[1], "bashrc");
        assert!(file_names[2].len() <= MAX_NAME_BYTES && file_names[2].ends_with(".txt"));
        assert_eq!(file_names[3], "a_[31mred__line_.txt");
        assert_eq!(file_names[4], "x (1)");
        assert!(file_names.iter().all(|n| !n.chars().any(char::is_control)));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

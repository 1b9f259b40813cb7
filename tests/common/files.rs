//! Helpers for the file tests: send a file from a [`Client`] within its window, receive one
//! and check it, and the events in between.

use dyspatcher::client::files::Sending;
use dyspatcher::client::Client;
use dyspatcher::protocol::{self, ClientMsg, ErrorCode, FileKind};
use dyspatcher::session::{Destination, Event, FileEvent, FileMeta};
use sha2::{Digest, Sha256};

use super::within;

/// `len` bytes that differ from file to file.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

pub fn sha(data: &[u8]) -> String {
    dyspatcher::crypto::hex(&Sha256::digest(data))
}

pub fn meta(name: &str, data: &[u8]) -> FileMeta {
    FileMeta {
        name: name.into(),
        mime: "application/octet-stream".into(),
        kind: FileKind::File,
        size: data.len() as u64,
        sha256: sha(data),
    }
}

/// What the server answered a manifest.
#[derive(Debug)]
pub enum Answer {
    Accepted(Sending, Option<Vec<String>>),
    Refused(ErrorCode, String),
}

/// Seals and sends a manifest for `data`; waits for the server's answer.
pub async fn offer(c: &mut Client, to: &str, name: &str, data: Vec<u8>) -> Answer {
    let to = match to {
        "all" => Destination::All,
        group if group.starts_with('#') => {
            Destination::Group(c.session().group_named(&group[1..]).unwrap())
        }
        name => Destination::Direct(c.session().key_id_of(name).unwrap().to_string()),
    };
    // The member list carries no public keys: fetch those the manifest is wrapped for.
    let wanted = match &to {
        Destination::Direct(k) => vec![k.clone()],
        Destination::Group(g) => c.session().missing_for_group(g),
        Destination::All => c.session().missing_for_all(),
    };
    c.fetch_keys(wanted).await.unwrap();
    let (msgs, file) = c.session_mut().seal_file(&to, &meta(name, &data)).unwrap();
    for m in &msgs {
        c.send_msg(m).await.unwrap();
    }
    let id = file.id.clone();
    let sending = Sending::new(
        file,
        Box::new(std::io::Cursor::new(data)),
        protocol::FILE_WINDOW,
    );
    within(10, "the manifest's answer", async {
        loop {
            match c.next_event().await.expect("connection alive") {
                Event::Ack(a) if a == id => return Answer::Accepted(sending, None),
                Event::FileSkipped { id: s, names } if s == id => {
                    return Answer::Accepted(sending, Some(names))
                }
                Event::Error {
                    code,
                    message,
                    id: Some(e),
                    ..
                } if e == id => return Answer::Refused(code, message),
                _ => continue,
            }
        }
    })
    .await
}

pub fn accepted(a: Answer) -> Sending {
    match a {
        Answer::Accepted(s, _) => s,
        Answer::Refused(code, m) => panic!("refused: {code:?} {m}"),
    }
}

/// Sends every chunk as the window allows; `Err` with the event that ended it early.
pub async fn pump(c: &mut Client, s: &mut Sending) -> Result<(), Event> {
    within(120, "the file's chunks to be acknowledged", async {
        loop {
            for m in s.ready().unwrap() {
                c.send_msg(&m).await.unwrap();
            }
            if s.finished() {
                return Ok(());
            }
            let ev = c.next_event().await.expect("connection alive");
            match ev {
                Event::File(FileEvent::ChunkAck { id, i }) if id == s.id() => s.acked(i),
                e @ Event::File(FileEvent::Cancelled { .. }) => return Err(e),
                e @ Event::Error { .. } => return Err(e),
                _ => continue,
            }
        }
    })
    .await
}

/// Sends up to the window only (no waiting for acknowledgements).
pub async fn send_window(c: &mut Client, s: &mut Sending) {
    for m in s.ready().unwrap() {
        c.send_msg(&m).await.unwrap();
    }
}

/// What a receiver got of one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// Complete and verified: name as sent and the content's SHA-256.
    File(String, String),
    /// Refused by this endpoint, with the reason shown.
    Failed(String),
    /// Cancelled by the server.
    Cancelled(protocol::CancelReason),
}

/// Receives the next file in full (or how it ended).
pub async fn receive(c: &mut Client) -> Got {
    receive_data(c).await.0
}

/// The same, with the content received.
pub async fn receive_data(c: &mut Client) -> (Got, Vec<u8>) {
    within(120, "a file", async {
        let mut name = String::new();
        let mut data = Vec::new();
        loop {
            let ev = c.next_event().await.expect("connection alive");
            match ev {
                Event::File(FileEvent::Offered { name: n, .. }) => name = n,
                Event::File(FileEvent::Data { data: d, .. }) => data.extend(d),
                Event::File(FileEvent::Done { .. }) => return (Got::File(name, sha(&data)), data),
                Event::File(FileEvent::Failed { reason, .. }) => {
                    return (Got::Failed(reason), data)
                }
                Event::File(FileEvent::Cancelled { reason, .. }) => {
                    return (Got::Cancelled(reason), data)
                }
                _ => continue,
            }
        }
    })
    .await
}

/// Waits for a `file_cancel` about a file of ours.
pub async fn cancelled(c: &mut Client) -> (String, protocol::CancelReason) {
    within(20, "a file_cancel", async {
        loop {
            if let Event::File(FileEvent::Cancelled { by, reason, .. }) =
                c.next_event().await.expect("connection alive")
            {
                return (by, reason);
            }
        }
    })
    .await
}

/// Waits for an error about `id`.
pub async fn error_about(c: &mut Client, id: &str) -> (ErrorCode, String) {
    within(10, "an error", async {
        loop {
            if let Event::Error {
                code,
                message,
                id: Some(e),
                ..
            } = c.next_event().await.expect("connection alive")
            {
                if e == id {
                    return (code, message);
                }
            }
        }
    })
    .await
}

/// A chunk message as text, for sending what a correct client never would.
pub fn chunk_text(file: &str, i: u64, ct_len: usize) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let msg = ClientMsg::Chunk(protocol::ChunkOut {
        file: file.into(),
        i,
        iv: b64.encode([0u8; 12]),
        ciphertext: b64.encode(vec![7u8; ct_len]),
    });
    serde_json::to_string(&msg).unwrap()
}

//! Writes the seeds of the `client_msg` and `session_open` targets: valid messages made by the
//! real session code with the fixture keys. Run from `fuzz/`:
//! `cargo +nightly run --release --bin make_seeds`.

use std::fs;
use std::path::Path;

use dyspatcher::protocol::{AllIn, ClientMsg, DirectIn, Resume, Sender, SenderKeyIn, ServerMsg};
use dyspatcher_fuzz::{joined, keys, SIGN};

fn write(dir: &str, name: &str, lines: &[String]) {
    let dir = Path::new("corpus").join(dir);
    fs::create_dir_all(&dir).expect("corpus directory");
    fs::write(dir.join(name), lines.join("\n") + "\n").expect("seed written");
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("encodes")
}

fn main() {
    let (alice, bob) = keys();
    let mut a = joined(&alice, "alice", &alice, &bob);
    let bob_id = bob.public().key_id().to_string();
    let from = Sender {
        name: "alice".into(),
        key_id: alice.public().key_id().into(),
    };

    // client_msg: what alice sends, as the connection reads it.
    let join = a.answer_challenge("fuzz-nonce", dyspatcher::protocol::now_ms(), "alice");
    let mut resumed = join.clone();
    if let ClientMsg::Join { resume, .. } = &mut resumed {
        *resume = Some(Resume { since: 3 });
    }
    let direct = a.seal_direct(&bob_id, "hello bob").expect("sealed");
    let all = a.seal_all("hello all").expect("sealed");
    let mut lines: Vec<String> = all.iter().map(json).collect();
    lines.push(json(&direct));
    write("client_msg", "join", &[json(&join)]);
    write("client_msg", "join_resume", &[json(&resumed)]);
    write("client_msg", "direct_all", &lines);
    write(
        "client_msg",
        "small",
        &[
            r#"{"type":"ack","seq":2}"#.into(),
            format!(
                r#"{{"type":"key_request","to":"{bob_id}","skid":"00112233445566778899aabbccddeeff","n":3}}"#
            ),
            r#"{"type":"moderate","action":"kick","name":"bobby","minutes":5}"#.into(),
            r#"{"type":"leave"}"#.into(),
        ],
    );

    // session_open: what bob receives from alice, signed by the harness (`SIGN`, ts from now).
    // A fresh sender: its first `@all` carries the sender key bob has not been given yet.
    let mut a = joined(&alice, "alice", &alice, &bob);
    let mut b_lines = Vec::new();
    let mut all_lines = Vec::new();
    for _ in 0..3 {
        for msg in a.seal_all("to everyone").expect("sealed") {
            match msg {
                ClientMsg::SenderKey(k) => b_lines.push(json(&ServerMsg::SenderKey(SenderKeyIn {
                    from: from.clone(),
                    skid: k.skid,
                    n: k.n,
                    commitment: k.commitment,
                    signature: SIGN.into(),
                    wrapped: k.keys[&bob_id].clone(),
                    group: None,
                }))),
                ClientMsg::All(m) => all_lines.push(json(&ServerMsg::All(AllIn {
                    id: m.id,
                    ts: 0,
                    from: from.clone(),
                    skid: m.skid,
                    n: m.n,
                    iv: m.iv,
                    ciphertext: m.ciphertext,
                    signature: SIGN.into(),
                    via: None,
                }))),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let ClientMsg::Direct(d) = direct else {
        unreachable!()
    };
    let direct_in = |signature: String, ts: i64| {
        json(&ServerMsg::Direct(DirectIn {
            id: d.id.clone(),
            ts,
            from: from.clone(),
            to: d.to.clone(),
            iv: d.iv.clone(),
            ciphertext: d.ciphertext.clone(),
            key: d.keys[&bob_id].clone(),
            signature,
            via: None,
        }))
    };
    write(
        "session_open",
        "direct_signed_here",
        &[direct_in(SIGN.into(), -10)],
    );
    write(
        "session_open",
        "direct_real_signature",
        &[direct_in(d.signature.clone(), d.ts)],
    );
    let mut in_order = b_lines.clone();
    in_order.extend(all_lines.iter().cloned());
    write("session_open", "sender_key_then_all", &in_order);
    let mut reversed: Vec<String> = all_lines.iter().rev().cloned().collect();
    reversed.extend(b_lines);
    write("session_open", "all_before_key", &reversed);
}

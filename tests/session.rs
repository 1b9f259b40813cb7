//! The end-to-end session without a network: ordering, replays and key requests.
mod common;
use dyspatcher::protocol::{AllIn, ClientMsg, Member, Options, Sender, SenderKeyIn, ServerMsg};
use dyspatcher::session::{Event, Session};

fn member(s: &Session, name: &str) -> Member {
    Member {
        name: name.into(),
        key_id: s.key_id().into(),
        admin: false,
    }
}

fn pair() -> (Session, Session) {
    let k = common::keys(2);
    let mut a = Session::new(k[0].clone());
    let mut b = Session::new(k[1].clone());
    let members = vec![member(&a, "alice"), member(&b, "bobby")];
    let options = Options {
        admin_name: "ADMIN".into(),
        disable_all: false,
        only_admin: false,
        remember: true,
        groups: Default::default(),
    };
    a.join_local("alice", members.clone(), options.clone());
    b.join_local("bobby", members, options);
    let keys = [k[0].public().clone(), k[1].public().clone()];
    a.add_keys(keys.clone());
    b.add_keys(keys);
    (a, b)
}

/// What the server would hand `to` for `msgs` sent by `from`.
fn relay(from: &Session, to: &Session, msgs: &[ClientMsg]) -> Vec<ServerMsg> {
    let sender = Sender {
        name: "alice".into(),
        key_id: from.key_id().into(),
    };
    msgs.iter()
        .filter_map(|m| match m {
            ClientMsg::SenderKey(k) => k.keys.get(to.key_id()).map(|w| {
                ServerMsg::SenderKey(SenderKeyIn {
                    from: sender.clone(),
                    skid: k.skid.clone(),
                    n: k.n,
                    commitment: k.commitment.clone(),
                    signature: k.signature.clone(),
                    wrapped: w.clone(),
                    group: None,
                })
            }),
            ClientMsg::All(a) => Some(ServerMsg::All(AllIn {
                id: a.id.clone(),
                ts: a.ts,
                from: sender.clone(),
                skid: a.skid.clone(),
                n: a.n,
                iv: a.iv.clone(),
                ciphertext: a.ciphertext.clone(),
                signature: a.signature.clone(),
                via: None,
            })),
            _ => None,
        })
        .collect()
}

fn texts(b: &mut Session, msgs: Vec<ServerMsg>) -> Vec<Result<String, String>> {
    msgs.into_iter()
        .flat_map(|m| b.handle(m).events)
        .map(|e| match e {
            Event::Message(m) => Ok(m.text),
            Event::Rejected { reason, .. } => Err(reason),
            e => Err(format!("{e:?}")),
        })
        .collect()
}

#[test]
fn out_of_order_messages_open_once_and_duplicates_are_dropped() {
    let (mut a, mut b) = pair();
    let sealed = a.seal_all("zero").unwrap();
    let m0 = relay(&a, &b, &sealed);
    let sealed = a.seal_all("one").unwrap();
    let m1 = relay(&a, &b, &sealed);
    let sealed = a.seal_all("two").unwrap();
    let m2 = relay(&a, &b, &sealed);
    assert_eq!(m0.len(), 2, "the first @all carries the sender key");
    assert_eq!(m1.len(), 1, "later ones do not");
    assert_eq!(texts(&mut b, m0[..1].to_vec()), vec![]);
    // Two arrives before one: one's key is kept while skipping ahead.
    assert_eq!(texts(&mut b, m2.clone()), vec![Ok("two".to_string())]);
    assert_eq!(texts(&mut b, m1.clone()), vec![Ok("one".to_string())]);
    assert_eq!(
        texts(&mut b, m0[1..].to_vec()),
        vec![Ok("zero".to_string())]
    );
    // Replays are dropped, whether the server repeats them or not.
    let again = texts(&mut b, m1);
    assert!(
        matches!(&again[..], [Err(r)] if r.contains("duplicate")),
        "{again:?}"
    );
}

#[test]
fn key_requests_are_answered_for_recent_messages_of_current_members_only() {
    let (mut a, mut b) = pair();
    let sent = a.seal_all("hello").unwrap();
    let all = relay(&a, &b, &sent[1..]);
    // Bob gets the message without the key: he keeps it and asks.
    let out = b.handle(all[0].clone());
    assert!(out.events.is_empty());
    let [ClientMsg::KeyRequest { to, skid, n, .. }] = &out.send[..] else {
        panic!("{:?}", out.send)
    };
    assert_eq!((to.as_str(), *n), (a.key_id(), 0));
    let request = ServerMsg::KeyRequest {
        from: Sender {
            name: "bobby".into(),
            key_id: b.key_id().into(),
        },
        skid: skid.clone(),
        n: *n,
        group: None,
    };
    let answer = a.handle(request.clone()).send;
    assert_eq!(answer.len(), 1);
    let relayed = relay(&a, &b, &answer);
    assert_eq!(texts(&mut b, relayed), vec![Ok("hello".to_string())]);
    // A stranger asking gets nothing.
    let stranger = ServerMsg::KeyRequest {
        from: Sender {
            name: "eve".into(),
            key_id: "e".repeat(64),
        },
        skid: skid.clone(),
        n: 0,
        group: None,
    };
    assert!(a.handle(stranger).send.is_empty());
    // Once bob has left and alice rotated, the old key is never handed out again.
    a.handle(ServerMsg::Left {
        key_id: b.key_id().into(),
        name: "bobby".into(),
        reason: dyspatcher::protocol::LeftReason::Left,
    });
    assert!(a.handle(request).send.is_empty());
}

#[test]
fn stale_timestamps_are_refused_by_receivers() {
    let (mut a, mut b) = pair();
    let sent = a.seal_direct(b.key_id(), "late").unwrap();
    let ClientMsg::Direct(mut d) = sent else {
        panic!()
    };
    d.ts -= 6 * 60 * 1000;
    // Re-sign as alice would have, so only the timestamp is wrong.
    let signed =
        dyspatcher::protocol::direct_bytes(&d.id, d.ts, a.key_id(), &d.to, &d.iv, &d.ciphertext);
    use base64::Engine;
    d.signature = base64::engine::general_purpose::STANDARD.encode(a.identity().sign(&signed));
    let msg = ServerMsg::Direct(dyspatcher::protocol::DirectIn {
        id: d.id.clone(),
        ts: d.ts,
        from: Sender {
            name: "alice".into(),
            key_id: a.key_id().into(),
        },
        to: d.to.clone(),
        iv: d.iv,
        ciphertext: d.ciphertext,
        key: d.keys[b.key_id()].clone(),
        signature: d.signature,
        via: None,
    });
    let got = texts(&mut b, vec![msg]);
    assert!(
        matches!(&got[..], [Err(r)] if r.contains("stale")),
        "{got:?}"
    );
}

#[test]
fn a_sender_cannot_make_receivers_hold_unbounded_sender_keys() {
    let (mut a, mut b) = pair();
    let mut first = None;
    for i in 0..10 {
        // Each departure makes alice start a new sender key.
        a.handle(ServerMsg::Left {
            key_id: "f".repeat(64),
            name: "gone".into(),
            reason: dyspatcher::protocol::LeftReason::Left,
        });
        let sealed = a.seal_all(&format!("m{i}")).unwrap();
        let relayed = relay(&a, &b, &sealed);
        if i == 0 {
            first = Some(relayed.clone());
        }
        assert_eq!(texts(&mut b, relayed), vec![Ok(format!("m{i}"))]);
    }
    // The oldest chains were dropped: a late copy of the first message cannot be opened.
    let mut late = first.unwrap();
    let out = b.handle(late.remove(1));
    assert!(
        out.events.is_empty() && matches!(&out.send[..], [ClientMsg::KeyRequest { .. }]),
        "{:?}",
        out.events
    );
}

#[test]
fn messages_waiting_for_a_sender_key_are_bounded_in_bytes_and_asked_for_once() {
    let (mut a, mut b) = pair();
    let text = "x".repeat(dyspatcher::protocol::MAX_TEXT);
    let sent = 30;
    let (mut refused, mut requests, mut size) = (0, 0, 0);
    for _ in 0..sent {
        let msgs = a.seal_all(&text).unwrap();
        // Only the message, never its sender key: b must keep it waiting.
        let all: Vec<ServerMsg> = relay(&a, &b, &msgs)
            .into_iter()
            .filter(|m| matches!(m, ServerMsg::All(_)))
            .collect();
        if let ServerMsg::All(m) = &all[0] {
            size = m.ciphertext.len() + m.signature.len();
        }
        let out = b.handle(all.into_iter().next().unwrap());
        requests += out.send.len();
        refused += out
            .events
            .iter()
            .filter(|e| matches!(e, Event::Rejected { reason, .. } if reason.contains("too many")))
            .count();
    }
    // 30 messages of ~44 KB, under the count bound (64) but over 1 MiB: the oldest go.
    let fits = dyspatcher::session::MAX_PENDING_BYTES / size;
    assert!(fits < sent && sent < 64, "{fits} fit");
    assert_eq!(refused, sent - fits);
    assert_eq!(
        requests, 1,
        "one key request for the chain, not one per message"
    );
}

#[test]
fn a_chain_jumps_at_most_max_jump_ahead_and_keeps_at_most_max_skipped_keys() {
    use dyspatcher::protocol::{MAX_JUMP, MAX_SKIPPED};
    let (mut a, mut b) = pair();
    let count = MAX_JUMP as usize + 3;
    let frames: Vec<Vec<ServerMsg>> = (0..count)
        .map(|i| {
            let sealed = a.seal_all(&format!("m{i}")).unwrap();
            relay(&a, &b, &sealed)
        })
        .collect();
    assert_eq!(texts(&mut b, frames[0].clone()), vec![Ok("m0".to_string())]);
    // From index 1, index MAX_JUMP + 2 is one further than a receiver follows.
    let far = texts(&mut b, frames[MAX_JUMP as usize + 2].clone());
    assert!(
        matches!(&far[..], [Err(r)] if r.contains("jumps too far ahead")),
        "{far:?}"
    );
    // MAX_SKIPPED ahead is followed: the keys of 1..=MAX_SKIPPED are kept.
    let last = MAX_SKIPPED + 1;
    assert_eq!(
        texts(&mut b, frames[last].clone()),
        vec![Ok(format!("m{last}"))]
    );
    // One more skipped key (last + 1) evicts the oldest kept (index 1), and only it.
    let next = last + 2;
    assert_eq!(
        texts(&mut b, frames[next].clone()),
        vec![Ok(format!("m{next}"))]
    );
    let old = texts(&mut b, frames[1].clone());
    assert!(
        matches!(&old[..], [Err(r)] if r.contains("too old")),
        "{old:?}"
    );
    assert_eq!(texts(&mut b, frames[2].clone()), vec![Ok("m2".to_string())]);
    assert_eq!(
        texts(&mut b, frames[last + 1].clone()),
        vec![Ok(format!("m{}", last + 1))]
    );
}

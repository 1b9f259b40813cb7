//! The session's public keys without a network: fetched only when needed, checked against their
//! key IDs, messages waiting for them in order and within their bounds, and messages of ours
//! waiting for recipients' keys.
mod common;
use std::collections::BTreeMap;

use base64::Engine;
use dyspatcher::protocol::{
    ClientMsg, DirectIn, LeftReason, Member, Options, Sender, ServerMsg, MAX_GET_KEYS,
};
use dyspatcher::session::{Event, SendError, Session, MAX_DEFERRED, MAX_WAITING};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn member(s: &Session, name: &str) -> Member {
    Member {
        name: name.into(),
        key_id: s.key_id().into(),
        admin: false,
    }
}

/// Sessions joined together, knowing no key but their own (as after a welcome).
fn sessions(n: usize) -> Vec<Session> {
    let k = common::keys(n);
    let mut all: Vec<Session> = k.iter().map(|k| Session::new(k.clone())).collect();
    let names = ["alice", "bobby", "carol", "david", "erika"];
    let members: Vec<Member> = all.iter().zip(names).map(|(s, n)| member(s, n)).collect();
    let options = Options {
        admin_name: "ADMIN".into(),
        disable_all: false,
        only_admin: false,
        remember: true,
        groups: Default::default(),
    };
    for (s, name) in all.iter_mut().zip(names) {
        s.join_local(name, members.clone(), options.clone());
    }
    all
}

fn key_of(s: &Session) -> String {
    B64.encode(s.identity().public().spki_der())
}

/// What the server would answer to `asked` in a room of `known`.
fn answer(asked: &[ClientMsg], known: &[&Session]) -> ServerMsg {
    let mut keys = BTreeMap::new();
    let mut unknown = Vec::new();
    for m in asked {
        let ClientMsg::GetKeys { key_ids } = m else {
            continue;
        };
        for id in key_ids {
            match known.iter().find(|s| s.key_id() == id) {
                Some(s) => {
                    keys.insert(id.clone(), key_of(s));
                }
                None => unknown.push(id.clone()),
            }
        }
    }
    ServerMsg::Keys { keys, unknown }
}

/// Alice's direct to `to` as the server relays it.
fn relayed_direct(a: &mut Session, to: &Session, text: &str) -> ServerMsg {
    a.add_keys([to.identity().public().clone()]);
    let ClientMsg::Direct(d) = a.seal_direct(to.key_id(), text).unwrap() else {
        panic!()
    };
    ServerMsg::Direct(DirectIn {
        id: d.id,
        ts: d.ts,
        from: Sender {
            name: "alice".into(),
            key_id: a.key_id().into(),
        },
        to: d.to,
        iv: d.iv,
        ciphertext: d.ciphertext,
        key: d.keys[to.key_id()].clone(),
        signature: d.signature,
        via: None,
    })
}

fn shown(events: &[Event]) -> Vec<Result<String, String>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(Ok(m.text.clone())),
            Event::Rejected { reason, .. } => Some(Err(reason.clone())),
            Event::Left { name, .. } => Some(Ok(format!("{name} left"))),
            _ => None,
        })
        .collect()
}

#[test]
fn a_message_waits_for_its_sender_s_key_asked_once_then_verifies_in_order() {
    let mut s = sessions(2);
    let (mut a, mut b) = (s.remove(0), s.remove(0));
    let first = relayed_direct(&mut a, &b, "one");
    let second = relayed_direct(&mut a, &b, "two");
    let out = b.handle(first);
    assert!(out.events.is_empty());
    assert_eq!(
        out.send,
        [ClientMsg::GetKeys {
            key_ids: vec![a.key_id().into()]
        }]
    );
    // The second waits too, and alice's key is not asked for twice.
    let out2 = b.handle(second);
    assert!(out2.events.is_empty() && out2.send.is_empty());
    // Alice leaves before the answer: her `left` comes after what she sent.
    let out3 = b.handle(ServerMsg::Left {
        key_id: a.key_id().into(),
        name: "alice".into(),
        reason: LeftReason::Left,
    });
    assert!(out3.events.is_empty());
    let done = b.handle(answer(&out.send, &[&a]));
    assert_eq!(
        shown(&done.events),
        [Ok("one".into()), Ok("two".into()), Ok("alice left".into())]
    );
}

#[test]
fn a_key_that_does_not_match_its_key_id_is_refused_and_reported() {
    let mut s = sessions(3);
    let (mut a, mut b, c) = (s.remove(0), s.remove(0), s.remove(0));
    let msg = relayed_direct(&mut a, &b, "forged?");
    b.handle(msg);
    // The server hands carol's key under alice's key ID.
    let mut keys = BTreeMap::new();
    keys.insert(a.key_id().to_string(), key_of(&c));
    let done = b.handle(ServerMsg::Keys {
        keys,
        unknown: vec![],
    });
    let shown = shown(&done.events);
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown[0]
        .as_ref()
        .unwrap_err()
        .contains("does not match its key ID"));
    assert!(shown[1]
        .as_ref()
        .unwrap_err()
        .contains("cannot be verified"));
    assert!(!b.has_key(a.key_id()));
    // Asked again, the right key is taken.
    let again = relayed_direct(&mut a, &b, "real");
    let out = b.handle(again).send;
    let done = b.handle(answer(&out, &[&a]));
    assert_eq!(shown_texts(&done.events), ["real"]);
}

fn shown_texts(events: &[Event]) -> Vec<String> {
    shown(events).into_iter().filter_map(Result::ok).collect()
}

#[test]
fn keys_nobody_asked_for_are_ignored_and_unknown_ones_refuse_what_waited() {
    let mut s = sessions(3);
    let (mut a, mut b, c) = (s.remove(0), s.remove(0), s.remove(0));
    let mut keys = BTreeMap::new();
    keys.insert(c.key_id().to_string(), key_of(&c));
    b.handle(ServerMsg::Keys {
        keys,
        unknown: vec![],
    });
    assert!(!b.has_key(c.key_id()), "an unasked key is not taken");
    let msg = relayed_direct(&mut a, &b, "who?");
    b.handle(msg);
    let done = b.handle(ServerMsg::Keys {
        keys: BTreeMap::new(),
        unknown: vec![a.key_id().into()],
    });
    let shown = shown(&done.events);
    assert_eq!(shown.len(), 1);
    assert!(shown[0].as_ref().unwrap_err().contains("could not be had"));
}

#[test]
fn at_most_max_waiting_messages_wait_the_oldest_is_refused_first() {
    let mut s = sessions(2);
    let (mut a, mut b) = (s.remove(0), s.remove(0));
    let mut asked = Vec::new();
    for i in 0..MAX_WAITING {
        let msg = relayed_direct(&mut a, &b, &format!("m{i}"));
        let out = b.handle(msg);
        assert!(out.events.is_empty());
        asked.extend(out.send);
    }
    let msg = relayed_direct(&mut a, &b, "one too many");
    let out = b.handle(msg);
    let shown = shown(&out.events);
    assert_eq!(shown.len(), 1);
    assert!(shown[0]
        .as_ref()
        .unwrap_err()
        .contains("too many messages waiting for public keys"));
    let done = b.handle(answer(&asked, &[&a]));
    let texts = shown_texts(&done.events);
    assert_eq!(texts.len(), MAX_WAITING);
    assert_eq!(texts[0], "m1");
    assert_eq!(texts.last().unwrap(), "one too many");
}

#[test]
fn at_most_a_mebibyte_of_messages_waits() {
    let mut s = sessions(2);
    let (mut a, mut b) = (s.remove(0), s.remove(0));
    let big = "x".repeat(32 * 1024);
    let mut refused = 0;
    let mut sent = 0;
    // Each waits with ~44 KiB of ciphertext: the 24th crosses 1 MiB.
    while refused == 0 {
        let msg = relayed_direct(&mut a, &b, &big);
        let out = b.handle(msg);
        sent += 1;
        refused += shown(&out.events).len();
        assert!(sent < 100, "the byte bound was never crossed");
    }
    assert!((20..30).contains(&sent), "{sent}");
}

#[test]
fn an_all_queued_for_keys_goes_once_they_come_with_the_sender_key_for_everyone() {
    let mut s = sessions(4);
    let mut a = s.remove(0);
    let out = a.queue_all("hello").unwrap();
    let [ClientMsg::GetKeys { key_ids }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(key_ids.len(), 3);
    // A second one waits behind it, asking nothing more.
    assert!(a.queue_all("again").unwrap().is_empty());
    let others: Vec<&Session> = s.iter().collect();
    let done = a.handle(answer(&out, &others));
    let ids: Vec<&str> = others.iter().map(|o| o.key_id()).collect();
    let kinds: Vec<&str> = done
        .send
        .iter()
        .map(|m| match m {
            ClientMsg::SenderKey(k) => {
                // Everyone (and, joined locally as the prompt is, our own other endpoint).
                assert!(ids.iter().all(|id| k.keys.contains_key(*id)), "{k:?}");
                "sender_key"
            }
            ClientMsg::All(_) => "all",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["sender_key", "all", "all"]);
}

#[test]
fn a_direct_to_a_member_whose_key_cannot_be_had_is_not_sent_and_said_so() {
    let mut s = sessions(2);
    let (mut a, b) = (s.remove(0), s.remove(0));
    let out = a.queue_direct(b.key_id(), "hi").unwrap();
    assert_eq!(out.len(), 1);
    let done = a.handle(ServerMsg::Keys {
        keys: BTreeMap::new(),
        unknown: vec![b.key_id().into()],
    });
    assert!(done.send.is_empty());
    assert!(matches!(&done.events[..], [Event::NotSent { to, .. }] if to == b.key_id()));
    assert_eq!(
        a.seal_direct(b.key_id(), "x"),
        Err(SendError::NoKey(b.key_id().into()))
    );
}

#[test]
fn at_most_max_deferred_messages_wait_for_keys() {
    let mut s = sessions(2);
    let (mut a, b) = (s.remove(0), s.remove(0));
    for i in 0..MAX_DEFERRED {
        a.queue_direct(b.key_id(), &format!("m{i}")).unwrap();
    }
    assert_eq!(a.queue_direct(b.key_id(), "one more"), Err(SendError::Busy));
}

#[test]
fn keys_are_asked_for_in_batches_of_at_most_max_get_keys() {
    let k = common::keys(MAX_GET_KEYS + 2);
    let mut a = Session::new(k[0].clone());
    let wanted: Vec<String> = k.iter().map(|k| k.public().key_id().to_string()).collect();
    let asks = a.request_keys(wanted.clone());
    let sizes: Vec<usize> = asks
        .iter()
        .map(|m| match m {
            ClientMsg::GetKeys { key_ids } => key_ids.len(),
            _ => 0,
        })
        .collect();
    // Our own key is known already.
    assert_eq!(sizes, [MAX_GET_KEYS, 1]);
    assert!(a.request_keys(wanted).is_empty(), "asked once");
}

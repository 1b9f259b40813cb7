//! Inputs found while writing the session's fuzz target (fuzz/fuzz_targets/session_open.rs) and
//! replayed through it: a `welcome`, `direct`, `all` or `sender_key` with an integer at the end
//! of its range is refused cleanly rather than overflowing. A malicious member signs whatever it
//! likes, so each message here is signed by the sender's real key. Uses the fixture keys only.
use std::sync::Arc;

use base64::Engine;
use dyspatcher::crypto::Identity;
use dyspatcher::protocol::{
    self, AllIn, ClientMsg, DirectIn, Limits, Member, Options, Sender, SenderKeyIn, ServerMsg,
};
use dyspatcher::session::{Event, Session};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn identity(pem: &str) -> Arc<Identity> {
    Arc::new(Identity::from_pem(pem).unwrap())
}

fn member(id: &Identity, name: &str) -> Member {
    Member {
        name: name.into(),
        key_id: id.public().key_id().into(),
        admin: false,
    }
}

fn options() -> Options {
    Options {
        admin_name: "ADMIN".into(),
        disable_all: false,
        only_admin: false,
        remember: true,
        groups: Default::default(),
    }
}

/// Alice (who sends) and bob (who receives), joined together.
fn pair() -> (Session, Session) {
    let alice = identity(include_str!("fixtures/alice.pem"));
    let bob = identity(include_str!("fixtures/bob.pem"));
    let members = vec![member(&alice, "alice"), member(&bob, "bobby")];
    let options = options();
    let (mut a, mut b) = (Session::new(alice), Session::new(bob));
    a.join_local("alice", members.clone(), options.clone());
    b.join_local("bobby", members, options);
    let keys = [a.identity().public().clone(), b.identity().public().clone()];
    a.add_keys(keys.clone());
    b.add_keys(keys);
    (a, b)
}

fn from(a: &Session) -> Sender {
    Sender {
        name: "alice".into(),
        key_id: a.key_id().into(),
    }
}

/// Alice's direct to bob, stamped `ts` and signed by her.
fn direct_at(a: &mut Session, b: &Session, ts: i64) -> ServerMsg {
    let ClientMsg::Direct(d) = a.seal_direct(b.key_id(), "hello").unwrap() else {
        unreachable!()
    };
    let signed = protocol::direct_bytes(&d.id, ts, a.key_id(), &d.to, &d.iv, &d.ciphertext);
    ServerMsg::Direct(DirectIn {
        id: d.id,
        ts,
        from: from(a),
        to: d.to,
        iv: d.iv,
        ciphertext: d.ciphertext,
        key: d.keys[b.key_id()].clone(),
        signature: B64.encode(a.identity().sign(&signed)),
        via: None,
    })
}

fn rejections(b: &mut Session, msg: ServerMsg) -> Vec<String> {
    b.handle(msg)
        .events
        .into_iter()
        .map(|e| match e {
            Event::Rejected { reason, .. } => reason,
            e => panic!("expected a rejection, got {e:?}"),
        })
        .collect()
}

#[test]
fn timestamps_at_the_ends_of_i64_are_stale_for_receivers() {
    // `(ts - now).abs()` overflowed for these.
    let (mut a, mut b) = pair();
    let now = b.now();
    for ts in [i64::MIN, i64::MIN + now, i64::MAX] {
        let msg = direct_at(&mut a, &b, ts);
        let got = rejections(&mut b, msg);
        assert!(
            matches!(&got[..], [r] if r.contains("stale")),
            "ts {ts}: {got:?}"
        );
    }
}

#[test]
fn a_welcome_with_a_clock_at_the_end_of_i64_is_survived() {
    // `time - now` overflowed when the server's clock was sent as `i64::MIN`.
    let (mut a, mut b) = pair();
    for time in [i64::MIN, i64::MAX] {
        let welcome = ServerMsg::Welcome {
            you: member(b.identity(), "bobby"),
            members: vec![member(a.identity(), "alice"), member(b.identity(), "bobby")],
            away: Vec::new(),
            resumed: true,
            seq: 0,
            cseq: 0,
            options: options(),
            limits: Limits::new(20, 40, 1024 * 1024, 60),
            time,
            groups: Vec::new(),
        };
        b.handle(welcome);
        // Every message is now far from bob's idea of the server's clock: refused, not a panic.
        let msg = direct_at(&mut a, &b, protocol::now_ms());
        let got = rejections(&mut b, msg);
        assert!(
            matches!(&got[..], [r] if r.contains("stale")),
            "time {time}: {got:?}"
        );
    }
}

#[test]
fn a_sender_key_chain_at_its_last_index_is_refused_not_overflowed() {
    // A sender key at n = u32::MAX, then a message at that index: advancing the chain past it
    // overflowed the index.
    let (mut a, mut b) = pair();
    let sealed = a.seal_all("hello").unwrap();
    let [ClientMsg::SenderKey(k), ClientMsg::All(m)] = &sealed[..] else {
        panic!("{sealed:?}")
    };
    let n = u32::MAX;
    let key_bytes = protocol::sender_key_bytes(a.key_id(), &k.skid, n, &k.commitment);
    let key = ServerMsg::SenderKey(SenderKeyIn {
        from: from(&a),
        skid: k.skid.clone(),
        n,
        commitment: k.commitment.clone(),
        signature: B64.encode(a.identity().sign(&key_bytes)),
        wrapped: k.keys[b.key_id()].clone(),
        group: None,
    });
    assert!(b.handle(key).events.is_empty(), "the sender key is taken");
    let all_bytes = protocol::all_bytes(&m.id, m.ts, a.key_id(), &m.skid, n, &m.iv, &m.ciphertext);
    let all = ServerMsg::All(AllIn {
        id: m.id.clone(),
        ts: m.ts,
        from: from(&a),
        skid: m.skid.clone(),
        n,
        iv: m.iv.clone(),
        ciphertext: m.ciphertext.clone(),
        signature: B64.encode(a.identity().sign(&all_bytes)),
        via: None,
    });
    let got = rejections(&mut b, all);
    assert!(
        matches!(&got[..], [r] if r.contains("chain index at its end")),
        "{got:?}"
    );
}

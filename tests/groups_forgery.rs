//! What the server cannot do to a group, tested from where the server sits: a test "server"
//! relays the frames real sessions seal (as the hub would) and forges others. An altered roster,
//! a bad signature, an older epoch replayed and a roster signed by a non-owner are each refused
//! with a warning and change nothing; a ghost the server routes to gets no key it can open; and
//! the life of a group among sessions: create, write, add a member who cannot open what came
//! before, remove one who cannot open what comes after, hand over, leave.

mod common;

use base64::Engine;
use dyspatcher::protocol::{
    self, ClientMsg, GroupIn, GroupLeftReason, Limits, Member, Options, Roster, Sender,
    SenderKeyIn, ServerMsg,
};
use dyspatcher::session::{Destination, Event, GroupEvent, SendError, Session};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const NAMES: [&str; 5] = ["alice", "bobby", "carol", "david", "ghost"];

/// Five sessions welcomed as users into one chat, each knowing every public key.
fn chat() -> Vec<Session> {
    let k = common::keys(5);
    let mut all: Vec<Session> = k.iter().map(|k| Session::new(k.clone())).collect();
    let members: Vec<Member> = all
        .iter()
        .zip(NAMES)
        .map(|(s, n)| Member {
            name: n.into(),
            key_id: s.key_id().into(),
            admin: false,
        })
        .collect();
    let publics: Vec<_> = k.iter().map(|k| k.public().clone()).collect();
    for (i, s) in all.iter_mut().enumerate() {
        s.handle(ServerMsg::Welcome {
            you: members[i].clone(),
            members: members.clone(),
            away: Vec::new(),
            resumed: false,
            seq: 0,
            cseq: 0,
            options: Options {
                admin_name: "ADMIN".into(),
                disable_all: false,
                only_admin: false,
                remember: true,
                groups: Default::default(),
            },
            limits: Limits::new(20, 40, 1 << 20, 600),
            time: protocol::now_ms(),
            groups: Vec::new(),
        });
        s.add_keys(publics.clone());
    }
    all
}

fn sender(s: &Session, i: usize) -> Sender {
    Sender {
        name: NAMES[i].into(),
        key_id: s.key_id().into(),
    }
}

/// What the hub would hand `to` of what `from` (index `fi`) sent: the roster as sent, the
/// group frames, and `to`'s own entry of a sender key (a ghost gets the key only if an entry
/// was wrapped for it).
fn relay(from: &Session, fi: usize, to: &Session, msgs: &[ClientMsg]) -> Vec<ServerMsg> {
    msgs.iter()
        .filter_map(|m| match m {
            ClientMsg::GroupRoster { roster } => Some(ServerMsg::GroupRoster {
                roster: roster.clone(),
                by: from.key_id().into(),
            }),
            ClientMsg::SenderKey(k) => k.keys.get(to.key_id()).map(|w| {
                ServerMsg::SenderKey(SenderKeyIn {
                    from: sender(from, fi),
                    skid: k.skid.clone(),
                    n: k.n,
                    commitment: k.commitment.clone(),
                    signature: k.signature.clone(),
                    wrapped: w.clone(),
                    group: k.group.clone(),
                })
            }),
            ClientMsg::Group(g) => Some(ServerMsg::Group(GroupIn {
                group: g.group.clone(),
                epoch: g.epoch,
                id: g.id.clone(),
                ts: g.ts,
                from: sender(from, fi),
                skid: g.skid.clone(),
                n: g.n,
                iv: g.iv.clone(),
                ciphertext: g.ciphertext.clone(),
                signature: g.signature.clone(),
                via: None,
            })),
            _ => None,
        })
        .collect()
}

/// Hands `frames` to `s`; returns its events.
fn feed(s: &mut Session, frames: Vec<ServerMsg>) -> Vec<Event> {
    frames
        .into_iter()
        .flat_map(|f| s.handle(f).events)
        .collect()
}

/// Sends `msgs` from session `fi` to each of `to`; returns their events.
fn deliver(all: &mut [Session], fi: usize, to: &[usize], msgs: &[ClientMsg]) -> Vec<Vec<Event>> {
    to.iter()
        .map(|&ti| {
            let frames = relay(&all[fi], fi, &all[ti], msgs);
            feed(&mut all[ti], frames)
        })
        .collect()
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

fn rejected(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn warnings(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Group(GroupEvent::Refused { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn roster_of(msgs: &[ClientMsg]) -> Roster {
    msgs.iter()
        .find_map(|m| match m {
            ClientMsg::GroupRoster { roster } => Some(roster.clone()),
            _ => None,
        })
        .expect("a roster")
}

fn entries(msgs: &[ClientMsg]) -> Vec<String> {
    let mut keys: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            ClientMsg::SenderKey(k) => Some(k.keys.keys().cloned().collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    keys.sort();
    keys
}

fn ids(all: &[Session], who: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = who.iter().map(|&i| all[i].key_id().to_string()).collect();
    v.sort();
    v
}

/// Alice creates "medics" with bobby and carol; everyone takes it.
fn medics(all: &mut [Session]) -> (String, Roster) {
    let msgs = all[0].create_group("medics", &["bobby", "carol"]).unwrap();
    let roster = roster_of(&msgs);
    for events in deliver(all, 0, &[1, 2], &msgs) {
        assert!(events.iter().any(|e| matches!(e,
            Event::Group(GroupEvent::Roster { new: true, owner, .. }) if owner == "alice")));
        assert!(events.iter().any(|e| matches!(e,
            Event::Group(GroupEvent::Info { info, .. }) if info.name == "medics")));
    }
    (roster.group.clone(), roster)
}

#[test]
fn a_group_lives_create_write_add_remove_hand_over_leave() {
    let mut all = chat();
    let (g, r1) = medics(&mut all);
    assert_eq!(all[1].group_named("medics").as_deref(), Some(g.as_str()));
    // Written at epoch 1: bobby and carol open it.
    let first = all[0].seal_group(&g, "epoch one").unwrap();
    assert_eq!(
        entries(&first),
        Vec::<String>::new(),
        "keys already given with the name"
    );
    for events in deliver(&mut all, 0, &[1, 2], &first) {
        assert_eq!(texts(&events), ["epoch one"]);
        assert!(matches!(&events[0], Event::Message(m) if m.to == Destination::Group(g.clone())));
    }
    // Add david: a new epoch, a fresh chain; what was written before does not open for him.
    let add = all[0].group_add(&g, "david").unwrap();
    let r2 = roster_of(&add);
    assert_eq!(r2.epoch, 2);
    let got = deliver(&mut all, 0, &[1, 2, 3], &add);
    assert!(got[0].iter().any(|e| matches!(e,
        Event::Group(GroupEvent::Roster { added, .. }) if added == &["david".to_string()])));
    let old = deliver(&mut all, 0, &[3], &first).remove(0);
    assert!(
        texts(&old).is_empty() && !rejected(&old).is_empty(),
        "{old:?}"
    );
    assert_eq!(
        entries(&add),
        ids(&all, &[1, 2, 3]),
        "the new chain, with the name"
    );
    let second = all[0].seal_group(&g, "epoch two").unwrap();
    let ClientMsg::Group(m1) = first.last().unwrap() else {
        panic!()
    };
    let ClientMsg::Group(m2) = add.last().unwrap() else {
        panic!()
    };
    assert_ne!(m1.skid, m2.skid, "a new epoch starts a new chain");
    for events in deliver(&mut all, 0, &[1, 2, 3], &second) {
        assert_eq!(texts(&events), ["epoch two"]);
    }
    // Bobby writes in epoch 2: his chain too reaches only the verified roster.
    let from_bob = all[1].seal_group(&g, "bob here").unwrap();
    assert_eq!(entries(&from_bob), ids(&all, &[0, 2, 3]));
    for events in deliver(&mut all, 1, &[0, 2, 3], &from_bob) {
        assert_eq!(texts(&events), ["bob here"]);
    }
    // Remove carol: she is told she is out, gets no key for what comes after, cannot open it.
    let remove = all[0].group_remove(&g, "carol").unwrap();
    let out = deliver(&mut all, 0, &[1, 2, 3], &remove);
    assert!(out[1]
        .iter()
        .any(|e| matches!(e, Event::Group(GroupEvent::Gone { .. }))));
    assert!(all[2].groups().is_empty());
    assert_eq!(entries(&remove), ids(&all, &[1, 3]));
    let third = all[0].seal_group(&g, "without carol").unwrap();
    let at_carol = deliver(&mut all, 0, &[2], &third).remove(0);
    assert!(texts(&at_carol).is_empty() && !rejected(&at_carol).is_empty());
    // Hand over to bobby (signed by alice); alice may no longer change it, bobby may.
    let handover = vec![all[0].group_owner(&g, "bobby").unwrap()];
    deliver(&mut all, 0, &[1, 3], &handover);
    assert_eq!(all[1].groups()[&g].roster.owner, all[1].key_id());
    assert_eq!(all[0].group_add(&g, "carol"), Err(SendError::NotOwner));
    // David leaves: the server tells the others; bobby, the owner, signs a new epoch at once.
    let david = all[3].key_id().to_string();
    assert!(matches!(
        all[3].group_leave(&g),
        Ok(ClientMsg::GroupLeave { .. })
    ));
    let left = ServerMsg::GroupLeft {
        group: g.clone(),
        key_id: david.clone(),
        reason: GroupLeftReason::Left,
    };
    let out = all[1].handle(left.clone());
    let [ClientMsg::GroupRoster { roster }, ..] = &out.send[..] else {
        panic!("{:?}", out.send)
    };
    assert_eq!((roster.epoch, roster.lists(&david)), (5, false));
    // With it, the group's name under the new chain, wrapped for alice only.
    assert_eq!(entries(&out.send), ids(&all, &[0]));
    assert!(warnings(&all[0].handle(left).events).is_empty());
    let got = deliver(&mut all, 1, &[0], &out.send).remove(0);
    assert!(
        warnings(&got).is_empty() && rejected(&got).is_empty(),
        "{got:?}"
    );
    assert_eq!(all[0].groups()[&g].roster.epoch, 5);
    let last = all[1].seal_group(&g, "just us").unwrap();
    assert_eq!(texts(&deliver(&mut all, 1, &[0], &last)[0]), ["just us"]);
    assert_eq!(r1.epoch, 1);
}

#[test]
fn rosters_the_server_alters_replays_or_signs_itself_are_refused() {
    let mut all = chat();
    let (g, r1) = medics(&mut all);
    let ghost = all[4].key_id().to_string();
    let bob = all[1].key_id().to_string();
    let alice = all[0].key_id().to_string();
    let carol = all[2].key_id().to_string();
    let to_bob = |r: &Roster, by: &str| {
        vec![ServerMsg::GroupRoster {
            roster: r.clone(),
            by: by.to_string(),
        }]
    };
    // Altered: the ghost added to a roster, alice's signature kept.
    let mut altered = r1.clone();
    altered.epoch = 2;
    altered.members.push(ghost.clone());
    altered.members.sort();
    let w = warnings(&feed(&mut all[1], to_bob(&altered, &alice)));
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("refused: not signed by its owner"), "{w:?}");
    // A signature of nothing: refused the same way.
    let mut junk = altered.clone();
    junk.signature = B64.encode([7u8; 256]);
    assert_eq!(warnings(&feed(&mut all[1], to_bob(&junk, &alice))).len(), 1);
    // Signed by a member who is not the owner (carol), even in a later epoch.
    let members = altered.members.clone();
    let bytes = protocol::roster_bytes(&g, 2, all[0].key_id(), &members);
    let mut by_carol = altered.clone();
    by_carol.signature = B64.encode(all[2].identity().sign(&bytes));
    let w = warnings(&feed(&mut all[1], to_bob(&by_carol, &carol)));
    assert!(w[0].contains("not signed by its owner"), "{w:?}");
    // Nothing changed: bobby still wraps for alice and carol only.
    assert_eq!(all[1].groups()[&g].roster, r1);
    let msgs = all[1].seal_group(&g, "still three").unwrap();
    assert_eq!(entries(&msgs), ids(&all, &[0, 2]));
    // A real change, then the older epoch replayed.
    let add = all[0].group_add(&g, "david").unwrap();
    deliver(&mut all, 0, &[1], &add);
    let w = warnings(&feed(&mut all[1], to_bob(&r1, &alice)));
    assert!(w[0].contains("older epoch"), "{w:?}");
    assert_eq!(all[1].groups()[&g].roster.epoch, 2);
    // A new group the server invents that does not list bobby, or signed by another than its
    // owner: refused.
    let other = "abcdefabcdefabcdefabcdefabcdef00".to_string();
    let mut m = vec![all[0].key_id().to_string(), ghost.clone()];
    m.sort();
    let sig = all[4]
        .identity()
        .sign(&protocol::roster_bytes(&other, 1, &ghost, &m));
    let not_me = Roster {
        group: other.clone(),
        epoch: 1,
        owner: ghost.clone(),
        members: m,
        signature: B64.encode(sig),
    };
    let w = warnings(&feed(&mut all[1], to_bob(&not_me, &ghost)));
    assert!(w[0].contains("does not list you"), "{w:?}");
    let mut m = vec![all[0].key_id().to_string(), bob.clone()];
    m.sort();
    let sig = all[4]
        .identity()
        .sign(&protocol::roster_bytes(&other, 1, all[0].key_id(), &m));
    let posing = Roster {
        group: other.clone(),
        epoch: 1,
        owner: all[0].key_id().into(),
        members: m,
        signature: B64.encode(sig),
    };
    let w = warnings(&feed(&mut all[1], to_bob(&posing, &ghost)));
    assert!(w[0].contains("not signed by its owner"), "{w:?}");
    assert!(!all[1].groups().contains_key(&other));
}

#[test]
fn a_ghost_the_server_routes_to_gets_nothing_it_can_open() {
    let mut all = chat();
    let (g, _) = medics(&mut all);
    let msgs = all[0].seal_group(&g, "for the roster only").unwrap();
    let sealed_again = all[0].seal_group(&g, "and this").unwrap();
    // The server routes everything to the ghost too: no entry was wrapped for it.
    let ghost = all[4].key_id().to_string();
    for m in msgs.iter().chain(&sealed_again) {
        if let ClientMsg::SenderKey(k) = m {
            assert!(!k.keys.contains_key(&ghost));
        }
    }
    let at_ghost = deliver(&mut all, 0, &[4], &sealed_again).remove(0);
    assert!(texts(&at_ghost).is_empty());
    assert!(!rejected(&at_ghost).is_empty(), "{at_ghost:?}");
    // Even with a sender key the server hands it that was wrapped for someone else, nothing
    // opens: the wrap is for bobby's key.
    let Some(ClientMsg::SenderKey(k)) = all[0]
        .group_add(&g, "david")
        .ok()
        .and_then(|v| v.into_iter().find(|m| matches!(m, ClientMsg::SenderKey(_))))
    else {
        panic!("a sender key")
    };
    let stolen = ServerMsg::SenderKey(SenderKeyIn {
        from: sender(&all[0], 0),
        skid: k.skid.clone(),
        n: k.n,
        commitment: k.commitment.clone(),
        signature: k.signature.clone(),
        wrapped: k.keys[all[1].key_id()].clone(),
        group: k.group.clone(),
    });
    let r = rejected(&all[4].handle(stolen).events);
    assert_eq!(r.len(), 1, "{r:?}");
    // And what the ghost sends into the group is refused by the members.
    let forged = ServerMsg::Group(GroupIn {
        group: g.clone(),
        epoch: 1,
        id: dyspatcher::crypto::random_id(),
        ts: protocol::now_ms(),
        from: sender(&all[4], 4),
        skid: dyspatcher::crypto::random_id(),
        n: 0,
        iv: "AAAAAAAAAAAAAAAA".into(),
        ciphertext: "AAAAAAAAAAAAAAAAAAAAAAAA".into(),
        signature: "AAAA".into(),
        via: None,
    });
    let r = rejected(&all[2].handle(forged).events);
    assert!(r[0].contains("not on the group's verified roster"), "{r:?}");
}

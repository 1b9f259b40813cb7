//! A group's life between Rust clients through the real server, with the commands of `dyspatcher
//! connect`: create, write, add a fourth member (who gets nothing written before), remove one
//! (who gets nothing after), hand over, leave (the new owner signs the next epoch by itself).

mod common;

use common::files::*;
use common::*;
use dyspatcher::client::Client;
use dyspatcher::console::groups;
use dyspatcher::session::{Destination, Event, GroupEvent, Opened};
use futures_lite::future::zip;

/// Runs a typed group command on `c` as `connect` does.
async fn cmd(c: &mut Client, line: &str) {
    let command = groups::parse(line)
        .expect("a group command")
        .expect("parses");
    let missing = groups::keys_needed(c.session(), &command);
    c.fetch_keys(missing).await.unwrap();
    let (msgs, _) = groups::run(c.session_mut(), &command).unwrap();
    for m in &msgs {
        c.send_msg(m).await.unwrap();
    }
}

/// The next group event matching `want`; panics on a refused roster or message.
async fn group_event(c: &mut Client, want: impl Fn(&GroupEvent) -> bool) -> GroupEvent {
    within(10, "a group event", async {
        loop {
            match c.next_event().await.expect("connection alive") {
                Event::Group(GroupEvent::Refused { reason, .. }) => panic!("{reason}"),
                Event::Rejected { reason, .. } => panic!("rejected: {reason}"),
                Event::Group(e) if want(&e) => return e,
                _ => continue,
            }
        }
    })
    .await
}

async fn named(c: &mut Client, name: &str) {
    group_event(
        c,
        |e| matches!(e, GroupEvent::Info { info, .. } if info.name == name),
    )
    .await;
}

#[test]
fn a_group_between_rust_clients() {
    let server = start(|_| {});
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(4);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        let mut carol = server.join("carol", &k[2]).await;
        let mut david = server.join("david", &k[3]).await;
        wait_joined(&mut alice, "david").await;

        cmd(&mut alice, "/group create medics bobby carol").await;
        named(&mut bob, "medics").await;
        named(&mut carol, "medics").await;
        let g = alice.session().group_named("medics").unwrap();
        assert_eq!(bob.session().group_named("medics"), Some(g.clone()));

        cmd(&mut alice, "#medics hello").await;
        for c in [&mut bob, &mut carol] {
            let m: Opened = next_message(c).await;
            assert_eq!(
                (m.text.as_str(), &m.to),
                ("hello", &Destination::Group(g.clone()))
            );
        }

        // David added: he learns the group, and the first thing he can read is what follows.
        cmd(&mut alice, "/group add medics david").await;
        named(&mut david, "medics").await;
        let added = group_event(&mut bob, |e| matches!(e, GroupEvent::Roster { .. })).await;
        assert!(matches!(added, GroupEvent::Roster { epoch: 2, added, .. } if added == ["david"]));
        cmd(&mut alice, "#medics welcome david").await;
        assert_eq!(next_message(&mut david).await.text, "welcome david");
        assert_eq!(next_message(&mut bob).await.text, "welcome david");
        assert_eq!(next_message(&mut carol).await.text, "welcome david");

        // Carol removed: she is told, and what follows does not reach her.
        cmd(&mut alice, "/group remove medics carol").await;
        group_event(&mut carol, |e| matches!(e, GroupEvent::Gone { .. })).await;
        cmd(&mut alice, "#medics without carol").await;
        assert_eq!(next_message(&mut bob).await.text, "without carol");
        assert_eq!(next_message(&mut david).await.text, "without carol");
        alice.send_all("a marker for carol").await.unwrap();
        assert_eq!(next_message(&mut carol).await.text, "a marker for carol");

        // Handed to bobby; then david leaves and bobby signs the next epoch without him.
        cmd(&mut alice, "/group owner medics bobby").await;
        group_event(&mut bob, |e| {
            matches!(e, GroupEvent::Roster { epoch: 4, .. })
        })
        .await;
        assert_eq!(
            bob.session().groups()[&g].roster.owner,
            bob.session().key_id()
        );
        cmd(&mut david, "/group leave medics").await;
        assert!(david.session().groups().is_empty());
        let left = group_event(&mut bob, |e| matches!(e, GroupEvent::MemberLeft { .. })).await;
        assert!(matches!(left, GroupEvent::MemberLeft { name, .. } if name == "david"));
        let next = group_event(&mut alice, |e| {
            matches!(e, GroupEvent::Roster { epoch: 5, .. })
        })
        .await;
        assert!(matches!(next, GroupEvent::Roster { removed, .. } if removed == ["david"]));
        cmd(&mut bob, "#medics just us").await;
        let m = next_message(&mut alice).await;
        assert_eq!(
            (m.text.as_str(), m.from_name.as_str()),
            ("just us", "bobby")
        );
    });
}

#[test]
fn a_group_the_server_refuses_to_create_is_forgotten() {
    let server = start(|c| c.limits.groups.limits.max_group_size = 2);
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = server.join("alice", &k[0]).await;
        server.join("bobby", &k[1]).await;
        server.join("carol", &k[2]).await;
        wait_joined(&mut alice, "carol").await;
        cmd(&mut alice, "/group create big bobby carol").await;
        let gone = group_event(&mut alice, |e| matches!(e, GroupEvent::Gone { .. })).await;
        assert!(matches!(gone, GroupEvent::Gone { why, .. } if why.contains("refused")));
        assert!(alice.session().groups().is_empty());
    });
}

#[test]
fn a_file_to_a_group_reaches_its_members_and_no_one_else() {
    let server = start(|_| {});
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(4);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        let mut carol = server.join("carol", &k[2]).await;
        let mut david = server.join("david", &k[3]).await;
        wait_joined(&mut alice, "david").await;
        cmd(&mut alice, "/group create medics bobby carol").await;
        named(&mut bob, "medics").await;
        named(&mut carol, "medics").await;

        let data = content(200_000, 7);
        let mut sending = accepted(offer(&mut alice, "#medics", "map.bin", data.clone()).await);
        let receivers = zip(receive(&mut bob), receive(&mut carol));
        let (sent, (gb, gc)) = zip(pump(&mut alice, &mut sending), receivers).await;
        sent.unwrap();
        for got in [gb, gc] {
            assert_eq!(got, Got::File("map.bin".into(), sha(&data)));
        }
        // David, not on the roster, got no manifest: the next thing he opens is this.
        alice.send_all("a marker for david").await.unwrap();
        within(10, "the marker", async {
            loop {
                match david.next_event().await.expect("connection alive") {
                    Event::Message(m) => return assert_eq!(m.text, "a marker for david"),
                    Event::File(e) => panic!("david saw a group file: {e:?}"),
                    _ => continue,
                }
            }
        })
        .await;
    });
}

//! Private groups on the server, over real sockets: rosters checked in the documented order
//! (each error code crossing its limit), group frames routed to the roster's members only and
//! refused from others, away members served on return, leaving, leaving the chat, and the
//! admin's listing and deletion.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::*;
use dyspatcher::crypto::{self, Identity};
use dyspatcher::protocol;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn kid(k: &Identity) -> String {
    k.public().key_id().to_string()
}

/// A roster of `members` owned by `owner`, signed by `signer`.
fn roster(
    group: &str,
    epoch: u32,
    owner: &Identity,
    members: &[&Identity],
    signer: &Identity,
) -> Value {
    let mut ids: Vec<String> = members.iter().map(|k| kid(k)).collect();
    ids.sort();
    ids.dedup();
    let sig = signer.sign(&protocol::roster_bytes(group, epoch, &kid(owner), &ids));
    json!({"group": group, "epoch": epoch, "owner": kid(owner), "members": ids,
           "signature": B64.encode(sig)})
}

fn roster_msg(r: Value) -> String {
    json!({"type": "group_roster", "roster": r}).to_string()
}

/// A group message as a client would send it (the server never opens it).
fn group_msg(group: &str, epoch: u32) -> (String, String) {
    let id = crypto::random_id();
    let m = json!({"type": "group", "group": group, "epoch": epoch, "id": id,
        "ts": protocol::now_ms(), "skid": crypto::random_id(), "n": 0,
        "iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAAA", "signature": "AAAA"});
    (id, m.to_string())
}

/// An `@all` used as a marker: a frame that arrives after it proves the one before it did not.
fn marker() -> (String, String) {
    let id = crypto::random_id();
    let m = json!({"type": "all", "id": id, "ts": protocol::now_ms(), "skid": crypto::random_id(),
        "n": 0, "iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAAA",
        "signature": "AAAA"});
    (id, m.to_string())
}

async fn joined(server: &TestServer, name: &str, key: &Arc<Identity>) -> Raw {
    let mut ws = raw(server).await;
    let w = raw_join(&mut ws, name, key, key).await;
    assert_eq!(w["type"], "welcome", "{w}");
    ws
}

/// The next frame whose `type` is one of `types`.
async fn next_of(ws: &mut Raw, types: &[&str]) -> Value {
    loop {
        let v = raw_next(ws).await;
        assert!(
            v.get("close").is_none(),
            "closed while waiting for {types:?}: {v}"
        );
        if types.contains(&v["type"].as_str().unwrap_or_default()) {
            return v;
        }
    }
}

/// Sends `text` and returns the answer: `ack` or `error`.
async fn ask(ws: &mut Raw, text: String) -> Value {
    raw_send(ws, text).await;
    next_of(ws, &["ack", "error"]).await
}

async fn refused(ws: &mut Raw, text: String, code: &str) -> String {
    let a = ask(ws, text).await;
    assert_eq!(a["type"], "error", "expected {code}: {a}");
    assert_eq!(a["code"], code, "{a}");
    a["message"].as_str().unwrap().to_string()
}

/// Sends a marker from `from` and checks that `to` gets it next among `types` plus `all`.
async fn nothing_before_marker(from: &mut Raw, to: &mut Raw, types: &[&str]) {
    let (id, m) = marker();
    assert_eq!(ask(from, m).await["type"], "ack");
    let mut wanted = types.to_vec();
    wanted.push("all");
    let v = next_of(to, &wanted).await;
    assert_eq!(v["type"], "all", "a frame that should not have come: {v}");
    assert_eq!(v["id"], id.as_str());
}

const G: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn group_frames_reach_members_only_and_non_members_are_refused() {
    let server = start(|_| {});
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(3);
        let mut alice = joined(&server, "alice", &k[0]).await;
        let mut bob = joined(&server, "bobby", &k[1]).await;
        let mut carol = joined(&server, "carol", &k[2]).await;
        let r = roster(G, 1, &k[0], &[&k[0], &k[1]], &k[0]);
        let a = ask(&mut alice, roster_msg(r.clone())).await;
        assert_eq!(a, json!({"type": "ack", "id": G}));
        let got = next_of(&mut bob, &["group_roster"]).await;
        assert_eq!(got["roster"], r);
        assert_eq!(got["by"], kid(&k[0]).as_str());
        assert!(got["seq"].as_u64().is_some(), "sequenced: {got}");

        let (id, m) = group_msg(G, 1);
        assert_eq!(ask(&mut alice, m).await, json!({"type": "ack", "id": id}));
        let got = next_of(&mut bob, &["group"]).await;
        assert_eq!(got["id"], id.as_str());
        assert_eq!(got["from"]["key_id"], kid(&k[0]).as_str());
        assert_eq!(
            (got["group"].as_str(), got["epoch"].as_u64()),
            (Some(G), Some(1))
        );
        nothing_before_marker(&mut alice, &mut carol, &["group", "group_roster"]).await;

        // Non-members and wrong epochs are refused with their own codes.
        let msg = refused(&mut carol, group_msg(G, 1).1, "not_in_group").await;
        assert!(msg.contains("not in this group"), "{msg}");
        let other = "ffffffffffffffffffffffffffffffff";
        refused(&mut carol, group_msg(other, 1).1, "unknown_group").await;
        refused(&mut alice, group_msg(G, 2).1, "stale_epoch").await;
        let leave = json!({"type": "group_leave", "group": G}).to_string();
        refused(&mut carol, leave, "not_in_group").await;
        let req = json!({"type": "key_request", "to": kid(&k[0]), "skid": crypto::random_id(),
                         "n": 0, "group": G});
        raw_send(&mut carol, req.to_string()).await;
        assert_eq!(
            next_of(&mut carol, &["error"]).await["code"],
            "not_in_group"
        );

        // A group sender key: only the roster's members get their entry.
        let sk = json!({"type": "sender_key", "group": G, "epoch": 1, "skid": crypto::random_id(),
            "n": 0, "commitment": "0".repeat(64), "signature": "AAAA",
            "keys": {kid(&k[1]): "AAAA", kid(&k[2]): "BBBB"}});
        raw_send(&mut alice, sk.to_string()).await;
        let got = next_of(&mut bob, &["sender_key"]).await;
        assert_eq!(
            (got["group"].as_str(), got["epoch"].as_u64()),
            (Some(G), Some(1))
        );
        assert_eq!(got["wrapped"], "AAAA");
        nothing_before_marker(&mut alice, &mut carol, &["sender_key"]).await;
        let mut stale = sk.clone();
        stale["epoch"] = json!(2);
        raw_send(&mut alice, stale.to_string()).await;
        assert_eq!(next_of(&mut alice, &["error"]).await["code"], "stale_epoch");

        // A file to the group: the manifest goes to the members only.
        let file_id = crypto::random_id();
        let f = json!({"type": "file", "id": file_id, "ts": protocol::now_ms(), "to": G,
            "epoch": 1, "skid": crypto::random_id(), "n": 1, "size": 10, "chunks": 1,
            "iv": "AAAAAAAAAAAAAAAA", "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAAA",
            "signature": "AAAA"});
        let a = ask(&mut alice, f.to_string()).await;
        assert_eq!(a, json!({"type": "ack", "id": file_id, "skipped": []}));
        let got = next_of(&mut bob, &["file"]).await;
        assert_eq!(
            (got["to"].as_str(), got["epoch"].as_u64()),
            (Some(G), Some(1))
        );
        nothing_before_marker(&mut alice, &mut carol, &["file"]).await;
        let mut wrong = f.clone();
        wrong["id"] = json!(crypto::random_id());
        wrong["epoch"] = json!(7);
        refused(&mut alice, wrong.to_string(), "stale_epoch").await;
        let mut outsider = f.clone();
        outsider["id"] = json!(crypto::random_id());
        refused(&mut carol, outsider.to_string(), "not_in_group").await;
    });
}

#[test]
fn rosters_are_checked_and_each_refusal_has_its_code() {
    let server = start(|c| {
        c.limits.groups.limits.max_group_size = 3;
        c.limits.groups.limits.max_groups = 2;
    });
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(5);
        let mut alice = joined(&server, "alice", &k[0]).await;
        let mut bob = joined(&server, "bobby", &k[1]).await;
        let _carol = joined(&server, "carol", &k[2]).await;
        let _dave = joined(&server, "david", &k[3]).await;
        let (a, b, c, d) = (&k[0], &k[1], &k[2], &k[3]);

        // Field checks.
        let mut unsorted = roster(G, 1, a, &[a, b], a);
        unsorted["members"].as_array_mut().unwrap().reverse();
        let m = refused(&mut alice, roster_msg(unsorted), "bad_field").await;
        assert!(m.contains("sorted"), "{m}");
        let no_owner = roster(G, 1, a, &[b], a);
        let m = refused(&mut alice, roster_msg(no_owner), "bad_field").await;
        assert!(m.contains("owner"), "{m}");
        let bad_sig = roster(G, 1, a, &[a, b], b);
        let m = refused(&mut alice, roster_msg(bad_sig), "bad_field").await;
        assert!(m.contains("signature does not verify"), "{m}");
        let missing = json!({"type": "group_roster", "roster": {"group": G}}).to_string();
        refused(&mut alice, missing, "bad_json").await;

        // Creation rules.
        refused(
            &mut alice,
            roster_msg(roster(G, 2, a, &[a, b], a)),
            "stale_epoch",
        )
        .await;
        refused(
            &mut alice,
            roster_msg(roster(G, 1, b, &[a, b], b)),
            "forbidden",
        )
        .await;
        let stranger = &k[4];
        let m = refused(
            &mut alice,
            roster_msg(roster(G, 1, a, &[a, stranger], a)),
            "unknown_recipient",
        )
        .await;
        assert!(m.contains(&kid(stranger)[..12]), "{m}");
        // Size: 3 fit, 4 do not.
        let m = refused(
            &mut alice,
            roster_msg(roster(G, 1, a, &[a, b, c, d], a)),
            "group_too_large",
        )
        .await;
        assert!(m.contains("at most 3"), "{m}");
        assert_eq!(
            ask(&mut alice, roster_msg(roster(G, 1, a, &[a, b, c], a))).await["type"],
            "ack"
        );

        // Changes: only the owner, only the next epoch.
        refused(
            &mut bob,
            roster_msg(roster(G, 2, a, &[a, b], b)),
            "forbidden",
        )
        .await;
        refused(
            &mut alice,
            roster_msg(roster(G, 3, a, &[a, b], a)),
            "stale_epoch",
        )
        .await;
        refused(
            &mut alice,
            roster_msg(roster(G, 1, a, &[a, b], a)),
            "stale_epoch",
        )
        .await;
        // A handover may not change the members at once.
        let m = refused(
            &mut alice,
            roster_msg(roster(G, 2, b, &[a, b], a)),
            "bad_field",
        )
        .await;
        assert!(m.contains("handover"), "{m}");

        // Groups per member: 2 fit, a third does not (for the creator, then naming a member).
        let g2 = "22222222222222222222222222222222";
        let g3 = "33333333333333333333333333333333";
        assert_eq!(
            ask(&mut alice, roster_msg(roster(g2, 1, a, &[a, b], a))).await["type"],
            "ack"
        );
        let m = refused(
            &mut alice,
            roster_msg(roster(g3, 1, a, &[a], a)),
            "too_many_groups",
        )
        .await;
        assert!(m.contains("you are already in 2 groups"), "{m}");
        let m = refused(
            &mut bob,
            roster_msg(roster(g3, 1, b, &[b], b)),
            "too_many_groups",
        )
        .await;
        assert!(m.contains("you are"), "{m}");
        let mut dave = joined(&server, "david2", &k[4]).await;
        let m = refused(
            &mut dave,
            roster_msg(roster(g3, 1, &k[4], &[&k[4], b], &k[4])),
            "too_many_groups",
        )
        .await;
        assert!(m.contains("bobby is already in 2 groups"), "{m}");
        // Re-signing a group one is already in does not count twice.
        assert_eq!(
            ask(&mut alice, roster_msg(roster(G, 2, a, &[a, b, c], a))).await["type"],
            "ack"
        );
    });
}

#[test]
fn the_groups_flag_decides_who_may_create() {
    let off = start(|c| c.limits.groups.policy = protocol::GroupPolicy::Off);
    let admin_only = start(|c| c.limits.groups.policy = protocol::GroupPolicy::Admin);
    smol::block_on(async {
        off.admin_ready().await;
        admin_only.admin_ready().await;
        let k = keys(2);
        let (a, b) = (&k[0], &k[1]);
        let mut alice = joined(&off, "alice", a).await;
        let w = {
            let mut ws = raw(&off).await;
            raw_join(&mut ws, "bobby", b, b).await
        };
        assert_eq!(w["options"]["groups"], "off");
        assert_eq!(w["limits"]["max_group_size"], 64);
        assert_eq!(w["limits"]["max_groups"], 16);
        let m = refused(
            &mut alice,
            roster_msg(roster(G, 1, a, &[a], a)),
            "forbidden",
        )
        .await;
        assert!(m.contains("disabled"), "{m}");
        refused(&mut alice, group_msg(G, 1).1, "forbidden").await;

        let mut alice = joined(&admin_only, "alice", a).await;
        let m = refused(
            &mut alice,
            roster_msg(roster(G, 1, a, &[a], a)),
            "forbidden",
        )
        .await;
        assert!(m.contains("only the admin"), "{m}");
        // The admin's web seat may create, and a user may be in it.
        let admin = admin_key();
        let mut seat = joined(&admin_only, "ADMIN", &admin).await;
        let r = roster(G, 1, &admin, &[&admin, a], &admin);
        assert_eq!(ask(&mut seat, roster_msg(r)).await["type"], "ack");
        assert_eq!(
            next_of(&mut alice, &["group_roster"]).await["by"],
            kid(&admin).as_str()
        );
    });
}

#[test]
fn changes_reach_the_new_roster_and_those_removed() {
    let server = start(|_| {});
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(3);
        let (a, b, c) = (&k[0], &k[1], &k[2]);
        let mut alice = joined(&server, "alice", a).await;
        let mut bob = joined(&server, "bobby", b).await;
        let mut carol = joined(&server, "carol", c).await;
        assert_eq!(
            ask(&mut alice, roster_msg(roster(G, 1, a, &[a, b], a))).await["type"],
            "ack"
        );
        // Add carol.
        let r2 = roster(G, 2, a, &[a, b, c], a);
        assert_eq!(ask(&mut alice, roster_msg(r2.clone())).await["type"], "ack");
        assert_eq!(next_of(&mut carol, &["group_roster"]).await["roster"], r2);
        // Remove bob: bob is told, and is refused afterwards.
        let r3 = roster(G, 3, a, &[a, c], a);
        assert_eq!(ask(&mut alice, roster_msg(r3.clone())).await["type"], "ack");
        let mut last = next_of(&mut bob, &["group_roster"]).await;
        while last["roster"]["epoch"] != 3 {
            last = next_of(&mut bob, &["group_roster"]).await;
        }
        assert_eq!(last["roster"], r3);
        refused(&mut bob, group_msg(G, 3).1, "not_in_group").await;
        // Hand over to carol (signed by alice); alice may no longer change it, carol may.
        let r4 = roster(G, 4, c, &[a, c], a);
        assert_eq!(ask(&mut alice, roster_msg(r4)).await["type"], "ack");
        refused(
            &mut alice,
            roster_msg(roster(G, 5, c, &[a, c], a)),
            "forbidden",
        )
        .await;
        let r5 = roster(G, 5, c, &[c], c);
        assert_eq!(ask(&mut carol, roster_msg(r5.clone())).await["type"], "ack");
        let mut seen = next_of(&mut alice, &["group_roster"]).await;
        while seen["roster"]["epoch"] != 5 {
            seen = next_of(&mut alice, &["group_roster"]).await;
        }
        assert_eq!(seen["roster"], r5);
    });
}

#[test]
fn away_members_get_group_traffic_on_return() {
    let server = start(|_| {});
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (a, b) = (&k[0], &k[1]);
        let mut alice = joined(&server, "alice", a).await;
        let mut bob = joined(&server, "bobby", b).await;
        let r = roster(G, 1, a, &[a, b], a);
        assert_eq!(ask(&mut alice, roster_msg(r.clone())).await["type"], "ack");
        next_of(&mut bob, &["group_roster"]).await;
        drop(bob);
        let away = next_of(&mut alice, &["presence"]).await;
        assert_eq!(away["state"], "away");
        let (id, m) = group_msg(G, 1);
        assert_eq!(ask(&mut alice, m).await["type"], "ack");
        // Back (without resume: every kept frame comes again).
        let mut bob = raw(&server).await;
        let w = raw_join(&mut bob, "bobby", b, b).await;
        assert_eq!(w["groups"], json!([r]), "{w}");
        let got = next_of(&mut bob, &["group"]).await;
        assert_eq!(got["id"], id.as_str());
    });
}

#[test]
fn leaving_a_group_and_leaving_the_chat() {
    let server = start(|_| {});
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(3);
        let (a, b, c) = (&k[0], &k[1], &k[2]);
        let mut alice = joined(&server, "alice", a).await;
        let mut bob = joined(&server, "bobby", b).await;
        let mut carol = joined(&server, "carol", c).await;
        assert_eq!(
            ask(&mut alice, roster_msg(roster(G, 1, a, &[a, b, c], a))).await["type"],
            "ack"
        );
        let leave = json!({"type": "group_leave", "group": G}).to_string();
        let m = refused(&mut alice, leave.clone(), "forbidden").await;
        assert!(m.contains("hand the group over"), "{m}");
        assert_eq!(
            ask(&mut bob, leave.clone()).await,
            json!({"type": "ack", "id": G})
        );
        let left = next_of(&mut alice, &["group_left"]).await;
        assert_eq!(
            (left["key_id"].as_str(), left["reason"].as_str()),
            (Some(kid(b).as_str()), Some("left"))
        );
        refused(&mut bob, group_msg(G, 1).1, "not_in_group").await;
        // The group still routes to the rest, not to bob.
        let (id, m) = group_msg(G, 1);
        assert_eq!(ask(&mut alice, m).await["type"], "ack");
        assert_eq!(next_of(&mut carol, &["group"]).await["id"], id.as_str());
        nothing_before_marker(&mut alice, &mut bob, &["group"]).await;
        // Carol leaves the chat: alice is told with reason removed_from_chat.
        raw_send(&mut carol, json!({"type": "leave"}).to_string()).await;
        let left = next_of(&mut alice, &["group_left"]).await;
        assert_eq!(left["reason"], "removed_from_chat");
        assert_eq!(left["key_id"], kid(c).as_str());
        // The owner leaves the chat: the group is deleted for the others.
        let g2 = "22222222222222222222222222222222";
        assert_eq!(
            ask(&mut alice, roster_msg(roster(g2, 1, a, &[a, b], a))).await["type"],
            "ack"
        );
        raw_send(&mut alice, json!({"type": "leave"}).to_string()).await;
        let gone = next_of(&mut bob, &["group_deleted"]).await;
        assert_eq!(gone["by"], "owner");
        let g = gone["group"].as_str().unwrap();
        assert!(g == G || g == g2);
        // The owner alone may leave: the group is deleted.
        let g3 = "33333333333333333333333333333333";
        assert_eq!(
            ask(&mut bob, roster_msg(roster(g3, 1, b, &[b], b))).await["type"],
            "ack"
        );
        let leave3 = json!({"type": "group_leave", "group": g3}).to_string();
        assert_eq!(ask(&mut bob, leave3).await["type"], "ack");
        refused(&mut bob, group_msg(g3, 1).1, "unknown_group").await;
    });
}

#[test]
fn the_admin_lists_groups_and_deletes_one() {
    let server = start(|_| {});
    smol::block_on(async {
        server.admin_ready().await;
        let k = keys(2);
        let (a, b) = (&k[0], &k[1]);
        let mut alice = joined(&server, "alice", a).await;
        let mut bob = joined(&server, "bobby", b).await;
        assert_eq!(
            ask(&mut alice, roster_msg(roster(G, 1, a, &[a, b], a))).await["type"],
            "ack"
        );
        server.prompt("/groups");
        let line = server.output_containing(&G[..12]).await;
        assert!(
            line.contains("2 members") && line.contains("alice, bobby"),
            "{line}"
        );
        assert!(line.contains("owner alice"), "{line}");
        server.prompt("/group delete 0123");
        server.output_containing("deleted (2 members told)").await;
        for ws in [&mut alice, &mut bob] {
            let gone = next_of(ws, &["group_deleted"]).await;
            assert_eq!(
                gone,
                json!({"seq": gone["seq"], "type": "group_deleted", "group": G, "by": "admin"})
            );
        }
        refused(&mut alice, group_msg(G, 1).1, "unknown_group").await;
        server.prompt("/group delete 0123");
        server
            .output_containing("no group whose id starts with 0123")
            .await;
    });
}

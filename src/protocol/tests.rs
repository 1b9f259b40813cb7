//! Golden JSON of the wire types and the canonical bytes.

use super::*;

#[test]
fn error_codes_as_str_are_their_wire_names() {
    for code in [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadField,
        ErrorCode::BinaryUnsupported,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadName,
        ErrorCode::NameTaken,
        ErrorCode::BadKey,
        ErrorCode::BadProof,
        ErrorCode::Banned,
        ErrorCode::NotAllowed,
        ErrorCode::JoinTimeout,
        ErrorCode::TooManyJoins,
        ErrorCode::UnknownRecipient,
        ErrorCode::Forbidden,
        ErrorCode::BadKeys,
        ErrorCode::DuplicateId,
        ErrorCode::Stale,
        ErrorCode::RateLimited,
        ErrorCode::UnknownGroup,
        ErrorCode::NotInGroup,
        ErrorCode::StaleEpoch,
        ErrorCode::GroupTooLarge,
        ErrorCode::TooManyGroups,
    ] {
        assert_eq!(
            serde_json::to_value(code).unwrap(),
            serde_json::Value::from(code.as_str())
        );
    }
}

#[test]
fn golden_client_direct() {
    let json = r#"{"type":"direct","id":"00112233445566778899aabbccddeeff","ts":1,"to":"k","iv":"aXY=","ciphertext":"Y3Q=","keys":{"k":"d3I="},"signature":"c2ln"}"#;
    let msg: ClientMsg = serde_json::from_str(json).unwrap();
    assert!(matches!(&msg, ClientMsg::Direct(d) if d.keys["k"] == "d3I="));
    assert_eq!(serde_json::to_string(&msg).unwrap(), json);
}

#[test]
fn golden_server_messages() {
    let left = ServerMsg::Left {
        key_id: "k".into(),
        name: "alice".into(),
        reason: LeftReason::Kicked,
    };
    assert_eq!(
        serde_json::to_string(&left).unwrap(),
        r#"{"type":"left","key_id":"k","name":"alice","reason":"kicked"}"#
    );
    let err = ServerMsg::Error {
        code: ErrorCode::RateLimited,
        message: "slow down".into(),
        id: None,
        until: None,
    };
    assert_eq!(
        serde_json::to_string(&err).unwrap(),
        r#"{"type":"error","code":"rate_limited","message":"slow down"}"#
    );
    let all = ServerMsg::All(AllIn {
        id: "i".into(),
        ts: 2,
        from: Sender {
            name: "ADMIN".into(),
            key_id: "k".into(),
        },
        skid: "s".into(),
        n: 0,
        iv: "v".into(),
        ciphertext: "c".into(),
        signature: "g".into(),
        via: Some(Via::Prompt),
    });
    assert_eq!(
        serde_json::to_string(&all).unwrap(),
        r#"{"type":"all","id":"i","ts":2,"from":{"name":"ADMIN","key_id":"k"},"skid":"s","n":0,"iv":"v","ciphertext":"c","signature":"g","via":"prompt"}"#
    );
}

#[test]
fn golden_v2_messages() {
    let join: ClientMsg = serde_json::from_str(
        r#"{"type":"join","name":"alice","public_key":"a","signature":"s","resume":{"since":41}}"#,
    )
    .unwrap();
    assert!(matches!(
        join,
        ClientMsg::Join {
            resume: Some(Resume {
                since: 41,
                since_chunks: 0
            }),
            ..
        }
    ));
    let ack: ClientMsg = serde_json::from_str(r#"{"type":"ack","seq":42}"#).unwrap();
    assert_eq!(
        ack,
        ClientMsg::Ack {
            seq: Some(42),
            cseq: None
        }
    );
    let leave: ClientMsg = serde_json::from_str(r#"{"type":"leave"}"#).unwrap();
    assert_eq!(leave, ClientMsg::Leave {});
    let presence = ServerMsg::Presence {
        key_id: "k".into(),
        name: "alice".into(),
        state: Presence::Away,
    };
    assert_eq!(
        serde_json::to_string(&presence).unwrap(),
        r#"{"type":"presence","key_id":"k","name":"alice","state":"away"}"#
    );
    let delivery = ServerMsg::Delivery {
        id: "i".into(),
        to: "k".into(),
        state: DeliveryState::Held,
    };
    assert_eq!(
        serde_json::to_string(&delivery).unwrap(),
        r#"{"type":"delivery","id":"i","to":"k","state":"held"}"#
    );
    let gap = ServerMsg::Gap {
        dropped: 3,
        kinds: [("all".to_string(), 2), ("direct".to_string(), 1)].into(),
        first_seq: 4,
        last_seq: 6,
    };
    assert_eq!(
        serde_json::to_string(&gap).unwrap(),
        r#"{"type":"gap","dropped":3,"kinds":{"all":2,"direct":1},"first_seq":4,"last_seq":6}"#
    );
    let banned = ServerMsg::Error {
        code: ErrorCode::Banned,
        message: "m".into(),
        id: None,
        until: Some(5),
    };
    assert_eq!(
        serde_json::to_string(&banned).unwrap(),
        r#"{"type":"error","code":"banned","message":"m","until":5}"#
    );
}

#[test]
fn notice_codes_and_left_reasons_are_snake_case_and_unknown_codes_parse() {
    let kicked = ServerMsg::Notice {
        code: NoticeCode::Kicked,
        text: "t".into(),
        until: Some(9),
    };
    assert_eq!(
        serde_json::to_string(&kicked).unwrap(),
        r#"{"type":"notice","code":"kicked","text":"t","until":9}"#
    );
    for code in [
        NoticeCode::ShuttingDown,
        NoticeCode::PromptBehind,
        NoticeCode::Moderated,
    ] {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
    }
    let newer: ServerMsg =
        serde_json::from_str(r#"{"type":"notice","code":"tea_time","text":"t"}"#).unwrap();
    assert!(matches!(
        newer,
        ServerMsg::Notice {
            code: NoticeCode::Other,
            ..
        }
    ));
    for reason in [LeftReason::Left, LeftReason::Expired, LeftReason::Removed] {
        let json = serde_json::to_string(&reason).unwrap();
        assert_eq!(json, format!("\"{}\"", reason.as_str()));
    }
}

#[test]
fn welcome_and_joined_as_written_are_what_clients_parse() {
    let alice = Member {
        name: "alice".into(),
        key_id: "k1".into(),
        admin: false,
    };
    let admin = Member {
        name: "ADMIN".into(),
        key_id: "k0".into(),
        admin: true,
    };
    let options = Options {
        admin_name: "ADMIN".into(),
        disable_all: false,
        only_admin: false,
        remember: true,
        groups: Default::default(),
    };
    let limits = Limits::new(20, 40, 1 << 20, 600);
    let (a, b) = (encoded_member(&alice), encoded_member(&admin));
    let written = serde_json::to_string(&WelcomeOut {
        you: &a,
        members: vec![&b, &a],
        away: vec!["k1"],
        resumed: true,
        seq: 7,
        cseq: 3,
        options: &options,
        limits: &limits,
        time: 5,
        groups: Vec::new(),
    })
    .unwrap();
    let typed = ServerMsg::Welcome {
        you: alice.clone(),
        members: vec![admin.clone(), alice.clone()],
        away: vec!["k1".into()],
        resumed: true,
        seq: 7,
        cseq: 3,
        options,
        limits,
        time: 5,
        groups: Vec::new(),
    };
    assert_eq!(written, serde_json::to_string(&typed).unwrap());
    assert_eq!(serde_json::from_str::<ServerMsg>(&written).unwrap(), typed);
    assert!(written.starts_with(r#"{"type":"welcome","you":{"name":"alice""#));
    let joined = serde_json::to_string(&JoinedOut { member: &a }).unwrap();
    assert_eq!(
        joined,
        serde_json::to_string(&ServerMsg::Joined {
            member: Some(alice.clone()),
            members: vec![],
        })
        .unwrap()
    );
    let many = serde_json::to_string(&JoinedManyOut {
        members: vec![&b, &a],
    })
    .unwrap();
    let typed = ServerMsg::Joined {
        member: None,
        members: vec![admin, alice],
    };
    assert_eq!(many, serde_json::to_string(&typed).unwrap());
    assert_eq!(serde_json::from_str::<ServerMsg>(&many).unwrap(), typed);
}

#[test]
fn names() {
    assert!(valid_user_name("alice"));
    assert!(valid_user_name("a1b2"));
    assert!(!valid_user_name("abc"));
    assert!(!valid_user_name("Alice"));
    assert!(!valid_user_name("alice_bob"));
    assert!(!valid_user_name("abcdefghijklmnop"));
    assert!(valid_admin_name("ADMIN"));
    assert!(!valid_admin_name("admin"));
    assert!(!valid_admin_name("ADM"));
}

#[test]
fn encodings() {
    assert!(is_base64("aGVsbG8="));
    assert!(is_base64(""));
    assert!(!is_base64("aGVsbG8"));
    assert!(!is_base64("aGVs*G8="));
    assert!(!is_base64("a==="));
    assert!(is_hex("00ff", 4));
    assert!(!is_hex("00FF", 4));
    assert!(!is_hex("00f", 4));
}

#[test]
fn golden_file_messages() {
    let manifest: ClientMsg = serde_json::from_str(
        r#"{"type":"file","id":"i","ts":1,"to":"all","size":70000,"chunks":2,"iv":"v","ciphertext":"c","skid":"s","n":3,"signature":"g"}"#,
    )
    .unwrap();
    let ClientMsg::File(f) = manifest else {
        panic!("not a file")
    };
    assert_eq!((f.size, f.chunks, f.n, f.keys), (70000, 2, Some(3), None));
    let chunk: ClientMsg =
        serde_json::from_str(r#"{"type":"chunk","file":"f","i":1,"iv":"v","ciphertext":"c"}"#)
            .unwrap();
    assert!(matches!(chunk, ClientMsg::Chunk(ChunkOut { i: 1, .. })));
    let cancel: ClientMsg = serde_json::from_str(r#"{"type":"file_cancel","file":"f"}"#).unwrap();
    assert_eq!(cancel, ClientMsg::FileCancel { file: "f".into() });
    let ack: ClientMsg = serde_json::from_str(r#"{"type":"ack","cseq":7}"#).unwrap();
    assert_eq!(
        ack,
        ClientMsg::Ack {
            seq: None,
            cseq: Some(7)
        }
    );
    let resume = Resume {
        since: 4,
        since_chunks: 0,
    };
    assert_eq!(serde_json::to_string(&resume).unwrap(), r#"{"since":4}"#);
    let resume: Resume = serde_json::from_str(r#"{"since":4,"since_chunks":9}"#).unwrap();
    assert_eq!(resume.since_chunks, 9);
    let written = |m: &ServerMsg| serde_json::to_string(m).unwrap();
    assert_eq!(
        written(&ServerMsg::ChunkAck {
            file: "f".into(),
            i: 2
        }),
        r#"{"type":"chunk_ack","file":"f","i":2}"#
    );
    assert_eq!(
        written(&ServerMsg::FileCancel {
            file: "f".into(),
            by: "k".into(),
            reason: CancelReason::SenderGone
        }),
        r#"{"type":"file_cancel","file":"f","by":"k","reason":"sender_gone"}"#
    );
    assert_eq!(
        written(&ServerMsg::Ack {
            id: "i".into(),
            skipped: Some(vec!["k".into()])
        }),
        r#"{"type":"ack","id":"i","skipped":["k"]}"#
    );
    assert_eq!(
        written(&ServerMsg::Ack {
            id: "i".into(),
            skipped: None
        }),
        r#"{"type":"ack","id":"i"}"#
    );
    let limits = serde_json::to_string(&Limits::new(20, 40, 1 << 20, 600)).unwrap();
    assert!(
        limits.contains(
            r#""max_file":16777216,"chunk_size":65536,"file_window":4,"files_in_flight":4,"file_bytes_per_sec":4194304,"file_idle_secs":60,"#
        ),
        "{limits}"
    );
    // A server without files: the limits of this build.
    let old: Limits = serde_json::from_str(
        r#"{"max_message":1,"max_text":1,"rate_per_sec":1,"burst":1,"mailbox_bytes":1,"away_grace_secs":1,"min_key_bits":2048,"max_key_bits":4096,"max_chains_per_sender":4,"max_skipped":1,"max_jump":1}"#,
    )
    .unwrap();
    assert_eq!(old.files, FileLimits::default());
    assert_eq!(old.groups, GroupLimits::default());
    for (code, wire) in [
        (ErrorCode::FileTooLarge, "file_too_large"),
        (ErrorCode::UnknownFile, "unknown_file"),
        (ErrorCode::BadChunk, "bad_chunk"),
        (ErrorCode::FileWindow, "file_window"),
        (ErrorCode::TooManyFiles, "too_many_files"),
        (ErrorCode::MailboxFull, "mailbox_full"),
    ] {
        assert_eq!(code.as_str(), wire);
        assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{wire}\""));
    }
}

fn a_roster() -> Roster {
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    Roster {
        group: "0".repeat(32),
        epoch: 1,
        owner: a.clone(),
        members: vec![a, b],
        signature: "AAAA".into(),
    }
}

#[test]
fn roster_fields_are_checked_with_a_specific_message() {
    assert_eq!(a_roster().check_fields(), Ok(()));
    type Spoil = fn(&mut Roster);
    let cases: [(Spoil, &str); 8] = [
        (|r| r.group = "0".repeat(31), "roster.group"),
        (|r| r.epoch = 0, "roster.epoch"),
        (|r| r.owner = "A".repeat(64), "roster.owner"),
        (|r| r.members.clear(), "at least the owner"),
        (|r| r.members.reverse(), "sorted"),
        (|r| r.members.push("b".repeat(64)), "without duplicates"),
        (|r| r.members.remove(0).clear(), "include the owner"),
        (|r| r.signature = "!".into(), "roster.signature"),
    ];
    for (spoil, expected) in cases {
        let mut r = a_roster();
        spoil(&mut r);
        let err = r.check_fields().unwrap_err();
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let mut long = a_roster();
    long.signature = "A".repeat(MAX_RSA_B64 + 4);
    assert!(long.check_fields().is_err());
    assert!(a_roster().lists(&"b".repeat(64)));
    assert!(!a_roster().lists(&"c".repeat(64)));
}

#[test]
fn group_frames_round_trip_with_their_optional_fields() {
    let r = a_roster();
    let text = serde_json::to_string(&ClientMsg::GroupRoster { roster: r.clone() }).unwrap();
    assert!(
        text.starts_with(r#"{"type":"group_roster","roster":{"group":"#),
        "{text}"
    );
    assert_eq!(
        serde_json::from_str::<ClientMsg>(&text).unwrap(),
        ClientMsg::GroupRoster { roster: r }
    );
    // A sender key without a group is an `@all` one; with one it carries group and epoch.
    let plain =
        r#"{"type":"sender_key","skid":"s","n":0,"commitment":"c","signature":"x","keys":{}}"#;
    let ClientMsg::SenderKey(k) = serde_json::from_str(plain).unwrap() else {
        panic!()
    };
    assert_eq!(k.group, None);
    assert!(!serde_json::to_string(&k).unwrap().contains("group"));
    let grouped = r#"{"type":"sender_key","group":"g","epoch":3,"skid":"s","n":0,"commitment":"c","signature":"x","keys":{}}"#;
    let ClientMsg::SenderKey(k) = serde_json::from_str(grouped).unwrap() else {
        panic!()
    };
    assert_eq!(
        k.group,
        Some(GroupAt {
            group: "g".into(),
            epoch: 3
        })
    );
    let left =
        r#"{"seq":4,"type":"group_left","group":"g","key_id":"k","reason":"removed_from_chat"}"#;
    assert!(matches!(
        serde_json::from_str::<ServerMsg>(left).unwrap(),
        ServerMsg::GroupLeft {
            reason: GroupLeftReason::RemovedFromChat,
            ..
        }
    ));
    let plain: GroupPlain = serde_json::from_str(r#"{"info":{"name":"medics"}}"#).unwrap();
    assert_eq!(
        plain,
        GroupPlain::Info {
            info: GroupInfo {
                name: "medics".into(),
                topic: String::new()
            }
        }
    );
    assert_eq!(GroupPolicy::parse("admin"), Some(GroupPolicy::Admin));
    assert_eq!(GroupPolicy::parse("everyone"), None);
}

//! The load generator works: small runs against an in-process server, the bare relay and a child
//! server report every delivery, none lost or duplicated; bad options get clear errors. Nothing
//! timed is asserted here — speed and memory belong in BENCHMARKS.md.
mod common;

#[path = "../examples/bare_relay.rs"]
#[allow(dead_code)]
mod bare_relay;

use std::path::PathBuf;

use argh::FromArgs;
use dyspatcher::bench::LoadReport;
use dyspatcher::bench::{self, BenchArgs, BenchError, Report};

fn keys_dir() -> PathBuf {
    // The same cache as the other tests; made once, before any run reads it.
    common::keys(1);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-keys")
}

fn args(list: &[&str]) -> BenchArgs {
    let dir = keys_dir().display().to_string();
    let mut all: Vec<&str> = list.to_vec();
    all.extend(["--keys-dir", &dir]);
    // The tests' key cache holds 2048-bit keys (4096 is the default, and slow to make).
    if !list.contains(&"--bits") {
        all.extend(["--bits", "2048"]);
    }
    BenchArgs::from_args(&["bench"], &all).expect("valid options")
}

fn load(list: &[&str]) -> LoadReport {
    match bench::run_bench(&args(list)).unwrap_or_else(|e| panic!("bench failed: {e}")) {
        Report::Load(r) => *r,
        _ => panic!("a load report was expected"),
    }
}

fn fast_server() -> common::TestServer {
    common::start(|c| {
        c.limits.rate_per_sec = 10_000;
        c.limits.burst = 20_000;
    })
}

fn assert_complete(r: &LoadReport, sent: u64, per_message: u64) {
    let text = r.to_string();
    assert_eq!(r.sent, sent, "{text}");
    assert_eq!(r.expected, sent * per_message, "{text}");
    assert_eq!(r.delivered, r.expected, "{text}");
    assert_eq!((r.lost(), r.duplicated, r.misrouted), (0, 0, 0), "{text}");
    assert_eq!((r.malformed, r.unknown, r.closed), (0, 0, 0), "{text}");
    assert!(r.errors.is_empty(), "{text}");
    assert!(text.contains("lost 0, duplicated 0"), "{text}");
}

#[test]
fn sealed_all_against_an_in_process_server() {
    let server = fast_server();
    let url = server.url();
    let r = load(&[
        "--url",
        &url,
        "--members",
        "6",
        "--senders",
        "2",
        "--rate",
        "40",
        "--seconds",
        "1",
    ]);
    assert_complete(&r, 40, 5);
    assert_eq!(r.acks, 40);
    // The auditor opened and verified every message it received.
    assert_eq!((r.opened, r.rejected), (40, 0));
    assert!(r.latency_ms(0.99).is_some());
}

#[test]
fn sealed_direct_messages_reach_only_their_recipient() {
    let server = fast_server();
    let url = server.url();
    let r = load(&[
        "--url",
        &url,
        "--members",
        "5",
        "--senders",
        "3",
        "--rate",
        "30",
        "--seconds",
        "1",
        "--mode",
        "direct",
    ]);
    assert_complete(&r, 30, 1);
    assert_eq!(r.acks, 30);
}

#[test]
fn raw_frames_against_an_in_process_server() {
    let server = fast_server();
    let url = server.url();
    let r = load(&[
        "--url",
        &url,
        "--members",
        "5",
        "--senders",
        "2",
        "--rate",
        "50",
        "--seconds",
        "1",
        "--raw",
    ]);
    assert_complete(&r, 50, 4);
    assert_eq!(r.acks, 50);
}

#[test]
fn members_cut_off_while_messages_flow_resume_and_miss_nothing() {
    let server = fast_server();
    let url = server.url();
    let r = load(&[
        "--url",
        &url,
        "--members",
        "6",
        "--senders",
        "2",
        "--rate",
        "100",
        "--seconds",
        "1",
        "--churn",
        "10",
    ]);
    assert_complete(&r, 100, 5);
    let text = r.to_string();
    // Three members only receive: each was cut at least twice, and came back each time.
    assert!(r.cuts.unwrap() >= 5, "{text}");
    assert_eq!(r.backs.len() as u64, r.cuts.unwrap(), "{text}");
    assert!(r.backs.iter().all(|b| b.resumed), "{text}");
    assert!(text.contains("churn        "), "{text}");
    assert!(text.contains(" cuts="), "{text}");
}

#[test]
fn away_members_come_back_to_full_mailboxes_and_gaps() {
    let server = common::start(|c| {
        c.limits.rate_per_sec = 10_000;
        c.limits.burst = 20_000;
        c.limits.mailbox_bytes = 16 * 1024;
    });
    let url = server.url();
    let r = load(&[
        "--url",
        &url,
        "--members",
        "4",
        "--senders",
        "1",
        "--audit",
        "0",
        "--rate",
        "100",
        "--seconds",
        "1",
        "--away",
        "--raw",
        "--bytes",
        "200",
    ]);
    let text = r.to_string();
    // Three members away; 100 frames of ~500 bytes each do not fit in 16 KiB: the oldest are
    // dropped and every member is told exactly how many.
    assert_eq!((r.away_members, r.backs.len()), (3, 3), "{text}");
    assert_eq!(r.gaps, 3, "{text}");
    assert_eq!(r.lost(), r.gap_messages, "{text}");
    assert!(
        r.gap_dropped > 0 && r.duplicated == 0 && r.closed == 0,
        "{text}"
    );
    assert!(r.replayed_frames() > 0, "{text}");
}

#[test]
fn raw_frames_against_the_bare_relay() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    std::thread::spawn(move || bare_relay::relay(listener, 2));
    let r = load(&[
        "--url",
        &url,
        "--members",
        "4",
        "--senders",
        "2",
        "--rate",
        "50",
        "--seconds",
        "1",
        "--bare",
    ]);
    assert_complete(&r, 50, 3);
}

#[test]
fn group_fan_out_from_a_child_server_reaches_every_member() {
    let exe = env!("CARGO_BIN_EXE_dyspatcher");
    let r = load(&[
        "--server-command",
        exe,
        "--members",
        "5",
        "--senders",
        "2",
        "--rate",
        "40",
        "--seconds",
        "1",
        "--raw",
        "--mode",
        "group",
    ]);
    assert_complete(&r, 40, 4);
    assert!(r.to_string().contains("group msg/s"));
}

#[test]
fn a_child_server_over_tls_with_its_prompt_and_transcript() {
    let exe = env!("CARGO_BIN_EXE_dyspatcher");
    let r = load(&[
        "--server-command",
        exe,
        "--members",
        "3",
        "--senders",
        "1",
        "--rate",
        "20",
        "--seconds",
        "1",
        "--tls",
    ]);
    assert!(r.url.starts_with("wss://127.0.0.1:"), "{}", r.url);
    assert_complete(&r, 20, 2);
    let (idle, joined) = (r.idle.unwrap(), r.joined.unwrap());
    assert!(idle.rss_kib > 0 && joined.rss_kib > 0);
    assert!(r.server_cpu.is_some());
    // The admin's prompt showed every @all message, and the transcript holds them.
    assert_eq!(r.prompt_all_lines, Some(20));
    assert_eq!(r.transcript_all_lines, Some(20));
    assert_eq!(r.server_stopped, Some(true));
}

#[test]
fn startup_times_are_reported() {
    let exe = env!("CARGO_BIN_EXE_dyspatcher");
    let report = bench::run_bench(&args(&[
        "--startup",
        "--repeat",
        "1",
        "--server-command",
        exe,
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    let text = report.to_string();
    assert!(text.contains("with a key file"), "{text}");
    assert!(text.contains("while the admin key is generated"), "{text}");
    assert!(text.contains("key_page_ms="), "{text}");
}

#[test]
fn bad_options_name_the_option() {
    for (list, says) in [
        (vec!["--members", "0"], "--members: must be 1 to 5000"),
        (vec!["--members", "5001"], "--members"),
        (vec!["--senders", "9", "--members", "3"], "--senders"),
        (vec!["--rate", "0"], "--rate"),
        (vec!["--seconds", "1000"], "--seconds: at most 120"),
        (vec!["--bytes", "0"], "--bytes"),
        (vec!["--bits", "1024"], "--bits"),
        (vec!["--server-pid", "1"], "--server-pid: goes with --url"),
        (vec!["--url", "ws://192.0.2.1:8080/ws"], "--remote"),
        (vec!["--url", "http://127.0.0.1/"], "--url"),
        (vec!["--bare", "--mode", "direct"], "--mode direct"),
        (vec!["--mode", "group"], "--mode group: with --raw"),
        (
            vec!["--mode", "group", "--raw", "--members", "257"],
            "--mode group: at most 256",
        ),
        (
            vec!["--members", "4", "--senders", "3", "--audit", "2"],
            "--audit",
        ),
        (vec!["--fingerprint", "AB:CD"], "--fingerprint"),
        (vec!["--churn", "1000"], "--churn: at most 100"),
        (vec!["--churn", "1", "--away"], "--churn: not together"),
        (vec!["--churn", "1", "--bare"], "--churn, --away"),
        (
            vec!["--away", "--members", "2", "--senders", "1", "--audit", "1"],
            "no member only receives",
        ),
        (vec!["--soak", "0"], "--soak: minutes above 0"),
        (vec!["--soak", "NaN"], "--soak: minutes above 0"),
        (
            vec!["--soak", "1", "--churn", "1"],
            "--soak: starts its own server",
        ),
        (
            vec!["--soak", "1", "--url", "ws://127.0.0.1:1/ws"],
            "--soak: starts its own server",
        ),
    ] {
        match bench::run_bench(&args(&list)) {
            Err(BenchError::Option(m)) => assert!(m.contains(says), "{list:?}: {m}"),
            Err(e) => panic!("{list:?}: not an option error: {e}"),
            Ok(_) => panic!("{list:?} was accepted"),
        }
    }
    assert!(BenchArgs::from_args(&["bench"], &["--mode", "some"]).is_err());
}

#[test]
fn the_executable_exits_2_on_bad_options() {
    // `dyspatcher-bench`, and `dyspatcher bench`, which hands over to it.
    for (exe, args, says) in [
        (
            env!("CARGO_BIN_EXE_dyspatcher-bench"),
            &["--rate", "0"][..],
            "--rate",
        ),
        (
            env!("CARGO_BIN_EXE_dyspatcher"),
            &["bench", "--rate", "0"][..],
            "--rate",
        ),
        (
            env!("CARGO_BIN_EXE_dyspatcher-bench"),
            &["--no-such-option"][..],
            "--no-such-option",
        ),
    ] {
        let out = std::process::Command::new(exe).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn bench_without_its_executable_beside_says_how_to_build_it() {
    let dir = std::env::temp_dir().join(format!("dyspatcher-alone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alone = dir.join("dyspatcher");
    std::fs::copy(env!("CARGO_BIN_EXE_dyspatcher"), &alone).unwrap();
    let out = std::process::Command::new(&alone)
        .args(["bench", "--members", "2"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("dyspatcher-bench") && err.contains("cargo build --release"),
        "{err}"
    );
}

#[test]
fn a_short_soak_loses_nothing_and_every_part_of_the_mix_happens() {
    let exe = env!("CARGO_BIN_EXE_dyspatcher");
    let report = bench::run_bench(&args(&["--soak", "0.3", "--server-command", exe]))
        .unwrap_or_else(|e| panic!("soak failed to run: {e}"));
    let Report::Soak(r) = report else {
        panic!("a soak report was expected")
    };
    let text = r.to_string();
    assert!(r.passed(), "{text}");
    assert!(r.core_sent > 0 && r.core_direct > 0, "{text}");
    assert!(r.expected > r.core_sent, "{text}");
    assert_eq!(
        (r.received, r.lost, r.duplicated),
        (r.expected, 0, 0),
        "{text}"
    );
    assert!(text.contains("lost 0, duplicated 0"), "{text}");
    assert!(text.contains("verdict       PASS"), "{text}");
    // Members that stay were cut and resumed.
    assert!(r.cuts > 0 && r.resumes.1 > 0, "{text}");
    // Every part of the mix happened and behaved as the protocol says.
    assert!(r.visitors.get("left").copied().unwrap_or(0) > 0, "{text}");
    assert!(
        r.visitors.get("resumed").copied().unwrap_or(0) > 0,
        "{text}"
    );
    assert!(
        r.kicks.get("closed 4000").copied().unwrap_or(0) > 0,
        "{text}"
    );
    assert_eq!(
        r.kicks.get("closed 4000"),
        r.kicks.get("back during kick: refused"),
        "{text}"
    );
    assert!(
        r.slow.get("closed 4002").copied().unwrap_or(0) > 0,
        "{text}"
    );
    assert!(
        r.flood.get("rate_limited").copied().unwrap_or(0) > 0,
        "{text}"
    );
    assert!(
        r.left_seen.get("kicked").copied().unwrap_or(0) > 0,
        "{text}"
    );
    // The server was sampled throughout.
    assert!(r.samples.len() > 10, "{text}");
    assert!(r
        .samples
        .iter()
        .all(|s| s.rss_kib > 0 && s.fds > 0 && s.threads > 0));
    assert_eq!(r.server_stopped, Some(true), "{text}");
}

#[test]
fn file_transfers_of_the_file_mode_arrive_whole() {
    // The transfers `--mode file` times (the full run moves 600 MiB: too long for a test).
    let server = common::start(|c| c.limits.away_grace = std::time::Duration::ZERO);
    let keys = common::keys(4);
    let took =
        bench::files::transfers(&server.url(), &keys, 2, 300_000).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(took.len(), 2);
}

//! Daemon mode with the real executable: background start, pid file, graceful stop on SIGTERM.
mod common;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn daemon_mode_needs_a_transcript_and_a_key() {
    let bin = env!("CARGO_BIN_EXE_dyspatcher");
    let out = Command::new(bin)
        .args([
            "-d",
            "--admin-private-key",
            common::fixture("admin.pem").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--daemon: needs --transcription FILE"));
    let dir = temp_dir("needs");
    let out = Command::new(bin)
        .args(["-d", "--transcription", dir.join("t.log").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--daemon: needs --admin-private-key FILE")
    );
}

#[test]
fn runs_in_the_background_and_stops_gracefully_on_sigterm() {
    background_run_stopped_by("TERM");
}

#[test]
fn a_daemon_stops_on_sighup_too() {
    background_run_stopped_by("HUP");
}

fn background_run_stopped_by(signal: &str) {
    let dir = temp_dir(signal);
    let (pid_file, transcript) = (dir.join("d.pid"), dir.join("chat.log"));
    let out = Command::new(env!("CARGO_BIN_EXE_dyspatcher"))
        .args([
            "-d",
            "-p",
            "0",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--transcription",
            transcript.to_str().unwrap(),
            "--admin-private-key",
            common::fixture("admin.pem").to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // The foreground part returns at once, saying where things are.
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("going to the background") && stdout.contains("kill $(cat"),
        "{stdout}"
    );
    let addr = stdout
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "no pid file");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(alive(pid));
    let mut client = smol::block_on(async {
        let url = format!("ws://{addr}/ws");
        let key = common::keys(1)[0].clone();
        let mut c = common::within(
            10,
            "join",
            dyspatcher::client::Client::connect(&url, "alice", key, None),
        )
        .await
        .unwrap();
        common::wait_joined(&mut c, "ADMIN").await;
        c.send_direct("ADMIN", "to the daemon").await.unwrap();
        c
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&transcript)
        .unwrap()
        .contains("to the daemon")
    {
        assert!(
            Instant::now() < deadline,
            "the message never reached the transcript"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let end = smol::block_on(common::within(10, "the close", async {
        loop {
            if let Err(e) = client.next_event().await {
                return e.to_string();
            }
        }
    }));
    assert!(end.contains("1001"), "{end}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&transcript).unwrap();
    assert!(text.trim_end().ends_with("* stopped"), "{text}");
    assert!(text.contains("the server is stopping"));
}

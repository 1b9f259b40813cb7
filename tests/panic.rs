//! The panic stop with the real executable: SIGUSR1 or `/panic` closes every chat connection
//! with 4007, erases (overwrites, then deletes) the transcript and the self-signed TLS state, and
//! keeps the admin key unless `--panic-deletes-key`; without `--panic` nothing happens.
mod child;
mod common;

use std::path::{Path, PathBuf};

use child::Child;
use dyspatcher::client::Client;

/// Joins as `name`, over TLS when `pin` is given, and waits until the admin is listed.
fn join(url: &str, name: &str, key: usize, pin: Option<&str>) -> Client {
    let tls = pin.map(|p| dyspatcher::tls::client_config(Some(p), None).unwrap());
    smol::block_on(async {
        let key = common::keys(key + 1)[key].clone();
        let mut c = common::within(10, "join", Client::connect(url, name, key, tls))
            .await
            .unwrap_or_else(|e| panic!("{name} cannot join: {e}"));
        common::wait_joined(&mut c, "ADMIN").await;
        c
    })
}

/// Reads until the connection ends; returns its close code and reason.
fn close_of(mut c: Client) -> (u16, String) {
    smol::block_on(common::within(10, "the close", async {
        while c.next_event().await.is_ok() {}
    }));
    let closed = c.closed().expect("the connection ended");
    (closed.code, closed.reason.clone())
}

/// A second name for `path`: what is left of the file once the server erased it.
fn keep_sight_of(path: &Path, dir: &Path) -> PathBuf {
    let link = dir.join(format!(
        "seen-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::hard_link(path, &link).unwrap();
    link
}

/// `link` holds as many bytes as `before`, and none of its text.
fn overwritten(link: &Path, before: &[u8], needle: &str) {
    let now = std::fs::read(link).unwrap();
    assert_eq!(now.len(), before.len(), "{}", link.display());
    assert!(
        String::from_utf8_lossy(before).contains(needle),
        "{needle} was never there"
    );
    assert!(
        !String::from_utf8_lossy(&now).contains(needle),
        "{} still holds {needle}",
        link.display()
    );
}

fn self_signed_files(home: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(home.join("tls")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("self-signed-")
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn admin_key_copy(dir: &Path) -> PathBuf {
    let key = dir.join("admin.pem");
    std::fs::copy(common::fixture("admin.pem"), &key).unwrap();
    key
}

/// A server started in `dir` (home `dir/home`, transcript `dir/chat.log`, a copy of the admin's
/// key `dir/admin.pem`) with `flags` before the common ones; `--ssl-self-signed` among the flags
/// makes it serve TLS. Returns it with the transcript's and the key's paths.
fn start(dir: &Path, flags: &[&str]) -> (Child, PathBuf, PathBuf) {
    let (home, transcript, key) = (dir.join("home"), dir.join("chat.log"), admin_key_copy(dir));
    let mut args: Vec<&str> = flags.to_vec();
    args.extend([
        "-p",
        "0",
        "--transcription",
        transcript.to_str().unwrap(),
        "--admin-private-key",
        key.to_str().unwrap(),
    ]);
    (Child::start(&args, &home), transcript, key)
}

#[test]
fn sigusr1_closes_everyone_erases_transcript_and_tls_state_and_keeps_the_key() {
    let dir = child::temp_dir("panic-usr1");
    let (mut server, transcript, key) = start(&dir, &["--panic", "--ssl-self-signed"]);
    let home = dir.join("home");
    let url = format!("wss://{}/ws", server.addr());
    server.wait_for("fingerprint is");
    let pin = server.next_line().trim().to_string();
    server.wait_for("admin connected");
    let mut alice = join(&url, "alice", 0, Some(&pin));
    let bob = join(&url, "bobby", 1, Some(&pin));
    smol::block_on(alice.send_direct("ADMIN", "a secret for the admin")).unwrap();
    server.wait_for("→ ADMIN: a secret for the admin");

    let tls_files = self_signed_files(&home);
    assert_eq!(
        tls_files.len(),
        2,
        "a certificate and its key: {tls_files:?}"
    );
    let tls_seen: Vec<(PathBuf, Vec<u8>)> = tls_files
        .iter()
        .map(|p| (keep_sight_of(p, &dir), std::fs::read(p).unwrap()))
        .collect();
    let transcript_seen = keep_sight_of(&transcript, &dir);
    let transcript_before = std::fs::read(&transcript).unwrap();

    server.signal("USR1");
    for client in [alice, bob] {
        let (code, reason) = close_of(client);
        assert_eq!(code, 4007);
        assert_eq!(reason, dyspatcher::hub::PANIC_REASON);
    }
    let (status, _, stderr) = server.finish();
    assert_eq!(
        status.code(),
        Some(dyspatcher::panic::EXIT_ERASED),
        "{stderr}"
    );
    assert!(stderr.contains("panic stop (SIGUSR1)"), "{stderr}");
    assert!(stderr.contains("kept: the admin key file"), "{stderr}");

    assert!(!transcript.exists(), "the transcript is deleted");
    overwritten(
        &transcript_seen,
        &transcript_before,
        "a secret for the admin",
    );
    assert!(
        self_signed_files(&home).is_empty(),
        "the TLS state is deleted"
    );
    for (seen, before) in &tls_seen {
        let needle = match String::from_utf8_lossy(before).contains("PRIVATE KEY") {
            true => "PRIVATE KEY",
            false => "CERTIFICATE",
        };
        overwritten(seen, before, needle);
    }
    assert_eq!(
        std::fs::read(&key).unwrap(),
        std::fs::read(common::fixture("admin.pem")).unwrap(),
        "the admin key is kept"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn slash_panic_with_panic_deletes_key_erases_the_admin_key_too() {
    let dir = child::temp_dir("panic-prompt");
    let (mut server, transcript, key) = start(&dir, &["--panic", "--panic-deletes-key"]);
    let url = format!("ws://{}/ws", server.addr());
    server.wait_for("admin connected");
    let alice = join(&url, "alice", 0, None);
    let key_seen = keep_sight_of(&key, &dir);
    let key_before = std::fs::read(&key).unwrap();
    // Only the exact command: a typo is answered and changes nothing.
    server.type_line("/panic now");
    server.wait_for("/panic: too many words");
    server.type_line("/panik");
    server.wait_for("unknown command /panik");
    assert!(transcript.exists() && key.exists());
    server.type_line("/panic");
    assert_eq!(close_of(alice).0, 4007);
    let (status, _, stderr) = server.finish();
    assert_eq!(
        status.code(),
        Some(dyspatcher::panic::EXIT_ERASED),
        "{stderr}"
    );
    assert!(stderr.contains("panic stop (/panic)"), "{stderr}");
    assert!(
        stderr.contains("the admin key file") && stderr.contains("kept: nothing"),
        "{stderr}"
    );
    assert!(!transcript.exists());
    assert!(!key.exists(), "the admin key is deleted");
    overwritten(&key_seen, &key_before, "PRIVATE KEY");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_panic_neither_slash_panic_nor_sigusr1_does_anything() {
    let dir = child::temp_dir("panic-off");
    let (mut server, transcript, _) = start(&dir, &[]);
    let url = format!("ws://{}/ws", server.addr());
    server.wait_for("admin connected");
    let mut alice = join(&url, "alice", 0, None);
    server.type_line("/panic");
    server.wait_for("the panic stop is off: start the server with --panic");
    server.signal("USR1");
    server.wait_for("SIGUSR1 ignored: the panic stop is off");
    // Everything goes on: the member is still connected and heard.
    smol::block_on(alice.send_direct("ADMIN", "still here")).unwrap();
    server.wait_for("→ ADMIN: still here");
    server.signal("TERM");
    assert_eq!(close_of(alice).0, 1001);
    let (status, _, stderr) = server.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let text = std::fs::read_to_string(&transcript).unwrap();
    assert!(
        text.contains("SIGUSR1 ignored") && text.contains("still here"),
        "{text}"
    );
    let (code, out, _) = child::run(&["verify-transcript", transcript.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn panic_deletes_key_needs_panic_and_a_key_file() {
    let key = common::fixture("admin.pem");
    let (code, _, err) = child::run(&[
        "--panic-deletes-key",
        "--admin-private-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--panic-deletes-key: needs --panic"), "{err}");
    let (code, _, err) = child::run(&["--panic", "--panic-deletes-key"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--panic-deletes-key: needs --admin-private-key FILE"),
        "{err}"
    );
}

#[test]
fn a_daemon_stops_on_sigusr1_and_leaves_no_transcript_nor_pid_file() {
    let dir = child::temp_dir("panic-daemon");
    let (pid_file, transcript) = (dir.join("d.pid"), dir.join("chat.log"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dyspatcher"))
        .args([
            "-d",
            "--panic",
            "-p",
            "0",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--transcription",
            transcript.to_str().unwrap(),
            "--admin-private-key",
            common::fixture("admin.pem").to_str().unwrap(),
        ])
        .env("DYSPATCHER_HOME", dir.join("home"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let addr = stdout
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    // Once a member is in, the daemon is up (and its pid file written).
    let alice = join(&format!("ws://{addr}/ws"), "alice", 0, None);
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let proc = PathBuf::from(format!("/proc/{pid}"));
    assert!(proc.exists() && transcript.exists());
    assert!(std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(close_of(alice).0, 4007);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Gone, or a zombie nobody reaped yet.
    let alive =
        || std::fs::read_to_string(proc.join("stat")).is_ok_and(|stat| !stat.contains(") Z "));
    while alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!transcript.exists(), "the transcript is erased");
    assert!(!pid_file.exists(), "the pid file is removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_key_file_that_cannot_be_erased_is_reported_with_exit_code_4() {
    let dir = child::temp_dir("panic-incomplete");
    let (mut server, transcript, key) = start(&dir, &["--panic", "--panic-deletes-key"]);
    server.wait_for("admin connected");
    // Someone moved the key away meanwhile: the rest is still erased, and the exit says so.
    std::fs::rename(&key, dir.join("moved.pem")).unwrap();
    server.signal("USR1");
    let (status, _, stderr) = server.finish();
    assert_eq!(
        status.code(),
        Some(dyspatcher::panic::EXIT_INCOMPLETE),
        "{stderr}"
    );
    assert!(stderr.contains("erased: the transcript;"), "{stderr}");
    assert!(
        stderr.contains("NOT DONE: the admin key: `") && stderr.contains("cannot erase it"),
        "{stderr}"
    );
    assert!(!transcript.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

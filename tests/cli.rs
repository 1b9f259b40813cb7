//! The executable: bad command lines get one clear line and exit code 2; the server starts,
//! prints its URL, and stops cleanly on /quit.
mod common;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn dyspatcher(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dyspatcher"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_name_the_option_and_exit_2() {
    let exists = common::fixture("admin.pem");
    for (args, says) in [
        (
            vec!["-n", "admin"],
            "--admin-nickname: `admin` must be 4 to 15 characters",
        ),
        (vec!["--admin-nickname", "AB"], "--admin-nickname"),
        (
            vec!["--admin-private-key", "/nonexistent.pem"],
            "--admin-private-key: file `/nonexistent.pem` not found",
        ),
        (
            vec!["--admin-private-key", "Cargo.toml"],
            "not an RSA private key",
        ),
        (
            vec!["--admin-private-key", "tests/fixtures/small1024.pem"],
            "1024 bits",
        ),
        (vec!["-p", "99999"], "option '-p' with value '99999'"),
        (vec!["--port", "x"], "option '--port'"),
        (vec!["-i", "not-an-ip"], "invalid IP address"),
        (vec!["--welcome", " "], "--welcome: the text is empty"),
        (
            vec!["--transcription", exists.to_str().unwrap()],
            "--transcription: `",
        ),
        (vec!["--rate-limit", "0"], "--rate-limit"),
        (
            vec!["--max-connections", "0"],
            "--max-connections: must be at least 1",
        ),
        (
            vec!["--max-per-ip", "0"],
            "--max-per-ip: must be at least 1",
        ),
        (
            vec!["--allow-list", "/nonexistent.csv"],
            "--allow-list: file `/nonexistent.csv` not found",
        ),
        (vec!["-p", "8080", "-w", "8080"], "--wsport: must differ"),
        (vec!["--bogus"], "Unrecognized argument: --bogus"),
        (
            vec!["--ssl-certificate", "/nonexistent.crt", "--ssl-key", "x"],
            "--ssl-certificate: file `/nonexistent.crt` not found",
        ),
        (
            vec!["--ssl-certificate", "Cargo.toml"],
            "--ssl-certificate: needs --ssl-key too",
        ),
        (
            vec!["--ssl-certificate", "Cargo.toml", "--ssl-key", "Cargo.toml"],
            "--ssl-certificate",
        ),
        (vec!["--sshpfw-ip-address", "example.org"], "--sshpfw-port"),
        (vec!["-d"], "--daemon: needs --transcription"),
        (
            vec!["--allowed-host", "https://chat.example.org"],
            "--allowed-host: `https://chat.example.org` is not a host name or IP address: give the name alone, without a scheme",
        ),
        (
            vec!["--allowed-host", "chat.example.org/x"],
            "without a path",
        ),
        (
            vec!["--allowed-host", "chat.example.org:443"],
            "without a port (every port is allowed)",
        ),
        (
            vec!["--allowed-host", "chat example"],
            "only letters, digits",
        ),
        (vec!["--allowed-host", ""], "a host name has 1 to 253 characters"),
        (vec!["--allowed-host", "[::1"], "--allowed-host: `[::1`"),
        (
            vec!["--max-file-mb", "0"],
            "--max-file-mb: must be between 1 and 1024 (MiB)",
        ),
        (vec!["--max-file-mb", "1025"], "--max-file-mb: must be between 1"),
        (vec!["--groups", "everyone"], "--groups: must be users, admin or off"),
        (vec!["--max-groups", "0"], "--max-groups: must be between 1 and 256"),
        (vec!["--max-groups", "257"], "--max-groups: must be between 1 and 256"),
        (vec!["--max-group-size", "1"], "--max-group-size: must be between 2 and 256"),
        (vec!["--max-group-size", "257"], "--max-group-size: must be between 2"),
    ] {
        let (code, _, err) = dyspatcher(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {err}"
        );
    }
}

#[test]
fn version_and_help() {
    let (code, out, _) = dyspatcher(&["-v"]);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            format!("dyspatcher {}", env!("CARGO_PKG_VERSION")).as_str()
        )
    );
    let (code, out, _) = dyspatcher(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--ip-address",
        "--port",
        "--wsport",
        "--admin-nickname",
        "--admin-private-key",
        "--welcome",
        "--disable-all",
        "--only-admin",
        "--allowed-host",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn starts_prints_the_url_and_quits_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dyspatcher"))
        .args([
            "-p",
            "0",
            "--admin-private-key",
            common::fixture("admin.pem").to_str().unwrap(),
            "--allowed-host",
            "Chat.Example.org",
            "--allowed-host",
            "[2001:db8::1]",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .expect(&first)
        .to_string();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let client = smol::block_on(async {
        let server = common::TestServer::url_of(&addr);
        // Wait for the admin, then join.
        loop {
            let line = lines.next().unwrap().unwrap();
            if line.contains("admin connected") {
                break;
            }
        }
        dyspatcher::client::Client::connect(&server, "alice", common::keys(1)[0].clone(), None)
            .await
            .unwrap()
    });
    child.stdin.as_mut().unwrap().write_all(b"/quit\n").unwrap();
    let end = smol::block_on(async {
        let mut client = client;
        loop {
            if let Err(e) = client.next_event().await {
                return e.to_string();
            }
        }
    });
    assert!(
        end.contains("1001") && end.contains("shutting down"),
        "{end}"
    );
    assert!(child.wait().unwrap().success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    // One line for the stop, not the prompt's own and the hub's notice to every connection.
    let stopping = rest.iter().filter(|l| l.contains("stopping")).count();
    assert_eq!(stopping, 1, "{rest:?}");
    assert!(
        !rest.iter().any(|l| l.contains("shutting down")),
        "{rest:?}"
    );
}

/// SIGHUP re-reads the allow list of an interactive server; SIGINT stops it gracefully.
#[test]
fn signals_reload_and_stop() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("signals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("allow.csv");
    std::fs::write(
        &list,
        format!("{},alice\n", common::keys(1)[0].public().key_id()),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dyspatcher"))
        .args([
            "-p",
            "0",
            "--allow-list",
            list.to_str().unwrap(),
            "--admin-private-key",
            common::fixture("admin.pem").to_str().unwrap(),
            "--allowed-host",
            "Chat.Example.org",
            "--allowed-host",
            "[2001:db8::1]",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for = |needle: &str| loop {
        let line = lines.next().expect("output ended").unwrap();
        if line.contains(needle) {
            return line;
        }
    };
    wait_for("admin connected");
    // The file did not change, so only the signal can make it reload.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    assert!(wait_for("allow list reloaded").contains("1 entries"));
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("stopped");
    assert!(child.wait().unwrap().success());
}

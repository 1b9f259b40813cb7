//! The tunnel's option checks and its supervisor, driven by small shell scripts standing in
//! for ssh (the real ssh against a real sshd is in `tunnel_sshd.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dyspatcher::tunnel::{self, Tunnel, TunnelError, TunnelPhase, TunnelSettings, TunnelState};

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dyspatcher-tunnel-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a tunnel whose "ssh" is `program`, with fast timings; returns it and its states.
fn start(program: &Path, up_after: Duration) -> (Tunnel, mpsc::Receiver<TunnelState>) {
    let mut settings = TunnelSettings::new("127.0.0.1", 22, "nobody", Path::new("/nonexistent"));
    settings.forwards = vec![(8080, "127.0.0.1".into(), 8080)];
    settings.ssh_program = program.to_path_buf();
    settings.backoff = (Duration::from_millis(50), Duration::from_millis(200));
    settings.up_after = up_after;
    let (tx, rx) = mpsc::channel();
    let tunnel = Tunnel::start(settings, move |state| {
        let _ = tx.send(state);
    })
    .unwrap();
    (tunnel, rx)
}

/// Receives states until one satisfies `done`; panics after 20 s.
fn until(
    rx: &mpsc::Receiver<TunnelState>,
    done: impl Fn(&TunnelState) -> bool,
) -> Vec<TunnelState> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(state) => {
                let finished = done(&state);
                seen.push(state);
                if finished {
                    return seen;
                }
            }
            Err(e) => panic!("{e} while waiting; states so far: {seen:#?}"),
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn no_option_means_no_tunnel() {
    assert!(tunnel::validate(None, None, None, None).unwrap().is_none());
}

#[test]
fn incomplete_options_are_listed() {
    let err = tunnel::validate(Some("203.0.113.5"), None, Some("chat"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SSH forwarding needs all four of --sshpfw-ip-address, --sshpfw-port, --sshpfw-user and \
         --sshpfw-keyfile; missing: --sshpfw-port, --sshpfw-keyfile"
    );
}

#[test]
fn keyfile_is_checked() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing");
    let err = tunnel::validate(Some("h"), Some(22), Some("u"), Some(&missing)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("--sshpfw-keyfile: file `{}` not found", missing.display())
    );

    let err = tunnel::validate(Some("h"), Some(22), Some("u"), Some(&dir.0)).unwrap_err();
    assert!(
        matches!(err, TunnelError::KeyfileUnreadable { .. }),
        "{err}"
    );

    let open = dir.file("open_key", "key\n", 0o644);
    let err = tunnel::validate(Some("h"), Some(22), Some("u"), Some(&open)).unwrap_err();
    assert!(
        matches!(err, TunnelError::KeyfileTooOpen { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");

    let key = dir.file("key", "key\n", 0o600);
    let settings = tunnel::validate(Some("ssh.example"), Some(2222), Some("chat"), Some(&key))
        .unwrap()
        .unwrap();
    assert_eq!(
        (settings.host.as_str(), settings.port),
        ("ssh.example", 2222)
    );
    assert_eq!(settings.user, "chat");
    assert_eq!(settings.keyfile, std::fs::canonicalize(&key).unwrap());
    assert!(settings.forwards.is_empty());

    // A relative key path is made absolute, so that a daemon (which changes to /) finds it.
    let cwd = std::env::current_dir().unwrap();
    let mut relative = PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(key.strip_prefix("/").unwrap());
    assert!(relative.is_relative() && relative.exists());
    let settings = tunnel::validate(Some("h"), Some(22), Some("u"), Some(&relative))
        .unwrap()
        .unwrap();
    assert_eq!(settings.keyfile, std::fs::canonicalize(&key).unwrap());
}

#[test]
fn option_lookalikes_are_refused() {
    let dir = TempDir::new();
    let key = dir.file("key", "key\n", 0o600);
    let check = |host: &str, port: u16, user: &str| {
        tunnel::validate(Some(host), Some(port), Some(user), Some(&key)).unwrap_err()
    };
    assert!(matches!(
        check("-oProxyCommand=x", 22, "u"),
        TunnelError::BadHost(_)
    ));
    assert!(matches!(check("", 22, "u"), TunnelError::BadHost(_)));
    assert!(matches!(check("a b", 22, "u"), TunnelError::BadHost(_)));
    assert!(matches!(
        check("h", 22, "-oProxyCommand=x"),
        TunnelError::BadUser(_)
    ));
    assert!(matches!(check("h", 22, "a@b"), TunnelError::BadUser(_)));
    assert!(matches!(check("h", 0, "u"), TunnelError::BadPort));
}

#[test]
fn settings_without_forwards_are_refused() {
    let settings = TunnelSettings::new("h", 22, "u", Path::new("k"));
    let err = Tunnel::start(settings, |_| {}).unwrap_err();
    assert!(matches!(err, TunnelError::NoForwards));
}

#[test]
fn missing_program_is_reported_and_retried() {
    let (tunnel, rx) = start(Path::new("/nonexistent/ssh"), Duration::from_secs(2));
    let seen = until(&rx, |s| {
        s.restarts >= 2 && matches!(s.phase, TunnelPhase::Exited { .. })
    });
    let TunnelPhase::Exited { status, reason } = &seen.last().unwrap().phase else {
        unreachable!()
    };
    assert_eq!(status, "could not start");
    let reason = reason.as_deref().unwrap();
    assert!(reason.contains("`/nonexistent/ssh`: not found"), "{reason}");
    assert!(tunnel.state().last_error.unwrap().contains("not found"));
    tunnel.stop();
    assert_eq!(tunnel.state().phase, TunnelPhase::Stopped);
}

#[test]
fn failing_runs_back_off_up_to_the_cap() {
    let dir = TempDir::new();
    let script = dir.file(
        "ssh",
        "#!/bin/sh\necho 'first line' >&2\necho 'it failed' >&2\necho 'debug1: Exit status 3' >&2\nexit 3\n",
        0o755,
    );
    let (tunnel, rx) = start(&script, Duration::from_secs(2));
    let seen = until(&rx, |s| {
        s.restarts >= 4 && matches!(s.phase, TunnelPhase::Restarting { .. })
    });
    let delays: Vec<u128> = seen
        .iter()
        .filter_map(|s| match s.phase {
            TunnelPhase::Restarting { delay } => Some(delay.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [50, 100, 200, 200, 200]);
    let exited = seen
        .iter()
        .find(|s| matches!(s.phase, TunnelPhase::Exited { .. }))
        .unwrap();
    assert_eq!(
        exited.phase,
        TunnelPhase::Exited {
            status: "status 3".into(),
            reason: Some("it failed".into())
        }
    );
    assert_eq!(exited.last_error.as_deref(), Some("status 3: it failed"));
    // Every start is reported with its pid.
    assert!(seen
        .iter()
        .filter(|s| s.phase == TunnelPhase::Starting)
        .all(|s| s.pid.is_some()));
    drop(tunnel);
    let last = until(&rx, |s| s.phase == TunnelPhase::Stopped);
    assert_eq!(last.last().unwrap().pid, None);
}

#[test]
fn long_run_is_up_and_stop_ends_it() {
    let dir = TempDir::new();
    let script = dir.file("ssh", "#!/bin/sh\nexec sleep 60\n", 0o755);
    let (tunnel, rx) = start(&script, Duration::from_millis(300));
    let seen = until(&rx, |s| s.phase == TunnelPhase::Up);
    let pid = seen.last().unwrap().pid.unwrap();
    assert!(alive(pid));
    assert_eq!(tunnel.state().pid, Some(pid));
    let begun = Instant::now();
    tunnel.stop();
    assert!(
        begun.elapsed() < Duration::from_secs(2),
        "SIGTERM should have been enough"
    );
    assert!(!alive(pid), "ssh (pid {pid}) outlived stop()");
    assert_eq!(tunnel.state().phase, TunnelPhase::Stopped);
    tunnel.stop();
}

#[test]
fn confirmed_forwards_are_up_at_once() {
    let dir = TempDir::new();
    let script = dir.file(
        "ssh",
        "#!/bin/sh\necho 'Authenticated to 127.0.0.1 ([127.0.0.1]:22) using \"publickey\".' >&2\n\
         echo 'debug1: remote forward success for: listen 8080, connect 127.0.0.1:8080' >&2\n\
         exec sleep 60\n",
        0o755,
    );
    let begun = Instant::now();
    let (tunnel, rx) = start(&script, Duration::from_secs(60));
    until(&rx, |s| s.phase == TunnelPhase::Up);
    assert!(begun.elapsed() < Duration::from_secs(10));
    drop(tunnel);
    // Nothing it said explains an end.
    let seen = until(&rx, |s| s.phase == TunnelPhase::Stopped);
    assert!(seen.iter().all(|s| s.last_error.is_none()), "{seen:#?}");
}

#[test]
fn program_ignoring_sigterm_is_killed() {
    let dir = TempDir::new();
    let script = dir.file(
        "ssh",
        "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.1; done\n",
        0o755,
    );
    let (tunnel, rx) = start(&script, Duration::from_millis(300));
    let pid = until(&rx, |s| s.phase == TunnelPhase::Up)
        .last()
        .unwrap()
        .pid
        .unwrap();
    let begun = Instant::now();
    drop(tunnel);
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(!alive(pid), "ssh (pid {pid}) outlived the tunnel");
}

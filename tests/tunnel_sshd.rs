//! The SSH reverse tunnel against a real OpenSSH server on 127.0.0.1: each test starts its own
//! `sshd` (own host key, own authorized_keys, own free port) and the real `ssh` client.
//!
//! Needs `/usr/sbin/sshd` and `ssh` (Debian: `apt-get install -y openssh-server
//! openssh-client`); if sshd is missing the tests try to install it, and skip with a message only
//! when that fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dyspatcher::tunnel::{Tunnel, TunnelPhase, TunnelSettings, TunnelState};

const SSHD: &str = "/usr/sbin/sshd";
/// Bound on every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(30);

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dyspatcher-sshd-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(path: &Path) {
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            path.to_str().unwrap(),
        ],
    );
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether sshd is here, installing it if it is not.
fn sshd_available() -> bool {
    if Path::new(SSHD).exists() {
        return true;
    }
    eprintln!("{SSHD} is missing: trying apt-get install openssh-server openssh-client");
    let installed = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             openssh-server openssh-client",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !(installed && Path::new(SSHD).exists()) {
        eprintln!("SKIPPED: {SSHD} is absent and could not be installed");
        return false;
    }
    true
}

/// An sshd of our own, killed on drop (its log is printed if the test failed).
struct Sshd {
    child: Child,
    port: u16,
    user: String,
    dir: TempDir,
}

impl Sshd {
    fn start() -> Option<Sshd> {
        if !sshd_available() {
            return None;
        }
        let dir = TempDir::new();
        keygen(&dir.path("hostkey"));
        keygen(&dir.path("client"));
        keygen(&dir.path("stranger"));
        std::fs::copy(dir.path("client.pub"), dir.path("authorized_keys")).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nUsePAM no\nAllowTcpForwarding yes\nGatewayPorts no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n",
            dir.path("hostkey").display(),
            dir.path("authorized_keys").display(),
            dir.path("sshd.pid").display(),
        );
        std::fs::write(dir.path("sshd_config"), config).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(dir.path("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let mut sshd = Sshd {
            child,
            port,
            user,
            dir,
        };
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited ({status}):\n{}", sshd.log());
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen:\n{}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("sshd.log")).unwrap_or_default()
    }

    /// Settings for a tunnel through this sshd, logging in with `key`, with fast timings.
    fn settings(&self, key: &str, forwards: Vec<(u16, String, u16)>) -> TunnelSettings {
        let mut s = TunnelSettings::new("127.0.0.1", self.port, &self.user, &self.dir.path(key));
        s.forwards = forwards;
        s.extra_options = [
            "-F",
            "/dev/null",
            "-o",
            &format!(
                "UserKnownHostsFile={}",
                self.dir.path("known_hosts").display()
            ),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ]
        .map(String::from)
        .to_vec();
        s.backoff = (Duration::from_millis(100), Duration::from_millis(400));
        // Longer than any wait here: "up" must come from ssh's confirmation of the forwards.
        s.up_after = Duration::from_secs(120);
        s
    }
}

/// Pids of the children of `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …: comm may hold spaces, so look after its closing parenthesis.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            pids.push(pid);
        }
    }
    pids
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Let the per-connection processes of ended tunnels finish first, so that sshd reaps
        // them rather than leaving them to init.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !children(self.child.id()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sshd log ---\n{}", self.log());
        }
    }
}

/// A TCP echo server on 127.0.0.1 for the rest of the test process; returns its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Sends a line to 127.0.0.1:`port` and reads it back.
fn round_trip(port: u16) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"through the tunnel\n")?;
    let mut buf = [0u8; 19];
    stream.read_exact(&mut buf)?;
    if &buf != b"through the tunnel\n" {
        return Err(std::io::Error::other("garbled echo"));
    }
    Ok(())
}

/// Retries [`round_trip`] until it works; panics after [`PATIENCE`].
fn reaches(port: u16, tunnel: &Tunnel) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match round_trip(port) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                panic!(
                    "port {port} never reached the echo server: {e}; {:?}",
                    tunnel.state()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn start(settings: TunnelSettings) -> (Tunnel, mpsc::Receiver<TunnelState>) {
    let (tx, rx) = mpsc::channel();
    let tunnel = Tunnel::start(settings, move |state| {
        let _ = tx.send(state);
    })
    .unwrap();
    (tunnel, rx)
}

/// Receives states until one satisfies `done`; panics after [`PATIENCE`].
fn until(
    rx: &mpsc::Receiver<TunnelState>,
    done: impl Fn(&TunnelState) -> bool,
) -> Vec<TunnelState> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
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

/// Pids of processes whose command line holds `needle` as one argument.
fn processes_with_arg(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Stops the tunnel and checks that no ssh of its remains and the remote port is closed.
fn stop_leaves_nothing(tunnel: Tunnel, rx: &mpsc::Receiver<TunnelState>, remote: u16) {
    let pid = tunnel.state().pid.expect("a running ssh");
    let (r, host, l) = &tunnel.settings().forwards[0];
    let forward = format!("*:{r}:{host}:{l}");
    assert_eq!(processes_with_arg(&forward), [pid]);
    tunnel.stop();
    assert!(!alive(pid), "ssh (pid {pid}) outlived stop()");
    assert!(processes_with_arg(&forward).is_empty());
    until(rx, |s| s.phase == TunnelPhase::Stopped);
    assert_eq!(tunnel.state().pid, None);
    let deadline = Instant::now() + PATIENCE;
    while round_trip(remote).is_ok() {
        assert!(Instant::now() < deadline, "the remote port stayed open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn forward_reaches_the_local_listener() {
    let Some(sshd) = Sshd::start() else { return };
    let (echo, remote) = (echo_server(), free_port());
    let (tunnel, rx) = start(sshd.settings("client", vec![(remote, "127.0.0.1".into(), echo)]));
    let seen = until(&rx, |s| s.phase == TunnelPhase::Up);
    assert_eq!(seen[0].phase, TunnelPhase::Starting);
    assert!(seen[0].pid.is_some());
    reaches(remote, &tunnel);
    let state = tunnel.state();
    assert_eq!((state.phase, state.restarts), (TunnelPhase::Up, 0));
    assert_eq!(
        tunnel.public_url(false),
        format!("http://127.0.0.1:{remote}/")
    );
    stop_leaves_nothing(tunnel, &rx, remote);
}

#[test]
fn killed_ssh_is_restarted() {
    let Some(sshd) = Sshd::start() else { return };
    let (echo, remote) = (echo_server(), free_port());
    let (tunnel, rx) = start(sshd.settings("client", vec![(remote, "127.0.0.1".into(), echo)]));
    until(&rx, |s| s.phase == TunnelPhase::Up);
    reaches(remote, &tunnel);
    let first = tunnel.state().pid.unwrap();
    run("kill", &["-KILL", &first.to_string()]);

    let seen = until(&rx, |s| s.phase == TunnelPhase::Up && s.restarts >= 1);
    assert!(
        seen.iter().any(|s| s.phase
            == TunnelPhase::Exited {
                status: "signal 9".into(),
                reason: None
            }),
        "{seen:#?}"
    );
    assert!(seen
        .iter()
        .any(|s| matches!(s.phase, TunnelPhase::Restarting { .. })));
    let state = tunnel.state();
    assert!(state.restarts >= 1);
    assert_ne!(state.pid, Some(first));
    assert!(!alive(first));
    reaches(remote, &tunnel);
    stop_leaves_nothing(tunnel, &rx, remote);
}

#[test]
fn unknown_key_is_reported_and_retried_with_backoff() {
    let Some(sshd) = Sshd::start() else { return };
    let (tunnel, rx) = start(sshd.settings("stranger", vec![(free_port(), "127.0.0.1".into(), 1)]));
    let seen = until(&rx, |s| {
        s.restarts >= 3 && matches!(s.phase, TunnelPhase::Restarting { .. })
    });
    let reasons: Vec<&str> = seen
        .iter()
        .filter_map(|s| match &s.phase {
            TunnelPhase::Exited { status, reason } => {
                assert_eq!(status, "status 255");
                reason.as_deref()
            }
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{seen:#?}");
    for reason in reasons {
        assert!(
            reason.ends_with("Permission denied (publickey)."),
            "{reason}"
        );
    }
    let delays: Vec<u128> = seen
        .iter()
        .filter_map(|s| match s.phase {
            TunnelPhase::Restarting { delay } => Some(delay.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [100, 200, 400, 400]);
    assert!(
        !seen.iter().any(|s| s.phase == TunnelPhase::Up),
        "{seen:#?}"
    );
    let last = tunnel.state().last_error.unwrap();
    assert!(last.contains("Permission denied"), "{last}");
}

#[test]
fn refused_connection_is_reported_and_retried() {
    let Some(sshd) = Sshd::start() else { return };
    let mut settings = sshd.settings("client", vec![(free_port(), "127.0.0.1".into(), 1)]);
    settings.port = free_port();
    let (tunnel, rx) = start(settings);
    let seen = until(&rx, |s| {
        s.restarts >= 1 && matches!(s.phase, TunnelPhase::Exited { .. })
    });
    let TunnelPhase::Exited { reason, .. } = &seen.last().unwrap().phase else {
        unreachable!()
    };
    let reason = reason.as_deref().unwrap();
    assert!(reason.ends_with("Connection refused"), "{reason}");
    tunnel.stop();
}

#[test]
fn taken_remote_port_is_reported() {
    let Some(sshd) = Sshd::start() else { return };
    let (echo, remote) = (echo_server(), free_port());
    let forwards = vec![(remote, "127.0.0.1".to_string(), echo)];
    let (first, first_rx) = start(sshd.settings("client", forwards.clone()));
    until(&first_rx, |s| s.phase == TunnelPhase::Up);
    reaches(remote, &first);

    let (second, rx) = start(sshd.settings("client", forwards));
    let seen = until(&rx, |s| matches!(s.phase, TunnelPhase::Exited { .. }));
    let TunnelPhase::Exited { reason, .. } = &seen.last().unwrap().phase else {
        unreachable!()
    };
    let reason = reason.as_deref().unwrap();
    assert!(reason.contains("remote port forwarding failed"), "{reason}");
    let shown = seen.last().unwrap().to_string();
    assert!(shown.contains("is another ssh"), "{shown}");
    second.stop();
    // The first tunnel is unharmed.
    round_trip(remote).unwrap();
    stop_leaves_nothing(first, &first_rx, remote);
}

mod common;

/// The chat itself through a real tunnel: a client on the forwarded port joins and talks to the
/// admin; killing ssh is followed by a restart; stopping the server leaves no ssh behind.
#[test]
fn the_chat_is_reachable_through_the_tunnel() {
    let Some(sshd) = Sshd::start() else { return };
    let remote = free_port();
    let server = common::start(|c| {
        c.tunnel = Some(sshd.settings("client", Vec::new()));
        c.tunnel_remote_port = Some(remote);
    });
    smol::block_on(async {
        server
            .output_containing(&format!("through the tunnel: http://127.0.0.1:{remote}/"))
            .await;
        server.output_containing("ssh tunnel: up").await;
        let url = format!("ws://127.0.0.1:{remote}/ws");
        let keys = common::keys(2);
        let mut alice = dyspatcher::client::Client::connect(&url, "alice", keys[0].clone(), None)
            .await
            .unwrap();
        alice
            .send_direct("ADMIN", "hello through ssh")
            .await
            .unwrap();
        assert!(server
            .output_containing("hello through ssh")
            .await
            .contains("alice"));
        server.prompt("/tunnel");
        let state = server.output_containing("ssh tunnel: up (pid ").await;
        let pid: u32 = state
            .split("pid ")
            .nth(1)
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // Kill ssh: the supervisor restarts it and the chat is reachable again.
        run("kill", &["-9", &pid.to_string()]);
        server.output_containing("ssh tunnel: up").await;
        let bob = dyspatcher::client::Client::connect(&url, "bobby", keys[1].clone(), None)
            .await
            .unwrap();
        assert_eq!(bob.session().name(), Some("bobby"));
        server.prompt("/tunnel");
        let state = server.output_containing("ssh tunnel: up (pid ").await;
        assert!(state.contains("1 restart"), "{state}");
    });
    let forward = format!("*:{remote}:127.0.0.1:{}", server.running.addr.port());
    assert_eq!(
        processes_with_arg(&forward).len(),
        1,
        "one ssh runs the forward"
    );
    server.running.shutdown();
    let common::TestServer { running } = server;
    running.wait();
    let leftover = processes_with_arg(&forward);
    assert!(leftover.is_empty(), "ssh left running: {leftover:?}");
}

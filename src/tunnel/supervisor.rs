//! The supervisor thread of a [`super::Tunnel`]: starts ssh, watches it, reads its stderr,
//! restarts it with backoff, and ends it when asked.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use super::{TunnelPhase, TunnelSettings, TunnelState};

/// How often the supervisor looks at its ssh child.
const POLL: Duration = Duration::from_millis(100);
/// How long ssh gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait, after ssh exited, for the rest of its stderr.
const STDERR_DRAIN: Duration = Duration::from_secs(1);
/// How many lines of ssh's stderr are kept per run.
const TAIL_LINES: usize = 8;
/// Longest stderr line kept (longer ones are cut).
const MAX_LINE: usize = 512;

/// Starts the supervisor thread for `settings`; returns what the handle shares with it.
pub(super) fn spawn(
    settings: TunnelSettings,
    on_change: Box<dyn Fn(TunnelState) + Send>,
) -> io::Result<(Arc<Shared>, JoinHandle<()>)> {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            state: TunnelState {
                phase: TunnelPhase::Starting,
                pid: None,
                since: SystemTime::now(),
                restarts: 0,
                last_error: None,
            },
            stopping: false,
        }),
        wake: Condvar::new(),
    });
    let supervisor = Supervisor {
        settings,
        shared: shared.clone(),
        on_change,
    };
    let thread = thread::Builder::new()
        .name("ssh-tunnel".into())
        .spawn(move || supervisor.run())?;
    Ok((shared, thread))
}

/// What the handle and the supervisor thread share.
pub(super) struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
}

struct Inner {
    state: TunnelState,
    stopping: bool,
}

impl Shared {
    /// The current state.
    pub(super) fn state(&self) -> TunnelState {
        self.lock().state.clone()
    }

    /// Asks the supervisor to end ssh and itself.
    pub(super) fn request_stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` for a stop request; true if one came.
    fn wait_for_stop(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        while !inner.stopping {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self
                .wake
                .wait_timeout(inner, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        inner.stopping
    }
}

/// How one run of ssh ended.
enum RunEnd {
    Exited {
        status: String,
        reason: Option<String>,
    },
    Stopped,
}

/// The supervisor thread's state.
struct Supervisor {
    settings: TunnelSettings,
    shared: Arc<Shared>,
    on_change: Box<dyn Fn(TunnelState) + Send>,
}

impl Supervisor {
    fn run(self) {
        let (first, max) = self.settings.backoff;
        let mut delay = first;
        loop {
            let started = Instant::now();
            match self.run_once() {
                RunEnd::Stopped => break,
                RunEnd::Exited { status, reason } => {
                    self.report(|s| {
                        s.phase = TunnelPhase::Exited {
                            status: status.clone(),
                            reason: reason.clone(),
                        };
                        s.pid = None;
                        s.last_error = Some(match &reason {
                            Some(reason) => format!("{status}: {reason}"),
                            None => status.clone(),
                        });
                    });
                }
            }
            if started.elapsed() >= self.settings.stable_after {
                delay = first;
            }
            self.report(|s| s.phase = TunnelPhase::Restarting { delay });
            if self.shared.wait_for_stop(delay) {
                break;
            }
            delay = (delay * 2).min(max);
            self.report(|s| s.restarts += 1);
        }
        self.report(|s| {
            s.phase = TunnelPhase::Stopped;
            s.pid = None;
        });
    }

    /// Updates the shared state and tells the callback (outside the lock, so that the callback
    /// may call [`super::Tunnel::state`]). Changes that leave the phase and pid as they were are not
    /// reported.
    fn report(&self, change: impl FnOnce(&mut TunnelState)) {
        let snapshot = {
            let mut inner = self.shared.lock();
            let before = (inner.state.phase.clone(), inner.state.pid);
            change(&mut inner.state);
            if (&inner.state.phase, inner.state.pid) == (&before.0, before.1) {
                return;
            }
            inner.state.since = SystemTime::now();
            inner.state.clone()
        };
        (self.on_change)(snapshot);
    }

    /// Runs ssh once, until it exits or a stop is requested.
    fn run_once(&self) -> RunEnd {
        if self.shared.lock().stopping {
            return RunEnd::Stopped;
        }
        let spawned = Command::new(&self.settings.ssh_program)
            .args(self.settings.ssh_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => ChildGuard(child),
            Err(e) => {
                return RunEnd::Exited {
                    status: "could not start".to_string(),
                    reason: Some(spawn_failure(&self.settings.ssh_program, &e)),
                }
            }
        };
        let pid = child.0.id();
        self.report(|s| {
            s.phase = TunnelPhase::Starting;
            s.pid = Some(pid);
        });
        let tail = Arc::new(Mutex::new(Tail::default()));
        let reader = child.0.stderr.take().and_then(|stderr| {
            let tail = tail.clone();
            thread::Builder::new()
                .name("ssh-stderr".into())
                .spawn(move || read_stderr(stderr, &tail))
                .ok()
        });
        let started = Instant::now();
        loop {
            let status = match child.0.try_wait() {
                Ok(None) => None,
                Ok(Some(status)) => Some(describe(status)),
                Err(e) => {
                    child.kill();
                    Some(format!("lost track of ssh: {e}"))
                }
            };
            if let Some(status) = status {
                if let Some(reader) = reader {
                    let deadline = Instant::now() + STDERR_DRAIN;
                    while !reader.is_finished() && Instant::now() < deadline {
                        thread::sleep(Duration::from_millis(10));
                    }
                }
                let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                return RunEnd::Exited {
                    status,
                    reason: reason(&tail.lines),
                };
            }
            let confirmed = {
                let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                tail.all_answered || tail.confirmed >= self.settings.forwards.len()
            };
            if confirmed || started.elapsed() >= self.settings.up_after {
                self.report(|s| s.phase = TunnelPhase::Up);
            }
            if self.shared.wait_for_stop(POLL) {
                child.terminate();
                return RunEnd::Stopped;
            }
        }
    }
}

/// Owns the ssh child so that it never outlives the supervisor, even if the supervisor panics.
struct ChildGuard(Child);

impl ChildGuard {
    /// SIGTERM first, so that ssh closes its connection cleanly and the SSH server frees the
    /// remote port at once; SIGKILL if it is still there after [`TERM_GRACE`]. SIGTERM is sent
    /// with the `kill` command because this crate forbids `unsafe` (no `libc::kill`), and
    /// std only sends SIGKILL. The pid cannot have been reused: the child is not reaped until
    /// `try_wait` or `wait` below reports it.
    fn terminate(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if sent {
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) | Err(_) = self.0.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.kill();
        }
    }
}

fn spawn_failure(program: &Path, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => format!(
            "cannot run `{}`: not found; install OpenSSH's client (`pkg install openssh` in \
             Termux, `apt install openssh-client` on Debian)",
            program.display()
        ),
        _ => format!("cannot run `{}`: {e}", program.display()),
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// What ssh said on stderr during one run.
#[derive(Default)]
struct Tail {
    /// The last [`TAIL_LINES`] non-empty lines that are not debug output.
    lines: VecDeque<String>,
    /// How many remote forwards the SSH server accepted.
    confirmed: usize,
    /// Whether ssh said that every forward got its answer.
    all_answered: bool,
}

/// Debug line ssh (`LogLevel=DEBUG1`) writes for each remote forward the server accepted.
const FORWARD_SUCCESS: &str = "debug1: remote forward success for:";
/// Debug line ssh writes once every forward has been answered (failures make it exit instead,
/// with `ExitOnForwardFailure=yes`).
const ALL_ANSWERED: &str = "all expected forwarding replies received";
/// Lines that never explain why ssh ended.
const NOISE: [&str; 4] = [
    "Warning: Permanently added",
    "Authenticated to ",
    "Transferred: ",
    "Bytes per second: ",
];

/// Reads ssh's stderr to its end into `tail`.
fn read_stderr(stderr: ChildStderr, tail: &Mutex<Tail>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // `take` bounds the memory a line without end could use; the rest comes as more lines.
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim().to_string();
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if text.starts_with(FORWARD_SUCCESS) {
            tail.confirmed += 1;
        } else if text.starts_with("debug1:") && text.ends_with(ALL_ANSWERED) {
            tail.all_answered = true;
        } else if !text.is_empty() && !text.starts_with("debug") {
            if tail.lines.len() == TAIL_LINES {
                tail.lines.pop_front();
            }
            tail.lines.push_back(text);
        }
    }
}

/// The last line of ssh's stderr that says why it ended.
fn reason(lines: &VecDeque<String>) -> Option<String> {
    lines
        .iter()
        .rev()
        .find(|line| !NOISE.iter().any(|noise| line.starts_with(noise)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_skips_notices() {
        let tail: VecDeque<String> = [
            "chat@host: Permission denied (publickey).",
            "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.",
            "Transferred: sent 3412, received 3148 bytes, in 1.1 seconds",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            reason(&tail).as_deref(),
            Some("chat@host: Permission denied (publickey).")
        );
        assert_eq!(reason(&VecDeque::new()), None);
    }
}

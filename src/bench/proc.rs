//! The server under test as a child process, and what `/proc` says about a process: CPU seconds
//! and resident memory. A child keeps the server's CPU and memory apart from the generator's.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clock ticks per second in `/proc/PID/stat` (USER_HZ, 100 on every Linux ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Memory of a process from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// Highest resident so far (`VmHWM`).
    pub peak_kib: u64,
    /// Threads.
    pub threads: u64,
}

/// Reads a process's memory figures.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
    })
}

/// Open file descriptors of a process (the entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.count() as u64)
}

/// How to start the server under test.
pub struct Launch {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Wait for this line before going on (the admin has joined), if any.
    pub ready_line: Option<&'static str>,
}

/// A running child server.
pub struct ChildServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its process id.
    pub pid: u32,
    /// The address it listens on, as printed.
    pub addr: String,
    /// `https://` was printed: it serves TLS.
    pub tls: bool,
    /// The certificate fingerprint it printed, if self-signed.
    pub fingerprint: Option<String>,
    /// What the operator's prompt showed.
    pub prompt: Arc<PromptCount>,
    /// When it was started.
    pub started: Instant,
}

/// Counts of the lines the server's prompt printed.
#[derive(Default)]
pub struct PromptCount {
    /// `@all` messages shown.
    pub all_lines: AtomicU64,
    /// Lines saying the prompt fell behind.
    pub behind: AtomicU64,
    /// When the last `@all` line came, in µs after start.
    pub last_all_us: AtomicU64,
    /// Notices worth reporting (refused messages, errors), the first few.
    pub notes: Mutex<Vec<String>>,
}

/// Why the child server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// It could not be started.
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    /// It ended or said something else before it was ready.
    #[error("the server did not start: {0}")]
    NotReady(String),
}

impl ChildServer {
    /// Starts the server and waits (at most `limit`) until it prints its address and, when
    /// asked, the ready line.
    pub fn start(launch: &Launch, limit: Duration) -> Result<Self, ChildError> {
        let started = Instant::now();
        let mut child = Command::new(&launch.program)
            .args(&launch.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ChildError::Spawn(launch.program.display().to_string(), e))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let prompt = Arc::new(PromptCount::default());
        let counts = prompt.clone();
        let err_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = err_tx.send(format!("stderr: {line}"));
            }
        });
        std::thread::spawn(move || {
            let mut forward = true;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                counts.count(&line, started);
                if forward && tx.send(line).is_err() {
                    forward = false;
                }
            }
        });
        let mut server = Self {
            child,
            stdin,
            pid,
            addr: String::new(),
            tls: false,
            fingerprint: None,
            prompt,
            started,
        };
        let mut said = Vec::new();
        let mut expect_fingerprint = false;
        loop {
            let left = limit.saturating_sub(started.elapsed());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    server.kill();
                    return Err(ChildError::NotReady(if said.is_empty() {
                        "no output".into()
                    } else {
                        said.join(" | ")
                    }));
                }
            };
            if let Some(rest) = line.split_once("listening on ").map(|(_, r)| r) {
                server.tls = rest.starts_with("https://");
                server.addr = rest
                    .split("://")
                    .nth(1)
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_string();
            } else if line.contains("fingerprint is") {
                expect_fingerprint = true;
            } else if expect_fingerprint {
                server.fingerprint = Some(line.trim().to_string());
                expect_fingerprint = false;
            }
            if said.len() < 8 {
                said.push(line.clone());
            }
            let ready = match launch.ready_line {
                Some(needle) => line.contains(needle),
                None => true,
            };
            if !server.addr.is_empty() && ready && !expect_fingerprint {
                return Ok(server);
            }
        }
    }

    /// Asks the server to stop as its operator would (`/quit`), then waits; kills it if it
    /// takes longer than `limit`.
    pub fn stop(mut self, limit: Duration) -> bool {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"/quit\n");
        }
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        false
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

impl PromptCount {
    fn count(&self, line: &str, started: Instant) {
        if line.contains(" → @all: ") {
            self.all_lines.fetch_add(1, Ordering::Relaxed);
            self.last_all_us
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        } else if line.contains("fell behind") {
            self.behind.fetch_add(1, Ordering::Relaxed);
            self.note(line);
        } else if line.contains("refused") || line.contains("! ") {
            self.note(line);
        }
    }

    fn note(&self, line: &str) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if notes.len() < 5 {
            notes.push(line.to_string());
        }
    }
}

/// The server to start: `dyspatcher` beside this executable (the load generator), else this one.
pub fn this_executable() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    // The load generator is its own executable; the server is `dyspatcher` beside it.
    let server = me.with_file_name(format!("dyspatcher{}", std::env::consts::EXE_SUFFIX));
    Some(if server.exists() { server } else { me })
}

/// Counts the lines of a file (the transcript), if it can be read.
pub fn count_lines(path: &Path, needle: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().filter(|l| l.contains(needle)).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        let m = memory(pid).unwrap();
        assert!(m.rss_kib > 0 && m.peak_kib >= m.rss_kib && m.threads >= 1);
        assert!(cpu_seconds(u32::MAX).is_none());
        // Standard input, output and error at least; none for a process that does not exist.
        assert!(open_fds(pid).unwrap() >= 3);
        assert!(open_fds(u32::MAX).is_none());
    }
}

//! The real executable as a child process: its output read line by line as it comes, its prompt
//! fed through stdin, signals sent with `kill`. Waits are for lines and exits, with time limits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest wait for a line or an exit.
const LIMIT: Duration = Duration::from_secs(15);

pub struct Child {
    proc: std::process::Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Every line printed so far.
    pub seen: Vec<String>,
}

/// A fresh folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `dyspatcher ARGS` to its end; returns its exit code, stdout and stderr.
pub fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dyspatcher"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Child {
    /// Starts the server with `args`; `home` is its `DYSPATCHER_HOME` (never the real one).
    pub fn start(args: &[&str], home: &Path) -> Child {
        let mut proc = Command::new(env!("CARGO_BIN_EXE_dyspatcher"))
            .args(args)
            .env("DYSPATCHER_HOME", home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = proc.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (tx, stderr) = mpsc::channel();
        let mut err = proc.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = err.read_to_string(&mut all);
            let _ = tx.send(all);
        });
        Child {
            proc,
            lines,
            stderr,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// The next line printed.
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(LIMIT) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(e) => panic!("no more output ({e}); so far:\n{}", self.seen.join("\n")),
        }
    }

    /// Waits for a printed line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            let line = self.next_line();
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The `host:port` of the banner's `listening on` line.
    pub fn addr(&mut self) -> String {
        let line = self.wait_for("listening on ");
        line.split("://")
            .nth(1)
            .unwrap()
            .trim_end_matches('/')
            .to_string()
    }

    /// Types a line at the prompt.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.proc.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Sends `signal` (`USR1`, `TERM`) to the server.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits for the process to end; returns how, the rest of its output, and its stderr.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.proc.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.proc.kill();
                panic!("the server did not end; output:\n{}", self.seen.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        let stderr = self.stderr.recv_timeout(LIMIT).unwrap_or_default();
        (status, rest, stderr)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

//! The operator's output: lines for the prompt's printer (bounded in bytes: a terminal that
//! stops reading cannot make the server keep them all) and the transcript (every line, always).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{clock, iso_time};
use crate::transcript::Transcript;

/// Bytes of lines waiting for the terminal at most; past it lines are not shown (they are still
/// transcribed) and the next line shown says how many were left out.
pub const OUTPUT_BYTES: usize = 4 * 1024 * 1024;
/// Lines waiting for the terminal at most.
const OUTPUT_LINES: usize = 8192;

/// A line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Shown and written to the transcript.
    Show(String),
    /// Shown only, never written anywhere (private key export).
    Secret(String),
}

impl Line {
    fn len(&self) -> usize {
        match self {
            Line::Show(s) | Line::Secret(s) => s.len(),
        }
    }
}

/// Where operator output goes: the prompt's printer and the transcript.
#[derive(Clone)]
pub struct Output {
    tx: async_channel::Sender<Line>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    transcript: Option<Arc<Mutex<Transcript>>>,
}

/// The terminal's end of an [`Output`]: what it takes no longer counts against
/// [`OUTPUT_BYTES`].
#[derive(Clone)]
pub struct Lines {
    rx: async_channel::Receiver<Line>,
    queued: Arc<AtomicUsize>,
}

impl Lines {
    fn taken(&self, line: Line) -> Line {
        self.queued.fetch_sub(line.len(), Ordering::AcqRel);
        line
    }

    /// The next line, waiting for it.
    pub async fn recv(&self) -> Result<Line, async_channel::RecvError> {
        self.rx.recv().await.map(|l| self.taken(l))
    }

    /// The next line, blocking the thread until there is one.
    pub fn recv_blocking(&self) -> Result<Line, async_channel::RecvError> {
        self.rx.recv_blocking().map(|l| self.taken(l))
    }

    /// The next line if there is one.
    pub fn try_recv(&self) -> Result<Line, async_channel::TryRecvError> {
        self.rx.try_recv().map(|l| self.taken(l))
    }
}

impl Output {
    /// An output writing to `transcript` too; the receiver feeds the terminal.
    pub fn new(transcript: Option<Transcript>) -> (Self, Lines) {
        let (tx, rx) = async_channel::bounded(OUTPUT_LINES);
        let queued = Arc::new(AtomicUsize::new(0));
        let transcript = transcript.map(|t| Arc::new(Mutex::new(t)));
        let out = Self {
            tx,
            queued: queued.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
            transcript,
        };
        (out, Lines { rx, queued })
    }

    /// Queues `line` for the terminal if it fits (after saying how many did not, if any).
    fn send(&self, line: Line) {
        let dropped = self.dropped.swap(0, Ordering::AcqRel);
        if dropped > 0 {
            let note = Line::Show(format!(
                "! {dropped} line(s) not shown: the terminal fell behind (the transcript has them)"
            ));
            if !self.push(note) {
                self.dropped.fetch_add(dropped, Ordering::AcqRel);
            }
        }
        if !self.push(line) {
            self.dropped.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn push(&self, line: Line) -> bool {
        let len = line.len();
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > OUTPUT_BYTES {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        if self.tx.try_send(line).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Shows a line, stamped with the time, and writes it to the transcript.
    pub fn show(&self, text: String) {
        let now = crate::protocol::now_ms();
        if let Some(t) = &self.transcript {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = t.line(&iso_time(now), &text) {
                self.send(Line::Show(format!("! transcript write failed: {e}")));
            }
        }
        self.send(Line::Show(format!("[{}] {text}", clock(now))));
    }

    /// Shows a notice.
    pub fn notice(&self, text: String) {
        self.show(format!("* {text}"));
    }

    /// Shows text that must never reach the transcript or a log.
    pub fn secret(&self, text: String) {
        self.send(Line::Secret(text));
    }

    /// Shows a reply to a command (not a chat event): not timestamped, but transcribed.
    pub fn reply(&self, text: String) {
        if let Some(t) = &self.transcript {
            let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
            let _ = t.line(&iso_time(crate::protocol::now_ms()), &text);
        }
        self.send(Line::Show(text));
    }

    /// Overwrites and deletes the transcript (the panic stop); nothing is written to it after.
    /// None without a transcript.
    pub fn erase_transcript(&self) -> Option<Result<u64, String>> {
        let t = self.transcript.as_ref()?;
        let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
        Some(t.erase())
    }

    /// No more output. The operator is shown the transcript's last hash, to note down: lines cut
    /// from its end are told from a complete one only by that.
    pub fn close(&self) {
        if let Some(t) = &self.transcript {
            let t = t.lock().unwrap_or_else(|e| e.into_inner());
            if !t.erased() {
                let (lines, last) = t.head();
                self.send(Line::Show(format!(
                    "transcript {}: {lines} lines, last hash {last}",
                    t.path().display()
                )));
            }
        }
        self.tx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_the_terminal_does_not_read_stop_at_the_byte_bound_and_are_counted() {
        let (out, lines) = Output::new(None);
        let line = "x".repeat(64 * 1024);
        for _ in 0..100 {
            out.reply(line.clone());
        }
        let kept = OUTPUT_BYTES / line.len();
        assert_eq!(out.queued.load(Ordering::Acquire), kept * line.len());
        assert_eq!(out.dropped.load(Ordering::Acquire), 100 - kept as u64);
        let mut taken = 0;
        while lines.try_recv().is_ok() {
            taken += 1;
        }
        assert_eq!((taken, out.queued.load(Ordering::Acquire)), (kept, 0));
        // The next line shown says how many were left out.
        out.reply("after".into());
        let note = lines.try_recv().unwrap();
        assert_eq!(
            note,
            Line::Show(format!(
                "! {} line(s) not shown: the terminal fell behind (the transcript has them)",
                100 - kept
            ))
        );
        assert_eq!(lines.try_recv().unwrap(), Line::Show("after".into()));
    }
}

//! The panic stop (`--panic`, off by default): on `/panic` at the prompt or SIGUSR1, every chat
//! connection is closed at once (close code 4007), the hub forgets every member and mailbox, the
//! transcript and the self-signed TLS state are overwritten and deleted (the admin key file too
//! with `--panic-deletes-key`), and the process exits with [`EXIT_ERASED`] or
//! [`EXIT_INCOMPLETE`]. It asks nothing: in danger one command must do it.

pub mod wipe;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::hub;
use crate::server::Ctx;

/// Exit code after a panic stop that erased everything it was to erase.
pub const EXIT_ERASED: i32 = 3;
/// Exit code after a panic stop that could not erase something (the message says what).
pub const EXIT_INCOMPLETE: i32 = 4;
/// Longest wait for the hub to take the panic (it is busy with one event at most).
const HUB_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for connections to write their close frame before the process exits (the exit
/// cuts the ones still writing).
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// What `/panic` and SIGUSR1 answer when the panic stop is off.
pub const OFF: &str =
    "the panic stop is off: start the server with --panic to enable /panic and SIGUSR1";

/// What a panic stop erases besides the transcript.
#[derive(Debug, Clone, Default)]
pub struct PanicSettings {
    /// The admin's key file, with `--panic-deletes-key`.
    pub admin_key: Option<PathBuf>,
    /// The folder where self-signed certificates are kept (`$DYSPATCHER_HOME/tls`).
    pub tls_dir: Option<PathBuf>,
    /// The daemon's pid file.
    pub pid_file: Option<PathBuf>,
}

/// Starts the panic stop; a button that does nothing when the stop is off.
#[derive(Clone)]
pub struct Button {
    tx: Option<async_channel::Sender<&'static str>>,
}

/// The other end of an armed [`Button`].
pub struct Pressed(async_channel::Receiver<&'static str>);

impl Button {
    /// A button, armed when `on`; arm it with [`watch`].
    pub fn new(on: bool) -> (Self, Option<Pressed>) {
        if !on {
            return (Self { tx: None }, None);
        }
        let (tx, rx) = async_channel::bounded(1);
        (Self { tx: Some(tx) }, Some(Pressed(rx)))
    }

    /// Whether the panic stop is on.
    pub fn armed(&self) -> bool {
        self.tx.is_some()
    }

    /// Starts the panic stop, saying what pressed it; false (and nothing happens) when it is off.
    pub fn press(&self, by: &'static str) -> bool {
        match &self.tx {
            Some(tx) => {
                let _ = tx.try_send(by);
                true
            }
            None => false,
        }
    }
}

/// Waits, on its own thread, for the button; then stops everything and ends the process. The
/// thread ends with the server when the button is never pressed.
pub fn watch(pressed: Pressed, settings: PanicSettings, ctx: Weak<Ctx>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("dyspatcher-panic".into())
        .spawn(move || {
            let Ok(by) = pressed.0.recv_blocking() else {
                return;
            };
            if let Some(ctx) = ctx.upgrade() {
                stop_now(&ctx, &settings, by);
            }
        })
        .map(drop)
}

/// What a panic stop did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What was erased, for the last message.
    pub erased: Vec<String>,
    /// What was kept on purpose.
    pub kept: Vec<String>,
    /// What could not be done.
    pub failed: Vec<String>,
}

impl Outcome {
    /// The last message and the exit code.
    pub fn summary(&self, by: &str) -> (String, i32) {
        let list = |v: &[String]| {
            if v.is_empty() {
                "nothing".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut text = format!(
            "dyspatcher: panic stop ({by}): every connection closed, all members and mailboxes \
             dropped; erased: {}; kept: {}",
            list(&self.erased),
            list(&self.kept)
        );
        if self.failed.is_empty() {
            return (text, EXIT_ERASED);
        }
        for f in &self.failed {
            text += &format!("\ndyspatcher: panic stop: NOT DONE: {f}");
        }
        (text, EXIT_INCOMPLETE)
    }
}

/// Closes everything and erases the files, without waiting for anyone; returns what it did.
fn erase_everything(ctx: &Arc<Ctx>, settings: &PanicSettings) -> Outcome {
    ctx.stop_accepting();
    let mut out = Outcome::default();
    // The hub closes every chat connection with 4007 and forgets every member and mailbox.
    let told = smol::block_on(crate::conn::timeout(
        HUB_WAIT,
        ctx.hub.send(hub::Event::Panic),
    ));
    if told.is_none_or(|r| r.is_err()) {
        out.failed
            .push("the hub did not take the panic: connections are cut by the exit".into());
    }
    match ctx.out.erase_transcript() {
        None => {}
        Some(Ok(_)) => out.erased.push("the transcript".into()),
        Some(Err(e)) => out.failed.push(format!("the transcript: {e}")),
    }
    if let Some(dir) = &settings.tls_dir {
        let done = wipe::erase_self_signed(dir);
        let ok = done.iter().filter(|(_, r)| r.is_ok()).count();
        if ok > 0 {
            out.erased.push(format!(
                "{ok} self-signed certificate and key file(s) in {}",
                dir.display()
            ));
        }
        out.failed.extend(
            done.into_iter()
                .filter_map(|(_, r)| r.err())
                .map(|e| format!("TLS state: {e}")),
        );
    }
    match &settings.admin_key {
        Some(path) => match wipe::erase_file(path) {
            Ok(_) => out.erased.push("the admin key file".into()),
            Err(e) => out.failed.push(format!("the admin key: {e}")),
        },
        None => out.kept.push("the admin key file".into()),
    }
    if let Some(pid) = &settings.pid_file {
        let _ = std::fs::remove_file(pid);
    }
    out
}

/// The panic stop: erases, waits a moment for the close frames, clears the terminal, exits.
fn stop_now(ctx: &Arc<Ctx>, settings: &PanicSettings, by: &str) -> ! {
    let outcome = erase_everything(ctx, settings);
    smol::block_on(ctx.drained(CLOSE_WAIT));
    let (text, code) = outcome.summary(by);
    let mut stdout = std::io::stdout();
    if stdout.is_terminal() {
        // Clear the screen and the scrollback (xterm-compatible terminals honour this), and end
        // bracketed paste.
        let _ = stdout.write_all(b"\x1b[?2004l\x1b[H\x1b[2J\x1b[3J");
        let _ = stdout.flush();
    }
    if std::io::stdin().is_terminal() {
        // The prompt's line editor had the terminal in raw mode: give the shell back a usable
        // one (the exit skips the editor's own restore).
        let _ = std::process::Command::new("stty").arg("sane").status();
    }
    eprintln!("{text}");
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unarmed_button_does_nothing() {
        let (off, pressed) = Button::new(false);
        assert!(pressed.is_none() && !off.armed() && !off.press("test"));
        let (on, pressed) = Button::new(true);
        assert!(on.armed() && on.press("SIGUSR1") && on.press("again"));
        let pressed = pressed.unwrap();
        assert_eq!(pressed.0.try_recv(), Ok("SIGUSR1"));
    }

    #[test]
    fn the_summary_says_what_was_kept_and_what_failed() {
        let mut o = Outcome {
            erased: vec!["the transcript".into()],
            kept: vec!["the admin key file".into()],
            failed: vec![],
        };
        let (text, code) = o.summary("SIGUSR1");
        assert_eq!(code, EXIT_ERASED);
        assert!(
            text.contains("(SIGUSR1)")
                && text.contains("erased: the transcript; kept: the admin key file"),
            "{text}"
        );
        o.failed.push("the admin key: `k`: cannot erase it".into());
        let (text, code) = o.summary("/panic");
        assert_eq!(code, EXIT_INCOMPLETE);
        assert!(text.contains("NOT DONE: the admin key"), "{text}");
    }

    #[test]
    fn only_the_exact_command_panics() {
        use crate::admin::{parse, Command};
        assert_eq!(parse("/panic"), Ok(Command::Panic));
        assert_eq!(parse("  /panic  "), Ok(Command::Panic));
        for typo in [
            "/panic now",
            "/pani",
            "/panik",
            "/PANIC",
            "/p",
            "panic",
            "@all /panic",
        ] {
            assert_ne!(parse(typo), Ok(Command::Panic), "{typo}");
        }
    }
}

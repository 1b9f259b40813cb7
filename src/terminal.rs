//! The terminal: the admin prompt of a running server (rustyline with an external printer so
//! incoming lines never garble what is being typed; plain lines when stdin is not a terminal) and
//! the `dyspatcher connect` chat client.

mod connect;

use std::io::{BufRead, IsTerminal, Write};

use crate::console::Line;
use crate::server::Running;

pub use connect::{connect, print_event};

/// Prints operator output until the server stops, with the prompt on a terminal.
pub fn run_prompt(running: Running) {
    let output = running.output.clone();
    let prompt = running.prompt.clone();
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // The line editor puts the terminal in raw mode while it waits for a line, and it is still
    // waiting when the server stops: the mode is put back as it was before leaving.
    let saved = interactive.then(TermMode::save).flatten();
    let mut editor = None;
    let printer: Box<dyn FnMut(String) + Send> = if interactive {
        match rustyline::DefaultEditor::new() {
            Ok(mut rl) => match rl.create_external_printer() {
                Ok(mut p) => {
                    editor = Some(rl);
                    Box::new(move |s| {
                        use rustyline::ExternalPrinter;
                        let _ = p.print(format!("{s}\n"));
                    })
                }
                Err(_) => Box::new(plain_print),
            },
            Err(_) => Box::new(plain_print),
        }
    } else {
        Box::new(plain_print)
    };
    let printer_thread = std::thread::spawn(move || {
        let mut printer = printer;
        // Lines that queued up meanwhile go out together: one write (and one redraw of the
        // prompt) for a burst, not one per line.
        while let Ok(first) = output.recv_blocking() {
            let mut text = line_text(first);
            while let Ok(next) = output.try_recv() {
                if text.len() >= PRINT_BATCH_BYTES {
                    break;
                }
                text.push('\n');
                text.push_str(&line_text(next));
            }
            printer(text);
        }
    });
    match editor {
        Some(mut rl) => {
            std::thread::spawn(move || loop {
                match rl.readline("> ") {
                    Ok(line) => {
                        let _ = rl.add_history_entry(line.as_str());
                        if prompt.send_blocking(line).is_err() {
                            return;
                        }
                    }
                    // Ctrl-C, Ctrl-D or a closed terminal: stop the server gracefully.
                    Err(_) => {
                        let _ = prompt.send_blocking("/quit".into());
                        return;
                    }
                }
            });
        }
        None => {
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { return };
                    if prompt.send_blocking(line).is_err() {
                        return;
                    }
                }
                // End of input is not a quit: a server started with </dev/null keeps running.
            });
        }
    }
    running.wait();
    let _ = printer_thread.join();
    if let Some(mode) = saved {
        mode.restore();
    }
}

/// The terminal's mode of standard input, as `stty -g` prints it (the crate forbids unsafe code,
/// so no termios calls here).
struct TermMode(String);

impl TermMode {
    fn save() -> Option<Self> {
        let out = std::process::Command::new("stty")
            .arg("-g")
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let mode = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !mode.is_empty()).then_some(Self(mode))
    }

    fn restore(&self) {
        let _ = std::process::Command::new("stty")
            .arg(&self.0)
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// What is printed at start: the URLs to open, the certificate's fingerprint, a QR code.
pub fn banner(addr: std::net::SocketAddr, tls: Option<&crate::config::Tls>) -> String {
    let urls = crate::onboard::urls(addr, tls.is_some());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut out = format!(
        "dyspatcher {} listening on {scheme}://{addr}/",
        env!("CARGO_PKG_VERSION")
    );
    if addr.ip().is_unspecified() {
        out += "\nopen one of these in a browser:";
        for u in &urls {
            out += &format!("\n  {u}");
        }
    }
    if let Some((dir, reused)) = tls.and_then(|t| t.kept_in.as_ref()) {
        let how = if *reused {
            "the same as last time, kept in"
        } else {
            "new, kept for the next starts in"
        };
        out += &format!("\nself-signed certificate: {how} {}", dir.display());
    }
    if let Some(cert) = tls.and_then(|t| t.self_signed.as_ref()) {
        out += &format!(
            "\nself-signed certificate; browsers will ask you to accept it. Check that its SHA-256 \
             fingerprint is\n  {}",
            cert.fingerprint
        );
    }
    // A QR code helps phones in the room, which cannot reach a loopback address anyway.
    if std::io::stdout().is_terminal() && !addr.ip().is_loopback() {
        if let Some(code) = urls.first().and_then(|u| crate::onboard::qr(u)) {
            out += &format!("\n{code}");
        }
    }
    out
}

/// Turns SIGTERM and SIGINT into a graceful stop; SIGHUP stops a daemon (as in Dyspatcher) and
/// makes an interactive server re-read its allow list; SIGUSR1 is the panic stop with `--panic`,
/// and is ignored (with a notice) without.
pub fn handle_signals(running: &Running, daemon: bool) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
    else {
        return;
    };
    let stop = running.stopper();
    let prompt = running.prompt.clone();
    let (panic, out) = (running.panic_button(), running.output());
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGUSR1 {
                if !panic.press("SIGUSR1") {
                    out.notice(format!("SIGUSR1 ignored: {}", crate::panic::OFF));
                }
            } else if signal == SIGHUP && !daemon {
                let _ = prompt.send_blocking("/reload".into());
            } else {
                let _ = stop.try_send(());
            }
        }
    });
}

/// Runs without a terminal: everything goes to the transcript.
pub fn run_headless(running: Running) {
    let output = running.output.clone();
    let drain = std::thread::spawn(move || while output.recv_blocking().is_ok() {});
    running.wait();
    let _ = drain.join();
}

/// Most bytes of queued lines printed in one write.
const PRINT_BATCH_BYTES: usize = 64 * 1024;

fn line_text(line: Line) -> String {
    match line {
        Line::Show(s) | Line::Secret(s) => s,
    }
}

fn plain_print(s: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

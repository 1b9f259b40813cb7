//! The terminal: the admin prompt of a running server (rustyline with an external printer so
//! incoming lines never garble what is being typed; plain lines when stdin is not a terminal) and
//! the `dyspatcher connect` chat client.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use futures_lite::future;

use crate::admin::{self, Command};
use crate::cli::ConnectArgs;
use crate::client::{Client, ClientError};
use crate::console::{self, Line};
use crate::crypto::Identity;
use crate::server::Running;
use crate::session::Event;

/// Prints operator output until the server stops, with the prompt on a terminal.
pub fn run_prompt(running: Running) {
    let output = running.output.clone();
    let prompt = running.prompt.clone();
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
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
        while let Ok(line) = output.recv_blocking() {
            match line {
                Line::Show(s) | Line::Secret(s) => printer(s),
            }
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
/// makes an interactive server re-read its allow list.
pub fn handle_signals(running: &Running, daemon: bool) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) else {
        return;
    };
    let stop = running.stopper();
    let prompt = running.prompt.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGHUP && !daemon {
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

fn plain_print(s: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// Runs `dyspatcher connect`; returns the process exit code.
pub fn connect(args: ConnectArgs) -> i32 {
    let identity = match &args.key {
        Some(path) => match crate::config::load_key(path) {
            Ok(id) => id,
            Err(e) => {
                eprintln!(
                    "dyspatcher: {}",
                    e.to_string().replace("--admin-private-key", "--key")
                );
                return 2;
            }
        },
        None => {
            eprintln!("generating a {}-bit key for this session…", args.bits);
            match Identity::generate(args.bits) {
                Ok(id) => id,
                Err(e) => {
                    eprintln!("dyspatcher: --bits: {e}");
                    return 2;
                }
            }
        }
    };
    match smol::block_on(chat(&args, Arc::new(identity))) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dyspatcher: {e}");
            1
        }
    }
}

async fn chat(args: &ConnectArgs, identity: Arc<Identity>) -> Result<(), ClientError> {
    let tls = if args.url.starts_with("wss://") {
        let config =
            crate::tls::client_config(args.fingerprint.as_deref(), args.ca_file.as_deref())
                .map_err(|e| ClientError::Url(format!("{}: {e}", args.url)))?;
        Some(config)
    } else {
        None
    };
    let mut client = Client::connect(&args.url, &args.name, identity, tls).await?;
    let me = client.session().name().unwrap_or(&args.name).to_string();
    println!(
        "joined as {me} ({}); {} member(s) online. Type @NAME text, @all text, /users, /quit.",
        &client.session().key_id()[..12],
        client.session().members().len()
    );
    let (tx, lines) = async_channel::bounded::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send_blocking(line).is_err() {
                return;
            }
        }
    });
    loop {
        enum Step {
            Msg(Result<crate::protocol::ServerMsg, ClientError>),
            Line(Option<String>),
        }
        let step = future::or(async { Step::Msg(client.recv_msg().await) }, async {
            Step::Line(lines.recv().await.ok())
        })
        .await;
        match step {
            Step::Msg(msg) => {
                for event in client.process(msg?).await? {
                    print_event(&client, event);
                }
            }
            // End of input: stay to read what arrives (a piped client keeps listening).
            Step::Line(None) => loop {
                let msg = client.recv_msg().await?;
                for event in client.process(msg).await? {
                    print_event(&client, event);
                }
            },
            Step::Line(Some(line)) => match admin::parse(&line) {
                Ok(Command::Send { to, text }) => {
                    let sent = match &to {
                        Some(name) => client.send_direct(name, &text).await,
                        None => client.send_all(&text).await,
                    };
                    match sent {
                        Ok(_) => println!(
                            "[{}] {me} → {}: {text}",
                            console::clock(crate::protocol::now_ms()),
                            to.as_deref().unwrap_or("@all")
                        ),
                        Err(ClientError::Send(e)) => println!("not sent: {e}"),
                        Err(e) => return Err(e),
                    }
                }
                Ok(Command::Users) => println!("{}", admin::users(client.session())),
                Ok(Command::Quit) => {
                    client.close().await;
                    return Ok(());
                }
                Ok(Command::Empty) => {}
                Ok(Command::Help) => println!("@NAME text, @all text, /users, /quit"),
                Ok(_) => println!("not available here; use @NAME text, @all text, /users, /quit"),
                Err(e) => println!("{e}"),
            },
        }
    }
}

fn print_event(client: &Client, event: Event) {
    let now = console::clock(crate::protocol::now_ms());
    match event {
        Event::Message(m) => println!("[{now}] {}", console::describe(client.session(), &m)),
        Event::Joined(m) => println!("[{now}] * {} ({}) joined", m.name, &m.key_id[..12]),
        Event::Left { name, reason, .. } => println!("[{now}] * {name} left ({reason})"),
        Event::Rejected { from_name, reason } => {
            println!("[{now}] ! a message from {from_name} was refused: {reason}")
        }
        Event::Notice { text, .. } => println!("[{now}] * {text}"),
        Event::Error { message, .. } => println!("[{now}] ! the server refused: {message}"),
        Event::Presence { name, state, .. } => {
            let state = match state {
                crate::protocol::Presence::Online => "is back online",
                crate::protocol::Presence::Away => "is away",
            };
            println!("[{now}] * {name} {state}")
        }
        Event::Gap { dropped, .. } => {
            println!("[{now}] ! {dropped} message(s) kept for you were dropped while you were away")
        }
        Event::Welcome { .. } | Event::Ack(_) | Event::Delivery { .. } => {}
    }
}

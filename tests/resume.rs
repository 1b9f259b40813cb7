//! The Rust client across dropped connections: frames cut off in flight come again exactly once
//! and in order after a resume, messages sent but never answered are sent again and arrive once,
//! presence and delivery states reach the sender, and `dyspatcher connect` reconnects and resumes
//! through a cut connection but stops for good after a takeover or a kick.
mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use dyspatcher::client::Client;
use dyspatcher::protocol::{DeliveryState, Presence};
use dyspatcher::session::{Destination, Event};

fn fast_server() -> TestServer {
    start(|c| {
        c.limits.rate_per_sec = 10_000;
        c.limits.burst = 20_000;
    })
}

/// Reads `c`'s events until `done` says so, panicking on refused messages and errors.
async fn until(c: &mut Client, what: &str, mut done: impl FnMut(&Event) -> bool) {
    within(20, what, async {
        loop {
            let e = c.next_event().await.expect("connection alive");
            match &e {
                Event::Rejected { reason, .. } => panic!("{what}: a message was refused: {reason}"),
                Event::Error { message, .. } => panic!("{what}: the server refused: {message}"),
                _ => {}
            }
            if done(&e) {
                return;
            }
        }
    })
    .await
}

/// Sends message `i`: every third to everyone, the others to bob.
async fn send_one(alice: &mut Client, i: usize) -> (String, String) {
    let text = format!("message {i}");
    let id = if i % 3 == 0 {
        alice.send_all(&text).await.unwrap()
    } else {
        alice.send_direct("bobby", &text).await.unwrap()
    };
    (id, text)
}

#[test]
fn five_hundred_messages_cut_off_in_the_middle_arrive_once_and_in_order_after_a_resume() {
    smol::block_on(async {
        let server = fast_server();
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        let mut sent = Vec::new();
        for i in 0..250 {
            sent.push(send_one(&mut alice, i).await);
        }
        let mut got: Vec<(String, String, bool)> = Vec::new();
        let note = |got: &mut Vec<_>, e: &Event| {
            if let Event::Message(m) = e {
                got.push((m.id.clone(), m.text.clone(), m.to == Destination::All));
            }
            got.len()
        };
        until(&mut bob, "the first 200 messages", |e| {
            note(&mut got, e) == 200
        })
        .await;
        // The rest is in flight or on its way: cut the connection with no close frame.
        bob.sever();
        // What was already read from the socket before the cut still comes out.
        within(10, "the cut to show", async {
            while let Ok(e) = bob.next_event().await {
                note(&mut got, &e);
            }
        })
        .await;
        let since = bob.last_seq();
        // And the second half is sent while bob is cut off.
        for i in 250..500 {
            sent.push(send_one(&mut alice, i).await);
        }
        let resumed = within(10, "the resume", bob.resume()).await.unwrap();
        assert!(resumed, "the membership was not resumed");
        until(&mut bob, "the other 300 messages", |e| {
            note(&mut got, e) >= 500
        })
        .await;
        assert!(bob.last_seq() > since);
        let ids: Vec<&str> = got.iter().map(|(id, _, _)| id.as_str()).collect();
        let want: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, want, "not every message exactly once and in order");
        assert!(got.iter().zip(&sent).all(|(g, s)| g.1 == s.1));
        assert_eq!(got.iter().filter(|g| g.2).count(), 167);
        // Nothing more: the sentinel is the next message.
        alice.send_direct("bobby", "sentinel").await.unwrap();
        assert_eq!(next_message(&mut bob).await.text, "sentinel");
    });
}

#[test]
fn messages_sent_but_never_answered_are_sent_again_after_a_resume_and_arrive_once() {
    smol::block_on(async {
        let server = fast_server();
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        let mut ids = HashSet::new();
        // The keys first: fetching them reads the connection, and the acks below must not be.
        let everyone = alice.session().missing_for_all();
        alice.fetch_keys(everyone).await.unwrap();
        // Written before the cut: the server gets them, their acks are never read.
        for i in 0..10 {
            ids.insert(
                alice
                    .send_direct("bobby", &format!("before {i}"))
                    .await
                    .unwrap(),
            );
        }
        ids.insert(alice.send_all("before, to all").await.unwrap());
        alice.sever();
        // Sealed after the cut: the write fails, the client keeps them.
        for i in 0..5 {
            assert!(alice
                .send_direct("bobby", &format!("after {i}"))
                .await
                .is_err());
        }
        // 15 direct messages, the @all and the sender key that went before it.
        assert_eq!(alice.unanswered(), 17, "not every message kept");
        assert!(within(10, "the resume", alice.resume()).await.unwrap());
        // Every kept message is answered: an ack, or duplicate_id counted as one (never shown as
        // an error).
        let mut acked = HashSet::new();
        within(20, "answers to every message", async {
            while alice.unanswered() > 0 {
                match alice.next_event().await.expect("connection alive") {
                    Event::Ack(id) => {
                        acked.insert(id);
                    }
                    Event::Error { message, .. } => panic!("the server refused: {message}"),
                    _ => {}
                }
            }
        })
        .await;
        assert!(ids.is_subset(&acked), "{ids:?} {acked:?}");
        let mut texts = Vec::new();
        until(&mut bob, "16 messages", |e| {
            if let Event::Message(m) = e {
                texts.push(m.text.clone());
            }
            texts.len() == 16
        })
        .await;
        let unique: HashSet<&String> = texts.iter().collect();
        assert_eq!(unique.len(), 16, "{texts:?}");
        alice.send_direct("bobby", "sentinel").await.unwrap();
        assert_eq!(next_message(&mut bob).await.text, "sentinel");
    });
}

#[test]
fn the_sender_sees_presence_and_held_then_delivered_and_a_lapsed_member_starts_over() {
    smol::block_on(async {
        let server = start(|c| c.limits.away_grace = Duration::from_secs(2));
        server.admin_ready().await;
        let k = keys(2);
        let mut alice = server.join("alice", &k[0]).await;
        let mut bob = server.join("bobby", &k[1]).await;
        wait_joined(&mut alice, "bobby").await;
        let first = alice.send_direct("bobby", "while online").await.unwrap();
        assert_eq!(next_message(&mut bob).await.text, "while online");
        bob.ack().await.unwrap();
        until(&mut alice, "delivered", |e| {
            matches!(e, Event::Delivery { id, state: DeliveryState::Delivered, .. } if *id == first)
        })
        .await;
        bob.sever();
        until(
            &mut alice,
            "bob away",
            |e| matches!(e, Event::Presence { name, state: Presence::Away, .. } if name == "bobby"),
        )
        .await;
        let held = alice.send_direct("bobby", "while away").await.unwrap();
        until(
            &mut alice,
            "held",
            |e| matches!(e, Event::Delivery { id, state: DeliveryState::Held, .. } if *id == held),
        )
        .await;
        assert!(bob.resume().await.unwrap());
        assert_eq!(next_message(&mut bob).await.text, "while away");
        bob.ack().await.unwrap();
        until(&mut alice, "back online, then delivered", |e| {
            matches!(e, Event::Delivery { id, state: DeliveryState::Delivered, .. } if *id == held)
        })
        .await;
        // Away past the grace period: the membership ends and a resume starts a new one.
        bob.sever();
        assert_eq!(wait_left(&mut alice, "bobby").await, "expired");
        assert!(
            !bob.resume().await.unwrap(),
            "a lapsed membership was resumed"
        );
        assert_eq!(bob.last_seq(), 0);
        wait_joined(&mut alice, "bobby").await;
        alice.send_all("after the rotation").await.unwrap();
        assert_eq!(next_message(&mut bob).await.text, "after the rotation");
    });
}

/// A TCP relay in front of the server whose connections the test can cut, as a dropped network
/// would (both directions shut, no close frame).
struct Cutter {
    addr: std::net::SocketAddr,
    open: Arc<Mutex<Vec<smol::net::TcpStream>>>,
    _task: smol::Task<()>,
}

impl Cutter {
    fn new(upstream: std::net::SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = smol::net::TcpListener::try_from(listener).unwrap();
        let open: Arc<Mutex<Vec<smol::net::TcpStream>>> = Arc::default();
        let kept = open.clone();
        let task = smol::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                let Ok(up) = smol::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                kept.lock().unwrap().extend([down.clone(), up.clone()]);
                let (d2, u2) = (down.clone(), up.clone());
                smol::spawn(async move {
                    let _ = futures_lite::io::copy(down, up).await;
                })
                .detach();
                smol::spawn(async move {
                    let _ = futures_lite::io::copy(u2, d2).await;
                })
                .detach();
            }
        });
        Self {
            addr,
            open,
            _task: task,
        }
    }

    /// Cuts every connection relayed so far.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// `dyspatcher connect` as a child process, its output read line by line.
struct Terminal {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Terminal {
    fn start(url: &str, name: &str, key_index: usize) -> Self {
        keys(key_index + 1);
        let key = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("test-keys")
            .join(format!("rsa2048-{key_index:05}.pem"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_dyspatcher"))
            .args(["connect", url, "--name", name, "--key"])
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 20 s) for a line containing `needle`; returns it.
    fn expect(&mut self, needle: &str) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?}; the terminal said:\n{:#?}",
                    self.seen
                ),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits (at most 20 s) for the process to end (its output closes); returns its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return self.child.wait().unwrap().code()
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the terminal did not exit; it said:\n{:#?}", self.seen)
                }
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_terminal_reconnects_after_a_cut_and_misses_nothing() {
    smol::block_on(async {
        let server = fast_server();
        server.admin_ready().await;
        let cutter = Cutter::new(server.running.addr);
        let mut term = Terminal::start(&format!("ws://{}/ws", cutter.addr), "carol", 20);
        term.expect("joined as carol");
        let k = keys(1);
        let mut alice = server.join("alice", &k[0]).await;
        wait_joined(&mut alice, "carol").await;
        alice.send_direct("carol", "before the cut").await.unwrap();
        term.expect("before the cut");
        cutter.cut();
        term.expect("connection lost");
        // Written while carol's terminal is away or reconnecting: kept, then replayed.
        alice.send_direct("carol", "during the cut").await.unwrap();
        term.expect("reconnected: resumed");
        term.expect("during the cut");
        // Carol's own message, and its delivery state.
        term.type_line("@alice hello from the terminal");
        assert_eq!(
            next_message(&mut alice).await.text,
            "hello from the terminal"
        );
        alice.ack().await.unwrap();
        term.expect("delivered to alice");
        alice.send_direct("carol", "after").await.unwrap();
        term.expect("after");
        let during = term
            .seen
            .iter()
            .filter(|l| l.contains("during the cut"))
            .count();
        assert_eq!(during, 1, "{:#?}", term.seen);
        term.type_line("/quit");
        assert_eq!(term.exit_code(), Some(0));
    });
}

#[test]
fn the_terminal_stops_when_its_chat_is_opened_elsewhere() {
    smol::block_on(async {
        let server = fast_server();
        server.admin_ready().await;
        let mut term = Terminal::start(&server.url(), "dave", 21);
        term.expect("joined as dave");
        // The same key proves itself on a new connection: it takes over.
        let k = keys(22);
        let _again = server.join("dave", &k[21]).await;
        term.expect("opened elsewhere");
        assert_eq!(term.exit_code(), Some(1));
        assert!(
            !term.seen.iter().any(|l| l.contains("reconnect")),
            "{:#?}",
            term.seen
        );
    });
}

#[test]
fn the_terminal_stops_when_kicked_and_says_when_it_may_return() {
    smol::block_on(async {
        let server = fast_server();
        server.admin_ready().await;
        let mut term = Terminal::start(&server.url(), "erin", 23);
        term.expect("joined as erin");
        server.output_containing("erin").await;
        server.prompt("/kick erin 5");
        let line = term.expect("you may come back after");
        assert!(line.contains("in 5 min"), "{line}");
        assert_eq!(term.exit_code(), Some(1));
        assert!(
            !term.seen.iter().any(|l| l.contains("reconnect")),
            "{:#?}",
            term.seen
        );
    });
}

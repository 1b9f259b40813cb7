//! The files desk of a Rust endpoint (`dyspatcher connect` and the admin's prompt): it starts
//! `/send`, feeds chunks as the window opens, saves what arrives into the files folder, and says
//! what happened in a few lines per file (start, each quarter, end), never the content. The
//! endpoint sends the messages it returns and shows the lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::files::{describe, Inbox, Sending};
use crate::protocol::{self, ClientMsg};
use crate::session::{Destination, Event, FileEvent, Session};

/// What handling something produced: messages to send, lines to show.
#[derive(Debug, Default)]
pub struct DeskOutput {
    /// Messages for the server, in order.
    pub send: Vec<ClientMsg>,
    /// Lines for the person.
    pub lines: Vec<String>,
}

struct Outgoing {
    sending: Sending,
    name: String,
    size: u64,
    sha256: String,
    to: String,
    shown_quarter: u64,
}

struct Receiving {
    name: String,
    from: String,
    size: u64,
    received: u64,
    shown_quarter: u64,
}

/// A `/send` waiting for the public keys it must wrap for (fetched with `get_keys`).
struct AwaitingKeys {
    to: Option<String>,
    path: PathBuf,
    keys: Vec<String>,
}

/// The transfers of one endpoint.
pub struct Desk {
    inbox: Inbox,
    /// Sends waiting for public keys, in order.
    awaiting: Vec<AwaitingKeys>,
    /// Offered, waiting for the server's answer.
    offered: HashMap<String, Outgoing>,
    sending: HashMap<String, Outgoing>,
    receiving: HashMap<String, Receiving>,
}

/// A size for people: bytes, KiB or MiB.
pub fn human(size: u64) -> String {
    match size {
        s if s < 1024 => format!("{s} B"),
        s if s < 1024 * 1024 => format!("{:.1} KiB", s as f64 / 1024.0),
        s => format!("{:.1} MiB", s as f64 / (1024.0 * 1024.0)),
    }
}

fn quarter(done: u64, all: u64) -> u64 {
    (done * 4).checked_div(all).unwrap_or(4)
}

impl Desk {
    /// A desk saving into `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            inbox: Inbox::new(dir),
            awaiting: Vec::new(),
            offered: HashMap::new(),
            sending: HashMap::new(),
            receiving: HashMap::new(),
        }
    }

    /// The folder received files go to.
    pub fn dir(&self) -> &Path {
        self.inbox.dir()
    }

    /// `/send TO FILE`: reads the file once (size, SHA-256) and seals its manifest for `to` (a
    /// member's name, `#` and a group's name or id, or `None` for everyone).
    pub fn send(
        &mut self,
        session: &mut Session,
        to: Option<&str>,
        path: &Path,
    ) -> Result<DeskOutput, String> {
        self.offer(session, to, path, false)
    }

    /// Sends whose public keys came (or were answered unknown, or were never answered): sealed
    /// now; a member whose key is still unknown is not given our sender key, and a file for one
    /// fails with a line saying so.
    pub fn keys_arrived(&mut self, session: &mut Session) -> DeskOutput {
        let mut out = DeskOutput::default();
        if self.awaiting.is_empty() {
            return out;
        }
        let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaiting)
            .into_iter()
            .partition(|a| a.keys.iter().all(|k| !session.is_asked(k)));
        self.awaiting = still;
        for a in ready {
            match self.offer(session, a.to.as_deref(), &a.path, true) {
                Ok(more) => {
                    out.send.extend(more.send);
                    out.lines.extend(more.lines);
                }
                Err(e) => out.lines.push(format!("not sent: {e}")),
            }
        }
        out
    }

    fn offer(
        &mut self,
        session: &mut Session,
        to: Option<&str>,
        path: &Path,
        retry: bool,
    ) -> Result<DeskOutput, String> {
        let meta = describe(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.size == 0 {
            return Err(format!("{}: the file is empty", path.display()));
        }
        let max = session
            .limits()
            .map_or(protocol::DEFAULT_MAX_FILE, |l| l.files.max_file);
        if meta.size > max {
            return Err(format!(
                "{}: {} is over this server's limit of {}",
                path.display(),
                human(meta.size),
                human(max)
            ));
        }
        let (dest, to_name) = match to {
            None => (Destination::All, "everyone".to_string()),
            Some(group) if group.starts_with('#') => {
                let name = &group[1..];
                let id = session
                    .group_named(name)
                    .ok_or_else(|| format!("no group named {name} (/groups lists yours)"))?;
                (Destination::Group(id), group.to_string())
            }
            Some(name) => {
                let key = session
                    .key_id_of(name)
                    .ok_or_else(|| format!("no member named {name}"))?;
                (Destination::Direct(key.to_string()), name.to_string())
            }
        };
        // The member list carries no public keys: fetch those the manifest is wrapped for (the
        // recipient's, or everyone's who lacks our sender key), then seal.
        let missing: Vec<String> = match &dest {
            Destination::Direct(k) if !session.has_key(k) => vec![k.clone()],
            Destination::All => session.missing_for_all(),
            Destination::Group(g) => session.missing_for_group(g),
            Destination::Direct(_) => Vec::new(),
        };
        if !missing.is_empty() && !retry {
            let send = session.request_keys(missing.clone());
            self.awaiting.push(AwaitingKeys {
                to: to.map(str::to_string),
                path: path.to_path_buf(),
                keys: missing,
            });
            return Ok(DeskOutput {
                send,
                lines: Vec::new(),
            });
        }
        let source = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (send, file) = session.seal_file(&dest, &meta).map_err(|e| match e {
            crate::session::SendError::NoKey(_) => format!("no public key for {to_name}"),
            e => e.to_string(),
        })?;
        let id = file.id.clone();
        self.offered.insert(
            id,
            Outgoing {
                sending: Sending::new(file, Box::new(source), protocol::FILE_WINDOW),
                name: meta.name,
                size: meta.size,
                sha256: meta.sha256,
                to: to_name,
                shown_quarter: 0,
            },
        );
        Ok(DeskOutput {
            send,
            lines: Vec::new(),
        })
    }

    /// The connection was lost: the server cancelled what we were sending (`sender_gone`);
    /// files being received go on after the resume.
    pub fn connection_lost(&mut self) -> Vec<String> {
        self.offered
            .drain()
            .chain(self.sending.drain())
            .map(|(_, o)| {
                format!(
                    "sending {} to {} stopped: the connection was lost; send it again",
                    o.name, o.to
                )
            })
            .collect()
    }

    /// `/cancel`: every transfer in progress, both ways.
    pub fn cancel_all(&mut self, session: &mut Session) -> DeskOutput {
        let mut out = DeskOutput::default();
        let ours: Vec<(String, Outgoing)> =
            self.offered.drain().chain(self.sending.drain()).collect();
        for (id, o) in ours {
            out.send.push(session.cancel_file(&id));
            out.lines
                .push(format!("cancelled sending {} to {}", o.name, o.to));
        }
        let theirs: Vec<(String, Receiving)> = self.receiving.drain().collect();
        for (id, r) in theirs {
            out.send.push(session.cancel_file(&id));
            self.inbox.abandon(&id);
            out.lines
                .push(format!("cancelled receiving {} from {}", r.name, r.from));
        }
        if out.lines.is_empty() {
            out.lines.push("no file is being sent or received".into());
        }
        out
    }

    /// Takes an event; `true` in the answer's second place when the event was about files
    /// (the endpoint shows nothing else for it).
    pub fn event(&mut self, session: &mut Session, event: &Event) -> (DeskOutput, bool) {
        let mut out = DeskOutput::default();
        match event {
            Event::Ack(id) => {
                let Some(mut o) = self.offered.remove(id) else {
                    return (out, false);
                };
                out.lines.push(format!(
                    "sending {} ({}) to {}",
                    o.name,
                    human(o.size),
                    o.to
                ));
                self.pump(&mut o, &mut out);
                self.sending.insert(id.clone(), o);
                (out, true)
            }
            Event::Error { id: Some(id), .. } => {
                // The refusal itself is shown by the endpoint. A refused manifest sent nothing; a
                // refused chunk ends the transfer here, and at the server too.
                if let Some(o) = self.offered.remove(id) {
                    out.lines.push(format!("{} was not sent", o.name));
                } else if let Some(o) = self.sending.remove(id) {
                    out.lines.push(format!("{} was not sent in full", o.name));
                    out.send.push(session.cancel_file(id));
                }
                (out, false)
            }
            Event::FileSkipped { id, names } => {
                let name = self.offered.get(id).map_or("the file", |o| o.name.as_str());
                out.lines.push(format!(
                    "{} will not get {name}: away, with no room for it ({})",
                    names.join(", "),
                    "their mailbox is too small"
                ));
                (out, true)
            }
            Event::File(f) => {
                self.file_event(session, f, &mut out);
                (out, true)
            }
            _ => (out, false),
        }
    }

    fn pump(&mut self, o: &mut Outgoing, out: &mut DeskOutput) {
        match o.sending.ready() {
            Ok(chunks) => out.send.extend(chunks),
            Err(e) => {
                out.lines
                    .push(format!("! {}: cannot read it any more: {e}", o.name));
                out.send.push(ClientMsg::FileCancel {
                    file: o.sending.id().to_string(),
                });
            }
        }
    }

    fn file_event(&mut self, session: &mut Session, f: &FileEvent, out: &mut DeskOutput) {
        match f {
            FileEvent::ChunkAck { id, i } => {
                let Some(mut o) = self.sending.remove(id) else {
                    return;
                };
                o.sending.acked(*i);
                let (done, all) = o.sending.progress();
                if o.sending.finished() {
                    out.lines.push(format!(
                        "sent {} ({}, sha256 {}) to {}",
                        o.name,
                        human(o.size),
                        o.sha256,
                        o.to
                    ));
                    return;
                }
                let q = quarter(done, all);
                if q > o.shown_quarter {
                    o.shown_quarter = q;
                    out.lines.push(format!("sending {}: {}%", o.name, q * 25));
                }
                self.pump(&mut o, out);
                self.sending.insert(id.clone(), o);
            }
            FileEvent::Offered {
                id,
                from_name,
                name,
                size,
                sha256,
                ..
            } => match self.inbox.offered(id, name, *size, sha256) {
                Ok(path) => {
                    out.lines.push(format!(
                        "receiving {name} ({}) from {from_name} into {}",
                        human(*size),
                        path.display()
                    ));
                    self.receiving.insert(
                        id.clone(),
                        Receiving {
                            name: name.clone(),
                            from: from_name.clone(),
                            size: *size,
                            received: 0,
                            shown_quarter: 0,
                        },
                    );
                }
                Err(e) => {
                    out.lines.push(format!(
                        "! {name} from {from_name} cannot be saved in {}: {e}",
                        self.inbox.dir().display()
                    ));
                    out.send.push(session.cancel_file(id));
                }
            },
            FileEvent::Data { id, data, .. } => {
                if let Err(e) = self.inbox.data(id, data) {
                    let name = self.inbox.abandon(id).unwrap_or_default();
                    self.receiving.remove(id);
                    out.lines.push(format!("! {name} cannot be written: {e}"));
                    out.send.push(session.cancel_file(id));
                    return;
                }
                if let Some(r) = self.receiving.get_mut(id) {
                    r.received += data.len() as u64;
                    let q = quarter(r.received, r.size);
                    if q > r.shown_quarter && q < 4 {
                        r.shown_quarter = q;
                        out.lines.push(format!("receiving {}: {}%", r.name, q * 25));
                    }
                }
            }
            FileEvent::Done { id } => {
                self.receiving.remove(id);
                if let Some((path, name, size, sha)) = self.inbox.done(id) {
                    out.lines.push(format!(
                        "received {name} ({}, sha256 {sha}), saved as {}",
                        human(size),
                        path.display()
                    ));
                }
            }
            FileEvent::Failed { id, reason } => {
                self.receiving.remove(id);
                self.inbox.abandon(id);
                out.lines.push(format!("! {reason}; nothing was kept"));
            }
            FileEvent::Cancelled { id, by, reason } => {
                let why = reason.as_str().replace('_', " ");
                if let Some(o) = self.sending.remove(id).or_else(|| self.offered.remove(id)) {
                    out.lines.push(format!(
                        "sending {} to {} ended: {why} (by {by})",
                        o.name, o.to
                    ));
                } else if let Some(r) = self.receiving.remove(id) {
                    self.inbox.abandon(id);
                    out.lines.push(format!(
                        "receiving {} from {} ended: {why} (by {by}); nothing was kept",
                        r.name, r.from
                    ));
                }
            }
        }
    }
}

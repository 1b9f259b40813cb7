//! Files at an endpoint, without I/O (`docs/PROTOCOL.md`, *Files*): sealing a manifest and its
//! chunks, and checking what arrives — the manifest's signature and sizes, each chunk's sender,
//! index and seal (the file id and index are its additional data), and the final SHA-256. The
//! caller writes the opened bytes where it wants; a failure names the file and the chunk.

use sha2::{Digest, Sha256};

use super::*;
use crate::protocol::{CancelReason, ChunkIn, ChunkOut, FileIn, FileKind, Manifest};

/// Files received at once; past it a new one is refused (and cancelled).
pub const MAX_INCOMING: usize = 16;

/// What a sender says about a file in its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Its name (receivers sanitise it).
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// File, photo or voice note.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the whole content, 64 hex.
    pub sha256: String,
}

/// A file being sent: seals its chunks under its own key.
pub struct OutgoingFile {
    /// The file id.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    key: crypto::SecretKey,
}

impl OutgoingFile {
    /// Seals chunk `i` (its plaintext: bytes `i × chunk_size ..`).
    pub fn seal_chunk(&self, i: u64, plain: &[u8]) -> ClientMsg {
        let (iv, ct) = crypto::aes_seal_aad(&self.key, plain, &protocol::chunk_aad(&self.id, i));
        ClientMsg::Chunk(ChunkOut {
            file: self.id.clone(),
            i,
            iv: b64(&iv),
            ciphertext: b64(&ct),
        })
    }
}

/// What happened to a file, for the endpoint to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    /// A manifest was verified: chunks follow.
    Offered {
        /// File id.
        id: String,
        /// Sender's name.
        from_name: String,
        /// Sender's key ID.
        from_key_id: String,
        /// To us or to everyone.
        to: Destination,
        /// The name the sender gave (not sanitised).
        name: String,
        /// MIME type.
        mime: String,
        /// Size in bytes.
        size: u64,
        /// SHA-256 the content must have.
        sha256: String,
    },
    /// Chunk `i`, opened and checked: write it after the previous ones.
    Data {
        /// File id.
        id: String,
        /// Chunk index.
        i: u64,
        /// Its plaintext.
        data: Vec<u8>,
    },
    /// The last chunk came and the SHA-256 of the whole matches.
    Done {
        /// File id.
        id: String,
    },
    /// The file was refused here (a `file_cancel` is sent when the transfer is still on).
    Failed {
        /// File id.
        id: String,
        /// What a person reads, naming the file and the chunk.
        reason: String,
    },
    /// The server ended a transfer early (ours or one we received).
    Cancelled {
        /// File id.
        id: String,
        /// Who cancelled: a name, or the start of a key ID.
        by: String,
        /// Why.
        reason: CancelReason,
    },
    /// Our chunk `i` reached every recipient.
    ChunkAck {
        /// File id.
        id: String,
        /// Chunk index.
        i: u64,
    },
}

pub(super) struct Incoming {
    from: String,
    name: String,
    size: u64,
    chunks: u64,
    next: u64,
    key: crypto::SecretKey,
    hasher: Sha256,
    sha256: String,
}

mod seal;

fn file_event(e: FileEvent) -> Output {
    single(Event::File(e))
}

impl Session {
    /// Stops receiving (or sending) the file `id`: forgets it and returns the `file_cancel`.
    pub fn cancel_file(&mut self, id: &str) -> ClientMsg {
        self.incoming.remove(id);
        ClientMsg::FileCancel {
            file: id.to_string(),
        }
    }

    pub(super) fn receive_file(&mut self, f: FileIn) -> Output {
        let id = f.id.clone();
        match self.open_manifest(f) {
            Ok(event) => file_event(event),
            Err(reason) => Output {
                events: vec![Event::File(FileEvent::Failed {
                    id: id.clone(),
                    reason: format!("a file was refused: {reason}"),
                })],
                send: vec![ClientMsg::FileCancel { file: id }],
            },
        }
    }

    fn open_manifest(&mut self, f: FileIn) -> Result<FileEvent, String> {
        let key = self.sender_key(&f.from.key_id)?;
        let (signed, to) = match (&f.key, &f.skid, f.n) {
            (Some(_), _, _) => (
                protocol::file_direct_bytes(
                    &f.id,
                    f.ts,
                    &f.from.key_id,
                    &f.to,
                    f.size,
                    f.chunks,
                    &f.iv,
                    &f.ciphertext,
                ),
                Destination::Direct(f.to.clone()),
            ),
            (None, Some(skid), Some(n)) if f.to == "all" => (
                protocol::file_all_bytes(
                    &f.id,
                    f.ts,
                    &f.from.key_id,
                    skid,
                    n,
                    f.size,
                    f.chunks,
                    &f.iv,
                    &f.ciphertext,
                ),
                Destination::All,
            ),
            (None, Some(skid), Some(n)) if protocol::is_hex(&f.to, 32) => {
                let epoch = f.epoch.ok_or("a file to a group without its epoch")?;
                self.check_group_sender(&f.to, epoch, &f.from.key_id)?;
                let chain = (f.from.key_id.clone(), skid.clone());
                if self.group_chains.get(&chain) != Some(&(f.to.clone(), epoch)) {
                    return Err(
                        "its sender key is not known for this group and epoch (asked for)".into(),
                    );
                }
                (
                    protocol::file_group_bytes(
                        &f.id,
                        f.ts,
                        &f.from.key_id,
                        &f.to,
                        epoch,
                        skid,
                        n,
                        f.size,
                        f.chunks,
                        &f.iv,
                        &f.ciphertext,
                    ),
                    Destination::Group(f.to.clone()),
                )
            }
            _ => return Err("the manifest has neither key nor skid and n".into()),
        };
        key.verify(&signed, &unb64(&f.signature)?)
            .map_err(|e| e.to_string())?;
        self.check_fresh(&f.id, f.ts)?;
        let aes = match (&f.key, &f.skid, f.n) {
            (Some(wrapped), ..) => self
                .me
                .unwrap_key(&unb64(wrapped)?)
                .map_err(|e| e.to_string())?,
            (None, Some(skid), Some(n)) => self
                .chain_key_of(&f.from.key_id, skid, n)
                .map_err(|e| format!("{e} (the sender key of this file is missing)"))?,
            _ => unreachable!("checked above"),
        };
        let plain = zeroize::Zeroizing::new(
            crypto::aes_open(&aes, &unb64(&f.iv)?, &unb64(&f.ciphertext)?)
                .map_err(|e| e.to_string())?,
        );
        if plain.len() > protocol::MAX_MANIFEST {
            return Err("the manifest is too long".into());
        }
        let m: Manifest = serde_json::from_slice(&plain)
            .map_err(|e| format!("the manifest is not valid: {e}"))?;
        if m.size != f.size || m.chunks != f.chunks || f.chunks != protocol::chunk_count(f.size) {
            return Err(format!("{}: its sizes differ from the frame's", m.name));
        }
        let file_key: crypto::SecretKey = zeroize::Zeroizing::new(
            unb64(&m.key)?
                .try_into()
                .map_err(|_| format!("{}: the file key is not 32 bytes", m.name))?,
        );
        if !protocol::is_hex(&m.sha256, 64) {
            return Err(format!("{}: sha256 is not 64 hex characters", m.name));
        }
        if self.incoming.len() >= MAX_INCOMING {
            return Err(format!(
                "{}: already receiving {MAX_INCOMING} files",
                m.name
            ));
        }
        self.incoming.insert(
            f.id.clone(),
            Incoming {
                from: f.from.key_id.clone(),
                name: m.name.clone(),
                size: m.size,
                chunks: m.chunks,
                next: 0,
                key: file_key,
                hasher: Sha256::new(),
                sha256: m.sha256.clone(),
            },
        );
        Ok(FileEvent::Offered {
            id: f.id,
            from_name: f.from.name,
            from_key_id: f.from.key_id,
            to,
            name: m.name,
            mime: m.mime,
            size: m.size,
            sha256: m.sha256,
        })
    }

    pub(super) fn receive_chunk(&mut self, c: ChunkIn) -> Output {
        // A chunk of a file we do not know (or refused, or cancelled) is dropped.
        let Some(inc) = self.incoming.get_mut(&c.file) else {
            return Output::default();
        };
        let checked = check_chunk(inc, &c);
        let id = c.file;
        match checked {
            Err(reason) => {
                self.incoming.remove(&id);
                Output {
                    events: vec![Event::File(FileEvent::Failed {
                        id: id.clone(),
                        reason,
                    })],
                    send: vec![ClientMsg::FileCancel { file: id }],
                }
            }
            Ok(data) => {
                inc.hasher.update(&data);
                inc.next += 1;
                let mut events = vec![Event::File(FileEvent::Data {
                    id: id.clone(),
                    i: c.i,
                    data,
                })];
                if inc.next == inc.chunks {
                    let inc = self.incoming.remove(&id).expect("present");
                    let got = crypto::hex(&inc.hasher.finalize());
                    events.push(Event::File(if got == inc.sha256 {
                        FileEvent::Done { id }
                    } else {
                        FileEvent::Failed {
                            id,
                            reason: format!(
                                "{}: its SHA-256 is {got}, not {} as announced: altered",
                                inc.name, inc.sha256
                            ),
                        }
                    }));
                }
                Output {
                    events,
                    send: Vec::new(),
                }
            }
        }
    }

    pub(super) fn file_cancelled(
        &mut self,
        file: String,
        by: String,
        reason: CancelReason,
    ) -> Output {
        self.incoming.remove(&file);
        let by = self
            .name_of(&by)
            .map(str::to_string)
            .unwrap_or_else(|| by.chars().take(12).collect());
        file_event(FileEvent::Cancelled {
            id: file,
            by,
            reason,
        })
    }
}

fn check_chunk(inc: &Incoming, c: &ChunkIn) -> Result<Vec<u8>, String> {
    let name = &inc.name;
    if c.from.key_id != inc.from {
        return Err(format!(
            "chunk {} of {name} did not come from its sender",
            c.i
        ));
    }
    if c.i != inc.next {
        return Err(format!(
            "chunk {} of {name} arrived out of order (expected chunk {})",
            c.i, inc.next
        ));
    }
    let opened = unb64(&c.iv).and_then(|iv| {
        let ct = unb64(&c.ciphertext)?;
        crypto::aes_open_aad(&inc.key, &iv, &ct, &protocol::chunk_aad(&c.file, c.i))
            .map_err(|e| e.to_string())
    });
    let data = opened.map_err(|_| {
        format!(
            "chunk {} of {name} did not open: altered or not from this file",
            c.i
        )
    })?;
    if data.len() as u64 != protocol::chunk_len(inc.size, c.i) {
        return Err(format!("chunk {} of {name} has the wrong length", c.i));
    }
    Ok(data)
}

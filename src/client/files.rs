//! Files for the Rust endpoints (`dyspatcher connect` and the admin's prompt): reading a file to
//! send it chunk by chunk within the window the server allows, and saving what arrives into a
//! folder under a sanitised name that never overwrites anything. Memory stays at a few chunks
//! whatever the file's size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::protocol::{self, ClientMsg, FileKind};
use crate::session::{FileMeta, OutgoingFile};

/// Longest saved file name, in bytes (the extension is kept).
pub const MAX_NAME_BYTES: usize = 100;
/// The folder received files go to by default, next to the transcript or in the current one.
pub const DEFAULT_DIR: &str = "dyspatcher-files";

/// A name safe to create in a folder: no path separators, no leading dots, no control
/// characters, at most [`MAX_NAME_BYTES`] bytes keeping the extension, never empty.
///
/// ```
/// use dyspatcher::client::files::sanitize_name;
/// assert_eq!(sanitize_name("../../x"), "x");
/// assert_eq!(sanitize_name(".bashrc"), "bashrc");
/// assert_eq!(sanitize_name("a\u{7}b\nc.txt"), "a_b_c.txt");
/// assert_eq!(sanitize_name("..."), "file");
/// ```
pub fn sanitize_name(name: &str) -> String {
    // Only the last path component counts, whichever separator the sender's system uses.
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches(['.', ' ']).to_string();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.' || c == '_') {
        return "file".into();
    }
    shorten(&cleaned)
}

/// Cuts `name` to [`MAX_NAME_BYTES`] on a character boundary, keeping a short extension.
fn shorten(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_string();
    }
    let ext = name
        .rfind('.')
        .map(|at| &name[at..])
        .filter(|e| e.len() <= 16 && e.len() > 1)
        .unwrap_or("");
    let mut stem = String::new();
    for c in name[..name.len() - ext.len()].chars() {
        if stem.len() + c.len_utf8() + ext.len() > MAX_NAME_BYTES {
            break;
        }
        stem.push(c);
    }
    stem + ext
}

/// Creates a new file for `name` in `dir`, never overwriting: `name`, then `name (1).ext`, …
pub fn create_unique(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    std::fs::create_dir_all(dir)?;
    let (stem, ext) = match name.rfind('.') {
        Some(at) if at > 0 => (&name[..at], &name[at..]),
        _ => (name, ""),
    };
    for n in 0..10_000u32 {
        let candidate = if n == 0 {
            name.to_string()
        } else {
            shorten(&format!("{stem} ({n}){ext}"))
        };
        let path = dir.join(&candidate);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many files with this name"))
}

/// A guess of a file's MIME type from its extension (the receiver only shows it).
pub fn mime_of(path: &Path) -> (&'static str, FileKind) {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jpg" | "jpeg") => ("image/jpeg", FileKind::Photo),
        Some("png") => ("image/png", FileKind::Photo),
        Some("webp") => ("image/webp", FileKind::Photo),
        Some("gif") => ("image/gif", FileKind::Photo),
        Some("txt") => ("text/plain", FileKind::File),
        Some("pdf") => ("application/pdf", FileKind::File),
        Some("ogg" | "oga") => ("audio/ogg", FileKind::Voice),
        Some("webm") => ("audio/webm", FileKind::Voice),
        _ => ("application/octet-stream", FileKind::File),
    }
}

/// Reads the file at `path` once to learn its size and SHA-256: what its manifest says.
pub fn describe(path: &Path) -> io::Result<FileMeta> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; protocol::CHUNK_SIZE as usize];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let (mime, kind) = mime_of(path);
    Ok(FileMeta {
        name,
        mime: mime.into(),
        kind,
        size,
        sha256: crate::crypto::hex(&hasher.finalize()),
    })
}

/// A file being sent: gives the next chunks as the window opens.
pub struct Sending {
    file: OutgoingFile,
    source: Box<dyn Read + Send>,
    /// The next chunk to seal.
    next: u64,
    /// Chunks acknowledged (`chunk_ack`) so far.
    acked: u64,
    window: u64,
}

impl std::fmt::Debug for Sending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sending")
            .field("id", &self.file.id)
            .field("next", &self.next)
            .field("acked", &self.acked)
            .finish()
    }
}

impl Sending {
    /// Sends `file`, reading its bytes from `source`, at most `window` chunks ahead.
    pub fn new(file: OutgoingFile, source: Box<dyn Read + Send>, window: u64) -> Self {
        Self {
            file,
            source,
            next: 0,
            acked: 0,
            window: window.max(1),
        }
    }

    /// The file id.
    pub fn id(&self) -> &str {
        &self.file.id
    }

    /// Chunks acknowledged, and in all.
    pub fn progress(&self) -> (u64, u64) {
        (self.acked, self.file.chunks)
    }

    /// Whether every chunk was acknowledged.
    pub fn finished(&self) -> bool {
        self.acked == self.file.chunks
    }

    /// Chunk `i` was acknowledged.
    pub fn acked(&mut self, i: u64) {
        self.acked = self.acked.max(i + 1);
    }

    /// The chunks the window lets out now, sealed.
    pub fn ready(&mut self) -> io::Result<Vec<ClientMsg>> {
        let mut out = Vec::new();
        while self.next < self.file.chunks && self.next < self.acked + self.window {
            let len = protocol::chunk_len(self.file.size, self.next) as usize;
            let mut buf = vec![0; len];
            self.source.read_exact(&mut buf)?;
            out.push(self.file.seal_chunk(self.next, &buf));
            self.next += 1;
        }
        Ok(out)
    }
}

/// A file being received into a folder.
struct Saving {
    path: PathBuf,
    file: File,
    name: String,
    size: u64,
    sha256: String,
}

/// What an endpoint saves into its files folder in one run, at most: members can send the admin's
/// prompt every file to all, and a phone's storage must not fill up. Past it, files are refused
/// (cancelled) with a line saying why.
pub const SAVE_BUDGET_BYTES: u64 = 512 * 1024 * 1024;

/// Where received files go: one open file per transfer, removed if the transfer fails.
pub struct Inbox {
    dir: PathBuf,
    open: HashMap<String, Saving>,
    /// Bytes saved or being saved in this run (a file counts its whole size from its offer).
    used: u64,
    budget: u64,
}

impl Inbox {
    /// Saves into `dir` (made when the first file comes), at most [`SAVE_BUDGET_BYTES`].
    pub fn new(dir: PathBuf) -> Self {
        Self::with_budget(dir, SAVE_BUDGET_BYTES)
    }

    /// Saves into `dir`, at most `budget` bytes in this run.
    pub fn with_budget(dir: PathBuf, budget: u64) -> Self {
        Self {
            dir,
            open: HashMap::new(),
            used: 0,
            budget,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file was offered: creates its file under a safe, new name; returns the path.
    pub fn offered(
        &mut self,
        id: &str,
        name: &str,
        size: u64,
        sha256: &str,
    ) -> io::Result<PathBuf> {
        if self.used.saturating_add(size) > self.budget {
            return Err(io::Error::other(format!(
                "this run has saved {} of files, and {} more would pass its limit of {}",
                super::desk::human(self.used),
                super::desk::human(size),
                super::desk::human(self.budget)
            )));
        }
        let (path, file) = create_unique(&self.dir, &sanitize_name(name))?;
        self.used += size;
        self.open.insert(
            id.to_string(),
            Saving {
                path: path.clone(),
                file,
                name: name.to_string(),
                size,
                sha256: sha256.to_string(),
            },
        );
        Ok(path)
    }

    /// Appends an opened chunk.
    pub fn data(&mut self, id: &str, data: &[u8]) -> io::Result<()> {
        match self.open.get_mut(id) {
            Some(s) => s.file.write_all(data),
            None => Ok(()),
        }
    }

    /// The file is complete and verified: returns (path, name as sent, size, sha256).
    pub fn done(&mut self, id: &str) -> Option<(PathBuf, String, u64, String)> {
        let mut s = self.open.remove(id)?;
        let _ = s.file.flush();
        Some((s.path, s.name, s.size, s.sha256))
    }

    /// The transfer failed or was cancelled: what was written is removed; returns its name.
    pub fn abandon(&mut self, id: &str) -> Option<String> {
        let s = self.open.remove(id)?;
        drop(s.file);
        let _ = std::fs::remove_file(&s.path);
        self.used = self.used.saturating_sub(s.size);
        Some(s.name)
    }

    /// Whether a transfer of this id is being saved.
    pub fn is_saving(&self, id: &str) -> bool {
        self.open.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_saves_at_most_its_budget_and_gets_back_what_failed() {
        let dir =
            std::env::temp_dir().join(format!("dyspatcher-inbox-{}", crate::crypto::random_id()));
        let mut inbox = Inbox::with_budget(dir.clone(), 1000);
        inbox.offered("a", "one.bin", 600, "").unwrap();
        let e = inbox.offered("b", "two.bin", 600, "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "this run has saved 600 B of files, and 600 B more would pass its limit of 1000 B"
        );
        assert!(
            !dir.join("two.bin").exists(),
            "nothing is created for a refused file"
        );
        // A transfer that failed gives its room back; one that ended keeps it.
        inbox.abandon("a");
        inbox.offered("c", "three.bin", 600, "").unwrap();
        inbox.done("c").unwrap();
        assert!(inbox.offered("d", "four.bin", 401, "").is_err());
        inbox.offered("e", "five.bin", 400, "").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_names_are_made_safe() {
        assert_eq!(sanitize_name("..\\..\\win.ini"), "win.ini");
        assert_eq!(sanitize_name("/etc/passwd"), "passwd");
        assert_eq!(sanitize_name(""), "file");
        assert_eq!(sanitize_name("dir/"), "file");
        let long = format!("{}.jpeg", "é".repeat(150));
        let short = sanitize_name(&long);
        assert!(
            short.len() <= MAX_NAME_BYTES && short.ends_with(".jpeg"),
            "{short}"
        );
        assert!(sanitize_name(&"x".repeat(300)).len() == MAX_NAME_BYTES);
    }

    #[test]
    fn never_overwrites() {
        let dir = std::env::temp_dir().join(format!("dys-unique-{}", crate::crypto::random_id()));
        let (a, _) = create_unique(&dir, "map.jpg").unwrap();
        let (b, _) = create_unique(&dir, "map.jpg").unwrap();
        let (c, _) = create_unique(&dir, "map.jpg").unwrap();
        assert_eq!(a.file_name().unwrap(), "map.jpg");
        assert_eq!(b.file_name().unwrap(), "map (1).jpg");
        assert_eq!(c.file_name().unwrap(), "map (2).jpg");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

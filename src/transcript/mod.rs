//! The transcript: timestamped lines of what the admin sees, each carrying a hash chained to the
//! line before it, written one entry at a time to a file that did not exist before (a transcript
//! is never overwritten). [`verify`] checks a chain; [`Transcript::erase`] is the panic stop's.
//!
//! Every line of the file is `HASH NUMBER BODY`: `NUMBER` is the line's number in the file
//! (from 1), `BODY` is `TIMESTAMP TEXT` for the first line of an entry and four spaces then the
//! text for each further line of a multi-line entry, and `HASH` is the first 16 hex digits of
//! SHA-256 over the previous line's `HASH` (or [`GENESIS`] for line 1) followed by `NUMBER BODY`.

pub mod verify;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The hash line 1 chains to.
pub const GENESIS: &str = "0000000000000000";
/// Hex digits of each line's hash (64 bits).
pub const HASH_HEX: usize = 16;
/// What a continuation line's body starts with.
pub const CONTINUATION: &str = "    ";

/// The chained hash of a line: the first [`HASH_HEX`] hex digits of SHA-256(`prev` ‖ `rest`),
/// where `rest` is the line after its hash and the space that follows it.
///
/// ```
/// use dyspatcher::transcript::{chain, GENESIS};
/// // printf '%s' '00000000000000001 2026-01-01T00:00:00Z * hello' | sha256sum | cut -c1-16
/// assert_eq!(chain(GENESIS, b"1 2026-01-01T00:00:00Z * hello"), "ba2e70db629d59eb");
/// ```
pub fn chain(prev: &str, rest: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(rest);
    crate::crypto::hex(&h.finalize()[..HASH_HEX / 2])
}

/// The lines of one entry, chained after `last` (line `lines` of the file): the text to write,
/// and the new last hash and line count.
fn entry(last: &str, lines: u64, stamp: &str, text: &str) -> (String, String, u64) {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len() + 64);
    let (mut last, mut n) = (last.to_string(), lines);
    // A carriage return would let a message hide or fake a line on a terminal: it breaks the
    // line like a newline does.
    for (i, piece) in text.split(['\n', '\r']).enumerate() {
        n += 1;
        let rest = if i == 0 {
            format!("{n} {stamp} {piece}")
        } else {
            format!("{n} {CONTINUATION}{piece}")
        };
        last = chain(&last, rest.as_bytes());
        out.push_str(&last);
        out.push(' ');
        out.push_str(&rest);
        out.push('\n');
    }
    (out, last, n)
}

/// An open transcript file.
pub struct Transcript {
    /// None once erased: nothing more is written.
    file: Option<File>,
    path: PathBuf,
    last: String,
    lines: u64,
}

impl Transcript {
    /// Creates the file, readable by its owner only (it holds opened messages); fails if it
    /// exists.
    pub fn create(path: &Path) -> Result<Self, String> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(|file| Self {
                file: Some(file),
                path: path.to_path_buf(),
                last: GENESIS.to_string(),
                lines: 0,
            })
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "`{}` already exists; choose a new file (a transcript is never overwritten)",
                    path.display()
                ),
                _ => format!("cannot create `{}`: {e}", path.display()),
            })
    }

    /// Appends one entry, stamped with `stamp`: one chained line per line of `text`, written
    /// together. After [`Transcript::erase`] nothing is written.
    pub fn line(&mut self, stamp: &str, text: &str) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let (out, last, lines) = entry(&self.last, self.lines, stamp, text);
        // One write per entry so that a crash never leaves half of one; the chain moves on only
        // when the lines are written.
        file.write_all(out.as_bytes())?;
        file.flush()?;
        self.last = last;
        self.lines = lines;
        Ok(())
    }

    /// Lines written so far, and the last one's hash.
    pub fn head(&self) -> (u64, &str) {
        (self.lines, &self.last)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file was erased.
    pub fn erased(&self) -> bool {
        self.file.is_none()
    }

    /// Overwrites the whole file, makes that durable, and deletes it; nothing is written after.
    /// Returns the bytes overwritten.
    pub fn erase(&mut self) -> Result<u64, String> {
        match self.file.take() {
            Some(mut file) => crate::panic::wipe::overwrite_and_remove(&mut file, &self.path),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dysp-tr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn refuses_to_overwrite_and_chains_every_line() {
        let dir = temp("create");
        let path = dir.join("t.log");
        let mut t = Transcript::create(&path).unwrap();
        t.line("2026-01-01T00:00:00Z", "* hello").unwrap();
        t.line("2026-01-01T00:00:01Z", "one\ntwo").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let h1 = chain(GENESIS, b"1 2026-01-01T00:00:00Z * hello");
        let h2 = chain(&h1, b"2 2026-01-01T00:00:01Z one");
        let h3 = chain(&h2, b"3     two");
        assert_eq!(
            text,
            format!(
                "{h1} 1 2026-01-01T00:00:00Z * hello\n{h2} 2 2026-01-01T00:00:01Z one\n{h3} 3     two\n"
            )
        );
        assert_eq!(t.head(), (3, h3.as_str()));
        let err = Transcript::create(&path).err().unwrap();
        assert!(err.contains("already exists"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_carriage_return_breaks_the_line_too() {
        let (out, _, n) = entry(GENESIS, 0, "T", "a\r\nb\rc");
        assert_eq!(n, 3);
        let bodies: Vec<&str> = out.lines().map(|l| &l[HASH_HEX + 1..]).collect();
        assert_eq!(bodies, ["1 T a", "2     b", "3     c"]);
        assert!(!out.contains('\r'));
    }

    #[test]
    fn erase_overwrites_then_deletes_and_stops_writing() {
        let dir = temp("erase");
        let path = dir.join("t.log");
        let link = dir.join("link");
        let mut t = Transcript::create(&path).unwrap();
        t.line("2026-01-01T00:00:00Z", "a secret line").unwrap();
        // A second name for the same file shows what is left of it after the erase.
        std::fs::hard_link(&path, &link).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(t.erase(), Ok(len));
        assert!(!path.exists());
        let left = std::fs::read(&link).unwrap();
        assert_eq!(left.len() as u64, len);
        assert!(!String::from_utf8_lossy(&left).contains("secret"));
        assert!(t.erased());
        t.line("2026-01-01T00:00:01Z", "after").unwrap();
        assert_eq!(std::fs::read(&link).unwrap().len() as u64, len);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
